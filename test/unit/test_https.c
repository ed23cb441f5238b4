/*
 * https: the response parser fed byte by byte and split at every offset,
 * https_proxy_for against the environment, and whole requests on one libev
 * loop against an in-process TLS server (the dev certificates) and an
 * in-process CONNECT proxy, all on 127.0.0.1.  Every loop run is bounded
 * by an ev_timer deadline.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "dnsstub.h"
#include "https.h"
#include "http.h"
#include "resolve.h"
#include "unit.h"

/* ---- the parser ----------------------------------------------------------- */

struct pcase {
	const char		*name;
	const char		*text;
	size_t			 len;		/* 0: strlen(text) */
	bool			 head_only;
	int			 eof;		/* 0 none, 1 clean, 2 unclean */
	enum http_progress	 want;
	int			 status;
	const char		*body;		/* with COMPLETE */
	const char		*error;		/* with ERROR */
	size_t			 extra;		/* trailing bytes not taken */
};

static const struct pcase pcases[] = {
	{ "content-length", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
	    "Content-Length: 5\r\n\r\nhello", 0, false, 0, HTTP_COMPLETE, 200,
	    "hello", NULL, 0 },
	{ "bytes after the body are not taken", "HTTP/1.1 200 OK\r\n"
	    "content-length: 2\r\n\r\n{}EXTRA", 0, false, 0, HTTP_COMPLETE, 200,
	    "{}", NULL, 5 },
	{ "chunked, extensions and trailers; names in any case",
	    "HTTP/1.1 200 OK\r\nTRANSFER-encoding: Chunked\r\n"
	    "Content-Length: 99\r\n\r\n5;name=val\r\nhello\r\n6 \r\n world\r\n"
	    "0\r\nX-Trailer: 1\r\n\r\n", 0, false, 0, HTTP_COMPLETE, 200,
	    "hello world", NULL, 0 },
	{ "an interim 100 is skipped; a 400 keeps its body",
	    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 Bad Request\r\n"
	    "Content-Length: 27\r\n\r\n{\"error\":\"invalid_grant\"}\r\n", 0,
	    false, 0, HTTP_COMPLETE, 400, "{\"error\":\"invalid_grant\"}\r\n",
	    NULL, 0 },
	{ "until a clean EOF", "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nabc", 0,
	    false, 1, HTTP_COMPLETE, 200, "abc", NULL, 0 },
	{ "until an EOF without close_notify", "HTTP/1.0 200 OK\r\n\r\nabc", 0,
	    false, 2, HTTP_ERROR, 0, NULL, "truncated", 0 },
	{ "bare LF endings, 204 without a body", "HTTP/1.1 204 No Content\n"
	    "Content-Length: 10\n\n", 0, false, 0, HTTP_COMPLETE, 204, "", NULL,
	    0 },
	{ "CONNECT reply: the head only", "HTTP/1.1 200 Connection established\r\n"
	    "Proxy-Agent: stub\r\n\r\n", 0, true, 0, HTTP_COMPLETE, 200, "",
	    NULL, 0 },
	{ "status line without a reason", "HTTP/1.1 200\r\nContent-Length: 1\r\n"
	    "\r\nx", 0, false, 0, HTTP_COMPLETE, 200, "x", NULL, 0 },
	{ "bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "zz\r\nhello\r\n0\r\n\r\n", 0, false, 0, HTTP_ERROR, 0, NULL,
	    "bad chunk size", 0 },
	{ "negative chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
	    "\r\n-5\r\nhello\r\n0\r\n\r\n", 0, false, 0, HTTP_ERROR, 0, NULL,
	    "bad chunk size", 0 },
	{ "chunk data longer than its size", "HTTP/1.1 200 OK\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n", 0, false,
	    0, HTTP_ERROR, 0, NULL, "bad chunk end", 0 },
	{ "chunk larger than the limit", "HTTP/1.1 200 OK\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n10001\r\n", 0, false, 0,
	    HTTP_ERROR, 0, NULL, "response too large", 0 },
	{ "chunk size with 20 digits", "HTTP/1.1 200 OK\r\n"
	    "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n", 0, false,
	    0, HTTP_ERROR, 0, NULL, "response too large", 0 },
	{ "Content-Length over the limit", "HTTP/1.1 200 OK\r\n"
	    "Content-Length: 65537\r\n\r\n", 0, false, 0, HTTP_ERROR, 0, NULL,
	    "response too large", 0 },
	{ "Content-Length of 30 digits", "HTTP/1.1 200 OK\r\n"
	    "Content-Length: 123456789012345678901234567890\r\n\r\n", 0, false, 0,
	    HTTP_ERROR, 0, NULL, "response too large", 0 },
	{ "conflicting Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
	    "Content-Length: 6\r\n\r\nhello!", 0, false, 0, HTTP_ERROR, 0, NULL,
	    "conflicting Content-Length", 0 },
	{ "Content-Length with a sign", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n"
	    "\r\nhello", 0, false, 0, HTTP_ERROR, 0, NULL,
	    "malformed Content-Length", 0 },
	{ "gzip transfer coding", "HTTP/1.1 200 OK\r\n"
	    "Transfer-Encoding: gzip, chunked\r\n\r\n", 0, false, 0, HTTP_ERROR, 0,
	    NULL, "unsupported Transfer-Encoding", 0 },
	{ "HTTP/2 status line", "HTTP/2 200 OK\r\n\r\n", 0, false, 0, HTTP_ERROR,
	    0, NULL, "malformed status line", 0 },
	{ "two-digit status", "HTTP/1.1 20 OK\r\n\r\n", 0, false, 0, HTTP_ERROR,
	    0, NULL, "malformed status line", 0 },
	{ "not HTTP", "SSH-2.0-OpenSSH\r\n", 0, false, 0, HTTP_ERROR, 0, NULL,
	    "malformed status line", 0 },
	{ "header without a colon", "HTTP/1.1 200 OK\r\nContent-Length 5\r\n\r\n",
	    0, false, 0, HTTP_ERROR, 0, NULL, "malformed header", 0 },
	{ "space before the colon", "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n"
	    "\r\nhello", 0, false, 0, HTTP_ERROR, 0, NULL, "malformed header", 0 },
	{ "obsolete folding", "HTTP/1.1 200 OK\r\nX-A: 1\r\n  2\r\n\r\n", 0,
	    false, 0, HTTP_ERROR, 0, NULL, "malformed header", 0 },
	{ "a bare CR in a header", "HTTP/1.1 200 OK\r\nX-A: 1\r2\r\n\r\n", 0,
	    false, 0, HTTP_ERROR, 0, NULL, "malformed header", 0 },
	{ "a NUL in a header", "HTTP/1.1 200 OK\r\nX-A: 1\0002\r\n\r\n", 29,
	    false, 0, HTTP_ERROR, 0, NULL, "malformed header", 0 },
	{ "101", "HTTP/1.1 101 Switching Protocols\r\n\r\n", 0, false, 0,
	    HTTP_ERROR, 0, NULL, "101", 0 },
	{ "EOF before anything", "", 0, false, 1, HTTP_ERROR, 0, NULL,
	    "without a response", 0 },
	{ "EOF in the headers", "HTTP/1.1 200 OK\r\nContent-Le", 0, false, 1,
	    HTTP_ERROR, 0, NULL, "in the response header", 0 },
	{ "EOF in a Content-Length body", "HTTP/1.1 200 OK\r\n"
	    "Content-Length: 5\r\n\r\nhel", 0, false, 1, HTTP_ERROR, 0, NULL,
	    "before the end of the body", 0 },
	{ "EOF between chunks", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
	    "\r\n5\r\nhello\r\n", 0, false, 1, HTTP_ERROR, 0, NULL,
	    "before the end of the body", 0 },
};

