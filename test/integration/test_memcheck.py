"""Secrets are wiped before their memory is freed.

test/memcheck/memcheck.c is preloaded into the proxy (the normal build: ASan
replaces malloc itself) and reports every heap chunk freed, or realloc'ed,
while it still holds a marker: a random string put into each secret the
proxy handles (client password, upstream password, refresh and access
tokens, client secrets, device code), searched raw and in its base64 forms.
Frees made by BoringSSL (its TLS record buffers) are exempt and counted
apart: README, "Security defaults".

make memcheck (part of make check) runs this file with MEMCHECK_SO set; the
rest of the suite skips it, as does an ASan build.

A canary test puts the marker in a value that is no secret (a service name,
freed as it is) and expects a report: the check can fail, and the hook saw
the proxy's frees in this very run.
"""

import base64
import imaplib
import json
import os
import poplib
import re
import smtplib
import subprocess
import time
import uuid

import pytest

from helpers import BIN, client_ctx, wait_for
from oauth2server import OAuth2Server
from test_accounts import account, make_hash, raw_imap, read_tagged, svc
from test_oauth2 import config, write_store

SO = os.environ.get("MEMCHECK_SO")
pytestmark = [
    pytest.mark.skipif(not SO, reason="run by make memcheck (a preload into "
                       "the normal build)"),
    pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1"),
]

# One marker for the module; each secret is the marker and a suffix.
MARK = "mcK" + uuid.uuid4().hex[:21]


def marker_forms(m):
    """m, and the part of its base64 encoding that does not depend on what
    precedes it, for each of the three alignments (SASL strings)."""
    raw = m.encode()
    forms = [m]
    for pad in range(3):
        enc = base64.b64encode(b"\0" * pad + raw).decode()
        first = (pad + 2) // 3               # first group with only m's bytes
        last = (pad + len(raw)) // 3         # one past the last full one
        forms.append(enc[4 * first:4 * last])
    return forms


def preload(tmp_path, name):
    log = str(tmp_path / (name + ".memcheck"))
    return log, {"LD_PRELOAD": SO, "MEMCHECK_LOG": log,
                 "MEMCHECK_MARKERS": ",".join(marker_forms(MARK))}


def report(log):
    with open(log) as f:
        return f.read()


def leaks(text):
    """The LEAK reports, each with its backtrace."""
    return re.findall(r"^memcheck: LEAK .*\n(?:(?!memcheck: ).*\n)*", text, re.M)


def symbolized(reports):
    """The reports with the proxy's frames named (addr2line)."""
    def name(m):
        try:
            r = subprocess.run(["addr2line", "-f", "-i", "-p", "-e", m.group(1),
                                m.group(2)], capture_output=True, text=True)
        except OSError:                 # no binutils: the raw frame
            return m.group(0)
        return "%s %s" % (m.group(0), r.stdout.strip().replace("\n", " / "))
    return "".join(re.sub(r"^(\S*mailproxy)\((\+0x[0-9a-f]+)\)\S*$", name, rep,
                          flags=re.M) for rep in reports)


def assert_clean(log, pids):
    """Each of pids ran with the hook to its end and freed no marker."""
    text = report(log)
    assert "memcheck: start" in text, "the hook did not load:\n" + text
    for pid in pids:
        assert re.search(r"^memcheck: end pid=%d " % pid, text, re.M), \
            "process %d did not finish under the hook:\n%s" % (pid, text)
    assert not leaks(text), "secrets freed unwiped:\n" + symbolized(leaks(text))


def private_file(d, name, text):
    path = os.path.join(str(d), name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path


def run(args, env, timeout=60, **kw):
    return subprocess.run([BIN] + args, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, **env), **kw)


def worker_pids(proxy):
    return [int(p) for p in re.findall(r"event=worker-start worker=\d+ pid=(\d+)",
                                       proxy.log())]


def stop(proxy):
    """SIGTERM, and the pids that must have ended under the hook."""
    pids = [proxy.proc.pid] + worker_pids(proxy)
    assert proxy.stop() == 0, proxy.log()
    return pids


@pytest.fixture(scope="module")
def marked_servers(servers):
    """The module's own Dovecot and Postfix, alice's password a marker."""
    password = MARK + "up"
    pd = os.path.join(servers["run"], "etc", "passdb")
    for name in os.listdir(pd):
        path = os.path.join(pd, name)
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("{PLAIN}%s\n" % servers["password"],
                                 "{PLAIN}%s\n" % password))
    return dict(servers, password=password)


# ---- the check can fail ----------------------------------------------------


def test_canary_a_marker_in_a_plain_value_is_reported(certs, tmp_path):
    """A service name is no secret and is freed as it is: reported."""
    log, env = preload(tmp_path, "canary")
    cfg = tmp_path / "c.ini"
    cfg.write_text("[svc-%s]\nprotocol = smtp\nlisten = 127.0.0.1:0\n"
                   "client_tls = none\nupstream = 127.0.0.1:25\n"
                   "upstream_tls = implicit\nupstream_name = mail.test\n"
                   "upstream_ca = %s/ca.crt\n" % (MARK, certs))
    r = run(["-t", "-c", str(cfg)], env)
    assert r.returncode == 0, r.stderr
    found = leaks(report(log))
    assert found and any("proxy" in f or "mailproxy" in f for f in found), \
        report(log)


