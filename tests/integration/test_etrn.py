#!/usr/bin/python3
"""ETRN (RFC 1985) from the primary starts a drain at once.

etrn_from = 127.0.0.1/32, probe_interval = 300s.  With the primary down
(found by a delivery attempt or the idle health probe) a message is queued
and the next probe is 5 minutes away.  The primary comes back.  EHLO advertises ETRN; ETRN without
an argument is a syntax error (501) and ETRN inside a transaction a
sequence error (503).  ETRN from 127.0.0.2 (client socket bound there) gets
458 4.7.1 and nothing is delivered; ETRN from 127.0.0.1 gets 250 and the
message arrives within a few seconds.  A daemon without etrn_from answers
458 to 127.0.0.1 too."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402


def etrn(d, source, arg="example.test"):
    c = d.connect(source=source)
    try:
        r = c.ehlo("primary.example.test")
        hf.check(any(l[4:].upper() == b"ETRN" for l in r.lines),
                 "EHLO does not advertise ETRN: %r" % r)
        r = c.cmd("ETRN " + arg if arg else "ETRN")
        c.quit()
        return r
    finally:
        c.close()


def main(env):
    sink = env.sink()                       # primary down
    d = env.daemon(primary_port=sink.port,
                   primary={"probe_interval": "300s",
                            "etrn_from": "127.0.0.1/32"}).start()
    s = hf.send_ok(d.port, "etrn1", ["etrn@example.test"])
    # the primary is known down: found by the first attempt at this
    # message, or already by the idle health probe before it arrived
    d.wait_log(r"primary down", timeout=hf.scaled(10))
    sink.start()
    time.sleep(hf.scaled(2))
    hf.check(sink.count() == 0 and s.qid in d.queue_ids(),
             "delivered without ETRN within %.0fs (probe_interval 300s?)"
             % hf.scaled(2))

    # syntax and sequence
    c = d.connect()
    try:
        c.ehlo()
        c.cmd("ETRN", expect=501)
        c.cmd("MAIL FROM:<a@client.test>", expect=250)
        c.cmd("ETRN example.test", expect=503)
        c.quit()
    finally:
        c.close()
    hf.check(sink.count() == 0, "ETRN with a syntax or sequence error "
             "started a drain")

    # from a non-allowed address
    mark = d.mark()
    r = etrn(d, "127.0.0.2")
    hf.check(r.code == 458 and r.lines[0].startswith(b"458 4.7.1 "),
             "ETRN from 127.0.0.2 -> %r, want 458 4.7.1" % r)
    d.wait_log(r"etrn refused addr=127\.0\.0\.2\b", since=mark,
               timeout=hf.scaled(5))
    time.sleep(hf.scaled(3))
    hf.check(sink.count() == 0 and s.qid in d.queue_ids(),
             "refused ETRN from 127.0.0.2 still drained the queue")
    hf.check(not d.ids("delivered"), "delivered after a refused ETRN")
    hf.note("ETRN from 127.0.0.2: %s" % r.text)

    # from the primary's address
    mark = d.mark()
    t0 = time.monotonic()
    r = etrn(d, "127.0.0.1")
    hf.check(r.code == 250, "ETRN from 127.0.0.1 -> %r, want 250" % r)
    d.wait_log(r"etrn addr=127\.0\.0\.1\b", since=mark,
               timeout=hf.scaled(5))
    hf.verify_deliveries(sink, [s], timeout=hf.scaled(5), settle=1)
    hf.note("ETRN from 127.0.0.1: %s; delivered %.1fs later"
            % (r.text, time.monotonic() - t0))
    hf.check_log_lifecycle(d, [s])
    hf.wait_until(lambda: not d.queue_ids(), 10, "queue/ to empty")

    # etrn_from empty (the default): nobody may
    d2 = env.daemon(name="noetrn", primary_port=sink.port).start()
    r = etrn(d2, "127.0.0.1")
    hf.check(r.code == 458, "ETRN without etrn_from -> %r, want 458" % r)


hf.run(main)
