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
#include "dueheap.h"
#include "select.h"
#include "smtp_proto.h"
#include "spool.h"
#include "tls.h"
#include "util.h"
#include "workpool.h"
#include "xmalloc.h"

#define QUEUE_TICK_SEC	1
#define QUEUE_HEALTH_SEC	300	/* primary looked at, idle and up */

struct queue_entry {
	char			 id[SPOOL_ID_LEN + 1];
	enum spool_area		 area;	/* queue, hold or dead */
	time_t			 arrival;
	time_t			 age_base;	/* lifetimes count from here */
	/* while sendable (queued, not busy): in q->sched by next due time,
	 * and in q->expiry by the time its lifetime ends */
	struct dueheap_item	 si, si_exp;
	uint64_t		 size;
	uint64_t		 attempts;
	bool			 null_sender;
	bool			 busy;	/* with drain or a disk job */
	bool			 site_wait;	/* waits only for the primary */
	bool			 refused;	/* dead by a 5xx */
	bool			 rewrite;	/* age_base to be persisted */
	TAILQ_ENTRY(queue_entry) entry;	/* in q->areas[area] */
	struct queue_entry	*hnext;	/* q->hash chain */
	/* counted in status and metrics (queue_entry_account): in
	 * q->oldest[stat - 1] by arrival, and while in queue/, in q->ages by
	 * the time it leaves its age bucket */
	struct dueheap_item	 si_old, si_age;
	unsigned char		 stat;	/* QUEUE_STATS_* + 1; 0: none */
	unsigned char		 bucket;	/* age bucket, in queue/ */
};

#define queue_entry_of(it, member) ((struct queue_entry *)(void *) \
	((char *)(it) - offsetof(struct queue_entry, member)))

TAILQ_HEAD(queue_list, queue_entry);

struct queue {
	struct event_base	*base;
	const struct config	*cf;
	struct spool		*spool;
	struct workpool		*wp;
	struct drain		*drain;
	struct dns		*dns;
	struct tls		*tls;
	/*
	 * The index: one list per area (held and dead are never walked by
	 * the scheduler), a hash by ID, and the due-heap of the queued
	 * messages that are not busy.  Nothing on the per-message path
	 * walks a whole list.
	 */
	struct queue_list	 areas[SPOOL_NAREAS];
	size_t			 count[SPOOL_NAREAS];
	struct queue_entry	**hash;
	size_t			 hsize, hcount;
	struct dueheap		 sched, expiry;
	uint64_t		 seq;		/* indexing order */
	size_t			 n;		/* entries in queue/ */
	struct event		*dispatch_ev;	/* one dispatch per turn */
	bool			 dispatch_queued;
	bool			 primary_up;
	time_t			 primary_since;
	char			 primary_reply[DRAIN_REPLY_MAX]; /* why down */
	/* learned from the primary's EHLO; kept in QUEUE_PRIMARY_FILE */
	bool			 primary_known;
	uint64_t		 primary_size;		/* 0: no limit */
	bool			 primary_smtputf8;
	bool			 primary_8bitmime;
	time_t			 next_probe;
	bool			 probing;	/* a probe is in flight */
	time_t			 last_delivery;
	time_t			 next_health;	/* probe with no message */
	time_t			 started;
	/* accept-and-hold: nothing drains, nothing ages */
	time_t			 hold_since, hold_until;	/* 0: off */
	/* circuit breaker: refusals of different messages in a row */
	uint64_t		 refuse_streak;
	char			(*streak_ids)[SPOOL_ID_LEN + 1];
	size_t			 nstreak;
	time_t			 refusing_until;	/* 0: not refusing */
	struct event		*tick;
	struct commit		*commit;	/* the commit pipeline */
	struct bulk		*bulk;		/* hold all, release all, ... */
	struct queue_bulk {
		struct queue	*q;
		enum spool_area	 area;
		int		(*fn)(struct queue *, struct queue_entry *);
	}			 bulk_hold, bulk_release, bulk_rewrite,
				 bulk_requeue;
	/* [notify]: what the notices are about (see queue_watch) */
	struct notify		*notify;
	bool			 outage_noticed; /* primary-down sent */
	time_t			 outage_since;
	uint64_t		 outage_delivered; /* messages, since then */
	bool			 spool_low;
	time_t			 next_spool_check;
	time_t			 next_cert_check;
	time_t			 cert_noticed;	/* notAfter noticed */
	time_t			 cert_noticed_at;
	/* what status and metrics count, kept as entries change (see
	 * queue_entry_account): no walk of the index per scrape */
	uint64_t		 st_msgs[QUEUE_STATS_NSTATES];
	uint64_t		 st_bytes[QUEUE_STATS_NSTATES];
	struct dueheap		 oldest[QUEUE_STATS_NSTATES];
	struct dueheap		 ages;	/* queue/, by end of age bucket */
	uint64_t		 age[SELECT_NBUCKETS];
	time_t			 age_now;	/* age[] is right as of this */
	/* the startup scan: names listed at once, indexed in slices on
	 * later loop turns (queue_load) */
	struct queue_load_item {
		char		 id[SPOOL_ID_LEN + 1];	/* a name that fits */
		char		*odd;	/* any other name (quarantined) */
		enum spool_area	 area;
	}			*load;
	size_t			 nload, load_alloc, load_next;
	struct event		*load_ev;
};

