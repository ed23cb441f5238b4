/*
 * session: the per-connection state machine and the relay.
 */
#include "session.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/mem.h>
#include <openssl/x509.h>

#include "buffer.h"
#include "endpoint.h"
#include "front.h"
#include "guard.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "negotiate.h"
#include "proxyproto.h"
#include "tls.h"

enum sess_state {
	SESS_PROXY_HEADER,	/* proxy_protocol_in: reading the header */
	SESS_CLIENT_PRETLS,	/* client_tls = starttls: before STARTTLS */
	SESS_CLIENT_HANDSHAKE,
	SESS_CONNECT,
	SESS_NEGOTIATE,		/* upstream greeting/STARTTLS dialogue */
	SESS_UPSTREAM_HANDSHAKE,
	SESS_FRONT,		/* upstream_auth: answering the device */
	SESS_RELAY,
	SESS_FAREWELL,		/* sending the client an error, then closing */
};

static const char *const sess_state_names[] = {
	"proxy-header", "client-pretls", "client-handshake", "connect",
	"negotiate", "upstream-handshake", "front", "relay", "farewell",
};

/* Upper bound of read/write rounds per callback, for fairness. */
#define PUMP_ROUNDS	16

/*
 * Invariants: before RELAY no client byte is read except by the TLS
 * handshake, the PROXY header reader and the client-side STARTTLS dialogue
 * (which consume exactly what they parse; other early bytes wait in the
 * socket), c2u holds only commands the negotiator wrote for the
 * upstream, u2c only what the proxy itself says to the client (its greeting
 * or an error), and what the upstream says goes to neg_in, never to the
 * client.  From RELAY on, c2u holds client bytes and u2c upstream bytes.
 * closing is set once and the session is freed by the callback wrapper
 * that saw it.
 */
struct session {
	uint64_t		 id;
	struct config		*cf;		/* our reference */
	const struct service	*svc;
	enum sess_state		 state;
	struct endpoint		 client;
	struct endpoint		 upstream;
	struct buf		 c2u;
	struct buf		 u2c;
	struct svc_metrics	*metrics;	/* this worker's counters */
	struct cneg		*cneg;		/* client_tls = starttls */
	bool			 client_starttls; /* STARTTLS accepted */
	struct negotiator	*neg;		/* see needs_negotiator() */
	struct front		*front;		/* upstream_auth, until MAIL */
	struct guard		*guard;		/* client in TLS: mid-command */
	bool			 starttls_in_tls; /* the guard saw one */
	struct buf		 neg_in;	/* upstream bytes for neg */
	ev_tstamp		 neg_deadline;	/* absolute */
	ev_timer		 timer;
	ev_tstamp		 started;
	ev_tstamp		 last_activity;
	size_t			 next_addr;	/* upstream address to try */
	struct sockaddr_any	 peer_addr;	/* the client (PROXY: carried) */
	struct sockaddr_any	 local_addr;	/* where it connected to (lazy) */
	struct sockaddr_any	 count_addr;	/* socket peer, for the caps */
	uint8_t			*pp_buf;	/* partial PROXY header, rare */
	size_t			 pp_len;
	char			 peer[64];
	char			 upstream_addr[64];
	const char		*first_eof;	/* "client" or "upstream" */
	bool			 closing;
	bool			 abort;		/* close with RST */
	const char		*reason;
	char			 detail[256];
	enum log_level		 severity;
	enum log_level		 farewell_severity;
	struct session		*prev, *next;
};

static struct session	*sessions;
static size_t		 nsessions;
static uint64_t		 next_id = 1;

static void io_cb(EV_P_ ev_io *w, int revents);
static void read_proxy_header(EV_P_ struct session *s);
static void timer_cb(EV_P_ ev_timer *w, int revents);
static void step(EV_P_ struct session *s);

static uint64_t		 worker_pid;	/* for the close line, read once */

void
sess_set_id_base(uint64_t base)
{
	next_id = base + 1;
	worker_pid = (uint64_t)getpid();
}

size_t
sess_count(void)
{
	return nsessions;
}

static void
set_deadline(EV_P_ struct session *s, int seconds)
{
	ev_timer_stop(EV_A_ &s->timer);
	ev_timer_set(&s->timer, seconds, 0.);
	ev_timer_start(EV_A_ &s->timer);
}

static void
log_close(struct session *s)
{
	struct logline ll;
	char buf[128];
	const char *sni = NULL;

	if (!log_enabled(s->severity))
		return;		/* not even built: it costs per session */
	logline_init(&ll);
	logline_num(&ll, "sess", s->id);
	logline_str(&ll, "event", "close");
	logline_str(&ll, "svc", s->svc->name);
	logline_num(&ll, "pid", worker_pid);
	logline_str(&ll, "client", s->peer);
	if (s->client.ssl != NULL)
		sni = SSL_get_servername(s->client.ssl,
		    TLSEXT_NAMETYPE_host_name);
	logline_str(&ll, "sni", sni);
	tls_describe(s->client.ssl, buf, sizeof(buf));
	logline_str(&ll, "client_tls", buf);
	logline_str(&ll, "upstream", s->upstream_addr[0] ? s->upstream_addr :
	    NULL);
	tls_describe(s->upstream.ssl, buf, sizeof(buf));
	logline_str(&ll, "upstream_tls", buf);
	logline_num(&ll, "bytes_in", s->client.bytes_in);
	logline_num(&ll, "bytes_out", s->client.bytes_out);
	logline_num(&ll, "ms", (uint64_t)((ev_time() - s->started) * 1000));
	logline_str(&ll, "state", sess_state_names[s->state]);
	logline_str(&ll, "reason", s->reason);
	if (s->detail[0] != '\0')
		logline_str(&ll, "detail", s->detail);
	logline_emit(&ll, s->severity);
}

