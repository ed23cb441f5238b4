/*
 * The client's login to the proxy (upstream_auth = accounts): the IMAP and
 * POP3 dialogues and SMTP's front, fed whole, one byte at a time and split
 * in two at every byte; literals, SASL-IR, bad base64, overlong lines; the
 * replies to a check's outcome; the upstream login negotiators of IMAP and
 * POP3.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <unistd.h>

#include "front.h"
#include "login.h"
#include "neg_impl.h"
#include "negotiate.h"
#include "unit.h"

struct lscript {
	const char		*name;
	enum proto		 proto;		/* PROTO_SMTP: the front */
	const char		*input;
	size_t			 input_len;	/* 0: strlen */
	enum login_verdict	 verdict;
	const char		*replies;
	const char		*left;		/* input not consumed */
	const char		*user;		/* LOGIN_CHECK: the credentials */
	const char		*password;
	size_t			 password_len;	/* 0: strlen */
};

#define AP	"AGFsaWNlAHB3"		/* "\0alice\0pw" */

static const struct lscript lscripts[] = {
	/* IMAP */
	{ "imap login atoms", PROTO_IMAP, "a LOGIN alice pw\r\n", 0, LOGIN_CHECK,
	    "", "", "alice", "pw", 0 },
	{ "imap login quoted with escapes", PROTO_IMAP,
	    "a LOGIN \"al\\\"ice\" \"p w\\\\x\"\r\n", 0, LOGIN_CHECK, "", "",
	    "al\"ice", "p w\\x", 0 },
	{ "imap login synchronising literals", PROTO_IMAP,
	    "a LOGIN {5}\r\nalice {3}\r\np\r\n\r\n", 0, LOGIN_CHECK,
	    "+ Ready for literal data\r\n+ Ready for literal data\r\n", "",
	    "alice", "p\r\n", 0 },
	{ "imap login literal+", PROTO_IMAP, "a LOGIN {5+}\r\nalice {2+}\r\npw\r\n",
	    0, LOGIN_CHECK, "", "", "alice", "pw", 0 },
	{ "imap login mixed", PROTO_IMAP, "a LOGIN \"alice\" {2}\r\npw\r\n", 0,
	    LOGIN_CHECK, "+ Ready for literal data\r\n", "", "alice", "pw", 0 },
	{ "imap pipelined after login: the upstream's", PROTO_IMAP,
	    "a LOGIN alice pw\r\nb SELECT INBOX\r\n", 0, LOGIN_CHECK, "",
	    "b SELECT INBOX\r\n", "alice", "pw", 0 },
	{ "imap bare LF", PROTO_IMAP, "a LOGIN alice pw\n", 0, LOGIN_CHECK, "", "",
	    "alice", "pw", 0 },
	{ "imap authenticate plain sasl-ir", PROTO_IMAP,
	    "a AUTHENTICATE PLAIN " AP "\r\n", 0, LOGIN_CHECK, "", "", "alice",
	    "pw", 0 },
	{ "imap authenticate plain continued", PROTO_IMAP,
	    "a AUTHENTICATE plain\r\n" AP "\r\n", 0, LOGIN_CHECK, "+ \r\n", "",
	    "alice", "pw", 0 },
	{ "imap plain with the same authzid", PROTO_IMAP,
	    "a AUTHENTICATE PLAIN YWxpY2UAYWxpY2UAcHc=\r\n", 0, LOGIN_CHECK, "", "",
	    "alice", "pw", 0 },
	{ "imap plain as someone else", PROTO_IMAP,
	    "a AUTHENTICATE PLAIN Ym9iAGFsaWNlAHB3\r\n", 0, LOGIN_CONTINUE,
	    "a BAD Invalid SASL PLAIN response or credentials\r\n", "", NULL, NULL, 0 },
	{ "imap plain bad base64", PROTO_IMAP, "a AUTHENTICATE PLAIN !!!x\r\n", 0,
	    LOGIN_CONTINUE, "a BAD Invalid SASL PLAIN response or credentials\r\n",
	    "", NULL, NULL, 0 },
	{ "imap plain empty password", PROTO_IMAP,
	    "a AUTHENTICATE PLAIN AGFsaWNlAA==\r\n", 0, LOGIN_CONTINUE,
	    "a BAD Invalid SASL PLAIN response or credentials\r\n", "", NULL, NULL, 0 },
	{ "imap plain cancelled", PROTO_IMAP, "a AUTHENTICATE PLAIN\r\n*\r\n", 0,
	    LOGIN_CONTINUE, "+ \r\na BAD Authentication cancelled\r\n", "", NULL,
	    NULL, 0 },
	{ "imap other mechanism", PROTO_IMAP, "a AUTHENTICATE CRAM-MD5\r\n", 0,
	    LOGIN_CONTINUE, "a NO Unsupported authentication mechanism\r\n", "",
	    NULL, NULL, 0 },
	{ "imap vocabulary", PROTO_IMAP,
	    "a CAPABILITY\r\nb NOOP\r\nc STARTTLS\r\nd SELECT INBOX\r\ne LOGOUT\r\nf NOOP\r\n",
	    0, LOGIN_CLOSE, "* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR LITERAL+\r\n"
	    "a OK CAPABILITY completed\r\nb OK NOOP completed\r\n"
	    "c BAD TLS is already active\r\nd BAD Command not permitted before login\r\n"
	    "* BYE Logging out\r\ne OK LOGOUT completed\r\n", "f NOOP\r\n", NULL, NULL, 0 },
	{ "imap login syntax", PROTO_IMAP, "a LOGIN alice\r\nb LOGIN a b c\r\n", 0,
	    LOGIN_CONTINUE, "a BAD Syntax: LOGIN user password\r\n"
	    "b BAD Syntax: LOGIN user password\r\n", "", NULL, NULL, 0 },
	{ "imap bad tags", PROTO_IMAP, "* LOGIN a b\r\n+ NOOP\r\nnotag\r\n", 0,
	    LOGIN_CONTINUE, "* BAD Invalid tag\r\n* BAD Invalid tag\r\n"
	    "* BAD Invalid tag\r\n", "", NULL, NULL, 0 },
	{ "imap literal too large", PROTO_IMAP, "a LOGIN {5000}\r\nb NOOP\r\n", 0,
	    LOGIN_CONTINUE, "a BAD Literal too large\r\nb OK NOOP completed\r\n", "",
	    NULL, NULL, 0 },
	{ "imap literal+ too large", PROTO_IMAP, "a LOGIN {5000+}\r\nxx", 0,
	    LOGIN_FAIL, "* BYE Line too long\r\n", "xx", NULL, NULL, 0 },
	{ "imap NUL", PROTO_IMAP, "a LOGIN al\0ce pw\r\n", 18, LOGIN_CONTINUE,
	    "* BAD Syntax error: NUL byte in command\r\n", "", NULL, NULL, 0 },
	/* POP3 */
	{ "pop3 user pass", PROTO_POP3, "USER alice\r\nPASS p w \r\n", 0, LOGIN_CHECK,
	    "+OK\r\n", "", "alice", "p w ", 0 },
	{ "pop3 pass first", PROTO_POP3, "PASS x\r\n", 0, LOGIN_CONTINUE,
	    "-ERR [AUTH] USER first\r\n", "", NULL, NULL, 0 },
	{ "pop3 auth list", PROTO_POP3, "AUTH\r\n", 0, LOGIN_CONTINUE,
	    "+OK\r\nPLAIN\r\n.\r\n", "", NULL, NULL, 0 },
	{ "pop3 auth plain ir", PROTO_POP3, "AUTH PLAIN " AP "\r\nSTAT\r\n", 0,
	    LOGIN_CHECK, "", "STAT\r\n", "alice", "pw", 0 },
	{ "pop3 auth plain continued", PROTO_POP3, "auth plain\r\n" AP "\r\n", 0,
	    LOGIN_CHECK, "+ \r\n", "", "alice", "pw", 0 },
	{ "pop3 other mechanism", PROTO_POP3, "AUTH XOAUTH2\r\n", 0, LOGIN_CONTINUE,
	    "-ERR Unsupported authentication mechanism\r\n", "", NULL, NULL, 0 },
	{ "pop3 vocabulary", PROTO_POP3, "CAPA\r\nSTLS\r\nSTAT\r\nQUIT\r\n", 0,
	    LOGIN_CLOSE, "+OK Capability list follows\r\nUSER\r\nSASL PLAIN\r\n"
	    "IMPLEMENTATION mailproxy\r\n.\r\n-ERR TLS is already active\r\n"
	    "-ERR Command not permitted before login\r\n+OK Bye\r\n", "", NULL, NULL, 0 },
	/* SMTP: the device's front with accounts */
	{ "smtp ehlo offers auth", PROTO_SMTP, "EHLO scanner\r\n", 0, LOGIN_CONTINUE,
	    "250-gw.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n"
	    "250 AUTH PLAIN LOGIN\r\n", "", NULL, NULL, 0 },
	{ "smtp mail before auth", PROTO_SMTP, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n", 0,
	    LOGIN_CONTINUE, "530 5.7.0 Authentication required\r\n"
	    "530 5.7.0 Authentication required\r\n", "", NULL, NULL, 0 },
	{ "smtp auth plain ir", PROTO_SMTP, "AUTH PLAIN " AP "\r\nMAIL FROM:<a>\r\n", 0,
	    LOGIN_CHECK, "", "MAIL FROM:<a>\r\n", "alice", "pw", 0 },
	{ "smtp auth plain continued", PROTO_SMTP, "AUTH PLAIN\r\n" AP "\r\n", 0,
	    LOGIN_CHECK, "334 \r\n", "", "alice", "pw", 0 },
	{ "smtp auth login", PROTO_SMTP, "AUTH LOGIN\r\nYWxpY2U=\r\ncHc=\r\n", 0,
	    LOGIN_CHECK, "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n", "", "alice", "pw", 0 },
	{ "smtp auth login ir", PROTO_SMTP, "AUTH LOGIN YWxpY2U=\r\ncHc=\r\n", 0,
	    LOGIN_CHECK, "334 UGFzc3dvcmQ6\r\n", "", "alice", "pw", 0 },
	{ "smtp auth other", PROTO_SMTP, "AUTH CRAM-MD5\r\n", 0, LOGIN_CONTINUE,
	    "504 5.5.4 Unrecognized authentication type\r\n", "", NULL, NULL, 0 },
	{ "smtp auth aborted", PROTO_SMTP, "AUTH LOGIN\r\n*\r\n", 0, LOGIN_CONTINUE,
	    "334 VXNlcm5hbWU6\r\n501 5.7.0 Authentication aborted\r\n", "", NULL, NULL, 0 },
	{ "smtp auth bad base64", PROTO_SMTP, "AUTH PLAIN\r\n!!\r\nAUTH LOGIN @\r\n", 0,
	    LOGIN_CONTINUE, "334 \r\n501 5.5.2 Invalid SASL PLAIN or LOGIN response\r\n"
	    "501 5.5.2 Invalid SASL PLAIN or LOGIN response\r\n", "", NULL, NULL, 0 },
};