/* The startup scan indexes this much before the loop starts, then at
 * most this much per loop turn: a restart with a large backlog serves
 * SMTP at once, each turn holds the loop for about a slice's time. */
#define QUEUE_LOAD_FIRST	256
#define QUEUE_LOAD_FIRST_USEC	200000
#define QUEUE_LOAD_SLICE	64
#define QUEUE_LOAD_SLICE_USEC	10000

#define QUEUE_SPOOL_CHECK_SEC	10	/* free space, for the notice */
#define QUEUE_CERT_CHECK_SEC	3600	/* the certificate's end */
#define QUEUE_CERT_WARN_SEC	(14 * 86400)	/* notice that early */
#define QUEUE_CERT_REPEAT_SEC	86400	/* and again each day */

#define QUEUE_HOLD_MODE_FILE	"hold-mode"
#define QUEUE_PRIMARY_FILE	"primary-ehlo"


/*
 * A move or delete can fail after its rename (the fsync that follows it
 * fails): the message is then in its new place while the index still
 * shows the old one.  The spool is looked at again, and the index follows.
 */
enum queue_where {
	QUEUE_WHERE_UNKNOWN,	/* not looked, or the look failed */
	QUEUE_WHERE_FOUND,	/* in where_area */
	QUEUE_WHERE_GONE,	/* in no area (a delete's rename into tmp/) */
};

