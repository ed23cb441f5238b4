/*
 * front: the device's side of upstream_auth; see front.h.
 */
#include "front.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/mem.h>

#include "line.h"
#include "neg_impl.h"

/* accounts: the SASL response a continuation line carries. */
enum sasl_step { STEP_NONE, STEP_PLAIN, STEP_LOGIN_USER, STEP_LOGIN_PASS };

struct front {
	char		 name[256];
	char		*caps;		/* the upstream's keywords, CRLF each */
	bool		 tls;
	bool		 authed;	/* the device's AUTH was "accepted" */
	bool		 login;		/* the exchange is AUTH LOGIN */
	int		 sasl_steps;	/* continuation lines still expected */
	int		 errors;
	enum close_reason reason;
	/* upstream_auth = accounts */
	struct login	*account;	/* NULL: any AUTH is accepted */
	enum sasl_step	 step;
	char		 user[LOGIN_MAX_USER + 1];	/* AUTH LOGIN's */
	size_t		 userlen;
};

static enum front_verdict account_sasl(struct front *f, const char *line,
	    size_t len, struct buf *to_client);

/* What the proxy offers a device before it logged in (accounts). */
#define FRONT_LOGIN_CAPS	"PIPELINING\r\n8BITMIME\r\n" \
	"ENHANCEDSTATUSCODES\r\nAUTH PLAIN LOGIN\r\n"

struct front *
front_new(const char *name, const char *caps, bool tls)
{
	struct front *f;

	if ((f = calloc(1, sizeof(*f))) == NULL)
		return NULL;
	snprintf(f->name, sizeof(f->name), "%s", name);
	if ((f->caps = strdup(caps)) == NULL) {
		free(f);
		return NULL;
	}
	f->tls = tls;
	return f;
}

struct front *
front_new_accounts(const char *name, bool tls)
{
	struct front *f = front_new(name, FRONT_LOGIN_CAPS, tls);

	if (f != NULL && (f->account = login_new(PROTO_SMTP, name)) == NULL) {
		front_free(f);
		return NULL;
	}
	return f;
}

struct login *
front_login(struct front *f)
{
	return f->account;
}

int
front_set_caps(struct front *f, const char *caps)
{
	char *copy = strdup(caps);

	if (copy == NULL)
		return -1;
	free(f->caps);
	f->caps = copy;
	f->authed = true;
	return 0;
}

void
front_free(struct front *f)
{
	if (f != NULL) {
		free(f->caps);
		login_free(f->account);
		OPENSSL_cleanse(f->user, sizeof(f->user));
	}
	free(f);
}

/* One more error from the device; past CNEG_MAX_ERRORS the session ends
 * (the same count as the commands' errors). */
static enum front_verdict
front_error(struct front *f, struct buf *to_client)
{
	if (++f->errors < CNEG_MAX_ERRORS)
		return FRONT_CONTINUE;
	proto_say(to_client, "421 4.7.0 Too many errors");
	return FRONT_FAIL;
}

/* What the login dialogue said of a credential, for the front: anything
 * but "check it" was an error it has answered. */
static enum front_verdict
login_to_front(struct front *f, enum login_verdict v, struct buf *to_client)
{
	return v == LOGIN_CHECK ? FRONT_CHECK : front_error(f, to_client);
}

/* accounts: AUTH PLAIN [ir] or AUTH LOGIN [ir] starts a login. */
static enum front_verdict
account_auth(struct front *f, const char *args, size_t len,
    struct buf *to_client)
{
	bool ir;
	size_t ml = line_verb(args, len, &ir);

	if (ml == 5 && strncasecmp(args, "PLAIN", 5) == 0) {
		if (ir)
			return login_to_front(f, login_sasl_plain(f->account,
			    args + 6, len - 6, to_client), to_client);
		f->step = STEP_PLAIN;
		proto_say(to_client, "334 ");
	} else if (ml == 5 && strncasecmp(args, "LOGIN", 5) == 0) {
		f->step = STEP_LOGIN_USER;
		if (ir)
			return account_sasl(f, args + 6, len - 6, to_client);
		proto_say(to_client, "334 VXNlcm5hbWU6");	/* "Username:" */
	} else {
		/* A mechanism we do not offer (or none): an error, as a
		 * command we do not know is. */
		proto_say(to_client, "%s", proto_text(PROTO_SMTP)->auth_mechanism);
		return front_error(f, to_client);
	}
	return FRONT_CONTINUE;
}

