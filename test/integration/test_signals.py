"""SIGHUP reloads all-or-nothing; SIGTERM drains open sessions."""

import os
import re
import shutil
import signal
import socket
import ssl
import time

from helpers import (echo, free_port, live_certs, recv_exact, refused, service,
                     tls_connect, wait_for)


def config(certs, up, cert_dir=None, extra_global="", extra_svc=""):
    text = service("e", "imap", up.addr, certs, extra=extra_svc)
    if cert_dir:
        text = text.replace(certs + "/server-ecdsa", cert_dir + "/server-ecdsa")
    return extra_global + text


def roundtrip(port, certs, msg=b"ping\r\n"):
    s = tls_connect(port, certs)
    assert recv_exact(s, 11) == b"* OK echo\r\n"
    s.sendall(msg)
    assert recv_exact(s, len(msg)) == msg
    return s


def test_reload_with_broken_cert_keeps_running_config(proxies, upstreams, certs, tmp_path):
    up = upstreams(echo)
    live = live_certs(certs, tmp_path)
    proxy = proxies(config(certs, up, str(live)))
    port = proxy.port("e")
    open_session = roundtrip(port, certs)

    (live / "server-ecdsa.crt").write_text("garbage\n")
    proxy.reload()
    assert "reload failed, keeping the running configuration" in proxy.log()
    assert "%s:5: cert %s/server-ecdsa.crt" % (proxy.config, live) in proxy.log()
    # New sessions still get the old certificate; the open one is untouched.
    roundtrip(port, certs).close()
    open_session.sendall(b"still here\r\n")
    assert recv_exact(open_session, 12) == b"still here\r\n"
    open_session.close()
    assert proxy.proc.poll() is None


def test_reload_with_bad_syntax_keeps_running(proxies, upstreams, certs):
    up = upstreams(echo)
    proxy = proxies(config(certs, up))
    port = proxy.port("e")
    proxy.rewrite(config(certs, up) + "oops\n")
    proxy.reload()
    assert "reload failed" in proxy.log() and "syntax error" in proxy.log()
    roundtrip(port, certs).close()


def test_reload_applies_changes_and_keeps_open_sessions(proxies, upstreams, certs):
    up = upstreams(echo)
    proxy = proxies(config(certs, up))
    old_port = proxy.port("e")
    held = roundtrip(old_port, certs)
    # A second service appears, the first keeps its socket.
    proxy.rewrite(config(certs, up) + service("f", "pop3", up.addr, certs))
    proxy.reload("event=reload-ok")
    assert proxy.port("e") == old_port
    assert "f" in proxy.ports
    roundtrip(proxy.port("f"), certs).close()
    held.sendall(b"after reload\r\n")
    assert recv_exact(held, 14) == b"after reload\r\n"
    held.close()


def test_reload_with_busy_new_address_changes_nothing(proxies, upstreams, certs):
    up = upstreams(echo)
    proxy = proxies(config(certs, up))
    port = proxy.port("e")
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    busy = blocker.getsockname()[1]
    proxy.rewrite(config(certs, up) + service("f", "pop3", up.addr, certs).replace(
        "127.0.0.1:0", "127.0.0.1:%d" % busy))
    proxy.reload()
    assert "reload failed, keeping the running configuration: listen 127.0.0.1:%d" \
        % busy in proxy.log()
    roundtrip(port, certs).close()
    blocker.close()


def test_sigterm_drains_open_sessions(proxies, upstreams, certs):
    up = upstreams(echo)
    proxy = proxies(config(certs, up, extra_global="shutdown_timeout = 20\n"))
    port = proxy.port("e")
    held = roundtrip(port, certs)
    proxy.signal(signal.SIGTERM)
    proxy.wait_log("event=stopping sessions=1")
    # No new sessions: the listener is closed.
    wait_for(lambda: refused(port), what="listener closed")
    # The open session still works until it ends by itself.
    held.sendall(b"draining\r\n")
    assert recv_exact(held, 10) == b"draining\r\n"
    assert proxy.proc.poll() is None
    held.close()
    assert proxy.proc.wait(10) == 0
    assert "event=stopped" in proxy.log()


