/*
 * jwt: what a provider checks of a client assertion: the header (alg, typ,
 * x5t#S256 of the certificate), the claims as given, and a signature that
 * the public key verifies for RS256, PS256 and ES256; keys that cannot
 * sign those refused.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/base64.h>
#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "jwt.h"
#include "unit.h"

static EVP_PKEY *
rsa_key(int bits)
{
	EVP_PKEY *k = EVP_PKEY_new();
	RSA *r = RSA_new();
	BIGNUM *e = BN_new();

	BN_set_word(e, RSA_F4);
	RSA_generate_key_ex(r, bits, e, NULL);
	EVP_PKEY_assign_RSA(k, r);
	BN_free(e);
	return k;
}

static EVP_PKEY *
ec_key(int nid)
{
	EVP_PKEY *k = EVP_PKEY_new();
	EC_KEY *e = EC_KEY_new_by_curve_name(nid);

	EC_KEY_generate_key(e);
	EVP_PKEY_assign_EC_KEY(k, e);
	return k;
}

/* A self-signed certificate of k valid for days, in PEM at path. */
static X509 *
self_signed(EVP_PKEY *k, int days, const char *path)
{
	X509 *x = X509_new();
	FILE *f = fopen(path, "w");

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	    (const uint8_t *)"app", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), (long)days * 86400);
	X509_set_pubkey(x, k);
	X509_sign(x, k, EVP_sha256());
	PEM_write_X509(f, x);
	fclose(f);
	return x;
}

static void
write_key(EVP_PKEY *k, const char *path)
{
	FILE *f = fopen(path, "w");

	PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	fclose(f);
}

