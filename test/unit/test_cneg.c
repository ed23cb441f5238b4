/*
 * Client-side negotiators (client_tls = starttls): the proxy's answers
 * before TLS, every refusal, and the injection shapes of CVE-2011-0411 and
 * the 2021 "NO STARTTLS" study, fed whole and one byte at a time.
 */
#include <stdlib.h>

#include "negotiate.h"
#include "unit.h"

struct cscript {
	const char		*name;
	enum proto		 proto;
	const char		*input;
	size_t			 input_len;	/* 0: strlen */
	enum cneg_verdict	 verdict;
	const char		*replies;	/* after the greeting */
	size_t			 consumed;	/* (size_t)-1: all */
	const char		*reason;
};

#define ALL	((size_t)-1)

static const struct cscript cscripts[] = {
	{ "smtp ehlo starttls", PROTO_SMTP, "EHLO dev\r\nSTARTTLS\r\n", 0,
	    CNEG_START_TLS, "250-gw.test\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES"
	    "\r\n250 STARTTLS\r\n220 2.0.0 Ready to start TLS\r\n", ALL, NULL },
	{ "smtp refuses mail before tls", PROTO_SMTP,
	    "HELO dev\r\nMAIL FROM:<a@b>\r\nAUTH PLAIN AGZvbwBiYXI=\r\nNOOP\r\nRSET\r\n", 0,
	    CNEG_CONTINUE, "250 gw.test\r\n530 5.7.0 Must issue a STARTTLS command first\r\n"
	    "530 5.7.0 Must issue a STARTTLS command first\r\n250 2.0.0 OK\r\n250 2.0.0 OK\r\n",
	    ALL, NULL },
	{ "smtp quit", PROTO_SMTP, "QUIT\r\n", 0, CNEG_CLOSE, "221 2.0.0 Bye\r\n", ALL, NULL },
	{ "smtp bare LF accepted", PROTO_SMTP, "EHLO dev\nSTARTTLS\n", 0,
	    CNEG_START_TLS, NULL, ALL, NULL },
	{ "smtp injection one write", PROTO_SMTP, "STARTTLS\r\nRSET\r\n", 0,
	    CNEG_FAIL, "", 10, "client-injection" },
	{ "smtp pipelined ehlo+starttls+hello", PROTO_SMTP,
	    "EHLO x\r\nSTARTTLS\r\n\x16\x03\x01\x00\x05hello", 0, CNEG_START_TLS,
	    NULL, 18, NULL },
	{ "smtp starttls with argument", PROTO_SMTP, "STARTTLS now\r\n", 0,
	    CNEG_CONTINUE, "501 5.5.4 Syntax: STARTTLS\r\n", ALL, NULL },
	{ "smtp ehlo without name", PROTO_SMTP, "EHLO\r\n", 0, CNEG_CONTINUE,
	    "501 5.5.4 Syntax: EHLO hostname\r\n", ALL, NULL },
	{ "pop3 capa stls", PROTO_POP3, "CAPA\r\nSTLS\r\n", 0, CNEG_START_TLS,
	    "+OK Capability list follows\r\nSTLS\r\nIMPLEMENTATION mailproxy\r\n.\r\n"
	    "+OK Begin TLS negotiation\r\n", ALL, NULL },
	{ "pop3 refuses login", PROTO_POP3, "USER alice\r\nPASS x\r\nAPOP a b\r\n"
	    "AUTH PLAIN\r\nRETR 1\r\n", 0, CNEG_CONTINUE,
	    "-ERR [AUTH] Must issue STLS first\r\n-ERR [AUTH] Must issue STLS first\r\n"
	    "-ERR [AUTH] Must issue STLS first\r\n-ERR [AUTH] Must issue STLS first\r\n"
	    "-ERR Command not permitted before STLS\r\n", ALL, NULL },
	{ "pop3 injection", PROTO_POP3, "STLS\r\nUSER alice\r\n", 0, CNEG_FAIL, "",
	    6, "client-injection" },
	{ "pop3 quit", PROTO_POP3, "QUIT\r\n", 0, CNEG_CLOSE, "+OK Bye\r\n", ALL, NULL },
	{ "imap capability starttls", PROTO_IMAP, "a1 CAPABILITY\r\na2 STARTTLS\r\n", 0,
	    CNEG_START_TLS, "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n"
	    "a1 OK CAPABILITY completed\r\na2 OK Begin TLS negotiation now\r\n", ALL, NULL },
	{ "imap refuses login", PROTO_IMAP, "a LOGIN alice secret\r\n"
	    "b AUTHENTICATE PLAIN\r\nc SELECT INBOX\r\nd NOOP\r\n", 0, CNEG_CONTINUE,
	    "a NO [PRIVACYREQUIRED] Use STARTTLS first\r\n"
	    "b NO [PRIVACYREQUIRED] Use STARTTLS first\r\n"
	    "c BAD Command not permitted before STARTTLS\r\nd OK NOOP completed\r\n",
	    ALL, NULL },
	{ "imap logout", PROTO_IMAP, "z LOGOUT\r\n", 0, CNEG_CLOSE,
	    "* BYE Logging out\r\nz OK LOGOUT completed\r\n", ALL, NULL },
	{ "imap injection", PROTO_IMAP, "a STARTTLS\r\nb LOGIN alice secret\r\n", 0,
	    CNEG_FAIL, "", 12, "client-injection" },
	{ "imap junk", PROTO_IMAP, "hello\r\n", 0, CNEG_CONTINUE,
	    "* BAD Invalid command\r\n", ALL, NULL },
	/* A literal before TLS: refused, its bytes never read as commands. */
	{ "imap non-synchronizing literal", PROTO_IMAP,
	    "a LOGIN {5+}\r\nb STARTTLS\r\n", 0, CNEG_FAIL,
	    "a BAD Literals are not accepted before STARTTLS\r\n* BYE Closing connection\r\n",
	    14, "client-literal-before-starttls" },
	{ "imap synchronizing literal", PROTO_IMAP,
	    "x1 ID {18}\r\n", 0, CNEG_FAIL,
	    "x1 BAD Literals are not accepted before STARTTLS\r\n* BYE Closing connection\r\n",
	    ALL, "client-literal-before-starttls" },
	{ "imap literal in an untagged line", PROTO_IMAP,
	    "* {3+}\r\nabc\r\n", 0, CNEG_FAIL,
	    "* BAD Literals are not accepted before STARTTLS\r\n* BYE Closing connection\r\n",
	    8, "client-literal-before-starttls" },
	/* A NUL is a syntax error, never the end of the command. */
	{ "smtp NUL", PROTO_SMTP, "STARTTLS\0x\r\nQUIT\0\r\n", 19, CNEG_CONTINUE,
	    "501 5.5.2 Syntax error: NUL byte in command\r\n"
	    "501 5.5.2 Syntax error: NUL byte in command\r\n", ALL, NULL },
	{ "pop3 NUL", PROTO_POP3, "STLS\0\r\n", 7, CNEG_CONTINUE,
	    "-ERR Syntax error: NUL byte in command\r\n", ALL, NULL },
	{ "imap NUL", PROTO_IMAP, "a STARTTLS\0\r\nb LOGOUT\0x\r\n", 25, CNEG_CONTINUE,
	    "* BAD Syntax error: NUL byte in command\r\n"
	    "* BAD Syntax error: NUL byte in command\r\n", ALL, NULL },
};

