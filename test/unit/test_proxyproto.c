/* proxyproto: v1 and v2 parsing (every split, every malformation) and the
 * builder's output parsed back. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "proxyproto.h"
#include "unit.h"

static const char v1_tcp4[] = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 993\r\n";
static const char v1_tcp6[] = "PROXY TCP6 2001:db8::1 2001:db8::2 4000 465\r\n";

static void
check_v4(const struct pp_result *r, const char *src, unsigned port)
{
	const struct sockaddr_in *s = (const struct sockaddr_in *)&r->src.ss;
	char text[INET_ADDRSTRLEN];

	CHECK(s->sin_family == AF_INET);
	inet_ntop(AF_INET, &s->sin_addr, text, sizeof(text));
	CHECK(strcmp(text, src) == 0);
	CHECK(ntohs(s->sin_port) == port);
}

static void
test_v1(void)
{
	struct pp_result r;
	size_t len = strlen(v1_tcp4);
	char buf[300];

	CHECK(pp_parse((const uint8_t *)v1_tcp4, len, &r) == (int)len);
	CHECK(r.version == 1 && !r.local);
	check_v4(&r, "192.0.2.1", 56324);
	/* Every prefix asks for more, never misparses. */
	for (size_t k = 1; k < len; k++)
		CHECK(pp_parse((const uint8_t *)v1_tcp4, k, &r) == 0);
	/* Followed by a ClientHello: only the header is the header. */
	snprintf(buf, sizeof(buf), "%s\x16\x03\x01", v1_tcp4);
	CHECK(pp_parse((const uint8_t *)buf, len + 3, &r) == (int)len);
	CHECK(pp_parse((const uint8_t *)v1_tcp6, strlen(v1_tcp6), &r) ==
	    (int)strlen(v1_tcp6));
	CHECK(r.src.ss.ss_family == AF_INET6);
	CHECK(pp_parse((const uint8_t *)"PROXY UNKNOWN\r\n", 15, &r) == 15 &&
	    r.local);

	static const char *const bad[] = {
		"PROXY TCP4 192.0.2.1 198.51.100.2 56324 99999\r\n",
		"PROXY TCP4 192.0.2.1  198.51.100.2 56324 993\r\n",
		"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",
		"PROXY TCP5 192.0.2.1 198.51.100.2 1 2\r\n",
		"PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n",
		"PROXY TCP4 192.0.2.1 198.51.100.2 01 2\r\n",
		"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n",
		"GET / HTTP/1.1\r\n",
		"\x16\x03\x01\x02\x00",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		CHECK(pp_parse((const uint8_t *)bad[i], strlen(bad[i]), &r) == -1);
	/* No CRLF within 107 bytes: invalid, not "need more" forever. */
	memset(buf, 'A', sizeof(buf));
	memcpy(buf, "PROXY ", 6);
	CHECK(pp_parse((const uint8_t *)buf, 200, &r) == -1);
}

