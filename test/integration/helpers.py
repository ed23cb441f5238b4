"""Shared pieces of the integration tests: the proxy under test, scripted
upstream servers (for behaviour a real server will not produce) and TLS
client contexts.  Everything binds 127.0.0.1 port 0 and is stopped by PID."""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("MAILPROXY_BIN", os.path.join(ROOT, "build", "mailproxy"))


def free_port():
    """A port nothing listens on right now (for configs that must name one:
    workers, metrics, a peer that refuses)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def echo(conn):
    """An upstream that greets and sends every byte back."""
    conn.sendall(b"* OK echo\r\n")
    while True:
        data = conn.recv(4096)
        if not data:
            return
        conn.sendall(data)


def live_certs(certs, tmp_path):
    """A copy of the ECDSA pair that a test may overwrite before a reload."""
    live = tmp_path / "live"
    live.mkdir()
    for n in ("server-ecdsa.crt", "server-ecdsa.key"):
        shutil.copy(os.path.join(certs, n), live / n)
    return live


def start_haproxy(cfg_text, tmp_path, port):
    """Real HAProxy (make deps installs it) on cfg_text, once it listens on
    port; the caller terminates it."""
    import pytest
    if not os.path.exists("/usr/sbin/haproxy"):
        pytest.fail("haproxy is not installed (make deps installs it)", pytrace=False)
    cfg = os.path.join(str(tmp_path), "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(cfg_text)
    hap = subprocess.Popen(["haproxy", "-db", "-f", cfg], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    wait_for(lambda: subprocess.run(["ss", "-Hltn", "sport = :%d" % port],
                                    capture_output=True, text=True).stdout.strip(),
             what="haproxy listening")
    return hap


def read_to_eof(sock):
    """Everything the peer sends until it closes."""
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk


def refused(port):
    """True if nothing accepts on 127.0.0.1:port any more."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True


def wait_for(predicate, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s" % what)


class Proxy:
    """mailproxy started on a config text; listeners use port 0 and the
    bound ports are read from the proxy's own event=listen log lines."""

    def __init__(self, workdir, config_text, name="proxy", env=None):
        self.workdir = workdir
        self.config = os.path.join(workdir, name + ".ini")
        self.logpath = os.path.join(workdir, name + ".log")
        with open(self.config, "w") as f:
            f.write(self._watch_off(config_text))
        self.logfile = open(self.logpath, "w+")
        self.proc = subprocess.Popen([BIN, "-c", self.config],
                                     stdout=self.logfile, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, **(env or {})))
        try:
            wait_for(lambda: "event=start" in self.log() or self.proc.poll() is not None,
                     what="proxy start")
        except AssertionError:
            # Never started (as far as the log says): not left running after
            # the test, as no fixture will stop it.
            self.proc.kill()
            self.proc.wait()
            raise
        if self.proc.poll() is not None:
            raise AssertionError("proxy exited at start:\n" + self.log())
        self.ports = self._ports()

    def _ports(self):
        ports = {}
        for svc, host, port in re.findall(
                r"event=listen svc=(\S+) addr=\[?([0-9a-f.:]+?)\]?:(\d+)", self.log()):
            ports.setdefault(svc, []).append(int(port))
        return ports

    def port(self, svc, index=0):
        return self.ports[svc][index]

    def log(self):
        with open(self.logpath) as f:
            return f.read()

    def wait_log(self, pattern, timeout=10.0, count=1):
        return wait_for(lambda: len(re.findall(pattern, self.log())) >= count and
                        re.findall(pattern, self.log()),
                        timeout=timeout, what="log line %r" % pattern)

    @staticmethod
    def _watch_off(text):
        """Tests rewrite files and reload by signal, counting reloads: the
        file watcher (on by default) stays off unless a test asks for it."""
        if "watch_files" in text:
            return text
        # At the end, in a [global] section: the test's line numbers stay.
        return text + ("" if text.endswith("\n") else "\n") + "[global]\nwatch_files = no\n"

    def rewrite(self, config_text):
        with open(self.config, "w") as f:
            f.write(self._watch_off(config_text))

    def signal(self, sig):
        self.proc.send_signal(sig)

    def reload(self, expect="event=reload-ok|reload failed"):
        before = len(re.findall(expect, self.log()))
        self.signal(signal.SIGHUP)
        self.wait_log(expect, count=before + 1)
        self.ports = self._ports_latest()

    def _ports_latest(self):
        # After a reload the last block of listen lines is the current set.
        text = self.log()
        last = text.rfind("event=reload-ok")
        block = text[:last] if last >= 0 else text
        start = block.rfind("event=reload ")
        block = block[start:] if start >= 0 else block
        ports = {}
        for svc, host, port in re.findall(
                r"event=listen svc=(\S+) addr=\[?([0-9a-f.:]+?)\]?:(\d+)", block):
            ports.setdefault(svc, []).append(int(port))
        return ports or self.ports

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logfile.close()
        return self.proc.returncode