/* One feed, through the dialogue the script is for. */
static enum login_verdict
feed(const struct lscript *sc, struct login *l, struct front *f,
    const char *p, size_t len, size_t *consumed, struct buf *out)
{
	if (sc->proto != PROTO_SMTP)
		return login_feed(l, p, len, consumed, out);
	switch (front_feed(f, p, len, consumed, out)) {
	case FRONT_CONTINUE:
		return LOGIN_CONTINUE;
	case FRONT_CHECK:
		return LOGIN_CHECK;
	case FRONT_CLOSE:
		return LOGIN_CLOSE;
	case FRONT_RELAY:
	case FRONT_FAIL:
		break;
	}
	return LOGIN_FAIL;
}

/*
 * Runs one script as a session would: bytes arrive in chunks (all at once
 * with step 0; else step bytes, or split once at split), what is not
 * consumed is fed again with what comes next.
 */
static bool
lrun(const struct lscript *sc, size_t step, size_t split)
{
	struct front *f = NULL;
	struct login *l = NULL;
	size_t len = sc->input_len ? sc->input_len : strlen(sc->input);
	size_t have = 0, start = 0, consumed, got, pl = 0;
	enum login_verdict v = LOGIN_CONTINUE;
	const char *p, *pw = NULL;
	struct buf cl;
	bool ok;

	if (sc->proto == PROTO_SMTP)
		f = front_new_accounts("gw.test", true);
	else
		l = login_new(sc->proto, "gw.test");
	buf_init(&cl, 65536);
	while (have < len && v == LOGIN_CONTINUE) {
		have = step ? have + step : split ? (have < split ? split : len) :
		    len;
		if (have > len)
			have = len;
		v = feed(sc, l, f, sc->input + start, have - start, &consumed, &cl);
		start += consumed;
	}
	if (sc->proto == PROTO_SMTP)
		l = front_login(f);
	p = buf_peek(&cl, &got);
	ok = v == sc->verdict && got == strlen(sc->replies) &&
	    (got == 0 || memcmp(p, sc->replies, got) == 0) &&
	    len - start == strlen(sc->left) &&
	    memcmp(sc->input + start, sc->left, len - start) == 0;
	if (ok && v == LOGIN_CHECK) {
		pw = login_password(l, &pl);
		ok = strcmp(login_user(l), sc->user) == 0 && pl == (sc->password_len ?
		    sc->password_len : strlen(sc->password)) &&
		    memcmp(pw, sc->password, pl) == 0;
		login_forget(l);
		ok = ok && login_password(l, &pl) != NULL && pl == 0;
	}
	if (!ok)
		fprintf(stderr, "  login %s (step %zu split %zu): verdict %d, "
		    "replies %.*s, left %s\n", sc->name, step, split, v, (int)got,
		    p ? p : "", sc->input + start);
	buf_release(&cl);
	if (f != NULL)
		front_free(f);
	else
		login_free(l);
	return ok;
}

