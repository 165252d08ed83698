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
#include "workpool.h"
#include "xmalloc.h"

/* ---- operator actions (ctl) ----
 *
 * hold, release, requeue and delete, of one ID, of many, by selector or
 * of all, and the breaker's requeue, take one path: bulk.c walks the IDs
 * in slices on the loop; for each message the loop checks its state,
 * reads its envelope and prepares the new one (no fsync), and marks it
 * busy; the slice's disk work (envelope rewrite, move or delete, each
 * durable) runs on the worker pool in batches of QUEUE_OP_BATCH; the
 * batch's results come back to the loop, which updates the index, logs
 * each message and reports to bulk.c, which then starts the next slice.
 * So the loop never waits for an fsync, however slow the disk; an action
 * is reported done (per message in the log, in total to the caller) only
 * once it is durable.
 */

#define QUEUE_OP_BATCH	32	/* messages per worker job */
#define QUEUE_OP_ERRS	1024	/* the per-ID reasons kept for the caller */

static const char *const queue_act_verbs[] = {
	[QUEUE_ACT_HOLD] = "hold",
	[QUEUE_ACT_RELEASE] = "release",
	[QUEUE_ACT_REQUEUE] = "requeue",
	[QUEUE_ACT_DELETE] = "delete",
};

/* One action over many messages, from start to its caller's callback. */
struct queue_run {
	struct queue		*q;
	enum queue_act		 act;
	const char		*reason;	/* static */
	char			 who[600];	/* " uid=0 selector=..." */
	void			(*cb)(void *, const struct queue_act_result *);
	void			*arg;
	struct queue_batch	*batch;		/* being filled */
	char			 errs[QUEUE_OP_ERRS];
	size_t			 errlen;
};

/* One message's disk work: rewrite env in from (if envtext), then move
 * it to "to" (if different), or delete it (to == SPOOL_TMP). */
struct queue_op_item {
	struct queue_entry	*qe;	/* busy until the batch is back */
	char			 id[SPOOL_ID_LEN + 1];
	enum spool_area		 from, to;
	char			*envtext;
	size_t			 envlen;
	time_t			 age_base;	/* release, requeue */
	int			 rc, err;
	bool			 moving;	/* envelope written, move tried */
	enum queue_where	 where;	/* after a failure */
	enum spool_area		 where_area;
};

struct queue_batch {
	struct queue_run	*run;
	struct spool		*spool;
	size_t			 n;
	struct queue_op_item	 it[QUEUE_OP_BATCH];
};

/* Keep "id: why" for the caller, as far as there is room. */
static void
queue_run_err(struct queue_run *run, const char *id, int err)
{
	const char *why = err == ENOENT ? "no such message" :
	    err == EBUSY ? "being delivered, try again" :
	    err == EINVAL ? "not in a state for that" : strerror(err);
	int n;

	if (run->errlen >= sizeof(run->errs) - 1)
		return;
	n = snprintf(run->errs + run->errlen, sizeof(run->errs) -
	    run->errlen, "%s%s: %s", run->errlen > 0 ? "; " : "", id, why);
	if (n > 0)
		run->errlen += (size_t)n < sizeof(run->errs) - run->errlen ?
		    (size_t)n : sizeof(run->errs) - run->errlen - 1;
}

/* Worker: the batch's disk work: each envelope rewritten durably, then
 * the moves (or deletes) of the batch with one fsync of each directory
 * for all.  Nothing the loop owns is touched (qe only carried along). */
static void
queue_batch_work(void *arg)
{
	struct queue_batch *bt = arg;
	const char *ids[QUEUE_OP_BATCH];
	enum spool_area areas[QUEUE_OP_BATCH];
	int errs[QUEUE_OP_BATCH];
	size_t i, k = 0, idx[QUEUE_OP_BATCH];
	bool del = false;

	for (i = 0; i < bt->n; i++) {
		struct queue_op_item *it = &bt->it[i];

		errno = 0;
		it->rc = 0;
		it->moving = false;
		if (it->envtext != NULL)
			it->rc = spool_env_write(bt->spool, it->from, it->id,
			    it->envtext, it->envlen);
		it->err = it->rc == -1 ? errno : 0;
		if (it->rc == 0 && it->to != it->from) {
			ids[k] = it->id;
			areas[k] = it->from;
			idx[k++] = i;
			del = it->to == SPOOL_TMP;
			it->moving = !del;
		}
	}
	/* a batch is all moves from one area to one other, or all deletes */
	if (k > 0 && del)
		spool_delete_many(bt->spool, areas, ids, k, errs);
	else if (k > 0)
		spool_move_many(bt->spool, ids, k, areas[0],
		    bt->it[idx[0]].to, errs);
	for (i = 0; i < k; i++)
		if (errs[i] != 0) {
			bt->it[idx[i]].rc = -1;
			bt->it[idx[i]].err = errs[i];
		}
	for (i = 0; i < bt->n; i++)
		if (bt->it[i].rc == -1)
			bt->it[i].where = queue_where_is(bt->spool,
			    bt->it[i].id, &bt->it[i].where_area);
}

