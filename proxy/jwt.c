/*
 * jwt: signed JSON Web Tokens over BoringSSL; see jwt.h.
 */
#include "jwt.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/base64.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/digest.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

struct jwt_key {
	EVP_PKEY	*pkey;
	char		 x5t[48];	/* base64url SHA-256 of the cert; "" */
	int64_t		 not_after;	/* of the certificate, 0: none */
};

size_t
jwt_b64url(char *out, const uint8_t *in, size_t n)
{
	size_t len = EVP_EncodeBlock((uint8_t *)out, in, n);

	while (len > 0 && out[len - 1] == '=')
		len--;
	out[len] = '\0';
	for (size_t i = 0; i < len; i++)
		out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	return len;
}

void
jwt_new_id(char out[32])
{
	uint8_t r[16];

	RAND_bytes(r, sizeof(r));
	jwt_b64url(out, r, sizeof(r));
}

/* Only keys that sign what jwt_key_alg() names: RSA >= 2048, P-256. */
static struct jwt_key *
key_checked(EVP_PKEY *pkey, char *err, size_t errlen)
{
	struct jwt_key *k;

	if (EVP_PKEY_id(pkey) == EVP_PKEY_RSA) {
		if (EVP_PKEY_bits(pkey) < 2048) {
			snprintf(err, errlen, "an RSA key of %d bits (at least "
			    "2048 needed)", EVP_PKEY_bits(pkey));
			goto bad;
		}
	} else if (EVP_PKEY_id(pkey) == EVP_PKEY_EC) {
		const EC_GROUP *g = EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(pkey));
		if (EC_GROUP_get_curve_name(g) != NID_X9_62_prime256v1) {
			snprintf(err, errlen, "an EC key not on P-256 (ES256 "
			    "signs with P-256 only)");
			goto bad;
		}
	} else {
		snprintf(err, errlen, "neither an RSA nor a P-256 key");
		goto bad;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto bad;
	}
	k->pkey = pkey;
	return k;
bad:
	EVP_PKEY_free(pkey);
	return NULL;
}

struct jwt_key *
jwt_key_from_pem(const char *pem, size_t len, char *err, size_t errlen)
{
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	EVP_PKEY *pkey = b != NULL ? PEM_read_bio_PrivateKey(b, NULL, NULL,
	    NULL) : NULL;

	BIO_free(b);
	if (pkey == NULL) {
		snprintf(err, errlen, "no PEM private key (an encrypted key "
		    "cannot be used unattended)");
		return NULL;
	}
	return key_checked(pkey, err, errlen);
}

/* The certificate's thumbprint and end, and that it holds k's key. */
static int
add_cert(struct jwt_key *k, const char *cert_file, char *err, size_t errlen)
{
	FILE *f = fopen(cert_file, "r");
	X509 *x = f != NULL ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	uint8_t *der = NULL, md[SHA256_DIGEST_LENGTH];
	int dlen, days, secs, rc = -1;

	if (f != NULL)
		fclose(f);
	if (x == NULL) {
		snprintf(err, errlen, "%s: no PEM certificate", cert_file);
		return -1;
	}
	if (!X509_check_private_key(x, k->pkey))
		snprintf(err, errlen, "%s is not the certificate of this key",
		    cert_file);
	else if ((dlen = i2d_X509(x, &der)) <= 0)
		snprintf(err, errlen, "%s: cannot encode", cert_file);
	else if (!ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)))
		snprintf(err, errlen, "%s: unreadable end date", cert_file);
	else {
		SHA256(der, (size_t)dlen, md);
		jwt_b64url(k->x5t, md, sizeof(md));
		k->not_after = (int64_t)time(NULL) + (int64_t)days * 86400 + secs;
		rc = 0;
	}
	OPENSSL_free(der);
	X509_free(x);
	return rc;
}

struct jwt_key *
jwt_key_load(const char *cert_file, const char *key_file, char *err,
    size_t errlen)
{
	FILE *f = fopen(key_file, "r");
	EVP_PKEY *pkey;
	struct jwt_key *k;

	if (f == NULL) {
		snprintf(err, errlen, "%s: cannot read", key_file);
		return NULL;
	}
	pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (pkey == NULL) {
		snprintf(err, errlen, "%s: no PEM private key (an encrypted "
		    "key cannot be used unattended)", key_file);
		return NULL;
	}
	if ((k = key_checked(pkey, err, errlen)) == NULL)
		return NULL;
	if (cert_file != NULL && add_cert(k, cert_file, err, errlen) < 0) {
		jwt_key_free(k);
		return NULL;
	}
	return k;
}

