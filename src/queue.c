#include "queue.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <unistd.h>

#include "config.h"
#include "drain.h"
#include "envelope.h"
#include "log.h"
#include "smtp_proto.h"
#include "spool.h"
#include "util.h"
#include "workpool.h"
#include "xmalloc.h"

#define QUEUE_TICK_SEC	1

struct queue_entry {
	char			 id[SPOOL_ID_LEN + 1];
	time_t			 arrival;
	time_t			 next_due;
	uint64_t		 size;
	bool			 null_sender;
	bool			 busy;	/* with drain or a disk job */
	bool			 site_wait;	/* waits only for the primary */
	TAILQ_ENTRY(queue_entry) entry;	/* oldest first */
};

TAILQ_HEAD(queue_list, queue_entry);

struct queue {
	struct event_base	*base;
	const struct config	*cf;
	struct spool		*spool;
	struct workpool		*wp;
	struct drain		*drain;
	struct dns		*dns;
	struct queue_list	 entries;
	size_t			 n;
	size_t			 ndead;
	bool			 primary_up;
	time_t			 primary_since;
	time_t			 next_probe;
	bool			 probing;	/* a probe is in flight */
	struct event		*tick;
};

/* A job for the workpool: commit, or an envelope rewrite plus a fate. */
enum queue_op {
	QUEUE_OP_COMMIT,
	QUEUE_OP_REWRITE,	/* deferred: new env in place */
	QUEUE_OP_SPLIT,		/* refused rcpts to a dead/ copy, rewrite */
	QUEUE_OP_DELETE,	/* delivered */
	QUEUE_OP_DEAD,		/* refused or expired: rewrite, move */
	QUEUE_OP_QUARANTINE,	/* unreadable */
};

struct queue_job {
	enum queue_op		 op;
	struct queue		*q;
	struct queue_entry	*qe;
	struct spool_msg	*msg;
	struct envelope		*env;
	char			*envtext;
	size_t			 envlen;
	struct envelope		*deadenv;	/* QUEUE_OP_SPLIT */
	char			 deadid[SPOOL_ID_LEN + 1];
	int			 rc, err;
	void			(*cb)(void *, int, const struct envelope *);
	void			*arg;
};

static void queue_dispatch(struct queue *q);

uint64_t
queue_backoff(uint64_t attempts, uint64_t min, uint64_t max, double rnd)
{
	uint64_t d = min, r;
	double spread;

	while (attempts > 1 && d < max) {
		d = d > UINT64_MAX / 2 ? UINT64_MAX : d * 2;
		attempts--;
	}
	if (d > max)
		d = max;
	spread = (double)d * 0.2 * (rnd - 0.5);
	r = (uint64_t)((double)d + spread);
	return r < 1 ? 1 : r;
}

static double
queue_rand(void)
{
	uint32_t r;

	if (getrandom(&r, sizeof(r), 0) != sizeof(r))
		return 0.5;
	return (double)r / 4294967296.0;
}

static void
queue_entry_insert_sorted(struct queue *q, struct queue_entry *qe)
{
	struct queue_entry *it;

	/* New mail is the newest; only the scan inserts out of order. */
	TAILQ_FOREACH_REVERSE(it, &q->entries, queue_list, entry)
		if (it->arrival <= qe->arrival) {
			TAILQ_INSERT_AFTER(&q->entries, it, qe, entry);
			q->n++;
			return;
		}
	TAILQ_INSERT_HEAD(&q->entries, qe, entry);
	q->n++;
}

static void
queue_entry_remove(struct queue *q, struct queue_entry *qe)
{
	TAILQ_REMOVE(&q->entries, qe, entry);
	q->n--;
	free(qe);
}

static struct queue_entry *
queue_entry_new(const struct envelope *env)
{
	struct queue_entry *qe = xcalloc(1, sizeof(*qe));

	util_copy(qe->id, sizeof(qe->id), env->id);
	qe->arrival = env->arrival;
	qe->next_due = env->next_attempt;
	qe->size = env->size;
	qe->null_sender = env->sender[0] == '\0';
	return qe;
}

/* ---- workpool jobs ---- */

/* Worker: the refused recipients become a message of their own in dead/,
 * sharing the body by a hard link. */
