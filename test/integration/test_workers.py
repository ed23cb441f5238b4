"""workers (SO_REUSEPORT, supervision, signals) and user (privilege drop)."""

import os
import pwd
import re
import signal
import time

import pytest

from helpers import free_port, recv_exact, refused, service, tls_connect, wait_for


def greeter(conn):
    conn.sendall(b"* OK hello\r\n")
    while conn.recv(4096):
        pass


def fixed(text):
    """Workers share a port only if it is named: port 0 would give each
    worker its own random port."""
    return text.replace("listen = 127.0.0.1:0", "listen = 127.0.0.1:%d" % free_port())


def hello(proxy, certs):
    s = tls_connect(proxy.port("w"), certs)
    assert recv_exact(s, 12) == b"* OK hello\r\n"
    s.close()


def worker_pids(proxy):
    return re.findall(r"event=worker-start worker=(\d+) pid=(\d+)", proxy.log())


def test_two_workers_share_the_listener(proxies, upstreams, certs):
    up = upstreams(greeter)
    proxy = proxies(fixed("workers = 2\n" + service("w", "imap", up.addr, certs)))
    proxy.wait_log(r"event=start .*worker=1")
    for _ in range(40):
        hello(proxy, certs)
    pids = wait_for(lambda: set(re.findall(r"event=close svc=w pid=(\d+)", proxy.log()))
                    if len(re.findall("event=close", proxy.log())) >= 40 else None,
                    what="40 closed sessions")
    assert len(pids) == 2                      # both workers served
    assert {p for _, p in worker_pids(proxy)} == pids


def test_dead_worker_is_replaced(proxies, upstreams, certs):
    up = upstreams(greeter)
    proxy = proxies(fixed("workers = 2\n" + service("w", "imap", up.addr, certs)))
    proxy.wait_log(r"event=start .*worker=1")
    victim = int(worker_pids(proxy)[0][1])
    os.kill(victim, signal.SIGKILL)
    proxy.wait_log(r"event=worker-died worker=0 pid=%d" % victim)
    proxy.wait_log(r"event=worker-start worker=0", count=2)
    assert len(worker_pids(proxy)) == 3
    for _ in range(5):
        hello(proxy, certs)


def test_sighup_renews_every_worker_and_a_broken_file_none(proxies, upstreams, certs):
    """The supervisor loads once; a new generation of workers runs the new
    snapshot and the old one drains.  A broken file changes nothing."""
    up = upstreams(greeter)
    text = fixed("workers = 2\n" + service("w", "imap", up.addr, certs))
    proxy = proxies(text)
    proxy.wait_log(r"event=start .*worker=1")
    old = {int(p) for _, p in worker_pids(proxy)}
    proxy.signal(signal.SIGHUP)
    proxy.wait_log(r"event=reload-ok")
    proxy.wait_log(r"event=worker-start worker=\d", count=4)
    proxy.wait_log(r"event=worker-drained", count=2)
    assert {int(p) for p in re.findall(r"event=worker-drained pid=(\d+)", proxy.log())} == old
    proxy.rewrite(text + "bogus = 1\n")
    proxy.signal(signal.SIGHUP)
    proxy.wait_log(r"reload failed, keeping the running configuration")
    time.sleep(0.5)
    assert len(re.findall(r"event=reload-ok", proxy.log())) == 1
    assert len(worker_pids(proxy)) == 4                             # no new worker
    hello(proxy, certs)


def test_worker_restarted_after_a_reload_runs_the_reloaded_config(proxies, upstreams,
                                                                  certs):
    """The supervisor keeps the configuration its last good SIGHUP checked:
    a worker restarted later must not come back on the start-up file."""
    up = upstreams(greeter)
    first, second = free_port(), free_port()
    text = "workers = 2\n" + service("w", "imap", up.addr, certs)
    proxy = proxies(text.replace("127.0.0.1:0", "127.0.0.1:%d" % first))
    proxy.wait_log(r"event=start .*worker=1")
    proxy.rewrite(text.replace("127.0.0.1:0", "127.0.0.1:%d" % second))
    proxy.signal(signal.SIGHUP)
    proxy.wait_log(r"event=reload-ok")
    proxy.wait_log(r"event=worker-start worker=0", count=2)
    victim = int(worker_pids(proxy)[-2][1])         # the new generation's worker 0
    os.kill(victim, signal.SIGKILL)
    proxy.wait_log(r"event=worker-died worker=0 pid=%d" % victim)
    proxy.wait_log(r"event=worker-start worker=0", count=3)
    # The restarted worker inherited the reloaded snapshot and its sockets:
    # nothing was loaded or bound again.
    assert len(re.findall(r"event=listen svc=w addr=127\.0\.0\.1:%d " % second,
                          proxy.log())) == 1
    assert len(re.findall(r"event=listen svc=w addr=127\.0\.0\.1:%d " % first,
                          proxy.log())) == 1
    wait_for(lambda: refused(first), what="the old port closed")
    w1 = [int(p) for w, p in worker_pids(proxy) if w == "1"][-1]
    os.kill(w1, signal.SIGKILL)                                  # worker 1 as well
    proxy.wait_log(r"event=worker-start worker=1", count=3)
    for _ in range(4):                                           # both restarted ones
        s = tls_connect(second, certs)
        assert recv_exact(s, 12) == b"* OK hello\r\n"
        s.close()


def test_sigterm_stops_supervisor_and_workers(proxies, upstreams, certs):
    up = upstreams(greeter)
    proxy = proxies(fixed("workers = 2\n" + service("w", "imap", up.addr, certs)))
    proxy.wait_log(r"event=start .*worker=1")
    pids = [int(p) for _, p in worker_pids(proxy)]
    assert proxy.stop() == 0
    for pid in pids:
        assert not os.path.exists("/proc/%d" % pid) or \
            open("/proc/%d/stat" % pid).read().split()[2] == "Z"


@pytest.mark.parametrize("workers", [1, 2])
def test_privileges_are_dropped_after_binding(proxies, upstreams, certs, workers):
    if os.geteuid() != 0:
        pytest.skip("the privilege drop test needs root (CI runs as root)")
    nobody = pwd.getpwnam("nobody")
    up = upstreams(greeter)
    proxy = proxies(fixed("user = nobody\nworkers = %d\n" % workers +
                          service("w", "imap", up.addr, certs)))
    proxy.wait_log(r"event=privileges-dropped user=nobody", count=workers)
    pids = [int(p) for _, p in worker_pids(proxy)] or [proxy.proc.pid]
    for pid in pids:
        status = open("/proc/%d/status" % pid).read()
        uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", status, re.M).groups()
        assert set(uids) == {str(nobody.pw_uid)}     # real, effective, saved, fs
        gids = re.search(r"^Gid:\s+(\d+)\s+(\d+)\s+(\d+)", status, re.M).groups()
        assert set(gids) == {str(nobody.pw_gid)}
    hello(proxy, certs)


def test_root_without_user_is_warned(proxies, upstreams, certs):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    up = upstreams(greeter)
    proxy = proxies(service("w", "imap", up.addr, certs))
    assert "running as root: set user = NAME" in proxy.log()
