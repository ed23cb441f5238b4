"""The monitoring files in config/deploy tied to the code: the alert rules
pass their promtool unit tests; every metric, label and label value that the
rules and the Grafana dashboard use exists in a real /metrics scrape after
real traffic (parsed from the files, so a renamed metric fails here, not on
the pager); the scrape passes `promtool check metrics`; and the metrics added
for the rules (upstream failures by reason, the upstream's certificate,
worker restarts, reloads) count what happened."""

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest
import yaml

from helpers import (ROOT, client_ctx, free_port, recv_exact, server_ctx,
                     service, tls_connect, wait_for)

# TLS 1.0 is deprecated in Python too: the legacy client uses it on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1")

DEPLOY = os.path.join(ROOT, "config", "deploy")
RULES = os.path.join(DEPLOY, "mailproxy.rules.yml")
RULE_TESTS = os.path.join(DEPLOY, "mailproxy.rules.test.yml")
DASHBOARD = os.path.join(DEPLOY, "grafana-dashboard.json")

# Made by Prometheus at scrape time, never by mailproxy: the series `up` and
# the target labels.  Everything else the files name must be in the scrape.
PROMETHEUS_SERIES = {"up"}
TARGET_LABELS = {"job", "instance"}


def promtool():
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: make deps installs it (Debian "
                    "package prometheus)", pytrace=False)
    return path


# ---- the rules' own unit tests ------------------------------------------

def test_rules_pass_promtool():
    out = subprocess.run([promtool(), "check", "rules", RULES],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run([promtool(), "test", "rules", RULE_TESTS],
                         capture_output=True, text=True, cwd=DEPLOY)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_every_alert_is_unit_tested_firing_and_quiet():
    alerts = {r["alert"] for g in yaml.safe_load(open(RULES))["groups"]
              for r in g["rules"] if "alert" in r}
    fired, quiet = set(), set()
    for t in yaml.safe_load(open(RULE_TESTS))["tests"]:
        for a in t.get("alert_rule_test", []):
            (fired if a.get("exp_alerts") else quiet).add(a["alertname"])
    # Each fires somewhere and is checked quiet somewhere (an empty list);
    # promtool's expected lists are exact, so the series next to the firing
    # ones are checked quiet too.
    assert alerts and alerts <= fired, alerts - fired
    assert alerts <= quiet, alerts - quiet


def test_every_alert_says_what_to_do():
    for g in yaml.safe_load(open(RULES))["groups"]:
        for r in g["rules"]:
            ann = r.get("annotations", {})
            assert ann.get("summary") and len(ann.get("description", "")) > 80, r["alert"]
            assert r.get("labels", {}).get("severity") in ("warning", "critical"), r["alert"]


# ---- PromQL, as much as the files use --------------------------------------

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right",
            "and", "or", "unless", "offset", "bool", "inf", "nan"}
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def parse_promql(expr):
    """-> (selectors [(metric, [(label, op, value)])], grouping labels)."""
    e = re.sub(r"\[[^\]]*\]", " ", expr)                 # ranges, subqueries
    groups = set()
    for m in re.finditer(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", e):
        groups |= {x.strip() for x in m.group(2).split(",") if x.strip()}
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    selectors = []
    for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}", e):
        selectors.append((m.group(1), MATCHER.findall(m.group(2))))
    e = re.sub(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{[^}]*\}", " ", e)
    e = re.sub(r'"(?:[^"\\]|\\.)*"', " ", e)
    for m in re.finditer(r"(?<![\w.$:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:]|\s*\()", e):
        if m.group(1) not in KEYWORDS:
            selectors.append((m.group(1), []))
    return selectors, groups


def test_promql_parser_on_known_expressions():
    sel, groups = parse_promql(
        'sum by (service, outcome) (rate(a_total{service=~"$service",outcome!="ok"}[5m]))'
        ' / on(service) group_left b_seconds unless c offset 15m > 3 * 86400')
    assert sel == [("a_total", [("service", "=~", "$service"), ("outcome", "!=", "ok")]),
                   ("b_seconds", []), ("c", [])]
    assert groups == {"service", "outcome"}


def uses():
    """Every expression of the rules and the dashboard, with the labels it
    names outside selectors (grouping, legends, annotations)."""
    out = []
    for g in yaml.safe_load(open(RULES))["groups"]:
        for r in g["rules"]:
            text = " ".join(str(v) for v in r.get("annotations", {}).values())
            out.append(("rule " + r.get("alert", r.get("record", "?")), r["expr"],
                        set(re.findall(r"\$labels\.([a-zA-Z_]\w*)", text))))
    dash = json.load(open(DASHBOARD))

    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))
    for p in panels(dash["panels"]):
        for t in p.get("targets", []):
            out.append(("panel %r" % p["title"], t["expr"],
                        set(re.findall(r"\{\{\s*([a-zA-Z_]\w*)\s*\}\}",
                                       t.get("legendFormat", "")))))
    for v in dash["templating"]["list"]:
        if v.get("type") != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_]\w*)\s*\)\s*", q)
        assert m, "a dashboard variable this test cannot read: %r" % q
        out.append(("variable " + v["name"], m.group(1), {m.group(2)}))
    return out