/* Marks the session closed; the callback wrapper frees it. */
static void
sess_end(struct session *s, enum log_level severity, const char *reason,
    const char *detail)
{
	if (s->closing)
		return;
	s->closing = true;
	s->severity = severity;
	s->reason = reason;
	if (detail != s->detail)
		snprintf(s->detail, sizeof(s->detail), "%s",
		    detail ? detail : "");
}

/* Sets SO_LINGER 0 so close() sends RST: the peer sees the abort. */
static void
abortive(int fd)
{
	struct linger lg = { 1, 0 };

	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static void
sess_free(EV_P_ struct session *s)
{
	log_close(s);
	metrics_session_close(s->metrics, metrics_end_of(s->reason),
	    s->client.bytes_in, s->client.bytes_out);
	if (s->abort) {
		/* A reset or alert on one side: the other sees an abort too. */
		abortive(s->client.fd);
		abortive(s->upstream.fd);
	}
	ev_timer_stop(EV_A_ &s->timer);
	ep_close(EV_A_ &s->client);
	ep_close(EV_A_ &s->upstream);
	buf_release(&s->c2u);
	buf_release(&s->u2c);
	buf_release(&s->neg_in);
	neg_free(s->neg);
	cneg_free(s->cneg);
	front_free(s->front);
	guard_free(s->guard);
	free(s->pp_buf);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	nsessions--;
	config_unref(s->cf);
	listeners_session_ended(EV_A_ &s->count_addr);
	free(s);
}

/* Every libev callback ends here: frees a session its step closed. */
static void
reap(EV_P_ struct session *s)
{
	if (s->closing)
		sess_free(EV_A_ s);
}

void
sess_close_all(EV_P_ const char *reason)
{
	while (sessions != NULL) {
		sess_end(sessions, LOG_LVL_INFO, reason, NULL);
		sess_free(EV_A_ sessions);
	}
}

/* Sends the client what u2c holds, then closes (state FAREWELL). */
static void
say_goodbye(EV_P_ struct session *s, enum log_level severity,
    const char *reason, const char *detail)
{
	s->reason = reason;
	if (detail != s->detail)
		snprintf(s->detail, sizeof(s->detail), "%s",
		    detail ? detail : "");
	s->farewell_severity = severity;
	s->state = SESS_FAREWELL;
	set_deadline(EV_A_ s, s->svc->timeouts.handshake);
}

/*
 * The upstream failed before the relay: tell the client in its protocol
 * (a temporary error, so a mail client retries later) and close.
 */
static void
farewell(EV_P_ struct session *s, const char *reason, const char *detail)
{
	static const char *const unreachable[] = {
		"421 4.4.1 mailproxy: upstream unavailable, try again later\r\n",
		"-ERR [SYS/TEMP] mailproxy: upstream unavailable\r\n",
		"* BYE [UNAVAILABLE] mailproxy: upstream unavailable\r\n",
	};
	static const char *const insecure[] = {
		"421 4.7.0 mailproxy: no secure connection to the server, "
		    "try again later\r\n",
		"-ERR [SYS/TEMP] mailproxy: no secure connection to the "
		    "server\r\n",
		"* BYE [UNAVAILABLE] mailproxy: no secure connection to the "
		    "server\r\n",
	};
	static const char *const auth[] = {
		"421 4.7.0 mailproxy: the server refused the proxy's login, "
		    "try again later\r\n", "", "",	/* SMTP only */
	};
	/* The message follows the outcome class /metrics counts it under. */
	enum metric_end end = metrics_end_of(reason);
	const char *const *msg = end == END_CONNECT ? unreachable :
	    end == END_UPSTREAM_AUTH ? auth : insecure;
	struct logline ll;

	/* Built as fields: the detail quotes what the upstream said. */
	logline_init(&ll);
	logline_num(&ll, "sess", s->id);
	logline_str(&ll, "svc", s->svc->name);
	logline_str(&ll, "event", "upstream-failed");
	logline_str(&ll, "reason", reason);
	logline_str(&ll, "detail", detail ? detail : "");
	logline_emit(&ll, LOG_LVL_WARN);
	metrics_upstream_failure(s->metrics, reason);
	ep_close(EV_A_ &s->upstream);
	buf_release(&s->u2c);	/* nothing but our error reaches the client */
	buf_append(&s->u2c, msg[s->svc->protocol], strlen(msg[s->svc->protocol]));
	say_goodbye(EV_A_ s, LOG_LVL_WARN, reason, detail);
}

/*
 * TLS 1.0/1.1 exist only for old devices (tls_min_version): every such
 * session is logged with its client so admins can find and retire them.
 */
static void
note_legacy_tls(const struct session *s)
{
	char desc[128];

	if (SSL_version(s->client.ssl) >= TLS1_2_VERSION)
		return;
	tls_describe(s->client.ssl, desc, sizeof(desc));
	log_warnx("sess=%llu svc=%s event=legacy-tls client=%s tls=%s",
	    (unsigned long long)s->id, s->svc->name, s->peer, desc);
	/* Per address, not per connection. */
	sockaddr_host((const struct sockaddr *)&s->peer_addr.ss, desc,
	    sizeof(desc));
	metrics_legacy_client(s->metrics, desc, SSL_version(s->client.ssl));
}

/* ---- connect ----------------------------------------------------------- */

static void
set_nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void start_relay(EV_P_ struct session *s);

/* Dials the next upstream address; farewell when none is left. */
static void
start_connect(EV_P_ struct session *s)
{
	const struct service *svc = s->svc;
	char why[160] = "no address";
	int fd;

	while (s->next_addr < svc->nupstream_addrs) {
		const struct sockaddr_any *a = &svc->upstream_addrs[s->next_addr++];

		sockaddr_text((const struct sockaddr *)&a->ss, s->upstream_addr,
		    sizeof(s->upstream_addr));
		fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (fd < 0) {
			snprintf(why, sizeof(why), "socket: %s", strerror(errno));
			continue;
		}
		set_nodelay(fd);
		if (connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0 ||
		    errno == EINPROGRESS) {
			ep_init(&s->upstream, fd, NULL, io_cb, s);
			s->upstream.wr_wait = EV_WRITE;
			s->state = SESS_CONNECT;
			set_deadline(EV_A_ s, svc->timeouts.connect);
			return;
		}
		snprintf(why, sizeof(why), "%s: %s", s->upstream_addr,
		    strerror(errno));
		close(fd);
	}
	farewell(EV_A_ s, "upstream-connect-failed", why);
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

/* Hands the negotiator the secret of upstream_auth (wiped here after). */
static int
set_credentials(struct session *s, char *why, size_t whylen)
{
	char secret[SECRET_MAX + 1];
	int n, rc = -1;

	if ((n = config_auth_secret(s->svc, secret, sizeof(secret), why,
	    whylen)) >= 0 && (rc = neg_set_auth(s->neg, s->svc->upstream_auth,
	    s->svc->upstream_user, secret, (size_t)n)) < 0)
		snprintf(why, whylen, "out of memory");
	OPENSSL_cleanse(secret, sizeof(secret));
	return rc;
}

static void set_deadline_at(EV_P_ struct session *s, ev_tstamp when);
static void start_front(EV_P_ struct session *s);
static bool guard_client_bytes(struct session *s, const char *p, size_t len);

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
		farewell(EV_A_ s, "upstream-tls-setup-failed", NULL);
		return;
	}
	SSL_set_connect_state(ssl);
	ep_start_tls(&s->upstream, ssl);
	s->state = SESS_UPSTREAM_HANDSHAKE;
	ev_timer_stop(EV_A_ &s->timer);
	ev_timer_set(&s->timer, phase_seconds(EV_A_ s,
	    s->svc->timeouts.handshake), 0.);
	ev_timer_start(EV_A_ &s->timer);
}

