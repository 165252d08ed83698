"""A small SMTP server as the primary, for what smtp-sink cannot show.

It advertises exactly the EHLO keywords a test gives it (e.g. "SIZE
100000" without SMTPUTF8), records every connection's peer address (to
check [primary] source), every EHLO and every transaction (sender,
recipients with their MAIL parameters, the DATA bytes).  It enforces a
SIZE it advertises (552 5.3.4 over it, at MAIL and after DATA), as
Postfix does.  One thread per connection, loopback only, every read
timed; stop() closes everything.

    import miniprimary
    p = miniprimary.MiniPrimary(env, exts=["SIZE 100000", "8BITMIME"])
    p.start()
    d = env.daemon(primary_port=p.port, ...)
    ...
    p.peers          # [("127.0.0.2", 40312), ...]
    p.messages       # [Message(...), ...]
"""

import re
import socket
import threading

import holdfast as hf


class Message:
    def __init__(self, peer, mail, rcpts, data):
        self.peer = peer          # (addr, port)
        self.mail = mail          # the MAIL FROM line, as sent
        self.rcpts = rcpts        # RCPT TO lines
        self.data = data          # un-dot-stuffed bytes, CRLF line ends

    def __repr__(self):
        return "Message(%r, %d bytes)" % (self.mail, len(self.data))


class MiniPrimary:
    def __init__(self, env, name="miniprimary", host="127.0.0.1", port=None,
                 exts=("PIPELINING", "SIZE 10240000", "8BITMIME"),
                 hostname="primary.mini.test"):
        self.env = env
        self.name = name
        self.host = host
        self.port = port or hf.free_port()
        self.exts = list(exts)
        self.hostname = hostname
        self.lock = threading.Lock()
        self.peers = []
        self.ehlos = []
        self.mails = []           # every MAIL line received
        self.messages = []
        self.lsock = None
        self.conns = []
        self.stopping = False
        self.thread = None
        env.own(self)

    def __repr__(self):
        return "MiniPrimary(%s:%d)" % (self.host, self.port)

    @property
    def size_limit(self):
        for e in self.exts:
            m = re.match(r"SIZE\s+(\d+)$", e, re.I)
            if m:
                return int(m.group(1))
        return 0

    def start(self):
        self.stopping = False
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(16)
        s.settimeout(0.2)
        self.lsock = s
        self.thread = threading.Thread(target=self._accept_loop,
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stopping = True
        if self.thread is not None:
            self.thread.join(5)
            self.thread = None
        if self.lsock is not None:
            self.lsock.close()
            self.lsock = None
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def cleanup(self):
        self.stop()

    def _accept_loop(self):
        while not self.stopping:
            try:
                c, peer = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            with self.lock:
                self.peers.append(peer[:2])
                self.conns.append(c)
            threading.Thread(target=self._session, args=(c, peer[:2]),
                             daemon=True).start()

    def _session(self, c, peer):
        c.settimeout(60)
        f = c.makefile("rb")

        def send(line):
            c.sendall(line.encode() + b"\r\n")

        try:
            send("220 %s ESMTP mini" % self.hostname)
            mail, rcpts = None, []
            while not self.stopping:
                line = f.readline(4096)
                if not line:
                    return
                cmd = line.rstrip(b"\r\n").decode("latin-1")
                verb = cmd.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    with self.lock:
                        self.ehlos.append(cmd)
                    lines = [self.hostname] + self.exts
                    for i, ln in enumerate(lines):
                        send("250%s%s" % ("-" if i < len(lines) - 1 else
                                          " ", ln))
                elif verb == "HELO":
                    send("250 %s" % self.hostname)
                elif verb == "MAIL":
                    with self.lock:
                        self.mails.append(cmd)
                    m = re.search(r"\sSIZE=(\d+)", cmd, re.I)
                    lim = self.size_limit
                    if m and lim and int(m.group(1)) > lim:
                        send("552 5.3.4 Message size exceeds fixed limit")
                        continue
                    mail, rcpts = cmd, []
                    send("250 2.1.0 Ok")
                elif verb == "RCPT":
                    if mail is None:
                        send("503 5.5.1 Error: need MAIL command")
                        continue
                    rcpts.append(cmd)
                    send("250 2.1.5 Ok")
                elif verb == "DATA":
                    if not rcpts:
                        send("503 5.5.1 Error: need RCPT command")
                        continue
                    send("354 End data with <CR><LF>.<CR><LF>")
                    data = bytearray()
                    while True:
                        ln = f.readline(1 << 20)
                        if not ln:
                            return
                        if ln == b".\r\n":
                            break
                        if ln.startswith(b"."):
                            ln = ln[1:]
                        data += ln
                    lim = self.size_limit
                    if lim and len(data) > lim:
                        send("552 5.3.4 Message size exceeds fixed limit")
                    else:
                        with self.lock:
                            self.messages.append(
                                Message(peer, mail, rcpts, bytes(data)))
                        send("250 2.0.0 Ok: queued")
                    mail, rcpts = None, []
                elif verb == "RSET":
                    mail, rcpts = None, []
                    send("250 2.0.0 Ok")
                elif verb == "NOOP":
                    send("250 2.0.0 Ok")
                elif verb == "QUIT":
                    send("221 2.0.0 Bye")
                    return
                else:
                    send("502 5.5.2 Error: command not recognized")
        except OSError:
            return
        finally:
            f.close()
            c.close()
            with self.lock:
                if c in self.conns:
                    self.conns.remove(c)

    def wait_count(self, n, timeout):
        hf.wait_until(lambda: len(self.messages) >= n, timeout,
                      "%d message(s) at %r" % (n, self))
        return list(self.messages)
