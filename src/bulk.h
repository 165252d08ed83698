/*
 * bulk: operator commands over many messages (hold all, release all, the
 * rewrites when hold-mode ends) run on the loop in slices, so no command
 * blocks the loop for long: at most BULK_SLICE_MAX messages or
 * BULK_SLICE_MS milliseconds per loop turn, then the loop polls (new
 * clients get their banner) before the next slice.  Operations run one
 * after another in the order they were started, and log their progress.
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

/* What one bulk operation looks like while it runs (for status). */
struct bulk_state {
	const char	*verb;		/* NULL: none running */
	size_t		 done, total, failed;
	size_t		 waiting;	/* operations queued behind it */
};

struct bulk *bulk_new(struct event_base *base);
/* Drop what has not run (logged); the caller's functions are not called
 * again. */
void bulk_free(struct bulk *b);
/*
 * Queue verb over n IDs (copied, each shorter than BULK_ID_MAX): fn(arg,
 * id) runs for each on later loop turns, 0 or -1 with errno (ENOENT,
 * EINVAL, EBUSY: skipped, the message is no longer there or in that
 * state; anything else: failed).  after(arg) runs once when the slice
 * that did some work ends (e.g. to schedule a dispatch).  verb and arg
 * are borrowed until the operation ends.  0, or -1 with EAGAIN when
 * BULK_QUEUE_MAX operations wait already.
 */
int bulk_start(struct bulk *b, const char *verb, const char *const *ids,
    size_t n, int (*fn)(void *arg, const char *id),
    void (*after)(void *arg), void *arg);
void bulk_state(const struct bulk *b, struct bulk_state *st);

#endif
