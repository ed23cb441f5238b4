/* cidr: parsing (host bits, bounds) and matching for IPv4, IPv6, v4-mapped. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "cidr.h"
#include "unit.h"

static struct sockaddr_storage
addr(const char *text)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(text, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, text, &s6->sin6_addr);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		inet_pton(AF_INET, text, &s4->sin_addr);
	}
	return ss;
}

static bool
in(const char *range, const char *a)
{
	struct cidr c;
	struct sockaddr_storage ss = addr(a);

	return cidr_parse(range, &c) == 0 &&
	    cidr_contains(&c, (struct sockaddr *)&ss);
}

void
test_cidr(void)
{
	struct cidr c;

	CHECK(cidr_parse("10.0.0.0/8", &c) == 0 && c.prefix == 8);
	CHECK(cidr_parse("192.0.2.7", &c) == 0 && c.prefix == 32);
	CHECK(cidr_parse("2001:db8::/32", &c) == 0 && c.family == AF_INET6);
	CHECK(cidr_parse("0.0.0.0/0", &c) == 0);
	CHECK(cidr_parse("10.0.0.1/8", &c) == -1);	/* host bits set */
	CHECK(cidr_parse("10.0.0.0/33", &c) == -1);
	CHECK(cidr_parse("10.0.0.0/", &c) == -1);
	CHECK(cidr_parse("10.0.0.0/x", &c) == -1);
	CHECK(cidr_parse("mail.example.org", &c) == -1);
	CHECK(cidr_parse("", &c) == -1);

	CHECK(in("10.0.0.0/8", "10.255.1.2"));
	CHECK(!in("10.0.0.0/8", "11.0.0.1"));
	CHECK(in("192.168.1.0/25", "192.168.1.127"));
	CHECK(!in("192.168.1.0/25", "192.168.1.128"));
	CHECK(in("0.0.0.0/0", "203.0.113.9"));
	CHECK(in("127.0.0.1", "127.0.0.1") && !in("127.0.0.1", "127.0.0.2"));
	CHECK(in("2001:db8::/32", "2001:db8:ffff::1"));
	CHECK(!in("2001:db8::/32", "2001:db9::1"));
	CHECK(in("::1", "::1"));
	/* A v4 client on a dual-stack socket matches v4 ranges, not v6 ones. */
	CHECK(in("10.0.0.0/8", "::ffff:10.1.2.3"));
	CHECK(!in("::/0", "::ffff:10.1.2.3"));
	CHECK(!in("10.0.0.0/8", "2001:db8::1"));
}
