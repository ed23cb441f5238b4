/*
 * oauth2_client: the client credentials grant (RFC 6749 section 4.4), the
 * application's own token with no person and no store.  The client proves
 * itself with oauth2_client_secret_file, or with a client assertion (RFC
 * 7523 section 2.2): a JWT signed with oauth2_client_key, which names the
 * registered oauth2_client_certificate by its thumbprint.  Entra ID
 * recommends the certificate: the key never leaves this box.
 */
#include "oauth2_grant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/mem.h>

#include "config.h"
#include "jwt.h"
#include "oauth2.h"
#include "secret.h"

#define ASSERTION_TYPE	"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
/* An assertion lives 5 minutes (Entra ID takes at most 10): long enough
 * for a slow endpoint, short enough that a copy is soon worthless. */
#define ASSERTION_LIFE	300

int
oauth2_client_load(struct oauth2_conf *c, char *err, size_t errlen)
{
	char pem[SECRET_MAX + 1], why[300];
	ssize_t n;

	if (c->client_key == NULL)
		return 0;
	/* The private key: the rules of every secret file. */
	if ((n = secret_read_raw(c->client_key, pem, sizeof(pem) - 1, why,
	    sizeof(why))) < 0) {
		snprintf(err, errlen, "oauth2_client_key: %s", why);
		return -1;
	}
	pem[n] = '\0';
	jwt_key_free(c->key);
	c->key = jwt_key_from_pem(pem, (size_t)n, why, sizeof(why));
	OPENSSL_cleanse(pem, sizeof(pem));
	if (c->key == NULL) {
		snprintf(err, errlen, "oauth2_client_key %s: %s", c->client_key,
		    why);
		return -1;
	}
	if (jwt_key_attach_cert(c->key, c->client_cert, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "oauth2_client_certificate: %s", why);
		return -1;
	}
	return 0;
}

/* The signed assertion: iss = sub = the client, aud = the token URL. */
static char *
assertion(const struct oauth2_conf *c, int64_t now, char *err, size_t errlen)
{
	char jti[32];
	json_t *claims;
	char *jwt;

	jwt_new_id(jti);
	claims = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "iss",
	    c->client_id, "sub", c->client_id, "aud", c->token_url, "jti", jti,
	    "iat", (json_int_t)now, "nbf", (json_int_t)now, "exp",
	    (json_int_t)(now + ASSERTION_LIFE));
	if (claims == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/* PS256 is what Entra ID documents for RSA; RS256 elsewhere. */
	jwt = jwt_sign(c->key, jwt_key_alg(c->key, c->provider ==
	    OAUTH2_MICROSOFT), claims, err, errlen);
	json_decref(claims);
	return jwt;
}

char *
oauth2_client_request(const struct oauth2_conf *c, const struct token *have,
    int64_t now, char *err, size_t errlen)
{
	char *form = NULL, *jwt = NULL;

	(void)have;
	if (c->key != NULL && (jwt = assertion(c, now, err, errlen)) == NULL)
		return NULL;
	if (oauth2_form_add(&form, "grant_type", "client_credentials") < 0 ||
	    oauth2_form_add(&form, "client_id", c->client_id) < 0 ||
	    (c->scope != NULL && oauth2_form_add(&form, "scope", c->scope) < 0) ||
	    (jwt != NULL && (oauth2_form_add(&form, "client_assertion_type",
	    ASSERTION_TYPE) < 0 || oauth2_form_add(&form, "client_assertion",
	    jwt) < 0)) || (jwt == NULL && c->client_secret != NULL &&
	    oauth2_form_add(&form, "client_secret", c->client_secret) < 0))
		snprintf(err, errlen, "out of memory");
	if (jwt != NULL)
		OPENSSL_cleanse(jwt, strlen(jwt));
	free(jwt);
	return form;
}
