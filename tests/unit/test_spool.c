#include "spool.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "t.h"
#include "xmalloc.h"

static char tmpdir[] = "/tmp/holdfast-test-spool.XXXXXX";
/*
 * The concurrency test makes 400 durable commits: on tmpfs, where fsync is
 * free, so the binary stays well under a second.  It tests locking, not
 * disks; the other tests run on /tmp's real filesystem.
 */
static char shmdir[] = "/dev/shm/holdfast-test-spool.XXXXXX";

/* A fresh spool directory under base. */
static struct spool *
fresh_in(const char *base, const char *name)
{
	char path[256];
	struct spool *sp;

	snprintf(path, sizeof(path), "%s/%s", base, name);
	sp = spool_open(path);
	T_CHECK(sp != NULL);
	return sp;
}

static struct spool *
fresh(const char *name)
{
	return fresh_in(tmpdir, name);
}

/* Read spool_dir(sp)/rel whole into a new string; NULL if absent. */
static char *
slurp(struct spool *sp, const char *rel, size_t *len)
{
	char path[512], *buf;
	struct stat st;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", spool_dir(sp), rel);
	if ((fd = open(path, O_RDONLY)) == -1)
		return NULL;
	fstat(fd, &st);
	buf = xmalloc((size_t)st.st_size + 1);
	n = read(fd, buf, (size_t)st.st_size);
	close(fd);
	T_CHECK(n == st.st_size);
	buf[st.st_size] = '\0';
	*len = (size_t)st.st_size;
	return buf;
}

/* The body of <area>/<id> as spool_body_open() gives it; NULL if none. */
static char *
body_of(struct spool *sp, enum spool_area area, const char *id, size_t *len)
{
	char *buf = NULL;
	size_t cap = 0;
	ssize_t n;
	int fd;

	*len = 0;
	if ((fd = spool_body_open(sp, area, id)) == -1)
		return NULL;
	for (;;) {
		if (cap - *len < 4096) {
			cap = cap * 2 + 4096;
			buf = xreallocarray(buf, cap + 1, 1);
		}
		n = read(fd, buf + *len, cap - *len);
		if (n <= 0)
			break;
		*len += (size_t)n;
	}
	close(fd);
	buf[*len] = '\0';
	return buf;
}

/* The envelope of <area>/<id>; NULL if it cannot be read. */
static char *
env_of(struct spool *sp, enum spool_area area, const char *id)
{
	char *env;
	size_t len;

	if (spool_env_read(sp, area, id, &env, &len) == -1)
		return NULL;
	return env;
}

static bool
exists(struct spool *sp, const char *rel)
{
	char path[512];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", spool_dir(sp), rel);
	return lstat(path, &st) == 0;
}

static mode_t
mode_of(struct spool *sp, const char *rel)
{
	char path[512];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", spool_dir(sp), rel);
	if (lstat(path, &st) == -1)
		return 0;
	return st.st_mode & 07777;
}

/* Entries in an area, . and .. excluded. */
static int
count(struct spool *sp, const char *area)
{
	char path[512];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s", spool_dir(sp), area);
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void
mkfile(struct spool *sp, const char *rel, const char *text)
{
	char path[512];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", spool_dir(sp), rel);
	fp = fopen(path, "w");
	T_CHECK(fp != NULL);
	if (fp != NULL) {
		fputs(text, fp);
		fclose(fp);
	}
}

static void
mksubdir(struct spool *sp, const char *rel)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", spool_dir(sp), rel);
	T_CHECK(mkdir(path, 0700) == 0);
}

/* Commit a message with body and env; its ID goes to id. */
static int
commit(struct spool *sp, const char *body, size_t len, const char *env,
    char *id)
{
	struct spool_msg *msg = spool_msg_new(sp);

	if (msg == NULL)
		return -1;
	memcpy(id, spool_msg_id(msg), SPOOL_ID_LEN + 1);
	if (spool_msg_write(msg, body, len) == -1) {
		spool_msg_abort(msg);
		return -1;
	}
	return spool_msg_commit(msg, env, strlen(env));
}

static void
test_commit(void)
{
	struct spool *sp = fresh("commit");
	struct spool_msg *msg;
	char rel[64], id[SPOOL_ID_LEN + 1], *got, *big;
	size_t len, i, biglen = 200000;

	if (sp == NULL)
		return;
	T_CHECK(mode_of(sp, "") == 0700 && mode_of(sp, "queue") == 0700);
	big = xmalloc(biglen);
	for (i = 0; i < biglen; i++)
		big[i] = (char)(i * 7);
	msg = spool_msg_new(sp);
	T_CHECK(msg != NULL);
	if (msg == NULL)
		goto out;
	memcpy(id, spool_msg_id(msg), sizeof(id));
	T_CHECK(strlen(id) == SPOOL_ID_LEN &&
	    strspn(id, "0123456789abcdef") == SPOOL_ID_LEN);
	snprintf(rel, sizeof(rel), "tmp/%s", id);
	T_CHECK(exists(sp, rel) && mode_of(sp, rel) == 0600);
	/* small, then larger than the buffer from a non-empty buffer, then
	 * an exact multiple from an empty one */
	T_CHECK(spool_msg_write(msg, big, 10) == 0);
	T_CHECK(spool_msg_write(msg, big + 10, 100000) == 0);
	T_CHECK(spool_msg_write(msg, big + 100010, 99990) == 0);
	T_CHECK(spool_msg_size(msg) == biglen);
	T_CHECK(spool_msg_commit(msg, "env\n", 4) == 0);
	got = body_of(sp, SPOOL_QUEUE, id, &len);
	T_CHECK(got != NULL && len == biglen && memcmp(got, big, len) == 0);
	free(got);
	got = env_of(sp, SPOOL_QUEUE, id);
	T_STREQ(got, "env\n");
	free(got);
	/* one file: header, two slots, body */
	snprintf(rel, sizeof(rel), "queue/%s", id);
	T_CHECK(mode_of(sp, rel) == 0600);
	got = slurp(sp, rel, &len);
	T_CHECK(got != NULL && strncmp(got, "hfspool 1 slot=00001000    "
	    "    \nenv 0000000000000001 00000004 ", 62) == 0 &&
	    len == 32 + 2 * 4096 + biglen);
	free(got);
	T_CHECK(count(sp, "tmp") == 0 && count(sp, "queue") == 1);

	/* an empty body is a body */
	T_CHECK(commit(sp, "", 0, "e\n", id) == 0);
	T_CHECK(count(sp, "queue") == 2);
	T_CHECK(spool_free_bytes(sp) > 0);
out:
	free(big);
	spool_close(sp);
}

static void
test_abort(void)
{
	struct spool *sp = fresh("abort");
	struct spool_msg *msg;

	if (sp == NULL)
		return;
	msg = spool_msg_new(sp);
	T_CHECK(msg != NULL);
	T_CHECK(spool_msg_write(msg, "hello\r\n", 7) == 0);
	spool_msg_abort(msg);
	spool_msg_abort(NULL);
	T_CHECK(count(sp, "tmp") == 0 && count(sp, "queue") == 0);
	spool_close(sp);
}