def test_sigterm_grace_period_ends(proxies, upstreams, certs):
    up = upstreams(echo)
    proxy = proxies(config(certs, up, extra_global="shutdown_timeout = 1\n"))
    held = roundtrip(proxy.port("e"), certs)
    t0 = time.monotonic()
    proxy.signal(signal.SIGTERM)
    assert proxy.proc.wait(10) == 0
    assert 0.8 < time.monotonic() - t0 < 5
    assert "reason=shutdown" in proxy.log()
    held.close()


def test_reload_under_load_loses_no_byte(proxies, upstreams, certs, tmp_path):
    """100 sessions stream through an echo upstream while SIGHUP swaps the
    certificate: every byte arrives, old sessions keep their TLS session,
    new handshakes see the new certificate."""
    import hashlib
    import threading
    up = upstreams(echo)
    live = live_certs(certs, tmp_path)
    proxy = proxies(config(certs, up, str(live)))
    port = proxy.port("e")
    payload = os.urandom(256 * 1024)
    want = hashlib.sha256(payload).hexdigest()
    results, started = [], threading.Barrier(101)

    def stream():
        s = tls_connect(port, certs, timeout=60)
        assert recv_exact(s, 11) == b"* OK echo\r\n"
        started.wait()
        got = hashlib.sha256()
        sent = 0
        for off in range(0, len(payload), 16384):
            s.sendall(payload[off:off + 16384])
            sent += 16384
            got.update(recv_exact(s, min(16384, len(payload) - off)))
            time.sleep(0.05)
        s.close()
        results.append(got.hexdigest())

    threads = [threading.Thread(target=stream) for _ in range(100)]
    for t in threads:
        t.start()
    started.wait()
    # Mid-stream: a new certificate (RSA instead of ECDSA) and a reload.
    for n, src in (("server-ecdsa.crt", "server-rsa.crt"), ("server-ecdsa.key", "server-rsa.key")):
        shutil.copy(os.path.join(certs, src), live / n)
    proxy.reload("event=reload-ok")
    # The reload really happened while the streams were running: the old
    # worker drains them (no deadline) while a new one takes new clients.
    proxy.wait_log(r"event=stopping sessions=\d+ grace=until-sessions-end")
    assert int(re.findall(r"event=stopping sessions=(\d+) grace=until-sessions-end",
                          proxy.log())[-1]) >= 90
    new = tls_connect(port, certs)
    der = new.getpeercert(binary_form=True)
    assert der == ssl.PEM_cert_to_DER_cert(open(os.path.join(certs, "server-rsa.crt")).read())
    new.close()
    for t in threads:
        t.join(120)
    assert results == [want] * 100


def test_sigquit_stops_gracefully_without_deadline(proxies, upstreams, certs):
    """SIGQUIT (nginx's graceful stop) to the supervisor: no new sessions,
    the open one runs past shutdown_timeout, then exit 0 (no core)."""
    up = upstreams(echo)
    proxy = proxies(config(certs, up, extra_global="shutdown_timeout = 1\n"))
    port = proxy.port("e")
    held = roundtrip(port, certs)
    t0 = time.monotonic()
    proxy.signal(signal.SIGQUIT)
    proxy.wait_log("event=stopping sessions=1 grace=until-sessions-end")
    wait_for(lambda: refused(port), what="listener closed")
    # Well past shutdown_timeout (measured against it, not a constant).
    time.sleep(max(0, 3 - (time.monotonic() - t0)))
    assert proxy.proc.poll() is None
    held.sendall(b"still draining\r\n")
    assert recv_exact(held, 16) == b"still draining\r\n"
    assert "reason=shutdown" not in proxy.log()
    held.close()
    assert proxy.proc.wait(10) == 0
    assert "event=stopped" in proxy.log()