static void
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
		if (s->next_addr < s->svc->nupstream_addrs) {
			log_debug("sess=%llu connect %s", (unsigned long long)s->id,
			    why);
			start_connect(EV_A_ s);
		} else
			farewell(EV_A_ s, "upstream-connect-failed", why);
		return;
	}
	s->upstream.wr_wait = 0;
	if (s->svc->proxy_protocol_out != 0 && send_proxy_header(s) < 0) {
		farewell(EV_A_ s, "upstream-error", "cannot send the PROXY header");
		return;
	}
	if (needs_negotiator(s->svc)) {
		/* STARTTLS upstream, and/or a greeting to swallow because the
		 * proxy already greeted a STARTTLS client itself. */
		s->neg = neg_new(s->svc->protocol, s->svc->ehlo_name,
		    s->svc->upstream_tls == TLS_MODE_STARTTLS,
		    s->svc->client_tls != TLS_MODE_STARTTLS);
		if (s->neg == NULL) {
			farewell(EV_A_ s, "out-of-memory", NULL);
			return;
		}
		if (s->svc->upstream_auth != AUTH_NONE &&
		    set_credentials(s, why, sizeof(why)) < 0) {
			farewell(EV_A_ s, "upstream-auth-no-token", why);
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

/* Names why the upstream handshake failed: verification first. */
static void
upstream_handshake_failed(EV_P_ struct session *s)
{
	long v = SSL_get_verify_result(s->upstream.ssl);
	char detail[256];

	/* INVALID_CALL: no certificate was checked (the peer never sent one,
	 * e.g. it does not speak TLS): a handshake failure, not a verify one. */
	if (v != X509_V_OK && v != X509_V_ERR_INVALID_CALL) {
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
		farewell(EV_A_ s, "upstream-verify-failed", detail);
	} else
		farewell(EV_A_ s, "upstream-handshake-failed", s->upstream.err);
}

/* ---- upstream STARTTLS negotiation ------------------------------------- */

static void
set_deadline_at(EV_P_ struct session *s, ev_tstamp when)
{
	ev_tstamp left = when - ev_now(EV_A);

	ev_timer_stop(EV_A_ &s->timer);
	ev_timer_set(&s->timer, left > 0.001 ? left : 0.001, 0.);
	ev_timer_start(EV_A_ &s->timer);
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
		if (s->svc->upstream_tls == TLS_MODE_STARTTLS)
			metrics_starttls(s->metrics, 0);
		if (s->svc->upstream_auth != AUTH_NONE)
			start_front(EV_A_ s);
		else
			start_relay(EV_A_ s);
		break;
	case NEG_FAIL:
	case NEG_CLOSE:		/* not an upstream verdict */
		farewell(EV_A_ s, neg_reason(s->neg), neg_detail(s->neg));
		break;
	}
}

/*
 * One round of the dialogue: flush our commands, read what the upstream
 * said (into neg_in, never toward the client) and feed it.
 */
static void
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
			farewell(EV_A_ s, "upstream-error", s->upstream.err);
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
		farewell(EV_A_ s, "upstream-closed", "during the STARTTLS "
		    "negotiation");
	else if (st == EP_ERROR)
		farewell(EV_A_ s, "upstream-error", s->upstream.err);
}

