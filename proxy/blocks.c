/*
 * blocks: the shared table of failed logins; see blocks.h.
 */
#include "blocks.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <openssl/rand.h>

#define PROBES		32

/* Each level: its entries (a power of two), and the prefix it counts. */
static const struct level {
	size_t		 first;		/* index of its first entry */
	size_t		 size;
	int		 v4_bits, v6_bits;
} levels[BLOCKS_LEVELS] = {
	{ 0, 4096, 32, 64 },
	{ 4096, 1024, 24, 48 },
	{ 5120, 256, 16, 32 },
};
#define NENTRIES	5376
_Static_assert(NENTRIES == 4096 + 1024 + 256, "levels and NENTRIES agree");

/*
 * An entry is live while expires is ahead; it may give way to another key
 * only when it blocks nobody and has no check under way (pending), so a
 * block is never pushed out early and an attempt is never lost.
 */
struct entry {
	uint8_t		 key[ADDR_KEYLEN];
	uint32_t	 failures;
	uint32_t	 pending;	/* checks begun, not ended */
	uint32_t	 limit;		/* the max of its last failure */
	uint32_t	 epoch;		/* which life of the key (pending is
					 * only given back to the same one) */
	int64_t		 expires;	/* ms; 0: free */
};

struct table {
	pthread_mutex_t	 lock;
	uint32_t	 seed;		/* of the hash: positions unguessable */
	uint32_t	 epochs;	/* entries made so far */
	int64_t		 cap_second;	/* the second the cap counts */
	uint32_t	 cap_used;	/* uncounted checks begun in it */
	uint64_t	 counted[BLOCKS_LEVELS];
	uint64_t	 uncounted, capped, forgotten;
	struct entry	 e[NENTRIES];
};

static struct table	*table;
static int64_t		(*clock_fn)(void);

int
blocks_init(void)
{
	pthread_mutexattr_t attr;
	void *p;

	p = mmap(NULL, sizeof(*table), PROT_READ | PROT_WRITE, MAP_SHARED |
	    MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	table = p;
	if (pthread_mutexattr_init(&attr) != 0 ||
	    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED) != 0 ||
	    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST) != 0 ||
	    pthread_mutex_init(&table->lock, &attr) != 0) {
		munmap(p, sizeof(*table));
		table = NULL;
		return -1;
	}
	pthread_mutexattr_destroy(&attr);
	RAND_bytes((uint8_t *)&table->seed, sizeof(table->seed));
	return 0;
}

/*
 * Whom a block covers at a level: the client (an IPv4 address, also
 * written v4-mapped, or an IPv6 /64: one host usually has a whole /64 to
 * take addresses from, so a per-address count would never add up), then
 * its wider networks.
 */
static void
mask_key(uint8_t key[ADDR_KEYLEN], int level)
{
	int bits = key[0] == AF_INET6 ? levels[level].v6_bits :
	    levels[level].v4_bits;

	for (int i = 0; i < ADDR_KEYLEN - 1; i++) {
		int keep = bits - 8 * i;
		if (keep <= 0)
			key[1 + i] = 0;
		else if (keep < 8)
			key[1 + i] &= (uint8_t)(0xff << (8 - keep));
	}
}

static void
block_key(const struct sockaddr_any *a, int level, uint8_t key[ADDR_KEYLEN])
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0xff, 0xff };

	addr_key(a, key);
	if (key[0] == AF_INET6 && memcmp(key + 1, mapped, sizeof(mapped)) == 0) {
		key[0] = AF_INET;
		memmove(key + 1, key + 13, 4);
		memset(key + 5, 0, ADDR_KEYLEN - 5);
	}
	mask_key(key, level);
}

/* FNV-1a from a secret start: where an address lands cannot be aimed at. */
static size_t
slot_of(const uint8_t key[ADDR_KEYLEN])
{
	uint32_t h = 2166136261u ^ table->seed;

	for (int i = 0; i < ADDR_KEYLEN; i++)
		h = (h ^ key[i]) * 16777619u;
	return h;
}

