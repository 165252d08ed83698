#!/usr/bin/python3
"""Lines a peer triggers by repeating a command are rate-limited too.

  min_free: below [spool] min_free every MAIL gets 452 4.3.1 (not a 5xx, so
            the error limit never hangs up): 300 MAIL commands in one
            session must not write 300 "spool below min_free" lines.
  size:     MAIL FROM with SIZE over the limit gets 552 5.3.4; 20 sessions
            of 15 such commands must not write 300 "too large claim" lines.
  connect:  300 connections from one address over its [screen] conn_rate,
            then 300 while max_sessions are busy, each answered 421: the
            "smtp connected" and "disconnected" lines of sessions refused
            at connect are limited with the refusal (and still come in
            pairs); sessions that are served are all logged.
  proxy:    the same through a trusted proxy (proxy_from): 300 sessions
            whose PROXY header carries an address over its conn_rate, then
            300 with a bad header, and 300 that end before the header does:
            their "smtp connected" and "proxy addr=... via=..." lines are
            limited too.

Each site writes at most 10 lines a second and a "log suppressed" summary
counts the rest.  Without the limit every command wrote a line: a peer
could fill the disk with log while the disk is already low."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

PER_SEC = 10


def bound(t0):
    # the window is a calendar second: one more than the elapsed ones
    return PER_SEC * (int(time.monotonic() - t0) + 2)


def min_free(env, sink):
    d = env.daemon(name="lowdisk", primary_port=sink.port,
                   spool={"min_free": "1000000G"}).start()
    c = hf.SMTPClient(d.port)
    c.ehlo()
    t0 = time.monotonic()
    for i in range(300):
        r = c.cmd("MAIL FROM:<a%d@client.test>" % i)
        hf.check(r.code == 452 and "4.3.1" in r.text,
                 "MAIL %d below min_free -> %r, want 452 4.3.1" % (i, r))
    c.quit()
    limit = bound(t0)
    d.wait_log(r'log suppressed site="smtp deferred message"', timeout=5)
    n = len(d.grep(r"spool below min_free"))
    hf.check(1 <= n <= limit, "%d min_free lines for 300 MAIL commands "
             "(want 1..%d)" % (n, limit))
    d.stop()


def size_claim(env, sink):
    d = env.daemon(name="size", primary_port=sink.port).start()
    t0 = time.monotonic()
    for s in range(20):
        c = hf.SMTPClient(d.port)
        c.ehlo()
        for i in range(15):
            c.cmd("MAIL FROM:<a%d@client.test> SIZE=999999999999" % i,
                  expect=552)
        c.quit()
    limit = bound(t0)
    d.wait_log(r'log suppressed site="smtp too large"', timeout=5)
    n = len(d.grep(r"message too large claim="))
    hf.check(1 <= n <= limit, "%d SIZE-claim lines for 300 commands "
             "(want 1..%d)" % (n, limit))
    d.stop()


def flood(port, n):
    """n connections, each read up to its 421 and closed."""
    codes = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            codes.append(s.recv(64)[:3])
        finally:
            s.close()
    return codes


def pairs_within(d, what, mark, limit, served):
    """At most served (sessions that got a banner) + limit connected
    lines since mark, and every one with its disconnected line."""
    hf.wait_until(lambda: len(d.grep(r" disconnected addr=")) ==
                  len(d.grep(r" smtp connected addr=")), 5,
                  "%s: every connected line to get its disconnected" % what)
    n = len(d.grep(r" smtp connected addr=", since=mark))
    hf.check(n <= served + limit, "%s: %d 'smtp connected' lines for 300 "
             "refused connections (want at most %d)"
             % (what, n, served + limit))
    hf.note("%s: %d connected/disconnected pairs for 300 refused" % (what, n))


def proxy_flood(env, sink):
    pport = hf.free_port()
    port = hf.free_port()
    d = env.daemon(name="proxy", primary_port=sink.port, port=port,
                   server={"listen": ["127.0.0.1:%d" % port,
                                      "127.0.0.1:%d proxy" % pport],
                           "proxy_from": "127.0.0.1/32"},
                   screen={"allow": "", "conn_rate": "3"}).start()
    hf.wait_port(pport, 5, what="proxy listener")
    # the two probes (the harness's readiness probe and wait_port's, which
    # ends before a PROXY header) must have written their lines before the
    # first mark: they are neither refused nor among the 3 served
    hf.wait_until(lambda: 2 <= len(d.grep(r" disconnected addr=")) ==
                  len(d.grep(r" smtp connected addr=")), 5,
                  "proxy: the two probes' sessions to end")
    for what, header, want in (
            ("proxied over conn_rate",
             b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n", b"421"),
            ("bad PROXY header", b"garbage\r\n", b""),
            ("unfinished PROXY header", b"PROXY TCP4 192.0.2.7 ", b"")):
        mark = d.mark()
        t0 = time.monotonic()
        codes = []
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", pport), timeout=5)
            try:
                s.sendall(header)
                if not want:
                    s.shutdown(socket.SHUT_WR)
                codes.append(s.recv(64)[:3])
            except ConnectionResetError:
                codes.append(b"")
            finally:
                s.close()
        hf.check(codes.count(want) >= 297, "%s: %d of 300 got %r"
                 % (what, codes.count(want), want))
        limit = bound(t0)
        # served: at most conn_rate (3) in the minute
        pairs_within(d, what, mark, limit, 3)
        n = len(d.grep(r" proxy addr=", since=mark))
        hf.check(n <= 3 + limit, "%s: %d 'proxy addr=' lines for 300 "
                 "refused connections (want at most %d)"
                 % (what, n, 3 + limit))
    d.stop()


def connect_flood(env, sink):
    d = env.daemon(name="rate", primary_port=sink.port,
                   screen={"allow": "", "conn_rate": "3"}).start()
    mark = d.mark()
    t0 = time.monotonic()
    codes = flood(d.port, 303)
    refused = codes.count(b"421")
    hf.check(refused >= 300, "over conn_rate: %d of 303 got 421" % refused)
    # served: at most conn_rate (3) in the minute, the harness's own
    # readiness probe among them, whose line may come after the mark
    pairs_within(d, "conn_rate", mark, bound(t0), 3)
    d.stop()

    d = env.daemon(name="busy", primary_port=sink.port,
                   server={"max_sessions": "2"}).start()
    # the harness's readiness probe must be gone before two sessions
    # fill max_sessions (a banner written at once lets a client connect
    # before the loop has seen the probe's close)
    hf.wait_until(lambda: 1 <= len(d.grep(r" disconnected addr=")) ==
                  len(d.grep(r" smtp connected addr=")), 5,
                  "busy: the readiness probe's session to end")
    held = [hf.SMTPClient(d.port) for _ in range(2)]
    mark = d.mark()
    t0 = time.monotonic()
    codes = flood(d.port, 300)
    hf.check(codes.count(b"421") == 300, "busy: %d of 300 got 421"
             % codes.count(b"421"))
    limit = bound(t0)
    for c in held:
        c.quit()
    pairs_within(d, "max_sessions", mark, limit, 0)
    d.stop()


def main(env):
    sink = env.sink().start()
    min_free(env, sink)
    size_claim(env, sink)
    connect_flood(env, sink)
    proxy_flood(env, sink)


hf.run(main)
