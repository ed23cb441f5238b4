/*
 * proxyproto: strict PROXY protocol v1/v2 parser and builder.
 * Specification: haproxy's doc/proxy-protocol.txt.
 */
#include "proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t v2_sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a,
    0x51, 0x55, 0x49, 0x54, 0x0a };

static int
parse_port(const char *s, uint16_t *out)
{
	char *end;
	long v;

	if (*s == '\0' || (s[0] == '0' && s[1] != '\0'))
		return -1;
	v = strtol(s, &end, 10);
	if (*end != '\0' || v < 0 || v > 65535)
		return -1;
	*out = htons((uint16_t)v);
	return 0;
}

static int
set_addr(struct sockaddr_any *a, int family, const char *host, const char *port)
{
	memset(a, 0, sizeof(*a));
	if (family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
		s4->sin_family = AF_INET;
		a->len = sizeof(*s4);
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1 ||
		    parse_port(port, &s4->sin_port) < 0)
			return -1;
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
		s6->sin6_family = AF_INET6;
		a->len = sizeof(*s6);
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1 ||
		    parse_port(port, &s6->sin6_port) < 0)
			return -1;
	}
	return 0;
}

/* "PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n", single spaces, <= 107 bytes. */
static int
parse_v1(const uint8_t *buf, size_t len, struct pp_result *out)
{
	char line[108], *f[7], *save = NULL;
	const uint8_t *crlf;
	size_t n, nf = 0;
	int family;

	crlf = memchr(buf, '\r', len < 107 ? len : 107);
	if (memchr(buf, '\n', crlf ? (size_t)(crlf - buf) : len < 107 ? len : 107))
		return -1;		/* a bare LF */
	if (crlf == NULL)
		return len >= 107 ? -1 : 0;
	n = (size_t)(crlf - buf);
	if (n + 1 >= len)
		return 0;
	if (buf[n + 1] != '\n' || memchr(buf, '\0', n) != NULL)
		return -1;
	memcpy(line, buf, n);
	line[n] = '\0';
	if (strstr(line, "  ") != NULL || line[n - 1] == ' ')
		return -1;
	for (char *t = strtok_r(line, " ", &save); t != NULL && nf < 7;
	    t = strtok_r(NULL, " ", &save))
		f[nf++] = t;
	out->version = 1;
	if (nf >= 2 && strcmp(f[1], "UNKNOWN") == 0) {
		out->local = 1;
		return (int)n + 2;
	}
	if (nf != 6 || strcmp(f[0], "PROXY") != 0)
		return -1;
	if (strcmp(f[1], "TCP4") == 0)
		family = AF_INET;
	else if (strcmp(f[1], "TCP6") == 0)
		family = AF_INET6;
	else
		return -1;
	if (set_addr(&out->src, family, f[2], f[4]) < 0 ||
	    set_addr(&out->dst, family, f[3], f[5]) < 0)
		return -1;
	out->local = 0;
	return (int)n + 2;
}

/* Bytes of the address block for a v2 family; -1 if not known. */
static long
v2_addr_len(uint8_t fam)
{
	switch (fam) {
	case 0x00:	return 0;	/* UNSPEC */
	case 0x11:
	case 0x12:	return 12;	/* IPv4 */
	case 0x21:
	case 0x22:	return 36;	/* IPv6 */
	case 0x31:
	case 0x32:	return 216;	/* unix */
	default:	return -1;
	}
}

/*
 * The TLVs after the address block: each a 3-byte header and its value,
 * all inside the header's declared length.  One that runs past it, or a
 * truncated TLV header, makes the whole header malformed.
 */
static bool
v2_tlvs_fit(const uint8_t *buf, size_t total, uint8_t fam)
{
	long addr = v2_addr_len(fam);
	size_t off;

	if (addr < 0 || 16 + (size_t)addr > total)
		return false;
	for (off = 16 + (size_t)addr; off < total; ) {
		if (total - off < 3)
			return false;
		off += 3 + (size_t)(buf[off + 1] << 8 | buf[off + 2]);
	}
	return off == total;
}

