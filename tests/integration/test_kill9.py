#!/usr/bin/python3
"""kill -9: right after a 250 the message survives a SIGKILL and is
delivered after restart; killed mid-DATA, nothing of the partial message
is left in tmp/ after restart and it is never delivered."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

ROUNDS = 4


def main(env):
    sink = env.sink()                     # down
    d = env.daemon(primary_port=sink.port).start()
    sent = []
    partial = []
    for i in range(ROUNDS):
        # (a) kill -9 right after the 250
        tok = "k9ok%d" % i
        content = hf.make_message(tok, body=b"x" * (i * 40000) + b"\r\n")
        c = d.connect()
        c.ehlo()
        c.cmd("MAIL FROM:<s@client.test>", expect=250)
        c.cmd("RCPT TO:<k9@example.test>", expect=250)
        r = c.data(hf.dot_stuff(content), expect=250)
        d.kill9()
        c.close()
        qid = r.queued_id()
        hf.check(qid, "reply %r" % r)
        sent.append(hf.Sent(tok, qid, content, ["k9@example.test"]))
        d.start()
        hf.check(qid in d.queue_ids(), "message %s (acked) not in queue/ "
                 "after kill -9 + restart: %s" % (qid, d.queue_ids()))
        hf.check(not d.tmp_entries(), "tmp/ not empty after restart: %s"
                 % d.tmp_entries())

        # (b) kill -9 mid-DATA
        tok = "k9partial%d" % i
        content = hf.make_message(tok, body=b"y" * 200000 + b"\r\n")
        c = d.connect()
        c.ehlo()
        c.cmd("MAIL FROM:<s@client.test>", expect=250)
        c.cmd("RCPT TO:<k9@example.test>", expect=250)
        c.cmd("DATA", expect=354)
        c.send(content[:len(content) // 2 + i * 1000])
        time.sleep(0.3 + 0.2 * i)
        hf.check(d.alive(), "daemon died mid-DATA before the kill")
        d.kill9()
        c.close()
        partial.append(tok)
        d.start()
        hf.check(not d.tmp_entries(), "tmp/ not empty after restart "
                 "following a mid-DATA kill: %s" % d.tmp_entries())
        hf.check(sorted(d.queue_ids()) == sorted(s.qid for s in sent),
                 "queue/ is %s, expected only the acked %s"
                 % (d.queue_ids(), [s.qid for s in sent]))
    hf.check(not d.quarantine_entries(), "quarantine/ not empty: %s"
             % d.quarantine_entries())
    sink.start()
    got = hf.verify_deliveries(sink, sent, timeout=20, settle=3)
    for tok in partial:
        hf.check(tok not in got, "partial message %s was delivered" % tok)
    hf.wait_until(lambda: not d.queue_ids(), 10, "queue/ to empty")


hf.run(main)
