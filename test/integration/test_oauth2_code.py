"""mailproxy -A with oauth2_grant = code: the authorization code grant with
PKCE (S256) and a loopback redirect, or the address pasted from a browser
elsewhere.

The test plays the person and the browser: it reads the address -A prints,
has the scripted OAuth2 server (oauth2server.py) issue a code for that
request (bound to its code_challenge and redirect_uri, as a provider
does), then either follows the redirect to the proxy's one-shot listener
or pastes the address into -A's standard input.  The token endpoint
refuses a verifier that does not match the challenge.
"""

import json
import os
import re
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest

from helpers import BIN
from test_oauth2 import secrets_in, send

# The scripted provider and the SMTP upstream it checks tokens for.
from test_oauth2 import mail, oauth  # noqa: E402,F401  (pytest fixtures)


def code_config(mail, oauth, certs, store, provider="custom", grant=True):
    return ("[o]\nprotocol = smtp\nlisten = 127.0.0.1:0\nclient_tls = none\n"
            "upstream = 127.0.0.1:%d\nupstream_tls = implicit\n"
            "upstream_name = mail.test\nupstream_ca = %s/ca.crt\n"
            "upstream_auth = xoauth2\nupstream_user = alice\nallow = 127.0.0.1/32\n"
            "oauth2_provider = %s\n%soauth2_client_id = test-client\n"
            "oauth2_token_url = %s\noauth2_authorize_url = %s\n"
            "oauth2_ca = %s/ca.crt\noauth2_token_store = %s\n"
            % (mail.up.port, certs, provider, "oauth2_grant = code\n" if grant else "",
               oauth.token_url, oauth.authorize_url, certs, store))


