"""OAuth2 grants that need no person and no store: client credentials (a
client secret, or a client assertion signed with the application's key,
RFC 7523 section 2.2) and Google service accounts (the JWT bearer grant,
section 2.1).

The scripted OAuth2 server (oauth2server.py) checks each request as a
provider would: it verifies the assertion's signature with the
certificate or public key (Python's cryptography), its x5t#S256, aud,
iss/sub, exp, and refuses a jti it has seen.  The SMTP upstream accepts
only tokens that server issued and that have not expired.
"""

import datetime
import json
import os
import re
import subprocess
import time
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from helpers import BIN, free_port
from test_oauth2 import devices, secrets_in, send

# The scripted provider and the SMTP upstream it checks tokens for.
from test_oauth2 import mail, oauth  # noqa: E402,F401  (pytest fixtures)


def private(path, data, mode=0o600):
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    os.chmod(path, mode)
    return str(path)


def key_and_cert(tmp_path, kind="rsa", days=365):
    """A key (PEM file, 0600) and its self-signed certificate (PEM file)."""
    key = (ec.generate_private_key(ec.SECP256R1()) if kind == "ec"
           else rsa.generate_private_key(public_exponent=65537, key_size=2048))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailproxy-app")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .sign(key, hashes.SHA256()))
    pem_key = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    pem_cert = cert.public_bytes(serialization.Encoding.PEM)
    return (private(tmp_path / ("%s.key" % kind), pem_key),
            private(tmp_path / ("%s.crt" % kind), pem_cert, 0o644), pem_cert)


def app_config(name, mail, oauth, certs, grant_keys, mech="xoauth2", provider="custom",
               user="alice"):
    return ("[%s]\nprotocol = smtp\nlisten = 127.0.0.1:0\nclient_tls = none\n"
            "upstream = 127.0.0.1:%d\nupstream_tls = implicit\n"
            "upstream_name = mail.test\nupstream_ca = %s/ca.crt\n"
            "upstream_auth = %s\nupstream_user = %s\nallow = 127.0.0.1/32\n"
            "oauth2_provider = %s\noauth2_token_url = %s\noauth2_ca = %s/ca.crt\n%s"
            % (name, mail.up.port, certs, mech, user, provider, oauth.token_url, certs,
               grant_keys))


def secret_keys(oauth, tmp_path):
    oauth.client_secret = "s3cret-" + "q" * 20
    path = private(tmp_path / "client.secret", oauth.client_secret + "\n")
    return ("oauth2_grant = client_credentials\noauth2_client_id = test-client\n"
            "oauth2_client_secret_file = %s\n" % path)


def cert_keys(oauth, tmp_path, kind="rsa"):
    key, cert, pem = key_and_cert(tmp_path, kind)
    oauth.client_cert = pem
    return ("oauth2_grant = client_credentials\noauth2_client_id = test-client\n"
            "oauth2_client_certificate = %s\noauth2_client_key = %s\n" % (cert, key))


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        return r.read().decode()


@pytest.mark.parametrize("cred", ["secret", "rsa", "ec"])
def test_app_tokens_fetched_without_a_store_and_renewed_before_expiry(
        proxies, oauth, mail, certs, tmp_path, cred):
    keys = secret_keys(oauth, tmp_path) if cred == "secret" else \
        cert_keys(oauth, tmp_path, cred)
    mport = free_port()
    proxy = proxies("log_level = debug\nmetrics = 127.0.0.1:%d\n" % mport +
                    app_config("o", mail, oauth, certs, keys))

    def device(i):
        for k in range(5):
            send(proxy.port("o"), "dev%d-%d" % (i, k))
            time.sleep(1.0)

    # 4 s tokens over the run: every message delivered, every AUTH with a
    # live token, fetched again before each one ended.
    assert devices(6, device) == []
    assert len(mail.messages) == 30
    assert mail.refused == []
    assert oauth.fetches() >= 3, oauth.requests
    assert oauth.refreshes() == 0
    assert len({t for _, t in mail.accepted}) >= 2
    # No store anywhere: nothing written next to the configuration.
    assert not [p for p in os.listdir(str(tmp_path)) if p.endswith(".json")]
    if cred == "secret":
        assert oauth.assertions == []
    else:
        algs = {h["alg"] for h, _ in oauth.assertions}
        assert algs == ({"RS256"} if cred == "rsa" else {"ES256"})
        # A fresh jti each time, 5 minutes of life at most.
        assert len({c["jti"] for _, c in oauth.assertions}) == len(oauth.assertions)
        assert all(c["exp"] - c["iat"] <= 600 for _, c in oauth.assertions)
    assert oauth.refusals == []
    text = scrape(mport)
    assert 'mailproxy_oauth2_refreshes_total{service="o"} %d' % oauth.fetches() in text
    assert 'mailproxy_oauth2_token_state{service="o",state="valid"} 1' in text
    assert secrets_in(proxy.log(), oauth) == []
    assert "s3cret" not in proxy.log()


