/*
 * neg_impl: what the protocol negotiators share (private to negotiate.c,
 * smtp.c, pop3.c, imap.c).
 */
#ifndef MAILPROXY_NEG_IMPL_H
#define MAILPROXY_NEG_IMPL_H

#include <stdint.h>

#include "negotiate.h"
#include "reason.h"
#include "redact.h"

/* A multi-line reply (EHLO, CAPA, untagged IMAP data) is capped in total. */
#define NEG_MAX_REPLY	8192

struct negotiator;

struct neg_ops {
	const char	*const *state_names;
	size_t		 max_line;	/* CRLF included */
	/* One complete line of upstream input, CRLF stripped. */
	enum neg_verdict (*line)(struct negotiator *, const char *, size_t,
	    struct neg_out *);
	/* The upstream TLS session is up. */
	enum neg_verdict (*tls_ready)(struct negotiator *, struct neg_out *);
	/* May the dialogue end with the protocol's goodbye now? */
	bool (*may_say_goodbye)(const struct negotiator *);
	const char	*goodbye;	/* QUIT; IMAP: LOGOUT, tagged */
};

struct negotiator {
	const struct neg_ops	*ops;
	int			 state;		/* protocol's own enum */
	bool			 tls;		/* upstream TLS is up */
	bool			 starttls;	/* run STARTTLS (else greeting only) */
	bool			 greet;		/* greet the client at the end */
	bool			 awaiting_tls;	/* STARTTLS accepted, no TLS yet */
	char			 name[256];	/* EHLO name / greeting name */
	char			 in[NEG_MAX_INPUT];
	size_t			 inlen;
	/* Multi-line reply being read. */
	int			 reply_code;
	size_t			 reply_bytes;
	size_t			 reply_lines;
	bool			 keyword_seen;	/* the keyword this reply is read
						   for: STARTTLS / STLS, or the
						   AUTH mechanism (upstream_auth) */
	unsigned		 tag;		/* IMAP command counter */
	/* post-TLS capabilities (IMAP; SMTP with auth: keywords): as large
	 * as the reply they come from, so that none is ever dropped */
	char			 caps[NEG_MAX_REPLY + 1];
	int			 auth;		/* enum upstream_auth */
	bool			 auth_either;	/* a password: PLAIN or LOGIN,
						   whichever the server offers */
	char			*auth_user;
	char			*auth_secret;	/* wiped by neg_free() */
	size_t			 auth_secret_len;
	struct redact		*redact;	/* its forms, out of what the
						   upstream says (redact.h) */
	enum close_reason	 reason;	/* R_NONE until a failure */
	char			 detail[200];
};

/* The client side (client_tls = starttls). */
struct cneg_ops {
	size_t		 max_line;	/* CRLF included */
	/* One command line (CRLF stripped); may reply to the client. */
	enum cneg_verdict (*line)(struct cneg *, const char *, size_t,
	    struct buf *);
};

struct cneg {
	const struct cneg_ops	*ops;
	const struct proto_text	*text;
	char			 name[256];
	char			 line[8192];	/* the partial command line */
	size_t			 linelen;
	int			 errors;	/* refused commands so far */
	enum close_reason	 reason;
};

/* Refused commands after which the client is disconnected. */
#define CNEG_MAX_ERRORS	20

extern const struct cneg_ops smtp_cneg_ops, pop3_cneg_ops, imap_cneg_ops;
extern const struct proto_text smtp_text, pop3_text, imap_text;

/* Counts a refused command; true when the client should be cut off. */
bool	cneg_refused(struct cneg *c);

extern const struct neg_ops smtp_ops, pop3_ops, imap_ops;

/* ---- the client's login to the proxy (login.h) ---- */

#include "login.h"

/* A whole command, its literals included (IMAP), or a SASL response. */
#define LOGIN_MAX_COMMAND	(4096 + 2 * LOGIN_MAX_PASSWORD)

