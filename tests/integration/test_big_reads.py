#!/usr/bin/python3
"""Content is read in large pieces on a plain session: a 10 MB message by
DATA and one by BDAT (1 MB chunks) cost the daemon fewer than 800 read
syscalls each (libevent 2.1 alone reads at most 4096 octets per read:
2560 or more), and both reach the primary byte-identical.  Memory per
session stays bounded: 50 MB of DATA over max_message_size (552 at the
end, nothing queued) and 100-octet BDAT chunks pipelined by a client
that never reads its replies (the daemon stops reading) leave the
daemon's RSS within a few MB; the daemon keeps serving."""
import os
import random
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

MAX_READS = 800         # per 10 MB message; 4 KB reads would be >= 2560
RSS_GROWTH_KB = 16 * 1024
# ASan keeps freed memory in quarantine (256 MB by default), which would
# count every freed input buffer as RSS; keep it small here.
ASAN_ENV = {"ASAN_OPTIONS": "abort_on_error=0:detect_leaks=1:"
            "quarantine_size_mb=4:thread_local_quarantine_size_kb=64"}


def body(size, seed):
    """CRLF lines of 0-5000 octets, some starting with dots, ~size."""
    rng = random.Random(seed)
    pool = [b"", b".", b"..", b".leading dot", b"L" * 998, b"M" * 4999,
            bytes(range(33, 127)) * 3,
            b"\xc3\xa9 eight bit \xe2\x82\xac line",
            b"The quick brown fox jumps over the lazy dog " * 2]
    parts = []
    n = 0
    while n < size:
        line = rng.choice(pool) + b"%d" % n
        parts.append(line)
        n += len(line) + 2
    parts.append(b"end")
    return b"\r\n".join(parts) + b"\r\n"


def reads(pid):
    """read syscalls (read, readv, pread...) of the whole process."""
    with open("/proc/%d/io" % pid) as f:
        for line in f:
            if line.startswith("syscr:"):
                return int(line.split()[1])
    hf.fail("no syscr in /proc/%d/io" % pid)


class RssWatch:
    """Samples VmRSS of pid every 20 ms; max_kb() since start()."""

    def __init__(self, pid):
        self.pid = pid
        self.base = hf.rss_kb(pid)
        self.peak = self.base
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop_ev.wait(0.02):
            try:
                self.peak = max(self.peak, hf.rss_kb(self.pid))
            except hf.Fail:
                return

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.t.join()
        self.peak = max(self.peak, hf.rss_kb(self.pid))

    def growth(self):
        return self.peak - self.base


def bdat_big(d, content, chunk):
    c = d.connect(timeout=120)
    c.ehlo()
    c.cmd("MAIL FROM:<bdat@client.test>", expect=250)
    c.cmd("RCPT TO:<big@example.test>", expect=250)
    wire = []
    for i in range(0, len(content), chunk):
        part = content[i:i + chunk]
        last = i + chunk >= len(content)
        wire.append(b"BDAT %d%s\r\n" % (len(part), b" LAST" if last else b"")
                    + part)
    c.send(b"".join(wire))          # pipelined (RFC 3030)
    replies = [c.reply() for _ in wire]
    for r in replies[:-1]:
        hf.check(r.code == 250, "intermediate BDAT -> %r" % r)
    c.quit()
    r = replies[-1]
    hf.check(r.code == 250 and r.queued_id(), "BDAT LAST -> %r" % r)
    return r.queued_id()


