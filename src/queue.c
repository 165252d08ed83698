#include "queue.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <unistd.h>

#include "bulk.h"
#include "commit.h"
#include "config.h"
#include "drain.h"
#include "envelope.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "policy.h"
#include "dueheap.h"
#include "queue_priv.h"
#include "select.h"
#include "smtp_proto.h"
#include "spool.h"
#include "tls.h"
#include "util.h"
#include "workpool.h"
#include "xmalloc.h"

#define QUEUE_TICK_SEC	1
#define QUEUE_HEALTH_SEC	300	/* primary looked at, idle and up */

#define QUEUE_SPOOL_CHECK_SEC	10	/* free space, for the notice */
#define QUEUE_CERT_CHECK_SEC	3600	/* the certificate's end */
#define QUEUE_CERT_WARN_SEC	(14 * 86400)	/* notice that early */
#define QUEUE_CERT_REPEAT_SEC	86400	/* and again each day */

#define QUEUE_PRIMARY_FILE	"primary-ehlo"

/* A job for the workpool: an envelope rewrite plus a fate. */
struct queue_job {
	enum queue_op		 op;
	struct queue		*q;
	struct queue_entry	*qe;
	struct envelope		*env;
	char			*envtext;
	size_t			 envlen;
	struct envelope		*deadenv;	/* QUEUE_OP_SPLIT */
	char			 deadid[SPOOL_ID_LEN + 1];
	int			 rc, err;
	/* after a failed move or delete: where the message really is */
	enum queue_where	 where;
	enum spool_area		 where_area;
};

/* A received message in the commit pipeline. */
struct queue_commit {
	struct queue		*q;
	struct envelope		*env;
	void			(*cb)(void *, int, const struct envelope *);
	void			*arg;
};

static void queue_dispatch(struct queue *q);
static void queue_breaker_trip(struct queue *q);

time_t
queue_now(const struct queue *q)
{
	return q->clock != NULL ? q->clock(q->clock_arg) : util_now();
}

void
queue_set_clock(struct queue *q, time_t (*now)(void *arg), void *arg)
{
	q->clock = now;
	q->clock_arg = arg;
}

static double
queue_rand(void)
{
	uint32_t r;

	if (getrandom(&r, sizeof(r), 0) != sizeof(r))
		return 0.5;
	return (double)r / 4294967296.0;
}

/* When qe's lifetime ends (it goes to dead/ as expired). */
time_t
queue_entry_expiry(const struct queue *q, const struct queue_entry *qe)
{
	return policy_expiry(q->cf, qe->age_base, qe->null_sender);
}

/* What status and metrics count qe as: QUEUE_STATS_* + 1, 0 for none. */
static unsigned char
queue_entry_stat(const struct queue_entry *qe)
{
	switch (qe->area) {
	case SPOOL_QUEUE:
		return qe->attempts > 0 ? QUEUE_STATS_DEFERRED + 1 :
		    QUEUE_STATS_QUEUED + 1;
	case SPOOL_HOLD:
		return QUEUE_STATS_HELD + 1;
	case SPOOL_DEAD:
		return QUEUE_STATS_DEAD + 1;
	case SPOOL_TMP:
	case SPOOL_QUARANTINE:
	case SPOOL_NAREAS:
		break;
	}
	return 0;
}

/* When an entry in bucket b leaves it (0: never). */
static time_t
queue_entry_bucket_end(const struct queue_entry *qe, size_t b)
{
	uint64_t end = select_bucket_end(b);

	return end == UINT64_MAX ? 0 : qe->arrival + (time_t)end;
}

/* Put qe (in queue/, not in q->ages) into its age bucket as of now. */
static void
queue_entry_age_add(struct queue *q, struct queue_entry *qe, time_t now)
{
	time_t end;

	qe->bucket = (unsigned char)select_bucket(qe->arrival < now ?
	    (uint64_t)(now - qe->arrival) : 0);
	q->age[qe->bucket]++;
	if ((end = queue_entry_bucket_end(qe, qe->bucket)) != 0) {
		dueheap_item_init(&qe->si_age, end, qe->arrival, qe->si.seq);
		dueheap_add(&q->ages, &qe->si_age);
	}
}

/*
 * Count qe where its area and attempts put it now: the counters of status
 * and metrics follow every change of area (queue_entry_set_area) and of
 * attempts (queue_entry_set_attempts) through here, so a scrape reads
 * them instead of walking the index.
 */
static void
queue_entry_account(struct queue *q, struct queue_entry *qe)
{
	unsigned char stat = queue_entry_stat(qe);
	bool was_queued = qe->stat == QUEUE_STATS_QUEUED + 1 ||
	    qe->stat == QUEUE_STATS_DEFERRED + 1;
	bool queued = qe->area == SPOOL_QUEUE;

	if (stat == qe->stat)
		return;
	if (qe->stat != 0) {
		q->st_msgs[qe->stat - 1]--;
		q->st_bytes[qe->stat - 1] -= qe->size;
		dueheap_del(&q->oldest[qe->stat - 1], &qe->si_old);
	}
	if (stat != 0) {
		q->st_msgs[stat - 1]++;
		q->st_bytes[stat - 1] += qe->size;
		/* due = arrival: the heap's first is the oldest */
		dueheap_item_init(&qe->si_old, qe->arrival, qe->arrival,
		    qe->si.seq);
		dueheap_add(&q->oldest[stat - 1], &qe->si_old);
	}
	if (was_queued && !queued) {
		q->age[qe->bucket]--;
		if (qe->bucket + 1 < SELECT_NBUCKETS)
			dueheap_del(&q->ages, &qe->si_age);
	} else if (!was_queued && queued)
		queue_entry_age_add(q, qe, util_now());
	qe->stat = stat;
}

/* Sendable: queued and not with the drain or a disk job. */
static void
queue_entry_place(struct queue *q, struct queue_entry *qe)
{
	bool want = qe->area == SPOOL_QUEUE && !qe->busy;

	queue_entry_account(q, qe);

	if (want && !dueheap_has(&qe->si)) {
		dueheap_add(&q->sched, &qe->si);
		qe->si_exp.due = queue_entry_expiry(q, qe);
		dueheap_add(&q->expiry, &qe->si_exp);
	} else if (!want) {
		dueheap_del(&q->sched, &qe->si);
		dueheap_del(&q->expiry, &qe->si_exp);
	}
}

/* qe's lifetime starts from base now. */
void
queue_entry_age_base(struct queue *q, struct queue_entry *qe, time_t base)
{
	qe->age_base = base;
	dueheap_set_due(&q->expiry, &qe->si_exp, queue_entry_expiry(q, qe));
}

void
queue_entry_due(struct queue *q, struct queue_entry *qe, time_t due)
{
	dueheap_set_due(&q->sched, &qe->si, due);
}

/* qe has been attempted n times (status counts it as deferred if n > 0). */
void
queue_entry_set_attempts(struct queue *q, struct queue_entry *qe,
    uint64_t n)
{
	qe->attempts = n;
	queue_entry_account(q, qe);
}

void
queue_entry_busy(struct queue *q, struct queue_entry *qe, bool busy)
{
	qe->busy = busy;
	queue_entry_place(q, qe);
}

/* Move an entry between areas in the index (the files moved already);
 * SPOOL_TMP stands for "in no area". */
