/*
 * pop3: upstream STARTTLS for POP3 (RFC 2595 STLS, RFC 2449 CAPA).
 *
 *   GREETING +OK -> CAPA (+OK, lines, ".": STLS listed) -> STLS +OK
 *   -> [TLS] -> the client gets "+OK ready".
 *   A server without CAPA (-ERR) is sent STLS all the same.
 *
 * With a login (upstream_auth = accounts), once TLS is up: USER, PASS
 * (a password) or AUTH XOAUTH2, "+", the token's SASL string (RFC 5034
 * allows an initial response only within 255 octets, and tokens are
 * kilobytes: Microsoft documents this form; a second "+" carries the
 * error, answered with an empty line) -> +OK.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "line.h"
#include "neg_impl.h"

enum pop3_state { POP3_GREETING, POP3_CAPA, POP3_CAPA_LIST, POP3_STLS,
    POP3_TLS, POP3_USER, POP3_PASS, POP3_AUTH_GO, POP3_AUTH, POP3_AUTH_ERROR,
    POP3_DONE };

static const char *const pop3_state_names[] = {
	"greeting", "capa", "capa-list", "stls", "tls-handshake", "user",
	"pass", "auth-go", "auth", "auth-error", "done",
};

/* RFC 2449: responses up to 512 octets with CRLF. */
#define POP3_MAX_LINE	512

/* TLS is up: log in, or hand over to the client. */
static enum neg_verdict
pop3_login(struct negotiator *n, struct neg_out *out)
{
	if (n->auth == AUTH_NONE) {
		n->state = POP3_DONE;
		if (n->greet)
			neg_reply_client(out, "+OK ready");
		return NEG_RELAY;
	}
	if (n->auth == AUTH_XOAUTH2) {
		neg_send(n, out, "AUTH XOAUTH2");
		n->state = POP3_AUTH_GO;
	} else {
		neg_send(n, out, "USER %s", n->auth_user);
		n->state = POP3_USER;
	}
	return NEG_CONTINUE;
}

/* A reply during the login. */
static enum neg_verdict
pop3_login_reply(struct negotiator *n, const char *line, size_t len,
    struct neg_out *out)
{
	bool ok = line_starts_with_word(line, len, "+OK");
	bool go_on = !ok && len >= 1 && line[0] == '+';

	switch ((enum pop3_state)n->state) {
	case POP3_AUTH_GO:		/* "+": now the token */
		if (!go_on)
			return neg_fail_auth(n, line, len);
		if (neg_send_sasl(n, out, "") < 0)
			return neg_fail(n, R_OUT_OF_MEMORY, "building AUTH");
		n->state = POP3_AUTH;
		return NEG_CONTINUE;
	case POP3_AUTH:
		if (ok)
			break;
		if (!go_on)
			return neg_fail_auth(n, line, len);
		/* XOAUTH2's error challenge: an empty answer ends it. */
		neg_note_xoauth2_error(n, line + (len > 1 ? 2 : 1),
		    len > 1 ? len - 2 : 0);
		neg_send(n, out, "%s", "");
		n->state = POP3_AUTH_ERROR;
		return NEG_CONTINUE;
	case POP3_USER:
		if (!ok)
			return neg_fail_auth(n, line, len);
		neg_send_secret(out, "PASS ", n->auth_secret,
		    n->auth_secret_len, "");
		n->state = POP3_PASS;
		return NEG_CONTINUE;
	case POP3_PASS:
		if (!ok)
			return neg_fail_auth(n, line, len);
		break;
	default:			/* AUTH_ERROR: the refusal */
		return neg_fail_auth(n, line, len);
	}
	n->state = POP3_DONE;
	return NEG_RELAY;
}

static enum neg_verdict
pop3_line(struct negotiator *n, const char *line, size_t len,
    struct neg_out *out)
{
	bool ok = line_starts_with_word(line, len, "+OK");
	bool err = line_starts_with_word(line, len, "-ERR");