static void
test_env(void)
{
	struct spool *sp = fresh("env");
	char id[SPOOL_ID_LEN + 1], rel[64], *env, *big;
	size_t len, n = 1024 * 1024 + 1;

	if (sp == NULL)
		return;
	T_CHECK(commit(sp, "b", 1, "version: 1\nold\n", id) == 0);
	T_CHECK(spool_env_write(sp, SPOOL_QUEUE, id, "new\n", 4) == 0);
	T_CHECK(count(sp, "tmp") == 0 && count(sp, "queue") == 1);
	T_CHECK(spool_env_read(sp, SPOOL_QUEUE, id, &env, &len) == 0);
	T_CHECK(len == 4);
	T_STREQ(env, "new\n");
	free(env);
	/* shorter rewrite: no tail of the old content survives */
	T_CHECK(spool_env_write(sp, SPOOL_QUEUE, id, "x", 1) == 0);
	T_CHECK(spool_env_read(sp, SPOOL_QUEUE, id, &env, &len) == 0);
	T_CHECK(len == 1);
	T_STREQ(env, "x");
	free(env);
	/* over the bound: EFBIG, the old envelope stays */
	big = xmalloc(n);
	memset(big, 'a', n);
	errno = 0;
	T_CHECK(spool_env_write(sp, SPOOL_QUEUE, id, big, n) == -1 &&
	    errno == EFBIG);
	free(big);
	env = env_of(sp, SPOOL_QUEUE, id);
	T_STREQ(env, "x");
	free(env);
	snprintf(rel, sizeof(rel), "queue/%s", id);
	(void)rel;
	/* missing message, bad ID */
	T_CHECK(spool_env_read(sp, SPOOL_HOLD, id, &env, &len) == -1);
	T_CHECK(errno == ENOENT);
	T_CHECK(spool_env_write(sp, SPOOL_QUEUE, "../queue", "x", 1) == -1);
	T_CHECK(errno == EINVAL);
	T_CHECK(spool_body_open(sp, SPOOL_QUEUE, "0123") == -1);
	T_CHECK(errno == EINVAL);
	spool_close(sp);
}

/*
 * Envelope rewrites: in place, alternating slots, the file's inode kept; a
 * torn write of the newer slot leaves the older one the envelope; one
 * that outgrows the slots rebuilds the file with the body intact; a file
 * whose header or both slots are damaged is refused (EBADMSG).
 */
static void
test_slots(void)
{
	struct spool *sp = fresh("slots");
	char id[SPOOL_ID_LEN + 1], rel[64], path[512], *got, *big;
	struct stat st1, st2;
	size_t len, n = 3000;
	int fd;

	if (sp == NULL)
		return;
	T_CHECK(commit(sp, "body\r\n", 6, "one\n", id) == 0);
	snprintf(rel, sizeof(rel), "queue/%s", id);
	snprintf(path, sizeof(path), "%s/%s", spool_dir(sp), rel);
	T_CHECK(stat(path, &st1) == 0);
	T_CHECK(spool_env_write(sp, SPOOL_QUEUE, id, "two\n", 4) == 0);
	T_CHECK(spool_env_write(sp, SPOOL_QUEUE, id, "three\n", 6) == 0);
	got = env_of(sp, SPOOL_QUEUE, id);
	T_STREQ(got, "three\n");
	free(got);
	T_CHECK(stat(path, &st2) == 0 && st1.st_ino == st2.st_ino &&
	    st1.st_size == st2.st_size);
	/* seq 3 is in slot 0 (1, 2, 3 alternate): tear its text */
	fd = open(path, O_WRONLY);
	T_CHECK(fd != -1 && pwrite(fd, "X", 1, 32 + 47) == 1);
	got = env_of(sp, SPOOL_QUEUE, id);
	T_STREQ(got, "two\n");
	free(got);
	/* the next write goes over the torn slot, not the good one */
	T_CHECK(spool_env_write(sp, SPOOL_QUEUE, id, "four\n", 5) == 0);
	got = env_of(sp, SPOOL_QUEUE, id);
	T_STREQ(got, "four\n");
	free(got);
	/* outgrowing the 1024-byte slots: a new file, same body */
	big = xmalloc(n + 1);
	memset(big, 'b', n);
	big[n] = '\0';
	T_CHECK(spool_env_write(sp, SPOOL_QUEUE, id, big, n) == 0);
	T_CHECK(stat(path, &st2) == 0 && st1.st_ino != st2.st_ino);
	got = env_of(sp, SPOOL_QUEUE, id);
	T_STREQ(got, big);
	free(got);
	got = body_of(sp, SPOOL_QUEUE, id, &len);
	T_STREQ(got, "body\r\n");
	free(got);
	T_CHECK(count(sp, "tmp") == 0);
	free(big);
	/* both slots torn: unreadable; a bad header: no body either */
	T_CHECK(fd != -1 && close(fd) == 0);
	fd = open(path, O_WRONLY);
	T_CHECK(fd != -1 && pwrite(fd, "X", 1, 32) == 1);
	errno = 0;
	T_CHECK(env_of(sp, SPOOL_QUEUE, id) == NULL && errno == EBADMSG);
	T_CHECK(pwrite(fd, "H", 1, 0) == 1 && close(fd) == 0);
	errno = 0;
	T_CHECK(spool_body_open(sp, SPOOL_QUEUE, id) == -1 &&
	    errno == EBADMSG);
	T_CHECK(spool_env_write(sp, SPOOL_QUEUE, id, "x", 1) == -1 &&
	    errno == EBADMSG);
	spool_close(sp);
}

static void
test_move_delete(void)
{
	struct spool *sp = fresh("move");
	char id[SPOOL_ID_LEN + 1], rel[64], buf[8];
	int fd;

	if (sp == NULL)
		return;
	T_CHECK(commit(sp, "body", 4, "env\n", id) == 0);
	T_CHECK(spool_move(sp, id, SPOOL_QUEUE, SPOOL_HOLD) == 0);
	T_CHECK(count(sp, "queue") == 0 && count(sp, "hold") == 1);
	fd = spool_body_open(sp, SPOOL_HOLD, id);
	T_CHECK(fd != -1);
	if (fd != -1) {
		T_CHECK(read(fd, buf, sizeof(buf)) == 4 &&
		    memcmp(buf, "body", 4) == 0);
		close(fd);
	}
	T_CHECK(spool_body_open(sp, SPOOL_QUEUE, id) == -1 &&
	    errno == ENOENT);
	T_CHECK(spool_move(sp, id, SPOOL_QUEUE, SPOOL_DEAD) == -1 &&
	    errno == ENOENT);
	T_CHECK(spool_move(sp, id, SPOOL_HOLD, SPOOL_DEAD) == 0);
	snprintf(rel, sizeof(rel), "dead/%s", id);
	T_CHECK(exists(sp, rel));
	T_CHECK(spool_delete(sp, SPOOL_DEAD, id) == 0);
	T_CHECK(!exists(sp, rel) && count(sp, "tmp") == 0);
	T_CHECK(count(sp, "dead") == 0);
	T_CHECK(spool_delete(sp, SPOOL_DEAD, id) == -1 && errno == ENOENT);
	T_STREQ(spool_area_name(SPOOL_QUARANTINE), "quarantine");
	spool_close(sp);
}

