#!/usr/bin/python3
"""Inbound STARTTLS with a test CA made here (openssl): swaks --tls and
openssl s_client -starttls smtp deliver, over TLS 1.2 and 1.3 (verifying the
chain and the name mx2.example.test); TLS 1.1 is refused by the server; the
Received header says ESMTPS (protocol cipher); the STARTTLS-injection case
(CVE-2011-0411: "STARTTLS\\r\\nRSET\\r\\n" in one packet, the RSET gets no
reply inside TLS, log "discarded 6 octets"); EHLO after TLS offers no
STARTTLS and a second STARTTLS is 503; certificate reload: a new pair and
SIGHUP, new connections see the new certificate while a session opened before
completes its message and concurrent senders all succeed; a garbage pair and
SIGHUP keep the current certificate with "tls reload failed"."""
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

NAME = "mx2.example.test"
SWAKS = "/usr/bin/swaks"
RECEIVED_TLS = re.compile(rb"\AReceived: from [^\r\n]*\r\n\tby mx2\.example"
                          rb"\.test \(holdfast\) with ESMTPS \((TLSv1\.[23]) "
                          rb"([A-Z0-9_-]+)\) id ([0-9a-f]{16})")


def install(src_cert, src_key, cert, key):
    """Put a pair in place the way certbot does: new files renamed over."""
    for src, dst in ((src_cert, cert), (src_key, key)):
        tmp = dst + ".new"
        shutil.copy2(src, tmp)
        if os.geteuid() == 0:
            st = os.stat(src)
            os.chown(tmp, st.st_uid, st.st_gid)
        os.rename(tmp, dst)


def tls_session(d, ca, version=None, source=None):
    """Connected, EHLO'd, STARTTLS'd and EHLO'd again (verified)."""
    c = d.connect(source=source)
    r = c.ehlo()
    hf.check(b"250-STARTTLS" in r.text.encode() or b"250 STARTTLS" in
             r.text.encode(), "EHLO in the clear lacks STARTTLS: %r" % r)
    c.starttls(hf.tls_client_context(ca.cert, version), NAME)
    return c


def send_tls(d, ca, token, version=None, rcpt="rcpt@example.test"):
    """One message over verified TLS; returns (qid, fingerprint, proto)."""
    c = tls_session(d, ca, version)
    try:
        fp = c.peer_fingerprint()
        proto = c.sock.version()
        c.ehlo()
        c.cmd("MAIL FROM:<sender@client.test>", expect=250)
        c.cmd("RCPT TO:<%s>" % rcpt, expect=250)
        r = c.data(hf.dot_stuff(hf.make_message(token)))
        qid = r.queued_id()
        hf.check(qid, "%s: no queue id in %r" % (token, r))
        c.quit()
        return qid, fp, proto
    finally:
        c.close()


