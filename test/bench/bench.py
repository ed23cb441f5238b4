#!/usr/bin/python3
"""make bench: mailproxy side by side with stunnel4 and HAProxy, same certs,
same loader (loadgen, libev + BoringSSL), same backend, one worker each,
runs alternated and repeated; medians, ratios mailproxy/peer, and proxy CPU
from /proc.  Writes a Markdown table to test/bench/results/ and prints it.

Environment: BENCH_SECONDS (per run, default 3), BENCH_REPS (default 3),
BENCH_IDLE (sessions for the idle test, default 9000: the proxy needs two
fds per session and the hard RLIMIT_NOFILE here is 20000)."""

import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build")
CERTS = os.path.join(ROOT, "certs", "dev")
SECONDS = int(os.environ.get("BENCH_SECONDS", "3"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
IDLE_N = int(os.environ.get("BENCH_IDLE", "9000"))
BIG_IDLE_N = int(os.environ.get("BENCH_IDLE_BIG", "50000"))
HZ = os.sysconf("SC_CLK_TCK")
WORK = tempfile.mkdtemp(prefix="mpbench.")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_listen(port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-Hltn", "sport = :%d" % port],
                             capture_output=True, text=True).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise RuntimeError("nothing listens on %d" % port)


def tree(pid):
    """pid and its descendants (mailproxy's supervisor and its workers)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return pids


def cpu_seconds(pid):
    """utime + stime of a process tree (all threads), in seconds."""
    total = 0
    for p in tree(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / HZ


def rss_kib(pid):
    total = 0
    for p in tree(pid):
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class Server:
    def __init__(self, argv, port, name):
        self.name = name
        self.log = open(os.path.join(WORK, name + ".log"), "a")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        wait_listen(port)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def backend(mode, cert="server-ecdsa", upstream=None, procs=1):
    port = free_port()
    argv = [os.path.join(BUILD, "backend"), "-m", mode, "-l", str(port), "-f", str(procs)]
    if mode in ("starttls", "tls", "tlsecho", "tlsdial"):
        argv += ["-c", "%s/%s.crt" % (CERTS, cert), "-k", "%s/%s.key" % (CERTS, cert)]
    if upstream is not None:
        argv += ["-u", str(upstream)]
    return Server(argv, port, "backend-" + mode), port


# ---- the peers: the same job, configured alike ---------------------------

def start_mailproxy(kind, bport, cert, proto="smtp", workers=1, extra=""):
    port = free_port()
    svc = {
        "tls": "client_tls = implicit\nupstream_tls = none\n",
        "offer": "client_tls = starttls\nupstream_tls = none\nehlo_name = bench\n",
        "upgrade": ("client_tls = none\nupstream_tls = starttls\nupstream_name = localhost\n"
                    "upstream_ca = %s/ca.crt\nehlo_name = bench\n" % CERTS),
    }[kind]
    text = ("log_level = warn\nmax_connections = 200000\nworkers = %d\nwatch_files = no\n"
            "[bench]\nprotocol = %s\nlisten = 127.0.0.1:%d\n%supstream = 127.0.0.1:%d\n%s"
            % (workers, proto, port, svc, bport, extra))
    if kind != "upgrade":
        text += "cert = %s/%s.crt\nkey = %s/%s.key\n" % (CERTS, cert, CERTS, cert)
    path = os.path.join(WORK, "mailproxy.ini")
    with open(path, "w") as f:
        f.write(text)
    return Server([os.path.join(BUILD, "mailproxy"), "-c", path], port, "mailproxy"), port


def start_haproxy(kind, bport, cert, proto="smtp"):
    if kind != "tls":
        return None, None        # HAProxy has no STARTTLS
    port = free_port()
    pem = os.path.join(WORK, cert + ".pem")
    with open(pem, "w") as f:
        for ext in ("crt", "key"):
            f.write(open("%s/%s.%s" % (CERTS, cert, ext)).read())
    text = """global
  nbthread 1
  maxconn 9800
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode tcp
  timeout connect 10s
  timeout client 600s
  timeout server 600s
frontend f
  bind 127.0.0.1:%d ssl crt %s
  default_backend b
backend b
  server s1 127.0.0.1:%d
""" % (port, pem, bport)
    path = os.path.join(WORK, "haproxy.cfg")
    with open(path, "w") as f:
        f.write(text)
    return Server(["haproxy", "-db", "-f", path], port, "haproxy"), port


def start_stunnel(kind, bport, cert, proto="smtp"):
    port = free_port()
    text = "foreground = yes\npid =\ndebug = 3\n[bench]\naccept = 127.0.0.1:%d\n" \
           "connect = 127.0.0.1:%d\n" % (port, bport)
    if kind in ("tls", "offer"):
        text += "cert = %s/%s.crt\nkey = %s/%s.key\n" % (CERTS, cert, CERTS, cert)
    if kind == "offer":
        text += "protocol = %s\n" % proto
    if kind == "upgrade":
        text += ("client = yes\nprotocol = %s\nverifyChain = yes\nCAfile = %s/ca.crt\n"
                 "checkHost = localhost\n" % (proto, CERTS))
    path = os.path.join(WORK, "stunnel.conf")
    with open(path, "w") as f:
        f.write(text)
    return Server(["stunnel4", path], port, "stunnel"), port


def start_nginx(kind, bport, cert, proto="smtp", workers=1, extra=""):
    """nginx 1.22 from Debian: the stream module for implicit TLS, the mail
    module for STARTTLS offered (it answers the dialogue itself, as the
    proxy does; its auth_http is never reached by the loader's NOOP)."""
    if kind == "upgrade":
        return None, None        # nginx has no STARTTLS toward the upstream
    port = free_port()
    crt, key = "%s/%s.crt" % (CERTS, cert), "%s/%s.key" % (CERTS, cert)
    text = ("load_module /usr/lib/nginx/modules/ngx_%s_module.so;\n"
            "daemon off;\nmaster_process on;\nworker_processes %d;\n"
            "worker_rlimit_nofile 200000;\npid %s/nginx.pid;\n"
            "error_log %s/nginx-error.log error;\n"
            "events { worker_connections 100000; }\n"
            % ("stream" if kind == "tls" else "mail", workers, WORK, WORK))
    if kind == "tls":
        text += ("stream { server { listen 127.0.0.1:%d ssl; ssl_certificate %s; "
                 "ssl_certificate_key %s; ssl_protocols TLSv1.2 TLSv1.3; "
                 "proxy_pass 127.0.0.1:%d; } }\n" % (port, crt, key, bport))
    else:
        text += ("mail { server_name bench; auth_http 127.0.0.1:%d/auth; "
                 "server { listen 127.0.0.1:%d; protocol %s; starttls only; "
                 "ssl_certificate %s; ssl_certificate_key %s; "
                 "ssl_protocols TLSv1.2 TLSv1.3; smtp_auth none; } }\n"
                 % (bport, port, proto, crt, key))
    path = os.path.join(WORK, "nginx.conf")
    with open(path, "w") as f:
        f.write(text)
    return Server(["nginx", "-c", path, "-p", WORK], port, "nginx"), port


def start_floor(kind, bport, cert, proto="smtp"):
    """A bare BoringSSL TLS server: the library's own cost, no proxying (it
    answers itself: the greeting, or the echo of the throughput runs)."""
    if kind not in ("tls", "tls-echo"):
        return None, None
    return backend("tlsecho" if kind == "tls-echo" else "tls", cert)


def start_dial_floor(kind, bport, cert, proto="smtp"):
    """The same server dialling the backend for each session and relaying
    both ways, with nothing else: the floor of a per-session upstream."""
    if kind != "tls":
        return None, None
    return backend("tlsdial", cert, upstream=bport)


PEERS = {"mailproxy": start_mailproxy, "nginx": start_nginx, "haproxy": start_haproxy,
         "stunnel": start_stunnel, "boringssl-floor": start_floor,
         "boringssl-dial-floor": start_dial_floor}
FLOORS = ("boringssl-floor", "boringssl-dial-floor")
ONLY = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))


def section(name):
    """BENCH_ONLY=handshake,throughput,... runs those sections alone."""
    return not ONLY or name in ONLY


def loadgen(args, env=None):
    r = subprocess.run([os.path.join(BUILD, "loadgen")] + args, capture_output=True,
                       text=True, env=dict(os.environ, **(env or {})), timeout=300)
    out = dict(kv.split("=", 1) for kv in r.stdout.split() if "=" in kv)
    return out


def run_rate(peer, kind, cert, bmode, args, env=None, proto="smtp", reload_at=None,
             **peer_kw):
    """One run: returns (rate, p99, cpu_us_per_session, errors, resumed
    share) or None.  reload_at: seconds into the run when the peer gets a
    SIGHUP (a reload)."""
    import threading
    bsrv, bport = backend(bmode)
    srv, port = PEERS[peer](kind, bport, cert, proto, **peer_kw)
    if srv is None:
        bsrv.stop()
        return None
    timer = None
    if reload_at is not None:
        timer = threading.Timer(reload_at, srv.proc.send_signal, (signal.SIGHUP,))
    try:
        c0 = cpu_seconds(srv.proc.pid)
        if timer is not None:
            timer.start()
        out = loadgen(["-a", "127.0.0.1:%d" % port, "-d", str(SECONDS)] + args, env)
        c1 = cpu_seconds(srv.proc.pid)
    finally:
        if timer is not None:
            timer.cancel()
        srv.stop()
        bsrv.stop()
    sessions = int(out.get("sessions", 0))
    if sessions == 0:
        return None
    return (float(out["rate"]), float(out["p99_ms"]), (c1 - c0) / sessions * 1e6,
            int(out.get("errors", 0)), int(out.get("resumed", 0)) / sessions)


def run_throughput(peer, conc):
    bsrv, bport = backend("echo")
    srv, port = PEERS[peer]("tls-echo" if peer == "boringssl-floor" else "tls", bport,
                            "server-ecdsa")
    if srv is None:
        bsrv.stop()
        return None
    try:
        c0 = cpu_seconds(srv.proc.pid)
        out = loadgen(["-m", "throughput", "-a", "127.0.0.1:%d" % port, "-c", str(conc),
                       "-d", str(SECONDS)])
        c1 = cpu_seconds(srv.proc.pid)
    finally:
        srv.stop()
        bsrv.stop()
    mbps = float(out.get("rx_mbps", 0))
    secs = float(out.get("seconds", SECONDS)) + 1.0      # warm-up included in CPU
    gb = mbps * secs / 1000.0 * 2                         # both directions relayed
    return (mbps, (c1 - c0) / gb if gb else 0.0)


def run_idle(peer):
    bsrv, bport = backend("greet")
    srv, port = PEERS[peer]("tls", bport, "server-ecdsa", "imap")
    if srv is None:
        bsrv.stop()
        return None
    try:
        time.sleep(0.3)
        r0 = rss_kib(srv.proc.pid)
        lg = subprocess.Popen([os.path.join(BUILD, "loadgen"), "-m", "idle", "-a",
                               "127.0.0.1:%d" % port, "-n", str(IDLE_N), "-d", "120",
                               "-S", "4"], stdout=subprocess.PIPE, text=True)
        line = lg.stdout.readline()
        time.sleep(1.0)
        r1 = rss_kib(srv.proc.pid)
        lg.send_signal(signal.SIGKILL)
        lg.wait()
        ok = int(line.split("sessions=")[1].split()[0]) if "sessions=" in line else 0
    finally:
        srv.stop()
        bsrv.stop()
    return ((r1 - r0) / ok if ok else None, ok)


def run_idle_sharded(n, workers=8, per_loader=8000):
    """n idle TLS sessions through one mailproxy, spread so that no process
    needs more descriptors than a container's hard RLIMIT_NOFILE (20,000
    here; raising it needs CAP_SYS_RESOURCE): 8 workers, loaders of 8,000
    sessions, backends of 4 processes, and two services on two backend ports
    (one 127.0.0.1 destination has 28,232 source ports).  Returns (KiB per
    session, sessions held)."""
    backs = [backend("greet", procs=4) for _ in range(2)]
    ports = [free_port(), free_port()]
    text = "log_level = warn\nmax_connections = 200000\nworkers = %d\nwatch_files = no\n" % workers
    for i, (port, (_, bport)) in enumerate(zip(ports, backs)):
        text += ("[idle%d]\nprotocol = imap\nlisten = 127.0.0.1:%d\nclient_tls = implicit\n"
                 "upstream_tls = none\nupstream = 127.0.0.1:%d\ncert = %s/server-ecdsa.crt\n"
                 "key = %s/server-ecdsa.key\n" % (i, port, bport, CERTS, CERTS))
    path = os.path.join(WORK, "idle-big.ini")
    with open(path, "w") as f:
        f.write(text)
    srv = Server([os.path.join(BUILD, "mailproxy"), "-c", path], ports[0], "mailproxy-idle")
    loaders = []
    try:
        wait_listen(ports[1])
        time.sleep(0.5)
        r0 = rss_kib(srv.proc.pid)
        left = n
        while left > 0:
            k = min(per_loader, left)
            loaders.append(subprocess.Popen(
                [os.path.join(BUILD, "loadgen"), "-m", "idle", "-a",
                 "127.0.0.1:%d" % ports[len(loaders) % 2], "-n", str(k), "-d", "600",
                 "-S", "8"], stdout=subprocess.PIPE, text=True))
            left -= k
        ok = 0
        for lg in loaders:
            line = lg.stdout.readline()
            ok += int(line.split("sessions=")[1].split()[0]) if "sessions=" in line else 0
        time.sleep(2.0)
        r1 = rss_kib(srv.proc.pid)
    finally:
        for lg in loaders:
            lg.send_signal(signal.SIGKILL)
            lg.wait()
        srv.stop()
        for b, _ in backs:
            b.stop()
    return ((r1 - r0) / ok if ok else None, ok)


def run_reload_pause(binary, workers, reloads=10, sessions=20):
    """The longest pause open echo sessions see while SIGHUP reloads a
    realistic file (two services, RSA + ECDSA pairs, the system CA bundle,
    a name to resolve) 10 times under handshake load.  Returns (max ms,
    median round trip ms)."""
    import ssl
    import threading
    bsrv, bport = backend("echo")
    port, port2 = free_port(), free_port()
    text = ("log_level = warn\nworkers = %d\n[echo]\nprotocol = imap\n"
            "listen = 127.0.0.1:%d\nclient_tls = implicit\n"
            "cert = %s/server-ecdsa.crt\nkey = %s/server-ecdsa.key\n"
            "cert = %s/server-rsa.crt\nkey = %s/server-rsa.key\n"
            "upstream = 127.0.0.1:%d\nupstream_tls = none\n"
            "[other]\nprotocol = smtp\nlisten = 127.0.0.1:%d\nclient_tls = implicit\n"
            "cert = %s/server-rsa.crt\nkey = %s/server-rsa.key\n"
            "upstream = localhost:465\nupstream_tls = implicit\n" % (
                workers, port, CERTS, CERTS, CERTS, CERTS, bport, port2, CERTS, CERTS))
    path = os.path.join(WORK, "reload.ini")
    with open(path, "w") as f:
        f.write(text)
    srv = Server([binary, "-c", path], port, "reload-%d" % workers)
    ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca.crt"))
    stop, worst, rtts = threading.Event(), [0.0], []

    def pinger():
        """One thread, every session in turn: no lock between threads
        adds to what is measured."""
        import selectors
        sel = selectors.DefaultSelector()
        socks = []
        for _ in range(sessions):
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                                server_hostname="localhost")
            s.setblocking(False)
            socks.append(s)
            sel.register(s, selectors.EVENT_READ)
        sent = {}
        for s in socks:
            sent[s] = time.monotonic()
            s.sendall(b"a NOOP\r\n")
        got = {s: 0 for s in socks}
        while not stop.is_set():
            for key, _ in sel.select(0.05):
                s = key.fileobj
                try:
                    while True:
                        got[s] += len(s.recv(4096))
                except (ssl.SSLWantReadError, BlockingIOError):
                    pass
                if got[s] >= 8:
                    now = time.monotonic()
                    dt = (now - sent[s]) * 1000
                    rtts.append(dt)
                    worst[0] = max(worst[0], dt)
                    got[s] -= 8
                    sent[s] = now
                    s.setblocking(True)
                    s.sendall(b"a NOOP\r\n")
                    s.setblocking(False)
        for s in socks:
            s.close()

    threads = [threading.Thread(target=pinger)]
    try:
        for t in threads:
            t.start()
        load = subprocess.Popen([os.path.join(BUILD, "loadgen"), "-m", "handshake", "-a",
                                 "127.0.0.1:%d" % port2, "-c", "2", "-d",
                                 str(reloads * 0.5 + 2)], stdout=subprocess.DEVNULL)
        time.sleep(1.0)
        worst[0] = 0.0                       # the connect phase does not count
        for _ in range(reloads):
            srv.proc.send_signal(signal.SIGHUP)
            time.sleep(0.5)
        if reloads == 0:
            time.sleep(5)
        load.wait(60)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        srv.stop()
        bsrv.stop()
    return worst[0], statistics.median(rtts) if rtts else None


