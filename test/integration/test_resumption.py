"""TLS session resumption where mail clients need it: with workers = 2 every
reconnect resumes (ticket keys shared by the workers), also right after a
reload; two instances sharing tls_ticket_key_file resume each other's
tickets; counted in /metrics as full or resumed."""

import os
import re
import signal
import ssl
import urllib.request

import pytest

from helpers import client_ctx, free_port, recv_exact, service, tls_connect, wait_for


def greeter(conn):
    conn.sendall(b"* OK hello\r\n")
    while conn.recv(4096):
        pass


def hello(port, certs, ctx, session=None):
    """One session; returns (reused, session to offer next time)."""
    import socket
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    assert recv_exact(s, 12) == b"* OK hello\r\n"   # TLS 1.3 tickets come with data
    reused, sess = s.session_reused, s.session
    s.close()
    return reused, sess


def reconnects(port, certs, version, n=19):
    ctx = client_ctx(certs)
    ctx.maximum_version = version
    ctx.minimum_version = version
    _, sess = hello(port, certs, ctx)
    resumed = 0
    for _ in range(n):
        reused, new = hello(port, certs, ctx, sess)
        resumed += reused
        sess = new if new is not None else sess
    return resumed


def metric(mport, **labels):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=5).read().decode()
    want = ",".join('%s="%s"' % kv for kv in labels.items())
    m = re.search(r"^mailproxy_tls_handshakes_total\{%s\} (\d+)$" % re.escape(want), text, re.M)
    return int(m.group(1)) if m else None


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_every_reconnect_resumes_across_workers_and_reloads(proxies, upstreams, certs,
                                                            version):
    up = upstreams(greeter)
    port, mport = free_port(), free_port()
    proxy = proxies("workers = 2\nmetrics = 127.0.0.1:%d\n" % mport +
                    service("r", "imap", up.addr, certs).replace("127.0.0.1:0",
                                                                 "127.0.0.1:%d" % port))
    proxy.wait_log(r"event=start .*worker=1")
    assert reconnects(port, certs, version) == 19
    # Both workers served (SO_REUSEPORT spreads 20 connections).
    pids = set(re.findall(r"event=close svc=r pid=(\d+)", proxy.log()))
    assert len(pids) == 2, pids
    wait_for(lambda: metric(mport, service="r", side="client", kind="resumed") == 19,
             what="19 resumed handshakes counted")
    assert metric(mport, service="r", side="client", kind="full") == 1
    # A reload: a new generation of workers, the same keys.
    ctx = client_ctx(certs)
    ctx.maximum_version = ctx.minimum_version = version
    _, sess = hello(port, certs, ctx)
    proxy.signal(signal.SIGHUP)
    proxy.wait_log("event=reload-ok")
    reused, _ = hello(port, certs, ctx, sess)
    assert reused


@pytest.mark.parametrize("cache", ["20000", "0"])
def test_old_devices_resume_by_session_id_on_any_worker(proxies, upstreams, certs, cache):
    """TLS 1.2 without tickets (as old embedded stacks): the session-ID
    cache is shared by the workers, so every reconnect resumes; with
    tls_session_cache = 0 a reconnect that reaches the other worker cannot."""
    up = upstreams(greeter)
    port = free_port()
    proxy = proxies("workers = 2\ntls_session_cache = %s\n" % cache +
                    service("s", "imap", up.addr, certs).replace("127.0.0.1:0",
                                                                 "127.0.0.1:%d" % port))
    proxy.wait_log(r"event=start .*worker=1")
    ctx = client_ctx(certs)
    ctx.maximum_version = ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_TICKET
    _, sess = hello(port, certs, ctx)
    assert not sess.has_ticket
    resumed = sum(hello(port, certs, ctx, sess)[0] for _ in range(19))
    pids = set(re.findall(r"event=close svc=s pid=(\d+)", proxy.log()))
    assert len(pids) == 2, pids              # both workers served
    if cache == "0":
        assert resumed < 19
    else:
        assert resumed == 19


def test_instances_sharing_a_key_file_resume_each_others_tickets(proxies, upstreams, certs,
                                                                 tmp_path):
    up = upstreams(greeter)
    keyfile = tmp_path / "ticket.key"
    keyfile.write_bytes(os.urandom(80))
    os.chmod(keyfile, 0o600)
    text = "tls_ticket_key_file = %s\n" % keyfile + service("k", "imap", up.addr, certs)
    a = proxies(text, name="a")
    b = proxies(text, name="b")
    ctx = client_ctx(certs)
    _, sess = hello(a.port("k"), certs, ctx)
    reused, _ = hello(b.port("k"), certs, ctx, sess)
    assert reused                                    # b decrypts a's ticket
    # Without the shared file, each instance has its own keys.
    c = proxies(service("k", "imap", up.addr, certs), name="c")
    reused, _ = hello(c.port("k"), certs, ctx, sess)
    assert not reused


