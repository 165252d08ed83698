#!/usr/bin/python3
"""Fault injection at each step of the commit (complements test_disk_full,
which covers a real full disk on a tmpfs, and write ENOSPC, fsync EIO and
rename EIO at the first call).

A small LD_PRELOAD shim built here fails exactly the Nth call of one
operation after it is armed, so each durability step can be hit on its
own.  Received mail is committed in batches: body and envelope written to
tmp/<id>/, one syncfs of the spool's filesystem for the batch, then the
rename into queue/ and an fsync of queue/ (shared by concurrent commits).
Phases (a fresh daemon each):

- syncfs ENOSPC, rename ENOSPC, queue/ fsync ENOSPC: the message gets
  452 4.3.1 (the README's reply for a full disk), never 250; nothing is
  left in tmp/ or queue/; the daemon keeps serving (the next message gets
  250 and is delivered) and the spool is not suspect (ENOSPC is not a lost
  write): /healthz stays 200;
- syncfs EIO and queue/ fsync EIO (the latter after the rename): 451
  4.3.0, nothing left, then the spool is suspect: new mail gets 451 4.3.0,
  the log says "spool suspect", /metrics has holdfast_spool_suspect 1 (0
  before) and /healthz answers 503 (200 before); after a restart mail gets
  250 again, the metric is 0 and /healthz 200.
- syncfs ENOSPC while another client is in DATA: that other message,
  created before the failed sync, gets a 4xx too although its own later
  syncfs returns 0 (syncfs reports a write error to one caller only).
Each of these is the first and only call of its kind in one commit (the
shim counts calls from the moment it is armed, when the spool is idle):
the phase fails if the shim never fired.
At the end every 250'd message reached the primary exactly once and no
refused one did."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

NTH_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long seen;
static int match(const char *op)
{
	const char *want = getenv("HF_NTH_OP"), *trig = getenv("HF_NTH_FILE");
	long n;
	char line[96];
	int len;

	if (!want || !trig || strcmp(want, op) != 0 || access(trig, F_OK) != 0)
		return 0;
	n = __atomic_add_fetch(&seen, 1, __ATOMIC_SEQ_CST);
	if (n != atol(getenv("HF_NTH_N")))
		return 0;
	len = snprintf(line, sizeof(line), "nthshim: %s #%ld -> %s\n", op, n,
	    getenv("HF_NTH_ERR"));
	if (len > 0) {
		ssize_t (*w)(int, const void *, size_t) = dlsym(RTLD_NEXT, "write");
		(void)w(2, line, (size_t)len);
	}
	errno = strcmp(getenv("HF_NTH_ERR"), "EIO") == 0 ? EIO : ENOSPC;
	return 1;
}

int fsync(int fd)
{
	static int (*real)(int);
	if (!real) real = dlsym(RTLD_NEXT, "fsync");
	return match("fsync") ? -1 : real(fd);
}

int fdatasync(int fd)
{
	static int (*real)(int);
	if (!real) real = dlsym(RTLD_NEXT, "fdatasync");
	return match("fsync") ? -1 : real(fd);
}

int syncfs(int fd)
{
	static int (*real)(int);
	if (!real) real = dlsym(RTLD_NEXT, "syncfs");
	return match("syncfs") ? -1 : real(fd);
}

int rename(const char *a, const char *b)
{
	static int (*real)(const char *, const char *);
	if (!real) real = dlsym(RTLD_NEXT, "rename");
	return match("rename") ? -1 : real(a, b);
}

int renameat(int d1, const char *a, int d2, const char *b)
{
	static int (*real)(int, const char *, int, const char *);
	if (!real) real = dlsym(RTLD_NEXT, "renameat");
	return match("rename") ? -1 : real(d1, a, d2, b);
}

int renameat2(int d1, const char *a, int d2, const char *b, unsigned f)
{
	static int (*real)(int, const char *, int, const char *, unsigned);
	if (!real) real = dlsym(RTLD_NEXT, "renameat2");
	return match("rename") ? -1 : real(d1, a, d2, b, f);
}
"""


