"""PROXY protocol in (v1/v2, only from proxy_trusted, strict) and out (v1/v2,
before any TLS or STARTTLS), with real HAProxy in front."""

import socket
import ssl
import struct
import time

import pytest

from helpers import client_ctx, free_port, recv_exact, service, server_ctx, start_haproxy


def greeter(conn):
    conn.sendall(b"* OK hello\r\n")
    while conn.recv(4096):
        pass


def v2_header(src, sport, dst, dport, tlvs=b""):
    body = (socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport) +
            tlvs)
    return b"\r\n\r\n\x00\r\nQUIT\n\x21\x11" + struct.pack("!H", len(body)) + body


def in_config(certs, up, trusted="127.0.0.1", extra=""):
    return service("p", "imap", up.addr, certs,
                   extra="proxy_protocol_in = yes\nproxy_trusted = %s\n%s" % (trusted, extra))


def connect_with_header(proxy, certs, header):
    raw = socket.create_connection(("127.0.0.1", proxy.port("p")), timeout=5)
    raw.sendall(header)
    return client_ctx(certs).wrap_socket(raw, server_hostname="localhost")


@pytest.mark.parametrize("header", [
    b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 993\r\n",
    v2_header("203.0.113.7", 40000, "127.0.0.1", 993),
    v2_header("203.0.113.7", 40000, "127.0.0.1", 993, b"\x02\x00\x09mail.test\x04\x00\x00"),
])
def test_trusted_header_carries_the_client(proxies, upstreams, certs, header):
    up = upstreams(greeter)
    proxy = proxies(in_config(certs, up))
    s = connect_with_header(proxy, certs, header)
    assert recv_exact(s, 12) == b"* OK hello\r\n"
    s.close()
    proxy.wait_log(r"event=close svc=p pid=\d+ client=203\.0\.113\.7:40000 ")


