"""Integration-test harness for holdfast (standard library only).

One scenario per file; each does

    import os, sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
    import holdfast as hf

    def main(env):
        sink = env.sink()
        d = env.daemon(primary_port=sink.port)
        ...
        hf.check(cond, "reason")

    hf.run(main)

Everything a test starts (holdfast, smtp-sink, the tap proxies, Postfix
instances) is registered with the Env and stopped by PID when the test ends,
whatever the outcome.  All listeners bind 127.0.0.1 on ports picked by
free_port().  Every wait has a deadline.  On failure the logs (daemon stderr,
sink dumps and transcripts, Postfix maillogs) are copied to
$HOLDFAST_OUT (set by tests/run-integration) or tests/out/<name>/.

When main returns, every daemon still running gets SIGTERM and must exit
0; only then are the daemon logs scanned for sanitizer reports (so
LeakSanitizer's report at exit counts).  A daemon that ended non-zero by
itself fails the scenario unless the test said so first: kill9(),
stop(expect_clean=False) or expect_exit() (e.g. a start that must fail).
raise Skip(...) only for what the environment cannot give (not root); it
exits 77 and scripts/test fails on it unless HOLDFAST_ALLOW_SKIP names
the scenario.  A missing tool is a fail(): scripts/setup-deps installs
it.  Fixed deadlines and sleeps that wait for nothing to happen go
through scaled(seconds) (HOLDFAST_SLOW; 2 for a sanitizer build).
"""

import errno
import glob
import os
import pty
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

LIB_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(LIB_DIR, "..", "..", ".."))
SMTP_SINK = "/usr/sbin/smtp-sink"
POSTFIX = "/usr/sbin/postfix"
POSTQUEUE = "/usr/sbin/postqueue"
POSTCONF = "/usr/sbin/postconf"

ID_RE = r"[0-9a-f]{16}"
EVENT_RE = re.compile(r"\bmsg=(" + ID_RE + r") (accepted|delivered|deferred|"
                      r"dead|expired|removed)\b(.*)$")
QUEUED_RE = re.compile(rb"^250[ -]2\.0\.0 Ok: queued as (" + ID_RE.encode()
                       + rb")\s*$")
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|"
                          r"runtime error: |SUMMARY: UndefinedBehavior")


class Fail(Exception):
    """A scenario's expectation was not met."""


class Skip(Exception):
    """The scenario cannot run here (e.g. not root).  It exits SKIP_RC;
    tests/run-integration prints SKIP and counts it, and scripts/test
    fails on any skip its environment does not allow (HOLDFAST_ALLOW_SKIP).
    A missing tool is not a reason: install it (scripts/setup-deps) and
    fail without it."""


SKIP_RC = 77        # the automake convention for "skipped"


def check(cond, reason):
    if not cond:
        raise Fail(reason)


def fail(reason):
    raise Fail(reason)


