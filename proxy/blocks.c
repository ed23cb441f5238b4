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

#define NENTRIES	4096	/* a power of two */
#define PROBES		32

struct entry {
	uint8_t		 key[ADDR_KEYLEN];
	uint32_t	 count;
	int64_t		 expires;	/* ms, CLOCK_MONOTONIC; 0: free */
};

struct table {
	pthread_mutex_t	 lock;
	uint32_t	 seed;		/* of the hash: positions unguessable */
	struct entry	 e[NENTRIES];
};

static struct table	*table;

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
 * Whom a block covers: an IPv4 address (also written v4-mapped), or an
 * IPv6 /64 — one host usually has a whole /64 to take addresses from, so
 * a per-address count would never add up.
 */
static void
block_key(const struct sockaddr_any *a, uint8_t key[ADDR_KEYLEN])
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0xff, 0xff };

	addr_key(a, key);
	if (key[0] != AF_INET6)
		return;
	if (memcmp(key + 1, mapped, sizeof(mapped)) == 0) {
		key[0] = AF_INET;
		memmove(key + 1, key + 13, 4);
		memset(key + 5, 0, ADDR_KEYLEN - 5);
	} else
		memset(key + 9, 0, ADDR_KEYLEN - 9);
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

/*
 * The key's live entry, or (for writing) the entry to use: a free or
 * expired one on the probe path, else the one that expires first among
 * those not blocking — a block is never pushed out by others' failures.
 * NULL when every entry on the path is blocking (the failure then goes
 * uncounted; it takes 32 blocked addresses on one path).
 */
static struct entry *
find(const uint8_t key[ADDR_KEYLEN], int64_t now, uint32_t max,
    bool for_writing)
{
	struct entry *spare = NULL;
	size_t at = slot_of(key);

	for (size_t i = 0; i < PROBES; i++) {
		struct entry *e = &table->e[(at + i) & (NENTRIES - 1)];
		bool live = e->expires > now;
		if (live && memcmp(e->key, key, ADDR_KEYLEN) == 0)
			return e;
		if (live && e->count >= max)
			continue;
		if (spare == NULL || (spare->expires > now &&
		    e->expires < spare->expires))
			spare = e;
	}
	if (!for_writing || spare == NULL)
		return NULL;
	memcpy(spare->key, key, ADDR_KEYLEN);
	spare->count = 0;
	spare->expires = 0;
	return spare;
}

bool
blocks_blocked(const struct sockaddr_any *addr, int max, int window)
{
	uint8_t key[ADDR_KEYLEN];
	struct entry *e;
	bool blocked;

	(void)window;	/* the entry's expiry says it */
	if (table == NULL)
		return false;
	block_key(addr, key);
	lock();
	e = find(key, now_ms(), (uint32_t)max, false);
	blocked = e != NULL && e->count >= (uint32_t)max;
	pthread_mutex_unlock(&table->lock);
	return blocked;
}

bool
blocks_fail(const struct sockaddr_any *addr, int max, int window)
{
	uint8_t key[ADDR_KEYLEN];
	int64_t now = now_ms();
	struct entry *e;
	bool blocked;

	if (table == NULL)
		return false;
	block_key(addr, key);
	lock();
	if ((e = find(key, now, (uint32_t)max, true)) == NULL)
		blocked = false;
	else {
		e->count++;
		e->expires = now + (int64_t)window * 1000;
		blocked = e->count >= (uint32_t)max;
	}
	pthread_mutex_unlock(&table->lock);
	return blocked;
}
