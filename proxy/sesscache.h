/*
 * sesscache: the TLS <= 1.2 session-ID cache shared by every worker
 * (tls_session_cache), for old devices that resume by session ID and never
 * use tickets.  Fixed-size, in memory the supervisor maps before forking;
 * a slot is written under its own spin flag held only for a copy (never
 * across I/O) and read as a seqlock.  Two ways per session ID: a newer
 * session replaces the older of the two.
 */
#ifndef MAILPROXY_SESSCACHE_H
#define MAILPROXY_SESSCACHE_H

#include <openssl/ssl.h>

/* Supervisor, before forking: room for sessions sessions (0: none). */
int	sesscache_init(int sessions);

/* A server context stores and finds TLS <= 1.2 sessions there. */
void	sesscache_setup(SSL_CTX *ctx);

#endif
