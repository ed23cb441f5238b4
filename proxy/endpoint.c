/*
 * endpoint: plain/TLS I/O behind one interface.
 */
#include "endpoint.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "log.h"
#include "sockbio.h"

/* The socket under ssl: read-ahead, or BoringSSL's plain one without
 * memory for it. */
static void
attach(SSL *ssl, int fd)
{
	if (!sockbio_attach(ssl, fd))
		SSL_set_fd(ssl, fd);
}

void
ep_init(struct endpoint *ep, int fd, SSL *ssl, void (*cb)(EV_P_ ev_io *, int),
    void *data)
{
	memset(ep, 0, sizeof(*ep));
	ep->fd = fd;
	ep->last_out = '\n';
	ep->ssl = ssl;
	ev_io_init(&ep->io, cb, fd, 0);
	ep->io.data = data;
	if (ssl != NULL)
		attach(ssl, fd);
}

void
ep_start_tls(struct endpoint *ep, SSL *ssl)
{
	ep->ssl = ssl;
	attach(ssl, ep->fd);
	ep->rd_wait = ep->wr_wait = 0;
}

void
ep_close(EV_P_ struct endpoint *ep)
{
	if (ep->fd < 0)
		return;
	ev_io_stop(EV_A_ &ep->io);
	SSL_free(ep->ssl);
	ep->ssl = NULL;
	close(ep->fd);
	ep->fd = -1;
}

void
ep_events(struct endpoint *ep, int revents)
{
	if (ep->rd_wait & revents)
		ep->rd_wait = 0;
	if (ep->wr_wait & revents)
		ep->wr_wait = 0;
}

static void
set_errno_reason(struct endpoint *ep, const char *what)
{
	snprintf(ep->err, sizeof(ep->err), "%s: %s", what,
	    errno == ECONNRESET ? "reset by peer" : strerror(errno));
}

/*
 * Maps a failed SSL call to a status; *wait gets the event to wait for.
 * On a clean or unclean EOF sets the eof flags.
 */
static enum ep_status
ssl_status(struct endpoint *ep, int ret, int *wait)
{
	int e = SSL_get_error(ep->ssl, ret);

	switch (e) {
	case SSL_ERROR_WANT_READ:
		*wait = EV_READ;
		return EP_AGAIN;
	case SSL_ERROR_WANT_WRITE:
		*wait = EV_WRITE;
		return EP_AGAIN;
	case SSL_ERROR_ZERO_RETURN:
		ep->eof = ep->eof_clean = true;
		return EP_EOF;
	case SSL_ERROR_SYSCALL:
		if (ret == 0 || errno == 0) {
			/* TCP FIN without close_notify: truncation. */
			ERR_clear_error();
			ep->eof = true;
			ep->eof_clean = false;
			return EP_EOF;
		}
		set_errno_reason(ep, "tls");
		ERR_clear_error();
		return EP_ERROR;
	default:
		snprintf(ep->err, sizeof(ep->err), "tls: ");
		log_ssl_errors(ep->err, sizeof(ep->err));
		return EP_ERROR;
	}
}

bool
ep_has_pending(const struct endpoint *ep)
{
	return ep->ssl != NULL && (SSL_has_pending(ep->ssl) ||
	    sockbio_pending(ep->ssl) > 0);
}

enum ep_status
ep_handshake(struct endpoint *ep)
{
	int ret;

	ERR_clear_error();
	errno = 0;
	sockbio_new_call(ep->ssl);
	if ((ret = SSL_do_handshake(ep->ssl)) == 1)
		return EP_OK;
	switch (ssl_status(ep, ret, &ep->rd_wait)) {
	case EP_AGAIN:
		return EP_AGAIN;
	case EP_EOF:
		snprintf(ep->err, sizeof(ep->err), "connection closed during "
		    "handshake");
		return EP_ERROR;
	default:
		return EP_ERROR;
	}
}

