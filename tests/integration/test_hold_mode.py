#!/usr/bin/python3
"""Accept-and-hold (holdfastctl hold-mode) with the primary UP.

Part A: hold-mode on (default --for 24h): new mail is accepted (250, in
queue/) but nothing reaches the primary; status says hold_mode on with
hold_until about 24h ahead, /metrics says holdfast_hold_mode 1, the state
is persisted in SPOOL/hold-mode.  The daemon is restarted: hold-mode is
restored (logged), still nothing delivered.  The queue lifetime (8s) is
shorter than the hold: lifetimes stop while held, so hold-mode off delivers
the mail within a few seconds instead of expiring it; the state file is
gone and the metric 0.

Part B: hold-mode on --for 3s: mail sent at once is not delivered early,
and is delivered ~3 s later without any command ('hold-mode off
reason=expired' logged)."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

LIFETIME = 8


def hold_file(d):
    return os.path.join(d.spool, "hold-mode")


def check_nothing_delivered(d, sink, what, since):
    hf.check(sink.count() == 0, "%s: %d message(s) reached the primary"
             % (what, sink.count()))
    hf.check(not d.ids("delivered", since), "%s: delivered logged" % what)
    hf.check(not d.ids("expired") and not d.dead_ids(),
             "%s: mail expired or went dead: %s" % (what, d.dead_ids()))


def part_a(env, sink, d):
    mark = start = d.mark()
    t_on = time.time()
    d.ctl("hold-mode", "on").ok()
    d.wait_log(r"hold-mode on until=\+86400s", since=mark,
               timeout=hf.scaled(5))
    hf.check(os.path.exists(hold_file(d)), "hold-mode not persisted in %s"
             % hold_file(d))
    st = d.ctl("status", "--json").ok().json()
    hf.check(st["hold_mode"] == "on", "status hold_mode=%r" % st["hold_mode"])
    hf.check(abs(st["hold_until"] - (t_on + 86400)) < 30,
             "status hold_until=%r, want about now+24h (%d)"
             % (st["hold_until"], t_on + 86400))
    m = d.scrape()
    hf.check(m.get("holdfast_hold_mode") == 1, "holdfast_hold_mode %r"
             % m.get("holdfast_hold_mode"))
    hf.check(m.type.get("holdfast_hold_mode") == "gauge",
             "holdfast_hold_mode TYPE %r" % m.type.get("holdfast_hold_mode"))

    sent = [hf.send_ok(d.port, "held%d" % i, ["user%d@example.test" % i])
            for i in range(3)]
    ids = sorted(s.qid for s in sent)
    hf.check(sorted(d.queue_ids()) == ids, "queue/ %r, want %r"
             % (d.queue_ids(), ids))
    time.sleep(hf.scaled(4))    # several ticks and retry_min (1s) periods
    check_nothing_delivered(d, sink, "hold-mode on", start)
    st = d.ctl("status", "--json").ok().json()
    hf.check(st["queued_messages"] + st["deferred_messages"] == 3,
             "status queued+deferred %r+%r, want 3"
             % (st["queued_messages"], st["deferred_messages"]))
    m = d.scrape()
    hf.check(m.get("holdfast_queue_messages", state="queued") == 3,
             "queue_messages{queued}=%r, want 3"
             % m.get("holdfast_queue_messages", state="queued"))
    hf.note("hold-mode on: 3 accepted, none delivered")

    # ---- restart: still on
    d.restart()
    d.wait_log(r"hold-mode on \(restored\)", since=d.start_mark,
               timeout=hf.scaled(5))
    st = d.ctl("status", "--json").ok().json()
    hf.check(st["hold_mode"] == "on", "after restart: status hold_mode=%r"
             % st["hold_mode"])
    hf.check(abs(st["hold_until"] - (t_on + 86400)) < 30,
             "after restart: hold_until=%r" % st["hold_until"])
    hf.check(d.scrape().get("holdfast_hold_mode") == 1,
             "after restart: holdfast_hold_mode not 1")
    # past the 8s queue lifetime, counted from the first message
    while time.time() - t_on < LIFETIME + 2:
        time.sleep(0.5)
    check_nothing_delivered(d, sink, "after restart", start)
    hf.check(sorted(d.queue_ids()) == ids, "after restart: queue/ %r"
             % d.queue_ids())
    hf.note("restart: hold-mode restored, none delivered (%.0fs held)"
            % (time.time() - t_on))

    # ---- off: delivered, not expired
    mark = d.mark()
    t0 = time.monotonic()
    d.ctl("hold-mode", "off").ok()
    d.wait_log(r"hold-mode off reason=operator", since=mark,
               timeout=hf.scaled(5))
    hf.verify_deliveries(sink, sent, timeout=hf.scaled(5), settle=1)
    hf.note("hold-mode off: delivered %.1fs later" % (time.monotonic() - t0))
    hf.check(not d.ids("expired") and not d.dead_ids(),
             "held mail expired: lifetimes did not stop (dead %s)"
             % d.dead_ids())
    hf.check(not os.path.exists(hold_file(d)), "%s left after hold-mode "
             "off" % hold_file(d))
    st = d.ctl("status", "--json").ok().json()
    hf.check(st["hold_mode"] == "off" and st["hold_until"] == 0,
             "status after off: %r" % st)
    hf.check(d.scrape().get("holdfast_hold_mode") == 0,
             "holdfast_hold_mode not 0 after off")
    hf.wait_until(lambda: not d.queue_ids(), 10, "queue/ to empty")
    return sent


def part_b(env, sink, d, before):
    mark = d.mark()
    d.ctl("hold-mode", "on", "--for", "3s").ok()
    t0 = time.monotonic()
    d.wait_log(r"hold-mode on until=\+3s", since=mark,
               timeout=hf.scaled(5))
    s = hf.send_ok(d.port, "auto", ["auto@example.test"])
    time.sleep(max(0, 1.5 - (time.monotonic() - t0)))
    hf.check(sink.count() == len(before), "delivered before --for 3s ran "
             "out (%.1fs)" % (time.monotonic() - t0))
    hf.check(d.ctl("status", "--json").ok().json()["hold_mode"] == "on",
             "hold-mode not on during --for 3s")
    hf.verify_deliveries(sink, before + [s], timeout=hf.scaled(10),
                         settle=0.5)
    took = time.monotonic() - t0
    hf.note("auto-release: delivered %.1fs after hold-mode on --for 3s"
            % took)
    # the daemon counts whole seconds: the hold ends 2..3 s after 'on'
    hf.check(took >= 1.8, "delivered after %.1fs, before --for 3s ended"
             % took)
    d.wait_log(r"hold-mode off reason=expired", since=mark,
               timeout=hf.scaled(5))
    hf.check(not os.path.exists(hold_file(d)), "%s left after auto-release"
             % hold_file(d))
    st = d.ctl("status", "--json").ok().json()
    hf.check(st["hold_mode"] == "off", "status after auto-release: %r" % st)
    hf.check(d.scrape().get("holdfast_hold_mode") == 0,
             "holdfast_hold_mode not 0 after auto-release")


def main(env):
    sink = env.sink().start()
    d = env.daemon(primary_port=sink.port,
                   spool={"queue_lifetime": "%ds" % LIFETIME},
                   metrics={"listen": "auto"}).start()
    # the primary works: a message goes straight through
    s0 = hf.send_ok(d.port, "before", ["before@example.test"])
    hf.verify_deliveries(sink, [s0], timeout=10, settle=0)
    sink.stop()
    sink.clear_dumps(tap=True)
    sink.start()
    hf.check(d.scrape().get("holdfast_hold_mode") == 0,
             "holdfast_hold_mode not 0 at start")
    sent = part_a(env, sink, d)
    part_b(env, sink, d, sent)


hf.run(main)
