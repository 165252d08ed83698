#include "mxcheck.h"

#include "t.h"
#include "util.h"

/* Fill set from a compact "HOST:PREF,..." list, one item at a time so that
 * a found set may hold a host twice (test input is trusted). */
static void
set_of(struct mxcheck_set *set, const char *list)
{
	struct mxcheck_set one;
	char buf[512], err[256], *item, *save = NULL;

	set->n = 0;
	snprintf(buf, sizeof(buf), "%s", list);
	for (item = strtok_r(buf, ",", &save); item != NULL;
	    item = strtok_r(NULL, ",", &save)) {
		if (mxcheck_parse_expect(item, &one, err, sizeof(err)) == -1 ||
		    set->n == MXCHECK_SET_MAX) {
			fprintf(stderr, "  bad test item \"%s\": %s\n", item,
			    err);
			T_CHECK(!"set_of");
			return;
		}
		set->mx[set->n++] = one.mx[0];
	}
}

static void
test_host_parse(void)
{
	static const struct {
		const char	*in;
		const char	*want;		/* NULL: rejected */
	} cases[] = {
		{ "mx1.example.test", "mx1.example.test" },
		{ "MX1.Example.TEST.", "mx1.example.test" },
		{ "a", "a" },
		{ "_srv-x.example", "_srv-x.example" },
		{ ".", "" },			/* null MX target */
		{ "", NULL },
		{ "a..b", NULL },
		{ ".a", NULL },
		{ "a.b..", NULL },
		{ "a b", NULL },
		{ "a\"b", NULL },
		{ "a\nb", NULL },
		{ "a\\b", NULL },
		{ "a:b", NULL },
		{ "0123456789012345678901234567890123456789012345678901234567890"
		  "12.x", "0123456789012345678901234567890123456789012345678901"
		  "23456789012.x" },		/* 63-byte label */
		{ "0123456789012345678901234567890123456789012345678901234567890"
		  "123.x", NULL },		/* 64-byte label */
	};
	char out[MXCHECK_HOST_MAX + 1];
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
		int rc = mxcheck_host_parse(cases[i].in, strlen(cases[i].in),
		    out);

		if (cases[i].want == NULL) {
			if (rc != -1)
				fprintf(stderr, "  case %zu accepted\n", i);
			T_CHECK(rc == -1);
		} else {
			T_CHECK(rc == 0);
			if (rc == 0)
				T_STREQ(out, cases[i].want);
		}
	}
}

static void
test_host_parse_long(void)
{
	char in[300], out[MXCHECK_HOST_MAX + 1];
	size_t i;

	/* 253 bytes of "a.a.a...a" is the longest name; 255 is too long */
	for (i = 0; i < sizeof(in); i++)
		in[i] = i % 2 == 0 ? 'a' : '.';
	T_CHECK(mxcheck_host_parse(in, 253, out) == 0);
	T_CHECK(strlen(out) == 253);
	T_CHECK(mxcheck_host_parse(in, 254, out) == 0);	/* trailing dot */
	T_CHECK(strlen(out) == 253);
	T_CHECK(mxcheck_host_parse(in, 255, out) == -1);
	T_CHECK(mxcheck_host_parse(in, 299, out) == -1);
}

static void
test_parse_expect(void)
{
	static const struct {
		const char	*in;
		int		 rc;
		const char	*want;		/* mxcheck_set_fmt, in order */
	} cases[] = {
		{ "mx1.example.test:10,mx2.example.test:20", 0,
		    "10 mx1.example.test., 20 mx2.example.test." },
		{ "MX1.Example.Test.", 0, "mx1.example.test." },
		{ "b.example:20, a.example", 0, "20 b.example., a.example." },
		{ " a.example : 5 ", -1, NULL },	/* space before ':' */
		{ "  a.example:5 ,\tb.example ", 0,
		    "5 a.example., b.example." },
		{ "a.example:0,b.example:65535", 0,
		    "0 a.example., 65535 b.example." },
		{ ".:0", 0, "0 ." },			/* null MX */
		{ "a.example:65536", -1, NULL },
		{ "a.example:-1", -1, NULL },
		{ "a.example:", -1, NULL },
		{ "a.example:1x", -1, NULL },
		{ "a.example:10:20", -1, NULL },
		{ "a.example:99999999999999999999", -1, NULL },
		{ ":10", -1, NULL },
		{ "", -1, NULL },
		{ ",", -1, NULL },
		{ "a.example,", -1, NULL },
		{ "a.example,,b.example", -1, NULL },
		{ "a..example", -1, NULL },
		{ "a.example,A.EXAMPLE.:10", -1, NULL },	/* twice */
	};
	struct mxcheck_set set;
	char err[256], out[MXCHECK_SET_FMT_MAX];
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
		int rc;

		err[0] = '\0';
		rc = mxcheck_parse_expect(cases[i].in, &set, err, sizeof(err));
		if (rc != cases[i].rc) {
			fprintf(stderr, "  case %zu \"%s\": rc %d (%s)\n", i,
			    cases[i].in, rc, err);
			T_CHECK(!"parse_expect rc");
			continue;
		}
		if (rc == -1) {
			T_CHECK(err[0] != '\0');
			continue;
		}
		mxcheck_set_fmt(&set, out, sizeof(out));
		T_STREQ(out, cases[i].want);
	}
}