def note(msg):
    """A progress line; kept in the runner's per-test output."""
    print("  [%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


# ---------------------------------------------------------------- basics

def slow_factor():
    """HOLDFAST_SLOW, the one slowness factor (default 1; the runner sets
    2 for a sanitizer build).  Fixed deadlines and 'nothing happened'
    sleeps are multiplied by it, so a slow machine makes the tests slower,
    not red or vacuous."""
    try:
        f = float(os.environ.get("HOLDFAST_SLOW", "") or 1)
    except ValueError:
        f = 1.0
    return max(f, 1.0)


def scaled(seconds):
    """seconds times slow_factor(): use for every fixed deadline and every
    sleep that waits for something not to happen."""
    return seconds * slow_factor()


def build_dir():
    b = os.environ.get("HOLDFAST_BUILD") or "build"
    if not os.path.isabs(b):
        b = os.path.join(REPO, b)
    return b


def holdfast_bin():
    return os.path.join(build_dir(), "holdfast")


_used_ports = set()


def _ephemeral_low():
    """The low end of the kernel's ephemeral port range (32768 by
    default): outgoing connections take their local port from there on,
    so a listener picked in that range can lose it to one."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago; never the same
    one twice in one test process.  Picked below the ephemeral range, so
    no outgoing connection can take it between the pick and the bind.  A
    random start avoids two tests running in parallel picking the same
    sequence."""
    hi = min(_ephemeral_low(), 32768) - 1
    lo = min(10000, hi // 2)
    for _ in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", random.randint(lo, hi)))
            port = s.getsockname()[1]
        except OSError:
            continue
        finally:
            s.close()
        if port in _used_ports:
            continue
        # nothing may be listening there either (bind above is not
        # enough when SO_REUSEADDR listeners exist)
        if port_open(port, timeout=0.2):
            continue
        _used_ports.add(port)
        return port
    fail("no free port found")


def port_open(port, timeout=1.0):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(pred, timeout, what, interval=0.05):
    """Poll pred() until it returns a true value (returned) or fail after
    timeout seconds with 'timed out waiting for WHAT'."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            fail("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def wait_port(port, timeout=10, proc=None, what=None):
    def ok():
        if proc is not None and proc.poll() is not None:
            fail("%s exited (rc=%s) before listening on %d"
                 % (what or "process", proc.returncode, port))
        return port_open(port, 0.5)
    wait_until(ok, timeout, "%s on port %d" % (what or "listener", port))


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


def stop_pid(pid, timeout=10, sig=signal.SIGTERM):
    """Signal pid, wait up to timeout for it to go, then SIGKILL it.
    Returns True if it went on the first signal."""
    if not pid_alive(pid):
        return True
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return False


def run_pty(argv, timeout=60, env=None):
    """Run argv with stderr on a pty (Postfix commands print their errors
    only to a terminal; otherwise they go to syslog, absent here).
    Returns (rc, combined output)."""
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave,
                             stderr=slave, env=env, close_fds=True)
    finally:
        os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    while True:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                chunk = b""
            if chunk:
                out += chunk
                continue
        if p.poll() is not None and not r:
            break
        if r and not chunk and p.poll() is not None:
            break
        if time.monotonic() > deadline:
            p.kill()
            p.wait()
            os.close(master)
            fail("%s timed out" % " ".join(argv))
    p.wait()
    os.close(master)
    return p.returncode, out.decode("utf-8", "replace").replace("\r\n", "\n")


# ---------------------------------------------------------------- env

class Env:
    """Per-test temp dir and the owner of every process the test starts."""

    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="hf-%s-" % name)
        # Postfix daemons and smtp-sink run as postfix/nobody and must be
        # able to reach their directories below this one.
        os.chmod(self.dir, 0o755)
        self.owned = []          # objects with .cleanup(), in start order
        self.artifacts = []      # paths worth keeping on failure
        self.daemons = []

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def own(self, obj):
        self.owned.append(obj)
        return obj

    def artifact(self, path):
        self.artifacts.append(path)
        return path

    # factories
    def daemon(self, **kw):
        d = Daemon(self, **kw)
        self.daemons.append(d)
        return self.own(d)

    def sink(self, **kw):
        return self.own(Sink(self, **kw))

    def postfix(self, **kw):
        return self.own(Postfix(self, **kw))

    def stop_daemons(self):
        """Stop every daemon still running (SIGTERM; each must exit 0) and
        check how each of their processes ended; returns the problems.
        Run before sanitizer_reports(): LeakSanitizer reports at exit."""
        probs = []
        for d in self.daemons:
            try:
                probs += d.finish()
            except Exception as e:        # keep stopping the rest
                probs.append("%s: stopping it: %s" % (d.name, e))
        return probs

    def cleanup(self, failed):
        for d in self.daemons:           # stopped first, as in run()
            for p in d.finish():
                print("  %s" % p)
        for obj in reversed(self.owned):
            try:
                obj.cleanup()
            except Exception as e:        # keep cleaning up the rest
                print("  cleanup of %r: %s" % (obj, e))
        if failed:
            self.keep_artifacts()
        shutil.rmtree(self.dir, ignore_errors=True)

    def out_dir(self):
        return (os.environ.get("HOLDFAST_OUT")
                or os.path.join(REPO, "tests", "out", self.name))

    def keep_artifacts(self):
        out = self.out_dir()
        os.makedirs(out, exist_ok=True)
        for p in self.artifacts:
            if not os.path.exists(p):
                continue
            dst = os.path.join(out, os.path.basename(p.rstrip("/")))
            try:
                if os.path.isdir(p):
                    shutil.copytree(p, dst, dirs_exist_ok=True)
                else:
                    shutil.copy2(p, dst)
            except OSError as e:
                print("  could not keep %s: %s" % (p, e))
        print("  logs kept in %s" % out)

    def sanitizer_reports(self):
        bad = []
        for d in self.daemons:
            for line in d.log_text().splitlines():
                if SANITIZER_RE.search(line):
                    bad.append("%s: %s" % (d.name, line.strip()))
        return bad


def run(fn):
    """Run fn(env) as the scenario; exit 0 on pass, 1 on failure, SKIP_RC
    on Skip.  After fn returns, every daemon still running is stopped
    (it must exit 0 on SIGTERM) and only then are the complete daemon
    logs scanned for sanitizer reports, so LeakSanitizer's report at exit
    is seen; a daemon that died unexpectedly also fails the scenario."""
    name = os.path.basename(sys.argv[0])
    name = re.sub(r"^test_|\.py$", "", name)
    env = Env(name)
    failed = True
    rc = 1

    def on_term(signum, frame):
        raise Fail("interrupted by signal %d (runner timeout?)" % signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    t0 = time.monotonic()
    try:
        check(os.access(holdfast_bin(), os.X_OK),
              "no daemon binary at %s (build it first)" % holdfast_bin())
        fn(env)
        probs = env.stop_daemons()
        bad = env.sanitizer_reports()
        if bad:
            for p in probs[:3]:
                print("  also daemon exit: %s" % p)
        check(not bad, "sanitizer report in daemon log: " + "; ".join(bad[:3]))
        check(not probs, "daemon exit: " + "; ".join(probs[:3]))
        failed = False
        rc = 0
    except Skip as e:
        print("SKIP: %s" % e)
        failed = False
        rc = SKIP_RC
        if _also(env):
            print("FAIL: the skipped scenario's daemons did not end cleanly")
            failed = True
            rc = 1
    except Fail as e:
        print("FAIL: %s" % e)
        _also(env, sanitizer=not str(e).startswith("sanitizer report"))
    except Exception:
        traceback.print_exc()
        print("FAIL: harness exception (test bug?)")
        _also(env)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        env.cleanup(failed)
    if rc == 0:
        print("ok (%.1fs)" % (time.monotonic() - t0))
    sys.stdout.flush()
    sys.exit(rc)


def _also(env, sanitizer=True):
    """After a failure or skip: stop the daemons, then report what their
    exits and logs say too (a sanitizer report behind a skip is a
    failure)."""
    try:
        probs = env.stop_daemons()
    except Exception as e:
        probs = ["stopping the daemons: %s" % e]
    for p in probs[:3]:
        print("  also daemon exit: %s" % p)
    bad = env.sanitizer_reports()
    if bad and sanitizer:
        print("  also sanitizer: " + "; ".join(bad[:3]))
    return bool(probs or bad)


# ---------------------------------------------------------------- daemon

def binary_uses_asan(path):
    try:
        out = subprocess.run(["ldd", path], capture_output=True, text=True,
                             timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    m = re.search(r"(\S*libasan\.so\S*)\s+=>\s+(\S+)", out)
    if m:
        return m.group(2)
    # statically linked ASan runtime: no preload ordering issue
    return None


def shim_path(name="faultshim"):
    """BUILD/tests/NAME.so as built by the Makefile."""
    p = os.path.join(build_dir(), "tests", name + ".so")
    check(os.path.exists(p), "fault shim %s not built (make)" % p)
    return p


def preload_env(libs, binary=None):
    """Environment additions to LD_PRELOAD libs into binary.  An ASan
    binary with a dynamic runtime must have libasan first in the list."""
    binary = binary or holdfast_bin()
    libs = list(libs)
    asan = binary_uses_asan(binary)
    if asan:
        libs.insert(0, asan)
    return {"LD_PRELOAD": " ".join(libs)}


def shim_env(fault, trigger, binary=None):
    """Environment additions that preload the fault shim into binary
    (libasan first for an ASan build) with HOLDFAST_FAULT=fault, armed
    while the file trigger exists."""
    e = {"HOLDFAST_FAULT": fault, "HOLDFAST_FAULT_FILE": trigger}
    e.update(preload_env([shim_path("faultshim")], binary))
    return e


def sanitized_build(binary=None):
    """True if the daemon is an ASan build (slower: allow more time)."""
    binary = binary or holdfast_bin()
    if binary_uses_asan(binary):
        return True
    try:
        with open(binary, "rb") as f:
            return b"AddressSanitizer" in f.read()
    except OSError:
        return False


class Daemon:
    """One holdfast process (and its restarts over the same spool)."""

    def __init__(self, env, name="holdfast", primary_port=None,
                 primary_host="127.0.0.1", domains=("example.test",
                                                     "example.org"),
                 hostname="mx2.example.test", port=None, spool_dir=None,
                 server=None, spool=None, primary=None, raw_config=None,
                 control=None, metrics=None, screen=None, tls=None,
                 notify=None):
        self.env = env
        self.name = name
        self.port = port or free_port()
        self.hostname = hostname
        self.domains = list(domains)
        self.spool = spool_dir or env.path(name + "-spool")
        self.conf = env.path(name + ".conf")
        self.log_path = env.artifact(env.path(name + ".log"))
        env.artifact(self.conf)
        self.proc = None
        self.starts = 0
        self.start_mark = 0
        self.exit_expected = False   # this process may end non-zero
        self.expect_next = False     # expect_exit() before start()
        self.problems = []           # unexpected exits, reported at the end
        srv = {"hostname": hostname,
               "listen": "127.0.0.1:%d" % self.port,
               "domains": ", ".join(self.domains),
               "max_message_size": "50M",
               "max_recipients": "100",
               "timeout": "60s"}
        if os.geteuid() == 0:
            # started as root, holdfast drops to [server] user/group
            srv.update({"user": "nobody", "group": "nogroup"})
        srv.update(server or {})
        spl = {"dir": self.spool, "queue_lifetime": "30d",
               "bounce_lifetime": "1d", "min_free": "0"}
        spl.update(spool or {})
        pri = {"host": primary_host,
               "port": str(primary_port or free_port()),
               "connections": "2",
               "probe_interval": "2s",
               "retry_min": "1s",
               "retry_max": "4s",
               "connect_timeout": "5s",
               "timeout": "60s"}
        pri.update(primary or {})
        # the pregreet delay would slow every test connection, and the
        # per-address limits would throttle tests that all come from
        # 127.0.0.1: tests of the screens set [screen] themselves
        scr = {"greet_wait": "0", "allow": "127.0.0.0/8, ::1/128"}
        scr.update(screen or {})
        self.sections = {"server": srv, "spool": spl, "primary": pri,
                         "screen": scr}
        if tls is not None:
            self.sections["tls"] = dict(tls)
        # optional sections, written only when given
        # the default (/run/holdfast/control.sock) is one per machine:
        # each test daemon keeps its own socket in its spool
        ctl = {"socket": os.path.join(self.spool, "control.sock")}
        ctl.update(control or {})
        self.sections["control"] = ctl
        if metrics is not None:
            met = dict(metrics)
            if met.get("listen") == "auto":
                met["listen"] = "127.0.0.1:%d" % free_port()
            self.sections["metrics"] = met
        if notify is not None:
            self.sections["notify"] = dict(notify)
        self.raw_config = raw_config
        self.write_config()

    def __repr__(self):
        return "Daemon(%s:%d)" % (self.name, self.port)

    @property
    def primary_port(self):
        return int(self.sections["primary"]["port"])

    def write_config(self, path=None):
        path = path or self.conf
        text = self.raw_config
        if text is None:
            out = []
            for sec in self.sections:
                out.append("[%s]" % sec)
                for k, v in self.sections[sec].items():
                    if v is None:
                        continue
                    for item in (v if isinstance(v, list) else [v]):
                        out.append("%s = %s" % (k, item))
                out.append("")
            text = "\n".join(out)
        with open(path, "w") as f:
            f.write(text)
        return path

    def check_config(self, path=None, timeout=20):
        """Run holdfast -c PATH -n; returns (rc, stderr text)."""
        p = subprocess.run([holdfast_bin(), "-c", path or self.conf, "-n"],
                           stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout, env=self._env({}))
        return p.returncode, p.stderr.decode("utf-8", "replace")

    def _env(self, extra):
        e = dict(os.environ)
        # Sanitizer runs: report to stderr (our log), keep going is off.
        e.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        e.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        e.update(extra or {})
        return e

    def start(self, wait=True, env=None, timeout=None, preexec=None):
        """preexec: a function run in the child before exec (e.g. to set
        a resource limit)."""
        check(self.proc is None or self.proc.poll() is not None,
              "%s started twice" % self.name)
        self._account()
        self.exit_expected, self.expect_next = self.expect_next, False
        self.starts += 1
        with open(self.log_path, "ab") as f:
            f.write(b"=== harness: start #%d at %s ===\n"
                    % (self.starts, time.strftime("%H:%M:%S").encode()))
            self.start_mark = f.tell()
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [holdfast_bin(), "-c", self.conf, "-v"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env=self._env(env), cwd=self.env.dir, preexec_fn=preexec)
        finally:
            log.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=None):
        """Wait until the log says 'holdfast ready' (since this start) and
        the listener accepts; fail with the log tail if it died."""
        timeout = timeout or scaled(float(os.environ.get(
            "HOLDFAST_READY_TIMEOUT", "20")))

        def ready():
            if self.proc.poll() is not None:
                self.proc.hf_accounted = True      # reported right here
                fail("%s exited rc=%s during startup; log tail:\n%s"
                     % (self.name, self.proc.returncode, self.tail()))
            return (re.search(r"\bholdfast ready\b",
                              self.log_text(self.start_mark))
                    and port_open(self.port, 0.5))
        wait_until(ready, timeout, "%s to log 'holdfast ready' and accept "
                   "on port %d" % (self.name, self.port))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def signal(self, sig):
        check(self.alive(), "%s is not running" % self.name)
        self.proc.send_signal(sig)

    def status(self):
        """/proc/PID/status as {key: value}."""
        return proc_status(self.pid)

    def stop(self, timeout=15, expect_clean=True):
        """SIGTERM, wait; SIGKILL after timeout (times slow_factor()).
        With expect_clean, fail unless it exited 0 on SIGTERM within the
        timeout; without, any exit is accepted (the caller checks)."""
        if not expect_clean:
            self.exit_expected = True
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None and expect_clean:
                self._account()
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.proc.hf_accounted = True
            if expect_clean:
                fail("%s did not exit within %ds of SIGTERM"
                     % (self.name, scaled(timeout)))
            return None
        self.proc.hf_accounted = True
        if expect_clean and rc != 0:
            fail("%s exited rc=%d on SIGTERM; log tail:\n%s"
                 % (self.name, rc, self.tail()))
        return rc

    def kill9(self):
        """SIGKILL (an expected exit: no clean-exit check, no leak
        check for this process)."""
        self.exit_expected = True
        if self.alive():
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def expect_exit(self):
        """Declare that a process may end with any status (the test checks
        it itself, e.g. a start that must fail): the running one, or,
        when none runs, the one that ended last and the next one started.
        Otherwise a process that ended non-zero by itself fails the
        scenario."""
        self.exit_expected = True
        if not self.alive():
            self._account()             # the ended one: expected
            self.expect_next = True

    def _account(self):
        """Record, once per process, an exit the test did not expect: a
        non-zero status (crash, sanitizer report, fatal error) unless
        kill9(), stop(expect_clean=False) or expect_exit() came first."""
        p = self.proc
        if p is None or p.poll() is None or getattr(p, "hf_accounted", False):
            return
        p.hf_accounted = True
        if p.returncode != 0 and not self.exit_expected:
            self.problems.append(
                "%s (start #%d) exited rc=%s unexpectedly (if the test "
                "expects that, call expect_exit() first); log tail:\n%s"
                % (self.name, self.starts, p.returncode, self.tail(15)))

    def finish(self, timeout=15):
        """Stop the process if it still runs (SIGTERM; it must exit 0
        within timeout times slow_factor(), else SIGKILL and a problem),
        account for how it ended, and return the problems found since the
        last call.  Run by run() before the sanitizer scan."""
        p = self.proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                rc = p.wait(scaled(timeout))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                p.hf_accounted = True
                self.problems.append(
                    "%s still running %.0fs after SIGTERM at the end of "
                    "the scenario (SIGKILLed); log tail:\n%s"
                    % (self.name, scaled(timeout), self.tail(15)))
            else:
                p.hf_accounted = True
                if rc != 0 and not self.exit_expected:
                    self.problems.append(
                        "%s exited rc=%d on SIGTERM at the end of the "
                        "scenario; log tail:\n%s"
                        % (self.name, rc, self.tail(15)))
        self._account()
        out, self.problems = self.problems, []
        return out

    def restart(self, **kw):
        self.stop()
        return self.start(**kw)

    def cleanup(self):
        for p in self.finish(timeout=10):
            print("  %s" % p)
        for p in ("queue", "dead", "tmp", "quarantine"):
            d = os.path.join(self.spool, p)
            if os.path.isdir(d):
                self.env.artifact(d)

    # log access
    def mark(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_text(self, since=0):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def tail(self, n=25):
        return "\n".join(self.log_text().splitlines()[-n:])

    def grep(self, pattern, since=0):
        r = re.compile(pattern)
        return [l for l in self.log_text(since).splitlines() if r.search(l)]

    def wait_log(self, pattern, timeout=10, since=0, count=1):
        """Wait for count lines matching pattern (since offset); returns
        them."""
        def got():
            if self.proc is not None and self.proc.poll() is not None:
                fail("%s died (rc=%s) while waiting for /%s/; tail:\n%s"
                     % (self.name, self.proc.returncode, pattern,
                        self.tail()))
            ls = self.grep(pattern, since)
            return ls if len(ls) >= count else None
        return wait_until(got, timeout, "log /%s/ x%d" % (pattern, count))

    def events(self, kind=None, since=0):
        """[(id, event, rest-of-line)] for msg=ID lines."""
        out = []
        for line in self.log_text(since).splitlines():
            m = EVENT_RE.search(line)
            if m and (kind is None or m.group(2) == kind):
                out.append((m.group(1), m.group(2), m.group(3)))
        return out

    def ids(self, kind, since=0):
        return [e[0] for e in self.events(kind, since)]

    # spool
    def _entries(self, sub):
        try:
            return sorted(os.listdir(os.path.join(self.spool, sub)))
        except FileNotFoundError:
            return []

    def queue_ids(self):
        return self._entries("queue")

    def dead_ids(self):
        return self._entries("dead")

    def tmp_entries(self):
        return self._entries("tmp")

    def quarantine_entries(self):
        return self._entries("quarantine")

    def connect(self, timeout=30, source=None):
        return SMTPClient(self.port, timeout=timeout, source=source)

    # operator surface
    @property
    def control_socket(self):
        return self.sections["control"]["socket"]

    def ctl(self, *args, timeout=30):
        """Run BUILD/holdfastctl -c CONF ARGS; returns CtlResult."""
        return run_ctl(["-c", self.conf] + list(args), timeout=timeout,
                       env=self._env({}))

    @property
    def metrics_addr(self):
        """(host, port) of [metrics] listen, or None."""
        v = self.sections.get("metrics", {}).get("listen")
        if not v:
            return None
        host, _, port = v.rpartition(":")
        return host.strip("[]"), int(port)

    def http_get(self, path="/metrics", source="127.0.0.1", timeout=10):
        """GET path from [metrics] listen, the client socket bound to
        source; returns (status, headers dict lowercased, body text)."""
        addr = self.metrics_addr
        check(addr is not None, "%s has no [metrics] listen" % self.name)
        return http_get(addr[0], addr[1], path, source=source,
                        timeout=timeout)

    def scrape(self, source="127.0.0.1", timeout=10):
        """GET /metrics (must be 200) and parse it: PromText."""
        st, hdrs, body = self.http_get("/metrics", source, timeout)
        check(st == 200, "GET /metrics -> %s %r" % (st, body[:200]))
        ct = hdrs.get("content-type", "")
        check(ct.startswith("text/plain"), "/metrics Content-Type %r" % ct)
        return parse_prom(body)


# ---------------------------------------------------------------- clients

class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines       # list of bytes, without CRLF

    @property
    def text(self):
        return b"\n".join(self.lines).decode("utf-8", "replace")

    def queued_id(self):
        m = QUEUED_RE.match(self.lines[-1]) if self.lines else None
        return m.group(1).decode() if m else None

    def __repr__(self):
        return "Reply(%r)" % self.text


class SMTPClient:
    """A raw SMTP client: exact bytes out, replies parsed in."""

    def __init__(self, port, host="127.0.0.1", timeout=30, greet=True,
                 source=None):
        # source: bind the client to that address (e.g. 127.0.0.2)
        self.sock = socket.create_connection(
            (host, port), timeout=timeout,
            source_address=(source, 0) if source else None)
        self.buf = b""
        self.transcript = []
        if greet:
            r = self.reply()
            check(r.code == 220, "greeting was %r" % r)

    def send(self, data):
        self.transcript.append((">", data))
        self.sock.sendall(data)

    def _line(self):
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                fail("timed out reading a reply (got so far %r)" % self.buf)
            if not chunk:
                return None
            self.buf += chunk
            check(len(self.buf) < 1 << 20, "reply line too long")
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def reply(self, allow_eof=False):
        lines = []
        while True:
            line = self._line()
            if line is None:
                if allow_eof and not lines:
                    return None
                fail("connection closed while reading a reply (got %r)"
                     % lines)
            check(len(line) >= 3 and line[:3].isdigit(),
                  "malformed reply line %r" % line)
            lines.append(line)
            if len(line) == 3 or line[3:4] == b" ":
                break
            check(line[3:4] == b"-", "malformed reply line %r" % line)
            check(len(lines) < 200, "endless multi-line reply")
        r = Reply(int(lines[0][:3]), lines)
        self.transcript.append(("<", r.text))
        return r

    def cmd(self, line, expect=None):
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        r = self.reply()
        if expect is not None:
            check(str(r.code).startswith(str(expect)),
                  "%r -> %r, wanted %s" % (line, r, expect))
        return r

    def ehlo(self, name="client.test"):
        return self.cmd("EHLO " + name, expect=250)

    def data(self, payload, expect=250):
        """DATA with payload already dot-stuffed and terminated."""
        self.cmd("DATA", expect=354)
        self.send(payload)
        r = self.reply()
        if expect is not None:
            check(r.code == expect, "end of DATA -> %r, wanted %s"
                  % (r, expect))
        return r

    def starttls(self, context=None, server_hostname=None):
        """STARTTLS (must get 220), then TLS over the same socket.  Fails
        if the server sent anything after the 220 in the clear."""
        import ssl
        self.cmd("STARTTLS", expect=220)
        check(self.buf == b"", "bytes after 220 to STARTTLS in the clear: "
              "%r" % self.buf)
        if context is None:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(self.sock,
                                        server_hostname=server_hostname)
        return self.sock

    def peer_fingerprint(self):
        """SHA-256 of the server's certificate (DER), hex; TLS only."""
        import hashlib
        return hashlib.sha256(self.sock.getpeercert(True)).hexdigest()

    def quit(self):
        try:
            self.send(b"QUIT\r\n")
            self.reply(allow_eof=True)
        except (OSError, Fail):
            pass
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def dot_stuff(content):
    """CRLF content -> DATA payload with terminator."""
    if content and not content.endswith(b"\r\n"):
        content += b"\r\n"
    lines = content.split(b"\r\n")
    out = b"\r\n".join((b"." + l) if l.startswith(b".") else l
                       for l in lines)
    return out + b".\r\n"


def send_message(port, mail_from, rcpts, content, helo="client.test",
                 timeout=60):
    """One transaction on a fresh connection with the raw client.
    Returns (final Reply, rcpt replies)."""
    c = SMTPClient(port, timeout=timeout)
    try:
        c.ehlo(helo)
        c.cmd("MAIL FROM:<%s>" % mail_from, expect=250)
        rr = [c.cmd("RCPT TO:<%s>" % r) for r in rcpts]
        if not any(r.code == 250 for r in rr):
            return None, rr
        r = c.data(dot_stuff(content), expect=None)
        c.quit()
        return r, rr
    finally:
        c.close()


def make_message(token, subject=None, body=None, extra_headers=b""):
    """A small RFC 5322 message whose Message-ID carries token."""
    if isinstance(token, str):
        token = token.encode()
    subject = subject or b"test " + token
    body = body if body is not None else (
        b"token " + token + b"\r\n\r\nline two\r\n.leading dot\r\n")
    return (b"From: <sender@client.test>\r\n"
            b"To: <rcpt@example.test>\r\n"
            b"Subject: " + subject + b"\r\n"
            b"Message-ID: <" + token + b"@harness.test>\r\n"
            b"Date: Mon, 23 Nov 2026 08:00:00 +0000\r\n"
            + extra_headers + b"\r\n" + body)


def token_of(content):
    m = re.search(rb"Message-ID: <([^@>]+)@harness\.test>", content)
    return m.group(1).decode() if m else None


# ---------------------------------------------------------------- sink

RECEIVED_BY_SINK = re.compile(rb"\A(Received: [^\n]*\n(?:[ \t][^\n]*\n)*)")


class SinkMessage:
    """One completed transaction as smtp-sink dumped it.

    smtp-sink writes LF line ends, drops CR and un-dot-stuffs; content
    is rebuilt with CRLF, which is exact for CRLF-only messages without
    stray CRs (for those, use the tap transcript: Sink.transactions())."""

    def __init__(self, path, raw):
        self.path = path
        self.raw = raw
        self.helo = None
        self.mail_args = None
        self.rcpt_args = []
        lines = raw.split(b"\n")
        i = 0
        while i < len(lines) and lines[i].startswith(b"X-"):
            k, _, v = lines[i].partition(b": ")
            if k == b"X-Helo-Args":
                self.helo = v.decode("utf-8", "replace")
            elif k == b"X-Mail-Args":
                self.mail_args = v.decode("utf-8", "replace")
            elif k == b"X-Rcpt-Args":
                self.rcpt_args.append(v.decode("utf-8", "replace"))
            i += 1
        # smtp-sink's own three-line Received header
        check(i + 2 < len(lines) and lines[i].startswith(b"Received: from"),
              "unexpected smtp-sink dump format in %s" % path)
        rest = b"\n".join(lines[i + 3:])
        # the dump ends with one extra empty line
        check(rest.endswith(b"\n"), "dump %s lacks trailing line" % path)
        rest = rest[:-1]
        self.content = rest.replace(b"\n", b"\r\n")

    @property
    def sender(self):
        m = re.match(r"<([^>]*)>", self.mail_args or "")
        return m.group(1) if m else None

    @property
    def rcpts(self):
        out = []
        for a in self.rcpt_args:
            m = re.match(r"<([^>]*)>", a)
            out.append(m.group(1) if m else a)
        return out

    def __repr__(self):
        return "SinkMessage(%s from=%s rcpts=%s)" % (
            os.path.basename(self.path), self.sender, self.rcpts)


class Sink:
    """Postfix smtp-sink as the primary, behind a recording tap.

    port is the tap's listener (give it to holdfast as [primary] port);
    the tap forwards to smtp-sink on an internal port and records every
    byte both ways, so tests see the exact wire bytes (Transaction) as
    well as smtp-sink's own view (SinkMessage).  stop() closes both:
    the primary is down (connection refused)."""

    def __init__(self, env, name="sink", port=None, options=(), tap=True,
                 hostname="primary.sink.test"):
        self.env = env
        self.name = name
        self.port = port or free_port()
        self.tap_enabled = tap
        self.inner_port = free_port() if tap else self.port
        self.options = list(options)
        self.hostname = hostname
        self.dump_dir = env.artifact(env.path(name + "-dump"))
        self.tap_dir = env.artifact(env.path(name + "-tap"))
        self.out_path = env.artifact(env.path(name + ".out"))
        os.makedirs(self.dump_dir, exist_ok=True)
        os.makedirs(self.tap_dir, exist_ok=True)
        shutil.chown(self.dump_dir, "nobody")
        self.proc = None
        self.tap = None
        self.starts = 0

    def __repr__(self):
        return "Sink(%s:%d)" % (self.name, self.port)

    def start(self, options=None):
        if options is not None:
            self.options = list(options)
        self.starts += 1
        out = open(self.out_path, "ab")
        try:
            # %H%M%S. plus smtp-sink's random hex: unique per message
            argv = [SMTP_SINK, "-u", "nobody", "-h", self.hostname,
                    "-d", os.path.join(self.dump_dir, "%H%M%S."),
                    "-t", "60"] + self.options + [
                "127.0.0.1:%d" % self.inner_port, "100"]
            out.write(("=== %s\n" % " ".join(argv)).encode())
            out.flush()
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=out)
        finally:
            out.close()
        wait_port(self.inner_port, 10, self.proc, "smtp-sink")
        if self.tap_enabled:
            self.tap = Tap(self.port, self.inner_port, self.tap_dir,
                           self.starts)
            self.tap.start()
        return self

    def _terminate(self):
        """Stop the tap and smtp-sink (TERM, then KILL after 10 s)."""
        if self.tap:
            self.tap.stop()
            self.tap = None
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self):
        self._terminate()
        self.proc = None
        wait_until(lambda: not port_open(self.port, 0.2), 5,
                   "sink port %d to close" % self.port)

    def clear_dumps(self, tap=False):
        """Forget what smtp-sink dumped so far (smtp-sink dumps a message
        even when it then refuses it, e.g. with -r .).  With tap, forget
        the tap's transcripts too (only while the sink is stopped)."""
        for p in glob.glob(os.path.join(self.dump_dir, "*")):
            os.unlink(p)
        if tap:
            check(self.tap is None, "clear_dumps(tap=True) on a running "
                  "sink")
            for p in glob.glob(os.path.join(self.tap_dir, "*")):
                os.unlink(p)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def restart(self, options=None):
        self.stop()
        return self.start(options)

    def cleanup(self):
        self._terminate()

    def _open_files(self):
        if not self.running():
            return set()
        fds = "/proc/%d/fd" % self.proc.pid
        out = set()
        try:
            for x in os.listdir(fds):
                try:
                    out.add(os.readlink(os.path.join(fds, x)))
                except OSError:
                    pass
        except OSError:
            pass
        return out

    def messages(self):
        """Completed dumps (smtp-sink closes a dump at the final dot and
        deletes it when the transaction is aborted), oldest first."""
        # List first, then ask what is open: a dump created in between is
        # then either seen open (skipped) or already complete.
        listed = glob.glob(os.path.join(self.dump_dir, "*"))
        open_now = self._open_files()
        paths = [p for p in listed if p not in open_now]
        paths.sort(key=lambda p: (os.path.getmtime(p), p))
        out = []
        for p in paths:
            with open(p, "rb") as f:
                out.append(SinkMessage(p, f.read()))
        return out

    def count(self):
        return len(self.messages())

    def wait_count(self, n, timeout, exact=True):
        """Wait until at least n messages are dumped; returns them.  With
        exact, fail if more than n arrive."""
        msgs = wait_until(lambda: (lambda m: m if len(m) >= n else None)(
            self.messages()), timeout, "%d message(s) at %s (have %d)"
            % (n, self.name, self.count()))
        if exact:
            check(len(msgs) == n, "%s got %d messages, expected %d"
                  % (self.name, len(msgs), n))
        return msgs

    def transactions(self):
        """Exact wire transactions holdfast sent (all tap sessions)."""
        return parse_tap_dir(self.tap_dir)

    def delivered_transactions(self):
        return [t for t in self.transactions() if t.delivered]


