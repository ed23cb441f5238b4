/*
 * addr: address helpers; see addr.h.
 */
#include "addr.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A port as written: 1 to 5 digits, 0..65535 (0: listen on any free port). */
static bool
port_valid(const char *port)
{
	size_t n = strlen(port);

	return n >= 1 && n <= 5 && strspn(port, "0123456789") == n &&
	    strtoul(port, NULL, 10) <= 65535;
}

/* Splits "host:port" or "[v6]:port"; host "*" or empty means any. */
int
hostport_split(const char *v, char **host, char **port)
{
	const char *colon;
	size_t hlen;

	if (*v == '[') {
		const char *close = strchr(v, ']');
		if (close == NULL || close[1] != ':')
			return -1;
		hlen = (size_t)(close - v - 1);
		*host = strndup(v + 1, hlen);
		colon = close + 1;
	} else {
		if ((colon = strrchr(v, ':')) == NULL ||
		    memchr(v, ':', (size_t)(colon - v)) != NULL)
			return -1;	/* bare v6 without brackets */
		*host = strndup(v, (size_t)(colon - v));
	}
	*port = strdup(colon + 1);
	if (*host == NULL || *port == NULL || !port_valid(*port)) {
		free(*host);
		free(*port);
		*host = *port = NULL;
		return -1;
	}
	return 0;
}

bool
addr_is_ip_literal(const char *host)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, host, buf) == 1 ||
	    inet_pton(AF_INET6, host, buf) == 1;
}

bool
addr_equal(const struct sockaddr_any *a, const struct sockaddr_any *b)
{
	return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

bool
addr_port_is_zero(const struct sockaddr_any *a)
{
	if (a->ss.ss_family == AF_INET6)
		return ((const struct sockaddr_in6 *)&a->ss)->sin6_port == 0;
	return ((const struct sockaddr_in *)&a->ss)->sin_port == 0;
}

int
addr_resolve(const char *host, const char *port, bool passive, bool numeric,
    struct sockaddr_any **out, const char **why)
{
	struct addrinfo hints, *res, *ai;
	int rc, n = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = (passive ? AI_PASSIVE : 0) |
	    (numeric ? AI_NUMERICHOST : 0);
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		*why = gai_strerror(rc);
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next)
		n++;
	if ((*out = calloc((size_t)n, sizeof(**out))) == NULL) {
		freeaddrinfo(res);
		*why = "out of memory";
		return -1;
	}
	n = 0;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		memcpy(&(*out)[n].ss, ai->ai_addr, ai->ai_addrlen);
		(*out)[n++].len = ai->ai_addrlen;
	}
	freeaddrinfo(res);
	return n;
}

void
sockaddr_host(const struct sockaddr *sa, char *buf, size_t len)
{
	const void *a = sa->sa_family == AF_INET6 ?
	    (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr :
	    (const void *)&((const struct sockaddr_in *)sa)->sin_addr;

	if ((sa->sa_family != AF_INET && sa->sa_family != AF_INET6) ||
	    inet_ntop(sa->sa_family, a, buf, (socklen_t)len) == NULL)
		snprintf(buf, len, "?");
}

void
sockaddr_text(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(s6->sin6_port));
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(s4->sin_port));
	} else
		snprintf(buf, len, "?");
}

size_t
addr_key_hash(const uint8_t key[ADDR_KEYLEN])
{
	uint32_t h = 2166136261u;

	for (int i = 0; i < ADDR_KEYLEN; i++)
		h = (h ^ key[i]) * 16777619u;
	return h;
}

const uint8_t *
addr_key(const struct sockaddr_any *a, uint8_t key[ADDR_KEYLEN])
{
	memset(key, 0, ADDR_KEYLEN);
	key[0] = (uint8_t)a->ss.ss_family;
	if (a->ss.ss_family == AF_INET)
		memcpy(key + 1, &((const struct sockaddr_in *)&a->ss)->sin_addr, 4);
	else if (a->ss.ss_family == AF_INET6)
		memcpy(key + 1, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
		    16);
	return key;
}