static int
queue_job_split(struct queue_job *job)
{
	struct spool_msg *msg;
	char *text;
	size_t len;
	int rc;

	msg = spool_msg_link(job->q->spool, SPOOL_QUEUE, job->env->id,
	    SPOOL_DEAD);
	if (msg == NULL)
		return -1;
	util_copy(job->deadid, sizeof(job->deadid), spool_msg_id(msg));
	util_copy(job->deadenv->id, sizeof(job->deadenv->id), job->deadid);
	text = envelope_dump(job->deadenv, &len);
	rc = spool_msg_commit(msg, text, len);
	free(text);
	return rc;
}

static void
queue_job_work(void *arg)
{
	struct queue_job *job = arg;
	struct spool *sp = job->q->spool;
	const char *id = job->qe != NULL ? job->qe->id : job->env->id;

	errno = 0;
	switch (job->op) {
	case QUEUE_OP_COMMIT:
		job->rc = spool_msg_commit(job->msg, job->envtext,
		    job->envlen);
		job->msg = NULL;	/* consumed either way */
		break;
	case QUEUE_OP_REWRITE:
		job->rc = spool_env_write(sp, SPOOL_QUEUE, id, job->envtext,
		    job->envlen);
		break;
	case QUEUE_OP_DELETE:
		job->rc = spool_delete(sp, SPOOL_QUEUE, id);
		break;
	case QUEUE_OP_SPLIT:
		job->rc = queue_job_split(job);
		if (job->rc == 0)
			job->rc = spool_env_write(sp, SPOOL_QUEUE, id,
			    job->envtext, job->envlen);
		break;
	case QUEUE_OP_DEAD:
		job->rc = spool_env_write(sp, SPOOL_QUEUE, id, job->envtext,
		    job->envlen);
		if (job->rc == 0)
			job->rc = spool_move(sp, id, SPOOL_QUEUE, SPOOL_DEAD);
		break;
	case QUEUE_OP_QUARANTINE:
		job->rc = spool_move(sp, job->qe->id, SPOOL_QUEUE,
		    SPOOL_QUARANTINE);
		break;
	}
	job->err = job->rc == -1 ? errno : 0;
}

static void
queue_job_done(void *arg)
{
	struct queue_job *job = arg;
	struct queue *q = job->q;
	struct queue_entry *qe = job->qe;
	const char *id = qe != NULL ? qe->id : job->env->id;

	switch (job->op) {
	case QUEUE_OP_COMMIT:
		if (job->rc == 0) {
			qe = queue_entry_new(job->env);
			qe->next_due = 0;
			TAILQ_INSERT_TAIL(&q->entries, qe, entry);
			q->n++;
		}
		job->cb(job->arg, job->err, job->env);
		break;
	case QUEUE_OP_REWRITE:
		/* On failure the old envelope stands: recipients delivered
		 * since may be sent again, nothing is lost. */
		qe->busy = false;
		break;
	case QUEUE_OP_SPLIT:
		if (job->rc == 0) {
			log_warnx("msg=%s refused recipients moved to dead "
			    "copy=%s nrcpt=%zu", id, job->deadid,
			    job->deadenv->nrcpt);
			q->ndead++;
		} else
			log_warnx("msg=%s refused recipients not split off; "
			    "they stay queued", id);
		qe->busy = false;
		break;
	case QUEUE_OP_QUARANTINE:
		if (job->rc == 0) {
			log_warnx("msg=%s quarantined reason=unreadable", id);
			queue_entry_remove(q, qe);
		} else {
			qe->busy = false;
			qe->next_due = util_now() + (time_t)q->cf->retry_max;
		}
		break;
	case QUEUE_OP_DELETE:
		if (job->rc == 0) {
			log_info("msg=%s removed", id);
			queue_entry_remove(q, qe);
		} else {
			/* It will be delivered again: a duplicate, not a
			 * loss. */
			log_warnx("msg=%s delivered but not removed; it may "
			    "be delivered twice", id);
			qe->busy = false;
		}
		break;
	case QUEUE_OP_DEAD:
		if (job->rc == 0) {
			log_warnx("msg=%s moved to dead reason=%s", id,
			    job->env->dead_reason);
			q->ndead++;
			queue_entry_remove(q, qe);
		} else
			qe->busy = false;
		break;
	}
	envelope_free(job->env);
	envelope_free(job->deadenv);
	free(job->envtext);
	free(job);
	queue_dispatch(q);
}

static void
queue_job_start(struct queue *q, enum queue_op op, struct queue_entry *qe,
    struct envelope *env)
{
	struct queue_job *job = xcalloc(1, sizeof(*job));

