#!/usr/bin/python3
"""SMTP smuggling: a client pipelines a fake end-of-data plus a second
transaction inside DATA.  holdfast must end DATA only at <CRLF>.<CRLF>:
the client's count of 'queued as' replies equals what reaches the primary,
nothing from evil@x arrives unless the client got a 250 for it, and what
goes out has CRLF line ends only (checked on the wire by the tap, and by
smtp-sink, which itself treats a bare LF as a line end)."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

SEQS = [b"\n.\n", b"\n.\r", b"\r.\n", b"\r.\r", b"\n.\r\n", b"\r.\r\n",
        b"\r\n\x00.\r\n", b"\r\n.\n", b"\n.\n\r\n", b"\r\n.\r\r\n"]
TAIL = (b"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
        b"smuggled\r\n.\r\n")


def read_replies(c, quiet=1.5, limit=20):
    """Read replies until the server goes quiet (quiet seconds times
    HOLDFAST_SLOW) or closes."""
    out = []
    c.sock.settimeout(hf.scaled(quiet))
    for _ in range(limit):
        try:
            r = c.reply(allow_eof=True)
        except hf.Fail:
            break
        if r is None:
            break
        out.append(r)
    return out


def main(env):
    sink = env.sink().start()
    d = env.daemon(primary_port=sink.port).start()
    total_queued = 0
    evil_acked = 0
    tokens = {}
    for i, seq in enumerate(SEQS):
        tok = "smug%d" % i
        c = d.connect()
        c.ehlo()
        c.cmd("MAIL FROM:<good@client.test>", expect=250)
        c.cmd("RCPT TO:<rcpt@example.test>", expect=250)
        c.cmd("DATA", expect=354)
        c.send(b"Subject: " + tok.encode() + b"\r\nMessage-ID: <" +
               tok.encode() + b"@harness.test>\r\n\r\nbody1" + seq + TAIL)
        replies = read_replies(c)
        c.quit()
        codes = [r.code for r in replies]
        queued = [r for r in replies if r.queued_id()]
        hf.note("%r -> %s" % (seq, codes))
        hf.check(queued, "sequence %r: no 'queued as' reply (got %s)"
                 % (seq, [r.text for r in replies]))
        hf.check(replies[0].queued_id(), "sequence %r: first reply %r"
                 % (seq, replies[0].text))
        # correct behaviour: exactly one message, the whole thing
        if len(queued) > 1:
            evil_acked += len(queued) - 1
        total_queued += len(queued)
        tokens[tok] = (seq, queued[0].queued_id(), len(queued))

    msgs = sink.wait_count(total_queued, hf.scaled(20), exact=False)
    time.sleep(hf.scaled(3))       # nothing more arrives
    msgs = sink.messages()
    hf.check(len(msgs) == total_queued,
             "client got %d 'queued as' replies but the primary received %d "
             "messages: %s" % (total_queued, len(msgs), msgs))
    evil = [m for m in msgs if m.sender == "evil@x"]
    hf.check(len(evil) <= evil_acked,
             "%d smuggled message(s) from evil@x reached the primary "
             "without the client being told it was queued: %s"
             % (len(evil), evil))
    for t in sink.delivered_transactions():
        hf.check(not t.line_end_problems(), "primary received %s in %r"
                 % (t.line_end_problems(), t))
        hf.check(t.sender != "evil@x" or evil_acked, "evil@x on the wire")
    # holdfast itself must not have split the message: one 250 each
    split = {t: v for t, v in tokens.items() if v[2] != 1}
    hf.check(not split, "DATA ended before <CRLF>.<CRLF> for %s"
             % [repr(v[0]) for v in split.values()])
    # and the smuggled text stayed in the body of the one message
    for m in msgs:
        tok = hf.token_of(m.content)
        hf.check(tok in tokens, "unexpected message at sink: %r" % m)
        _, rest = hf.split_received(m.content)
        hf.check(b"body1" in rest and b"smuggled" in rest and
                 b"MAIL FROM:<evil@x>" in rest,
                 "message %s lost its body: %r" % (tok, rest[-200:]))
        hf.check(b"\x00" not in m.content, "NUL forwarded in %s" % tok)


hf.run(main)
