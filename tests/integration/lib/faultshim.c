/*
 * faultshim: LD_PRELOAD fault injection for the integration tests.
 *
 * Environment:
 *   HOLDFAST_FAULT       op:errno[:count][,op:errno[:count]...]
 *                        op is one of fsync, fdatasync, write, rename
 *                        ("write" covers write, pwrite, pwrite64, writev,
 *                        pwritev, pwritev64;
 *                        "rename" covers rename, renameat, renameat2);
 *                        errno is a name (EIO, ENOSPC, EDQUOT, EROFS, ...)
 *                        or a number; count limits how many calls fail
 *                        (default: every call while armed).
 *                        errno may instead be DELAY<ms> (e.g.
 *                        "fsync:DELAY2000"): while armed, the call sleeps
 *                        <ms> milliseconds and then runs normally (and
 *                        succeeds unless the real call fails); count
 *                        limits how many calls are delayed.
 *   HOLDFAST_FAULT_FILE  the trigger: faults are injected only while this
 *                        path exists, so a test arms and disarms the shim
 *                        at run time by creating and removing the file.
 *
 * Write faults hit only regular files and never fds 0-2, so sockets and
 * the log on stderr keep working while the spool's disk "fails".  Calls
 * glibc makes internally (fwrite, fclose flushing) bypass the PLT and
 * are not intercepted.  Each injected failure is reported on stderr as
 * "faultshim: OP fd=N -> ERRNO", each delay as "faultshim: OP fd=N
 * delay MS ms" before the sleep, so tests can tell the fault fired.
 *
 * Not sanitised: it is loaded into the ASan daemon, which must list
 * libasan first in LD_PRELOAD (see preload_env() in holdfast.py).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum shim_op { OP_FSYNC, OP_FDATASYNC, OP_WRITE, OP_RENAME, OP_N };

static const char *const shim_op_names[OP_N] = {
	[OP_FSYNC] = "fsync",
	[OP_FDATASYNC] = "fdatasync",
	[OP_WRITE] = "write",
	[OP_RENAME] = "rename",
};

static const struct {
	const char *name;
	int num;
} shim_errnos[] = {
	{ "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EDQUOT", EDQUOT },
	{ "EROFS", EROFS }, { "EFBIG", EFBIG }, { "EPERM", EPERM },
	{ "EACCES", EACCES }, { "EBADF", EBADF }, { "EINTR", EINTR },
	{ "EAGAIN", EAGAIN }, { "ENOMEM", ENOMEM }, { "EEXIST", EEXIST },
	{ "EXDEV", EXDEV }, { "ENOENT", ENOENT }, { "EINVAL", EINVAL },
};

struct shim_rule {
	int active;
	int err;
	long delay_ms;	/* > 0: sleep this long, then do the real call */
	long count;	/* < 0: unlimited; decremented atomically */
};

static struct shim_rule shim_rules[OP_N];
static const char *shim_trigger;
static int shim_ready;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev64)(int, const struct iovec *, int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_renameat2)(int, const char *, int, const char *,
    unsigned int);

static int
shim_errno_parse(const char *s)
{
	size_t i;

	if (*s >= '0' && *s <= '9')
		return atoi(s);
	for (i = 0; i < sizeof(shim_errnos) / sizeof(shim_errnos[0]); i++)
		if (strcmp(s, shim_errnos[i].name) == 0)
			return shim_errnos[i].num;
	return EIO;
}

static void
shim_parse(const char *spec)
{
	char buf[512], *p, *item, *f1, *f2, *f3;
	int i;

	snprintf(buf, sizeof(buf), "%s", spec);
	p = buf;
	while ((item = strsep(&p, ",")) != NULL) {
		f1 = strsep(&item, ":");
		f2 = strsep(&item, ":");
		f3 = strsep(&item, ":");
		if (f1 == NULL || f2 == NULL)
			continue;
		for (i = 0; i < OP_N; i++) {
			if (strcmp(f1, shim_op_names[i]) != 0)
				continue;
			shim_rules[i].active = 1;
			if (strncmp(f2, "DELAY", 5) == 0) {
				shim_rules[i].err = 0;
				shim_rules[i].delay_ms = atol(f2 + 5);
			} else {
				shim_rules[i].err = shim_errno_parse(f2);
				shim_rules[i].delay_ms = 0;
			}
			shim_rules[i].count = f3 ? atol(f3) : -1;
		}
	}
}

__attribute__((constructor)) static void
shim_init(void)
{
	const char *spec;

	real_write = dlsym(RTLD_NEXT, "write");
	real_pwrite = dlsym(RTLD_NEXT, "pwrite");
	real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
	real_writev = dlsym(RTLD_NEXT, "writev");
	real_pwritev = dlsym(RTLD_NEXT, "pwritev");
	real_pwritev64 = dlsym(RTLD_NEXT, "pwritev64");
	real_fsync = dlsym(RTLD_NEXT, "fsync");
	real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
	real_rename = dlsym(RTLD_NEXT, "rename");
	real_renameat = dlsym(RTLD_NEXT, "renameat");
	real_renameat2 = dlsym(RTLD_NEXT, "renameat2");
	if ((spec = getenv("HOLDFAST_FAULT")) != NULL)
		shim_parse(spec);
	shim_trigger = getenv("HOLDFAST_FAULT_FILE");
	__atomic_store_n(&shim_ready, 1, __ATOMIC_RELEASE);
}

