#!/usr/bin/python3
"""holdfastctl's bulk commands, and [control] socket and group.

[control] socket is a path outside the spool: the daemon listens there
(not at the default spool/control.sock), mode 0660; holdfastctl -c finds
it.  Primary down (probe_interval 30s), four messages queued:
- `hold all` moves all four to hold/ (logged 'held' per ID), `release all`
  brings them back;
- `delete ID ID` removes both (logged 'removed reason=operator', gone from
  queue/ and the listing); `delete ID UNKNOWN` deletes ID and exits 1
  naming UNKNOWN;
- the primary starts; `flush` without an ID probes it at once (long before
  the 30s probe interval) and the last message is delivered.
Run as root, with [control] group = mail: the socket is group mail; a
client whose primary group is mail is served, so is one with mail only as
a supplementary group (how `adduser alice holdfast` works); a client in
neither is refused."""
import grp
import os
import stat
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

GROUP = "mail"
STRANGER = 2            # uid/gid of bin: neither the daemon nor root


def ctl_as(d, uid, gid, groups, *args):
    """holdfastctl ARGS run with the given credentials (setpriv)."""
    pre = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid]
    pre += ["--groups=" + ",".join(str(g) for g in groups)] if groups \
        else ["--clear-groups"]
    import subprocess
    p = subprocess.run(pre + [hf.ctl_bin(), "-c", d.conf] + list(args),
                       stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=30, env=d._env({}))
    return hf.CtlResult(list(args), p.returncode,
                        p.stdout.decode("utf-8", "replace"),
                        p.stderr.decode("utf-8", "replace"))


def main(env):
    root = os.geteuid() == 0
    sockdir = env.path("run")
    os.makedirs(sockdir)
    os.chmod(sockdir, 0o755)
    sock = os.path.join(sockdir, "hf.sock")
    control = {"socket": sock}
    if root:
        control["group"] = GROUP
    sink = env.sink()                       # not started: primary down
    d = env.daemon(primary_port=sink.port, control=control,
                   primary={"probe_interval": "30s"})
    d.start()
    hf.check(d.control_socket == sock, "harness: control socket %s"
             % d.control_socket)
    hf.wait_until(lambda: os.path.exists(sock), 10, "socket %s" % sock)
    st = os.stat(sock)
    hf.check(stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) ==
             0o660, "%s: mode %o" % (sock, st.st_mode))
    hf.check(not os.path.exists(os.path.join(d.spool, "control.sock")),
             "a socket at the default path too")
    d.ctl("status").ok()

    sent = [hf.send_ok(d.port, "bulk%d" % i) for i in range(4)]
    ids = [s.qid for s in sent]
    d.wait_log(r"\bprimary down\b", timeout=15)

    # ---- hold all / release all
    mark = d.mark()
    d.ctl("hold", "all").ok()
    for i in ids:
        d.wait_log(r"msg=%s held" % i, since=mark, timeout=5)
    held = sorted(os.listdir(os.path.join(d.spool, "hold")))
    hf.check(held == sorted(ids) and not d.queue_ids(),
             "after hold all: hold/ %r queue/ %r" % (held, d.queue_ids()))
    recs = d.ctl("queue", "--json").ok().json()
    hf.check(sorted(r["state"] for r in recs) == ["held"] * 4,
             "queue after hold all: %r" % recs)
    mark = d.mark()
    d.ctl("release", "all").ok()
    for i in ids:
        d.wait_log(r"msg=%s released" % i, since=mark, timeout=5)
    hf.check(sorted(d.queue_ids()) == sorted(ids) and
             not os.listdir(os.path.join(d.spool, "hold")),
             "after release all: queue/ %r" % d.queue_ids())

    # ---- delete several IDs
    mark = d.mark()
    d.ctl("delete", ids[0], ids[1]).ok()
    for i in ids[:2]:
        d.wait_log(r"msg=%s removed reason=operator" % i, since=mark,
                   timeout=5)
    hf.check(sorted(d.queue_ids()) == sorted(ids[2:]), "after delete: %r"
             % d.queue_ids())
    listed = [r["id"] for r in d.ctl("queue", "--json").ok().json()]
    hf.check(sorted(listed) == sorted(ids[2:]), "listed %r" % listed)
    # an unknown ID among known ones: the known ones go, exit 1 names it
    r = d.ctl("delete", ids[2], "0123456789abcdef")
    hf.check(r.rc == 1 and "0123456789abcdef" in r.err,
             "delete with an unknown ID: %r (want exit 1 naming it)" % r)
    d.wait_log(r"msg=%s removed reason=operator" % ids[2], since=mark,
               timeout=5)

    # ---- [control] group
    if root:
        gid = grp.getgrnam(GROUP).gr_gid
        hf.check(os.stat(sock).st_gid == gid, "socket group %d, want %d"
                 % (os.stat(sock).st_gid, gid))
        r = ctl_as(d, STRANGER, gid, [], "status")
        hf.check(r.rc == 0, "primary group %s refused: %r" % (GROUP, r))
        r = ctl_as(d, STRANGER, STRANGER, [STRANGER, gid], "status")
        hf.check(r.rc == 0, "supplementary group %s refused: %r"
                 % (GROUP, r))
        r = ctl_as(d, STRANGER, STRANGER, [], "status")
        hf.check(r.rc == 1, "a client outside group %s served: %r"
                 % (GROUP, r))
        hf.note("[control] group: member served, stranger refused")
    else:
        hf.note("not root: [control] group not checked")

    # ---- flush without an ID probes the primary now
    sink.start()
    mark = d.mark()
    t0 = time.monotonic()
    d.ctl("flush").ok()
    d.wait_log(r"queue flush messages=", since=mark, timeout=5)
    hf.verify_deliveries(sink, sent[3:], timeout=10)
    took = time.monotonic() - t0
    hf.note("flush: delivered %.1fs after" % took)
    hf.check(took < 15, "flush took %.1fs: waited for the probe timer"
             % took)
    d.wait_log(r"primary up", since=mark, timeout=5)
    hf.check(len(sink.messages()) == 1, "deleted mail delivered")
    if not root:
        raise hf.Skip("not root: [control] group not checked (the rest ran)")


hf.run(main)
