/*
 * secret: reading a secret file (a password, an OAuth2 token) as the
 * permission rules say, never copying it anywhere it could be logged.
 */
#ifndef MAILPROXY_SECRET_H
#define MAILPROXY_SECRET_H

#include <stddef.h>
#include <sys/types.h>

/* A password or an OAuth2 access token file holds at most this much. */
#define SECRET_MAX	8192

/*
 * Reads a secret into out: a regular file nobody but its owner and group
 * can read, at most cap - 1 bytes, trailing CR/LF removed, not empty, one
 * line, no NUL.  Returns its length, or -1 with the reason in err (never
 * the contents) and out wiped: a refused file was read all the same.
 */
int	secret_read(const char *path, char *out, size_t cap, char *err,
	    size_t errlen);

/* The same checks for a binary secret (ticket keys): the bytes as they
 * are, fewer than cap of them.  Returns how many, or -1 with err (out
 * wiped if anything was read into it). */
ssize_t	secret_read_raw(const char *path, void *out, size_t cap, char *err,
	    size_t errlen);

#endif
