#!/usr/bin/python3
"""A failed queue/ fsync after a commit's rename is never answered 250, and
the index follows a move whose fsync failed after its rename.

The kernel reports a directory's writeback error once per open file
description: whoever fsyncs a shared descriptor first takes the error, and
the next fsync through it succeeds.  A shim built here emulates that: when
armed, the first rename of a commit from tmp/ into queue/ marks a write
error on every descriptor open on queue/ at that moment (each one's next
fsync fails with EIO, once), then sleeps 3 s inside the rename.

Message A sits in queue/ (the primary is down).  Client B sends a message;
while B's commit sleeps after its rename, the operator holds A: the move
renames A into hold/ and fsyncs queue/, taking the error from the
descriptor it shares.

  - B's final dot gets 451 4.3.0, not 250: the group commit syncs queue/
    through a descriptor of its own, so the error is still there for it
    (before the fix it shared the area's descriptor and answered 250 for
    a rename whose write-back had failed).  B is not left in queue/.
  - the hold reports failure (its fsync failed), but A is in hold/ on
    disk, and the index says so too: "holdfastctl status" counts it held,
    and the log says the index followed (before the fix the index kept A in
    queue/ until a restart).
  - after a restart (spool suspect cleared) A is still held and new mail
    is accepted.

Part 2 (first): the primary refuses a message; its move to dead/ renames,
then the fsync of dead/ fails.  The index follows the disk: holdfastctl
shows it dead and lists it under dead (before the fix the index kept it
queued while its files were in dead/)."""
import json
import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAXFD 4096
static int pending[MAXFD];
static int fired;

static void say(const char *line)
{
	ssize_t (*w)(int, const void *, size_t) = dlsym(RTLD_NEXT, "write");
	(void)w(2, line, strlen(line));
}

