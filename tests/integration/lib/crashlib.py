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
import stat
import threading
import time
import traceback

import holdfast as hf


class Attempt:
    """One transaction a sender tried."""

    def __init__(self, token, content, rcpts):
        self.token = token
        self.content = content
        self.rcpts = rcpts
        self.code = None        # final reply code, None if none seen;
                                # ("5xx", text) for a 5xx at any stage
        self.qid = None
        self.replies = []       # (stage, code, text) at every stage
        self.error = None       # the connection error that ended it


class _ConnError(Exception):
    """The connection went away (the daemon was killed): expected."""


def _is_conn_error(e):
    if isinstance(e, OSError):
        return True
    msg = str(e)
    return (msg.startswith("connection closed while reading a reply")
            or msg.startswith("timed out reading a reply"))


class Senders:
    """n threads, each sending messages with unique tokens to port in a
    loop until stop(); every attempt is recorded with its outcome and the
    reply at every stage (greeting, EHLO, MAIL, RCPT, DATA, end of data).
    Connection errors (daemon being killed) are expected: the attempt is
    then 'unknown' (no 250 seen) and the thread reconnects; but they are
    bounded: more than max_errors in all (when given), or more than
    max_streak in a row in one thread (nothing but errors for about
    max_streak / 10 seconds), fails the run.  A 4xx at any stage is
    allowed (not acked); a 5xx at any stage is a failure (a backup MX
    never refuses mail for its domains), and so is a thread that dies on
    an unexpected exception.  stop() and wait_done() check all of it
    (check()), unless told not to."""

    def __init__(self, port, n, prefix, rng_seed,
                 sizes=(300, 300, 1500, 1500, 8000, 8000, 30000, 120000),
                 max_msgs=None, pause=0.03, max_errors=None,
                 max_streak=600):
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
        self.errors = 0                 # connection errors
        self.error_samples = []         # the first few, for the report
        self.max_errors = max_errors
        self.max_streak = max_streak
        self.rejects = []               # (token, stage, reply text) 5xx
        self.died = []                  # tracebacks of dead threads

    def start(self):
        for i in range(self.n):
            t = threading.Thread(target=self._loop, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self, timeout=120, check=True):
        """Stop the threads; with check, then check() (pass check=False
        in a finally: block and call check() after it)."""
        self.stopping.set()
        for t in self.threads:
            t.join(timeout)
            hf.check(not t.is_alive(), "sender thread did not stop")
        if check:
            self.check()

    def wait_done(self, timeout, check=True):
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
            hf.check(not t.is_alive(), "senders not done within %.0fs"
                     % timeout)
        if check:
            self.check()

    def problems(self):
        """What makes the run fail: 5xx replies, dead threads, too many
        connection errors."""
        with self.lock:
            out = []
            if self.rejects:
                out.append("%d 5xx for our domains, e.g. %s"
                           % (len(self.rejects), self.rejects[:3]))
            for tb in self.died[:2]:
                out.append("a sender thread died:\n" + tb)
            if self.max_errors is not None and self.errors > self.max_errors:
                out.append("%d connection errors, more than the bound %d; "
                           "first: %s" % (self.errors, self.max_errors,
                                          self.error_samples[:3]))
            return out

    def check(self):
        probs = self.problems()
        hf.check(not probs, "senders: " + "; ".join(probs))

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

    def _reply(self, a, c, stage, line=None, want=(250,)):
        """Send line (None: read the greeting or the end-of-data reply),
        record the reply for stage; a 5xx is recorded as a rejection.
        Returns the reply; raises _ConnError when the connection went."""
        try:
            r = c.cmd(line) if line is not None else c.reply()
        except (hf.Fail, OSError) as e:
            if _is_conn_error(e):
                raise _ConnError("%s: %s" % (stage, e))
            raise
        a.replies.append((stage, r.code, r.text))
        if r.code // 100 == 5:
            # a backup MX must never reject mail for its domains
            a.code = ("5xx", "%s: %s" % (stage, r.text))
            with self.lock:
                self.rejects.append((a.token, stage, r.text))
            hf.note("UNEXPECTED %s at %s for %s" % (r.text, stage, a.token))
        elif r.code not in want and r.code // 100 != 4:
            raise hf.Fail("%s -> %r for %s" % (stage, r, a.token))
        return r

    def _loop(self, tid):
        try:
            self._loop_body(tid)
        except BaseException:
            with self.lock:
                self.died.append("thread %d: %s" % (tid,
                                                     traceback.format_exc()))
            self.stopping.set()         # the run is failed: stop all

    def _loop_body(self, tid):
        rng = random.Random(self.seed * 1000 + tid)
        k = 0
        c = None
        streak = 0
        while not self.stopping.is_set():
            if self.max_msgs is not None and k >= self.max_msgs:
                break
            a = self._message(rng, tid, k)
            k += 1
            with self.lock:
                self.attempts.append(a)
            try:
                if c is None:
                    try:
                        c = hf.SMTPClient(self.port, timeout=30,
                                          greet=False)
                    except OSError as e:
                        raise _ConnError("connect: %s" % e)
                    r = self._reply(a, c, "greeting", want=(220,))
                    if r.code != 220:
                        raise _ConnError("greeting %s" % r.text)
                    r = self._reply(a, c, "EHLO", "EHLO client.test")
                    if r.code != 250:
                        raise _ConnError("EHLO %s" % r.text)
                done = False
                r = self._reply(a, c, "MAIL",
                                "MAIL FROM:<s%d@client.test>" % tid)
                if r.code == 250:
                    ok = 0
                    for rc in a.rcpts:
                        if self._reply(a, c, "RCPT",
                                       "RCPT TO:<%s>" % rc).code == 250:
                            ok += 1
                    if ok == len(a.rcpts):
                        r = self._reply(a, c, "DATA", "DATA", want=(354,))
                        if r.code == 354:
                            c.send(hf.dot_stuff(a.content))
                            r = self._reply(a, c, "end of data")
                            done = True
                            if r.code == 250:
                                a.code = 250
                                a.qid = r.queued_id()
                                hf.check(a.qid, "250 without a queue id: "
                                         "%r" % r)
                            elif not isinstance(a.code, tuple):
                                a.code = r.code
                # any 4xx (e.g. 421 at shutdown, 451 on a suspect spool)
                # is allowed: not acked.  A transaction cut short by a
                # 4xx/5xx before the data starts again on a new session.
                streak = 0
                if not done or r.code == 421 or rng.random() < 0.3:
                    try:
                        c.quit()
                    except (hf.Fail, OSError):
                        pass
                    c = None
            except _ConnError as e:
                a.error = str(e)
                streak += 1
                with self.lock:
                    self.errors += 1
                    if len(self.error_samples) < 10:
                        self.error_samples.append("%s: %s" % (a.token, e))
                if c is not None:
                    c.close()
                c = None
                if streak > self.max_streak:
                    raise hf.Fail("thread %d: %d connection errors in a "
                                  "row (last: %s)" % (tid, streak, e))
                if not self.stopping.is_set():
                    time.sleep(0.05 + rng.random() * 0.1)
            if self.pause:
                time.sleep(self.pause)
        if c is not None:
            try:
                c.quit()
            except (hf.Fail, OSError):
                pass


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
        txs = hf.parse_tap_session(base)
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