void
queue_entry_set_area(struct queue *q, struct queue_entry *qe,
    enum spool_area area)
{
	if (qe->area != SPOOL_TMP) {
		TAILQ_REMOVE(&q->areas[qe->area], qe, entry);
		q->count[qe->area]--;
	}
	qe->area = area;
	if (area != SPOOL_TMP) {
		TAILQ_INSERT_TAIL(&q->areas[area], qe, entry);
		q->count[area]++;
	}
	q->n = q->count[SPOOL_QUEUE];
	queue_entry_place(q, qe);
}

static size_t
queue_hash_slot(const struct queue *q, const char *id)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *id != '\0'; id++)
		h = (h ^ (unsigned char)*id) * 1099511628211ULL;
	return (size_t)(h & (q->hsize - 1));
}

static void
queue_hash_grow(struct queue *q)
{
	struct queue_entry **old = q->hash, *qe, *next;
	size_t i, oldsize = q->hsize;

	q->hsize = oldsize == 0 ? 1024 : oldsize * 2;
	q->hash = xcalloc(q->hsize, sizeof(*q->hash));
	for (i = 0; i < oldsize; i++)
		for (qe = old[i]; qe != NULL; qe = next) {
			size_t k = queue_hash_slot(q, qe->id);

			next = qe->hnext;
			qe->hnext = q->hash[k];
			q->hash[k] = qe;
		}
	free(old);
}

/* Index a new entry (its area set, not yet linked anywhere). */
static void
queue_entry_add(struct queue *q, struct queue_entry *qe)
{
	enum spool_area area = qe->area;
	size_t k;

	if (q->hcount >= q->hsize)
		queue_hash_grow(q);
	k = queue_hash_slot(q, qe->id);
	qe->hnext = q->hash[k];
	q->hash[k] = qe;
	q->hcount++;
	qe->si.seq = qe->si_exp.seq = ++q->seq;
	qe->area = SPOOL_TMP;
	queue_entry_set_area(q, qe, area);
}

void
queue_entry_remove(struct queue *q, struct queue_entry *qe)
{
	struct queue_entry **pp = &q->hash[queue_hash_slot(q, qe->id)];

	queue_entry_set_area(q, qe, SPOOL_TMP);
	while (*pp != NULL && *pp != qe)
		pp = &(*pp)->hnext;
	if (*pp == NULL)
		fatalx("%s: msg=%s not in the hash", __func__, qe->id);
	*pp = qe->hnext;
	q->hcount--;
	free(qe);
}

static struct queue_entry *
queue_entry_new(const struct envelope *env, enum spool_area area)
{
	struct queue_entry *qe = xcalloc(1, sizeof(*qe));

	util_copy(qe->id, sizeof(qe->id), env->id);
	qe->area = area;
	qe->arrival = env->arrival;
	qe->age_base = env->age_base != 0 ? env->age_base : env->arrival;
	dueheap_item_init(&qe->si, env->next_attempt, env->arrival, 0);
	dueheap_item_init(&qe->si_exp, 0, env->arrival, 0);
	qe->size = env->size;
	qe->attempts = env->attempts;
	qe->null_sender = env->sender[0] == '\0';
	qe->refused = env->dead_reason != NULL &&
	    strcmp(env->dead_reason, "refused") == 0;
	return qe;
}

struct queue_entry *
queue_entry_find(struct queue *q, const char *id)
{
	struct queue_entry *qe;

	if (q->hsize == 0)
		return NULL;
	for (qe = q->hash[queue_hash_slot(q, id)]; qe != NULL; qe = qe->hnext)
		if (strcmp(qe->id, id) == 0)
			return qe;
	return NULL;
}

