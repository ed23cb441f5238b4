/*
 * oauth2_alert: classified provider errors and the alert command; see
 * oauth2_alert.h.
 */
#include "oauth2_alert.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

extern char **environ;

/* What the operator reads, by the provider's error. */
static const struct reading {
	const char	*marker;	/* in the code or the description */
	const char	*reason;
	const char	*action;	/* %s: -A's argument */
} readings[] = {
	{ "AADSTS50076", "Microsoft: a conditional access policy now requires "
	    "multi-factor authentication", "re-run mailproxy -A %s (sign in "
	    "with MFA), or use an app-only grant (client_credentials)" },
	{ "AADSTS50079", "Microsoft: the user must enroll in multi-factor "
	    "authentication", "enroll the mailbox in MFA, then re-run "
	    "mailproxy -A %s" },
	{ "AADSTS70043", "Microsoft: the refresh token expired under a "
	    "conditional access sign-in frequency policy", "re-run mailproxy "
	    "-A %s, or exempt the application from the sign-in frequency" },
	{ "AADSTS700082", "Microsoft: the refresh token expired after 90 days "
	    "unused", "re-run mailproxy -A %s" },
	{ "AADSTS50173", "Microsoft: the grant was revoked (password changed "
	    "or sessions revoked)", "re-run mailproxy -A %s" },
	{ "AADSTS50126", "Microsoft: invalid username or password",
	    "re-run mailproxy -A %s" },
	{ "AADSTS7000215", "Microsoft: the client secret is wrong",
	    "put the application's current secret in oauth2_client_secret_file" },
	{ "AADSTS7000222", "Microsoft: the client secret has expired",
	    "create a new client secret in Entra ID and put it in "
	    "oauth2_client_secret_file" },
	{ "AADSTS700027", "Microsoft: the client assertion's certificate is "
	    "not registered for the application, or its signature is wrong",
	    "upload oauth2_client_certificate under Certificates & secrets" },
	{ "AADSTS700024", "Microsoft: the client assertion is outside its "
	    "validity (the clock)", "check the gateway's clock (NTP)" },
	{ "AADSTS65001", "Microsoft: no consent for the application's "
	    "permissions", "grant admin consent for the API permissions in "
	    "Entra ID" },
	{ "AADSTS90002", "Microsoft: the tenant does not exist",
	    "check oauth2_tenant (and oauth2_cloud)" },
	{ "AADSTS700016", "Microsoft: the application is not in the tenant",
	    "check oauth2_client_id and oauth2_tenant" },
	{ "Token has been expired or revoked", "Google: the refresh token "
	    "expired or was revoked (a password change, removed access, or 7 "
	    "days for an app in testing)", "re-run mailproxy -A %s (publish "
	    "the OAuth consent screen so that tokens stop expiring weekly)" },
	{ "Invalid JWT Signature", "Google: the service account's key was "
	    "deleted or is not this one", "create a new key for the service "
	    "account and install it as oauth2_service_account_file" },
	{ "Invalid JWT", "Google: the assertion was refused (often the "
	    "clock)", "check the gateway's clock (NTP)" },
	{ "Client is unauthorized to retrieve access tokens", "Google: "
	    "domain-wide delegation is not granted for this scope",
	    "add the service account's client ID with https://mail.google.com/ "
	    "under Domain-wide delegation in the Workspace admin console" },
	{ "invalid_client", "the provider does not know this client or its "
	    "credentials", "check oauth2_client_id and the secret or "
	    "certificate" },
	{ "unauthorized_client", "the client may not use this grant",
	    "check the application's registration (public client flows, API "
	    "permissions)" },
	{ "invalid_scope", "the scope was refused", "check oauth2_scope and "
	    "the application's API permissions" },
	{ "invalid_grant", "the provider refused the grant (revoked, expired, "
	    "or the password changed)", "re-run mailproxy -A %s" },
};

void
oauth2_classify(const char *code, const char *why, int grant,
    const char *authorize, char *reason, size_t reasonlen, char *action,
    size_t actionlen)
{
	bool app = grant == OAUTH2_GRANT_CLIENT_CREDENTIALS ||
	    grant == OAUTH2_GRANT_SERVICE_ACCOUNT;

	for (size_t i = 0; i < sizeof(readings) / sizeof(*readings); i++) {
		const struct reading *r = &readings[i];
		if (strstr(why, r->marker) == NULL &&
		    strcmp(code, r->marker) != 0)
			continue;
		/* "re-run -A" means nothing without a person's grant. */
		if (app && strstr(r->action, "-A %s") != NULL)
			continue;
		snprintf(reason, reasonlen, "%s", r->reason);
		snprintf(action, actionlen, r->action, authorize);
		return;
	}
	snprintf(reason, reasonlen, "the provider refused: %s", why);
	if (app)
		snprintf(action, actionlen, "check the application's "
		    "credentials and permissions");
	else
		snprintf(action, actionlen, "re-run mailproxy -A %s", authorize);
}

