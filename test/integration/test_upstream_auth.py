"""upstream_auth: the proxy logs in to the upstream for devices that cannot.

Real Postfix (its submission port: STARTTLS, then AUTH through Dovecot SASL;
its SMTPS port) is the upstream for PLAIN and LOGIN.  Postfix relays only
for authenticated clients here (permit_sasl_authenticated, reject), so a
delivered message, with "ESMTPSA" in the Received line Postfix wrote, is
the proof the proxy's login worked.  XOAUTH2 has no server in Debian: a
scripted implicit-TLS upstream checks the SASL string byte for byte.

Every test greps the proxy's debug log for the secret in clear and in the
base64 forms that cross the wire."""

import base64
import os
import re
import smtplib
import socket
import subprocess
import threading
import time
import uuid

import pytest

from fakemail import take_mail
from helpers import BIN, ROOT, client_ctx, server_ctx, site_config, wait_for
from test_real_servers import delivered

pytestmark = pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1")

WRONG = "not-the-password-7f3a"


def secret_forms(secret, user="alice"):
    """The secret as it could leak: raw and in every SASL encoding used."""
    raw = secret.encode()
    return [raw, base64.b64encode(raw),
            base64.b64encode(b"\0" + user.encode() + b"\0" + raw),
            base64.b64encode(b"user=" + user.encode() + b"\x01auth=Bearer " + raw + b"\x01\x01")]


def assert_secret_not_logged(proxy, secret):
    log = proxy.log().encode()
    for form in secret_forms(secret):
        assert form not in log, "secret leaked into the log as %r" % form


def private_file(tmp_path, name, text, mode=0o600):
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def auth_service(name, port, upstream_tls, mech, secret_file, certs,
                 client_tls="none", extra=""):
    key = "upstream_token_file" if mech == "xoauth2" else "upstream_password_file"
    text = ("[%s]\nprotocol = smtp\nlisten = 127.0.0.1:0\nclient_tls = %s\n"
            "upstream = 127.0.0.1:%d\nupstream_tls = %s\nupstream_name = mail.test\n"
            "upstream_ca = %s/ca.crt\nupstream_auth = %s\nupstream_user = alice\n"
            "%s = %s\nallow = 127.0.0.0/8\nehlo_name = gw.test\n%s\n"
            % (name, client_tls, port, upstream_tls, certs, mech, key, secret_file, extra))
    if client_tls != "none":
        text += "cert = %s/server-ecdsa.crt\nkey = %s/server-ecdsa.key\n" % (certs, certs)
    return text


def send_marked(s, marker):
    s.sendmail("scanner@office.test", ["alice@mail.test"],
               ("From: scanner@office.test\r\nTo: alice@mail.test\r\n"
                "Subject: %s\r\n\r\nscan attached\r\n" % marker).encode())


# ---- real Postfix: PLAIN and LOGIN ----------------------------------------


@pytest.fixture(scope="module")
def postfix_proxy(servers, certs, tmp_path_factory):
    """One proxy, one service per (mechanism, upstream mode, client mode)."""
    from helpers import Proxy
    d = tmp_path_factory.mktemp("auth")
    pw = private_file(d, "pw", servers["password"] + "\n")
    text = "log_level = debug\n"
    for mech in ("plain", "login"):
        for up, port in (("starttls", "smtp_submission"), ("implicit", "smtp_smtps")):
            text += auth_service("%s-%s" % (mech, up), servers["ports"][port], up,
                                 mech, pw, certs)
    text += auth_service("starttls-client", servers["ports"]["smtp_submission"],
                         "starttls", "plain", pw, certs, client_tls="starttls")
    text += auth_service("implicit-client", servers["ports"]["smtp_submission"],
                         "starttls", "login", pw, certs, client_tls="implicit")
    p = Proxy(str(d), text)
    yield p
    p.stop()
    assert_secret_not_logged(p, servers["password"])
    assert "runtime error:" not in p.log() and "AddressSanitizer" not in p.log()


