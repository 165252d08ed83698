#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "t.h"

static unsigned hook_calls;

static void
hook(void)
{
	hook_calls++;
}

/*
 * One call site passes LOG_LIMIT_PER_SEC lines in a second and counts the
 * rest; another site has its own budget; the hook sees each suppressed
 * line.  (All calls fall in one or two wall-clock seconds: a window that
 * ends between them gives a second budget, never fewer lines.)
 */
static void
test_limit(void)
{
	static struct log_limit a = LOG_LIMIT_INIT("test a");
	static struct log_limit b = LOG_LIMIT_INIT("test b");
	unsigned i, ok_a = 0, ok_b = 0;
	uint64_t before = log_suppressed_total();

	log_limit_set_hook(hook);
	for (i = 0; i < 1000; i++)
		if (log_limit_ok(&a))
			ok_a++;
	for (i = 0; i < 5; i++)
		if (log_limit_ok(&b))
			ok_b++;
	T_CHECK(ok_a >= LOG_LIMIT_PER_SEC && ok_a <= 2 * LOG_LIMIT_PER_SEC);
	T_CHECK(ok_b == 5);
	T_CHECK(log_suppressed_total() - before == 1000 - ok_a);
	T_CHECK(hook_calls == 1000 - ok_a);
	log_limit_set_hook(NULL);
	log_limit_flush();
}

/* log_escape and log_addr show control bytes as \xNN. */
static void
test_escape(void)
{
	char out[LOG_ESCAPE_MAX];
	const char in[] = "x\x1b]0;pwned\x07\r\"\\";

	log_escape(in, sizeof(in) - 1, out, sizeof(out));
	T_STREQ(out, "\"x\\x1b]0;pwned\\x07\\x0d\\\"\\\\\"");
	log_addr("a\rb@c d", out, sizeof(out));
	T_STREQ(out, "<a\\x0db@c\\x20d>");
}

/* Run fn with stderr going to a file; its text in out (NUL-ended). */
static void
capture(void (*fn)(void), char *out, size_t outlen)
{
	FILE *f = tmpfile();
	int saved = dup(2);
	size_t n;

	T_CHECK(f != NULL && saved != -1);
	if (f == NULL || saved == -1)
		return;
	fflush(stderr);
	dup2(fileno(f), 2);
	fn();
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(f);
	n = fread(out, 1, outlen - 1, f);
	out[n] = '\0';
	fclose(f);
}

static char long_msg[3000];

static void
emit_lines(void)
{
	log_info("x=%d y=%s", 5, "z");
	errno = ENOENT;
	log_warn("open %s", "f");
	log_info("%s", long_msg);
}

/* "YYYY-MM-DDTHH:MM:SS" of t, UTC. */
static void
stamp(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
}

/*
 * The shape of a line: "<stamp>.<ms>Z <level> <message>[: <strerror>]"
 * with the stamp of now (formatted once a second: never a stale one),
 * a message cut at 2047 bytes, and the journal's "<priority>" form.
 */
static void
test_line_shape(void)
{
	char buf[8192], before[32], after[32], *l2, *l3, *end;
	time_t t0, t1;

	memset(long_msg, 'a', sizeof(long_msg) - 1);
	long_msg[sizeof(long_msg) - 1] = '\0';
	t0 = time(NULL);
	capture(emit_lines, buf, sizeof(buf));
	t1 = time(NULL);
	stamp(t0, before, sizeof(before));
	stamp(t1, after, sizeof(after));
	T_CHECK(strncmp(buf, before, 19) == 0 || strncmp(buf, after, 19) == 0);
	T_CHECK(buf[19] == '.' && buf[23] == 'Z');
	T_CHECK(strncmp(buf + 23, "Z info x=5 y=z\n", 15) == 0);
	l2 = strchr(buf, '\n');
	T_CHECK(l2 != NULL);
	if (l2 == NULL)
		return;
	l2++;
	T_CHECK(strncmp(l2 + 23, "Z warn open f: No such file or "
	    "directory\n", 40) == 0);
	l3 = strchr(l2, '\n');
	T_CHECK(l3 != NULL);
	if (l3 == NULL)
		return;
	l3++;
	T_CHECK(strncmp(l3 + 23, "Z info aaa", 10) == 0);
	end = strchr(l3, '\n');
	T_CHECK(end != NULL && end - (l3 + 30) == 2047 && end[1] == '\0');

	setenv("JOURNAL_STREAM", "8:1", 1);
	log_init(false);
	capture(emit_lines, buf, sizeof(buf));
	unsetenv("JOURNAL_STREAM");
	log_init(false);
#define JOURNAL_HEAD "<6>x=5 y=z\n<4>open f: No such file or directory\n<6>"
	T_CHECK(strncmp(buf, JOURNAL_HEAD "aaa", sizeof(JOURNAL_HEAD) + 2) ==
	    0);
	end = strchr(buf + sizeof(JOURNAL_HEAD) - 1, '\n');
	T_CHECK(end != NULL && end - (buf + sizeof(JOURNAL_HEAD) - 1) == 2047 &&
	    end[1] == '\0');
#undef JOURNAL_HEAD
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "log_limit", test_limit },
		{ "log_escape", test_escape },
		{ "log_line_shape", test_line_shape },
	};

	return t_main(cases, sizeof(cases) / sizeof(cases[0]));
}
