/*
 * negotiate: input framing and the rules every negotiator shares.
 */
#include "negotiate.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/base64.h>
#include <openssl/mem.h>

#include "line.h"
#include "neg_impl.h"

static const struct neg_ops *const ops_by_proto[] = {
	[PROTO_SMTP] = &smtp_ops,
	[PROTO_POP3] = &pop3_ops,
	[PROTO_IMAP] = &imap_ops,
};

struct negotiator *
neg_new(enum proto proto, const char *name, bool starttls, bool greet)
{
	struct negotiator *n;

	if ((n = calloc(1, sizeof(*n))) == NULL)
		return NULL;
	n->ops = ops_by_proto[proto];
	n->starttls = starttls;
	n->greet = greet;
	snprintf(n->name, sizeof(n->name), "%s", name);
	return n;
}

void
neg_free(struct negotiator *n)
{
	if (n == NULL)
		return;
	if (n->auth_secret != NULL) {
		OPENSSL_cleanse(n->auth_secret, n->auth_secret_len);
		free(n->auth_secret);
	}
	redact_free(n->redact);
	free(n->auth_user);
	free(n);
}

static int sasl_message(const struct negotiator *n, char **raw, size_t *cap);

/* What the upstream says is cleaned of every form the credential takes on
 * the wire: the secret, and the SASL message it goes in (AUTH LOGIN sends
 * the secret's base64 alone, which redact.c covers). */
static int
set_redaction(struct negotiator *n)
{
	char *raw = NULL;
	size_t cap = 0;
	int len = -1;

	if (n->auth != AUTH_LOGIN && (len = sasl_message(n, &raw, &cap)) < 0)
		return -1;
	n->redact = redact_new(n->auth_secret, n->auth_secret_len, raw,
	    len > 0 ? (size_t)len : 0);
	if (raw != NULL) {
		OPENSSL_cleanse(raw, cap);
		free(raw);
	}
	return n->redact != NULL ? 0 : -1;
}

int
neg_set_auth(struct negotiator *n, int mech, const char *user,
    const char *secret, size_t len)
{
	if ((n->auth_user = strdup(user)) == NULL ||
	    (n->auth_secret = malloc(len + 1)) == NULL)
		return -1;
	memcpy(n->auth_secret, secret, len);
	n->auth_secret[len] = '\0';
	n->auth_secret_len = len;
	n->auth = mech;
	if (mech == AUTH_ACCOUNTS) {	/* an account's password */
		n->auth = AUTH_PLAIN;
		n->auth_either = true;
	}
	return set_redaction(n);
}

const char *
neg_caps(const struct negotiator *n)
{
	return n->caps;
}

enum neg_verdict
neg_fail(struct negotiator *n, enum close_reason reason, const char *fmt, ...)
{
	va_list ap;

	n->reason = reason;
	va_start(ap, fmt);
	vsnprintf(n->detail, sizeof(n->detail), fmt, ap);
	va_end(ap);
	return NEG_FAIL;
}

enum neg_verdict
neg_fail_line(struct negotiator *n, enum close_reason reason, const char *line,
    size_t len)
{
	char clean[96];
	bool cut;

	/* Redacted whole, then cut: a cut never leaves half a secret. */
	redact_copy(n->redact, line, len, clean, sizeof(clean), &cut);
	for (char *c = clean; *c != '\0'; c++)
		if (*c < 0x20 || *c >= 0x7f)
			*c = '?';
	return neg_fail(n, reason, "upstream said \"%s%s\" in state %s", clean,
	    cut ? "..." : "", neg_state_name(n));
}

static void
vqueue(struct buf *b, const char *fmt, va_list ap)
{
	char text[600], *line = text;
	va_list again;
	int len;

	/* Never cut: a line longer than the stack buffer (a long capability
	 * list in the greeting) is formatted again into one that fits. */
	va_copy(again, ap);
	len = vsnprintf(text, sizeof(text) - 2, fmt, ap);
	if (len >= 0 && (size_t)len > sizeof(text) - 3 &&
	    ((line = malloc((size_t)len + 3)) == NULL ||
	    vsnprintf(line, (size_t)len + 1, fmt, again) != len))
		len = -1;
	va_end(again);
	if (len >= 0) {
		memcpy(line + len, "\r\n", 2);
		/* Both buffers are nearly empty in this phase, and the lines
		 * are bounded by the input limits: they fit. */
		(void)buf_append(b, line, (size_t)len + 2);
	}
	if (line != text)
		free(line);
}

void
neg_send(struct negotiator *n, struct neg_out *out, const char *fmt, ...)
{
	va_list ap;

	(void)n;
	va_start(ap, fmt);
	vqueue(out->to_upstream, fmt, ap);
	va_end(ap);
}

