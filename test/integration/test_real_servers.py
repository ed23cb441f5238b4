"""The interop matrix: real clients -> mailproxy -> real Postfix and Dovecot.

For each protocol, every client_tls x upstream_tls combination the proxy
supports (8 per protocol).  Outcomes are checked on the real servers: the
Maildir that Postfix delivered into, the Received header Postfix wrote
(ESMTPSA = the proxy arrived over TLS, ESMTPA = in clear), Dovecot's login
log (local port and TLS), and Dovecot's own refusal of cleartext logins on
its TLS instance (so a login there proves the proxy used TLS)."""

import email
import glob
import imaplib
import os
import poplib
import re
import smtplib
import ssl
import subprocess
import sys
import uuid

import pytest

from helpers import ROOT, client_ctx, wait_for

sys.path.insert(0, os.path.join(ROOT, "test", "mailsys"))
import mailsys  # noqa: E402

MODES = ["none", "implicit", "starttls"]
COMBOS = [(c, u) for c in MODES for u in MODES if not (c == "none" and u == "none")]
UPSTREAM_PORT = {
    "smtp": {"none": "smtp_plain", "implicit": "smtp_smtps", "starttls": "smtp_submission"},
    "imap": {"none": "imap_plain", "implicit": "imaps", "starttls": "imap_starttls"},
    "pop3": {"none": "pop3_plain", "implicit": "pop3s", "starttls": "pop3_starttls"},
}


def svc_name(protocol, client_tls, upstream_tls):
    return "%s-%s-%s" % (protocol, client_tls, upstream_tls)


@pytest.fixture(scope="module")
def matrix_proxy(servers, certs, tmp_path_factory):
    from helpers import Proxy
    text = "log_level = info\n"
    for protocol in ("smtp", "imap", "pop3"):
        for c, u in COMBOS:
            port = servers["ports"][UPSTREAM_PORT[protocol][u]]
            text += ("[%s]\nprotocol = %s\nlisten = 127.0.0.1:0\nclient_tls = %s\n"
                     "upstream = 127.0.0.1:%d\nupstream_tls = %s\n"
                     % (svc_name(protocol, c, u), protocol, c, port, u))
            if c != "none":
                text += "cert = %s/server-ecdsa.crt\nkey = %s/server-ecdsa.key\n" % (
                    certs, certs)
            if u != "none":
                text += "upstream_name = mail.test\nupstream_ca = %s/ca.crt\n" % certs
            if c == "starttls" or (protocol == "smtp" and u == "starttls"):
                text += "ehlo_name = gw.test\n"
    p = Proxy(str(tmp_path_factory.mktemp("matrix")), text)
    yield p
    p.stop()
    log = p.log()
    assert "ERROR: AddressSanitizer" not in log and "runtime error:" not in log


def delivered(servers, marker, timeout=15):
    """The message whose Subject carries marker, once Dovecot has it."""
    def find():
        for sub in ("new", "cur"):
            for path in glob.glob(os.path.join(servers["maildir"], sub, "*")):
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except FileNotFoundError:   # moved new/ -> cur/ meanwhile
                    continue
                if marker.encode() in data:
                    return data
        return None
    return wait_for(find, timeout=timeout, what="delivery of %s" % marker)


def smtp_client(proxy, name, c, certs):
    port = proxy.port(name)
    if c == "implicit":
        return smtplib.SMTP_SSL("127.0.0.1", port, local_hostname="client.test",
                                context=client_ctx(certs), timeout=15)
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=15)
    if c == "starttls":
        s.starttls(context=client_ctx(certs))
    return s


def imap_client(proxy, name, c, certs):
    port = proxy.port(name)
    if c == "implicit":
        return imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=client_ctx(certs),
                                 timeout=15)
    m = imaplib.IMAP4("127.0.0.1", port, timeout=15)
    if c == "starttls":
        m.starttls(ssl_context=client_ctx(certs))
    return m


def pop3_client(proxy, name, c, certs):
    port = proxy.port(name)
    if c == "implicit":
        return poplib.POP3_SSL("127.0.0.1", port, context=client_ctx(certs), timeout=15)
    p = poplib.POP3("127.0.0.1", port, timeout=15)
    if c == "starttls":
        p.stls(context=client_ctx(certs))
    return p


def dovecot_login_seen(servers, port, secured, count_before):
    log = os.path.join(servers["run"], "log", "dovecot-%s.log" %
                       ("plain" if secured == "secured" else "tls"))
    pattern = r"Login: user=<alice>.* lport=%d,.* %s," % (port, secured)

    def seen():
        with open(log) as f:
            return len(re.findall(pattern, f.read())) > count_before
    return wait_for(seen, what="dovecot login on port %d" % port)