# ---------------------------------------------------------------- tap

class Tap:
    """TCP forwarder 127.0.0.1:listen -> 127.0.0.1:target recording each
    connection as NNN.c2s / NNN.s2c in dir."""

    def __init__(self, listen_port, target_port, dirpath, generation=1):
        self.listen_port = listen_port
        self.target_port = target_port
        self.dir = dirpath
        self.gen = generation
        self.lsock = None
        self.conns = []
        self.threads = []
        self.lock = threading.Lock()
        self.n = 0
        self.stopping = False

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.listen_port))
        s.listen(64)
        s.settimeout(0.2)
        self.lsock = s
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self.threads.append(t)

    def _accept_loop(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            try:
                u = socket.create_connection(("127.0.0.1", self.target_port),
                                             timeout=5)
            except OSError:
                c.close()
                continue
            c.settimeout(None)
            u.settimeout(None)
            with self.lock:
                self.n += 1
                base = os.path.join(self.dir, "%02d-%04d" % (self.gen,
                                                            self.n))
                self.conns += [c, u]
            for src, dst, suffix in ((c, u, ".c2s"), (u, c, ".s2c")):
                t = threading.Thread(target=self._pump,
                                     args=(src, dst, base + suffix),
                                     daemon=True)
                t.start()
                self.threads.append(t)

    @staticmethod
    def _pump(src, dst, path):
        with open(path, "wb") as f:
            while True:
                try:
                    data = src.recv(1 << 16)
                except OSError:
                    data = b""
                if not data:
                    break
                f.write(data)
                f.flush()
                try:
                    dst.sendall(data)
                except OSError:
                    break
        for s in (dst,):
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        with open(path + ".done", "w"):
            pass

    def stop(self):
        self.stopping = True
        if self.lsock:
            try:
                self.lsock.close()
            except OSError:
                pass
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass
        for t in self.threads:
            t.join(5)

    def cleanup(self):              # so that env.own(tap) stops it
        self.stop()


class Transaction:
    """One MAIL..end-of-data transaction on the wire to the primary."""

    def __init__(self):
        self.session = None
        self.helo = None
        self.mail = None          # raw MAIL argument line
        self.rcpts = []           # [(raw arg, Reply-code)]
        self.data_raw = None      # dot-stuffed bytes incl. terminator
        self.content = None       # un-stuffed, without terminator
        self.final = None         # reply code to the final dot / BDAT LAST
        self.final_text = None

    @property
    def sender(self):
        m = re.search(r"FROM:\s*<([^>]*)>", self.mail or "", re.I)
        return m.group(1) if m else None

    @property
    def accepted_rcpts(self):
        out = []
        for arg, code in self.rcpts:
            m = re.search(r"TO:\s*<([^>]*)>", arg, re.I)
            if code == 250 and m:
                out.append(m.group(1))
        return out

    @property
    def delivered(self):
        return self.final == 250

    def line_end_problems(self):
        """Bare LF or bare CR in what was sent as data."""
        d = self.data_raw or b""
        probs = []
        if re.search(rb"(?<!\r)\n", d):
            probs.append("bare LF")
        if re.search(rb"\r(?!\n)", d):
            probs.append("bare CR")
        if b"\x00" in d:
            probs.append("NUL")
        return probs

    def __repr__(self):
        return "Transaction(%s from=%s rcpts=%s final=%s)" % (
            self.session, self.sender, self.rcpts, self.final)


def _split_replies(s2c):
    replies = []
    cur = []
    for line in s2c.split(b"\r\n"):
        if not line:
            continue
        cur.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            try:
                code = int(line[:3])
            except ValueError:
                code = 0
            replies.append((code, b"\n".join(cur)))
            cur = []
    return replies


def unstuff(data):
    """DATA payload through the terminating '.\\r\\n' -> content."""
    body = data[:-3]               # drop ".\r\n"
    lines = body.split(b"\r\n")
    return b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines)


