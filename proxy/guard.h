/*
 * guard: never TLS in TLS.  While relaying for a client that is in TLS
 * (client_tls = implicit or starttls), the client's bytes are watched for a
 * STARTTLS (SMTP, IMAP) or STLS (POP3) command; one ends the session before
 * it reaches the server.  A plaintext server that offers STARTTLS would
 * otherwise accept it and start a second TLS session inside the first.
 *
 * The guard reads command lines only, and skips what is not a command
 * without looking at it: SMTP message bodies (after DATA, up to the "."
 * line) and BDAT chunks, IMAP literals ({n} / {n+} at the end of a line).
 * Every command is judged by its verb, wherever the verb starts: an IMAP
 * tag or leading blanks of any length are stepped over, never counted
 * against what is kept.  It never changes, holds or delays a byte; it keeps
 * the tag (IMAP, for the refusal), the first bytes from the verb on and the
 * last bytes of the current line, not the line.
 *
 * Known limit: the guard does not read the server's replies.  If the
 * server refuses DATA, or a synchronizing IMAP literal, the client sends no
 * body / no literal, and the guard skips commands instead until it is back
 * in step (the next "." line; the literal's length).  A STARTTLS in that
 * window is missed (never a false refusal of a compliant client).
 */
#ifndef MAILPROXY_GUARD_H
#define MAILPROXY_GUARD_H

#include <stdbool.h>
#include <stddef.h>

#include "buffer.h"
#include "proto.h"

struct guard;

struct guard *guard_new(enum proto proto);
void	guard_free(struct guard *g);

/* Scans the next bytes the client sent; true if they hold STARTTLS. */
bool	guard_scan(struct guard *g, const char *data, size_t len);

/*
 * True between two commands: the guard holds nothing that a new one would
 * not (the session frees it then, so an idle session keeps no guard).
 */
bool	guard_idle(const struct guard *g);

/* After a hit: queues the protocol's refusal (closing) for the client. */
void	guard_refusal(const struct guard *g, struct buf *to_client);

#endif