def dovecot_logins(servers, port, secured):
    log = os.path.join(servers["run"], "log", "dovecot-%s.log" %
                       ("plain" if secured == "secured" else "tls"))
    with open(log) as f:
        return len(re.findall(r"Login: user=<alice>.* lport=%d,.* %s," % (port, secured),
                              f.read()))


# ---- the matrix -------------------------------------------------------------

@pytest.mark.parametrize("c,u", COMBOS)
def test_smtp_matrix(servers, matrix_proxy, certs, c, u):
    marker = "matrix-smtp-%s-%s-%s" % (c, u, uuid.uuid4().hex[:8])
    msg = ("From: bob@mail.test\r\nTo: alice@mail.test\r\nSubject: %s\r\n\r\n"
           "body line\r\n.leading dot\r\n" % marker).encode()
    with smtp_client(matrix_proxy, svc_name("smtp", c, u), c, certs) as s:
        s.login(servers["user"], servers["password"])
        s.sendmail("bob@mail.test", ["alice@mail.test"], msg)
    data = delivered(servers, marker)
    # Postfix's own Received header says how the proxy arrived, and on which
    # listener (syslog_name) the queue id was taken.
    received = [h for h in email.message_from_bytes(data).get_all("Received")
                if "(Postfix)" in h][0]
    assert ("with ESMTPSA" if u != "none" else "with ESMTPA") in received
    qid = re.search(r" id ([0-9A-F]+)", received).group(1)
    listener = {"none": "plain", "implicit": "smtps", "starttls": "submission"}[u]
    with open(os.path.join(servers["run"], "log", "postfix.log")) as f:
        assert re.search(r"postfix-test/%s/smtpd\[\d+\]: %s: client=" % (listener, qid),
                         f.read())
    # Dot-stuffing undone exactly once (Maildir keeps LF line ends).
    body = data.replace(b"\r\n", b"\n")
    assert b"\nbody line\n.leading dot\n" in body and b"..leading" not in body


@pytest.mark.parametrize("c,u", COMBOS)
def test_imap_matrix(servers, matrix_proxy, certs, c, u):
    port = servers["ports"][UPSTREAM_PORT["imap"][u]]
    secured = "TLS" if u != "none" else "secured"
    before = dovecot_logins(servers, port, secured)
    m = imap_client(matrix_proxy, svc_name("imap", c, u), c, certs)
    m.login(servers["user"], servers["password"])
    typ, data = m.select("INBOX", readonly=True)
    assert typ == "OK"
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    assert data[0][1] == mailsys.SEED          # byte-identical
    m.logout()
    dovecot_login_seen(servers, port, secured, before)


@pytest.mark.parametrize("c,u", COMBOS)
def test_pop3_matrix(servers, matrix_proxy, certs, c, u):
    port = servers["ports"][UPSTREAM_PORT["pop3"][u]]
    secured = "TLS" if u != "none" else "secured"
    before = dovecot_logins(servers, port, secured)
    p = pop3_client(matrix_proxy, svc_name("pop3", c, u), c, certs)
    p.user(servers["user"])
    p.pass_(servers["password"])
    resp, lines, octets = p.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == mailsys.SEED
    p.quit()
    dovecot_login_seen(servers, port, secured, before)


# ---- real outcomes beyond the matrix ----------------------------------------

def test_wrong_password_gets_the_servers_refusal(servers, matrix_proxy, certs):
    with smtp_client(matrix_proxy, "smtp-implicit-starttls", "implicit", certs) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login(servers["user"], "wrong")
        assert e.value.smtp_code == 535
    m = imap_client(matrix_proxy, "imap-implicit-starttls", "implicit", certs)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        m.login(servers["user"], "wrong")
    p = pop3_client(matrix_proxy, "pop3-starttls-implicit", "starttls", certs)
    p.user(servers["user"])
    with pytest.raises(poplib.error_proto, match="-ERR"):
        p.pass_("wrong")


def test_client_sees_the_proxys_certificate(servers, matrix_proxy, certs):
    import socket
    raw = socket.create_connection(("127.0.0.1", matrix_proxy.port("imap-implicit-implicit")))
    s = client_ctx(certs).wrap_socket(raw, server_hostname="localhost")
    subject = dict(x[0] for x in s.getpeercert()["subject"])
    assert subject["commonName"] == "localhost"      # the proxy's, not mail.test
    s.close()


