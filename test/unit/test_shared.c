/*
 * The shared tables' readers when a writer died mid-write: the seqlock
 * counter stays odd (or a session-cache slot stays locked) for good.  Each
 * reader must return, in a child watched by the parent (a reader that
 * spins for ever is killed and counted as a failure), with its fallback:
 * no token yet, an account not confirmed, the old addresses, tickets from
 * the last good copy, the slot taken over.
 *
 * The tables are found as the shared anonymous mappings their init
 * function adds (/proc/self/maps), their counter is their first word: the
 * test writes there what a dying writer leaves.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "accounts.h"
#include "config.h"
#include "dns.h"
#include "oauth2.h"
#include "sesscache.h"
#include "tickets.h"
#include "unit.h"

#define MAPS_MAX	512

/* The start addresses of the process's shared mappings of /dev/zero. */
static size_t
shared_maps(uintptr_t *out, size_t cap)
{
	char line[512];
	size_t n = 0;
	FILE *fp = fopen("/proc/self/maps", "r");

	if (fp == NULL)
		return 0;
	while (n < cap && fgets(line, sizeof(line), fp) != NULL) {
		unsigned long start;
		char perms[8];
		if (sscanf(line, "%lx-%*x %7s", &start, perms) == 2 &&
		    perms[3] == 's' && strstr(line, "/dev/zero") != NULL)
			out[n++] = (uintptr_t)start;
	}
	fclose(fp);
	return n;
}

/* The one shared mapping init() adds; NULL unless there is exactly one. */
static void *
new_map(int (*init)(void))
{
	static uintptr_t before[MAPS_MAX], after[MAPS_MAX];
	size_t nb = shared_maps(before, MAPS_MAX), na;
	void *found = NULL;
	int count = 0;

	if (init() < 0)
		return NULL;
	na = shared_maps(after, MAPS_MAX);
	for (size_t i = 0; i < na; i++) {
		bool old = false;
		for (size_t k = 0; k < nb && !old; k++)
			old = after[i] == before[k];
		if (!old) {
			found = (void *)after[i];
			count++;
		}
	}
	return count == 1 ? found : NULL;
}

/*
 * Runs fn(arg) in a child; its result (0..255), or -1 if the child did
 * not end within secs (then it is killed).
 */
