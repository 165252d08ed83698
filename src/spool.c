/*
 * spool: the message store on disk.
 *
 * Every area (tmp, queue, hold, dead, quarantine) is a directory under the
 * spool directory whose O_DIRECTORY fd stays open in struct spool; all file
 * operations are *at() calls relative to those fds, so nothing depends on
 * the cwd and worker threads share only read-only state.  A message is the
 * one file <area>/<id>: a 32-byte header naming the slot size S, two
 * envelope slots of S bytes, then the body (see spool.h for the format).
 * One file, one inode: creating and deleting inodes is most of the kernel's
 * work per message.  Durability: a file is fsync'd before it is renamed or
 * closed for good, and a directory is fsync'd after an entry in it is
 * created, renamed or removed; an envelope rewrite writes the slot not in
 * use and fdatasyncs the file, so a torn write leaves the other one valid.  An fsync is never retried: after a failure
 * the page cache may have dropped the dirty pages, so a second fsync can
 * succeed without the data being on disk.
 */
#include "spool.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "xmalloc.h"

#define SPOOL_BUF_SIZE	(64 * 1024)
#define SPOOL_ENV_MAX	(1024 * 1024)
#define SPOOL_NEW_TRIES	16
#define SPOOL_HDR_LEN	32	/* "hfspool 1 slot=XXXXXXXX", padded, '\n' */
#define SPOOL_HDR_TAG	"hfspool 1 slot="
#define SPOOL_SLOT_LINE	47	/* "env SEQ LEN HASH\n" */
#define SPOOL_SLOT_MIN	1024
#define SPOOL_SLOT_BIG	4096	/* a body flushed before its envelope */
/* spool_msg_write_whole() writes slot 1's zeros: for small slots only,
 * where they share the body's first blocks (a hole otherwise) */
#define SPOOL_WHOLE_HEAD_MAX	(16 * 1024)
#define SPOOL_SLOT_MAX	(4 * 1024 * 1024)
#define SPOOL_READ_TRIES	3	/* reads of the slots racing a writer */
#define SPOOL_FNV_BASIS	0xcbf29ce484222325ULL
#define SPOOL_FNV_PRIME	0x100000001b3ULL
#define SPOOL_LOCK_FILE	"lock"

/*
 * Group commit of an area directory: a commit's rename is durable once an
 * fsync of the directory that started after the rename has succeeded and
 * no fsync that ran after the rename has failed.  Concurrent commits share
 * those fsyncs: one thread syncs, the others whose renames it covers wait
 * for its result.
 *
 * The kernel reports a directory's writeback error once per open file
 * description, so the group commit syncs through its own descriptor: a
 * move or delete fsyncing the area's main descriptor cannot take the error
 * that a commit waiting here must see.  A ticket is taken in the same
 * critical section as the rename, so ticket order is rename order, and a
 * failed fsync fails every rename done before it returned (failed =
 * renamed): an error it swallowed may have been any of theirs.
 */
struct spool_dirsync {
	pthread_mutex_t	 lock;
	pthread_cond_t	 done;
	int		 fd;		/* the area again, for these fsyncs */
	uint64_t	 renamed;	/* renames so far (tickets) */
	uint64_t	 synced;	/* tickets covered by a good fsync */
	uint64_t	 failed;	/* tickets covered by a failed one */
	int		 failed_errno;
	bool		 busy;		/* an fsync is running */
};

struct spool {
	char		*dir;
	int		 rootfd;
	int		 lockfd;	/* flock held for life; -1 */
	int		 fd[SPOOL_NAREAS];
	atomic_bool	 suspect;	/* an fsync failed with EIO */
	struct spool_dirsync dirsync[SPOOL_NAREAS];
	/*
	 * syncfs reports a write error once per open file: the first caller
	 * after it takes it, later ones get 0 although their pages were lost
	 * in the same writeback.  So every failed sync bumps sync_gen, under
	 * sync_lock with the syncfs, and a message is durable only if no sync
	 * failed between its creation and the good sync that covered it.
	 */
	pthread_mutex_t	 sync_lock;
	uint64_t	 sync_gen;	/* failed syncs; under sync_lock */
	int		(*id_taken)(void *, const char *);	/* or NULL */
	void		*id_taken_arg;
	atomic_bool	 no_noreplace;	/* the filesystem lacks it */
};

struct spool_msg {
	struct spool	*sp;		/* borrowed */
	char		 id[SPOOL_ID_LEN + 1];
	int		 fd;		/* tmp/<id>, read-write */
	int		 srcfd;		/* spool_msg_link's source, or -1 */
	uint64_t	 srcoff;	/* where the source's body starts */
	int		 err;		/* sticky write error, logged */
	enum spool_area	 dest;		/* where commit puts it */
	uint64_t	 sync_gen;	/* the spool's at creation */
	uint64_t	 size;		/* body bytes */
	uint32_t	 slot;		/* slot size; 0 until the body is placed */
	size_t		 buflen;
	unsigned char	 buf[SPOOL_BUF_SIZE];
};

/*
 * fsync, remembering an EIO: after one, written data may be gone without a
 * trace, so the spool cannot be trusted again until a restart rescans it.
 * Never retried.  Worker threads call this too, hence the atomic.
 */
static int
spool_fsync_mode(struct spool *sp, int fd, bool data_only)
{
	if ((data_only ? fdatasync(fd) : fsync(fd)) == 0)
		return 0;
	if (errno == EIO && !atomic_exchange(&sp->suspect, true))
		log_warnx("spool suspect: fsync failed with EIO; new mail "
		    "gets 451 until holdfast restarts");
	return -1;
}

static int
spool_fsync(struct spool *sp, int fd)
{
	return spool_fsync_mode(sp, fd, false);
}

/*
 * Rename fromfd/from to tofd/to unless to exists (EEXIST): a message file
 * is never renamed over another.  A filesystem without RENAME_NOREPLACE
 * (NFS, OpenZFS before 2.2) gets a plain rename from the first EINVAL on,
 * logged once; the IDs are unique there too (spool_msg_reserve()).
 */
static int
spool_rename_new(struct spool *sp, int fromfd, const char *from, int tofd,
    const char *to)
{
	if (!atomic_load(&sp->no_noreplace)) {
		if (renameat2(fromfd, from, tofd, to, RENAME_NOREPLACE) == 0)
			return 0;
		if (errno != EINVAL && errno != ENOSYS)
			return -1;
		if (!atomic_exchange(&sp->no_noreplace, true))
			log_warnx("spool filesystem has no RENAME_NOREPLACE, "
			    "renaming plainly dir=%s", sp->dir);
	}
	return renameat(fromfd, from, tofd, to);
}

/*
 * Rename fromfd/name to area/name and take its ticket in one step: the
 * ticket, or 0 (errno set) if the rename failed.
 */
static uint64_t
spool_dirsync_rename(struct spool *sp, int fromfd, const char *name,
    enum spool_area area)
{
	struct spool_dirsync *ds = &sp->dirsync[area];
	uint64_t t = 0;
	int saved;

	pthread_mutex_lock(&ds->lock);
	if (spool_rename_new(sp, fromfd, name, sp->fd[area], name) == 0)
		t = ++ds->renamed;
	saved = errno;
	pthread_mutex_unlock(&ds->lock);
	errno = saved;
	return t;
}

/* The same for unlinking area/name (a delete shares the fsyncs). */
static uint64_t
spool_dirsync_unlink(struct spool *sp, enum spool_area area, const char *name)
{
	struct spool_dirsync *ds = &sp->dirsync[area];
	uint64_t t = 0;
	int saved;

	pthread_mutex_lock(&ds->lock);
	if (unlinkat(sp->fd[area], name, 0) == 0)
		t = ++ds->renamed;
	saved = errno;
	pthread_mutex_unlock(&ds->lock);
	errno = saved;
	return t;
}

/* Make every rename up to ticket durable: 0, or -1 with errno. */
static int
spool_dirsync_wait(struct spool *sp, enum spool_area area, uint64_t ticket)
{
	struct spool_dirsync *ds = &sp->dirsync[area];
	int rc = 0;

	pthread_mutex_lock(&ds->lock);
	for (;;) {
		uint64_t upto;

		if (ds->synced >= ticket && ds->failed < ticket)
			break;
		if (ds->failed >= ticket) {
			/* The fsync that covered us failed: never retried. */
			errno = ds->failed_errno;
			rc = -1;
			break;
		}
		if (ds->busy) {
			pthread_cond_wait(&ds->done, &ds->lock);
			continue;
		}
		ds->busy = true;
		upto = ds->renamed;
		pthread_mutex_unlock(&ds->lock);
		rc = spool_fsync(sp, ds->fd);
		pthread_mutex_lock(&ds->lock);
		ds->busy = false;
		if (rc == 0) {
			if (upto > ds->synced)
				ds->synced = upto;
		} else {
			/* Not just upto: renames made while it ran too. */
			ds->failed = ds->renamed;
			ds->failed_errno = errno;
		}
		pthread_cond_broadcast(&ds->done);
		if (rc == -1)
			break;
	}
	pthread_mutex_unlock(&ds->lock);
	return rc;
}

static const char *const spool_areas[] = {
	[SPOOL_TMP] = "tmp",
	[SPOOL_QUEUE] = "queue",
	[SPOOL_HOLD] = "hold",
	[SPOOL_DEAD] = "dead",
	[SPOOL_QUARANTINE] = "quarantine",
};

const char *
spool_area_name(enum spool_area area)
{
	if ((unsigned)area >= SPOOL_NAREAS)
		fatalx("%s: bad area %d", __func__, (int)area);
	return spool_areas[area];
}

static int
spool_area_fd(const struct spool *sp, enum spool_area area)
{
	spool_area_name(area);	/* range check */
	return sp->fd[area];
}

const char *
spool_dir(const struct spool *sp)
{
	return sp->dir;
}