	job->op = op;
	job->q = q;
	job->qe = qe;
	job->env = env;
	if (op == QUEUE_OP_SPLIT) {
		/* Refused recipients go to the copy, the rest stay. */
		job->deadenv = envelope_clone(env);
		envelope_keep_rcpts(job->deadenv, ENVELOPE_RCPT_DEAD);
		envelope_set_str(&job->deadenv->dead_reason, "refused");
		envelope_keep_rcpts(env, ENVELOPE_RCPT_PENDING);
	}
	if (env != NULL && op != QUEUE_OP_DELETE && op != QUEUE_OP_QUARANTINE)
		job->envtext = envelope_dump(env, &job->envlen);
	if (qe != NULL)
		qe->busy = true;
	workpool_submit(q->wp, queue_job_work, queue_job_done, job);
}

void
queue_submit(struct queue *q, struct spool_msg *msg, struct envelope *env,
    void (*cb)(void *arg, int err, const struct envelope *env), void *arg)
{
	struct queue_job *job = xcalloc(1, sizeof(*job));

	env->next_attempt = env->arrival;
	job->op = QUEUE_OP_COMMIT;
	job->q = q;
	job->msg = msg;
	job->env = env;
	job->envtext = envelope_dump(env, &job->envlen);
	job->cb = cb;
	job->arg = arg;
	workpool_submit(q->wp, queue_job_work, queue_job_done, job);
}

/* ---- the primary's state ---- */

static void
queue_primary_set(struct queue *q, bool up, const char *reply)
{
	char esc[LOG_ESCAPE_MAX];

	if (q->primary_up == up)
		return;
	q->primary_up = up;
	q->primary_since = util_now();
	if (up) {
		struct queue_entry *qe;

		log_info("primary up host=%s port=%" PRIu64, q->cf->primary_host,
		    q->cf->primary_port);
		TAILQ_FOREACH(qe, &q->entries, entry)
			if (qe->site_wait) {
				qe->site_wait = false;
				qe->next_due = 0;
			}
	}
	else {
		log_warnx("primary down host=%s port=%" PRIu64 " reason=%s",
		    q->cf->primary_host, q->cf->primary_port,
		    log_escape(reply, strlen(reply), esc, sizeof(esc)));
		q->next_probe = util_now() + (time_t)q->cf->probe_interval;
	}
}

/* ---- delivery results ---- */

static const char *
queue_rcpt_reply(const struct drain_job *job, size_t i)
{
	return job->results[i].reply[0] != '\0' ? job->results[i].reply :
	    job->reply;
}

