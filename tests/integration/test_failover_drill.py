#!/usr/bin/python3
"""The failover drill, the operator's go-live gate (docs/OPERATIONS.md,
"Failover drill"), against a primary built like the operator's
(lib/primary.py: the router's HAProxy sending PROXY v2 to postscreen,
Postfix configured from contrib/primary/docker-mailserver/ the way
docker-mailserver applies it, rspamd as milter, Dovecot LMTP into a
Maildir).

holdfast drains from [primary] source = 127.0.0.2, "the drain /32" that the
primary trusts and nothing else on loopback is.

0. Primary up.  holdfast's health probe reads the primary's EHLO through
   HAProxy and postscreen and learns SIZE 26214400 (message_size_limit
   25 MiB): size_limit = 25 MiB - 16 KiB.
1. The mail server stops (Postfix; the router's HAProxy stays up, accepts
   the drain's connection and closes it).  holdfast finds the primary down
   when it tries to drain the first message.
2. Sent through holdfast while it is down: (1) a normal message, (2) a
   GTUBE message, (3) a 12 MB message, (4) a 26 MB message, which holdfast
   refuses with 552 5.3.4 (the limit it learned before the outage).
   `holdfastctl queue` and `status` are shown at each step.
3. The mail server starts.  Pass when (1)-(3) are in the Maildir within
   probe_interval + 5 s, bodies byte for byte (Dovecot stores LF line ends:
   compared after CRLF -> LF), headers as sent; rspamd scored them against
   the original client, not the backup (milter headers and rspamd's log);
   (2) is delivered and tagged (X-Spam: Yes, action "add header"), never
   rejected; dead/ is empty; postscreen saw 127.0.0.2 (from the PROXY v2
   header) and let it straight through; Postfix believed the XFORWARD.

The original client.  rspamd takes every 127/8 address for a local one,
whatever local_networks says, so a client on 127.0.0.3 could not show that
external_relay picked holdfast's Received header for the right reason.
The test's client therefore connects from 127.0.0.3 to a PROXY listener of
holdfast's (proxy_from 127.0.0.3/32) and says it is 198.51.100.7: holdfast
sees, writes (Received) and forwards (XFORWARD) 198.51.100.7, and that is
the address rspamd must score."""
import base64
import os
import random
import re
import smtplib
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402
import primary  # noqa: E402

BACKUP = "127.0.0.2"          # [primary] source: the drain /32
CLIENT_SOCKET = "127.0.0.3"   # where the test's client connects from
ORIGINAL = "198.51.100.7"     # the original client, via PROXY v2
PRIMARY_LIMIT = 25 * 1024 * 1024
HEADROOM = 16384              # holdfast's headroom under the primary's SIZE
PROBE_INTERVAL = 2
MB = 1024 * 1024


def proxy_v2(src, dst, sport, dport):
    body = (socket.inet_aton(src) + socket.inet_aton(dst) +
            struct.pack("!HH", sport, dport))
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) +
            struct.pack("!H", len(body)) + body)


class ProxiedSMTP(smtplib.SMTP):
    """smtplib from CLIENT_SOCKET, announcing ORIGINAL in PROXY v2."""

    def _get_socket(self, host, port, timeout):
        s = socket.create_connection((host, port), timeout,
                                     (CLIENT_SOCKET, 0))
        s.sendall(proxy_v2(ORIGINAL, host, 41000, port))
        return s


def message(token, subject, body, ctype="text/plain; charset=us-ascii"):
    head = ("From: Drill Sender <drill@sender.example>\r\n"
            "To: <user@example.org>\r\n"
            "Subject: %s\r\n"
            "Date: Mon, 30 Nov 2026 12:00:00 +0000\r\n"
            "Message-ID: <%s@sender.example>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: %s\r\n"
            "X-Drill-Token: %s\r\n\r\n" % (subject, token, ctype, token))
    return head.encode() + body


