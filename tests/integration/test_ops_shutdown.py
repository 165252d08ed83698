#!/usr/bin/python3
"""SIGTERM while a selector is being matched on a worker (20 000 queued,
"delete --from" that matches nothing): the daemon stops cleanly, without a
sanitizer report (the worker used ctl after ctl_free), and deletes
nothing."""
import os
import re
import signal
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402

N = 20000       # the match takes well over the 150 ms before SIGTERM


def clone(spool, qid, n):
    """n copies of queue/<qid> under fresh IDs, with the same owner."""
    src = os.path.join(spool, "queue", qid)
    st = os.stat(src)
    env, body = hf.spool_msg_read(src)
    for _ in range(n):
        new = os.urandom(8).hex()
        dst = os.path.join(spool, "queue", new)
        hf.spool_msg_write(dst, re.sub(r"^id: .*$", "id: " + new, env,
                                       count=1, flags=re.M), body)
        os.chown(dst, st.st_uid, st.st_gid)


def main(env):
    sink = env.sink()                  # never started: nothing delivered
    d = env.daemon(primary_port=sink.port).start()
    with smtplib.SMTP("127.0.0.1", d.port, timeout=60) as s:
        s.ehlo("client.test")
        s.sendmail("s@client.test", ["r@example.test"], hf.make_message("x"))
    ids = d.queue_ids()
    hf.check(len(ids) == 1, "one message queued, got %d" % len(ids))
    d.stop()
    clone(d.spool, ids[0], N - 1)
    mark = d.mark()
    d.start()
    d.wait_log(r"queue loaded messages=", timeout=hf.scaled(120), since=mark)
    p = subprocess.Popen([hf.ctl_bin(), "-c", d.conf, "delete", "--from",
                          "nobody@nowhere.test"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=d._env({}))
    time.sleep(0.15)
    d.signal(signal.SIGTERM)
    p.communicate(timeout=hf.scaled(60))
    d.stop(expect_clean=False)
    text = d.log_text(mark)
    hf.check(not re.search(r"AddressSanitizer|runtime error", text),
             "sanitizer report at shutdown; log in %s" % d.spool)
    hf.check(re.search(r"holdfast stopped", text) is not None,
             "no clean stop")
    hf.check(len(d.queue_ids()) == N, "queue/ has %d of %d"
             % (len(d.queue_ids()), N))


hf.run(main)
