#!/usr/bin/python3
"""Disk full and disk errors.

A: spool on a 2 MB tmpfs, primary down: send until 452 4.3.1; every 250'd
message is delivered once the primary is up, no 452'd one is; no partial
files are left; the daemon keeps serving once space is freed.  Needs root
(mount): skipped otherwise, a failure when root cannot mount it.
B: LD_PRELOAD fault shim: fsync EIO -> 451 4.3.0, nothing left in queue/
or tmp/; the spool is then suspect (451 for new mail) until a restart,
after which mail gets 250 and is delivered.  Then write ENOSPC -> 452 4.3.1
and rename EIO -> 451 4.3.0.  Each fault must reach the daemon: a shim that
never fires fails the scenario (the case would test nothing)."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402


def attempt(port, tok, content, rcpt="full@example.test"):
    """One transaction; returns ('ok', Sent) or (code+enh, reply)."""
    c = hf.SMTPClient(port, timeout=60)
    try:
        c.ehlo()
        for line in ("MAIL FROM:<s@client.test>", "RCPT TO:<%s>" % rcpt):
            r = c.cmd(line)
            if r.code != 250:
                return ("%d %s" % (r.code, r.lines[-1][4:9].decode()), r)
        r = c.cmd("DATA")
        if r.code != 354:
            return ("%d %s" % (r.code, r.lines[-1][4:9].decode()), r)
        c.send(hf.dot_stuff(content))
        r = c.reply()
        if r.code == 250:
            qid = r.queued_id()
            hf.check(qid, "250 without queue id: %r" % r)
            return ("ok", hf.Sent(tok, qid, content, [rcpt]))
        return ("%d %s" % (r.code, r.lines[-1][4:9].decode()), r)
    finally:
        c.quit()


def part_tmpfs(env):
    if os.geteuid() != 0:
        raise hf.Skip("not root: the tmpfs part (the real ENOSPC) needs "
                      "mount -t tmpfs (the shim part ran and passed)")
    mnt = env.own(hf.Mount(env.path("tmpfs"), "2m"))
    hf.check(mnt.mount(), "mount -t tmpfs failed as root: the real ENOSPC "
             "(452 4.3.1 on a full spool) cannot be tested")
    sink = env.sink(name="sinkA")
    d = env.daemon(name="hfA", primary_port=sink.port,
                   spool_dir=os.path.join(mnt.path, "spool")).start()
    acked, refused = [], []
    for i in range(60):
        tok = "full%02d" % i
        content = hf.make_message(tok, body=(b"f" * 998 + b"\r\n") * 100)
        what, x = attempt(d.port, tok, content)
        if what == "ok":
            acked.append(x)
            continue
        hf.check(what == "452 4.3.1", "message %d on a full disk got %r, "
                 "want 452 4.3.1" % (i, x))
        refused.append(tok)
        if len(refused) >= 3:
            break
    hf.check(refused, "no 452 4.3.1 after %d messages on a 2 MB spool"
             % len(acked))
    hf.check(acked, "not even one message fit on the spool")
    hf.note("%d accepted, then 452 4.3.1" % len(acked))
    hf.check(d.alive(), "daemon died on a full disk")
    hf.wait_until(lambda: not d.tmp_entries(), 10, "tmp/ empty after "
                  "ENOSPC (has %s)" % d.tmp_entries())
    hf.check(sorted(d.queue_ids()) == sorted(s.qid for s in acked),
             "queue/ %d entries, acked %d" % (len(d.queue_ids()),
                                              len(acked)))
    sink.start()
    got = hf.verify_deliveries(sink, acked, timeout=30)
    for tok in refused:
        hf.check(tok not in got, "refused message %s was delivered" % tok)
    hf.wait_until(lambda: not d.queue_ids(), 15, "queue/ to drain")
    # space is free again: still serving
    what, x = attempt(d.port, "after", hf.make_message("after"))
    hf.check(what == "ok", "after freeing space: %r" % (x,))
    hf.verify_deliveries(sink, acked + [x], timeout=15)
    d.stop()


def shim_phase(env, sink, fault, want, name):
    """Returns True if the shim fired for this fault."""
    trig = env.path("trigger-" + name)
    extra = {"HOLDFAST_FAULT": fault, "HOLDFAST_FAULT_FILE": trig}
    extra.update(hf.preload_env([hf.shim_path("faultshim")]))
    d = env.daemon(name="hf-" + name, primary_port=sink.port)
    d.start(env=extra)
    pre = hf.send_ok(d.port, name + "-pre")
    # let it be delivered and deleted first: armed, the delete's fsync
    # would fail too (a different scenario)
    d.wait_log(r"msg=%s removed\b" % pre.qid, timeout=20)
    open(trig, "w").close()                     # arm
    mark = d.mark()
    what, x = attempt(d.port, name + "-bad", hf.make_message(name + "-bad"))
    fired = bool(d.grep(r"^faultshim: ", since=mark))
    os.unlink(trig)                             # disarm
    hf.check(fired, "%s: the shim never fired (the daemon made no %s call "
             "while armed), so this case tests nothing; got %r"
             % (fault, fault.split(":")[0], x))
    hf.check(what == want, "%s armed: end of message got %r, want %s"
             % (fault, x, want))
    hf.check(d.alive(), "%s: daemon died" % fault)
    hf.wait_until(lambda: not d.tmp_entries(), 10, "%s: tmp/ empty "
                  "(has %s)" % (fault, d.tmp_entries()))
    hf.check(d.queue_ids() in ([], [pre.qid]),
             "%s: queue/ has %s" % (fault, d.queue_ids()))
    bad = []
    if fault == "fsync:EIO":
        # A failed fsync cannot be trusted again: the spool is suspect and
        # new mail gets 451 until a restart rescans it.
        what, x = attempt(d.port, name + "-suspect",
                          hf.make_message(name + "-suspect"))
        hf.check(what == "451 4.3.0", "%s: after the EIO, new mail got %r, "
                 "want 451 4.3.0 (suspect spool)" % (fault, x))
        hf.check(d.grep(r"spool suspect"), "%s: no 'spool suspect' log "
                 "line" % fault)
        d.stop()
        d.start(env=extra)
    post = hf.send_ok(d.port, name + "-post")
    for x in [post] + bad:
        d.wait_log(r"msg=%s removed\b" % x.qid, timeout=20)
    d.stop()
    return fired, [pre, post] + bad


def part_shim(env):
    sink = env.sink(name="sinkB").start()
    sent = []
    fired, s = shim_phase(env, sink, "fsync:EIO", "451 4.3.0", "fsync")
    hf.check(fired, "the fault shim never saw an fsync: is the shim "
             "loaded (LD_PRELOAD) and does the daemon fsync?")
    sent += s
    # (no fdatasync case: the daemon never calls fdatasync, so it could
    # only pass without testing anything)
    for fault, want, name in (("write:ENOSPC", "452 4.3.1", "write"),
                              ("rename:EIO", "451 4.3.0", "rename")):
        fired, s = shim_phase(env, sink, fault, want, name)
        sent += s
    hf.verify_deliveries(sink, sent, timeout=30)


def main(env):
    part_shim(env)
    part_tmpfs(env)


hf.run(main)
