/*
 * redact: takes the credential the proxy sent an upstream out of what that
 * upstream says back, before any of it is logged or shown to a client.
 *
 * A sloppy or hostile server may echo what it received ("invalid password
 * 'hunter2'", a base64 challenge that quotes the SASL message).  Every
 * form the credential crossed the wire in is looked for:
 *  - the secret as it is, and as the inside of an IMAP quoted string;
 *  - its base64 alone (AUTH LOGIN), with or without the padding;
 *  - the base64 of the whole SASL message (PLAIN, XOAUTH2, OAUTHBEARER),
 *    with or without the padding;
 *  - the secret's base64 inside any longer base64 text, at each of the
 *    three byte alignments (the characters that encode its bytes only).
 * Letters match in any case (a server may upper-case what it quotes).
 * A piece of the secret alone is not looked for: passwords hold words
 * ("password", "Authentication") that servers say for other reasons.
 * Each occurrence becomes REDACT_MARK.  Redacting before cutting a line
 * short is what keeps a cut from leaving half a secret behind.
 */
#ifndef MAILPROXY_REDACT_H
#define MAILPROXY_REDACT_H

#include <stdbool.h>
#include <stddef.h>

#define REDACT_MARK	"[redacted]"

struct redact;

/*
 * The forms of secret (len bytes) and of sasl (the SASL message it was
 * sent in, sasl_len bytes; NULL if none).  Both are copied; the copies are
 * wiped by redact_free().  Returns NULL when out of memory.
 */
struct redact *redact_new(const char *secret, size_t len, const void *sasl,
	    size_t sasl_len);

/* Wipes and frees r; redact_free(NULL) does nothing. */
void	redact_free(struct redact *r);

/*
 * Copies in (len bytes) into out, every form of the credential replaced
 * by REDACT_MARK, NUL-terminated and at most cap - 1 bytes long (cap > 0);
 * r NULL copies as it is.  A mark is written whole or not at all.  Returns
 * the length written; *cut (if not NULL) says whether input was left over.
 */
size_t	redact_copy(const struct redact *r, const char *in, size_t len,
	    char *out, size_t cap, bool *cut);

#endif