/* accounts: a SASL response line of PLAIN or LOGIN. */
static enum front_verdict
account_sasl(struct front *f, const char *line, size_t len,
    struct buf *to_client)
{
	char pw[LOGIN_MAX_PASSWORD + 1];
	enum sasl_step step = f->step;
	enum front_verdict v;
	size_t pl = 0;

	f->step = STEP_NONE;
	if (len == 1 && line[0] == '*') {
		proto_say(to_client, "%s", proto_text(PROTO_SMTP)->auth_cancelled);
		return FRONT_CONTINUE;
	}
	if (step == STEP_PLAIN)
		return login_to_front(f, login_sasl_plain(f->account, line,
		    len, to_client), to_client);
	if (step == STEP_LOGIN_USER) {
		if (!login_base64(line, len, f->user, sizeof(f->user) - 1,
		    &f->userlen)) {
			proto_say(to_client, "%s", proto_text(PROTO_SMTP)->
			    auth_syntax);
			return front_error(f, to_client);
		}
		f->step = STEP_LOGIN_PASS;
		proto_say(to_client, "334 UGFzc3dvcmQ6");	/* "Password:" */
		return FRONT_CONTINUE;
	}
	if (login_base64(line, len, pw, sizeof(pw) - 1, &pl))
		v = login_to_front(f, login_credentials(f->account, f->user,
		    f->userlen, pw, pl, to_client), to_client);
	else {
		proto_say(to_client, "%s", proto_text(PROTO_SMTP)->auth_syntax);
		v = front_error(f, to_client);
	}
	OPENSSL_cleanse(pw, sizeof(pw));
	OPENSSL_cleanse(f->user, sizeof(f->user));
	return v;
}

enum close_reason
front_reason(const struct front *f)
{
	return f->reason != R_NONE ? f->reason : R_CLIENT_TOO_MANY_ERRORS;
}

void
front_timeout(struct buf *to_client)
{
	proto_say(to_client, "%s", proto_text(PROTO_SMTP)->timeout);
}

/* "250-name", then one line per keyword, the last with "250 ". */
static void
reply_ehlo(struct front *f, struct buf *to_client)
{
	const char *kw = f->caps, *end;

	if (*kw == '\0') {
		proto_say(to_client, "250 %s", f->name);
		return;
	}
	proto_say(to_client, "250-%s", f->name);
	while ((end = strstr(kw, "\r\n")) != NULL) {
		proto_say(to_client, "250%c%.*s", end[2] == '\0' ? ' ' : '-',
		    (int)(end - kw), kw);
		kw = end + 2;
	}
}

/* AUTH <mechanism> [initial-response]: answered as if it succeeded. */
static void
device_auth(struct front *f, const char *args, size_t len,
    struct buf *to_client)
{
	bool ir;
	size_t ml = line_verb(args, len, &ir);

	if (f->authed) {
		proto_say(to_client, "503 5.5.1 Error: already authenticated");
		return;
	}
	if (ml == 0) {
		proto_say(to_client, "501 5.5.4 Syntax: AUTH mechanism");
		return;
	}
	f->login = ml == 5 && strncasecmp(args, "LOGIN", 5) == 0;
	if (f->login) {
		f->sasl_steps = ir ? 1 : 2;
		proto_say(to_client, ir ? "334 UGFzc3dvcmQ6" :
		    "334 VXNlcm5hbWU6");	/* "Password:" / "Username:" */
	} else if (ir) {
		f->authed = true;
		proto_say(to_client, "235 2.7.0 Authentication successful");
	} else {
		f->sasl_steps = 1;
		/* CRAM-MD5 needs a challenge ("<1.1@mailproxy>"); for the
		 * others an empty one asks for the response. */
		proto_say(to_client, ml == 8 && strncasecmp(args, "CRAM-MD5",
		    8) == 0 ? "334 PDEuMUBtYWlscHJveHk+" : "334 ");
	}
}

