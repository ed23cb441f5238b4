/*
 * resolve: c-ares on libev.  See resolve.h for the contract.
 *
 * Two c-ares channels: one that only reads /etc/hosts (lookups "f"), asked
 * first, and one that only asks DNS (lookups "b").  c-ares 1.18 gives
 * hosts-file and IP-literal answers an ai_ttl of 0, the same as a DNS
 * record with TTL 0; asking them apart is how we know which TTL is real.
 *
 * c-ares calls our completion functions from inside its own calls
 * (ares_getaddrinfo, ares_process_fd, ares_destroy); they only queue the
 * result, and the user's callbacks run from the `deliver' timer, where the
 * user may call resolver_lookup or resolver_free without re-entering c-ares.
 */
#include <ares.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "resolve.h"

const char RESOLVE_CANCELLED[] = "lookup cancelled: resolver freed";

struct rsock {				/* one socket c-ares wants watched */
	ev_io		 io;
	struct resolver	*r;
	struct rsock	*next;
};

struct lookup {
	struct resolver	*r;
	struct lookup	*next;		/* on r->done */
	resolve_cb	 cb;
	void		*arg;
	char		*host;
	unsigned short	 port;
	int		 status;	/* c-ares' */
	struct ares_addrinfo *ai;	/* ours to free */
	bool		 from_hosts;
};

struct resolver {
	struct ev_loop	*loop;
	ares_channel	 dns, hosts;
	ev_timer	 timer;		/* c-ares' next retransmission */
	ev_timer	 deliver;	/* runs the queued callbacks */
	struct rsock	*socks;
	struct lookup	*done, *done_tail;	/* completed, not reported */
	bool		 delivering;	/* inside deliver_cb */
	bool		 freed;
};

static const struct ares_addrinfo_hints hints = {
	.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
};

/* Re-arms the timer from c-ares' own idea of its next timeout. */
static void
rearm(struct resolver *r)
{
	struct timeval tv, *tvp;

	ev_timer_stop(r->loop, &r->timer);
	if ((tvp = ares_timeout(r->dns, NULL, &tv)) != NULL) {
		ev_timer_set(&r->timer, tvp->tv_sec + tvp->tv_usec / 1e6, 0.);
		ev_timer_start(r->loop, &r->timer);
	}
}

static void
timer_cb(EV_P_ ev_timer *w, int revents)
{
	struct resolver *r = w->data;

	(void)loop;
	(void)revents;
	ares_process_fd(r->dns, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	rearm(r);
}

static void
io_cb(EV_P_ ev_io *w, int revents)
{
	struct resolver *r = ((struct rsock *)w)->r;
	int fd = w->fd;

	(void)loop;
	/* This may close the socket and free w: not touched afterwards. */
	ares_process_fd(r->dns, revents & EV_READ ? fd : ARES_SOCKET_BAD,
	    revents & EV_WRITE ? fd : ARES_SOCKET_BAD);
	rearm(r);
}

static void
sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct resolver *r = data;
	struct rsock *s, **sp;

	for (sp = &r->socks; (s = *sp) != NULL; sp = &s->next)
		if (s->io.fd == fd)
			break;
	if (!readable && !writable) {
		if (s != NULL) {
			ev_io_stop(r->loop, &s->io);
			*sp = s->next;
			free(s);
		}
		return;
	}
	if (s == NULL) {
		/*
		 * Out of memory: the socket goes unwatched and its queries
		 * end with c-ares' timeout instead, still reported.
		 */
		if ((s = calloc(1, sizeof(*s))) == NULL)
			return;
		s->r = r;
		ev_io_init(&s->io, io_cb, fd, 0);
		s->next = r->socks;
		r->socks = s;
	}
	ev_io_stop(r->loop, &s->io);
	ev_io_set(&s->io, fd, (readable ? EV_READ : 0) |
	    (writable ? EV_WRITE : 0));
	ev_io_start(r->loop, &s->io);
}

