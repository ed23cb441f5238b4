/*
 * negotiators: every protocol's happy path and each failure rule, with the
 * upstream's bytes fed whole, one byte at a time, and split in two at every
 * boundary.  Nothing may reach the client before neg_tls_ready().
 */
#include <stdlib.h>

#include <openssl/base64.h>

#include "negotiate.h"
#include "redact.h"
#include "secret.h"
#include "unit.h"

#define TLS_UP	((const char *)1)
#define NSTEPS	8	/* step: the TLS handshake succeeded */

struct step {
	const char		*server;	/* bytes from upstream, or TLS_UP */
	const char		*expect_cmd;	/* what we must send upstream */
	enum neg_verdict	 verdict;
};

struct script {
	const char		*name;
	enum proto		 proto;
	struct step		 steps[NSTEPS];
	const char		*client;	/* greeting at RELAY */
	const char		*reason;	/* at FAIL */
	bool			 whole_only;	/* outcome depends on framing */
	int			 auth;		/* upstream_auth as alice/s3cr3t
						   (xoauth2: token tok3n) */
	bool			 implicit;	/* no STARTTLS: TLS from the start */
};

/* What every AUTH script's post-TLS EHLO looks like. */
#define AUTH_EHLO	"250-mail.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n" \
	"250-AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER\r\n250 8BITMIME\r\n"
/* The same from a server that offers LOGIN only (an account's password
 * then goes as AUTH LOGIN). */
#define AUTH_EHLO_LOGIN	"250-mail.test\r\n250 AUTH LOGIN\r\n"
#define UP_TO_TLS \
	    { "220 x\r\n", "EHLO proxy.test\r\n", NEG_CONTINUE }, \
	    { "250-x\r\n250 STARTTLS\r\n", "STARTTLS\r\n", NEG_CONTINUE }, \
	    { "220 go\r\n", "", NEG_START_TLS }, \
	    { TLS_UP, "EHLO proxy.test\r\n", NEG_CONTINUE }