/* The upstream handshake (implicit TLS or after STARTTLS) is complete. */
static void
upstream_tls_up(EV_P_ struct session *s)
{
	struct neg_out out = { &s->c2u, &s->u2c };

	metrics_upstream_cert(s->metrics, s->upstream.ssl);
	if (s->neg == NULL)
		start_relay(EV_A_ s);
	else if (s->svc->upstream_tls == TLS_MODE_IMPLICIT) {
		/* Implicit TLS: the greeting to check comes inside TLS. */
		s->state = SESS_NEGOTIATE;
		set_deadline_at(EV_A_ s, s->neg_deadline);
	} else
		apply_verdict(EV_A_ s, neg_tls_ready(s->neg, &out), &out);
}

/* ---- client side of client_tls = starttls ------------------------------- */

static void
start_client_tls(EV_P_ struct session *s)
{
	SSL *ssl = SSL_new(s->svc->client_ctx);

	if (ssl == NULL) {
		sess_end(s, LOG_LVL_WARN, "out-of-memory", NULL);
		return;
	}
	SSL_set_accept_state(ssl);
	ep_start_tls(&s->client, ssl);
	s->state = SESS_CLIENT_HANDSHAKE;
	set_deadline(EV_A_ s, s->svc->timeouts.handshake);
}

/*
 * The proxy answers the client itself until STARTTLS.  Bytes are peeked,
 * and only what the dialogue consumed is taken from the socket: whatever
 * follows the STARTTLS line stays there for BoringSSL (a ClientHello sent
 * early) unless the negotiator saw it is plaintext (injection) and failed.
 */
static void
client_pretls(EV_P_ struct session *s)
{
	char peek[4096], sink[4096];
	size_t consumed = 0;
	enum neg_verdict v;
	ssize_t n;

	for (int round = 0; round < 8; round++) {
		if (!buf_empty(&s->u2c) && s->client.wr_wait == 0 &&
		    ep_write(&s->client, &s->u2c) == EP_ERROR) {
			sess_end(s, LOG_LVL_INFO, "client-error", s->client.err);
			return;
		}
		if (s->client_starttls) {
			if (buf_empty(&s->u2c))
				start_client_tls(EV_A_ s);
			return;
		}
		/* Pipelined commands wait while many replies are queued. */
		if (buf_len(&s->u2c) > BUF_CAPACITY / 2 || s->client.rd_wait != 0)
			return;
		n = recv(s->client.fd, peek, sizeof(peek), MSG_PEEK | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			s->client.rd_wait = EV_READ;
			return;
		}
		if (n <= 0) {
			sess_end(s, LOG_LVL_INFO, n == 0 ? "client-closed" :
			    "client-error", "before STARTTLS");
			return;
		}
		v = cneg_feed(s->cneg, peek, (size_t)n, &consumed, &s->u2c);
		if (recv(s->client.fd, sink, consumed, MSG_DONTWAIT) !=
		    (ssize_t)consumed) {
			sess_end(s, LOG_LVL_WARN, "client-error", "lost bytes");
			return;
		}
		s->client.bytes_in += consumed;
		switch (v) {
		case NEG_CONTINUE:
			break;
		case NEG_START_TLS:
			s->client_starttls = true;
			break;
		case NEG_CLOSE:
			say_goodbye(EV_A_ s, LOG_LVL_INFO, "client-quit", NULL);
			return;
		case NEG_FAIL:
		case NEG_RELAY:		/* not a client-side verdict */
			say_goodbye(EV_A_ s, LOG_LVL_INFO, cneg_reason(s->cneg),
			    NULL);
			return;
		}
	}
}

/* ---- upstream_auth: the device's side until MAIL ----------------------- */

static void
start_front(EV_P_ struct session *s)
{
	log_info("sess=%llu svc=%s event=upstream-auth-ok user=%s mech=%s",
	    (unsigned long long)s->id, s->svc->name, s->svc->upstream_user,
	    upstream_auth_names[s->svc->upstream_auth]);
	s->front = front_new(s->svc->ehlo_name, neg_caps(s->neg),
	    s->svc->client_tls != TLS_MODE_NONE);
	if (s->front == NULL) {
		sess_end(s, LOG_LVL_WARN, "out-of-memory", NULL);
		return;
	}
	s->state = SESS_FRONT;
	set_deadline(EV_A_ s, s->svc->timeouts.negotiation);
}

