#!/usr/bin/python3
"""[notify] exec: outage notices that do not depend on the home Prometheus.

Part A (daemon "watched", a recording program that appends its
environment to a file, primary_down_after 2s, probe_interval 1s):
- the primary is down while 3 messages arrive: a primary-down notice comes
  >= 2s after the primary went down, not before, with QUEUED=3;
- the primary comes back: one primary-drained notice with MESSAGES=3 once
  queue/ is empty;
- the primary refuses a message (smtp-sink -f .): a dead-letter notice
  naming its queue ID, REASON=refused;
- the program gets argv and HOLDFAST_* only (no inherited environment);
  holdfast_notify_total{result="ok"} counts the runs.
Part B (daemon "slow", a program that hangs with a child of its own,
timeout 1s, repeat_interval 0): hold-mode on and off at once: the two runs
are killed 1s apart (one at a time), children included, while SMTP is
served meanwhile; 40 events at once: 16 wait and the rest are dropped
(counted, logged); stopping the daemon kills the running program.
Part C: contrib/notify/holdfast-ntfy as [notify] exec against a local
HTTP server (ntfy's publish API: POST /topic, Title/Priority/Tags
headers, the summary as body) on hold-mode on; contrib/notify/
holdfast-webhook run with an event's environment posts valid JSON.
Part D: min_free above the disk's size: one spool-low notice (not one
per check) with FREE_BYTES and MIN_FREE; a STARTTLS certificate valid for
5 days: one cert-expiry notice with NOT_AFTER (the certificate's) and
SECONDS_LEFT (part A's 30-day certificate gives none)."""
import http.server
import json
import os
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

DOWN_AFTER = 2
RECORDER = """#!/bin/sh
{ env | sort; echo "ARGV=$*"; echo ---; } >> %s
"""


def notices(path):
    """[{var: value}] of the recorded runs, oldest first."""
    try:
        text = open(path).read()
    except FileNotFoundError:
        return []
    out = []
    # the last piece is empty, or a notice still being written
    for block in text.split("---\n")[:-1]:
        if not block.strip():
            continue
        d = {}
        for line in block.splitlines():
            k, _, v = line.partition("=")
            d[k] = v
        out.append(d)
    return out


def wait_notice(path, event, timeout, count=1):
    def got():
        ns = [n for n in notices(path) if n.get("HOLDFAST_EVENT") == event]
        return ns if len(ns) >= count else None
    return hf.wait_until(got, timeout, "notice %s x%d" % (event, count))


class Recorder(http.server.BaseHTTPRequestHandler):
    """Records every POST as (path, headers, body); answers 200."""
    requests = []

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n).decode("utf-8", "replace")
        Recorder.requests.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"id":"x"}')

    def log_message(self, fmt, *args):
        pass