def parse_scrape(text):
    series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        assert m, "unparsable sample line: %r" % line
        labels = {k: v for k, op, v in MATCHER.findall(m.group(2) or "")}
        series.setdefault(m.group(1), []).append(labels)
    return series


def check_against(series, uses_):
    """The problems: names, labels and values the files use that the scrape
    does not have."""
    problems = []
    for where, expr, extra_labels in uses_:
        selectors, groups = parse_promql(expr)
        if not any(name for name, _ in selectors):
            problems.append("%s: no metric found in %r" % (where, expr))
        known = set()
        for name, matchers in selectors:
            if name in PROMETHEUS_SERIES:
                continue
            if name not in series:
                problems.append("%s: metric %s is not in the scrape" % (where, name))
                continue
            have = series[name]
            known |= {k for labels in have for k in labels}
            for label, op, value in matchers:
                if label in TARGET_LABELS:
                    continue
                values = {labels[label] for labels in have if label in labels}
                if not values:
                    problems.append("%s: %s has no label %s" % (where, name, label))
                    continue
                if "$" in value:
                    continue                     # a dashboard variable
                literals = value.split("|")
                if op in ("=", "!=") or all(re.fullmatch(r"[\w.:-]+", x) for x in literals):
                    missing = [x for x in literals if x not in values] if op != "=" \
                        else ([value] if value not in values else [])
                    if missing:
                        problems.append("%s: %s{%s} never has the value(s) %s (has %s)"
                                        % (where, name, label, missing, sorted(values)))
                elif op == "=~" and not any(re.fullmatch(value, x) for x in values):
                    problems.append("%s: no %s{%s} matches %r (has %s)"
                                    % (where, name, label, value, sorted(values)))
        for label in (groups | extra_labels) - TARGET_LABELS:
            if label not in known:
                problems.append("%s: label %s is on none of its metrics" % (where, label))
    return problems


# ---- the traffic -----------------------------------------------------------

def echo_imap(conn):
    conn.sendall(b"* OK hello\r\n")
    data = conn.recv(4096)
    if data:
        conn.sendall(data)
    while conn.recv(4096):
        pass


def smtp_script(greeting, ehlo_reply=None, starttls_reply=None):
    """An SMTP upstream that misbehaves at one step of the STARTTLS dialogue."""
    def handler(conn):
        conn.sendall(greeting)
        f = conn.makefile("rb")
        if ehlo_reply is not None and f.readline():
            conn.sendall(ehlo_reply)
            if starttls_reply is not None and f.readline():
                conn.sendall(starttls_reply)
        while conn.recv(4096):
            pass
    return handler


def plaintext_on_tls_port(conn):
    conn.sendall(b"220 not TLS at all\r\n")
    while conn.recv(4096):
        pass


# The upstream failures driven, and the reason each must be counted under.
FAILURES = {
    "verify": "upstream-verify-failed",
    "nostarttls": "upstream-no-starttls",
    "stlsrefused": "upstream-starttls-refused",
    "greetrefused": "upstream-refused",
    "ehlorefused": "upstream-ehlo-refused",
    "connect": "upstream-connect-failed",
    "handshake": "upstream-handshake-failed",
}


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        return r.read().decode()


def value(text, name, **labels):
    want = ",".join('%s="%s"' % kv for kv in labels.items())
    m = re.search(r"^%s%s (-?\d+)$" % (re.escape(name), re.escape("{%s}" % want) if want else ""),
                  text, re.M)
    return int(m.group(1)) if m else None


