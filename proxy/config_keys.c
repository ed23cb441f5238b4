/*
 * config_keys: the key table (designated by enum config_key) and the
 * setter of each key's value: every bad value is an error naming the line.
 */
#include "config_impl.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/mem.h>

#include "accounts.h"
#include "secret.h"
#include "tickets.h"
#include "tls.h"

const char *const proto_names[] = { "smtp", "pop3", "imap" };
const char *const tls_mode_names[] = { "none", "implicit", "starttls" };
const char *const upstream_auth_names[] = { "none", "plain", "login",
    "xoauth2", "oauthbearer", "accounts" };

static int
word_index(const char *value, const char *const *words, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(value, words[i]) == 0)
			return (int)i;
	return -1;
}

static int
set_word(struct parser *p, int *field, const char *value,
    const char *const *words, size_t n)
{
	int i = word_index(value, words, n);

	if (i < 0) {
		cfg_error(p, p->line, "%s: unknown value \"%s\"", p->key, value);
		return -1;
	}
	*field = i;
	return 0;
}

static int
set_log_level(struct parser *p, void *f, const char *v)
{
	static const char *const w[] = { "error", "warn", "info", "debug" };
	int i;

	if (set_word(p, &i, v, w, 4) < 0)
		return -1;
	*(enum log_level *)f = (enum log_level)i;
	return 0;
}

static int
set_log_format(struct parser *p, void *f, const char *v)
{
	static const char *const w[] = { "text", "json" };
	int i;

	if (set_word(p, &i, v, w, 2) < 0)
		return -1;
	*(enum log_format *)f = (enum log_format)i;
	return 0;
}

static int
parse_int(struct parser *p, const char *v, long lo, long hi, int *out)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || n < lo || n > hi) {
		cfg_error(p, p->line, "%s: \"%s\" is not a number from %ld to %ld",
		    p->key, v, lo, hi);
		return -1;
	}
	*out = (int)n;
	return 0;
}

static int
set_connections(struct parser *p, void *f, const char *v)
{
	return parse_int(p, v, 1, 1000000, f);
}

static int set_string(struct parser *p, void *f, const char *v);

/* tls_ticket_key_file: read (and checked) now, so a reload re-reads it. */
static int
set_ticket_keys(struct parser *p, void *f, const char *v)
{
	char err[300];

	if (tickets_read_file(v, &p->cf->ticket_keys, &p->cf->ticket_keys_len,
	    err, sizeof(err)) < 0) {
		cfg_error(p, p->line, "tls_ticket_key_file: %s", err);
		return -1;
	}
	return set_string(p, f, v);
}

/* tls_ciphers: modern, legacy, or a suite list this BoringSSL accepts
 * whole (checked now: a typo is an error, not a smaller list). */
static int
set_ciphers(struct parser *p, void *f, const char *v)
{
	SSL_CTX *ctx;
	int ok;

	if (strcmp(v, "modern") != 0 && strcmp(v, "legacy") != 0) {
		if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL)
			return -1;
		ok = SSL_CTX_set_strict_cipher_list(ctx, v);
		SSL_CTX_free(ctx);
		ERR_clear_error();
		if (!ok) {
			cfg_error(p, p->line, "tls_ciphers: \"%s\" is not modern, "
			    "legacy or a list of suites this BoringSSL has", v);
			return -1;
		}
	}
	return set_string(p, f, v);
}

/* tls_session_cache: 0 (none) to a million sessions. */
static int
set_cache_size(struct parser *p, void *f, const char *v)
{
	return parse_int(p, v, 0, 1000000, f);
}

/* dns_refresh: 0 (at load and reload only) to a day. */
static int
set_refresh(struct parser *p, void *f, const char *v)
{
	return parse_int(p, v, 0, 86400, f);
}

/* ready_upstream_failures: 0 (never) to 1000. */
static int
set_failures(struct parser *p, void *f, const char *v)
{
	return parse_int(p, v, 0, 1000, f);
}

/* workers: 1..64 or auto (one per CPU, at most 64). */
static int
set_workers(struct parser *p, void *f, const char *v)
{
	if (strcasecmp(v, "auto") == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		*(int *)f = n < 1 ? 1 : n > 64 ? 64 : (int)n;
		return 0;
	}
	return parse_int(p, v, 1, 64, f);
}

