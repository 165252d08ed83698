#!/usr/bin/python3
"""A spool in the old format (one directory <area>/<ID>/ per message,
holding "body" and "env", as holdfast 46a7e03 and before wrote it) is
converted by the startup scan to one file per message, and nothing is
lost:

- the old spool is built from messages this daemon accepted (queued ones
  with one, two and sixty recipients, one with a 300 KB body, two held,
  one dead after a 5xx from the primary): each message file is read back
  and rewritten by hand as the old daemon's directory (0700, body and env
  0600, owned by the daemon's user); one held directory also keeps a
  leftover env.tmp (an interrupted envelope rewrite: env is the truth),
  and tmp/ keeps an interrupted receive in each format;
- after the start every message is a regular file in its area (0600,
  the daemon's user, link count 1) that hf.spool_msg_read() accepts, with
  an envelope and a body byte-identical to the old env and body; nothing
  is quarantined, tmp/ is empty, no old directory is left, each message
  is logged "msg=ID converted area=AREA", and `holdfastctl status` counts
  every message and its bytes in its state; a second start finds the
  same files and converts nothing;
- the primary comes up: the queued messages reach it byte-identical to
  their stored bodies; the held ones after a release and the dead one
  after a requeue too; then the spool is empty;
- an old directory whose env is a FIFO (planted) does not block the
  start: that message is quarantined, the daemon gets ready.
A daemon that does not convert (that quarantines, skips or leaves the
directories as they are) fails it."""
import os
import stat
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

AREAS = ("queue", "hold", "dead")


