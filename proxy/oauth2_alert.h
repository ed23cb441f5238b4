/*
 * oauth2_alert: a person is told when a grant dies.
 *
 * The provider's refusal is classified for the operator (the AADSTS codes
 * and Google's invalid_grant reasons: what happened, what to do), and
 * oauth2_alert_command, when set, is run once per incident and once on
 * recovery -- never on the event loop: the supervisor forks a runner that
 * starts the program (its own process group, no inherited descriptors,
 * standard input from /dev/null) and kills it if it outlives the time
 * limit; the supervisor does not wait for either.
 */
#ifndef MAILPROXY_OAUTH2_ALERT_H
#define MAILPROXY_OAUTH2_ALERT_H

#include <stddef.h>

/* Seconds an alert command may run (MAILPROXY_ALERT_TIMEOUT overrides). */
#define OAUTH2_ALERT_TIMEOUT	30

/*
 * What a provider's error means (code: invalid_grant ..., why: its words)
 * for a grant (enum oauth2_grant_kind) used by authorize ("-A" argument):
 * reason and action, printable.  Unknown errors get a generic reading.
 */
void	oauth2_classify(const char *code, const char *why, int grant,
	    const char *authorize, char *reason, size_t reasonlen,
	    char *action, size_t actionlen);

/*
 * Runs cmd (NULL: nothing) with MAILPROXY_SERVICE, MAILPROXY_ACCOUNT
 * (empty for a service), MAILPROXY_REASON, MAILPROXY_ACTION and
 * MAILPROXY_STATE (failing or recovered) in its environment.
 */
void	oauth2_alert_run(const char *cmd, const char *service,
	    const char *account, const char *state, const char *reason,
	    const char *action);

#endif
