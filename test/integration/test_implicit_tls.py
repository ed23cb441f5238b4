"""Implicit TLS in (465/993/995 style) -> plaintext or implicit-TLS upstream,
with Python's real mail clients on the client side."""

import imaplib
import poplib
import smtplib

import pytest

import fakemail
from helpers import client_ctx, server_ctx, service

UPSTREAM_MODES = ["none", "implicit"]


def start(proxies, upstreams, certs, protocol, upstream_tls, box):
    handler = getattr(fakemail, protocol)(box)
    sni = []
    up = upstreams(handler, server_ctx(certs, record_sni=sni)
                   if upstream_tls == "implicit" else None)
    extra = ("upstream_name = localhost\nupstream_ca = %s/ca.crt\n" % certs
             if upstream_tls == "implicit" else "")
    proxy = proxies(service("svc", protocol, up.addr, certs, upstream_tls, extra))
    return proxy, up, sni


@pytest.mark.parametrize("upstream_tls", UPSTREAM_MODES)
def test_smtp_submission(proxies, upstreams, certs, upstream_tls):
    box = fakemail.Mailbox()
    proxy, up, sni = start(proxies, upstreams, certs, "smtp", upstream_tls, box)
    with smtplib.SMTP_SSL("127.0.0.1", proxy.port("svc"), local_hostname="client.test",
                          context=client_ctx(certs), timeout=10) as s:
        # The client verifies the proxy's certificate (IP SAN 127.0.0.1).
        s.login(fakemail.USER, fakemail.PASSWORD)
        s.sendmail("bob@mail.test", ["alice@mail.test"], fakemail.MESSAGE)
    assert box.received == [fakemail.MESSAGE]
    assert box.logins == [("smtp", "alice", True)]
    if upstream_tls == "implicit":
        assert sni == ["localhost"]   # SNI = upstream_name
    proxy.wait_log(r"event=close svc=svc pid=\d+ client=127\.0\.0\.1:\d+ .*"
                   r"client_tls=TLSv1\.3/TLS_\S+ upstream=127\.0\.0\.1:%d "
                   r"upstream_tls=%s bytes_in=\d+ bytes_out=\d+ ms=\d+ "
                   r"state=relay reason=\S+" % (up.port, "TLSv1.3/TLS_\\S+"
                                                if upstream_tls == "implicit" else "-"))


@pytest.mark.parametrize("upstream_tls", UPSTREAM_MODES)
def test_smtp_wrong_password_is_the_servers_refusal(proxies, upstreams, certs, upstream_tls):
    box = fakemail.Mailbox()
    proxy, up, _ = start(proxies, upstreams, certs, "smtp", upstream_tls, box)
    with smtplib.SMTP_SSL("127.0.0.1", proxy.port("svc"), local_hostname="client.test",
                          context=client_ctx(certs), timeout=10) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login(fakemail.USER, "wrong")
        assert e.value.smtp_code == 535
    assert box.logins == [("smtp", "alice", False)]


@pytest.mark.parametrize("upstream_tls", UPSTREAM_MODES)
def test_pop3_login_and_retr(proxies, upstreams, certs, upstream_tls):
    box = fakemail.Mailbox()
    proxy, up, _ = start(proxies, upstreams, certs, "pop3", upstream_tls, box)
    p = poplib.POP3_SSL("127.0.0.1", proxy.port("svc"), context=client_ctx(certs),
                        timeout=10)
    assert p.getwelcome().startswith(b"+OK scripted")
    p.user(fakemail.USER)
    p.pass_(fakemail.PASSWORD)
    assert p.stat()[0] == 1
    resp, lines, octets = p.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == fakemail.MESSAGE.replace(b"\r\n..", b"\r\n.")
    p.quit()
    assert box.logins == [("pop3", "alice", True)]


@pytest.mark.parametrize("upstream_tls", UPSTREAM_MODES)
def test_imap_login_and_fetch(proxies, upstreams, certs, upstream_tls):
    box = fakemail.Mailbox()
    proxy, up, _ = start(proxies, upstreams, certs, "imap", upstream_tls, box)
    m = imaplib.IMAP4_SSL("127.0.0.1", proxy.port("svc"), ssl_context=client_ctx(certs),
                          timeout=10)
    m.login(fakemail.USER, fakemail.PASSWORD)
    typ, data = m.select("INBOX")
    assert typ == "OK" and data == [b"1"]
    typ, data = m.fetch("1", "(RFC822)")
    assert data[0][1] == fakemail.MESSAGE
    m.logout()
    assert box.logins == [("imap", "alice", True)]


def test_imap_wrong_password(proxies, upstreams, certs):
    box = fakemail.Mailbox()
    proxy, up, _ = start(proxies, upstreams, certs, "imap", "none", box)
    m = imaplib.IMAP4_SSL("127.0.0.1", proxy.port("svc"), ssl_context=client_ctx(certs),
                          timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        m.login(fakemail.USER, "wrong")
    m.logout()
