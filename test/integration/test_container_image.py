"""config/deploy/Dockerfile checked without Docker: its build stage is
replayed in an empty directory (only what it COPYs, then its make commands),
its package lists are compared with the Makefile's DEPS_BUILD and with the
libraries the built binary links, and the image it would produce (the
runtime stage's COPYs, laid out in a temp directory) must hold the
ENTRYPOINT binary and a default config that `mailproxy -t` accepts."""

import glob
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess

import pytest

from helpers import ROOT

DOCKERFILE = os.path.join(ROOT, "config", "deploy", "Dockerfile")

# Packages the runtime stage need not install although the binary links them:
# libc6 is in every Debian image (the essential packages depend on it).
IN_BASE_IMAGE = {"libc6"}
# Packages the runtime stage installs for a reason other than linking:
RUNTIME_EXTRA = {"ca-certificates"}   # upstream_ca's default bundle


class Stage:
    def __init__(self, image, name):
        self.image = image
        self.name = name
        self.instructions = []   # (KEYWORD, arguments)

    def args(self, keyword):
        return [a for k, a in self.instructions if k == keyword]

    def run_commands(self):
        """Each RUN split at && and ; into simple commands."""
        cmds = []
        for run in self.args("RUN"):
            cmds += [c.strip() for c in re.split(r"&&|;", run) if c.strip()]
        return cmds

    def packages(self):
        pkgs = []
        for cmd in self.run_commands():
            words = shlex.split(cmd)
            if "apt-get" in words and "install" in words:
                pkgs += [w for w in words[words.index("install") + 1:]
                         if not w.startswith("-")]
        return pkgs

    def copies(self):
        """(flags, sources, destination) of each COPY/ADD."""
        out = []
        for k, a in self.instructions:
            if k not in ("COPY", "ADD"):
                continue
            words = shlex.split(a)
            flags = {}
            while words and words[0].startswith("--"):
                key, _, value = words.pop(0)[2:].partition("=")
                flags[key] = value
            if words and words[0].startswith("["):
                words = json.loads(" ".join(words))
            out.append((flags, words[:-1], words[-1]))
        return out

    def workdir(self):
        w = "/"
        for d in self.args("WORKDIR"):
            w = posixpath.join(w, d)
        return w

    def exec_form(self, keyword):
        forms = self.args(keyword)
        if not forms:
            return []
        assert forms[-1].startswith("["), "%s must be in exec (JSON) form" % keyword
        return json.loads(forms[-1])


def parse_dockerfile(path):
    instructions, buf = [], ""
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.strip().startswith("#") or (not buf and not line.strip()):
                continue   # Docker drops comment lines, also inside a continuation
            if line.rstrip().endswith("\\"):
                buf += line.rstrip()[:-1] + " "
                continue
            instructions.append((buf + line).strip())
            buf = ""
    assert not buf, "the Dockerfile ends in a continuation"
    stages = []
    for ins in instructions:
        keyword, _, rest = ins.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            stages.append(Stage(words[0], name))
        else:
            assert stages, "%s before FROM" % keyword
            stages[-1].instructions.append((keyword, rest))
    return stages


def makefile_var(name):
    with open(os.path.join(ROOT, "Makefile")) as f:
        m = re.search(r"^%s\s*:?=\s*(.*)$" % name, f.read(), re.M)
    assert m, "Makefile has no %s" % name
    return m.group(1).split()


def docker_copy(sources, dest, workdir, src_root, image_root):
    """COPY sources (relative to src_root, or absolute in it for --from)
    to dest (relative to workdir), into the file tree under image_root."""
    if not dest.startswith("/"):
        dest = posixpath.join(workdir, dest)
    to_dir = dest.endswith("/") or len(sources) > 1
    target = image_root + dest
    for s in sources:
        matches = glob.glob(os.path.join(src_root, s.lstrip("/")))
        assert matches, "COPY source %s does not exist in %s" % (s, src_root)
        for path in matches:
            if os.path.isdir(path):
                shutil.copytree(path, target, symlinks=True, dirs_exist_ok=True)
            else:
                t = os.path.join(target, os.path.basename(path)) if to_dir else target
                os.makedirs(os.path.dirname(t), exist_ok=True)
                shutil.copy2(path, t)


