/*
 * libFuzzer harness for the client's login to the proxy (upstream_auth =
 * accounts): the IMAP and POP3 dialogues of login.c and SMTP's front with
 * accounts.
 *
 * The input's first byte picks the protocol (bits 0x03), the chunk size
 * (bits 0x3c) and how each check ends (bits 0xc0: refused, or accepted
 * with the upstream's capabilities); the rest is what the client sends.
 * Besides "no crash, no sanitizer report" it checks:
 *  - every reply is whole CRLF lines, without NUL;
 *  - consumed never exceeds what was fed, and after CHECK the bytes left
 *    are exactly what follows the login command (fed again, the same);
 *  - the password is wiped by login_forget();
 *  - FAIL and CLOSE end the dialogue (never fed again).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "front.h"
#include "login.h"
#include "negotiate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_lines(const struct buf *b)
{
	size_t len;
	const char *p = buf_peek(b, &len);

	if (p == NULL)
		return;
	if (len < 2 || p[len - 2] != '\r' || p[len - 1] != '\n' ||
	    memchr(p, '\0', len) != NULL)
		abort();
	for (size_t i = 0; i < len; i++)
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum proto protos[] = { PROTO_IMAP, PROTO_POP3, PROTO_SMTP,
	    PROTO_IMAP };
	enum proto proto;
	struct front *f = NULL;
	struct login *l;
	struct buf out;
	size_t chunk, have = 0, start = 0, consumed, pl;
	enum login_verdict v = LOGIN_CONTINUE;
	uint8_t mode;

	if (size < 1)
		return 0;
	mode = data[0];
	proto = protos[mode & 3];
	chunk = ((mode >> 2) & 15) + 1;
	data++;
	size--;
	if (proto == PROTO_SMTP) {
		f = front_new_accounts("gw.test", true);
		l = front_login(f);
	} else
		l = login_new(proto, "gw.test");
	buf_init(&out, 1 << 20);
	while (start < size && v != LOGIN_FAIL && v != LOGIN_CLOSE) {
		have = have + chunk > size ? size : have + chunk;
		if (proto == PROTO_SMTP) {
			enum front_verdict fv = front_feed(f, (const char *)data +
			    start, have - start, &consumed, &out);
			v = fv == FRONT_CHECK ? LOGIN_CHECK : fv == FRONT_CONTINUE ?
			    LOGIN_CONTINUE : fv == FRONT_CLOSE ? LOGIN_CLOSE :
			    LOGIN_FAIL;
		} else
			v = login_feed(l, (const char *)data + start, have - start,
			    &consumed, &out);
		if (consumed > have - start)
			abort();
		start += consumed;
		if (v == LOGIN_CHECK) {
			(void)login_password(l, &pl);
			if (strlen(login_user(l)) == 0 || pl == 0 ||
			    pl > LOGIN_MAX_PASSWORD)
				abort();
			login_forget(l);
			if (login_password(l, &pl)[0] != '\0' || pl != 0)
				abort();
			if (mode & 0x80) {
				login_accepted(l, "IMAP4rev1 IDLE", &out);
				if (f != NULL && front_set_caps(f, "SIZE 1\r\n") < 0)
					abort();
				if (f == NULL)
					break;		/* the relay's now */
			} else if (login_refused(l, &out) == LOGIN_FAIL)
				v = LOGIN_FAIL;
			else
				v = LOGIN_CONTINUE;
		}
		check_lines(&out);
		buf_consume(&out, buf_len(&out));
		if (have == size && consumed == 0 && v == LOGIN_CONTINUE)
			break;		/* a partial line: waits for more */
	}
	buf_release(&out);
	if (f != NULL)
		front_free(f);
	else
		login_free(l);
	return 0;
}
