"""oauth2_token_store: the proxy owns the OAuth2 token lifecycle.

A scripted OAuth2 server over TLS (oauth2server.py) issues access tokens
that live a few seconds and rotates the refresh token on every refresh; a
scripted implicit-TLS SMTP upstream accepts AUTH XOAUTH2 / OAUTHBEARER only
with a token that server issued and that has not expired yet.  No real
provider is reachable from tests, and no Debian mail server speaks XOAUTH2
against an external authorization server out of the box.
"""

import base64
import json
import os
import re
import smtplib
import stat
import subprocess
import threading
import time
import urllib.request

import pytest

from fakemail import take_mail
from helpers import BIN, free_port, server_ctx, wait_for
from oauth2server import OAuth2Server


@pytest.fixture
def oauth(certs):
    srv = OAuth2Server(certs)
    yield srv
    srv.close()


class Mail:
    def __init__(self):
        self.lock = threading.Lock()
        self.accepted = []      # (mechanism, token)
        self.refused = []
        self.messages = []


def smtp_upstream(srv, mail):
    """Implicit TLS; AUTH XOAUTH2 or OAUTHBEARER with a valid token only."""
    def handler(conn):
        f = conn.makefile("rb")
        conn.sendall(b"220 mail.test ESMTP scripted-oauth\r\n")
        if not f.readline().upper().startswith(b"EHLO "):
            return
        conn.sendall(b"250-mail.test\r\n250-AUTH XOAUTH2 OAUTHBEARER\r\n250 8BITMIME\r\n")
        parts = f.readline().rstrip(b"\r\n").split(b" ")
        if len(parts) != 3 or parts[0] != b"AUTH":
            conn.sendall(b"504 5.5.4 unexpected\r\n")
            return
        raw = base64.b64decode(parts[2])
        if parts[1] == b"XOAUTH2":
            m = re.fullmatch(rb"user=alice\x01auth=Bearer ([^\x01]+)\x01\x01", raw)
        else:
            m = re.fullmatch(rb"n,a=alice,\x01auth=Bearer ([^\x01]+)\x01\x01", raw)
        token = m.group(1).decode() if m else None
        if token is None or not srv.valid(token):
            with mail.lock:
                mail.refused.append((parts[1], token))
            conn.sendall(b"334 eyJzdGF0dXMiOiI0MDEifQ==\r\n")
            f.readline()
            conn.sendall(b"535 5.7.8 token not accepted\r\n")
            return
        with mail.lock:
            mail.accepted.append((parts[1].decode(), token))
        conn.sendall(b"235 2.7.0 Accepted\r\n")
        take_mail(conn, f, mail.messages, mail.lock)
    return handler


@pytest.fixture
def mail(oauth, upstreams, certs):
    m = Mail()
    m.up = upstreams(smtp_upstream(oauth, m), tls_ctx=server_ctx(certs, "upstream"))
    return m


def write_store(path, refresh="rt-0", access=None, expires_at=None, mode=0o600):
    doc = {"refresh_token": refresh}
    if access:
        doc.update(access_token=access, expires_at=expires_at,
                   obtained_at=int(time.time()))
    with open(path, "w") as f:
        json.dump(doc, f)
    os.chmod(path, mode)


def config(name, mail, oauth, certs, store, mech="xoauth2", extra=""):
    return ("[%s]\nprotocol = smtp\nlisten = 127.0.0.1:0\nclient_tls = none\n"
            "upstream = 127.0.0.1:%d\nupstream_tls = implicit\n"
            "upstream_name = mail.test\nupstream_ca = %s/ca.crt\n"
            "upstream_auth = %s\nupstream_user = alice\nallow = 127.0.0.1/32\n"
            "oauth2_provider = custom\noauth2_client_id = test-client\n"
            "oauth2_token_url = %s\noauth2_device_url = %s\n"
            "oauth2_ca = %s/ca.crt\noauth2_token_store = %s\n%s"
            % (name, mail.up.port, certs, mech, oauth.token_url, oauth.device_url,
               certs, store, extra))


def send(port, marker, timeout=20):
    s = smtplib.SMTP("127.0.0.1", port, timeout=timeout)
    s.ehlo("mfp.test")
    s.sendmail("mfp@site.test", ["alice@mail.test"],
               "Subject: %s\r\n\r\nscan %s\r\n" % (marker, marker))
    s.quit()


