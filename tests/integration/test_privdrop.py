#!/usr/bin/python3
"""Privilege drop, checked from /proc (skipped unless run as root): started
as root with [server] user = nobody, group = nogroup, the daemon logs
"privileges dropped"; /proc/PID/status shows real, effective, saved and
filesystem Uid all = nobody and Gid all = nogroup, supplementary groups
only nogroup, and no capabilities; the listener still works (a message is
accepted and delivered); the spool dir is owned by nobody, mode 0700, and
the queued message files are owned by nobody and 0600 (checked while the
primary is down, so they stay queued)."""
import grp
import os
import pwd
import stat
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402


def main(env):
    if os.geteuid() != 0:
        raise hf.Skip("not root: the privilege drop only happens when "
                      "started as root")
    uid = pwd.getpwnam("nobody").pw_uid
    gid = grp.getgrnam("nogroup").gr_gid
    sink = env.sink()                  # not started: the primary is down
    d = env.daemon(primary_port=sink.port,
                   server={"user": "nobody", "group": "nogroup"}).start()
    d.wait_log(r"privileges dropped user=nobody uid=%d gid=%d" % (uid, gid),
               timeout=5)
    st = d.status()
    uids = [int(x) for x in st["Uid"].split()]
    gids = [int(x) for x in st["Gid"].split()]
    hf.check(uids == [uid] * 4, "Uid (real, effective, saved, fs) %s, "
             "wanted all %d" % (uids, uid))
    hf.check(gids == [gid] * 4, "Gid %s, wanted all %d" % (gids, gid))
    hf.check(all(u != 0 for u in uids), "some uid is still 0: %s" % uids)
    groups = st.get("Groups", "").split()
    hf.check(groups in ([], [str(gid)]), "supplementary groups %s" % groups)
    for cap in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
        if cap in st:
            hf.check(int(st[cap], 16) == 0, "%s = %s" % (cap, st[cap]))
    # every thread, not just the main one (commit workers, resolver)
    for tid in os.listdir("/proc/%d/task" % d.pid):
        with open("/proc/%d/task/%s/status" % (d.pid, tid)) as f:
            ts = dict(l.split(":", 1) for l in f if ":" in l)
        hf.check([int(x) for x in ts["Uid"].split()] == [uid] * 4,
                 "thread %s Uid %s" % (tid, ts["Uid"].strip()))
    hf.note("Uid %s Gid %s, threads %d" % (st["Uid"], st["Gid"],
                                          len(os.listdir("/proc/%d/task"
                                                         % d.pid))))

    sp = os.stat(d.spool)
    hf.check(sp.st_uid == uid, "spool owned by uid %d" % sp.st_uid)
    hf.check(stat.S_IMODE(sp.st_mode) == 0o700, "spool mode %o"
             % stat.S_IMODE(sp.st_mode))

    # the listener works after the drop
    sent = [hf.send_ok(d.port, "priv%d" % i) for i in range(3)]
    files = []
    for root, dirs, names in os.walk(d.spool):
        for n in dirs:
            p = os.path.join(root, n)
            s = os.stat(p)
            hf.check(s.st_uid == uid, "%s owned by %d" % (p, s.st_uid))
            hf.check(stat.S_IMODE(s.st_mode) & 0o077 == 0, "%s mode %o"
                     % (p, stat.S_IMODE(s.st_mode)))
        for n in names:
            p = os.path.join(root, n)
            s = os.lstat(p)
            if stat.S_ISSOCK(s.st_mode):
                continue            # the control socket (0660 by design)
            files.append(p)
            hf.check(s.st_uid == uid, "%s owned by %d" % (p, s.st_uid))
            hf.check(stat.S_IMODE(s.st_mode) == 0o600, "%s mode %o, wanted "
                     "0600" % (p, stat.S_IMODE(s.st_mode)))
    queued = [p for p in files if "/queue/" in p]
    hf.check(len(queued) >= 3, "queued files %s" % queued)
    hf.note("%d spool files, all nobody 0600" % len(files))

    # delivered once the primary is back (the dropped daemon can drain)
    sink.start()
    hf.verify_deliveries(sink, sent, 30, settle=0.5)
    hf.check(d.status()["Uid"].split()[0] == str(uid), "uid changed")


hf.run(main)
