/*
 * config: the INI file turned into a validated, immutable snapshot.
 *
 * config_load() parses with inih, checks every rule that spans keys, loads
 * every certificate, key and CA file into TLS contexts and resolves the
 * upstream addresses.  Either it returns a complete snapshot or it returns
 * NULL with every problem written as "FILE:LINE: message" lines.  Sessions
 * hold a reference to the snapshot they started with, so a reload never
 * changes what an open session sees.
 */
#ifndef MAILPROXY_CONFIG_H
#define MAILPROXY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "addr.h"
#include "cidr.h"
#include "log.h"
#include "proto.h"
#include "secret.h"

#define CONFIG_DEFAULT_FILE	"/etc/mailproxy/mailproxy.ini"
#define CONFIG_MAX_PAIRS	8	/* cert/key pairs per service */

#define CONFIG_NKEYS		68	/* keys in the table (config_keys.c) */

struct listen_addr {
	struct sockaddr_any	 addr;
	char			*text;	/* as written in the file */
	int			 line;
	/*
	 * sni: services sharing this address.  The address is bound once, by
	 * the first of them (its routes list them all, itself included; the
	 * others' entry has shared set); the client's TLS server name picks
	 * the service.
	 */
	const struct service	**routes;
	size_t			 nroutes;
	bool			 shared;	/* bound by another service */
};

/* Timeouts in seconds; -1 while unset (a service inherits the global). */
struct timeouts {
	int	handshake;
	int	negotiation;
	int	connect;
	int	idle;
};

struct dns_view;

enum oauth2_provider { OAUTH2_CUSTOM, OAUTH2_MICROSOFT, OAUTH2_GOOGLE };

/* client_verify: ask devices for a certificate. */
enum client_verify { CLIENT_VERIFY_NO, CLIENT_VERIFY_OPTIONAL,
    CLIENT_VERIFY_REQUIRE };

/* How tokens are obtained (oauth2_grant): a person's grant that -A stores,
 * or an application's own that needs no person and no store. */
enum oauth2_grant_kind { OAUTH2_GRANT_AUTO, OAUTH2_GRANT_DEVICE, OAUTH2_GRANT_CODE,
	OAUTH2_GRANT_CLIENT_CREDENTIALS, OAUTH2_GRANT_SERVICE_ACCOUNT };

enum oauth2_cloud { OAUTH2_CLOUD_GLOBAL, OAUTH2_CLOUD_USGOV,
	OAUTH2_CLOUD_CHINA };

struct jwt_key;

/* The oauth2_* keys of a service: a client of one token endpoint. */
struct oauth2_conf {
	int			 provider;	/* enum oauth2_provider */
	char			*client_id;
	char			*client_secret_file;
	char			*client_secret;	/* read at load */
	char			*scope;		/* NULL: the provider's */
	char			*token_url;
	char			*device_url;
	char			*ca;		/* NULL: the system bundle */
	char			*store;		/* oauth2_token_store */
	int			 grant;		/* enum oauth2_grant_kind; AUTO
						   until validated: by provider */
	char			*authorize_url;
	char			*tenant;
	int			 cloud;		/* enum oauth2_cloud */
	char			*client_cert;	/* oauth2_client_certificate */
	char			*client_key;	/* oauth2_client_key */
	char			*sa_file;	/* oauth2_service_account_file */
	char			*sa_email;	/* its client_email */
	char			*subject;	/* service_account: the mailbox */
	struct jwt_key		*key;		/* the assertion's, read at load */
	int			 slot;		/* its token table entry, -1:
						   none (oauth2_attach) */
};

/* An account's credential toward the upstream (exactly one is given). */
enum acct_cred { ACCT_PASSWORD, ACCT_TOKEN_FILE, ACCT_TOKEN_STORE };

/*
 * [account:NAME] (upstream_auth = accounts): a login the proxy answers
 * itself, and what it logs in to the upstream with for that client.
 */
/* A certificate's SHA-256 fingerprint, when one is configured. */
struct cert_fingerprint {
	uint8_t			 md[32];
	bool			 set;
};

struct account {
	char			*name;		/* the login name clients use */
	int			 line;		/* of the [account:NAME] header */
	char			*password_hash;	/* crypt(3): $y$ or $6$; NULL:
						 * by certificate only */
	struct cert_fingerprint	 client_cert;	/* a device presenting it is
						 * this account */
	char			*upstream_user;	/* default: name */
	enum acct_cred		 cred;
	char			*upstream_password_file;
	char			*upstream_password;	/* read at load */
	size_t			 upstream_password_len;
	char			*upstream_token_file;	/* read per session */
	struct oauth2_conf	 oauth2;		/* .store: oauth2_token_store */
	uint64_t		 fingerprint;	/* name, hash, credential */
	int			 seen[CONFIG_NKEYS];
};

