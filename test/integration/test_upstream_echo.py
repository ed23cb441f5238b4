"""An upstream that quotes the credential back when it refuses the login:
neither the proxy's log nor its client may see the credential in any form.

No real server echoes a password, so the upstreams here are small scripted
ones (implicit TLS) that refuse every login with what they received in it:
the secret as it is, its base64 with and without padding, and the line of
the login as it came (the SASL message in base64).  IMAP also has one that
accepts and lists the secret among the capabilities of its tagged OK, which
the proxy passes on to the client.  The clients are raw TLS sockets, so that
every byte the client got is checked."""

import base64
import re
import socket
import uuid

import pytest

from helpers import read_to_eof, server_ctx, tls_connect
from test_accounts import LOCAL, account, make_hash, private_file, svc
from test_upstream_auth import auth_service

USER = "alice"


def b64(data):
    return base64.b64encode(data)


def forms(secret):
    """Every form the credential crosses the wire in, and a few more."""
    raw = secret.encode()
    sasl = [b"\0" + USER.encode() + b"\0" + raw,
            b"user=" + USER.encode() + b"\x01auth=Bearer " + raw + b"\x01\x01",
            b"n,a=" + USER.encode() + b",\x01auth=Bearer " + raw + b"\x01\x01"]
    out = [raw, raw.upper(), b64(raw), b64(raw).rstrip(b"=")]
    for m in sasl:
        out += [b64(m), b64(m).rstrip(b"=")]
    return out


def echo(secret, got):
    """What the refusals say: the secret's base64, the login's own bytes
    (inside the part of the line the log quotes), then the secret as it
    is, upper-cased, and in base64 without padding."""
    return (b"bad " + b64(secret) + b" got " + b" ".join(got)[:200] + b" password '" +
            secret + b"' (" + secret.upper() + b") " + b64(secret).rstrip(b"=") +
            b" for " + USER.encode())


def sasl_secret(mech, data):
    """The password or token inside a SASL message."""
    if mech == b"PLAIN":
        return data.split(b"\0")[2]
    return re.search(rb"auth=Bearer ([^\x01]*)\x01", data).group(1)


def error_json(secret):
    return b64(b'{"status":"401","detail":"token ' + secret + b' expired"}')


# ---- scripted upstreams ----------------------------------------------------


def imap_upstream(accept=False):
    def handler(conn):
        f = conn.makefile("rb")
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN AUTH=XOAUTH2] echo\r\n")
        for line in iter(f.readline, b""):
            tag, cmd = line.rstrip(b"\r\n").split(b" ", 1)
            verb = cmd.split(b" ", 1)[0].upper()
            if verb == b"CAPABILITY":
                conn.sendall(b"* CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN AUTH=XOAUTH2\r\n"
                             + tag + b" OK done\r\n")
            elif verb == b"LOGIN":
                secret = re.fullmatch(rb'LOGIN "[^"]*" "(.*)"', cmd, re.I).group(1)
                if accept:
                    conn.sendall(tag + b" OK [CAPABILITY IMAP4rev1 X-PW=" + secret +
                                 b" X-B64=" + b64(secret) + b" IDLE] in\r\n")
                    continue
                conn.sendall(tag + b" NO [AUTHENTICATIONFAILED] " +
                             echo(secret, [cmd]) + b"\r\n")
            elif verb == b"AUTHENTICATE":
                mech, ir = cmd.split(b" ")[1:3]
                secret = sasl_secret(mech.upper(), base64.b64decode(ir))
                conn.sendall(b"+ " + error_json(secret) + b"\r\n")
                f.readline()
                conn.sendall(tag + b" NO [AUTHENTICATIONFAILED] " +
                             echo(secret, [ir]) + b"\r\n")
            elif verb == b"LOGOUT":
                conn.sendall(b"* BYE\r\n" + tag + b" OK bye\r\n")
                return
            else:
                conn.sendall(tag + b" OK\r\n")
    return handler


def pop3_upstream(conn):
    f = conn.makefile("rb")
    conn.sendall(b"+OK echo\r\n")
    for line in iter(f.readline, b""):
        line = line.rstrip(b"\r\n")
        verb = line.split(b" ", 1)[0].upper()
        if verb == b"USER":
            conn.sendall(b"+OK\r\n")
        elif verb == b"PASS":
            conn.sendall(b"-ERR [AUTH] " + echo(line[5:], [line]) + b"\r\n")
        elif verb == b"AUTH":
            conn.sendall(b"+ \r\n")
            msg = f.readline().strip()
            secret = sasl_secret(b"XOAUTH2", base64.b64decode(msg))
            conn.sendall(b"+ " + error_json(secret) + b"\r\n")
            f.readline()
            conn.sendall(b"-ERR [AUTH] " + echo(secret, [msg]) + b"\r\n")
        else:
            conn.sendall(b"-ERR what\r\n")