static void
test_v2_and_build(void)
{
	struct sockaddr_any src, dst;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&src.ss;
	struct sockaddr_in *d4 = (struct sockaddr_in *)&dst.ss;
	uint8_t hdr[PP_MAX_HEADER];
	struct pp_result r;
	size_t n;

	memset(&src, 0, sizeof(src));
	memset(&dst, 0, sizeof(dst));
	s4->sin_family = d4->sin_family = AF_INET;
	inet_pton(AF_INET, "203.0.113.7", &s4->sin_addr);
	inet_pton(AF_INET, "127.0.0.1", &d4->sin_addr);
	s4->sin_port = htons(40000);
	d4->sin_port = htons(143);
	src.len = dst.len = sizeof(*s4);

	n = pp_build(2, &src, &dst, hdr, sizeof(hdr));
	CHECK(n == 28);
	CHECK(pp_parse(hdr, n, &r) == 28 && r.version == 2 && !r.local);
	check_v4(&r, "203.0.113.7", 40000);
	for (size_t k = 1; k < n; k++)
		CHECK(pp_parse(hdr, k, &r) == 0);
	n = pp_build(1, &src, &dst, hdr, sizeof(hdr));
	CHECK(n == strlen("PROXY TCP4 203.0.113.7 127.0.0.1 40000 143\r\n"));
	CHECK(pp_parse(hdr, n, &r) == (int)n);
	check_v4(&r, "203.0.113.7", 40000);

	/* v2 LOCAL (health checks) and a bad command / family. */
	n = pp_build(2, &src, &dst, hdr, sizeof(hdr));
	hdr[12] = 0x20;
	CHECK(pp_parse(hdr, n, &r) == (int)n && r.local);
	hdr[12] = 0x22;
	CHECK(pp_parse(hdr, n, &r) == -1);
	hdr[12] = 0x21;
	hdr[13] = 0x12;				/* UDP */
	CHECK(pp_parse(hdr, n, &r) == -1);
	hdr[13] = 0x11;
	hdr[15] = 4;				/* too short for IPv4 */
	CHECK(pp_parse(hdr, 20, &r) == -1);
	hdr[14] = 0xff;				/* longer than we accept */
	CHECK(pp_parse(hdr, n, &r) == -1);
}

/* Builds a v2 PROXY TCP4 header with the given TLV bytes after the
 * addresses; returns its length. */
static size_t
v2_with_tlvs(uint8_t *hdr, const uint8_t *tlvs, size_t tlen, uint8_t cmd)
{
	static const uint8_t head[16] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
	    0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0, 0 };
	static const uint8_t addrs[12] = { 203, 0, 113, 7, 127, 0, 0, 1,
	    0x9c, 0x40, 0x00, 0x8f };

	memcpy(hdr, head, 16);
	hdr[12] = cmd;
	hdr[14] = (uint8_t)((12 + tlen) >> 8);
	hdr[15] = (uint8_t)(12 + tlen);
	memcpy(hdr + 16, addrs, 12);
	memcpy(hdr + 28, tlvs, tlen);
	return 28 + tlen;
}

/* Every TLV lies inside the declared length, or the header is refused. */
static void
test_v2_tlvs(void)
{
	static const struct { const char *name; const char *tlvs; size_t len;
	    int ok; } t[] = {
		{ "alpn, authority, noop", "\x01\x00\x04imap\x02\x00\x09mail.test"
		    "\x04\x00\x00", 22, 1 },
		{ "one empty TLV", "\x04\x00\x00", 3, 1 },
		{ "value runs past the header", "\x02\x00\x0amail", 7, 0 },
		{ "second value runs past", "\x04\x00\x00\x02\x00\x05mail", 10, 0 },
		{ "a lone type byte", "\x04", 1, 0 },
		{ "a truncated TLV header", "\x04\x00", 2, 0 },
		{ "a good TLV, then a truncated one", "\x04\x00\x00\x01\x00", 5, 0 },
	};
	uint8_t hdr[PP_MAX_HEADER];
	struct pp_result r;

	for (size_t i = 0; i < sizeof(t) / sizeof(*t); i++) {
		for (uint8_t cmd = 0x20; cmd <= 0x21; cmd++) {	/* LOCAL, PROXY */
			size_t n = v2_with_tlvs(hdr, (const uint8_t *)t[i].tlvs,
			    t[i].len, cmd);
			int rc = pp_parse(hdr, n, &r);
			CHECK(t[i].ok ? rc == (int)n : rc == -1);
			if (t[i].ok ? rc != (int)n : rc != -1)
				fprintf(stderr, "  pp tlv %s: %d\n", t[i].name, rc);
			if (t[i].ok && cmd == 0x21)
				check_v4(&r, "203.0.113.7", 40000);
		}
	}
}

void
test_proxyproto(void)
{
	test_v1();
	test_v2_and_build();
	test_v2_tlvs();
}
