"""The relay: bit-exact bulk transfer both ways at once, half-close in both
directions, truncation kept visible, resets propagated."""

import hashlib
import os
import select
import socket
import ssl
import struct
import time

import pytest

from helpers import client_ctx, read_to_eof, recv_exact, server_ctx, service, tls_connect

SIZE = 16 * 1024 * 1024


def start(proxies, upstreams, certs, handler, upstream_tls="none"):
    up = upstreams(handler, server_ctx(certs) if upstream_tls == "implicit" else None)
    extra = ("upstream_name = localhost\nupstream_ca = %s/ca.crt\n" % certs
             if upstream_tls == "implicit" else "")
    return proxies(service("relay", "imap", up.addr, certs, upstream_tls, extra)), up


def stream_both_ways(sock, payload, results, key, limit=60):
    """Sends payload while receiving len(payload) bytes, in one thread (an
    SSL socket must not be used from two threads); records the digest."""
    digest = hashlib.sha256()
    sent = received = 0
    view = memoryview(payload)
    deadline = time.monotonic() + limit
    sock.setblocking(False)
    while sent < len(view) or received < len(view):
        assert time.monotonic() < deadline, "transfer stalled"
        progressed = False
        if sent < len(view):
            try:
                sent += sock.send(view[sent:sent + 65536])
                progressed = True
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                pass
        while received < len(view):
            try:
                data = sock.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                break
            assert data, "EOF after %d bytes" % received
            digest.update(data)
            received += len(data)
            progressed = True
        if not progressed:
            select.select([sock], [sock] if sent < len(view) else [], [], 0.05)
    sock.setblocking(True)
    results[key] = digest.hexdigest()


@pytest.mark.parametrize("upstream_tls", ["none", "implicit"])
def test_16_mib_each_way_bit_exact(proxies, upstreams, certs, upstream_tls):
    to_upstream, to_client = os.urandom(SIZE), os.urandom(SIZE)
    results = {}

    def handler(conn):
        stream_both_ways(conn, to_client, results, "upstream_got")
        conn.recv(1)  # wait for the client's end

    proxy, up = start(proxies, upstreams, certs, handler, upstream_tls)
    s = tls_connect(proxy.port("relay"), certs, timeout=60)
    stream_both_ways(s, to_upstream, results, "client_got")
    s.close()
    proxy.wait_log(r"event=close .*bytes_in=%d bytes_out=%d" % (SIZE, SIZE))
    assert results["client_got"] == hashlib.sha256(to_client).hexdigest()
    assert results["upstream_got"] == hashlib.sha256(to_upstream).hexdigest()


def test_upstream_half_close_keeps_client_direction(proxies, upstreams, certs):
    got = []

    def handler(conn):
        conn.sendall(b"* OK then bye\r\n")
        conn.shutdown(socket.SHUT_WR)          # upstream is done sending
        got.append(recv_exact(conn, 10))        # ... but still reads

    proxy, up = start(proxies, upstreams, certs, handler)
    s = tls_connect(proxy.port("relay"), certs)
    s.suppress_ragged_eofs = False
    assert recv_exact(s, 15) == b"* OK then bye\r\n"
    assert s.recv(100) == b""     # clean EOF: the proxy sent close_notify
    s.sendall(b"after EOF\n")      # the other direction still flows
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.02)
    assert got == [b"after EOF\n"]
    s.close()
    proxy.wait_log(r"reason=upstream-closed")


def test_client_close_notify_keeps_upstream_direction(proxies, upstreams, certs):
    """The client sends close_notify (TLS half-close) and keeps reading."""
    seen = []

    def handler(conn):
        conn.sendall(b"* OK\r\n")
        seen.append(read_to_eof(conn))
        conn.sendall(b"reply after your EOF\r\n")   # still delivered

    proxy, up = start(proxies, upstreams, certs, handler)
    raw = socket.create_connection(("127.0.0.1", proxy.port("relay")), timeout=10)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx(certs).wrap_bio(inc, out, server_hostname="localhost")

    def pump_out():
        data = out.read()
        if data:
            raw.sendall(data)

    def pump_in():
        data = raw.recv(65536)
        if data:
            inc.write(data)
        else:
            inc.write_eof()
        return data

    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            pump_out()
            pump_in()
    pump_out()
    obj.write(b"last words")
    try:
        obj.unwrap()          # sends close_notify
    except ssl.SSLWantReadError:
        pass
    pump_out()
    received = b""
    while b"reply after your EOF\r\n" not in received:
        try:
            received += obj.read(1024)
        except ssl.SSLWantReadError:
            if not pump_in():
                break
        except ssl.SSLZeroReturnError:
            break
    raw.close()
    assert received == b"* OK\r\nreply after your EOF\r\n"
    assert seen == [b"last words"]


def _truncating_tls_upstream(conn):
    conn.sendall(b"* OK partial")
    # FIN without close_notify under the TLS layer: a truncated stream.
    socket.socket.shutdown(conn, socket.SHUT_RDWR)


def _clean_tls_upstream(conn):
    conn.sendall(b"* OK complete")
    conn.unwrap()


def test_truncation_stays_visible(proxies, upstreams, certs):
    proxy, up = start(proxies, upstreams, certs, _truncating_tls_upstream, "implicit")
    s = tls_connect(proxy.port("relay"), certs)
    s.suppress_ragged_eofs = False
    assert recv_exact(s, 12) == b"* OK partial"
    # No close_notify was forwarded as if the stream had ended normally:
    # the client's connection is reset.
    with pytest.raises((ConnectionResetError, ssl.SSLError)):
        s.recv(100)
    proxy.wait_log(r"event=close .*reason=upstream-truncated")
    s.close()


