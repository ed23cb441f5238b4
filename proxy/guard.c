/*
 * guard: STARTTLS inside TLS, spotted in the relay; see guard.h.
 */
#include "guard.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "line.h"

enum guard_mode {
	GUARD_LINE,	/* reading a command line */
	GUARD_BODY,	/* SMTP: a message body, up to the "." line */
	GUARD_SKIP	/* SMTP BDAT chunk or IMAP literal: skip bytes */
};

/* The body's end: "." alone on a line ("\r\n.\r\n"; bare LF accepted). */
enum body_pos { BODY_LINE_START, BODY_DOT, BODY_DOT_CR, BODY_MID_LINE };

#define HEAD_MAX	80	/* "tag STARTTLS", "BDAT n LAST" fit */
#define TAIL_MAX	24	/* "{4294967296+}\r" fits */

struct guard {
	enum proto	 proto;
	enum guard_mode	 mode;
	enum body_pos	 body;
	uint64_t	 skip;		/* GUARD_SKIP: bytes left */
	bool		 continued;	/* IMAP: the line goes on after a literal */
	char		 head[HEAD_MAX];
	size_t		 headlen;
	char		 tail[TAIL_MAX];
	size_t		 taillen;
};

struct guard *
guard_new(enum proto proto)
{
	struct guard *g = calloc(1, sizeof(*g));

	if (g != NULL)
		g->proto = proto;
	return g;
}

void
guard_free(struct guard *g)
{
	free(g);
}

/* Adds a piece of the current line to the kept head and tail. */
static void
keep(struct guard *g, const char *p, size_t n)
{
	size_t take = n < HEAD_MAX - g->headlen ? n : HEAD_MAX - g->headlen;

	memcpy(g->head + g->headlen, p, take);
	g->headlen += take;
	if (n >= TAIL_MAX) {
		memcpy(g->tail, p + n - TAIL_MAX, TAIL_MAX);
		g->taillen = TAIL_MAX;
	} else {
		size_t drop = g->taillen + n > TAIL_MAX ? g->taillen + n - TAIL_MAX : 0;
		memmove(g->tail, g->tail + drop, g->taillen - drop);
		memcpy(g->tail + g->taillen - drop, p, n);
		g->taillen += n - drop;
	}
}

/*
 * A whole line was read: is it STARTTLS, and what comes after it?  On a
 * hit the head is kept: the refusal quotes the IMAP tag from it.
 */
static bool
end_of_line(struct guard *g)
{
	const char *h = g->head;
	size_t hl = g->headlen, tl = g->taillen, vl;
	uint64_t n;
	bool args, hit = false;

	/* The CR of CRLF (a bare LF is accepted); for the command word also
	 * trailing blanks ("DATA "), never for a literal ("{5} " is none). */
	while (hl > 0 && (h[hl - 1] == '\r' || h[hl - 1] == ' '))
		hl--;
	if (tl > 0 && g->tail[tl - 1] == '\r')
		tl--;
	vl = line_verb(h, hl, &args);
	switch (g->proto) {
	case PROTO_SMTP:
		hit = line_starts_with_word(h, hl, "STARTTLS");
		if (hl == 4 && line_starts_with_word(h, hl, "DATA")) {
			g->mode = GUARD_BODY;
			g->body = BODY_LINE_START;
		} else if (args && line_starts_with_word(h, hl, "BDAT") &&
		    line_count(h + 5, line_verb(h + 5, hl - 5, &args), &n) &&
		    n > 0) {
			g->mode = GUARD_SKIP;
			g->skip = n;
		}
		break;
	case PROTO_POP3:
		hit = line_starts_with_word(h, hl, "STLS");
		break;
	case PROTO_IMAP:
		hit = !g->continued && args &&
		    line_starts_with_word(h + vl + 1, hl - vl - 1, "STARTTLS");
		g->continued = line_imap_literal(g->tail, tl, &n);
		if (g->continued && n > 0) {
			g->mode = GUARD_SKIP;
			g->skip = n;
		}
		break;
	}
	if (!hit)
		g->headlen = g->taillen = 0;
	return hit;
}

/* Skips a message body; returns the bytes used (up to the "." line). */
static size_t
skip_body(struct guard *g, const char *p, size_t len)
{
	size_t off = 0;
	const char *lf;

	while (off < len && g->mode == GUARD_BODY) {
		char c = p[off];

		switch (g->body) {
		case BODY_LINE_START:
			g->body = c == '.' ? BODY_DOT : BODY_MID_LINE;
			if (c == '\n')
				g->body = BODY_LINE_START;
			off++;
			break;
		case BODY_DOT:
		case BODY_DOT_CR:
			off++;
			if (c == '\n')
				g->mode = GUARD_LINE;	/* the end of the body */
			else if (c == '\r' && g->body == BODY_DOT)
				g->body = BODY_DOT_CR;
			else
				g->body = BODY_MID_LINE;
			break;
		case BODY_MID_LINE:
			lf = memchr(p + off, '\n', len - off);
			if (lf == NULL)
				return len;
			off = (size_t)(lf - p) + 1;
			g->body = BODY_LINE_START;
			break;
		}
	}
	return off;
}

bool
guard_scan(struct guard *g, const char *data, size_t len)
{
	size_t off = 0, n;
	const char *lf;

	while (off < len) {
		switch (g->mode) {
		case GUARD_SKIP:
			n = len - off < g->skip ? len - off : (size_t)g->skip;
			g->skip -= n;
			off += n;
			if (g->skip == 0)
				g->mode = GUARD_LINE;
			break;
		case GUARD_BODY:
			off += skip_body(g, data + off, len - off);
			break;
		case GUARD_LINE:
			lf = memchr(data + off, '\n', len - off);
			n = (lf != NULL ? (size_t)(lf - data) : len) - off;
			keep(g, data + off, n);
			off += n;
			if (lf == NULL)
				break;
			off++;
			if (end_of_line(g))
				return true;
			break;
		}
	}
	return false;
}

bool
guard_idle(const struct guard *g)
{
	return g->mode == GUARD_LINE && g->headlen == 0 && g->taillen == 0 &&
	    !g->continued;
}

void
guard_refusal(const struct guard *g, struct buf *to_client)
{
	char text[200];
	bool tagged;
	int n;

	switch (g->proto) {
	case PROTO_SMTP:
		n = snprintf(text, sizeof(text), "421 4.7.0 mailproxy: TLS is "
		    "already active, closing connection\r\n");
		break;
	case PROTO_POP3:
		n = snprintf(text, sizeof(text), "-ERR [SYS/PERM] mailproxy: TLS "
		    "is already active\r\n");
		break;
	default:
		n = snprintf(text, sizeof(text), "%.*s BAD TLS is already active"
		    "\r\n* BYE mailproxy: closing connection\r\n",
		    (int)line_verb(g->head, g->headlen, &tagged), g->head);
		break;
	}
	(void)buf_append(to_client, text, (size_t)n);
}