static char *
drain(struct buf *b)
{
	static char text[2048];
	size_t n;
	const char *p = buf_peek(b, &n);

	snprintf(text, sizeof(text), "%.*s", p ? (int)n : 0, p ? p : "");
	buf_consume(b, n);
	return text;
}

/* What the session says once the check and the upstream answered. */
static void
test_outcomes(void)
{
	struct login *l = login_new(PROTO_IMAP, "gw.test");
	struct front *f;
	struct buf cl;
	size_t c;

	buf_init(&cl, 65536);
	CHECK(login_feed(l, "t1 LOGIN a b\r\n", 14, &c, &cl) == LOGIN_CHECK);
	CHECK(login_refused(l, &cl) == LOGIN_CONTINUE);
	CHECK(strcmp(drain(&cl), "t1 NO [AUTHENTICATIONFAILED] Authentication "
	    "failed\r\n") == 0);
	CHECK(login_feed(l, "t2 LOGIN a b\r\n", 14, &c, &cl) == LOGIN_CHECK);
	CHECK(login_refused(l, &cl) == LOGIN_CONTINUE);
	CHECK(login_feed(l, "t3 LOGIN a b\r\n", 14, &c, &cl) == LOGIN_CHECK);
	drain(&cl);
	/* The third failure in one session ends it. */
	CHECK(login_refused(l, &cl) == LOGIN_FAIL);
	CHECK(strcmp(drain(&cl), "t3 NO [AUTHENTICATIONFAILED] Authentication "
	    "failed\r\n* BYE Too many authentication failures\r\n") == 0);
	CHECK(strcmp(reason_name(login_reason(l)), "client-auth-failed") == 0);
	login_free(l);

	l = login_new(PROTO_IMAP, "gw.test");
	CHECK(login_feed(l, "x LOGIN a b\r\n", 13, &c, &cl) == LOGIN_CHECK);
	login_accepted(l, "IMAP4rev1 IDLE", &cl);
	CHECK(strcmp(drain(&cl), "x OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n") == 0);
	login_accepted(l, "", &cl);
	CHECK(strcmp(drain(&cl), "x OK Logged in\r\n") == 0);
	login_unavailable(l, &cl);
	CHECK_STR_CONTAINS(drain(&cl), "x NO [UNAVAILABLE] ");
	login_greet(l, &cl);
	CHECK(strcmp(drain(&cl), "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR "
	    "LITERAL+] gw.test mailproxy ready\r\n") == 0);
	login_free(l);

	l = login_new(PROTO_POP3, "gw.test");
	login_unavailable(l, &cl);
	CHECK_STR_CONTAINS(drain(&cl), "-ERR [SYS/TEMP] ");
	login_accepted(l, NULL, &cl);
	CHECK(strcmp(drain(&cl), "+OK Logged in\r\n") == 0);
	login_free(l);

	/* SMTP: once logged in upstream, the upstream's keywords, and MAIL
	 * goes to the relay. */
	f = front_new_accounts("gw.test", true);
	CHECK(front_feed(f, "AUTH PLAIN " AP "\r\n", 25, &c, &cl) == FRONT_CHECK);
	login_unavailable(front_login(f), &cl);
	CHECK_STR_CONTAINS(drain(&cl), "454 4.7.0 ");
	login_accepted(front_login(f), NULL, &cl);
	CHECK(front_set_caps(f, "SIZE 10\r\n") == 0);
	CHECK(strcmp(drain(&cl), "235 2.7.0 Authentication successful\r\n") == 0);
	CHECK(front_feed(f, "EHLO x\r\nAUTH PLAIN " AP "\r\nMAIL FROM:<a>\r\n", 48, &c,
	    &cl) == FRONT_RELAY && c == 33);
	CHECK(strcmp(drain(&cl), "250-gw.test\r\n250 SIZE 10\r\n"
	    "503 5.5.1 Error: already authenticated\r\n") == 0);
	front_free(f);

	/* SMTP SASL garbage counts as errors, as commands do: the device is
	 * cut after CNEG_MAX_ERRORS of them (AUTH LOGIN and AUTH PLAIN). */
	f = front_new_accounts("gw.test", true);
	{
		enum front_verdict v = FRONT_CONTINUE;
		int n = 0;
		while (v == FRONT_CONTINUE && n < 100) {
			v = front_feed(f, n % 2 ? "AUTH PLAIN\r\n" :
			    "AUTH LOGIN\r\n", 12, &c, &cl);
			if (v == FRONT_CONTINUE)
				v = front_feed(f, "!!!\r\n", 5, &c, &cl);
			n++;
		}
		CHECK(v == FRONT_FAIL && n == CNEG_MAX_ERRORS);
		CHECK_STR_CONTAINS(drain(&cl), "421 4.7.0 Too many errors");
	}
	front_free(f);
	buf_release(&cl);
}