def test_replayed_or_foreign_assertions_are_refused_by_the_scripted_provider(
        proxies, oauth, mail, certs, tmp_path):
    """The provider's checks can fail: a replayed assertion (same jti) and
    one signed by another key are refused."""
    proxy = proxies(app_config("o", mail, oauth, certs, cert_keys(oauth, tmp_path)))
    send(proxy.port("o"), "first")
    form = [f for p, f in oauth.requests if "client_assertion" in f][0]
    with oauth.lock:
        status, body = oauth._token(dict(form))
    assert status == 401 and "jti reused" in body["error_description"]
    (tmp_path / "other").mkdir()
    _, _, other = key_and_cert(tmp_path / "other", "rsa")
    oauth.client_cert = other
    with oauth.lock:
        status, body = oauth._token(dict(form))
    assert status == 401 and body["error"] == "invalid_client"


def test_microsoft_preset_app_only(proxies, oauth, mail, certs, tmp_path):
    """Microsoft: the .default scope of Exchange Online, PS256 assertions,
    XOAUTH2 with the mailbox as user."""
    keys = cert_keys(oauth, tmp_path) + "oauth2_tenant = contoso.onmicrosoft.com\n"
    proxy = proxies(app_config("o", mail, oauth, certs, keys, provider="microsoft"))
    send(proxy.port("o"), "m365")
    assert len(mail.messages) == 1
    form = [f for p, f in oauth.requests if f.get("grant_type") == "client_credentials"][0]
    assert form["scope"] == "https://outlook.office365.com/.default"
    assert {h["alg"] for h, _ in oauth.assertions} == {"PS256"}


def test_refused_client_says_what_to_do_and_recovers_on_reload(
        proxies, oauth, mail, certs, tmp_path):
    proxy = proxies(app_config("o", mail, oauth, certs, secret_keys(oauth, tmp_path)))
    send(proxy.port("o"), "ok")
    oauth.revoked = True
    proxy.wait_log(r"event=oauth2-refresh-failed svc=o store=app:o error=\"HTTP 401 "
                   r"invalid_client: AADSTS7000215.*Microsoft: the client secret is "
                   r"wrong; put the application's current secret in "
                   r"oauth2_client_secret_file",
                   timeout=15)
    oauth.revoked = False
    proxy.reload()
    send(proxy.port("o"), "after")
    assert len(mail.messages) == 2


def test_two_instances_with_the_same_credentials_never_conflict(
        proxies, oauth, mail, certs, tmp_path):
    keys = cert_keys(oauth, tmp_path)
    a = proxies(app_config("a", mail, oauth, certs, keys), name="a")
    b = proxies(app_config("b", mail, oauth, certs, keys), name="b")

    def device(i):
        p = (a, b)[i % 2]
        for k in range(4):
            send(p.port("ab"[i % 2]), "i%d-%d" % (i, k))
            time.sleep(1.0)

    assert devices(4, device) == []
    assert len(mail.messages) == 16 and mail.refused == []
    assert oauth.refusals == []
    assert oauth.fetches() >= 4