static void
shim_report(enum shim_op op, int fd, int err, long delay_ms)
{
	char line[128];
	int n;

	if (delay_ms > 0)
		n = snprintf(line, sizeof(line), "faultshim: %s fd=%d delay "
		    "%ld ms\n", shim_op_names[op], fd, delay_ms);
	else
		n = snprintf(line, sizeof(line), "faultshim: %s fd=%d -> %s\n",
		    shim_op_names[op], fd, strerror(err));
	if (n > 0 && real_write != NULL)
		(void)real_write(2, line, (size_t)n);
}

/* Sleep ms milliseconds, resuming after signals. */
static void
shim_sleep(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/*
 * Should this call fail?  Sets errno and returns 1 if so.  A DELAY rule
 * sleeps here and returns 0: the caller then makes the real call.
 */
static int
shim_fire(enum shim_op op, int fd)
{
	struct shim_rule *r = &shim_rules[op];
	struct stat st;
	long left;
	int saved = errno;

	if (!__atomic_load_n(&shim_ready, __ATOMIC_ACQUIRE) || !r->active)
		return 0;
	if (shim_trigger == NULL || access(shim_trigger, F_OK) != 0) {
		errno = saved;
		return 0;
	}
	if (op == OP_WRITE) {
		if (fd <= 2 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
			errno = saved;
			return 0;
		}
	}
	if (r->count >= 0) {
		left = __atomic_load_n(&r->count, __ATOMIC_ACQUIRE);
		do {
			if (left <= 0) {
				errno = saved;
				return 0;
			}
		} while (!__atomic_compare_exchange_n(&r->count, &left,
		    left - 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
	}
	shim_report(op, fd, r->err, r->delay_ms);
	if (r->delay_ms > 0) {
		shim_sleep(r->delay_ms);
		errno = saved;
		return 0;
	}
	errno = r->err;
	return 1;
}

ssize_t
write(int fd, const void *buf, size_t n)
{
	if (real_write == NULL)
		real_write = dlsym(RTLD_NEXT, "write");
	if (shim_fire(OP_WRITE, fd))
		return -1;
	return real_write(fd, buf, n);
}

ssize_t
pwrite(int fd, const void *buf, size_t n, off_t off)
{
	if (real_pwrite == NULL)
		real_pwrite = dlsym(RTLD_NEXT, "pwrite");
	if (shim_fire(OP_WRITE, fd))
		return -1;
	return real_pwrite(fd, buf, n, off);
}

ssize_t
pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	if (real_pwrite64 == NULL)
		real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
	if (shim_fire(OP_WRITE, fd))
		return -1;
	return real_pwrite64(fd, buf, n, off);
}

ssize_t
writev(int fd, const struct iovec *iov, int cnt)
{
	if (real_writev == NULL)
		real_writev = dlsym(RTLD_NEXT, "writev");
	if (shim_fire(OP_WRITE, fd))
		return -1;
	return real_writev(fd, iov, cnt);
}

ssize_t
pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	if (real_pwritev == NULL)
		real_pwritev = dlsym(RTLD_NEXT, "pwritev");
	if (shim_fire(OP_WRITE, fd))
		return -1;
	return real_pwritev(fd, iov, cnt, off);
}

ssize_t
pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
	if (real_pwritev64 == NULL)
		real_pwritev64 = dlsym(RTLD_NEXT, "pwritev64");
	if (shim_fire(OP_WRITE, fd))
		return -1;
	return real_pwritev64(fd, iov, cnt, off);
}

int
fsync(int fd)
{
	if (real_fsync == NULL)
		real_fsync = dlsym(RTLD_NEXT, "fsync");
	if (shim_fire(OP_FSYNC, fd))
		return -1;
	return real_fsync(fd);
}

int
fdatasync(int fd)
{
	if (real_fdatasync == NULL)
		real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
	if (shim_fire(OP_FDATASYNC, fd))
		return -1;
	return real_fdatasync(fd);
}

int
rename(const char *from, const char *to)
{
	if (real_rename == NULL)
		real_rename = dlsym(RTLD_NEXT, "rename");
	if (shim_fire(OP_RENAME, -1))
		return -1;
	return real_rename(from, to);
}

int
renameat(int dfd1, const char *from, int dfd2, const char *to)
{
	if (real_renameat == NULL)
		real_renameat = dlsym(RTLD_NEXT, "renameat");
	if (shim_fire(OP_RENAME, -1))
		return -1;
	return real_renameat(dfd1, from, dfd2, to);
}

int
renameat2(int dfd1, const char *from, int dfd2, const char *to,
    unsigned int flags)
{
	if (real_renameat2 == NULL)
		real_renameat2 = dlsym(RTLD_NEXT, "renameat2");
	if (shim_fire(OP_RENAME, -1))
		return -1;
	return real_renameat2(dfd1, from, dfd2, to, flags);
}
