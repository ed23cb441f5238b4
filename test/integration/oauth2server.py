"""A scripted OAuth2 authorization server over TLS on 127.0.0.1: the token
endpoint (refresh_token and device_code grants) and the device
authorization endpoint (RFC 8628), with the misbehaviour a test needs.

Tokens live `lifetime` seconds; each refresh rotates the refresh token when
`rotate` is set (the old one stops working, as Microsoft may); `fail_next`
answers that many token requests with 503; `revoked` answers invalid_grant;
the device grant answers authorization_pending `pending` times, slow_down
once when `slow_down` is set, then grants, or denies / expires.  What an
SMTP test upstream accepts is `valid(token)`: issued here and not expired.

The grants that need no person are checked as a provider checks them:
client_credentials with `client_secret`, or with a client assertion (RFC
7523 section 2.2) whose signature is verified with `client_cert` (Python's
`cryptography`), its x5t#S256, aud (the token URL), iss = sub = the
client, exp at most 10 minutes ahead, and a jti never seen before; the JWT
bearer grant of a Google service account (section 2.1) verified with
`sa_public_key`, iss = `sa_email`, sub = `sa_subject`.  Such grants get no
refresh token.
"""

import base64
import hashlib

import json
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_signature(key, alg, data, sig):
    """RS256, PS256 or ES256 (r || s) with key; raises InvalidSignature."""
    if alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
        key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "PS256" and isinstance(key, rsa.RSAPublicKey):
        key.verify(sig, data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                          salt_length=32), hashes.SHA256())
    elif alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey) and len(sig) == 64:
        der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                         int.from_bytes(sig[32:], "big"))
        key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    else:
        raise ValueError("alg %r with this key" % alg)


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
        self.client_secret = None           # client_credentials: the secret
        self.client_cert = None             # or the assertion's certificate (PEM)
        self.sa_public_key = None           # service_account: PEM
        self.sa_email = None
        self.sa_subject = None
        self.jtis = set()                   # assertion ids seen
        self.assertions = []                # (header, claims) accepted
        self.refusals = []                  # why assertions were refused
        self.codes = {}                     # authorization code -> its request
        self.code_refusals = []             # why code exchanges were refused
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

    def _issue(self, refresh=True):
        """A new access token (and rotated refresh token); lock held."""
        self.n += 1
        access = "%sat-%d-%s" % (self.prefix, self.n, "x" * 40)
        self.issued[access] = time.monotonic() + self.lifetime
        body = {"access_token": access, "token_type": "Bearer",
                "expires_in": self.lifetime}
        if refresh and (self.rotate or self.n == 1):
            self.refresh = "%srt-%d" % (self.prefix, self.n)
            body["refresh_token"] = self.refresh
        return 200, body

    @property
    def authorize_url(self):
        return "https://127.0.0.1:%d/authorize" % self.port

    def authorize(self, query):
        """What the authorization endpoint does once the person signed in:
        a one-time code bound to the request's PKCE challenge and redirect
        address.  query: the authorization address's parameters."""
        with self.lock:
            self.n += 1
            code = "%sac-%d-secret" % (self.prefix, self.n)
            self.codes[code] = dict(query)
            return code

    def _code_token(self, form):
        """authorization_code: the code once, with the verifier of its
        challenge (RFC 7636 S256) and the same redirect address."""
        req = self.codes.pop(form.get("code"), None)
        why = None
        if req is None:
            why = "unknown or used code"
        elif req.get("code_challenge_method") != "S256":
            why = "not S256"
        elif form.get("redirect_uri") != req.get("redirect_uri"):
            why = "redirect_uri differs"
        else:
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != \
                    req.get("code_challenge"):
                why = "code_verifier does not match the challenge"
        if why is not None:
            self.code_refusals.append(why)
            return 400, {"error": "invalid_grant", "error_description": why}
        return self._issue()

    def fetches(self):
        """Token requests of the grants that need no person."""
        with self.lock:
            return sum(1 for p, f in self.requests if f.get("grant_type") in
                       ("client_credentials", JWT_BEARER))

    def _check_jwt(self, jwt, public_key, issuer, subject, cert=None):
        """The claims of a JWT a provider would accept, or raise ValueError."""
        head64, claims64, sig64 = jwt.split(".")
        header = json.loads(b64url(head64))
        claims = json.loads(b64url(claims64))
        verify_signature(public_key, header.get("alg"), (head64 + "." + claims64).encode(),
                         b64url(sig64))
        if cert is not None:
            der = cert.public_bytes(serialization.Encoding.DER)
            want = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=")
            if header.get("x5t#S256", "").encode() != want:
                raise ValueError("x5t#S256 is not the certificate's")
        now = time.time()
        if claims.get("aud") != self.token_url:
            raise ValueError("aud %r" % claims.get("aud"))
        if claims.get("iss") != issuer or claims.get("sub") != subject:
            raise ValueError("iss/sub %r/%r" % (claims.get("iss"), claims.get("sub")))
        exp = claims.get("exp", 0)
        if not now < exp <= now + 600 + 5:
            raise ValueError("exp %r" % exp)
        if not claims.get("jti") or claims["jti"] in self.jtis:
            raise ValueError("jti reused")
        self.jtis.add(claims["jti"])
        self.assertions.append((header, claims))
        return claims

    def _app_token(self, form):
        """client_credentials: the client's secret or its signed assertion."""
        if self.fail_next > 0:
            self.fail_next -= 1
            return 503, {"error": "temporarily_unavailable"}
        if self.revoked:
            return 401, {"error": "invalid_client", "error_description":
                         "AADSTS7000215: Invalid client secret provided."}
        if form.get("client_id") != "test-client":
            return 401, {"error": "invalid_client"}
        if "client_assertion" in form:
            if (self.client_cert is None or form.get("client_assertion_type")
                    != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"):
                return 401, {"error": "invalid_client"}
            cert = x509.load_pem_x509_certificate(self.client_cert)
            try:
                self._check_jwt(form["client_assertion"], cert.public_key(),
                                "test-client", "test-client", cert)
            except (ValueError, InvalidSignature) as e:
                self.refusals.append(str(e) or type(e).__name__)
                return 401, {"error": "invalid_client",
                             "error_description": "assertion: %s" % e}
        elif self.client_secret is None or form.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client"}
        return self._issue(refresh=False)

    def _sa_token(self, form):
        """The JWT bearer grant of a service account."""
        if self.fail_next > 0:
            self.fail_next -= 1
            return 503, {"error": "temporarily_unavailable"}
        key = serialization.load_pem_public_key(self.sa_public_key)
        try:
            claims = self._check_jwt(form.get("assertion", ".."), key, self.sa_email,
                                     self.sa_subject)
        except (ValueError, InvalidSignature) as e:
            self.refusals.append(str(e) or type(e).__name__)
            return 400, {"error": "invalid_grant", "error_description": str(e)}
        if claims.get("scope") != "https://mail.google.com/":
            return 400, {"error": "invalid_scope"}
        return self._issue(refresh=False)

    def _token(self, form):
        grant = form.get("grant_type")
        if grant == "client_credentials":
            return self._app_token(form)
        if grant == JWT_BEARER:
            return self._sa_token(form)
        if form.get("client_id") != "test-client":
            return 401, {"error": "invalid_client"}
        if grant == "authorization_code":
            return self._code_token(form)
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
