/*
 * queue: the in-memory index of spooled messages and every scheduling
 * decision: next-due times, backoff, lifetimes, the primary's up/down state
 * with its probe timer, and drain concurrency.  What an attempt's replies
 * make of a message (and the backoff and lifetime rules) is decided by the
 * pure functions of policy.c; the queue gathers the facts, reads the time
 * from its clock (queue_set_clock) and applies the decision.
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
 * per area, an ID hash and the due-heaps of dueheap.c.  Operator actions
 * and hold-mode live in queue_ops.c: every hold, release, requeue and
 * delete runs in slices through bulk.c with its disk work on the worker
 * pool (queue_act).
 */
#ifndef HOLDFAST_QUEUE_H
#define HOLDFAST_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "bulk.h"
#include "select.h"

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
/* Read the time from now(arg) instead of the real clock (tests); now NULL
 * goes back to the real clock. */
void queue_set_clock(struct queue *q, time_t (*now)(void *arg), void *arg);
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

/*
 * Operator actions (holdfastctl through ctl.c; and the breaker's requeue).
 * queue_flush: at once; -1 with ENOENT (no such message) or EINVAL (not
 * queued).  id NULL: every queued message, and a probe.
 */
int queue_flush(struct queue *q, const char *id);

enum queue_act {
	QUEUE_ACT_HOLD,		/* queue/ -> hold/ */
	QUEUE_ACT_RELEASE,	/* hold/ -> queue/, held time not counted */
	QUEUE_ACT_REQUEUE,	/* dead/ -> queue/, a fresh lifetime */
	QUEUE_ACT_DELETE,	/* from any area */
};

/* How an action over many messages ended. */
struct queue_act_result {
	size_t		 total, done, skipped, failed;
	bool		 stopped;	/* the daemon stopped first */
	const char	*errs;		/* "ID: why; ..." of the skipped and
					 * failed (truncated; borrowed) */
};

/*
 * Apply act to the n messages ids (copied), or with ids NULL to every idle
 * message in the area hold or release applies to.  It runs in slices
 * (bulk.c) with the disk work on the worker pool, so it returns at once
 * and the loop never waits for the disk; a message not there, busy or
 * not in the action's area is skipped.  Each message is logged once its
 * new state is durable ("msg=ID held reason=REASON WHO"; who, e.g.
 * "uid=0 selector=...", may be NULL).  cb (may be NULL) runs once at the
 * end, on the loop, with every message's action durable; arg must stay
 * valid until then.  reason is static.  0, or -1 with EAGAIN (too many
 * operations wait already) or EINVAL (ids NULL for requeue or delete).
 */
int queue_act(struct queue *q, enum queue_act act, const char *const *ids,
    size_t n, const char *reason, const char *who,
    void (*cb)(void *arg, const struct queue_act_result *res), void *arg);
/* The bulk operation running now, if any (bulk.h; for progress). */
struct bulk_state;
void queue_bulk_state(const struct queue *q, struct bulk_state *st);
/* Accept-and-hold: on for seconds (nothing drains, nothing ages; survives
 * restarts; ends by itself), or off. */
int queue_hold_mode_set(struct queue *q, bool on, uint64_t seconds);
/*
 * What `holdfastctl status` and /metrics show of the queue, the primary
 * and the spool; ctl.c and metrics.c each render it in their own format,
 * the queue knows neither.  The counts are kept as entries change area or
 * attempts, so filling it does not walk the index: O(1) plus the messages
 * that crossed into an older age bucket since the last call.
 */
enum queue_stats_state {
	QUEUE_STATS_QUEUED,	/* in queue/, never attempted */
	QUEUE_STATS_DEFERRED,	/* in queue/, attempted */
	QUEUE_STATS_HELD,
	QUEUE_STATS_DEAD,
	QUEUE_STATS_NSTATES,
};

struct queue_stats {
	time_t		 now;
	struct {
		uint64_t	 messages, bytes;
		time_t		 oldest;	/* earliest arrival; 0: none */
	}		 state[QUEUE_STATS_NSTATES];
	time_t		 oldest;	/* queued or deferred; 0: none */
	uint64_t	 age[SELECT_NBUCKETS];	/* queue/ by age bucket */
	bool		 primary_up;
	time_t		 primary_since;
	time_t		 last_delivery;		/* 0: never */
	bool		 primary_known;		/* its EHLO was seen */
	uint64_t	 primary_size;		/* 0: unknown or no limit */
	bool		 primary_smtputf8;
	uint64_t	 size_limit;
	bool		 refusing;		/* the breaker's pause */
	bool		 hold_mode;
	time_t		 hold_until;		/* 0: off */
	int64_t		 spool_free_bytes;	/* -1: unknown */
	bool		 spool_low;		/* below [spool] min_free */
	bool		 spool_suspect;
	time_t		 started;
	struct bulk_state bulk;
	/* the startup scan still running: load_done of load_total listed
	 * messages looked at (both 0 once it is over) */
	uint64_t	 load_done, load_total;
};

/* Fill st with the state as of now. */
void queue_stats_get(struct queue *q, struct queue_stats *st);
/* The startup scan still runs: messages not indexed yet are unknown to
 * the per-ID actions and to "all". */
bool queue_is_loading(const struct queue *q);
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