class Authorize:
    """mailproxy -A o running; its printed address parsed."""

    def __init__(self, cfg):
        self.proc = subprocess.Popen([BIN, "-c", cfg, "-A", "o"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.out = ""
        for line in self.proc.stdout:
            self.out += line
            m = re.match(r"\s+(https://\S+)$", line)
            if m:
                self.url = m.group(1)
                break
        for line in self.proc.stdout:
            self.out += line
            if line.startswith("Waiting"):
                break
        parts = urllib.parse.urlsplit(self.url)
        self.query = dict(urllib.parse.parse_qsl(parts.query))
        self.redirect = self.query["redirect_uri"]

    def paste(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def finish(self):
        out, err = self.proc.communicate(timeout=30)
        self.out += out
        return self.proc.returncode, self.out, err


def follow(address):
    """The browser on this machine: GET the redirect; (status, page)."""
    try:
        with urllib.request.urlopen(address, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_browser_on_this_machine(oauth, mail, certs, tmp_path, proxies):
    store = str(tmp_path / "store.json")
    cfg = tmp_path / "m.ini"
    cfg.write_text(code_config(mail, oauth, certs, store))
    a = Authorize(str(cfg))
    q = a.query
    assert q["response_type"] == "code" and q["client_id"] == "test-client"
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", a.redirect)
    assert a.url.startswith(oauth.authorize_url + "?")
    code = oauth.authorize(q)
    status, page = follow(a.redirect + "?code=%s&state=%s" % (code, q["state"]))
    assert status == 200 and "You can close this window" in page
    # One request only: the listener is gone.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(a.redirect.split(":")[2][:-1])),
                                 timeout=2).recv(1)
    rc, out, err = a.finish()
    assert rc == 0, err
    assert "authorized: %s written" % store in out
    assert oauth.code_refusals == []
    with open(store) as f:
        assert json.load(f)["refresh_token"] == oauth.refresh
    assert code not in out + err
    # The verifier never shows; the proxy then refreshes from the store.
    p = proxies(cfg.read_text())
    send(p.port("o"), "after-code")
    assert len(mail.messages) == 1
    assert secrets_in(p.log(), oauth) == []


def test_pkce_verifier_is_checked_by_the_provider(oauth, mail, certs, tmp_path):
    """The scripted provider's PKCE check can fail: a code exchanged with
    another verifier is refused."""
    code = oauth.authorize({"code_challenge": "x" * 43, "code_challenge_method": "S256",
                            "redirect_uri": "http://127.0.0.1:1/"})
    with oauth.lock:
        status, body = oauth._token({"grant_type": "authorization_code", "code": code,
                                     "client_id": "test-client",
                                     "redirect_uri": "http://127.0.0.1:1/",
                                     "code_verifier": "y" * 43})
    assert status == 400 and "does not match" in body["error_description"]


@pytest.mark.parametrize("how", ["with-state", "without-state", "bare-query"])
def test_pasted_address(oauth, mail, certs, tmp_path, how):
    store = str(tmp_path / "store.json")
    cfg = tmp_path / "m.ini"
    cfg.write_text(code_config(mail, oauth, certs, store))
    a = Authorize(str(cfg))
    code = oauth.authorize(a.query)
    if how == "with-state":
        a.paste("%s?code=%s&state=%s&scope=x" % (a.redirect, code, a.query["state"]))
    elif how == "without-state":
        a.paste("%s?code=%s" % (a.redirect, code))
    else:
        a.paste("  /?state=%s&code=%s  " % (a.query["state"], code))
    rc, out, err = a.finish()
    assert rc == 0, err
    assert oauth.code_refusals == []
    assert os.path.exists(store)


@pytest.mark.parametrize("how,message", [
    ("paste-denied", "the sign-in was declined (access_denied)"),
    ("paste-other-state", "state mismatch"),
    ("browser-other-state", "state mismatch"),
])
def test_refused_answers_write_nothing(oauth, mail, certs, tmp_path, how, message):
    store = str(tmp_path / "store.json")
    cfg = tmp_path / "m.ini"
    cfg.write_text(code_config(mail, oauth, certs, store))
    a = Authorize(str(cfg))
    code = oauth.authorize(a.query)
    if how == "paste-denied":
        a.paste("%s?error=access_denied&state=%s" % (a.redirect, a.query["state"]))
    elif how == "paste-other-state":
        a.paste("%s?code=%s&state=forged" % (a.redirect, code))
    else:
        status, page = follow(a.redirect + "?code=%s&state=forged" % code)
        assert status == 400 and "state mismatch" in page
    rc, out, err = a.finish()
    assert rc == 1 and message in err, err
    assert not os.path.exists(store)
    assert oauth.refreshes() == 0 and code in oauth.codes   # never exchanged


def test_stray_request_does_not_end_the_wait(oauth, mail, certs, tmp_path):
    """A request that is no authorization answer gets a 400; the answer
    that follows still counts."""
    store = str(tmp_path / "store.json")
    cfg = tmp_path / "m.ini"
    cfg.write_text(code_config(mail, oauth, certs, store))
    a = Authorize(str(cfg))
    assert follow(a.redirect + "favicon.ico")[0] == 400
    code = oauth.authorize(a.query)
    assert follow(a.redirect + "?state=%s&code=%s" % (a.query["state"], code))[0] == 200
    rc, out, err = a.finish()
    assert rc == 0, err


def test_google_defaults_to_code_and_asks_for_offline_access(oauth, mail, certs, tmp_path):
    store = str(tmp_path / "store.json")
    cfg = tmp_path / "m.ini"
    cfg.write_text(code_config(mail, oauth, certs, store, provider="google", grant=False))
    a = Authorize(str(cfg))
    assert a.query["scope"] == "https://mail.google.com/"
    assert a.query["access_type"] == "offline" and a.query["prompt"] == "consent"
    a.paste("%s?code=%s&state=%s" % (a.redirect, oauth.authorize(a.query),
                                     a.query["state"]))
    rc, out, err = a.finish()
    assert rc == 0, err


def test_custom_code_needs_the_authorize_url(oauth, mail, certs, tmp_path):
    cfg = tmp_path / "m.ini"
    cfg.write_text(re.sub(r"oauth2_authorize_url = .*\n", "",
                          code_config(mail, oauth, certs, str(tmp_path / "s.json"))))
    r = subprocess.run([BIN, "-c", str(cfg), "-t"], capture_output=True, text=True)
    assert r.returncode == 1 and re.search(r"m\.ini:\d+: \[o\]: oauth2_provider = custom "
                                           r"needs oauth2_token_url and "
                                           r"oauth2_authorize_url", r.stderr), r.stderr
