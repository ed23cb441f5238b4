"""watch_files = yes: a certificate replaced on disk (renamed into place as
certbot and editors do, or swapped under a Kubernetes "..data" symlink) is
served to the next client without a signal; a broken replacement keeps the
old certificate serving; watch_files = no ignores changes."""

import os
import shutil
import ssl
import time

from helpers import echo, live_certs, recv_exact, service, tls_connect, wait_for


def served(port, certs):
    """The DER certificate a new client is shown."""
    s = tls_connect(port, certs)
    der = s.getpeercert(binary_form=True)
    assert recv_exact(s, 11) == b"* OK echo\r\n"
    s.close()
    return der


def der_of(path):
    return ssl.PEM_cert_to_DER_cert(open(path).read())


def config(certs, up, crt, key, watch="yes"):
    return "watch_files = %s\n" % watch + service("w", "imap", up.addr, certs).replace(
        "cert = %s/server-ecdsa.crt" % certs, "cert = %s" % crt).replace(
        "key = %s/server-ecdsa.key" % certs, "key = %s" % key)


def watched(proxies, upstreams, certs, tmp_path, watch="yes"):
    """A proxy serving a copy of the ECDSA pair; (proxy, cert, key path)."""
    live = live_certs(certs, tmp_path)
    crt, key = str(live / "server-ecdsa.crt"), str(live / "server-ecdsa.key")
    return proxies(config(certs, upstreams(echo), crt, key, watch)), crt, key


def replace_by_rename(src, dst):
    """Write next to the target, then rename over it (atomic, as certbot)."""
    tmp = dst + ".tmp"
    shutil.copy(src, tmp)
    os.rename(tmp, dst)


def test_renamed_into_place_is_served_without_a_signal(proxies, upstreams, certs, tmp_path):
    proxy, crt, key = watched(proxies, upstreams, certs, tmp_path)
    port = proxy.port("w")
    held = tls_connect(port, certs)                 # an open session
    assert recv_exact(held, 11) == b"* OK echo\r\n"
    assert served(port, certs) == der_of(os.path.join(certs, "server-ecdsa.crt"))
    replace_by_rename(os.path.join(certs, "server-rsa.crt"), crt)
    replace_by_rename(os.path.join(certs, "server-rsa.key"), key)
    proxy.wait_log("event=files-changed")
    proxy.wait_log("event=reload-ok")
    assert served(port, certs) == der_of(os.path.join(certs, "server-rsa.crt"))
    held.sendall(b"still here\r\n")                 # the open session goes on
    assert recv_exact(held, 12) == b"still here\r\n"
    held.close()


def test_kubernetes_data_symlink_swap(proxies, upstreams, certs, tmp_path):
    """A mounted Secret: tls.crt -> ..data/tls.crt, ..data -> ..2026_a; an
    update writes ..2026_b and renames a new ..data link over the old one."""
    up = upstreams(echo)
    mount = tmp_path / "tls"
    mount.mkdir()
    for gen, pair in (("..2026_a", "server-ecdsa"), ("..2026_b", "server-rsa")):
        os.mkdir(mount / gen)
        shutil.copy(os.path.join(certs, pair + ".crt"), mount / gen / "tls.crt")
        shutil.copy(os.path.join(certs, pair + ".key"), mount / gen / "tls.key")
    os.symlink("..2026_a", mount / "..data")
    os.symlink("..data/tls.crt", mount / "tls.crt")
    os.symlink("..data/tls.key", mount / "tls.key")
    proxy = proxies(config(certs, up, str(mount / "tls.crt"), str(mount / "tls.key")))
    port = proxy.port("w")
    assert served(port, certs) == der_of(os.path.join(certs, "server-ecdsa.crt"))
    os.symlink("..2026_b", mount / "..data_tmp")
    os.rename(mount / "..data_tmp", mount / "..data")
    proxy.wait_log("event=reload-ok")
    assert served(port, certs) == der_of(os.path.join(certs, "server-rsa.crt"))


def test_a_broken_replacement_keeps_the_old_certificate(proxies, upstreams, certs, tmp_path):
    proxy, crt, key = watched(proxies, upstreams, certs, tmp_path)
    port = proxy.port("w")
    with open(crt, "w") as f:                       # half-written
        f.write("-----BEGIN CERTIFICATE-----\nMIIB\n")
    proxy.wait_log("event=files-changed")
    proxy.wait_log(r"reload failed, keeping the running configuration.*server-ecdsa\.crt")
    assert served(port, certs) == der_of(os.path.join(certs, "server-ecdsa.crt"))
    # Finished writing (the key unchanged): now it loads.
    shutil.copy(os.path.join(certs, "server-ecdsa.crt"), crt)
    proxy.wait_log("event=reload-ok")
    assert served(port, certs) == der_of(os.path.join(certs, "server-ecdsa.crt"))


def test_watch_files_no_ignores_changes(proxies, upstreams, certs, tmp_path):
    proxy, crt, key = watched(proxies, upstreams, certs, tmp_path, watch="no")
    replace_by_rename(os.path.join(certs, "server-rsa.crt"), crt)
    replace_by_rename(os.path.join(certs, "server-rsa.key"), key)
    time.sleep(1.5)                                 # longer than the settle time
    assert "files-changed" not in proxy.log() and "event=reload " not in proxy.log()
    assert served(proxy.port("w"), certs) == der_of(os.path.join(certs, "server-ecdsa.crt"))


def test_the_config_file_itself_is_watched(proxies, upstreams, certs):
    up = upstreams(echo)
    proxy = proxies("watch_files = yes\n" + service("w", "imap", up.addr, certs))
    port = proxy.port("w")
    with open(proxy.config, "a") as f:                # an edit: a second service
        f.write(service("w2", "imap", up.addr, certs))
    proxy.wait_log("event=reload-ok")
    wait_for(lambda: "event=listen svc=w2" in proxy.log(), what="the new service")
    assert served(port, certs)                       # the first one still serves