/* Batches: moves from one area, deletes from several; a missing one fails
 * alone. */
static void
test_move_delete_many(void)
{
	struct spool *sp = fresh("many");
	char ids[3][SPOOL_ID_LEN + 1];
	const char *p[4];
	enum spool_area areas[3];
	int errs[4];
	size_t i;

	if (sp == NULL)
		return;
	for (i = 0; i < 3; i++) {
		T_CHECK(commit(sp, "body", 4, "env\n", ids[i]) == 0);
		p[i] = ids[i];
	}
	p[3] = "0123456789abcdef";		/* not there */
	T_CHECK(spool_move_many(sp, p, 4, SPOOL_QUEUE, SPOOL_HOLD, errs) ==
	    3);
	T_CHECK(errs[0] == 0 && errs[1] == 0 && errs[2] == 0 &&
	    errs[3] == ENOENT);
	T_CHECK(count(sp, "queue") == 0 && count(sp, "hold") == 3);
	T_CHECK(spool_move(sp, ids[2], SPOOL_HOLD, SPOOL_DEAD) == 0);
	areas[0] = areas[1] = SPOOL_HOLD;
	areas[2] = SPOOL_DEAD;
	T_CHECK(spool_delete_many(sp, areas, p, 3, errs) == 3);
	T_CHECK(count(sp, "hold") == 0 && count(sp, "dead") == 0 &&
	    count(sp, "tmp") == 0);
	T_CHECK(spool_delete_many(sp, areas, p, 1, errs) == 0 &&
	    errs[0] == ENOENT);
	spool_close(sp);
}

struct scan_seen {
	struct spool	*sp;
	char		 reject[SPOOL_ID_LEN + 1];
	int		 calls;
	int		 area_hits[SPOOL_NAREAS];
};

/* As the queue's: the envelope must be readable. */
static int
scan_cb(void *arg, enum spool_area area, const char *id)
{
	struct scan_seen *s = arg;
	char *env;

	s->calls++;
	s->area_hits[area]++;
	if ((env = env_of(s->sp, area, id)) == NULL)
		return -1;
	free(env);
	return strcmp(id, s->reject) == 0 ? -1 : 0;
}

static void
test_scan(void)
{
	struct spool *sp = fresh("scan");
	struct scan_seen seen;
	struct spool_msg *msg;
	char good[SPOOL_ID_LEN + 1], bad[SPOOL_ID_LEN + 1], rel[64];
	char held[SPOOL_ID_LEN + 1], *got;
	size_t len;

	if (sp == NULL)
		return;
	memset(&seen, 0, sizeof(seen));
	seen.sp = sp;
	/* tmp: an interrupted receipt (handle leaked on purpose: a crash),
	 * a stray file and a stray directory */
	msg = spool_msg_new(sp);
	T_CHECK(msg != NULL && spool_msg_write(msg, "x", 1) == 0);
	mkfile(sp, "tmp/junk", "j");
	mksubdir(sp, "tmp/dir");
	mkfile(sp, "tmp/dir/f", "f");
	/* queue: a good one; an old-format directory without env; a whole
	 * old-format one (converted); junk whose name clashes in
	 * quarantine/; a directory with a bad name; a symlink; garbage */
	T_CHECK(commit(sp, "b", 1, "e\n", good) == 0);
	mksubdir(sp, "queue/00000000000000aa");
	mkfile(sp, "queue/00000000000000aa/body", "b");
	mksubdir(sp, "queue/00000000000000bb");
	mkfile(sp, "queue/00000000000000bb/body", "old body\r\n");
	mkfile(sp, "queue/00000000000000bb/env", "old env\n");
	mkfile(sp, "queue/00000000000000bb/env.tmp", "partial");
	mkfile(sp, "queue/junk", "j");
	mkfile(sp, "quarantine/junk", "older");
	mksubdir(sp, "queue/0000000000000XYZ");
	{
		char path[512];

		snprintf(path, sizeof(path), "%s/queue/00000000000000cc",
		    spool_dir(sp));
		T_CHECK(symlink("00000000000000bb", path) == 0);
	}
	mkfile(sp, "queue/00000000000000dd", "hfspool 1 garbage\n");
	/* hold: one the callback rejects; dead: one it accepts */
	T_CHECK(commit(sp, "b", 1, "e\n", bad) == 0);
	T_CHECK(spool_move(sp, bad, SPOOL_QUEUE, SPOOL_HOLD) == 0);
	memcpy(seen.reject, bad, sizeof(bad));
	T_CHECK(commit(sp, "b", 1, "e\n", held) == 0);
	T_CHECK(spool_move(sp, held, SPOOL_QUEUE, SPOOL_DEAD) == 0);

	T_CHECK(spool_scan(sp, scan_cb, &seen) == 3);
	T_CHECK(seen.calls == 5);
	T_CHECK(seen.area_hits[SPOOL_QUEUE] == 3);
	T_CHECK(seen.area_hits[SPOOL_HOLD] == 1);
	T_CHECK(seen.area_hits[SPOOL_DEAD] == 1);
	T_CHECK(count(sp, "tmp") == 0);
	T_CHECK(count(sp, "queue") == 2);
	/* the old-format message is now a file, byte for byte */
	T_CHECK(mode_of(sp, "queue/00000000000000bb") == 0600);
	got = env_of(sp, SPOOL_QUEUE, "00000000000000bb");
	T_STREQ(got, "old env\n");
	free(got);
	got = body_of(sp, SPOOL_QUEUE, "00000000000000bb", &len);
	T_STREQ(got, "old body\r\n");
	free(got);
	T_CHECK(count(sp, "hold") == 0 && count(sp, "dead") == 1);
	T_CHECK(count(sp, "quarantine") == 7);
	T_CHECK(exists(sp, "quarantine/00000000000000aa/body"));
	T_CHECK(exists(sp, "quarantine/junk.1"));
	T_CHECK(exists(sp, "quarantine/0000000000000XYZ"));
	T_CHECK(exists(sp, "quarantine/00000000000000cc"));
	T_CHECK(exists(sp, "quarantine/00000000000000dd"));
	snprintf(rel, sizeof(rel), "quarantine/%s", bad);
	T_CHECK(exists(sp, rel));
	got = slurp(sp, "quarantine/junk", &len);
	T_STREQ(got, "older");	/* never overwritten */
	free(got);
	/* the handle of the "crashed" receipt is still ours to free */
	spool_msg_abort(msg);
	/* a second scan finds the same good ones and moves nothing */
	memset(&seen, 0, sizeof(seen));
	seen.sp = sp;
	T_CHECK(spool_scan(sp, scan_cb, &seen) == 3);
	T_CHECK(count(sp, "quarantine") == 7);
	spool_close(sp);
}