static bool
queue_is_refusing(const struct queue *q)
{
	return q->refusing_until != 0;
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

/* Where is id now?  Any thread. */
enum queue_where
queue_where_is(struct spool *sp, const char *id, enum spool_area *area)
{
	if (spool_find(sp, id, area) == 0)
		return QUEUE_WHERE_FOUND;
	return errno == ENOENT ? QUEUE_WHERE_GONE : QUEUE_WHERE_UNKNOWN;
}

/*
 * Make qe follow the disk after a failed move or delete (see enum
 * queue_where).  true if qe was freed: the message is in no area.
 */
bool
queue_entry_relocate(struct queue *q, struct queue_entry *qe,
    enum queue_where where, enum spool_area area)
{
	switch (where) {
	case QUEUE_WHERE_UNKNOWN:
		return false;
	case QUEUE_WHERE_GONE:
		log_warnx("msg=%s not in the spool after a failed spool "
		    "operation; dropped from the index", qe->id);
		queue_entry_remove(q, qe);
		return true;
	case QUEUE_WHERE_FOUND:
		if (area != qe->area) {
			log_warnx("msg=%s in %s after a failed spool "
			    "operation; the index follows", qe->id,
			    spool_area_name(area));
			queue_entry_set_area(q, qe, area);
		}
		return false;
	}
	fatalx("%s: bad where %d", __func__, (int)where);
}

static void
queue_job_work(void *arg)
{
	struct queue_job *job = arg;
	struct spool *sp = job->q->spool;
	const char *id = job->qe != NULL ? job->qe->id : job->env->id;

	errno = 0;
	switch (job->op) {
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
	if (job->rc == -1 && (job->op == QUEUE_OP_DELETE ||
	    job->op == QUEUE_OP_DEAD || job->op == QUEUE_OP_QUARANTINE))
		job->where = queue_where_is(sp, id, &job->where_area);
}

static void queue_refused_dead(struct queue *q, struct queue_entry *qe);
static void queue_notify_dead(struct queue *q, const char *id,
    const char *reason);

/* Loop: the refused recipients' dead/ copy is made (or not). */
static void
queue_job_split_done(struct queue *q, struct queue_job *job)
{
	struct queue_entry *copy;
	const char *id = job->qe->id;

	queue_entry_busy(q, job->qe, false);
	if (job->rc != 0) {
		log_warnx("msg=%s refused recipients not split off; "
		    "they stay queued", id);
		return;
	}
	log_warnx("msg=%s refused recipients moved to dead copy=%s "
	    "nrcpt=%zu", id, job->deadid, job->deadenv->nrcpt);
	util_copy(job->deadenv->id, sizeof(job->deadenv->id), job->deadid);
	copy = queue_entry_new(job->deadenv, SPOOL_DEAD);
	queue_entry_add(q, copy);
	queue_refused_dead(q, copy);
	queue_notify_dead(q, job->deadid, "refused");
}

/* Loop: an unreadable message is quarantined (or tried again later). */
static void
queue_job_quarantine_done(struct queue *q, struct queue_job *job)
{
	struct queue_entry *qe = job->qe;

	if (job->rc != 0 && queue_entry_relocate(q, qe, job->where,
	    job->where_area))
		return;			/* qe is gone */
	if (job->rc == 0 || qe->area == SPOOL_QUARANTINE) {
		log_warnx("msg=%s quarantined reason=unreadable", qe->id);
		queue_entry_remove(q, qe);
	} else {
		queue_entry_busy(q, qe, false);
		queue_entry_due(q, qe, queue_now(q) +
		    (time_t)q->cf->retry_max);
	}
}

/* Loop: a delivered message is removed (or will be delivered again). */
static void
queue_job_delete_done(struct queue *q, struct queue_job *job)
{
	struct queue_entry *qe = job->qe;

	if (job->rc == 0) {
		log_info("msg=%s removed", qe->id);
		queue_entry_remove(q, qe);
		if (q->outage_noticed)
			q->outage_delivered++;
	} else if (!queue_entry_relocate(q, qe, job->where,
	    job->where_area)) {
		/* It will be delivered again: a duplicate, not a loss. */
		log_warnx("msg=%s delivered but not removed; it may "
		    "be delivered twice", qe->id);
		queue_entry_busy(q, qe, false);
	}
}

/* Loop: a refused or expired message is in dead/ (or still queued). */
static void
queue_job_dead_done(struct queue *q, struct queue_job *job)
{
	struct queue_entry *qe = job->qe;

	queue_entry_busy(q, qe, false);
	if (job->rc != 0) {
		if (queue_entry_relocate(q, qe, job->where, job->where_area))
			return;		/* qe freed */
		/* Still queued (e.g. a full disk): not again at once, or
		 * expiry spins on the disk and the log. */
		if (qe->area == SPOOL_QUEUE) {
			time_t later = queue_now(q) + (time_t)q->cf->retry_min;

			queue_entry_due(q, qe, later);
			if (queue_entry_expiry(q, qe) < later)
				dueheap_set_due(&q->expiry, &qe->si_exp,
				    later);
		}
		if (qe->area != SPOOL_DEAD)
			return;
	}
	log_warnx("msg=%s moved to dead reason=%s", qe->id,
	    job->env->dead_reason);
	queue_entry_set_area(q, qe, SPOOL_DEAD);
	qe->refused = strcmp(job->env->dead_reason, "refused") == 0;
	if (qe->refused)
		queue_refused_dead(q, qe);
	queue_notify_dead(q, qe->id, job->env->dead_reason);
}

static void
queue_job_done(void *arg)
{
	struct queue_job *job = arg;
	struct queue *q = job->q;

	switch (job->op) {
	case QUEUE_OP_REWRITE:
		/* On failure the old envelope stands: recipients delivered
		 * since may be sent again, nothing is lost. */
		queue_entry_busy(q, job->qe, false);
		break;
	case QUEUE_OP_SPLIT:
		queue_job_split_done(q, job);
		break;
	case QUEUE_OP_QUARANTINE:
		queue_job_quarantine_done(q, job);
		break;
	case QUEUE_OP_DELETE:
		queue_job_delete_done(q, job);
		break;
	case QUEUE_OP_DEAD:
		queue_job_dead_done(q, job);
		break;
	}
	envelope_free(job->env);
	envelope_free(job->deadenv);
	free(job->envtext);
	free(job);
	queue_dispatch_soon(q);
}

void
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
		queue_entry_busy(q, qe, true);
	workpool_submit(q->wp, queue_job_work, queue_job_done, job);
}

/* Loop: a commit is over; index the message if it is durable. */
static void
queue_commit_done(void *arg, int err)
{
	struct queue_commit *qc = arg;
	struct queue *q = qc->q;
	struct queue_entry *qe;

	if (err == 0) {
		qe = queue_entry_new(qc->env, SPOOL_QUEUE);
		qe->si.due = 0;
		queue_entry_add(q, qe);
		metrics_inc(M_MSGS_ACCEPTED);
	}
	qc->cb(qc->arg, err, qc->env);
	envelope_free(qc->env);
	free(qc);
	queue_dispatch_soon(q);
}

void
queue_submit(struct queue *q, struct spool_msg *msg, struct envelope *env,
    void (*cb)(void *arg, int err, const struct envelope *env), void *arg)
{
	struct queue_commit *qc = xcalloc(1, sizeof(*qc));
	char *text;
	size_t len;

	env->next_attempt = env->arrival;
	qc->q = q;
	qc->env = env;
	qc->cb = cb;
	qc->arg = arg;
	text = envelope_dump(env, &len);
	commit_submit(q->commit, msg, text, len, queue_commit_done, qc);
}

/* ---- the primary's state ---- */

static void
queue_primary_set(struct queue *q, bool up, const char *reply)
{
	char esc[LOG_ESCAPE_MAX];

	if (q->primary_up == up)
		return;
	q->primary_up = up;
	q->primary_since = queue_now(q);
	if (up) {
		size_t i;

		log_info("primary up host=%s port=%" PRIu64, q->cf->primary_host,
		    q->cf->primary_port);
		/* Once per outage: what waited for the primary is due now. */
		for (i = 0; i < dueheap_count(&q->sched); i++) {
			struct queue_entry *qe = queue_entry_of(dueheap_at(
			    &q->sched, i), si);

			if (qe->site_wait) {
				qe->site_wait = false;
				qe->si.due = 0;
			}
		}
		dueheap_fix(&q->sched);
	}
	else {
		util_copy(q->primary_reply, sizeof(q->primary_reply),
		    reply != NULL ? reply : "");
		log_warnx("primary down host=%s port=%" PRIu64 " reason=%s",
		    q->cf->primary_host, q->cf->primary_port,
		    log_escape(reply, strlen(reply), esc, sizeof(esc)));
		q->next_probe = queue_now(q) + (time_t)q->cf->probe_interval;
	}
}

/* ---- what the primary accepts ---- */

uint64_t
queue_size_limit_calc(uint64_t max, uint64_t primary_size)
{
	uint64_t headroom, lim;

	if (primary_size == 0)
		return max;
	headroom = primary_size >= 2 * QUEUE_SIZE_HEADROOM ?
	    QUEUE_SIZE_HEADROOM : primary_size / 2;
	lim = primary_size - headroom;
	if (lim == 0)
		lim = 1;
	return lim < max ? lim : max;
}

bool
queue_size_fits_primary(uint64_t primary_size, uint64_t size,
    uint64_t nrcpt, uint64_t rcpt_octets)
{
	uint64_t cost = QUEUE_SIZE_FIXED;

	/* A tiny SIZE keeps only the halved headroom of the limit. */
	if (primary_size < 2 * QUEUE_SIZE_HEADROOM)
		return true;
	if (nrcpt > UINT32_MAX || rcpt_octets > UINT32_MAX)
		return false;
	cost += nrcpt * QUEUE_SIZE_PER_RCPT + 3 * rcpt_octets;
	return cost <= primary_size && size <= primary_size - cost;
}

bool
queue_size_fits(const struct queue *q, uint64_t size,
    const struct envelope *env)
{
	uint64_t octets = 0;
	size_t i;

	if (size > queue_size_limit(q))
		return false;
	if (!q->primary_known || q->primary_size == 0)
		return true;
	for (i = 0; i < env->nrcpt; i++)
		octets += strlen(env->rcpts[i].addr);
	return queue_size_fits_primary(q->primary_size, size, env->nrcpt,
	    octets);
}

uint64_t
queue_size_limit(const struct queue *q)
{
	return queue_size_limit_calc(q->cf->max_message_size,
	    q->primary_known ? q->primary_size : 0);
}

bool
queue_primary_has_smtputf8(const struct queue *q)
{
	return !q->primary_known || q->primary_smtputf8;
}

static int
queue_primary_store(struct queue *q)
{
	char buf[96];

	snprintf(buf, sizeof(buf), "size=%" PRIu64 " smtputf8=%s "
	    "8bitmime=%s\n", q->primary_size,
	    q->primary_smtputf8 ? "yes" : "no",
	    q->primary_8bitmime ? "yes" : "no");
	return spool_state_write(q->spool, QUEUE_PRIMARY_FILE, buf);
}

void
queue_primary_learn(struct queue *q, uint64_t size, bool smtputf8,
    bool eightbitmime)
{
	uint64_t was = queue_size_limit(q);

	if (q->primary_known && q->primary_size == size &&
	    q->primary_smtputf8 == smtputf8 &&
	    q->primary_8bitmime == eightbitmime)
		return;
	q->primary_known = true;
	q->primary_size = size;
	q->primary_smtputf8 = smtputf8;
	q->primary_8bitmime = eightbitmime;
	log_info("primary offers size=%" PRIu64 " smtputf8=%s 8bitmime=%s "
	    "size_limit=%" PRIu64 " was=%" PRIu64, size,
	    smtputf8 ? "yes" : "no", eightbitmime ? "yes" : "no",
	    queue_size_limit(q), was);
	if (queue_primary_store(q) == -1)
		log_warnx("primary's limits not persisted; a restart forgets "
		    "them until the primary is reached");
}

/* Load what the primary offered before the restart. */
static void
queue_primary_load(struct queue *q)
{
	char buf[96], utf8[8], eight[8];
	unsigned long long size;

	if (spool_state_read(q->spool, QUEUE_PRIMARY_FILE, buf,
	    sizeof(buf)) == -1)
		return;
	if (sscanf(buf, "size=%llu smtputf8=%3[a-z] 8bitmime=%3[a-z]", &size,
	    utf8, eight) != 3) {
		log_warnx("primary-ehlo file unreadable; size limit is "
		    "max_message_size until the primary is reached");
		return;
	}
	q->primary_known = true;
	q->primary_size = size;
	q->primary_smtputf8 = strcmp(utf8, "yes") == 0;
	q->primary_8bitmime = strcmp(eight, "yes") == 0;
	log_info("primary offers (restored) size=%llu smtputf8=%s "
	    "8bitmime=%s size_limit=%" PRIu64, size, utf8, eight,
	    queue_size_limit(q));
}

/* ---- delivery results ---- */

static const char *
queue_rcpt_reply(const struct drain_job *job, size_t i)
{
	return job->results[i].reply[0] != '\0' ? job->results[i].reply :
	    job->reply;
}

/* The health probe is over: is the primary there at all? */
static void
queue_probe_done(struct queue *q, struct drain_job *job)
{
	q->probing = false;
	queue_primary_set(q, !job->site_failure, job->reply);
	if (job->site_failure)
		q->next_probe = queue_now(q) + (time_t)q->cf->probe_interval;
	free(job);
}

/* The primary could not be used: the message waits for it. */
static void
queue_site_wait(struct queue *q, struct drain_job *job,
    const struct policy_decision *d)
{
	struct queue_entry *qe = job->owner;
	char esc[LOG_ESCAPE_MAX];

	log_info("msg=%s deferred reason=primary-unavailable reply=%s",
	    job->env->id, log_escape(job->reply, strlen(job->reply), esc,
	    sizeof(esc)));
	queue_primary_set(q, false, job->reply);
	q->next_probe = d->next_attempt;
	/*
	 * Not before the next probe round, so that one message that
	 * breaks sessions cannot be the only one ever probed with; the
	 * primary's return makes it due again at once.
	 */
	queue_entry_due(q, qe, q->next_probe);
	qe->site_wait = true;
	queue_entry_busy(q, qe, false);
}

/* Each answered recipient takes its reply and state; deliveries logged. */
static void
queue_rcpts_apply(struct queue *q, struct drain_job *job,
    const struct policy_decision *d, time_t now)
{
	struct envelope *env = job->env;
	char esc[LOG_ESCAPE_MAX], delay[32], rcpt[LOG_ESCAPE_MAX];
	size_t i;

	util_fmt_duration((uint64_t)(now - env->arrival), delay, sizeof(delay));
	for (i = 0; i < env->nrcpt; i++) {
		struct envelope_rcpt *r = &env->rcpts[i];
		const char *reply = queue_rcpt_reply(job, i);

		if (d->rcpt[i] == POLICY_RCPT_UNTOUCHED)
			continue;
		envelope_set_str(&r->reply, reply);
		if (d->rcpt[i] == POLICY_RCPT_DEAD)
			r->state = ENVELOPE_RCPT_DEAD;
		if (d->rcpt[i] != POLICY_RCPT_DONE)
			continue;
		r->state = ENVELOPE_RCPT_DONE;
		q->last_delivery = now;
		metrics_inc(M_DELIVERIES_DELIVERED);
		log_addr(r->addr, rcpt, sizeof(rcpt));
		log_info("msg=%s delivered rcpt=%s delay=%s reply=%s",
		    env->id, rcpt, delay, log_escape(reply, strlen(reply), esc,
		    sizeof(esc)));
	}
}

/* The refused recipients: dead, or kept while the breaker is open. */
static void
queue_rcpts_refused(const struct envelope *env,
    const struct policy_decision *d)
{
	char esc[LOG_ESCAPE_MAX], rcpt[LOG_ESCAPE_MAX];
	size_t i;

	for (i = 0; i < env->nrcpt; i++) {
		const struct envelope_rcpt *r = &env->rcpts[i];

		if (d->rcpt[i] != POLICY_RCPT_DEAD &&
		    d->rcpt[i] != POLICY_RCPT_KEPT)
			continue;
		log_escape(r->reply, strlen(r->reply), esc, sizeof(esc));
		log_addr(r->addr, rcpt, sizeof(rcpt));
		if (d->rcpt[i] == POLICY_RCPT_KEPT) {
			log_warnx("msg=%s kept rcpt=%s reason=primary-refusing "
			    "reply=%s", env->id, rcpt, esc);
			continue;
		}
		metrics_inc(M_DELIVERIES_DEAD);
		log_warnx("msg=%s dead rcpt=%s reason=refused reply=%s",
		    env->id, rcpt, esc);
	}
}

static void
queue_breaker_apply(struct queue *q, const struct policy_decision *d)
{
	switch (d->breaker) {
	case POLICY_BREAKER_KEEP:
		break;
	case POLICY_BREAKER_RESET:
		q->refuse_streak = q->nstreak = 0;
		break;
	case POLICY_BREAKER_COUNT:
		q->refuse_streak = d->refuse_streak;
		break;
	case POLICY_BREAKER_TRIP:
		q->refuse_streak = d->refuse_streak;
		queue_breaker_trip(q);
		break;
	}
}

/* The primary answered: recipients, its state, the breaker, in order. */
static void
queue_attempt_apply(struct queue *q, struct drain_job *job,
    const struct policy_decision *d, time_t now)
{
	struct queue_entry *qe = job->owner;

	qe->site_wait = false;
	queue_rcpts_apply(q, job, d, now);
	if (d->contact)
		queue_primary_set(q, true, NULL);
	queue_breaker_apply(q, d);
	queue_rcpts_refused(job->env, d);
}

/* Pending recipients left: persist the attempt, due after the backoff. */
static void
queue_defer(struct queue *q, struct drain_job *job,
    const struct policy_decision *d)
{
	struct queue_entry *qe = job->owner;
	struct envelope *env = job->env;
	char esc[LOG_ESCAPE_MAX];

	env->attempts = d->attempts;
	env->next_attempt = d->next_attempt;
	queue_entry_due(q, qe, env->next_attempt);
	if (d->reply_rcpt != POLICY_NONE)
		envelope_set_str(&env->last_reply,
		    env->rcpts[d->reply_rcpt].reply);
	else
		envelope_set_str(&env->last_reply, job->reply[0] != '\0' ?
		    job->reply : "deferred");
	queue_entry_set_attempts(q, qe, env->attempts);
	metrics_inc(M_DELIVERIES_DEFERRED);
	log_info("msg=%s deferred attempt=%" PRIu64 " reply=%s "
	    "next=+%" PRIu64 "s", env->id, env->attempts,
	    log_escape(env->last_reply, strlen(env->last_reply), esc,
	    sizeof(esc)), d->wait);
	queue_job_start(q, d->fate == POLICY_SPLIT ? QUEUE_OP_SPLIT :
	    QUEUE_OP_REWRITE, qe, env);
}

/*
 * A delivery attempt is over: policy_after_attempt() decides, this
 * applies the decision (logs, metrics, the primary's state, the breaker,
 * the disk job) in that order.
 */
static void
queue_drain_done(void *arg, struct drain_job *job)
{
	struct queue *q = arg;
	struct queue_entry *qe = job->owner;
	struct envelope *env = job->env;
	struct policy_attempt a;
	struct policy_decision d = { 0 };

	if (job->greeted)
		queue_primary_learn(q, job->primary_size,
		    job->primary_smtputf8, job->primary_8bitmime);
	if (env == NULL) {
		queue_probe_done(q, job);
		return;
	}
	close(job->body_fd);
	q->probing = false;
	a = (struct policy_attempt){ env, job->results, job->site_failure,
	    queue_now(q), queue_rand(), queue_is_refusing(q),
	    q->refuse_streak };
	d.rcpt = xreallocarray(NULL, env->nrcpt + 1, sizeof(*d.rcpt));
	policy_after_attempt(q->cf, &a, &d);
	switch (d.fate) {
	case POLICY_SITE_WAIT:
		queue_site_wait(q, job, &d);
		envelope_free(env);
		break;
	case POLICY_DELIVERED:
		queue_attempt_apply(q, job, &d, a.now);
		queue_job_start(q, QUEUE_OP_DELETE, qe, env);
		break;
	case POLICY_DEAD:
		queue_attempt_apply(q, job, &d, a.now);
		envelope_set_str(&env->dead_reason, "refused");
		queue_job_start(q, QUEUE_OP_DEAD, qe, env);
		break;
	case POLICY_DEFER:
	case POLICY_SPLIT:
		queue_attempt_apply(q, job, &d, a.now);
		queue_defer(q, job, &d);
		break;
	}
	free(d.rcpt);
	free(job->results);
	free(job);
}

/* ---- scheduling ---- */

/* What reading an envelope from an area gave. */
enum queue_env_read {
	QUEUE_ENV_OK,
	QUEUE_ENV_MISSING,	/* no such envelope (errno ENOENT) */
	QUEUE_ENV_CORRUPT,	/* read but not an envelope of that ID
				 * (logged; errno EINVAL) */
	QUEUE_ENV_IOERR,	/* not read (errno; the spool logged it) */
};

/* The one reader of an envelope: *envp is the caller's on QUEUE_ENV_OK,
 * NULL otherwise.  Each caller decides what a failure means. */
static enum queue_env_read
queue_env_read(struct queue *q, enum spool_area area, const char *id,
    struct envelope **envp)
{
	struct envelope *env;
	char *text, err[256];
	size_t len;

	*envp = NULL;
	if (spool_env_read(q->spool, area, id, &text, &len) == -1)
		return errno == ENOENT ? QUEUE_ENV_MISSING : QUEUE_ENV_IOERR;
	env = envelope_load(text, len, err, sizeof(err));
	free(text);
	if (env == NULL || strcmp(env->id, id) != 0) {
		log_warnx("msg=%s unreadable envelope reason=\"%s\"", id,
		    env == NULL ? err : "id mismatch");
		envelope_free(env);
		errno = EINVAL;
		return QUEUE_ENV_CORRUPT;
	}
	*envp = env;
	return QUEUE_ENV_OK;
}

/*
 * Read a queued message's envelope.  NULL if it cannot be had now: an
 * unreadable one is quarantined, a missing one dropped from the index (both
 * logged), anything else retried later.
 */
struct envelope *
queue_env_get(struct queue *q, struct queue_entry *qe)
{
	struct envelope *env;

	switch (queue_env_read(q, SPOOL_QUEUE, qe->id, &env)) {
	case QUEUE_ENV_OK:
		break;
	case QUEUE_ENV_MISSING:
		log_warnx("msg=%s vanished from the spool", qe->id);
		queue_entry_remove(q, qe);
		break;
	case QUEUE_ENV_CORRUPT:
		queue_job_start(q, QUEUE_OP_QUARANTINE, qe, NULL);
		break;
	case QUEUE_ENV_IOERR:
		queue_entry_due(q, qe, queue_now(q) +
		    (time_t)q->cf->retry_min);
		break;
	}
	return env;
}

/* What became of a message queue_send() was asked to send. */
enum queue_send {
	QUEUE_SEND_HANDED,	/* the drain has it (it may have answered) */
	QUEUE_SEND_SKIPPED,	/* not sent: rescheduled, or the entry gone */
	QUEUE_SEND_FULL,	/* every drain connection is busy */
};

/* Load a message and hand it to the drain. */
static enum queue_send
queue_send(struct queue *q, struct queue_entry *qe)
{
	struct drain_job *job;
	struct envelope *env;
	int fd;

	if ((env = queue_env_get(q, qe)) == NULL)
		return QUEUE_SEND_SKIPPED;
	env->age_base = qe->age_base;	/* the index's, see hold-mode */
	if ((fd = spool_body_open(q->spool, SPOOL_QUEUE, qe->id)) == -1) {
		envelope_free(env);
		queue_entry_due(q, qe, queue_now(q) +
			    (time_t)q->cf->retry_min);
		return QUEUE_SEND_SKIPPED;
	}
	job = xcalloc(1, sizeof(*job));
	job->env = env;
	job->body_fd = fd;
	job->owner = qe;
	job->results = xcalloc(env->nrcpt, sizeof(*job->results));
	/* Busy before the call: drain may report back synchronously. */
	queue_entry_busy(q, qe, true);
	if (drain_send(q->drain, job) == -1) {
		queue_entry_busy(q, qe, false);
		close(fd);
		envelope_free(env);
		free(job->results);
		free(job);
		return QUEUE_SEND_FULL;
	}
	return QUEUE_SEND_HANDED;
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
	metrics_inc(M_DELIVERIES_EXPIRED);
	log_warnx("msg=%s expired age=%" PRIu64 "s attempts=%" PRIu64, env->id,
	    (uint64_t)(queue_now(q) - env->arrival), env->attempts);
	queue_job_start(q, QUEUE_OP_DEAD, qe, env);
}

/*
 * With nothing to deliver, the primary's state would go stale (and its
 * metric with it): look at it now and then, every probe_interval while it
 * is down, every QUEUE_HEALTH_SEC while it is up.
 */
static void
queue_health_probe(struct queue *q, time_t now)
{
	struct drain_job *job;

	if (q->probing || now < q->next_health ||
	    drain_connections(q->drain) > 0)
		return;
	q->next_health = now + (time_t)(q->primary_up ? QUEUE_HEALTH_SEC :
	    q->cf->probe_interval);
	job = xcalloc(1, sizeof(*job));
	job->body_fd = -1;
	q->probing = true;
	if (drain_send(q->drain, job) == -1) {
		q->probing = false;
		free(job);
	}
}

/*
 * Send what is due, oldest first, up to the drain's limit; expire what
 * outlived its lifetime.  Its cost is that of the messages it acts on
 * (each O(log n)), never of the backlog: while the primary is down and
 * not to be probed yet it looks at one heap top and stops.
 */
static void
queue_dispatch(struct queue *q)
{
	struct dueheap_item *it;
	struct policy_gate g;
	time_t now = queue_now(q);

	if (q->drain == NULL)
		return;
	/* hold-mode's end credits every message: not before all are indexed */
	if (q->hold_until != 0 && queue_is_loading(q))
		return;
	policy_dispatch_gate(q->hold_until, q->refusing_until, now, &g);
	if (g.hold_over)
		queue_hold_mode_end(q, "expired");
	if (g.pause_over)
		queue_breaker_reset(q, "pause-over");
	if (!g.may_send)
		return;		/* accept-and-hold, or the breaker's pause */
	while ((it = dueheap_first(&q->expiry)) != NULL &&
	    policy_is_expired(it->due, now)) {
		queue_expire(q, queue_entry_of(it, si_exp));
		if (dueheap_first(&q->expiry) == it)
			break;		/* could not be read: later */
	}
	while ((it = dueheap_first(&q->sched)) != NULL && it->due <= now) {
		struct queue_entry *qe = queue_entry_of(it, si);

		if (!q->primary_up) {
			/* One message at a time probes a down primary. */
			if (q->probing || now < q->next_probe)
				break;
			q->probing = true;	/* drain may answer at once */
			if (queue_send(q, qe) != QUEUE_SEND_HANDED)
				q->probing = false;
		} else if (queue_send(q, qe) == QUEUE_SEND_FULL)
			break;
		if (dueheap_first(&q->sched) == it && it->due <= now)
			break;		/* neither sent nor rescheduled */
	}
	queue_health_probe(q, now);
}

static void
queue_dispatch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct queue *q = arg;

	(void)fd;
	(void)what;
	q->dispatch_queued = false;
	queue_dispatch(q);
}

