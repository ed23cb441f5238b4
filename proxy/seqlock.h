/*
 * seqlock: one writer, readers in other processes, no lock a reader could
 * wait on (the shared tables of dns.c, tickets.c and sesscache.c).  The
 * writer makes the counter odd, writes, makes it even; a reader copies
 * what it needs and keeps the copy only if the counter was even and did
 * not move meanwhile.  Writers of one table must exclude each other by
 * other means (there is one writer, or a per-slot flag).
 *
 * A reader never waits for ever: a writer holds the counter odd for
 * microseconds, but one that died mid-write (a supervisor killed while
 * publishing) leaves it odd for good, and its readers would spin at 100%
 * CPU.  So a reader tries SEQ_READ_TRIES times, yielding the CPU after
 * SEQ_READ_SPINS (a preempted writer may be waiting for it), then gives up
 * and its caller falls back to what is safe without the table.
 */
#ifndef MAILPROXY_SEQLOCK_H
#define MAILPROXY_SEQLOCK_H

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>

#define SEQ_READ_SPINS	64
#define SEQ_READ_TRIES	1024

/* Odd from here; a counter a dead writer left odd stays odd (+1 would make
 * it even mid-write). */
static inline void
seq_write_begin(uint32_t *seq)
{
	__atomic_store_n(seq, __atomic_load_n(seq, __ATOMIC_RELAXED) | 1,
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

/*
 * After a failed read: true if the reader may try again (*tries counts,
 * start it at 0), false once it should give up.
 */
static inline bool
seq_read_again(int *tries)
{
	if (++*tries >= SEQ_READ_TRIES)
		return false;
	if (*tries >= SEQ_READ_SPINS)
		sched_yield();
	return true;
}

#endif
