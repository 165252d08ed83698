#!/usr/bin/python3
"""The client's verified name is looked up once per address and minute.

The rDNS lookup uses the system's resolver, so the daemon runs in its own
mount namespace where /etc/resolv.conf names a loopback dnsmasq on port 53
(c-ares 1.18 reads no port from resolv.conf) at a random 127.53.x.y.  It
answers (authoritative for .test, REFUSED for the rest, logging every
query):
- 127.0.0.2 <-> a.rdns.test and 127.0.0.3 <-> b.rdns.test (PTR and A);
- 127.0.0.5: NXDOMAIN (a definite "unknown");
- 127.0.0.4: REFUSED (a failed lookup);
- 127.0.0.6: forwarded to an upstream that never answers (a timeout).
Five sessions from 127.0.0.2 ask one PTR and one A query, and every one
of them logs rdns=a.rdns.test and writes it into its Received header;
127.0.0.3 has its own query; NXDOMAIN is asked once for two sessions;
REFUSED and the timeout are asked again by the next session (a failure is
not cached) and give "unknown".  Without the cache each session asks."""
import ctypes
import os
import random
import re
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

CLONE_NEWNS = 0x00020000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000


def private_resolv_conf(path):
    """A preexec function: the child gets its own mount namespace with
    path bind-mounted over /etc/resolv.conf."""
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec():
        if (libc.unshare(CLONE_NEWNS) != 0 or
                libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE,
                           None) != 0 or
                libc.mount(path.encode(), b"/etc/resolv.conf", None,
                           MS_BIND, None) != 0):
            os._exit(97)
    return preexec


class Dnsmasq53(hf.Dnsmasq):
    """hf.Dnsmasq on addr:53 instead of 127.0.0.1:port."""

    def __init__(self, env, addr, args=()):
        super().__init__(env, args, port=53)
        self.addr = addr

    def start(self):
        argv = [hf.DNSMASQ, "--no-daemon", "--port=53",
                "--listen-address=%s" % self.addr, "--bind-interfaces",
                "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
                "--log-facility=-", "--log-queries"] + self.args
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=logf)

        def up():
            if self.proc.poll() is not None:
                hf.fail("dnsmasq exited rc=%s: %s" % (
                    self.proc.returncode, open(self.log).read()[-500:]))
            try:
                with socket.create_connection((self.addr, 53), timeout=0.5):
                    return True
            except OSError:
                return False
        hf.wait_until(up, 10, "dnsmasq on %s:53" % self.addr)
        return self

    def count(self, pattern):
        return len(re.findall(pattern, open(self.log,
                                            errors="replace").read()))


