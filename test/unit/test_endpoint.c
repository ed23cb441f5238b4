/*
 * endpoint: plain and TLS sides over a socketpair, without an event loop.
 * Covers waits, EOF kinds (clean vs truncated), backpressure on a full
 * buffer and draining of bytes BoringSSL has already decrypted.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buffer.h"
#include "config.h"
#include "endpoint.h"
#include "unit.h"

static void
nop_cb(EV_P_ ev_io *w, int revents)
{
	(void)w;
	(void)revents;
#if EV_MULTIPLICITY
	(void)loop;
#endif
}

static void
pair(int sv[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
}

static void
test_plain(void)
{
	struct endpoint a, b;
	struct buf in, out;
	int sv[2];
	size_t len;
	const char *p;

	pair(sv);
	ep_init(&a, sv[0], NULL, nop_cb, NULL);
	ep_init(&b, sv[1], NULL, nop_cb, NULL);
	buf_init(&in, 64);
	buf_init(&out, 64);

	CHECK(ep_read(&b, &in) == EP_AGAIN);
	CHECK(b.rd_wait == EV_READ);
	ep_events(&b, EV_READ);
	CHECK(b.rd_wait == 0);

	CHECK(buf_append(&out, "hello", 5) == 0);
	CHECK(ep_write(&a, &out) == EP_OK);
	CHECK(buf_empty(&out) && a.bytes_out == 5);
	/* A short read is taken as "would block": no read for the EAGAIN. */
	CHECK(ep_read(&b, &in) == EP_AGAIN && b.rd_wait == EV_READ);
	p = buf_peek(&in, &len);
	CHECK(len == 5 && memcmp(p, "hello", 5) == 0);
	CHECK(b.bytes_in == 5);

	/* A full buffer stops reading with EP_OK and no wait: backpressure. */
	char big[100];
	memset(big, 'x', sizeof(big));
	CHECK(write(sv[0], big, sizeof(big)) == (ssize_t)sizeof(big));
	CHECK(ep_read(&b, &in) == EP_OK);
	CHECK(buf_room(&in) == 0 && b.rd_wait == 0);
	buf_consume(&in, 64);
	CHECK(ep_read(&b, &in) == EP_AGAIN);
	CHECK(buf_len(&in) == 100 + 5 - 64);
	buf_release(&in);

	/* FIN is a clean EOF for a plain side. */
	CHECK(ep_shutdown(&a, true) == EP_OK && a.shut);
	CHECK(ep_read(&b, &in) == EP_EOF);
	CHECK(b.eof && b.eof_clean);
	buf_release(&in);

	/* Writing to a closed peer is an error with a reason, not a crash. */
	close(sv[1]);
	b.fd = -1;
	CHECK(buf_append(&out, "x", 1) == 0);
	CHECK(ep_write(&a, &out) == EP_ERROR);
	CHECK(a.err[0] != '\0');
	buf_release(&out);
	close(sv[0]);
}

/* A TLS pair: server side from a config service, client side trusts the CA. */
struct tls_pair {
	struct config	*cf;
	SSL_CTX		*cctx;
	struct endpoint	 srv, cli;
};

/*
 * A service "[s]" with the cert/key pair named certname and svc_extra lines;
 * the client side on cctx (owned by tp from now on).
 */
static int
tls_pair_open(struct tls_pair *tp, const char *certname, const char *svc_extra,
    SSL_CTX *cctx, const char *alpn, size_t alpn_len)
{
	const char *d = getenv("MAILPROXY_CERTS");
	char text[1024], *errors = NULL;
	int sv[2];

	snprintf(text, sizeof(text), "[s]\nprotocol = imap\n"
	    "listen = 127.0.0.1:0\nclient_tls = implicit\n"
	    "cert = %s/%s.crt\nkey = %s/%s.key\n"
	    "upstream = 127.0.0.1:143\nupstream_tls = none\n%s",
	    d ? d : "certs/dev", certname, d ? d : "certs/dev", certname,
	    svc_extra);
	tp->cctx = cctx;
	tp->cf = config_parse(text, strlen(text), "t.ini", &errors);
	if (tp->cf == NULL) {
		fprintf(stderr, "%s", errors);
		free(errors);
		SSL_CTX_free(cctx);
		return -1;
	}
	SSL *s = SSL_new(tp->cf->services[0].client_ctx);
	SSL *c = SSL_new(tp->cctx);
	SSL_set_accept_state(s);
	SSL_set_connect_state(c);
	if (alpn != NULL)
		SSL_set_alpn_protos(c, (const uint8_t *)alpn, alpn_len);
	pair(sv);
	ep_init(&tp->srv, sv[0], s, nop_cb, NULL);
	ep_init(&tp->cli, sv[1], c, nop_cb, NULL);
	return 0;
}

