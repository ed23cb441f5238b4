/*
 * oauth2_grant: how a token is obtained, one module per grant behind one
 * interface.  A grant says what to send to the token endpoint; the answer
 * is read the same way for all (oauth2_parse_token).  The lifecycle
 * (oauth2.c) schedules, retries, publishes and counts, whatever the grant.
 *
 * - device, code (oauth2_grant.c): a person's grant, obtained by -A
 *   (oauth2_device.c) and kept in the token store; the lifecycle renews it
 *   with the store's refresh token.
 * - client_credentials (oauth2_client.c): the application's own, with a
 *   client secret or a signed client assertion (RFC 7523 section 2.2).
 * - service_account (oauth2_sa.c): Google's JWT bearer grant (RFC 7523
 *   section 2.1) with domain-wide delegation to the mailbox.
 * The last two need no person and no store: a token is fetched at start
 * and again before it expires.
 */
#ifndef MAILPROXY_OAUTH2_GRANT_H
#define MAILPROXY_OAUTH2_GRANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct oauth2_conf;
struct token;

struct oauth2_grant {
	const char	*name;		/* as oauth2_grant says */
	bool		 stored;	/* a person's grant, in the token store */
	/*
	 * The token request's form (malloc'ed; the caller wipes it with
	 * oauth2_form_free) for c at time now; have is what the store holds.
	 * NULL with err.
	 */
	char		*(*request)(const struct oauth2_conf *c,
			    const struct token *have, int64_t now, char *err,
			    size_t errlen);
};

const struct oauth2_grant *oauth2_grant_of(const struct oauth2_conf *c);

/* The modules' requests. */
char	*oauth2_client_request(const struct oauth2_conf *c,
	    const struct token *have, int64_t now, char *err, size_t errlen);
char	*oauth2_sa_request(const struct oauth2_conf *c,
	    const struct token *have, int64_t now, char *err, size_t errlen);

/*
 * At load: the assertion key of client_credentials (oauth2_client_key,
 * read under the secret-file rules, with oauth2_client_certificate), and
 * the service account's JSON key file.  -1 with err.
 */
int	oauth2_client_load(struct oauth2_conf *c, char *err, size_t errlen);
int	oauth2_sa_load(struct oauth2_conf *c, char *err, size_t errlen);

/*
 * One token request (form, which is wiped and freed) sent now to c's token
 * endpoint on a private loop, and its answer: 0 with t, or -1 with the
 * OAuth2 error code (or "") and why.  For the command line only.
 */
int	oauth2_request_once(const struct oauth2_conf *c, char *form,
	    struct token *t, char *code, size_t codelen, char *why,
	    size_t whylen);

/* mailproxy -A SERVICE of a code grant (oauth2_code.c): 0 when the store
 * was written. */
int	oauth2_code_authorize(const struct oauth2_conf *c, const char *name);

/*
 * mailproxy -T for a grant that needs no store: one token fetched now, on
 * a private loop, into out.  Its length, or -1 with why.
 */
int	oauth2_fetch_once(const struct oauth2_conf *c, char *out, size_t cap,
	    char *why, size_t whylen);

#endif
