/*
 * buffer: bounded, lazily allocated byte queue.
 */
#include "buffer.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/mem.h>

void
buf_init(struct buf *b, size_t cap)
{
	b->data = NULL;
	b->head = b->tail = 0;
	b->cap = cap;
	b->secret = false;
}

void
buf_init_secret(struct buf *b, size_t cap)
{
	buf_init(b, cap);
	b->secret = true;
}

void
buf_release(struct buf *b)
{
	/* All of it: a slide in buf_reserve leaves copies past the tail. */
	if (b->secret && b->data != NULL)
		OPENSSL_cleanse(b->data, b->cap);
	free(b->data);
	b->data = NULL;
	b->head = b->tail = 0;
}

void
buf_declassify(struct buf *b)
{
	/* What was consumed, and copies a slide left past the tail. */
	if (b->secret && b->data != NULL) {
		OPENSSL_cleanse(b->data, b->head);
		OPENSSL_cleanse(b->data + b->tail, b->cap - b->tail);
	}
	b->secret = false;
}

size_t
buf_len(const struct buf *b)
{
	return b->tail - b->head;
}

size_t
buf_room(const struct buf *b)
{
	return b->cap - buf_len(b);
}

char *
buf_reserve(struct buf *b, size_t *len)
{
	*len = 0;
	if (buf_room(b) == 0)
		return NULL;
	if (b->data == NULL && (b->data = malloc(b->cap)) == NULL)
		return NULL;
	/* Slide the unsent block to the front when the tail is full. */
	if (b->tail == b->cap) {
		memmove(b->data, b->data + b->head, buf_len(b));
		b->tail -= b->head;
		b->head = 0;
	}
	*len = b->cap - b->tail;
	return b->data + b->tail;
}

void
buf_commit(struct buf *b, size_t n)
{
	b->tail += n;
}

int
buf_append(struct buf *b, const void *p, size_t len)
{
	const char *src = p;
	char *dst;
	size_t n;

	if (len > buf_room(b))
		return -1;
	while (len > 0) {
		if ((dst = buf_reserve(b, &n)) == NULL)
			return -1;
		if (n > len)
			n = len;
		memcpy(dst, src, n);
		buf_commit(b, n);
		src += n;
		len -= n;
	}
	return 0;
}

const char *
buf_peek(const struct buf *b, size_t *len)
{
	*len = buf_len(b);
	return *len == 0 ? NULL : b->data + b->head;
}

void
buf_consume(struct buf *b, size_t n)
{
	b->head += n;
	if (b->head == b->tail)
		buf_release(b);
}
