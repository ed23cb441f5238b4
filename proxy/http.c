/*
 * http: the HTTP/1.1 response parser of the HTTPS client (see http.h).
 * Pure: bytes in, progress out; shared with the unit tests and the fuzz
 * harness.
 */
#include "http.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/mem.h>

#include "https.h"
#include "log.h"

/* Why a connection that ended in each state ended too soon. */
static const char *const eof_errors[] = {
	[HTTP_STATUS] = "connection closed in the response header",
	[HTTP_HEADER] = "connection closed in the response header",
	[HTTP_BODY] = "connection closed before the end of the body",
	[HTTP_CHUNK_SIZE] = "connection closed before the end of the body",
	[HTTP_CHUNK_DATA] = "connection closed before the end of the body",
	[HTTP_CHUNK_END] = "connection closed before the end of the body",
	[HTTP_TRAILER] = "connection closed before the end of the body",
	[HTTP_TO_EOF] = "response truncated (no TLS close_notify)",
};

void
http_parser_init(struct http_parser *p, bool head_only)
{
	memset(p, 0, offsetof(struct http_parser, line));
	p->state = HTTP_STATUS;
	p->head_only = head_only;
}

void
http_parser_wipe(struct http_parser *p)
{
	if (p->body != NULL) {
		OPENSSL_cleanse(p->body, p->body_cap);
		free(p->body);
	}
	p->body = NULL;
	p->body_len = p->body_cap = 0;
	/* Header lines may carry cookies or tokens too. */
	OPENSSL_cleanse(p->line, sizeof(p->line));
	p->line_len = 0;
}

static enum http_progress
parse_fail(struct http_parser *p, const char *why)
{
	p->state = HTTP_FAILED;
	p->error = why;
	return HTTP_ERROR;
}

/*
 * Makes room for n more body bytes and the NUL.  The storage grows by
 * copying, wiping the old copy: realloc would leave it in freed memory.
 */
static int
body_reserve(struct http_parser *p, size_t n)
{
	size_t need = p->body_len + n + 1, cap;
	char *nb;

	if (n > HTTPS_MAX_BODY - p->body_len) {
		parse_fail(p, "response too large");
		return -1;
	}
	if (need <= p->body_cap)
		return 0;
	cap = p->body_cap < 1024 ? 1024 : p->body_cap * 2;
	if (cap < need)
		cap = need;
	if (cap > HTTPS_MAX_BODY + 1)
		cap = HTTPS_MAX_BODY + 1;
	if ((nb = malloc(cap)) == NULL) {
		parse_fail(p, "out of memory");
		return -1;
	}
	if (p->body != NULL) {
		memcpy(nb, p->body, p->body_len);
		OPENSSL_cleanse(p->body, p->body_cap);
		free(p->body);
	}
	p->body = nb;
	p->body_cap = cap;
	return 0;
}

/* Takes body bytes for BODY, CHUNK_DATA and TO_EOF; returns how many. */
static size_t
take_body(struct http_parser *p, const char *data, size_t len)
{
	size_t n = len;

	if (p->state != HTTP_TO_EOF && n > p->left)
		n = (size_t)p->left;
	if (body_reserve(p, n) < 0)
		return 0;
	memcpy(p->body + p->body_len, data, n);
	p->body_len += n;
	p->body[p->body_len] = '\0';
	if (p->state == HTTP_TO_EOF)
		return n;
	if ((p->left -= n) == 0)
		p->state = p->state == HTTP_BODY ? HTTP_DONE : HTTP_CHUNK_END;
	return n;
}

/* "HTTP/1.x SSS[ reason]"; the reason is kept (printable) for messages. */
static enum http_progress
status_line(struct http_parser *p, const char *l)
{
	size_t i, n;

	if (strncmp(l, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)l[7]) ||
	    l[8] != ' ' || l[9] < '1' || l[9] > '5' ||
	    !isdigit((unsigned char)l[10]) || !isdigit((unsigned char)l[11]) ||
	    (l[12] != ' ' && l[12] != '\0'))
		return parse_fail(p, "malformed status line");
	p->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
	for (i = n = 0; l[i] != '\0' && n + 1 < sizeof(p->status_line); i++)
		p->status_line[n++] = isprint((unsigned char)l[i]) ? l[i] : '?';
	p->status_line[n] = '\0';
	p->has_length = p->chunked = false;
	p->state = HTTP_HEADER;
	return HTTP_MORE;
}