	switch ((enum pop3_state)n->state) {
	case POP3_GREETING:
		if (!ok)
			return neg_fail_line(n, err ? R_UPSTREAM_REFUSED :
			    R_UPSTREAM_BAD_GREETING, line, len);
		if (!n->starttls && n->auth != AUTH_NONE)
			return pop3_login(n, out);	/* implicit TLS */
		if (!n->starttls) {
			n->state = POP3_DONE;
			return NEG_RELAY;
		}
		neg_send(n, out, "CAPA");
		n->state = POP3_CAPA;
		return NEG_CONTINUE;
	case POP3_CAPA:
		if (err) {
			/* CAPA is optional (RFC 2449): an old server may still
			 * take STLS.  Tried; refused means fail closed. */
			neg_reply_done(n);
			neg_send(n, out, "STLS");
			n->state = POP3_STLS;
			return NEG_CONTINUE;
		}
		if (!ok)
			return neg_fail_line(n, R_UPSTREAM_PROTOCOL_ERROR, line,
			    len);
		neg_reply_done(n);
		n->state = POP3_CAPA_LIST;
		return NEG_CONTINUE;
	case POP3_CAPA_LIST:
		if (len == 1 && line[0] == '.') {
			bool seen = n->keyword_seen;
			neg_reply_done(n);
			if (!seen)
				return neg_fail(n, R_UPSTREAM_NO_STARTTLS,
				    "STLS is not in the CAPA list");
			neg_send(n, out, "STLS");
			n->state = POP3_STLS;
			return NEG_CONTINUE;
		}
		if (!neg_reply_add(n, len))
			return neg_fail(n, R_UPSTREAM_PROTOCOL_ERROR, "CAPA "
			    "list longer than %d bytes", NEG_MAX_REPLY);
		if (line_starts_with_word(line, len, "STLS"))
			n->keyword_seen = true;
		return NEG_CONTINUE;
	case POP3_STLS:
		if (!ok)
			return neg_fail_line(n, err ?
			    R_UPSTREAM_STARTTLS_REFUSED :
			    R_UPSTREAM_PROTOCOL_ERROR, line, len);
		n->state = POP3_TLS;
		return NEG_START_TLS;
	case POP3_USER:
	case POP3_PASS:
	case POP3_AUTH_GO:
	case POP3_AUTH:
	case POP3_AUTH_ERROR:
		return pop3_login_reply(n, line, len, out);
	case POP3_TLS:
	case POP3_DONE:
		return neg_fail_line(n, R_UPSTREAM_UNSOLICITED, line, len);
	}
	abort();	/* not a state */
}

static enum neg_verdict
pop3_tls_ready(struct negotiator *n, struct neg_out *out)
{
	return pop3_login(n, out);
}

/* ---- client side: STLS offered to the client --------------------------- */

static enum cneg_verdict
pop3_cneg_line(struct cneg *c, const char *line, size_t len,
    struct buf *to_client)
{
	if (line_starts_with_word(line, len, "CAPA") && len == 4) {
		proto_say(to_client, "+OK Capability list follows\r\nSTLS\r\n"
		    "IMPLEMENTATION mailproxy\r\n.");
	} else if (line_starts_with_word(line, len, "STLS") && len == 4) {
		proto_say(to_client, "+OK Begin TLS negotiation");
		return CNEG_START_TLS;
	} else if (line_starts_with_word(line, len, "QUIT")) {
		proto_say(to_client, "+OK Bye");
		return CNEG_CLOSE;
	} else if (line_starts_with_word(line, len, "USER") ||
	    line_starts_with_word(line, len, "PASS") ||
	    line_starts_with_word(line, len, "APOP") ||
	    line_starts_with_word(line, len, "AUTH")) {
		proto_say(to_client, "-ERR [AUTH] Must issue STLS first");
		return cneg_refused(c) ? CNEG_FAIL : CNEG_CONTINUE;
	} else {
		proto_say(to_client, "-ERR Command not permitted before STLS");
		return cneg_refused(c) ? CNEG_FAIL : CNEG_CONTINUE;
	}
	return CNEG_CONTINUE;
}

const struct cneg_ops pop3_cneg_ops = {
	.max_line = POP3_MAX_LINE,
	.line = pop3_cneg_line,
};

/*
 * A command is pending whose answer is +OK or -ERR: CAPA, USER, PASS, the
 * empty answer that ends a refused XOAUTH2.  Not before the greeting,
 * around STLS, or where a "+" is (or may be) next: QUIT would be read as
 * a SASL response.
 */
static bool
pop3_may_say_goodbye(const struct negotiator *n)
{
	switch ((enum pop3_state)n->state) {
	case POP3_CAPA:
	case POP3_CAPA_LIST:
	case POP3_USER:
	case POP3_PASS:
	case POP3_AUTH_ERROR:
		return true;
	case POP3_GREETING:
	case POP3_STLS:
	case POP3_TLS:
	case POP3_AUTH_GO:
	case POP3_AUTH:
	case POP3_DONE:
		return false;
	}
	abort();	/* not a state */
}

