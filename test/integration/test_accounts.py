"""upstream_auth = accounts: old clients log in to the proxy with a local
password, the proxy logs in to the real server with the account's own
credential, then relays.

The upstreams are the real Dovecot (IMAP and POP3, passdb alice/secret) and
the real Postfix (submission with Dovecot SASL) of test/mailsys; the local
passwords are different from Dovecot's, so a session that works proves the
proxy logged in for the client.  Dovecot's own log shows whether a login
reached it.  The clients are Python's imaplib, poplib and smtplib, raw TLS
sockets for the byte-exact cases, curl and openssl s_client."""

import base64
import imaplib
import os
import poplib
import re
import smtplib
import ssl
import subprocess
import time
import uuid

import pytest

from helpers import (BIN, Proxy, client_ctx, free_port, server_ctx, tls_connect,
                     wait_for)
from test_real_servers import delivered

LOCAL = "local-pw-4b1d"          # the proxy's password for alice
OTHER = "printer-pw-77aa"        # the second account's
WRONG_UPSTREAM = "not-dovecots-password"


def make_hash(password):
    """mailproxy -H, as an admin runs it."""
    r = subprocess.run([BIN, "-H"], input=password + "\n", capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert line.startswith("password_hash = $y$"), line
    return line.split(" = ", 1)[1]


def private_file(d, name, text):
    path = os.path.join(str(d), name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def account(name, hashed, password_file=None, token_file=None, user="alice"):
    text = "[account:%s]\npassword_hash = %s\nupstream_user = %s\n" % (name, hashed, user)
    if token_file:
        return text + "upstream_token_file = %s\n" % token_file
    return text + "upstream_password_file = %s\n" % password_file


def svc(name, protocol, upstream_port, upstream_tls, certs, client_tls="implicit",
        listen="127.0.0.1:0", extra=""):
    text = ("[%s]\nprotocol = %s\nlisten = %s\nclient_tls = %s\n"
            "cert = %s/server-ecdsa.crt\nkey = %s/server-ecdsa.key\n"
            "upstream = 127.0.0.1:%d\nupstream_tls = %s\nupstream_name = mail.test\n"
            "upstream_ca = %s/ca.crt\nupstream_auth = accounts\n%s\n"
            % (name, protocol, listen, client_tls, certs, certs, upstream_port,
               upstream_tls, certs, extra))
    if client_tls == "starttls" or protocol == "smtp":
        text += "ehlo_name = gw.test\n"
    return text


@pytest.fixture(scope="module")
def hashes():
    return {"alice": make_hash(LOCAL), "printer": make_hash(OTHER)}


@pytest.fixture(scope="module")
def accounts_proxy(servers, certs, hashes, tmp_path_factory):
    d = tmp_path_factory.mktemp("accounts")
    good = private_file(d, "alice.pw", servers["password"] + "\n")
    bad = private_file(d, "bad.pw", WRONG_UPSTREAM + "\n")
    ports = servers["ports"]
    text = "log_level = debug\nauth_failures_max = 1000\n"
    text += svc("imaps", "imap", ports["imaps"], "implicit", certs)
    text += svc("imap-starttls", "imap", ports["imap_starttls"], "starttls", certs,
                client_tls="starttls")
    text += svc("pop3s", "pop3", ports["pop3s"], "implicit", certs)
    text += svc("pop3-starttls", "pop3", ports["pop3_starttls"], "starttls", certs,
                client_tls="starttls")
    text += svc("smtps", "smtp", ports["smtp_submission"], "starttls", certs)
    text += svc("smtp-starttls", "smtp", ports["smtp_submission"], "starttls", certs,
                client_tls="starttls")
    text += account("alice", hashes["alice"], good)
    text += account("printer", hashes["printer"], bad)
    p = Proxy(str(d), text)
    yield p
    p.stop()
    log = p.log()
    for secret in (LOCAL, OTHER, servers["password"], WRONG_UPSTREAM):
        for form in (secret, base64.b64encode(secret.encode()).decode(),
                     base64.b64encode(b"\0alice\0" + secret.encode()).decode()):
            assert form not in log, "a secret leaked into the log"
    assert "runtime error:" not in log and "AddressSanitizer" not in log


def dovecot_log(servers):
    with open(os.path.join(servers["run"], "log", "dovecot-tls.log"),
              errors="replace") as f:
        return f.read()


def ctx(certs):
    return client_ctx(certs)


def upstream_ctx(servers):
    return ssl.create_default_context(cafile=servers["ca"])


# ---- IMAP ----------------------------------------------------------------


def imap_fetch(conn):
    typ, _ = conn.select("INBOX")
    assert typ == "OK"
    typ, data = conn.fetch("1", "(RFC822 FLAGS)")
    assert typ == "OK"
    return data[0][1]


def test_imap_local_password_then_real_dovecot(accounts_proxy, servers, certs):
    direct = imaplib.IMAP4_SSL("127.0.0.1", servers["ports"]["imaps"],
                               ssl_context=upstream_ctx(servers))
    direct.login(servers["user"], servers["password"])
    want = imap_fetch(direct)
    direct.logout()

    c = imaplib.IMAP4_SSL("127.0.0.1", accounts_proxy.port("imaps"), ssl_context=ctx(certs))
    assert "AUTH=PLAIN" in c.capabilities and "LOGINDISABLED" not in c.capabilities
    typ, data = c.login("alice", LOCAL)
    assert typ == "OK"
    # The upstream's capabilities come with the OK (Dovecot sends them).
    assert b"[CAPABILITY " in data[0] and b"IMAP4rev1" in data[0]
    got = imap_fetch(c)
    assert got == want and b"The first message in the box." in got
    c.logout()
    accounts_proxy.wait_log(r"event=upstream-auth-ok account=alice upstream_user=alice")


def test_imap_after_starttls(accounts_proxy, certs):
    c = imaplib.IMAP4("127.0.0.1", accounts_proxy.port("imap-starttls"))
    assert "LOGINDISABLED" in c.capabilities        # before TLS: no login
    c.starttls(ssl_context=ctx(certs))
    typ, caps = c.capability()
    assert b"AUTH=PLAIN" in caps[0] and b"LOGINDISABLED" not in caps[0]
    assert c.login("alice", LOCAL)[0] == "OK"
    assert c.select("INBOX")[0] == "OK"
    c.logout()


def raw_imap(port, certs):
    s = tls_connect(port, certs)
    f = s.makefile("rb")
    assert f.readline().startswith(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN")
    return s, f


def read_tagged(f, tag):
    lines = []
    while True:
        line = f.readline()
        assert line, "connection closed"
        lines.append(line)
        if line.startswith(tag + b" "):
            return lines


@pytest.mark.parametrize("form", ["sync", "nonsync", "quoted", "plain-ir", "plain-continue"])
def test_imap_login_forms(accounts_proxy, certs, form):
    s, f = raw_imap(accounts_proxy.port("imaps"), certs)
    if form == "sync":
        s.sendall(b"a1 LOGIN {5}\r\n")
        assert f.readline().startswith(b"+ ")
        s.sendall(b"alice {%d}\r\n" % len(LOCAL))
        assert f.readline().startswith(b"+ ")
        s.sendall(LOCAL.encode() + b"\r\n")
    elif form == "nonsync":
        s.sendall(b"a1 LOGIN {5+}\r\nalice {%d+}\r\n%s\r\n" % (len(LOCAL), LOCAL.encode()))
    elif form == "quoted":
        s.sendall(b'a1 LOGIN "alice" "%s"\r\n' % LOCAL.encode())
    elif form == "plain-ir":
        s.sendall(b"a1 AUTHENTICATE PLAIN %s\r\n"
                  % base64.b64encode(b"\0alice\0" + LOCAL.encode()))
    else:
        s.sendall(b"a1 AUTHENTICATE PLAIN\r\n")
        assert f.readline().startswith(b"+")
        s.sendall(base64.b64encode(b"alice\0alice\0" + LOCAL.encode()) + b"\r\n")
    reply = read_tagged(f, b"a1")
    assert reply[-1].startswith(b"a1 OK ")
    s.sendall(b"a2 SELECT INBOX\r\n")
    assert read_tagged(f, b"a2")[-1].startswith(b"a2 OK")
    s.sendall(b"a3 LOGOUT\r\n")
    assert read_tagged(f, b"a3")[-1].startswith(b"a3 OK")
    s.close()


def login_reply(port, certs, user, password):
    s, f = raw_imap(port, certs)
    t0 = time.monotonic()
    s.sendall(b'a1 LOGIN "%s" "%s"\r\n' % (user.encode(), password.encode()))
    line = f.readline()
    took = time.monotonic() - t0
    s.close()
    return line, took


def _crypt():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    return crypt


def slow_hash(password):
    """A sha512crypt hash with many rounds (tens of milliseconds to check on
    any machine), so that a check skipped for an unknown name would show in
    the timing."""
    return _crypt().crypt(password, "$6$rounds=300000$" + uuid.uuid4().hex[:16] + "$")


def check_cost(hashed):
    """What one check of hashed costs on this machine, now: the same libcrypt
    the proxy uses, timed in this run (the best of three, as the logins are)."""
    crypt = _crypt()
    costs = []
    for _ in range(3):
        t0 = time.monotonic()
        crypt.crypt("probe", hashed)
        costs.append(time.monotonic() - t0)
    return min(costs)


def test_wrong_password_and_unknown_user_look_the_same(proxies, servers, certs, tmp_path):
    good = private_file(tmp_path, "alice.pw", servers["password"] + "\n")
    hashed = slow_hash(LOCAL)
    p = proxies(svc("imaps", "imap", servers["ports"]["imaps"], "implicit", certs,
                    extra="auth_failures_max = 100")
                + account("alice", hashed, good))
    port = p.port("imaps")
    before = dovecot_log(servers).count("imap-login:")
    login_reply(port, certs, "alice", "warm-up")
    wrong, t_wrong = zip(*[login_reply(port, certs, "alice", "nope") for _ in range(3)])
    unknown, t_unknown = zip(*[login_reply(port, certs, "mallory", "nope") for _ in range(3)])
    assert set(wrong) == set(unknown) == {b"a1 NO [AUTHENTICATIONFAILED] Authentication failed\r\n"}
    # Both were checked against a hash of the same cost: the unknown name
    # is not answered any sooner.  The floor is one check of that hash timed
    # here and now (half of it: the margin for a machine whose load changed
    # between the two measurements), never a constant: a faster machine
    # checks faster.
    cost = check_cost(hashed)
    assert min(t_unknown) > cost / 2 and min(t_wrong) > cost / 2, (cost, t_wrong, t_unknown)
    fast, slow = sorted([min(t_wrong), min(t_unknown)])
    assert slow < fast * 2, (t_wrong, t_unknown)
    # The right password with the same hash works (it is the account's).
    line, _ = login_reply(port, certs, "alice", LOCAL)
    assert line.startswith(b"a1 OK")
    # Nothing of the failures reached Dovecot: the upstream is dialled after
    # a local login only (the one good login above is the only one).
    time.sleep(0.3)
    assert dovecot_log(servers).count("imap-login:") == before + 1
    log = p.log()
    assert re.search(r"event=auth-failed client=127\.0\.0\.1 user=alice", log)
    assert re.search(r"event=auth-failed client=127\.0\.0\.1 user=mallory", log)


def test_session_ends_after_three_failures(accounts_proxy, certs):
    s, f = raw_imap(accounts_proxy.port("imaps"), certs)
    for i in range(3):
        s.sendall(b"t%d LOGIN alice wrong\r\n" % i)
        assert f.readline().startswith(b"t%d NO [AUTHENTICATIONFAILED]" % i)
    assert f.readline() == b"* BYE Too many authentication failures\r\n"
    assert f.readline() == b""


def test_upstream_refusing_the_credential_is_temporary(accounts_proxy, certs):
    c = imaplib.IMAP4_SSL("127.0.0.1", accounts_proxy.port("imaps"), ssl_context=ctx(certs))
    with pytest.raises(imaplib.IMAP4.error) as e:
        c.login("printer", OTHER)
    assert "[UNAVAILABLE]" in str(e.value)
    accounts_proxy.wait_log(r"event=upstream-failed reason=upstream-auth-refused")
    # The close line still says what the upstream's TLS was (the upstream
    # leg closed first).
    accounts_proxy.wait_log(r"event=close svc=imaps .*upstream_tls=TLSv1\.[23]/\S+ "
                            r".*reason=upstream-auth-refused")


def test_pre_login_vocabulary(accounts_proxy, certs):
    s, f = raw_imap(accounts_proxy.port("imaps"), certs)
    s.sendall(b"c1 CAPABILITY\r\nc2 NOOP\r\nc3 SELECT INBOX\r\nc4 STARTTLS\r\n"
              b"c5 AUTHENTICATE CRAM-MD5\r\nc6 AUTHENTICATE PLAIN !!notbase64\r\n"
              b"c7 LOGOUT\r\n")
    got = b"".join(read_tagged(f, b"c7"))
    assert (b"* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR LITERAL+\r\nc1 OK" in got)
    assert b"c2 OK" in got and b"c3 BAD" in got and b"c4 BAD TLS is already active" in got
    assert b"c5 NO" in got and b"c6 BAD" in got and b"* BYE" in got


# ---- POP3 ----------------------------------------------------------------


def test_pop3_local_password_then_real_dovecot(accounts_proxy, servers, certs):
    direct = poplib.POP3_SSL("127.0.0.1", servers["ports"]["pop3s"], context=upstream_ctx(servers))
    direct.user(servers["user"])
    direct.pass_(servers["password"])
    want = direct.retr(1)[1]
    direct.quit()

    p = poplib.POP3_SSL("127.0.0.1", accounts_proxy.port("pop3s"), context=ctx(certs))
    caps = p.capa()
    assert "USER" in caps and "SASL" in caps and "STLS" not in caps
    p.user("alice")
    assert p.pass_(LOCAL).startswith(b"+OK")
    assert p.retr(1)[1] == want
    p.quit()


def test_pop3_auth_plain_after_stls(accounts_proxy, certs):
    p = poplib.POP3("127.0.0.1", accounts_proxy.port("pop3-starttls"))
    p.stls(context=ctx(certs))
    caps = p.capa()
    assert "SASL" in caps and "PLAIN" in caps["SASL"] and "STLS" not in caps
    resp = p._shortcmd("AUTH PLAIN %s" % base64.b64encode(
        b"\0alice\0" + LOCAL.encode()).decode())
    assert resp.startswith(b"+OK")
    assert p.stat()[0] >= 1
    p.quit()


def test_pop3_wrong_password(accounts_proxy, certs):
    p = poplib.POP3_SSL("127.0.0.1", accounts_proxy.port("pop3s"), context=ctx(certs))
    p.user("alice")
    with pytest.raises(poplib.error_proto) as e:
        p.pass_("nope")
    assert str(e.value) == "b'-ERR [AUTH] Authentication failed'"
    p.user("alice")
    with pytest.raises(poplib.error_proto) as e:
        p.pass_(OTHER)      # another account's password is not alice's
    p.close()


def test_pop3_upstream_refusal_is_temporary(accounts_proxy, certs):
    p = poplib.POP3_SSL("127.0.0.1", accounts_proxy.port("pop3s"), context=ctx(certs))
    p.user("printer")
    with pytest.raises(poplib.error_proto) as e:
        p.pass_(OTHER)
    assert "[SYS/TEMP]" in str(e.value)


# ---- SMTP: the device selects the account ---------------------------------


def mail(marker):
    return ("From: scanner@office.test\r\nTo: alice@mail.test\r\nSubject: %s\r\n\r\n"
            "scan attached\r\n" % marker).encode()


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_smtp_account_through_real_postfix(accounts_proxy, servers, certs, mech):
    marker = "acct-" + uuid.uuid4().hex
    s = smtplib.SMTP_SSL("127.0.0.1", accounts_proxy.port("smtps"), local_hostname="scanner",
                         context=ctx(certs))
    s.ehlo()
    assert "plain" in s.esmtp_features["auth"].lower()
    with pytest.raises(smtplib.SMTPSenderRefused):
        s.sendmail("scanner@office.test", ["alice@mail.test"], mail(marker))
    s.user, s.password = "alice", LOCAL
    code, _ = s.auth(mech, getattr(s, "auth_" + mech.lower()), initial_response_ok=False)
    assert code == 235
    s.sendmail("scanner@office.test", ["alice@mail.test"], mail(marker))
    s.quit()
    assert re.search(rb"by mail\.test \(Postfix\) with ESMTPSA", delivered(servers, marker))


def test_smtp_second_account_and_wrong_password(accounts_proxy, certs):
    s = smtplib.SMTP("127.0.0.1", accounts_proxy.port("smtp-starttls"), local_hostname="x")
    s.starttls(context=ctx(certs))
    with pytest.raises(smtplib.SMTPAuthenticationError) as e:
        s.login("alice", "nope")
    assert e.value.smtp_code == 535
    # printer's upstream credential is refused by Postfix: a temporary
    # failure for the device, never a success.
    s.user, s.password = "printer", OTHER
    with pytest.raises(smtplib.SMTPAuthenticationError) as e:
        s.auth("PLAIN", s.auth_plain)
    assert e.value.smtp_code == 454


# ---- real command-line clients ------------------------------------------


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "20", *args],
                          capture_output=True, timeout=30)


def test_curl_as_client(accounts_proxy, servers, certs):
    ca = os.path.join(certs, "ca.crt")
    r = curl("--cacert", ca, "--user", "alice:" + LOCAL,
             "imaps://localhost:%d/INBOX;UID=1" % accounts_proxy.port("imaps"))
    assert r.returncode == 0, r.stderr
    assert b"The first message in the box." in r.stdout
    r = curl("--cacert", ca, "--user", "alice:" + LOCAL,
             "pop3s://localhost:%d/1" % accounts_proxy.port("pop3s"))
    assert r.returncode == 0, r.stderr
    assert b"The first message in the box." in r.stdout
    marker = "curl-" + uuid.uuid4().hex
    r = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", ca, "--user",
                        "alice:" + LOCAL, "--mail-from", "scanner@office.test",
                        "--mail-rcpt", "alice@mail.test", "--upload-file", "-",
                        "smtps://localhost:%d" % accounts_proxy.port("smtps")],
                       input=mail(marker), capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    delivered(servers, marker)
    r = curl("--cacert", ca, "--user", "alice:nope",
             "imaps://localhost:%d/INBOX;UID=1" % accounts_proxy.port("imaps"))
    assert r.returncode != 0


