/*
 * main: command line, start-up, signals, reload and graceful stop.
 *
 * The running configuration is the one global: a reload builds a complete
 * new snapshot (TLS contexts included) and new listeners before swapping,
 * and keeps the old one on any error.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <sys/wait.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/mem.h>

#include "accounts.h"
#include "blocks.h"
#include "clients.h"
#include "config.h"
#include "dns.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "oauth2.h"
#include "oauth2_device.h"
#include "probe.h"
#include "session.h"
#include "sesscache.h"
#include "tickets.h"
#include "tls.h"
#include "tokenstore.h"
#include "watch.h"
#include "worker.h"

#define MAILPROXY_VERSION	"0.1.0"	/* make deb reads it here too */
/* Exit status of a start on a file without services (EX_CONFIG): the unit
 * does not restart on it (RestartPreventExitStatus=). */
#define EXIT_NO_SERVICE		78

static const char no_service[] = "no service is configured: mailproxy "
    "would listen nowhere; uncomment or add a [service] section";

static struct config	*running;	/* the current configuration */
static const char	*config_file = CONFIG_DEFAULT_FILE;

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: mailproxy [-c FILE] [-t] [-T] [-A SERVICE[:ACCOUNT]] [-H] [-R PID]\n"
	    "                 [-V] [-h]\n"
	    "  -c FILE  configuration file (default %s)\n"
	    "  -t       check the configuration and exit\n"
	    "  -T       -t, then dial each upstream (TLS/STARTTLS, certificate,\n"
	    "           AUTH if configured);\n"
	    "           one line per service, exit 1 if any failed\n"
	    "  -A SERVICE[:ACCOUNT]  authorize: the OAuth2 device or code grant\n"
	    "           for the oauth2_token_store of SERVICE (or of that\n"
	    "           account): prints where to sign in, waits for it, writes\n"
	    "           the store\n"
	    "  -H       read a password on stdin, print a password_hash line\n"
	    "           for an [account:NAME] section\n"
	    "  -R PID   reload the supervisor PID (SIGHUP) and wait until it\n"
	    "           is done; exit 1 with the reason if it failed (the\n"
	    "           systemd unit's ExecReload)\n"
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
		if (svc->upstream_tls != TLS_MODE_NONE && !svc->upstream_verify &&
		    svc->nupstream_pins > 0)
			log_info("svc=%s upstream_verify = no with upstream_pin: "
			    "the upstream's chain and name are not checked, only "
			    "its key (%zu pins)", svc->name, svc->nupstream_pins);
		else if (svc->upstream_tls != TLS_MODE_NONE && !svc->upstream_verify)
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


/*
 * mailproxy -H: one password line from stdin (not echoed when it is a
 * terminal), printed as an account's password_hash line (yescrypt).
 */
static int
make_hash(void)
{
	char pw[1024], hash[512];
	struct termios old, quiet;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
	size_t len;
	int rc = 1;

	/* Unbuffered: the password is read into pw only, not also into
	 * stdio's buffer, which nothing would wipe. */
	setvbuf(stdin, NULL, _IONBF, 0);
	if (tty) {
		fprintf(stderr, "Password: ");
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	if (fgets(pw, sizeof(pw), stdin) == NULL)
		pw[0] = '\0';
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fprintf(stderr, "\n");
	}
	len = strcspn(pw, "\r\n");
	if (len == 0 || len == sizeof(pw) - 1)
		fprintf(stderr, "mailproxy: a password of 1 to %zu bytes "
		    "expected on stdin\n", sizeof(pw) - 2);
	else {
		pw[len] = '\0';
		if (account_make_hash(pw, hash, sizeof(hash)) < 0)
			fprintf(stderr, "mailproxy: crypt failed\n");
		else {
			printf("password_hash = %s\n", hash);
			rc = 0;
		}
	}
	OPENSSL_cleanse(pw, sizeof(pw));
	return rc;
}

/* ---- the supervisor -------------------------------------------------------- */

/*
 * The supervisor serves nothing itself.  It loads the configuration (at
 * start and on SIGHUP), binds every socket, and forks the workers, which
 * inherit the snapshot and their sockets: every worker runs exactly the
 * snapshot the supervisor loaded, a restarted one too, and no worker's
 * event loop ever stalls on a load.  A reload forks a new generation of
 * workers on the new snapshot and tells the old one to stop accepting and
 * finish its sessions (nginx's way); sockets of unchanged addresses are
 * the same sockets, so no connection is lost in between.
 */
