/*
 * oauth2_device: mailproxy -A SERVICE, the device authorization grant
 * (RFC 8628) for a headless box.
 *
 * It asks the device endpoint for a user code, prints where to enter it,
 * then polls the token endpoint at the interval the server gives
 * (authorization_pending: go on; slow_down: 5 s more, section 3.5) until a
 * person signs in somewhere else, the code expires or the request is
 * declined; then it writes the token store.  A command-line run, so it
 * waits on its own private loop; the running proxy picks the new store up
 * on reload (watch_files makes that automatic).
 */
#include "oauth2_device.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/mem.h>

#include "config.h"
#include "https.h"
#include "oauth2.h"
#include "oauth2_grant.h"
#include "resolve.h"
#include "tokenstore.h"

#define GRANT_DEVICE	"urn:ietf:params:oauth:grant-type:device_code"

struct exchange {
	bool		 done;
	int		 status;
	char		*body;	/* malloc'ed copy, NUL-terminated */
	size_t		 len;
	char		 error[300];
};

static void
exchanged(void *arg, const struct https_result *r)
{
	struct exchange *x = arg;

	x->done = true;
	x->status = r->status;
	if (r->status == 0)
		snprintf(x->error, sizeof(x->error), "%s", r->error);
	else if ((x->body = malloc(r->len + 1)) != NULL) {
		memcpy(x->body, r->body, r->len);
		x->body[r->len] = '\0';
		x->len = r->len;
	} else {
		x->status = 0;
		snprintf(x->error, sizeof(x->error), "out of memory");
	}
}

static void
exchange_free(struct exchange *x)
{
	if (x->body != NULL) {
		OPENSSL_cleanse(x->body, x->len);
		free(x->body);
	}
	memset(x, 0, sizeof(*x));
}

/* One POST, waited for on the private loop. */
static int
post(struct ev_loop *loop, SSL_CTX *ctx, struct resolver *res, const char *url,
    char *form, struct exchange *x)
{
	struct https_req *req;

	exchange_free(x);
	req = https_post(loop, ctx, res, url, form, https_proxy_for(url), 30.,
	    exchanged, x, x->error, sizeof(x->error));
	oauth2_form_free(form);
	if (req == NULL)
		return -1;
	while (!x->done)
		ev_run(loop, EVRUN_ONCE);
	return x->status == 0 ? -1 : 0;
}

/*
 * What a device endpoint may ask for, within reason: its numbers come from
 * the network and feed time arithmetic (a huge one overflowed it).  A code
 * lives minutes (RFC 8628 suggests 1800 s); a day is plenty.  Checks more
 * than a minute apart would only make the person wait for nothing.
 */
#define DEVICE_EXPIRES_MAX	86400
#define DEVICE_INTERVAL_MAX	60

struct grant {
	char	*device_code;
	char	*user_code;
	char	*uri;
	char	*uri_complete;
	long	 expires_in;
	long	 interval;
};

static void
grant_free(struct grant *g)
{
	if (g->device_code != NULL)	/* it could still fetch a token */
		OPENSSL_cleanse(g->device_code, strlen(g->device_code));
	free(g->device_code);
	free(g->user_code);
	free(g->uri);
	free(g->uri_complete);
	memset(g, 0, sizeof(*g));
}

