#!/usr/bin/python3
"""SIGTERM/SIGINT stop holdfast cleanly: sessions in DATA are cut without
a 250, nothing committed is lost.

a) SIGTERM, primary down: M1 fully accepted (250); C2 in the middle of
   DATA (part of the body, no final dot); C3 idle after EHLO.  C2 and C3
   get 421 (or the connection closes), never a 250; the daemon exits 0
   within 5 s, logging "holdfast stopping" and "holdfast stopped" and no
   "fatal"; queue/ holds M1 only and tmp/ is empty.  Restarted on the same
   spool with the sink up: M1 is delivered once, C2's message never.
b) SIGINT: the same.
c) A commit in flight at SIGTERM: every fsync sleeps 2 s (fault shim,
   fsync:DELAY2000); the client sends two whole transactions in one
   packet (BDAT ... LAST twice; then DATA twice, body sent without
   waiting for 354); SIGTERM while the first commit sleeps in fsync.  The
   second transaction's commit could only start after "holdfast
   stopping", so it must not get a 250; a new connection meanwhile is
   refused (or gets only 421); the daemon exits 0 with no
   "fatal"; after restart every message that got a 250 is delivered
   exactly once, and whatever else reached queue/ (committed but not
   answered) is delivered too, never lost."""
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

EXIT_LIMIT = 5.0


def read_to_eof(c, timeout):
    """Every reply until the server closes; [] if it closed at once."""
    out = []
    c.sock.settimeout(timeout)
    while True:
        try:
            r = c.reply(allow_eof=True)
        except hf.Fail as e:
            # a reset, or the close cut a reply: stop here
            if "timed out" in str(e):
                raise
            break
        except OSError:
            break
        if r is None:
            break
        out.append(r)
    return out


def wait_exit(d, timeout, what, t_sig):
    """Wait until timeout seconds after t_sig (when the signal was sent)
    for the daemon to exit by itself; returns (rc, seconds since t_sig)."""
    try:
        rc = d.proc.wait(max(0.1, t_sig + timeout - time.monotonic()))
    except subprocess.TimeoutExpired:
        d.kill9()
        hf.fail("%s: daemon still running %.0fs after the signal; log "
                "tail:\n%s" % (what, timeout, d.tail()))
    return rc, time.monotonic() - t_sig


def check_clean_exit(d, rc, secs, since, what):
    hf.check(rc == 0, "%s: daemon exited rc=%s; log tail:\n%s"
             % (what, rc, d.tail()))
    fatal = d.grep(r"\bfatal\b", since)
    hf.check(not fatal, "%s: fatal in log: %s" % (what, fatal[:3]))
    hf.check(d.grep(r"\bholdfast stopping\b", since), "%s: no 'holdfast "
             "stopping' logged" % what)
    hf.check(d.grep(r"\bholdfast stopped\b", since), "%s: no 'holdfast "
             "stopped' logged" % what)
    hf.note("%s: exit 0 %.2fs after the signal" % (what, secs))


def sent_from_queue(d, qid):
    """A Sent for a message found in queue/ (committed, maybe unanswered)."""
    envt, body = hf.spool_msg_read(os.path.join(d.spool, "queue", qid))
    _, rest = hf.split_received(body)
    tok = hf.token_of(rest)
    hf.check(tok, "queue/%s: no harness token in the body" % qid)
    env = envt.encode("utf-8", "surrogateescape")
    rcpts = re.findall(rb"<([^<>@\s]+@[^<>\s]+)>", env)
    rcpt = "cut@example.test"
    for r in rcpts:
        if r.endswith(b"@example.test"):
            rcpt = r.decode()
    return hf.Sent(tok, qid, rest, [rcpt])


# ------------------------------------------------------------- a) and b)

def restart_clean(d, sink, name):
    """After a clean stop: tmp/ is empty; started again, tmp/ and
    quarantine/ stay empty; then the primary comes up."""
    hf.check(not d.tmp_entries(), "%s: tmp/ not empty after a clean stop: "
             "%s" % (name, d.tmp_entries()))
    d.start()
    hf.check(not d.tmp_entries(), "%s: tmp/ not empty after restart: %s"
             % (name, d.tmp_entries()))
    hf.check(not d.quarantine_entries(), "%s: quarantine/ has %s"
             % (name, d.quarantine_entries()))
    sink.start()