def part_a(env):
    outdir = env.path("notices")
    os.makedirs(outdir)
    os.chmod(outdir, 0o777)
    out = os.path.join(outdir, "record")
    rec = env.path("recorder")
    with open(rec, "w") as f:
        f.write(RECORDER % out)
    os.chmod(rec, 0o755)
    # started while the daemon picks its ports (so none collides with the
    # sink's), then stopped: the primary is down
    sink = env.sink().start()
    ca = hf.TestCA(env)
    cert, key = ca.issue("mx2-30d", days=30)   # far from its end: no notice
    d = env.daemon(name="watched", primary_port=sink.port,
                   metrics={"listen": "auto"},
                   tls={"cert": cert, "key": key},
                   primary={"probe_interval": "1s"},
                   notify={"exec": "%s one two" % rec,
                           "primary_down_after": "%ds" % DOWN_AFTER})
    sink.stop()
    d.start()
    sent = [hf.send_ok(d.port, "down%d" % i) for i in range(3)]
    d.wait_log(r"\bprimary down\b", timeout=10)
    t_down = time.monotonic()
    time.sleep(DOWN_AFTER - 0.8)
    hf.check(not notices(out), "a notice before primary_down_after: %s"
             % notices(out))
    n = wait_notice(out, "primary-down", timeout=DOWN_AFTER + 5)[0]
    took = time.monotonic() - t_down
    hf.check(n.get("HOLDFAST_QUEUED") == "3", "QUEUED=%s, wanted 3"
             % n.get("HOLDFAST_QUEUED"))
    hf.check(int(n.get("HOLDFAST_DOWN_SECONDS", "0")) >= DOWN_AFTER,
             "DOWN_SECONDS=%s" % n.get("HOLDFAST_DOWN_SECONDS"))
    hf.check(n.get("ARGV") == "one two", "argv %r" % n.get("ARGV"))
    hf.check(n.get("HOLDFAST_HOSTNAME") == "mx2.example.test",
             "HOSTNAME=%s" % n.get("HOLDFAST_HOSTNAME"))
    hf.check("down for" in n.get("HOLDFAST_SUMMARY", ""), "summary %r"
             % n.get("HOLDFAST_SUMMARY"))
    extra = sorted(k for k in n if not k.startswith("HOLDFAST_") and
                   k not in ("PATH", "PWD", "SHLVL", "_", "ARGV"))
    hf.check(not extra, "inherited environment: %s" % extra)
    hf.note("primary-down notice %.1fs after 'primary down' "
            "(primary_down_after %ds)" % (took, DOWN_AFTER))

    sink.start()
    hf.verify_deliveries(sink, sent, timeout=15, settle=0)
    n = wait_notice(out, "primary-drained", timeout=10)[0]
    hf.check(n.get("HOLDFAST_MESSAGES") == "3", "drained MESSAGES=%s, "
             "wanted 3" % n.get("HOLDFAST_MESSAGES"))
    hf.check(int(n.get("HOLDFAST_DOWN_SECONDS", "-1")) >= DOWN_AFTER,
             "drained DOWN_SECONDS=%s" % n.get("HOLDFAST_DOWN_SECONDS"))
    hf.check("HOLDFAST_DRAIN_SECONDS" in n, "no DRAIN_SECONDS")
    hf.note("primary-drained: %s" % n.get("HOLDFAST_SUMMARY"))

    sink.restart(options=["-f", "."])
    s = hf.send_ok(d.port, "refused")
    n = wait_notice(out, "dead-letter", timeout=20)[0]
    hf.check(n.get("HOLDFAST_MSG_ID") == s.qid, "dead-letter MSG_ID=%s, "
             "wanted %s" % (n.get("HOLDFAST_MSG_ID"), s.qid))
    hf.check(n.get("HOLDFAST_REASON") == "refused", "REASON=%s"
             % n.get("HOLDFAST_REASON"))
    events = [x.get("HOLDFAST_EVENT") for x in notices(out)]
    hf.check(events == ["primary-down", "primary-drained", "dead-letter"],
             "notices %s" % events)
    d.wait_log(r"notify sent event=dead-letter ", timeout=5)
    m = d.scrape()
    hf.check(m.get("holdfast_notify_total", result="ok") == 3,
             "notify ok %s" % m.get("holdfast_notify_total", result="ok"))
    hf.check(m.get("holdfast_notify_total", result="failed") == 0,
             "notify failed %s" % m.get("holdfast_notify_total",
                                        result="failed"))
    hf.note("dead-letter notice for %s; notices %s" % (s.qid, events))


def log_time(line):
    """Seconds (float) of a log line's ISO timestamp."""
    import datetime
    ts = line.split()[0].rstrip("Z")
    return datetime.datetime.fromisoformat(ts).timestamp()


