/*
 * oauth2_code: mailproxy -A SERVICE with oauth2_grant = code, the
 * authorization code grant with PKCE (RFC 7636, S256) and a loopback
 * redirect (RFC 8252 section 7.3) -- what Google requires for the Gmail
 * scope, which its device flow does not grant.
 *
 * It prints the authorization address.  A one-shot listener on 127.0.0.1
 * (a random port, one request, loopback peers only) takes the code when
 * the browser runs on this machine, and answers with a page that says the
 * window can be closed.  On a headless box the person opens the address
 * anywhere; the browser then ends on http://127.0.0.1:PORT/?code=... (a
 * page that does not load), and that address, pasted into the terminal,
 * carries the code just as well.  The state must match (a pasted address
 * may lack it: the person copied it from their own browser); the code is
 * exchanged with the verifier and the store written.  Neither the verifier
 * nor the code is ever printed.
 */
#include "oauth2_grant.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/mem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "config.h"
#include "jwt.h"
#include "oauth2.h"
#include "tokenstore.h"

#define WAIT_SECONDS	600	/* for the person to sign in */
#define REQUEST_MAX	8192	/* the redirect's request head */

/* What the redirect brought: each a NUL-terminated copy, or "". */
struct redirect {
	char	code[2048];
	char	state[128];
	char	error[128];
};

static void
redirect_wipe(struct redirect *r)
{
	OPENSSL_cleanse(r, sizeof(*r));
}

static int
hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ?
	    c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The form-decoded value of [v, end) into out (cap bytes). */
static void
decode(char *out, size_t cap, const char *v, const char *end)
{
	size_t n = 0;

	for (; v < end && n + 1 < cap; v++) {
		if (*v == '%' && end - v >= 3 && hexval(v[1]) >= 0 &&
		    hexval(v[2]) >= 0) {
			out[n++] = (char)(hexval(v[1]) << 4 | hexval(v[2]));
			v += 2;
		} else
			out[n++] = *v == '+' ? ' ' : *v;
	}
	out[n] = '\0';
}

/*
 * The query of an address (or of a request target): code, state, error.
 * Ends at a blank or a fragment; 0 if it names a code or an error.
 */
static int
parse_query(const char *addr, struct redirect *r)
{
	const char *q = strchr(addr, '?'), *end;

	memset(r, 0, sizeof(*r));
	if (q == NULL)
		return -1;
	end = q + strcspn(q, " \t\r\n#");
	for (const char *p = q + 1; p < end; ) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp != NULL ? amp : end;
		const char *eq = memchr(p, '=', (size_t)(stop - p));
		if (eq != NULL) {
			size_t klen = (size_t)(eq - p);
			if (klen == 4 && strncmp(p, "code", 4) == 0)
				decode(r->code, sizeof(r->code), eq + 1, stop);
			else if (klen == 5 && strncmp(p, "state", 5) == 0)
				decode(r->state, sizeof(r->state), eq + 1, stop);
			else if (klen == 5 && strncmp(p, "error", 5) == 0)
				decode(r->error, sizeof(r->error), eq + 1, stop);
		}
		p = stop + 1;
	}
	return r->code[0] != '\0' || r->error[0] != '\0' ? 0 : -1;
}

/* The one-shot listener on 127.0.0.1, a port of the kernel's choosing. */
static int
listen_loopback(int *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(fd, 1) < 0 || getsockname(fd, (struct sockaddr *)&sin,
	    &len) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*port = ntohs(sin.sin_port);
	return fd;
}

static void
answer(int fd, int status, const char *text)
{
	char page[512], out[1024];
	int n = snprintf(page, sizeof(page), "<!DOCTYPE html><html><head><title>"
	    "mailproxy</title></head><body><p>mailproxy: %s</p></body></html>\n",
	    text);
	int m = snprintf(out, sizeof(out), "HTTP/1.1 %d %s\r\nContent-Type: "
	    "text/html; charset=utf-8\r\nContent-Length: %d\r\nCache-Control: "
	    "no-store\r\nConnection: close\r\n\r\n%s", status, status == 200 ?
	    "OK" : "Bad Request", n, page);

	if (write(fd, out, (size_t)m) < 0) {
		/* The browser went away: the code it brought still counts. */
	}
}

/* A request head from fd, within a few seconds. */
static int
read_head(int fd, char *buf, size_t cap)
{
	size_t n = 0;

	while (n + 1 < cap) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t got;
		if (poll(&p, 1, 5000) <= 0 ||
		    (got = read(fd, buf + n, cap - 1 - n)) <= 0)
			break;
		n += (size_t)got;
		buf[n] = '\0';
		if (strstr(buf, "\r\n\r\n") != NULL || strstr(buf, "\n\n") != NULL)
			return 0;
	}
	buf[n] = '\0';
	return n > 0 && strchr(buf, '\n') != NULL ? 0 : -1;
}

