#!/usr/bin/python3
"""systemd integration as the unit (Type=notify, WatchdogSec) uses it,
against a notify socket the test owns: READY=1 once the spool is scanned
and the listeners are up, WATCHDOG=1 at about half of WATCHDOG_USEC,
RELOADING=1 then READY=1 around SIGHUP, STOPPING=1 on SIGTERM; and under
the journal (JOURNAL_STREAM set) every log line carries an sd-daemon
priority prefix: <6> info, <4> warn, <7> debug."""
import os
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402


def main(env):
    path = env.path("notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    os.chmod(path, 0o777)       # the daemon drops to nobody
    sock.settimeout(0.2)
    got = []
    stop = threading.Event()

    def reader():           # like systemd: always reading
        while not stop.is_set():
            try:
                got.append((time.monotonic(), sock.recv(4096).decode()))
            except socket.timeout:
                pass
    t = threading.Thread(target=reader, daemon=True)
    t.start()

    def drain(deadline):
        time.sleep(max(0, deadline - time.monotonic()))

    def wait_for(state, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(state in m for _, m in list(got)):
                return True
            time.sleep(0.05)
        return any(state in m for _, m in list(got))

    sink = env.sink().start()
    d = env.daemon(primary_port=sink.port)
    d.start(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000",
                 "JOURNAL_STREAM": "8:12345"})
    hf.check(wait_for("READY=1", 10), "no READY=1 (got %r)" % got)
    got.clear()
    drain(time.monotonic() + 2.0)
    dogs = [w for w, m in list(got) if "WATCHDOG=1" in m]
    hf.check(len(dogs) >= 3, "WATCHDOG=1 %d times in 2 s with "
             "WATCHDOG_USEC=400000, want about 10" % len(dogs))
    got.clear()
    os.kill(d.pid, signal.SIGHUP)
    hf.check(wait_for("READY=1", 5), "no READY=1 after SIGHUP: %r" % got)
    states = [m for _, m in list(got) if "WATCHDOG" not in m]
    hf.check(states and "RELOADING=1" in states[0],
             "SIGHUP: want RELOADING=1 then READY=1, got %r" % states)
    s = hf.send_ok(d.port, "notify")
    hf.verify_deliveries(sink, [s], timeout=20)
    # a warning: the primary goes away while a message waits for it
    sink.stop()
    s2 = hf.send_ok(d.port, "warned")
    warn = d.wait_log(r"\bprimary down\b", timeout=hf.scaled(15))[0]
    hf.check(warn.startswith("<4>"), "the 'primary down' warning lacks "
             "the <4> prefix under the journal: %r" % warn)
    sink.start()
    hf.verify_deliveries(sink, [s, s2], timeout=hf.scaled(20))
    got.clear()
    d.stop()
    drain(time.monotonic() + 0.5)
    hf.check(any("STOPPING=1" in m for _, m in got), "no STOPPING=1")

    lines = [l for l in d.log_text().splitlines() if l.strip()
             and not l.startswith("faultshim") and not l.startswith("===")]
    bad = [l for l in lines if not re.match(r"<[2-7]>", l)]
    hf.check(not bad, "lines without a priority prefix under the journal: "
             "%r" % bad[:3])
    hf.check(any(l.startswith("<6>") and "holdfast ready" in l
                 for l in lines), "no '<6>... holdfast ready' line")
    hf.check(any(l.startswith("<7>") for l in lines),
             "no debug line (<7>) although -v is on")
    stop.set()
    t.join(2)
    sock.close()


hf.run(main)
