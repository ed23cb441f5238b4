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
#include "config_impl.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>
#include <openssl/mem.h>

#include "dns.h"
#include "oauth2_grant.h"
#include "secret.h"
#include "tls.h"

/* inih's line buffer (INI_MAX_LINE in Debian's build). */
#define INIH_MAX_LINE	200

void
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
	svc->upstream_resumption = true;
	svc->oauth2.slot = -1;
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
	void *field = NULL;

	p->key = name;
	p->acct = NULL;
	if (strncmp(section, ACCOUNT_PREFIX, strlen(ACCOUNT_PREFIX)) == 0) {
		p->svc = NULL;
		if ((p->acct = account_for(p, section +
		    strlen(ACCOUNT_PREFIX))) == NULL)
			return 1;	/* reported */
	} else if ((p->svc = service_for(p, section)) == NULL &&
	    *section != '\0' && strcasecmp(section, "global") != 0)
		return 1;	/* out of memory, reported */
	for (i = 0; i < K_COUNT; i++)
		if (strcmp(config_keys[i].name, name) == 0) {
			k = &config_keys[i];
			break;
		}
	if (k == NULL) {
		cfg_error(p, p->line, "unknown key \"%s\"", name);
		return 1;
	}
	if (p->acct != NULL) {
		if ((field = account_field(p->acct, (enum config_key)i)) == NULL) {
			cfg_error(p, p->line, "%s cannot be set in an "
			    "[account:NAME] section", name);
			return 1;
		}
	} else if (k->scope == SCOPE_ACCOUNT) {
		cfg_error(p, p->line, "%s belongs in an [account:NAME] section",
		    name);
		return 1;
	} else if (p->svc == NULL && !(k->scope & SCOPE_GLOBAL)) {
		cfg_error(p, p->line, "%s belongs in a service section, not "
		    "in the global part", name);
		return 1;
	} else if (p->svc != NULL && !(k->scope & SCOPE_SERVICE)) {
		cfg_error(p, p->line, "%s is a global key; it cannot be set in "
		    "[%s]", name, p->svc->name);
		return 1;
	}
	seen = p->acct != NULL ? p->acct->seen : p->svc != NULL ?
	    p->svc->seen : p->cf->seen;
	if (seen[i] != 0 && !k->repeatable) {
		cfg_error(p, p->line, "%s is given twice (first at line %d)",
		    name, seen[i]);
		return 1;
	}
	seen[i] = p->line;
	if (p->acct == NULL)
		field = p->svc != NULL ? (char *)p->svc + k->service_off :
		    (char *)p->cf + k->global_off;
	k->set(p, field, value);
	return 1;	/* errors are collected, parsing goes on */
}

/*
 * ${NAME} in a value is replaced by that environment variable, so that one
 * file (one container image) serves many deployments.  Only in values
 * (after the first '=' or ':'), not in an inline comment; an unset variable
 * is an error at the line.  Returns the expanded length, or -1.
 */
static long
expand_env(struct parser *p, const char *in, size_t len, char *out, size_t cap)
{
	size_t i = 0, o = 0, vstart = len;
	const char *eq = memchr(in, '=', len), *colon = memchr(in, ':', len);

	if (len > 0 && (*in == '[' || *in == ';' || *in == '#'))
		vstart = len;	/* a section header or a comment: as it is */
	else if (eq != NULL || colon != NULL)
		vstart = (size_t)(((eq != NULL && (colon == NULL || eq < colon)) ?
		    eq : colon) - in);
	for (; i < len; i++) {
		const char *val, *end;
		size_t nl;
		char name[128];

		if (i > vstart && in[i] == ';' && (in[i - 1] == ' ' ||
		    in[i - 1] == '\t'))
			vstart = len;	/* the rest is an inline comment */
		if (i <= vstart || vstart == len || in[i] != '$' ||
		    i + 1 >= len || in[i + 1] != '{') {
			if (o + 1 >= cap)
				return (long)cap;	/* too long: the caller says */
			out[o++] = in[i];
			continue;
		}
		end = memchr(in + i + 2, '}', len - i - 2);
		nl = end != NULL ? (size_t)(end - in - i - 2) : 0;
		if (end == NULL || nl == 0 || nl >= sizeof(name) ||
		    strspn(in + i + 2, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "abcdefghijklmnopqrstuvwxyz0123456789_") != nl) {
			cfg_error(p, p->line, "\"${\" must be followed by a "
			    "variable name and \"}\"");
			return -1;
		}
		memcpy(name, in + i + 2, nl);
		name[nl] = '\0';
		if ((val = getenv(name)) == NULL) {
			cfg_error(p, p->line, "${%s}: environment variable %s is "
			    "not set", name, name);
			return -1;
		}
		if (o + strlen(val) + 1 >= cap)
			return (long)cap;
		memcpy(out + o, val, strlen(val));
		o += strlen(val);
		i += nl + 2;
	}
	return (long)o;
}

