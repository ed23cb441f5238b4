/*
 * tls: BoringSSL contexts for each side of a service.
 *
 * Defaults are Mozilla "intermediate": TLS 1.2 and 1.3, ECDHE with AEAD
 * suites only, groups X25519, P-256, P-384, no renegotiation, no 0-RTT.
 * Upstream certificates are verified (chain + RFC 6125 name) unless the
 * service says upstream_verify = no.
 */
#ifndef MAILPROXY_TLS_H
#define MAILPROXY_TLS_H

#include <openssl/ssl.h>

#ifndef OPENSSL_IS_BORINGSSL
#error "mailproxy must be built against BoringSSL (-isystem /usr/include/android)"
#endif

#include <stdbool.h>
#include <stddef.h>

struct listen_addr;
struct service;

/*
 * Server context for the client side from cert/key pair number pair: loads
 * them (they must match) and sets versions, suites and ALPN policy.  On
 * failure returns NULL with a reason in err.
 */
SSL_CTX	*tls_server_ctx_new(const struct service *svc, size_t pair, char *err,
	    size_t len);


/* Client context for the upstream side, with its trust anchors. */
SSL_CTX	*tls_client_ctx_new(const struct service *svc, char *err, size_t len);

/*
 * The part of a client context that no service decides: versions from
 * min_version, modern suites and, with verify, peer verification against
 * ca_file (PEM; the system bundle when NULL).  Also the HTTPS client's.
 * NULL with a reason in err on failure.
 */
SSL_CTX	*tls_client_ctx_base(const char *ca_file, int min_version, bool verify,
	    char *err, size_t len);

/*
 * Prepares a new client-side SSL for an upstream connection: SNI (unless
 * the name is an IP address) and the name the certificate must carry.
 */
int	 tls_upstream_setup(SSL *ssl, const struct service *svc);

/*
 * The same for any client connection to name (a host name or an IP
 * address): SNI for a host name and, with verify, the name or address
 * the certificate must carry (RFC 6125: SAN only).  0, or -1 on failure.
 */
int	 tls_client_name(SSL *ssl, const char *name, bool verify);

/* tls_ciphers: the suite list for setting (NULL: the default for
 * min_version: legacy below TLS 1.2, else modern). */
const char *tls_cipher_list(const char *setting, int min_version);

/* Is c outside the modern set (not ECDHE+AEAD)?  Logged and counted. */
bool	 tls_cipher_is_legacy(const SSL_CIPHER *c);

/*
 * sni: the services sharing the address a client came to (la->routes) and
 * the one its TLS server name picked during the handshake (NULL: none, or
 * no name matched and there is no default: then unknown, and the
 * handshake fails with unrecognized_name).  Owned by the session.
 */
struct tls_route {
	const struct listen_addr *la;
	const struct service	*chosen;
	bool			 unknown;
};

/* A client-facing SSL's route (see tls_route); set before its handshake. */
void	 tls_set_route(SSL *ssl, struct tls_route *route);

/* upstream_resumption: offers the session this worker last got from the
 * service's upstream, if any and still resumable. */
void	 tls_offer_session(SSL *ssl);

/*
 * upstream_pin: "sha256/BASE64" (the SHA-256 of a certificate's
 * SubjectPublicKeyInfo, as HPKP and curl write it) into pin.  0 or -1.
 */
int	 tls_pin_parse(const char *text, uint8_t pin[32]);

/* The same text for a certificate's key (TLS_PIN_TEXT bytes with NUL). */
#define TLS_PIN_TEXT	52
void	 tls_pin_text(const X509 *cert, char out[TLS_PIN_TEXT]);

/*
 * The pin of the key the upstream showed in this thread's last upstream
 * handshake that reached the certificate (whatever came of it): what -T
 * prints, and what a pin-mismatch line names.  "" if none yet.
 */
const char *tls_pin_seen(void);

/*
 * upstream_cert: did the server of this thread's last upstream handshake
 * ask for the proxy's certificate?  reset: forget it (before a handshake).
 */
bool	 tls_cert_asked(bool reset);

/* "TLSv1.3/TLS_AES_128_GCM_SHA256" for logs, "-" before a handshake. */
void	 tls_describe(const SSL *ssl, char *buf, size_t len);

/* The BoringSSL version string shown by mailproxy -V. */
const char *tls_library(void);

#endif
