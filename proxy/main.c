/*
 * main: command line, start-up, signals, reload and graceful stop.
 *
 * The running configuration is the one global: a reload builds a complete
 * new snapshot (TLS contexts included) and new listeners before swapping,
 * and keeps the old one on any error.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "probe.h"
#include "session.h"
#include "tls.h"

#define MAILPROXY_VERSION	"0.1.0"

static struct config	*running;	/* the current configuration */
static const char	*config_file = CONFIG_DEFAULT_FILE;
static bool		 draining;
static int		 worker_index;	/* 0 serves metrics */
static bool		 supervised;	/* the supervisor counts good reloads */
static ev_timer		 drain_timer;
static ev_prepare	 drain_check;

/*
 * Privilege drop, in each worker right after binding: supplementary groups,
 * group, then user; and a check that root cannot be regained.
 */
static void
drop_privileges(const struct config *cf)
{
	if (cf->user == NULL) {
		if (geteuid() == 0)
			log_warnx("running as root: set user = NAME to drop "
			    "privileges after binding");
		return;
	}
	if (geteuid() != 0) {
		if (geteuid() != cf->uid)
			log_warnx("user = %s ignored: not started as root",
			    cf->user);
		return;
	}
	if (initgroups(cf->user, cf->gid) < 0 || setgid(cf->gid) < 0 ||
	    setuid(cf->uid) < 0)
		fatal("cannot drop privileges to user %s", cf->user);
	if (setuid(0) == 0)
		fatalx("could regain root after dropping privileges");
	log_info("event=privileges-dropped user=%s uid=%ld gid=%ld", cf->user,
	    (long)cf->uid, (long)cf->gid);
}

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: mailproxy [-c FILE] [-t] [-T] [-V] [-h]\n"
	    "  -c FILE  configuration file (default %s)\n"
	    "  -t       check the configuration and exit\n"
	    "  -T       -t, then dial each upstream (TLS/STARTTLS, certificate,\n"
	    "           AUTH if configured);\n"
	    "           one line per service, exit 1 if any failed\n"
	    "  -V       print version and TLS library, exit\n"
	    "  -h       this help\n", CONFIG_DEFAULT_FILE);
}

static void
apply_logging(const struct config *cf)
{
	log_setup(cf->log_level, cf->log_format);
}

/* Start-up warnings about settings that weaken security. */
static void
warn_insecure(const struct config *cf)
{
	for (size_t i = 0; i < cf->nservices; i++) {
		const struct service *svc = &cf->services[i];
		if (svc->upstream_tls != TLS_MODE_NONE && !svc->upstream_verify)
			log_warnx("svc=%s upstream_verify = no: the upstream "
			    "certificate is NOT checked; the link is encrypted "
			    "but not authenticated", svc->name);
		if (svc->client_tls != TLS_MODE_NONE &&
		    svc->tls_min_version < TLS1_2_VERSION)
			log_warnx("svc=%s tls_min_version below 1.2: legacy TLS "
			    "enabled for old devices", svc->name);
	}
}

/* Logs every "FILE:LINE: message" line of a failed load. */
static void
log_config_errors(const char *what, char *errors)
{
	char *line, *save = NULL;

	for (line = strtok_r(errors, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save))
		log_errorx("%s: %s", what, line);
}

static int run_worker(int index);
static int supervise(void);

static void
reload(EV_P)
{
	struct config *cf;
	char *errors = NULL, err[256];

	log_info("event=reload file=%s", config_file);
	if ((cf = config_load(config_file, &errors)) == NULL) {
		log_config_errors("reload failed, keeping the running "
		    "configuration", errors);
		free(errors);
		metrics_reload(0);
		return;
	}
	if (listeners_apply(EV_A_ cf, err, sizeof(err)) < 0) {
		log_errorx("reload failed, keeping the running configuration: "
		    "%s", err);
		config_unref(cf);
		metrics_reload(0);
		return;
	}
	if (!supervised)
		metrics_reload(1);
	config_unref(running);
	running = cf;
	if (worker_index == 0 && metrics_listen(EV_A_ cf, err, sizeof(err)) < 0)
		log_warnx("reload: %s (the old metrics address stays)", err);
	apply_logging(cf);
	warn_insecure(cf);
	log_info("event=reload-ok services=%zu sessions=%zu", cf->nservices,
	    sess_count());
}

