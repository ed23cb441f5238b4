/*
 * accounts: [account:NAME] sections and their hashes; see accounts.h.
 */
#include "accounts.h"

#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <openssl/mem.h>
#include <openssl/sha.h>

#include "config_impl.h"
#include "seqlock.h"

/* ---- the sections ------------------------------------------------------ */

struct account *
account_for(struct parser *p, const char *name)
{
	struct config *cf = p->cf;
	struct account *grown, *a;

	/* The same section as the previous key (no new header since). */
	if (cf->naccounts > 0 && cf->accounts[cf->naccounts - 1].line ==
	    p->section_line)
		return &cf->accounts[cf->naccounts - 1];
	if (*name == '\0' || strlen(name) > 255 ||
	    strpbrk(name, " \t\r\n\"\\") != NULL) {
		cfg_error(p, p->section_line, "[account:%s]: the name must not "
		    "be empty, longer than 255 bytes, or hold blanks, quotes or "
		    "backslashes", name);
		return NULL;
	}
	for (size_t i = 0; i < cf->naccounts; i++)
		if (strcmp(cf->accounts[i].name, name) == 0) {
			cfg_error(p, p->section_line, "[account:%s] is defined "
			    "twice (first at line %d)", name,
			    cf->accounts[i].line);
			return NULL;
		}
	if (cf->naccounts == ACCOUNTS_MAX) {
		cfg_error(p, p->section_line, "at most %d accounts",
		    ACCOUNTS_MAX);
		return NULL;
	}
	grown = realloc(cf->accounts, (cf->naccounts + 1) * sizeof(*a));
	if (grown == NULL) {
		cfg_error(p, p->section_line, "out of memory");
		return NULL;
	}
	cf->accounts = grown;
	a = &cf->accounts[cf->naccounts];
	memset(a, 0, sizeof(*a));
	if ((a->name = strdup(name)) == NULL) {
		cfg_error(p, p->section_line, "out of memory");
		return NULL;
	}
	a->line = p->section_line;
	a->oauth2.slot = -1;
	cf->naccounts++;
	return a;
}

void *
account_field(struct account *a, enum config_key k)
{
	switch (k) {
	case K_PASSWORD_HASH:
		return &a->password_hash;
	case K_CLIENT_CERT:
		return &a->client_cert;
	case K_UPSTREAM_USER:
		return &a->upstream_user;
	case K_PASSWORD_FILE:
		return &a->upstream_password_file;
	case K_TOKEN_FILE:
		return &a->upstream_token_file;
	case K_OAUTH2_STORE:
		return &a->oauth2.store;
	case K_OAUTH2_PROVIDER:
		return &a->oauth2.provider;
	case K_OAUTH2_CLIENT_ID:
		return &a->oauth2.client_id;
	case K_OAUTH2_SECRET_FILE:
		return &a->oauth2.client_secret_file;
	case K_OAUTH2_SCOPE:
		return &a->oauth2.scope;
	case K_OAUTH2_TOKEN_URL:
		return &a->oauth2.token_url;
	case K_OAUTH2_DEVICE_URL:
		return &a->oauth2.device_url;
	case K_OAUTH2_CA:
		return &a->oauth2.ca;
	case K_OAUTH2_GRANT:
		return &a->oauth2.grant;
	case K_OAUTH2_AUTHORIZE_URL:
		return &a->oauth2.authorize_url;
	case K_OAUTH2_TENANT:
		return &a->oauth2.tenant;
	case K_OAUTH2_CLOUD:
		return &a->oauth2.cloud;
	case K_OAUTH2_CLIENT_CERT:
		return &a->oauth2.client_cert;
	case K_OAUTH2_CLIENT_KEY:
		return &a->oauth2.client_key;
	case K_OAUTH2_SA_FILE:
		return &a->oauth2.sa_file;
	default:
		return NULL;
	}
}

void
account_free(struct account *a)
{
	free(a->name);
	free(a->password_hash);
	free(a->upstream_user);
	free(a->upstream_password_file);
	if (a->upstream_password != NULL) {
		OPENSSL_cleanse(a->upstream_password, a->upstream_password_len);
		free(a->upstream_password);
	}
	free(a->upstream_token_file);
	oauth2_conf_free(&a->oauth2);
}

/* What identifies an account across reloads: a session logged in as it
 * ends when a reload drops it or changes its password or credential. */