/*
 * Feeds text in pieces (cut at each offset in cuts, ascending) until the
 * parser stops taking; then the EOF the case asks for.  *taken: bytes used.
 */
static enum http_progress
feed_cut(struct http_parser *p, const struct pcase *c, const char *text,
    size_t len, const size_t *cuts, size_t ncuts, size_t *taken)
{
	enum http_progress pr = HTTP_MORE;
	size_t from = 0, used;

	*taken = 0;
	http_parser_init(p, c->head_only);
	for (size_t i = 0; i <= ncuts && pr == HTTP_MORE; i++) {
		size_t to = i < ncuts ? cuts[i] : len;

		if (to <= from)
			continue;
		pr = http_feed(p, text + from, to - from, &used);
		*taken += used;
		if (pr == HTTP_MORE && used != to - from)
			return HTTP_ERROR;	/* MORE must take everything */
		from = to;
	}
	if (pr == HTTP_MORE && c->eof != 0)
		pr = http_eof(p, c->eof == 1);
	return pr;
}

/* Does the outcome match the case?  Says why not on stderr. */
static bool
outcome_ok(const struct http_parser *p, const struct pcase *c,
    enum http_progress pr, size_t taken, size_t len, const char *how)
{
	bool ok = pr == c->want;

	if (ok && pr == HTTP_COMPLETE)
		ok = p->status == c->status && taken == len - c->extra &&
		    p->body_len == strlen(c->body) && (p->body_len == 0 ||
		    memcmp(p->body, c->body, p->body_len + 1) == 0);
	if (ok && pr == HTTP_ERROR)
		ok = p->error != NULL && strstr(p->error, c->error) != NULL;
	if (!ok)
		fprintf(stderr, "parse \"%s\" (%s): progress %d status %d "
		    "taken %zu body \"%.*s\" error %s\n", c->name, how, (int)pr,
		    p->status, taken, (int)p->body_len, p->body ? p->body : "",
		    p->error ? p->error : "-");
	return ok;
}

/* Whole, one byte at a time, and cut in two at every offset (at most
 * every_cut apart, for long inputs). */
static void
check_case(const struct pcase *c, const char *text, size_t len,
    size_t every_cut)
{
	struct http_parser *p = malloc(sizeof(*p));
	size_t *cuts = malloc((len + 1) * sizeof(*cuts)), taken;
	enum http_progress pr;
	bool ok;

	if (p == NULL || cuts == NULL)
		abort();
	pr = feed_cut(p, c, text, len, NULL, 0, &taken);
	CHECK(outcome_ok(p, c, pr, taken, len, "whole"));
	http_parser_wipe(p);

	for (size_t i = 0; i < len; i++)
		cuts[i] = i + 1;
	pr = feed_cut(p, c, text, len, cuts, len, &taken);
	CHECK(outcome_ok(p, c, pr, taken, len, "byte by byte"));
	http_parser_wipe(p);

	ok = true;
	for (size_t at = 1; at < len && ok; at += every_cut) {
		char how[32];

		pr = feed_cut(p, c, text, len, &at, 1, &taken);
		snprintf(how, sizeof(how), "cut at %zu", at);
		ok = outcome_ok(p, c, pr, taken, len, how);
		http_parser_wipe(p);
	}
	CHECK(ok);
	free(cuts);
	free(p);
}

/* Inputs too long to write out: the header and body limits. */
static void
test_parse_limits(void)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nX-Big: ";
	static const char ok_tail[] = "\r\nContent-Length: 2\r\n\r\nok";
	size_t big = 70000;
	char *text = malloc(big + 64);
	struct pcase c;
	size_t n;

	if (text == NULL)
		abort();
	/* A head of exactly 8 KiB is tolerated; one byte more is not. */
	memset(&c, 0, sizeof(c));
	n = HTTP_MAX_HEAD - (sizeof(head) - 1) - (sizeof(ok_tail) - 1) + 2;
	memcpy(text, head, sizeof(head) - 1);
	memset(text + sizeof(head) - 1, 'v', n);
	memcpy(text + sizeof(head) - 1 + n, ok_tail, sizeof(ok_tail));
	c.name = "head of 8 KiB";
	c.want = HTTP_COMPLETE;
	c.status = 200;
	c.body = "ok";
	check_case(&c, text, strlen(text), 97);
	memset(text + sizeof(head) - 1, 'v', n + 1);
	memcpy(text + sizeof(head) - 1 + n + 1, ok_tail, sizeof(ok_tail));
	c.name = "head of 8 KiB + 1";
	c.want = HTTP_ERROR;
	c.error = "response header too long";
	check_case(&c, text, strlen(text), 97);

	/* One endless header line fails at the limit, not at its LF. */
	memcpy(text, head, sizeof(head) - 1);
	memset(text + sizeof(head) - 1, 'v', big);
	c.name = "endless header line";
	check_case(&c, text, sizeof(head) - 1 + big, 4999);

	/* A chunk-size line of extensions without end. */
	n = (size_t)snprintf(text, big, "HTTP/1.1 200 OK\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n1;");
	memset(text + n, 'e', 1000);
	c.name = "endless chunk extension";
	c.error = "bad chunk size";
	check_case(&c, text, n + 1000, 7);

	/* A body to EOF, one byte over the limit, and exactly at it. */
	n = (size_t)snprintf(text, big, "HTTP/1.1 200 OK\r\n\r\n");
	memset(text + n, 'b', HTTPS_MAX_BODY + 1);
	c.name = "body to EOF over the limit";
	c.error = "response too large";
	check_case(&c, text, n + HTTPS_MAX_BODY + 1, 4999);
	text[n + HTTPS_MAX_BODY] = '\0';
	c.name = "body to EOF at the limit";
	c.eof = 1;
	c.want = HTTP_COMPLETE;
	c.body = text + n;
	check_case(&c, text, n + HTTPS_MAX_BODY, 4999);

	/* Chunks that add up to more than the limit. */
	c.eof = 0;
	n = (size_t)snprintf(text, big, "HTTP/1.1 200 OK\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n8000\r\n");
	memset(text + n, 'c', 0x8000);
	n += 0x8000;
	n += (size_t)snprintf(text + n, big, "\r\n8000\r\n");
	memset(text + n, 'c', 0x8000);
	n += 0x8000;
	n += (size_t)snprintf(text + n, big, "\r\n1\r\n");
	c.name = "chunks over the limit";
	c.want = HTTP_ERROR;
	c.error = "response too large";
	check_case(&c, text, n, 4999);
	free(text);
}