static const struct script scripts[] = {
	/* ---- SMTP ---- */
	{ "smtp happy", PROTO_SMTP, {
	    { "220-mail.test ESMTP\r\n220 second line\r\n", "EHLO proxy.test\r\n", NEG_CONTINUE },
	    { "250-mail.test hello\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n", "STARTTLS\r\n", NEG_CONTINUE },
	    { "220 2.0.0 Ready to start TLS\r\n", "", NEG_START_TLS },
	    { TLS_UP, "", NEG_RELAY } }, "220 proxy.test ESMTP ready\r\n", NULL, false, 0, false },
	{ "smtp keyword any case", PROTO_SMTP, {
	    { "220 x\r\n", "EHLO proxy.test\r\n", NEG_CONTINUE },
	    { "250-x\r\n250 starttls\r\n", "STARTTLS\r\n", NEG_CONTINUE },
	    { "220 go\r\n", "", NEG_START_TLS },
	    { TLS_UP, "", NEG_RELAY } }, "220 proxy.test ESMTP ready\r\n", NULL, false, 0, false },
	{ "smtp no starttls", PROTO_SMTP, {
	    { "220 x\r\n", "EHLO proxy.test\r\n", NEG_CONTINUE },
	    { "250-x\r\n250 SIZE 100\r\n", "", NEG_FAIL } }, NULL, "upstream-no-starttls", false, 0, false },
	{ "smtp starttls only as the domain", PROTO_SMTP, {
	    { "220 x\r\n", "EHLO proxy.test\r\n", NEG_CONTINUE },
	    { "250-STARTTLS\r\n250 SIZE\r\n", "", NEG_FAIL } }, NULL, "upstream-no-starttls", false, 0, false },
	{ "smtp keyword must be whole", PROTO_SMTP, {
	    { "220 x\r\n", "EHLO proxy.test\r\n", NEG_CONTINUE },
	    { "250-x\r\n250-XSTARTTLS\r\n250 STARTTLSX\r\n", "", NEG_FAIL } }, NULL, "upstream-no-starttls", false, 0, false },
	{ "smtp starttls refused 454", PROTO_SMTP, {
	    { "220 x\r\n", "EHLO proxy.test\r\n", NEG_CONTINUE },
	    { "250-x\r\n250 STARTTLS\r\n", "STARTTLS\r\n", NEG_CONTINUE },
	    { "454 4.7.0 TLS not available\r\n", "", NEG_FAIL } }, NULL, "upstream-starttls-refused", false, 0, false },
	{ "smtp starttls refused 502", PROTO_SMTP, {
	    { "220 x\r\n", "EHLO proxy.test\r\n", NEG_CONTINUE },
	    { "250-x\r\n250 STARTTLS\r\n", "STARTTLS\r\n", NEG_CONTINUE },
	    { "502 5.5.1 no\r\n", "", NEG_FAIL } }, NULL, "upstream-starttls-refused", false, 0, false },
	{ "smtp injection after 220", PROTO_SMTP, {
	    { "220 x\r\n", "EHLO proxy.test\r\n", NEG_CONTINUE },
	    { "250-x\r\n250 STARTTLS\r\n", "STARTTLS\r\n", NEG_CONTINUE },
	    { "220 go\r\n250 injected\r\n", "", NEG_FAIL } }, NULL, "upstream-injection", false, 0, false },
	{ "smtp partial injection after 220", PROTO_SMTP, {
	    { "220 x\r\n", "EHLO proxy.test\r\n", NEG_CONTINUE },
	    { "250-x\r\n250 STARTTLS\r\n", "STARTTLS\r\n", NEG_CONTINUE },
	    { "220 go\r\nX", "", NEG_FAIL } }, NULL, "upstream-injection", false, 0, false },
	{ "smtp unsolicited after greeting", PROTO_SMTP, {
	    { "220 x\r\n250 STARTTLS\r\n", "EHLO proxy.test\r\n", NEG_FAIL } }, NULL, "upstream-unsolicited", true, 0, false },
	{ "smtp greeting 554", PROTO_SMTP, {
	    { "554 go away\r\n", "", NEG_FAIL } }, NULL, "upstream-refused", false, 0, false },
	{ "smtp greeting not 220", PROTO_SMTP, {
	    { "250 hello\r\n", "", NEG_FAIL } }, NULL, "upstream-bad-greeting", false, 0, false },
	{ "smtp garbage", PROTO_SMTP, {
	    { "HTTP/1.1 400 Bad\r\n", "", NEG_FAIL } }, NULL, "upstream-protocol-error", false, 0, false },
	{ "smtp mixed codes", PROTO_SMTP, {
	    { "220-x\r\n221 y\r\n", "", NEG_FAIL } }, NULL, "upstream-protocol-error", false, 0, false },
	{ "smtp bare LF", PROTO_SMTP, {
	    { "220 x\n", "", NEG_FAIL } }, NULL, "upstream-protocol-error", false, 0, false },
	{ "smtp NUL", PROTO_SMTP, {
	    { "220 x\0y\r\n", "", NEG_FAIL } }, NULL, "upstream-protocol-error", false, 0, false },
	{ "smtp ehlo refused", PROTO_SMTP, {
	    { "220 x\r\n", "EHLO proxy.test\r\n", NEG_CONTINUE },
	    { "502 no ehlo\r\n", "", NEG_FAIL } }, NULL, "upstream-ehlo-refused", false, 0, false },
	/* ---- SMTP upstream_auth (the secret never goes anywhere else) ---- */
	{ "smtp auth plain", PROTO_SMTP, { UP_TO_TLS,
	    { AUTH_EHLO, "AUTH PLAIN AGFsaWNlAHMzY3IzdA==\r\n", NEG_CONTINUE },
	    { "235 2.7.0 Authentication successful\r\n", "", NEG_RELAY } },
	    "220 proxy.test ESMTP ready\r\n", NULL, false, AUTH_PLAIN, false },
	{ "smtp auth login", PROTO_SMTP, { UP_TO_TLS,
	    { AUTH_EHLO, "AUTH LOGIN\r\n", NEG_CONTINUE },
	    { "334 VXNlcm5hbWU6\r\n", "YWxpY2U=\r\n", NEG_CONTINUE },
	    { "334 UGFzc3dvcmQ6\r\n", "czNjcjN0\r\n", NEG_CONTINUE },
	    { "235 2.7.0 ok\r\n", "", NEG_RELAY } },
	    "220 proxy.test ESMTP ready\r\n", NULL, false, AUTH_LOGIN, false },
	{ "smtp auth xoauth2", PROTO_SMTP, { UP_TO_TLS,
	    { AUTH_EHLO, "AUTH XOAUTH2 dXNlcj1hbGljZQFhdXRoPUJlYXJlciB0b2szbgEB\r\n", NEG_CONTINUE },
	    { "235 2.7.0 Accepted\r\n", "", NEG_RELAY } },
	    "220 proxy.test ESMTP ready\r\n", NULL, false, AUTH_XOAUTH2, false },
	{ "smtp auth xoauth2 refused with a 334 error", PROTO_SMTP, { UP_TO_TLS,
	    { AUTH_EHLO, "AUTH XOAUTH2 dXNlcj1hbGljZQFhdXRoPUJlYXJlciB0b2szbgEB\r\n", NEG_CONTINUE },
	    { "334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=\r\n", "\r\n", NEG_CONTINUE },
	    { "535 5.7.3 Authentication unsuccessful\r\n", "", NEG_FAIL } },
	    NULL, "upstream-auth-refused", false, AUTH_XOAUTH2, false },
	{ "smtp auth oauthbearer", PROTO_SMTP, { UP_TO_TLS,
	    { AUTH_EHLO, "AUTH OAUTHBEARER bixhPWFsaWNlLAFhdXRoPUJlYXJlciB0b2szbgEB\r\n", NEG_CONTINUE },
	    { "235 2.7.0 Accepted\r\n", "", NEG_RELAY } },
	    "220 proxy.test ESMTP ready\r\n", NULL, false, AUTH_OAUTHBEARER, false },
	{ "smtp auth oauthbearer refused: the error answered with ^A", PROTO_SMTP, { UP_TO_TLS,
	    { AUTH_EHLO, "AUTH OAUTHBEARER bixhPWFsaWNlLAFhdXRoPUJlYXJlciB0b2szbgEB\r\n", NEG_CONTINUE },
	    { "334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=\r\n", "AQ==\r\n", NEG_CONTINUE },
	    { "535 5.7.8 Authentication failed\r\n", "", NEG_FAIL } },
	    NULL, "upstream-auth-refused", false, AUTH_OAUTHBEARER, false },
	{ "smtp auth refused 535", PROTO_SMTP, { UP_TO_TLS,
	    { AUTH_EHLO, "AUTH PLAIN AGFsaWNlAHMzY3IzdA==\r\n", NEG_CONTINUE },
	    { "535 5.7.8 Error: authentication failed\r\n", "", NEG_FAIL } },
	    NULL, "upstream-auth-refused", false, AUTH_PLAIN, false },
	{ "smtp auth login user refused", PROTO_SMTP, { UP_TO_TLS,
	    { AUTH_EHLO, "AUTH LOGIN\r\n", NEG_CONTINUE },
	    { "504 5.5.4 no\r\n", "", NEG_FAIL } },
	    NULL, "upstream-auth-refused", false, AUTH_LOGIN, false },
	{ "smtp auth mechanism not offered", PROTO_SMTP, { UP_TO_TLS,
	    { "250-x\r\n250-AUTH LOGIN\r\n250 SIZE 10\r\n", "", NEG_FAIL } },
	    NULL, "upstream-auth-unavailable", false, AUTH_PLAIN, false },
	{ "smtp auth not offered at all", PROTO_SMTP, { UP_TO_TLS,
	    { "250-x\r\n250 SIZE 10\r\n", "", NEG_FAIL } },
	    NULL, "upstream-auth-unavailable", false, AUTH_PLAIN, false },
	{ "smtp auth old AUTH= form", PROTO_SMTP, { UP_TO_TLS,
	    { "250-x\r\n250 AUTH=LOGIN PLAIN\r\n", "AUTH PLAIN AGFsaWNlAHMzY3IzdA==\r\n", NEG_CONTINUE },
	    { "235 ok\r\n", "", NEG_RELAY } },
	    "220 proxy.test ESMTP ready\r\n", NULL, false, AUTH_PLAIN, false },
	{ "smtp auth mechanism must be a whole word", PROTO_SMTP, { UP_TO_TLS,
	    { "250-x\r\n250 AUTH XPLAIN PLAINX\r\n", "", NEG_FAIL } },
	    NULL, "upstream-auth-unavailable", false, AUTH_PLAIN, false },
	{ "smtp auth ehlo refused after tls", PROTO_SMTP, { UP_TO_TLS,
	    { "554 no\r\n", "", NEG_FAIL } },
	    NULL, "upstream-ehlo-refused", false, AUTH_PLAIN, false },
	{ "smtp auth implicit tls", PROTO_SMTP, {
	    { "220 mail.test ESMTP\r\n", "EHLO proxy.test\r\n", NEG_CONTINUE },
	    { AUTH_EHLO, "AUTH PLAIN AGFsaWNlAHMzY3IzdA==\r\n", NEG_CONTINUE },
	    { "235 ok\r\n", "", NEG_RELAY } },
	    "220 proxy.test ESMTP ready\r\n", NULL, false, AUTH_PLAIN, true },
	{ "smtp auth unsolicited after 235", PROTO_SMTP, { UP_TO_TLS,
	    { AUTH_EHLO, "AUTH PLAIN AGFsaWNlAHMzY3IzdA==\r\n", NEG_CONTINUE },
	    { "235 ok\r\n250 extra\r\n", "", NEG_FAIL } },
	    NULL, "upstream-unsolicited", true, AUTH_PLAIN, false },
	{ "smtp auth unsolicited after EHLO", PROTO_SMTP, { UP_TO_TLS,
	    { AUTH_EHLO "235 early\r\n", "", NEG_FAIL } },
	    NULL, "upstream-unsolicited", true, AUTH_PLAIN, false },
	/* ---- POP3 ---- */
	{ "pop3 happy", PROTO_POP3, {
	    { "+OK POP3 ready <1.2@x>\r\n", "CAPA\r\n", NEG_CONTINUE },
	    { "+OK caps\r\nTOP\r\nUSER\r\nSTLS\r\nSASL PLAIN\r\n.\r\n", "STLS\r\n", NEG_CONTINUE },
	    { "+OK begin TLS\r\n", "", NEG_START_TLS },
	    { TLS_UP, "", NEG_RELAY } }, "+OK ready\r\n", NULL, false, 0, false },
	{ "pop3 no stls", PROTO_POP3, {
	    { "+OK\r\n", "CAPA\r\n", NEG_CONTINUE },
	    { "+OK\r\nTOP\r\nSTLSX\r\n.\r\n", "", NEG_FAIL } }, NULL, "upstream-no-starttls", false, 0, false },
	/* CAPA is optional (RFC 2449): STLS is tried all the same. */
	{ "pop3 capa refused, stls taken", PROTO_POP3, {
	    { "+OK\r\n", "CAPA\r\n", NEG_CONTINUE },
	    { "-ERR no capa\r\n", "STLS\r\n", NEG_CONTINUE },
	    { "+OK begin TLS\r\n", "", NEG_START_TLS },
	    { TLS_UP, "", NEG_RELAY } }, "+OK ready\r\n", NULL, false, 0, false },
	{ "pop3 capa and stls refused", PROTO_POP3, {
	    { "+OK\r\n", "CAPA\r\n", NEG_CONTINUE },
	    { "-ERR no capa\r\n", "STLS\r\n", NEG_CONTINUE },
	    { "-ERR no\r\n", "", NEG_FAIL } }, NULL, "upstream-starttls-refused", false, 0, false },
	{ "pop3 capa refused, injection after stls", PROTO_POP3, {
	    { "+OK\r\n", "CAPA\r\n", NEG_CONTINUE },
	    { "-ERR no capa\r\n", "STLS\r\n", NEG_CONTINUE },
	    { "+OK go\r\n+OK x\r\n", "", NEG_FAIL } }, NULL, "upstream-injection", false, 0, false },
	{ "pop3 stls refused", PROTO_POP3, {
	    { "+OK\r\n", "CAPA\r\n", NEG_CONTINUE },
	    { "+OK\r\nSTLS\r\n.\r\n", "STLS\r\n", NEG_CONTINUE },
	    { "-ERR not now\r\n", "", NEG_FAIL } }, NULL, "upstream-starttls-refused", false, 0, false },
	{ "pop3 injection", PROTO_POP3, {
	    { "+OK\r\n", "CAPA\r\n", NEG_CONTINUE },
	    { "+OK\r\nSTLS\r\n.\r\n", "STLS\r\n", NEG_CONTINUE },
	    { "+OK go\r\n+OK logged in\r\n", "", NEG_FAIL } }, NULL, "upstream-injection", false, 0, false },
	{ "pop3 greeting -ERR", PROTO_POP3, {
	    { "-ERR busy\r\n", "", NEG_FAIL } }, NULL, "upstream-refused", false, 0, false },
	{ "pop3 unsolicited", PROTO_POP3, {
	    { "+OK\r\n+OK\r\n", "CAPA\r\n", NEG_FAIL } }, NULL, "upstream-unsolicited", true, 0, false },
	/* ---- IMAP ---- */
	{ "imap happy, caps in greeting", PROTO_IMAP, {
	    { "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n", "mp1 STARTTLS\r\n", NEG_CONTINUE },
	    { "mp1 OK Begin TLS now\r\n", "", NEG_START_TLS },
	    { TLS_UP, "mp2 CAPABILITY\r\n", NEG_CONTINUE },
	    { "* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN IDLE\r\nmp2 OK done\r\n", "", NEG_RELAY } },
	    "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN IDLE] ready\r\n", NULL, false, 0, false },
	{ "imap happy, asks capability first", PROTO_IMAP, {
	    { "* OK hello\r\n", "mp1 CAPABILITY\r\n", NEG_CONTINUE },
	    { "* CAPABILITY IMAP4rev1 STARTTLS\r\nmp1 OK done\r\n", "mp2 STARTTLS\r\n", NEG_CONTINUE },
	    { "mp2 OK go\r\n", "", NEG_START_TLS },
	    { TLS_UP, "mp3 CAPABILITY\r\n", NEG_CONTINUE },
	    { "* CAPABILITY IMAP4rev1\r\nmp3 OK\r\n", "", NEG_RELAY } },
	    "* OK [CAPABILITY IMAP4rev1] ready\r\n", NULL, false, 0, false },
	{ "imap starttls tried though not listed", PROTO_IMAP, {
	    { "* OK [CAPABILITY IMAP4rev1] hi\r\n", "mp1 STARTTLS\r\n", NEG_CONTINUE },
	    { "mp1 BAD unknown command\r\n", "", NEG_FAIL } }, NULL, "upstream-starttls-refused", false, 0, false },
	{ "imap starttls NO", PROTO_IMAP, {
	    { "* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n", "mp1 STARTTLS\r\n", NEG_CONTINUE },
	    { "mp1 NO not now\r\n", "", NEG_FAIL } }, NULL, "upstream-starttls-refused", false, 0, false },
	{ "imap preauth", PROTO_IMAP, {
	    { "* PREAUTH logged in already\r\n", "", NEG_FAIL } }, NULL, "upstream-preauth", false, 0, false },
	{ "imap bye", PROTO_IMAP, {
	    { "* BYE too busy\r\n", "", NEG_FAIL } }, NULL, "upstream-refused", false, 0, false },
	{ "imap wrong tag", PROTO_IMAP, {
	    { "* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n", "mp1 STARTTLS\r\n", NEG_CONTINUE },
	    { "mp9 OK go\r\n", "", NEG_FAIL } }, NULL, "upstream-protocol-error", false, 0, false },
	{ "imap literal before TLS", PROTO_IMAP, {
	    { "* OK hi\r\n", "mp1 CAPABILITY\r\n", NEG_CONTINUE },
	    { "* CAPABILITY {8}\r\n", "", NEG_FAIL } }, NULL, "upstream-protocol-error", false, 0, false },
	{ "imap injection", PROTO_IMAP, {
	    { "* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n", "mp1 STARTTLS\r\n", NEG_CONTINUE },
	    { "mp1 OK go\r\n* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake\r\n", "", NEG_FAIL } }, NULL, "upstream-injection", false, 0, false },
	{ "imap bye while waiting", PROTO_IMAP, {
	    { "* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n", "mp1 STARTTLS\r\n", NEG_CONTINUE },
	    { "* BYE shutting down\r\n", "", NEG_FAIL } }, NULL, "upstream-refused", false, 0, false },
	{ "imap unsolicited after post-TLS capability", PROTO_IMAP, {
	    { "* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n", "mp1 STARTTLS\r\n", NEG_CONTINUE },
	    { "mp1 OK go\r\n", "", NEG_START_TLS },
	    { TLS_UP, "mp2 CAPABILITY\r\n", NEG_CONTINUE },
	    { "* CAPABILITY IMAP4rev1\r\nmp2 OK\r\n* 1 EXISTS\r\n", "", NEG_FAIL } },
	    NULL, "upstream-unsolicited", true, 0, false },
};