struct proc {
	pid_t		 pid;		/* 0: the slot is free */
	int		 index;		/* worker index in its generation */
	bool		 draining;	/* an old generation's */
	time_t		 started;
};

struct worker {
	int		 slot;		/* its process, -1 while down */
	time_t		 restart_at;
	int		 backoff;	/* seconds before the next restart */
};

static sigset_t		 parent_mask;
static pid_t		 supervisor_pid;
static struct sockset	*bound;		/* the current configuration's */
static struct watch	*watcher;	/* watch_files = yes */
/* The supervisor's own loop: signals (a signalfd), the tick, c-ares for
 * dns_refresh, the OAuth2 refreshes. */
static struct ev_loop	*suploop;
static int		 sigfd = -1;
static struct proc	*procs;		/* [nslots] */
static int		 nslots;

/* Slots for processes: the current generation and those still draining. */
#define SLOTS_PER_WORKER	4

static void
spawn(struct worker *w, int index)
{
	int slot = -1;
	pid_t pid;

	/* A slot whose per-client table holds this generation's
	 * max_connections; a dead worker's own always does. */
	for (int i = 0; i < nslots && slot < 0; i++)
		if (procs[i].pid == 0 &&
		    clients_slot_fits(i, running->max_connections))
			slot = i;
	for (int i = 0; i < nslots && slot < 0; i++)
		if (procs[i].pid == 0)
			slot = i;
	if (slot < 0) {
		log_warnx("event=worker-start-delayed worker=%d: every slot is "
		    "held by a draining worker", index);
		w->restart_at = time(NULL) + 1;
		return;
	}
	if ((pid = fork()) < 0) {
		log_warn("fork worker %d", index);
		w->restart_at = time(NULL) + 1;
		return;
	}
	if (pid == 0) {
		/* Signals stay blocked until run_worker has its watchers: a
		 * SIGHUP or SIGTERM meanwhile waits instead of killing it. */
		sockset_keep_only(bound, index);
		watch_free(watcher);	/* the supervisor's */
		watcher = NULL;
		close(sigfd);
		oauth2_forget();
		exit(worker_run(&(struct worker_start){ running, bound, index,
		    slot, &parent_mask, supervisor_pid, config_file,
		    MAILPROXY_VERSION }));
	}
	procs[slot] = (struct proc){ pid, index, false, time(NULL) };
	w->slot = slot;
	log_info("event=worker-start worker=%d pid=%ld", index, (long)pid);
}

static int
free_slots(void)
{
	int n = 0;

	for (int i = 0; i < nslots; i++)
		n += procs[i].pid == 0;
	return n;
}

static void
signal_procs(int sig, bool draining_only)
{
	for (int i = 0; i < nslots; i++)
		if (procs[i].pid > 0 && (!draining_only || procs[i].draining))
			kill(procs[i].pid, sig);
}

/* Reaps dead workers; schedules a restart (with back-off) unless stopping. */
static void
reap_workers(struct worker *ws, bool stopping)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (int i = 0; i < nslots; i++) {
			struct proc *p = &procs[i];
			struct worker *w;
			if (p->pid != pid)
				continue;
			metrics_retire_slot(i);
			clients_clear_slot(i);
			p->pid = 0;
			if (p->draining) {
				log_info("event=worker-drained pid=%ld", (long)pid);
				break;
			}
			w = &ws[p->index];
			w->slot = -1;
			if (stopping)
				break;
			/* A worker that lived a while restarts at once; one that
			 * keeps dying waits longer each time, up to 30 s. */
			w->backoff = time(NULL) - p->started >= 10 ? 0 :
			    w->backoff == 0 ? 1 : w->backoff * 2 > 30 ? 30 :
			    w->backoff * 2;
			w->restart_at = time(NULL) + w->backoff;
			log_warnx("event=worker-died worker=%d pid=%ld status=%d "
			    "restart_in=%ds", p->index, (long)pid, status,
			    w->backoff);
			metrics_worker_died();
			break;
		}
	}
}

/* Watches the files of the running configuration, if it asks for it. */
static void
watch_running(void)
{
	char err[256];

	watch_free(watcher);
	watcher = NULL;
	if (running->watch_files &&
	    (watcher = watch_start(running, config_file, err, sizeof(err))) == NULL)
		log_warnx("watch_files: %s (files are not watched; SIGHUP still "
		    "reloads)", err);
}