static bool
crun(const struct cscript *sc, bool bytewise)
{
	struct cneg *c = cneg_new(sc->proto, "gw.test");
	size_t len = sc->input_len ? sc->input_len : strlen(sc->input);
	size_t off = 0, consumed, total = 0, glen, rlen;
	enum cneg_verdict v = CNEG_CONTINUE;
	struct buf out;
	const char *p;
	bool ok = true;

	buf_init(&out, 1 << 16);
	cneg_greet(c, &out);
	glen = buf_len(&out);
	while (off < len && v == CNEG_CONTINUE) {
		/* Byte-wise: one byte per read, except that the bytes after a
		 * STARTTLS line arrive with it (the "same read" case). */
		size_t n = bytewise ? 1 : len - off;
		if (bytewise && off + 1 < len && sc->input[off] == '\n')
			n = 1;
		v = cneg_feed(c, sc->input + off, n, &consumed, &out);
		total += consumed;
		off += n;
		if (bytewise && v == CNEG_START_TLS && off < len) {
			/* The rest arrives later: it goes to BoringSSL, not us. */
			break;
		}
	}
	if (!bytewise && v != sc->verdict) {
		fprintf(stderr, "  %s: verdict %d want %d\n", sc->name, v,
		    sc->verdict);
		ok = false;
	}
	if (bytewise && v != sc->verdict &&
	    !(sc->verdict == CNEG_FAIL && v == CNEG_START_TLS)) {
		/* Split over reads, an injection reaches BoringSSL instead
		 * (which fails the handshake): START_TLS is right then. */
		fprintf(stderr, "  %s (bytes): verdict %d\n", sc->name, v);
		ok = false;
	}
	if (!bytewise && sc->consumed != ALL && total != sc->consumed) {
		fprintf(stderr, "  %s: consumed %zu want %zu\n", sc->name,
		    total, sc->consumed);
		ok = false;
	}
	p = buf_peek(&out, &rlen);
	if (sc->replies != NULL && !(bytewise && sc->verdict == CNEG_FAIL)) {
		/* An injection releases everything, the greeting too. */
		size_t base = sc->verdict == CNEG_FAIL && rlen < glen ? 0 : glen;
		const char *r = p ? p + base : "";
		size_t want = strlen(sc->replies);
		size_t have = rlen - base;
		if (have != want || memcmp(r, sc->replies, want) != 0) {
			fprintf(stderr, "  %s: replies [%.*s]\n", sc->name,
			    (int)have, r);
			ok = false;
		}
	}
	if (!bytewise && sc->reason != NULL &&
	    strcmp(reason_name(cneg_reason(c)), sc->reason) != 0) {
		fprintf(stderr, "  %s: reason %s\n", sc->name, reason_name(cneg_reason(c)));
		ok = false;
	}
	buf_release(&out);
	cneg_free(c);
	return ok;
}

