/*
 * session: one client connection and its upstream, walking
 *
 *   [PROXY_HEADER] -> [CLIENT_PRETLS] -> [CLIENT_HANDSHAKE]
 *     -> [LOGIN <-> LOGIN_CHECK] -> CONNECT
 *     -> [UPSTREAM_HANDSHAKE] -> [NEGOTIATE <-> UPSTREAM_HANDSHAKE]
 *     -> [FRONT] -> RELAY
 *
 * LOGIN (upstream_auth = accounts) answers the client's login itself and
 * has its password checked off the loop (LOGIN_CHECK); only then is the
 * upstream dialled, and logged in to with the account's credential.
 * FRONT (upstream_auth; with accounts, SMTP's LOGIN too) answers the
 * device itself until MAIL.  FAREWELL
 * sends the client the proxy's own last words, then closes: from the
 * states before RELAY (the upstream failed, or the client's dialogue ended)
 * and from RELAY when the client sends STARTTLS inside TLS.  One ev_timer
 * holds the deadline of the current phase (header, handshake, connect,
 * negotiation) or the idle timeout while relaying.  A session is freed only
 * after the callback that closed it returns.
 */
#ifndef MAILPROXY_SESSION_H
#define MAILPROXY_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "config.h"
#include "reason.h"

/*
 * Starts a session for an accepted, non-blocking fd (the session owns it
 * and takes a reference on cf) of svc, on the listen address la (whose
 * routes, with sni, may hand it to another service at the handshake).
 * Returns false if it could not (the fd is closed then, and
 * listeners_session_ended() will not be called for it).
 */
bool	sess_new(EV_P_ struct config *cf, const struct service *svc,
	    const struct listen_addr *la, int fd, const struct sockaddr_any *peer);

/* Session ids start above base (workers keep ids distinct). */
void	sess_set_id_base(uint64_t base);

/* Sessions currently open. */
size_t	sess_count(void);

/* Closes every open session now, logging reason (end of the grace period). */
void	sess_close_all(EV_P_ enum close_reason reason);

/* After a reload (this worker drains): closes the sessions logged in as an
 * account the running configuration no longer has, or has changed. */
void	sess_close_stale_accounts(EV_P);

#endif
