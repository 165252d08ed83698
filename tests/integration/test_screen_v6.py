#!/usr/bin/python3
"""Per-address limits count an IPv6 /64, across real addresses.

Loopback has only ::1, so the daemon runs in a network namespace of its
own (unshare before exec; lo up with 2001:db8:1:2::1/64, ::10 and ::20 of
the same /64, and 2001:db8:1:3::10 of the next one), listening on
[2001:db8:1:2::1].  The test's client sockets are made in a thread that
joined that namespace.  With [screen] max_sessions_per_ip = 1:

  - a session from 2001:db8:1:2::10 gets its 220 banner;
  - while it is open, one from 2001:db8:1:2::20 (same /64) gets 421 4.7.0
    "too many sessions" (before the fix: 220, each /128 counted alone);
  - one from 2001:db8:1:3::10 (another /64) gets 220;
  - once the first closes, 2001:db8:1:2::20 gets 220."""
import ctypes
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

CLONE_NEWNET = 0x40000000
LIBC = ctypes.CDLL(None, use_errno=True)
SRV = "2001:db8:1:2::1"
SAME_A, SAME_B, OTHER = "2001:db8:1:2::10", "2001:db8:1:2::20", \
    "2001:db8:1:3::10"


def new_netns():
    """preexec: a network namespace of its own, lo up with our addresses."""
    if LIBC.unshare(CLONE_NEWNET) != 0:
        os.write(2, b"unshare(CLONE_NEWNET) failed\n")
        os._exit(111)
    for cmd in (["ip", "link", "set", "lo", "up"],
                ["ip", "addr", "add", SRV + "/64", "dev", "lo", "nodad"],
                ["ip", "addr", "add", SAME_A + "/64", "dev", "lo", "nodad"],
                ["ip", "addr", "add", SAME_B + "/64", "dev", "lo", "nodad"],
                ["ip", "addr", "add", OTHER + "/64", "dev", "lo", "nodad"]):
        if subprocess.call(cmd) != 0:
            os._exit(112)


class InNetns:
    """Run functions in a thread that joined pid's network namespace."""

    def __init__(self, pid):
        self.pid = pid

    def run(self, fn):
        box = {}

        def body():
            fd = os.open("/proc/%d/ns/net" % self.pid, os.O_RDONLY)
            try:
                if LIBC.setns(fd, CLONE_NEWNET) != 0:
                    box["error"] = OSError(ctypes.get_errno(), "setns")
                    return
            finally:
                os.close(fd)
            try:
                box["value"] = fn()
            except Exception as e:      # noqa: BLE001 (re-raised below)
                box["error"] = e
        t = threading.Thread(target=body, daemon=True)
        t.start()
        t.join(30)
        if "error" in box:
            raise box["error"]
        return box.get("value")


def banner_from(ns, port, src):
    """Connect from src; returns (socket, first reply line)."""
    def fn():
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.settimeout(10)
        s.bind((src, 0))
        s.connect((SRV, port))
        line = b""
        while not line.endswith(b"\n") and len(line) < 512:
            b = s.recv(1)
            if not b:
                break
            line += b
        return s, line.decode("ascii", "replace").strip()
    return ns.run(fn)


def main(env):
    hf.check(os.geteuid() == 0, "needs root (network namespace)")
    port = hf.free_port()
    d = env.daemon(port=port,
                   server={"listen": "[%s]:%d" % (SRV, port)},
                   screen={"max_sessions_per_ip": "1"})
    d.start(wait=False, preexec=new_netns)
    d.wait_log(r"\bholdfast ready\b", timeout=20)
    ns = InNetns(d.pid)

    a, la = banner_from(ns, port, SAME_A)
    hf.note("%s -> %s" % (SAME_A, la))
    hf.check(la.startswith("220"), "first session from %s: %r"
             % (SAME_A, la))
    b, lb = banner_from(ns, port, SAME_B)
    hf.note("%s (same /64, first still open) -> %s" % (SAME_B, lb))
    hf.check(lb.startswith("421 4.7.0"), "second session from the same "
             "/64 (%s) got %r, want 421 4.7.0" % (SAME_B, lb))
    b.close()
    c, lc = banner_from(ns, port, OTHER)
    hf.note("%s (next /64) -> %s" % (OTHER, lc))
    hf.check(lc.startswith("220"), "session from another /64 (%s): %r"
             % (OTHER, lc))
    c.close()
    a.close()
    hf.wait_until(lambda: d.grep(r"disconnected addr=%s " % SAME_A), 10,
                  "the first session to end")
    time.sleep(0.2)
    b, lb = banner_from(ns, port, SAME_B)
    hf.note("%s after the first closed -> %s" % (SAME_B, lb))
    hf.check(lb.startswith("220"), "after the /64's session ended, %s got "
             "%r" % (SAME_B, lb))
    b.close()
    hf.check(d.grep(r"deferred addr=%s reason=\"too many sessions"
                    % SAME_B), "no 'deferred ... too many sessions' line "
             "for %s" % SAME_B)
    d.stop()


hf.run(main)
