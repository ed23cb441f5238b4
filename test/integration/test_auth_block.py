"""The login service against an attacker who has read the code
(upstream_auth = accounts): the failed-login block holds on sessions opened
before it, a reload that removes an account refuses the checks under way,
and a block table filled with blocks still counts.

Upstream: the real Dovecot of test/mailsys (its log shows whether a login
reached it).  Clients: raw TLS sockets (byte-exact replies, PROXY headers)
and imaplib."""

import concurrent.futures
import re
import socket
import ssl
import subprocess
import threading
import time

import pytest

from helpers import client_ctx, free_port
from test_accounts import (LOCAL, OTHER, _crypt, account, check_cost, dovecot_log, make_hash,
                           private_file, raw_imap, read_tagged, slow_hash, svc)

BLOCKED = b"* BYE Too many authentication failures\r\n"
REFUSED = b"a1 NO [AUTHENTICATIONFAILED] Authentication failed\r\n"


def login(s, f, user, password, tag=b"a1"):
    s.sendall(b'%s LOGIN "%s" "%s"\r\n' % (tag, user.encode(), password.encode()))
    return read_tagged(f, tag)


def after_reply(f):
    """What the proxy says after a reply, up to its close (b"" when closed
    at once)."""
    try:
        return f.readline()
    except (ConnectionError, ssl.SSLError, OSError):
        return b""


def dovecot_logins(servers):
    return len(re.findall(r"imap-login: Login: user=<alice>", dovecot_log(servers)))


def test_block_holds_on_sessions_opened_before_it(proxies, servers, certs, tmp_path):
    """The reproduction of the issue: six sessions opened, three failures
    on a seventh block the address; every guess on the six is refused, the
    right password included, and Dovecot sees no login."""
    good = private_file(tmp_path, "alice.pw", servers["password"] + "\n")
    p = proxies("auth_failures_max = 3\nauth_block_time = 60\n"
                + svc("imaps", "imap", servers["ports"]["imaps"], "implicit", certs)
                + account("alice", make_hash(LOCAL), good))
    port = p.port("imaps")
    opened = [raw_imap(port, certs) for _ in range(6)]
    before = dovecot_logins(servers)
    s, f = raw_imap(port, certs)
    for i in range(3):
        reply = login(s, f, "alice", "guess%d" % i, tag=b"t%d" % i)
        assert reply[-1].startswith(b"t%d NO [AUTHENTICATIONFAILED]" % i)
    p.wait_log(r"event=auth-blocked client=127\.0\.0\.1")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        raw_imap(port, certs)                   # new connections: refused
    # Five more guesses on the sessions opened before, then the right one.
    for i, (s, f) in enumerate(opened):
        password = LOCAL if i == len(opened) - 1 else "late-guess%d" % i
        assert login(s, f, "alice", password) == [REFUSED], i
        assert after_reply(f) == BLOCKED, i
        assert after_reply(f) == b"", i
    log = p.log()
    assert len(re.findall(r"event=auth-blocked client=127\.0\.0\.1 \S+ "
                          r"detail=\"blocked before the check\"", log)) == 6
    assert "event=login " not in log
    time.sleep(0.3)
    assert dovecot_logins(servers) == before


def test_pipelined_logins_get_at_most_the_limit_of_checks(proxies, servers, certs,
                                                          tmp_path):
    """Logins sent at once on many sessions: no more than auth_failures_max
    of them are checked, however many sessions carry them."""
    good = private_file(tmp_path, "alice.pw", servers["password"] + "\n")
    p = proxies("auth_failures_max = 3\nauth_block_time = 60\n"
                + svc("imaps", "imap", servers["ports"]["imaps"], "implicit", certs)
                + account("alice", make_hash(LOCAL), good))
    sessions = [raw_imap(p.port("imaps"), certs) for _ in range(10)]
    for i, (s, f) in enumerate(sessions):
        s.sendall(b'a1 LOGIN alice "burst%d"\r\n' % i)
    replies = [read_tagged(f, b"a1")[-1] for s, f in sessions]
    assert all(r.startswith(b"a1 NO [AUTHENTICATIONFAILED]") for r in replies)
    assert len(re.findall(r"event=auth-failed client=127\.0\.0\.1 user=alice",
                          p.log())) == 3
    assert len(re.findall(r"event=auth-blocked", p.log())) >= 7


