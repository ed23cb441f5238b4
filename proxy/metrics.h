/*
 * metrics: counters per service, kept in memory shared by all workers
 * (each worker writes only its own slot, so no locks), and the HTTP
 * endpoint of "metrics = host:port": GET /metrics (Prometheus text, the sum
 * over workers) and GET /healthz.  Served by worker 0 from its event loop,
 * non-blocking, with a deadline per scrape.
 */
#ifndef MAILPROXY_METRICS_H
#define MAILPROXY_METRICS_H

#include <stdint.h>

#include <ev.h>

#include "config.h"

/* How a session ended, as counted (the log's reason, grouped). */
enum metric_end {
	END_OK, END_CLIENT_HANDSHAKE, END_UPSTREAM_VERIFY, END_UPSTREAM_TLS,
	END_STARTTLS_UPSTREAM, END_STARTTLS_CLIENT, END_CONNECT, END_TIMEOUT,
	END_REFUSED, END_ERROR, END_UPSTREAM_AUTH, END_NREASONS
};

struct svc_metrics;

/* Before forking: shared memory for workers (1..64).  0 or -1. */
int	metrics_init(int workers);

/* In each worker: which slot it writes (and resets it). */
void	metrics_set_worker(int index);

/* The counters of service name in this worker (NULL if the table is full). */
struct svc_metrics *metrics_service(const char *name);

void	metrics_session_open(struct svc_metrics *m);
void	metrics_session_close(struct svc_metrics *m, enum metric_end end,
	    uint64_t bytes_in, uint64_t bytes_out);
void	metrics_tls(struct svc_metrics *m, int version, const char *cipher);
void	metrics_starttls(struct svc_metrics *m, int side_client);

/* A client negotiated TLS below 1.2: counted per client address, so old
 * devices can be found and retired. */
void	metrics_legacy_client(struct svc_metrics *m, const char *addr,
	    int version);

/* The upstream part of a session failed: counted by the log's reason
 * (upstream-verify-failed, upstream-no-starttls, ...; a fixed set). */
void	metrics_upstream_failure(struct svc_metrics *m, const char *reason);

/* An upstream handshake completed: remembers when the certificate the
 * upstream showed expires (the newest one seen per service is exported). */
void	metrics_upstream_cert(struct svc_metrics *m, const SSL *ssl);

/* Process-wide: a worker died (the supervisor restarts it); a reload
 * failed (ok 0) or a new configuration was loaded (ok 1). */
void	metrics_worker_died(void);
void	metrics_reload(int ok);

/* Maps a session's close reason to the counted group. */
enum metric_end metrics_end_of(const char *reason);

/* Worker 0: serve cf->metrics (if set) on this loop; again after reload. */
int	metrics_listen(EV_P_ const struct config *cf, char *err, size_t len);

#endif
