#!/usr/bin/python3
"""PROXY protocol on a listener marked "proxy" (proxy_from 127.0.0.1/32),
beside a plain listener:

- v1 TCP4 and v2 (binary, TCP4) headers carrying 192.0.2.7 from 127.0.0.1:
  the log's "proxy", "accepted" and "disconnected" lines, the Received
  header and the XFORWARD to the primary (smtp-sink, through the tap) all
  show 192.0.2.7;
- the carried address is the one screened: with max_sessions_per_ip 2 the
  third session carried as 192.0.2.50 gets 421 4.7.0 while 192.0.2.51 is
  served;
- malformed headers (garbage, truncated v1 and v2, v1 with a bad address,
  an over-long v1 line, v2 with a bad version) and a valid header from an
  untrusted sender (bound to 127.0.0.2): the connection is closed without
  an SMTP banner;
- v2 LOCAL: served, with the real peer address 127.0.0.1;
- the plain listener takes no PROXY header ("PROXY ..." is a command)."""
import os
import re
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

V2SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src, dst="127.0.0.1", sport=40000, dport=25):
    return ("PROXY TCP4 %s %s %d %d\r\n" % (src, dst, sport, dport)).encode()


def v2(src, dst="127.0.0.1", sport=40000, dport=25, cmd=0x21, fam=0x11):
    body = (socket.inet_aton(src) + socket.inet_aton(dst) +
            struct.pack("!HH", sport, dport))
    return V2SIG + bytes([cmd, fam]) + struct.pack("!H", len(body)) + body


V2_LOCAL = V2SIG + bytes([0x20, 0x00]) + struct.pack("!H", 0)