def proc_alive(pid):
    """pid exists and is not a zombie (killed, waiting for init)."""
    try:
        stat = open("/proc/%d/stat" % pid).read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def part_b(env):
    hang = env.path("hang")
    pidfile = env.path("hang.pids")
    with open(hang, "w") as f:
        # a child of its own, like curl under a notify script
        f.write("#!/bin/sh\nsleep 61 &\necho $! >> %s\nwait\n" % pidfile)
    os.chmod(hang, 0o755)
    open(pidfile, "w").close()
    os.chmod(pidfile, 0o666)
    sink = env.sink(name="sinkB").start()
    d = env.daemon(name="slow", primary_port=sink.port,
                   metrics={"listen": "auto"},
                   notify={"exec": hang, "timeout": "1s",
                           "repeat_interval": "0"}).start()
    r = d.ctl("hold-mode", "on", "--for", "1h")
    hf.check(r.rc == 0, "hold-mode on: %s" % r)
    r = d.ctl("hold-mode", "off")
    hf.check(r.rc == 0, "hold-mode off: %s" % r)
    t0 = time.monotonic()
    hf.send_ok(d.port, "while-notify-runs")
    hf.check(time.monotonic() - t0 < 1.0, "SMTP blocked by the program")
    on = d.wait_log(r"notify failed event=hold-mode-on reason=timeout",
                    timeout=5)[0]
    off = d.wait_log(r"notify failed event=hold-mode-off reason=timeout",
                     timeout=5)[0]
    gap = log_time(off) - log_time(on)
    hf.check(0.8 <= gap <= 3, "second program killed %.2fs after the "
             "first: not one at a time with a 1s timeout" % gap)
    time.sleep(0.3)
    pids = [int(x) for x in open(pidfile).read().split()]
    hf.check(len(pids) == 2, "program children %s" % pids)
    alive = [p for p in pids if proc_alive(p)]
    hf.check(not alive, "the program's children outlived the timeout: %s"
             % alive)
    hf.note("hanging programs killed with their children after the 1s "
            "timeout, one at a time (%.2fs apart)" % gap)

    # 40 events at once: one runs, 16 wait, the rest are dropped
    for _ in range(20):
        d.ctl("hold-mode", "on", "--for", "1h")
        d.ctl("hold-mode", "off")
    m = d.scrape()
    dropped = m.get("holdfast_notify_total", result="dropped")
    hf.check(20 <= dropped <= 23, "dropped %s of 40, wanted 23 (or a few "
             "fewer if one finished meanwhile)" % dropped)
    hf.check(d.grep(r"notify dropped event=hold-mode-o(n|ff) "),
             "no 'notify dropped' line")
    # shutdown kills the running one and drops the waiting ones
    d.stop()
    hf.check(d.grep(r"notify killed event=\S+ reason=shutdown"),
             "no 'notify killed' at shutdown")
    hf.note("40 events: %d dropped; shutdown kills the running program"
            % dropped)


def part_c(env):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    port = srv.server_address[1]
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        ntfy = env.path("holdfast-ntfy")
        shutil.copy(os.path.join(hf.REPO, "contrib", "notify",
                                 "holdfast-ntfy"), ntfy)
        os.chmod(ntfy, 0o755)
        sink = env.sink(name="sinkC").start()
        d = env.daemon(name="ntfy", primary_port=sink.port,
                       notify={"exec": "%s http://127.0.0.1:%d/mx2-test"
                               % (ntfy, port)}).start()
        r = d.ctl("hold-mode", "on", "--for", "2h")
        hf.check(r.rc == 0, "hold-mode on: %s" % r)
        d.wait_log(r"notify sent event=hold-mode-on ", timeout=10)
        hf.check(len(Recorder.requests) == 1, "ntfy requests: %s"
                 % Recorder.requests)
        path, hdrs, body = Recorder.requests[0]
        hf.check(path == "/mx2-test", "ntfy path %r" % path)
        hf.check(hdrs.get("Title") == "mx2.example.test: hold-mode-on",
                 "ntfy Title %r" % hdrs.get("Title"))
        hf.check(hdrs.get("Priority") == "3", "Priority %r"
                 % hdrs.get("Priority"))
        hf.check(body.startswith("mx2.example.test: hold-mode on for 7200"),
                 "ntfy body %r" % body)
        hf.note("ntfy: POST %s Title=%r body=%r" % (path, hdrs.get("Title"),
                                                    body))

        # the webhook script with a dead-letter's environment
        e = {"PATH": "/usr/bin:/bin", "HOLDFAST_EVENT": "dead-letter",
             "HOLDFAST_SUMMARY": 'x "quoted" \\ back',
             "HOLDFAST_MSG_ID": "0123456789abcdef", "HOLDFAST_DEAD": "1"}
        p = hf.subprocess.run(
            [os.path.join(hf.REPO, "contrib", "notify", "holdfast-webhook"),
             "http://127.0.0.1:%d/hook" % port], env=e, timeout=30,
            capture_output=True)
        hf.check(p.returncode == 0, "webhook rc %d: %r" % (p.returncode,
                                                         p.stderr))
        path, hdrs, body = Recorder.requests[-1]
        hf.check(path == "/hook", "webhook path %r" % path)
        try:
            j = json.loads(body)
        except ValueError as ex:
            j = None
            hf.check(False, "webhook body is not JSON (%s): %r" % (ex, body))
        hf.check(j == {"event": "dead-letter", "summary": 'x "quoted" \\ back',
                       "msg_id": "0123456789abcdef", "dead": "1"},
                 "webhook JSON %r" % j)
        # a failing endpoint: non-zero exit
        p = hf.subprocess.run(
            [os.path.join(hf.REPO, "contrib", "notify", "holdfast-ntfy"),
             "http://127.0.0.1:%d/x" % hf.free_port()], env=e, timeout=30,
            capture_output=True)
        hf.check(p.returncode != 0, "ntfy to a closed port exited 0")
        hf.note("webhook JSON ok; ntfy to a closed port exits %d"
                % p.returncode)
    finally:
        srv.shutdown()
        srv.server_close()


