/*
 * reason: why a session ended, as one enum with one table: the name the
 * close line logs, the outcome class /metrics counts it under, and what
 * the client is told when the proxy says goodbye itself.  Pure: no I/O.
 */
#ifndef MAILPROXY_REASON_H
#define MAILPROXY_REASON_H

/* The outcome classes of mailproxy_sessions_ended_total{outcome=...}. */
enum outcome {
	END_OK, END_CLIENT_HANDSHAKE, END_UPSTREAM_VERIFY, END_UPSTREAM_TLS,
	END_STARTTLS_UPSTREAM, END_STARTTLS_CLIENT, END_CONNECT, END_TIMEOUT,
	END_REFUSED, END_ERROR, END_UPSTREAM_AUTH, END_NREASONS
};

/* What the client hears when the proxy ends the session before the relay. */
enum tell {
	TELL_NOTHING,		/* the client's own doing, or no words fit */
	TELL_UNREACHABLE,	/* the upstream cannot be reached: try later */
	TELL_INSECURE,		/* no secure connection to the upstream */
	TELL_AUTH,		/* the upstream refused the proxy's login */
	TELL_LOCAL		/* the proxy itself is short of resources */
};

/*    name in the log               outcome class           client told */
#define CLOSE_REASONS(X)						\
	X(NONE, "-",				END_ERROR,		TELL_NOTHING) \
	X(CLIENT_CLOSED, "client-closed",	END_OK,			TELL_NOTHING) \
	X(UPSTREAM_CLOSED, "upstream-closed",	END_OK,			TELL_NOTHING) \
	X(CLIENT_QUIT, "client-quit",		END_OK,			TELL_NOTHING) \
	X(SHUTDOWN, "shutdown",			END_OK,			TELL_NOTHING) \
	X(CLIENT_HANDSHAKE_FAILED, "client-handshake-failed", END_CLIENT_HANDSHAKE, TELL_NOTHING) \
	X(CLIENT_HANDSHAKE_TIMEOUT, "client-handshake-timeout", END_TIMEOUT,	TELL_NOTHING) \
	X(CLIENT_CERT_FAILED, "client-cert-failed", END_CLIENT_HANDSHAKE, TELL_NOTHING) \
	X(UPSTREAM_VERIFY_FAILED, "upstream-verify-failed", END_UPSTREAM_VERIFY, TELL_INSECURE) \
	X(UPSTREAM_HANDSHAKE_FAILED, "upstream-handshake-failed", END_UPSTREAM_TLS, TELL_INSECURE) \
	X(UPSTREAM_HANDSHAKE_TIMEOUT, "upstream-handshake-timeout", END_UPSTREAM_TLS, TELL_INSECURE) \
	X(UPSTREAM_TLS_SETUP_FAILED, "upstream-tls-setup-failed", END_UPSTREAM_TLS, TELL_INSECURE) \
	X(UPSTREAM_CONNECT_FAILED, "upstream-connect-failed", END_CONNECT,	TELL_UNREACHABLE) \
	X(UPSTREAM_CONNECT_TIMEOUT, "upstream-connect-timeout", END_CONNECT,	TELL_UNREACHABLE) \
	X(UPSTREAM_ERROR, "upstream-error",	END_ERROR,		TELL_UNREACHABLE) \
	X(UPSTREAM_TRUNCATED, "upstream-truncated", END_ERROR,		TELL_NOTHING) \
	X(UPSTREAM_CLOSED_EARLY, "upstream-closed-early", END_STARTTLS_UPSTREAM, TELL_UNREACHABLE) \
	X(CLIENT_ERROR, "client-error",		END_ERROR,		TELL_NOTHING) \
	X(OUT_OF_MEMORY, "out-of-memory",	END_ERROR,		TELL_LOCAL) \
	X(UPSTREAM_NO_STARTTLS, "upstream-no-starttls", END_STARTTLS_UPSTREAM, TELL_INSECURE) \
	X(UPSTREAM_STARTTLS_REFUSED, "upstream-starttls-refused", END_STARTTLS_UPSTREAM, TELL_INSECURE) \
	X(UPSTREAM_INJECTION, "upstream-injection", END_STARTTLS_UPSTREAM, TELL_INSECURE) \
	X(UPSTREAM_UNSOLICITED, "upstream-unsolicited", END_STARTTLS_UPSTREAM, TELL_INSECURE) \
	X(UPSTREAM_REFUSED, "upstream-refused",	END_STARTTLS_UPSTREAM,	TELL_UNREACHABLE) \
	X(UPSTREAM_BAD_GREETING, "upstream-bad-greeting", END_STARTTLS_UPSTREAM, TELL_INSECURE) \
	X(UPSTREAM_PREAUTH, "upstream-preauth",	END_STARTTLS_UPSTREAM,	TELL_INSECURE) \
	X(UPSTREAM_PROTOCOL_ERROR, "upstream-protocol-error", END_STARTTLS_UPSTREAM, TELL_INSECURE) \
	X(UPSTREAM_EHLO_REFUSED, "upstream-ehlo-refused", END_STARTTLS_UPSTREAM, TELL_INSECURE) \
	X(NEGOTIATION_TIMEOUT, "negotiation-timeout", END_STARTTLS_UPSTREAM,	TELL_INSECURE) \
	X(NEGOTIATION_FAILED, "negotiation-failed", END_STARTTLS_UPSTREAM,	TELL_INSECURE) \
	X(UPSTREAM_AUTH_REFUSED, "upstream-auth-refused", END_UPSTREAM_AUTH,	TELL_AUTH) \
	X(UPSTREAM_AUTH_UNAVAILABLE, "upstream-auth-unavailable", END_UPSTREAM_AUTH, TELL_AUTH) \
	X(UPSTREAM_AUTH_NO_TOKEN, "upstream-auth-no-token", END_UPSTREAM_AUTH,	TELL_LOCAL) \
	X(CLIENT_LINE_TOO_LONG, "client-line-too-long", END_STARTTLS_CLIENT,	TELL_NOTHING) \
	X(CLIENT_TOO_MANY_ERRORS, "client-too-many-errors", END_STARTTLS_CLIENT, TELL_NOTHING) \
	X(CLIENT_INJECTION, "client-injection",	END_STARTTLS_CLIENT,	TELL_NOTHING) \
	X(CLIENT_LITERAL_BEFORE_STARTTLS, "client-literal-before-starttls", END_STARTTLS_CLIENT, TELL_NOTHING) \
	X(CLIENT_NEGOTIATION_TIMEOUT, "client-negotiation-timeout", END_STARTTLS_CLIENT, TELL_NOTHING) \
	X(CLIENT_NEGOTIATION_FAILED, "client-negotiation-failed", END_STARTTLS_CLIENT, TELL_NOTHING) \
	X(CLIENT_STARTTLS_IN_TLS, "client-starttls-in-tls", END_STARTTLS_CLIENT, TELL_NOTHING) \
	X(IDLE_TIMEOUT, "idle-timeout",		END_TIMEOUT,		TELL_NOTHING) \
	X(PROXY_UNTRUSTED, "proxy-untrusted",	END_REFUSED,		TELL_NOTHING) \
	X(PROXY_HEADER_INVALID, "proxy-header-invalid", END_REFUSED,	TELL_NOTHING) \
	X(PROXY_HEADER_TIMEOUT, "proxy-header-timeout", END_REFUSED,	TELL_NOTHING) \
	X(NOT_ALLOWED, "not-allowed",		END_REFUSED,		TELL_NOTHING) \
	X(PER_CLIENT_LIMIT, "per-client-limit",	END_REFUSED,		TELL_NOTHING) \
	X(CLIENT_AUTH_FAILED, "client-auth-failed", END_REFUSED,	TELL_NOTHING) \
	X(AUTH_BLOCKED, "auth-blocked",		END_REFUSED,		TELL_NOTHING) \
	X(ACCOUNT_REMOVED, "account-removed",	END_REFUSED,			TELL_NOTHING)

enum close_reason {
#define REASON_ENUM(id, name, outcome, tell)	R_##id,
	CLOSE_REASONS(REASON_ENUM)
#undef REASON_ENUM
	R_COUNT
};

/* The name the close line logs ("upstream-no-starttls"). */
const char	*reason_name(enum close_reason r);

/* The class /metrics counts it under, and its label. */
enum outcome	 reason_outcome(enum close_reason r);
const char	*outcome_name(enum outcome o);

/* What the client is told if the proxy ends the session itself. */
enum tell	 reason_tell(enum close_reason r);

#endif
