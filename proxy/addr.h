/*
 * addr: socket addresses as the configuration writes and the logs show
 * them: host:port splitting, formatting, comparison and resolution.
 */
#ifndef MAILPROXY_ADDR_H
#define MAILPROXY_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct sockaddr_any {
	struct sockaddr_storage	 ss;
	socklen_t		 len;
};

/*
 * Splits "host:port" or "[v6]:port" into malloc'ed parts; the port must be
 * 1 to 5 digits, 0..65535.  Returns -1 (nothing allocated) if not.
 */
int	hostport_split(const char *v, char **host, char **port);

bool	addr_is_ip_literal(const char *host);
bool	addr_equal(const struct sockaddr_any *a, const struct sockaddr_any *b);
bool	addr_port_is_zero(const struct sockaddr_any *a);

/*
 * Every address of host:port (host NULL: the wildcard, with passive),
 * numeric: no DNS.  Returns how many (a calloc'ed array in *out), or -1
 * with the resolver's message in *why.
 */
int	addr_resolve(const char *host, const char *port, bool passive,
	    bool numeric, struct sockaddr_any **out, const char **why);

/* A host as a fixed-size key (family, then the address bytes; the port
 * is not part of it): what the shared per-client tables are keyed by. */
#define ADDR_KEYLEN	17
const uint8_t *addr_key(const struct sockaddr_any *a,
	    uint8_t key[ADDR_KEYLEN]);

/* Where a key starts its probe in an open-addressing table (FNV-1a). */
size_t	addr_key_hash(const uint8_t key[ADDR_KEYLEN]);

/* Formats an address as "1.2.3.4:5" or "[::1]:5". */
void	sockaddr_text(const struct sockaddr *sa, char *buf, size_t len);

/* Formats only the host part: "1.2.3.4" or "::1". */
void	sockaddr_host(const struct sockaddr *sa, char *buf, size_t len);

#endif