/* Loop: one message's work is durable; the index follows, and the log. */
static void
queue_item_done(struct queue_run *run, struct queue_op_item *it)
{
	struct queue *q = run->q;
	struct queue_entry *qe = it->qe;
	enum spool_area from = qe->area;

	switch (run->act) {
	case QUEUE_ACT_HOLD:
		queue_entry_set_area(q, qe, SPOOL_HOLD);
		qe->rewrite = false;
		log_info("msg=%s held reason=%s%s", qe->id, run->reason,
		    run->who);
		return;
	case QUEUE_ACT_RELEASE:
		queue_entry_set_area(q, qe, SPOOL_QUEUE);
		queue_entry_age_base(q, qe, it->age_base);
		queue_entry_due(q, qe, 0);
		log_info("msg=%s released reason=%s%s", qe->id, run->reason,
		    run->who);
		return;
	case QUEUE_ACT_REQUEUE:
		queue_entry_set_area(q, qe, SPOOL_QUEUE);
		queue_entry_age_base(q, qe, it->age_base);
		queue_entry_set_attempts(q, qe, 0);
		queue_entry_due(q, qe, 0);
		qe->refused = false;
		log_info("msg=%s requeued reason=%s%s", qe->id, run->reason,
		    run->who);
		return;
	case QUEUE_ACT_DELETE:
		log_info("msg=%s removed reason=%s area=%s%s", qe->id,
		    run->reason, spool_area_name(from), run->who);
		queue_entry_remove(q, qe);
		return;
	}
	fatalx("%s: bad action %d", __func__, (int)run->act);
}

static void
queue_batch_done(void *arg)
{
	struct queue_batch *bt = arg;
	struct queue_run *run = bt->run;
	struct queue *q = run->q;
	size_t i, ok = 0, failed = 0;

	for (i = 0; i < bt->n; i++) {
		struct queue_op_item *it = &bt->it[i];

		free(it->envtext);
		queue_entry_busy(q, it->qe, false);
		if (it->rc == 0) {
			queue_item_done(run, it);
			ok++;
			continue;
		}
		/*
		 * The rename may have happened all the same (the directory
		 * fsync failed after it): then the rewritten envelope is in
		 * place and the index takes it over, though the move is not
		 * known to be durable and is reported as failed.
		 */
		if (it->moving && it->where == QUEUE_WHERE_FOUND &&
		    it->where_area == it->to) {
			log_warnx("msg=%s in %s after a failed spool "
			    "operation; the index follows", it->id,
			    spool_area_name(it->to));
			queue_item_done(run, it);
		} else
			queue_entry_relocate(q, it->qe, it->where,
			    it->where_area);
		log_warnx("msg=%s %s failed reason=%s: %s", it->id,
		    queue_act_verbs[run->act], run->reason,
		    strerror(it->err));
		queue_run_err(run, it->id, it->err);
		failed++;
	}
	free(bt);
	queue_dispatch_soon(q);
	bulk_report(q->bulk, ok, 0, failed);	/* may end run: last use */
}

static void
queue_run_submit(struct queue_run *run)
{
	struct queue_batch *bt = run->batch;

	if (bt == NULL)
		return;
	run->batch = NULL;
	workpool_submit(run->q->wp, queue_batch_work, queue_batch_done, bt);
}

/* The area an action applies to; SPOOL_TMP: any. */
static enum spool_area
queue_act_area(enum queue_act act)
{
	switch (act) {
	case QUEUE_ACT_HOLD:
		return SPOOL_QUEUE;
	case QUEUE_ACT_RELEASE:
		return SPOOL_HOLD;
	case QUEUE_ACT_REQUEUE:
		return SPOOL_DEAD;
	case QUEUE_ACT_DELETE:
		return SPOOL_TMP;
	}
	fatalx("%s: bad action %d", __func__, (int)act);
}