def stall_config(bport, nservices=20, naccounts=200):
    """A file of nservices services (one of them logging in with accounts)
    and naccounts accounts, each with its own hash (mailproxy -H)."""
    import concurrent.futures
    pw = os.path.join(WORK, "upstream.pw")
    with open(pw, "w") as f:
        f.write("secret\n")
    os.chmod(pw, 0o600)

    def make_hash(i):
        r = subprocess.run([os.path.join(BUILD, "mailproxy"), "-H"], input="pw%d\n" % i,
                           capture_output=True, text=True, timeout=60)
        return r.stdout.strip().split(" = ", 1)[1]
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as ex:
        hashes = list(ex.map(make_hash, range(naccounts)))
    text = "log_level = debug\nworkers = 1\nwatch_files = no\n"
    for i in range(nservices):
        text += ("[s%d]\nprotocol = imap\nlisten = 127.0.0.1:%d\nclient_tls = implicit\n"
                 "cert = %s/server-ecdsa.crt\nkey = %s/server-ecdsa.key\n"
                 "upstream = localhost:%d\nupstream_tls = implicit\n"
                 "upstream_name = localhost\nupstream_ca = %s/ca.crt\n"
                 % (i, free_port(), CERTS, CERTS, bport, CERTS))
        if i == 0:
            text += "upstream_auth = accounts\n"
    for i, h in enumerate(hashes):
        text += ("[account:user%d]\npassword_hash = %s\nupstream_user = user%d\n"
                 "upstream_password_file = %s\n" % (i, h, i, pw))
    return text


