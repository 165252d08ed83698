/*
 * The delivery policy, one row per rule: the facts of an attempt (the
 * recipients' states and replies, the clock, the breaker) and the
 * decision wanted.  Changing a rule in policy.c makes a row fail.
 */
#include "policy.h"

#include <stdint.h>

#include "config.h"
#include "drain.h"
#include "envelope.h"
#include "t.h"

#define DAY	86400

/* The limits every row runs with. */
static void
test_config(struct config *cf)
{
	memset(cf, 0, sizeof(*cf));
	cf->retry_min = 300;
	cf->retry_max = 3600;
	cf->refuse_limit = 3;
	cf->probe_interval = 60;
	cf->queue_lifetime = 30 * DAY;
	cf->bounce_lifetime = 5 * DAY;
}

static void
test_backoff(void)
{
	static const struct {
		unsigned long long attempts, min, max;
		double rnd;
		unsigned long long want;
	} cases[] = {
		{ 1, 300, 3600, 0.5, 300 },	/* no jitter at rnd 0.5 */
		{ 2, 300, 3600, 0.5, 600 },
		{ 3, 300, 3600, 0.5, 1200 },
		{ 4, 300, 3600, 0.5, 2400 },
		{ 5, 300, 3600, 0.5, 3600 },	/* capped */
		{ 500, 300, 3600, 0.5, 3600 },
		{ 1, 300, 3600, 0.0, 270 },	/* -10% */
		{ 1, 300, 3600, 0.999999, 329 },	/* just under +10% */
		{ 1, 1, 1, 0.0, 1 },		/* never below 1 s */
		{ 0, 300, 3600, 0.5, 300 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t got = policy_backoff(cases[i].attempts, cases[i].min,
		    cases[i].max, cases[i].rnd);

		if (got != cases[i].want) {
			fprintf(stderr, "  case %zu: got %llu want %llu\n", i,
			    (unsigned long long)got, cases[i].want);
			T_CHECK(!"backoff");
		}
	}
}

/*
 * before: one letter per recipient: P pending, p pending with an earlier
 * reply, D done, X dead.  want: U untouched, d done, r retried, x dead,
 * k kept.  reply: the recipient whose reply becomes last_reply, -1 for
 * the session's.
 */
static const struct {
	const char		*name;
	const char		*before;
	int			 code[4];
	bool			 site;
	bool			 refusing;
	uint64_t		 streak, attempts;
	double			 rnd;
	/* the decision */
	enum policy_fate	 fate;
	const char		*want;
	bool			 contact;
	enum policy_breaker	 breaker;
	uint64_t		 streak_after, attempts_after, wait;
	time_t			 next;
	int			 reply;
} rows[] = {
	{ "all 2xx", "PP", { 250, 251 }, false, false, 2, 0, 0.5,
	    POLICY_DELIVERED, "dd", true, POLICY_BREAKER_RESET, 0, 0, 0, 0,
	    -1 },
	{ "all 4xx", "PP", { 451, 452 }, false, false, 2, 0, 0.5,
	    POLICY_DEFER, "rr", true, POLICY_BREAKER_KEEP, 2, 1, 300, 1300,
	    0 },
	{ "mixed 2xx/4xx/5xx", "PPP", { 250, 451, 550 }, false, false, 1, 0,
	    0.5, POLICY_SPLIT, "drx", true, POLICY_BREAKER_RESET, 0, 1, 300,
	    1300, 1 },
	{ "5xx and 4xx", "PP", { 550, 421 }, false, false, 0, 2, 0.5,
	    POLICY_SPLIT, "xr", true, POLICY_BREAKER_COUNT, 1, 3, 1200, 2200,
	    1 },
	{ "all 5xx", "PP", { 550, 554 }, false, false, 0, 4, 0.5,
	    POLICY_DEAD, "xx", true, POLICY_BREAKER_COUNT, 1, 4, 0, 0, -1 },
	{ "site failure", "PP", { 0, 0 }, true, false, 2, 3, 0.5,
	    POLICY_SITE_WAIT, "UU", false, POLICY_BREAKER_KEEP, 2, 3, 0, 1060,
	    -1 },
	{ "site failure after some replies", "PP", { 250, 0 }, true, false,
	    0, 0, 0.5, POLICY_SITE_WAIT, "UU", false, POLICY_BREAKER_KEEP, 0,
	    0, 0, 1060, -1 },
	{ "nobody answered", "P", { 0 }, false, false, 1, 0, 0.5,
	    POLICY_DEFER, "U", false, POLICY_BREAKER_KEEP, 1, 1, 300, 1300,
	    -1 },
	{ "untried keeps its earlier reply", "Pp", { 250, 0 }, false, false,
	    0, 1, 0.5, POLICY_DEFER, "dU", true, POLICY_BREAKER_RESET, 0, 2,
	    600, 1600, 1 },
	{ "done and dead recipients are not retried", "DXP", { 0, 0, 250 },
	    false, false, 0, 1, 0.5, POLICY_DEAD, "UUd", true,
	    POLICY_BREAKER_RESET, 0, 1, 0, 0, -1 },
	{ "done and 2xx: delivered", "DP", { 0, 250 }, false, false, 0, 1,
	    0.5, POLICY_DELIVERED, "Ud", true, POLICY_BREAKER_RESET, 0, 1, 0,
	    0, -1 },
	{ "breaker: streak below the limit", "P", { 550 }, false, false, 1,
	    0, 0.5, POLICY_DEAD, "x", true, POLICY_BREAKER_COUNT, 2, 0, 0, 0,
	    -1 },
	{ "breaker trips at the limit: kept", "PP", { 550, 451 }, false,
	    false, 2, 0, 0.5, POLICY_DEFER, "kr", true, POLICY_BREAKER_TRIP,
	    3, 1, 300, 1300, 0 },
	{ "breaker open: refused kept, streak counts", "P", { 554 }, false,
	    true, 5, 0, 0.5, POLICY_DEFER, "k", true, POLICY_BREAKER_COUNT, 6,
	    1, 300, 1300, 0 },
	{ "breaker open: a delivery resets", "P", { 250 }, false, true, 5, 0,
	    0.5, POLICY_DELIVERED, "d", true, POLICY_BREAKER_RESET, 0, 0, 0, 0,
	    -1 },
	{ "breaker open: mixed 2xx/5xx resets, 5xx kept", "PP", { 250, 550 },
	    false, true, 5, 0, 0.5, POLICY_DEFER, "dk", true,
	    POLICY_BREAKER_RESET, 0, 1, 300, 1300, 1 },
	{ "5xx below 550 is dead", "PPP", { 530, 521, 500 }, false, false, 0,
	    0, 0.5, POLICY_DEAD, "xxx", true, POLICY_BREAKER_COUNT, 1, 0, 0, 0,
	    -1 },
	{ "521 and 4xx: split", "PP", { 521, 451 }, false, false, 0, 0,
	    0.5, POLICY_SPLIT, "xr", true, POLICY_BREAKER_COUNT, 1, 1, 300,
	    1300, 1 },
	{ "1xx and 3xx are retried, not delivered", "PP", { 150, 354 }, false,
	    false, 2, 0, 0.5, POLICY_DEFER, "rr", true, POLICY_BREAKER_KEEP, 2,
	    1, 300, 1300, 0 },
	{ "backoff doubles", "P", { 451 }, false, false, 0, 3, 0.5,
	    POLICY_DEFER, "r", true, POLICY_BREAKER_KEEP, 0, 4, 2400, 3400,
	    0 },
	{ "backoff max", "P", { 451 }, false, false, 0, 40, 0.5,
	    POLICY_DEFER, "r", true, POLICY_BREAKER_KEEP, 0, 41, 3600, 4600,
	    0 },
	{ "backoff min, -10% jitter", "P", { 451 }, false, false, 0, 0, 0.0,
	    POLICY_DEFER, "r", true, POLICY_BREAKER_KEEP, 0, 1, 270, 1270, 0 },
};

static enum policy_rcpt
test_rcpt_want(char c)
{
	switch (c) {
	case 'd':
		return POLICY_RCPT_DONE;
	case 'r':
		return POLICY_RCPT_RETRY;
	case 'x':
		return POLICY_RCPT_DEAD;
	case 'k':
		return POLICY_RCPT_KEPT;
	default:
		return POLICY_RCPT_UNTOUCHED;
	}
}

static struct envelope *
test_env(const char *before, uint64_t attempts)
{
	struct envelope *env = envelope_new();
	size_t i;

	env->attempts = attempts;
	for (i = 0; before[i] != '\0'; i++) {
		envelope_add_rcpt(env, "r@example.test", NULL, NULL);
		env->rcpts[i].state = before[i] == 'D' ? ENVELOPE_RCPT_DONE :
		    before[i] == 'X' ? ENVELOPE_RCPT_DEAD :
		    ENVELOPE_RCPT_PENDING;
		if (before[i] == 'p')
			envelope_set_str(&env->rcpts[i].reply, "452 earlier");
	}
	return env;
}

static bool
test_row(const struct config *cf, size_t n)
{
	struct drain_rcpt_result res[4] = { { 0 } };
	enum policy_rcpt got[4];
	struct policy_attempt a;
	struct policy_decision d = { .rcpt = got };
	struct envelope *env = test_env(rows[n].before, rows[n].attempts);
	bool ok;
	size_t i;

	for (i = 0; i < env->nrcpt; i++)
		res[i].code = rows[n].code[i];
	a = (struct policy_attempt){ env, res, rows[n].site, 1000,
	    rows[n].rnd, rows[n].refusing, rows[n].streak };
	policy_after_attempt(cf, &a, &d);
	ok = d.fate == rows[n].fate && d.contact == rows[n].contact &&
	    d.breaker == rows[n].breaker &&
	    d.refuse_streak == rows[n].streak_after &&
	    d.attempts == rows[n].attempts_after && d.wait == rows[n].wait &&
	    d.next_attempt == rows[n].next &&
	    (rows[n].reply < 0 ? d.reply_rcpt == POLICY_NONE :
	    d.reply_rcpt == (size_t)rows[n].reply);
	for (i = 0; i < env->nrcpt; i++)
		ok = ok && got[i] == test_rcpt_want(rows[n].want[i]);
	if (!ok)
		fprintf(stderr, "  row \"%s\": fate %d breaker %d streak %llu "
		    "attempts %llu wait %llu next %lld reply %zd\n",
		    rows[n].name, (int)d.fate, (int)d.breaker,
		    (unsigned long long)d.refuse_streak,
		    (unsigned long long)d.attempts,
		    (unsigned long long)d.wait, (long long)d.next_attempt,
		    d.reply_rcpt == POLICY_NONE ? (ssize_t)-1 :
		    (ssize_t)d.reply_rcpt);
	envelope_free(env);
	return ok;
}

static void
test_after_attempt(void)
{
	struct config cf;
	size_t n;

	test_config(&cf);
	for (n = 0; n < sizeof(rows) / sizeof(rows[0]); n++)
		T_CHECK(test_row(&cf, n));
}

/* Lifetimes: expired at the boundary, not a second before; <> has its
 * own. */
static void
test_expiry(void)
{
	static const struct {
		time_t		 age_base;
		bool		 null_sender;
		time_t		 now;
		bool		 want;
	} cases[] = {
		{ 1000, false, 1000 + 30 * DAY, true },
		{ 1000, false, 1000 + 30 * DAY - 1, false },
		{ 1000, true, 1000 + 5 * DAY, true },
		{ 1000, true, 1000 + 5 * DAY - 1, false },
		{ 1000, false, 1000 + 5 * DAY, false },
	};
	struct config cf;
	size_t i;

	test_config(&cf);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		time_t exp = policy_expiry(&cf, cases[i].age_base,
		    cases[i].null_sender);

		if (policy_is_expired(exp, cases[i].now) != cases[i].want) {
			fprintf(stderr, "  expiry case %zu\n", i);
			T_CHECK(!"expiry");
		}
	}
}

