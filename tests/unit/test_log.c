#include "log.h"

#include <stdio.h>
#include <string.h>

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

int
main(void)
{
	static const struct t_case cases[] = {
		{ "log_limit", test_limit },
		{ "log_escape", test_escape },
	};

	return t_main(cases, sizeof(cases) / sizeof(cases[0]));
}
