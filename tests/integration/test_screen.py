#!/usr/bin/python3
"""Screening that only defers, from several client addresses 127.0.0.x.

Daemon "screened" (greet_wait 1s, two DNSBL zones served by a loopback
dnsmasq: bl1.test weight 1, bl2.test weight 2, threshold 2; allow
127.0.0.9/32):
- pregreet: EHLO before the banner -> 421 4.7.0, log "pregreet", metric
  reason="pregreet"; a patient client waits >= 1s and is served;
- DNSBL: 127.0.0.2 (bl2, weight 2) and 127.0.0.5 (both) get 450 4.7.1 at
  RCPT, never 5xx; 127.0.0.4 (bl1 only, weight 1) and 127.0.0.3 (unlisted)
  get 250; metric reason="dnsbl";
- allow: 127.0.0.9 is listed in bl2 and talks early, and is served.

Daemon "limits" (greet_wait 0, max_sessions_per_ip 5, conn_rate 8, msg_rate
3, min_data_rate 1000):
- 6th concurrent session from 127.0.0.10 -> 421 4.7.0 while 127.0.0.3 is
  served; the 9th connection in a minute from 127.0.0.11 -> 421 4.7.0; the
  4th message in a minute from 127.0.0.12 -> 451 4.7.1;
- a 3000-octet command line -> 500 5.5.2 and the session goes on;
- 200 slowloris clients (1 byte/s of a command line, 127.0.1.1-100, ~15 s)
  while a normal client completes a message in < 2 s each time; VmRSS
  stays bounded;
- DATA at 100 B/s (below min_data_rate 1000) -> 421 4.4.2 after the 30 s
  window (runs in the background, concurrently with the rest)."""
import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

SLOW_CLIENTS = 200
SLOW_SECS = 15
RSS_GROWTH_MAX_KB = 64 * 1024


def session(d, source, timeout=30):
    return hf.SMTPClient(d.port, timeout=timeout, source=source)


def one_message(d, source, token, rcpt="rcpt@example.test"):
    """A complete message from source; returns the queue id."""
    c = session(d, source)
    try:
        c.ehlo()
        c.cmd("MAIL FROM:<s@client.test>", expect=250)
        c.cmd("RCPT TO:<%s>" % rcpt, expect=250)
        r = c.data(hf.dot_stuff(hf.make_message(token)))
        c.quit()
        return r.queued_id()
    finally:
        c.close()


def rcpt_code(d, source):
    """(MAIL reply, RCPT reply) from source."""
    c = session(d, source)
    try:
        c.ehlo()
        rm = c.cmd("MAIL FROM:<s@client.test>")
        rr = c.cmd("RCPT TO:<rcpt@example.test>")
        rr2 = c.cmd("RCPT TO:<other@example.org>")
        c.quit()
        return rm, rr, rr2
    finally:
        c.close()


class SlowData(threading.Thread):
    """DATA at 100 octets/s from 127.0.0.13 for up to 40 s."""

    def __init__(self, d):
        super().__init__(daemon=True)
        self.d = d
        self.result = None
        self.error = None
        self.elapsed = None

    def run(self):
        try:
            c = session(self.d, "127.0.0.13", timeout=60)
            c.ehlo()
            c.cmd("MAIL FROM:<slow@client.test>", expect=250)
            c.cmd("RCPT TO:<rcpt@example.test>", expect=250)
            c.cmd("DATA", expect=354)
            c.sock.settimeout(0.05)
            t0 = time.monotonic()
            while time.monotonic() - t0 < 40:
                try:
                    c.sock.sendall(b"x" * 98 + b"\r\n")
                except OSError:
                    pass
                try:
                    chunk = c.sock.recv(4096)
                    if chunk:
                        self.result = chunk
                        self.elapsed = time.monotonic() - t0
                        break
                    self.result = b"EOF"
                    break
                except socket.timeout:
                    pass
                except OSError as e:
                    self.result = ("error %s" % e).encode()
                    break
                time.sleep(0.95)
            c.close()
        except Exception as e:            # reported by the main thread
            self.error = repr(e)


