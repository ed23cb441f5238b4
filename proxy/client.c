/*
 * client: the client's side of a session before the relay: the PROXY
 * header (exactly, by peeking), the STARTTLS dialogue the proxy answers
 * itself (client_tls = starttls), the client's login to the proxy
 * (upstream_auth = accounts) with its password checked off the loop, and,
 * with upstream_auth, the device's commands up to MAIL.
 */
#include "sess_impl.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "accounts.h"
#include "blocks.h"
#include "clients.h"
#include "listener.h"
#include "pwcheck.h"
#include "proxyproto.h"
#include "tls.h"

/* The client is known (socket or PROXY header): start its first phase. */
void
sess_begin(EV_P_ struct session *s)
{
	const struct service *svc = s->svc;

	if (svc->client_tls == TLS_MODE_STARTTLS) {
		if ((s->cneg = cneg_new(svc->protocol, svc->ehlo_name)) == NULL) {
			close_now(s, LOG_LVL_WARN, R_OUT_OF_MEMORY, NULL);
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
void
read_proxy_header(EV_P_ struct session *s)
{
	uint8_t buf[PP_MAX_HEADER], sink[PP_MAX_HEADER];
	struct pp_result pr;
	enum close_reason why;
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
		close_now(s, LOG_LVL_INFO, R_CLIENT_CLOSED, "before the PROXY "
		    "header");
		return;
	}
	total = pp_parse(buf, have + (size_t)n, &pr);
	if (total < 0 || (total == 0 && have + (size_t)n == sizeof(buf))) {
		close_now(s, LOG_LVL_INFO, R_PROXY_HEADER_INVALID, NULL);
		return;
	}
	/* Take the header's bytes (all of them, if it is not complete yet:
	 * they can only be part of it). */
	size_t take = total > 0 ? (size_t)total - have : (size_t)n;
	if (recv(s->client.fd, sink, take, MSG_DONTWAIT) != (ssize_t)take) {
		close_now(s, LOG_LVL_WARN, R_CLIENT_ERROR, "lost bytes");
		return;
	}
	if (total == 0) {
		/* Split across segments: keep the prefix (allocated only now,
		 * so that sessions do not carry this buffer). */
		if (s->pp_buf == NULL &&
		    (s->pp_buf = malloc(PP_MAX_HEADER)) == NULL) {
			close_now(s, LOG_LVL_WARN, R_OUT_OF_MEMORY, NULL);
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
	/* allow and the per-client cap apply to the client the balancer
	 * speaks for (a LOCAL header: to the balancer itself). */
	if ((why = listeners_admit(s->svc, s->client.fd, &s->peer_addr)) !=
	    R_NONE) {
		close_now(s, why == R_OUT_OF_MEMORY ? LOG_LVL_WARN : LOG_LVL_INFO,
		    why, NULL);
		return;
	}
	s->count_addr = s->peer_addr;
	sess_begin(EV_A_ s);
}

/*
 * TLS 1.0/1.1 and the legacy suites exist only for old devices
 * (tls_min_version, tls_ciphers): every such session is logged with its
 * client so admins can find and retire them.
 */
void
note_legacy_tls(const struct session *s)
{
	char desc[128], fp[72];

	if (SSL_version(s->client.ssl) >= TLS1_2_VERSION &&
	    !tls_cipher_is_legacy(SSL_get_current_cipher(s->client.ssl)))
		return;
	tls_describe(s->client.ssl, desc, sizeof(desc));
	log_warnx("sess=%llu svc=%s event=legacy-tls client=%s tls=%s",
	    (unsigned long long)s->id, s->svc->name, s->peer, desc);
	/* Per address (and certificate), not per connection. */
	sockaddr_host((const struct sockaddr *)&s->peer_addr.ss, desc,
	    sizeof(desc));
	if (s->has_client_cert)
		client_cert_text(s, fp, sizeof(fp));
	metrics_legacy_client(s->metrics, desc, SSL_version(s->client.ssl),
	    s->has_client_cert ? fp : NULL);
}

bool
take_route(struct session *s)
{
	const struct service *to = s->route.chosen;
	struct svc_metrics *m;

	if (s->route.la == NULL || s->route.la->nroutes == 0)
		return true;
	if (to != NULL && to != s->svc) {
		log_info("sess=%llu svc=%s event=sni-route sni=%s to=%s",
		    (unsigned long long)s->id, s->svc->name,
		    SSL_get_servername(s->client.ssl, TLSEXT_NAMETYPE_host_name),
		    to->name);
		if ((m = metrics_service(to->name)) != NULL)
			s->metrics = m;
		s->svc = to;
		s->c2u.secret = s->held.secret = to->upstream_auth != AUTH_NONE;
	}
	metrics_session_open(s->metrics);
	s->counted = true;
	/* The address's allow list and per-client cap applied at accept;
	 * now the chosen service's own. */
	if (to != NULL && to->nallow > 0 && !cidr_list_contains(to->allow,
	    to->nallow, (const struct sockaddr *)&s->peer_addr.ss)) {
		close_now(s, LOG_LVL_INFO, R_NOT_ALLOWED, "not in the allow list "
		    "of the service its name picked");
		return false;
	}
	if (to != NULL && to->max_connections_per_client > 0 &&
	    s->count_addr.len > 0 && clients_count(&s->count_addr) >
	    (unsigned)to->max_connections_per_client) {
		close_now(s, LOG_LVL_INFO, R_PER_CLIENT_LIMIT, "the service its "
		    "name picked");
		return false;
	}
	return true;
}

void
client_handshake_failed(struct session *s)
{
	long v = s->client.ssl != NULL ? SSL_get_verify_result(s->client.ssl) :
	    X509_V_OK;
	char detail[200];

	/* A device certificate that does not verify: say why (expired,
	 * revoked, unknown CA), counted with the handshake failures. */
	if (s->route.unknown) {
		const char *name = SSL_get_servername(s->client.ssl,
		    TLSEXT_NAMETYPE_host_name);
		snprintf(detail, sizeof(detail), "no service for the server name "
		    "%s (unrecognized_name)", name != NULL ? name : "(none sent)");
		close_now(s, LOG_LVL_INFO, R_CLIENT_HANDSHAKE_FAILED, detail);
	} else if (s->svc->client_verify != CLIENT_VERIFY_NO && v != X509_V_OK &&
	    v != X509_V_ERR_INVALID_CALL) {
		snprintf(detail, sizeof(detail), "certificate: %s",
		    X509_verify_cert_error_string(v));
		close_now(s, LOG_LVL_INFO, R_CLIENT_CERT_FAILED, detail);
	} else
		close_now(s, LOG_LVL_INFO, R_CLIENT_HANDSHAKE_FAILED,
		    s->client.err);
}

void
client_cert_text(const struct session *s, char *out, size_t cap)
{
	size_t o = (size_t)snprintf(out, cap, "sha256:");

	for (int i = 0; i < 32 && o + 2 < cap; i++, o += 2)
		snprintf(out + o, cap - o, "%02x", s->client_cert[i]);
}

/* A subject for a log line: printable, no quotes or backslashes. */
static void
clean_subject(const X509 *x, char *out, size_t cap)
{
	X509_NAME_oneline(X509_get_subject_name(x), out, (int)cap);
	for (char *c = out; *c != '\0'; c++)
		if (*c < 0x20 || *c >= 0x7f || *c == '"' || *c == '\\')
			*c = '?';
}

bool
device_certificate(struct session *s)
{
	const struct service *svc = s->svc;
	X509 *x;
	char subject[256];
	unsigned n = 0;
	bool listed = false;

	if (svc->client_verify == CLIENT_VERIFY_NO)
		return true;
	if ((x = SSL_get_peer_certificate(s->client.ssl)) != NULL) {
		X509_digest(x, EVP_sha256(), s->client_cert, &n);
		s->has_client_cert = n == sizeof(s->client_cert);
		clean_subject(x, subject, sizeof(subject));
		X509_free(x);
	}
	if (s->has_client_cert) {
		char fp[72];
		client_cert_text(s, fp, sizeof(fp));
		log_info("sess=%llu svc=%s event=client-cert client=%s "
		    "subject=\"%s\" fingerprint=%s", (unsigned long long)s->id,
		    svc->name, s->peer, subject, fp);
	}
	if (svc->nallow_certs == 0)
		return true;
	for (size_t i = 0; s->has_client_cert && i < svc->nallow_certs; i++)
		listed |= CRYPTO_memcmp(svc->allow_certs[i], s->client_cert,
		    32) == 0;
	if (listed)
		return true;
	close_now(s, LOG_LVL_INFO, R_NOT_ALLOWED, s->has_client_cert ?
	    "certificate not in allow_cert" : "no certificate (allow_cert)");
	return false;
}

static void
start_client_tls(EV_P_ struct session *s)
{
	SSL *ssl = SSL_new(s->svc->client_ctx);

	if (ssl == NULL) {
		close_now(s, LOG_LVL_WARN, R_OUT_OF_MEMORY, NULL);
		return;
	}
	SSL_set_accept_state(ssl);
	tls_set_route(ssl, &s->route);
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
void
client_pretls(EV_P_ struct session *s)
{
	char peek[4096], sink[4096];
	size_t consumed = 0;
	enum cneg_verdict v;
	ssize_t n;

	for (int round = 0; round < 8; round++) {
		if (!buf_empty(&s->u2c) && s->client.wr_wait == 0 &&
		    ep_write(&s->client, &s->u2c) == EP_ERROR) {
			close_now(s, LOG_LVL_INFO, R_CLIENT_ERROR, s->client.err);
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
			close_now(s, LOG_LVL_INFO, n == 0 ? R_CLIENT_CLOSED :
			    R_CLIENT_ERROR, "before STARTTLS");
			return;
		}
		v = cneg_feed(s->cneg, peek, (size_t)n, &consumed, &s->u2c);
		if (recv(s->client.fd, sink, consumed, MSG_DONTWAIT) !=
		    (ssize_t)consumed) {
			close_now(s, LOG_LVL_WARN, R_CLIENT_ERROR, "lost bytes");
			return;
		}
		s->client.bytes_in += consumed;
		switch (v) {
		case CNEG_CONTINUE:
			break;
		case CNEG_START_TLS:
			s->client_starttls = true;
			break;
		case CNEG_CLOSE:
			close_after_reply(EV_A_ s, LOG_LVL_INFO, R_CLIENT_QUIT, NULL);
			return;
		case CNEG_FAIL:
			close_after_reply(EV_A_ s, LOG_LVL_INFO, cneg_reason(s->cneg),
			    NULL);
			return;
		}
	}
}

void
start_front(EV_P_ struct session *s)
{
	log_info("sess=%llu svc=%s event=upstream-auth-ok user=%s mech=%s",
	    (unsigned long long)s->id, s->svc->name, s->svc->upstream_user,
	    upstream_auth_names[s->svc->upstream_auth]);
	s->front = front_new(s->svc->ehlo_name, neg_caps(s->neg),
	    s->svc->client_tls != TLS_MODE_NONE);
	if (s->front == NULL) {
		close_now(s, LOG_LVL_WARN, R_OUT_OF_MEMORY, NULL);
		return;
	}
	s->state = SESS_FRONT;
	set_deadline(EV_A_ s, s->svc->timeouts.negotiation);
}

/* What a session's log lines may say of a login name: printable, no
 * blanks or quotes (fail2ban matches "user=NAME"), at most 64 bytes. */
static void
clean_name(const char *name, char *out, size_t cap)
{
	size_t i;

	for (i = 0; name[i] != '\0' && i + 1 < cap && i < 64; i++)
		out[i] = name[i] > 0x20 && name[i] < 0x7f && name[i] != '"' &&
		    name[i] != '=' ? name[i] : '?';
	out[i] = '\0';
}

struct login *
sess_login(const struct session *s)
{
	return s->login != NULL ? s->login : s->front != NULL ?
	    front_login(s->front) : NULL;
}

static bool certificate_login(EV_P_ struct session *s);

/* accounts: the proxy greets (implicit TLS; after STARTTLS it did) and
 * answers the client's login itself. */
static void
start_login(EV_P_ struct session *s)
{
	const struct service *svc = s->svc;

	if (svc->protocol == PROTO_SMTP) {
		s->front = front_new_accounts(svc->ehlo_name, true);
		s->state = SESS_FRONT;
	} else {
		s->login = login_new(svc->protocol, svc->ehlo_name);
		s->state = SESS_LOGIN;
	}
	if (sess_login(s) == NULL) {
		close_now(s, LOG_LVL_WARN, R_OUT_OF_MEMORY, NULL);
		return;
	}
	if (!s->client_starttls)
		proto_say(&s->u2c, proto_text(svc->protocol)->login_greeting,
		    svc->ehlo_name);
	set_deadline(EV_A_ s, svc->timeouts.negotiation);
	if (svc->protocol == PROTO_SMTP)
		(void)certificate_login(EV_A_ s);
}

void
client_ready(EV_P_ struct session *s)
{
	if (s->svc->upstream_auth == AUTH_ACCOUNTS)
		start_login(EV_A_ s);
	else
		start_connect(EV_A_ s);
}

/* The client's host, as the auth lines and fail2ban name it. */
static void
client_host(const struct session *s, char *host, size_t len)
{
	sockaddr_host((const struct sockaddr *)&s->peer_addr.ss, host, len);
}

/*
 * The client is blocked (before its check, or while it ran): the refusal,
 * the blocked line, and the end of the session.  No login goes upstream.
 */
static void
refuse_blocked(EV_P_ struct session *s, const char *when)
{
	struct login *l = sess_login(s);
	char host[64];

	client_host(s, host, sizeof(host));
	if (login_refused(l, &s->u2c) != LOGIN_FAIL)
		login_blocked(l, &s->u2c);
	log_info("sess=%llu svc=%s event=auth-blocked client=%s seconds=%d "
	    "detail=\"%s\"", (unsigned long long)s->id, s->svc->name, host,
	    s->svc->auth_block_time, when);
	close_after_reply(EV_A_ s, LOG_LVL_INFO, R_AUTH_BLOCKED, NULL);
}

/* The attempt is over: blocks_end() with the service's limits. */
static enum blocks_verdict
end_attempt(struct session *s, bool failed)
{
	return blocks_end(&s->attempt, &s->peer_addr, failed,
	    s->svc->auth_failures_max, s->svc->auth_block_time);
}

/*
 * The block table is full at the client's own level (an attack from many
 * networks): the attempt is counted for a wider network, or not at all.
 * Said in the log at most every 10 s per worker; /metrics counts each.
 */
static void
note_widened(const struct session *s)
{
	static ev_tstamp last;
	ev_tstamp now = ev_time();
	int prefix = blocks_prefix(&s->attempt);
	char host[64];

	if (now - last < 10)
		return;
	last = now;
	client_host(s, host, sizeof(host));
	if (prefix < 0)
		log_warnx("sess=%llu svc=%s event=auth-table-full client=%s "
		    "counted=no detail=\"every level of the block table is "
		    "full: uncounted checks are capped at %d/s\"",
		    (unsigned long long)s->id, s->svc->name, host,
		    BLOCKS_UNCOUNTED_PER_SECOND);
	else
		log_warnx("sess=%llu svc=%s event=auth-table-full client=%s "
		    "counted=/%d detail=\"the block table is full at the "
		    "client's level: failures count for its network\"",
		    (unsigned long long)s->id, s->svc->name, host, prefix);
}

/* The check is over: the login's outcome, answered (no sess_run: the
 * caller runs the machine, or is running it). */
static void
check_done(EV_P_ struct session *s, bool ok)
{
	struct login *l = sess_login(s);
	struct logline ll;
	enum login_verdict v;
	enum login_gate gate;
	char name[72], host[64];

	gate = accounts_gate(ok, s->checking, &s->attempt, &s->peer_addr,
	    s->svc->auth_failures_max, s->svc->auth_block_time);
	clean_name(s->cert_login ? s->checking->name : login_user(l), name,
	    sizeof(name));
	metrics_login(s->metrics, gate == GATE_ACCEPT);
	if (gate == GATE_ACCEPT) {
		s->account = s->checking;
		log_info("sess=%llu svc=%s event=login client=%s user=%s%s",
		    (unsigned long long)s->id, s->svc->name, s->peer, name,
		    s->cert_login ? " method=certificate" : "");
		/* What the client sent after its login is for the upstream,
		 * once logged in there: c2u carries the dialogue until then. */
		if (!buf_empty(&s->c2u)) {
			size_t len;
			const char *p = buf_peek(&s->c2u, &len);
			(void)buf_append(&s->held, p, len);	/* same capacity */
			buf_release(&s->c2u);
		}
		start_connect(EV_A_ s);
		return;
	}
	if (gate == GATE_BLOCKED && ok) {
		/* Blocked while it was checked (by another session's
		 * failures): the right password does not open it. */
		refuse_blocked(EV_A_ s, "blocked during the check");
		return;
	}
	client_host(s, host, sizeof(host));
	logline_init(&ll);
	logline_num(&ll, "sess", s->id);
	logline_str(&ll, "svc", s->svc->name);
	logline_str(&ll, "event", "auth-failed");
	logline_str(&ll, "client", host);
	logline_str(&ll, "user", name);
	if (gate == GATE_REMOVED)
		logline_str(&ll, "detail", "account removed by a reload");
	logline_emit(&ll, LOG_LVL_INFO);
	v = login_refused(l, &s->u2c);
	if (gate == GATE_BLOCKED) {
		if (v != LOGIN_FAIL)
			login_blocked(l, &s->u2c);
		log_info("sess=%llu svc=%s event=auth-blocked client=%s "
		    "seconds=%d", (unsigned long long)s->id, s->svc->name, host,
		    s->svc->auth_block_time);
		close_after_reply(EV_A_ s, LOG_LVL_INFO, R_AUTH_BLOCKED, NULL);
	} else if (gate == GATE_REMOVED)
		close_after_reply(EV_A_ s, LOG_LVL_INFO, R_ACCOUNT_REMOVED,
		    name);
	else if (v == LOGIN_FAIL)
		close_after_reply(EV_A_ s, LOG_LVL_INFO, login_reason(l), NULL);
	else
		s->state = s->login != NULL ? SESS_LOGIN : SESS_FRONT;
}

/* The password check is over (on the loop again, from the thread). */
static void
checked(EV_P_ void *arg, bool ok)
{
	struct session *s = arg;

	s->check = NULL;
	if (s->state != SESS_LOGIN_CHECK || s->closing) {
		/* Timed out meanwhile (already answered): a guess used. */
		(void)end_attempt(s, true);
		return;
	}
	check_done(EV_A_ s, ok);
	sess_run(EV_A_ s);
}

/* The check cannot be made now (a login flood, no memory): a temporary
 * failure, and the session ends. */
static void
refuse_for_now(EV_P_ struct session *s, const char *why)
{
	buf_release(&s->u2c);
	proto_say(&s->u2c, "%s", proto_text(s->svc->protocol)->
	    told[TELL_LOCAL]);
	close_after_reply(EV_A_ s, LOG_LVL_WARN, R_OUT_OF_MEMORY, why);
}

/* Is the device's certificate (client_verify) account a's client_cert? */
static bool
cert_is_accounts(const struct session *s, const struct account *a)
{
	return a->client_cert.set && s->has_client_cert &&
	    CRYPTO_memcmp(a->client_cert.md, s->client_cert, 32) == 0;
}

/*
 * SMTP: a device whose certificate is an account's is logged in as it
 * before any AUTH (MAIL works at once): counted like a login (a blocked
 * client is refused), then the upstream login.  true if it was.
 */
static bool
certificate_login(EV_P_ struct session *s)
{
	const struct account *a = NULL;
	bool widened;

	for (size_t i = 0; s->has_client_cert && i < s->cf->naccounts; i++)
		if (cert_is_accounts(s, &s->cf->accounts[i]) &&
		    accounts_current(s->cf->accounts[i].fingerprint))
			a = &s->cf->accounts[i];
	if (a == NULL)
		return false;
	if (blocks_begin(&s->peer_addr, s->svc->auth_failures_max,
	    s->svc->auth_block_time, &s->attempt, &widened) != BLOCKS_GO) {
		login_blocked(sess_login(s), &s->u2c);
		close_after_reply(EV_A_ s, LOG_LVL_INFO, R_AUTH_BLOCKED,
		    "certificate login");
		return true;
	}
	s->checking = a;
	s->cert_login = s->cert_preauth = true;
	s->state = SESS_LOGIN_CHECK;
	check_done(EV_A_ s, true);
	return true;
}

/*
 * A complete login: its password goes to a checking thread (an unknown
 * name is checked against another account's hash, so that it costs the
 * same and answers the same); the client waits meanwhile.  The attempt is
 * counted before the check starts: a blocked client gets no check at all,
 * whichever session it sends its login on.
 */
static void
begin_check(EV_P_ struct session *s)
{
	struct login *l = sess_login(s);
	const struct account *a = accounts_find(s->cf, login_user(l));
	enum blocks_verdict bv;
	const char *pw, *hash;
	bool widened, dummy;
	size_t len;

	/* An old worker after a reload: its accounts may be gone. */
	if (a != NULL && !accounts_current(a->fingerprint))
		a = NULL;
	bv = blocks_begin(&s->peer_addr, s->svc->auth_failures_max,
	    s->svc->auth_block_time, &s->attempt, &widened);
	if (widened)
		note_widened(s);
	if (bv != BLOCKS_GO) {
		login_forget(l);
		if (bv == BLOCKS_BLOCKED)
			refuse_blocked(EV_A_ s, "blocked before the check");
		else
			refuse_for_now(EV_A_ s, "the block table is full and "
			    "uncounted checks are over their cap");
		return;
	}
	s->checking = a;
	s->state = SESS_LOGIN_CHECK;
	/* The account's certificate, presented: no password to check (any
	 * the client sent is ignored). */
	if (a != NULL && cert_is_accounts(s, a)) {
		login_forget(l);
		s->cert_login = true;
		check_done(EV_A_ s, true);
		return;
	}
	/* A certificate-only account, or an unknown name: a dummy check of
	 * the same cost, answered no. */
	dummy = a == NULL || a->password_hash == NULL;
	hash = dummy ? accounts_dummy_hash(s->cf) : a->password_hash;
	if (hash == NULL) {		/* no account has a password at all */
		login_forget(l);
		check_done(EV_A_ s, false);
		return;
	}
	pw = login_password(l, &len);
	s->check = pwcheck_start(EV_A_ hash, pw, len, dummy, checked, s);
	if (s->check != NULL) {
		char name[72];
		clean_name(login_user(l), name, sizeof(name));
		log_debug("sess=%llu svc=%s event=auth-check client=%s user=%s",
		    (unsigned long long)s->id, s->svc->name, s->peer, name);
	}
	login_forget(l);
	if (s->check == NULL) {
		bool busy = errno == EBUSY;
		(void)end_attempt(s, false);	/* not checked: not a guess */
		refuse_for_now(EV_A_ s, busy ? "too many password checks "
		    "waiting (a login flood?)" : "cannot check the password");
		return;
	}
}

void
login_abandoned(struct session *s)
{
	char host[64];

	if (!s->attempt.open)
		return;
	client_host(s, host, sizeof(host));
	log_info("sess=%llu svc=%s event=auth-failed client=%s user=- "
	    "detail=\"left before the answer\"", (unsigned long long)s->id,
	    s->svc->name, host);
	metrics_login(s->metrics, false);
	(void)end_attempt(s, true);
}

void
account_logged_in(EV_P_ struct session *s)
{
	size_t len;
	const char *p;
	char name[72];

	clean_name(s->account->name, name, sizeof(name));
	log_info("sess=%llu svc=%s event=upstream-auth-ok account=%s "
	    "upstream_user=%s", (unsigned long long)s->id, s->svc->name, name,
	    s->account->upstream_user);
	s->accepted = true;
	/* A login by certificate before any AUTH (SMTP) has no command to
	 * answer. */
	if (!s->cert_preauth)
		login_accepted(sess_login(s), s->svc->protocol == PROTO_IMAP ?
		    neg_caps(s->neg) : NULL, &s->u2c);
	/* The upstream dialogue is over (c2u sent): the client's own bytes. */
	if ((p = buf_peek(&s->held, &len)) != NULL) {
		(void)buf_append(&s->c2u, p, len);
		buf_release(&s->held);
	}
	if (s->front != NULL) {
		if (front_set_caps(s->front, neg_caps(s->neg)) < 0) {
			close_now(s, LOG_LVL_WARN, R_OUT_OF_MEMORY, NULL);
			return;
		}
		s->state = SESS_FRONT;
		set_deadline(EV_A_ s, s->svc->timeouts.negotiation);
	} else
		start_relay(EV_A_ s);
}

/* One feed of the dialogue the state holds, as a login verdict
 * (FRONT_RELAY: start the relay here). */
static enum login_verdict
feed(EV_P_ struct session *s, const char *p, size_t len, size_t *consumed)
{
	if (s->state == SESS_LOGIN)
		return login_feed(s->login, p, len, consumed, &s->u2c);
	switch (front_feed(s->front, p, len, consumed, &s->u2c)) {
	case FRONT_CONTINUE:
		return LOGIN_CONTINUE;
	case FRONT_CHECK:
		return LOGIN_CHECK;
	case FRONT_RELAY:
		start_relay(EV_A_ s);
		return LOGIN_CONTINUE;
	case FRONT_CLOSE:
		return LOGIN_CLOSE;
	case FRONT_FAIL:
		break;
	}
	return LOGIN_FAIL;
}

/*
 * The proxy answers the client itself: its login (LOGIN; FRONT with
 * accounts) and, with upstream_auth, the device's commands until MAIL,
 * whose line and what follows stay in c2u for the relay.  The upstream is
 * not read meanwhile: what it says waits in its socket.
 */
void
client_dialogue(EV_P_ struct session *s)
{
	enum sess_state state = s->state;
	enum ep_status st = EP_OK;
	enum login_verdict v;
	size_t len, consumed;
	const char *p;

	for (int round = 0; round < 8; round++) {
		if (!buf_empty(&s->u2c) && s->client.wr_wait == 0 &&
		    ep_write(&s->client, &s->u2c) == EP_ERROR) {
			close_now(s, LOG_LVL_INFO, R_CLIENT_ERROR, s->client.err);
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
			v = feed(EV_A_ s, p, len, &consumed);
			buf_consume(&s->c2u, consumed);
			if (s->state != state)
				return;		/* the relay started */
			switch (v) {
			case LOGIN_CONTINUE:
				break;
			case LOGIN_CHECK:
				begin_check(EV_A_ s);
				return;
			case LOGIN_CLOSE:
				close_after_reply(EV_A_ s, LOG_LVL_INFO, R_CLIENT_QUIT,
				    NULL);
				return;
			case LOGIN_FAIL:
				close_after_reply(EV_A_ s, LOG_LVL_INFO,
				    s->login != NULL ? login_reason(s->login) :
				    front_reason(s->front), NULL);
				return;
			}
		}
		if (st == EP_EOF || st == EP_ERROR) {
			close_now(s, LOG_LVL_INFO, st == EP_EOF ? R_CLIENT_CLOSED :
			    R_CLIENT_ERROR, state == SESS_LOGIN ? "before the login" :
			    "before MAIL");
			return;
		}
		if (st == EP_AGAIN && consumed == 0)
			return;
	}
	/* Still busy (a long pipeline already read): come back on the next
	 * loop iteration, as no socket event will say so. */
	ev_feed_event(EV_A_ &s->client.io, EV_READ | EV_WRITE);
}