static int
bounded(int (*fn)(const void *), const void *arg, double secs)
{
	struct timespec ms = { 0, 1000 * 1000 };
	int status;
	pid_t pid;

	fflush(NULL);
	if ((pid = fork()) < 0)
		return -2;
	if (pid == 0)
		_exit(fn(arg));
	for (int i = 0; i < secs * 1000; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : -3;
		nanosleep(&ms, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return -1;
}

static void
odd(void *seq)
{
	__atomic_store_n((uint32_t *)seq, 7, __ATOMIC_RELEASE);
}

/* ---- the OAuth2 token table -------------------------------------------- */

static int
read_token(const void *arg)
{
	char out[64], why[128];
	size_t len;

	(void)arg;
	return oauth2_take(0, out, sizeof(out), &len, why, sizeof(why)) ==
	    OAUTH2_PENDING && len == 0 ? 1 : 0;
}

static int
ready_token(const void *arg)
{
	char why[128];

	(void)arg;
	return oauth2_ready(0, why, sizeof(why)) == OAUTH2_PENDING ? 1 : 0;
}

static void
test_oauth2_table(void)
{
	void *table = new_map(oauth2_init);

	CHECK(table != NULL);
	if (table == NULL)
		return;
	odd(table);
	/* "No token yet": the session waits or answers a temporary error. */
	CHECK(bounded(read_token, NULL, 5) == 1);
	CHECK(bounded(ready_token, NULL, 5) == 1);
}

/* ---- the accounts table ----------------------------------------------- */

static int
account_current(const void *arg)
{
	(void)arg;
	return accounts_current(12345) ? 2 : 1;
}

static void
test_accounts_table(void)
{
	void *live = new_map(accounts_shared_init);

	CHECK(live != NULL);
	if (live == NULL)
		return;
	odd(live);
	/* Not confirmed: a login is refused rather than let a removed
	 * account in. */
	CHECK(bounded(account_current, NULL, 5) == 1);
}

/* ---- a service's upstream addresses ------------------------------------ */

static int
dns_read(const void *arg)
{
	const struct service *svc = arg;
	size_t n;
	const struct sockaddr_any *a = dns_addrs(svc, &n);

	return a != NULL && n == 1 ? 1 : 0;
}

static void
test_dns_table(void)
{
	const char *text = "[s]\nprotocol = imap\nlisten = 127.0.0.1:0\n"
	    "client_tls = none\nupstream = 127.0.0.1:143\n"
	    "upstream_tls = implicit\nupstream_verify = no\n";
	static uintptr_t before[MAPS_MAX], after[MAPS_MAX];
	char *errors = NULL;
	struct config *cf = config_parse(text, strlen(text), "t.ini", &errors);
	size_t nb, na;
	void *sh = NULL;

	CHECK(cf != NULL);
	if (cf == NULL) {
		fprintf(stderr, "%s", errors);
		free(errors);
		return;
	}
	nb = shared_maps(before, MAPS_MAX);
	CHECK(dns_share(cf) == 0);
	na = shared_maps(after, MAPS_MAX);
	for (size_t i = 0; i < na; i++) {
		bool old = false;
		for (size_t k = 0; k < nb && !old; k++)
			old = after[i] == before[k];
		if (!old)
			sh = (void *)after[i];
	}
	CHECK(sh != NULL);
	if (sh != NULL) {
		odd(sh);
		/* The copy this process had. */
		CHECK(bounded(dns_read, &cf->services[0], 5) == 1);
	}
	config_unref(cf);
}

/* ---- TLS: session tickets and the session-ID cache --------------------- */

static struct config *
tls_config(void)
{
	const char *d = getenv("MAILPROXY_CERTS");
	char text[1024], *errors = NULL;
	struct config *cf;

	snprintf(text, sizeof(text), "[s]\nprotocol = imap\n"
	    "listen = 127.0.0.1:0\nclient_tls = implicit\n"
	    "cert = %s/server-ecdsa.crt\nkey = %s/server-ecdsa.key\n"
	    "upstream = 127.0.0.1:143\nupstream_tls = none\n",
	    d ? d : "certs/dev", d ? d : "certs/dev");
	if ((cf = config_parse(text, strlen(text), "t.ini", &errors)) == NULL) {
		fprintf(stderr, "%s", errors);
		free(errors);
	}
	return cf;
}

/*
 * One handshake over a socketpair, client session offered if not NULL.
 * 1 if both sides completed (2 if the session was resumed), 0 if not;
 * *out gets the client's session when out is not NULL.
 */
static int
handshake(SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *offer,
    SSL_SESSION **out)
{
	int sv[2], a = 0, b = 0, rc = 0;
	SSL *s, *c;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 0;
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	s = SSL_new(sctx);
	c = SSL_new(cctx);
	SSL_set_fd(s, sv[0]);
	SSL_set_fd(c, sv[1]);
	SSL_set_accept_state(s);
	SSL_set_connect_state(c);
	if (offer != NULL)
		SSL_set_session(c, offer);
	for (int i = 0; i < 50 && (a != 1 || b != 1); i++) {
		if (a != 1 && (a = SSL_do_handshake(c)) != 1 &&
		    SSL_get_error(c, a) != SSL_ERROR_WANT_READ)
			break;
		if (b != 1 && (b = SSL_do_handshake(s)) != 1 &&
		    SSL_get_error(s, b) != SSL_ERROR_WANT_READ)
			break;
	}
	if (a == 1 && b == 1) {
		rc = SSL_session_reused(s) ? 2 : 1;
		if (out != NULL)
			*out = SSL_get1_session(c);
	}
	SSL_free(s);
	SSL_free(c);
	close(sv[0]);
	close(sv[1]);
	return rc;
}

struct tls_case {
	SSL_CTX		*sctx, *cctx;
};

static int
ticket_handshake(const void *arg)
{
	const struct tls_case *tc = arg;

	return handshake(tc->sctx, tc->cctx, NULL, NULL);
}

static void
test_tickets_table(void)
{
	void *shared = new_map(tickets_init);
	struct tls_case tc;
	struct config *cf;

	CHECK(shared != NULL);
	if (shared == NULL)
		return;
	tickets_use(NULL, 0);		/* an own key, published */
	if ((cf = tls_config()) == NULL) {
		CHECK(cf != NULL);
		return;
	}
	tc.sctx = cf->services[0].client_ctx;
	tc.cctx = SSL_CTX_new(TLS_method());
	CHECK(bounded(ticket_handshake, &tc, 10) == 1);
	odd(shared);
	/* Tickets from the last good copy: the handshake is not failed. */
	CHECK(bounded(ticket_handshake, &tc, 10) == 1);
	SSL_CTX_free(tc.cctx);
	config_unref(cf);
}

/* A PID that no process has (a child that ended and was reaped). */
static pid_t
dead_pid(void)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(0);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	return pid;
}

static int
resume(const void *arg)
{
	const struct tls_case *tc = arg;
	SSL_SESSION *sess = NULL;
	int rc;

	if (handshake(tc->sctx, tc->cctx, NULL, &sess) != 1 || sess == NULL)
		return 0;
	rc = handshake(tc->sctx, tc->cctx, sess, NULL);
	SSL_SESSION_free(sess);
	return rc;
}

static void
test_sesscache_table(void)
{
	static uintptr_t before[MAPS_MAX], after[MAPS_MAX];
	size_t nb = shared_maps(before, MAPS_MAX), na;
	uint32_t *slot = NULL;
	struct tls_case tc;
	struct config *cf;
	pid_t dead = dead_pid();

	/* Two slots: one bucket, both ways held by the dead worker. */
	CHECK(sesscache_init(2) == 0);
	na = shared_maps(after, MAPS_MAX);
	for (size_t i = 0; i < na; i++) {
		bool old = false;
		for (size_t k = 0; k < nb && !old; k++)
			old = after[i] == before[k];
		if (!old)
			slot = (uint32_t *)after[i];
	}
	CHECK(slot != NULL && dead > 0);
	if (slot == NULL || (cf = tls_config()) == NULL)
		return;
	/* A worker killed while it wrote the bucket's first way, the one
	 * a new session goes to while both are empty: struct slot starts
	 * with its counter (left odd) and its holder's PID. */
	odd(slot);
	__atomic_store_n(&slot[1], (uint32_t)dead, __ATOMIC_RELEASE);
	tc.sctx = cf->services[0].client_ctx;
	sesscache_setup(tc.sctx);
	/* TLS 1.2 without tickets: the session-ID cache serves. */
	tc.cctx = SSL_CTX_new(TLS_method());
	SSL_CTX_set_max_proto_version(tc.cctx, TLS1_2_VERSION);
	SSL_CTX_set_options(tc.cctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(tc.cctx, SSL_SESS_CACHE_CLIENT);
	/* The slot is taken over: the session is cached and resumes. */
	CHECK(bounded(resume, &tc, 10) == 2);
	SSL_CTX_free(tc.cctx);
	config_unref(cf);
}

void
test_shared(void)
{
	test_oauth2_table();
	test_accounts_table();
	test_dns_table();
	test_tickets_table();
	test_sesscache_table();
}