@pytest.mark.parametrize("mech", ["plain", "login"])
@pytest.mark.parametrize("upstream_tls", ["starttls", "implicit"])
def test_device_without_auth_sends_through_real_postfix(postfix_proxy, servers, mech,
                                                        upstream_tls):
    name = "%s-%s" % (mech, upstream_tls)
    marker = "scan-" + uuid.uuid4().hex
    s = smtplib.SMTP("127.0.0.1", postfix_proxy.port(name), local_hostname="mfp.test",
                     timeout=15)
    code, _ = s.ehlo()
    assert code == 250
    # The device is shown the provider's keywords, but no AUTH, no STARTTLS.
    assert "auth" not in s.esmtp_features and "starttls" not in s.esmtp_features
    assert "pipelining" in s.esmtp_features and "size" in s.esmtp_features
    send_marked(s, marker)
    s.quit()
    msg = delivered(servers, marker)
    # Postfix saw an authenticated (A) client over TLS (S).
    assert re.search(rb"by mail\.test \(Postfix\) with ESMTPSA", msg), msg[:600]
    postfix_proxy.wait_log(r"svc=%s event=upstream-auth-ok user=alice mech=%s" % (name, mech))
    assert_secret_not_logged(postfix_proxy, servers["password"])


def test_device_auth_is_answered_locally(postfix_proxy, servers):
    """Dummy credentials configured on the device: accepted by the proxy,
    never sent on (Postfix would answer 503: already authenticated)."""
    marker = "dummy-" + uuid.uuid4().hex
    s = smtplib.SMTP("127.0.0.1", postfix_proxy.port("plain-starttls"), timeout=15)
    s.ehlo("mfp.test")
    assert s.docmd("AUTH", "LOGIN") == (334, b"VXNlcm5hbWU6")
    assert s.docmd(base64.b64encode(b"scanner").decode()) == (334, b"UGFzc3dvcmQ6")
    assert s.docmd(base64.b64encode(b"1234").decode()) == \
        (235, b"2.7.0 Authentication successful")
    assert s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0x\0y").decode())[0] == 503
    send_marked(s, marker)
    s.quit()
    assert b"ESMTPSA" in delivered(servers, marker)


def test_swaks_pipelines_through(postfix_proxy, servers):
    """swaks as the device, PIPELINING: MAIL, RCPT, DATA in one write."""
    marker = "swaks-" + uuid.uuid4().hex
    r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % postfix_proxy.port("login-starttls"),
                        "--to", "alice@mail.test", "--from", "scanner@office.test",
                        "--header", "Subject: " + marker, "--pipeline", "-n"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert b"ESMTPSA" in delivered(servers, marker)


@pytest.mark.parametrize("name,ctx_kind", [("starttls-client", "starttls"),
                                           ("implicit-client", "implicit")])
def test_device_over_tls_and_second_starttls_refused(postfix_proxy, servers, certs, name,
                                                     ctx_kind):
    marker = "tls-device-" + uuid.uuid4().hex
    port = postfix_proxy.port(name)
    if ctx_kind == "implicit":
        s = smtplib.SMTP_SSL("127.0.0.1", port, context=client_ctx(certs), timeout=15)
    else:
        s = smtplib.SMTP("127.0.0.1", port, timeout=15)
        s.starttls(context=client_ctx(certs))
    s.ehlo("mfp.test")
    assert "auth" not in s.esmtp_features and "starttls" not in s.esmtp_features
    # Never TLS in TLS: STARTTLS inside the device's TLS is refused.
    code, text = s.docmd("STARTTLS")
    assert code == 554 and b"TLS already active" in text
    send_marked(s, marker)
    s.quit()
    assert b"ESMTPSA" in delivered(servers, marker)


