/*
 * accounts: the logins of upstream_auth = accounts ([account:NAME]
 * sections, resolved at load into the snapshot): their crypt(3) hashes,
 * the password check itself, mailproxy -H, and which accounts the running
 * configuration still has (shared with the workers of older generations,
 * so that a reload that removes an account ends its open sessions).
 */
#ifndef MAILPROXY_ACCOUNTS_H
#define MAILPROXY_ACCOUNTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blocks.h"
#include "config.h"

/* At most this many accounts in one configuration. */
#define ACCOUNTS_MAX	4096

/*
 * Is hash a complete yescrypt ($y$) or sha512crypt ($6$) hash that this
 * libcrypt computes?  0, or -1 with the reason in why.
 */
int	account_hash_check(const char *hash, char *why, size_t len);

/*
 * Does password (len bytes, any content) match hash?  Costs what the
 * hash's method and cost say (milliseconds): never on the event loop.
 */
bool	account_password_ok(const char *hash, const char *password,
	    size_t len);

/* A new yescrypt hash of password (mailproxy -H) into out.  0 or -1. */
int	account_make_hash(const char *password, char *out, size_t cap);

/* What becomes of a login once its password was checked. */
enum login_gate {
	GATE_ACCEPT,		/* logged in: the upstream may be dialled */
	GATE_REFUSED,		/* wrong password, or an unknown name */
	GATE_REMOVED,		/* a reload removed (or changed) the account
				 * while it was checked: refused */
	GATE_BLOCKED		/* the client is blocked: now (this failure
				 * was its last), or since its check began */
};

/*
 * The one decision after a check: password_ok for account a (NULL: an
 * unknown name, checked against a dummy) whose attempt *at blocks_begin()
 * opened for addr.  Ends the attempt (a failure counts, a success gives
 * its place back).  GATE_ACCEPT only when the password matched, a is
 * still in the running configuration and addr is not blocked.
 */
enum login_gate accounts_gate(bool password_ok, const struct account *a,
	    struct blocks_attempt *at, const struct sockaddr_any *addr,
	    int max, int window);

/* The hash an unknown name (or a certificate-only account's name) is
 * checked against, so that it costs what a real check does: the first
 * account's that has one, or NULL (no account has a password). */
const char *accounts_dummy_hash(const struct config *cf);

/* The account a client logs in as (exact name), or NULL. */
const struct account *accounts_find(const struct config *cf,
	    const char *name);

/*
 * The shared table of the running configuration's accounts: made by the
 * supervisor before forking (0 or -1), filled at start and at each reload
 * before the old workers are told to drain.
 */
int	accounts_shared_init(void);
void	accounts_publish(const struct config *cf);

/* Is an account with this fingerprint in the running configuration?
 * (True when no table was made, as in the unit tests; false when the
 * table cannot be read, its writer stuck or dead mid-publish.) */
bool	accounts_current(uint64_t fingerprint);

#endif
