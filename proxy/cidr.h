/*
 * cidr: address ranges ("192.0.2.0/24", "2001:db8::/32", "10.1.2.3") and
 * the test "is this peer inside one of them".  Pure, no allocation beyond
 * the list itself.
 */
#ifndef MAILPROXY_CIDR_H
#define MAILPROXY_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct cidr {
	int	 family;	/* AF_INET or AF_INET6 */
	uint8_t	 addr[16];	/* network bytes, host bits cleared */
	int	 prefix;	/* 0..32 or 0..128 */
};

/*
 * Parses one range.  Host bits set under the mask are an error (a typo
 * such as 10.0.0.1/8 usually is one).  Returns 0 or -1.
 */
int	cidr_parse(const char *text, struct cidr *out);

/* True if sa (AF_INET/AF_INET6; v4-mapped v6 counts as v4) is in c. */
bool	cidr_contains(const struct cidr *c, const struct sockaddr *sa);

/* True if sa is in any of the n ranges. */
bool	cidr_list_contains(const struct cidr *list, size_t n,
	    const struct sockaddr *sa);

#endif
