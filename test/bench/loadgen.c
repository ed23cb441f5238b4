/*
 * loadgen: the benchmark client, on the project's own stack (libev +
 * BoringSSL), one process, many non-blocking connections, bounded in time.
 *
 *   loadgen -m MODE -a HOST:PORT [-c CONC] [-d SECONDS] [-n N] [-p PROTO]
 *           [-S SOURCES] [-r]
 *
 * Modes:
 *   handshake   C connections at a time: connect, full TLS handshake (-r:
 *               resumed), read the first line, close.  sessions/s, p50/p99.
 *   starttls    the same, but plaintext greeting + STARTTLS (-p smtp|pop3|
 *               imap) before the handshake, and NOOP + its reply after it:
 *               a listener that offers STARTTLS, upstream leg included.
 *   upgrade     plaintext clients: connect, read the first line, NOOP and
 *               its reply, close (the proxy does STARTTLS upstream).
 *               sessions/s, p50/p99.
 *   throughput  C TLS connections streaming both ways through an echo
 *               backend for SECONDS; MB/s each way.
 *   idle        open N TLS sessions, read each greeting, print "ready", hold
 *               them for SECONDS.
 * -S spreads source addresses over 127.0.0.2 .. 127.0.0.S+1 (50k+ sockets),
 * the port chosen at connect (IP_BIND_ADDRESS_NO_PORT): a port chosen at
 * bind would be taken from every address, the proxy's upstream connections
 * from 127.0.0.1 included.
 * Certificates are not verified: every peer is measured the same way.
 * Output: one line of key=value.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

enum mode { M_HANDSHAKE, M_STARTTLS, M_UPGRADE, M_THROUGHPUT, M_IDLE };
enum cstate { C_CONNECT, C_PLAIN_GREETING, C_EHLO_REPLY, C_STARTTLS_REPLY,
    C_HANDSHAKE,
    C_GREETING, C_STREAM, C_HOLD };

struct conn {
	int		 fd;
	SSL		*ssl;
	ev_io		 io;
	enum cstate	 state;
	ev_tstamp	 started;
	char		 line[512];
	size_t		 linelen;
	size_t		 wpos;		/* throughput: offset in the chunk */
};

static enum mode	 mode = M_HANDSHAKE;
static struct sockaddr_in target;
static int		 conc = 10, seconds = 5, sources = 1, resume, total_n;
static const char	*proto = "smtp";
static SSL_CTX		*ctx;
static SSL_SESSION	*saved_session;
static struct ev_loop	*loop;
static ev_tstamp	 t_start, t_end;
static unsigned long	 done, errors, opened, resumed;
static double		*lat;
static size_t		 nlat, caplat;
static unsigned long long rx_bytes, tx_bytes;
static char		 chunk[16384];
static int		 next_source;
static bool		 stopping;
static unsigned long	 started;	/* idle: connections begun */

static void conn_cb(EV_P_ ev_io *w, int revents);
static void conn_start(void);

static void
record(double ms)
{
	if (nlat == caplat) {
		caplat = caplat ? caplat * 2 : 65536;
		lat = realloc(lat, caplat * sizeof(*lat));
	}
	lat[nlat++] = ms;
}

static void
conn_free(struct conn *c)
{
	ev_io_stop(loop, &c->io);
	if (c->ssl != NULL) {
		resumed += SSL_session_reused(c->ssl) != 0;
		/* TLS 1.2: the handshake's session (TLS 1.3: the ticket, kept
		 * by keep_ticket() when it arrived). */
		if (resume && saved_session == NULL &&
		    SSL_version(c->ssl) < TLS1_3_VERSION &&
		    SSL_session_reused(c->ssl) == 0)
			saved_session = SSL_get1_session(c->ssl);
		SSL_free(c->ssl);
	}
	close(c->fd);
	free(c);
}

/* -r: the first resumable session a server gives (a TLS 1.3 ticket comes
 * after the handshake, so it is caught here). */
