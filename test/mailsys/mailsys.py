#!/usr/bin/python3
"""A real test mail system on 127.0.0.1, started by the project itself:
Postfix (SMTP with STARTTLS + AUTH after TLS, SMTPS, plaintext SMTP) and
two Dovecot instances (IMAP/POP3 with STARTTLS and implicit TLS; IMAP/POP3
plaintext only), one test user (alice / secret) and a Maildir that Postfix
delivers into over LMTP and Dovecot serves.

Everything lives in one short temp directory; ports are picked free at
start; processes are stopped by PID.  The working notes behind the settings
(each a trap hit once) are in the project's shared recipes.

    mailsys.py start DIR CERTDIR [--dev]  -> DIR/mailsys.json, servers running
    mailsys.py stop DIR

--dev uses the fixed ports of config/dev.ini (make run) instead of free ones.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

USER, PASSWORD, UID = "alice", "secret", 5000
SEED = (b"From: seed@mail.test\r\nTo: alice@mail.test\r\nSubject: seed\r\n"
        b"Message-ID: <seed@mail.test>\r\n\r\nThe first message in the box.\r\n")

PORT_NAMES = ["smtp_submission", "smtp_smtps", "smtp_plain",
              "imap_starttls", "imaps", "pop3_starttls", "pop3s",
              "imap_plain", "pop3_plain", "imap_haproxy", "smtp_relay"]


# make run: fixed, high ports that config/dev.ini points at.
DEV_PORTS = {"smtp_submission": 20587, "smtp_smtps": 20465, "smtp_plain": 20025,
             "imap_starttls": 20143, "imaps": 20993, "pop3_starttls": 20110,
             "pop3s": 20995, "imap_plain": 21143, "pop3_plain": 21110,
             "imap_haproxy": 22143, "smtp_relay": 20026}


class MissingPackage(Exception):
    pass


def require():
    missing = [p for p in ("/usr/sbin/postfix", "/usr/sbin/dovecot", "/usr/bin/doveadm")
               if not os.path.exists(p)]
    if missing:
        raise MissingPackage("not installed: %s (run make deps)" % ", ".join(missing))
    if os.geteuid() != 0:
        raise MissingPackage("Postfix and Dovecot test servers need root")


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def dovecot_conf(run, name, ports, tls):
    common = """
base_dir = {run}/{name}/run
state_dir = {run}/{name}/state
instance_name = mp-{name}
log_path = {run}/log/{name}.log
listen = 127.0.0.1
auth_failure_delay = 0
first_valid_uid = {uid}
mail_location = maildir:{run}/mail/%n/Maildir
mailbox_idle_check_interval = 1 secs
login_log_format_elements = user=<%u> method=%m rip=%r lip=%l lport=%{{local_port}} mpid=%e %c session=<%{{session}}>
userdb {{
  driver = static
  args = uid={uid} gid={uid} home={run}/mail/%n allow_all_users=yes
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth {{
  unix_listener auth-postfix {{
    mode = 0666
  }}
}}
""".format(run=run, name=name, uid=UID)
    if tls:
        return common + """
protocols = imap pop3 lmtp
ssl = required
# The IMAP STARTTLS listener that expects a PROXY header (the proxy's
# proxy_protocol_out): Dovecot then logs the original client address.
haproxy_trusted_networks = 127.0.0.0/8
ssl_cert = <{run}/pki/upstream.crt
ssl_key = <{run}/pki/upstream.key
disable_plaintext_auth = yes
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {run}/etc/passdb/%{{service}}-%{{secured}}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_starttls}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
  inet_listener imap_haproxy {{
    address = 127.0.0.1
    port = {imap_haproxy}
    haproxy = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_starttls}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {pop3s}
    ssl = yes
  }}
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0666
  }}
}}
""".format(run=run, **ports)
    return common + """
