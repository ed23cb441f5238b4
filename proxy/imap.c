/*
 * imap: upstream STARTTLS for IMAP (RFC 3501 / 9051, RFC 2595).
 *
 *   GREETING "* OK" (PREAUTH and BYE refused)
 *   -> [CAPABILITY, when the greeting carried no capability list]
 *   -> tagged STARTTLS, tagged OK -> [TLS] -> CAPABILITY inside TLS
 *   -> the client gets "* OK [CAPABILITY <post-TLS list>] ready".
 *
 * With a login (upstream_auth = accounts), once TLS is up (after STARTTLS,
 * or the greeting of an implicit-TLS upstream):
 *
 *   CAPABILITY -> LOGIN "user" "password" (printable ASCII, no
 *   LOGINDISABLED) | AUTHENTICATE PLAIN | AUTHENTICATE XOAUTH2 (a token),
 *   with SASL-IR when offered, else after the "+" continuation
 *   -> tagged OK; its [CAPABILITY ...] is kept for the client's own OK.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/mem.h>

#include "line.h"
#include "neg_impl.h"

enum imap_state { IMAP_GREETING, IMAP_CAPABILITY, IMAP_STARTTLS, IMAP_TLS,
    IMAP_POST_CAPABILITY, IMAP_LOGIN, IMAP_AUTH_GO_ON, IMAP_AUTH_ERROR,
    IMAP_DONE };

static const char *const imap_state_names[] = {
	"greeting", "capability", "starttls", "tls-handshake",
	"post-tls-capability", "login", "authenticate-continue",
	"authenticate-error", "done",
};

/* Generous for long capability lists, still bounded. */
#define IMAP_MAX_LINE	4096

static void
send_tagged(struct negotiator *n, struct neg_out *out, const char *command)
{
	n->tag++;
	neg_send(n, out, "mp%u %s", n->tag, command);
}

/*
 * If line is the tagged completion of our last command, returns the word
 * after the tag ("OK", "NO", "BAD") position, else NULL.
 */
static const char *
tagged_status(const struct negotiator *n, const char *line, size_t len)
{
	char tag[16];
	int tl = snprintf(tag, sizeof(tag), "mp%u ", n->tag);

	if (tl < 0 || len < (size_t)tl || strncmp(line, tag, (size_t)tl) != 0)
		return NULL;
	return line + tl;
}

/* Keeps the post-TLS capabilities, without STARTTLS (meaningless now). */
static void
keep_capabilities(struct negotiator *n, const char *caps, size_t len)
{
	size_t i = 0, o = 0;

	while (i < len) {
		size_t start = i, wl;
		while (i < len && caps[i] != ' ')
			i++;
		wl = i - start;
		if (wl > 0 && !(wl == 8 && strncasecmp(caps + start,
		    "STARTTLS", 8) == 0) && o + wl + 1 < sizeof(n->caps)) {
			if (o > 0)
				n->caps[o++] = ' ';
			memcpy(n->caps + o, caps + start, wl);
			o += wl;
		}
		while (i < len && caps[i] == ' ')
			i++;
	}
	n->caps[o] = '\0';
}

static enum neg_verdict
imap_untagged(struct negotiator *n, const char *line, size_t len)
{
	const char *rest = line + 2;
	size_t rlen = len - 2;

	if (line_starts_with_word(rest, rlen, "BYE"))
		return neg_fail_line(n, R_UPSTREAM_REFUSED, line, len);
	if (!neg_reply_add(n, len))
		return neg_fail(n, R_UPSTREAM_PROTOCOL_ERROR, "untagged data "
		    "longer than %d bytes in state %s", NEG_MAX_REPLY,
		    neg_state_name(n));
	if ((n->state == IMAP_POST_CAPABILITY || n->state == IMAP_LOGIN) &&
	    line_starts_with_word(rest, rlen, "CAPABILITY"))
		keep_capabilities(n, rest + 10, rlen - 10);
	return NEG_CONTINUE;
}

