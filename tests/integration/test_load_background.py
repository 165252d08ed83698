#!/usr/bin/python3
"""Startup with a backlog: the spool scan runs in slices on the event loop,
so the daemon serves SMTP (and status shows "loading N of M") while it
indexes; a message accepted during the scan and every spooled one is then
delivered exactly once."""
import os
import re
import smtplib
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

N = 3000        # more than the daemon indexes before its loop starts


def clone(spool, qid, n):
    """n copies of queue/<qid> under fresh IDs, with the same owner."""
    src = os.path.join(spool, "queue", qid)
    st = os.stat(src)
    env, body = hf.spool_msg_read(src)
    hf.check(re.search(r"^id: %s$" % qid, env, re.M) is not None,
             "envelope has no id line")
    ids = []
    for _ in range(n):
        new = os.urandom(8).hex()
        dst = os.path.join(spool, "queue", new)
        hf.spool_msg_write(dst, re.sub(r"^id: .*$", "id: " + new, env,
                                       count=1, flags=re.M), body)
        os.chown(dst, st.st_uid, st.st_gid)
        ids.append(new)
    return ids


def send(s, token):
    """One message on an open session; its queue ID."""
    code, _ = s.mail("s@client.test")
    hf.check(code == 250, "MAIL -> %s" % code)
    code, _ = s.rcpt("r%s@example.test" % token)
    hf.check(code == 250, "RCPT -> %s" % code)
    code, text = s.data(hf.make_message(token))
    hf.check(code == 250, "DATA -> %s %r" % (code, text))
    return text.decode().rsplit(" ", 1)[-1]


def main(env):
    sink = env.sink()                     # down until the scan is over
    d = env.daemon(primary_port=sink.port).start()
    with smtplib.SMTP("127.0.0.1", d.port, timeout=60) as s:
        s.ehlo("client.test")
        send(s, "load0")
    ids = d.queue_ids()
    hf.check(len(ids) == 1, "queue/ has %d entries" % len(ids))
    d.stop()
    ids += clone(d.spool, ids[0], N - 1)

    mark = d.mark()
    d.start(wait=False)
    # the first banner comes while the scan still runs
    s = None
    for _ in range(int(hf.scaled(500))):
        try:
            s = smtplib.SMTP("127.0.0.1", d.port, timeout=hf.scaled(30))
            break
        except OSError:
            time.sleep(0.01)
    hf.check(s is not None, "no connection")
    st = d.ctl("status").out
    # per-ID actions wait for the scan (a message not indexed yet would be
    # missed by "hold all"); after it they work
    r = d.ctl("hold", "all")
    hf.check(r.rc == 0 or "still being loaded" in r.err, repr(r))
    if r.rc == 0:
        hf.wait_until(lambda: len(d._entries("hold")) == N, 60, "hold all")
        hf.check(d.ctl("release", "all").rc == 0, "release all")
        hf.wait_until(lambda: not d._entries("hold"), 60, "release all")
    else:
        print("during the scan: %s" % r.err.strip())
    s.ehlo("client.test")
    late = send(s, "late")
    s.quit()
    # N, or N + 1 if the late message came before the scan's end
    d.wait_log(r"queue loaded messages=%d|queue loaded messages=%d "
               % (N, N + 1), timeout=hf.scaled(60), since=mark)
    text = d.log_text(mark)
    hf.check(re.search(r"queue loading messages=%d indexed=\d+" % N, text)
             is not None, "no 'queue loading' line")
    connected = text.find("smtp connected")
    loaded = text.find("queue loaded")
    hf.check(0 <= connected < loaded,
             "no session was served before the scan ended")
    print("status during the scan: %r" % [ln for ln in st.splitlines()
                                         if "loading" in ln])
    hf.check("loading" not in d.ctl("status").out,
             "status shows loading after the scan")

    sink.start()
    want = sorted(ids + [late])
    hf.wait_until(lambda: len(d.ids("delivered", since=mark)) >= N + 1,
                  hf.scaled(240), "every message delivered")
    time.sleep(2)                         # a duplicate would show by now
    got = sorted(d.ids("delivered", since=mark))
    hf.check(got == want, "delivered %d lines for %d distinct IDs, want %d"
             % (len(got), len(set(got)), len(want)))
    hf.check(sink.count() == N + 1, "sink has %d messages, expected %d"
             % (sink.count(), N + 1))
    hf.wait_until(lambda: not d.queue_ids(), 20, "queue/ to empty")


hf.run(main)
