#!/usr/bin/python3
"""contrib/prometheus/blackbox-smtp.yml, run by Debian's real
prometheus-blackbox-exporter on loopback against holdfast:

- holdfast with TLS (a test CA's certificate for mx2.example.test; the
  module's tls_config gets that CA and name, nothing else changes):
  smtp_banner and smtp_starttls both give probe_success 1, and
  probe_ssl_earliest_cert_expiry is the certificate's notAfter;
- holdfast stopped (port 25 closed): both give probe_success 0;
- holdfast without [tls] (STARTTLS not offered): smtp_banner 1,
  smtp_starttls 0 (what the StartTLSMissing alert keys on)."""
import os
import re
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

EXPORTER = "/usr/bin/prometheus-blackbox-exporter"
MODULES = os.path.join(hf.REPO, "contrib", "prometheus", "blackbox-smtp.yml")
STARTTLS_HEAD = ("  smtp_starttls:\n    prober: tcp\n    timeout: 20s\n"
                 "    tcp:\n")


class Exporter:
    def __init__(self, env, config):
        self.env = env
        self.config = config
        self.port = hf.free_port()
        self.log = env.artifact(env.path("blackbox.log"))
        self.proc = None

    def start(self):
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(
                [EXPORTER, "--config.file=" + self.config,
                 "--web.listen-address=127.0.0.1:%d" % self.port],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        hf.wait_port(self.port, timeout=15, proc=self.proc,
                     what="blackbox_exporter")
        return self

    def probe(self, module, target, timeout=6):
        """{metric: value} of one /probe (the scrape timeout header bounds
        the probe, as Prometheus does)."""
        url = ("http://127.0.0.1:%d/probe?module=%s&target=%s"
               % (self.port, module, target))
        req = urllib.request.Request(url, headers={
            "X-Prometheus-Scrape-Timeout-Seconds": str(timeout)})
        with urllib.request.urlopen(req, timeout=timeout + 10) as r:
            body = r.read().decode()
        out = {}
        for line in body.splitlines():
            m = re.match(r"^([a-z_]+)(\{[^}]*\})? (\S+)$", line)
            if m and m.group(1) not in out:
                out[m.group(1)] = float(m.group(3))
        hf.check("probe_success" in out, "no probe_success in %r"
                 % body[:300])
        return out

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            hf.stop_pid(self.proc.pid, timeout=5)


def cert_not_after(path):
    out = hf.openssl(["x509", "-in", path, "-noout", "-enddate"]).decode()
    import email.utils
    # notAfter=Dec 30 14:00:00 2026 GMT
    return email.utils.parsedate_to_datetime(
        out.strip().split("=", 1)[1].replace(" GMT", " +0000")).timestamp()


def main(env):
    if not os.access(EXPORTER, os.X_OK):
        hf.fail("no %s (scripts/setup-deps installs "
                "prometheus-blackbox-exporter)" % EXPORTER)
    ca = hf.TestCA(env)
    cert, key = ca.issue("mx2")
    text = open(MODULES).read()
    hf.check(STARTTLS_HEAD in text, "smtp_starttls module layout changed")
    text = text.replace(STARTTLS_HEAD, STARTTLS_HEAD +
                        "      tls_config:\n        ca_file: %s\n"
                        "        server_name: mx2.example.test\n" % ca.cert)
    config = env.path("blackbox.yml")
    with open(config, "w") as f:
        f.write(text)
    p = subprocess.run([EXPORTER, "--config.check", "--config.file=" + config],
                       capture_output=True, timeout=30)
    hf.check(p.returncode == 0, "config check: %r" % p.stderr[-500:])
    bb = env.own(Exporter(env, config)).start()

    sink = env.sink().start()
    d = env.daemon(primary_port=sink.port,
                   tls={"cert": cert, "key": key}).start()
    target = "127.0.0.1:%d" % d.port
    b = bb.probe("smtp_banner", target)
    t = bb.probe("smtp_starttls", target)
    hf.check(b["probe_success"] == 1, "smtp_banner against holdfast: %s" % b)
    hf.check(t["probe_success"] == 1, "smtp_starttls against holdfast: %s"
             % t)
    exp = t.get("probe_ssl_earliest_cert_expiry")
    want = cert_not_after(cert)
    hf.check(exp is not None and abs(exp - want) < 2,
             "probe_ssl_earliest_cert_expiry %s, cert notAfter %s"
             % (exp, want))
    hf.check(d.grep(r"smtp connected"), "holdfast saw no connection")
    hf.note("TLS holdfast: banner 1, starttls 1, cert expiry %s" % exp)

    d.stop()
    t0 = time.monotonic()
    b = bb.probe("smtp_banner", target)
    t = bb.probe("smtp_starttls", target)
    hf.check(b["probe_success"] == 0, "smtp_banner, holdfast stopped: %s"
             % b)
    hf.check(t["probe_success"] == 0, "smtp_starttls, holdfast stopped: %s"
             % t)
    hf.note("holdfast stopped: banner 0, starttls 0 (%.1fs)"
            % (time.monotonic() - t0))

    plain = env.daemon(name="plain", primary_port=sink.port).start()
    target = "127.0.0.1:%d" % plain.port
    b = bb.probe("smtp_banner", target)
    t0 = time.monotonic()
    t = bb.probe("smtp_starttls", target, timeout=4)
    hf.check(b["probe_success"] == 1, "smtp_banner without TLS: %s" % b)
    hf.check(t["probe_success"] == 0, "smtp_starttls without TLS: %s" % t)
    hf.note("holdfast without TLS: banner 1, starttls 0 (%.1fs)"
            % (time.monotonic() - t0))


hf.run(main)