def attempt(port, tok):
    """One transaction; ('ok', Sent) or ('CODE ENH', Reply)."""
    content = hf.make_message(tok, body=b"fault " + tok.encode() * 50
                              + b"\r\n")
    c = hf.SMTPClient(port, timeout=60)
    try:
        c.ehlo()
        c.cmd("MAIL FROM:<s@client.test>", expect=250)
        c.cmd("RCPT TO:<fault@example.test>", expect=250)
        r = c.cmd("DATA")
        if r.code != 354:      # a suspect spool may refuse at DATA
            return "%d %s" % (r.code, r.lines[-1][4:9].decode()), r
        c.send(hf.dot_stuff(content))
        r = c.reply()
        if r.code == 250:
            qid = r.queued_id()
            hf.check(qid, "250 without a queue id: %r" % r)
            return "ok", hf.Sent(tok, qid, content, ["fault@example.test"])
        return "%d %s" % (r.code, r.lines[-1][4:9].decode()), r
    finally:
        c.quit()


def suspect_metric(d):
    return d.scrape().get("holdfast_spool_suspect")


def healthz(d):
    st, _, _ = d.http_get("/healthz")
    return st


def phase(env, sink, shim, op, n, err):
    name = "%s%d-%s" % (op, n, err)
    trig = env.path("arm-" + name)
    extra = {"HF_NTH_OP": op, "HF_NTH_N": str(n), "HF_NTH_ERR": err,
             "HF_NTH_FILE": trig}
    extra.update(hf.preload_env([shim]))
    d = env.daemon(name="hf-" + name, primary_port=sink.port,
                   metrics={"listen": "auto"})
    d.start(env=extra)
    sent = []
    pre = hf.send_ok(d.port, name + "-pre")
    sent.append(pre)
    d.wait_log(r"msg=%s removed\b" % pre.qid, timeout=20)
    hf.check(suspect_metric(d) == 0, "%s: holdfast_spool_suspect != 0 "
             "before the fault" % name)
    hf.check(healthz(d) == 200, "%s: /healthz %s before the fault, want "
             "200" % (name, healthz(d)))
    open(trig, "w").close()                      # arm
    mark = d.mark()
    what, x = attempt(d.port, name + "-bad")
    fired = d.grep(r"^nthshim: ", since=mark)
    os.unlink(trig)                              # disarm
    hf.check(fired, "%s: the shim never fired (the commit makes fewer "
             "than %d %s calls?); reply was %r" % (name, n, op, x))
    want = ("451 4.3.0",) if err == "EIO" else ("452 4.3.1",)
    hf.check(what in want, "%s: end of DATA got %r, want %s"
             % (name, x, " or ".join(want)))
    hf.check(d.alive(), "%s: daemon died" % name)
    hf.wait_until(lambda: not d.tmp_entries(), 10, "%s: tmp/ empty (has "
                  "%s)" % (name, d.tmp_entries()))
    hf.check(not d.queue_ids(), "%s: queue/ keeps %s after a failed "
             "commit" % (name, d.queue_ids()))
    hf.note("%s: %s (%s)" % (name, x.text if hasattr(x, "text") else x,
                             fired[0].strip()))
    if err == "EIO":
        what, x = attempt(d.port, name + "-suspect")
        hf.check(what == "451 4.3.0", "%s: after the EIO new mail got %r, "
                 "want 451 4.3.0 (suspect spool)" % (name, x))
        hf.check(d.grep(r"spool suspect"), "%s: no 'spool suspect' log "
                 "line" % name)
        hf.wait_until(lambda: suspect_metric(d) == 1, 10,
                      "%s: holdfast_spool_suspect 1" % name)
        st = healthz(d)
        hf.check(st == 503, "%s: suspect spool, /healthz -> %s, want 503"
                 % (name, st))
        d.stop()
        d.start(env=extra)
        hf.check(suspect_metric(d) == 0, "%s: still suspect after a "
                 "restart" % name)
        hf.check(healthz(d) == 200, "%s: /healthz %s after the restart, "
                 "want 200" % (name, healthz(d)))
    else:
        hf.check(suspect_metric(d) == 0, "%s: ENOSPC made the spool "
                 "suspect" % name)
        hf.check(healthz(d) == 200, "%s: ENOSPC: /healthz %s, want 200"
                 % (name, healthz(d)))
    post = hf.send_ok(d.port, name + "-post")
    sent.append(post)
    d.wait_log(r"msg=%s removed\b" % post.qid, timeout=20)
    hf.check(not d.quarantine_entries() and not d.dead_ids(),
             "%s: quarantine/dead not empty" % name)
    d.stop()
    return sent


