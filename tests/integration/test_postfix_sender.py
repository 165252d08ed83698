#!/usr/bin/python3
"""Postfix as the sender (relayhost = holdfast) and Postfix as the primary
(relaying to smtp-sink): 10 messages all arrive once, content intact, and
the sender's queue is empty with status=sent in its log."""
import os
import re
import smtplib
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

N = 10


def main(env):
    sink = env.sink().start()
    primary = env.postfix(name="primary", role="primary",
                          relay_port=sink.port).start()
    d = env.daemon(primary_port=primary.port).start()
    sender = env.postfix(name="sender", role="sender",
                         relay_port=d.port).start()
    want = {}
    for i in range(N):
        tok = "pfs%d" % i
        # lines stay under 998: Postfix's smtp client folds longer ones
        content = hf.make_message(tok, body=b"line\r\n.dot\r\n" +
                                  (b"z" * 900 + b"\r\n") * (i * 5))
        rcpts = ["u%d@example.test" % i] + (["v%d@example.org" % i]
                                            if i % 3 == 0 else [])
        with smtplib.SMTP("127.0.0.1", sender.port, timeout=60) as s:
            s.sendmail("from%d@client.test" % i, rcpts, content)
        want[tok] = (content, rcpts)

    def all_there():
        have = {}
        for m in sink.messages():
            have.setdefault(hf.token_of(m.content), []).extend(m.rcpts)
        return all(sorted(hf.norm_addr(r) for r in have.get(t, [])) ==
                   sorted(hf.norm_addr(r) for r in v[1])
                   for t, v in want.items())
    hf.wait_until(all_there, 90, "all %d messages through Postfix -> "
                  "holdfast -> Postfix -> sink" % N, interval=0.5)
    import time
    time.sleep(hf.scaled(2))        # nothing more arrives
    seen = {}
    for m in sink.messages():
        tok = hf.token_of(m.content)
        hf.check(tok in want, "unexpected message at sink %r" % m)
        for r in m.rcpts:
            key = (tok, hf.norm_addr(r))
            hf.check(key not in seen, "duplicate delivery %s" % (key,))
            seen[key] = True
        # primary's Received, holdfast's, sender's, then the original
        rest = hf.strip_top_received(m.content, 1)
        hm, rest2 = hf.split_received(rest)
        hf.check(hm is not None, "second Received is not holdfast's: %r"
                 % rest[:300])
        hf.check(hm.group("helo") == b"sender.harness.test",
                 "holdfast Received from %r" % hm.group("helo"))
        orig = hf.strip_top_received(rest2, 1)
        hf.check(orig == want[tok][0], "content of %s changed: %r" %
                 (tok, (orig or b"")[:300]))
        hf.check(m.sender == "from%s@client.test" % tok[3:],
                 "envelope sender %s for %s" % (m.sender, tok))
    hf.wait_until(sender.queue_empty, 30, "sender Postfix queue empty")
    hf.wait_until(primary.queue_empty, 30, "primary Postfix queue empty")
    sent_lines = [l for l in sender.log_text().splitlines()
                  if "status=sent" in l and
                  re.search(r"relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d"
                            % d.port, l)]
    nrcpt = sum(len(v[1]) for v in want.values())
    hf.check(len(sent_lines) == nrcpt, "sender log has %d status=sent via "
             "holdfast, expected %d" % (len(sent_lines), nrcpt))
    hf.check(len(d.events("accepted")) == N, "holdfast accepted %d, "
             "expected %d" % (len(d.events("accepted")), N))
    hf.wait_until(lambda: not d.queue_ids(), 10, "holdfast queue/ empty")


hf.run(main)