def parse_session(c2s, s2c, name=""):
    """Walk client bytes and server replies in lockstep (pipelining keeps
    order).  Returns [Transaction]."""
    replies = _split_replies(s2c)
    ri = 1 if replies else 0        # 0 = greeting
    pos = 0
    txs = []
    tx = None
    helo = None

    def next_reply():
        nonlocal ri
        if ri < len(replies):
            r = replies[ri]
            ri += 1
            return r
        return (None, b"")
    while pos < len(c2s):
        eol = c2s.find(b"\r\n", pos)
        if eol < 0:
            break
        line = c2s[pos:eol].decode("utf-8", "replace")
        pos = eol + 2
        verb = line.split(" ", 1)[0].upper()
        code, text = next_reply()
        if verb in ("EHLO", "HELO", "LHLO"):
            helo = line.split(" ", 1)[1] if " " in line else ""
        elif verb == "MAIL":
            tx = Transaction()
            tx.session = name
            tx.helo = helo
            tx.mail = line
            if code == 250:
                txs.append(tx)
            else:
                tx = None
        elif verb == "RCPT" and tx is not None:
            tx.rcpts.append((line, code))
        elif verb == "DATA" and tx is not None:
            if code != 354:
                continue
            if c2s.startswith(b".\r\n", pos):
                end = pos + 3
            else:
                k = c2s.find(b"\r\n.\r\n", pos)
                if k < 0:
                    tx.data_raw = c2s[pos:]
                    break
                end = k + 5
            tx.data_raw = c2s[pos:end]
            tx.content = unstuff(tx.data_raw)
            pos = end
            tx.final, tx.final_text = next_reply()
            tx = None
        elif verb == "BDAT" and tx is not None:
            parts = line.split()
            n = int(parts[1])
            chunk = c2s[pos:pos + n]
            pos += n
            tx.content = (tx.content or b"") + chunk
            tx.data_raw = (tx.data_raw or b"") + chunk
            if len(parts) > 2 and parts[2].upper() == "LAST":
                tx.final, tx.final_text = code, text
                tx = None
            elif code != 250:
                tx = None
        elif verb == "RSET":
            tx = None
    return txs


