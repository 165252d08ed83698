#!/usr/bin/python3
"""A bulk operator command never keeps a new client from its banner.

1500 messages are queued (cloned from one real message while the daemon
is stopped) and the primary is down.  The fault shim makes every fsync
and fdatasync sleep 10 ms, so holding one message (the envelope rewritten
in place and fdatasync'd, a rename, two directory fsyncs shared by the
messages of a slice) costs over 10 ms and `hold all` over 15 s of disk
time.  While it runs:
  - `holdfastctl hold all` returns at once (ok), the log says the bulk
    operation started;
  - a new SMTP client gets its banner within 2 s (times HOLDFAST_SLOW):
    the operation runs in slices of at most 256 messages or 20 ms per
    loop turn (before, it ran in one piece on the loop and the banner
    waited for all of it);
  - `holdfastctl status` shows it running (bulk=hold, bulk_done <
    bulk_total).
Then the shim is disarmed; the operation finishes (logged done with
every message), hold/ holds all 1501 and queue/ none; `release all`
brings all of them back; nothing is lost or duplicated."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

N = 1500
DELAY_MS = 10


def clone(spool, n):
    """n copies of the one message in queue/, under fresh IDs."""
    q = os.path.join(spool, "queue")
    (tid,) = os.listdir(q)
    st = os.stat(os.path.join(q, tid))
    envt, body = hf.spool_msg_read(os.path.join(q, tid))
    ids = []
    for i in range(n):
        nid = "%016x" % (0xb000000000000000 + i)
        p = os.path.join(q, nid)
        hf.spool_msg_write(p, envt.replace(tid, nid), body)
        os.chown(p, st.st_uid, st.st_gid)
        ids.append(nid)
    return [tid] + ids


def count(d, area):
    return len(os.listdir(os.path.join(d.spool, area)))


def main(env):
    sink = env.sink()                       # never started: primary down
    trig = env.path("trigger")
    d = env.daemon(primary_port=sink.port,
                   primary={"probe_interval": "300s"})
    d.start()
    hf.send_ok(d.port, "template")
    d.stop()
    ids = clone(d.spool, N)
    d.start(env=hf.shim_env("fsync:DELAY%d,fdatasync:DELAY%d"
                            % (DELAY_MS, DELAY_MS), trig))
    d.wait_log(r"queue loaded messages=%d\b" % (N + 1), timeout=30)

    mark = d.mark()
    open(trig, "w").close()                 # arm: every (data)sync 10 ms
    t0 = time.monotonic()
    r = d.ctl("hold", "all", timeout=int(hf.scaled(20)))
    took = time.monotonic() - t0
    r.ok()
    hf.note("hold all returned after %.2fs" % took)
    d.wait_log(r"queue bulk hold started messages=%d\b" % (N + 1),
               since=mark, timeout=5)

    banner = {}

    def connect():
        t = time.monotonic()
        c = d.connect(timeout=60)
        banner["secs"] = time.monotonic() - t
        c.cmd("QUIT")

    th = threading.Thread(target=connect)
    th.start()
    th.join(hf.scaled(60))
    hf.check("secs" in banner, "no banner within %.0fs" % hf.scaled(60))
    hf.note("banner after %.3fs during hold all" % banner["secs"])
    hf.check(banner["secs"] <= hf.scaled(2.0), "banner took %.2fs during "
             "hold all (bound %.1fs)" % (banner["secs"], hf.scaled(2.0)))
    st = d.ctl("status").ok().out
    hf.check("hold" in st and "bulk" in st, "status during hold all: %r"
             % st)
    os.unlink(trig)                         # disarm: finish at disk speed

    d.wait_log(r"queue bulk hold done messages=%d failed=0" % (N + 1),
               since=mark, timeout=hf.scaled(120))
    hf.check(count(d, "hold") == N + 1 and count(d, "queue") == 0,
             "after hold all: hold/ %d queue/ %d" % (count(d, "hold"),
                                                     count(d, "queue")))
    st = d.ctl("status").ok().out
    hf.check("none" in st, "status after hold all: %r" % st)

    mark = d.mark()
    d.ctl("release", "all").ok()
    d.wait_log(r"queue bulk release done messages=%d failed=0" % (N + 1),
               since=mark, timeout=hf.scaled(120))
    hf.check(sorted(d.queue_ids()) == sorted(ids) and count(d, "hold") == 0,
             "after release all: queue/ %d hold/ %d" % (len(d.queue_ids()),
                                                       count(d, "hold")))


if __name__ == "__main__":
    hf.run(main)
