#!/usr/bin/python3
"""The reply table of issue 2: recipients past max_recipients get 452
4.5.3, more than 50 Received headers 554 5.4.6 (50 pass), unknown commands
500, bad syntax 501, bad sequence 503, VRFY 252, HELP 214, NOOP and RSET
250, MAIL 250 2.1.0 and RCPT 250 2.1.5 (also for a duplicate); DSN
parameters (ENVID, RET, NOTIFY, ORCPT) reach a primary that offers DSN,
as recorded by smtp-sink; a SIZE= claim over the limit is refused at MAIL
and nothing of any refused message is queued."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402


def received(n):
    return b"".join(b"Received: from hop%d.example (hop%d.example "
                    b"[192.0.2.%d])\r\n\tby relay.example; "
                    b"Mon, 23 Nov 2026 08:00:00 +0000\r\n"
                    % (i, i, i % 250 + 1) for i in range(n))


def main(env):
    sink = env.sink().start()
    d = env.daemon(primary_port=sink.port,
                   server={"max_recipients": "3"}).start()

    c = hf.SMTPClient(d.port)
    c.cmd("NOOP", expect=250)
    c.cmd("MAIL FROM:<a@client.test>", expect=503)     # before EHLO
    c.ehlo()
    c.cmd("FROBNICATE now", expect=500)
    c.cmd("RCPT TO:<x@example.test>", expect=503)       # before MAIL
    c.cmd("DATA", expect=503)
    r = c.cmd("VRFY postmaster")
    hf.check(r.code == 252, "VRFY -> %r, want 252" % r)
    r = c.cmd("HELP")
    hf.check(r.code == 214, "HELP -> %r, want 214" % r)
    c.cmd("MAIL FROM:a@client.test", expect=501)        # no brackets
    c.cmd("MAIL FROM:<a@client.test> BOGUS=1", expect=555)
    r = c.cmd("MAIL FROM:<a@client.test> SIZE=999999999999")
    hf.check(r.code == 552 and "5.3.4" in r.text, "SIZE over the limit "
             "-> %r" % r)
    r = c.cmd("MAIL FROM:<a@client.test>", expect=250)
    # the enhanced codes of RFC 3463 that operators grep for
    hf.check(r.text.startswith("250 2.1.0 "), "MAIL -> %r, wanted 2.1.0"
             % r)
    c.cmd("MAIL FROM:<b@client.test>", expect=503)      # nested
    for i in range(3):
        r = c.cmd("RCPT TO:<r%d@example.test>" % i, expect=250)
        hf.check(r.text.startswith("250 2.1.5 "), "RCPT -> %r, wanted "
                 "2.1.5" % r)
    r = c.cmd("RCPT TO:<r0@example.test>", expect=250)  # duplicate
    hf.check(r.text.startswith("250 2.1.5 "), "duplicate RCPT -> %r" % r)
    r = c.cmd("RCPT TO:<r3@example.test>")
    hf.check(r.code == 452 and "4.5.3" in r.text,
             "4th recipient with max_recipients=3 -> %r" % r)
    c.cmd("RSET", expect=250)
    c.cmd("RCPT TO:<x@example.test>", expect=503)       # RSET ended it

    # 50 Received headers pass, 51 are a loop
    c.cmd("MAIL FROM:<a@client.test>", expect=250)
    c.cmd("RCPT TO:<hops50@example.test>", expect=250)
    ok = hf.make_message("hops50", extra_headers=received(50))
    r = c.data(hf.dot_stuff(ok), expect=250)
    qid = r.text.split()[-1]
    c.cmd("MAIL FROM:<a@client.test>", expect=250)
    c.cmd("RCPT TO:<hops51@example.test>", expect=250)
    loop = hf.make_message("hops51", extra_headers=received(51))
    r = c.data(hf.dot_stuff(loop), expect=None)
    hf.check(r.code == 554 and "5.4.6" in r.text,
             "51 Received headers -> %r, want 554 5.4.6" % r)

    # DSN parameters kept and passed on (smtp-sink offers DSN)
    c.cmd("MAIL FROM:<a@client.test> RET=HDRS ENVID=env+2Bid", expect=250)
    c.cmd("RCPT TO:<dsn@example.test> NOTIFY=SUCCESS,FAILURE "
          "ORCPT=rfc822;dsn+40example.test", expect=250)
    # RCPT's parameter table: a value is needed, checked; others are 555
    for bad in ("NOTIFY", "NOTIFY=SOMETIMES", "NOTIFY=NEVER,SUCCESS",
                "ORCPT", "ORCPT=rfc822", "BOGUS=1", "SIZE=10"):
        r = c.cmd("RCPT TO:<dsn2@example.test> " + bad)
        hf.check(r.code == 555 and r.text.startswith("555 5.5.4 "),
                 "RCPT ... %s -> %r, want 555 5.5.4" % (bad, r))
    dsn = hf.make_message("dsn")
    r = c.data(hf.dot_stuff(dsn), expect=250)
    c.quit()

    hf.wait_until(lambda: not d.queue_ids(), 20, "queue to drain")
    msgs = sink.wait_count(2, 20)
    raw = b"".join(open(m.path, "rb").read() for m in msgs)
    hf.check(b"RET=HDRS" in raw and b"ENVID=env+2Bid" in raw,
             "MAIL parameters RET/ENVID not passed on: %r" % raw[:400])
    hf.check(b"NOTIFY=SUCCESS,FAILURE" in raw and
             b"ORCPT=rfc822;dsn+40example.test" in raw,
             "RCPT parameters NOTIFY/ORCPT not passed on")
    hf.check(d.grep(r"msg=%s delivered" % qid), "50-hop message not "
             "delivered")
    hf.check(not d.dead_ids(), "something went dead: %s" % d.dead_ids())
    hf.check(d.grep(r"mail loop received=51"), "no log line for the loop")


hf.run(main)