def parse_tap_session(base):
    """The transactions of one tapped session, from base.c2s and base.s2c
    (the latter may not exist yet)."""
    with open(base + ".c2s", "rb") as f:
        c2s = f.read()
    try:
        with open(base + ".s2c", "rb") as f:
            s2c = f.read()
    except FileNotFoundError:
        s2c = b""
    return parse_session(c2s, s2c, os.path.basename(base))


def parse_tap_dir(d):
    out = []
    for c in sorted(glob.glob(os.path.join(d, "*.c2s"))):
        out += parse_tap_session(c[:-4])
    return out


# ---------------------------------------------------------------- received

# The contract shows "(unknown [127.0.0.1])"; a daemon that resolves the
# client's PTR writes "(localhost [127.0.0.1])", as Postfix does: both are
# accepted.  "for <rcpt>" is required for one recipient (checked by
# verify_deliveries) and may be left out with several, as Postfix does.
RECEIVED_RE = re.compile(
    rb"\AReceived: from (?P<helo>[^ \r\n]*) \((?P<rdns>[^ \r\n]+) "
    rb"\[127\.0\.0\.1\]\)\r\n"
    rb"\tby (?P<by>[^ ]+) \(holdfast\) with (?P<proto>[A-Z]+)"
    rb"(?: \((?P<tls>TLSv[^)\r\n]*)\))? id "
    rb"(?P<id>[0-9a-f]{16})(?:\r\n\tfor <(?P<rcpt>[^>]*)>)?;"
    rb"(?: |\r\n\t)(?P<date>[^\r\n]+)\r\n")
RECEIVED_ANY_RE = re.compile(rb"\AReceived: from [^\r\n]*\r\n(?:[ \t][^\r\n]"
                             rb"*\r\n)*")


def split_received(content):
    """(holdfast's Received header match, rest) for delivered content; the
    match is None if the first header is not holdfast's."""
    m = RECEIVED_RE.match(content)
    if not m:
        return None, content
    return m, content[m.end():]


def strip_top_received(content, n=1):
    for _ in range(n):
        m = RECEIVED_ANY_RE.match(content)
        if not m:
            return None
        content = content[m.end():]
    return content


def check_delivered_copy(content, original, qid=None, rcpt=None,
                         by="mx2.example.test", what="message"):
    """Delivered content == holdfast's Received header + original."""
    m, rest = split_received(content)
    check(m is not None, "%s: first header is not holdfast's Received: %r"
          % (what, content[:300]))
    if qid:
        check(m.group("id").decode() == qid, "%s: Received id %s, queue id "
              "%s" % (what, m.group("id").decode(), qid))
    if rcpt:
        check(m.group("rcpt") is not None, "%s: Received lacks 'for <%s>'"
              % (what, rcpt))
        check(m.group("rcpt").decode().lower() == rcpt.lower(),
              "%s: Received for <%s>, expected <%s>"
              % (what, m.group("rcpt").decode(), rcpt))
    check(m.group("by").decode() == by, "%s: Received by %s"
          % (what, m.group("by").decode()))
    if rest != original:
        i = next((k for k in range(min(len(rest), len(original)))
                  if rest[k] != original[k]), min(len(rest), len(original)))
        fail("%s differs from what was sent at byte %d (len %d vs %d): "
             "got %r, sent %r" % (what, i, len(rest), len(original),
                                 rest[max(0, i - 20):i + 40],
                                 original[max(0, i - 20):i + 40]))
    return m