static bool
spool_is_id(const char *s)
{
	size_t i;

	for (i = 0; i < SPOOL_ID_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[i] == '\0';
}

static int
spool_check_id(const char *id)
{
	char esc[64];

	if (spool_is_id(id))
		return 0;
	log_warnx("spool bad message id id=%s",
	    log_escape(id, strlen(id), esc, sizeof(esc)));
	errno = EINVAL;
	return -1;
}

/* Close fd, keeping errno; for cleanup paths. */
static void
spool_close_quiet(int fd)
{
	int saved = errno;

	if (fd != -1)
		close(fd);
	errno = saved;
}

/* Write all of buf to fd, through EINTR and short writes. */
static int
spool_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* pread exactly len bytes at off: 0, or -1 (EBADMSG if the file ends). */
static int
spool_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = pread(fd, p, len, (off_t)off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		if (n == 0) {
			errno = EBADMSG;
			return -1;
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

/* pwrite all of buf at off, through EINTR and short writes. */
static int
spool_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = pwrite(fd, p, len, (off_t)off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

/* Copy len bytes from src at soff to dst at doff (in the kernel if it
 * can): 0, or -1 with errno (EBADMSG if src ends early). */
static int
spool_copy(int src, uint64_t soff, int dst, uint64_t doff, uint64_t len)
{
	char buf[64 * 1024];
	off_t si = (off_t)soff, di = (off_t)doff;
	ssize_t n;

	while (len > 0) {
		n = copy_file_range(src, &si, dst, &di, len > SIZE_MAX / 2 ?
		    SIZE_MAX / 2 : (size_t)len, 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EXDEV || errno == ENOSYS ||
		    errno == EINVAL || errno == EOPNOTSUPP))
			break;
		if (n == -1)
			return -1;
		if (n == 0) {
			errno = EBADMSG;
			return -1;
		}
		len -= (uint64_t)n;
	}
	while (len > 0) {	/* no copy_file_range here: by hand */
		size_t m = len < sizeof(buf) ? (size_t)len : sizeof(buf);

		if (spool_pread_all(src, buf, m, (uint64_t)si) == -1 ||
		    spool_pwrite_all(dst, buf, m, (uint64_t)di) == -1)
			return -1;
		si += (off_t)m;
		di += (off_t)m;
		len -= m;
	}
	return 0;
}

static const char spool_zero[SPOOL_SLOT_LINE];

static uint64_t
spool_fnv(uint64_t h, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	while (len-- > 0)
		h = (h ^ *p++) * SPOOL_FNV_PRIME;
	return h;
}

/* Parse n lowercase hex digits (nothing else): 0, or -1. */
static int
spool_hex(const char *p, size_t n, uint64_t *v)
{
	uint64_t x = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] >= '0' && p[i] <= '9')
			x = x << 4 | (uint64_t)(p[i] - '0');
		else if (p[i] >= 'a' && p[i] <= 'f')
			x = x << 4 | (uint64_t)(p[i] - 'a' + 10);
		else
			return -1;
	}
	*v = x;
	return 0;
}

/* Where the body of a file with slot size slot starts. */
static uint64_t
spool_body_off(uint32_t slot)
{
	return SPOOL_HDR_LEN + 2 * (uint64_t)slot;
}

/* The slot size for an envelope of envlen bytes: room to grow by half. */
static uint32_t
spool_slot_fit(size_t envlen)
{
	size_t need = SPOOL_SLOT_LINE + envlen, s;

	s = need + need / 2 + 128;
	if (s < SPOOL_SLOT_MIN)
		s = SPOOL_SLOT_MIN;
	s = (s + 255) & ~(size_t)255;
	return s > SPOOL_SLOT_MAX ? SPOOL_SLOT_MAX : (uint32_t)s;
}

/*
 * Format a slot (line and text) for env at seq into out, which has room
 * for SPOOL_SLOT_LINE + envlen + 1 bytes; returns the bytes to write.
 */
static size_t
spool_slot_format(char *out, uint64_t seq, const char *env, size_t envlen)
{
	uint64_t h;

	snprintf(out, SPOOL_SLOT_LINE + 1, "env %016llx %08zx ",
	    (unsigned long long)seq, envlen);
	h = spool_fnv(spool_fnv(SPOOL_FNV_BASIS, out, 30), env, envlen);
	snprintf(out + 30, SPOOL_SLOT_LINE + 1 - 30, "%016llx\n",
	    (unsigned long long)h);
	memcpy(out + SPOOL_SLOT_LINE, env, envlen);
	return SPOOL_SLOT_LINE + envlen;
}

/* A slot's envelope if the slot is valid: 0 with *seq, *text, *len. */
static int
spool_slot_parse(const char *slot, uint32_t size, uint64_t *seq,
    const char **text, size_t *len)
{
	uint64_t n, h;

	if (memcmp(slot, "env ", 4) != 0 || slot[20] != ' ' ||
	    slot[29] != ' ' || slot[46] != '\n' ||
	    spool_hex(slot + 4, 16, seq) == -1 ||
	    spool_hex(slot + 21, 8, &n) == -1 ||
	    spool_hex(slot + 30, 16, &h) == -1 ||
	    n > size - SPOOL_SLOT_LINE ||
	    spool_fnv(spool_fnv(SPOOL_FNV_BASIS, slot, 30),
	    slot + SPOOL_SLOT_LINE, (size_t)n) != h)
		return -1;
	*text = slot + SPOOL_SLOT_LINE;
	*len = (size_t)n;
	return 0;
}

/* Read the header of a message file: 0 with *slot, or -1 (EBADMSG). */
static int
spool_hdr_read(int fd, uint32_t *slot)
{
	char h[SPOOL_HDR_LEN];
	uint64_t v;
	size_t i, tag = sizeof(SPOOL_HDR_TAG) - 1;

	if (spool_pread_all(fd, h, sizeof(h), 0) == -1)
		return -1;
	if (memcmp(h, SPOOL_HDR_TAG, tag) != 0 ||
	    spool_hex(h + tag, 8, &v) == -1 || h[SPOOL_HDR_LEN - 1] != '\n' ||
	    v < SPOOL_SLOT_LINE || v > SPOOL_SLOT_MAX)
		goto bad;
	for (i = tag + 8; i < SPOOL_HDR_LEN - 1; i++)
		if (h[i] != ' ')
			goto bad;
	*slot = (uint32_t)v;
	return 0;
bad:
	errno = EBADMSG;
	return -1;
}

/* What a message file's envelope slots hold. */
struct spool_slots {
	uint32_t	 size;		/* S */
	int		 cur;		/* slot of the envelope: 0 or 1 */
	uint64_t	 seq;		/* its seq */
	char		*text;		/* a copy, NUL-terminated, or NULL */
	size_t		 len;
};

/*
 * Read the header and both slots of an open message file of size bytes
 * and find its envelope (copied into sl->text if want_text): 0, or -1 with
 * errno (EBADMSG: not a message file, or neither slot valid).  A writer
 * may be filling the other slot meanwhile: the newer valid slot is the
 * envelope either way, and if a large read met two writes (neither slot
 * valid) it is read again before the file is called bad.
 */
static int
spool_slots_read(int fd, uint64_t size, struct spool_slots *sl,
    bool want_text)
{
	const char *t[2] = { NULL, NULL };
	uint64_t seq[2] = { 0, 0 };
	size_t len[2] = { 0, 0 };
	char *buf;
	int i, tries, best = -1;

	sl->text = NULL;
	if (spool_hdr_read(fd, &sl->size) == -1)
		return -1;
	if (size < spool_body_off(sl->size)) {
		errno = EBADMSG;
		return -1;
	}
	buf = xmalloc(2 * (size_t)sl->size);
	for (tries = 0; best == -1 && tries < SPOOL_READ_TRIES; tries++) {
		if (spool_pread_all(fd, buf, 2 * (size_t)sl->size,
		    SPOOL_HDR_LEN) == -1) {
			free(buf);
			return -1;
		}
		for (i = 0; i < 2; i++)
			if (spool_slot_parse(buf + (size_t)i * sl->size,
			    sl->size, &seq[i], &t[i], &len[i]) == 0 &&
			    (best == -1 || seq[i] > seq[best]))
				best = i;
	}
	if (best == -1) {
		free(buf);
		errno = EBADMSG;
		return -1;
	}
	sl->cur = best;
	sl->seq = seq[best];
	sl->len = len[best];
	if (want_text) {
		sl->text = xmalloc(len[best] + 1);
		memcpy(sl->text, t[best], len[best]);
		sl->text[len[best]] = '\0';
	}
	free(buf);
	return 0;
}

/* Format the header and slot 0 into buf (room for SPOOL_HDR_LEN +
 * SPOOL_SLOT_LINE + envlen + 1); the bytes to write. */
static size_t
spool_head_format(char *buf, uint32_t slot, uint64_t seq, const char *env,
    size_t envlen)
{
	size_t n;

	snprintf(buf, SPOOL_HDR_LEN, SPOOL_HDR_TAG "%08x", slot);
	n = strlen(buf);
	memset(buf + n, ' ', SPOOL_HDR_LEN - 1 - n);
	buf[SPOOL_HDR_LEN - 1] = '\n';
	return SPOOL_HDR_LEN + spool_slot_format(buf + SPOOL_HDR_LEN, seq, env,
	    envlen);
}

/*
 * Write the header and slot 0 (env at seq) of a file with slot size slot;
 * slot 1 is left as it is (a fresh file's hole reads as zeros: invalid).
 * A file without body is extended to its slots' end.
 */
static int
spool_head_write(int fd, uint32_t slot, uint64_t seq, const char *env,
    size_t envlen, uint64_t bodylen)
{
	char *buf = xmalloc(SPOOL_HDR_LEN + SPOOL_SLOT_LINE + envlen + 1);
	size_t n;
	int rc;

	n = spool_head_format(buf, slot, seq, env, envlen);
	rc = spool_pwrite_all(fd, buf, n, 0);
	free(buf);
	if (rc == 0 && bodylen == 0)
		rc = ftruncate(fd, (off_t)spool_body_off(slot));
	return rc;
}

