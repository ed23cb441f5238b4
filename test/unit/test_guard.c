/*
 * guard: STARTTLS from a client already in TLS is spotted exactly when its
 * line ends, and never inside what is not a command (SMTP bodies and BDAT
 * chunks, IMAP literals).  Every script is fed whole, one byte at a time
 * and split in two at every boundary.
 */
#include <stdlib.h>

#include "guard.h"
#include "unit.h"

struct gscript {
	const char	*name;
	enum proto	 proto;
	const char	*input;
	const char	*hit_line;	/* the line that must hit; NULL: none */
};

static const struct gscript gscripts[] = {
	/* SMTP */
	{ "smtp ehlo then starttls", PROTO_SMTP, "EHLO x\r\nSTARTTLS\r\n", "STARTTLS\r\n" },
	{ "smtp any case, bare LF", PROTO_SMTP, "ehlo x\nstarttls\n", "starttls\n" },
	{ "smtp pipelined before it", PROTO_SMTP,
	    "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nSTARTTLS\r\nQUIT\r\n", "STARTTLS\r\n" },
	{ "smtp not a prefix of another verb", PROTO_SMTP, "STARTTLSX\r\nXSTARTTLS\r\n", NULL },
	{ "smtp body lines are not commands", PROTO_SMTP,
	    "MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\nSTARTTLS\r\n..STARTTLS\r\n"
	    "x\r\nSTARTTLS\r\n.\r\nQUIT\r\n", NULL },
	{ "smtp after the body", PROTO_SMTP,
	    "DATA\r\nSTARTTLS\r\n.\r\nSTARTTLS\r\n", "STARTTLS\r\n" },
	{ "smtp a dot inside a line does not end the body", PROTO_SMTP,
	    "DATA\r\nx.\r\n.x\r\nSTARTTLS\r\n.\r\n", NULL },
	{ "smtp DATA with a trailing blank", PROTO_SMTP, "DATA \r\nSTARTTLS\r\n.\r\n", NULL },
	{ "smtp bdat chunk skipped", PROTO_SMTP,
	    "BDAT 10\r\nSTARTTLS\r\nBDAT 0 LAST\r\nSTARTTLS\r\n", "STARTTLS\r\n" },
	{ "smtp bdat chunk holding only STARTTLS", PROTO_SMTP,
	    "BDAT 20 LAST\r\nSTARTTLS\r\nSTARTTLS\r\nQUIT\r\n", NULL },
	{ "smtp a long line", PROTO_SMTP,
	    "X-A-LONG-COMMAND-NAME-THAT-GOES-ON-AND-ON-AND-ON-PAST-THE-KEPT-HEAD-OF-THE-LINE"
	    "-STARTTLS\r\nSTARTTLS\r\n", "STARTTLS\r\n" },
	/* POP3 */
	{ "pop3 stls", PROTO_POP3, "CAPA\r\nSTLS\r\n", "STLS\r\n" },
	{ "pop3 stls as an argument", PROTO_POP3, "USER stls\r\nPASS STLS\r\n", NULL },
	/* IMAP */
	{ "imap starttls", PROTO_IMAP, "a1 CAPABILITY\r\na2 STARTTLS\r\n", "a2 STARTTLS\r\n" },
	{ "imap any case", PROTO_IMAP, "x starttls\r\n", "x starttls\r\n" },
	{ "imap as an argument", PROTO_IMAP, "a SELECT STARTTLS\r\nSTARTTLS\r\n", NULL },
	{ "imap literal skipped", PROTO_IMAP,
	    "a APPEND INBOX {12}\r\nb STARTTLS\r\n\r\nc NOOP\r\n", NULL },
	{ "imap non-synchronizing literal, then starttls", PROTO_IMAP,
	    "a APPEND INBOX {12+}\r\nb STARTTLS\r\n\r\nc STARTTLS\r\n", "c STARTTLS\r\n" },
	{ "imap text after a literal continues the command", PROTO_IMAP,
	    "a LOGIN {5}\r\nalice x STARTTLS\r\n", NULL },
	{ "imap two literals in one command", PROTO_IMAP,
	    "a LOGIN {1}\r\nu {12}\r\nb STARTTLS\r\n\r\nd STARTTLS\r\n", "d STARTTLS\r\n" },
	{ "imap braces that are not a literal", PROTO_IMAP,
	    "a SEARCH {x}\r\nb STARTTLS\r\n", "b STARTTLS\r\n" },
	{ "imap a blank after the braces: not a literal", PROTO_IMAP,
	    "a APPEND INBOX {12} \r\nb STARTTLS\r\n", "b STARTTLS\r\n" },
	{ "imap authenticate continuation", PROTO_IMAP,
	    "a AUTHENTICATE PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n", NULL },
};