enum feed_mode { FEED_WHOLE, FEED_BYTES, FEED_SPLIT };

static size_t
step_len(const struct step *st)
{
	/* Scripts with NUL inside carry it as the only NUL before CRLF. */
	size_t n = strlen(st->server);

	if (strcmp(st->server, "220 x") == 0)
		n = 9;		/* "220 x\0y\r\n" */
	return n;
}

/*
 * Runs one script; split is the boundary used for step split_step (FEED_SPLIT
 * mode).  Returns false (and reports) on the first mismatch.
 */
static bool
run(const struct script *sc, enum feed_mode mode, size_t split_step,
    size_t split)
{
	struct negotiator *n = neg_new(sc->proto, "proxy.test", !sc->implicit,
	    true);
	struct buf up, cl;
	struct neg_out out = { &up, &cl };
	enum neg_verdict v = NEG_CONTINUE;
	bool ok = true;
	size_t i;

	buf_init(&up, 4096);
	buf_init(&cl, 4096);
	if (sc->auth == AUTH_XOAUTH2 || sc->auth == AUTH_OAUTHBEARER)
		CHECK(neg_set_auth(n, sc->auth, "alice", "tok3n", 5) == 0);
	else if (sc->auth != AUTH_NONE)
		CHECK(neg_set_auth(n, sc->auth, "alice", "s3cr3t", 6) == 0);
	for (i = 0; i < NSTEPS && sc->steps[i].server != NULL && ok; i++) {
		const struct step *st = &sc->steps[i];
		size_t len, got;
		const char *p;

		if (st->server == TLS_UP)
			v = neg_tls_ready(n, &out);
		else {
			len = step_len(st);
			if (mode == FEED_BYTES) {
				/* After START_TLS the rest still arrives. */
				for (size_t k = 0; k < len; k++) {
					v = neg_feed(n, st->server + k, 1, &out);
					if (v == NEG_FAIL || v == NEG_RELAY)
						break;
				}
			} else if (mode == FEED_SPLIT && i == split_step &&
			    split < len) {
				v = neg_feed(n, st->server, split, &out);
				if (v == NEG_CONTINUE || v == NEG_START_TLS)
					v = neg_feed(n, st->server + split,
					    len - split, &out);
			} else
				v = neg_feed(n, st->server, len, &out);
		}
		if (v != st->verdict) {
			/* Byte feeding may fail earlier, never differently. */
			ok = v == NEG_FAIL && st->verdict == NEG_FAIL;
			if (!ok)
				fprintf(stderr, "  %s step %zu: verdict %d, "
				    "want %d (%s)\n", sc->name, i, v,
				    st->verdict, neg_detail(n));
			break;
		}
		p = buf_peek(&up, &got);
		if (st->verdict != NEG_FAIL && (got != strlen(st->expect_cmd) ||
		    (got > 0 && memcmp(p, st->expect_cmd, got) != 0))) {
			fprintf(stderr, "  %s step %zu: sent %.*s\n", sc->name,
			    i, (int)got, p ? p : "");
			ok = false;
		}
		buf_consume(&up, got);
		/* Rule 1: nothing for the client before the TLS step. */
		if (v != NEG_RELAY && !buf_empty(&cl)) {
			fprintf(stderr, "  %s step %zu: client got bytes "
			    "early\n", sc->name, i);
			ok = false;
		}
	}
	if (ok && sc->client != NULL) {
		size_t got;
		const char *p = buf_peek(&cl, &got);
		ok = v == NEG_RELAY && got == strlen(sc->client) &&
		    memcmp(p, sc->client, got) == 0;
		if (!ok)
			fprintf(stderr, "  %s: client greeting %.*s\n",
			    sc->name, (int)got, p ? p : "");
	}
	if (ok && sc->reason != NULL) {
		ok = v == NEG_FAIL && strcmp(reason_name(neg_reason(n)), sc->reason) == 0;
		if (!ok)
			fprintf(stderr, "  %s: reason %s, want %s (%s)\n",
			    sc->name, reason_name(neg_reason(n)), sc->reason, neg_detail(n));
	}
	buf_release(&up);
	buf_release(&cl);
	neg_free(n);
	return ok;
}

