"""Minimal scripted SMTP, POP3 and IMAP upstreams: enough for Python's real
clients to log in, send and fetch through the proxy, and to record what
arrived.  The real-server suite puts Postfix and Dovecot behind the proxy;
these stand in where a test needs to see exactly what the upstream got."""

import base64

USER, PASSWORD = "alice", "secret"
MESSAGE = (b"From: bob@mail.test\r\nTo: alice@mail.test\r\nSubject: hi\r\n\r\n"
           b"line one\r\n..dot-stuffed line\r\nlast line\r\n")


class Mailbox:
    def __init__(self):
        self.received = []   # messages accepted over SMTP
        self.logins = []     # (protocol, user, ok)


def _lines(conn):
    f = conn.makefile("rb")
    while True:
        line = f.readline(4096)
        if not line:
            return
        yield line


def smtp(box):
    def handler(conn):
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


def pop3(box):
    def handler(conn):
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


def imap(box):
    def handler(conn):
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