static void
test_parse(void)
{
	for (size_t i = 0; i < sizeof(pcases) / sizeof(pcases[0]); i++) {
		const struct pcase *c = &pcases[i];

		check_case(c, c->text, c->len ? c->len : strlen(c->text), 1);
	}
	test_parse_limits();
}

/* ---- https_proxy_for ------------------------------------------------------ */

static const char *const proxy_vars[] = {
	"https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"
};

static void
set_proxy_env(const char *https_lower, const char *https_upper,
    const char *no_lower, const char *no_upper)
{
	const char *v[] = { https_lower, https_upper, no_lower, no_upper };

	for (size_t i = 0; i < 4; i++) {
		if (v[i] != NULL)
			setenv(proxy_vars[i], v[i], 1);
		else
			unsetenv(proxy_vars[i]);
	}
}

static bool
proxy_is(const char *url, const char *want)
{
	const char *got = https_proxy_for(url);

	if (got == want || (got != NULL && want != NULL &&
	    strcmp(got, want) == 0))
		return true;
	fprintf(stderr, "https_proxy_for(%s) = %s, not %s\n", url,
	    got ? got : "NULL", want ? want : "NULL");
	return false;
}

static void
test_proxy_for(void)
{
	char *saved[4];

	for (size_t i = 0; i < 4; i++) {
		const char *v = getenv(proxy_vars[i]);
		saved[i] = v != NULL ? strdup(v) : NULL;
	}
	set_proxy_env(NULL, NULL, NULL, NULL);
	CHECK(proxy_is("https://login.example.com/token", NULL));

	set_proxy_env(NULL, "http://upper:3128", NULL, NULL);
	CHECK(proxy_is("https://login.example.com/token", "http://upper:3128"));
	set_proxy_env("http://lower:3128", "http://upper:3128", NULL, NULL);
	CHECK(proxy_is("https://login.example.com/token", "http://lower:3128"));
	set_proxy_env("", "http://upper:3128", NULL, NULL);
	CHECK(proxy_is("https://login.example.com/token", "http://upper:3128"));

	set_proxy_env("p:8080", NULL, "localhost, .example.org,corp.test,"
	    "10.1.2.3,[::1]", NULL);
	CHECK(proxy_is("https://example.org/", NULL));
	CHECK(proxy_is("https://LOGIN.Example.ORG:8443/t", NULL));
	CHECK(proxy_is("https://badexample.org/", "p:8080"));
	CHECK(proxy_is("https://corp.test/", NULL));
	CHECK(proxy_is("https://a.b.corp.test/", NULL));
	CHECK(proxy_is("https://corp.testing/", "p:8080"));
	CHECK(proxy_is("https://localhost:8443/", NULL));
	CHECK(proxy_is("https://10.1.2.3/", NULL));
	CHECK(proxy_is("https://10.1.2.33/", "p:8080"));
	CHECK(proxy_is("https://[::1]:8443/", NULL));
	CHECK(proxy_is("https://oauth2.googleapis.com/token", "p:8080"));
	set_proxy_env("p:8080", NULL, "1.2.3", NULL);
	CHECK(proxy_is("https://10.1.2.3/", "p:8080"));	/* no suffix */

	set_proxy_env("p:8080", NULL, NULL, "*");
	CHECK(proxy_is("https://oauth2.googleapis.com/token", NULL));
	set_proxy_env("p:8080", NULL, "", "other.test");
	CHECK(proxy_is("https://other.test/", NULL));
	CHECK(proxy_is("https://oauth2.googleapis.com/token", "p:8080"));

	for (size_t i = 0; i < 4; i++) {
		if (saved[i] != NULL)
			setenv(proxy_vars[i], saved[i], 1);
		else
			unsetenv(proxy_vars[i]);
		free(saved[i]);
	}
}

/* ---- test peers: sockets with their watchers ------------------------------ */

struct tsock {
	int	 fd;		/* -1 when closed */
	ev_io	 io;
};

static void
tsock_watch(EV_P_ struct tsock *t, int fd, void (*cb)(EV_P_ ev_io *, int),
    void *data)
{
	t->fd = fd;
	ev_io_init(&t->io, cb, fd, EV_READ);
	t->io.data = data;
	ev_io_start(EV_A_ &t->io);
}

/* Stops and closes it; false when it was closed already. */
static bool
tsock_close(EV_P_ struct tsock *t)
{
	if (t->fd < 0)
		return false;
	ev_io_stop(EV_A_ &t->io);
	close(t->fd);
	t->fd = -1;
	return true;
}

/* A listening socket on ip (IPv4) and a free port; its port in *port. */
static int
listen_on(const char *ip, int *port)
{
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);
	int fd;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	if (inet_pton(AF_INET, ip, &sin.sin_addr) != 1 ||
	    (fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) < 0 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(fd, 16) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &slen) < 0)
		abort();
	*port = ntohs(sin.sin_port);
	return fd;
}

/* A new connection on listener l, watched by cb in conn (one at a time:
 * the previous one is closed).  False when there was none. */
static bool
tsock_accept(EV_P_ struct tsock *l, struct tsock *conn,
    void (*cb)(EV_P_ ev_io *, int), void *data)
{
	int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK);

	if (fd < 0)
		return false;
	tsock_close(EV_A_ conn);
	tsock_watch(EV_A_ conn, fd, cb, data);
	return true;
}

