"""Minimal scripted SMTP, POP3 and IMAP upstreams: enough for Python's real
clients to log in, send and fetch through the proxy, and to record what
arrived.  The real-server suite puts Postfix and Dovecot behind the proxy;
these stand in where a test needs to see exactly what the upstream got."""

import base64
import time

USER, PASSWORD = "alice", "secret"
MESSAGE = (b"From: bob@mail.test\r\nTo: alice@mail.test\r\nSubject: hi\r\n\r\n"
           b"line one\r\n..dot-stuffed line\r\nlast line\r\n")


class Mailbox:
    def __init__(self):
        self.received = []   # messages accepted over SMTP
        self.logins = []     # (protocol, user, ok)
        self.pretls = []     # lines the proxy sent before TLS
        self.tls_sessions = 0


def _lines(conn):
    f = conn.makefile("rb")
    while True:
        line = f.readline(4096)
        if not line:
            return
        yield line


def smtp(box, greet=True):
    def handler(conn):
        if greet:
            conn.sendall(b"220 mail.test ESMTP scripted\r\n")
        lines = _lines(conn)
        authed = False
        for line in lines:
            cmd = line.strip().split(b" ", 1)
            verb = cmd[0].upper()
            if verb in (b"EHLO", b"HELO"):
                conn.sendall(b"250-mail.test\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n")
            elif verb == b"AUTH":
                parts = cmd[1].split()
                if len(parts) == 1:          # no initial response: ask for it
                    conn.sendall(b"334 \r\n")
                    parts.append(next(lines).strip())
                creds = base64.b64decode(parts[1]).split(b"\0")
                ok = creds[1:] == [USER.encode(), PASSWORD.encode()]
                box.logins.append(("smtp", creds[1].decode(), ok))
                authed = ok
                conn.sendall(b"235 2.7.0 ok\r\n" if ok else b"535 5.7.8 bad\r\n")
            elif verb == b"MAIL":
                conn.sendall(b"250 2.1.0 ok\r\n" if authed else b"530 5.7.0 auth first\r\n")
            elif verb == b"RCPT":
                conn.sendall(b"250 2.1.5 ok\r\n")
            elif verb == b"DATA":
                conn.sendall(b"354 go\r\n")
                body = []
                for l in lines:
                    if l == b".\r\n":
                        break
                    body.append(l[1:] if l.startswith(b"..") else l)
                box.received.append(b"".join(body))
                conn.sendall(b"250 2.0.0 queued\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 2.0.0 bye\r\n")
                return
            elif verb in (b"NOOP", b"RSET"):
                conn.sendall(b"250 ok\r\n")
            else:
                conn.sendall(b"500 5.5.1 what\r\n")
    return handler


def take_mail(conn, f, messages, lock):
    """After a scripted login: MAIL, RCPT, DATA (each message appended to
    messages under lock) until QUIT, which ends TLS with close_notify."""
    while True:
        line = f.readline()
        verb = line[:4].upper()
        if not line or verb == b"QUIT":
            if line:
                conn.sendall(b"221 2.0.0 bye\r\n")
                try:
                    conn.unwrap()
                except (OSError, AttributeError):
                    pass
            return
        if verb in (b"MAIL", b"RCPT"):
            conn.sendall(b"250 2.1.0 OK\r\n")
        elif verb == b"DATA":
            conn.sendall(b"354 go ahead\r\n")
            data = b""
            while True:
                l = f.readline()
                if l in (b".\r\n", b""):
                    break
                data += l
            with lock:
                messages.append(data)
            conn.sendall(b"250 2.0.0 queued\r\n")
        else:
            conn.sendall(b"502 5.5.2 not here\r\n")


