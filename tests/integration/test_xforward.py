#!/usr/bin/python3
"""The primary scores the real sender: a client at 192.0.2.7 (carried in
by a PROXY v1 header) sends through holdfast; a real Postfix primary with
smtpd_authorized_xforward_hosts = 127.0.0.1 logs the original client
(via XFORWARD), not 127.0.0.1, and the Received header holdfast added
names 192.0.2.7 and the client's HELO."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402


def main(env):
    sink = env.sink().start()
    primary = env.postfix(name="primary", role="primary",
                          relay_port=sink.port,
                          main={"smtpd_authorized_xforward_hosts":
                                "127.0.0.1/32"}).start()
    proxy_port, port = hf.free_port(), hf.free_port()
    d = env.daemon(primary_port=primary.port, port=port,
                   server={"listen": ["127.0.0.1:%d" % port,
                                      "127.0.0.1:%d proxy" % proxy_port],
                           "proxy_from": "127.0.0.1/32"}).start()

    c = hf.SMTPClient(proxy_port, greet=False)
    c.send(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n")
    r = c.reply()
    hf.check(r.code == 220, "banner after PROXY -> %r" % r)
    c.cmd("EHLO mail.sender.example", expect=250)
    c.cmd("MAIL FROM:<someone@sender.example>", expect=250)
    c.cmd("RCPT TO:<xf@example.test>", expect=250)
    content = hf.make_message("xfwd")
    r = c.data(hf.dot_stuff(content), expect=250)
    c.quit()

    msgs = sink.wait_count(1, 30)
    top = hf.strip_top_received(msgs[0].content, 1)
    hf.check(top is not None, "no Received from the Postfix primary")
    hf.check(re.search(rb"Received: from mail\.sender\.example "
                       rb"\([^)]*\[192\.0\.2\.7\]\)", top),
             "holdfast's Received header lacks the original client: %r"
             % top[:300])

    def logged():
        t = primary.log_text()
        return re.search(r"client=\S*\[192\.0\.2\.7\]", t) or \
            re.search(r"orig_client=\S*\[192\.0\.2\.7\]", t)
    hf.wait_until(logged, 20, "the primary's log to show the original "
                  "client 192.0.2.7 (XFORWARD)")
    hf.check(d.grep(r"proxy addr=192\.0\.2\.7 via=127\.0\.0\.1"),
             "holdfast did not log the proxied address")


hf.run(main)
