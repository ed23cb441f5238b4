/*
 * proto: the protocols and modes every part names (no other dependency, so
 * that the pure parsers need nothing more).
 */
#ifndef MAILPROXY_PROTO_H
#define MAILPROXY_PROTO_H

enum proto { PROTO_SMTP, PROTO_POP3, PROTO_IMAP };
enum tls_mode { TLS_MODE_NONE, TLS_MODE_IMPLICIT, TLS_MODE_STARTTLS };
/*
 * upstream_auth: the proxy logs in to the upstream itself, as the service's
 * upstream_user (SMTP), or as the [account:NAME] the client logged in to
 * the proxy with (ACCOUNTS: smtp, imap, pop3).
 */
enum upstream_auth { AUTH_NONE, AUTH_PLAIN, AUTH_LOGIN, AUTH_XOAUTH2,
    AUTH_OAUTHBEARER, AUTH_ACCOUNTS };

extern const char *const proto_names[];
extern const char *const tls_mode_names[];
extern const char *const upstream_auth_names[];

#endif