def run_supervisor_stall(binary, reloads=5):
    """The longest stall of the supervisor's loop (which also refreshes
    OAuth2 tokens) while SIGHUP reloads a file of 200 accounts and 20
    services: the event=supervisor-stall lines it logs (debug, > 5 ms).
    Returns (longest ms, median reload ms)."""
    bsrv, bport = backend("tls")
    path = os.path.join(WORK, "stall.ini")
    with open(path, "w") as f:
        f.write(stall_config(bport))
    logpath = os.path.join(WORK, "stall.log")
    log = open(logpath, "w+")
    proc = subprocess.Popen([binary, "-c", path], stdout=log, stderr=subprocess.STDOUT)

    def text():
        with open(logpath) as f:
            return f.read()

    def wait(pattern, count):
        deadline = time.monotonic() + 120
        while len(re.findall(pattern, text())) < count:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("mailproxy: no %s:\n%s" % (pattern, text()[-2000:]))
            time.sleep(0.02)
    took = []
    try:
        wait("event=start ", 1)
        time.sleep(1)
        skip = len(re.findall(r"event=supervisor-stall ms=(\d+)", text()))
        for n in range(reloads):
            t0 = time.monotonic()
            proc.send_signal(signal.SIGHUP)
            wait("event=reload-ok", n + 1)
            took.append((time.monotonic() - t0) * 1000)
            time.sleep(0.5)
        stalls = [int(x) for x in re.findall(r"event=supervisor-stall ms=(\d+)", text())[skip:]]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        bsrv.stop()
    # Under 5 ms nothing is logged: the row says "< 5".
    return (max(stalls) if stalls else None), statistics.median(took)


