#!/usr/bin/python3
"""A root start trusts nothing in the spool that its unprivileged user
could redirect (skipped unless run as root).  The spool belongs to the
user the daemon drops to (nobody), so that user can swap any entry:

- an area (tmp, queue, hold, dead, quarantine) replaced by a symlink to a
  root-owned directory full of files: the start refuses with a message
  naming the area, and the directory keeps its files, owner and mode;
- the lock file or the control socket replaced by a symlink to a
  root-owned file, or the lock file by a hard link to one: refused, the
  file unchanged;
- a spool directory that is group-writable, or that sits below a
  directory the user owns: refused;
- the startup purge of tmp/ runs after the drop: a root-owned directory
  planted in tmp/ survives it, and the daemon still starts;
- a message file (one regular file per message) replaced by a symlink to
  a root-owned message file, or by a hard link to one: the daemon starts,
  quarantines the entry without following it (the root file keeps its
  bytes, owner, mode and its link count is not raised by a copy), and
  never delivers the root file's message; a FIFO there is quarantined
  too, without blocking the start;
- a control socket in a directory below the spool, that directory swapped
  for a symlink to a root-owned directory holding a stale socket: refused,
  the stale socket kept and no socket bound there."""
import socket
import os
import stat
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

AREAS = ("tmp", "queue", "hold", "dead", "quarantine")
MSGID = "0123456789abcdef"     # looks like a message file


def victim_msg(path, qid, token, mode=0o600):
    """A root-owned message file at path that would be valid for the
    daemon if it were its own (ID qid, the harness token in its body)."""
    now = int(time.time())
    body = (b"Received: from client.test (localhost [127.0.0.1])\r\n"
            b"\tby mx2.example.test (holdfast) with ESMTP id "
            + qid.encode() + b"\r\n\tfor <rcpt@example.test>; "
            b"Tue, 01 Dec 2026 02:01:04 +0000\r\n" + hf.make_message(token))
    env_text = ("version: 1\nid: %s\narrival: %d\nsender: "
                "sender@client.test\nsize: %d\nclient_addr: 127.0.0.1\n"
                "client_port: 58060\nclient_helo: client.test\n"
                "client_name: localhost\nproto: ESMTP\nattempts: 0\n"
                "next_attempt: %d\nheld_since: 0\nage_base: 0\n"
                "rcpt: pending rcpt@example.test\n"
                % (qid, now, len(body), now))
    hf.spool_msg_write(path, env_text, body, mode=mode)
    os.chown(path, 0, 0)


def victim_dir(env, name):
    """A root-owned 0755 directory holding a file and a message-like
    file; returns (path, snapshot)."""
    v = env.path("victim-" + name)
    os.mkdir(v)
    os.chmod(v, 0o755)
    with open(os.path.join(v, "precious"), "w") as f:
        f.write("root's data\n")
    victim_msg(os.path.join(v, MSGID), MSGID, "victim" + name)
    return v, snapshot(v)


def snapshot(path):
    out = {}
    for root, dirs, files in os.walk(path):
        for n in [root] + [os.path.join(root, x) for x in dirs + files]:
            st = os.lstat(n)
            out[n] = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
    return out


def refused(d, pattern, what):
    """Start d, expect it to exit non-zero with a log line matching
    pattern, before it logs that it is ready."""
    mark = d.mark()
    d.expect_exit()              # checked here: exit 1
    d.start(wait=False)
    hf.wait_until(lambda: not d.alive(), 20, "%s: daemon to exit" % what)
    rc = d.proc.returncode
    text = d.log_text(mark)
    hf.check(rc == 1, "%s: exit %s, wanted 1; log:\n%s" % (what, rc, text))
    hf.check("holdfast ready" not in text, "%s: it got ready" % what)
    hf.check(d.grep(pattern, since=mark),
             "%s: no line matching %r; log:\n%s" % (what, pattern, text))
    hf.note("%s: refused (%s)" % (what, pattern))