static uint64_t
fingerprint(const struct account *a)
{
	const char *const parts[] = { a->name, a->password_hash,
	    a->upstream_user, a->upstream_password_file,
	    a->upstream_token_file, a->oauth2.store };
	uint8_t md[SHA256_DIGEST_LENGTH];
	SHA256_CTX c;
	uint64_t fp;

	SHA256_Init(&c);
	for (size_t i = 0; i < sizeof(parts) / sizeof(*parts); i++)
		SHA256_Update(&c, parts[i] != NULL ? parts[i] : "",
		    (parts[i] != NULL ? strlen(parts[i]) : 0) + 1);
	if (a->client_cert.set)
		SHA256_Update(&c, a->client_cert.md, sizeof(a->client_cert.md));
	SHA256_Final(md, &c);
	memcpy(&fp, md, sizeof(fp));
	return fp;
}

/* Does an accounts service ask devices for certificates? */
static bool
accounts_ask_certificates(const struct config *cf)
{
	for (size_t i = 0; i < cf->nservices; i++)
		if (cf->services[i].upstream_auth == AUTH_ACCOUNTS &&
		    cf->services[i].client_verify != CLIENT_VERIFY_NO)
			return true;
	return false;
}

static void
validate_account(struct parser *p, struct account *a)
{
	static const int creds[] = { K_PASSWORD_FILE, K_TOKEN_FILE,
	    K_OAUTH2_STORE };
	struct config *cf = p->cf;
	int given = 0;

	if (a->seen[K_PASSWORD_HASH] == 0 && !a->client_cert.set)
		cfg_error(p, a->line, "[account:%s]: password_hash is required "
		    "(mailproxy -H makes one), or client_cert", a->name);
	if (a->client_cert.set && !accounts_ask_certificates(cf))
		cfg_error(p, a->seen[K_CLIENT_CERT], "[account:%s]: client_cert "
		    "needs client_verify (optional or require) on the accounts "
		    "service", a->name);
	/* An application's own token (oauth2_grant) is a credential too. */
	if (oauth2_app_grant(&a->oauth2)) {
		given = 1;
		a->cred = ACCT_TOKEN_STORE;
	}
	for (size_t i = 0; i < 3; i++)
		if (a->seen[creds[i]] != 0) {
			if (given++ > 0)
				cfg_error(p, a->seen[creds[i]], "[account:%s]: "
				    "one upstream credential only "
				    "(upstream_password_file, upstream_token_file "
				    "or oauth2_token_store)", a->name);
			a->cred = i == 0 ? ACCT_PASSWORD : i == 1 ?
			    ACCT_TOKEN_FILE : ACCT_TOKEN_STORE;
		}
	if (given == 0)
		cfg_error(p, a->line, "[account:%s]: needs an upstream "
		    "credential: upstream_password_file, upstream_token_file or "
		    "oauth2_token_store", a->name);
	if (a->upstream_token_file != NULL && cf->user != NULL &&
	    !readable_by(a->upstream_token_file, cf->user, cf->uid, cf->gid))
		cfg_error(p, a->seen[K_TOKEN_FILE], "upstream_token_file %s: user "
		    "%s cannot read it, and the workers read it for every session "
		    "after dropping to that user", a->upstream_token_file,
		    cf->user);
	if (a->oauth2.store != NULL || oauth2_app_grant(&a->oauth2))
		validate_oauth2(p, &a->oauth2, a->seen, a->name, -1,
		    a->upstream_user != NULL ? a->upstream_user : a->name);
	else
		for (int k = K_OAUTH2_PROVIDER; k < K_OAUTH2_STORE; k++)
			if (a->seen[k] != 0)
				cfg_error(p, a->seen[k], "[account:%s]: %s is only "
				    "used with oauth2_token_store", a->name,
				    config_keys[k].name);
	if (a->upstream_user == NULL && (a->upstream_user = strdup(a->name)) ==
	    NULL)
		cfg_error(p, a->line, "out of memory");
	a->fingerprint = fingerprint(a);
}

static void	check_one_cost(struct parser *p);

void
accounts_validate(struct parser *p)
{
	struct config *cf = p->cf;
	bool used = false;

	for (size_t i = 0; i < cf->nservices; i++) {
		struct service *svc = &cf->services[i];
		int line = svc->seen[K_UPSTREAM_AUTH];
		if (svc->upstream_auth != AUTH_ACCOUNTS)
			continue;
		used = true;
		if (svc->upstream_tls == TLS_MODE_NONE)
			cfg_error(p, line, "[%s]: upstream_auth = accounts needs "
			    "upstream_tls = starttls or implicit (credentials "
			    "never cross the network in clear)", svc->name);
		if (svc->client_tls == TLS_MODE_NONE)
			cfg_error(p, line, "[%s]: upstream_auth = accounts needs "
			    "client_tls = implicit or starttls (clients log in "
			    "inside TLS only)", svc->name);
		if (cf->naccounts == 0)
			cfg_error(p, line, "[%s]: upstream_auth = accounts needs "
			    "at least one [account:NAME] section", svc->name);
	}
	for (size_t i = 0; i < cf->naccounts; i++) {
		validate_account(p, &cf->accounts[i]);
		if (!used && i == 0)
			cfg_error(p, cf->accounts[i].line, "[account:%s]: no "
			    "service has upstream_auth = accounts",
			    cf->accounts[i].name);
	}
	check_one_cost(p);
}