def test_check_fetches_an_app_token_and_logs_in(oauth, mail, certs, tmp_path):
    cfg = tmp_path / "m.ini"
    cfg.write_text(app_config("o", mail, oauth, certs, secret_keys(oauth, tmp_path)))
    r = subprocess.run([BIN, "-c", str(cfg), "-T"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert oauth.fetches() == 1 and len(mail.accepted) == 1
    oauth.client_secret = "another"
    r = subprocess.run([BIN, "-c", str(cfg), "-T"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and "invalid_client" in r.stdout, r.stdout


# ---- Google service accounts ------------------------------------------------


def sa_file(oauth, tmp_path, mode=0o600, email="relay@proj.iam.gserviceaccount.com"):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    oauth.sa_public_key = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    oauth.sa_email = email
    doc = {"type": "service_account", "project_id": "proj", "private_key_id": "k1",
           "private_key": key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()).decode(),
           "client_email": email, "client_id": "1234",
           "token_uri": oauth.token_url}
    return private(tmp_path / "sa.json", json.dumps(doc), mode)


def test_service_account_token_for_the_mailbox(proxies, oauth, mail, certs, tmp_path):
    path = sa_file(oauth, tmp_path)
    oauth.sa_subject = "alice"
    keys = "oauth2_grant = service_account\noauth2_service_account_file = %s\n" % path
    text = app_config("o", mail, oauth, certs, keys, mech="oauthbearer", provider="google")
    # The key file's token_uri is the token endpoint.
    text = re.sub(r"^oauth2_token_url = .*\n", "", text, flags=re.M)
    proxy = proxies(text)
    for k in range(3):
        send(proxy.port("o"), "sa%d" % k)
        time.sleep(2.0)
    assert len(mail.messages) == 3 and mail.refused == []
    assert oauth.refusals == []
    assert oauth.fetches() >= 2
    (h, c), = oauth.assertions[:1]
    assert h["alg"] == "RS256" and c["iss"] == oauth.sa_email and c["sub"] == "alice"
    assert c["scope"] == "https://mail.google.com/"
    assert secrets_in(proxy.log(), oauth) == []


# ---- configuration rules --------------------------------------------------------


@pytest.mark.parametrize("change,message", [
    ("", None),
    ("oauth2_token_store = STORE", "needs no oauth2_token_store"),
    ("oauth2_client_secret_file = SECRET",
     "exactly one of oauth2_client_secret_file and oauth2_client_certificate"),
    ("-oauth2_client_key", "oauth2_client_certificate and oauth2_client_key go together"),
    ("oauth2_provider = microsoft", "needs oauth2_tenant"),
    ("oauth2_tenant = contoso.com", "oauth2_tenant is for oauth2_provider = microsoft"),
    ("oauth2_cloud = usgov", "oauth2_cloud is for oauth2_provider = microsoft"),
    ("oauth2_tenant = a/b", "a tenant id or domain name expected"),
    ("oauth2_grant = password", "oauth2_grant: unknown value"),
    ("oauth2_service_account_file = SECRET", "oauth2_service_account_file is not used"),
    ("KEY_MODE", "oauth2_client_key: "),
    ("WEAK_KEY", "1024 bits"),
])
def test_config_rules(oauth, mail, certs, tmp_path, change, message):
    keys = cert_keys(oauth, tmp_path)
    secret = private(tmp_path / "s", "x\n")
    text = app_config("o", mail, oauth, certs, keys)
    key_file = re.search(r"oauth2_client_key = (\S+)", text).group(1)
    if change.startswith("-"):
        text = re.sub(r"^%s = .*\n" % change[1:], "", text, flags=re.M)
    elif change == "KEY_MODE":
        os.chmod(key_file, 0o644)
    elif change == "WEAK_KEY":
        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        private(key_file, weak.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    elif change.startswith(("oauth2_provider", "oauth2_grant")):
        text = re.sub(r"^%s = .*$" % change.split(" = ")[0], change, text, flags=re.M)
    elif change:
        text += change.replace("STORE", str(tmp_path / "st.json")).replace(
            "SECRET", secret) + "\n"
    cfg = tmp_path / "m.ini"
    cfg.write_text(text)
    r = subprocess.run([BIN, "-c", str(cfg), "-t"], capture_output=True, text=True)
    if message is None:
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode == 1 and message in r.stderr, r.stderr
        assert re.search(r"m\.ini:\d+: ", r.stderr), r.stderr


def test_microsoft_takes_xoauth2_only(oauth, mail, certs, tmp_path):
    # A person's grant (the old way too): the rule is the provider's.
    keys = "oauth2_client_id = test-client\noauth2_token_store = %s\n" % (
        tmp_path / "st.json")
    cfg = tmp_path / "m.ini"
    cfg.write_text(app_config("o", mail, oauth, certs, keys, mech="oauthbearer",
                              provider="microsoft"))
    r = subprocess.run([BIN, "-c", str(cfg), "-t"], capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    assert re.search(r"m\.ini:\d+: \[o\]: oauth2_provider = microsoft takes "
                     r"upstream_auth = xoauth2", r.stderr), r.stderr


def test_service_account_file_rules(oauth, mail, certs, tmp_path):
    path = sa_file(oauth, tmp_path, mode=0o644)
    keys = "oauth2_grant = service_account\noauth2_service_account_file = %s\n" % path
    cfg = tmp_path / "m.ini"
    cfg.write_text(app_config("o", mail, oauth, certs, keys, provider="google"))
    r = subprocess.run([BIN, "-c", str(cfg), "-t"], capture_output=True, text=True)
    assert r.returncode == 1 and re.search(r"m\.ini:\d+: oauth2_service_account_file",
                                           r.stderr), r.stderr
    private(path, json.dumps({"type": "authorized_user"}))
    r = subprocess.run([BIN, "-c", str(cfg), "-t"], capture_output=True, text=True)
    assert r.returncode == 1 and "not a service account key file" in r.stderr, r.stderr