static int
keep_ticket(SSL *ssl, SSL_SESSION *session)
{
	if (saved_session != NULL || SSL_version(ssl) < TLS1_3_VERSION)
		return 0;
	saved_session = session;
	return 1;	/* the reference is ours */
}

/* The session ended (well or not): start the next one while time is left. */
static void
conn_done(struct conn *c, bool ok)
{
	if (!ok && mode == M_IDLE && !stopping &&
	    started < (unsigned long)total_n) {
		errors++;
		conn_free(c);
		conn_start();
		return;
	}
	if (ok) {
		done++;
		record((ev_now(loop) - c->started) * 1000.0);
	} else
		errors++;
	conn_free(c);
	if (!stopping && (mode == M_HANDSHAKE || mode == M_STARTTLS ||
	    mode == M_UPGRADE))
		conn_start();
}

static void
want(struct conn *c, int events)
{
	ev_io_stop(loop, &c->io);
	ev_io_set(&c->io, c->fd, events);
	ev_io_start(loop, &c->io);
}

static int
ssl_want(struct conn *c, int ret)
{
	switch (SSL_get_error(c->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		want(c, EV_READ);
		return 0;
	case SSL_ERROR_WANT_WRITE:
		want(c, EV_WRITE);
		return 0;
	default:
		ERR_clear_error();
		return -1;
	}
}

/* Reads one CRLF line (plain or TLS); 1 = got it, 0 = wait, -1 = error. */
static int
read_line(struct conn *c)
{
	for (;;) {
		char ch;
		int n;
		if (c->ssl != NULL) {
			n = SSL_read(c->ssl, &ch, 1);
			if (n <= 0)
				return ssl_want(c, n);
		} else {
			n = (int)read(c->fd, &ch, 1);
			if (n == 0)
				return -1;
			if (n < 0) {
				if (errno == EAGAIN) {
					want(c, EV_READ);
					return 0;
				}
				return -1;
			}
		}
		if (c->linelen < sizeof(c->line) - 1)
			c->line[c->linelen++] = ch;
		if (ch == '\n') {
			c->line[c->linelen] = '\0';
			return 1;
		}
	}
}

static void
start_tls(struct conn *c)
{
	c->ssl = SSL_new(ctx);
	SSL_set_fd(c->ssl, c->fd);
	SSL_set_connect_state(c->ssl);
	SSL_set_tlsext_host_name(c->ssl, "localhost");
	if (resume && saved_session != NULL)
		SSL_set_session(c->ssl, saved_session);
	c->state = C_HANDSHAKE;
}

/* Drives one connection as far as it goes without blocking. */
static void
step(struct conn *c)
{
	int r, n;

	for (;;) {
		switch (c->state) {
		case C_CONNECT: {
			int err = 0;
			socklen_t len = sizeof(err);
			getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
			if (err != 0) {
				conn_done(c, false);
				return;
			}
			opened++;
			if (mode == M_UPGRADE || mode == M_STARTTLS)
				c->state = C_PLAIN_GREETING;
			else
				start_tls(c);
			break;
		}
		case C_PLAIN_GREETING:
			if ((r = read_line(c)) <= 0) {
				if (r < 0)
					conn_done(c, false);
				return;
			}
			if (mode == M_UPGRADE) {
				/* One command through the relay, as a device
				 * sends (and as a server's TLS tickets need: a
				 * BoringSSL server sends them with its first
				 * reply). */
				if (c->line[0] != '2' && c->line[0] != '+' &&
				    c->line[0] != '*') {
					conn_done(c, false);
					return;
				}
				c->linelen = 0;
				if (write(c->fd, "NOOP\r\n", 6) != 6) {
					conn_done(c, false);
					return;
				}
				c->state = C_GREETING;
				want(c, EV_READ);
				return;
			}
			c->linelen = 0;
			if (strcmp(proto, "smtp") == 0) {
				/* As real clients do: EHLO, then STARTTLS. */
				if (write(c->fd, "EHLO bench\r\n", 12) != 12) {
					conn_done(c, false);
					return;
				}
				c->state = C_EHLO_REPLY;
				break;
			}
			/* FALLTHROUGH */
		case C_EHLO_REPLY:
			if (c->state == C_EHLO_REPLY) {
				if ((r = read_line(c)) <= 0) {
					if (r < 0)
						conn_done(c, false);
					return;
				}
				bool last = c->linelen < 4 || c->line[3] == ' ';
				c->linelen = 0;
				if (!last)
					break;
			}
			{
				const char *cmd = strcmp(proto, "smtp") == 0 ?
				    "STARTTLS\r\n" : strcmp(proto, "pop3") == 0 ?
				    "STLS\r\n" : "a STARTTLS\r\n";
				c->linelen = 0;
				if (write(c->fd, cmd, strlen(cmd)) !=
				    (ssize_t)strlen(cmd)) {
					conn_done(c, false);
					return;
				}
				c->state = C_STARTTLS_REPLY;
			}
			break;
		case C_STARTTLS_REPLY:
			if ((r = read_line(c)) <= 0) {
				if (r < 0)
					conn_done(c, false);
				return;
			}
			c->linelen = 0;
			start_tls(c);
			break;
		case C_HANDSHAKE:
			n = SSL_do_handshake(c->ssl);
			if (n != 1) {
				if (ssl_want(c, n) < 0)
					conn_done(c, false);
				return;
			}
			if (mode == M_STARTTLS) {
				/* Greeted already: one command inside TLS proves
				 * the upstream leg works too. */
				if (SSL_write(c->ssl, "NOOP\r\n", 6) != 6) {
					conn_done(c, false);
					return;
				}
			}
			c->state = mode == M_THROUGHPUT ? C_STREAM : C_GREETING;
			break;
		case C_GREETING:
			if ((r = read_line(c)) <= 0) {
				if (r < 0)
					conn_done(c, false);
				return;
			}
			if (mode == M_IDLE) {
				done++;
				c->state = C_HOLD;
				want(c, EV_READ);
				if (started < (unsigned long)total_n)
					conn_start();	/* keep the ramp going */
				return;
			}
			conn_done(c, true);
			return;
		case C_STREAM: {
			bool progress = false;
			char buf[16384];
			n = SSL_write(c->ssl, chunk + c->wpos,
			    (int)(sizeof(chunk) - c->wpos));
			if (n > 0) {
				c->wpos = (c->wpos + (size_t)n) % sizeof(chunk);
				if (ev_now(loop) >= t_start)
					tx_bytes += (unsigned)n;
				progress = true;
			}
			while ((r = SSL_read(c->ssl, buf, sizeof(buf))) > 0) {
				if (ev_now(loop) >= t_start)
					rx_bytes += (unsigned)r;
				progress = true;
			}
			if (progress)
				continue;
			int e = SSL_get_error(c->ssl, r);
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
				conn_done(c, false);
				return;
			}
			want(c, EV_READ | EV_WRITE);
			return;
		}
		case C_HOLD:
			if (read_line(c) < 0)
				conn_done(c, false);
			return;
		}
	}
}

