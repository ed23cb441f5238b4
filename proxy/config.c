/*
 * config: inih handler -> draft config -> validation -> snapshot.
 *
 * Debian's libinih is built with its defaults: lines of at most 200 bytes,
 * no line number passed to the handler, continuation lines for indented
 * text.  So the file is fed to ini_parse_stream() through our own reader,
 * which counts lines (for FILE:LINE), strips leading blanks (indentation is
 * then harmless) and refuses over-long lines instead of letting inih
 * silently truncate a value.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>
#include <openssl/mem.h>

#include "tls.h"

const char *const proto_names[] = { "smtp", "pop3", "imap" };
const char *const tls_mode_names[] = { "none", "implicit", "starttls" };
const char *const upstream_auth_names[] = { "none", "plain", "login",
    "xoauth2" };

/* inih's line buffer (INI_MAX_LINE in Debian's build). */
#define INIH_MAX_LINE	200

enum scope { SCOPE_GLOBAL = 1, SCOPE_SERVICE = 2, SCOPE_BOTH = 3 };

struct parser;
typedef int (*setter_fn)(struct parser *, void *field, const char *value);

struct key_def {
	const char	*name;
	enum scope	 scope;
	bool		 repeatable;
	size_t		 global_off;	/* offset in struct config */
	size_t		 service_off;	/* offset in struct service */
	setter_fn	 set;
	const char	*values;	/* allowed words, for messages */
};

struct parser {
	const char	*name;		/* file name for messages */
	const char	*text;
	size_t		 len;
	size_t		 pos;
	int		 line;
	int		 section_line;
	char		*errors;
	size_t		 errlen;
	int		 nerrors;
	struct config	*cf;
	struct service	*svc;		/* current section, NULL = global */
	int		 svc_header_line;	/* header line svc came from */
	const char	*key;		/* key being set, for messages */
};

static void
cfg_error(struct parser *p, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;
	char *grown;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Counted even if it cannot be stored: the load must fail anyway. */
	p->nerrors++;
	n = snprintf(NULL, 0, "%s:%d: %s\n", p->name, line, msg);
	if (n < 0 || (grown = realloc(p->errors, p->errlen + (size_t)n + 1)) == NULL)
		return;
	p->errors = grown;
	snprintf(p->errors + p->errlen, (size_t)n + 1, "%s:%d: %s\n", p->name,
	    line, msg);
	p->errlen += (size_t)n;
}

/* ---- value setters ---------------------------------------------------- */

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

/* A port as written: 1 to 5 digits, 0..65535 (0: listen on any free port). */
static bool
port_valid(const char *port)
{
	size_t n = strlen(port);

	return n >= 1 && n <= 5 && strspn(port, "0123456789") == n &&
	    strtoul(port, NULL, 10) <= 65535;
}

/* Splits "host:port" or "[v6]:port"; host "*" or empty means any. */
static int
split_hostport(const char *v, char **host, char **port)
{
	const char *colon;
	size_t hlen;

	if (*v == '[') {
		const char *close = strchr(v, ']');
		if (close == NULL || close[1] != ':')
			return -1;
		hlen = (size_t)(close - v - 1);
		*host = strndup(v + 1, hlen);
		colon = close + 1;
	} else {
		if ((colon = strrchr(v, ':')) == NULL ||
		    memchr(v, ':', (size_t)(colon - v)) != NULL)
			return -1;	/* bare v6 without brackets */
		*host = strndup(v, (size_t)(colon - v));
	}
	*port = strdup(colon + 1);
	if (*host == NULL || *port == NULL || !port_valid(*port)) {
		free(*host);
		free(*port);
		*host = *port = NULL;
		return -1;
	}
	return 0;
}