/* user: must exist now, so that a typo is a config error, not a late crash. */
static int
set_user(struct parser *p, void *f, const char *v)
{
	struct passwd *pw = getpwnam(v);

	if (pw == NULL) {
		cfg_error(p, p->line, "user: no such user \"%s\"", v);
		return -1;
	}
	p->cf->uid = pw->pw_uid;
	p->cf->gid = pw->pw_gid;
	return set_string(p, f, v);
}

static int
set_seconds(struct parser *p, void *f, const char *v)
{
	return parse_int(p, v, 1, 86400, f);
}

static int
set_protocol(struct parser *p, void *f, const char *v)
{
	int i;

	if (set_word(p, &i, v, proto_names, 3) < 0)
		return -1;
	*(enum proto *)f = (enum proto)i;
	return 0;
}

/* client_tls, upstream_tls: none, implicit, starttls. */
static int
set_tls_mode(struct parser *p, void *f, const char *v)
{
	int i;

	if (set_word(p, &i, v, tls_mode_names, 3) < 0)
		return -1;
	*(enum tls_mode *)f = (enum tls_mode)i;
	return 0;
}

static int
set_tls_version(struct parser *p, int *field, const char *v,
    const char *const *words, const int *versions, size_t n)
{
	int i = word_index(v, words, n);

	if (i < 0) {
		cfg_error(p, p->line, "%s: unknown TLS version \"%s\"", p->key, v);
		return -1;
	}
	*field = versions[i];
	return 0;
}

static int
set_client_tls_min(struct parser *p, void *f, const char *v)
{
	static const char *const w[] = { "1.0", "1.1", "1.2", "1.3" };
	static const int ver[] = { TLS1_VERSION, TLS1_1_VERSION,
	    TLS1_2_VERSION, TLS1_3_VERSION };

	return set_tls_version(p, f, v, w, ver, 4);
}

static int
set_upstream_tls_min(struct parser *p, void *f, const char *v)
{
	static const char *const w[] = { "1.2", "1.3" };
	static const int ver[] = { TLS1_2_VERSION, TLS1_3_VERSION };

	return set_tls_version(p, f, v, w, ver, 2);
}

static int
set_yesno(struct parser *p, void *f, const char *v)
{
	static const char *const w[] = { "no", "yes" };
	int i;

	if (set_word(p, &i, v, w, 2) < 0)
		return -1;
	*(bool *)f = i == 1;
	return 0;
}

static int
set_string(struct parser *p, void *f, const char *v)
{
	if (*v == '\0') {
		cfg_error(p, p->line, "%s: empty value", p->key);
		return -1;
	}
	if ((*(char **)f = strdup(v)) == NULL) {
		cfg_error(p, p->line, "out of memory");
		return -1;
	}
	return 0;
}

static int
set_listen(struct parser *p, void *f, const char *v)
{
	struct service *svc = p->svc;
	struct listen_addr *la, *grown;
	struct sockaddr_any *addrs;
	char *host, *port;
	const char *why;
	int n;

	(void)f;
	if (hostport_split(v, &host, &port) < 0) {
		cfg_error(p, p->line, "listen: \"%s\" is not host:port or "
		    "[v6addr]:port with a port from 0 to 65535", v);
		return -1;
	}
	n = addr_resolve(*host == '\0' || strcmp(host, "*") == 0 ? NULL : host,
	    port, true, false, &addrs, &why);
	free(host);
	free(port);
	if (n < 0) {
		cfg_error(p, p->line, "listen: \"%s\": %s", v, why);
		return -1;
	}
	grown = realloc(svc->listen, (svc->nlisten + 1) * sizeof(*la));
	if (grown == NULL || (grown[svc->nlisten].text = strdup(v)) == NULL) {
		if (grown != NULL)
			svc->listen = grown;
		free(addrs);
		cfg_error(p, p->line, "listen: out of memory");
		return -1;
	}
	svc->listen = grown;
	la = &svc->listen[svc->nlisten++];
	la->routes = NULL;
	la->nroutes = 0;
	la->shared = false;
	la->addr = addrs[0];	/* the first: a name listens on one address */
	la->line = p->line;
	free(addrs);
	return 0;
}