def test_openssl_s_client_as_client(accounts_proxy, certs):
    r = subprocess.run(["openssl", "s_client", "-quiet", "-nocommands", "-connect",
                        "127.0.0.1:%d" % accounts_proxy.port("imaps"),
                        "-CAfile", os.path.join(certs, "ca.crt")],
                       input=b'a LOGIN alice "%s"\r\nb SELECT INBOX\r\nc LOGOUT\r\n'
                       % LOCAL.encode(), capture_output=True, timeout=30)
    out = r.stdout
    assert b"a OK" in out and b"b OK" in out and b"c OK" in out, out


# ---- the brute-force block, across workers -------------------------------


def test_block_across_two_workers(proxies, servers, certs, hashes, tmp_path):
    """The failures land on both workers (the kernel spreads connections
    over their sockets); the block comes after auth_failures_max of them in
    total, which neither worker saw alone: the count is shared."""
    good = private_file(tmp_path, "alice.pw", servers["password"] + "\n")
    port, mport = free_port(), free_port()
    limit = 20
    p = proxies("workers = 2\nauth_failures_max = %d\nauth_block_time = 2\n"
                "metrics = 127.0.0.1:%d\n" % (limit, mport)
                + svc("imaps", "imap", servers["ports"]["imaps"], "implicit", certs,
                      listen="127.0.0.1:%d" % port)
                + account("alice", hashes["alice"], good))
    wait_for(lambda: p.log().count("event=start ") >= 2, what="two workers")
    for i in range(limit):
        line, _ = login_reply(port, certs, "alice" if i % 2 else "nobody", "guess%d" % i)
        assert line.startswith(b"a1 NO [AUTHENTICATIONFAILED]"), (i, line)
    p.wait_log(r"event=auth-blocked", count=1)
    # Which worker took each failure: a session id carries its slot.
    slots = [int(m) >> 40 for m in re.findall(r"sess=(\d+) svc=imaps event=auth-failed",
                                               p.log())]
    assert len(slots) == limit
    assert len(set(slots)) == 2, "all failures on one worker: %s" % slots
    assert max(slots.count(x) for x in set(slots)) < limit
    # Blocked now, whichever worker accepts: refused before any greeting.
    for _ in range(6):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            raw_imap(port, certs)
    assert len(re.findall(r"event=refused svc=imaps client=127\.0\.0\.1:\d+ "
                          r"reason=auth-blocked", p.log())) == 6
    metrics = subprocess.run(["curl", "-s", "http://127.0.0.1:%d/metrics" % mport],
                             capture_output=True, text=True).stdout
    assert 'mailproxy_auth_failures_total{service="imaps"} %d' % limit in metrics
    assert 'mailproxy_logins_total{service="imaps",result="ok"} 0' in metrics
    # After auth_block_time the address may try again.
    time.sleep(2.3)
    s, f = raw_imap(port, certs)
    s.sendall(b'a1 LOGIN alice "%s"\r\n' % LOCAL.encode())
    assert read_tagged(f, b"a1")[-1].startswith(b"a1 OK")
    s.close()