static int
tls_pair_new(struct tls_pair *tp, const char *alpn, size_t alpn_len)
{
	return tls_pair_open(tp, "server-ecdsa", "", SSL_CTX_new(TLS_method()),
	    alpn, alpn_len);
}

/* Runs both handshakes in turn; 0 when both complete. */
static int
tls_pair_handshake(struct tls_pair *tp)
{
	enum ep_status a = EP_AGAIN, b = EP_AGAIN;

	for (int i = 0; i < 20 && (a != EP_OK || b != EP_OK); i++) {
		if (a != EP_OK)
			a = ep_handshake(&tp->cli);
		if (b != EP_OK)
			b = ep_handshake(&tp->srv);
		if (a == EP_ERROR || b == EP_ERROR)
			return -1;
	}
	return a == EP_OK && b == EP_OK ? 0 : -1;
}

static void
tls_pair_free(struct tls_pair *tp)
{
	SSL_free(tp->srv.ssl);
	SSL_free(tp->cli.ssl);
	if (tp->srv.fd >= 0)
		close(tp->srv.fd);
	if (tp->cli.fd >= 0)
		close(tp->cli.fd);
	SSL_CTX_free(tp->cctx);
	config_unref(tp->cf);
}

static void
test_tls_data_and_clean_close(void)
{
	struct tls_pair tp;
	struct buf b;
	size_t len;
	const char *p;
	char big[BUF_CAPACITY + 40000];

	if (tls_pair_new(&tp, NULL, 0) < 0) {
		CHECK(!"tls pair");
		return;
	}
	CHECK(tls_pair_handshake(&tp) == 0);
	buf_init(&b, BUF_CAPACITY);

	/* More than a buffer's worth through 16 KiB records. */
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 7);
	struct buf out;
	buf_init(&out, sizeof(big));
	CHECK(buf_append(&out, big, sizeof(big)) == 0);
	CHECK(ep_write(&tp.cli, &out) == EP_OK);
	CHECK(ep_read(&tp.srv, &b) == EP_OK);		/* stopped: full */
	CHECK(buf_room(&b) == 0 && tp.srv.rd_wait == 0);
	p = buf_peek(&b, &len);
	CHECK(len == BUF_CAPACITY && memcmp(p, big, len) == 0);
	buf_consume(&b, len);
	/* The rest sits decrypted or encrypted in the SSL: drained anyway. */
	CHECK(ep_read(&tp.srv, &b) == EP_AGAIN);
	p = buf_peek(&b, &len);
	CHECK(len == sizeof(big) - BUF_CAPACITY &&
	    memcmp(p, big + BUF_CAPACITY, len) == 0);
	buf_release(&b);

	/* close_notify is a clean EOF. */
	CHECK(ep_shutdown(&tp.cli, true) == EP_OK);
	CHECK(ep_read(&tp.srv, &b) == EP_EOF);
	CHECK(tp.srv.eof && tp.srv.eof_clean);
	/* Half-close: the other direction still works after close_notify. */
	CHECK(buf_append(&out, "reply", 5) == 0);
	CHECK(ep_write(&tp.srv, &out) == EP_OK);
	CHECK(ep_read(&tp.cli, &b) == EP_EOF || buf_len(&b) == 5);
	p = buf_peek(&b, &len);
	CHECK(len == 5 && p != NULL && memcmp(p, "reply", 5) == 0);
	buf_release(&b);
	buf_release(&out);
	tls_pair_free(&tp);
}

static void
test_tls_truncation_is_visible(void)
{
	struct tls_pair tp;
	struct buf b;

	if (tls_pair_new(&tp, NULL, 0) < 0)
		return;
	CHECK(tls_pair_handshake(&tp) == 0);
	buf_init(&b, 64);
	/* FIN without close_notify: EOF, but not a clean one. */
	CHECK(ep_shutdown(&tp.cli, false) == EP_OK);
	CHECK(ep_read(&tp.srv, &b) == EP_EOF);
	CHECK(tp.srv.eof && !tp.srv.eof_clean);
	buf_release(&b);
	tls_pair_free(&tp);
}

/*
 * Bytes the client sends right behind its Finished are read ahead with it:
 * the socket's read event will not announce them, so the endpoint must
 * say it holds them (the session reads at once instead of waiting).
 */
