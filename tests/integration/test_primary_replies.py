#!/usr/bin/python3
"""The primary's replies: 4xx -> deferred (logged with the reply), retried
with backoff and delivered once the primary accepts; 5xx for a recipient ->
'dead' logged with the reply and the message in dead/; other recipients of
the same message delivered once; nothing lost.

Part A uses smtp-sink answering 450 to the final dot (-r .), then a normal
smtp-sink.  Part B uses a real Postfix primary whose check_recipient_access
map answers 450 / 550 for given recipients, relaying the rest to a sink."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402


def part_a(env):
    sink = env.sink(name="sinkA", options=["-r", "."]).start()
    d = env.daemon(name="hfA", primary_port=sink.port).start()
    s = hf.send_ok(d.port, "soft0", ["soft@example.test"])
    lines = d.wait_log(r"msg=%s deferred\b" % s.qid, timeout=15)
    hf.check(' reply="450' in lines[0], "deferred line lacks the primary's "
             "450 reply: %s" % lines[0])
    hf.check(s.qid in d.queue_ids(), "deferred message left queue/")
    txs = sink.transactions()
    hf.check(txs and all(t.final == 450 for t in txs),
             "tap: the primary's end-of-data replies were %s"
             % [t.final for t in txs])
    # a few retries happen with backoff (retry_min 1s .. retry_max 4s)
    d.wait_log(r"msg=%s deferred\b" % s.qid, timeout=15, count=3)
    hf.check(not d.dead_ids(), "a 4xx sent the message to dead/")
    sink.stop()
    sink.clear_dumps()        # smtp-sink dumps even what it refuses
    sink.start(options=[])
    hf.verify_deliveries(sink, [s], timeout=15)
    hf.check_log_lifecycle(d, [s])


def part_b(env):
    sink = env.sink(name="sinkB").start()
    primary = env.postfix(name="primary", role="primary",
                          relay_port=sink.port,
                          access={"tempfail@example.test":
                                  "450 4.7.1 harness tempfail",
                                  "reject@example.test":
                                  "550 5.7.1 harness reject"}).start()
    d = env.daemon(name="hfB", primary_port=primary.port).start()

    b1 = hf.send_ok(d.port, "b1", ["reject@example.test"])
    b2 = hf.send_ok(d.port, "b2", ["ok2@example.test", "reject@example.test"])
    b3 = hf.send_ok(d.port, "b3", ["tempfail@example.test"])
    b4 = hf.send_ok(d.port, "b4", ["tempfail@example.test",
                                   "ok4@example.org"])
    b5 = hf.send_ok(d.port, "b5", ["ok5@example.test"])
    # refused and deferred together: the refused recipient's copy goes to
    # dead/ at once under a new ID, the message stays queued for the other
    b6 = hf.send_ok(d.port, "b6", ["tempfail@example.test",
                                   "reject@example.test"])

    for s in (b1, b2):
        ls = d.wait_log(r"msg=%s dead\b" % s.qid, timeout=20)
        hf.check(re.search(r'rcpt=(<|")reject@example\.test(>|")', ls[0]),
                 "dead line lacks rcpt: %s" % ls[0])
        hf.check(' reply="550' in ls[0] and "harness reject" in ls[0],
                 "dead line lacks the primary's reply: %s" % ls[0])
    hf.wait_until(lambda: b1.qid in d.dead_ids(), 10,
                  "message %s in dead/" % b1.qid)
    hf.check(b1.qid not in d.queue_ids(), "dead message still in queue/")
    for s in (b3, b4):
        ls = d.wait_log(r"msg=%s deferred\b" % s.qid, timeout=20)
        hf.check(' reply="450' in ls[0] and "harness tempfail" in ls[0],
                 "deferred line lacks the primary's reply: %s" % ls[0])
    hf.check(b3.qid in d.queue_ids(), "deferred message left queue/")
    ls = d.wait_log(r"msg=%s refused recipients moved to dead copy=" %
                    b6.qid, timeout=20)
    copy = re.search(r"copy=([0-9a-f]{16})", ls[0]).group(1)
    hf.check(copy in d.dead_ids(), "split copy %s not in dead/" % copy)
    hf.check(b6.qid in d.queue_ids(), "split message left queue/")
    # the accepted recipients went through meanwhile (Received from the
    # Postfix primary on top)
    partial = [hf.Sent("b2", b2.qid, b2.content, ["ok2@example.test"],
                       all_rcpts=b2.rcpts),
               hf.Sent("b4", b4.qid, b4.content, ["ok4@example.org"],
                       all_rcpts=b4.rcpts),
               b5]
    hf.verify_deliveries(sink, partial, timeout=30, strip=1, settle=1)
    hf.check(b1.qid in d.dead_ids(), "dead/ lacks %s" % b1.qid)

    # primary now accepts tempfail@.  A reload reaches only new smtpd
    # processes: hold the retries until holdfast's connections have gone
    # idle and quit (DRAIN_IDLE_SEC), or a retry every second or two can
    # keep talking to the old smtpd with the old table.
    primary.set_access({"reject@example.test": "550 5.7.1 harness reject"})
    hf.check(d.ctl("hold", "all").rc == 0, "hold all failed")
    hf.wait_until(lambda: d.queue_ids() == [], 15, "queue/ held")
    time.sleep(hf.scaled(4))
    hf.check(d.ctl("release", "all").rc == 0, "release all failed")
    mark = d.mark()
    final = [hf.Sent("b2", b2.qid, b2.content, ["ok2@example.test"],
                     all_rcpts=b2.rcpts),
             hf.Sent("b3", b3.qid, b3.content, ["tempfail@example.test"]),
             hf.Sent("b4", b4.qid, b4.content, ["ok4@example.org",
                                                "tempfail@example.test"]),
             hf.Sent("b6", b6.qid, b6.content, ["tempfail@example.test"],
                     all_rcpts=b6.rcpts),
             b5]
    hf.verify_deliveries(sink, final, timeout=30, strip=1, settle=3)
    for s in (b3, b4, b6):
        hf.check(d.grep(r'msg=%s delivered rcpt=(<|")tempfail@example\.test'
                        % s.qid),
                 "no delivered line for tempfail@ of %s" % s.qid)
    hf.wait_until(lambda: sorted(d.queue_ids()) == [], 15,
                  "queue/ to empty (has %s)" % d.queue_ids())
    hf.check(b1.qid in d.dead_ids(), "dead/ lost %s" % b1.qid)
    hf.check(not d.grep(r"msg=%s dead\b" % b3.qid),
             "tempfailed message went dead")
    hf.wait_until(primary.queue_empty, 30, "Postfix primary queue empty")
    del mark


def main(env):
    part_a(env)
    hf.note("part A (smtp-sink 450 at end of data) ok")
    part_b(env)
    hf.note("part B (Postfix primary 450/550 per recipient) ok")
    # last, the log format of the contract: rcpt=<x> on delivered/dead
    bad = [l for d in env.daemons for l in d.log_text().splitlines()
           if re.search(r"msg=[0-9a-f]{16} (delivered|dead) ", l)
           and not re.search(r" rcpt=<[^>]*> ", l)]
    hf.check(not bad, "behaviour ok, but delivered/dead lines do not "
             "carry rcpt=<x> as the contract says, e.g.: %s" % (bad[0] if bad else ""))


hf.run(main)