static void
test_scripts(void)
{
	for (size_t s = 0; s < sizeof(scripts) / sizeof(*scripts); s++) {
		const struct script *sc = &scripts[s];
		bool all = true;

		CHECK(run(sc, FEED_WHOLE, 0, 0));
		if (sc->whole_only)
			continue;
		CHECK(run(sc, FEED_BYTES, 0, 0));
		for (size_t i = 0; i < NSTEPS && sc->steps[i].server != NULL; i++) {
			if (sc->steps[i].server == TLS_UP)
				continue;
			for (size_t k = 1; k < step_len(&sc->steps[i]); k++)
				all &= run(sc, FEED_SPLIT, i, k);
		}
		CHECK(all);
	}
}

/* Feeds a whole script step by step (no checks but the verdicts). */
static enum neg_verdict
feed_all(struct negotiator *n, const char *const *server, struct neg_out *out)
{
	enum neg_verdict v = NEG_CONTINUE;

	for (; *server != NULL; server++)
		v = *server == TLS_UP ? neg_tls_ready(n, out) :
		    neg_feed(n, *server, strlen(*server), out);
	return v;
}

/* What the device is shown, and what the log may say. */
static void
test_auth_details(void)
{
	static const char *const plain[] = { "220 x\r\n", "250-x\r\n250 STARTTLS\r\n",
	    "220 go\r\n", TLS_UP, AUTH_EHLO, "235 ok\r\n", NULL };
	static const char *const xoauth2[] = { "220 x\r\n",
	    "250-x\r\n250 STARTTLS\r\n", "220 go\r\n", TLS_UP, AUTH_EHLO,
	    "334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=\r\n",
	    "535 5.7.3 Authentication unsuccessful\r\n", NULL };
	struct buf up, cl;
	struct neg_out out = { &up, &cl };
	struct negotiator *n;

	buf_init(&up, 65536);
	buf_init(&cl, 4096);
	n = neg_new(PROTO_SMTP, "proxy.test", true, true);
	CHECK(neg_set_auth(n, AUTH_PLAIN, "alice", "s3cr3t", 6) == 0);
	CHECK(feed_all(n, plain, &out) == NEG_RELAY);
	/* Keywords for the device: no AUTH, no STARTTLS, order kept. */
	CHECK(strcmp(neg_caps(n), "PIPELINING\r\n8BITMIME\r\n") == 0);
	neg_free(n);
	buf_release(&up);
	buf_release(&cl);

	n = neg_new(PROTO_SMTP, "proxy.test", true, true);
	CHECK(neg_set_auth(n, AUTH_XOAUTH2, "alice", "tok3n", 5) == 0);
	CHECK(feed_all(n, xoauth2, &out) == NEG_FAIL);
	CHECK(strcmp(reason_name(neg_reason(n)), "upstream-auth-refused") == 0);
	/* The refusal and the decoded 334 error, never the token. */
	CHECK_STR_CONTAINS(neg_detail(n), "535 5.7.3");
	CHECK_STR_CONTAINS(neg_detail(n), "'status':'401'");
	CHECK(strstr(neg_detail(n), "tok3n") == NULL);
	CHECK(buf_empty(&cl));
	neg_free(n);
	buf_release(&up);
	buf_release(&cl);

	/* OAUTHBEARER: "," and "=" in the name are escaped (RFC 5801). */
	{
		static const char want[] = "AUTH OAUTHBEARER bixhPWE9MkNiPTNEYywBYXV0aD1CZWFyZXIgdG9rAQE=\r\n";
		size_t len;
		const char *p;
		n = neg_new(PROTO_SMTP, "proxy.test", true, true);
		CHECK(neg_set_auth(n, AUTH_OAUTHBEARER, "a,b=c", "tok", 3) == 0);
		CHECK(feed_all(n, (const char *const[]){ "220 x\r\n",
		    "250-x\r\n250 STARTTLS\r\n", "220 go\r\n", TLS_UP, NULL },
		    &out) == NEG_CONTINUE);
		buf_consume(&up, buf_len(&up));
		CHECK(neg_feed(n, AUTH_EHLO, strlen(AUTH_EHLO), &out) ==
		    NEG_CONTINUE);
		p = buf_peek(&up, &len);
		CHECK(p != NULL && len == strlen(want) && memcmp(p, want, len) == 0);
		neg_free(n);
		buf_release(&up);
		buf_release(&cl);
	}

	/* A token as long as the file may be (8 KiB) still fits one line
	 * under RFC 4954's 12288 octets. */
	{
		static char token[SECRET_MAX];
		size_t len;
		const char *p;
		memset(token, 'T', sizeof(token));
		n = neg_new(PROTO_SMTP, "proxy.test", true, true);
		CHECK(neg_set_auth(n, AUTH_XOAUTH2, "alice@example.com", token,
		    sizeof(token)) == 0);
		CHECK(feed_all(n, (const char *const[]){ "220 x\r\n",
		    "250-x\r\n250 STARTTLS\r\n", "220 go\r\n", TLS_UP, NULL },
		    &out) == NEG_CONTINUE);
		buf_consume(&up, buf_len(&up));
		CHECK(neg_feed(n, AUTH_EHLO, strlen(AUTH_EHLO), &out) ==
		    NEG_CONTINUE);
		p = buf_peek(&up, &len);
		CHECK(p != NULL && len <= 12288 && memcmp(p, "AUTH XOAUTH2 ", 13) == 0 &&
		    memcmp(p + len - 2, "\r\n", 2) == 0);
		neg_free(n);
		buf_release(&up);
		buf_release(&cl);
	}
}