static int
set_listen(struct parser *p, void *f, const char *v)
{
	struct service *svc = p->svc;
	struct listen_addr *la, *grown;
	struct addrinfo hints, *res;
	char *host, *port;
	int rc;

	(void)f;
	if (split_hostport(v, &host, &port) < 0) {
		cfg_error(p, p->line, "listen: \"%s\" is not host:port or "
		    "[v6addr]:port with a port from 0 to 65535", v);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	rc = getaddrinfo(*host == '\0' || strcmp(host, "*") == 0 ? NULL : host,
	    port, &hints, &res);
	free(host);
	free(port);
	if (rc != 0) {
		cfg_error(p, p->line, "listen: \"%s\": %s", v, gai_strerror(rc));
		return -1;
	}
	grown = realloc(svc->listen, (svc->nlisten + 1) * sizeof(*la));
	if (grown == NULL) {
		freeaddrinfo(res);
		cfg_error(p, p->line, "listen: out of memory");
		return -1;
	}
	svc->listen = grown;
	la = &svc->listen[svc->nlisten];
	if ((la->text = strdup(v)) == NULL) {
		freeaddrinfo(res);
		cfg_error(p, p->line, "listen: out of memory");
		return -1;
	}
	svc->nlisten++;
	memcpy(&la->addr.ss, res->ai_addr, res->ai_addrlen);
	la->addr.len = res->ai_addrlen;
	la->line = p->line;
	freeaddrinfo(res);
	return 0;
}

/* metrics = host:port (an address, not a name: it is bound). */
static int
set_metrics(struct parser *p, void *f, const char *v)
{
	struct sockaddr_any *a = f;
	struct addrinfo hints, *res;
	char *host, *port;
	int rc;

	if (split_hostport(v, &host, &port) < 0) {
		cfg_error(p, p->line, "metrics: \"%s\" is not host:port", v);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
	rc = getaddrinfo(*host ? host : NULL, port, &hints, &res);
	free(host);
	free(port);
	if (rc != 0) {
		cfg_error(p, p->line, "metrics: \"%s\": %s", v, gai_strerror(rc));
		return -1;
	}
	memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
	a->len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static int
set_upstream(struct parser *p, void *f, const char *v)
{
	struct service *svc = p->svc;

	if (split_hostport(v, &svc->upstream_host, &svc->upstream_port) < 0 ||
	    *svc->upstream_host == '\0' ||
	    strtoul(svc->upstream_port, NULL, 10) == 0) {
		cfg_error(p, p->line, "upstream: \"%s\" is not host:port or "
		    "[v6addr]:port with a port from 1 to 65535", v);
		return -1;
	}
	return set_string(p, f, v);
}

/* A host name as it may appear in EHLO: letters, digits, '-' and '.'. */
static int
set_hostname(struct parser *p, void *f, const char *v)
{
	if (*v == '\0' || strlen(v) > 253 || strspn(v, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") != strlen(v)) {
		cfg_error(p, p->line, "%s: \"%s\" is not a host name", p->key, v);
		return -1;
	}
	return set_string(p, f, v);
}

/* A CIDR list ("allow", "proxy_trusted"): blanks or commas between. */
static int
set_cidr_list(struct parser *p, struct cidr **listp, size_t *np, const char *v)
{
	char *copy = strdup(v), *tok, *save = NULL;
	int rc = 0;

	if (copy == NULL) {
		cfg_error(p, p->line, "%s: out of memory", p->key);
		return -1;
	}
	for (tok = strtok_r(copy, " \t,", &save); tok != NULL;
	    tok = strtok_r(NULL, " \t,", &save)) {
		struct cidr c, *grown;
		if (cidr_parse(tok, &c) < 0) {
			cfg_error(p, p->line, "%s: \"%s\" is not an address or "
			    "CIDR range (host bits must be zero)", p->key, tok);
			rc = -1;
			continue;
		}
		grown = realloc(*listp, (*np + 1) * sizeof(c));
		if (grown == NULL) {
			cfg_error(p, p->line, "%s: out of memory", p->key);
			rc = -1;
			break;
		}
		*listp = grown;
		(*listp)[(*np)++] = c;
	}
	if (rc == 0 && *np == 0) {
		cfg_error(p, p->line, "%s: empty list", p->key);
		rc = -1;
	}
	free(copy);
	return rc;
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
	return set_word(p, f, v, upstream_auth_names, 4);
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

int
config_read_secret(const char *path, char *out, size_t cap, char *err,
    size_t errlen)
{
	struct stat st;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path,
		    strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s is not a regular file", path);
		close(fd);
		return -1;
	}
	if (st.st_mode & S_IROTH) {
		snprintf(err, errlen, "%s is readable by everyone (mode %04o): "
		    "chmod o-rwx it", path, (unsigned)(st.st_mode & 07777));
		close(fd);
		return -1;
	}
	n = read(fd, out, cap);
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "cannot read %s: %s", path,
		    strerror(errno));
		return -1;
	}
	if ((size_t)n == cap) {
		snprintf(err, errlen, "%s is larger than %zu bytes", path,
		    cap - 1);
		return -1;
	}
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
		n--;
	out[n] = '\0';
	if (n == 0 || memchr(out, '\0', (size_t)n) != NULL ||
	    memchr(out, '\n', (size_t)n) != NULL) {
		snprintf(err, errlen, "%s: %s", path, n == 0 ? "empty" :
		    "one line expected (no NUL or line break inside)");
		return -1;
	}
	return (int)n;
}

int
config_auth_secret(const struct service *svc, char *out, size_t cap,
    char *err, size_t errlen)
{
	if (svc->upstream_auth == AUTH_XOAUTH2)
		return config_read_secret(svc->upstream_token_file, out, cap,
		    err, errlen);
	if (svc->upstream_password == NULL ||
	    svc->upstream_password_len >= cap) {
		snprintf(err, errlen, "no password");
		return -1;
	}
	memcpy(out, svc->upstream_password, svc->upstream_password_len + 1);
	return (int)svc->upstream_password_len;
}

/* Checked (and, for the password, read) when the file is loaded. */
static int
set_secret_file(struct parser *p, void *f, const char *v)
{
	char secret[SECRET_MAX + 1], err[300];
	int n;

	if ((n = config_read_secret(v, secret, sizeof(secret), err,
	    sizeof(err))) < 0) {
		cfg_error(p, p->line, "%s: %s", p->key, err);
		return -1;
	}
	if (f == &p->svc->upstream_password_file) {
		free(p->svc->upstream_password);
		p->svc->upstream_password = strdup(secret);
		p->svc->upstream_password_len = (size_t)n;
		if (p->svc->upstream_password == NULL) {
			OPENSSL_cleanse(secret, sizeof(secret));
			cfg_error(p, p->line, "%s: out of memory", p->key);
			return -1;
		}
	}
	OPENSSL_cleanse(secret, sizeof(secret));
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

static const struct key_def keys[] = {
	{ "log_level", SCOPE_GLOBAL, false, G(log_level), NONE, set_log_level, NULL },
	{ "log_format", SCOPE_GLOBAL, false, G(log_format), NONE, set_log_format, NULL },
	{ "max_connections", SCOPE_GLOBAL, false, G(max_connections), NONE, set_connections, NULL },
	{ "handshake_timeout", SCOPE_BOTH, false, G(timeouts.handshake), S(timeouts.handshake), set_seconds, NULL },
	{ "negotiation_timeout", SCOPE_BOTH, false, G(timeouts.negotiation), S(timeouts.negotiation), set_seconds, NULL },
	{ "connect_timeout", SCOPE_BOTH, false, G(timeouts.connect), S(timeouts.connect), set_seconds, NULL },
	{ "idle_timeout", SCOPE_BOTH, false, G(timeouts.idle), S(timeouts.idle), set_seconds, NULL },
	{ "shutdown_timeout", SCOPE_GLOBAL, false, G(shutdown_timeout), NONE, set_seconds, NULL },
	{ "protocol", SCOPE_SERVICE, false, NONE, S(protocol), set_protocol, NULL },
	{ "listen", SCOPE_SERVICE, true, NONE, S(listen), set_listen, NULL },
	{ "client_tls", SCOPE_SERVICE, false, NONE, S(client_tls), set_tls_mode, NULL },
	{ "cert", SCOPE_SERVICE, true, NONE, S(certs), set_cert, NULL },
	{ "key", SCOPE_SERVICE, true, NONE, S(keys), set_key, NULL },
	{ "tls_min_version", SCOPE_SERVICE, false, NONE, S(tls_min_version), set_client_tls_min, NULL },
	{ "upstream", SCOPE_SERVICE, false, NONE, S(upstream), set_upstream, NULL },
	{ "upstream_tls", SCOPE_SERVICE, false, NONE, S(upstream_tls), set_tls_mode, NULL },
	{ "upstream_name", SCOPE_SERVICE, false, NONE, S(upstream_name), set_string, NULL },
	{ "upstream_verify", SCOPE_SERVICE, false, NONE, S(upstream_verify), set_yesno, NULL },
	{ "upstream_ca", SCOPE_SERVICE, false, NONE, S(upstream_ca), set_file, NULL },
	{ "upstream_tls_min_version", SCOPE_SERVICE, false, NONE, S(upstream_tls_min_version), set_upstream_tls_min, NULL },
	{ "ehlo_name", SCOPE_SERVICE, false, NONE, S(ehlo_name), set_hostname, NULL },
	{ "allow", SCOPE_SERVICE, false, NONE, S(allow), set_allow, NULL },
	{ "workers", SCOPE_GLOBAL, false, G(workers), NONE, set_workers, NULL },
	{ "user", SCOPE_GLOBAL, false, G(user), NONE, set_user, NULL },
	{ "metrics", SCOPE_GLOBAL, false, G(metrics), NONE, set_metrics, NULL },
	{ "proxy_protocol_in", SCOPE_SERVICE, false, NONE, S(proxy_protocol_in), set_yesno, NULL },
	{ "proxy_trusted", SCOPE_SERVICE, false, NONE, S(proxy_trusted), set_proxy_trusted, NULL },
	{ "proxy_protocol_out", SCOPE_SERVICE, false, NONE, S(proxy_protocol_out), set_proxy_out, NULL },
	{ "max_connections_per_client", SCOPE_BOTH, false, G(max_connections_per_client), S(max_connections_per_client), set_connections, NULL },
	{ "upstream_auth", SCOPE_SERVICE, false, NONE, S(upstream_auth), set_upstream_auth, NULL },
	{ "upstream_user", SCOPE_SERVICE, false, NONE, S(upstream_user), set_auth_user, NULL },
	{ "upstream_password_file", SCOPE_SERVICE, false, NONE, S(upstream_password_file), set_secret_file, NULL },
	{ "upstream_token_file", SCOPE_SERVICE, false, NONE, S(upstream_token_file), set_secret_file, NULL },
};
#define NKEYS	(sizeof(keys) / sizeof(keys[0]))

enum { K_PROTOCOL = 8, K_LISTEN, K_CLIENT_TLS, K_CERT, K_KEY, K_TLS_MIN,
    K_UPSTREAM, K_UPSTREAM_TLS, K_UPSTREAM_NAME, K_UPSTREAM_VERIFY,
    K_UPSTREAM_CA, K_UPSTREAM_TLS_MIN, K_EHLO_NAME, K_ALLOW, K_WORKERS,
    K_USER, K_METRICS, K_PP_IN, K_PP_TRUSTED, K_PP_OUT, K_MAX_PER_CLIENT,
    K_UPSTREAM_AUTH, K_UPSTREAM_USER, K_PASSWORD_FILE, K_TOKEN_FILE };

static struct service *
service_for(struct parser *p, const char *section)
{
	struct config *cf = p->cf;
	struct service *grown, *svc;

	if (*section == '\0' || strcasecmp(section, "global") == 0)
		return NULL;
	/* Same section as the previous key (no new header line read since). */
	if (p->svc != NULL && strcmp(p->svc->name, section) == 0 &&
	    p->svc_header_line == p->section_line)
		return p->svc;
	p->svc_header_line = p->section_line;
	for (size_t i = 0; i < cf->nservices; i++)
		if (strcmp(cf->services[i].name, section) == 0) {
			cfg_error(p, p->section_line, "service [%s] is defined "
			    "twice (first at line %d)", section,
			    cf->services[i].line);
			return &cf->services[i];
		}
	grown = realloc(cf->services, (cf->nservices + 1) * sizeof(*svc));
	if (grown == NULL) {
		cfg_error(p, p->section_line, "[%s]: out of memory", section);
		return NULL;
	}
	cf->services = grown;
	svc = &cf->services[cf->nservices];
	memset(svc, 0, sizeof(*svc));
	if ((svc->name = strdup(section)) == NULL) {
		cfg_error(p, p->section_line, "[%s]: out of memory", section);
		return NULL;
	}
	cf->nservices++;
	svc->line = p->section_line;
	svc->tls_min_version = TLS1_2_VERSION;
	svc->upstream_tls_min_version = TLS1_2_VERSION;
	svc->upstream_verify = true;
	svc->timeouts = (struct timeouts){ -1, -1, -1, -1 };
	return svc;
}

static int
on_key(void *user, const char *section, const char *name,
    const char *value)
{
	struct parser *p = user;
	const struct key_def *k = NULL;
	int *seen;
	size_t i;
	void *field;

	p->svc = service_for(p, section);
	p->key = name;
	if (p->svc == NULL && *section != '\0' &&
	    strcasecmp(section, "global") != 0)
		return 1;	/* out of memory, reported */
	for (i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].name, name) == 0) {
			k = &keys[i];
			break;
		}
	if (k == NULL) {
		cfg_error(p, p->line, "unknown key \"%s\"", name);
		return 1;
	}
	if (p->svc == NULL && !(k->scope & SCOPE_GLOBAL)) {
		cfg_error(p, p->line, "%s belongs in a service section, not "
		    "in the global part", name);
		return 1;
	}
	if (p->svc != NULL && !(k->scope & SCOPE_SERVICE)) {
		cfg_error(p, p->line, "%s is a global key; it cannot be set in "
		    "[%s]", name, p->svc->name);
		return 1;
	}
	seen = p->svc != NULL ? p->svc->seen : p->cf->seen;
	if (seen[i] != 0 && !k->repeatable) {
		cfg_error(p, p->line, "%s is given twice (first at line %d)",
		    name, seen[i]);
		return 1;
	}
	seen[i] = p->line;
	field = p->svc != NULL ? (char *)p->svc + k->service_off :
	    (char *)p->cf + k->global_off;
	k->set(p, field, value);
	return 1;	/* errors are collected, parsing goes on */
}

/*
 * inih reader: one line per call, counted; leading blanks stripped; a line
 * inih would truncate is reported and replaced by a comment.
 */
static char *
read_line(char *str, int num, void *stream)
{
	struct parser *p = stream;
	const char *start, *nl;
	size_t linelen, keep;

	if (p->pos >= p->len)
		return NULL;
	start = p->text + p->pos;
	nl = memchr(start, '\n', p->len - p->pos);
	linelen = nl != NULL ? (size_t)(nl - start) + 1 : p->len - p->pos;
	p->pos += linelen;
	p->line++;
	while (linelen > 0 && (*start == ' ' || *start == '\t')) {
		start++;
		linelen--;
	}
	keep = linelen;
	if (memchr(start, '\0', linelen) != NULL) {
		cfg_error(p, p->line, "NUL byte in line");
		keep = 0;
	} else if (linelen > (size_t)num - 1) {
		cfg_error(p, p->line, "line is too long (%zu bytes; at most "
		    "%d fit)", linelen, num - 2);
		keep = 0;
	}
	if (keep > 0 && *start == '[')
		p->section_line = p->line;
	memcpy(str, start, keep);
	str[keep] = '\0';
	if (keep == 0)
		strcpy(str, "\n");
	return str;
}

/* ---- validation ------------------------------------------------------- */

static bool
is_ip_literal(const char *host)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, host, buf) == 1 ||
	    inet_pton(AF_INET6, host, buf) == 1;
}

