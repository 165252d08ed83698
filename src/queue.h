/*
 * queue: the in-memory index of spooled messages and every scheduling
 * decision: next-due times, backoff, lifetimes, the primary's up/down state
 * with its probe timer, and drain concurrency.
 *
 * Who changes the spool: smtp_server writes and aborts a message still
 * being received (spool_msg_new, _write, _abort).  Once queue_submit()
 * has it, the queue owns its fate: received messages go through the
 * commit pipeline, commit.c, which the queue drives and which alone calls
 * spool_msg_stage, _publish_many, spool_sync (and _abort on failure);
 * after that the queue is the only caller of spool_msg_commit, _link,
 * spool_env_write, spool_move, spool_delete and spool_scan, and the only
 * caller of drain_send().  main.c creates the spool (spool_open_owned);
 * pause.c keeps its own state file (spool_state_*), the queue the
 * primary's and hold-mode's.  ctl, ctl_proto and holdfastctl only read.  Delivered means delete; deferred means
 * persist and reschedule; refused or expired means dead/.  Every fate is a
 * log line with the message ID.  No network I/O.  The index is one list
 * per area, an ID hash and the due-heaps of dueheap.c; operator commands
 * over many messages run in slices through bulk.c.
 */
#ifndef HOLDFAST_QUEUE_H
#define HOLDFAST_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct dns;
struct drain;
struct envelope;
struct evbuffer;
struct event_base;
struct notify;
struct spool;
struct spool_msg;
struct tls;
struct workpool;

struct queue;

/* Borrows base, cf, sp, wp, dns and tls, which outlive the queue. */
struct queue *queue_new(struct event_base *base, const struct config *cf,
    struct spool *sp, struct workpool *wp, struct dns *dns, struct tls *tls);
void queue_free(struct queue *q);
/* Send notices through n (borrowed; NULL: none) from now on. */
void queue_set_notify(struct queue *q, struct notify *n);
/* Rebuild the index from the spool (startup scan).  0 or -1. */
int queue_load(struct queue *q);
/* Start delivering: creates the drain and the scheduling timer. */
void queue_start(struct queue *q);
/* Stop delivering (shutdown): drops drain connections; nothing on disk
 * changes. */
void queue_stop(struct queue *q);

/*
 * Commit a received message off the loop and index it.  Takes ownership of
 * msg and env.  cb(arg, err, env) runs on the loop afterwards with err 0
 * (the message is durable and queued: reply 250) or an errno (nothing was
 * kept: 451/452); env is borrowed for the callback only.  arg must stay
 * valid until cb runs.
 */
void queue_submit(struct queue *q, struct spool_msg *msg,
    struct envelope *env,
    void (*cb)(void *arg, int err, const struct envelope *env), void *arg);

/* Backoff after the attempts-th deferral: min doubling up to max, with
 * rnd in [0, 1) spreading it by up to +-10%.  Pure. */
uint64_t queue_backoff(uint64_t attempts, uint64_t min, uint64_t max,
    double rnd);

/*
 * Operator actions (holdfastctl through ctl.c).  Each returns 0, or -1
 * with errno: ENOENT (no such message), EBUSY (being delivered right now),
 * EINVAL (not in the right state), or the spool's error.  An id of NULL
 * means every message the action applies to: hold and release then only
 * start the work (bulk.c), which runs in slices on later loop turns; -1
 * with EAGAIN if too many such operations wait already.
 */
int queue_flush(struct queue *q, const char *id);	/* NULL: + probe */
int queue_hold(struct queue *q, const char *id);
int queue_release(struct queue *q, const char *id);
int queue_delete(struct queue *q, const char *id);
int queue_requeue(struct queue *q, const char *id);
/* Accept-and-hold: on for seconds (nothing drains, nothing ages; survives
 * restarts; ends by itself), or off. */
int queue_hold_mode_set(struct queue *q, bool on, uint64_t seconds);
/* One ctl record with the queue's and the primary's state. */
void queue_status(struct queue *q, struct evbuffer *out);
/* The spool is usable (for /healthz). */
bool queue_is_healthy(struct queue *q);

/*
 * The message size limit (RFC 1870 SIZE) is never above what the primary
 * accepts: it is min(max_message_size, the primary's SIZE - headroom).
 * The headroom covers what the message grows by between the client and
 * the primary's limit check: our Received header (SMTP_RECEIVED_MAX), the
 * primary's own Received header with the XFORWARD name and HELO in it,
 * and the envelope records Postfix counts against message_size_limit
 * (measured on Postfix 3.7: 0.8 KiB for one short recipient, 2.7 KiB with
 * 255-octet XFORWARD values and a 250-octet recipient).  Below 2 *
 * headroom the headroom is half the primary's SIZE.  A primary SIZE of 0
 * (none, or no limit) leaves max.
 */
#define QUEUE_SIZE_HEADROOM	16384

/*
 * Many long recipients can outgrow the headroom (Postfix counts each in
 * its queue file; measured on Postfix 3.7: about 20 octets + three times
 * the address): at the end of DATA/BDAT a message must also fit SIZE -
 * QUEUE_SIZE_FIXED - per recipient (QUEUE_SIZE_PER_RCPT + three times its
 * address).  The fixed part covers our Received header (at most 1.5 KiB)
 * and what the primary adds with XFORWARD names and HELO of 255 octets
 * and a 64-octet sender (measured: 2.2 KiB).
 */
#define QUEUE_SIZE_FIXED	6144
#define QUEUE_SIZE_PER_RCPT	32

/* The limit for max_message_size and a primary SIZE (0: none).  Pure. */
uint64_t queue_size_limit_calc(uint64_t max, uint64_t primary_size);
/* Whether size octets to nrcpt recipients whose addresses total
 * rcpt_octets fit the primary's SIZE (0: none) with the per-recipient
 * cost above.  Pure. */
bool queue_size_fits_primary(uint64_t primary_size, uint64_t size,
    uint64_t nrcpt, uint64_t rcpt_octets);
/* The limit in force now (advertised in EHLO, enforced at MAIL and at the
 * end of DATA/BDAT). */
uint64_t queue_size_limit(const struct queue *q);
/* At the end of DATA/BDAT: size within the limit, and with env's
 * recipients within the primary's SIZE (borrows env). */
bool queue_size_fits(const struct queue *q, uint64_t size,
    const struct envelope *env);
/* Whether to advertise SMTPUTF8: false once the primary is known to lack
 * it (its addresses would be refused there). */
bool queue_primary_has_smtputf8(const struct queue *q);
/*
 * Record what the primary's EHLO said (the drain's results do; public for
 * tests): on a change it is logged in one line and kept in the spool
 * (state file "primary-ehlo"), so it holds across a restart while the
 * primary is down.
 */
void queue_primary_learn(struct queue *q, uint64_t size, bool smtputf8,
    bool eightbitmime);

/* Counts for status and tests. */
size_t queue_count(const struct queue *q);
bool queue_primary_is_up(const struct queue *q);
/* NULL while the primary is up; else why it is down (its last failure),
 * for listings that show messages waiting for it. */
const char *queue_primary_down_reason(const struct queue *q);

#endif
