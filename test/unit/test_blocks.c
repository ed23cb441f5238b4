/*
 * blocks: the shared table of failed logins, on a clock the test moves:
 * attempts counted when their check starts, blocks at every level, the
 * table full of blocks, the cap on uncounted checks.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "blocks.h"
#include "unit.h"

static int64_t	fake_now = 1000000;

static int64_t
fake_clock(void)
{
	return fake_now;
}

static struct sockaddr_any
v4(uint32_t a)
{
	struct sockaddr_any s = { .len = sizeof(struct sockaddr_in) };

	s.ss.ss_family = AF_INET;
	((struct sockaddr_in *)&s.ss)->sin_addr.s_addr = htonl(a);
	return s;
}

/* 2001:db8:HHHH:NNNN::LOW — a /48 picked by h, a /64 in it by n. */
static struct sockaddr_any
v6(uint16_t h, uint16_t n, uint8_t low)
{
	struct sockaddr_any s = { .len = sizeof(struct sockaddr_in6) };
	uint8_t *x = ((struct sockaddr_in6 *)&s.ss)->sin6_addr.s6_addr;

	s.ss.ss_family = AF_INET6;
	x[0] = 0x20, x[1] = 0x01, x[2] = 0x0d, x[3] = 0xb8;
	x[4] = (uint8_t)(h >> 8), x[5] = (uint8_t)h;
	x[6] = (uint8_t)(n >> 8), x[7] = (uint8_t)n;
	x[15] = low;
	return s;
}

/* One whole failed attempt; the verdict of its end (or of its begin, if
 * it could not begin). */
static enum blocks_verdict
fail_once(const struct sockaddr_any *a, int max)
{
	struct blocks_attempt at;
	bool widened;
	enum blocks_verdict v = blocks_begin(a, max, 60, &at, &widened);

	if (v != BLOCKS_GO)
		return v;
	return blocks_end(&at, a, true, max, 60);
}

static void
test_counts_and_expiry(void)
{
	struct sockaddr_any a = v4(0xc0000201), b = v4(0xc0000202);
	struct sockaddr_any m = { .len = sizeof(struct sockaddr_in6) };
	uint8_t *x = ((struct sockaddr_in6 *)&m.ss)->sin6_addr.s6_addr;

	blocks_reset();
	CHECK(fail_once(&a, 3) == BLOCKS_GO);
	CHECK(fail_once(&a, 3) == BLOCKS_GO);
	CHECK(!blocks_blocked(&a, 3, 60));
	CHECK(fail_once(&a, 3) == BLOCKS_BLOCKED);
	CHECK(blocks_blocked(&a, 3, 60));
	CHECK(!blocks_blocked(&b, 3, 60));		/* another address */
	/* An IPv4 address written v4-mapped is that address. */
	m.ss.ss_family = AF_INET6;
	x[10] = x[11] = 0xff;
	x[12] = 192, x[13] = 0, x[14] = 2, x[15] = 1;
	CHECK(blocks_blocked(&m, 3, 60));
	/* IPv6: one /64 is one client, whichever addresses it takes. */
	for (uint8_t i = 1; i <= 3; i++) {
		struct sockaddr_any c = v6(1, 1, i);
		(void)fail_once(&c, 3);
	}
	{
		struct sockaddr_any same = v6(1, 1, 99), next = v6(1, 2, 1);
		CHECK(blocks_blocked(&same, 3, 60));
		CHECK(!blocks_blocked(&next, 3, 60));
	}
	/* The block lasts the window after the last failure. */
	fake_now += 59 * 1000;
	CHECK(blocks_blocked(&a, 3, 60));
	fake_now += 2 * 1000;
	CHECK(!blocks_blocked(&a, 3, 60));
}

/*
 * Issue: the block was consulted at accept only.  Six sessions open, the
 * address fails on others: no check starts once max are failed or under
 * way, and a success that ends after the block is refused.
 */
static void
test_attempts_count_when_they_start(void)
{
	struct sockaddr_any a = v4(0x0a000001);
	struct blocks_attempt at[6];
	bool widened;
	int go = 0;

	blocks_reset();
	for (int i = 0; i < 6; i++)
		go += blocks_begin(&a, 3, 60, &at[i], &widened) == BLOCKS_GO;
	CHECK(go == 3);			/* three under way, three refused */
	CHECK(!at[3].open && !at[4].open && !at[5].open);
	CHECK(!blocks_blocked(&a, 3, 60));	/* nothing failed yet */
	/* A success gives its place back... */
	CHECK(blocks_end(&at[0], &a, false, 3, 60) == BLOCKS_GO);
	CHECK(blocks_begin(&a, 3, 60, &at[0], &widened) == BLOCKS_GO);
	/* ...failures keep theirs. */
	CHECK(blocks_end(&at[1], &a, true, 3, 60) == BLOCKS_GO);
	CHECK(blocks_end(&at[2], &a, true, 3, 60) == BLOCKS_GO);
	CHECK(blocks_begin(&a, 3, 60, &at[3], &widened) == BLOCKS_BLOCKED);
	CHECK(blocks_end(&at[0], &a, true, 3, 60) == BLOCKS_BLOCKED);
	CHECK(blocks_blocked(&a, 3, 60));
	/* Ending a closed attempt again changes nothing. */
	CHECK(blocks_end(&at[0], &a, true, 3, 60) == BLOCKS_GO);
	{
		struct blocks_stats st;
		blocks_stats(&st);
		CHECK(st.counted[0] == 3 && st.blocking[0] == 1);
	}
}

