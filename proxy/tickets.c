/*
 * tickets: shared session-ticket keys; see tickets.h.
 *
 * The keys are a seqlock-protected table: the supervisor (the one writer)
 * makes seq odd, writes, makes it even; the ticket callback in a worker
 * copies the table while seq is even and unchanged.
 */
#include "tickets.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <openssl/aes.h>
#include <openssl/cipher.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/rand.h>

#include "secret.h"
#include "seqlock.h"

struct tkey {
	uint8_t		 name[16];
	uint8_t		 hmac[32];
	uint8_t		 aes[32];
	uint8_t		 size;		/* 16: AES-128, 32: AES-256 */
};

struct tshared {
	uint32_t	 seq;		/* atomic; odd while writing */
	uint32_t	 n;
	struct tkey	 k[TICKET_KEYS_MAX];	/* [0] encrypts */
};

static struct tshared	*shared;
/* The keys as last read (or, in the supervisor, published; a worker
 * inherits them): what the ticket callback uses when the table cannot be
 * read, its writer stuck or dead mid-publish, instead of failing the
 * client's handshake. */
static struct tkey	 last[TICKET_KEYS_MAX];
static size_t		 nlast;
static bool		 from_file;	/* supervisor: the keys are a file's */
static time_t		 made_at;	/* supervisor: the newest own key */

int
tickets_read_file(const char *path, uint8_t **out, size_t *len, char *err,
    size_t errlen)
{
	uint8_t buf[TICKET_KEYS_MAX * 80 + 1];
	ssize_t n = secret_read_raw(path, buf, sizeof(buf), err, errlen);

	if (n < 0)
		return -1;
	if (n == 0 || (n % 80 != 0 && n % 48 != 0)) {
		OPENSSL_cleanse(buf, sizeof(buf));
		snprintf(err, errlen, "%s: %zd bytes; expected one to %d keys of "
		    "80 bytes (or 48), e.g. openssl rand 80 > FILE", path, n,
		    TICKET_KEYS_MAX);
		return -1;
	}
	if ((*out = malloc((size_t)n)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	memcpy(*out, buf, (size_t)n);
	*len = (size_t)n;
	OPENSSL_cleanse(buf, sizeof(buf));
	return 0;
}

int
tickets_init(void)
{
	void *p = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return -1;
	shared = p;
	return 0;
}

static void
publish(const struct tkey *keys, size_t n)
{
	seq_write_begin(&shared->seq);
	memcpy(shared->k, keys, n * sizeof(*keys));
	shared->n = (uint32_t)n;
	seq_write_end(&shared->seq);
	OPENSSL_cleanse(last, sizeof(last));
	memcpy(last, keys, n * sizeof(*keys));
	nlast = n;
}

/* A copy of the current keys (or of the last ones read); their number. */
static size_t
snapshot(struct tkey *keys)
{
	int tries = 0;

	if (shared == NULL)
		return 0;
	do {
		uint32_t begin = seq_read_begin(&shared->seq), n = shared->n;
		if (n > TICKET_KEYS_MAX)
			continue;
		memcpy(keys, shared->k, n * sizeof(*keys));
		if (seq_read_ok(&shared->seq, begin)) {
			memcpy(last, keys, n * sizeof(*keys));
			nlast = n;
			return n;
		}
	} while (seq_read_again(&tries));
	memcpy(keys, last, nlast * sizeof(*keys));
	return nlast;
}

/* A new own key in front; the two before it still decrypt. */
static void
new_key(void)
{
	struct tkey keys[TICKET_KEYS_MAX];
	size_t n = from_file ? 0 : snapshot(keys);

	if (n > 2)
		n = 2;
	memmove(keys + 1, keys, n * sizeof(*keys));
	RAND_bytes(keys[0].name, sizeof(keys[0].name));
	RAND_bytes(keys[0].hmac, sizeof(keys[0].hmac));
	RAND_bytes(keys[0].aes, sizeof(keys[0].aes));
	keys[0].size = 32;
	publish(keys, n + 1);
	OPENSSL_cleanse(keys, sizeof(keys));
	from_file = false;
	made_at = time(NULL);
}

void
tickets_use(const uint8_t *data, size_t len)
{
	struct tkey keys[TICKET_KEYS_MAX];
	size_t size = len % 80 == 0 ? 80 : 48, n = 0;

	if (shared == NULL)
		return;
	if (data == NULL) {
		if (from_file || shared->n == 0)
			new_key();
		return;
	}
	memset(keys, 0, sizeof(keys));
	for (size_t off = 0; off + size <= len && n < TICKET_KEYS_MAX;
	    off += size, n++) {
		size_t half = (size - 16) / 2;
		memcpy(keys[n].name, data + off, 16);
		memcpy(keys[n].hmac, data + off + 16, half);
		memcpy(keys[n].aes, data + off + 16 + half, half);
		keys[n].size = (uint8_t)half;
	}
	publish(keys, n);
	OPENSSL_cleanse(keys, sizeof(keys));
	from_file = true;
}

void
tickets_rotate_if_due(void)
{
	if (shared != NULL && !from_file && time(NULL) - made_at >= TICKET_ROTATE)
		new_key();
}

static const EVP_CIPHER *
cipher_of(const struct tkey *k)
{
	return k->size == 16 ? EVP_aes_128_cbc() : EVP_aes_256_cbc();
}

static int
ticket_cb(SSL *ssl, uint8_t *name, uint8_t *iv, EVP_CIPHER_CTX *cctx,
    HMAC_CTX *hctx, int encrypt)
{
	struct tkey keys[TICKET_KEYS_MAX];
	size_t n = snapshot(keys);
	int rc = encrypt ? -1 : 0;

	(void)ssl;
	if (encrypt && n > 0) {
		memcpy(name, keys[0].name, 16);
		if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) &&
		    EVP_EncryptInit_ex(cctx, cipher_of(&keys[0]), NULL,
		    keys[0].aes, iv) &&
		    HMAC_Init_ex(hctx, keys[0].hmac, keys[0].size, EVP_sha256(),
		    NULL))
			rc = 1;
	}
	for (size_t i = 0; !encrypt && i < n; i++) {
		if (memcmp(name, keys[i].name, 16) != 0)
			continue;
		if (HMAC_Init_ex(hctx, keys[i].hmac, keys[i].size, EVP_sha256(),
		    NULL) && EVP_DecryptInit_ex(cctx, cipher_of(&keys[i]), NULL,
		    keys[i].aes, iv))
			rc = i == 0 ? 1 : 2;	/* an older key: a new ticket */
		break;
	}
	OPENSSL_cleanse(keys, sizeof(keys));
	return rc;
}

void
tickets_setup(SSL_CTX *ctx)
{
	/* Without the shared table (mailproxy -t, unit tests) BoringSSL's
	 * own per-context keys serve. */
	if (shared != NULL)
		SSL_CTX_set_tlsext_ticket_key_cb(ctx, ticket_cb);
	SSL_CTX_set_timeout(ctx, TICKET_LIFETIME);
	SSL_CTX_set_session_psk_dhe_timeout(ctx, TICKET_LIFETIME);
}