/*
 * The proxy answers the device (EHLO without AUTH, its AUTH accepted)
 * until MAIL; the MAIL line and what follows it stay in c2u for the relay.
 * The upstream is not read meanwhile: what it says waits in its socket.
 */
static void
front_dialogue(EV_P_ struct session *s)
{
	enum ep_status st = EP_OK;
	enum neg_verdict v;
	size_t len, consumed;
	const char *p;

	for (int round = 0; round < 8; round++) {
		if (!buf_empty(&s->u2c) && s->client.wr_wait == 0 &&
		    ep_write(&s->client, &s->u2c) == EP_ERROR) {
			sess_end(s, LOG_LVL_INFO, "client-error", s->client.err);
			return;
		}
		if (buf_len(&s->u2c) > BUF_CAPACITY / 2)
			return;
		/* Lines already read are answered even while the socket
		 * has nothing new. */
		st = s->client.rd_wait == 0 ? ep_read(&s->client, &s->c2u) :
		    EP_AGAIN;
		consumed = 0;
		if ((p = buf_peek(&s->c2u, &len)) != NULL) {
			v = front_feed(s->front, p, len, &consumed, &s->u2c);
			buf_consume(&s->c2u, consumed);
			switch (v) {
			case NEG_CONTINUE:
				break;
			case NEG_RELAY:
				start_relay(EV_A_ s);
				return;
			case NEG_CLOSE:
				say_goodbye(EV_A_ s, LOG_LVL_INFO, "client-quit",
				    NULL);
				return;
			case NEG_FAIL:
			case NEG_START_TLS:	/* not a front verdict */
				say_goodbye(EV_A_ s, LOG_LVL_INFO,
				    front_reason(s->front), NULL);
				return;
			}
		}
		if (st == EP_EOF || st == EP_ERROR) {
			sess_end(s, LOG_LVL_INFO, st == EP_EOF ? "client-closed" :
			    "client-error", "before MAIL");
			return;
		}
		if (st == EP_AGAIN && consumed == 0)
			return;
	}
	/* Still busy (a long pipeline already read): come back on the next
	 * loop iteration, as no socket event will say so. */
	ev_feed_event(EV_A_ &s->client.io, EV_READ | EV_WRITE);
}

/* ---- relay ------------------------------------------------------------- */

/*
 * Never TLS in TLS: new bytes from a client in TLS pass the guard.  It is
 * allocated when bytes come and freed between commands, so an idle session
 * holds none.  Returns false when the session must stop relaying.
 */
static bool
guard_client_bytes(struct session *s, const char *p, size_t len)
{
	if (s->svc->client_tls == TLS_MODE_NONE)
		return true;
	if (s->guard == NULL && (s->guard = guard_new(s->svc->protocol)) == NULL) {
		sess_end(s, LOG_LVL_WARN, "out-of-memory", NULL);
		return false;
	}
	if (guard_scan(s->guard, p, len)) {
		s->starttls_in_tls = true;	/* refused by relay() */
		return false;
	}
	if (guard_idle(s->guard)) {
		guard_free(s->guard);
		s->guard = NULL;
	}
	return true;
}

static void
start_relay(EV_P_ struct session *s)
{
	/* Client bytes already read (pipelined after MAIL) pass the guard. */
	if (!buf_empty(&s->c2u)) {
		size_t len;
		const char *p = buf_peek(&s->c2u, &len);
		guard_client_bytes(s, p, len);
	}
	s->state = SESS_RELAY;
	s->last_activity = ev_now(EV_A);
	set_deadline(EV_A_ s, s->svc->timeouts.idle);
	if (s->svc->upstream_tls == TLS_MODE_NONE || s->svc->upstream_verify)
		return;
	log_warnx("sess=%llu svc=%s upstream certificate not verified "
	    "(upstream_verify = no)", (unsigned long long)s->id, s->svc->name);
}

static const char *
side_name(const struct session *s, const struct endpoint *ep)
{
	return ep == &s->client ? "client" : "upstream";
}

/* One side failed (reset, alert, ...): both close now. */
static void
side_error(struct session *s, struct endpoint *ep)
{
	bool client = ep == &s->client;

	s->abort = true;
	sess_end(s, client ? LOG_LVL_INFO : LOG_LVL_WARN,
	    client ? "client-error" : "upstream-error", ep->err);
}

/*
 * Moves bytes src -> b -> dst as far as they go without blocking, then
 * forwards src's EOF once b is flushed.  Returns true if anything moved.
 */
static bool
move(struct session *s, struct endpoint *src, struct buf *b,
    struct endpoint *dst)
{
	uint64_t before;
	bool progress = false;
	enum ep_status st;

