"""oauth2_alert_command: a person is told when a grant dies -- once per
incident (a refused grant, refreshes failing while the token lapses, an
assertion certificate that ends within 14 days) and once on recovery; the
command runs off the event loop and is killed when it hangs.

The scripted OAuth2 server (oauth2server.py) refuses or fails on demand;
the alert command is a small shell script that appends what it was given.
"""

import os
import re
import subprocess
import time

import pytest

from helpers import BIN, wait_for
from test_oauth2 import config, send, write_store
from test_oauth2_app import app_config, key_and_cert

# The scripted provider and the SMTP upstream it checks tokens for.
from test_oauth2 import mail, oauth  # noqa: E402,F401  (pytest fixtures)


def recorder(tmp_path):
    """An alert command that records its environment, one line a run."""
    out = tmp_path / "alerts.txt"
    script = tmp_path / "alert.sh"
    script.write_text("#!/bin/sh\nprintf '%%s|%%s|%%s|%%s|%%s\\n' \"$MAILPROXY_SERVICE\" "
                      "\"$MAILPROXY_ACCOUNT\" \"$MAILPROXY_STATE\" \"$MAILPROXY_REASON\" "
                      "\"$MAILPROXY_ACTION\" >> %s\n" % out)
    script.chmod(0o755)
    return str(script), out


def alerts(out):
    return [l.split("|") for l in out.read_text().splitlines()] if out.exists() else []


def test_refused_grant_told_once_and_recovery_once(proxies, oauth, mail, certs, tmp_path):
    cmd, out = recorder(tmp_path)
    store = str(tmp_path / "store.json")
    write_store(store)
    proxy = proxies("oauth2_alert_command = %s\n" % cmd
                    + config("o", mail, oauth, certs, store))
    send(proxy.port("o"), "before")
    oauth.revoked = True
    wait_for(lambda: len(alerts(out)) == 1, timeout=15, what="the alert")
    svc, account, state, reason, action = alerts(out)[0]
    assert (svc, account, state) == ("o", "", "failing")
    assert "refused the grant" in reason and action == "re-run mailproxy -A o"
    # A reload tries again and is refused again: the same incident.
    proxy.reload()
    proxy.wait_log(r"event=oauth2-refresh-failed svc=o ", count=2, timeout=15)
    time.sleep(1.0)
    assert len(alerts(out)) == 1
    oauth.revoked = False
    proxy.reload()
    wait_for(lambda: len(alerts(out)) == 2, timeout=15, what="the recovery")
    assert alerts(out)[1][:3] == ["o", "", "recovered"]
    send(proxy.port("o"), "after")
    time.sleep(1.0)
    assert len(alerts(out)) == 2


def test_failing_refreshes_told_before_the_token_lapses(proxies, oauth, mail, certs,
                                                       tmp_path):
    cmd, out = recorder(tmp_path)
    store = str(tmp_path / "store.json")
    write_store(store)
    proxy = proxies("oauth2_alert_command = %s\n" % cmd
                    + config("o", mail, oauth, certs, store))
    send(proxy.port("o"), "before")
    oauth.fail_next = 4                 # 503s: transient, retried
    wait_for(lambda: len(alerts(out)) == 2, timeout=40, what="failing, then recovered")
    (s1, _, st1, reason, action), (s2, _, st2, _, _) = alerts(out)
    assert (s1, st1, s2, st2) == ("o", "failing", "o", "recovered")
    assert "token requests fail (HTTP 503" in reason and "the access token" in reason
    assert action.startswith("check the way to %s" % oauth.token_url)
    assert len(proxy.wait_log(r"event=oauth2-refresh-failed svc=o ", count=4)) >= 4
    send(proxy.port("o"), "after")