def devices(n, act):
    """act(i) on n threads at once; the exceptions they raised."""
    errors = []

    def run(i):
        try:
            act(i)
        except Exception as e:          # noqa: BLE001 - returned to the test
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def secrets_in(text, oauth):
    """Tokens of the scripted server that appear in text."""
    with oauth.lock:
        tokens = list(oauth.issued) + ["rt-%d" % i for i in range(oauth.n + 1)]
    return [t for t in tokens if t in text or
            base64.b64encode(t.encode()).decode() in text] + \
        (["dc-secret"] if "dc-secret" in text else [])


def metric(text, name, svc):
    m = re.search(r'^%s\{service="%s"\} (-?\d+)$' % (name, svc), text, re.M)
    return int(m.group(1)) if m else None


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        return r.read().decode()


@pytest.mark.parametrize("mech", ["xoauth2", "oauthbearer"])
def test_many_devices_across_refreshes_every_message_delivered(proxies, oauth, mail,
                                                               certs, tmp_path, mech):
    store = str(tmp_path / "store.json")
    write_store(store)                  # a refresh token only: refresh at once
    mport = free_port()
    proxy = proxies("log_level = debug\nmetrics = 127.0.0.1:%d\n" % mport +
                    config("o", mail, oauth, certs, store, mech))

    def device(i):
        for k in range(6):
            send(proxy.port("o"), "dev%d-%d" % (i, k))
            time.sleep(1.0)

    assert devices(6, device) == []
    assert len(mail.messages) == 36
    assert mail.refused == []
    # 4 s tokens over the run: refreshed several times, each token used is
    # one the server issued, and the store holds the rotated refresh token.
    assert oauth.refreshes() >= 3, oauth.requests
    used = {t for _, t in mail.accepted}
    assert len(used) >= 2
    assert {m for m, _ in mail.accepted} == {mech.upper()}
    with open(store) as f:
        doc = json.load(f)
    assert doc["refresh_token"] == oauth.refresh
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
    assert not [p for p in os.listdir(str(tmp_path)) if ".tmp." in p]
    text = scrape(mport)
    assert metric(text, "mailproxy_oauth2_refreshes_total", "o") == oauth.refreshes()
    assert metric(text, "mailproxy_oauth2_refresh_failures_total", "o") == 0
    assert 0 < metric(text, "mailproxy_oauth2_token_expiry_seconds", "o") <= 4
    assert 'mailproxy_oauth2_token_state{service="o",state="valid"} 1' in text
    # Our own rewrites of the store are not a configuration change.
    assert "event=reload" not in proxy.log()
    assert secrets_in(proxy.log(), oauth) == []


def test_sessions_wait_for_the_one_refresh_in_flight(proxies, oauth, mail, certs, tmp_path):
    store = str(tmp_path / "store.json")
    write_store(store)
    oauth.delay = 1.5                   # the token endpoint is slow
    proxy = proxies(config("o", mail, oauth, certs, store))
    assert devices(8, lambda i: send(proxy.port("o"), "wait%d" % i)) == []
    assert len(mail.messages) == 8
    assert oauth.refreshes() == 1       # no stampede


def test_transient_failures_are_retried_while_the_token_serves(proxies, oauth, mail,
                                                               certs, tmp_path):
    store = str(tmp_path / "store.json")
    write_store(store)
    oauth.fail_next = 2
    mport = free_port()
    proxy = proxies("metrics = 127.0.0.1:%d\n" % mport +
                    config("o", mail, oauth, certs, store))
    lines = proxy.wait_log(r"event=oauth2-refresh-failed svc=o [^\n]*", count=2)
    assert all("HTTP 503 temporarily_unavailable" in l and "retry_in=" in l for l in lines)
    proxy.wait_log(r"event=oauth2-refreshed svc=o")
    send(proxy.port("o"), "after-retries")
    assert len(mail.messages) == 1
    assert metric(scrape(mport), "mailproxy_oauth2_refresh_failures_total", "o") == 2
    # The next refreshes fail while a valid token is held: it keeps serving.
    oauth.fail_next = 1000
    time.sleep(1.0)
    send(proxy.port("o"), "token-still-valid")
    assert len(mail.messages) == 2


