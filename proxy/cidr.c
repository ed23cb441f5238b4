/*
 * cidr: parse and match address ranges.
 */
#include "cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

int
cidr_parse(const char *text, struct cidr *out)
{
	char host[INET6_ADDRSTRLEN];
	const char *slash = strchr(text, '/');
	size_t hl = slash ? (size_t)(slash - text) : strlen(text);
	int max, bits;
	char *end;

	if (hl == 0 || hl >= sizeof(host))
		return -1;
	memcpy(host, text, hl);
	host[hl] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, host, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else
		return -1;
	bits = max;
	if (slash != NULL) {
		long v = strtol(slash + 1, &end, 10);
		if (slash[1] == '\0' || *end != '\0' || v < 0 || v > max)
			return -1;
		bits = (int)v;
	}
	out->prefix = bits;
	/* Host bits under the mask must be zero. */
	for (int i = bits; i < max; i++)
		if (out->addr[i / 8] & (0x80 >> (i % 8)))
			return -1;
	return 0;
}

bool
cidr_contains(const struct cidr *c, const struct sockaddr *sa)
{
	const uint8_t *a;
	int family;

	if (sa->sa_family == AF_INET) {
		family = AF_INET;
		a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *in6 =
		    &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(in6)) {
			family = AF_INET;
			a = in6->s6_addr + 12;
		} else {
			family = AF_INET6;
			a = in6->s6_addr;
		}
	} else
		return false;
	if (family != c->family)
		return false;
	for (int i = 0; i < c->prefix / 8; i++)
		if (a[i] != c->addr[i])
			return false;
	if (c->prefix % 8 != 0) {
		uint8_t mask = (uint8_t)(0xff << (8 - c->prefix % 8));
		if ((a[c->prefix / 8] & mask) != c->addr[c->prefix / 8])
			return false;
	}
	return true;
}

bool
cidr_list_contains(const struct cidr *list, size_t n, const struct sockaddr *sa)
{
	for (size_t i = 0; i < n; i++)
		if (cidr_contains(&list[i], sa))
			return true;
	return false;
}