class Upstream:
    """A scripted server on 127.0.0.1: handler(conn) runs in a thread per
    connection; tls_ctx wraps each accepted socket (implicit TLS)."""

    def __init__(self, handler, tls_ctx=None, host="127.0.0.1", port=0):
        self.handler = handler
        self.tls_ctx = tls_ctx
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.addr = "%s:%d" % (host, self.port)
        self.connections = 0
        self.errors = []
        self.sni = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            conn.settimeout(20)
            if self.tls_ctx is not None:
                conn = self.tls_ctx.wrap_socket(conn, server_side=True)
            self.handler(conn)
        except Exception as e:  # recorded for the test to inspect
            self.errors.append(e)
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def close(self):
        self._stop = True
        self.sock.close()
        self._thread.join(2)


def server_ctx(certs, name="server-ecdsa", record_sni=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    ctx.load_cert_chain(os.path.join(certs, name + ".crt"),
                        os.path.join(certs, name + ".key"))
    if record_sni is not None:
        ctx.sni_callback = lambda sock, sni, c: record_sni.append(sni)
    return ctx


def client_ctx(certs, **kw):
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.crt"))
    # Python hides a TCP EOF without close_notify by default; the tests must
    # tell a truncated stream from a clean end.
    ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def tls_connect(port, certs, server_hostname="localhost", ctx=None, timeout=10):
    ctx = ctx or client_ctx(certs)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname=server_hostname)


def recv_exact(sock, n):
    chunks, got = [], 0
    while got < n:
        data = sock.recv(min(65536, n - got))
        if not data:
            break
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def recv_until_eof(sock):
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def service(name, protocol, upstream, certs, upstream_tls="none", extra=""):
    """One [service] block with implicit TLS toward the client."""
    return ("[%s]\nprotocol = %s\nlisten = 127.0.0.1:0\nclient_tls = implicit\n"
            "cert = %s/server-ecdsa.crt\nkey = %s/server-ecdsa.key\n"
            "upstream = %s\nupstream_tls = %s\n%s\n"
            % (name, protocol, certs, certs, upstream, upstream_tls, extra))


def site_config(text, site):
    """A sample config from config/ as a user adapts it: each key named in
    site gets that value (lines kept, so messages' line numbers hold), and
    `user` goes (no mailproxy account on test machines)."""
    out = []
    for line in text.splitlines():
        m = re.match(r"(\w+)\s*=", line)
        if m and m.group(1) == "user":
            continue
        if m and m.group(1) in site:
            line = "%s = %s" % (m.group(1), site[m.group(1)])
        out.append(line)
    return "\n".join(out) + "\n"


def service_account_file(tmp_path):
    """A Google service account key file, as the console makes one."""
    import json
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa = tmp_path / "sa.json"
    sa.write_text(json.dumps({
        "type": "service_account", "client_email": "relay@p.iam.gserviceaccount.com",
        "private_key": key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode()}))
    sa.chmod(0o600)
    return sa


def adapt_sample(text, tmp_path, certs):
    """A sample config as a site makes it work here: its files pointed at
    test files, the providers' and example host names at localhost (the
    sandbox has no DNS), ports at 0 (free ones), and no `user` (no such
    account here)."""
    secret = tmp_path / "secret"
    secret.write_text("password\n")
    secret.chmod(0o600)
    if re.search(r"/etc/mailproxy/[\w.-]+\.json", text):
        text = re.sub(r"/etc/mailproxy/[\w.-]+\.json", str(service_account_file(tmp_path)),
                      text)
    text = re.sub(r"/etc/mailproxy/[\w.-]+\.(password|secret)", str(secret), text)
    text = text.replace("certs/dev/alice.password", str(secret))
    text = re.sub(r"(?m)^user = mailproxy$", "", text)
    text = re.sub(r"(smtp|outlook)\.office365\.com", "localhost", text)
    text = re.sub(r"[\w-]+\.mail\.protection\.outlook\.com", "localhost", text)
    text = text.replace("smtp.gmail.com", "localhost")
    text = text.replace("/var/lib/mailproxy/", str(tmp_path) + "/")
    text = re.sub(r"/etc/mailproxy/[\w.-]+\.crt", certs + "/server-rsa.crt", text)
    text = re.sub(r"/etc/mailproxy/[\w.-]+\.key", certs + "/server-rsa.key", text)
    text = re.sub(r"/etc/mailproxy/[\w.-]+\.pem", certs + "/ca.crt", text)
    text = text.replace("certs/dev/", certs + "/")
    text = re.sub(r"[\w-]+\.example\.(net|org)", "localhost", text)
    text = re.sub(r"(listen = )[^\n;]*:\d+", r"\g<1>127.0.0.1:0", text)
    return text