def part_d(env):
    """min_free above the disk's size: the spool is low at once."""
    outdir = env.path("notices-d")
    os.makedirs(outdir)
    os.chmod(outdir, 0o777)
    out = os.path.join(outdir, "record")
    rec = env.path("recorder-d")
    with open(rec, "w") as f:
        f.write(RECORDER % out)
    os.chmod(rec, 0o755)
    sink = env.sink(name="sinkD").start()
    ca = hf.TestCA(env, name="ca-d")
    cert, key = ca.issue("mx2-5d", days=5)
    d = env.daemon(name="full", primary_port=sink.port,
                   spool={"min_free": "999999G"},
                   tls={"cert": cert, "key": key},
                   notify={"exec": rec, "repeat_interval": "0"}).start()
    n = wait_notice(out, "spool-low", timeout=15)[0]
    hf.check(n.get("HOLDFAST_MIN_FREE") == str(999999 << 30),
             "MIN_FREE=%s" % n.get("HOLDFAST_MIN_FREE"))
    hf.check(int(n.get("HOLDFAST_FREE_BYTES", "-1")) >= 0, "FREE_BYTES=%s"
             % n.get("HOLDFAST_FREE_BYTES"))
    time.sleep(11)          # the next checks find it still low: no repeat
    ns = [x for x in notices(out) if x.get("HOLDFAST_EVENT") == "spool-low"]
    hf.check(len(ns) == 1, "spool-low sent %d times" % len(ns))
    hf.note("spool-low: %s" % n.get("HOLDFAST_SUMMARY"))
    n = wait_notice(out, "cert-expiry", timeout=5)[0]
    left = int(n.get("HOLDFAST_SECONDS_LEFT", "0"))
    hf.check(5 * 86400 - 120 <= left <= 5 * 86400, "SECONDS_LEFT=%d for a "
             "5-day certificate" % left)
    end = hf.openssl(["x509", "-in", cert, "-noout", "-enddate"]).decode()
    import email.utils
    want = int(email.utils.parsedate_to_datetime(
        end.strip().split("=", 1)[1].replace(" GMT", " +0000")).timestamp())
    hf.check(n.get("HOLDFAST_NOT_AFTER") == str(want), "NOT_AFTER=%s, cert "
             "says %d" % (n.get("HOLDFAST_NOT_AFTER"), want))
    ns = [x for x in notices(out) if x.get("HOLDFAST_EVENT") == "cert-expiry"]
    hf.check(len(ns) == 1, "cert-expiry sent %d times" % len(ns))
    hf.note("cert-expiry: %s" % n.get("HOLDFAST_SUMMARY"))


def main(env):
    part_a(env)
    part_b(env)
    part_c(env)
    part_d(env)


hf.run(main)