/*
 * Things a spool must survive: a FIFO where a message file should be (no
 * open may block), an empty body, and an old-format directory left in
 * tmp/ by a conversion that was not confirmed on disk (put back and
 * converted again if its message file is not there; removed if it is).
 */
static void
test_odd_files(void)
{
	struct spool *sp = fresh("odd");
	struct scan_seen seen;
	char id[SPOOL_ID_LEN + 1], path[512], *got;
	size_t len;

	if (sp == NULL)
		return;
	snprintf(path, sizeof(path), "%s/queue/00000000000000ff",
	    spool_dir(sp));
	T_CHECK(mkfifo(path, 0600) == 0);
	errno = 0;
	T_CHECK(env_of(sp, SPOOL_QUEUE, "00000000000000ff") == NULL &&
	    errno == EBADMSG);
	T_CHECK(spool_body_open(sp, SPOOL_QUEUE, "00000000000000ff") == -1 &&
	    errno == EBADMSG);
	T_CHECK(spool_env_write(sp, SPOOL_QUEUE, "00000000000000ff", "x", 1) ==
	    -1 && errno == EBADMSG);
	T_CHECK(unlink(path) == 0);
	/* a second name: refused */
	T_CHECK(commit(sp, "b", 1, "e\n", id) == 0);
	{
		char from[512];

		snprintf(from, sizeof(from), "%s/queue/%s", spool_dir(sp), id);
		T_CHECK(link(from, path) == 0);
		errno = 0;
		T_CHECK(env_of(sp, SPOOL_QUEUE, id) == NULL &&
		    errno == EBADMSG);
		T_CHECK(unlink(path) == 0);
		T_CHECK(spool_delete(sp, SPOOL_QUEUE, id) == 0);
	}
	/* an empty body */
	T_CHECK(commit(sp, "", 0, "empty\n", id) == 0);
	got = env_of(sp, SPOOL_QUEUE, id);
	T_STREQ(got, "empty\n");
	free(got);
	got = body_of(sp, SPOOL_QUEUE, id, &len);
	T_CHECK(got != NULL && len == 0);
	free(got);
	T_CHECK(spool_delete(sp, SPOOL_QUEUE, id) == 0);
	/* unconfirmed conversions: one whose file is gone, one whose file
	 * is there */
	mksubdir(sp, "tmp/00000000000000a1.hold");
	mkfile(sp, "tmp/00000000000000a1.hold/body", "b1\r\n");
	mkfile(sp, "tmp/00000000000000a1.hold/env", "e1\n");
	T_CHECK(commit(sp, "b2\r\n", 4, "e2\n", id) == 0);
	snprintf(path, sizeof(path), "tmp/%s.queue", id);
	mksubdir(sp, path);
	memset(&seen, 0, sizeof(seen));
	seen.sp = sp;
	T_CHECK(spool_scan(sp, scan_cb, &seen) == 2);
	T_CHECK(count(sp, "tmp") == 0 && count(sp, "quarantine") == 0);
	got = env_of(sp, SPOOL_HOLD, "00000000000000a1");
	T_STREQ(got, "e1\n");
	free(got);
	got = body_of(sp, SPOOL_HOLD, "00000000000000a1", &len);
	T_STREQ(got, "b1\r\n");
	free(got);
	got = env_of(sp, SPOOL_QUEUE, id);
	T_STREQ(got, "e2\n");
	free(got);
	spool_close(sp);
}

#define NTHREADS	8
#define PERTHREAD	50

struct worker {
	struct spool	*sp;
	int		 n;
	char		 ids[PERTHREAD][SPOOL_ID_LEN + 1];
	int		 failed;
};

static void *
worker_run(void *arg)
{
	struct worker *w = arg;
	char body[64], env[64];
	int i;

	for (i = 0; i < PERTHREAD; i++) {
		snprintf(body, sizeof(body), "body %d %d\r\n", w->n, i);
		snprintf(env, sizeof(env), "env %d %d\n", w->n, i);
		if (commit(w->sp, body, strlen(body), env, w->ids[i]) == -1)
			w->failed++;
	}
	return NULL;
}

static void
test_concurrent(void)
{
	struct spool *sp = fresh_in(shmdir[0] != '\0' ? shmdir : tmpdir,
	    "threads");
	static struct worker w[NTHREADS];
	pthread_t th[NTHREADS];
	char want[64], *got;
	size_t len;
	int i, j, bad = 0;

	if (sp == NULL)
		return;
	for (i = 0; i < NTHREADS; i++) {
		w[i].sp = sp;
		w[i].n = i;
		T_CHECK(pthread_create(&th[i], NULL, worker_run, &w[i]) == 0);
	}
	for (i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
		T_CHECK(w[i].failed == 0);
	}
	T_CHECK(count(sp, "queue") == NTHREADS * PERTHREAD);
	T_CHECK(count(sp, "tmp") == 0);
	for (i = 0; i < NTHREADS; i++) {
		for (j = 0; j < PERTHREAD; j++) {
			snprintf(want, sizeof(want), "body %d %d\r\n", i, j);
			got = body_of(sp, SPOOL_QUEUE, w[i].ids[j], &len);
			if (got == NULL || strcmp(got, want) != 0)
				bad++;
			free(got);
		}
	}
	T_CHECK(bad == 0);
	spool_close(sp);
}

/* The body write hits RLIMIT_FSIZE: EFBIG, sticky, nothing left behind. */
static void
test_fail_efbig(void)
{
	struct spool *sp = fresh("efbig");
	struct spool_msg *msg;
	struct rlimit old, lim;
	char *buf;
	size_t n = 300000;

	if (sp == NULL)
		return;
	buf = xcalloc(1, n);
	signal(SIGXFSZ, SIG_IGN);
	getrlimit(RLIMIT_FSIZE, &old);
	lim = old;
	lim.rlim_cur = 100000;
	T_CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
	msg = spool_msg_new(sp);
	T_CHECK(msg != NULL);
	if (msg != NULL) {
		errno = 0;
		T_CHECK(spool_msg_write(msg, buf, n) == -1 && errno == EFBIG);
		errno = 0;
		T_CHECK(spool_msg_write(msg, "x", 1) == -1 && errno == EFBIG);
		errno = 0;
		T_CHECK(spool_msg_commit(msg, "e\n", 2) == -1);
		T_CHECK(errno == EFBIG);
	}
	/* buffered: the error shows at commit */
	msg = spool_msg_new(sp);
	T_CHECK(msg != NULL);
	if (msg != NULL) {
		T_CHECK(spool_msg_write(msg, buf, 60000) == 0);
		T_CHECK(spool_msg_write(msg, buf, 60000) == 0);
		errno = 0;
		T_CHECK(spool_msg_commit(msg, "e\n", 2) == -1);
		T_CHECK(errno == EFBIG);
	}
	T_CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
	signal(SIGXFSZ, SIG_DFL);
	T_CHECK(count(sp, "tmp") == 0 && count(sp, "queue") == 0);
	free(buf);
	spool_close(sp);
}

