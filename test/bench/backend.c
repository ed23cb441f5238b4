/*
 * backend: the benchmark's upstream server (libev + BoringSSL).
 *
 *   backend -m MODE -l PORT [-c CERT -k KEY] [-u UPSTREAM_PORT] [-f N]
 *
 *   -f N      N processes, each with its own SO_REUSEPORT socket on PORT: more
 *             connections than one process's descriptor limit allows
 *
 *   greet     sends "* OK bench ready\r\n", then reads and discards until EOF
 *   echo      sends back every byte it receives
 *   starttls  an SMTP server that offers STARTTLS (220, EHLO, STARTTLS, TLS
 *             handshake), then waits for EOF: the upgrade path's upstream
 *   smtp      a plaintext SMTP server: 220, then "250 ok" to every line
 *   tls       a bare BoringSSL TLS server: handshake, greeting, wait for EOF
 *             (the library floor: what a handshake costs with no proxying)
 *   tlsecho   the same TLS server, echoing every byte (the relay's floor)
 *   tlsdial   the least a TLS proxy can do: handshake, then dial 127.0.0.1:
 *             UPSTREAM_PORT and relay both ways (one 64 KiB buffer each
 *             way), close both at the first EOF (no half-close, no
 *             close_notify, no protocol): the floor of any design that opens
 *             an upstream connection per session
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

enum bmode { B_GREET, B_ECHO, B_STARTTLS, B_TLS, B_SMTP, B_TLSECHO, B_TLSDIAL };
enum bstate { S_EHLO, S_STARTTLS, S_HANDSHAKE, S_WAIT };

struct bconn {
	int		 fd;
	SSL		*ssl;
	ev_io		 io;
	enum bstate	 state;
	char		 line[512];
	size_t		 linelen;
	char		*pend;		/* echo only: bytes not yet written back */
	size_t		 plen;
	int		 ufd;		/* tlsdial: the upstream, -1 before */
	ev_io		 uio;
	size_t		 poff;		/* tlsdial: pend's bytes sent so far */
	char		*ubuf;		/* tlsdial: upstream bytes for the client */
	size_t		 ulen;
};

/* The echo buffer; only echo connections have one, so that the other modes
 * (the bare TLS server above all) pay no 64 KiB calloc per connection. */
#define PEND_SIZE	65536

static enum bmode	 bmode = B_GREET;
static SSL_CTX		*ctx;
static struct ev_loop	*loop;
static struct sockaddr_in upstream = { .sin_family = AF_INET };

static void
bclose(struct bconn *c)
{
	ev_io_stop(loop, &c->io);
	if (c->ufd >= 0) {
		ev_io_stop(loop, &c->uio);
		close(c->ufd);
	}
	SSL_free(c->ssl);
	close(c->fd);
	free(c->pend);
	free(c->ubuf);
	free(c);
}

static void
bwant(struct bconn *c, int ev)
{
	ev_io_stop(loop, &c->io);
	ev_io_set(&c->io, c->fd, ev);
	ev_io_start(loop, &c->io);
}

static void
say(struct bconn *c, const char *s)
{
	if (write(c->fd, s, strlen(s)) < 0)
		return;
}

/* Reads a plaintext line; 1 = complete, 0 = wait, -1 = EOF/error. */
static int
bline(struct bconn *c)
{
	char ch;
	ssize_t n;

	while ((n = read(c->fd, &ch, 1)) == 1) {
		if (c->linelen < sizeof(c->line) - 1)
			c->line[c->linelen++] = ch;
		if (ch == '\n') {
			c->line[c->linelen] = '\0';
			c->linelen = 0;
			return 1;
		}
	}
	return n < 0 && errno == EAGAIN ? 0 : -1;
}

/* tlsecho: what the client sends comes back, one buffer at a time. */
static void
tls_echo(struct bconn *c)
{
	int n;

	for (;;) {
		if (c->plen > 0) {
			n = SSL_write(c->ssl, c->pend, (int)c->plen);
			if (n <= 0) {
				if (SSL_get_error(c->ssl, n) == SSL_ERROR_WANT_WRITE)
					bwant(c, EV_WRITE);
				else
					bclose(c);
				return;
			}
			c->plen = 0;
		}
		n = SSL_read(c->ssl, c->pend, PEND_SIZE);
		if (n <= 0) {
			if (SSL_get_error(c->ssl, n) == SSL_ERROR_WANT_READ)
				bwant(c, EV_READ);
			else
				bclose(c);
			return;
		}
		c->plen = (size_t)n;
	}
}

