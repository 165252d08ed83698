#!/usr/bin/python3
"""[primary] keys, each against a scripted primary (lib/pyprimary.py) that
shows its effect.  Six daemons run side by side:

- host = localhost (a DNS name, not an address), helo_name =
  relay.helo.test, connections = 3: six messages queued while the primary
  is down are delivered once it starts, over at most 3 parallel sessions
  (and more than one: slow DATA replies make them overlap), each opening
  with 'EHLO relay.helo.test'.
- connect_timeout = 1s against a primary that accepts and never sends a
  banner: the session fails within a few seconds ('timeout in banner',
  not the 60s [primary] timeout), the primary is down, the message stays
  queued.
- timeout = 2s against a primary that stops half way through its reply to
  MAIL: 'timeout in tx' after about 2s, the message stays queued; once the
  primary behaves it is delivered, and the idle connection that follows is
  not logged as a failure when its 2s read timeout ends first.
- tls = none against a primary offering STARTTLS: never sent, delivered in
  plaintext.
- tls = verify, tls_ca = a CA that did not sign the primary's certificate:
  the handshake fails, nothing is sent in plaintext, the message stays
  queued.
- refuse_limit = 1, refuse_pause = 3s: a 550 for one message pauses the
  drain ('primary refusing'; the refused message is kept); the pause runs out by itself ('primary
  refusing ended reason=pause-over') and the next message is delivered
  with no flush."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402
import pyprimary  # noqa: E402

NAME = "primary.tls.test"


def log_time(line):
    """Seconds of the day of a log line's ISO timestamp."""
    t = line.split()[0]
    h, m, sec = t.split("T")[1].rstrip("Z").split(":")
    return int(h) * 3600 + int(m) * 60 + float(sec)


def queued(d, s):
    return s.qid in d.queue_ids()