/* Index just past the hit line's LF, or 0 for none. */
static size_t
hit_end(const struct gscript *sc)
{
	const char *at;

	if (sc->hit_line == NULL)
		return 0;
	/* The last occurrence that is a whole line. */
	at = sc->input + strlen(sc->input) - strlen(sc->hit_line);
	while (at > sc->input && (strncmp(at, sc->hit_line, strlen(sc->hit_line)) != 0 ||
	    at[-1] != '\n'))
		at--;
	return (size_t)(at - sc->input) + strlen(sc->hit_line);
}

static bool
grun(const struct gscript *sc, size_t split)
{
	struct guard *g = guard_new(sc->proto);
	size_t len = strlen(sc->input), end = hit_end(sc);
	bool first, second = false, ok;

	if (split == 0) {
		/* One byte at a time: the hit comes with the LF, not before. */
		size_t i;
		for (i = 0; i < len; i++)
			if (guard_scan(g, sc->input + i, 1))
				break;
		ok = end == 0 ? i == len : i + 1 == end;
	} else {
		first = guard_scan(g, sc->input, split);
		if (!first)
			second = guard_scan(g, sc->input + split, len - split);
		ok = end == 0 ? !first && !second :
		    (end <= split ? first : !first && second);
	}
	if (!ok)
		fprintf(stderr, "  guard %s: split %zu\n", sc->name, split);
	guard_free(g);
	return ok;
}

/* The refusal each protocol gets (IMAP: with the command's tag). */
static void
test_refusals(void)
{
	static const struct { enum proto proto; const char *cmd, *reply; } r[] = {
		{ PROTO_IMAP, "t7 STARTTLS\r\n",
		    "t7 BAD TLS is already active\r\n* BYE mailproxy: closing connection\r\n" },
		{ PROTO_SMTP, "STARTTLS\r\n",
		    "421 4.7.0 mailproxy: TLS is already active, closing connection\r\n" },
		{ PROTO_POP3, "STLS\r\n",
		    "-ERR [SYS/PERM] mailproxy: TLS is already active\r\n" },
	};

	for (size_t i = 0; i < sizeof(r) / sizeof(*r); i++) {
		struct guard *g = guard_new(r[i].proto);
		struct buf b;
		size_t len;
		const char *p;

		buf_init(&b, 1024);
		CHECK(guard_scan(g, r[i].cmd, strlen(r[i].cmd)));
		guard_refusal(g, &b);
		p = buf_peek(&b, &len);
		CHECK(p != NULL && len == strlen(r[i].reply) &&
		    memcmp(p, r[i].reply, len) == 0);
		buf_release(&b);
		guard_free(g);
	}
}

/* Whole, one byte at a time, and split in two at sampled points (every
 * boundary for short inputs): true if each run agrees with expect_hit. */
