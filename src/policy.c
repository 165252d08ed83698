#include "policy.h"

#include "config.h"
#include "drain.h"
#include "envelope.h"

uint64_t
policy_backoff(uint64_t attempts, uint64_t min, uint64_t max, double rnd)
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

/* One recipient's reply: 2xx done, 5xx dead, the rest retried. */
static enum policy_rcpt
policy_rcpt_of(const struct envelope_rcpt *r, int code)
{
	if (r->state != ENVELOPE_RCPT_PENDING || code == 0)
		return POLICY_RCPT_UNTOUCHED;
	if (code >= 200 && code < 300)
		return POLICY_RCPT_DONE;
	if (code >= 500)
		return POLICY_RCPT_DEAD;
	return POLICY_RCPT_RETRY;
}

/* Refusals of different messages in a row open the breaker; a delivery
 * ends the streak.  A refusal while open still counts. */
static void
policy_breaker(const struct config *cf, const struct policy_attempt *a,
    struct policy_decision *d)
{
	d->refuse_streak = a->refuse_streak;
	d->breaker = POLICY_BREAKER_KEEP;
	if (d->ndone > 0) {
		d->refuse_streak = 0;
		d->breaker = POLICY_BREAKER_RESET;
	} else if (d->ndead > 0) {
		d->refuse_streak++;
		d->breaker = d->refuse_streak >= cf->refuse_limit &&
		    !a->refusing ? POLICY_BREAKER_TRIP : POLICY_BREAKER_COUNT;
	}
}

/* Still pending after the attempt (retried, kept or not tried). */
static bool
policy_is_pending(const struct envelope_rcpt *r, enum policy_rcpt p)
{
	return p == POLICY_RCPT_RETRY || p == POLICY_RCPT_KEPT ||
	    (p == POLICY_RCPT_UNTOUCHED && r->state == ENVELOPE_RCPT_PENDING);
}

/* Pending recipients left: back off, and name the reply to keep. */
static void
policy_defer(const struct config *cf, const struct policy_attempt *a,
    struct policy_decision *d)
{
	const struct envelope *env = a->env;
	size_t i;

	d->fate = d->ndead > 0 ? POLICY_SPLIT : POLICY_DEFER;
	d->attempts = env->attempts + 1;
	d->wait = policy_backoff(d->attempts, cf->retry_min, cf->retry_max,
	    a->rnd);
	d->next_attempt = a->now + (time_t)d->wait;
	d->reply_rcpt = POLICY_NONE;
	for (i = 0; i < env->nrcpt; i++)
		if (policy_is_pending(&env->rcpts[i], d->rcpt[i]) &&
		    (d->rcpt[i] != POLICY_RCPT_UNTOUCHED ||
		    env->rcpts[i].reply != NULL)) {
			d->reply_rcpt = i;
			break;
		}
}

void
policy_after_attempt(const struct config *cf,
    const struct policy_attempt *a, struct policy_decision *d)
{
	const struct envelope *env = a->env;
	size_t i, npending = 0, ndead = 0;

	d->ndone = d->ndead = 0;
	d->contact = false;
	d->breaker = POLICY_BREAKER_KEEP;
	d->refuse_streak = a->refuse_streak;
	d->attempts = env->attempts;
	d->wait = 0;
	d->next_attempt = 0;
	d->reply_rcpt = POLICY_NONE;
	for (i = 0; i < env->nrcpt; i++)
		d->rcpt[i] = POLICY_RCPT_UNTOUCHED;
	if (a->site_failure) {
		/* Not before the next probe round (see queue_drain_done). */
		d->fate = POLICY_SITE_WAIT;
		d->next_attempt = a->now + (time_t)cf->probe_interval;
		return;
	}
	for (i = 0; i < env->nrcpt; i++) {
		d->rcpt[i] = policy_rcpt_of(&env->rcpts[i], a->results[i].code);
		d->contact |= d->rcpt[i] != POLICY_RCPT_UNTOUCHED;
		d->ndone += d->rcpt[i] == POLICY_RCPT_DONE;
		d->ndead += d->rcpt[i] == POLICY_RCPT_DEAD;
	}
	policy_breaker(cf, a, d);
	if (a->refusing || d->breaker == POLICY_BREAKER_TRIP) {
		/* Refused while the breaker is open: kept queued. */
		for (i = 0; i < env->nrcpt; i++)
			if (d->rcpt[i] == POLICY_RCPT_DEAD)
				d->rcpt[i] = POLICY_RCPT_KEPT;
		d->ndead = 0;
	}
	for (i = 0; i < env->nrcpt; i++) {
		npending += policy_is_pending(&env->rcpts[i], d->rcpt[i]);
		ndead += d->rcpt[i] == POLICY_RCPT_DEAD ||
		    (d->rcpt[i] == POLICY_RCPT_UNTOUCHED &&
		    env->rcpts[i].state == ENVELOPE_RCPT_DEAD);
	}
	if (npending > 0)
		policy_defer(cf, a, d);
	else
		d->fate = ndead > 0 ? POLICY_DEAD : POLICY_DELIVERED;
}

time_t
policy_expiry(const struct config *cf, time_t age_base, bool null_sender)
{
	uint64_t life = null_sender ? cf->bounce_lifetime :
	    cf->queue_lifetime;

	return age_base + (time_t)life;
}

bool
policy_is_expired(time_t expiry, time_t now)
{
	return expiry <= now;
}

time_t
policy_hold_credit(time_t age_base, time_t since, time_t now)
{
	time_t from = age_base > since ? age_base : since;

	return from >= now ? age_base : age_base + (now - from);
}

void
policy_dispatch_gate(time_t hold_until, time_t refusing_until, time_t now,
    struct policy_gate *g)
{
	bool held = hold_until != 0 && now < hold_until;

	g->hold_over = hold_until != 0 && !held;
	/* While held the breaker's pause is not looked at. */
	g->pause_over = !held && refusing_until != 0 && now >= refusing_until;
	g->may_send = !held && (refusing_until == 0 || g->pause_over);
}

void
policy_flush(bool whole_queue, struct policy_flush *f)
{
	f->all_due = whole_queue;
	f->probe_now = whole_queue;
	f->reset_breaker = whole_queue;
}
