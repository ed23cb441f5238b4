/*
 * tickets: TLS session-ticket keys shared by every worker (and, through
 * tls_ticket_key_file, by every instance behind one balancer), so that a
 * client resumes whichever worker or instance it reaches, also after a
 * reload.
 *
 * The supervisor holds the keys in memory it shares with the workers: it
 * makes them at start, keeps them across reloads and rotates them (a new
 * encryption key every TICKET_ROTATE seconds; the previous ones still
 * decrypt for one ticket lifetime).  With tls_ticket_key_file the keys
 * come from that file instead, re-read on reload and never rotated by the
 * proxy: one or more keys in nginx's ssl_session_ticket_key format (80
 * bytes: name 16, HMAC-SHA256 key 32, AES-256-CBC key 32; or 48 bytes:
 * name 16, HMAC key 16, AES-128-CBC key 16), concatenated; the first
 * encrypts, all decrypt.
 */
#ifndef MAILPROXY_TICKETS_H
#define MAILPROXY_TICKETS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#define TICKET_KEYS_MAX		8
#define TICKET_ROTATE		3600	/* seconds between new keys */
#define TICKET_LIFETIME		7200	/* seconds a ticket is honoured */

/* Reads and checks a key file (permission rules as for secrets): the raw
 * bytes in *out (malloc'ed), or -1 with err. */
int	tickets_read_file(const char *path, uint8_t **out, size_t *len,
	    char *err, size_t errlen);

/* Supervisor, before forking: the shared keys.  0 or -1. */
int	tickets_init(void);

/* Supervisor: publish keys read from a file, or (data NULL) keep the
 * proxy's own, making the first ones or starting over after a file. */
void	tickets_use(const uint8_t *data, size_t len);

/* Supervisor, now and then: a new encryption key when TICKET_ROTATE has
 * passed (the proxy's own keys only). */
void	tickets_rotate_if_due(void);

/* A server context uses the shared keys and the ticket lifetime. */
void	tickets_setup(SSL_CTX *ctx);

#endif
