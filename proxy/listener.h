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
#include "reason.h"

/*
 * The supervisor binds every socket (as root, so privileged ports can be
 * added by a reload), once per address and worker: with several workers
 * each gets its own socket on the address (SO_REUSEPORT spreads the
 * connections).  Workers inherit them when forked.
 */
struct sockset;

/*
 * The sockets for cf: those of old (may be NULL) whose address is
 * unchanged are taken over (the same sockets: nothing waiting in their
 * queue is lost), the rest bound.  All or nothing: on failure old is as it
 * was, NULL is returned and err names the address.  Sockets left in old
 * are the removed addresses: sockset_free(old) closes them.
 */
struct sockset *sockset_bind(const struct config *cf, int nfds,
	    struct sockset *old, char *err, size_t len);
void	sockset_free(struct sockset *s);

/* event=listen lines (the bound addresses, port 0 resolved). */
void	sockset_log(const struct sockset *s, const struct config *cf);

/* In a new worker: closes every inherited socket that is not its own. */
void	sockset_keep_only(const struct sockset *s, int index);

/* The metrics endpoint's socket (-1: none); worker 0 serves it. */
int	sockset_metrics_fd(const struct sockset *s);

/*
 * Whether each process accepts, in memory shared with the supervisor: it
 * starts the new generation of a reload, waits until it accepts, then stops
 * the old one and waits until that no longer does (its sockets are the
 * same sockets, so until then a new client could still reach it).
 */
int	listeners_init_shared(int nslots);	/* supervisor, before forking */
void	listeners_set_slot(int slot);		/* worker */
bool	listeners_slot_accepting(int slot);	/* supervisor */

/* A worker: listeners on its sockets of s, accepting for cf. */
int	listeners_adopt(EV_P_ struct config *cf, const struct sockset *s,
	    int index);

/* Closes every listener (graceful stop). */
void	listeners_close_all(EV_P);

/*
 * A session ended: count it off the client address it was counted under
 * (NULL: none, a PROXY header never came) and resume accepting if the cap
 * had paused us.
 */
void	listeners_session_ended(EV_P_ const struct sockaddr_any *counted);

/*
 * A new client of svc on fd (the socket peer, or the client a PROXY header
 * carried): allow, then max_connections_per_client (summed over every
 * worker; over it the protocol's "try later" line where the client speaks
 * first), then counted.  R_NONE when admitted, else why not.
 */
enum close_reason listeners_admit(const struct service *svc, int fd,
	    const struct sockaddr_any *client);

#endif