static double
mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Changes settle before a reload: 0.5 s without a new event (a certificate
 * and its key are usually replaced one after the other), at most 3 s after
 * the first.  Returns true when it is time to reload.
 */
static bool
files_settled(void)
{
	static double first, last;
	double now = mono_now();

	if (watcher != NULL && watch_changed(watcher)) {
		last = now;
		if (first == 0)
			first = now;
	}
	if (first == 0 || (now - last < 0.5 && now - first < 3))
		return false;
	first = 0;
	return true;
}

/*
 * Waits (5 s at most: a worker may die meanwhile) until every current
 * worker accepts, or until no draining one does.
 */
static void
wait_accepting(bool current)
{
	struct timespec ms = { 0, 1000 * 1000 };

	for (int tries = 0; tries < 5000; tries++) {
		bool done = true;
		for (int i = 0; i < nslots; i++)
			if (procs[i].pid > 0 && procs[i].draining != current &&
			    listeners_slot_accepting(i) != current)
				done = false;
		if (done)
			return;
		nanosleep(&ms, NULL);
	}
	log_warnx("event=reload-slow: workers did not %s within 5 s",
	    current ? "start accepting" : "stop accepting");
}

/*
 * SIGHUP: load (here, off every worker's loop), bind what is new, then a
 * new generation of workers on the new snapshot; the old one drains.  Any
 * failure keeps everything as it was.
 */
/* A reload that cannot be done: said, and the running configuration
 * kept (cf, the refused one, is dropped). */
static void
reload_refused(struct config *cf, const char *why)
{
	log_errorx("reload failed, keeping the running configuration: %s",
	    why);
	notify_reload_done(why);
	config_unref(cf);
	metrics_reload(0);
}

static void
reload(struct worker *ws, int n)
{
	struct config *cf;
	struct sockset *next;
	char *errors = NULL, err[256];

	log_info("event=reload file=%s", config_file);
	notify_reload_start();
	if ((cf = config_load(config_file, &errors)) == NULL) {
		notify_reload_done(errors != NULL ? errors : "cannot load");
		log_config_errors("reload failed, keeping the running "
		    "configuration", errors);
		free(errors);
		metrics_reload(0);
		return;
	}
	if (cf->nservices == 0) {
		snprintf(err, sizeof(err), "%s: %s", config_file, no_service);
		reload_refused(cf, err);
		return;
	}
	if (free_slots() < n) {
		snprintf(err, sizeof(err), "%d workers of earlier reloads are "
		    "still finishing their sessions", nslots - free_slots() - n);
		reload_refused(cf, err);
		return;
	}
	/* The new generation's slots are among the free ones: their
	 * per-client tables grow now, before any of it is forked. */
	for (int i = 0; i < nslots; i++)
		if (procs[i].pid == 0 &&
		    clients_fit_slot(i, cf->max_connections) < 0) {
			snprintf(err, sizeof(err), "out of memory for the "
			    "per-client table of max_connections = %d",
			    cf->max_connections);
			reload_refused(cf, err);
			return;
		}
	if (dns_share(cf) < 0) {
		reload_refused(cf, "out of memory");
		return;
	}
	/* All or nothing, and before the sockets: a failed bind can still
	 * hand the token stores back to the running configuration. */
	if (oauth2_attach(suploop, cf, err, sizeof(err)) < 0) {
		reload_refused(cf, err);
		return;
	}
	if ((next = sockset_bind(cf, n, bound, err, sizeof(err))) == NULL) {
		char again[256];
		/* The stores go back to the running configuration before the
		 * refused one is dropped. */
		if (oauth2_attach(suploop, running, again, sizeof(again)) < 0)
			log_errorx("token stores: %s", again);
		reload_refused(cf, err);
		return;
	}
	if (cf->workers != n)
		log_warnx("workers = %d takes effect at the next start",
		    cf->workers);
	sockset_free(bound);		/* closes the removed addresses */
	bound = next;
	/* The file's keys, or the proxy's own kept: resumption survives. */
	tickets_use(cf->ticket_keys, cf->ticket_keys_len);
	config_unref(running);
	running = cf;
	/* Before the old workers drain: they end the sessions of accounts
	 * this configuration no longer has. */
	accounts_publish(cf);
	apply_logging(cf);
	warn_insecure(cf);
	sockset_log(bound, cf);
	for (int i = 0; i < nslots; i++)
		if (procs[i].pid > 0)
			procs[i].draining = true;
	for (int i = 0; i < n; i++) {
		ws[i] = (struct worker){ -1, 0, 0 };
		spawn(&ws[i], i);
	}
	/* New workers first, so that someone always accepts; the old ones
	 * stop before the reload is reported done. */
	wait_accepting(true);
	signal_procs(SIGQUIT, true);
	wait_accepting(false);
	metrics_reload(1);
	watch_running();
	dns_follow(suploop, cf);
	log_info("event=reload-ok services=%zu", cf->nservices);
	notify_reload_done(NULL);
}