def screened_part(env, d, metrics_before):
    # pregreet
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10,
                                 source_address=("127.0.0.6", 0))
    s.sendall(b"EHLO impatient.test\r\n")
    data = b""
    t0 = time.monotonic()
    while b"\n" not in data and time.monotonic() - t0 < 10:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    hf.check(data.startswith(b"421 4.7.0 "), "pregreet talker got %r, "
             "wanted 421 4.7.0 (and no banner)" % data)
    d.wait_log(r"pregreet addr=127\.0\.0\.6\b", timeout=5)
    # patient client: the banner comes after greet_wait and it is served
    t0 = time.monotonic()
    c = session(d, "127.0.0.7")
    waited = time.monotonic() - t0
    hf.check(waited >= 0.9, "banner after %.2fs, greet_wait is 1s" % waited)
    c.ehlo()
    c.cmd("MAIL FROM:<s@client.test>", expect=250)
    c.cmd("RCPT TO:<rcpt@example.test>", expect=250)
    r = c.data(hf.dot_stuff(hf.make_message("patient")))
    hf.check(r.queued_id(), "patient client: %r" % r)
    c.quit()
    hf.note("pregreet: talker 421, patient client served after %.1fs"
            % waited)

    # DNSBL with weights and threshold
    for src, listed in (("127.0.0.2", True), ("127.0.0.5", True),
                        ("127.0.0.4", False), ("127.0.0.3", False)):
        rm, rr, rr2 = rcpt_code(d, src)
        hf.check(rm.code == 250, "%s: MAIL -> %r" % (src, rm))
        for r in (rr, rr2):
            if listed:
                hf.check(r.code == 450 and r.text.startswith("450 4.7.1"),
                         "%s (listed) RCPT -> %r, wanted 450 4.7.1" % (src, r))
            else:
                hf.check(r.code == 250, "%s (under the threshold) RCPT -> "
                         "%r" % (src, r))
    hf.check(one_message(d, "127.0.0.3", "unlisted"), "unlisted client")
    lines = d.grep(r"dnsbl listed addr=127\.0\.0\.2 ")
    hf.check(lines and "zone=bl2.test" in lines[0], "dnsbl log for "
             "127.0.0.2: %s" % lines)
    hf.check(d.grep(r"dnsbl listed addr=127\.0\.0\.5 .*weight=3"),
             "127.0.0.5 should weigh 3 (both zones)")
    hf.check(d.grep(r"dnsbl listed addr=127\.0\.0\.4 .*weight=1"),
             "127.0.0.4 should weigh 1")
    hf.note("dnsbl: weight>=2 deferred 450 4.7.1, weight 1 and unlisted "
            "served")

    # allow list skips every screen: listed and talking early, served
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10,
                                 source_address=("127.0.0.9", 0))
    c = hf.SMTPClient.__new__(hf.SMTPClient)
    c.sock, c.buf, c.transcript = s, b"", []
    c.send(b"EHLO allowed.test\r\n")
    r = c.reply()
    hf.check(r.code == 220, "allowed client, early talker: %r" % r)
    r = c.reply()
    hf.check(r.code == 250, "allowed client EHLO: %r" % r)
    c.cmd("MAIL FROM:<s@client.test>", expect=250)
    c.cmd("RCPT TO:<rcpt@example.test>", expect=250)
    r = c.data(hf.dot_stuff(hf.make_message("allowed")))
    hf.check(r.queued_id(), "allowed: %r" % r)
    c.quit()

    m = d.scrape()
    hf.check(m.get("holdfast_screen_deferrals_total", reason="pregreet") >=
             metrics_before[0] + 1, "pregreet metric not counted")
    hf.check(m.get("holdfast_screen_deferrals_total", reason="dnsbl") >=
             metrics_before[1] + 4, "dnsbl metric not counted")
    hf.check(not d.grep(r"reply=\"5\d\d [^\"]*(dnsbl|client host|"
                        r"talked)", 0), "a 5xx from a screen")


