#!/usr/bin/python3
"""What accepting a message costs the daemon in the syscalls an accepted
message used to pay for one by one (bench/run's CPU per message): with
the index loaded, a new message's ID is not looked up in the spool's
areas (four fstatat each before), message and session IDs come from a
pool of kernel random octets (two getrandom each before), MAIL's
min_free check does not statfs per transaction (one each before), and a
small message is written with one pwritev (no lseek; one before).
300 messages over 30 sessions, primary down, counted by an LD_PRELOAD
shim; each message queued once and byte-identical after the primary
returns.  Only the daemon's own calls count, not their timing."""
import concurrent.futures
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

N = 300
SESSIONS = 30

# Counters in a shared file the test reads while the daemon runs.
SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

enum { C_FSTATAT, C_GETRANDOM, C_STATFS, C_LSEEK, C_N };
static volatile long *cnt;

static void count(int k)
{
	if (cnt == NULL) {
		const char *p = getenv("HF_COUNT_FILE");
		int fd;
		void *m;

		if (p == NULL || (fd = open(p, O_RDWR | O_CLOEXEC)) == -1)
			return;
		m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
		    0);
		close(fd);
		if (m == MAP_FAILED)
			return;
		cnt = m;
	}
	__atomic_add_fetch(&cnt[k], 1, __ATOMIC_SEQ_CST);
}

#define REAL(name) static __typeof__(name) *real; \
	if (!real) real = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

int fstatat(int d, const char *p, struct stat *st, int f)
{ REAL(fstatat); count(C_FSTATAT); return real(d, p, st, f); }
int fstatat64(int d, const char *p, struct stat64 *st, int f)
{ REAL(fstatat64); count(C_FSTATAT); return real(d, p, st, f); }
ssize_t getrandom(void *b, size_t n, unsigned f)
{ REAL(getrandom); count(C_GETRANDOM); return real(b, n, f); }
int fstatvfs(int fd, struct statvfs *v)
{ REAL(fstatvfs); count(C_STATFS); return real(fd, v); }
int fstatvfs64(int fd, struct statvfs64 *v)
{ REAL(fstatvfs64); count(C_STATFS); return real(fd, v); }
int fstatfs(int fd, struct statfs *v)
{ REAL(fstatfs); count(C_STATFS); return real(fd, v); }
int fstatfs64(int fd, struct statfs64 *v)
{ REAL(fstatfs64); count(C_STATFS); return real(fd, v); }
off_t lseek(int fd, off_t o, int w)
{ REAL(lseek); count(C_LSEEK); return real(fd, o, w); }
off64_t lseek64(int fd, off64_t o, int w)
{ REAL(lseek64); count(C_LSEEK); return real(fd, o, w); }
"""
NAMES = ("fstatat", "getrandom", "statfs", "lseek")
# per accepted message, at most (before: 4, 2, 1, 1): 256 random octets
# serve 16 messages' and sessions' IDs; statfs is bounded by time below
LIMITS = {"fstatat": 0.05, "getrandom": 0.1, "lseek": 0.02}


def counts(path):
    with open(path, "rb") as f:
        raw = f.read(8 * len(NAMES))
    return {n: int.from_bytes(raw[8 * i:8 * i + 8], sys.byteorder)
            for i, n in enumerate(NAMES)}


def main(env):
    shim = hf.compile_c(env, SHIM, "countshim.so",
                        ["-shared", "-fPIC", "-ldl"])
    cfile = env.path("counts")
    with open(cfile, "wb") as f:
        f.write(b"\0" * 4096)
    port = hf.free_port()           # the primary: down until the end
    d = env.daemon(primary_port=port)
    e = {"HF_COUNT_FILE": cfile}
    e.update(hf.preload_env([shim]))
    d.start(env=e)
    hf.wait_until(lambda: d.grep(r"queue loaded"), 20, "queue loaded")
    # a few messages first: start-up and first-use costs are not counted
    sent = [hf.send_ok(d.port, "warm-%d" % i) for i in range(3)]
    c0 = counts(cfile)
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(SESSIONS) as ex:
        sent += list(ex.map(lambda i: hf.send_ok(d.port, "acc-%d" % i),
                            range(N)))
    elapsed = time.monotonic() - t0
    c1 = counts(cfile)
    hf.check(len(d.queue_ids()) == N + 3, "%d queued, want %d"
             % (len(d.queue_ids()), N + 3))
    per = {n: (c1[n] - c0[n]) / N for n in NAMES}
    print("per accepted message: " + ", ".join(
        "%s %.3f" % (n, per[n]) for n in NAMES))
    for n, lim in LIMITS.items():
        hf.check(per[n] <= lim, "%s: %.3f per message, at most %.2f"
                 % (n, per[n], lim))
    # one per 100 ms of MAILs and one per second's tick, whatever the
    # build's speed (before: one per MAIL)
    most = int(elapsed * 11) + 5
    hf.check(c1["statfs"] - c0["statfs"] <= min(most, N // 2),
             "statfs: %d in %.1f s for %d messages, at most %d"
             % (c1["statfs"] - c0["statfs"], elapsed, N, min(most, N // 2)))
    hf.check(c1["fstatat"] + c1["getrandom"] > 0 or c1["statfs"] > 0,
             "the shim counted nothing: not preloaded?")
    sink = env.sink(port=port).start()
    hf.verify_deliveries(sink, sent, timeout=60)


hf.run(main)