def test_revoked_grant_gives_a_temporary_error_and_says_what_to_do(proxies, oauth, mail,
                                                                   certs, tmp_path):
    store = str(tmp_path / "store.json")
    write_store(store)
    oauth.revoked = True
    mport = free_port()
    proxy = proxies("metrics = 127.0.0.1:%d\n" % mport +
                    config("o", mail, oauth, certs, store))
    line = proxy.wait_log(r"event=oauth2-refresh-failed svc=o [^\n]*")[0]
    assert "invalid_grant" in line and "re-run mailproxy -A o" in line, line
    with pytest.raises(smtplib.SMTPConnectError) as e:
        smtplib.SMTP("127.0.0.1", proxy.port("o"), timeout=15)
    assert e.value.smtp_code == 421         # temporary: the device retries
    proxy.wait_log(r"reason=upstream-auth-no-token")
    assert mail.up.connections == 0         # never dialled without a token
    text = scrape(mport)
    assert 'mailproxy_oauth2_token_state{service="o",state="revoked"} 1' in text
    time.sleep(1.5)
    assert oauth.refreshes() == 1           # no retry loop against a refusal


def test_restart_reads_the_store_back(proxies, oauth, mail, certs, tmp_path):
    oauth.lifetime = 60
    store = str(tmp_path / "store.json")
    write_store(store)
    first = proxies(config("o", mail, oauth, certs, store))
    first.wait_log(r"event=oauth2-refreshed svc=o")
    send(first.port("o"), "first")
    first.stop()
    # rt-0 is dead now (rotated): only the stored rt-1 can refresh.
    with open(store) as f:
        assert json.load(f)["refresh_token"] == "rt-1" == oauth.refresh
    second = proxies(config("o", mail, oauth, certs, store), name="again")
    send(second.port("o"), "second")
    assert oauth.refreshes() == 1            # the stored access token served
    assert mail.accepted[0][1] == mail.accepted[1][1]


def run_authorize(cfg, timeout=60):
    return subprocess.run([BIN, "-c", cfg, "-A", "o"], capture_output=True, text=True,
                          timeout=timeout)


def test_device_grant_writes_the_store(oauth, mail, certs, tmp_path):
    store = str(tmp_path / "store.json")
    cfg = tmp_path / "m.ini"
    cfg.write_text(config("o", mail, oauth, certs, store))
    oauth.pending = 2
    oauth.slow_down = True
    r = run_authorize(str(cfg))
    assert r.returncode == 0, r.stderr
    assert "https://127.0.0.1/devicelogin" in r.stdout and "WDJB-MJHT" in r.stdout
    assert "authorized: %s written" % store in r.stdout
    with open(store) as f:
        doc = json.load(f)
    assert doc["refresh_token"] == oauth.refresh and oauth.valid(doc["access_token"])
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600
    # Polled at the server's interval (1 s), 5 s slower after slow_down.
    gaps = [b - a for a, b in zip(oauth.polls, oauth.polls[1:])]
    assert len(oauth.polls) == 4, oauth.polls
    assert gaps[0] >= 5.8 and all(g >= 0.9 for g in gaps), gaps
    assert "dc-secret" not in r.stdout + r.stderr