static void
resolve_upstream(struct parser *p, struct service *svc)
{
	struct addrinfo hints, *res, *ai;
	size_t n = 0;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(svc->upstream_host, svc->upstream_port, &hints, &res);
	if (rc != 0) {
		cfg_error(p, svc->seen[K_UPSTREAM], "upstream: cannot resolve "
		    "%s: %s", svc->upstream, gai_strerror(rc));
		return;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next)
		n++;
	svc->upstream_addrs = calloc(n, sizeof(*svc->upstream_addrs));
	if (svc->upstream_addrs == NULL) {
		freeaddrinfo(res);
		cfg_error(p, svc->seen[K_UPSTREAM], "upstream: out of memory");
		return;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		memcpy(&svc->upstream_addrs[svc->nupstream_addrs].ss,
		    ai->ai_addr, ai->ai_addrlen);
		svc->upstream_addrs[svc->nupstream_addrs++].len = ai->ai_addrlen;
	}
	freeaddrinfo(res);
}

static int
inherit(int service_value, int global_value)
{
	return service_value >= 0 ? service_value : global_value;
}

/* Does the list let in every address of a family (0.0.0.0/0, ::/0)? */
static bool
covers_everyone(const struct cidr *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (list[i].prefix == 0)
			return true;
	return false;
}