const struct neg_ops pop3_ops = {
	.state_names = pop3_state_names,
	.max_line = POP3_MAX_LINE,
	.line = pop3_line,
	.tls_ready = pop3_tls_ready,
	.may_say_goodbye = pop3_may_say_goodbye,
	.goodbye = "QUIT",
};

/* ---- client side: the client's login to the proxy (login.h) ----------- */

/* Commands are short (RFC 2449: 255 octets); AUTH's initial response is
 * base64 of a name and a password. */
#define POP3_LOGIN_MAX_LINE	2048

/* AUTH PLAIN [initial-response]; AUTH alone lists the mechanisms. */
static enum login_verdict
pop3_auth(struct login *l, const char *args, size_t len, bool given,
    struct buf *to_client)
{
	if (!given) {
		proto_say(to_client, "+OK\r\nPLAIN\r\n.");
		return LOGIN_CONTINUE;
	}
	return login_sasl_start(l, args, len, to_client);
}

static enum login_verdict
pop3_login_command(struct login *l, const char *line, size_t len,
    struct buf *to_client)
{
	bool args;
	size_t vl = line_verb(line, len, &args), ul = strlen(l->user);

#define IS(word)	(vl == strlen(word) && strncasecmp(line, word, vl) == 0)
	if (IS("CAPA") && !args)
		proto_say(to_client, "+OK Capability list follows\r\nUSER\r\n"
		    "SASL PLAIN\r\nIMPLEMENTATION mailproxy\r\n.");
	else if (IS("QUIT")) {
		proto_say(to_client, "+OK Bye");
		return LOGIN_CLOSE;
	} else if (IS("USER") && args && len - 5 <= LOGIN_MAX_USER) {
		memcpy(l->user, line + 5, len - 5);
		l->user[len - 5] = '\0';
		proto_say(to_client, "+OK");
	} else if (IS("PASS") && args && ul > 0) {
		/* The password is the rest of the line, blanks included. */
		enum login_verdict v = login_credentials(l, l->user, ul,
		    line + 5, len - 5, to_client);
		if (v != LOGIN_CHECK)
			l->user[0] = '\0';	/* USER again */
		return v;
	} else if (IS("AUTH"))
		return pop3_auth(l, line + vl + (args ? 1 : 0), len - vl -
		    (args ? 1 : 0), args, to_client);
	else {
		proto_say(to_client, "-ERR %s", IS("STLS") ? "TLS is already "
		    "active" : IS("PASS") ? "[AUTH] USER first" :
		    "Command not permitted before login");
		return login_error(l);
	}
#undef IS
	return LOGIN_CONTINUE;
}

const struct login_ops pop3_login_ops = {
	.literals = false,
	.max_line = POP3_LOGIN_MAX_LINE,
	.command = pop3_login_command,
};

/* What the proxy says to an POP3 client (see negotiate.h). */
const struct proto_text pop3_text = {
	.greeting = "+OK %s POP3 mailproxy ready",
	.too_long = "-ERR Line too long",
	.timeout = "-ERR Timeout: closing connection",
	.syntax_error = "-ERR Syntax error: NUL byte in command",
	.too_many = "-ERR [IN-USE] Too many connections from your address",
	.tls_in_tls = "-ERR [SYS/PERM] mailproxy: TLS is already active",
	.told = {
		[TELL_UNREACHABLE] = "-ERR [SYS/TEMP] mailproxy: upstream "
		    "unavailable",
		[TELL_INSECURE] = "-ERR [SYS/TEMP] mailproxy: no secure "
		    "connection to the server",
		[TELL_AUTH] = "-ERR [SYS/TEMP] mailproxy: the server refused the "
		    "proxy's login",
		[TELL_LOCAL] = "-ERR [SYS/TEMP] mailproxy: temporary local "
		    "problem",
	},
	.login_greeting = "+OK %s POP3 mailproxy ready",
	.sasl_go_on = "+ ",
	.auth_ok = "+OK Logged in",
	.auth_failed = "-ERR [AUTH] Authentication failed",
	.auth_unavailable = "-ERR [SYS/TEMP] mailproxy: the server refused the "
	    "login, try again later",
	.auth_cancelled = "-ERR Authentication cancelled",
	.auth_mechanism = "-ERR Unsupported authentication mechanism",
	.auth_syntax = "-ERR Invalid SASL PLAIN response or credentials",
	.auth_blocked = "-ERR [AUTH] Too many authentication failures",
};
