/*
 * oauth2_grant: the table of grants, the person's grants' renewal with the
 * store's refresh token, and -T's one-off fetch; see oauth2_grant.h.
 */
#include "oauth2_grant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>
#include <openssl/mem.h>

#include "config.h"
#include "https.h"
#include "oauth2.h"
#include "oauth2_alert.h"
#include "resolve.h"
#include "tokenstore.h"

/* device and code: both leave a refresh token in the store. */
static char *
refresh_request(const struct oauth2_conf *c, const struct token *have,
    int64_t now, char *err, size_t errlen)
{
	char *form = NULL;

	(void)now;
	if (have->refresh == NULL) {
		snprintf(err, errlen, "no refresh token");
		return NULL;
	}
	if (oauth2_form_add(&form, "grant_type", "refresh_token") < 0 ||
	    oauth2_form_add(&form, "refresh_token", have->refresh) < 0 ||
	    oauth2_form_client(&form, c) < 0 ||
	    (c->scope != NULL && oauth2_form_add(&form, "scope", c->scope) < 0))
		snprintf(err, errlen, "out of memory");
	return form;
}

static const struct oauth2_grant grants[] = {
	[OAUTH2_GRANT_DEVICE] = { "device", true, refresh_request },
	[OAUTH2_GRANT_CODE] = { "code", true, refresh_request },
	[OAUTH2_GRANT_CLIENT_CREDENTIALS] = { "client_credentials", false,
	    oauth2_client_request },
	[OAUTH2_GRANT_SERVICE_ACCOUNT] = { "service_account", false,
	    oauth2_sa_request },
};

const struct oauth2_grant *
oauth2_grant_of(const struct oauth2_conf *c)
{
	return &grants[c->grant > OAUTH2_GRANT_AUTO && c->grant <=
	    OAUTH2_GRANT_SERVICE_ACCOUNT ? c->grant : OAUTH2_GRANT_DEVICE];
}

/* ---- one request, waited for (-T, -A) ----------------------------------- */

struct once {
	bool		 done;
	struct token	*tok;
	char		*code;
	size_t		 codelen;
	char		*why;
	size_t		 whylen;
	int		 rc;
};

static void
answered_once(void *arg, const struct https_result *r)
{
	struct once *o = arg;

	o->done = true;
	if (r->status == 0)
		snprintf(o->why, o->whylen, "token endpoint: %s", r->error);
	else
		o->rc = oauth2_parse_token(r->status, r->body, r->len,
		    time(NULL), o->tok, o->code, o->codelen, o->why, o->whylen);
}

int
oauth2_request_once(const struct oauth2_conf *c, char *form, struct token *t,
    char *code, size_t codelen, char *why, size_t whylen)
{
	struct once o = { false, t, code, codelen, why, whylen, -1 };
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct resolver *res = NULL;
	struct https_req *req = NULL;
	SSL_CTX *ctx = NULL;

	code[0] = '\0';
	snprintf(why, whylen, "cannot initialise libev");
	if (loop != NULL && (res = resolver_new(loop,
	    getenv("MAILPROXY_DNS_SERVERS"), why, whylen)) != NULL &&
	    (ctx = https_ctx_new(c->ca, why, whylen)) != NULL)
		req = https_post(loop, ctx, res, c->token_url, form,
		    https_proxy_for(c->token_url), 30., answered_once, &o, why,
		    whylen);
	oauth2_form_free(form);
	while (req != NULL && !o.done)
		ev_run(loop, EVRUN_ONCE);
	SSL_CTX_free(ctx);
	if (res != NULL)
		resolver_free(loop, res);
	if (loop != NULL)
		ev_loop_destroy(loop);
	return o.rc;
}

int
oauth2_fetch_once(const struct oauth2_conf *c, char *out, size_t cap,
    char *why, size_t whylen)
{
	struct token t = { 0 };
	char *form, code[64];
	int n = -1;

	if ((form = oauth2_grant_of(c)->request(c, &t, time(NULL), why,
	    whylen)) == NULL)
		return -1;
	if (oauth2_request_once(c, form, &t, code, sizeof(code), why,
	    whylen) == 0 && strlen(t.access) < cap) {
		n = (int)strlen(t.access);
		memcpy(out, t.access, (size_t)n + 1);
	} else if (code[0] != '\0') {
		/* For the operator: what it means, what to do. */
		char reason[300], action[300];
		size_t have = strlen(why);
		oauth2_classify(code, why, c->grant, "", reason, sizeof(reason),
		    action, sizeof(action));
		snprintf(why + have, whylen - have, " (%s; %s)", reason, action);
	}
	token_clear(&t);
	return n;
}
