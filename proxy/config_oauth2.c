/*
 * config_oauth2: the oauth2_* keys of a service or an account checked
 * together, grant by grant (device and code: a person's grant stored by -A;
 * client_credentials and service_account: the application's own), and
 * freed.
 */
#include "config_impl.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/mem.h>

#include "jwt.h"
#include "oauth2_grant.h"
#include "oauth2_preset.h"
#include "secret.h"

/* Keys a grant has no use for, each an error on its own line. */
static void
unused_keys(struct parser *p, const int *seen, const int *keys, size_t n,
    const char *grant)
{
	for (size_t i = 0; i < n; i++)
		if (seen[keys[i]] != 0)
			cfg_error(p, seen[keys[i]], "%s is not used with "
			    "oauth2_grant = %s", config_keys[keys[i]].name, grant);
}

/* client_credentials: a secret, or a key and its certificate. */
static void
validate_client(struct parser *p, struct oauth2_conf *c, const int *seen,
    int line, const char *what)
{
	static const int unused[] = { K_OAUTH2_SA_FILE, K_OAUTH2_DEVICE_URL,
	    K_OAUTH2_AUTHORIZE_URL };
	char err[400];

	unused_keys(p, seen, unused, 3, "client_credentials");
	if (c->client_id == NULL)
		cfg_error(p, line, "[%s]: oauth2_grant = client_credentials "
		    "needs oauth2_client_id (the application id)", what);
	if ((c->client_secret_file != NULL) == (c->client_key != NULL))
		cfg_error(p, line, "[%s]: oauth2_grant = client_credentials needs "
		    "exactly one of oauth2_client_secret_file and "
		    "oauth2_client_certificate + oauth2_client_key", what);
	if ((c->client_cert == NULL) != (c->client_key == NULL))
		cfg_error(p, seen[c->client_cert == NULL ? K_OAUTH2_CLIENT_KEY :
		    K_OAUTH2_CLIENT_CERT], "[%s]: oauth2_client_certificate and "
		    "oauth2_client_key go together (the assertion names the "
		    "certificate the provider knows)", what);
	if (c->provider == OAUTH2_MICROSOFT && c->tenant == NULL)
		cfg_error(p, line, "[%s]: oauth2_grant = client_credentials with "
		    "microsoft needs oauth2_tenant (the tenant id or domain: an "
		    "application's own token comes from its tenant)", what);
	if (c->client_key != NULL && c->client_cert != NULL &&
	    oauth2_client_load(c, err, sizeof(err)) < 0)
		cfg_error(p, seen[K_OAUTH2_CLIENT_KEY], "%s", err);
}

/* service_account: Google's key file, the mailbox as subject. */
static void
validate_sa(struct parser *p, struct oauth2_conf *c, const int *seen,
    int line, const char *what, const char *subject)
{
	static const int unused[] = { K_OAUTH2_SECRET_FILE, K_OAUTH2_CLIENT_CERT,
	    K_OAUTH2_CLIENT_KEY, K_OAUTH2_DEVICE_URL, K_OAUTH2_AUTHORIZE_URL,
	    K_OAUTH2_TENANT };
	char err[400];

	unused_keys(p, seen, unused, 6, "service_account");
	if (c->provider == OAUTH2_MICROSOFT)
		cfg_error(p, line, "[%s]: oauth2_grant = service_account is "
		    "Google's (Microsoft: client_credentials)", what);
	if (c->sa_file == NULL)
		cfg_error(p, line, "[%s]: oauth2_grant = service_account needs "
		    "oauth2_service_account_file (Google's JSON key file)", what);
	else if (oauth2_sa_load(c, err, sizeof(err)) < 0)
		cfg_error(p, seen[K_OAUTH2_SA_FILE], "oauth2_service_account_file "
		    "%s", err);
	if (subject != NULL && (c->subject = strdup(subject)) == NULL)
		cfg_error(p, line, "out of memory");
}