# ---------------------------------------------------------------- postfix

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    """A private Postfix instance: own config_directory, queue_directory
    and data_directory under the test dir (so its master.pid and
    master.lock are its own), no chroot, smtpd on 127.0.0.1:port,
    logging to its own maillog_file.

    role='sender': relays everything to [127.0.0.1]:relay_port.
    role='primary': relay_domains = domains, relays them to
    [127.0.0.1]:relay_port (a Sink); access maps recipient -> action
    (e.g. {"tempfail@example.test": "450 4.7.1 try later"}); change it
    with set_access() (rewrites the texthash file and reloads)."""

    def __init__(self, env, name="postfix", role="sender", relay_port=None,
                 domains=("example.test", "example.org"), access=None,
                 port=None, main=None):
        self.env = env
        self.name = name
        self.role = role
        self.port = port or free_port()
        self.relay_port = relay_port
        self.domains = list(domains)
        self.base = env.path(name)
        self.etc = os.path.join(self.base, "etc")
        self.queue = os.path.join(self.base, "queue")
        self.data = os.path.join(self.base, "data")
        self.maillog = env.artifact(os.path.join(self.base, "maillog"))
        self.access_file = os.path.join(self.etc, "access")
        self.access = dict(access or {})
        self.extra_main = dict(main or {})
        self.started = False

    def __repr__(self):
        return "Postfix(%s %s:%d)" % (self.role, self.name, self.port)

    def _main_cf(self):
        host = "%s.harness.test" % self.name
        m = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": self.data,
            "command_directory": "/usr/sbin",
            "daemon_directory": "/usr/lib/postfix/sbin",
            "shlib_directory": "/usr/lib/postfix",
            "meta_directory": "/etc/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": host,
            "mydomain": "harness.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.base,
            "alias_maps": "",
            "alias_database": "",
            "local_header_rewrite_clients": "",
            "smtp_dns_support_level": "disabled",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "smtputf8_enable": "yes",
            "biff": "no",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "smtp_connect_timeout": "5s",
            "message_size_limit": "60000000",
            "smtpd_client_connection_rate_limit": "0",
            "smtpd_client_message_rate_limit": "0",
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "1000",
            "smtpd_hard_error_limit": "1000",
            "default_destination_concurrency_limit": "4",
            "initial_destination_concurrency": "4",
        }
        relay = "smtp:[127.0.0.1]:%d" % self.relay_port
        if self.role == "sender":
            m.update({
                "relayhost": "[127.0.0.1]:%d" % self.relay_port,
                "relay_domains": "",
                "default_transport": "smtp",
                "smtpd_recipient_restrictions":
                    "permit_mynetworks, reject",
            })
        else:
            m.update({
                "relay_domains": ", ".join(self.domains),
                "relay_transport": relay,
                "default_transport": "error:5.7.1 not a relay domain",
                "smtpd_recipient_restrictions":
                    "check_recipient_access texthash:%s, "
                    "permit_mynetworks, reject_unauth_destination"
                    % self.access_file,
            })
        m.update(self.extra_main)
        return "".join("%s = %s\n" % kv for kv in m.items())

    def _write_access(self):
        with open(self.access_file, "w") as f:
            for k, v in self.access.items():
                f.write("%s %s\n" % (k, v))

    def setup(self):
        for d in (self.etc, self.queue, self.data):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.base, 0o755)
        shutil.chown(self.data, "postfix")
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(self._main_cf())
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port))
        self._write_access()

    def postfix_cmd(self, *args, timeout=60):
        return run_pty([POSTFIX, "-c", self.etc] + list(args),
                       timeout=timeout)

    def start(self):
        self.setup()
        rc, out = self.postfix_cmd("check")
        check(rc == 0, "postfix -c %s check failed: %s" % (self.etc, out))
        rc, out = self.postfix_cmd("start")
        check(rc == 0, "postfix -c %s start failed: %s" % (self.etc, out))
        self.started = True
        wait_port(self.port, 20, what="postfix %s smtpd" % self.name)
        return self

    def master_pid(self):
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def stop(self):
        if not self.started:
            return
        pid = self.master_pid()
        rc, out = self.postfix_cmd("stop")
        if pid:
            if not wait_pid_gone(pid, 15):
                # our own instance's master, by PID
                stop_pid(pid, 5, signal.SIGKILL)
        self.started = False

    def cleanup(self):
        self.stop()

    def reload(self):
        rc, out = self.postfix_cmd("reload")
        check(rc == 0, "postfix reload failed: %s" % out)

    def set_access(self, access):
        self.access = dict(access)
        self._write_access()
        self.reload()

    def queue_listing(self):
        rc, out = run_pty([POSTQUEUE, "-c", self.etc, "-p"], timeout=30)
        return out

    def queue_empty(self):
        return "Mail queue is empty" in self.queue_listing()

    def flush(self):
        run_pty([POSTQUEUE, "-c", self.etc, "-f"], timeout=30)

    def log_text(self):
        try:
            with open(self.maillog, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


def wait_pid_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


# ---------------------------------------------------------------- misc

def compile_c(env, src_text, name, extra=()):
    """Compile a tiny C program for harness self-checks."""
    src = env.path(name + ".c")
    with open(src, "w") as f:
        f.write(src_text)
    out = env.path(name)
    p = subprocess.run(["cc", "-O1", "-o", out, src] + list(extra),
                       capture_output=True, text=True, timeout=120)
    check(p.returncode == 0, "cc %s: %s" % (name, p.stderr))
    return out


def try_mount_tmpfs(path, size="2m"):
    """Mount a small tmpfs at path; returns True if it worked."""
    os.makedirs(path, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755"
                        % size, "tmpfs", path], capture_output=True,
                       text=True, timeout=30)
    return p.returncode == 0


def umount(path):
    for _ in range(20):
        p = subprocess.run(["umount", path], capture_output=True, text=True,
                           timeout=30)
        if p.returncode == 0 or "not mounted" in p.stderr:
            return True
        time.sleep(0.25)
    return False


class Mount:
    """A tmpfs owned by the test (unmounted at cleanup)."""

    def __init__(self, path, size):
        self.path = path
        self.size = size
        self.mounted = False

    def mount(self):
        self.mounted = try_mount_tmpfs(self.path, self.size)
        return self.mounted

    def cleanup(self):
        if self.mounted:
            umount(self.path)
            self.mounted = False


# ---------------------------------------------------------------- deliveries

def norm_addr(a):
    a = (a or "").strip().strip("<>").lower()
    return a[:-1] if a.endswith(".") else a


class Sent:
    """A message a client got 250 for."""

    def __init__(self, token, qid, content, rcpts, sender=None,
                 all_rcpts=None):
        self.token = token
        self.qid = qid
        self.content = content
        self.rcpts = list(rcpts)          # expected at the primary
        self.all_rcpts = list(all_rcpts or rcpts)   # given to holdfast
        self.sender = sender

    def __repr__(self):
        return "Sent(%s %s)" % (self.token, self.qid)


def smtplib_send(port, sender, rcpts, content, helo="client.test",
                 timeout=120):
    """Send with smtplib; returns (queue id or None, final code, text,
    {rcpt: code})."""
    import smtplib
    with smtplib.SMTP("127.0.0.1", port, local_hostname=helo,
                      timeout=timeout) as s:
        s.ehlo(helo)
        code, text = s.mail(sender)
        check(code == 250, "MAIL FROM:<%s> -> %s %r" % (sender, code, text))
        rc = {}
        for r in rcpts:
            rc[r] = s.rcpt(r)[0]
        if not any(c == 250 for c in rc.values()):
            return None, None, b"", rc
        code, text = s.data(content)
        m = re.search(rb"queued as (" + ID_RE.encode() + rb")\s*$", text)
        qid = m.group(1).decode() if m and code == 250 else None
        return qid, code, text, rc


def send_ok(port, token, rcpts=("rcpt@example.test",), content=None,
            sender="sender@client.test", helo="client.test"):
    """Send one message that must be queued; returns Sent."""
    content = content if content is not None else make_message(token)
    qid, code, text, rc = smtplib_send(port, sender, rcpts, content, helo)
    for r, c in rc.items():
        check(c == 250, "RCPT TO:<%s> -> %s" % (r, c))
    check(code == 250 and qid, "message %s: end of DATA -> %s %r (want "
          "'250 2.0.0 Ok: queued as ID')" % (token, code, text))
    check(text.startswith(b"2.0.0 Ok: queued as "), "message %s: reply text "
          "%r" % (token, text))
    return Sent(token, qid, content, rcpts, sender)


def sink_copies(sink, strip=0):
    """{token: [(SinkMessage, content after stripping `strip` top Received
    headers)]} for everything the sink has."""
    out = {}
    for m in sink.messages():
        c = m.content
        if strip:
            c = strip_top_received(c, strip)
            check(c is not None, "sink message %s lacks %d Received "
                  "headers" % (m.path, strip))
        _, rest = split_received(c)
        out.setdefault(token_of(rest), []).append((m, c))
    return out


