/*
 * dns: upstream names re-resolved by the supervisor; see dns.h.
 *
 * The published list is a seqlock: the supervisor (the one writer) makes
 * seq odd, writes, makes it even; a worker copies while seq is even and
 * unchanged across its copy.
 */
#include "dns.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"
#include "resolve.h"
#include "seqlock.h"

struct dns_shared {
	uint32_t		 seq;		/* atomic; odd while writing */
	uint32_t		 n;
	struct sockaddr_any	 addrs[DNS_MAX_ADDRS];
};

/* A service's view: the shared list and this process's copy of it (the
 * view is allocated before the workers are forked: each has its own). */
struct dns_view {
	struct dns_shared	*shared;
	uint32_t		 seq;		/* of the copy */
	size_t			 n;
	struct sockaddr_any	 copy[DNS_MAX_ADDRS];
};

/* ---- the supervisor: publishing ---------------------------------------- */

static void
publish(struct dns_shared *sh, const struct sockaddr_any *addrs, size_t n)
{
	if (n > DNS_MAX_ADDRS)
		n = DNS_MAX_ADDRS;
	seq_write_begin(&sh->seq);
	memcpy(sh->addrs, addrs, n * sizeof(*addrs));
	sh->n = (uint32_t)n;
	seq_write_end(&sh->seq);
}

int
dns_share(struct config *cf)
{
	for (size_t i = 0; i < cf->nservices; i++) {
		struct service *svc = &cf->services[i];
		struct dns_shared *sh;

		if (svc->nupstream_addrs > DNS_MAX_ADDRS)
			log_warnx("svc=%s upstream %s has %zu addresses: the first "
			    "%d are used", svc->name, svc->upstream,
			    svc->nupstream_addrs, DNS_MAX_ADDRS);
		sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED |
		    MAP_ANONYMOUS, -1, 0);
		if (sh == MAP_FAILED || (svc->dns = calloc(1,
		    sizeof(*svc->dns))) == NULL)
			return -1;
		publish(sh, svc->upstream_addrs, svc->nupstream_addrs);
		svc->dns->shared = sh;
		svc->dns->seq = sh->seq;
		svc->dns->n = sh->n;
		memcpy(svc->dns->copy, sh->addrs, sh->n * sizeof(*sh->addrs));
	}
	return 0;
}

void
dns_unshare(struct service *svc)
{
	if (svc->dns == NULL)
		return;
	munmap(svc->dns->shared, sizeof(*svc->dns->shared));
	free(svc->dns);
	svc->dns = NULL;
}

/* ---- the supervisor: refreshing ---------------------------------------- */

struct follow {
	struct config		*cf;		/* a reference */
	const struct service	*svc;
	ev_timer		 timer;
	bool			 busy;		/* a lookup in flight */
	struct follow		*next;
};

static struct resolver	*resolver;
static struct ev_loop	*dloop;		/* the supervisor's resolver loop */
static struct follow	*follows;
static bool		 resolver_failed;

static void lookup_cb(void *arg, const struct sockaddr_any *addrs, size_t n,
    int ttl, const char *error);

static void
timer_cb(EV_P_ ev_timer *w, int revents)
{
	struct follow *f = w->data;

	(void)revents;
	if (f->busy)
		return;
	f->busy = true;
	if (resolver_lookup(resolver, f->svc->upstream_host,
	    f->svc->upstream_port, lookup_cb, f) < 0) {
		f->busy = false;
		ev_timer_set(&f->timer, f->cf->dns_refresh, 0.);
		ev_timer_start(EV_A_ &f->timer);
	}
}

static bool
same_list(const struct dns_shared *sh, const struct sockaddr_any *a, size_t n)
{
	if (n > DNS_MAX_ADDRS)
		n = DNS_MAX_ADDRS;
	if (sh->n != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!addr_equal(&sh->addrs[i], &a[i]))
			return false;
	return true;
}

static void
lookup_cb(void *arg, const struct sockaddr_any *addrs, size_t n, int ttl,
    const char *error)
{
	struct follow *f = arg;
	struct dns_shared *sh = f->svc->dns->shared;
	double next = f->cf->dns_refresh;
	char text[80];

	f->busy = false;
	if (error == RESOLVE_CANCELLED)
		return;		/* the resolver is going away (dns_stop) */
	if (error != NULL || n == 0) {
		/* The last good addresses stay; try again sooner. */
		log_warnx("svc=%s event=dns-refresh-failed name=%s error=\"%s\" "
		    "(the last good addresses stay)", f->svc->name,
		    f->svc->upstream_host, error ? error : "no address");
		if (next > 30)
			next = 30;
	} else {
		if (!same_list(sh, addrs, n)) {
			sockaddr_text((const struct sockaddr *)&addrs[0].ss, text,
			    sizeof(text));
			publish(sh, addrs, n);
			log_info("svc=%s event=dns-refresh name=%s addresses=%zu "
			    "first=%s ttl=%d", f->svc->name, f->svc->upstream_host,
			    n, text, ttl);
		}
		if (ttl >= 0 && ttl < next)
			next = ttl < 1 ? 1 : ttl;
	}
	ev_timer_set(&f->timer, next, 0.);
	ev_timer_start(dloop, &f->timer);
}

