#!/usr/bin/python3
"""DNSBL answers read as Postfix's postscreen_dnsbl_sites reads them.

A loopback dnsmasq serves two zones (authoritative for .test, so anything
it does not know is NXDOMAIN):
- zen.test (no filter, weight 2): 127.0.0.2 lists 127.0.0.2; 127.0.0.3
  gets the error code 127.255.255.254 (Spamhaus refusing a public
  resolver); 127.0.0.4 gets 127.0.0.1 (not a listing without a filter);
- fl.test=127.0.0.[2..11]*2: 127.0.0.5 answered 127.0.0.20 (filtered
  out), 127.0.0.6 answered 127.0.0.10 (inside the range);
- 127.0.0.7: NXDOMAIN everywhere;
- several codes in one answer: 127.0.0.8 gets 127.0.0.20 and 127.0.0.5
  from fl.test (one inside the filter: listed); 127.0.0.9 gets 127.0.0.2
  and 127.255.255.254 from zen.test (an error makes the answer unusable).
Threshold 2.  Listed clients (127.0.0.2, .6, .8) get 450 4.7.1 at RCPT; the
others get 250.  The error code is never a listing: it is logged (one
line per zone per minute however many answers come) and counted in
holdfast_dnsbl_errors_total{zone="zen.test"}."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402


def main(env):
    dns = env.own(hf.Dnsmasq(env, [
        "--address=/2.0.0.127.zen.test/127.0.0.2",
        "--address=/3.0.0.127.zen.test/127.255.255.254",
        "--address=/4.0.0.127.zen.test/127.0.0.1",
        "--address=/5.0.0.127.fl.test/127.0.0.20",
        "--address=/6.0.0.127.fl.test/127.0.0.10",
        "--address=/8.0.0.127.fl.test/127.0.0.20",
        "--address=/8.0.0.127.fl.test/127.0.0.5",
        "--address=/9.0.0.127.zen.test/127.0.0.2",
        "--address=/9.0.0.127.zen.test/127.255.255.254",
        "--local=/test/"])).start()
    sink = env.sink().start()
    d = env.daemon(primary_port=sink.port, metrics={"listen": "auto"},
                   screen={"greet_wait": "0", "allow": "",
                           "dnsbl": "zen.test*2, fl.test=127.0.0.[2..11]*2",
                           "dnsbl_threshold": "2",
                           "dns_server": "127.0.0.1:%d" % dns.port}).start()
    m0 = d.scrape()
    hf.check(m0.get("holdfast_dnsbl_errors_total", zone="zen.test") == 0,
             "errors counter for zen.test missing or not 0")
    hf.check(m0.get("holdfast_dnsbl_errors_total", zone="fl.test") == 0,
             "errors counter for fl.test missing or not 0")

    want = [("127.0.0.2", 450, "listed without a filter"),
            ("127.0.0.3", 250, "error code 127.255.255.254"),
            ("127.0.0.4", 250, "127.0.0.1 without a filter"),
            ("127.0.0.5", 250, "127.0.0.20 outside the filter"),
            ("127.0.0.6", 450, "127.0.0.10 inside the filter"),
            ("127.0.0.7", 250, "NXDOMAIN"),
            ("127.0.0.8", 450, "127.0.0.20 and 127.0.0.5: one in the filter"),
            ("127.0.0.9", 250, "127.0.0.2 with an error code: unusable")]
    for src, code, what in want:
        r = hf.rcpt_reply(d.port, src)
        hf.check(r.code == code, "%s (%s): RCPT -> %r, wanted %d"
                 % (src, what, r, code))
        if code == 450:
            hf.check(r.text.startswith("450 4.7.1"), "%s: %r" % (src, r))
    hf.note("listing, error code, 127.0.0.1, filtered out, in filter, "
            "NXDOMAIN, two codes one matching, listing+error: "
            "450 250 250 250 450 250 450 250")
    # dnsmasq really said NXDOMAIN for .7
    log = open(dns.log, errors="replace").read()
    hf.check("7.0.0.127.zen.test is NXDOMAIN" in log,
             "dnsmasq did not answer NXDOMAIN for 127.0.0.7")

    # The error: logged once, counted each time, never a deferral.
    for _ in range(3):
        r = hf.rcpt_reply(d.port, "127.0.0.3")
        hf.check(r.code == 250, "error code again -> %r" % r)
    lines = d.grep(r"dnsbl error zone=zen\.test ")
    hf.check(len(lines) == 1, "wanted one rate-limited error line, got %d: "
             "%s" % (len(lines), lines))
    hf.check(lines and "answer=127.255.255.254" in lines[0] and
             "addr=127.0.0.3" in lines[0], "error line: %s" % lines)
    m1 = d.scrape()
    errs = m1.get("holdfast_dnsbl_errors_total", zone="zen.test")
    hf.check(errs == 5, "holdfast_dnsbl_errors_total{zone=zen.test} = %s, "
             "wanted 5" % errs)
    hf.check(m1.get("holdfast_dnsbl_errors_total", zone="fl.test") == 0,
             "fl.test errors counted")
    dnsbl = (m1.get("holdfast_screen_deferrals_total", reason="dnsbl") -
             m0.get("holdfast_screen_deferrals_total", reason="dnsbl"))
    hf.check(dnsbl == 3, "dnsbl deferrals %s, wanted 3" % dnsbl)
    hf.check(not d.grep(r"dnsbl listed addr=127\.0\.0\.[34579] "),
             "a non-listing logged as listed: %s"
             % d.grep(r"dnsbl listed addr=127\.0\.0\.[34579] "))
    hf.note("error code: 1 log line for 5 answers, counter 5")


hf.run(main)