static void
drain_check_cb(EV_P_ ev_prepare *w, int revents)
{
	(void)w;
	(void)revents;
	if (draining && sess_count() == 0)
		ev_break(EV_A_ EVBREAK_ALL);
}

static void
drain_timer_cb(EV_P_ ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	log_info("event=shutdown-timeout sessions=%zu", sess_count());
	sess_close_all(EV_A_ "shutdown");
	ev_break(EV_A_ EVBREAK_ALL);
}

static void
stop(EV_P)
{
	if (draining) {
		/* A second signal: do not wait any longer. */
		sess_close_all(EV_A_ "shutdown");
		ev_break(EV_A_ EVBREAK_ALL);
		return;
	}
	draining = true;
	log_info("event=stopping sessions=%zu grace=%ds", sess_count(),
	    running->shutdown_timeout);
	listeners_close_all(EV_A);
	ev_timer_init(&drain_timer, drain_timer_cb, running->shutdown_timeout,
	    0.);
	ev_timer_start(EV_A_ &drain_timer);
	ev_prepare_init(&drain_check, drain_check_cb);
	ev_prepare_start(EV_A_ &drain_check);
}

static void
signal_cb(EV_P_ ev_signal *w, int revents)
{
	(void)revents;
	if (w->signum == SIGHUP) {
		if (!draining)
			reload(EV_A);
	} else
		stop(EV_A);
}

/* ---- the supervisor (workers > 1) ---------------------------------------- */

struct worker {
	pid_t		 pid;		/* 0: not running */
	time_t		 started;
	time_t		 restart_at;
	int		 backoff;	/* seconds before the next restart */
};

static sigset_t		 parent_mask;

static void
spawn(struct worker *w, int index)
{
	pid_t pid = fork();

	if (pid < 0) {
		log_warn("fork worker %d", index);
		w->restart_at = time(NULL) + 1;
		return;
	}
	if (pid == 0) {
		sigprocmask(SIG_SETMASK, &parent_mask, NULL);
		exit(run_worker(index));
	}
	w->pid = pid;
	w->started = time(NULL);
	log_info("event=worker-start worker=%d pid=%ld", index, (long)pid);
}

static void
signal_workers(struct worker *ws, int n, int sig)
{
	for (int i = 0; i < n; i++)
		if (ws[i].pid > 0)
			kill(ws[i].pid, sig);
}

/* Reaps dead workers; schedules a restart (with back-off) unless stopping. */
static void
reap_workers(struct worker *ws, int n, bool stopping)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (int i = 0; i < n; i++) {
			struct worker *w = &ws[i];
			if (w->pid != pid)
				continue;
			w->pid = 0;
			if (stopping)
				break;
			/* A worker that lived a while restarts at once; one that
			 * keeps dying waits longer each time, up to 30 s. */
			w->backoff = time(NULL) - w->started >= 10 ? 0 :
			    w->backoff == 0 ? 1 : w->backoff * 2 > 30 ? 30 :
			    w->backoff * 2;
			w->restart_at = time(NULL) + w->backoff;
			log_warnx("event=worker-died worker=%d pid=%ld status=%d "
			    "restart_in=%ds", i, (long)pid, status, w->backoff);
			metrics_worker_died();
			break;
		}
	}
}

/*
 * The parent of several workers: it serves nothing itself, stays root so a
 * restarted worker can bind privileged ports, restarts workers that die,
 * checks the file before forwarding SIGHUP (so all workers see the same
 * outcome), forwards SIGTERM/SIGINT and exits once every worker has.
 */
