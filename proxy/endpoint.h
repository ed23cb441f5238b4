/*
 * endpoint: one side of a session (an fd, its ev_io and, for TLS, its SSL),
 * with the same calls whether the side is plain or TLS.
 *
 * Every call answers with an ep_status.  A call that cannot go on records in
 * rd_wait / wr_wait the event it needs (for TLS this may be the opposite
 * one: SSL_read can need the socket writable); the session reruns the call
 * when that event fires, and ep_update() arms the watcher from those waits
 * alone.  During a handshake, the handshake is the "read" operation.
 */
#ifndef MAILPROXY_ENDPOINT_H
#define MAILPROXY_ENDPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include <ev.h>
#include <openssl/ssl.h>

#include "buffer.h"

enum ep_status {
	EP_OK,		/* done, or stopped because the buffer is full/empty */
	EP_AGAIN,	/* blocked: see rd_wait / wr_wait */
	EP_EOF,		/* the peer finished sending; see eof_clean */
	EP_ERROR	/* reset, TLS alert, protocol error: see err */
};

struct endpoint {
	int		 fd;		/* -1 when closed */
	SSL		*ssl;		/* NULL for a plain side */
	ev_io		 io;
	int		 mask;		/* events io is armed for */
	int		 rd_wait;	/* 0, EV_READ or EV_WRITE */
	int		 wr_wait;
	bool		 eof;		/* peer is done sending */
	bool		 eof_clean;	/* ... with close_notify / plain FIN */
	bool		 shut;		/* we sent our end */
	uint64_t	 bytes_in;	/* application bytes read */
	uint64_t	 bytes_out;	/* application bytes written */
	char		 last_out;	/* the last of them ('\n' before any) */
	char		 err[200];	/* why EP_ERROR, for the log */
};

/* Sets up an endpoint on fd; ssl may be NULL.  Does not arm anything. */
void	ep_init(struct endpoint *ep, int fd, SSL *ssl, void (*cb)(EV_P_ ev_io *,
	    int), void *data);

/* Stops the watcher, frees the SSL (without close_notify), closes the fd. */
void	ep_close(EV_P_ struct endpoint *ep);

/* Clears the waits that the fired events satisfy. */
void	ep_events(struct endpoint *ep, int revents);

/*
 * Puts TLS on an endpoint that was plain so far (upstream implicit TLS, or
 * after STARTTLS); the endpoint owns ssl from now on.
 */
void	ep_start_tls(struct endpoint *ep, SSL *ssl);

/*
 * Does TLS hold bytes from the peer that the socket's read event will not
 * announce (decrypted, or read ahead from the socket)?  Then a read must
 * be tried without waiting for that event.
 */
bool	ep_has_pending(const struct endpoint *ep);

/* Runs the TLS handshake; EP_OK once it is complete. */
enum ep_status	ep_handshake(struct endpoint *ep);

/*
 * Reads into b until it is full, the peer would block, or EOF.  For TLS this
 * drains what BoringSSL already decrypted before it waits on the fd.  A
 * plain side takes a short read as "would block" (EP_AGAIN, rd_wait set).
 */
enum ep_status	ep_read(struct endpoint *ep, struct buf *b);

/*
 * Writes from b until it is empty or the peer would block; a plain side
 * takes a short send as "would block" (EP_AGAIN, wr_wait set).
 */
enum ep_status	ep_write(struct endpoint *ep, struct buf *b);

/*
 * Ends our sending direction: close_notify then FIN when clean, only FIN
 * (so the peer sees a truncated TLS stream) when not.
 */
enum ep_status	ep_shutdown(struct endpoint *ep, bool clean);

/*
 * Arms io for want_read / want_write, restarting it only on a change; a
 * read wanted while TLS already holds bytes gets its event fed (no socket
 * event would come for them).
 */
void	ep_update(EV_P_ struct endpoint *ep, bool want_read, bool want_write);

#endif