/* queue/ vanishes under the open fd: the rename fails, tmp is cleaned. */
static void
test_fail_rename(void)
{
	struct spool *sp = fresh("norename");
	char path[512];
	struct spool_msg *msg;

	if (sp == NULL)
		return;
	snprintf(path, sizeof(path), "%s/queue", spool_dir(sp));
	T_CHECK(rmdir(path) == 0);
	msg = spool_msg_new(sp);
	T_CHECK(msg != NULL);
	if (msg != NULL) {
		T_CHECK(spool_msg_write(msg, "body", 4) == 0);
		errno = 0;
		T_CHECK(spool_msg_commit(msg, "e\n", 2) == -1);
		T_CHECK(errno == ENOENT);
	}
	T_CHECK(count(sp, "tmp") == 0);
	spool_close(sp);
}

/* The index hook of spool_set_id_index(): plants <area>/<id> for the
 * first `plant` IDs it is asked about, answers `answer`. */
struct id_index {
	struct spool	*sp;
	int		 calls, plant, answer;
	const char	*area;
	char		 first[SPOOL_ID_LEN + 1];
};

static int
id_index_cb(void *arg, const char *id)
{
	struct id_index *x = arg;
	char rel[64];

	if (x->calls++ == 0)
		memcpy(x->first, id, SPOOL_ID_LEN + 1);
	if (x->calls <= x->plant) {
		snprintf(rel, sizeof(rel), "%s/%s", x->area, id);
		mkfile(x->sp, rel, "someone else's");
	}
	return x->answer;
}

/*
 * A new ID: the index's word is taken when it has one (no area looked
 * up), the areas are looked up when it cannot tell; and whatever it says,
 * publishing and moves never rename a message over an existing name.
 */
static void
test_id_index(void)
{
	struct spool *sp = fresh("idindex");
	struct id_index x = { 0 };
	struct spool_msg *msg;
	char id[SPOOL_ID_LEN + 1], id2[SPOOL_ID_LEN + 1], rel[64], *got;
	const char *p[1];
	int errs[1];
	size_t len;

	if (sp == NULL)
		return;
	x.sp = sp;
	spool_set_id_index(sp, id_index_cb, &x);
	/* taken, every time: no ID after the tries */
	x.answer = 1;
	T_CHECK(spool_msg_new(sp) == NULL && x.calls > 1);
	T_CHECK(count(sp, "tmp") == 0);
	/* cannot tell: hold/<first> planted, looked up, a second ID */
	x = (struct id_index){ .sp = sp, .plant = 1, .answer = -1,
	    .area = "hold" };
	msg = spool_msg_new(sp);
	T_CHECK(msg != NULL && x.calls == 2);
	if (msg != NULL) {
		T_CHECK(strcmp(spool_msg_id(msg), x.first) != 0);
		spool_msg_abort(msg);
	}
	/* free by the index, though queue/<id> is there: the index is
	 * believed, but the commit does not replace the file */
	x = (struct id_index){ .sp = sp, .plant = 1, .answer = 0,
	    .area = "queue" };
	msg = spool_msg_new(sp);
	T_CHECK(msg != NULL && x.calls == 1);
	if (msg != NULL) {
		T_STREQ(spool_msg_id(msg), x.first);
		T_CHECK(spool_msg_write(msg, "mine", 4) == 0);
		errno = 0;
		T_CHECK(spool_msg_commit(msg, "e\n", 2) == -1 &&
		    errno == EEXIST);
	}
	snprintf(rel, sizeof(rel), "queue/%s", x.first);
	got = slurp(sp, rel, &len);
	T_CHECK(got != NULL && strcmp(got, "someone else's") == 0);
	free(got);
	T_CHECK(count(sp, "tmp") == 0 && count(sp, "queue") == 1);
	spool_set_id_index(sp, NULL, NULL);
	/* a move onto an existing name fails and leaves both */
	T_CHECK(commit(sp, "body", 4, "env\n", id) == 0);
	snprintf(rel, sizeof(rel), "dead/%s", id);
	mkfile(sp, rel, "someone else's");
	errno = 0;
	T_CHECK(spool_move(sp, id, SPOOL_QUEUE, SPOOL_DEAD) == -1 &&
	    errno == EEXIST);
	T_CHECK(commit(sp, "body2", 5, "env\n", id2) == 0);
	snprintf(rel, sizeof(rel), "hold/%s", id2);
	mkfile(sp, rel, "someone else's");
	p[0] = id2;
	T_CHECK(spool_move_many(sp, p, 1, SPOOL_QUEUE, SPOOL_HOLD, errs) ==
	    0 && errs[0] == EEXIST);
	got = body_of(sp, SPOOL_QUEUE, id, &len);
	T_CHECK(got != NULL && len == 4 && memcmp(got, "body", 4) == 0);
	free(got);
	got = body_of(sp, SPOOL_QUEUE, id2, &len);
	T_CHECK(got != NULL && len == 5 && memcmp(got, "body2", 5) == 0);
	free(got);
	snprintf(rel, sizeof(rel), "dead/%s", id);
	got = slurp(sp, rel, &len);
	T_CHECK(got != NULL && strcmp(got, "someone else's") == 0);
	free(got);
	/* into quarantine/ onto a taken name: the next free one */
	snprintf(rel, sizeof(rel), "quarantine/%s", id);
	mkfile(sp, rel, "someone else's");
	T_CHECK(spool_move(sp, id, SPOOL_QUEUE, SPOOL_QUARANTINE) == 0);
	got = slurp(sp, rel, &len);
	T_CHECK(got != NULL && strcmp(got, "someone else's") == 0);
	free(got);
	snprintf(rel, sizeof(rel), "quarantine/%s.1", id);
	T_CHECK(exists(sp, rel) && count(sp, "quarantine") == 2);
	spool_close(sp);
}

/*
 * pwritev for test_write_whole: pass-through unless pw_mode says (1: write
 * only the first pw_cut octets; 2: EINTR on the first call; 3: as 1, and
 * the next pwrite fails with ENOSPC).
 */
static int pw_mode, pw_calls, pw_fail_next;
static long pw_cut;

ssize_t
pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	static ssize_t (*real)(int, const struct iovec *, int, off_t);
	struct iovec v[8];
	long left = pw_cut;
	int i, n = 0;

	if (real == NULL)
		real = (ssize_t (*)(int, const struct iovec *, int, off_t))
		    dlsym(RTLD_NEXT, "pwritev");
	pw_calls++;
	if (pw_mode == 2 && pw_calls == 1) {
		errno = EINTR;
		return -1;
	}
	if (pw_mode != 1 && pw_mode != 3)
		return real(fd, iov, cnt, off);
	for (i = 0; i < cnt && i < 8 && left > 0; i++) {
		v[n] = iov[i];
		if ((long)v[n].iov_len > left)
			v[n].iov_len = (size_t)left;
		left -= (long)v[n].iov_len;
		n++;
	}
	if (pw_mode == 3)
		pw_fail_next = 1;
	return n == 0 ? 0 : real(fd, v, n, off);
}