void
neg_reply_client(struct neg_out *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vqueue(out->to_client, fmt, ap);
	va_end(ap);
}

void
neg_send_base64(struct neg_out *out, const char *prefix, const void *raw,
    size_t len)
{
	size_t plen = strlen(prefix), cap = plen + (len + 2) / 3 * 4 + 3;
	char *line;
	size_t n;

	if ((line = malloc(cap)) == NULL)
		return;		/* the upstream times out: fails closed */
	memcpy(line, prefix, plen);
	n = EVP_EncodeBlock((uint8_t *)line + plen, raw, len);
	memcpy(line + plen + n, "\r\n", 2);
	(void)buf_append(out->to_upstream, line, plen + n + 2);
	OPENSSL_cleanse(line, cap);
	free(line);
}

/*
 * "n,a=USER,^Aauth=Bearer " (RFC 7628 3.1; RFC 5801 escapes "," and "=" in
 * the name).  out has room for three bytes per name byte.
 */
static int
gs2_header(char *out, const char *user)
{
	char *o = out;

	o += sprintf(o, "n,a=");
	for (const char *c = user; *c != '\0'; c++)
		o += *c == ',' ? sprintf(o, "=2C") : *c == '=' ?
		    sprintf(o, "=3D") : (*o = *c, 1);
	return (int)(o - out) + sprintf(o, ",\001auth=Bearer ");
}

/*
 * The SASL message of the login (PLAIN, or XOAUTH2 / OAUTHBEARER with a
 * token) into *raw (malloc'ed, *cap bytes: the caller wipes and frees it).
 * Returns its length, or -1 when out of memory.
 */
static int
sasl_message(const struct negotiator *n, char **raw, size_t *cap)
{
	size_t ul = strlen(n->auth_user), sl = n->auth_secret_len;
	char *m;
	int len;

	*cap = 3 * ul + sl + 32;	/* OAUTHBEARER escapes: 3 per byte */
	if ((m = malloc(*cap)) == NULL)
		return -1;
	if (n->auth == AUTH_XOAUTH2)	/* Google/Microsoft XOAUTH2 */
		len = snprintf(m, *cap, "user=%s\001auth=Bearer ", n->auth_user);
	else if (n->auth == AUTH_OAUTHBEARER)	/* RFC 7628 */
		len = gs2_header(m, n->auth_user);
	else				/* RFC 4616: authzid NUL authcid NUL pw */
		len = snprintf(m, *cap, "%c%s%c", 0, n->auth_user, 0);
	memcpy(m + len, n->auth_secret, sl);
	len += (int)sl;
	if (n->auth == AUTH_XOAUTH2 || n->auth == AUTH_OAUTHBEARER) {
		memcpy(m + len, "\001\001", 2);
		len += 2;
	}
	*raw = m;
	return len;
}

int
neg_send_sasl(struct negotiator *n, struct neg_out *out, const char *prefix)
{
	char *raw;
	size_t cap;
	int len;

	if ((len = sasl_message(n, &raw, &cap)) < 0)
		return -1;
	neg_send_base64(out, prefix, raw, (size_t)len);
	OPENSSL_cleanse(raw, cap);
	free(raw);
	return 0;
}

void
neg_send_secret(struct neg_out *out, const char *prefix, const char *secret,
    size_t len, const char *suffix)
{
	size_t pl = strlen(prefix), xl = strlen(suffix), cap = pl + len + xl + 2;
	char *line = malloc(cap);

	if (line == NULL)
		return;		/* the upstream times out: fails closed */
	memcpy(line, prefix, pl);
	memcpy(line + pl, secret, len);
	memcpy(line + pl + len, suffix, xl);
	memcpy(line + pl + len + xl, "\r\n", 2);
	(void)buf_append(out->to_upstream, line, cap);
	OPENSSL_cleanse(line, cap);
	free(line);
}

void
neg_note_xoauth2_error(struct negotiator *n, const char *b64, size_t len)
{
	uint8_t json[300];
	char clean[sizeof(n->detail)];
	size_t jl = 0, cl;

	if (!EVP_DecodeBase64(json, &jl, sizeof(json) - 1,
	    (const uint8_t *)b64, len))
		jl = 0;
	/* The error may quote the token: redacted before it is kept. */
	cl = redact_copy(n->redact, (const char *)json, jl, clean,
	    sizeof(clean), NULL);
	for (size_t i = 0; i < cl; i++)
		if (clean[i] < 0x20 || clean[i] >= 0x7f || clean[i] == '"')
			clean[i] = '\'';
	snprintf(n->detail, sizeof(n->detail), "%s", clean);
	OPENSSL_cleanse(json, sizeof(json));
}

