/*
 * smtp: upstream STARTTLS for SMTP (RFC 3207, RFC 5321 reply syntax).
 *
 *   GREETING 220 -> EHLO 250 (STARTTLS advertised) -> STARTTLS 220
 *   -> [TLS] -> the client gets "220 <name> ESMTP ready"; its own EHLO goes
 *   to the server inside TLS.
 *
 * With upstream_auth (RFC 4954) the proxy logs in itself once TLS is up
 * (after STARTTLS, or after the greeting of an implicit-TLS upstream):
 *
 *   EHLO 250 (mechanism advertised; keywords kept for the device)
 *   -> AUTH PLAIN <ir> 235 | AUTH LOGIN 334 <user> 334 <password> 235
 *   | AUTH XOAUTH2 <ir> 235 (a 334 carries the error: "" -> 5xx)
 *   | AUTH OAUTHBEARER <ir> 235 (RFC 7628: a 334 carries the error,
 *     answered with a lone ^A -> 5xx)
 *   -> the client's greeting.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/base64.h>
#include <openssl/mem.h>

#include "line.h"
#include "neg_impl.h"

enum smtp_state { SMTP_GREETING, SMTP_EHLO, SMTP_STARTTLS, SMTP_TLS,
    SMTP_AUTH_EHLO, SMTP_AUTH, SMTP_AUTH_LOGIN_USER, SMTP_AUTH_LOGIN_PASS,
    SMTP_AUTH_XOAUTH2_ERROR, SMTP_DONE };

static const char *const smtp_state_names[] = {
	"greeting", "ehlo", "starttls", "tls-handshake", "auth-ehlo", "auth",
	"auth-login-user", "auth-login-password", "auth-xoauth2-error", "done",
};

/* By enum upstream_auth (an account's password arrives as PLAIN). */
static const char *const mech_names[] = { "", "PLAIN", "LOGIN", "XOAUTH2",
    "OAUTHBEARER", "PLAIN" };

/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with CRLF. */
#define SMTP_MAX_LINE	512

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* TLS is up and, where configured, the proxy is logged in. */
static enum neg_verdict
smtp_finish(struct negotiator *n, struct neg_out *out)
{
	n->state = SMTP_DONE;
	if (n->greet)
		neg_reply_client(out, "220 %s ESMTP ready", n->name);
	return NEG_RELAY;
}

/* The first AUTH command; the SASL strings carry no CRLF (checked at load). */
static enum neg_verdict
send_auth(struct negotiator *n, struct neg_out *out)
{
	if (n->auth == AUTH_LOGIN) {
		neg_send(n, out, "AUTH LOGIN");
		n->state = SMTP_AUTH_LOGIN_USER;
		return NEG_CONTINUE;
	}
	if (neg_send_sasl(n, out, n->auth == AUTH_PLAIN ? "AUTH PLAIN " :
	    n->auth == AUTH_XOAUTH2 ? "AUTH XOAUTH2 " : "AUTH OAUTHBEARER ") < 0)
		return neg_fail(n, R_OUT_OF_MEMORY, "building AUTH");
	n->state = SMTP_AUTH;
	return NEG_CONTINUE;
}

/* One keyword line of the post-TLS EHLO reply (auth mode). */
static void
note_keyword(struct negotiator *n, const char *kw, size_t len)
{
	size_t have = strlen(n->caps);

	if (line_starts_with_word(kw, len, "AUTH") ||
	    (len > 5 && strncasecmp(kw, "AUTH=", 5) == 0)) {
		if (line_has_word(kw + 5, len > 5 ? len - 5 : 0,
		    mech_names[n->auth]))
			n->keyword_seen = true;
		else if (n->auth_either && !n->keyword_seen &&
		    line_has_word(kw + 5, len > 5 ? len - 5 : 0, "LOGIN")) {
			n->auth = AUTH_LOGIN;	/* smtp.office365.com */
			n->keyword_seen = true;
		}
		return;		/* the device never sees AUTH */
	}
	if (line_starts_with_word(kw, len, "STARTTLS"))
		return;		/* TLS toward the device is ours to offer */
	if (have + len + 3 > sizeof(n->caps))
		return;		/* keep whole keywords only */
	memcpy(n->caps + have, kw, len);
	memcpy(n->caps + have + len, "\r\n", 3);
}

