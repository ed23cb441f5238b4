/*
 * metrics: counters per service, kept in memory shared by all workers
 * (each worker writes only its own slot, so no locks), and the HTTP
 * endpoint of "metrics = host:port": GET /metrics (Prometheus text, the sum
 * over workers) and GET /healthz.  Served by worker 0 from its event loop,
 * non-blocking, with a deadline per scrape.
 */
#ifndef MAILPROXY_METRICS_H
#define MAILPROXY_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include <ev.h>

#include "config.h"
#include "reason.h"


struct svc_metrics;

/* Before forking: shared memory for slots processes.  0 or -1. */
int	metrics_init(int slots);

/* In each worker: which slot it writes (counting on from its last owner). */
void	metrics_set_worker(int slot);

/* Supervisor: slot's process died; its open sessions are closed. */
void	metrics_retire_slot(int slot);

/* The counters of service name in this worker (NULL if the table is full). */
struct svc_metrics *metrics_service(const char *name);

void	metrics_session_open(struct svc_metrics *m);
void	metrics_session_close(struct svc_metrics *m, enum outcome end,
	    uint64_t bytes_in, uint64_t bytes_out);
void	metrics_tls(struct svc_metrics *m, int version, const char *cipher);
void	metrics_starttls(struct svc_metrics *m, int side_client);

/* A TLS handshake completed on one side, full or resumed. */
void	metrics_handshake(struct svc_metrics *m, int side_upstream,
	    int resumed);

/* A client negotiated TLS below 1.2: counted per client address, so old
 * devices can be found and retired. */
void	metrics_legacy_client(struct svc_metrics *m, const char *addr,
	    int version, const char *cert);

/* accounts: a client's login to the proxy worked or failed. */
void	metrics_login(struct svc_metrics *m, bool ok);

/* The upstream part of a session failed: counted by the log's reason
 * (upstream-verify-failed, upstream-no-starttls, ...; a fixed set). */
void	metrics_upstream_failure(struct svc_metrics *m,
	    enum close_reason reason);

/* An upstream handshake completed: remembers when the certificate the
 * upstream showed expires (the newest one seen per service is exported). */
void	metrics_upstream_cert(struct svc_metrics *m, const SSL *ssl);

/* A connection attempt to the service's upstream worked or failed (every
 * address tried): /readyz fails after ready_upstream_failures in a row. */
void	metrics_upstream_connect(struct svc_metrics *m, bool ok);

/* This worker is stopping (SIGTERM): /readyz answers 503 from now on. */
void	metrics_draining(void);

/* Process-wide: a worker died (the supervisor restarts it); a reload
 * failed (ok 0) or a new configuration was loaded (ok 1). */
void	metrics_worker_died(void);
void	metrics_reload(int ok);

/* Supervisor: sessions open now, over every worker and service. */
uint64_t metrics_sessions_open(void);


/* Worker 0: serve GET /metrics and /healthz on the inherited socket fd
 * (-1: stop serving), reporting cf's services. */
void	metrics_serve(EV_P_ const struct config *cf, int fd);

#endif
