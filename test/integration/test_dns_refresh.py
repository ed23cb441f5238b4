"""dns_refresh: upstream names re-resolved by the supervisor when the
answer's TTL ends (capped by dns_refresh), through a scripted DNS server on
127.0.0.1 (MAILPROXY_DNS_SERVERS points the proxy at it); a failed lookup
keeps the last good addresses; every address is tried in turn."""

import socket
import struct
import threading
import time

from helpers import service, tls_connect


class ScriptedDNS:
    """Answers A queries for one name with self.addrs (TTL self.ttl), AAAA
    with no data; silent while self.silent."""

    def __init__(self, name, addrs, ttl=1):
        self.name, self.addrs, self.ttl, self.silent = name, addrs, ttl, False
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop:
            try:
                q, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            self.queries += 1
            if not self.silent:
                self.sock.sendto(self.answer(q), peer)

    def answer(self, q):
        tid = q[:2]
        off, labels = 12, []
        while q[off]:
            labels.append(q[off + 1:off + 1 + q[off]].decode().lower())
            off += 1 + q[off]
        qtype = struct.unpack("!H", q[off + 1:off + 3])[0]
        question = q[12:off + 5]
        if ".".join(labels) != self.name:
            return tid + b"\x81\x83" + struct.pack("!HHHH", 1, 0, 0, 0) + question
        answers = [a for a in self.addrs] if qtype == 1 else []
        out = tid + b"\x81\x80" + struct.pack("!HHHH", 1, len(answers), 0, 0) + question
        for a in answers:
            out += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, self.ttl, 4) + socket.inet_aton(a)
        return out

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def greeter(tag):
    def handler(conn):
        conn.sendall(b"* OK " + tag + b"\r\n")
        while conn.recv(4096):
            pass
    return handler


def greeting(proxy, certs):
    s = tls_connect(proxy.port("d"), certs)
    line = s.recv(100)
    s.close()
    return line


def test_a_name_that_moves_is_followed(proxies, upstreams, certs):
    port = upstreams(greeter(b"first")).port          # 127.0.0.1:port and
    upstreams(greeter(b"second"), host="127.0.0.2", port=port)     # 127.0.0.2:port
    dns = ScriptedDNS("mail.test", ["127.0.0.1"], ttl=1)
    try:
        proxy = proxies("dns_refresh = 5\n" + service("d", "imap", "mail.test:%d" % port,
                                                        certs),
                        env={"MAILPROXY_DNS_SERVERS": "127.0.0.1:%d" % dns.port})
        assert greeting(proxy, certs) == b"* OK first\r\n"
        dns.addrs = ["127.0.0.2"]               # the provider moves its host
        proxy.wait_log(r"event=dns-refresh name=mail\.test addresses=1 first=127\.0\.0\.2",
                       timeout=10)
        assert greeting(proxy, certs) == b"* OK second\r\n"
        # The DNS server goes silent: the last good address stays.
        dns.silent = True
        proxy.wait_log(r"event=dns-refresh-failed name=mail\.test", timeout=15)
        assert greeting(proxy, certs) == b"* OK second\r\n"
        # Two addresses, the first refusing: the second is tried.
        dns.silent = False
        dns.addrs = ["127.0.0.3", "127.0.0.1"]
        proxy.wait_log(r"event=dns-refresh name=mail\.test addresses=2", timeout=35)
        assert greeting(proxy, certs) == b"* OK first\r\n"
    finally:
        dns.close()


def test_dns_refresh_zero_resolves_at_load_only(proxies, certs):
    dns = ScriptedDNS("mail.test", ["127.0.0.1"], ttl=1)
    try:
        proxy = proxies("dns_refresh = 0\n" + service("d", "imap", "mail.test:143", certs),
                        env={"MAILPROXY_DNS_SERVERS": "127.0.0.1:%d" % dns.port})
        at_load = dns.queries
        assert at_load >= 1                      # the load asked it
        time.sleep(2.5)
        assert dns.queries == at_load and "dns-refresh" not in proxy.log()
    finally:
        dns.close()
