#!/usr/bin/python3
"""Control bytes in an envelope never reach the primary or a terminal.

  smtp:  MAIL FROM with a control byte (the issue's exact payload with ESC,
         BEL and a bare CR; the same without the inner brackets; ESC, BEL,
         bare CR, DEL one at a time) gets 501 5.1.7, RCPT TO with one gets
         501 5.1.3, over a raw socket and smtplib.  The refusal is logged
         with the path escaped (no raw control byte in the log).  A good
         message sent afterwards in the same session is delivered, and the
         primary (a recording tap) never sees "pwned" or an ESC.
         RCPT with an ORCPT whose addr-type is not an atom (an 8-bit
         byte, a quote, empty) gets 555 5.5.4 and never reaches it either.
  ctl:   an envelope crafted offline in queue/ and dead/ holds ESC, BEL,
         CR, DEL, a C1 control and a byte that is not UTF-8 in its sender,
         recipient, last reply and dead reason.  holdfastctl queue, show
         and dead (text and --json), offline and then through the daemon
         (plus status), print no control byte: text shows \\xNN, JSON is
         valid and decodes to the exact bytes where JSON can say them."""
import glob
import json
import os
import smtplib
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

PAYLOAD = b"MAIL FROM:<x\x1b]0;pwned\x07\rRCPT TO:<victim@ext.example>>"
BAD_MAIL = [
    PAYLOAD,
    b"MAIL FROM:<x\x1b]0;pwned\x07\rRCPT TO:victim@ext.example>",
    b"MAIL FROM:<x\x1b]0;pwned@client.test>",
    b"MAIL FROM:<a\x07b@client.test>",
    b"MAIL FROM:<a\rb@client.test>",
    b"MAIL FROM:<ab@client.test\r>",
    b"MAIL FROM:<a\x7fb@client.test>",
    b"MAIL FROM:<\"a\x1bb\"@client.test>",
]
BAD_RCPT = [
    b"RCPT TO:<u\x1b]0;pwned\x07@example.test>",
    b"RCPT TO:<u\r@example.test>",
]
# ORCPT's addr-type is an atom: anything else would reach the primary
BAD_ORCPT = [
    b"RCPT TO:<o@example.test> ORCPT=rfc\xff822pwned;o+40example.test",
    b"RCPT TO:<o@example.test> ORCPT=rfc822\"pwned;o+40example.test",
    b"RCPT TO:<o@example.test> ORCPT=;pwned",
]


def control_bytes(b):
    return sorted({c for c in b if (c < 0x20 and c != 0x0a) or c == 0x7f})


def part_smtp(env):
    sink = env.sink().start()
    d = env.daemon(primary_port=sink.port).start()
    mark = d.mark()
    c = d.connect()
    c.ehlo("client.test")
    bad = []
    for i, line in enumerate(BAD_MAIL):
        r = c.cmd(line)
        if not (r.code == 501 and r.lines[-1][4:9] == b"5.1.7"):
            bad.append("%r -> %r" % (line, r))
        if i == 3:          # stay below the session's error limit
            c.quit()
            c = d.connect()
            c.ehlo("client.test")
    c.cmd("MAIL FROM:<ok@client.test>", expect=250)
    for line in BAD_RCPT:
        r = c.cmd(line)
        if not (r.code == 501 and r.lines[-1][4:9] == b"5.1.3"):
            bad.append("%r -> %r" % (line, r))
    hf.check(not bad, "not refused with 501: " + "; ".join(bad))
    for line in BAD_ORCPT:
        r = c.cmd(line)
        if not (r.code == 555 and r.lines[-1][4:9] == b"5.5.4"):
            bad.append("%r -> %r" % (line, r))
    hf.check(not bad, "bad ORCPT not refused with 555: " + "; ".join(bad))
    c.cmd("RCPT TO:<good@example.test>", expect=250)
    content = hf.make_message("ctlgood")
    r = c.data(hf.dot_stuff(content), expect=250)
    good = hf.Sent("ctlgood", r.queued_id(), content, ["good@example.test"])
    c.quit()

    with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as s:
        s.ehlo("client.test")
        code, text = s.docmd("MAIL", "FROM:<x\x1b]0;pwned\x07@client.test>")
        hf.check(code == 501 and text.startswith(b"5.1.7"),
                 "smtplib MAIL with ESC/BEL -> %s %r" % (code, text))
        code, text = s.docmd("MAIL", "FROM:<ok@client.test>")
        hf.check(code == 250, "smtplib MAIL after 501 -> %s" % code)
        code, text = s.docmd("RCPT", "TO:<u\x1b[2J@example.test>")
        hf.check(code == 501 and text.startswith(b"5.1.3"),
                 "smtplib RCPT with ESC -> %s %r" % (code, text))
    hf.note("%d MAIL and %d RCPT shapes with control bytes refused with 501"
            % (len(BAD_MAIL) + 1, len(BAD_RCPT) + 1))

    hf.verify_deliveries(sink, [good], timeout=20, settle=1.0)
    for m in sink.messages():
        hf.check("pwned" not in (m.mail_args or ""), "primary got MAIL %r"
                 % m.mail_args)
    wire = b""
    for p in glob.glob(os.path.join(sink.tap_dir, "**"), recursive=True):
        if os.path.isfile(p):
            with open(p, "rb") as f:
                wire += f.read()
    hf.check(b"pwned" not in wire and b"\x1b" not in wire,
             "the primary's wire transcript holds the payload")
    lines = d.grep(r"bad sender addr=127\.0\.0\.1 path=", mark)
    hf.check(len(lines) >= len(BAD_MAIL), "%d 'bad sender' lines for %d "
             "refusals" % (len(lines), len(BAD_MAIL)))
    hf.check(d.grep(r"bad recipient addr=127\.0\.0\.1 path=", mark),
             "no 'bad recipient' line")
    with open(d.log_path, "rb") as f:
        f.seek(mark)
        raw = f.read()
    hf.check(not control_bytes(raw), "raw control bytes %r in the log"
             % control_bytes(raw))
    hf.check(b"\\x1b" in raw, "the log does not show the ESC escaped")
    d.stop()
    sink.stop()


