"""Several cert/key pairs on one listener: chosen by SNI (exact, then
wildcard, then the first pair) and, for one name, ECDSA for clients that can
use it, RSA for the rest."""

import ssl
import subprocess


from helpers import tls_connect


def greeter(conn):
    conn.sendall(b"* OK hello\r\n")
    while conn.recv(4096):
        pass


def config(certs, up, pairs):
    text = ("[m]\nprotocol = imap\nlisten = 127.0.0.1:0\nclient_tls = implicit\n"
            "upstream = %s\nupstream_tls = none\n" % up.addr)
    for name in pairs:
        text += "cert = %s/%s.crt\nkey = %s/%s.key\n" % (certs, name, certs, name)
    return text


def seen(proxy, certs, sni, ctx=None):
    """The leaf a client gets for sni: (commonName, key type)."""
    ctx = ctx or ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = tls_connect(proxy.port("m"), certs, server_hostname=sni, ctx=ctx)
    der = s.getpeercert(binary_form=True)
    s.close()
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject",
                          "-text"], input=der, capture_output=True).stdout.decode()
    cn = out.split("CN = ", 1)[1].split("\n", 1)[0].strip()
    return cn, "ECDSA" if "id-ecPublicKey" in out else "RSA"


def test_sni_exact_then_wildcard_then_first(proxies, upstreams, certs):
    up = upstreams(greeter)
    proxy = proxies(config(certs, up, ["server-ecdsa", "wrong-name", "wildcard"]))
    assert seen(proxy, certs, "other.test") == ("other.test", "ECDSA")     # exact
    assert seen(proxy, certs, "mx.mail.test") == ("wildcard", "ECDSA")    # wildcard
    assert seen(proxy, certs, "mail.test") == ("localhost", "ECDSA")      # exact SAN
    assert seen(proxy, certs, "nobody.example") == ("localhost", "ECDSA") # first pair


def test_ecdsa_for_those_who_can_rsa_for_the_rest(proxies, upstreams, certs):
    up = upstreams(greeter)
    proxy = proxies(config(certs, up, ["server-rsa", "server-ecdsa"]))
    assert seen(proxy, certs, "localhost") == ("localhost", "ECDSA")
    # A TLS 1.2 client with RSA suites only gets the RSA certificate.
    rsa_only = ssl.create_default_context()
    rsa_only.maximum_version = ssl.TLSVersion.TLSv1_2
    rsa_only.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
    assert seen(proxy, certs, "localhost", rsa_only) == ("localhost", "RSA")
    # A TLS 1.3 client that cannot verify ECDSA signatures gets RSA too.
    r = subprocess.run(["openssl", "s_client", "-connect",
                        "127.0.0.1:%d" % proxy.port("m"), "-servername", "localhost",
                        "-sigalgs", "rsa_pss_rsae_sha256"],
                       input=b"", capture_output=True, timeout=20)
    assert b"Peer signature type: RSA-PSS" in r.stdout + r.stderr
    # Unknown names still get the key type the client can use.
    assert seen(proxy, certs, "unknown.example", rsa_only) == ("localhost", "RSA")


def test_unpaired_cert_is_a_config_error(tmp_path, certs):
    from helpers import BIN
    f = tmp_path / "x.ini"
    f.write_text("[m]\nprotocol = imap\nlisten = 127.0.0.1:0\nclient_tls = implicit\n"
                 "upstream = 127.0.0.1:143\nupstream_tls = none\n"
                 "cert = %s/server-rsa.crt\nkey = %s/server-rsa.key\n"
                 "cert = %s/server-ecdsa.crt\n" % (certs, certs, certs))
    r = subprocess.run([BIN, "-t", "-c", str(f)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "cert and key come in pairs (2 cert, 1 key)" in r.stderr