enum neg_verdict
neg_fail_auth(struct negotiator *n, const char *line, size_t len)
{
	char why[200];

	snprintf(why, sizeof(why), "%s", n->detail);
	neg_fail_line(n, R_UPSTREAM_AUTH_REFUSED, line, len);
	/* The server's refusal, then what its challenge said. */
	if (why[0] != '\0')
		snprintf(n->detail + strlen(n->detail), sizeof(n->detail) -
		    strlen(n->detail), "; %s", why);
	return NEG_FAIL;
}

bool
neg_reply_add(struct negotiator *n, size_t len)
{
	n->reply_lines++;
	n->reply_bytes += len + 2;
	return n->reply_bytes <= NEG_MAX_REPLY;
}

void
neg_reply_done(struct negotiator *n)
{
	n->reply_lines = 0;
	n->reply_bytes = 0;
	n->keyword_seen = false;
}

/*
 * The login is over: the capabilities kept for the client (IMAP's come
 * from the login's own reply) are cleaned of the credential, whole
 * keywords only if that made the list longer than its buffer.
 */
static enum neg_verdict
relay_verdict(struct negotiator *n)
{
	char copy[sizeof(n->caps)];
	size_t len;
	bool cut;

	if (n->redact == NULL || n->caps[0] == '\0')
		return NEG_RELAY;
	len = redact_copy(n->redact, n->caps, strlen(n->caps), copy,
	    sizeof(copy), &cut);
	while (cut && len > 0 && copy[len - 1] != '\n' && copy[len - 1] != ' ')
		len--;
	while (cut && len > 0 && copy[len - 1] == ' ')
		len--;
	memcpy(n->caps, copy, len);
	n->caps[len] = '\0';
	return NEG_RELAY;
}

/*
 * Runs the line handler over every complete line.  The rules that do not
 * depend on the protocol live here: bounded lines, and no byte may follow
 * a reply after which the proxy spoke (sent a command, started TLS or
 * finished): such bytes were not asked for.
 */
enum neg_verdict
neg_feed(struct negotiator *n, const char *data, size_t len,
    struct neg_out *out)
{
	enum neg_verdict v = NEG_CONTINUE;
	size_t linelen, off = 0, sent_before;

	/* Between the STARTTLS success line and the handshake: an attack. */
	if (n->awaiting_tls && len > 0)
		return neg_fail(n, R_UPSTREAM_INJECTION, "%zu bytes after the "
		    "STARTTLS reply, before the TLS handshake", len);
	if (len > sizeof(n->in) - n->inlen)
		return neg_fail(n, R_UPSTREAM_PROTOCOL_ERROR, "reply longer "
		    "than %zu bytes in state %s", sizeof(n->in),
		    neg_state_name(n));
	memcpy(n->in + n->inlen, data, len);
	n->inlen += len;
	while (off < n->inlen) {
		switch (line_next(n->in + off, n->inlen - off, n->ops->max_line,
		    &linelen)) {
		case LINE_MORE:
			goto keep;
		case LINE_TOO_LONG:
			return neg_fail(n, R_UPSTREAM_PROTOCOL_ERROR, "line "
			    "longer than %zu bytes in state %s",
			    n->ops->max_line, neg_state_name(n));
		case LINE_BAD:
			return neg_fail(n, R_UPSTREAM_PROTOCOL_ERROR, "bare CR/LF, "
			    "NUL or control byte in state %s",
			    neg_state_name(n));
		case LINE_OK:
			break;
		}
		sent_before = buf_len(out->to_upstream);
		v = n->ops->line(n, n->in + off, linelen, out);
		off += linelen + 2;
		if (v == NEG_FAIL)
			return v;
		if (v != NEG_CONTINUE || buf_len(out->to_upstream) != sent_before) {
			if (off < n->inlen) {
				/* Nothing of a failed dialogue goes out. */
				buf_release(out->to_client);
				return neg_fail(n, v == NEG_START_TLS ?
				    R_UPSTREAM_INJECTION : R_UPSTREAM_UNSOLICITED,
				    "%zu bytes after the reply in state %s",
				    n->inlen - off, neg_state_name(n));
			}
			n->awaiting_tls = v == NEG_START_TLS;
			break;
		}
	}
keep:
	memmove(n->in, n->in + off, n->inlen - off);
	n->inlen -= off;
	return v == NEG_RELAY ? relay_verdict(n) : v;
}

