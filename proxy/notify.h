/*
 * notify: systemd's service notifications (sd_notify(3) from libsystemd),
 * sent by the supervisor only, and only when systemd gave it a
 * NOTIFY_SOCKET: readiness, reloads, stopping, a status line and watchdog
 * pings.  Without NOTIFY_SOCKET every call here does nothing.
 *
 * systemd 252 (Debian bookworm) has no Type=notify-reload, and there a
 * reload job ends when ExecReload= exits.  So the unit's ExecReload= runs
 * notify_reload_wait() (mailproxy -R $MAINPID): it sends SIGHUP and waits
 * for this supervisor to finish that reload, reading a small state file the
 * supervisor keeps in $RUNTIME_DIRECTORY; it exits 1 with the reason when
 * the reload failed, so that `systemctl reload` fails too.
 */
#ifndef MAILPROXY_NOTIFY_H
#define MAILPROXY_NOTIFY_H

#include <stdbool.h>
#include <sys/types.h>

#include <ev.h>

/* Supervisor, once, before forking: reads NOTIFY_SOCKET and WATCHDOG_USEC;
 * with a watchdog, pings it from a timer on loop (the supervisor's). */
void	notify_init(struct ev_loop *loop);

/* Every worker of the current generation accepts on every listener: sends
 * READY=1 the first time (later ones are reload_done's). */
void	notify_ready(void);

/* SIGHUP or changed files: RELOADING=1 with MONOTONIC_USEC. */
void	notify_reload_start(void);

/* The reload ended: NULL when the new generation accepts (READY=1), else
 * why it failed, its first line said in STATUS= (then READY=1: the old
 * generation serves on). */
void	notify_reload_done(const char *failure);

/* SIGTERM / SIGINT / SIGQUIT: STOPPING=1. */
void	notify_stopping(void);

/*
 * mailproxy -R PID: SIGHUP to the supervisor PID, then wait until a reload
 * that started after this call ended.  0 when it worked; 1 with the reason
 * on stderr when it failed, when PID is gone, or without the state file.
 */
int	notify_reload_wait(const char *pid);

#endif