def test_imap_idle_gets_new_mail_push(servers, matrix_proxy, certs):
    m = imap_client(matrix_proxy, "imap-implicit-starttls", "implicit", certs)
    m.login(servers["user"], servers["password"])
    m.select("INBOX")
    tag = m._new_tag().decode()
    m.send(("%s IDLE\r\n" % tag).encode())
    assert m.readline().startswith(b"+ ")
    marker = "idle-%s" % uuid.uuid4().hex[:8]
    # New mail arrives through Postfix directly, not through the proxy.
    ctx = ssl.create_default_context(cafile=servers["ca"])
    with smtplib.SMTP("127.0.0.1", servers["ports"]["smtp_submission"],
                      local_hostname="c.test", timeout=10) as s:
        s.starttls(context=ctx)
        s.login(servers["user"], servers["password"])
        s.sendmail("bob@mail.test", ["alice@mail.test"],
                   ("Subject: %s\r\n\r\npush\r\n" % marker).encode())
    m.sock.settimeout(20)
    line = m.readline()
    while b"EXISTS" not in line:
        line = m.readline()
    assert re.match(rb"\* \d+ EXISTS", line)
    m.send(b"DONE\r\n")
    m.logout()


def test_multi_mib_append_then_retr(servers, matrix_proxy, certs):
    marker = "big-%s" % uuid.uuid4().hex[:8]
    body = b"".join(b"%08d %s\r\n" % (i, os.urandom(24).hex().encode())
                    for i in range(70000))            # ~4.6 MiB
    msg = ("From: bob@mail.test\r\nTo: alice@mail.test\r\nSubject: %s\r\n\r\n"
           % marker).encode() + body
    m = imap_client(matrix_proxy, "imap-starttls-starttls", "starttls", certs)
    m.login(servers["user"], servers["password"])
    typ, data = m.append("INBOX", None, None, msg)
    assert typ == "OK"
    m.logout()
    p = pop3_client(matrix_proxy, "pop3-implicit-starttls", "implicit", certs)
    p.user(servers["user"])
    p.pass_(servers["password"])
    count = p.stat()[0]
    found = None
    for i in range(count, 0, -1):
        lines = p.retr(i)[1]
        data = b"\r\n".join(lines) + b"\r\n"
        if marker.encode() in data[:300]:
            found = data
            break
    p.quit()
    assert found == msg


# ---- real CLI clients ---------------------------------------------------------

