/*
 * https: one HTTPS request at a time per call, on a libev loop, for the
 * OAuth2 token and device endpoints.
 *
 * Nothing blocks: the name is looked up with the resolver (c-ares), the
 * connection, the TLS handshake (BoringSSL, chain and host name verified
 * against the context's trust anchors) and the exchange are ev_io watchers,
 * bounded by one overall timeout.  HTTP/1.1 with "Connection: close"; the
 * response body is read by Content-Length, chunked encoding or to EOF, at
 * most HTTPS_MAX_BODY bytes.  With a proxy ("http://HOST:PORT", the
 * https_proxy convention) the connection is a CONNECT tunnel through it.
 *
 * Request bodies carry secrets (client secret, refresh token, device code):
 * every buffer that held one is wiped before it is freed, and nothing of a
 * request or a response is logged here.
 */
#ifndef MAILPROXY_HTTPS_H
#define MAILPROXY_HTTPS_H

#include <stddef.h>

#include <ev.h>
#include <openssl/ssl.h>

struct resolver;

#define HTTPS_MAX_BODY	(64 * 1024)

/*
 * The outcome of one request.  status is the HTTP status (any, 4xx
 * included: OAuth2 errors come as 400 with a JSON body) with body / len
 * the response body, valid only during the callback (NUL-terminated); or
 * status 0 when no response arrived, with error saying why ("connect
 * 127.0.0.1:443: Connection refused", "certificate verify failed: ...",
 * "timed out", "response too large", ...).
 */
struct https_result {
	int		 status;
	const char	*body;
	size_t		 len;
	const char	*error;		/* NULL when status != 0 */
};

typedef void (*https_cb)(void *arg, const struct https_result *r);

struct https_req;

/*
 * A client context for the endpoints: TLS 1.2 minimum, peer verification
 * on, trust anchors from ca_file (PEM), or the system bundle when NULL.
 * NULL with err on failure.
 */
SSL_CTX	*https_ctx_new(const char *ca_file, char *err, size_t errlen);

/*
 * POSTs form (application/x-www-form-urlencoded, already encoded) to url
 * ("https://host[:port][/path]"), through proxy unless it is NULL or "".
 * cb runs exactly once, from the loop, never from within https_post.
 * Returns NULL (cb never run) when the url or proxy is not valid or memory
 * runs out, with err set.
 */
struct https_req *https_post(EV_P_ SSL_CTX *ctx, struct resolver *res,
	    const char *url, const char *form, const char *proxy,
	    double timeout, https_cb cb, void *arg, char *err, size_t errlen);

/* Stops a request whose callback has not run yet; cb is never run. */
void	https_cancel(EV_P_ struct https_req *r);

/*
 * The proxy for url from the environment, as curl reads it: https_proxy or
 * HTTPS_PROXY, unless no_proxy / NO_PROXY names the host (exact or a
 * domain suffix, "*" for all).  NULL when none applies.
 */
const char *https_proxy_for(const char *url);

#endif