@pytest.fixture
def monitored(proxies, upstreams, certs):
    """A proxy with a service for each outcome the files look at, and the
    scrape after one round of real traffic through each."""
    trust = "upstream_ca = %s/ca.crt\nupstream_name = localhost\n" % certs
    # Bound and not listening: a connection is refused, and no listener
    # started later can take the port.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    good = upstreams(echo_imap, server_ctx(certs, "server-ecdsa"))
    ups = {
        "verify": (upstreams(echo_imap, server_ctx(certs, "wrong-name")).addr, "implicit", trust),
        "nostarttls": (upstreams(smtp_script(b"220 mx ESMTP\r\n",
                                             b"250-mx\r\n250 PIPELINING\r\n")).addr, "starttls", trust),
        "stlsrefused": (upstreams(smtp_script(b"220 mx ESMTP\r\n", b"250-mx\r\n250 STARTTLS\r\n",
                                              b"454 4.7.0 TLS not available\r\n")).addr,
                        "starttls", trust),
        "greetrefused": (upstreams(smtp_script(b"554 5.3.2 not now\r\n")).addr, "starttls", trust),
        "ehlorefused": (upstreams(smtp_script(b"220 mx ESMTP\r\n", b"550 5.7.1 no\r\n")).addr,
                        "starttls", trust),
        "connect": ("127.0.0.1:%d" % closed.getsockname()[1], "none", ""),
        "handshake": (upstreams(plaintext_on_tls_port).addr, "implicit", trust),
    }
    mport = free_port()
    cfg = "metrics = 127.0.0.1:%d\n" % mport
    cfg += service("good", "imap", good.addr, certs, "implicit",
                   trust + "tls_min_version = 1.0\n")
    for name, (addr, mode, extra) in ups.items():
        cfg += service(name, "smtp", addr, certs, mode, extra)
    # A token store nobody has authorized yet: its OAuth2 series, idle.
    store = os.path.join(certs, "never-authorized.json")
    cfg += service("oauth", "smtp", good.addr, certs, "implicit", trust + (
        "upstream_auth = xoauth2\nupstream_user = alice\nallow = 127.0.0.1\n"
        "oauth2_client_id = c\noauth2_token_url = https://127.0.0.1:1/t\n"
        "oauth2_device_url = https://127.0.0.1:1/d\noauth2_token_store = %s\n" % store))
    proxy = proxies(cfg)
    proxy.wait_log("event=metrics-listen")

    legacy = client_ctx(certs)
    legacy.minimum_version = legacy.maximum_version = ssl.TLSVersion.TLSv1
    legacy.set_ciphers("DEFAULT:@SECLEVEL=0")
    tls12 = client_ctx(certs, maximum_version=ssl.TLSVersion.TLSv1_2)
    for ctx in (None, tls12, legacy):
        s = tls_connect(proxy.port("good"), certs, ctx=ctx)
        assert recv_exact(s, 12) == b"* OK hello\r\n"
        s.sendall(b"a NOOP\r\n")
        assert recv_exact(s, 8) == b"a NOOP\r\n"
        s.close()
    for name in ups:
        s = tls_connect(proxy.port(name), certs)
        said = b""
        while b"\r\n" not in said:
            data = s.recv(512)
            assert data, (name, said)
            said += data
        assert said.startswith(b"421 4."), (name, said)
        s.close()
    proxy.wait_log("event=close", count=3 + len(ups))
    yield proxy, mport, scrape(mport)
    closed.close()


def test_scrape_has_every_name_the_rules_and_dashboard_use(monitored):
    _, _, text = monitored
    series = parse_scrape(text)
    uses_ = uses()
    assert len(uses_) > 30
    assert check_against(series, uses_) == []
    # The check can fail: a metric, a label and a value renamed in the
    # scrape are each found.
    renamed = {k.replace("mailproxy_upstream_failures_total", "mailproxy_upstream_fails_total"): v
               for k, v in series.items()}
    assert any("mailproxy_upstream_failures_total is not in the scrape" in p
               for p in check_against(renamed, uses_))
    relabelled = {k: [{("svc" if l == "service" else l): x for l, x in labels.items()}
                      for labels in v] for k, v in series.items()}
    assert any("has no label service" in p for p in check_against(relabelled, uses_))
    revalued = {k: [{l: x.replace("no-starttls", "nostarttls") for l, x in labels.items()}
                    for labels in v] for k, v in series.items()}
    assert any("upstream-no-starttls" in p for p in check_against(revalued, uses_))