def test_curl_smtps_and_imaps(servers, matrix_proxy, certs, tmp_path):
    marker = "curl-%s" % uuid.uuid4().hex[:8]
    msg = tmp_path / "m.eml"
    msg.write_bytes(("From: bob@mail.test\r\nTo: alice@mail.test\r\nSubject: %s\r\n\r\n"
                     "via curl\r\n" % marker).encode())
    port = matrix_proxy.port("smtp-implicit-starttls")
    r = subprocess.run(["curl", "-sS", "--ssl-reqd", "--cacert", certs + "/ca.crt",
                        "--resolve", "localhost:%d:127.0.0.1" % port,
                        "smtps://localhost:%d" % port, "--user", "alice:secret",
                        "--mail-from", "bob@mail.test", "--mail-rcpt", "alice@mail.test",
                        "-T", str(msg)], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    delivered(servers, marker)
    port = matrix_proxy.port("imap-implicit-starttls")
    r = subprocess.run(["curl", "-sS", "--ssl-reqd", "--cacert", certs + "/ca.crt",
                        "--resolve", "localhost:%d:127.0.0.1" % port,
                        "imaps://localhost:%d/INBOX;MAILINDEX=1" % port,
                        "--user", "alice:secret"], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == mailsys.SEED


def test_curl_pop3_starttls_required(servers, matrix_proxy, certs):
    port = matrix_proxy.port("pop3-starttls-none")
    r = subprocess.run(["curl", "-sS", "--ssl-reqd", "--cacert", certs + "/ca.crt",
                        "--resolve", "localhost:%d:127.0.0.1" % port,
                        "pop3://localhost:%d/1" % port, "--user", "alice:secret"],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == mailsys.SEED


def test_swaks_starttls_with_auth(servers, matrix_proxy, certs, tmp_path):
    marker = "swaks-%s" % uuid.uuid4().hex[:8]
    port = matrix_proxy.port("smtp-starttls-none")
    peer = tmp_path / "peer.pem"
    r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % port, "--tls",
                        "--tls-verify", "--tls-ca-path", certs + "/ca.crt",
                        "--tls-get-peer-cert", str(peer),
                        "--auth", "PLAIN", "--auth-user", "alice", "--auth-password",
                        "secret", "--from", "bob@mail.test", "--to", "alice@mail.test",
                        "--header", "Subject: %s" % marker, "--helo", "client.test"],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    delivered(servers, marker)
    # swaks checks the chain, not the name (recipe): check the name ourselves.
    chk = subprocess.run(["openssl", "x509", "-in", str(peer), "-noout", "-checkhost",
                          "localhost"], capture_output=True, text=True)
    assert "does match" in chk.stdout


@pytest.mark.parametrize("protocol,name", [("smtp", "smtp-starttls-implicit"),
                                           ("imap", "imap-starttls-starttls"),
                                           ("pop3", "pop3-starttls-none")])
def test_openssl_s_client_starttls_verifies(servers, matrix_proxy, certs, protocol, name):
    r = subprocess.run(["openssl", "s_client", "-starttls", protocol, "-connect",
                        "127.0.0.1:%d" % matrix_proxy.port(name), "-CAfile",
                        certs + "/ca.crt", "-verify_hostname", "localhost",
                        "-verify_return_error", "-brief", "-nocommands"],
                       input=b"", capture_output=True, timeout=20)
    assert b"Verification: OK" in r.stderr, r.stderr


def test_dash_T_dials_every_upstream(servers, certs, tmp_path):
    """mailproxy -T: the configured dialogue against the real servers."""
    from helpers import BIN
    text = ""
    for protocol in ("smtp", "imap", "pop3"):
        for u in MODES:
            text += ("[%s-%s]\nprotocol = %s\nlisten = 127.0.0.1:0\nclient_tls = %s\n"
                     "upstream = 127.0.0.1:%d\nupstream_tls = %s\n"
                     % (protocol, u, protocol, "none" if u != "none" else "implicit",
                        servers["ports"][UPSTREAM_PORT[protocol][u]], u))
            if u == "none":
                text += "cert = %s/server-ecdsa.crt\nkey = %s/server-ecdsa.key\n" % (
                    certs, certs)
            else:
                text += "upstream_name = mail.test\nupstream_ca = %s/ca.crt\n" % certs
    f = tmp_path / "t.ini"
    f.write_text(text)
    r = subprocess.run([BIN, "-T", "-c", str(f)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "configuration OK" and len(lines) == 10
    assert all(": ok upstream=" in l for l in lines[1:])
    assert re.search(r"smtp-starttls: ok .*tls=TLSv1\.3/\S+ verify=ok caps=\".*AUTH PLAIN",
                     r.stdout)
    assert re.search(r"imap-starttls: ok .*verify=ok caps=\".*AUTH=PLAIN", r.stdout)
    assert re.search(r"pop3-implicit: ok .*verify=ok caps=\".*USER", r.stdout)


def test_proxy_protocol_out_shows_the_client_to_dovecot(servers, certs, proxies):
    """proxy_protocol_out = v2 before STARTTLS: Dovecot (haproxy = yes, which
    refuses connections without a header) logs the original client address,
    and the login over TLS succeeds."""
    import socket
    proxy = proxies("[pp]\nprotocol = imap\nlisten = 127.0.0.1:0\nclient_tls = implicit\n"
                    "cert = %s/server-ecdsa.crt\nkey = %s/server-ecdsa.key\n"
                    "upstream = 127.0.0.1:%d\nupstream_tls = starttls\n"
                    "upstream_name = mail.test\nupstream_ca = %s/ca.crt\n"
                    "proxy_protocol_out = v2\n"
                    % (certs, certs, servers["ports"]["imap_haproxy"], certs))
    raw = socket.socket()
    raw.bind(("127.0.0.9", 0))
    raw.settimeout(15)
    raw.connect(("127.0.0.1", proxy.port("pp")))
    s = client_ctx(certs).wrap_socket(raw, server_hostname="localhost")
    f = s.makefile("rb")
    assert f.readline().startswith(b"* OK [CAPABILITY ")
    s.sendall(b"a LOGIN alice secret\r\n")
    line = f.readline()
    while not line.startswith(b"a "):
        line = f.readline()
    assert line.startswith(b"a OK"), line
    s.sendall(b"b LOGOUT\r\n")
    s.close()
    log = os.path.join(servers["run"], "log", "dovecot-tls.log")
    # Dovecot takes both ends from the header: the client (rip) and the
    # address it connected to (lport = the proxy's listener).
    wait_for(lambda: re.search(r"Login: user=<alice>.* rip=127\.0\.0\.9, .*lport=%d,.* TLS,"
                               % proxy.port("pp"), open(log).read()),
             what="dovecot login from 127.0.0.9 through the PROXY listener")
