/*
 * worker: one worker process's life (see worker.h): its listeners, its
 * loop, its privilege drop, and the drain on the supervisor's signals.
 */
#include "worker.h"

#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <ev.h>

#include "clients.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "session.h"
#include "tls.h"

static struct config	*running;	/* the snapshot it was forked with */
static bool		 draining;
static int		 worker_index;	/* 0 serves metrics */
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

/*
 * A worker never loads a configuration: it runs the snapshot it was forked
 * with until it is told to stop.  SIGQUIT (the supervisor after a reload)
 * means stop accepting and finish the open sessions, however long they
 * take; SIGTERM / SIGINT the same within shutdown_timeout.
 */
static bool		 no_deadline;	/* SIGQUIT: drain without a limit */

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
	sess_close_all(EV_A_ R_SHUTDOWN);
	ev_break(EV_A_ EVBREAK_ALL);
}

/* shutdown_timeout starts: then the sessions still open are closed. */
static void
start_grace(EV_P)
{
	no_deadline = false;
	ev_timer_init(&drain_timer, drain_timer_cb, running->shutdown_timeout,
	    0.);
	ev_timer_start(EV_A_ &drain_timer);
}

/* deadline: SIGTERM/SIGINT (within shutdown_timeout); else SIGQUIT. */
static void
stop(EV_P_ bool deadline)
{
	if (draining) {
		if (!deadline)
			return;			/* SIGQUIT again: nothing new */
		if (no_deadline)
			start_grace(EV_A);	/* a reload's drain, now a stop */
		else {
			/* A second stop signal: do not wait any longer. */
			sess_close_all(EV_A_ R_SHUTDOWN);
			ev_break(EV_A_ EVBREAK_ALL);
		}
		return;
	}
	draining = true;
	no_deadline = !deadline;
	log_info("event=stopping sessions=%zu grace=%s", sess_count(),
	    deadline ? "shutdown_timeout" : "until-sessions-end");
	listeners_close_all(EV_A);
	/* Stopping: /readyz says so while the sessions drain.  After a
	 * reload the new generation's worker 0 serves the endpoint. */
	if (worker_index == 0 && !deadline)
		metrics_serve(EV_A_ running, -1);
	metrics_draining();
	if (deadline)
		start_grace(EV_A);
	ev_prepare_init(&drain_check, drain_check_cb);
	ev_prepare_start(EV_A_ &drain_check);
}

static void
signal_cb(EV_P_ ev_signal *w, int revents)
{
	(void)revents;
	if (w->signum == SIGHUP)
		log_info("event=reload-ignored: the supervisor reloads (send "
		    "SIGHUP to it)");
	else {
		stop(EV_A_ w->signum != SIGQUIT);
		/* A reload: the sessions of accounts it removed end now. */
		if (w->signum == SIGQUIT)
			sess_close_stale_accounts(EV_A);
	}
}

/*
 * A worker whose supervisor died stops as on SIGTERM: nobody would restart
 * it, reload it or publish tokens and keys for it any more.  After the
 * privilege drop, which clears the setting; the supervisor may have died
 * before it was made, hence the check of the parent.
 */
static void
watch_supervisor(const struct worker_start *start)
{
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0)
		log_warn("prctl PR_SET_PDEATHSIG");
	if (getppid() != start->supervisor)
		raise(SIGTERM);
}

/* One worker: its inherited sockets, its own libev loop, the snapshot it
 * was forked with; it drains on the signals the supervisor forwards. */
int
worker_run(const struct worker_start *w)
{
	int index = w->index, slot = w->slot;

	struct ev_loop *loop;
	ev_signal sig_hup, sig_term, sig_int, sig_quit;

	running = w->cf;
	worker_index = index;
	sess_set_id_base((uint64_t)slot << 40);
	listeners_set_slot(slot);
	metrics_set_worker(slot);
	clients_set_slot(slot);
	if ((loop = ev_default_loop(EVFLAG_AUTO)) == NULL)
		fatalx("cannot initialise libev");
	if (listeners_adopt(loop, running, w->sockets, index) < 0)
		fatalx("out of memory");
	if (index == 0)
		metrics_serve(loop, running, sockset_metrics_fd(w->sockets));
	drop_privileges(running);
	ev_signal_init(&sig_hup, signal_cb, SIGHUP);
	ev_signal_init(&sig_term, signal_cb, SIGTERM);
	ev_signal_init(&sig_int, signal_cb, SIGINT);
	ev_signal_init(&sig_quit, signal_cb, SIGQUIT);
	ev_signal_start(loop, &sig_hup);
	ev_signal_start(loop, &sig_term);
	ev_signal_start(loop, &sig_int);
	ev_signal_start(loop, &sig_quit);
	/* Only now: a signal that came since the fork was kept pending and
	 * reaches its watcher. */
	sigprocmask(SIG_SETMASK, w->mask, NULL);
	watch_supervisor(w);
	log_info("event=start version=%s tls=\"%s\" pid=%ld worker=%d config=%s",
	    w->version, tls_library(), (long)getpid(), index, w->config_file);

	ev_run(loop, 0);

	log_info("event=stopped");
	ev_loop_destroy(loop);
	return 0;
}