/* Lines over the limit, and a flood of refused commands. */
static void
test_limits(void)
{
	static char line[8192];
	struct login *l = login_new(PROTO_POP3, "gw.test");
	struct buf cl;
	size_t c;
	int i;

	buf_init(&cl, 65536);
	memset(line, 'A', sizeof(line));
	CHECK(login_feed(l, line, sizeof(line), &c, &cl) == LOGIN_FAIL);
	CHECK(strcmp(drain(&cl), "-ERR Line too long\r\n") == 0);
	CHECK(strcmp(reason_name(login_reason(l)), "client-line-too-long") == 0);
	login_free(l);

	l = login_new(PROTO_IMAP, "gw.test");
	for (i = 0; i < 19; i++)
		CHECK(login_feed(l, "a XYZZY\r\n", 9, &c, &cl) == LOGIN_CONTINUE);
	CHECK(login_feed(l, "a XYZZY\r\n", 9, &c, &cl) == LOGIN_FAIL);
	CHECK(strcmp(reason_name(login_reason(l)), "client-too-many-errors") == 0);
	login_timeout(l, &cl);
	drain(&cl);
	login_free(l);
	buf_release(&cl);
}

/* Feeds an upstream's lines to a negotiator; what it sent goes to sent. */
static enum neg_verdict
up(struct negotiator *n, const char *lines, struct buf *to_up, char *sent,
    size_t cap)
{
	struct buf cl;
	struct neg_out out = { to_up, &cl };
	enum neg_verdict v;
	size_t len;
	const char *p;

	buf_init(&cl, 65536);
	v = neg_feed(n, lines, strlen(lines), &out);
	p = buf_peek(to_up, &len);
	snprintf(sent, cap, "%.*s", p ? (int)len : 0, p ? p : "");
	buf_consume(to_up, len);
	CHECK(buf_empty(&cl));		/* the client hears nothing of it */
	buf_release(&cl);
	return v;
}