static void
test_tls_bytes_behind_finished(void)
{
	struct tls_pair tp;
	struct buf b, out;
	enum ep_status a = EP_AGAIN, st = EP_AGAIN;
	struct pollfd pfd;
	size_t len;
	const char *p;

	if (tls_pair_new(&tp, NULL, 0) < 0) {
		CHECK(!"tls pair");
		return;
	}
	buf_init(&out, 64);
	CHECK(ep_handshake(&tp.cli) == EP_AGAIN);		/* ClientHello */
	CHECK(ep_handshake(&tp.srv) == EP_AGAIN);		/* its flight */
	a = ep_handshake(&tp.cli);				/* Finished */
	CHECK(a == EP_OK);
	CHECK(buf_append(&out, "a1 NOOP\r\n", 9) == 0);
	CHECK(ep_write(&tp.cli, &out) == EP_OK);
	for (int i = 0; i < 4 && st == EP_AGAIN; i++)
		st = ep_handshake(&tp.srv);
	CHECK(st == EP_OK);
	pfd.fd = tp.srv.fd;
	pfd.events = POLLIN;
	CHECK(ep_has_pending(&tp.srv) || poll(&pfd, 1, 0) == 1);
	buf_init(&b, 64);
	CHECK(ep_read(&tp.srv, &b) == EP_AGAIN);
	p = buf_peek(&b, &len);
	CHECK(len == 9 && p != NULL && memcmp(p, "a1 NOOP\r\n", 9) == 0);
	CHECK(!ep_has_pending(&tp.srv));
	buf_release(&b);
	buf_release(&out);
	tls_pair_free(&tp);
}

static int	fed_reads;

static void
count_cb(EV_P_ ev_io *w, int revents)
{
	(void)w;
#if EV_MULTIPLICITY
	(void)loop;
#endif
	if (revents & EV_READ)
		fed_reads++;
}

/*
 * A reader that stopped with bytes left in TLS (a full buffer) and now
 * wants to read again: the socket is empty, so only ep_update() can say
 * there is something to read.
 */
static void
test_tls_pending_read_is_announced(void)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct tls_pair tp;
	struct buf b, out;
	struct pollfd pfd;

	if (loop == NULL || tls_pair_new(&tp, NULL, 0) < 0) {
		CHECK(!"loop and tls pair");
		return;
	}
	CHECK(tls_pair_handshake(&tp) == 0);
	buf_init(&out, 64);
	CHECK(buf_append(&out, "a1 NOOP\r\n", 9) == 0);
	CHECK(ep_write(&tp.cli, &out) == EP_OK);
	buf_init(&b, 4);
	CHECK(ep_read(&tp.srv, &b) == EP_OK);		/* full after 4 */
	pfd.fd = tp.srv.fd;
	pfd.events = POLLIN;
	CHECK(ep_has_pending(&tp.srv) && poll(&pfd, 1, 0) == 0);
	ev_set_cb(&tp.srv.io, count_cb);
	fed_reads = 0;
	ep_update(loop, &tp.srv, true, false);
	ev_run(loop, EVRUN_NOWAIT);
	CHECK(fed_reads == 1);
	ep_update(loop, &tp.srv, false, false);
	buf_release(&b);
	buf_release(&out);
	tls_pair_free(&tp);
	ev_loop_destroy(loop);
}

/*
 * Many records of every size in one segment, read through a buffer smaller
 * than some of them, then the end (clean or cut) right behind the data:
 * every byte in order, then the right EOF.
 */
static void
test_tls_records_read_ahead(bool clean)
{
	struct tls_pair tp;
	struct buf b, out;
	static char sent[200000], got[200000];
	size_t nsent = 0, ngot = 0, len;
	const char *p;
	enum ep_status st = EP_AGAIN;

	if (tls_pair_new(&tp, NULL, 0) < 0) {
		CHECK(!"tls pair");
		return;
	}
	CHECK(tls_pair_handshake(&tp) == 0);
	buf_init(&out, 40000);
	for (size_t size = 1; nsent + size < 60000; size = size * 3 + 1) {
		for (size_t i = 0; i < size; i++)
			sent[nsent + i] = (char)(nsent + i * 13);
		CHECK(buf_append(&out, sent + nsent, size) == 0);
		CHECK(ep_write(&tp.cli, &out) == EP_OK);	/* one record */
		nsent += size;
	}
	CHECK(ep_shutdown(&tp.cli, clean) == EP_OK);
	buf_init(&b, 1000);
	for (int i = 0; i < 1000 && st != EP_EOF && st != EP_ERROR; i++) {
		st = ep_read(&tp.srv, &b);
		while ((p = buf_peek(&b, &len)) != NULL) {
			if (ngot + len <= sizeof(got))
				memcpy(got + ngot, p, len);
			ngot += len;
			buf_consume(&b, len);
		}
	}
	CHECK(st == EP_EOF);
	CHECK(tp.srv.eof && tp.srv.eof_clean == clean);
	CHECK(ngot == nsent && memcmp(got, sent, nsent) == 0);
	CHECK(!ep_has_pending(&tp.srv));
	buf_release(&b);
	buf_release(&out);
	tls_pair_free(&tp);
}