static void
queue_drain_done(void *arg, struct drain_job *job)
{
	struct queue *q = arg;
	struct queue_entry *qe = job->owner;
	struct envelope *env = job->env;
	time_t now = util_now();
	size_t i, npending, ndead, nnewdead = 0;
	bool contact = false;
	char esc[LOG_ESCAPE_MAX], delay[32], rcpt[LOG_ESCAPE_MAX];

	close(job->body_fd);
	q->probing = false;
	if (job->site_failure) {
		log_info("msg=%s deferred reason=primary-unavailable reply=%s",
		    env->id, log_escape(job->reply, strlen(job->reply), esc,
		    sizeof(esc)));
		queue_primary_set(q, false, job->reply);
		q->next_probe = now + (time_t)q->cf->probe_interval;
		/*
		 * Not before the next probe round, so that one message that
		 * breaks sessions cannot be the only one ever probed with; the
		 * primary's return makes it due again at once.
		 */
		qe->next_due = q->next_probe;
		qe->site_wait = true;
		qe->busy = false;
		envelope_free(env);
		free(job->results);
		free(job);
		return;
	}
	qe->site_wait = false;
	util_fmt_duration((uint64_t)(now - env->arrival), delay, sizeof(delay));
	for (i = 0; i < env->nrcpt; i++) {
		struct envelope_rcpt *r = &env->rcpts[i];
		int code = job->results[i].code;
		const char *reply = queue_rcpt_reply(job, i);

		if (r->state != ENVELOPE_RCPT_PENDING || code == 0)
			continue;
		contact = true;
		log_addr(r->addr, rcpt, sizeof(rcpt));
		log_escape(reply, strlen(reply), esc, sizeof(esc));
		envelope_set_str(&r->reply, reply);
		if (code >= 200 && code < 300) {
			r->state = ENVELOPE_RCPT_DONE;
			log_info("msg=%s delivered rcpt=%s delay=%s reply=%s",
			    env->id, rcpt, delay, esc);
		} else if (code >= 500) {
			r->state = ENVELOPE_RCPT_DEAD;
			nnewdead++;
			log_warnx("msg=%s dead rcpt=%s reason=refused reply=%s",
			    env->id, rcpt, esc);
		}
	}
	if (contact)
		queue_primary_set(q, true, NULL);
	npending = envelope_count(env, ENVELOPE_RCPT_PENDING);
	ndead = envelope_count(env, ENVELOPE_RCPT_DEAD);
	free(job->results);
	job->results = NULL;
	if (npending == 0 && ndead == 0) {
		queue_job_start(q, QUEUE_OP_DELETE, qe, env);
	} else if (npending == 0) {
		envelope_set_str(&env->dead_reason, "refused");
		queue_job_start(q, QUEUE_OP_DEAD, qe, env);
	} else {
		uint64_t wait;

		env->attempts++;
		wait = queue_backoff(env->attempts, q->cf->retry_min,
		    q->cf->retry_max, queue_rand());
		env->next_attempt = now + (time_t)wait;
		qe->next_due = env->next_attempt;
		envelope_set_str(&env->last_reply, job->reply[0] != '\0' ?
		    job->reply : "deferred");
		for (i = 0; i < env->nrcpt; i++)
			if (env->rcpts[i].state == ENVELOPE_RCPT_PENDING &&
			    env->rcpts[i].reply != NULL) {
				envelope_set_str(&env->last_reply,
				    env->rcpts[i].reply);
				break;
			}
		log_info("msg=%s deferred attempt=%" PRIu64 " reply=%s "
		    "next=+%" PRIu64 "s", env->id, env->attempts,
		    log_escape(env->last_reply, strlen(env->last_reply), esc,
		    sizeof(esc)), wait);
		queue_job_start(q, nnewdead > 0 ? QUEUE_OP_SPLIT :
		    QUEUE_OP_REWRITE, qe, env);
	}
	free(job);
}

/* ---- scheduling ---- */

/*
 * Read a queued message's envelope.  NULL if it cannot be had now: an
 * unreadable one is quarantined, a missing one dropped from the index (both
 * logged), anything else retried later.
 */
static struct envelope *
queue_env_get(struct queue *q, struct queue_entry *qe)
{
	struct envelope *env;
	char *text, err[256];
	size_t len;

	if (spool_env_read(q->spool, SPOOL_QUEUE, qe->id, &text, &len) == -1) {
		if (errno == ENOENT) {
			log_warnx("msg=%s vanished from the spool", qe->id);
			queue_entry_remove(q, qe);
		} else
			qe->next_due = util_now() + (time_t)q->cf->retry_min;
		return NULL;
	}
	env = envelope_load(text, len, err, sizeof(err));
	free(text);
	if (env == NULL || strcmp(env->id, qe->id) != 0) {
		log_warnx("msg=%s unreadable envelope reason=\"%s\"", qe->id,
		    env == NULL ? err : "id mismatch");
		envelope_free(env);
		queue_job_start(q, QUEUE_OP_QUARANTINE, qe, NULL);
		return NULL;
	}
	return env;
}

/* Load a message and hand it to the drain; -1 if the drain is full. */
static int
queue_send(struct queue *q, struct queue_entry *qe)
{
	struct drain_job *job;
	struct envelope *env;
	int fd;

	if ((env = queue_env_get(q, qe)) == NULL)
		return 0;
	if ((fd = spool_body_open(q->spool, SPOOL_QUEUE, qe->id)) == -1) {
		envelope_free(env);
		qe->next_due = util_now() + (time_t)q->cf->retry_min;
		return 0;
	}
	job = xcalloc(1, sizeof(*job));
	job->env = env;
	job->body_fd = fd;
	job->owner = qe;
	job->results = xcalloc(env->nrcpt, sizeof(*job->results));
	/* Busy before the call: drain may report back synchronously. */
	qe->busy = true;
	if (drain_send(q->drain, job) == -1) {
		qe->busy = false;
		close(fd);
		envelope_free(env);
		free(job->results);
		free(job);
		return -1;
	}
	return 0;
}

