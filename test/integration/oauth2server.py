"""A scripted OAuth2 authorization server over TLS on 127.0.0.1: the token
endpoint (refresh_token and device_code grants) and the device
authorization endpoint (RFC 8628), with the misbehaviour a test needs.

Tokens live `lifetime` seconds; each refresh rotates the refresh token when
`rotate` is set (the old one stops working, as Microsoft may); `fail_next`
answers that many token requests with 503; `revoked` answers invalid_grant;
the device grant answers authorization_pending `pending` times, slow_down
once when `slow_down` is set, then grants, or denies / expires.  What an
SMTP test upstream accepts is `valid(token)`: issued here and not expired.
"""

import json
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class OAuth2Server:
    def __init__(self, certs_dir, lifetime=4, rotate=True, prefix=""):
        self.lifetime = lifetime
        # Put before every token and code issued (a marker for memcheck).
        self.prefix = prefix
        self.rotate = rotate
        self.fail_next = 0
        self.revoked = False
        self.delay = 0.0
        self.pending = 1
        self.slow_down = False
        self.device_outcome = "grant"      # or "access_denied", "expired_token"
        self.interval = 1
        self.device_expires_in = 30
        self.lock = threading.Lock()
        self.n = 0
        self.refresh = prefix + "rt-0"      # the one valid refresh token
        self.issued = {}                    # access token -> expiry (monotonic)
        self.requests = []                  # (path, form) in order
        self.polls = []                     # monotonic times of device polls
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs_dir + "/upstream.crt", certs_dir + "/upstream.key")
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def token_url(self):
        return "https://127.0.0.1:%d/token" % self.port

    @property
    def device_url(self):
        return "https://127.0.0.1:%d/device" % self.port

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def valid(self, token):
        with self.lock:
            exp = self.issued.get(token)
            return exp is not None and time.monotonic() < exp

    def refreshes(self):
        with self.lock:
            return sum(1 for p, f in self.requests
                       if f.get("grant_type") == "refresh_token")

    def _issue(self):
        """A new access token (and rotated refresh token); lock held."""
        self.n += 1
        access = "%sat-%d-%s" % (self.prefix, self.n, "x" * 40)
        self.issued[access] = time.monotonic() + self.lifetime
        body = {"access_token": access, "token_type": "Bearer",
                "expires_in": self.lifetime}
        if self.rotate or self.n == 1:
            self.refresh = "%srt-%d" % (self.prefix, self.n)
            body["refresh_token"] = self.refresh
        return 200, body

    def _token(self, form):
        grant = form.get("grant_type")
        if form.get("client_id") != "test-client":
            return 401, {"error": "invalid_client"}
        if grant == "refresh_token":
            if self.fail_next > 0:
                self.fail_next -= 1
                return 503, {"error": "temporarily_unavailable"}
            if self.revoked or form.get("refresh_token") != self.refresh:
                return 400, {"error": "invalid_grant",
                             "error_description": "AADSTS70000: the grant is "
                             "expired or revoked"}
            return self._issue()
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            self.polls.append(time.monotonic())
            if form.get("device_code") != self.prefix + "dc-secret":
                return 400, {"error": "invalid_grant"}
            if self.slow_down:
                self.slow_down = False
                return 400, {"error": "slow_down"}
            if self.pending > 0:
                self.pending -= 1
                return 400, {"error": "authorization_pending"}
            if self.device_outcome != "grant":
                return 400, {"error": self.device_outcome}
            return self._issue()
        return 400, {"error": "unsupported_grant_type"}

    def _device(self, form):
        if form.get("client_id") != "test-client":
            return 401, {"error": "invalid_client"}
        return 200, {"device_code": self.prefix + "dc-secret", "user_code": "WDJB-MJHT",
                     "verification_uri": "https://127.0.0.1/devicelogin",
                     "expires_in": self.device_expires_in, "interval": self.interval}

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                if server.delay:
                    time.sleep(server.delay)
                with server.lock:
                    server.requests.append((self.path, form))
                    if self.path == "/token":
                        status, body = server._token(form)
                    elif self.path == "/device":
                        status, body = server._device(form)
                    else:
                        status, body = 404, {"error": "not_found"}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

        return Handler