def limits_part(env, d):
    # per-address session limit
    held = []
    for i in range(5):
        c = session(d, "127.0.0.10")
        held.append(c)
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10,
                                 source_address=("127.0.0.10", 0))
    data = s.recv(4096)
    s.close()
    hf.check(data.startswith(b"421 4.7.0 "), "6th session from 127.0.0.10 "
             "got %r, wanted 421 4.7.0" % data)
    hf.check(one_message(d, "127.0.0.3", "otheraddr"), "127.0.0.3 not "
             "served while 127.0.0.10 is at its limit")
    for c in held:
        c.ehlo()            # the held ones still work
        c.quit()
    hf.note("per-address limit: 6th from 127.0.0.10 got 421 4.7.0, "
            "127.0.0.3 served")

    # connections per minute
    for i in range(8):
        c = session(d, "127.0.0.11")
        c.quit()
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10,
                                 source_address=("127.0.0.11", 0))
    data = s.recv(4096)
    s.close()
    hf.check(data.startswith(b"421 4.7.0 "), "9th connection in a minute "
             "from 127.0.0.11 got %r" % data)

    # messages per minute
    c = session(d, "127.0.0.12")
    c.ehlo()
    for i in range(3):
        c.cmd("MAIL FROM:<s@client.test>", expect=250)
        c.cmd("RCPT TO:<rcpt@example.test>", expect=250)
        c.data(hf.dot_stuff(hf.make_message("rate%d" % i)))
    r = c.cmd("MAIL FROM:<s@client.test>")
    hf.check(r.code == 451 and r.text.startswith("451 4.7.1"),
             "4th message in a minute -> %r, wanted 451 4.7.1" % r)
    c.quit()
    hf.note("conn_rate 421 4.7.0 and msg_rate 451 4.7.1")

    # long command lines
    c = session(d, "127.0.0.14")
    c.ehlo()
    r = c.cmd(b"NOOP " + b"p" * 1500)
    hf.check(r.code == 250, "a 1505-octet line (legal for ESMTP params) -> "
             "%r" % r)
    r = c.cmd(b"MAIL FROM:<s@client.test> " + b"X" * 3000)
    hf.check(r.code == 500 and r.text.startswith("500 5.5.2"),
             "3000-octet line -> %r" % r)
    # much longer, in pieces: one answer, nothing buffered
    c.send(b"RCPT TO:<" + b"y" * 50000)
    c.send(b"y" * 50000 + b">\r\n")
    r = c.reply()
    hf.check(r.code == 500, "100k line -> %r" % r)
    c.cmd("NOOP", expect=250)
    c.cmd("MAIL FROM:<s@client.test>", expect=250)
    c.cmd("RCPT TO:<rcpt@example.test>", expect=250)
    r = c.data(hf.dot_stuff(hf.make_message("afterlong")))
    hf.check(r.queued_id(), "after long lines: %r" % r)
    c.quit()
    hf.note("long lines: 500 5.5.2, session continues")

    # slowloris
    rss0 = hf.rss_kb(d.pid)
    slow = []
    for i in range(SLOW_CLIENTS):
        src = "127.0.1.%d" % (1 + i % 100)
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10,
                                     source_address=(src, 0))
        slow.append(s)
    for s in slow:
        data = s.recv(4096)
        hf.check(data.startswith(b"220 "), "slowloris client banner %r"
                 % data)
        s.setblocking(False)
    line = b"EHLO slowloris.example.test and more and more and more\r\n"
    t0 = time.monotonic()
    i = 0
    worst = 0.0
    rss_max = rss0
    normal = 0
    while time.monotonic() - t0 < SLOW_SECS:
        for s in slow:
            try:
                s.send(line[i % (len(line) - 2):i % (len(line) - 2) + 1])
            except OSError:
                pass
        i += 1
        t1 = time.monotonic()
        qid = one_message(d, "127.0.2.%d" % (1 + normal % 250),
                          "normal%d" % normal)
        dt = time.monotonic() - t1
        hf.check(qid, "normal client during slowloris")
        worst = max(worst, dt)
        normal += 1
        rss_max = max(rss_max, hf.rss_kb(d.pid))
        time.sleep(max(0, 1.0 - (time.monotonic() - t1)))
    closed = 0
    for s in slow:
        try:
            if s.recv(4096) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    hf.note("slowloris: %d clients %ds, %d normal messages, worst %.2fs, "
            "RSS %d -> max %d kB, %d cut" % (SLOW_CLIENTS, SLOW_SECS,
                                             normal, worst, rss0, rss_max,
                                             closed))
    hf.check(worst < 2.0, "a normal message took %.2fs during slowloris"
             % worst)
    hf.check(rss_max - rss0 < RSS_GROWTH_MAX_KB, "RSS grew from %d to %d kB"
             " with %d slow clients" % (rss0, rss_max, SLOW_CLIENTS))
    hf.check(d.alive(), "daemon died")
    return rss_max


