#include "queue.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulk.h"
#include "config.h"
#include "dueheap.h"
#include "envelope.h"
#include "log.h"
#include "notify.h"
#include "policy.h"
#include "queue_priv.h"
#include "spool.h"
#include "util.h"
#include "xmalloc.h"

/* ---- operator actions (ctl) ---- */

/* Find an operable message: -1 with ENOENT or EBUSY. */
static struct queue_entry *
queue_op_entry(struct queue *q, const char *id)
{
	struct queue_entry *qe = queue_entry_find(q, id);

	if (qe == NULL) {
		errno = ENOENT;
		return NULL;
	}
	if (qe->busy) {
		errno = EBUSY;
		return NULL;
	}
	return qe;
}

int
queue_requeue_entry(struct queue *q, struct queue_entry *qe,
    const char *reason)
{
	struct envelope *env;
	time_t now = queue_now(q);
	size_t i;

	if (qe->area != SPOOL_DEAD) {
		errno = EINVAL;
		return -1;
	}
	if ((env = queue_env_load(q, qe)) == NULL)
		return -1;
	for (i = 0; i < env->nrcpt; i++)
		if (env->rcpts[i].state == ENVELOPE_RCPT_DEAD) {
			env->rcpts[i].state = ENVELOPE_RCPT_PENDING;
			envelope_set_str(&env->rcpts[i].reply, NULL);
		}
	envelope_set_str(&env->dead_reason, NULL);
	env->attempts = 0;
	env->next_attempt = 0;
	env->age_base = now;	/* a fresh lifetime */
	if (queue_env_store_move(q, qe, env, SPOOL_QUEUE) == -1) {
		envelope_free(env);
		return -1;
	}
	envelope_free(env);
	queue_entry_age_base(q, qe, now);
	qe->attempts = 0;
	queue_entry_due(q, qe, 0);
	qe->refused = false;
	log_info("msg=%s requeued reason=%s", qe->id, reason);
	return 0;
}

int
queue_requeue(struct queue *q, const char *id)
{
	struct queue_entry *qe = queue_op_entry(q, id);
	int rc;

	if (qe == NULL)
		return -1;
	rc = queue_requeue_entry(q, qe, "operator");
	queue_dispatch_soon(q);
	return rc;
}

int
queue_hold_entry(struct queue *q, struct queue_entry *qe)
{
	struct envelope *env;

	if (qe->area != SPOOL_QUEUE) {
		errno = EINVAL;
		return -1;
	}
	if ((env = queue_env_load(q, qe)) == NULL)
		return -1;
	/* The index's: hold-mode's end may not have been persisted yet. */
	env->age_base = qe->age_base;
	env->held = true;
	env->held_since = queue_now(q);
	if (queue_env_store_move(q, qe, env, SPOOL_HOLD) == 0) {
		qe->rewrite = false;
		log_info("msg=%s held reason=operator", qe->id);
	} else
		qe = NULL;
	envelope_free(env);
	return qe == NULL ? -1 : 0;
}

int
queue_release_entry(struct queue *q, struct queue_entry *qe)
{
	struct envelope *env;
	time_t now = queue_now(q), base;

	if (qe->area != SPOOL_HOLD) {
		errno = EINVAL;
		return -1;
	}
	if ((env = queue_env_load(q, qe)) == NULL)
		return -1;
	/* Held time does not count toward the lifetime. */
	base = env->age_base != 0 ? env->age_base : env->arrival;
	if (env->held_since > 0 && env->held_since <= now)
		base += now - env->held_since;
	env->age_base = base;
	env->held = false;
	env->held_since = 0;
	if (queue_env_store_move(q, qe, env, SPOOL_QUEUE) == -1) {
		envelope_free(env);
		return -1;
	}
	envelope_free(env);
	queue_entry_age_base(q, qe, base);
	queue_entry_due(q, qe, 0);
	log_info("msg=%s released", qe->id);
	return 0;
}