static int same_dir(int fd, const char *path)
{
	struct stat a, b;

	return path != NULL && fstat(fd, &a) == 0 && stat(path, &b) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* After a rename (a commit's is renameat2 RENAME_NOREPLACE). */
static int renamed(int rc, int d1, int d2, const char *b)
{
	const char *trig = getenv("HF_DS_FILE");
	char line[128];
	int fd, n = 0;

	if (rc == 0 && trig != NULL && access(trig, F_OK) == 0 &&
	    !__atomic_exchange_n(&fired, 1, __ATOMIC_SEQ_CST) &&
	    same_dir(d1, getenv("HF_DS_TMP")) &&
	    same_dir(d2, getenv("HF_DS_QUEUE"))) {
		for (fd = 3; fd < MAXFD; fd++)
			if (same_dir(fd, getenv("HF_DS_QUEUE"))) {
				__atomic_store_n(&pending[fd], 1,
				    __ATOMIC_SEQ_CST);
				n++;
			}
		snprintf(line, sizeof(line), "dirshim: commit rename %s into "
		    "queue/, error pending on %d fds, sleeping\n", b, n);
		say(line);
		sleep(3);
	} else if (rc == 0 && !fired)
		__atomic_store_n(&fired, 0, __ATOMIC_SEQ_CST);
	return rc;
}

int renameat(int d1, const char *a, int d2, const char *b)
{
	static int (*real)(int, const char *, int, const char *);

	if (!real) real = dlsym(RTLD_NEXT, "renameat");
	return renamed(real(d1, a, d2, b), d1, d2, b);
}

int renameat2(int d1, const char *a, int d2, const char *b, unsigned f)
{
	static int (*real)(int, const char *, int, const char *, unsigned);
	int rc, saved;

	if (!real) real = dlsym(RTLD_NEXT, "renameat2");
	rc = real(d1, a, d2, b, f);
	saved = errno;
	rc = renamed(rc, d1, d2, b);
	errno = saved;
	return rc;
}

static int dead_fired;

int fsync(int fd)
{
	static int (*real)(int);
	const char *trig = getenv("HF_DS_FILE");
	char line[96];

	if (!real) real = dlsym(RTLD_NEXT, "fsync");
	/* part 2: the first fsync of dead/ fails (a move's, after its
	 * rename) */
	if (trig != NULL && access(trig, F_OK) == 0 &&
	    same_dir(fd, getenv("HF_DS_DEAD")) &&
	    !__atomic_exchange_n(&dead_fired, 1, __ATOMIC_SEQ_CST)) {
		snprintf(line, sizeof(line), "dirshim: fsync dead/ fd=%d -> "
		    "EIO\n", fd);
		say(line);
		errno = EIO;
		return -1;
	}
	if (fd >= 0 && fd < MAXFD &&
	    __atomic_exchange_n(&pending[fd], 0, __ATOMIC_SEQ_CST)) {
		snprintf(line, sizeof(line), "dirshim: fsync fd=%d -> EIO\n",
		    fd);
		say(line);
		errno = EIO;
		return -1;
	}
	return real(fd);
}
"""


def send_b(d, box):
    content = hf.make_message("dirsyncB")
    c = hf.SMTPClient(d.port, timeout=60)
    try:
        c.ehlo()
        c.cmd("MAIL FROM:<b@client.test>", expect=250)
        c.cmd("RCPT TO:<b@example.test>", expect=250)
        c.cmd("DATA", expect=354)
        c.send(hf.dot_stuff(content))
        box["reply"] = c.reply()
    except Exception as e:      # noqa: BLE001 (reported by the caller)
        box["error"] = e
    finally:
        c.close()


def index_counts(d):
    """The daemon's index, by state (holdfastctl status reads the index;
    queue, show and dead read the spool)."""
    r = d.ctl("status", "--json")
    hf.check(r.rc == 0, "status: %s" % r.err)
    doc = json.loads(r.out)
    doc = doc[0] if isinstance(doc, list) else doc
    return {k: int(doc.get(k + "_messages", -1))
            for k in ("queued", "deferred", "held", "dead")}


def part_dead(env, shim):
    """The primary refuses (550 at the final dot): the move to dead/
    renames, then its fsync of dead/ fails.  The message is in dead/ and
    the index must say so (before the fix it stayed 'queued')."""
    sink = env.sink(name="refusing", options=["-f", "."]).start()
    d = env.daemon(name="deadmove", primary_port=sink.port)
    trig = env.path("arm-dead")
    extra = {"HF_DS_FILE": trig,
             "HF_DS_DEAD": os.path.join(d.spool, "dead")}
    extra.update(hf.preload_env([shim]))
    d.start(env=extra)
    open(trig, "w").close()                     # arm
    m = hf.send_ok(d.port, "dirsyncdead")
    d.wait_log(r"^dirshim: fsync dead/ fd=\d+ -> EIO", timeout=20)
    d.wait_log(r"msg=%s spool move failed from=queue to=dead" % m.qid,
               timeout=10)
    os.unlink(trig)
    hf.check(m.qid in d.dead_ids() and m.qid not in d.queue_ids(),
             "on disk: dead %s, queue %s" % (d.dead_ids(), d.queue_ids()))
    hf.wait_until(lambda: index_counts(d)["dead"] == 1, 5, "the index to "
                  "count %s dead" % m.qid)
    st = index_counts(d)
    hf.check(st["dead"] == 1 and st["queued"] + st["deferred"] == 0,
             "the index after the failed move to dead/: %r" % st)
    d.wait_log(r"msg=%s in dead after a failed spool operation; the index "
               r"follows" % m.qid, timeout=5)
    dead = d.ctl("dead", "--json")
    hf.check(m.qid in dead.out, "holdfastctl dead lacks %s:\n%s"
             % (m.qid, dead.out))
    hf.note("dead move with a failed fsync of dead/: index says dead, as "
            "the disk")
    d.stop()
    sink.stop()


def main(env):
    shim = hf.compile_c(env, SHIM, "dirshim.so",
                        ["-shared", "-fPIC", "-ldl"])
    part_dead(env, shim)
    d = env.daemon()            # the primary never answers
    trig = env.path("arm")
    extra = {"HF_DS_FILE": trig,
             "HF_DS_TMP": os.path.join(d.spool, "tmp"),
             "HF_DS_QUEUE": os.path.join(d.spool, "queue")}
    extra.update(hf.preload_env([shim]))
    d.start(env=extra)
    a = hf.send_ok(d.port, "dirsyncA")
    hf.check(a.qid in d.queue_ids(), "A not in queue/")

    open(trig, "w").close()                     # arm
    mark = d.mark()
    box = {}
    t = threading.Thread(target=send_b, args=(d, box), daemon=True)
    t.start()
    d.wait_log(r"^dirshim: commit rename \w+ into queue/", timeout=20,
               since=mark)
    r = d.ctl("hold", a.qid)
    hf.note("hold A during B's commit: rc=%d %s" % (r.rc, r.err.strip()))
    t.join(30)
    os.unlink(trig)                             # disarm
    hf.check(not t.is_alive(), "B got no reply")
    hf.check("error" not in box, "B: %r" % box.get("error"))
    rb = box["reply"]
    fired = d.grep(r"^dirshim: fsync fd=\d+ -> EIO", mark)
    hf.note("B's final dot -> %r; shim: %s" % (rb, "; ".join(
        x.strip() for x in fired)))
    hf.check(rb.code == 451, "B got %r after the fsync covering its rename "
             "failed: want 451, never 250" % rb)
    bid = [x for x in d.queue_ids() if x != a.qid]
    hf.check(not bid, "queue/ keeps %s after B's 451" % bid)

    hf.check(a.qid in d._entries("hold") and a.qid not in d.queue_ids(),
             "A is not in hold/ on disk (hold %s, queue %s)"
             % (d._entries("hold"), d.queue_ids()))
    hf.check(r.rc != 0, "the hold of A succeeded although its fsync "
             "failed: %s" % r.out)
    d.wait_log(r"msg=%s in hold after a failed spool operation; the index "
               r"follows" % a.qid, timeout=5, since=mark)
    st = index_counts(d)
    hf.check(st["held"] == 1 and st["queued"] + st["deferred"] == 0,
             "the index after the failed hold: %r (A is in hold/)" % st)
    hf.note("A: in hold/ on disk and held in the index (%r)" % st)

    d.stop()
    d.start(env=extra)
    s = d.ctl("show", a.qid, "--json")
    hf.check(s.rc == 0 and '"state":"held"' in s.out.replace(" ", ""),
             "show A after a restart: %s" % s.out[:300])
    hf.send_ok(d.port, "dirsyncpost")
    d.stop()


hf.run(main)
