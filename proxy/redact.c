/*
 * redact: the credential's forms, and a copy of upstream text without them.
 */
#include "redact.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/base64.h>
#include <openssl/mem.h>

/* A base64 run shorter than this is not looked for (it would match
 * ordinary text): the secret's first or last byte shares characters with
 * its neighbours, so a short secret may leave no core at all. */
#define MIN_CORE	4

/* The raw secret, its quoted form, two base64 forms of it and two of the
 * SASL message, three alignment cores. */
#define MAX_FORMS	9

struct form {
	const char	*p;
	size_t		 len;
};

/* Every form lives in one allocation, wiped whole by redact_free(). */
struct redact {
	struct form	 forms[MAX_FORMS];	/* longest first */
	size_t		 nforms;
	char		*blob;
	size_t		 bloblen;
};

static unsigned char
lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 'a' - 'A') : c;
}

static bool
same(const char *a, const char *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
			return false;
	return true;
}

/* Bytes base64 needs for n raw bytes, NUL included. */
static size_t
b64_size(size_t n)
{
	return (n + 2) / 3 * 4 + 1;
}

/* The IMAP quoted-string inside of s: '"' and '\' escaped. */
static size_t
quote(const char *s, size_t len, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			out[o++] = '\\';
		out[o++] = s[i];
	}
	return o;
}

/* Takes n bytes of the blob. */
static void *
take(struct redact *r, size_t *used, size_t n)
{
	void *p = r->blob + *used;

	*used += n;
	return p;
}

static void
add(struct redact *r, const char *p, size_t len)
{
	struct form *f;

	if (len == 0)
		return;
	for (size_t i = 0; i < r->nforms; i++)
		if (r->forms[i].len == len && memcmp(r->forms[i].p, p, len) == 0)
			return;		/* one form can be two (no padding) */
	f = &r->forms[r->nforms++];
	f->p = p;
	f->len = len;
}

/* The padded and the unpadded base64 of raw. */
static void
add_base64(struct redact *r, size_t *used, const void *raw, size_t len)
{
	char *b = take(r, used, b64_size(len));
	size_t n = EVP_EncodeBlock((uint8_t *)b, raw, len);

	add(r, b, n);
	while (n > 0 && b[n - 1] == '=')
		n--;
	add(r, b, n);
}

/*
 * The secret's base64 inside longer base64 text, when it starts at byte
 * offset k (mod 3): the characters whose six bits all come from it.
 */
static void
add_core(struct redact *r, size_t *used, const char *secret, size_t len,
    size_t k)
{
	size_t first = (8 * k + 5) / 6, end = 8 * (k + len) / 6;
	uint8_t *raw = take(r, used, k + len);
	char *b = take(r, used, b64_size(k + len));

	memset(raw, 0, k);
	memcpy(raw + k, secret, len);
	(void)EVP_EncodeBlock((uint8_t *)b, raw, k + len);
	if (end >= first + MIN_CORE)
		add(r, b + first, end - first);
}

static int
longest_first(const void *a, const void *b)
{
	const struct form *x = a, *y = b;

	return x->len < y->len ? 1 : x->len > y->len ? -1 : 0;
}

struct redact *
redact_new(const char *secret, size_t len, const void *sasl, size_t sasl_len)
{
	struct redact *r;
	size_t used = 0, cap;
	char *q;

	if (len > SIZE_MAX / 8 || sasl_len > SIZE_MAX / 4)
		return NULL;
	cap = 3 * len + b64_size(len) + b64_size(sasl_len) +
	    3 * (len + 2 + b64_size(len + 2));
	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    (r->blob = malloc(cap)) == NULL) {
		free(r);
		return NULL;
	}
	r->bloblen = cap;
	memcpy(r->blob, secret, len);
	add(r, take(r, &used, len), len);
	q = take(r, &used, 2 * len);
	add(r, q, quote(secret, len, q));
	add_base64(r, &used, secret, len);
	if (sasl != NULL)
		add_base64(r, &used, sasl, sasl_len);
	for (size_t k = 0; k < 3; k++)
		add_core(r, &used, secret, len, k);
	qsort(r->forms, r->nforms, sizeof(r->forms[0]), longest_first);
	return r;
}

void
redact_free(struct redact *r)
{
	if (r == NULL)
		return;
	OPENSSL_cleanse(r->blob, r->bloblen);
	free(r->blob);
	free(r);
}

/* How many bytes at in are a form of the credential (0: none). */
static size_t
match(const struct redact *r, const char *in, size_t len)
{
	for (size_t i = 0; i < r->nforms; i++) {
		const struct form *f = &r->forms[i];

		if (f->len <= len && same(in, f->p, f->len))
			return f->len;		/* the longest first */
	}
	return 0;
}

size_t
redact_copy(const struct redact *r, const char *in, size_t len, char *out,
    size_t cap, bool *cut)
{
	const size_t ml = sizeof(REDACT_MARK) - 1;
	size_t i = 0, o = 0, m;

	while (i < len) {
		m = r != NULL ? match(r, in + i, len - i) : 0;
		if (m > 0) {
			if (o + ml >= cap)
				break;
			memcpy(out + o, REDACT_MARK, ml);
			o += ml;
			i += m;
		} else {
			if (o + 1 >= cap)
				break;
			out[o++] = in[i++];
		}
	}
	out[o] = '\0';
	if (cut != NULL)
		*cut = i < len;
	return o;
}
