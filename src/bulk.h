/*
 * bulk: operator commands over many messages (hold, release, requeue and
 * delete by ID, by selector or of all, the breaker's requeue, the rewrites
 * when hold-mode ends) run in slices, so no command blocks the loop for
 * long: at most BULK_SLICE_MAX messages or BULK_SLICE_MS milliseconds per
 * loop turn, then the loop polls (new clients get their banner) before the
 * next slice.  A slice may hand its disk work to the worker pool: the
 * operation then waits, without holding the loop, until every message of
 * the slice is reported (bulk_report) before the next slice.  Operations
 * run one after another in the order they were started, and log their
 * progress and their final count.
 *
 * It owns the ID lists and the timer; what is done to each message is the
 * caller's function.  It knows no spool, index or protocol.  Loop thread
 * only.
 */
#ifndef HOLDFAST_BULK_H
#define HOLDFAST_BULK_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;

#define BULK_SLICE_MAX	256
#define BULK_SLICE_MS	20
#define BULK_QUEUE_MAX	16	/* operations waiting to run */
#define BULK_ID_MAX	32	/* longest ID, NUL included */

struct bulk;

/* What one message's turn gave. */
enum bulk_res {
	BULK_DONE,
	BULK_PENDING,	/* on its way: bulk_report() tells the outcome */
	BULK_SKIPPED,	/* gone, busy or not in that state (any more) */
	BULK_FAILED,
};

/* What one bulk operation looks like while it runs (for status), and
 * when it ends (for its finish callback). */
struct bulk_state {
	const char	*verb;		/* NULL: none running */
	size_t		 done, total;	/* done: messages through, any way */
	size_t		 ok, skipped, failed;
	size_t		 waiting;	/* operations queued behind it */
	bool		 stopped;	/* the daemon stopped before the end */
};

struct bulk *bulk_new(struct event_base *base);
/* Drop what has not run (logged); the caller's functions are not called
 * again. */
void bulk_free(struct bulk *b);
/*
 * Queue verb over n IDs (copied, each shorter than BULK_ID_MAX): fn(arg,
 * id) runs for each on later loop turns and says what became of it.
 * after(arg) runs once when each slice ends (e.g. to submit the slice's
 * disk work, to schedule a dispatch); finish(arg, st) once when the
 * operation is over (all reported) or dropped by bulk_free (st->stopped),
 * the last use of arg.  verb and arg are borrowed until then; after and
 * finish may be NULL.  limited: the operator's, refused (-1 with EAGAIN)
 * when BULK_QUEUE_MAX of those wait already; the daemon's own (breaker,
 * hold-mode) always queue, so operators cannot crowd them out.  0 or -1.
 */
int bulk_start(struct bulk *b, const char *verb, const char *const *ids,
    size_t n, enum bulk_res (*fn)(void *arg, const char *id),
    void (*after)(void *arg),
    void (*finish)(void *arg, const struct bulk_state *st), void *arg,
    bool limited);
/* Outcomes of messages of the running operation that fn left
 * BULK_PENDING; when none is pending any more its next slice follows. */
void bulk_report(struct bulk *b, size_t done, size_t skipped,
    size_t failed);
void bulk_state(const struct bulk *b, struct bulk_state *st);

#endif