static size_t
b64url_decode(uint8_t *out, size_t cap, const char *in, size_t n)
{
	char buf[4096];
	size_t len = 0;

	if (n + 4 > sizeof(buf))
		return 0;
	for (size_t i = 0; i < n; i++)
		buf[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
	while (n % 4 != 0)
		buf[n++] = '=';
	if (!EVP_DecodeBase64(out, &len, cap, (uint8_t *)buf, n))
		return 0;
	return len;
}

/* The JWT's signature verified with k, and its header decoded. */
static int
verify(const char *jwt, EVP_PKEY *k, enum jwt_alg alg, char *header,
    size_t cap)
{
	const char *d1 = strchr(jwt, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	uint8_t sig[1024], md[32];
	size_t slen, hlen;
	int ok = 0;

	if (d2 == NULL || (hlen = b64url_decode((uint8_t *)header, cap - 1, jwt,
	    (size_t)(d1 - jwt))) == 0)
		return 0;
	header[hlen] = '\0';
	slen = b64url_decode(sig, sizeof(sig), d2 + 1, strlen(d2 + 1));
	if (alg == JWT_ES256) {
		ECDSA_SIG *s = ECDSA_SIG_new();
		BIGNUM *r = BN_bin2bn(sig, 32, NULL), *ss = BN_bin2bn(sig + 32, 32,
		    NULL);
		SHA256((const uint8_t *)jwt, (size_t)(d2 - jwt), md);
		ECDSA_SIG_set0(s, r, ss);
		ok = slen == 64 && ECDSA_do_verify(md, 32, s,
		    EVP_PKEY_get0_EC_KEY(k));
		ECDSA_SIG_free(s);
	} else {
		EVP_MD_CTX *c = EVP_MD_CTX_new();
		EVP_PKEY_CTX *p;
		ok = EVP_DigestVerifyInit(c, &p, EVP_sha256(), NULL, k) &&
		    (alg == JWT_RS256 || (EVP_PKEY_CTX_set_rsa_padding(p,
		    RSA_PKCS1_PSS_PADDING) && EVP_PKEY_CTX_set_rsa_pss_saltlen(p,
		    -1))) && EVP_DigestVerify(c, sig, slen, (const uint8_t *)jwt,
		    (size_t)(d2 - jwt));
		EVP_MD_CTX_free(c);
	}
	return ok;
}

static void
one_alg(EVP_PKEY *pk, enum jwt_alg alg, const char *name, const char *dir)
{
	char cert[300], key[300], header[512], want[64], err[200];
	json_t *claims = json_pack("{s:s, s:s, s:I}", "iss", "app-id", "aud",
	    "https://login.test/token", "exp", (json_int_t)1700000600);
	uint8_t *der = NULL, md[32];
	struct jwt_key *k;
	char *jwt;
	X509 *x;
	int dlen;

	snprintf(cert, sizeof(cert), "%s/%s.crt", dir, name);
	snprintf(key, sizeof(key), "%s/%s.key", dir, name);
	x = self_signed(pk, 30, cert);
	write_key(pk, key);
	k = jwt_key_load(cert, key, err, sizeof(err));
	CHECK(k != NULL);
	if (k == NULL)
		goto out;
	CHECK(jwt_key_alg(k, alg == JWT_PS256) == alg);
	/* The certificate's end, to the day. */
	CHECK(llabs(jwt_key_not_after(k) - (time(NULL) + 30 * 86400)) < 86400);
	jwt = jwt_sign(k, alg, claims, err, sizeof(err));
	CHECK(jwt != NULL && verify(jwt, pk, alg, header, sizeof(header)));
	CHECK_STR_CONTAINS(header, name);
	CHECK_STR_CONTAINS(header, "\"typ\":\"JWT\"");
	dlen = i2d_X509(x, &der);
	SHA256(der, (size_t)dlen, md);
	jwt_b64url(want, md, sizeof(md));
	CHECK_STR_CONTAINS(header, want);
	/* A signature over other bytes does not verify (the check can fail). */
	if (jwt != NULL) {
		char *dot = strchr(jwt, '.');
		dot[1] = dot[1] == 'A' ? 'B' : 'A';
		CHECK(!verify(jwt, pk, alg, header, sizeof(header)));
	}
	free(jwt);
	OPENSSL_free(der);
	jwt_key_free(k);
out:
	X509_free(x);
	json_decref(claims);
}

void
test_jwt(void)
{
	char dir[] = "/tmp/mp-jwt.XXXXXX", path[300], cert[300], err[200];
	EVP_PKEY *rsa = rsa_key(2048), *ec = ec_key(NID_X9_62_prime256v1);
	EVP_PKEY *small = rsa_key(1024), *p384 = ec_key(NID_secp384r1);
	uint8_t raw[] = { 0xfb, 0xff, 0x3e };
	char b64[8];

	CHECK(mkdtemp(dir) != NULL);
	jwt_b64url(b64, raw, sizeof(raw));
	CHECK(strcmp(b64, "-_8-") == 0);
	jwt_b64url(b64, raw, 1);
	CHECK(strcmp(b64, "-w") == 0);
	one_alg(rsa, JWT_RS256, "RS256", dir);
	one_alg(rsa, JWT_PS256, "PS256", dir);
	one_alg(ec, JWT_ES256, "ES256", dir);
	/* Keys a provider would refuse, refused here with why. */
	snprintf(path, sizeof(path), "%s/small.key", dir);
	write_key(small, path);
	CHECK(jwt_key_load(NULL, path, err, sizeof(err)) == NULL);
	CHECK_STR_CONTAINS(err, "1024 bits");
	snprintf(path, sizeof(path), "%s/p384.key", dir);
	write_key(p384, path);
	CHECK(jwt_key_load(NULL, path, err, sizeof(err)) == NULL);
	CHECK_STR_CONTAINS(err, "P-256");
	/* Another key's certificate. */
	snprintf(path, sizeof(path), "%s/ES256.key", dir);
	snprintf(cert, sizeof(cert), "%s/RS256.crt", dir);
	CHECK(jwt_key_load(cert, path, err, sizeof(err)) == NULL);
	CHECK_STR_CONTAINS(err, "not the certificate of this key");
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(small);
	EVP_PKEY_free(p384);
	for (const char *f = "RS256.crt\0RS256.key\0PS256.crt\0PS256.key\0"
	    "ES256.crt\0ES256.key\0small.key\0p384.key\0"; *f; f += strlen(f) + 1) {
		snprintf(path, sizeof(path), "%s/%s", dir, f);
		unlink(path);
	}
	rmdir(dir);
}
