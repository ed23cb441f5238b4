/*
 * login: the framing of the client's login dialogue (lines, IMAP literals,
 * SASL responses) and what every protocol's login shares; the commands are
 * in imap.c and pop3.c.  See login.h.
 */
#include "login.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/base64.h>
#include <openssl/mem.h>

#include "line.h"
#include "neg_impl.h"

struct login *
login_new(enum proto proto, const char *name)
{
	static const struct login_ops *const ops[] = {
		[PROTO_SMTP] = &smtp_login_ops,	/* driven by front.c */
		[PROTO_POP3] = &pop3_login_ops,
		[PROTO_IMAP] = &imap_login_ops,
	};
	struct login *l;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	l->ops = ops[proto];
	l->text = proto_text(proto);
	snprintf(l->name, sizeof(l->name), "%s", name);
	return l;
}

void
login_free(struct login *l)
{
	if (l == NULL)
		return;
	OPENSSL_cleanse(l, sizeof(*l));	/* the command buffer too */
	free(l);
}

void
login_greet(struct login *l, struct buf *to_client)
{
	proto_say(to_client, l->text->login_greeting, l->name);
}

const char *
login_user(const struct login *l)
{
	return l->user;
}

const char *
login_password(const struct login *l, size_t *len)
{
	*len = l->pwlen;
	return l->password;
}

void
login_forget(struct login *l)
{
	OPENSSL_cleanse(l->password, sizeof(l->password));
	l->pwlen = 0;
}

enum close_reason
login_reason(const struct login *l)
{
	return l->reason != R_NONE ? l->reason : R_CLIENT_TOO_MANY_ERRORS;
}

enum login_verdict
login_error(struct login *l)
{
	return ++l->errors >= CNEG_MAX_ERRORS ? LOGIN_FAIL : LOGIN_CONTINUE;
}

enum login_verdict
login_credentials(struct login *l, const char *user, size_t ulen,
    const char *pw, size_t pwlen, struct buf *to_client)
{
	if (ulen == 0 || ulen > LOGIN_MAX_USER || pwlen == 0 ||
	    pwlen > LOGIN_MAX_PASSWORD) {
		proto_say(to_client, l->text->auth_syntax, (int)l->taglen, l->tag);
		return login_error(l);
	}
	memmove(l->user, user, ulen);	/* POP3: PASS after USER, in place */
	l->user[ulen] = '\0';
	memcpy(l->password, pw, pwlen);
	l->password[pwlen] = '\0';
	l->pwlen = pwlen;
	return LOGIN_CHECK;
}

bool
login_base64(const char *b64, size_t len, char *out, size_t cap,
    size_t *outlen)
{
	size_t need;

	if (!EVP_DecodedLength(&need, len) || need > cap)
		return false;
	return EVP_DecodeBase64((uint8_t *)out, outlen, cap,
	    (const uint8_t *)b64, len) == 1;
}

enum login_verdict
login_sasl_plain(struct login *l, const char *b64, size_t len,
    struct buf *to_client)
{
	char msg[LOGIN_MAX_USER * 2 + LOGIN_MAX_PASSWORD + 3];
	const char *authc, *pw, *end;
	size_t n = 0;
	enum login_verdict v;

	/* authzid NUL authcid NUL passwd; an authzid other than the authcid
	 * (acting as someone else) is not offered. */
	if (!login_base64(b64, len, msg, sizeof(msg), &n) ||
	    (authc = memchr(msg, '\0', n)) == NULL ||
	    (pw = memchr(authc + 1, '\0', n - (size_t)(authc + 1 - msg))) ==
	    NULL || memchr(pw + 1, '\0', n - (size_t)(pw + 1 - msg)) != NULL ||
	    (authc != msg && ((size_t)(authc - msg) != (size_t)(pw - authc - 1) ||
	    memcmp(msg, authc + 1, (size_t)(authc - msg)) != 0))) {
		OPENSSL_cleanse(msg, sizeof(msg));
		proto_say(to_client, l->text->auth_syntax, (int)l->taglen, l->tag);
		return login_error(l);
	}
	authc++;
	end = msg + n;
	v = login_credentials(l, authc, (size_t)(pw - authc), pw + 1,
	    (size_t)(end - pw - 1), to_client);
	OPENSSL_cleanse(msg, sizeof(msg));
	return v;
}

enum login_verdict
login_sasl_start(struct login *l, const char *args, size_t len,
    struct buf *to_client)
{
	bool ir;
	size_t ml = line_verb(args, len, &ir);

	if (ml != 5 || strncasecmp(args, "PLAIN", 5) != 0) {
		proto_say(to_client, l->text->auth_mechanism, (int)l->taglen,
		    l->tag);
		return login_error(l);
	}
	if (ir)
		return login_sasl_plain(l, args + 6, len - 6, to_client);
	l->sasl = true;
	proto_say(to_client, "%s", l->text->sasl_go_on);
	return LOGIN_CONTINUE;
}

enum login_verdict
login_refused(struct login *l, struct buf *to_client)
{
	proto_say(to_client, l->text->auth_failed, (int)l->taglen, l->tag);
	l->user[0] = '\0';	/* POP3: USER again */
	if (++l->failures < LOGIN_MAX_FAILURES)
		return LOGIN_CONTINUE;
	login_blocked(l, to_client);
	l->reason = R_CLIENT_AUTH_FAILED;
	return LOGIN_FAIL;
}

void
login_blocked(struct login *l, struct buf *to_client)
{
	proto_say(to_client, "%s", l->text->auth_blocked);
}

