"""The Debian package (make deb) and the systemd unit: the packaged starting
configuration, lintian, the package's contents, the packaged binary on the
packaged files, and the unit checked by systemd-analyze."""

import glob
import os
import re
import subprocess
import time

from helpers import BIN, ROOT

DEPLOY = os.path.join(ROOT, "config", "deploy")


def run(*args, binary=BIN, timeout=20):
    return subprocess.run([binary] + list(args), capture_output=True, text=True,
                          timeout=timeout)


def adapt(text, tmp_path, certs):
    """A sample as a site makes it work here: its files pointed at test
    files, example host names at localhost (the sandbox has no DNS), ports
    at 0 (free ones), and no `user` (no such account here)."""
    secret = tmp_path / "secret"
    secret.write_text("password\n")
    secret.chmod(0o600)
    text = re.sub(r"/etc/mailproxy/[\w.-]+\.(password|secret)", str(secret), text)
    text = text.replace("certs/dev/alice.password", str(secret))
    text = re.sub(r"(?m)^user = mailproxy$", "", text)
    text = re.sub(r"(smtp|outlook)\.office365\.com", "localhost", text)
    text = text.replace("smtp.gmail.com", "localhost")
    text = text.replace("/var/lib/mailproxy/", str(tmp_path) + "/")
    text = re.sub(r"/etc/mailproxy/[\w.-]+\.crt", certs + "/server-rsa.crt", text)
    text = re.sub(r"/etc/mailproxy/[\w.-]+\.key", certs + "/server-rsa.key", text)
    text = re.sub(r"/etc/mailproxy/[\w.-]+\.pem", certs + "/ca.crt", text)
    text = text.replace("certs/dev/", certs + "/")
    text = re.sub(r"[\w-]+\.example\.(net|org)", "localhost", text)
    text = re.sub(r"(listen = )[^\n;]*:\d+", r"\g<1>127.0.0.1:0", text)
    return text


def check_starting_point(path, tmp_path, certs, binary=BIN):
    """The packaged /etc/mailproxy/mailproxy.ini: -t accepts it and says it
    configures nothing; a start exits 78 with that line; each service in it,
    once uncommented, passes -t."""
    r = run("-t", "-c", path, binary=binary)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("configuration OK\n")
    assert "%s: no service is configured" % path in r.stdout, r.stdout
    r = run("-c", path, binary=binary)
    assert r.returncode == 78, (r.returncode, r.stderr)
    assert re.search(r"%s: no service is configured: mailproxy would listen nowhere; "
                     r"uncomment or add a \[service\] section, then start it again"
                     % re.escape(path), r.stderr), r.stderr
    text = open(path).read()
    blocks = re.findall(r"(?m)^;(\[\w+\]\n(?:;\w.*\n)+)", text)
    assert len(blocks) >= 2, text
    for block in blocks:
        svc = re.sub(r"(?m)^;", "", block)
        f = tmp_path / "one.ini"
        f.write_text(adapt(text + "\n" + svc, tmp_path, certs))
        r = run("-t", "-c", str(f), binary=binary)
        assert r.returncode == 0, "%s: %s" % (svc, r.stderr)
        assert "no service" not in r.stdout


def test_starting_point_config(tmp_path, certs):
    check_starting_point(os.path.join(DEPLOY, "mailproxy.ini"), tmp_path, certs)


def test_reload_to_a_file_without_services_is_refused(proxies, upstreams, certs):
    from helpers import echo, service
    up = upstreams(echo)
    proxy = proxies(service("e", "imap", up.addr, certs))
    proxy.rewrite("log_level = info\n")
    proxy.reload()
    assert re.search(r"reload failed, keeping the running configuration: \S+: no service "
                     r"is configured", proxy.log()), proxy.log()