def median_runs(fn, peers, *args):
    """Alternates peers within each repetition; returns {peer: [results]}."""
    results = {p: [] for p in peers}
    for rep in range(REPS):
        order = peers if rep % 2 == 0 else list(reversed(peers))
        for p in order:
            r = fn(p, *args)
            if r is not None:
                results[p].append(r)
    return results


def med(values, i):
    return statistics.median(v[i] for v in values) if values else None


def fmt(x, nd=0):
    return "-" if x is None else ("%.*f" % (nd, x))


def rate_rows(title, res, peers):
    """Table rows for a sessions/s test: medians, and mailproxy's rate and
    CPU per session over each peer's."""
    mine, mine_cpu = med(res["mailproxy"], 0), med(res["mailproxy"], 2)
    rows = []
    for p in peers:
        rate, p99, cpu = med(res[p], 0), med(res[p], 1), med(res[p], 2)
        ratio = "" if p == "mailproxy" or not rate else "%.2f" % (mine / rate)
        cpu_ratio = "" if p == "mailproxy" or not cpu or not mine_cpu else \
            "%.2f" % (mine_cpu / cpu)
        rows.append("| %s | %s | %s | %s | %s | %s | %s |" % (title, p, fmt(rate),
                    fmt(p99, 1), fmt(cpu), ratio, cpu_ratio))
    return rows


