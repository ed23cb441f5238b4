/*
 * sesscache: shared session-ID cache; see sesscache.h.
 */
#include "sesscache.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <openssl/mem.h>

#include "seqlock.h"

#define SESSION_MAX	768	/* serialized; larger ones are not cached */

struct slot {
	uint32_t	 seq;		/* odd while written */
	uint32_t	 busy;		/* the PID of the writer holding it, 0 */
	uint8_t		 id[32];
	uint8_t		 idlen;
	int64_t		 expires;	/* Unix time, 0: empty */
	uint16_t	 len;
	uint8_t		 data[SESSION_MAX];
};

static struct slot	*slots;
static size_t		 nslots;	/* even: two ways per bucket */

int
sesscache_init(int sessions)
{
	void *p;

	if (sessions <= 0)
		return 0;
	nslots = ((size_t)sessions + 1) & ~(size_t)1;
	p = mmap(NULL, nslots * sizeof(*slots), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	slots = p;
	return 0;
}

static struct slot *
bucket(const uint8_t *id, size_t len)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++)
		h = (h ^ id[i]) * 16777619u;
	return &slots[(h % (nslots / 2)) * 2];
}

/*
 * Takes the slot for this process.  A slot held by a process that no
 * longer exists (a worker killed mid-write) is taken over: it would stay
 * locked for the life of the region otherwise.  A live holder, even a
 * stopped one, keeps it (the cache skips the slot).
 */
static bool
lock(struct slot *s)
{
	uint32_t holder = 0, me = (uint32_t)getpid();

	if (__atomic_compare_exchange_n(&s->busy, &holder, me, false,
	    __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
		return true;
	if (kill((pid_t)holder, 0) == 0 || errno != ESRCH)
		return false;
	return __atomic_compare_exchange_n(&s->busy, &holder, me, false,
	    __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

static void
unlock(struct slot *s)
{
	__atomic_store_n(&s->busy, 0, __ATOMIC_RELEASE);
}

static int
new_cb(SSL *ssl, SSL_SESSION *session)
{
	uint8_t *bytes = NULL;
	size_t len;
	unsigned idlen;
	const uint8_t *id = SSL_SESSION_get_id(session, &idlen);
	struct slot *b, *s;

	(void)ssl;
	if (slots == NULL || idlen == 0 || idlen > 32 ||
	    !SSL_SESSION_to_bytes(session, &bytes, &len) || len > SESSION_MAX) {
		OPENSSL_free(bytes);
		return 0;
	}
	b = bucket(id, idlen);
	/* The way that expires first (an empty one expires at 0). */
	s = b[0].expires <= b[1].expires ? &b[0] : &b[1];
	if (lock(s)) {	/* busy: another worker writes; skip, it is a cache */
		seq_write_begin(&s->seq);
		memcpy(s->id, id, idlen);
		s->idlen = (uint8_t)idlen;
		s->expires = (int64_t)time(NULL) +
		    (int64_t)SSL_SESSION_get_timeout(session);
		s->len = (uint16_t)len;
		memcpy(s->data, bytes, len);
		seq_write_end(&s->seq);
		unlock(s);
	}
	OPENSSL_free(bytes);
	return 0;	/* the session stays BoringSSL's */
}

static SSL_SESSION *
get_cb(SSL *ssl, const uint8_t *id, int idlen, int *out_copy)
{
	uint8_t data[SESSION_MAX];
	struct slot *b;

	*out_copy = 0;
	if (slots == NULL || idlen <= 0 || idlen > 32)
		return NULL;
	b = bucket(id, (size_t)idlen);
	for (int way = 0; way < 2; way++) {
		struct slot *s = &b[way];
		for (int tries = 0; tries < 8; tries++) {
			uint32_t begin = seq_read_begin(&s->seq);
			size_t len;
			bool match;
			match = s->idlen == idlen && memcmp(s->id, id,
			    (size_t)idlen) == 0 && s->expires > (int64_t)time(NULL);
			len = s->len;
			if (match && len <= SESSION_MAX)
				memcpy(data, s->data, len);
			if (!seq_read_ok(&s->seq, begin))
				continue;
			if (!match || len > SESSION_MAX)
				break;
			SSL_SESSION *session = SSL_SESSION_from_bytes(data, len,
			    SSL_get_SSL_CTX(ssl));
			OPENSSL_cleanse(data, len);
			return session;
		}
	}
	return NULL;
}

static void
remove_cb(SSL_CTX *ctx, SSL_SESSION *session)
{
	unsigned idlen;
	const uint8_t *id = SSL_SESSION_get_id(session, &idlen);
	struct slot *b;

	(void)ctx;
	if (slots == NULL || idlen == 0 || idlen > 32)
		return;
	b = bucket(id, idlen);
	for (int way = 0; way < 2; way++)
		if (b[way].idlen == idlen && memcmp(b[way].id, id, idlen) == 0 &&
		    lock(&b[way])) {
			seq_write_begin(&b[way].seq);
			b[way].expires = 0;
			seq_write_end(&b[way].seq);
			unlock(&b[way]);
		}
}

void
sesscache_setup(SSL_CTX *ctx)
{
	if (slots == NULL)
		return;		/* BoringSSL's own per-context cache */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER |
	    SSL_SESS_CACHE_NO_INTERNAL);
	SSL_CTX_sess_set_new_cb(ctx, new_cb);
	SSL_CTX_sess_set_get_cb(ctx, get_cb);
	SSL_CTX_sess_set_remove_cb(ctx, remove_cb);
}