/* One message of a bulk operation: still there, in that area, idle? */
int
queue_bulk_apply(void *arg, const char *id)
{
	struct queue_bulk *qb = arg;
	struct queue_entry *qe = queue_entry_find(qb->q, id);

	if (qe == NULL) {
		errno = ENOENT;
		return -1;
	}
	if (qe->busy || qe->area != qb->area) {
		errno = qe->busy ? EBUSY : EINVAL;
		return -1;
	}
	return qb->fn(qb->q, qe);
}

void
queue_bulk_after(void *arg)
{
	struct queue_bulk *qb = arg;

	queue_dispatch_soon(qb->q);
}

/* Queue a bulk operation over every idle message in qb's area now.  For
 * a hold-mode rewrite, only those whose lifetime moved (age_base set). */
static int
queue_bulk_start(struct queue *q, struct queue_bulk *qb, const char *verb)
{
	struct queue_entry *qe;
	const char **ids;
	size_t n = 0;
	int rc;

	ids = xreallocarray(NULL, q->count[qb->area] + 1, sizeof(*ids));
	TAILQ_FOREACH(qe, &q->areas[qb->area], entry)
		if (!qe->busy)
			ids[n++] = qe->id;
	rc = bulk_start(q->bulk, verb, ids, n, queue_bulk_apply,
	    queue_bulk_after, qb);
	free(ids);
	return rc;
}

/*
 * Apply fn to id, or with id NULL to every message it applies to: that
 * runs in slices on later loop turns (bulk.c), so the command returns at
 * once and the loop is never blocked for long; the log shows progress.
 */
static int
queue_each(struct queue *q, const char *id, struct queue_bulk *qb,
    const char *verb)
{
	struct queue_entry *qe;
	int rc = 0;

	if (id == NULL)
		return queue_bulk_start(q, qb, verb);
	if ((qe = queue_op_entry(q, id)) == NULL)
		return -1;
	rc = qb->fn(q, qe);
	queue_dispatch_soon(q);
	return rc;
}

int
queue_hold(struct queue *q, const char *id)
{
	return queue_each(q, id, &q->bulk_hold, "hold");
}

int
queue_release(struct queue *q, const char *id)
{
	return queue_each(q, id, &q->bulk_release, "release");
}

int
queue_delete(struct queue *q, const char *id)
{
	struct queue_entry *qe = queue_op_entry(q, id);
	enum spool_area where;
	enum queue_where w;
	int saved;

	if (qe == NULL)
		return -1;
	if (spool_delete(q->spool, qe->area, qe->id) == -1) {
		saved = errno;
		w = queue_where_is(q->spool, id, &where);
		queue_entry_relocate(q, qe, w, where);
		errno = saved;
		return -1;
	}
	log_info("msg=%s removed reason=operator area=%s", qe->id,
	    spool_area_name(qe->area));
	queue_entry_remove(q, qe);
	return 0;
}

int
queue_flush(struct queue *q, const char *id)
{
	struct queue_entry *qe;

	if (id != NULL) {
		if ((qe = queue_entry_find(q, id)) == NULL ||
		    qe->area != SPOOL_QUEUE) {
			errno = qe == NULL ? ENOENT : EINVAL;
			return -1;
		}
		queue_entry_due(q, qe, 0);
		log_info("msg=%s flush", qe->id);
	} else {
		TAILQ_FOREACH(qe, &q->areas[SPOOL_QUEUE], entry)
			qe->si.due = 0;
		dueheap_fix(&q->sched);
		q->next_probe = 0;
		queue_breaker_reset(q, "flush");
		log_info("queue flush messages=%zu", q->n);
	}
	queue_dispatch_soon(q);
	return 0;
}

static int
queue_hold_mode_store(struct queue *q)
{
	return spool_state_span_store(q->spool, QUEUE_HOLD_MODE_FILE,
	    q->hold_since, q->hold_until);
}

/* Hold-mode ends: every queued message's lifetime moves on by the time it
 * spent held, on disk too. */