/*
 * What a hash's cost depends on: "$y$PARAMS" for yescrypt, "$6$rounds=N"
 * for sha512crypt (5000 when not written).
 */
static void
hash_setting(const char *hash, char *out, size_t cap)
{
	const char *end;

	if (strncmp(hash, "$6$", 3) == 0) {
		if (strncmp(hash + 3, "rounds=", 7) == 0 &&
		    (end = strchr(hash + 3, '$')) != NULL)
			snprintf(out, cap, "%.*s", (int)(end - hash), hash);
		else
			snprintf(out, cap, "$6$rounds=5000");
	} else if ((end = strchr(hash + 3, '$')) != NULL)
		snprintf(out, cap, "%.*s", (int)(end - hash), hash);
	else
		snprintf(out, cap, "%s", hash);
}

/*
 * An unknown name is checked against the first account's hash, so that
 * it costs what a wrong password costs: only if every hash costs the same
 * (one method, one cost) can the time of an answer not tell names apart.
 */
static void
check_one_cost(struct parser *p)
{
	struct config *cf = p->cf;
	const char *dummy = accounts_dummy_hash(cf), *first_name = NULL;
	char first[64], other[64];

	if (dummy == NULL)
		return;
	hash_setting(dummy, first, sizeof(first));
	for (size_t i = 0; i < cf->naccounts && first_name == NULL; i++)
		if (cf->accounts[i].password_hash == dummy)
			first_name = cf->accounts[i].name;
	for (size_t i = 0; i < cf->naccounts; i++) {
		if (cf->accounts[i].password_hash == NULL)
			continue;
		hash_setting(cf->accounts[i].password_hash, other,
		    sizeof(other));
		if (strcmp(first, other) != 0)
			cfg_error(p, cf->accounts[i].seen[K_PASSWORD_HASH],
			    "[account:%s]: password_hash is %s..., [account:%s]'s "
			    "%s...: all accounts need one method and cost, or the "
			    "time of a refusal tells an unknown name from a wrong "
			    "password (make them all with mailproxy -H)",
			    cf->accounts[i].name, other, first_name, first);
	}
}

const char *
accounts_dummy_hash(const struct config *cf)
{
	for (size_t i = 0; i < cf->naccounts; i++)
		if (cf->accounts[i].password_hash != NULL)
			return cf->accounts[i].password_hash;
	return NULL;
}

const struct account *
accounts_find(const struct config *cf, const char *name)
{
	for (size_t i = 0; i < cf->naccounts; i++)
		if (strcmp(cf->accounts[i].name, name) == 0)
			return &cf->accounts[i];
	return NULL;
}

/* ---- hashes ------------------------------------------------------------ */

/* crypt(3)'s scratch space is large (32 KiB): on the heap, per call. */
static char *
crypt_with(const char *phrase, const char *setting, char *out, size_t cap)
{
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	const char *r;
	char *rc = NULL;

	if (cd == NULL)
		return NULL;
	r = crypt_rn(phrase, setting, cd, (int)sizeof(*cd));
	if (r != NULL && r[0] != '*' && strlen(r) < cap) {
		memcpy(out, r, strlen(r) + 1);
		rc = out;
	}
	OPENSSL_cleanse(cd, sizeof(*cd));
	free(cd);
	return rc;
}

/*
 * Hashes found good, by SHA-256 of the string: a reload of a file with
 * thousands of accounts would compute every hash again (tens of ms each)
 * on the supervisor's loop, which also refreshes tokens.  A string that
 * this libcrypt computed once it computes again; only good ones are
 * remembered, and at most CHECKED_MAX (then it starts over).
 */
#define CHECKED_MAX	(2 * ACCOUNTS_MAX)

static uint8_t		(*checked)[SHA256_DIGEST_LENGTH];
static size_t		 nchecked;

static bool
hash_checked(const uint8_t digest[SHA256_DIGEST_LENGTH])
{
	for (size_t i = 0; i < nchecked; i++)
		if (memcmp(checked[i], digest, SHA256_DIGEST_LENGTH) == 0)
			return true;
	return false;
}