# ---- reload: a removed account's sessions end ----------------------------


def test_reload_removing_an_account_ends_its_session(proxies, servers, certs, hashes,
                                                     tmp_path):
    good = private_file(tmp_path, "alice.pw", servers["password"] + "\n")
    base = svc("imaps", "imap", servers["ports"]["imaps"], "implicit", certs)
    both = base + account("alice", hashes["alice"], good) + account(
        "bob", hashes["printer"], good)
    p = proxies(both)
    keep = imaplib.IMAP4_SSL("127.0.0.1", p.port("imaps"), ssl_context=ctx(certs))
    keep.login("alice", LOCAL)
    gone = imaplib.IMAP4_SSL("127.0.0.1", p.port("imaps"), ssl_context=ctx(certs))
    gone.login("bob", OTHER)
    assert gone.noop()[0] == "OK"
    p.rewrite(base + account("alice", hashes["alice"], good))
    p.reload()
    p.wait_log(r"reason=account-removed detail=bob")
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        gone.noop()
    assert keep.noop()[0] == "OK"       # alice is still in the file
    keep.logout()
    # And bob cannot log in any more.
    c = imaplib.IMAP4_SSL("127.0.0.1", p.port("imaps"), ssl_context=ctx(certs))
    with pytest.raises(imaplib.IMAP4.error):
        c.login("bob", OTHER)


