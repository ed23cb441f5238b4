"""upstream_pin: the upstream's key pinned by the SHA-256 of its
SubjectPublicKeyInfo (as curl's --pinnedpubkey and HPKP write it).  With
upstream_verify = no the pin alone accepts the server (an old internal
server with a self-signed or expired certificate) and credentials may go to
it; with upstream_verify = yes chain, name and pin must all hold.  A
mismatch fails the handshake: nothing, credentials least of all, goes out.

Pins are computed with the openssl command; the credentialed case runs
against the real Postfix of test/mailsys."""

import os
import re
import smtplib
import subprocess
import uuid

import pytest

from helpers import BIN, server_ctx, service, tls_connect
from test_real_servers import delivered
from test_upstream_auth import auth_service, private_file


def pin_of(cert_path):
    """sha256/BASE64 of the certificate's SPKI, the openssl way."""
    pub = subprocess.run(["openssl", "x509", "-in", cert_path, "-pubkey", "-noout"],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         capture_output=True, check=True).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-binary"], input=der,
                            capture_output=True, check=True).stdout
    b64 = subprocess.run(["openssl", "base64", "-A"], input=digest,
                         capture_output=True, check=True).stdout
    return "sha256/" + b64.decode().strip()


def self_signed(d, name):
    """A self-signed certificate for an old internal server (CN only, no
    SAN, nothing a verifying client would take)."""
    crt, key = os.path.join(str(d), name + ".crt"), os.path.join(str(d), name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj",
                    "/CN=old-server", "-keyout", key, "-out", crt],
                   check=True, capture_output=True)
    return crt, key


def greeter(conn):
    conn.sendall(b"220 old.test ESMTP upstream\r\n")
    conn.recv(100)


def self_signed_upstream(upstreams, d, name="old"):
    import ssl
    crt, key = self_signed(d, name)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    return upstreams(greeter, ctx), crt


def test_pinned_self_signed_server_is_reached(proxies, upstreams, certs, tmp_path):
    up, crt = self_signed_upstream(upstreams, tmp_path)
    proxy = proxies(service("old", "smtp", up.addr, certs, "implicit",
                            "upstream_verify = no\nupstream_pin = %s\n" % pin_of(crt)))
    assert "the upstream certificate is NOT checked" not in proxy.log()
    assert re.search(r"svc=old upstream_verify = no with upstream_pin", proxy.log())
    s = tls_connect(proxy.port("old"), certs)
    assert s.recv(200) == b"220 old.test ESMTP upstream\r\n"
    s.close()


def test_a_changed_key_is_refused_naming_both(proxies, upstreams, certs, tmp_path):
    """The pinned key was A; the server now shows B (a new certificate, or
    an impostor): refused before anything is sent, both hashes logged."""
    old_crt, _ = self_signed(tmp_path, "before")
    up, new_crt = self_signed_upstream(upstreams, tmp_path, "after")
    proxy = proxies(service("old", "smtp", up.addr, certs, "implicit",
                            "upstream_verify = no\nupstream_pin = %s\n" % pin_of(old_crt)))
    s = tls_connect(proxy.port("old"), certs)
    data = s.recv(200)
    assert data.startswith(b"421 4.7.0 ") and b"ESMTP upstream" not in data
    s.close()
    proxy.wait_log(r"reason=upstream-verify-failed detail=\"pin-mismatch: the server's "
                   r"key is %s, pinned: %s\"" % (re.escape(pin_of(new_crt)),
                                                  re.escape(pin_of(old_crt))))


