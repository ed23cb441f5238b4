/*
 * libFuzzer harness for the upstream negotiators (built once per protocol
 * with -DFUZZ_PROTO=PROTO_SMTP|PROTO_POP3|PROTO_IMAP).
 *
 * The input's first byte picks the chunk size and the mode (upstream side
 * with or without STARTTLS and client greeting, or the client side); the
 * rest is the peer's byte stream.  Besides "no crash, no sanitizer report" it
 * checks the security invariants on every input:
 *  - nothing is queued for the client before neg_tls_ready() has run;
 *  - RELAY never comes before TLS is up;
 *  - after FAIL the negotiator is not used again;
 *  - SMTP with upstream_auth (bit 0x10): the secret never reaches the
 *    client nor the failure detail;
 *  - SMTP front (bits 0x30, the device's side of upstream_auth): only whole
 *    lines are consumed, and RELAY leaves exactly a MAIL line first;
 *  - guard (bits 0x70, STARTTLS inside TLS): the verdict does not depend
 *    on how the bytes are split.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <strings.h>

#include "config.h"
#include "front.h"
#include "guard.h"
#include "negotiate.h"

#define FUZZ_SECRET	"s3cr3t-Zm9v"

#ifndef FUZZ_PROTO
#define FUZZ_PROTO PROTO_SMTP
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Everything the proxy says is whole CRLF lines (a NUL or a literal in
 * the client's line never cuts or garbles the answer). */
static bool
replies_are_lines(const struct buf *b)
{
	size_t len;
	const char *p = buf_peek(b, &len);

	if (p == NULL)
		return true;
	if (len < 2 || p[len - 2] != '\r' || p[len - 1] != '\n' ||
	    memchr(p, '\0', len) != NULL)
		return false;
	for (size_t i = 0; i < len; i++)
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			return false;
	return true;
}

/*
 * Client side (client_tls = starttls): the proxy answers a client.  Checks
 * that nothing past the STARTTLS line is consumed, and that plaintext after
 * it in the same read always fails the session.
 */
static void
fuzz_client_side(const uint8_t *data, size_t size, size_t chunk)
{
	struct cneg *c = cneg_new(FUZZ_PROTO, "fuzz.test");
	struct buf cl;
	enum cneg_verdict v = CNEG_CONTINUE;
	size_t off = 0, consumed;

	if (c == NULL)
		return;
	buf_init(&cl, 1 << 16);
	cneg_greet(c, &cl);
	while (off < size && v == CNEG_CONTINUE) {
		size_t len = size - off < chunk ? size - off : chunk;

		v = cneg_feed(c, (const char *)data + off, len, &consumed, &cl);
		if (consumed > len)
			abort();
		if (v == CNEG_START_TLS && consumed < len &&
		    data[off + consumed] != 0x16)
			abort();	/* plaintext would reach the handshake */
		if (v == CNEG_START_TLS && (consumed == 0 ||
		    data[off + consumed - 1] != '\n'))
			abort();	/* consumed into the TLS bytes */
		if (v == CNEG_CONTINUE && consumed != len)
			abort();
		if (v == CNEG_FAIL && cneg_reason(c) ==
		    R_CLIENT_LITERAL_BEFORE_STARTTLS && (consumed == 0 ||
		    data[off + consumed - 1] != '\n'))
			abort();	/* a literal's bytes read as commands */
		if (!replies_are_lines(&cl))
			abort();
		off += consumed;
		buf_release(&cl);
	}
	buf_release(&cl);
	cneg_free(c);
}

/* The device's side of upstream_auth, fed as a session does. */
static void
fuzz_front(const uint8_t *data, size_t size, size_t chunk)
{
	struct front *f = front_new("fuzz.test", "PIPELINING\r\nSIZE 10\r\n",
	    chunk & 1);
	static char pending[FRONT_MAX_LINE * 2];
	size_t have = 0, off = 0, consumed;
	enum front_verdict v = FRONT_CONTINUE;
	struct buf cl;

	if (f == NULL)
		return;
	buf_init(&cl, 1 << 16);
	while (off < size && v == FRONT_CONTINUE) {
		size_t len = size - off < chunk ? size - off : chunk;

		if (have + len > sizeof(pending))
			break;
		memcpy(pending + have, data + off, len);
		have += len;
		off += len;
		v = front_feed(f, pending, have, &consumed, &cl);
		if (consumed > have || (consumed > 0 && pending[consumed - 1] != '\n'))
			abort();	/* only whole lines */
		if (v == FRONT_RELAY && (have - consumed < 4 ||
		    strncasecmp(pending + consumed, "MAIL", 4) != 0))
			abort();	/* the relay must start at MAIL */
		memmove(pending, pending + consumed, have - consumed);
		have -= consumed;
		buf_release(&cl);
	}
	buf_release(&cl);
	front_free(f);
}

