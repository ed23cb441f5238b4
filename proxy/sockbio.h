/*
 * sockbio: the socket under a TLS endpoint, with read-ahead.
 *
 * BoringSSL asks its BIO for exactly what it needs next: a record's 5-byte
 * header, then its body.  On a plain socket BIO that is two read() calls per
 * record, and a third that can only say EAGAIN once the socket is empty.
 * This BIO answers each request with one readv() that also fills a small
 * read-ahead buffer, so one call takes what the socket holds (usually the
 * whole flight or record, often several records), and a short read tells it
 * the socket is empty: the next request in the same endpoint call (the
 * client's Finished after the server's flight, the next record after the
 * last one) says "would block" without a call.  A new endpoint call starts
 * by forgetting that (sockbio_new_call): the socket may have filled since.
 *
 * The read-ahead buffer exists only while it holds bytes (an idle session
 * keeps none).  A session whose reader has stopped (its buffer toward the
 * other side full) can hold up to 18 KiB here, on top of what
 * waits in the socket's receive queue.  Bytes in it are invisible to the
 * socket's read event, so whoever waits for that event first asks
 * sockbio_pending(): ep_has_pending(), which ep_update() uses to feed the
 * read event itself.
 */
#ifndef MAILPROXY_SOCKBIO_H
#define MAILPROXY_SOCKBIO_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

/* Puts fd under ssl, for reading and writing; false when out of memory
 * (ssl is unchanged then). */
bool	sockbio_attach(SSL *ssl, int fd);

/* Bytes read from the socket that TLS has not taken yet. */
size_t	sockbio_pending(const SSL *ssl);

/* A new read or handshake call: the next read asks the socket again. */
void	sockbio_new_call(SSL *ssl);

#endif
