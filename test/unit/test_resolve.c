/*
 * resolve: lookups against a scripted UDP DNS responder on 127.0.0.1 that
 * runs on the same libev loop (A/AAAA with chosen TTLs, NODATA, NXDOMAIN,
 * or silence), plus /etc/hosts and the cancellation contract.  Every loop
 * run is bounded by an ev_timer deadline.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "dnsstub.h"
#include "resolve.h"
#include "unit.h"

static const struct dns_rec recs[] = {
	{ "mail.test", T_A, "192.0.2.1", 300 },
	{ "mail.test", T_A, "192.0.2.2", 60 },
	{ "mail.test", T_AAAA, "2001:db8::1", 120 },
	{ "v4only.test", T_A, "198.51.100.7", 3600 },
	{ "v6only.test", T_AAAA, "2001:db8::2", 30 },
};

struct result {
	int		 calls;
	size_t		 n;
	struct sockaddr_any addrs[8];
	int		 ttl;
	const char	*errptr;	/* the pointer, for RESOLVE_CANCELLED */
	char		 error[128];
	struct resolver	*free_me;	/* resolver_free from the callback */
	struct ev_loop	*loop;
};

static void
got(void *arg, const struct sockaddr_any *addrs, size_t n, int ttl,
    const char *error)
{
	struct result *res = arg;

	res->calls++;
	res->n = n;
	res->ttl = ttl;
	res->errptr = error;
	snprintf(res->error, sizeof(res->error), "%s", error ? error : "");
	if (addrs == NULL && n != 0)
		res->n = 99;
	for (size_t i = 0; i < n && i < 8; i++)
		res->addrs[i] = addrs[i];
	if (res->free_me != NULL) {
		resolver_free(res->loop, res->free_me);
		res->free_me = NULL;
	}
}

struct results {
	const struct result	*res;
	int			 n;
};

static bool
all_called(const void *arg)
{
	const struct results *rs = arg;

	for (int i = 0; i < rs->n; i++)
		if (rs->res[i].calls == 0)
			return false;
	return true;
}

/* Runs the loop until every result has its call, or `secs' pass. */
static void
run_until(EV_P_ struct result *res, int nres, double secs)
{
	struct results rs = { res, nres };

	unit_run_until(EV_A_ all_called, &rs, secs);
}

/* Whether res holds text (an address) with port `port'. */
static bool
has_addr(const struct result *res, const char *text, int port)
{
	char buf[64];

	for (size_t i = 0; i < res->n && i < 8; i++) {
		const struct sockaddr *sa =
		    (const struct sockaddr *)&res->addrs[i].ss;
		int p = sa->sa_family == AF_INET ?
		    ntohs(((const struct sockaddr_in *)sa)->sin_port) :
		    ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);

		sockaddr_host(sa, buf, sizeof(buf));
		if (strcmp(buf, text) == 0 && p == port)
			return true;
	}
	return false;
}

static void
tick_cb(EV_P_ ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	(*(int *)w->data)++;
}

static void
test_answers(void)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct dnsstub srv;
	struct resolver *r;
	struct result res[2];
	char err[256] = "";

	dnsstub_start(loop, &srv, recs, sizeof(recs) / sizeof(recs[0]));
	r = resolver_new(loop, srv.servers, err, sizeof(err));
	CHECK(r != NULL);
	if (r == NULL) {
		fprintf(stderr, "resolver_new: %s\n", err);
		goto out;
	}

	/* A and AAAA: every address with the port, the smallest TTL. */
	memset(res, 0, sizeof(res));
	CHECK(resolver_lookup(r, "mail.test", "25", got, &res[0]) == 0);
	CHECK(res[0].calls == 0);
	run_until(loop, res, 1, 5.);
	CHECK(res[0].calls == 1 && res[0].errptr == NULL);
	CHECK(res[0].n == 3 && res[0].ttl == 60);
	CHECK(has_addr(&res[0], "192.0.2.1", 25));
	CHECK(has_addr(&res[0], "192.0.2.2", 25));
	CHECK(has_addr(&res[0], "2001:db8::1", 25));

	/* NXDOMAIN: an error, no addresses. */
	memset(res, 0, sizeof(res));
	CHECK(resolver_lookup(r, "nope.test", "25", got, &res[0]) == 0);
	run_until(loop, res, 1, 5.);
	CHECK(res[0].calls == 1 && res[0].n == 0 && res[0].ttl == -1);
	CHECK_STR_CONTAINS(res[0].errptr, "not found");

	/* Two in flight at once, each answered for one family only. */
	memset(res, 0, sizeof(res));
	CHECK(resolver_lookup(r, "v4only.test", "993", got, &res[0]) == 0);
	CHECK(resolver_lookup(r, "v6only.test", "995", got, &res[1]) == 0);
	run_until(loop, res, 2, 5.);
	CHECK(res[0].calls == 1 && res[0].errptr == NULL && res[0].n == 1);
	CHECK(res[0].ttl == 3600 && has_addr(&res[0], "198.51.100.7", 993));
	CHECK(res[1].calls == 1 && res[1].errptr == NULL && res[1].n == 1);
	CHECK(res[1].ttl == 30 && has_addr(&res[1], "2001:db8::2", 995));

	/* An IP literal never reaches DNS: ttl -1. */
	memset(res, 0, sizeof(res));
	srv.queries = 0;
	CHECK(resolver_lookup(r, "192.0.2.9", "0", got, &res[0]) == 0);
	run_until(loop, res, 1, 5.);
	CHECK(res[0].calls == 1 && res[0].n == 1 && res[0].ttl == -1);
	CHECK(has_addr(&res[0], "192.0.2.9", 0) && srv.queries == 0);
	memset(res, 0, sizeof(res));
	CHECK(resolver_lookup(r, "2001:db8::9", "465", got, &res[0]) == 0);
	run_until(loop, res, 1, 5.);
	CHECK(res[0].calls == 1 && res[0].n == 1 && res[0].ttl == -1);
	CHECK(has_addr(&res[0], "2001:db8::9", 465) && srv.queries == 0);

	/* Refused before starting: no callback. */
	CHECK(resolver_lookup(r, "mail.test", "smtp", got, &res[0]) == -1);
	CHECK(resolver_lookup(r, "mail.test", "65536", got, &res[0]) == -1);
	CHECK(resolver_lookup(r, "mail.test", "", got, &res[0]) == -1);
	CHECK(resolver_lookup(r, "", "25", got, &res[0]) == -1);
	resolver_free(loop, r);