# ---- the four paths of the issue -------------------------------------------


@pytest.fixture
def oauth(certs):
    srv = OAuth2Server(certs, prefix=MARK)
    yield srv
    srv.close()


from test_oauth2 import mail  # noqa: E402, F401  (a pytest fixture)


def send(port, subject):
    s = smtplib.SMTP("127.0.0.1", port, timeout=20)
    s.ehlo("mc.test")
    # A device's own AUTH, answered by the proxy and dropped.
    code, _ = s.docmd("AUTH", "PLAIN " + base64.b64encode(
        b"\0dev\0" + (MARK + "dev").encode()).decode())
    assert code == 235
    s.sendmail("mc@site.test", ["alice@mail.test"],
               "Subject: %s\r\n\r\nbody\r\n" % subject)
    s.quit()


def test_oauth2_refresh_and_xoauth2_login(proxies, oauth, mail, certs, tmp_path):
    """Refresh token, client secret, access tokens: in the form, the POST,
    the JSON answer, the store written, the SASL string of each session;
    and the device's own AUTH, answered locally."""
    log, env = preload(tmp_path, "refresh")
    store = str(tmp_path / "store.json")
    write_store(store, refresh=oauth.refresh)
    secret = private_file(tmp_path, "cs", MARK + "cs1\n")
    proxy = proxies(config("o", mail, oauth, certs, store,
                           extra="oauth2_client_secret_file = %s\n" % secret),
                    env=env)
    wait_for(lambda: oauth.refreshes() >= 1, timeout=20, what="first refresh")
    send(proxy.port("o"), "one")
    wait_for(lambda: oauth.refreshes() >= 3, timeout=30, what="two more refreshes")
    send(proxy.port("o"), "two")
    assert len(mail.accepted) == 2, mail.refused
    assert_clean(log, stop(proxy))


def test_device_grant(oauth, mail, certs, tmp_path):
    """mailproxy -A: the device code in each poll."""
    log, env = preload(tmp_path, "device")
    store = str(tmp_path / "store.json")
    cfg = tmp_path / "m.ini"
    cfg.write_text(config("o", mail, oauth, certs, store))
    oauth.pending = 1
    r = subprocess.run([BIN, "-c", str(cfg), "-A", "o"], capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, **env))
    assert r.returncode == 0, r.stderr
    assert len(oauth.polls) == 2
    assert_clean(log, [])
    assert "memcheck: end" in report(log)


def oversized_store(path):
    with open(path, "w") as f:
        json.dump({"refresh_token": MARK + "rt-big", "pad": "p" * 20000}, f)
    os.chmod(path, 0o600)


def test_oversized_token_store(proxies, oauth, mail, certs, tmp_path):
    """Refused as too large, by -T and by the running proxy."""
    log, env = preload(tmp_path, "oversized")
    store = str(tmp_path / "store.json")
    oversized_store(store)
    text = config("o", mail, oauth, certs, store)
    cfg = tmp_path / "m.ini"
    cfg.write_text(text)
    r = run(["-T", "-c", str(cfg)], env)
    assert "is larger than" in r.stdout + r.stderr, r.stdout + r.stderr
    proxy = proxies(text, env=env)
    proxy.wait_log(r"event=oauth2-store-unreadable svc=o .*is larger than")
    assert_clean(log, stop(proxy))


def probe_service(name, protocol, port, tls, mech, pw_file, certs):
    text = ("[%s]\nprotocol = %s\nlisten = 127.0.0.1:0\nclient_tls = none\n"
            "upstream = 127.0.0.1:%d\nupstream_tls = %s\nupstream_name = mail.test\n"
            "upstream_ca = %s/ca.crt\nupstream_auth = %s\nupstream_user = alice\n"
            "upstream_password_file = %s\nallow = 127.0.0.0/8\n"
            % (name, protocol, port, tls, certs, mech, pw_file))
    return text + ("ehlo_name = gw.test\n" if protocol == "smtp" else "")


def test_probe_with_upstream_auth(marked_servers, certs, tmp_path):
    """mailproxy -T logs in with PLAIN and LOGIN (upstream_auth is SMTP's)."""
    log, env = preload(tmp_path, "probe")
    ports = marked_servers["ports"]
    pw = private_file(tmp_path, "pw", marked_servers["password"] + "\n")
    cfg = tmp_path / "t.ini"
    cfg.write_text(
        probe_service("smtp-plain", "smtp", ports["smtp_submission"], "starttls",
                      "plain", pw, certs) +
        probe_service("smtp-login", "smtp", ports["smtp_smtps"], "implicit",
                      "login", pw, certs))
    r = run(["-T", "-c", str(cfg)], env)
    oks = re.findall(r"^(\S+): ok upstream=.* auth=(plain|login) ", r.stdout, re.M)
    assert len(oks) == 2, r.stdout + r.stderr
    assert_clean(log, [])
    assert "memcheck: end" in report(log)


