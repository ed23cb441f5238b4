/*
 * libFuzzer harness for the HTTP response parser (http.h), with
 * itself as the oracle: the response fed whole, cut in two and one byte at
 * a time must end the same way (progress, status, body, bytes taken, error),
 * and the body stays within HTTPS_MAX_BODY and NUL-terminated.
 *
 * Input: byte 0 picks head_only (bit 0), the EOF after the bytes (bits 1-2:
 * none, clean, unclean) and where the cut falls (bits 3-7); the rest is
 * what the server sent.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "https.h"
#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	struct http_parser	 p;
	enum http_progress	 pr;
	size_t			 taken;
};

/* Feeds text in pieces of at most step bytes, the first one first bytes. */
static void
feed(struct run *r, bool head_only, int eof, const char *text, size_t len,
    size_t first, size_t step)
{
	size_t at = 0, n, used;

	http_parser_init(&r->p, head_only);
	r->pr = HTTP_MORE;
	r->taken = 0;
	while (at < len && r->pr == HTTP_MORE) {
		n = at == 0 && first > 0 ? first : step;
		if (n > len - at)
			n = len - at;
		r->pr = http_feed(&r->p, text + at, n, &used);
		if (used > n || (r->pr == HTTP_MORE && used != n))
			abort();
		r->taken += used;
		at += n;
	}
	if (r->pr == HTTP_MORE && eof != 0)
		r->pr = http_eof(&r->p, eof == 1);
	if (r->p.body_len > HTTPS_MAX_BODY ||
	    (r->p.body != NULL && r->p.body[r->p.body_len] != '\0') ||
	    (r->pr == HTTP_ERROR && r->p.error == NULL))
		abort();
}

static bool
same(const struct run *a, const struct run *b)
{
	if (a->pr != b->pr)
		return false;
	if (a->pr == HTTP_ERROR)
		return strcmp(a->p.error, b->p.error) == 0;
	if (a->pr == HTTP_MORE)
		return a->taken == b->taken;
	return a->taken == b->taken && a->p.status == b->p.status &&
	    a->p.body_len == b->p.body_len && (a->p.body_len == 0 ||
	    memcmp(a->p.body, b->p.body, a->p.body_len) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct run whole, cut, bytes;
	const char *text = (const char *)data + 1;
	size_t len, at;
	bool head_only;
	int eof;

	if (size < 1)
		return 0;
	len = size - 1;
	head_only = data[0] & 1;
	eof = (data[0] >> 1) & 3;
	if (eof == 3)
		eof = 0;
	at = len * (size_t)(data[0] >> 3) / 31;
	feed(&whole, head_only, eof, text, len, 0, len > 0 ? len : 1);
	feed(&cut, head_only, eof, text, len, at, len > 0 ? len : 1);
	feed(&bytes, head_only, eof, text, len, 0, 1);
	if (!same(&whole, &cut) || !same(&whole, &bytes))
		abort();
	http_parser_wipe(&whole.p);
	http_parser_wipe(&cut.p);
	http_parser_wipe(&bytes.p);
	return 0;
}
