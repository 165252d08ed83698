#!/usr/bin/python3
"""bench: a bulk hold and delete by selector over N messages (default
2000), and how long new clients wait for their banner meanwhile.

    HOLDFAST_BUILD=build bench/bulk_select.py [N] [FSYNC_DELAY_MS]

N messages are cloned from one real message (the daemon stopped, primary
down); then `holdfastctl hold --from '*@client.test'` and `holdfastctl
delete --state held` each run while a prober connects every 20 ms and
times connect -> 220.  With FSYNC_DELAY_MS the fault shim slows every
fsync by that much (a slow cloud disk).  Prints, per command, the time to
finish and the banner wait (p50, p99, max), and the CPU the daemon used.
"""
import os
import sys
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "integration", "lib"))
sys.path.insert(0, os.path.join(here, "..", "tests", "integration"))
import holdfast as hf  # noqa: E402
from test_bulk_banner import clone  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
DELAY = int(sys.argv[2]) if len(sys.argv) > 2 else 0


def cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        f = f.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def timed(d, args):
    waits, stop = [], threading.Event()

    def probe():
        while not stop.is_set():
            t = time.monotonic()
            try:
                c = d.connect(timeout=120)
                waits.append(time.monotonic() - t)
                c.cmd("QUIT")
            except Exception:
                pass
            time.sleep(0.02)

    th = threading.Thread(target=probe)
    c0 = cpu(d.proc.pid)
    t0 = time.monotonic()
    th.start()
    r = d.ctl(*args, timeout=3600)
    took = time.monotonic() - t0
    stop.set()
    th.join()
    r.ok()
    waits.sort()
    pct = (lambda p: waits[min(len(waits) - 1, int(p * len(waits)))]
           if waits else float("nan"))
    hf.note("%-40s %7.2fs  cpu %.2fs  banner p50 %.3fs p99 %.3fs max %.3fs "
            "(%d probes)" % (" ".join(args), took, cpu(d.proc.pid) - c0,
                             pct(0.5), pct(0.99), waits[-1] if waits else 0,
                             len(waits)))


def main(env):
    sink = env.sink()
    trig = env.path("trigger")
    d = env.daemon(primary_port=sink.port,
                   primary={"probe_interval": "300s"})
    d.start()
    hf.send_ok(d.port, "template")
    d.stop()
    clone(d.spool, N - 1)
    extra = hf.shim_env("fsync:DELAY%d" % DELAY, trig) if DELAY else None
    d.start(env=extra) if extra else d.start()
    d.wait_log(r"queue loaded messages=%d\b" % N, timeout=60)
    if DELAY:
        open(trig, "w").close()
    hf.note("%d messages, fsync delay %d ms, build %s" % (N, DELAY,
                                                          hf.build_dir()))
    timed(d, ["hold", "--from", "*@client.test"])
    timed(d, ["delete", "--state", "held"])


if __name__ == "__main__":
    hf.run(main)
