/*
 * tls: SSL_CTX construction for both sides of a service.
 */
#include "tls.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/base64.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "addr.h"
#include "config.h"
#include "sesscache.h"
#include "tickets.h"
#include "log.h"

#define GROUPS		"X25519:P-256:P-384"
#define SYSTEM_CA	"/etc/ssl/certs/ca-certificates.crt"

/* Mozilla intermediate: forward-secret AEAD suites (TLS 1.3 are fixed). */
#define SUITES_MODERN \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
/*
 * tls_ciphers = legacy, for old printers and scanners (TLS 1.0-1.2): the
 * CBC suites TLS 1.0/1.1 need, and RSA key exchange (AES-GCM, AES-CBC,
 * 3DES) for stacks that have no ECDHE.  This BoringSSL has no CBC-SHA256
 * suites (AES128-SHA256): a client offering only those cannot connect.
 */
#define SUITES_LEGACY \
	":ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:" \
	"ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA:" \
	"AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA:AES256-SHA:DES-CBC3-SHA"

/* The ALPN name of each mail protocol (IANA registry). */
static const char *const alpn_names[] = { "smtp", "pop3", "imap" };

static void
ssl_reason(char *err, size_t len, const char *what)
{
	snprintf(err, len, "%s (", what);
	log_ssl_errors(err, len);
	strncat(err, ")", len - strlen(err) - 1);
}

/*
 * ALPACA: a client that offers ALPN must offer this port's protocol; an
 * offer of only http/1.1, h2, ... is refused with no_application_protocol.
 * A client that offers no ALPN at all never reaches this callback.
 */
