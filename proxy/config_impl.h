/*
 * config_impl: what the parser (config.c) and the key table with its value
 * setters (config_keys.c) share.
 */
#ifndef MAILPROXY_CONFIG_IMPL_H
#define MAILPROXY_CONFIG_IMPL_H

#include "config.h"

/* Every key, in the order of the table; the line each was seen on is kept
 * in seen[] (0: not given). */
enum config_key {
	K_LOG_LEVEL, K_LOG_FORMAT, K_MAX_CONNECTIONS, K_HANDSHAKE_TIMEOUT,
	K_NEGOTIATION_TIMEOUT, K_CONNECT_TIMEOUT, K_IDLE_TIMEOUT,
	K_SHUTDOWN_TIMEOUT, K_PROTOCOL, K_LISTEN, K_CLIENT_TLS, K_CERT, K_KEY,
	K_TLS_MIN, K_UPSTREAM, K_UPSTREAM_TLS, K_UPSTREAM_NAME,
	K_UPSTREAM_VERIFY, K_UPSTREAM_CA, K_UPSTREAM_TLS_MIN, K_EHLO_NAME,
	K_ALLOW, K_WORKERS, K_USER, K_METRICS, K_PP_IN, K_PP_TRUSTED, K_PP_OUT,
	K_MAX_PER_CLIENT, K_UPSTREAM_AUTH, K_UPSTREAM_USER, K_PASSWORD_FILE,
	K_TOKEN_FILE, K_READY_FAILURES, K_WATCH_FILES, K_DNS_REFRESH, K_TICKET_KEY_FILE, K_UPSTREAM_RESUMPTION, K_SESSION_CACHE, K_TLS_CIPHERS,
	K_OAUTH2_PROVIDER, K_OAUTH2_CLIENT_ID, K_OAUTH2_SECRET_FILE, K_OAUTH2_SCOPE,
	K_OAUTH2_TOKEN_URL, K_OAUTH2_DEVICE_URL, K_OAUTH2_CA, K_OAUTH2_GRANT,
	K_OAUTH2_AUTHORIZE_URL, K_OAUTH2_TENANT, K_OAUTH2_CLOUD, K_OAUTH2_CLIENT_CERT,
	K_OAUTH2_CLIENT_KEY, K_OAUTH2_SA_FILE, K_OAUTH2_STORE, K_OAUTH2_ALERT,
	K_UPSTREAM_PIN, K_UPSTREAM_CERT, K_UPSTREAM_KEY,
	K_CLIENT_VERIFY, K_CLIENT_CA, K_CLIENT_CRL, K_ALLOW_CERT, K_CLIENT_CERT,
	K_SNI,
	/* accounts (upstream_auth = accounts) */
	K_AUTH_FAILURES_MAX, K_AUTH_BLOCK_TIME, K_PASSWORD_HASH,
	K_COUNT
};

_Static_assert(K_COUNT == CONFIG_NKEYS, "CONFIG_NKEYS in config.h must "
    "count the keys of enum config_key");

enum scope { SCOPE_GLOBAL = 1, SCOPE_SERVICE = 2, SCOPE_BOTH = 3,
    SCOPE_ACCOUNT = 4 };	/* which keys an account takes: account_field() */

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
	struct account	*acct;		/* current [account:NAME], or NULL */
	int		 svc_header_line;	/* header line svc came from */
	const char	*key;		/* key being set, for messages */
};

extern const struct key_def config_keys[K_COUNT];

/* Can user (uid, primary group gid) read path by its mode bits? */
bool	readable_by(const char *path, const char *user, uid_t uid, gid_t gid);

/* ---- accounts.c ---- */

#define ACCOUNT_PREFIX	"account:"	/* [account:NAME] */

/* The account of section "[account:NAME]" (made on first sight). */
struct account *account_for(struct parser *p, const char *name);

/* Where key k of an account is stored; NULL if accounts do not take it. */
void	*account_field(struct account *a, enum config_key k);

/* The rules of upstream_auth = accounts, once the whole file is read. */
void	accounts_validate(struct parser *p);

void	account_free(struct account *a);

/* The oauth2_* keys of a service (proto: its protocol) or of an account
 * (proto -1: any); freeing them. */
void	validate_oauth2(struct parser *p, struct oauth2_conf *c,
	    const int *seen, const char *what, int proto, const char *subject);
void	oauth2_conf_free(struct oauth2_conf *c);

/*
 * Service i's listen address a and every later one equal to it: several
 * services there must be told apart by sni (FILE:LINE errors otherwise);
 * the one that binds it (without sni, else the first) gets the routes.
 */
void	config_group_address(struct parser *p, size_t i, size_t a);

/* Records an error at line (the load fails; parsing goes on). */
void	cfg_error(struct parser *p, int line, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));

#endif
