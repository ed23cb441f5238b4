/*
 * upstream: the server's side of a session before the relay: dial each
 * address in turn, PROXY header out, TLS (implicit or after STARTTLS, with
 * verification) and the negotiator's dialogue; when it fails, the client
 * is told in its protocol.
 */
#include "sess_impl.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/base64.h>
#include <openssl/mem.h>
#include <openssl/x509.h>

#include "accounts.h"
#include "dns.h"
#include "oauth2.h"
#include "proxyproto.h"
#include "tls.h"

/* The token table entry of the session's credential, or -1: the
 * account's store with accounts, else the service's. */
static int
token_slot(const struct session *s)
{
	return s->account != NULL ? (s->account->cred == ACCT_TOKEN_STORE ?
	    s->account->oauth2.slot : -1) : s->svc->oauth2.slot;
}

/* A token from the table: its length, or -1 with why. */
static int
stored_token(int slot, char *out, size_t cap, char *why, size_t whylen)
{
	size_t len;

	return oauth2_take(slot, out, cap, &len, why, whylen) ==
	    OAUTH2_TOKEN ? (int)len : -1;
}

/* How long a session waits for a token being refreshed, at most. */
#define TOKEN_WAIT	10.
#define TOKEN_POLL	0.05

/*
 * oauth2_token_store: the upstream is dialled only once the supervisor has
 * a valid access token.  While a refresh is in flight the session polls
 * the shared table (TOKEN_WAIT at most); with no token coming it fails
 * with a temporary error.  True when the dial may go on.
 */
static bool
token_ready(EV_P_ struct session *s)
{
	char why[160];
	enum oauth2_take t;
	double wait;
	int slot = token_slot(s);

	if (slot < 0)
		return true;
	if ((t = oauth2_ready(slot, why, sizeof(why))) == OAUTH2_TOKEN)
		return true;
	if (t == OAUTH2_PENDING && s->state != SESS_TOKEN_WAIT) {
		wait = s->svc->timeouts.negotiation < TOKEN_WAIT ?
		    s->svc->timeouts.negotiation : TOKEN_WAIT;
		s->state = SESS_TOKEN_WAIT;
		s->neg_deadline = ev_now(EV_A) + wait;
		log_debug("sess=%llu svc=%s event=token-wait",
		    (unsigned long long)s->id, s->svc->name);
	}
	if (t == OAUTH2_PENDING && ev_now(EV_A) < s->neg_deadline) {
		ev_timer_stop(EV_A_ &s->timer);
		ev_timer_set(&s->timer, TOKEN_POLL, 0.);
		ev_timer_start(EV_A_ &s->timer);
		return false;
	}
	if (t == OAUTH2_PENDING)
		snprintf(why, sizeof(why), "no valid access token in time (the "
		    "refresh is still failing or slow)");
	fail_upstream(EV_A_ s, R_UPSTREAM_AUTH_NO_TOKEN, why);
	return false;
}

/*
 * Has a connect in progress finished (well or not)?  To an upstream on this
 * host it has, inside connect() itself: the session goes on at once instead
 * of a loop round (and two epoll_ctl) for the write event.
 */
static bool
connected_now(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };

	return poll(&p, 1, 0) == 1;
}

/* Dials the next upstream address; farewell when none is left. */
void
start_connect(EV_P_ struct session *s)
{
	const struct service *svc = s->svc;
	char why[160] = "no address";
	size_t naddrs;
	const struct sockaddr_any *addrs;
	int fd, rc;

	if (s->next_addr == 0 && !token_ready(EV_A_ s))
		return;
	addrs = dns_addrs(svc, &naddrs);
	while (s->next_addr < naddrs) {
		const struct sockaddr_any *a = &addrs[s->next_addr++];

		sockaddr_text((const struct sockaddr *)&a->ss, s->upstream_addr,
		    sizeof(s->upstream_addr));
		fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (fd < 0) {
			snprintf(why, sizeof(why), "socket: %s", strerror(errno));
			continue;
		}
		set_nodelay(fd);
		if ((rc = connect(fd, (const struct sockaddr *)&a->ss,
		    a->len)) == 0 || errno == EINPROGRESS) {
			ep_init(&s->upstream, fd, NULL, sess_io_cb, s);
			s->upstream.wr_wait = rc == 0 || connected_now(fd) ? 0 :
			    EV_WRITE;
			s->state = SESS_CONNECT;
			set_deadline(EV_A_ s, svc->timeouts.connect);
			return;
		}
		snprintf(why, sizeof(why), "%s: %s", s->upstream_addr,
		    strerror(errno));
		close(fd);
	}
	fail_upstream(EV_A_ s, R_UPSTREAM_CONNECT_FAILED, why);
}