/*
 * Create dfd/name (replacing any) as a message file with env at seq in slot
 * 0 and the len body bytes of src at soff copied after the slots; not
 * synced.  The fd, or -1 with *op naming the failed step (name removed).
 */
static int
spool_build(int dfd, const char *name, int src, uint64_t soff, uint64_t len,
    const char *env, size_t envlen, uint64_t seq, const char **op)
{
	uint32_t slot = spool_slot_fit(envlen);
	int fd, saved;

	*op = "open";
	unlinkat(dfd, name, 0);
	fd = openat(dfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600);
	if (fd == -1)
		return -1;
	*op = "write";
	if (spool_head_write(fd, slot, seq, env, envlen, len) == -1)
		goto fail;
	*op = "copy";
	if (spool_copy(src, soff, fd, spool_body_off(slot), len) == -1)
		goto fail;
	return fd;
fail:
	saved = errno;
	close(fd);
	unlinkat(dfd, name, 0);
	errno = saved;
	return -1;
}

/*
 * Remove the directory <parent>/<name> and the files in it (an old-format
 * message, or anything planted in tmp/), keeping errno.  Used to clean up, so it tries everything and returns -1 if the
 * directory is still there.
 */
static int
spool_rmtree(int parentfd, const char *name)
{
	int saved = errno, dfd, rc = 0;
	struct dirent *de;
	DIR *d;

	dfd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (dfd != -1 && (d = fdopendir(dfd)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			if (unlinkat(dfd, de->d_name, 0) == -1 &&
			    errno == EISDIR)
				unlinkat(dfd, de->d_name, AT_REMOVEDIR);
		}
		closedir(d);
	} else if (dfd != -1)
		close(dfd);
	if (unlinkat(parentfd, name, AT_REMOVEDIR) == -1 && errno != ENOENT)
		rc = -1;
	errno = saved;
	return rc;
}

/*
 * Started as root, the spool must not let its unprivileged owner steer
 * what root does: a symlink or a foreign directory swapped in for an area
 * would have root purge, chown or write somewhere else.  So every
 * directory on the way is opened without following symlinks, relative to
 * its parent's fd, and checked before it is trusted.
 */
int
spool_stat_check(const struct stat *st, enum spool_dir_role role,
    uid_t owner)
{
	if (!S_ISDIR(st->st_mode))
		return SPOOL_BAD_TYPE;
	switch (role) {
	case SPOOL_DIR_ANCESTOR:
		/* Only root may rename in it, or sticky stops the others. */
		if (st->st_uid != 0)
			return SPOOL_BAD_OWNER;
		if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0 &&
		    (st->st_mode & S_ISVTX) == 0)
			return SPOOL_BAD_MODE;
		return SPOOL_OK;
	case SPOOL_DIR_SPOOL:
		if (st->st_uid != 0 && st->st_uid != owner)
			return SPOOL_BAD_OWNER;
		if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0)
			return SPOOL_BAD_MODE;
		return SPOOL_OK;
	}
	return SPOOL_BAD_TYPE;
}

static const char *
spool_check_reason(int rc)
{
	switch (rc) {
	case SPOOL_BAD_TYPE:
		return "not a directory";
	case SPOOL_BAD_OWNER:
		return "owned by another user";
	case SPOOL_BAD_MODE:
		return "writable by group or others";
	}
	return "ok";
}

/*
 * Open the spool directory for a root start: walk dir's components from
 * "/" with O_NOFOLLOW, each ancestor owned by root and not writable by
 * others (unless sticky), creating the last one if missing.  The fd, or -1
 * (logged, errno set).
 */
static int
spool_open_strict(const char *dir, uid_t owner)
{
	char *copy, *p, *next, *name;
	int fd, nfd, rc;
	struct stat st;

	if (dir[0] != '/') {
		log_warnx("spool %s: a root start needs an absolute spool "
		    "path", dir);
		errno = EINVAL;
		return -1;
	}
	copy = xstrdup(dir);
	if ((fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		log_warn("spool open failed op=open path=/");
		free(copy);
		return -1;
	}
	for (p = copy; ; p = next) {
		while (*p == '/')
			p++;
		name = p;
		if ((next = strchr(p, '/')) != NULL)
			*next++ = '\0';
		while (next != NULL && *next == '/')
			next++;
		if (next != NULL && *next == '\0')
			next = NULL;
		if (*name == '\0' || strcmp(name, ".") == 0 ||
		    strcmp(name, "..") == 0) {
			if (next == NULL && *name == '\0')
				break;	/* dir is "/" */
			log_warnx("spool %s: give a plain absolute path "
			    "(no . or ..)", dir);
			errno = EINVAL;
			goto fail;
		}
		if (fstat(fd, &st) == -1) {
			log_warn("spool open failed op=fstat path=%s", dir);
			goto fail;
		}
		if ((rc = spool_stat_check(&st, SPOOL_DIR_ANCESTOR, owner)) !=
		    SPOOL_OK) {
			log_warnx("spool %s: a directory above it (before "
			    "\"%s\") is %s: another user could move the "
			    "spool; refusing a root start", dir, name,
			    spool_check_reason(rc));
			errno = EPERM;
			goto fail;
		}
		if (next == NULL && mkdirat(fd, name, 0700) == -1 &&
		    errno != EEXIST) {
			log_warn("spool open failed op=mkdir path=%s", dir);
			goto fail;
		}
		nfd = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
		    O_CLOEXEC);
		if (nfd == -1) {
			if (errno == ELOOP || errno == ENOTDIR)
				log_warnx("spool %s: \"%s\" is a symlink or "
				    "not a directory; a root start follows "
				    "no symlink on the spool path", dir, name);
			else
				log_warn("spool open failed op=open path=%s "
				    "at=%s", dir, name);
			goto fail;
		}
		close(fd);
		fd = nfd;
		if (next == NULL)
			break;
	}
	free(copy);
	return fd;
fail:
	spool_close_quiet(fd);
	free(copy);
	return -1;
}

/*
 * Take the spool's lock: an exclusive flock on <spool>/lock, held through
 * the fd until the process exits, so that a second daemon on the same
 * spool stops before it reads or changes anything.  The holder's PID is
 * written into the file for the refusal message.
 */