static void
conn_cb(EV_P_ ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	step(w->data);
}

static void
conn_start(void)
{
	struct conn *c = calloc(1, sizeof(*c));
	struct sockaddr_in src = { .sin_family = AF_INET };
	int one = 1;

	started++;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (sources > 1) {
		src.sin_addr.s_addr = htonl(0x7f000002 + (uint32_t)(next_source++ %
		    sources));
		setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		    sizeof(one));
		bind(c->fd, (struct sockaddr *)&src, sizeof(src));
	}
	c->started = ev_now(loop);
	c->state = C_CONNECT;
	ev_io_init(&c->io, conn_cb, c->fd, EV_WRITE);
	c->io.data = c;
	if (connect(c->fd, (struct sockaddr *)&target, sizeof(target)) < 0 &&
	    errno != EINPROGRESS) {
		errors++;
		close(c->fd);
		free(c);
		return;
	}
	ev_io_start(loop, &c->io);
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void
stop_cb(EV_P_ ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	stopping = true;
	t_end = ev_now(EV_A);
	ev_break(EV_A_ EVBREAK_ALL);
}

static void
ready_cb(EV_P_ ev_timer *w, int revents)
{
	(void)revents;
	if (done + errors >= (unsigned long)total_n) {
		printf("ready sessions=%lu errors=%lu\n", done, errors);
		fflush(stdout);
		ev_timer_stop(EV_A_ w);
	}
}

