/*
 * resolve: asynchronous name resolution on a libev loop (c-ares), for the
 * supervisor's re-resolution of upstream host names when their TTL ends.
 *
 * Nothing here waits on the network: c-ares' sockets are ev_io watchers and
 * its retransmissions an ev_timer.  The one synchronous step is reading
 * /etc/hosts (a local file, as getaddrinfo does), which is consulted before
 * DNS for every name; nsswitch.conf's order is not followed.
 */
#ifndef MAILPROXY_RESOLVE_H
#define MAILPROXY_RESOLVE_H

#include <stddef.h>

#include <ev.h>

#include "addr.h"

struct resolver;

/*
 * The outcome of one lookup.  On success error is NULL and addrs holds n
 * (>= 1) addresses with the lookup's port, valid only during the call; ttl
 * is the smallest TTL of the DNS answers in seconds (0 is a real TTL), or -1
 * when the answer came from /etc/hosts or the host was an IP literal.  On
 * failure addrs is NULL, n 0, ttl -1 and error a readable message (c-ares'
 * ares_strerror), or exactly the pointer RESOLVE_CANCELLED.
 */
typedef void (*resolve_cb)(void *arg, const struct sockaddr_any *addrs,
    size_t n, int ttl, const char *error);

extern const char RESOLVE_CANCELLED[];

/*
 * servers NULL: the system's configuration (/etc/resolv.conf: servers,
 * search domains, timeouts).  Otherwise a c-ares server list such as
 * "127.0.0.1:5353,[::1]:53" (tests, the MAILPROXY_DNS_SERVERS override),
 * with no search domains and short retransmissions: 200 ms, 2 tries per
 * server (c-ares doubles the wait on each round, so about 600 ms in all for
 * one silent server).  Returns NULL with a message in err on failure.
 */
struct resolver *resolver_new(EV_P_ const char *servers, char *err,
	    size_t errlen);

/*
 * Every lookup not yet reported has its callback run, before this returns,
 * with error == RESOLVE_CANCELLED.  May be called from a callback.
 */
void	resolver_free(EV_P_ struct resolver *r);

/*
 * Looks host up, IPv4 and IPv6 (AF_UNSPEC), for a stream socket to port (a
 * number, 0..65535: no services database).  Returns 0 when the lookup was
 * started: cb then runs exactly once, always from the loop, never from
 * within resolver_lookup.  Returns -1, cb never run, when port or host is
 * not valid or memory runs out.
 */
int	resolver_lookup(struct resolver *r, const char *host, const char *port,
	    resolve_cb cb, void *arg);

#endif
