/*
 * front (upstream_auth, the device's side): EHLO without AUTH, the
 * device's AUTH accepted with its continuation lines swallowed, MAIL and
 * everything after it left for the relay, fed whole and one byte at a time.
 */
#include <stdlib.h>

#include "front.h"
#include "neg_impl.h"
#include "unit.h"

#define CAPS	"PIPELINING\r\nSIZE 1000\r\n8BITMIME\r\n"

struct fscript {
	const char		*name;
	const char		*input;
	bool			 tls;
	enum front_verdict	 verdict;
	const char		*replies;
	const char		*left;		/* input not consumed */
};

static const struct fscript fscripts[] = {
	{ "ehlo shows keywords, no auth", "EHLO scanner\r\n", false, FRONT_CONTINUE,
	    "250-gw.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n", "" },
	{ "helo", "HELO scanner\r\n", false, FRONT_CONTINUE, "250 gw.test\r\n", "" },
	{ "auth plain with initial response", "AUTH PLAIN AGR1bW15AGR1bW15\r\n",
	    false, FRONT_CONTINUE, "235 2.7.0 Authentication successful\r\n", "" },
	{ "auth plain in two steps", "AUTH PLAIN\r\nAGR1bW15AGR1bW15\r\n", false,
	    FRONT_CONTINUE, "334 \r\n235 2.7.0 Authentication successful\r\n", "" },
	{ "auth login", "AUTH LOGIN\r\nZHVtbXk=\r\nZHVtbXk=\r\n", false, FRONT_CONTINUE,
	    "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n"
	    "235 2.7.0 Authentication successful\r\n", "" },
	{ "auth login with user inline", "auth login ZHVtbXk=\r\nZHVtbXk=\r\n", false,
	    FRONT_CONTINUE, "334 UGFzc3dvcmQ6\r\n235 2.7.0 Authentication successful\r\n", "" },
	{ "auth cram-md5 gets a challenge", "AUTH CRAM-MD5\r\nZHVtbXkgYWJj\r\n", false,
	    FRONT_CONTINUE, "334 PDEuMUBtYWlscHJveHk+\r\n235 2.7.0 Authentication successful\r\n", "" },
	{ "auth aborted", "AUTH LOGIN\r\n*\r\n", false, FRONT_CONTINUE,
	    "334 VXNlcm5hbWU6\r\n501 5.7.0 Authentication aborted\r\n", "" },
	{ "auth twice", "AUTH PLAIN eA==\r\nAUTH PLAIN eA==\r\n", false, FRONT_CONTINUE,
	    "235 2.7.0 Authentication successful\r\n503 5.5.1 Error: already authenticated\r\n", "" },
	{ "a continuation line that looks like MAIL is not MAIL",
	    "AUTH PLAIN\r\nMAIL FROM:<x>\r\n", false, FRONT_CONTINUE,
	    "334 \r\n235 2.7.0 Authentication successful\r\n", "" },
	{ "pipelined up to MAIL: the rest is the relay's",
	    "EHLO s\r\nAUTH PLAIN eA==\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@y>\r\nDATA\r\n", false,
	    FRONT_RELAY, "250-gw.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n"
	    "235 2.7.0 Authentication successful\r\n",
	    "MAIL FROM:<s@x>\r\nRCPT TO:<a@y>\r\nDATA\r\n" },
	{ "mail first", "mail from:<a@b>\r\n", false, FRONT_RELAY, "", "mail from:<a@b>\r\n" },
	{ "bare LF from old devices", "EHLO s\nMAIL FROM:<a>\n", false, FRONT_RELAY,
	    "250-gw.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n",
	    "MAIL FROM:<a>\n" },
	{ "starttls refused in clear", "STARTTLS\r\n", false, FRONT_CONTINUE,
	    "454 4.7.0 TLS not available\r\n", "" },
	{ "starttls refused inside tls: never TLS in TLS", "STARTTLS\r\n", true,
	    FRONT_CONTINUE, "554 5.5.1 Error: TLS already active\r\n", "" },
	{ "rcpt before mail", "RCPT TO:<a>\r\nDATA\r\nBDAT 10 LAST\r\n", false,
	    FRONT_CONTINUE, "503 5.5.1 Error: need MAIL command\r\n"
	    "503 5.5.1 Error: need MAIL command\r\n503 5.5.1 Error: need MAIL command\r\n", "" },
	{ "others", "VRFY a\r\nNOOP\r\nRSET\r\nEHLO\r\n", false, FRONT_CONTINUE,
	    "502 5.5.2 Error: command not recognized\r\n250 2.0.0 OK\r\n250 2.0.0 OK\r\n"
	    "501 5.5.4 Syntax: EHLO hostname\r\n", "" },
	{ "quit", "QUIT\r\nMAIL FROM:<a>\r\n", false, FRONT_CLOSE, "221 2.0.0 Bye\r\n",
	    "MAIL FROM:<a>\r\n" },
};

