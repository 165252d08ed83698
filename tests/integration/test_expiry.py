#!/usr/bin/python3
"""Lifetimes: queue_lifetime and bounce_lifetime send mail to dead/.

The primary is down; queue_lifetime = 4s, bounce_lifetime = 2s (6s and 3s
with HOLDFAST_SLOW = 2, as for a sanitizer build).  Three
messages: A (a normal sender), B (the null sender <>) and C, held at once
with `holdfastctl hold`.
- B reaches dead/ after about 2s while A is still queued (the bounce
  lifetime applies to <> only); A follows after about 4s.  Each is logged
  'msg=ID expired age=...' and 'msg=ID moved to dead reason=expired', is
  listed by `holdfastctl dead --json` with dead_reason expired, and counts in
  holdfast_deliveries_total{result="expired"} on /metrics.
- C, held for longer than its lifetime and then released, is still queued
  2s later: held time does not count (without the credit it would expire
  on the next tick).
- A, requeued from dead/, is still queued 2s later: requeue gives a fresh
  lifetime.
- The primary comes back: A and C are delivered, B is not (expired mail
  stays in dead/ and never reaches the primary)."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

# seconds; a slow machine or a sanitizer build (HOLDFAST_SLOW) gets more
# room between the steps: 4s/2s, 6s/3s at a factor of 2
LIFE = max(4, round(3 * hf.slow_factor()))
BOUNCE_LIFE = LIFE // 2


def op(d, *args):
    """A mutating holdfastctl command that must succeed; retried while the
    message is in a probe of the down primary ('being delivered')."""
    deadline = time.monotonic() + 10
    while True:
        r = d.ctl(*args)
        if r.rc == 0:
            return r
        if "being delivered" not in r.err or time.monotonic() > deadline:
            hf.fail("%r (wanted exit 0)" % r)
        time.sleep(0.1)


def expired_metric(d):
    return d.scrape().get("holdfast_deliveries_total", result="expired")


def main(env):
    sink = env.sink()                       # not started: primary down
    d = env.daemon(primary_port=sink.port,
                   spool={"queue_lifetime": "%ds" % LIFE,
                          "bounce_lifetime": "%ds" % BOUNCE_LIFE},
                   primary={"probe_interval": "1s"},
                   metrics={"listen": "auto"})
    d.start()
    hf.check(expired_metric(d) == 0, "expired counter not 0 at start")

    a = hf.send_ok(d.port, "expA")
    b = hf.send_ok(d.port, "expB", sender="")
    c = hf.send_ok(d.port, "expC")
    op(d, "hold", c.qid)
    t_sent = time.monotonic()

    # B (null sender) expires first, while A is still inside its lifetime
    d.wait_log(r"msg=%s moved to dead reason=expired" % b.qid, timeout=10)
    t_b = time.monotonic() - t_sent
    hf.check(a.qid in d.queue_ids(), "A (lifetime %ds) had left queue/ "
             "when B expired, %.1fs after sending" % (LIFE, t_b))
    hf.check(b.qid in d.dead_ids(), "expired B not in dead/")
    hf.check(d.grep(r"msg=%s expired age=\d+s attempts=\d+" % b.qid),
             "no 'msg=%s expired age=' line" % b.qid)
    d.wait_log(r"msg=%s moved to dead reason=expired" % a.qid, timeout=10)
    t_a = time.monotonic() - t_sent
    hf.note("B expired after %.1fs, A after %.1fs" % (t_b, t_a))
    hf.check(t_a >= LIFE - 1, "A expired after %.1fs, lifetime %ds"
             % (t_a, LIFE))
    hf.check(a.qid in d.dead_ids() and a.qid not in d.queue_ids(),
             "expired A not moved to dead/")
    hf.check(c.qid in os.listdir(os.path.join(d.spool, "hold")),
             "held C left hold/")
    recs = {r["id"]: r for r in d.ctl("dead", "--json").ok().json()}
    for s in (a, b):
        hf.check(s.qid in recs and recs[s.qid].get("dead_reason") ==
                 "expired", "dead --json for %s: %r"
                 % (s.qid, recs.get(s.qid)))
    hf.check(expired_metric(d) == 2, "holdfast_deliveries_total"
             "{result=\"expired\"} = %r, want 2" % expired_metric(d))

    # C: held past its lifetime, then released; held time is credited
    time.sleep(max(0, t_sent + LIFE + 1 - time.monotonic()))
    mark = d.mark()
    op(d, "release", c.qid)
    d.wait_log(r"msg=%s released" % c.qid, since=mark, timeout=5)
    # A: requeued from dead/, a fresh lifetime
    op(d, "requeue", a.qid)
    d.wait_log(r"msg=%s requeued" % a.qid, since=mark, timeout=5)
    time.sleep(LIFE / 2)
    hf.check(not d.grep(r"msg=(%s|%s) expired" % (a.qid, c.qid), mark),
             "released or requeued message expired at once:\n%s"
             % "\n".join(d.grep(r"expired", mark)))
    hf.check(c.qid in d.queue_ids() and a.qid in d.queue_ids(),
             "released C / requeued A not in queue/: %r" % d.queue_ids())

    # the primary returns: A and C are delivered, the expired B is not
    sink.start()
    sent = [a, c]
    hf.verify_deliveries(sink, sent, timeout=20)
    hf.check(b.qid in d.dead_ids(), "expired B left dead/")
    time.sleep(1)
    toks = [hf.token_of(m.content) for m in sink.messages()]
    hf.check("expB" not in " ".join(t or "" for t in toks),
             "expired message reached the primary: %r" % toks)
    hf.check(expired_metric(d) == 2, "expired counter moved: %r"
             % expired_metric(d))
    st = json.loads(d.ctl("status", "--json").ok().out)
    hf.check(int(st.get("dead_messages", -1)) == 1, "status dead_messages "
             "%r, want 1" % st.get("dead_messages"))


hf.run(main)