static void
test_parse_expect_limits(void)
{
	struct mxcheck_set set;
	char err[256];
	char *big;
	size_t i, len = 0, cap = MXCHECK_EXPECT_MAX * 2;

	/* MXCHECK_SET_MAX hosts are fine, one more is not */
	big = calloc(1, cap);
	T_CHECK(big != NULL);
	if (big == NULL)
		return;
	for (i = 0; i < MXCHECK_SET_MAX; i++)
		len += (size_t)snprintf(big + len, cap - len, "%sh%zu.example",
		    i > 0 ? "," : "", i);
	T_CHECK(mxcheck_parse_expect(big, &set, err, sizeof(err)) == 0);
	T_CHECK(set.n == MXCHECK_SET_MAX);
	len += (size_t)snprintf(big + len, cap - len, ",one.more");
	T_CHECK(mxcheck_parse_expect(big, &set, err, sizeof(err)) == -1);

	/* the byte limit is checked before anything is parsed */
	memset(big, 'a', cap - 1);
	big[cap - 1] = '\0';
	T_CHECK(mxcheck_parse_expect(big, &set, err, sizeof(err)) == -1);
	T_CHECK(strstr(err, "longer") != NULL);
	free(big);
}

static void
test_compare(void)
{
	static const struct {
		const char	*found, *expect;
		enum mxcheck_result want;
		const char	*why;		/* substring, or NULL */
	} cases[] = {
		{ "a.ex:10,b.ex:20", "a.ex:10,b.ex:20", MXCHECK_MATCH, NULL },
		/* order-insensitive */
		{ "b.ex:20,a.ex:10", "a.ex:10,b.ex:20", MXCHECK_MATCH, NULL },
		/* case and trailing dots */
		{ "A.EX:10,b.ex.:20", "a.ex.:10,B.Ex:20", MXCHECK_MATCH,
		    NULL },
		/* no pref: any preference matches */
		{ "a.ex:10,b.ex:20", "a.ex,b.ex", MXCHECK_MATCH, NULL },
		{ "a.ex:10,b.ex:20", "a.ex:10,b.ex", MXCHECK_MATCH, NULL },
		/* wrong preference */
		{ "a.ex:10,b.ex:20", "a.ex:10,b.ex:30", MXCHECK_DRIFT,
		    "b.ex. has preference 20, expected 30" },
		/* missing host */
		{ "a.ex:10", "a.ex:10,b.ex:20", MXCHECK_DRIFT,
		    "missing b.ex." },
		/* extra host */
		{ "a.ex:10,b.ex:20,c.ex:30", "a.ex:10,b.ex:20", MXCHECK_DRIFT,
		    "unexpected 30 c.ex." },
		{ "a.ex:10,c.ex:20", "a.ex,b.ex", MXCHECK_DRIFT,
		    "missing b.ex.; unexpected 20 c.ex." },
		/* empty answer (NODATA) */
		{ "", "a.ex", MXCHECK_DRIFT, "missing a.ex." },
		{ "a.ex:10", "", MXCHECK_DRIFT, "unexpected 10 a.ex." },
		{ "", "", MXCHECK_MATCH, NULL },
		/* suffixes are not equal */
		{ "a.ex.org:10", "a.ex:10", MXCHECK_DRIFT, "missing a.ex." },
		/* one host at two preferences: the extra record drifts */
		{ "a.ex:20,a.ex:10", "a.ex:10", MXCHECK_DRIFT,
		    "unexpected 20 a.ex." },
		{ "a.ex:20,a.ex:10", "a.ex", MXCHECK_MATCH, NULL },
		/* null MX */
		{ ".:0", ".:0", MXCHECK_MATCH, NULL },
		{ ".:0", "a.ex", MXCHECK_DRIFT, "unexpected 0 ." },
	};
	struct mxcheck_set found, expect;
	char why[512];
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
		enum mxcheck_result got;

		set_of(&found, cases[i].found);
		set_of(&expect, cases[i].expect);
		got = mxcheck_compare(&found, &expect, why, sizeof(why));
		if (got != cases[i].want) {
			fprintf(stderr, "  case %zu: got %d (%s)\n", i,
			    (int)got, why);
			T_CHECK(!"compare");
			continue;
		}
		if (cases[i].why != NULL && strstr(why, cases[i].why) ==
		    NULL) {
			fprintf(stderr, "  case %zu: why \"%s\" lacks \"%s\"\n",
			    i, why, cases[i].why);
			T_CHECK(!"compare why");
		}
		if (got == MXCHECK_MATCH)
			T_STREQ(why, "");
	}
	/* why may be absent or tiny */
	set_of(&found, "a.ex:10");
	set_of(&expect, "b.ex:10");
	T_CHECK(mxcheck_compare(&found, &expect, NULL, 0) == MXCHECK_DRIFT);
	T_CHECK(mxcheck_compare(&found, &expect, why, 4) == MXCHECK_DRIFT);
	T_CHECK(strlen(why) < 4);
}