def test_accounts_login(proxies, marked_servers, certs, tmp_path):
    """A client's password to the proxy, the account's password upstream,
    over IMAP, POP3 and SMTP (PLAIN and LOGIN); a wrong password too."""
    log, env = preload(tmp_path, "accounts")
    local = MARK + "local"
    ports = marked_servers["ports"]
    pw = private_file(tmp_path, "alice.pw", marked_servers["password"] + "\n")
    text = "auth_failures_max = 1000\n"
    text += svc("imaps", "imap", ports["imaps"], "implicit", certs)
    text += svc("pop3s", "pop3", ports["pop3s"], "implicit", certs)
    text += svc("smtps", "smtp", ports["smtp_submission"], "starttls", certs)
    text += account("alice", make_hash(local), pw)
    proxy = proxies(text, env=env)
    ctx = client_ctx(certs)

    imap = imaplib.IMAP4_SSL("127.0.0.1", proxy.port("imaps"), ssl_context=ctx,
                             timeout=20)
    with pytest.raises(imaplib.IMAP4.error):
        imap.login("alice", MARK + "wrong")
    imap.logout()
    imap = imaplib.IMAP4_SSL("127.0.0.1", proxy.port("imaps"), ssl_context=ctx,
                             timeout=20)
    imap.login("alice", local)
    assert imap.select("INBOX")[0] == "OK"
    imap.logout()
    # The literal and SASL forms, with a command pipelined after the login
    # (it waits in held while the proxy logs in upstream).
    pw = local.encode()
    for login in (b"a1 LOGIN {5+}\r\nalice {%d+}\r\n%s\r\n" % (len(pw), pw),
                  b"a1 AUTHENTICATE PLAIN %s\r\n"
                  % base64.b64encode(b"\0alice\0" + pw)):
        sock, f = raw_imap(proxy.port("imaps"), certs)
        sock.sendall(login + b"a2 SELECT INBOX\r\n")
        assert read_tagged(f, b"a1")[-1].startswith(b"a1 OK ")
        assert read_tagged(f, b"a2")[-1].startswith(b"a2 OK")
        sock.sendall(b"a3 LOGOUT\r\n")
        read_tagged(f, b"a3")
        f.close()
        sock.close()

    pop = poplib.POP3_SSL("127.0.0.1", proxy.port("pop3s"), context=ctx, timeout=20)
    pop.user("alice")
    pop.pass_(local)
    assert pop.stat()[0] >= 1
    pop.quit()

    for mech in ("PLAIN", "LOGIN"):
        s = smtplib.SMTP_SSL("127.0.0.1", proxy.port("smtps"), context=ctx,
                             timeout=20)
        s.ehlo("mc.test")
        s.user, s.password = "alice", local
        s.auth(mech, getattr(s, "auth_" + mech.lower()))
        s.sendmail("alice@mail.test", ["alice@mail.test"],
                   "Subject: mc %s\r\n\r\nbody\r\n" % mech)
        s.quit()
    assert_clean(log, stop(proxy))


# ---- what a worker inherits --------------------------------------------------


def memory_holds(pid, needles):
    """Which of needles are anywhere in pid's writable memory."""
    found = set()
    with open("/proc/%d/maps" % pid) as maps, \
            open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            addr, perms = line.split()[:2]
            if not perms.startswith("rw"):
                continue
            lo, hi = (int(x, 16) for x in addr.split("-"))
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except OSError:
                continue
            found.update(n for n in needles if n.encode() in data)
    return found


def test_workers_hold_no_refresh_token_or_client_secret(proxies, oauth, mail, certs,
                                                        tmp_path):
    """Two services name one store, each with its own client secret: the
    workers, also those forked after refreshes, hold neither secret nor the
    refresh token (only the supervisor refreshes)."""
    store = str(tmp_path / "store.json")
    write_store(store, refresh=oauth.refresh)
    cs1 = private_file(tmp_path, "cs1", MARK + "cs1\n")
    cs2 = private_file(tmp_path, "cs2", MARK + "cs2\n")
    text = (config("a", mail, oauth, certs, store,
                   extra="oauth2_client_secret_file = %s\n" % cs1) +
            config("b", mail, oauth, certs, store,
                   extra="oauth2_client_secret_file = %s\n" % cs2))
    proxy = proxies(text)
    wait_for(lambda: oauth.refreshes() >= 2, timeout=20, what="two refreshes")
    proxy.reload()
    wait_for(lambda: len(worker_pids(proxy)) >= 2, what="new worker")
    send(proxy.port("b"), "through b")
    time.sleep(0.5)
    current = worker_pids(proxy)[-1]
    with oauth.lock:
        refresh_tokens = ["%srt-%d" % (MARK, i) for i in range(oauth.n + 1)]
    secrets = [MARK + "cs1", MARK + "cs2"] + refresh_tokens
    held = memory_holds(current, secrets)
    assert not held, "worker %d holds %s" % (current, sorted(held))
    assert memory_holds(proxy.proc.pid, [MARK + "cs2"]), \
        "the scan finds nothing even where the secret must be"
