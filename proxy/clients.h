/*
 * clients: open sessions per client address, counted across every worker
 * (max_connections_per_client), in memory the supervisor maps before
 * forking.
 *
 * Each process writes only its own slot's table (no locks); a count is the
 * sum over all slots.  The supervisor clears the slot of a process that
 * died, so its sessions stop counting.  Two workers accepting the same
 * client at the same instant may both see the count below the cap: the cap
 * can be passed by at most one session per worker, never more.
 */
#ifndef MAILPROXY_CLIENTS_H
#define MAILPROXY_CLIENTS_H

#include <stdbool.h>

#include "config.h"

/* Before forking: slots tables of capacity entries each.  0 or -1. */
int	clients_init(int slots, int capacity);

/*
 * Supervisor, before forking a generation: grows the table of a free slot
 * to hold capacity (max_connections) sessions; 0 or -1 (out of memory:
 * the table stays as it was).
 */
int	clients_fit_slot(int slot, int capacity);

/* Supervisor: does slot's table hold capacity sessions? */
bool	clients_slot_fits(int slot, int capacity);

/* In a process: the slot it writes. */
void	clients_set_slot(int slot);

/* Supervisor: the process of slot died; its sessions count no more. */
void	clients_clear_slot(int slot);

/* Sessions from addr's host across all processes. */
unsigned clients_count(const struct sockaddr_any *addr);

/* One more / one less session from addr's host in this process.  Adding
 * fails (false) only when this process's table is full. */
bool	clients_add(const struct sockaddr_any *addr);
void	clients_remove(const struct sockaddr_any *addr);

#endif