def test_hanging_command_is_killed_and_delays_nothing(proxies, oauth, mail, certs,
                                                      tmp_path):
    """A certificate that ends in 5 days: told once, by a command that
    hangs; sessions and token fetches go on meanwhile, and it is killed at
    the time limit (MAILPROXY_ALERT_TIMEOUT, 30 s by default)."""
    pids = tmp_path / "pids"
    script = tmp_path / "hang.sh"
    script.write_text("#!/bin/sh\necho $$ >> %s\nexec sleep 1000\n" % pids)
    script.chmod(0o755)
    key, cert, oauth.client_cert = key_and_cert(tmp_path, "rsa", days=5)
    keys = ("oauth2_grant = client_credentials\noauth2_client_id = test-client\n"
            "oauth2_client_certificate = %s\noauth2_client_key = %s\n" % (cert, key))
    proxy = proxies("oauth2_alert_command = %s\n" % script
                    + app_config("o", mail, oauth, certs, keys),
                    env={"MAILPROXY_ALERT_TIMEOUT": "6"})
    wait_for(lambda: pids.exists() and pids.read_text().strip(), what="the alert")
    pid = int(pids.read_text().split()[0])
    started = time.monotonic()
    # Nothing of the proxy's is inherited: no socket, no signalfd.  Looked
    # at once the script has become sleep (before its exec the shell itself
    # holds the script and its redirection open: seen on a slow machine).
    wait_for(lambda: open("/proc/%d/cmdline" % pid, "rb").read().startswith(b"sleep"),
             what="the command's exec")
    assert sorted(os.listdir("/proc/%d/fd" % pid)) == ["0", "1", "2"]
    fetched = oauth.fetches()
    for k in range(3):
        send(proxy.port("o"), "while-hanging-%d" % k)
        time.sleep(1.0)
    assert os.path.exists("/proc/%d" % pid), "killed too early"
    assert len(mail.messages) == 3 and oauth.fetches() > fetched
    wait_for(lambda: not os.path.exists("/proc/%d" % pid), timeout=15,
             what="the hanging command killed")
    assert time.monotonic() - started >= 2
    proxy.wait_log(r"event=oauth2-alert-killed cmd=%s pid=%d after=6s" % (script, pid))
    proxy.wait_log(r"event=oauth2-certificate-expiring svc=o: the client certificate "
                   r"\S+ expires in [45] days")
    # Still the same incident across later fetches: told once.
    time.sleep(3.0)
    assert len(pids.read_text().split()) == 1


@pytest.mark.parametrize("value,message", [
    ("alert.sh", "is not an executable file given by its absolute path"),
    ("/nonexistent/alert", "is not an executable file"),
])
def test_alert_command_rules(oauth, mail, certs, tmp_path, value, message):
    cfg = tmp_path / "m.ini"
    cfg.write_text("oauth2_alert_command = %s\n" % value
                   + config("o", mail, oauth, certs, str(tmp_path / "s.json")))
    r = subprocess.run([BIN, "-c", str(cfg), "-t"], capture_output=True, text=True)
    assert r.returncode == 1 and re.search(r"m\.ini:1: oauth2_alert_command: .*%s"
                                           % message, r.stderr), r.stderr


def test_sample_command_mails_the_alert_through_the_proxy(proxies, oauth, mail, certs,
                                                          tmp_path):
    """config/deploy/mailproxy-alert.sh, as the README sets it up: the alert
    of one service goes out as mail through another (app-only) listener of
    the same proxy, with curl."""
    from helpers import ROOT, free_port
    from test_oauth2_app import secret_keys
    port = free_port()
    store = str(tmp_path / "store.json")
    write_store(store, refresh="rt-not-the-current-one")
    sample = os.path.join(ROOT, "config", "deploy", "mailproxy-alert.sh")
    alerts_svc = app_config("alerts", mail, oauth, certs, secret_keys(oauth, tmp_path))
    alerts_svc = alerts_svc.replace("listen = 127.0.0.1:0", "listen = 127.0.0.1:%d" % port)
    proxy = proxies("oauth2_alert_command = %s\n" % sample
                    + config("o", mail, oauth, certs, store) + alerts_svc,
                    env={"ALERT_SMTP": "smtp://127.0.0.1:%d" % port,
                         "ALERT_FROM": "gw@site.test", "ALERT_TO": "ops@site.test"})
    wait_for(lambda: len(mail.messages) == 1, timeout=20, what="the alert mail")
    text = mail.messages[0].decode()
    assert "OAuth2 o failing" in text and "re-run mailproxy -A o" in text, text
    assert "event=oauth2-alert-failed" not in proxy.log()