void
login_accepted(struct login *l, const char *caps, struct buf *to_client)
{
	if (caps != NULL && *caps != '\0' && l->text->auth_ok_caps != NULL)
		proto_say(to_client, l->text->auth_ok_caps, (int)l->taglen, l->tag,
		    caps);
	else
		proto_say(to_client, l->text->auth_ok, (int)l->taglen, l->tag);
}

void
login_unavailable(struct login *l, struct buf *to_client)
{
	proto_say(to_client, l->text->auth_unavailable, (int)l->taglen, l->tag);
}

void
login_timeout(struct login *l, struct buf *to_client)
{
	proto_say(to_client, "%s", l->text->timeout);
}

/* A SASL response line: "*" cancels, anything else is PLAIN's message. */
static enum login_verdict
sasl_response(struct login *l, const char *line, size_t len,
    struct buf *to_client)
{
	l->sasl = false;
	if (len == 1 && line[0] == '*') {
		proto_say(to_client, l->text->auth_cancelled, (int)l->taglen,
		    l->tag);
		return login_error(l);
	}
	return login_sasl_plain(l, line, len, to_client);
}

/* Forgets the command just handled (it may hold a password). */
static void
reset(struct login *l)
{
	OPENSSL_cleanse(l->cmd, l->cmdlen);
	l->cmdlen = 0;
	l->seg = 0;
}

/*
 * A line ends with "{n}" or "{n+}" (IMAP): its n bytes follow, raw, and
 * belong to the same command.  The announcement stays in the command,
 * with CRLF, for the parser.  A synchronising literal is invited with a
 * continuation; one too large is refused (a non-synchronising one cannot
 * be: its bytes are on their way, and the session ends).
 */
static enum login_verdict
literal(struct login *l, const char *line, size_t n, uint64_t size,
    struct buf *to_client)
{
	bool sync = line[n - 2] != '+';
	size_t tl = strcspn(l->cmd, " ");

	if (size > LOGIN_MAX_PASSWORD || l->cmdlen + 2 + size >
	    sizeof(l->cmd) - 2) {
		if (!sync) {
			reset(l);
			proto_say(to_client, "%s", l->text->too_long);
			l->reason = R_CLIENT_LINE_TOO_LONG;
			return LOGIN_FAIL;
		}
		proto_say(to_client, "%.*s BAD Literal too large",
		    tl > 0 && tl < sizeof(l->tag) ? (int)tl : 1,
		    tl > 0 && tl < sizeof(l->tag) ? l->cmd : "*");
		reset(l);
		return login_error(l);
	}
	l->cmdlen = l->seg + n;		/* a bare LF gets its CR */
	memcpy(l->cmd + l->cmdlen, "\r\n", 2);
	l->cmdlen += 2;
	l->literal_left = size;
	l->seg = l->cmdlen;
	if (sync)
		proto_say(to_client, "+ Ready for literal data");
	return LOGIN_CONTINUE;
}

/* One line (or the end of a command) is complete at cmd[seg..cmdlen). */
static enum login_verdict
line_done(struct login *l, struct buf *to_client)
{
	const char *line = l->cmd + l->seg;
	size_t n = l->cmdlen - l->seg;
	enum login_verdict v;
	uint64_t size;

	if (n > 0 && line[n - 1] == '\r')
		n--;
	if (memchr(line, '\0', n) != NULL) {
		reset(l);
		l->sasl = false;
		proto_say(to_client, "%s", l->text->syntax_error);
		return login_error(l);
	}
	if (l->ops->literals && !l->sasl && line_imap_literal(line, n, &size))
		return literal(l, line, n, size, to_client);
	l->cmdlen = l->seg + n;
	v = l->sasl ? sasl_response(l, l->cmd, l->cmdlen, to_client) :
	    l->ops->command(l, l->cmd, l->cmdlen, to_client);
	reset(l);
	return v;
}

/*
 * Lines end with LF (a CR before it is dropped): nothing of this dialogue
 * is relayed.  Every byte up to the end of a command is taken; the bytes
 * after a login command are left to the caller.
 */
enum login_verdict
login_feed(struct login *l, const char *data, size_t len, size_t *consumed,
    struct buf *to_client)
{
	enum login_verdict v;
	size_t i = 0, take;

	*consumed = 0;
	while (i < len) {
		/* Pipelined commands wait while many replies are queued. */
		if (buf_len(to_client) > BUF_CAPACITY / 2)
			return LOGIN_CONTINUE;
		if (l->literal_left > 0) {
			take = len - i < l->literal_left ? len - i :
			    (size_t)l->literal_left;
			memcpy(l->cmd + l->cmdlen, data + i, take);
			l->cmdlen += take;
			l->literal_left -= take;
			l->seg = l->cmdlen;
			*consumed = i += take;
			continue;
		}
		if (data[i++] != '\n') {
			if (l->cmdlen - l->seg + 2 > l->ops->max_line ||
			    l->cmdlen + 2 > sizeof(l->cmd)) {
				*consumed = i;
				reset(l);
				proto_say(to_client, "%s", l->text->too_long);
				l->reason = R_CLIENT_LINE_TOO_LONG;
				return LOGIN_FAIL;
			}
			l->cmd[l->cmdlen++] = data[i - 1];
			*consumed = i;
			continue;
		}
		*consumed = i;
		if ((v = line_done(l, to_client)) != LOGIN_CONTINUE)
			return v;
	}
	return LOGIN_CONTINUE;
}
