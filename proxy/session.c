/*
 * session: the per-connection state machine: lifecycle, states, timers,
 * closing.  The phases live in client.c, upstream.c and relay.c.
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
#include "clients.h"
#include "listener.h"
#include "pwcheck.h"
#include "tls.h"

static const char *const sess_state_names[] = {
	"proxy-header", "client-pretls", "client-handshake", "token-wait",
	"connect", "negotiate", "upstream-handshake", "login", "login-check",
	"front", "relay", "farewell",
};

static struct session	*sessions;
static size_t		 nsessions;
static uint64_t		 next_id = 1;


static void timer_cb(EV_P_ ev_timer *w, int revents);

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

void
set_deadline(EV_P_ struct session *s, int seconds)
{
	ev_timer_stop(EV_A_ &s->timer);
	ev_timer_set(&s->timer, seconds, 0.);
	ev_timer_start(EV_A_ &s->timer);
}

void
set_deadline_at(EV_P_ struct session *s, ev_tstamp when)
{
	ev_tstamp left = when - ev_now(EV_A);

	ev_timer_stop(EV_A_ &s->timer);
	ev_timer_set(&s->timer, left > 0.001 ? left : 0.001, 0.);
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
	if (s->has_client_cert) {
		client_cert_text(s, buf, sizeof(buf));
		logline_str(&ll, "client_cert", buf);
	}
	logline_str(&ll, "upstream", s->upstream_addr[0] ? s->upstream_addr :
	    NULL);
	if (s->upstream.ssl != NULL)
		tls_describe(s->upstream.ssl, buf, sizeof(buf));
	else
		snprintf(buf, sizeof(buf), "%s", s->upstream_tls[0] ?
		    s->upstream_tls : "-");
	logline_str(&ll, "upstream_tls", buf);
	logline_num(&ll, "bytes_in", s->client.bytes_in);
	logline_num(&ll, "bytes_out", s->client.bytes_out);
	logline_num(&ll, "ms", (uint64_t)((ev_time() - s->started) * 1000));
	logline_str(&ll, "state", sess_state_names[s->state]);
	logline_str(&ll, "reason", reason_name(s->reason));
	if (s->detail[0] != '\0')
		logline_str(&ll, "detail", s->detail);
	logline_emit(&ll, s->severity);
}

/* Marks the session closed; the callback wrapper frees it. */
void
close_now(struct session *s, enum log_level severity, enum close_reason reason,
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
	if (!s->counted)
		metrics_session_open(s->metrics);
	metrics_session_close(s->metrics, reason_outcome(s->reason),
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
	login_free(s->login);
	login_abandoned(s);	/* counted before the check is dropped */
	pwcheck_cancel(s->check);
	buf_release(&s->held);
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
	listeners_session_ended(EV_A_ s->count_addr.len != 0 ? &s->count_addr :
	    NULL);
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
sess_close_all(EV_P_ enum close_reason reason)
{
	while (sessions != NULL) {
		close_now(sessions, LOG_LVL_INFO, reason, NULL);
		sess_free(EV_A_ sessions);
	}
}

void
sess_close_stale_accounts(EV_P)
{
	struct session *s, *next;

	for (s = sessions; s != NULL; s = next) {
		next = s->next;
		if (s->account == NULL || accounts_current(s->account->fingerprint))
			continue;
		close_now(s, LOG_LVL_INFO, R_ACCOUNT_REMOVED, s->account->name);
		sess_free(EV_A_ s);
	}
}

/* Sends the client what u2c holds, then closes (state FAREWELL). */
void
close_after_reply(EV_P_ struct session *s, enum log_level severity,
    enum close_reason reason, const char *detail)
{
	s->reason = reason;
	if (detail != s->detail)
		snprintf(s->detail, sizeof(s->detail), "%s",
		    detail ? detail : "");
	s->farewell_severity = severity;
	s->state = SESS_FAREWELL;
	set_deadline(EV_A_ s, s->svc->timeouts.handshake);
}

void
set_nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/*
 * While the proxy logs in upstream (upstream_auth), the client is read too,
 * into held (the relay's start takes it), so that its leaving is seen at
 * once instead of when the login's answer comes: the upstream leg would
 * stay open that long for nobody.  Other sessions wait for the relay,
 * which forwards a client's half-close as such.
 */
static bool
watching_client(const struct session *s)
{
	switch (s->state) {
	case SESS_TOKEN_WAIT:
	case SESS_CONNECT:
	case SESS_NEGOTIATE:
	case SESS_UPSTREAM_HANDSHAKE:
		return s->svc->upstream_auth != AUTH_NONE &&
		    buf_room(&s->held) > 0;
	default:
		return false;
	}
}

/*
 * The client left during the upstream login: the upstream gets the
 * protocol's goodbye when the dialogue allows one (never a command still
 * waiting to go out: it may carry the credential), close_notify once TLS
 * is up, then the close.  All without waiting: a write that would block
 * is skipped.
 */
static void
client_left(struct session *s, enum ep_status st)
{
	struct neg_out out = { &s->c2u, &s->u2c };

	buf_release(&s->held);
	if (s->state == SESS_NEGOTIATE && s->upstream.fd >= 0) {
		if (buf_empty(&s->c2u) && s->upstream.wr_wait == 0 &&
		    neg_goodbye(s->neg, &out))
			(void)ep_write(&s->upstream, &s->c2u);
		if (s->upstream.ssl != NULL && s->upstream.wr_wait == 0)
			(void)ep_shutdown(&s->upstream, true);
	}
	close_now(s, LOG_LVL_INFO, st == EP_EOF ? R_CLIENT_CLOSED :
	    R_CLIENT_ERROR, st == EP_EOF ? "during the upstream login" :
	    s->client.err);
}

/* Reads what the client sent meanwhile; false when it has left. */
static bool
client_still_there(struct session *s)
{
	enum ep_status st;

	if (!watching_client(s) || s->client.rd_wait != 0)
		return true;
	st = ep_read(&s->client, &s->held);
	if (st != EP_EOF && st != EP_ERROR)
		return true;
	client_left(s, st);
	return false;
}

/* Runs the current state once; it may move the session to another state. */
static void
run_state(EV_P_ struct session *s)
{
	enum ep_status st;

	if (!client_still_there(s))
		return;
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
			if (!take_route(s) || !device_certificate(s))
				break;
			note_legacy_tls(s);
			metrics_tls(s->metrics, SSL_version(s->client.ssl),
			    SSL_CIPHER_standard_name(SSL_get_current_cipher(
			    s->client.ssl)));
			if (s->client_starttls)
				metrics_starttls(s->metrics, 1);
			metrics_handshake(s->metrics, 0,
			    SSL_session_reused(s->client.ssl));
			/* Unless TLS holds bytes already (decrypted or read
			 * ahead with the Finished), what the client sends next
			 * is still to come and the read event will say so.  A
			 * read now would find nothing (mail clients wait for
			 * the greeting). */
			if (!ep_has_pending(&s->client))
				s->client.rd_wait = EV_READ;
			client_ready(EV_A_ s);
		}
		else if (st == EP_ERROR)
			client_handshake_failed(s);
		break;
	case SESS_TOKEN_WAIT:
		break;		/* the timer polls */
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
	case SESS_LOGIN:
	case SESS_FRONT:
		client_dialogue(EV_A_ s);
		break;
	case SESS_LOGIN_CHECK:
		break;		/* the check's callback moves on */
	case SESS_RELAY:
		relay(EV_A_ s);
		break;
	case SESS_FAREWELL:
		if (s->client.wr_wait != 0)
			break;
		st = ep_write(&s->client, &s->u2c);
		if (st == EP_ERROR || (st == EP_OK &&
		    ep_shutdown(&s->client, true) != EP_AGAIN))
			close_now(s, s->farewell_severity, s->reason, s->detail);
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
	case SESS_TOKEN_WAIT:
		ep_update(EV_A_ &s->client, watching_client(s), false);
		break;
	case SESS_CONNECT:
		ep_update(EV_A_ &s->client, watching_client(s), false);
		ep_update(EV_A_ &s->upstream, false, true);
		break;
	case SESS_NEGOTIATE:
		ep_update(EV_A_ &s->client, watching_client(s), false);
		ep_update(EV_A_ &s->upstream, true, !buf_empty(&s->c2u));
		break;
	case SESS_UPSTREAM_HANDSHAKE:
		ep_update(EV_A_ &s->client, watching_client(s), false);
		ep_update(EV_A_ &s->upstream, true, false);
		break;
	case SESS_LOGIN:
	case SESS_FRONT:
		ep_update(EV_A_ &s->client, buf_len(&s->u2c) <= BUF_CAPACITY / 2 &&
		    buf_room(&s->c2u) > 0, !buf_empty(&s->u2c));
		ep_update(EV_A_ &s->upstream, false, false);
		break;
	case SESS_LOGIN_CHECK:
		ep_update(EV_A_ &s->client, false, false);
		break;
	case SESS_RELAY:
		arm_relay(EV_A_ s);
		break;
	case SESS_FAREWELL:
		ep_update(EV_A_ &s->client, false, true);
		break;
	}
}

