#!/usr/bin/python3
"""Catch-all: any local part in our domains (mixed case, trailing dot) and
<postmaster> get 250; each message reaches the primary byte-identical
apart from holdfast's Received header (queue id, 'for <rcpt>')."""
import os
import random
import string
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

WANT_EXT = ["SIZE", "8BITMIME", "PIPELINING", "ENHANCEDSTATUSCODES",
            "DSN", "CHUNKING"]


def rand_local(rng):
    chars = string.ascii_letters + string.digits + "._-+="
    s = "".join(rng.choice(chars) for _ in range(rng.randint(3, 20)))
    return "X" + s.strip(".").replace("..", ".") + "y"


def main(env):
    rng = random.Random(1234)
    sink = env.sink().start()
    d = env.daemon(primary_port=sink.port).start()
    # Once the probe has seen the primary's EHLO, SMTPUTF8 is offered only
    # if the primary offers it: smtp-sink does not.
    hf.wait_until(lambda: "primary_smtputf8: unknown" not in
                  d.ctl("status").out, 10, "the probe learning the primary")

    c = d.connect()
    r = c.ehlo("client.test")
    ext = [l[4:].split(b" ")[0].decode().upper() for l in r.lines[1:]]
    for e in WANT_EXT:
        hf.check(e in ext, "EHLO does not advertise %s (got %s)" % (e, ext))
    hf.check("SMTPUTF8" not in ext,
             "SMTPUTF8 advertised though the primary lacks it: %s" % ext)
    # the 250 lines for RCPT on one session
    c.cmd("MAIL FROM:<probe@client.test>", expect=250)
    for dom in ("example.test", "EXAMPLE.org", "Example.Test.",
                "example.org."):
        for _ in range(3):
            a = "%s@%s" % (rand_local(rng), dom)
            r = c.cmd("RCPT TO:<%s>" % a)
            hf.check(r.code == 250, "RCPT TO:<%s> -> %r" % (a, r))
    for a in ("<postmaster>", "<Postmaster>", "<postmaster@example.test>"):
        r = c.cmd("RCPT TO:" + a)
        hf.check(r.code == 250, "RCPT TO:%s -> %r" % (a, r))
    c.cmd("RSET", expect=250)
    c.quit()

    # messages, one recipient each so 'for <rcpt>' is unambiguous
    rcpts = ["%s@example.test" % rand_local(rng),
             "%s@EXAMPLE.ORG" % rand_local(rng),
             "%s@example.test." % rand_local(rng),
             "MiXeD.CaSe@Example.Org.",
             "postmaster@example.org",
             "postmaster"]
    sent = []
    for i, rc in enumerate(rcpts):
        tok = "catch%d" % i
        body = (b"line with trailing spaces   \r\n\tindented\r\n"
                b".leading dot\r\n..two dots\r\n\r\n\r\n"
                b"8bit: \xc3\xa9\xc3\xa0\r\nlast line " + tok.encode()
                + b"\r\n")
        sent.append(hf.send_ok(d.port, tok, [rc],
                               hf.make_message(tok, body=body)))
    # and one with several recipients
    multi = ["a1@example.test", "B2@example.org", "c3@Example.Test"]
    sent.append(hf.send_ok(d.port, "catchmulti", multi))
    # the null sender
    s = hf.send_ok(d.port, "catchnull", ["bounce@example.test"], sender="")
    sent.append(s)
    hf.note("queued %d messages" % len(sent))

    got = hf.verify_deliveries(sink, sent, timeout=20)
    # the null sender must stay null on the way out
    m = got["catchnull"][0][0]
    hf.check(m.sender == "", "null sender forwarded as <%s>" % m.sender)
    m = got["catch0"][0][0]
    hf.check(m.sender == "sender@client.test", "sender forwarded as <%s>"
             % m.sender)
    hf.check_log_lifecycle(d, sent)
    hf.wait_until(lambda: not d.queue_ids(), 10, "queue/ to empty")
    hf.check(not d.dead_ids(), "dead/ not empty: %s" % d.dead_ids())


hf.run(main)