static int
limit_seconds(void)
{
	const char *v = getenv("MAILPROXY_ALERT_TIMEOUT");
	int n = v != NULL ? atoi(v) : 0;

	return n > 0 && n <= 3600 ? n : OAUTH2_ALERT_TIMEOUT;
}

/* In the grandchild: the program, alone in its process group. */
static void
start_program(const char *cmd, char **envp)
{
	sigset_t none;
	int null = open("/dev/null", O_RDONLY);

	setpgid(0, 0);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		if (null != STDIN_FILENO)
			close(null);
	}
	close_range(3, ~0U, 0);
	execve(cmd, (char *[]){ (char *)(uintptr_t)cmd, NULL }, envp);
	_exit(127);
}

/* In the runner: starts the program, waits at most the limit, kills it
 * (its process group) if it is still there. */
static void
runner(const char *cmd, char **envp, int limit)
{
	struct timespec step = { 0, 20 * 1000 * 1000 };
	time_t deadline = time(NULL) + limit;
	int status = 0;
	pid_t pid, got = 0;

	close_range(3, ~0U, 0);	/* the supervisor's sockets are not ours */
	if ((pid = fork()) < 0)
		_exit(1);
	if (pid == 0)
		start_program(cmd, envp);
	setpgid(pid, pid);
	while ((got = waitpid(pid, &status, WNOHANG)) == 0 &&
	    time(NULL) < deadline)
		nanosleep(&step, NULL);
	if (got == 0) {
		kill(-pid, SIGKILL);
		waitpid(pid, &status, 0);
		log_warnx("event=oauth2-alert-killed cmd=%s pid=%ld after=%ds",
		    cmd, (long)pid, limit);
	} else if (got == pid && (!WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0))
		log_warnx("event=oauth2-alert-failed cmd=%s status=%d", cmd,
		    WIFEXITED(status) ? WEXITSTATUS(status) : 128 +
		    WTERMSIG(status));
	_exit(0);
}

/* environ without our variables, then mine; NULL when out of memory. */
static char **
alert_env(char *const mine[5])
{
	size_t n = 0, k = 0;
	char **envp;

	while (environ[n] != NULL)
		n++;
	if ((envp = calloc(n + 6, sizeof(*envp))) == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "MAILPROXY_", 10) != 0)
			envp[k++] = environ[i];
	for (size_t i = 0; i < 5; i++)
		envp[k++] = mine[i];
	return envp;
}

void
oauth2_alert_run(const char *cmd, const char *service, const char *account,
    const char *state, const char *reason, const char *action)
{
	const char *const vars[5][2] = { { "MAILPROXY_SERVICE", service },
	    { "MAILPROXY_ACCOUNT", account }, { "MAILPROXY_STATE", state },
	    { "MAILPROXY_REASON", reason }, { "MAILPROXY_ACTION", action } };
	char *mine[5] = { NULL }, **envp = NULL;
	int limit = limit_seconds();
	pid_t pid;

	if (cmd == NULL)
		return;
	for (size_t i = 0; i < 5; i++)
		if (asprintf(&mine[i], "%s=%s", vars[i][0], vars[i][1]) < 0)
			mine[i] = NULL;
	if (mine[0] == NULL || mine[1] == NULL || mine[2] == NULL ||
	    mine[3] == NULL || mine[4] == NULL ||
	    (envp = alert_env(mine)) == NULL) {
		log_errorx("event=oauth2-alert-failed: out of memory");
		goto out;
	}
	fflush(stderr);
	if ((pid = fork()) < 0)
		log_errorx("event=oauth2-alert-failed cmd=%s: fork: %s", cmd,
		    strerror(errno));
	else if (pid == 0)
		runner(cmd, envp, limit);
	else
		log_info("event=oauth2-alert svc=%s account=%s state=%s cmd=%s "
		    "runner=%ld", service, account[0] != '\0' ? account : "-",
		    state, cmd, (long)pid);
out:
	for (size_t i = 0; i < 5; i++)
		free(mine[i]);
	free(envp);
}
