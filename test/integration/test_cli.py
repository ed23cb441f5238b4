"""The command line of CONFIG.md: -V, -h, -t on good and broken files."""

import subprocess

from helpers import BIN, service


def run(*args):
    return subprocess.run([BIN] + list(args), capture_output=True, text=True, timeout=20)


def test_version_names_boringssl():
    r = run("-V")
    assert r.returncode == 0
    assert "BoringSSL" in r.stdout and "mailproxy" in r.stdout


def test_help():
    r = run("-h")
    assert r.returncode == 0 and "-c FILE" in r.stdout
    assert run("-x").returncode == 1


def test_check_good_file(tmp_path, certs):
    f = tmp_path / "ok.ini"
    f.write_text(service("a", "smtp", "127.0.0.1:25", certs))
    r = run("-t", "-c", str(f))
    assert r.returncode == 0
    assert r.stdout.strip() == "configuration OK"


def test_check_binds_nothing(tmp_path, certs):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    f = tmp_path / "busy.ini"
    f.write_text(service("a", "smtp", "127.0.0.1:25", certs).replace(
        "listen = 127.0.0.1:0", "listen = 127.0.0.1:%d" % port))
    assert run("-t", "-c", str(f)).returncode == 0   # the port is busy, -t does not care
    s.close()


def test_check_broken_files(tmp_path, certs):
    f = tmp_path / "bad.ini"
    f.write_text("log_level = chatty\n" + service("a", "smtp", "127.0.0.1:25", certs) +
                 "frobnicate = yes\n")
    r = run("-t", "-c", str(f))
    assert r.returncode == 1
    assert "%s:1: log_level: unknown value \"chatty\"" % f in r.stderr
    assert "%s:11: unknown key \"frobnicate\"" % f in r.stderr
    assert "configuration OK" not in r.stdout


def test_check_reports_unloadable_certificate(tmp_path, certs):
    bad = tmp_path / "garbage.crt"
    bad.write_text("not a certificate\n")
    f = tmp_path / "bad.ini"
    f.write_text(service("a", "smtp", "127.0.0.1:25", certs).replace(
        "%s/server-ecdsa.crt" % certs, str(bad)))
    r = run("-t", "-c", str(f))
    assert r.returncode == 1
    assert "%s:5: cert %s" % (f, bad) in r.stderr
    assert "cannot load certificate" in r.stderr


def test_long_line_is_an_error_not_a_truncated_value(tmp_path, certs):
    f = tmp_path / "long.ini"
    f.write_text(service("a", "smtp", "127.0.0.1:25", certs) +
                 "upstream_name = " + "a" * 300 + ".test\n")
    r = run("-t", "-c", str(f))
    assert r.returncode == 1
    assert "%s:10: line is too long" % f in r.stderr


def test_missing_file(tmp_path):
    r = run("-t", "-c", str(tmp_path / "nope.ini"))
    assert r.returncode == 1
    assert "nope.ini:0: cannot open: No such file or directory" in r.stderr


def test_upstream_auth_toward_a_plaintext_upstream_is_refused(tmp_path, certs):
    """Credentials never cross the network in clear: -t and -T say so."""
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    pw.chmod(0o600)
    f = tmp_path / "x.ini"
    f.write_text(service("a", "smtp", "127.0.0.1:25", certs) +
                 "upstream_auth = plain\nupstream_user = u\n"
                 "upstream_password_file = %s\nallow = 10.0.0.0/8\n" % pw)
    r = run("-t", "-c", str(f))
    assert r.returncode == 1 and ("x.ini:10: [a]: upstream_auth needs upstream_tls = "
                                  "starttls or implicit") in r.stderr, r.stderr
    assert run("-T", "-c", str(f)).returncode == 1


def test_config_samples_are_valid(tmp_path, certs):
    """Every sample in config/ passes -t once its paths point at test certs
    (and its example host names at localhost: the sandbox has no DNS)."""
    import glob
    import os
    from helpers import ROOT, adapt_sample
    samples = sorted(glob.glob(os.path.join(ROOT, "config", "*.ini")))
    assert samples
    for path in samples:
        text = adapt_sample(open(path).read(), tmp_path, certs)
        f = tmp_path / os.path.basename(path)
        f.write_text(text)
        r = run("-t", "-c", str(f))
        assert r.returncode == 0, "%s: %s" % (path, r.stderr)


def test_make_install_and_man_page(tmp_path):
    from helpers import ROOT
    dest = tmp_path / "root"
    r = subprocess.run(["make", "-s", "-C", ROOT, "install", "DESTDIR=%s" % dest],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    binary = dest / "usr/local/sbin/mailproxy"
    assert "BoringSSL" in subprocess.run([str(binary), "-V"], capture_output=True,
                                         text=True).stdout
    assert (dest / "etc/systemd/system/mailproxy.service").exists()
    page = dest / "usr/local/share/man/man8/mailproxy.8"
    out = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True,
                         text=True, env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"})
    assert "mailproxy - TLS gateway" in out.stdout
    assert "warning" not in out.stderr.lower(), out.stderr
