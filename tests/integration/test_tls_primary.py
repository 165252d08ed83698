#!/usr/bin/python3
"""Outbound TLS to the primary.  The TLS-offering primary is a second
holdfast (mx1) with [tls] (a certificate for mx2.example.test from a test
CA made here), relaying to an smtp-sink; the plain primary is an smtp-sink
(no STARTTLS).  One front holdfast per policy:

- verify, tls_ca = the CA, tls_name = mx2.example.test -> delivered, log
  "tls established", the primary's Received says ESMTPS;
- verify with a wrong tls_name -> not delivered: primary down, the message
  stays queued, the log names the certificate/hostname mismatch;
- encrypt against the plain sink -> not delivered (primary down, queued),
  never plaintext;
- may against the plain sink -> delivered in plaintext;
- may against the TLS primary (through a recording tap) -> delivered
  over TLS: on the wire the front sends EHLO and STARTTLS in the clear
  and nothing else, so MAIL, RCPT and the recipient never appear;
- encrypt against the TLS primary with the wrong name -> delivered
  (encrypt does not check the name).
Where a message must not go out in the clear, its recipient (unique per
front) is looked for in the raw client bytes the taps recorded, so a
MAIL/RCPT sent in plaintext and then abandoned fails too."""
import glob
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

NAME = "mx2.example.test"


def front(env, name, port, **tls):
    pri = {"tls": tls.pop("tls")}
    pri.update(tls)
    return env.daemon(name=name, primary_port=port, primary=pri).start()


def wire_c2s(tap_dir):
    """The raw client-to-server bytes of every session a tap recorded."""
    out = []
    for p in sorted(glob.glob(os.path.join(tap_dir, "*.c2s"))):
        with open(p, "rb") as f:
            out.append(f.read())
    return out


