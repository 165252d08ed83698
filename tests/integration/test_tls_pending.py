#!/usr/bin/python3
"""TLS before the certificate exists (a new VM before certbot's first run):
with [tls] cert/key configured but missing, holdfast -n warns naming the
file and exits 0, holdfast starts, logs a warning naming the file, serves
SMTP without offering STARTTLS (a message is accepted) and exports
holdfast_tls_ready 0; a key that exists but that the unprivileged user
cannot read is the same; once a readable pair is in place, SIGHUP turns
STARTTLS on (holdfast_tls_ready 1, holdfast_tls_cert_expiry_timestamp_seconds
= the certificate's notAfter, a verified STARTTLS session); a mismatched
pair (cert of one, key of another) makes holdfast -n fail, and at SIGHUP
keeps the loaded pair (metrics unchanged, the old certificate served)."""
import os
import re
import shutil
import signal
import ssl
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

NAME = "mx2.example.test"


def not_after(cert):
    """The certificate's notAfter as unix time (openssl's own reading)."""
    out = hf.openssl(["x509", "-noout", "-enddate", "-in", cert]).decode()
    # notAfter=Dec 30 14:00:00 2026 GMT
    return ssl.cert_time_to_seconds(out.strip().split("=", 1)[1])


def put(src, dst):
    """Copy src to dst the way certbot does (a new file renamed over),
    keeping src's owner and mode."""
    tmp = dst + ".new"
    shutil.copy2(src, tmp)
    if os.geteuid() == 0:
        st = os.stat(src)
        os.chown(tmp, st.st_uid, st.st_gid)
    os.rename(tmp, dst)


def ehlo_offers_starttls(d):
    c = d.connect()
    try:
        r = c.ehlo()
        return "STARTTLS" in r.text
    finally:
        c.close()


def tls_metrics(d):
    m = d.scrape()
    return (m.get("holdfast_tls_ready"),
            m.get("holdfast_tls_cert_expiry_timestamp_seconds"))