def main(env):
    dns = env.own(hf.Dnsmasq(env, [
        "--address=/2.0.0.127.bl2.test/127.0.0.2",
        "--address=/5.0.0.127.bl1.test/127.0.0.2",
        "--address=/5.0.0.127.bl2.test/127.0.0.4",
        "--address=/4.0.0.127.bl1.test/127.0.0.2",
        "--address=/9.0.0.127.bl2.test/127.0.0.2",
        "--local=/test/"])).start()
    sink = env.sink().start()
    scr = env.daemon(name="screened", primary_port=sink.port,
                     metrics={"listen": "auto"},
                     screen={"greet_wait": "1s",
                             "dnsbl": "bl1.test*1, bl2.test*2",
                             "dnsbl_threshold": "2",
                             "dns_server": "127.0.0.1:%d" % dns.port,
                             "allow": "127.0.0.9/32"}).start()
    lim = env.daemon(name="limits", primary_port=sink.port,
                     server={"min_data_rate": "1000"},
                     screen={"greet_wait": "0", "allow": "",
                             "max_sessions_per_ip": "5", "conn_rate": "8",
                             "msg_rate": "3"}).start()
    slowdata = SlowData(lim)
    slowdata.start()
    m0 = scr.scrape()
    before = (m0.get("holdfast_screen_deferrals_total", reason="pregreet"),
              m0.get("holdfast_screen_deferrals_total", reason="dnsbl"))
    screened_part(env, scr, before)
    limits_part(env, lim)

    slowdata.join(50)
    hf.check(not slowdata.is_alive(), "slow DATA client still running")
    hf.check(slowdata.error is None, "slow DATA client: %s"
             % slowdata.error)
    hf.check(slowdata.result is not None and
             slowdata.result.startswith(b"421 4.4.2 "),
             "DATA at 100 B/s got %r, wanted 421 4.4.2" % slowdata.result)
    hf.check(29 <= slowdata.elapsed <= 36, "421 after %.1fs of DATA"
             % slowdata.elapsed)
    lim.wait_log(r"data too slow addr=127\.0\.0\.13 ", timeout=5)
    hf.note("slow DATA cut after %.1fs: %r" % (slowdata.elapsed,
                                              slowdata.result[:60]))
    hf.check(not lim.grep(r"msg=\S+ accepted .*from=<slow@"),
             "the slow message was accepted")
    for d in (scr, lim):
        hf.check(not d.grep(r'reply="5\d\d (?!5\.5\.2)'),
                 "%s sent a 5xx other than 5.5.2: %s" % (
                     d.name, d.grep(r'reply="5\d\d (?!5\.5\.2)')[:2]))


hf.run(main)
