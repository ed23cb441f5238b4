"""Upstream STARTTLS (upstream_tls = starttls) for plaintext and implicit-TLS
clients: real Python clients and curl through the proxy to scripted STARTTLS
servers, and each rule of the negotiation with a server that breaks it."""

import imaplib
import poplib
import smtplib
import socket
import subprocess
import time

import pytest

import fakemail
from fakemail import PRETLS
from helpers import client_ctx, recv_exact, server_ctx, tls_connect

CLIENT_MODES = ["none", "implicit"]


def config(certs, protocol, up, client_tls, extra=""):
    text = ("[st]\nprotocol = %s\nlisten = 127.0.0.1:0\nclient_tls = %s\n"
            "upstream = %s\nupstream_tls = starttls\nupstream_name = localhost\n"
            "upstream_ca = %s/ca.crt\n" % (protocol, client_tls, up.addr, certs))
    if protocol == "smtp":
        text += "ehlo_name = gw.test\n"
    if client_tls == "implicit":
        text += "cert = %s/server-ecdsa.crt\nkey = %s/server-ecdsa.key\n" % (certs, certs)
    return text + extra


def start(proxies, upstreams, certs, protocol, client_tls="none", misbehave=None,
          cert="server-rsa", extra=""):
    box = fakemail.Mailbox()
    up = upstreams(fakemail.starttls_upstream(protocol, box, server_ctx(certs, cert),
                                              misbehave))
    proxy = proxies(config(certs, protocol, up, client_tls, extra))
    return proxy, up, box


def connect(proxy, certs, client_tls):
    if client_tls == "implicit":
        return tls_connect(proxy.port("st"), certs)
    return socket.create_connection(("127.0.0.1", proxy.port("st")), timeout=10)


def read_all(sock, limit=5.0):
    sock.settimeout(limit)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, OSError):
        pass
    return data


# ---- real clients, well-behaved server ------------------------------------

@pytest.mark.parametrize("client_tls", CLIENT_MODES)
def test_smtp_send_through_starttls(proxies, upstreams, certs, client_tls):
    proxy, up, box = start(proxies, upstreams, certs, "smtp", client_tls)
    cls = smtplib.SMTP_SSL if client_tls == "implicit" else smtplib.SMTP
    kw = {"context": client_ctx(certs)} if client_tls == "implicit" else {}
    with cls("127.0.0.1", proxy.port("st"), local_hostname="scanner.test", timeout=10,
             **kw) as s:
        s.login(fakemail.USER, fakemail.PASSWORD)
        s.sendmail("scanner@office.test", ["alice@mail.test"], fakemail.MESSAGE)
    assert box.received == [fakemail.MESSAGE]
    assert box.tls_sessions == 1
    # Before TLS the server heard only the proxy: its EHLO and STARTTLS.
    assert box.pretls == [b"EHLO gw.test", b"STARTTLS"]
    proxy.wait_log(r"event=close .*upstream_tls=TLSv1\.3/\S+ .*state=relay")


@pytest.mark.parametrize("client_tls", CLIENT_MODES)
def test_pop3_retr_through_stls(proxies, upstreams, certs, client_tls):
    proxy, up, box = start(proxies, upstreams, certs, "pop3", client_tls)
    if client_tls == "implicit":
        p = poplib.POP3_SSL("127.0.0.1", proxy.port("st"), context=client_ctx(certs),
                            timeout=10)
    else:
        p = poplib.POP3("127.0.0.1", proxy.port("st"), timeout=10)
    assert p.getwelcome() == b"+OK ready"
    p.user(fakemail.USER)
    p.pass_(fakemail.PASSWORD)
    lines = p.retr(1)[1]
    assert b"\r\n".join(lines) + b"\r\n" == fakemail.MESSAGE.replace(b"\r\n..", b"\r\n.")
    p.quit()
    assert box.pretls == [b"CAPA", b"STLS"]


def test_pop3_server_without_capa_still_gets_stls(proxies, upstreams, certs):
    """CAPA is optional (RFC 2449): a server that answers it -ERR is sent
    STLS anyway, and the session runs in verified TLS."""
    proxy, up, box = start(proxies, upstreams, certs, "pop3", "implicit", "no-capa")
    p = poplib.POP3_SSL("127.0.0.1", proxy.port("st"), context=client_ctx(certs),
                        timeout=10)
    assert p.getwelcome() == b"+OK ready"
    p.user(fakemail.USER)
    p.pass_(fakemail.PASSWORD)
    assert b"\r\n".join(p.retr(1)[1]) + b"\r\n" == fakemail.MESSAGE.replace(b"\r\n..", b"\r\n.")
    p.quit()
    assert box.pretls == [b"CAPA", b"STLS"] and box.tls_sessions == 1