/* A dead letter's envelope made queued again, with a fresh lifetime. */
static void
queue_env_requeue(struct envelope *env, time_t now)
{
	size_t i;

	for (i = 0; i < env->nrcpt; i++)
		if (env->rcpts[i].state == ENVELOPE_RCPT_DEAD) {
			env->rcpts[i].state = ENVELOPE_RCPT_PENDING;
			envelope_set_str(&env->rcpts[i].reply, NULL);
		}
	envelope_set_str(&env->dead_reason, NULL);
	env->attempts = 0;
	env->next_attempt = 0;
	env->age_base = now;
}

/* Loop: the new envelope for the action (none for delete), into it. */
static int
queue_item_prepare(struct queue_run *run, struct queue_entry *qe,
    struct queue_op_item *it)
{
	static const enum spool_area to[] = {
		[QUEUE_ACT_HOLD] = SPOOL_HOLD,
		[QUEUE_ACT_RELEASE] = SPOOL_QUEUE,
		[QUEUE_ACT_REQUEUE] = SPOOL_QUEUE,
		[QUEUE_ACT_DELETE] = SPOOL_TMP,	/* deleted */
	};
	struct envelope *env;
	time_t now = queue_now(run->q), base;

	it->to = to[run->act];
	if (run->act == QUEUE_ACT_DELETE)
		return 0;
	if ((env = queue_env_load(run->q, qe)) == NULL)
		return -1;
	switch (run->act) {
	case QUEUE_ACT_HOLD:
		/* The index's: hold-mode's end may not be persisted yet. */
		env->age_base = qe->age_base;
		env->held = true;
		env->held_since = now;
		break;
	case QUEUE_ACT_RELEASE:
		/* Held time does not count toward the lifetime. */
		base = env->age_base != 0 ? env->age_base : env->arrival;
		if (env->held_since > 0 && env->held_since <= now)
			base += now - env->held_since;
		env->age_base = it->age_base = base;
		env->held = false;
		/* written before the move: should it stay in hold/ (a
		 * failed rename, a crash), the next release credits from
		 * here on; ignored in queue/ */
		env->held_since = now;
		break;
	case QUEUE_ACT_REQUEUE:
		queue_env_requeue(env, now);
		it->age_base = now;
		break;
	case QUEUE_ACT_DELETE:
		break;
	}
	it->envtext = envelope_dump(env, &it->envlen);
	envelope_free(env);
	return 0;
}

/* bulk.c: one message of the run, from its ID. */
static enum bulk_res
queue_run_apply(void *arg, const char *id)
{
	struct queue_run *run = arg;
	struct queue_entry *qe = queue_entry_find(run->q, id);
	enum spool_area area = queue_act_area(run->act);
	struct queue_op_item *it;

	if (qe == NULL || qe->busy || (area != SPOOL_TMP &&
	    qe->area != area)) {
		queue_run_err(run, id, qe == NULL ? ENOENT : qe->busy ?
		    EBUSY : EINVAL);
		return BULK_SKIPPED;
	}
	if (run->batch == NULL) {
		run->batch = xcalloc(1, sizeof(*run->batch));
		run->batch->run = run;
		run->batch->spool = run->q->spool;
	}
	it = &run->batch->it[run->batch->n];
	memset(it, 0, sizeof(*it));
	if (queue_item_prepare(run, qe, it) == -1) {
		queue_run_err(run, id, errno);
		return BULK_FAILED;
	}
	it->qe = qe;
	util_copy(it->id, sizeof(it->id), qe->id);
	it->from = qe->area;
	queue_entry_busy(run->q, qe, true);
	if (++run->batch->n == QUEUE_OP_BATCH)
		queue_run_submit(run);
	return BULK_PENDING;
}

static void
queue_run_after(void *arg)
{
	queue_run_submit(arg);
}

static void
queue_run_finish(void *arg, const struct bulk_state *st)
{
	struct queue_run *run = arg;
	struct queue_act_result res;

	if (run->cb != NULL) {
		memset(&res, 0, sizeof(res));
		res.total = st->total;
		res.done = st->ok;
		res.skipped = st->skipped;
		res.failed = st->failed;
		res.stopped = st->stopped;
		res.errs = run->errs;
		run->cb(run->arg, &res);
	}
	free(run->batch);	/* only if stopped in the middle */
	free(run);
}