enum neg_verdict
neg_tls_ready(struct negotiator *n, struct neg_out *out)
{
	enum neg_verdict v;

	if (n->inlen != 0)
		return neg_fail(n, R_UPSTREAM_INJECTION, "%zu bytes before the "
		    "TLS handshake", n->inlen);
	n->tls = true;
	n->awaiting_tls = false;
	v = n->ops->tls_ready(n, out);
	return v == NEG_RELAY ? relay_verdict(n) : v;
}

bool
neg_goodbye(struct negotiator *n, struct neg_out *out)
{
	if (n->awaiting_tls || n->inlen != 0 || !n->ops->may_say_goodbye(n))
		return false;
	if (n->ops == &imap_ops)
		neg_send(n, out, "mp%u %s", ++n->tag, n->ops->goodbye);
	else
		neg_send(n, out, "%s", n->ops->goodbye);
	return true;
}

enum close_reason
neg_reason(const struct negotiator *n)
{
	return n->reason != R_NONE ? n->reason : R_NEGOTIATION_FAILED;
}

const char *
neg_detail(const struct negotiator *n)
{
	return n->detail;
}

const char *
neg_state_name(const struct negotiator *n)
{
	return n->ops->state_names[n->state];
}

/* ---- client side --------------------------------------------------------- */

static const struct cneg_ops *const cneg_by_proto[] = {
	[PROTO_SMTP] = &smtp_cneg_ops,
	[PROTO_POP3] = &pop3_cneg_ops,
	[PROTO_IMAP] = &imap_cneg_ops,
};

static const struct proto_text *const text_by_proto[] = {
	[PROTO_SMTP] = &smtp_text,
	[PROTO_POP3] = &pop3_text,
	[PROTO_IMAP] = &imap_text,
};

const struct proto_text *
proto_text(enum proto proto)
{
	return text_by_proto[proto];
}

void
proto_say(struct buf *to_client, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vqueue(to_client, fmt, ap);
	va_end(ap);
}

/* A TLS record starts with content type 22 (handshake). */
#define TLS_HANDSHAKE_RECORD	0x16

struct cneg *
cneg_new(enum proto proto, const char *name)
{
	struct cneg *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->ops = cneg_by_proto[proto];
	c->text = text_by_proto[proto];
	snprintf(c->name, sizeof(c->name), "%s", name);
	return c;
}

void
cneg_free(struct cneg *c)
{
	free(c);
}

void
cneg_greet(struct cneg *c, struct buf *to_client)
{
	proto_say(to_client, c->text->greeting, c->name);
}

void
cneg_timeout(struct cneg *c, struct buf *to_client)
{
	proto_say(to_client, "%s", c->text->timeout);
}

bool
cneg_refused(struct cneg *c)
{
	return ++c->errors >= CNEG_MAX_ERRORS;
}

enum close_reason
cneg_reason(const struct cneg *c)
{
	return c->reason != R_NONE ? c->reason : R_CLIENT_NEGOTIATION_FAILED;
}

/*
 * Lines end with LF (an optional CR before it is dropped): old devices send
 * bare LF, and nothing before TLS is relayed, so leniency costs nothing here.
 */
enum cneg_verdict
cneg_feed(struct cneg *c, const char *data, size_t len, size_t *consumed,
    struct buf *to_client)
{
	enum cneg_verdict v;
	size_t i = 0, n;

	while (i < len) {
		char ch = data[i++];

		if (ch != '\n') {
			if (c->linelen + 2 > c->ops->max_line) {
				*consumed = i;
				proto_say(to_client, "%s", c->text->too_long);
				c->reason = R_CLIENT_LINE_TOO_LONG;
				return CNEG_FAIL;
			}
			c->line[c->linelen++] = ch;
			continue;
		}
		n = c->linelen;
		if (n > 0 && c->line[n - 1] == '\r')
			n--;
		c->linelen = 0;
		if (memchr(c->line, '\0', n) != NULL) {
			/* Never read as the text before the NUL. */
			proto_say(to_client, "%s", c->text->syntax_error);
			v = cneg_refused(c) ? CNEG_FAIL : CNEG_CONTINUE;
		} else
			v = c->ops->line(c, c->line, n, to_client);
		if (v == CNEG_CONTINUE)
			continue;
		*consumed = i;
		if (v == CNEG_START_TLS && i < len &&
		    (unsigned char)data[i] != TLS_HANDSHAKE_RECORD) {
			/* Plaintext after STARTTLS: the injection attack.
			 * Nothing of this batch gets an answer. */
			buf_release(to_client);
			c->reason = R_CLIENT_INJECTION;
			return CNEG_FAIL;
		}
		if (v == CNEG_FAIL && c->reason == R_NONE)
			c->reason = R_CLIENT_TOO_MANY_ERRORS;
		return v;
	}
	*consumed = len;
	return CNEG_CONTINUE;
}