static int
supervise(void)
{
	int n = running->workers, alive, sig;
	struct worker *ws = calloc((size_t)n, sizeof(*ws));
	bool stopping = false;
	struct timespec tick = { 0, 200 * 1000 * 1000 };
	sigset_t set;

	if (ws == NULL)
		fatalx("out of memory");
	supervised = true;
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, &parent_mask);
	log_info("event=supervisor-start pid=%ld workers=%d", (long)getpid(), n);
	for (int i = 0; i < n; i++)
		spawn(&ws[i], i);
	for (;;) {
		sig = sigtimedwait(&set, NULL, &tick);
		if (sig == SIGHUP && !stopping) {
			char *errors = NULL;
			struct config *cf = config_load(config_file, &errors);
			if (cf == NULL) {
				log_config_errors("reload failed, keeping the "
				    "running configuration", errors);
				free(errors);
				metrics_reload(0);
			} else {
				metrics_reload(1);
				if (cf->workers != n)
					log_warnx("workers = %d takes effect at "
					    "the next start", cf->workers);
				/* Kept: a worker restarted later starts on
				 * what its siblings reload now. */
				config_unref(running);
				running = cf;
				signal_workers(ws, n, SIGHUP);
			}
		} else if (sig == SIGTERM || sig == SIGINT) {
			/* A second signal makes the workers stop at once. */
			stopping = true;
			signal_workers(ws, n, SIGTERM);
		}
		reap_workers(ws, n, stopping);
		alive = 0;
		for (int i = 0; i < n; i++) {
			if (ws[i].pid == 0 && !stopping &&
			    time(NULL) >= ws[i].restart_at)
				spawn(&ws[i], i);
			alive += ws[i].pid > 0;
		}
		if (stopping && alive == 0)
			break;
	}
	log_info("event=stopped");
	free(ws);
	config_unref(running);
	return 0;
}

int
main(int argc, char *argv[])
{
	char *errors = NULL;
	bool check_only = false, dial = false;
	int ch;

	while ((ch = getopt(argc, argv, "c:tTVh")) != -1) {
		switch (ch) {
		case 'c':
			config_file = optarg;
			break;
		case 't':
			check_only = true;
			break;
		case 'T':
			check_only = dial = true;
			break;
		case 'V':
			printf("mailproxy %s (TLS library: %s)\n",
			    MAILPROXY_VERSION, tls_library());
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 1;
	}

	signal(SIGPIPE, SIG_IGN);
	if ((running = config_load(config_file, &errors)) == NULL) {
		fputs(errors != NULL ? errors : "cannot load configuration\n",
		    stderr);
		free(errors);
		return 1;
	}
	if (check_only) {
		int failed = 0;
		printf("configuration OK\n");
		for (size_t i = 0; dial && i < running->nservices; i++) {
			char result[1536];
			int rc = probe_service(&running->services[i], result,
			    sizeof(result));
			printf("%s: %s%s\n", running->services[i].name,
			    rc == 0 ? "" : "FAILED ", result);
			failed += rc != 0;
		}
		config_unref(running);
		return failed ? 1 : 0;
	}
	apply_logging(running);
	warn_insecure(running);

	if (metrics_init(running->workers) < 0)
		fatal("metrics: shared memory");
	if (running->workers > 1)
		return supervise();
	return run_worker(0);
}

/* One worker: its own listeners (SO_REUSEPORT when there are several), its
 * own libev loop; it reloads and drains on the signals the parent forwards. */
static int
run_worker(int index)
{
	struct ev_loop *loop;
	ev_signal sig_hup, sig_term, sig_int;
	char err[256];

	worker_index = index;
	sess_set_id_base((uint64_t)index << 40);
	metrics_set_worker(index);
	listeners_set_reuseport(running->workers > 1);
	if ((loop = ev_default_loop(EVFLAG_AUTO)) == NULL)
		fatalx("cannot initialise libev");
	if (listeners_apply(loop, running, err, sizeof(err)) < 0)
		fatalx("%s", err);
	if (index == 0 && metrics_listen(loop, running, err, sizeof(err)) < 0)
		fatalx("%s", err);
	drop_privileges(running);
	ev_signal_init(&sig_hup, signal_cb, SIGHUP);
	ev_signal_init(&sig_term, signal_cb, SIGTERM);
	ev_signal_init(&sig_int, signal_cb, SIGINT);
	ev_signal_start(loop, &sig_hup);
	ev_signal_start(loop, &sig_term);
	ev_signal_start(loop, &sig_int);
	log_info("event=start version=%s tls=\"%s\" pid=%ld worker=%d config=%s",
	    MAILPROXY_VERSION, tls_library(), (long)getpid(), index, config_file);

	ev_run(loop, 0);

	log_info("event=stopped");
	config_unref(running);
	ev_loop_destroy(loop);
	return 0;
}