ssize_t
pwrite(int fd, const void *buf, size_t n, off_t off)
{
	static ssize_t (*real)(int, const void *, size_t, off_t);

	if (real == NULL)
		real = (ssize_t (*)(int, const void *, size_t, off_t))
		    dlsym(RTLD_NEXT, "pwrite");
	if (pw_fail_next) {
		pw_fail_next = 0;
		errno = ENOSPC;
		return -1;
	}
	return real(fd, buf, n, off);
}

ssize_t
pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	return pwrite(fd, buf, n, off);
}

/* One message through the whole-write path with pwritev doing mode/cut:
 * committed intact (want_rc 0) or refused with ENOSPC and gone (-1). */
static void
whole_case(struct spool *sp, int mode, long cut, size_t blen, size_t envlen,
    int want_rc)
{
	char *body = xmalloc(blen + 1), *env = xmalloc(envlen + 1), *got;
	char id[SPOOL_ID_LEN + 1], rel[64];
	struct spool_msg *msg;
	size_t i, len;
	int rc, err;

	for (i = 0; i < blen; i++)
		body[i] = (char)('a' + i % 26);
	for (i = 0; i < envlen; i++)
		env[i] = (char)('A' + i % 26);
	if (envlen > 0)
		env[envlen - 1] = '\n';
	pw_mode = mode;
	pw_cut = cut;
	pw_calls = pw_fail_next = 0;
	msg = spool_msg_new(sp);
	T_CHECK(msg != NULL);
	if (msg == NULL)
		goto out;
	memcpy(id, spool_msg_id(msg), sizeof(id));
	T_CHECK(blen == 0 || spool_msg_write(msg, body, blen) == 0);
	rc = spool_msg_commit(msg, env, envlen);
	err = errno;
	pw_mode = 0;
	T_CHECK(rc == want_rc);
	if (rc == 0) {
		got = env_of(sp, SPOOL_QUEUE, id);
		T_CHECK(got != NULL && strlen(got) == envlen &&
		    memcmp(got, env, envlen) == 0);
		free(got);
		got = body_of(sp, SPOOL_QUEUE, id, &len);
		T_CHECK(got != NULL && len == blen &&
		    memcmp(got, body, blen) == 0);
		free(got);
	} else {
		T_CHECK(err == ENOSPC);
		snprintf(rel, sizeof(rel), "tmp/%s", id);
		T_CHECK(!exists(sp, rel));
		snprintf(rel, sizeof(rel), "queue/%s", id);
		T_CHECK(!exists(sp, rel));
	}
out:
	pw_mode = 0;
	free(body);
	free(env);
}

/*
 * A small message is written whole with one pwritev: short writes anywhere
 * (in the header, at the body's start, in the body, none at all), EINTR,
 * a short write and then a full disk, an empty body; a big envelope takes
 * the old path and keeps slot 1 a hole.
 */
static void
test_write_whole(void)
{
	struct spool *sp = fresh("whole");
	char id[SPOOL_ID_LEN + 1], rel[64], path[512], *env;
	struct stat st;

	if (sp == NULL)
		return;
	whole_case(sp, 0, 0, 0, 10, 0);
	whole_case(sp, 0, 0, 100, 200, 0);
	T_CHECK(pw_calls == 1);			/* one write, nothing else */
	whole_case(sp, 1, 0, 100, 200, 0);
	whole_case(sp, 1, 10, 100, 200, 0);
	whole_case(sp, 1, 32 + 2048, 100, 200, 0);
	whole_case(sp, 1, 32 + 2048 + 7, 100, 200, 0);
	whole_case(sp, 1, 5, 0, 200, 0);
	whole_case(sp, 2, 0, 100, 200, 0);
	whole_case(sp, 3, 50, 100, 200, -1);
	whole_case(sp, 3, 32 + 2048 + 3, 100, 200, -1);
	T_CHECK(count(sp, "tmp") == 0 && count(sp, "queue") == 8);
	/* 70 KB of envelope: slots of ~100 KB, not written whole */
	env = xmalloc(70001);
	memset(env, 'e', 70000);
	env[69999] = '\n';
	env[70000] = '\0';
	pw_calls = 0;
	T_CHECK(commit(sp, "body", 4, env, id) == 0 && pw_calls == 0);
	free(env);
	snprintf(rel, sizeof(rel), "queue/%s", id);
	snprintf(path, sizeof(path), "%s/%s", spool_dir(sp), rel);
	T_CHECK(stat(path, &st) == 0 &&
	    (long long)st.st_blocks * 512 < (long long)st.st_size);
	spool_close(sp);
}

static void
test_open_errors(void)
{
	char path[512];
	struct spool *sp;

	snprintf(path, sizeof(path), "%s/afile", tmpdir);
	close(open(path, O_WRONLY | O_CREAT, 0600));
	errno = 0;
	T_CHECK(spool_open(path) == NULL && errno == ENOTDIR);
	snprintf(path, sizeof(path), "%s/afile/x", tmpdir);
	T_CHECK(spool_open(path) == NULL && errno == ENOTDIR);
	/* reopening an existing spool is fine */
	sp = fresh("reopen");
	spool_close(sp);
	sp = fresh("reopen");
	spool_close(sp);
}

static void
list_cb(void *arg, const char *id)
{
	(*(int *)arg)++;
	T_CHECK(strlen(id) == SPOOL_ID_LEN);
}

/* A dead/ copy gets its own copy of the body; listing, finding and state
 * files work on the result. */
