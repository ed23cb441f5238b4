/*
 * libFuzzer harness for the STARTTLS-in-TLS guard, with the property as
 * its oracle.  A reference model reads the whole stream at once, line by
 * line with nothing kept short, and says where the first STARTTLS / STLS
 * command ends (or that there is none), skipping SMTP bodies, BDAT chunks
 * and IMAP literals.  The guard, fed the same bytes in pieces of any size
 * (and freed and made anew whenever it says it is idle, as the session
 * does), must say "STARTTLS" in exactly the piece where that line ends,
 * and never otherwise.  Tags, blanks and lines of any length.
 *
 * Input: byte 0 picks the protocol and the piece sizes' seed, byte 1 the
 * largest piece; the rest is the client's stream.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "guard.h"
#include "line.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LITERAL_TAIL	24	/* where a literal announcement is looked for */

static bool
only(const char *p, size_t n, const char *set)
{
	for (size_t i = 0; i < n; i++)
		if (strchr(set, p[i]) == NULL || p[i] == '\0')
			return false;
	return true;
}

/* The command word of a line: after the IMAP tag, after leading blanks,
 * up to the next space; *rest counts what follows it up to the line's
 * trailing blanks and CRs (not included). */
static const char *
verb(enum proto proto, const char *l, size_t n, size_t *vl, size_t *rest)
{
	size_t i = 0, end = n;

	while (end > 0 && (l[end - 1] == ' ' || l[end - 1] == '\t' ||
	    l[end - 1] == '\r'))
		end--;
	if (proto == PROTO_IMAP) {
		while (i < n && l[i] != ' ')
			i++;
		if (i == n)
			return NULL;		/* a tag alone */
	}
	while (i < n && (l[i] == ' ' || l[i] == '\t'))
		i++;
	if (i >= end)
		return NULL;
	*vl = 0;
	while (i + *vl < end && l[i + *vl] != ' ')
		(*vl)++;
	*rest = end - i - *vl;
	return l + i;
}

/* Where the first STARTTLS line ends (just past its LF); 0 if none. */
static size_t
model(enum proto proto, const char *d, size_t len)
{
	size_t pos = 0, vl, rest;
	uint64_t skip = 0;
	bool body = false, continued = false;

	while (pos < len) {
		const char *lf, *v, *l = d + pos;
		size_t n, t;
		uint64_t count, lit;
		bool literal;

		if (skip > 0) {
			t = len - pos < skip ? len - pos : (size_t)skip;
			skip -= t;
			pos += t;
			continue;
		}
		if ((lf = memchr(l, '\n', len - pos)) == NULL)
			return 0;		/* an unfinished line */
		n = (size_t)(lf - l);
		pos += n + 1;
		if (body) {
			body = !(n == 1 && l[0] == '.') &&
			    !(n == 2 && l[0] == '.' && l[1] == '\r');
			continue;
		}
		/* A literal is announced in the line's last bytes (its CR
		 * there, then dropped): "{" 19 digits "+}" fit. */
		t = n < LITERAL_TAIL ? n : LITERAL_TAIL;
		literal = line_imap_literal(l + n - t, t > 0 && l[n - 1] == '\r' ?
		    t - 1 : t, &lit);
		if (n > 0 && l[n - 1] == '\r')
			n--;
		v = continued ? NULL : verb(proto, l, n, &vl, &rest);
		if (v != NULL && vl == (proto == PROTO_POP3 ? 4 : 8) &&
		    strncasecmp(v, proto == PROTO_POP3 ? "STLS" : "STARTTLS",
		    vl) == 0)
			return pos;
		if (proto == PROTO_SMTP && v != NULL && vl == 4 &&
		    strncasecmp(v, "DATA", 4) == 0 && only(v + 4, rest, " \t\r"))
			body = true;
		/* "BDAT n ...": exactly one space, then 1..19 digits. */
		if (proto == PROTO_SMTP && v != NULL && vl == 4 &&
		    strncasecmp(v, "BDAT", 4) == 0 && rest > 1 && v[4] == ' ') {
			const char *c = v + 5;
			size_t cl = 0;
			while (cl < rest - 1 && c[cl] != ' ')
				cl++;
			if (line_count(c, cl, &count) && count > 0)
				skip = count;
		}
		if (proto == PROTO_IMAP && (continued = literal))
			skip = lit;
	}
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum proto protos[] = { PROTO_SMTP, PROTO_POP3, PROTO_IMAP };
	enum proto proto;
	const char *d;
	size_t len, want, off = 0, maxpiece;
	uint32_t seed;
	struct guard *g;

	if (size < 2)
		return 0;
	proto = protos[data[0] % 3];
	seed = data[0] | (uint32_t)data[1] << 8;
	maxpiece = (size_t)data[1] + 1;
	d = (const char *)data + 2;
	len = size - 2;
	want = model(proto, d, len);
	g = guard_new(proto);
	while (off < len) {
		size_t n;

		seed = seed * 1103515245u + 12345u;
		n = (size_t)(seed >> 16) % maxpiece + 1;
		if (n > len - off)
			n = len - off;
		if (guard_scan(g, d + off, n)) {
			if (want <= off || want > off + n)
				abort();	/* a hit where the model has none */
			guard_free(g);
			return 0;
		}
		off += n;
		if (want != 0 && want <= off)
			abort();		/* a STARTTLS went through */
		if (guard_idle(g)) {
			/* The session frees an idle guard: nothing may be lost. */
			guard_free(g);
			g = guard_new(proto);
		}
	}
	if (want != 0)
		abort();
	guard_free(g);
	return 0;
}