/* metrics = host:port (an address, not a name: it is bound). */
static int
set_metrics(struct parser *p, void *f, const char *v)
{
	struct sockaddr_any *a = f, *addrs;
	char *host, *port;
	const char *why;
	int n;

	if (hostport_split(v, &host, &port) < 0) {
		cfg_error(p, p->line, "metrics: \"%s\" is not host:port", v);
		return -1;
	}
	n = addr_resolve(*host ? host : NULL, port, true, true, &addrs, &why);
	free(host);
	free(port);
	if (n < 0) {
		cfg_error(p, p->line, "metrics: \"%s\": %s", v, why);
		return -1;
	}
	*a = addrs[0];
	free(addrs);
	return 0;
}

static int
set_upstream(struct parser *p, void *f, const char *v)
{
	struct service *svc = p->svc;

	if (hostport_split(v, &svc->upstream_host, &svc->upstream_port) < 0 ||
	    *svc->upstream_host == '\0' ||
	    strtoul(svc->upstream_port, NULL, 10) == 0) {
		cfg_error(p, p->line, "upstream: \"%s\" is not host:port or "
		    "[v6addr]:port with a port from 1 to 65535", v);
		return -1;
	}
	return set_string(p, f, v);
}

/* A host name as it may appear in EHLO: letters, digits, '-' and '.'. */
/* Letters, digits, '-' and '.': what a host name may hold. */
static bool
valid_hostname(const char *v)
{
	return *v != '\0' && strlen(v) <= 253 && strspn(v,
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") ==
	    strlen(v);
}

static int
set_hostname(struct parser *p, void *f, const char *v)
{
	if (!valid_hostname(v)) {
		cfg_error(p, p->line, "%s: \"%s\" is not a host name", p->key, v);
		return -1;
	}
	return set_string(p, f, v);
}

/* One item of a list value, parsed into its place in the list. */
union list_item {
	struct cidr	 cidr;
	uint8_t		 md[32];
	char		*name;
};

/*
 * A list value (allow, proxy_trusted, allow_cert, upstream_pin, sni):
 * blanks or commas between items, each read by parse (0, or -1 having said
 * why) and appended to *listp (n items of size bytes).  An empty list is
 * an error; the keys that take one are repeatable where a line is short.
 */
static int
set_list(struct parser *p, const char *v, void *listp, size_t *n,
    size_t size, int (*parse)(struct parser *, char *, union list_item *))
{
	char *copy = strdup(v), *tok, *save = NULL, **list = listp;
	int rc = 0;

	if (copy == NULL) {
		cfg_error(p, p->line, "%s: out of memory", p->key);
		return -1;
	}
	for (tok = strtok_r(copy, " \t,", &save); tok != NULL;
	    tok = strtok_r(NULL, " \t,", &save)) {
		union list_item item;
		char *grown;
		if (parse(p, tok, &item) < 0) {
			rc = -1;
			continue;
		}
		if ((grown = realloc(*list, (*n + 1) * size)) == NULL) {
			cfg_error(p, p->line, "%s: out of memory", p->key);
			rc = -1;
			break;
		}
		memcpy(grown + *n * size, &item, size);
		*list = grown;
		(*n)++;
	}
	if (rc == 0 && *n == 0) {
		cfg_error(p, p->line, "%s: empty list", p->key);
		rc = -1;
	}
	free(copy);
	return rc;
}

static int
parse_cidr(struct parser *p, char *tok, union list_item *item)
{
	if (cidr_parse(tok, &item->cidr) == 0)
		return 0;
	cfg_error(p, p->line, "%s: \"%s\" is not an address or CIDR range "
	    "(host bits must be zero)", p->key, tok);
	return -1;
}

/* A CIDR list ("allow", "proxy_trusted"). */
static int
set_cidr_list(struct parser *p, struct cidr **listp, size_t *np, const char *v)
{
	return set_list(p, v, listp, np, sizeof(**listp), parse_cidr);
}

static int
set_client_verify(struct parser *p, void *f, const char *v)
{
	static const char *const w[] = { "no", "optional", "require" };

	return set_word(p, (int *)f, v, w, 3);
}

static int
hex_digit(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ?
	    c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int
config_fingerprint_parse(const char *text, uint8_t out[32])
{
	size_t n = 0;

	if (strncasecmp(text, "sha256:", 7) != 0)
		return -1;
	for (const char *c = text + 7; *c != '\0'; c++) {
		int hi, lo;
		if (*c == ':')
			continue;
		if (n == 32 || (hi = hex_digit(c[0])) < 0 ||
		    (lo = hex_digit(c[1])) < 0)
			return -1;
		out[n++] = (uint8_t)(hi << 4 | lo);
		c++;
	}
	return n == 32 ? 0 : -1;
}

/* A TLS server name for sni: a host name, or "*." and one (a one-label
 * wildcard); kept in lower case. */
static int
parse_server_name(struct parser *p, char *tok, union list_item *item)
{
	const char *name = strncmp(tok, "*.", 2) == 0 ? tok + 2 : tok;

	if (!valid_hostname(name) || strchr(name, '*') != NULL ||
	    (name != tok && strchr(name, '.') == NULL)) {
		cfg_error(p, p->line, "%s: \"%s\" is not a host name or *.domain",
		    p->key, tok);
		return -1;
	}
	for (char *c = tok; *c != '\0'; c++)
		*c = (char)tolower((unsigned char)*c);
	if ((item->name = strdup(tok)) == NULL) {
		cfg_error(p, p->line, "%s: out of memory", p->key);
		return -1;
	}
	return 0;
}

/* sni: the TLS server names a service answers on a shared address. */
static int
set_sni(struct parser *p, void *f, const char *v)
{
	(void)f;
	return set_list(p, v, &p->svc->sni, &p->svc->nsni, sizeof(*p->svc->sni),
	    parse_server_name);
}

/* An account's client_cert: the device presenting it is the account. */
static int
set_client_cert(struct parser *p, void *f, const char *v)
{
	struct cert_fingerprint *fp = f;

	if (config_fingerprint_parse(v, fp->md) < 0) {
		cfg_error(p, p->line, "%s: \"%s\" is not sha256: and the 64 hex "
		    "digits of a certificate's SHA-256", p->key, v);
		return -1;
	}
	fp->set = true;
	return 0;
}

static int
parse_fingerprint(struct parser *p, char *tok, union list_item *item)
{
	if (config_fingerprint_parse(tok, item->md) == 0)
		return 0;
	cfg_error(p, p->line, "%s: \"%s\" is not sha256: and the 64 hex digits "
	    "of a certificate's SHA-256", p->key, tok);
	return -1;
}

static int
parse_pin(struct parser *p, char *tok, union list_item *item)
{
	if (tls_pin_parse(tok, item->md) == 0)
		return 0;
	cfg_error(p, p->line, "%s: \"%s\" is not sha256/ and the base64 of a "
	    "SHA-256 (as mailproxy -T prints it)", p->key, tok);
	return -1;
}

/* allow_cert: devices admitted by certificate, like allow by address. */
static int
set_allow_cert(struct parser *p, void *f, const char *v)
{
	(void)f;
	return set_list(p, v, &p->svc->allow_certs, &p->svc->nallow_certs,
	    sizeof(*p->svc->allow_certs), parse_fingerprint);
}

/*
 * upstream_pin: SPKI pins as HPKP and curl's --pinnedpubkey write them,
 * "sha256/" and the base64 of 32 bytes (a line holds three: rotation).
 */
static int
set_upstream_pin(struct parser *p, void *f, const char *v)
{
	(void)f;
	return set_list(p, v, &p->svc->upstream_pins, &p->svc->nupstream_pins,
	    sizeof(*p->svc->upstream_pins), parse_pin);
}

static int
set_allow(struct parser *p, void *f, const char *v)
{
	(void)f;
	return set_cidr_list(p, &p->svc->allow, &p->svc->nallow, v);
}

static int
set_proxy_trusted(struct parser *p, void *f, const char *v)
{
	(void)f;
	return set_cidr_list(p, &p->svc->proxy_trusted,
	    &p->svc->nproxy_trusted, v);
}

static int
set_proxy_out(struct parser *p, void *f, const char *v)
{
	static const char *const w[] = { "none", "v1", "v2" };

	return set_word(p, f, v, w, 3);
}

static int
set_file(struct parser *p, void *f, const char *v)
{
	if (access(v, R_OK) != 0) {
		cfg_error(p, p->line, "%s: cannot read %s: %s", p->key, v,
		    strerror(errno));
		return -1;
	}
	return set_string(p, f, v);
}

static int
set_upstream_auth(struct parser *p, void *f, const char *v)
{
	return set_word(p, f, v, upstream_auth_names, 6);
}

/* A name that goes into a SASL string: no control bytes, no blanks. */
static int
set_auth_user(struct parser *p, void *f, const char *v)
{
	for (const char *c = v; *c != '\0'; c++)
		if ((unsigned char)*c <= 0x20 || *c == 0x7f) {
			cfg_error(p, p->line, "%s: blanks and control characters "
			    "are not allowed", p->key);
			return -1;
		}
	return set_string(p, f, v);
}

/* Checked (and, for the password, read) when the file is loaded. */
static int
set_secret_file(struct parser *p, void *f, const char *v)
{
	char secret[SECRET_MAX + 1], err[300];
	int n;

	if ((n = secret_read(v, secret, sizeof(secret), err,
	    sizeof(err))) < 0) {
		/* A refused file (too large, two lines) was read all the same. */
		OPENSSL_cleanse(secret, sizeof(secret));
		cfg_error(p, p->line, "%s: %s", p->key, err);
		return -1;
	}
	if (strcmp(p->key, "oauth2_client_secret_file") == 0) {
		struct oauth2_conf *c = p->acct != NULL ? &p->acct->oauth2 :
		    &p->svc->oauth2;
		free(c->client_secret);
		if ((c->client_secret = strdup(secret)) == NULL) {
			OPENSSL_cleanse(secret, sizeof(secret));
			cfg_error(p, p->line, "%s: out of memory", p->key);
			return -1;
		}
	}
	if (strcmp(p->key, "upstream_password_file") == 0) {
		/* A service's or an account's password: kept from now on. */
		char **pw = p->acct != NULL ? &p->acct->upstream_password :
		    &p->svc->upstream_password;
		size_t *pwlen = p->acct != NULL ?
		    &p->acct->upstream_password_len :
		    &p->svc->upstream_password_len;
		free(*pw);
		*pw = strdup(secret);
		*pwlen = (size_t)n;
		if (*pw == NULL) {
			OPENSSL_cleanse(secret, sizeof(secret));
			cfg_error(p, p->line, "%s: out of memory", p->key);
			return -1;
		}
	}
	OPENSSL_cleanse(secret, sizeof(secret));
	return set_string(p, f, v);
}

static int
set_oauth2_provider(struct parser *p, void *f, const char *v)
{
	/* In the order of enum oauth2_provider. */
	static const char *const w[] = { "custom", "microsoft", "google" };

	return set_word(p, f, v, w, 3);
}

static int
set_oauth2_grant(struct parser *p, void *f, const char *v)
{
	/* In the order of enum oauth2_grant_kind, after AUTO. */
	static const char *const w[] = { "device", "code",
	    "client_credentials", "service_account" };
	int i;

	if (set_word(p, &i, v, w, 4) < 0)
		return -1;
	*(int *)f = i + 1;
	return 0;
}

static int
set_oauth2_cloud(struct parser *p, void *f, const char *v)
{
	static const char *const w[] = { "global", "usgov", "china" };

	return set_word(p, f, v, w, 3);
}

/* A tenant id (a GUID) or a domain: it goes into the token URL's path. */
static int
set_oauth2_tenant(struct parser *p, void *f, const char *v)
{
	for (const char *c = v; *c != '\0'; c++)
		if (!isalnum((unsigned char)*c) && *c != '-' && *c != '.') {
			cfg_error(p, p->line, "%s: a tenant id or domain name "
			    "expected, got \"%s\"", p->key, v);
			return -1;
		}
	return set_string(p, f, v);
}

/* A program run with no shell and no arguments: a path that can run. */
static int
set_program(struct parser *p, void *f, const char *v)
{
	if (v[0] != '/' || access(v, X_OK) != 0) {
		cfg_error(p, p->line, "%s: %s is not an executable file given "
		    "by its absolute path%s%s", p->key, v, v[0] == '/' ? ": " : "",
		    v[0] == '/' ? strerror(errno) : "");
		return -1;
	}
	return set_string(p, f, v);
}

/* Token endpoints: https only (they answer with bearer tokens). */
static int
set_https_url(struct parser *p, void *f, const char *v)
{
	const char *host = v + 8;

	if (strncasecmp(v, "https://", 8) != 0 || *host == '\0' ||
	    *host == '/' || *host == ':' || strpbrk(v, " \t\r\n") != NULL) {
		cfg_error(p, p->line, "%s: an https:// URL expected, got \"%s\"",
		    p->key, v);
		return -1;
	}
	return set_string(p, f, v);
}

/* auth_failures_max: failed logins from an address before it is blocked. */
static int
set_auth_failures(struct parser *p, void *f, const char *v)
{
	return parse_int(p, v, 1, 1000, f);
}

/* auth_block_time: how long those failures count, and the block lasts. */
static int
set_block_time(struct parser *p, void *f, const char *v)
{
	return parse_int(p, v, 1, 7 * 86400, f);
}

/* password_hash: a crypt(3) hash this libcrypt computes (checked now). */
static int
set_password_hash(struct parser *p, void *f, const char *v)
{
	char why[200];

	if (account_hash_check(v, why, sizeof(why)) < 0) {
		cfg_error(p, p->line, "password_hash: %s", why);
		return -1;
	}
	return set_string(p, f, v);
}

/* cert and key are repeatable; the nth cert pairs with the nth key. */
static int
set_pair_part(struct parser *p, char **slot, size_t *n, const char *v)
{
	if (*n == CONFIG_MAX_PAIRS) {
		cfg_error(p, p->line, "%s: at most %d per service", p->key,
		    CONFIG_MAX_PAIRS);
		return -1;
	}
	if (set_file(p, &slot[*n], v) < 0)
		return -1;
	(*n)++;
	return 0;
}

static int
set_cert(struct parser *p, void *f, const char *v)
{
	size_t n = p->svc->ncerts;

	(void)f;
	if (set_pair_part(p, p->svc->certs, &p->svc->ncerts, v) < 0)
		return -1;
	p->svc->cert_lines[n] = p->line;	/* n < CONFIG_MAX_PAIRS now */
	return 0;
}

static int
set_key(struct parser *p, void *f, const char *v)
{
	(void)f;
	return set_pair_part(p, p->svc->keys, &p->svc->nkeys, v);
}
/* ---- the key table ---------------------------------------------------- */

#define G(f)	offsetof(struct config, f)
#define S(f)	offsetof(struct service, f)
#define NONE	((size_t)-1)

const struct key_def config_keys[K_COUNT] = {
	[K_LOG_LEVEL] = { "log_level", SCOPE_GLOBAL, false, G(log_level), NONE, set_log_level, NULL },
	[K_LOG_FORMAT] = { "log_format", SCOPE_GLOBAL, false, G(log_format), NONE, set_log_format, NULL },
	[K_MAX_CONNECTIONS] = { "max_connections", SCOPE_GLOBAL, false, G(max_connections), NONE, set_connections, NULL },
	[K_HANDSHAKE_TIMEOUT] = { "handshake_timeout", SCOPE_BOTH, false, G(timeouts.handshake), S(timeouts.handshake), set_seconds, NULL },
	[K_NEGOTIATION_TIMEOUT] = { "negotiation_timeout", SCOPE_BOTH, false, G(timeouts.negotiation), S(timeouts.negotiation), set_seconds, NULL },
	[K_CONNECT_TIMEOUT] = { "connect_timeout", SCOPE_BOTH, false, G(timeouts.connect), S(timeouts.connect), set_seconds, NULL },
	[K_IDLE_TIMEOUT] = { "idle_timeout", SCOPE_BOTH, false, G(timeouts.idle), S(timeouts.idle), set_seconds, NULL },
	[K_SHUTDOWN_TIMEOUT] = { "shutdown_timeout", SCOPE_GLOBAL, false, G(shutdown_timeout), NONE, set_seconds, NULL },
	[K_PROTOCOL] = { "protocol", SCOPE_SERVICE, false, NONE, S(protocol), set_protocol, NULL },
	[K_LISTEN] = { "listen", SCOPE_SERVICE, true, NONE, S(listen), set_listen, NULL },
	[K_CLIENT_TLS] = { "client_tls", SCOPE_SERVICE, false, NONE, S(client_tls), set_tls_mode, NULL },
	[K_CERT] = { "cert", SCOPE_SERVICE, true, NONE, S(certs), set_cert, NULL },
	[K_KEY] = { "key", SCOPE_SERVICE, true, NONE, S(keys), set_key, NULL },
	[K_TLS_MIN] = { "tls_min_version", SCOPE_SERVICE, false, NONE, S(tls_min_version), set_client_tls_min, NULL },
	[K_UPSTREAM] = { "upstream", SCOPE_SERVICE, false, NONE, S(upstream), set_upstream, NULL },
	[K_UPSTREAM_TLS] = { "upstream_tls", SCOPE_SERVICE, false, NONE, S(upstream_tls), set_tls_mode, NULL },
	[K_UPSTREAM_NAME] = { "upstream_name", SCOPE_SERVICE, false, NONE, S(upstream_name), set_string, NULL },
	[K_UPSTREAM_VERIFY] = { "upstream_verify", SCOPE_SERVICE, false, NONE, S(upstream_verify), set_yesno, NULL },
	[K_UPSTREAM_CA] = { "upstream_ca", SCOPE_SERVICE, false, NONE, S(upstream_ca), set_file, NULL },
	[K_UPSTREAM_TLS_MIN] = { "upstream_tls_min_version", SCOPE_SERVICE, false, NONE, S(upstream_tls_min_version), set_upstream_tls_min, NULL },
	[K_EHLO_NAME] = { "ehlo_name", SCOPE_SERVICE, false, NONE, S(ehlo_name), set_hostname, NULL },
	[K_ALLOW] = { "allow", SCOPE_SERVICE, false, NONE, S(allow), set_allow, NULL },
	[K_WORKERS] = { "workers", SCOPE_GLOBAL, false, G(workers), NONE, set_workers, NULL },
	[K_USER] = { "user", SCOPE_GLOBAL, false, G(user), NONE, set_user, NULL },
	[K_METRICS] = { "metrics", SCOPE_GLOBAL, false, G(metrics), NONE, set_metrics, NULL },
	[K_PP_IN] = { "proxy_protocol_in", SCOPE_SERVICE, false, NONE, S(proxy_protocol_in), set_yesno, NULL },
	[K_PP_TRUSTED] = { "proxy_trusted", SCOPE_SERVICE, false, NONE, S(proxy_trusted), set_proxy_trusted, NULL },
	[K_PP_OUT] = { "proxy_protocol_out", SCOPE_SERVICE, false, NONE, S(proxy_protocol_out), set_proxy_out, NULL },
	[K_MAX_PER_CLIENT] = { "max_connections_per_client", SCOPE_BOTH, false, G(max_connections_per_client), S(max_connections_per_client), set_connections, NULL },
	[K_UPSTREAM_AUTH] = { "upstream_auth", SCOPE_SERVICE, false, NONE, S(upstream_auth), set_upstream_auth, NULL },
	[K_UPSTREAM_USER] = { "upstream_user", SCOPE_SERVICE, false, NONE, S(upstream_user), set_auth_user, NULL },
	[K_PASSWORD_FILE] = { "upstream_password_file", SCOPE_SERVICE, false, NONE, S(upstream_password_file), set_secret_file, NULL },
	[K_TLS_CIPHERS] = { "tls_ciphers", SCOPE_SERVICE, false, NONE, S(tls_ciphers), set_ciphers, NULL },
	[K_SESSION_CACHE] = { "tls_session_cache", SCOPE_GLOBAL, false, G(tls_session_cache), NONE, set_cache_size, NULL },
	[K_UPSTREAM_RESUMPTION] = { "upstream_resumption", SCOPE_SERVICE, false, NONE, S(upstream_resumption), set_yesno, NULL },
	[K_TICKET_KEY_FILE] = { "tls_ticket_key_file", SCOPE_GLOBAL, false, G(tls_ticket_key_file), NONE, set_ticket_keys, NULL },
	[K_DNS_REFRESH] = { "dns_refresh", SCOPE_GLOBAL, false, G(dns_refresh), NONE, set_refresh, NULL },
	[K_WATCH_FILES] = { "watch_files", SCOPE_GLOBAL, false, G(watch_files), NONE, set_yesno, NULL },
	[K_READY_FAILURES] = { "ready_upstream_failures", SCOPE_GLOBAL, false, G(ready_upstream_failures), NONE, set_failures, NULL },
	[K_OAUTH2_PROVIDER] = { "oauth2_provider", SCOPE_SERVICE, false, NONE, S(oauth2.provider), set_oauth2_provider, NULL },
	[K_OAUTH2_CLIENT_ID] = { "oauth2_client_id", SCOPE_SERVICE, false, NONE, S(oauth2.client_id), set_auth_user, NULL },
	[K_OAUTH2_SECRET_FILE] = { "oauth2_client_secret_file", SCOPE_SERVICE, false, NONE, S(oauth2.client_secret_file), set_secret_file, NULL },
	[K_OAUTH2_SCOPE] = { "oauth2_scope", SCOPE_SERVICE, false, NONE, S(oauth2.scope), set_string, NULL },
	[K_OAUTH2_TOKEN_URL] = { "oauth2_token_url", SCOPE_SERVICE, false, NONE, S(oauth2.token_url), set_https_url, NULL },
	[K_OAUTH2_DEVICE_URL] = { "oauth2_device_url", SCOPE_SERVICE, false, NONE, S(oauth2.device_url), set_https_url, NULL },
	[K_OAUTH2_CA] = { "oauth2_ca", SCOPE_SERVICE, false, NONE, S(oauth2.ca), set_file, NULL },
	[K_OAUTH2_GRANT] = { "oauth2_grant", SCOPE_SERVICE, false, NONE, S(oauth2.grant), set_oauth2_grant, NULL },
	[K_OAUTH2_AUTHORIZE_URL] = { "oauth2_authorize_url", SCOPE_SERVICE, false, NONE, S(oauth2.authorize_url), set_https_url, NULL },
	[K_OAUTH2_TENANT] = { "oauth2_tenant", SCOPE_SERVICE, false, NONE, S(oauth2.tenant), set_oauth2_tenant, NULL },
	[K_OAUTH2_CLOUD] = { "oauth2_cloud", SCOPE_SERVICE, false, NONE, S(oauth2.cloud), set_oauth2_cloud, NULL },
	[K_OAUTH2_CLIENT_CERT] = { "oauth2_client_certificate", SCOPE_SERVICE, false, NONE, S(oauth2.client_cert), set_file, NULL },
	[K_OAUTH2_CLIENT_KEY] = { "oauth2_client_key", SCOPE_SERVICE, false, NONE, S(oauth2.client_key), set_file, NULL },
	[K_OAUTH2_SA_FILE] = { "oauth2_service_account_file", SCOPE_SERVICE, false, NONE, S(oauth2.sa_file), set_file, NULL },
	[K_OAUTH2_ALERT] = { "oauth2_alert_command", SCOPE_GLOBAL, false, G(oauth2_alert_command), NONE, set_program, NULL },
	[K_OAUTH2_STORE] = { "oauth2_token_store", SCOPE_SERVICE, false, NONE, S(oauth2.store), set_string, NULL },
	[K_CLIENT_VERIFY] = { "client_verify", SCOPE_SERVICE, false, NONE, S(client_verify), set_client_verify, NULL },
	[K_CLIENT_CA] = { "client_ca", SCOPE_SERVICE, false, NONE, S(client_ca), set_file, NULL },
	[K_CLIENT_CRL] = { "client_crl", SCOPE_SERVICE, false, NONE, S(client_crl), set_file, NULL },
	[K_ALLOW_CERT] = { "allow_cert", SCOPE_SERVICE, true, NONE, NONE, set_allow_cert, NULL },
	[K_SNI] = { "sni", SCOPE_SERVICE, true, NONE, NONE, set_sni, NULL },
	[K_CLIENT_CERT] = { "client_cert", SCOPE_ACCOUNT, false, NONE, NONE, set_client_cert, NULL },
	[K_UPSTREAM_CERT] = { "upstream_cert", SCOPE_SERVICE, false, NONE, S(upstream_cert), set_file, NULL },
	[K_UPSTREAM_KEY] = { "upstream_key", SCOPE_SERVICE, false, NONE, S(upstream_key), set_file, NULL },
	[K_UPSTREAM_PIN] = { "upstream_pin", SCOPE_SERVICE, true, NONE, NONE, set_upstream_pin, NULL },
	[K_TOKEN_FILE] = { "upstream_token_file", SCOPE_SERVICE, false, NONE, S(upstream_token_file), set_secret_file, NULL },
	/* Accounts (upstream_auth = accounts).  An account takes the keys
	 * account_field() gives a place: these two, and upstream_user,
	 * upstream_password_file, upstream_token_file. */
	[K_AUTH_FAILURES_MAX] = { "auth_failures_max", SCOPE_BOTH, false, G(auth_failures_max), S(auth_failures_max), set_auth_failures, NULL },
	[K_AUTH_BLOCK_TIME] = { "auth_block_time", SCOPE_BOTH, false, G(auth_block_time), S(auth_block_time), set_block_time, NULL },
	[K_PASSWORD_HASH] = { "password_hash", SCOPE_ACCOUNT, false, NONE, NONE, set_password_hash, NULL },
};
