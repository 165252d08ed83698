#!/usr/bin/python3
"""[server] max_sessions and timeout, [spool] commit_workers, and exit 1
when the listener cannot bind.

- max_sessions = 3: three open sessions get 220; the fourth gets
  '421 4.7.0' and is closed; once one of the three quits, a new one gets
  220 again.
- timeout = 2s: a client that says nothing after EHLO gets
  '421 4.4.2 Error: timeout exceeded' and the close after about 2s (the
  log says 'timeout state=idle'), not after the 300s default.
- commit_workers: daemons with 1 and with 7 differ by 6 threads
  (/proc/PID/status), and both commit and deliver mail.
- A second daemon configured with the first one's listen address exits 1
  with a log line naming the address, and does not touch the first."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402


def threads(d):
    return int(d.status()["Threads"])


def main(env):
    sink = env.sink().start()
    d = env.daemon(primary_port=sink.port,
                   server={"max_sessions": "3", "timeout": "2s"},
                   spool={"commit_workers": "1"})
    d7 = env.daemon(name="workers7", primary_port=sink.port,
                    spool={"commit_workers": "7"})
    d.start()
    d7.start()

    # ---- commit_workers
    n1, n7 = threads(d), threads(d7)
    hf.note("threads: %d with commit_workers = 1, %d with 7" % (n1, n7))
    hf.check(n7 - n1 == 6, "commit_workers 1 -> %d threads, 7 -> %d "
             "(want a difference of 6)" % (n1, n7))
    sent = [hf.send_ok(d.port, "w1"), hf.send_ok(d7.port, "w7")]
    hf.verify_deliveries(sink, sent, timeout=15)

    # ---- max_sessions
    open_ = [d.connect() for _ in range(3)]     # each got its 220
    c4 = hf.SMTPClient(d.port, greet=False, timeout=10)
    r = c4.reply()
    hf.check(r.code == 421 and "4.7.0" in r.text, "4th session: %r" % r)
    hf.check(c4.reply(allow_eof=True) is None, "4th session not closed")
    c4.close()
    d.wait_log(r"smtp connected", count=4)
    open_.pop().quit()
    hf.wait_until(lambda: len(d.grep(r"sess=\S+ disconnected")) >= 2, 5,
                  "two disconnects")
    c5 = d.connect()                            # 220 again
    c5.quit()
    for c in open_:
        c.quit()

    # ---- timeout
    c = d.connect()
    c.ehlo()
    t0 = time.monotonic()
    c.sock.settimeout(20)
    r = c.reply()
    took = time.monotonic() - t0
    hf.note("idle client: %r after %.1fs" % (r.text, took))
    hf.check(r.code == 421 and "4.4.2" in r.text, "idle client got %r" % r)
    hf.check(1.5 <= took <= hf.scaled(10), "timeout = 2s fired after "
             "%.1fs" % took)
    hf.check(c.reply(allow_eof=True) is None, "not closed after 421")
    c.close()
    d.wait_log(r"timeout state=idle", timeout=5)

    # ---- a bind failure is exit 1
    busy = env.daemon(name="busy", port=d.port, primary_port=sink.port)
    busy.expect_exit()                  # checked here: exit 1
    busy.start(wait=False)
    try:
        rc = busy.proc.wait(20)
    except Exception:
        hf.fail("daemon with a taken listen address did not exit")
    hf.check(rc == 1, "bind failure: exit %r, want 1; log:\n%s"
             % (rc, busy.tail()))
    hf.check(busy.grep(r"127\.0\.0\.1:%d" % d.port), "bind failure log "
             "does not name the address:\n%s" % busy.tail())
    hf.note("bind failure: %s" % busy.grep(r"127\.0\.0\.1:%d" % d.port)[0])
    hf.check(d.alive(), "the first daemon died")
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    s.close()


hf.run(main)