enum ep_status
ep_read(struct endpoint *ep, struct buf *b)
{
	char *p;
	size_t room;
	ssize_t n;
	int ret;

	ep->rd_wait = 0;
	if (ep->ssl != NULL)
		sockbio_new_call(ep->ssl);
	while ((p = buf_reserve(b, &room)) != NULL) {
		if (room > INT32_MAX)
			room = INT32_MAX;
		if (ep->ssl != NULL) {
			ERR_clear_error();
			errno = 0;
			ret = SSL_read(ep->ssl, p, (int)room);
			if (ret <= 0)
				return ssl_status(ep, ret, &ep->rd_wait);
			n = ret;
		} else {
			n = read(ep->fd, p, room);
			if (n == 0) {
				ep->eof = ep->eof_clean = true;
				return EP_EOF;
			}
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK ||
				    errno == EINTR) {
					ep->rd_wait = EV_READ;
					return EP_AGAIN;
				}
				set_errno_reason(ep, "read");
				return EP_ERROR;
			}
		}
		buf_commit(b, (size_t)n);
		ep->bytes_in += (uint64_t)n;
		if (ep->ssl == NULL && (size_t)n < room) {
			/* A short read emptied the socket: another read would
			 * only say EAGAIN.  The (level-triggered) read event
			 * tells when more, or EOF, has come. */
			ep->rd_wait = EV_READ;
			return EP_AGAIN;
		}
	}
	return EP_OK;
}

enum ep_status
ep_write(struct endpoint *ep, struct buf *b)
{
	const char *p;
	size_t len;
	ssize_t n;
	int ret;

	ep->wr_wait = 0;
	while ((p = buf_peek(b, &len)) != NULL) {
		if (len > INT32_MAX)
			len = INT32_MAX;
		if (ep->ssl != NULL) {
			ERR_clear_error();
			errno = 0;
			ret = SSL_write(ep->ssl, p, (int)len);
			if (ret <= 0) {
				enum ep_status st = ssl_status(ep, ret,
				    &ep->wr_wait);
				if (st == EP_EOF) {
					snprintf(ep->err, sizeof(ep->err),
					    "write: connection closed");
					st = EP_ERROR;
				}
				return st;
			}
			n = ret;
		} else {
			n = send(ep->fd, p, len, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK ||
				    errno == EINTR) {
					ep->wr_wait = EV_WRITE;
					return EP_AGAIN;
				}
				set_errno_reason(ep, "write");
				return EP_ERROR;
			}
		}
		ep->last_out = p[n - 1];
		buf_consume(b, (size_t)n);
		ep->bytes_out += (uint64_t)n;
		if (ep->ssl == NULL && (size_t)n < len) {
			/* A short send filled the socket buffer: wait for room
			 * instead of a send that would say EAGAIN. */
			ep->wr_wait = EV_WRITE;
			return EP_AGAIN;
		}
	}
	return EP_OK;
}

enum ep_status
ep_shutdown(struct endpoint *ep, bool clean)
{
	int ret;

	if (ep->shut)
		return EP_OK;
	if (ep->ssl != NULL && clean) {
		ERR_clear_error();
		errno = 0;
		ret = SSL_shutdown(ep->ssl);
		if (ret < 0) {
			enum ep_status st = ssl_status(ep, ret, &ep->wr_wait);
			if (st == EP_AGAIN)
				return st;
			/* The peer is gone already; FIN below is all we can do. */
		}
	}
	ep->shut = true;
	if (shutdown(ep->fd, SHUT_WR) < 0 && errno != ENOTCONN) {
		set_errno_reason(ep, "shutdown");
		return EP_ERROR;
	}
	return EP_OK;
}

void
ep_update(EV_P_ struct endpoint *ep, bool want_read, bool want_write)
{
	int mask = 0;

	/* An operation never tried (no wait recorded) waits for its own event. */
	if (want_read)
		mask |= ep->rd_wait != 0 ? ep->rd_wait : EV_READ;
	if (want_write)
		mask |= ep->wr_wait != 0 ? ep->wr_wait : EV_WRITE;
	if (ep->fd < 0)
		return;
	if (mask != ep->mask) {
		ev_io_stop(EV_A_ &ep->io);
		ev_io_set(&ep->io, ep->fd, mask);
		if (mask != 0)
			ev_io_start(EV_A_ &ep->io);
		ep->mask = mask;
	}
	/* Bytes TLS already holds (decrypted, or read ahead) have no socket
	 * event to announce them: the read runs on the next loop turn.  (After
	 * the restart above, which would drop a fed event.) */
	if (want_read && ep->rd_wait == 0 && ep_has_pending(ep))
		ev_feed_event(EV_A_ &ep->io, EV_READ);
}