static void
test_set_fmt(void)
{
	struct mxcheck_set set;
	char out[MXCHECK_SET_FMT_MAX], small[16];
	size_t i;

	set_of(&set, "b.ex:20,c.ex:10,a.ex:20");
	mxcheck_set_sort(&set);
	mxcheck_set_fmt(&set, out, sizeof(out));
	T_STREQ(out, "10 c.ex., 20 a.ex., 20 b.ex.");
	set.n = 0;
	mxcheck_set_fmt(&set, out, sizeof(out));
	T_STREQ(out, "(none)");

	set_of(&set, "aaaa.ex:10,bbbb.ex:20,cccc.ex:30");
	mxcheck_set_fmt(&set, small, sizeof(small));
	T_CHECK(strlen(small) == sizeof(small) - 1);
	T_CHECK(strcmp(small + sizeof(small) - 4, "...") == 0);

	/* a full set of the longest names fits MXCHECK_SET_FMT_MAX */
	set.n = MXCHECK_SET_MAX;
	for (i = 0; i < set.n; i++) {
		memset(set.mx[i].host, 'x', MXCHECK_HOST_MAX);
		set.mx[i].host[MXCHECK_HOST_MAX] = '\0';
		set.mx[i].pref = 65535;
	}
	mxcheck_set_fmt(&set, out, sizeof(out));
	T_CHECK(strstr(out, "...") == NULL);
	T_CHECK(strlen(out) == MXCHECK_SET_MAX * (6 + MXCHECK_HOST_MAX + 1) +
	    (MXCHECK_SET_MAX - 1) * 2);
}

static void
test_prom_escape(void)
{
	static const struct {
		const char	*in, *want;
	} cases[] = {
		{ "example.test", "example.test" },
		{ "", "" },
		{ "a\"b", "a\\\"b" },
		{ "a\\b", "a\\\\b" },
		{ "a\nb", "a\\nb" },
		{ "\"\\\n", "\\\"\\\\\\n" },
		{ "tab\there", "tab\there" },	/* only \\ \" \n escaped */
	};
	char out[64];
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(cases); i++) {
		T_CHECK(mxcheck_prom_escape(cases[i].in, out, sizeof(out)) ==
		    0);
		T_STREQ(out, cases[i].want);
	}
	/* truncation: never splits an escape, always terminated */
	T_CHECK(mxcheck_prom_escape("abc", out, 4) == 0);
	T_STREQ(out, "abc");
	T_CHECK(mxcheck_prom_escape("abcd", out, 4) == -1);
	T_STREQ(out, "abc");
	T_CHECK(mxcheck_prom_escape("ab\"", out, 4) == -1);
	T_STREQ(out, "ab");
	T_CHECK(mxcheck_prom_escape("a", out, 0) == -1);
}

static void
test_usage(void)
{
	static const char *const bad[][6] = {
		{ "check-mx", NULL },
		{ "check-mx", "example.test", NULL },
		{ "check-mx", "--expect", "a.ex", NULL },
		{ "check-mx", "example.test", "--expect", NULL },
		{ "check-mx", "example.test", "--expect", "", NULL },
		{ "check-mx", "example.test", "--expect", "a..ex", NULL },
		{ "check-mx", "a", "b", "--expect", "a.ex", NULL },
		{ "check-mx", "example.test", "--bogus", "x", NULL },
		{ "check-mx", "ex..test", "--expect", "a.ex", NULL },
		{ "check-mx", "example.test", "--expect=a.ex", "--timeout=0",
		    NULL },
		{ "check-mx", "example.test", "--expect=a.ex",
		    "--timeout=9999", NULL },
		{ "check-mx", "example.test", "--expect=a.ex",
		    "--expect=b.ex", NULL },
		{ "check-mx", "example.test", "--expect=a.ex",
		    "--server=bogus", NULL },
	};
	size_t i;

	/* every case fails before any lookup is sent */
	for (i = 0; i < UTIL_ARRAY_LEN(bad); i++) {
		int argc = 0;

		while (bad[i][argc] != NULL)
			argc++;
		if (mxcheck_main(argc, (char **)(void *)bad[i]) != 2) {
			fprintf(stderr, "  usage case %zu not rejected\n", i);
			T_CHECK(!"usage");
		}
	}
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "mxcheck_host_parse", test_host_parse },
		{ "mxcheck_host_parse_long", test_host_parse_long },
		{ "mxcheck_parse_expect", test_parse_expect },
		{ "mxcheck_parse_expect_limits", test_parse_expect_limits },
		{ "mxcheck_compare", test_compare },
		{ "mxcheck_set_fmt", test_set_fmt },
		{ "mxcheck_prom_escape", test_prom_escape },
		{ "mxcheck_main_usage", test_usage },
	};

	return T_RUN(cases);
}