def handshake_rows():
    """Full handshakes against every peer and both floors; STARTTLS rows."""
    hs_peers = ["mailproxy", "nginx", "haproxy", "stunnel", "boringssl-floor",
                "boringssl-dial-floor"]
    scen = [
        ("handshake ECDSA P-256, TLS 1.3, C=50", "server-ecdsa", {}),
        ("handshake RSA-2048, TLS 1.3, C=50", "server-rsa", {}),
        ("handshake ECDSA P-256, TLS 1.2, C=50", "server-ecdsa", {"LOADGEN_TLS12": "1"}),
        ("handshake RSA-2048, TLS 1.2, C=50", "server-rsa", {"LOADGEN_TLS12": "1"}),
    ]
    lines = ["", "| test | peer | sessions/s | p99 ms | proxy CPU µs/session | "
             "mailproxy/peer | CPU mailproxy/peer |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for title, cert, env in scen:
        res = median_runs(lambda p: run_rate(p, "tls", cert,
                                             "tls" if p == "boringssl-floor" else "greet",
                                             ["-m", "handshake", "-c", "50"], env), hs_peers)
        lines += rate_rows(title, res, hs_peers)
    for title, kind, bmode, proto, args in [
            ("STARTTLS offered to clients (smtp), C=50", "offer", "smtp", "smtp",
             ["-m", "starttls", "-p", "smtp", "-c", "50"]),
            ("legacy upgrade: plain client -> STARTTLS upstream (smtp), C=50", "upgrade",
             "starttls", "smtp", ["-m", "upgrade", "-c", "50"])]:
        peers = ["mailproxy", "nginx", "stunnel"]
        res = median_runs(lambda p: run_rate(p, kind, "server-ecdsa", bmode, args,
                                             proto=proto), peers)
        lines += rate_rows(title, res, peers)
    return lines


def resumption_rows():
    """Resumed handshakes with 2 workers; upstream resumption on and off."""
    # Resumption: 2 workers each; the share of attempted resumptions that
    # resumed (the loader offers the first session's ticket or ID again).
    lines = ["", "| test | peer | sessions/s | p99 ms | proxy CPU µs/session | "
             "resumed share | mailproxy/peer |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    # The loader keeps offering its first session: a reload one second in
    # shows whether sessions from before it still resume after it.
    for title, env, reload_at in (
            ("resumed handshakes ECDSA, TLS 1.3, 2 workers, C=50", {}, None),
            ("resumed handshakes ECDSA, TLS 1.2, 2 workers, C=50",
             {"LOADGEN_TLS12": "1"}, None),
            ("resumed, TLS 1.3, 2 workers, C=50, a reload 1 s in", {}, 1.0),
            ("resumed, TLS 1.2, 2 workers, C=50, a reload 1 s in",
             {"LOADGEN_TLS12": "1"}, 1.0)):
        peers = ["mailproxy", "nginx"]
        res = median_runs(lambda p: run_rate(p, "tls", "server-ecdsa", "greet",
                                             ["-m", "handshake", "-r", "-c", "50"], env,
                                             reload_at=reload_at, workers=2), peers)
        mine = med(res["mailproxy"], 0)
        for p in peers:
            rate = med(res[p], 0)
            lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                title, p, fmt(rate), fmt(med(res[p], 1), 1), fmt(med(res[p], 2)),
                fmt(100 * med(res[p], 4) if res[p] else None) + "%",
                "" if p == "mailproxy" or not rate else "%.2f" % (mine / rate)))
    # Legacy upgrade with and without upstream resumption (CPU per session).
    for label, extra in (("upstream_resumption = yes", ""),
                         ("upstream_resumption = no", "upstream_resumption = no\n")):
        res = median_runs(lambda p: run_rate(p, "upgrade", "server-ecdsa", "starttls",
                                             ["-m", "upgrade", "-c", "50"], extra=extra),
                          ["mailproxy"])
        lines.append("| legacy upgrade (smtp), %s | mailproxy | %s | %s | %s | | |" % (
            label, fmt(med(res["mailproxy"], 0)), fmt(med(res["mailproxy"], 1), 1),
            fmt(med(res["mailproxy"], 2))))
    return lines


