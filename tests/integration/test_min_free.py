#!/usr/bin/python3
"""Spool high-water: below [spool] min_free of free space, new mail gets
452 4.3.1 at MAIL (never a 5xx) and holdfast_spool_low says why; with the
limit back under the free space, mail is accepted and delivered."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402


def main(env):
    sink = env.sink().start()
    # more than any disk here has
    d = env.daemon(primary_port=sink.port, spool={"min_free": "1000000G"},
                   metrics={"listen": "auto"}).start()
    c = hf.SMTPClient(d.port)
    c.ehlo()
    r = c.cmd("MAIL FROM:<a@client.test>")
    hf.check(r.code == 452 and "4.3.1" in r.text,
             "MAIL below min_free -> %r, want 452 4.3.1" % r)
    c.quit()
    m = d.scrape()
    hf.check(m.get("holdfast_spool_low") == 1, "holdfast_spool_low is %r"
             % m.get("holdfast_spool_low"))
    hf.check(d.grep(r"spool below min_free"), "no log line for min_free")
    hf.check(not d.queue_ids(), "something was queued")
    d.stop()

    d2 = env.daemon(name="hf2", primary_port=sink.port,
                    spool={"min_free": "1K"},
                    metrics={"listen": "auto"}).start()
    s = hf.send_ok(d2.port, "minfree-ok")
    hf.verify_deliveries(sink, [s], timeout=20)
    m = d2.scrape()
    hf.check(m.get("holdfast_spool_low") == 0, "holdfast_spool_low is %r"
             % m.get("holdfast_spool_low"))


hf.run(main)