/* redact_copy() with r into a buffer of cap bytes. */
static const char *
redacted(const struct redact *r, const char *text, size_t cap, bool *cut)
{
	static char out[1024];

	redact_copy(r, text, strlen(text), out, cap, cut);
	return out;
}

static void
b64(const void *raw, size_t len, char *out)
{
	EVP_EncodeBlock((uint8_t *)out, raw, len);
}

/* The credential's forms, taken out of upstream text. */
static void
test_redact(void)
{
	static const char pw[] = "Correct-Horse-77";	/* 16: base64 pads */
	static const char plain[] = "\0alice\0Correct-Horse-77";
	char text[512], enc[256], raw[64], core[64];
	struct redact *r;
	bool cut;

	r = redact_new(pw, strlen(pw), plain, sizeof(plain) - 1);
	CHECK(r != NULL);
	/* As it is, in any case, and the rest of the line kept. */
	CHECK(strcmp(redacted(r, "NO [AUTHENTICATIONFAILED] invalid password "
	    "'Correct-Horse-77' for alice", 512, &cut), "NO [AUTHENTICATIONFAILED"
	    "] invalid password '" REDACT_MARK "' for alice") == 0 && !cut);
	CHECK(strcmp(redacted(r, "bad CORRECT-HORSE-77!", 512, NULL),
	    "bad " REDACT_MARK "!") == 0);
	CHECK(strcmp(redacted(r, "twice Correct-Horse-77Correct-Horse-77", 512,
	    NULL), "twice " REDACT_MARK REDACT_MARK) == 0);
	/* Words of the password elsewhere stay. */
	CHECK(strcmp(redacted(r, "Correct is a word", 512, NULL),
	    "Correct is a word") == 0);
	/* Cut by the buffer: the mark is whole or absent, never half of
	 * the secret in its place. */
	CHECK(strcmp(redacted(r, "NO bad 'Correct-Horse-77' x", 12, &cut),
	    "NO bad '") == 0 && cut);
	CHECK(strcmp(redacted(r, "NO bad 'Correct-Horse-77' x", 19, &cut),
	    "NO bad '" REDACT_MARK) == 0 && cut);
	/* Base64 of the password alone (AUTH LOGIN), with and without its
	 * padding, and of the SASL PLAIN message. */
	b64(pw, strlen(pw), enc);
	CHECK(strchr(enc, '=') != NULL);
	snprintf(text, sizeof(text), "535 got %s here", enc);
	CHECK(strcmp(redacted(r, text, 512, NULL), "535 got " REDACT_MARK
	    " here") == 0);
	*strchr(enc, '=') = '\0';
	snprintf(text, sizeof(text), "535 got %s.", enc);
	CHECK(strcmp(redacted(r, text, 512, NULL), "535 got " REDACT_MARK
	    ".") == 0);
	b64(plain, sizeof(plain) - 1, enc);
	snprintf(text, sizeof(text), "535 %s", enc);
	CHECK(strcmp(redacted(r, text, 512, NULL), "535 " REDACT_MARK) == 0);
	*strchr(enc, '=') = '\0';
	snprintf(text, sizeof(text), "535 %s", enc);
	CHECK(strcmp(redacted(r, text, 512, NULL), "535 " REDACT_MARK) == 0);
	/* Inside longer base64 (split across 3-byte groups differently at
	 * each offset): the characters that carry only the password go. */
	for (size_t k = 0; k < 3; k++) {
		size_t first = (8 * k + 5) / 6, end = 8 * (k + strlen(pw)) / 6;
		/* The password at byte offset k + 3: aligned as at k. */
		snprintf(raw, sizeof(raw), "%.*spw=%s;", (int)k, "xyz", pw);
		b64(raw, strlen(raw), enc);
		memset(raw, 0, k);
		memcpy(raw + k, pw, strlen(pw));
		b64(raw, k + strlen(pw), core);
		core[end] = '\0';
		CHECK(strstr(enc, core + first) != NULL);
		CHECK(strstr(redacted(r, enc, 512, NULL), core + first) == NULL);
		CHECK(strstr(redacted(r, enc, 512, NULL), REDACT_MARK) != NULL);
	}
	/* Text without the credential is copied as it is. */
	CHECK(strcmp(redacted(r, "NO [AUTHENTICATIONFAILED] Authentication "
	    "failed.", 512, NULL), "NO [AUTHENTICATIONFAILED] Authentication "
	    "failed.") == 0);
	CHECK(strcmp(redacted(NULL, "Correct-Horse-77", 512, NULL),
	    "Correct-Horse-77") == 0);
	redact_free(r);
	redact_free(NULL);

	/* An IMAP quoted string carries '"' and '\' escaped. */
	r = redact_new("pa\"ss\\word", 10, NULL, 0);
	CHECK(strcmp(redacted(r, "NO \"pa\\\"ss\\\\word\" is wrong", 512,
	    NULL), "NO \"" REDACT_MARK "\" is wrong") == 0);
	redact_free(r);
}