def verify_deliveries(sink, sent, timeout, strip=0, settle=2.0,
                      by="mx2.example.test", allow_extra=False,
                      check_tap=True):
    """Wait until every Sent reached the sink for all its recipients, then
    check: each recipient exactly once, content = holdfast's Received +
    original (id = queue id, 'for' one of the recipients), nothing
    unexpected arrived, and (with the tap) the wire bytes were CRLF-only
    and identical to smtp-sink's view.  strip: Received headers added by
    hops after holdfast (a Postfix primary)."""
    want = {s.token: s for s in sent}

    def complete():
        got = sink_copies(sink, strip)
        for s in sent:
            have = set()
            for m, _ in got.get(s.token, []):
                have.update(norm_addr(r) for r in m.rcpts)
            if not set(norm_addr(r) for r in s.rcpts) <= have:
                return None
        return got
    try:
        wait_until(complete, timeout, "delivery of %d message(s)"
                   % len(sent), interval=0.2)
    except Fail:
        got = sink_copies(sink, strip)
        missing = [s.token for s in sent if s.token not in got]
        fail("not all delivered within %.0fs: missing %s (sink has %d)"
             % (timeout, missing[:10], len(sink.messages())))
    if settle:
        time.sleep(settle)
    got = sink_copies(sink, strip)
    for tok, copies in got.items():
        if tok not in want:
            if allow_extra:
                continue
            fail("unexpected message at the sink: token %r (%r)"
                 % (tok, copies[0][0]))
        s = want[tok]
        seen = []
        for m, c in copies:
            seen += [norm_addr(r) for r in m.rcpts]
            mm = check_delivered_copy(c, s.content, qid=s.qid, by=by,
                                      what="message %s" % tok)
            rc = [norm_addr(r) for r in m.rcpts]
            check(mm.group("rdns") in (b"unknown", b"localhost"),
                  "message %s: Received client name %r" % (tok,
                                                           mm.group("rdns")))
            if mm.group("rcpt") is None:
                check(len(s.all_rcpts) > 1, "message %s: Received lacks "
                      "'for <%s>'" % (tok, s.all_rcpts[0]))
                continue
            check(norm_addr(mm.group("rcpt").decode()) in
                  [norm_addr(r) for r in s.all_rcpts],
                  "message %s: Received 'for <%s>' is not a recipient"
                  % (tok, mm.group("rcpt").decode()))
            # the header is written once at acceptance: with one
            # recipient it must name that recipient
            if len(s.all_rcpts) == 1:
                check(norm_addr(mm.group("rcpt").decode()) == rc[0],
                      "message %s: Received for <%s> but delivered to <%s>"
                      % (tok, mm.group("rcpt").decode(), rc[0]))
        dups = sorted(set(r for r in seen if seen.count(r) > 1))
        check(not dups, "message %s delivered more than once to %s"
              % (tok, dups))
        extra = set(seen) - set(norm_addr(r) for r in s.rcpts)
        check(not extra, "message %s delivered to unexpected %s"
              % (tok, sorted(extra)))
    if check_tap and sink.tap_enabled and not strip:
        for t in sink.delivered_transactions():
            probs = t.line_end_problems()
            check(not probs, "primary received %s in data of %r"
                  % (probs, t))
        tap = sorted(t.content for t in sink.delivered_transactions())
        dump = sorted(m.content for m in sink.messages())
        check(tap == dump, "wire bytes (tap, %d msgs) differ from smtp-sink "
              "dumps (%d msgs)" % (len(tap), len(dump)))
    return got


def check_log_lifecycle(daemon, sent, since=0, timeout=10):
    """accepted, delivered (per recipient) and removed logged per id."""
    def problems():
        ev = daemon.events(since=since)
        out = []
        for s in sent:
            kinds = [e[1] for e in ev if e[0] == s.qid]
            for k in ("accepted", "delivered", "removed"):
                if k not in kinds:
                    out.append("no 'msg=%s %s' in log" % (s.qid, k))
        return out
    deadline = time.monotonic() + timeout
    while problems() and time.monotonic() < deadline:
        time.sleep(0.2)
    p = problems()
    check(not p, "; ".join(p[:3]))


# ---------------------------------------------------------------- holdfastctl

def ctl_bin():
    return os.path.join(build_dir(), "holdfastctl")


class CtlResult:
    """One holdfastctl run."""

    def __init__(self, argv, rc, out, err):
        self.argv = argv
        self.rc = rc
        self.out = out
        self.err = err

    def __repr__(self):
        return "holdfastctl %s -> rc=%s out=%r err=%r" % (
            " ".join(self.argv), self.rc, self.out[:300], self.err[:300])

    def json(self):
        import json
        try:
            return json.loads(self.out)
        except ValueError as e:
            fail("%r: not JSON: %s" % (self, e))

    def ok(self):
        check(self.rc == 0, "%r (wanted exit 0)" % self)
        return self


def run_ctl(args, timeout=30, env=None):
    argv = [ctl_bin()] + list(args)
    check(os.access(argv[0], os.X_OK), "no %s (make)" % argv[0])
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        fail("holdfastctl %s timed out after %ds" % (" ".join(args),
                                                     timeout))
    return CtlResult(list(args), p.returncode,
                     p.stdout.decode("utf-8", "replace"),
                     p.stderr.decode("utf-8", "replace"))


# ---------------------------------------------------------------- HTTP

def http_get(host, port, path, source=None, timeout=10, method="GET"):
    """One HTTP/1.1 request; the client bound to source (e.g. 127.0.0.2).
    Returns (status, {lowercased header: value}, body text)."""
    import http.client
    c = http.client.HTTPConnection(host, port, timeout=timeout,
                                   source_address=(source, 0)
                                   if source else None)
    try:
        c.request(method, path)
        r = c.getresponse()
        body = r.read().decode("utf-8", "replace")
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    except OSError as e:
        fail("%s %s:%d%s from %s: %s" % (method, host, port, path, source,
                                         e))
    finally:
        c.close()


# ---------------------------------------------------------------- Prometheus

PROM_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
PROM_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_PROM_SAMPLE = re.compile(r"^(" + PROM_NAME + r")(?:\{(.*)\})?[ \t]+(\S+)"
                          r"(?:[ \t]+(-?[0-9]+))?$")
_PROM_LABEL_PAIR = re.compile(r'\s*(' + PROM_LABEL + r')="((?:[^"\\\n]|'
                              r'\\[\\"n])*)"\s*(,|$)')
_PROM_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class PromText:
    """A parsed text exposition: families with HELP/TYPE and samples keyed
    by (name, frozenset of label pairs)."""

    def __init__(self, text):
        self.text = text
        self.help = {}
        self.type = {}
        self.samples = {}     # (name, frozenset(labels)) -> float

    def get(self, name, **labels):
        """The sample's value; fails if absent."""
        k = (name, frozenset(labels.items()))
        check(k in self.samples, "metric %s%s missing from /metrics"
              % (name, labels or ""))
        return self.samples[k]

    def has(self, name, **labels):
        return (name, frozenset(labels.items())) in self.samples

    def series(self, name):
        """{frozenset(labels): value} for every sample of family name."""
        return {k[1]: v for k, v in self.samples.items() if k[0] == name}


def _prom_family(name, types):
    """The family a sample name belongs to (histogram/summary suffixes)."""
    if name in types:
        return name
    for suf in ("_bucket", "_sum", "_count"):
        if name.endswith(suf) and name[:-len(suf)] in types:
            return name[:-len(suf)]
    return name


def _prom_value(v, line):
    if v in ("+Inf", "Inf"):
        return float("inf")
    if v == "-Inf":
        return float("-inf")
    if v == "NaN":
        return float("nan")
    try:
        return float(v)
    except ValueError:
        fail("/metrics: bad value %r in line %r" % (v, line))


def parse_prom(text):
    """Parse and validate Prometheus text format 0.0.4: every line a
    comment, HELP, TYPE or sample; HELP and TYPE at most once per family
    and before its samples; a family's samples contiguous; label sets
    well-formed and unique; no duplicate series; ends with a newline."""
    p = PromText(text)
    check(text.endswith("\n"), "/metrics does not end with a newline")
    seen_families = []          # in order of first appearance
    closed = set()              # families whose block has ended
    current = None
    for line in text.split("\n")[:-1]:
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                check(re.fullmatch(PROM_NAME, name), "/metrics: bad name "
                      "in %r" % line)
                rest = parts[3] if len(parts) > 3 else ""
                if parts[1] == "HELP":
                    check(name not in p.help, "/metrics: second HELP for "
                          "%s" % name)
                    p.help[name] = rest
                else:
                    check(name not in p.type, "/metrics: second TYPE for "
                          "%s" % name)
                    check(rest in _PROM_TYPES, "/metrics: bad TYPE %r"
                          % line)
                    check(not any(_prom_family(k[0], {name: 1}) == name
                                  for k in p.samples),
                          "/metrics: TYPE for %s after its samples" % name)
                    p.type[name] = rest
                if name != current:
                    check(name not in closed, "/metrics: family %s split "
                          "into two blocks" % name)
                    if current is not None:
                        closed.add(current)
                    current = name
                    seen_families.append(name)
            continue
        m = _PROM_SAMPLE.match(line)
        check(m, "/metrics: malformed line %r" % line)
        name, lbl, val = m.group(1), m.group(2), m.group(3)
        labels = {}
        if lbl:
            pos = 0
            while pos < len(lbl):
                lm = _PROM_LABEL_PAIR.match(lbl, pos)
                check(lm, "/metrics: malformed labels in %r" % line)
                check(lm.group(1) not in labels, "/metrics: label %s twice "
                      "in %r" % (lm.group(1), line))
                labels[lm.group(1)] = (lm.group(2).replace("\\n", "\n")
                                       .replace('\\"', '"')
                                       .replace("\\\\", "\\"))
                pos = lm.end()
        fam = _prom_family(name, p.type)
        if fam != current:
            check(fam not in closed, "/metrics: family %s split into two "
                  "blocks" % fam)
            if current is not None:
                closed.add(current)
            current = fam
            seen_families.append(fam)
        key = (name, frozenset(labels.items()))
        check(key not in p.samples, "/metrics: series %r twice" % line)
        p.samples[key] = _prom_value(val, line)
    return p


# ---------------------------------------------------------------- /proc