def test_refused_login_fails_the_session_and_names_why(proxies, servers, certs, tmp_path):
    from helpers import free_port
    from test_metrics import scrape, value
    pw = private_file(tmp_path, "pw", WRONG + "\n")
    mport = free_port()
    proxy = proxies("log_level = debug\nmetrics = 127.0.0.1:%d\n" % mport + auth_service(
        "a", servers["ports"]["smtp_submission"], "starttls", "plain", pw, certs))
    with pytest.raises(smtplib.SMTPConnectError) as e:
        smtplib.SMTP("127.0.0.1", proxy.port("a"), timeout=15)
    wait_for(lambda: value(scrape(mport), "mailproxy_sessions_ended_total", service="a",
                           outcome="upstream-auth-failed") == 1,
             what="the outcome counted in /metrics")
    # A temporary error: the device retries later; nothing was accepted.
    assert e.value.smtp_code == 421 and b"4.7.0" in e.value.smtp_error
    line = proxy.wait_log(r"event=upstream-failed reason=upstream-auth-refused "
                          r"detail=\"upstream said \\\"535 5\.7\.8[^\n]*")[0]
    assert "state auth" in line
    assert_secret_not_logged(proxy, WRONG)


def test_password_file_is_reread_on_reload(proxies, servers, certs, tmp_path):
    """Read at load and at reload: fixing the file + SIGHUP fixes sessions;
    a reload with a world-readable file fails and keeps the old config."""
    pw = private_file(tmp_path, "pw", WRONG + "\n")
    proxy = proxies(auth_service("a", servers["ports"]["smtp_submission"], "starttls",
                                 "login", pw, certs))
    with pytest.raises(smtplib.SMTPConnectError):
        smtplib.SMTP("127.0.0.1", proxy.port("a"), timeout=15)
    private_file(tmp_path, "pw", servers["password"] + "\n")
    proxy.reload()
    s = smtplib.SMTP("127.0.0.1", proxy.port("a"), timeout=15)
    assert s.noop()[0] == 250
    s.quit()
    os.chmod(pw, 0o644)
    proxy.reload()
    assert re.search(r"reload failed.*\n?.*readable by everyone", proxy.log()), proxy.log()
    s = smtplib.SMTP("127.0.0.1", proxy.port("a"), timeout=15)  # old config serves
    assert s.noop()[0] == 250
    s.quit()
    assert_secret_not_logged(proxy, servers["password"])


def run_check(args):
    return subprocess.run([BIN] + args, capture_output=True, text=True, timeout=60)


def test_probe_tries_the_login(servers, certs, tmp_path):
    good = private_file(tmp_path, "good", servers["password"] + "\n")
    bad = private_file(tmp_path, "bad", WRONG + "\n")
    port = servers["ports"]["smtp_submission"]
    cfg = os.path.join(str(tmp_path), "t.ini")
    with open(cfg, "w") as f:
        f.write(auth_service("ok", port, "starttls", "plain", good, certs) +
                auth_service("wrong", port, "starttls", "login", bad, certs))
    r = run_check(["-T", "-c", cfg])
    assert r.returncode != 0
    assert re.search(r"^ok: ok upstream=\S+ tls=TLSv1\.3/\S+ verify=ok auth=plain "
                     r"caps=\"PIPELINING [^\"]*\" pin=sha256/\S+$", r.stdout, re.M), r.stdout
    assert "AUTH" not in re.search(r"^ok: .*$", r.stdout, re.M).group(0)
    assert re.search(r"^wrong: .*upstream-auth-refused.*535", r.stdout + r.stderr, re.M), \
        r.stdout + r.stderr
    for form in secret_forms(servers["password"]) + secret_forms(WRONG):
        assert form.decode(errors="replace") not in r.stdout + r.stderr