int
main(int argc, char *argv[])
{
	ev_timer stop, ready;
	char *host = NULL, *colon;
	int ch;

	signal(SIGPIPE, SIG_IGN);
	while ((ch = getopt(argc, argv, "m:a:c:d:n:p:S:r")) != -1) {
		switch (ch) {
		case 'm':
			mode = strcmp(optarg, "handshake") == 0 ? M_HANDSHAKE :
			    strcmp(optarg, "starttls") == 0 ? M_STARTTLS :
			    strcmp(optarg, "upgrade") == 0 ? M_UPGRADE :
			    strcmp(optarg, "throughput") == 0 ? M_THROUGHPUT : M_IDLE;
			break;
		case 'a': host = optarg; break;
		case 'c': conc = atoi(optarg); break;
		case 'd': seconds = atoi(optarg); break;
		case 'n': total_n = atoi(optarg); break;
		case 'p': proto = optarg; break;
		case 'S': sources = atoi(optarg); break;
		case 'r': resume = 1; break;
		default:
			fprintf(stderr, "usage: see the comment in loadgen.c\n");
			return 1;
		}
	}
	if (host == NULL || (colon = strrchr(host, ':')) == NULL)
		return 1;
	*colon = '\0';
	target.sin_family = AF_INET;
	target.sin_port = htons((uint16_t)atoi(colon + 1));
	inet_pton(AF_INET, host, &target.sin_addr);
	memset(chunk, 'x', sizeof(chunk));

	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx != NULL && resume) {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
		SSL_CTX_sess_set_new_cb(ctx, keep_ticket);
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
	if (getenv("LOADGEN_TLS12") != NULL)
		SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
	loop = EV_DEFAULT;
	if (mode == M_IDLE) {
		/* Ramp up 200 at a time: no SYN storm against any backlog. */
		conc = total_n < 200 ? total_n : 200;
		ev_timer_init(&ready, ready_cb, 0.05, 0.05);
		ev_timer_start(loop, &ready);
	}
	for (int i = 0; i < conc; i++)
		conn_start();
	ev_now_update(loop);
	/* Throughput: count only after a one-second warm-up. */
	t_start = ev_now(loop) + (mode == M_THROUGHPUT ? 1.0 : 0.0);
	ev_timer_init(&stop, stop_cb, seconds + (mode == M_THROUGHPUT ? 1.0 : 0.0),
	    0.);
	ev_timer_start(loop, &stop);
	ev_run(loop, 0);

	double secs = t_end - t_start;
	if (mode == M_THROUGHPUT) {
		printf("mode=throughput conc=%d seconds=%.2f rx_mbps=%.1f "
		    "tx_mbps=%.1f errors=%lu\n", conc, secs,
		    rx_bytes / secs / 1e6, tx_bytes / secs / 1e6, errors);
		return errors > 0 ? 2 : 0;
	}
	if (mode == M_IDLE) {
		printf("mode=idle sessions=%lu errors=%lu\n", done, errors);
		return 0;
	}
	qsort(lat, nlat, sizeof(*lat), cmp);
	printf("mode=%s conc=%d seconds=%.2f sessions=%lu rate=%.1f "
	    "p50_ms=%.2f p99_ms=%.2f errors=%lu resumed=%lu\n",
	    argv[optind - 1] ? (mode == M_HANDSHAKE ? "handshake" :
	    mode == M_STARTTLS ? "starttls" : "upgrade") : "", conc, secs, done,
	    done / secs, nlat ? lat[nlat / 2] : 0., nlat ? lat[nlat * 99 / 100] :
	    0., errors, resumed);
	return 0;
}
