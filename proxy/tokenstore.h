/*
 * tokenstore: the oauth2_token_store file.  One JSON object:
 *
 *   { "refresh_token": "...", "access_token": "...",
 *     "expires_at": 1764432000, "obtained_at": 1764428400 }
 *
 * expires_at / obtained_at are Unix seconds of the access token.  Only
 * refresh_token is needed: a store with nothing else (written by hand from
 * a token obtained elsewhere) makes the proxy refresh at once.
 *
 * Written 0600, to a temporary file in the same directory, fsync'ed and
 * renamed over the old one (then the directory fsync'ed), so a crash leaves
 * the old store or the new one, never half of either; the old file's owner
 * is kept when we can.  Read with the permission rules of every secret file
 * (owner and group only).  Tokens are wiped from memory when freed.
 */
#ifndef MAILPROXY_TOKENSTORE_H
#define MAILPROXY_TOKENSTORE_H

#include <stdint.h>
#include <stddef.h>
#include <sys/stat.h>

/* Tokens larger than this are refused (Microsoft's are ~2-4 KB). */
#define TOKEN_MAX	8192

struct token {
	char	*refresh;	/* NULL: none */
	char	*access;	/* NULL: none */
	int64_t	 expires_at;	/* 0: unknown */
	int64_t	 obtained_at;
};

/* Wipes and frees what t holds; t is then empty. */
void	token_clear(struct token *t);

/* The identity of a file as last seen: a change of any part is a change. */
struct file_id {
	dev_t	 dev;
	ino_t	 ino;
	int64_t	 mtime_ns;
	off_t	 size;
};

void	file_id_of(const struct stat *st, struct file_id *id);
int	file_id_equal(const struct file_id *a, const struct file_id *b);

/*
 * Reads path into t (emptied first).  Returns 0, or -1 with err (never a
 * token); *missing is set when the file does not exist.  id, if not NULL,
 * gets the identity of what was read.
 */
int	token_read(const char *path, struct token *t, struct file_id *id,
	    int *missing, char *err, size_t errlen);

/* Replaces path with t atomically (see above); id gets the new identity. */
int	token_write(const char *path, const struct token *t,
	    struct file_id *id, char *err, size_t errlen);

/* Has the file at path another identity than id (or vanished)? */
int	token_file_changed(const char *path, const struct file_id *id);

/* JSON (jansson) allocations wiped on free: tokens pass through them. */
void	token_json_wipe_on_free(void);

#endif
