/*
 * oauth2: the proxy owns the OAuth2 token lifecycle of every
 * oauth2_token_store.
 *
 * The supervisor is the one process that talks to token endpoints: it reads
 * each store, refreshes the access token on its event loop before it
 * expires (when what is left is at most a tenth of its lifetime, or 60 s,
 * but never less than half of it), writes a rotated refresh token back at
 * once, and publishes the current access token in a shared-memory table the
 * workers read with a seqlock.  So there is exactly one refresh in flight
 * per store whatever the number of workers and sessions, and a session that
 * needs a token while it is being fetched waits for that one (no stampede).
 *
 * A refresh that fails transiently (network, 5xx, 429, a timeout) is
 * retried with jittered exponential backoff, 1 s doubling up to 60 s, while
 * the current token still serves.  invalid_grant (revoked, expired, the
 * password changed) stops the refreshes for that store and says to re-run
 * "mailproxy -A SERVICE"; a new store file (written by -A) is picked up on
 * reload, which watch_files makes automatic.
 *
 * Nothing here logs a token, a refresh token, a client secret or a device
 * code.
 */
#ifndef MAILPROXY_OAUTH2_H
#define MAILPROXY_OAUTH2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "proto.h"

struct config;
struct oauth2_conf;
struct token;

/* Distinct stores one supervisor can keep (a reload may add some). */
#define OAUTH2_MAX_STORES	64

/* What a store's table entry says, for workers and /metrics. */
enum oauth2_state {
	OAUTH2_UNUSED,		/* no store here */
	OAUTH2_MISSING,		/* no usable store file: run -A */
	OAUTH2_FETCHING,	/* a refresh is in flight, none valid yet */
	OAUTH2_VALID,		/* the token serves (a refresh may be due) */
	OAUTH2_RETRYING,	/* refreshes fail; retried with backoff */
	OAUTH2_REVOKED		/* invalid_grant or a refused client: -A */
};

extern const char *const oauth2_state_names[];

/* ---- the supervisor ---------------------------------------------------- */

/* The shared table, before any worker is forked.  -1 if it cannot be made. */
int	oauth2_init(void);

/*
 * Gives every store cf names a table entry (kept across reloads, by path)
 * and records it in the config (oauth2_conf.slot); a store that is new, or
 * whose file changed since it was read or written here, is (re)read and
 * its refresh scheduled.  Call before forking workers on cf.  -1 with err
 * when the table is full (the reload fails).
 */
int	oauth2_attach(EV_P_ struct config *cf, char *err, size_t errlen);

/*
 * The store file at path changed, and not by us: true unless its identity
 * is the one we last read or wrote (watch_files uses this so that our own
 * writes trigger no reload).
 */
bool	oauth2_store_changed(const char *path);

/*
 * In a worker just forked: the supervisor's refresh tokens, client secrets
 * and requests in flight (their sockets) are not the worker's business;
 * wiped and closed in this copy only.
 */
void	oauth2_forget(void);

/* Cancels requests and timers (the supervisor is stopping). */
void	oauth2_stop(EV_P);

/* ---- the workers --------------------------------------------------------- */

enum oauth2_take {
	OAUTH2_TOKEN,		/* out holds the access token */
	OAUTH2_PENDING,		/* none valid now; a refresh is under way */
	OAUTH2_UNAVAILABLE	/* none, and none is coming: why says so */
};

/*
 * The current access token of table entry slot, if it is valid for at least
 * another second, into out (NUL-terminated, *len bytes).
 */
enum oauth2_take oauth2_take(int slot, char *out, size_t cap, size_t *len,
	    char *why, size_t whylen);

/* The same verdict without copying the token (a session about to dial). */
enum oauth2_take oauth2_ready(int slot, char *why, size_t whylen);

/* For /metrics: the entry's counters and its token's remaining seconds
 * (negative when expired or none). */
struct oauth2_stats {
	enum oauth2_state	 state;
	uint64_t		 refreshes;
	uint64_t		 failures;
	int64_t			 expires_in;
};
void	oauth2_stats(int slot, struct oauth2_stats *st);

/* ---- mailproxy -T (the running proxy's memory is not reachable) -------- */

/* The store file's access token, if still valid: its length, or -1 with
 * why. */
int	oauth2_store_token(const struct oauth2_conf *c, char *out, size_t cap,
	    char *why, size_t whylen);

/* One line on the store of service name: there, refresh token, expiry. */
void	oauth2_describe(const struct oauth2_conf *c, const char *name,
	    char *out, size_t cap);

/* ---- shared by the refresh and the device grant ------------------------ */

/* Appends "&key=value" (form-encoded; no "&" first) to a malloc'ed form.
 * Returns -1 when out of memory (the form is then freed and NULL). */
int	oauth2_form_add(char **form, const char *key, const char *value);

/* Wipes and frees a form (it carries secrets). */
void	oauth2_form_free(char *form);

/* The client's own part of every token request: client_id, client_secret
 * when configured. */
int	oauth2_form_client(char **form, const struct oauth2_conf *c);

/*
 * A token endpoint's answer.  On success (status 200 with an access_token)
 * returns 0 and fills t (a refresh_token only if one came; expires_at from
 * expires_in, 3600 s if absent).  Otherwise returns -1 with the OAuth2
 * error code in code ("invalid_grant", "authorization_pending", ... or ""
 * when the answer had none) and a printable reason in why.
 */
int	oauth2_parse_token(int status, const char *body, size_t len,
	    int64_t now, struct token *t, char *code, size_t codelen,
	    char *why, size_t whylen);

#endif