static void
queue_expire(struct queue *q, struct queue_entry *qe)
{
	struct envelope *env;
	size_t i;

	if ((env = queue_env_get(q, qe)) == NULL)
		return;
	for (i = 0; i < env->nrcpt; i++)
		if (env->rcpts[i].state == ENVELOPE_RCPT_PENDING) {
			env->rcpts[i].state = ENVELOPE_RCPT_DEAD;
			envelope_set_str(&env->rcpts[i].reply, "expired");
		}
	envelope_set_str(&env->dead_reason, "expired");
	log_warnx("msg=%s expired age=%" PRIu64 "s attempts=%" PRIu64, env->id,
	    (uint64_t)(util_now() - env->arrival), env->attempts);
	queue_job_start(q, QUEUE_OP_DEAD, qe, env);
}

static void
queue_dispatch(struct queue *q)
{
	struct queue_entry *qe, *next;
	time_t now = util_now();

	if (q->drain == NULL)
		return;
	for (qe = TAILQ_FIRST(&q->entries); qe != NULL; qe = next) {
		next = TAILQ_NEXT(qe, entry);
		uint64_t life = qe->null_sender ? q->cf->bounce_lifetime :
		    q->cf->queue_lifetime;

		if (qe->busy || qe->next_due > now)
			continue;
		if ((uint64_t)(now - qe->arrival) >= life) {
			queue_expire(q, qe);
			continue;
		}
		if (!q->primary_up) {
			/* One message at a time probes a down primary. */
			if (q->probing || now < q->next_probe)
				continue;
			q->probing = true;	/* drain may answer at once */
			if (queue_send(q, qe) == -1 || !qe->busy)
				q->probing = false;
			continue;
		}
		if (queue_send(q, qe) == -1)
			break;
	}
}

static void
queue_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	queue_dispatch(arg);
}

/* ---- lifecycle ---- */

static int
queue_scan_cb(void *arg, enum spool_area area, const char *id)
{
	struct queue *q = arg;
	struct envelope *env;
	char *text, err[256];
	size_t len;

	if (area == SPOOL_DEAD) {
		q->ndead++;
		return 0;
	}
	if (area != SPOOL_QUEUE)
		return 0;
	if (spool_env_read(q->spool, area, id, &text, &len) == -1)
		return -1;
	env = envelope_load(text, len, err, sizeof(err));
	free(text);
	if (env == NULL || strcmp(env->id, id) != 0) {
		log_warnx("msg=%s unreadable envelope reason=\"%s\"", id,
		    env == NULL ? err : "id mismatch");
		envelope_free(env);
		return -1;
	}
	queue_entry_insert_sorted(q, queue_entry_new(env));
	envelope_free(env);
	return 0;
}

struct queue *
queue_new(struct event_base *base, const struct config *cf, struct spool *sp,
    struct workpool *wp, struct dns *dns)
{
	struct queue *q = xcalloc(1, sizeof(*q));

	q->dns = dns;
	q->base = base;
	q->cf = cf;
	q->spool = sp;
	q->wp = wp;
	TAILQ_INIT(&q->entries);
	/* Assume up: the first attempt finds out. */
	q->primary_up = true;
	q->primary_since = util_now();
	return q;
}

int
queue_load(struct queue *q)
{
	int n = spool_scan(q->spool, queue_scan_cb, q);

	if (n == -1)
		return -1;
	log_info("queue loaded messages=%zu dead=%zu", q->n, q->ndead);
	return 0;
}

void
queue_start(struct queue *q)
{
	struct timeval tv = { QUEUE_TICK_SEC, 0 };

	q->drain = drain_new(q->base, q->cf, q->dns, queue_drain_done, q);
	q->tick = event_new(q->base, -1, EV_PERSIST, queue_tick_cb, q);
	if (q->tick == NULL || event_add(q->tick, &tv) == -1)
		fatalx("queue timer");
	queue_dispatch(q);
}

void
queue_stop(struct queue *q)
{
	if (q->tick != NULL) {
		event_free(q->tick);
		q->tick = NULL;
	}
	if (q->drain != NULL) {
		struct drain *d = q->drain;

		q->drain = NULL;	/* done() calls now only release */
		drain_free(d);
	}
}

void
queue_free(struct queue *q)
{
	struct queue_entry *qe;

	if (q == NULL)
		return;
	queue_stop(q);
	while ((qe = TAILQ_FIRST(&q->entries)) != NULL)
		queue_entry_remove(q, qe);
	free(q);
}

size_t
queue_count(const struct queue *q)
{
	return q->n;
}

bool
queue_primary_is_up(const struct queue *q)
{
	return q->primary_up;
}
