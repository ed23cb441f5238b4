"""sni: several services on one listen address, chosen by the client's TLS
server name (exact names, one-label wildcards, one default without sni).
Each service has its own certificate and its own upstream (scripted IMAP
servers that say which they are); the clients are Python's ssl, openssl
s_client and curl; implicit TLS and the client STARTTLS dialogue; unknown
names, no name, a reload that adds and removes names."""

import os
import re
import socket
import ssl
import subprocess

import pytest

from helpers import free_port


def imap_upstream(name):
    tag = name.encode()

    def handler(conn):
        conn.sendall(b"* OK upstream-%s ready\r\n" % tag)
        f = conn.makefile("rb")
        for line in f:
            t = line.split(b" ", 1)[0]
            if line.upper().split(b" ")[1:2] == [b"LOGOUT\r\n"]:
                conn.sendall(b"* BYE\r\n%s OK bye\r\n" % t)
                return
            conn.sendall(b"* CAPABILITY IMAP4rev1 X-UPSTREAM-%s\r\n%s OK done\r\n"
                         % (tag.upper(), t))
    return handler


def svc(name, port, cert, upstream, sni=None, client_tls="implicit", certs=""):
    text = ("[%s]\nprotocol = imap\nlisten = 127.0.0.1:%d\nclient_tls = %s\n"
            "cert = %s/%s.crt\nkey = %s/%s.key\nupstream = %s\nupstream_tls = none\n"
            % (name, port, client_tls, certs, cert, certs, cert, upstream.addr))
    if sni:
        text += "sni = %s\n" % sni
    if client_tls == "starttls":
        text += "ehlo_name = gw.test\n"
    return text


def der(certs, name):
    out = subprocess.run(["openssl", "x509", "-in", os.path.join(certs, name + ".crt"),
                          "-outform", "DER"], capture_output=True, check=True).stdout
    return out


