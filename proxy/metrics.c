/*
 * metrics: shared counters and the Prometheus endpoint.
 */
#include "metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/x509.h>

#include "blocks.h"
#include "log.h"
#include "oauth2.h"

#define MAX_SVC		64
#define MAX_CIPHERS	16
#define MAX_LEGACY	32	/* legacy clients tracked per service */

struct svc_metrics {
	char		 name[64];
	uint64_t	 opened;
	uint64_t	 closed;
	uint64_t	 ends[END_NREASONS];
	uint64_t	 bytes_in;
	uint64_t	 bytes_out;
	uint64_t	 tls_version[4];	/* 1.0, 1.1, 1.2, 1.3 */
	char		 cipher[MAX_CIPHERS][48];
	uint64_t	 cipher_count[MAX_CIPHERS];
	uint64_t	 starttls_ok[2];	/* upstream, client */
	char		 legacy_client[MAX_LEGACY][128];	/* "ip version cert" */
	uint64_t	 legacy_count[MAX_LEGACY];
	uint64_t	 upfail[R_COUNT];	/* upstream failures by reason */
	int64_t		 up_not_after;	/* upstream certificate, Unix time */
	int64_t		 up_seen;	/* when it was seen (ns), 0: never */
	/* /readyz: this worker's consecutive failed connects to the
	 * upstream, and when it last tried (ns, realtime). */
	uint32_t	 connect_streak;
	int64_t		 connect_tried;
	uint64_t	 handshakes[2][2];	/* [client, upstream][full, resumed] */
	uint64_t	 logins[2];		/* accounts: [failed, ok] */
};

/* Process-wide counters, written by the supervisor and by any worker. */
struct proc_metrics {
	uint64_t	 worker_restarts;
	uint64_t	 reload_failures;
	int64_t		 reload_ok_time;	/* last successful (re)load */
	int		 reload_ok;		/* the last attempt worked */
};


static struct svc_metrics *shm;		/* [workers][MAX_SVC] */
static int		 nworkers;
static struct svc_metrics *mine;	/* this worker's row */
static struct proc_metrics *proc;

/*
 * Finds key among n names laid out stride bytes apart, claiming the first
 * empty one for it; -1 when all are taken by other keys.
 */
static int
slot(char *names, size_t stride, int n, const char *key, size_t keymax)
{
	for (int i = 0; i < n; i++) {
		char *name = names + (size_t)i * stride;
		if (name[0] == '\0')
			snprintf(name, keymax, "%s", key);
		if (strcmp(name, key) == 0)
			return i;
	}
	return -1;
}