/* The negotiators: a refusal that quotes the credential is logged without
 * it, and the capabilities a client is shown carry none of it. */
static void
test_auth_echo(void)
{
	static const char pw[] = "THE-PASSWORD";
	static const char *const imap_no[] = { "* OK hi\r\n",
	    "* CAPABILITY IMAP4rev1\r\nmp1 OK done\r\n",
	    "mp2 NO [AUTHENTICATIONFAILED] invalid password 'THE-PASSWORD' "
	    "for alice, a long line so that the password would straddle the "
	    "cut: THE-PASSWORD\r\n", NULL };
	static const char *const imap_ok[] = { "* OK hi\r\n",
	    "* CAPABILITY IMAP4rev1\r\nmp1 OK done\r\n",
	    "mp2 OK [CAPABILITY IMAP4rev1 X-PW=the-password IDLE] in\r\n", NULL };
	static const char *const pop3_no[] = { "+OK hi\r\n", "+OK\r\n",
	    "-ERR [AUTH] PASS THE-PASSWORD refused\r\n", NULL };
	static const char *const smtp_login[] = { "220 x\r\n", AUTH_EHLO_LOGIN,
	    "334 VXNlcm5hbWU6\r\n", "334 UGFzc3dvcmQ6\r\n",
	    "535 5.7.8 bad VEhFLVBBU1NXT1JE for alice\r\n", NULL };
	static const char *const smtp_xo[] = { "220 x\r\n", AUTH_EHLO,
	    "334 eyJlcnJvciI6ICJ0b2tlbiB5YTI5LnNlY3JldC10b2tlbiBleHBpcmVkIn0=\r\n",
	    "535 5.7.8 ya29.secret-token\r\n", NULL };
	struct buf up, cl;
	struct neg_out out = { &up, &cl };
	struct negotiator *n;

	buf_init(&up, 65536);
	buf_init(&cl, 4096);
	n = neg_new(PROTO_IMAP, "proxy.test", false, false);
	CHECK(neg_set_auth(n, AUTH_ACCOUNTS, "alice", pw, strlen(pw)) == 0);
	CHECK(feed_all(n, imap_no, &out) == NEG_FAIL);
	CHECK_STR_CONTAINS(neg_detail(n), "invalid password '" REDACT_MARK "'");
	CHECK(strstr(neg_detail(n), "THE-P") == NULL);
	neg_free(n);
	buf_release(&up);

	n = neg_new(PROTO_IMAP, "proxy.test", false, false);
	CHECK(neg_set_auth(n, AUTH_ACCOUNTS, "alice", pw, strlen(pw)) == 0);
	CHECK(feed_all(n, imap_ok, &out) == NEG_RELAY);
	CHECK(strcmp(neg_caps(n), "IMAP4rev1 X-PW=" REDACT_MARK " IDLE") == 0);
	neg_free(n);
	buf_release(&up);

	n = neg_new(PROTO_POP3, "proxy.test", false, false);
	CHECK(neg_set_auth(n, AUTH_ACCOUNTS, "alice", pw, strlen(pw)) == 0);
	CHECK(feed_all(n, pop3_no, &out) == NEG_FAIL);
	CHECK_STR_CONTAINS(neg_detail(n), "PASS " REDACT_MARK " refused");
	neg_free(n);
	buf_release(&up);

	/* AUTH LOGIN: the password's base64 echoed. */
	n = neg_new(PROTO_SMTP, "proxy.test", false, false);
	CHECK(neg_set_auth(n, AUTH_ACCOUNTS, "alice", pw, strlen(pw)) == 0);
	CHECK(feed_all(n, smtp_login, &out) == NEG_FAIL);
	CHECK_STR_CONTAINS(neg_detail(n), "535 5.7.8 bad " REDACT_MARK " for");
	neg_free(n);
	buf_release(&up);

	/* XOAUTH2: the token in the base64 error and in the refusal. */
	n = neg_new(PROTO_SMTP, "proxy.test", false, false);
	CHECK(neg_set_auth(n, AUTH_XOAUTH2, "alice", "ya29.secret-token",
	    17) == 0);
	CHECK(feed_all(n, smtp_xo, &out) == NEG_FAIL);
	CHECK_STR_CONTAINS(neg_detail(n), "535 5.7.8 " REDACT_MARK);
	CHECK_STR_CONTAINS(neg_detail(n), "token " REDACT_MARK " expired");
	CHECK(strstr(neg_detail(n), "secret-token") == NULL);
	CHECK(buf_empty(&cl));
	neg_free(n);
	buf_release(&up);
	buf_release(&cl);
}

