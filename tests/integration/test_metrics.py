#!/usr/bin/python3
"""/metrics and /healthz across an outage drill.

[metrics] listen on 127.0.0.1:PORT, allow 127.0.0.1/32.  Every scrape is
parsed as Prometheus text format 0.0.4 (HELP and TYPE once per family
before its samples, families contiguous, label sets well formed, counters
named *_total, label values never an address, ID or hostname, at most 16
series a family) and the values checked:

  up:       two messages delivered -> accepted 2, delivered 2,
            holdfast_primary_up 1, last delivery timestamp recent;
  outage:   the sink stops, two messages are queued -> primary_up 0,
            queue_messages{queued|deferred} 2 with bytes, oldest age > 0,
            last change timestamp recent;
  back:     the sink returns, both delivered -> primary_up 1, delivered
            counter +2, queue empty, oldest age 0, last delivery recent;
            counters never go down.

Every SMTP reply is counted by class (greeting and EHLO included).
/healthz answers 200; 127.0.0.2 (outside [metrics] allow) is closed at
accept without a byte of reply for every path; an unknown path gets 404,
POST 405, HEAD 200."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402
import socket  # noqa: E402


def refused_reply(addr, path):
    """What a client outside [metrics] allow reads back: b"" when the
    daemon closes at accept (a reset counts as closed too)."""
    s = socket.create_connection(addr, timeout=5,
                                 source_address=("127.0.0.2", 0))
    got = b""
    try:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        while len(got) < 4096:
            b = s.recv(4096)
            if not b:
                break
            got += b
    except OSError:
        pass
    finally:
        s.close()
    return got

# Label values come from small fixed sets: never an address, a queue ID
# or a hostname, and few series per family.
BAD_LABEL_VALUE = re.compile(r"@|^[0-9a-f]{16}$|^\d+\.\d+\.\d+\.\d+$|:.*:|"
                             r"example\.|\.test$")
MAX_SERIES = 16
REQUIRED = {
    "holdfast_build_info": "gauge",
    "holdfast_start_time_seconds": "gauge",
    "holdfast_queue_messages": "gauge",
    "holdfast_queue_bytes": "gauge",
    "holdfast_queue_oldest_message_age_seconds": "gauge",
    "holdfast_hold_mode": "gauge",
    "holdfast_spool_free_bytes": "gauge",
    "holdfast_messages_accepted_total": "counter",
    "holdfast_deliveries_total": "counter",
    "holdfast_smtp_replies_total": "counter",
    "holdfast_smtp_connections_open": "gauge",
    "holdfast_smtp_connections_total": "counter",
    "holdfast_primary_up": "gauge",
    "holdfast_primary_refusing": "gauge",
    "holdfast_primary_last_change_timestamp_seconds": "gauge",
    "holdfast_primary_state_seconds": "gauge",
    "holdfast_last_delivery_timestamp_seconds": "gauge",
    "holdfast_tls_handshakes_total": "counter",
    "holdfast_tls_ready": "gauge",
    "holdfast_tls_cert_expiry_timestamp_seconds": "gauge",
}
STATES = ("queued", "deferred", "held", "dead")
RESULTS = ("delivered", "deferred", "dead", "expired")


def validate(m):
    for name, typ in REQUIRED.items():
        hf.check(m.type.get(name) == typ, "TYPE of %s is %r, want %s"
                 % (name, m.type.get(name), typ))
    for name, typ in m.type.items():
        hf.check(name in m.help and m.help[name].strip(),
                 "%s has no HELP text" % name)
        hf.check((typ == "counter") == name.endswith("_total"),
                 "%s: a %s %s end in _total" % (name, typ, "must" if
                                                 typ == "counter" else
                                                 "must not"))
        hf.check(name.startswith("holdfast_"), "metric %s lacks the "
                 "holdfast_ prefix" % name)
    for (name, labels), v in m.samples.items():
        hf.check(name in m.type, "sample %s without TYPE" % name)
        for k, lv in labels:
            hf.check(len(lv) <= 32 and not BAD_LABEL_VALUE.search(lv),
                     "%s: label %s=%r looks like an address, ID or host"
                     % (name, k, lv))
        if m.type[name] == "counter":
            hf.check(v >= 0, "counter %s%s = %r" % (name, dict(labels), v))
    for name in m.type:
        hf.check(len(m.series(name)) <= MAX_SERIES, "%s has %d series"
                 % (name, len(m.series(name))))
    for st in STATES:
        m.get("holdfast_queue_messages", state=st)
        m.get("holdfast_queue_bytes", state=st)
    for r in RESULTS:
        m.get("holdfast_deliveries_total", result=r)
    for c in ("2xx", "3xx", "4xx", "5xx"):
        m.get("holdfast_smtp_replies_total", **{"class": c})
    bi = m.series("holdfast_build_info")
    hf.check(len(bi) == 1 and list(bi.values()) == [1],
             "holdfast_build_info %r" % bi)
    ver = dict(next(iter(bi)))["version"]
    hf.check(re.fullmatch(r"[0-9][0-9A-Za-z.+~-]*", ver),
             "build_info version %r" % ver)
    now = time.time()
    st = m.get("holdfast_start_time_seconds")
    hf.check(now - 600 < st <= now + 1, "start_time %r vs now %r" % (st,
                                                                     now))
    hf.check(m.get("holdfast_spool_free_bytes") > 0, "spool_free_bytes 0")
    return m


def queued(m):
    return (m.get("holdfast_queue_messages", state="queued") +
            m.get("holdfast_queue_messages", state="deferred"))


def queued_bytes(m):
    return (m.get("holdfast_queue_bytes", state="queued") +
            m.get("holdfast_queue_bytes", state="deferred"))


def monotonic(prev, cur):
    for (name, labels), v in prev.samples.items():
        if prev.type.get(name) == "counter":
            hf.check(cur.samples.get((name, labels), -1) >= v,
                     "counter %s%s went down: %r -> %r" % (
                         name, dict(labels), v,
                         cur.samples.get((name, labels))))


def main(env):
    sink = env.sink().start()
    port = hf.free_port()
    d = env.daemon(primary_port=sink.port,
                   primary={"probe_interval": "2s"},
                   metrics={"listen": "127.0.0.1:%d" % port,
                            "allow": "127.0.0.1/32"}).start()
    d.wait_log(r"metrics listening addr=127\.0\.0\.1:%d" % port, timeout=5)
    m0 = validate(d.scrape())
    hf.check(m0.get("holdfast_messages_accepted_total") == 0 and
             m0.get("holdfast_deliveries_total", result="delivered") == 0,
             "counters not 0 at start")
    hf.check(m0.get("holdfast_last_delivery_timestamp_seconds") == 0,
             "last_delivery not 0 before any delivery")

    # ---- primary up
    a = [hf.send_ok(d.port, "up%d" % i, ["up%d@example.test" % i])
         for i in range(2)]
    hf.verify_deliveries(sink, a, timeout=10, settle=0.5)
    m1 = validate(d.scrape())
    monotonic(m0, m1)
    hf.check(m1.get("holdfast_primary_up") == 1, "primary_up %r, want 1"
             % m1.get("holdfast_primary_up"))
    hf.check(m1.get("holdfast_messages_accepted_total") == 2,
             "accepted_total %r, want 2"
             % m1.get("holdfast_messages_accepted_total"))
    hf.check(m1.get("holdfast_deliveries_total", result="delivered") == 2,
             "deliveries{delivered} %r, want 2"
             % m1.get("holdfast_deliveries_total", result="delivered"))
    hf.check(m1.get("holdfast_smtp_connections_total") >= 2,
             "smtp_connections_total %r"
             % m1.get("holdfast_smtp_connections_total"))
    last1 = m1.get("holdfast_last_delivery_timestamp_seconds")
    hf.check(abs(time.time() - last1) < 30, "last_delivery %r not recent"
             % last1)
    hf.check(queued(m1) == 0, "queue not empty after delivery")
    hf.note("up: accepted 2, delivered 2, primary_up 1")

    # ---- outage
    sink.stop()
    t_down = time.time()
    b = [hf.send_ok(d.port, "down%d" % i, ["down%d@example.test" % i])
         for i in range(2)]
    d.wait_log(r"\bprimary down\b", timeout=10)
    time.sleep(1.5)           # so the oldest age is at least 1s
    m2 = validate(d.scrape())
    monotonic(m1, m2)
    hf.check(m2.get("holdfast_primary_up") == 0, "primary_up %r during the "
             "outage" % m2.get("holdfast_primary_up"))
    hf.check(queued(m2) == 2, "queue_messages queued+deferred %r, want 2"
             % queued(m2))
    size = sum(len(hf.spool_msg_read(os.path.join(d.spool, "queue",
                                                  s.qid))[1]) for s in b)
    hf.check(queued_bytes(m2) == size, "queue_bytes queued+deferred %r, "
             "stored bodies %d" % (queued_bytes(m2), size))
    age = m2.get("holdfast_queue_oldest_message_age_seconds")
    hf.check(1 <= age <= time.time() - t_down + 2, "oldest age %r (sent "
             "%.1fs ago)" % (age, time.time() - t_down))
    chg = m2.get("holdfast_primary_last_change_timestamp_seconds")
    hf.check(t_down - 2 <= chg <= time.time() + 1, "last change %r, primary "
             "went down at %r" % (chg, t_down))
    hf.check(m2.get("holdfast_primary_state_seconds") >= 0,
             "primary_state_seconds negative")
    hf.check(m2.get("holdfast_messages_accepted_total") == 4,
             "accepted_total %r, want 4"
             % m2.get("holdfast_messages_accepted_total"))
    hf.note("outage: primary_up 0, queued %d (%d bytes), oldest %ds"
            % (queued(m2), queued_bytes(m2), age))

    # ---- back
    t_up = time.time()
    sink.start()
    hf.verify_deliveries(sink, a + b, timeout=15, settle=0.5)
    hf.wait_until(lambda: not d.queue_ids(), 10, "queue/ to empty")
    m3 = validate(d.scrape())
    monotonic(m2, m3)
    hf.check(m3.get("holdfast_primary_up") == 1, "primary_up %r after the "
             "outage" % m3.get("holdfast_primary_up"))
    hf.check(m3.get("holdfast_deliveries_total", result="delivered") ==
             m1.get("holdfast_deliveries_total", result="delivered") + 2,
             "deliveries{delivered} %r, want %r" % (
                 m3.get("holdfast_deliveries_total", result="delivered"),
                 m1.get("holdfast_deliveries_total", result="delivered") + 2))
    for st in STATES:
        hf.check(m3.get("holdfast_queue_messages", state=st) == 0 and
                 m3.get("holdfast_queue_bytes", state=st) == 0,
                 "queue{%s} not empty after the outage" % st)
    hf.check(m3.get("holdfast_queue_oldest_message_age_seconds") == 0,
             "oldest age %r with an empty queue"
             % m3.get("holdfast_queue_oldest_message_age_seconds"))
    last3 = m3.get("holdfast_last_delivery_timestamp_seconds")
    hf.check(t_up - 1 <= last3 <= time.time() + 1, "last_delivery %r, "
             "primary back at %r" % (last3, t_up))
    chg = m3.get("holdfast_primary_last_change_timestamp_seconds")
    hf.check(t_up - 1 <= chg <= time.time() + 1, "last change %r, primary "
             "back at %r" % (chg, t_up))
    hf.check(m3.get("holdfast_smtp_connections_open") == 0,
             "smtp_connections_open %r with no client"
             % m3.get("holdfast_smtp_connections_open"))
    hf.note("back: delivered +2, queue empty, last delivery %.0fs ago"
            % (time.time() - last3))

    # ---- health, access, paths, methods
    st, hdrs, body = d.http_get("/healthz")
    hf.check(st == 200 and body.strip() == "ok", "/healthz -> %s %r"
             % (st, body))
    for path in ("/metrics", "/healthz", "/nonexistent"):
        got = refused_reply(d.metrics_addr, path)
        hf.check(got == b"", "GET %s from 127.0.0.2 -> %r, want the "
                 "connection closed without a reply" % (path, got[:80]))
    st, hdrs, body = d.http_get("/nonexistent")
    hf.check(st == 404, "GET /nonexistent -> %s, want 404" % st)
    st, hdrs, body = d.http_get("/metrics?x=1")
    hf.check(st == 200 and "holdfast_primary_up" in body,
             "GET /metrics?x=1 -> %s" % st)
    addr = d.metrics_addr
    st, hdrs, body = hf.http_get(addr[0], addr[1], "/metrics",
                                 method="POST")
    hf.check(st == 405, "POST /metrics -> %s, want 405" % st)
    st, hdrs, body = hf.http_get(addr[0], addr[1], "/metrics",
                                 method="HEAD")
    hf.check(st == 200 and body == "", "HEAD /metrics -> %s %r"
             % (st, body[:80]))

    # Every reply counts, the greeting and the EHLO reply too: each of
    # the two smtplib sessions of the 'up' phase got 220, 250 (EHLO),
    # 250 (MAIL), 250 (RCPT), 354, 250 (end of data), 221 (QUIT).
    # (deltas from m0: the harness's readiness probe connected before it)
    def delta(name, **labels):
        return m1.get(name, **labels) - m0.get(name, **labels)
    r2 = delta("holdfast_smtp_replies_total", **{"class": "2xx"})
    r3 = delta("holdfast_smtp_replies_total", **{"class": "3xx"})
    hf.check(delta("holdfast_smtp_connections_total") == 2,
             "smtp_connections_total +%r after two sessions"
             % delta("holdfast_smtp_connections_total"))
    hf.check(r3 == 2, "smtp_replies{3xx} +%r after two DATA, want 2" % r3)
    hf.check(r2 == 12, "smtp_replies{2xx} +%r after two sessions, want 12 "
             "(6 each: 220 greeting, EHLO, MAIL, RCPT, end of data, QUIT)"
             % r2)


hf.run(main)