protocols = imap pop3
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {run}/etc/passdb/plain
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_plain}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_plain}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
""".format(run=run, **ports)


MASTER_INTERNAL = """
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_conf(run, ports):
    main = """
compatibility_level = 3.6
queue_directory = {run}/postfix/queue
data_directory = {run}/postfix/data
maillog_file = {run}/log/postfix.log
maillog_file_prefixes = {run}/log
myhostname = mail.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = mail.test
virtual_mailbox_maps = inline:{{ alice@mail.test=ok }}
virtual_transport = lmtp:unix:{run}/dovecot-tls/run/lmtp
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
smtpd_sasl_type = dovecot
smtpd_sasl_path = {run}/dovecot-tls/run/auth-postfix
smtpd_tls_chain_files = {run}/pki/upstream.key, {run}/pki/upstream.crt
smtpd_tls_security_level = may
smtpd_tls_received_header = yes
smtpd_banner = $myhostname ESMTP test-postfix
message_size_limit = 52428800
smtpd_tls_fingerprint_digest = sha256
relay_clientcerts = texthash:{run}/etc/relay_clientcerts
transport_maps = texthash:{run}/etc/transport
""".format(run=run)
    master = """
127.0.0.1:{smtp_submission} inet n - n - - smtpd
  -o syslog_name=postfix-test/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_auth_only=yes
  -o smtpd_sasl_auth_enable=yes
127.0.0.1:{smtp_smtps} inet n - n - - smtpd
  -o syslog_name=postfix-test/smtps
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
127.0.0.1:{smtp_plain} inet n - n - - smtpd
  -o syslog_name=postfix-test/plain
  -o smtpd_tls_security_level=none
  -o smtpd_tls_auth_only=no
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_sasl_path={run}/dovecot-plain/run/auth-postfix
127.0.0.1:{smtp_relay} inet n - n - - smtpd
  -o syslog_name=postfix-test/relay
  -o smtpd_tls_security_level=may
  -o smtpd_tls_ask_ccert=yes
  -o smtpd_relay_restrictions=permit_tls_clientcerts,reject
  -o smtpd_recipient_restrictions=permit_tls_clientcerts,reject
""".format(run=run, **ports) + MASTER_INTERNAL
    return main, master


def client_cert(d, name):
    """A self-signed client certificate (EC P-256), DIR/NAME.{crt,key}."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj",
                    "/CN=%s.office.test" % name, "-addext", "extendedKeyUsage=clientAuth",
                    "-keyout", os.path.join(d, name + ".key"),
                    "-out", os.path.join(d, name + ".crt")],
                   check=True, capture_output=True)
    os.chmod(os.path.join(d, name + ".key"), 0o600)


def fingerprint(crt):
    """The certificate's SHA-256 fingerprint as Postfix writes it (AB:CD:..)."""
    out = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-fingerprint",
                          "-sha256"], capture_output=True, text=True, check=True).stdout
    return out.strip().split("=", 1)[1]


def listening(port):
    out = subprocess.run(["ss", "-Hltn", "sport = :%d" % port], capture_output=True,
                         text=True).stdout
    return bool(out.strip())


def wait_ports(ports, timeout=30):
    deadline = time.monotonic() + timeout
    for p in ports:
        while not listening(p):
            if time.monotonic() > deadline:
                raise RuntimeError("port %d never started listening" % p)
            time.sleep(0.05)