static enum neg_verdict
imap_greeting(struct negotiator *n, const char *line, size_t len,
    struct neg_out *out)
{
	if (len < 2 || strncmp(line, "* ", 2) != 0)
		return neg_fail_line(n, R_UPSTREAM_BAD_GREETING, line, len);
	if (line_starts_with_word(line + 2, len - 2, "PREAUTH"))
		return neg_fail_line(n, R_UPSTREAM_PREAUTH, line, len);
	if (!line_starts_with_word(line + 2, len - 2, "OK"))
		return neg_fail_line(n, line_starts_with_word(line + 2, len - 2,
		    "BYE") ? R_UPSTREAM_REFUSED : R_UPSTREAM_BAD_GREETING, line,
		    len);
	if (!n->starttls && n->auth != AUTH_NONE) {
		/* Implicit TLS: log in right away, once the list is known. */
		send_tagged(n, out, "CAPABILITY");
		n->state = IMAP_POST_CAPABILITY;
		return NEG_CONTINUE;
	}
	if (!n->starttls) {
		n->state = IMAP_DONE;
		return NEG_RELAY;
	}
	/* Capabilities before TLS are never trusted: we only learn whether
	 * the server had a list; STARTTLS is tried either way. */
	if (len > 6 && strncasecmp(line + 5, "[CAPABILITY ", 12) == 0) {
		send_tagged(n, out, "STARTTLS");
		n->state = IMAP_STARTTLS;
	} else {
		send_tagged(n, out, "CAPABILITY");
		n->state = IMAP_CAPABILITY;
	}
	return NEG_CONTINUE;
}

/* Is every byte printable ASCII (a quoted string can carry it)? */
static bool
printable(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] < 0x20 || p[i] > 0x7e)
			return false;
	return true;
}

/* p as the inside of a quoted string ("\"" and "\\" escaped); malloc'ed
 * (a secret: the caller wipes it), NULL when out of memory. */
static char *
quoted(const char *p, size_t len, size_t *outlen)
{
	char *q = malloc(2 * len + 1);
	size_t o = 0;

	if (q == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '"' || p[i] == '\\')
			q[o++] = '\\';
		q[o++] = p[i];
	}
	*outlen = o;
	return q;
}

/* LOGIN "user" "password"; the line is built and wiped here. */
static enum neg_verdict
send_login(struct negotiator *n, struct neg_out *out)
{
	size_t ul, pl;
	char *user = quoted(n->auth_user, strlen(n->auth_user), &ul);
	char *pw = quoted(n->auth_secret, n->auth_secret_len, &pl);
	char prefix[600];

	if (user == NULL || pw == NULL || ul > 520) {
		free(user);
		if (pw != NULL)
			OPENSSL_cleanse(pw, pl);
		free(pw);
		return neg_fail(n, R_OUT_OF_MEMORY, "building LOGIN");
	}
	n->tag++;
	snprintf(prefix, sizeof(prefix), "mp%u LOGIN \"%.*s\" \"", n->tag,
	    (int)ul, user);
	neg_send_secret(out, prefix, pw, pl, "\"");
	OPENSSL_cleanse(pw, pl);
	free(pw);
	free(user);
	return NEG_CONTINUE;
}

/*
 * The post-TLS capabilities are known: log in.  LOGIN with quoted strings
 * when the credentials are printable and the server allows it, else
 * AUTHENTICATE PLAIN; a token always with AUTHENTICATE XOAUTH2.
 */
static enum neg_verdict
imap_send_login(struct negotiator *n, struct neg_out *out)
{
	size_t cl = strlen(n->caps);
	bool ir = line_has_word(n->caps, cl, "SASL-IR");
	const char *mech = n->auth == AUTH_XOAUTH2 ? "XOAUTH2" : "PLAIN";
	char cap[32], cmd[64];
	enum neg_verdict v = NEG_CONTINUE;

	snprintf(cap, sizeof(cap), "AUTH=%s", mech);
	n->state = IMAP_LOGIN;
	if (n->auth != AUTH_XOAUTH2 && !line_has_word(n->caps, cl,
	    "LOGINDISABLED") && printable(n->auth_user, strlen(n->auth_user)) &&
	    printable(n->auth_secret, n->auth_secret_len))
		v = send_login(n, out);
	else if (!line_has_word(n->caps, cl, cap))
		return neg_fail(n, R_UPSTREAM_AUTH_UNAVAILABLE, "%s is not in "
		    "the capabilities after TLS", cap);
	else {
		n->tag++;
		snprintf(cmd, sizeof(cmd), "mp%u AUTHENTICATE %s%s", n->tag,
		    mech, ir ? " " : "");
		if (!ir) {
			neg_send(n, out, "%s", cmd);
			n->state = IMAP_AUTH_GO_ON;
		} else if (neg_send_sasl(n, out, cmd) < 0)
			return neg_fail(n, R_OUT_OF_MEMORY, "building AUTHENTICATE");
	}
	n->caps[0] = '\0';	/* the list after the login is the client's */
	return v;
}