/* Writes all of p (small test payloads on loopback). */
static void
write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return;
		if (n > 0) {
			p += n;
			len -= (size_t)n;
		}
	}
}

/* ---- an in-process TLS server --------------------------------------------- */

enum srv_end {
	END_OPEN,		/* after the reply: wait for the client */
	END_CLEAN,		/* close_notify, then FIN */
	END_FIN			/* FIN only: a truncated TLS stream */
};

/*
 * One connection at a time: handshake, read the request (head and
 * Content-Length body), then write the reply's pieces, one per 20 ms so
 * that the client reads them apart.
 */
struct tsrv {
	struct ev_loop	*loop;
	SSL_CTX		*ctx;
	struct tsock	 listener;
	int		 port;
	const char	*const *pieces;	/* NULL: never reply */
	enum srv_end	 end;
	struct tsock	 conn;
	SSL		*ssl;
	ev_timer	 tick;
	size_t		 next;
	bool		 handshaken;
	bool		 replying;	/* this connection's request is in */
	int		 requests;	/* requests read, in all */
	int		 closed;	/* connections that ended */
	bool		 write_failed;
	char		 sni[64];
	char		 req[16384];
	size_t		 reqlen;
};

static void
srv_want(struct tsrv *s, int events)
{
	ev_io_stop(s->loop, &s->conn.io);
	ev_io_set(&s->conn.io, s->conn.fd, events);
	ev_io_start(s->loop, &s->conn.io);
}

static void
srv_drop(struct tsrv *s)
{
	ev_timer_stop(s->loop, &s->tick);
	SSL_free(s->ssl);
	s->ssl = NULL;
	if (tsock_close(s->loop, &s->conn))
		s->closed++;
}

static void
srv_tick(EV_P_ ev_timer *w, int revents)
{
	struct tsrv *s = w->data;
	const char *piece = s->pieces[s->next];

	(void)loop;
	(void)revents;
	if (piece == NULL)
		return;
	if (SSL_write(s->ssl, piece, (int)strlen(piece)) != (int)strlen(piece))
		s->write_failed = true;
	if (s->pieces[++s->next] != NULL)
		return;
	ev_timer_stop(s->loop, &s->tick);
	if (s->end == END_CLEAN)
		SSL_shutdown(s->ssl);
	if (s->end != END_OPEN)
		shutdown(s->conn.fd, SHUT_WR);
}

/* The head has arrived and as many body bytes as it announced. */
static bool
request_complete(const struct tsrv *s)
{
	const char *end = strstr(s->req, "\r\n\r\n");
	const char *cl = strcasestr(s->req, "\r\nContent-Length:");

	if (end == NULL)
		return false;
	return s->reqlen >= (size_t)(end + 4 - s->req) +
	    (cl != NULL ? strtoul(cl + 17, NULL, 10) : 0);
}

static void
srv_io_cb(EV_P_ ev_io *w, int revents)
{
	struct tsrv *s = w->data;
	const char *name;
	int rc;

	(void)loop;
	(void)revents;
	ERR_clear_error();
	if (!s->handshaken) {
		if ((rc = SSL_do_handshake(s->ssl)) != 1) {
			int e = SSL_get_error(s->ssl, rc);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				srv_want(s, e == SSL_ERROR_WANT_READ ? EV_READ :
				    EV_WRITE);
			else
				srv_drop(s);	/* e.g. the client refused us */
			return;
		}
		s->handshaken = true;
		name = SSL_get_servername(s->ssl, TLSEXT_NAMETYPE_host_name);
		snprintf(s->sni, sizeof(s->sni), "%s", name ? name : "");
	}
	while ((rc = SSL_read(s->ssl, s->req + s->reqlen,
	    (int)(sizeof(s->req) - 1 - s->reqlen))) > 0) {
		s->reqlen += (size_t)rc;
		s->req[s->reqlen] = '\0';
	}
	if (SSL_get_error(s->ssl, rc) != SSL_ERROR_WANT_READ) {
		srv_drop(s);		/* the client is done */
		return;
	}
	if (!s->replying && request_complete(s)) {
		s->replying = true;
		s->requests++;
		if (s->pieces != NULL)
			ev_timer_start(s->loop, &s->tick);
	}
	srv_want(s, EV_READ);
}

static void
srv_accept_cb(EV_P_ ev_io *w, int revents)
{
	struct tsrv *s = w->data;

	(void)revents;
	srv_drop(s);
	if (!tsock_accept(EV_A_ &s->listener, &s->conn, srv_io_cb, s))
		return;
	s->ssl = SSL_new(s->ctx);
	SSL_set_fd(s->ssl, s->conn.fd);
	SSL_set_accept_state(s->ssl);
	s->handshaken = s->replying = false;
	s->next = 0;
	s->reqlen = 0;
	s->req[0] = '\0';
}

static const char *
certs_dir(void)
{
	const char *d = getenv("MAILPROXY_CERTS");

	return d != NULL ? d : "certs/dev";
}

/* A server with the dev certificate pair `cert' that answers pieces. */
static void
srv_start(EV_P_ struct tsrv *s, const char *cert, const char *const *pieces,
    enum srv_end end)
{
	char crt[256], key[256];

	memset(s, 0, sizeof(*s));
	s->loop = EV_A;
	s->conn.fd = -1;
	s->pieces = pieces;
	s->end = end;
	snprintf(crt, sizeof(crt), "%s/%s.crt", certs_dir(), cert);
	snprintf(key, sizeof(key), "%s/%s.key", certs_dir(), cert);
	s->ctx = SSL_CTX_new(TLS_method());
	if (s->ctx == NULL ||
	    !SSL_CTX_use_certificate_chain_file(s->ctx, crt) ||
	    !SSL_CTX_use_PrivateKey_file(s->ctx, key, SSL_FILETYPE_PEM)) {
		fprintf(stderr, "test server: cannot load %s\n", crt);
		abort();
	}
	ev_timer_init(&s->tick, srv_tick, 0.02, 0.02);
	s->tick.data = s;
	tsock_watch(EV_A_ &s->listener, listen_on("127.0.0.1", &s->port), srv_accept_cb,
	    s);
}

/* Listens on ip instead (and on another port). */
static void
srv_rebind(struct tsrv *s, const char *ip)
{
	tsock_close(s->loop, &s->listener);
	tsock_watch(s->loop, &s->listener, listen_on(ip, &s->port),
	    srv_accept_cb, s);
}