static struct negotiator *
upstream_login(enum proto proto, int mech, const char *secret)
{
	struct negotiator *n = neg_new(proto, "gw.test", false, false);

	CHECK(neg_set_auth(n, mech, "alice", secret, strlen(secret)) == 0);
	return n;
}

/* The proxy's own login to an IMAP and a POP3 upstream (implicit TLS). */
static void
test_upstream_login(void)
{
	struct negotiator *n;
	struct buf u;
	char s[1024];

	buf_init(&u, 65536);
	n = upstream_login(PROTO_IMAP, AUTH_PLAIN, "s\"3\\");
	CHECK(up(n, "* OK hi\r\n", &u, s, sizeof(s)) == NEG_CONTINUE &&
	    strcmp(s, "mp1 CAPABILITY\r\n") == 0);
	CHECK(up(n, "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nmp1 OK\r\n", &u, s,
	    sizeof(s)) == NEG_CONTINUE);
	CHECK(strcmp(s, "mp2 LOGIN \"alice\" \"s\\\"3\\\\\"\r\n") == 0);
	CHECK(up(n, "mp2 OK [CAPABILITY IMAP4rev1 IDLE STARTTLS] in\r\n", &u, s,
	    sizeof(s)) == NEG_RELAY);
	CHECK(strcmp(neg_caps(n), "IMAP4rev1 IDLE") == 0);
	neg_free(n);

	/* Not printable: AUTHENTICATE PLAIN, after the continuation. */
	n = upstream_login(PROTO_IMAP, AUTH_PLAIN, "p\xc3\xa4");
	up(n, "* OK [CAPABILITY IMAP4rev1] hi\r\n", &u, s, sizeof(s));
	CHECK(up(n, "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nmp1 OK\r\n", &u, s,
	    sizeof(s)) == NEG_CONTINUE && strcmp(s, "mp2 AUTHENTICATE PLAIN\r\n") == 0);
	CHECK(up(n, "+ \r\n", &u, s, sizeof(s)) == NEG_CONTINUE &&
	    strcmp(s, "AGFsaWNlAHDDpA==\r\n") == 0);
	CHECK(up(n, "mp2 NO [AUTHENTICATIONFAILED] no\r\n", &u, s, sizeof(s)) ==
	    NEG_FAIL);
	CHECK(strcmp(reason_name(neg_reason(n)), "upstream-auth-refused") == 0);
	neg_free(n);

	/* LOGINDISABLED and SASL-IR. */
	n = upstream_login(PROTO_IMAP, AUTH_PLAIN, "pw");
	up(n, "* OK hi\r\n", &u, s, sizeof(s));
	CHECK(up(n, "* CAPABILITY IMAP4rev1 LOGINDISABLED SASL-IR AUTH=PLAIN\r\n"
	    "mp1 OK\r\n", &u, s, sizeof(s)) == NEG_CONTINUE &&
	    strcmp(s, "mp2 AUTHENTICATE PLAIN " AP "\r\n") == 0);
	CHECK(up(n, "mp2 OK in\r\n", &u, s, sizeof(s)) == NEG_RELAY &&
	    strcmp(neg_caps(n), "") == 0);
	neg_free(n);

	/* No way to log in. */
	n = upstream_login(PROTO_IMAP, AUTH_PLAIN, "pw");
	up(n, "* OK hi\r\n", &u, s, sizeof(s));
	CHECK(up(n, "* CAPABILITY IMAP4rev1 LOGINDISABLED\r\nmp1 OK\r\n", &u, s,
	    sizeof(s)) == NEG_FAIL);
	CHECK(strcmp(reason_name(neg_reason(n)), "upstream-auth-unavailable") == 0);
	neg_free(n);

	/* XOAUTH2: the error comes in a challenge, answered empty. */
	n = upstream_login(PROTO_IMAP, AUTH_XOAUTH2, "tok");
	up(n, "* OK hi\r\n", &u, s, sizeof(s));
	CHECK(up(n, "* CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2\r\nmp1 OK\r\n", &u,
	    s, sizeof(s)) == NEG_CONTINUE);
	CHECK(strcmp(s, "mp2 AUTHENTICATE XOAUTH2 dXNlcj1hbGljZQFhdXRoPUJlYXJlciB0b2sBAQ==\r\n") == 0);
	CHECK(up(n, "+ eyJzdGF0dXMiOiI0MDEifQ==\r\n", &u, s, sizeof(s)) ==
	    NEG_CONTINUE && strcmp(s, "\r\n") == 0);
	CHECK(up(n, "mp2 NO [AUTHENTICATIONFAILED] no\r\n", &u, s, sizeof(s)) ==
	    NEG_FAIL);
	CHECK_STR_CONTAINS(neg_detail(n), "401");
	neg_free(n);

	/* POP3: USER, PASS. */
	n = upstream_login(PROTO_POP3, AUTH_PLAIN, "p w");
	CHECK(up(n, "+OK hi\r\n", &u, s, sizeof(s)) == NEG_CONTINUE &&
	    strcmp(s, "USER alice\r\n") == 0);
	CHECK(up(n, "+OK\r\n", &u, s, sizeof(s)) == NEG_CONTINUE &&
	    strcmp(s, "PASS p w\r\n") == 0);
	CHECK(up(n, "+OK in\r\n", &u, s, sizeof(s)) == NEG_RELAY);
	neg_free(n);
	n = upstream_login(PROTO_POP3, AUTH_PLAIN, "pw");
	up(n, "+OK hi\r\n", &u, s, sizeof(s));
	up(n, "+OK\r\n", &u, s, sizeof(s));
	CHECK(up(n, "-ERR [AUTH] no\r\n", &u, s, sizeof(s)) == NEG_FAIL);
	CHECK(strcmp(reason_name(neg_reason(n)), "upstream-auth-refused") == 0);
	neg_free(n);
	/* The token after a "+": RFC 5034 caps an initial response at 255
	 * octets, tokens are kilobytes. */
	n = upstream_login(PROTO_POP3, AUTH_XOAUTH2, "tok");
	CHECK(up(n, "+OK hi\r\n", &u, s, sizeof(s)) == NEG_CONTINUE &&
	    strcmp(s, "AUTH XOAUTH2\r\n") == 0);
	CHECK(up(n, "+ \r\n", &u, s, sizeof(s)) == NEG_CONTINUE &&
	    strcmp(s, "dXNlcj1hbGljZQFhdXRoPUJlYXJlciB0b2sBAQ==\r\n") == 0);
	CHECK(up(n, "+ eyJzdGF0dXMiOiI0MDEifQ==\r\n", &u, s, sizeof(s)) ==
	    NEG_CONTINUE && strcmp(s, "\r\n") == 0);
	CHECK(up(n, "-ERR no\r\n", &u, s, sizeof(s)) == NEG_FAIL);
	neg_free(n);
	n = upstream_login(PROTO_POP3, AUTH_XOAUTH2, "tok");
	up(n, "+OK hi\r\n", &u, s, sizeof(s));
	CHECK(up(n, "-ERR [AUTH] not here\r\n", &u, s, sizeof(s)) == NEG_FAIL);
	CHECK(strcmp(reason_name(neg_reason(n)), "upstream-auth-refused") == 0);
	neg_free(n);

	/* SMTP, an account's password: PLAIN, or LOGIN when only that is
	 * offered (as smtp.office365.com does). */
	n = upstream_login(PROTO_SMTP, AUTH_ACCOUNTS, "pw");
	CHECK(up(n, "220 hi\r\n", &u, s, sizeof(s)) == NEG_CONTINUE &&
	    strcmp(s, "EHLO gw.test\r\n") == 0);
	CHECK(up(n, "250-mx\r\n250-AUTH LOGIN XOAUTH2\r\n250 SIZE 1\r\n", &u, s,
	    sizeof(s)) == NEG_CONTINUE && strcmp(s, "AUTH LOGIN\r\n") == 0);
	neg_free(n);
	n = upstream_login(PROTO_SMTP, AUTH_ACCOUNTS, "pw");
	up(n, "220 hi\r\n", &u, s, sizeof(s));
	CHECK(up(n, "250-mx\r\n250-AUTH LOGIN PLAIN\r\n250 SIZE 1\r\n", &u, s,
	    sizeof(s)) == NEG_CONTINUE && strcmp(s, "AUTH PLAIN " AP "\r\n") == 0);
	neg_free(n);
	n = upstream_login(PROTO_SMTP, AUTH_ACCOUNTS, "pw");
	up(n, "220 hi\r\n", &u, s, sizeof(s));
	CHECK(up(n, "250-mx\r\n250 AUTH XOAUTH2\r\n", &u, s, sizeof(s)) == NEG_FAIL);
	neg_free(n);
	n = upstream_login(PROTO_IMAP, AUTH_ACCOUNTS, "pw");
	up(n, "* OK hi\r\n", &u, s, sizeof(s));
	CHECK(up(n, "* CAPABILITY IMAP4rev1\r\nmp1 OK\r\n", &u, s, sizeof(s)) ==
	    NEG_CONTINUE && strcmp(s, "mp2 LOGIN \"alice\" \"pw\"\r\n") == 0);
	neg_free(n);
	buf_release(&u);
}

void
test_login(void)
{
	for (size_t i = 0; i < sizeof(lscripts) / sizeof(*lscripts); i++) {
		const struct lscript *sc = &lscripts[i];
		size_t len = sc->input_len ? sc->input_len : strlen(sc->input);
		bool ok = lrun(sc, 0, 0) && lrun(sc, 1, 0);
		for (size_t k = 1; ok && k < len; k++)
			ok = lrun(sc, 0, k);
		CHECK(ok);
	}
	test_outcomes();
	test_limits();
	test_upstream_login();
}
