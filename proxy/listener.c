/*
 * listener: bound sockets, accept loop, connection cap.
 */
#include "listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "session.h"

/* Accepts per callback before other work gets a turn. */
#define ACCEPT_BURST	64
/* Pause after EMFILE/ENFILE/ENOBUFS/ENOMEM: no busy loop, no lost accept. */
#define PAUSE_SECONDS	0.5

struct listener {
	int			 fd;
	ev_io			 io;
	struct sockaddr_any	 addr;		/* as configured (port may be 0) */
	char			*text;
	struct config		*cf;		/* the current config */
	const struct service	*svc;
	struct listener		*claimed_from;	/* during apply only */
	struct listener		*next;
};

static struct listener	*listeners;
static struct config	*current;	/* not a reference: main owns it */
static bool		 paused_for_cap;
static bool		 paused_for_fds;
static ev_timer		 pause_timer;
static bool		 pause_timer_ready;
static bool		 reuseport;

void
listeners_set_reuseport(bool on)
{
	reuseport = on;
}

/*
 * Open sessions per client address, for max_connections_per_client: a
 * chained hash keyed by family + address bytes; an entry lives while its
 * count is above zero.
 */
#define CLIENT_BUCKETS	4096

struct client_count {
	uint8_t			 key[17];
	unsigned		 n;
	struct client_count	*next;
};

static struct client_count *clients[CLIENT_BUCKETS];

static void
client_key(const struct sockaddr_any *peer, uint8_t key[17])
{
	memset(key, 0, 17);
	key[0] = (uint8_t)peer->ss.ss_family;
	if (peer->ss.ss_family == AF_INET)
		memcpy(key + 1, &((const struct sockaddr_in *)&peer->ss)->sin_addr, 4);
	else if (peer->ss.ss_family == AF_INET6)
		memcpy(key + 1, &((const struct sockaddr_in6 *)&peer->ss)->sin6_addr,
		    16);
}

static struct client_count **
client_slot(const uint8_t key[17])
{
	uint32_t h = 2166136261u;
	struct client_count **pp;

	for (int i = 0; i < 17; i++)
		h = (h ^ key[i]) * 16777619u;
	for (pp = &clients[h % CLIENT_BUCKETS]; *pp != NULL; pp = &(*pp)->next)
		if (memcmp((*pp)->key, key, 17) == 0)
			break;
	return pp;
}

static unsigned
client_sessions(const struct sockaddr_any *peer)
{
	uint8_t key[17];
	struct client_count **pp;

	client_key(peer, key);
	pp = client_slot(key);
	return *pp != NULL ? (*pp)->n : 0;
}

static void
client_add(const struct sockaddr_any *peer, int delta)
{
	uint8_t key[17];
	struct client_count **pp, *c;

	client_key(peer, key);
	pp = client_slot(key);
	if ((c = *pp) == NULL) {
		if (delta < 0 || (c = calloc(1, sizeof(*c))) == NULL)
			return;
		memcpy(c->key, key, 17);
		*pp = c;
	}
	c->n = (unsigned)((int)c->n + delta);
	if (c->n == 0) {
		*pp = c->next;
		free(c);
	}
}