static void
test_greetings(void)
{
	static const struct { enum proto p; const char *g; } gs[] = {
		{ PROTO_SMTP, "220 gw.test ESMTP mailproxy ready\r\n" },
		{ PROTO_POP3, "+OK gw.test POP3 mailproxy ready\r\n" },
		{ PROTO_IMAP, "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] "
		    "gw.test mailproxy ready\r\n" },
	};
	for (size_t i = 0; i < 3; i++) {
		struct cneg *c = cneg_new(gs[i].p, "gw.test");
		struct buf out;
		size_t len;
		const char *p;

		buf_init(&out, 1024);
		cneg_greet(c, &out);
		p = buf_peek(&out, &len);
		CHECK(len == strlen(gs[i].g) && memcmp(p, gs[i].g, len) == 0);
		buf_release(&out);
		cneg_free(c);
	}
}

static void
test_limits_and_errors(void)
{
	struct cneg *c = cneg_new(PROTO_SMTP, "gw.test");
	struct buf out;
	size_t consumed;
	char line[600];
	enum cneg_verdict v = CNEG_CONTINUE;

	buf_init(&out, 1 << 16);
	memset(line, 'A', sizeof(line));
	CHECK(cneg_feed(c, line, sizeof(line), &consumed, &out) == CNEG_FAIL);
	CHECK(strcmp(reason_name(cneg_reason(c)), "client-line-too-long") == 0);
	cneg_free(c);
	buf_release(&out);

	/* A client that only sends refused commands is cut off. */
	c = cneg_new(PROTO_SMTP, "gw.test");
	for (int i = 0; i < 30 && v == CNEG_CONTINUE; i++)
		v = cneg_feed(c, "DATA\r\n", 6, &consumed, &out);
	CHECK(v == CNEG_FAIL);
	CHECK(strcmp(reason_name(cneg_reason(c)), "client-too-many-errors") == 0);
	cneg_free(c);
	buf_release(&out);
}

void
test_cneg(void)
{
	for (size_t i = 0; i < sizeof(cscripts) / sizeof(*cscripts); i++) {
		CHECK(crun(&cscripts[i], false));
		CHECK(crun(&cscripts[i], true));
	}
	test_greetings();
	test_limits_and_errors();
}
