/*
 * dnsstub: see dnsstub.h.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dnsstub.h"

/* Answers one query: header, one question, QTYPE; nothing else parsed. */
static void
answer_cb(EV_P_ ev_io *w, int revents)
{
	struct dnsstub *s = w->data;
	unsigned char q[512], a[512];
	struct sockaddr_storage from;
	socklen_t fromlen = sizeof(from);
	char name[256];
	size_t i, qend, nlen = 0, alen;
	ssize_t len;
	int qtype, an = 0;
	bool known = false;

	(void)loop;
	(void)revents;
	len = recvfrom(s->fd, q, sizeof(q), 0, (struct sockaddr *)&from,
	    &fromlen);
	if (len < 12 + 5 || q[4] != 0 || q[5] != 1)
		return;
	s->queries++;
	if (s->silent)
		return;
	for (i = 12; i < (size_t)len && q[i] != 0; i += q[i] + 1) {
		if (q[i] > 63 || i + 1 + q[i] >= (size_t)len ||
		    nlen + q[i] + 1 >= sizeof(name))
			return;
		if (nlen > 0)
			name[nlen++] = '.';
		memcpy(name + nlen, q + i + 1, q[i]);
		nlen += q[i];
	}
	name[nlen] = '\0';
	qend = i + 5;
	if (qend > (size_t)len)
		return;
	qtype = q[i + 1] << 8 | q[i + 2];

	memcpy(a, q, qend);
	a[2] = 0x80 | (q[2] & 0x79);	/* QR, opcode and RD echoed */
	a[3] = 0x80;			/* RA, rcode 0 */
	memset(a + 6, 0, 6);		/* AN, NS, AR counts */
	alen = qend;
	for (i = 0; i < s->nrecs; i++) {
		const struct dns_rec *rec = &s->recs[i];
		int rdlen = rec->type == T_A ? 4 : 16;

		if (strcasecmp(rec->name, name) != 0)
			continue;
		known = true;
		if (rec->type != qtype)
			continue;
		a[alen++] = 0xc0;	/* the name: a pointer to the question */
		a[alen++] = 12;
		a[alen++] = 0;
		a[alen++] = (unsigned char)qtype;
		a[alen++] = 0;
		a[alen++] = 1;		/* IN */
		a[alen++] = (unsigned char)(rec->ttl >> 24);
		a[alen++] = (unsigned char)(rec->ttl >> 16);
		a[alen++] = (unsigned char)(rec->ttl >> 8);
		a[alen++] = (unsigned char)rec->ttl;
		a[alen++] = 0;
		a[alen++] = (unsigned char)rdlen;
		inet_pton(rdlen == 4 ? AF_INET : AF_INET6, rec->addr,
		    a + alen);
		alen += (size_t)rdlen;
		an++;
	}
	if (!known)
		a[3] |= 3;		/* NXDOMAIN */
	a[7] = (unsigned char)an;
	sendto(s->fd, a, alen, 0, (struct sockaddr *)&from, fromlen);
}

void
dnsstub_start(EV_P_ struct dnsstub *s, const struct dns_rec *recs,
    size_t n)
{
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);

	memset(s, 0, sizeof(*s));
	s->recs = recs;
	s->nrecs = n;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0)) < 0 ||
	    bind(s->fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(s->fd, (struct sockaddr *)&sin, &slen) < 0)
		abort();
	snprintf(s->servers, sizeof(s->servers), "127.0.0.1:%u",
	    ntohs(sin.sin_port));
	ev_io_init(&s->io, answer_cb, s->fd, EV_READ);
	s->io.data = s;
	ev_io_start(EV_A_ &s->io);
}

void
dnsstub_stop(EV_P_ struct dnsstub *s)
{
	ev_io_stop(EV_A_ &s->io);
	close(s->fd);
}

