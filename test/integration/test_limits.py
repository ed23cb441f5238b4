"""Deadlines, the connection cap, the TLS policy toward clients (versions,
suites, ALPN) and the JSON log format."""

import json
import os
import re
import socket
import ssl
import subprocess
import time

import pytest

from helpers import client_ctx, free_port, recv_exact, service, tls_connect, wait_for

# TLS 1.0/1.1 are deprecated in Python too: the legacy tests use them on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1")


def greeter(conn):
    conn.sendall(b"* OK hello\r\n")
    while conn.recv(4096):
        pass


def test_handshake_timeout_cuts_silent_clients(proxies, upstreams, certs):
    up = upstreams(greeter)
    proxy = proxies("handshake_timeout = 1\n" + service("t", "imap", up.addr, certs))
    s = socket.create_connection(("127.0.0.1", proxy.port("t")), timeout=10)
    t0 = time.monotonic()
    assert s.recv(10) == b""             # closed by the proxy, no TLS ever
    assert 0.8 < time.monotonic() - t0 < 4
    proxy.wait_log("reason=client-handshake-timeout")
    assert up.connections == 0            # never dialled the upstream


def test_trickling_client_does_not_extend_the_handshake_deadline(proxies, upstreams, certs):
    up = upstreams(greeter)
    proxy = proxies("handshake_timeout = 2\n" + service("t", "imap", up.addr, certs))
    s = socket.create_connection(("127.0.0.1", proxy.port("t")), timeout=10)
    # A TLS record header, one byte every 0.3 s: the deadline is absolute.
    t0 = time.monotonic()
    closed = False
    for b in b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 20:
        try:
            s.send(bytes([b]))
        except OSError:
            closed = True
            break
        time.sleep(0.3)
        if time.monotonic() - t0 > 6:
            break
    proxy.wait_log("reason=client-handshake-timeout", timeout=5)
    assert time.monotonic() - t0 < 5


def test_idle_timeout(proxies, upstreams, certs):
    up = upstreams(greeter)
    proxy = proxies(service("t", "imap", up.addr, certs, extra="idle_timeout = 1\n"))
    s = tls_connect(proxy.port("t"), certs)
    assert recv_exact(s, 12) == b"* OK hello\r\n"
    t0 = time.monotonic()
    s.sendall(b"a1 NOOP\r\n")            # activity resets the idle clock
    time.sleep(0.6)
    s.sendall(b"a2 NOOP\r\n")
    proxy.wait_log("reason=idle-timeout", timeout=5)
    assert time.monotonic() - t0 > 1.4


def test_connection_cap_stops_accepting_and_resumes(proxies, upstreams, certs):
    up = upstreams(greeter)
    proxy = proxies("max_connections = 2\n" + service("t", "imap", up.addr, certs))
    a = tls_connect(proxy.port("t"), certs)
    b = tls_connect(proxy.port("t"), certs)
    assert recv_exact(a, 12) == recv_exact(b, 12) == b"* OK hello\r\n"
    proxy.wait_log("event=accept-paused reason=max-connections")
    # The third waits in the kernel backlog: no handshake yet.
    raw = socket.create_connection(("127.0.0.1", proxy.port("t")), timeout=1)
    c = client_ctx(certs).wrap_socket(raw, server_hostname="localhost",
                                      do_handshake_on_connect=False)
    with pytest.raises(socket.timeout):
        c.do_handshake()
    a.close()
    proxy.wait_log("event=accept-resumed")
    c.settimeout(10)
    c.do_handshake()
    assert recv_exact(c, 12) == b"* OK hello\r\n"
    b.close()
    c.close()


def test_a_burst_of_connections_is_all_served(proxies, upstreams, certs):
    """The listener takes one new session per loop turn (sessions under way
    go first): a burst larger than any accept batch still gets every
    session through, while sessions already open keep being answered."""
    up = upstreams(greeter)
    proxy = proxies(service("t", "imap", up.addr, certs))
    port = proxy.port("t")
    # Plain TCP first, all at once: the whole burst waits in the backlog.
    raws = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(150)]
    ctx = client_ctx(certs)
    done = []
    for raw in raws:
        c = ctx.wrap_socket(raw, server_hostname="localhost")
        assert recv_exact(c, 12) == b"* OK hello\r\n"
        done.append(c)
    for c in done:
        c.close()
    assert len(done) == 150
    assert proxy.proc.poll() is None
    assert "accept-paused" not in proxy.log()


