/*
 * The pure parts of the OAuth2 lifecycle: form encoding, the token
 * endpoint's answers, the store file, the presets, OAUTHBEARER's GS2 header.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "oauth2.h"
#include "oauth2_alert.h"
#include "oauth2_preset.h"
#include "tokenstore.h"
#include "unit.h"

static void
test_form(void)
{
	char *form = NULL;

	CHECK(oauth2_form_add(&form, "grant_type", "refresh_token") == 0);
	CHECK(oauth2_form_add(&form, "refresh_token", "0.A a+b/c=d&e%") == 0);
	CHECK(oauth2_form_add(&form, "scope",
	    "https://outlook.office.com/SMTP.Send offline_access") == 0);
	CHECK(form != NULL && strcmp(form, "grant_type=refresh_token&"
	    "refresh_token=0.A+a%2Bb%2Fc%3Dd%26e%25&scope=https%3A%2F%2F"
	    "outlook.office.com%2FSMTP.Send+offline_access") == 0);
	oauth2_form_free(form);
}

static void
test_parse(void)
{
	struct token t = { 0 };
	char code[64], why[300];
	const char *ok = "{\"access_token\":\"at-1\",\"expires_in\":3599,"
	    "\"refresh_token\":\"rt-2\",\"token_type\":\"Bearer\"}";
	const char *norot = "{\"access_token\":\"at-2\",\"expires_in\":\"60\"}";
	const char *grant = "{\"error\":\"invalid_grant\",\"error_description\":"
	    "\"AADSTS70000: \\\"revoked\\\"\\nline\"}";

	CHECK(oauth2_parse_token(200, ok, strlen(ok), 1000, &t, code,
	    sizeof(code), why, sizeof(why)) == 0);
	CHECK(t.access != NULL && strcmp(t.access, "at-1") == 0);
	CHECK(t.refresh != NULL && strcmp(t.refresh, "rt-2") == 0);
	CHECK(t.expires_at == 4599 && t.obtained_at == 1000);
	CHECK(oauth2_parse_token(200, norot, strlen(norot), 1000, &t, code,
	    sizeof(code), why, sizeof(why)) == 0);
	CHECK(t.refresh == NULL && t.expires_at == 1060);
	{
		const char *huge = "{\"access_token\":\"a\",\"expires_in\":"
		    "99999999999999999}";
		const char *neg = "{\"access_token\":\"a\",\"expires_in\":\"-5\"}";
		CHECK(oauth2_parse_token(200, huge, strlen(huge), 1000, &t, code,
		    sizeof(code), why, sizeof(why)) == 0);
		CHECK(t.expires_at == 1000 + 366 * 86400);
		CHECK(oauth2_parse_token(200, neg, strlen(neg), 1000, &t, code,
		    sizeof(code), why, sizeof(why)) == 0);
		CHECK(t.expires_at == 1003);
	}
	CHECK(oauth2_parse_token(400, grant, strlen(grant), 1000, &t, code,
	    sizeof(code), why, sizeof(why)) == -1);
	CHECK(strcmp(code, "invalid_grant") == 0);
	CHECK_STR_CONTAINS(why, "HTTP 400 invalid_grant: AADSTS70000");
	CHECK(strchr(why, '"') == NULL && strchr(why, '\n') == NULL);
	CHECK(t.access == NULL);
	CHECK(oauth2_parse_token(502, "<html>", 6, 1000, &t, code, sizeof(code),
	    why, sizeof(why)) == -1);
	CHECK(code[0] == '\0');
	CHECK_STR_CONTAINS(why, "HTTP 502 without a JSON object");
	CHECK(oauth2_parse_token(200, "{}", 2, 1000, &t, code, sizeof(code),
	    why, sizeof(why)) == -1);
	CHECK_STR_CONTAINS(why, "without an access_token");
	token_clear(&t);
}

static void
test_store(void)
{
	char dir[] = "/tmp/mp-oauth2-XXXXXX", path[128], err[300];
	struct token t = { 0 }, back = { 0 };
	struct file_id id, id2;
	struct stat st;
	int missing, fd;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/store.json", dir);
	CHECK(token_read(path, &back, NULL, &missing, err, sizeof(err)) == -1);
	CHECK(missing == 1);
	t.refresh = strdup("rt-1");
	t.access = strdup("at-1");
	t.expires_at = 2000000000;
	t.obtained_at = 1999996400;
	CHECK(token_write(path, &t, &id, err, sizeof(err)) == 0);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600);
	CHECK(!token_file_changed(path, &id));
	CHECK(token_read(path, &back, &id2, &missing, err, sizeof(err)) == 0);
	CHECK(file_id_equal(&id, &id2));
	CHECK(back.refresh && strcmp(back.refresh, "rt-1") == 0);
	CHECK(back.access && strcmp(back.access, "at-1") == 0);
	CHECK(back.expires_at == 2000000000 && back.obtained_at == 1999996400);
	/* Rewritten: a new identity. */
	free(t.access);
	t.access = strdup("at-2");
	CHECK(token_write(path, &t, &id2, err, sizeof(err)) == 0);
	CHECK(token_file_changed(path, &id) && !token_file_changed(path, &id2));
	/* World-readable, not JSON, or no token at all: refused, no token in
	 * the message. */
	chmod(path, 0644);
	CHECK(token_read(path, &back, NULL, &missing, err, sizeof(err)) == -1);
	CHECK_STR_CONTAINS(err, "readable by everyone");
	fd = open(path, O_WRONLY | O_TRUNC);
	CHECK(fd >= 0 && write(fd, "{\"refresh_token\": 5}", 20) == 20);
	close(fd);
	chmod(path, 0600);
	CHECK(token_read(path, &back, NULL, &missing, err, sizeof(err)) == -1);
	CHECK_STR_CONTAINS(err, "\"refresh_token\" is not a token");
	fd = open(path, O_WRONLY | O_TRUNC);
	CHECK(fd >= 0 && write(fd, "{\"refresh_token\": \"at-2", 23) == 23);
	close(fd);
	CHECK(token_read(path, &back, NULL, &missing, err, sizeof(err)) == -1);
	CHECK_STR_CONTAINS(err, "not a token store");
	CHECK(strstr(err, "at-2") == NULL);
	fd = open(path, O_WRONLY | O_TRUNC);
	CHECK(fd >= 0 && write(fd, "{}", 2) == 2);
	close(fd);
	CHECK(token_read(path, &back, NULL, &missing, err, sizeof(err)) == -1);
	CHECK_STR_CONTAINS(err, "no refresh_token");
	token_clear(&t);
	token_clear(&back);
	unlink(path);
	rmdir(dir);
}