def main(env):
    # the primary stays down while we count, so that delivery's reads of
    # the spool do not add to the count
    sink = env.sink()
    d = env.daemon(primary_port=sink.port).start(env=ASAN_ENV)
    sent = []

    data_msg = hf.make_message("bigdata", body=body(10 * 1024 * 1024, 1))
    r0 = reads(d.pid)
    s = hf.send_ok(d.port, "bigdata", ["big@example.test"], data_msg)
    n = reads(d.pid) - r0
    hf.note("10 MB by DATA: %d read syscalls" % n)
    hf.check(n < MAX_READS, "10 MB by DATA took %d read syscalls (want < "
             "%d: content read in 4 KB pieces?)" % (n, MAX_READS))
    sent.append(s)

    bdat_msg = hf.make_message("bigbdat", body=body(10 * 1024 * 1024, 2))
    r0 = reads(d.pid)
    qid = bdat_big(d, bdat_msg, 1024 * 1024)
    n = reads(d.pid) - r0
    hf.note("10 MB by BDAT: %d read syscalls" % n)
    hf.check(n < MAX_READS, "10 MB by BDAT took %d read syscalls (want < "
             "%d)" % (n, MAX_READS))
    sent.append(hf.Sent("bigbdat", qid, bdat_msg, ["big@example.test"],
                        "bdat@client.test"))

    sink.start()
    hf.verify_deliveries(sink, sent, timeout=hf.scaled(120), settle=0.5)
    hf.check_log_lifecycle(d, sent)

    # memory: a second daemon with a 10M limit, primary down
    d2 = env.daemon(name="limited", server={"max_message_size": "10M"})
    d2.start(env=ASAN_ENV)
    # warm up allocator and buffers with one ordinary message
    hf.send_ok(d2.port, "warm", ["big@example.test"],
               hf.make_message("warm", body=body(300 * 1024, 3)))

    # 50 MB of DATA, nothing read until the end: 552 5.3.4, not queued
    block = body(1024 * 1024, 4)
    c = d2.connect(timeout=120)
    c.ehlo()
    c.cmd("MAIL FROM:<big@client.test>", expect=250)
    c.cmd("RCPT TO:<big@example.test>", expect=250)
    c.cmd("DATA", expect=354)
    before = len(d2.queue_ids())
    with RssWatch(d2.pid) as w:
        for _ in range(50):
            c.send(hf.dot_stuff(block)[:-3])   # without the final dot
        c.send(b".\r\n")
        r = c.reply()
    hf.check(r.code == 552 and r.lines[-1][4:9] == b"5.3.4",
             "50 MB over a 10M limit -> %r (want 552 5.3.4)" % r)
    hf.note("50 MB of DATA: RSS %d kB -> peak %d kB" % (w.base, w.peak))
    hf.check(w.growth() < RSS_GROWTH_KB, "RSS grew by %d kB during 50 MB "
             "of DATA (want < %d)" % (w.growth(), RSS_GROWTH_KB))
    hf.check(len(d2.queue_ids()) == before, "an over-size message was "
             "queued")
    c.quit()

    # pipelined BDAT chunks from a client that never reads its replies
    # (to the first daemon: 50M limit): the replies back up, the daemon
    # stops reading, the sender stalls
    sock = socket.create_connection(("127.0.0.1", d.port), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    f = sock.makefile("rb")
    hf.check(f.readline().startswith(b"220"), "no banner")
    sock.sendall(b"EHLO client.test\r\n")
    while True:
        line = f.readline()
        hf.check(line.startswith(b"250"), "EHLO -> %r" % line)
        if line[3:4] == b" ":
            break
    sock.sendall(b"MAIL FROM:<pipe@client.test>\r\n"
                 b"RCPT TO:<big@example.test>\r\n")
    chunk = b"BDAT 100\r\n" + (b"x" * 98 + b"\r\n")
    unit = chunk * 600
    sock.setblocking(False)
    total = 0
    limit = 50 * 1024 * 1024
    last_progress = time.monotonic()
    stalled = False
    with RssWatch(d.pid) as w:
        pending = b""
        while total < limit:
            if not pending:
                pending = unit
            try:
                k = sock.send(pending)
            except BlockingIOError:
                k = 0
            if k:
                total += k
                pending = pending[k:]
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > 3:
                stalled = True
                break
            else:
                time.sleep(0.005)
    hf.note("non-reading BDAT client: sent %d octets, stalled=%s, RSS %d kB "
            "-> peak %d kB" % (total, stalled, w.base, w.peak))
    hf.check(stalled and total < limit, "the daemon read 50 MB of pipelined BDAT without its "
             "replies being read")
    hf.check(w.growth() < RSS_GROWTH_KB, "RSS grew by %d kB under a "
             "non-reading BDAT client (want < %d)" % (w.growth(),
                                                       RSS_GROWTH_KB))
    sock.close()
    hf.check(d.alive(), "daemon died")
    s = hf.send_ok(d.port, "after", ["big@example.test"])
    hf.verify_deliveries(sink, sent + [s], timeout=hf.scaled(60), settle=0.5)


if __name__ == "__main__":
    hf.run(main)
