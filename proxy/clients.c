/*
 * clients: per-client session counts shared by all workers; see clients.h.
 *
 * A slot's table is open addressing with linear probing.  An entry's key is
 * written before its count becomes non-zero (release), and readers in other
 * processes read the count (acquire) before comparing the key; an entry
 * whose count fell to zero keeps its key (a tombstone the same client
 * reuses) until the table is rebuilt when the process starts.
 *
 * Each slot has its own mapping, sized for the max_connections of the
 * generation that first uses it: the supervisor grows the tables of the
 * free slots before it forks a new generation, so every worker of that
 * generation (and one restarted later) inherits every table it reads.
 * Tables only grow (a smaller one would not fit a generation still
 * running), and a worker is given a slot whose table fits.
 */
#include "clients.h"

#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define KEYLEN	ADDR_KEYLEN

struct entry {
	uint8_t		 key[KEYLEN];
	uint32_t	 count;		/* atomic */
};

struct table {
	struct entry	*e;
	size_t		 cap;		/* entries, a power of two */
};

static struct table	*tables;	/* [nslots], this process's mappings */
static int		 nslots;
static struct table	*mine;
static size_t		 tombstones;	/* in mine */

/* Twice the sessions a process may hold, so probes stay short. */
static size_t
cap_for(int capacity)
{
	size_t cap;

	for (cap = 64; cap < (size_t)capacity * 2; cap *= 2)
		;
	return cap;
}

/* A table of cap entries for slot (the old one, if any, unmapped). */
static int
map_slot(int slot, size_t cap)
{
	struct table *t = &tables[slot];
	/* Touched only where used: a quiet slot costs no resident memory. */
	void *p = mmap(NULL, cap * sizeof(struct entry), PROT_READ |
	    PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		return -1;
	if (t->e != NULL)
		munmap(t->e, t->cap * sizeof(struct entry));
	t->e = p;
	t->cap = cap;
	return 0;
}

int
clients_init(int slots, int capacity)
{
	if ((tables = calloc((size_t)slots, sizeof(*tables))) == NULL)
		return -1;
	nslots = slots;
	for (int i = 0; i < slots; i++)
		if (map_slot(i, cap_for(capacity)) < 0)
			return -1;
	mine = &tables[0];
	return 0;
}

int
clients_fit_slot(int slot, int capacity)
{
	size_t cap = cap_for(capacity);

	return tables[slot].cap >= cap ? 0 : map_slot(slot, cap);
}

bool
clients_slot_fits(int slot, int capacity)
{
	return tables[slot].cap >= cap_for(capacity);
}

void
clients_set_slot(int slot)
{
	mine = &tables[slot];
	memset(mine->e, 0, mine->cap * sizeof(*mine->e));
	tombstones = 0;
}

void
clients_clear_slot(int slot)
{
	struct table *t = &tables[slot];

	for (size_t i = 0; i < t->cap; i++)
		__atomic_store_n(&t->e[i].count, 0, __ATOMIC_RELEASE);
}

/*
 * The key's entry in t.  For reading: NULL if absent (a tombstone is
 * absent).  For writing: the key's entry, else the first tombstone on its
 * probe path, else the never-used entry that ends the path; NULL when the
 * table is full.
 */
static struct entry *
find(const struct table *t, const uint8_t key[KEYLEN], bool for_reading)
{
	static const uint8_t empty[KEYLEN];
	struct entry *tomb = NULL;

	for (size_t i = 0, at = addr_key_hash(key); i < t->cap; i++, at++) {
		struct entry *e = &t->e[at & (t->cap - 1)];
		uint32_t n = __atomic_load_n(&e->count, __ATOMIC_ACQUIRE);
		if (memcmp(e->key, key, KEYLEN) == 0)
			return for_reading && n == 0 ? NULL : e;
		if (n == 0 && memcmp(e->key, empty, KEYLEN) == 0)
			return for_reading ? NULL : tomb != NULL ? tomb : e;
		if (n == 0 && tomb == NULL)
			tomb = e;
	}
	return for_reading ? NULL : tomb;
}

/*
 * Tombstones lengthen every probe for an absent client; when they are a
 * quarter of the table it is rebuilt with the live entries only.  Readers
 * meanwhile may miss a count for an instant (undercount, never over).
 */
static void
rebuild(void)
{
	static const uint8_t empty[KEYLEN];
	struct entry *live;
	size_t n = 0;

	if ((live = calloc(mine->cap, sizeof(*live))) == NULL)
		return;
	for (size_t i = 0; i < mine->cap; i++)
		if (mine->e[i].count > 0)
			live[n++] = mine->e[i];
	for (size_t i = 0; i < mine->cap; i++) {
		__atomic_store_n(&mine->e[i].count, 0, __ATOMIC_RELEASE);
		memcpy(mine->e[i].key, empty, KEYLEN);
	}
	for (size_t i = 0; i < n; i++) {
		struct entry *e = find(mine, live[i].key, false);
		memcpy(e->key, live[i].key, KEYLEN);
		__atomic_store_n(&e->count, live[i].count, __ATOMIC_RELEASE);
	}
	free(live);
	tombstones = 0;
}

unsigned
clients_count(const struct sockaddr_any *addr)
{
	uint8_t key[KEYLEN];
	unsigned total = 0;

	addr_key(addr, key);
	for (int s = 0; s < nslots; s++) {
		struct entry *e = find(&tables[s], key, true);
		if (e != NULL)
			total += __atomic_load_n(&e->count, __ATOMIC_ACQUIRE);
	}
	return total;
}

bool
clients_add(const struct sockaddr_any *addr)
{
	uint8_t key[KEYLEN];
	struct entry *e = find(mine, addr_key(addr, key), false);

	if (e == NULL)
		return false;
	if (memcmp(e->key, key, KEYLEN) != 0) {
		static const uint8_t empty[KEYLEN];
		if (memcmp(e->key, empty, KEYLEN) != 0)
			tombstones--;		/* a tombstone reused */
		memcpy(e->key, key, KEYLEN);	/* count is 0: not read */
	} else if (e->count == 0)
		tombstones--;
	__atomic_add_fetch(&e->count, 1, __ATOMIC_RELEASE);
	return true;
}

void
clients_remove(const struct sockaddr_any *addr)
{
	uint8_t key[KEYLEN];
	struct entry *e = find(mine, addr_key(addr, key), true);

	if (e == NULL ||
	    __atomic_sub_fetch(&e->count, 1, __ATOMIC_RELEASE) != 0)
		return;
	if (++tombstones > mine->cap / 4)
		rebuild();
}