/* The reply is complete: act on it according to the state. */
static enum neg_verdict
smtp_reply(struct negotiator *n, int code, bool starttls_seen,
    const char *line, size_t len, struct neg_out *out)
{
	switch ((enum smtp_state)n->state) {
	case SMTP_GREETING:
		if (code != 220)
			return neg_fail_line(n, code == 554 || code == 421 ?
			    R_UPSTREAM_REFUSED : R_UPSTREAM_BAD_GREETING, line,
			    len);
		if (!n->starttls && n->auth != AUTH_NONE) {
			/* Implicit TLS: log in right away. */
			neg_send(n, out, "EHLO %s", n->name);
			n->state = SMTP_AUTH_EHLO;
			return NEG_CONTINUE;
		}
		if (!n->starttls) {
			/* The client was greeted by us; it sends EHLO next. */
			n->state = SMTP_DONE;
			return NEG_RELAY;
		}
		neg_send(n, out, "EHLO %s", n->name);
		n->state = SMTP_EHLO;
		return NEG_CONTINUE;
	case SMTP_EHLO:
		if (code != 250)
			return neg_fail_line(n, R_UPSTREAM_EHLO_REFUSED, line,
			    len);
		if (!starttls_seen)
			return neg_fail(n, R_UPSTREAM_NO_STARTTLS, "STARTTLS "
			    "is not in the EHLO reply");
		neg_send(n, out, "STARTTLS");
		n->state = SMTP_STARTTLS;
		return NEG_CONTINUE;
	case SMTP_STARTTLS:
		if (code != 220)
			return neg_fail_line(n, R_UPSTREAM_STARTTLS_REFUSED,
			    line, len);
		n->state = SMTP_TLS;
		return NEG_START_TLS;
	case SMTP_AUTH_EHLO:
		if (code != 250)
			return neg_fail_line(n, R_UPSTREAM_EHLO_REFUSED, line,
			    len);
		if (!starttls_seen)
			return neg_fail(n, R_UPSTREAM_AUTH_UNAVAILABLE, "AUTH %s "
			    "is not in the EHLO reply after TLS",
			    mech_names[n->auth]);
		return send_auth(n, out);
	case SMTP_AUTH_LOGIN_USER:
	case SMTP_AUTH_LOGIN_PASS:
		if (code != 334)
			return neg_fail_line(n, R_UPSTREAM_AUTH_REFUSED, line,
			    len);
		if (n->state == SMTP_AUTH_LOGIN_USER) {
			neg_send_base64(out, "", n->auth_user,
			    strlen(n->auth_user));
			n->state = SMTP_AUTH_LOGIN_PASS;
		} else {
			neg_send_base64(out, "", n->auth_secret,
			    n->auth_secret_len);
			n->state = SMTP_AUTH;
		}
		return NEG_CONTINUE;
	case SMTP_AUTH:
		if (code == 235)
			return smtp_finish(n, out);
		if (code == 334 && (n->auth == AUTH_XOAUTH2 ||
		    n->auth == AUTH_OAUTHBEARER)) {
			/* The error is in the challenge; the answer that ends
			 * the exchange (with a 5xx) is empty for XOAUTH2, a
			 * lone ^A for OAUTHBEARER (RFC 7628 3.2.3). */
			neg_note_xoauth2_error(n, line + 4, len > 4 ? len - 4 : 0);
			neg_send(n, out, "%s", n->auth == AUTH_XOAUTH2 ? "" :
			    "AQ==");
			n->state = SMTP_AUTH_XOAUTH2_ERROR;
			return NEG_CONTINUE;
		}
		return neg_fail_line(n, R_UPSTREAM_AUTH_REFUSED, line, len);
	case SMTP_AUTH_XOAUTH2_ERROR:
		return neg_fail_auth(n, line, len);
	case SMTP_TLS:
	case SMTP_DONE:
		return neg_fail_line(n, R_UPSTREAM_UNSOLICITED, line, len);
	}
	abort();	/* not a state */
}