def s_client(port, ca, extra, lines=(), timeout=30):
    """openssl s_client -starttls smtp; lines (bytes, LF ends) are written
    one group at a time, each after the reply that ends the previous one
    ("354" after DATA, "queued as" after the dot); then QUIT.  Returns
    (rc, stdout, stderr)."""
    import select
    argv = [hf.OPENSSL, "s_client", "-starttls", "smtp", "-connect",
            "127.0.0.1:%d" % port, "-name", "client.test", "-brief",
            "-ign_eof", "-nocommands", "-crlf"] + list(extra)
    if ca:
        argv += ["-CAfile", ca.cert, "-verify_hostname", NAME,
                 "-verify_return_error"]
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    out = b""
    deadline = time.monotonic() + timeout

    def wait_for(pat):
        nonlocal out
        while not re.search(pat, out):
            left = deadline - time.monotonic()
            if left <= 0 or p.poll() is not None:
                return False
            r, _, _ = select.select([p.stdout], [], [], min(left, 0.5))
            if r:
                chunk = os.read(p.stdout.fileno(), 65536)
                if not chunk:
                    return False
                out += chunk
        return True
    try:
        ok = True
        for data, pat in lines:
            if not ok:
                break
            p.stdin.write(data)
            p.stdin.flush()
            ok = wait_for(pat)
        if ok:
            p.stdin.write(b"QUIT\n")
            p.stdin.flush()
        try:
            rest, err = p.communicate(timeout=max(1, deadline -
                                                  time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            rest, err = p.communicate()
        out += rest
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return (p.returncode, out.decode("utf-8", "replace"),
            err.decode("utf-8", "replace"))


def main(env):
    ca = hf.TestCA(env)
    c1, k1 = ca.issue("one")
    c2, k2 = ca.issue("two")
    live = env.path("live")
    os.makedirs(live)
    cert, key = os.path.join(live, "fullchain.pem"), os.path.join(
        live, "privkey.pem")
    install(c1, k1, cert, key)
    fp1, fp2 = hf.pem_fingerprint(c1), hf.pem_fingerprint(c2)

    sink = env.sink().start()
    d = env.daemon(primary_port=sink.port,
                   tls={"cert": cert, "key": key}).start()
    sent = {}          # token -> (qid, proto expected or None)
    soft = []          # defects that do not stop the rest of the scenario

    # ---- swaks --tls
    if os.access(SWAKS, os.X_OK):
        tok = "swakstls"
        msgfile = env.path("swaks.eml")
        with open(msgfile, "wb") as f:
            f.write(hf.make_message(tok))
        p = subprocess.run([SWAKS, "--server", "127.0.0.1:%d" % d.port,
                            "--tls", "--helo", "client.test", "--from",
                            "sender@client.test", "--to",
                            "rcpt@example.test", "--data", msgfile],
                           capture_output=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        out = p.stdout.decode("utf-8", "replace")
        if (p.returncode != 0 and re.search(r"~> QUIT\s*$", out) and
                re.search(r"<~ +250 2\.0\.0 Ok: queued as", out)):
            # only the 221 went missing: a defect checked below
            soft.append("swaks --tls exits %d: no 221 to QUIT inside TLS"
                        % p.returncode)
        else:
            hf.check(p.returncode == 0, "swaks --tls rc=%d: %s"
                     % (p.returncode, out[-1500:]))
        hf.check("TLS started" in out, "swaks did not start TLS: %s"
                 % out[-1500:])
        m = re.search(r"<~ +250 2\.0\.0 Ok: queued as ([0-9a-f]{16})", out)
        hf.check(m, "swaks: no queued reply inside TLS: %s" % out[-1500:])
        sent[tok] = (m.group(1), None)
        hf.note("swaks --tls: queued %s" % m.group(1))
    else:
        hf.fail("no swaks (scripts/setup-deps installs it)")

    # ---- openssl s_client, TLS 1.2 and 1.3, verifying chain and name
    for ver, want in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        tok = "sclient" + want[-1]
        body = hf.dot_stuff(hf.make_message(tok)).replace(b"\r\n", b"\n")
        rc, out, err = s_client(d.port, ca, [ver], [
            (b"EHLO client.test\n", rb"\n250 [^\n]*\n"),
            (b"MAIL FROM:<sender@client.test>\n", rb"250 2\.1\.0 Ok"),
            (b"RCPT TO:<rcpt@example.test>\nDATA\n", rb"\n354 "),
            (body, rb"queued as [0-9a-f]{16}")])
        if rc != 0 and "queued as" in out and "221" not in out:
            soft.append("s_client %s exits %d: no 221 to QUIT inside TLS "
                        "(%s)" % (ver, rc, err.strip().splitlines()[-1]))
        else:
            hf.check(rc == 0, "s_client %s rc=%d: %s %s"
                     % (ver, rc, out[-800:], err[-800:]))
        hf.check("Protocol version: %s" % want in err, "s_client %s: %s"
                 % (ver, err[-800:]))
        hf.check("Verification: OK" in err, "s_client %s did not verify: %s"
                 % (ver, err[-800:]))
        m = re.search(r"250 2\.0\.0 Ok: queued as ([0-9a-f]{16})", out)
        hf.check(m, "s_client %s: not queued: %s" % (ver, out[-800:]))
        hf.check("STARTTLS" not in out, "EHLO inside TLS offers STARTTLS "
                 "again: %s" % out[-800:])
        sent[tok] = (m.group(1), want)
        hf.note("s_client %s: queued %s" % (ver, m.group(1)))

    # ---- TLS 1.1 refused (by the server: the client is allowed it)
    mark = d.mark()
    rc, out, err = s_client(d.port, None, ["-tls1_1", "-cipher",
                                           "DEFAULT:@SECLEVEL=0"])
    hf.check(rc != 0, "TLS 1.1 handshake succeeded: %s %s" % (out, err))
    hf.check("no protocols available" not in err,
             "the client refused TLS 1.1 by itself, the test proves "
             "nothing: %s" % err[-500:])
    lines = d.wait_log(r"tls handshake failed", since=mark, timeout=10)
    hf.check("unsupported protocol" in lines[-1], "TLS 1.1 refused for "
             "another reason: %s" % lines[-1])
    if "alert protocol version" not in err:
        soft.append("TLS 1.1 client got no protocol_version alert, just "
                    "EOF (%s)" % err.strip().splitlines()[-1][-100:])
    hf.note("TLS 1.1 refused: %s" % d.grep("tls handshake failed",
                                            mark)[-1][-160:])

    # ---- python ssl, both versions, verifying
    for ver in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        tok = "py" + ver.name
        qid, fp, proto = send_tls(d, ca, tok, ver)
        hf.check(fp == fp1, "certificate %s, expected %s" % (fp, fp1))
        sent[tok] = (qid, proto)

    # ---- STARTTLS injection (CVE-2011-0411)
    mark = d.mark()
    c = d.connect()
    c.ehlo()
    c.send(b"STARTTLS\r\nRSET\r\n")      # one write: one packet on loopback
    r = c.reply()
    hf.check(r.code == 220, "STARTTLS -> %r" % r)
    time.sleep(hf.scaled(0.3))          # an RSET reply would come now
    c.sock.settimeout(hf.scaled(0.5))
    try:
        extra = c.sock.recv(4096)
    except socket_timeout():
        extra = b""
    c.sock.settimeout(30)
    hf.check(extra == b"" and c.buf == b"", "plaintext after 220 to "
             "STARTTLS: %r" % (c.buf + extra))
    c.sock = hf.tls_client_context(ca.cert).wrap_socket(
        c.sock, server_hostname=NAME)
    # inside TLS: the first reply must be EHLO's, not RSET's "250 ... reset"
    c.send(b"NOOP\r\n")
    r = c.reply()
    hf.check(r.code == 250 and b"reset" not in r.text.encode(),
             "first reply inside TLS is %r: the injected RSET was answered"
             % r)
    r = c.cmd("MAIL FROM:<a@client.test>")
    hf.check(r.code == 503, "MAIL before EHLO inside TLS -> %r (the "
             "plaintext EHLO must be forgotten)" % r)
    r = c.ehlo()
    hf.check("STARTTLS" not in r.text, "EHLO inside TLS offers STARTTLS: "
             "%r" % r)
    r = c.cmd("STARTTLS")
    hf.check(r.code == 503, "second STARTTLS -> %r" % r)
    c.cmd("NOOP", expect=250)
    # the last reply before the close must make it through TLS too
    c.send(b"QUIT\r\n")
    r = c.reply(allow_eof=True)
    if r is None or r.code != 221:
        soft.append("QUIT inside TLS: got %r instead of 221 (the reply "
                    "is lost when the session closes)" % r)
    c.close()
    d.wait_log(r"discarded 6 octets pipelined after STARTTLS", since=mark,
               timeout=5)

    # ---- reload under load
    mark = d.mark()
    early = tls_session(d, ca)          # opened before the reload
    hf.check(early.peer_fingerprint() == fp1, "early session cert")
    early.ehlo()
    early.cmd("MAIL FROM:<early@client.test>", expect=250)
    early.cmd("RCPT TO:<rcpt@example.test>", expect=250)
    early.cmd("DATA", expect=354)
    early_msg = hf.make_message("early")
    payload = hf.dot_stuff(early_msg)
    early.send(payload[:len(payload) // 2])

    stop = threading.Event()
    results = []              # (token, qid or None, fp, error)
    lock = threading.Lock()

    def sender(n):
        i = 0
        while not stop.is_set() and i < 40:
            tok = "load%d_%d" % (n, i)
            try:
                qid, fp, proto = send_tls(d, ca, tok)
                res = (tok, qid, fp, None, proto)
            except (hf.Fail, OSError, ssl.SSLError) as e:
                res = (tok, None, None, str(e), None)
            with lock:
                results.append(res)
            i += 1
    threads = [threading.Thread(target=sender, args=(n,), daemon=True)
               for n in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    install(c2, k2, cert, key)
    d.signal(signal.SIGHUP)
    d.wait_log(r"tls reloaded", since=mark, timeout=10)
    reload_at = len(results)
    time.sleep(1.0)
    qid, fp, _ = send_tls(d, ca, "afterreload")
    sent["afterreload"] = (qid, None)
    hf.check(fp == fp2, "after reload the certificate is %s, expected the "
             "new %s (old %s)" % (fp, fp2, fp1))
    early.send(payload[len(payload) // 2:])
    r = early.reply()
    hf.check(r.code == 250 and r.queued_id(), "session opened before the "
             "reload: end of DATA -> %r" % r)
    sent["early"] = (r.queued_id(), None)
    early.quit()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(60)
    hf.check(not any(t.is_alive() for t in threads), "senders hang")
    bad = [r for r in results if r[3] is not None]
    hf.check(not bad, "%d of %d senders' messages failed across the reload:"
             " %s" % (len(bad), len(results), bad[:3]))
    fps = set(r[2] for r in results)
    hf.check(fps <= {fp1, fp2}, "unknown certificates served: %s" % fps)
    hf.check(fp2 in set(r[2] for r in results[reload_at:]),
             "no sender saw the new certificate after the reload")
    hf.note("reload under load: %d messages (%d before the reload), "
            "certs seen %d" % (len(results), reload_at, len(fps)))
    for r in results:
        sent[r[0]] = (r[1], r[4])

    # ---- a broken pair keeps the current one
    mark = d.mark()
    for p in (cert, key):
        with open(p + ".new", "w") as f:
            f.write("this is not PEM\n")
        if os.geteuid() == 0:
            shutil.chown(p + ".new", "nobody")
        os.rename(p + ".new", p)
    d.signal(signal.SIGHUP)
    d.wait_log(r"tls reload failed", since=mark, timeout=10)
    hf.check(not d.grep(r"tls reloaded", since=mark), "garbage reloaded?")
    qid, fp, _ = send_tls(d, ca, "afterbroken")
    hf.check(fp == fp2, "after a broken reload the certificate is %s, "
             "expected the kept %s" % (fp, fp2))
    sent["afterbroken"] = (qid, None)
    hf.check(d.alive(), "daemon died")

    # ---- everything delivered once, with ESMTPS (protocol cipher)
    want = {t: v for t, v in sent.items()}
    hf.wait_until(lambda: set(want) <= set(
        hf.token_of(m.content) for m in sink.messages()), 60,
        "delivery of %d messages" % len(want), interval=0.3)
    seen = {}
    for m in sink.messages():
        tok = hf.token_of(m.content)
        hf.check(tok in want, "unexpected message %r" % m)
        hf.check(tok not in seen, "message %s delivered twice" % tok)
        seen[tok] = True
        mm = RECEIVED_TLS.match(m.content)
        hf.check(mm, "message %s: Received lacks ESMTPS (protocol cipher): "
                 "%r" % (tok, m.content[:300]))
        qid, proto = want[tok]
        hf.check(mm.group(3).decode() == qid, "message %s: Received id %s "
                 "!= %s" % (tok, mm.group(3), qid))
        if proto:
            hf.check(mm.group(1).decode() == proto, "message %s: Received "
                     "says %s, the session was %s" % (tok, mm.group(1),
                                                      proto))
        if mm.group(1) == b"TLSv1.3":
            hf.check(mm.group(2).startswith(b"TLS_"), "1.3 cipher %r"
                     % mm.group(2))
        # the rest is what was sent, untouched
        m2 = hf.RECEIVED_RE.match(m.content)
        hf.check(m2 is not None and m2.group("tls") is not None,
                 "harness Received pattern does not take %r"
                 % m.content[:200])
        got, orig = m.content[m2.end():], hf.make_message(tok)
        if tok.startswith("swaks"):     # swaks adds a line end
            got, orig = got.rstrip(b"\r\n"), orig.rstrip(b"\r\n")
        hf.check(got == orig, "message %s content differs: %r" % (tok, got))
    hf.note("%d messages delivered, all with ESMTPS" % len(seen))
    hf.check(not soft, "; ".join(soft))


def socket_timeout():
    import socket
    return socket.timeout


hf.run(main)