/* A "+" continuation during the login. */
static enum neg_verdict
imap_continuation(struct negotiator *n, const char *line, size_t len,
    struct neg_out *out)
{
	if (n->state == IMAP_AUTH_GO_ON) {
		if (neg_send_sasl(n, out, "") < 0)
			return neg_fail(n, R_OUT_OF_MEMORY, "building AUTHENTICATE");
		n->state = IMAP_LOGIN;
		return NEG_CONTINUE;
	}
	if (n->state == IMAP_LOGIN && n->auth == AUTH_XOAUTH2) {
		/* The error is in the challenge; an empty answer ends the
		 * exchange (with a tagged NO). */
		neg_note_xoauth2_error(n, line + (len > 1 ? 2 : 1),
		    len > 1 ? len - 2 : 0);
		neg_send(n, out, "%s", "");
		n->state = IMAP_AUTH_ERROR;
		return NEG_CONTINUE;
	}
	return neg_fail_line(n, R_UPSTREAM_PROTOCOL_ERROR, line, len);
}

/* The login's tagged OK: keep its [CAPABILITY ...] for the client. */
static enum neg_verdict
imap_logged_in(struct negotiator *n, const char *status, size_t len)
{
	const char *code = status + 2, *end = status + len;

	while (code < end && *code == ' ')
		code++;
	if (end - code > 12 && strncasecmp(code, "[CAPABILITY ", 12) == 0) {
		const char *close = memchr(code + 12, ']', (size_t)(end - code -
		    12));
		if (close != NULL)
			keep_capabilities(n, code + 12, (size_t)(close - code -
			    12));
	}
	n->state = IMAP_DONE;
	return NEG_RELAY;
}

static enum neg_verdict
imap_line(struct negotiator *n, const char *line, size_t len,
    struct neg_out *out)
{
	const char *status;
	uint64_t size;

	if (line_imap_literal(line, len, &size))
		return neg_fail(n, R_UPSTREAM_PROTOCOL_ERROR, "IMAP literal in "
		    "state %s", neg_state_name(n));
	if (n->state == IMAP_GREETING)
		return imap_greeting(n, line, len, out);
	if (n->state == IMAP_TLS || n->state == IMAP_DONE)
		return neg_fail_line(n, R_UPSTREAM_UNSOLICITED, line, len);
	if (len >= 2 && strncmp(line, "* ", 2) == 0)
		return imap_untagged(n, line, len);
	if (len >= 1 && line[0] == '+')
		return imap_continuation(n, line, len, out);
	if ((status = tagged_status(n, line, len)) == NULL)
		return neg_fail_line(n, R_UPSTREAM_PROTOCOL_ERROR, line, len);
	len -= (size_t)(status - line);
	neg_reply_done(n);
	if (n->state == IMAP_AUTH_ERROR || (n->state == IMAP_LOGIN &&
	    !line_starts_with_word(status, len, "OK")))
		return neg_fail_auth(n, status, len);
	if (!line_starts_with_word(status, len, "OK"))
		return neg_fail_line(n, n->state == IMAP_STARTTLS ?
		    R_UPSTREAM_STARTTLS_REFUSED : R_UPSTREAM_PROTOCOL_ERROR,
		    status, len);
	switch ((enum imap_state)n->state) {
	case IMAP_CAPABILITY:
		send_tagged(n, out, "STARTTLS");
		n->state = IMAP_STARTTLS;
		return NEG_CONTINUE;
	case IMAP_STARTTLS:
		n->state = IMAP_TLS;
		return NEG_START_TLS;
	case IMAP_POST_CAPABILITY:
		if (n->auth != AUTH_NONE)
			return imap_send_login(n, out);
		n->state = IMAP_DONE;
		if (n->caps[0] != '\0')
			neg_reply_client(out, "* OK [CAPABILITY %s] ready",
			    n->caps);
		else
			neg_reply_client(out, "* OK ready");
		return NEG_RELAY;
	case IMAP_LOGIN:
		return imap_logged_in(n, status, len);
	case IMAP_AUTH_GO_ON:	/* a tagged reply instead of "+" */
		return neg_fail_auth(n, status, len);
	case IMAP_GREETING:
	case IMAP_TLS:
	case IMAP_AUTH_ERROR:
	case IMAP_DONE:
		break;
	}
	abort();	/* handled above */
}