/* Runs a lookup's callback and frees it. */
static void
report(struct lookup *lk, bool cancelled)
{
	struct sockaddr_any *addrs = NULL;
	struct ares_addrinfo_node *nd;
	const char *error = NULL;
	size_t n = 0;
	int ttl = -1;

	if (cancelled)
		error = RESOLVE_CANCELLED;
	else if (lk->status != ARES_SUCCESS)
		error = ares_strerror(lk->status);
	else {
		for (nd = lk->ai->nodes; nd != NULL; nd = nd->ai_next)
			n++;
		if ((addrs = calloc(n + 1, sizeof(*addrs))) == NULL)
			error = "out of memory";
		n = 0;
	}
	for (nd = error == NULL ? lk->ai->nodes : NULL; nd; nd = nd->ai_next) {
		struct sockaddr_any *a = &addrs[n];

		if (nd->ai_addrlen > sizeof(a->ss))
			continue;
		memcpy(&a->ss, nd->ai_addr, nd->ai_addrlen);
		a->len = nd->ai_addrlen;
		/* No service was given to c-ares: the port is set here. */
		if (nd->ai_family == AF_INET6)
			((struct sockaddr_in6 *)&a->ss)->sin6_port =
			    htons(lk->port);
		else
			((struct sockaddr_in *)&a->ss)->sin_port = htons(lk->port);
		/* A TTL with the top bit set counts as 0 (RFC 2181 8). */
		if (!lk->from_hosts && (ttl < 0 || nd->ai_ttl < ttl))
			ttl = nd->ai_ttl < 0 ? 0 : nd->ai_ttl;
		n++;
	}
	if (error == NULL && n == 0)
		error = "no addresses";
	if (error != NULL)
		lk->cb(lk->arg, NULL, 0, -1, error);
	else
		lk->cb(lk->arg, addrs, n, ttl, NULL);
	free(addrs);
	if (lk->ai != NULL)
		ares_freeaddrinfo(lk->ai);
	free(lk->host);
	free(lk);
}

static struct lookup *
pop_done(struct resolver *r)
{
	struct lookup *lk = r->done;

	if (lk != NULL && (r->done = lk->next) == NULL)
		r->done_tail = NULL;
	return lk;
}

static void
deliver_cb(EV_P_ ev_timer *w, int revents)
{
	struct resolver *r = w->data;
	struct lookup *lk, *last = r->done_tail;

	(void)revents;
	/*
	 * Only what was queued on entry: a callback that looks a hosts-file
	 * name up again would otherwise keep this loop going forever.
	 */
	r->delivering = true;
	while (!r->freed && last != NULL && (lk = pop_done(r)) != NULL) {
		bool was_last = lk == last;

		report(lk, false);
		if (was_last)
			break;
	}
	r->delivering = false;
	if (r->freed)
		free(r);
	else if (r->done != NULL)
		ev_timer_start(EV_A_ &r->deliver);
}

static void
finish(struct lookup *lk, int status, struct ares_addrinfo *ai)
{
	struct resolver *r = lk->r;

	lk->status = status;
	lk->ai = ai;
	lk->next = NULL;
	if (r->done_tail != NULL)
		r->done_tail->next = lk;
	else
		r->done = lk;
	r->done_tail = lk;
	if (!r->freed && !r->delivering)
		ev_timer_start(r->loop, &r->deliver);
}

static void
dns_done(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
	(void)timeouts;
	finish(arg, status, ai);
}

static void
hosts_done(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
	struct lookup *lk = arg;

	(void)timeouts;
	/* Any other failure (not listed, unreadable file) falls to DNS. */
	if (status == ARES_SUCCESS || status == ARES_ENOMEM) {
		lk->from_hosts = true;
		finish(lk, status, ai);
		return;
	}
	if (ai != NULL)
		ares_freeaddrinfo(ai);
	ares_getaddrinfo(lk->r->dns, lk->host, NULL, &hints, dns_done, lk);
}