def main(env):
    if os.geteuid() != 0:
        raise hf.Skip("needs root (a mount namespace and port 53)")
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))          # an upstream that never answers
    env.own(type("Closer", (), {"cleanup": lambda self: dead.close()})())
    addr = "127.53.%d.%d" % (random.randint(1, 254), random.randint(1, 254))
    dns = env.own(Dnsmasq53(env, addr, [
        "--host-record=a.rdns.test,127.0.0.2",
        "--host-record=b.rdns.test,127.0.0.3",
        "--local=/5.0.0.127.in-addr.arpa/",
        "--server=/6.0.0.127.in-addr.arpa/127.0.0.1#%d"
        % dead.getsockname()[1],
        "--local=/test/"])).start()
    resolv = env.artifact(env.path("resolv.conf"))
    with open(resolv, "w") as f:
        f.write("nameserver %s\n" % addr)
    sink = env.sink().start()
    d = env.daemon(primary_port=sink.port)
    d.start(preexec=private_resolv_conf(resolv))

    def ptr(n):
        return dns.count(r"query\[PTR\] %d\.0\.0\.127\.in-addr\.arpa from"
                         % n)

    def send(source, token):
        c = hf.SMTPClient(d.port, timeout=30, source=source)
        try:
            c.ehlo()
            c.cmd("MAIL FROM:<s@client.test>", expect=250)
            c.cmd("RCPT TO:<rcpt@example.test>", expect=250)
            c.data(hf.dot_stuff(hf.make_message(token)), expect=250)
            c.quit()
        finally:
            c.close()

    def received(token):
        """The rDNS part of the Received header holdfast wrote."""
        for m in sink.messages():
            if b"<%s@harness.test>" % token.encode() in m.content:
                mm = re.search(rb"\AReceived: from \S+ \((\S+) \[",
                               m.content)
                hf.check(mm is not None, "no Received header: %r"
                         % m.content[:200])
                return mm.group(1).decode()
        hf.fail("message %s not delivered" % token)

    sent = []
    for i in range(5):
        send("127.0.0.2", "a%d" % i)
        sent.append(("a%d" % i, "a.rdns.test"))
    hf.check(ptr(2) == 1, "5 sessions from 127.0.0.2 asked %d PTR queries, "
             "wanted 1" % ptr(2))
    na = dns.count(r"query\[A\] a\.rdns\.test from")
    hf.check(na == 1, "forward lookups of a.rdns.test: %d, wanted 1" % na)
    for i in range(2):
        send("127.0.0.3", "b%d" % i)
        sent.append(("b%d" % i, "b.rdns.test"))
    hf.check(ptr(3) == 1, "127.0.0.3: %d PTR queries, wanted its own 1"
             % ptr(3))
    hf.note("127.0.0.2 x5, 127.0.0.3 x2: one PTR and one A query each")

    # NXDOMAIN: a definite "unknown", asked once
    for i in range(2):
        send("127.0.0.5", "n%d" % i)
        sent.append(("n%d" % i, "unknown"))
    hf.check(ptr(5) == 1, "NXDOMAIN asked %d times for 2 sessions, wanted "
             "1" % ptr(5))

    # failures: each session asks again
    send("127.0.0.4", "r0")
    first = ptr(4)
    hf.check(first >= 1, "no PTR query for 127.0.0.4")
    send("127.0.0.4", "r1")
    hf.check(ptr(4) > first, "a REFUSED lookup was cached: %d queries "
             "after the second session, %d after the first"
             % (ptr(4), first))
    sent += [("r0", "unknown"), ("r1", "unknown")]
    send("127.0.0.6", "t0")
    first = ptr(6)
    hf.check(first >= 1, "no PTR query for 127.0.0.6")
    send("127.0.0.6", "t1")
    hf.check(ptr(6) > first, "a timed-out lookup was cached: %d queries "
             "after the second session, %d after the first"
             % (ptr(6), first))
    sent += [("t0", "unknown"), ("t1", "unknown")]
    hf.note("NXDOMAIN asked once; REFUSED and timeout asked per session")

    # every session: the name in its log line and its Received header
    sink.wait_count(len(sent), timeout=hf.scaled(30))
    for token, want in sent:
        got = received(token)
        hf.check(got == want, "message %s: Received names %r, wanted %r"
                 % (token, got, want))
    sess_addr = dict(re.findall(r"sess=(\w+) smtp connected addr=(\S+)",
                                d.log_text()))
    rdns = dict(re.findall(r"sess=(\w+) rdns=\"?([^\"\s]+)", d.log_text()))
    want_name = {"127.0.0.2": "a.rdns.test", "127.0.0.3": "b.rdns.test"}
    nlog = 0
    for sess, a in sess_addr.items():
        if a in want_name:
            hf.check(rdns.get(sess) == want_name[a], "sess=%s from %s "
                     "logged rdns=%r" % (sess, a, rdns.get(sess)))
            nlog += 1
        elif a in ("127.0.0.4", "127.0.0.5", "127.0.0.6"):
            hf.check(sess not in rdns, "sess=%s from %s logged rdns=%r"
                     % (sess, a, rdns.get(sess)))
    hf.check(nlog == 7, "%d sessions from .2/.3 in the log, wanted 7"
             % nlog)
    hf.note("%d messages: the cached name in every session's log and "
            "Received header" % len(sent))


if __name__ == "__main__":
    hf.run(main)