static char *
dup_member(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

/* A positive number member (some servers send strings), else dflt;
 * never above max. */
static long
int_member(json_t *o, const char *key, long dflt, long max)
{
	json_t *v = json_object_get(o, key);
	long long n = json_is_integer(v) ? (long long)json_integer_value(v) :
	    json_is_string(v) ? strtoll(json_string_value(v), NULL, 10) : 0;

	return n <= 0 ? dflt : n > max ? max : (long)n;
}

/* The device endpoint's answer (Google names it verification_url). */
static int
parse_grant(const struct exchange *x, struct grant *g, char *why,
    size_t whylen)
{
	json_t *o = json_loadb(x->body, x->len, 0, NULL);

	if (o == NULL || !json_is_object(o) || x->status != 200) {
		struct token t = { 0 };
		char code[64];
		(void)oauth2_parse_token(x->status, x->body, x->len, 0, &t, code,
		    sizeof(code), why, whylen);
		json_decref(o);
		return -1;
	}
	g->device_code = dup_member(o, "device_code");
	g->user_code = dup_member(o, "user_code");
	if ((g->uri = dup_member(o, "verification_uri")) == NULL)
		g->uri = dup_member(o, "verification_url");
	g->uri_complete = dup_member(o, "verification_uri_complete");
	g->expires_in = int_member(o, "expires_in", 900, DEVICE_EXPIRES_MAX);
	g->interval = int_member(o, "interval", 5, LONG_MAX);
	if (g->interval > DEVICE_INTERVAL_MAX) {
		fprintf(stderr, "mailproxy: the device endpoint asks for a "
		    "check every %ld s; checking every %d s\n", g->interval,
		    DEVICE_INTERVAL_MAX);
		g->interval = DEVICE_INTERVAL_MAX;
	}
	json_decref(o);
	if (g->device_code == NULL || g->user_code == NULL || g->uri == NULL) {
		snprintf(why, whylen, "the device endpoint's answer lacks "
		    "device_code, user_code or verification_uri");
		return -1;
	}
	return 0;
}

/*
 * The store -A names: "SERVICE" (its oauth2_token_store) or
 * "SERVICE:ACCOUNT" (an account of that accounts service).  NULL with why.
 */
static const struct oauth2_conf *
find_store(const struct config *cf, const char *arg, char *why, size_t len)
{
	const char *colon = strchr(arg, ':');
	size_t sl = colon != NULL ? (size_t)(colon - arg) : strlen(arg);
	const struct service *svc = NULL;

	for (size_t i = 0; i < cf->nservices && svc == NULL; i++)
		if (strlen(cf->services[i].name) == sl &&
		    strncmp(cf->services[i].name, arg, sl) == 0)
			svc = &cf->services[i];
	if (svc == NULL) {
		snprintf(why, len, "no service [%.*s] in the configuration",
		    (int)sl, arg);
		return NULL;
	}
	if (colon == NULL) {
		if (svc->oauth2.store == NULL)
			snprintf(why, len, "[%s] has no oauth2_token_store%s",
			    svc->name, svc->upstream_auth == AUTH_ACCOUNTS ?
			    " (an account's: -A SERVICE:ACCOUNT)" : "");
		return svc->oauth2.store != NULL ? &svc->oauth2 : NULL;
	}
	if (svc->upstream_auth != AUTH_ACCOUNTS) {
		snprintf(why, len, "[%s] is not an upstream_auth = accounts "
		    "service", svc->name);
		return NULL;
	}
	for (size_t i = 0; i < cf->naccounts; i++)
		if (strcmp(cf->accounts[i].name, colon + 1) == 0) {
			if (cf->accounts[i].oauth2.store == NULL)
				snprintf(why, len, "[account:%s] has no "
				    "oauth2_token_store", colon + 1);
			return cf->accounts[i].oauth2.store != NULL ?
			    &cf->accounts[i].oauth2 : NULL;
		}
	snprintf(why, len, "no [account:%s] in the configuration", colon + 1);
	return NULL;
}

static int
save(const char *store, const struct token *t)
{
	char why[300];

	if (token_write(store, t, NULL, why, sizeof(why)) < 0) {
		fprintf(stderr, "mailproxy: %s\n", why);
		return -1;
	}
	printf("authorized: %s written (access token valid for %lld s)\n",
	    store, (long long)(t->expires_at - t->obtained_at));
	return 0;
}

/* Polls the token endpoint until the person acts or the code expires. */
static int
poll_token(struct ev_loop *loop, SSL_CTX *ctx, struct resolver *res,
    const struct oauth2_conf *c, const char *name, struct grant *g)
{
	time_t deadline = time(NULL) + g->expires_in;
	struct exchange x = { 0 };
	struct token t = { 0 };
	char code[64], why[300];
	int rc = -1;

	for (;;) {
		struct timespec wait = { g->interval, 0 };
		char *form = NULL;
		nanosleep(&wait, NULL);
		if (time(NULL) >= deadline) {
			fprintf(stderr, "mailproxy: the code expired before it was "
			    "entered; run mailproxy -A %s again\n", name);
			break;
		}
		if (oauth2_form_add(&form, "grant_type", GRANT_DEVICE) < 0 ||
		    oauth2_form_add(&form, "device_code", g->device_code) < 0 ||
		    oauth2_form_client(&form, c) < 0) {
			fprintf(stderr, "mailproxy: out of memory\n");
			break;
		}
		if (post(loop, ctx, res, c->token_url, form, &x) < 0) {
			/* The network may come back before the code expires. */
			fprintf(stderr, "mailproxy: token endpoint: %s (trying "
			    "again)\n", x.error);
			continue;
		}
		if (oauth2_parse_token(x.status, x.body, x.len, time(NULL), &t,
		    code, sizeof(code), why, sizeof(why)) == 0) {
			rc = save(c->store, &t);
			break;
		}
		if (strcmp(code, "authorization_pending") == 0)
			continue;
		if (strcmp(code, "slow_down") == 0) {
			if (g->interval < DEVICE_INTERVAL_MAX)
				g->interval += 5;
			continue;
		}
		if (strcmp(code, "expired_token") == 0)
			fprintf(stderr, "mailproxy: the code expired before it was "
			    "entered; run mailproxy -A %s again\n", name);
		else if (strcmp(code, "access_denied") == 0)
			fprintf(stderr, "mailproxy: the sign-in was declined; "
			    "nothing was written\n");
		else if (x.status >= 500 || x.status == 429) {
			fprintf(stderr, "mailproxy: token endpoint: %s (trying "
			    "again)\n", why);
			continue;
		} else
			fprintf(stderr, "mailproxy: token endpoint: %s\n", why);
		break;
	}
	exchange_free(&x);
	token_clear(&t);
	return rc;
}

int
oauth2_authorize(const struct config *cf, const char *name)
{
	const struct oauth2_conf *c;
	struct ev_loop *loop = NULL;
	struct resolver *res = NULL;
	struct exchange x = { 0 };
	struct grant g = { 0 };
	SSL_CTX *ctx = NULL;
	char *form = NULL, why[300];
	int rc = 1;

	if ((c = find_store(cf, name, why, sizeof(why))) == NULL) {
		fprintf(stderr, "mailproxy: -A %s: %s\n", name, why);
		return 1;
	}
	if (c->grant == OAUTH2_GRANT_CODE) {	/* oauth2_code.c */
		token_json_wipe_on_free();
		return oauth2_code_authorize(c, name);
	}
	token_json_wipe_on_free();
	if ((loop = ev_loop_new(EVFLAG_AUTO)) == NULL ||
	    (res = resolver_new(loop, getenv("MAILPROXY_DNS_SERVERS"), why,
	    sizeof(why))) == NULL ||
	    (ctx = https_ctx_new(c->ca, why, sizeof(why))) == NULL) {
		fprintf(stderr, "mailproxy: %s\n", loop == NULL ?
		    "cannot initialise libev" : why);
		goto out;
	}
	if (oauth2_form_add(&form, "client_id", c->client_id) < 0 ||
	    (c->scope != NULL && oauth2_form_add(&form, "scope", c->scope) < 0)) {
		fprintf(stderr, "mailproxy: out of memory\n");
		goto out;
	}
	if (post(loop, ctx, res, c->device_url, form, &x) < 0) {
		fprintf(stderr, "mailproxy: device endpoint %s: %s\n",
		    c->device_url, x.error);
		goto out;
	}
	if (parse_grant(&x, &g, why, sizeof(why)) < 0) {
		fprintf(stderr, "mailproxy: device endpoint %s: %s\n",
		    c->device_url, why);
		goto out;
	}
	printf("To let mailproxy use the account of [%s], sign in at\n"
	    "  %s\nand enter the code\n  %s\n", name, g.uri, g.user_code);
	if (g.uri_complete != NULL)
		printf("(or open %s)\n", g.uri_complete);
	printf("The code is valid for %ld minutes; waiting...\n",
	    (g.expires_in + 59) / 60);
	fflush(stdout);
	rc = poll_token(loop, ctx, res, c, name, &g) == 0 ? 0 : 1;
out:
	exchange_free(&x);
	grant_free(&g);
	SSL_CTX_free(ctx);
	if (res != NULL)
		resolver_free(loop, res);
	if (loop != NULL)
		ev_loop_destroy(loop);
	return rc;
}
