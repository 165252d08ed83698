#include "select.h"

#include "envelope.h"
#include "t.h"

#define NOW	1800000000

static struct envelope *
mkenv(const char *sender, const char *rcpt, const char *reply,
    time_t age, uint64_t attempts)
{
	struct envelope *env = envelope_new();

	envelope_set_str(&env->sender, sender);
	envelope_add_rcpt(env, rcpt, NULL, NULL);
	envelope_set_str(&env->last_reply, reply);
	env->arrival = NOW - age;
	env->attempts = attempts;
	return env;
}

static void
test_parse(void)
{
	static const struct {
		const char	*args[8];
		int		 rc;
		size_t		 nids;
		bool		 any, dry;
	} cases[] = {
		{ { "abc", "def" }, 0, 2, false, false },
		{ { "--state", "deferred" }, 0, 0, true, false },
		{ { "--state", "queued,held", "--dry-run" }, 0, 0, true, true },
		{ { "--state", "bogus" }, -1, 0, false, false },
		{ { "--state" }, -1, 0, false, false },
		{ { "--older-than", "2h", "--from", "*@x" }, 0, 0, true, false },
		{ { "--older-than", "soon" }, -1, 0, false, false },
		{ { "--older-than", "0" }, -1, 0, false, false },
		{ { "--frm", "x" }, -1, 0, false, false },
		{ { "abc", "--rcpt", "x" }, -1, 0, false, false },
		{ { "--dry-run" }, -1, 0, false, false },
		{ { "--reply", "*4.7.1*" }, 0, 0, true, false },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *argv[8], err[256] = "";
		const char *ids[4];
		struct select sel;
		size_t nids, argc = 0;
		int rc;

		while (argc < 8 && cases[i].args[argc] != NULL) {
			argv[argc] = (char *)cases[i].args[argc];
			argc++;
		}
		rc = select_parse((int)argc, argv, &sel, ids, 4, &nids, err,
		    sizeof(err));
		if (rc != cases[i].rc)
			fprintf(stderr, "  case %zu: rc %d err %s\n", i, rc,
			    err);
		T_CHECK(rc == cases[i].rc);
		T_CHECK(rc == 0 || err[0] != '\0');
		if (rc == 0) {
			T_CHECK(nids == cases[i].nids);
			T_CHECK(sel.any == cases[i].any);
			T_CHECK(sel.dry_run == cases[i].dry);
		}
	}
}

static void
test_match(void)
{
	struct envelope *e1 = mkenv("spam@bad.example", "u@ours.test",
	    "451 4.7.1 greylisted", 3 * 3600, 2);
	struct envelope *e2 = mkenv("", "postmaster@ours.test", NULL, 60, 0);
	static const struct {
		const char	*args[6];
		int		 env;	/* 1 or 2 */
		const char	*state;
		bool		 want;
	} cases[] = {
		{ { "--state", "deferred" }, 1, "deferred", true },
		{ { "--state", "queued" }, 1, "deferred", false },
		{ { "--state", "deferred" }, 1, "waiting", true },
		{ { "--state", "queued" }, 2, "waiting", true },
		{ { "--state", "waiting" }, 2, "queued", false },
		{ { "--state", "held,dead" }, 1, "dead", true },
		{ { "--from", "*@BAD.example" }, 1, "deferred", true },
		{ { "--from", "*@bad.example" }, 2, "queued", false },
		{ { "--from", "<>" }, 2, "queued", true },
		{ { "--from", "<>" }, 1, "queued", false },
		{ { "--rcpt", "postmaster@*" }, 2, "queued", true },
		{ { "--rcpt", "postmaster@*" }, 1, "queued", false },
		{ { "--reply", "*4.7.1*" }, 1, "deferred", true },
		{ { "--reply", "*4.7.1*" }, 2, "queued", false },
		{ { "--older-than", "2h" }, 1, "deferred", true },
		{ { "--older-than", "2h" }, 2, "queued", false },
		{ { "--older-than", "2h", "--from", "x@y" }, 1, "deferred",
		  false },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *argv[6], err[256];
		const char *ids[1];
		struct select sel;
		size_t nids, argc = 0;
		bool got;

		while (argc < 6 && cases[i].args[argc] != NULL) {
			argv[argc] = (char *)cases[i].args[argc];
			argc++;
		}
		T_CHECK(select_parse((int)argc, argv, &sel, ids, 1, &nids,
		    err, sizeof(err)) == 0);
		got = select_match(&sel, cases[i].env == 1 ? e1 : e2,
		    cases[i].state, NOW);
		if (got != cases[i].want)
			fprintf(stderr, "  match case %zu: got %d\n", i, got);
		T_CHECK(got == cases[i].want);
	}
	envelope_free(e1);
	envelope_free(e2);
}

static void
test_fmt(void)
{
	char *argv[] = { "--state", "deferred,queued", "--from", "*@x",
	    "--older-than", "1h", "--dry-run" };
	const char *ids[1];
	struct select sel;
	char out[256], err[64];
	size_t nids;

	T_CHECK(select_parse(7, argv, &sel, ids, 1, &nids, err,
	    sizeof(err)) == 0);
	select_fmt(&sel, out, sizeof(out));
	T_STREQ(out, "--state queued,deferred --from *@x --older-than 3600s");
	select_fmt(&sel, out, 12);
	T_CHECK(strlen(out) < 12);
}

static void
test_bucket(void)
{
	static const struct {
		uint64_t	 age;
		const char	*name;
	} cases[] = {
		{ 0, "5m" }, { 299, "5m" }, { 300, "10m" }, { 599, "10m" },
		{ 600, "20m" }, { 1199, "20m" }, { 1200, "40m" },
		{ 2400, "80m" }, { 4800, "160m" }, { 9600, "320m" },
		{ 19200, "640m" }, { 38400, "1280m" }, { 76799, "1280m" },
		{ 76800, "older" }, { 86400 * 30, "older" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		T_STREQ(select_bucket_name(select_bucket(cases[i].age)),
		    cases[i].name);
	T_STREQ(select_bucket_name(SELECT_NBUCKETS), "older");
	/* each bucket ends where the next one starts */
	for (i = 0; i + 1 < SELECT_NBUCKETS; i++) {
		T_CHECK(select_bucket(select_bucket_end(i) - 1) == i);
		T_CHECK(select_bucket(select_bucket_end(i)) == i + 1);
	}
	T_CHECK(select_bucket_end(SELECT_NBUCKETS - 1) == UINT64_MAX);
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "parse", test_parse },
		{ "match", test_match },
		{ "fmt", test_fmt },
		{ "bucket", test_bucket },
	};

	return t_main(cases, sizeof(cases) / sizeof(cases[0]));
}
