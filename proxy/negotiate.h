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
 * Security rules it enforces (README, "How the upstream STARTTLS dialogue
 * works"; each has a test):
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
#include "proto.h"
#include "reason.h"

/* The upstream dialogue's verdicts. */
enum neg_verdict {
	NEG_CONTINUE,		/* send what was queued, feed more input */
	NEG_START_TLS,		/* run the TLS handshake toward the upstream */
	NEG_RELAY,		/* done: send what was queued, then relay */
	NEG_FAIL		/* close; see neg_reason() */
};

/* Where a negotiator's output goes. */
struct neg_out {
	struct buf	*to_upstream;
	struct buf	*to_client;
};

/*
 * What the proxy itself says to a client, one table per protocol, next to
 * that protocol's negotiators (smtp.c, pop3.c, imap.c).  Lines are given
 * without their final CRLF.
 */
struct proto_text {
	const char	*greeting;	/* client_tls = starttls; %s: our name */
	const char	*too_long;	/* a command line over the limit */
	const char	*timeout;	/* negotiation_timeout, before the relay */
	const char	*syntax_error;	/* a NUL byte in a command line */
	const char	*too_many;	/* max_connections_per_client */
	const char	*tls_in_tls;	/* STARTTLS inside TLS (IMAP: %.*s tag) */
	const char	*told[TELL_LOCAL + 1];	/* the upstream failed, by tell */
	/* upstream_auth = accounts: the proxy's own login (login.h, front.h);
	 * the IMAP lines take the client's tag as %.*s */
	const char	*login_greeting;	/* implicit TLS; %s: our name */
	const char	*sasl_go_on;		/* an empty SASL challenge */
	const char	*auth_ok;		/* logged in (upstream too) */
	const char	*auth_ok_caps;		/* the same; %s: capabilities */
	const char	*auth_failed;		/* wrong name or password */
	const char	*auth_unavailable;	/* the upstream said no: later */
	const char	*auth_cancelled;	/* "*" as a SASL response */
	const char	*auth_mechanism;	/* a mechanism not offered */
	const char	*auth_syntax;		/* bad base64 or PLAIN message */
	const char	*auth_blocked;		/* too many failures: goodbye */
};

const struct proto_text *proto_text(enum proto proto);

/* Queues one of those lines (or any printf line) with its CRLF. */
void	proto_say(struct buf *to_client, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

/* Limits of the negotiation input (also the unit tests' reference). */
#define NEG_MAX_INPUT	16384	/* one whole (multi-line) reply */

struct negotiator;

/*
 * A negotiator for protocol proto; name is the proxy's own name (SMTP EHLO
 * and the greeting).  With starttls false it only reads and checks the
 * upstream's greeting (the client was greeted already); with greet false it
 * sends the client no greeting of its own at the end.  Returns NULL when
 * out of memory.
 */
struct negotiator *neg_new(enum proto proto, const char *name, bool starttls,
	    bool greet);
void	neg_free(struct negotiator *n);

/*
 * upstream_auth (SMTP): once TLS is up the negotiator sends EHLO and logs
 * in as user with mech (enum upstream_auth); secret is the password or the
 * OAuth2 token, copied here and wiped by neg_free().  Call before the first
 * neg_feed().  Returns -1 when out of memory.  An account's login (IMAP,
 * POP3, SMTP): mech AUTH_XOAUTH2 for a token, AUTH_ACCOUNTS for a password
 * (SMTP: AUTH PLAIN, or AUTH LOGIN when only that is offered).
 */
int	neg_set_auth(struct negotiator *n, int mech, const char *user,
	    const char *secret, size_t len);

/*
 * After NEG_RELAY with auth: the upstream's post-TLS EHLO keywords, each
 * followed by CRLF, without AUTH and STARTTLS ("" if none).
 */
const char *neg_caps(const struct negotiator *n);

/*
 * Feeds bytes received from the upstream.  Stops at the first verdict other
 * than NEG_CONTINUE; the bytes of the negotiation are all consumed by then
 * (anything left over is itself a failure).
 */
enum neg_verdict neg_feed(struct negotiator *n, const char *data, size_t len,
	    struct neg_out *out);

/* The upstream TLS session is up and verified: take the post-TLS step. */
enum neg_verdict neg_tls_ready(struct negotiator *n, struct neg_out *out);

/*
 * The client left before the dialogue was over: queues the protocol's
 * goodbye (QUIT, LOGOUT) when the upstream would read it as a command of
 * its own, once it has answered the one pending: never in the middle of a
 * SASL exchange, before the greeting, or around STARTTLS.  Returns whether
 * it did; either way the session closes the upstream next.
 */
bool	neg_goodbye(struct negotiator *n, struct neg_out *out);

/* After NEG_FAIL: why (R_UPSTREAM_NO_STARTTLS, ...). */
enum close_reason neg_reason(const struct negotiator *n);

/* After NEG_FAIL: details for the log (a sanitised upstream reply, ...). */
const char *neg_detail(const struct negotiator *n);

/* The name of the current state, for logs. */
const char *neg_state_name(const struct negotiator *n);

/*
 * The client side of client_tls = starttls: the proxy itself answers the
 * pre-TLS dialogue from a fixed capability list (STARTTLS/STLS offered, no
 * AUTH, logins refused) until the client sends STARTTLS.
 *
 * Framing rule (CVE-2011-0411): cneg_feed() never consumes past the
 * STARTTLS line.  Whatever follows it in the same read must be the start of
 * a TLS record (left for BoringSSL, which the session achieves by peeking):
 * anything else fails the session without an answer.
 */
struct cneg;

/* The client dialogue's verdicts. */
enum cneg_verdict {
	CNEG_CONTINUE,		/* send the replies, feed more input */
	CNEG_START_TLS,		/* after the reply: the client's handshake */
	CNEG_CLOSE,		/* send the replies, then close (QUIT) */
	CNEG_FAIL		/* send the replies, if any, then close */
};

struct cneg *cneg_new(enum proto proto, const char *name);
void	cneg_free(struct cneg *c);

/* Queues the proxy's greeting for the client. */
void	cneg_greet(struct cneg *c, struct buf *to_client);

/*
 * Feeds bytes the client sent; *consumed is how many were taken (complete
 * lines and a partial one; never beyond the STARTTLS line).  Replies go to
 * to_client.  Verdicts: CONTINUE, START_TLS (after the reply is sent),
 * CLOSE (QUIT/LOGOUT answered), FAIL (reply, if any, then close).
 */
enum cneg_verdict cneg_feed(struct cneg *c, const char *data, size_t len,
	    size_t *consumed, struct buf *to_client);

/* The client was too slow: queues the protocol's timeout message. */
void	cneg_timeout(struct cneg *c, struct buf *to_client);

/* After FAIL: why. */
enum close_reason cneg_reason(const struct cneg *c);

#endif