/*
 * Can user (uid, primary gid gid) read path by its mode bits?  The loader
 * runs as root; files the workers read later must be theirs to read.
 */
static bool
readable_by(const char *path, const char *user, uid_t uid, gid_t gid)
{
	gid_t groups[64];
	int ngroups = 64;
	struct stat st;

	if (stat(path, &st) < 0)
		return false;
	if (uid == 0 || (st.st_uid == uid && (st.st_mode & S_IRUSR)))
		return true;
	if (!(st.st_mode & S_IRGRP))
		return false;
	if (getgrouplist(user, gid, groups, &ngroups) < 0)
		ngroups = 64;	/* more than fit: the first 64 are checked */
	for (int i = 0; i < ngroups; i++)
		if (groups[i] == st.st_gid)
			return true;
	return false;
}

/*
 * upstream_auth turns the listener into a relay authenticated as
 * upstream_user for whoever reaches it: it needs TLS toward the upstream,
 * the right secret for the mechanism and an allow list of the devices.
 */
static void
validate_auth(struct parser *p, struct service *svc)
{
	int line = svc->seen[K_UPSTREAM_AUTH];
	bool token = svc->upstream_auth == AUTH_XOAUTH2;

	if (svc->upstream_auth == AUTH_NONE) {
		static const int only[] = { K_UPSTREAM_USER, K_PASSWORD_FILE,
		    K_TOKEN_FILE };
		for (size_t i = 0; i < 3; i++)
			if (svc->seen[only[i]] != 0)
				cfg_error(p, svc->seen[only[i]], "%s is only used "
				    "with upstream_auth", keys[only[i]].name);
		return;
	}
	if (svc->protocol != PROTO_SMTP)
		cfg_error(p, line, "[%s]: upstream_auth is for smtp services",
		    svc->name);
	if (svc->upstream_tls == TLS_MODE_NONE)
		cfg_error(p, line, "[%s]: upstream_auth needs upstream_tls = "
		    "starttls or implicit (credentials never cross the network "
		    "in clear)", svc->name);
	if (svc->upstream_user == NULL)
		cfg_error(p, line, "[%s]: upstream_auth needs upstream_user",
		    svc->name);
	if (token && svc->upstream_token_file == NULL)
		cfg_error(p, line, "[%s]: upstream_auth = xoauth2 needs "
		    "upstream_token_file", svc->name);
	if (!token && svc->upstream_password_file == NULL)
		cfg_error(p, line, "[%s]: upstream_auth = %s needs "
		    "upstream_password_file", svc->name,
		    upstream_auth_names[svc->upstream_auth]);
	if (token && svc->seen[K_PASSWORD_FILE] != 0)
		cfg_error(p, svc->seen[K_PASSWORD_FILE], "upstream_password_file "
		    "is for plain/login; xoauth2 uses upstream_token_file");
	if (!token && svc->seen[K_TOKEN_FILE] != 0)
		cfg_error(p, svc->seen[K_TOKEN_FILE], "upstream_token_file is "
		    "for xoauth2");
	if (token && svc->upstream_token_file != NULL && p->cf->user != NULL &&
	    !readable_by(svc->upstream_token_file, p->cf->user, p->cf->uid,
	    p->cf->gid))
		cfg_error(p, svc->seen[K_TOKEN_FILE], "upstream_token_file %s: "
		    "user %s cannot read it, and the workers read it for every "
		    "session after dropping to that user", svc->upstream_token_file,
		    p->cf->user);
	if (svc->nallow == 0)
		cfg_error(p, line, "[%s]: upstream_auth makes this listener a "
		    "relay logged in as %s for anyone who reaches it: set allow "
		    "to the devices' addresses", svc->name,
		    svc->upstream_user ? svc->upstream_user : "upstream_user");
	else if (covers_everyone(svc->allow, svc->nallow))
		cfg_error(p, svc->seen[K_ALLOW], "[%s]: allow covers the whole "
		    "internet (a /0 range), which upstream_auth does not accept: "
		    "list the devices' addresses", svc->name);
}

