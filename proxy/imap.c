/*
 * imap: upstream STARTTLS for IMAP (RFC 3501 / 9051, RFC 2595).
 *
 *   GREETING "* OK" (PREAUTH and BYE refused)
 *   -> [CAPABILITY, when the greeting carried no capability list]
 *   -> tagged STARTTLS, tagged OK -> [TLS] -> CAPABILITY inside TLS
 *   -> the client gets "* OK [CAPABILITY <post-TLS list>] ready".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "line.h"
#include "neg_impl.h"

enum imap_state { IMAP_GREETING, IMAP_CAPABILITY, IMAP_STARTTLS, IMAP_TLS,
    IMAP_POST_CAPABILITY, IMAP_DONE };

static const char *const imap_state_names[] = {
	"greeting", "capability", "starttls", "tls-handshake",
	"post-tls-capability", "done",
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
	if (n->state == IMAP_POST_CAPABILITY &&
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
	if ((status = tagged_status(n, line, len)) == NULL)
		return neg_fail_line(n, R_UPSTREAM_PROTOCOL_ERROR, line, len);
	len -= (size_t)(status - line);
	neg_reply_done(n);
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
		n->state = IMAP_DONE;
		if (n->caps[0] != '\0')
			neg_reply_client(out, "* OK [CAPABILITY %s] ready",
			    n->caps);
		else
			neg_reply_client(out, "* OK ready");
		return NEG_RELAY;
	case IMAP_GREETING:
	case IMAP_TLS:
	case IMAP_DONE:
		break;
	}
	abort();	/* handled above */
}

static enum neg_verdict
imap_tls_ready(struct negotiator *n, struct neg_out *out)
{
	if (!n->greet) {
		n->state = IMAP_DONE;
		return NEG_RELAY;
	}
	send_tagged(n, out, "CAPABILITY");
	n->state = IMAP_POST_CAPABILITY;
	return NEG_CONTINUE;
}

const struct neg_ops imap_ops = {
	.state_names = imap_state_names,
	.max_line = IMAP_MAX_LINE,
	.line = imap_line,
	.tls_ready = imap_tls_ready,
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
};
