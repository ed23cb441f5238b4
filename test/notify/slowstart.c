/*
 * A test library preloaded into the proxy (test_systemd_notify.py): each
 * worker's event loop is created SLOWSTART_MS milliseconds late, so a worker
 * accepts that long after it was forked.  Only workers call
 * ev_default_loop(); the supervisor makes its own loop with ev_loop_new().
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

#include <ev.h>

struct ev_loop *
ev_default_loop(unsigned int flags)
{
	struct ev_loop *(*real)(unsigned int) =
	    (struct ev_loop *(*)(unsigned int))dlsym(RTLD_NEXT,
	    "ev_default_loop");
	const char *ms = getenv("SLOWSTART_MS");
	long n = ms != NULL ? atol(ms) : 0;
	struct timespec ts = { n / 1000, (n % 1000) * 1000000L };

	if (n > 0)
		nanosleep(&ts, NULL);
	return real(flags);
}