struct login_ops {
	bool		 literals;	/* IMAP {n} / {n+} */
	size_t		 max_line;	/* one line, CRLF included */
	/* One complete command (the final CRLF stripped; literals inline as
	 * "{n}\r\n" and their n bytes).  May reply and set credentials. */
	enum login_verdict (*command)(struct login *, const char *, size_t,
	    struct buf *);
};

struct login {
	const struct login_ops	*ops;
	const struct proto_text	*text;
	char			 name[256];
	char			 cmd[LOGIN_MAX_COMMAND];
	size_t			 cmdlen;
	size_t			 seg;		/* start of the current line */
	uint64_t		 literal_left;	/* raw bytes still to come */
	bool			 sasl;		/* a SASL response is expected */
	char			 tag[64];	/* IMAP: of the login command */
	size_t			 taglen;
	char			 user[LOGIN_MAX_USER + 1];	/* POP3: USER */
	char			 password[LOGIN_MAX_PASSWORD + 1];
	size_t			 pwlen;
	int			 failures;
	int			 errors;
	enum close_reason	 reason;
};

extern const struct login_ops imap_login_ops, pop3_login_ops, smtp_login_ops;

/* Takes a name and password (copied); LOGIN_CHECK, or a syntax error
 * (CONTINUE) when either is empty or too long. */
enum login_verdict login_credentials(struct login *l, const char *user,
	    size_t ulen, const char *pw, size_t pwlen, struct buf *to_client);

/* A SASL PLAIN message in base64 (RFC 4616): its credentials, or the
 * protocol's syntax error.  Also used by SMTP's front. */
enum login_verdict login_sasl_plain(struct login *l, const char *b64,
	    size_t len, struct buf *to_client);

/* "PLAIN [initial-response]" (RFC 4959: "=" is empty): the response's
 * credentials, or the continuation; another mechanism is refused. */
enum login_verdict login_sasl_start(struct login *l, const char *args,
	    size_t len, struct buf *to_client);

/* Base64 into out (at most cap bytes); false if it is not base64. */
bool	login_base64(const char *b64, size_t len, char *out, size_t cap,
	    size_t *outlen);

/* Counts a refused command; LOGIN_FAIL once there were too many. */
enum login_verdict login_error(struct login *l);

/*
 * Counts one more line of the reply being read; false when the reply grew
 * past NEG_MAX_REPLY.  neg_reply_done() starts the next reply.
 */
bool	neg_reply_add(struct negotiator *n, size_t len);
void	neg_reply_done(struct negotiator *n);

/* Records a failure (reason for the log, printf detail) and returns FAIL. */
enum neg_verdict neg_fail(struct negotiator *n, enum close_reason reason,
	    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The same, quoting (sanitised, truncated) the upstream line that caused it. */
enum neg_verdict neg_fail_line(struct negotiator *n, enum close_reason reason,
	    const char *line, size_t len);

/* Queues a command for the upstream (CRLF added). */
void	neg_send(struct negotiator *n, struct neg_out *out, const char *fmt,
	    ...) __attribute__((format(printf, 3, 4)));

/* Queues "<prefix><base64 of raw>" (CRLF added); the copy is wiped. */
void	neg_send_base64(struct neg_out *out, const char *prefix,
	    const void *raw, size_t len);

/* Queues prefix and the SASL message of the login (PLAIN, or XOAUTH2 with
 * a token) in base64.  -1 when out of memory. */
int	neg_send_sasl(struct negotiator *n, struct neg_out *out,
	    const char *prefix);

/* Queues prefix, the secret, suffix and CRLF; the copy is wiped. */
void	neg_send_secret(struct neg_out *out, const char *prefix,
	    const char *secret, size_t len, const char *suffix);

/* XOAUTH2 explains a refusal in a challenge, base64 JSON: kept in detail
 * (sanitised) for the log line of the refusal that follows. */
void	neg_note_xoauth2_error(struct negotiator *n, const char *b64,
	    size_t len);

/* The login was refused (line): FAIL, quoting it and the noted error. */
enum neg_verdict neg_fail_auth(struct negotiator *n, const char *line,
	    size_t len);

/* Queues text for the client (CRLF added). */
void	neg_reply_client(struct neg_out *out, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

#endif
