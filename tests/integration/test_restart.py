#!/usr/bin/python3
"""Restart: with the primary down, 50 messages are queued; SIGTERM (clean
exit), start again on the same spool, bring the primary up: every message
delivered exactly once."""
import os
import smtplib
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

N = 50


def main(env):
    sink = env.sink()                     # down
    d = env.daemon(primary_port=sink.port).start()
    sent = []
    # several transactions per session, as a real MTA would
    for batch in range(5):
        with smtplib.SMTP("127.0.0.1", d.port, timeout=60) as s:
            s.ehlo("client.test")
            for i in range(N // 5):
                tok = "rst%02d" % (batch * (N // 5) + i)
                content = hf.make_message(tok)
                rc = ["r%s@example.test" % tok]
                code, _ = s.mail("s@client.test")
                hf.check(code == 250, "MAIL -> %s" % code)
                code, _ = s.rcpt(rc[0])
                hf.check(code == 250, "RCPT -> %s" % code)
                code, text = s.data(content)
                hf.check(code == 250, "DATA -> %s %r" % (code, text))
                qid = text.decode().rsplit(" ", 1)[-1]
                sent.append(hf.Sent(tok, qid, content, rc))
    ids = [x.qid for x in sent]
    hf.check(len(set(ids)) == N, "queue ids not unique")
    hf.check(sorted(d.queue_ids()) == sorted(ids),
             "queue/ has %d entries, expected %d"
             % (len(d.queue_ids()), N))
    d.stop()                               # SIGTERM, must exit 0
    hf.check(sorted(d.queue_ids()) == sorted(ids),
             "queue/ changed across SIGTERM: %d entries"
             % len(d.queue_ids()))
    mark = d.mark()
    d.start()
    hf.check(not d.tmp_entries(), "tmp/ not empty after restart")
    sink.start()
    hf.verify_deliveries(sink, sent, timeout=60, settle=3)
    hf.check(len(sink.messages()) == N, "sink has %d messages, expected %d"
             % (len(sink.messages()), N))
    hf.check_log_lifecycle(d, [hf.Sent(x.token, x.qid, None, [])
                               for x in sent], since=0)
    hf.wait_until(lambda: not d.queue_ids(), 10, "queue/ to empty")
    hf.check(len(d.ids("delivered", since=mark)) == N,
             "%d delivered lines after restart, expected %d"
             % (len(d.ids("delivered", since=mark)), N))


hf.run(main)
