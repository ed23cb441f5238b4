/*
 * smtp: upstream STARTTLS for SMTP (RFC 3207, RFC 5321 reply syntax).
 *
 *   GREETING 220 -> EHLO 250 (STARTTLS advertised) -> STARTTLS 220
 *   -> [TLS] -> the client gets "220 <name> ESMTP ready"; its own EHLO goes
 *   to the server inside TLS.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "line.h"
#include "neg_impl.h"

enum smtp_state { SMTP_GREETING, SMTP_EHLO, SMTP_STARTTLS, SMTP_TLS,
    SMTP_DONE };

static const char *const smtp_state_names[] = {
	"greeting", "ehlo", "starttls", "tls-handshake", "done",
};

/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with CRLF. */
#define SMTP_MAX_LINE	512

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
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
			    "upstream-refused" : "upstream-bad-greeting", line,
			    len);
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
			return neg_fail_line(n, "upstream-ehlo-refused", line,
			    len);
		if (!starttls_seen)
			return neg_fail(n, "upstream-no-starttls", "STARTTLS "
			    "is not in the EHLO reply");
		neg_send(n, out, "STARTTLS");
		n->state = SMTP_STARTTLS;
		return NEG_CONTINUE;
	case SMTP_STARTTLS:
		if (code != 220)
			return neg_fail_line(n, "upstream-starttls-refused",
			    line, len);
		n->state = SMTP_TLS;
		return NEG_START_TLS;
	case SMTP_TLS:
	case SMTP_DONE:
		return neg_fail_line(n, "upstream-unsolicited", line, len);
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
		return neg_fail_line(n, "upstream-protocol-error", line, len);
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (n->reply_lines == 0)
		n->reply_code = code;
	else if (code != n->reply_code)
		return neg_fail_line(n, "upstream-protocol-error", line, len);
	if (!neg_reply_add(n, len))
		return neg_fail(n, "upstream-protocol-error", "reply longer "
		    "than %d bytes in state %s", NEG_MAX_REPLY,
		    neg_state_name(n));
	/* EHLO keywords start each line after the first (the domain). */
	if (n->reply_lines > 1 && len > 4 &&
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
	n->state = SMTP_DONE;
	if (n->greet)
		neg_reply_client(out, "220 %s ESMTP ready", n->name);
	return NEG_RELAY;
}

/* ---- client side: STARTTLS offered to the client ----------------------- */

static enum neg_verdict
smtp_cneg_line(struct cneg *c, const char *line, size_t len,
    struct buf *to_client)
{
	size_t vl = 0;
	bool args;

	while (vl < len && line[vl] != ' ')
		vl++;
	args = vl + 1 < len;	/* something after "VERB " */
#define IS(word)	(vl == strlen(word) && strncasecmp(line, word, vl) == 0)
	if (IS("EHLO")) {
		if (!args)
			cneg_reply(to_client, "501 5.5.4 Syntax: EHLO hostname");
		else
			cneg_reply(to_client, "250-%s\r\n250-PIPELINING\r\n"
			    "250-ENHANCEDSTATUSCODES\r\n250 STARTTLS", c->name);
	} else if (IS("HELO")) {
		if (!args)
			cneg_reply(to_client, "501 5.5.4 Syntax: HELO hostname");
		else
			cneg_reply(to_client, "250 %s", c->name);
	} else if (IS("STARTTLS")) {
		if (vl != len) {
			cneg_reply(to_client, "501 5.5.4 Syntax: STARTTLS");
			return cneg_refused(c) ? NEG_FAIL : NEG_CONTINUE;
		}
		cneg_reply(to_client, "220 2.0.0 Ready to start TLS");
		return NEG_START_TLS;
	} else if (IS("NOOP") || IS("RSET")) {
		cneg_reply(to_client, "250 2.0.0 OK");
	} else if (IS("QUIT")) {
		cneg_reply(to_client, "221 2.0.0 Bye");
		return NEG_CLOSE;
	} else {
		cneg_reply(to_client, "530 5.7.0 Must issue a STARTTLS command "
		    "first");
		if (cneg_refused(c)) {
			cneg_reply(to_client, "421 4.7.0 Too many errors");
			return NEG_FAIL;
		}
	}
#undef IS
	return NEG_CONTINUE;
}

const struct cneg_ops smtp_cneg_ops = {
	.max_line = SMTP_MAX_LINE,
	.greeting = "220 %s ESMTP mailproxy ready",
	.too_long = "500 5.5.2 Line too long",
	.timeout = "421 4.4.2 Timeout: closing connection",
	.line = smtp_cneg_line,
};

const struct neg_ops smtp_ops = {
	.state_names = smtp_state_names,
	.max_line = SMTP_MAX_LINE,
	.line = smtp_line,
	.tls_ready = smtp_tls_ready,
};