# ---- XOAUTH2 from a token file ------------------------------------------


def test_xoauth2_account_with_token_file(proxies, upstreams, certs, hashes, tmp_path):
    token = "ya29.acct-" + uuid.uuid4().hex
    seen = []

    def handler(conn):
        f = conn.makefile("rb")
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] ready\r\n")
        while True:
            line = f.readline()
            if not line:
                return
            tag, cmd = line.split(b" ", 1)
            if cmd.startswith(b"CAPABILITY"):
                conn.sendall(b"* CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2\r\n"
                             + tag + b" OK done\r\n")
            elif cmd.startswith(b"AUTHENTICATE XOAUTH2 "):
                seen.append(base64.b64decode(cmd.split()[2]))
                conn.sendall(tag + b" OK [CAPABILITY IMAP4rev1 IDLE MOVE] in\r\n")
            elif cmd.startswith(b"NOOP"):
                conn.sendall(tag + b" OK noop\r\n")
            elif cmd.startswith(b"LOGOUT"):
                conn.sendall(b"* BYE\r\n" + tag + b" OK bye\r\n")
                return
            else:
                conn.sendall(tag + b" BAD\r\n")

    up = upstreams(handler, server_ctx(certs))
    tok = private_file(tmp_path, "token", token + "\n")
    p = proxies("log_level = debug\n" + svc("imaps", "imap", up.port, "implicit", certs)
                + account("crm", hashes["alice"], token_file=tok, user="crm@example.com"))
    c = imaplib.IMAP4_SSL("127.0.0.1", p.port("imaps"), ssl_context=ctx(certs))
    typ, data = c.login("crm", LOCAL)
    assert typ == "OK" and b"[CAPABILITY IMAP4rev1 IDLE MOVE]" in data[0]
    assert c.noop()[0] == "OK"
    c.logout()
    assert seen == [b"user=crm@example.com\x01auth=Bearer " + token.encode() + b"\x01\x01"]
    assert token not in p.log()


