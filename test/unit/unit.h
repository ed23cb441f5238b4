/*
 * A minimal unit-test harness: CHECK records a failure and goes on, the
 * runner prints "N passed, N failed" and exits non-zero on any failure.
 */
#ifndef MAILPROXY_UNIT_H
#define MAILPROXY_UNIT_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

extern int unit_passed, unit_failed;

struct ev_loop;

/*
 * Runs loop until done(arg) is true or secs pass (done NULL: the whole
 * secs), so that no test waits on its peers for ever.
 */
void unit_run_until(struct ev_loop *loop, bool (*done)(const void *),
    const void *arg, double secs);

#define CHECK(cond) do {						\
	if (cond)							\
		unit_passed++;						\
	else {								\
		unit_failed++;						\
		fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__,	\
		    #cond);						\
	}								\
} while (0)

#define CHECK_STR_CONTAINS(hay, needle) do {				\
	const char *h_ = (hay), *n_ = (needle);				\
	if (h_ != NULL && strstr(h_, n_) != NULL)			\
		unit_passed++;						\
	else {								\
		unit_failed++;						\
		fprintf(stderr, "FAIL %s:%d: \"%s\" not in \"%s\"\n",	\
		    __FILE__, __LINE__, n_, h_ ? h_ : "(null)");	\
	}								\
} while (0)

void test_buffer(void);
void test_config(void);
void test_endpoint(void);
void test_log(void);
void test_negotiate(void);
void test_cneg(void);
void test_front(void);
void test_login(void);
void test_blocks(void);
void test_guard(void);
void test_cidr(void);
void test_proxyproto(void);
void test_reason(void);
void test_resolve(void);
void test_oauth2(void);
void test_jwt(void);
void test_https(void);
void test_secret(void);
void test_shared(void);
void test_reload(void);

#endif