/* neg_goodbye(): only where the upstream would read it as a command. */
static void
test_goodbye(void)
{
	static const struct {
		enum proto	 proto;
		int		 auth;
		const char	*server[6];
		const char	*want;		/* NULL: none */
	} cases[] = {
		/* IMAP: LOGIN pending: a tagged LOGOUT may follow it. */
		{ PROTO_IMAP, AUTH_ACCOUNTS, { "* OK hi\r\n",
		    "* CAPABILITY IMAP4rev1\r\nmp1 OK done\r\n" }, "mp3 LOGOUT\r\n" },
		/* Before the greeting: nothing. */
		{ PROTO_IMAP, AUTH_ACCOUNTS, { NULL }, NULL },
		/* AUTHENTICATE without SASL-IR waits for "+": nothing. */
		{ PROTO_IMAP, AUTH_ACCOUNTS, { "* OK hi\r\n", "* CAPABILITY "
		    "IMAP4rev1 LOGINDISABLED AUTH=PLAIN\r\nmp1 OK done\r\n" }, NULL },
		/* XOAUTH2 may get a "+" with its error: nothing. */
		{ PROTO_IMAP, AUTH_XOAUTH2, { "* OK hi\r\n", "* CAPABILITY "
		    "IMAP4rev1 SASL-IR AUTH=XOAUTH2\r\nmp1 OK done\r\n" }, NULL },
		{ PROTO_POP3, AUTH_ACCOUNTS, { "+OK hi\r\n" }, "QUIT\r\n" },
		{ PROTO_POP3, AUTH_ACCOUNTS, { "+OK hi\r\n", "+OK\r\n" }, "QUIT\r\n" },
		{ PROTO_POP3, AUTH_XOAUTH2, { "+OK hi\r\n" }, NULL },
		{ PROTO_SMTP, AUTH_ACCOUNTS, { "220 x\r\n" }, "QUIT\r\n" },
		{ PROTO_SMTP, AUTH_ACCOUNTS, { "220 x\r\n", AUTH_EHLO }, "QUIT\r\n" },
		/* AUTH LOGIN's prompt: QUIT would be the user name. */
		{ PROTO_SMTP, AUTH_ACCOUNTS, { "220 x\r\n", AUTH_EHLO_LOGIN,
		    "334 VXNlcm5hbWU6\r\n" }, NULL },
		{ PROTO_SMTP, AUTH_XOAUTH2, { "220 x\r\n", AUTH_EHLO }, NULL },
	};
	struct buf up, cl;
	struct neg_out out = { &up, &cl };

	buf_init(&up, 65536);
	buf_init(&cl, 4096);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct negotiator *n = neg_new(cases[i].proto, "proxy.test",
		    false, false);
		const char *p;
		size_t len;
		bool said;

		CHECK(neg_set_auth(n, cases[i].auth, "alice", "pw", 2) == 0);
		CHECK(feed_all(n, cases[i].server, &out) == NEG_CONTINUE);
		buf_consume(&up, buf_len(&up));
		said = neg_goodbye(n, &out);
		p = buf_peek(&up, &len);
		CHECK(said == (cases[i].want != NULL));
		CHECK(cases[i].want == NULL ? p == NULL : p != NULL &&
		    len == strlen(cases[i].want) &&
		    memcmp(p, cases[i].want, len) == 0);
		if (said != (cases[i].want != NULL))
			fprintf(stderr, "  goodbye case %zu\n", i);
		buf_release(&up);
		neg_free(n);
	}
	buf_release(&cl);
}