/*
 * Dispatch on the next loop turn: however many results and commits come
 * back in one turn, the queue is looked at once.
 */
void
queue_dispatch_soon(struct queue *q)
{
	if (q->dispatch_queued || q->dispatch_ev == NULL)
		return;
	q->dispatch_queued = true;
	event_active(q->dispatch_ev, EV_TIMEOUT, 0);
}

/* ---- notices ([notify] exec) ---- */

static void
queue_notify_dead(struct queue *q, const char *id, const char *reason)
{
	char summary[256], ndead[32];
	size_t n = q->count[SPOOL_DEAD];

	if (q->notify == NULL)
		return;
	snprintf(ndead, sizeof(ndead), "%zu", n);
	snprintf(summary, sizeof(summary), "%s: message %s moved to dead/ "
	    "(%s); %zu dead letters wait for an operator", q->cf->hostname,
	    id, reason, n);
	notify_send(q->notify, NOTIFY_DEAD_LETTER, summary,
	    (struct notify_var[]){ { "MSG_ID", id }, { "REASON", reason },
	    { "DEAD", ndead } }, 3);
}

/* The primary down for longer than primary_down_after: once per outage. */
static void
queue_watch_outage(struct queue *q, time_t now)
{
	char summary[256], a[32], b[32], c[32], d1[32];

	q->outage_noticed = true;
	q->outage_since = q->primary_since;
	q->outage_delivered = 0;
	util_fmt_duration((uint64_t)(now - q->primary_since), d1, sizeof(d1));
	snprintf(a, sizeof(a), "%lld", (long long)(now - q->primary_since));
	snprintf(b, sizeof(b), "%zu", q->n);
	snprintf(c, sizeof(c), "%lld", (long long)q->primary_since);
	snprintf(summary, sizeof(summary), "%s: primary %s:%" PRIu64
	    " down for %s; %zu messages queued, safe in the spool",
	    q->cf->hostname, q->cf->primary_host, q->cf->primary_port, d1,
	    q->n);
	notify_send(q->notify, NOTIFY_PRIMARY_DOWN, summary,
	    (struct notify_var[]){ { "DOWN_SECONDS", a }, { "QUEUED", b },
	    { "DOWN_SINCE", c }, { "PRIMARY", q->cf->primary_host } }, 4);
}