def test_pin_and_chain_must_both_hold(proxies, upstreams, certs, tmp_path):
    """upstream_verify = yes with a pin: a certificate of the right CA and
    name but another key is refused; the right key verifies as always."""
    other, _ = self_signed(tmp_path, "other")
    for pin, ok in ((pin_of(os.path.join(certs, "server-rsa.crt")), True),
                    (pin_of(other), False)):
        up = upstreams(greeter, server_ctx(certs, "server-rsa"))
        proxy = proxies(service("v", "smtp", up.addr, certs, "implicit",
                                "upstream_ca = %s/ca.crt\nupstream_name = localhost\n"
                                "upstream_pin = %s\n" % (certs, pin)))
        s = tls_connect(proxy.port("v"), certs)
        data = s.recv(200)
        s.close()
        if ok:
            assert data == b"220 old.test ESMTP upstream\r\n"
        else:
            assert data.startswith(b"421 ")
            proxy.wait_log(r"detail=\"pin-mismatch")
    # And a pinned key does not excuse a bad chain: the self-signed one,
    # pinned, with upstream_verify = yes.
    up, crt = self_signed_upstream(upstreams, tmp_path, "selfsigned")
    proxy = proxies(service("v2", "smtp", up.addr, certs, "implicit",
                            "upstream_ca = %s/ca.crt\nupstream_name = localhost\n"
                            "upstream_pin = %s\n" % (certs, pin_of(crt))))
    s = tls_connect(proxy.port("v2"), certs)
    assert s.recv(200).startswith(b"421 ")
    s.close()
    proxy.wait_log(r"reason=upstream-verify-failed detail=\"(unknown-ca|invalid)")


def test_probe_prints_the_pin_to_copy(upstreams, certs, tmp_path):
    up, crt = self_signed_upstream(upstreams, tmp_path)
    cfg = os.path.join(str(tmp_path), "p.ini")
    with open(cfg, "w") as f:
        f.write(service("old", "smtp", up.addr, certs, "implicit",
                        "upstream_name = old-server\nupstream_ca = %s/ca.crt\n" % certs))
    r = subprocess.run([BIN, "-T", "-c", cfg], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "pin=%s" % pin_of(crt) in r.stdout + r.stderr, r.stdout + r.stderr


@pytest.fixture()
def pinned_postfix(servers):
    return pin_of(os.path.join(servers["run"], "pki", "upstream.crt"))


def test_credentials_go_to_the_pinned_real_postfix_only(proxies, servers, certs, tmp_path,
                                                       pinned_postfix):
    """upstream_auth with upstream_verify = no is accepted only with a pin:
    the device's mail goes through the real Postfix, logged in, when its
    key matches; with another pin the device gets a temporary error and
    Postfix never sees an AUTH."""
    pw = private_file(tmp_path, "pw", servers["password"] + "\n")
    other, _ = self_signed(tmp_path, "not-postfix")
    port = servers["ports"]["smtp_smtps"]
    good = auth_service("good", port, "implicit", "plain", pw, certs,
                        extra="upstream_verify = no\nupstream_pin = %s\n" % pinned_postfix)
    bad = auth_service("bad", port, "implicit", "plain", pw, certs,
                       extra="upstream_verify = no\nupstream_pin = %s\n" % pin_of(other))
    proxy = proxies(good + bad)
    marker = "pinned-" + uuid.uuid4().hex
    s = smtplib.SMTP("127.0.0.1", proxy.port("good"), local_hostname="mfp.test", timeout=15)
    s.ehlo()
    s.sendmail("scanner@office.test", ["alice@mail.test"],
               ("Subject: %s\r\n\r\nscan\r\n" % marker).encode())
    s.quit()
    assert b"ESMTPSA" in delivered(servers, marker)
    with pytest.raises(smtplib.SMTPException):
        s = smtplib.SMTP("127.0.0.1", proxy.port("bad"), local_hostname="mfp.test",
                         timeout=15)
        s.ehlo()
        s.sendmail("scanner@office.test", ["alice@mail.test"], b"Subject: no\r\n\r\nx\r\n")
    proxy.wait_log(r"svc=bad event=upstream-failed reason=upstream-verify-failed "
                   r"detail=\"pin-mismatch")
    assert not re.search(r"svc=bad event=upstream-auth-ok", proxy.log())