/* Content-Length: digits only; a repeated one must say the same. */
static enum http_progress
content_length(struct http_parser *p, const char *v)
{
	uint64_t n = 0;
	size_t i;

	if (*v == '\0')
		return parse_fail(p, "malformed Content-Length");
	for (i = 0; v[i] != '\0'; i++) {
		if (!isdigit((unsigned char)v[i]))
			return parse_fail(p, "malformed Content-Length");
		/* Anything past the limit is too large anyway: stop counting. */
		if (n <= HTTPS_MAX_BODY)
			n = n * 10 + (uint64_t)(v[i] - '0');
	}
	if (p->has_length && p->left != n)
		return parse_fail(p, "conflicting Content-Length");
	p->has_length = true;
	p->left = n;
	return HTTP_MORE;
}

/*
 * One header line.  Only the framing headers matter; obsolete folding and
 * any transfer coding but a single "chunked" (we ask for no other) are
 * refused rather than guessed at.
 */
static enum http_progress
header_line(struct http_parser *p, char *l)
{
	char *v, *end;

	if (*l == ' ' || *l == '\t')
		return parse_fail(p, "malformed header");
	if ((v = strchr(l, ':')) == NULL || v == l ||
	    strcspn(l, " \t") < (size_t)(v - l))
		return parse_fail(p, "malformed header");
	*v++ = '\0';
	v += strspn(v, " \t");
	end = v + strlen(v);
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	if (p->state == HTTP_TRAILER)
		return HTTP_MORE;	/* framing is settled by now */
	if (strcasecmp(l, "Content-Length") == 0)
		return content_length(p, v);
	if (strcasecmp(l, "Transfer-Encoding") == 0) {
		if (p->chunked || strcasecmp(v, "chunked") != 0)
			return parse_fail(p, "unsupported Transfer-Encoding");
		p->chunked = true;
	}
	return HTTP_MORE;
}

/* The empty line after the headers: how the body, if any, is framed. */
static enum http_progress
end_of_head(struct http_parser *p)
{
	if (p->status == 101)
		return parse_fail(p, "unexpected 101 Switching Protocols");
	if (p->status < 200) {
		p->state = HTTP_STATUS;	/* interim (100 Continue): skipped */
		return HTTP_MORE;
	}
	if (p->head_only || p->status == 204 || p->status == 304)
		p->state = HTTP_DONE;
	else if (p->chunked)	/* it overrides a Content-Length */
		p->state = HTTP_CHUNK_SIZE;
	else if (!p->has_length)
		p->state = HTTP_TO_EOF;
	else if (p->left > HTTPS_MAX_BODY)
		return parse_fail(p, "response too large");
	else
		p->state = p->left == 0 ? HTTP_DONE : HTTP_BODY;
	return HTTP_MORE;
}

/* "1a3f[;ext]": a size that cannot fit the body limit is too large. */
static enum http_progress
chunk_size(struct http_parser *p, const char *l)
{
	size_t digits = strspn(l, "0123456789abcdefABCDEF");
	const char *rest = l + digits;
	uint64_t n = 0;

	rest += strspn(rest, " \t");
	if (digits == 0 || (*rest != '\0' && *rest != ';'))
		return parse_fail(p, "bad chunk size");
	for (size_t i = 0; i < digits; i++) {
		if (n > HTTPS_MAX_BODY)
			return parse_fail(p, "response too large");
		n = n * 16 + (uint64_t)(isdigit((unsigned char)l[i]) ?
		    l[i] - '0' : tolower((unsigned char)l[i]) - 'a' + 10);
	}
	if (n > HTTPS_MAX_BODY - p->body_len)
		return parse_fail(p, "response too large");
	p->left = n;
	p->state = n == 0 ? HTTP_TRAILER : HTTP_CHUNK_DATA;
	return HTTP_MORE;
}

