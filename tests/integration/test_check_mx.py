#!/usr/bin/python3
"""MX drift check: `holdfastctl check-mx` against a real DNS server on
loopback (dnsmasq, Debian package dnsmasq-base) that serves

    example.test  MX 10 mx1.example.test, MX 20 mx2.example.test
    nomx.test     an A record only (MX query: NODATA)
    *.test        anything else: NXDOMAIN (--local=/test/)
    elsewhere     REFUSED (no upstream servers)

Checks: a matching set (order, case, trailing dots, no preference) exits 0;
a wrong preference, a missing and an extra host exit 1 with the found set
printed; NXDOMAIN, REFUSED and a server that never answers exit 1 with a
one-line reason; bad usage exits 2; --prom writes a valid node_exporter
textfile (match 1 / 0, lookup_ok, timestamp) atomically and exits 0 even on
drift, 1 when the file cannot be written."""
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

DNSMASQ = "/usr/sbin/dnsmasq"
FOUND = "10 mx1.example.test., 20 mx2.example.test."
EXPECT_OK = "mx1.example.test:10,mx2.example.test:20"


def ctl_bin():
    return os.path.join(hf.build_dir(), "holdfastctl")


class Dnsmasq:
    """dnsmasq in the foreground on 127.0.0.1:port (UDP and TCP)."""

    def __init__(self, env, port):
        self.env = env
        self.port = port
        self.log = env.artifact(env.path("dnsmasq.log"))
        self.proc = None

    def start(self):
        argv = [DNSMASQ, "--no-daemon", "--port=%d" % self.port,
                "--listen-address=127.0.0.1", "--bind-interfaces",
                "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
                "--log-facility=-", "--log-queries",
                "--mx-host=example.test,mx1.example.test,10",
                "--mx-host=example.test,mx2.example.test,20",
                "--host-record=nomx.test,127.0.0.1",
                "--local=/test/"]
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=logf)
        # dnsmasq serves TCP on the same port once it is ready
        hf.wait_port(self.port, timeout=10, proc=self.proc, what="dnsmasq")
        return self

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            hf.stop_pid(self.proc.pid, timeout=5)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