struct service {
	char			*name;
	int			 line;		/* of the [name] header */
	enum proto		 protocol;
	struct listen_addr	*listen;
	size_t			 nlisten;
	enum tls_mode		 client_tls;
	/* cert/key pairs: several names (SNI) and/or RSA + ECDSA. */
	char			*certs[CONFIG_MAX_PAIRS];
	char			*keys[CONFIG_MAX_PAIRS];
	int			 cert_lines[CONFIG_MAX_PAIRS];
	size_t			 ncerts;
	size_t			 nkeys;
	SSL_CTX			*pair_ctx[CONFIG_MAX_PAIRS];	/* [0] = client_ctx */
	int			 tls_min_version;	/* TLS1_x_VERSION */
	char			*tls_ciphers;	/* NULL: by tls_min_version */
	char			*upstream;		/* host:port as written */
	char			*upstream_host;
	char			*upstream_port;
	struct sockaddr_any	*upstream_addrs;	/* resolved at load */
	size_t			 nupstream_addrs;
	struct dns_view		*dns;		/* re-resolved (dns.c), or NULL */
	enum tls_mode		 upstream_tls;
	char			*upstream_name;		/* NULL: none (IP) */
	bool			 upstream_verify;
	uint8_t			(*upstream_pins)[32];	/* SPKI SHA-256s */
	char			**sni;		/* names (lower case), *.wildcards */
	size_t			 nsni;
	int			 client_verify;	/* enum client_verify */
	char			*client_ca;	/* devices' trust anchors */
	char			*client_crl;
	uint8_t			(*allow_certs)[32];	/* SHA-256 of the DER */
	size_t			 nallow_certs;
	char			*upstream_cert;	/* the proxy's client cert */
	char			*upstream_key;
	size_t			 nupstream_pins;
	bool			 upstream_resumption;	/* offer the last session */
	char			*upstream_ca;
	int			 upstream_tls_min_version;
	char			*ehlo_name;	/* smtp: our EHLO / greeting name */
	struct cidr		*allow;		/* NULL: everyone */
	size_t			 nallow;
	int			 max_connections_per_client; /* 0: no cap */
	bool			 proxy_protocol_in;
	struct cidr		*proxy_trusted;
	size_t			 nproxy_trusted;
	int			 proxy_protocol_out;	/* 0 none, 1, 2 */
	int			 upstream_auth;	/* enum upstream_auth */
	char			*upstream_user;
	char			*upstream_password_file;
	char			*upstream_password;	/* read at load */
	size_t			 upstream_password_len;
	char			*upstream_token_file;	/* read per session */
	struct oauth2_conf	 oauth2;
	int			 auth_failures_max;	/* accounts: block after */
	int			 auth_block_time;	/* seconds */
	struct timeouts		 timeouts;
	SSL_CTX			*client_ctx;	/* NULL unless client TLS */
	SSL_CTX			*upstream_ctx;	/* NULL unless upstream TLS */
	int			 seen[CONFIG_NKEYS];	/* line of each key, 0 = unset */
};

/* The grant needs no person and no store: the application's own. */
static inline bool
oauth2_app_grant(const struct oauth2_conf *c)
{
	return c->grant == OAUTH2_GRANT_CLIENT_CREDENTIALS ||
	    c->grant == OAUTH2_GRANT_SERVICE_ACCOUNT;
}

struct config {
	char			*file;
	int			 refs;
	enum log_level		 log_level;
	enum log_format		 log_format;
	int			 max_connections;
	int			 max_connections_per_client;	/* 0: no cap */
	int			 ready_upstream_failures;	/* 0: never */
	bool			 watch_files;	/* reload when a file changes */
	int			 dns_refresh;	/* seconds, 0: at load only */
	char			*tls_ticket_key_file;
	char			*oauth2_alert_command;	/* run off the loop */
	int			 tls_session_cache;	/* sessions, 0: none */
	uint8_t			*ticket_keys;	/* its contents, read at load */
	size_t			 ticket_keys_len;
	int			 workers;	/* processes; resolved from auto */
	struct sockaddr_any	 metrics;	/* len 0: no endpoint */
	char			*user;		/* drop to it after binding */
	uid_t			 uid;
	gid_t			 gid;
	struct timeouts		 timeouts;
	int			 shutdown_timeout;
	struct service		*services;
	size_t			 nservices;
	int			 auth_failures_max;
	int			 auth_block_time;
	struct account		*accounts;	/* upstream_auth = accounts */
	size_t			 naccounts;
	int			 seen[CONFIG_NKEYS];
};

/*
 * A certificate fingerprint, "sha256:" and 64 hex digits (colons between
 * pairs allowed, as openssl x509 -fingerprint prints them): allow_cert,
 * an account's client_cert.  0 or -1.
 */
int	config_fingerprint_parse(const char *text, uint8_t out[32]);

/*
 * Reads and validates FILE.  On error returns NULL and, if errors is not
 * NULL, stores a malloc'ed text of "FILE:LINE: message\n" lines in *errors
 * (the caller frees it).
 */
struct config *config_load(const char *file, char **errors);

/* Same, from an in-memory text; name is used in messages. */
struct config *config_parse(const char *text, size_t len, const char *name,
    char **errors);

/* Reference counting: the snapshot is freed when the last holder lets go. */
struct config *config_ref(struct config *cf);
void config_unref(struct config *cf);

/* The first upstream_auth = accounts service, as -A SERVICE:ACCOUNT names
 * accounts in hints ("SERVICE" when there is none). */
const char *config_accounts_service(const struct config *cf);

/*
 * The secret of svc's upstream_auth into out: the password read at load,
 * or the token file read now (so a refresher can rotate it).  Returns its
 * length, or -1 with the reason in err.
 */
int	config_auth_secret(const struct service *svc, char *out, size_t cap,
	    char *err, size_t errlen);

#endif