def craft(d, qid):
    """Rewrite qid's envelope with control bytes; copy it into dead/ under
    another id.  Returns the dead id."""
    src = os.path.join(d.spool, "queue", qid)
    st = os.stat(src)
    envt, body = hf.spool_msg_read(src)
    lines = envt.encode("utf-8", "surrogateescape").split(b"\n")
    out = []
    for line in lines:
        if line.startswith(b"sender: "):
            # ESC ] 0 ; pwned BEL CR, then DEL, a C1 CSI, a non-UTF-8 byte
            line = (b"sender: x\\x1b]0;pwned\\x07\\x0d\\x7f\\xc2\\x9b"
                    b"\\xff@evil.example")
        elif line.startswith(b"rcpt: "):
            line = b"rcpt: pending v\\x1b[2Jictim@example.test"
        elif line.startswith(b"last_reply:") or \
                line.startswith(b"dead_reason:"):
            continue
        out.append(line)
    out.insert(-1, b"last_reply: 451 4.3.0 \\x1b[31mred\\x1b[0m")
    text = b"\n".join(out)
    hf.spool_msg_write(src, text, body)
    did = "d" + qid[1:] if qid[0] != "d" else "e" + qid[1:]
    dst = os.path.join(d.spool, "dead", did)
    text = text.replace(b"id: " + qid.encode(), b"id: " + did.encode())
    text = text.replace(b"\nlast_reply:",
                        b"\ndead_reason: 550 \\x1b]0;owned\\x07\nlast_reply:")
    hf.spool_msg_write(dst, text, body)
    os.chown(dst, st.st_uid, st.st_gid)
    return did


def check_output(what, r, want_text):
    hf.check(r.rc == 0, "holdfastctl %s -> rc=%d %s" % (what, r.rc, r.err))
    raw = r.out.encode("utf-8", "surrogateescape")
    bad = control_bytes(raw)
    hf.check(not bad, "holdfastctl %s printed raw control bytes %r:\n%s"
             % (what, bad, r.out[:500]))
    hf.check("\ufffd" not in r.out, "holdfastctl %s printed bytes that "
             "are not UTF-8" % what)
    for w in want_text:
        hf.check(w in r.out, "holdfastctl %s: %r missing from:\n%s"
                 % (what, w, r.out[:800]))


def check_json(what, r):
    check_output(what, r, [])
    try:
        doc = json.loads(r.out)
    except ValueError as e:
        hf.fail("holdfastctl %s: invalid JSON (%s):\n%s" % (what, e,
                                                          r.out[:800]))
    return doc


def ctl_views(d, qid, did, label, online):
    sender_txt = "x\\x1b]0;pwned\\x07\\x0d\\x7f\\xc2\\x9b\\xff@evil.example"
    check_output("queue (%s)" % label, d.ctl("queue"),
                 [sender_txt, "v\\x1b[2Jictim@example.test",
                  "451 4.3.0 \\x1b[31mred\\x1b[0m"])
    check_output("show (%s)" % label, d.ctl("show", qid), [sender_txt])
    check_output("dead (%s)" % label, d.ctl("dead"),
                 ["550 \\x1b]0;owned\\x07"])
    doc = check_json("queue --json (%s)" % label, d.ctl("queue", "--json"))
    rec = [x for x in doc if x.get("id") == qid]
    hf.check(rec, "queue --json lacks %s" % qid)
    hf.check(rec[0].get("sender") ==
             "x\x1b]0;pwned\x07\r\x7f\x9b\\xff@evil.example",
             "queue --json sender %r" % rec[0].get("sender"))
    check_json("show --json (%s)" % label, d.ctl("show", qid, "--json"))
    doc = check_json("dead --json (%s)" % label, d.ctl("dead", "--json"))
    hf.check([x for x in doc if x.get("id") == did], "dead --json lacks %s"
             % did)
    if online:
        check_output("status (online)", d.ctl("status"), [])
        check_json("status --json (online)", d.ctl("status", "--json"))


def part_ctl(env):
    d = env.daemon(name="offline")      # its primary never answers
    d.start()
    sent = hf.send_ok(d.port, "ctlcraft")
    d.stop()
    did = craft(d, sent.qid)
    ctl_views(d, sent.qid, did, "offline", False)
    hf.note("offline: queue, show, dead (text and JSON) escaped")
    d.start()
    ctl_views(d, sent.qid, did, "online", True)
    hf.note("online: queue, show, dead, status (text and JSON) escaped")
    d.stop()


def main(env):
    part_smtp(env)
    part_ctl(env)


hf.run(main)