	if (!src->eof && src->rd_wait == 0 && buf_room(b) > 0) {
		size_t had = buf_len(b), len;
		const char *p;

		before = src->bytes_in;
		st = ep_read(src, b);
		/* What the client just sent, before any of it goes on. */
		if (src == &s->client && (p = buf_peek(b, &len)) != NULL &&
		    len > had && !guard_client_bytes(s, p + had, len - had))
			return false;
		if (st == EP_ERROR) {
			side_error(s, src);
			return false;
		}
		if (st == EP_EOF) {
			if (s->first_eof == NULL)
				s->first_eof = side_name(s, src);
			progress = true;
		}
		progress |= src->bytes_in != before;
	}
	if (!buf_empty(b) && dst->wr_wait == 0) {
		before = dst->bytes_out;
		if (ep_write(dst, b) == EP_ERROR) {
			side_error(s, dst);
			return false;
		}
		progress |= dst->bytes_out != before;
	}
	if (src->eof && buf_empty(b) && !dst->shut && dst->wr_wait == 0) {
		st = ep_shutdown(dst, src->eof_clean);
		if (st == EP_ERROR) {
			side_error(s, dst);
			return false;
		}
		progress |= st == EP_OK;
	}
	return progress;
}

/*
 * The guard saw STARTTLS from a client already in TLS: nothing from that
 * command on reaches the server; the client gets the protocol's refusal
 * (if its stream is at a line start) and the session ends.
 */
static void
refuse_starttls_in_tls(EV_P_ struct session *s)
{
	log_info("sess=%llu svc=%s event=starttls-in-tls client=%s",
	    (unsigned long long)s->id, s->svc->name, s->peer);
	ep_close(EV_A_ &s->upstream);
	buf_release(&s->c2u);
	buf_release(&s->u2c);
	if (s->client.last_out == '\n')
		guard_refusal(s->guard, &s->u2c);
	say_goodbye(EV_A_ s, LOG_LVL_INFO, "client-starttls-in-tls", NULL);
}

static void
relay(EV_P_ struct session *s)
{
	bool moved = false, progress = true;
	int round;

	for (round = 0; progress && !s->closing && !s->starttls_in_tls &&
	    round < PUMP_ROUNDS; round++) {
		progress = move(s, &s->client, &s->c2u, &s->upstream);
		if (!s->closing && !s->starttls_in_tls)
			progress |= move(s, &s->upstream, &s->u2c, &s->client);
		moved |= progress;
	}
	if (s->starttls_in_tls && !s->closing) {
		refuse_starttls_in_tls(EV_A_ s);
		return;
	}
	if (moved)
		s->last_activity = ev_now(EV_A);
	if (s->closing)
		return;
	if (s->client.eof && s->upstream.eof && s->client.shut &&
	    s->upstream.shut) {
		bool clean = s->client.eof_clean && s->upstream.eof_clean;
		sess_end(s, LOG_LVL_INFO, strcmp(s->first_eof, "client") == 0 ?
		    "client-closed" : "upstream-closed", clean ? NULL :
		    "a TLS side ended without close_notify");
		return;
	}
	if (progress && round == PUMP_ROUNDS) {
		/* Still busy: come back on the next loop iteration. */
		ev_feed_event(EV_A_ &s->client.io, EV_READ | EV_WRITE);
	}
}

static void
arm_relay(EV_P_ struct session *s)
{
	ep_update(EV_A_ &s->client, !s->client.eof && buf_room(&s->c2u) > 0,
	    !buf_empty(&s->u2c) || (s->upstream.eof && !s->client.shut));
	ep_update(EV_A_ &s->upstream, !s->upstream.eof &&
	    buf_room(&s->u2c) > 0,
	    !buf_empty(&s->c2u) || (s->client.eof && !s->upstream.shut));
}

/* ---- the state machine -------------------------------------------------- */

/* Runs the current state once; it may move the session to another state. */
static void
run_state(EV_P_ struct session *s)
{
	enum ep_status st;

	switch (s->state) {
	case SESS_PROXY_HEADER:
		if (s->client.rd_wait == 0)
			read_proxy_header(EV_A_ s);
		break;
	case SESS_CLIENT_PRETLS:
		client_pretls(EV_A_ s);
		break;
	case SESS_CLIENT_HANDSHAKE:
		st = ep_handshake(&s->client);
		if (st == EP_OK) {
			note_legacy_tls(s);
			metrics_tls(s->metrics, SSL_version(s->client.ssl),
			    SSL_CIPHER_standard_name(SSL_get_current_cipher(
			    s->client.ssl)));
			if (s->client_starttls)
				metrics_starttls(s->metrics, 1);
			start_connect(EV_A_ s);
		}
		else if (st == EP_ERROR)
			sess_end(s, LOG_LVL_INFO, "client-handshake-failed",
			    s->client.err);
		break;
	case SESS_CONNECT:
		if (s->upstream.wr_wait == 0)
			connect_done(EV_A_ s);
		break;
	case SESS_NEGOTIATE:
		negotiate(EV_A_ s);
		break;
	case SESS_UPSTREAM_HANDSHAKE:
		st = ep_handshake(&s->upstream);
		if (st == EP_OK)
			upstream_tls_up(EV_A_ s);
		else if (st == EP_ERROR)
			upstream_handshake_failed(EV_A_ s);
		break;
	case SESS_FRONT:
		front_dialogue(EV_A_ s);
		break;
	case SESS_RELAY:
		relay(EV_A_ s);
		break;
	case SESS_FAREWELL:
		if (s->client.wr_wait != 0)
			break;
		st = ep_write(&s->client, &s->u2c);
		if (st == EP_ERROR || (st == EP_OK &&
		    ep_shutdown(&s->client, true) != EP_AGAIN))
			sess_end(s, s->farewell_severity, s->reason, s->detail);
		break;
	}
}

