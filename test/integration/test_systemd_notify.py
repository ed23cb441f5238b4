"""systemd's readiness protocol (sd_notify from libsystemd), checked with a
datagram socket of our own as NOTIFY_SOCKET: READY=1 only once the workers
accept, RELOADING=1 then READY=1 around a reload (and a failed one said in
STATUS=), STOPPING=1, watchdog pings at the interval WATCHDOG_USEC asks for,
and `mailproxy -R PID` (the unit's ExecReload) waiting for the reload.

The workers are slowed down by a preloaded library (test/notify/slowstart.c:
each worker's event loop is made SLOWSTART_MS late), so a READY=1 sent
before the workers accept arrives measurably too early."""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

import helpers
from helpers import echo, free_port, recv_exact, service, tls_connect, wait_for

SLOW_MS = 1500


class NotifySocket:
    """A bound AF_UNIX datagram socket; each message is kept with the
    monotonic time it arrived."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.msgs = []
        self.lock = threading.Lock()
        self.done = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            with self.lock:
                self.msgs.append((time.monotonic(), data.decode()))

    def all(self):
        with self.lock:
            return list(self.msgs)

    def wait(self, key, after=0, timeout=15):
        """The first message holding line key (e.g. READY=1) sent after
        index after: (index, time, text)."""
        def find():
            for i, (t, m) in enumerate(self.all()):
                if i >= after and key in m.split("\n"):
                    return (i, t, m)
            return None
        return wait_for(find, timeout=timeout, what=key)

    def close(self):
        self.done = True
        self.thread.join()
        self.sock.close()


@pytest.fixture
def notify(tmp_path):
    n = NotifySocket(str(tmp_path / "notify.sock"))
    yield n
    n.close()


@pytest.fixture
def slowstart(tmp_path):
    """The preload library, built here with the system compiler."""
    out = str(tmp_path / "slowstart.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", out,
                    os.path.join(helpers.ROOT, "test", "notify", "slowstart.c"), "-ldl"],
                   check=True)
    return out


def env_for(notify, slowstart=None, **extra):
    env = {"NOTIFY_SOCKET": notify.path}
    if slowstart:
        # ASan (make check) wants to come first; the preload is harmless.
        env.update(LD_PRELOAD=slowstart, SLOWSTART_MS=str(SLOW_MS),
                   ASAN_OPTIONS="verify_asan_link_order=0")
    env.update(extra)
    return env


def roundtrip(port, certs):
    s = tls_connect(port, certs)
    assert recv_exact(s, 11) == b"* OK echo\r\n"
    s.close()


def test_ready_only_once_the_workers_accept(proxies, upstreams, certs, notify, slowstart):
    up = upstreams(echo)
    t0 = time.monotonic()
    text = service("e", "imap", up.addr, certs).replace(
        "127.0.0.1:0", "127.0.0.1:%d" % free_port())
    proxy = proxies(text + "[global]\nworkers = 2\n", env=env_for(notify, slowstart))
    _, t_ready, msg = notify.wait("READY=1")
    # The workers' loops were SLOW_MS late: nobody accepted before that.
    assert t_ready - t0 >= SLOW_MS / 1000, (t_ready - t0, notify.all())
    assert re.search(r"^STATUS=sessions: 0; no reload since the start$",
                     "\n".join(m for _, m in notify.all()), re.M), notify.all()
    roundtrip(proxy.port("e"), certs)
    assert len([m for _, m in notify.all() if "READY=1" in m.split("\n")]) == 1


def test_reload_reloading_then_ready_when_the_new_generation_accepts(
        proxies, upstreams, certs, notify, slowstart):
    up = upstreams(echo)
    proxy = proxies(service("e", "imap", up.addr, certs),
                    env=env_for(notify, slowstart))
    first, _, _ = notify.wait("READY=1")
    before = time.monotonic()
    proxy.signal(signal.SIGHUP)
    i, t_reloading, msg = notify.wait("RELOADING=1", after=first + 1)
    usec = int(re.search(r"^MONOTONIC_USEC=(\d+)$", msg, re.M).group(1))
    # The same clock as CLOCK_MONOTONIC here, taken between the two.
    assert before <= usec / 1e6 <= t_reloading, (before, usec, t_reloading)
    _, t_ready, _ = notify.wait("READY=1", after=i + 1)
    # READY=1 again only when the new (slow) generation accepts.
    assert t_ready - t_reloading >= SLOW_MS / 1000, notify.all()
    proxy.wait_log("event=reload-ok")
    status = [m for _, m in notify.all() if m.startswith("STATUS=")][-1]
    assert re.match(r"STATUS=sessions: 0; last reload \S+Z: ok$", status), status
    roundtrip(proxy.port("e"), certs)


def test_failed_reload_is_reported_in_status_then_ready(proxies, upstreams, certs, notify):
    up = upstreams(echo)
    text = service("e", "imap", up.addr, certs)
    proxy = proxies(text, env=env_for(notify))
    first, _, _ = notify.wait("READY=1")
    proxy.rewrite(text + "oops\n")
    proxy.signal(signal.SIGHUP)
    i, _, _ = notify.wait("RELOADING=1", after=first + 1)
    j, _, msg = notify.wait("READY=1", after=i + 1)
    status = "\n".join(m for _, m in notify.all()[i + 1:j + 1])
    assert re.search(r"^STATUS=sessions: 0; last reload \S+Z: FAILED, the previous "
                     r"configuration still runs: %s:\d+: .*syntax error"
                     % re.escape(proxy.config), status, re.M), status
    roundtrip(proxy.port("e"), certs)


def test_stopping_on_sigterm(proxies, upstreams, certs, notify):
    up = upstreams(echo)
    proxy = proxies(service("e", "imap", up.addr, certs), env=env_for(notify))
    first, _, _ = notify.wait("READY=1")
    proxy.signal(signal.SIGTERM)
    notify.wait("STOPPING=1", after=first + 1)
    assert proxy.proc.wait(10) == 0


def watchdog_proxy(proxies, up, certs, notify, tmp_path, usec, pid_of_self=True):
    """A proxy whose WATCHDOG_PID is its own PID (a shell sets it to $$ and
    execs the proxy, which keeps the PID), or another process's."""
    wrapper = tmp_path / "wrapper.sh"
    wrapper.write_text('#!/bin/sh\nWATCHDOG_PID=%s exec "%s" "$@"\n'
                       % ("$$" if pid_of_self else "1", helpers.BIN))
    wrapper.chmod(0o755)
    saved, helpers.BIN = helpers.BIN, str(wrapper)
    try:
        return proxies(service("e", "imap", up.addr, certs),
                       env=env_for(notify, WATCHDOG_USEC=str(usec)))
    finally:
        helpers.BIN = saved