static void
srv_stop(struct tsrv *s)
{
	srv_drop(s);
	tsock_close(s->loop, &s->listener);
	SSL_CTX_free(s->ctx);
}

/* ---- an in-process CONNECT proxy ------------------------------------------ */

struct tproxy {
	struct ev_loop	*loop;
	struct tsock	 listener;
	int		 port;
	const char	*refuse;	/* the reply instead of a tunnel */
	int		 target;	/* the port it tunnels to */
	struct tsock	 client;
	struct tsock	 server;
	bool		 tunnel;
	char		 head[4096];
	size_t		 headlen;
};

static void
prx_close(struct tproxy *x)
{
	tsock_close(x->loop, &x->client);
	tsock_close(x->loop, &x->server);
}

/* Copies what from has to to; false when from has ended. */
static bool
prx_pass(int from, int to)
{
	char buf[16384];
	ssize_t n = read(from, buf, sizeof(buf));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	if (n <= 0)
		return false;
	write_all(to, buf, (size_t)n);
	return true;
}

static void
prx_server_cb(EV_P_ ev_io *w, int revents)
{
	struct tproxy *x = w->data;

	(void)loop;
	(void)revents;
	if (!prx_pass(x->server.fd, x->client.fd))
		prx_close(x);
}

/* The CONNECT head is in: refuse, or dial the target and tunnel. */
static void
prx_open_tunnel(struct tproxy *x, const char *end)
{
	static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
	struct sockaddr_in sin;
	int fd;

	if (x->refuse != NULL) {
		write_all(x->client.fd, x->refuse, strlen(x->refuse));
		prx_close(x);
		return;
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)x->target);
	/* Blocking: the target listens on this loop, the kernel completes it. */
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		if (fd >= 0)
			close(fd);
		prx_close(x);
		return;
	}
	tsock_watch(x->loop, &x->server, fd, prx_server_cb, x);
	write_all(x->client.fd, ok, sizeof(ok) - 1);
	x->tunnel = true;
	if (end + 4 < x->head + x->headlen)
		write_all(fd, end + 4, (size_t)(x->head + x->headlen - end - 4));
}

static void
prx_client_cb(EV_P_ ev_io *w, int revents)
{
	struct tproxy *x = w->data;
	const char *end;
	ssize_t n;

	(void)loop;
	(void)revents;
	if (x->tunnel) {
		if (!prx_pass(x->client.fd, x->server.fd))
			prx_close(x);
		return;
	}
	n = read(x->client.fd, x->head + x->headlen,
	    sizeof(x->head) - 1 - x->headlen);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		prx_close(x);
		return;
	}
	x->headlen += (size_t)n;
	x->head[x->headlen] = '\0';
	if ((end = strstr(x->head, "\r\n\r\n")) != NULL)
		prx_open_tunnel(x, end);
}

static void
prx_accept_cb(EV_P_ ev_io *w, int revents)
{
	struct tproxy *x = w->data;

	(void)revents;
	prx_close(x);
	if (!tsock_accept(EV_A_ &x->listener, &x->client, prx_client_cb, x))
		return;
	x->tunnel = false;
	x->headlen = 0;
}

static void
prx_start(EV_P_ struct tproxy *x, int target, const char *refuse)
{
	memset(x, 0, sizeof(*x));
	x->loop = EV_A;
	x->client.fd = x->server.fd = -1;
	x->target = target;
	x->refuse = refuse;
	tsock_watch(EV_A_ &x->listener, listen_on("127.0.0.1", &x->port), prx_accept_cb,
	    x);
}

static void
prx_stop(struct tproxy *x)
{
	prx_close(x);
	tsock_close(x->loop, &x->listener);
}

/* ---- requests --------------------------------------------------------------- */

struct outcome {
	struct ev_loop		*loop;
	struct https_req	*cancel;	/* cancelled by the callback */
	int			 calls;
	int			 status;
	bool			 terminated;	/* body[len] == '\0' */
	size_t			 len;
	char			 body[2048];
	char			 error[256];
};

static void
got(void *arg, const struct https_result *r)
{
	struct outcome *o = arg;

	o->calls++;
	o->status = r->status;
	o->len = r->len;
	o->body[0] = o->error[0] = '\0';
	if (r->body != NULL) {
		o->terminated = r->body[r->len] == '\0';
		snprintf(o->body, sizeof(o->body), "%.*s", (int)r->len, r->body);
	}
	snprintf(o->error, sizeof(o->error), "%s", r->error ? r->error : "");
	if (o->cancel != NULL)
		https_cancel(o->loop, o->cancel);
}

static bool
flag_set(const void *flag)
{
	return *(const int *)flag != 0;
}

/* Runs the loop until *flag is set or secs pass (flag NULL: secs). */
static void
run_until(EV_P_ const int *flag, double secs)
{
	unit_run_until(EV_A_ flag != NULL ? flag_set : NULL, flag, secs);
}

struct fixture {
	struct ev_loop	*loop;
	struct resolver	*res;
	SSL_CTX		*ctx;
	struct tsrv	 srv;
	char		 url[128];
};

/* A loop, the system resolver, a client context on the dev CA and a
 * server with certificate cert answering pieces. */
static int
fixture_open(struct fixture *f, const char *cert, const char *const *pieces,
    enum srv_end end)
{
	char ca[256], err[256];

	memset(f, 0, sizeof(*f));
	f->loop = ev_loop_new(EVFLAG_AUTO);
	snprintf(ca, sizeof(ca), "%s/ca.crt", certs_dir());
	f->res = resolver_new(f->loop, NULL, err, sizeof(err));
	f->ctx = https_ctx_new(ca, err, sizeof(err));
	if (f->res == NULL || f->ctx == NULL) {
		fprintf(stderr, "https fixture: %s\n", err);
		CHECK(!"https fixture");
		return -1;
	}
	srv_start(f->loop, &f->srv, cert, pieces, end);
	snprintf(f->url, sizeof(f->url), "https://127.0.0.1:%d/token",
	    f->srv.port);
	return 0;
}

static void
fixture_close(struct fixture *f)
{
	CHECK(!f->srv.write_failed);
	srv_stop(&f->srv);
	resolver_free(f->loop, f->res);
	SSL_CTX_free(f->ctx);
	ev_loop_destroy(f->loop);
}

/*
 * Posts form to url (through proxy) and runs the loop until the callback
 * (at most 5 s).  The callback must not have run inside https_post.
 */
static void
post(struct fixture *f, const char *url, const char *proxy, double timeout,
    struct outcome *o)
{
	struct https_req *r;
	char err[256];