/* Runs states until one has to wait, then arms what it waits for. */
static void
step(EV_P_ struct session *s)
{
	enum sess_state before;

	do {
		before = s->state;
		run_state(EV_A_ s);
	} while (!s->closing && s->state != before);
	if (s->closing)
		return;
	/* Arm exactly what the current state waits for. */
	switch (s->state) {
	case SESS_PROXY_HEADER:
		ep_update(EV_A_ &s->client, true, false);
		break;
	case SESS_CLIENT_PRETLS:
		ep_update(EV_A_ &s->client, !s->client_starttls &&
		    buf_len(&s->u2c) <= BUF_CAPACITY / 2, !buf_empty(&s->u2c));
		break;
	case SESS_CLIENT_HANDSHAKE:
		ep_update(EV_A_ &s->client, true, false);
		break;
	case SESS_CONNECT:
		ep_update(EV_A_ &s->client, false, false);
		ep_update(EV_A_ &s->upstream, false, true);
		break;
	case SESS_NEGOTIATE:
		ep_update(EV_A_ &s->client, false, false);
		ep_update(EV_A_ &s->upstream, true, !buf_empty(&s->c2u));
		break;
	case SESS_UPSTREAM_HANDSHAKE:
		ep_update(EV_A_ &s->client, false, false);
		ep_update(EV_A_ &s->upstream, true, false);
		break;
	case SESS_FRONT:
		ep_update(EV_A_ &s->client, buf_len(&s->u2c) <= BUF_CAPACITY / 2 &&
		    buf_room(&s->c2u) > 0, !buf_empty(&s->u2c));
		ep_update(EV_A_ &s->upstream, false, false);
		break;
	case SESS_RELAY:
		arm_relay(EV_A_ s);
		break;
	case SESS_FAREWELL:
		ep_update(EV_A_ &s->client, false, true);
		break;
	}
}

/* Both sides' watchers: note what fired, run the machine, free if closed. */
static void
io_cb(EV_P_ ev_io *w, int revents)
{
	struct session *s = w->data;

	ep_events(w == &s->client.io ? &s->client : &s->upstream, revents);
	step(EV_A_ s);
	reap(EV_A_ s);
}

static void
timer_cb(EV_P_ ev_timer *w, int revents)
{
	struct session *s = w->data;
	ev_tstamp left;

	(void)revents;
	switch (s->state) {
	case SESS_RELAY:
		left = s->last_activity + s->svc->timeouts.idle - ev_now(EV_A);
		if (left > 0.) {
			ev_timer_set(&s->timer, left, 0.);
			ev_timer_start(EV_A_ &s->timer);
			return;
		}
		sess_end(s, LOG_LVL_INFO, "idle-timeout", NULL);
		break;
	case SESS_CLIENT_HANDSHAKE:
		sess_end(s, LOG_LVL_INFO, "client-handshake-timeout", NULL);
		break;
	case SESS_CONNECT:
		farewell(EV_A_ s, "upstream-connect-timeout", s->upstream_addr);
		break;
	case SESS_NEGOTIATE:
		farewell(EV_A_ s, "negotiation-timeout", neg_state_name(s->neg));
		break;
	case SESS_UPSTREAM_HANDSHAKE:
		farewell(EV_A_ s, s->neg != NULL &&
		    ev_now(EV_A) >= s->neg_deadline ? "negotiation-timeout" :
		    "upstream-handshake-timeout", NULL);
		break;
	case SESS_FAREWELL:
		sess_end(s, s->farewell_severity, s->reason, s->detail);
		break;
	case SESS_PROXY_HEADER:
		sess_end(s, LOG_LVL_INFO, "proxy-header-timeout", NULL);
		break;
	case SESS_FRONT:
		buf_release(&s->u2c);
		front_timeout(&s->u2c);
		say_goodbye(EV_A_ s, LOG_LVL_INFO, "client-negotiation-timeout",
		    NULL);
		break;
	case SESS_CLIENT_PRETLS:
		buf_release(&s->u2c);
		cneg_timeout(s->cneg, &s->u2c);
		say_goodbye(EV_A_ s, LOG_LVL_INFO, "client-negotiation-timeout",
		    NULL);
		break;
	}
	if (!s->closing)
		step(EV_A_ s);
	reap(EV_A_ s);
}

/* The client is known (socket or PROXY header): start its first phase. */
static void
sess_begin(EV_P_ struct session *s)
{
	const struct service *svc = s->svc;

	if (svc->client_tls == TLS_MODE_STARTTLS) {
		if ((s->cneg = cneg_new(svc->protocol, svc->ehlo_name)) == NULL) {
			sess_end(s, LOG_LVL_WARN, "out-of-memory", NULL);
			return;
		}
		cneg_greet(s->cneg, &s->u2c);
		s->state = SESS_CLIENT_PRETLS;
		set_deadline(EV_A_ s, svc->timeouts.negotiation);
	} else if (svc->client_tls == TLS_MODE_IMPLICIT) {
		SSL_set_accept_state(s->client.ssl);
		s->state = SESS_CLIENT_HANDSHAKE;
		s->client.rd_wait = 0;	/* bytes may be waiting already */
		set_deadline(EV_A_ s, svc->timeouts.handshake);
	} else
		start_connect(EV_A_ s);
}