/* Back after a noticed outage, with queue/ empty again. */
static void
queue_watch_drained(struct queue *q, time_t now)
{
	char summary[256], a[32], b[32], c[32], d1[32], d2[32];

	q->outage_noticed = false;
	util_fmt_duration((uint64_t)(q->primary_since - q->outage_since), d1,
	    sizeof(d1));
	util_fmt_duration((uint64_t)(now - q->primary_since), d2, sizeof(d2));
	snprintf(a, sizeof(a), "%" PRIu64, q->outage_delivered);
	snprintf(b, sizeof(b), "%lld", (long long)(q->primary_since -
	    q->outage_since));
	snprintf(c, sizeof(c), "%lld", (long long)(now - q->primary_since));
	snprintf(summary, sizeof(summary), "%s: primary %s back after %s; %"
	    PRIu64 " messages delivered, queue drained in %s",
	    q->cf->hostname, q->cf->primary_host, d1, q->outage_delivered, d2);
	notify_send(q->notify, NOTIFY_PRIMARY_DRAINED, summary,
	    (struct notify_var[]){ { "MESSAGES", a }, { "DOWN_SECONDS", b },
	    { "DRAIN_SECONDS", c }, { "PRIMARY", q->cf->primary_host } }, 4);
}

/* Free space crossing min_free, downwards: one notice. */
static void
queue_watch_spool(struct queue *q, time_t now)
{
	char summary[256], a[32], b[32];
	long long fb = spool_free_bytes(q->spool);

	q->next_spool_check = now + QUEUE_SPOOL_CHECK_SEC;
	if (fb >= 0 && (uint64_t)fb < q->cf->min_free && !q->spool_low) {
		snprintf(a, sizeof(a), "%lld", fb);
		snprintf(b, sizeof(b), "%" PRIu64, q->cf->min_free);
		snprintf(summary, sizeof(summary), "%s: spool has %lld bytes "
		    "free, below min_free %" PRIu64 ": new mail gets 452",
		    q->cf->hostname, fb, q->cf->min_free);
		notify_send(q->notify, NOTIFY_SPOOL_LOW, summary,
		    (struct notify_var[]){ { "FREE_BYTES", a },
		    { "MIN_FREE", b } }, 2);
	}
	if (fb >= 0)
		q->spool_low = (uint64_t)fb < q->cf->min_free;
}