int
metrics_init(int slots)
{
	size_t len = (size_t)slots * MAX_SVC * sizeof(struct svc_metrics);
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED |
	    MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return -1;
	shm = p;
	nworkers = slots;
	mine = shm;
	p = mmap(NULL, sizeof(*proc), PROT_READ | PROT_WRITE, MAP_SHARED |
	    MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	proc = p;
	proc->reload_ok = 1;
	proc->reload_ok_time = time(NULL);
	return 0;
}

void
metrics_set_worker(int slot)
{
	/* A process taking over a slot goes on counting from where the last
	 * one stopped: the sums never go down. */
	mine = shm + (size_t)slot * MAX_SVC;
}

void
metrics_retire_slot(int slot)
{
	struct svc_metrics *row = shm + (size_t)slot * MAX_SVC;

	/* A process that died took its open sessions with it. */
	for (int i = 0; i < MAX_SVC; i++)
		row[i].closed = row[i].opened;
}

struct svc_metrics *
metrics_service(const char *name)
{
	int i;

	if (mine == NULL || (i = slot(mine[0].name, sizeof(*mine), MAX_SVC, name,
	    sizeof(mine[0].name))) < 0)
		return NULL;
	return &mine[i];
}

void
metrics_session_open(struct svc_metrics *m)
{
	if (m != NULL)
		m->opened++;
}

void
metrics_session_close(struct svc_metrics *m, enum outcome end,
    uint64_t bytes_in, uint64_t bytes_out)
{
	if (m == NULL)
		return;
	m->closed++;
	m->ends[end]++;
	m->bytes_in += bytes_in;
	m->bytes_out += bytes_out;
}

void
metrics_tls(struct svc_metrics *m, int version, const char *cipher)
{
	int v = version - 0x0301, i;	/* TLS1_VERSION */

	if (m == NULL)
		return;
	if (v >= 0 && v < 4)
		m->tls_version[v]++;
	if (cipher != NULL && (i = slot(m->cipher[0], sizeof(m->cipher[0]),
	    MAX_CIPHERS, cipher, sizeof(m->cipher[0]))) >= 0)
		m->cipher_count[i]++;
}

void
metrics_login(struct svc_metrics *m, bool ok)
{
	if (m != NULL)
		m->logins[ok]++;
}

void
metrics_starttls(struct svc_metrics *m, int side_client)
{
	if (m != NULL)
		m->starttls_ok[side_client != 0]++;
}

void
metrics_legacy_client(struct svc_metrics *m, const char *addr, int version,
    const char *cert)
{
	char key[sizeof(m->legacy_client[0])];
	int i;

	if (m == NULL)
		return;
	snprintf(key, sizeof(key), "%s %s %s", addr, version == 0x0301 ? "1.0" :
	    version == 0x0302 ? "1.1" : "1.2", cert != NULL ? cert : "-");
	if ((i = slot(m->legacy_client[0], sizeof(key), MAX_LEGACY, key,
	    sizeof(key))) >= 0)
		m->legacy_count[i]++;
}

void
metrics_upstream_failure(struct svc_metrics *m, enum close_reason reason)
{
	if (m != NULL && (unsigned)reason < R_COUNT)
		m->upfail[reason]++;
}

void
metrics_upstream_cert(struct svc_metrics *m, const SSL *ssl)
{
	X509 *x;
	struct timespec now;
	int days, secs;

	if (m == NULL || (x = SSL_get_peer_certificate(ssl)) == NULL)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x))) {
		m->up_not_after = (int64_t)now.tv_sec + (int64_t)days * 86400 +
		    secs;
		m->up_seen = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
	}
	X509_free(x);
}

void
metrics_handshake(struct svc_metrics *m, int side_upstream, int resumed)
{
	if (m != NULL)
		m->handshakes[side_upstream != 0][resumed != 0]++;
}

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
metrics_upstream_connect(struct svc_metrics *m, bool ok)
{
	if (m == NULL)
		return;
	m->connect_streak = ok ? 0 : m->connect_streak + 1;
	m->connect_tried = now_ns();
}

static bool		 draining_now;

void
metrics_draining(void)
{
	draining_now = true;
}

void
metrics_worker_died(void)
{
	if (proc != NULL)
		__atomic_fetch_add(&proc->worker_restarts, 1, __ATOMIC_RELAXED);
}

void
metrics_reload(int ok)
{
	if (proc == NULL)
		return;
	if (ok)
		proc->reload_ok_time = time(NULL);
	else
		__atomic_fetch_add(&proc->reload_failures, 1, __ATOMIC_RELAXED);
	proc->reload_ok = ok != 0;
}

/* ---- the text exposition --------------------------------------------- */

/*
 * A label value as the text format wants it: backslash, double quote and
 * line feed escaped.  Service names, cipher names, file names and client
 * addresses come from outside; one quote would break the whole scrape.
 */
static void
label_value(const char *in, size_t len, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < len && in[i] != '\0' && o + 3 <= cap; i++) {
		if (in[i] == '\\' || in[i] == '"' || in[i] == '\n') {
			out[o++] = '\\';
			out[o++] = in[i] == '\n' ? 'n' : in[i];
		} else
			out[o++] = in[i];
	}
	out[o] = '\0';
}

struct out {
	char	*p;
	size_t	 len, cap;
};