static void
test_presets(void)
{
	struct oauth2_conf c = { .provider = OAUTH2_MICROSOFT };
	struct oauth2_conf g = { .provider = OAUTH2_GOOGLE };
	struct oauth2_conf own = { .provider = OAUTH2_MICROSOFT,
	    .scope = strdup("mine") };

	oauth2_apply_preset(&c, PROTO_IMAP);
	CHECK(c.scope && strcmp(c.scope, "https://outlook.office.com/"
	    "IMAP.AccessAsUser.All offline_access") == 0);
	CHECK(c.token_url && strstr(c.token_url, "login.microsoftonline.com"));
	CHECK(c.device_url && strstr(c.device_url, "/devicecode"));
	oauth2_apply_preset(&g, PROTO_SMTP);
	CHECK(g.scope && strcmp(g.scope, "https://mail.google.com/") == 0);
	CHECK(g.token_url && strcmp(g.token_url,
	    "https://oauth2.googleapis.com/token") == 0);
	/* Google's device flow does not grant the Gmail scope: code. */
	CHECK(g.grant == OAUTH2_GRANT_CODE);
	CHECK(c.grant == OAUTH2_GRANT_DEVICE);
	CHECK(g.authorize_url && strcmp(g.authorize_url,
	    "https://accounts.google.com/o/oauth2/v2/auth") == 0);
	oauth2_apply_preset(&own, PROTO_SMTP);
	CHECK(strcmp(own.scope, "mine") == 0);
	free(c.scope); free(c.token_url); free(c.device_url);
	free(g.scope); free(g.token_url); free(g.device_url);
	free(own.scope); free(own.token_url); free(own.device_url);
	free(c.authorize_url); free(g.authorize_url); free(own.authorize_url);
}

/* oauth2_tenant and oauth2_cloud: the tenant's own endpoints in its cloud;
 * an application's own grant asks for the resource's .default. */