def test_header_from_untrusted_peer_is_refused(proxies, upstreams, certs):
    up = upstreams(greeter)
    proxy = proxies(in_config(certs, up, trusted="10.0.0.0/8"))
    raw = socket.create_connection(("127.0.0.1", proxy.port("p")), timeout=5)
    raw.sendall(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 993\r\n")
    try:
        assert raw.recv(100) == b""
    except ConnectionResetError:
        pass                          # closed with the header unread: RST
    proxy.wait_log("reason=proxy-untrusted")
    assert up.connections == 0


@pytest.mark.parametrize("header", [
    b"PROXY TCP4 203.0.113.7 127.0.0.1 40000\r\n",
    b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 993\n",
    b"\x16\x03\x01\x02\x00\x01\x00",           # TLS without a header
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x12\x00\x0c" + b"\x00" * 12,   # UDP
    # A TLV whose value runs past the declared length, a truncated TLV header
    v2_header("203.0.113.7", 40000, "127.0.0.1", 993, b"\x02\x00\x20mail.test"),
    v2_header("203.0.113.7", 40000, "127.0.0.1", 993, b"\x04\x00\x00\x01\x00"),
])
def test_malformed_or_missing_header_is_refused(proxies, upstreams, certs, header):
    up = upstreams(greeter)
    proxy = proxies(in_config(certs, up))
    raw = socket.create_connection(("127.0.0.1", proxy.port("p")), timeout=5)
    raw.sendall(header)
    try:
        assert raw.recv(100) == b""
    except ConnectionResetError:
        pass
    proxy.wait_log("reason=proxy-header-invalid")
    assert up.connections == 0


def test_allow_applies_to_the_carried_address(proxies, upstreams, certs):
    up = upstreams(greeter)
    proxy = proxies(in_config(certs, up, extra="allow = 198.51.100.0/24\n"))
    s = connect_with_header(proxy, certs, v2_header("198.51.100.9", 1, "127.0.0.1", 993))
    assert recv_exact(s, 12) == b"* OK hello\r\n"
    s.close()
    with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
        connect_with_header(proxy, certs, v2_header("203.0.113.7", 1, "127.0.0.1", 993))
    proxy.wait_log("reason=not-allowed")


def parse_header(conn):
    first = conn.recv(16, socket.MSG_PEEK)
    if first.startswith(b"PROXY "):
        line = b""
        while not line.endswith(b"\r\n"):
            line += conn.recv(1)
        return line.decode().split()
    head = conn.recv(16)
    body = conn.recv(struct.unpack("!H", head[14:16])[0])
    return ["v2", socket.inet_ntoa(body[0:4]), socket.inet_ntoa(body[4:8]),
            str(struct.unpack("!H", body[8:10])[0]), str(struct.unpack("!H", body[10:12])[0])]


@pytest.mark.parametrize("version,upstream_tls", [("v1", "none"), ("v2", "none"),
                                                  ("v2", "implicit")])
def test_header_out_comes_first(proxies, upstreams, certs, version, upstream_tls):
    seen = []

    def handler(conn):
        seen.append(parse_header(conn))
        if upstream_tls == "implicit":
            conn = server_ctx(certs).wrap_socket(conn, server_side=True)
        greeter(conn)

    up = upstreams(handler)
    extra = "proxy_protocol_out = %s\n" % version
    if upstream_tls == "implicit":
        extra += "upstream_name = localhost\nupstream_ca = %s/ca.crt\n" % certs
    proxy = proxies(service("o", "imap", up.addr, certs, upstream_tls, extra))
    raw = socket.socket()
    raw.bind(("127.0.0.7", 0))
    raw.connect(("127.0.0.1", proxy.port("o")))
    sport = raw.getsockname()[1]
    s = client_ctx(certs).wrap_socket(raw, server_hostname="localhost")
    assert recv_exact(s, 12) == b"* OK hello\r\n"
    s.close()
    hdr = seen[0]
    if version == "v1":
        assert hdr[:3] == ["PROXY", "TCP4", "127.0.0.7"] and hdr[4] == str(sport)
    else:
        assert hdr[1] == "127.0.0.7" and hdr[3] == str(sport)
        assert hdr[4] == str(proxy.port("o"))


def test_real_haproxy_in_front_with_proxy_v2(proxies, upstreams, certs, tmp_path):
    up = upstreams(greeter)
    proxy = proxies(in_config(certs, up))
    hport = free_port()
    hap = start_haproxy("defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n"
                        "  timeout server 30s\nfrontend f\n  bind 127.0.0.1:%d\n"
                        "  default_backend b\nbackend b\n  server m 127.0.0.1:%d "
                        "send-proxy-v2\n" % (hport, proxy.port("p")), tmp_path, hport)
    try:
        raw = socket.socket()
        raw.bind(("127.0.0.9", 0))
        raw.connect(("127.0.0.1", hport))
        s = client_ctx(certs).wrap_socket(raw, server_hostname="localhost")
        assert recv_exact(s, 12) == b"* OK hello\r\n"
        s.close()
        proxy.wait_log(r"event=close svc=p pid=\d+ client=127\.0\.0\.9:\d+ ")
    finally:
        hap.terminate()
        hap.wait(10)


def test_header_split_across_writes(proxies, upstreams, certs):
    up = upstreams(greeter)
    proxy = proxies(in_config(certs, up))
    raw = socket.create_connection(("127.0.0.1", proxy.port("p")), timeout=5)
    header = v2_header("192.0.2.44", 5555, "127.0.0.1", 993)
    for part in (header[:5], header[5:14], header[14:]):
        raw.sendall(part)
        time.sleep(0.1)
    s = client_ctx(certs).wrap_socket(raw, server_hostname="localhost")
    assert recv_exact(s, 12) == b"* OK hello\r\n"
    s.close()
    proxy.wait_log(r"event=close svc=p pid=\d+ client=192\.0\.2\.44:5555 ")
