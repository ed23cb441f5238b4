/*
 * pop3: upstream STARTTLS for POP3 (RFC 2595 STLS, RFC 2449 CAPA).
 *
 *   GREETING +OK -> CAPA (+OK, lines, ".": STLS listed) -> STLS +OK
 *   -> [TLS] -> the client gets "+OK ready".
 *   A server without CAPA (-ERR) is sent STLS all the same.
 */
#include <stdlib.h>

#include "line.h"
#include "neg_impl.h"

enum pop3_state { POP3_GREETING, POP3_CAPA, POP3_CAPA_LIST, POP3_STLS,
    POP3_TLS, POP3_DONE };

static const char *const pop3_state_names[] = {
	"greeting", "capa", "capa-list", "stls", "tls-handshake", "done",
};

/* RFC 2449: responses up to 512 octets with CRLF. */
#define POP3_MAX_LINE	512

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
	case POP3_TLS:
	case POP3_DONE:
		return neg_fail_line(n, R_UPSTREAM_UNSOLICITED, line, len);
	}
	abort();	/* not a state */
}

static enum neg_verdict
pop3_tls_ready(struct negotiator *n, struct neg_out *out)
{
	n->state = POP3_DONE;
	if (n->greet)
		neg_reply_client(out, "+OK ready");
	return NEG_RELAY;
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

const struct neg_ops pop3_ops = {
	.state_names = pop3_state_names,
	.max_line = POP3_MAX_LINE,
	.line = pop3_line,
	.tls_ready = pop3_tls_ready,
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
};