/* How many addresses the upstream has now (the list may have been
 * renewed while one was being dialled). */
static size_t
naddrs_now(const struct service *svc)
{
	size_t n;

	(void)dns_addrs(svc, &n);
	return n;
}

/*
 * proxy_protocol_out: the header goes first, before any TLS or STARTTLS,
 * in one send on the fresh socket (at most 232 bytes always fit).
 */
static int
send_proxy_header(struct session *s)
{
	uint8_t hdr[PP_MAX_HEADER];
	size_t n;

	/* Where the client connected to, unless a PROXY header told us. */
	if (s->local_addr.len == 0) {
		s->local_addr.len = sizeof(s->local_addr.ss);
		if (getsockname(s->client.fd, (struct sockaddr *)&s->local_addr.ss,
		    &s->local_addr.len) < 0)
			return -1;
	}
	n = pp_build(s->svc->proxy_protocol_out, &s->peer_addr, &s->local_addr,
	    hdr, sizeof(hdr));

	return n > 0 && send(s->upstream.fd, hdr, n, MSG_NOSIGNAL |
	    MSG_DONTWAIT) == (ssize_t)n ? 0 : -1;
}

/* Does the upstream side need a dialogue before the relay? */
static bool
needs_negotiator(const struct service *svc)
{
	return svc->upstream_tls == TLS_MODE_STARTTLS ||
	    svc->client_tls == TLS_MODE_STARTTLS ||
	    svc->upstream_auth != AUTH_NONE;
}

/*
 * Hands the negotiator the credential it logs in upstream with (the secret
 * is wiped here after): the service's (upstream_auth = plain, login,
 * xoauth2), or, with accounts, the account's the client logged in as.
 * Every way a credential is fetched is here.
 */
static int
set_credentials(struct session *s, char *why, size_t whylen)
{
	const struct account *a = s->account;
	char secret[SECRET_MAX + 1];
	int n = -1, rc = -1, mech = s->svc->upstream_auth;
	const char *user = s->svc->upstream_user;

	if (a == NULL && s->svc->oauth2.slot >= 0)
		n = stored_token(s->svc->oauth2.slot, secret, sizeof(secret),
		    why, whylen);
	else if (a == NULL)
		n = config_auth_secret(s->svc, secret, sizeof(secret), why,
		    whylen);
	else {
		user = a->upstream_user;
		switch (a->cred) {
		case ACCT_PASSWORD:
			mech = AUTH_ACCOUNTS;	/* a password, see neg_set_auth() */
			n = (int)a->upstream_password_len;
			memcpy(secret, a->upstream_password, (size_t)n + 1);
			break;
		case ACCT_TOKEN_FILE:
			mech = AUTH_XOAUTH2;
			n = secret_read(a->upstream_token_file, secret,
			    sizeof(secret), why, whylen);
			break;
		case ACCT_TOKEN_STORE:
			mech = AUTH_XOAUTH2;
			n = stored_token(a->oauth2.slot, secret, sizeof(secret),
			    why, whylen);
			break;
		}
	}
	if (n >= 0 && (rc = neg_set_auth(s->neg, mech, user, secret,
	    (size_t)n)) < 0)
		snprintf(why, whylen, "out of memory");
	OPENSSL_cleanse(secret, sizeof(secret));
	return rc;
}

/* Seconds left for the current phase: its own limit, capped by the
 * absolute negotiation deadline while a STARTTLS dialogue is running. */
static double
phase_seconds(EV_P_ struct session *s, int limit)
{
	double left;

	if (s->neg == NULL)
		return limit;
	left = s->neg_deadline - ev_now(EV_A);
	return left < limit ? (left > 0.001 ? left : 0.001) : limit;
}