def to_old_format(area_dir, qid, env_tmp=None):
    """Replace the message file area_dir/qid by the old format's
    directory; returns (env_text bytes, body bytes)."""
    path = os.path.join(area_dir, qid)
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        # written by an old daemon already (this test run on one must
        # fail below, at the check of the conversion)
        with open(os.path.join(path, "body"), "rb") as f:
            body = f.read()
        with open(os.path.join(path, "env"), "rb") as f:
            env = f.read()
        os.unlink(os.path.join(path, "body"))
        os.unlink(os.path.join(path, "env"))
        os.rmdir(path)
    else:
        env_text, body = hf.spool_msg_read(path)
        env = env_text.encode("utf-8", "surrogateescape")
        os.unlink(path)
    os.mkdir(path, 0o700)
    files = [("body", body), ("env", env)]
    if env_tmp is not None:
        files.append(("env.tmp", env_tmp))
    for name, data in files:
        p = os.path.join(path, name)
        with open(p, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(p, 0o600)
        os.chown(p, st.st_uid, st.st_gid)
    os.chmod(path, 0o700)
    os.chown(path, st.st_uid, st.st_gid)
    return env, body


def build_old_spool(env, sink):
    """A stopped daemon whose spool holds old-format messages; returns
    (daemon, {qid: (area, env, body)}, {qid: Sent})."""
    refusing = env.sink(name="refusing", options=["-f", "."]).start()
    d0 = env.daemon(name="mkdead", primary_port=refusing.port)
    d0.start()
    dead = hf.send_ok(d0.port, "updead")
    d0.wait_log(r"msg=%s moved to dead" % dead.qid, timeout=hf.scaled(20))
    d0.stop()
    refusing.stop()

    # the primary (sink) is down: these stay queued and held
    d = env.daemon(primary_port=sink.port, spool_dir=d0.spool,
                   primary={"probe_interval": "300s"})
    d.start()
    sent = {dead.qid: dead}
    q = [hf.send_ok(d.port, "upq1"),
         hf.send_ok(d.port, "upq2", rcpts=["a@example.test",
                                           "b@example.test"]),
         hf.send_ok(d.port, "upq60", rcpts=["r%02d@example.test" % i
                                            for i in range(60)]),
         hf.send_ok(d.port, "upbig", content=hf.make_message(
             "upbig", body=b"".join(b"line %06d of a large body\r\n" % i
                                    for i in range(11000))))]
    h = [hf.send_ok(d.port, "uph1"), hf.send_ok(d.port, "uph2")]
    for m in h:
        d.ctl("hold", m.qid).ok()
    for m in q + h:
        sent[m.qid] = m
    d.stop()
    want_areas = {dead.qid: "dead"}
    want_areas.update((m.qid, "queue") for m in q)
    want_areas.update((m.qid, "hold") for m in h)
    for qid, area in want_areas.items():
        hf.check(os.path.exists(os.path.join(d.spool, area, qid)),
                 "%s not in %s/ before the conversion" % (qid, area))

    old = {}
    for qid, area in want_areas.items():
        tmp_env = None
        if qid == h[0].qid:
            tmp_env = b"version: 1\nid: " + qid.encode() + b"\nhalf"
        e, b = to_old_format(os.path.join(d.spool, area), qid, tmp_env)
        old[qid] = (area, e, b)
    # interrupted receives in tmp/: an old directory and a new file
    tmp = os.path.join(d.spool, "tmp")
    owner = os.stat(tmp)
    t1 = os.path.join(tmp, "00000000000000a1")
    os.mkdir(t1, 0o700)
    with open(os.path.join(t1, "body"), "wb") as f:
        f.write(b"Received: half a message\r\n")
    t2 = os.path.join(tmp, "00000000000000a2")
    hf.spool_msg_write(t2, "version: 1\nid: 00000000000000a2\n",
                       b"Received: half\r\n")
    for p in (t1, os.path.join(t1, "body"), t2):
        os.chown(p, owner.st_uid, owner.st_gid)
    hf.note("old spool: %d queued, %d held, 1 dead, 2 tmp leftovers"
            % (len(q), len(h)))
    return d, old, sent


def check_converted(d, old, since):
    uid = os.stat(d.spool).st_uid
    for qid, (area, e, b) in sorted(old.items()):
        path = os.path.join(d.spool, area, qid)
        hf.check(os.path.lexists(path), "%s: gone from %s/ (quarantine: %s)"
                 % (qid, area, d.quarantine_entries()))
        st = os.lstat(path)
        hf.check(stat.S_ISREG(st.st_mode), "%s/%s is not a regular file "
                 "after the start (mode %o)" % (area, qid, st.st_mode))
        hf.check(stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == uid
                 and st.st_nlink == 1, "%s/%s: mode %o uid %d nlink %d"
                 % (area, qid, stat.S_IMODE(st.st_mode), st.st_uid,
                    st.st_nlink))
        try:
            env_text, body = hf.spool_msg_read(path)
        except ValueError as x:
            hf.fail("%s/%s: not a valid message file: %s" % (area, qid, x))
        hf.check(body == b, "%s/%s: body changed by the conversion (%d -> "
                 "%d bytes)" % (area, qid, len(b), len(body)))
        hf.check(env_text.encode("utf-8", "surrogateescape") == e,
                 "%s/%s: envelope changed by the conversion:\n%r\n->\n%r"
                 % (area, qid, e, env_text))
    for area in AREAS:
        extra = set(d._entries(area)) - {q for q, v in old.items()
                                         if v[0] == area}
        hf.check(not extra, "%s/ has entries that were not there: %s"
                 % (area, sorted(extra)))
    hf.check(not d.quarantine_entries(), "quarantined: %s; log: %s"
             % (d.quarantine_entries(), d.grep(r"quarantined", since)))
    hf.check(not d.grep(r"quarantined", since), "quarantine lines: %s"
             % d.grep(r"quarantined", since))
    hf.wait_until(lambda: not d.tmp_entries(), hf.scaled(10),
                  "tmp/ empty (has %s)" % d.tmp_entries())


def check_status(d, old):
    st = d.ctl("status", "--json").ok().json()
    n = {a: sum(1 for v in old.values() if v[0] == a) for a in AREAS}
    size = {a: sum(len(v[2]) for v in old.values() if v[0] == a)
            for a in AREAS}
    got_q = st["queued_messages"] + st["deferred_messages"]
    got = (got_q, st["held_messages"], st["dead_messages"])
    hf.check(got == (n["queue"], n["hold"], n["dead"]), "status counts "
             "queue+deferred/held/dead %s, want %s"
             % (got, (n["queue"], n["hold"], n["dead"])))
    gotb = (st["queued_bytes"] + st["deferred_bytes"], st["held_bytes"],
            st["dead_bytes"])
    hf.check(gotb == (size["queue"], size["hold"], size["dead"]),
             "status bytes %s, want the bodies' %s"
             % (gotb, (size["queue"], size["hold"], size["dead"])))


def check_drained(d, sink, old, qids, what):
    """The messages qids reached the sink exactly once, each byte-identical
    to its old body."""
    def done():
        got = {}
        for t in sink.delivered_transactions():
            m, _ = hf.split_received(t.content)
            if m is not None:
                got.setdefault(m.group("id").decode(), []).append(t)
        return got if all(q in got for q in qids) else None
    got = hf.wait_until(done, hf.scaled(30), "%s delivered" % what)
    for qid in qids:
        ts = got[qid]
        hf.check(len(ts) == 1, "%s: %s delivered %d times"
                 % (what, qid, len(ts)))
        hf.check(ts[0].content == old[qid][2], "%s: %s delivered differs "
                 "from its old body (%d vs %d bytes)"
                 % (what, qid, len(ts[0].content), len(old[qid][2])))
        d.wait_log(r"msg=%s removed" % qid, timeout=hf.scaled(10))


def wait_loaded(d, old, since):
    n = [sum(1 for v in old.values() if v[0] == a) for a in AREAS]
    d.wait_log(r"queue loaded messages=%d held=%d dead=%d\b" % tuple(n),
               since=since, timeout=hf.scaled(20))


def main(env):
    sink = env.sink()                       # down while the spool is built
    d, old, sent = build_old_spool(env, sink)
    mark = d.mark()
    d.start()
    wait_loaded(d, old, mark)
    check_converted(d, old, mark)
    for qid, (area, _, _) in sorted(old.items()):
        hf.check(d.grep(r"msg=%s converted area=%s\b" % (qid, area),
                        since=mark), "msg=%s: no 'converted' log line"
                 % qid)
    hf.check(d.grep(r"msg=00000000000000a1 removed", since=mark) and
             d.grep(r"msg=00000000000000a2 removed", since=mark),
             "tmp/ leftovers not logged as removed:\n%s" % d.tail())
    check_status(d, old)
    hf.note("%d messages converted byte-identical, none quarantined, "
            "status counts them, tmp/ emptied" % len(old))
    # a restart finds the converted spool as it left it
    d.stop()
    mark = d.mark()
    d.start()
    wait_loaded(d, old, mark)
    check_converted(d, old, mark)
    hf.check(not d.grep(r"converted", since=mark), "converted again at "
             "the second start: %s" % d.grep(r"converted", since=mark))

    sink.start()
    queued = sorted(q for q, v in old.items() if v[0] == "queue")
    d.ctl("flush").ok()
    check_drained(d, sink, old, queued, "queued")
    held = sorted(q for q, v in old.items() if v[0] == "hold")
    dead = sorted(q for q, v in old.items() if v[0] == "dead")
    for qid in held:
        d.ctl("release", qid).ok()
    for qid in dead:
        d.ctl("requeue", qid).ok()
    d.ctl("flush").ok()
    check_drained(d, sink, old, held + dead, "released and requeued")
    time.sleep(0.3)
    for area in AREAS + ("tmp", "quarantine"):
        hf.check(not d._entries(area), "%s/ not empty at the end: %s"
                 % (area, d._entries(area)))
    hf.note("queued, released and requeued messages delivered "
            "byte-identical; spool empty")
    d.stop()
    fifo_dir(d)
    sink.stop()


def fifo_dir(d):
    """An old-format directory whose env is a FIFO: a blocking open() of
    it would hang the start."""
    qid = "00000000000000f1"
    path = os.path.join(d.spool, "queue", qid)
    owner = os.stat(os.path.join(d.spool, "queue"))
    os.mkdir(path, 0o700)
    with open(os.path.join(path, "body"), "wb") as f:
        f.write(b"Received: x\r\n\r\nfifo\r\n")
    os.mkfifo(os.path.join(path, "env"), 0o600)
    for p in (path, os.path.join(path, "body"), os.path.join(path, "env")):
        os.chown(p, owner.st_uid, owner.st_gid)
    mark = d.mark()
    d.start()
    d.wait_log(r"msg=%s quarantined" % qid, since=mark,
               timeout=hf.scaled(10))
    hf.check(qid in d.quarantine_entries(), "the FIFO directory is not in "
             "quarantine/")
    hf.note("an old directory with a FIFO env: quarantined, start not "
            "blocked")
    d.stop()


hf.run(main)