static void __attribute__((format(printf, 2, 3)))
put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		char *grown = realloc(o->p, o->cap * 2 + (size_t)n);
		if (grown == NULL)
			return;
		o->p = grown;
		o->cap = o->cap * 2 + (size_t)n;
	}
}

/* Sums one service's counters over every worker. */
static void
sum_service(const char *name, struct svc_metrics *t)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", name);
	for (int w = 0; w < nworkers; w++)
		for (int i = 0; i < MAX_SVC; i++) {
			const struct svc_metrics *m = &shm[w * MAX_SVC + i];
			if (strcmp(m->name, name) != 0)
				continue;
			t->opened += m->opened;
			t->closed += m->closed;
			t->bytes_in += m->bytes_in;
			t->bytes_out += m->bytes_out;
			for (int k = 0; k < END_NREASONS; k++)
				t->ends[k] += m->ends[k];
			for (int k = 0; k < 4; k++)
				t->tls_version[k] += m->tls_version[k];
			for (int k = 0; k < 2; k++) {
				t->starttls_ok[k] += m->starttls_ok[k];
				t->logins[k] += m->logins[k];
			}
			for (int k = 0; k < 4; k++)
				t->handshakes[k / 2][k % 2] += m->handshakes[k / 2][k % 2];
			for (int k = 0, j; k < MAX_LEGACY && m->legacy_client[k][0]; k++)
				if ((j = slot(t->legacy_client[0],
				    sizeof(t->legacy_client[0]), MAX_LEGACY,
				    m->legacy_client[k], sizeof(t->legacy_client[0]))) >= 0)
					t->legacy_count[j] += m->legacy_count[k];
			for (int k = 0, j; k < MAX_CIPHERS && m->cipher[k][0]; k++)
				if ((j = slot(t->cipher[0], sizeof(t->cipher[0]),
				    MAX_CIPHERS, m->cipher[k], sizeof(t->cipher[0]))) >= 0)
					t->cipher_count[j] += m->cipher_count[k];
			for (int k = 0; k < R_COUNT; k++)
				t->upfail[k] += m->upfail[k];
			if (m->up_seen > t->up_seen) {	/* the newest one */
				t->up_seen = m->up_seen;
				t->up_not_after = m->up_not_after;
			}
		}
}

static void
render_oauth2(struct out *o, const char *n, int slot)
{
	struct oauth2_stats st;

	oauth2_stats(slot, &st);
	put(o, "mailproxy_oauth2_refreshes_total{service=\"%s\"} %llu\n", n,
	    (unsigned long long)st.refreshes);
	put(o, "mailproxy_oauth2_refresh_failures_total{service=\"%s\"} "
	    "%llu\n", n, (unsigned long long)st.failures);
	put(o, "mailproxy_oauth2_token_expiry_seconds{service=\"%s\"} %lld\n",
	    n, (long long)st.expires_in);
	for (int k = OAUTH2_MISSING; k <= OAUTH2_REVOKED; k++)
		put(o, "mailproxy_oauth2_token_state{service=\"%s\",state="
		    "\"%s\"} %d\n", n, oauth2_state_names[k], st.state ==
		    (enum oauth2_state)k);
}

/*
 * The block table of failed logins (accounts), instance-wide: how full each
 * level is, the blocks in force, and the failures counted at a wider level
 * or not at all (an attack from many networks: see blocks.h).
 */