	memset(o, 0, sizeof(*o));
	r = https_post(f->loop, f->ctx, f->res, url, "grant_type=refresh_token"
	    "&refresh_token=SECRET", proxy, timeout, got, o, err, sizeof(err));
	CHECK(r != NULL);
	if (r == NULL) {
		fprintf(stderr, "https_post: %s\n", err);
		return;
	}
	CHECK(o->calls == 0);
	run_until(f->loop, &o->calls, 5.);
	CHECK(o->calls == 1);
	/* Exactly once: nothing more comes later. */
	run_until(f->loop, NULL, 0.05);
	CHECK(o->calls == 1);
}

static const char *const json_200[] = {
	"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Le",
	"ngth: 41\r\n\r\n{\"access_token\":\"ya29\",",
	"\"expires_in\":3599}",
	NULL
};

static void
test_content_length(void)
{
	struct fixture f;
	struct outcome o;
	char url[128], want[128];

	if (fixture_open(&f, "server-ecdsa", json_200, END_OPEN) < 0)
		return;
	/* By name: SNI and the name check; the port in Host. */
	snprintf(url, sizeof(url), "https://localhost:%d/token?tenant=x",
	    f.srv.port);
	post(&f, url, NULL, 5., &o);
	CHECK(o.status == 200 && o.error[0] == '\0');
	CHECK(strcmp(o.body, "{\"access_token\":\"ya29\",\"expires_in\":3599}")
	    == 0 && o.len == 41 && o.terminated);
	CHECK(strcmp(f.srv.sni, "localhost") == 0);
	snprintf(want, sizeof(want), "POST /token?tenant=x HTTP/1.1\r\n"
	    "Host: localhost:%d\r\n", f.srv.port);
	CHECK(strncmp(f.srv.req, want, strlen(want)) == 0);
	CHECK_STR_CONTAINS(f.srv.req, "\r\nContent-Type: "
	    "application/x-www-form-urlencoded\r\n");
	CHECK_STR_CONTAINS(f.srv.req, "\r\nContent-Length: 45\r\n");
	CHECK_STR_CONTAINS(f.srv.req, "\r\nAccept: application/json\r\n");
	CHECK_STR_CONTAINS(f.srv.req, "\r\nUser-Agent: mailproxy\r\n");
	CHECK_STR_CONTAINS(f.srv.req, "\r\nConnection: close\r\n\r\n"
	    "grant_type=refresh_token&refresh_token=SECRET");
	CHECK(f.srv.reqlen == strlen(f.srv.req));
	/* The client closed after the response: the server saw it end. */
	run_until(f.loop, &f.srv.closed, 1.);
	CHECK(f.srv.closed == 1);

	/* By address: no SNI (RFC 6066), the IP is what is checked. */
	post(&f, f.url, NULL, 5., &o);
	CHECK(o.status == 200 && o.len == 41);
	CHECK(f.srv.sni[0] == '\0');
	fixture_close(&f);
}

static void
test_chunked(void)
{
	static const char *const pieces[] = {
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhe",
		"llo\r",
		"\n6;x=y\r\n world\r\n0\r\n",
		"Trailer-Field: 1\r\n\r\n",
		NULL
	};
	struct fixture f;
	struct outcome o;

	if (fixture_open(&f, "server-ecdsa", pieces, END_OPEN) < 0)
		return;
	post(&f, f.url, NULL, 5., &o);
	CHECK(o.status == 200 && strcmp(o.body, "hello world") == 0);
	CHECK(o.len == 11 && o.terminated);
	fixture_close(&f);
}

static void
test_until_eof(void)
{
	static const char *const pieces[] = {
		"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\":",
		"1}",
		NULL
	};
	struct fixture f;
	struct outcome o;

	if (fixture_open(&f, "server-rsa", pieces, END_CLEAN) < 0)
		return;
	post(&f, f.url, NULL, 5., &o);
	CHECK(o.status == 200 && strcmp(o.body, "{\"a\":1}") == 0);
	CHECK(o.len == 7 && o.terminated);

	/* The same cut by a FIN without close_notify: maybe truncated. */
	f.srv.end = END_FIN;
	post(&f, f.url, NULL, 5., &o);
	CHECK(o.status == 0);
	CHECK_STR_CONTAINS(o.error, "truncated");
	fixture_close(&f);
}

static void
test_error_status(void)
{
	static const char *const pieces[] = {
		"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
		"Content-Length: 71\r\n\r\n",
		"{\"error\":\"invalid_grant\",\"error_description\":"
		"\"Token has been revoked.\"}",
		NULL
	};
	struct fixture f;
	struct outcome o;

	if (fixture_open(&f, "server-ecdsa", pieces, END_OPEN) < 0)
		return;
	post(&f, f.url, NULL, 5., &o);
	CHECK(o.status == 400 && o.error[0] == '\0' && o.len == 71);
	CHECK(strcmp(o.body, pieces[1]) == 0 && o.terminated);
	fixture_close(&f);
}

