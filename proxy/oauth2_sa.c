/*
 * oauth2_sa: a Google service account with domain-wide delegation, the
 * JWT bearer grant (RFC 7523 section 2.1): an assertion signed RS256 with
 * the key of Google's JSON key file, issued by the service account
 * (client_email) for the mailbox (sub) and the scope, is exchanged for an
 * access token of that mailbox.  No person, no store, no refresh token.
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

#define GRANT_JWT	"urn:ietf:params:oauth:grant-type:jwt-bearer"
#define SA_FILE_MAX	(16 * 1024)	/* Google's are about 2.3 KB */
#define ASSERTION_LIFE	600		/* Google takes at most an hour */

static const char *
str(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The parts of the key file that matter, from its JSON. */
static int
parse(struct oauth2_conf *c, json_t *o, char *err, size_t errlen)
{
	const char *type = str(o, "type"), *email = str(o, "client_email");
	const char *key = str(o, "private_key"), *uri = str(o, "token_uri");
	char why[200];

	if (type == NULL || strcmp(type, "service_account") != 0 ||
	    email == NULL || key == NULL) {
		snprintf(err, errlen, "not a service account key file (type "
		    "\"service_account\", client_email and private_key needed)");
		return -1;
	}
	if ((c->key = jwt_key_from_pem(key, strlen(key), why,
	    sizeof(why))) == NULL) {
		snprintf(err, errlen, "private_key: %s", why);
		return -1;
	}
	if (jwt_key_alg(c->key, 0) != JWT_RS256) {
		snprintf(err, errlen, "private_key: Google signs service "
		    "accounts with RSA keys");
		return -1;
	}
	if ((c->sa_email = strdup(email)) == NULL ||
	    (c->token_url == NULL && uri != NULL && strncmp(uri, "https://",
	    8) == 0 && (c->token_url = strdup(uri)) == NULL)) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

int
oauth2_sa_load(struct oauth2_conf *c, char *err, size_t errlen)
{
	char *text = malloc(SA_FILE_MAX + 1), why[300];
	json_t *o = NULL;
	json_error_t je;
	ssize_t n;
	int rc = -1;

	if (text == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* The rules of every secret file: it holds the private key. */
	if ((n = secret_read_raw(c->sa_file, text, SA_FILE_MAX, why,
	    sizeof(why))) < 0)
		snprintf(err, errlen, "%s", why);
	else if ((o = json_loadb(text, (size_t)n, 0, &je)) == NULL ||
	    !json_is_object(o))
		snprintf(err, errlen, "%s: not a JSON object (line %d)",
		    c->sa_file, je.line);
	else if (parse(c, o, why, sizeof(why)) < 0)
		snprintf(err, errlen, "%s: %s", c->sa_file, why);
	else
		rc = 0;
	json_decref(o);		/* jansson wipes on free (tokenstore) */
	OPENSSL_cleanse(text, SA_FILE_MAX + 1);
	free(text);
	return rc;
}

char *
oauth2_sa_request(const struct oauth2_conf *c, const struct token *have,
    int64_t now, char *err, size_t errlen)
{
	char *form = NULL, *jwt, jti[32];
	json_t *claims;

	(void)have;
	jwt_new_id(jti);
	claims = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "iss",
	    c->sa_email, "sub", c->subject != NULL ? c->subject : "", "scope",
	    c->scope != NULL ? c->scope : "", "aud", c->token_url, "jti", jti,
	    "iat", (json_int_t)now, "exp", (json_int_t)(now + ASSERTION_LIFE));
	if (claims == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	jwt = jwt_sign(c->key, JWT_RS256, claims, err, errlen);
	json_decref(claims);
	if (jwt == NULL)
		return NULL;
	if (oauth2_form_add(&form, "grant_type", GRANT_JWT) < 0 ||
	    oauth2_form_add(&form, "assertion", jwt) < 0)
		snprintf(err, errlen, "out of memory");
	if (jwt != NULL)
		OPENSSL_cleanse(jwt, strlen(jwt));
	free(jwt);
	return form;
}