def throughput_rows():
    """Bytes relayed both ways at C=1 and C=16."""
    lines = ["", "| test | peer | MB/s each way | proxy CPU s/GB | mailproxy/peer | "
             "CPU mailproxy/peer |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for conc in (1, 16):
        peers = ["mailproxy", "nginx", "haproxy", "stunnel", "boringssl-floor",
                 "boringssl-dial-floor"]
        res = median_runs(run_throughput, peers, conc)
        mine, mine_cpu = med(res["mailproxy"], 0), med(res["mailproxy"], 1)
        for p in peers:
            mb, cpu = med(res[p], 0), med(res[p], 1)
            ratio = "" if p == "mailproxy" or not mb else "%.2f" % (mine / mb)
            cpu_ratio = "" if p == "mailproxy" or not cpu else "%.2f" % (mine_cpu / cpu)
            lines.append("| throughput ECDSA TLS 1.3, C=%d | %s | %s | %s | %s | %s |" % (
                conc, p, fmt(mb), fmt(cpu, 2), ratio, cpu_ratio))
    return lines


def idle_rows():
    """Memory per idle TLS session."""
    lines = ["", "| test | peer | KiB per idle TLS session | sessions held |",
              "| --- | --- | ---: | ---: |"]
    for p in ["mailproxy", "nginx", "haproxy", "stunnel"]:
        vals = [run_idle(p) for _ in range(1 if IDLE_N > 20000 else REPS)]
        vals = [v for v in vals if v and v[0] is not None]
        kib = statistics.median(v[0] for v in vals) if vals else None
        held = min(v[1] for v in vals) if vals else 0
        lines.append("| idle, %d sessions through the proxy | %s | %s | %d |" % (
            IDLE_N, p, fmt(kib, 1), held))
    if BIG_IDLE_N:
        kib, held = run_idle_sharded(BIG_IDLE_N)
        lines.append("| idle, %d sessions through the proxy (8 workers) | mailproxy | %s | %d |"
                     % (BIG_IDLE_N, fmt(kib, 1), held))
    return lines


def reload_rows():
    """The longest pause sessions see while reloads run."""
    lines = ["", "| test | binary | workers | longest pause ms | median round trip ms |",
              "| --- | --- | ---: | ---: | ---: |"]
    binaries = [("this build", os.path.join(BUILD, "mailproxy"))]
    if os.environ.get("BENCH_BASELINE_BIN"):
        binaries.insert(0, ("baseline", os.environ["BENCH_BASELINE_BIN"]))
    for label, binary in binaries:
        for workers in (1, 2):
            runs = [run_reload_pause(binary, workers) for _ in range(REPS)]
            lines.append("| echo sessions while 10 reloads run under load | %s | %d | %s | %s |"
                         % (label, workers, fmt(max(r[0] for r in runs), 1),
                            fmt(statistics.median(r[1] for r in runs), 2)))
    return lines


def stall_rows():
    """The supervisor's loop during reloads of a large file."""
    lines = ["", "| test | binary | longest supervisor loop stall ms | median reload ms |",
             "| --- | --- | ---: | ---: |"]
    binaries = [("this build", os.path.join(BUILD, "mailproxy"))]
    if os.environ.get("BENCH_BASELINE_BIN"):
        binaries.insert(0, ("baseline", os.environ["BENCH_BASELINE_BIN"]))
    for label, binary in binaries:
        runs = [run_supervisor_stall(binary) for _ in range(REPS)]
        worst = [r[0] for r in runs if r[0] is not None]
        lines.append("| reloads of 200 accounts, 20 services (1 worker) | %s | %s | %s |"
                     % (label, fmt(max(worst), 0) if worst else "< 5",
                        fmt(statistics.median(r[1] for r in runs), 0)))
    return lines


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200000, 200000))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    lines = []
    if section("handshake"):
        lines += handshake_rows()
    if section("resumption"):
        lines += resumption_rows()
    if section("throughput"):
        lines += throughput_rows()
    if section("idle"):
        lines += idle_rows()
    if section("reload"):
        lines += reload_rows()
    if section("stall"):
        lines += stall_rows()
    head = ["# mailproxy benchmark", "",
            "%s, %d cores, loader and proxies on the same machine; %d s per run, "
            "median of %d runs, peers alternated; one worker/thread each. "
            "CPU from /proc (utime+stime of the proxy process). "
            "boringssl-floor: a bare BoringSSL server answering itself; "
            "boringssl-dial-floor: the same, dialling the backend per session and "
            "relaying both ways (no half-close, no close_notify)%s." % (
                time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.cpu_count(),
                SECONDS, REPS, "; sections: " + ", ".join(sorted(ONLY)) if ONLY else "")]
    table = "\n".join(head + lines) + "\n"
    outdir = os.path.join(ROOT, "test", "bench", "results")
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, time.strftime("%Y%m%d-%H%M%S.md", time.gmtime()))
    with open(path, "w") as f:
        f.write(table)
    print(table)
    print("written to %s" % os.path.relpath(path, ROOT))
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