static void
render_blocks(struct out *o)
{
	static const char *const level[BLOCKS_LEVELS] = { "client", "net",
	    "widenet" };
	struct blocks_stats st;

	blocks_stats(&st);
	put(o, "# HELP mailproxy_auth_block_table_entries Entries of the "
	    "failed-login table in use, by level (client: IPv4 address or IPv6 "
	    "/64; net: /24 or /48; widenet: /16 or /32).\n"
	    "# TYPE mailproxy_auth_block_table_entries gauge\n"
	    "# HELP mailproxy_auth_block_table_size Entries of each level.\n"
	    "# TYPE mailproxy_auth_block_table_size gauge\n"
	    "# HELP mailproxy_auth_blocked Blocks in force, by level.\n"
	    "# TYPE mailproxy_auth_blocked gauge\n"
	    "# HELP mailproxy_auth_failures_counted_total Failed logins counted, "
	    "by the level that counted them (net, widenet: the client level "
	    "was full).\n"
	    "# TYPE mailproxy_auth_failures_counted_total counter\n"
	    "# HELP mailproxy_auth_checks_uncounted_total Login checks no level "
	    "could count (every level full).\n"
	    "# TYPE mailproxy_auth_checks_uncounted_total counter\n"
	    "# HELP mailproxy_auth_checks_capped_total Of those, refused with a "
	    "temporary failure by the cap on uncounted checks.\n"
	    "# TYPE mailproxy_auth_checks_capped_total counter\n"
	    "# HELP mailproxy_auth_failures_forgotten_total Failed logins "
	    "pushed out of the widest level by other clients' (under attack "
	    "from very many networks).\n"
	    "# TYPE mailproxy_auth_failures_forgotten_total counter\n");
	for (int i = 0; i < BLOCKS_LEVELS; i++)
		put(o, "mailproxy_auth_block_table_entries{level=\"%s\"} %u\n"
		    "mailproxy_auth_block_table_size{level=\"%s\"} %u\n"
		    "mailproxy_auth_blocked{level=\"%s\"} %u\n"
		    "mailproxy_auth_failures_counted_total{level=\"%s\"} %llu\n",
		    level[i], st.used[i], level[i], st.size[i], level[i],
		    st.blocking[i], level[i], (unsigned long long)st.counted[i]);
	put(o, "mailproxy_auth_checks_uncounted_total %llu\n"
	    "mailproxy_auth_checks_capped_total %llu\n"
	    "mailproxy_auth_failures_forgotten_total %llu\n",
	    (unsigned long long)st.uncounted, (unsigned long long)st.capped,
	    (unsigned long long)st.forgotten);
}