/*
 * Runs one script as a session would: bytes arrive (whole or one at a
 * time), are appended to what is left, and the front is fed all of it.
 */
static bool
frun(const struct fscript *sc, bool bytewise)
{
	struct front *f = front_new("gw.test", CAPS, sc->tls);
	size_t len = strlen(sc->input), have = 0, start = 0, consumed, got;
	enum front_verdict v = FRONT_CONTINUE;
	struct buf cl;
	const char *p;
	bool ok;

	buf_init(&cl, 65536);
	while (have < len && v == FRONT_CONTINUE) {
		have = bytewise ? have + 1 : len;
		v = front_feed(f, sc->input + start, have - start, &consumed, &cl);
		start += consumed;
	}
	p = buf_peek(&cl, &got);
	ok = v == sc->verdict && got == strlen(sc->replies) &&
	    (got == 0 || memcmp(p, sc->replies, got) == 0) &&
	    strcmp(sc->input + start, sc->left) == 0;
	if (!ok)
		fprintf(stderr, "  front %s (%s): verdict %d, replies %.*s, left %s\n",
		    sc->name, bytewise ? "bytes" : "whole", v, (int)got,
		    p ? p : "", sc->input + start);
	buf_release(&cl);
	front_free(f);
	return ok;
}

static void
test_front_limits(void)
{
	struct front *f = front_new("gw.test", "", false);
	static char line[FRONT_MAX_LINE + 10];
	struct buf cl;
	size_t consumed, got;
	const char *p;
	int i;

	buf_init(&cl, 65536);
	/* No keywords: a one-line EHLO reply. */
	CHECK(front_feed(f, "EHLO x\r\n", 8, &consumed, &cl) == FRONT_CONTINUE);
	p = buf_peek(&cl, &got);
	CHECK(got == 13 && memcmp(p, "250 gw.test\r\n", 13) == 0);
	buf_consume(&cl, got);
	/* A long AUTH line is fine up to the RFC 4954 limit. */
	memset(line, 'A', sizeof(line));
	memcpy(line, "AUTH PLAIN ", 11);
	memcpy(line + FRONT_MAX_LINE - 2, "\r\n", 2);
	CHECK(front_feed(f, line, FRONT_MAX_LINE, &consumed, &cl) == FRONT_CONTINUE &&
	    consumed == FRONT_MAX_LINE);
	buf_consume(&cl, buf_len(&cl));
	/* Longer, or endless: refused. */
	memset(line, 'A', sizeof(line));
	CHECK(front_feed(f, line, FRONT_MAX_LINE, &consumed, &cl) == FRONT_FAIL);
	CHECK(strcmp(reason_name(front_reason(f)), "client-line-too-long") == 0);
	front_free(f);
	buf_release(&cl);

	/* Twenty refused commands end the session. */
	f = front_new("gw.test", "", false);
	buf_init(&cl, 65536);
	for (i = 0; i < 19; i++)
		CHECK(front_feed(f, "XYZZY\r\n", 7, &consumed, &cl) == FRONT_CONTINUE);
	CHECK(front_feed(f, "XYZZY\r\n", 7, &consumed, &cl) == FRONT_FAIL);
	CHECK(strcmp(reason_name(front_reason(f)), "client-too-many-errors") == 0);
	front_free(f);
	buf_release(&cl);

	/* Timeout reply. */
	buf_init(&cl, 1024);
	front_timeout(&cl);
	p = buf_peek(&cl, &got);
	CHECK(p != NULL && memcmp(p, "421 4.4.2", 9) == 0);
	buf_release(&cl);
}