def test_a_bad_key_file_is_refused_with_its_line(proxies, certs, tmp_path):
    import subprocess
    from helpers import BIN
    keyfile = tmp_path / "short.key"
    keyfile.write_bytes(os.urandom(50))
    os.chmod(keyfile, 0o600)
    cfg = tmp_path / "t.ini"
    cfg.write_text("tls_ticket_key_file = %s\n" % keyfile +
                   service("k", "imap", "127.0.0.1:143", certs))
    r = subprocess.run([BIN, "-t", "-c", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "t.ini:1: tls_ticket_key_file: %s: 50 bytes; expected one to 8 keys of 80 bytes" \
        % keyfile in r.stderr
    os.chmod(keyfile, 0o644)
    r = subprocess.run([BIN, "-t", "-c", str(cfg)], capture_output=True, text=True)
    assert "is readable by everyone (mode 0644)" in r.stderr


def upstream_recording(reused):
    def handler(conn):
        reused.append(conn.session_reused)
        conn.sendall(b"* OK hello\r\n")
        while conn.recv(4096):
            pass
    return handler


def through(proxy, name, certs):
    s = tls_connect(proxy.port(name), certs)
    assert recv_exact(s, 12) == b"* OK hello\r\n"
    s.close()


@pytest.mark.parametrize("resumption", ["yes", "no"])
def test_upstream_sessions_are_resumed_per_service(proxies, upstreams, certs, resumption):
    from helpers import server_ctx
    reused = []
    up = upstreams(upstream_recording(reused), server_ctx(certs))
    tls = ("upstream_name = localhost\nupstream_ca = %s/ca.crt\nupstream_resumption = %s\n"
           % (certs, resumption))
    proxy = proxies(service("a", "imap", up.addr, certs, "implicit", tls) +
                    service("b", "imap", up.addr, certs, "implicit", tls))
    for _ in range(5):
        through(proxy, "a", certs)
    wait_for(lambda: len(reused) == 5, what="5 upstream sessions")
    assert reused == ([False] + [True] * 4 if resumption == "yes" else [False] * 5)
    # Another service never gets a's session: its first handshake is full.
    through(proxy, "b", certs)
    wait_for(lambda: len(reused) == 6, what="b's session")
    assert reused[5] is False


def test_haproxy_balancing_two_instances_that_share_ticket_keys(proxies, upstreams, certs,
                                                               tmp_path):
    """Scale-out: real HAProxy spreads clients over two instances (PROXY v2
    in); with one tls_ticket_key_file a client resumes on the instance it
    did not start on.  The deployment is config/deploy/haproxy-mailproxy.cfg."""
    from helpers import start_haproxy
    up = upstreams(greeter)
    keyfile = tmp_path / "ticket.key"
    keyfile.write_bytes(os.urandom(80))
    os.chmod(keyfile, 0o600)
    text = ("tls_ticket_key_file = %s\n" % keyfile +
            service("k", "imap", up.addr, certs,
                    extra="proxy_protocol_in = yes\nproxy_trusted = 127.0.0.1\n"))
    a, b = proxies(text, name="a"), proxies(text, name="b")
    hport = free_port()
    hap = start_haproxy("defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n"
                        "  timeout server 30s\nfrontend imaps\n  bind 127.0.0.1:%d\n"
                        "  default_backend mailproxy\nbackend mailproxy\n  balance roundrobin\n"
                        "  server a 127.0.0.1:%d send-proxy-v2\n"
                        "  server b 127.0.0.1:%d send-proxy-v2\n"
                        % (hport, a.port("k"), b.port("k")), tmp_path, hport)
    try:
        ctx = client_ctx(certs)
        _, sess = hello(hport, certs, ctx)
        results = [hello(hport, certs, ctx, sess)[0] for _ in range(4)]
        assert results == [True] * 4
        # Round robin: both instances served, and both resumed.
        wait_for(lambda: "event=close" in a.log() and "event=close" in b.log(),
                 what="both instances served")
    finally:
        hap.terminate()
        hap.wait(10)
