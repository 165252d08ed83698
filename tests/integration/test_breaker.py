#!/usr/bin/python3
"""The circuit breaker: a primary that refuses everything must not turn
the backlog into dead letters.

refuse_limit = 3, refuse_pause = 1h; the primary is smtp-sink answering
5xx to every RCPT (-f RCPT).  Six messages are sent.  After the third
refusal in a row the log says 'primary refusing' (warn), the streak's dead
letters are requeued, later refusals are 'kept ... reason=primary-refusing',
draining pauses: in the end dead/ is empty and all six are in queue/,
/metrics says holdfast_primary_refusing 1 and status refusing=yes.  The
primary is fixed (accepting smtp-sink): nothing moves during the pause;
`holdfastctl flush` ends it ('primary refusing ended reason=flush'), all
six are delivered exactly once and holdfast_primary_refusing is 0."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

LIMIT = 3


def main(env):
    sink = env.sink(options=["-f", "RCPT"]).start()
    d = env.daemon(primary_port=sink.port,
                   primary={"refuse_limit": str(LIMIT),
                            "refuse_pause": "1h"},
                   metrics={"listen": "auto"}).start()
    m = d.scrape()
    hf.check(m.get("holdfast_primary_refusing") == 0,
             "holdfast_primary_refusing %r at start"
             % m.get("holdfast_primary_refusing"))

    sent = [hf.send_ok(d.port, "ref%d" % i, ["user%d@example.test" % i])
            for i in range(6)]
    ids = sorted(s.qid for s in sent)
    lines = d.wait_log(r"\bprimary refusing host=", timeout=20)
    hf.check(re.search(r"Z warn primary refusing ", lines[0]),
             "'primary refusing' not logged as a warning: %s" % lines[0])
    hf.note(lines[0].strip())

    def settled():
        return not d.dead_ids() and sorted(d.queue_ids()) == ids
    hf.wait_until(settled, 15, "dead/ empty and all 6 in queue/ (dead %s, "
                  "queue %s)" % (d.dead_ids(), d.queue_ids()))
    time.sleep(hf.scaled(3))    # and it stays so: nothing drains
    hf.check(settled(), "after the trip: dead/ %s, queue/ %s"
             % (d.dead_ids(), d.queue_ids()))
    dead_lines = d.grep(r"msg=%s dead\b" % hf.ID_RE)
    hf.check(len(dead_lines) <= LIMIT, "%d 'dead' lines, at most %d "
             "(the streak) expected: %s" % (len(dead_lines), LIMIT,
                                            dead_lines))
    requeued = d.grep(r"requeued reason=primary-refusing")
    hf.check(len(requeued) == len(dead_lines),
             "%d dead but %d requeued reason=primary-refusing"
             % (len(dead_lines), len(requeued)))
    for s in sent:
        ev = [e[1] for e in d.events() if e[0] == s.qid]
        hf.check("dead" not in ev or
                 d.grep(r"msg=%s requeued reason=primary-refusing" % s.qid),
                 "%s went dead and was not requeued" % s.qid)
    hf.note("%d dead and requeued, %d kept" % (
        len(dead_lines), len(d.grep(r"kept rcpt=.*reason=primary-refusing"))))

    m = d.scrape()
    hf.check(m.get("holdfast_primary_refusing") == 1,
             "holdfast_primary_refusing %r, want 1"
             % m.get("holdfast_primary_refusing"))
    hf.check(m.get("holdfast_queue_messages", state="dead") == 0,
             "queue_messages{dead} %r" % m.get("holdfast_queue_messages",
                                               state="dead"))
    q = (m.get("holdfast_queue_messages", state="queued") +
         m.get("holdfast_queue_messages", state="deferred"))
    hf.check(q == 6, "queue_messages queued+deferred = %r, want 6" % q)
    st = d.ctl("status", "--json").ok().json()
    hf.check(st["refusing"] == "yes" and st["dead_messages"] == 0,
             "status: %r" % st)
    lst = d.ctl("queue", "--json").ok().json()
    hf.check(sorted(r["id"] for r in lst) == ids and
             all(r["state"] in ("queued", "deferred") for r in lst),
             "queue --json: %r" % lst)

    # the primary is fixed; the pause (1h) holds until flush
    sink.stop()
    sink.clear_dumps(tap=True)
    sink.start(options=[])
    time.sleep(hf.scaled(3))
    hf.check(sink.count() == 0, "delivered during the refuse pause")
    mark = d.mark()
    d.ctl("flush").ok()
    d.wait_log(r"primary refusing ended reason=flush", since=mark,
               timeout=5)
    hf.verify_deliveries(sink, sent, timeout=20, settle=2)
    hf.wait_until(lambda: not d.queue_ids(), 10, "queue/ to empty")
    hf.check(not d.dead_ids(), "dead/ after the flush: %s" % d.dead_ids())
    m = d.scrape()
    hf.check(m.get("holdfast_primary_refusing") == 0,
             "holdfast_primary_refusing %r after flush, want 0"
             % m.get("holdfast_primary_refusing"))
    hf.check(d.ctl("status", "--json").ok().json()["refusing"] == "no",
             "status still refusing after flush")


hf.run(main)
