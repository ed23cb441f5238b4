/*
 * notify: systemd's readiness protocol through libsystemd (sd_notify), for
 * the supervisor; see notify.h for the reload handshake with ExecReload=.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "metrics.h"
#include "notify.h"

/* The reload state file in $RUNTIME_DIRECTORY: "STARTED DONE RESULT". */
#define NOTIFY_STATE_FILE	"reload.state"
/* Status refreshes (sessions) at least this often, watchdog or not. */
#define NOTIFY_STATUS_EVERY	5.0
/* -R gives up after this long (systemd's reload timeout is shorter). */
#define NOTIFY_WAIT_MAX_MS	(300 * 1000)

static pid_t		 supervisor;	/* 0: no NOTIFY_SOCKET, do nothing */
static bool		 ready;
static ev_timer		 ping;
static unsigned long	 started, done;	/* reloads */
static char		 last[320];	/* the last reload, for STATUS= */
static char		 sent[400];	/* the STATUS= last sent */

static bool
enabled(void)
{
	/* A worker inherits the environment and this module's state, but it
	 * is not the main PID: systemd would drop what it sends. */
	return supervisor != 0 && getpid() == supervisor;
}

/* $RUNTIME_DIRECTORY's first entry (systemd sets it for RuntimeDirectory=). */
static bool
state_path(char *path, size_t len)
{
	const char *dir = getenv("RUNTIME_DIRECTORY");
	size_t n;

	if (dir == NULL || *dir == '\0')
		return false;
	n = strcspn(dir, ":");
	return snprintf(path, len, "%.*s/%s", (int)n, dir, NOTIFY_STATE_FILE) <
	    (int)len;
}

/* Atomically, so that -R never reads half a line. */
static void
state_write(const char *result)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	FILE *fp;

	if (!state_path(path, sizeof(path)))
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((fp = fopen(tmp, "w")) == NULL) {
		log_warn("notify: %s", tmp);
		return;
	}
	fprintf(fp, "%lu %lu %s\n", started, done, result);
	if (fclose(fp) != 0 || rename(tmp, path) < 0)
		log_warn("notify: %s", path);
}

static void
send_status(void)
{
	char status[sizeof(sent)];

	snprintf(status, sizeof(status), "sessions: %" PRIu64 "; %s",
	    metrics_sessions_open(), last);
	if (strcmp(status, sent) == 0)
		return;
	snprintf(sent, sizeof(sent), "%s", status);
	sd_notifyf(0, "STATUS=%s", status);
}

static void
ping_cb(EV_P_ ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	/* From the supervisor's own loop: a supervisor stuck in a blocking
	 * call misses its pings and systemd restarts it. */
	if (w->data != NULL)
		sd_notify(0, "WATCHDOG=1");
	send_status();
}

void
notify_init(struct ev_loop *loop)
{
	const char *socket = getenv("NOTIFY_SOCKET");
	uint64_t usec = 0;
	double every = NOTIFY_STATUS_EVERY;
	int wd;

	if (socket == NULL || *socket == '\0')
		return;
	supervisor = getpid();
	snprintf(last, sizeof(last), "no reload since the start");
	/* Checks WATCHDOG_PID against this process too. */
	if ((wd = sd_watchdog_enabled(0, &usec)) > 0 && usec > 0 &&
	    usec / 2e6 < every)
		every = usec / 2e6;
	ev_timer_init(&ping, ping_cb, every, every);
	ping.data = wd > 0 ? &ping : NULL;
	ev_timer_start(loop, &ping);
	state_write("ok");
	if (wd > 0)
		log_info("event=watchdog interval_ms=%.0f", every * 1e3);
}

void
notify_ready(void)
{
	if (!enabled() || ready)
		return;
	ready = true;
	send_status();
	sd_notify(0, "READY=1");
}

void
notify_reload_start(void)
{
	struct timespec ts;

	if (!enabled())
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	started++;
	state_write("reloading");
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\n"
	    "STATUS=reloading the configuration",
	    (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000);
	sent[0] = '\0';
}

