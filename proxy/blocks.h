/*
 * blocks: failed logins per client (upstream_auth = accounts): an IPv4
 * address, or an IPv6 /64 (a host picks addresses from its whole /64),
 * counted across every worker in one fixed-size table the supervisor maps
 * before forking.  A client that failed auth_failures_max times, each
 * within auth_block_time of the one before, is refused at connect until
 * auth_block_time has passed since its last failure.
 *
 * Writers take a process-shared mutex for a few dozen instructions (never
 * across I/O).  Positions come from a hash with a secret seed.  When a
 * probe path is full, the entry that expires first among those not
 * blocking gives way: a block is never pushed out early.  Blocks are per
 * instance: several instances behind a balancer do not share them.
 */
#ifndef MAILPROXY_BLOCKS_H
#define MAILPROXY_BLOCKS_H

#include <stdbool.h>

#include "addr.h"

/* Before forking (or in a test): the shared table.  0 or -1. */
int	blocks_init(void);

/* Is addr blocked now (max failures within window seconds)? */
bool	blocks_blocked(const struct sockaddr_any *addr, int max, int window);

/* One more failed login from addr; true if that blocks it now. */
bool	blocks_fail(const struct sockaddr_any *addr, int max, int window);

#endif
