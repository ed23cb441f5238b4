"""Upstream certificate verification (DESIGN: security defaults): chain and
RFC 6125 name checks on by default, the reason named in the log, the client
told with a protocol-correct temporary error, no byte relayed."""

import imaplib
import smtplib

import pytest

from helpers import client_ctx, free_port, server_ctx, service, tls_connect


def greeter(conn):
    conn.sendall(b"220 mail.test ESMTP upstream\r\n")
    conn.recv(100)


def start(proxies, upstreams, certs, cert_name, extra="", protocol="smtp",
          name="localhost", ca="ca"):
    sni = []
    up = upstreams(greeter, server_ctx(certs, cert_name, record_sni=sni))
    cfg = "upstream_ca = %s/%s.crt\n" % (certs, ca)
    if name:
        cfg += "upstream_name = %s\n" % name
    proxy = proxies(service("up", protocol, up.addr, certs, "implicit", cfg + extra))
    return proxy, up, sni


@pytest.mark.parametrize("cert,reason", [
    ("expired", "expired: certificate has expired"),
    ("wrong-name", "wrong-name"),
    ("unknown-ca", "unknown-ca"),
    ("cn-only", "wrong-name"),            # a CN without SAN is not a name
    ("partial-wildcard", "wrong-name"),   # m*.mail.test never matches
])
def test_bad_upstream_certificate_is_refused(proxies, upstreams, certs, cert, reason):
    name = "mx.mail.test" if "wildcard" in cert else "localhost"
    proxy, up, _ = start(proxies, upstreams, certs, cert, name=name)
    s = tls_connect(proxy.port("up"), certs)
    data = s.recv(200)
    # A temporary SMTP error from the proxy, never the upstream's greeting.
    assert data.startswith(b"421 4.7.0 ")
    assert b"mailproxy" in data and b"ESMTP upstream" not in data
    s.close()
    proxy.wait_log(r"event=upstream-failed reason=upstream-verify-failed "
                   r"detail=\"%s" % reason)
    proxy.wait_log(r"event=close .*reason=upstream-verify-failed")


def test_whole_label_wildcard_is_accepted(proxies, upstreams, certs):
    proxy, up, sni = start(proxies, upstreams, certs, "wildcard", name="mx.mail.test")
    s = tls_connect(proxy.port("up"), certs)
    assert s.recv(200) == b"220 mail.test ESMTP upstream\r\n"
    s.close()
    assert sni == ["mx.mail.test"]


def test_good_certificate_sends_sni_and_relays(proxies, upstreams, certs):
    proxy, up, sni = start(proxies, upstreams, certs, "server-rsa")
    s = tls_connect(proxy.port("up"), certs)
    assert s.recv(200) == b"220 mail.test ESMTP upstream\r\n"
    s.close()
    assert sni == ["localhost"]


def test_no_sni_for_ip_upstream_name(proxies, upstreams, certs):
    proxy, up, sni = start(proxies, upstreams, certs, "server-rsa", name="127.0.0.1")
    s = tls_connect(proxy.port("up"), certs)
    assert s.recv(200) == b"220 mail.test ESMTP upstream\r\n"   # IP SAN checked
    s.close()
    assert sni == [None]


def test_system_bundle_is_the_default_trust(proxies, upstreams, certs):
    """Without upstream_ca our dev CA is not trusted: unknown-ca."""
    up = upstreams(greeter, server_ctx(certs, "server-ecdsa"))
    proxy = proxies(service("up", "smtp", up.addr, certs, "implicit",
                            "upstream_name = localhost\n"))
    s = tls_connect(proxy.port("up"), certs)
    assert s.recv(200).startswith(b"421 ")
    proxy.wait_log(r"reason=upstream-verify-failed detail=\"unknown-ca")


def test_verify_no_connects_but_warns(proxies, upstreams, certs):
    proxy, up, _ = start(proxies, upstreams, certs, "wrong-name",
                         extra="upstream_verify = no\n")
    assert "upstream_verify = no: the upstream certificate is NOT checked" in proxy.log()
    s = tls_connect(proxy.port("up"), certs)
    assert s.recv(200) == b"220 mail.test ESMTP upstream\r\n"
    s.close()
    proxy.wait_log(r"upstream certificate not verified")


@pytest.mark.parametrize("protocol,check", [
    ("pop3", lambda data: data.startswith(b"-ERR ")),
    ("imap", lambda data: data.startswith(b"* BYE ")),
])
def test_error_is_protocol_correct(proxies, upstreams, certs, protocol, check):
    proxy, up, _ = start(proxies, upstreams, certs, "expired", protocol=protocol)
    s = tls_connect(proxy.port("up"), certs)
    assert check(s.recv(200))


def test_real_clients_see_a_temporary_error(proxies, upstreams, certs):
    proxy, up, _ = start(proxies, upstreams, certs, "expired")
    with pytest.raises(smtplib.SMTPConnectError) as e:
        smtplib.SMTP_SSL("127.0.0.1", proxy.port("up"), context=client_ctx(certs),
                         local_hostname="c.test", timeout=10)
    assert e.value.smtp_code == 421


def test_upstream_refused_connection(proxies, upstreams, certs):
    port = free_port()   # nothing listens there
    proxy = proxies(service("up", "imap", "127.0.0.1:%d" % port, certs))
    m = None
    with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
        m = imaplib.IMAP4_SSL("127.0.0.1", proxy.port("up"),
                              ssl_context=client_ctx(certs), timeout=10)
    assert m is None
    proxy.wait_log(r"reason=upstream-connect-failed detail=\"127\.0\.0\.1:%d: "
                   r"Connection refused" % port)