/* The STARTTLS certificate's end near: once a day per certificate; a
 * renewed one starts afresh. */
static void
queue_watch_cert(struct queue *q, time_t now)
{
	char summary[256], a[32], b[32], d2[32];
	time_t end = tls_server_not_after(q->tls);

	q->next_cert_check = now + QUEUE_CERT_CHECK_SEC;
	if (end == 0 || end - now >= QUEUE_CERT_WARN_SEC ||
	    (end == q->cert_noticed &&
	    now - q->cert_noticed_at < QUEUE_CERT_REPEAT_SEC))
		return;
	q->cert_noticed = end;
	q->cert_noticed_at = now;
	snprintf(a, sizeof(a), "%lld", (long long)end);
	snprintf(b, sizeof(b), "%lld", (long long)(end - now));
	if (end > now)
		util_fmt_duration((uint64_t)(end - now), d2, sizeof(d2));
	snprintf(summary, sizeof(summary), "%s: the STARTTLS certificate %s%s; "
	    "check certbot and its deploy hook", q->cf->hostname,
	    end > now ? "expires in " : "has expired", end > now ? d2 : "");
	notify_send(q->notify, NOTIFY_CERT_EXPIRY, summary,
	    (struct notify_var[]){ { "NOT_AFTER", a },
	    { "SECONDS_LEFT", b } }, 2);
}