static void
validate_service(struct parser *p, struct service *svc)
{
	static const int idle_default[] = { 300, 600, 1860 };
	static const struct { int key; const char *name; } required[] = {
		{ K_PROTOCOL, "protocol" }, { K_LISTEN, "listen" },
		{ K_CLIENT_TLS, "client_tls" }, { K_UPSTREAM, "upstream" },
		{ K_UPSTREAM_TLS, "upstream_tls" },
	};
	struct config *cf = p->cf;
	bool missing = false;
	char err[512] = "";

	for (size_t i = 0; i < sizeof(required) / sizeof(*required); i++)
		if (svc->seen[required[i].key] == 0) {
			cfg_error(p, svc->line, "[%s]: %s is required",
			    svc->name, required[i].name);
			missing = true;
		}
	if (missing)
		return;

	svc->timeouts.handshake = inherit(svc->timeouts.handshake,
	    cf->timeouts.handshake);
	svc->timeouts.negotiation = inherit(svc->timeouts.negotiation,
	    cf->timeouts.negotiation);
	svc->timeouts.connect = inherit(svc->timeouts.connect,
	    cf->timeouts.connect);
	svc->timeouts.idle = inherit(svc->timeouts.idle,
	    inherit(cf->timeouts.idle, idle_default[svc->protocol]));
	if (svc->proxy_protocol_in && svc->nproxy_trusted == 0)
		cfg_error(p, svc->seen[K_PP_IN], "[%s]: proxy_protocol_in needs "
		    "proxy_trusted (the balancers allowed to send a header)",
		    svc->name);
	if (!svc->proxy_protocol_in && svc->nproxy_trusted > 0)
		cfg_error(p, svc->seen[K_PP_TRUSTED], "[%s]: proxy_trusted is "
		    "only used with proxy_protocol_in = yes", svc->name);
	if (svc->seen[K_MAX_PER_CLIENT] == 0)
		svc->max_connections_per_client = cf->max_connections_per_client;

	if (svc->client_tls == TLS_MODE_NONE &&
	    svc->upstream_tls == TLS_MODE_NONE)
		cfg_error(p, svc->line, "[%s]: client_tls and upstream_tls are "
		    "both none: at least one side must use TLS", svc->name);

	if (svc->client_tls != TLS_MODE_NONE) {
		if (svc->seen[K_CERT] == 0 || svc->seen[K_KEY] == 0)
			cfg_error(p, svc->line, "[%s]: cert and key are required "
			    "when client_tls is %s", svc->name,
			    tls_mode_names[svc->client_tls]);
		else if (svc->ncerts != svc->nkeys)
			cfg_error(p, svc->seen[K_CERT], "[%s]: cert and key come in "
			    "pairs (%zu cert, %zu key)", svc->name, svc->ncerts,
			    svc->nkeys);
		else {
			for (size_t i = 0; i < svc->ncerts; i++)
				if ((svc->pair_ctx[i] = tls_server_ctx_new(svc, i,
				    err, sizeof(err))) == NULL)
					cfg_error(p, svc->cert_lines[i], "cert %s / "
					    "key %s: %s", svc->certs[i],
					    svc->keys[i], err);
			svc->client_ctx = svc->pair_ctx[0];
			if (svc->ncerts > 1 && svc->client_ctx != NULL)
				tls_enable_cert_selection(svc);
		}
	} else if (svc->seen[K_CERT] != 0 || svc->seen[K_KEY] != 0)
		cfg_error(p, svc->seen[K_CERT] ? svc->seen[K_CERT] :
		    svc->seen[K_KEY], "cert/key are only used when client_tls "
		    "is not none");

	if (svc->upstream_name == NULL && !is_ip_literal(svc->upstream_host) &&
	    (svc->upstream_name = strdup(svc->upstream_host)) == NULL)
		cfg_error(p, svc->line, "[%s]: out of memory", svc->name);
	if (svc->upstream_tls != TLS_MODE_NONE) {
		if (svc->upstream_verify && svc->upstream_name == NULL)
			cfg_error(p, svc->seen[K_UPSTREAM], "[%s]: upstream %s is "
			    "an IP address: set upstream_name to the name its "
			    "certificate carries (or upstream_verify = no)",
			    svc->name, svc->upstream);
		else if ((svc->upstream_ctx = tls_client_ctx_new(svc, err,
		    sizeof(err))) == NULL)
			cfg_error(p, svc->seen[K_UPSTREAM_CA] ?
			    svc->seen[K_UPSTREAM_CA] : svc->line, "[%s]: "
			    "upstream TLS: %s", svc->name, err);
	}
	if (svc->ehlo_name == NULL) {
		char host[256] = "localhost";
		gethostname(host, sizeof(host) - 1);
		if ((svc->ehlo_name = strdup(host)) == NULL)
			cfg_error(p, svc->line, "[%s]: out of memory", svc->name);
	} else if ((svc->protocol != PROTO_SMTP ||
	    (svc->upstream_tls != TLS_MODE_STARTTLS &&
	    svc->upstream_auth == AUTH_NONE)) &&
	    svc->client_tls != TLS_MODE_STARTTLS)
		cfg_error(p, svc->seen[K_EHLO_NAME], "ehlo_name is only used "
		    "with upstream_tls = starttls or upstream_auth (smtp), or "
		    "client_tls = starttls");
	validate_auth(p, svc);
	resolve_upstream(p, svc);
}