def phase_overlap(env, sink, shim):
    """syncfs tells a write error to one caller only: a message still being
    written when another batch's sync failed must not get 250 from a
    later sync that returns 0 (its pages may have been lost in the same
    writeback)."""
    name = "syncfs-overlap"
    trig = env.path("arm-" + name)
    extra = {"HF_NTH_OP": "syncfs", "HF_NTH_N": "1", "HF_NTH_ERR": "ENOSPC",
             "HF_NTH_FILE": trig}
    extra.update(hf.preload_env([shim]))
    d = env.daemon(name="hf-" + name, primary_port=sink.port)
    d.start(env=extra)
    pre = hf.send_ok(d.port, name + "-pre")
    d.wait_log(r"msg=%s removed\b" % pre.qid, timeout=20)
    # B is in DATA (its message created, part of its body written) ...
    content = hf.make_message(name + "-b", body=b"overlap\r\n" * 200)
    b = hf.SMTPClient(d.port, timeout=60)
    b.ehlo()
    b.cmd("MAIL FROM:<s@client.test>", expect=250)
    b.cmd("RCPT TO:<fault@example.test>", expect=250)
    b.cmd("DATA", expect=354)
    body = hf.dot_stuff(content)
    b.send(body[:len(body) // 2])
    # ... when A's batch sync fails
    open(trig, "w").close()
    mark = d.mark()
    what, x = attempt(d.port, name + "-a")
    os.unlink(trig)
    hf.check(d.grep(r"^nthshim: ", since=mark), "%s: the shim never "
             "fired; reply was %r" % (name, x))
    hf.check(what == "452 4.3.1", "%s: A got %r, want 452 4.3.1" % (name, x))
    b.send(body[len(body) // 2:])
    r = b.reply()
    b.quit()
    hf.check(r.code // 100 == 4, "%s: B, written while another sync failed, "
             "got %r: a 250 its sync cannot vouch for" % (name, r))
    hf.check(d.grep(r"not durable: a sync failed"), "%s: no log line "
             "naming B's message" % name)
    hf.wait_until(lambda: not d.tmp_entries(), 10, "%s: tmp/ empty" % name)
    hf.check(not d.queue_ids(), "%s: queue/ keeps %s" % (name, d.queue_ids()))
    post = hf.send_ok(d.port, name + "-post")
    d.wait_log(r"msg=%s removed\b" % post.qid, timeout=20)
    d.stop()
    return [pre, post]


def main(env):
    shim = hf.compile_c(env, NTH_SHIM, "nthshim.so",
                        ["-shared", "-fPIC", "-ldl"])
    sink = env.sink().start()
    sent = []
    for op, n, err in (("syncfs", 1, "ENOSPC"), ("rename", 1, "ENOSPC"),
                       ("fsync", 1, "ENOSPC"),
                       ("syncfs", 1, "EIO"), ("fsync", 1, "EIO")):
        sent += phase(env, sink, shim, op, n, err)
    sent += phase_overlap(env, sink, shim)
    # every 250'd message once, no refused one (unexpected tokens fail)
    hf.verify_deliveries(sink, sent, timeout=30)


hf.run(main)