int
resolver_lookup(struct resolver *r, const char *host, const char *port,
    resolve_cb cb, void *arg)
{
	struct ares_addrinfo_hints h;
	struct lookup *lk;
	struct in_addr in;
	unsigned long p;
	size_t digits;

	if (r->freed || host == NULL || *host == '\0' || port == NULL ||
	    cb == NULL)
		return -1;
	digits = strspn(port, "0123456789");
	if (digits == 0 || digits > 5 || port[digits] != '\0' ||
	    (p = strtoul(port, NULL, 10)) > 65535 ||
	    (lk = calloc(1, sizeof(*lk))) == NULL)
		return -1;
	if ((lk->host = strdup(host)) == NULL) {
		free(lk);
		return -1;
	}
	lk->r = r;
	lk->cb = cb;
	lk->arg = arg;
	lk->port = (unsigned short)p;
	/*
	 * Answers now (a file read) or passes the lookup on to DNS.  c-ares
	 * 1.18 takes an IPv4 literal for a name when asked for AF_UNSPEC
	 * (its IPv6 test overwrites the IPv4 one) and sends it to DNS: asked
	 * for AF_INET it answers it at once.
	 */
	h = hints;
	if (inet_pton(AF_INET, host, &in) == 1)
		h.ai_family = AF_INET;
	ares_getaddrinfo(r->hosts, host, NULL, &h, hosts_done, lk);
	rearm(r);
	return 0;
}

struct resolver *
resolver_new(EV_P_ const char *servers, char *err, size_t errlen)
{
	static char dns_only[] = "b", hosts_only[] = "f";
	struct ares_options o;
	struct resolver *r;
	int st, mask;

	if ((st = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares: %s", ares_strerror(st));
		return NULL;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		ares_library_cleanup();
		snprintf(err, errlen, "c-ares: %s", ares_strerror(ARES_ENOMEM));
		return NULL;
	}
	r->loop = EV_A;
	ev_init(&r->timer, timer_cb);
	ev_timer_init(&r->deliver, deliver_cb, 0., 0.);
	r->timer.data = r->deliver.data = r;

	memset(&o, 0, sizeof(o));
	o.lookups = hosts_only;
	if ((st = ares_init_options(&r->hosts, &o, ARES_OPT_LOOKUPS)) !=
	    ARES_SUCCESS)
		goto fail;
	o.lookups = dns_only;
	o.sock_state_cb = sock_state_cb;
	o.sock_state_cb_data = r;
	mask = ARES_OPT_LOOKUPS | ARES_OPT_SOCK_STATE_CB;
	if (servers != NULL) {
		/* Named servers: quick retries and no search domains. */
		o.timeout = 200;
		o.tries = 2;
		o.ndomains = 0;
		mask |= ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_DOMAINS;
	}
	if ((st = ares_init_options(&r->dns, &o, mask)) != ARES_SUCCESS)
		goto fail;
	if (servers != NULL &&
	    (st = ares_set_servers_ports_csv(r->dns, servers)) != ARES_SUCCESS)
		goto fail;
	return r;
fail:
	if (servers != NULL && r->dns != NULL)
		snprintf(err, errlen, "DNS servers \"%s\": %s", servers,
		    ares_strerror(st));
	else
		snprintf(err, errlen, "c-ares: %s", ares_strerror(st));
	resolver_free(EV_A_ r);
	return NULL;
}

void
resolver_free(EV_P_ struct resolver *r)
{
	struct lookup *lk;
	struct rsock *s;

	if (r == NULL)
		return;
	r->freed = true;
	/* Pending queries come back to dns_done with ARES_EDESTRUCTION. */
	if (r->dns != NULL)
		ares_destroy(r->dns);
	if (r->hosts != NULL)
		ares_destroy(r->hosts);
	ev_timer_stop(EV_A_ &r->timer);
	ev_timer_stop(EV_A_ &r->deliver);
	while ((lk = pop_done(r)) != NULL)
		report(lk, true);
	/* ares_destroy closed its sockets through sock_state_cb already. */
	while ((s = r->socks) != NULL) {
		ev_io_stop(EV_A_ &s->io);
		r->socks = s->next;
		free(s);
	}
	ares_library_cleanup();
	/* deliver_cb is still using r: it frees it. */
	if (!r->delivering)
		free(r);
}