def main(env):
    if os.geteuid() != 0:
        raise hf.Skip("not root: only a root start can be misled")
    sink = env.sink().start()
    d = env.daemon(primary_port=sink.port).start()
    d.stop()                     # a spool as a real start leaves it
    sp = d.spool
    nobody = os.stat(sp).st_uid
    hf.check(nobody != 0, "spool should belong to nobody after a start")

    # every area, swapped for a symlink to a root-owned directory
    for area in AREAS:
        v, before = victim_dir(env, area)
        real = os.path.join(sp, area)
        os.rename(real, real + ".real")
        os.symlink(v, real)
        refused(d, r"area .*/%s is a symlink" % area, "%s symlink" % area)
        hf.check(snapshot(v) == before, "%s: the victim changed: %s -> %s"
                 % (area, before, snapshot(v)))
        os.unlink(real)
        os.rename(real + ".real", real)

    # the lock file and the control socket, symlinks to a root file
    for name, pattern in (("lock", r"spool lock .*/lock is a symlink"),
                          ("control.sock", r"control socket .* exists and "
                           r"is not a socket")):
        target = env.path("victim-file-" + name)
        with open(target, "w") as f:
            f.write("root's file\n")
        os.chmod(target, 0o600)
        path = os.path.join(sp, name)
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(target, path)
        refused(d, pattern, name + " symlink")
        st = os.stat(target)
        hf.check((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) ==
                 (0, 0, 0o600), "%s: the target's owner/mode changed: "
                 "%d:%d %o" % (name, st.st_uid, st.st_gid,
                               stat.S_IMODE(st.st_mode)))
        with open(target) as f:
            hf.check(f.read() == "root's file\n", "%s: target rewritten"
                     % name)
        os.unlink(path)

    # the lock file as a hard link to a root file (what protected_hardlinks
    # normally stops the user from making): not written through
    target = env.path("victim-hardlink")
    with open(target, "w") as f:
        f.write("root's file\n")
    os.chmod(target, 0o600)
    if os.path.lexists(os.path.join(sp, "lock")):
        os.unlink(os.path.join(sp, "lock"))
    os.link(target, os.path.join(sp, "lock"))
    refused(d, r"spool lock .*/lock is not a plain file of ours",
            "lock hard link")
    with open(target) as f:
        hf.check(f.read() == "root's file\n", "hard-linked target rewritten")
    hf.check(os.stat(target).st_uid == 0, "hard-linked target chowned")
    os.unlink(os.path.join(sp, "lock"))

    # the control socket's directory below the spool, swapped for a
    # symlink: root would unlink a stale socket and bind one there
    v = env.path("victim-ctldir")
    os.mkdir(v)
    os.chmod(v, 0o755)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(os.path.join(v, "control.sock"))
    stale.close()                # a stale socket: nothing listens
    before = snapshot(v)
    os.symlink(v, os.path.join(sp, "run"))
    d3 = env.daemon(name="ctldir", primary_port=sink.port, spool_dir=sp,
                    control={"socket": os.path.join(sp, "run",
                                                    "control.sock")})
    refused(d3, r"control socket directory .*/run: a symlink",
            "control socket directory symlink")
    hf.check(snapshot(v) == before, "the victim directory changed: %s -> %s"
             % (before, snapshot(v)))
    os.unlink(os.path.join(sp, "run"))

    # a group-writable spool directory
    os.chmod(sp, 0o770)
    refused(d, r"spool .* is writable by group or others", "spool 0770")
    os.chmod(sp, 0o700)

    # a spool below a directory its user owns (the user could move it)
    ud = env.path("userdir")
    os.mkdir(ud)
    os.chown(ud, nobody, -1)
    d2 = env.daemon(name="below", primary_port=sink.port,
                    spool_dir=os.path.join(ud, "spool"))
    refused(d2, r"a directory above it .* is owned by another user",
            "spool below a user's directory")
    hf.check(not os.path.exists(os.path.join(ud, "spool")),
             "the spool was created below the user's directory")

    # the purge of tmp/ runs without root: a root-owned directory planted
    # there (the user cannot make one, but root's purge would remove it)
    planted = os.path.join(sp, "tmp", "fedcba9876543210")
    os.mkdir(planted, 0o700)
    with open(os.path.join(planted, "body"), "w") as f:
        f.write("not the daemon's\n")
    before = snapshot(planted)
    mark = d.mark()
    d.start()
    hf.check(snapshot(planted) == before, "the purge as root removed %s"
             % planted)
    hf.check(d.grep(r"spool purge failed dir=tmp", since=mark),
             "no purge failure logged for the root-owned entry")
    hf.send_ok(d.port, "rootspool")
    # the daemon still works, and the spool is its user's again
    hf.check(os.stat(sp).st_uid == nobody, "spool owner changed")
    time.sleep(0.2)
    d.stop()
    message_links(env, d, sink)
    message_fifo(d)


