/*
 * negotiate: the protocol-specific part of a session, as pure state
 * machines (one per protocol: smtp.c, pop3.c, imap.c).
 *
 * A negotiator never touches a socket.  The session feeds it the bytes the
 * upstream sent; it answers with bytes to send (commands to the upstream, a
 * greeting or an error for the client) and a verdict.  It runs the upstream
 * STARTTLS dialogue:
 *
 *   greeting -> capabilities -> STARTTLS -> [session: TLS handshake,
 *   verification] -> post-TLS step -> RELAY, with the proxy's own greeting
 *
 * Security rules it enforces (DESIGN.md):
 *  - nothing the upstream says before TLS ever reaches the client: the
 *    client's greeting is made by the proxy, after TLS is up;
 *  - no fallback: STARTTLS missing or refused is a failure;
 *  - bytes after the STARTTLS success line (injection) or after any complete
 *    reply that nobody asked for are a failure;
 *  - lines are CRLF-terminated, bounded, free of NUL and control bytes;
 *    multi-line replies are bounded in total and consistent.
 */
#ifndef MAILPROXY_NEGOTIATE_H
#define MAILPROXY_NEGOTIATE_H

#include <stdbool.h>
#include <stddef.h>

#include "buffer.h"
#include "config.h"

enum neg_verdict {
	NEG_CONTINUE,		/* send what was queued, feed more input */
	NEG_START_TLS,		/* run the upstream TLS handshake now */
	NEG_RELAY,		/* done: send what was queued, then relay */
	NEG_FAIL		/* close: the client gets neg_client_error() */
};

/* Where a negotiator's output goes. */
struct neg_out {
	struct buf	*to_upstream;
	struct buf	*to_client;
};

/* Limits of the negotiation input (also the unit tests' reference). */
#define NEG_MAX_INPUT	16384	/* one whole (multi-line) reply */

struct negotiator;

/*
 * A negotiator for protocol proto; name is the proxy's own name (SMTP EHLO
 * and the greeting).  Returns NULL when out of memory.
 */
struct negotiator *neg_new(enum proto proto, const char *name);
void	neg_free(struct negotiator *n);

/*
 * Feeds bytes received from the upstream.  Stops at the first verdict other
 * than NEG_CONTINUE; the bytes of the negotiation are all consumed by then
 * (anything left over is itself a failure).
 */
enum neg_verdict neg_feed(struct negotiator *n, const char *data, size_t len,
	    struct neg_out *out);

/* The upstream TLS session is up and verified: take the post-TLS step. */
enum neg_verdict neg_tls_ready(struct negotiator *n, struct neg_out *out);

/* After NEG_FAIL: a short reason for the log ("upstream-no-starttls"). */
const char *neg_reason(const struct negotiator *n);

/* After NEG_FAIL: details for the log (a sanitised upstream reply, ...). */
const char *neg_detail(const struct negotiator *n);

/* The name of the current state, for logs. */
const char *neg_state_name(const struct negotiator *n);

#endif