static void
render(const struct config *cf, struct out *o)
{
	static const char *const versions[] = { "1.0", "1.1", "1.2", "1.3" };
	struct svc_metrics t;

	put(o, "# HELP mailproxy_sessions_open Sessions open now.\n"
	    "# TYPE mailproxy_sessions_open gauge\n"
	    "# HELP mailproxy_sessions_total Sessions accepted.\n"
	    "# TYPE mailproxy_sessions_total counter\n"
	    "# HELP mailproxy_sessions_ended_total Sessions ended, by outcome.\n"
	    "# TYPE mailproxy_sessions_ended_total counter\n"
	    "# HELP mailproxy_bytes_total Application bytes from (in) and to "
	    "(out) clients.\n# TYPE mailproxy_bytes_total counter\n"
	    "# HELP mailproxy_client_tls_total Client TLS sessions by version.\n"
	    "# TYPE mailproxy_client_tls_total counter\n"
	    "# HELP mailproxy_client_tls_legacy_total Client sessions below "
	    "TLS 1.2.\n# TYPE mailproxy_client_tls_legacy_total counter\n"
	    "# HELP mailproxy_client_tls_legacy_sessions_total Sessions below "
	    "TLS 1.2 per client address (the first 32 per service).\n"
	    "# TYPE mailproxy_client_tls_legacy_sessions_total counter\n"
	    "# HELP mailproxy_client_cipher_total Client TLS sessions by "
	    "cipher.\n# TYPE mailproxy_client_cipher_total counter\n"
	    "# HELP mailproxy_tls_handshakes_total TLS handshakes completed, "
	    "by side and kind (full or resumed).\n"
	    "# TYPE mailproxy_tls_handshakes_total counter\n"
	    "# HELP mailproxy_starttls_total STARTTLS upgrades done, by side.\n"
	    "# TYPE mailproxy_starttls_total counter\n"
	    "# HELP mailproxy_logins_total Clients' logins to the proxy "
	    "(upstream_auth = accounts), by result.\n"
	    "# TYPE mailproxy_logins_total counter\n"
	    "# HELP mailproxy_auth_failures_total Failed logins to the proxy "
	    "(wrong password or unknown account).\n"
	    "# TYPE mailproxy_auth_failures_total counter\n"
	    "# HELP mailproxy_certificate_expiry_seconds Seconds until each "
	    "local certificate expires.\n"
	    "# TYPE mailproxy_certificate_expiry_seconds gauge\n"
	    "# HELP mailproxy_upstream_failures_total Sessions whose upstream "
	    "side failed before the relay, by the log's reason.\n"
	    "# TYPE mailproxy_upstream_failures_total counter\n"
	    "# HELP mailproxy_upstream_certificate_expiry_seconds Seconds until "
	    "the certificate the upstream showed last expires (once one was "
	    "seen).\n"
	    "# TYPE mailproxy_upstream_certificate_expiry_seconds gauge\n"
	    "# HELP mailproxy_worker_restarts_total Workers that died and were "
	    "restarted by the supervisor.\n"
	    "# TYPE mailproxy_worker_restarts_total counter\n"
	    "# HELP mailproxy_config_reload_failures_total Reloads refused "
	    "(the running configuration was kept).\n"
	    "# TYPE mailproxy_config_reload_failures_total counter\n"
	    "# HELP mailproxy_config_last_reload_successful Whether the last "
	    "reload worked (1) or was refused (0).\n"
	    "# TYPE mailproxy_config_last_reload_successful gauge\n"
	    "# HELP mailproxy_config_last_reload_success_timestamp_seconds When "
	    "the running configuration was loaded (Unix time).\n"
	    "# TYPE mailproxy_config_last_reload_success_timestamp_seconds "
	    "gauge\n"
	    "# HELP mailproxy_oauth2_refreshes_total Access tokens obtained "
	    "from the token endpoint (oauth2_token_store).\n"
	    "# TYPE mailproxy_oauth2_refreshes_total counter\n"
	    "# HELP mailproxy_oauth2_refresh_failures_total Token refreshes "
	    "that failed (retried, or refused: see the log).\n"
	    "# TYPE mailproxy_oauth2_refresh_failures_total counter\n"
	    "# HELP mailproxy_oauth2_token_expiry_seconds Seconds the current "
	    "access token remains valid (negative: expired or none).\n"
	    "# TYPE mailproxy_oauth2_token_expiry_seconds gauge\n"
	    "# HELP mailproxy_oauth2_token_state The token store's state (1 "
	    "for the current one).\n"
	    "# TYPE mailproxy_oauth2_token_state gauge\n");
	if (proc != NULL)
		put(o, "mailproxy_worker_restarts_total %llu\n"
		    "mailproxy_config_reload_failures_total %llu\n"
		    "mailproxy_config_last_reload_successful %d\n"
		    "mailproxy_config_last_reload_success_timestamp_seconds %lld\n",
		    (unsigned long long)proc->worker_restarts,
		    (unsigned long long)proc->reload_failures, proc->reload_ok,
		    (long long)proc->reload_ok_time);
	if (config_accounts_service(cf) != NULL)
		render_blocks(o);
	for (size_t i = 0; i < cf->nservices; i++) {
		const struct service *svc = &cf->services[i];
		char n[2 * 256 + 1], v[2 * 4096 + 1];

		sum_service(svc->name, &t);
		label_value(svc->name, strlen(svc->name), n, sizeof(n));
		put(o, "mailproxy_sessions_open{service=\"%s\"} %llu\n", n,
		    (unsigned long long)(t.opened - t.closed));
		put(o, "mailproxy_sessions_total{service=\"%s\"} %llu\n", n,
		    (unsigned long long)t.opened);
		for (int k = 0; k < END_NREASONS; k++)
			put(o, "mailproxy_sessions_ended_total{service=\"%s\","
			    "outcome=\"%s\"} %llu\n", n, outcome_name((enum outcome)k),
			    (unsigned long long)t.ends[k]);
		put(o, "mailproxy_bytes_total{service=\"%s\",direction=\"in\"} "
		    "%llu\n", n, (unsigned long long)t.bytes_in);
		put(o, "mailproxy_bytes_total{service=\"%s\",direction=\"out\"} "
		    "%llu\n", n, (unsigned long long)t.bytes_out);
		for (int k = 0; k < 4; k++)
			put(o, "mailproxy_client_tls_total{service=\"%s\","
			    "version=\"%s\"} %llu\n", n, versions[k],
			    (unsigned long long)t.tls_version[k]);
		put(o, "mailproxy_client_tls_legacy_total{service=\"%s\"} %llu\n",
		    n, (unsigned long long)(t.tls_version[0] + t.tls_version[1]));
		for (int k = 0; k < MAX_LEGACY && t.legacy_client[k][0]; k++) {
			/* "addr version cert": the device's certificate, when
			 * client_verify asked for one, names it beside its
			 * address. */
			const char *ver = strchr(t.legacy_client[k], ' ') + 1;
			const char *cert = strchr(ver, ' ') + 1;
			label_value(t.legacy_client[k], (size_t)(ver - 1 -
			    t.legacy_client[k]), v, sizeof(v));
			put(o, "mailproxy_client_tls_legacy_sessions_total{service="
			    "\"%s\",client=\"%s\",version=\"%.*s\"%s%s%s} %llu\n",
			    n, v, (int)(cert - 1 - ver), ver, strcmp(cert, "-") != 0 ?
			    ",client_cert=\"" : "", strcmp(cert, "-") != 0 ? cert : "",
			    strcmp(cert, "-") != 0 ? "\"" : "",
			    (unsigned long long)t.legacy_count[k]);
		}
		for (int k = 0; k < MAX_CIPHERS && t.cipher[k][0]; k++) {
			label_value(t.cipher[k], strlen(t.cipher[k]), v, sizeof(v));
			put(o, "mailproxy_client_cipher_total{service=\"%s\","
			    "cipher=\"%s\"} %llu\n", n, v,
			    (unsigned long long)t.cipher_count[k]);
		}
		put(o, "mailproxy_starttls_total{service=\"%s\",side=\"upstream\"} "
		    "%llu\n", n, (unsigned long long)t.starttls_ok[0]);
		for (int k = 0; k < 4; k++)
			put(o, "mailproxy_tls_handshakes_total{service=\"%s\",side=\"%s\","
			    "kind=\"%s\"} %llu\n", n, k / 2 ? "upstream" : "client",
			    k % 2 ? "resumed" : "full",
			    (unsigned long long)t.handshakes[k / 2][k % 2]);
		put(o, "mailproxy_starttls_total{service=\"%s\",side=\"client\"} "
		    "%llu\n", n, (unsigned long long)t.starttls_ok[1]);
		if (svc->upstream_auth == AUTH_ACCOUNTS)
			put(o, "mailproxy_logins_total{service=\"%s\",result=\"ok\"} "
			    "%llu\nmailproxy_logins_total{service=\"%s\",result="
			    "\"failed\"} %llu\nmailproxy_auth_failures_total{service="
			    "\"%s\"} %llu\n", n, (unsigned long long)t.logins[1], n,
			    (unsigned long long)t.logins[0], n,
			    (unsigned long long)t.logins[0]);
		for (size_t c = 0; c < svc->ncerts; c++) {
			X509 *x = SSL_CTX_get0_certificate(svc->pair_ctx[c]);
			int days, secs;
			if (x == NULL || !ASN1_TIME_diff(&days, &secs, NULL,
			    X509_get0_notAfter(x)))
				continue;
			label_value(svc->certs[c], strlen(svc->certs[c]), v,
			    sizeof(v));
			put(o, "mailproxy_certificate_expiry_seconds{service=\"%s\","
			    "cert=\"%s\"} %lld\n", n, v,
			    (long long)days * 86400 + secs);
		}
		/* upstream_cert: the proxy's own identity toward the upstream
		 * lapses too (a connector stops relaying). */
		if (svc->upstream_cert != NULL && svc->upstream_ctx != NULL) {
			X509 *x = SSL_CTX_get0_certificate(svc->upstream_ctx);
			int days, secs;
			if (x != NULL && ASN1_TIME_diff(&days, &secs, NULL,
			    X509_get0_notAfter(x))) {
				label_value(svc->upstream_cert,
				    strlen(svc->upstream_cert), v, sizeof(v));
				put(o, "mailproxy_certificate_expiry_seconds{service="
				    "\"%s\",cert=\"%s\"} %lld\n", n, v,
				    (long long)days * 86400 + secs);
			}
		}
		for (int k = 0; k < R_COUNT; k++)	/* from the first failure */
			if (t.upfail[k] != 0)
				put(o, "mailproxy_upstream_failures_total{service="
				    "\"%s\",reason=\"%s\"} %llu\n", n,
				    reason_name((enum close_reason)k),
				    (unsigned long long)t.upfail[k]);
		if (t.up_seen != 0)
			put(o, "mailproxy_upstream_certificate_expiry_seconds{"
			    "service=\"%s\"} %lld\n", n,
			    (long long)(t.up_not_after - time(NULL)));
		if (svc->oauth2.slot >= 0)
			render_oauth2(o, n, svc->oauth2.slot);
	}
	/* An account's token store, as service "account:NAME". */
	for (size_t i = 0; i < cf->naccounts; i++) {
		const struct account *a = &cf->accounts[i];
		char name[300], n[2 * 300 + 1];
		if (a->oauth2.slot < 0)
			continue;
		snprintf(name, sizeof(name), "account:%s", a->name);
		label_value(name, strlen(name), n, sizeof(n));
		render_oauth2(o, n, a->oauth2.slot);
	}
}

