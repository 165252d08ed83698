"""A scripted SMTP server in Python, for primaries that misbehave in ways
smtp-sink cannot: no banner, a reply that stops half way, no EHLO, no DSN,
421, STARTTLS with a chosen certificate, slow replies.

    p = env.own(pyprimary.Primary(env, ehlo=["PIPELINING", "SIZE 1000000"]))
    p.start()
    ... p.sessions (list of Session: .lines = commands received),
        p.messages (list of Message: .mail, .rcpts, .data), p.max_conns

Behaviour is set by attributes (read per command, so a test may change
them while the server runs):
  banner       bytes sent on connect, or None: accept and say nothing
  ehlo         extension lines after the first EHLO line
  ehlo_reply   a reply line to EHLO instead (e.g. b"502 5.5.2 no EHLO")
  tls          an ssl.SSLContext: advertise STARTTLS and do it
  replies      {VERB: reply line}: answer VERB with it (e.g. {"MAIL":
               b"421 4.3.2 going down"}); "." is the end of DATA
  hang         VERB: send half a reply line to it, then say nothing
  rcpt_reply   callable(address) -> reply line or None
  data_delay   seconds to wait before the reply to the end of DATA

Listens on 127.0.0.1 (and ::1 on the same port, where it exists) only;
every socket has a timeout; stop() closes the
listener and every connection."""

import os
import socket
import threading
import time

import holdfast as hf


class Session:
    def __init__(self):
        self.lines = []          # command lines received (bytes, no CRLF)
        self.tls = False


class Message:
    def __init__(self, session, mail, rcpts, data):
        self.session = session
        self.mail = mail         # the MAIL FROM line (bytes)
        self.rcpts = rcpts       # the RCPT TO lines accepted (bytes)
        self.data = data         # un-dot-stuffed content (bytes)