/*
 * inih reader: one line per call, counted; leading blanks stripped; ${NAME}
 * expanded; a line inih would truncate is reported and replaced by a
 * comment.
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
	} else {
		long n = expand_env(p, start, linelen, str, (size_t)num);
		if (n > num - 1) {
			cfg_error(p, p->line, "line is too long once ${...} is "
			    "replaced (at most %d bytes fit)", num - 2);
			n = 0;
		}
		keep = n < 0 ? 0 : (size_t)n;
		start = str;
	}
	if (keep > 0 && *start == '[')
		p->section_line = p->line;
	memmove(str, start, keep);
	str[keep] = '\0';
	if (keep == 0)
		strcpy(str, "\n");
	return str;
}

static void
resolve_upstream(struct parser *p, struct service *svc)
{
	const char *why, *servers = getenv("MAILPROXY_DNS_SERVERS");
	int n = servers != NULL && !addr_is_ip_literal(svc->upstream_host) ?
	    dns_resolve_now(svc->upstream_host, svc->upstream_port, servers,
	    &svc->upstream_addrs, &why) :
	    addr_resolve(svc->upstream_host, svc->upstream_port, false, false,
	    &svc->upstream_addrs, &why);

	if (n < 0) {
		cfg_error(p, svc->seen[K_UPSTREAM], "upstream: cannot resolve "
		    "%s: %s", svc->upstream, why);
		return;
	}
	svc->nupstream_addrs = (size_t)n;
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
bool
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

/* The oauth2_* keys, only meaningful with a token store or an app grant. */
static const int oauth2_keys[] = { K_OAUTH2_PROVIDER, K_OAUTH2_CLIENT_ID,
    K_OAUTH2_SECRET_FILE, K_OAUTH2_SCOPE, K_OAUTH2_TOKEN_URL,
    K_OAUTH2_DEVICE_URL, K_OAUTH2_CA, K_OAUTH2_GRANT, K_OAUTH2_AUTHORIZE_URL,
    K_OAUTH2_TENANT, K_OAUTH2_CLOUD, K_OAUTH2_CLIENT_CERT, K_OAUTH2_CLIENT_KEY,
    K_OAUTH2_SA_FILE, K_OAUTH2_STORE };

/*
 * upstream_auth turns the listener into a relay authenticated as
 * upstream_user for whoever reaches it: it needs TLS toward the upstream,
 * the right secret for the mechanism and an allow list of the devices.
 */
