/*
 * seqlock: one writer, readers in other processes, no lock a reader could
 * wait on (the shared tables of dns.c, tickets.c and sesscache.c).  The
 * writer makes the counter odd, writes, makes it even; a reader copies
 * what it needs and keeps the copy only if the counter was even and did
 * not move meanwhile.  Writers of one table must exclude each other by
 * other means (there is one writer, or a per-slot flag).
 */
#ifndef MAILPROXY_SEQLOCK_H
#define MAILPROXY_SEQLOCK_H

#include <stdbool.h>
#include <stdint.h>

static inline void
seq_write_begin(uint32_t *seq)
{
	__atomic_store_n(seq, __atomic_load_n(seq, __ATOMIC_RELAXED) + 1,
	    __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static inline void
seq_write_end(uint32_t *seq)
{
	__atomic_store_n(seq, __atomic_load_n(seq, __ATOMIC_RELAXED) + 1,
	    __ATOMIC_RELEASE);
}

/* The counter before a read; odd means a write is under way. */
static inline uint32_t
seq_read_begin(const uint32_t *seq)
{
	return __atomic_load_n(seq, __ATOMIC_ACQUIRE);
}

/* After the copy: true if it is consistent (begin was even, no write). */
static inline bool
seq_read_ok(const uint32_t *seq, uint32_t begin)
{
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return !(begin & 1) && __atomic_load_n(seq, __ATOMIC_RELAXED) == begin;
}

#endif
