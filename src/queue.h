/*
 * queue: the in-memory index of spooled messages and every scheduling
 * decision: next-due times, backoff, lifetimes, the primary's up/down state
 * with its probe timer, and drain concurrency.
 *
 * It is the only caller of spool's mutating functions (from its workpool
 * jobs) and of drain_send().  Delivered means delete; deferred means
 * persist and reschedule; refused or expired means dead/.  Every fate is a
 * log line with the message ID.  No network I/O.
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
struct event_base;
struct spool;
struct spool_msg;
struct workpool;

struct queue;

/* Borrows base, cf, sp, wp and dns, which outlive the queue. */
struct queue *queue_new(struct event_base *base, const struct config *cf,
    struct spool *sp, struct workpool *wp, struct dns *dns);
void queue_free(struct queue *q);
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

/* Counts for status and tests. */
size_t queue_count(const struct queue *q);
bool queue_primary_is_up(const struct queue *q);

#endif