/* Every keyword of a long EHLO reply reaches the device (1024 bytes were
 * kept, cutting the list). */
static void
test_front_long_keyword_list(void)
{
	char caps[6000], want[7000];
	size_t n = 0, w = 0, got, consumed;
	struct buf cl;
	const char *p;
	struct front *f;

	w = (size_t)snprintf(want, sizeof(want), "250-gw.test\r\n");
	for (int i = 0; i < 200; i++) {
		n += (size_t)snprintf(caps + n, sizeof(caps) - n,
		    "X-KEYWORD-NUMBER-%03d\r\n", i);
		w += (size_t)snprintf(want + w, sizeof(want) - w,
		    "250%cX-KEYWORD-NUMBER-%03d\r\n", i == 199 ? ' ' : '-', i);
	}
	f = front_new("gw.test", caps, true);
	buf_init(&cl, 65536);
	CHECK(front_feed(f, "EHLO x\r\n", 8, &consumed, &cl) == FRONT_CONTINUE);
	p = buf_peek(&cl, &got);
	CHECK(p != NULL && got == w && memcmp(p, want, w) == 0);
	buf_release(&cl);
	front_free(f);
}

/*
 * accounts: an AUTH PLAIN whose initial response is not a credential, or
 * an unknown mechanism, is an error like a bad command: a device that
 * keeps sending them is cut after CNEG_MAX_ERRORS with a 421.
 */
static int
front_errors_until_cut(const char *line)
{
	struct front *f = front_new_accounts("gw.test", true);
	enum front_verdict v = FRONT_CONTINUE;
	size_t consumed, got;
	struct buf cl;
	const char *p;
	int n = 0;

	buf_init(&cl, 65536);
	while (v == FRONT_CONTINUE && n < 100) {
		v = front_feed(f, line, strlen(line), &consumed, &cl);
		n++;
	}
	p = buf_peek(&cl, &got);
	CHECK(v == FRONT_FAIL && p != NULL && got > 27 &&
	    memcmp(p + got - 27, "421 4.7.0 Too many errors\r\n", 27) == 0);
	CHECK(strcmp(reason_name(front_reason(f)),
	    "client-too-many-errors") == 0);
	buf_release(&cl);
	front_free(f);
	return n;
}

static void
test_front_auth_errors_counted(void)
{
	CHECK(front_errors_until_cut("AUTH PLAIN !!!\r\n") == CNEG_MAX_ERRORS);
	/* base64 of "no-nul-here": not user\0user\0password */
	CHECK(front_errors_until_cut("AUTH PLAIN bm8tbnVsLWhlcmU=\r\n") ==
	    CNEG_MAX_ERRORS);
	CHECK(front_errors_until_cut("AUTH XOAUTH9\r\n") == CNEG_MAX_ERRORS);
	CHECK(front_errors_until_cut("AUTH\r\n") == CNEG_MAX_ERRORS);
}

void
test_front(void)
{
	for (size_t i = 0; i < sizeof(fscripts) / sizeof(*fscripts); i++) {
		CHECK(frun(&fscripts[i], false));
		CHECK(frun(&fscripts[i], true));
	}
	test_front_limits();
	test_front_long_keyword_list();
	test_front_auth_errors_counted();
}