def clean_env():
    """The environment of a docker build: no make variables inherited from
    the make test / make check that runs this test (MAKEFLAGS carries
    BUILD=build-asan SANITIZE=... into every sub-make)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MAKE", "MFLAGS"))}
    for k in ("CC", "CFLAGS", "LDFLAGS", "BUILD", "SANITIZE", "PREFIX", "DESTDIR"):
        env.pop(k, None)
    return env


@pytest.fixture(scope="module")
def dockerfile():
    stages = parse_dockerfile(DOCKERFILE)
    assert len(stages) == 2, "expected a build stage and a runtime stage"
    build, runtime = stages
    assert build.name, "the build stage needs a name for COPY --from"
    return build, runtime


@pytest.fixture(scope="module")
def image(dockerfile, tmp_path_factory):
    """The build stage replayed under build_root (its COPYs from the
    repository, then its make commands), then the runtime stage's COPYs laid
    out under image_root.  Returns (build_root, image_root)."""
    build, runtime = dockerfile
    tmp = tmp_path_factory.mktemp("image")
    build_root, image_root = str(tmp / "build"), str(tmp / "image")
    workdir = build.workdir()
    for flags, sources, dest in build.copies():
        assert "from" not in flags, "the build stage copies from the repository only"
        docker_copy(sources, dest, workdir, ROOT, build_root)
    makes = [c for c in build.run_commands() if shlex.split(c)[0] == "make"]
    assert makes, "the build stage runs no make command"
    cwd = build_root + workdir
    for cmd in makes:
        # DESTDIR is a path in the build container: move it under build_root.
        cmd = re.sub(r"DESTDIR=(/\S*)", lambda m: "DESTDIR=" + build_root + m.group(1), cmd)
        r = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=clean_env(),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, "%s failed in a directory holding only the COPYs:\n%s%s" % (
            cmd, r.stdout[-3000:], r.stderr[-3000:])
    for flags, sources, dest in runtime.copies():
        if flags.get("from") == build.name:
            docker_copy(sources, dest, runtime.workdir(), build_root, image_root)
        else:
            assert "from" not in flags, "COPY --from=%s: unknown stage" % flags["from"]
            docker_copy(sources, dest, runtime.workdir(), ROOT, image_root)
    return build_root, image_root


def entrypoint(runtime):
    argv = runtime.exec_form("ENTRYPOINT") + runtime.exec_form("CMD")
    assert argv, "no ENTRYPOINT or CMD"
    return argv


def default_config(runtime):
    argv = entrypoint(runtime)
    return argv[argv.index("-c") + 1] if "-c" in argv else "/etc/mailproxy/mailproxy.ini"


def test_copy_sources_exist():
    # Before any build: every file the Dockerfile takes from the repository.
    for stage in parse_dockerfile(DOCKERFILE):
        for flags, sources, dest in stage.copies():
            if "from" in flags:
                continue
            for s in sources:
                assert glob.glob(os.path.join(ROOT, s)), "COPY %s: not in the repository" % s


def test_build_stage_installs_deps_build(dockerfile):
    build, _ = dockerfile
    assert sorted(build.packages()) == sorted(makefile_var("DEPS_BUILD"))
    assert "--no-install-recommends" in " ".join(build.run_commands())


def test_build_stage_runs_make_all_and_install(dockerfile):
    build, _ = dockerfile
    makes = [shlex.split(c) for c in build.run_commands() if c.startswith("make")]
    assert any("all" in m for m in makes)
    install = [m for m in makes if "install" in m]
    assert install and "PREFIX=/usr/local" in install[0]
    assert any(w.startswith("DESTDIR=/") for w in install[0])


def test_image_holds_what_make_install_installs(dockerfile, image):
    build, runtime = dockerfile
    build_root, image_root = image
    binary = entrypoint(runtime)[0]
    assert binary == "/usr/local/sbin/mailproxy"   # make install's PREFIX=/usr/local
    assert os.access(image_root + binary, os.X_OK), "%s is not in the image" % binary
    assert os.path.exists(image_root + "/usr/local/share/man/man8/mailproxy.8")
    r = subprocess.run([image_root + binary, "-V"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "mailproxy" in r.stdout


def linked_packages(binary):
    """Debian package of each shared library the binary names (DT_NEEDED),
    found where the dynamic linker finds it."""
    needed = re.findall(r"\(NEEDED\).*\[(.+)\]",
                        subprocess.run(["readelf", "-d", binary], capture_output=True,
                                       text=True, check=True).stdout)
    where = dict(re.findall(r"^\s*(\S+) => (/\S+)", subprocess.run(
        ["ldd", binary], capture_output=True, text=True, check=True).stdout, re.M))
    pkgs = {}
    for lib in needed:
        assert lib in where, "%s: not found by ldd" % lib
        path = where[lib]
        # Merged /usr: dpkg knows a file under the path its package ships.
        candidates = [path, os.path.realpath(path)]
        candidates += ["/usr" + p for p in candidates if not p.startswith("/usr/")]
        candidates += [p[4:] for p in candidates if p.startswith("/usr/")]
        for c in candidates:
            r = subprocess.run(["dpkg", "-S", c], capture_output=True, text=True)
            if r.returncode == 0:
                pkgs[lib] = r.stdout.split(":")[0].strip()
                break
        else:
            pytest.fail("%s (%s) belongs to no Debian package" % (lib, path))
    return pkgs


def test_runtime_stage_installs_the_linked_libraries(dockerfile, image):
    _, runtime = dockerfile
    _, image_root = image
    pkgs = linked_packages(image_root + entrypoint(runtime)[0])
    want = (set(pkgs.values()) - IN_BASE_IMAGE) | RUNTIME_EXTRA
    assert sorted(runtime.packages()) == sorted(want), \
        "linked: %s; plus %s" % (pkgs, sorted(RUNTIME_EXTRA))


def test_runs_as_non_root(dockerfile):
    _, runtime = dockerfile
    users = runtime.args("USER")
    assert users, "the runtime stage runs as root"
    user = users[-1].split(":")[0]
    # Numeric, so that Kubernetes' runAsNonRoot can check it.
    assert user.isdigit() and int(user) != 0, users[-1]
    assert runtime.args("STOPSIGNAL") == ["SIGTERM"]


def config_for_test(text, certs, upstream_host):
    text = re.sub(r"^(\s*cert\s*=\s*)\S+", r"\g<1>%s/server-ecdsa.crt" % certs, text, flags=re.M)
    text = re.sub(r"^(\s*key\s*=\s*)\S+", r"\g<1>%s/server-ecdsa.key" % certs, text, flags=re.M)
    if upstream_host:
        text = re.sub(r"^(\s*upstream\s*=\s*)[^\s:]+", r"\g<1>" + upstream_host, text, flags=re.M)
    return text


def test_default_config(dockerfile, image, certs, tmp_path):
    _, runtime = dockerfile
    _, image_root = image
    binary = image_root + entrypoint(runtime)[0]
    path = image_root + default_config(runtime)
    assert os.path.isfile(path), "the image has no %s" % default_config(runtime)
    text = open(path).read()
    assert re.search(r"^\s*log_format\s*=\s*json\b", text, re.M)
    # Not root: a user key would only be warned about as ignored.
    assert not re.search(r"^\s*user\s*=", text, re.M)
    # Not root and no file capability: every port the default listens on is
    # above 1023, and EXPOSEd.
    exposed = {int(p.split("/")[0]) for e in runtime.args("EXPOSE") for p in e.split()}
    ports = [int(p) for p in re.findall(r"^\s*listen\s*=\s*\S+:(\d+)", text, re.M)]
    assert ports and all(p >= 1024 and p in exposed for p in ports), (ports, exposed)
    # Accepted once the certificates exist and the upstream resolves (the
    # placeholder's host becomes localhost: the rest of the file as shipped).
    ok = tmp_path / "ok.ini"
    ok.write_text(config_for_test(text, certs, "localhost"))
    r = subprocess.run([binary, "-t", "-c", str(ok)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "configuration OK", r.stderr
    # As shipped, the placeholder upstream (.invalid) stops the proxy until
    # it is edited.
    unedited = tmp_path / "unedited.ini"
    unedited.write_text(config_for_test(text, certs, None))
    r = subprocess.run([binary, "-t", "-c", str(unedited)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and "upstream: cannot resolve" in r.stderr, r.stderr
