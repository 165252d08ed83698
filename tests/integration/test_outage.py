#!/usr/bin/python3
"""Primary down: 5 messages are queued (250, logged, in queue/); once the
primary comes up all are delivered within probe_interval + 5 s of that
(the 5 s times HOLDFAST_SLOW), and the log says 'primary up'."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

PROBE = 2


def main(env):
    sink = env.sink()                      # not started: primary down
    d = env.daemon(primary_port=sink.port,
                   primary={"probe_interval": "%ds" % PROBE}).start()
    sent = [hf.send_ok(d.port, "out%d" % i,
                       ["user%d@example.test" % i, "other@example.org"])
            for i in range(5)]
    ids = set(s.qid for s in sent)
    hf.check(len(ids) == 5, "queue ids not unique: %s" % ids)
    acc = set(d.ids("accepted"))
    hf.check(ids <= acc, "accepted not logged for %s" % (ids - acc))
    hf.check(ids <= set(d.queue_ids()), "queue/ lacks %s (has %s)"
             % (ids - set(d.queue_ids()), d.queue_ids()))
    d.wait_log(r"\bprimary down\b", timeout=hf.scaled(PROBE + 10))
    # still nothing delivered, still queued after a few probes
    time.sleep(hf.scaled(PROBE * 2))
    hf.check(ids <= set(d.queue_ids()), "messages left queue/ while the "
             "primary was down: %s" % d.queue_ids())
    hf.check(not d.ids("delivered"), "delivered while primary down?")
    hf.check(not d.dead_ids(), "dead/ while primary down: %s"
             % d.dead_ids())
    mark = d.mark()
    t0 = time.monotonic()
    sink.start()
    hf.verify_deliveries(sink, sent, timeout=PROBE + hf.scaled(5),
                         settle=0)
    took = time.monotonic() - t0
    hf.note("drained %d messages %.1fs after the primary came up"
            % (len(sent), took))
    d.wait_log(r"\bprimary up\b", timeout=hf.scaled(5), since=mark)
    hf.verify_deliveries(sink, sent, timeout=hf.scaled(5))
    hf.check_log_lifecycle(d, sent)
    hf.wait_until(lambda: not d.queue_ids(), 10, "queue/ to empty")


hf.run(main)
