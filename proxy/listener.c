/*
 * listener: bound sockets, accept loop, connection cap.
 */
#include "listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "blocks.h"
#include "clients.h"
#include "log.h"
#include "negotiate.h"
#include "session.h"

/*
 * One new session per loop turn.  A new TLS session starts with its most
 * expensive step (the server's handshake flight, 0.3-1 ms of signing), while
 * sessions already under way wait for cheap ones (the client's Finished, the
 * upstream greeting).  Accepting a burst ran a burst of handshakes ahead of
 * them, so the sessions in flight paid for every newcomer.  With one accept
 * per turn, at the same rate, the handshake bench's p99 went from 56.5 to
 * 43.7 ms (ECDSA) and from 133.8 to 75.4 ms (RSA) in one side-by-side run.
 * The listener, still readable, is reported again at the next poll, after
 * the sessions that were ready before it.  Connections refused at once
 * (blocked, over a per-client cap) cost nothing and do not use the turn.
 */
#define ACCEPTS_PER_TURN	1
/* Bound on refused connections handled in one callback. */
#define REFUSALS_PER_TURN	64
/* Pause after EMFILE/ENFILE/ENOBUFS/ENOMEM: no busy loop, no lost accept. */
#define PAUSE_SECONDS	0.5

struct listener {
	int			 fd;
	ev_io			 io;
	struct config		*cf;		/* the worker's config */
	const struct service	*svc;
	const struct listen_addr *la;	/* its routes (sni) */
	struct listener		*next;
};

static struct listener	*listeners;
static struct config	*current;	/* not a reference: main owns it */
static bool		 paused_for_cap;
static bool		 paused_for_fds;
static ev_timer		 pause_timer;
static bool		 pause_timer_ready;

/* Shared with the supervisor: does the process of each slot accept? */
static volatile uint8_t	*accepting_slots;
static int		 my_slot = -1;

#define METRICS_BACKLOG	64
/* A burst of clients waits here while a worker takes one per loop turn
 * (the kernel caps it at net.core.somaxconn). */
#define LISTEN_BACKLOG	4096

/* The protocol's "too many connections, try later" line, sent where the
 * client speaks plaintext first. */