class SilentUDP:
    """A UDP socket on 127.0.0.1 that receives queries and never answers."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def cleanup(self):
        self.sock.close()


class HostileUDP:
    """A UDP server on 127.0.0.1 that answers every query with one MX whose
    host name holds ESC, BEL, a quote, a backslash and a space."""

    LABELS = [b"evil\x1b[31m\"\\ x", b"ex\x07ample", b"test"]

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        deadline = time.monotonic() + 120
        while not self.stopping and time.monotonic() < deadline:
            try:
                q, addr = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            i = 12
            while i < len(q) and q[i] != 0:
                i += 1 + q[i]
            name = b"".join(bytes([len(l)]) + l for l in self.LABELS)
            rdata = struct.pack("!H", 10) + name + b"\0"
            ans = (b"\xc0\x0c" + struct.pack("!HHIH", 15, 1, 60, len(rdata))
                   + rdata)
            hdr = q[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0)
            self.sock.sendto(hdr + q[12:i + 5] + ans, addr)

    def cleanup(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


def udp_port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Result:
    def __init__(self, argv, rc, out, err, secs):
        self.argv, self.rc, self.out, self.err = argv, rc, out, err
        self.secs = secs

    def __repr__(self):
        return ("%s -> rc=%s stdout=%r stderr=%r"
                % (" ".join(self.argv[1:]), self.rc, self.out, self.err))


def check_mx(*args, timeout=30):
    argv = [ctl_bin(), "check-mx"] + list(args)
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        hf.fail("%s did not finish within %ds" % (" ".join(argv), timeout))
    r = Result(argv, p.returncode, p.stdout, p.stderr,
               time.monotonic() - t0)
    hf.note(repr(r))
    hf.check(not hf.SANITIZER_RE.search(p.stderr),
             "sanitizer report from holdfastctl: %r" % r)
    return r


def expect_rc(r, rc, what):
    hf.check(r.rc == rc, "%s: want exit %d, got %r" % (what, rc, r))


PROM_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)'
                       r'(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
                       r',?)*\})? (\S+)$')


def read_prom(path):
    """Parse a textfile strictly enough to catch format errors; returns
    {name: (labels text, float value)} and checks HELP/TYPE."""
    with open(path) as f:
        text = f.read()
    hf.check(text.endswith("\n"), "textfile does not end in a newline")
    samples, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        m = re.match(r"^# TYPE (\S+) (gauge|counter)$", line)
        if m:
            typed.add(m.group(1))
            continue
        m = PROM_LINE.match(line)
        hf.check(m, "bad textfile line %r in:\n%s" % (line, text))
        hf.check(m.group(1) in typed, "no TYPE before %r" % line)
        samples[m.group(1)] = (m.group(2), float(m.group(3)))
    hf.check(shutil.which("promtool"), "no promtool (scripts/setup-deps "
             "installs prometheus)")
    p = subprocess.run(["promtool", "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=30)
    hf.check(p.returncode == 0, "promtool check metrics: %s%s"
             % (p.stdout, p.stderr))
    return samples


def check_prom(path, match, lookup_ok, t_before):
    s = read_prom(path)
    label = '{domain="example.test"}'
    for name, want in (("holdfast_mx_match", match),
                       ("holdfast_mx_lookup_ok", lookup_ok)):
        hf.check(s.get(name) == (label, float(want)),
                 "%s: want %s%s %d, got %r" % (name, name, label, want,
                                               s.get(name)))
    ts = s.get("holdfast_mx_check_timestamp_seconds")
    hf.check(ts is not None and ts[0] == label
             and t_before - 1 <= ts[1] <= time.time() + 1,
             "bad holdfast_mx_check_timestamp_seconds %r" % (ts,))
    hf.check(not os.path.exists(path + ".tmp"), "%s.tmp left behind" % path)


def main(env):
    if not os.access(DNSMASQ, os.X_OK):
        hf.fail("%s missing (scripts/setup-deps installs dnsmasq-base)"
                % DNSMASQ)
    hf.check(os.access(ctl_bin(), os.X_OK), "no %s" % ctl_bin())

    port = hf.free_port()
    for _ in range(20):
        if udp_port_free(port):
            break
        port = hf.free_port()
    dns = env.own(Dnsmasq(env, port)).start()
    srv = "127.0.0.1:%d" % dns.port
    common = ("--server", srv, "--timeout", "5")

    # -- matches: exit 0, the set on stdout
    for exp in (EXPECT_OK,
                "mx2.example.test:20,mx1.example.test:10",      # order
                "MX1.Example.TEST.:10, mx2.EXAMPLE.test.",      # case, dots
                "mx1.example.test,mx2.example.test"):           # no pref
        r = check_mx("example.test", "--expect", exp, *common)
        expect_rc(r, 0, "match %s" % exp)
        hf.check(r.out.startswith("ok: example.test MX matches: ")
                 and FOUND in r.out and r.err == "",
                 "match output: %r" % r)
    # options before the domain and --opt=value work too
    r = check_mx("--server=" + srv, "--expect=" + EXPECT_OK, "example.test.")
    expect_rc(r, 0, "options first")

    # -- drift: exit 1, the found set on stderr
    for exp, why in (("mx1.example.test:10,mx2.example.test:30",
                      "mx2.example.test. has preference 20, expected 30"),
                     ("mx1.example.test:10,mx2.example.test:20,"
                      "mx3.example.test:30", "missing mx3.example.test."),
                     ("mx1.example.test:10",
                      "unexpected 20 mx2.example.test."),
                     ("mx1.example.test:10,mx3.example.test:20",
                      "missing mx3.example.test.")):
        r = check_mx("example.test", "--expect", exp, *common)
        expect_rc(r, 1, "drift %s" % exp)
        hf.check(r.out == "" and r.err.count("\n") == 1
                 and r.err.startswith("drift: example.test MX is: " + FOUND
                                      + "; expected: ")
                 and why in r.err, "drift output (want %r): %r" % (why, r))

    # NODATA: the name exists without MX records: an empty set, drift
    r = check_mx("nomx.test", "--expect", "mx1.example.test", *common)
    expect_rc(r, 1, "nodata")
    hf.check(r.err.startswith("drift: nomx.test MX is: (none); expected: "),
             "nodata output: %r" % r)

    # -- lookup failures: exit 1, one line naming the reason
    for dom, reason in (("unknown.test", "NXDOMAIN"),
                        ("example.invalid", "REFUSED")):
        r = check_mx(dom, "--expect", "mx1.example.test", *common)
        expect_rc(r, 1, "lookup of %s" % dom)
        hf.check(r.err.count("\n") == 1 and reason in r.err
                 and dom in r.err and "drift" not in r.err,
                 "%s: want one line with %s: %r" % (dom, reason, r))

    # a server that never answers: bounded by --timeout
    silent = env.own(SilentUDP())
    r = check_mx("example.test", "--expect", EXPECT_OK, "--server",
                 "127.0.0.1:%d" % silent.port, "--timeout", "2")
    expect_rc(r, 1, "silent server")
    hf.check("timeout" in r.err and r.err.count("\n") == 1,
             "silent server output: %r" % r)
    hf.check(1.5 <= r.secs <= 6, "silent server took %.1fs with --timeout 2"
             % r.secs)

    # a hostile answer: nothing but printable ASCII reaches the terminal
    # (c-ares writes such bytes as \\DDD; what is left of odd bytes
    # shows as '?'), and the textfile stays valid
    hostile = env.own(HostileUDP())
    for extra in ((), ("--prom", env.path("hostile.prom"))):
        t0 = time.time()
        r = check_mx("example.test", "--expect", EXPECT_OK, "--server",
                     "127.0.0.1:%d" % hostile.port, "--timeout", "2", *extra)
        expect_rc(r, 0 if extra else 1, "hostile answer %r" % (extra,))
        hf.check(all(" " <= c <= "~" for c in r.out + r.err.rstrip("\n")),
                 "hostile answer: a byte outside printable ASCII: %r" % r)
        if extra:
            check_prom(extra[1], 0, 1, t0)
        else:
            hf.check("drift" in r.err and "\\027[31m" in r.err,
                     "hostile answer: %r" % r)

    # -- bad usage: exit 2 with the usage line, no lookup
    for args in ((),
                 ("example.test",),
                 ("--expect", EXPECT_OK),
                 ("example.test", "--expect"),
                 ("example.test", "--expect", "mx1.example.test:70000"),
                 ("example.test", "--expect", "mx1..example.test"),
                 ("example.test", "--expect", "a.example,a.example"),
                 ("example.test", "other.test", "--expect", EXPECT_OK),
                 ("example.test", "--expect", EXPECT_OK, "--bogus"),
                 ("example.test", "--expect", EXPECT_OK, "--timeout", "0"),
                 ("example.test", "--expect", EXPECT_OK, "--server",
                  "not-an-ip")):
        r = check_mx(*args)
        expect_rc(r, 2, "usage %r" % (args,))
        hf.check("usage: holdfastctl check-mx DOMAIN" in r.err,
                 "no usage line: %r" % r)

    # -- --prom: a textfile instead of output, exit 0 even on drift
    prom = env.path("mx_example.prom")
    cases = ((EXPECT_OK, srv, 1, 1),
             ("mx1.example.test:10", srv, 0, 1),
             (EXPECT_OK, "127.0.0.1:%d" % silent.port, 0, 0))
    for exp, server, match, ok in cases:
        t0 = time.time()
        r = check_mx("example.test", "--expect", exp, "--server", server,
                     "--timeout", "2", "--prom", prom)
        expect_rc(r, 0, "--prom %s via %s" % (exp, server))
        check_prom(prom, match, ok, t0)
    # a label value that needs no escaping stays as is; the unit test
    # covers escaping.  An unwritable target: exit 1, a reason.
    r = check_mx("example.test", "--expect", EXPECT_OK, "--server", srv,
                 "--prom", env.path("no-such-dir", "x.prom"))
    expect_rc(r, 1, "--prom into a missing directory")
    hf.check("no-such-dir" in r.err, "unwritable --prom output: %r" % r)

    hf.check(dns.proc.poll() is None, "dnsmasq died during the test")


hf.run(main)
