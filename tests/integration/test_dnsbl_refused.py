#!/usr/bin/python3
"""A DNSBL that refuses the query is not a listing: Spamhaus-style error
answers in 127.255.255.0/24 (.254: query through a public resolver, .255:
too many queries, .252: typo in the zone) from a dnsmasq acting as the
list; clients they come back for are served (250 at RCPT), while a real
listing (127.0.0.2) still gets 450 4.7.1."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402


def main(env):
    dns = env.own(hf.Dnsmasq(env, [
        "--address=/2.0.0.127.zen.test/127.0.0.2",
        "--address=/3.0.0.127.zen.test/127.255.255.254",
        "--address=/4.0.0.127.zen.test/127.255.255.255",
        "--address=/5.0.0.127.zen.test/127.255.255.252",
        "--local=/test/"])).start()
    sink = env.sink().start()
    d = env.daemon(primary_port=sink.port,
                   screen={"greet_wait": "0", "allow": "",
                           "dnsbl": "zen.test", "dnsbl_threshold": "1",
                           "dns_server": "127.0.0.1:%d" % dns.port}).start()
    for src in ("127.0.0.3", "127.0.0.4", "127.0.0.5"):
        r = hf.rcpt_reply(d.port, src)
        hf.check(r.code == 250, "%s (the list refused the query) RCPT -> %r"
                 % (src, r))
    r = hf.rcpt_reply(d.port, "127.0.0.2")
    hf.check(r.code == 450 and r.text.startswith("450 4.7.1"),
             "127.0.0.2 (listed) RCPT -> %r" % r)
    hf.check(not d.grep(r"dnsbl listed addr=127\.0\.0\.[345] "),
             "an error answer counted as a listing")
    hf.note("127.255.255.x answers ignored; 127.0.0.2 deferred")


hf.run(main)