def main(env):
    ca = hf.TestCA(env)
    c1, k1 = ca.issue("one")
    c2, k2 = ca.issue("two")
    live = env.path("live")
    os.makedirs(live)
    os.chmod(live, 0o755)
    cert = os.path.join(live, "fullchain.pem")
    key = os.path.join(live, "privkey.pem")

    sink = env.sink().start()
    d = env.daemon(primary_port=sink.port, tls={"cert": cert, "key": key},
                   metrics={"listen": "auto"})

    # ---- holdfast -n: missing is a warning, exit 0
    rc, err = d.check_config()
    hf.check(rc == 0, "holdfast -n with a missing cert: rc=%d %s"
             % (rc, err))
    hf.check("warning" in err and cert in err, "holdfast -n does not warn "
             "about the missing %s: %r" % (cert, err))
    hf.note("holdfast -n, cert missing: %s" % err.strip())

    # ---- start without the pair
    d.start()
    hf.check(d.grep(r"tls certificate not available.*cert=%s"
                    % re.escape(cert)),
             "no startup warning naming %s" % cert)
    hf.check(not ehlo_offers_starttls(d), "STARTTLS offered without a "
             "certificate")
    ready, expiry = tls_metrics(d)
    hf.check(ready == 0 and expiry == 0, "without a pair: tls_ready=%r "
             "expiry=%r, want 0 0" % (ready, expiry))
    c = d.connect()
    c.ehlo()
    c.cmd("MAIL FROM:<sender@client.test>", expect=250)
    c.cmd("RCPT TO:<rcpt@example.test>", expect=250)
    r = c.data(hf.dot_stuff(hf.make_message("plain")))
    hf.check(r.queued_id(), "plain message not queued: %r" % r)
    c.quit()
    c.close()

    # ---- SIGHUP with still nothing there: a warning, STARTTLS stays off
    mark = d.mark()
    d.signal(signal.SIGHUP)
    d.wait_log(r"tls reload failed; STARTTLS stays off.*No such file",
               since=mark, timeout=10)

    # ---- a key the unprivileged user cannot read (root only)
    if os.geteuid() == 0:
        put(c1, cert)
        shutil.copy2(k1, key)
        os.chown(key, 0, 0)
        os.chmod(key, 0o600)
        rc, err = d.check_config()     # as root: readable, loads
        hf.check(rc == 0, "holdfast -n as root: rc=%d %s" % (rc, err))
        mark = d.mark()
        d.signal(signal.SIGHUP)
        lines = d.wait_log(r"tls reload failed", since=mark, timeout=10)
        hf.check("key=%s" % key in lines[-1] and "Permission denied" in
                 lines[-1], "unreadable key: %r" % lines[-1])
        hf.check(not ehlo_offers_starttls(d), "STARTTLS with an unreadable "
                 "key")
        hf.check(tls_metrics(d)[0] == 0, "tls_ready != 0 with an "
                 "unreadable key")
        os.unlink(key)
        hf.note("unreadable key: %s" % lines[-1][-160:])

    # ---- the pair appears (as certbot + its deploy hook leave it): SIGHUP
    put(c1, cert)
    put(k1, key)
    rc, err = d.check_config()
    hf.check(rc == 0 and "warning" not in err, "holdfast -n with the "
             "pair: rc=%d %r" % (rc, err))
    mark = d.mark()
    d.signal(signal.SIGHUP)
    d.wait_log(r"tls reloaded", since=mark, timeout=10)
    hf.check(ehlo_offers_starttls(d), "no STARTTLS after the pair appeared "
             "and SIGHUP")
    ready, expiry = tls_metrics(d)
    want = not_after(c1)
    hf.check(ready == 1, "tls_ready=%r after the reload" % ready)
    hf.check(expiry == want, "cert expiry metric %r, the cert's notAfter is "
             "%d" % (expiry, want))
    c = d.connect()
    c.ehlo()
    c.starttls(hf.tls_client_context(ca.cert), NAME)
    fp = c.peer_fingerprint()
    hf.check(fp == hf.pem_fingerprint(c1), "served %s, not the new pair"
             % fp)
    c.ehlo()
    c.cmd("MAIL FROM:<sender@client.test>", expect=250)
    c.cmd("RCPT TO:<rcpt@example.test>", expect=250)
    r = c.data(hf.dot_stuff(hf.make_message("overtls")))
    hf.check(r.queued_id(), "TLS message not queued: %r" % r)
    c.quit()
    c.close()
    hf.note("after SIGHUP: tls_ready=1 expiry=%d (notAfter)" % expiry)

    # ---- a mismatched pair: -n fails, SIGHUP keeps the loaded one
    put(c2, cert)           # cert two, key one
    rc, err = d.check_config()
    hf.check(rc == 1, "holdfast -n with a mismatched pair: rc=%d %r"
             % (rc, err))
    hf.check(cert in err, "holdfast -n does not name the pair: %r" % err)
    hf.note("holdfast -n, mismatched: %s" % err.strip()[:200])
    mark = d.mark()
    d.signal(signal.SIGHUP)
    d.wait_log(r"tls reload failed; keeping the old certificate",
               since=mark, timeout=10)
    hf.check(tls_metrics(d) == (1, want), "metrics changed by a failed "
             "reload: %r" % (tls_metrics(d),))
    c = d.connect()
    c.ehlo()
    c.starttls(hf.tls_client_context(ca.cert), NAME)
    hf.check(c.peer_fingerprint() == hf.pem_fingerprint(c1),
             "the mismatched reload replaced the certificate")
    c.close()

    hf.wait_until(lambda: {"plain", "overtls"} <= set(
        hf.token_of(m.content) for m in sink.messages()), 60,
        "delivery of both messages", interval=0.3)
    hf.check(d.alive(), "daemon died")


hf.run(main)
