/*
 * oauth2_preset: provider presets; see oauth2_preset.h.
 *
 * Microsoft's endpoints are the tenant's own (https://LOGIN/TENANT/oauth2/
 * v2.0/...; "common" for a person's grant without oauth2_tenant), on the
 * login host and for the Exchange Online resource of the tenant's cloud.
 */
#include "oauth2_preset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static const struct cloud {
	const char	*login;		/* the identity platform's host */
	const char	*user_resource;	/* delegated scopes' resource */
	const char	*app_resource;	/* the app-only .default's */
} clouds[] = {
	[OAUTH2_CLOUD_GLOBAL] = { "login.microsoftonline.com",
	    "https://outlook.office.com", "https://outlook.office365.com" },
	/* GCC High and DoD. */
	[OAUTH2_CLOUD_USGOV] = { "login.microsoftonline.us",
	    "https://outlook.office365.us", "https://outlook.office365.us" },
	/* Operated by 21Vianet. */
	[OAUTH2_CLOUD_CHINA] = { "login.chinacloudapi.cn",
	    "https://partner.outlook.cn", "https://partner.outlook.cn" },
};

/* Delegated scopes by enum proto (smtp, pop3, imap), then any. */
static const char *const ms_scopes[] = { "%s/SMTP.Send offline_access",
    "%s/POP.AccessAsUser.All offline_access",
    "%s/IMAP.AccessAsUser.All offline_access",
    "%1$s/IMAP.AccessAsUser.All %1$s/POP.AccessAsUser.All %1$s/SMTP.Send "
    "offline_access" };

static const struct google {
	const char	*token_url;
	const char	*device_url;
	const char	*authorize_url;
	const char	*scope;
} google = {
	"https://oauth2.googleapis.com/token",
	"https://oauth2.googleapis.com/device/code",
	"https://accounts.google.com/o/oauth2/v2/auth",
	"https://mail.google.com/",
};

static void
default_to(char **field, const char *value)
{
	if (*field == NULL && value != NULL)
		*field = strdup(value);	/* NULL when out of memory: the
					   missing-URL rule then reports it */
}

/* The tenant's endpoint named last (token, devicecode, authorize). */
static void
ms_url(char **field, const struct oauth2_conf *c, const char *last)
{
	char url[512];

	if (*field != NULL)
		return;
	snprintf(url, sizeof(url), "https://%s/%s/oauth2/v2.0/%s",
	    clouds[c->cloud].login, c->tenant != NULL ? c->tenant : "common",
	    last);
	*field = strdup(url);
}

static void
microsoft(struct oauth2_conf *c, int proto)
{
	const struct cloud *cl = &clouds[c->cloud];
	char scope[512];

	ms_url(&c->token_url, c, "token");
	ms_url(&c->device_url, c, "devicecode");
	ms_url(&c->authorize_url, c, "authorize");
	if (oauth2_app_grant(c))
		snprintf(scope, sizeof(scope), "%s/.default", cl->app_resource);
	else
		snprintf(scope, sizeof(scope), ms_scopes[proto >= 0 && proto < 3 ?
		    proto : 3], cl->user_resource);
	default_to(&c->scope, scope);
}

void
oauth2_apply_preset(struct oauth2_conf *c, int proto)
{
	/* Google's device flow does not grant the Gmail scope. */
	if (c->grant == OAUTH2_GRANT_AUTO)
		c->grant = c->provider == OAUTH2_GOOGLE ? OAUTH2_GRANT_CODE :
		    OAUTH2_GRANT_DEVICE;
	if (c->provider == OAUTH2_MICROSOFT)
		microsoft(c, proto);
	else if (c->provider == OAUTH2_GOOGLE) {
		default_to(&c->token_url, google.token_url);
		default_to(&c->device_url, google.device_url);
		default_to(&c->authorize_url, google.authorize_url);
		default_to(&c->scope, google.scope);
	}
}
