/*
 * worker: a worker process, forked by the supervisor on its current
 * snapshot.  It adopts its share of the bound sockets, drops privileges,
 * runs its own libev loop and never loads a configuration; SIGQUIT (a
 * reload) drains it without a deadline, SIGTERM/SIGINT within
 * shutdown_timeout; it stops if the supervisor dies.
 */
#ifndef MAILPROXY_WORKER_H
#define MAILPROXY_WORKER_H

#include <signal.h>
#include <sys/types.h>

#include "config.h"
#include "listener.h"

/* What a freshly forked worker is handed. */
struct worker_start {
	struct config		*cf;		/* its snapshot */
	const struct sockset	*sockets;	/* the supervisor's, inherited */
	int			 index;		/* 0 serves /metrics */
	int			 slot;		/* in the shared tables */
	const sigset_t		*mask;		/* restored once it can take
						 * signals */
	pid_t			 supervisor;
	const char		*config_file;	/* for its start line */
	const char		*version;
};

/* Runs the worker until it has drained; its exit status. */
int	worker_run(const struct worker_start *w);

#endif