static int
parse_v2(const uint8_t *buf, size_t len, struct pp_result *out)
{
	size_t body, total;
	uint8_t cmd, fam;

	if (len < 16)
		return 0;
	cmd = buf[12];
	fam = buf[13];
	body = (size_t)(buf[14] << 8 | buf[15]);
	total = 16 + body;
	if ((cmd & 0xf0) != 0x20 || (cmd & 0x0f) > 1 || total > PP_MAX_HEADER)
		return -1;
	if (len < total)
		return 0;
	if (!v2_tlvs_fit(buf, total, fam))
		return -1;
	out->version = 2;
	out->local = (cmd & 0x0f) == 0;
	if (out->local)
		return (int)total;
	memset(&out->src, 0, sizeof(out->src));
	memset(&out->dst, 0, sizeof(out->dst));
	if (fam == 0x11) {		/* TCP over IPv4 */
		struct sockaddr_in *s = (struct sockaddr_in *)&out->src.ss;
		struct sockaddr_in *d = (struct sockaddr_in *)&out->dst.ss;
		if (body < 12)
			return -1;
		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, buf + 16, 4);
		memcpy(&d->sin_addr, buf + 20, 4);
		memcpy(&s->sin_port, buf + 24, 2);
		memcpy(&d->sin_port, buf + 26, 2);
		out->src.len = out->dst.len = sizeof(*s);
	} else if (fam == 0x21) {	/* TCP over IPv6 */
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src.ss;
		struct sockaddr_in6 *d = (struct sockaddr_in6 *)&out->dst.ss;
		if (body < 36)
			return -1;
		s->sin6_family = d->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, buf + 16, 16);
		memcpy(&d->sin6_addr, buf + 32, 16);
		memcpy(&s->sin6_port, buf + 48, 2);
		memcpy(&d->sin6_port, buf + 50, 2);
		out->src.len = out->dst.len = sizeof(*s);
	} else if (fam == 0x00)
		out->local = 1;		/* UNSPEC: keep the socket's address */
	else
		return -1;		/* UDP, unix sockets: not for mail */
	return (int)total;
}

int
pp_parse(const uint8_t *buf, size_t len, struct pp_result *out)
{
	size_t n = len < 12 ? len : 12;

	memset(out, 0, sizeof(*out));
	if (memcmp(buf, v2_sig, n) == 0)
		return n < 12 ? 0 : parse_v2(buf, len, out);
	n = len < 6 ? len : 6;
	if (memcmp(buf, "PROXY ", n) == 0)
		return n < 6 ? 0 : parse_v1(buf, len, out);
	return -1;
}

size_t
pp_build(int version, const struct sockaddr_any *src,
    const struct sockaddr_any *dst, uint8_t *out, size_t cap)
{
	int v6 = src->ss.ss_family == AF_INET6;
	char sh[INET6_ADDRSTRLEN], dh[INET6_ADDRSTRLEN];
	const void *sa, *da;
	uint16_t sp, dp;
	int n;

	if (src->ss.ss_family != dst->ss.ss_family ||
	    (src->ss.ss_family != AF_INET && src->ss.ss_family != AF_INET6)) {
		/* No address pair to tell: v1 UNKNOWN, v2 LOCAL. */
		if (version == 1) {
			n = snprintf((char *)out, cap, "PROXY UNKNOWN\r\n");
			return n > 0 && (size_t)n < cap ? (size_t)n : 0;
		}
		if (cap < 16)
			return 0;
		memcpy(out, v2_sig, 12);
		out[12] = 0x20;
		out[13] = out[14] = out[15] = 0;
		return 16;
	}
	if (v6) {
		sa = &((const struct sockaddr_in6 *)&src->ss)->sin6_addr;
		da = &((const struct sockaddr_in6 *)&dst->ss)->sin6_addr;
		sp = ((const struct sockaddr_in6 *)&src->ss)->sin6_port;
		dp = ((const struct sockaddr_in6 *)&dst->ss)->sin6_port;
	} else {
		sa = &((const struct sockaddr_in *)&src->ss)->sin_addr;
		da = &((const struct sockaddr_in *)&dst->ss)->sin_addr;
		sp = ((const struct sockaddr_in *)&src->ss)->sin_port;
		dp = ((const struct sockaddr_in *)&dst->ss)->sin_port;
	}
	if (version == 1) {
		inet_ntop(v6 ? AF_INET6 : AF_INET, sa, sh, sizeof(sh));
		inet_ntop(v6 ? AF_INET6 : AF_INET, da, dh, sizeof(dh));
		n = snprintf((char *)out, cap, "PROXY %s %s %s %u %u\r\n",
		    v6 ? "TCP6" : "TCP4", sh, dh, ntohs(sp), ntohs(dp));
		return n > 0 && (size_t)n < cap ? (size_t)n : 0;
	}
	size_t alen = v6 ? 36 : 12;
	if (cap < 16 + alen)
		return 0;
	memcpy(out, v2_sig, 12);
	out[12] = 0x21;			/* version 2, PROXY */
	out[13] = v6 ? 0x21 : 0x11;	/* TCP over IPv6 / IPv4 */
	out[14] = 0;
	out[15] = (uint8_t)alen;
	memcpy(out + 16, sa, v6 ? 16 : 4);
	memcpy(out + 16 + (v6 ? 16 : 4), da, v6 ? 16 : 4);
	memcpy(out + 16 + (v6 ? 32 : 8), &sp, 2);
	memcpy(out + 18 + (v6 ? 32 : 8), &dp, 2);
	return 16 + alen;
}
