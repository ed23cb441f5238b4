/*
 * jwt: signed JSON Web Tokens (RFC 7515, 7519) for the OAuth2 grants that
 * prove who the client is with a key instead of a secret: the client
 * assertion of client_credentials (RFC 7523 section 2.2) and the JWT bearer
 * grant of a Google service account (section 2.1).
 *
 * RS256 and PS256 with an RSA key of at least 2048 bits, ES256 with a P-256
 * key, over BoringSSL.  A key loaded with its certificate puts the
 * certificate's SHA-256 thumbprint in the header (x5t#S256), which is how
 * Entra ID finds the certificate registered for the application.
 */
#ifndef MAILPROXY_JWT_H
#define MAILPROXY_JWT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

enum jwt_alg { JWT_RS256, JWT_PS256, JWT_ES256 };

struct jwt_key;

/*
 * The private key in PEM file key_file and, when cert_file is not NULL, its
 * certificate (which must hold the key's public half).  NULL with err.
 */
struct jwt_key *jwt_key_load(const char *cert_file, const char *key_file,
	    char *err, size_t errlen);

/* A PEM private key held in memory (a service account's JSON key file). */
struct jwt_key *jwt_key_from_pem(const char *pem, size_t len, char *err,
	    size_t errlen);

/* Adds the certificate in PEM file cert_file to k (see jwt_key_load);
 * nothing when cert_file is NULL.  -1 with err. */
int	jwt_key_attach_cert(struct jwt_key *k, const char *cert_file,
	    char *err, size_t errlen);

void	jwt_key_free(struct jwt_key *k);

/* The algorithm the key signs with: ES256 for P-256, else RS256, or
 * PS256 when pss is asked for (an RSA key). */
enum jwt_alg jwt_key_alg(const struct jwt_key *k, int pss);

/* When the certificate ends (Unix seconds), 0 without one. */
int64_t	jwt_key_not_after(const struct jwt_key *k);

/*
 * header.claims.signature, malloc'ed; the header says alg, typ JWT and
 * x5t#S256 when the key came with a certificate.  NULL with err.
 */
char	*jwt_sign(const struct jwt_key *k, enum jwt_alg alg,
	    const json_t *claims, char *err, size_t errlen);

/* Base64url without padding (RFC 7515 section 2) of n bytes into out,
 * which holds at least 4 * ((n + 2) / 3) + 1 bytes; the length. */
size_t	jwt_b64url(char *out, const uint8_t *in, size_t n);

/* A fresh identifier for a jti claim: 128 random bits, base64url. */
void	jwt_new_id(char out[32]);

#endif