/*
 * The browser's redirect on the listener: the first answer is the only
 * one (the caller closes the listener after it); a peer not on loopback is
 * refused without a word.  0 with r, -1 when it carried no answer.
 */
static int
take_redirect(int lfd, const char *state, struct redirect *r)
{
	struct sockaddr_in peer;
	socklen_t len = sizeof(peer);
	char head[REQUEST_MAX];
	int fd = accept(lfd, (struct sockaddr *)&peer, &len), rc = 0;

	if (fd < 0)
		return -1;
	if (peer.sin_family != AF_INET ||
	    (ntohl(peer.sin_addr.s_addr) >> 24) != 127) {
		close(fd);
		return -1;
	}
	if (read_head(fd, head, sizeof(head)) == 0)
		head[strcspn(head, "\r\n")] = '\0';	/* the request line */
	else
		head[0] = '\0';
	if (strncmp(head, "GET ", 4) != 0 || parse_query(head, r) < 0) {
		/* Not the browser's answer (a probe, a stray request). */
		answer(fd, 400, "this is not an authorization answer.");
		rc = -1;
	} else if (strcmp(r->state, state) != 0)
		answer(fd, 400, "the answer does not belong to this sign-in "
		    "(state mismatch); nothing was written.");
	else if (r->error[0] != '\0')
		answer(fd, 200, "the sign-in was not completed; nothing was "
		    "written. You can close this window.");
	else
		answer(fd, 200, "authorized. You can close this window.");
	OPENSSL_cleanse(head, sizeof(head));
	close(fd);
	return rc;
}

/* A line typed or pasted: the address the browser ended on. */
static int
read_pasted(char *line, size_t cap, size_t *have)
{
	ssize_t got = read(STDIN_FILENO, line + *have, cap - 1 - *have);

	if (got <= 0)
		return -1;		/* no terminal: the listener only */
	*have += (size_t)got;
	line[*have] = '\0';
	return strchr(line, '\n') != NULL || *have + 1 == cap ? 1 : 0;
}

/*
 * Waits for the redirect or a pasted address: 0 with r (its state checked
 * against state), -1 with a message printed.
 */
static int
wait_redirect(int *lfd, const char *state, struct redirect *r)
{
	time_t deadline = time(NULL) + WAIT_SECONDS;
	char line[REQUEST_MAX];
	size_t have = 0;
	bool tty = true;
	int got = -1;

	while (got < 0 && time(NULL) < deadline) {
		struct pollfd p[2] = { { *lfd, POLLIN, 0 },
		    { tty ? STDIN_FILENO : -1, POLLIN, 0 } };
		if (poll(p, 2, 1000) < 0 && errno != EINTR)
			break;
		if (p[0].revents & POLLIN) {
			got = take_redirect(*lfd, state, r) == 0 ? 1 : -1;
			if (got < 0)
				continue;	/* no answer: still waiting */
		} else if (p[1].revents & (POLLIN | POLLHUP)) {
			int k = read_pasted(line, sizeof(line), &have);
			if (k < 0)
				tty = false;
			if (k <= 0)
				continue;
			if (parse_query(line, r) < 0) {
				fprintf(stderr, "mailproxy: that address carries "
				    "no code; paste the whole address the browser "
				    "ended on\n");
				OPENSSL_cleanse(line, sizeof(line));
				have = 0;
				continue;
			}
			got = 2;
		}
	}
	OPENSSL_cleanse(line, sizeof(line));
	close(*lfd);		/* one answer: any further request is refused */
	*lfd = -1;
	if (got < 0) {
		fprintf(stderr, "mailproxy: no answer within %d minutes; nothing "
		    "was written\n", WAIT_SECONDS / 60);
		return -1;
	}
	/* A pasted address may lack the state, never carry another one. */
	if ((got == 1 || r->state[0] != '\0') && strcmp(r->state, state) != 0) {
		fprintf(stderr, "mailproxy: the answer does not belong to this "
		    "sign-in (state mismatch); nothing was written\n");
		return -1;
	}
	if (r->error[0] != '\0') {
		fprintf(stderr, "mailproxy: the sign-in was %s (%s); nothing was "
		    "written\n", strcmp(r->error, "access_denied") == 0 ?
		    "declined" : "not completed", r->error);
		return -1;
	}
	return 0;
}