/*
 * Once a second: the primary down for longer than primary_down_after (one
 * notice per outage), then back with queue/ empty again (the drained
 * notice, with the messages delivered since the first one), free space
 * crossing min_free, and the certificate's end.
 */
static void
queue_watch(struct queue *q, time_t now)
{
	if (q->notify == NULL)
		return;
	if (!q->primary_up && !q->outage_noticed &&
	    now - q->primary_since >= (time_t)q->cf->notify_primary_down_after)
		queue_watch_outage(q, now);
	if (q->primary_up && q->outage_noticed && q->n == 0)
		queue_watch_drained(q, now);
	if (now >= q->next_spool_check)
		queue_watch_spool(q, now);
	if (now >= q->next_cert_check)
		queue_watch_cert(q, now);
}

void
queue_set_notify(struct queue *q, struct notify *n)
{
	q->notify = n;
}

static void
queue_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	queue_dispatch(arg);
	queue_watch(arg, queue_now(arg));
}

/* ---- envelopes of indexed messages (queue_ops.c's too) ---- */

/* Load the envelope of an indexed message in any area. */
struct envelope *
queue_env_load(struct queue *q, struct queue_entry *qe)
{
	struct envelope *env;

	(void)queue_env_read(q, qe->area, qe->id, &env);
	return env;
}

void
queue_breaker_reset(struct queue *q, const char *why)
{
	if (queue_is_refusing(q))
		log_info("primary refusing ended reason=%s", why);
	q->refusing_until = 0;
	q->refuse_streak = 0;
	q->nstreak = 0;
}

/* A message dead by refusal: while the breaker is open it goes straight
 * back; otherwise it is remembered as part of the current streak. */
static void
queue_refused_dead(struct queue *q, struct queue_entry *qe)
{
	if (queue_is_refusing(q)) {
		/* off the loop like every requeue (queue_act), in a slice */
		const char *id = qe->id;

		if (queue_act(q, QUEUE_ACT_REQUEUE, &id, 1, "primary-refusing",
		    NULL, NULL, NULL) == -1)
			log_warn("msg=%s primary refusing: not requeued, stays "
			    "in dead/", qe->id);
		return;
	}
	if (q->streak_ids == NULL)
		q->streak_ids = xcalloc(q->cf->refuse_limit,
		    sizeof(*q->streak_ids));
	if (q->nstreak < q->cf->refuse_limit)
		util_copy(q->streak_ids[q->nstreak++], SPOOL_ID_LEN + 1,
		    qe->id);
}

/* refuse_limit messages refused in a row: a misconfigured primary, most
 * likely.  Pause, and put the streak's dead letters back. */
static void
queue_breaker_trip(struct queue *q)
{
	const char **ids;
	size_t i;

	q->refusing_until = queue_now(q) + (time_t)q->cf->refuse_pause;
	log_warnx("primary refusing host=%s messages=%" PRIu64 " pause=%" PRIu64
	    "s; refused mail stays queued", q->cf->primary_host,
	    q->refuse_streak, q->cf->refuse_pause);
	/* Up to refuse_limit (10000) of them: in slices (bulk.c).  One
	 * still busy moving to dead/ is requeued when the move is done. */
	ids = xreallocarray(NULL, q->nstreak + 1, sizeof(*ids));
	for (i = 0; i < q->nstreak; i++)
		ids[i] = q->streak_ids[i];
	if (queue_act(q, QUEUE_ACT_REQUEUE, ids, q->nstreak,
	    "primary-refusing", NULL, NULL, NULL) == -1)
		log_warnx("primary refusing: the streak's dead letters stay "
		    "in dead/ (too many bulk operations waiting)");
	free(ids);
	q->nstreak = 0;
}

/*
 * Bring q->age up to now: the entries whose bucket ended move on (each
 * crosses at most SELECT_NBUCKETS - 1 boundaries in its life).  If the
 * clock went back, every queued entry is placed again.
 */
static void
queue_stats_age(struct queue *q, time_t now)
{
	struct dueheap_item *it;
	struct queue_entry *qe;

	if (now < q->age_now) {
		dueheap_fini(&q->ages);
		dueheap_init(&q->ages);
		memset(q->age, 0, sizeof(q->age));
		TAILQ_FOREACH(qe, &q->areas[SPOOL_QUEUE], entry)
			if (qe->stat != 0)
				queue_entry_age_add(q, qe, now);
	}
	q->age_now = now;
	while ((it = dueheap_first(&q->ages)) != NULL && it->due <= now) {
		time_t end;

		qe = queue_entry_of(it, si_age);
		q->age[qe->bucket]--;
		qe->bucket = (unsigned char)select_bucket(qe->arrival < now ?
		    (uint64_t)(now - qe->arrival) : 0);
		q->age[qe->bucket]++;
		if ((end = queue_entry_bucket_end(qe, qe->bucket)) == 0)
			dueheap_del(&q->ages, it);
		else
			dueheap_set_due(&q->ages, it, end);
	}
}

void
queue_stats_get(struct queue *q, struct queue_stats *st)
{
	const struct dueheap_item *it;
	size_t i;

	memset(st, 0, sizeof(*st));
	st->now = queue_now(q);
	for (i = 0; i < QUEUE_STATS_NSTATES; i++) {
		st->state[i].messages = q->st_msgs[i];
		st->state[i].bytes = q->st_bytes[i];
		if ((it = dueheap_first(&q->oldest[i])) != NULL)
			st->state[i].oldest = it->arrival;
	}
	for (i = QUEUE_STATS_QUEUED; i <= QUEUE_STATS_DEFERRED; i++)
		if (st->state[i].oldest != 0 && (st->oldest == 0 ||
		    st->state[i].oldest < st->oldest))
			st->oldest = st->state[i].oldest;
	queue_stats_age(q, st->now);
	memcpy(st->age, q->age, sizeof(st->age));
	st->primary_up = q->primary_up;
	st->primary_since = q->primary_since;
	st->last_delivery = q->last_delivery;
	st->primary_known = q->primary_known;
	st->primary_size = q->primary_known ? q->primary_size : 0;
	st->primary_smtputf8 = q->primary_smtputf8;
	st->size_limit = queue_size_limit(q);
	st->refusing = queue_is_refusing(q);
	st->hold_mode = q->hold_until != 0;
	st->hold_until = q->hold_until;
	st->spool_free_bytes = spool_free_bytes(q->spool);
	st->spool_low = st->spool_free_bytes >= 0 &&
	    (uint64_t)st->spool_free_bytes < q->cf->min_free;
	st->spool_suspect = spool_is_suspect(q->spool);
	st->started = q->started;
	bulk_state(q->bulk, &st->bulk);
	if (q->load != NULL) {
		st->load_done = q->load_next;
		st->load_total = q->nload;
	}
}

