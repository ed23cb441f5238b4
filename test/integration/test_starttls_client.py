"""STARTTLS offered to clients (client_tls = starttls) in front of servers
that speak plaintext, implicit TLS or STARTTLS: real clients (openssl
s_client -starttls, curl --ssl-reqd, smtplib/poplib/imaplib starttls) and
raw-socket attacks (CVE-2011-0411 shapes) that must reach nobody."""

import imaplib
import poplib
import smtplib
import socket
import subprocess
import time

import pytest

import fakemail
from helpers import client_ctx, read_to_eof, recv_exact, server_ctx

UPSTREAMS = ["none", "implicit", "starttls"]
GREETING = {
    "smtp": b"220 gw.test ESMTP mailproxy ready\r\n",
    "pop3": b"+OK gw.test POP3 mailproxy ready\r\n",
    "imap": b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] gw.test mailproxy ready\r\n",
}


def start(proxies, upstreams, certs, protocol, upstream_tls, extra=""):
    box = fakemail.Mailbox()
    if upstream_tls == "starttls":
        up = upstreams(fakemail.starttls_upstream(protocol, box, server_ctx(certs)))
    else:
        handler = getattr(fakemail, protocol)(box)
        up = upstreams(handler, server_ctx(certs) if upstream_tls == "implicit" else None)
    text = ("[offer]\nprotocol = %s\nlisten = 127.0.0.1:0\nclient_tls = starttls\n"
            "cert = %s/server-ecdsa.crt\nkey = %s/server-ecdsa.key\n"
            "upstream = %s\nupstream_tls = %s\n" % (protocol, certs, certs, up.addr,
                                                     upstream_tls))
    if upstream_tls != "none":
        text += "upstream_name = localhost\nupstream_ca = %s/ca.crt\n" % certs
    text += "ehlo_name = gw.test\n"     # the name in the proxy's greeting
    return proxies(text + extra), up, box


# ---- real clients, all upstream modes --------------------------------------

@pytest.mark.parametrize("upstream_tls", UPSTREAMS)
def test_smtplib_starttls(proxies, upstreams, certs, upstream_tls):
    proxy, up, box = start(proxies, upstreams, certs, "smtp", upstream_tls)
    with smtplib.SMTP("127.0.0.1", proxy.port("offer"), local_hostname="client.test",
                      timeout=10) as s:
        code, _ = s.ehlo()
        assert code == 250 and s.has_extn("starttls") and not s.has_extn("auth")
        s.starttls(context=client_ctx(certs))
        s.ehlo()
        assert s.has_extn("auth")           # the real server's post-TLS list
        s.login(fakemail.USER, fakemail.PASSWORD)
        s.sendmail("bob@mail.test", ["alice@mail.test"], fakemail.MESSAGE)
    assert box.received == [fakemail.MESSAGE]


@pytest.mark.parametrize("upstream_tls", UPSTREAMS)
def test_poplib_stls(proxies, upstreams, certs, upstream_tls):
    proxy, up, box = start(proxies, upstreams, certs, "pop3", upstream_tls)
    p = poplib.POP3("127.0.0.1", proxy.port("offer"), timeout=10)
    assert "STLS" in p.capa()
    with pytest.raises(poplib.error_proto, match="STLS first"):
        p.user(fakemail.USER)
    p.stls(context=client_ctx(certs))
    p.user(fakemail.USER)
    p.pass_(fakemail.PASSWORD)
    assert p.stat()[0] == 1
    p.quit()
    assert box.logins == [("pop3", "alice", True)]


@pytest.mark.parametrize("upstream_tls", UPSTREAMS)
def test_imaplib_starttls(proxies, upstreams, certs, upstream_tls):
    proxy, up, box = start(proxies, upstreams, certs, "imap", upstream_tls)
    m = imaplib.IMAP4("127.0.0.1", proxy.port("offer"), timeout=10)
    assert "LOGINDISABLED" in m.capabilities and "STARTTLS" in m.capabilities
    m.starttls(ssl_context=client_ctx(certs))
    assert "LOGINDISABLED" not in m.capabilities    # asked again inside TLS
    m.login(fakemail.USER, fakemail.PASSWORD)
    m.select("INBOX")
    assert m.fetch("1", "(RFC822)")[1][0][1] == fakemail.MESSAGE
    m.logout()