@pytest.mark.parametrize("allow,message", [
    ("", r"cfg\.ini:\d+: \[a\]: upstream_auth makes this listener a relay logged in as alice"),
    ("allow = 0.0.0.0/0", r"cfg\.ini:\d+: \[a\]: allow covers the whole internet"),
])
def test_allow_is_required(certs, tmp_path, allow, message):
    pw = private_file(tmp_path, "pw", "x\n")
    text = auth_service("a", 587, "starttls", "plain", pw, certs).replace(
        "allow = 127.0.0.0/8\n", allow + "\n")
    cfg = os.path.join(str(tmp_path), "cfg.ini")
    with open(cfg, "w") as f:
        f.write(text)
    r = run_check(["-t", "-c", cfg])
    assert r.returncode != 0 and re.search(message, r.stderr), r.stderr


def test_world_readable_password_file_is_refused(certs, tmp_path):
    pw = private_file(tmp_path, "pw", "x\n", mode=0o644)
    cfg = os.path.join(str(tmp_path), "cfg.ini")
    with open(cfg, "w") as f:
        f.write(auth_service("a", 587, "starttls", "plain", pw, certs))
    r = run_check(["-t", "-c", cfg])
    assert r.returncode != 0
    assert re.search(r"cfg\.ini:\d+: upstream_password_file: \S+ is readable by everyone "
                     r"\(mode 0644\)", r.stderr), r.stderr


