/*
 * reason: the close-reason table; see reason.h.
 */
#include "reason.h"

static const struct {
	const char	*name;
	enum outcome	 outcome;
	enum tell	 tell;
} reasons[R_COUNT] = {
#define REASON_ROW(id, name, outcome, tell)	[R_##id] = { name, outcome, tell },
	CLOSE_REASONS(REASON_ROW)
#undef REASON_ROW
};

static const char *const outcome_names[END_NREASONS] = {
	[END_OK] = "ok",
	[END_CLIENT_HANDSHAKE] = "client-handshake-failed",
	[END_UPSTREAM_VERIFY] = "upstream-verify-failed",
	[END_UPSTREAM_TLS] = "upstream-tls-failed",
	[END_STARTTLS_UPSTREAM] = "upstream-starttls-failed",
	[END_STARTTLS_CLIENT] = "client-starttls-failed",
	[END_CONNECT] = "upstream-connect-failed",
	[END_TIMEOUT] = "timeout",
	[END_REFUSED] = "refused",
	[END_ERROR] = "error",
	[END_UPSTREAM_AUTH] = "upstream-auth-failed",
};

const char *
reason_name(enum close_reason r)
{
	return (unsigned)r < R_COUNT ? reasons[r].name : "-";
}

enum outcome
reason_outcome(enum close_reason r)
{
	return (unsigned)r < R_COUNT ? reasons[r].outcome : END_ERROR;
}

const char *
outcome_name(enum outcome o)
{
	return (unsigned)o < END_NREASONS ? outcome_names[o] : "error";
}

enum tell
reason_tell(enum close_reason r)
{
	return (unsigned)r < R_COUNT ? reasons[r].tell : TELL_NOTHING;
}
