"""The Debian package (make deb) and the systemd unit: the packaged starting
configuration, lintian, the package's contents, the packaged binary on the
packaged files, and the unit checked by systemd-analyze."""

import glob
import os
import re
import subprocess
import time

from helpers import BIN, ROOT, adapt_sample

DEPLOY = os.path.join(ROOT, "config", "deploy")


def run(*args, binary=BIN, timeout=20):
    return subprocess.run([binary] + list(args), capture_output=True, text=True,
                          timeout=timeout)


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
        f.write_text(adapt_sample(text + "\n" + svc, tmp_path, certs))
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


# ---- the package -------------------------------------------------------------

import pytest  # noqa: E402

EXAMPLES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "config", "*.ini"))
                  if os.path.basename(p) != "dev.ini")   # make run's, with relative paths


def version():
    text = open(os.path.join(ROOT, "proxy", "main.c")).read()
    return re.search(r'(?m)^#define MAILPROXY_VERSION\s+"([^"]+)"', text).group(1)


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    """make deb, once for this file, in a directory of its own (about 15 s
    on two busy cores; lintian about 4 s more): the .deb, the time it took,
    and the package unpacked."""
    top = tmp_path_factory.mktemp("deb")
    arch = subprocess.run(["dpkg-architecture", "-qDEB_HOST_ARCH"], capture_output=True,
                          text=True, check=True).stdout.strip()
    # Not the flags of a make check above us (the package is never ASan).
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    t0 = time.monotonic()
    r = subprocess.run(["make", "-s", "-C", ROOT, "deb", "DEB_DIR=%s/tree" % top,
                        "DEB_OUT=%s/out" % top], capture_output=True, text=True,
                       timeout=900, env=env)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    path = top / "out" / ("mailproxy_%s_%s.deb" % (version(), arch))
    assert path.exists(), os.listdir(str(top / "out"))
    root = top / "root"
    subprocess.run(["dpkg-deb", "-x", str(path), str(root)], check=True)
    print("make deb took %.1f s" % took)
    return {"path": str(path), "root": root, "took": took}


def test_deb_is_lintian_clean(deb):
    r = subprocess.run(["lintian", "--fail-on", "error,warning", "--pedantic", "-I",
                        deb["path"]], capture_output=True, text=True, timeout=300)
    tags = [line for line in r.stdout.splitlines() if re.match(r"[EW]: ", line)]
    assert r.returncode == 0 and not tags, r.stdout + r.stderr
    # Every override says why.
    overrides = (deb["root"] / "usr/share/lintian/overrides/mailproxy").read_text()
    lines = overrides.splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert i > 0 and lines[i - 1].startswith("#"), overrides


def test_deb_contents(deb):
    listing = subprocess.run(["dpkg-deb", "-c", deb["path"]], capture_output=True,
                             text=True, check=True).stdout
    files = {}
    for line in listing.splitlines():
        mode, owner, size, day, hour, name = line.split(None, 5)
        files[name[1:].rstrip("/") or "/"] = (mode, owner)
    want = ["/usr/sbin/mailproxy", "/usr/share/man/man8/mailproxy.8.gz",
            "/usr/share/man/man5/mailproxy.ini.5.gz", "/etc/mailproxy/mailproxy.ini",
            "/usr/share/mailproxy/mailproxy.rules.yml",
            "/usr/share/mailproxy/grafana-dashboard.json",
            "/lib/systemd/system/mailproxy.service",
            "/usr/lib/sysusers.d/mailproxy.conf", "/usr/lib/tmpfiles.d/mailproxy.conf",
            "/usr/share/doc/mailproxy/copyright"]
    want += ["/usr/share/doc/mailproxy/examples/" + e for e in EXAMPLES]
    missing = [w for w in want if w not in files]
    assert not missing, listing
    assert files["/usr/sbin/mailproxy"] == ("-rwxr-xr-x", "root/root")
    assert files["/etc/mailproxy/mailproxy.ini"] == ("-rw-r--r--", "root/root")
    # The files are the checkout's.
    for src, dst in (("config/deploy/mailproxy.ini", "etc/mailproxy/mailproxy.ini"),
                     ("config/deploy/mailproxy.rules.yml", "usr/share/mailproxy/mailproxy.rules.yml"),
                     ("config/deploy/grafana-dashboard.json",
                      "usr/share/mailproxy/grafana-dashboard.json")):
        assert open(os.path.join(ROOT, src)).read() == (deb["root"] / dst).read_text(), dst

    def control(name):
        return subprocess.run(["dpkg-deb", "-I", deb["path"], name], capture_output=True,
                              text=True).stdout
    assert control("conffiles").split() == ["/etc/mailproxy/mailproxy.ini"]
    depends = subprocess.run(["dpkg-deb", "-f", deb["path"], "Depends"], capture_output=True,
                             text=True, check=True).stdout
    # dh_shlibdeps, through the RUNPATH: BoringSSL's package too.
    for pkg in ("android-libboringssl", "libev4", "libinih1", "libc-ares2", "libjansson4",
                "libcrypt1", "libsystemd0", "libc6"):
        assert re.search(r"(^|, )%s( \(|,|$)" % pkg, depends.strip()), depends
    # The user and its 0700 state directory.
    sysusers = (deb["root"] / "usr/lib/sysusers.d/mailproxy.conf").read_text()
    assert re.search(r"(?m)^u mailproxy - .* /var/lib/mailproxy$", sysusers), sysusers
    tmpfiles = (deb["root"] / "usr/lib/tmpfiles.d/mailproxy.conf").read_text()
    assert re.search(r"(?m)^d /var/lib/mailproxy 0700 mailproxy mailproxy -$", tmpfiles)
    # Enabled on install, never started by it; restarted on upgrade if running.
    postinst = control("postinst")
    assert "systemd-sysusers" in postinst and "systemd-tmpfiles" in postinst
    assert "deb-systemd-helper enable 'mailproxy.service'" in postinst
    assert not re.search(r"deb-systemd-invoke (\$_dh_action|start)", postinst), postinst
    assert re.search(r'(?m)^if \[ "\$1" = "configure" \] && \[ -n "\$2" \].*\n.*\n'
                     r'\s+deb-systemd-invoke try-restart mailproxy.service', postinst), postinst
    assert "deb-systemd-invoke stop mailproxy.service" in control("prerm")