static void
test_link_list_state(void)
{
	struct spool *sp = fresh("link"), *ro;
	struct spool_msg *msg;
	char id[SPOOL_ID_LEN + 1], copy[SPOOL_ID_LEN + 1], rel[64], buf[64];
	char *got;
	enum spool_area area;
	size_t len;
	int n = 0;

	if (sp == NULL)
		return;
	T_CHECK(commit(sp, "body\r\n", 6, "env\n", id) == 0);
	msg = spool_msg_link(sp, SPOOL_QUEUE, id, SPOOL_DEAD);
	T_CHECK(msg != NULL);
	if (msg == NULL)
		goto out;
	memcpy(copy, spool_msg_id(msg), sizeof(copy));
	T_CHECK(strcmp(copy, id) != 0 && spool_msg_size(msg) == 6);
	T_CHECK(spool_msg_commit(msg, "dead env\n", 9) == 0);
	got = body_of(sp, SPOOL_DEAD, copy, &len);
	T_CHECK(got != NULL && len == 6 && memcmp(got, "body\r\n", 6) == 0);
	free(got);
	got = env_of(sp, SPOOL_DEAD, copy);
	T_STREQ(got, "dead env\n");
	free(got);
	snprintf(rel, sizeof(rel), "dead/%s", copy);
	T_CHECK(spool_find(sp, copy, &area) == 0 && area == SPOOL_DEAD);
	T_CHECK(spool_find(sp, id, &area) == 0 && area == SPOOL_QUEUE);
	T_CHECK(spool_find(sp, "ffffffffffffffff", &area) == -1 &&
	    errno == ENOENT);
	T_CHECK(spool_list(sp, SPOOL_DEAD, list_cb, &n) == 0 && n == 1);
	/* deleting the original leaves the copy's body */
	T_CHECK(spool_delete(sp, SPOOL_QUEUE, id) == 0);
	T_CHECK(exists(sp, rel));
	T_CHECK(spool_msg_link(sp, SPOOL_QUEUE, id, SPOOL_DEAD) == NULL);
	T_CHECK(count(sp, "tmp") == 0);

	T_CHECK(spool_state_read(sp, "hold-mode", buf, sizeof(buf)) == -1 &&
	    errno == ENOENT);
	T_CHECK(spool_state_write(sp, "hold-mode", "1 2\n") == 0);
	T_CHECK(spool_state_read(sp, "hold-mode", buf, sizeof(buf)) == 0);
	T_STREQ(buf, "1 2\n");
	T_CHECK(spool_state_remove(sp, "hold-mode") == 0);
	T_CHECK(!exists(sp, "hold-mode"));
	{
		time_t since = 0, until = 0;

		T_CHECK(spool_state_span_store(sp, "span", 5, 9) == 0);
		T_CHECK(spool_state_span_load(sp, "span", &since, &until) ==
		    0 && since == 5 && until == 9);
		T_CHECK(spool_state_write(sp, "span", "9 5\n") == 0);
		T_CHECK(spool_state_span_load(sp, "span", &since, &until) ==
		    -1 && errno == EBADMSG);
		T_CHECK(spool_state_span_store(sp, "span", 5, 0) == 0);
		T_CHECK(spool_state_span_load(sp, "span", &since, &until) ==
		    -1 && errno == ENOENT);
	}
	ro = spool_open_readonly(spool_dir(sp));
	T_CHECK(ro != NULL);
	spool_close(ro);
	T_CHECK(spool_open_readonly("/nonexistent/holdfast") == NULL);
out:
	spool_close(sp);
}

/* One daemon per spool: the second open fails until the first closes;
 * the read-only view needs no lock.  An area that is a symlink is refused. */
static void
test_lock(void)
{
	struct spool *sp, *again, *ro;
	char path[512], target[512], buf[32];
	int fd;
	ssize_t n;

	sp = fresh("locked");
	snprintf(path, sizeof(path), "%s/locked", tmpdir);
	errno = 0;
	again = spool_open(path);
	T_CHECK(again == NULL && errno == EWOULDBLOCK);
	spool_close(again);
	ro = spool_open_readonly(path);
	T_CHECK(ro != NULL);
	spool_close(ro);
	snprintf(target, sizeof(target), "%s/locked/lock", tmpdir);
	fd = open(target, O_RDONLY);
	T_CHECK(fd != -1);
	n = read(fd, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	T_CHECK(atol(buf) == (long)getpid());
	close(fd);
	spool_close(sp);
	sp = spool_open(path);
	T_CHECK(sp != NULL);
	spool_close(sp);

	/* tmp/ swapped for a symlink: refused, nothing followed */
	snprintf(target, sizeof(target), "%s/locked/tmp", tmpdir);
	T_CHECK(rename(target, strcat(strcpy(path, target), ".real")) == 0);
	T_CHECK(symlink(path, target) == 0);
	snprintf(path, sizeof(path), "%s/locked", tmpdir);
	errno = 0;
	T_CHECK(spool_open(path) == NULL &&
	    (errno == ELOOP || errno == ENOTDIR));
}

/* What a root start trusts on the way to and inside the spool. */
static void
test_stat_check(void)
{
	static const struct {
		const char		*name;
		mode_t			 mode;
		uid_t			 uid;
		enum spool_dir_role	 role;
		int			 want;
	} cases[] = {
		{ "root 0755 ancestor", S_IFDIR | 0755, 0, SPOOL_DIR_ANCESTOR,
		  SPOOL_OK },
		{ "sticky /tmp", S_IFDIR | S_ISVTX | 0777, 0,
		  SPOOL_DIR_ANCESTOR, SPOOL_OK },
		{ "world-writable ancestor", S_IFDIR | 0777, 0,
		  SPOOL_DIR_ANCESTOR, SPOOL_BAD_MODE },
		{ "group-writable ancestor", S_IFDIR | 0775, 0,
		  SPOOL_DIR_ANCESTOR, SPOOL_BAD_MODE },
		{ "user's ancestor", S_IFDIR | 0755, 65534, SPOOL_DIR_ANCESTOR,
		  SPOOL_BAD_OWNER },
		{ "user's spool", S_IFDIR | 0700, 65534, SPOOL_DIR_SPOOL,
		  SPOOL_OK },
		{ "root's fresh area", S_IFDIR | 0700, 0, SPOOL_DIR_SPOOL,
		  SPOOL_OK },
		{ "stranger's area", S_IFDIR | 0700, 1000, SPOOL_DIR_SPOOL,
		  SPOOL_BAD_OWNER },
		{ "group-writable area", S_IFDIR | 0770, 65534,
		  SPOOL_DIR_SPOOL, SPOOL_BAD_MODE },
		{ "sticky is no excuse in the spool", S_IFDIR | S_ISVTX | 0777,
		  65534, SPOOL_DIR_SPOOL, SPOOL_BAD_MODE },
		{ "a file", S_IFREG | 0600, 65534, SPOOL_DIR_SPOOL,
		  SPOOL_BAD_TYPE },
	};
	struct stat st;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&st, 0, sizeof(st));
		st.st_mode = cases[i].mode;
		st.st_uid = cases[i].uid;
		if (spool_stat_check(&st, cases[i].role, 65534) !=
		    cases[i].want) {
			fprintf(stderr, "  case %s\n", cases[i].name);
			T_CHECK(0);
		}
	}
}

/*
 * The group commit as commit.c runs it: stage a batch (one of them fails
 * and leaves the rest alone), one spool_sync(), publish them all with one
 * fsync of queue/ (one whose tmp/ entry vanished fails alone).  Nothing is in
 * queue/ before its publish; afterwards bodies and envs are whole and tmp/
 * is empty.  Messages 2 and 3 have bodies flushed before their envelope,
 * which then outgrows the slots they were placed with: 3 is rebuilt, 2's
 * rebuild is blocked.  A linked copy goes through the same path into
 * dead/, with a copy of the body.
 */