static enum neg_verdict
imap_tls_ready(struct negotiator *n, struct neg_out *out)
{
	if (!n->greet && n->auth == AUTH_NONE) {
		n->state = IMAP_DONE;
		return NEG_RELAY;
	}
	send_tagged(n, out, "CAPABILITY");
	n->state = IMAP_POST_CAPABILITY;
	return NEG_CONTINUE;
}

/*
 * A tagged command is pending and its answer cannot be a continuation:
 * CAPABILITY, LOGIN or AUTHENTICATE PLAIN with its initial response, the
 * empty answer that ends a refused XOAUTH2.  Not before the greeting,
 * around STARTTLS, or where a "+" is (or may be) next: LOGOUT would be
 * read as a SASL response.
 */
static bool
imap_may_say_goodbye(const struct negotiator *n)
{
	switch ((enum imap_state)n->state) {
	case IMAP_CAPABILITY:
	case IMAP_POST_CAPABILITY:
	case IMAP_AUTH_ERROR:
		return true;
	case IMAP_LOGIN:
		return n->auth != AUTH_XOAUTH2;
	case IMAP_GREETING:
	case IMAP_STARTTLS:
	case IMAP_TLS:
	case IMAP_AUTH_GO_ON:
	case IMAP_DONE:
		return false;
	}
	abort();	/* not a state */
}

const struct neg_ops imap_ops = {
	.state_names = imap_state_names,
	.max_line = IMAP_MAX_LINE,
	.line = imap_line,
	.tls_ready = imap_tls_ready,
	.may_say_goodbye = imap_may_say_goodbye,
	.goodbye = "LOGOUT",
};

/* ---- client side: STARTTLS offered to the client ----------------------- */

#define IMAP_PRETLS_CAPS	"IMAP4rev1 STARTTLS LOGINDISABLED"

static enum cneg_verdict
imap_cneg_line(struct cneg *c, const char *line, size_t len,
    struct buf *to_client)
{
	bool args;
	size_t tl = line_verb(line, len, &args);	/* the tag */
	const char *cmd;
	size_t cl;
	uint64_t size;

	/* A literal's bytes (sent at once with {n+}) would be read as
	 * commands: refused, and the session ends before any is parsed. */
	if (line_imap_literal(line, len, &size)) {
		bool tagged = tl > 0 && args && line[0] != '*' && line[0] != '+';
		proto_say(to_client, "%.*s BAD Literals are not accepted before "
		    "STARTTLS\r\n* BYE Closing connection", tagged ? (int)tl : 1,
		    tagged ? line : "*");
		c->reason = R_CLIENT_LITERAL_BEFORE_STARTTLS;
		return CNEG_FAIL;
	}
	if (tl == 0 || !args || line[0] == '*' || line[0] == '+') {
		proto_say(to_client, "* BAD Invalid command");
		return cneg_refused(c) ? CNEG_FAIL : CNEG_CONTINUE;
	}
	cmd = line + tl + 1;
	cl = len - tl - 1;
#define IS(word)	(line_starts_with_word(cmd, cl, word))
	if (IS("CAPABILITY"))
		proto_say(to_client, "* CAPABILITY " IMAP_PRETLS_CAPS "\r\n"
		    "%.*s OK CAPABILITY completed", (int)tl, line);
	else if (IS("NOOP"))
		proto_say(to_client, "%.*s OK NOOP completed", (int)tl, line);
	else if (IS("LOGOUT")) {
		proto_say(to_client, "* BYE Logging out\r\n%.*s OK LOGOUT "
		    "completed", (int)tl, line);
		return CNEG_CLOSE;
	} else if (IS("STARTTLS") && cl == 8) {
		proto_say(to_client, "%.*s OK Begin TLS negotiation now",
		    (int)tl, line);
		return CNEG_START_TLS;
	} else if (IS("LOGIN") || IS("AUTHENTICATE")) {
		proto_say(to_client, "%.*s NO [PRIVACYREQUIRED] Use STARTTLS "
		    "first", (int)tl, line);
		return cneg_refused(c) ? CNEG_FAIL : CNEG_CONTINUE;
	} else {
		proto_say(to_client, "%.*s BAD Command not permitted before "
		    "STARTTLS", (int)tl, line);
		return cneg_refused(c) ? CNEG_FAIL : CNEG_CONTINUE;
	}
#undef IS
	return CNEG_CONTINUE;
}