/* A SASL continuation line of the device's AUTH: dropped unread. */
static void
device_sasl(struct front *f, const char *line, size_t len,
    struct buf *to_client)
{
	if (len == 1 && line[0] == '*') {
		f->sasl_steps = 0;
		proto_say(to_client, "501 5.7.0 Authentication aborted");
		return;
	}
	if (--f->sasl_steps > 0) {
		proto_say(to_client, "334 UGFzc3dvcmQ6");
		return;
	}
	f->authed = true;
	proto_say(to_client, "235 2.7.0 Authentication successful");
}

static enum front_verdict
device_command(struct front *f, const char *line, size_t len,
    struct buf *to_client)
{
	bool args;
	size_t vl = line_verb(line, len, &args);

#define IS(word)	(vl == strlen(word) && strncasecmp(line, word, vl) == 0)
	if ((IS("MAIL") || IS("RCPT") || IS("DATA") || IS("BDAT")) &&
	    f->account != NULL && !f->authed) {
		proto_say(to_client, "530 5.7.0 Authentication required");
		return FRONT_CONTINUE;
	}
	if (IS("MAIL"))
		return FRONT_RELAY;
	if (IS("EHLO") && args)
		reply_ehlo(f, to_client);
	else if (IS("HELO") && args)
		proto_say(to_client, "250 %s", f->name);
	else if (IS("AUTH") && f->account != NULL && !f->authed)
		return account_auth(f, args ? line + vl + 1 : "", args ?
		    len - vl - 1 : 0, to_client);
	else if (IS("AUTH"))
		device_auth(f, args ? line + vl + 1 : "", args ? len - vl - 1 : 0,
		    to_client);
	else if (IS("NOOP") || IS("RSET"))
		proto_say(to_client, "250 2.0.0 OK");
	else if (IS("QUIT")) {
		proto_say(to_client, "221 2.0.0 Bye");
		return FRONT_CLOSE;
	} else {
		/* Refusals, counted. */
		if (IS("EHLO") || IS("HELO"))
			proto_say(to_client, "501 5.5.4 Syntax: %.4s hostname",
			    line);
		else if (IS("STARTTLS"))
			proto_say(to_client, f->tls ? "554 5.5.1 Error: TLS "
			    "already active" : "454 4.7.0 TLS not available");
		else if (IS("RCPT") || IS("DATA") || IS("BDAT"))
			proto_say(to_client, "503 5.5.1 Error: need MAIL "
			    "command");
		else
			proto_say(to_client, "502 5.5.2 Error: command not "
			    "recognized");
		return front_error(f, to_client);
	}
#undef IS
	return FRONT_CONTINUE;
}

/*
 * Lines end with LF (a CR before it is dropped): old devices send bare LF
 * and nothing here is relayed.  A line is consumed only once complete.
 */
enum front_verdict
front_feed(struct front *f, const char *data, size_t len, size_t *consumed,
    struct buf *to_client)
{
	enum front_verdict v;
	const char *lf;
	size_t off = 0, n;

	*consumed = 0;
	while (off < len) {
		/* Pipelined commands wait while many replies are queued. */
		if (buf_len(to_client) > BUF_CAPACITY / 2)
			return FRONT_CONTINUE;
		if ((lf = memchr(data + off, '\n', len - off)) == NULL) {
			if (len - off < FRONT_MAX_LINE)
				return FRONT_CONTINUE;
			proto_say(to_client, "500 5.5.2 Line too long");
			f->reason = R_CLIENT_LINE_TOO_LONG;
			return FRONT_FAIL;
		}
		n = (size_t)(lf - (data + off));
		if (n + 1 > FRONT_MAX_LINE) {
			proto_say(to_client, "500 5.5.2 Line too long");
			f->reason = R_CLIENT_LINE_TOO_LONG;
			return FRONT_FAIL;
		}
		if (n > 0 && data[off + n - 1] == '\r')
			n--;
		if (f->step != STEP_NONE)
			v = account_sasl(f, data + off, n, to_client);
		else if (f->sasl_steps > 0) {
			device_sasl(f, data + off, n, to_client);
			v = FRONT_CONTINUE;
		} else
			v = device_command(f, data + off, n, to_client);
		if (v == FRONT_RELAY)
			return v;	/* the MAIL line is the relay's */
		off = (size_t)(lf - data) + 1;
		*consumed = off;
		if (v != FRONT_CONTINUE)
			return v;
	}
	return FRONT_CONTINUE;
}
