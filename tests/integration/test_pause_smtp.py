#!/usr/bin/python3
"""holdfastctl pause-smtp / resume-smtp: stop accepting without stopping.

A client is in the middle of a transaction (EHLO, MAIL, RCPT) when the
operator runs `pause-smtp --for 1h`: a new connection then gets
`421 4.3.2` at once, while the running session finishes its DATA with a
250 and the message is queued.  status shows smtp_paused on with its end,
/metrics holdfast_smtp_paused 1.  The pause survives a restart (kept in
the spool as smtp-pause).  resume-smtp accepts again (220, status off,
metric 0).  `pause-smtp --for 2s` ends by itself: after it, 220 again
and "smtp resumed reason=expired" in the log.  Bad arguments are bad
usage (exit 2).
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402


def greeting(d):
    c = hf.SMTPClient(d.port, greet=False, timeout=10)
    r = c.reply(allow_eof=True)
    c.sock.close()
    return r


def main(env):
    sink = env.sink().start()
    mport = hf.free_port()
    d = env.daemon(primary_port=sink.port,
                   metrics={"listen": "127.0.0.1:%d" % mport}).start()
    st = d.ctl("status", "--json").ok().json()
    hf.check(st["smtp_paused"] == "off" and st["smtp_paused_until"] == 0,
             "status before: %r" % st)
    hf.check(d.scrape().get("holdfast_smtp_paused") == 0, "metric before")

    # a session in the middle of a transaction
    c = d.connect()
    c.ehlo()
    c.cmd("MAIL FROM:<early@client.test>", expect=250)
    c.cmd("RCPT TO:<rcpt@example.test>", expect=250)

    mark = d.mark()
    t0 = int(time.time())
    d.ctl("pause-smtp", "--for", "1h").ok()
    d.wait_log(r"ctl pause-smtp for=3600s uid=%d" % os.geteuid(),
               since=mark)
    r = greeting(d)
    hf.check(r is not None and r.code == 421 and
             r.lines[0].startswith(b"421 4.3.2 "),
             "new session while paused: %r" % r)
    # the running one finishes
    r = c.data(b"Subject: early\r\n\r\ntoken early\r\n.\r\n")
    qid = r.queued_id()
    hf.check(qid is not None, "running session's DATA: %r" % r)
    c.quit()
    hf.wait_until(lambda: d.grep(r"msg=%s delivered" % qid), 15,
                  "the running session's message delivered")
    st = d.ctl("status", "--json").ok().json()
    hf.check(st["smtp_paused"] == "on" and
             t0 + 3600 <= st["smtp_paused_until"] <= t0 + 3605,
             "status while paused: %r" % st)
    txt = d.ctl("status").ok().out
    hf.check("smtp_paused: on" in txt and ("(in 59m" in txt or
                                           "(in 1h0m" in txt),
             "status text while paused:\n%s" % txt)
    hf.check(d.scrape().get("holdfast_smtp_paused") == 1, "metric paused")
    hf.note("paused: new session 421 4.3.2, running one finished")

    # it survives a restart
    d.stop()
    d.start()
    r = greeting(d)
    hf.check(r is not None and r.code == 421, "after restart: %r" % r)
    hf.check(d.grep(r"smtp paused \(restored\)"), "restore not logged")
    mark = d.mark()
    d.ctl("resume-smtp").ok()
    d.wait_log(r"smtp resumed reason=operator", since=mark)
    r = greeting(d)
    hf.check(r is not None and r.code == 220, "after resume: %r" % r)
    st = d.ctl("status", "--json").ok().json()
    hf.check(st["smtp_paused"] == "off", "status after resume: %r" % st)
    hf.check(d.scrape().get("holdfast_smtp_paused") == 0, "metric resumed")
    hf.send_ok(d.port, "after")
    hf.note("kept across a restart; resume-smtp ok")

    # self-ending
    mark = d.mark()
    d.ctl("pause-smtp", "--for", "2s").ok()
    r = greeting(d)
    hf.check(r is not None and r.code == 421, "short pause: %r" % r)
    time.sleep(hf.scaled(2.5))
    r = greeting(d)
    hf.check(r is not None and r.code == 220, "after its end: %r" % r)
    d.wait_log(r"smtp resumed reason=expired", since=mark)
    hf.check(not os.path.exists(os.path.join(d.spool, "smtp-pause")),
             "smtp-pause file left after the end")
    hf.note("a pause ends by itself")

    for args in (("pause-smtp", "--for", "xyz"), ("pause-smtp", "now"),
                 ("pause-smtp", "--until", "2h"), ("resume-smtp", "x")):
        r = d.ctl(*args)
        hf.check(r.rc == 2, "%r: want exit 2" % r)


hf.run(main)
