#!/usr/bin/python3
"""[primary] source: the drain binds to the configured local address, so a
primary (or its router) that trusts only the backup's /32 sees that
address.  With source = 127.0.0.2 the primary sees 127.0.0.2 as the peer
of the health probe and of every delivery connection; a source the host
does not have, or one of the other address family than the primary's,
keeps the mail queued with a clear reason (never another address); IPv6
works the same (::1); a value that is not an address fails at config
load."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402
import miniprimary  # noqa: E402


def main(env):
    # a value that is no address is refused at load, with file:line
    bad = env.daemon(name="bad", primary={"source": "mx2.example.test"})
    rc, err = bad.check_config()
    hf.check(rc != 0 and "[primary] source: not an IPv4 or IPv6 address"
             in err, "holdfast -n with source = a name: rc=%d %r" % (rc, err))

    p = miniprimary.MiniPrimary(env).start()
    d = env.daemon(primary_port=p.port,
                   primary={"source": "127.0.0.2"}).start()
    sent = [hf.send_ok(d.port, "src%d" % i) for i in range(3)]
    msgs = p.wait_count(3, 30)
    got = sorted(hf.token_of(m.data) for m in msgs)
    hf.check(got == sorted(s.token for s in sent),
             "delivered %r, sent %r" % (got, [s.token for s in sent]))
    hf.check(p.peers, "the primary saw no connection")
    peers = set(a for a, _ in p.peers)
    hf.check(peers == {"127.0.0.2"}, "the primary saw peers %r, want only "
             "127.0.0.2 ([primary] source)" % sorted(peers))
    for m in msgs:
        hf.check(m.peer[0] == "127.0.0.2", "%r came from %r" % (m, m.peer))
    d.stop()

    # a source address the host does not have: nothing leaves from any
    # other address; the message waits and the reason names the source
    p2 = miniprimary.MiniPrimary(env, name="p2").start()
    d2 = env.daemon(name="nosrc", primary_port=p2.port,
                    primary={"source": "192.0.2.1"}).start()
    s = hf.send_ok(d2.port, "nosrc")
    d2.wait_log(r"cannot bind \[primary\] source 192\.0\.2\.1", 15)
    hf.check(not p2.peers, "the primary saw %r although the source address "
             "cannot be bound" % p2.peers)
    hf.check(s.qid in d2.queue_ids(), "message %s left the queue" % s.qid)
    d2.stop()

    # IPv6: source ::1 to a primary on ::1; an IPv4 source for an IPv6
    # primary is a clear failure, never a connection from another address
    p6 = miniprimary.MiniPrimary(env, name="p6", host="::1").start()
    d6 = env.daemon(name="v6", primary_host="::1", primary_port=p6.port,
                    primary={"source": "::1"}).start()
    hf.send_ok(d6.port, "v6")
    p6.wait_count(1, 30)
    hf.check(set(a for a, _ in p6.peers) == {"::1"}, "IPv6 peers %r"
             % p6.peers)
    d6.stop()
    p7 = miniprimary.MiniPrimary(env, name="p7", host="::1").start()
    d7 = env.daemon(name="mixed", primary_host="::1", primary_port=p7.port,
                    primary={"source": "127.0.0.2"}).start()
    hf.send_ok(d7.port, "mixed")
    d7.wait_log(r"address family differs from \[primary\] source", 15)
    hf.check(not p7.peers, "the IPv6 primary saw %r from an IPv4 source"
             % p7.peers)


hf.run(main)
