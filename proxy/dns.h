/*
 * dns: upstream names re-resolved while the proxy runs (dns_refresh).
 *
 * The supervisor resolves each upstream name of the running configuration
 * on its own loop with c-ares (resolve.c), when the answer's TTL ends,
 * capped by dns_refresh, and publishes the addresses in memory it shares
 * with that configuration's workers; a failed lookup keeps the last good
 * addresses.  A worker reads the published list when it dials (no lookup
 * per session) and tries every address in turn.
 */
#ifndef MAILPROXY_DNS_H
#define MAILPROXY_DNS_H

#include <ev.h>

#include "config.h"

/* Addresses published per service; more are dropped (and logged). */
#define DNS_MAX_ADDRS	16

/*
 * Supervisor: the shared table for cf (before its workers are forked),
 * seeded with the addresses resolved at load.  0 or -1.
 */
int	dns_share(struct config *cf);

/* When a snapshot is freed: its table goes (each process its mapping). */
void	dns_unshare(struct service *svc);

/* Supervisor: refresh cf's names on loop from now on (replacing the
 * previous configuration's schedule). */
void	dns_follow(EV_P_ struct config *cf);
void	dns_stop(EV_P);

/*
 * At load, when MAILPROXY_DNS_SERVERS names the DNS servers to use instead
 * of the system's: host:port resolved through them (as the refresher will),
 * the calling process waiting for the answer (10 s at most).  Returns how
 * many addresses (a calloc'ed array in *out), or -1 with *why.
 */
int	dns_resolve_now(const char *host, const char *port, const char *servers,
	    struct sockaddr_any **out, const char **why);

/* Worker: svc's current addresses (a copy local to this process, renewed
 * when the supervisor published new ones). */
const struct sockaddr_any *dns_addrs(const struct service *svc, size_t *n);

#endif