out:
	dnsstub_stop(loop, &srv);
	ev_loop_destroy(loop);
}

static void
test_silent(void)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct dnsstub srv;
	struct resolver *r;
	struct result res[1];
	char err[256] = "";
	ev_timer tick;
	int ticks = 0;
	ev_tstamp t0;

	dnsstub_start(loop, &srv, recs, sizeof(recs) / sizeof(recs[0]));
	srv.silent = true;
	r = resolver_new(loop, srv.servers, err, sizeof(err));
	CHECK(r != NULL);
	if (r == NULL)
		goto out;

	/* c-ares' timeout ends it (200 ms, then 400 ms); the loop runs on. */
	ev_timer_init(&tick, tick_cb, 0.01, 0.01);
	tick.data = &ticks;
	ev_timer_start(loop, &tick);
	memset(res, 0, sizeof(res));
	ev_now_update(loop);
	t0 = ev_now(loop);
	CHECK(resolver_lookup(r, "mail.test", "25", got, &res[0]) == 0);
	run_until(loop, res, 1, 5.);
	ev_now_update(loop);
	ev_timer_stop(loop, &tick);
	CHECK(res[0].calls == 1 && res[0].n == 0 && res[0].ttl == -1);
	CHECK_STR_CONTAINS(res[0].errptr, "Timeout");
	CHECK(ev_now(loop) - t0 >= 0.5 && ev_now(loop) - t0 < 2.);
	CHECK(srv.queries == 4);	/* A and AAAA, 2 tries each */
	CHECK(ticks >= 25);
	if (ticks < 25 || srv.queries != 4)
		fprintf(stderr, "silent: %d ticks, %d queries in %.3f s\n",
		    ticks, srv.queries, ev_now(loop) - t0);

	/* Freed with a lookup pending: its callback runs, cancelled. */
	memset(res, 0, sizeof(res));
	CHECK(resolver_lookup(r, "mail.test", "25", got, &res[0]) == 0);
	ev_run(loop, EVRUN_NOWAIT);
	CHECK(res[0].calls == 0);
	resolver_free(loop, r);
	CHECK(res[0].calls == 1 && res[0].errptr == RESOLVE_CANCELLED);
	CHECK(res[0].n == 0 && res[0].ttl == -1);
out:
	dnsstub_stop(loop, &srv);
	ev_loop_destroy(loop);
}

static void
test_system(void)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct resolver *r;
	struct result res[2];
	char err[256] = "";

	/* The system's configuration: localhost from /etc/hosts, ttl -1. */
	r = resolver_new(loop, NULL, err, sizeof(err));
	CHECK(r != NULL);
	if (r == NULL)
		goto out;
	memset(res, 0, sizeof(res));
	CHECK(resolver_lookup(r, "localhost", "143", got, &res[0]) == 0);
	CHECK(res[0].calls == 0);	/* never from inside resolver_lookup */
	run_until(loop, res, 1, 5.);
	CHECK(res[0].calls == 1 && res[0].errptr == NULL && res[0].n >= 1);
	CHECK(res[0].ttl == -1);
	CHECK(has_addr(&res[0], "127.0.0.1", 143) ||
	    has_addr(&res[0], "::1", 143));

	/*
	 * resolver_free from a callback: the other answered lookup is
	 * reported cancelled, and nothing runs after.
	 */
	memset(res, 0, sizeof(res));
	res[0].free_me = r;
	res[0].loop = loop;
	CHECK(resolver_lookup(r, "localhost", "143", got, &res[0]) == 0);
	CHECK(resolver_lookup(r, "localhost", "993", got, &res[1]) == 0);
	run_until(loop, res, 2, 5.);
	CHECK(res[0].calls == 1 && res[0].errptr == NULL);
	CHECK(res[1].calls == 1 && res[1].errptr == RESOLVE_CANCELLED);
	ev_run(loop, EVRUN_NOWAIT);
	CHECK(res[0].calls == 1 && res[1].calls == 1);

	/* A bad server list is refused with a message. */
	CHECK(resolver_new(loop, "not a server", err, sizeof(err)) == NULL);
	CHECK_STR_CONTAINS(err, "not a server");
out:
	ev_loop_destroy(loop);
}

void
test_resolve(void)
{
	test_answers();
	test_silent();
	test_system();
}