def test_packaged_binary_on_packaged_files(deb, tmp_path, certs):
    binary = str(deb["root"] / "usr/sbin/mailproxy")
    r = run("-V", binary=binary)
    assert r.returncode == 0 and r.stdout.startswith("mailproxy %s " % version()), r.stdout
    check_starting_point(str(deb["root"] / "etc/mailproxy/mailproxy.ini"), tmp_path, certs,
                         binary=binary)
    for name in EXAMPLES:
        text = (deb["root"] / "usr/share/doc/mailproxy/examples" / name).read_text()
        f = tmp_path / name
        f.write_text(adapt_sample(text, tmp_path, certs))
        r = run("-t", "-c", str(f), binary=binary)
        assert r.returncode == 0, "%s: %s" % (name, r.stderr)
    # The man pages render without a warning.
    for page in ("usr/share/man/man8/mailproxy.8.gz", "usr/share/man/man5/mailproxy.ini.5.gz"):
        out = subprocess.run(["man", "--warnings", "-l", str(deb["root"] / page)],
                             capture_output=True, text=True,
                             env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin"})
        assert out.returncode == 0 and "warning" not in out.stderr.lower(), out.stderr


def security_score(unit):
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20",
                        unit], capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for mailproxy.service: (\d+\.\d+) (\w+)", r.stdout)
    assert m, r.stdout + r.stderr
    return r.returncode, float(m.group(1)), m.group(2)


def test_packaged_unit_verifies_and_scores(deb, tmp_path):
    """systemd-analyze verify (its ExecStart= pointed at the unpacked binary,
    the man pages looked up in the package) and security --offline (252 has
    it) at 2.0 or better, with what the daemon needs still granted."""
    unit = deb["root"] / "lib/systemd/system/mailproxy.service"
    text = unit.read_text()
    for line in ("Type=notify", "User=mailproxy", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
                 "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "StateDirectory=mailproxy",
                 "StateDirectoryMode=0700", "ProtectSystem=strict", "WatchdogSec=30",
                 "ExecReload=/usr/sbin/mailproxy -R $MAINPID", "RestartPreventExitStatus=78"):
        assert re.search(r"(?m)^%s$" % re.escape(line), text), line
    assert "/usr/local" not in text
    # Nothing but the state and runtime directories is writable.
    assert not re.search(r"(?m)^(ReadWritePaths|PrivateUsers=yes|PrivateNetwork=yes)", text)
    local = tmp_path / "mailproxy.service"
    local.write_text(text.replace("/usr/sbin/", str(deb["root"] / "usr/sbin") + "/"))
    r = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True,
                       text=True, timeout=60,
                       env=dict(os.environ, MANPATH=str(deb["root"] / "usr/share/man")))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    rc, score, verdict = security_score(str(unit))
    assert rc == 0 and score <= 2.0 and verdict == "OK", (rc, score, verdict)


def test_security_score_is_checked(tmp_path):
    """The score check fails on a unit without hardening (the unit before
    this one, root with a capability bounding set, scored 2.6)."""
    plain = tmp_path / "mailproxy.service"
    plain.write_text("[Service]\nExecStart=/bin/true\n")
    rc, score, verdict = security_score(str(plain))
    assert rc != 0 and score > 2.0, (rc, score, verdict)
