#!/usr/bin/python3
"""A flapping primary during a large drain.

300 messages (1 KB to 100 KB, some with two recipients) are queued while
the primary is down (probe_interval 1s).  Then the primary goes up and
down every 1-2 s (smtp-sink stopped and started, connections cut in the
middle of transactions) for a bounded time, while a sender keeps adding
mail; then it stays up.  Nothing acked is lost, every copy is
byte-identical apart from holdfast's Received header, duplicates are
counted and printed, queue/ drains and dead/, tmp/ and quarantine/ stay
empty.

Environment: HOLDFAST_FLAP_SEED (default fixed, printed),
HOLDFAST_FLAP_SECONDS (default 20), HOLDFAST_FLAP_MESSAGES (default 300)."""
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402
import crashlib  # noqa: E402


def main(env):
    seed = int(os.environ.get("HOLDFAST_FLAP_SEED", "4242"))
    secs = float(os.environ.get("HOLDFAST_FLAP_SECONDS", "20"))
    nmsg = int(os.environ.get("HOLDFAST_FLAP_MESSAGES", "300"))
    san = hf.sanitized_build()
    hf.note("flapping: seed=%d flap for %.0fs, %d messages queued first"
            % (seed, secs, nmsg))
    rng = random.Random(seed)
    sink = env.sink()                          # down
    d = env.daemon(primary_port=sink.port,
                   primary={"probe_interval": "1s", "retry_min": "1s",
                            "retry_max": "2s", "connect_timeout": "3s",
                            "timeout": "20s"})
    d.start(timeout=60 if san else None)
    sizes = (1000, 1000, 5000, 20000, 100000)
    pre = crashlib.Senders(d.port, 4, "f%dq" % seed, seed, sizes=sizes,
                           max_msgs=nmsg // 4, pause=0).start()
    pre.wait_done(240 if san else 120)
    hf.check(len(pre.acked()) == len(pre.attempts) == nmsg // 4 * 4,
             "queueing with the primary down: %d of %d acked"
             % (len(pre.acked()), len(pre.attempts)))
    hf.check(len(d.queue_ids()) == len(pre.acked()), "queue/ has %d, "
             "acked %d" % (len(d.queue_ids()), len(pre.acked())))
    hf.note("%d messages queued" % len(pre.acked()))

    # a trickle of new mail during the flapping
    more = crashlib.Senders(d.port, 1, "f%dl" % seed, seed + 1,
                            sizes=sizes, pause=0.2).start()
    flaps = 0
    t0 = time.monotonic()
    left = []
    try:
        while time.monotonic() - t0 < secs:
            sink.start()
            time.sleep(rng.uniform(1.0, 2.0))
            left.append(len(d.queue_ids()))
            sink.stop()
            flaps += 1
            time.sleep(rng.uniform(1.0, 2.0))
            hf.check(d.alive(), "daemon died during flapping; tail:\n%s"
                     % d.tail())
    finally:
        more.stop(check=False)
    more.check()
    hf.note("%d flaps in %.0fs; queue/ size after each up period: %s"
            % (flaps, time.monotonic() - t0, left))
    sink.start()
    attempts = pre.attempts + more.attempts
    bad = [a for a in attempts if a.code not in (250, None)]
    hf.check(not bad, "non-250 replies: %s" % [(a.token, a.code)
                                               for a in bad[:5]])
    stats = crashlib.verify(sink, attempts, timeout=120 if san else 60,
                            what="flapping")
    hf.wait_until(lambda: not d.queue_ids(), 30, "queue/ to drain")
    stats.update({"flaps": flaps, "seed": seed})
    hf.note("RESULT flapping " + " ".join("%s=%s" % kv
                                          for kv in stats.items()))
    probs = crashlib.spool_is_clean(d)
    hf.check(not probs, "spool after the run: %s" % "; ".join(probs))
    hf.check(not d.grep(r"\bquarantined\b"), "quarantine in log")
    d.stop()


hf.run(main)