static enum neg_verdict
smtp_line(struct negotiator *n, const char *line, size_t len,
    struct neg_out *out)
{
	int code;
	bool last, seen;

	if (len < 3 || !is_digit(line[0]) || !is_digit(line[1]) ||
	    !is_digit(line[2]) || (len > 3 && line[3] != ' ' && line[3] != '-'))
		return neg_fail_line(n, R_UPSTREAM_PROTOCOL_ERROR, line, len);
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (n->reply_lines == 0)
		n->reply_code = code;
	else if (code != n->reply_code)
		return neg_fail_line(n, R_UPSTREAM_PROTOCOL_ERROR, line, len);
	if (!neg_reply_add(n, len))
		return neg_fail(n, R_UPSTREAM_PROTOCOL_ERROR, "reply longer "
		    "than %d bytes in state %s", NEG_MAX_REPLY,
		    neg_state_name(n));
	/* EHLO keywords start each line after the first (the domain). */
	if (n->state == SMTP_AUTH_EHLO && n->reply_lines > 1 && len > 4)
		note_keyword(n, line + 4, len - 4);
	else if (n->reply_lines > 1 && len > 4 &&
	    line_starts_with_word(line + 4, len - 4, "STARTTLS"))
		n->keyword_seen = true;
	last = len == 3 || line[3] == ' ';
	if (!last)
		return NEG_CONTINUE;
	seen = n->keyword_seen;
	neg_reply_done(n);
	return smtp_reply(n, code, seen, line, len, out);
}

static enum neg_verdict
smtp_tls_ready(struct negotiator *n, struct neg_out *out)
{
	if (n->auth == AUTH_NONE)
		return smtp_finish(n, out);
	/* RFC 3207: what was learnt before TLS is void; ask again. */
	neg_send(n, out, "EHLO %s", n->name);
	n->state = SMTP_AUTH_EHLO;
	return NEG_CONTINUE;
}

/* ---- client side: STARTTLS offered to the client ----------------------- */

static enum cneg_verdict
smtp_cneg_line(struct cneg *c, const char *line, size_t len,
    struct buf *to_client)
{
	bool args;
	size_t vl = line_verb(line, len, &args);

#define IS(word)	(vl == strlen(word) && strncasecmp(line, word, vl) == 0)
	if (IS("EHLO")) {
		if (!args)
			proto_say(to_client, "501 5.5.4 Syntax: EHLO hostname");
		else
			proto_say(to_client, "250-%s\r\n250-PIPELINING\r\n"
			    "250-ENHANCEDSTATUSCODES\r\n250 STARTTLS", c->name);
	} else if (IS("HELO")) {
		if (!args)
			proto_say(to_client, "501 5.5.4 Syntax: HELO hostname");
		else
			proto_say(to_client, "250 %s", c->name);
	} else if (IS("STARTTLS")) {
		if (vl != len) {
			proto_say(to_client, "501 5.5.4 Syntax: STARTTLS");
			return cneg_refused(c) ? CNEG_FAIL : CNEG_CONTINUE;
		}
		proto_say(to_client, "220 2.0.0 Ready to start TLS");
		return CNEG_START_TLS;
	} else if (IS("NOOP") || IS("RSET")) {
		proto_say(to_client, "250 2.0.0 OK");
	} else if (IS("QUIT")) {
		proto_say(to_client, "221 2.0.0 Bye");
		return CNEG_CLOSE;
	} else {
		proto_say(to_client, "530 5.7.0 Must issue a STARTTLS command "
		    "first");
		if (cneg_refused(c)) {
			proto_say(to_client, "421 4.7.0 Too many errors");
			return CNEG_FAIL;
		}
	}
#undef IS
	return CNEG_CONTINUE;
}

