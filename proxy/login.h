/*
 * login: the client's login to the proxy itself (upstream_auth = accounts),
 * IMAP and POP3, as a pure dialogue like the negotiators: fed the bytes
 * the client sent, it answers with bytes for the client and a verdict.
 * SMTP's is the device front (front.h).  It runs inside TLS only (the
 * session starts it once the client's TLS is up).
 *
 *   IMAP  CAPABILITY (IMAP4rev1 AUTH=PLAIN SASL-IR LITERAL+), NOOP, LOGOUT;
 *         LOGIN with atoms, quoted strings (\" and \\ escapes) or literals
 *         ({n} with a "+" continuation, {n+} without);
 *         AUTHENTICATE PLAIN, with or without an initial response
 *   POP3  CAPA, QUIT, USER + PASS, AUTH (the list), AUTH PLAIN [ir]
 *
 * A complete login gives LOGIN_CHECK: the caller checks the name and
 * password (off the event loop), then says how it went: login_refused()
 * (the protocol's authentication failure, and the dialogue goes on) or,
 * once it has logged in upstream, login_accepted() / login_unavailable().
 * Bytes after the login command are not consumed: they are the client's
 * first commands for the upstream.  Nothing here is logged.
 */
#ifndef MAILPROXY_LOGIN_H
#define MAILPROXY_LOGIN_H

#include <stdbool.h>
#include <stddef.h>

#include "buffer.h"
#include "proto.h"
#include "reason.h"

/* Longest name and password a client may log in with. */
#define LOGIN_MAX_USER		255
#define LOGIN_MAX_PASSWORD	1024

/* Failed logins in one session before it is closed. */
#define LOGIN_MAX_FAILURES	3

struct login;

enum login_verdict {
	LOGIN_CONTINUE,		/* send the replies, feed more input */
	LOGIN_CHECK,		/* check login_user() / login_password() */
	LOGIN_CLOSE,		/* LOGOUT / QUIT answered: send, then close */
	LOGIN_FAIL		/* send the replies, if any, then close */
};

/* A dialogue for proto (IMAP or POP3); name goes in the greeting.  NULL
 * when out of memory. */
struct login *login_new(enum proto proto, const char *name);
void	login_free(struct login *l);

/* Queues the greeting (implicit TLS; after STARTTLS there is none). */
void	login_greet(struct login *l, struct buf *to_client);

/*
 * Feeds what the client sent; *consumed is how many bytes were taken (up
 * to the end of a login command at most).  Replies go to to_client.
 */
enum login_verdict login_feed(struct login *l, const char *data, size_t len,
	    size_t *consumed, struct buf *to_client);

/* After LOGIN_CHECK: the name, and the password (len bytes). */
const char *login_user(const struct login *l);
const char *login_password(const struct login *l, size_t *len);

/* Wipes the password (once handed to the check). */
void	login_forget(struct login *l);

/*
 * The check failed: queues the authentication failure.  CONTINUE, or
 * FAIL when the session has failed LOGIN_MAX_FAILURES times.
 */
enum login_verdict login_refused(struct login *l, struct buf *to_client);

/* The client's address is blocked now (auth_failures_max): the protocol's
 * goodbye.  The session ends after it. */
void	login_blocked(struct login *l, struct buf *to_client);

/*
 * The upstream took the account's credential: queues the client's success
 * (IMAP: with the capabilities the upstream's OK carried, caps may be "").
 */
void	login_accepted(struct login *l, const char *caps, struct buf *to_client);

/* The upstream failed or refused the credential: a temporary failure. */
void	login_unavailable(struct login *l, struct buf *to_client);

/* The client was too slow: queues the protocol's timeout line. */
void	login_timeout(struct login *l, struct buf *to_client);

/* After FAIL: why. */
enum close_reason login_reason(const struct login *l);

#endif