/*
 * The supervisor's loop also refreshes OAuth2 tokens: the time from one
 * poll's return to the next poll (callbacks, and a reload between two
 * turns) is how late a refresh can be.  Stalls longer than 5 ms are
 * logged (debug), over a second as a warning.
 */
static double		 stall_from;

static void
stall_check_cb(EV_P_ ev_check *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	stall_from = mono_now();
}

static void
stall_prepare_cb(EV_P_ ev_prepare *w, int revents)
{
	double ms;

	(void)loop;
	(void)w;
	(void)revents;
	if (stall_from == 0)
		return;
	ms = (mono_now() - stall_from) * 1000;
	if (ms > 1000)
		log_warnx("event=supervisor-stall ms=%.0f: token refreshes "
		    "waited that long", ms);
	else if (ms > 5)
		log_debug("event=supervisor-stall ms=%.0f", ms);
}

/* The loop returns on a signal: sigtimedwait then takes it. */
static void
wake_cb(EV_P_ ev_io *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
}

static void
tick_cb(EV_P_ ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
}

/* Every worker of the current generation has its listeners armed. */
static bool
all_accepting(const struct worker *ws, int n)
{
	for (int i = 0; i < n; i++)
		if (ws[i].slot < 0 || !listeners_slot_accepting(ws[i].slot))
			return false;
	return true;
}

