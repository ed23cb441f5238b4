/*
 * libFuzzer harness for the PROXY protocol parser: any input parses to a
 * length within it, asks for more, or is refused; and a parsed header built
 * again parses to the same addresses.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pp_result r, again;
	uint8_t out[PP_MAX_HEADER];
	int n = pp_parse(data, size, &r);
	size_t m;

	if (n > (int)size || n > PP_MAX_HEADER)
		abort();
	if (n <= 0 || r.local)
		return 0;
	m = pp_build(r.version, &r.src, &r.dst, out, sizeof(out));
	if (m == 0 || pp_parse(out, m, &again) != (int)m ||
	    memcmp(&again.src.ss, &r.src.ss, r.src.len) != 0)
		abort();
	return 0;
}
