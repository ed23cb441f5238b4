/*
 * guard: STARTTLS inside TLS, spotted in the relay; see guard.h.
 */
#include "guard.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "line.h"
#include "negotiate.h"

enum guard_mode {
	GUARD_LINE,	/* reading a command line */
	GUARD_BODY,	/* SMTP: a message body, up to the "." line */
	GUARD_SKIP	/* SMTP BDAT chunk or IMAP literal: skip bytes */
};

/* The body's end: "." alone on a line ("\r\n.\r\n"; bare LF accepted). */
enum body_pos { BODY_LINE_START, BODY_DOT, BODY_DOT_CR, BODY_MID_LINE };

/*
 * Where in the command line the next byte falls.  The verb is judged
 * wherever it starts, so a tag or leading blanks of any length cannot push
 * it out of view: only the bytes from the verb on are kept.
 */
enum line_part {
	PART_TAG,	/* IMAP: the tag, up to the first blank */
	PART_BLANKS,	/* blanks before the verb */
	PART_VERB,	/* the verb and what follows, kept up to HEAD_MAX */
	PART_DATA	/* IMAP: the rest of a line continued after a literal */
};

#define HEAD_MAX	80	/* "STARTTLS", "BDAT n LAST" fit */
#define TAG_MAX		128	/* longer IMAP tags are refused untagged */
#define TAIL_MAX	24	/* "{4294967296+}\r" fits */

struct guard {
	enum proto	 proto;
	enum guard_mode	 mode;
	enum body_pos	 body;
	uint64_t	 skip;		/* GUARD_SKIP: bytes left */
	bool		 continued;	/* IMAP: the line goes on after a literal */
	bool		 in_line;	/* bytes of a line were seen */
	enum line_part	 part;
	char		 tag[TAG_MAX];
	size_t		 taglen;
	bool		 tag_long;	/* the tag did not fit */
	char		 head[HEAD_MAX];	/* from the verb on */
	size_t		 headlen;
	bool		 head_more;	/* more than blanks past the head */
	char		 tail[TAIL_MAX];
	size_t		 taillen;
};

/* The part a new line starts in. */
static enum line_part
first_part(const struct guard *g)
{
	if (g->proto != PROTO_IMAP)
		return PART_BLANKS;
	return g->continued ? PART_DATA : PART_TAG;
}

static void
new_line(struct guard *g)
{
	g->in_line = false;
	g->part = first_part(g);
	g->taglen = g->headlen = g->taillen = 0;
	g->tag_long = g->head_more = false;
}

struct guard *
guard_new(enum proto proto)
{
	struct guard *g = calloc(1, sizeof(*g));

	if (g != NULL) {
		g->proto = proto;
		new_line(g);
	}
	return g;
}

void
guard_free(struct guard *g)
{
	free(g);
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* The last bytes of the line: an IMAP literal announcement ends it. */
static void
keep_tail(struct guard *g, const char *p, size_t n)
{
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

/* Adds a piece of the current line (no LF in it) to what is kept. */
static void
keep(struct guard *g, const char *p, size_t n)
{
	const char *end = p + n, *sp;
	size_t take;

	if (n > 0)
		g->in_line = true;
	keep_tail(g, p, n);
	while (p < end) {
		switch (g->part) {
		case PART_TAG:
			sp = memchr(p, ' ', (size_t)(end - p));
			take = (size_t)((sp != NULL ? sp : end) - p);
			if (take > TAG_MAX - g->taglen) {
				g->tag_long = true;
				take = TAG_MAX - g->taglen;
			}
			memcpy(g->tag + g->taglen, p, take);
			g->taglen += take;
			p = sp != NULL ? sp : end;
			if (sp != NULL)
				g->part = PART_BLANKS;
			break;
		case PART_BLANKS:
			while (p < end && is_blank(*p))
				p++;
			if (p < end)
				g->part = PART_VERB;
			break;
		case PART_VERB:
			take = (size_t)(end - p);
			if (take > HEAD_MAX - g->headlen)
				take = HEAD_MAX - g->headlen;
			memcpy(g->head + g->headlen, p, take);
			g->headlen += take;
			for (p += take; p < end && !g->head_more; p++)
				g->head_more = !is_blank(*p) && *p != '\r';
			p = end;
			break;
		case PART_DATA:
			p = end;
			break;
		}
	}
}

/*
 * A whole line was read: is it STARTTLS, and what comes after it?  On a
 * hit the tag is kept: the IMAP refusal quotes it.
 */
static bool
end_of_line(struct guard *g)
{
	const char *h = g->head;
	size_t hl = g->headlen, tl = g->taillen;
	uint64_t n;
	bool args, verb = g->part == PART_VERB, hit = false;

	/* The CR of CRLF (a bare LF is accepted); for the command word also
	 * trailing blanks ("DATA "), never for a literal ("{5} " is none).
	 * Blanks are trailing only if nothing but blanks came after the head
	 * ("STARTTLS", 72 tabs, "0" is not STARTTLS). */
	while (!g->head_more && hl > 0 && (h[hl - 1] == '\r' ||
	    is_blank(h[hl - 1])))
		hl--;
	if (tl > 0 && g->tail[tl - 1] == '\r')
		tl--;
	switch (g->proto) {
	case PROTO_SMTP:
		hit = verb && line_starts_with_word(h, hl, "STARTTLS");
		if (verb && hl == 4 && !g->head_more &&
		    line_starts_with_word(h, hl, "DATA")) {
			g->mode = GUARD_BODY;
			g->body = BODY_LINE_START;
		} else if (verb && line_starts_with_word(h, hl, "BDAT") &&
		    line_verb(h, hl, &args) == 4 && args &&
		    line_count(h + 5, line_verb(h + 5, hl - 5, &args), &n) &&
		    n > 0) {
			g->mode = GUARD_SKIP;
			g->skip = n;
		}
		break;
	case PROTO_POP3:
		hit = verb && line_starts_with_word(h, hl, "STLS");
		break;
	case PROTO_IMAP:
		hit = verb && line_starts_with_word(h, hl, "STARTTLS");
		g->continued = line_imap_literal(g->tail, tl, &n);
		if (g->continued && n > 0) {
			g->mode = GUARD_SKIP;
			g->skip = n;
		}
		break;
	}
	if (!hit)
		new_line(g);
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
	return g->mode == GUARD_LINE && !g->in_line && !g->continued;
}

void
guard_refusal(const struct guard *g, struct buf *to_client)
{
	/* A tag too long to repeat gets an untagged answer (IMAP). */
	proto_say(to_client, proto_text(g->proto)->tls_in_tls,
	    g->tag_long ? 1 : (int)g->taglen, g->tag_long ? "*" : g->tag);
}
