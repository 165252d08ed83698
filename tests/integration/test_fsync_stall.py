#!/usr/bin/python3
"""A commit's fsync never stalls other sessions.

The fault shim makes every fsync sleep 3 s while armed (fsync:DELAY3000).
Client A sends a message: its final-dot reply must take >= 2.5 s and be
250 queued-as (the delay really sat in the commit).  While A waits, client
B connects and gets its banner and its EHLO, MAIL and RCPT replies, each
within 0.5 s (times HOLDFAST_SLOW): the event loop is not blocked by the
fsync.  Then the shim is disarmed, B finishes its message, and both
messages reach the sink exactly once.  Each round arms the shim only
after the previous round's messages were delivered and removed: armed,
the removal's fsync of queue/ would be the one delayed, not A's commit."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

DELAY_MS = 3000
ROUNDS = 2


def timed(what, fn, times):
    t0 = time.monotonic()
    r = fn()
    times.append((what, time.monotonic() - t0))
    return r


def one_round(env, d, trig, i, limit):
    sent = []
    # A: everything up to the final dot, then arm and send the dot
    tok_a = "stallA%d" % i
    content_a = hf.make_message(tok_a)
    a = d.connect()
    a.ehlo("a.client.test")
    a.cmd("MAIL FROM:<a@client.test>", expect=250)
    a.cmd("RCPT TO:<stall-a@example.test>", expect=250)
    a.cmd("DATA", expect=354)
    open(trig, "w").close()                         # arm
    mark = d.mark()
    t_a = time.monotonic()
    a.send(hf.dot_stuff(content_a))
    # the commit is in its first fsync (sleeping) once the shim says so
    d.wait_log(r"^faultshim: fsync fd=\d+ delay", timeout=DELAY_MS / 1000.0,
               since=mark)
    hf.note("round %d: A's commit is in a delayed fsync" % i)

    # B, while A's commit sleeps in fsync
    times = []
    b = timed("banner", lambda: d.connect(timeout=30), times)
    timed("EHLO", lambda: b.cmd("EHLO b.client.test", expect=250), times)
    timed("MAIL", lambda: b.cmd("MAIL FROM:<b@client.test>", expect=250),
          times)
    timed("RCPT", lambda: b.cmd("RCPT TO:<stall-b@example.test>",
                                expect=250), times)
    b_done = time.monotonic() - t_a
    os.unlink(trig)                                 # disarm
    hf.note("round %d: B replies %s (all within %.2fs of A's dot)"
            % (i, ", ".join("%s %.3fs" % x for x in times), b_done))
    slow = [(w, t) for w, t in times if t > limit]
    hf.check(not slow, "while a commit's fsync was stalled, session B "
             "waited %s (limit %.1fs each): the event loop is blocked"
             % (", ".join("%s %.2fs" % x for x in slow), limit))
    # B must have finished while A was still waiting, or B proved nothing
    hf.check(b_done < DELAY_MS / 1000.0 - 0.2, "B's replies took %.2fs, "
             "not inside A's %d ms fsync" % (b_done, DELAY_MS))

    r = a.reply()
    took = time.monotonic() - t_a
    hf.note("round %d: A's final dot -> %r after %.2fs" % (i, r, took))
    hf.check(r.code == 250 and r.queued_id(), "A: end of DATA -> %r, want "
             "250 queued as" % r)
    hf.check(took >= (DELAY_MS - 500) / 1000.0, "A's 250 came after %.2fs, "
             "before the %d ms fsync could have finished" % (took, DELAY_MS))
    sent.append(hf.Sent(tok_a, r.queued_id(), content_a,
                        ["stall-a@example.test"]))
    a.quit()

    tok_b = "stallB%d" % i
    content_b = hf.make_message(tok_b)
    r = b.data(hf.dot_stuff(content_b), expect=250)
    hf.check(r.queued_id(), "B: end of DATA -> %r" % r)
    sent.append(hf.Sent(tok_b, r.queued_id(), content_b,
                        ["stall-b@example.test"]))
    b.quit()
    return sent


def wait_removed(d, sent):
    """Every message in sent delivered and removed, queue/ empty: no
    fsync of an earlier message can be in flight when the shim is armed."""
    for s in sent:
        d.wait_log(r"msg=%s removed\b" % s.qid, timeout=hf.scaled(20))
    hf.wait_until(lambda: not d.queue_ids(), hf.scaled(10),
                  "queue/ empty before arming (has %s)" % d.queue_ids())


def main(env):
    limit = hf.scaled(0.5)      # 1 s under ASan (HOLDFAST_SLOW=2)
    sink = env.sink().start()
    trig = env.path("trigger")
    d = env.daemon(primary_port=sink.port)
    d.start(env=hf.shim_env("fsync:DELAY%d" % DELAY_MS, trig))
    # warm up unarmed (first connection, first commit, first delivery)
    pre = hf.send_ok(d.port, "stallpre")
    sent = [pre]
    for i in range(ROUNDS):
        wait_removed(d, sent)
        sent += one_round(env, d, trig, i, limit)
    hf.check(d.alive(), "daemon died")
    hf.verify_deliveries(sink, sent, timeout=30)
    hf.check_log_lifecycle(d, sent)
    hf.wait_until(lambda: not d.queue_ids(), 15, "queue/ to drain")
    d.stop()


hf.run(main)