static bool
is_port_zero(const struct sockaddr_any *a)
{
	if (a->ss.ss_family == AF_INET6)
		return ((const struct sockaddr_in6 *)&a->ss)->sin6_port == 0;
	return ((const struct sockaddr_in *)&a->ss)->sin_port == 0;
}

static bool
same_addr(const struct sockaddr_any *a, const struct sockaddr_any *b)
{
	return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

static void
validate(struct parser *p)
{
	struct config *cf = p->cf;

	if (cf->nservices == 0)
		cfg_error(p, p->line, "no service defined: add a [name] section "
		    "with protocol, listen, client_tls, upstream, upstream_tls");
	for (size_t i = 0; i < cf->nservices; i++)
		validate_service(p, &cf->services[i]);
	/* Workers share a port through SO_REUSEPORT; port 0 cannot be shared. */
	for (size_t i = 0; cf->workers > 1 && i < cf->nservices; i++)
		for (size_t a = 0; a < cf->services[i].nlisten; a++)
			if (is_port_zero(&cf->services[i].listen[a].addr))
				cfg_error(p, cf->services[i].listen[a].line,
				    "listen %s: port 0 cannot be shared by %d "
				    "workers; name the port",
				    cf->services[i].listen[a].text, cf->workers);
	/* Two services may not listen on one address (nor one service twice). */
	for (size_t i = 0; i < cf->nservices; i++)
		for (size_t a = 0; a < cf->services[i].nlisten; a++)
			for (size_t j = i; j < cf->nservices; j++)
				for (size_t b = (j == i ? a + 1 : 0);
				    b < cf->services[j].nlisten; b++) {
					struct listen_addr *x =
					    &cf->services[i].listen[a];
					struct listen_addr *y =
					    &cf->services[j].listen[b];
					if (same_addr(&x->addr, &y->addr) &&
					    !is_port_zero(&y->addr))
						cfg_error(p, y->line, "listen %s "
						    "is already used by [%s] at "
						    "line %d", y->text,
						    cf->services[i].name,
						    x->line);
				}
}

/* ---- entry points ----------------------------------------------------- */

struct config *
config_parse(const char *text, size_t len, const char *name, char **errors)
{
	struct parser p;
	struct config *cf;
	int rc;

	if (errors != NULL)
		*errors = NULL;
	if ((cf = calloc(1, sizeof(*cf))) == NULL)
		return NULL;
	if ((cf->file = strdup(name)) == NULL) {
		free(cf);
		return NULL;
	}
	cf->refs = 1;
	cf->log_level = LOG_LVL_INFO;
	cf->log_format = LOG_FMT_TEXT;
	cf->max_connections = 10000;
	cf->workers = 1;
	cf->timeouts = (struct timeouts){ 10, 30, 10, -1 };
	cf->shutdown_timeout = 30;

	memset(&p, 0, sizeof(p));
	p.name = name;
	p.text = text;
	p.len = len;
	p.cf = cf;
	rc = ini_parse_stream(read_line, &p, on_key, &p);
	if (rc > 0)	/* a syntax error inih found itself */
		cfg_error(&p, rc, "syntax error: expected [section], "
		    "key = value or a comment");
	else if (rc < 0)
		cfg_error(&p, 0, "cannot parse");
	if (p.nerrors == 0)
		validate(&p);
	if (p.nerrors > 0) {
		config_unref(cf);
		if (errors != NULL)
			*errors = p.errors;
		else
			free(p.errors);
		return NULL;
	}
	free(p.errors);
	return cf;
}

struct config *
config_load(const char *file, char **errors)
{
	struct config *cf;
	char *text = NULL, *grown;
	size_t len = 0, n;
	char chunk[8192];
	FILE *fp;

	if ((fp = fopen(file, "r")) == NULL) {
		if (errors != NULL &&
		    asprintf(errors, "%s:0: cannot open: %s\n", file,
		    strerror(errno)) < 0)
			*errors = NULL;
		return NULL;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
		if ((grown = realloc(text, len + n + 1)) == NULL) {
			fclose(fp);
			free(text);
			if (errors != NULL &&
			    asprintf(errors, "%s:0: out of memory\n", file) < 0)
				*errors = NULL;
			return NULL;
		}
		text = grown;
		memcpy(text + len, chunk, n);
		len += n;
	}
	fclose(fp);
	cf = config_parse(text != NULL ? text : "", len, file, errors);
	free(text);
	return cf;
}

struct config *
config_ref(struct config *cf)
{
	cf->refs++;
	return cf;
}

static void
service_free(struct service *svc)
{
	for (size_t i = 0; i < svc->nlisten; i++)
		free(svc->listen[i].text);
	free(svc->listen);
	free(svc->name);
	for (size_t i = 0; i < CONFIG_MAX_PAIRS; i++) {
		free(svc->certs[i]);
		free(svc->keys[i]);
		SSL_CTX_free(svc->pair_ctx[i]);	/* [0] is client_ctx */
	}
	free(svc->upstream);
	free(svc->upstream_host);
	free(svc->upstream_port);
	free(svc->upstream_addrs);
	free(svc->upstream_name);
	free(svc->upstream_ca);
	free(svc->ehlo_name);
	free(svc->allow);
	free(svc->proxy_trusted);
	free(svc->upstream_user);
	free(svc->upstream_password_file);
	free(svc->upstream_token_file);
	if (svc->upstream_password != NULL) {
		OPENSSL_cleanse(svc->upstream_password, svc->upstream_password_len);
		free(svc->upstream_password);
	}
	SSL_CTX_free(svc->upstream_ctx);
}

void
config_unref(struct config *cf)
{
	if (cf == NULL || --cf->refs > 0)
		return;
	for (size_t i = 0; i < cf->nservices; i++)
		service_free(&cf->services[i]);
	free(cf->services);
	free(cf->user);
	free(cf->file);
	free(cf);
}

void
sockaddr_host(const struct sockaddr *sa, char *buf, size_t len)
{
	const void *a = sa->sa_family == AF_INET6 ?
	    (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr :
	    (const void *)&((const struct sockaddr_in *)sa)->sin_addr;

	if ((sa->sa_family != AF_INET && sa->sa_family != AF_INET6) ||
	    inet_ntop(sa->sa_family, a, buf, (socklen_t)len) == NULL)
		snprintf(buf, len, "?");
}

void
sockaddr_text(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(s6->sin6_port));
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(s4->sin_port));
	} else
		snprintf(buf, len, "?");
}