static void
test_presets_clouds(void)
{
	struct oauth2_conf app = { .provider = OAUTH2_MICROSOFT,
	    .grant = OAUTH2_GRANT_CLIENT_CREDENTIALS, .tenant = "contoso.com" };
	struct oauth2_conf gov = { .provider = OAUTH2_MICROSOFT,
	    .cloud = OAUTH2_CLOUD_USGOV };
	struct oauth2_conf cn = { .provider = OAUTH2_MICROSOFT,
	    .grant = OAUTH2_GRANT_CLIENT_CREDENTIALS, .cloud = OAUTH2_CLOUD_CHINA,
	    .tenant = "t1" };
	struct oauth2_conf *all[] = { &app, &gov, &cn };

	oauth2_apply_preset(&app, PROTO_SMTP);
	CHECK(strcmp(app.token_url, "https://login.microsoftonline.com/"
	    "contoso.com/oauth2/v2.0/token") == 0);
	CHECK(strcmp(app.scope, "https://outlook.office365.com/.default") == 0);
	oauth2_apply_preset(&gov, PROTO_IMAP);
	CHECK(gov.grant == OAUTH2_GRANT_DEVICE);
	CHECK(strcmp(gov.token_url, "https://login.microsoftonline.us/common/"
	    "oauth2/v2.0/token") == 0);
	CHECK(strcmp(gov.device_url, "https://login.microsoftonline.us/common/"
	    "oauth2/v2.0/devicecode") == 0);
	CHECK(strcmp(gov.scope, "https://outlook.office365.us/"
	    "IMAP.AccessAsUser.All offline_access") == 0);
	oauth2_apply_preset(&cn, -1);
	CHECK(strcmp(cn.token_url, "https://login.chinacloudapi.cn/t1/oauth2/"
	    "v2.0/token") == 0);
	CHECK(strcmp(cn.scope, "https://partner.outlook.cn/.default") == 0);
	for (size_t i = 0; i < 3; i++) {
		free(all[i]->scope);
		free(all[i]->token_url);
		free(all[i]->device_url);
		free(all[i]->authorize_url);
	}
}

/* The provider's refusal, told to the operator: what, and what to do. */
static void
test_classify(void)
{
	char reason[300], action[300];

	oauth2_classify("invalid_grant", "HTTP 400 invalid_grant: AADSTS700082: "
	    "The refresh token has expired due to inactivity.",
	    OAUTH2_GRANT_DEVICE, "scan", reason, sizeof(reason), action,
	    sizeof(action));
	CHECK_STR_CONTAINS(reason, "90 days unused");
	CHECK(strcmp(action, "re-run mailproxy -A scan") == 0);
	oauth2_classify("invalid_grant", "AADSTS50076: Due to a configuration "
	    "change made by your administrator", OAUTH2_GRANT_DEVICE, "scan",
	    reason, sizeof(reason), action, sizeof(action));
	CHECK_STR_CONTAINS(reason, "multi-factor");
	oauth2_classify("invalid_grant", "AADSTS70043: expired", OAUTH2_GRANT_CODE,
	    "s:a", reason, sizeof(reason), action, sizeof(action));
	CHECK_STR_CONTAINS(reason, "sign-in frequency");
	CHECK_STR_CONTAINS(action, "mailproxy -A s:a");
	oauth2_classify("invalid_grant", "HTTP 400 invalid_grant: Token has been "
	    "expired or revoked.", OAUTH2_GRANT_CODE, "g", reason,
	    sizeof(reason), action, sizeof(action));
	CHECK_STR_CONTAINS(reason, "Google");
	/* An application's own grant: never "re-run -A". */
	oauth2_classify("invalid_client", "AADSTS7000222: The provided client "
	    "secret keys are expired", OAUTH2_GRANT_CLIENT_CREDENTIALS, "m",
	    reason, sizeof(reason), action, sizeof(action));
	CHECK_STR_CONTAINS(reason, "secret has expired");
	CHECK(strstr(action, "-A") == NULL);
	oauth2_classify("invalid_grant", "Invalid JWT Signature.",
	    OAUTH2_GRANT_SERVICE_ACCOUNT, "w", reason, sizeof(reason), action,
	    sizeof(action));
	CHECK_STR_CONTAINS(action, "new key");
	oauth2_classify("invalid_grant", "something new",
	    OAUTH2_GRANT_CLIENT_CREDENTIALS, "w", reason, sizeof(reason), action,
	    sizeof(action));
	CHECK(strstr(action, "-A") == NULL);
}

void
test_oauth2(void)
{
	test_form();
	test_parse();
	test_store();
	test_presets();
	test_presets_clouds();
	test_classify();
}
