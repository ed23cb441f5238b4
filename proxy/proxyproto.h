/*
 * proxyproto: the PROXY protocol, v1 (text) and v2 (binary), as used by
 * HAProxy and cloud load balancers to carry the client's address.  Pure:
 * parse a header from bytes, build one into a buffer.
 */
#ifndef MAILPROXY_PROXYPROTO_H
#define MAILPROXY_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"

/* The longest header we accept (v1 is at most 107 bytes; v2 with TLVs). */
#define PP_MAX_HEADER	536

struct pp_result {
	int			 version;	/* 1 or 2 */
	int			 local;		/* LOCAL / UNKNOWN: no address */
	struct sockaddr_any	 src;
	struct sockaddr_any	 dst;
};

/*
 * Parses a header at the start of buf.  Returns its length (> 0), 0 when
 * more bytes are needed, or -1 when buf does not start with a valid header.
 */
int	pp_parse(const uint8_t *buf, size_t len, struct pp_result *out);

/*
 * Builds a version (1 or 2) header for a TCP connection from src to dst
 * into out; returns its length, or 0 if it does not fit.
 */
size_t	pp_build(int version, const struct sockaddr_any *src,
	    const struct sockaddr_any *dst, uint8_t *out, size_t cap);

#endif