def pop3(box, greet=True):
    def handler(conn):
        if greet:
            conn.sendall(b"+OK scripted POP3 ready\r\n")
        user = None
        for line in _lines(conn):
            parts = line.strip().split(b" ")
            verb = parts[0].upper()
            if verb == b"USER":
                user = parts[1].decode()
                conn.sendall(b"+OK\r\n")
            elif verb == b"PASS":
                ok = user == USER and parts[1].decode() == PASSWORD
                box.logins.append(("pop3", user, ok))
                conn.sendall(b"+OK logged in\r\n" if ok else b"-ERR [AUTH] bad\r\n")
            elif verb == b"STAT":
                conn.sendall(b"+OK 1 %d\r\n" % len(MESSAGE))
            elif verb == b"RETR":
                stuffed = MESSAGE  # already dot-stuffed on the wire
                conn.sendall(b"+OK %d octets\r\n" % len(MESSAGE) + stuffed + b".\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"+OK bye\r\n")
                return
            else:
                conn.sendall(b"-ERR unknown\r\n")
    return handler


def imap(box, greet=True):
    def handler(conn):
        if greet:
            conn.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] scripted IMAP ready\r\n")
        for line in _lines(conn):
            parts = line.strip().split(b" ")
            tag, verb = parts[0], parts[1].upper() if len(parts) > 1 else b""
            if verb == b"CAPABILITY":
                conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
            elif verb == b"LOGIN":
                user = parts[2].strip(b'"').decode()
                ok = user == USER and parts[3].strip(b'"').decode() == PASSWORD
                box.logins.append(("imap", user, ok))
                conn.sendall(tag + (b" OK logged in\r\n" if ok
                                    else b" NO [AUTHENTICATIONFAILED] bad\r\n"))
            elif verb in (b"SELECT", b"EXAMINE"):
                conn.sendall(b"* 1 EXISTS\r\n* 0 RECENT\r\n" + tag +
                             b" OK [READ-WRITE] done\r\n")
            elif verb == b"FETCH":
                conn.sendall(b"* 1 FETCH (RFC822 {%d}\r\n" % len(MESSAGE) +
                             MESSAGE + b")\r\n" + tag + b" OK done\r\n")
            elif verb == b"LOGOUT":
                conn.sendall(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                return
            elif verb == b"NOOP":
                conn.sendall(tag + b" OK done\r\n")
            else:
                conn.sendall(tag + b" BAD unknown\r\n")
    return handler


# ---- STARTTLS upstreams: a plaintext dialogue, then TLS, then the handler ----

PRETLS = b"PRETLS-SECRET"   # marks everything said before TLS


class Plain:
    """Line I/O on a raw socket that records what the proxy sent before TLS."""

    def __init__(self, conn, box):
        self.conn, self.box = conn, box
        self.buf = b""

    def send(self, data):
        self.conn.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.conn.recv(4096)
            if not data:
                raise EOFError("proxy closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        self.box.pretls.append(line)
        return line


def starttls_upstream(protocol, box, ctx, misbehave=None):
    """A STARTTLS server for protocol.  misbehave: None, "no-starttls",
    "refuse", "inject", "preauth", "stall", "unsolicited"; pop3 also
    "no-capa" (CAPA answered -ERR, STLS taken) and "no-capa-refuse"."""
    post = {"smtp": smtp, "pop3": pop3, "imap": imap}[protocol](box, greet=False)

    def handler(conn):
        io = Plain(conn, box)
        if misbehave == "stall":
            time.sleep(30)
            return
        if protocol == "smtp":
            io.send(b"220 mail.test ESMTP " + PRETLS + b"\r\n" +
                    (b"250 surprise\r\n" if misbehave == "unsolicited" else b""))
            if not io.line().upper().startswith(b"EHLO "):
                return
            io.send(b"250-mail.test " + PRETLS + b"\r\n250-PIPELINING\r\n" +
                    (b"" if misbehave == "no-starttls" else b"250-STARTTLS\r\n") +
                    b"250 AUTH PLAIN\r\n")
            if io.line().upper() != b"STARTTLS":
                return
            if misbehave == "refuse":
                io.send(b"454 4.7.0 TLS not available " + PRETLS + b"\r\n")
                return
            io.send(b"220 2.0.0 go ahead\r\n" +
                    (b"250 injected " + PRETLS + b"\r\n" if misbehave == "inject" else b""))
        elif protocol == "pop3":
            io.send(b"+OK " + PRETLS + b"\r\n")
            if io.line().upper() != b"CAPA":
                return
            if misbehave in ("no-capa", "no-capa-refuse"):
                io.send(b"-ERR unknown command\r\n")      # an RFC 1939 server
            else:
                io.send(b"+OK\r\nTOP\r\nUSER\r\n" +
                        (b"" if misbehave == "no-starttls" else b"STLS\r\n") + b".\r\n")
            if io.line().upper() != b"STLS":
                return
            if misbehave in ("refuse", "no-capa-refuse"):
                io.send(b"-ERR not now\r\n")
                return
            io.send(b"+OK begin TLS\r\n" +
                    (b"+OK injected\r\n" if misbehave == "inject" else b""))
        else:
            if misbehave == "preauth":
                io.send(b"* PREAUTH " + PRETLS + b"\r\n")
                io.line()
                return
            io.send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] " + PRETLS + b"\r\n")
            tag, cmd = io.line().split(b" ", 1)
            if cmd.upper() != b"STARTTLS":
                return
            if misbehave in ("refuse", "no-starttls"):
                io.send(tag + b" BAD unknown command\r\n")
                return
            io.send(tag + b" OK begin TLS\r\n" +
                    (b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] injected\r\n"
                     if misbehave == "inject" else b""))
        if io.buf:
            box.pretls.append(b"EARLY:" + io.buf)
            return
        tls = ctx.wrap_socket(conn, server_side=True)
        box.tls_sessions += 1
        try:
            if protocol == "imap":
                f = tls.makefile("rb")
                tag = f.readline().split(b" ", 1)[0]
                tls.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN IDLE\r\n" + tag +
                            b" OK done\r\n")
            post(tls)
        finally:
            tls.close()
    return handler