def test_clean_end_stays_clean(proxies, upstreams, certs):
    proxy, up = start(proxies, upstreams, certs, _clean_tls_upstream, "implicit")
    s = tls_connect(proxy.port("relay"), certs)
    s.suppress_ragged_eofs = False
    assert recv_exact(s, 13) == b"* OK complete"
    assert s.recv(100) == b""
    s.close()


def test_upstream_reset_closes_client_promptly(proxies, upstreams, certs):
    def handler(conn):
        conn.sendall(b"* OK about to reset\r\n")
        time.sleep(0.2)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    proxy, up = start(proxies, upstreams, certs, handler)
    s = tls_connect(proxy.port("relay"), certs)
    s.suppress_ragged_eofs = False
    assert recv_exact(s, 21) == b"* OK about to reset\r\n"
    start_t = time.monotonic()
    with pytest.raises((ConnectionResetError, ssl.SSLEOFError, ssl.SSLError)):
        s.recv(100)
    assert time.monotonic() - start_t < 3
    proxy.wait_log(r"reason=upstream-error detail=\"read: reset by peer\"")
    s.close()


def test_client_reset_closes_upstream(proxies, upstreams, certs):
    outcome = []

    def handler(conn):
        conn.sendall(b"* OK\r\n")
        try:
            outcome.append(conn.recv(100))
        except ConnectionResetError:
            outcome.append("reset")

    proxy, up = start(proxies, upstreams, certs, handler)
    s = tls_connect(proxy.port("relay"), certs)
    assert recv_exact(s, 6) == b"* OK\r\n"
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    proxy.wait_log(r"reason=client-error")
    deadline = time.monotonic() + 3
    while not outcome and time.monotonic() < deadline:
        time.sleep(0.02)
    assert outcome in (["reset"], [b""])


def _read_until_end(sock, limit=10):
    """Reads until the stream ends: returns (bytes, "reset" | "eof")."""
    data = b""
    sock.settimeout(limit)
    while True:
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, ssl.SSLEOFError):
            return data, "reset"
        except ssl.SSLError as e:
            assert "UNEXPECTED_EOF" in str(e) or "EOF occurred" in str(e), e
            return data, "reset"
        if not chunk:
            return data, "eof"
        data += chunk


def _truncating_stls_upstream(certs):
    """POP3 with STLS; inside TLS it starts a RETR reply, then FIN without
    close_notify (a cut connection, not the end of the reply)."""
    def handler(conn):
        f = conn.makefile("rb")
        conn.sendall(b"+OK ready\r\n")
        assert f.readline() == b"CAPA\r\n"
        conn.sendall(b"+OK\r\nSTLS\r\n.\r\n")
        assert f.readline() == b"STLS\r\n"
        conn.sendall(b"+OK go\r\n")
        tls = server_ctx(certs).wrap_socket(conn, server_side=True)
        tf = tls.makefile("rb")
        tf.readline()                         # RETR 1
        tls.sendall(b"+OK 100000 octets\r\nSubject: cut\r\n\r\nthe first part")
        time.sleep(0.1)
        socket.socket.shutdown(tls, socket.SHUT_RDWR)
    return handler


@pytest.mark.parametrize("upstream_tls", ["implicit", "starttls"])
def test_upstream_truncation_reaches_a_plaintext_client_as_a_reset(proxies, upstreams,
                                                                   certs, upstream_tls):
    """A plaintext client has no close_notify to miss: a FIN would make a cut
    reply look complete.  The proxy resets the client's connection instead."""
    if upstream_tls == "implicit":
        up = upstreams(_truncating_tls_upstream, server_ctx(certs))
        proto = "imap"
    else:
        up = upstreams(_truncating_stls_upstream(certs))
        proto = "pop3"
    proxy = proxies("[relay]\nprotocol = %s\nlisten = 127.0.0.1:0\nclient_tls = none\n"
                    "upstream = %s\nupstream_tls = %s\nupstream_name = localhost\n"
                    "upstream_ca = %s/ca.crt\n" % (proto, up.addr, upstream_tls, certs))
    s = socket.create_connection(("127.0.0.1", proxy.port("relay")), timeout=10)
    if proto == "pop3":
        assert s.recv(100) == b"+OK ready\r\n"
        s.sendall(b"RETR 1\r\n")
    data, end = _read_until_end(s)
    assert end == "reset", data
    # What arrived before the reset is the start of what the server sent
    # (the reset may discard some of it), never anything else.
    sent = (b"* OK partial" if proto == "imap" else
            b"+OK 100000 octets\r\nSubject: cut\r\n\r\nthe first part")
    assert sent.startswith(data)
    proxy.wait_log(r"event=close .*reason=upstream-truncated")
    s.close()


def test_an_upstream_that_skips_close_notify_after_the_client_left_is_a_normal_end(
        proxies, upstreams, certs):
    """QUIT answered, the client gone, the server closes without close_notify
    (common): not counted as a truncation."""
    def handler(conn):
        conn.sendall(b"* OK bye soon\r\n")
        while conn.recv(4096):               # until the client's end arrives
            pass
        socket.socket.shutdown(conn, socket.SHUT_RDWR)

    proxy, up = start(proxies, upstreams, certs, handler, "implicit")
    s = tls_connect(proxy.port("relay"), certs)
    assert recv_exact(s, 15) == b"* OK bye soon\r\n"
    try:
        s.unwrap()                           # the client's clean end...
    except (ConnectionResetError, ssl.SSLError):
        pass                                 # ...answered by a reset
    s.close()
    proxy.wait_log(r"event=close .*reason=upstream-closed detail=\"after the client's end")
    assert "upstream-truncated" not in proxy.log()