def smtp_upstream(mechs):
    def handler(conn):
        f = conn.makefile("rb")
        conn.sendall(b"220 mail.test ESMTP echo\r\n")
        for line in iter(f.readline, b""):
            verb = line[:4].upper()
            if verb == b"EHLO":
                conn.sendall(b"250-mail.test\r\n250-AUTH " + mechs + b"\r\n250 8BITMIME\r\n")
            elif verb == b"AUTH":
                parts = line.split()
                mech, got = parts[1].upper(), parts[2:]
                if mech == b"LOGIN":
                    for prompt in (b"VXNlcm5hbWU6", b"UGFzc3dvcmQ6"):
                        conn.sendall(b"334 " + prompt + b"\r\n")
                        got.append(f.readline().strip())
                    secret = base64.b64decode(got[1])
                else:
                    secret = sasl_secret(mech, base64.b64decode(got[0]))
                if mech in (b"XOAUTH2", b"OAUTHBEARER"):
                    conn.sendall(b"334 " + error_json(secret) + b"\r\n")
                    f.readline()
                conn.sendall(b"535 5.7.8 " + echo(secret, got)[:490] + b"\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"502 no\r\n")
    return handler


# ---- the checks ------------------------------------------------------------


def assert_clean(proxy, secret, client_got):
    log = proxy.log().encode()
    for form in forms(secret):
        assert form not in log, "the log holds %r" % form
        assert form not in client_got, "the client got %r" % form
    # Not vacuous: the refusal (or the capabilities) did arrive, redacted.
    assert b"[redacted]" in log + client_got


def client_session(proto, port, certs, lines):
    """Sends the client's lines over TLS, returns all it got until EOF."""
    s = tls_connect(port, certs)
    s.settimeout(10)
    got = s.recv(4096)                          # the proxy's greeting
    s.sendall(lines)
    try:
        got += read_to_eof(s)
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    return got


LOGINS = {
    "imap": b"a LOGIN alice " + LOCAL.encode() + b"\r\n",
    "pop3": b"USER alice\r\nPASS " + LOCAL.encode() + b"\r\n",
    "smtp": b"EHLO c.test\r\nAUTH PLAIN " + b64(b"\0alice\0" + LOCAL.encode()) + b"\r\n",
}


@pytest.fixture(scope="module")
def local_hash():
    return make_hash(LOCAL)


@pytest.mark.parametrize("proto,cred,mechs", [
    ("imap", "password", None), ("imap", "token", None),
    ("pop3", "password", None), ("pop3", "token", None),
    ("smtp", "password", b"PLAIN"), ("smtp", "password", b"LOGIN"),
    ("smtp", "token", b"XOAUTH2"),
])
def test_account_refusal_echoing_the_credential(proxies, upstreams, certs, local_hash,
                                                tmp_path, proto, cred, mechs):
    secret = ("Echo-Pw-" if cred == "password" else "ya29.echo-") + uuid.uuid4().hex[:12]
    handler = {"imap": imap_upstream(), "pop3": pop3_upstream,
               "smtp": smtp_upstream(mechs or b"")}[proto]
    up = upstreams(handler, server_ctx(certs))
    f = private_file(tmp_path, "cred", secret + "\n")
    acct = (account("alice", local_hash, password_file=f) if cred == "password"
            else account("alice", local_hash, token_file=f))
    p = proxies("log_level = debug\n" + svc("s", proto, up.port, "implicit", certs) + acct)
    got = client_session(proto, p.port("s"), certs, LOGINS[proto])
    p.wait_log(r"event=close .*reason=upstream-auth-refused")
    assert re.search(rb"NO \[UNAVAILABLE\]|-ERR \[SYS/TEMP\]|454 4\.7\.0", got), got
    assert_clean(p, secret, got)


def test_account_capabilities_echoing_the_password(proxies, upstreams, certs, local_hash,
                                                   tmp_path):
    secret = "Echo-Pw-" + uuid.uuid4().hex[:12]
    up = upstreams(imap_upstream(accept=True), server_ctx(certs))
    f = private_file(tmp_path, "cred", secret + "\n")
    p = proxies("log_level = debug\n" + svc("s", "imap", up.port, "implicit", certs)
                + account("alice", local_hash, password_file=f))
    got = client_session("imap", p.port("s"), certs, LOGINS["imap"] + b"b LOGOUT\r\n")
    # The rest of the list reaches the client; the credential does not.
    assert b"a OK [CAPABILITY IMAP4rev1 X-PW=[redacted] X-B64=[redacted] IDLE]" in got, got
    assert b"b OK bye" in got
    assert_clean(p, secret, got)


@pytest.mark.parametrize("mech", ["plain", "login", "xoauth2", "oauthbearer"])
def test_service_refusal_echoing_the_credential(proxies, upstreams, certs, tmp_path, mech):
    secret = ("Echo-Pw-" if mech in ("plain", "login") else "ya29.echo-") + uuid.uuid4().hex[:12]
    up = upstreams(smtp_upstream(mech.upper().encode()), server_ctx(certs))
    f = private_file(tmp_path, "cred", secret + "\n")
    text = auth_service("s", up.port, "implicit", mech, f, certs)
    if mech == "oauthbearer":
        text = text.replace("upstream_password_file", "upstream_token_file")
    p = proxies("log_level = debug\n" + text)
    s = socket.create_connection(("127.0.0.1", p.port("s")), timeout=10)
    got = read_to_eof(s)
    s.close()
    assert got.startswith(b"421 "), got
    p.wait_log(r"event=close .*reason=upstream-auth-refused")
    assert_clean(p, secret, got)
