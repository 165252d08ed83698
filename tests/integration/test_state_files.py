#!/usr/bin/python3
"""The spool's state files (hold-mode, primary-ehlo) planted as a symlink
or a FIFO, as the holdfast user could: the daemon neither follows the
symlink (a valid file elsewhere is not read) nor blocks on the FIFO.  It
starts, logs a warning naming the file and ignores it: hold-mode stays
off, the primary's limits are not restored, mail is accepted."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

# valid contents, in a regular file the symlink points to
GOOD = {"hold-mode": "%d %d\n", "primary-ehlo":
        "size=1234 smtputf8=yes 8bitmime=yes\n"}
RESTORED = {"hold-mode": r"hold-mode on \(restored\)",
            "primary-ehlo": r"primary offers \(restored\)"}


def plant(d, name, kind):
    path = os.path.join(d.spool, name)
    if os.path.lexists(path):
        os.unlink(path)
    if kind == "fifo":
        os.mkfifo(path, 0o666)
        return
    target = os.path.join(d.spool, "elsewhere-" + name)
    text = GOOD[name]
    if name == "hold-mode":
        now = int(time.time())
        text = text % (now, now + 3600)
    with open(target, "w") as f:
        f.write(text)
    os.chmod(target, 0o644)
    os.symlink(target, path)


def main(env):
    sink = env.sink()
    sink.start()
    d = env.daemon(primary_port=sink.port)
    d.start()
    d.stop()
    for n, (hold, ehlo) in enumerate((("fifo", "symlink"),
                                      ("symlink", "fifo"))):
        plant(d, "hold-mode", hold)
        plant(d, "primary-ehlo", ehlo)
        mark = d.mark()
        d.start()
        for name in ("hold-mode", "primary-ehlo"):
            hf.check(d.grep(r"warn.*spool state file ignored .*file=%s\b"
                            % name, since=mark),
                     "start %d: no warning for %s; log:\n%s"
                     % (n, name, d.tail()))
            hf.check(not d.grep(RESTORED[name], since=mark),
                     "start %d: %s was read through a %s" % (
                         n, name, hold if name == "hold-mode" else ehlo))
        st = d.ctl("status", "--json").ok().json()
        hf.check(st["hold_mode"] == "off", "start %d: hold_mode %r"
                 % (n, st["hold_mode"]))
        s = hf.send_ok(d.port, "state%d" % n)
        hf.verify_deliveries(sink, [s], timeout=15, settle=0.5,
                             allow_extra=True)
        d.stop()
        hf.note("start %d: hold-mode %s, primary-ehlo %s: warned, ignored"
                % (n, hold, ehlo))


hf.run(main)
