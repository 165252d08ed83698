#include "pause.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* Warnings written to stderr while pause_new() runs on sp. */
static int
warnings_of_pause_new(struct spool *sp)
{
	char line[512];
	FILE *f = tmpfile();
	int saved = dup(STDERR_FILENO), n = 0;

	if (f == NULL || saved == -1)
		return -1;
	fflush(stderr);
	dup2(fileno(f), STDERR_FILENO);
	pause_free(pause_new(sp));
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(f);
	while (fgets(line, sizeof(line), f) != NULL)
		n += strstr(line, " warn ") != NULL;
	fclose(f);
	return n;
}

/* A pause file that is not a regular file, or not two times: one warning
 * each, and not paused. */
static void
test_pause_bad_file(void)
{
	char dir[] = "/tmp/holdfast-test-pause.XXXXXX", path[128], cmd[128];
	struct spool *sp;
	FILE *f;

	T_CHECK(mkdtemp(dir) != NULL);
	T_CHECK((sp = spool_open(dir)) != NULL);
	if (sp == NULL)
		return;
	snprintf(path, sizeof(path), "%s/smtp-pause", dir);
	T_CHECK(mkdir(path, 0700) == 0);
	T_CHECK(warnings_of_pause_new(sp) == 1);
	T_CHECK(rmdir(path) == 0);
	T_CHECK((f = fopen(path, "w")) != NULL);
	if (f != NULL) {
		fputs("not times\n", f);
		fclose(f);
	}
	T_CHECK(warnings_of_pause_new(sp) == 1);
	spool_close(sp);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	T_CHECK(system(cmd) == 0);
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "pause", test_pause },
		{ "pause_bad_file", test_pause_bad_file },
	};

	return t_main(cases, sizeof(cases) / sizeof(cases[0]));
}