@pytest.mark.parametrize("alpn,ok", [
    (["http/1.1"], False),          # ALPACA: a web client on a mail port
    (["h2", "http/1.1"], False),
    (["smtp"], False),              # another mail protocol is foreign too
    (["http/1.1", "imap"], True),
    (None, True),
])
def test_alpn_policy(proxies, upstreams, certs, alpn, ok):
    up = upstreams(greeter)
    proxy = proxies(service("t", "imap", up.addr, certs))
    ctx = client_ctx(certs)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if ok:
        s = tls_connect(proxy.port("t"), certs, ctx=ctx)
        assert s.selected_alpn_protocol() == ("imap" if alpn else None)
        assert recv_exact(s, 12) == b"* OK hello\r\n"
    else:
        with pytest.raises(ssl.SSLError, match="(?i)no.application.protocol"):
            tls_connect(proxy.port("t"), certs, ctx=ctx)
        proxy.wait_log("reason=client-handshake-failed")
        assert up.connections == 0


def legacy_ctx(certs, version):
    ctx = client_ctx(certs)
    ctx.minimum_version = ctx.maximum_version = version
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_tls_refused_by_default(proxies, upstreams, certs, version):
    up = upstreams(greeter)
    proxy = proxies(service("t", "imap", up.addr, certs))
    with pytest.raises(ssl.SSLError):
        tls_connect(proxy.port("t"), certs, ctx=legacy_ctx(certs, version))


def test_tls10_enabled_for_a_legacy_listener(proxies, upstreams, certs):
    import urllib.request
    mport = free_port()
    up = upstreams(greeter)
    proxy = proxies("metrics = 127.0.0.1:%d\n" % mport +
                    service("t", "imap", up.addr, certs, extra="tls_min_version = 1.0\n"))
    assert "tls_min_version below 1.2" in proxy.log()
    s = tls_connect(proxy.port("t"), certs, ctx=legacy_ctx(certs, ssl.TLSVersion.TLSv1))
    assert s.version() == "TLSv1"
    assert recv_exact(s, 12) == b"* OK hello\r\n"
    s.close()
    proxy.wait_log(r"client_tls=TLSv1/TLS_ECDHE_ECDSA_WITH_AES_\d+_CBC_SHA")
    # Every legacy session is named with its client, so it can be retired.
    proxy.wait_log(r"warn sess=\d+ svc=t event=legacy-tls client=127\.0\.0\.1:\d+ "
                   r"tls=TLSv1/")
    # ... and counted per client address in /metrics.
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=5).read()
    assert (b'mailproxy_client_tls_legacy_sessions_total{service="t",client="127.0.0.1",'
            b'version="1.0"} 1') in text


def test_tls12_only_forward_secret_aead(proxies, upstreams, certs):
    up = upstreams(greeter)
    proxy = proxies(service("t", "imap", up.addr, certs))
    ctx = client_ctx(certs)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    s = tls_connect(proxy.port("t"), certs, ctx=ctx)
    name, version, bits = s.cipher()
    assert version == "TLSv1.2" and name.startswith("ECDHE-") and \
        ("GCM" in name or "CHACHA20" in name)
    s.close()
    proxy.wait_log("event=close")
    assert "legacy-tls" not in proxy.log()
    # A client that offers only CBC or static-RSA suites is refused.
    ctx = client_ctx(certs)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("AES128-SHA:ECDHE-ECDSA-AES128-SHA:AES256-GCM-SHA384")
    with pytest.raises(ssl.SSLError):
        tls_connect(proxy.port("t"), certs, ctx=ctx)


def test_renegotiation_refused(proxies, upstreams, certs):
    """openssl s_client's R command asks for a renegotiation (TLS 1.2)."""
    up = upstreams(greeter)
    proxy = proxies(service("t", "imap", up.addr, certs))
    p = subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % proxy.port("t"),
         "-tls1_2", "-CAfile", certs + "/ca.crt"],
        input=b"R\n", capture_output=True, timeout=20)
    out = p.stdout + p.stderr
    assert b"RENEGOTIATING" in out
    # Allowed, the client would print a second verify and carry on.
    assert b":error:" in out
    proxy.wait_log("reason=client-error")