const struct cneg_ops imap_cneg_ops = {
	.max_line = IMAP_MAX_LINE,
	.line = imap_cneg_line,
};

/* ---- client side: the client's login to the proxy (login.h) ----------- */

/* Inside TLS, before the login: what the proxy itself offers. */
#define IMAP_LOGIN_CAPS	"IMAP4rev1 AUTH=PLAIN SASL-IR LITERAL+"

/* RFC 3501 ATOM-CHAR, plus ']' (ASTRING-CHAR). */
static bool
atom_char(char c)
{
	return c > 0x20 && c < 0x7f && strchr("(){%*\"\\", c) == NULL;
}

/*
 * An astring at *p: an atom, a quoted string (\" and \\ escaped) or a
 * literal (its "{n}" or "{n+}", CRLF and n bytes, as login.c keeps it).
 */
static bool
imap_astring(const char **p, const char *end, char *out, size_t cap,
    size_t *outlen)
{
	const char *s = *p, *digits;
	uint64_t n = 0;
	size_t o = 0;

	if (s < end && *s == '"') {
		for (s++; s < end && *s != '"'; s++) {
			if (*s == '\\' && (++s == end || (*s != '"' && *s != '\\')))
				return false;
			if (*s == '\r' || *s == '\n' || o == cap)
				return false;
			out[o++] = *s;
		}
		if (s++ == end)
			return false;
	} else if (s < end && *s == '{') {
		for (digits = ++s; s < end && *s >= '0' && *s <= '9' &&
		    s - digits < 10; s++)
			n = n * 10 + (uint64_t)(*s - '0');
		if (s == digits)
			return false;
		if (s < end && *s == '+')
			s++;
		if (end - s < 3 || memcmp(s, "}\r\n", 3) != 0 ||
		    (uint64_t)(end - s - 3) < n || n > cap)
			return false;
		memcpy(out, s + 3, (size_t)n);
		o = (size_t)n;
		s += 3 + n;
	} else {
		while (s < end && atom_char(*s) && o < cap)
			out[o++] = *s++;
		if (o == 0 || (s < end && *s != ' '))
			return false;
	}
	*outlen = o;
	*p = s;
	return true;
}

/* LOGIN user password: strings, quoted strings or literals. */
static enum login_verdict
imap_login(struct login *l, const char *args, const char *end,
    struct buf *to_client)
{
	char user[LOGIN_MAX_USER + 1], pw[LOGIN_MAX_PASSWORD + 1];
	size_t ul, pl;
	enum login_verdict v;

	if (!imap_astring(&args, end, user, sizeof(user) - 1, &ul) ||
	    args == end || *args++ != ' ' ||
	    !imap_astring(&args, end, pw, sizeof(pw) - 1, &pl) || args != end) {
		OPENSSL_cleanse(pw, sizeof(pw));
		proto_say(to_client, "%.*s BAD Syntax: LOGIN user password",
		    (int)l->taglen, l->tag);
		return login_error(l);
	}
	v = login_credentials(l, user, ul, pw, pl, to_client);
	OPENSSL_cleanse(pw, sizeof(pw));
	return v;
}