def message_fifo(d):
    """A FIFO in place of a message file: an open() of it without
    O_NONBLOCK would hang the start."""
    qid = "feedf1f0f1f0f1f0"
    path = os.path.join(d.spool, "queue", qid)
    os.mkfifo(path, 0o600)
    os.chown(path, os.stat(d.spool).st_uid, -1)
    mark = d.mark()
    d.start()
    d.wait_log(r"msg=%s quarantined" % qid, since=mark, timeout=10)
    hf.check(qid in d.quarantine_entries() and not os.path.lexists(path),
             "FIFO not moved to quarantine/")
    hf.send_ok(d.port, "afterfifo")
    hf.note("a FIFO in place of a message file: quarantined")
    d.stop()


def file_state(path):
    st = os.lstat(path)
    with open(path, "rb") as f:
        data = f.read()
    return (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_nlink,
            data)


def message_links(env, d, sink):
    """Message files swapped for a symlink or a hard link to a root file
    (a valid message in the new format): quarantined, never followed."""
    sp = d.spool
    planted = {}
    for i, (area, kind) in enumerate((("queue", "symlink"),
                                      ("queue", "hardlink"))):
        qid = "%016x" % (0xfeed000000000000 + i)
        target = env.path("victim-msg-%d" % i)
        # readable by the daemon's user: only O_NOFOLLOW and the link
        # count check keep it from loading (and rewriting) root's file
        victim_msg(target, qid, "linked%d" % i, mode=0o644)
        path = os.path.join(sp, area, qid)
        if kind == "symlink":
            os.symlink(target, path)
        else:
            os.link(target, path)
        planted[qid] = (area, kind, target, file_state(target))
    nlink_before = {q: os.stat(t).st_nlink
                    for q, (_, _, t, _) in planted.items()}
    mark = d.mark()
    d.start()
    for qid, (area, kind, target, before) in planted.items():
        d.wait_log(r"msg=%s quarantined" % qid, since=mark, timeout=10)
        hf.check(file_state(target)[:3] == before[:3] and
                 file_state(target)[4] == before[4],
                 "%s %s/%s: the root file changed" % (kind, area, qid))
        hf.check(os.stat(target).st_nlink <= nlink_before[qid],
                 "%s %s/%s: more links to the root file" % (kind, area,
                                                             qid))
        hf.check(not os.path.lexists(os.path.join(sp, area, qid)),
                 "%s %s/%s: still in %s/" % (kind, area, qid, area))
        hf.check(qid in d.quarantine_entries(), "%s %s/%s: not in "
                 "quarantine/ (has %s)" % (kind, area, qid,
                                          d.quarantine_entries()))
    hf.check(not d.grep(r"msg=(%s) (delivered|requeued|released)"
                        % "|".join(planted), since=mark),
             "a planted message was acted on")
    m = hf.send_ok(d.port, "afterlinks")
    d.wait_log(r"msg=%s delivered" % m.qid, timeout=20)
    time.sleep(0.5)
    got = b"".join(x.content for x in sink.messages())
    for i in range(len(planted)):
        hf.check(b"linked%d" % i not in got, "the planted message linked%d"
                 " reached the primary" % i)
    hf.note("symlinks and hard links in place of message files: "
            "quarantined, not followed")
    d.stop()


hf.run(main)