def cut_mid_data(env, sig, name):
    sink = env.sink(name="sink-" + name)           # down
    d = env.daemon(name="hf-" + name, primary_port=sink.port).start()
    m1 = hf.send_ok(d.port, name + "-m1", rcpts=("m1@example.test",))

    tok2 = name + "-partial"
    content2 = hf.make_message(tok2, body=b"p" * 20000 + b"\r\n")
    c2 = d.connect()
    c2.ehlo()
    c2.cmd("MAIL FROM:<s@client.test>", expect=250)
    c2.cmd("RCPT TO:<cut@example.test>", expect=250)
    c2.cmd("DATA", expect=354)
    c2.send(content2[:len(content2) // 2])
    c3 = d.connect()
    c3.ehlo()
    # let the daemon read C2's half body
    hf.wait_until(lambda: d.tmp_entries(), 5, "C2's message in tmp/")
    time.sleep(0.3)
    hf.check(d.alive(), "%s: daemon died before the signal" % name)

    mark = d.mark()
    t_sig = time.monotonic()
    d.proc.send_signal(sig)
    r2 = read_to_eof(c2, 10)
    r3 = read_to_eof(c3, 10)
    c2.close()
    c3.close()
    hf.note("%s: C2 (mid-DATA) got %s; C3 (idle) got %s"
            % (name, r2 or "a close", r3 or "a close"))
    for who, rs in (("C2 (mid-DATA)", r2), ("C3 (idle)", r3)):
        hf.check(all(r.code == 421 for r in rs), "%s: %s got %s after the "
                 "signal, want only 421 or a close" % (name, who, rs))
    hf.check(not any(r.code == 250 for r in r2), "%s: a 250 for a cut "
             "message" % name)
    rc, secs = wait_exit(d, EXIT_LIMIT, name, t_sig)
    check_clean_exit(d, rc, secs, mark, name)
    hf.check(secs <= EXIT_LIMIT, "%s: exit took %.1fs" % (name, secs))
    hf.check(d.grep(r"shutdown in \S+, message discarded", mark),
             "%s: no 'message discarded' for the cut session" % name)
    hf.check(d.queue_ids() == [m1.qid], "%s: queue/ after the stop is %s, "
             "want only M1 %s" % (name, d.queue_ids(), m1.qid))
    restart_clean(d, sink, name)
    got = hf.verify_deliveries(sink, [m1], timeout=20, settle=2)
    hf.check(tok2 not in got, "%s: the cut message was delivered" % name)
    hf.wait_until(lambda: not d.queue_ids(), 10, name + ": queue/ to empty")
    d.stop()


# ------------------------------------------------------------- c)

def tx_bdat(tok, rcpt):
    content = hf.make_message(tok)
    return content, (b"MAIL FROM:<s@client.test>\r\nRCPT TO:<%s>\r\n"
                     b"BDAT %d LAST\r\n" % (rcpt.encode(), len(content))
                     + content)


def tx_data(tok, rcpt):
    content = hf.make_message(tok)
    return content, (b"MAIL FROM:<s@client.test>\r\nRCPT TO:<%s>\r\n"
                     b"DATA\r\n" % rcpt.encode() + hf.dot_stuff(content))


def commit_in_flight(env, name, build_tx):
    trig = env.path("trigger-" + name)
    sink = env.sink(name="sink-" + name)           # down
    d = env.daemon(name="hf-" + name, primary_port=sink.port)
    d.start(env=hf.shim_env("fsync:DELAY2000", trig))
    pre = hf.send_ok(d.port, name + "-pre", rcpts=("pre@example.test",))

    txs = []
    wire = b""
    for i in (1, 2):
        tok = "%s-tx%d" % (name, i)
        rcpt = "tx%d@example.test" % i
        content, w = build_tx(tok, rcpt)
        txs.append((tok, rcpt, content))
        wire += w
    c = d.connect()
    r = c.ehlo()
    hf.check(any(l[4:].upper().startswith(b"PIPELINING") for l in r.lines),
             "EHLO lacks PIPELINING")
    open(trig, "w").close()                         # arm
    mark = d.mark()
    t0 = time.monotonic()
    c.send(wire)
    d.wait_log(r"^faultshim: fsync fd=\d+ delay", timeout=5, since=mark)
    time.sleep(max(0.0, 0.5 - (time.monotonic() - t0)))
    t_sig = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    os.unlink(trig)                 # the fsync sleeping now still sleeps
    if d.alive():
        # stopping, commit still running: no new session is served
        try:
            n = hf.SMTPClient(d.port, timeout=5, greet=False)
        except OSError:
            pass                                    # listener closed
        else:
            late = read_to_eof(n, 5)
            n.close()
            hf.check(all(r.code == 421 for r in late), "%s: a connection "
                     "made while stopping got %s" % (name, late))
    replies = read_to_eof(c, 20)
    c.close()
    hf.note("%s: replies %s" % (name, [r.text for r in replies]))
    rc, secs = wait_exit(d, 15, name, t_sig)
    check_clean_exit(d, rc, secs, mark, name)

    # the log: tx1's commit (the first delayed fsync) started before the
    # stop; tx2's could only start after tx1's ended, i.e. after it
    log = d.log_text(mark).splitlines()
    i_fs = next(i for i, l in enumerate(log) if l.startswith("faultshim:"))
    i_stop = next(i for i, l in enumerate(log)
                  if re.search(r"\bholdfast stopping\b", l))
    hf.check(i_fs < i_stop, "%s: the commit did not start before the "
             "stop (test timing)" % name)

    queued = [r.queued_id() for r in replies if r.queued_id()]
    hf.check(all(r.code in (250, 354, 421) for r in replies),
             "%s: unexpected reply in %s" % (name, replies))
    hf.check(len(queued) <= 1, "%s: %d messages got 250 queued-as after "
             "SIGTERM; the second one's commit started after 'holdfast "
             "stopping': %s" % (name, len(queued), replies))
    i421 = [i for i, r in enumerate(replies) if r.code == 421]
    hf.check(not i421 or i421[0] == len(replies) - 1, "%s: replies after "
             "the 421: %s" % (name, replies))
    sent = [pre]
    tok1, rcpt1, content1 = txs[0]
    if queued:
        # the 250 must belong to tx1 (the commit that was running)
        sent.append(hf.Sent(tok1, queued[0], content1, [rcpt1]))
    else:
        hf.note("%s: tx1 got no 250 (allowed: only if not lost)" % name)
    acked = set(s.qid for s in sent)
    in_queue = d.queue_ids()
    hf.check(acked <= set(in_queue), "%s: acked %s but queue/ has only %s"
             % (name, sorted(acked), in_queue))
    extra = [sent_from_queue(d, q) for q in in_queue if q not in acked]
    for x in extra:
        hf.note("%s: %s committed but unanswered: %s" % (name, x.qid,
                                                          x.token))
        hf.check(x.token != txs[1][0], "%s: tx2 reached queue/ although its "
                 "commit could only start after 'holdfast stopping'"
                 % name)
    restart_clean(d, sink, name)
    got = hf.verify_deliveries(sink, sent + extra, timeout=20, settle=2)
    hf.check(txs[1][0] not in got, "%s: tx2 (no 250) was delivered" % name)
    hf.note("%s: delivered %s (%d acked, %d committed-unanswered)"
            % (name, sorted(got), len(sent), len(extra)))
    hf.wait_until(lambda: not d.queue_ids(), 10, name + ": queue/ to empty")
    d.stop()


def main(env):
    cut_mid_data(env, signal.SIGTERM, "term")
    cut_mid_data(env, signal.SIGINT, "int")
    commit_in_flight(env, "bdat", tx_bdat)
    commit_in_flight(env, "data", tx_data)


hf.run(main)
