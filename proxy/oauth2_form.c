/*
 * oauth2_form: what every grant shares on the wire: the form-encoded token
 * request and the token endpoint's JSON answer (see oauth2.h).
 */
#include "oauth2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/mem.h>

#include "config.h"
#include "tokenstore.h"

/* ---- requests and answers ------------------------------------------------ */

static int
form_encode(char *out, const char *in)
{
	static const char hex[] = "0123456789ABCDEF";
	char *o = out;

	for (const unsigned char *c = (const unsigned char *)in; *c; c++) {
		if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
		    (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' ||
		    *c == '_' || *c == '~')
			*o++ = (char)*c;
		else if (*c == ' ')
			*o++ = '+';
		else {
			*o++ = '%';
			*o++ = hex[*c >> 4];
			*o++ = hex[*c & 15];
		}
	}
	*o = '\0';
	return (int)(o - out);
}

void
oauth2_form_free(char *form)
{
	if (form != NULL) {
		OPENSSL_cleanse(form, strlen(form));
		free(form);
	}
}

int
oauth2_form_add(char **form, const char *key, const char *value)
{
	size_t have = *form != NULL ? strlen(*form) : 0;
	size_t need = have + 1 + strlen(key) * 3 + 1 + strlen(value) * 3 + 1;
	char *next = malloc(need), *p;

	if (next == NULL) {
		oauth2_form_free(*form);
		*form = NULL;
		return -1;
	}
	p = next;
	if (have > 0) {
		memcpy(p, *form, have);
		p += have;
		*p++ = '&';
	}
	p += form_encode(p, key);
	*p++ = '=';
	form_encode(p, value);
	oauth2_form_free(*form);
	*form = next;
	return 0;
}

int
oauth2_form_client(char **form, const struct oauth2_conf *c)
{
	if (oauth2_form_add(form, "client_id", c->client_id) < 0)
		return -1;
	if (c->client_secret != NULL)
		return oauth2_form_add(form, "client_secret", c->client_secret);
	return 0;
}

/* Printable, one line, no quotes: an endpoint's words go to the log. */
static void
printable(char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f ||
		    *s == '"')
			*s = '\'';
}

static const char *
json_str(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

int
oauth2_parse_token(int status, const char *body, size_t len, int64_t now,
    struct token *t, char *code, size_t codelen, char *why, size_t whylen)
{
	json_t *o = json_loadb(body, len, 0, NULL), *exp;
	const char *err, *desc, *access, *refresh;
	int rc = -1;

	token_clear(t);
	code[0] = '\0';
	if (o == NULL || !json_is_object(o)) {
		snprintf(why, whylen, "HTTP %d without a JSON object", status);
		json_decref(o);
		return -1;
	}
	err = json_str(o, "error");
	desc = json_str(o, "error_description");
	access = json_str(o, "access_token");
	refresh = json_str(o, "refresh_token");
	if (status == 200 && err == NULL && access != NULL && *access != '\0' &&
	    strlen(access) < TOKEN_MAX && (refresh == NULL ||
	    strlen(refresh) < TOKEN_MAX)) {
		exp = json_object_get(o, "expires_in");
		/* Some endpoints send expires_in as a string. */
		int64_t in = json_is_integer(exp) ? json_integer_value(exp) :
		    json_is_string(exp) ? strtoll(json_string_value(exp), NULL,
		    10) : 3600;
		/* Bounded: no overflow below, and a token that lives at least
		 * a few seconds (one is handed out with a second left). */
		in = in < 3 ? 3 : in > 366 * 86400 ? 366 * 86400 : in;
		t->access = strdup(access);
		t->refresh = refresh != NULL && *refresh != '\0' ?
		    strdup(refresh) : NULL;
		t->obtained_at = now;
		t->expires_at = now + in;
		if (t->access == NULL || (refresh != NULL && *refresh != '\0' &&
		    t->refresh == NULL)) {
			token_clear(t);
			snprintf(why, whylen, "out of memory");
		} else
			rc = 0;
	} else {
		snprintf(code, codelen, "%s", err != NULL ? err : "");
		printable(code);
		snprintf(why, whylen, "HTTP %d%s%s%s%s", status,
		    err != NULL ? " " : "", err != NULL ? err : "",
		    desc != NULL ? ": " : err == NULL && status == 200 ?
		    " without an access_token" : "", desc != NULL ? desc : "");
		printable(why);
	}
	json_decref(o);
	return rc;
}