def test_device_grant_with_absurd_lifetime_and_interval(oauth, mail, certs, tmp_path):
    """A device endpoint's expires_in and interval are clamped: no signed
    overflow (UBSan) and no "valid for -153722867280912929 minutes"."""
    store = str(tmp_path / "store.json")
    cfg = tmp_path / "m.ini"
    cfg.write_text(config("o", mail, oauth, certs, store))
    oauth.device_expires_in = 2 ** 63 - 1
    oauth.interval = 2 ** 63 - 1
    p = subprocess.Popen([BIN, "-c", str(cfg), "-A", "o"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while "valid for" not in line and p.poll() is None:
            line = p.stdout.readline()
        m = re.search(r"The code is valid for (\d+) minutes", line)
        assert m and 0 < int(m.group(1)) <= 24 * 60, line
        assert p.poll() is None
    finally:
        p.kill()
        out, err = p.communicate(timeout=10)
    assert "runtime error" not in err, err
    assert "checking every 60 s" in err, err


@pytest.mark.parametrize("outcome,message", [
    ("access_denied", "the sign-in was declined"),
    ("expired_token", "the code expired before it was entered"),
])
def test_device_grant_refused(oauth, mail, certs, tmp_path, outcome, message):
    store = str(tmp_path / "store.json")
    cfg = tmp_path / "m.ini"
    cfg.write_text(config("o", mail, oauth, certs, store))
    oauth.pending = 0
    oauth.device_outcome = outcome
    r = run_authorize(str(cfg))
    assert r.returncode == 1
    assert message in r.stderr
    assert not os.path.exists(store)


def test_missing_store_then_authorized_while_running(proxies, oauth, mail, certs,
                                                      tmp_path):
    store = str(tmp_path / "store.json")
    text = "watch_files = yes\n" + config("o", mail, oauth, certs, store)
    proxy = proxies(text)
    proxy.wait_log(r"event=oauth2-no-store svc=o store=\S+: run mailproxy -A o")
    with pytest.raises(smtplib.SMTPConnectError) as e:
        smtplib.SMTP("127.0.0.1", proxy.port("o"), timeout=15)
    assert e.value.smtp_code == 421
    oauth.pending = 0
    r = run_authorize(proxy.config)
    assert r.returncode == 0, r.stderr
    proxy.wait_log(r"event=reload-ok")
    wait_for(lambda: "event=oauth2-store-read svc=o" in proxy.log(), what="store read")
    send(proxy.port("o"), "after-authorize")
    assert len(mail.messages) == 1


def test_check_shows_the_token_state(oauth, mail, certs, tmp_path):
    store = str(tmp_path / "store.json")
    cfg = tmp_path / "m.ini"
    cfg.write_text(config("o", mail, oauth, certs, store))
    r = subprocess.run([BIN, "-c", str(cfg), "-T"], capture_output=True, text=True,
                       timeout=30)
    assert "o: token store %s: missing: run mailproxy -A o" % store in r.stdout
    write_store(store, access="at-0-x", expires_at=int(time.time()) + 600)
    r = subprocess.run([BIN, "-c", str(cfg), "-T"], capture_output=True, text=True,
                       timeout=30)
    assert re.search(r"o: token store \S+: refresh token present, access token "
                     r"valid for (59\d|600) s", r.stdout), r.stdout


@pytest.mark.parametrize("change,message", [
    ("upstream_auth = xoauth2", None),
    ("upstream_auth = plain", "oauth2_provider is only used with upstream_auth = "
     "xoauth2 or oauthbearer"),
    ("oauth2_token_url = http://127.0.0.1/token", "oauth2_token_url: an https:// URL"),
    ("upstream_token_file = TOKEN", "needs exactly one of oauth2_token_store"),
    ("oauth2_token_store = /nonexistent/dir/store.json",
     "directory /nonexistent/dir is not writable"),
])
def test_config_rules(oauth, mail, certs, tmp_path, change, message):
    store = str(tmp_path / "store.json")
    text = config("o", mail, oauth, certs, store)
    key = change.split(" = ")[0]
    if key in text and key != "upstream_token_file":
        text = re.sub(r"^%s = .*$" % key, change, text, flags=re.M)
    else:
        text += change + "\n"
    if "plain" in change:
        text += "upstream_password_file = %s\n" % store
        write_store(store)
    if "TOKEN" in change:
        token = tmp_path / "token"
        token.write_text("at-from-elsewhere\n")
        token.chmod(0o600)
        text = text.replace("TOKEN", str(token))
    cfg = tmp_path / "m.ini"
    cfg.write_text(text)
    r = subprocess.run([BIN, "-c", str(cfg), "-t"], capture_output=True, text=True)
    if message is None:
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode == 1 and message in r.stderr, r.stderr
        assert re.search(r"m\.ini:\d+: ", r.stderr)


class ConnectProxy:
    """An HTTP CONNECT proxy (as a corporate network has): records each
    CONNECT target and tunnels the bytes."""

    def __init__(self):
        import socket
        self.targets = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        import socket
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(1024)
                if not chunk:
                    break
                head += chunk
            target = head.split(b" ")[1].decode()
            self.targets.append(target)
            host, port = target.rsplit(":", 1)
            up = socket.create_connection((host, int(port)))
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(2)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def test_token_requests_go_through_https_proxy(proxies, oauth, mail, certs, tmp_path):
    store = str(tmp_path / "store.json")
    write_store(store)
    tunnel = ConnectProxy()
    try:
        proxy = proxies(config("o", mail, oauth, certs, store),
                        env={"https_proxy": "http://127.0.0.1:%d" % tunnel.port,
                             "no_proxy": "example.invalid"})
        proxy.wait_log(r"event=oauth2-refreshed svc=o")
        assert tunnel.targets == ["127.0.0.1:%d" % oauth.port]
        send(proxy.port("o"), "via-proxy")
        assert len(mail.messages) == 1
        # -A goes through it too.
        cfg = tmp_path / "m.ini"
        cfg.write_text(config("o", mail, oauth, certs, str(tmp_path / "other.json")))
        oauth.pending = 0
        r = subprocess.run([BIN, "-c", str(cfg), "-A", "o"], capture_output=True,
                           text=True, timeout=60,
                           env=dict(os.environ, HTTPS_PROXY="127.0.0.1:%d" % tunnel.port))
        assert r.returncode == 0, r.stderr
        assert len(tunnel.targets) == 3      # the device request and one poll
        # A proxy URL with credentials is refused, and never logged.
        write_store(str(tmp_path / "b.json"))
        bad = proxies(config("b", mail, oauth, certs, str(tmp_path / "b.json")),
                      name="bad", env={"https_proxy": "http://alice:Pr0xyPa55@127.0.0.1:9"})
        bad.wait_log(r"oauth2-refresh-failed svc=b [^\n]*is not http://HOST:PORT")
        assert "Pr0xyPa55" not in bad.log()
    finally:
        tunnel.close()


def test_readme_recipe_m365_oauth2(proxies, oauth, mail, certs, tmp_path):
    """config/m365-oauth2.ini followed as the README says, up to where the
    real provider is needed: the provider's endpoints and the mailbox are
    the scripted ones, everything else is the sample's."""
    from helpers import ROOT, site_config
    with open(os.path.join(ROOT, "config", "m365-oauth2.ini")) as f:
        text = f.read()
    store_dir = tmp_path / "lib"
    store_dir.mkdir(mode=0o700)                        # step 2
    site = {
        "listen": "127.0.0.1:0",
        "upstream": "127.0.0.1:%d\nupstream_name = mail.test\nupstream_ca = %s/ca.crt"
                    % (mail.up.port, certs),
        "upstream_tls": "implicit",                    # the scripted server's
        "upstream_user": "alice",
        "allow": "127.0.0.1",
        "oauth2_provider": "custom\noauth2_token_url = %s\noauth2_device_url = %s\n"
                           "oauth2_ca = %s/ca.crt" % (oauth.token_url, oauth.device_url,
                                                      certs),
        "oauth2_client_id": "test-client",
        "oauth2_token_store": str(store_dir / "scanner.token.json"),
    }
    cfg = tmp_path / "m365-oauth2.ini"
    cfg.write_text(site_config(text, site))
    oauth.pending = 1
    r = subprocess.run([BIN, "-c", str(cfg), "-A", "scan-to-m365"],   # step 3
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "sign in at\n  https://127.0.0.1/devicelogin\nand enter the code\n  WDJB-MJHT" \
        in r.stdout, r.stdout
    r = subprocess.run([BIN, "-c", str(cfg), "-T"], capture_output=True, text=True,
                       timeout=30)                                      # step 4
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^scan-to-m365: token store \S+: refresh token present, access "
                     r"token valid for \d s$", r.stdout, re.M), r.stdout
    assert re.search(r"^scan-to-m365: ok .* auth=xoauth2 ", r.stdout, re.M), r.stdout
    proxy = proxies(cfg.read_text())                                    # step 5
    r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % proxy.port("scan-to-m365"),
                        "--from", "scanner@example.com", "--to", "you@example.com",
                        "--header", "Subject: test from the MFP"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(mail.messages) == 1 and b"Subject: test from the MFP" in mail.messages[0]
    assert secrets_in(proxy.log(), oauth) == []


def test_failed_reload_keeps_listeners_and_refreshes(proxies, oauth, mail, certs, tmp_path):
    """A reload refused by the token stores (a CA file that is no PEM) keeps
    everything as it was: the same listening sockets, refreshes going on,
    and the next good reload works."""
    store = str(tmp_path / "store.json")
    write_store(store)
    good = config("o", mail, oauth, certs, store)
    proxy = proxies(good)
    proxy.wait_log(r"event=oauth2-refreshed svc=o")
    bad_ca = tmp_path / "bad-ca.pem"
    bad_ca.write_text("not a certificate\n")
    proxy.rewrite(good.replace("oauth2_ca = %s/ca.crt" % certs, "oauth2_ca = %s" % bad_ca))
    proxy.reload(expect="reload failed")
    assert "oauth2_ca" in proxy.wait_log(r"reload failed[^\n]*")[-1]
    before = len(re.findall("event=oauth2-refreshed", proxy.log()))
    send(proxy.port("o"), "after-failed-reload")
    proxy.wait_log(r"event=oauth2-refreshed svc=o", count=before + 1)
    proxy.rewrite(good)
    proxy.reload()
    assert proxy.log().count("event=reload-ok") == 1
    send(proxy.port("o"), "after-good-reload")
    assert len(mail.messages) == 2