@pytest.mark.parametrize("protocol", ["smtp", "pop3", "imap"])
def test_openssl_s_client_starttls(proxies, upstreams, certs, protocol):
    proxy, up, box = start(proxies, upstreams, certs, protocol, "none")
    r = subprocess.run(
        ["openssl", "s_client", "-starttls", protocol, "-connect",
         "127.0.0.1:%d" % proxy.port("offer"), "-CAfile", certs + "/ca.crt",
         "-verify_hostname", "localhost", "-verify_return_error", "-brief"],
        input=b"", capture_output=True, timeout=20)
    assert b"Verification: OK" in r.stderr, r.stderr
    assert r.returncode == 0


def test_curl_ssl_reqd(proxies, upstreams, certs, tmp_path):
    proxy, up, box = start(proxies, upstreams, certs, "smtp", "none")
    msg = tmp_path / "m.eml"
    msg.write_bytes(fakemail.MESSAGE)
    r = subprocess.run(["curl", "-sS", "--ssl-reqd", "--cacert", certs + "/ca.crt",
                        "--resolve", "localhost:%d:127.0.0.1" % proxy.port("offer"),
                        "smtp://localhost:%d" % proxy.port("offer"),
                        "--user", "%s:%s" % (fakemail.USER, fakemail.PASSWORD),
                        "--mail-from", "bob@mail.test", "--mail-rcpt", "alice@mail.test",
                        "-T", str(msg)], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert box.received == [fakemail.MESSAGE]


# ---- nothing before TLS reaches the upstream -------------------------------

def raw(proxy, protocol):
    s = socket.create_connection(("127.0.0.1", proxy.port("offer")), timeout=5)
    assert recv_exact(s, len(GREETING[protocol])) == GREETING[protocol]
    return s


def read_until_closed(s, limit=5.0):
    s.settimeout(limit)
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data, "eof"
            data += chunk
    except ConnectionResetError:
        return data, "reset"
    except socket.timeout:
        return data, "open"


@pytest.mark.parametrize("protocol,attack", [
    ("smtp", b"STARTTLS\r\nRSET\r\n"),
    ("smtp", b"STARTTLS\r\nMAIL FROM:<evil@x>\r\n"),
    ("pop3", b"STLS\r\nUSER alice\r\n"),
    ("imap", b"a STARTTLS\r\nb LOGIN alice secret\r\n"),
])
def test_injection_in_one_write(proxies, upstreams, certs, protocol, attack):
    proxy, up, box = start(proxies, upstreams, certs, protocol, "none")
    s = raw(proxy, protocol)
    s.sendall(attack)
    data, how = read_until_closed(s)
    assert data == b""          # not even the "ready to start TLS" answer
    assert how in ("eof", "reset")
    proxy.wait_log("reason=client-injection")
    assert up.connections == 0


@pytest.mark.parametrize("protocol,starttls,ok,later", [
    ("smtp", b"STARTTLS\r\n", b"220 2.0.0 Ready to start TLS\r\n", b"RSET\r\n"),
    ("pop3", b"STLS\r\n", b"+OK Begin TLS negotiation\r\n", b"USER alice\r\n"),
    ("imap", b"a STARTTLS\r\n", b"a OK Begin TLS negotiation now\r\n", b"b LOGOUT\r\n"),
])
def test_injection_in_a_second_write(proxies, upstreams, certs, protocol, starttls, ok,
                                     later):
    proxy, up, box = start(proxies, upstreams, certs, protocol, "none")
    s = raw(proxy, protocol)
    s.sendall(starttls)
    assert recv_exact(s, len(ok)) == ok
    s.sendall(later)            # plaintext where a ClientHello must be
    data, how = read_until_closed(s)
    assert how in ("eof", "reset")
    assert later not in data
    proxy.wait_log("reason=client-handshake-failed")
    assert up.connections == 0


def test_pipelined_ehlo_starttls_works(proxies, upstreams, certs):
    proxy, up, box = start(proxies, upstreams, certs, "smtp", "none")
    s = raw(proxy, "smtp")
    s.sendall(b"EHLO dev.test\r\nSTARTTLS\r\n")
    expect = (b"250-gw.test\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n"
              b"250 STARTTLS\r\n220 2.0.0 Ready to start TLS\r\n")
    assert recv_exact(s, len(expect)) == expect
    t = client_ctx(certs).wrap_socket(s, server_hostname="localhost")
    t.sendall(b"EHLO dev.test\r\n")
    reply = t.recv(4096)
    assert reply.startswith(b"250-mail.test")      # the real server, inside TLS
    t.close()


@pytest.mark.parametrize("protocol,cmd,refusal", [
    ("smtp", b"MAIL FROM:<a@b>\r\n", b"530 5.7.0 Must issue a STARTTLS command first\r\n"),
    ("smtp", b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
     b"530 5.7.0 Must issue a STARTTLS command first\r\n"),
    ("pop3", b"USER alice\r\n", b"-ERR [AUTH] Must issue STLS first\r\n"),
    ("imap", b"a LOGIN alice secret\r\n", b"a NO [PRIVACYREQUIRED] Use STARTTLS first\r\n"),
    # A NUL is a syntax error, never read as the text before it (which
    # would start TLS here).
    ("smtp", b"STARTTLS\0\r\n", b"501 5.5.2 Syntax error: NUL byte in command\r\n"),
    ("pop3", b"STLS\0junk\r\n", b"-ERR Syntax error: NUL byte in command\r\n"),
    ("imap", b"a STARTTLS\0\r\n", b"* BAD Syntax error: NUL byte in command\r\n"),
])
def test_login_before_tls_is_refused_locally(proxies, upstreams, certs, protocol, cmd,
                                             refusal):
    proxy, up, box = start(proxies, upstreams, certs, protocol, "none")
    s = raw(proxy, protocol)
    s.sendall(cmd)
    assert recv_exact(s, len(refusal)) == refusal
    s.close()
    time.sleep(0.2)
    assert up.connections == 0     # the upstream is dialled only after TLS


@pytest.mark.parametrize("cmd", [b"a LOGIN {5+}\r\nb NOOP\r\n",
                                 b"a LOGIN alice {6}\r\n"])
def test_imap_literal_before_tls_ends_the_session(proxies, upstreams, certs, cmd):
    """The literal's bytes ("b NOOP") are never read as a command."""
    proxy, up, box = start(proxies, upstreams, certs, "imap", "none")
    s = raw(proxy, "imap")
    s.sendall(cmd)
    data = read_to_eof(s)
    assert data == (b"a BAD Literals are not accepted before STARTTLS\r\n"
                    b"* BYE Closing connection\r\n")
    proxy.wait_log(r"event=close .*reason=client-literal-before-starttls")
    assert up.connections == 0


def test_slow_client_cut_at_negotiation_timeout(proxies, upstreams, certs):
    proxy, up, box = start(proxies, upstreams, certs, "smtp", "none",
                           extra="negotiation_timeout = 1\n")
    s = raw(proxy, "smtp")
    t0 = time.monotonic()
    s.sendall(b"EH")
    data, how = read_until_closed(s)
    assert data == b"421 4.4.2 Timeout: closing connection\r\n"
    assert 0.8 < time.monotonic() - t0 < 4
    proxy.wait_log("reason=client-negotiation-timeout")


def test_upstream_failure_after_client_tls_is_reported_inside_tls(proxies, upstreams,
                                                                   certs):
    box = fakemail.Mailbox()
    up = upstreams(fakemail.starttls_upstream("smtp", box, server_ctx(certs), "refuse"))
    proxy = proxies("[offer]\nprotocol = smtp\nlisten = 127.0.0.1:0\n"
                    "client_tls = starttls\ncert = %s/server-ecdsa.crt\n"
                    "key = %s/server-ecdsa.key\nupstream = %s\nupstream_tls = starttls\n"
                    "upstream_name = localhost\nupstream_ca = %s/ca.crt\n"
                    "ehlo_name = gw.test\n" % (certs, certs, up.addr, certs))
    with smtplib.SMTP("127.0.0.1", proxy.port("offer"), local_hostname="c.test",
                      timeout=10) as s:
        s.starttls(context=client_ctx(certs))
        code, msg = s.ehlo()
        assert code == 421 and msg.startswith(b"4.7.0")
    proxy.wait_log("reason=upstream-starttls-refused")
