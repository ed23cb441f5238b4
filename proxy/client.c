/*
 * client: the client's side of a session before the relay: the PROXY
 * header (exactly, by peeking), the STARTTLS dialogue the proxy answers
 * itself (client_tls = starttls) and, with upstream_auth, the device's
 * commands up to MAIL.
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

#include "listener.h"
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
	char desc[128];

	if (SSL_version(s->client.ssl) >= TLS1_2_VERSION &&
	    !tls_cipher_is_legacy(SSL_get_current_cipher(s->client.ssl)))
		return;
	tls_describe(s->client.ssl, desc, sizeof(desc));
	log_warnx("sess=%llu svc=%s event=legacy-tls client=%s tls=%s",
	    (unsigned long long)s->id, s->svc->name, s->peer, desc);
	/* Per address, not per connection. */
	sockaddr_host((const struct sockaddr *)&s->peer_addr.ss, desc,
	    sizeof(desc));
	metrics_legacy_client(s->metrics, desc, SSL_version(s->client.ssl));
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

/*
 * The proxy answers the device (EHLO without AUTH, its AUTH accepted)
 * until MAIL; the MAIL line and what follows it stay in c2u for the relay.
 * The upstream is not read meanwhile: what it says waits in its socket.
 */
void
front_dialogue(EV_P_ struct session *s)
{
	enum ep_status st = EP_OK;
	enum front_verdict v;
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
			v = front_feed(s->front, p, len, &consumed, &s->u2c);
			buf_consume(&s->c2u, consumed);
			switch (v) {
			case FRONT_CONTINUE:
				break;
			case FRONT_RELAY:
				start_relay(EV_A_ s);
				return;
			case FRONT_CLOSE:
				close_after_reply(EV_A_ s, LOG_LVL_INFO, R_CLIENT_QUIT,
				    NULL);
				return;
			case FRONT_FAIL:
				close_after_reply(EV_A_ s, LOG_LVL_INFO,
				    front_reason(s->front), NULL);
				return;
			}
		}
		if (st == EP_EOF || st == EP_ERROR) {
			close_now(s, LOG_LVL_INFO, st == EP_EOF ? R_CLIENT_CLOSED :
			    R_CLIENT_ERROR, "before MAIL");
			return;
		}
		if (st == EP_AGAIN && consumed == 0)
			return;
	}
	/* Still busy (a long pipeline already read): come back on the next
	 * loop iteration, as no socket event will say so. */
	ev_feed_event(EV_A_ &s->client.io, EV_READ | EV_WRITE);
}
