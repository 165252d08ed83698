#!/usr/bin/python3
"""holdfastctl's bulk selection (postsuper style) and shape (qshape).

Six messages are sent while the primary is down, hold-mode is turned on,
the daemon stops, and the envelopes are rewritten offline (src/envelope.c's
key: value format) so that the queue holds one message in every state with
a known age (arrival moved back):

    qa  queued    a@good.example     3h       -> age bucket 320m
    qb  queued    <> (null sender)   1m       -> 5m
    da  deferred  spam1@bad.example  30m      451 4.7.1 greylisted -> 40m
    db  deferred  spam2@bad.example  7m       452 4.2.2 mailbox full -> 10m
    ha  held      b@good.example     25h      -> older
    xa  dead      c@other.example    100m     550 5.1.1 no such user -> 160m

Restarted with the sink up and hold-mode on (nothing drains), each
selector (--state, --from, --rcpt, --reply, --older-than) is checked with
--dry-run (the listing and count; nothing moves), then for real: hold,
release, requeue and delete by selector move exactly the matching
messages, and every action is logged with the operator's uid and the
selector.  `shape` counts the crafted ages in the right buckets per state
and per sender domain (text, --json, -n), and the metric
holdfast_queue_age_messages{bucket=...} counts those in the queue.  Then the sink stops and hold-mode
ends: the primary is down: every queued message is `waiting`, and
--state waiting and --state deferred still select them.  Bad selectors are
bad usage (exit 2) naming what is allowed.
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

MSGS = [
    # token, sender, rcpt, area, attempts, age seconds, last reply
    ("qa", "a@good.example", "user1@example.test", "queue", 0, 3 * 3600,
     None),
    ("qb", "", "postmaster@example.test", "queue", 0, 60, None),
    ("da", "spam1@bad.example", "user2@example.test", "queue", 2, 1800,
     "451 4.7.1 greylisted, try later"),
    ("db", "spam2@bad.example", "user3@example.test", "queue", 1, 420,
     "452 4.2.2 mailbox full"),
    ("ha", "b@good.example", "user4@example.test", "hold", 0, 25 * 3600,
     None),
    ("xa", "c@other.example", "gone@example.test", "dead", 1, 6000,
     "550 5.1.1 no such user"),
]


def env_escape(s):
    return "".join(c if 0x20 <= ord(c) <= 0x7e and c != "\\" else
                   "\\x%02x" % ord(c) for c in s)


def craft(spool, qid, area, attempts, age, reply):
    """Rewrite the envelope of queue/QID with the given state and age,
    moving the message's file to area."""
    src = os.path.join(spool, "queue", qid)
    text, body = hf.spool_msg_read(src)
    lines = text.splitlines()
    now = int(time.time())
    keys = {"arrival": str(now - age), "attempts": str(attempts),
            "next_attempt": str(now + 86400) if attempts else None,
            "age_base": str(now - age)}
    if reply:
        keys["last_reply"] = env_escape(reply)
    if area == "hold":
        keys.update(held="yes", held_since=str(now - 60))
    if area == "dead":
        keys["dead_reason"] = "refused"
    out, seen = [], set()
    for line in lines:
        k, _, v = line.partition(": ")
        if k == "rcpt":
            for nk, nv in keys.items():
                if nk not in seen and nv is not None:
                    out.append("%s: %s" % (nk, nv))
                    seen.add(nk)
            if area == "dead":
                line = re.sub(r"^rcpt: pending ", "rcpt: dead ", line)
            out.append(line)
            continue
        if k in keys:
            seen.add(k)
            if keys[k] is not None:
                out.append("%s: %s" % (k, keys[k]))
            continue
        out.append(line)
    hf.spool_msg_write(src, "\n".join(out) + "\n", body)
    if area != "queue":
        os.rename(src, os.path.join(spool, area, qid))


def ids_of(r):
    return sorted(x["id"] for x in r.json() if "id" in x)


def summary(r):
    s = [x for x in r.json() if "matched" in x]
    hf.check(len(s) == 1, "no summary record in %r" % r.out)
    return s[0]