static enum login_verdict
imap_login_command(struct login *l, const char *line, size_t len,
    struct buf *to_client)
{
	bool args, more;
	size_t tl = line_verb(line, len, &args), cl, vl;
	const char *cmd;

	for (size_t i = 0; i < tl; i++)
		if (!atom_char(line[i]) || line[i] == '+')
			tl = 0;
	if (tl == 0 || tl >= sizeof(l->tag) || !args) {
		proto_say(to_client, "* BAD Invalid tag");
		return login_error(l);
	}
	memcpy(l->tag, line, tl);
	l->taglen = tl;
	cmd = line + tl + 1;
	cl = len - tl - 1;
	vl = line_verb(cmd, cl, &more);
#define IS(word)	(vl == strlen(word) && strncasecmp(cmd, word, vl) == 0)
	if (IS("CAPABILITY") && !more)
		proto_say(to_client, "* CAPABILITY " IMAP_LOGIN_CAPS "\r\n"
		    "%.*s OK CAPABILITY completed", (int)tl, line);
	else if (IS("NOOP") && !more)
		proto_say(to_client, "%.*s OK NOOP completed", (int)tl, line);
	else if (IS("LOGOUT") && !more) {
		proto_say(to_client, "* BYE Logging out\r\n%.*s OK LOGOUT "
		    "completed", (int)tl, line);
		return LOGIN_CLOSE;
	} else if (IS("LOGIN") && more)
		return imap_login(l, cmd + vl + 1, line + len, to_client);
	else if (IS("AUTHENTICATE") && more)
		return login_sasl_start(l, cmd + vl + 1, cl - vl - 1, to_client);
	else {
		proto_say(to_client, "%.*s BAD %s", (int)tl, line,
		    IS("STARTTLS") ? "TLS is already active" :
		    "Command not permitted before login");
		return login_error(l);
	}
#undef IS
	return LOGIN_CONTINUE;
}

const struct login_ops imap_login_ops = {
	.literals = true,
	.max_line = IMAP_MAX_LINE,
	.command = imap_login_command,
};

/* What the proxy says to an IMAP client (see negotiate.h). */
const struct proto_text imap_text = {
	.greeting = "* OK [CAPABILITY " IMAP_PRETLS_CAPS "] %s mailproxy ready",
	.too_long = "* BYE Line too long",
	.timeout = "* BYE Timeout: closing connection",
	.syntax_error = "* BAD Syntax error: NUL byte in command",
	.too_many = "* BYE [UNAVAILABLE] Too many connections from your address",
	.tls_in_tls = "%.*s BAD TLS is already active\r\n"
	    "* BYE mailproxy: closing connection",
	.told = {
		[TELL_UNREACHABLE] = "* BYE [UNAVAILABLE] mailproxy: upstream "
		    "unavailable",
		[TELL_INSECURE] = "* BYE [UNAVAILABLE] mailproxy: no secure "
		    "connection to the server",
		[TELL_AUTH] = "* BYE [UNAVAILABLE] mailproxy: the server refused "
		    "the proxy's login",
		[TELL_LOCAL] = "* BYE [UNAVAILABLE] mailproxy: temporary local "
		    "problem",
	},
	.login_greeting = "* OK [CAPABILITY " IMAP_LOGIN_CAPS "] %s mailproxy "
	    "ready",
	.sasl_go_on = "+ ",
	.auth_ok = "%.*s OK Logged in",
	.auth_ok_caps = "%.*s OK [CAPABILITY %s] Logged in",
	.auth_failed = "%.*s NO [AUTHENTICATIONFAILED] Authentication failed",
	.auth_unavailable = "%.*s NO [UNAVAILABLE] mailproxy: the server "
	    "refused the login, try again later",
	.auth_cancelled = "%.*s BAD Authentication cancelled",
	.auth_mechanism = "%.*s NO Unsupported authentication mechanism",
	.auth_syntax = "%.*s BAD Invalid SASL PLAIN response or credentials",
	.auth_blocked = "* BYE Too many authentication failures",
};
