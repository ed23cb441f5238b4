/*
 * secret: secret files; see secret.h.
 */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/mem.h>

ssize_t
secret_read_raw(const char *path, void *out, size_t cap, char *err,
    size_t errlen)
{
	struct stat st;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path,
		    strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s is not a regular file", path);
		close(fd);
		return -1;
	}
	if (st.st_mode & S_IROTH) {
		snprintf(err, errlen, "%s is readable by everyone (mode %04o): "
		    "chmod o-rwx it", path, (unsigned)(st.st_mode & 07777));
		close(fd);
		return -1;
	}
	n = read(fd, out, cap);
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "cannot read %s: %s", path,
		    strerror(errno));
		return -1;
	}
	if ((size_t)n == cap) {
		/* Refused, but read: the caller frees or reuses out as it is. */
		OPENSSL_cleanse(out, cap);
		snprintf(err, errlen, "%s is larger than %zu bytes", path,
		    cap - 1);
		return -1;
	}
	return n;
}

int
secret_read(const char *path, char *out, size_t cap, char *err,
    size_t errlen)
{
	ssize_t n = secret_read_raw(path, out, cap, err, errlen);

	if (n < 0)
		return -1;
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
		n--;
	out[n] = '\0';
	if (n == 0 || memchr(out, '\0', (size_t)n) != NULL ||
	    memchr(out, '\n', (size_t)n) != NULL) {
		snprintf(err, errlen, "%s: %s", path, n == 0 ? "empty" :
		    "one line expected (no NUL or line break inside)");
		OPENSSL_cleanse(out, cap);
		return -1;
	}
	return (int)n;
}