/* device (and code): -A stores the grant, the proxy renews it there. */
static void
validate_person(struct parser *p, struct oauth2_conf *c, const int *seen,
    int line, const char *what)
{
	static const int unused[] = { K_OAUTH2_SA_FILE, K_OAUTH2_CLIENT_CERT,
	    K_OAUTH2_CLIENT_KEY };
	char dir[PATH_MAX];
	const char *slash;

	const char *grant = c->grant == OAUTH2_GRANT_CODE ? "code" : "device";

	unused_keys(p, seen, unused, 3, grant);
	if (c->client_id == NULL)
		cfg_error(p, line, "[%s]: oauth2_token_store needs "
		    "oauth2_client_id (the application id registered with the "
		    "provider)", what);
	if (c->token_url == NULL || (c->grant == OAUTH2_GRANT_DEVICE ?
	    c->device_url : c->authorize_url) == NULL)
		cfg_error(p, line, "[%s]: oauth2_provider = custom needs "
		    "oauth2_token_url and %s", what, c->grant ==
		    OAUTH2_GRANT_DEVICE ? "oauth2_device_url" :
		    "oauth2_authorize_url (oauth2_grant = code)");
	if (c->store == NULL) {
		cfg_error(p, line, "[%s]: oauth2_grant = %s needs "
		    "oauth2_token_store (where -A keeps the grant)", what, grant);
		return;
	}
	slash = strrchr(c->store, '/');
	snprintf(dir, sizeof(dir), "%.*s", slash == NULL ? 1 : slash == c->store ?
	    1 : (int)(slash - c->store), slash == NULL ? "." : c->store);
	if (access(dir, W_OK) != 0)
		cfg_error(p, line, "oauth2_token_store %s: directory %s is not "
		    "writable (%s); the store is replaced atomically there",
		    c->store, dir, strerror(errno));
}

/*
 * The oauth2_* keys of a service or an account whose token the proxy
 * obtains itself: a person's grant in a token store, or an application's
 * own.  seen: the lines of its keys; what names the section in messages;
 * proto is the service's protocol, or -1 for an account (any protocol);
 * subject the mailbox (upstream_user).
 */
void
validate_oauth2(struct parser *p, struct oauth2_conf *c, const int *seen,
    const char *what, int proto, const char *subject)
{
	int line = seen[K_OAUTH2_STORE] != 0 ? seen[K_OAUTH2_STORE] :
	    seen[K_OAUTH2_GRANT];

	if (c->provider != OAUTH2_MICROSOFT)
		for (int k = K_OAUTH2_TENANT; k <= K_OAUTH2_CLOUD; k++)
			if (seen[k] != 0)
				cfg_error(p, seen[k], "%s is for oauth2_provider "
				    "= microsoft", config_keys[k].name);
	if (oauth2_app_grant(c) && c->store != NULL)
		cfg_error(p, seen[K_OAUTH2_STORE], "[%s]: oauth2_grant = %s "
		    "needs no oauth2_token_store (no person's grant is kept: the "
		    "proxy fetches the application's own tokens)", what,
		    c->grant == OAUTH2_GRANT_SERVICE_ACCOUNT ? "service_account" :
		    "client_credentials");
	if (c->grant == OAUTH2_GRANT_SERVICE_ACCOUNT)
		validate_sa(p, c, seen, line, what, subject);	/* token_uri */
	oauth2_apply_preset(c, proto);
	if (c->grant == OAUTH2_GRANT_CLIENT_CREDENTIALS)
		validate_client(p, c, seen, line, what);
	else if (!oauth2_app_grant(c))
		validate_person(p, c, seen, line, what);
	if (oauth2_app_grant(c) && c->token_url == NULL)
		cfg_error(p, line, "[%s]: oauth2_provider = custom needs "
		    "oauth2_token_url", what);
}

/*
 * upstream_auth turns the listener into a relay authenticated as
 * upstream_user for whoever reaches it: it needs TLS toward the upstream,
 * the right secret for the mechanism and an allow list of the devices.
 */
void
oauth2_conf_free(struct oauth2_conf *c)
{
	free(c->client_id);
	free(c->client_secret_file);
	if (c->client_secret != NULL) {
		OPENSSL_cleanse(c->client_secret, strlen(c->client_secret));
		free(c->client_secret);
	}
	free(c->scope);
	free(c->token_url);
	free(c->device_url);
	free(c->ca);
	free(c->store);
	free(c->authorize_url);
	free(c->tenant);
	free(c->client_cert);
	free(c->client_key);
	free(c->sa_file);
	free(c->sa_email);
	free(c->subject);
	jwt_key_free(c->key);
}