def proc_status(pid):
    """/proc/PID/status as {key: value string}."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except OSError as e:
        fail("cannot read /proc/%d/status: %s" % (pid, e))
    return out


def rss_kb(pid):
    """VmRSS of pid in kB."""
    v = proc_status(pid).get("VmRSS", "0 kB")
    return int(v.split()[0])


# ---------------------------------------------------------------- TLS

OPENSSL = "/usr/bin/openssl"


def openssl(args, timeout=60, input=None):
    """Run openssl ARGS; fails unless it exits 0; returns stdout bytes."""
    check(os.access(OPENSSL, os.X_OK), "no %s" % OPENSSL)
    p = subprocess.run([OPENSSL] + list(args), capture_output=True,
                       timeout=timeout, input=input,
                       stdin=None if input is not None else
                       subprocess.DEVNULL)
    check(p.returncode == 0, "openssl %s: %s" % (" ".join(args),
                                                 p.stderr.decode()[-500:]))
    return p.stdout


def pem_fingerprint(path):
    """SHA-256 (hex) of the first certificate in a PEM file."""
    import hashlib
    import ssl
    with open(path) as f:
        text = f.read()
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----",
                  text, re.S)
    check(m, "no certificate in %s" % path)
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(m.group(0))).hexdigest()


class TestCA:
    """A throwaway CA (EC P-256) made with openssl in the test's dir; issue()
    makes server certificates signed by it."""

    def __init__(self, env, name="ca"):
        self.env = env
        self.dir = env.path(name)
        os.makedirs(self.dir, exist_ok=True)
        self.cert = os.path.join(self.dir, "ca.pem")
        self.key = os.path.join(self.dir, "ca.key")
        self.serial = random.randint(1 << 32, 1 << 60)
        openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                 self.key, "-out", self.cert, "-days", "30", "-subj",
                 "/CN=holdfast test CA %s" % name, "-addext",
                 "basicConstraints=critical,CA:TRUE", "-addext",
                 "keyUsage=critical,keyCertSign,cRLSign"])
        os.chmod(self.cert, 0o644)

    def issue(self, name, dns=("mx2.example.test",), owner="nobody",
              days=30):
        """(cert path, key path) for a leaf with subjectAltName dns.  The
        key is 0600 and owned by owner: the daemon, after dropping root,
        reads it again on SIGHUP."""
        cert = os.path.join(self.dir, name + ".pem")
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints = CA:FALSE\n"
                    "keyUsage = critical, digitalSignature\n"
                    "extendedKeyUsage = serverAuth\n"
                    "subjectAltName = %s\n"
                    % ", ".join("DNS:" + d for d in dns))
        openssl(["req", "-new", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
                 "-out", csr, "-subj", "/CN=%s" % dns[0]])
        self.serial += 1
        openssl(["x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey",
                 self.key, "-set_serial", str(self.serial), "-days", str(days),
                 "-extfile", ext, "-out", cert])
        os.chmod(cert, 0o644)
        os.chmod(key, 0o600)
        if owner and os.geteuid() == 0:
            shutil.chown(key, owner)
        return cert, key


def tls_client_context(cafile=None, version=None):
    """An ssl context: verifying against cafile (hostname checked) or not
    verifying at all; version pins min and max (ssl.TLSVersion)."""
    import ssl
    if cafile:
        ctx = ssl.create_default_context(cafile=cafile)
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
    return ctx


# ---------------------------------------------------------------- DNS

DNSMASQ = "/usr/sbin/dnsmasq"


class Dnsmasq:
    """dnsmasq in the foreground on 127.0.0.1:port (UDP and TCP), no
    upstream, no /etc/hosts; args add records (e.g.
    "--host-record=2.0.0.127.bl.test,127.0.0.2")."""

    def __init__(self, env, args=(), port=None, name="dnsmasq"):
        self.env = env
        self.port = port or free_port()
        self.args = list(args)
        self.log = env.artifact(env.path(name + ".log"))
        self.proc = None

    def start(self):
        if not os.access(DNSMASQ, os.X_OK):
            fail("no %s (scripts/setup-deps installs dnsmasq-base)"
                 % DNSMASQ)
        argv = [DNSMASQ, "--no-daemon", "--port=%d" % self.port,
                "--listen-address=127.0.0.1", "--bind-interfaces",
                "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
                "--log-facility=-", "--log-queries"] + self.args
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=logf)
        wait_port(self.port, timeout=10, proc=self.proc, what="dnsmasq")
        return self

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            stop_pid(self.proc.pid, timeout=5)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def rcpt_reply(port, source, sender="s@client.test",
               rcpt="rcpt@example.test"):
    """EHLO, MAIL and one RCPT from the loopback address source; the
    RCPT's Reply (the screens decide it), then QUIT."""
    c = SMTPClient(port, timeout=30, source=source)
    try:
        c.ehlo()
        c.cmd("MAIL FROM:<%s>" % sender, expect=250)
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        c.quit()
        return r
    finally:
        c.close()


# spool format 2 (one file per message): header, two envelope slots, body
import stat as _stat  # noqa: E402

SPOOL_HDR_LEN = 32
SPOOL_SLOT_LINE = 47
_SPOOL_HDR_RE = re.compile(rb"hfspool 1 slot=([0-9a-f]{8}) {8}\n\Z")
_SPOOL_SLOT_RE = re.compile(
    rb"env ([0-9a-f]{16}) ([0-9a-f]{8}) ([0-9a-f]{16})\n\Z")


def spool_fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return h


def spool_slot_size(env_len):
    """The default slot size for an envelope of env_len bytes."""
    need = max(1024, (3 * (SPOOL_SLOT_LINE + env_len) + 1) // 2 + 128)
    return (need + 255) // 256 * 256


def spool_slot(seq, text, size):
    """The bytes of one envelope slot (seq, text) padded to size."""
    line = b"env %016x %08x " % (seq, len(text))
    line += b"%016x\n" % spool_fnv1a64(line + text)
    if SPOOL_SLOT_LINE + len(text) > size:
        raise ValueError("envelope of %d bytes does not fit a %d-byte slot"
                         % (len(text), size))
    return (line + text).ljust(size, b"\0")


def spool_msg_parse(data, what="message file"):
    """(env_text, body, slot_size, seq) of the bytes of a message file;
    ValueError if it is not a valid format-2 message."""
    m = _SPOOL_HDR_RE.match(data[:SPOOL_HDR_LEN])
    if m is None:
        raise ValueError("%s: bad header %r" % (what, data[:SPOOL_HDR_LEN]))
    size = int(m.group(1), 16)
    if size < SPOOL_SLOT_LINE:
        raise ValueError("%s: slot size %d too small" % (what, size))
    if len(data) < SPOOL_HDR_LEN + 2 * size:
        raise ValueError("%s: %d bytes, shorter than header and slots (%d)"
                         % (what, len(data), SPOOL_HDR_LEN + 2 * size))
    best = None
    for i in (0, 1):
        s = data[SPOOL_HDR_LEN + i * size:SPOOL_HDR_LEN + (i + 1) * size]
        sm = _SPOOL_SLOT_RE.match(s[:SPOOL_SLOT_LINE])
        if sm is None:
            continue
        seq, n, h = (int(g, 16) for g in sm.groups())
        if SPOOL_SLOT_LINE + n > size:
            continue
        text = s[SPOOL_SLOT_LINE:SPOOL_SLOT_LINE + n]
        if spool_fnv1a64(s[:30] + text) != h:
            continue
        if best is not None and best[0] == seq:
            raise ValueError("%s: both slots valid with seq %d"
                             % (what, seq))
        if best is None or seq > best[0]:
            best = (seq, text)
    if best is None:
        raise ValueError("%s: no valid envelope slot" % what)
    return (best[1].decode("utf-8", "surrogateescape"),
            data[SPOOL_HDR_LEN + 2 * size:], size, best[0])


def spool_msg_read(path):
    """(env_text, body) of the message file at path (never follows a
    symlink); ValueError if the file is corrupt."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not _stat.S_ISREG(st.st_mode):
            raise ValueError("%s: not a regular file" % path)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read()
    finally:
        os.close(fd)
    env_text, body, _, _ = spool_msg_parse(data, path)
    return env_text, body


def spool_msg_bytes(env_text, body, slot=None):
    """The bytes of a fresh message file: slot 0 seq 1, slot 1 zeros."""
    text = (env_text.encode("utf-8", "surrogateescape")
            if isinstance(env_text, str) else bytes(env_text))
    size = spool_slot_size(len(text)) if slot is None else slot
    if not 0 < size <= 0xffffffff:
        raise ValueError("slot size %r out of range" % size)
    hdr = (b"hfspool 1 slot=%08x" % size).ljust(SPOOL_HDR_LEN - 1) + b"\n"
    return hdr + spool_slot(1, text, size) + b"\0" * size + bytes(body)


def spool_msg_write(path, env_text, body, slot=None, mode=0o600):
    """Write (or overwrite in place, keeping the owner) the message file
    at path in spool format 2, fsync'd, with the given mode."""
    data = spool_msg_bytes(env_text, body, slot)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                 mode)
    try:
        os.fchmod(fd, mode)
        off = 0
        while off < len(data):
            off += os.write(fd, data[off:])
        os.fsync(fd)
    finally:
        os.close(fd)