def start(run, certdir, dev=False):
    require()
    if len(run) > 60:
        raise RuntimeError("%s: too long for unix sockets (keep it under 60)" % run)
    os.makedirs(run, exist_ok=True)
    os.chmod(run, 0o755)
    ports = dict(DEV_PORTS) if dev else dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES))))
    # Certificates: the servers' own (CN mail.test), signed by the test CA.
    for n in ("upstream.crt", "upstream.key", "ca.crt"):
        with open(os.path.join(certdir, n), "rb") as src:
            data = src.read()
        path = os.path.join(run, "pki", n)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as dst:
            dst.write(data)
    os.chmod(os.path.join(run, "pki", "upstream.key"), 0o640)
    # A relay by certificate, as Microsoft 365 connectors and Postfix's
    # relay_clientcerts do it: two client certificates, one of them listed
    # (by fingerprint) on the smtp_relay port.
    for n in ("relay-client", "other-client"):
        client_cert(os.path.join(run, "pki"), n)
    write(os.path.join(run, "etc", "relay_clientcerts"),
          "%s relay-client\n" % fingerprint(os.path.join(run, "pki", "relay-client.crt")))
    # What it relays to other domains is dropped: nothing leaves loopback.
    write(os.path.join(run, "etc", "transport"), "remote.test discard:\n")
    # Password files by service and "secured" state (see gotcha 11).
    pd = os.path.join(run, "etc", "passdb")
    line = "%s:{PLAIN}%s\n" % (USER, PASSWORD)
    for svc in ("imap", "pop3", "smtp"):
        for sec in ("TLS", "secured", ""):
            ok = (svc in ("imap", "pop3") and sec == "TLS") or (svc == "smtp" and sec == "secured")
            write(os.path.join(pd, "%s-%s" % (svc, sec)), line if ok else "")
    write(os.path.join(pd, "plain"), line)
    os.makedirs(os.path.join(run, "log"), exist_ok=True)
    # The Maildir with one seed message.
    maildir = os.path.join(run, "mail", USER, "Maildir")
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    with open(os.path.join(maildir, "new", "1000000000.seed.mail.test"), "wb") as f:
        f.write(SEED)
    subprocess.run(["chown", "-R", "%d:%d" % (UID, UID), os.path.join(run, "mail")],
                   check=True)
    pids = {}
    for name, tls in (("dovecot-tls", True), ("dovecot-plain", False)):
        conf = os.path.join(run, name + ".conf")
        write(conf, dovecot_conf(run, name, ports, tls))
        os.makedirs(os.path.join(run, name, "state"), exist_ok=True)
        subprocess.run(["doveconf", "-c", conf, "-n"], check=True,
                       stdout=subprocess.DEVNULL)
        proc = subprocess.Popen(["dovecot", "-F", "-c", conf],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pids[name] = proc.pid
    # Postfix.
    pfdir = os.path.join(run, "postfix")
    main, master = postfix_conf(run, ports)
    write(os.path.join(pfdir, "main.cf"), main)
    write(os.path.join(pfdir, "master.cf"), master)
    os.makedirs(os.path.join(pfdir, "queue"), exist_ok=True)
    os.makedirs(os.path.join(pfdir, "data"), exist_ok=True)
    subprocess.run(["chown", "postfix:postfix", os.path.join(pfdir, "data")], check=True)
    chk = subprocess.run(["script", "-qec", "postfix -c %s check" % pfdir, "/dev/null"],
                         capture_output=True, text=True)
    if chk.returncode != 0:
        raise RuntimeError("postfix check failed: %s" % chk.stdout)
    r = subprocess.run(["script", "-qec", "postfix -c %s start" % pfdir, "/dev/null"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("postfix start failed: %s" % r.stdout)
    pidfile = os.path.join(pfdir, "queue", "pid", "master.pid")
    deadline = time.monotonic() + 20
    while not os.path.exists(pidfile) and time.monotonic() < deadline:
        time.sleep(0.05)
    with open(pidfile) as f:
        pids["postfix"] = int(f.read().strip())
    wait_ports(list(ports.values()))
    # Index the seed so that it is always message 1 (gotcha 17).
    subprocess.run(["doveadm", "-c", os.path.join(run, "dovecot-tls.conf"), "mailbox",
                    "status", "-u", USER, "messages", "INBOX"], check=True,
                   stdout=subprocess.DEVNULL)
    info = {"ports": ports, "pids": pids, "run": run, "user": USER, "password": PASSWORD,
            "maildir": maildir, "ca": os.path.join(run, "pki", "ca.crt")}
    write(os.path.join(run, "mailsys.json"), json.dumps(info, indent=1))
    return info


def stop(run):
    try:
        with open(os.path.join(run, "mailsys.json")) as f:
            pids = json.load(f)["pids"]
    except OSError:
        return
    for name, pid in pids.items():
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    for pid in pids.values():
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)


def main(argv):
    if len(argv) >= 3 and argv[1] == "start":
        info = start(argv[2], argv[3] if len(argv) > 3 else "certs/dev",
                     dev="--dev" in argv)
        print(json.dumps(info["ports"]))
    elif len(argv) == 3 and argv[1] == "stop":
        stop(argv[2])
    else:
        sys.stderr.write(__doc__)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
