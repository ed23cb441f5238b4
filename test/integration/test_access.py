"""allow (CIDR lists, IPv4 and IPv6) and max_connections_per_client."""

import socket
import ssl

import pytest

import fakemail
from helpers import client_ctx, recv_exact, service, tls_connect


def greeter(conn):
    conn.sendall(b"* OK hello\r\n")
    while conn.recv(4096):
        pass


def connect_from(src, port, family=socket.AF_INET, dst="127.0.0.1"):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(5)
    s.bind((src, 0))
    s.connect((dst, port))
    return s


def test_allow_closes_outsiders_at_accept(proxies, upstreams, certs):
    up = upstreams(greeter)
    proxy = proxies(service("a", "imap", up.addr, certs, extra="allow = 127.0.0.2/32 10.0.0.0/8\n"))
    port = proxy.port("a")
    outsider = connect_from("127.0.0.1", port)
    assert outsider.recv(100) == b""            # closed, no handshake
    proxy.wait_log(r"event=refused svc=a client=127\.0\.0\.1:\d+ reason=not-allowed")
    insider = client_ctx(certs).wrap_socket(connect_from("127.0.0.2", port),
                                            server_hostname="localhost")
    assert recv_exact(insider, 12) == b"* OK hello\r\n"
    insider.close()
    assert up.connections == 1                   # only the insider was relayed


def test_allow_ipv6(proxies, upstreams, certs):
    up = upstreams(greeter)
    text = service("v6", "imap", up.addr, certs, extra="allow = ::1\n").replace(
        "listen = 127.0.0.1:0", "listen = [::1]:0\nlisten = 127.0.0.1:0")
    proxy = proxies(text)
    import re
    p6 = int(re.search(r"addr=\[::1\]:(\d+)", proxy.log()).group(1))
    p4 = int(re.search(r"svc=v6 addr=127\.0\.0\.1:(\d+)", proxy.log()).group(1))
    s = client_ctx(certs).wrap_socket(connect_from("::1", p6, socket.AF_INET6, "::1"),
                                      server_hostname="localhost")
    assert recv_exact(s, 12) == b"* OK hello\r\n"
    s.close()
    v4 = connect_from("127.0.0.1", p4)
    assert v4.recv(100) == b""


def test_per_client_cap_refuses_in_protocol(proxies, upstreams, certs):
    box = fakemail.Mailbox()
    up = upstreams(fakemail.smtp(box))
    proxy = proxies("[c]\nprotocol = smtp\nlisten = 127.0.0.1:0\nclient_tls = starttls\n"
                    "cert = %s/server-ecdsa.crt\nkey = %s/server-ecdsa.key\n"
                    "upstream = %s\nupstream_tls = none\nehlo_name = gw.test\n"
                    "max_connections_per_client = 2\n" % (certs, certs, up.addr))
    port = proxy.port("c")
    a = connect_from("127.0.0.1", port)
    b = connect_from("127.0.0.1", port)
    assert a.recv(100).startswith(b"220 ") and b.recv(100).startswith(b"220 ")
    c = connect_from("127.0.0.1", port)
    assert c.recv(100) == b"421 4.7.0 Too many connections from your address\r\n"
    proxy.wait_log(r"reason=per-client-limit")
    other = connect_from("127.0.0.3", port)      # another address has its own share
    assert other.recv(100).startswith(b"220 ")
    a.close()
    proxy.wait_log(r"event=close .*client=127\.0\.0\.1:\d+")
    d = connect_from("127.0.0.1", port)          # a slot is free again
    assert d.recv(100).startswith(b"220 ")
    for s in (b, c, other, d):
        s.close()


def test_per_client_cap_on_implicit_tls_just_closes(proxies, upstreams, certs):
    up = upstreams(greeter)
    proxy = proxies(service("t", "imap", up.addr, certs,
                            extra="max_connections_per_client = 1\n"))
    a = tls_connect(proxy.port("t"), certs)
    assert recv_exact(a, 12) == b"* OK hello\r\n"
    with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
        tls_connect(proxy.port("t"), certs)
    a.close()


def test_per_client_cap_holds_across_workers(proxies, upstreams, certs):
    """Counted in memory shared by every worker: with workers = 2 a client
    once got twice its share (one per worker)."""
    from helpers import free_port
    box = fakemail.Mailbox()
    up = upstreams(fakemail.smtp(box))
    port = free_port()
    proxy = proxies("workers = 2\n[c]\nprotocol = smtp\nlisten = 127.0.0.1:%d\n"
                    "client_tls = starttls\ncert = %s/server-ecdsa.crt\n"
                    "key = %s/server-ecdsa.key\nupstream = %s\nupstream_tls = none\n"
                    "ehlo_name = gw.test\nmax_connections_per_client = 2\n"
                    % (port, certs, certs, up.addr))
    proxy.wait_log(r"event=start .*worker=1")
    socks, greetings = [], []
    for _ in range(8):
        s = connect_from("127.0.0.1", port)
        socks.append(s)
        greetings.append(s.recv(100))
    assert sorted(g[:4] for g in greetings) == [b"220 "] * 2 + [b"421 "] * 6, greetings
    for s in socks:
        s.close()


def test_per_client_cap_counts_the_address_a_proxy_header_carries(proxies, upstreams,
                                                                   certs):
    """Behind a balancer every client once shared the balancer's quota."""
    box = fakemail.Mailbox()
    up = upstreams(fakemail.smtp(box))
    proxy = proxies("[c]\nprotocol = smtp\nlisten = 127.0.0.1:0\nclient_tls = starttls\n"
                    "cert = %s/server-ecdsa.crt\nkey = %s/server-ecdsa.key\n"
                    "upstream = %s\nupstream_tls = none\nehlo_name = gw.test\n"
                    "proxy_protocol_in = yes\nproxy_trusted = 127.0.0.1\n"
                    "max_connections_per_client = 1\n" % (certs, certs, up.addr))
    port = proxy.port("c")

    def via_balancer(src):
        s = connect_from("127.0.0.1", port)
        s.sendall(b"PROXY TCP4 %s 127.0.0.1 40000 25\r\n" % src.encode())
        return s

    a = via_balancer("203.0.113.7")
    b = via_balancer("203.0.113.8")               # another client: its own share
    assert a.recv(100).startswith(b"220 ") and b.recv(100).startswith(b"220 ")
    c = via_balancer("203.0.113.7")               # the first one again: over
    assert c.recv(100) == b"421 4.7.0 Too many connections from your address\r\n"
    proxy.wait_log(r"event=close .*client=203\.0\.113\.7:40000 .*reason=per-client-limit")
    a.close()
    proxy.wait_log(r"event=close .*client=203\.0\.113\.7:40000 .*reason=client-closed")
    d = via_balancer("203.0.113.7")
    assert d.recv(100).startswith(b"220 ")
    for s in (b, c, d):
        s.close()
