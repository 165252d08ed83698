#!/usr/bin/python3
"""holdfastctl against a running daemon, then against a stopped one.

Primary down, four messages queued: queue/mailq (text and --json: id,
state 'waiting' with reason primary-down and the primary's failure, size =
stored body bytes, sender, recipients), show (envelope and
headers; --body the whole stored message), hold one, delete one (gone from
the spool, logged 'removed reason=operator'), flush one, status (text and
--json).  The primary comes up: everything but the held message is
delivered; release -> it is delivered too.  A primary answering 5xx to
every RCPT (smtp-sink -f RCPT) makes two dead letters: dead (text, --json,
reason), requeue one -> delivered by the now-accepting primary, the other
stays dead.  Exit codes: 1 with one line on stderr for an unknown ID or a
command the message's state does not allow, 2 for bad usage (also when
only the daemon can tell, e.g. hold-mode on --for xyz).  Finally the
daemon is stopped: queue, mailq, show and dead still answer read-only from
the spool (with a note on stderr), everything else exits 1."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

NOID = "0123456789abcdef"


def by_id(listing):
    return {r["id"]: r for r in listing}


def rcpt_addrs(rec):
    """'pending:a@b' -> ('pending', 'a@b') for each recipient."""
    out = []
    for r in rec.get("rcpt", []):
        st, _, addr = r.partition(":")
        out.append((st, addr))
    return out


def body_size(d, area, qid):
    return len(hf.spool_msg_read(os.path.join(d.spool, area, qid))[1])


def one_line_err(r, what):
    hf.check(r.err.strip() and len(r.err.strip().splitlines()) == 1,
             "%s: stderr is not one line: %r" % (what, r.err))
    hf.check(r.err.startswith("holdfastctl: "), "%s: stderr %r" % (what,
                                                                   r.err))


def check_listing(d, rec, s, state, area):
    hf.check(rec["state"] == state, "%s: state %r, want %r (%r)"
             % (s.qid, rec["state"], state, rec))
    hf.check(rec["sender"] == s.sender, "%s: sender %r" % (s.qid,
                                                           rec["sender"]))
    hf.check(isinstance(rec["size"], int) and
             rec["size"] == body_size(d, area, s.qid),
             "%s: size %r, stored body has %d" % (s.qid, rec["size"],
                                                  body_size(d, area, s.qid)))
    hf.check(rec["size"] > len(s.content), "%s: size %r not above the "
             "message's %d bytes (Received header)" % (s.qid, rec["size"],
                                                      len(s.content)))
    addrs = sorted(a for _, a in rcpt_addrs(rec))
    hf.check(addrs == sorted(s.all_rcpts), "%s: rcpt %r, want %r"
             % (s.qid, rec.get("rcpt"), s.all_rcpts))
    hf.check(isinstance(rec.get("arrival"), int) and
             abs(rec["arrival"] - time.time()) < 600,
             "%s: arrival %r" % (s.qid, rec.get("arrival")))


def op(d, *args):
    """A mutating command that must succeed; 'being delivered, try again'
    (the message is in a probe right now) is retried, as an operator
    would."""
    deadline = time.monotonic() + 10
    while True:
        r = d.ctl(*args)
        if r.rc == 0:
            return r
        if ("being delivered" not in r.err or
                time.monotonic() > deadline):
            hf.fail("%r (wanted exit 0)" % r)
        time.sleep(0.2)


def main(env):
    sink = env.sink()                       # not started: primary down
    d = env.daemon(primary_port=sink.port)
    d.start()
    hf.wait_until(lambda: os.path.exists(d.control_socket), 10,
                  "control socket %s" % d.control_socket)

    r = d.ctl("version").ok()
    hf.check(re.match(r"holdfastctl \S+\n\Z", r.out), "version: %r" % r.out)

    m1 = hf.send_ok(d.port, "m1", ["held@example.test"])
    m2 = hf.send_ok(d.port, "m2", ["a@example.test", "b@example.org"])
    m3 = hf.send_ok(d.port, "m3", ["deleted@example.test"])
    m4 = hf.send_ok(d.port, "m4", ["d@example.test"],
                    sender="other@client.test")
    sent = [m1, m2, m3, m4]
    d.wait_log(r"\bprimary down\b", timeout=15)

    # ---- queue / mailq
    r = d.ctl("queue").ok()
    for s in sent:
        ls = [l for l in r.out.splitlines() if l.startswith(s.qid)]
        hf.check(len(ls) == 1, "queue text: no line for %s:\n%s"
                 % (s.qid, r.out))
        hf.check("<%s>" % s.sender in ls[0], "queue text line lacks the "
                 "sender: %r" % ls[0])
        # the primary is down: every queued message waits for it
        hf.check(re.search(r"\bwaiting\b", ls[0]),
                 "queue text line lacks the state 'waiting': %r" % ls[0])
        for a in s.all_rcpts:
            hf.check(a in r.out, "queue text lacks rcpt %s" % a)
    hf.check(len(re.findall(r"^ +\(primary down: .*Connection refused.*\) "
                            r"next: as soon as it is back$", r.out, re.M))
             == 4, "queue text lacks the primary's failure for each "
             "message:\n%s" % r.out)
    hf.check(re.search(r"^-- 4 messages, [\d.]+ (B|KiB) \(\d+ bytes\)$",
                       r.out, re.M),
             "queue text lacks the '-- 4 messages, N bytes' total:\n%s"
             % r.out)
    for cmd in ("queue", "mailq"):
        lst = d.ctl(cmd, "--json").ok().json()
        hf.check(isinstance(lst, list) and len(lst) == 4,
                 "%s --json: %r" % (cmd, lst))
        recs = by_id(lst)
        for s in sent:
            hf.check(s.qid in recs, "%s --json lacks %s" % (cmd, s.qid))
            check_listing(d, recs[s.qid], s, recs[s.qid]["state"], "queue")
            hf.check(recs[s.qid]["state"] == "waiting" and
                     recs[s.qid].get("reason") == "primary-down" and
                     "Connection refused" in
                     recs[s.qid].get("primary_reply", ""),
                     "%s: state %r reason %r primary_reply %r (want "
                     "waiting for the down primary)" % (
                         s.qid, recs[s.qid]["state"],
                         recs[s.qid].get("reason"),
                         recs[s.qid].get("primary_reply")))
            hf.check(all(st == "pending" for st, _ in
                         rcpt_addrs(recs[s.qid])),
                     "%s: rcpt states %r" % (s.qid, recs[s.qid]["rcpt"]))
    hf.note("queue/mailq text and --json ok")

    # ---- show
    r = d.ctl("show", m2.qid).ok()
    hf.check(re.search(r"^id: %s$" % m2.qid, r.out, re.M),
             "show: no 'id: %s' line:\n%s" % (m2.qid, r.out))
    hf.check(re.search(r"^sender: sender@client\.test$", r.out, re.M),
             "show: no sender line:\n%s" % r.out)
    for line in (r"^Received: from client\.test ", r"^Subject: test m2$",
                 r"^Message-ID: <m2@harness\.test>$"):
        hf.check(re.search(line, r.out, re.M), "show: no /%s/ in:\n%s"
                 % (line, r.out))
    hf.check("token m2" not in r.out, "show without --body printed the "
             "body:\n%s" % r.out)
    r = d.ctl("show", m2.qid, "--body").ok()
    for line in (r"^Subject: test m2$", r"^token m2$", r"^line two$",
                 r"^\.leading dot$"):
        hf.check(re.search(line, r.out, re.M), "show --body: no /%s/ in:\n%s"
                 % (line, r.out))
    lst = d.ctl("show", m2.qid, "--json").ok().json()
    hf.check(isinstance(lst, list) and lst and lst[0].get("id") == m2.qid,
             "show --json: first record %r" % (lst[:1],))
    hdrs = [h for rec in lst[1:] for h in rec.get("header", [])]
    hf.check("Subject: test m2" in hdrs, "show --json headers %r" % hdrs)
    lst = d.ctl("show", m2.qid, "--body", "--json").ok().json()
    lines = [h for rec in lst[1:] for h in rec.get("line", [])]
    stored = hf.spool_msg_read(os.path.join(d.spool, "queue",
                                            m2.qid))[1].decode()
    hf.check("\r\n".join(lines) + "\r\n" == stored,
             "show --body --json lines differ from the stored body:\n%r\n%r"
             % (lines, stored))
    hf.note("show, --body, --json ok")

    # ---- hold, delete, flush ID
    mark = d.mark()
    op(d, "hold", m1.qid)
    d.wait_log(r"msg=%s held reason=operator" % m1.qid, since=mark,
               timeout=5)
    hf.check(m1.qid in os.listdir(os.path.join(d.spool, "hold")),
             "held message not in hold/")
    recs = by_id(d.ctl("queue", "--json").ok().json())
    check_listing(d, recs[m1.qid], m1, "held", "hold")
    r = d.ctl("hold", m1.qid)
    hf.check(r.rc == 1, "hold of a held message: %r (want exit 1)" % r)
    one_line_err(r, "hold twice")

    op(d, "delete", m3.qid)
    d.wait_log(r"msg=%s removed reason=operator" % m3.qid, since=mark,
               timeout=5)
    hf.check(m3.qid not in d.queue_ids(), "deleted message still in queue/")
    recs = by_id(d.ctl("queue", "--json").ok().json())
    hf.check(m3.qid not in recs, "deleted message still listed")
    r = d.ctl("show", m3.qid)
    hf.check(r.rc == 1, "show of a deleted message: %r" % r)
    one_line_err(r, "show deleted")

    op(d, "flush", m2.qid)
    d.wait_log(r"msg=%s flush" % m2.qid, since=mark, timeout=5)

    # ---- status
    r = d.ctl("status").ok()
    kv = dict(l.split(": ", 1) for l in r.out.splitlines() if ": " in l)
    for k in ("primary", "primary_since", "refusing", "last_delivery",
              "hold_mode", "queued_messages", "deferred_messages",
              "held_messages", "dead_messages", "queued_bytes",
              "oldest_age", "spool_free_bytes", "version", "uptime"):
        hf.check(k in kv, "status lacks %s:\n%s" % (k, r.out))
    # readable by default: UTC times with their age, "never", units
    iso = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    hf.check(re.fullmatch(iso + r" \(\d+[smhd](\d+[smh])? ago\)",
                          kv["primary_since"]),
             "status primary_since %r (want ISO 8601 UTC and its age)"
             % kv["primary_since"])
    hf.check(kv["last_delivery"] == "never" and kv["hold_until"] == "-",
             "status before any delivery: %r" % kv)
    hf.check(re.fullmatch(r"[\d.]+ (B|KiB)( \(\d+\))?",
                          kv["queued_bytes"]) and
             re.fullmatch(r"[\d.]+ [KMGT]iB \(\d+\)",
                          kv["spool_free_bytes"]) and
             re.fullmatch(r"\d+[smhd](\d+[smh])?", kv["uptime"]),
             "status sizes and ages: %r" % kv)
    st = d.ctl("status", "--json").ok().json()
    hf.check(isinstance(st, dict), "status --json: %r" % st)
    hf.check(st["primary"] == "down", "status primary=%r (down)"
             % st["primary"])
    hf.check(st["hold_mode"] == "off" and st["refusing"] == "no",
             "status: %r" % st)
    hf.check(st["held_messages"] == 1, "status held_messages=%r"
             % st["held_messages"])
    hf.check(st["queued_messages"] + st["deferred_messages"] == 2,
             "status queued+deferred=%r+%r, want 2"
             % (st["queued_messages"], st["deferred_messages"]))
    hf.check(st.get("waiting_messages") == 2, "status waiting_messages=%r, "
             "want 2 (the primary is down)" % st.get("waiting_messages"))
    hf.check(st["dead_messages"] == 0, "status dead=%r" % st)
    hf.check(st["last_delivery"] == 0, "status last_delivery=%r before "
             "any delivery" % st["last_delivery"])
    hf.check(st["spool_free_bytes"] > 0 and st["uptime"] >= 0 and
             st["oldest_age"] >= 0, "status: %r" % st)
    hf.check(str(st["version"]) in d.ctl("version").out,
             "status version %r vs holdfastctl version" % st["version"])
    hf.note("hold, delete, flush ID, status ok")

    # ---- the primary comes up: all but the held one delivered
    sink.start()
    hf.verify_deliveries(sink, [m2, m4], timeout=15, settle=3)
    hf.check(m1.qid in os.listdir(os.path.join(d.spool, "hold")),
             "held message left hold/")
    hf.check(not d.grep(r"msg=%s delivered" % m1.qid),
             "held message was delivered")
    st = d.ctl("status", "--json").ok().json()
    hf.check(st["primary"] == "up" and st["last_delivery"] > 0,
             "status after delivery: %r" % st)
    mark = d.mark()
    op(d, "release", m1.qid)
    d.wait_log(r"msg=%s released" % m1.qid, since=mark, timeout=5)
    hf.verify_deliveries(sink, [m1, m2, m4], timeout=15, settle=1)
    hf.wait_until(lambda: not d.queue_ids(), 10, "queue/ to empty")
    r = d.ctl("release", m1.qid)
    hf.check(r.rc == 1, "release of a delivered message: %r" % r)
    one_line_err(r, "release delivered")
    d.ctl("flush").ok()
    hf.note("release -> delivered; flush ok")

    # ---- dead letters: a primary that refuses every recipient
    sink.stop()
    sink.clear_dumps()
    sink.start(options=["-f", "RCPT"])
    m5 = hf.send_ok(d.port, "m5", ["refused5@example.test"])
    m6 = hf.send_ok(d.port, "m6", ["refused6@example.test"])
    for s in (m5, m6):
        hf.wait_until(lambda: s.qid in d.dead_ids(), 20,
                      "%s in dead/" % s.qid)
    r = d.ctl("dead").ok()
    for s in (m5, m6):
        hf.check(s.qid in r.out, "dead text lacks %s:\n%s" % (s.qid, r.out))
    hf.check(re.search(r"^\s+dead: refused$", r.out, re.M),
             "dead text lacks 'dead: refused':\n%s" % r.out)
    lst = d.ctl("dead", "--json").ok().json()
    recs = by_id(lst)
    hf.check(sorted(recs) == sorted([m5.qid, m6.qid]), "dead --json ids %r"
             % sorted(recs))
    for s in (m5, m6):
        check_listing(d, recs[s.qid], s, "dead", "dead")
        hf.check(recs[s.qid].get("dead_reason") == "refused",
                 "dead_reason %r" % recs[s.qid].get("dead_reason"))
        hf.check(rcpt_addrs(recs[s.qid]) == [("dead", s.rcpts[0])],
                 "dead rcpt %r" % recs[s.qid]["rcpt"])
    r = d.ctl("requeue", m4.qid)
    hf.check(r.rc == 1, "requeue of a delivered message: %r" % r)
    r = d.ctl("hold", m5.qid)
    hf.check(r.rc == 1, "hold of a dead letter: %r" % r)
    one_line_err(r, "hold dead")

    sink.stop()
    sink.clear_dumps(tap=True)
    sink.start(options=[])
    mark = d.mark()
    op(d, "requeue", m5.qid)
    d.wait_log(r"msg=%s requeued reason=operator" % m5.qid, since=mark,
               timeout=5)
    hf.verify_deliveries(sink, [m5], timeout=20, settle=2)
    hf.check(m6.qid in d.dead_ids(), "the other dead letter left dead/")
    hf.check(m5.qid not in d.dead_ids() and m5.qid not in d.queue_ids(),
             "requeued message still in the spool")
    hf.note("dead, requeue ok")

    # ---- exit codes
    for args in (("show", NOID), ("hold", NOID), ("release", NOID),
                 ("delete", NOID), ("requeue", NOID), ("flush", NOID)):
        r = d.ctl(*args)
        hf.check(r.rc == 1, "%r (want exit 1 for an unknown ID)" % r)
        one_line_err(r, " ".join(args))
    for args in ((), ("frobnicate",), ("show",), ("hold",), ("release",),
                 ("delete",), ("requeue",), ("hold-mode",),
                 ("status", "extra"), ("queue", "extra"),
                 ("show", "a", "b", "c")):
        r = d.ctl(*args)
        hf.check(r.rc == 2, "%r (want exit 2 for bad usage)" % r)
        hf.check("usage" in r.err, "bad usage without usage text: %r" % r)
    # help: --help, -h, help COMMAND, COMMAND -h (stdout, exit 0)
    for args in (("--help",), ("-h",), ("help",)):
        r = d.ctl(*args)
        hf.check(r.rc == 0 and "usage: holdfastctl" in r.out and
                 re.search(r"^  hold ID\.\.\.\|all", r.out, re.M),
                 "%r: want the usage on stdout, exit 0" % r)
    for args in (("help", "hold"), ("hold", "-h"), ("status", "--help"),
                 ("shape", "-h"), ("help", "check-mx")):
        r = d.ctl(*args)
        hf.check(r.rc == 0 and "usage: holdfastctl [-c FILE] %s" %
                 (args[1] if args[0] == "help" else args[0]) in r.out,
                 "%r: want the command's help, exit 0" % r)
    r = d.ctl("help", "frobnicate")
    hf.check(r.rc == 2, "help of an unknown command: %r" % r)
    for args, allowed in ((("queue", "--bogus"), "allowed: --json"),
                          (("status", "-x"), "allowed: --json"),
                          (("flush", "--all"), "allowed: none"),
                          (("hold-mode", "on", "--until", "2h"),
                           "allowed: --for")):
        r = d.ctl(*args)
        hf.check(r.rc == 2 and "unknown option" in r.err and allowed in
                 r.err, "%r: want exit 2 naming %r" % (r, allowed))
    r = hf.run_ctl(["-c", env.path("nonexistent.conf"), "queue"])
    hf.check(r.rc == 1, "missing config: %r (want exit 1)" % r)
    hf.note("exit codes ok")

    # ---- daemon stopped: read-only view
    sink.stop()
    m7 = hf.send_ok(d.port, "m7", ["later@example.test"])
    m8 = hf.send_ok(d.port, "m8", ["kept@example.test"])
    hf.wait_until(lambda: m7.qid in d.queue_ids(), 5, "m7 queued")
    op(d, "hold", m8.qid)
    d.stop()
    hf.check(not os.path.exists(d.control_socket),
             "control socket left behind after a clean stop")
    for cmd in ("queue", "mailq"):
        r = d.ctl(cmd, "--json")
        hf.check(r.rc == 0, "offline %r" % r)
        hf.check("daemon not running" in r.err, "offline %s: no note on "
                 "stderr: %r" % (cmd, r.err))
        recs = by_id(r.json())
        hf.check(sorted(recs) == sorted([m6.qid, m7.qid, m8.qid]),
                 "offline %s ids %r" % (cmd, sorted(recs)))
        check_listing(d, recs[m7.qid], m7, recs[m7.qid]["state"], "queue")
        hf.check(recs[m7.qid]["state"] in ("queued", "deferred"),
                 "offline m7 state %r" % recs[m7.qid]["state"])
        check_listing(d, recs[m8.qid], m8, "held", "hold")
        check_listing(d, recs[m6.qid], m6, "dead", "dead")
    r = d.ctl("queue")
    hf.check(r.rc == 0 and m7.qid in r.out and m6.qid in r.out,
             "offline queue text: %r" % r)
    r = d.ctl("dead", "--json")
    hf.check(r.rc == 0 and [x["id"] for x in r.json()] == [m6.qid],
             "offline dead: %r" % r)
    r = d.ctl("show", m7.qid, "--body")
    hf.check(r.rc == 0 and re.search(r"^token m7$", r.out, re.M),
             "offline show --body: %r" % r)
    r = d.ctl("show", m6.qid)
    hf.check(r.rc == 0 and re.search(r"^dead_reason: refused$", r.out,
                                     re.M),
             "offline show of a dead letter: %r" % r)
    r = d.ctl("show", NOID)
    hf.check(r.rc == 1, "offline show of an unknown ID: %r" % r)
    for args in (("hold", m7.qid), ("release", m8.qid),
                 ("delete", m7.qid), ("flush",), ("flush", m7.qid),
                 ("requeue", m6.qid), ("hold-mode", "on"), ("status",)):
        r = d.ctl(*args)
        hf.check(r.rc == 1, "offline %r (want exit 1)" % r)
        one_line_err(r, "offline " + " ".join(args))
    hf.check(sorted(d.queue_ids()) == [m7.qid] and
             d.dead_ids() == [m6.qid] and
             os.listdir(os.path.join(d.spool, "hold")) == [m8.qid],
             "offline commands changed the spool")
    hf.note("offline read-only view ok")

    # ---- usage errors only the daemon can see are still bad usage (2)
    d.start()
    for args in (("hold-mode", "maybe"), ("hold-mode", "on", "--for", "xyz"),
                 ("hold-mode", "on", "--for"), ("hold-mode", "off", "now"),
                 ("show", m7.qid, "--bogus")):
        r = d.ctl(*args)
        hf.check(r.rc == 2, "%r (want exit 2 for bad usage)" % r)
    st = d.ctl("status", "--json").ok().json()
    hf.check(st["hold_mode"] == "off", "a bad hold-mode command changed "
             "hold-mode: %r" % st)


hf.run(main)
