/*
 * The commit pipeline on a real workpool and event loop: 40 messages
 * submitted in one loop turn are committed in at most three batches (the
 * first two start at once, one message each, while the pipeline fills;
 * the other 38 share the third), every callback reports success once,
 * and all 40 are in queue/ with their env, tmp/ empty.  A message whose
 * staging fails (an env already in its way) fails alone.
 */
#include "commit.h"

#include <dirent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool.h"
#include "t.h"
#include "workpool.h"
#include "xmalloc.h"

#define NMSG 40

static int results[NMSG + 1];
static int ncalls;

static void
done(void *arg, int err)
{
	int *slot = arg;

	*slot = err == 0 ? 1 : -err;
	ncalls++;
}

static size_t
count(const char *dir, const char *area)
{
	char path[512];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/%s", dir, area);
	if ((d = opendir(path)) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void
test_batches(void)
{
	char dir[] = "/tmp/holdfast-test-commit.XXXXXX", path[600];
	struct event_base *base = event_base_new();
	struct workpool *wp;
	struct spool *sp;
	struct commit *c;
	int i, rounds;

	T_CHECK(base != NULL && mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/spool", dir);
	sp = spool_open(path);
	T_CHECK(sp != NULL);
	if (sp == NULL)
		return;
	wp = workpool_new(base, 4);
	c = commit_new(sp, wp);
	for (i = 0; i <= NMSG; i++) {
		struct spool_msg *msg = spool_msg_new(sp);
		char env[64];

		T_CHECK(msg != NULL);
		if (msg == NULL)
			return;
		T_CHECK(spool_msg_write(msg, "body\r\n", 6) == 0);
		if (i == NMSG) {
			/* the odd one: its file is gone from tmp/, so its
			 * rename into queue/ fails */
			snprintf(path, sizeof(path), "%s/spool/tmp/%s",
			    dir, spool_msg_id(msg));
			T_CHECK(unlink(path) == 0);
		}
		snprintf(env, sizeof(env), "env %d\n", i);
		commit_submit(c, msg, xstrdup(env), strlen(env), done,
		    &results[i]);
	}
	T_CHECK(commit_pending(c) == NMSG + 1);
	for (rounds = 0; commit_pending(c) > 0 && rounds < 2000; rounds++)
		event_base_loop(base, EVLOOP_ONCE);
	T_CHECK(commit_pending(c) == 0);
	T_CHECK(ncalls == NMSG + 1);
	for (i = 0; i < NMSG; i++)
		T_CHECK(results[i] == 1);
	T_CHECK(results[NMSG] < 0);
	T_CHECK(commit_batches(c) >= 1 && commit_batches(c) <= 3);
	T_CHECK(count(dir, "spool/queue") == NMSG);
	T_CHECK(count(dir, "spool/tmp") == 0);
	workpool_free(wp);
	commit_free(c);
	spool_close(sp);
	event_base_free(base);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	T_CHECK(system(path) == 0);
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "commit_batches", test_batches },
	};

	return T_RUN(cases);
}