/* ---- the HTTP endpoint ------------------------------------------------- */

struct scrape {
	int		 fd;
	ev_io		 io;
	ev_timer	 timer;
	char		 req[1024];
	size_t		 reqlen;
	struct out	 resp;
	size_t		 off;
};

static int		 mfd = -1;
static ev_io		 mio;
static const struct config *mcf;

static void
scrape_free(EV_P_ struct scrape *sc)
{
	ev_io_stop(EV_A_ &sc->io);
	ev_timer_stop(EV_A_ &sc->timer);
	close(sc->fd);
	free(sc->resp.p);
	free(sc);
}

static void
scrape_timeout(EV_P_ ev_timer *w, int revents)
{
	(void)revents;
	scrape_free(EV_A_ w->data);	/* a slow scraper is dropped */
}

/*
 * Ready unless draining, or a service's upstream failed its last
 * max_failures connection attempts (those of the worker that tried last).
 * Returns 1 when ready; why is said in body either way.
 */
static int
readiness(const struct config *cf, struct out *body)
{
	int ready = 1;

	if (draining_now) {
		put(body, "not ready: draining (stopping)\n");
		return 0;
	}
	for (size_t i = 0; cf != NULL && i < cf->nservices; i++) {
		const char *name = cf->services[i].name;
		const struct svc_metrics *last = NULL;

		for (int w = 0; w < nworkers; w++)
			for (int k = 0; k < MAX_SVC; k++) {
				const struct svc_metrics *m = &shm[w * MAX_SVC + k];
				if (strcmp(m->name, name) == 0 && m->connect_tried &&
				    (last == NULL ||
				    m->connect_tried > last->connect_tried))
					last = m;
			}
		if (last != NULL && cf->ready_upstream_failures > 0 &&
		    last->connect_streak >= (uint32_t)cf->ready_upstream_failures) {
			put(body, "not ready: [%s] upstream %s failed its last %u "
			    "connection attempts\n", name, cf->services[i].upstream,
			    last->connect_streak);
			ready = 0;
		}
	}
	if (ready)
		put(body, "ready\n");
	return ready;
}