/* A job for the workpool: an envelope rewrite plus a fate. */
enum queue_op {
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
static void queue_dispatch_soon(struct queue *q);
static void queue_breaker_trip(struct queue *q);
static void queue_breaker_reset(struct queue *q, const char *why);
static void queue_hold_mode_end(struct queue *q, const char *why);
static struct envelope *queue_env_get(struct queue *q,
    struct queue_entry *qe);

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

/* When qe's lifetime ends (it goes to dead/ as expired). */
static time_t
queue_entry_expiry(const struct queue *q, const struct queue_entry *qe)
{
	uint64_t life = qe->null_sender ? q->cf->bounce_lifetime :
	    q->cf->queue_lifetime;

	return qe->age_base + (time_t)life;
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
static void
queue_entry_age_base(struct queue *q, struct queue_entry *qe, time_t base)
{
	qe->age_base = base;
	dueheap_set_due(&q->expiry, &qe->si_exp, queue_entry_expiry(q, qe));
}

static void
queue_entry_due(struct queue *q, struct queue_entry *qe, time_t due)
{
	dueheap_set_due(&q->sched, &qe->si, due);
}

/* qe has been attempted n times (status counts it as deferred if n > 0). */
static void
queue_entry_set_attempts(struct queue *q, struct queue_entry *qe,
    uint64_t n)
{
	qe->attempts = n;
	queue_entry_account(q, qe);
}

static void
queue_entry_busy(struct queue *q, struct queue_entry *qe, bool busy)
{
	qe->busy = busy;
	queue_entry_place(q, qe);
}

/* Move an entry between areas in the index (the files moved already);
 * SPOOL_TMP stands for "in no area". */
static void
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

static void
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

static struct queue_entry *
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
static enum queue_where
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
static bool
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

static void
queue_job_done(void *arg)
{
	struct queue_job *job = arg;
	struct queue *q = job->q;
	struct queue_entry *qe = job->qe, *copy;
	const char *id = qe != NULL ? qe->id : job->env->id;

	switch (job->op) {
	case QUEUE_OP_REWRITE:
		/* On failure the old envelope stands: recipients delivered
		 * since may be sent again, nothing is lost. */
		queue_entry_busy(q, qe, false);
		break;
	case QUEUE_OP_SPLIT:
		queue_entry_busy(q, qe, false);
		if (job->rc != 0) {
			log_warnx("msg=%s refused recipients not split off; "
			    "they stay queued", id);
			break;
		}
		log_warnx("msg=%s refused recipients moved to dead copy=%s "
		    "nrcpt=%zu", id, job->deadid, job->deadenv->nrcpt);
		util_copy(job->deadenv->id, sizeof(job->deadenv->id),
		    job->deadid);
		copy = queue_entry_new(job->deadenv, SPOOL_DEAD);
		queue_entry_add(q, copy);
		queue_refused_dead(q, copy);
		queue_notify_dead(q, job->deadid, "refused");
		break;
	case QUEUE_OP_QUARANTINE:
		if (job->rc != 0 && queue_entry_relocate(q, qe, job->where,
		    job->where_area))
			break;			/* qe is gone */
		if (job->rc == 0 || qe->area == SPOOL_QUARANTINE) {
			log_warnx("msg=%s quarantined reason=unreadable", id);
			queue_entry_remove(q, qe);
		} else {
			queue_entry_busy(q, qe, false);
			queue_entry_due(q, qe, util_now() +
			    (time_t)q->cf->retry_max);
		}
		break;
	case QUEUE_OP_DELETE:
		if (job->rc == 0) {
			log_info("msg=%s removed", id);
			queue_entry_remove(q, qe);
			if (q->outage_noticed)
				q->outage_delivered++;
		} else if (!queue_entry_relocate(q, qe, job->where,
		    job->where_area)) {
			/* It will be delivered again: a duplicate, not a
			 * loss. */
			log_warnx("msg=%s delivered but not removed; it may "
			    "be delivered twice", id);
			queue_entry_busy(q, qe, false);
		}
		break;
	case QUEUE_OP_DEAD:
		queue_entry_busy(q, qe, false);
		if (job->rc != 0) {
			if (queue_entry_relocate(q, qe, job->where,
			    job->where_area))
				break;		/* qe freed */
			/* Still queued (e.g. a full disk): not again at once,
			 * or expiry spins on the disk and the log. */
			if (qe->area == SPOOL_QUEUE) {
				time_t later = util_now() +
				    (time_t)q->cf->retry_min;

				queue_entry_due(q, qe, later);
				if (queue_entry_expiry(q, qe) < later)
					dueheap_set_due(&q->expiry,
					    &qe->si_exp, later);
			}
			if (qe->area != SPOOL_DEAD)
				break;
		}
		log_warnx("msg=%s moved to dead reason=%s", id,
		    job->env->dead_reason);
		queue_entry_set_area(q, qe, SPOOL_DEAD);
		qe->refused = strcmp(job->env->dead_reason, "refused") == 0;
		if (qe->refused)
			queue_refused_dead(q, qe);
		queue_notify_dead(q, id, job->env->dead_reason);
		break;
	}
	envelope_free(job->env);
	envelope_free(job->deadenv);
	free(job->envtext);
	free(job);
	queue_dispatch_soon(q);
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
	q->primary_since = util_now();
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
		q->next_probe = util_now() + (time_t)q->cf->probe_interval;
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

static void
queue_drain_done(void *arg, struct drain_job *job)
{
	struct queue *q = arg;
	struct queue_entry *qe = job->owner;
	struct envelope *env = job->env;
	time_t now = util_now();
	size_t i, npending, ndead, nnewdead = 0, ndone = 0;
	bool contact = false;
	char esc[LOG_ESCAPE_MAX], delay[32], rcpt[LOG_ESCAPE_MAX];

	if (job->greeted)
		queue_primary_learn(q, job->primary_size,
		    job->primary_smtputf8, job->primary_8bitmime);
	if (env == NULL) {
		/* The health probe: is the primary there at all? */
		q->probing = false;
		queue_primary_set(q, !job->site_failure, job->reply);
		if (job->site_failure)
			q->next_probe = now + (time_t)q->cf->probe_interval;
		free(job);
		return;
	}
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
		queue_entry_due(q, qe, q->next_probe);
		qe->site_wait = true;
		queue_entry_busy(q, qe, false);
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
			ndone++;
			q->last_delivery = now;
			metrics_inc(M_DELIVERIES_DELIVERED);
			log_info("msg=%s delivered rcpt=%s delay=%s reply=%s",
			    env->id, rcpt, delay, esc);
		} else if (code >= 500) {
			r->state = ENVELOPE_RCPT_DEAD;
			nnewdead++;
		}
	}
	if (contact)
		queue_primary_set(q, true, NULL);
	/* The circuit breaker: refusals of different messages in a row. */
	if (ndone > 0)
		q->refuse_streak = q->nstreak = 0;
	else if (nnewdead > 0 && ++q->refuse_streak >= q->cf->refuse_limit &&
	    !queue_is_refusing(q))
		queue_breaker_trip(q);
	for (i = 0; i < env->nrcpt && nnewdead > 0; i++) {
		struct envelope_rcpt *r = &env->rcpts[i];
		int code = job->results[i].code;

		if (r->state != ENVELOPE_RCPT_DEAD || code < 500)
			continue;
		log_escape(r->reply, strlen(r->reply), esc, sizeof(esc));
		log_addr(r->addr, rcpt, sizeof(rcpt));
		if (queue_is_refusing(q)) {
			/* Refused while the breaker is open: keep it. */
			r->state = ENVELOPE_RCPT_PENDING;
			log_warnx("msg=%s kept rcpt=%s reason=primary-refusing "
			    "reply=%s", env->id, rcpt, esc);
			continue;
		}
		metrics_inc(M_DELIVERIES_DEAD);
		log_warnx("msg=%s dead rcpt=%s reason=refused reply=%s",
		    env->id, rcpt, esc);
	}
	if (queue_is_refusing(q))
		nnewdead = 0;
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
		queue_entry_due(q, qe, env->next_attempt);
		envelope_set_str(&env->last_reply, job->reply[0] != '\0' ?
		    job->reply : "deferred");
		for (i = 0; i < env->nrcpt; i++)
			if (env->rcpts[i].state == ENVELOPE_RCPT_PENDING &&
			    env->rcpts[i].reply != NULL) {
				envelope_set_str(&env->last_reply,
				    env->rcpts[i].reply);
				break;
			}
		queue_entry_set_attempts(q, qe, env->attempts);
		metrics_inc(M_DELIVERIES_DEFERRED);
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
			queue_entry_due(q, qe, util_now() +
			    (time_t)q->cf->retry_min);
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

/*
 * Load a message and hand it to the drain: 1 if handed over (the drain
 * may have answered already), 0 if not (the entry may be gone), -1 if the
 * drain is full.
 */
static int
queue_send(struct queue *q, struct queue_entry *qe)
{
	struct drain_job *job;
	struct envelope *env;
	int fd;

	if ((env = queue_env_get(q, qe)) == NULL)
		return 0;
	env->age_base = qe->age_base;	/* the index's, see hold-mode */
	if ((fd = spool_body_open(q->spool, SPOOL_QUEUE, qe->id)) == -1) {
		envelope_free(env);
		queue_entry_due(q, qe, util_now() +
			    (time_t)q->cf->retry_min);
		return 0;
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
		return -1;
	}
	return 1;
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
	    (uint64_t)(util_now() - env->arrival), env->attempts);
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
	time_t now = util_now();

	if (q->drain == NULL)
		return;
	if (q->hold_until != 0) {
		if (now < q->hold_until)
			return;		/* accept-and-hold: nothing drains */
		queue_hold_mode_end(q, "expired");
	}
	if (queue_is_refusing(q)) {
		if (now < q->refusing_until)
			return;
		queue_breaker_reset(q, "pause-over");
	}
	while ((it = dueheap_first(&q->expiry)) != NULL && it->due <= now) {
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
			if (queue_send(q, qe) != 1)
				q->probing = false;
		} else if (queue_send(q, qe) == -1)
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
static void
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

/*
 * Once a second: the primary down for longer than primary_down_after (one
 * notice per outage), then back with queue/ empty again (the drained
 * notice, with the messages delivered since the first one), and free space
 * crossing min_free.
 */
static void
queue_watch(struct queue *q, time_t now)
{
	char summary[256], a[32], b[32], c[32], d1[32], d2[32];

	if (q->notify == NULL)
		return;
	if (!q->primary_up && !q->outage_noticed &&
	    now - q->primary_since >= (time_t)q->cf->notify_primary_down_after) {
		q->outage_noticed = true;
		q->outage_since = q->primary_since;
		q->outage_delivered = 0;
		util_fmt_duration((uint64_t)(now - q->primary_since), d1,
		    sizeof(d1));
		snprintf(a, sizeof(a), "%lld", (long long)(now -
		    q->primary_since));
		snprintf(b, sizeof(b), "%zu", q->n);
		snprintf(c, sizeof(c), "%lld", (long long)q->primary_since);
		snprintf(summary, sizeof(summary), "%s: primary %s:%" PRIu64
		    " down for %s; %zu messages queued, safe in the spool",
		    q->cf->hostname, q->cf->primary_host,
		    q->cf->primary_port, d1, q->n);
		notify_send(q->notify, NOTIFY_PRIMARY_DOWN, summary,
		    (struct notify_var[]){ { "DOWN_SECONDS", a },
		    { "QUEUED", b }, { "DOWN_SINCE", c },
		    { "PRIMARY", q->cf->primary_host } }, 4);
	}
	if (q->primary_up && q->outage_noticed && q->n == 0) {
		q->outage_noticed = false;
		util_fmt_duration((uint64_t)(q->primary_since -
		    q->outage_since), d1, sizeof(d1));
		util_fmt_duration((uint64_t)(now - q->primary_since), d2,
		    sizeof(d2));
		snprintf(a, sizeof(a), "%" PRIu64, q->outage_delivered);
		snprintf(b, sizeof(b), "%lld", (long long)(q->primary_since -
		    q->outage_since));
		snprintf(c, sizeof(c), "%lld", (long long)(now -
		    q->primary_since));
		snprintf(summary, sizeof(summary), "%s: primary %s back after "
		    "%s; %" PRIu64 " messages delivered, queue drained in %s",
		    q->cf->hostname, q->cf->primary_host, d1,
		    q->outage_delivered, d2);
		notify_send(q->notify, NOTIFY_PRIMARY_DRAINED, summary,
		    (struct notify_var[]){ { "MESSAGES", a },
		    { "DOWN_SECONDS", b }, { "DRAIN_SECONDS", c },
		    { "PRIMARY", q->cf->primary_host } }, 4);
	}
	if (now >= q->next_spool_check) {
		long long fb = spool_free_bytes(q->spool);

		q->next_spool_check = now + QUEUE_SPOOL_CHECK_SEC;
		if (fb >= 0 && (uint64_t)fb < q->cf->min_free &&
		    !q->spool_low) {
			snprintf(a, sizeof(a), "%lld", fb);
			snprintf(b, sizeof(b), "%" PRIu64, q->cf->min_free);
			snprintf(summary, sizeof(summary), "%s: spool has "
			    "%lld bytes free, below min_free %" PRIu64
			    ": new mail gets 452", q->cf->hostname, fb,
			    q->cf->min_free);
			notify_send(q->notify, NOTIFY_SPOOL_LOW, summary,
			    (struct notify_var[]){ { "FREE_BYTES", a },
			    { "MIN_FREE", b } }, 2);
		}
		if (fb >= 0)
			q->spool_low = (uint64_t)fb < q->cf->min_free;
	}
	if (now >= q->next_cert_check) {
		time_t end = tls_server_not_after(q->tls);

		q->next_cert_check = now + QUEUE_CERT_CHECK_SEC;
		/* Once a day per certificate; a renewed one starts afresh. */
		if (end != 0 && end - now < QUEUE_CERT_WARN_SEC &&
		    (end != q->cert_noticed ||
		    now - q->cert_noticed_at >= QUEUE_CERT_REPEAT_SEC)) {
			q->cert_noticed = end;
			q->cert_noticed_at = now;
			snprintf(a, sizeof(a), "%lld", (long long)end);
			snprintf(b, sizeof(b), "%lld", (long long)(end - now));
			if (end > now)
				util_fmt_duration((uint64_t)(end - now), d2,
				    sizeof(d2));
			snprintf(summary, sizeof(summary), "%s: the STARTTLS "
			    "certificate %s%s; check certbot and its deploy "
			    "hook", q->cf->hostname, end > now ? "expires in " :
			    "has expired", end > now ? d2 : "");
			notify_send(q->notify, NOTIFY_CERT_EXPIRY, summary,
			    (struct notify_var[]){ { "NOT_AFTER", a },
			    { "SECONDS_LEFT", b } }, 2);
		}
	}
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
	queue_watch(arg, util_now());
}

/* ---- operator actions (ctl) ----
 *
 * These are rare and small (one rename and a few fsyncs), so they run on
 * the loop, unlike commits and delivery bookkeeping.
 */

/* Load the envelope of an indexed message in any area. */
static struct envelope *
queue_env_load(struct queue *q, struct queue_entry *qe)
{
	struct envelope *env;
	char *text, err[256];
	size_t len;

	if (spool_env_read(q->spool, qe->area, qe->id, &text, &len) == -1)
		return NULL;
	env = envelope_load(text, len, err, sizeof(err));
	free(text);
	if (env == NULL) {
		log_warnx("msg=%s unreadable envelope reason=\"%s\"", qe->id,
		    err);
		errno = EINVAL;
	}
	return env;
}

/* Rewrite env in qe's area, then move it to area "to" (when different). */
static int
queue_env_store_move(struct queue *q, struct queue_entry *qe,
    const struct envelope *env, enum spool_area to)
{
	size_t len;
	char *text = envelope_dump(env, &len);
	enum spool_area where;
	enum queue_where w;
	int rc, saved;

	rc = spool_env_write(q->spool, qe->area, qe->id, text, len);
	free(text);
	if (rc == 0 && to != qe->area) {
		if ((rc = spool_move(q->spool, qe->id, qe->area, to)) == 0)
			queue_entry_set_area(q, qe, to);
		else {
			/* the rename may have happened all the same */
			saved = errno;
			w = queue_where_is(q->spool, qe->id, &where);
			/* (callers go on using qe: never drop it here) */
			if (w == QUEUE_WHERE_FOUND)
				queue_entry_relocate(q, qe, w, where);
			errno = saved;
		}
	}
	return rc;
}

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

static int
queue_requeue_entry(struct queue *q, struct queue_entry *qe,
    const char *reason)
{
	struct envelope *env;
	time_t now = util_now();
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
	queue_entry_set_attempts(q, qe, 0);
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

static int
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
	env->held_since = util_now();
	if (queue_env_store_move(q, qe, env, SPOOL_HOLD) == 0) {
		qe->rewrite = false;
		log_info("msg=%s held reason=operator", qe->id);
	} else
		qe = NULL;
	envelope_free(env);
	return qe == NULL ? -1 : 0;
}

static int
queue_release_entry(struct queue *q, struct queue_entry *qe)
{
	struct envelope *env;
	time_t now = util_now(), base;

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
static int
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

static void
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

static void
queue_breaker_reset(struct queue *q, const char *why)
{
	if (queue_is_refusing(q))
		log_info("primary refusing ended reason=%s", why);
	q->refusing_until = 0;
	q->refuse_streak = 0;
	q->nstreak = 0;
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

/* A message dead by refusal: while the breaker is open it goes straight
 * back; otherwise it is remembered as part of the current streak. */
static void
queue_refused_dead(struct queue *q, struct queue_entry *qe)
{
	if (queue_is_refusing(q)) {
		queue_requeue_entry(q, qe, "primary-refusing");
		return;
	}
	if (q->streak_ids == NULL)
		q->streak_ids = xcalloc(q->cf->refuse_limit,
		    sizeof(*q->streak_ids));
	if (q->nstreak < q->cf->refuse_limit)
		util_copy(q->streak_ids[q->nstreak++], SPOOL_ID_LEN + 1,
		    qe->id);
}

/* Bulk: one of the streak's dead letters back into the queue. */
static int
queue_breaker_requeue_entry(struct queue *q, struct queue_entry *qe)
{
	return queue_requeue_entry(q, qe, "primary-refusing");
}

/* refuse_limit messages refused in a row: a misconfigured primary, most
 * likely.  Pause, and put the streak's dead letters back. */
static void
queue_breaker_trip(struct queue *q)
{
	const char **ids;
	size_t i;

	q->refusing_until = util_now() + (time_t)q->cf->refuse_pause;
	log_warnx("primary refusing host=%s messages=%" PRIu64 " pause=%" PRIu64
	    "s; refused mail stays queued", q->cf->primary_host,
	    q->refuse_streak, q->cf->refuse_pause);
	/* Up to refuse_limit (10000) of them: in slices (bulk.c).  One
	 * still busy moving to dead/ is requeued when the move is done. */
	ids = xreallocarray(NULL, q->nstreak + 1, sizeof(*ids));
	for (i = 0; i < q->nstreak; i++)
		ids[i] = q->streak_ids[i];
	if (bulk_start(q->bulk, "breaker-requeue", ids, q->nstreak,
	    queue_bulk_apply, queue_bulk_after, &q->bulk_requeue) == -1)
		log_warnx("primary refusing: the streak's dead letters stay "
		    "in dead/ (too many bulk operations waiting)");
	free(ids);
	q->nstreak = 0;
}

static int
queue_hold_mode_store(struct queue *q)
{
	char buf[64];

	if (q->hold_until == 0)
		return spool_state_remove(q->spool, QUEUE_HOLD_MODE_FILE);
	snprintf(buf, sizeof(buf), "%lld %lld\n", (long long)q->hold_since,
	    (long long)q->hold_until);
	return spool_state_write(q->spool, QUEUE_HOLD_MODE_FILE, buf);
}

/* Hold-mode ends: every queued message's lifetime moves on by the time it
 * spent held, on disk too. */
/* Bulk: persist the age_base hold-mode's end gave qe. */
static int
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

static void
queue_hold_mode_end(struct queue *q, const char *why)
{
	struct queue_entry *qe, *next;
	time_t now = util_now(), since = q->hold_since;

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
		time_t from = qe->age_base > since ? qe->age_base : since;

		next = TAILQ_NEXT(qe, entry);
		qe->rewrite = false;
		if (qe->busy || from >= now)
			continue;
		qe->age_base += now - from;
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
	time_t now = util_now();

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
static void
queue_hold_mode_load(struct queue *q)
{
	char buf[64];
	long long since, until;

	if (spool_state_read(q->spool, QUEUE_HOLD_MODE_FILE, buf,
	    sizeof(buf)) == -1)
		return;
	if (sscanf(buf, "%lld %lld", &since, &until) != 2 || since <= 0 ||
	    until < since) {
		log_warnx("hold-mode file unreadable; hold-mode off");
		return;
	}
	q->hold_since = (time_t)since;
	q->hold_until = (time_t)until;
	log_info("hold-mode on (restored) until=%lld", until);
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
	st->now = util_now();
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
	char *text, err[256];
	size_t len;

	if (area != SPOOL_QUEUE && area != SPOOL_HOLD && area != SPOOL_DEAD)
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
	queue_entry_add(q, queue_entry_new(env, area));
	envelope_free(env);
	return 0;
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
	q->bulk_hold = (struct queue_bulk){ q, SPOOL_QUEUE, queue_hold_entry };
	q->bulk_release = (struct queue_bulk){ q, SPOOL_HOLD,
	    queue_release_entry };
	q->bulk_rewrite = (struct queue_bulk){ q, SPOOL_QUEUE,
	    queue_rewrite_entry };
	q->bulk_requeue = (struct queue_bulk){ q, SPOOL_DEAD,
	    queue_breaker_requeue_entry };
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
