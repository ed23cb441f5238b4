/*
 * A scripted UDP DNS responder on 127.0.0.1, on the test's libev loop, for
 * the tests that go through the resolver: A/AAAA records with chosen TTLs,
 * NODATA for a known name without the type asked, NXDOMAIN for any other
 * name, or silence.
 */
#ifndef MAILPROXY_DNSSTUB_H
#define MAILPROXY_DNSSTUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#define T_A	1
#define T_AAAA	28

struct dns_rec {
	const char	*name;
	int		 type;		/* T_A or T_AAAA */
	const char	*addr;
	uint32_t	 ttl;
};

struct dnsstub {
	int			 fd;
	ev_io			 io;
	const struct dns_rec	*recs;
	size_t			 nrecs;
	bool			 silent;	/* reads queries, answers none */
	int			 queries;
	char			 servers[32];	/* "127.0.0.1:port" */
};

/* Starts answering from recs (n of them) on a free port. */
void	dnsstub_start(EV_P_ struct dnsstub *s, const struct dns_rec *recs,
	    size_t n);

void	dnsstub_stop(EV_P_ struct dnsstub *s);

#endif
