/* Unit tests for secret: a refused secret file leaves no copy behind. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "secret.h"
#include "unit.h"

#define MARK	"secret-unit-marker-7c1e"

static void
put(const char *path, const char *text, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	CHECK(fd >= 0 && write(fd, text, len) == (ssize_t)len);
	close(fd);
}

static bool
holds(const char *buf, size_t len)
{
	return memmem(buf, len, MARK, strlen(MARK)) != NULL;
}

/*
 * Every refusal after the file was read (too large, two lines, a NUL)
 * wipes what was read: set_secret_file's stack copy, the token store's
 * heap buffer and tickets' key buffer are freed or reused as they are.
 */
static void
test_refused_is_wiped(void)
{
	char dir[] = "/tmp/mp-secret-XXXXXX", path[128], err[300];
	char out[64], big[200];
	static const char nul[] = MARK "\0x";

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/s", dir);

	/* Accepted: there, and nothing after it. */
	put(path, MARK "\n", strlen(MARK) + 1);
	CHECK(secret_read(path, out, sizeof(out), err, sizeof(err)) ==
	    (int)strlen(MARK));
	CHECK(strcmp(out, MARK) == 0);

	put(path, MARK "\nsecond\n", strlen(MARK) + 8);
	memset(out, 0, sizeof(out));
	CHECK(secret_read(path, out, sizeof(out), err, sizeof(err)) == -1);
	CHECK_STR_CONTAINS(err, "one line expected");
	CHECK(!holds(out, sizeof(out)));

	put(path, nul, sizeof(nul) - 1);
	memset(out, 0, sizeof(out));
	CHECK(secret_read(path, out, sizeof(out), err, sizeof(err)) == -1);
	CHECK(!holds(out, sizeof(out)));

	memset(big, 'p', sizeof(big));
	memcpy(big, MARK, strlen(MARK));
	put(path, big, sizeof(big));
	memset(out, 0, sizeof(out));
	CHECK(secret_read(path, out, sizeof(out), err, sizeof(err)) == -1);
	CHECK_STR_CONTAINS(err, "is larger than");
	CHECK(!holds(out, sizeof(out)));
	memset(out, 0, sizeof(out));
	CHECK(secret_read_raw(path, out, sizeof(out), err, sizeof(err)) == -1);
	CHECK(!holds(out, sizeof(out)));

	unlink(path);
	rmdir(dir);
}

void
test_secret(void)
{
	test_refused_is_wiped();
}
