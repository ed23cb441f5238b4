"""upstream_cert / upstream_key: the proxy presents its own certificate in
every upstream handshake, the way Microsoft 365 connectors and Postfix's
relay_clientcerts recognise a sender.  The real Postfix of test/mailsys has
a port (smtp_relay) that relays to other domains only for the client
certificate whose fingerprint it lists (permit_tls_clientcerts), and one
client certificate it does not list."""

import os
import re
import shutil
import smtplib
import subprocess

import pytest

from helpers import BIN, free_port


def relay_service(name, servers, extra=""):
    return ("[%s]\nprotocol = smtp\nlisten = 127.0.0.1:0\nclient_tls = none\n"
            "upstream = 127.0.0.1:%d\nupstream_tls = starttls\n"
            "upstream_name = mail.test\nupstream_ca = %s\nehlo_name = gw.test\n%s\n"
            % (name, servers["ports"]["smtp_relay"], servers["ca"], extra))


def pki(servers, name):
    return os.path.join(servers["run"], "pki", name)


def with_cert(servers, name):
    return "upstream_cert = %s\nupstream_key = %s\n" % (pki(servers, name + ".crt"),
                                                        pki(servers, name + ".key"))


def send(port, rcpt="bob@remote.test"):
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="scanner.office.test", timeout=15)
    try:
        s.sendmail("scanner@office.test", [rcpt], b"Subject: scan\r\n\r\nscan\r\n")
    finally:
        s.close()


def test_relay_only_with_the_listed_certificate(proxies, servers):
    mport = free_port()
    p = proxies("metrics = 127.0.0.1:%d\n" % mport
                + relay_service("listed", servers, with_cert(servers, "relay-client"))
                + relay_service("unlisted", servers, with_cert(servers, "other-client"))
                + relay_service("none", servers))
    # Relayed (to a discard transport); the later sessions resume the
    # first's TLS session with Postfix, which still knows the certificate.
    for _ in range(3):
        send(p.port("listed"))
    for svc in ("unlisted", "none"):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            send(p.port(svc))
        # The device gets Postfix's own answer.
        code, text = e.value.recipients["bob@remote.test"]
        assert code == 554 and b"Access denied" in text, (svc, code, text)
    # The certificate's expiry is exported beside the listener's.
    metrics = subprocess.run(["curl", "-s", "http://127.0.0.1:%d/metrics" % mport],
                             capture_output=True, text=True, timeout=10).stdout
    resumed = re.search(r'mailproxy_tls_handshakes_total\{service="listed",side="upstream",'
                        r'kind="resumed"\} (\d+)', metrics)
    assert resumed and int(resumed.group(1)) >= 1, metrics
    assert re.search(r'mailproxy_certificate_expiry_seconds\{service="listed",'
                     r'cert="%s"\} \d+' % re.escape(pki(servers, "relay-client.crt")),
                     metrics)


def test_implicit_tls_upstream_presents_it_too(proxies, servers, tmp_path):
    """The SMTPS port of the same Postfix asks for no certificate: the
    handshake works with one configured, and -T says it was not asked; on
    the relay port it was asked and sent."""
    cfg = os.path.join(str(tmp_path), "t.ini")
    with open(cfg, "w") as f:
        f.write(relay_service("asked", servers, with_cert(servers, "relay-client")))
        f.write("[smtps]\nprotocol = smtp\nlisten = 127.0.0.1:0\nclient_tls = none\n"
                "upstream = 127.0.0.1:%d\nupstream_tls = implicit\n"
                "upstream_name = mail.test\nupstream_ca = %s\n%s"
                % (servers["ports"]["smtp_smtps"], servers["ca"],
                   with_cert(servers, "relay-client")))
    r = subprocess.run([BIN, "-T", "-c", cfg], capture_output=True, text=True, timeout=30)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert re.search(r"asked: ok .* client_cert=sent", out), out
    assert re.search(r"smtps: ok .* client_cert=not-asked", out), out


def test_key_rules_at_load(servers, tmp_path):
    key = os.path.join(str(tmp_path), "open.key")
    shutil.copy(pki(servers, "relay-client.key"), key)
    os.chmod(key, 0o644)
    cases = [
        ("upstream_cert = %s\nupstream_key = %s\n" % (pki(servers, "relay-client.crt"), key),
         "upstream_key %s is readable by everyone" % key),
        ("upstream_cert = %s\n" % pki(servers, "relay-client.crt"),
         "upstream_cert and upstream_key come together"),
        ("upstream_cert = %s\nupstream_key = %s\n" % (pki(servers, "relay-client.crt"),
                                                      pki(servers, "other-client.key")),
         "key does not match certificate"),
    ]
    for extra, message in cases:
        cfg = os.path.join(str(tmp_path), "k.ini")
        with open(cfg, "w") as f:
            f.write(relay_service("r", servers, extra))
        r = subprocess.run([BIN, "-t", "-c", cfg], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 1 and message in r.stdout + r.stderr, (message, r.stderr)
        assert re.search(r"k\.ini:\d+: ", r.stdout + r.stderr)
