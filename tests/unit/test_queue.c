#include "queue.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "envelope.h"
#include "spool.h"
#include "t.h"
#include "util.h"

static void
test_size_limit(void)
{
	static const struct {
		uint64_t max, primary, want;
	} cases[] = {
		{ 50000000, 0, 50000000 },		/* no SIZE: max */
		{ 50000000, 26214400, 26214400 - QUEUE_SIZE_HEADROOM },
		{ 10000000, 26214400, 10000000 },	/* max is lower */
		{ 50000000, 100000, 100000 - QUEUE_SIZE_HEADROOM },
		{ 50000000, 2 * QUEUE_SIZE_HEADROOM, QUEUE_SIZE_HEADROOM },
		/* a tiny SIZE: half of it, never 0 */
		{ 50000000, 2 * QUEUE_SIZE_HEADROOM - 2,
		  QUEUE_SIZE_HEADROOM - 1 },
		{ 50000000, 1000, 500 },
		{ 50000000, 1, 1 },
		{ 1024, UINT64_MAX, 1024 },		/* huge: max */
		{ UINT64_MAX, UINT64_MAX, UINT64_MAX - QUEUE_SIZE_HEADROOM },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t got = queue_size_limit_calc(cases[i].max,
		    cases[i].primary);

		if (got != cases[i].want) {
			fprintf(stderr, "  case %zu: got %llu want %llu\n", i,
			    (unsigned long long)got,
			    (unsigned long long)cases[i].want);
			T_CHECK(!"size_limit");
		}
	}
}