def spool_entry_state(path):
    """What a spool entry is: 'file ok' (a valid message file), 'file
    corrupt (why)', an old-format directory's file list, or another
    kind."""
    try:
        st = os.lstat(path)
    except OSError as e:
        return "gone (%s)" % e.strerror
    if stat.S_ISDIR(st.st_mode):
        try:
            return "dir %s" % sorted(os.listdir(path))
        except OSError as e:
            return "dir (%s)" % e.strerror
    if not stat.S_ISREG(st.st_mode):
        return "not a file (mode %o)" % st.st_mode
    try:
        hf.spool_msg_read(path)
    except ValueError as e:
        return "file corrupt (%s)" % str(e).split(": ", 1)[-1]
    except OSError as e:
        return "file (%s)" % e.strerror
    return "file ok"


def quarantine_report(d):
    """For each quarantined ID: why (the daemon's log line) and whether
    the log says it had been delivered before (a crash in the middle of
    deleting a delivered message)."""
    out = []
    for qid in d.quarantine_entries():
        why = d.grep(r"msg=%s quarantined" % qid)
        dl = d.grep(r"msg=%s delivered" % qid)
        files = spool_entry_state(os.path.join(d.spool, "quarantine", qid))
        out.append("%s files=%s %s%s" % (
            qid, files, (why[-1].split(" quarantined ", 1)[-1]
                         if why else "(no log line)"),
            " (delivered before)" if dl else " (NOT delivered before)"))
    return out
