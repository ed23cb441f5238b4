/*
 * relay: the hot path.  Bytes move both ways through one bounded buffer per
 * direction with backpressure; half-closes are forwarded, truncation and
 * resets stay visible; the client's bytes pass the STARTTLS-in-TLS guard.
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

#include "tls.h"

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
		close_now(s, LOG_LVL_WARN, R_OUT_OF_MEMORY, NULL);
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

void
start_relay(EV_P_ struct session *s)
{
	/* Client bytes already read (pipelined after MAIL) pass the guard. */
	if (!buf_empty(&s->c2u)) {
		size_t len;
		const char *p = buf_peek(&s->c2u, &len);
		guard_client_bytes(s, p, len);
	}
	/* The logins are over: wiped, and the relay pays no wiping. */
	buf_declassify(&s->c2u);
	buf_declassify(&s->held);
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
	close_now(s, client ? LOG_LVL_INFO : LOG_LVL_WARN,
	    client ? R_CLIENT_ERROR : R_UPSTREAM_ERROR, ep->err);
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
		if (src == &s->upstream && !src->eof_clean) {
			/* The upstream's TLS ended without close_notify: a cut
			 * reply.  The client's side ends with a reset, so that a
			 * plaintext client too sees it cut, never complete.  Once
			 * the client had ended its side (QUIT answered, say),
			 * servers that skip close_notify are common: a normal
			 * end, still closed the same way. */
			s->abort = true;
			if (s->client.eof)
				close_now(s, LOG_LVL_INFO, R_UPSTREAM_CLOSED, "after "
				    "the client's end, without close_notify");
			else
				close_now(s, LOG_LVL_WARN, R_UPSTREAM_TRUNCATED,
				    "the upstream's TLS ended without close_notify");
			return false;
		}
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
	close_after_reply(EV_A_ s, LOG_LVL_INFO, R_CLIENT_STARTTLS_IN_TLS, NULL);
}

void
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
		close_now(s, LOG_LVL_INFO, strcmp(s->first_eof, "client") == 0 ?
		    R_CLIENT_CLOSED : R_UPSTREAM_CLOSED, clean ? NULL :
		    "a TLS side ended without close_notify");
		return;
	}
	if (progress && round == PUMP_ROUNDS) {
		/* Still busy: come back on the next loop iteration. */
		ev_feed_event(EV_A_ &s->client.io, EV_READ | EV_WRITE);
	}
}

void
arm_relay(EV_P_ struct session *s)
{
	ep_update(EV_A_ &s->client, !s->client.eof && buf_room(&s->c2u) > 0,
	    !buf_empty(&s->u2c) || (s->upstream.eof && !s->client.shut));
	ep_update(EV_A_ &s->upstream, !s->upstream.eof &&
	    buf_room(&s->u2c) > 0,
	    !buf_empty(&s->c2u) || (s->client.eof && !s->upstream.shut));
}