/* Puts TLS on the (connected) upstream side and starts the handshake. */
static void
start_upstream_tls(EV_P_ struct session *s)
{
	SSL *ssl;

	if ((ssl = SSL_new(s->svc->upstream_ctx)) == NULL ||
	    tls_upstream_setup(ssl, s->svc) < 0) {
		SSL_free(ssl);
		fail_upstream(EV_A_ s, R_UPSTREAM_TLS_SETUP_FAILED, NULL);
		return;
	}
	SSL_set_connect_state(ssl);
	if (s->svc->upstream_resumption)
		tls_offer_session(ssl);
	ep_start_tls(&s->upstream, ssl);
	s->state = SESS_UPSTREAM_HANDSHAKE;
	ev_timer_stop(EV_A_ &s->timer);
	ev_timer_set(&s->timer, phase_seconds(EV_A_ s,
	    s->svc->timeouts.handshake), 0.);
	ev_timer_start(EV_A_ &s->timer);
}

void
connect_done(EV_P_ struct session *s)
{
	int err = 0;
	socklen_t len = sizeof(err);
	char why[160];

	if (getsockopt(s->upstream.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err != 0) {
		snprintf(why, sizeof(why), "%s: %s", s->upstream_addr,
		    strerror(err));
		ep_close(EV_A_ &s->upstream);
		if (s->next_addr < naddrs_now(s->svc)) {
			log_debug("sess=%llu connect %s", (unsigned long long)s->id,
			    why);
			start_connect(EV_A_ s);
		} else
			fail_upstream(EV_A_ s, R_UPSTREAM_CONNECT_FAILED, why);
		return;
	}
	s->upstream.wr_wait = 0;
	metrics_upstream_connect(s->metrics, true);
	if (s->svc->proxy_protocol_out != 0 && send_proxy_header(s) < 0) {
		fail_upstream(EV_A_ s, R_UPSTREAM_ERROR, "cannot send the PROXY header");
		return;
	}
	if (needs_negotiator(s->svc)) {
		/* STARTTLS upstream, and/or a greeting to swallow because the
		 * proxy already greeted a STARTTLS client itself. */
		s->neg = neg_new(s->svc->protocol, s->svc->ehlo_name,
		    s->svc->upstream_tls == TLS_MODE_STARTTLS,
		    s->svc->client_tls != TLS_MODE_STARTTLS &&
		    s->svc->upstream_auth != AUTH_ACCOUNTS);
		if (s->neg == NULL) {
			fail_upstream(EV_A_ s, R_OUT_OF_MEMORY, NULL);
			return;
		}
		/* A reload removed or changed the account since its login
		 * was checked: its credential is not the proxy's to use. */
		if (s->account != NULL &&
		    !accounts_current(s->account->fingerprint)) {
			fail_upstream(EV_A_ s, R_ACCOUNT_REMOVED,
			    s->account->name);
			return;
		}
		if (s->svc->upstream_auth != AUTH_NONE &&
		    set_credentials(s, why, sizeof(why)) < 0) {
			fail_upstream(EV_A_ s, R_UPSTREAM_AUTH_NO_TOKEN, why);
			return;
		}
		s->neg_deadline = ev_now(EV_A) + s->svc->timeouts.negotiation;
	}
	if (s->svc->upstream_tls == TLS_MODE_IMPLICIT)
		start_upstream_tls(EV_A_ s);
	else if (s->neg != NULL) {
		s->state = SESS_NEGOTIATE;
		set_deadline_at(EV_A_ s, s->neg_deadline);
	} else
		start_relay(EV_A_ s);
}

/* upstream_pin refused the key: both hashes, so the admin can tell a
 * rotation from an impostor. */
static void
pin_mismatch(const struct service *svc, char *out, size_t len)
{
	size_t o = (size_t)snprintf(out, len, "pin-mismatch: the server's key "
	    "is %s, pinned:", tls_pin_seen()[0] ? tls_pin_seen() : "-");

	for (size_t i = 0; i < svc->nupstream_pins && o < len; i++) {
		char b64[48];
		EVP_EncodeBlock((uint8_t *)b64, svc->upstream_pins[i], 32);
		o += (size_t)snprintf(out + o, len - o, " sha256/%s", b64);
	}
}

/* Names why the upstream handshake failed: verification first. */
void
upstream_handshake_failed(EV_P_ struct session *s)
{
	long v = SSL_get_verify_result(s->upstream.ssl);
	char detail[256];

	/* INVALID_CALL: no certificate was checked (the peer never sent one,
	 * e.g. it does not speak TLS): a handshake failure, not a verify one. */
	if (v == X509_V_ERR_APPLICATION_VERIFICATION) {
		pin_mismatch(s->svc, detail, sizeof(detail));
		fail_upstream(EV_A_ s, R_UPSTREAM_VERIFY_FAILED, detail);
	} else if (v != X509_V_OK && v != X509_V_ERR_INVALID_CALL) {
		const char *what =
		    v == X509_V_ERR_CERT_HAS_EXPIRED ? "expired" :
		    v == X509_V_ERR_CERT_NOT_YET_VALID ? "not-yet-valid" :
		    v == X509_V_ERR_HOSTNAME_MISMATCH ? "wrong-name" :
		    v == X509_V_ERR_IP_ADDRESS_MISMATCH ? "wrong-name" :
		    v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
		    v == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
		    v == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
		    v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ? "unknown-ca" :
		    "invalid";
		snprintf(detail, sizeof(detail), "%s: %s (name %s)", what,
		    X509_verify_cert_error_string(v), s->svc->upstream_name ?
		    s->svc->upstream_name : "-");
		fail_upstream(EV_A_ s, R_UPSTREAM_VERIFY_FAILED, detail);
	} else
		fail_upstream(EV_A_ s, R_UPSTREAM_HANDSHAKE_FAILED, s->upstream.err);
}

/*
 * The upstream failed before the relay: tell the client in its protocol
 * (a temporary error, so a mail client retries later) and close.
 */
void
fail_upstream(EV_P_ struct session *s, enum close_reason reason,
    const char *detail)
{
	/* What the client is told: the reason's table entry says which of
	 * the protocol's lines. */
	enum tell tell = reason_tell(reason);
	const char *msg = tell == TELL_NOTHING ? NULL :
	    proto_text(s->svc->protocol)->told[tell];
	struct logline ll;

	/* Built as fields: the detail quotes what the upstream said. */
	logline_init(&ll);
	logline_num(&ll, "sess", s->id);
	logline_str(&ll, "svc", s->svc->name);
	logline_str(&ll, "event", "upstream-failed");
	logline_str(&ll, "reason", reason_name(reason));
	logline_str(&ll, "detail", detail ? detail : "");
	logline_emit(&ll, LOG_LVL_WARN);
	metrics_upstream_failure(s->metrics, reason);
	if (reason_outcome(reason) == END_CONNECT)
		metrics_upstream_connect(s->metrics, false);
	/* The close line, later, still says what the upstream's TLS was. */
	if (s->upstream.ssl != NULL)
		tls_describe(s->upstream.ssl, s->upstream_tls,
		    sizeof(s->upstream_tls));
	ep_close(EV_A_ &s->upstream);
	buf_release(&s->u2c);	/* nothing but our error reaches the client */
	if (s->account != NULL && !s->accepted)
		login_unavailable(sess_login(s), &s->u2c);	/* its login */
	else if (msg != NULL)
		proto_say(&s->u2c, "%s", msg);
	close_after_reply(EV_A_ s, LOG_LVL_WARN, reason, detail);
}

/*
 * STARTTLS was accepted.  A byte already waiting on the socket is injected
 * plaintext: show it to the negotiator (which fails) instead of letting it
 * reach the handshake.  Later bytes would be parsed as TLS records and fail
 * the handshake.
 */
static enum neg_verdict
check_injection(struct session *s, struct neg_out *out)
{
	char peek[64];
	ssize_t n;

	n = recv(s->upstream.fd, peek, sizeof(peek), MSG_PEEK | MSG_DONTWAIT);
	if (n <= 0)
		return NEG_START_TLS;
	return neg_feed(s->neg, peek, (size_t)n, out);
}

/*
 * The upstream dialogue is over (c2u sent): what the client sent while it
 * ran (held: after its login, or read while the proxy logged in upstream)
 * goes on, to the front or the relay, in order.
 */
static void
take_held(struct session *s)
{
	size_t len;
	const char *p;

	if ((p = buf_peek(&s->held, &len)) != NULL) {
		(void)buf_append(&s->c2u, p, len);	/* same capacity */
		buf_release(&s->held);
	}
}

static void
apply_verdict(EV_P_ struct session *s, enum neg_verdict v, struct neg_out *out)
{
	if (v == NEG_START_TLS)
		v = check_injection(s, out);
	switch (v) {
	case NEG_CONTINUE:
		if (s->state != SESS_NEGOTIATE) {
			s->state = SESS_NEGOTIATE;
			set_deadline_at(EV_A_ s, s->neg_deadline);
		}
		break;
	case NEG_START_TLS:
		start_upstream_tls(EV_A_ s);
		break;
	case NEG_RELAY:
		log_debug("sess=%llu svc=%s event=starttls-ok",
		    (unsigned long long)s->id, s->svc->name);
		take_held(s);
		if (s->svc->upstream_tls == TLS_MODE_STARTTLS)
			metrics_starttls(s->metrics, 0);
		if (s->account != NULL)
			account_logged_in(EV_A_ s);
		else if (s->svc->upstream_auth != AUTH_NONE)
			start_front(EV_A_ s);
		else
			start_relay(EV_A_ s);
		break;
	case NEG_FAIL:
		fail_upstream(EV_A_ s, neg_reason(s->neg), neg_detail(s->neg));
		break;
	}
}

/*
 * One round of the dialogue: flush our commands, read what the upstream
 * said (into neg_in, never toward the client) and feed it.
 */
void
negotiate(EV_P_ struct session *s)
{
	struct neg_out out = { &s->c2u, &s->u2c };
	enum ep_status st = EP_OK;
	enum neg_verdict v;
	const char *p;
	size_t len;

	for (int round = 0; round < 4 && st == EP_OK; round++) {
		if (!buf_empty(&s->c2u) && s->upstream.wr_wait == 0 &&
		    ep_write(&s->upstream, &s->c2u) == EP_ERROR) {
			fail_upstream(EV_A_ s, R_UPSTREAM_ERROR, s->upstream.err);
			return;
		}
		if (s->upstream.rd_wait != 0)
			return;
		st = ep_read(&s->upstream, &s->neg_in);
		if ((p = buf_peek(&s->neg_in, &len)) != NULL) {
			v = neg_feed(s->neg, p, len, &out);
			buf_consume(&s->neg_in, len);
			if (v != NEG_CONTINUE) {
				apply_verdict(EV_A_ s, v, &out);
				return;
			}
			/* A new command goes out at the next round. */
			if (st != EP_OK && !buf_empty(&s->c2u))
				st = EP_OK;
		}
	}
	if (st == EP_EOF)
		fail_upstream(EV_A_ s, R_UPSTREAM_CLOSED_EARLY, "during the "
		    "negotiation");
	else if (st == EP_ERROR)
		fail_upstream(EV_A_ s, R_UPSTREAM_ERROR, s->upstream.err);
}

/* The upstream handshake (implicit TLS or after STARTTLS) is complete. */
void
upstream_tls_up(EV_P_ struct session *s)
{
	struct neg_out out = { &s->c2u, &s->u2c };

	metrics_upstream_cert(s->metrics, s->upstream.ssl);
	metrics_handshake(s->metrics, 1, SSL_session_reused(s->upstream.ssl));
	if (s->neg == NULL)
		start_relay(EV_A_ s);
	else if (s->svc->upstream_tls == TLS_MODE_IMPLICIT) {
		/* Implicit TLS: the greeting to check comes inside TLS. */
		s->state = SESS_NEGOTIATE;
		set_deadline_at(EV_A_ s, s->neg_deadline);
	} else
		apply_verdict(EV_A_ s, neg_tls_ready(s->neg, &out), &out);
}