def proxied(port, header, source=None, timeout=15):
    """Connect, send header; an SMTPClient that has read the banner."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                 source_address=(source, 0) if source
                                 else None)
    s.sendall(header)
    c = hf.SMTPClient.__new__(hf.SMTPClient)
    c.sock, c.buf, c.transcript = s, b"", []
    r = c.reply()
    hf.check(r.code == 220, "banner after PROXY header: %r" % r)
    return c


def send_via(port, header, token):
    c = proxied(port, header)
    try:
        c.ehlo("proxied.test")
        c.cmd("MAIL FROM:<s@client.test>", expect=250)
        c.cmd("RCPT TO:<rcpt@example.test>", expect=250)
        r = c.data(hf.dot_stuff(hf.make_message(token)))
        qid = r.queued_id()
        hf.check(qid, "%s: %r" % (token, r))
        c.quit()
        return qid
    finally:
        c.close()


def refused(port, data, what, source=None, shut=True, allow=b""):
    """data is sent; the server must close without sending anything."""
    s = socket.create_connection(("127.0.0.1", port), timeout=40,
                                 source_address=(source, 0) if source
                                 else None)
    try:
        s.sendall(data)
    except OSError:
        pass
    if shut:
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    got = b""
    t0 = time.monotonic()
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    except ConnectionResetError:
        pass
    except socket.timeout:
        hf.fail("%s: connection still open after %.0fs" % (
            what, time.monotonic() - t0))
    s.close()
    hf.check(got == b"" or (allow and got.startswith(allow)),
             "%s: server sent %r (wanted a silent close)" % (what, got))
    hf.check(b"220" not in got, "%s: banner %r" % (what, got))
    return time.monotonic() - t0


def main(env):
    sink = env.sink().start()
    pport = hf.free_port()
    port = hf.free_port()
    d = env.daemon(primary_port=sink.port, port=port,
                   server={"listen": ["127.0.0.1:%d" % port,
                                      "127.0.0.1:%d proxy" % pport],
                           "proxy_from": "127.0.0.1/32"},
                   screen={"max_sessions_per_ip": "2"}).start()
    hf.wait_port(pport, 5, what="proxy listener")

    sent = {}
    for tok, hdr in (("pv1", v1("192.0.2.7")), ("pv2", v2("192.0.2.7")),
                     ("plocal", V2_LOCAL)):
        mark = d.mark()
        qid = send_via(pport, hdr, tok)
        sent[tok] = qid
        acc = d.grep(r"msg=%s accepted" % qid)
        want = "127.0.0.1" if tok == "plocal" else "192.0.2.7"
        hf.check(acc and " addr=%s " % want in acc[0], "%s: accepted line "
                 "%s, wanted addr=%s" % (tok, acc, want))
        if tok != "plocal":
            hf.check(d.grep(r"proxy addr=192\.0\.2\.7 via=127\.0\.0\.1 "
                            r"port=40000", since=mark), "%s: no proxy line"
                     % tok)
            d.wait_log(r"disconnected addr=192\.0\.2\.7 ", since=mark,
                       timeout=5)
    hf.note("v1, v2 and v2 LOCAL served: %s" % sent)

    msgs = sink.wait_count(3, 30)
    for m in msgs:
        tok = hf.token_of(m.content)
        want = b"127.0.0.1" if tok == "plocal" else b"192.0.2.7"
        mm = re.match(rb"Received: from proxied\.test \([^ ]+ \[([^\]]+)\]"
                      rb"\)\r\n\tby mx2\.example\.test \(holdfast\) with "
                      rb"ESMTP id ([0-9a-f]{16})", m.content)
        hf.check(mm, "%s: Received %r" % (tok, m.content[:200]))
        hf.check(mm.group(1) == want, "%s: Received shows [%s], wanted %s"
                 % (tok, mm.group(1).decode(), want.decode()))
        hf.check(mm.group(2).decode() == sent[tok], "%s: Received id" % tok)
    # XFORWARD to the primary (smtp-sink offers it) carries the address
    xf = []
    for c2s in sorted(os.listdir(sink.tap_dir)):
        if c2s.endswith(".c2s"):
            with open(os.path.join(sink.tap_dir, c2s), "rb") as f:
                xf += re.findall(rb"XFORWARD [^\r\n]*ADDR=([^ \r\n]+)",
                                 f.read())
    hf.check(xf.count(b"192.0.2.7") >= 2, "XFORWARD ADDR values %s lack "
             "192.0.2.7" % xf)

    # screening uses the carried address
    held = [proxied(pport, v1("192.0.2.50", sport=40000 + i))
            for i in range(2)]
    s = socket.create_connection(("127.0.0.1", pport), timeout=10)
    s.sendall(v1("192.0.2.50", sport=40009))
    data = s.recv(4096)
    s.close()
    hf.check(data.startswith(b"421 4.7.0 "), "3rd session carried as "
             "192.0.2.50 got %r, wanted 421 4.7.0" % data)
    hf.check(send_via(pport, v1("192.0.2.51"), "other51"), "192.0.2.51")
    for c in held:
        c.quit()
    hf.note("per-address limit applies to the carried address")

    # malformed and untrusted: closed, no banner
    cases = [
        ("garbage", b"HELO there, no proxy header here\r\n"),
        ("truncated v1", b"PROXY TCP4 192.0.2.7 127.0.0.1 4000"),
        ("truncated v2", v2("192.0.2.7")[:20]),
        ("v1 bad address", v1("192.0.2.300")),
        ("v1 bad family", b"PROXY TCP5 192.0.2.7 127.0.0.1 1 2\r\n"),
        ("v1 v6 address as TCP4", v1("2001:db8::7")),
        ("v1 too long", b"PROXY TCP4 " + b"1" * 200 + b"\r\n"),
        ("v2 bad version", V2SIG + bytes([0x31, 0x11]) +
         struct.pack("!H", 12) + b"\x00" * 12),
        ("v2 short length", V2SIG + bytes([0x21, 0x11]) +
         struct.pack("!H", 4) + b"\xc0\x00\x02\x07"),
        ("bare SMTP", b"EHLO client.test\r\n"),
    ]
    for what, data in cases:
        mark = d.mark()
        secs = refused(pport, data, what)
        if what.startswith("truncated"):
            # EOF before the header ends: just a disconnect
            d.wait_log(r"disconnected addr=127\.0\.0\.1 ", since=mark,
                       timeout=5)
        else:
            hf.check(d.grep(r"bad PROXY header", since=mark), "%s: no 'bad "
                     "PROXY header' logged" % what)
        hf.check(not d.grep(r"reply=\"220", since=mark), "%s: banner "
                 "logged" % what)
        hf.check(secs < 5, "%s: close took %.1fs" % (what, secs))
    # never completed, never closed by us: the server's own limit closes
    mark = d.mark()
    secs = refused(pport, b"PROXY TCP4 192.0.2.7 ", "unfinished header "
                   "(no EOF)", shut=False, allow=b"421 4.4.2 ")
    hf.note("unfinished header closed after %.1fs" % secs)
    hf.check(secs <= 35, "unfinished header held %.1fs" % secs)
    # a valid header from an untrusted sender
    mark = d.mark()
    refused(pport, v1("192.0.2.7"), "untrusted sender", source="127.0.0.2",
            shut=False)
    hf.check(d.grep(r"PROXY from untrusted addr=127\.0\.0\.2", since=mark),
             "untrusted: not logged")
    refused(pport, v2("192.0.2.7"), "untrusted sender v2",
            source="127.0.0.3", shut=False)
    hf.check(not d.grep(r"addr=192\.0\.2\.7", since=mark), "an untrusted "
             "header was believed")
    hf.note("%d malformed/untrusted cases closed without a banner"
            % (len(cases) + 3))

    # the plain listener does not take PROXY headers
    c = d.connect()
    r = c.cmd(v1("192.0.2.7").rstrip(b"\r\n"))
    hf.check(r.code >= 500, "PROXY on the plain listener -> %r" % r)
    c.quit()
    hf.check(d.alive(), "daemon died")


hf.run(main)