/* Bulk: persist the age_base hold-mode's end gave qe. */
int
queue_rewrite_entry(struct queue *q, struct queue_entry *qe)
{
	struct envelope *env;

	if (!qe->rewrite)
		return 0;
	qe->rewrite = false;
	if ((env = queue_env_get(q, qe)) == NULL) {
		errno = EIO;
		return -1;
	}
	env->age_base = qe->age_base;
	queue_job_start(q, QUEUE_OP_REWRITE, qe, env);
	return 0;
}

void
queue_hold_mode_end(struct queue *q, const char *why)
{
	struct queue_entry *qe, *next;
	time_t now = queue_now(q), since = q->hold_since;

	q->hold_since = q->hold_until = 0;
	if (queue_hold_mode_store(q) == -1)
		log_warnx("hold-mode off not persisted; it may return after "
		    "a restart");
	log_info("hold-mode off reason=%s", why);
	if (q->notify != NULL) {
		char summary[160], held[32];

		snprintf(held, sizeof(held), "%lld", (long long)(now - since));
		snprintf(summary, sizeof(summary), "%s: hold-mode off (%s); "
		    "held mail drains now", q->cf->hostname, why);
		notify_send(q->notify, NOTIFY_HOLD_MODE_OFF, summary,
		    (struct notify_var[]){ { "REASON", why },
		    { "HELD_SECONDS", held } }, 2);
	}
	/*
	 * In memory at once (O(n), no I/O); the envelopes follow in slices
	 * (bulk.c).  Until one is rewritten the index is the truth: a
	 * delivery attempt carries the index's age_base (queue_send).
	 */
	for (qe = TAILQ_FIRST(&q->areas[SPOOL_QUEUE]); qe != NULL; qe = next) {
		time_t base = policy_hold_credit(qe->age_base, since, now);

		next = TAILQ_NEXT(qe, entry);
		qe->rewrite = false;
		if (qe->busy || base == qe->age_base)
			continue;
		qe->age_base = base;
		qe->si_exp.due = queue_entry_expiry(q, qe);
		qe->si.due = 0;
		qe->rewrite = true;
	}
	dueheap_fix(&q->sched);
	dueheap_fix(&q->expiry);
	if (queue_bulk_start(q, &q->bulk_rewrite, "hold-mode-rewrite") == -1)
		log_warnx("hold-mode off: lifetimes not persisted; a restart "
		    "counts the held time against them");
}

int
queue_hold_mode_set(struct queue *q, bool on, uint64_t seconds)
{
	time_t now = queue_now(q);

	if (!on) {
		if (q->hold_until != 0)
			queue_hold_mode_end(q, "operator");
		queue_dispatch_soon(q);
		return 0;
	}
	bool was_on = q->hold_until != 0;

	if (q->hold_until == 0)
		q->hold_since = now;
	q->hold_until = now + (time_t)seconds;
	if (queue_hold_mode_store(q) == -1)
		return -1;
	log_info("hold-mode on until=+%" PRIu64 "s", seconds);
	if (!was_on && q->notify != NULL) {
		char summary[160], secs[32], until[32];

		snprintf(secs, sizeof(secs), "%" PRIu64, seconds);
		snprintf(until, sizeof(until), "%lld", (long long)q->hold_until);
		snprintf(summary, sizeof(summary), "%s: hold-mode on for %s "
		    "s: mail is accepted and kept, nothing drains",
		    q->cf->hostname, secs);
		notify_send(q->notify, NOTIFY_HOLD_MODE_ON, summary,
		    (struct notify_var[]){ { "SECONDS", secs },
		    { "UNTIL", until } }, 2);
	}
	return 0;
}

/* Load a persisted hold-mode (it survives restarts). */
void
queue_hold_mode_load(struct queue *q)
{
	if (spool_state_span_load(q->spool, QUEUE_HOLD_MODE_FILE,
	    &q->hold_since, &q->hold_until) == -1) {
		if (errno == EINVAL)
			log_warnx("hold-mode file unreadable; hold-mode off");
		q->hold_since = q->hold_until = 0;
		return;
	}
	log_info("hold-mode on (restored) until=%lld",
	    (long long)q->hold_until);
}

