/*
 * What a reload costs the supervisor, whose loop also refreshes OAuth2
 * tokens: a password_hash already checked (by an earlier load of the same
 * file) is not computed again.
 */
#include <stdio.h>
#include <time.h>

#include "accounts.h"
#include "unit.h"

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
test_hash_check_remembered(void)
{
	char hash[256], other[256], why[200];
	double t0, first, again, fresh;

	/* An incomplete one (no digest) is refused. */
	CHECK(account_hash_check("$6$rounds=300000$K3k9cEuhNjFGdAhY$", why,
	    sizeof(why)) < 0);
	/* Two made now (yescrypt, tens of milliseconds a check), with salts
	 * no other test uses. */
	CHECK(account_make_hash("pw", hash, sizeof(hash)) == 0);
	CHECK(account_make_hash("pw", other, sizeof(other)) == 0);
	t0 = now();
	CHECK(account_hash_check(hash, why, sizeof(why)) == 0);
	first = now() - t0;
	t0 = now();
	CHECK(account_hash_check(hash, why, sizeof(why)) == 0);
	again = now() - t0;
	t0 = now();
	CHECK(account_hash_check(other, why, sizeof(why)) == 0);
	fresh = now() - t0;
	/* The second check of one hash is remembered: far cheaper than the
	 * first, and than the first check of another of the same cost. */
	CHECK(again * 5 < first && again * 5 < fresh);
	/* A bad one is never remembered as good. */
	other[10] = '!';
	CHECK(account_hash_check(other, why, sizeof(why)) < 0);
}

void
test_reload(void)
{
	test_hash_check_remembered();
}