static int
supervise(void)
{
	int n = running->workers, alive, sig;
	struct worker *ws = calloc((size_t)n, sizeof(*ws));
	bool stopping = false;
	struct timespec now = { 0, 0 };
	ev_timer tick;
	ev_io sigio;
	ev_prepare stall_prepare;
	ev_check stall_check;
	sigset_t set;
	char err[256];

	supervisor_pid = getpid();
	nslots = n * SLOTS_PER_WORKER;
	procs = calloc((size_t)nslots, sizeof(*procs));
	if (ws == NULL || procs == NULL)
		fatalx("out of memory");
	if (metrics_init(nslots) < 0 || listeners_init_shared(nslots) < 0 ||
	    clients_init(nslots, running->max_connections) < 0 ||
	    oauth2_init() < 0 ||
	    accounts_shared_init() < 0 || blocks_init() < 0 ||
	    sesscache_init(running->tls_session_cache) < 0)
		fatal("shared memory");
	/* Its size is known only now: the first contexts join it here (those
	 * of later reloads when they are made). */
	for (size_t i = 0; i < running->nservices; i++)
		for (size_t k = 0; k < CONFIG_MAX_PAIRS; k++)
			if (running->services[i].pair_ctx[k] != NULL)
				sesscache_setup(running->services[i].pair_ctx[k]);
	if ((bound = sockset_bind(running, n, NULL, err, sizeof(err))) == NULL)
		fatalx("%s", err);
	/* The poll backend: no kernel object the forked workers would share. */
	if (dns_share(running) < 0 ||
	    (suploop = ev_loop_new(EVBACKEND_POLL)) == NULL)
		fatalx("out of memory");
	notify_init(suploop);
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, &parent_mask);
	/* Signals wake the loop through a signalfd; they are taken with
	 * sigtimedwait once it returns.  The tick bounds every wait. */
	if ((sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
		fatal("signalfd");
	ev_io_init(&sigio, wake_cb, sigfd, EV_READ);
	ev_io_start(suploop, &sigio);
	ev_timer_init(&tick, tick_cb, 0.2, 0.2);
	ev_timer_start(suploop, &tick);
	ev_prepare_init(&stall_prepare, stall_prepare_cb);
	ev_prepare_start(suploop, &stall_prepare);
	ev_check_init(&stall_check, stall_check_cb);
	ev_check_start(suploop, &stall_check);
	if (oauth2_attach(suploop, running, err, sizeof(err)) < 0)
		fatalx("%s", err);
	accounts_publish(running);
	log_info("event=supervisor-start pid=%ld workers=%d", (long)getpid(), n);
	sockset_log(bound, running);
	tickets_use(running->ticket_keys, running->ticket_keys_len);
	/* Watched before any worker says it started: a file changed from
	 * then on is seen. */
	watch_running();
	for (int i = 0; i < n; i++) {
		ws[i].slot = -1;
		spawn(&ws[i], i);
	}
	dns_follow(suploop, running);
	for (;;) {
		ev_run(suploop, EVRUN_ONCE);
		sig = sigtimedwait(&set, NULL, &now);
		tickets_rotate_if_due();
		if (sig == SIGHUP && !stopping)
			reload(ws, n);
		else if (files_settled() && !stopping) {
			log_info("event=files-changed: reloading");
			reload(ws, n);
		}
		else if (sig == SIGTERM || sig == SIGINT || sig == SIGQUIT) {
			/* SIGQUIT: a graceful stop as nginx's, the sessions end
			 * when they end; SIGTERM then sets the deadline, a
			 * second one makes the workers stop at once. */
			stopping = true;
			notify_stopping();
			signal_procs(sig == SIGQUIT ? SIGQUIT : SIGTERM, false);
			/* Refused from now on: the kernel queue is not ours. */
			sockset_free(bound);
			bound = NULL;
		}
		reap_workers(ws, stopping);
		alive = 0;
		for (int i = 0; i < n; i++)
			if (ws[i].slot < 0 && !stopping &&
			    time(NULL) >= ws[i].restart_at)
				spawn(&ws[i], i);
		for (int i = 0; i < nslots; i++)
			alive += procs[i].pid > 0;
		if (!stopping && all_accepting(ws, n))
			notify_ready();
		if (stopping && alive == 0)
			break;
	}
	log_info("event=stopped");
	free(ws);
	free(procs);
	dns_stop(suploop);
	oauth2_stop(suploop);
	ev_loop_destroy(suploop);
	close(sigfd);
	watch_free(watcher);
	sockset_free(bound);
	config_unref(running);
	return 0;
}

int
main(int argc, char *argv[])
{
	char *errors = NULL;
	bool check_only = false, dial = false;
	const char *authorize = NULL;
	int ch;

	while ((ch = getopt(argc, argv, "c:tTHVhA:R:")) != -1) {
		switch (ch) {
		case 'A':
			authorize = optarg;
			break;
		case 'c':
			config_file = optarg;
			break;
		case 't':
			check_only = true;
			break;
		case 'T':
			check_only = dial = true;
			break;
		case 'H':
			return make_hash();
		case 'R':
			return notify_reload_wait(optarg);
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
	token_json_wipe_on_free();
	/* Before the contexts are made: they use the shared ticket keys. */
	if (tickets_init() < 0)
		fatal("shared memory");
	if ((running = config_load(config_file, &errors)) == NULL) {
		fputs(errors != NULL ? errors : "cannot load configuration\n",
		    stderr);
		free(errors);
		return 1;
	}
	if (authorize != NULL) {
		int rc = oauth2_authorize(running, authorize);
		config_unref(running);
		return rc;
	}
	if (check_only) {
		int failed = 0;
		printf("configuration OK\n");
		if (running->nservices == 0)
			printf("%s: %s\n", config_file, no_service);
		for (size_t i = 0; dial && i < running->nservices; i++) {
			char result[1536];
			if (running->services[i].oauth2.store != NULL) {
				oauth2_describe(&running->services[i].oauth2,
				    running->services[i].name, result,
				    sizeof(result));
				printf("%s: %s\n", running->services[i].name,
				    result);
			}
			int rc = probe_service(&running->services[i], result,
			    sizeof(result));
			printf("%s: %s%s\n", running->services[i].name,
			    rc == 0 ? "" : "FAILED ", result);
			failed += rc != 0;
		}
		for (size_t i = 0; dial && i < running->naccounts; i++) {
			const struct account *a = &running->accounts[i];
			char result[1536], arg[600];
			if (a->oauth2.store == NULL)
				continue;
			snprintf(arg, sizeof(arg), "%s:%s",
			    config_accounts_service(running), a->name);
			oauth2_describe(&a->oauth2, arg, result,
			    sizeof(result));
			printf("account:%s: %s\n", a->name, result);
		}
		config_unref(running);
		return failed ? 1 : 0;
	}
	apply_logging(running);
	if (running->nservices == 0) {
		log_errorx("%s: %s, then start it again", config_file,
		    no_service);
		config_unref(running);
		return EXIT_NO_SERVICE;
	}
	warn_insecure(running);

	return supervise();
}