static bool
grun_sampled(enum proto proto, const char *in, size_t len, bool expect_hit)
{
	bool ok = true;
	size_t step = len < 400 ? 1 : 97;

	for (size_t split = 0; split <= len; split += step) {
		struct guard *g = guard_new(proto);
		bool hit = false;

		if (split == 0)
			for (size_t i = 0; i < len && !hit; i++)
				hit = guard_scan(g, in + i, 1);
		else
			hit = guard_scan(g, in, split) ||
			    guard_scan(g, in + split, len - split);
		if (hit != expect_hit) {
			fprintf(stderr, "  guard: %zu bytes, split %zu: %s\n",
			    len, split, hit ? "hit" : "missed");
			ok = false;
		}
		guard_free(g);
	}
	return ok;
}

/*
 * Tags and lines of any length: a 72-byte IMAP tag once pushed STARTTLS
 * out of the 80 bytes kept; the verb is now found wherever it starts.
 */
static void
test_long_tags_and_lines(void)
{
	static const size_t sizes[] = { 1, 63, 64, 65, 71, 72, 79, 80, 81, 127, 128, 129,
	    200, 4096, 65536 };
	size_t cap = 65536 + 256;
	char *in = malloc(cap), *filler = malloc(65536 + 1);

	for (size_t k = 0; k < sizeof(sizes) / sizeof(*sizes); k++) {
		size_t z = sizes[k];
		int n;

		memset(filler, 'a', z);
		filler[z] = '\0';
		/* IMAP: a long tag */
		n = snprintf(in, cap, "%s STARTTLS\r\n", filler);
		CHECK(grun_sampled(PROTO_IMAP, in, (size_t)n, true));
		n = snprintf(in, cap, "a1 NOOP\r\n%s STARTTLS\r\n", filler);
		CHECK(grun_sampled(PROTO_IMAP, in, (size_t)n, true));
		/* the same line as literal data is not a command */
		n = snprintf(in, cap, "a APPEND INBOX {%zu+}\r\n%s STARTTLS\r\n"
		    "\r\n", z + 11, filler);
		CHECK(grun_sampled(PROTO_IMAP, in, (size_t)n, false));
		/* a long argument, then STARTTLS on the next line */
		n = snprintf(in, cap, "a SEARCH %s\r\nb STARTTLS\r\n", filler);
		CHECK(grun_sampled(PROTO_IMAP, in, (size_t)n, true));
		n = snprintf(in, cap, "a SEARCH %s STARTTLS\r\n", filler);
		CHECK(grun_sampled(PROTO_IMAP, in, (size_t)n, false));
		/* SMTP / POP3: blanks before the verb, long arguments */
		memset(filler, ' ', z);
		n = snprintf(in, cap, "%sSTARTTLS\r\n", filler);
		CHECK(grun_sampled(PROTO_SMTP, in, (size_t)n, true));
		n = snprintf(in, cap, "%sSTLS\r\n", filler);
		CHECK(grun_sampled(PROTO_POP3, in, (size_t)n, true));
		n = snprintf(in, cap, "a%sSTARTTLS\r\n", filler);
		CHECK(grun_sampled(PROTO_IMAP, in, (size_t)n, true));
		/* blanks then more: not trailing, so not the verb alone
		 * (found by fuzz_guard: 72 tabs pushed the "0" out of view) */
		memset(filler, '\t', z);
		n = snprintf(in, cap, "a STARTTLS%s0\r\n", filler);
		CHECK(grun_sampled(PROTO_IMAP, in, (size_t)n, false));
		n = snprintf(in, cap, "STARTTLS%s0\r\n", filler);
		CHECK(grun_sampled(PROTO_SMTP, in, (size_t)n, false));
		n = snprintf(in, cap, "STARTTLS%s\r\n", filler);
		CHECK(grun_sampled(PROTO_SMTP, in, (size_t)n, true));
		memset(filler, 'x', z);
		n = snprintf(in, cap, "STARTTLS %s\r\n", filler);
		CHECK(grun_sampled(PROTO_SMTP, in, (size_t)n, true));
		n = snprintf(in, cap, "NOOP %s STARTTLS\r\nSTARTTLS\r\n", filler);
		CHECK(grun_sampled(PROTO_SMTP, in, (size_t)n, true));
		/* DATA with more than blanks after it is not DATA */
		n = snprintf(in, cap, "DATA %s\r\nSTARTTLS\r\n", filler);
		CHECK(grun_sampled(PROTO_SMTP, in, (size_t)n, true));
		/* long body lines and chunks are skipped whatever their size */
		n = snprintf(in, cap, "DATA\r\n%s STARTTLS\r\nSTARTTLS\r\n.\r\n",
		    filler);
		CHECK(grun_sampled(PROTO_SMTP, in, (size_t)n, false));
		n = snprintf(in, cap, "BDAT %zu LAST\r\n%s STARTTLS\r\n", z + 11,
		    filler);
		CHECK(grun_sampled(PROTO_SMTP, in, (size_t)n, false));
	}
	free(in);
	free(filler);
}

