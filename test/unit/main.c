/* Unit test runner: every suite, then the totals line. */
#include <signal.h>

#include <ev.h>

#include "unit.h"

int unit_passed, unit_failed;

static void
deadline_cb(EV_P_ ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(EV_A_ EVBREAK_ALL);
}

void
unit_run_until(struct ev_loop *loop, bool (*done)(const void *),
    const void *arg, double secs)
{
	ev_timer deadline;

	ev_timer_init(&deadline, deadline_cb, secs, 0.);
	ev_timer_start(loop, &deadline);
	while ((done == NULL || !done(arg)) && ev_is_active(&deadline))
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &deadline);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	test_buffer();
	test_config();
	test_endpoint();
	test_log();
	test_negotiate();
	test_cneg();
	test_front();
	test_login();
	test_blocks();
	test_guard();
	test_cidr();
	test_proxyproto();
	test_reason();
	test_resolve();
	test_oauth2();
	test_jwt();
	test_https();
	test_secret();
	test_shared();
	test_reload();
	printf("%d passed, %d failed\n", unit_passed, unit_failed);
	return unit_failed == 0 ? 0 : 1;
}