/*
 * Reads the PROXY header, exactly: bytes are peeked, and only the header is
 * taken from the socket (a header prefix is kept in pp_buf meanwhile), so
 * the TLS ClientHello or the first command after it stays for its reader.
 */
static void
read_proxy_header(EV_P_ struct session *s)
{
	uint8_t buf[PP_MAX_HEADER], sink[PP_MAX_HEADER];
	struct pp_result pr;
	size_t have = s->pp_len;
	ssize_t n;
	int total;

	if (have > 0)
		memcpy(buf, s->pp_buf, have);
	n = recv(s->client.fd, buf + have, sizeof(buf) - have,
	    MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		s->client.rd_wait = EV_READ;
		return;
	}
	if (n <= 0) {
		sess_end(s, LOG_LVL_INFO, "client-closed", "before the PROXY "
		    "header");
		return;
	}
	total = pp_parse(buf, have + (size_t)n, &pr);
	if (total < 0 || (total == 0 && have + (size_t)n == sizeof(buf))) {
		sess_end(s, LOG_LVL_INFO, "proxy-header-invalid", NULL);
		return;
	}
	/* Take the header's bytes (all of them, if it is not complete yet:
	 * they can only be part of it). */
	size_t take = total > 0 ? (size_t)total - have : (size_t)n;
	if (recv(s->client.fd, sink, take, MSG_DONTWAIT) != (ssize_t)take) {
		sess_end(s, LOG_LVL_WARN, "client-error", "lost bytes");
		return;
	}
	if (total == 0) {
		/* Split across segments: keep the prefix (allocated only now,
		 * so that sessions do not carry this buffer). */
		if (s->pp_buf == NULL &&
		    (s->pp_buf = malloc(PP_MAX_HEADER)) == NULL) {
			sess_end(s, LOG_LVL_WARN, "out-of-memory", NULL);
			return;
		}
		memcpy(s->pp_buf + have, buf + have, (size_t)n);
		s->pp_len = have + (size_t)n;
		s->client.rd_wait = EV_READ;
		return;
	}
	free(s->pp_buf);
	s->pp_buf = NULL;
	if (!pr.local) {
		s->peer_addr = pr.src;
		s->local_addr = pr.dst;
		sockaddr_text((const struct sockaddr *)&pr.src.ss, s->peer,
		    sizeof(s->peer));
	}
	log_debug("sess=%llu event=proxy-header version=%d client=%s",
	    (unsigned long long)s->id, pr.version, s->peer);
	/* allow applies to the client the balancer speaks for. */
	if (s->svc->nallow > 0 && !cidr_list_contains(s->svc->allow,
	    s->svc->nallow, (const struct sockaddr *)&s->peer_addr.ss)) {
		sess_end(s, LOG_LVL_INFO, "not-allowed", NULL);
		return;
	}
	sess_begin(EV_A_ s);
}

bool
sess_new(EV_P_ struct config *cf, const struct service *svc, int fd,
    const struct sockaddr_any *peer)
{
	struct session *s;
	SSL *ssl = NULL;

	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (svc->client_tls == TLS_MODE_IMPLICIT &&
	    (ssl = SSL_new(svc->client_ctx)) == NULL)) {
		log_warnx("svc=%s out of memory: connection dropped", svc->name);
		free(s);
		close(fd);
		return false;
	}
	s->id = next_id++;
	s->cf = config_ref(cf);
	s->svc = svc;
	s->started = ev_now(EV_A);
	s->peer_addr = *peer;
	s->count_addr = *peer;
	s->metrics = metrics_service(svc->name);
	metrics_session_open(s->metrics);
	sockaddr_text((const struct sockaddr *)&peer->ss, s->peer,
	    sizeof(s->peer));
	buf_init(&s->c2u, BUF_CAPACITY);
	buf_init(&s->u2c, BUF_CAPACITY);
	buf_init(&s->neg_in, NEG_MAX_INPUT);
	set_nodelay(fd);
	ep_init(&s->client, fd, ssl, io_cb, s);
	s->upstream.fd = -1;
	ev_init(&s->timer, timer_cb);
	s->timer.data = s;
	if ((s->next = sessions) != NULL)
		sessions->prev = s;
	sessions = s;
	nsessions++;
	log_debug("sess=%llu svc=%s event=accept client=%s",
	    (unsigned long long)s->id, svc->name, s->peer);

	if (svc->proxy_protocol_in) {
		/* A PROXY header first, and only from a trusted balancer. */
		if (!cidr_list_contains(svc->proxy_trusted, svc->nproxy_trusted,
		    (const struct sockaddr *)&peer->ss))
			sess_end(s, LOG_LVL_INFO, "proxy-untrusted", "a PROXY "
			    "header is only accepted from proxy_trusted");
		s->state = SESS_PROXY_HEADER;
		s->client.rd_wait = EV_READ;
		set_deadline(EV_A_ s, svc->timeouts.handshake);
	} else
		sess_begin(EV_A_ s);
	step(EV_A_ s);
	reap(EV_A_ s);
	return true;
}