static void
test_size_rcpts(void)
{
	static const struct {
		uint64_t primary, size, nrcpt, octets;
		bool want;
	} cases[] = {
		/* one recipient: the limit (SIZE - 16 KiB) binds first */
		{ 200000, 200000 - QUEUE_SIZE_HEADROOM, 1, 40, true },
		/* 50 recipients of 40 octets: 6144 + 1600 + 6000 < 16 KiB */
		{ 200000, 200000 - QUEUE_SIZE_HEADROOM, 50, 2000, true },
		/* 100 of 40: 6144 + 3200 + 12000 > 16 KiB */
		{ 200000, 200000 - QUEUE_SIZE_HEADROOM, 100, 4000, false },
		{ 200000, 200000 - 6144 - 3200 - 12000, 100, 4000, true },
		{ 200000, 200000 - 6144 - 3200 - 12000 + 1, 100, 4000, false },
		/* recipients alone over the SIZE */
		{ 40000, 1, 1000, 64000, false },
		/* a tiny SIZE: only the (halved) limit applies */
		{ 20000, 10000, 100, 5000, true },
		{ 200000, 1000, UINT64_MAX, 1, false },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (queue_size_fits_primary(cases[i].primary, cases[i].size,
		    cases[i].nrcpt, cases[i].octets) != cases[i].want) {
			fprintf(stderr, "  case %zu\n", i);
			T_CHECK(!"size_rcpts");
		}
}

/* What the primary offered survives a restart (a new queue on the same
 * spool), and a garbled state file falls back to max_message_size. */
/* A config and a spool in dir (made by mkdtemp); NULL config on failure. */
static struct config *
test_setup(char *dir, struct spool **sp)
{
	char path[256], err[256];
	struct config *cf;
	FILE *fp;

	T_CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/c.conf", dir);
	fp = fopen(path, "w");
	fprintf(fp, "[server]\nhostname = mx2.example.test\n"
	    "listen = 127.0.0.1:2525\ndomains = example.test\n"
	    "max_message_size = 10M\n[spool]\ndir = %s/spool\n"
	    "[primary]\nhost = 127.0.0.1\n", dir);
	fclose(fp);
	cf = config_load(path, err, sizeof(err));
	T_CHECK(cf != NULL);
	if (cf == NULL)
		return NULL;
	*sp = spool_open(cf->spool_dir);
	T_CHECK(*sp != NULL);
	return cf;
}

static void
test_teardown(const char *dir, struct config *cf, struct spool *sp,
    struct event_base *base)
{
	char cmd[256];

	spool_close(sp);
	config_free(cf);
	event_base_free(base);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	T_CHECK(system(cmd) == 0);
}

static void
test_primary_persist(void)
{
	char dir[] = "/tmp/holdfast-test-queue.XXXXXX";
	struct event_base *base = event_base_new();
	struct config *cf;
	struct spool *sp = NULL;
	struct queue *q;

	if ((cf = test_setup(dir, &sp)) == NULL)
		return;
	q = queue_new(base, cf, sp, NULL, NULL, NULL);
	T_CHECK(queue_load(q) == 0);
	T_CHECK(queue_size_limit(q) == 10 * 1024 * 1024);
	T_CHECK(queue_primary_has_smtputf8(q));	/* unknown: offered */
	queue_primary_learn(q, 100000, false, true);
	T_CHECK(queue_size_limit(q) == 100000 - QUEUE_SIZE_HEADROOM);
	T_CHECK(!queue_primary_has_smtputf8(q));
	queue_free(q);

	q = queue_new(base, cf, sp, NULL, NULL, NULL);
	T_CHECK(queue_load(q) == 0);
	T_CHECK(queue_size_limit(q) == 100000 - QUEUE_SIZE_HEADROOM);
	T_CHECK(!queue_primary_has_smtputf8(q));
	/* SIZE 0 / none: max_message_size again, and that persists too */
	queue_primary_learn(q, 0, true, true);
	T_CHECK(queue_size_limit(q) == 10 * 1024 * 1024);
	T_CHECK(queue_primary_has_smtputf8(q));
	queue_free(q);

	q = queue_new(base, cf, sp, NULL, NULL, NULL);
	T_CHECK(queue_load(q) == 0);
	T_CHECK(queue_size_limit(q) == 10 * 1024 * 1024);
	queue_free(q);

	T_CHECK(spool_state_write(sp, "primary-ehlo", "garbage\n") == 0);
	q = queue_new(base, cf, sp, NULL, NULL, NULL);
	T_CHECK(queue_load(q) == 0);
	T_CHECK(queue_size_limit(q) == 10 * 1024 * 1024);
	T_CHECK(queue_primary_has_smtputf8(q));
	queue_free(q);
	test_teardown(dir, cf, sp, base);
}

static time_t test_now;

static time_t
test_clock(void *arg)
{
	(void)arg;
	return test_now;
}

/* The queue reads the time from the clock it is given: hold-mode starts
 * and ends on it (its span is persisted). */
static void
test_queue_clock(void)
{
	char dir[] = "/tmp/holdfast-test-queue.XXXXXX";
	struct event_base *base = event_base_new();
	struct config *cf;
	struct spool *sp = NULL;
	struct queue *q;
	time_t since = 0, until = 0;

	if ((cf = test_setup(dir, &sp)) == NULL)
		return;
	q = queue_new(base, cf, sp, NULL, NULL, NULL);
	T_CHECK(queue_load(q) == 0);
	queue_set_clock(q, test_clock, NULL);
	test_now = 1000000;
	T_CHECK(queue_hold_mode_set(q, true, 60) == 0);
	T_CHECK(spool_state_span_load(sp, "hold-mode", &since, &until) == 0);
	T_CHECK(since == 1000000 && until == 1000060);
	test_now += 30;		/* extended from the fake now */
	T_CHECK(queue_hold_mode_set(q, true, 60) == 0);
	T_CHECK(spool_state_span_load(sp, "hold-mode", &since, &until) == 0);
	T_CHECK(since == 1000000 && until == 1000090);
	T_CHECK(queue_hold_mode_set(q, false, 0) == 0);
	queue_free(q);
	test_teardown(dir, cf, sp, base);
}

/* A committed message of size body bytes arrived at arrival, in area. */
static void
stats_msg(struct spool *sp, enum spool_area area, time_t arrival,
    uint64_t attempts, size_t size)
{
	struct spool_msg *msg = spool_msg_new(sp);
	struct envelope *env = envelope_new();
	char body[64] = { 0 }, id[SPOOL_ID_LEN + 1], *text;
	size_t len;

	T_CHECK(msg != NULL && size <= sizeof(body));
	if (msg == NULL)
		return;
	T_CHECK(spool_msg_write(msg, body, size) == 0);
	util_copy(id, sizeof(id), spool_msg_id(msg));
	util_copy(env->id, sizeof(env->id), id);
	env->arrival = arrival;
	envelope_set_str(&env->sender, "a@example.org");
	env->size = size;
	env->attempts = attempts;
	envelope_add_rcpt(env, "b@example.test", NULL, NULL);
	if (area == SPOOL_DEAD)
		envelope_set_str(&env->dead_reason, "expired");
	env->held = area == SPOOL_HOLD;
	text = envelope_dump(env, &len);
	T_CHECK(spool_msg_commit(msg, text, len) == 0);
	if (area != SPOOL_QUEUE)
		T_CHECK(spool_move(sp, id, SPOOL_QUEUE, area) == 0);
	free(text);
	envelope_free(env);
}

/*
 * queue_stats_get() counts what the index holds without walking it: per
 * state (queued, deferred = attempted, held, dead) messages, bytes and the
 * oldest arrival, and queue/ by age bucket, which follow the clock.
 */
static void
test_stats(void)
{
	char dir[] = "/tmp/holdfast-test-queue.XXXXXX", path[256], err[256];
	struct event_base *base = event_base_new();
	struct queue_stats st;
	struct config *cf;
	struct spool *sp;
	struct queue *q;
	time_t now = util_now(), t0;
	FILE *fp;
	int i;

	T_CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/c.conf", dir);
	fp = fopen(path, "w");
	fprintf(fp, "[server]\nhostname = mx2.example.test\n"
	    "listen = 127.0.0.1:2525\ndomains = example.test\n"
	    "[spool]\ndir = %s/spool\nmin_free = 0\n"
	    "[primary]\nhost = 127.0.0.1\n", dir);
	fclose(fp);
	cf = config_load(path, err, sizeof(err));
	T_CHECK(cf != NULL);
	if (cf == NULL)
		return;
	sp = spool_open(cf->spool_dir);
	T_CHECK(sp != NULL);
	/* queued: 2 (10 + 20 bytes), one just under 5 minutes old */
	stats_msg(sp, SPOOL_QUEUE, now - 299, 0, 10);
	stats_msg(sp, SPOOL_QUEUE, now - 100, 0, 20);
	/* deferred: 1, 2 hours old (the 160m bucket) */
	stats_msg(sp, SPOOL_QUEUE, now - 7200, 3, 30);
	/* held: 2, dead: 1; not in the age buckets */
	stats_msg(sp, SPOOL_HOLD, now - 50000, 0, 40);
	stats_msg(sp, SPOOL_HOLD, now - 60000, 2, 50);
	stats_msg(sp, SPOOL_DEAD, now - 90000, 9, 60);

	q = queue_new(base, cf, sp, NULL, NULL, NULL);
	T_CHECK(queue_load(q) == 0);
	queue_stats_get(q, &st);
	T_CHECK(st.state[QUEUE_STATS_QUEUED].messages == 2);
	T_CHECK(st.state[QUEUE_STATS_QUEUED].bytes == 30);
	T_CHECK(st.state[QUEUE_STATS_QUEUED].oldest == now - 299);
	T_CHECK(st.state[QUEUE_STATS_DEFERRED].messages == 1);
	T_CHECK(st.state[QUEUE_STATS_DEFERRED].bytes == 30);
	T_CHECK(st.state[QUEUE_STATS_DEFERRED].oldest == now - 7200);
	T_CHECK(st.state[QUEUE_STATS_HELD].messages == 2);
	T_CHECK(st.state[QUEUE_STATS_HELD].bytes == 90);
	T_CHECK(st.state[QUEUE_STATS_HELD].oldest == now - 60000);
	T_CHECK(st.state[QUEUE_STATS_DEAD].messages == 1);
	T_CHECK(st.state[QUEUE_STATS_DEAD].bytes == 60);
	T_CHECK(st.state[QUEUE_STATS_DEAD].oldest == now - 90000);
	T_CHECK(st.oldest == now - 7200);
	T_CHECK(st.size_limit == cf->max_message_size);
	T_CHECK(st.primary_up && !st.hold_mode && !st.refusing);
	for (i = 0; i < SELECT_NBUCKETS; i++)
		T_CHECK(st.age[i] == (i == 0 && st.now < now + 1 ? 2 :
		    i == 0 ? 1 : i == 1 && st.now >= now + 1 ? 1 :
		    i == 5 ? 1 : 0));
	/* a second later the 299-second one is in the 10m bucket */
	t0 = util_now();
	for (i = 0; i < 30 && util_now() <= t0; i++)
		usleep(50000);
	queue_stats_get(q, &st);
	T_CHECK(st.now >= now + 1);
	T_CHECK(st.age[0] == 1 && st.age[1] == 1 && st.age[5] == 1);
	T_CHECK(st.state[QUEUE_STATS_QUEUED].messages == 2);
	queue_free(q);

	spool_close(sp);
	config_free(cf);
	event_base_free(base);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	T_CHECK(system(path) == 0);
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "queue_size_limit", test_size_limit },
		{ "queue_size_rcpts", test_size_rcpts },
		{ "queue_primary_persist", test_primary_persist },
		{ "queue_clock", test_queue_clock },
		{ "queue_stats", test_stats },
	};

	return T_RUN(cases);
}