#define BATCH_N 5
static void
test_batch(void)
{
	struct spool *sp = fresh("batch");
	struct spool_msg *msg[BATCH_N], *link;
	char id[BATCH_N][SPOOL_ID_LEN + 1], copy[SPOOL_ID_LEN + 1];
	char rel[160], rel2[300], *got, *body[BATCH_N], *env[BATCH_N];
	struct stat st1, st2;
	size_t i, len, blen[BATCH_N];
	int staged = 0;

	if (sp == NULL)
		return;
	for (i = 0; i < BATCH_N; i++) {
		blen[i] = i == 2 || i == 3 ? 70000 : 10;
		body[i] = xmalloc(blen[i] + 1);
		memset(body[i], 'a' + (int)i, blen[i]);
		snprintf(body[i], blen[i] + 1, "body %zu\r\n", i);
		body[i][strlen(body[i])] = 'z';
		env[i] = xmalloc(6000);
		memset(env[i], 'e', 5999);
		env[i][i == 2 || i == 3 ? 5999 : 5] = '\0';
		env[i][4] = (char)('0' + i);
	}
	for (i = 0; i < BATCH_N; i++) {
		msg[i] = spool_msg_new(sp);
		T_CHECK(msg[i] != NULL);
		if (msg[i] == NULL)
			goto out;
		memcpy(id[i], spool_msg_id(msg[i]), SPOOL_ID_LEN + 1);
		T_CHECK(spool_msg_write(msg[i], body[i], blen[i]) == 0);
	}
	/* message 2 cannot be rebuilt: a directory is in the way */
	snprintf(rel, sizeof(rel), "tmp/%s.g", id[2]);
	mksubdir(sp, rel);
	snprintf(rel, sizeof(rel), "tmp/%s.g/x", id[2]);
	mkfile(sp, rel, "in the way\n");
	for (i = 0; i < BATCH_N; i++) {
		if (spool_msg_stage(msg[i], env[i], strlen(env[i])) == 0) {
			staged++;
			snprintf(rel, sizeof(rel), "tmp/%s", id[i]);
			T_CHECK(mode_of(sp, rel) == 0600);
		} else {
			T_CHECK(i == 2);
			msg[i] = NULL;		/* consumed */
		}
	}
	T_CHECK(staged == BATCH_N - 1);
	snprintf(rel, sizeof(rel), "tmp/%s", id[2]);
	T_CHECK(!exists(sp, rel));	/* the failed one is cleaned up */
	snprintf(rel, sizeof(rel), "%s/tmp/%s.g/x", spool_dir(sp), id[2]);
	T_CHECK(unlink(rel) == 0);
	rel[strlen(rel) - 2] = '\0';
	T_CHECK(rmdir(rel) == 0);
	T_CHECK(count(sp, "queue") == 0 && count(sp, "tmp") == BATCH_N - 1);
	T_CHECK(spool_sync(sp) == 0);
	T_CHECK(count(sp, "queue") == 0);	/* durable, not yet visible */
	/* message 4 went missing from tmp/: only its rename fails */
	snprintf(rel, sizeof(rel), "%s/tmp/%s", spool_dir(sp), id[4]);
	snprintf(rel2, sizeof(rel2), "%s/gone", spool_dir(sp));
	T_CHECK(rename(rel, rel2) == 0);
	{
		struct spool_msg *pub[BATCH_N];
		int errs[BATCH_N];
		size_t np = 0;

		for (i = 0; i < BATCH_N; i++)
			if (msg[i] != NULL)
				pub[np++] = msg[i];
		T_CHECK(spool_msg_publish_many(sp, pub, np, errs) == np - 1);
		T_CHECK(errs[np - 1] == ENOENT);
		for (i = 0; i + 1 < np; i++)
			T_CHECK(errs[i] == 0 && pub[i] == NULL);
		T_CHECK(pub[np - 1] == NULL);
		msg[4] = NULL;
	}
	for (i = 0; i < BATCH_N; i++) {
		if (msg[i] == NULL)
			continue;
		got = body_of(sp, SPOOL_QUEUE, id[i], &len);
		T_CHECK(got != NULL && len == blen[i] &&
		    memcmp(got, body[i], len) == 0);
		free(got);
		got = env_of(sp, SPOOL_QUEUE, id[i]);
		T_STREQ(got, env[i]);
		free(got);
		snprintf(rel, sizeof(rel), "queue/%s", id[i]);
		T_CHECK(mode_of(sp, rel) == 0600);
	}
	T_CHECK(count(sp, "queue") == BATCH_N - 2 && count(sp, "tmp") == 0);

	/* a linked copy through the batch path */
	link = spool_msg_link(sp, SPOOL_QUEUE, id[0], SPOOL_DEAD);
	T_CHECK(link != NULL);
	if (link == NULL)
		goto out;
	memcpy(copy, spool_msg_id(link), sizeof(copy));
	T_CHECK(spool_msg_stage(link, "dead\n", 5) == 0);
	T_CHECK(spool_sync(sp) == 0);
	T_CHECK(count(sp, "dead") == 0);
	T_CHECK(spool_msg_publish(link) == 0);
	snprintf(rel, sizeof(rel), "%s/dead/%s", spool_dir(sp), copy);
	snprintf(rel2, sizeof(rel2), "%s/queue/%s", spool_dir(sp), id[0]);
	T_CHECK(count(sp, "dead") == 1 && count(sp, "tmp") == 0);
	T_CHECK(stat(rel, &st1) == 0 && stat(rel2, &st2) == 0 &&
	    st1.st_ino != st2.st_ino && st1.st_nlink == 1);
	got = body_of(sp, SPOOL_DEAD, copy, &len);
	T_CHECK(got != NULL && len == blen[0] && memcmp(got, body[0], len) == 0);
	free(got);
out:
	for (i = 0; i < BATCH_N; i++) {
		free(body[i]);
		free(env[i]);
	}
	spool_close(sp);
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "spool_commit", test_commit },
		{ "spool_abort", test_abort },
		{ "spool_env", test_env },
		{ "spool_slots", test_slots },
		{ "spool_odd_files", test_odd_files },
		{ "spool_move_delete", test_move_delete },
		{ "spool_move_delete_many", test_move_delete_many },
		{ "spool_scan", test_scan },
		{ "spool_concurrent", test_concurrent },
		{ "spool_fail_efbig", test_fail_efbig },
		{ "spool_fail_rename", test_fail_rename },
		{ "spool_id_index", test_id_index },
		{ "spool_write_whole", test_write_whole },
		{ "spool_open_errors", test_open_errors },
		{ "spool_link_list_state", test_link_list_state },
		{ "spool_lock", test_lock },
		{ "spool_stat_check", test_stat_check },
		{ "spool_batch", test_batch },
	};
	char cmd[300];
	int rc;

	if (mkdtemp(tmpdir) == NULL)
		return 2;
	if (mkdtemp(shmdir) == NULL)
		shmdir[0] = '\0';
	rc = T_RUN(cases);
	/* the trees are ours and made by this binary */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", tmpdir, shmdir);
	if (system(cmd) != 0)
		rc = 1;
	return rc;
}