def main(env):
    ca = hf.TestCA(env)
    cert, key = ca.issue("primary")
    sink1 = env.sink(name="sink1").start()
    primary = env.daemon(name="primary", hostname="mx1.example.test",
                         primary_port=sink1.port,
                         tls={"cert": cert, "key": key}).start()
    plain = env.sink(name="plain").start()

    ok_v = front(env, "verify", primary.port, tls="verify",
                 tls_ca=ca.cert, tls_name=NAME)
    bad_v = front(env, "wrongname", primary.port, tls="verify",
                  tls_ca=ca.cert, tls_name="wrong.example.test")
    enc_plain = front(env, "encplain", plain.port, tls="encrypt")
    may_plain = front(env, "mayplain", plain.port, tls="may")
    enc_tls = front(env, "enctls", primary.port, tls="encrypt",
                    tls_name="wrong.example.test")
    # may against the TLS primary, through a tap recording the wire
    may_tap_dir = env.artifact(env.path("maytls-tap"))
    os.makedirs(may_tap_dir)
    may_tap = env.own(hf.Tap(hf.free_port(), primary.port, may_tap_dir))
    may_tap.start()
    may_tls = front(env, "maytls", may_tap.listen_port, tls="may")

    s_ok = hf.send_ok(ok_v.port, "verifyok")
    s_bad = hf.send_ok(bad_v.port, "wrongname")
    s_enc = hf.send_ok(enc_plain.port, "encplain",
                       rcpts=("encplain@example.test",))
    s_may = hf.send_ok(may_plain.port, "mayplain")
    s_enc2 = hf.send_ok(enc_tls.port, "enctls")
    s_may2 = hf.send_ok(may_tls.port, "maytls",
                        rcpts=("maytls@example.test",))

    # verify: delivered through TLS, chain and name checked
    got = hf.verify_deliveries(sink1, [s_ok, s_enc2, s_may2], 30, strip=1,
                               settle=0, check_tap=False)
    for tok, d in (("verifyok", ok_v), ("enctls", enc_tls),
                   ("maytls", may_tls)):
        line = d.wait_log(r"drain=\d+ tls established", timeout=10)[0]
        hf.check(re.search(r'tls="TLSv1\.[23] ', line), "%s: %s"
                 % (d.name, line))
        m, _ = got[tok][0]
        c = m.content
        hf.check(re.match(rb"Received: from mx2\.example\.test \([^)]*\)"
                          rb"\r\n\tby mx1\.example\.test \(holdfast\) with "
                          rb"ESMTPS \(TLSv1\.[23] ", c),
                 "%s: the primary's Received does not say ESMTPS: %r"
                 % (tok, c[:250]))
    hf.note("verify, encrypt and may to the TLS primary delivered over "
            "TLS")
    # may: the wire carried EHLO and STARTTLS in the clear, then only TLS
    # (a session without STARTTLS, e.g. a probe, may only greet and quit)
    sessions = wire_c2s(may_tap_dir)
    hf.check(any(b"STARTTLS\r\n" in raw for raw in sessions),
             "may: no session to the TLS primary used STARTTLS: %r"
             % [raw[:100] for raw in sessions])
    for raw in sessions:
        head, sep, _ = raw.partition(b"STARTTLS\r\n")
        cmds = [l.split(b" ")[0].upper() for l in head.split(b"\r\n") if l]
        hf.check(set(cmds) <= {b"EHLO", b"HELO", b"QUIT", b"NOOP", b"RSET"},
                 "may: sent in the clear to a primary offering STARTTLS: "
                 "%r" % head[:300])
        for word in (b"MAIL FROM", b"RCPT TO", b"maytls@example.test"):
            hf.check(word not in raw, "may: %r went over the wire in the "
                     "clear" % word)

    # may: plaintext to a primary without STARTTLS
    hf.verify_deliveries(plain, [s_may], 30, settle=0)
    hf.check(not may_plain.grep(r"tls established"), "tls with smtp-sink?")

    # wrong name under verify: site failure, queued, reason logged
    bad_v.wait_log(r"primary down", timeout=20)
    fails = bad_v.wait_log(r"primary failure .*TLS handshake failed",
                           timeout=10)
    hf.check(any(re.search(r"certificate|hostname mismatch", l, re.I)
                 for l in fails), "verify failure does not name the "
             "certificate problem: %s" % fails[-1])
    hf.check(any("hostname mismatch" in l for l in fails),
             "verify failure does not say 'hostname mismatch': %s"
             % fails[-1])
    hf.note("wrong name: %s" % fails[-1][-170:])

    # encrypt against a primary without STARTTLS: site failure, queued
    enc_plain.wait_log(r"primary down", timeout=20)
    fails = enc_plain.wait_log(r"primary failure .*offers no STARTTLS",
                               timeout=10)
    hf.note("encrypt to plain: %s" % fails[-1][-120:])

    # a few more probe rounds: still nothing goes out, never plaintext
    time.sleep(hf.scaled(5))
    for d, s in ((bad_v, s_bad), (enc_plain, s_enc)):
        hf.check(s.qid in d.queue_ids(), "%s: %s no longer queued (%s)"
                 % (d.name, s.qid, d.queue_ids()))
        hf.check(not d.ids("delivered"), "%s delivered something" % d.name)
        hf.check(len(d.grep(r"primary failure")) >= 2, "%s: the primary "
                 "was not retried" % d.name)
    toks = [hf.token_of(m.content) for m in sink1.messages()] + \
        [hf.token_of(m.content) for m in plain.messages()]
    hf.check("wrongname" not in toks and "encplain" not in toks,
             "a message went out despite the TLS policy: %s" % toks)
    # nothing of a message went to the plain sink in the clear: the tap
    # saw no MAIL from the encrypt front, not even its recipient
    for raw in wire_c2s(plain.tap_dir):
        hf.check(b"encplain@example.test" not in raw, "encrypt: the "
                 "recipient went to the plain primary in the clear: %r"
                 % raw[:300])
    for t in plain.transactions():
        hf.check(hf.norm_addr(t.sender) != "sender@client.test" or
                 hf.token_of(t.content or b"") != "encplain",
                 "encplain's message reached the plain sink")
    st = enc_plain.ctl("status").ok().out
    hf.check(re.search(r"primary\W+down", st, re.I), "status of the encrypt "
             "front: %s" % st)


hf.run(main)