void
queue_bulk_state(const struct queue *q, struct bulk_state *st)
{
	bulk_state(q->bulk, st);
}

int
queue_act(struct queue *q, enum queue_act act, const char *const *ids,
    size_t n, const char *reason, const char *who,
    void (*cb)(void *arg, const struct queue_act_result *res), void *arg)
{
	struct queue_run *run = xcalloc(1, sizeof(*run));
	enum spool_area area = queue_act_area(act);
	const char **all = NULL;
	struct queue_entry *qe;
	int rc;

	run->q = q;
	run->act = act;
	run->reason = reason;
	if (who != NULL && *who != '\0')
		snprintf(run->who, sizeof(run->who), " %s", who);
	run->cb = cb;
	run->arg = arg;
	if (ids == NULL) {
		/* every idle message the action applies to, now */
		if (area == SPOOL_TMP || area == SPOOL_DEAD) {
			free(run);
			errno = EINVAL;
			return -1;
		}
		all = xreallocarray(NULL, q->count[area] + 1, sizeof(*all));
		n = 0;
		TAILQ_FOREACH(qe, &q->areas[area], entry)
			if (!qe->busy)
				all[n++] = qe->id;
		ids = all;
	}
	/* the breaker's requeue is the only action not the operator's */
	rc = bulk_start(q->bulk, strcmp(reason, "operator") == 0 ?
	    queue_act_verbs[act] : "breaker-requeue", ids, n,
	    queue_run_apply, queue_run_after, queue_run_finish, run,
	    strcmp(reason, "operator") == 0);
	free(all);
	if (rc == -1)
		free(run);
	return rc;
}

/* The hold-mode rewrite (queue_rewrite_entry) in slices: one message,
 * still there, in that area, idle? */
static enum bulk_res
queue_bulk_apply(void *arg, const char *id)
{
	struct queue_bulk *qb = arg;
	struct queue_entry *qe = queue_entry_find(qb->q, id);

	if (qe == NULL || qe->busy || qe->area != qb->area)
		return BULK_SKIPPED;
	return qb->fn(qb->q, qe) == 0 ? BULK_DONE : BULK_FAILED;
}

static void
queue_bulk_after(void *arg)
{
	struct queue_bulk *qb = arg;

	queue_dispatch_soon(qb->q);
}

/* Queue a bulk operation over every idle message in qb's area now; qb's
 * function picks which to act on (the hold-mode rewrite, only those whose
 * lifetime moved: queue_rewrite_entry skips the rest). */
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
	    queue_bulk_after, NULL, qb, false);
	free(ids);
	return rc;
}

int
queue_flush(struct queue *q, const char *id)
{
	struct queue_entry *qe;
	struct policy_flush f;

	policy_flush(id == NULL, &f);
	if (id != NULL) {
		if ((qe = queue_entry_find(q, id)) == NULL ||
		    qe->area != SPOOL_QUEUE) {
			errno = qe == NULL ? ENOENT : EINVAL;
			return -1;
		}
		queue_entry_due(q, qe, 0);
		log_info("msg=%s flush", qe->id);
	}
	if (f.all_due) {
		TAILQ_FOREACH(qe, &q->areas[SPOOL_QUEUE], entry)
			qe->si.due = 0;
		dueheap_fix(&q->sched);
	}
	if (f.probe_now)
		q->next_probe = 0;
	if (f.reset_breaker)
		queue_breaker_reset(q, "flush");
	if (f.all_due)
		log_info("queue flush messages=%zu", q->n);
	queue_dispatch_soon(q);
	return 0;
}

static int
queue_hold_mode_store(struct queue *q)
{
	return spool_state_span_store(q->spool, QUEUE_HOLD_MODE_FILE,
	    q->hold_since, q->hold_until);
}

/* Bulk: persist the age_base hold-mode's end gave qe (marked rewrite by
 * queue_hold_mode_end); the others are left alone. */
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

/* Hold-mode ends: every queued message's lifetime moves on by the time it
 * spent held, on disk too. */
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
		if (errno == EBADMSG)
			log_warnx("hold-mode file unreadable; hold-mode off");
		q->hold_since = q->hold_until = 0;
		return;
	}
	log_info("hold-mode on (restored) until=%lld",
	    (long long)q->hold_until);
}

