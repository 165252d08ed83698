#!/usr/bin/python3
"""holdfastctl with a message of 300 recipients (max_recipients = 400).

A control record holds at most 256 key=value pairs, so a record carries
at most 100 recipients and then rcpt_more=N.  With the primary down:
queue (text and --json) lists the message with its first 100 recipients
and says how many more there are; show (text and --json) lists all 300.
The primary then refuses every recipient: dead lists the dead letter the
same way, show lists all 300 dead recipients.  The same holds for the
read-only view of a stopped daemon's spool.

Each dead recipient comes with the primary's reply (rcpt_reply=<ADDR>
REPLY, in text under 'dead: refused'), escaped: a control byte planted in
a stored reply is shown as \\x1b in text and \\u001b in JSON."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402
import pyprimary  # noqa: E402

NRCPT = 300
SHOWN = 100     # CTL_REC_RCPTS


def json_rcpts(lst):
    """Every recipient in a show --json answer, in order."""
    return [r for rec in lst for r in rec.get("rcpt", [])]


def check_lists(d, s, state, cmd, where):
    want = ["%s:%s" % (state, a) for a in s.rcpts]
    r = d.ctl(cmd)
    hf.check(r.rc == 0, "%s %s: %r" % (where, cmd, r))
    hf.check(s.qid in r.out, "%s %s text lacks %s:\n%s"
             % (where, cmd, s.qid, r.out[:2000]))
    for a in want[:SHOWN]:
        hf.check(a in r.out.split(), "%s %s text lacks %s" % (where, cmd, a))
    hf.check(want[SHOWN] not in r.out.split(), "%s %s text lists more "
             "than %d recipients" % (where, cmd, SHOWN))
    hf.check("(and %d more: holdfastctl show ID lists them all)"
             % (NRCPT - SHOWN) in r.out, "%s %s text does not say how many "
             "more recipients there are:\n%s" % (where, cmd, r.out[-2000:]))
    r = d.ctl(cmd, "--json")
    hf.check(r.rc == 0, "%s %s --json: %r" % (where, cmd, r))
    lst = r.json()
    hf.check(len(lst) == 1 and lst[0]["id"] == s.qid,
             "%s %s --json: %r" % (where, cmd, [x.get("id") for x in lst]))
    hf.check(lst[0]["rcpt"] == want[:SHOWN] and
             lst[0].get("rcpt_more") == NRCPT - SHOWN,
             "%s %s --json: %d rcpt, rcpt_more %r" % (
                 where, cmd, len(lst[0]["rcpt"]), lst[0].get("rcpt_more")))

    r = d.ctl("show", s.qid)
    hf.check(r.rc == 0, "%s show: %r" % (where, r))
    got = [l.split(": ", 1)[1] for l in r.out.splitlines()
           if l.startswith("rcpt: ")]
    hf.check(got == want, "%s show text: %d recipients, want %d"
             % (where, len(got), NRCPT))
    head, _, rest = r.out.partition("\n\n")
    hf.check(head.startswith("id: %s\n" % s.qid) and
             rest.startswith("Received: "), "%s show text: the blank line "
             "does not part the envelope from the header:\n%s"
             % (where, r.out[-3000:]))
    r = d.ctl("show", s.qid, "--json")
    hf.check(r.rc == 0, "%s show --json: %r" % (where, r))
    lst = r.json()
    hf.check(lst[0]["id"] == s.qid and json_rcpts(lst) == want,
             "%s show --json: %d recipients, want %d"
             % (where, len(json_rcpts(lst)), NRCPT))
    hf.check(any("Subject: test many" in h for rec in lst
                 for h in rec.get("header", [])),
             "%s show --json lacks the header" % where)


def reply(a):
    return "<%s> 550 5.1.1 <%s>: no such user" % (a, a)


def check_replies(d, s, where, planted=None):
    """Every dead recipient's reply in dead (first SHOWN) and show (all);
    planted: (address, reply) with an ESC byte in the stored reply."""
    want = {a: reply(a) for a in s.rcpts}
    if planted:
        want[planted[0]] = planted[1]
    r = d.ctl("dead")
    hf.check(r.rc == 0, "%s dead: %r" % (where, r))
    hf.check("\x1b" not in r.out, "%s dead text has a raw ESC" % where)
    for a in s.rcpts[:SHOWN]:
        w = want[a].replace("\x1b", "\\x1b")
        hf.check(re.search(r"^ +%s$" % re.escape(w), r.out, re.M),
                 "%s dead text lacks the reply %r:\n%s"
                 % (where, w, r.out[:3000]))
    hf.check(re.search(r"^\s+dead: refused$", r.out, re.M),
             "%s dead text lacks 'dead: refused'" % where)
    lst = d.ctl("dead", "--json").ok().json()
    hf.check(lst[0].get("rcpt_reply") == [want[a] for a in s.rcpts[:SHOWN]],
             "%s dead --json rcpt_reply %r" % (where,
                                               lst[0].get("rcpt_reply")))
    r = d.ctl("show", s.qid).ok()
    got = [l.split(": ", 1)[1] for l in r.out.splitlines()
           if l.startswith("rcpt_reply: ")]
    hf.check(got == [want[a].replace("\x1b", "\\x1b") for a in s.rcpts],
             "%s show text: %d rcpt_reply lines, want %d: %r"
             % (where, len(got), NRCPT, got[:3]))
    r = d.ctl("show", s.qid, "--json").ok()
    if planted:
        hf.check("\\u001b" in r.out, "%s show --json: the ESC is not "
                 "\\u001b" % where)
    got = [x for rec in r.json() for x in rec.get("rcpt_reply", [])]
    hf.check(got == [want[a] for a in s.rcpts], "%s show --json: %d "
             "rcpt_reply, want %d" % (where, len(got), NRCPT))


def main(env):
    p = env.own(pyprimary.Primary(env))       # not started: primary down
    d = env.daemon(primary_port=p.port, server={"max_recipients": "400"})
    d.start()
    hf.wait_until(lambda: os.path.exists(d.control_socket), 10,
                  "control socket %s" % d.control_socket)
    rcpts = ["r%03d@example.test" % i for i in range(NRCPT)]
    s = hf.send_ok(d.port, "many", rcpts)
    d.wait_log(r"\bprimary down\b", timeout=15)
    check_lists(d, s, "pending", "queue", "running")
    hf.note("queue and show of %d recipients ok" % NRCPT)

    p.rcpt_reply = lambda a: b"550 5.1.1 <" + a.encode() + b">: no such user"
    p.start()
    hf.wait_until(lambda: s.qid in d.dead_ids(), 30, "%s in dead/" % s.qid)
    check_lists(d, s, "dead", "dead", "running")
    hf.note("dead and show of %d dead recipients ok" % NRCPT)
    check_replies(d, s, "running")
    hf.note("the primary's replies ok")

    d.stop()
    check_lists(d, s, "dead", "dead", "stopped")
    # a control byte in a stored reply (the drain keeps only printable
    # ASCII of the primary's reply; the spool is the other source)
    path = os.path.join(d.spool, "dead", s.qid)
    text, body = hf.spool_msg_read(path)
    old = "<r000@example.test>:\\x20no\\x20such"
    hf.check(old in text, "stored reply not as expected:\n%s" % text[:2000])
    hf.spool_msg_write(path, text.replace(old, old + "\\x1b[31m"), body)
    check_replies(d, s, "stopped", planted=(
        s.rcpts[0], reply(s.rcpts[0]).replace("no such",
                                              "no such\x1b[31m")))
    hf.note("the read-only view too")


hf.run(main)
