#!/usr/bin/python3
"""holdfastctl trace on ADDR|all [--for DURATION] / trace off.

With `trace on 127.0.0.2` a session from 127.0.0.2 has its protocol
(commands, replies, states) logged at info as `sess=... trace ...`, while
a session from 127.0.0.1 at the same time has none; the message's body
(a token only the DATA content carries) appears in no log line.  status
shows the trace and its end.  `trace off` stops it; `trace on all --for
2s` traces every session and ends by itself ("trace off
reason=expired").  Bad arguments are bad usage (exit 2).
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

SECRET = "bodytoken-4f1c9e"


def session(d, source, token):
    c = d.connect(source=source)
    c.ehlo("%s.client.test" % token)
    c.cmd("MAIL FROM:<%s@client.test>" % token, expect=250)
    c.cmd("RCPT TO:<rcpt@example.test>", expect=250)
    r = c.data(("Subject: %s\r\n\r\n%s\r\n.\r\n" % (token, SECRET))
               .encode())
    c.quit()
    return r.queued_id()


def traced(d, since):
    return [l for l in d.log_text(since).splitlines()
            if re.search(r" info sess=[0-9a-f]{16} trace ", l)]


def main(env):
    sink = env.sink().start()
    d = env.daemon(primary_port=sink.port).start()
    mark = d.mark()
    session(d, "127.0.0.2", "before")
    hf.check(not traced(d, mark), "trace lines before any trace on")

    mark = d.mark()
    d.ctl("trace", "on", "127.0.0.2", "--for", "1h").ok()
    st = d.ctl("status", "--json").ok().json()
    hf.check(st["trace"] == "127.0.0.2" and st["trace_until"] > time.time(),
             "status: %r" % st)
    session(d, "127.0.0.1", "other")
    session(d, "127.0.0.2", "watched")
    lines = traced(d, mark)
    text = "\n".join(lines)
    hf.check(re.search(r'trace cmd="EHLO watched\.client\.test"', text) and
             re.search(r'trace cmd="MAIL FROM:<watched@client\.test>"',
                       text) and
             re.search(r'trace reply="354 ', text) and
             re.search(r"trace state ", text),
             "trace of 127.0.0.2 lacks its protocol:\n%s" % text)
    hf.check("other" not in text, "127.0.0.1 traced too:\n%s" % text)
    hf.check(SECRET not in d.log_text(), "the body reached the log")
    hf.check(d.grep(r"ctl trace on addr=127\.0\.0\.2 for=3600s uid=%d"
                    % os.geteuid(), since=mark), "trace on not logged")
    hf.note("trace on ADDR: only that peer, never the body")

    mark = d.mark()
    d.ctl("trace", "off").ok()
    session(d, "127.0.0.2", "off")
    hf.check(not traced(d, mark), "trace lines after trace off")
    st = d.ctl("status", "--json").ok().json()
    hf.check(st["trace"] == "off", "status after off: %r" % st)

    mark = d.mark()
    d.ctl("trace", "on", "all", "--for", "2s").ok()
    session(d, "127.0.0.1", "all1")
    hf.check(any("all1" in l for l in traced(d, mark)), "trace on all "
             "missed a session")
    time.sleep(hf.scaled(2.5))
    mark2 = d.mark()
    session(d, "127.0.0.1", "late")
    hf.check(not traced(d, mark2), "trace lines after its end")
    hf.check(d.grep(r"trace off reason=expired", since=mark),
             "the end of the trace not logged")
    hf.note("trace on all ends by itself")

    for args in (("trace",), ("trace", "on"), ("trace", "on", "bogus"),
                 ("trace", "maybe"), ("trace", "on", "all", "--for", "x"),
                 ("trace", "off", "now")):
        r = d.ctl(*args)
        hf.check(r.rc == 2, "%r: want exit 2" % r)


hf.run(main)