void
notify_reload_done(const char *failure)
{
	char when[32], result[sizeof(last)];
	time_t now = time(NULL);
	struct tm tm;

	if (!enabled())
		return;
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ",
	    gmtime_r(&now, &tm));
	if (failure == NULL) {
		snprintf(last, sizeof(last), "last reload %s: ok", when);
		snprintf(result, sizeof(result), "ok");
	} else {
		/* The first line: STATUS= and the file hold one. */
		int n = (int)strcspn(failure, "\n");
		snprintf(last, sizeof(last), "last reload %s: FAILED, the "
		    "previous configuration still runs: %.*s", when, n,
		    failure);
		snprintf(result, sizeof(result), "failed %.*s", n, failure);
	}
	done = started;
	state_write(result);
	/* Readiness as the status says it: systemd's "reloading" ends. */
	send_status();
	ready = true;
	sd_notify(0, "READY=1");
}

void
notify_stopping(void)
{
	if (!enabled())
		return;
	sd_notify(0, "STOPPING=1\nSTATUS=stopping: draining sessions");
}

/* Reads "STARTED DONE RESULT"; false when the file is not there. */
static bool
state_read(const char *path, unsigned long *s, unsigned long *d, char *result,
    size_t len)
{
	char line[512];
	FILE *fp;
	int off = 0;

	if ((fp = fopen(path, "r")) == NULL)
		return false;
	if (fgets(line, sizeof(line), fp) == NULL ||
	    sscanf(line, "%lu %lu %n", s, d, &off) != 2 || off == 0) {
		fclose(fp);
		*s = *d = 0;
		snprintf(result, len, "reloading");
		return true;
	}
	fclose(fp);
	line[strcspn(line, "\n")] = '\0';
	snprintf(result, len, "%s", line + off);
	return true;
}

int
notify_reload_wait(const char *arg)
{
	struct timespec tick = { 0, 20 * 1000 * 1000 };
	char path[PATH_MAX], result[512], *end;
	unsigned long s0, d0, s, d;
	long pid;

	errno = 0;
	pid = strtol(arg, &end, 10);
	if (errno != 0 || *end != '\0' || pid <= 1) {
		fprintf(stderr, "mailproxy: -R %s: a process ID expected\n",
		    arg);
		return 1;
	}
	if (!state_path(path, sizeof(path))) {
		fprintf(stderr, "mailproxy: -R: RUNTIME_DIRECTORY is not set "
		    "(systemd sets it for the unit's RuntimeDirectory=)\n");
		return 1;
	}
	if (!state_read(path, &s0, &d0, result, sizeof(result))) {
		fprintf(stderr, "mailproxy: -R: no %s: was process %ld "
		    "started by systemd (Type=notify, RuntimeDirectory=)?\n",
		    path, pid);
		return 1;
	}
	if (kill((pid_t)pid, SIGHUP) < 0) {
		fprintf(stderr, "mailproxy: -R: SIGHUP to %ld: %s\n", pid,
		    strerror(errno));
		return 1;
	}
	/* Reloads run one after the other: the one numbered s0 + 1 started
	 * after the file was read, so it read the configuration as it is
	 * now (a reload under way then may have read the older one). */
	for (int ms = 0; ms < NOTIFY_WAIT_MAX_MS; ms += 20) {
		nanosleep(&tick, NULL);
		if (!state_read(path, &s, &d, result, sizeof(result)) ||
		    kill((pid_t)pid, 0) < 0) {
			fprintf(stderr, "mailproxy: -R: process %ld stopped "
			    "during the reload\n", pid);
			return 1;
		}
		if (d < s0 + 1)
			continue;
		if (strcmp(result, "ok") == 0)
			return 0;
		fprintf(stderr, "mailproxy: reload %s\n", result);
		return 1;
	}
	fprintf(stderr, "mailproxy: -R: no reload finished within %d s\n",
	    NOTIFY_WAIT_MAX_MS / 1000);
	return 1;
}