def test_scrape_passes_promtool_check_metrics(monitored):
    _, _, text = monitored
    out = subprocess.run([promtool(), "check", "metrics"], input=text,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    # ... and promtool does complain about a bad exposition.
    bad = text.replace("# TYPE mailproxy_bytes_total counter",
                       "# TYPE mailproxy_bytes_total gauge")
    assert subprocess.run([promtool(), "check", "metrics"], input=bad,
                          capture_output=True, text=True).returncode != 0


def test_upstream_failures_counted_by_reason(monitored):
    _, _, text = monitored
    for svc, reason in FAILURES.items():
        assert value(text, "mailproxy_upstream_failures_total", service=svc, reason=reason) == 1
        others = re.findall(r'^mailproxy_upstream_failures_total\{service="%s",reason="(\S+)"\}'
                            % svc, text, re.M)
        assert others == [reason]
    assert "mailproxy_upstream_failures_total{service=\"good\"" not in text
    assert value(text, "mailproxy_client_tls_legacy_sessions_total", service="good",
                 client="127.0.0.1", version="1.0") == 1


def test_upstream_certificate_expiry(monitored, certs):
    _, _, text = monitored
    # Only the services whose upstream completed a TLS handshake have one.
    found = re.findall(r'^mailproxy_upstream_certificate_expiry_seconds\{service="(\w+)"\} (-?\d+)$',
                       text, re.M)
    assert [svc for svc, _ in found] == ["good"]
    info = ssl._ssl._test_decode_cert(os.path.join(certs, "server-ecdsa.crt"))
    left = ssl.cert_time_to_seconds(info["notAfter"]) - time.time()
    assert abs(int(found[0][1]) - left) < 30


# ---- workers and reloads --------------------------------------------------

def test_reload_metrics(proxies, upstreams, certs):
    up = upstreams(echo_imap)
    mport = free_port()
    good = "metrics = 127.0.0.1:%d\n" % mport + service("m", "imap", up.addr, certs)
    t0 = time.time()
    proxy = proxies(good)
    proxy.wait_log("event=metrics-listen")
    text = scrape(mport)
    assert value(text, "mailproxy_config_reload_failures_total") == 0
    assert value(text, "mailproxy_config_last_reload_successful") == 1
    loaded = value(text, "mailproxy_config_last_reload_success_timestamp_seconds")
    assert int(t0) - 1 <= loaded <= time.time() + 1
    proxy.rewrite(good + "bogus = 1\n")
    proxy.reload(expect="reload failed")
    text = scrape(mport)
    assert value(text, "mailproxy_config_reload_failures_total") == 1
    assert value(text, "mailproxy_config_last_reload_successful") == 0
    assert value(text, "mailproxy_config_last_reload_success_timestamp_seconds") == loaded
    time.sleep(1.1)
    proxy.rewrite(good)
    proxy.reload(expect="event=reload-ok")
    text = scrape(mport)
    assert value(text, "mailproxy_config_reload_failures_total") == 1
    assert value(text, "mailproxy_config_last_reload_successful") == 1
    assert value(text, "mailproxy_config_last_reload_success_timestamp_seconds") > loaded
    assert value(text, "mailproxy_worker_restarts_total") == 0


def test_worker_restarts_and_supervised_reloads(proxies, upstreams, certs):
    up = upstreams(echo_imap)
    mport, lport = free_port(), free_port()
    good = ("workers = 2\nmetrics = 127.0.0.1:%d\n" % mport +
            service("m", "imap", up.addr, certs).replace("127.0.0.1:0", "127.0.0.1:%d" % lport))
    proxy = proxies(good)
    proxy.wait_log(r"event=start .*worker=1")
    assert value(scrape(mport), "mailproxy_worker_restarts_total") == 0
    # Worker 1 (not the one serving /metrics), a child of our proxy.
    victim = int(re.findall(r"event=worker-start worker=1 pid=(\d+)", proxy.log())[0])
    os.kill(victim, signal.SIGKILL)
    proxy.wait_log(r"event=worker-start worker=1", count=2)
    assert value(scrape(mport), "mailproxy_worker_restarts_total") == 1
    # A broken file is refused once, by the supervisor (no worker sees it).
    proxy.rewrite(good + "bogus = 1\n")
    proxy.signal(signal.SIGHUP)
    proxy.wait_log("reload failed")
    wait_for(lambda: value(scrape(mport), "mailproxy_config_last_reload_successful") == 0,
             what="reload failure in /metrics")
    text = scrape(mport)
    assert value(text, "mailproxy_config_reload_failures_total") == 1
    # A listener that cannot bind: the supervisor binds, so it is refused
    # once, before any worker is touched.
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        proxy.rewrite(good.replace("127.0.0.1:%d" % lport,
                                   "127.0.0.1:%d" % taken.getsockname()[1]))
        before = len(re.findall("reload failed", proxy.log()))
        proxy.signal(signal.SIGHUP)
        proxy.wait_log("reload failed", count=before + 1)
        text = wait_for(lambda: (lambda t: value(t, "mailproxy_config_reload_failures_total") == 2
                                 and t)(scrape(mport)), what="the bind failure counted")
        assert value(text, "mailproxy_config_last_reload_successful") == 0
    finally:
        taken.close()
    proxy.rewrite(good)
    proxy.signal(signal.SIGHUP)
    proxy.wait_log("event=reload-ok", count=1)
    # /metrics is served by the new generation's worker 0 now.
    text = wait_for(lambda: (lambda t: value(t, "mailproxy_config_last_reload_successful") == 1
                             and t)(scrape(mport)), what="the good reload counted")
    assert value(text, "mailproxy_config_reload_failures_total") == 2
    assert value(text, "mailproxy_worker_restarts_total") == 1
