#!/usr/bin/python3
"""A bulk command by selector never keeps a new client from its banner,
and moves exactly the messages it selected.

1500 messages are cloned from one real message while the daemon is
stopped (test_bulk_banner's clone); every third one is rewritten to come
from keep@other.example, the rest from sender@client.test.  The primary
is down.  The fault shim makes every fsync and fdatasync sleep 100 ms
while armed, so holding one message (the envelope rewritten in place and
fdatasync'd, a rename, directory fsyncs) costs over 0.1 s of disk time.

  - `hold --from *@client.test`, sent on the control socket itself, runs
    with the shim armed for 2.5 s; progress lines ("progress hold N of
    1001", every 2 s, what holdfastctl shows on a terminal) come ahead of
    the answer; a
    new SMTP client gets its banner within 2 s (times HOLDFAST_SLOW)
    while it runs (before, the daemon applied 8 selected messages per
    loop turn on the loop: over 3 s a turn here), and `holdfastctl
    status` shows it running (bulk=hold, N of M).  The shim is disarmed;
    the command ends with matched = done = 1001 (logged with uid and
    selector); hold/ holds exactly the 1001, queue/ exactly the 500.
  - `holdfastctl delete --state held` the same way: the banner within
    the bound, all 1001 gone, the 500 unselected ones untouched in
    queue/, every removal logged with its ID, the uid and the selector.
"""
import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402
from test_bulk_banner import clone  # noqa: E402

N = 1500
DELAY_MS = 100


def area_ids(d, area):
    return sorted(os.listdir(os.path.join(d.spool, area)))


def banner_during(d, name, trig, run, armed=0.3):
    """Arm the shim, start run() in a thread, wait until the bulk
    operation runs, time a new client's banner, disarm, and return run()'s
    result once it ends."""
    res = {}
    mark = d.mark()
    open(trig, "w").close()

    def work():
        res["r"] = run()

    th = threading.Thread(target=work)
    th.start()
    d.wait_log(r"ctl %s selector=.* matched=\d+ uid=" % name, since=mark,
               timeout=hf.scaled(30))
    time.sleep(armed)               # let it get into the disk work
    t = time.monotonic()
    c = d.connect(timeout=60)
    secs = time.monotonic() - t
    c.cmd("QUIT")
    hf.note("banner after %.3fs during %s by selector" % (secs, name))
    st = d.ctl("status", "--json", timeout=60).ok().json()
    st = st[0] if isinstance(st, list) else st
    os.unlink(trig)
    th.join(hf.scaled(300))
    hf.check("r" in res, "%s by selector did not end" % name)
    hf.check(secs <= hf.scaled(2.0), "banner took %.2fs during %s by "
             "selector (bound %.1fs)" % (secs, name, hf.scaled(2.0)))
    hf.check(st.get("bulk") == name and
             0 <= int(st.get("bulk_done", -1)) < int(st.get("bulk_total", 0)),
             "status during %s by selector: %r" % (name, st))
    return res["r"]


def summary(r):
    s = [x for x in r.json() if "matched" in x]
    hf.check(len(s) == 1, "no summary record in %r" % r.out)
    return s[0]


def raw_request(d, line):
    """One request on the control socket itself; the whole answer."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(hf.scaled(600))
    s.connect(d.control_socket)
    s.sendall(line.encode() + b"\n")
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    return data.decode()


def main(env):
    sink = env.sink()                       # never started: primary down
    trig = env.path("trigger")
    d = env.daemon(primary_port=sink.port,
                   primary={"probe_interval": "300s"})
    d.start()
    hf.send_ok(d.port, "template")
    d.stop()
    ids = clone(d.spool, N)
    keep = []
    for i, qid in enumerate(ids):
        if i % 3 == 1:
            p = os.path.join(d.spool, "queue", qid)
            text, body = hf.spool_msg_read(p)
            text = re.sub(r"(?m)^sender: .*$", "sender: keep@other.example",
                          text)
            hf.spool_msg_write(p, text, body)
            keep.append(qid)
    sel = sorted(set(ids) - set(keep))
    d.start(env=hf.shim_env("fsync:DELAY%d,fdatasync:DELAY%d"
                            % (DELAY_MS, DELAY_MS), trig))
    d.wait_log(r"queue loaded messages=%d\b" % (N + 1), timeout=30)
    hf.note("%d to select, %d to keep" % (len(sel), len(keep)))

    # ---- hold by selector, on the socket itself: progress lines
    # ("progress VERB DONE of TOTAL", every 2 s) come ahead of the answer
    mark = d.mark()
    out = banner_during(d, "hold", trig, lambda: raw_request(
        d, "hold --from *@client.test"), armed=2.5)
    lines = out.splitlines()
    prog = [x for x in lines if x.startswith("progress ")]
    hf.check(prog and re.match(r"progress hold \d+ of %d$" % len(sel),
                               prog[0]) and
             lines[len(prog)] == "ok", "hold on the socket: %r" % out[:300])
    hf.note("%d progress lines, first %r" % (len(prog), prog[0]))
    s = dict(re.findall(r"(\w+)=(\S*)", " ".join(lines[len(prog) + 1:])))
    for k in ("matched", "done", "failed"):
        s[k] = int(s.get(k, -1))
    hf.check(s["matched"] == len(sel) and s["done"] == len(sel) and
             s["failed"] == 0, "hold by selector: %r" % s)
    hf.check(area_ids(d, "hold") == sel and area_ids(d, "queue") ==
             sorted(keep), "after hold --from: hold/ %d queue/ %d"
             % (len(area_ids(d, "hold")), len(area_ids(d, "queue"))))
    uid = os.geteuid()
    hf.check(d.grep(r'ctl hold selector="--from \*@client\.test" '
                    r'matched=%d uid=%d' % (len(sel), uid), since=mark),
             "hold by selector not logged with selector and uid")
    hf.check(d.grep(r"ctl hold finished matched=%d done=%d skipped=0 "
                    r"failed=0 uid=%d" % (len(sel), len(sel), uid),
                    since=mark), "hold by selector: no final count logged")
    held = len(d.grep(r'msg=[0-9a-f]{16} held reason=operator uid=%d '
                      r'selector="--from \*@client\.test"' % uid,
                      since=mark))
    hf.check(held == len(sel), "held logged %d times, want %d"
             % (held, len(sel)))

    # ---- delete by selector
    mark = d.mark()
    r = banner_during(d, "delete", trig, lambda: d.ctl(
        "delete", "--state", "held", "--json",
        timeout=int(hf.scaled(600))))
    s = summary(r.ok())
    hf.check(s["matched"] == len(sel) and s["done"] == len(sel) and
             s["failed"] == 0, "delete by selector: %r" % s)
    hf.check(area_ids(d, "hold") == [] and area_ids(d, "queue") ==
             sorted(keep) and area_ids(d, "dead") == [],
             "after delete --state held: hold/ %d queue/ %d"
             % (len(area_ids(d, "hold")), len(area_ids(d, "queue"))))
    for qid in (sel[0], sel[len(sel) // 2], sel[-1]):
        hf.check(d.grep(r'msg=%s removed reason=operator area=hold '
                        r'uid=%d selector="--state held"' % (qid, uid),
                        since=mark), "msg=%s: removal not logged with uid "
                 "and selector" % qid)
    hf.check(d.grep(r"ctl delete finished matched=%d done=%d skipped=0 "
                    r"failed=0 uid=%d" % (len(sel), len(sel), uid),
                    since=mark), "delete by selector: no final count logged")


if __name__ == "__main__":
    hf.run(main)
