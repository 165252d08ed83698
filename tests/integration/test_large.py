#!/usr/bin/python3
"""Large messages: 20 MB with long lines and dot-leading lines arrives
byte-identical (after Received); with max_message_size = 1M a bigger
message gets 552 5.3.4, also when MAIL FROM declared a small SIZE=, and
nothing of it is queued or delivered; the session stays usable."""
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402


def big_body(size, seed):
    rng = random.Random(seed)
    parts = []
    n = 0
    alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789 .,;:-_=+/"
    while n < size:
        k = rng.choice((0, 1, 2, 3))
        if k == 0:
            line = b"." * rng.randint(1, 4) + bytes(rng.choice(alphabet)
                                                    for _ in range(60))
        elif k == 1:
            line = b"L" * rng.randint(990, 5000)       # long lines
        elif k == 2:
            line = b""
        else:
            line = bytes(rng.choice(alphabet) for _ in range(72))
        parts.append(line)
        n += len(line) + 2
    parts.append(b".")          # a line that is a lone dot (stuffed to ..)
    parts.append(b"end")
    return b"\r\n".join(parts) + b"\r\n"


def main(env):
    sink = env.sink().start()
    d = env.daemon(primary_port=sink.port)
    d.start()
    content = hf.make_message("large20", body=big_body(20 * 1024 * 1024, 1))
    t0 = time.monotonic()
    s = hf.send_ok(d.port, "large20", ["big@example.test"], content)
    hf.note("20 MB queued in %.1fs" % (time.monotonic() - t0))
    hf.verify_deliveries(sink, [s], timeout=120, settle=0.5)
    hf.check_log_lifecycle(d, [s])
    m = d.grep(r"msg=%s accepted" % s.qid)
    hf.check(m and "size=" in m[0], "accepted line without size=: %s" % m)

    # second daemon with a 1M limit
    d2 = env.daemon(name="small", primary_port=sink.port,
                    server={"max_message_size": "1M"}).start()
    over = hf.make_message("over", body=big_body(1536 * 1024, 2))
    under = hf.make_message("under", body=big_body(700 * 1024, 3))
    c = d2.connect(timeout=60)
    r = c.ehlo()
    sz = [l for l in r.lines if l[4:].upper().startswith(b"SIZE")]
    hf.check(sz, "EHLO lacks SIZE")
    # honest client, no SIZE=: caught at the end of DATA on actual bytes
    c.cmd("MAIL FROM:<a@client.test>", expect=250)
    c.cmd("RCPT TO:<big@example.test>", expect=250)
    r = c.data(hf.dot_stuff(over), expect=None)
    hf.check(r.code == 552 and r.lines[-1][4:9] == b"5.3.4",
             "over-size DATA -> %r (want 552 5.3.4)" % r)
    # lying SIZE=
    c.cmd("MAIL FROM:<a@client.test> SIZE=1000", expect=250)
    c.cmd("RCPT TO:<big@example.test>", expect=250)
    r = c.data(hf.dot_stuff(over), expect=None)
    hf.check(r.code == 552 and r.lines[-1][4:9] == b"5.3.4",
             "SIZE=1000 lie -> %r (want 552 5.3.4)" % r)
    # declared too big: refused at MAIL (RFC 1870) with 552 5.3.4
    r = c.cmd("MAIL FROM:<a@client.test> SIZE=%d" % (5 * 1024 * 1024))
    hf.check(r.code == 552 and r.lines[-1][4:9] == b"5.3.4",
             "MAIL SIZE=5M on a 1M server -> %r (want 552 5.3.4)" % r)
    # the session still works; under the limit goes through
    c.cmd("MAIL FROM:<a@client.test> SIZE=%d" % len(under), expect=250)
    c.cmd("RCPT TO:<under@example.test>", expect=250)
    r = c.data(hf.dot_stuff(under), expect=250)
    qid = r.queued_id()
    hf.check(qid, "under-limit message: %r" % r)
    c.quit()
    s2 = hf.Sent("under", qid, under, ["under@example.test"])
    hf.verify_deliveries(sink, [s, s2], timeout=30)
    hf.check(len(d2.events("accepted")) == 1,
             "small daemon accepted %d messages, expected 1"
             % len(d2.events("accepted")))


hf.run(main)