/* Arms w for ev only when that changes (no epoll_ctl per pass). */
static void
arm(ev_io *w, int fd, int ev)
{
	if (ev == (w->events & (EV_READ | EV_WRITE)) && ev_is_active(w))
		return;
	ev_io_stop(loop, w);
	ev_io_set(w, fd, ev);
	if (ev != 0)
		ev_io_start(loop, w);
}

/* tlsdial: moves bytes both ways until nothing moves; any EOF ends both. */
static void
relay(struct bconn *c)
{
	bool moved = true;
	ssize_t n;
	int r;

	while (moved) {
		moved = false;
		if (c->plen == 0) {
			r = SSL_read(c->ssl, c->pend, PEND_SIZE);
			if (r > 0) {
				c->plen = (size_t)r;
				c->poff = 0;
				moved = true;
			} else if (SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ)
				goto done;
		}
		if (c->plen > 0) {
			n = write(c->ufd, c->pend + c->poff, c->plen);
			if (n > 0) {
				c->poff += (size_t)n;
				c->plen -= (size_t)n;
				moved = true;
			} else if (n < 0 && errno != EAGAIN)
				goto done;
		}
		if (c->ulen == 0) {
			n = read(c->ufd, c->ubuf, PEND_SIZE);
			if (n > 0) {
				c->ulen = (size_t)n;
				moved = true;
			} else if (n == 0 || errno != EAGAIN)
				goto done;
		}
		if (c->ulen > 0) {
			r = SSL_write(c->ssl, c->ubuf, (int)c->ulen);
			if (r > 0) {
				c->ulen = 0;
				moved = true;
			} else if (SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_WRITE)
				goto done;
		}
	}
	arm(&c->io, c->fd, (c->plen == 0 ? EV_READ : 0) |
	    (c->ulen > 0 ? EV_WRITE : 0));
	arm(&c->uio, c->ufd, (c->ulen == 0 ? EV_READ : 0) |
	    (c->plen > 0 ? EV_WRITE : 0));
	return;
done:
	ERR_clear_error();
	bclose(c);
}

static void
ucb(EV_P_ ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	relay(w->data);
}

static int
dial(struct bconn *c)
{
	int one = 1;

	if ((c->pend = malloc(PEND_SIZE)) == NULL ||
	    (c->ubuf = malloc(PEND_SIZE)) == NULL ||
	    (c->ufd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) < 0)
		return -1;
	setsockopt(c->ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->ufd, (struct sockaddr *)&upstream, sizeof(upstream)) < 0 &&
	    errno != EINPROGRESS)
		return -1;
	ev_io_init(&c->uio, ucb, c->ufd, EV_READ);
	c->uio.data = c;
	ev_io_start(loop, &c->uio);
	return 0;
}

static void
bcb(EV_P_ ev_io *w, int revents)
{
	struct bconn *c = w->data;
	char buf[65536];
	ssize_t n;
	int r;

	(void)loop;
	(void)revents;
	if (bmode == B_ECHO) {
		for (;;) {
			if (c->plen > 0) {
				n = write(c->fd, c->pend, c->plen);
				if (n < 0 && errno != EAGAIN) {
					bclose(c);
					return;
				}
				if (n > 0) {
					memmove(c->pend, c->pend + n, c->plen - (size_t)n);
					c->plen -= (size_t)n;
				}
				if (c->plen > 0) {
					bwant(c, EV_WRITE);
					return;
				}
			}
			n = read(c->fd, c->pend, PEND_SIZE);
			if (n == 0 || (n < 0 && errno != EAGAIN)) {
				bclose(c);
				return;
			}
			if (n < 0) {
				bwant(c, EV_READ);
				return;
			}
			c->plen = (size_t)n;
		}
	}
	if (bmode == B_TLSECHO && c->state == S_WAIT) {
		tls_echo(c);
		return;
	}
	if (bmode == B_TLSDIAL && c->state == S_WAIT) {
		relay(c);
		return;
	}
	if (bmode == B_SMTP) {
		while ((r = bline(c)) == 1)
			say(c, "250 ok\r\n");
		if (r < 0)
			bclose(c);
		return;
	}
	if (bmode == B_GREET || c->state == S_WAIT) {
		for (;;) {
			n = c->ssl ? SSL_read(c->ssl, buf, sizeof(buf)) :
			    read(c->fd, buf, sizeof(buf));
			if (n > 0 && bmode == B_STARTTLS)	/* a command: answered */
				SSL_write(c->ssl, "250 ok\r\n", 8);
			if (n > 0)
				continue;
			if (c->ssl && SSL_get_error(c->ssl, (int)n) == SSL_ERROR_WANT_READ)
				return;
			if (!c->ssl && n < 0 && errno == EAGAIN)
				return;
			bclose(c);
			return;
		}
	}
	switch (c->state) {
	case S_EHLO:
		if ((r = bline(c)) <= 0) {
			if (r < 0)
				bclose(c);
			return;
		}
		say(c, "250-bench\r\n250 STARTTLS\r\n");
		c->state = S_STARTTLS;
		/* FALLTHROUGH */
	case S_STARTTLS:
		if ((r = bline(c)) <= 0) {
			if (r < 0)
				bclose(c);
			return;
		}
		say(c, "220 2.0.0 go ahead\r\n");
		c->ssl = SSL_new(ctx);
		SSL_set_fd(c->ssl, c->fd);
		SSL_set_accept_state(c->ssl);
		c->state = S_HANDSHAKE;
		/* FALLTHROUGH */
	case S_HANDSHAKE:
		r = SSL_do_handshake(c->ssl);
		if (r == 1) {
			c->state = S_WAIT;
			if (bmode == B_TLS)
				SSL_write(c->ssl, "* OK bench ready\r\n", 18);
			if (bmode == B_TLSDIAL && dial(c) < 0) {
				bclose(c);
				return;
			}
			bwant(c, EV_READ);
			return;
		}
		r = SSL_get_error(c->ssl, r);
		if (r == SSL_ERROR_WANT_READ)
			bwant(c, EV_READ);
		else if (r == SSL_ERROR_WANT_WRITE)
			bwant(c, EV_WRITE);
		else {
			ERR_clear_error();
			bclose(c);
		}
		return;
	case S_WAIT:
		return;
	}
}

