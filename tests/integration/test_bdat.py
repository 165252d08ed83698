#!/usr/bin/python3
"""BDAT (RFC 3030): chunks, a CRLF split across chunks, BDAT LAST and
BDAT 0 LAST, pipelined chunks; BDAT content is literal (no dot-stuffing),
so lines starting with '.' and a lone '.' line must reach the primary
intact (dot-stuffed on the wire by holdfast); bare LF in a chunk is stored
and forwarded as CRLF."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
import holdfast as hf  # noqa: E402


def bdat_send(d, chunks, pipelined=False, rcpt="chunk@example.test"):
    """chunks: list of (bytes, last).  Returns the final Reply."""
    c = d.connect()
    r = c.ehlo()
    hf.check(any(l[4:].upper().startswith(b"CHUNKING") for l in r.lines),
             "EHLO lacks CHUNKING")
    c.cmd("MAIL FROM:<s@client.test> BODY=8BITMIME", expect=250)
    c.cmd("RCPT TO:<%s>" % rcpt, expect=250)
    wire = []
    for data, last in chunks:
        wire.append(b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"")
                    + data)
    replies = []
    if pipelined:
        c.send(b"".join(wire))
        replies = [c.reply() for _ in wire]
    else:
        for w in wire:
            c.send(w)
            replies.append(c.reply())
    for r in replies[:-1]:
        hf.check(r.code == 250, "intermediate BDAT -> %r" % r)
    c.quit()
    return replies[-1]


def main(env):
    sink = env.sink().start()
    d = env.daemon(primary_port=sink.port).start()
    sent = []

    # 1: three chunks, the CRLF after "split" straddles chunks 1 and 2
    msg1 = hf.make_message("bdat1", body=b"first line\r\n.starts with dot\r\n"
                           b".\r\n..\r\nsplit line\r\nafter split\r\n"
                           b"\xc3\xa9 8bit\r\nlast\r\n")
    k = msg1.index(b"split line\r\n") + len(b"split line\r")
    j = msg1.index(b"after split") + 5
    r = bdat_send(d, [(msg1[:k], False), (msg1[k:j], False),
                      (msg1[j:], True)])
    hf.check(r.code == 250 and r.queued_id(), "BDAT LAST -> %r" % r)
    sent.append(hf.Sent("bdat1", r.queued_id(), msg1, ["chunk@example.test"]))

    # 2: all data in one chunk, then BDAT 0 LAST, pipelined
    msg2 = hf.make_message("bdat2", body=b"one\r\n.\r\ntwo\r\n")
    r = bdat_send(d, [(msg2, False), (b"", True)], pipelined=True)
    hf.check(r.code == 250 and r.queued_id(), "BDAT 0 LAST -> %r" % r)
    sent.append(hf.Sent("bdat2", r.queued_id(), msg2, ["chunk@example.test"]))

    # 3: many small pipelined chunks
    msg3 = hf.make_message("bdat3", body=b"".join(
        b"line %03d .x\r\n" % i for i in range(200)))
    chunks = [(msg3[i:i + 97], False) for i in range(0, len(msg3), 97)]
    chunks[-1] = (chunks[-1][0], True)
    r = bdat_send(d, chunks, pipelined=True)
    hf.check(r.code == 250 and r.queued_id(), "pipelined BDAT -> %r" % r)
    sent.append(hf.Sent("bdat3", r.queued_id(), msg3, ["chunk@example.test"]))

    hf.verify_deliveries(sink, sent, timeout=20, settle=0.5)

    # 4: bare LF inside a chunk: canonical CRLF on the way out
    raw = hf.make_message("bdat4", body=b"bare\nlf\r\nend\r\n")
    r = bdat_send(d, [(raw, True)])
    hf.check(r.code == 250 and r.queued_id(), "BDAT with bare LF -> %r" % r)
    canon = raw.replace(b"bare\nlf", b"bare\r\nlf")
    sent.append(hf.Sent("bdat4", r.queued_id(), canon,
                        ["chunk@example.test"]))
    hf.verify_deliveries(sink, sent, timeout=20)

    # sequence errors: BDAT without MAIL/RCPT, DATA after BDAT
    c = d.connect()
    c.ehlo()
    # the server must still consume the chunk it refuses (RFC 3030)
    c.send(b"BDAT 3 LAST\r\nabc")
    r = c.reply()
    hf.check(r.code == 503, "BDAT before MAIL -> %r (want 503)" % r)
    r = c.cmd("NOOP")
    hf.check(r.code == 250, "after a refused 'BDAT 3 LAST' + 3 octets, "
             "NOOP -> %r: the refused chunk's data was parsed as a command "
             "(it must be read and discarded, RFC 3030; Postfix does)" % r)
    c.cmd("MAIL FROM:<s@client.test>", expect=250)
    c.cmd("RCPT TO:<x@example.test>", expect=250)
    c.send(b"BDAT 4\r\nabcd")
    c.reply()
    r = c.cmd("DATA")
    hf.check(r.code == 503, "DATA after BDAT -> %r (want 503)" % r)
    c.quit()
    hf.check_log_lifecycle(d, sent)


hf.run(main)