# ---- real Dovecot validating the account's OAuth2 token -------------------


@pytest.fixture
def oauth_dovecot(servers):
    """A Dovecot of its own whose passdb is oauth2: every XOAUTH2 login is
    checked by a token-introspection endpoint (a small http.server on
    127.0.0.1, scripted here, as an identity provider would answer)."""
    import http.server
    import json
    import shutil
    import signal
    import sys
    import tempfile
    import threading
    from helpers import ROOT
    sys.path.insert(0, os.path.join(ROOT, "test", "mailsys"))
    import mailsys

    state = {"valid": set(), "seen": []}

    class Introspect(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            token = dict(kv.split("=", 1) for kv in body.split("&") if "=" in kv).get(
                "token", "")
            state["seen"].append(token)
            answer = ({"active": True, "username": "alice"} if token in state["valid"]
                      else {"active": False})
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Introspect)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    run = tempfile.mkdtemp(prefix="mpo.", dir="/tmp")
    os.chmod(run, 0o755)
    shutil.copytree(os.path.join(servers["run"], "pki"), os.path.join(run, "pki"))
    maildir = os.path.join(run, "mail", "alice", "Maildir")
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(maildir, sub))
    with open(os.path.join(maildir, "new", "1.oauth.mail.test"), "wb") as f:
        f.write(mailsys.SEED)
    subprocess.run(["chown", "-R", "5000:5000", os.path.join(run, "mail")], check=True)
    os.makedirs(os.path.join(run, "log"))
    names = ["imap_starttls", "imaps", "imap_haproxy", "pop3_starttls", "pop3s"]
    ports = dict(zip(names, mailsys.free_ports(len(names))))
    conf = mailsys.dovecot_conf(run, "oauth", ports, True)
    conf = re.sub(r"passdb \{.*?\n\}\n", "passdb {\n  driver = oauth2\n  mechanisms = "
                  "xoauth2 oauthbearer\n  args = %s/oauth2.conf.ext\n}\n" % run, conf,
                  flags=re.S)
    conf = conf.replace("auth_mechanisms = plain login",
                        "auth_mechanisms = xoauth2 oauthbearer")
    conf += "protocol lmtp {\n}\n"
    with open(os.path.join(run, "oauth2.conf.ext"), "w") as f:
        f.write("introspection_mode = post\nintrospection_url = http://127.0.0.1:%d/"
                "introspect\nforce_introspection = yes\nusername_attribute = username\n"
                "active_attribute = active\nactive_value = true\n"
                % httpd.server_address[1])
    path = os.path.join(run, "dovecot.conf")
    with open(path, "w") as f:
        f.write(conf)
    os.makedirs(os.path.join(run, "oauth", "state"))
    subprocess.run(["doveconf", "-c", path, "-n"], check=True, stdout=subprocess.DEVNULL)
    proc = subprocess.Popen(["dovecot", "-F", "-c", path], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        mailsys.wait_ports([ports["imaps"]])
        yield {"port": ports["imaps"], "pop3s": ports["pop3s"], "state": state,
               "run": run}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        httpd.shutdown()
        shutil.rmtree(run, ignore_errors=True)


def test_xoauth2_account_checked_by_real_dovecot(proxies, oauth_dovecot, certs, hashes,
                                                 tmp_path):
    token = "ya29.real-" + uuid.uuid4().hex
    oauth_dovecot["state"]["valid"].add(token)
    tok = private_file(tmp_path, "token", token + "\n")
    p = proxies("log_level = debug\n"
                + svc("imaps", "imap", oauth_dovecot["port"], "implicit", certs)
                + account("crm", hashes["alice"], token_file=tok, user="alice"))
    c = imaplib.IMAP4_SSL("127.0.0.1", p.port("imaps"), ssl_context=ctx(certs))
    assert c.login("crm", LOCAL)[0] == "OK"
    assert c.select("INBOX")[0] == "OK"
    typ, data = c.fetch("1", "(RFC822)")
    assert typ == "OK" and b"The first message in the box." in data[0][1]
    c.logout()
    assert oauth_dovecot["state"]["seen"] == [token]
    # The token file is read for every session: a token the provider no
    # longer takes is refused by Dovecot, and the client hears "later".
    private_file(tmp_path, "token", "ya29.revoked\n")
    c = imaplib.IMAP4_SSL("127.0.0.1", p.port("imaps"), ssl_context=ctx(certs))
    with pytest.raises(imaplib.IMAP4.error) as e:
        c.login("crm", LOCAL)
    assert "[UNAVAILABLE]" in str(e.value)
    assert oauth_dovecot["state"]["seen"] == [token, "ya29.revoked"]
    p.wait_log(r"event=upstream-failed reason=upstream-auth-refused")
    assert token not in p.log() and "ya29.revoked" not in p.log()


def test_account_token_store_refreshed_by_the_proxy_checked_by_real_dovecot(
        proxies, oauth_dovecot, certs, hashes, tmp_path):
    """The account's credential is an oauth2_token_store: the proxy refreshes
    its 4-second tokens itself (scripted OAuth2 server), and a real Dovecot
    checks every XOAUTH2 login against that server's live tokens."""
    import json
    import time
    from oauth2server import OAuth2Server

    srv = OAuth2Server(certs)

    class Live:
        def __contains__(self, token):
            return srv.valid(token)

    oauth_dovecot["state"]["valid"] = Live()
    store = os.path.join(str(tmp_path), "crm.token.json")
    with open(store, "w") as f:
        json.dump({"refresh_token": "rt-0"}, f)
    os.chmod(store, 0o600)
    try:
        p = proxies(svc("imaps", "imap", oauth_dovecot["port"], "implicit", certs)
                    + svc("pop3s", "pop3", oauth_dovecot["pop3s"], "implicit", certs)
                    + "[account:crm]\npassword_hash = %s\nupstream_user = alice\n"
                    "oauth2_client_id = test-client\noauth2_token_url = %s\n"
                    "oauth2_device_url = %s\noauth2_ca = %s/ca.crt\n"
                    "oauth2_token_store = %s\n"
                    % (hashes["alice"], srv.token_url, srv.device_url, certs, store))
        for _ in range(4):              # across refreshes of 4 s tokens
            c = imaplib.IMAP4_SSL("127.0.0.1", p.port("imaps"), ssl_context=ctx(certs))
            assert c.login("crm", LOCAL)[0] == "OK"
            assert c.select("INBOX")[0] == "OK"
            c.logout()
            time.sleep(1.5)
        # POP3 too: AUTH XOAUTH2, then the token after "+" (RFC 5034).
        c = poplib.POP3_SSL("127.0.0.1", p.port("pop3s"), context=ctx(certs))
        c.user("crm")
        assert c.pass_(LOCAL).startswith(b"+OK")
        assert c.stat()[0] >= 1
        c.quit()
        seen = oauth_dovecot["state"]["seen"]
        assert len(seen) == 5 and len(set(seen)) >= 2, seen
        assert srv.refreshes() >= 2
        p.wait_log(r"event=oauth2-refreshed svc=account:crm ")
        with open(store) as f:
            assert json.load(f)["refresh_token"] == srv.refresh
        for t in seen:
            assert t not in p.log()
        # -A SERVICE:ACCOUNT writes an account's store.
        other = os.path.join(str(tmp_path), "other.json")
        cfg = os.path.join(str(tmp_path), "a.ini")
        with open(cfg, "w") as f:
            f.write(open(p.config).read().replace(store, other))
        srv.pending = 0
        r = subprocess.run([BIN, "-c", cfg, "-A", "imaps:crm"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "account of [imaps:crm]" in r.stdout
        with open(other) as f:
            assert json.load(f)["refresh_token"] == srv.refresh
    finally:
        srv.close()


def test_account_app_only_token_checked_by_real_dovecot(
        proxies, oauth_dovecot, certs, hashes, tmp_path):
    """oauth2_grant = client_credentials with a certificate: no store, no
    -A; the proxy fetches the application's 4-second tokens itself (the
    scripted provider verifies each signed assertion), and a real Dovecot
    checks every XOAUTH2 login of the mailbox against that provider."""
    from oauth2server import OAuth2Server
    from test_oauth2_app import key_and_cert

    srv = OAuth2Server(certs)
    key, cert, srv.client_cert = key_and_cert(tmp_path, "rsa")

    class Live:
        def __contains__(self, token):
            return srv.valid(token)

    oauth_dovecot["state"]["valid"] = Live()
    try:
        p = proxies(svc("imaps", "imap", oauth_dovecot["port"], "implicit", certs)
                    + svc("pop3s", "pop3", oauth_dovecot["pop3s"], "implicit", certs)
                    + "[account:scanner]\npassword_hash = %s\nupstream_user = alice\n"
                    "oauth2_grant = client_credentials\noauth2_client_id = test-client\n"
                    "oauth2_client_certificate = %s\noauth2_client_key = %s\n"
                    "oauth2_token_url = %s\noauth2_ca = %s/ca.crt\n"
                    % (hashes["alice"], cert, key, srv.token_url, certs))
        for _ in range(4):              # across renewals of 4 s tokens
            c = imaplib.IMAP4_SSL("127.0.0.1", p.port("imaps"), ssl_context=ctx(certs))
            assert c.login("scanner", LOCAL)[0] == "OK"
            assert c.select("INBOX")[0] == "OK"
            c.logout()
            time.sleep(1.5)
        c = poplib.POP3_SSL("127.0.0.1", p.port("pop3s"), context=ctx(certs))
        c.user("scanner")
        assert c.pass_(LOCAL).startswith(b"+OK")
        c.quit()
        seen = oauth_dovecot["state"]["seen"]
        assert len(seen) == 5 and len(set(seen)) >= 2, seen
        assert srv.fetches() >= 2 and srv.refreshes() == 0
        assert srv.refusals == [] and len(srv.assertions) == srv.fetches()
        p.wait_log(r"event=oauth2-refreshed svc=account:scanner ")
        assert not [f for f in os.listdir(str(tmp_path)) if f.endswith(".json")]
        for t in seen:
            assert t not in p.log()
    finally:
        srv.close()


def test_account_store_written_by_authorize_is_picked_up(proxies, certs, hashes, tmp_path):
    """watch_files covers an account's token store: -A SERVICE:ACCOUNT on a
    running proxy is enough, no SIGHUP."""
    from oauth2server import OAuth2Server
    srv = OAuth2Server(certs)
    srv.pending = 0
    store = os.path.join(str(tmp_path), "crm.json")
    try:
        p = proxies("watch_files = yes\n"
                    + svc("imaps", "imap", 1, "implicit", certs)
                    + "[account:crm]\npassword_hash = %s\nupstream_user = alice\n"
                    "oauth2_client_id = test-client\noauth2_token_url = %s\n"
                    "oauth2_device_url = %s\noauth2_ca = %s/ca.crt\n"
                    "oauth2_token_store = %s\n"
                    % (hashes["alice"], srv.token_url, srv.device_url, certs, store))
        p.wait_log(r"event=oauth2-no-store svc=account:crm store=\S+: run "
                   r"mailproxy -A imaps:crm")
        r = subprocess.run([BIN, "-c", p.config, "-A", "imaps:crm"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        p.wait_log(r"event=oauth2-store-read svc=account:crm")
    finally:
        srv.close()


def test_leaving_before_the_answer_counts_as_a_failure(proxies, servers, certs, hashes,
                                                       tmp_path):
    """A client that sends its login and hangs up at once still costs it one
    attempt: leaving is not a free guess (and no check is computed for it
    once it is gone)."""
    good = private_file(tmp_path, "alice.pw", servers["password"] + "\n")
    p = proxies("auth_failures_max = 3\nauth_block_time = 30\n"
                + svc("imaps", "imap", servers["ports"]["imaps"], "implicit", certs)
                + account("alice", hashes["alice"], good))
    for i in range(3):
        s, f = raw_imap(p.port("imaps"), certs)
        s.sendall(b'a1 LOGIN alice "guess%d"\r\n' % i)
        s.close()
    p.wait_log(r"event=auth-failed client=127\.0\.0\.1", count=3)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        raw_imap(p.port("imaps"), certs)
    p.wait_log(r"event=refused svc=imaps client=127\.0\.0\.1:\d+ reason=auth-blocked")


def test_commands_pipelined_after_a_refused_login_are_answered(accounts_proxy, certs):
    """A client that sends its next command with its login (IMAP) gets both
    answers without sending anything more."""
    s, f = raw_imap(accounts_proxy.port("imaps"), certs)
    s.sendall(b'a1 LOGIN alice "not-it"\r\na2 NOOP\r\na3 CAPABILITY\r\n')
    s.settimeout(10)
    assert read_tagged(f, b"a1")[-1].startswith(b"a1 NO [AUTHENTICATIONFAILED]")
    assert read_tagged(f, b"a2")[-1].startswith(b"a2 OK")
    assert read_tagged(f, b"a3")[-1].startswith(b"a3 OK")
    s.close()
