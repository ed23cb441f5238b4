/*
 * listener: the bound sockets of every service, accept, connection cap.
 *
 * At max_connections the listeners stop accepting (the kernel backlog holds
 * newcomers) and resume when a session ends; on EMFILE and friends they
 * pause for a moment instead of spinning.  Each accepted peer is checked
 * against the service's allow list (outside: closed at once) and its
 * address's share (max_connections_per_client: refused with the protocol's
 * "try later" line where the client speaks plaintext first).
 */
#ifndef MAILPROXY_LISTENER_H
#define MAILPROXY_LISTENER_H

#include <ev.h>

#include "config.h"

/*
 * Makes the set of listeners match cf: keeps sockets whose address is
 * unchanged, binds new ones, closes removed ones.  All or nothing: if a bind
 * fails, nothing changes, -1 is returned and err says which address.
 */
int	listeners_apply(EV_P_ struct config *cf, char *err, size_t len);

/* Several workers: each binds its own sockets with SO_REUSEPORT. */
void	listeners_set_reuseport(bool on);

/* Closes every listener (graceful stop). */
void	listeners_close_all(EV_P);

/*
 * A session from peer ended: count it off its client address and resume
 * accepting if the cap had paused us.
 */
void	listeners_session_ended(EV_P_ const struct sockaddr_any *peer);

#endif
