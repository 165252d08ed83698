/*
 * policy: what becomes of a message after a delivery attempt, and the
 * rules of backoff, lifetime and hold-mode's lifetime credit, as pure
 * functions: facts in, a decision out.  The clock and the jitter are
 * arguments; nothing here reads the time, draws random numbers, touches
 * the spool, logs or counts.  The queue gathers the facts, calls
 * policy_after_attempt() and applies its decision (queue_drain_done); the
 * unit test (tests/unit/test_policy.c) holds one row per rule.
 */
#ifndef HOLDFAST_POLICY_H
#define HOLDFAST_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct config;
struct drain_rcpt_result;
struct envelope;

/* What a recipient's reply in this attempt makes of it. */
enum policy_rcpt {
	POLICY_RCPT_UNTOUCHED,	/* not pending before, or not tried */
	POLICY_RCPT_DONE,	/* 2xx: delivered */
	POLICY_RCPT_RETRY,	/* 4xx: stays pending */
	POLICY_RCPT_DEAD,	/* 5xx: to dead/, reason refused */
	POLICY_RCPT_KEPT,	/* 5xx while the breaker is open: pending */
};

/* What becomes of the message. */
enum policy_fate {
	POLICY_SITE_WAIT,	/* primary unusable: down, due at next probe */
	POLICY_DELIVERED,	/* nothing pending or dead: delete */
	POLICY_DEAD,		/* nothing pending: all to dead/ (refused) */
	POLICY_DEFER,		/* pending left: rewrite, due after backoff */
	POLICY_SPLIT,		/* pending left and new dead: a dead/ copy of
				 * the refused, then as POLICY_DEFER */
};

/* What the attempt does to the circuit breaker's streak. */
enum policy_breaker {
	POLICY_BREAKER_KEEP,	/* neither delivered nor refused */
	POLICY_BREAKER_RESET,	/* something delivered: streak over */
	POLICY_BREAKER_COUNT,	/* refused: the streak grows */
	POLICY_BREAKER_TRIP,	/* refused, streak reached refuse_limit:
				 * open the breaker */
};

#define POLICY_NONE	SIZE_MAX

/* The facts of one finished attempt.  Borrowed. */
struct policy_attempt {
	const struct envelope		*env;	/* as it was sent */
	const struct drain_rcpt_result	*results; /* env->nrcpt of them */
	bool				 site_failure;
	time_t				 now;
	double				 rnd;	/* [0, 1): backoff jitter */
	bool				 refusing;	/* breaker open */
	uint64_t			 refuse_streak;
};

/* The decision.  rcpt is the caller's array of env->nrcpt entries. */
struct policy_decision {
	enum policy_fate	 fate;
	enum policy_rcpt	*rcpt;
	size_t			 ndone, ndead;	/* this attempt's, by rcpt */
	bool			 contact;	/* a recipient was answered */
	enum policy_breaker	 breaker;
	uint64_t		 refuse_streak;	/* after the attempt */
	uint64_t		 attempts;	/* after the attempt */
	uint64_t		 wait;		/* DEFER, SPLIT: backoff */
	time_t			 next_attempt;	/* DEFER, SPLIT, SITE_WAIT */
	/* DEFER, SPLIT: the pending recipient whose reply becomes the
	 * envelope's last reply, or POLICY_NONE for the session's */
	size_t			 reply_rcpt;
};

/* Seconds to wait before attempt "attempts"+1: min doubling up to max,
 * spread by +-10% from rnd in [0, 1), never below 1. */
uint64_t policy_backoff(uint64_t attempts, uint64_t min, uint64_t max,
    double rnd);
/* Decide the fate of a message from one attempt's facts and cf's limits
 * (retry_min/max, refuse_limit, probe_interval).  Fills *d. */
void policy_after_attempt(const struct config *cf,
    const struct policy_attempt *a, struct policy_decision *d);
/* When a message whose lifetime counts from age_base expires. */
time_t policy_expiry(const struct config *cf, time_t age_base,
    bool null_sender);
/* Whether a message expiring at expiry is expired at now. */
bool policy_is_expired(time_t expiry, time_t now);
/* The age_base a queued message has once hold-mode (on since since) ends
 * at now: the time it spent held does not count toward its lifetime. */
time_t policy_hold_credit(time_t age_base, time_t since, time_t now);

/* What the dispatcher does at now, from hold-mode's end (hold_until, 0
 * when off) and the breaker's (refusing_until, 0 when closed). */
struct policy_gate {
	bool	hold_over;	/* hold-mode's time is up: end it */
	bool	pause_over;	/* the breaker's pause is up: reset it */
	bool	may_send;	/* send and expire what is due; false while
				 * hold-mode is on or the breaker is open:
				 * nothing is sent and nothing expires */
};
void policy_dispatch_gate(time_t hold_until, time_t refusing_until,
    time_t now, struct policy_gate *g);

/* What an operator's flush does: of one message (all false), or of the
 * whole queue (all true). */
struct policy_flush {
	bool	all_due;	/* every queued message due now */
	bool	probe_now;	/* a down primary is probed at once */
	bool	reset_breaker;	/* the breaker's streak and pause end */
};
void policy_flush(bool whole_queue, struct policy_flush *f);

#endif
