/*
 * guard: STARTTLS inside TLS, spotted in the relay; see guard.h.
 */
#include "guard.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
	char		 tag[HEAD_MAX];	/* IMAP: the STARTTLS command's tag */
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

/* The n-th blank-separated word of the head (0-based), and its length. */
static const char *
word(const struct guard *g, int n, size_t *len)
{
	size_t i = 0, start;

	for (;;) {
		start = i;
		while (i < g->headlen && g->head[i] != ' ' && g->head[i] != '\r')
			i++;
		if (n-- == 0) {
			*len = i - start;
			return g->head + start;
		}
		if (i >= g->headlen || g->head[i] != ' ')
			return NULL;
		i++;
	}
}

static bool
word_is(const struct guard *g, int n, const char *what)
{
	size_t len;
	const char *w = word(g, n, &len);

	return w != NULL && len == strlen(what) && strncasecmp(w, what, len) == 0;
}

/* A decimal count, bounded; false if it is not one. */
static bool
parse_count(const char *p, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 19)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	*out = v;
	return true;
}

/* IMAP: does the line end with a literal "{n}" or "{n+}"?  (CR stripped) */
static bool
imap_literal(const struct guard *g, uint64_t *n)
{
	size_t end = g->taillen, open;

	if (end > 0 && g->tail[end - 1] == '\r')
		end--;
	if (end < 3 || g->tail[end - 1] != '}')
		return false;
	end--;
	if (g->tail[end - 1] == '+')
		end--;
	for (open = end; open > 0 && g->tail[open - 1] != '{'; open--)
		;
	return open > 0 && parse_count(g->tail + open, end - open, n);
}

/* A whole line was read: is it STARTTLS, and what comes after it? */
static bool
end_of_line(struct guard *g)
{
	uint64_t n;
	size_t len;
	const char *w;
	bool hit = false;

	switch (g->proto) {
	case PROTO_SMTP:
		hit = word_is(g, 0, "STARTTLS");
		if (word_is(g, 0, "DATA") && ((w = word(g, 1, &len)) == NULL ||
		    len == 0)) {
			g->mode = GUARD_BODY;
			g->body = BODY_LINE_START;
		} else if (word_is(g, 0, "BDAT") && (w = word(g, 1, &len)) != NULL &&
		    parse_count(w, len, &n) && n > 0) {
			g->mode = GUARD_SKIP;
			g->skip = n;
		}
		break;
	case PROTO_POP3:
		hit = word_is(g, 0, "STLS");
		break;
	case PROTO_IMAP:
		if (!g->continued && word_is(g, 1, "STARTTLS")) {
			hit = true;
			w = word(g, 0, &len);
			snprintf(g->tag, sizeof(g->tag), "%.*s", (int)len, w);
		}
		g->continued = imap_literal(g, &n);
		if (g->continued && n > 0) {
			g->mode = GUARD_SKIP;
			g->skip = n;
		}
		break;
	}
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
		n = snprintf(text, sizeof(text), "%s BAD TLS is already active\r\n"
		    "* BYE mailproxy: closing connection\r\n", g->tag);
		break;
	}
	(void)buf_append(to_client, text, (size_t)n);
}
