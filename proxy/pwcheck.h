/*
 * pwcheck: password checks (crypt(3), milliseconds each: yescrypt tens of
 * them) on two threads of the worker, so that the event loop never waits
 * for one: a job is queued, a thread computes it, and the result comes
 * back to the loop through an ev_async, where the job's callback runs.
 */
#ifndef MAILPROXY_PWCHECK_H
#define MAILPROXY_PWCHECK_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

struct pwcheck;

/* Runs on the loop with the result, unless the job was cancelled. */
typedef void (*pwcheck_cb)(EV_P_ void *arg, bool ok);

/* Checks waiting for a thread, at most (per worker): a flood of logins
 * gets temporary failures instead of an ever longer queue. */
#define PWCHECK_QUEUE_MAX	64

/*
 * Checks password (len bytes, copied and wiped after) against hash; with
 * dummy, hash is checked all the same and the answer is false (an unknown
 * name costs what a known one does).  NULL when out of memory, no thread
 * could be started, or (errno EBUSY) PWCHECK_QUEUE_MAX checks wait.
 */
struct pwcheck *pwcheck_start(EV_P_ const char *hash, const char *password,
	    size_t len, bool dummy, pwcheck_cb cb, void *arg);

/* The caller is going away: its callback will not run, and the check is
 * not computed if no thread has taken it yet (the caller counts the
 * attempt as a failed one: leaving must not be a free guess). */
void	pwcheck_cancel(struct pwcheck *job);

#endif
