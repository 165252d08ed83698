"""Helpers shared by the crash-consistency and flapping scenarios:
concurrent senders that record exactly which tokens got a 250, and a
verifier that tolerates (but counts) duplicates.

The ground truth for "reached the primary" is the tap in front of
smtp-sink: a transaction counts as delivered when the tap recorded the
whole DATA (or BDAT LAST) and smtp-sink's 250 for it.  smtp-sink's own
dump files are not used: a sink stopped mid-DATA can leave a truncated
dump behind, which would look like corruption."""

import os
import random
import threading
import time

import holdfast as hf


class Attempt:
    """One transaction a sender tried."""

    def __init__(self, token, content, rcpts):
        self.token = token
        self.content = content
        self.rcpts = rcpts
        self.code = None        # final reply code, None if none seen
        self.qid = None


class Senders:
    """n threads, each sending messages with unique tokens to port in a
    loop until stop(); every attempt is recorded with its outcome.
    Connection errors (daemon being killed) are expected: the attempt is
    then 'unknown' (no 250 seen) and the thread reconnects."""

    def __init__(self, port, n, prefix, rng_seed,
                 sizes=(300, 300, 1500, 1500, 8000, 8000, 30000, 120000),
                 max_msgs=None, pause=0.03):
        self.port = port
        self.n = n
        self.prefix = prefix
        self.seed = rng_seed
        self.sizes = sizes
        self.max_msgs = max_msgs        # per thread; None = until stop()
        self.pause = pause
        self.attempts = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = []
        self.errors = 0

    def start(self):
        for i in range(self.n):
            t = threading.Thread(target=self._loop, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self, timeout=120):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout)
            hf.check(not t.is_alive(), "sender thread did not stop")

    def wait_done(self, timeout):
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
            hf.check(not t.is_alive(), "senders not done within %.0fs"
                     % timeout)

    def acked(self):
        with self.lock:
            return [a for a in self.attempts if a.code == 250]

    def _message(self, rng, tid, k):
        token = "%s-t%d-%05d" % (self.prefix, tid, k)
        size = rng.choice(self.sizes)
        # varied lines, a leading dot now and then (dot-stuffing)
        line = ("%s %s" % (token, "x" * 60)).encode()
        body = []
        n = 0
        j = 0
        while n < size:
            l = (b"." if j % 37 == 5 else b"") + line + (b" %d" % j)
            body.append(l)
            n += len(l) + 2
            j += 1
        content = hf.make_message(token, body=b"\r\n".join(body) + b"\r\n")
        rcpts = ["c%d@example.test" % tid]
        if k % 5 == 3:
            rcpts.append("second%d@example.org" % tid)
        return Attempt(token, content, rcpts)

    def _loop(self, tid):
        rng = random.Random(self.seed * 1000 + tid)
        k = 0
        c = None
        while not self.stopping.is_set():
            if self.max_msgs is not None and k >= self.max_msgs:
                break
            a = self._message(rng, tid, k)
            k += 1
            with self.lock:
                self.attempts.append(a)
            try:
                if c is None:
                    c = hf.SMTPClient(self.port, timeout=30)
                    c.ehlo()
                r = c.cmd("MAIL FROM:<s%d@client.test>" % tid)
                if r.code != 250:
                    raise hf.Fail("MAIL -> %r" % r)
                ok = 0
                for rc in a.rcpts:
                    if c.cmd("RCPT TO:<%s>" % rc).code == 250:
                        ok += 1
                if ok != len(a.rcpts):
                    raise hf.Fail("RCPT refused")
                r = c.cmd("DATA")
                if r.code != 354:
                    raise hf.Fail("DATA -> %r" % r)
                c.send(hf.dot_stuff(a.content))
                r = c.reply()
                a.code = r.code
                if r.code == 250:
                    a.qid = r.queued_id()
                    hf.check(a.qid, "250 without a queue id: %r" % r)
                elif r.code // 100 == 5:
                    # a backup MX must never reject mail for its domains
                    a.code = ("5xx", r.text)
                    hf.note("UNEXPECTED %s for %s" % (r.text, a.token))
                # a 4xx (e.g. 421 at shutdown) is allowed: not acked
                if rng.random() < 0.3:
                    c.quit()
                    c = None
            except (hf.Fail, OSError):
                with self.lock:
                    self.errors += 1
                if c is not None:
                    c.close()
                c = None
                if not self.stopping.is_set():
                    time.sleep(0.05 + rng.random() * 0.1)
            if self.pause:
                time.sleep(self.pause)
        if c is not None:
            c.quit()


_tap_cache = {}