@pytest.mark.parametrize("client_tls", CLIENT_MODES)
def test_imap_fetch_through_starttls(proxies, upstreams, certs, client_tls):
    proxy, up, box = start(proxies, upstreams, certs, "imap", client_tls)
    if client_tls == "implicit":
        m = imaplib.IMAP4_SSL("127.0.0.1", proxy.port("st"), ssl_context=client_ctx(certs),
                              timeout=10)
    else:
        m = imaplib.IMAP4("127.0.0.1", proxy.port("st"), timeout=10)
    # The greeting carries the post-TLS capabilities, not the pre-TLS ones.
    assert m.welcome == b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN IDLE] ready"
    assert "LOGINDISABLED" not in m.capabilities
    m.login(fakemail.USER, fakemail.PASSWORD)
    m.select("INBOX")
    assert m.fetch("1", "(RFC822)")[1][0][1] == fakemail.MESSAGE
    m.logout()
    assert box.pretls == [b"mp1 STARTTLS"]


def test_curl_smtp_plain_client_to_starttls_server(proxies, upstreams, certs, tmp_path):
    proxy, up, box = start(proxies, upstreams, certs, "smtp", "none")
    msg = tmp_path / "msg.eml"
    msg.write_bytes(fakemail.MESSAGE)
    r = subprocess.run(["curl", "-sS", "smtp://127.0.0.1:%d" % proxy.port("st"),
                        "--user", "%s:%s" % (fakemail.USER, fakemail.PASSWORD),
                        "--mail-from", "scanner@office.test",
                        "--mail-rcpt", "alice@mail.test", "-T", str(msg)],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert box.received == [fakemail.MESSAGE]


# ---- rule 1: the client is greeted by the proxy, after TLS ----------------

@pytest.mark.parametrize("protocol,greeting", [
    ("smtp", b"220 gw.test ESMTP ready\r\n"),
    ("pop3", b"+OK ready\r\n"),
    ("imap", b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN IDLE] ready\r\n"),
])
def test_greeting_is_the_proxys_and_early_bytes_wait(proxies, upstreams, certs,
                                                     protocol, greeting):
    proxy, up, box = start(proxies, upstreams, certs, protocol, "none")
    s = connect(proxy, certs, "none")
    s.sendall(b"EARLY-CLIENT-BYTES\r\n")     # before any greeting
    assert recv_exact(s, len(greeting)) == greeting
    time.sleep(0.3)
    # The early bytes were not forwarded in plaintext...
    assert not any(b"EARLY" in line for line in box.pretls)
    s.close()


# ---- rule 2: fail closed ---------------------------------------------------

EXPECTED_ERROR = {"smtp": b"421 4.7.0 ", "pop3": b"-ERR [SYS/TEMP] ",
                  "imap": b"* BYE [UNAVAILABLE] "}


@pytest.mark.parametrize("client_tls", CLIENT_MODES)
@pytest.mark.parametrize("protocol,misbehave,reason", [
    ("smtp", "no-starttls", "upstream-no-starttls"),
    ("pop3", "no-starttls", "upstream-no-starttls"),
    ("smtp", "refuse", "upstream-starttls-refused"),
    ("pop3", "refuse", "upstream-starttls-refused"),
    ("pop3", "no-capa-refuse", "upstream-starttls-refused"),
    ("imap", "refuse", "upstream-starttls-refused"),
    ("imap", "preauth", "upstream-preauth"),
    # rule 3: no injection, nothing unsolicited
    ("smtp", "inject", "upstream-injection"),
    ("pop3", "inject", "upstream-injection"),
    ("imap", "inject", "upstream-injection"),
    ("smtp", "unsolicited", "upstream-unsolicited"),
])
def test_misbehaving_server_fails_closed(proxies, upstreams, certs, client_tls,
                                         protocol, misbehave, reason):
    proxy, up, box = start(proxies, upstreams, certs, protocol, client_tls, misbehave)
    s = connect(proxy, certs, client_tls)
    data = read_all(s)
    assert data.startswith(EXPECTED_ERROR[protocol])
    assert data.endswith(b"\r\n") and data.count(b"\r\n") == 1
    assert PRETLS not in data
    assert box.tls_sessions == 0
    proxy.wait_log(r"event=close .*reason=%s" % reason)


@pytest.mark.parametrize("protocol", ["smtp", "pop3", "imap"])
def test_stalling_server_hits_negotiation_timeout(proxies, upstreams, certs, protocol):
    proxy, up, box = start(proxies, upstreams, certs, protocol, "none", "stall",
                           extra="negotiation_timeout = 1\n")
    s = connect(proxy, certs, "none")
    t0 = time.monotonic()
    data = read_all(s)
    assert data.startswith(EXPECTED_ERROR[protocol])
    assert 0.8 < time.monotonic() - t0 < 4
    proxy.wait_log(r"reason=negotiation-timeout")


# ---- rule 5: verification after STARTTLS ----------------------------------

@pytest.mark.parametrize("cert,why", [("wrong-name", "wrong-name"),
                                      ("expired", "expired"),
                                      ("unknown-ca", "unknown-ca")])
def test_bad_certificate_after_starttls(proxies, upstreams, certs, cert, why):
    proxy, up, box = start(proxies, upstreams, certs, "smtp", "none", cert=cert)
    s = connect(proxy, certs, "none")
    data = read_all(s)
    assert data.startswith(b"421 4.7.0 ") and PRETLS not in data
    proxy.wait_log(r"reason=upstream-verify-failed detail=\"%s" % why)
    assert box.received == []


def test_verify_no_after_starttls_warns_per_session(proxies, upstreams, certs):
    proxy, up, box = start(proxies, upstreams, certs, "pop3", "none", cert="wrong-name",
                           extra="upstream_verify = no\n")
    assert "upstream_verify = no" in proxy.log()
    p = poplib.POP3("127.0.0.1", proxy.port("st"), timeout=10)
    assert p.getwelcome() == b"+OK ready"
    p.quit()
    proxy.wait_log("upstream certificate not verified")


# ---- rule 6: after the relay starts, bytes flow unchanged -----------------

def test_large_retr_passes_unparsed(proxies, upstreams, certs):
    import os
    big = b"".join(b"%06d " % i + os.urandom(30).hex().encode() + b"\r\n"
                   for i in range(60000))   # ~4.5 MB
    box = fakemail.Mailbox()

    def handler(conn):
        pass
    orig = fakemail.MESSAGE
    fakemail.MESSAGE = big
    try:
        proxy, up, box = start(proxies, upstreams, certs, "pop3", "none")
        p = poplib.POP3("127.0.0.1", proxy.port("st"), timeout=30)
        p.user(fakemail.USER)
        p.pass_(fakemail.PASSWORD)
        lines = p.retr(1)[1]
        p.quit()
    finally:
        fakemail.MESSAGE = orig
    assert b"\r\n".join(lines) + b"\r\n" == big


@pytest.mark.parametrize("misbehave,cert,expect", [
    ("no-starttls", "server-rsa", "FAILED upstream-no-starttls"),
    (None, "wrong-name", "FAILED certificate: Hostname mismatch (name localhost)"),
    (None, "server-rsa", "ok upstream="),
])
def test_dash_T(upstreams, certs, tmp_path, misbehave, cert, expect):
    from helpers import BIN
    box = fakemail.Mailbox()
    up = upstreams(fakemail.starttls_upstream("smtp", box, server_ctx(certs, cert),
                                              misbehave))
    f = tmp_path / "t.ini"
    f.write_text(config(certs, "smtp", up, "none"))
    r = subprocess.run([BIN, "-T", "-c", str(f)], capture_output=True, text=True,
                       timeout=30)
    assert ("st: " + expect) in r.stdout, r.stdout + r.stderr
    assert r.returncode == (0 if expect.startswith("ok") else 1)


def test_secrets_never_reach_the_log(proxies, upstreams, certs):
    """DESIGN: secrets (and payload) never appear in logs, even at debug."""
    import base64
    box = fakemail.Mailbox()
    up = upstreams(fakemail.starttls_upstream("smtp", box, server_ctx(certs)))
    proxy = proxies("log_level = debug\n" + config(certs, "smtp", up, "none"))
    with smtplib.SMTP("127.0.0.1", proxy.port("st"), local_hostname="scanner.test",
                      timeout=10) as s:
        s.login(fakemail.USER, fakemail.PASSWORD)
        s.sendmail("scanner@office.test", ["alice@mail.test"], fakemail.MESSAGE)
    proxy.wait_log("event=close")
    log = proxy.log()
    plain = base64.b64encode(b"\0alice\0secret").decode()
    import re
    for secret in (fakemail.PASSWORD, plain, "dot-stuffed line", "Subject: hi"):
        assert not re.search(r"\b%s\b" % re.escape(secret), log), secret
    assert box.received == [fakemail.MESSAGE]