/* Whole or in chunks, the guard must see the same thing. */
static void
fuzz_guard(const uint8_t *data, size_t size, size_t chunk)
{
	struct guard *whole = guard_new(FUZZ_PROTO), *split = guard_new(FUZZ_PROTO);
	bool a, b = false;

	if (whole == NULL || split == NULL)
		abort();
	a = guard_scan(whole, (const char *)data, size);
	for (size_t off = 0; off < size && !b; off += chunk)
		b = guard_scan(split, (const char *)data + off,
		    size - off < chunk ? size - off : chunk);
	if (a != b)
		abort();
	guard_free(whole);
	guard_free(split);
}

/* Is the secret anywhere in the client's buffer? */
static bool
leaked(const struct buf *b)
{
	size_t len;
	const char *p = buf_peek(b, &len);

	return p != NULL && memmem(p, len, FUZZ_SECRET, strlen(FUZZ_SECRET));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct negotiator *n;
	struct buf up, cl;
	struct neg_out out = { &up, &cl };
	enum neg_verdict v = NEG_CONTINUE;
	bool tls_up = false, starttls, greet, auth;
	size_t chunk, off = 1;

	if (size < 1)
		return 0;
	chunk = (size_t)(data[0] % 16) + 1;
	if ((data[0] & 0x70) == 0x70) {
		fuzz_guard(data + 1, size - 1, chunk);
		return 0;
	}
	if (FUZZ_PROTO == PROTO_SMTP && (data[0] & 0x70) == 0x30) {
		fuzz_front(data + 1, size - 1, chunk);
		return 0;
	}
	if (data[0] & 0x20) {
		fuzz_client_side(data + 1, size - 1, chunk);
		return 0;
	}
	starttls = !(data[0] & 0x40);
	greet = !(data[0] & 0x80);
	if ((n = neg_new(FUZZ_PROTO, "fuzz.test", starttls, greet)) == NULL)
		return 0;
	auth = FUZZ_PROTO == PROTO_SMTP && (data[0] & 0x10);
	if (auth && neg_set_auth(n, AUTH_PLAIN + (int)(chunk % 3), "alice",
	    FUZZ_SECRET, strlen(FUZZ_SECRET)) < 0)
		abort();
	buf_init(&up, 16384);
	buf_init(&cl, 4096);
	while (off < size && v != NEG_FAIL && v != NEG_RELAY) {
		size_t len = size - off < chunk ? size - off : chunk;

		v = neg_feed(n, (const char *)data + off, len, &out);
		off += len;
		buf_release(&up);	/* "sent" */
		/* (Implicit TLS with auth: TLS was up from the start.) */
		if (!tls_up && !(auth && !starttls) && !buf_empty(&cl))
			abort();	/* client heard something before TLS */
		if (leaked(&cl) && memmem(data, size, FUZZ_SECRET,
		    strlen(FUZZ_SECRET)) == NULL)
			abort();
		if (v == NEG_RELAY && !tls_up && starttls)
			abort();	/* relaying without TLS */
		if (v == NEG_START_TLS) {
			if (!starttls)
				abort();
			tls_up = true;
			v = neg_tls_ready(n, &out);
		}
	}
	if (v == NEG_FAIL && (neg_reason(n) == R_NONE || neg_reason(n) >= R_COUNT))
		abort();
	/* With a login, not even when the upstream said it: what it says
	 * is redacted.  (Without one, FUZZ_SECRET is no secret.) */
	if (auth && (strstr(neg_detail(n), FUZZ_SECRET) != NULL ||
	    (v == NEG_RELAY && strstr(neg_caps(n), FUZZ_SECRET) != NULL)))
		abort();
	if (!auth && strstr(neg_detail(n), FUZZ_SECRET) != NULL &&
	    memmem(data, size, FUZZ_SECRET, strlen(FUZZ_SECRET)) == NULL)
		abort();
	/* A goodbye at any point of the dialogue: a whole line, or none. */
	if (v == NEG_CONTINUE && neg_goodbye(n, &out) &&
	    !replies_are_lines(&up))
		abort();
	if (!greet && !buf_empty(&cl))
		abort();	/* the client was greeted already */
	buf_release(&up);
	buf_release(&cl);
	neg_free(n);
	return 0;
}