/* Monotonic milliseconds: the same clock in every process. */
static int64_t
now_ms(void)
{
	struct timespec ts;

	if (clock_fn != NULL)
		return clock_fn();
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A worker that died holding the lock left a table that is still sound
 * (each write is whole entries): take it over. */
static void
lock(void)
{
	if (pthread_mutex_lock(&table->lock) == EOWNERDEAD)
		pthread_mutex_consistent(&table->lock);
}

static void
unlock(void)
{
	pthread_mutex_unlock(&table->lock);
}

static struct entry *find(int, const uint8_t [ADDR_KEYLEN], int64_t, uint32_t,
	    bool);

/*
 * A live entry with failures gives way to another client: its failures
 * are not forgotten but added to its network's entry a level up (so an
 * attacker who cycles through more clients than the level holds, each
 * staying under the limit, is counted by network all the same).  Past the
 * last level they are forgotten, and counted as such.
 */
static void
fold(int level, const struct entry *e, int64_t now, uint32_t max)
{
	uint8_t wider[ADDR_KEYLEN];
	struct entry *w;

	if (level + 1 >= BLOCKS_LEVELS) {
		table->forgotten += e->failures;
		return;
	}
	memcpy(wider, e->key, ADDR_KEYLEN);
	mask_key(wider, level + 1);
	if ((w = find(level + 1, wider, now, max, true)) == NULL) {
		table->forgotten += e->failures;
		return;
	}
	w->failures += e->failures;
	w->limit = e->limit;
	if (w->expires < e->expires)
		w->expires = e->expires;
	table->counted[level + 1] += e->failures;
}

/*
 * The key's live entry at a level, or (for writing) the entry to use: a
 * free or expired one on the probe path, else the one that expires first
 * among those that may give way (its failures go to its network: fold()).
 * NULL when every entry on the path is blocking or has a check under way.
 */
static struct entry *
find(int level, const uint8_t key[ADDR_KEYLEN], int64_t now, uint32_t max,
    bool for_writing)
{
	const struct level *l = &levels[level];
	struct entry *spare = NULL;
	size_t at = slot_of(key);

	for (size_t i = 0; i < PROBES; i++) {
		struct entry *e = &table->e[l->first + ((at + i) & (l->size - 1))];
		bool live = e->expires > now;
		if (live && memcmp(e->key, key, ADDR_KEYLEN) == 0)
			return e;
		if (live && (e->failures >= max || e->pending > 0))
			continue;
		if (spare == NULL || (spare->expires > now &&
		    e->expires < spare->expires))
			spare = e;
	}
	if (!for_writing || spare == NULL)
		return NULL;
	if (spare->expires > now && spare->failures > 0)
		fold(level, spare, now, max);
	memcpy(spare->key, key, ADDR_KEYLEN);
	spare->failures = 0;
	spare->pending = 0;
	spare->limit = 0;
	spare->epoch = ++table->epochs;
	spare->expires = 0;
	return spare;
}

/* Blocked at any level?  Under the lock. */
static bool
blocked_locked(const struct sockaddr_any *addr, uint32_t max, int64_t now)
{
	uint8_t key[ADDR_KEYLEN];

	for (int level = 0; level < BLOCKS_LEVELS; level++) {
		struct entry *e;
		block_key(addr, level, key);
		if ((e = find(level, key, now, max, false)) != NULL &&
		    e->failures >= max)
			return true;
	}
	return false;
}

bool
blocks_blocked(const struct sockaddr_any *addr, int max, int window)
{
	bool blocked;

	(void)window;	/* the entry's expiry says it */
	if (table == NULL)
		return false;
	lock();
	blocked = blocked_locked(addr, (uint32_t)max, now_ms());
	unlock();
	return blocked;
}

/* No level can count the attempt: is it within the instance's cap? */
static bool
uncounted_allowed(int64_t now)
{
	table->uncounted++;
	if (table->cap_second != now / 1000) {
		table->cap_second = now / 1000;
		table->cap_used = 0;
	}
	if (table->cap_used >= BLOCKS_UNCOUNTED_PER_SECOND) {
		table->capped++;
		return false;
	}
	table->cap_used++;
	return true;
}

enum blocks_verdict
blocks_begin(const struct sockaddr_any *addr, int max, int window,
    struct blocks_attempt *at, bool *widened)
{
	int64_t now;
	uint32_t m = (uint32_t)max;
	enum blocks_verdict v = BLOCKS_GO;

	memset(at, 0, sizeof(*at));
	at->level = -1;
	*widened = false;
	if (table == NULL) {
		at->open = true;
		return BLOCKS_GO;
	}
	lock();
	now = now_ms();
	if (blocked_locked(addr, m, now)) {
		unlock();
		return BLOCKS_BLOCKED;
	}
	for (int level = 0; level < BLOCKS_LEVELS; level++) {
		struct entry *e;
		block_key(addr, level, at->key);
		if ((e = find(level, at->key, now, m, true)) == NULL)
			continue;
		if (e->failures + e->pending >= m)
			v = BLOCKS_BLOCKED;
		else {
			e->pending++;
			if (e->expires < now + (int64_t)window * 1000)
				e->expires = now + (int64_t)window * 1000;
			at->level = (int8_t)level;
			at->epoch = e->epoch;
		}
		*widened = level > 0;
		break;
	}
	if (at->level < 0 && v == BLOCKS_GO) {
		*widened = true;
		if (!uncounted_allowed(now))
			v = BLOCKS_BUSY;
	}
	at->open = v == BLOCKS_GO;
	unlock();
	return v;
}

enum blocks_verdict
blocks_end(struct blocks_attempt *at, const struct sockaddr_any *addr,
    bool failed, int max, int window)
{
	uint32_t m = (uint32_t)max;
	enum blocks_verdict v = BLOCKS_GO;
	struct entry *e = NULL;
	int64_t now;

	if (!at->open)
		return BLOCKS_GO;
	at->open = false;
	if (table == NULL)
		return BLOCKS_GO;
	lock();
	now = now_ms();
	if (at->level >= 0) {
		e = find(at->level, at->key, now, m, false);
		/* An entry that expired while the check ran and was made
		 * anew does not hold this attempt. */
		if (e != NULL && e->epoch == at->epoch && e->pending > 0)
			e->pending--;
		/* Expired meanwhile (a check longer than the window): the
		 * failure is counted anew. */
		if (failed && e == NULL)
			e = find(at->level, at->key, now, m, true);
		if (failed && e != NULL) {
			e->failures++;
			e->limit = m;
			e->expires = now + (int64_t)window * 1000;
			table->counted[at->level]++;
		}
	}
	if (!failed || e != NULL)
		v = blocked_locked(addr, m, now) ? BLOCKS_BLOCKED : BLOCKS_GO;
	unlock();
	return v;
}

int
blocks_prefix(const struct blocks_attempt *at)
{
	if (at->level < 0)
		return -1;
	return at->key[0] == AF_INET6 ? levels[at->level].v6_bits :
	    levels[at->level].v4_bits;
}

void
blocks_stats(struct blocks_stats *out)
{
	int64_t now;

	memset(out, 0, sizeof(*out));
	for (int level = 0; level < BLOCKS_LEVELS; level++)
		out->size[level] = (uint32_t)levels[level].size;
	if (table == NULL)
		return;
	lock();
	now = now_ms();
	memcpy(out->counted, table->counted, sizeof(out->counted));
	out->uncounted = table->uncounted;
	out->capped = table->capped;
	out->forgotten = table->forgotten;
	for (int level = 0; level < BLOCKS_LEVELS; level++)
		for (size_t i = 0; i < levels[level].size; i++) {
			const struct entry *e = &table->e[levels[level].first + i];
			if (e->expires <= now)
				continue;
			out->used[level]++;
			if (e->failures > 0 && e->failures >= e->limit)
				out->blocking[level]++;
		}
	unlock();
}

void
blocks_set_clock(int64_t (*now)(void))
{
	clock_fn = now;
}

void
blocks_reset(void)
{
	if (table == NULL)
		return;
	lock();
	memset(table->e, 0, sizeof(table->e));
	memset(table->counted, 0, sizeof(table->counted));
	table->uncounted = table->capped = table->forgotten = 0;
	table->cap_second = table->cap_used = 0;
	unlock();
}