static int
alpn_select(SSL *ssl, const uint8_t **out, uint8_t *outlen, const uint8_t *in,
    unsigned inlen, void *arg)
{
	const char *ours = arg;
	size_t olen = strlen(ours);
	unsigned i = 0;

	(void)ssl;
	while (i < inlen) {
		unsigned n = in[i];
		if (i + 1 + n > inlen)
			break;
		if (n == olen && memcmp(in + i + 1, ours, n) == 0) {
			*out = in + i + 1;
			*outlen = (uint8_t)n;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + n;
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

const char *
tls_cipher_list(const char *setting, int min_version)
{
	if (setting == NULL)
		setting = min_version < TLS1_2_VERSION ? "legacy" : "modern";
	if (strcmp(setting, "modern") == 0)
		return SUITES_MODERN;
	if (strcmp(setting, "legacy") == 0)
		return SUITES_MODERN SUITES_LEGACY;
	return setting;
}

bool
tls_cipher_is_legacy(const SSL_CIPHER *c)
{
	/* Modern: ECDHE (or TLS 1.3) with an AEAD. */
	return c != NULL && !(SSL_CIPHER_is_aead(c) &&
	    (SSL_CIPHER_get_kx_nid(c) == NID_kx_ecdhe ||
	    SSL_CIPHER_get_kx_nid(c) == NID_kx_any));
}

static int
common_setup(SSL_CTX *ctx, int min_version, const char *ciphers, char *err,
    size_t len)
{
	if (!SSL_CTX_set_min_proto_version(ctx, (uint16_t)min_version) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set1_curves_list(ctx, GROUPS) ||
	    !SSL_CTX_set_strict_cipher_list(ctx, ciphers)) {
		ssl_reason(err, len, "TLS settings");
		return -1;
	}
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return 0;
}

static enum ssl_select_cert_result_t select_certificate(
	    const SSL_CLIENT_HELLO *ch);
static int refuse_unknown_name(SSL *ssl, int *alert, void *arg);

/* A certificate chain and its key into ctx.  0, or -1 with why in err. */
static int
load_pair(SSL_CTX *ctx, const char *cert, const char *key, char *err,
    size_t len)
{
	if (!SSL_CTX_use_certificate_chain_file(ctx, cert)) {
		ssl_reason(err, len, "cannot load certificate");
		return -1;
	}
	if (!SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM)) {
		int r = ERR_GET_REASON(ERR_peek_last_error());
		ssl_reason(err, len, r == X509_R_KEY_TYPE_MISMATCH ||
		    r == X509_R_KEY_VALUES_MISMATCH ?
		    "key does not match certificate" :
		    "cannot load private key");
		return -1;
	}
	if (!SSL_CTX_check_private_key(ctx)) {
		ssl_reason(err, len, "key does not match certificate");
		return -1;
	}
	return 0;
}

/*
 * client_verify: devices are asked for a certificate that chains to
 * client_ca (and is not on client_crl); one that does not verify fails the
 * handshake with an alert.  With require, a device without one fails too.
 */
static int
ask_device_certificates(SSL_CTX *ctx, const struct service *svc, char *err,
    size_t len)
{
	STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(svc->client_ca);
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	X509_LOOKUP *lookup;

	if (names == NULL || !SSL_CTX_load_verify_locations(ctx, svc->client_ca,
	    NULL)) {
		sk_X509_NAME_pop_free(names, X509_NAME_free);
		ssl_reason(err, len, "client_ca: cannot load the certificates");
		return -1;
	}
	SSL_CTX_set_client_CA_list(ctx, names);		/* takes names */
	if (svc->client_crl != NULL) {
		if ((lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file())) ==
		    NULL || X509_load_crl_file(lookup, svc->client_crl,
		    X509_FILETYPE_PEM) <= 0) {
			ssl_reason(err, len, "client_crl: cannot load the CRL");
			return -1;
		}
		X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
	    (svc->client_verify == CLIENT_VERIFY_REQUIRE ?
	    SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
	return 0;
}

SSL_CTX *
tls_server_ctx_new(const struct service *svc, size_t pair, char *err,
    size_t len)
{
	SSL_CTX *ctx;
	uint8_t sid_ctx[SHA256_DIGEST_LENGTH];

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		ssl_reason(err, len, "SSL_CTX_new");
		return NULL;
	}
	if (common_setup(ctx, svc->tls_min_version, tls_cipher_list(
	    svc->tls_ciphers, svc->tls_min_version), err, len) < 0)
		goto fail;
	if (load_pair(ctx, svc->certs[pair], svc->keys[pair], err, len) < 0)
		goto fail;
	if (svc->client_verify != CLIENT_VERIFY_NO && svc->client_ca != NULL &&
	    ask_device_certificates(ctx, svc, err, len) < 0)
		goto fail;
	/* A session resumes only on the service that made it (services
	 * sharing an address by sni are apart). */
	SHA256((const uint8_t *)svc->name, strlen(svc->name), sid_ctx);
	SSL_CTX_set_session_id_context(ctx, sid_ctx, 32);
	tickets_setup(ctx);
	sesscache_setup(ctx);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select,
	    (void *)(uintptr_t)alpn_names[svc->protocol]);
	SSL_CTX_set_app_data(ctx, (void *)(uintptr_t)svc);
	SSL_CTX_set_select_certificate_cb(ctx, select_certificate);
	SSL_CTX_set_tlsext_servername_callback(ctx, refuse_unknown_name);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* ---- certificate selection (several cert/key pairs) ---------------------- */

/* Does the ClientHello list a 16-bit value in a u16-length-prefixed list? */
static bool
list_has_u16(const uint8_t *p, size_t len, uint16_t want)
{
	size_t n;

	if (len < 2)
		return false;
	n = (size_t)(p[0] << 8 | p[1]);
	p += 2;
	for (size_t i = 0; i + 1 < n && i + 1 < len - 2; i += 2)
		if ((uint16_t)(p[i] << 8 | p[i + 1]) == want)
			return true;
	return false;
}

/*
 * A client can take our ECDSA P-256 certificate if it signs with
 * ecdsa_secp256r1_sha256 and, below TLS 1.3, offers an ECDHE-ECDSA suite.
 */
static bool
client_takes_ecdsa(const SSL_CLIENT_HELLO *ch)
{
	static const uint16_t ecdsa_suites[] = { 0xc02b, 0xc02c, 0xcca9,
	    0xc009, 0xc00a };
	const uint8_t *ext;
	size_t len;
	bool tls13 = false;

	if (!SSL_early_callback_ctx_extension_get(ch,
	    TLSEXT_TYPE_signature_algorithms, &ext, &len) ||
	    !list_has_u16(ext, len, 0x0403))
		return false;
	if (SSL_early_callback_ctx_extension_get(ch,
	    TLSEXT_TYPE_supported_versions, &ext, &len) && len > 0) {
		for (size_t i = 1; i + 1 < len && i + 1 <= ext[0]; i += 2)
			tls13 |= ext[i] == 0x03 && ext[i + 1] == 0x04;
	}
	if (tls13)
		return true;
	for (size_t i = 0; i + 1 < ch->cipher_suites_len; i += 2)
		for (size_t j = 0; j < sizeof(ecdsa_suites) / 2; j++)
			if ((uint16_t)(ch->cipher_suites[i] << 8 |
			    ch->cipher_suites[i + 1]) == ecdsa_suites[j])
				return true;
	return false;
}

static bool
pair_is_ecdsa(SSL_CTX *ctx)
{
	EVP_PKEY *pk = SSL_CTX_get0_privatekey(ctx);

	return pk != NULL && EVP_PKEY_id(pk) == EVP_PKEY_EC;
}

/* 2: exact SAN match, 1: wildcard match, 0: no match. */
static int
pair_name_match(SSL_CTX *ctx, const char *sni)
{
	X509 *leaf = SSL_CTX_get0_certificate(ctx);

	if (sni == NULL || leaf == NULL)
		return 0;
	if (X509_check_host(leaf, sni, strlen(sni), X509_CHECK_FLAG_NO_WILDCARDS |
	    X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL) == 1)
		return 2;
	if (X509_check_host(leaf, sni, strlen(sni),
	    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
	    X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL) == 1)
		return 1;
	return 0;
}

/* ---- sni: the service a name picks on a shared address ------------------ */

static int
route_index(void)
{
	static int idx = -1;

	if (idx < 0)
		idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	return idx;
}

void
tls_set_route(SSL *ssl, struct tls_route *route)
{
	SSL_set_ex_data(ssl, route_index(), route);
}

/* 2: name is one of svc's sni names, 1: a wildcard of them covers it (one
 * label), 0: neither. */
static int
sni_match(const struct service *svc, const char *name)
{
	int best = 0;

	for (size_t i = 0; i < svc->nsni && best < 2; i++) {
		const char *n = svc->sni[i];
		size_t nl = strlen(name), dl;
		if (strcasecmp(n, name) == 0)
			best = 2;
		else if (strncmp(n, "*.", 2) == 0 && nl > (dl = strlen(n + 1)) &&
		    strcasecmp(name + nl - dl, n + 1) == 0 &&
		    memchr(name, '.', nl - dl) == NULL)
			best = 1;
	}
	return best;
}

/* The service of la's routes that name picks: an exact name, else a
 * wildcard, else the one without sni; NULL if none. */
static const struct service *
route_by_name(const struct listen_addr *la, const char *name)
{
	const struct service *best = NULL, *fallback = NULL;
	int best_m = 0;

	for (size_t i = 0; i < la->nroutes; i++) {
		int m = name != NULL ? sni_match(la->routes[i], name) : 0;
		if (m > best_m) {
			best_m = m;
			best = la->routes[i];
		}
		if (la->routes[i]->nsni == 0)
			fallback = la->routes[i];
	}
	return best != NULL ? best : fallback;
}

/* The routed service's own TLS settings on this SSL: versions, suites and
 * the session context (a session resumes only where it was made). */
static void
adopt_service(SSL *ssl, const struct service *svc)
{
	uint8_t sid_ctx[SHA256_DIGEST_LENGTH];

	SSL_set_min_proto_version(ssl, (uint16_t)svc->tls_min_version);
	SSL_set_strict_cipher_list(ssl, tls_cipher_list(svc->tls_ciphers,
	    svc->tls_min_version));
	SHA256((const uint8_t *)svc->name, strlen(svc->name), sid_ctx);
	SSL_set_session_id_context(ssl, sid_ctx, 32);
}

/* After the ClientHello's extensions: a name no service takes. */
static int
refuse_unknown_name(SSL *ssl, int *alert, void *arg)
{
	const struct tls_route *r = SSL_get_ex_data(ssl, route_index());

	(void)arg;
	if (r != NULL && r->unknown) {
		*alert = SSL_AD_UNRECOGNIZED_NAME;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	return SSL_TLSEXT_ERR_OK;
}

/*
 * Every client handshake comes here first: with sni, the name picks the
 * service; then, among that service's pairs, the certificate: name first
 * (exact SAN 2, wildcard 1), then key type (1).  A pair whose names do not
 * match is a candidate only if it is the first pair or its RSA/ECDSA
 * sibling (same subject): the default for unknown names.
 */
static enum ssl_select_cert_result_t
select_certificate(const SSL_CLIENT_HELLO *ch)
{
	SSL *ssl = ch->ssl;
	struct tls_route *r = SSL_get_ex_data(ssl, route_index());
	const struct service *svc = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	bool ecdsa;
	X509_NAME *first;
	int best_score = -1;
	size_t best = 0;

	if (r != NULL && r->la != NULL && r->la->nroutes > 0) {
		if ((svc = route_by_name(r->la, sni)) == NULL) {
			r->unknown = true;
			return ssl_select_cert_success;
		}
		r->chosen = svc;
		adopt_service(ssl, svc);
	}
	if (svc->ncerts <= 1) {
		if (svc->pair_ctx[0] != SSL_get_SSL_CTX(ssl))
			SSL_set_SSL_CTX(ssl, svc->pair_ctx[0]);
		return ssl_select_cert_success;
	}
	ecdsa = client_takes_ecdsa(ch);
	first = X509_get_subject_name(SSL_CTX_get0_certificate(svc->pair_ctx[0]));
	for (size_t i = 0; i < svc->ncerts; i++) {
		SSL_CTX *c = svc->pair_ctx[i];
		int m = pair_name_match(c, sni), score;

		if (m == 0 && X509_NAME_cmp(X509_get_subject_name(
		    SSL_CTX_get0_certificate(c)), first) != 0)
			continue;
		score = m * 2 + (pair_is_ecdsa(c) == ecdsa);
		if (score > best_score) {
			best_score = score;
			best = i;
		}
	}
	if (svc->pair_ctx[best] != SSL_get_SSL_CTX(ssl))
		SSL_set_SSL_CTX(ssl, svc->pair_ctx[best]);
	return ssl_select_cert_success;
}

/*
 * Upstream resumption: each worker keeps the newest session its upstream
 * gave (a TLS 1.2 session or a TLS 1.3 ticket) on the service's client
 * context, and offers it on the next connection.  A full handshake, and
 * only that, verifies chain and name again: a resumed session carries the
 * verification of the handshake that made it.
 */
static void
free_cached(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index, long argl,
    void *argp)
{
	(void)parent;
	(void)ad;
	(void)index;
	(void)argl;
	(void)argp;
	SSL_SESSION_free(ptr);
}

static int
cache_index(void)
{
	static int index = -1;

	if (index < 0)
		index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_cached);
	return index;
}

static int
keep_session(SSL *ssl, SSL_SESSION *session)
{
	SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);

	SSL_SESSION_free(SSL_CTX_get_ex_data(ctx, cache_index()));
	SSL_CTX_set_ex_data(ctx, cache_index(), session);
	return 1;	/* the reference is ours now */
}

void
tls_offer_session(SSL *ssl)
{
	SSL_SESSION *session = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl),
	    cache_index());

	if (session != NULL && SSL_SESSION_is_resumable(session))
		SSL_set_session(ssl, session);
}