static void
validate_auth(struct parser *p, struct service *svc)
{
	static const int only[] = { K_UPSTREAM_USER, K_PASSWORD_FILE,
	    K_TOKEN_FILE };
	int line = svc->seen[K_UPSTREAM_AUTH];
	bool token = svc->upstream_auth == AUTH_XOAUTH2 ||
	    svc->upstream_auth == AUTH_OAUTHBEARER;
	const char *mech = upstream_auth_names[svc->upstream_auth];

	if (svc->upstream_auth == AUTH_NONE || svc->upstream_auth ==
	    AUTH_ACCOUNTS) {
		for (size_t i = 0; i < 3; i++)
			if (svc->seen[only[i]] != 0)
				cfg_error(p, svc->seen[only[i]], "%s is only used "
				    "with upstream_auth = plain, login, xoauth2 or "
				    "oauthbearer (accounts: in each [account:NAME])",
				    config_keys[only[i]].name);
	}
	if (!token)
		for (size_t i = 0; i < sizeof(oauth2_keys) / sizeof(*oauth2_keys); i++)
			if (svc->seen[oauth2_keys[i]] != 0)
				cfg_error(p, svc->seen[oauth2_keys[i]], "%s is only "
				    "used with upstream_auth = xoauth2 or "
				    "oauthbearer (accounts: in each [account:NAME])",
				    config_keys[oauth2_keys[i]].name);
	/* Credentials go only to a server the proxy authenticated: without
	 * verification, whoever answers at the address (a hijacked route, a
	 * spoofed DNS answer) gets every password and token. */
	if (svc->upstream_auth != AUTH_NONE && !svc->upstream_verify &&
	    svc->upstream_tls != TLS_MODE_NONE && svc->nupstream_pins == 0)
		cfg_error(p, svc->seen[K_UPSTREAM_VERIFY], "[%s]: upstream_verify "
		    "= no with upstream_auth = %s would send the credentials to "
		    "whoever answers at %s: verify the server, or pin its key "
		    "(upstream_pin, as mailproxy -T prints it)", svc->name, mech,
		    svc->upstream);
	if (svc->upstream_auth == AUTH_NONE || svc->upstream_auth ==
	    AUTH_ACCOUNTS)
		return;	/* accounts: accounts_validate() */
	if (svc->protocol != PROTO_SMTP)
		cfg_error(p, line, "[%s]: upstream_auth is for smtp services "
		    "(but accounts: smtp, imap and pop3)", svc->name);
	if (svc->upstream_tls == TLS_MODE_NONE)
		cfg_error(p, line, "[%s]: upstream_auth needs upstream_tls = "
		    "starttls or implicit (credentials never cross the network "
		    "in clear)", svc->name);
	if (svc->upstream_user == NULL)
		cfg_error(p, line, "[%s]: upstream_auth needs upstream_user",
		    svc->name);
	if (token && (svc->upstream_token_file != NULL) ==
	    (svc->oauth2.store != NULL || oauth2_app_grant(&svc->oauth2)))
		cfg_error(p, line, "[%s]: upstream_auth = %s needs exactly one "
		    "of oauth2_token_store (the proxy refreshes the token), "
		    "oauth2_grant = client_credentials or service_account (the "
		    "proxy fetches the application's own) and upstream_token_file "
		    "(something else does)", svc->name, mech);
	/* Microsoft documents XOAUTH2 only for IMAP, POP and SMTP AUTH. */
	if (svc->upstream_auth == AUTH_OAUTHBEARER &&
	    svc->oauth2.provider == OAUTH2_MICROSOFT)
		cfg_error(p, svc->seen[K_OAUTH2_PROVIDER], "[%s]: oauth2_provider "
		    "= microsoft takes upstream_auth = xoauth2 (Exchange Online "
		    "has no OAUTHBEARER)", svc->name);
	if (token && (svc->oauth2.store != NULL ||
	    oauth2_app_grant(&svc->oauth2)))
		validate_oauth2(p, &svc->oauth2, svc->seen, svc->name,
		    (int)svc->protocol, svc->upstream_user);
	if (!token && svc->upstream_password_file == NULL)
		cfg_error(p, line, "[%s]: upstream_auth = %s needs "
		    "upstream_password_file", svc->name, mech);
	if (token && svc->seen[K_PASSWORD_FILE] != 0)
		cfg_error(p, svc->seen[K_PASSWORD_FILE], "upstream_password_file "
		    "is for plain/login; %s uses oauth2_token_store or "
		    "upstream_token_file", mech);
	if (!token && svc->seen[K_TOKEN_FILE] != 0)
		cfg_error(p, svc->seen[K_TOKEN_FILE], "upstream_token_file is "
		    "for xoauth2 and oauthbearer");
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
	if (svc->seen[K_AUTH_FAILURES_MAX] == 0)
		svc->auth_failures_max = cf->auth_failures_max;
	if (svc->seen[K_AUTH_BLOCK_TIME] == 0)
		svc->auth_block_time = cf->auth_block_time;

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
				    err, sizeof(err))) == NULL &&
				    strncmp(err, "client_c", 8) == 0)
					cfg_error(p, svc->seen[strncmp(err,
					    "client_ca", 9) == 0 ? K_CLIENT_CA :
					    K_CLIENT_CRL], "%s", err);
				else if (svc->pair_ctx[i] == NULL)
					cfg_error(p, svc->cert_lines[i], "cert %s / "
					    "key %s: %s", svc->certs[i],
					    svc->keys[i], err);
			svc->client_ctx = svc->pair_ctx[0];
		}
	} else if (svc->seen[K_CERT] != 0 || svc->seen[K_KEY] != 0)
		cfg_error(p, svc->seen[K_CERT] ? svc->seen[K_CERT] :
		    svc->seen[K_KEY], "cert/key are only used when client_tls "
		    "is not none");

	if (svc->upstream_name == NULL && !addr_is_ip_literal(svc->upstream_host) &&
	    (svc->upstream_name = strdup(svc->upstream_host)) == NULL)
		cfg_error(p, svc->line, "[%s]: out of memory", svc->name);
	if (svc->nsni > 0 && svc->client_tls == TLS_MODE_NONE)
		cfg_error(p, svc->seen[K_SNI], "[%s]: sni needs client_tls = "
		    "implicit or starttls (the name comes in the TLS handshake)",
		    svc->name);
	if (svc->client_verify != CLIENT_VERIFY_NO && svc->client_tls ==
	    TLS_MODE_NONE)
		cfg_error(p, svc->seen[K_CLIENT_VERIFY], "[%s]: client_verify needs "
		    "client_tls = implicit or starttls", svc->name);
	else if (svc->client_verify != CLIENT_VERIFY_NO && svc->client_ca == NULL)
		cfg_error(p, svc->seen[K_CLIENT_VERIFY], "[%s]: client_verify "
		    "needs client_ca (the CA the devices' certificates chain to)",
		    svc->name);
	if (svc->client_verify == CLIENT_VERIFY_NO) {
		static const int only[] = { K_CLIENT_CA, K_CLIENT_CRL,
		    K_ALLOW_CERT };
		for (size_t i = 0; i < sizeof(only) / sizeof(*only); i++)
			if (svc->seen[only[i]] != 0)
				cfg_error(p, svc->seen[only[i]], "%s is only used "
				    "with client_verify = optional or require",
				    config_keys[only[i]].name);
	}
	if ((svc->upstream_cert == NULL) != (svc->upstream_key == NULL))
		cfg_error(p, svc->seen[K_UPSTREAM_CERT] ? svc->seen[K_UPSTREAM_CERT] :
		    svc->seen[K_UPSTREAM_KEY], "[%s]: upstream_cert and "
		    "upstream_key come together", svc->name);
	else if (svc->upstream_cert != NULL && svc->upstream_tls == TLS_MODE_NONE)
		cfg_error(p, svc->seen[K_UPSTREAM_CERT], "[%s]: upstream_cert "
		    "needs upstream_tls = starttls or implicit", svc->name);
	if (svc->upstream_tls == TLS_MODE_NONE && svc->nupstream_pins > 0)
		cfg_error(p, svc->seen[K_UPSTREAM_PIN], "[%s]: upstream_pin needs "
		    "upstream_tls = starttls or implicit", svc->name);
	if (svc->upstream_tls != TLS_MODE_NONE) {
		if (svc->upstream_verify && svc->upstream_name == NULL)
			cfg_error(p, svc->seen[K_UPSTREAM], "[%s]: upstream %s is "
			    "an IP address: set upstream_name to the name its "
			    "certificate carries (or upstream_verify = no)",
			    svc->name, svc->upstream);
		else if ((svc->upstream_ctx = tls_client_ctx_new(svc, err,
		    sizeof(err))) == NULL)
			cfg_error(p, svc->seen[K_UPSTREAM_CERT] &&
			    strncmp(err, "upstream_", 9) == 0 ?
			    svc->seen[K_UPSTREAM_CERT] : svc->seen[K_UPSTREAM_CA] ?
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

static void
validate(struct parser *p)
{
	struct config *cf = p->cf;

	/* No service is a valid file (-t passes: the packaged starting
	 * point has its services commented out); main refuses to run it. */
	for (size_t i = 0; i < cf->nservices; i++)
		validate_service(p, &cf->services[i]);
	accounts_validate(p);
	/* Workers share a port through SO_REUSEPORT; port 0 cannot be shared. */
	for (size_t i = 0; cf->workers > 1 && i < cf->nservices; i++)
		for (size_t a = 0; a < cf->services[i].nlisten; a++)
			if (addr_port_is_zero(&cf->services[i].listen[a].addr))
				cfg_error(p, cf->services[i].listen[a].line,
				    "listen %s: port 0 cannot be shared by %d "
				    "workers; name the port",
				    cf->services[i].listen[a].text, cf->workers);
	/* One address, one service, or several told apart by sni. */
	for (size_t i = 0; i < cf->nservices; i++)
		for (size_t a = 0; a < cf->services[i].nlisten; a++)
			config_group_address(p, i, a);
}

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
	cf->ready_upstream_failures = 3;
	cf->watch_files = true;
	cf->dns_refresh = 300;
	cf->tls_session_cache = 20000;
	cf->auth_failures_max = 5;
	cf->auth_block_time = 900;

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
	for (size_t i = 0; i < svc->nlisten; i++)
		free(svc->listen[i].routes);
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
	dns_unshare(svc);
	free(svc->upstream_name);
	free(svc->upstream_ca);
	free(svc->tls_ciphers);
	free(svc->ehlo_name);
	free(svc->allow);
	free(svc->upstream_pins);
	free(svc->upstream_cert);
	for (size_t i = 0; i < svc->nsni; i++)
		free(svc->sni[i]);
	free(svc->sni);
	free(svc->client_ca);
	free(svc->client_crl);
	free(svc->allow_certs);
	free(svc->upstream_key);
	free(svc->proxy_trusted);
	free(svc->upstream_user);
	free(svc->upstream_password_file);
	free(svc->upstream_token_file);
	if (svc->upstream_password != NULL) {
		OPENSSL_cleanse(svc->upstream_password, svc->upstream_password_len);
		free(svc->upstream_password);
	}
	SSL_CTX_free(svc->upstream_ctx);
	oauth2_conf_free(&svc->oauth2);
}

void
config_unref(struct config *cf)
{
	if (cf == NULL || --cf->refs > 0)
		return;
	for (size_t i = 0; i < cf->nservices; i++)
		service_free(&cf->services[i]);
	free(cf->services);
	for (size_t i = 0; i < cf->naccounts; i++)
		account_free(&cf->accounts[i]);
	free(cf->accounts);
	free(cf->user);
	free(cf->file);
	free(cf->tls_ticket_key_file);
	free(cf->oauth2_alert_command);
	if (cf->ticket_keys != NULL)
		OPENSSL_cleanse(cf->ticket_keys, cf->ticket_keys_len);
	free(cf->ticket_keys);
	free(cf);
}

const char *
config_accounts_service(const struct config *cf)
{
	for (size_t i = 0; i < cf->nservices; i++)
		if (cf->services[i].upstream_auth == AUTH_ACCOUNTS)
			return cf->services[i].name;
	return "SERVICE";
}

int
config_auth_secret(const struct service *svc, char *out, size_t cap,
    char *err, size_t errlen)
{
	if (svc->upstream_auth == AUTH_XOAUTH2 ||
	    svc->upstream_auth == AUTH_OAUTHBEARER) {
		if (svc->upstream_token_file == NULL) {
			snprintf(err, errlen, "the token is oauth2_token_store's");
			return -1;
		}
		return secret_read(svc->upstream_token_file, out, cap,
		    err, errlen);
	}
	if (svc->upstream_password == NULL ||
	    svc->upstream_password_len >= cap) {
		snprintf(err, errlen, "no password");
		return -1;
	}
	memcpy(out, svc->upstream_password, svc->upstream_password_len + 1);
	return (int)svc->upstream_password_len;
}
