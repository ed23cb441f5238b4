/*
 * libFuzzer harness for the upstream negotiators (built once per protocol
 * with -DFUZZ_PROTO=PROTO_SMTP|PROTO_POP3|PROTO_IMAP).
 *
 * The input is the upstream's byte stream, fed in chunks whose sizes come
 * from the input's first byte.  Besides "no crash, no sanitizer report" it
 * checks the security invariants on every input:
 *  - nothing is queued for the client before neg_tls_ready() has run;
 *  - RELAY never comes before TLS is up;
 *  - after FAIL the negotiator is not used again.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "negotiate.h"

#ifndef FUZZ_PROTO
#define FUZZ_PROTO PROTO_SMTP
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct negotiator *n;
	struct buf up, cl;
	struct neg_out out = { &up, &cl };
	enum neg_verdict v = NEG_CONTINUE;
	bool tls_up = false;
	size_t chunk, off = 1;

	if (size < 1)
		return 0;
	chunk = (size_t)(data[0] % 32) + 1;
	if ((n = neg_new(FUZZ_PROTO, "fuzz.test")) == NULL)
		return 0;
	buf_init(&up, 4096);
	buf_init(&cl, 4096);
	while (off < size && v != NEG_FAIL && v != NEG_RELAY) {
		size_t len = size - off < chunk ? size - off : chunk;

		v = neg_feed(n, (const char *)data + off, len, &out);
		off += len;
		buf_release(&up);	/* "sent" */
		if (!tls_up && !buf_empty(&cl))
			abort();	/* client heard something before TLS */
		if (v == NEG_RELAY && !tls_up)
			abort();	/* relaying without TLS */
		if (v == NEG_START_TLS) {
			tls_up = true;
			v = neg_tls_ready(n, &out);
		}
	}
	if (v == NEG_FAIL && neg_reason(n)[0] == '\0')
		abort();
	buf_release(&up);
	buf_release(&cl);
	neg_free(n);
	return 0;
}
