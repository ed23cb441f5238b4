/*
 * tokenstore: the oauth2_token_store file; see tokenstore.h.
 */
#include "tokenstore.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/mem.h>

#include "secret.h"

/* Two tokens and the JSON around them. */
#define STORE_MAX	(2 * TOKEN_MAX + 1024)

static void
wipe_free(char *s)
{
	if (s != NULL) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

void
token_clear(struct token *t)
{
	wipe_free(t->refresh);
	wipe_free(t->access);
	memset(t, 0, sizeof(*t));
}

static void
json_wiping_free(void *p)
{
	if (p != NULL) {
		OPENSSL_cleanse(p, malloc_usable_size(p));
		free(p);
	}
}

void
token_json_wipe_on_free(void)
{
	json_set_alloc_funcs(malloc, json_wiping_free);
}

void
file_id_of(const struct stat *st, struct file_id *id)
{
	id->dev = st->st_dev;
	id->ino = st->st_ino;
	id->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 +
	    st->st_mtim.tv_nsec;
	id->size = st->st_size;
}

int
file_id_equal(const struct file_id *a, const struct file_id *b)
{
	return a->dev == b->dev && a->ino == b->ino &&
	    a->mtime_ns == b->mtime_ns && a->size == b->size;
}

int
token_file_changed(const char *path, const struct file_id *id)
{
	struct stat st;
	struct file_id now;

	if (stat(path, &st) < 0)
		return id->ino != 0;
	file_id_of(&st, &now);
	return !file_id_equal(&now, id);
}

/* A token member: a non-empty string without control bytes, or absent. */
static int
take_string(json_t *o, const char *key, char **out, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);
	const char *s;

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    json_string_length(v) >= TOKEN_MAX) {
		snprintf(err, errlen, "\"%s\" is not a token", key);
		return -1;
	}
	s = json_string_value(v);
	for (const char *c = s; *c != '\0'; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f) {
			snprintf(err, errlen, "\"%s\" holds a control "
			    "character", key);
			return -1;
		}
	if ((*out = strdup(s)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static int64_t
take_time(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_integer(v) && json_integer_value(v) > 0 ?
	    (int64_t)json_integer_value(v) : 0;
}

int
token_read(const char *path, struct token *t, struct file_id *id,
    int *missing, char *err, size_t errlen)
{
	char *text, why[300];
	struct stat st;
	json_error_t jerr;
	json_t *o;
	ssize_t n;
	int rc = -1;

	token_clear(t);
	*missing = 0;
	if (stat(path, &st) < 0 && errno == ENOENT) {
		*missing = 1;
		snprintf(err, errlen, "%s does not exist", path);
		return -1;
	}
	if ((text = malloc(STORE_MAX)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if ((n = secret_read_raw(path, text, STORE_MAX, why, sizeof(why))) < 0) {
		snprintf(err, errlen, "%s", why);
		/* A store too large was read all the same. */
		OPENSSL_cleanse(text, STORE_MAX);
		free(text);
		return -1;
	}
	o = json_loadb(text, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
	OPENSSL_cleanse(text, STORE_MAX);
	free(text);
	if (o == NULL || !json_is_object(o)) {
		/* Where it failed, never jerr.text: it quotes the input
		 * ("near '...'"), which may be a token. */
		if (o == NULL)
			snprintf(err, errlen, "%s: not a token store (invalid "
			    "JSON at line %d, column %d)", path, jerr.line,
			    jerr.column);
		else
			snprintf(err, errlen, "%s: not a token store (a JSON "
			    "object expected)", path);
		json_decref(o);
		return -1;
	}
	if (take_string(o, "refresh_token", &t->refresh, why, sizeof(why)) < 0 ||
	    take_string(o, "access_token", &t->access, why, sizeof(why)) < 0)
		snprintf(err, errlen, "%s: %s", path, why);
	else if (t->refresh == NULL && t->access == NULL)
		snprintf(err, errlen, "%s: no refresh_token (run mailproxy -A)",
		    path);
	else {
		t->expires_at = take_time(o, "expires_at");
		t->obtained_at = take_time(o, "obtained_at");
		if (id != NULL && stat(path, &st) == 0)
			file_id_of(&st, id);
		rc = 0;
	}
	json_decref(o);
	if (rc < 0)
		token_clear(t);
	return rc;
}

static json_t *
token_json(const struct token *t)
{
	json_t *o = json_object();

	if (o == NULL ||
	    (t->refresh != NULL && json_object_set_new(o, "refresh_token",
	    json_string(t->refresh)) < 0) ||
	    (t->access != NULL && json_object_set_new(o, "access_token",
	    json_string(t->access)) < 0) ||
	    (t->expires_at > 0 && json_object_set_new(o, "expires_at",
	    json_integer(t->expires_at)) < 0) ||
	    (t->obtained_at > 0 && json_object_set_new(o, "obtained_at",
	    json_integer(t->obtained_at)) < 0)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static int
write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void
dir_of(const char *path, char *dir, size_t cap)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		snprintf(dir, cap, ".");
	else if (slash == path)
		snprintf(dir, cap, "/");
	else
		snprintf(dir, cap, "%.*s", (int)(slash - path), path);
}

/* The directory entry of the rename reaches the disk too. */
static void
sync_dir(const char *path)
{
	char dir[PATH_MAX];
	int fd;

	dir_of(path, dir, sizeof(dir));
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

int
token_write(const char *path, const struct token *t, struct file_id *id,
    char *err, size_t errlen)
{
	char tmp[PATH_MAX];
	struct stat old, st;
	json_t *o;
	char *text;
	int fd, rc = -1;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path,
	    (long)getpid()) >= sizeof(tmp)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	if ((o = token_json(t)) == NULL ||
	    (text = json_dumps(o, JSON_INDENT(2))) == NULL) {
		json_decref(o);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	json_decref(o);
	(void)unlink(tmp);	/* a leftover of a crash */
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
	    O_CLOEXEC, 0600)) < 0) {
		snprintf(err, errlen, "cannot create %s: %s", tmp,
		    strerror(errno));
		json_wiping_free(text);
		return -1;
	}
	/* Whoever could read the old store can read the new one: a store
	 * that would change hands is not written. */
	if (stat(path, &old) == 0 && geteuid() == 0 &&
	    fchown(fd, old.st_uid, old.st_gid) < 0)
		snprintf(err, errlen, "cannot give %s the owner of %s: %s",
		    tmp, path, strerror(errno));
	else if (write_all(fd, text, strlen(text)) < 0 ||
	    write_all(fd, "\n", 1) < 0 || fsync(fd) < 0)
		snprintf(err, errlen, "cannot write %s: %s", tmp,
		    strerror(errno));
	else if (rename(tmp, path) < 0)
		snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path,
		    strerror(errno));
	else
		rc = 0;
	json_wiping_free(text);
	close(fd);
	if (rc < 0) {
		(void)unlink(tmp);
		return -1;
	}
	sync_dir(path);
	if (id != NULL && stat(path, &st) == 0)
		file_id_of(&st, id);
	return 0;
}