static void
refuse_busy(const struct service *svc, int fd)
{
	char line[200];
	int n;

	if (svc->client_tls == TLS_MODE_IMPLICIT)
		return;
	n = snprintf(line, sizeof(line), "%s\r\n",
	    proto_text(svc->protocol)->too_many);
	(void)send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

enum close_reason
listeners_admit(const struct service *svc, int fd,
    const struct sockaddr_any *client)
{
	if (svc->nallow > 0 && !cidr_list_contains(svc->allow, svc->nallow,
	    (const struct sockaddr *)&client->ss))
		return R_NOT_ALLOWED;
	/* Too many failed logins: refused before any greeting. */
	if (svc->upstream_auth == AUTH_ACCOUNTS && blocks_blocked(client,
	    svc->auth_failures_max, svc->auth_block_time))
		return R_AUTH_BLOCKED;
	if (svc->max_connections_per_client > 0 && clients_count(client) >=
	    (unsigned)svc->max_connections_per_client) {
		refuse_busy(svc, fd);
		return R_PER_CLIENT_LIMIT;
	}
	return clients_add(client) ? R_NONE : R_OUT_OF_MEMORY;
}

static void
listeners_arm(EV_P_ bool on)
{
	for (struct listener *l = listeners; l != NULL; l = l->next) {
		if (on)
			ev_io_start(EV_A_ &l->io);
		else
			ev_io_stop(EV_A_ &l->io);
	}
}

static bool
accepting(void)
{
	return !paused_for_cap && !paused_for_fds;
}

static void
pause_timer_cb(EV_P_ ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	paused_for_fds = false;
	if (accepting())
		listeners_arm(EV_A_ true);
}

void
listeners_session_ended(EV_P_ const struct sockaddr_any *counted)
{
	if (counted != NULL)
		clients_remove(counted);
	if (paused_for_cap && current != NULL &&
	    sess_count() < (size_t)current->max_connections) {
		paused_for_cap = false;
		log_info("event=accept-resumed sessions=%zu", sess_count());
		if (accepting())
			listeners_arm(EV_A_ true);
	}
}

/* At max_connections: stop accepting (the kernel's backlog holds the
 * next ones) until a session ends. */
static bool
pause_at_cap(EV_P_ const struct listener *l)
{
	if (sess_count() < (size_t)l->cf->max_connections)
		return false;
	paused_for_cap = true;
	log_warnx("event=accept-paused reason=max-connections sessions=%zu",
	    sess_count());
	listeners_arm(EV_A_ false);
	return true;
}

static void
accept_cb(EV_P_ ev_io *w, int revents)
{
	struct listener *l = w->data;
	struct sockaddr_any peer;
	enum close_reason why;
	char text[80];
	int fd;

	(void)revents;
	for (int started = 0, refused = 0; started < ACCEPTS_PER_TURN &&
	    refused < REFUSALS_PER_TURN;) {
		if (pause_at_cap(EV_A_ l))
			return;
		peer.len = sizeof(peer.ss);
		fd = accept4(l->fd, (struct sockaddr *)&peer.ss, &peer.len,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			switch (errno) {
			case EAGAIN:
			case ECONNABORTED:
			case EINTR:
			case EPROTO:
				return;
			case EMFILE:
			case ENFILE:
			case ENOBUFS:
			case ENOMEM:
				log_warn("event=accept-paused svc=%s",
				    l->svc->name);
				paused_for_fds = true;
				listeners_arm(EV_A_ false);
				ev_timer_set(&pause_timer, PAUSE_SECONDS, 0.);
				ev_timer_start(EV_A_ &pause_timer);
				return;
			default:
				log_warn("svc=%s accept", l->svc->name);
				return;
			}
		}
		/* Behind a balancer the session admits the address the
		 * PROXY header carries. */
		if (!l->svc->proxy_protocol_in &&
		    (why = listeners_admit(l->svc, fd, &peer)) != R_NONE) {
			sockaddr_text((const struct sockaddr *)&peer.ss, text,
			    sizeof(text));
			log_info("event=refused svc=%s client=%s reason=%s",
			    l->svc->name, text, reason_name(why));
			close(fd);
			refused++;
			continue;
		}
		if (!sess_new(EV_A_ l->cf, l->svc, l->la, fd, &peer) &&
		    !l->svc->proxy_protocol_in)
			clients_remove(&peer);
		started++;
	}
	/* The cap reached: paused now, not when the next client knocks. */
	pause_at_cap(EV_A_ l);
}

/* ---- the supervisor's sockets ----------------------------------------- */

struct bound_addr {
	struct sockaddr_any	 addr;		/* as configured (port may be 0) */
	char			*text;
	size_t			 svc;		/* index in cf->services */
	size_t			 listen;	/* index in its listen[] */
	int			*fds;		/* [nfds], -1 once handed on */
	struct bound_addr	*from;		/* while binding: taken from */
};

struct sockset {
	struct bound_addr	*a;
	size_t			 n;
	int			 nfds;		/* per address: one per worker */
	int			 metrics_fd;	/* -1: none */
	struct sockaddr_any	 metrics_addr;
	bool			 metrics_from_old;
};

static int
bind_one(const struct sockaddr_any *addr, const char *text, bool reuseport,
    int backlog, char *err, size_t len)
{
	int fd, one = 1;

	fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* Only with several workers: otherwise a second instance started by
	 * mistake would silently share the port instead of failing to bind. */
	if (reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (addr->ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 ||
	    listen(fd, backlog) < 0)
		goto fail;
	return fd;
fail:
	snprintf(err, len, "%s %s: %s", backlog == METRICS_BACKLOG ?
	    "metrics" : "listen", text, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/* The entry of old bound to addr whose sockets are still there. */
static struct bound_addr *
find_bound(struct sockset *old, const struct sockaddr_any *addr)
{
	for (size_t i = 0; old != NULL && i < old->n; i++)
		if (old->a[i].fds[0] >= 0 && addr_equal(&old->a[i].addr, addr))
			return &old->a[i];
	return NULL;
}

void
sockset_free(struct sockset *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++) {
		for (int k = 0; s->a[i].fds != NULL && k < s->nfds; k++)
			if (s->a[i].fds[k] >= 0)
				close(s->a[i].fds[k]);
		free(s->a[i].fds);
		free(s->a[i].text);
	}
	if (s->metrics_fd >= 0)
		close(s->metrics_fd);
	free(s->a);
	free(s);
}

/* A failed bind: the sockets taken from old go back, the rest close. */
static void
sockset_rollback(struct sockset *s, struct sockset *old)
{
	for (size_t i = 0; i < s->n; i++) {
		struct bound_addr *b = &s->a[i];
		if (b->from == NULL || b->fds == NULL)
			continue;
		memcpy(b->from->fds, b->fds, (size_t)s->nfds * sizeof(int));
		for (int k = 0; k < s->nfds; k++)
			b->fds[k] = -1;
	}
	if (s->metrics_from_old) {
		old->metrics_fd = s->metrics_fd;
		s->metrics_fd = -1;
	}
	sockset_free(s);
}

static int
bind_metrics(struct sockset *s, const struct config *cf, struct sockset *old,
    char *err, size_t len)
{
	char text[80];

	if (cf->metrics.len == 0)
		return 0;
	s->metrics_addr = cf->metrics;
	if (old != NULL && old->metrics_fd >= 0 &&
	    addr_equal(&old->metrics_addr, &cf->metrics)) {
		s->metrics_fd = old->metrics_fd;
		old->metrics_fd = -1;
		s->metrics_from_old = true;
		return 0;
	}
	sockaddr_text((const struct sockaddr *)&cf->metrics.ss, text,
	    sizeof(text));
	s->metrics_fd = bind_one(&cf->metrics, text, false, METRICS_BACKLOG,
	    err, len);
	return s->metrics_fd < 0 ? -1 : 0;
}

struct sockset *
sockset_bind(const struct config *cf, int nfds, struct sockset *old,
    char *err, size_t len)
{
	struct sockset *s = calloc(1, sizeof(*s));
	size_t total = 0, at = 0;

	if (s == NULL)
		goto oom;
	s->nfds = nfds;
	s->metrics_fd = -1;
	for (size_t i = 0; i < cf->nservices; i++)
		total += cf->services[i].nlisten;
	if ((s->a = calloc(total ? total : 1, sizeof(*s->a))) == NULL)
		goto oom;
	for (size_t i = 0; i < cf->nservices; i++)
		for (size_t j = 0; j < cf->services[i].nlisten; j++) {
			const struct listen_addr *la = &cf->services[i].listen[j];
			struct bound_addr *b = &s->a[at], *o;

			if (la->shared)
				continue;	/* bound by a service it shares with */
			b->addr = la->addr;
			b->svc = i;
			b->listen = j;
			b->text = strdup(la->text);
			b->fds = malloc((size_t)nfds * sizeof(int));
			s->n = ++at;
			if (b->text == NULL || b->fds == NULL)
				goto oom;
			for (int k = 0; k < nfds; k++)
				b->fds[k] = -1;
			if ((o = find_bound(old, &la->addr)) != NULL) {
				/* Unchanged address: the same sockets, so no
				 * connection waiting in their queue is lost. */
				memcpy(b->fds, o->fds, (size_t)nfds * sizeof(int));
				for (int k = 0; k < nfds; k++)
					o->fds[k] = -1;
				b->from = o;
				continue;
			}
			for (int k = 0; k < nfds; k++)
				if ((b->fds[k] = bind_one(&la->addr, la->text,
				    nfds > 1, LISTEN_BACKLOG, err, len)) < 0) {
					sockset_rollback(s, old);
					return NULL;
				}
		}
	if (bind_metrics(s, cf, old, err, len) < 0) {
		sockset_rollback(s, old);
		return NULL;
	}
	for (size_t i = 0; i < s->n; i++)
		s->a[i].from = NULL;
	s->metrics_from_old = false;
	return s;
oom:
	snprintf(err, len, "out of memory");
	if (s != NULL)
		sockset_rollback(s, old);
	return NULL;
}

void
sockset_keep_only(const struct sockset *s, int index)
{
	for (size_t i = 0; i < s->n; i++)
		for (int k = 0; k < s->nfds; k++)
			if (k != index % s->nfds && s->a[i].fds[k] >= 0)
				close(s->a[i].fds[k]);
	if (index != 0 && s->metrics_fd >= 0)
		close(s->metrics_fd);
}

int
sockset_metrics_fd(const struct sockset *s)
{
	return s->metrics_fd;
}

void
sockset_log(const struct sockset *s, const struct config *cf)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct service *svc = &cf->services[s->a[i].svc];
		struct sockaddr_any bound;
		char text[80];

		bound.len = sizeof(bound.ss);
		if (getsockname(s->a[i].fds[0], (struct sockaddr *)&bound.ss,
		    &bound.len) < 0)
			continue;
		sockaddr_text((const struct sockaddr *)&bound.ss, text,
		    sizeof(text));
		const struct listen_addr *la = &svc->listen[s->a[i].listen];
		log_info("event=listen svc=%s addr=%s protocol=%s client_tls=%s "
		    "upstream=%s upstream_tls=%s", svc->name, text,
		    proto_names[svc->protocol], tls_mode_names[svc->client_tls],
		    svc->upstream, tls_mode_names[svc->upstream_tls]);
		/* The services sharing it, each with its names. */
		for (size_t r = 0; r < la->nroutes; r++) {
			char names[200] = "";
			size_t o = 0;
			for (size_t k = 0; k < la->routes[r]->nsni && o <
			    sizeof(names); k++)
				o += (size_t)snprintf(names + o, sizeof(names) - o,
				    "%s%s", k ? "," : "", la->routes[r]->sni[k]);
			log_info("event=sni-route addr=%s svc=%s sni=%s", text,
			    la->routes[r]->name, o ? names : "(default)");
		}
	}
	if (s->metrics_fd >= 0) {
		struct sockaddr_any b;
		char text[80];
		b.len = sizeof(b.ss);
		getsockname(s->metrics_fd, (struct sockaddr *)&b.ss, &b.len);
		sockaddr_text((struct sockaddr *)&b.ss, text, sizeof(text));
		log_info("event=metrics-listen addr=%s", text);
	}
}

/* ---- a worker's listeners ------------------------------------------------ */

int
listeners_init_shared(int nslots)
{
	void *p = mmap(NULL, (size_t)nslots, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return -1;
	accepting_slots = p;
	return 0;
}

void
listeners_set_slot(int slot)
{
	my_slot = slot;
	__atomic_store_n(&accepting_slots[slot], 0, __ATOMIC_RELEASE);
}

bool
listeners_slot_accepting(int slot)
{
	return __atomic_load_n(&accepting_slots[slot], __ATOMIC_ACQUIRE) != 0;
}

static void
set_accepting(uint8_t on)
{
	if (accepting_slots != NULL && my_slot >= 0)
		__atomic_store_n(&accepting_slots[my_slot], on, __ATOMIC_RELEASE);
}

int
listeners_adopt(EV_P_ struct config *cf, const struct sockset *s, int index)
{
	struct listener *l;

	if (!pause_timer_ready) {
		ev_init(&pause_timer, pause_timer_cb);
		pause_timer_ready = true;
	}
	for (size_t i = 0; i < s->n; i++) {
		if ((l = calloc(1, sizeof(*l))) == NULL)
			return -1;
		l->fd = s->a[i].fds[index % s->nfds];
		l->svc = &cf->services[s->a[i].svc];
		l->la = &l->svc->listen[s->a[i].listen];
		l->cf = cf;
		l->next = listeners;
		listeners = l;
		ev_io_init(&l->io, accept_cb, l->fd, EV_READ);
		l->io.data = l;
	}
	current = cf;
	paused_for_cap = sess_count() >= (size_t)cf->max_connections;
	if (accepting())
		listeners_arm(EV_A_ true);
	set_accepting(1);
	return 0;
}

void
listeners_close_all(EV_P)
{
	struct listener *l, *next;

	for (l = listeners; l != NULL; l = next) {
		next = l->next;
		ev_io_stop(EV_A_ &l->io);
		close(l->fd);
		free(l);
	}
	listeners = NULL;
	current = NULL;
	set_accepting(0);
	ev_timer_stop(EV_A_ &pause_timer);
}
