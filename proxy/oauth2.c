/*
 * oauth2: the token lifecycle of each oauth2_token_store; see oauth2.h.
 *
 * The supervisor keeps one struct store per store file (by path, for the
 * life of the process, so a table entry never changes meaning under a
 * draining worker) and publishes each store's access token in the shared
 * table entry of the same index.
 */
#include "oauth2.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <jansson.h>
#include <openssl/mem.h>
#include <openssl/rand.h>

#include "config.h"
#include "https.h"
#include "jwt.h"
#include "log.h"
#include "oauth2_alert.h"
#include "oauth2_grant.h"
#include "resolve.h"
#include "seqlock.h"
#include "tokenstore.h"

const char *const oauth2_state_names[] = { "unused", "missing", "fetching",
    "valid", "retrying", "revoked" };

/* ---- the shared table ---------------------------------------------------- */

struct tslot {
	uint32_t	 seq;		/* seqlock; the supervisor writes */
	int32_t		 state;		/* enum oauth2_state */
	int64_t		 expires_at;	/* of token, Unix seconds */
	uint64_t	 refreshes;
	uint64_t	 failures;
	uint32_t	 len;
	char		 token[TOKEN_MAX];
};

static struct tslot	*table;		/* [OAUTH2_MAX_STORES] */

int
oauth2_init(void)
{
	void *p = mmap(NULL, sizeof(struct tslot) * OAUTH2_MAX_STORES,
	    PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return -1;
	table = p;
	return 0;
}

/*
 * Reads entry slot: the token into out when out is not NULL (cap bytes),
 * else only whether there is one.  What a reader is told, see oauth2.h.
 */
static enum oauth2_take
read_slot(int slot, char *out, size_t cap, size_t *len, char *why,
    size_t whylen)
{
	struct tslot *t;
	uint32_t seq;
	int32_t state;
	int64_t expires;
	size_t n;
	int tries = 0;
	bool ok;

	*len = 0;
	if (table == NULL || slot < 0 || slot >= OAUTH2_MAX_STORES) {
		snprintf(why, whylen, "no token store");
		return OAUTH2_UNAVAILABLE;
	}
	t = &table[slot];
	do {
		seq = seq_read_begin(&t->seq);
		state = __atomic_load_n(&t->state, __ATOMIC_RELAXED);
		expires = __atomic_load_n(&t->expires_at, __ATOMIC_RELAXED);
		n = __atomic_load_n(&t->len, __ATOMIC_RELAXED);
		if (n >= TOKEN_MAX || (out != NULL && n >= cap))
			n = 0;
		if (out != NULL)
			memcpy(out, t->token, n);
	} while (!(ok = seq_read_ok(&t->seq, seq)) && seq_read_again(&tries));
	if (!ok) {
		/* The supervisor is stuck or died mid-write: no token yet,
		 * as while a refresh runs. */
		if (out != NULL)
			OPENSSL_cleanse(out, n);
		snprintf(why, whylen, "the token table is being written");
		return OAUTH2_PENDING;
	}
	if (n > 0 && expires > (int64_t)time(NULL) + 1) {
		if (out != NULL)
			out[n] = '\0';
		*len = n;
		return OAUTH2_TOKEN;
	}
	if (out != NULL)
		OPENSSL_cleanse(out, n);
	switch (state) {
	case OAUTH2_FETCHING:
	case OAUTH2_VALID:	/* expired this very second: the refresh runs */
	case OAUTH2_RETRYING:
		snprintf(why, whylen, "the access token is being refreshed");
		return OAUTH2_PENDING;
	case OAUTH2_REVOKED:
		snprintf(why, whylen, "the token store's grant was refused by "
		    "the provider: run mailproxy -A");
		return OAUTH2_UNAVAILABLE;
	default:
		snprintf(why, whylen, "no usable token store: run mailproxy -A");
		return OAUTH2_UNAVAILABLE;
	}
}

enum oauth2_take
oauth2_take(int slot, char *out, size_t cap, size_t *len, char *why,
    size_t whylen)
{
	return read_slot(slot, out, cap, len, why, whylen);
}

enum oauth2_take
oauth2_ready(int slot, char *why, size_t whylen)
{
	size_t len;

	return read_slot(slot, NULL, 0, &len, why, whylen);
}

void
oauth2_stats(int slot, struct oauth2_stats *st)
{
	struct tslot *t;

	memset(st, 0, sizeof(*st));
	if (table == NULL || slot < 0 || slot >= OAUTH2_MAX_STORES)
		return;
	t = &table[slot];
	st->state = (enum oauth2_state)__atomic_load_n(&t->state,
	    __ATOMIC_RELAXED);
	st->refreshes = __atomic_load_n(&t->refreshes, __ATOMIC_RELAXED);
	st->failures = __atomic_load_n(&t->failures, __ATOMIC_RELAXED);
	st->expires_in = __atomic_load_n(&t->expires_at, __ATOMIC_RELAXED) -
	    (int64_t)time(NULL);
}

/* ---- the supervisor's stores --------------------------------------------- */

struct store {
	char			*path;	/* the store file, or app:NAME */
	struct ev_loop		*loop;	/* the supervisor's */
	struct config		*cf;	/* a reference: c and name live in it */
	const struct oauth2_conf *c;
	char			 name[300];	/* the service, or account:NAME */
	char			 authorize[300];	/* -A's argument */
	SSL_CTX			*ctx;
	struct token		 tok;
	struct file_id		 id;	/* of the file as we last saw it */
	ev_timer		 timer;
	struct https_req	*req;
	int			 tries;	/* failed refreshes in a row */
	bool			 told[3];	/* enum incident, told */
	bool			 active;	/* named by the running config */
};

static struct store	 stores[OAUTH2_MAX_STORES];
static int		 nstores;
static struct resolver	*resolver;

static void	refresh(EV_P_ struct store *st);

/* What a person is told of (oauth2_alert_command): once each, and once
 * when it is over. */
enum incident { INC_REFUSED, INC_LAPSING, INC_CERT };

#define LAPSE_WARN	600		/* s of token left, refreshes failing */
#define CERT_WARN	(14 * 86400)	/* s of assertion certificate left */

static int
store_index(const struct store *st)
{
	return (int)(st - stores);
}

/* A person's grant kept in a store file, not an application's own. */
static bool
stored(const struct store *st)
{
	return oauth2_grant_of(st->c)->stored;
}

/* The token and state into the table entry. */
static void
publish(struct store *st, enum oauth2_state state)
{
	struct tslot *t = &table[store_index(st)];
	size_t n = st->tok.access != NULL ? strlen(st->tok.access) : 0;

	seq_write_begin(&t->seq);
	__atomic_store_n(&t->state, state, __ATOMIC_RELAXED);
	__atomic_store_n(&t->expires_at, n > 0 ? st->tok.expires_at : 0,
	    __ATOMIC_RELAXED);
	OPENSSL_cleanse(t->token, sizeof(t->token));
	memcpy(t->token, st->tok.access != NULL ? st->tok.access : "", n);
	__atomic_store_n(&t->len, (uint32_t)n, __ATOMIC_RELAXED);
	seq_write_end(&t->seq);
}

static enum oauth2_state
published_state(const struct store *st)
{
	return (enum oauth2_state)table[store_index(st)].state;
}

static void
count(struct store *st, bool ok)
{
	struct tslot *t = &table[store_index(st)];

	__atomic_add_fetch(ok ? &t->refreshes : &t->failures, 1,
	    __ATOMIC_RELAXED);
}

static bool
token_valid(const struct token *t, int64_t now)
{
	return t->access != NULL && t->expires_at > now;
}

/*
 * When to refresh: with at most a tenth of the lifetime or 60 s left, but
 * not later than halfway (a token living seconds in a test).
 */
static double
refresh_delay(const struct token *t, int64_t now)
{
	int64_t life, margin;

	if (!token_valid(t, now))
		return 0;
	life = t->expires_at - (t->obtained_at > 0 && t->obtained_at <
	    t->expires_at ? t->obtained_at : now);
	margin = life / 10 > 60 ? life / 10 : 60;
	if (margin > life / 2)
		margin = life / 2;
	return t->expires_at - margin - now > 0 ?
	    (double)(t->expires_at - margin - now) : 0;
}

static void
schedule(EV_P_ struct store *st, double delay)
{
	ev_timer_stop(EV_A_ &st->timer);
	ev_timer_set(&st->timer, delay, 0.);
	ev_timer_start(EV_A_ &st->timer);
}

/* 1, 2, 4 ... 60 s, each drawn from [half, whole] so that stores (and
 * instances) that failed together do not retry together. */
static double
backoff(int tries)
{
	double base = tries >= 7 ? 60. : (double)(1 << (tries - 1));
	uint32_t r;

	if (base > 60.)
		base = 60.;
	RAND_bytes((uint8_t *)&r, sizeof(r));
	return base / 2 + base / 2 * ((double)r / 4294967295.);
}

/* Runs the alert command when an incident starts (failing) or ends. */
static void
tell(struct store *st, enum incident which, bool failing, const char *reason,
    const char *action)
{
	const char *colon = strchr(st->authorize, ':');
	char svc[300];

	if (st->told[which] == failing)
		return;
	st->told[which] = failing;
	snprintf(svc, sizeof(svc), "%.*s", colon != NULL ?
	    (int)(colon - st->authorize) : (int)strlen(st->authorize),
	    st->authorize);
	oauth2_alert_run(st->cf->oauth2_alert_command, svc, colon != NULL ?
	    colon + 1 : "", failing ? "failing" : "recovered", reason, action);
}

/* The certificate that assertions name, when it ends within 14 days. */
static void
check_certificate(struct store *st, int64_t now)
{
	int64_t end = st->c->key != NULL ? jwt_key_not_after(st->c->key) : 0;
	char reason[400];

	if (end == 0)
		return;
	if (end - now >= CERT_WARN) {
		tell(st, INC_CERT, false, "the client certificate was renewed",
		    "none");
		return;
	}
	snprintf(reason, sizeof(reason), "the client certificate %s %s %lld "
	    "days", st->c->client_cert, end > now ? "expires in" : "expired",
	    (long long)((end > now ? end - now : now - end) / 86400));
	if (!st->told[INC_CERT])
		log_warnx("event=oauth2-certificate-expiring svc=%s: %s",
		    st->name, reason);
	tell(st, INC_CERT, true, reason, "renew the client certificate: make "
	    "a new key and certificate, upload the certificate to the "
	    "application, point oauth2_client_certificate and "
	    "oauth2_client_key at them");
}

static void
failed(EV_P_ struct store *st, const char *code, const char *why)
{
	bool permanent = strcmp(code, "invalid_grant") == 0 ||
	    strcmp(code, "invalid_client") == 0 ||
	    strcmp(code, "unauthorized_client") == 0 ||
	    strcmp(code, "invalid_scope") == 0;
	int64_t now = time(NULL);
	char reason[400], action[300];
	double delay;

	count(st, false);
	if (permanent) {
		/* Retrying cannot help: a person must act. */
		oauth2_classify(code, why, st->c->grant, st->authorize, reason,
		    sizeof(reason), action, sizeof(action));
		log_errorx("event=oauth2-refresh-failed svc=%s store=%s "
		    "error=\"%s\": the provider refused the grant: %s; %s",
		    st->name, st->path, why, reason, action);
		publish(st, OAUTH2_REVOKED);
		tell(st, INC_REFUSED, true, reason, action);
		return;
	}
	delay = backoff(++st->tries);
	log_warnx("event=oauth2-refresh-failed svc=%s store=%s error=\"%s\" "
	    "retry_in=%.1fs token_valid_for=%llds", st->name, st->path, why,
	    delay, token_valid(&st->tok, now) ?
	    (long long)(st->tok.expires_at - now) : 0LL);
	publish(st, OAUTH2_RETRYING);
	schedule(EV_A_ st, delay);
	/* Failing long enough that the token lapses soon (or has). */
	if (st->tries >= 3 && (!token_valid(&st->tok, now) ||
	    st->tok.expires_at - now < LAPSE_WARN)) {
		snprintf(reason, sizeof(reason), "token requests fail (%s); the "
		    "access token %s", why, token_valid(&st->tok, now) ?
		    "lapses within 10 minutes" : "has lapsed");
		snprintf(action, sizeof(action), "check the way to %s (network, "
		    "DNS, https_proxy) and the provider's status", st->c->token_url);
		tell(st, INC_LAPSING, true, reason, action);
	}
}

/* A new token from the endpoint: kept, written, published, rescheduled. */
static void
refreshed(EV_P_ struct store *st, struct token *fresh)
{
	int64_t now = time(NULL);
	bool rotated = fresh->refresh != NULL && (st->tok.refresh == NULL ||
	    strcmp(fresh->refresh, st->tok.refresh) != 0);
	char err[300];

	if (fresh->refresh == NULL) {	/* not rotated: keep the one we had */
		fresh->refresh = st->tok.refresh;
		st->tok.refresh = NULL;
	}
	token_clear(&st->tok);
	st->tok = *fresh;
	memset(fresh, 0, sizeof(*fresh));
	st->tries = 0;
	count(st, true);
	publish(st, OAUTH2_VALID);
	/* At once: a rotated refresh token is the only valid one. */
	if (stored(st) && token_write(st->path, &st->tok, &st->id, err, sizeof(err)) < 0)
		log_errorx("event=oauth2-store-write-failed svc=%s %s%s",
		    st->name, err, rotated ? " (the rotated refresh token is "
		    "kept in memory only)" : "");
	log_info("event=oauth2-refreshed svc=%s expires_in=%llds rotated=%s",
	    st->name, (long long)(st->tok.expires_at - now),
	    rotated ? "yes" : "no");
	tell(st, INC_REFUSED, false, "a token was obtained again", "none");
	tell(st, INC_LAPSING, false, "a token was obtained again", "none");
	check_certificate(st, now);
	schedule(EV_A_ st, refresh_delay(&st->tok, now));
}

static void
answered(void *arg, const struct https_result *r)
{
	struct store *st = arg;
	struct ev_loop *loop = st->loop;
	struct token fresh = { 0 };
	char code[64], why[300];

	st->req = NULL;
	if (r->status == 0) {
		failed(loop, st, "", r->error);
		return;
	}
	if (oauth2_parse_token(r->status, r->body, r->len, time(NULL), &fresh,
	    code, sizeof(code), why, sizeof(why)) < 0) {
		failed(loop, st, code, why);
		return;
	}
	refreshed(loop, st, &fresh);
}

/* Another process (mailproxy -A, another instance) wrote the store. */
static void
reread(struct store *st)
{
	struct token t = { 0 };
	char err[300];
	int missing;

	if (!stored(st))
		return;		/* nothing kept: fetched anew */
	if (token_read(st->path, &t, &st->id, &missing, err, sizeof(err)) < 0) {
		if (missing)
			log_warnx("event=oauth2-no-store svc=%s store=%s: run "
			    "mailproxy -A %s", st->name, st->path, st->authorize);
		else
			log_errorx("event=oauth2-store-unreadable svc=%s %s",
			    st->name, err);
		if (st->tok.refresh == NULL && st->tok.access == NULL)
			publish(st, OAUTH2_MISSING);
		return;
	}
	token_clear(&st->tok);
	st->tok = t;
	st->tries = 0;
	log_info("event=oauth2-store-read svc=%s store=%s", st->name, st->path);
}

/* Refresh now, or publish and wait for the right time. */
static void
start(EV_P_ struct store *st)
{
	int64_t now = time(NULL);
	double delay = refresh_delay(&st->tok, now);

	if (token_valid(&st->tok, now))
		publish(st, OAUTH2_VALID);
	if (st->tok.refresh == NULL && stored(st)) {
		/* An access token alone: used until it ends, then said so. */
		if (!token_valid(&st->tok, now))
			publish(st, st->tok.access == NULL ? OAUTH2_MISSING :
			    OAUTH2_REVOKED);
		else
			schedule(EV_A_ st, (double)(st->tok.expires_at - now));
		return;
	}
	if (delay > 0)
		schedule(EV_A_ st, delay);
	else
		refresh(EV_A_ st);
}

static void
timer_cb(EV_P_ ev_timer *w, int revents)
{
	struct store *st = w->data;

	(void)revents;
	/* Someone else may have refreshed it already (a shared store). */
	if (stored(st) && token_file_changed(st->path, &st->id)) {
		reread(st);
		if (refresh_delay(&st->tok, time(NULL)) > 0) {
			start(EV_A_ st);
			return;
		}
	}
	refresh(EV_A_ st);
}

static void
refresh(EV_P_ struct store *st)
{
	const struct oauth2_conf *c = st->c;
	char *form = NULL, err[300];

	if (st->req != NULL || !st->active)
		return;
	if (st->tok.refresh == NULL && stored(st)) {
		start(EV_A_ st);	/* an access token alone (re-read) */
		return;
	}
	if (!token_valid(&st->tok, time(NULL)) &&
	    published_state(st) != OAUTH2_RETRYING)
		publish(st, OAUTH2_FETCHING);
	if ((form = oauth2_grant_of(c)->request(c, &st->tok, time(NULL), err,
	    sizeof(err))) == NULL) {
		failed(EV_A_ st, "", err);
		return;
	}
	st->req = https_post(EV_A_ st->ctx, resolver, c->token_url, form,
	    https_proxy_for(c->token_url), 30., answered, st, err, sizeof(err));
	oauth2_form_free(form);
	if (st->req == NULL)
		failed(EV_A_ st, "", err);
}

/* A new entry for path (the caller checked there is room). */
static struct store *
add_store(const char *path, char *err, size_t errlen)
{
	struct store *st = &stores[nstores];

	if ((st->path = strdup(path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	nstores++;
	ev_init(&st->timer, timer_cb);
	st->timer.data = st;
	st->id.ino = 0;
	return st;
}

/* Stops what runs for st (it left the configuration, or we stop). */
static void
idle(EV_P_ struct store *st)
{
	ev_timer_stop(EV_A_ &st->timer);
	if (st->req != NULL)
		https_cancel(EV_A_ st->req);
	st->req = NULL;
	st->active = false;
}

/*
 * A store (re)joins the running configuration through c, the oauth2 keys
 * of a service or an account; name is how logs and /metrics call it and
 * authorize what -A takes for it.
 */
static void
adopt(EV_P_ struct store *st, struct config *cf, struct oauth2_conf *c,
    const char *name, const char *authorize, SSL_CTX *ctx)
{
	bool fresh = st->cf == NULL;

	SSL_CTX_free(st->ctx);
	st->ctx = ctx;
	config_unref(st->cf);
	st->cf = config_ref(cf);
	st->c = c;
	snprintf(st->name, sizeof(st->name), "%s", name);
	snprintf(st->authorize, sizeof(st->authorize), "%s", authorize);
	st->loop = EV_A;
	c->slot = store_index(st);
	st->active = true;
	if (fresh || (stored(st) && token_file_changed(st->path, &st->id))) {
		ev_timer_stop(EV_A_ &st->timer);
		if (st->req != NULL)
			https_cancel(EV_A_ st->req);
		st->req = NULL;
		reread(st);
		start(EV_A_ st);
	} else if (!ev_is_active(&st->timer) && st->req == NULL)
		start(EV_A_ st);	/* revoked: a reload tries once more */
}

/* What one configuration names: each store, the keys it comes with, its
 * names, and the context made for it in the first pass. */
struct named {
	struct oauth2_conf	*c;
	char			 key[310];	/* the store, or app:NAME */
	char			 name[300];
	char			 authorize[300];
	SSL_CTX			*ctx;
	struct store		*st;	/* NULL: a new path */
	bool			 twice;	/* the path came earlier in cf */
};

static struct store *
find(const char *path)
{
	for (int i = 0; i < nstores; i++)
		if (strcmp(stores[i].path, path) == 0)
			return &stores[i];
	return NULL;
}

/* The stores cf names, into list (cap entries); how many, or -1 with err. */
static int
list_stores(struct config *cf, struct named *list, int cap, char *err,
    size_t errlen)
{
	int n = 0;

	for (size_t i = 0; i < cf->nservices + cf->naccounts; i++) {
		struct named *e = &list[n];
		struct account *a = i >= cf->nservices ?
		    &cf->accounts[i - cf->nservices] : NULL;
		struct oauth2_conf *c = a != NULL ? &a->oauth2 :
		    &cf->services[i].oauth2;
		if (c->store == NULL && !oauth2_app_grant(c))
			continue;
		if (n == cap) {
			snprintf(err, errlen, "more than %d token stores", cap);
			return -1;
		}
		memset(e, 0, sizeof(*e));
		e->c = c;
		if (a == NULL) {
			snprintf(e->name, sizeof(e->name), "%s",
			    cf->services[i].name);
			snprintf(e->authorize, sizeof(e->authorize), "%s", e->name);
		} else {
			snprintf(e->name, sizeof(e->name), "account:%s", a->name);
			snprintf(e->authorize, sizeof(e->authorize), "%s:%s",
			    config_accounts_service(cf), a->name);
		}
		snprintf(e->key, sizeof(e->key), "%s%s", c->store != NULL ?
		    "" : "app:", c->store != NULL ? c->store : e->name);
		for (int k = 0; k < n; k++)
			e->twice |= strcmp(list[k].key, e->key) == 0;
		e->st = find(e->key);
		n++;
	}
	return n;
}

int
oauth2_attach(EV_P_ struct config *cf, char *err, size_t errlen)
{
	static struct named list[OAUTH2_MAX_STORES];
	char why[256];
	int n, fresh = 0, rc = -1;

	/* First everything that can fail, changing nothing in use. */
	if ((n = list_stores(cf, list, OAUTH2_MAX_STORES, err, errlen)) < 0)
		return -1;
	for (int i = 0; i < n; i++)
		fresh += list[i].st == NULL && !list[i].twice;
	if (nstores + fresh > OAUTH2_MAX_STORES) {
		snprintf(err, errlen, "more than %d token stores since the "
		    "start (a restart clears the table)", OAUTH2_MAX_STORES);
		return -1;
	}
	if (n > 0 && resolver == NULL && (resolver = resolver_new(EV_A_
	    getenv("MAILPROXY_DNS_SERVERS"), why, sizeof(why))) == NULL) {
		snprintf(err, errlen, "resolver: %s", why);
		return -1;
	}
	for (int i = 0; i < n; i++)
		if (!list[i].twice && (list[i].ctx = https_ctx_new(list[i].c->ca,
		    why, sizeof(why))) == NULL) {
			snprintf(err, errlen, "[%s] oauth2_ca: %s", list[i].name,
			    why);
			goto out;
		}
	/* A new entry nobody refers to yet stays unused if this fails. */
	for (int i = 0; i < n; i++)
		if (list[i].st == NULL && !list[i].twice &&
		    (list[i].st = add_store(list[i].key, err,
		    errlen)) == NULL)
			goto out;
	/* Then the switch, which cannot fail. */
	for (int i = 0; i < nstores; i++)
		stores[i].active = false;
	for (int i = 0; i < n; i++) {
		if (list[i].twice) {
			list[i].c->slot = store_index(find(list[i].key));
			continue;
		}
		adopt(EV_A_ list[i].st, cf, list[i].c, list[i].name,
		    list[i].authorize, list[i].ctx);
		list[i].ctx = NULL;
	}
	for (int i = 0; i < nstores; i++)
		if (!stores[i].active && stores[i].cf != NULL) {
			idle(EV_A_ &stores[i]);
			config_unref(stores[i].cf);
			stores[i].cf = NULL;
			publish(&stores[i], OAUTH2_UNUSED);
		}
	rc = 0;
out:
	for (int i = 0; i < n; i++)
		SSL_CTX_free(list[i].ctx);
	return rc;
}

bool
oauth2_store_changed(const char *path)
{
	const struct store *st = find(path);

	return st == NULL || token_file_changed(path, &st->id);
}

static void
wipe_secret(char *s)
{
	if (s != NULL)
		OPENSSL_cleanse(s, strlen(s));
}

/* Every client secret and signing key cf holds: each service and account
 * has its own copy, also those that name a store another one names
 * first. */
static void
wipe_client_secrets(struct config *cf)
{
	for (size_t i = 0; i < cf->nservices + cf->naccounts; i++) {
		struct oauth2_conf *c = i < cf->nservices ?
		    &cf->services[i].oauth2 :
		    &cf->accounts[i - cf->nservices].oauth2;
		wipe_secret(c->client_secret);
		jwt_key_free(c->key);
		c->key = NULL;
	}
}

void
oauth2_forget(void)
{
	for (int i = 0; i < nstores; i++) {
		struct store *st = &stores[i];
		if (st->req != NULL)
			https_cancel(st->loop, st->req);	/* our copy */
		st->req = NULL;
		token_clear(&st->tok);
		if (st->cf != NULL)
			wipe_client_secrets(st->cf);
	}
}

void
oauth2_stop(EV_P)
{
	for (int i = 0; i < nstores; i++) {
		idle(EV_A_ &stores[i]);
		token_clear(&stores[i].tok);
		SSL_CTX_free(stores[i].ctx);
		config_unref(stores[i].cf);
		free(stores[i].path);
	}
	nstores = 0;
	if (resolver != NULL)
		resolver_free(EV_A_ resolver);
	resolver = NULL;
}

/* ---- mailproxy -T ---------------------------------------------------------- */

int
oauth2_store_token(const struct oauth2_conf *c, char *out, size_t cap,
    char *why, size_t whylen)
{
	struct token t = { 0 };
	int64_t now = time(NULL);
	int missing, n = -1;

	if (token_read(c->store, &t, NULL, &missing, why, whylen) < 0)
		return -1;
	if (!token_valid(&t, now) || strlen(t.access) >= cap)
		snprintf(why, whylen, "the access token in %s is %s (the running "
		    "proxy refreshes it; -T only reads the store)", c->store,
		    t.access == NULL ? "not there yet" : "expired");
	else {
		n = (int)strlen(t.access);
		memcpy(out, t.access, (size_t)n + 1);
	}
	token_clear(&t);
	return n;
}

void
oauth2_describe(const struct oauth2_conf *c, const char *name, char *out,
    size_t cap)
{
	struct token t = { 0 };
	int64_t now = time(NULL);
	char why[300];
	int missing;

	if (token_read(c->store, &t, NULL, &missing, why, sizeof(why)) < 0) {
		snprintf(out, cap, "token store %s: %s", missing ? c->store : why,
		    missing ? "missing: run mailproxy -A " : "");
		if (missing)
			snprintf(out + strlen(out), cap - strlen(out), "%s", name);
		return;
	}
	snprintf(out, cap, "token store %s: refresh token %s, access token %s "
	    "%lld s", c->store, t.refresh != NULL ? "present" : "absent",
	    token_valid(&t, now) ? "valid for" : "expired",
	    (long long)(token_valid(&t, now) ? t.expires_at - now :
	    t.expires_at > 0 ? now - t.expires_at : 0));
	if (!token_valid(&t, now) && t.expires_at > 0)
		snprintf(out + strlen(out), cap - strlen(out), " ago");
	token_clear(&t);
}
