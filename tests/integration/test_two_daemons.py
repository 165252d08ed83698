#!/usr/bin/python3
"""Two daemons on one spool: the first holds an exclusive lock on it for
its whole life.  With a message in flight in the first (tmp/ holds it), a
second daemon on the same spool (its own port) exits 1 with a message
naming the first's PID, before it reads or changes anything: the first's
tmp/ is untouched, the message in flight still commits with 250, and the
first still accepts mail.  The lock does not stop holdfastctl's offline
read-only view of a spool another process holds."""
import fcntl
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402


def main(env):
    sink = env.sink()                       # down: mail stays queued
    d = env.daemon(primary_port=sink.port).start()

    c = d.connect()
    c.ehlo()
    c.cmd("MAIL FROM:<s@client.test>", expect=250)
    c.cmd("RCPT TO:<inflight@example.test>", expect=250)
    c.cmd("DATA", expect=354)
    payload = hf.dot_stuff(hf.make_message("inflight"))   # ends CRLF.CRLF
    half = len(payload) // 2
    c.send(payload[:half])
    hf.wait_until(lambda: d.tmp_entries(), 10, "the message in tmp/")
    tmp_before = sorted(d.tmp_entries())

    d2 = env.daemon(name="second", primary_port=sink.port,
                    spool_dir=d.spool)
    d2.expect_exit()                    # checked here: exit 1
    d2.start(wait=False)
    hf.wait_until(lambda: not d2.alive(), 20, "the second daemon to exit")
    text = d2.log_text()
    hf.check(d2.proc.returncode == 1, "second daemon exit %s, wanted 1; "
             "log:\n%s" % (d2.proc.returncode, text))
    hf.check(re.search(r"spool %s is in use by another holdfast, pid %d\b"
                       % (re.escape(d.spool), d.pid), text),
             "no refusal naming pid %d; log:\n%s" % (d.pid, text))
    hf.check("queue loaded" not in text and "removed" not in text,
             "the second daemon scanned the spool:\n%s" % text)
    hf.check(sorted(d.tmp_entries()) == tmp_before,
             "tmp/ changed: %s -> %s" % (tmp_before, d.tmp_entries()))
    hf.note("second daemon: %s" % [l for l in text.splitlines()
                                   if "in use" in l][0].split(" warn ")[-1])

    # the first one's receipt in flight still commits
    c.send(payload[half:])
    r = c.reply()
    hf.check(r.code == 250, "end of DATA in the first -> %r" % r)
    qid = r.queued_id()
    c.quit()
    hf.check(qid in d.queue_ids(), "%s not in queue/" % qid)
    # and it still accepts, and its control socket still answers
    hf.send_ok(d.port, "after")
    st = d.ctl("status")
    hf.check(st.rc == 0, "status after the second start: %r" % st)
    d.stop()

    # offline view while another process holds the lock
    with open(os.path.join(d.spool, "lock"), "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        q = d.ctl("queue")
        hf.check(q.rc == 0 and qid in q.out and "read-only" in q.err,
                 "offline queue with the lock held: %r" % q)


hf.run(main)