def test_device_outside_allow_gets_nothing(proxies, servers, certs, tmp_path):
    """The relay is only for the listed devices: 127.0.0.2 is not one."""
    pw = private_file(tmp_path, "pw", servers["password"] + "\n")
    proxy = proxies(auth_service("a", servers["ports"]["smtp_submission"], "starttls",
                                 "plain", pw, certs).replace("allow = 127.0.0.0/8",
                                                             "allow = 127.0.0.1"))
    s = socket.socket()
    s.bind(("127.0.0.2", 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", proxy.port("a")))
    data = s.recv(1024)
    s.close()
    assert data == b""                          # closed at accept, not a byte said
    proxy.wait_log(r"event=refused svc=a client=127\.0\.0\.2:\d+ reason=not-allowed")
    assert "upstream-auth-ok" not in proxy.log()


# ---- scripted XOAUTH2 upstream (implicit TLS) --------------------------------


class OAuthBox:
    def __init__(self):
        self.valid = set()
        self.sasl = []
        self.messages = []
        self.lock = threading.Lock()


XOAUTH2_ERROR = base64.b64encode(b'{"status":"401","schemes":"bearer",'
                                 b'"scope":"https://mail.example/"}')


def xoauth2_upstream(box):
    """Accepts AUTH XOAUTH2 only with a token in box.valid; then takes mail."""
    def handler(conn):
        f = conn.makefile("rb")
        conn.sendall(b"220 mail.test ESMTP scripted-oauth\r\n")
        if not f.readline().upper().startswith(b"EHLO "):
            return
        conn.sendall(b"250-mail.test\r\n250-PIPELINING\r\n250-AUTH LOGIN XOAUTH2\r\n"
                     b"250 8BITMIME\r\n")
        parts = f.readline().rstrip(b"\r\n").split(b" ")
        if parts[:2] != [b"AUTH", b"XOAUTH2"] or len(parts) != 3:
            conn.sendall(b"504 5.5.4 unexpected\r\n")
            return
        raw = base64.b64decode(parts[2])
        with box.lock:
            box.sasl.append(raw)
        m = re.fullmatch(rb"user=alice\x01auth=Bearer ([^\x01]+)\x01\x01", raw)
        if not m or m.group(1).decode() not in box.valid:
            conn.sendall(b"334 " + XOAUTH2_ERROR + b"\r\n")
            if f.readline() == b"\r\n":
                conn.sendall(b"535 5.7.8 Username and Password not accepted\r\n")
            return
        conn.sendall(b"235 2.7.0 Accepted\r\n")
        take_mail(conn, f, box.messages, box.lock)
    return handler


@pytest.fixture
def oauth(upstreams, certs):
    box = OAuthBox()
    up = upstreams(xoauth2_upstream(box), tls_ctx=server_ctx(certs, "upstream"))
    return box, up


def write_token(path, token):
    """As a refresher would: a new file renamed over the old one."""
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(token + "\n")
    os.chmod(tmp, 0o600)
    os.rename(tmp, path)


def send_one(port, marker):
    s = smtplib.SMTP("127.0.0.1", port, timeout=15)
    s.ehlo("mfp.test")
    assert "auth" not in s.esmtp_features
    send_marked(s, marker)
    s.quit()


def test_xoauth2_token_is_reread_for_every_session(proxies, oauth, certs, tmp_path):
    box, up = oauth
    token = os.path.join(str(tmp_path), "token")
    write_token(token, "ya29.first-token")
    box.valid = {"ya29.first-token", "ya29.second-token"}
    proxy = proxies("log_level = debug\n" + auth_service("o", up.port, "implicit", "xoauth2",
                                                         token, certs))
    send_one(proxy.port("o"), "first")
    write_token(token, "ya29.second-token")     # rotated; no reload
    send_one(proxy.port("o"), "second")
    assert box.sasl == [b"user=alice\x01auth=Bearer ya29.first-token\x01\x01",
                        b"user=alice\x01auth=Bearer ya29.second-token\x01\x01"]
    assert [b"Subject: first" in m for m in box.messages] == [True, False]
    assert b"Subject: second" in box.messages[1]
    assert "event=reload" not in proxy.log()
    for t in ("ya29.first-token", "ya29.second-token"):
        assert_secret_not_logged(proxy, t)


def test_xoauth2_refusal_is_logged_with_the_servers_reason(proxies, oauth, certs, tmp_path):
    box, up = oauth
    token = os.path.join(str(tmp_path), "token")
    write_token(token, "ya29.expired")
    proxy = proxies("log_level = debug\n" + auth_service("o", up.port, "implicit", "xoauth2",
                                                         token, certs))
    with pytest.raises(smtplib.SMTPConnectError) as e:
        smtplib.SMTP("127.0.0.1", proxy.port("o"), timeout=15)
    assert e.value.smtp_code == 421
    line = proxy.wait_log(r"event=upstream-failed reason=upstream-auth-refused[^\n]*")[0]
    assert "535 5.7.8" in line and "'status':'401'" in line, line
    assert box.messages == []
    assert_secret_not_logged(proxy, "ya29.expired")


def test_missing_token_file_at_session_time(proxies, oauth, certs, tmp_path):
    box, up = oauth
    token = os.path.join(str(tmp_path), "token")
    write_token(token, "ya29.first-token")
    proxy = proxies(auth_service("o", up.port, "implicit", "xoauth2", token, certs))
    os.unlink(token)
    with pytest.raises(smtplib.SMTPConnectError) as e:
        smtplib.SMTP("127.0.0.1", proxy.port("o"), timeout=15)
    assert e.value.smtp_code == 421
    proxy.wait_log(r"reason=upstream-auth-no-token detail=\"cannot open \S+token: "
                   r"No such file")
    assert box.sasl == []


# ---- the README recipe, as written ------------------------------------------


def recipe_config(servers, certs, pw):
    """config/scan-to-email.ini with only the site-specific values replaced:
    addresses, the provider (the real Postfix), the account, the files."""
    with open(os.path.join(ROOT, "config", "scan-to-email.ini")) as f:
        text = f.read()
    site = {
        "listen": "127.0.0.1:0",
        "upstream": "127.0.0.1:%d\nupstream_name = mail.test\nupstream_ca = %s/ca.crt"
                    % (servers["ports"]["smtp_submission"], certs),
        "upstream_user": "alice",
        "upstream_password_file": pw,
        "allow": "127.0.0.1",
        "cert": certs + "/server-ecdsa.crt",
        "key": certs + "/server-ecdsa.key",
    }
    return site_config(text, site)


def test_readme_recipe_scan_to_email(proxies, servers, certs, tmp_path):
    pw = private_file(tmp_path, "scanner.password", servers["password"] + "\n", 0o640)
    text = recipe_config(servers, certs, pw)
    cfg = os.path.join(str(tmp_path), "scan-to-email.ini")
    with open(cfg, "w") as f:
        f.write(text)
    # The README's check: -T dials the provider and logs in.
    r = run_check(["-T", "-c", cfg])
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^scan-to-email: ok .* auth=login ", r.stdout, re.M), r.stdout
    proxy = proxies(text)
    # The README's test mail, as the MFP would send it (swaks, no AUTH).
    marker = "recipe-" + uuid.uuid4().hex
    r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % proxy.port("scan-to-email"),
                        "--from", "scanner@example.com", "--to", "alice@mail.test",
                        "--header", "Subject: test from the MFP " + marker],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert b"ESMTPSA" in delivered(servers, marker)
    # The TLS 1.0-only MFP on the second listener.
    from test_limits import legacy_ctx
    import ssl
    marker = "tls10-" + uuid.uuid4().hex
    s = smtplib.SMTP_SSL("127.0.0.1", proxy.port("scan-to-email-tls10"),
                         context=legacy_ctx(certs, ssl.TLSVersion.TLSv1), timeout=15)
    assert s.sock.version() == "TLSv1"
    s.ehlo("mfp.test")
    send_marked(s, marker)
    s.quit()
    assert b"ESMTPSA" in delivered(servers, marker)
    proxy.wait_log(r"svc=scan-to-email-tls10 event=legacy-tls client=127\.0\.0\.1")
    assert_secret_not_logged(proxy, servers["password"])


def test_device_that_never_sends_mail_is_cut_at_negotiation_timeout(proxies, oauth, certs,
                                                                      tmp_path):
    box, up = oauth
    token = os.path.join(str(tmp_path), "token")
    write_token(token, "ya29.first-token")
    box.valid = {"ya29.first-token"}
    proxy = proxies(auth_service("o", up.port, "implicit", "xoauth2", token, certs,
                                 extra="negotiation_timeout = 1"))
    s = socket.create_connection(("127.0.0.1", proxy.port("o")), timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220 gw.test ESMTP ready")
    s.sendall(b"EHLO mfp.test\r\n")
    while f.readline()[3:4] != b" ":
        pass
    started = time.monotonic()
    assert f.readline() == b"421 4.4.2 Timeout: closing connection\r\n"
    assert f.readline() == b""
    assert 0.5 < time.monotonic() - started < 5
    proxy.wait_log(r"state=farewell reason=client-negotiation-timeout")
    assert box.messages == []


def test_long_pipeline_before_mail_is_answered_in_order(proxies, oauth, certs, tmp_path):
    """3000 NOOPs, then MAIL/RCPT/DATA, in one write: every local reply comes
    first, in order, then the upstream's (no stall on replies held back)."""
    box, up = oauth
    token = os.path.join(str(tmp_path), "token")
    write_token(token, "ya29.first-token")
    box.valid = {"ya29.first-token"}
    proxy = proxies(auth_service("o", up.port, "implicit", "xoauth2", token, certs))
    s = socket.create_connection(("127.0.0.1", proxy.port("o")), timeout=15)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220 ")
    n = 3000
    s.sendall(b"NOOP\r\n" * n + b"MAIL FROM:<mfp@office.test>\r\nRCPT TO:<a@mail.test>\r\n"
              b"DATA\r\n")
    for _ in range(n):
        assert f.readline() == b"250 2.0.0 OK\r\n"
    assert f.readline().startswith(b"250 2.1.0")        # MAIL, from the upstream
    assert f.readline().startswith(b"250 2.1.0")        # RCPT
    assert f.readline().startswith(b"354 ")
    s.sendall(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert f.readline().startswith(b"250 2.0.0")
    assert f.readline().startswith(b"221")
    assert box.messages == [b"Subject: pipelined\r\n\r\nbody\r\n"]