SSL_CTX *
tls_client_ctx_base(const char *ca_file, int min_version, bool verify,
    char *err, size_t len)
{
	const char *ca = ca_file != NULL ? ca_file : SYSTEM_CA;
	SSL_CTX *ctx;

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		ssl_reason(err, len, "SSL_CTX_new");
		return NULL;
	}
	if (common_setup(ctx, min_version, SUITES_MODERN, err, len) < 0)
		goto fail;
	if (verify) {
		if (!SSL_CTX_load_verify_locations(ctx, ca, NULL)) {
			snprintf(err, len, "cannot load CA file %s", ca);
			ERR_clear_error();
			goto fail;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

int
tls_pin_parse(const char *text, uint8_t pin[32])
{
	uint8_t out[33];
	size_t n;

	if (strncmp(text, "sha256/", 7) != 0 || strlen(text + 7) != 44 ||
	    !EVP_DecodeBase64(out, &n, sizeof(out), (const uint8_t *)text + 7,
	    44) || n != 32)
		return -1;
	memcpy(pin, out, 32);
	return 0;
}

/* The SHA-256 of cert's SubjectPublicKeyInfo, DER.  0 or -1. */
static int
spki_sha256(const X509 *cert, uint8_t digest[32])
{
	uint8_t *der = NULL;
	int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);

	if (n <= 0)
		return -1;
	SHA256(der, (size_t)n, digest);
	OPENSSL_free(der);
	return 0;
}

void
tls_pin_text(const X509 *cert, char out[TLS_PIN_TEXT])
{
	uint8_t digest[32];
	size_t n;

	if (spki_sha256(cert, digest) < 0) {
		snprintf(out, TLS_PIN_TEXT, "-");
		return;
	}
	memcpy(out, "sha256/", 7);
	EVP_EncodeBlock((uint8_t *)out + 7, digest, sizeof(digest));
	n = strlen(out);
	out[n < TLS_PIN_TEXT ? n : TLS_PIN_TEXT - 1] = '\0';
}

/* Did the server ask for the proxy's certificate (-T says)?  Called by
 * BoringSSL on a client only when a CertificateRequest came. */
static __thread bool	cert_asked;

static int
note_cert_asked(SSL *ssl, void *arg)
{
	(void)ssl;
	(void)arg;
	cert_asked = true;
	return 1;
}

bool
tls_cert_asked(bool reset)
{
	bool was = cert_asked;

	if (reset)
		cert_asked = false;
	return was;
}

/* One event loop per thread, one handshake step at a time: the last
 * upstream key seen, for the line that follows a failure. */
static __thread char	pin_seen[TLS_PIN_TEXT];

const char *
tls_pin_seen(void)
{
	return pin_seen;
}

/*
 * Every upstream certificate comes here.  The chain and the name are
 * checked as always when upstream_verify = yes; then, with upstream_pin,
 * the key must be one of the pins (with upstream_verify = no the pin alone
 * decides: a self-signed or expired certificate of a known key).  A
 * mismatch fails the handshake before any credential can go out.
 */
static int
verify_upstream(X509_STORE_CTX *store, void *arg)
{
	const struct service *svc = arg;
	X509 *leaf = X509_STORE_CTX_get0_cert(store);
	uint8_t digest[32];

	pin_seen[0] = '\0';
	if (leaf != NULL)
		tls_pin_text(leaf, pin_seen);
	if (svc->upstream_verify && X509_verify_cert(store) != 1)
		return 0;
	if (svc->nupstream_pins == 0)
		return 1;
	if (leaf == NULL || spki_sha256(leaf, digest) < 0) {
		X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
		return 0;
	}
	for (size_t i = 0; i < svc->nupstream_pins; i++)
		if (CRYPTO_memcmp(digest, svc->upstream_pins[i], 32) == 0)
			return 1;
	X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
	return 0;
}

SSL_CTX *
tls_client_ctx_new(const struct service *svc, char *err, size_t len)
{
	SSL_CTX *ctx;

	if ((ctx = tls_client_ctx_base(svc->upstream_ca,
	    svc->upstream_tls_min_version, svc->upstream_verify, err,
	    len)) == NULL)
		return NULL;
	/* upstream_cert: the proxy's identity in every upstream handshake
	 * (relay by certificate).  Its key is as secret as any: not for
	 * everyone to read. */
	if (svc->upstream_cert != NULL && svc->upstream_key != NULL) {
		struct stat st;
		char why[200];
		if (stat(svc->upstream_key, &st) == 0 && (st.st_mode & S_IROTH)) {
			snprintf(err, len, "upstream_key %s is readable by everyone "
			    "(mode %04o): chmod o-rwx it", svc->upstream_key,
			    (unsigned)(st.st_mode & 07777));
			SSL_CTX_free(ctx);
			return NULL;
		}
		if (load_pair(ctx, svc->upstream_cert, svc->upstream_key, why,
		    sizeof(why)) < 0) {
			snprintf(err, len, "upstream_cert %s / upstream_key %s: %s",
			    svc->upstream_cert, svc->upstream_key, why);
			SSL_CTX_free(ctx);
			return NULL;
		}
		SSL_CTX_set_cert_cb(ctx, note_cert_asked, NULL);
	}
	/* Pins are checked with or without the chain: the handshake fails
	 * on a mismatch either way. */
	if (svc->nupstream_pins > 0)
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_cert_verify_callback(ctx, verify_upstream,
	    (void *)(uintptr_t)svc);
	if (svc->upstream_resumption) {
		/* One upstream name per service, so one context per name: a
		 * session is never offered to another name. */
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
		SSL_CTX_sess_set_new_cb(ctx, keep_session);
		SSL_CTX_set_ex_data(ctx, cache_index(), NULL);
	}
	return ctx;
}

int
tls_client_name(SSL *ssl, const char *name, bool verify)
{
	X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
	bool is_ip = addr_is_ip_literal(name);

	if (!is_ip && !SSL_set_tlsext_host_name(ssl, name))
		return -1;
	if (!verify)
		return 0;
	/* RFC 6125: SAN only, wildcard only as a whole left-most label. */
	X509_VERIFY_PARAM_set_hostflags(param,
	    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
	    X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
	if (is_ip)
		return X509_VERIFY_PARAM_set1_ip_asc(param, name) ? 0 : -1;
	return X509_VERIFY_PARAM_set1_host(param, name, strlen(name)) ? 0 : -1;
}

int
tls_upstream_setup(SSL *ssl, const struct service *svc)
{
	if (svc->upstream_name == NULL)
		return 0;	/* IP upstream with upstream_verify = no */
	return tls_client_name(ssl, svc->upstream_name, svc->upstream_verify);
}

void
tls_describe(const SSL *ssl, char *buf, size_t len)
{
	const SSL_CIPHER *c;

	if (ssl == NULL || (c = SSL_get_current_cipher(ssl)) == NULL) {
		snprintf(buf, len, "-");
		return;
	}
	snprintf(buf, len, "%s/%s", SSL_get_version(ssl),
	    SSL_CIPHER_standard_name(c));
}

const char *
tls_library(void)
{
	return OpenSSL_version(OPENSSL_VERSION);
}