def _tap_transactions(sink):
    """sink.transactions(), but sessions the tap has finished (both
    directions closed) are parsed once and cached."""
    import glob
    out = []
    for c in sorted(glob.glob(os.path.join(sink.tap_dir, "*.c2s"))):
        base = c[:-4]
        if base in _tap_cache:
            out += _tap_cache[base]
            continue
        done = (os.path.exists(c + ".done")
                and os.path.exists(base + ".s2c.done"))
        with open(c, "rb") as f:
            c2s = f.read()
        try:
            with open(base + ".s2c", "rb") as f:
                s2c = f.read()
        except FileNotFoundError:
            s2c = b""
        txs = hf.parse_session(c2s, s2c, os.path.basename(base))
        if done:
            _tap_cache[base] = txs
        out += txs
    return out


def delivered_by_token(sink):
    """{token: [Transaction]} for every transaction the primary acked."""
    out = {}
    for t in _tap_transactions(sink):
        if not t.delivered:
            continue
        _, rest = hf.split_received(t.content or b"")
        out.setdefault(hf.token_of(rest), []).append(t)
    return out


def verify(sink, attempts, timeout, what="crash"):
    """Wait until every acked token reached the primary for all its
    recipients; check every delivered copy byte for byte; return a dict
    of counts.  Duplicates are allowed and counted."""
    by_tok = {a.token: a for a in attempts}
    acked = [a for a in attempts if a.code == 250]

    def missing():
        got = delivered_by_token(sink)
        miss = []
        for a in acked:
            have = set()
            for t in got.get(a.token, []):
                have.update(hf.norm_addr(r) for r in t.accepted_rcpts)
            if not set(hf.norm_addr(r) for r in a.rcpts) <= have:
                miss.append(a)
        return miss
    t0 = time.monotonic()
    deadline = t0 + timeout
    miss = missing()
    while miss and time.monotonic() < deadline:
        time.sleep(1.0)
        miss = missing()
    if miss:
        hf.fail("%s: %d acked message(s) never reached the primary within "
                "%.0fs: %s" % (what, len(miss), timeout,
                               ", ".join("%s(%s)" % (a.token, a.qid)
                                         for a in miss[:10])))
    time.sleep(1.0)                    # anything in flight settles
    got = delivered_by_token(sink)
    dup_msgs = 0          # acked tokens that arrived more than once
    dup_copies = 0        # extra (token, recipient) deliveries
    unacked_arrived = 0
    for tok, txs in got.items():
        hf.check(tok in by_tok, "%s: the primary got a message nobody "
                 "sent (token %r): %r" % (what, tok, txs[0]))
        a = by_tok[tok]
        seen = []
        for t in txs:
            hf.check_delivered_copy(t.content, a.content,
                                    qid=a.qid if a.code == 250 else None,
                                    what="%s message %s" % (what, tok))
            probs = t.line_end_problems()
            hf.check(not probs, "%s: %s in the data of %s" % (what, probs,
                                                              tok))
            rc = [hf.norm_addr(r) for r in t.accepted_rcpts]
            extra = set(rc) - set(hf.norm_addr(r) for r in a.rcpts)
            hf.check(not extra, "%s: %s delivered to unexpected %s"
                     % (what, tok, sorted(extra)))
            seen += rc
        n_dup = len(seen) - len(set(seen))
        if n_dup:
            dup_msgs += 1
            dup_copies += n_dup
        if a.code != 250:
            unacked_arrived += 1
    stats = {
        "attempted": len(attempts),
        "acked": len(acked),
        "delivered_tokens": len(got),
        "acked_delivered": sum(1 for a in acked if a.token in got),
        "unacked_arrived": unacked_arrived,
        "dup_messages": dup_msgs,
        "dup_copies": dup_copies,
        "verify_wait_s": round(time.monotonic() - t0, 1),
    }
    return stats


def spool_is_clean(d):
    """Problems in the spool of a running, drained daemon."""
    probs = []
    if d.tmp_entries():
        probs.append("tmp/ has %s" % d.tmp_entries()[:5])
    if d.quarantine_entries():
        probs.append("quarantine/ has %s" % d.quarantine_entries()[:5])
    if d.dead_ids():
        probs.append("dead/ has %s" % d.dead_ids()[:5])
    return probs


def quarantine_report(d):
    """For each quarantined ID: why (the daemon's log line) and whether
    the log says it had been delivered before (a crash in the middle of
    deleting a delivered message)."""
    out = []
    for qid in d.quarantine_entries():
        why = d.grep(r"msg=%s quarantined" % qid)
        dl = d.grep(r"msg=%s delivered" % qid)
        files = sorted(os.listdir(os.path.join(d.spool, "quarantine", qid)))
        out.append("%s files=%s %s%s" % (
            qid, files, (why[-1].split(" quarantined ", 1)[-1]
                         if why else "(no log line)"),
            " (delivered before)" if dl else " (NOT delivered before)"))
    return out
