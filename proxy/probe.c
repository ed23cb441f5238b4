/*
 * probe: one synchronous dial of an upstream, for mailproxy -T.
 */
#include "probe.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/x509.h>

#include "buffer.h"
#include "negotiate.h"
#include "oauth2.h"
#include "oauth2_grant.h"
#include "tls.h"

struct link {
	int	 fd;
	SSL	*ssl;
};

static void
set_timeout(int fd, int seconds)
{
	struct timeval tv = { seconds, 0 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int
dial(const struct service *svc, char *out, size_t len)
{
	char addr[64];
	int fd = -1;

	for (size_t i = 0; i < svc->nupstream_addrs; i++) {
		const struct sockaddr_any *a = &svc->upstream_addrs[i];
		sockaddr_text((const struct sockaddr *)&a->ss, addr, sizeof(addr));
		if ((fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
			continue;
		set_timeout(fd, svc->timeouts.connect);
		if (connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0)
			return fd;
		snprintf(out, len, "connect %s: %s", addr, errno == EINPROGRESS ||
		    errno == EAGAIN ? "timeout" : strerror(errno));
		close(fd);
		fd = -1;
	}
	return -1;
}

static ssize_t
link_read(struct link *l, char *buf, size_t len)
{
	if (l->ssl != NULL) {
		int n = SSL_read(l->ssl, buf, (int)len);
		return n > 0 ? n : -1;
	}
	return recv(l->fd, buf, len, 0);
}

static int
link_write(struct link *l, const char *p, size_t len)
{
	if (l->ssl != NULL)
		return SSL_write(l->ssl, p, (int)len) == (int)len ? 0 : -1;
	return send(l->fd, p, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

static int
flush(struct link *l, struct buf *b)
{
	size_t n;
	const char *p = buf_peek(b, &n);

	if (p == NULL)
		return 0;
	if (link_write(l, p, n) < 0)
		return -1;
	buf_consume(b, n);
	return 0;
}

static int
start_tls(const struct service *svc, struct link *l, char *out, size_t len)
{
	long v;

	set_timeout(l->fd, svc->timeouts.handshake);
	if ((l->ssl = SSL_new(svc->upstream_ctx)) == NULL ||
	    tls_upstream_setup(l->ssl, svc) < 0) {
		snprintf(out, len, "TLS setup failed");
		return -1;
	}
	SSL_set_fd(l->ssl, l->fd);
	ERR_clear_error();
	(void)tls_cert_asked(true);
	if (SSL_connect(l->ssl) == 1)
		return 0;
	v = SSL_get_verify_result(l->ssl);
	/* The key's pin too: what an admin copies into upstream_pin for a
	 * server whose certificate cannot verify. */
	if (v == X509_V_ERR_APPLICATION_VERIFICATION)
		snprintf(out, len, "certificate: key not pinned (pin=%s)",
		    tls_pin_seen());
	else if (v != X509_V_OK)
		snprintf(out, len, "certificate: %s (name %s) pin=%s",
		    X509_verify_cert_error_string(v),
		    svc->upstream_name ? svc->upstream_name : "-",
		    tls_pin_seen()[0] ? tls_pin_seen() : "-");
	else {
		snprintf(out, len, "TLS handshake failed: ");
		log_ssl_errors(out, len);
	}
	return -1;
}

/* Reads one reply until its last line; collects what follows the code. */
static int
read_caps(struct link *l, enum proto proto, char *caps, size_t len)
{
	char buf[4096];
	size_t have = 0, o = 0;
	ssize_t n;

	caps[0] = '\0';
	while (have < sizeof(buf) - 1 &&
	    (n = link_read(l, buf + have, sizeof(buf) - 1 - have)) > 0) {
		have += (size_t)n;
		buf[have] = '\0';
		if ((proto == PROTO_SMTP && (strstr(buf, "\r\n250 ") != NULL ||
		    strncmp(buf, "250 ", 4) == 0)) ||
		    (proto == PROTO_POP3 && (strstr(buf, "\r\n.\r\n") != NULL ||
		    strncmp(buf, "-ERR", 4) == 0)))
			break;
	}
	for (char *line = strtok(buf, "\r\n"); line != NULL;
	    line = strtok(NULL, "\r\n")) {
		const char *word = proto == PROTO_SMTP ? line + 4 : line;
		if ((proto == PROTO_SMTP && (strlen(line) < 4 ||
		    line == buf)) || (proto == PROTO_POP3 &&
		    (line[0] == '+' || line[0] == '-' || line[0] == '.')))
			continue;
		o += (size_t)snprintf(caps + o, o < len ? len - o : 0, "%s%s",
		    o ? " " : "", word);
	}
	return 0;
}

/* upstream_auth: the same credentials a session would use. */
static int
set_auth(const struct service *svc, struct negotiator *n, char *out,
    size_t len)
{
	char secret[SECRET_MAX + 1], why[300];
	int sl, rc = -1;

	/* An application's own token: fetched now, as the proxy would. */
	if ((sl = svc->oauth2.store != NULL ? oauth2_store_token(&svc->oauth2,
	    secret, sizeof(secret), why, sizeof(why)) :
	    oauth2_app_grant(&svc->oauth2) ? oauth2_fetch_once(&svc->oauth2,
	    secret, sizeof(secret), why, sizeof(why)) : config_auth_secret(svc,
	    secret, sizeof(secret), why, sizeof(why))) < 0)
		snprintf(out, len, "upstream-auth-no-token: %s", why);
	else if ((rc = neg_set_auth(n, svc->upstream_auth, svc->upstream_user,
	    secret, (size_t)sl)) < 0)
		snprintf(out, len, "out of memory");
	OPENSSL_cleanse(secret, sizeof(secret));
	return rc;
}

int
probe_service(const struct service *svc, char *out, size_t len)
{
	struct link l = { -1, NULL };
	struct negotiator *n = NULL;
	struct buf up, cl;
	struct neg_out no = { &up, &cl };
	enum neg_verdict v = NEG_CONTINUE;
	char buf[4096], caps[1024] = "", tls[128] = "-";
	ssize_t got;
	int rc = -1;

	/* What goes upstream carries the login (AUTH PLAIN/LOGIN, LOGIN). */
	buf_init_secret(&up, 4096);
	buf_init(&cl, 4096);
	if ((l.fd = dial(svc, out, len)) < 0)
		goto done;
	if (svc->upstream_tls == TLS_MODE_IMPLICIT &&
	    start_tls(svc, &l, out, len) < 0)
		goto done;
	/* The greeting, and for STARTTLS the whole dialogue, as a session
	 * would run it. */
	n = neg_new(svc->protocol, svc->ehlo_name,
	    svc->upstream_tls == TLS_MODE_STARTTLS, true);
	if (n == NULL) {
		snprintf(out, len, "out of memory");
		goto done;
	}
	/* accounts: each client's own login; the dialogue is tried without. */
	if (svc->upstream_auth != AUTH_NONE && svc->upstream_auth !=
	    AUTH_ACCOUNTS && set_auth(svc, n, out, len) < 0)
		goto done;
	set_timeout(l.fd, svc->timeouts.negotiation);
	while (v != NEG_RELAY && v != NEG_FAIL) {
		if ((got = link_read(&l, buf, sizeof(buf))) <= 0) {
			snprintf(out, len, "upstream closed or timed out in "
			    "state %s", neg_state_name(n));
			goto done;
		}
		v = neg_feed(n, buf, (size_t)got, &no);
		if (v == NEG_START_TLS) {
			if (start_tls(svc, &l, out, len) < 0)
				goto done;
			v = neg_tls_ready(n, &no);
		}
		if (flush(&l, &up) < 0) {
			snprintf(out, len, "write failed");
			goto done;
		}
	}
	if (v == NEG_FAIL) {
		snprintf(out, len, "%s: %s", reason_name(neg_reason(n)),
		    neg_detail(n));
		goto done;
	}
	/* What a client would learn: the post-TLS capabilities. */
	if (svc->upstream_auth != AUTH_NONE && svc->upstream_auth !=
	    AUTH_ACCOUNTS) {
		/* Logged in: the keywords the device will be shown. */
		const char *c = neg_caps(n);
		size_t o = 0;
		for (const char *e; (e = strstr(c, "\r\n")) != NULL; c = e + 2)
			o += (size_t)snprintf(caps + o, o < sizeof(caps) ?
			    sizeof(caps) - o : 0, "%s%.*s", o ? " " : "",
			    (int)(e - c), c);
	} else if (svc->protocol == PROTO_IMAP) {
		size_t cl_len;
		const char *g = buf_peek(&cl, &cl_len);
		const char *c = g ? strstr(g, "[CAPABILITY ") : NULL;
		if (c != NULL)
			snprintf(caps, sizeof(caps), "%.*s", (int)(strcspn(c + 12,
			    "]")), c + 12);
	} else {
		const char *cmd = svc->protocol == PROTO_SMTP ? "EHLO " : "CAPA";
		char line[300];
		snprintf(line, sizeof(line), "%s%s\r\n", cmd,
		    svc->protocol == PROTO_SMTP ? svc->ehlo_name : "");
		if (link_write(&l, line, strlen(line)) == 0)
			read_caps(&l, svc->protocol, caps, sizeof(caps));
	}
	tls_describe(l.ssl, tls, sizeof(tls));
	snprintf(out, len, "ok upstream=%s tls=%s verify=%s%s%s caps=\"%s\"%s%s",
	    svc->upstream, tls, svc->upstream_tls == TLS_MODE_NONE ? "-" :
	    svc->upstream_verify ? "ok" : svc->nupstream_pins > 0 ? "pin" :
	    "off", svc->upstream_auth != AUTH_NONE ? " auth=" : "",
	    svc->upstream_auth != AUTH_NONE ?
	    upstream_auth_names[svc->upstream_auth] : "", caps,
	    svc->upstream_tls != TLS_MODE_NONE ? " pin=" : "",
	    svc->upstream_tls != TLS_MODE_NONE ? tls_pin_seen() : "");
	/* upstream_cert: did the server ask for it (a handshake that went on
	 * after sending it is one the server accepted)? */
	if (svc->upstream_cert != NULL) {
		size_t o = strlen(out);
		snprintf(out + o, len > o ? len - o : 0, " client_cert=%s",
		    tls_cert_asked(false) ? "sent" : "not-asked");
	}
	rc = 0;
done:
	if (l.ssl != NULL)
		SSL_free(l.ssl);
	if (l.fd >= 0)
		close(l.fd);
	neg_free(n);
	buf_release(&up);
	buf_release(&cl);
	return rc;
}
