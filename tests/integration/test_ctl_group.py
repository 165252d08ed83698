#!/usr/bin/python3
"""The control socket's group and its input limit (skipped unless root:
the test makes throw-away system users and a group, and removes them).

- [control] group = G, socket in a 0755 directory: the socket file is
  0660 and group G; a user whose primary group is nogroup and whose
  SUPPLEMENTARY group is G runs holdfastctl status (via setpriv
  --init-groups) and gets an answer; a user outside G is refused.
- A client that sends a megabyte without a newline gets "error request
  too long" and is cut off.
- A client that asks for a large answer (show --body of a 2 MB message),
  never reads it and keeps sending 64 MB: the daemon discards what comes
  after the request, and its RSS does not grow by what was sent."""
import os
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

MB = 1024 * 1024


class Accounts:
    """Throw-away system group and users, removed at cleanup."""

    def __init__(self):
        tag = "%d" % os.getpid()
        self.group = "hfctl" + tag
        self.inside = "hfin" + tag
        self.outside = "hfout" + tag
        self.users = []
        self.made_group = False

    def create(self):
        run(["groupadd", "-r", self.group])
        self.made_group = True
        for name, extra in ((self.inside, ["-G", self.group]),
                            (self.outside, [])):
            run(["useradd", "-r", "-M", "-N", "-g", "nogroup", "-d",
                 "/nonexistent", "-s", "/usr/sbin/nologin"] + extra + [name])
            self.users.append(name)

    def cleanup(self):
        for name in self.users:
            subprocess.run(["userdel", name], capture_output=True)
        if self.made_group:
            subprocess.run(["groupdel", self.group], capture_output=True)


def run(argv):
    p = subprocess.run(argv, capture_output=True, timeout=60)
    hf.check(p.returncode == 0, "%s -> %d %s" % (" ".join(argv),
                                                 p.returncode, p.stderr))


def ctl_as(d, user, *args):
    argv = ["setpriv", "--reuid", user, "--regid", "nogroup",
            "--init-groups", hf.ctl_bin(), "-c", d.conf] + list(args)
    p = subprocess.run(argv, capture_output=True, timeout=30,
                       env=d._env({}), stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode(errors="replace"), \
        p.stderr.decode(errors="replace")


def rss_kb(d):
    return int(d.status()["VmRSS"].split()[0])


def main(env):
    if os.geteuid() != 0:
        raise hf.Skip("not root: needs useradd/groupadd and setpriv")
    acc = env.own(Accounts())
    acc.create()
    import grp
    gid = grp.getgrnam(acc.group).gr_gid

    rundir = env.path("run")
    os.mkdir(rundir)
    os.chmod(rundir, 0o755)
    sock_path = os.path.join(rundir, "control.sock")
    extra = {}
    if hf.sanitized_build():
        # freed buffers must be reused, not parked in ASan's quarantine,
        # for RSS to say anything
        extra = {"ASAN_OPTIONS": d_env_asan() + ":quarantine_size_mb=1"}
    sink = env.sink()                   # down: the big message stays
    d = env.daemon(primary_port=sink.port,
                   control={"socket": sock_path, "group": acc.group})
    d.start(env=extra)
    os.chmod(d.conf, 0o644)             # holdfastctl reads it as the user

    st = os.lstat(sock_path)
    hf.check(stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) ==
             0o660 and st.st_gid == gid, "socket %o gid %d, wanted 0660 "
             "gid %d" % (stat.S_IMODE(st.st_mode), st.st_gid, gid))

    rc, out, err = ctl_as(d, acc.inside, "status")
    hf.check(rc == 0 and "queue" in out, "member via a supplementary "
             "group: rc=%d out=%r err=%r; log:\n%s" % (rc, out, err,
                                                      d.tail()))
    hf.note("supplementary member %s: status ok" % acc.inside)
    rc, out, err = ctl_as(d, acc.outside, "status")
    hf.check(rc != 0, "outsider %s got an answer: %r" % (acc.outside, out))
    hf.note("outsider refused: %s" % err.strip())

    # a megabyte without a newline: answered with an error, cut off
    before = rss_kb(d)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sock_path)
    cut = False
    try:
        s.sendall(b"x" * MB)
        s.sendall(b"x" * MB)        # beyond the first MB: must fail
    except (BrokenPipeError, ConnectionResetError):
        cut = True
    reply = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            reply += b
    except ConnectionResetError:
        pass
    s.close()
    hf.check(cut, "2 MB without a newline were all read")
    hf.check(reply in (b"", b"error request too long\n.\n"),
             "reply %r" % reply[:200])
    hf.note("1 MB line: cut off, reply %r" % reply)

    # a large answer never read, and 64 MB more sent after the request
    qid = hf.send_ok(d.port, "big", content=hf.make_message(
        "big", body=(b"y" * 998 + b"\r\n") * 2048)).qid
    time.sleep(0.5)
    base = rss_kb(d)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(sock_path)
    s.sendall(("show %s --body\n" % qid).encode())
    sent = 0
    chunk = b"z" * MB
    try:
        while sent < 64 * MB:
            s.sendall(chunk)
            sent += MB
    except (socket.timeout, BrokenPipeError, ConnectionResetError):
        pass
    time.sleep(0.5)
    grown = rss_kb(d) - base
    s.close()
    hf.note("sent %d MB after the request unread answer; RSS %d kB -> "
            "grew %d kB (first check %d kB)" % (sent // MB, base, grown,
                                                before))
    hf.check(grown < 16 * 1024, "RSS grew by %d kB after %d MB were sent"
             % (grown, sent // MB))
    # still serving
    rc, out, err = ctl_as(d, acc.inside, "status")
    hf.check(rc == 0, "status after the floods: %r %r" % (out, err))
    d.stop()


def d_env_asan():
    return os.environ.get("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")


hf.run(main)