def test_sigquit_then_sigterm_applies_the_deadline(proxies, upstreams, certs):
    up = upstreams(echo)
    proxy = proxies(config(certs, up, extra_global="shutdown_timeout = 1\n"))
    held = roundtrip(proxy.port("e"), certs)
    proxy.signal(signal.SIGQUIT)
    proxy.wait_log("grace=until-sessions-end")
    proxy.signal(signal.SIGTERM)
    assert proxy.proc.wait(10) == 0
    assert "reason=shutdown" in proxy.log()
    held.close()


def _children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def test_sighup_to_a_newborn_worker_does_not_kill_it(proxies, upstreams, certs):
    """Each reload forks new workers; SIGHUP is sent to each of them from
    the moment it exists until it logs its start: a worker that unmasks
    signals before its watchers exist dies of it."""
    import threading
    up = upstreams(echo)
    wport = free_port()
    text = service("e", "imap", up.addr, certs).replace(
        "127.0.0.1:0", "127.0.0.1:%d" % wport)
    proxy = proxies("[global]\nworkers = 4\n" + text)
    sup = proxy.proc.pid
    hit = set()
    stop = threading.Event()

    def hammer():
        known = set(_children(sup))
        while not stop.is_set():
            for pid in _children(sup):
                if pid in known:
                    continue
                # From its birth until it has started (or died).
                for _ in range(20000):
                    try:
                        os.kill(pid, signal.SIGHUP)
                    except ProcessLookupError:
                        break
                    hit.add(pid)
                    if "pid=%d worker=" % pid in proxy.log():
                        break
                known.add(pid)

    t = threading.Thread(target=hammer, daemon=True)
    t.start()
    try:
        for i in range(5):
            proxy.reload("event=reload-ok")
    finally:
        stop.set()
        t.join(30)
    assert len(hit) >= 10
    assert "event=worker-died" not in proxy.log()
    roundtrip(wport, certs).close()


def test_workers_stop_when_the_supervisor_dies(proxies, upstreams, certs):
    """A supervisor killed outright (SIGKILL, the OOM killer): its workers
    notice and stop instead of serving on unsupervised."""
    up = upstreams(echo)
    wport = free_port()
    text = service("e", "imap", up.addr, certs).replace(
        "127.0.0.1:0", "127.0.0.1:%d" % wport)
    proxy = proxies("[global]\nworkers = 2\nshutdown_timeout = 1\n" + text)
    proxy.wait_log(r"event=start .* worker=1 ")
    workers = _children(proxy.proc.pid)
    assert len(workers) == 2
    proxy.proc.kill()
    proxy.proc.wait()

    def gone():
        return not any(os.path.exists("/proc/%d" % pid) and
                       open("/proc/%d/stat" % pid).read().split()[2] != "Z"
                       for pid in workers)
    try:
        wait_for(gone, what="orphaned workers to stop")
    finally:
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert refused(wport)


def test_reload_raising_max_connections_grows_the_client_table(proxies, upstreams, certs):
    """Started with max_connections = 2 (a per-client table of 64 entries),
    reloaded with 200: 100 sessions from 100 distinct addresses are all
    served (the start-up table refused those past it: out-of-memory)."""
    up = upstreams(echo)
    proxy = proxies(config(certs, up, extra_global="[global]\nmax_connections = 2\n"))
    proxy.rewrite(config(certs, up, extra_global="[global]\nmax_connections = 200\n"))
    proxy.reload("event=reload-ok")
    port = proxy.port("e")
    held = []
    try:
        for i in range(100):
            s = socket.socket()
            s.bind(("127.0.%d.%d" % (1 + i // 200, 2 + i % 200), 0))
            s.settimeout(10)
            s.connect(("127.0.0.1", port))
            held.append(s)
        # Accepted after the 100 (one queue, in order): they were judged.
        last = roundtrip(port, certs)
        last.close()
        assert "out-of-memory" not in proxy.log()
    finally:
        for s in held:
            s.close()
