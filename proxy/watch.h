/*
 * watch: the files a configuration names (the file itself, certificates,
 * keys, CAs, password and token files) watched with inotify, for
 * watch_files = yes.  Directories are watched, not the files, so that the
 * ways files really change are all seen: written in place, renamed into
 * place by an editor or certbot, or swapped under a Kubernetes "..data"
 * symlink.  The supervisor polls it and, once changes have settled,
 * reloads as on SIGHUP (all or nothing).
 */
#ifndef MAILPROXY_WATCH_H
#define MAILPROXY_WATCH_H

#include <stdbool.h>

#include "config.h"

struct watch;

/* Watches what cf (loaded from file) names; NULL with err on failure. */
struct watch *watch_start(const struct config *cf, const char *file,
	    char *err, size_t errlen);
void	watch_free(struct watch *w);

/* Reads what happened since the last call; true if a watched file (or a
 * Kubernetes "..data" link next to one) changed.  Never blocks. */
bool	watch_changed(struct watch *w);

#endif