static void
respond(struct scrape *sc)
{
	struct out body = { malloc(8192), 0, 8192 };
	const char *status = "200 OK";

	if (body.p == NULL)
		return;
	if (strncmp(sc->req, "GET /metrics ", 13) == 0 ||
	    strncmp(sc->req, "GET /metrics?", 13) == 0)
		render(mcf, &body);
	else if (strncmp(sc->req, "GET /healthz ", 13) == 0)
		put(&body, "ok\n");
	else if (strncmp(sc->req, "GET /readyz ", 12) == 0) {
		if (!readiness(mcf, &body))
			status = "503 Service Unavailable";
	}
	else {
		status = "404 Not Found";
		put(&body, "not found\n");
	}
	sc->resp.p = malloc(body.len + 256);
	sc->resp.cap = body.len + 256;
	sc->resp.len = 0;
	if (sc->resp.p != NULL) {
		put(&sc->resp, "HTTP/1.0 %s\r\nContent-Type: text/plain; "
		    "version=0.0.4\r\nContent-Length: %zu\r\nConnection: close\r\n"
		    "\r\n", status, body.len);
		if (sc->resp.len + body.len <= sc->resp.cap) {
			memcpy(sc->resp.p + sc->resp.len, body.p, body.len);
			sc->resp.len += body.len;
		}
	}
	free(body.p);
}

