#!/usr/bin/python3
"""Relay denial: every non-local recipient shape gets 554 5.7.1 and nothing
is queued or delivered; a recipient with a control byte in it is a syntax
error (501 5.1.3), never queued either.  Also `holdfast -c FILE -n` on good and bad
configs (exit 0 / exit 1 with FILE:LINE)."""
import os
import smtplib
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

DENIED = [
    b"<u@example.com>",
    b"<u@example.test.evil.example>",
    b"<u@sub.example.test>",
    b"<u@notexample.test>",
    b"<u@example.tes>",
    b"<u%evil.example@example.test>",
    b"<evil.example!u@example.test>",
    b"<u!v@example.org>",
    b"<\"a@b\"@example.test>",
    b"<\"u@evil.example\"@example.test>",
    b"<@a.example,@b.example:u@example.test>",
    b"<@evil.example:u@example.test>",
    b"<u@evil.example@example.test>",
    b"<u@example.test@evil.example>",
    b"<u@[127.0.0.1]>",
    b"<postmaster@evil.example>",
]

BAD_SYNTAX = [
    b"<u\x01x@example.test>",
    b"<u\x1b@example.test>",
    b"<u\x7f@example.test>",
    b"<u@example.test\x01>",
    b"<u\r@example.test>",
]


def main(env):
    sink = env.sink().start()
    d = env.daemon(primary_port=sink.port).start()

    # a few per session: the daemon may (like Postfix) drop a client
    # after many errors, which is fine
    bad = []
    for k in range(0, len(DENIED), 4):
        c = d.connect()
        c.ehlo()
        c.cmd("MAIL FROM:<attacker@client.test>", expect=250)
        for a in DENIED[k:k + 4]:
            r = c.cmd(b"RCPT TO:" + a)
            if not (r.code == 554 and r.lines[-1][4:9] == b"5.7.1"):
                bad.append("%r -> %r" % (a, r))
        # no recipient accepted: DATA must not open a message
        r = c.cmd("DATA")
        hf.check(r.code in (503, 554), "DATA with no valid recipient -> %r"
                 % r)
        c.quit()
    hf.check(not bad, "not denied with 554 5.7.1: " + "; ".join(bad))
    c = d.connect()
    c.ehlo()
    c.cmd("MAIL FROM:<attacker@client.test>", expect=250)
    for a in BAD_SYNTAX:
        r = c.cmd(b"RCPT TO:" + a)
        if not (r.code == 501 and r.lines[-1][4:9] == b"5.1.3"):
            bad.append("%r -> %r" % (a, r))
    c.close()
    hf.check(not bad, "control bytes not refused with 501 5.1.3: "
             + "; ".join(bad))

    # smtplib, foreign domains, one session per attempt
    for a in ("someone@gmail.example", "x@example.net", "y@org.example"):
        with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as s:
            s.ehlo("client.test")
            s.mail("attacker@client.test")
            code, text = s.rcpt(a)
            hf.check(code == 554 and text.startswith(b"5.7.1"),
                     "smtplib RCPT TO:<%s> -> %s %r" % (a, code, text))
            # a denied recipient next to a good one must not leak through
            code, _ = s.rcpt("good@example.test")
            hf.check(code == 250, "good recipient after denial -> %s" % code)
            code, text = s.data(hf.make_message("mixed%d" % len(a)))
            hf.check(code == 250, "DATA after mixed rcpts -> %s %r"
                     % (code, text))
    hf.note("all shapes denied")
    msgs = hf.wait_until(lambda: (lambda m: m if len(m) >= 3 else None)(
        sink.messages()), 20, "3 mixed messages at sink")
    time.sleep(hf.scaled(2))        # nothing more arrives
    msgs = sink.messages()
    hf.check(len(msgs) == 3, "sink got %d messages, expected 3" % len(msgs))
    for m in msgs:
        hf.check([hf.norm_addr(r) for r in m.rcpts] == ["good@example.test"],
                 "a denied recipient reached the primary: %s" % m.rcpts)
    accepted = d.events("accepted")
    hf.check(len(accepted) == 3, "log has %d accepted lines, expected 3"
             % len(accepted))
    for line in d.log_text().splitlines():
        hf.check("nrcpt=1" in line or " accepted " not in line,
                 "accepted line with more than one rcpt: %s" % line)

    # config check
    rc, err = d.check_config()
    hf.check(rc == 0, "-n on the good config exited %d: %s" % (rc, err))
    good = open(d.conf).read().splitlines()
    cases = []
    # unknown key, bad size, bad port, bad duration, garbage line
    for name, mutate in (
            ("unknown-key", lambda ls: ls.insert(3, "bogus_key = 1")),
            ("bad-size", lambda ls: ls.__setitem__(
                next(i for i, l in enumerate(ls)
                     if l.startswith("max_message_size")),
                "max_message_size = lots")),
            ("bad-port", lambda ls: ls.__setitem__(
                next(i for i, l in enumerate(ls) if l.startswith("port")),
                "port = 70000")),
            ("bad-duration", lambda ls: ls.__setitem__(
                next(i for i, l in enumerate(ls)
                     if l.startswith("probe_interval")),
                "probe_interval = soon")),
            ("garbage", lambda ls: ls.insert(5, "this is not ini"))):
        ls = list(good)
        mutate(ls)
        bad_line = next(i for i, l in enumerate(ls) if l not in good
                        or ls.count(l) != good.count(l)) + 1
        path = env.path("bad-%s.conf" % name)
        with open(path, "w") as f:
            f.write("\n".join(ls) + "\n")
        cases.append((name, path, bad_line))
    for name, path, line in cases:
        rc, err = d.check_config(path)
        hf.check(rc == 1, "-n on %s config exited %d (want 1): %s"
                 % (name, rc, err.strip()))
        want = "%s:%d:" % (path, line)
        hf.check(want in err, "-n on %s config: stderr lacks %r: %r"
                 % (name, want, err.strip()))
    rc, err = d.check_config(env.path("does-not-exist.conf"))
    hf.check(rc == 1, "-n on a missing file exited %d" % rc)
    hf.check(not d.queue_ids(), "queue not empty after config checks")


hf.run(main)