void
sess_run(EV_P_ struct session *s)
{
	if (!s->closing)
		step(EV_A_ s);
	reap(EV_A_ s);
}

/* Both sides' watchers: note what fired, run the machine, free if closed. */
void
sess_io_cb(EV_P_ ev_io *w, int revents)
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
		close_now(s, LOG_LVL_INFO, R_IDLE_TIMEOUT, NULL);
		break;
	case SESS_CLIENT_HANDSHAKE:
		close_now(s, LOG_LVL_INFO, R_CLIENT_HANDSHAKE_TIMEOUT, NULL);
		break;
	case SESS_TOKEN_WAIT:
		start_connect(EV_A_ s);		/* polls again, or gives up */
		break;
	case SESS_CONNECT:
		fail_upstream(EV_A_ s, R_UPSTREAM_CONNECT_TIMEOUT, s->upstream_addr);
		break;
	case SESS_NEGOTIATE:
		fail_upstream(EV_A_ s, R_NEGOTIATION_TIMEOUT, neg_state_name(s->neg));
		break;
	case SESS_UPSTREAM_HANDSHAKE:
		fail_upstream(EV_A_ s, s->neg != NULL &&
		    ev_now(EV_A) >= s->neg_deadline ? R_NEGOTIATION_TIMEOUT :
		    R_UPSTREAM_HANDSHAKE_TIMEOUT, NULL);
		break;
	case SESS_FAREWELL:
		close_now(s, s->farewell_severity, s->reason, s->detail);
		break;
	case SESS_PROXY_HEADER:
		close_now(s, LOG_LVL_INFO, R_PROXY_HEADER_TIMEOUT, NULL);
		break;
	case SESS_LOGIN:
	case SESS_LOGIN_CHECK:
		buf_release(&s->u2c);
		login_timeout(sess_login(s), &s->u2c);
		close_after_reply(EV_A_ s, LOG_LVL_INFO, R_CLIENT_NEGOTIATION_TIMEOUT,
		    NULL);
		break;
	case SESS_FRONT:
		buf_release(&s->u2c);
		front_timeout(&s->u2c);
		close_after_reply(EV_A_ s, LOG_LVL_INFO, R_CLIENT_NEGOTIATION_TIMEOUT,
		    NULL);
		break;
	case SESS_CLIENT_PRETLS:
		buf_release(&s->u2c);
		cneg_timeout(s->cneg, &s->u2c);
		close_after_reply(EV_A_ s, LOG_LVL_INFO, R_CLIENT_NEGOTIATION_TIMEOUT,
		    NULL);
		break;
	}
	if (!s->closing)
		step(EV_A_ s);
	reap(EV_A_ s);
}