def test_json_log_format(proxies, upstreams, certs):
    up = upstreams(greeter)
    proxy = proxies("log_format = json\n" + service("t", "imap", up.addr, certs))
    s = tls_connect(proxy.port("t"), certs, server_hostname="mail.test")
    recv_exact(s, 12)
    s.close()
    wait_for(lambda: '"event":"close"' in proxy.log(), what="json close line")
    events = [json.loads(line) for line in proxy.log().splitlines() if line.strip()]
    close = [e for e in events if e.get("event") == "close"][0]
    assert close["svc"] == "t" and close["sni"] == "mail.test"
    assert close["client_tls"].startswith("TLSv1.3/")
    assert isinstance(close["bytes_out"], int) and close["bytes_out"] == 12
    assert close["reason"] in ("client-closed", "client-error")


def s_client(port, certs, version_flag, cipher):
    """openssl s_client forcing one version and one suite; returns what the
    server greeted with, or None if the handshake failed."""
    p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                          version_flag, "-cipher", cipher + ":@SECLEVEL=0",
                          "-CAfile", os.path.join(certs, "ca.crt"), "-quiet"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    try:
        line = p.stdout.readline()          # the greeting, or EOF on failure
    finally:
        p.kill()
        p.wait(10)
    return line if line.startswith(b"* OK hello") else None


@pytest.mark.parametrize("version_flag,cipher", [
    ("-tls1", "AES128-SHA"), ("-tls1", "ECDHE-RSA-AES256-SHA"), ("-tls1_1", "AES256-SHA"),
    ("-tls1_2", "AES128-GCM-SHA256"), ("-tls1_2", "AES256-GCM-SHA384"),
    ("-tls1_2", "AES128-SHA"),
    # (3DES: this OpenSSL 3 client has none left; the unit test drives it
    # with a BoringSSL client.)
])
def test_old_printers_get_in_with_legacy_suites(proxies, upstreams, certs, version_flag,
                                                cipher):
    """tls_ciphers = legacy (the default with tls_min_version = 1.0): the
    RSA-key-exchange and CBC suites of old printers and scanners, each forced
    with openssl s_client; every such session is logged and counted."""
    import urllib.request
    mport = free_port()
    up = upstreams(greeter)
    text = service("p", "smtp", up.addr, certs, extra="tls_min_version = 1.0\n").replace(
        "server-ecdsa", "server-rsa")
    proxy = proxies("metrics = 127.0.0.1:%d\n" % mport + text)
    assert s_client(proxy.port("p"), certs, version_flag, cipher) is not None
    proxy.wait_log(r"warn sess=\d+ svc=p event=legacy-tls client=127\.0\.0\.1:\d+ tls=TLSv1")
    metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport,
                                     timeout=5).read().decode()
    assert re.search(r'mailproxy_client_tls_legacy_sessions_total\{service="p",'
                     r'client="127\.0\.0\.1",version="1\.[012]"\} 1', metrics), metrics


def test_modern_listeners_keep_refusing_legacy_suites(proxies, upstreams, certs):
    up = upstreams(greeter)
    text = service("m", "smtp", up.addr, certs).replace("server-ecdsa", "server-rsa")
    proxy = proxies(text)
    assert s_client(proxy.port("m"), certs, "-tls1_2", "AES128-GCM-SHA256") is None
    assert s_client(proxy.port("m"), certs, "-tls1_2", "ECDHE-RSA-AES128-GCM-SHA256")
    # An explicit list: only what it names.
    proxy2 = proxies(text.replace("upstream_tls = none", "upstream_tls = none\n"
                                  "tls_ciphers = ECDHE-RSA-AES256-GCM-SHA384"), name="x")
    assert s_client(proxy2.port("m"), certs, "-tls1_2", "ECDHE-RSA-AES128-GCM-SHA256") is None
    assert s_client(proxy2.port("m"), certs, "-tls1_2", "ECDHE-RSA-AES256-GCM-SHA384")