/* Hold-mode freezes the clock for queued mail: its end credits the time
 * held to the lifetime. */
static void
test_hold_credit(void)
{
	static const struct {
		time_t	age_base, since, now, want;
	} cases[] = {
		{ 100, 1000, 4600, 3700 },	/* older: all the hold */
		{ 2000, 1000, 4600, 4600 },	/* came during the hold */
		{ 5000, 1000, 4600, 5000 },	/* beyond now already */
		{ 100, 4600, 4600, 100 },	/* hold-mode of no time */
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (policy_hold_credit(cases[i].age_base, cases[i].since,
		    cases[i].now) != cases[i].want) {
			fprintf(stderr, "  hold credit case %zu\n", i);
			T_CHECK(!"hold credit");
		}
}

/* The dispatcher's gate: hold-mode freezes everything (nothing sent,
 * nothing expires, the breaker's pause not looked at); its end and the
 * end of the breaker's pause are seen at the boundary. */
static void
test_dispatch_gate(void)
{
	static const struct {
		time_t	hold_until, refusing_until, now;
		bool	hold_over, pause_over, may_send;
	} cases[] = {
		{ 0, 0, 1000, false, false, true },	/* nothing on */
		{ 1001, 0, 1000, false, false, false },	/* held */
		{ 1000, 0, 1000, true, false, true },	/* hold over */
		{ 1001, 900, 1000, false, false, false }, /* held, pause up */
		{ 999, 900, 1000, true, true, true },	/* both over */
		{ 999, 1001, 1000, true, false, false },	/* hold over, pause not */
		{ 0, 1001, 1000, false, false, false },	/* breaker open */
		{ 0, 1000, 1000, false, true, true },	/* pause over */
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct policy_gate g;

		policy_dispatch_gate(cases[i].hold_until,
		    cases[i].refusing_until, cases[i].now, &g);
		if (g.hold_over != cases[i].hold_over ||
		    g.pause_over != cases[i].pause_over ||
		    g.may_send != cases[i].may_send) {
			fprintf(stderr, "  gate case %zu: %d %d %d\n", i,
			    g.hold_over, g.pause_over, g.may_send);
			T_CHECK(!"dispatch gate");
		}
	}
}

/* A whole-queue flush resets the breaker and probes at once; one
 * message's flush touches neither. */
static void
test_flush(void)
{
	struct policy_flush f;

	policy_flush(true, &f);
	T_CHECK(f.all_due && f.probe_now && f.reset_breaker);
	policy_flush(false, &f);
	T_CHECK(!f.all_due && !f.probe_now && !f.reset_breaker);
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "policy_after_attempt", test_after_attempt },
		{ "policy_expiry", test_expiry },
		{ "policy_hold_credit", test_hold_credit },
		{ "policy_backoff", test_backoff },
		{ "policy_dispatch_gate", test_dispatch_gate },
		{ "policy_flush", test_flush },
	};

	return t_main(cases, sizeof(cases) / sizeof(cases[0]));
}
