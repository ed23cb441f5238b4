"""Never TLS in TLS: a client already in TLS (implicit, or after the proxy's
own STARTTLS) that sends STARTTLS / STLS again is refused by the proxy and
the session ends; the command never reaches the server.

The upstreams are the real servers' STARTTLS ports used in plaintext
(upstream_tls = none): Postfix submission and Dovecot offer STARTTLS there
and would accept it, starting a second TLS session inside the proxy's.  So
these tests fail if the guard is gone: the client would get Postfix's
"220 2.0.0 Ready to start TLS" or Dovecot's "OK Begin TLS".

The guard reads commands only: message bodies, BDAT chunks and IMAP
literals that contain the word are relayed untouched (checked end to end
against the real servers)."""

import imaplib
import re
import smtplib
import socket
import uuid

import pytest

from helpers import Proxy, client_ctx
from test_real_servers import delivered

PLAIN_WITH_STARTTLS = {"smtp": "smtp_submission", "imap": "imap_starttls",
                       "pop3": "pop3_starttls"}
PLAIN_ONLY = {"smtp": "smtp_plain", "imap": "imap_plain", "pop3": "pop3_plain"}


@pytest.fixture(scope="module")
def guard_proxy(servers, certs, tmp_path_factory):
    text = "log_level = debug\n"
    for proto in ("smtp", "imap", "pop3"):
        for client_tls in ("implicit", "starttls"):
            text += ("[%s-%s]\nprotocol = %s\nlisten = 127.0.0.1:0\nclient_tls = %s\n"
                     "cert = %s/server-ecdsa.crt\nkey = %s/server-ecdsa.key\n"
                     "upstream = 127.0.0.1:%d\nupstream_tls = none\n"
                     % (proto, client_tls, proto, client_tls, certs, certs,
                        servers["ports"][PLAIN_WITH_STARTTLS[proto]]))
        text += ("[%s-plain-only]\nprotocol = %s\nlisten = 127.0.0.1:0\nclient_tls = implicit\n"
                 "cert = %s/server-ecdsa.crt\nkey = %s/server-ecdsa.key\n"
                 "upstream = 127.0.0.1:%d\nupstream_tls = none\n"
                 % (proto, proto, certs, certs, servers["ports"][PLAIN_ONLY[proto]]))
    # The server in TLS too: the proxy refuses before the server could.
    text += ("[smtp-tls-up]\nprotocol = smtp\nlisten = 127.0.0.1:0\nclient_tls = implicit\n"
             "cert = %s/server-ecdsa.crt\nkey = %s/server-ecdsa.key\n"
             "upstream = 127.0.0.1:%d\nupstream_tls = implicit\nupstream_name = mail.test\n"
             "upstream_ca = %s/ca.crt\n" % (certs, certs, servers["ports"]["smtp_smtps"], certs))
    p = Proxy(str(tmp_path_factory.mktemp("guard")), text)
    yield p
    p.stop()
    assert "runtime error:" not in p.log() and "AddressSanitizer" not in p.log()


