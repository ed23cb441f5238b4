/*
 * watch: inotify on the directories of the configuration's files; see
 * watch.h.
 */
#include "watch.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "oauth2.h"

#define MAX_WATCHED	256	/* files; each service names a handful */

struct watch {
	int	 fd;
	size_t	 n;
	struct {
		int	 wd;		/* the directory's watch */
		char	*base;		/* the file's name in it */
		char	*store;		/* a token store's path: our own
					   writes to it are no change */
	} f[MAX_WATCHED];
};

/* What changing a file looks like in its directory. */
#define EVENTS	(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | \
		 IN_DELETE | IN_ATTRIB)

static int
add(struct watch *w, const char *path, char *err, size_t errlen);

static int
add_store(struct watch *w, const char *path, char *err, size_t errlen)
{
	size_t n = w->n;

	if (path == NULL || add(w, path, err, errlen) < 0 || w->n == n)
		return path == NULL || w->n == n ? 0 : -1;
	if ((w->f[n].store = strdup(path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static int
add(struct watch *w, const char *path, char *err, size_t errlen)
{
	char dir[PATH_MAX];
	const char *slash;
	int wd;

	if (path == NULL || w->n == MAX_WATCHED)
		return 0;
	slash = strrchr(path, '/');
	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	/* The same directory gives the same wd: no duplicate watch. */
	if ((wd = inotify_add_watch(w->fd, dir, EVENTS | IN_ONLYDIR)) < 0) {
		snprintf(err, errlen, "watch %s: %s", dir, strerror(errno));
		return -1;
	}
	w->f[w->n].wd = wd;
	if ((w->f[w->n].base = strdup(slash != NULL ? slash + 1 : path)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	w->n++;
	return 0;
}

/* The files of a service's or an account's oauth2_* keys. */
static int
add_oauth2(struct watch *w, const struct oauth2_conf *c, char *err,
    size_t errlen)
{
	return add(w, c->client_secret_file, err, errlen) |
	    add(w, c->ca, err, errlen) | add_store(w, c->store, err, errlen) |
	    add(w, c->client_cert, err, errlen) |
	    add(w, c->client_key, err, errlen) | add(w, c->sa_file, err, errlen);
}

struct watch *
watch_start(const struct config *cf, const char *file, char *err,
    size_t errlen)
{
	struct watch *w = calloc(1, sizeof(*w));
	int rc = 0;

	if (w == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if ((w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0) {
		snprintf(err, errlen, "inotify: %s", strerror(errno));
		free(w);
		return NULL;
	}
	rc |= add(w, file, err, errlen);
	for (size_t i = 0; i < cf->nservices && rc == 0; i++) {
		const struct service *svc = &cf->services[i];
		for (size_t k = 0; k < svc->ncerts && rc == 0; k++) {
			rc |= add(w, svc->certs[k], err, errlen);
			rc |= add(w, svc->keys[k], err, errlen);
		}
		rc |= add(w, svc->upstream_ca, err, errlen);
		rc |= add(w, svc->upstream_cert, err, errlen);
		rc |= add(w, svc->upstream_key, err, errlen);
		rc |= add(w, svc->upstream_password_file, err, errlen);
		rc |= add(w, svc->upstream_token_file, err, errlen);
		rc |= add_oauth2(w, &svc->oauth2, err, errlen);
	}
	for (size_t i = 0; i < cf->naccounts && rc == 0; i++) {
		rc |= add(w, cf->accounts[i].upstream_password_file, err, errlen);
		rc |= add(w, cf->accounts[i].upstream_token_file, err, errlen);
		rc |= add_oauth2(w, &cf->accounts[i].oauth2, err, errlen);
	}
	if (rc != 0) {
		watch_free(w);
		return NULL;
	}
	return w;
}

void
watch_free(struct watch *w)
{
	if (w == NULL)
		return;
	for (size_t i = 0; i < w->n; i++) {
		free(w->f[i].base);
		free(w->f[i].store);
	}
	close(w->fd);
	free(w);
}

/* Is name, in the directory of watch wd, one of ours (or the Kubernetes
 * link that all the files of a mounted secret point through)?  A token
 * store counts only when someone else wrote it (mailproxy -A). */
static bool
ours(const struct watch *w, int wd, const char *name)
{
	for (size_t i = 0; i < w->n; i++) {
		if (w->f[i].wd != wd)
			continue;
		if (w->f[i].store != NULL && strcmp(w->f[i].base, name) == 0)
			return oauth2_store_changed(w->f[i].store);
		if (w->f[i].store == NULL && (strcmp(w->f[i].base, name) == 0 ||
		    strcmp(name, "..data") == 0))
			return true;
	}
	return false;
}

bool
watch_changed(struct watch *w)
{
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool changed = false;
	ssize_t n;

	while ((n = read(w->fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n; ) {
			const struct inotify_event *ev = (const void *)p;
			if ((ev->mask & IN_Q_OVERFLOW) || (ev->len > 0 &&
			    ours(w, ev->wd, ev->name)))
				changed = true;
			p += sizeof(*ev) + ev->len;
		}
	}
	return changed;
}