def main(env):
    ca = hf.TestCA(env, "ca")
    other_ca = hf.TestCA(env, "otherca")
    cert, key = ca.issue("primary", dns=(NAME,), owner=None)
    tls_ctx = pyprimary.server_context(cert, key)

    # ---- the primaries
    p_par = env.own(pyprimary.Primary(env, "par"))   # started later
    p_par.data_delay = 0.7
    p_mute = env.own(pyprimary.Primary(env, "mute")).start()
    p_mute.banner = None
    p_hang = env.own(pyprimary.Primary(env, "hang")).start()
    p_hang.hang = "MAIL"
    p_none = env.own(pyprimary.Primary(env, "none")).start()
    p_none.tls = tls_ctx
    p_ver = env.own(pyprimary.Primary(env, "verify")).start()
    p_ver.tls = tls_ctx
    p_ref = env.own(pyprimary.Primary(env, "refuse")).start()
    p_ref.rcpt_reply = (lambda a: b"550 5.1.1 no such user"
                        if a.startswith("refused@") else None)

    # ---- the daemons
    d_par = env.daemon(name="par", primary_port=p_par.port,
                       primary={"host": "localhost",
                                "helo_name": "relay.helo.test",
                                "connections": "3",
                                "probe_interval": "1s"})
    d_mute = env.daemon(name="mute", primary_port=p_mute.port,
                        primary={"connect_timeout": "1s", "timeout": "60s",
                                 "probe_interval": "30s"})
    d_hang = env.daemon(name="hang", primary_port=p_hang.port,
                        primary={"timeout": "2s", "connect_timeout": "30s",
                                 "probe_interval": "1s"})
    d_none = env.daemon(name="none", primary_port=p_none.port,
                        primary={"tls": "none"})
    d_ver = env.daemon(name="verify", primary_port=p_ver.port,
                       primary={"tls": "verify", "tls_ca": other_ca.cert,
                                "tls_name": NAME, "probe_interval": "30s"})
    d_ref = env.daemon(name="refuse", primary_port=p_ref.port,
                       primary={"refuse_limit": "1", "refuse_pause": "3s"})
    for d in (d_par, d_mute, d_hang, d_none, d_ver, d_ref):
        d.start()

    par = [hf.send_ok(d_par.port, "par%d" % i) for i in range(6)]
    t0 = time.monotonic()
    s_mute = hf.send_ok(d_mute.port, "mute")
    s_hang = hf.send_ok(d_hang.port, "hang")
    s_none = hf.send_ok(d_none.port, "none")
    s_ver = hf.send_ok(d_ver.port, "verify")
    s_ref = hf.send_ok(d_ref.port, "refused", rcpts=["refused@example.test"])

    # ---- connect_timeout: no banner
    line = d_mute.wait_log(r"primary failure state=banner reason=\"?timeout",
                           timeout=10)[0]
    took = time.monotonic() - t0
    hf.note("no banner: %s after %.1fs" % (line.split("reason=")[1], took))
    hf.check(took < hf.scaled(8), "connect_timeout 1s took %.1fs" % took)
    d_mute.wait_log(r"primary down", timeout=5)
    hf.check(queued(d_mute, s_mute), "message left the queue after a "
             "banner timeout")

    # ---- timeout: a reply that stops half way
    t1 = time.monotonic()
    line = d_hang.wait_log(r"primary failure state=tx reason=\"?timeout "
                           r"in tx", timeout=10)[0]
    hf.note("hung reply: %s after %.1fs" % (line.split("reason=")[1],
                                            time.monotonic() - t1))
    hf.check(p_hang.commands("MAIL"), "hang primary saw no MAIL")
    hf.check(queued(d_hang, s_hang), "message left the queue after a "
             "reply timeout")
    hf.check(not p_hang.messages, "hang primary got a message")

    # ---- tls = none
    p_none.wait_messages(1, 15)
    hf.check(not p_none.commands("STARTTLS"), "tls = none sent STARTTLS")
    hf.check(not p_none.sessions[0].tls, "tls = none session was TLS")
    hf.check(b"token none" in p_none.messages[0].data, "tls = none: wrong "
             "message delivered")
    hf.wait_until(lambda: not queued(d_none, s_none), 5, "none removed")

    # ---- verify against a CA that did not sign
    d_ver.wait_log(r"primary failure state=tls-handshake reason=\"?TLS "
                   r"handshake failed: .*certificate verify failed",
                   timeout=15)
    hf.check(p_ver.commands("STARTTLS"), "verify: no STARTTLS sent")
    hf.check(not p_ver.commands("MAIL") and not p_ver.messages,
             "verify against an untrusted CA sent MAIL: %r"
             % p_ver.commands("MAIL"))
    hf.check(queued(d_ver, s_ver), "verify failure: message left queue/")

    # ---- refuse_pause runs out by itself
    began = d_ref.wait_log(r"primary refusing host=", timeout=10)[0]
    s_ref2 = hf.send_ok(d_ref.port, "afterpause")
    ended = d_ref.wait_log(r"primary refusing ended reason=pause-over",
                           timeout=15)[0]
    p_ref.wait_messages(1, 10)
    paused = log_time(ended) - log_time(began)
    hf.note("refuse_pause 3s: the pause lasted %.1fs" % paused)
    # the pause ends on a whole-second tick: 3s means between 2 and 4
    hf.check(1.9 <= paused <= hf.scaled(8), "refuse_pause 3s lasted %.1fs"
             % paused)
    hf.check(not d_ref.grep(r"flush"), "something flushed the pause")
    hf.check(b"token afterpause" in p_ref.messages[0].data, "wrong message")
    hf.check(d_ref.grep(r"msg=%s kept rcpt=\S+ reason=primary-refusing"
                        % s_ref.qid), "refused message not kept")
    hf.check(s_ref2.qid not in d_ref.queue_ids(), "afterpause still queued")

    # ---- host = localhost, helo_name, connections = 3
    p_par.start()
    p_par.wait_messages(6, 30)
    hf.note("connections = 3: %d sessions at most" % p_par.max_conns)
    hf.check(2 <= p_par.max_conns <= 3, "connections = 3 but %d parallel "
             "sessions" % p_par.max_conns)
    ehlos = set(p_par.commands("EHLO"))
    hf.check(ehlos == {b"EHLO relay.helo.test"}, "helo_name: EHLO lines %r"
             % ehlos)
    got = sorted(t for t in (hf.token_of(m.data) for m in p_par.messages))
    hf.check(got == sorted(s.token for s in par), "delivered %r" % got)

    # ---- the hung primary recovers: nothing was lost
    p_hang.hang = None
    p_hang.wait_messages(1, 15)
    hf.check(b"token hang" in p_hang.messages[0].data, "wrong message")
    hf.wait_until(lambda: not queued(d_hang, s_hang), 10, "hang removed")
    # the connection idles until its QUIT: with timeout = 2s its read
    # timeout may end first, which is no failure of the primary
    time.sleep(hf.scaled(2.5))
    idle = d_hang.grep(r"primary failure state=idle")
    hf.check(not idle, "an idle connection counted as a failure: %s"
             % idle[:1])


hf.run(main)