/* Certificates the client must refuse: status 0 and why. */
static void
test_verify(void)
{
	static const struct { const char *cert, *host, *why; } cases[] = {
		{ "unknown-ca", "127.0.0.1",
		    "unable to get local issuer certificate" },
		{ "wrong-name", "localhost", "Hostname mismatch" },
		{ "wrong-name", "127.0.0.1", "IP address mismatch" },
		{ "expired", "localhost", "certificate has expired" },
		{ "cn-only", "localhost", "Hostname mismatch" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fixture f;
		struct outcome o;
		char url[128];

		if (fixture_open(&f, cases[i].cert, json_200, END_OPEN) < 0)
			return;
		snprintf(url, sizeof(url), "https://%s:%d/token",
		    cases[i].host, f.srv.port);
		post(&f, url, NULL, 5., &o);
		CHECK(o.status == 0 && o.len == 0);
		CHECK_STR_CONTAINS(o.error, "certificate verify failed");
		CHECK_STR_CONTAINS(o.error, cases[i].why);
		CHECK(f.srv.requests == 0);
		fixture_close(&f);
	}
}

static void
test_timeouts(void)
{
	struct fixture f;
	struct outcome o;
	ev_tstamp t0;

	/* Accepted by the kernel, never by anyone: the handshake stalls. */
	if (fixture_open(&f, "server-ecdsa", json_200, END_OPEN) < 0)
		return;
	ev_io_stop(f.loop, &f.srv.listener.io);
	ev_now_update(f.loop);
	t0 = ev_now(f.loop);
	post(&f, f.url, NULL, 0.3, &o);
	ev_now_update(f.loop);
	CHECK(o.status == 0);
	CHECK_STR_CONTAINS(o.error, "timed out (TLS handshake)");
	CHECK(ev_now(f.loop) - t0 >= 0.29 && ev_now(f.loop) - t0 < 2.);
	fixture_close(&f);

	/* Request read, no reply. */
	if (fixture_open(&f, "server-ecdsa", NULL, END_OPEN) < 0)
		return;
	post(&f, f.url, NULL, 0.3, &o);
	CHECK(o.status == 0 && f.srv.requests == 1);
	CHECK_STR_CONTAINS(o.error, "timed out (waiting for the response)");
	fixture_close(&f);
}

static void
test_refused(void)
{
	struct fixture f;
	struct outcome o;
	char url[128], want[128];
	int port, fd;

	if (fixture_open(&f, "server-ecdsa", json_200, END_OPEN) < 0)
		return;
	/* A port that was just free and is not listened on. */
	fd = listen_on("127.0.0.1", &port);
	close(fd);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/token", port);
	post(&f, url, NULL, 5., &o);
	snprintf(want, sizeof(want), "connect 127.0.0.1:%d: Connection refused",
	    port);
	CHECK(o.status == 0);
	CHECK_STR_CONTAINS(o.error, want);
	fixture_close(&f);
}

static void
test_too_large(void)
{
	static const char *const declared[] = {
		"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n{", NULL
	};
	static const char *const chunked[] = {
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"20000\r\n{", NULL
	};
	struct fixture f;
	struct outcome o;

	if (fixture_open(&f, "server-ecdsa", declared, END_OPEN) < 0)
		return;
	post(&f, f.url, NULL, 5., &o);
	CHECK(o.status == 0);
	CHECK_STR_CONTAINS(o.error, "response too large");
	f.srv.pieces = chunked;
	post(&f, f.url, NULL, 5., &o);
	CHECK(o.status == 0);
	CHECK_STR_CONTAINS(o.error, "response too large");
	fixture_close(&f);
}

static void
test_proxy(void)
{
	struct fixture f;
	struct tproxy x;
	struct outcome o;
	char proxy[64], want[160];

	if (fixture_open(&f, "server-ecdsa", json_200, END_OPEN) < 0)
		return;
	prx_start(f.loop, &x, f.srv.port, NULL);
	snprintf(proxy, sizeof(proxy), "http://127.0.0.1:%d/", x.port);
	post(&f, f.url, proxy, 5., &o);
	CHECK(o.status == 200 && o.len == 41);
	snprintf(want, sizeof(want), "CONNECT 127.0.0.1:%d HTTP/1.1\r\n"
	    "Host: 127.0.0.1:%d\r\n", f.srv.port, f.srv.port);
	CHECK(strncmp(x.head, want, strlen(want)) == 0);
	CHECK(x.tunnel);
	/* The request went through the tunnel, to the right Host. */
	snprintf(want, sizeof(want), "POST /token HTTP/1.1\r\n"
	    "Host: 127.0.0.1:%d\r\n", f.srv.port);
	CHECK(strncmp(f.srv.req, want, strlen(want)) == 0);
	prx_stop(&x);

	/* Refused: the reply's status line says so.  HOST:PORT form. */
	prx_start(f.loop, &x, f.srv.port, "HTTP/1.1 403 Forbidden\r\n"
	    "Content-Length: 0\r\n\r\n");
	snprintf(proxy, sizeof(proxy), "127.0.0.1:%d", x.port);
	post(&f, f.url, proxy, 5., &o);
	CHECK(o.status == 0);
	CHECK(strcmp(o.error, "proxy refused CONNECT: HTTP/1.1 403 Forbidden")
	    == 0);
	CHECK(f.srv.requests == 1);	/* the tunnelled one only */
	prx_stop(&x);

	/* A proxy that hangs up without a reply. */
	prx_start(f.loop, &x, f.srv.port, "");
	snprintf(proxy, sizeof(proxy), "127.0.0.1:%d", x.port);
	post(&f, f.url, proxy, 5., &o);
	CHECK(o.status == 0);
	CHECK_STR_CONTAINS(o.error, "proxy 127.0.0.1:");
	CHECK_STR_CONTAINS(o.error, "connection closed without a response");
	prx_stop(&x);
	fixture_close(&f);
}

static void
test_cancel(void)
{
	struct fixture f;
	struct outcome o;
	struct https_req *r;
	char err[256];

	if (fixture_open(&f, "server-ecdsa", NULL, END_OPEN) < 0)
		return;
	memset(&o, 0, sizeof(o));

	/* At once: the lookup is still in flight. */
	r = https_post(f.loop, f.ctx, f.res, f.url, "a=b", NULL, 5., got, &o,
	    err, sizeof(err));
	CHECK(r != NULL);
	https_cancel(f.loop, r);
	run_until(f.loop, NULL, 0.1);
	CHECK(o.calls == 0 && f.srv.requests == 0);

	/* Waiting for the response: the server sees the connection end. */
	r = https_post(f.loop, f.ctx, f.res, f.url, "a=b", NULL, 5., got, &o,
	    err, sizeof(err));
	CHECK(r != NULL);
	run_until(f.loop, &f.srv.requests, 2.);
	CHECK(f.srv.requests == 1 && o.calls == 0);
	https_cancel(f.loop, r);
	run_until(f.loop, &f.srv.closed, 1.);
	CHECK(f.srv.closed == 1 && o.calls == 0);

	/* Cancelled from its own callback: too late, and harmless. */
	o.loop = f.loop;
	o.cancel = r = https_post(f.loop, f.ctx, f.res, "https://127.0.0.1:1/",
	    "a=b", NULL, 5., got, &o, err, sizeof(err));
	run_until(f.loop, &o.calls, 2.);
	CHECK(o.calls == 1 && o.status == 0);
	memset(&o, 0, sizeof(o));

	/* Cancelled, then the resolver freed with its lookup pending. */
	r = https_post(f.loop, f.ctx, f.res, f.url, "a=b", NULL, 5., got, &o,
	    err, sizeof(err));
	https_cancel(f.loop, r);
	resolver_free(f.loop, f.res);
	f.res = NULL;
	run_until(f.loop, NULL, 0.05);
	CHECK(o.calls == 0);
	https_cancel(f.loop, NULL);
	fixture_close(&f);
}

/* A DNS server that never answers: lookups take c-ares' whole timeout. */
static void
test_resolve_paths(void)
{
	struct fixture f;
	struct outcome o;
	struct https_req *r;
	struct dnsstub dns;
	char err[256];

	if (fixture_open(&f, "server-ecdsa", json_200, END_OPEN) < 0)
		return;
	dnsstub_start(f.loop, &dns, NULL, 0);
	dns.silent = true;
	resolver_free(f.loop, f.res);
	f.res = resolver_new(f.loop, dns.servers, err, sizeof(err));
	CHECK(f.res != NULL);
	if (f.res == NULL)
		goto out;

	/* The deadline comes first; the late lookup frees the request. */
	post(&f, "https://nowhere.test/token", NULL, 0.1, &o);
	CHECK(o.status == 0);
	CHECK_STR_CONTAINS(o.error, "timed out (resolving)");
	run_until(f.loop, NULL, 1.);
	CHECK(o.calls == 1 && dns.queries >= 2);

	/* The resolver freed under a request: reported, from the loop. */
	memset(&o, 0, sizeof(o));
	r = https_post(f.loop, f.ctx, f.res, "https://nowhere.test/token", "",
	    NULL, 5., got, &o, err, sizeof(err));
	CHECK(r != NULL);
	resolver_free(f.loop, f.res);
	f.res = NULL;
	CHECK(o.calls == 0);
	run_until(f.loop, &o.calls, 1.);
	CHECK(o.calls == 1 && o.status == 0);
	CHECK_STR_CONTAINS(o.error, "resolve nowhere.test: lookup cancelled");
out:
	dnsstub_stop(f.loop, &dns);
	fixture_close(&f);
}

/*
 * A name with several addresses: each is tried in turn.  The server
 * listens on 127.0.0.2 only, so 127.0.0.1 (first in the answer, and first
 * by RFC 6724 too) refuses; with none listening, the last error is told.
 */
static void
test_fallback(void)
{
	static const struct dns_rec recs[] = {
		{ "mail.test", T_A, "127.0.0.1", 60 },
		{ "mail.test", T_A, "127.0.0.2", 60 },
		{ "down.test", T_A, "127.0.0.1", 60 },
		{ "down.test", T_A, "127.0.0.3", 60 },
	};
	struct fixture f;
	struct outcome o;
	struct dnsstub dns;
	char err[256], url[128], want[64];

	if (fixture_open(&f, "server-ecdsa", json_200, END_OPEN) < 0)
		return;
	dnsstub_start(f.loop, &dns, recs, sizeof(recs) / sizeof(recs[0]));
	resolver_free(f.loop, f.res);
	f.res = resolver_new(f.loop, dns.servers, err, sizeof(err));
	CHECK(f.res != NULL);
	if (f.res == NULL)
		goto out;
	srv_rebind(&f.srv, "127.0.0.2");
	snprintf(url, sizeof(url), "https://mail.test:%d/token", f.srv.port);
	post(&f, url, NULL, 5., &o);
	CHECK(o.status == 200 && o.len == 41 && f.srv.requests == 1);
	CHECK(strcmp(f.srv.sni, "mail.test") == 0);

	snprintf(url, sizeof(url), "https://down.test:%d/token", f.srv.port);
	post(&f, url, NULL, 5., &o);
	snprintf(want, sizeof(want), "connect 127.0.0.3:%d: Connection refused",
	    f.srv.port);
	CHECK(o.status == 0);
	CHECK_STR_CONTAINS(o.error, want);
out:
	dnsstub_stop(f.loop, &dns);
	fixture_close(&f);
}

static void
test_bad_arguments(void)
{
	static const char *const urls[] = {
		"http://127.0.0.1/token", "https://", "https:///token",
		"https://h:0/", "https://h:65536/", "https://h:x/",
		"https://a b/", "https://user@h/", "https://::1/",
		"https://[example.com]/", "https://h/#frag", "ftp://h/",
		"https://h/\r\nX: y", "https://h:/", "HTTPS:", "",
	};
	static const char *const proxies[] = {
		"socks5://p:1080", "https://p:443", "http://u:pw@p:8080",
		"http://p:1/x", "http://:8080", "http://p:99999",
	};
	struct fixture f;
	struct outcome o;
	struct https_req *r;
	char err[256], v6url[64];

	if (fixture_open(&f, "server-ecdsa", json_200, END_OPEN) < 0)
		return;
	memset(&o, 0, sizeof(o));
	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		err[0] = '\0';
		r = https_post(f.loop, f.ctx, f.res, urls[i], "", NULL, 1., got,
		    &o, err, sizeof(err));
		CHECK(r == NULL && err[0] != '\0');
		if (r != NULL) {
			fprintf(stderr, "url accepted: %s\n", urls[i]);
			https_cancel(f.loop, r);
		}
	}
	for (size_t i = 0; i < sizeof(proxies) / sizeof(proxies[0]); i++) {
		err[0] = '\0';
		r = https_post(f.loop, f.ctx, f.res, f.url, "", proxies[i], 1.,
		    got, &o, err, sizeof(err));
		CHECK(r == NULL);
		CHECK_STR_CONTAINS(err, "proxy");
		if (r != NULL)
			https_cancel(f.loop, r);
	}
	/* Valid forms start (then cancelled): v6 literal, default port,
	 * a proxy without a port, an empty proxy meaning none. */
	snprintf(v6url, sizeof(v6url), "https://[::1]:%d", f.srv.port);
	const char *const good[][2] = {
		{ v6url, NULL }, { "https://localhost", "127.0.0.1" },
		{ "https://localhost?x=1", "" },
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		r = https_post(f.loop, f.ctx, f.res, good[i][0], NULL,
		    good[i][1], 1., got, &o, err, sizeof(err));
		CHECK(r != NULL);
		https_cancel(f.loop, r);
	}
	run_until(f.loop, NULL, 0.05);
	CHECK(o.calls == 0);

	/* A CA file that is not there. */
	CHECK(https_ctx_new("/nonexistent/ca.pem", err, sizeof(err)) == NULL);
	CHECK_STR_CONTAINS(err, "/nonexistent/ca.pem");
	fixture_close(&f);
}

void
test_https(void)
{
	SSL_CTX *sys;
	char err[256];

	test_parse();
	test_proxy_for();
	/* The system bundle loads (the default trust anchors). */
	sys = https_ctx_new(NULL, err, sizeof(err));
	CHECK(sys != NULL);
	SSL_CTX_free(sys);
	test_bad_arguments();
	test_content_length();
	test_chunked();
	test_until_eof();
	test_error_status();
	test_verify();
	test_timeouts();
	test_refused();
	test_too_large();
	test_proxy();
	test_cancel();
	test_resolve_paths();
	test_fallback();
}