const struct cneg_ops smtp_cneg_ops = {
	.max_line = SMTP_MAX_LINE,
	.line = smtp_cneg_line,
};

/*
 * The server answers a command we sent and reads the next one: after EHLO,
 * and after AUTH PLAIN or the answer that ends a refused XOAUTH2 /
 * OAUTHBEARER.  Not before the greeting, around STARTTLS, or where its
 * answer can be a 334 (AUTH LOGIN's prompts, a token's error challenge):
 * QUIT would then be read as a SASL response.
 */
static bool
smtp_may_say_goodbye(const struct negotiator *n)
{
	switch ((enum smtp_state)n->state) {
	case SMTP_EHLO:
	case SMTP_AUTH_EHLO:
	case SMTP_AUTH_XOAUTH2_ERROR:
		return true;
	case SMTP_AUTH:
		return n->auth == AUTH_PLAIN;
	case SMTP_GREETING:
	case SMTP_STARTTLS:
	case SMTP_TLS:
	case SMTP_AUTH_LOGIN_USER:
	case SMTP_AUTH_LOGIN_PASS:
	case SMTP_DONE:
		return false;
	}
	abort();	/* not a state */
}

const struct neg_ops smtp_ops = {
	.state_names = smtp_state_names,
	.max_line = SMTP_MAX_LINE,
	.line = smtp_line,
	.tls_ready = smtp_tls_ready,
	.may_say_goodbye = smtp_may_say_goodbye,
	.goodbye = "QUIT",
};

/* The device's login (accounts) is driven by front.c, line by line; the
 * dialogue object keeps its credentials and gives its replies. */
const struct login_ops smtp_login_ops = {
	.literals = false,
	.max_line = SMTP_MAX_LINE,
	.command = NULL,
};

/* What the proxy says to an SMTP client (see negotiate.h). */
const struct proto_text smtp_text = {
	.greeting = "220 %s ESMTP mailproxy ready",
	.too_long = "500 5.5.2 Line too long",
	.timeout = "421 4.4.2 Timeout: closing connection",
	.syntax_error = "501 5.5.2 Syntax error: NUL byte in command",
	.too_many = "421 4.7.0 Too many connections from your address",
	.tls_in_tls = "421 4.7.0 mailproxy: TLS is already active, closing "
	    "connection",
	.told = {
		[TELL_UNREACHABLE] = "421 4.4.1 mailproxy: upstream unavailable, "
		    "try again later",
		[TELL_INSECURE] = "421 4.7.0 mailproxy: no secure connection to "
		    "the server, try again later",
		[TELL_AUTH] = "421 4.7.0 mailproxy: the server refused the "
		    "proxy's login, try again later",
		[TELL_LOCAL] = "421 4.3.0 mailproxy: temporary local problem, "
		    "try again later",
	},
	.login_greeting = "220 %s ESMTP mailproxy ready",
	.sasl_go_on = "334 ",
	.auth_ok = "235 2.7.0 Authentication successful",
	.auth_failed = "535 5.7.8 Authentication credentials invalid",
	.auth_unavailable = "454 4.7.0 mailproxy: the server refused the login, "
	    "try again later",
	.auth_cancelled = "501 5.7.0 Authentication aborted",
	.auth_mechanism = "504 5.5.4 Unrecognized authentication type",
	.auth_syntax = "501 5.5.2 Invalid SASL PLAIN or LOGIN response",
	.auth_blocked = "421 4.7.0 Too many authentication failures",
};
