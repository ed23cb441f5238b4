/*
 * sockbio: a socket BIO that reads ahead (see sockbio.h).
 */
#include "sockbio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* A full TLS record (16 KiB of data plus its overhead) and the next
 * record's header. */
#define READ_AHEAD	(16384 + 2048)

struct sockbio {
	int	 fd;
	char	*buf;		/* NULL unless it holds bytes (or a read is on) */
	size_t	 off;
	size_t	 len;
	bool	 drained;	/* the last read left the socket empty */
};

/* One read-ahead buffer kept for the next read: most reads take one and
 * give it back at once (the process is single-threaded per loop). */
static char	*spare;

static char *
take_buffer(void)
{
	char *b = spare;

	if (b != NULL) {
		spare = NULL;
		return b;
	}
	return malloc(READ_AHEAD);
}

static void
give_back(struct sockbio *sb)
{
	int saved = errno;

	if (sb->buf != NULL) {
		if (spare == NULL)
			spare = sb->buf;
		else
			free(sb->buf);
	}
	sb->buf = NULL;
	sb->off = sb->len = 0;
	errno = saved;
}

static int
would_block(BIO *bio, bool reading)
{
	if (reading)
		BIO_set_retry_read(bio);
	else
		BIO_set_retry_write(bio);
	errno = EAGAIN;
	return -1;
}

static int
sb_read(BIO *bio, char *out, int outl)
{
	struct sockbio *sb = BIO_get_data(bio);
	struct iovec iov[2];
	ssize_t n;
	size_t want;

	BIO_clear_retry_flags(bio);
	if (outl <= 0)
		return 0;
	want = (size_t)outl;
	if (sb->len > 0) {
		size_t k = want < sb->len ? want : sb->len;
		memcpy(out, sb->buf + sb->off, k);
		sb->off += k;
		sb->len -= k;
		if (sb->len == 0)
			give_back(sb);
		return (int)k;
	}
	if (sb->drained) {
		/* Empty a moment ago, in this same call: the read event will
		 * say when that changes. */
		sb->drained = false;
		return would_block(bio, true);
	}
	if ((sb->buf = take_buffer()) == NULL) {
		n = read(sb->fd, out, want);		/* no read-ahead */
	} else {
		iov[0].iov_base = out;
		iov[0].iov_len = want;
		iov[1].iov_base = sb->buf;
		iov[1].iov_len = READ_AHEAD;
		n = readv(sb->fd, iov, 2);
	}
	if (n < 0) {
		give_back(sb);
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return would_block(bio, true);
		return -1;
	}
	if (n == 0) {
		give_back(sb);
		return 0;
	}
	if (sb->buf != NULL && (size_t)n < want + READ_AHEAD)
		sb->drained = true;
	if ((size_t)n > want) {
		sb->len = (size_t)n - want;
		return outl;
	}
	give_back(sb);
	return (int)n;
}

static int
sb_write(BIO *bio, const char *in, int inl)
{
	struct sockbio *sb = BIO_get_data(bio);
	ssize_t n;

	BIO_clear_retry_flags(bio);
	if (inl <= 0)
		return 0;
	n = send(sb->fd, in, (size_t)inl, MSG_NOSIGNAL);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return would_block(bio, false);
	return (int)n;
}

static long
sb_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
	struct sockbio *sb = BIO_get_data(bio);

	(void)num;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_PENDING:
		return (long)sb->len;
	case BIO_C_GET_FD:
		if (ptr != NULL)
			*(int *)ptr = sb->fd;
		return sb->fd;
	default:
		return 0;
	}
}

static int
sb_destroy(BIO *bio)
{
	struct sockbio *sb = BIO_get_data(bio);

	if (sb != NULL) {
		give_back(sb);
		free(sb);
		BIO_set_data(bio, NULL);
	}
	return 1;
}

/* Our own BIO type: a BIO is known as ours by it alone. */
static int	 sockbio_type;

static const BIO_METHOD *
sockbio_method(void)
{
	static BIO_METHOD *m;

	if (m != NULL)
		return m;
	sockbio_type = BIO_get_new_index() | BIO_TYPE_DESCRIPTOR;
	if ((m = BIO_meth_new(sockbio_type, "mailproxy socket")) != NULL) {
		BIO_meth_set_read(m, sb_read);
		BIO_meth_set_write(m, sb_write);
		BIO_meth_set_ctrl(m, sb_ctrl);
		BIO_meth_set_destroy(m, sb_destroy);
	}
	return m;
}

bool
sockbio_attach(SSL *ssl, int fd)
{
	const BIO_METHOD *m = sockbio_method();
	struct sockbio *sb;
	BIO *bio;

	if (m == NULL || (sb = calloc(1, sizeof(*sb))) == NULL)
		return false;
	if ((bio = BIO_new(m)) == NULL) {
		free(sb);
		return false;
	}
	sb->fd = fd;
	BIO_set_data(bio, sb);
	BIO_set_init(bio, 1);
	SSL_set_bio(ssl, bio, bio);
	return true;
}

static struct sockbio *
of(const SSL *ssl)
{
	BIO *bio = SSL_get_rbio(ssl);

	if (bio == NULL || sockbio_type == 0 ||
	    BIO_method_type(bio) != sockbio_type)
		return NULL;
	return BIO_get_data(bio);
}

size_t
sockbio_pending(const SSL *ssl)
{
	struct sockbio *sb = of(ssl);

	return sb != NULL ? sb->len : 0;
}

void
sockbio_new_call(SSL *ssl)
{
	struct sockbio *sb = of(ssl);

	if (sb != NULL)
		sb->drained = false;
}
