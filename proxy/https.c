/*
 * https: a small HTTPS client for the OAuth2 endpoints.  See https.h for
 * the contract; the response is read by the parser of http.c.
 *
 * A request walks RESOLVE -> CONNECT (each address in turn) -> [PROXY:
 * CONNECT through an HTTP proxy] -> HANDSHAKE -> EXCHANGE, on one endpoint
 * (endpoint.h) with one ev_timer as the overall deadline.  The outcome is
 * always reported from the `report' timer, so the callback never runs
 * inside https_post, nor inside a resolver_free that a caller makes.
 */
#include "https.h"
#include "http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/mem.h>
#include <openssl/x509.h>

#include "addr.h"
#include "buffer.h"
#include "endpoint.h"
#include "log.h"
#include "resolve.h"
#include "tls.h"

/* Reads in pieces of this much; the parser keeps what it needs. */
#define HTTPS_IN_CAP	(16 * 1024)
#define HTTPS_PORT	"443"
/* curl's default for a proxy named without a port. */
#define PROXY_PORT	"1080"

/* ---- URLs and the environment ------------------------------------------- */

/* A host as a URL names it: an IP literal or letters, digits, . - _ */
static bool
host_valid(const char *host, bool bracketed)
{
	if (bracketed || strchr(host, ':') != NULL)
		return bracketed && addr_is_ip_literal(host) &&
		    strchr(host, ':') != NULL;
	return *host != '\0' && strspn(host, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") == strlen(host);
}

/*
 * Splits an authority ("host", "host:port", "[v6]" or "[v6]:port", len
 * bytes) into malloc'ed parts; defport when it names none.  -1 if it is not
 * valid (userinfo included: neither end takes credentials in a URL).
 */
static int
authority_split(const char *a, size_t len, const char *defport, char **host,
    char **port)
{
	const char *colon = NULL;
	char *text;
	int rc;

	for (size_t i = len; i > 0; i--)
		if (a[i - 1] == ':' || a[i - 1] == ']') {
			colon = a[i - 1] == ':' ? a + i - 1 : NULL;
			break;
		}
	if (len == 0 || memchr(a, '@', len) != NULL)
		return -1;
	if (colon != NULL && a[0] != '[' && memchr(a, ':', (size_t)(colon -
	    a)) != NULL)
		return -1;		/* a bare IPv6 address */
	if (asprintf(&text, "%.*s%s%s", (int)len, a, colon ? "" : ":",
	    colon ? "" : defport) < 0)
		return -1;
	rc = hostport_split(text, host, port);
	free(text);
	if (rc < 0)
		return -1;
	if (!host_valid(*host, a[0] == '[') || strtoul(*port, NULL, 10) == 0) {
		free(*host);
		free(*port);
		*host = *port = NULL;
		return -1;
	}
	return 0;
}

struct url {
	char	*host;		/* without brackets */
	char	*port;
	char	*path;		/* from the first '/', query included */
};

static void
url_free(struct url *u)
{
	free(u->host);
	free(u->port);
	free(u->path);
	memset(u, 0, sizeof(*u));
}

/* "https://host[:port][/path]": printable ASCII, no userinfo or fragment. */
static int
url_parse(const char *url, struct url *u)
{
	const char *a;
	size_t alen;

	memset(u, 0, sizeof(*u));
	if (strncasecmp(url, "https://", 8) != 0 || strchr(url, '#') != NULL)
		return -1;
	for (const char *c = url; *c != '\0'; c++)
		if (*c <= ' ' || *c >= 0x7f)
			return -1;
	a = url + 8;
	alen = strcspn(a, "/?");
	if (authority_split(a, alen, HTTPS_PORT, &u->host, &u->port) < 0)
		return -1;
	if (asprintf(&u->path, "%s%s", a[alen] == '/' ? "" : "/",
	    a + alen) < 0) {
		u->path = NULL;
		url_free(u);
		return -1;
	}
	return 0;
}

/* "http://HOST:PORT[/]" or "HOST:PORT" (https_proxy's forms). */
static int
proxy_parse(const char *proxy, char **host, char **port)
{
	const char *a = proxy, *scheme = strstr(proxy, "://");
	size_t alen;

	if (scheme != NULL) {
		if (strncasecmp(proxy, "http://", 7) != 0)
			return -1;	/* an https or socks proxy: not ours */
		a = proxy + 7;
	}
	alen = strlen(a);
	if (alen > 0 && a[alen - 1] == '/')
		alen--;
	if (memchr(a, '/', alen) != NULL)
		return -1;
	for (size_t i = 0; i < alen; i++)
		if (a[i] <= ' ' || a[i] >= 0x7f)
			return -1;
	return authority_split(a, alen, PROXY_PORT, host, port);
}

/* The first of two environment variables that is set and not empty. */
static const char *
env2(const char *lower, const char *upper)
{
	const char *v = getenv(lower);

	if (v == NULL || *v == '\0')
		v = getenv(upper);
	return v != NULL && *v != '\0' ? v : NULL;
}

/*
 * Does a no_proxy list name host?  Entries are comma (or space) separated:
 * "*", a host name or address, or a domain (".example.com" and
 * "example.com" both cover example.com and its subdomains).  An address
 * matches only itself: "2.3.4" is no suffix of "1.2.3.4".
 */
static bool
no_proxy_match(const char *list, const char *host)
{
	size_t hlen = strlen(host);
	bool ip = addr_is_ip_literal(host);

	while (*list != '\0') {
		const char *e = list + strspn(list, ", \t");
		size_t n = strcspn(e, ", \t");

		list = e + n;
		if (n == 1 && *e == '*')
			return true;
		if (n > 0 && *e == '.') {
			e++;
			n--;
		}
		if (n > 2 && e[0] == '[' && e[n - 1] == ']') {
			e++;
			n -= 2;
		}
		if (n == 0 || n > hlen || (ip && n != hlen))
			continue;
		if (strncasecmp(host + hlen - n, e, n) == 0 &&
		    (n == hlen || host[hlen - n - 1] == '.'))
			return true;
	}
	return false;
}

const char *
https_proxy_for(const char *url)
{
	const char *proxy = env2("https_proxy", "HTTPS_PROXY");
	const char *no = env2("no_proxy", "NO_PROXY");
	struct url u;

	if (proxy == NULL || no == NULL)
		return proxy;
	/* A URL that does not parse fails in https_post, with or without. */
	if (url_parse(url, &u) < 0)
		return proxy;
	if (no_proxy_match(no, u.host))
		proxy = NULL;
	url_free(&u);
	return proxy;
}

SSL_CTX *
https_ctx_new(const char *ca_file, char *err, size_t errlen)
{
	return tls_client_ctx_base(ca_file, TLS1_2_VERSION, true, err, errlen);
}

/* ---- a request on the loop ---------------------------------------------- */

enum https_phase {
	PH_RESOLVE,
	PH_CONNECT,
	PH_PROXY,
	PH_HANDSHAKE,
	PH_EXCHANGE,
	PH_DONE
};

/* For "timed out (...)": what the request was waiting for. */
static const char *const phase_names[] = {
	[PH_RESOLVE] = "resolving",
	[PH_CONNECT] = "connecting",
	[PH_PROXY] = "waiting for the proxy's CONNECT reply",
	[PH_HANDSHAKE] = "TLS handshake",
	[PH_EXCHANGE] = "waiting for the response",
	[PH_DONE] = "done",
};

/*
 * Lifetime: two holders keep a request.  The caller (live) until its
 * callback returned or it cancelled; the resolver (resolving) until it
 * called back, which it always does and which cannot be cancelled.  The
 * request is freed when neither holds it (release).  Everything else
 * (socket, TLS, buffers, timer) goes when the request ends (teardown).
 */
struct https_req {
	struct ev_loop	*loop;
	SSL_CTX		*ctx;		/* a reference of ours */
	https_cb	 cb;
	void		*arg;
	enum https_phase phase;
	bool		 live;
	bool		 resolving;
	bool		 reporting;	/* inside cb */
	struct url	 url;
	char		*proxy_host;	/* NULL: direct */
	char		*proxy_port;
	char		*request;	/* the whole POST (a secret) until sent */
	size_t		 request_len;
	struct sockaddr_any *addrs;	/* of the host, or of the proxy */
	size_t		 naddrs;
	size_t		 next_addr;
	char		 addr[64];	/* the address dialled, for messages */
	struct endpoint	 ep;
	struct buf	 in;
	struct buf	 out;
	ev_timer	 timer;		/* the overall deadline */
	ev_timer	 report;	/* runs cb from the loop */
	int		 status;	/* 0 until a response completed */
	char		 error[256];
	struct http_parser resp;	/* last: large */
};

static void	dial(struct https_req *);

/* Wipes and frees the request text: once sent, or never. */
static void
forget_request(struct https_req *r)
{
	if (r->request != NULL) {
		OPENSSL_cleanse(r->request, r->request_len);
		free(r->request);
		r->request = NULL;
	}
}

/* Ends all activity: deadline, socket, TLS and buffers (wiped). */
static void
teardown(struct https_req *r)
{
	ev_timer_stop(r->loop, &r->timer);
	ep_close(r->loop, &r->ep);
	buf_release(&r->in);
	buf_release(&r->out);
	forget_request(r);
}

static void
release(struct https_req *r)
{
	if (r->live || r->resolving)
		return;
	teardown(r);
	ev_timer_stop(r->loop, &r->report);
	http_parser_wipe(&r->resp);
	url_free(&r->url);
	free(r->proxy_host);
	free(r->proxy_port);
	free(r->addrs);
	SSL_CTX_free(r->ctx);
	OPENSSL_cleanse(r, sizeof(*r));
	free(r);
}

/* The request is over: status, or 0 with r->error set.  cb runs soon. */
static void
finish(struct https_req *r, int status)
{
	teardown(r);
	r->status = status;
	r->phase = PH_DONE;
	ev_timer_start(r->loop, &r->report);
}

static void fail(struct https_req *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
fail(struct https_req *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
	finish(r, 0);
}

static void
report_cb(EV_P_ ev_timer *w, int revents)
{
	struct https_req *r = w->data;
	struct https_result res;

	(void)loop;
	(void)revents;
	memset(&res, 0, sizeof(res));
	res.status = r->status;
	if (r->status != 0) {
		res.body = r->resp.body != NULL ? r->resp.body : "";
		res.len = r->resp.body_len;
	} else
		res.error = r->error;
	r->reporting = true;
	r->cb(r->arg, &res);
	r->live = false;
	release(r);
}

static void
timeout_cb(EV_P_ ev_timer *w, int revents)
{
	struct https_req *r = w->data;

	(void)loop;
	(void)revents;
	fail(r, "timed out (%s)", phase_names[r->phase]);
}

/* The name the request connects to: the proxy's, when there is one. */
static const char *
dial_host(const struct https_req *r)
{
	return r->proxy_host != NULL ? r->proxy_host : r->url.host;
}

/*
 * Sends what is queued and feeds what arrives to the parser, as far as the
 * socket allows.  ERROR with r->error set on a transport or parse failure.
 * Bytes after a complete response stay in r->in.
 */
static enum http_progress
pump(struct https_req *r)
{
	enum http_progress pr = HTTP_MORE;
	enum ep_status st;
	const char *p;
	size_t len, used;

	if (!buf_empty(&r->out) && r->ep.wr_wait == 0 &&
	    ep_write(&r->ep, &r->out) == EP_ERROR) {
		snprintf(r->error, sizeof(r->error), "%s", r->ep.err);
		return HTTP_ERROR;
	}
	while (pr == HTTP_MORE && r->ep.rd_wait == 0) {
		st = ep_read(&r->ep, &r->in);
		while (pr == HTTP_MORE && (p = buf_peek(&r->in, &len)) != NULL) {
			pr = http_feed(&r->resp, p, len, &used);
			buf_consume(&r->in, used);
		}
		if (pr != HTTP_MORE)
			break;
		if (st == EP_EOF)
			pr = http_eof(&r->resp, r->ep.eof_clean);
		else if (st == EP_ERROR) {
			snprintf(r->error, sizeof(r->error), "%s", r->ep.err);
			return HTTP_ERROR;
		}
		/* EP_OK: the buffer had filled and is empty again. */
	}
	if (pr == HTTP_ERROR)
		snprintf(r->error, sizeof(r->error), "%s", r->resp.error);
	return pr;
}

static void
exchange_step(struct https_req *r)
{
	switch (pump(r)) {
	case HTTP_COMPLETE:
		finish(r, r->resp.status);
		return;
	case HTTP_ERROR:
		finish(r, 0);
		return;
	case HTTP_MORE:
		ep_update(r->loop, &r->ep, true, !buf_empty(&r->out));
		return;
	}
}

/*
 * Queues text (wiped when sent, if secret) and makes a parser ready for
 * the reply; -1 (and the request failed) if memory runs out.
 */
static int
ask(struct https_req *r, const char *text, size_t len, bool secret,
    bool head_only)
{
	buf_release(&r->out);
	if (secret)
		buf_init_secret(&r->out, len);
	else
		buf_init(&r->out, len);
	if (buf_append(&r->out, text, len) < 0) {
		fail(r, "out of memory");
		return -1;
	}
	http_parser_wipe(&r->resp);
	http_parser_init(&r->resp, head_only);
	return 0;
}

/* TLS is up: the request goes out and the response is read. */
static void
start_exchange(struct https_req *r)
{
	if (ask(r, r->request, r->request_len, true, false) < 0)
		return;
	forget_request(r);
	r->phase = PH_EXCHANGE;
	exchange_step(r);
}

/* Names why the handshake failed: verification first, as upstream.c. */
static void
handshake_failed(struct https_req *r)
{
	long v = SSL_get_verify_result(r->ep.ssl);

	/* INVALID_CALL: no certificate was checked (the peer sent none). */
	if (v != X509_V_OK && v != X509_V_ERR_INVALID_CALL)
		fail(r, "certificate verify failed: %s (name %s)",
		    X509_verify_cert_error_string(v), r->url.host);
	else
		fail(r, "TLS handshake with %s: %s", r->url.host, r->ep.err);
}

static void
handshake_step(struct https_req *r)
{
	switch (ep_handshake(&r->ep)) {
	case EP_OK:
		start_exchange(r);
		return;
	case EP_AGAIN:
		ep_update(r->loop, &r->ep, true, false);
		return;
	default:
		handshake_failed(r);
		return;
	}
}

/* TLS to the endpoint's host, directly or through the tunnel. */
static void
start_tls(struct https_req *r)
{
	static const uint8_t alpn[] = "\x08http/1.1";
	SSL *ssl;

	if ((ssl = SSL_new(r->ctx)) == NULL ||
	    tls_client_name(ssl, r->url.host, true) < 0 ||
	    SSL_set_alpn_protos(ssl, alpn, sizeof(alpn) - 1) != 0) {
		SSL_free(ssl);
		fail(r, "TLS setup for %s failed", r->url.host);
		return;
	}
	SSL_set_connect_state(ssl);
	ep_start_tls(&r->ep, ssl);
	r->phase = PH_HANDSHAKE;
	handshake_step(r);
}

static void
proxy_step(struct https_req *r)
{
	char why[sizeof(r->error)];

	switch (pump(r)) {
	case HTTP_MORE:
		ep_update(r->loop, &r->ep, true, !buf_empty(&r->out));
		return;
	case HTTP_ERROR:
		memcpy(why, r->error, sizeof(why));	/* fail() writes there */
		fail(r, "proxy %s: %s", r->addr, why);
		return;
	case HTTP_COMPLETE:
		break;
	}
	if (r->resp.status / 100 != 2) {
		fail(r, "proxy refused CONNECT: %s", r->resp.status_line);
		return;
	}
	/* Nothing may come before our ClientHello: it would be read as TLS. */
	if (!buf_empty(&r->in)) {
		fail(r, "proxy %s: bytes after its CONNECT reply", r->addr);
		return;
	}
	start_tls(r);
}

/* Connected to the proxy: ask it for a tunnel to the endpoint. */
static void
start_proxy(struct https_req *r)
{
	bool v6 = strchr(r->url.host, ':') != NULL;
	char *text;
	int n, rc;

	n = asprintf(&text, "CONNECT %s%s%s:%s HTTP/1.1\r\nHost: %s%s%s:%s\r\n"
	    "User-Agent: mailproxy\r\n\r\n", v6 ? "[" : "", r->url.host,
	    v6 ? "]" : "", r->url.port, v6 ? "[" : "", r->url.host,
	    v6 ? "]" : "", r->url.port);
	if (n < 0) {
		fail(r, "out of memory");
		return;
	}
	rc = ask(r, text, (size_t)n, false, true);
	free(text);
	if (rc < 0)
		return;
	r->phase = PH_PROXY;
	proxy_step(r);
}

/* Why the address being dialled failed; kept if it was the last. */
static void
connect_error(struct https_req *r, int err)
{
	snprintf(r->error, sizeof(r->error), "connect %s%s: %s",
	    r->proxy_host != NULL ? "proxy " : "", r->addr, strerror(err));
}

/* The socket is writable: connected, or refused (then the next address). */
static void
connect_done(struct https_req *r)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(r->ep.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err != 0) {
		connect_error(r, err);
		ep_close(r->loop, &r->ep);
		dial(r);
		return;
	}
	r->ep.wr_wait = 0;
	if (r->proxy_host != NULL)
		start_proxy(r);
	else
		start_tls(r);
}

static void
io_cb(EV_P_ ev_io *w, int revents)
{
	struct https_req *r = w->data;

	(void)loop;
	ep_events(&r->ep, revents);
	switch (r->phase) {
	case PH_CONNECT:
		connect_done(r);
		return;
	case PH_PROXY:
		proxy_step(r);
		return;
	case PH_HANDSHAKE:
		handshake_step(r);
		return;
	case PH_EXCHANGE:
		exchange_step(r);
		return;
	default:
		fatalx("https: socket event while %s", phase_names[r->phase]);
	}
}

/* Dials the next address; when none is left, fails with the last error. */
static void
dial(struct https_req *r)
{
	int fd;

	while (r->next_addr < r->naddrs) {
		const struct sockaddr_any *a = &r->addrs[r->next_addr++];

		sockaddr_text((const struct sockaddr *)&a->ss, r->addr,
		    sizeof(r->addr));
		fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (fd < 0) {
			snprintf(r->error, sizeof(r->error), "socket: %s",
			    strerror(errno));
			continue;
		}
		if (connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0 ||
		    errno == EINPROGRESS) {
			ep_init(&r->ep, fd, NULL, io_cb, r);
			r->ep.wr_wait = EV_WRITE;
			r->phase = PH_CONNECT;
			ep_update(r->loop, &r->ep, false, true);
			return;
		}
		connect_error(r, errno);
		close(fd);
	}
	finish(r, 0);
}

static void
resolved(void *arg, const struct sockaddr_any *addrs, size_t n, int ttl,
    const char *error)
{
	struct https_req *r = arg;

	(void)ttl;
	r->resolving = false;
	if (!r->live || r->phase != PH_RESOLVE) {
		release(r);		/* cancelled, or timed out meanwhile */
		return;
	}
	if (error != NULL) {
		fail(r, "resolve %s%s: %s", r->proxy_host != NULL ? "proxy " : "",
		    dial_host(r), error);
		return;
	}
	if ((r->addrs = calloc(n, sizeof(*addrs))) == NULL) {
		fail(r, "out of memory");
		return;
	}
	memcpy(r->addrs, addrs, n * sizeof(*addrs));
	r->naddrs = n;
	dial(r);
}

/* The request line and headers of a POST of flen bytes, snprintf's way. */
static int
format_head(char *out, size_t cap, const struct url *u, size_t flen)
{
	bool v6 = strchr(u->host, ':') != NULL;
	bool default_port = strcmp(u->port, HTTPS_PORT) == 0;

	return snprintf(out, cap, "POST %s HTTP/1.1\r\n"
	    "Host: %s%s%s%s%s\r\n"
	    "Content-Type: application/x-www-form-urlencoded\r\n"
	    "Content-Length: %zu\r\n"
	    "Accept: application/json\r\n"
	    "User-Agent: mailproxy\r\n"
	    "Connection: close\r\n"
	    "\r\n", u->path, v6 ? "[" : "", u->host, v6 ? "]" : "",
	    default_port ? "" : ":", default_port ? "" : u->port, flen);
}

/*
 * The POST, whole: headers, then the form.  Sized first and written once
 * into a buffer that forget_request() wipes: asprintf grows its buffer by
 * copying and frees the smaller ones as they are, and the form holds the
 * refresh token, the client secret or the device code.  The form is
 * copied, never formatted.
 */
static char *
build_request(const struct url *u, const char *form, size_t *len)
{
	size_t flen = strlen(form);
	char *text;
	int n;

	if ((n = format_head(NULL, 0, u, flen)) < 0 ||
	    (text = malloc((size_t)n + flen + 1)) == NULL)
		return NULL;
	format_head(text, (size_t)n + 1, u, flen);
	memcpy(text + n, form, flen + 1);
	*len = (size_t)n + flen;
	return text;
}

struct https_req *
https_post(EV_P_ SSL_CTX *ctx, struct resolver *res, const char *url,
    const char *form, const char *proxy, double timeout, https_cb cb,
    void *arg, char *err, size_t errlen)
{
	struct https_req *r;

	if (ctx == NULL || res == NULL || cb == NULL) {
		snprintf(err, errlen, "no TLS context, resolver or callback");
		return NULL;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->loop = EV_A;
	r->ep.fd = -1;
	r->cb = cb;
	r->arg = arg;
	buf_init_secret(&r->in, HTTPS_IN_CAP);
	buf_init(&r->out, 0);
	ev_timer_init(&r->timer, timeout_cb, timeout, 0.);
	ev_timer_init(&r->report, report_cb, 0., 0.);
	r->timer.data = r->report.data = r;
	if (url_parse(url, &r->url) < 0) {
		snprintf(err, errlen, "not a valid https URL: %s", url);
		goto fail;
	}
	if (proxy != NULL && *proxy != '\0' &&
	    proxy_parse(proxy, &r->proxy_host, &r->proxy_port) < 0) {
		/* Not quoted: a proxy URL may carry a password. */
		snprintf(err, errlen, "the proxy (https_proxy) is not "
		    "http://HOST:PORT (credentials and other schemes are not "
		    "supported)");
		goto fail;
	}
	if ((r->request = build_request(&r->url, form != NULL ? form : "",
	    &r->request_len)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (resolver_lookup(res, dial_host(r), r->proxy_port != NULL ?
	    r->proxy_port : r->url.port, resolved, r) < 0) {
		snprintf(err, errlen, "cannot look up %s", dial_host(r));
		goto fail;
	}
	r->ctx = ctx;
	SSL_CTX_up_ref(ctx);
	r->live = r->resolving = true;
	r->phase = PH_RESOLVE;
	ev_timer_start(EV_A_ &r->timer);
	return r;
fail:
	release(r);
	return NULL;
}

void
https_cancel(EV_P_ struct https_req *r)
{
	(void)loop;
	/* From its own callback: too late to cancel, freed when it returns. */
	if (r == NULL || r->reporting)
		return;
	teardown(r);
	ev_timer_stop(r->loop, &r->report);
	r->live = false;
	release(r);
}
