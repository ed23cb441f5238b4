/*
 * reason: one table says, for each close reason, its log name, the outcome
 * /metrics counts and what the client is told.  Names are unique; only
 * clean ends count as "ok"; a failure is never told as another one.
 */
#include <stdlib.h>

#include "reason.h"
#include "unit.h"

static void
test_names_unique_and_set(void)
{
	for (int i = 1; i < R_COUNT; i++) {
		CHECK(reason_name((enum close_reason)i)[0] != '\0');
		CHECK(strcmp(reason_name((enum close_reason)i), "-") != 0);
		for (int j = i + 1; j < R_COUNT; j++)
			CHECK(strcmp(reason_name((enum close_reason)i),
			    reason_name((enum close_reason)j)) != 0);
	}
	CHECK(strcmp(reason_name(R_COUNT), "-") == 0);
	for (int o = 0; o < END_NREASONS; o++)
		CHECK(outcome_name((enum outcome)o)[0] != '\0');
}

/* Once prefix-matched strings: "upstream-closed" during the STARTTLS
 * dialogue counted as a good end, "out-of-memory" told the client there
 * was no secure connection to the server. */
static void
test_classes(void)
{
	static const enum close_reason ok[] = { R_CLIENT_CLOSED,
	    R_UPSTREAM_CLOSED, R_CLIENT_QUIT, R_SHUTDOWN };
	int nok = 0;

	for (int i = 0; i < R_COUNT; i++)
		nok += reason_outcome((enum close_reason)i) == END_OK;
	CHECK(nok == (int)(sizeof(ok) / sizeof(*ok)));
	for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++)
		CHECK(reason_outcome(ok[i]) == END_OK);
	CHECK(reason_outcome(R_UPSTREAM_CLOSED_EARLY) == END_STARTTLS_UPSTREAM);
	CHECK(reason_tell(R_UPSTREAM_CLOSED_EARLY) == TELL_UNREACHABLE);
	CHECK(reason_tell(R_OUT_OF_MEMORY) == TELL_LOCAL);
	CHECK(reason_outcome(R_OUT_OF_MEMORY) == END_ERROR);
	CHECK(reason_outcome(R_UPSTREAM_TRUNCATED) == END_ERROR);
	CHECK(reason_tell(R_UPSTREAM_NO_STARTTLS) == TELL_INSECURE);
	CHECK(reason_tell(R_UPSTREAM_CONNECT_FAILED) == TELL_UNREACHABLE);
	CHECK(reason_tell(R_UPSTREAM_AUTH_REFUSED) == TELL_AUTH);
	CHECK(reason_outcome(R_UPSTREAM_VERIFY_FAILED) == END_UPSTREAM_VERIFY);
	CHECK(reason_outcome(R_CLIENT_HANDSHAKE_TIMEOUT) == END_TIMEOUT);
	CHECK(strcmp(outcome_name(END_OK), "ok") == 0);
	CHECK(strcmp(outcome_name(END_STARTTLS_UPSTREAM),
	    "upstream-starttls-failed") == 0);
	/* Nothing a client does is told as an upstream failure. */
	for (int i = 0; i < R_COUNT; i++)
		if (strncmp(reason_name((enum close_reason)i), "client-", 7) == 0)
			CHECK(reason_tell((enum close_reason)i) == TELL_NOTHING);
}

void
test_reason(void)
{
	test_names_unique_and_set();
	test_classes();
}