class Primary:
    def __init__(self, env, name="pyprimary", port=None, ehlo=None,
                 hostname=b"py.primary.test"):
        self.env = env
        self.name = name
        self.port = port or hf.free_port()
        self.hostname = hostname
        self.banner = b"220 " + hostname + b" ESMTP scripted"
        self.ehlo = list(ehlo if ehlo is not None else
                         [b"PIPELINING", b"SIZE 100000000", b"8BITMIME",
                          b"SMTPUTF8", b"DSN"])
        self.ehlo_reply = None
        self.tls = None
        self.replies = {}
        self.hang = None
        self.rcpt_reply = None
        self.data_delay = 0
        self.sessions = []
        self.messages = []
        self.conns = 0
        self.max_conns = 0
        self.lock = threading.Lock()
        self.sock = None
        self.open = []
        self.stopping = False
        self.log = env.artifact(env.path(name + "-py.log"))

    def __repr__(self):
        return "Primary(%s:%d)" % (self.name, self.port)

    def note(self, text):
        with self.lock, open(self.log, "a") as f:
            f.write("%s %s\n" % (time.strftime("%H:%M:%S"), text))

    def start(self):
        self.stopping = False
        self.socks = []
        # ::1 too, on the same port, where it exists: a daemon given the
        # name localhost may resolve it to either address
        for fam, addr in ((socket.AF_INET, "127.0.0.1"),
                          (socket.AF_INET6, "::1")):
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((addr, self.port))
            except OSError:
                s.close()
                if fam == socket.AF_INET:
                    raise
                continue
            s.listen(64)
            s.settimeout(0.2)
            self.socks.append(s)
            threading.Thread(target=self._accept, args=(s,),
                             daemon=True).start()
        self.sock = self.socks[0]
        return self

    def stop(self):
        self.stopping = True
        for s in getattr(self, "socks", []):
            s.close()
        self.socks = []
        self.sock = None
        with self.lock:
            conns = list(self.open)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    cleanup = stop

    def _accept(self, sock):
        while not self.stopping:
            try:
                c, _ = sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.open.append(c)
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, c):
        s = Session()
        with self.lock:
            self.sessions.append(s)
            self.conns += 1
            self.max_conns = max(self.max_conns, self.conns)
        try:
            c.settimeout(30)
            self._session(c, s)
        except (OSError, ValueError) as e:
            self.note("session ended: %s" % e)
        finally:
            with self.lock:
                self.conns -= 1
                if c in self.open:
                    self.open.remove(c)
            try:
                c.close()
            except OSError:
                pass

    def _session(self, c, s):
        rf = c.makefile("rb")
        wf = {"sock": c}

        def send(b):
            wf["sock"].sendall(b + b"\r\n")

        if self.banner is None:
            # say nothing until the client gives up (bounded by timeout)
            while not self.stopping and rf.readline(1024):
                pass
            return
        send(self.banner)
        mail, rcpts = None, []
        while not self.stopping:
            line = rf.readline(70000)
            if not line:
                return
            line = line.rstrip(b"\r\n")
            s.lines.append(line)
            self.note("< %r" % line[:200])
            verb = line.split(b" ", 1)[0].split(b":", 1)[0].upper().decode(
                "ascii", "replace")
            if self.hang == verb:
                wf["sock"].sendall(b"250-half a rep")
                while not self.stopping and rf.readline(1024):
                    pass
                return
            if verb in self.replies:
                send(self.replies[verb])
                if self.replies[verb].startswith(b"421"):
                    return
                continue
            if verb == "EHLO":
                if self.ehlo_reply is not None:
                    send(self.ehlo_reply)
                    continue
                ext = list(self.ehlo)
                if self.tls is not None and not s.tls:
                    ext.append(b"STARTTLS")
                lines = [self.hostname] + ext
                for i, ln in enumerate(lines):
                    send(b"250" + (b" " if i == len(lines) - 1 else b"-")
                         + ln)
            elif verb == "HELO":
                send(b"250 " + self.hostname)
            elif verb == "STARTTLS" and self.tls is not None and not s.tls:
                send(b"220 2.0.0 go ahead")
                tc = self.tls.wrap_socket(c, server_side=True)
                with self.lock:
                    self.open.append(tc)
                wf["sock"] = tc
                rf = tc.makefile("rb")
                s.tls = True
                mail, rcpts = None, []
            elif verb == "MAIL":
                mail, rcpts = line, []
                send(b"250 2.1.0 Ok")
            elif verb == "RCPT":
                r = None
                if self.rcpt_reply is not None:
                    addr = line.split(b"<", 1)[-1].split(b">", 1)[0]
                    r = self.rcpt_reply(addr.decode("utf-8", "replace"))
                if r is None:
                    rcpts.append(line)
                    r = b"250 2.1.5 Ok"
                send(r)
            elif verb == "DATA":
                if not rcpts:
                    send(b"554 5.5.1 no valid recipients")
                    continue
                send(b"354 go ahead")
                data = []
                while True:
                    dl = rf.readline(70000)
                    if not dl:
                        return
                    if dl == b".\r\n":
                        break
                    data.append(dl[1:] if dl.startswith(b".") else dl)
                if self.data_delay:
                    time.sleep(self.data_delay)
                if "." in self.replies:
                    send(self.replies["."])
                else:
                    with self.lock:
                        self.messages.append(Message(s, mail, rcpts,
                                                     b"".join(data)))
                    send(b"250 2.0.0 Ok: queued")
                mail, rcpts = None, []
            elif verb == "RSET":
                mail, rcpts = None, []
                send(b"250 2.0.0 Ok")
            elif verb == "QUIT":
                send(b"221 2.0.0 Bye")
                return
            elif verb == "NOOP":
                send(b"250 2.0.0 Ok")
            else:
                send(b"502 5.5.2 not implemented")

    # helpers for tests
    def commands(self, verb):
        """Every command line with VERB received so far (bytes)."""
        v = verb.encode().upper()
        return [ln for s in list(self.sessions) for ln in list(s.lines)
                if ln.upper().startswith(v)]

    def wait_messages(self, n, timeout):
        return hf.wait_until(lambda: len(self.messages) >= n and
                             self.messages, timeout,
                             "%d message(s) at %s (have %d)"
                             % (n, self.name, len(self.messages)))

    def tokens(self):
        return [hf.token_of(m.data.replace(b"\r\n", b"\r\n"))
                for m in self.messages]


def server_context(cert, key):
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


__all__ = ["Primary", "Session", "Message", "server_context"]
_ = os
