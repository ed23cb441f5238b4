/* Unit test runner: every suite, then the totals line. */
#include <signal.h>

#include "unit.h"

int unit_passed, unit_failed;

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
	test_guard();
	test_cidr();
	test_proxyproto();
	test_reason();
	test_resolve();
	printf("%d passed, %d failed\n", unit_passed, unit_failed);
	return unit_failed == 0 ? 0 : 1;
}