static void
hash_remember(const uint8_t digest[SHA256_DIGEST_LENGTH])
{
	if (checked == NULL && (checked = calloc(CHECKED_MAX,
	    sizeof(*checked))) == NULL)
		return;
	if (nchecked == CHECKED_MAX)
		nchecked = 0;
	memcpy(checked[nchecked++], digest, SHA256_DIGEST_LENGTH);
}

int
account_hash_check(const char *hash, char *why, size_t len)
{
	char out[CRYPT_OUTPUT_SIZE];
	const char *last = strrchr(hash, '$');
	uint8_t digest[SHA256_DIGEST_LENGTH];

	SHA256((const uint8_t *)hash, strlen(hash), digest);
	if (hash_checked(digest))
		return 0;

	if (strncmp(hash, "$y$", 3) != 0 && strncmp(hash, "$6$", 3) != 0) {
		snprintf(why, len, "not a yescrypt ($y$...) or sha512crypt "
		    "($6$...) hash: make one with mailproxy -H");
		return -1;
	}
	/* The hash of any phrase with this setting must look like it: same
	 * method, parameters and salt, and a full-length digest. */
	if (crypt_with("", hash, out, sizeof(out)) == NULL ||
	    strlen(out) != strlen(hash) || last == NULL ||
	    strncmp(out, hash, (size_t)(last - hash) + 1) != 0) {
		snprintf(why, len, "not a complete hash this libcrypt can "
		    "check (truncated, or bad parameters)");
		return -1;
	}
	hash_remember(digest);
	return 0;
}

bool
account_password_ok(const char *hash, const char *password, size_t len)
{
	char out[CRYPT_OUTPUT_SIZE], *phrase;
	bool ok;

	/* crypt takes a C string: a NUL inside can never match. */
	if (memchr(password, '\0', len) != NULL ||
	    (phrase = malloc(len + 1)) == NULL)
		return false;
	memcpy(phrase, password, len);
	phrase[len] = '\0';
	ok = crypt_with(phrase, hash, out, sizeof(out)) != NULL &&
	    CRYPTO_memcmp(out, hash, strlen(hash) + 1 <= sizeof(out) ?
	    strlen(hash) + 1 : sizeof(out)) == 0;
	OPENSSL_cleanse(phrase, len);
	free(phrase);
	return ok;
}

int
account_make_hash(const char *password, char *out, size_t cap)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];

	if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting,
	    (int)sizeof(setting)) == NULL)
		return -1;
	return crypt_with(password, setting, out, cap) != NULL ? 0 : -1;
}

enum login_gate
accounts_gate(bool password_ok, const struct account *a,
    struct blocks_attempt *at, const struct sockaddr_any *addr, int max,
    int window)
{
	bool removed = password_ok && a != NULL &&
	    !accounts_current(a->fingerprint);
	bool ok = password_ok && a != NULL && !removed;

	if (blocks_end(at, addr, !ok, max, window) == BLOCKS_BLOCKED)
		return GATE_BLOCKED;
	return removed ? GATE_REMOVED : ok ? GATE_ACCEPT : GATE_REFUSED;
}

/* ---- the running configuration's accounts, shared -------------------- */

struct live_table {
	uint32_t	 seq;
	uint32_t	 n;
	uint64_t	 fp[ACCOUNTS_MAX];
};

static struct live_table *live;

int
accounts_shared_init(void)
{
	void *p = mmap(NULL, sizeof(*live), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return -1;
	live = p;
	return 0;
}

void
accounts_publish(const struct config *cf)
{
	if (live == NULL)
		return;
	seq_write_begin(&live->seq);
	for (size_t i = 0; i < cf->naccounts; i++)
		__atomic_store_n(&live->fp[i], cf->accounts[i].fingerprint,
		    __ATOMIC_RELAXED);
	__atomic_store_n(&live->n, (uint32_t)cf->naccounts, __ATOMIC_RELAXED);
	seq_write_end(&live->seq);
}

/*
 * Unreadable (the supervisor stuck or dead mid-publish) counts as not
 * current: the caller refuses the login or ends the session, which a
 * client can retry, rather than let an account a reload removed in.
 */
bool
accounts_current(uint64_t fingerprint)
{
	uint32_t begin, n;
	bool found;
	int tries = 0;

	if (live == NULL)
		return true;
	do {
		begin = seq_read_begin(&live->seq);
		n = __atomic_load_n(&live->n, __ATOMIC_RELAXED);
		found = false;
		for (uint32_t i = 0; i < n && i < ACCOUNTS_MAX && !found; i++)
			found = __atomic_load_n(&live->fp[i], __ATOMIC_RELAXED) ==
			    fingerprint;
		if (seq_read_ok(&live->seq, begin))
			return found;
	} while (seq_read_again(&tries));
	return false;
}