static void
scrape_cb(EV_P_ ev_io *w, int revents)
{
	struct scrape *sc = w->data;
	ssize_t n;

	(void)revents;
	if (sc->resp.p == NULL) {
		n = recv(sc->fd, sc->req + sc->reqlen, sizeof(sc->req) - 1 -
		    sc->reqlen, 0);
		if (n <= 0) {
			if (n < 0 && errno == EAGAIN)
				return;
			scrape_free(EV_A_ sc);
			return;
		}
		sc->reqlen += (size_t)n;
		sc->req[sc->reqlen] = '\0';
		if (strstr(sc->req, "\r\n\r\n") == NULL &&
		    strstr(sc->req, "\n\n") == NULL) {
			if (sc->reqlen == sizeof(sc->req) - 1)
				scrape_free(EV_A_ sc);
			return;
		}
		respond(sc);
		if (sc->resp.p == NULL) {
			scrape_free(EV_A_ sc);
			return;
		}
		ev_io_stop(EV_A_ &sc->io);
		ev_io_set(&sc->io, sc->fd, EV_WRITE);
		ev_io_start(EV_A_ &sc->io);
	}
	n = send(sc->fd, sc->resp.p + sc->off, sc->resp.len - sc->off,
	    MSG_NOSIGNAL);
	if (n < 0 && errno == EAGAIN)
		return;
	if (n > 0)
		sc->off += (size_t)n;
	if (n < 0 || sc->off == sc->resp.len)
		scrape_free(EV_A_ sc);
}

static void
maccept_cb(EV_P_ ev_io *w, int revents)
{
	int fd;

	(void)revents;
	while ((fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		struct scrape *sc = calloc(1, sizeof(*sc));
		if (sc == NULL) {
			close(fd);
			continue;
		}
		sc->fd = fd;
		ev_io_init(&sc->io, scrape_cb, fd, EV_READ);
		sc->io.data = sc;
		ev_timer_init(&sc->timer, scrape_timeout, 5., 0.);
		sc->timer.data = sc;
		ev_io_start(EV_A_ &sc->io);
		ev_timer_start(EV_A_ &sc->timer);
	}
}

void
metrics_serve(EV_P_ const struct config *cf, int fd)
{
	mcf = cf;
	if (mfd >= 0) {
		ev_io_stop(EV_A_ &mio);
		close(mfd);
		mfd = -1;
	}
	if (fd < 0)
		return;
	mfd = fd;
	ev_io_init(&mio, maccept_cb, fd, EV_READ);
	ev_io_start(EV_A_ &mio);
}

uint64_t
metrics_sessions_open(void)
{
	uint64_t open = 0;

	for (int i = 0; shm != NULL && i < nworkers * MAX_SVC; i++)
		open += shm[i].opened - shm[i].closed;
	return open;
}
