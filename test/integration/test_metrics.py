"""metrics = host:port: /metrics in Prometheus text, checked against the
traffic the test made; /healthz; a slow scraper stalls nothing."""

import re
import socket
import ssl
import time
import urllib.request

import pytest

from helpers import client_ctx, free_port, recv_exact, service, tls_connect


def greeter(conn):
    conn.sendall(b"* OK hello\r\n")
    data = conn.recv(4096)
    if data:
        conn.sendall(data)          # echo once
    while conn.recv(4096):
        pass


def scrape(port, path="/metrics"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
        return r.read().decode()


def value(text, name, **labels):
    want = ",".join('%s="%s"' % kv for kv in labels.items())
    m = re.search(r"^%s\{%s\} (\d+)$" % (re.escape(name), re.escape(want)), text, re.M)
    return int(m.group(1)) if m else None


def traffic(proxy, certs, port_name="m"):
    for tls12 in (False, False, True):
        ctx = client_ctx(certs)
        if tls12:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        s = tls_connect(proxy.port(port_name), certs, ctx=ctx)
        assert recv_exact(s, 12) == b"* OK hello\r\n"
        s.sendall(b"a NOOP\r\n")
        assert recv_exact(s, 8) == b"a NOOP\r\n"
        s.close()
    bad = client_ctx(certs)
    bad.set_alpn_protocols(["http/1.1"])
    with pytest.raises(ssl.SSLError):
        tls_connect(proxy.port(port_name), certs, ctx=bad)


def test_metrics_match_the_traffic(proxies, upstreams, certs):
    up = upstreams(greeter)
    mport = free_port()
    proxy = proxies("metrics = 127.0.0.1:%d\n" % mport + service("m", "imap", up.addr, certs))
    proxy.wait_log("event=metrics-listen")
    traffic(proxy, certs)
    proxy.wait_log("event=close", count=4)
    text = scrape(mport)
    assert "# TYPE mailproxy_sessions_total counter" in text
    assert value(text, "mailproxy_sessions_total", service="m") == 4
    assert value(text, "mailproxy_sessions_open", service="m") == 0
    assert value(text, "mailproxy_sessions_ended_total", service="m", outcome="ok") == 3
    assert value(text, "mailproxy_sessions_ended_total", service="m",
                 outcome="client-handshake-failed") == 1
    assert value(text, "mailproxy_bytes_total", service="m", direction="in") == 3 * 8
    assert value(text, "mailproxy_bytes_total", service="m", direction="out") == 3 * 20
    assert value(text, "mailproxy_client_tls_total", service="m", version="1.3") == 2
    assert value(text, "mailproxy_client_tls_total", service="m", version="1.2") == 1
    assert value(text, "mailproxy_client_tls_legacy_total", service="m") == 0
    ciphers = re.findall(r'^mailproxy_client_cipher_total\{service="m",cipher="(\S+)"\} (\d+)$',
                         text, re.M)
    assert sum(int(n) for _, n in ciphers) == 3 and any("ECDHE" in c for c, _ in ciphers)
    expiry = re.search(r'^mailproxy_certificate_expiry_seconds\{service="m",cert="\S+'
                       r'server-ecdsa\.crt"\} (\d+)$', text, re.M)
    assert expiry and 700 * 86400 < int(expiry.group(1)) < 826 * 86400
    assert scrape(mport, "/healthz") == "ok\n"
    with pytest.raises(urllib.error.HTTPError):
        scrape(mport, "/nope")


def test_slow_scraper_stalls_nothing(proxies, upstreams, certs):
    up = upstreams(greeter)
    mport = free_port()
    proxy = proxies("metrics = 127.0.0.1:%d\n" % mport + service("m", "imap", up.addr, certs))
    proxy.wait_log("event=metrics-listen")
    slow = socket.create_connection(("127.0.0.1", mport))
    slow.sendall(b"GET /metr")             # and then nothing
    s = tls_connect(proxy.port("m"), certs)
    assert recv_exact(s, 12) == b"* OK hello\r\n"
    s.close()
    assert scrape(mport, "/healthz") == "ok\n"
    slow.settimeout(10)
    t0 = time.monotonic()
    assert slow.recv(100) == b""           # dropped at its deadline
    assert time.monotonic() - t0 < 8


def test_metrics_sum_over_workers(proxies, upstreams, certs):
    up = upstreams(greeter)
    mport, lport = free_port(), free_port()
    proxy = proxies(("workers = 2\nmetrics = 127.0.0.1:%d\n" % mport) +
                    service("m", "imap", up.addr, certs).replace(
                        "127.0.0.1:0", "127.0.0.1:%d" % lport))
    proxy.wait_log(r"event=start .*worker=1")
    for _ in range(20):
        s = tls_connect(lport, certs)
        assert recv_exact(s, 12) == b"* OK hello\r\n"
        s.close()
    proxy.wait_log("event=close", count=20)
    pids = set(re.findall(r"event=close svc=m pid=(\d+)", proxy.log()))
    assert len(pids) == 2                  # both workers served...
    text = scrape(mport)
    assert value(text, "mailproxy_sessions_total", service="m") == 20   # ...and are summed


def test_an_upstream_that_closes_mid_starttls_is_not_a_good_end(proxies, upstreams, certs):
    """The close reason was a string matched by prefix: "upstream-closed" during
    the STARTTLS dialogue counted as ok.  Now its own reason, counted as a
    STARTTLS failure, and the client hears the upstream is unavailable."""
    def hangs_up(conn):
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n")
        conn.recv(100)                      # the proxy's STARTTLS
        conn.close()

    up = upstreams(hangs_up)
    mport = free_port()
    proxy = proxies("metrics = 127.0.0.1:%d\n" % mport + service(
        "m", "imap", up.addr, certs, "starttls",
        "upstream_name = localhost\nupstream_ca = %s/ca.crt\n" % certs))
    proxy.wait_log("event=metrics-listen")
    s = tls_connect(proxy.port("m"), certs)
    assert s.recv(200) == b"* BYE [UNAVAILABLE] mailproxy: upstream unavailable\r\n"
    s.close()
    proxy.wait_log(r"event=close .*reason=upstream-closed-early")
    text = scrape(mport)
    assert value(text, "mailproxy_sessions_ended_total", service="m", outcome="ok") == 0
    assert value(text, "mailproxy_sessions_ended_total", service="m",
                 outcome="upstream-starttls-failed") == 1


def test_label_values_are_escaped(proxies, upstreams, certs):
    """A service name with a quote and a backslash once broke the scrape."""
    up = upstreams(greeter)
    mport = free_port()
    proxy = proxies("metrics = 127.0.0.1:%d\n" % mport +
                    service('odd"name\\x', "imap", up.addr, certs))
    proxy.wait_log("event=metrics-listen")
    text = scrape(mport)
    assert 'mailproxy_sessions_total{service="odd\\"name\\\\x"} 0\n' in text
    # Every sample line is well formed: name{label="value",...} number.
    sample = re.compile(r'^[a-z_]+(\{([a-z_]+="([^"\\\n]|\\[\\"n])*",?)*\})? -?\d+$')
    for line in text.splitlines():
        if not line.startswith("#"):
            assert sample.match(line), line


def get(port, path):
    """(status, body) of an HTTP GET, also for error statuses."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_readyz_follows_the_upstream_and_the_drain(proxies, upstreams, certs):
    """/healthz: the process and its loop; /readyz: 503 once the upstream
    failed ready_upstream_failures connection attempts in a row, and while
    draining on SIGTERM."""
    import signal
    hold = socket.socket()                 # the upstream's port: bound, not listening
    hold.bind(("127.0.0.1", 0))
    upport = hold.getsockname()[1]
    mport = free_port()
    proxy = proxies("metrics = 127.0.0.1:%d\nready_upstream_failures = 2\n" % mport +
                    service("r", "imap", "127.0.0.1:%d" % upport, certs))
    proxy.wait_log("event=metrics-listen")
    assert get(mport, "/readyz") == (200, "ready\n")
    for attempt in range(2):
        s = tls_connect(proxy.port("r"), certs)
        assert s.recv(200).startswith(b"* BYE [UNAVAILABLE] mailproxy: upstream unavailable")
        s.close()
        proxy.wait_log("reason=upstream-connect-failed", count=attempt + 1)
        status, body = get(mport, "/readyz")
        assert status == (503 if attempt == 1 else 200), body
    assert "[r] upstream 127.0.0.1:%d failed its last 2 connection attempts" % upport in body
    assert get(mport, "/healthz") == (200, "ok\n")
    hold.listen(4)                         # the upstream is back
    s = tls_connect(proxy.port("r"), certs)
    conn, _ = hold.accept()
    conn.sendall(b"* OK back\r\n")
    assert recv_exact(s, 11) == b"* OK back\r\n"
    assert get(mport, "/readyz") == (200, "ready\n")
    proxy.signal(signal.SIGTERM)           # s is still open: the worker drains
    proxy.wait_log("event=stopping")
    status, body = get(mport, "/readyz")
    assert (status, body) == (503, "not ready: draining (stopping)\n")
    assert get(mport, "/healthz") == (200, "ok\n")
    s.close()
    conn.close()
    hold.close()
