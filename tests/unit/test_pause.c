#include "pause.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "spool.h"
#include "t.h"
#include "util.h"

static void
test_pause(void)
{
	char dir[] = "/tmp/holdfast-test-pause.XXXXXX", cmd[128];
	struct spool *sp;
	struct pause *p;
	time_t now = util_now();

	T_CHECK(mkdtemp(dir) != NULL);
	T_CHECK((sp = spool_open(dir)) != NULL);
	if (sp == NULL)
		return;
	p = pause_new(sp);
	T_CHECK(pause_until(p, now) == 0 && pause_since(p) == 0);
	T_CHECK(pause_set(p, 600) == 0);
	T_CHECK(pause_until(p, now) >= now + 600);
	T_CHECK(pause_since(p) >= now);
	pause_free(p);
	/* persisted: a new one (a restart) is still paused */
	p = pause_new(sp);
	T_CHECK(pause_until(p, now) >= now + 600);
	/* past its end it ends, and stays ended */
	T_CHECK(pause_until(p, now + 601) == 0);
	pause_free(p);
	p = pause_new(sp);
	T_CHECK(pause_until(p, now) == 0);
	T_CHECK(pause_set(p, 60) == 0);
	pause_off(p, "operator");
	T_CHECK(pause_until(p, now) == 0 && pause_since(p) == 0);
	pause_free(p);
	p = pause_new(sp);
	T_CHECK(pause_until(p, now) == 0);
	pause_free(p);
	spool_close(sp);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	T_CHECK(system(cmd) == 0);
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "pause", test_pause },
	};

	return t_main(cases, sizeof(cases) / sizeof(cases[0]));
}