/* A complete line (without CR LF) in the state that expected it. */
static enum http_progress
line_done(struct http_parser *p, char *l)
{
	switch (p->state) {
	case HTTP_STATUS:
		return status_line(p, l);
	case HTTP_HEADER:
		return *l == '\0' ? end_of_head(p) : header_line(p, l);
	case HTTP_TRAILER:
		if (*l != '\0')
			return header_line(p, l);
		p->state = HTTP_DONE;
		return HTTP_MORE;
	case HTTP_CHUNK_SIZE:
		return chunk_size(p, l);
	case HTTP_CHUNK_END:
		if (*l != '\0')
			return parse_fail(p, "bad chunk end");
		p->state = HTTP_CHUNK_SIZE;
		return HTTP_MORE;
	default:
		fatalx("http: line in state %d", (int)p->state);
	}
}

/* A line with a control byte (or a bare CR) in it, per line state. */
static const char *const bad_line[] = {
	[HTTP_STATUS] = "malformed status line",
	[HTTP_HEADER] = "malformed header",
	[HTTP_CHUNK_SIZE] = "bad chunk size",
	[HTTP_CHUNK_END] = "bad chunk end",
	[HTTP_TRAILER] = "malformed header",
};

/*
 * Would n more bytes make the current line too long?  Header lines share
 * one budget (head_len counts them all); chunk lines have their own.
 */
static const char *
line_too_long(const struct http_parser *p, size_t n)
{
	switch (p->state) {
	case HTTP_CHUNK_SIZE:
		return p->line_len + n > HTTP_MAX_CHUNK_LINE ?
		    "bad chunk size" : NULL;
	case HTTP_CHUNK_END:
		return p->line_len + n > 2 ? "bad chunk end" : NULL;
	default:
		return p->head_len + n > HTTP_MAX_HEAD ?
		    "response header too long" : NULL;
	}
}

/*
 * Takes bytes of a line; runs line_done once its LF arrives.  Only a CR
 * right before the LF is part of the line ending: a bare CR or a control
 * byte inside a line is malformed.  Returns how many bytes it took.
 */
static size_t
take_line(struct http_parser *p, const char *data, size_t len)
{
	const char *lf = memchr(data, '\n', len), *why;
	size_t n = lf != NULL ? (size_t)(lf - data) + 1 : len;

	/* The line buffer holds at most a whole head: HTTP_MAX_HEAD. */
	if ((why = line_too_long(p, n)) != NULL) {
		parse_fail(p, why);
		return 0;
	}
	memcpy(p->line + p->line_len, data, n);
	p->line_len += n;
	if (p->state == HTTP_STATUS || p->state == HTTP_HEADER ||
	    p->state == HTTP_TRAILER)
		p->head_len += n;
	if (lf == NULL)
		return n;
	p->line_len--;			/* the LF */
	if (p->line_len > 0 && p->line[p->line_len - 1] == '\r')
		p->line_len--;
	p->line[p->line_len] = '\0';
	for (size_t i = 0; i < p->line_len; i++)
		if (iscntrl((unsigned char)p->line[i]) && p->line[i] != '\t') {
			parse_fail(p, bad_line[p->state]);
			return n;
		}
	p->line_len = 0;
	line_done(p, p->line);
	return n;
}

static enum http_progress
progress(const struct http_parser *p)
{
	return p->state == HTTP_DONE ? HTTP_COMPLETE :
	    p->state == HTTP_FAILED ? HTTP_ERROR : HTTP_MORE;
}

enum http_progress
http_feed(struct http_parser *p, const char *data, size_t len, size_t *used)
{
	size_t i = 0;

	while (i < len && p->state != HTTP_DONE && p->state != HTTP_FAILED) {
		if (p->state == HTTP_BODY || p->state == HTTP_CHUNK_DATA ||
		    p->state == HTTP_TO_EOF)
			i += take_body(p, data + i, len - i);
		else
			i += take_line(p, data + i, len - i);
	}
	*used = i;
	return progress(p);
}

enum http_progress
http_eof(struct http_parser *p, bool clean)
{
	if (p->state == HTTP_TO_EOF && clean)
		p->state = HTTP_DONE;
	else if (p->state == HTTP_STATUS && p->head_len == 0 &&
	    p->line_len == 0)
		parse_fail(p, "connection closed without a response");
	else if (p->state != HTTP_DONE && p->state != HTTP_FAILED)
		parse_fail(p, eof_errors[p->state]);
	return progress(p);
}

