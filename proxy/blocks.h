/*
 * blocks: failed logins per client (upstream_auth = accounts): an IPv4
 * address, or an IPv6 /64 (a host picks addresses from its whole /64),
 * counted across every worker in one fixed-size table the supervisor maps
 * before forking.  A client that failed auth_failures_max times, each
 * within auth_block_time of the one before, is refused until
 * auth_block_time has passed since its last failure: at connect, and at
 * every login of a session it opened before.
 *
 * An attempt is counted when its check starts (blocks_begin()), not when it
 * ends: a client with many sessions open, or many logins pipelined, has at
 * most auth_failures_max checks under way or failed, so it cannot guess
 * past the limit while its checks run; a success gives its place back, a
 * success whose client became blocked meanwhile is refused.
 *
 * The table has three levels: the client itself (4096 entries), then its
 * wider network (IPv6 /48, IPv4 /24; 1024), then wider still (IPv6 /32,
 * IPv4 /16; 256).  A failure is counted at the first level with room on its
 * probe path, so an attacker who filled the first level with blocks (4096
 * /64s are one /52) is counted, and blocked, by its /48; the levels are
 * separate, so filling one does not fill the next.  An entry that gives way
 * to another client hands its failures to its network's entry a level up,
 * so cycling through more clients than a level holds, each under the
 * limit, is counted by network too.  When no level has room (hundreds of
 * /32s blocked), uncounted checks are capped for the whole instance
 * (BLOCKS_UNCOUNTED_PER_SECOND) instead of being free.  A block is never
 * pushed out early.  Writers take a process-shared mutex for a few
 * dozen instructions (never across I/O); positions come from a hash with a
 * secret seed.  Blocks are per instance: several instances behind a
 * balancer do not share them.
 */
#ifndef MAILPROXY_BLOCKS_H
#define MAILPROXY_BLOCKS_H

#include <stdbool.h>
#include <stdint.h>

#include "addr.h"

#define BLOCKS_LEVELS			3
/* Checks per second, for the whole instance, of clients no level can
 * count (the table is full of blocks at every level). */
#define BLOCKS_UNCOUNTED_PER_SECOND	10

/* An attempt under way: where it is counted (the session keeps it). */
struct blocks_attempt {
	uint8_t		 key[ADDR_KEYLEN];
	int8_t		 level;		/* -1: not counted (or none open) */
	uint32_t	 epoch;		/* of the entry that counts it */
	bool		 open;		/* begun, not ended */
};

enum blocks_verdict {
	BLOCKS_GO,		/* check it (begin) / accept it (end) */
	BLOCKS_BLOCKED,		/* the client is blocked: refuse */
	BLOCKS_BUSY		/* uncountable and over the cap: try later */
};

/* What /metrics shows of the table. */
struct blocks_stats {
	uint64_t	 counted[BLOCKS_LEVELS];	/* failures, by level */
	uint64_t	 uncounted;	/* checks no level could count */
	uint64_t	 capped;	/* of those, refused by the cap */
	uint64_t	 forgotten;	/* failures pushed out of the last level */
	uint32_t	 blocking[BLOCKS_LEVELS];	/* blocks in force */
	uint32_t	 used[BLOCKS_LEVELS];	/* live entries */
	uint32_t	 size[BLOCKS_LEVELS];	/* entries */
};

/* Before forking (or in a test): the shared table.  0 or -1. */
int	blocks_init(void);

/* Is addr blocked now, at any level (max failures within window s)? */
bool	blocks_blocked(const struct sockaddr_any *addr, int max, int window);

/*
 * A login of addr is about to be checked: counts it as under way, at the
 * first level with room.  BLOCKS_GO (then *at is open and must be ended),
 * BLOCKS_BLOCKED (blocked, or max checks of it failed or under way), or
 * BLOCKS_BUSY (not countable, over the cap).  *widened is set when the
 * attempt is counted at a wider level than the client's own, or not at
 * all (level -1): the caller says so in the log.
 */
enum blocks_verdict blocks_begin(const struct sockaddr_any *addr, int max,
	    int window, struct blocks_attempt *at, bool *widened);

/*
 * The check of *at is over (failed, or the client left: failed = true).
 * For a failure: BLOCKS_BLOCKED if the client is blocked now, else
 * BLOCKS_GO.  For a success: BLOCKS_GO if it may be accepted, BLOCKS_BLOCKED
 * if its client became blocked meanwhile.  Closes *at (a closed one: no-op,
 * BLOCKS_GO).
 */
enum blocks_verdict blocks_end(struct blocks_attempt *at,
	    const struct sockaddr_any *addr, bool failed, int max, int window);

/* The prefix length *at is counted under (32 or 64: the client itself;
 * shorter: a wider network), or -1: not counted. */
int	blocks_prefix(const struct blocks_attempt *at);

/* The counters and the blocks in force now. */
void	blocks_stats(struct blocks_stats *out);

/* Tests and fuzzing: the clock (ms) the table uses, NULL: CLOCK_MONOTONIC. */
void	blocks_set_clock(int64_t (*now)(void));

/* Tests and fuzzing: forget everything (a fresh table, same seed). */
void	blocks_reset(void);

#endif