/*
 * Issue: 4,096 /64s (one /52) at max failures each filled the table, and
 * every address guessed freely after.  10,000 /64s of one /48, then of
 * many /48s: each address gets at most max checks, the /48 is blocked
 * once the first level is full, and uncounted checks are capped.
 */
static void
test_full_table_counts_wider(void)
{
	struct blocks_stats st;
	long go = 0;
	int max = 2;

	blocks_reset();
	for (uint16_t n = 0; n < 10000; n++) {
		struct sockaddr_any c = v6(7, n, 1);
		for (int k = 0; k < max + 3; k++)
			go += fail_once(&c, max) == BLOCKS_GO;
	}
	blocks_stats(&st);
	CHECK(st.blocking[0] > 3000);		/* the first level filled */
	CHECK(st.counted[1] > 0);		/* then the /48 counted */
	CHECK(st.blocking[1] == 1);
	/* Nobody got more than max checks; the /64s after the first level
	 * filled got at most max between them (the /48's). */
	CHECK(go <= (long)st.blocking[0] * max + max);
	{
		struct sockaddr_any fresh = v6(7, 60000, 1), other = v6(8, 1, 1);
		struct blocks_attempt at;
		bool widened;
		CHECK(blocks_blocked(&fresh, max, 60));
		CHECK(blocks_begin(&fresh, max, 60, &at, &widened) ==
		    BLOCKS_BLOCKED);
		/* Another /48 is not the attacker's. */
		CHECK(!blocks_blocked(&other, max, 60));
	}
	/* Many /48s: the second level fills, then the /32 counts. */
	for (uint16_t h = 100; h < 3100; h++)
		for (uint16_t n = 0; n < 3; n++) {
			struct sockaddr_any c = v6(h, n, 1);
			for (int k = 0; k < max; k++)
				(void)fail_once(&c, max);
		}
	blocks_stats(&st);
	CHECK(st.counted[2] > 0);
	{
		struct sockaddr_any fresh = v6(40000, 1, 1);	/* same /32 */
		CHECK(blocks_blocked(&fresh, max, 60));
	}
}

/*
 * An attacker who cycles through more /64s than the first level holds,
 * each one failure under the limit: the entries that give way hand their
 * failures to the /48, which is blocked; another /48 is not.
 */
static void
test_cycling_under_the_limit_is_counted_by_network(void)
{
	struct blocks_stats st;
	int max = 3;

	blocks_reset();
	for (uint16_t n = 0; n < 12000; n++) {
		struct sockaddr_any c = v6(9, n, 1);
		for (int k = 0; k < max - 1; k++)
			(void)fail_once(&c, max);
	}
	blocks_stats(&st);
	CHECK(st.blocking[0] == 0);		/* nobody alone reached max */
	CHECK(st.blocking[1] == 1);		/* their /48 did */
	{
		struct sockaddr_any fresh = v6(9, 65000, 1), other = v6(10, 1, 1);
		CHECK(blocks_blocked(&fresh, max, 60));
		CHECK(!blocks_blocked(&other, max, 60));
	}
}

/* Every level full: uncounted checks at most BLOCKS_UNCOUNTED_PER_SECOND
 * a second for the instance, then BUSY. */
static void
test_uncounted_checks_are_capped(void)
{
	struct blocks_stats st;
	int go = 0, busy = 0;
	uint32_t a = 0x01000000;
	int max = 1;

	blocks_reset();
	/* IPv4 /16s, one address each, until no level can count. */
	for (int i = 0; i < 40000 && busy == 0; i++, a += 0x10000) {
		struct sockaddr_any c = v4(a);
		enum blocks_verdict v = fail_once(&c, max);
		busy += v == BLOCKS_BUSY;
	}
	blocks_stats(&st);
	CHECK(busy == 1 && st.uncounted > 0 && st.capped == 1);
	fake_now += 1000;		/* a new second */
	busy = 0;
	for (int i = 0; i < 40000 && busy == 0; i++, a += 0x10000) {
		struct sockaddr_any c = v4(a);
		struct blocks_attempt at;
		bool widened;
		enum blocks_verdict v = blocks_begin(&c, max, 60, &at, &widened);
		if (v == BLOCKS_GO && blocks_prefix(&at) == -1) {
			go++;
			CHECK(widened);
		}
		busy += v == BLOCKS_BUSY;
		(void)blocks_end(&at, &c, true, max, 60);
	}
	CHECK(busy == 1);
	CHECK(go == BLOCKS_UNCOUNTED_PER_SECOND);
}

void
test_blocks(void)
{
	CHECK(blocks_init() == 0);
	blocks_set_clock(fake_clock);
	test_counts_and_expiry();
	test_attempts_count_when_they_start();
	test_full_table_counts_wider();
	test_cycling_under_the_limit_is_counted_by_network();
	test_uncounted_checks_are_capped();
	blocks_set_clock(NULL);
	blocks_reset();
}