static void
accept_cb(EV_P_ ev_io *w, int revents)
{
	int fd, one = 1;

	(void)revents;
	while ((fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
		struct bconn *c = calloc(1, sizeof(*c));
		if (c == NULL || ((bmode == B_ECHO || bmode == B_TLSECHO) &&
		    (c->pend = malloc(PEND_SIZE)) == NULL)) {
			free(c);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->ufd = -1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		ev_io_init(&c->io, bcb, fd, EV_READ);
		c->io.data = c;
		ev_io_start(EV_A_ &c->io);
		if (bmode == B_GREET)
			say(c, "* OK bench ready\r\n");
		else if (bmode == B_STARTTLS || bmode == B_SMTP)
			say(c, "220 bench ESMTP\r\n");
		else if (bmode == B_TLS || bmode == B_TLSECHO || bmode == B_TLSDIAL) {
			c->ssl = SSL_new(ctx);
			SSL_set_fd(c->ssl, fd);
			SSL_set_accept_state(c->ssl);
			c->state = S_HANDSHAKE;
		}
	}
}

int
main(int argc, char *argv[])
{
	const char *cert = NULL, *key = NULL;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int ch, port = 0, fd, one = 1, procs = 1;
	ev_io lio;

	signal(SIGPIPE, SIG_IGN);
	while ((ch = getopt(argc, argv, "m:l:c:k:u:f:")) != -1) {
		switch (ch) {
		case 'm':
			bmode = strcmp(optarg, "echo") == 0 ? B_ECHO :
			    strcmp(optarg, "starttls") == 0 ? B_STARTTLS :
			    strcmp(optarg, "tls") == 0 ? B_TLS :
			    strcmp(optarg, "tlsecho") == 0 ? B_TLSECHO :
			    strcmp(optarg, "tlsdial") == 0 ? B_TLSDIAL :
			    strcmp(optarg, "smtp") == 0 ? B_SMTP : B_GREET;
			break;
		case 'l': port = atoi(optarg); break;
		case 'c': cert = optarg; break;
		case 'k': key = optarg; break;
		case 'f': procs = atoi(optarg); break;
		case 'u':
			upstream.sin_port = htons((uint16_t)atoi(optarg));
			upstream.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			break;
		default: return 1;
		}
	}
	if (bmode == B_STARTTLS || bmode == B_TLS || bmode == B_TLSECHO ||
	    bmode == B_TLSDIAL) {
		ctx = SSL_CTX_new(TLS_server_method());
		if (!SSL_CTX_use_certificate_chain_file(ctx, cert) ||
		    !SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM))
			return 1;
	}
	/* The children die with the parent (the bench stops it by PID). */
	for (int i = 1; i < procs; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGTERM);
			break;
		}
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (procs > 1)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 4096) < 0) {
		perror("backend");
		return 1;
	}
	loop = EV_DEFAULT;
	ev_io_init(&lio, accept_cb, fd, EV_READ);
	ev_io_start(loop, &lio);
	ev_run(loop, 0);
	return 0;
}