static void
test_limits(void)
{
	struct negotiator *n;
	struct buf up, cl;
	struct neg_out out = { &up, &cl };
	char line[700];

	buf_init(&up, 4096);
	buf_init(&cl, 4096);
	/* SMTP: a 513-byte reply line is too long, 512 is fine. */
	memset(line, 'a', sizeof(line));
	memcpy(line, "220 ", 4);
	memcpy(line + 510, "\r\n", 2);
	n = neg_new(PROTO_SMTP, "p", true, true);
	CHECK(neg_feed(n, line, 512, &out) == NEG_CONTINUE);
	neg_free(n);
	buf_release(&up);
	memcpy(line + 510, "a\r\n", 3);
	n = neg_new(PROTO_SMTP, "p", true, true);
	CHECK(neg_feed(n, line, 513, &out) == NEG_FAIL);
	neg_free(n);
	/* An endless line without CRLF fails once it passes the limit. */
	n = neg_new(PROTO_SMTP, "p", true, true);
	memset(line, 'a', sizeof(line));
	CHECK(neg_feed(n, line, sizeof(line), &out) == NEG_FAIL);
	neg_free(n);
	/* A multi-line reply is capped in total. */
	n = neg_new(PROTO_SMTP, "p", true, true);
	CHECK(neg_feed(n, "220 x\r\n", 7, &out) == NEG_CONTINUE);
	enum neg_verdict v = NEG_CONTINUE;
	for (int i = 0; i < 400 && v == NEG_CONTINUE; i++)
		v = neg_feed(n, "250-0123456789012345678901234567890\r\n", 37,
		    &out);
	CHECK(v == NEG_FAIL);
	CHECK(strcmp(reason_name(neg_reason(n)), "upstream-protocol-error") == 0);
	neg_free(n);
	buf_release(&up);
	buf_release(&cl);
}

/*
 * The greeting carries the whole post-TLS capability list, up to the line
 * limit: a 721-byte list (Cyrus IMAP 3.6) was cut at 597 bytes, losing the
 * closing "]" and IDLE.  Lists from 600 bytes to nearly the 4096-byte line
 * limit are checked word for word.
 */
static void
test_long_capability_list(void)
{
	static const size_t sizes[] = { 590, 600, 721, 1100, 2000, 4000 };
	char caps[4200], line[4300], want[4400];

	for (size_t k = 0; k < sizeof(sizes) / sizeof(*sizes); k++) {
		struct negotiator *n = neg_new(PROTO_IMAP, "p", true, true);
		struct buf up, cl;
		struct neg_out out = { &up, &cl };
		size_t len, i = 0;
		const char *p;
		int w = 0, nl;

		buf_init(&up, 16384);
		buf_init(&cl, 16384);
		/* "IMAP4rev1 X-CAP-0001 ... IDLE COMPRESS=DEFLATE" */
		i = (size_t)snprintf(caps, sizeof(caps), "IMAP4rev1");
		while (i + 16 < sizes[k] - 22)
			i += (size_t)snprintf(caps + i, sizeof(caps) - i,
			    " X-CAP-%04d", w++);
		i += (size_t)snprintf(caps + i, sizeof(caps) - i,
		    " IDLE COMPRESS=DEFLATE");
		p = "* OK [CAPABILITY IMAP4rev1 STARTTLS] x\r\n";
		CHECK(neg_feed(n, p, strlen(p), &out) == NEG_CONTINUE);
		CHECK(neg_feed(n, "mp1 OK go\r\n", 11, &out) == NEG_START_TLS);
		CHECK(neg_tls_ready(n, &out) == NEG_CONTINUE);
		nl = snprintf(line, sizeof(line), "* CAPABILITY %s STARTTLS\r\n"
		    "mp2 OK done\r\n", caps);
		CHECK(neg_feed(n, line, (size_t)nl, &out) == NEG_RELAY);
		snprintf(want, sizeof(want), "* OK [CAPABILITY %s] ready\r\n",
		    caps);
		p = buf_peek(&cl, &len);
		CHECK(p != NULL && len == strlen(want) &&
		    memcmp(p, want, len) == 0);
		if (p == NULL || len != strlen(want))
			fprintf(stderr, "  caps %zu: greeting of %zu bytes, want "
			    "%zu\n", sizes[k], len, strlen(want));
		buf_release(&up);
		buf_release(&cl);
		neg_free(n);
	}
}

void
test_negotiate(void)
{
	test_scripts();
	test_auth_details();
	test_redact();
	test_auth_echo();
	test_goodbye();
	test_limits();
	test_long_capability_list();
}
