import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from helpers import BIN, ROOT, Proxy  # noqa: E402


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    subprocess.run(["sh", os.path.join(ROOT, "certs", "mkcerts.sh"), str(d)],
                   check=True, stdout=subprocess.DEVNULL)
    return str(d)


@pytest.fixture(scope="module")
def servers(certs):
    """The real mail system (Postfix + Dovecot, test/mailsys) for a module."""
    import tempfile
    sys.path.insert(0, os.path.join(ROOT, "test", "mailsys"))
    import mailsys
    try:
        mailsys.require()
    except mailsys.MissingPackage as e:
        pytest.fail("real-server tests cannot run: %s" % e, pytrace=False)
    run = tempfile.mkdtemp(prefix="mp.", dir="/tmp")
    info = mailsys.start(run, certs)
    yield info
    mailsys.stop(run)
    shutil.rmtree(run, ignore_errors=True)


@pytest.fixture
def proxies(tmp_path, request):
    """Factory: proxies(config_text) -> running Proxy; all stopped at the
    end, and their logs printed when the test failed."""
    started = []

    def start(text, name="proxy", env=None):
        p = Proxy(str(tmp_path), text, name=name + str(len(started)), env=env)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for p in started:
            sys.stderr.write("---- %s ----\n%s\n" % (p.logpath, p.log()))
    # Under make check the proxy is built with ASan + UBSan: any report in
    # its output fails the test that produced it.
    for p in started:
        log = p.log()
        assert "ERROR: AddressSanitizer" not in log, log
        assert "ERROR: LeakSanitizer" not in log, log
        assert "runtime error:" not in log, log


@pytest.fixture
def upstreams():
    from helpers import Upstream
    made = []

    def make(handler, tls_ctx=None, **where):
        u = Upstream(handler, tls_ctx, **where)
        made.append(u)
        return u

    yield make
    for u in made:
        u.close()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def pytest_sessionstart(session):
    if not os.access(BIN, os.X_OK):
        raise pytest.UsageError("%s is missing: run make first" % BIN)