void
dns_stop(EV_P)
{
	struct follow *f, *next;

	/* First the resolver: lookups in flight report "cancelled" to their
	 * follows while these still exist. */
	if (resolver != NULL)
		resolver_free(EV_A_ resolver);
	resolver = NULL;
	for (f = follows; f != NULL; f = next) {
		next = f->next;
		ev_timer_stop(EV_A_ &f->timer);
		config_unref(f->cf);
		free(f);
	}
	follows = NULL;
}

void
dns_follow(EV_P_ struct config *cf)
{
	char err[256];

	dns_stop(EV_A);
	dloop = EV_A;
	if (cf->dns_refresh == 0)
		return;
	if ((resolver = resolver_new(EV_A_ getenv("MAILPROXY_DNS_SERVERS"), err,
	    sizeof(err))) == NULL) {
		if (!resolver_failed)
			log_warnx("dns_refresh: %s (upstream names stay as "
			    "resolved at load)", err);
		resolver_failed = true;
		return;
	}
	for (size_t i = 0; i < cf->nservices; i++) {
		const struct service *svc = &cf->services[i];
		struct follow *f;

		if (addr_is_ip_literal(svc->upstream_host) || svc->dns == NULL ||
		    (f = calloc(1, sizeof(*f))) == NULL)
			continue;
		f->cf = config_ref(cf);
		f->svc = svc;
		ev_timer_init(&f->timer, timer_cb, 0., 0.);	/* learn the TTL */
		f->timer.data = f;
		ev_timer_start(EV_A_ &f->timer);
		f->next = follows;
		follows = f;
	}
}

/* ---- at load, with MAILPROXY_DNS_SERVERS ------------------------------- */

struct now {
	bool			 done;
	int			 n;
	struct sockaddr_any	*addrs;
	char			 err[200];
};

static void
now_cb(void *arg, const struct sockaddr_any *addrs, size_t n, int ttl,
    const char *error)
{
	struct now *r = arg;

	(void)ttl;
	r->done = true;
	if (error != NULL) {
		snprintf(r->err, sizeof(r->err), "%s", error);
		return;
	}
	if ((r->addrs = calloc(n, sizeof(*addrs))) == NULL) {
		snprintf(r->err, sizeof(r->err), "out of memory");
		return;
	}
	memcpy(r->addrs, addrs, n * sizeof(*addrs));
	r->n = (int)n;
}

int
dns_resolve_now(const char *host, const char *port, const char *servers,
    struct sockaddr_any **out, const char **why)
{
	static char err[256];
	struct ev_loop *loop = ev_loop_new(EVBACKEND_POLL);
	struct resolver *r;
	struct now res = { false, -1, NULL, "" };
	ev_tstamp until;

	*why = err;
	if (loop == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		return -1;
	}
	if ((r = resolver_new(loop, servers, err, sizeof(err))) == NULL) {
		ev_loop_destroy(loop);
		return -1;
	}
	if (resolver_lookup(r, host, port, now_cb, &res) < 0)
		snprintf(res.err, sizeof(res.err), "cannot look %s up", host);
	else
		for (until = ev_time() + 10; !res.done && ev_time() < until; )
			ev_run(loop, EVRUN_ONCE);
	resolver_free(loop, r);
	ev_loop_destroy(loop);
	if (res.n < 0) {
		snprintf(err, sizeof(err), "%s", res.err[0] ? res.err :
		    "no answer");
		return -1;
	}
	*out = res.addrs;
	return res.n;
}

/* ---- a worker: reading ------------------------------------------------- */

const struct sockaddr_any *
dns_addrs(const struct service *svc, size_t *n)
{
	struct dns_view *v = svc->dns;
	struct sockaddr_any fresh[DNS_MAX_ADDRS];	/* kept only if whole */
	uint32_t begin, count;

	if (v == NULL) {
		*n = svc->nupstream_addrs;
		return svc->upstream_addrs;
	}
	/* Copied again only when the supervisor published a new list; a
	 * list that cannot be read (its writer stuck or dead) leaves the
	 * copy this process has. */
	for (int tries = 0;
	    (begin = seq_read_begin(&v->shared->seq)) != v->seq;) {
		count = v->shared->n;
		if (count <= DNS_MAX_ADDRS) {
			memcpy(fresh, v->shared->addrs, count * sizeof(*fresh));
			if (seq_read_ok(&v->shared->seq, begin)) {
				memcpy(v->copy, fresh, count * sizeof(*fresh));
				v->n = count;
				v->seq = begin;
				break;
			}
		}
		if (!seq_read_again(&tries))
			break;
	}
	*n = v->n;
	return v->copy;
}