def main(env):
    sink = env.sink()                       # not started: primary down
    mport = hf.free_port()
    d = env.daemon(primary_port=sink.port,
                   primary={"probe_interval": "1h"},
                   metrics={"listen": "127.0.0.1:%d" % mport})
    d.start()
    sent = {}
    for tok, sender, rcpt, _, _, _, _ in MSGS:
        sent[tok] = hf.send_ok(d.port, tok, [rcpt], sender=sender).qid
    q = {v: k for k, v in sent.items()}
    d.ctl("hold-mode", "on", "--for", "2h").ok()
    d.stop()
    for tok, _, _, area, attempts, age, reply in MSGS:
        craft(d.spool, sent[tok], area, attempts, age, reply)
    sink.start()
    d.start()
    lst = {x["id"]: x for x in d.ctl("queue", "--json").ok().json()}
    want_state = {"qa": "queued", "qb": "queued", "da": "deferred",
                  "db": "deferred", "ha": "held", "xa": "dead"}
    for tok, st in want_state.items():
        got = lst.get(sent[tok], {}).get("state")
        hf.check(got == st, "crafted %s: state %r, want %s (listing %r)"
                 % (tok, got, st, lst.get(sent[tok])))
    hf.note("crafted a queue with every state")

    def dry(verb, *sel):
        r = d.ctl(verb, *sel, "--dry-run", "--json").ok()
        got = [q[i] for i in ids_of(r)]
        s = summary(r)
        hf.check(s["matched"] == len(got), "%s %r: matched %r for %r"
                 % (verb, sel, s["matched"], got))
        return sorted(got)

    spool_before = {a: sorted(os.listdir(os.path.join(d.spool, a)))
                    for a in ("queue", "hold", "dead")}
    cases = [
        ("hold", ("--state", "queued"), ["qa", "qb"]),
        ("hold", ("--state", "deferred"), ["da", "db"]),
        ("hold", ("--state", "queued,deferred"), ["qa", "qb", "da", "db"]),
        ("hold", ("--state", "held"), []),        # hold applies to queue/
        ("release", ("--state", "held"), ["ha"]),
        ("requeue", ("--state", "dead"), ["xa"]),
        ("delete", ("--state", "dead"), ["xa"]),
        ("delete", ("--from", "*@BAD.example"), ["da", "db"]),
        ("delete", ("--from", "<>"), ["qb"]),
        ("delete", ("--from", "*@good.example"), ["ha", "qa"]),
        ("delete", ("--rcpt", "user[12]@*"), ["da", "qa"]),
        ("delete", ("--rcpt", "postmaster@*"), ["qb"]),
        ("delete", ("--reply", "*4.7.1*"), ["da"]),
        ("delete", ("--reply", "4?? *"), ["da", "db"]),
        ("delete", ("--reply", "*no such user"), ["xa"]),
        ("delete", ("--reply", "*mailbox full"), ["db"]),
        ("delete", ("--older-than", "2h"), ["ha", "qa"]),
        ("delete", ("--older-than", "20m"), ["da", "ha", "qa", "xa"]),
        ("delete", ("--older-than", "20m", "--state", "deferred"), ["da"]),
        ("hold", ("--older-than", "5m", "--from", "*@bad.example"),
         ["da", "db"]),
    ]
    for verb, sel, want in cases:
        got = dry(verb, *sel)
        hf.check(got == sorted(want), "%s %s --dry-run selected %r, want %r"
                 % (verb, " ".join(sel), got, sorted(want)))
    # the patterns' spaces: a reply with spaces
    got = dry("delete", "--reply", "*greylisted, try later")
    hf.check(got == ["da"], "--reply with spaces selected %r" % got)
    r = d.ctl("hold", "--state", "deferred", "--dry-run").ok()
    hf.check(re.search(r"^would hold 2 messages \(--state deferred\)$",
                       r.out, re.M) and sent["da"] in r.out and
             sent["db"] in r.out, "dry-run text:\n%s" % r.out)
    spool_after = {a: sorted(os.listdir(os.path.join(d.spool, a)))
                   for a in ("queue", "hold", "dead")}
    hf.check(spool_before == spool_after, "a dry run changed the spool: %r "
             "-> %r" % (spool_before, spool_after))
    hf.check(d.grep(r'ctl delete selector="--reply \*4\.7\.1\*" '
                    r'matched=1 dry-run uid=%d' % os.geteuid()),
             "dry run not logged with the selector and uid")
    hf.note("every selector's dry run selects the right messages")

    # ---- shape: the crafted ages in their buckets
    sh = d.ctl("shape", "--json").ok().json()
    hf.check(sh["buckets"] == ["5m", "10m", "20m", "40m", "80m", "160m",
                               "320m", "640m", "1280m", "older"],
             "shape buckets %r" % sh["buckets"])
    rows = {r["name"]: r for r in sh["states"]}
    nz = {k: {b: n for b, n in r["counts"].items() if n}
          for k, r in rows.items()}
    hf.check(nz == {"queued": {"320m": 1, "5m": 1},
                    "deferred": {"40m": 1, "10m": 1},
                    "waiting": {}, "held": {"older": 1},
                    "dead": {"160m": 1}}, "shape per state: %r" % nz)
    hf.check(sh["total"]["total"] == 6, "shape total %r" % sh["total"])
    doms = [(r["name"], r["total"]) for r in sh["domains"]]
    hf.check(doms == [("good.example", 2), ("bad.example", 2),
                      ("<>", 1), ("other.example", 1)] or
             doms == [("bad.example", 2), ("good.example", 2),
                      ("<>", 1), ("other.example", 1)],
             "shape domains %r" % doms)
    sh1 = d.ctl("shape", "-n", "1", "--json").ok().json()
    hf.check(len(sh1["domains"]) == 1 and sh1["other_domains"] == 3,
             "shape -n 1: %r" % sh1)
    r = d.ctl("shape").ok()
    hf.check(re.search(r"^queued +2 +1( +0){5} +1 ", r.out, re.M) and
             re.search(r"^-- sender domains \(top 4 of 4\)$", r.out, re.M) and
             re.search(r"^bad\.example +2 ", r.out, re.M),
             "shape text:\n%s" % r.out)
    m = d.scrape()
    ages = {b: m.get("holdfast_queue_age_messages", bucket=b)
            for b in sh["buckets"]}
    hf.check(ages == {"5m": 1, "10m": 1, "20m": 0, "40m": 1, "80m": 0,
                      "160m": 0, "320m": 1, "640m": 0, "1280m": 0,
                      "older": 0},
             "holdfast_queue_age_messages (queue/ only) %r" % ages)
    hf.note("shape and holdfast_queue_age_messages ok")

    # ---- for real
    mark = d.mark()
    r = d.ctl("hold", "--from", "*@bad.example", "--json").ok()
    s = summary(r)
    hf.check(s["matched"] == 2 and s["done"] == 2, "hold by sender: %r" % s)
    hold = sorted(os.listdir(os.path.join(d.spool, "hold")))
    hf.check(hold == sorted([sent["da"], sent["db"], sent["ha"]]),
             "hold/ after hold --from: %r" % [q.get(i) for i in hold])
    for t in ("da", "db"):
        d.wait_log(r"msg=%s held reason=operator" % sent[t], since=mark)
    hf.check(d.grep(r'ctl hold selector="--from \*@bad\.example" matched=2 '
                    r'uid=%d' % os.geteuid(), since=mark) and
             d.grep(r"ctl hold finished matched=2 done=2 skipped=0 "
                    r"failed=0 uid=%d" % os.geteuid(), since=mark),
             "hold by selector not logged with selector and uid")
    r = d.ctl("release", "--state", "held", "--older-than", "1d").ok()
    hf.check(re.search(r"^released 1 of 1 message ", r.out, re.M),
             "release text: %r" % r.out)
    hf.check(sent["ha"] in d.queue_ids(), "ha not released")
    r = d.ctl("requeue", "--reply", "*5.1.1*").ok()
    hf.check(sent["xa"] in d.queue_ids() and not d.dead_ids(),
             "requeue by reply: %r" % r)
    r = d.ctl("delete", "--state", "queued", "--from", "<>").ok()
    hf.check(sent["qb"] not in d.queue_ids(), "delete --from <>: %r" % r)
    hf.check(d.grep(r"msg=%s removed reason=operator" % sent["qb"]),
             "delete by selector not logged per message")
    r = d.ctl("delete", "--rcpt", "nobody@*").ok()
    hf.check("would" not in r.out and re.search(r"deleted 0 of 0", r.out),
             "empty selection: %r" % r.out)
    hf.note("hold, release, requeue, delete by selector ok")

    # ---- the primary down: waiting
    sink.stop()
    mark = d.mark()
    d.ctl("hold-mode", "off").ok()      # drains: refused -> down
    d.wait_log(r"\bprimary down\b", since=mark, timeout=15)
    got = dry("hold", "--state", "waiting")
    hf.check(got == ["ha", "qa", "xa"], "--state waiting: %r" % got)
    got = dry("hold", "--state", "queued")
    hf.check(got == ["ha", "qa", "xa"], "--state queued while waiting "
             "(released and requeued ones start afresh): %r" % got)
    got = dry("release", "--state", "held")
    hf.check(got == ["da", "db"], "--state held: %r" % got)
    hf.note("waiting selected ok")

    # ---- bad usage
    for args, want in (
            (("hold", "--state", "bogus"), "queued, deferred, waiting"),
            (("hold", "--frm", "x"), "allowed: "),
            (("delete", "--older-than", "soon"), "duration"),
            (("delete", "--from"), "needs a value"),
            (("release", sent["da"], "--state", "held"), "not both"),
            (("hold", "--dry-run"), "selector"),
            (("queue", "--dry-run"), "allowed: --json")):
        r = d.ctl(*args)
        hf.check(r.rc == 2 and want in r.err and "usage:" in r.err,
                 "%r: want exit 2 and %r" % (r, want))
    hf.check(sent["da"] in os.listdir(os.path.join(d.spool, "hold")),
             "bad usage changed the spool")
    hf.note("bad selectors are bad usage")


hf.run(main)