def test_watchdog_pings_at_half_the_interval(proxies, upstreams, certs, notify, tmp_path):
    usec = 600000
    up = upstreams(echo)
    proxy = watchdog_proxy(proxies, up, certs, notify, tmp_path, usec)
    first, t_ready, _ = notify.wait("READY=1")
    time.sleep(8 * usec / 1e6)
    pings = [t for t, m in notify.all() if "WATCHDOG=1" in m.split("\n")]
    # Every usec/2: never later than usec (systemd would kill it), never
    # much sooner than usec/2.
    assert len(pings) >= 6, pings
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert all(usec / 4e6 <= g < usec / 1e6 for g in gaps), gaps
    assert "event=watchdog interval_ms=300" in proxy.log()


def test_no_watchdog_for_another_pid(proxies, upstreams, certs, notify, tmp_path):
    up = upstreams(echo)
    watchdog_proxy(proxies, up, certs, notify, tmp_path, 200000, pid_of_self=False)
    notify.wait("READY=1")
    time.sleep(1.0)
    assert not [m for _, m in notify.all() if "WATCHDOG=1" in m.split("\n")]


def test_reload_wait_returns_after_the_reload_and_fails_with_it(
        proxies, upstreams, certs, notify, slowstart, tmp_path):
    """ExecReload: mailproxy -R $MAINPID."""
    up = upstreams(echo)
    text = service("e", "imap", up.addr, certs)
    run = tmp_path / "run"
    run.mkdir()
    env = env_for(notify, slowstart, RUNTIME_DIRECTORY=str(run))
    proxy = proxies(text, env=env)
    first, _, _ = notify.wait("READY=1")
    t0 = time.monotonic()
    r = subprocess.run([helpers.BIN, "-R", str(proxy.proc.pid)], env=dict(os.environ, **env),
                       capture_output=True, text=True, timeout=60)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    # It returned after the new (slow) generation accepted, READY=1 sent.
    assert took >= SLOW_MS / 1000, took
    i, _, _ = notify.wait("RELOADING=1", after=first + 1)
    notify.wait("READY=1", after=i + 1, timeout=0.5)
    assert "event=reload-ok" in proxy.log()

    proxy.rewrite(text + "oops\n")
    r = subprocess.run([helpers.BIN, "-R", str(proxy.proc.pid)], env=dict(os.environ, **env),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert re.match(r"mailproxy: reload failed %s:\d+: .*syntax error"
                    % re.escape(proxy.config), r.stderr), r.stderr
    roundtrip(proxy.port("e"), certs)


def test_reload_wait_refuses_without_runtime_directory(proxies, upstreams, certs, notify):
    up = upstreams(echo)
    proxy = proxies(service("e", "imap", up.addr, certs))
    env = {k: v for k, v in os.environ.items() if k != "RUNTIME_DIRECTORY"}
    r = subprocess.run([helpers.BIN, "-R", str(proxy.proc.pid)], env=env,
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "RUNTIME_DIRECTORY is not set" in r.stderr, r.stderr
    # Not signalled: no reload happened.
    time.sleep(0.3)
    assert "event=reload " not in proxy.log()


def test_nothing_sent_without_notify_socket(proxies, upstreams, certs, tmp_path):
    """Without NOTIFY_SOCKET: no state file either, even with RUNTIME_DIRECTORY."""
    up = upstreams(echo)
    run = tmp_path / "run"
    run.mkdir()
    env = {"RUNTIME_DIRECTORY": str(run), "NOTIFY_SOCKET": ""}
    proxy = proxies(service("e", "imap", up.addr, certs), env=env)
    proxy.reload()
    assert os.listdir(str(run)) == []
    assert "event=watchdog" not in proxy.log()