static int
spool_lock(struct spool *sp, uid_t owner, gid_t group)
{
	char buf[32];
	struct stat st;
	ssize_t n;
	long pid;
	int len;

	sp->lockfd = openat(sp->rootfd, SPOOL_LOCK_FILE, O_RDWR | O_CREAT |
	    O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
	if (sp->lockfd == -1 && errno == ELOOP) {
		log_warnx("spool lock %s/%s is a symlink: refusing it",
		    sp->dir, SPOOL_LOCK_FILE);
		errno = ELOOP;
		return -1;
	}
	if (sp->lockfd == -1) {
		log_warn("spool lock failed op=open path=%s/%s", sp->dir,
		    SPOOL_LOCK_FILE);
		return -1;
	}
	/* Never write through a hard link or into a FIFO or device. */
	if (fstat(sp->lockfd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    st.st_nlink != 1 || (st.st_uid != geteuid() && st.st_uid != 0 &&
	    st.st_uid != owner)) {
		log_warnx("spool lock %s/%s is not a plain file of ours",
		    sp->dir, SPOOL_LOCK_FILE);
		errno = EPERM;
		return -1;
	}
	if (flock(sp->lockfd, LOCK_EX | LOCK_NB) == -1) {
		if (errno != EWOULDBLOCK) {
			log_warn("spool lock failed op=flock path=%s/%s",
			    sp->dir, SPOOL_LOCK_FILE);
			return -1;
		}
		n = pread(sp->lockfd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		if (sscanf(buf, "%ld", &pid) == 1 && pid > 0)
			log_warnx("spool %s is in use by another holdfast, "
			    "pid %ld", sp->dir, pid);
		else
			log_warnx("spool %s is in use by another holdfast, "
			    "pid unknown", sp->dir);
		errno = EWOULDBLOCK;
		return -1;
	}
	len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(sp->lockfd, 0) == -1 ||
	    pwrite(sp->lockfd, buf, (size_t)len, 0) != len ||
	    (owner != (uid_t)-1 && fchown(sp->lockfd, owner, group) == -1)) {
		log_warn("spool lock failed op=write path=%s/%s", sp->dir,
		    SPOOL_LOCK_FILE);
		return -1;
	}
	return 0;
}

/*
 * Open the area directories under rootfd (creating them if create),
 * without following symlinks.  With a root start (owner != -1) each must
 * be root's or owner's and writable by nobody else; it is then handed to
 * owner:group through its fd.
 */
static int
spool_open_areas(struct spool *sp, bool create, uid_t owner, gid_t group)
{
	struct stat st;
	size_t i;
	int rc;

	for (i = 0; i < SPOOL_NAREAS; i++) {
		const char *what = spool_areas[i];

		if (create && mkdirat(sp->rootfd, what, 0700) == -1 &&
		    errno != EEXIST) {
			log_warn("spool open failed op=mkdir path=%s/%s",
			    sp->dir, what);
			return -1;
		}
		sp->fd[i] = openat(sp->rootfd, what, O_RDONLY | O_DIRECTORY |
		    O_NOFOLLOW | O_CLOEXEC);
		if (sp->fd[i] == -1) {
			int saved = errno;

			if (!create)
				return -1;
			if (errno == ELOOP || errno == ENOTDIR) {
				log_warnx("spool area %s/%s is a symlink or "
				    "not a directory: refusing it", sp->dir,
				    what);
				errno = saved;
			} else
				log_warn("spool open failed op=open path=%s/%s",
				    sp->dir, what);
			return -1;
		}
		/* The shared directory sync's own fd (see spool_dir_sync). */
		sp->dirsync[i].fd = openat(sp->fd[i], ".", O_RDONLY |
		    O_DIRECTORY | O_CLOEXEC);
		if (sp->dirsync[i].fd == -1) {
			log_warn("spool open failed op=open path=%s/%s",
			    sp->dir, what);
			return -1;
		}
		if (owner == (uid_t)-1)
			continue;
		if (fstat(sp->fd[i], &st) == -1) {
			log_warn("spool open failed op=fstat path=%s/%s",
			    sp->dir, what);
			return -1;
		}
		if ((rc = spool_stat_check(&st, SPOOL_DIR_SPOOL, owner)) !=
		    SPOOL_OK) {
			log_warnx("spool area %s/%s is %s: refusing a root "
			    "start", sp->dir, what, spool_check_reason(rc));
			errno = EPERM;
			return -1;
		}
		if ((st.st_uid != owner || st.st_gid != group) &&
		    fchown(sp->fd[i], owner, group) == -1) {
			log_warn("spool open failed op=fchown path=%s/%s",
			    sp->dir, what);
			return -1;
		}
	}
	return 0;
}

static struct spool *
spool_open_mode(const char *dir, bool create, uid_t owner, gid_t group)
{
	struct spool *sp = xcalloc(1, sizeof(*sp));
	struct stat st;
	size_t i;
	int rc;

	sp->dir = xstrdup(dir);
	sp->rootfd = -1;
	sp->lockfd = -1;
	pthread_mutex_init(&sp->sync_lock, NULL);
	for (i = 0; i < SPOOL_NAREAS; i++) {
		sp->fd[i] = -1;
		sp->dirsync[i].fd = -1;
		pthread_mutex_init(&sp->dirsync[i].lock, NULL);
		pthread_cond_init(&sp->dirsync[i].done, NULL);
	}
	if (owner != (uid_t)-1) {
		if ((sp->rootfd = spool_open_strict(dir, owner)) == -1)
			goto fail;
	} else {
		if (create && mkdir(dir, 0700) == -1 && errno != EEXIST) {
			log_warn("spool open failed op=mkdir path=%s", dir);
			goto fail;
		}
		sp->rootfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (sp->rootfd == -1) {
			if (create)
				log_warn("spool open failed op=open path=%s",
				    dir);
			goto fail;
		}
	}
	if (owner != (uid_t)-1) {
		if (fstat(sp->rootfd, &st) == -1) {
			log_warn("spool open failed op=fstat path=%s", dir);
			goto fail;
		}
		if ((rc = spool_stat_check(&st, SPOOL_DIR_SPOOL, owner)) !=
		    SPOOL_OK) {
			log_warnx("spool %s is %s: refusing a root start",
			    dir, spool_check_reason(rc));
			errno = EPERM;
			goto fail;
		}
	}
	/* Before anything in the spool is read or changed. */
	if (create && spool_lock(sp, owner, group) == -1)
		goto fail;
	if (spool_open_areas(sp, create, owner, group) == -1)
		goto fail;
	if (owner != (uid_t)-1 && (st.st_uid != owner || st.st_gid != group) &&
	    fchown(sp->rootfd, owner, group) == -1) {
		log_warn("spool open failed op=fchown path=%s", dir);
		goto fail;
	}
	if (create && spool_fsync(sp, sp->rootfd) == -1) {
		log_warn("spool open failed op=fsync path=%s", dir);
		goto fail;
	}
	return sp;
fail:
	rc = errno;
	spool_close(sp);
	errno = rc;
	return NULL;
}

struct spool *
spool_open(const char *dir)
{
	return spool_open_mode(dir, true, (uid_t)-1, (gid_t)-1);
}

struct spool *
spool_open_owned(const char *dir, uid_t uid, gid_t gid)
{
	return spool_open_mode(dir, true, uid, gid);
}

struct spool *
spool_open_readonly(const char *dir)
{
	return spool_open_mode(dir, false, (uid_t)-1, (gid_t)-1);
}

bool
spool_is_suspect(struct spool *sp)
{
	return atomic_load(&sp->suspect);
}

int
spool_list(struct spool *sp, enum spool_area area,
    void (*cb)(void *arg, const char *id), void *arg)
{
	struct dirent *de;
	DIR *d;
	int fd;

	/* its own open file, not a dup: a listing on a worker thread
	 * must not share a directory offset with one on the loop */
	if ((fd = openat(spool_area_fd(sp, area), ".", O_RDONLY |
	    O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	rewinddir(d);
	while ((errno = 0, de = readdir(d)) != NULL)
		if (spool_is_id(de->d_name))
			cb(arg, de->d_name);
	if (errno != 0) {
		closedir(d);
		return -1;
	}
	closedir(d);
	return 0;
}

int
spool_state_write(struct spool *sp, const char *name, const char *text)
{
	char tmp[64];
	int fd, rc;

	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	fd = openat(sp->rootfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0600);
	if (fd == -1)
		goto fail;
	if (spool_write_all(fd, text, strlen(text)) == -1 || spool_fsync(sp, fd) == -1) {
		spool_close_quiet(fd);
		goto fail;
	}
	rc = close(fd);
	if (rc == -1 || renameat(sp->rootfd, tmp, sp->rootfd, name) == -1 ||
	    spool_fsync(sp, sp->rootfd) == -1)
		goto fail;
	return 0;
fail:
	log_warn("spool state write failed file=%s", name);
	return -1;
}

int
spool_state_read(struct spool *sp, const char *name, char *buf,
    size_t buflen)
{
	struct stat st;
	ssize_t n;
	int fd;

	/* No symlink to follow elsewhere, no FIFO to block on: a regular
	 * file or nothing. */
	if ((fd = openat(sp->rootfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC)) == -1) {
		if (errno != ENOENT)
			log_warn("spool state file ignored op=open file=%s",
			    name);
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		log_warnx("spool state file ignored file=%s "
		    "reason=not-a-regular-file", name);
		close(fd);
		errno = EINVAL;
		return -1;
	}
	n = read(fd, buf, buflen - 1);
	close(fd);
	if (n == -1)
		return -1;
	buf[n] = '\0';
	return 0;
}

int
spool_state_remove(struct spool *sp, const char *name)
{
	if (unlinkat(sp->rootfd, name, 0) == -1 && errno != ENOENT) {
		log_warn("spool state remove failed file=%s", name);
		return -1;
	}
	return spool_fsync(sp, sp->rootfd);
}

int
spool_state_span_store(struct spool *sp, const char *name, time_t since,
    time_t until)
{
	char buf[64];

	if (until == 0)
		return spool_state_remove(sp, name);
	snprintf(buf, sizeof(buf), "%lld %lld\n", (long long)since,
	    (long long)until);
	return spool_state_write(sp, name, buf);
}

int
spool_state_span_load(struct spool *sp, const char *name, time_t *since,
    time_t *until)
{
	char buf[64];
	long long s, u;

	if (spool_state_read(sp, name, buf, sizeof(buf)) == -1)
		return -1;
	if (sscanf(buf, "%lld %lld", &s, &u) != 2 || s <= 0 || u < s) {
		errno = EBADMSG;	/* not EINVAL: that one is logged */
		return -1;
	}
	*since = (time_t)s;
	*until = (time_t)u;
	return 0;
}

int
spool_find(struct spool *sp, const char *id, enum spool_area *area)
{
	static const enum spool_area areas[] = { SPOOL_QUEUE, SPOOL_HOLD,
		SPOOL_DEAD, SPOOL_QUARANTINE };
	struct stat st;
	size_t i;

	if (!spool_is_id(id)) {
		errno = EINVAL;
		return -1;
	}
	for (i = 0; i < UTIL_ARRAY_LEN(areas); i++)
		if (fstatat(sp->fd[areas[i]], id, &st, AT_SYMLINK_NOFOLLOW) ==
		    0) {
			*area = areas[i];
			return 0;
		}
	errno = ENOENT;
	return -1;
}

void
spool_close(struct spool *sp)
{
	size_t i;

	if (sp == NULL)
		return;
	for (i = 0; i < SPOOL_NAREAS; i++) {
		pthread_mutex_destroy(&sp->dirsync[i].lock);
		pthread_cond_destroy(&sp->dirsync[i].done);
	}
	pthread_mutex_destroy(&sp->sync_lock);
	for (i = 0; i < SPOOL_NAREAS; i++) {
		spool_close_quiet(sp->dirsync[i].fd);
		spool_close_quiet(sp->fd[i]);
	}
	spool_close_quiet(sp->lockfd);
	spool_close_quiet(sp->rootfd);
	free(sp->dir);
	free(sp);
}

static void spool_msg_discard(struct spool_msg *msg);
static void spool_msg_unpublish(struct spool_msg *msg);

/*
 * Is there an entry <area>/<id> in any area a message may be in?  With
 * use_index, the index answers if it can; it does not know quarantine/,
 * where a clash only costs the newcomer a suffix (spool_quarantine()).
 */
static bool
spool_id_taken(const struct spool *sp, const char *id, bool use_index)
{
	static const enum spool_area areas[] = { SPOOL_QUEUE, SPOOL_HOLD,
		SPOOL_DEAD, SPOOL_QUARANTINE };
	struct stat st;
	size_t i;
	int known;

	if (use_index && sp->id_taken != NULL &&
	    (known = sp->id_taken(sp->id_taken_arg, id)) != -1)
		return known == 1;
	for (i = 0; i < UTIL_ARRAY_LEN(areas); i++)
		if (fstatat(sp->fd[areas[i]], id, &st, AT_SYMLINK_NOFOLLOW) ==
		    0 || errno != ENOENT)
			return true;
	return false;
}

void
spool_set_id_index(struct spool *sp, int (*taken)(void *, const char *),
    void *arg)
{
	sp->id_taken = taken;
	sp->id_taken_arg = arg;
}

/*
 * Open the message file <area>/<id> with flags (O_RDONLY or O_RDWR): never
 * through a symlink, never blocking on a FIFO planted there, never a file
 * with a second name (a hard link to someone else's file: ours have one).
 * The fd, with its stat in *st; or -1 with errno (EBADMSG: not a regular
 * file of one link).
 */
static int
spool_msg_open(struct spool *sp, enum spool_area area, const char *id,
    int flags, struct stat *st)
{
	int fd;

	fd = openat(spool_area_fd(sp, area), id, flags | O_NOFOLLOW |
	    O_NONBLOCK | O_CLOEXEC);
	if (fd == -1)
		return -1;
	if (fstat(fd, st) == -1) {
		spool_close_quiet(fd);
		return -1;
	}
	if (!S_ISREG(st->st_mode) || st->st_nlink != 1) {
		close(fd);
		errno = EBADMSG;
		return -1;
	}
	return fd;
}

/*
 * Reserve a fresh ID as the file tmp/<id>, open read-write; use_index on
 * the index's thread only (spool_set_id_index()).
 */
static struct spool_msg *
spool_msg_reserve(struct spool *sp, bool use_index)
{
	struct spool_msg *msg = xmalloc(sizeof(*msg));
	int tries;

	msg->sp = sp;
	msg->fd = msg->srcfd = -1;
	msg->srcoff = 0;
	msg->err = 0;
	msg->dest = SPOOL_QUEUE;
	msg->size = 0;
	msg->slot = 0;
	msg->buflen = 0;
	pthread_mutex_lock(&sp->sync_lock);
	msg->sync_gen = sp->sync_gen;
	pthread_mutex_unlock(&sp->sync_lock);
	for (tries = 0;; tries++) {
		util_random_hex(msg->id, SPOOL_ID_LEN);
		msg->fd = openat(sp->fd[SPOOL_TMP], msg->id, O_RDWR | O_CREAT |
		    O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (msg->fd != -1) {
			if (!spool_id_taken(sp, msg->id, use_index))
				break;
			close(msg->fd);
			msg->fd = -1;
			unlinkat(sp->fd[SPOOL_TMP], msg->id, 0);
			errno = EEXIST;
		}
		if (errno != EEXIST || tries == SPOOL_NEW_TRIES) {
			log_warn("spool new message failed op=open dir=%s/tmp",
			    sp->dir);
			free(msg);
			return NULL;
		}
	}
	return msg;
}

struct spool_msg *
spool_msg_new(struct spool *sp)
{
	return spool_msg_reserve(sp, true);
}

struct spool_msg *
spool_msg_link(struct spool *sp, enum spool_area area, const char *id,
    enum spool_area dest)
{
	struct spool_msg *msg;
	struct spool_slots sl;
	struct stat st;
	int sfd;

	if (spool_check_id(id) == -1)
		return NULL;
	if ((msg = spool_msg_reserve(sp, false)) == NULL)
		return NULL;
	msg->dest = dest;
	sfd = spool_msg_open(sp, area, id, O_RDONLY, &st);
	if (sfd == -1 || spool_slots_read(sfd, (uint64_t)st.st_size, &sl,
	    false) == -1) {
		log_warn("msg=%s spool copy of %s failed op=open", msg->id, id);
		spool_close_quiet(sfd);
		spool_msg_discard(msg);
		return NULL;
	}
	/* The body is copied when the envelope is known (stage). */
	msg->srcfd = sfd;
	msg->srcoff = spool_body_off(sl.size);
	msg->size = (uint64_t)st.st_size - msg->srcoff;
	return msg;
}

const char *
spool_msg_id(const struct spool_msg *msg)
{
	return msg->id;
}

uint64_t
spool_msg_size(const struct spool_msg *msg)
{
	return msg->size;
}

/* Fix the slot size and put the body's writes after the slots. */
static int
spool_msg_place(struct spool_msg *msg, uint32_t slot)
{
	msg->slot = slot;
	if (lseek(msg->fd, (off_t)spool_body_off(slot), SEEK_SET) == -1)
		return -1;
	return 0;
}

/*
 * A message whose body is all still in the buffer (nothing written yet):
 * the header, slot 0, slot 1's zeros (invalid: nothing to fall back to) and
 * the body in one pwritev(2), where placing the body, writing it and
 * writing the head took three calls.  The envelope fits slot.
 */
static int
spool_msg_write_whole(struct spool_msg *msg, uint32_t slot, const char *env,
    size_t envlen)
{
	size_t off = spool_body_off(slot), k;
	char *head = xcalloc(1, off);	/* off > the slot line and env */
	struct iovec iov[2];
	ssize_t n;
	int rc = 0;

	(void)spool_head_format(head, slot, 1, env, envlen);
	iov[0].iov_base = head;
	iov[0].iov_len = off;
	iov[1].iov_base = msg->buf;
	iov[1].iov_len = msg->buflen;
	do
		n = pwritev(msg->fd, iov, 2, 0);
	while (n == -1 && errno == EINTR);
	if (n == -1)
		rc = -1;
	else if ((size_t)n < off + msg->buflen) {
		/* short (a full disk, say): the rest piece by piece */
		k = (size_t)n;
		if (k < off)
			rc = spool_pwrite_all(msg->fd, head + k, off - k, k);
		k = k > off ? k - off : 0;
		if (rc == 0)
			rc = spool_pwrite_all(msg->fd, msg->buf + k,
			    msg->buflen - k, off + k);
	}
	free(head);
	if (rc == -1)
		return -1;
	msg->slot = slot;
	msg->buflen = 0;
	return 0;
}

/* Write len bytes of body at the file's offset; on error record and log
 * the sticky errno.  A body too big for the buffer is placed before its
 * envelope is known, with room for a usual one. */
static int
spool_msg_put(struct spool_msg *msg, const void *buf, size_t len)
{
	if (msg->err != 0) {
		errno = msg->err;
		return -1;
	}
	if ((msg->slot == 0 && spool_msg_place(msg, SPOOL_SLOT_BIG) == -1) ||
	    spool_write_all(msg->fd, buf, len) == -1) {
		msg->err = errno;
		log_warn("msg=%s spool write failed op=write file=tmp/<id>",
		    msg->id);
		return -1;
	}
	return 0;
}

/* Write out the buffer. */
static int
spool_msg_flush(struct spool_msg *msg)
{
	if (spool_msg_put(msg, msg->buf, msg->buflen) == -1)
		return -1;
	msg->buflen = 0;
	return 0;
}

int
spool_msg_write(struct spool_msg *msg, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	size_t n;

	if (msg->err != 0) {
		errno = msg->err;
		return -1;
	}
	msg->size += len;
	while (len > 0) {
		if (msg->buflen == 0 && len >= SPOOL_BUF_SIZE) {
			/* A full buffer's worth: skip the copy. */
			n = len - len % SPOOL_BUF_SIZE;
			if (spool_msg_put(msg, p, n) == -1)
				return -1;
		} else {
			n = SPOOL_BUF_SIZE - msg->buflen;
			if (n > len)
				n = len;
			memcpy(msg->buf + msg->buflen, p, n);
			msg->buflen += n;
			if (msg->buflen == SPOOL_BUF_SIZE &&
			    spool_msg_flush(msg) == -1)
				return -1;
		}
		p += n;
		len -= n;
	}
	return 0;
}

/* Close the handle's fds, remove tmp/<id> and free it, keeping errno. */
static void
spool_msg_discard(struct spool_msg *msg)
{
	int saved = errno;

	spool_close_quiet(msg->fd);
	spool_close_quiet(msg->srcfd);
	if (unlinkat(msg->sp->fd[SPOOL_TMP], msg->id, 0) == -1 &&
	    errno != ENOENT)
		log_warn("msg=%s spool cleanup failed op=unlink dir=tmp",
		    msg->id);
	free(msg);
	errno = saved;
}

/*
 * An envelope that does not fit the slot size the body was placed with:
 * rebuild tmp/<id> with room for it (the body copied in the kernel).
 */
static int
spool_msg_rebuild(struct spool_msg *msg, const char *env, size_t envlen,
    const char **op)
{
	struct spool *sp = msg->sp;
	char name[SPOOL_ID_LEN + sizeof(".g")];
	int fd;

	snprintf(name, sizeof(name), "%s.g", msg->id);
	fd = spool_build(sp->fd[SPOOL_TMP], name, msg->fd,
	    spool_body_off(msg->slot), msg->size, env, envlen, 1, op);
	if (fd == -1)
		return -1;
	*op = "rename";
	if (renameat(sp->fd[SPOOL_TMP], name, sp->fd[SPOOL_TMP], msg->id) ==
	    -1) {
		spool_close_quiet(fd);
		unlinkat(sp->fd[SPOOL_TMP], name, 0);
		return -1;
	}
	close(msg->fd);
	msg->fd = fd;
	msg->slot = spool_slot_fit(envlen);
	return 0;
}

/*
 * Write the rest of a message into tmp/<id>: the body (placed now if it
 * was never flushed, so its slots fit the envelope), then the header and
 * the envelope in slot 0.  With durable, fsync the file (a commit on its
 * own); without, a spool_sync() of the batch does that.  0, or -1 (logged)
 * with the handle consumed.
 */
static int
spool_msg_stage_mode(struct spool_msg *msg, const char *env, size_t envlen,
    bool durable)
{
	struct spool *sp = msg->sp;
	const char *op = "write";
	bool logged = msg->err != 0;
	uint32_t fit = spool_slot_fit(envlen);
	int rc;

	if (logged) {
		errno = msg->err;
		goto fail;
	}
	if (envlen > SPOOL_ENV_MAX) {
		errno = EFBIG;
		goto fail;
	}
	if (msg->srcfd != -1) {		/* spool_msg_link: copy the body */
		op = "copy";
		if (spool_copy(msg->srcfd, msg->srcoff, msg->fd,
		    spool_body_off(fit), msg->size) == -1)
			goto fail;
		msg->slot = fit;
	} else if (msg->slot == 0 && SPOOL_SLOT_LINE + envlen <= fit &&
	    spool_body_off(fit) <= SPOOL_WHOLE_HEAD_MAX) {
		if (spool_msg_write_whole(msg, fit, env, envlen) == -1)
			goto fail;
		goto written;
	} else {
		if (msg->slot == 0 && spool_msg_place(msg, fit) == -1)
			goto fail;
		if (spool_msg_flush(msg) == -1) {
			logged = true;
			goto fail;
		}
		if (SPOOL_SLOT_LINE + envlen > msg->slot &&
		    spool_msg_rebuild(msg, env, envlen, &op) == -1)
			goto fail;
	}
	op = "write";
	if (spool_head_write(msg->fd, msg->slot, 1, env, envlen, msg->size) ==
	    -1)
		goto fail;
written:
	op = "fsync";
	if (durable && spool_fsync(sp, msg->fd) == -1)
		goto fail;
	op = "close";
	rc = close(msg->fd);
	msg->fd = -1;
	if (rc == -1)
		goto fail;
	spool_close_quiet(msg->srcfd);
	msg->srcfd = -1;
	return 0;
fail:
	if (!logged)
		log_warn("msg=%s spool commit failed op=%s file=tmp/<id>",
		    msg->id, op);
	spool_msg_discard(msg);
	return -1;
}

int
spool_msg_stage(struct spool_msg *msg, const char *env, size_t envlen)
{
	return spool_msg_stage_mode(msg, env, envlen, false);
}

int
spool_sync(struct spool *sp)
{
	int rc, saved;

	pthread_mutex_lock(&sp->sync_lock);
	rc = syncfs(sp->rootfd);
	saved = errno;
	if (rc == -1)
		sp->sync_gen++;
	pthread_mutex_unlock(&sp->sync_lock);
	errno = saved;
	if (rc == 0)
		return 0;
	if (errno == EIO && !atomic_exchange(&sp->suspect, true))
		log_warnx("spool suspect: syncfs failed with EIO; new mail "
		    "gets 451 until holdfast restarts");
	log_warn("spool sync failed op=syncfs dir=%s", sp->dir);
	return -1;
}

bool
spool_msg_is_synced(const struct spool_msg *msg)
{
	struct spool *sp = msg->sp;
	bool ok;

	pthread_mutex_lock(&sp->sync_lock);
	ok = msg->sync_gen == sp->sync_gen;
	pthread_mutex_unlock(&sp->sync_lock);
	return ok;
}

int
spool_msg_publish(struct spool_msg *msg)
{
	struct spool *sp = msg->sp;
	uint64_t ticket;

	if ((ticket = spool_dirsync_rename(sp, sp->fd[SPOOL_TMP], msg->id,
	    msg->dest)) == 0)
		goto fail;
	if (spool_dirsync_wait(sp, msg->dest, ticket) == -1) {
		spool_msg_unpublish(msg);
		return -1;
	}
	free(msg);
	return 0;
fail:
	log_warn("msg=%s spool commit failed op=rename file=%s", msg->id,
	    spool_areas[msg->dest]);
	spool_msg_discard(msg);
	return -1;
}

/* Whether ticket, at or below one a successful spool_dirsync_wait()
 * covered, escaped every failed fsync: 0, or -1 with errno. */
static int
spool_dirsync_check(struct spool *sp, enum spool_area area, uint64_t ticket)
{
	struct spool_dirsync *ds = &sp->dirsync[area];
	int rc = 0;

	pthread_mutex_lock(&ds->lock);
	if (ds->failed >= ticket) {
		errno = ds->failed_errno;
		rc = -1;
	}
	pthread_mutex_unlock(&ds->lock);
	return rc;
}

/* A published-then-failed message: out of its area again, discarded. */
static void
spool_msg_unpublish(struct spool_msg *msg)
{
	struct spool *sp = msg->sp;
	int saved = errno;

	/*
	 * The client gets a 4xx and retries, so the queued copy must go;
	 * whether the rename itself reached the disk is unknown.
	 */
	log_warn("msg=%s spool commit failed op=fsync file=%s", msg->id,
	    spool_areas[msg->dest]);
	if (unlinkat(sp->fd[msg->dest], msg->id, 0) == -1 &&
	    errno != ENOENT)
		log_warn("msg=%s spool cleanup failed op=unlink dir=%s",
		    msg->id, spool_areas[msg->dest]);
	errno = saved;
	spool_msg_discard(msg);
}

size_t
spool_msg_publish_many(struct spool *sp, struct spool_msg **msgs, size_t n,
    int *errs)
{
	uint64_t *tickets, upto[SPOOL_NAREAS] = { 0 };
	int werr[SPOOL_NAREAS] = { 0 };
	size_t i, ok = 0;
	int a;

	if (n == 0)
		return 0;
	tickets = xreallocarray(NULL, n, sizeof(*tickets));
	for (i = 0; i < n; i++) {
		struct spool_msg *msg = msgs[i];

		errs[i] = 0;
		tickets[i] = spool_dirsync_rename(sp, sp->fd[SPOOL_TMP],
		    msg->id, msg->dest);
		if (tickets[i] == 0) {
			errs[i] = errno;
			log_warn("msg=%s spool commit failed op=rename file=%s",
			    msg->id, spool_areas[msg->dest]);
			spool_msg_discard(msg);
			msgs[i] = NULL;
		} else if (tickets[i] > upto[msg->dest])
			upto[msg->dest] = tickets[i];
	}
	/* One directory fsync (or a share of one) per area for them all. */
	for (a = 0; a < SPOOL_NAREAS; a++)
		if (upto[a] != 0 && spool_dirsync_wait(sp, (enum spool_area)a,
		    upto[a]) == -1)
			werr[a] = errno;
	for (i = 0; i < n; i++) {
		struct spool_msg *msg = msgs[i];

		if (msg == NULL)
			continue;
		if (werr[msg->dest] != 0 || spool_dirsync_check(sp, msg->dest,
		    tickets[i]) == -1) {
			errs[i] = werr[msg->dest] != 0 ? werr[msg->dest] :
			    errno;
			errno = errs[i];
			spool_msg_unpublish(msg);
		} else {
			free(msg);
			ok++;
		}
		msgs[i] = NULL;
	}
	free(tickets);
	return ok;
}

int
spool_msg_commit(struct spool_msg *msg, const char *env, size_t envlen)
{
	if (spool_msg_stage_mode(msg, env, envlen, true) == -1)
		return -1;
	return spool_msg_publish(msg);
}

void
spool_msg_abort(struct spool_msg *msg)
{
	if (msg != NULL)
		spool_msg_discard(msg);
}

/*
 * Replace a message's envelope.  In place when it fits: the slot not in
 * use gets it with the next seq and the file is fdatasync'd (a torn write
 * fails its hash and the old slot stays the envelope).  Otherwise the file
 * is rebuilt in tmp/ with larger slots, fsync'd and renamed over the old
 * one, and the area fsync'd.
 */
int
spool_env_write(struct spool *sp, enum spool_area area, const char *id,
    const char *env, size_t envlen)
{
	char name[SPOOL_ID_LEN + sizeof(".e")], *buf;
	const char *op = "open";
	struct spool_slots sl;
	struct stat st;
	int fd, nfd = -1, afd = spool_area_fd(sp, area), rc;
	uint64_t off;
	size_t n;

	if (spool_check_id(id) == -1)
		return -1;
	fd = spool_msg_open(sp, area, id, O_RDWR, &st);
	if (fd == -1)
		goto fail;
	op = "read";
	if (envlen > SPOOL_ENV_MAX) {
		errno = EFBIG;
		goto fail;
	}
	if (spool_slots_read(fd, (uint64_t)st.st_size, &sl, false) == -1)
		goto fail;
	if (SPOOL_SLOT_LINE + envlen <= sl.size) {
		buf = xmalloc(SPOOL_SLOT_LINE + envlen + 1);
		n = spool_slot_format(buf, sl.seq + 1, env, envlen);
		off = SPOOL_HDR_LEN + (uint64_t)(1 - sl.cur) * sl.size;
		op = "write";
		rc = spool_pwrite_all(fd, buf, n, off);
		free(buf);
		if (rc == 0) {
			op = "fsync";
			if ((rc = spool_fsync_mode(sp, fd, true)) == 0) {
				close(fd);
				return 0;
			}
		}
		/*
		 * Failed: readers must keep taking the old slot, not one
		 * that may not be on disk (best effort; after an fsync error
		 * the spool is suspect anyway).
		 */
		rc = errno;
		(void)spool_pwrite_all(fd, spool_zero, SPOOL_SLOT_LINE, off);
		errno = rc;
		goto fail;
	}
	snprintf(name, sizeof(name), "%s.e", id);
	nfd = spool_build(sp->fd[SPOOL_TMP], name, fd, spool_body_off(sl.size),
	    (uint64_t)st.st_size - spool_body_off(sl.size), env, envlen,
	    sl.seq + 1, &op);
	if (nfd == -1)
		goto fail;
	op = "fsync";
	if (spool_fsync(sp, nfd) == -1)
		goto fail_new;
	op = "rename";
	if (renameat(sp->fd[SPOOL_TMP], name, afd, id) == -1)
		goto fail_new;
	close(nfd);
	close(fd);
	op = "fsync-dir";
	if (spool_fsync(sp, afd) == -1) {
		fd = -1;
		goto fail;
	}
	return 0;
fail_new:
	rc = errno;
	close(nfd);
	unlinkat(sp->fd[SPOOL_TMP], name, 0);
	errno = rc;
fail:
	log_warn("msg=%s spool env write failed area=%s op=%s", id,
	    spool_areas[area], op);
	spool_close_quiet(fd);
	return -1;
}

int
spool_env_read(struct spool *sp, enum spool_area area, const char *id,
    char **env, size_t *envlen)
{
	const char *op = "open";
	struct spool_slots sl;
	struct stat st;
	int fd;

	if (spool_check_id(id) == -1)
		return -1;
	fd = spool_msg_open(sp, area, id, O_RDONLY, &st);
	if (fd == -1)
		goto fail;
	op = "read";
	if (spool_slots_read(fd, (uint64_t)st.st_size, &sl, true) == -1)
		goto fail;
	close(fd);
	*env = sl.text;
	*envlen = sl.len;
	return 0;
fail:
	log_warn("msg=%s spool env read failed area=%s op=%s", id,
	    spool_areas[area], op);
	spool_close_quiet(fd);
	return -1;
}

int
spool_body_open(struct spool *sp, enum spool_area area, const char *id)
{
	struct stat st;
	uint32_t slot;
	int fd;

	if (spool_check_id(id) == -1)
		return -1;
	if ((fd = spool_msg_open(sp, area, id, O_RDONLY, &st)) == -1 ||
	    spool_hdr_read(fd, &slot) == -1)
		goto fail;
	if ((uint64_t)st.st_size < spool_body_off(slot)) {
		errno = EBADMSG;
		goto fail;
	}
	if (lseek(fd, (off_t)spool_body_off(slot), SEEK_SET) == -1)
		goto fail;
	return fd;
fail:
	log_warn("msg=%s spool body open failed area=%s", id,
	    spool_areas[area]);
	spool_close_quiet(fd);
	return -1;
}

/* A name for name in quarantine/: itself, or name.N if that is taken;
 * -1 if none of 1000 is free. */
static int
spool_quarantine_name(struct spool *sp, const char *name, char *to,
    size_t tolen)
{
	struct stat st;
	int i, n;

	for (i = 0; i < 1000; i++) {
		if (i == 0)
			n = snprintf(to, tolen, "%s", name);
		else
			n = snprintf(to, tolen, "%.240s.%d", name, i);
		if (n < 0 || (size_t)n >= tolen)
			continue;
		if (fstatat(sp->fd[SPOOL_QUARANTINE], to, &st,
		    AT_SYMLINK_NOFOLLOW) == -1 && errno == ENOENT)
			return 0;
	}
	return -1;
}

int
spool_move(struct spool *sp, const char *id, enum spool_area from,
    enum spool_area to)
{
	const char *op = "rename";
	char qname[NAME_MAX + 1];
	int fromfd, tofd;

	if (spool_check_id(id) == -1)
		return -1;
	util_copy(qname, sizeof(qname), id);
	fromfd = spool_area_fd(sp, from);
	tofd = spool_area_fd(sp, to);
	/* quarantine/ keeps what it has: a clash gets the next free name
	 * (the index does not keep new IDs away from it) */
	if (to == SPOOL_QUARANTINE) {
		if (spool_quarantine_name(sp, id, qname, sizeof(qname)) == -1) {
			errno = EEXIST;
			goto fail;
		}
		if (strcmp(qname, id) != 0)
			log_warnx("msg=%s quarantine name taken, quarantined as "
			    "%s", id, qname);
	}
	if (spool_rename_new(sp, fromfd, id, tofd, qname) == -1)
		goto fail;
	op = "fsync-dest";
	if (spool_fsync(sp, tofd) == -1)
		goto fail;
	op = "fsync-source";
	if (spool_fsync(sp, fromfd) == -1)
		goto fail;
	return 0;
fail:
	log_warn("msg=%s spool move failed from=%s to=%s op=%s", id,
	    spool_areas[from], spool_areas[to], op);
	return -1;
}

int
spool_delete(struct spool *sp, enum spool_area area, const char *id)
{
	const char *op = "unlink";
	uint64_t ticket;

	if (spool_check_id(id) == -1)
		return -1;
	(void)spool_area_fd(sp, area);	/* range check */
	/* Concurrent deletes (the drain's, one per delivered message) and
	 * commits share the area's fsyncs. */
	if ((ticket = spool_dirsync_unlink(sp, area, id)) == 0)
		goto fail;
	op = "fsync";
	if (spool_dirsync_wait(sp, area, ticket) == -1)
		goto fail;
	return 0;
fail:
	log_warn("msg=%s spool delete failed area=%s op=%s", id,
	    spool_areas[area], op);
	return -1;
}

size_t
spool_move_many(struct spool *sp, const char *const *ids, size_t n,
    enum spool_area from, enum spool_area to, int *errs)
{
	const char *op = "fsync-dest";
	int fromfd = spool_area_fd(sp, from), tofd = spool_area_fd(sp, to);
	size_t i, moved = 0;

	for (i = 0; i < n; i++) {
		errs[i] = 0;
		if (spool_check_id(ids[i]) == -1 ||
		    spool_rename_new(sp, fromfd, ids[i], tofd, ids[i]) == -1) {
			errs[i] = errno;
			log_warn("msg=%s spool move failed from=%s to=%s "
			    "op=rename", ids[i], spool_areas[from],
			    spool_areas[to]);
		} else
			moved++;
	}
	if (moved == 0)
		return 0;
	if (spool_fsync(sp, tofd) == 0) {
		op = "fsync-source";
		if (spool_fsync(sp, fromfd) == 0)
			return moved;
	}
	/* every rename the failed fsync covered fails with it */
	for (i = 0; i < n; i++)
		if (errs[i] == 0) {
			errs[i] = errno != 0 ? errno : EIO;
			log_warnx("msg=%s spool move failed from=%s to=%s op=%s",
			    ids[i], spool_areas[from], spool_areas[to], op);
		}
	return 0;
}

size_t
spool_delete_many(struct spool *sp, const enum spool_area *areas,
    const char *const *ids, size_t n, int *errs)
{
	bool renamed[SPOOL_NAREAS] = { false };
	size_t i, a, deleted = 0;
	int err;

	for (i = 0; i < n; i++) {
		errs[i] = 0;
		if (spool_check_id(ids[i]) == -1 ||
		    unlinkat(spool_area_fd(sp, areas[i]), ids[i], 0) == -1) {
			errs[i] = errno;
			log_warn("msg=%s spool delete failed area=%s op=unlink",
			    ids[i], spool_areas[areas[i]]);
		} else
			renamed[areas[i]] = true;
	}
	for (a = 0; a < SPOOL_NAREAS; a++) {
		if (!renamed[a] || spool_fsync(sp, spool_area_fd(sp,
		    (enum spool_area)a)) == 0)
			continue;
		err = errno != 0 ? errno : EIO;
		for (i = 0; i < n; i++)
			if (errs[i] == 0 && areas[i] == (enum spool_area)a) {
				errs[i] = err;
				log_warnx("msg=%s spool delete failed area=%s "
				    "op=fsync", ids[i], spool_areas[a]);
			}
	}
	for (i = 0; i < n; i++)
		if (errs[i] == 0)
			deleted++;
	return deleted;
}

/* How name is shown in log lines: as is if it is an ID, else escaped. */
static const char *
spool_log_name(const char *name, char *buf, size_t buflen)
{
	if (spool_is_id(name))
		return name;
	return log_escape(name, strlen(name), buf, buflen);
}

/* Open a fresh stream over the area's directory (own offset). */
static DIR *
spool_opendir(struct spool *sp, enum spool_area area)
{
	DIR *d;
	int fd;

	fd = openat(sp->fd[area], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1 || (d = fdopendir(fd)) == NULL) {
		log_warn("spool scan failed op=opendir dir=%s/%s", sp->dir,
		    spool_areas[area]);
		spool_close_quiet(fd);
		return NULL;
	}
	return d;
}

/* Move <area>/<name> to quarantine/, under a new name if it clashes. */
static void
spool_quarantine(struct spool *sp, enum spool_area area, const char *name,
    const char *reason)
{
	char to[NAME_MAX + 1], esc[LOG_ESCAPE_MAX];

	if (spool_quarantine_name(sp, name, to, sizeof(to)) == -1) {
		log_warnx("msg=%s quarantine failed area=%s reason=%s "
		    "error=\"no free name\"",
		    spool_log_name(name, esc, sizeof(esc)), spool_areas[area],
		    reason);
		return;
	}
	if (renameat(sp->fd[area], name, sp->fd[SPOOL_QUARANTINE], to) == -1) {
		log_warn("msg=%s quarantine failed area=%s reason=%s op=rename",
		    spool_log_name(name, esc, sizeof(esc)), spool_areas[area],
		    reason);
		return;
	}
	log_warnx("msg=%s quarantined area=%s reason=%s%s%s",
	    spool_log_name(name, esc, sizeof(esc)), spool_areas[area], reason,
	    strcmp(to, name) == 0 ? "" : " as=",
	    strcmp(to, name) == 0 ? "" : to);
}

/*
 * A directory tmp/<id>.<area> is an old-format message whose conversion
 * (spool_convert) was not confirmed on disk: if <area>/<id> is a message
 * file the conversion stands and it may go; if <area>/<id> is gone, it is
 * put back to be converted again.  true if it must stay (handled here).
 */
static bool
spool_tmp_unconfirmed(struct spool *sp, const char *name)
{
	static const enum spool_area areas[] = { SPOOL_QUEUE, SPOOL_HOLD,
		SPOOL_DEAD };
	char id[SPOOL_ID_LEN + 1];
	struct stat st;
	size_t i;
	int rc;

	if (strlen(name) <= SPOOL_ID_LEN || name[SPOOL_ID_LEN] != '.')
		return false;
	memcpy(id, name, SPOOL_ID_LEN);
	id[SPOOL_ID_LEN] = '\0';
	if (!spool_is_id(id))
		return false;
	for (i = 0; i < UTIL_ARRAY_LEN(areas); i++)
		if (strcmp(name + SPOOL_ID_LEN + 1, spool_areas[areas[i]]) == 0)
			break;
	if (i == UTIL_ARRAY_LEN(areas))
		return false;
	rc = fstatat(sp->fd[areas[i]], id, &st, AT_SYMLINK_NOFOLLOW);
	if (rc == 0 && S_ISREG(st.st_mode))
		return false;
	if (rc == -1 && errno == ENOENT && renameat(sp->fd[SPOOL_TMP], name,
	    sp->fd[areas[i]], id) == 0) {
		if (spool_fsync(sp, sp->fd[areas[i]]) == -1)
			log_warn("msg=%s spool scan failed op=fsync area=%s",
			    id, spool_areas[areas[i]]);
		log_warnx("msg=%s restored area=%s "
		    "reason=unconfirmed-conversion", id,
		    spool_areas[areas[i]]);
	} else
		log_warn("msg=%s spool purge skipped dir=tmp "
		    "reason=unconfirmed-conversion", id);
	return true;
}

/* Remove everything in tmp/: receipts a crash or restart interrupted. */
static int
spool_scan_tmp(struct spool *sp)
{
	char esc[LOG_ESCAPE_MAX];
	struct dirent *de;
	struct stat st;
	int fd = sp->fd[SPOOL_TMP];
	DIR *d;

	if ((d = spool_opendir(sp, SPOOL_TMP)) == NULL)
		return -1;
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISDIR(st.st_mode)) {
			if (spool_tmp_unconfirmed(sp, de->d_name))
				continue;
			if (spool_rmtree(fd, de->d_name) == -1) {
				log_warn("msg=%s spool purge failed dir=tmp",
				    spool_log_name(de->d_name, esc,
				    sizeof(esc)));
				continue;
			}
		} else if (unlinkat(fd, de->d_name, 0) == -1 &&
		    errno != ENOENT) {
			log_warn("msg=%s spool purge failed dir=tmp",
			    spool_log_name(de->d_name, esc, sizeof(esc)));
			continue;
		}
		log_info("msg=%s removed reason=interrupted",
		    spool_log_name(de->d_name, esc, sizeof(esc)));
	}
	if (errno != 0) {
		log_warn("spool scan failed op=readdir dir=%s/tmp", sp->dir);
		closedir(d);
		return -1;
	}
	closedir(d);
	if (spool_fsync(sp, fd) == -1)
		log_warn("spool scan failed op=fsync dir=%s/tmp", sp->dir);
	return 0;
}

/*
 * Open a file of an old-format message directory: -1 with EBADMSG if it
 * is missing or not a regular file (quarantine), other errno if it could
 * not be opened now (leave it).
 */
static int
spool_old_open(int dfd, const char *name, struct stat *st)
{
	int fd;

	fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC);
	if (fd == -1) {
		if (errno == ENOENT || errno == ELOOP)
			errno = EBADMSG;
		return -1;
	}
	if (fstat(fd, st) == -1) {
		spool_close_quiet(fd);
		return -1;
	}
	if (!S_ISREG(st->st_mode)) {
		close(fd);
		errno = EBADMSG;
		return -1;
	}
	return fd;
}

/*
 * Convert <area>/<name>, a message directory of the old format (body and
 * env files), into a message file: built in tmp/ and fsync'd, then
 * exchanged with the directory in one step (RENAME_EXCHANGE), so that a
 * crash leaves either the old directory in its area or the new file there
 * and the old directory in tmp/, which the next start purges.  0, or -1
 * with *why set (quarantine it) or NULL (logged, left alone).
 */
static int
spool_convert(struct spool *sp, enum spool_area area, const char *name,
    const char **why)
{
	char tname[SPOOL_ID_LEN + sizeof(".quarantine")], *env = NULL;
	const char *op = "open";
	int dfd, bfd = -1, efd = -1, nfd = -1, tfd = sp->fd[SPOOL_TMP];
	struct stat st;
	size_t len = 0;
	ssize_t n;

	/* tmp/<id>.<area>: the new file, then (exchanged) the old directory */
	snprintf(tname, sizeof(tname), "%s.%s", name, spool_areas[area]);
	dfd = openat(sp->fd[area], name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	if (dfd == -1)
		goto fail;
	if ((efd = spool_old_open(dfd, "env", &st)) == -1) {
		if (errno == EBADMSG)
			*why = "missing-env";
		goto fail;
	}
	if ((bfd = spool_old_open(dfd, "body", &st)) == -1) {
		if (errno == EBADMSG)
			*why = "missing-body";
		goto fail;
	}
	op = "read";
	env = xmalloc(SPOOL_ENV_MAX + 1);
	while (len <= SPOOL_ENV_MAX) {
		n = read(efd, env + len, SPOOL_ENV_MAX + 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			goto fail;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > SPOOL_ENV_MAX) {
		*why = "unreadable";
		goto fail;
	}
	nfd = spool_build(tfd, tname, bfd, 0, (uint64_t)st.st_size, env, len,
	    1, &op);
	if (nfd == -1)
		goto fail;
	op = "fsync";
	if (spool_fsync(sp, nfd) == -1)
		goto fail;
	op = "exchange";
	if (renameat2(tfd, tname, sp->fd[area], name, RENAME_EXCHANGE) == -1) {
		if (errno == EINVAL || errno == ENOSYS)
			*why = "old-format";
		unlinkat(tfd, tname, 0);
		goto fail;
	}
	op = "fsync-dir";
	if (spool_fsync(sp, sp->fd[area]) == -1 || spool_fsync(sp, tfd) == -1)
		/* Not known to be on disk: the old directory stays in tmp/
		 * for the next start to check (spool_tmp_unconfirmed). */
		log_warn("msg=%s spool convert unconfirmed area=%s op=%s",
		    name, spool_areas[area], op);
	else if (spool_rmtree(tfd, tname) == -1)
		log_warn("msg=%s spool cleanup failed op=rmdir dir=tmp", name);
	log_info("msg=%s converted area=%s from=directory", name,
	    spool_areas[area]);
	free(env);
	close(nfd);
	close(bfd);
	close(efd);
	close(dfd);
	return 0;
fail:
	if (*why == NULL)
		log_warn("msg=%s spool convert failed area=%s op=%s", name,
		    spool_areas[area], op);
	if (nfd != -1) {
		close(nfd);
		unlinkat(tfd, tname, 0);
	}
	free(env);
	spool_close_quiet(bfd);
	spool_close_quiet(efd);
	spool_close_quiet(dfd);
	return -1;
}

/*
 * Check that <area>/<name> is a message file (converting an old-format
 * message directory): 0 if it is; -1 with *why set if it is malformed; -1
 * with *why NULL (logged) if it could not be checked, e.g. EMFILE, which is
 * no reason to quarantine it.  Its content is checked by the reader.
 */
static int
spool_scan_check(struct spool *sp, enum spool_area area, const char *name,
    const char **why)
{
	struct stat st;

	*why = NULL;
	if (!spool_is_id(name)) {
		*why = "bad-name";
		return -1;
	}
	if (fstatat(sp->fd[area], name, &st, AT_SYMLINK_NOFOLLOW) == -1) {
		log_warn("msg=%s spool scan skipped area=%s", name,
		    spool_areas[area]);
		return -1;
	}
	if (S_ISDIR(st.st_mode))
		return spool_convert(sp, area, name, why);
	if (!S_ISREG(st.st_mode)) {
		*why = "not-a-file";
		return -1;
	}
	if (st.st_nlink != 1) {
		*why = "linked";
		return -1;
	}
	return 0;
}

int
spool_scan(struct spool *sp,
    int (*cb)(void *arg, enum spool_area area, const char *id), void *arg)
{
	static const enum spool_area areas[] = { SPOOL_QUEUE, SPOOL_HOLD,
		SPOOL_DEAD };
	const char *why;
	struct dirent *de;
	int count = 0, moved;
	size_t i;
	DIR *d;

	if (spool_scan_tmp(sp) == -1)
		return -1;
	for (i = 0; i < UTIL_ARRAY_LEN(areas); i++) {
		if ((d = spool_opendir(sp, areas[i])) == NULL)
			return -1;
		moved = 0;
		while ((errno = 0, de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			if (spool_scan_check(sp, areas[i], de->d_name, &why) ==
			    0) {
				if (cb(arg, areas[i], de->d_name) == 0) {
					count++;
					continue;
				}
				why = "unreadable";
			} else if (why == NULL)
				continue;	/* could not check: logged */
			spool_quarantine(sp, areas[i], de->d_name, why);
			moved = 1;
		}
		if (errno != 0) {
			log_warn("spool scan failed op=readdir dir=%s/%s",
			    sp->dir, spool_areas[areas[i]]);
			closedir(d);
			return -1;
		}
		closedir(d);
		if (moved && (spool_fsync(sp, sp->fd[SPOOL_QUARANTINE]) == -1 ||
		    spool_fsync(sp, sp->fd[areas[i]]) == -1))
			log_warn("spool scan failed op=fsync area=%s",
			    spool_areas[areas[i]]);
	}
	return count;
}

int
spool_scan_list(struct spool *sp,
    void (*cb)(void *arg, enum spool_area area, const char *name), void *arg)
{
	static const enum spool_area areas[] = { SPOOL_QUEUE, SPOOL_HOLD,
		SPOOL_DEAD };
	struct dirent *de;
	size_t i;
	DIR *d;

	if (spool_scan_tmp(sp) == -1)
		return -1;
	for (i = 0; i < UTIL_ARRAY_LEN(areas); i++) {
		if ((d = spool_opendir(sp, areas[i])) == NULL)
			return -1;
		while ((errno = 0, de = readdir(d)) != NULL)
			if (strcmp(de->d_name, ".") != 0 &&
			    strcmp(de->d_name, "..") != 0)
				cb(arg, areas[i], de->d_name);
		if (errno != 0) {
			log_warn("spool scan failed op=readdir dir=%s/%s",
			    sp->dir, spool_areas[areas[i]]);
			closedir(d);
			return -1;
		}
		closedir(d);
	}
	return 0;
}

int
spool_scan_one(struct spool *sp, enum spool_area area, const char *name,
    int (*cb)(void *arg, enum spool_area area, const char *id), void *arg)
{
	const char *why;

	if (spool_scan_check(sp, area, name, &why) == 0) {
		if (cb(arg, area, name) == 0)
			return 0;
		why = "unreadable";
	} else if (why == NULL)
		return -1;	/* could not check: logged */
	spool_quarantine(sp, area, name, why);
	if (spool_fsync(sp, sp->fd[SPOOL_QUARANTINE]) == -1 ||
	    spool_fsync(sp, sp->fd[area]) == -1)
		log_warn("spool scan failed op=fsync area=%s",
		    spool_areas[area]);
	return -1;
}

int64_t
spool_free_bytes(struct spool *sp)
{
	struct statvfs vfs;
	unsigned long long b;

	if (fstatvfs(sp->rootfd, &vfs) == -1) {
		log_warn("spool statvfs failed dir=%s", sp->dir);
		return -1;
	}
	b = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
	return b > INT64_MAX ? INT64_MAX : (int64_t)b;
}
