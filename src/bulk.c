#include "bulk.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "log.h"
#include "util.h"
#include "xmalloc.h"

#define BULK_PROGRESS_SEC	5	/* a progress line this often */

struct bulk_op {
	const char		*verb;
	char			(*ids)[BULK_ID_MAX];
	size_t			 n, next;
	size_t			 done, failed, skipped, pending;
	enum bulk_res		(*fn)(void *, const char *);
	void			(*after)(void *);
	void			(*finish)(void *, const struct bulk_state *);
	void			*arg;
	bool			 limited;	/* counts toward the limit */
	struct timespec		 started, last_progress;
	TAILQ_ENTRY(bulk_op)	 entry;
};

struct bulk {
	struct event		*ev;		/* zero timer: the next slice */
	TAILQ_HEAD(, bulk_op)	 ops;		/* first runs */
	size_t			 nops;
	size_t			 nlimited;	/* of them, the operator's */
};

static double
bulk_elapsed(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - since->tv_sec) +
	    (double)(now.tv_nsec - since->tv_nsec) / 1e9;
}

static void
bulk_op_free(struct bulk *b, struct bulk_op *op)
{
	TAILQ_REMOVE(&b->ops, op, entry);
	b->nops--;
	if (op->limited)
		b->nlimited--;
	free(op->ids);
	free(op);
}

/*
 * A zero timeout, not event_active(): timers become active only after the
 * loop has polled, so every slice lets pending I/O (a new client, a
 * reply) run first.
 */
static void
bulk_schedule(struct bulk *b)
{
	struct timeval tv = { 0, 0 };

	if (!TAILQ_EMPTY(&b->ops) && evtimer_add(b->ev, &tv) == -1)
		log_warnx("bulk: cannot schedule the next slice");
}

static void
bulk_op_state(const struct bulk *b, const struct bulk_op *op,
    struct bulk_state *st)
{
	memset(st, 0, sizeof(*st));
	st->verb = op->verb;
	st->done = op->done + op->skipped + op->failed;
	st->total = op->n;
	st->ok = op->done;
	st->skipped = op->skipped;
	st->failed = op->failed;
	st->waiting = b->nops - 1;
}

/* The first operation's slice is through (nothing pending): log its
 * progress, or end it, and schedule what comes next. */
static void
bulk_advance(struct bulk *b, struct bulk_op *op)
{
	struct bulk_state st;

	if (op->next < op->n) {
		if (bulk_elapsed(&op->last_progress) >= BULK_PROGRESS_SEC) {
			clock_gettime(CLOCK_MONOTONIC, &op->last_progress);
			log_info("queue bulk %s progress done=%zu of=%zu",
			    op->verb, op->done + op->skipped + op->failed,
			    op->n);
		}
	} else {
		log_info("queue bulk %s done messages=%zu failed=%zu "
		    "skipped=%zu secs=%.1f", op->verb, op->done, op->failed,
		    op->skipped, bulk_elapsed(&op->started));
		if (op->finish != NULL) {
			bulk_op_state(b, op, &st);
			op->finish(op->arg, &st);
		}
		bulk_op_free(b, op);
		if ((op = TAILQ_FIRST(&b->ops)) != NULL)
			clock_gettime(CLOCK_MONOTONIC, &op->started);
	}
	bulk_schedule(b);
}

static void
bulk_slice_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bulk *b = arg;
	struct bulk_op *op = TAILQ_FIRST(&b->ops);
	struct timespec t0;
	size_t k;

	(void)fd;
	(void)what;
	if (op == NULL || op->pending > 0)
		return;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (k = 0; k < BULK_SLICE_MAX && op->next < op->n; k++) {
		if (k > 0 && bulk_elapsed(&t0) * 1000 >= BULK_SLICE_MS)
			break;
		switch (op->fn(op->arg, op->ids[op->next++])) {
		case BULK_DONE:
			op->done++;
			break;
		case BULK_PENDING:
			op->pending++;
			break;
		case BULK_SKIPPED:
			op->skipped++;
			break;
		case BULK_FAILED:
			op->failed++;
			break;
		}
	}
	if (op->after != NULL)
		op->after(op->arg);
	if (op->pending == 0)
		bulk_advance(b, op);
}

void
bulk_report(struct bulk *b, size_t done, size_t skipped, size_t failed)
{
	struct bulk_op *op = TAILQ_FIRST(&b->ops);

	if (op == NULL || done + skipped + failed > op->pending)
		fatalx("%s: more results than pending", __func__);
	op->done += done;
	op->skipped += skipped;
	op->failed += failed;
	op->pending -= done + skipped + failed;
	if (op->pending == 0)
		bulk_advance(b, op);
}

struct bulk *
bulk_new(struct event_base *base)
{
	struct bulk *b = xcalloc(1, sizeof(*b));

	TAILQ_INIT(&b->ops);
	if ((b->ev = evtimer_new(base, bulk_slice_cb, b)) == NULL)
		fatalx("bulk timer");
	return b;
}

void
bulk_free(struct bulk *b)
{
	struct bulk_op *op;

	if (b == NULL)
		return;
	while ((op = TAILQ_FIRST(&b->ops)) != NULL) {
		struct bulk_state st;

		log_warnx("queue bulk %s stopped done=%zu of=%zu", op->verb,
		    op->done + op->skipped + op->failed, op->n);
		if (op->finish != NULL) {
			bulk_op_state(b, op, &st);
			st.stopped = true;
			op->finish(op->arg, &st);
		}
		bulk_op_free(b, op);
	}
	event_free(b->ev);
	free(b);
}

int
bulk_start(struct bulk *b, const char *verb, const char *const *ids,
    size_t n, enum bulk_res (*fn)(void *arg, const char *id),
    void (*after)(void *arg),
    void (*finish)(void *arg, const struct bulk_state *st), void *arg,
    bool limited)
{
	struct bulk_op *op;
	size_t i;

	if (limited && b->nlimited >= BULK_QUEUE_MAX) {
		errno = EAGAIN;
		return -1;
	}
	op = xcalloc(1, sizeof(*op));
	op->verb = verb;
	op->ids = xreallocarray(NULL, n > 0 ? n : 1, sizeof(*op->ids));
	for (i = 0; i < n; i++)
		util_copy(op->ids[i], sizeof(op->ids[i]), ids[i]);
	op->n = n;
	op->fn = fn;
	op->after = after;
	op->finish = finish;
	op->arg = arg;
	op->limited = limited;
	clock_gettime(CLOCK_MONOTONIC, &op->started);
	op->last_progress = op->started;
	TAILQ_INSERT_TAIL(&b->ops, op, entry);
	b->nops++;
	if (limited)
		b->nlimited++;
	log_info("queue bulk %s started messages=%zu%s", verb, n,
	    b->nops > 1 ? " queued=yes" : "");
	bulk_schedule(b);
	return 0;
}

void
bulk_state(const struct bulk *b, struct bulk_state *st)
{
	const struct bulk_op *op = TAILQ_FIRST(&b->ops);

	memset(st, 0, sizeof(*st));
	if (op != NULL)
		bulk_op_state(b, op, st);
}
