/*
 * http: the HTTP/1.1 response parser of the HTTPS client (https.c), also
 * used by the unit tests and the fuzz harness.  It is pure: bytes in,
 * progress out, in pieces split anywhere; it never touches a socket.
 */
#ifndef MAILPROXY_HTTP_H
#define MAILPROXY_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The status line and the headers together (trailers count too). */
#define HTTP_MAX_HEAD		(8 * 1024)
/* A chunk-size line, extensions included. */
#define HTTP_MAX_CHUNK_LINE	256

enum http_state {
	HTTP_STATUS,		/* the status line */
	HTTP_HEADER,		/* header lines up to the empty one */
	HTTP_BODY,		/* Content-Length bytes */
	HTTP_CHUNK_SIZE,	/* a chunk-size line */
	HTTP_CHUNK_DATA,	/* a chunk's bytes */
	HTTP_CHUNK_END,		/* the CRLF after them */
	HTTP_TRAILER,		/* trailer lines after the last chunk */
	HTTP_TO_EOF,		/* neither: the body ends with the connection */
	HTTP_DONE,
	HTTP_FAILED
};

enum http_progress {
	HTTP_MORE,		/* all bytes taken, the response goes on */
	HTTP_COMPLETE,		/* the response ended; see used */
	HTTP_ERROR		/* see error */
};

/*
 * Invariants: line holds the current line without its LF (line_len bytes)
 * while state is a line state; head_len counts every byte of the status
 * line, headers and trailers so far; body holds body_len bytes (plus a NUL)
 * in body_cap, never more than HTTPS_MAX_BODY.
 */
struct http_parser {
	enum http_state	 state;
	bool		 head_only;	/* a CONNECT reply: no body follows */
	int		 status;
	char		 status_line[128];	/* printable, for messages */
	bool		 chunked;
	bool		 has_length;
	uint64_t	 left;		/* body or chunk bytes still to come */
	char		*body;		/* NULL until a body byte arrives */
	size_t		 body_len;
	size_t		 body_cap;
	size_t		 head_len;
	size_t		 line_len;
	char		 line[HTTP_MAX_HEAD];
	const char	*error;		/* a static message when FAILED */
};

/* Starts a parser for one response; head_only for a proxy's CONNECT reply. */
void	http_parser_init(struct http_parser *p, bool head_only);

/*
 * Takes len bytes of the response.  *used is how many of them belong to it:
 * all of them unless it completed (what follows is not ours).  Once it
 * returned COMPLETE or ERROR it answers the same again.
 */
enum http_progress http_feed(struct http_parser *p, const char *data,
	    size_t len, size_t *used);

/*
 * The connection ended (clean: with TLS close_notify).  COMPLETE when
 * the body runs to EOF and the close was clean, else ERROR.
 */
enum http_progress http_eof(struct http_parser *p, bool clean);

/* Wipes and frees the body (it may hold tokens); p can be reused after init. */
void	http_parser_wipe(struct http_parser *p);

#endif