/* The protocol's "too many connections, try later" line (plaintext only). */
static void
refuse_busy(const struct service *svc, int fd)
{
	static const char *const msg[] = {
		"421 4.7.0 Too many connections from your address\r\n",
		"-ERR [IN-USE] Too many connections from your address\r\n",
		"* BYE [UNAVAILABLE] Too many connections from your address\r\n",
	};

	if (svc->client_tls != TLS_MODE_IMPLICIT)
		(void)send(fd, msg[svc->protocol], strlen(msg[svc->protocol]),
		    MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Applies allow and the per-client share; false if fd was refused. */
static bool
admit(const struct listener *l, int fd, const struct sockaddr_any *peer)
{
	const struct service *svc = l->svc;
	const char *why = NULL;
	char text[80];

	/* Behind a balancer, allow is checked on the carried address. */
	if (svc->nallow > 0 && !svc->proxy_protocol_in &&
	    !cidr_list_contains(svc->allow, svc->nallow,
	    (const struct sockaddr *)&peer->ss))
		why = "not-allowed";
	else if (svc->max_connections_per_client > 0 && client_sessions(peer) >=
	    (unsigned)svc->max_connections_per_client) {
		why = "per-client-limit";
		refuse_busy(svc, fd);
	}
	if (why == NULL)
		return true;
	sockaddr_text((const struct sockaddr *)&peer->ss, text, sizeof(text));
	log_info("event=refused svc=%s client=%s reason=%s", svc->name, text, why);
	close(fd);
	return false;
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
listeners_session_ended(EV_P_ const struct sockaddr_any *peer)
{
	client_add(peer, -1);
	if (paused_for_cap && current != NULL &&
	    sess_count() < (size_t)current->max_connections) {
		paused_for_cap = false;
		log_info("event=accept-resumed sessions=%zu", sess_count());
		if (accepting())
			listeners_arm(EV_A_ true);
	}
}

static void
accept_cb(EV_P_ ev_io *w, int revents)
{
	struct listener *l = w->data;
	struct sockaddr_any peer;
	int fd;

	(void)revents;
	for (int i = 0; i < ACCEPT_BURST; i++) {
		if (sess_count() >= (size_t)l->cf->max_connections) {
			paused_for_cap = true;
			log_warnx("event=accept-paused reason=max-connections "
			    "sessions=%zu", sess_count());
			listeners_arm(EV_A_ false);
			return;
		}
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
		if (!admit(l, fd, &peer))
			continue;
		client_add(&peer, +1);
		if (!sess_new(EV_A_ l->cf, l->svc, fd, &peer))
			client_add(&peer, -1);
	}
}

static int
bind_one(const struct listen_addr *la, char *err, size_t len)
{
	int fd, one = 1;

	fd = socket(la->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* Only with workers: otherwise a second instance started by mistake
	 * would silently share the port instead of failing to bind. */
	if (reuseport)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (la->addr.ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&la->addr.ss, la->addr.len) < 0 ||
	    listen(fd, 1024) < 0)
		goto fail;
	return fd;
fail:
	snprintf(err, len, "listen %s: %s", la->text, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

static struct listener *
find_reusable(const struct listen_addr *la)
{
	for (struct listener *l = listeners; l != NULL; l = l->next)
		if (l->fd >= 0 && l->addr.len == la->addr.len &&
		    memcmp(&l->addr.ss, &la->addr.ss, la->addr.len) == 0)
			return l;
	return NULL;
}

static void
log_bound(const struct listener *l)
{
	struct sockaddr_any bound;
	char text[80];

	bound.len = sizeof(bound.ss);
	if (getsockname(l->fd, (struct sockaddr *)&bound.ss, &bound.len) < 0)
		return;
	sockaddr_text((const struct sockaddr *)&bound.ss, text, sizeof(text));
	log_info("event=listen svc=%s addr=%s protocol=%s client_tls=%s "
	    "upstream=%s upstream_tls=%s", l->svc->name, text,
	    proto_names[l->svc->protocol], tls_mode_names[l->svc->client_tls],
	    l->svc->upstream, tls_mode_names[l->svc->upstream_tls]);
}

int
listeners_apply(EV_P_ struct config *cf, char *err, size_t len)
{
	struct listener *fresh = NULL, *l, *next;

	/* Pass 1: claim or bind everything; nothing visible changes yet. */
	if (!pause_timer_ready) {
		ev_init(&pause_timer, pause_timer_cb);
		pause_timer_ready = true;
	}
	for (size_t i = 0; i < cf->nservices; i++) {
		const struct service *svc = &cf->services[i];
		for (size_t j = 0; j < svc->nlisten; j++) {
			const struct listen_addr *la = &svc->listen[j];
			if ((l = calloc(1, sizeof(*l))) == NULL) {
				snprintf(err, len, "out of memory");
				goto rollback;
			}
			l->next = fresh;
			fresh = l;
			l->svc = svc;
			l->cf = cf;
			l->addr = la->addr;
			l->text = strdup(la->text);
			if ((l->claimed_from = find_reusable(la)) != NULL) {
				l->fd = l->claimed_from->fd;
				l->claimed_from->fd = -1;
			} else if ((l->fd = bind_one(la, err, len)) < 0)
				goto rollback;
		}
	}
	/* Pass 2: commit.  Close what the new config no longer has. */
	for (l = listeners; l != NULL; l = next) {
		next = l->next;
		ev_io_stop(EV_A_ &l->io);
		if (l->fd >= 0) {
			log_info("event=unlisten addr=%s", l->text);
			close(l->fd);
		}
		free(l->text);
		free(l);
	}
	listeners = fresh;
	current = cf;
	for (l = listeners; l != NULL; l = l->next) {
		l->claimed_from = NULL;
		ev_io_init(&l->io, accept_cb, l->fd, EV_READ);
		l->io.data = l;
		log_bound(l);
	}
	paused_for_cap = sess_count() >= (size_t)cf->max_connections;
	if (accepting())
		listeners_arm(EV_A_ true);
	return 0;
rollback:
	/* Give claimed sockets back, close the ones bound for this try. */
	for (l = fresh; l != NULL; l = next) {
		next = l->next;
		if (l->claimed_from != NULL)
			l->claimed_from->fd = l->fd;
		else if (l->fd >= 0)
			close(l->fd);
		free(l->text);
		free(l);
	}
	return -1;
}

void
listeners_close_all(EV_P)
{
	struct listener *l, *next;

	for (l = listeners; l != NULL; l = next) {
		next = l->next;
		ev_io_stop(EV_A_ &l->io);
		close(l->fd);
		free(l->text);
		free(l);
	}
	listeners = NULL;
	current = NULL;
	ev_timer_stop(EV_A_ &pause_timer);
}
