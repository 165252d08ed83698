#!/usr/bin/python3
"""holdfast -P (like postconf -n) and the config file in holdfastctl status.

A config file with a few keys set, one of them to its default value:
`holdfast -c FILE -P` prints exactly the keys whose value differs from the
default, under their sections, normalised (120h -> 5d, 120s -> 2m,
domains lowercased, list items joined); its output loads back (-n) and
prints the same.  `-P -a` prints every key `holdfast -k` knows.

A running daemon's `holdfastctl status` names its config file (absolute)
and the file's mtime, and says config_changed: no; after the file is
edited on disk (the daemon still runs with the old one) it says yes, and
after touching it without a change, touched.
"""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

CONF = """# a few keys set
[server]
hostname = mx2.example.test
listen = 127.0.0.1:2525
domains = example.test, Example.ORG.
max_recipients = 20
timeout = 300s          # the default, written out: not shown by -P
[spool]
dir = %(spool)s
queue_lifetime = 120h
[primary]
host = 127.0.0.1
port = 2526
retry_min = 120s
[screen]
dnsbl = zen.example.test*2, bl.example.test=127.0.0.[2..11]
"""

WANT = """[server]
hostname = mx2.example.test
listen = 127.0.0.1:2525
domains = example.test, example.org
max_recipients = 20

[spool]
dir = %(spool)s
queue_lifetime = 5d

[screen]
dnsbl = zen.example.test*2, bl.example.test=127.0.0.[2..11]

[primary]
host = 127.0.0.1
port = 2526
retry_min = 2m
"""


def holdfast(*args):
    p = subprocess.run([hf.holdfast_bin()] + list(args), capture_output=True,
                       text=True, timeout=20, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def main(env):
    spool = env.path("p-spool")
    conf = env.path("p.conf")
    with open(conf, "w") as f:
        f.write(CONF % {"spool": spool})
    rc, out, err = holdfast("-c", conf, "-P")
    hf.check(rc == 0 and out == WANT % {"spool": spool},
             "holdfast -P (rc=%d %s):\n%s" % (rc, err, out))
    again = env.path("again.conf")
    with open(again, "w") as f:
        f.write(out)
    rc, out2, err = holdfast("-c", again, "-n")
    hf.check(rc == 0, "-P output does not load: %s" % err)
    rc, out2, err = holdfast("-c", again, "-P")
    hf.check(out2 == out, "-P of -P's output differs:\n%s" % out2)
    rc, out, err = holdfast("-c", conf, "-P", "-a")
    keys = [l.split()[0] for l in holdfast("-k")[1].splitlines()
            if re.match(r"^[a-z_]+ +=", l)]
    got = [l.split()[0] for l in out.splitlines() if " =" in l]
    hf.check(rc == 0 and got == keys, "-P -a keys %r, want %r" % (got, keys))
    hf.check("max_sessions = 500" in out and "timeout = 5m" in out,
             "-P -a lacks the defaults:\n%s" % out)
    rc, out, err = holdfast("-c", conf, "-a")
    hf.check(rc == 2, "-a without -P: rc=%d" % rc)
    hf.note("holdfast -P and -P -a ok")

    d = env.daemon(server={"max_recipients": "20"}).start()
    st = d.ctl("status", "--json").ok().json()
    hf.check(st["config_file"] == os.path.realpath(d.conf) and
             st["config_mtime"] == int(os.stat(d.conf).st_mtime) and
             st["config_changed"] == "no", "status: %r" % st)
    r = d.ctl("status").ok()
    hf.check(re.search(r"^config_mtime: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "
                       r"\(\d+s ago\)$", r.out, re.M),
             "status text config_mtime:\n%s" % r.out)
    t = os.stat(d.conf).st_mtime
    os.utime(d.conf, (t + 5, t + 5))
    st = d.ctl("status", "--json").ok().json()
    hf.check(st["config_changed"] == "touched", "after touch: %r"
             % st["config_changed"])
    with open(d.conf, "a") as f:
        f.write("# edited\n")
    st = d.ctl("status", "--json").ok().json()
    hf.check(st["config_changed"] == "yes", "after an edit: %r"
             % st["config_changed"])
    hf.note("status config_file, config_mtime, config_changed ok")


hf.run(main)
