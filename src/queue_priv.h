/*
 * queue_priv: what the queue's own files share (queue.c: the index,
 * scheduling and delivery; queue_ops.c: operator actions and hold-mode).
 * Nothing outside them includes it: every other module goes through
 * queue.h.  Loop thread only, like the index itself.
 */
#ifndef HOLDFAST_QUEUE_PRIV_H
#define HOLDFAST_QUEUE_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <time.h>

#include "drain.h"
#include "dueheap.h"
#include "select.h"
#include "spool.h"

struct bulk;
struct commit;
struct config;
struct dns;
struct envelope;
struct event;
struct event_base;
struct notify;
struct tls;
struct workpool;

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
	time_t			(*clock)(void *);	/* NULL: util_now() */
	void			*clock_arg;
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
	}			 bulk_rewrite;	/* hold-mode's end */
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
	bool			 loaded;	/* every message indexed */
};

/* The startup scan indexes this much before the loop starts, then at
 * most this much per loop turn: a restart with a large backlog serves
 * SMTP at once, each turn holds the loop for about a slice's time. */
#define QUEUE_LOAD_FIRST	256
#define QUEUE_LOAD_FIRST_USEC	200000
#define QUEUE_LOAD_SLICE	64
#define QUEUE_LOAD_SLICE_USEC	10000

#define QUEUE_HOLD_MODE_FILE	"hold-mode"

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

/* ---- queue.c: the index, envelopes, jobs ---- */

/* The queue's clock: the real one unless queue_set_clock() set another. */
time_t queue_now(const struct queue *q);
struct queue_entry *queue_entry_find(struct queue *q, const char *id);
void queue_entry_age_base(struct queue *q, struct queue_entry *qe,
    time_t base);
void queue_entry_due(struct queue *q, struct queue_entry *qe, time_t due);
void queue_entry_set_attempts(struct queue *q, struct queue_entry *qe,
    uint64_t n);
void queue_entry_set_area(struct queue *q, struct queue_entry *qe,
    enum spool_area area);
time_t queue_entry_expiry(const struct queue *q, const struct queue_entry *qe);
void queue_entry_remove(struct queue *q, struct queue_entry *qe);
enum queue_where queue_where_is(struct spool *sp, const char *id,
    enum spool_area *area);
bool queue_entry_relocate(struct queue *q, struct queue_entry *qe,
    enum queue_where where, enum spool_area area);
void queue_dispatch_soon(struct queue *q);
void queue_entry_busy(struct queue *q, struct queue_entry *qe, bool busy);
struct envelope *queue_env_load(struct queue *q, struct queue_entry *qe);
struct envelope *queue_env_get(struct queue *q, struct queue_entry *qe);
void queue_job_start(struct queue *q, enum queue_op op, struct queue_entry *qe,
    struct envelope *env);
void queue_breaker_reset(struct queue *q, const char *why);

/* ---- queue_ops.c: operator actions and hold-mode ---- */

int queue_rewrite_entry(struct queue *q, struct queue_entry *qe);
void queue_hold_mode_end(struct queue *q, const char *why);
void queue_hold_mode_load(struct queue *q);

#endif
