#!/usr/bin/python3
"""Hold-mode and the sliced startup scan: hold-mode that expired while the
daemon was down ends only once every spooled message is indexed, and
"hold-mode off" is refused until then, so the held-time credit reaches all
of them, not just those indexed by the first dispatch.  The rewrite
starts even while 16 operator bulk actions wait (their limit is theirs)."""
import os
import re
import smtplib
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

N = 3000        # more than the daemon indexes before its loop starts
DELAY_MS = 50   # each fsync while the operator's actions queue up


def clone(spool, qid, n):
    """n copies of queue/<qid> under fresh IDs, with the same owner."""
    src = os.path.join(spool, "queue", qid)
    st = os.stat(src)
    env, body = hf.spool_msg_read(src)
    for _ in range(n):
        new = os.urandom(8).hex()
        dst = os.path.join(spool, "queue", new)
        hf.spool_msg_write(dst, re.sub(r"^id: .*$", "id: " + new, env,
                                       count=1, flags=re.M), body)
        os.chown(dst, st.st_uid, st.st_gid)


def backlog(env, name, hold_for):
    """A stopped daemon whose spool holds N queued messages under
    hold-mode (on for hold_for)."""
    sink = env.sink()                  # never started: nothing delivered
    d = env.daemon(name=name, primary_port=sink.port).start()
    d.ctl("hold-mode", "on", "--for", hold_for).ok()
    with smtplib.SMTP("127.0.0.1", d.port, timeout=60) as s:
        s.ehlo("client.test")
        s.sendmail("s@client.test", ["r@example.test"],
                             hf.make_message("h0"))
    ids = d.queue_ids()
    hf.check(len(ids) == 1, "one message queued, got %d" % len(ids))
    d.stop()
    clone(d.spool, ids[0], N - 1)
    return d


def check_credit(d, mark, what):
    d.wait_log(r"queue bulk hold-mode-rewrite done", since=mark,
               timeout=hf.scaled(60))
    text = d.log_text(mark)
    m = re.search(r"queue bulk hold-mode-rewrite started messages=(\d+)",
                  text)
    hf.check(m is not None and int(m.group(1)) == N,
             "%s: held-time credit for %s of %d"
             % (what, m.group(1) if m else 0, N))
    plain = 0
    for qid in d.queue_ids():
        e, _ = hf.spool_msg_read(os.path.join(d.spool, "queue", qid))
        a = re.search(r"^arrival: (\S+)", e, re.M).group(1)
        b = re.search(r"^age_base: (\S+)", e, re.M)
        if b is None or b.group(1) == a:
            plain += 1
    hf.check(plain == 0, "%s: %d of %d envelopes without the credit"
             % (what, plain, N))


def main(env):
    # expiry while down: ends after the scan, not at the first dispatch
    d = backlog(env, "expiry", "2s")
    time.sleep(3)
    mark = d.mark()
    d.start(wait=False)
    d.wait_log(r"queue loaded messages=", timeout=hf.scaled(60), since=mark)
    check_credit(d, mark, "expired while down")
    d.stop()

    # operator "off" while loading: refused, then works once loaded
    d = backlog(env, "off", "1h")
    time.sleep(1.1)
    mark = d.mark()
    d.start(wait=False)
    refused = False
    deadline = time.time() + hf.scaled(30)
    while time.time() < deadline:
        r = d.ctl("hold-mode", "off")
        if r.rc == 0:
            break
        if "being loaded" in (r.out + r.err):
            refused = True
        time.sleep(0.01)
    hf.check(refused, "hold-mode off not refused during the scan")
    check_credit(d, mark, "off during the scan")
    d.stop()

    # the operator's bulk actions fill their queue (16): hold-mode's own
    # rewrite still starts.  The fault shim slows every fsync by DELAY_MS
    # while they are queued, so the first one (3000 messages) outlasts the
    # 20 holdfastctl runs: where a process starts slowly (an ASan build, a
    # machine with a slow fork) it ended in 1.4 s, after 5 of them.
    d = backlog(env, "full", "1h")
    trig = env.path("trigger")
    mark = d.mark()
    d.start(env=hf.shim_env("fsync:DELAY%d,fdatasync:DELAY%d"
                            % (DELAY_MS, DELAY_MS), trig))
    d.wait_log(r"queue loaded messages=", timeout=hf.scaled(60), since=mark)
    open(trig, "w").close()
    refused = False
    for _ in range(20):
        r = d.ctl("hold", "all")
        if r.rc != 0:
            hf.check("too many bulk" in r.out + r.err, "%r" % r)
            refused = True
            break
    hf.check(refused, "the 16 operator actions were done before the test "
             "filled the queue")
    d.ctl("hold-mode", "off").ok()
    d.wait_log(r"queue bulk hold-mode-rewrite started", since=mark,
               timeout=5)
    hf.check("lifetimes not persisted" not in d.log_text(mark),
             "hold-mode's rewrite refused by the operator's limit")
    os.unlink(trig)
    d.stop()


hf.run(main)