bool
sess_new(EV_P_ struct config *cf, const struct service *svc,
    const struct listen_addr *la, int fd, const struct sockaddr_any *peer)
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
	s->route.la = la;
	if (ssl != NULL)
		tls_set_route(ssl, &s->route);
	s->started = ev_now(EV_A);
	s->peer_addr = *peer;
	if (!svc->proxy_protocol_in)	/* else: by the header */
		s->count_addr = *peer;
	s->metrics = metrics_service(svc->name);
	/* On an address shared by sni the session is counted by the service
	 * its name picks (or, if it ends before, by this one). */
	if (la == NULL || la->nroutes == 0) {
		metrics_session_open(s->metrics);
		s->counted = true;
	}
	sockaddr_text((const struct sockaddr *)&peer->ss, s->peer,
	    sizeof(s->peer));
	buf_init(&s->c2u, BUF_CAPACITY);
	buf_init(&s->u2c, BUF_CAPACITY);
	buf_init(&s->neg_in, NEG_MAX_INPUT);
	buf_init(&s->held, BUF_CAPACITY);
	/* Before the relay, c2u (and held, its overflow) carry logins: the
	 * client's to the proxy (accounts) and the proxy's to the upstream;
	 * start_relay() declassifies them. */
	s->c2u.secret = s->held.secret = svc->upstream_auth != AUTH_NONE;
	set_nodelay(fd);
	ep_init(&s->client, fd, ssl, sess_io_cb, s);
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
			close_now(s, LOG_LVL_INFO, R_PROXY_UNTRUSTED, "a PROXY "
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
