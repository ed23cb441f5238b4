"""A client that leaves while the proxy is still logging in upstream: the
upstream leg closes at once, after a LOGOUT/QUIT when the dialogue allows
one, instead of staying open until the login's answer comes.

The upstreams are scripted (implicit TLS) so that the window is certain:
each stalls its answer to the proxy's login (or its greeting) for STALL
seconds, and records when the proxy's side ended and what it sent first.
The bound is a fifth of the stall, measured in the same run."""

import base64
import socket
import ssl
import threading
import time

import pytest

from helpers import server_ctx, tls_connect, wait_for
from test_accounts import LOCAL, account, make_hash, private_file, svc
from test_upstream_auth import auth_service

STALL = 5.0


class Stall:
    """The upstream's side of one session."""

    def __init__(self):
        self.login = threading.Event()   # the login command arrived
        self.after = []                  # lines after it
        self.ended = None                # when the proxy's side ended


class Lines:
    """CRLF lines from a socket; a timeout leaves the buffer as it was."""

    def __init__(self, conn):
        self.conn, self.buf = conn, b""

    def next(self):
        """The next line, or None at the end (EOF, reset, TLS error)."""
        while b"\r\n" not in self.buf:
            try:
                data = self.conn.recv(4096)
            except (ssl.SSLError, ConnectionResetError):
                data = b""
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line


def stalled(box, greeting, answers, is_login, ok):
    """A server that answers from answers until is_login(line) (greeting
    None: stalls before its greeting), then says nothing for STALL seconds,
    noting what comes and when its peer ends; then ok(line), and reads on
    until the end."""
    def handler(conn):
        lines, login = Lines(conn), b""
        if greeting is not None:
            conn.sendall(greeting)
            while True:
                login = lines.next()
                if login is None:
                    box.ended = time.monotonic()
                    return
                if is_login(login):
                    break
                conn.sendall(answers(login))
        box.login.set()
        conn.settimeout(STALL)
        while True:
            try:
                line = lines.next()
            except socket.timeout:            # still there: answer, go on
                conn.settimeout(20)
                conn.sendall(ok(login))
                continue
            if line is None:
                box.ended = time.monotonic()
                return
            box.after.append(line)
    return handler


def imap_answers(line):
    tag = line.split(b" ", 1)[0]
    return b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n"


def smtp_answers(line):
    return b"250-mail.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"


UPSTREAMS = {
    "imap": (b"* OK ready\r\n", imap_answers, lambda l: b" LOGIN " in l,
             lambda l: l.split(b" ", 1)[0] + b" OK in\r\n"),
    "pop3": (b"+OK ready\r\n", lambda l: b"+OK\r\n", lambda l: l.startswith(b"PASS "),
             lambda l: b"+OK in\r\n"),
    "smtp": (b"220 mail.test ESMTP\r\n", smtp_answers, lambda l: l.startswith(b"AUTH "),
             lambda l: b"235 ok\r\n"),
}

LOGINS = {
    "imap": b"a LOGIN alice " + LOCAL.encode() + b"\r\n",
    "pop3": b"USER alice\r\nPASS " + LOCAL.encode() + b"\r\n",
    "smtp": b"EHLO c.test\r\nAUTH PLAIN " +
            base64.b64encode(b"\0alice\0" + LOCAL.encode()) + b"\r\n",
}

GOODBYE = {"imap": b" LOGOUT", "pop3": b"QUIT", "smtp": b"QUIT"}


@pytest.fixture(scope="module")
def local_hash():
    return make_hash(LOCAL)


def leave(box, sock, last=b""):
    """Waits for the upstream to be stalled, leaves; seconds until the
    upstream saw the proxy's side end."""
    assert box.login.wait(15), "the login never reached the upstream"
    time.sleep(0.2)                           # the proxy waits on the stall now
    if last:
        sock.sendall(last)
    sock.close()
    left = time.monotonic()
    wait_for(lambda: box.ended is not None, timeout=3 * STALL, what="upstream end")
    return box.ended - left


@pytest.mark.parametrize("proto", ["imap", "pop3", "smtp"])
def test_account_client_leaving_during_the_upstream_login(proxies, upstreams, certs,
                                                         local_hash, tmp_path, proto):
    box = Stall()
    greeting, answers, is_login, ok = UPSTREAMS[proto]
    up = upstreams(stalled(box, greeting, answers, is_login, ok), server_ctx(certs))
    f = private_file(tmp_path, "pw", "upstream-pw\n")
    p = proxies(svc("s", proto, up.port, "implicit", certs) +
                account("alice", local_hash, password_file=f))
    s = tls_connect(p.port("s"), certs)
    s.recv(4096)
    s.sendall(LOGINS[proto])
    # IMAP: the client's LOGOUT waits for the login, then it leaves.
    waited = leave(box, s, b"b LOGOUT\r\n" if proto == "imap" else b"")
    assert waited < STALL / 5, "the upstream leg stayed open %.1f s" % waited
    # The login's command was pending: the goodbye could follow it.
    assert any(GOODBYE[proto] in l for l in box.after), box.after
    p.wait_log(r"event=close .*reason=client-closed")


@pytest.mark.parametrize("mech", ["plain", "login"])
def test_device_leaving_during_the_services_upstream_login(proxies, upstreams, certs,
                                                           tmp_path, mech):
    box = Stall()
    greeting, answers, _, ok = UPSTREAMS["smtp"]
    # AUTH LOGIN: stalled at its first prompt, where no QUIT can be sent
    # (it would be read as the user name).
    is_login = (lambda l: l.startswith(b"AUTH ")) if mech == "plain" else \
        (lambda l: l == b"AUTH LOGIN")
    up = upstreams(stalled(box, greeting, answers, is_login, ok), server_ctx(certs))
    f = private_file(tmp_path, "pw", "upstream-pw\n")
    p = proxies(auth_service("s", up.port, "implicit", mech, f, certs))
    s = socket.create_connection(("127.0.0.1", p.port("s")), timeout=10)
    waited = leave(box, s)
    assert waited < STALL / 5, "the upstream leg stayed open %.1f s" % waited
    assert [l for l in box.after if l == b"QUIT"] == ([b"QUIT"] if mech == "plain" else [])


def test_client_leaving_while_the_upstream_greeting_stalls(proxies, upstreams, certs,
                                                           local_hash, tmp_path):
    box = Stall()
    up = upstreams(stalled(box, None, None, None, lambda l: b"* OK late\r\n"),
                   server_ctx(certs))
    f = private_file(tmp_path, "pw", "upstream-pw\n")
    p = proxies(svc("s", "imap", up.port, "implicit", certs) +
                account("alice", local_hash, password_file=f))
    s = tls_connect(p.port("s"), certs)
    s.recv(4096)
    s.sendall(LOGINS["imap"])
    waited = leave(box, s)
    assert waited < STALL / 5, "the upstream leg stayed open %.1f s" % waited
    assert box.after == []                    # nothing to say before a greeting
