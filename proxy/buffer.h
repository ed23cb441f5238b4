/*
 * buffer: a byte queue with a hard capacity, allocated on first use and
 * released when it empties, so that an idle session holds no relay memory.
 *
 * Producers reserve space then commit what they wrote; consumers peek at
 * the unsent bytes then consume what the sink accepted.  The unsent bytes
 * are only ever moved as a block (contents unchanged), which is what
 * BoringSSL's SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows for a retried
 * SSL_write.
 */
#ifndef MAILPROXY_BUFFER_H
#define MAILPROXY_BUFFER_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Several full TLS records (16 KiB each).  Measured with make bench: 64 KiB
 * moves ~15% more per CPU-second than 32 KiB (fewer syscalls per byte);
 * 128 KiB was slower again.  Memory is only held while bytes are in flight.
 */
#define BUF_CAPACITY	(64 * 1024)

struct buf {
	char	*data;		/* NULL while empty */
	size_t	 head;		/* first unsent byte */
	size_t	 tail;		/* one past the last byte */
	size_t	 cap;
	bool	 secret;	/* wipe the storage before freeing it */
};

/* Initialises an empty buffer that will never hold more than cap bytes. */
void	buf_init(struct buf *b, size_t cap);

/*
 * The same for bytes that are secrets (tokens, client secrets): the storage
 * is wiped whenever it is released, emptied or not.
 */
void	buf_init_secret(struct buf *b, size_t cap);

/* From now on ordinary bytes: what is no longer queued is wiped now (the
 * queued bytes stay), and releases stop wiping. */
void	buf_declassify(struct buf *b);

/* Releases the storage; the buffer stays usable (empty). */
void	buf_release(struct buf *b);

/* Bytes queued. */
size_t	buf_len(const struct buf *b);

/* Bytes that could still be queued. */
size_t	buf_room(const struct buf *b);

static inline bool
buf_empty(const struct buf *b)
{
	return b->head == b->tail;
}

/*
 * Returns a pointer to at least one free byte and stores the contiguous
 * free length in *len; NULL (and *len = 0) when full or out of memory.
 */
char	*buf_reserve(struct buf *b, size_t *len);

/* Marks n bytes written at the reserved pointer as queued. */
void	 buf_commit(struct buf *b, size_t n);

/* Copies len bytes in; returns -1 (and copies nothing) if they don't fit. */
int	 buf_append(struct buf *b, const void *p, size_t len);

/* Returns the queued bytes and their length in *len (NULL when empty). */
const char *buf_peek(const struct buf *b, size_t *len);

/* Drops n bytes from the front; frees the storage when it empties. */
void	 buf_consume(struct buf *b, size_t n);

#endif
