/* buffer: capacity, lazy allocation, release on empty, block moves. */
#include <stdlib.h>

#include "buffer.h"
#include "unit.h"

static void
test_lazy_and_release(void)
{
	struct buf b;
	size_t len;

	buf_init(&b, 16);
	CHECK(b.data == NULL);
	CHECK(buf_empty(&b));
	CHECK(buf_room(&b) == 16);
	CHECK(buf_peek(&b, &len) == NULL && len == 0);
	CHECK(buf_append(&b, "hello", 5) == 0);
	CHECK(b.data != NULL);
	CHECK(buf_len(&b) == 5);
	buf_consume(&b, 5);
	CHECK(b.data == NULL);		/* freed as soon as it empties */
	CHECK(buf_empty(&b));
	buf_release(&b);
}

static void
test_capacity_is_hard(void)
{
	struct buf b;
	size_t len;
	char *p;

	buf_init(&b, 8);
	CHECK(buf_append(&b, "12345678", 8) == 0);
	CHECK(buf_room(&b) == 0);
	CHECK(buf_reserve(&b, &len) == NULL && len == 0);
	CHECK(buf_append(&b, "9", 1) == -1);
	CHECK(buf_len(&b) == 8);
	buf_release(&b);

	buf_init(&b, 8);
	CHECK(buf_append(&b, "123456789", 9) == -1);	/* nothing copied */
	CHECK(buf_empty(&b));
	p = buf_reserve(&b, &len);
	CHECK(p != NULL && len == 8);
	buf_release(&b);
}

static void
test_slide_keeps_unsent_bytes(void)
{
	struct buf b;
	const char *p;
	size_t len;
	char *w;

	buf_init(&b, 8);
	CHECK(buf_append(&b, "abcdefgh", 8) == 0);
	buf_consume(&b, 5);			/* "fgh" unsent at the end */
	w = buf_reserve(&b, &len);		/* tail full: block slides */
	CHECK(w != NULL && len == 5);
	p = buf_peek(&b, &len);
	CHECK(len == 3 && memcmp(p, "fgh", 3) == 0);
	CHECK(buf_append(&b, "ijklm", 5) == 0);
	p = buf_peek(&b, &len);
	CHECK(len == 8 && memcmp(p, "fghijklm", 8) == 0);
	buf_release(&b);
}

static void
test_wraps_many_times(void)
{
	struct buf b;
	unsigned char in = 0, out = 0;
	const char *p;
	size_t len, i, total = 0;
	int ok = 1;

	buf_init(&b, 64);
	/* Producer writes 7 at a time, consumer takes 5: bytes stay in order. */
	for (int round = 0; round < 1000; round++) {
		char chunk[7];
		for (i = 0; i < sizeof(chunk); i++)
			chunk[i] = (char)in++;
		if (buf_append(&b, chunk, sizeof(chunk)) < 0)
			in = (unsigned char)(in - sizeof(chunk));
		p = buf_peek(&b, &len);
		if (len > 5)
			len = 5;
		for (i = 0; i < len; i++)
			ok &= (unsigned char)p[i] == out++;
		buf_consume(&b, len);
		total += len;
	}
	CHECK(ok);
	CHECK(total > 4000);
	buf_release(&b);
}

void
test_buffer(void)
{
	test_lazy_and_release();
	test_capacity_is_hard();
	test_slide_keeps_unsent_bytes();
	test_wraps_many_times();
}