/* The authorization address: the client, the scope, the challenge. */
static char *
authorize_address(const struct oauth2_conf *c, const char *redirect_uri,
    const char *state, const char *challenge)
{
	char *q = NULL, *url;

	if (oauth2_form_add(&q, "response_type", "code") < 0 ||
	    oauth2_form_add(&q, "client_id", c->client_id) < 0 ||
	    oauth2_form_add(&q, "redirect_uri", redirect_uri) < 0 ||
	    (c->scope != NULL && oauth2_form_add(&q, "scope", c->scope) < 0) ||
	    oauth2_form_add(&q, "state", state) < 0 ||
	    oauth2_form_add(&q, "code_challenge", challenge) < 0 ||
	    oauth2_form_add(&q, "code_challenge_method", "S256") < 0 ||
	    /* Google gives a refresh token only when asked like this. */
	    (c->provider == OAUTH2_GOOGLE && (oauth2_form_add(&q, "access_type",
	    "offline") < 0 || oauth2_form_add(&q, "prompt", "consent") < 0)))
		return NULL;
	if (asprintf(&url, "%s%c%s", c->authorize_url,
	    strchr(c->authorize_url, '?') != NULL ? '&' : '?', q) < 0)
		url = NULL;
	free(q);
	return url;
}

/* The code for tokens, with the verifier; the store written. */
static int
exchange(const struct oauth2_conf *c, const struct redirect *r,
    const char *redirect_uri, const char *verifier)
{
	struct token t = { 0 };
	char *form = NULL, code[64], why[300];
	int rc = -1;

	if (oauth2_form_add(&form, "grant_type", "authorization_code") < 0 ||
	    oauth2_form_add(&form, "code", r->code) < 0 ||
	    oauth2_form_add(&form, "redirect_uri", redirect_uri) < 0 ||
	    oauth2_form_add(&form, "code_verifier", verifier) < 0 ||
	    oauth2_form_client(&form, c) < 0) {
		oauth2_form_free(form);
		fprintf(stderr, "mailproxy: out of memory\n");
		return -1;
	}
	if (oauth2_request_once(c, form, &t, code, sizeof(code), why,
	    sizeof(why)) < 0)
		fprintf(stderr, "mailproxy: token endpoint: %s; nothing was "
		    "written\n", why);
	else if (t.refresh == NULL)
		fprintf(stderr, "mailproxy: the provider gave no refresh token "
		    "(is offline access granted?); nothing was written\n");
	else if (token_write(c->store, &t, NULL, why, sizeof(why)) < 0)
		fprintf(stderr, "mailproxy: %s\n", why);
	else {
		printf("authorized: %s written (access token valid for %lld s)\n",
		    c->store, (long long)(t.expires_at - t.obtained_at));
		rc = 0;
	}
	token_clear(&t);
	return rc;
}

int
oauth2_code_authorize(const struct oauth2_conf *c, const char *name)
{
	uint8_t raw[32], md[SHA256_DIGEST_LENGTH];
	char verifier[64], challenge[64], state[32], redirect_uri[64];
	struct redirect r;
	char *url = NULL;
	int lfd, port, rc = 1;

	/* RFC 7636 section 4.1: 32 random bytes, base64url: 43 characters. */
	RAND_bytes(raw, sizeof(raw));
	jwt_b64url(verifier, raw, sizeof(raw));
	SHA256((const uint8_t *)verifier, strlen(verifier), md);
	jwt_b64url(challenge, md, sizeof(md));
	jwt_new_id(state);
	if ((lfd = listen_loopback(&port)) < 0) {
		fprintf(stderr, "mailproxy: cannot listen on 127.0.0.1: %s\n",
		    strerror(errno));
		goto out;
	}
	snprintf(redirect_uri, sizeof(redirect_uri), "http://127.0.0.1:%d/",
	    port);
	if ((url = authorize_address(c, redirect_uri, state, challenge)) == NULL) {
		fprintf(stderr, "mailproxy: out of memory\n");
		goto out;
	}
	printf("To let mailproxy use the account of [%s], open this address in "
	    "a browser and sign in:\n  %s\n"
	    "A browser on this machine comes back by itself. Elsewhere, the "
	    "browser ends on\n%s?code=... (that page does not load): paste that "
	    "whole address here.\nWaiting up to %d minutes...\n", name, url,
	    redirect_uri, WAIT_SECONDS / 60);
	fflush(stdout);
	memset(&r, 0, sizeof(r));
	if (wait_redirect(&lfd, state, &r) == 0)
		rc = exchange(c, &r, redirect_uri, verifier) == 0 ? 0 : 1;
	redirect_wipe(&r);
out:
	if (lfd >= 0)
		close(lfd);
	free(url);
	OPENSSL_cleanse(verifier, sizeof(verifier));
	OPENSSL_cleanse(raw, sizeof(raw));
	return rc;
}