static void
test_alpn_policy(void)
{
	struct tls_pair tp;
	static const char http[] = "\x08http/1.1\x02h2";
	static const char imap[] = "\x08http/1.1\x04imap";
	static const char smtp[] = "\x04smtp";
	const uint8_t *sel;
	unsigned sel_len;

	/* ALPACA: only foreign protocols offered -> refused. */
	if (tls_pair_new(&tp, http, sizeof(http) - 1) == 0) {
		CHECK(tls_pair_handshake(&tp) == -1);
		tls_pair_free(&tp);
	}
	/* Another mail protocol is foreign too (imap listener). */
	if (tls_pair_new(&tp, smtp, sizeof(smtp) - 1) == 0) {
		CHECK(tls_pair_handshake(&tp) == -1);
		tls_pair_free(&tp);
	}
	/* The port's own protocol among others is selected. */
	if (tls_pair_new(&tp, imap, sizeof(imap) - 1) == 0) {
		CHECK(tls_pair_handshake(&tp) == 0);
		SSL_get0_alpn_selected(tp.cli.ssl, &sel, &sel_len);
		CHECK(sel_len == 4 && memcmp(sel, "imap", 4) == 0);
		tls_pair_free(&tp);
	}
	/* No ALPN at all is fine (every mail client today). */
	if (tls_pair_new(&tp, NULL, 0) == 0) {
		CHECK(tls_pair_handshake(&tp) == 0);
		tls_pair_free(&tp);
	}
}

/*
 * tls_ciphers = legacy: 3DES for the oldest printers (the machine's
 * OpenSSL 3 client has no 3DES left, so BoringSSL is the client here).
 */
static void
test_legacy_3des(void)
{
	static const struct { const char *svc_extra; uint16_t version; int ok; }
	    cases[] = {
		{ "tls_min_version = 1.0\n", TLS1_VERSION, 1 },
		{ "tls_min_version = 1.0\n", TLS1_2_VERSION, 1 },
		{ "tls_min_version = 1.0\ntls_ciphers = modern\n", TLS1_VERSION, 0 },
		{ "", TLS1_2_VERSION, 0 },	/* the default for 1.2: modern */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct tls_pair tp;
		SSL_CTX *cctx = SSL_CTX_new(TLS_method());

		CHECK(SSL_CTX_set_strict_cipher_list(cctx, "DES-CBC3-SHA"));
		SSL_CTX_set_min_proto_version(cctx, cases[i].version);
		SSL_CTX_set_max_proto_version(cctx, cases[i].version);
		if (tls_pair_open(&tp, "server-rsa", cases[i].svc_extra, cctx,
		    NULL, 0) < 0) {
			CHECK(0);
			continue;
		}
		CHECK((tls_pair_handshake(&tp) == 0) == cases[i].ok);
		tls_pair_free(&tp);
	}
}

/* A short send (the socket buffer is full) waits for the write event. */
static void
test_plain_short_send(void)
{
	static char big[256 * 1024];
	struct endpoint a;
	struct buf out;
	int sv[2], small = 4096;

	pair(sv);
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	ep_init(&a, sv[0], NULL, nop_cb, NULL);
	buf_init(&out, sizeof(big));
	memset(big, 'y', sizeof(big));
	CHECK(buf_append(&out, big, sizeof(big)) == 0);
	CHECK(ep_write(&a, &out) == EP_AGAIN && a.wr_wait == EV_WRITE);
	CHECK(a.bytes_out > 0 && a.bytes_out < sizeof(big));
	CHECK(buf_len(&out) == sizeof(big) - a.bytes_out);
	/* Until the event fires, the relay does not call again. */
	ep_events(&a, EV_WRITE);
	CHECK(a.wr_wait == 0);
	buf_release(&out);
	close(sv[0]);
	close(sv[1]);
}

void
test_endpoint(void)
{
	test_plain();
	test_plain_short_send();
	test_tls_data_and_clean_close();
	test_tls_truncation_is_visible();
	test_tls_bytes_behind_finished();
	test_tls_pending_read_is_announced();
	test_tls_records_read_ahead(true);
	test_tls_records_read_ahead(false);
	test_alpn_policy();
	test_legacy_3des();
}