bool
queue_is_healthy(struct queue *q)
{
	return spool_free_bytes(q->spool) >= 0 &&
	    !spool_is_suspect(q->spool);
}

/* ---- lifecycle ---- */

static int
queue_scan_cb(void *arg, enum spool_area area, const char *id)
{
	struct queue *q = arg;
	struct envelope *env;

	if (area != SPOOL_QUEUE && area != SPOOL_HOLD && area != SPOOL_DEAD)
		return 0;
	if (queue_env_read(q, area, id, &env) != QUEUE_ENV_OK)
		return -1;
	queue_entry_add(q, queue_entry_new(env, area));
	envelope_free(env);
	return 0;
}

/*
 * The spool's question for a new message's ID (spool_set_id_index()): is
 * it in queue/, hold/ or dead/?  Known once the startup scan has indexed
 * every message; the index follows each move and drops an entry only after
 * its file is gone.
 */
static int
queue_id_taken(void *arg, const char *id)
{
	struct queue *q = arg;

	if (!q->loaded)
		return -1;
	return queue_entry_find(q, id) != NULL;
}

struct queue *
queue_new(struct event_base *base, const struct config *cf, struct spool *sp,
    struct workpool *wp, struct dns *dns, struct tls *tls)
{
	struct queue *q = xcalloc(1, sizeof(*q));

	q->dns = dns;
	q->tls = tls;
	q->base = base;
	q->cf = cf;
	q->spool = sp;
	spool_set_id_index(sp, queue_id_taken, q);
	q->wp = wp;
	for (size_t a = 0; a < SPOOL_NAREAS; a++)
		TAILQ_INIT(&q->areas[a]);
	dueheap_init(&q->sched);
	dueheap_init(&q->expiry);
	for (size_t i = 0; i < QUEUE_STATS_NSTATES; i++)
		dueheap_init(&q->oldest[i]);
	dueheap_init(&q->ages);
	q->dispatch_ev = event_new(base, -1, 0, queue_dispatch_cb, q);
	if (q->dispatch_ev == NULL)
		fatalx("queue dispatch event");
	q->commit = commit_new(sp, wp);
	q->bulk = bulk_new(base);
	q->bulk_rewrite = (struct queue_bulk){ q, SPOOL_QUEUE,
	    queue_rewrite_entry };
	/* Assume up: the first attempt finds out. */
	q->primary_up = true;
	q->primary_since = q->started = util_now();
	return q;
}

bool
queue_is_loading(const struct queue *q)
{
	return q->load != NULL;
}

static void
queue_load_list_cb(void *arg, enum spool_area area, const char *name)
{
	struct queue *q = arg;

	if (q->nload == q->load_alloc) {
		q->load_alloc = q->load_alloc == 0 ? 1024 : q->load_alloc * 2;
		q->load = xreallocarray(q->load, q->load_alloc,
		    sizeof(*q->load));
	}
	/* IDs inline: 100 000 small strdups would stay in the heap as
	 * holes between the index entries */
	memset(&q->load[q->nload], 0, sizeof(q->load[q->nload]));
	if (util_copy(q->load[q->nload].id, sizeof(q->load[q->nload].id),
	    name) == -1)
		q->load[q->nload].odd = xstrdup(name);
	q->load[q->nload].area = area;
	q->nload++;
}

static uint64_t
queue_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/*
 * Index listed names until max are done or usec have passed: true once
 * all are.  The list was taken before anything ran, so every message is
 * in it once; one the queue has indexed since (it moved: a hold, a
 * delivery) is skipped, so nothing is indexed twice, and one not indexed
 * yet cannot have moved, since only the index's messages are acted on.
 */
static bool
queue_load_slice(struct queue *q, size_t max, uint64_t usec)
{
	uint64_t start = queue_usec();
	size_t k;

	for (k = 0; k < max && q->load_next < q->nload; k++) {
		struct queue_load_item *it = &q->load[q->load_next++];
		const char *name = it->odd != NULL ? it->odd : it->id;

		if (queue_entry_find(q, name) == NULL)
			(void)spool_scan_one(q->spool, it->area, name,
			    queue_scan_cb, q);
		free(it->odd);
		it->odd = NULL;
		if (k % 16 == 15 && queue_usec() - start >= usec)
			break;
	}
	if (q->load_next < q->nload)
		return false;
	free(q->load);
	q->load = NULL;
	q->nload = q->load_alloc = q->load_next = 0;
	q->loaded = true;
	log_info("queue loaded messages=%zu held=%" PRIu64 " dead=%" PRIu64,
	    q->n, q->st_msgs[QUEUE_STATS_HELD], q->st_msgs[QUEUE_STATS_DEAD]);
	return true;
}

static void
queue_load_cb(evutil_socket_t fd, short what, void *arg)
{
	struct queue *q = arg;
	struct timeval tv = { 0, 0 };

	(void)fd;
	(void)what;
	/* a zero timer, not event_active: the loop polls in between */
	if (!queue_load_slice(q, QUEUE_LOAD_SLICE, QUEUE_LOAD_SLICE_USEC) &&
	    event_add(q->load_ev, &tv) == -1)
		fatalx("queue load timer");
	queue_dispatch_soon(q);
}

int
queue_load(struct queue *q)
{
	struct timeval tv = { 0, 0 };

	if (spool_scan_list(q->spool, queue_load_list_cb, q) == -1)
		return -1;
	queue_hold_mode_load(q);
	queue_primary_load(q);
	if (queue_load_slice(q, QUEUE_LOAD_FIRST, QUEUE_LOAD_FIRST_USEC))
		return 0;
	log_info("queue loading messages=%zu indexed=%zu", q->nload,
	    q->load_next);
	q->load_ev = evtimer_new(q->base, queue_load_cb, q);
	if (q->load_ev == NULL || event_add(q->load_ev, &tv) == -1)
		fatalx("queue load timer");
	return 0;
}

void
queue_start(struct queue *q)
{
	struct timeval tv = { QUEUE_TICK_SEC, 0 };

	q->drain = drain_new(q->base, q->cf, q->dns, q->tls, queue_drain_done,
	    q);
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
	spool_set_id_index(q->spool, NULL, NULL);
	queue_stop(q);
	if (q->load_ev != NULL)
		event_free(q->load_ev);
	for (size_t i = q->load_next; i < q->nload; i++)
		free(q->load[i].odd);
	free(q->load);
	bulk_free(q->bulk);
	for (size_t a = 0; a < SPOOL_NAREAS; a++)
		while ((qe = TAILQ_FIRST(&q->areas[a])) != NULL)
			queue_entry_remove(q, qe);
	dueheap_fini(&q->sched);
	dueheap_fini(&q->expiry);
	for (size_t i = 0; i < QUEUE_STATS_NSTATES; i++)
		dueheap_fini(&q->oldest[i]);
	dueheap_fini(&q->ages);
	event_free(q->dispatch_ev);
	free(q->hash);
	free(q->streak_ids);
	commit_free(q->commit);
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

const char *
queue_primary_down_reason(const struct queue *q)
{
	if (q->primary_up)
		return NULL;
	return q->primary_reply[0] != '\0' ? q->primary_reply :
	    "primary down";
}
