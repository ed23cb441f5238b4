"""Devices with certificates (client_verify, client_ca, client_crl,
allow_cert): a device must (require) or may (optional) present a
certificate that chains to client_ca and is not revoked; one that does not
verify gets a TLS alert and a log line with the reason, and never reaches
the upstream.  The device's certificate (subject, SHA-256) is in the log;
allow_cert admits devices by fingerprint.

Upstreams: the real Dovecot and Postfix of test/mailsys.  Clients: Python's
ssl, openssl s_client and curl, for IMAP, POP3 and SMTP, with implicit TLS
and the client STARTTLS dialogue.  The device CA, its certificates and its
CRL are made here with the openssl command."""

import os
import re
import socket
import ssl
import subprocess

import pytest

from helpers import client_ctx

CA_CNF = """[ca]
default_ca = dev
[dev]
dir = {d}
database = {d}/index.txt
new_certs_dir = {d}/new
serial = {d}/serial
crlnumber = {d}/crlnumber
default_md = sha256
default_crl_days = 30
default_days = 30
policy = any
copy_extensions = copy
[any]
commonName = supplied
"""


def run(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, **kw)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A device CA with good, expired, revoked and foreign certificates."""
    d = str(tmp_path_factory.mktemp("devices"))
    os.makedirs(os.path.join(d, "new"))
    open(os.path.join(d, "index.txt"), "w").close()
    with open(os.path.join(d, "serial"), "w") as f:
        f.write("1000\n")
    with open(os.path.join(d, "crlnumber"), "w") as f:
        f.write("1000\n")
    cnf = os.path.join(d, "ca.cnf")
    with open(cnf, "w") as f:
        f.write(CA_CNF.format(d=d))

    def ca(name):
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj", "/CN=%s" % name,
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout", os.path.join(d, name + ".key"), "-out", os.path.join(d, name + ".crt"))

    def device(name, issuer="devices-ca", dates=()):
        key, csr = os.path.join(d, name + ".key"), os.path.join(d, name + ".csr")
        run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-subj", "/CN=%s" % name, "-addext", "extendedKeyUsage=clientAuth",
            "-keyout", key, "-out", csr)
        if issuer == "devices-ca":
            run("openssl", "ca", "-batch", "-config", cnf, "-cert",
                os.path.join(d, "devices-ca.crt"), "-keyfile", os.path.join(d, "devices-ca.key"),
                "-in", csr, "-out", os.path.join(d, name + ".crt"), *dates)
        else:
            run("openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(d, issuer + ".crt"),
                "-CAkey", os.path.join(d, issuer + ".key"), "-CAcreateserial", "-days", "30",
                "-out", os.path.join(d, name + ".crt"))

    ca("devices-ca")
    ca("foreign-ca")
    device("scanner-1")
    device("scanner-2")
    device("old-printer", dates=("-startdate", "20200101000000Z", "-enddate", "20200201000000Z"))
    device("stolen-nas")
    device("stranger", issuer="foreign-ca")
    run("openssl", "ca", "-config", cnf, "-cert", os.path.join(d, "devices-ca.crt"),
        "-keyfile", os.path.join(d, "devices-ca.key"), "-revoke",
        os.path.join(d, "stolen-nas.crt"))
    run("openssl", "ca", "-config", cnf, "-cert", os.path.join(d, "devices-ca.crt"),
        "-keyfile", os.path.join(d, "devices-ca.key"), "-gencrl",
        "-out", os.path.join(d, "devices.crl"))
    return d


def fingerprint(path):
    out = run("openssl", "x509", "-in", path, "-noout", "-fingerprint", "-sha256",
              text=True).stdout
    return "sha256:" + out.strip().split("=", 1)[1].replace(":", "").lower()


UPSTREAM = {"imap": ("imaps", "implicit"), "pop3": ("pop3s", "implicit"),
            "smtp": ("smtp_submission", "starttls")}
GREETING = {"imap": b"* OK", "pop3": b"+OK", "smtp": b"220 "}


def device_service(name, protocol, client_tls, servers, certs, pki, verify="require",
                   extra=""):
    port_name, up_tls = UPSTREAM[protocol]
    text = ("[%s]\nprotocol = %s\nlisten = 127.0.0.1:0\nclient_tls = %s\n"
            "cert = %s/server-ecdsa.crt\nkey = %s/server-ecdsa.key\n"
            "upstream = 127.0.0.1:%d\nupstream_tls = %s\nupstream_name = mail.test\n"
            "upstream_ca = %s\nclient_verify = %s\nclient_ca = %s/devices-ca.crt\n"
            "client_crl = %s/devices.crl\n%s\n"
            % (name, protocol, client_tls, certs, certs, servers["ports"][port_name], up_tls,
               servers["ca"], verify, pki, pki, extra))
    if client_tls == "starttls" or protocol == "smtp":
        text += "ehlo_name = gw.test\n"
    return text


STARTTLS = {"imap": (b"a STARTTLS\r\n", b"a OK"), "pop3": (b"STLS\r\n", b"+OK"),
            "smtp": (b"EHLO dev.test\r\nSTARTTLS\r\n", b"220 ")}


def open_device(port, protocol, client_tls, certs, pki, cert=None):
    """Connects as a device (Python ssl) presenting cert; returns the first
    line the upstream side says inside TLS, or raises on a TLS failure."""
    ctx = client_ctx(certs)
    if cert:
        ctx.load_cert_chain(os.path.join(pki, cert + ".crt"), os.path.join(pki, cert + ".key"))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    if client_tls == "starttls":
        f = raw.makefile("rb")
        assert f.readline().startswith(GREETING[protocol])
        cmd, ok = STARTTLS[protocol]
        raw.sendall(cmd)
        while True:
            line = f.readline()
            assert line, "closed before STARTTLS was answered"
            if line.startswith(ok) and (protocol != "smtp" or line.startswith(b"220 ")):
                break
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    if client_tls == "starttls":
        cmd = {"imap": b"b NOOP\r\n", "pop3": b"CAPA\r\n", "smtp": b"NOOP\r\n"}[protocol]
        s.sendall(cmd)
    line = s.makefile("rb").readline()
    s.close()
    if not line:
        raise ConnectionError("closed after the handshake")
    return line


@pytest.mark.parametrize("protocol", ["imap", "pop3", "smtp"])
@pytest.mark.parametrize("client_tls", ["implicit", "starttls"])
def test_certificates_are_verified(proxies, servers, certs, pki, protocol, client_tls):
    p = proxies(device_service("d", protocol, client_tls, servers, certs, pki))
    port = p.port("d")
    line = open_device(port, protocol, client_tls, certs, pki, "scanner-1")
    ok = {"imap": (b"* OK", b"b OK"), "pop3": (b"+OK",), "smtp": (b"220 ", b"250 ")}
    assert line.startswith(ok[protocol]), line
    fp = fingerprint(os.path.join(pki, "scanner-1.crt"))
    p.wait_log(r"event=client-cert client=127\.0\.0\.1:\d+ subject=\"/CN=scanner-1\" "
               r"fingerprint=%s" % fp)
    p.wait_log(r"event=close .*client_cert=%s" % fp)
    for cert, why in (("old-printer", "certificate has expired"),
                      ("stolen-nas", "certificate revoked"),
                      ("stranger", "unable to get local issuer certificate"),
                      (None, None)):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            open_device(port, protocol, client_tls, certs, pki, cert)
        if why:
            p.wait_log(r"reason=client-cert-failed detail=\"certificate: %s\"" % why)
    # None of them reached the upstream: only the good one was dialled.
    assert len(re.findall(r"event=close .*upstream=127", p.log())) == 1, p.log()


def test_optional_and_allow_cert(proxies, servers, certs, pki):
    """client_verify = optional: a device without a certificate is served;
    with allow_cert, only the listed certificate is (the other device's,
    from the same CA, is closed after its handshake, before the upstream)."""
    fp1 = fingerprint(os.path.join(pki, "scanner-1.crt"))
    p = proxies(device_service("open", "imap", "implicit", servers, certs, pki, "optional")
                + device_service("listed", "imap", "implicit", servers, certs, pki,
                                 "optional", "allow_cert = %s\n" % fp1.upper()))
    assert open_device(p.port("open"), "imap", "implicit", certs, pki).startswith(b"* OK")
    assert open_device(p.port("listed"), "imap", "implicit", certs, pki,
                       "scanner-1").startswith(b"* OK")
    for cert, detail in (("scanner-2", "certificate not in allow_cert"),
                         (None, r"no certificate \(allow_cert\)")):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            open_device(p.port("listed"), "imap", "implicit", certs, pki, cert)
        p.wait_log(r"svc=listed .*reason=not-allowed detail=\"%s\"" % detail)


def test_openssl_and_curl_as_devices(proxies, servers, certs, pki):
    p = proxies(device_service("d", "imap", "implicit", servers, certs, pki))
    port = p.port("d")
    crt, key = os.path.join(pki, "scanner-1.crt"), os.path.join(pki, "scanner-1.key")
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-quiet",
                        "-CAfile", os.path.join(certs, "ca.crt"), "-cert", crt, "-key", key],
                       input=b"a LOGOUT\r\n", capture_output=True, timeout=20)
    assert b"* OK" in r.stdout and b"a OK" in r.stdout, r.stdout + r.stderr
    r = subprocess.run(["curl", "-s", "--cacert", os.path.join(certs, "ca.crt"),
                        "--cert", crt, "--key", key, "-u", "%s:%s" % (servers["user"],
                                                                  servers["password"]),
                        "imaps://localhost:%d/INBOX;UID=1" % port],
                       capture_output=True, timeout=20)
    assert r.returncode == 0 and b"seed" in r.stdout, r.stderr
    # Without a certificate curl fails its handshake.
    r = subprocess.run(["curl", "-s", "--cacert", os.path.join(certs, "ca.crt"),
                        "imaps://localhost:%d/" % port], capture_output=True, timeout=20)
    assert r.returncode != 0


# ---- accounts: the certificate is the login ------------------------------


def accounts_config(servers, certs, pki, tmp_path):
    from test_accounts import LOCAL, make_hash, private_file, svc
    pw = private_file(tmp_path, "alice.pw", servers["password"] + "\n")
    verify = ("client_verify = optional\nclient_ca = %s/devices-ca.crt\n"
              "client_crl = %s/devices.crl\nauth_failures_max = 100\n" % (pki, pki))
    ports = servers["ports"]
    return (svc("imaps", "imap", ports["imaps"], "implicit", certs, extra=verify)
            + svc("pop3s", "pop3", ports["pop3s"], "implicit", certs, extra=verify)
            + svc("smtps", "smtp", ports["smtp_submission"], "starttls", certs, extra=verify)
            + "[account:alice]\npassword_hash = %s\nupstream_user = alice\n"
              "upstream_password_file = %s\n" % (make_hash(LOCAL), pw)
            + "[account:scanner]\nclient_cert = %s\nupstream_user = alice\n"
              "upstream_password_file = %s\n"
              % (fingerprint(os.path.join(pki, "scanner-1.crt")), pw))


def device_tls(port, certs, pki, cert):
    ctx = client_ctx(certs)
    if cert:
        ctx.load_cert_chain(os.path.join(pki, cert + ".crt"), os.path.join(pki, cert + ".key"))
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=15),
                        server_hostname="localhost")
    return s, s.makefile("rb")


def imap_login(port, certs, pki, cert, user, password):
    s, f = device_tls(port, certs, pki, cert)
    assert f.readline().startswith(b"* OK")
    s.sendall(b'a1 LOGIN %s "%s"\r\n' % (user.encode(), password.encode()))
    while True:
        line = f.readline()
        if line.startswith(b"a1 "):
            break
    if line.startswith(b"a1 OK"):
        s.sendall(b"a2 SELECT INBOX\r\n")
        while not (line2 := f.readline()).startswith(b"a2 "):
            pass
        assert line2.startswith(b"a2 OK"), line2
    s.close()
    return line


def test_account_by_certificate(proxies, servers, certs, pki, tmp_path):
    """[account:scanner] client_cert = …: the device presenting that
    certificate is the account (IMAP/POP3: its name, any password; SMTP:
    before any AUTH); another certificate of the same CA, or none, is not."""
    import smtplib
    import uuid
    from test_accounts import LOCAL
    from test_real_servers import delivered
    p = proxies(accounts_config(servers, certs, pki, tmp_path))
    imaps, pop3s, smtps = p.port("imaps"), p.port("pop3s"), p.port("smtps")
    assert imap_login(imaps, certs, pki, "scanner-1", "scanner", "anything").startswith(b"a1 OK")
    p.wait_log(r"event=login client=127\.0\.0\.1:\d+ user=scanner method=certificate")
    for cert, user, password in (("scanner-2", "scanner", "anything"),
                                 (None, "scanner", "anything"),
                                 ("scanner-1", "alice", "not-alices")):
        assert imap_login(imaps, certs, pki, cert, user, password).startswith(
            b"a1 NO [AUTHENTICATIONFAILED]"), (cert, user)
    # alice's own password still works, with or without a certificate.
    assert imap_login(imaps, certs, pki, None, "alice", LOCAL).startswith(b"a1 OK")
    # POP3.
    s, f = device_tls(pop3s, certs, pki, "scanner-1")
    assert f.readline().startswith(b"+OK")
    s.sendall(b"USER scanner\r\nPASS x\r\nSTAT\r\nQUIT\r\n")
    assert f.readline().startswith(b"+OK") and f.readline().startswith(b"+OK")
    assert f.readline().startswith(b"+OK ")      # STAT, from Dovecot
    s.close()
    # SMTP: MAIL at once, no AUTH.
    marker = "cert-" + uuid.uuid4().hex
    ctx = client_ctx(certs)
    ctx.load_cert_chain(os.path.join(pki, "scanner-1.crt"), os.path.join(pki, "scanner-1.key"))
    c = smtplib.SMTP_SSL("127.0.0.1", smtps, context=ctx, local_hostname="mfp.test",
                         timeout=15)
    c.sendmail("scanner@office.test", ["alice@mail.test"],
               ("Subject: %s\r\n\r\nscan\r\n" % marker).encode())
    c.quit()
    assert b"ESMTPSA" in delivered(servers, marker)
    # Without the certificate MAIL waits for a login.
    c = smtplib.SMTP_SSL("127.0.0.1", smtps, context=client_ctx(certs), timeout=15)
    c.ehlo("mfp.test")
    assert c.docmd("MAIL", "FROM:<scanner@office.test>")[0] == 530
    c.close()


def test_legacy_device_counted_with_its_certificate(proxies, servers, certs, pki):
    """Per-client metrics name the device's certificate beside its address:
    an old scanner on TLS 1.0 behind a shared NAT address is told apart."""
    import urllib.request
    from helpers import free_port
    mport = free_port()
    p = proxies("metrics = 127.0.0.1:%d\n" % mport
                + device_service("old", "imap", "implicit", servers, certs, pki,
                                 "optional", "tls_min_version = 1.0\n"))
    for cert in ("scanner-1", None):
        ctx = client_ctx(certs)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        if cert:
            ctx.load_cert_chain(os.path.join(pki, cert + ".crt"),
                                os.path.join(pki, cert + ".key"))
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", p.port("old")),
                                                     timeout=10),
                            server_hostname="localhost")
        assert s.makefile("rb").readline().startswith(b"* OK")
        s.close()
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport,
                                  timeout=5).read().decode()
    fp = fingerprint(os.path.join(pki, "scanner-1.crt"))
    assert ('mailproxy_client_tls_legacy_sessions_total{service="old",client="127.0.0.1",'
            'version="1.0",client_cert="%s"} 1' % fp) in text, text
    assert ('mailproxy_client_tls_legacy_sessions_total{service="old",client="127.0.0.1",'
            'version="1.0"} 1') in text, text