def hello(port, name):
    """(greeting, server certificate DER) for a client sending name."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                        server_hostname=name)
    cert = s.getpeercert(binary_form=True)
    line = s.makefile("rb").readline()
    s.close()
    return line, cert


@pytest.fixture()
def three(proxies, upstreams, certs):
    port = free_port()
    ups = {t: upstreams(imap_upstream(t)) for t in ("a", "b", "c")}
    p = proxies(svc("a", port, "server-rsa", ups["a"], "a.test mail.A.test", certs=certs)
                + svc("b", port, "wildcard", ups["b"], "*.b.test", certs=certs)
                + svc("c", port, "server-ecdsa", ups["c"], certs=certs))
    return p, port, ups


def test_three_services_on_one_port(three, certs):
    p, port, ups = three
    cases = [("a.test", "a", "server-rsa"), ("MAIL.a.TEST", "a", "server-rsa"),
             ("x.b.test", "b", "wildcard"), ("deep.x.b.test", "c", "server-ecdsa"),
             ("b.test", "c", "server-ecdsa"), ("unknown.test", "c", "server-ecdsa"),
             (None, "c", "server-ecdsa")]
    for name, tag, cert in cases:
        line, served = hello(port, name)
        assert line == b"* OK upstream-%s ready\r\n" % tag.encode(), (name, line)
        assert served == der(certs, cert), name
    # One listening socket; the routes are in the log.
    assert len(re.findall(r"event=listen svc=\S+ addr=127\.0\.0\.1:%d " % port, p.log())) == 1
    assert re.search(r"event=sni-route addr=127\.0\.0\.1:%d svc=b sni=\*\.b\.test" % port,
                     p.log())
    p.wait_log(r"event=sni-route sni=x\.b\.test to=b")
    # Metrics and the close line are the chosen service's.
    p.wait_log(r"event=close svc=b ")


def test_openssl_and_curl(three, certs):
    p, port, ups = three
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-quiet",
                        "-servername", "mx.b.test"], input=b"a LOGOUT\r\n",
                       capture_output=True, timeout=20)
    assert b"* OK upstream-b ready" in r.stdout, r.stdout + r.stderr
    r = subprocess.run(["curl", "-sv", "-k", "--resolve", "a.test:%d:127.0.0.1" % port,
                        "imaps://a.test:%d/" % port], capture_output=True, timeout=20)
    assert b"upstream-a ready" in r.stderr, r.stderr


def test_no_default_refuses_unknown_names(proxies, upstreams, certs):
    port = free_port()
    a, b = upstreams(imap_upstream("a")), upstreams(imap_upstream("b"))
    p = proxies(svc("a", port, "server-rsa", a, "a.test", certs=certs)
                + svc("b", port, "wildcard", b, "*.b.test", certs=certs))
    assert hello(port, "a.test")[0] == b"* OK upstream-a ready\r\n"
    for name in ("other.test", None):
        with pytest.raises(ssl.SSLError) as e:
            hello(port, name)
        assert "UNRECOGNIZED_NAME" in str(e.value).upper(), e.value
    p.wait_log(r"reason=client-handshake-failed detail=\"no service for the server name "
               r"other\.test \(unrecognized_name\)\"")
    p.wait_log(r"detail=\"no service for the server name \(none sent\)")
    assert a.connections == 1 and b.connections == 0


def test_starttls_dialogue_then_the_name(proxies, upstreams, certs):
    port = free_port()
    a, b = upstreams(imap_upstream("a")), upstreams(imap_upstream("b"))
    p = proxies(svc("a", port, "server-rsa", a, "a.test", "starttls", certs)
                + svc("b", port, "wildcard", b, None, "starttls", certs))
    for name, tag in (("a.test", b"A"), ("mx.b.test", b"B")):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        f = raw.makefile("rb")
        assert f.readline().startswith(b"* OK [CAPABILITY IMAP4rev1 STARTTLS")
        raw.sendall(b"s STARTTLS\r\n")
        assert f.readline().startswith(b"s OK")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(raw, server_hostname=name)
        s.sendall(b"c CAPABILITY\r\n")
        g = s.makefile("rb")
        assert g.readline() == b"* CAPABILITY IMAP4rev1 X-UPSTREAM-%s\r\n" % tag, name
        s.close()


def test_reload_adds_and_removes_names(proxies, upstreams, certs):
    port = free_port()
    a, b, c = (upstreams(imap_upstream(t)) for t in ("a", "b", "c"))
    base = svc("a", port, "server-rsa", a, "a.test", certs=certs) + \
        svc("c", port, "server-ecdsa", c, certs=certs)
    p = proxies(base)
    assert hello(port, "new.test")[0] == b"* OK upstream-c ready\r\n"
    p.rewrite(base + svc("b", port, "wildcard", b, "new.test", certs=certs))
    p.reload()
    assert hello(port, "new.test")[0] == b"* OK upstream-b ready\r\n"
    assert hello(port, "a.test")[0] == b"* OK upstream-a ready\r\n"
    p.rewrite(svc("c", port, "server-ecdsa", c, certs=certs))
    p.reload()
    assert hello(port, "a.test")[0] == b"* OK upstream-c ready\r\n"


@pytest.mark.parametrize("second,message", [
    ("", r"listen 127\.0\.0\.1:\d+ is already used by \[a\] at line 3 \(services sharing"),
    ("sni = A.test\n", r"sni a\.test is claimed by \[a\] \(line \d+\) and \[b\] \(line \d+\)"),
])
def test_conflicts_are_refused_with_both_lines(tmp_path, certs, second, message):
    from helpers import BIN
    port = free_port()
    text = ("[a]\nprotocol = imap\nlisten = 127.0.0.1:%d\nclient_tls = implicit\n"
            "cert = %s/server-rsa.crt\nkey = %s/server-rsa.key\nupstream = 127.0.0.1:1\n"
            "upstream_tls = none\nsni = a.test\n" % (port, certs, certs))
    text += ("[b]\nprotocol = imap\nlisten = 127.0.0.1:%d\nclient_tls = implicit\n"
             "cert = %s/server-rsa.crt\nkey = %s/server-rsa.key\nupstream = 127.0.0.1:1\n"
             "upstream_tls = none\n%s" % (port, certs, certs, second))
    if not second:
        text = text.replace("sni = a.test\n", "")
    cfg = tmp_path / "c.ini"
    cfg.write_text(text)
    r = subprocess.run([BIN, "-t", "-c", str(cfg)], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 1 and re.search(message, r.stdout + r.stderr), r.stderr
