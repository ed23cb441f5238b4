/*
 * line: a strict, bounded CRLF line splitter for the negotiation phase.
 *
 * Only CRLF ends a line; a bare LF or CR, a NUL or another control byte
 * (TAB excepted) inside a line is an error, and so is a line longer than
 * the limit.  Pure: no allocation, no I/O.
 */
#ifndef MAILPROXY_LINE_H
#define MAILPROXY_LINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum line_status {
	LINE_OK,	/* *len bytes of text, then CRLF (consumed = len + 2) */
	LINE_MORE,	/* no complete line yet, and nothing wrong so far */
	LINE_TOO_LONG,	/* over max bytes (CRLF included) */
	LINE_BAD	/* bare CR/LF, NUL or control byte */
};

/*
 * Looks for one line at the start of data[0..avail).  max counts the CRLF.
 */
enum line_status line_next(const char *data, size_t avail, size_t max,
    size_t *len);

/* True if word (a whole, space-delimited token) starts text, any case. */
bool	line_starts_with_word(const char *text, size_t len, const char *word);

/*
 * The first word of a command line ("VERB args"): returns its length; *args
 * says whether something follows "VERB ".
 */
size_t	line_verb(const char *line, size_t len, bool *args);

/* A decimal number of 1..19 digits, the whole of p[0..len); false if not. */
bool	line_count(const char *p, size_t len, uint64_t *value);

/*
 * True if an IMAP line (CRLF stripped) ends by announcing a literal,
 * "{n}" or "{n+}"; *size gets n (UINT64_MAX past 19 digits).
 */
bool	line_imap_literal(const char *line, size_t len, uint64_t *size);

/* True if word is one of the space-separated tokens of text, any case. */
bool	line_has_word(const char *text, size_t len, const char *word);

#endif
