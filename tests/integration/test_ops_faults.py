#!/usr/bin/python3
"""Operator moves that fail half-way.

- An operator move whose directory fsync fails after the rename: requeue
of a dead message, with the fsync of queue/ after the rename failing
(ENOSPC, the LD_PRELOAD shim of test_faults).  The rewritten envelope is in
queue/ and the index takes it over (fresh lifetime, attempts 0), though
the move is reported as failed: the message is delivered, not sent
straight back to dead/ as expired with the old lifetime.
- A release whose rename fails after the envelope was rewritten in hold/
  (as a crash there would leave it): the envelope says held since that
  release, so the next release credits the held time after it too."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

# the shim of test_faults (importing it would run that test)
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "test_faults.py")) as _f:
    NTH_SHIM = _f.read().split('NTH_SHIM = r"""', 1)[1].split('"""', 1)[0]

LIFE = 3        # queue_lifetime, seconds


def main(env):
    shim = hf.compile_c(env, NTH_SHIM, "nthshim.so",
                        ["-shared", "-fPIC", "-ldl"])
    sink = env.sink()                   # down: the message expires
    trig = env.path("arm")
    # the requeue: the envelope rewritten in place in dead/<id> and
    # fdatasync'd (1), then the rename into queue/ and the fsync of
    # queue/ (2), then dead/'s (3): fail queue/'s, after the rename
    extra = {"HF_NTH_OP": "fsync", "HF_NTH_N": "2", "HF_NTH_ERR": "ENOSPC",
             "HF_NTH_FILE": trig}
    extra.update(hf.preload_env([shim]))
    d = env.daemon(primary_port=sink.port,
                   spool={"queue_lifetime": "%ds" % LIFE})
    d.start(env=extra)
    m = hf.send_ok(d.port, "fsyncmove")
    d.wait_log(r"msg=%s moved to dead" % m.qid, timeout=hf.scaled(LIFE + 20))
    sink.start()
    mark = d.mark()
    open(trig, "w").close()
    r = d.ctl("requeue", m.qid)
    os.unlink(trig)
    hf.check(r.rc != 0, "requeue with a failed fsync reported ok: %r" % r)
    d.wait_log(r"nthshim: fsync #2", since=mark, timeout=5)
    d.wait_log(r"msg=%s requeued" % m.qid, since=mark, timeout=5)
    d.wait_log(r"msg=%s delivered" % m.qid, since=mark,
               timeout=hf.scaled(LIFE + 10))
    text = d.log_text(mark)
    hf.check("msg=%s moved to dead" % m.qid not in text,
             "requeued message went back to dead/:\n%s" % text[-2000:])
    time.sleep(0.5)
    hf.check(m.qid not in d.dead_ids() and m.qid not in d.queue_ids(),
             "message still spooled after its delivery")
    d.stop()
    release(env, shim)


def env_field(d, area, qid, key):
    text, _ = hf.spool_msg_read(os.path.join(d.spool, area, qid))
    for ln in text.splitlines(True):
        if ln.startswith(key + ": "):
            return int(ln.split(": ", 1)[1])
    return None


def release(env, shim):
    sink = env.sink()                   # down: it stays in queue/
    trig = env.path("arm-release")
    # the envelope is rewritten in place in hold/<id> (no rename), then
    # hold/<id> -> queue/ is the one rename (1): fail it
    extra = {"HF_NTH_OP": "rename", "HF_NTH_N": "1", "HF_NTH_ERR": "ENOSPC",
             "HF_NTH_FILE": trig}
    extra.update(hf.preload_env([shim]))
    d = env.daemon(name="release", primary_port=sink.port)
    d.start(env=extra)
    m = hf.send_ok(d.port, "relfail")
    d.ctl("hold", m.qid).ok()
    arrival = env_field(d, "hold", m.qid, "arrival")
    time.sleep(2)
    open(trig, "w").close()
    r = d.ctl("release", m.qid)
    os.unlink(trig)
    hf.check(r.rc != 0, "release with a failed rename reported ok: %r" % r)
    hf.check(m.qid in d._entries("hold"), "not left in hold/")
    first = env_field(d, "hold", m.qid, "age_base")
    hf.check(first is not None and first >= arrival + 2,
             "first release did not credit: %s vs %s" % (first, arrival))
    hf.check(env_field(d, "hold", m.qid, "held_since") >= first - 1,
             "hold/ envelope lost its held_since")
    time.sleep(2)
    d.ctl("release", m.qid).ok()
    d.wait_log(r"msg=%s released" % m.qid, timeout=5)
    time.sleep(0.5)
    hf.check(m.qid in d.queue_ids(), "not in queue/ after the release")
    total = env_field(d, "queue", m.qid, "age_base") - arrival
    # two holds of about 2 s each, both credited
    hf.check(total >= 4, "held-time credit %d s, want both holds (>= 4)"
             % total)
    d.stop()


hf.run(main)
