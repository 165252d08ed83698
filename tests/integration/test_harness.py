#!/usr/bin/python3
"""Self-check of the harness against real peers, without holdfast:
smtp-sink + tap with swaks and smtplib, a Postfix sender relaying to a
Postfix primary relaying to the sink, the primary's access map (450/550),
the fault shim on a small C program (plain and ASan), and the tmpfs mount
test_disk_full needs (as root).  If this fails, the other scenarios'
verdicts cannot be trusted."""
import os
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402


def main(env):
    sink = env.sink().start()
    # swaks -> sink
    p = subprocess.run(["swaks", "-s", "127.0.0.1", "-p", str(sink.port),
                        "-f", "a@client.test", "-t", "u@example.test",
                        "--body", "swaks body\n.dot line"],
                       capture_output=True, text=True, timeout=60)
    hf.check(p.returncode == 0, "swaks to sink failed: %s" % p.stdout[-500:])
    # smtplib -> sink, exact content
    content = hf.make_message("self1", body=b"x" * 3000 + b"\r\n..two\r\n"
                              + b".\r\nend\r\n")
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=30) as s:
        s.sendmail("b@client.test", ["v@example.test", "w@example.org"],
                   content)
    msgs = sink.wait_count(2, 10)
    m = [x for x in msgs if hf.token_of(x.content) == "self1"]
    hf.check(len(m) == 1, "smtplib message not at sink: %r" % msgs)
    hf.check(m[0].content == content, "sink dump content mismatch:\n%r\n%r"
             % (m[0].content[:200], content[:200]))
    hf.check(m[0].rcpts == ["v@example.test", "w@example.org"],
             "rcpts %r" % m[0].rcpts)
    txs = sink.delivered_transactions()
    hf.check(len(txs) == 2, "tap saw %r" % txs)
    t = [x for x in txs if x.content and hf.token_of(x.content) == "self1"]
    hf.check(len(t) == 1 and t[0].content == content,
             "tap content mismatch %r" % t)
    hf.check(not t[0].line_end_problems(), "tap: %s" % t[0].line_end_problems())
    hf.note("sink+tap ok")

    # stop/start: port refuses while down
    sink.stop()
    hf.check(not hf.port_open(sink.port), "sink port still open")
    sink.start()
    hf.note("sink restart ok")

    # Postfix primary (access map) -> sink; Postfix sender -> primary
    primary = env.postfix(name="primary", role="primary",
                          relay_port=sink.port,
                          access={"tempfail@example.test":
                                  "450 4.7.1 harness tempfail",
                                  "reject@example.test":
                                  "550 5.7.1 harness reject"}).start()
    sender = env.postfix(name="sender", role="sender",
                         relay_port=primary.port).start()
    hf.note("postfix instances up: sender %d primary %d"
            % (sender.port, primary.port))
    with smtplib.SMTP("127.0.0.1", primary.port, timeout=30) as s:
        s.ehlo("c.test")
        code, _ = s.rcpt("tempfail@example.test") if s.mail("a@c.test") \
            else (0, b"")
        hf.check(code == 450, "primary tempfail -> %s" % code)
        s.rset()
        s.mail("a@c.test")
        code, _ = s.rcpt("reject@example.test")
        hf.check(code == 550, "primary reject -> %s" % code)
    for i in range(5):
        with smtplib.SMTP("127.0.0.1", sender.port, timeout=30) as s:
            s.sendmail("a@client.test", ["pf%d@example.test" % i],
                       hf.make_message("pf%d" % i))
    msgs = sink.wait_count(7, 60)
    got = sorted(hf.token_of(m.content) for m in msgs
                 if hf.token_of(m.content or b"") and
                 hf.token_of(m.content).startswith("pf"))
    hf.check(got == ["pf%d" % i for i in range(5)], "postfix chain got %r"
             % got)
    for m in msgs:
        if (hf.token_of(m.content) or "").startswith("pf"):
            rest = hf.strip_top_received(m.content, 2)
            orig = hf.make_message(hf.token_of(m.content))
            hf.check(rest == orig, "postfix chain altered content: %r vs %r"
                     % (rest[:300], orig[:300]))
    hf.wait_until(sender.queue_empty, 30, "sender queue empty")
    hf.wait_until(primary.queue_empty, 30, "primary queue empty")
    primary.set_access({})
    hf.note("postfix chain ok")

    # fault shim on a tiny program (plain and ASan)
    so = env.path("faultshim.so")
    subprocess.run(["cc", "-std=c17", "-D_GNU_SOURCE", "-O2", "-Wall",
                    "-Wextra", "-Werror", "-shared", "-fPIC", "-o", so,
                    os.path.join(hf.LIB_DIR, "faultshim.c"), "-ldl"],
                   check=True, timeout=120)
    src = r'''#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(int c, char **v) { int fd = open(v[1], O_WRONLY|O_CREAT, 0644);
 (void)c; int a = write(fd, "x", 1) < 0; int b = fsync(fd) < 0;
 printf("%d %d\n", a, b); return 0; }
'''
    for extra in ([], ["-fsanitize=address,undefined"]):
        prog = hf.compile_c(env, src, "t%d" % len(extra), extra)
        trig = env.path("trigger")
        e = dict(os.environ, HOLDFAST_FAULT="fsync:EIO,write:ENOSPC",
                 HOLDFAST_FAULT_FILE=trig)
        e.update(hf.preload_env([so], prog))
        out = subprocess.run([prog, env.path("f")], env=e,
                             capture_output=True, text=True, timeout=30)
        hf.check(out.stdout == "0 0\n", "unarmed shim: %r %r"
                 % (out.stdout, out.stderr))
        open(trig, "w").close()
        out = subprocess.run([prog, env.path("f")], env=e,
                             capture_output=True, text=True, timeout=30)
        hf.check(out.stdout == "1 1\n", "armed shim: %r %r"
                 % (out.stdout, out.stderr))
        # delay mode: the call sleeps, then succeeds
        e["HOLDFAST_FAULT"] = "fsync:DELAY400"
        t0 = time.monotonic()
        out = subprocess.run([prog, env.path("f")], env=e,
                             capture_output=True, text=True, timeout=30)
        took = time.monotonic() - t0
        hf.check(out.stdout == "0 0\n" and took >= 0.4 and
                 "faultshim: fsync fd=" in out.stderr,
                 "delaying shim: %r %r after %.2fs"
                 % (out.stdout, out.stderr, took))
        os.unlink(trig)
    hf.note("fault shim ok (plain + ASan)")

    if os.geteuid() == 0:
        tm = env.own(hf.Mount(env.path("tmpfs"), "2m"))
        hf.check(tm.mount(), "mount -t tmpfs failed as root")
        hf.note("tmpfs mount ok")


hf.run(main)