def test_reload_removing_an_account_refuses_its_checks_under_way(proxies, servers, certs,
                                                                 tmp_path):
    """Checks queued behind a slow hash; a reload removes the account while
    they wait: each is refused, the upstream never sees the login."""
    good = private_file(tmp_path, "alice.pw", servers["password"] + "\n")
    alice, bob = slow_hash(LOCAL), slow_hash(OTHER)
    cost = check_cost(bob)
    base = "log_level = debug\n" + svc("imaps", "imap", servers["ports"]["imaps"],
                                        "implicit", certs, extra="auth_failures_max = 100")
    p = proxies(base + account("alice", alice, good) + account("bob", bob, good))
    port = p.port("imaps")
    before = dovecot_logins(servers)
    # Both checking threads busy for several checks' time (unknown names),
    # then bob's logins, queued behind them.
    fillers = [raw_imap(port, certs) for _ in range(12)]
    bobs = [raw_imap(port, certs) for _ in range(2)]
    for i, (s, f) in enumerate(fillers):
        s.sendall(b'a1 LOGIN mallory "x%d"\r\n' % i)
    time.sleep(cost / 4)
    for s, f in bobs:
        s.sendall(b'a1 LOGIN bob "%s"\r\n' % OTHER.encode())
    # Both of bob's checks queued (read and started) before the reload: on
    # a slow machine the worker may read them late, and a check that
    # starts after the reload is an unknown name, refused before this test
    # could tell.
    p.wait_log(r"event=auth-check client=127\.0\.0\.1:\d+ user=bob", count=2, timeout=30)
    p.rewrite(base + account("alice", alice, good))
    p.reload()
    for s, f in bobs:
        assert read_tagged(f, b"a1") == [REFUSED]
    # The reload landed while bob's checks waited (else the test proves
    # nothing): the new generation's listen lines, logged once the new
    # accounts are published, come before the end of bob's checks.
    log = p.log()
    assert log.rfind("event=listen") < log.find("event=auth-failed client=127.0.0.1 "
                                                "user=bob"), log
    for s, f in fillers:
        assert read_tagged(f, b"a1") == [REFUSED]
    p.wait_log(r"event=auth-failed client=127\.0\.0\.1 user=bob "
               r"detail=\"account removed by a reload\"", count=2)
    assert "event=login " not in p.log()
    time.sleep(0.3)
    assert dovecot_logins(servers) == before


def proxy_v1(src):
    return b"PROXY TCP6 %s ::1 40000 993\r\n" % src.encode()


def guess_from(port, ctx, src, password="guess"):
    """One login from src (carried in a PROXY header): 'no' (a refusal),
    'ok', or 'refused' (closed before any greeting: blocked at connect)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    try:
        raw.sendall(proxy_v1(src))
        try:
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            f = s.makefile("rb")
            if not f.readline().startswith(b"* OK"):
                return "refused"
        except (ssl.SSLError, ConnectionError, OSError):
            return "refused"
        s.sendall(b'a1 LOGIN alice "%s"\r\n' % password.encode())
        line = f.readline()
        return "ok" if line.startswith(b"a1 OK") else "no"
    finally:
        raw.close()


def scrape(mport):
    return subprocess.run(["curl", "-s", "http://127.0.0.1:%d/metrics" % mport],
                          capture_output=True, text=True, timeout=10).stdout


def metric(text, name):
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    assert m, name
    return int(m.group(1))


def test_a_table_full_of_blocks_still_counts(proxies, servers, certs, tmp_path):
    """10,000 /64s of one /48, through a trusted PROXY header, one failure
    each (auth_failures_max = 1): once the client level of the table is
    full of their blocks, their /48 is counted and blocked, so most of them
    get no check at all; the right password from a fresh /64 of that /48 is
    refused, from another network it works."""
    good = private_file(tmp_path, "alice.pw", servers["password"] + "\n")
    fast = "$6$rounds=1000$%s$" % "saltsaltsalt"
    hashed = _crypt().crypt(LOCAL, fast)
    mport = free_port()
    p = proxies("auth_failures_max = 1\nauth_block_time = 600\n"
                "metrics = 127.0.0.1:%d\n" % mport
                + svc("imaps", "imap", servers["ports"]["imaps"], "implicit", certs,
                      extra="proxy_protocol_in = yes\nproxy_trusted = 127.0.0.1\n")
                + account("alice", hashed, good))
    port = p.port("imaps")
    ctx = client_ctx(certs)
    n = 10000
    sources = ["2001:db8:77:%x::1" % i for i in range(n)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda src: guess_from(port, ctx, src), sources))
    checked, refused = results.count("no"), results.count("refused")
    assert results.count("ok") == 0
    assert checked + refused == n
    text = scrape(mport)
    size = metric(text, 'mailproxy_auth_block_table_size{level="client"}')
    # Every check counted: at most one per entry of the client level, and
    # one for the /48 (old code: all 10,000 checked, none refused).
    assert checked <= size + 1, (checked, size)
    assert refused >= n - size - 1
    assert metric(text, 'mailproxy_auth_blocked{level="net"}') == 1
    assert metric(text, 'mailproxy_auth_failures_counted_total{level="net"}') >= 1
    assert re.search(r"event=auth-table-full client=2001:db8:77:\S+ counted=/48", p.log())
    # The /48 is blocked as a whole; another network is not.
    assert guess_from(port, ctx, "2001:db8:77:ffff::9", LOCAL) == "refused"
    assert guess_from(port, ctx, "2001:db8:78::1", LOCAL) == "ok"