def with_attachment(token, subject, size):
    """A message of about size octets: a short text part and a base64
    attachment, the way a message over 10 MB usually looks.  (A 12 MB
    plain-text body makes rspamd 3.4's regexp rules slow enough to hit its
    slow-rule timer, which crashes the proxy worker now and then; the
    milter then fails open and the message arrives unscanned.)"""
    raw = random.Random(token).randbytes(size * 3 // 4 // 64) * 64
    b64 = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    body = (b"--drill-boundary\r\n"
            b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            b"The scans you asked for.\r\n"
            b"--drill-boundary\r\n"
            b"Content-Type: application/octet-stream; name=scans.bin\r\n"
            b"Content-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=scans.bin\r\n\r\n"
            + b64 + b"--drill-boundary--\r\n")
    return message(token, subject, body,
                   ctype="multipart/mixed; boundary=drill-boundary")


def send(port, content):
    """smtplib sendmail (it claims SIZE=); returns (code, text)."""
    with ProxiedSMTP("127.0.0.1", port, local_hostname="mail.sender.example",
                     timeout=120) as s:
        try:
            s.sendmail("drill@sender.example", ["user@example.org"], content)
        except smtplib.SMTPSenderRefused as e:
            return e.smtp_code, e.smtp_error
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error
        return 250, b""


def show(d, step):
    """holdfastctl status and queue at a step of the drill (they go to the
    test's output; docs/OPERATIONS.md quotes them)."""
    st = d.ctl("status").ok()
    q = d.ctl("queue").ok()
    hf.note("%s: holdfastctl status\n%s\n  holdfastctl queue\n%s"
            % (step, st.out.rstrip(), q.out.rstrip()))
    return st.out, q.out


def token_header(raw):
    v = primary.header_values(raw, "X-Drill-Token")
    return v[0] if v else None


def main(env):
    sent = {
        "normal": message("normal", "drill: normal",
                          b"An ordinary message sent during the outage.\r\n"),
        "gtube": message("gtube", "drill: GTUBE",
                         b"High-spam test message.\r\n\r\n" + primary.GTUBE +
                         b"\r\n"),
        "big": with_attachment("big", "drill: 12 MB", 12 * MB),
    }
    over = with_attachment("over", "drill: 26 MB", 26 * MB)
    t0 = time.monotonic()
    pr = primary.Primary(env, backup=BACKUP, size_limit=PRIMARY_LIMIT,
                         mark_ips={"HF_TEST_SCORED_AS_ORIGINAL": ORIGINAL,
                                   "HF_TEST_SCORED_AS_BACKUP": BACKUP})
    pr.setup()
    # rspamd takes longest to come up: start it first, wait for it last
    pr.start_rspamd()
    pr.start_dovecot()
    pr.start_mailserver()
    pr.start_router()

    pport = hf.free_port()
    lport = hf.free_port()
    d = env.daemon(primary_host=pr.addr, primary_port=pr.port,
                   domains=("example.org",),
                   port=lport,
                   server={"listen": ["127.0.0.1:%d" % lport,
                                      "127.0.0.1:%d proxy" % pport],
                           "proxy_from": CLIENT_SOCKET + "/32"},
                   primary={"source": BACKUP,
                            "probe_interval": "%ds" % PROBE_INTERVAL})
    d.start()
    hf.wait_port(pport, 5, what="holdfast proxy listener")

    # 0. the probe learns the primary's SIZE through HAProxy and postscreen
    limit = PRIMARY_LIMIT - HEADROOM
    d.wait_log(r"primary offers size=%d .*size_limit=%d"
               % (PRIMARY_LIMIT, limit), 20)
    st, _ = show(d, "0. primary up")
    hf.check("primary: up" in st and
             re.search(r"^primary_size: [\d.]+ [KMG]iB \(%d\)$" % PRIMARY_LIMIT,
                       st, re.M) and
             re.search(r"^size_limit: [\d.]+ [KMG]iB \(%d\)$" % limit, st,
                       re.M),
             "status before the outage:\n%s" % st)

    # 1. the mail server goes down; the router stays up
    mark = d.mark()
    pr.stop_mailserver()
    hf.note("mail server stopped (%.1fs into the test)"
            % (time.monotonic() - t0))
    show(d, "1. mail server stopped")

    # 2. the four messages
    hf.check(10 * MB < len(sent["big"]) < limit, "12 MB message is %d"
             % len(sent["big"]))
    hf.check(len(over) > PRIMARY_LIMIT, "26 MB message is %d" % len(over))
    for tok in ("normal", "gtube", "big"):
        t = time.monotonic()
        code, text = send(pport, sent[tok])
        hf.note("(%s) %d octets: %s in %.1fs" % (tok, len(sent[tok]), code,
                                                 time.monotonic() - t))
        hf.check(code == 250, "(%s) while the primary is down -> %s %r"
                 % (tok, code, text))
        if tok == "normal":
            # holdfast finds the primary down when it tries to drain (an
            # idle primary is probed every 5 minutes only)
            d.wait_log(r"primary down ", 15, since=mark)
            show(d, "2a. first message queued, primary found down")
    code, text = send(pport, over)
    hf.check(code == 552 and text.startswith(b"5.3.4"),
             "(4) 26 MB while the primary is down -> %s %r, want 552 5.3.4 "
             "(the SIZE learned before the outage)" % (code, text))
    hf.note("(4) refused: %s %s" % (code, text.decode()))
    st, q = show(d, "2. four messages sent")
    hf.check(len(d.queue_ids()) == 3, "queue holds %r, want 3 messages"
             % d.queue_ids())
    hf.check("primary: down" in st and "waiting_messages: 3" in st and
             "dead_messages: 0" in st, "status while down:\n%s" % st)
    hf.check(q.count(" waiting ") == 3 and "-- 3 messages" in q,
             "queue while down: want 3 messages waiting:\n%s" % q)
    hf.check(not pr.maildir_messages(), "delivered while Postfix was down")

    # 3. the mail server returns
    mark = d.mark()
    pr.wait_rspamd(60)
    pr.start_mailserver()
    # measured from the moment `postfix start` began, not from when the
    # harness saw the listener (that is later)
    t_back = pr.started_at
    hf.note("mail server back (%.1fs into the test, up %.1fs later)"
            % (t_back - t0, time.monotonic() - t_back))

    def all_in():
        if d.dead_ids():
            hf.fail("the primary refused a drained message: dead/ %r; %s"
                    % (d.dead_ids(), d.grep(r"\bmsg=\S+ dead\b")))
        got = {token_header(raw): raw for _, raw in pr.maildir_messages()}
        return got if all(t in got for t in sent) else None
    budget = PROBE_INTERVAL + 5
    got = hf.wait_until(all_in, max(0.0, t_back + budget - time.monotonic()),
                        "(1)-(3) in the Maildir within probe_interval + 5 s "
                        "of the primary's return", interval=0.1)
    took = time.monotonic() - t_back
    hf.note("(1)-(3) in the Maildir %.1fs after the primary's return"
            % took)
    hf.check(took <= budget, "(1)-(3) in the Maildir %.1fs after the "
             "primary's return, want at most %ds" % (took, budget))
    hf.wait_until(lambda: not d.queue_ids(), 10, "holdfast's queue to empty")
    st, q = show(d, "3. primary back, drained")
    hf.check("primary: up" in st and "waiting_messages: 0" in st and
             "-- 0 messages" in q, "status/queue after the drain:\n%s\n%s"
             % (st, q))

    # bodies and headers as sent
    for tok, content in sent.items():
        raw = got[tok]
        want_head, _, want_body = content.partition(b"\r\n\r\n")
        _, body = primary.split_message(raw)
        hf.check(body == want_body.replace(b"\r\n", b"\n"),
                 "(%s) body differs: %d octets delivered, %d sent"
                 % (tok, len(body), len(want_body)))
        for line in want_head.split(b"\r\n"):
            hf.check(line.replace(b"\r\n", b"\n") in raw,
                     "(%s) header line %r missing" % (tok, line))
        rcvd = primary.header_values(raw, "Received")
        hf.check(any("[%s]" % ORIGINAL in r and "(holdfast)" in r
                     for r in rcvd),
                 "(%s) no holdfast Received from [%s]: %r"
                 % (tok, ORIGINAL, rcvd))
        # XFORWARD changes Postfix's log (orig_client=), not its Received
        # header: that names the backup (contrib/primary/README.md)
        hf.check(any("[%s])" % BACKUP in r and "(Postfix)" in r
                     for r in rcvd),
                 "(%s) no Postfix Received from [%s]: %r"
                 % (tok, BACKUP, rcvd))

    rlog = pr.rspamd_log()
    hf.check("terminated abnormally" not in rlog,
             "an rspamd worker crashed: %r" % [
                 l for l in rlog.splitlines() if "crash" in l][:3])
    # rspamd scored the original client, not the backup
    for tok in ("normal", "big"):
        res = " ".join(primary.header_values(got[tok], "X-Spamd-Result"))
        hf.check("HF_TEST_SCORED_AS_ORIGINAL" in res and
                 "HF_TEST_SCORED_AS_BACKUP" not in res,
                 "(%s) rspamd did not score the original client: "
                 "X-Spamd-Result %r" % (tok, res))
    for tok in ("normal", "big"):
        hf.check(any("<%s@sender.example>" % tok in l and
                     "ip: %s," % ORIGINAL in l
                     for l in rlog.splitlines()),
                 "(%s) rspamd's log does not show ip: %s" % (tok, ORIGINAL))

    # (2) tagged and delivered, never rejected
    g = got["gtube"]
    hf.check(primary.header_values(g, "X-Spam") == ["Yes"],
             "(2) GTUBE delivered without X-Spam: Yes: %r"
             % primary.split_message(g)[0])
    hf.check("forced: add header" in rlog and
             "reject" not in " ".join(l for l in rlog.splitlines()
                                      if "qid:" in l and "(default:" in l),
             "(2) rspamd's verdicts: %r" % [l for l in rlog.splitlines()
                                            if "(default:" in l])
    pflog = pr.log_text()
    hf.check(" milter-reject: " not in pflog and
             "status=bounced" not in pflog,
             "the primary rejected something:\n%s" % pflog[-3000:])

    # nothing dead, nothing left
    hf.check(not d.dead_ids(), "dead/: %r" % d.dead_ids())
    hf.check(not d.grep(r"\bmsg=\S+ dead\b"), "holdfast logged a dead "
             "message")

    # postscreen saw the drain's real address through PROXY v2, let it
    # straight through; smtpd believed its XFORWARD
    ps = pr.postscreen_lines()
    connects = [l for l in ps if " CONNECT from [" in l]
    hf.check(connects and all("CONNECT from [%s]:" % BACKUP in l
                              for l in connects),
             "postscreen CONNECT lines: %r" % connects)
    hf.check(any("ALLOWLISTED [%s]:" % BACKUP in l for l in ps),
             "postscreen did not allowlist %s: %r" % (BACKUP, ps))
    hf.check(not any(w in l for l in ps for w in ("PREGREET", "DNSBL",
                                                   "NOQUEUE")),
             "postscreen tested or refused the backup: %r" % ps)
    xf = re.findall(r"client=\S*\[%s\], orig_client=(\S*)\[%s\]"
                    % (re.escape(BACKUP), re.escape(ORIGINAL)), pflog)
    hf.check(len(xf) >= 3, "smtpd did not log orig_client=...[%s] (from "
             "XFORWARD) for the three messages: %r" % (ORIGINAL, xf))
    hf.note("Postfix: client=...[%s], orig_client=%s[%s]"
            % (BACKUP, xf[0], ORIGINAL))
    # and nobody but the backup gets through the router's drain port
    try:
        with socket.create_connection((pr.addr, pr.port), 10,
                                      ("127.0.0.4", 0)) as s:
            first = s.recv(512)
    except OSError as e:          # HAProxy resets it: the expected outcome
        first = repr(e).encode()
    hf.check(not first.startswith(b"220"), "HAProxy let 127.0.0.4 through "
             "to the mail server: %r" % first)
    hf.note("drill passed in %.1fs" % (time.monotonic() - t0))


hf.run(main)