/* The refusal repeats a tag that fits, and answers untagged otherwise. */
static void
test_refusal_of_a_long_tag(void)
{
	static const char *const want = "* BAD TLS is already active\r\n"
	    "* BYE mailproxy: closing connection\r\n";
	char line[200];
	struct guard *g = guard_new(PROTO_IMAP);
	struct buf b;
	size_t len;
	const char *p;

	memset(line, 't', 150);
	memcpy(line + 150, " STARTTLS\r\n", 12);
	buf_init(&b, 1024);
	CHECK(guard_scan(g, line, strlen(line)));
	guard_refusal(g, &b);
	p = buf_peek(&b, &len);
	CHECK(p != NULL && len == strlen(want) && memcmp(p, want, len) == 0);
	buf_release(&b);
	guard_free(g);
}

/* A big literal and a big body cost no line state: megabytes skipped. */
static void
test_bulk(void)
{
	static char chunk[65536];
	struct guard *g = guard_new(PROTO_IMAP);

	memset(chunk, 'x', sizeof(chunk));
	memcpy(chunk, "a STARTTLS\r\n", 12);	/* inside the literal */
	CHECK(!guard_scan(g, "a APPEND INBOX {1048576}\r\n", 26));
	for (int i = 0; i < 16; i++)
		CHECK(!guard_scan(g, chunk, sizeof(chunk)));
	CHECK(!guard_scan(g, "\r\n", 2));
	CHECK(guard_scan(g, "b STARTTLS\r\n", 12));
	guard_free(g);
}

/* Idle (freeable) only between commands. */
static void
test_idle(void)
{
	struct guard *g = guard_new(PROTO_IMAP);

	CHECK(guard_idle(g));
	CHECK(!guard_scan(g, "a NO", 4) && !guard_idle(g));
	CHECK(!guard_scan(g, "OP\r\n", 4) && guard_idle(g));
	CHECK(!guard_scan(g, "b APPEND INBOX {3}\r\n", 21) && !guard_idle(g));
	CHECK(!guard_scan(g, "abc", 3) && !guard_idle(g));	/* the line goes on */
	CHECK(!guard_scan(g, "\r\n", 2) && guard_idle(g));
	guard_free(g);
	g = guard_new(PROTO_SMTP);
	CHECK(!guard_scan(g, "DATA\r\nx\r\n", 9) && !guard_idle(g));
	CHECK(!guard_scan(g, ".\r\n", 3) && guard_idle(g));
	guard_free(g);
}

void
test_guard(void)
{
	for (size_t s = 0; s < sizeof(gscripts) / sizeof(*gscripts); s++) {
		bool all = true;
		for (size_t k = 0; k < strlen(gscripts[s].input); k++)
			all &= grun(&gscripts[s], k);
		CHECK(all);
	}
	test_refusals();
	test_long_tags_and_lines();
	test_refusal_of_a_long_tag();
	test_bulk();
	test_idle();
}