class Lines:
    """A TLS connection to the proxy, read line by line."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                raise EOFError(self.buf)
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def until(self, pred):
        while True:
            line = self.line()
            if pred(line):
                return line

    def rest(self):
        """Everything until the proxy closes."""
        data = self.buf
        while True:
            chunk = self.sock.recv(4096)
            if not chunk:
                return data
            data += chunk


def tls_session(proxy, name, proto, client_tls, certs):
    """Connects and, for client_tls = starttls, upgrades through the proxy's
    own pre-TLS dialogue.  Returns a Lines past the greeting."""
    raw = socket.create_connection(("127.0.0.1", proxy.port(name)), timeout=15)
    ctx = client_ctx(certs)
    if client_tls == "implicit":
        c = Lines(ctx.wrap_socket(raw, server_hostname="localhost"))
        c.line()                                        # the server's greeting
        return c
    pre = Lines(raw)
    pre.line()                                          # the proxy's greeting
    pre.send({"smtp": b"STARTTLS\r\n", "pop3": b"STLS\r\n", "imap": b"t0 STARTTLS\r\n"}[proto])
    pre.line()
    return Lines(ctx.wrap_socket(raw, server_hostname="localhost"))


def server_offers_starttls(c, proto):
    """Asks the real server for its capabilities: it offers STARTTLS."""
    if proto == "smtp":
        c.send(b"EHLO client.test\r\n")
        caps = []
        while True:
            line = c.line()
            caps.append(line)
            if line[3:4] == b" ":
                break
        return any(b"STARTTLS" in l for l in caps)
    if proto == "pop3":
        c.send(b"CAPA\r\n")
        caps = [c.line()]
        while caps[-1] != b".\r\n":
            caps.append(c.line())
        return b"STLS\r\n" in caps
    c.send(b"c1 CAPABILITY\r\n")
    caps = c.until(lambda l: l.startswith(b"* CAPABILITY"))
    c.until(lambda l: l.startswith(b"c1 "))
    return b"STARTTLS" in caps


@pytest.mark.parametrize("client_tls", ["implicit", "starttls"])
@pytest.mark.parametrize("proto", ["smtp", "imap", "pop3"])
def test_starttls_inside_tls_is_refused(guard_proxy, certs, proto, client_tls):
    name = "%s-%s" % (proto, client_tls)
    before = len(re.findall(r"svc=%s event=starttls-in-tls" % name, guard_proxy.log()))
    c = tls_session(guard_proxy, name, proto, client_tls, certs)
    # The real server, reached in plaintext, would accept it...
    assert server_offers_starttls(c, proto)
    c.send({"smtp": b"STARTTLS\r\n", "pop3": b"STLS\r\n", "imap": b"s9 STARTTLS\r\n"}[proto])
    # ...but the proxy answers, closes, and the server never says yes.
    rest = c.rest()
    expect = {"smtp": b"421 4.7.0 mailproxy: TLS is already active, closing connection\r\n",
              "pop3": b"-ERR [SYS/PERM] mailproxy: TLS is already active\r\n",
              "imap": b"s9 BAD TLS is already active\r\n* BYE mailproxy: closing connection\r\n"}
    assert rest == expect[proto]
    guard_proxy.wait_log(r"svc=%s event=starttls-in-tls client=127\.0\.0\.1" % name,
                         count=before + 1)
    guard_proxy.wait_log(r"svc=%s pid=\d+ client=\S+ .* reason=client-starttls-in-tls" % name,
                         count=before + 1)


def test_refused_even_when_the_server_is_in_tls(guard_proxy, certs):
    """Upstream in TLS: Postfix would refuse too, but the proxy does it."""
    c = tls_session(guard_proxy, "smtp-tls-up", "smtp", "implicit", certs)
    c.send(b"EHLO client.test\r\n")
    c.until(lambda l: l.startswith(b"250 "))
    c.send(b"NOOP\r\nSTARTTLS\r\n")                    # pipelined behind a command
    assert c.rest().endswith(b"421 4.7.0 mailproxy: TLS is already active, "
                             b"closing connection\r\n")


def test_smtp_body_and_bdat_with_the_word_pass(guard_proxy, servers, certs):
    """A message whose body has STARTTLS lines, sent with DATA and with BDAT
    (Postfix offers CHUNKING), is delivered intact and the session goes on."""
    import base64
    port = guard_proxy.port("smtp-plain-only")
    body = "Subject: %s\r\n\r\nSTARTTLS\r\n..STARTTLS\r\nQUIT\r\n"
    marker = "guard-data-" + uuid.uuid4().hex
    s = smtplib.SMTP_SSL("127.0.0.1", port, context=client_ctx(certs), timeout=15)
    s.login(servers["user"], servers["password"])
    s.sendmail("a@client.test", ["alice@mail.test"], (body % marker).encode())
    assert s.noop()[0] == 250                         # the session goes on
    s.quit()
    # (Maildir stores LF line ends; smtplib dot-stuffed "..", Postfix undid it.)
    assert b"\nSTARTTLS\n..STARTTLS\nQUIT\n" in delivered(servers, marker).replace(
        b"\r\n", b"\n")

    marker = "guard-bdat-" + uuid.uuid4().hex
    payload = (body % marker).encode()
    c = tls_session(guard_proxy, "smtp-plain-only", "smtp", "implicit", certs)
    c.send(b"EHLO client.test\r\n")
    caps = [c.line()]
    while caps[-1][3:4] != b" ":
        caps.append(c.line())
    assert b"250-CHUNKING\r\n" in caps or b"250 CHUNKING\r\n" in caps
    auth = base64.b64encode(b"\0" + servers["user"].encode() + b"\0" +
                            servers["password"].encode())
    c.send(b"AUTH PLAIN " + auth + b"\r\n")
    assert c.line().startswith(b"235")
    c.send(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<alice@mail.test>\r\n")
    assert c.line().startswith(b"250") and c.line().startswith(b"250")
    c.send(b"BDAT %d LAST\r\n" % len(payload) + payload)
    assert c.line().startswith(b"250")
    c.send(b"QUIT\r\n")
    assert c.line().startswith(b"221")
    # BDAT is not dot-stuffed: the ".." line arrives as sent.
    assert b"\nSTARTTLS\n..STARTTLS\nQUIT\n" in delivered(servers, marker).replace(
        b"\r\n", b"\n")


def test_imap_literal_with_the_command_passes(guard_proxy, servers, certs):
    """APPEND of a message that holds "a STARTTLS" lines, then FETCH it back."""
    marker = "guard-imap-" + uuid.uuid4().hex
    msg = ("Subject: %s\r\n\r\na STARTTLS\r\nb starttls\r\n" % marker).encode()
    m = imaplib.IMAP4_SSL("127.0.0.1", guard_proxy.port("imap-plain-only"),
                          ssl_context=client_ctx(certs), timeout=15)
    m.login(servers["user"], servers["password"])
    typ, _ = m.append("INBOX", None, None, msg)
    assert typ == "OK"
    m.select("INBOX")
    typ, data = m.search(None, "SUBJECT", marker)
    num = data[0].split()[-1]
    typ, data = m.fetch(num, "(RFC822)")
    assert data[0][1] == msg
    m.logout()


@pytest.mark.parametrize("taglen", [72, 200, 8000])
@pytest.mark.parametrize("client_tls", ["implicit", "starttls"])
def test_a_long_imap_tag_does_not_hide_starttls(guard_proxy, certs, client_tls, taglen):
    """A tag of 72 bytes or more once pushed the verb out of what the guard
    kept: the command went to Dovecot, which began a TLS session in TLS."""
    name = "imap-%s" % client_tls
    c = tls_session(guard_proxy, name, "imap", client_tls, certs)
    assert server_offers_starttls(c, "imap")
    tag = b"a" * taglen
    c.send(tag + b" STARTTLS\r\n")
    # A tag the proxy can repeat gets a tagged answer; a longer one an
    # untagged one.  Dovecot's "OK Begin TLS" never comes.
    rest = c.rest()
    assert rest == ((tag if taglen <= 128 else b"*") +
                    b" BAD TLS is already active\r\n* BYE mailproxy: closing connection\r\n")