int
jwt_key_attach_cert(struct jwt_key *k, const char *cert_file, char *err,
    size_t errlen)
{
	return cert_file != NULL ? add_cert(k, cert_file, err, errlen) : 0;
}

void
jwt_key_free(struct jwt_key *k)
{
	if (k != NULL) {
		EVP_PKEY_free(k->pkey);
		free(k);
	}
}

enum jwt_alg
jwt_key_alg(const struct jwt_key *k, int pss)
{
	if (EVP_PKEY_id(k->pkey) == EVP_PKEY_EC)
		return JWT_ES256;
	return pss ? JWT_PS256 : JWT_RS256;
}

int64_t
jwt_key_not_after(const struct jwt_key *k)
{
	return k->not_after;
}

/* ES256 is r || s, 32 bytes each (RFC 7518 section 3.4), not DER. */
static int
sign_es256(EVP_PKEY *pkey, const char *in, size_t n, uint8_t *sig,
    size_t *len)
{
	uint8_t md[SHA256_DIGEST_LENGTH];
	const BIGNUM *r, *s;
	ECDSA_SIG *es;
	int ok;

	SHA256((const uint8_t *)in, n, md);
	if ((es = ECDSA_do_sign(md, sizeof(md),
	    EVP_PKEY_get0_EC_KEY(pkey))) == NULL)
		return -1;
	ECDSA_SIG_get0(es, &r, &s);
	ok = BN_bn2bin_padded(sig, 32, r) && BN_bn2bin_padded(sig + 32, 32, s);
	ECDSA_SIG_free(es);
	*len = 64;
	return ok ? 0 : -1;
}

static int
sign_rsa(EVP_PKEY *pkey, bool pss, const char *in, size_t n, uint8_t *sig,
    size_t *len)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx;
	int ok;

	ok = md != NULL && EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL,
	    pkey) && (!pss || (EVP_PKEY_CTX_set_rsa_padding(pctx,
	    RSA_PKCS1_PSS_PADDING) && EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx,
	    -1))) && EVP_DigestSign(md, sig, len, (const uint8_t *)in, n);
	EVP_MD_CTX_free(md);
	return ok ? 0 : -1;
}

/* base64url(json) appended at out; the new end. */
static char *
put_part(char *out, const json_t *j, char *err, size_t errlen)
{
	char *text = json_dumps(j, JSON_COMPACT);

	if (text == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	out += jwt_b64url(out, (const uint8_t *)text, strlen(text));
	free(text);
	return out;
}

char *
jwt_sign(const struct jwt_key *k, enum jwt_alg alg, const json_t *claims,
    char *err, size_t errlen)
{
	static const char *const names[] = { "RS256", "PS256", "ES256" };
	json_t *head = json_pack("{s:s, s:s}", "alg", names[alg], "typ", "JWT");
	char *claims_text = json_dumps(claims, JSON_COMPACT), *out = NULL, *p;
	uint8_t sig[1024];	/* RSA up to 8192 bits */
	size_t cap, slen = sizeof(sig);

	if (head == NULL || claims_text == NULL ||
	    (k->x5t[0] != '\0' && json_object_set_new(head, "x5t#S256",
	    json_string(k->x5t)) < 0)) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	cap = 256 + strlen(k->x5t) * 2 + strlen(claims_text) * 2 + sizeof(sig) * 2;
	if ((out = malloc(cap)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if ((p = put_part(out, head, err, errlen)) == NULL)
		goto fail;
	*p++ = '.';
	p += jwt_b64url(p, (const uint8_t *)claims_text, strlen(claims_text));
	if ((size_t)EVP_PKEY_size(k->pkey) > sizeof(sig) || (alg == JWT_ES256 ?
	    sign_es256(k->pkey, out, (size_t)(p - out), sig, &slen) :
	    sign_rsa(k->pkey, alg == JWT_PS256, out, (size_t)(p - out), sig,
	    &slen)) < 0) {
		snprintf(err, errlen, "%s signing failed", names[alg]);
		goto fail;
	}
	*p++ = '.';
	jwt_b64url(p, sig, slen);
	goto out;
fail:
	free(out);
	out = NULL;
out:
	json_decref(head);
	free(claims_text);
	return out;
}
