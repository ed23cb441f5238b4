/*
 * memcheck: an LD_PRELOAD library that reports heap chunks freed while they
 * still hold a secret.  The markers (MEMCHECK_MARKERS, comma-separated) are
 * strings a test put into the proxy's secrets and their encoded forms; each
 * free(), realloc() and reallocarray() of a chunk that holds one, anywhere
 * in its usable size, is reported to MEMCHECK_LOG with a backtrace.
 *
 * glibc's own functions (vasprintf growing its buffer, stdio) free through
 * the same interposable symbols, so their frees are seen too.  A chunk
 * whose free() is called from libcrypto or libssl (BoringSSL's record
 * buffers) is reported as "exempt": not the proxy's to wipe.  realloc()
 * of a chunk holding a marker is reported whether or not it moves: glibc
 * decides that, and a moved chunk is freed as it is.
 *
 * Each process writes "memcheck: start" when the library loads and
 * "memcheck: end" at exit (forked workers too), so that a test can tell the
 * check ran rather than finding nothing.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_MARKERS	32
#define MAX_FRAMES	32

static void	(*real_free)(void *);
static void	*(*real_realloc)(void *, size_t);
static void	*(*real_reallocarray)(void *, size_t, size_t);

static char	 marker_text[4096];
static const char *markers[MAX_MARKERS];
static size_t	 marker_len[MAX_MARKERS];
static int	 nmarkers;
static const char *log_path;
static unsigned long nreported, nexempt;
static __thread int busy;	/* inside the hook: no checks (dladdr, backtrace) */

static void
say(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int fd, n;

	if (log_path == NULL)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	if ((fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
	    0600)) < 0)
		return;
	(void)!write(fd, line, (size_t)n);
	close(fd);
}

static void
resolve(void)
{
	if (real_free == NULL) {
		real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
		real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT,
		    "realloc");
		real_reallocarray = (void *(*)(void *, size_t, size_t))dlsym(
		    RTLD_NEXT, "reallocarray");
	}
}

__attribute__((constructor)) static void
memcheck_init(void)
{
	const char *m = getenv("MEMCHECK_MARKERS");
	void *frames[2];
	char *save, *tok;

	busy++;
	resolve();
	log_path = getenv("MEMCHECK_LOG");
	if (m != NULL && strlen(m) < sizeof(marker_text)) {
		strcpy(marker_text, m);
		for (tok = strtok_r(marker_text, ",", &save); tok != NULL &&
		    nmarkers < MAX_MARKERS; tok = strtok_r(NULL, ",", &save)) {
			markers[nmarkers] = tok;
			marker_len[nmarkers++] = strlen(tok);
		}
	}
	/* The first backtrace() loads libgcc_s (it allocates): now, not
	 * inside a free. */
	(void)backtrace(frames, 2);
	say("memcheck: start pid=%ld markers=%d\n", (long)getpid(), nmarkers);
	busy--;
}

__attribute__((destructor)) static void
memcheck_end(void)
{
	say("memcheck: end pid=%ld reported=%lu exempt=%lu\n", (long)getpid(),
	    nreported, nexempt);
}

/* The marker p's chunk holds, or -1. */
static int
holds_marker(void *p)
{
	size_t n = malloc_usable_size(p);

	for (int i = 0; i < nmarkers; i++)
		if (memmem(p, n, markers[i], marker_len[i]) != NULL)
			return i;
	return -1;
}

/* Was the call made from BoringSSL (libcrypto, libssl)? */
static bool
from_boringssl(void *caller, const char **object)
{
	Dl_info info;
	const char *base;

	*object = "?";
	if (dladdr(caller, &info) == 0 || info.dli_fname == NULL)
		return false;
	*object = info.dli_fname;
	base = strrchr(info.dli_fname, '/');
	base = base != NULL ? base + 1 : info.dli_fname;
	return strncmp(base, "libcrypto.", 10) == 0 ||
	    strncmp(base, "libssl.", 7) == 0;
}

static void
check(const char *what, void *p, void *caller)
{
	void *frames[MAX_FRAMES];
	const char *object;
	int m, n, fd;

	if (p == NULL || busy || nmarkers == 0 || (m = holds_marker(p)) < 0)
		return;
	busy++;
	if (from_boringssl(caller, &object)) {
		nexempt++;
		say("memcheck: exempt pid=%ld %s of a %zu-byte chunk holding "
		    "marker %d, called from %s\n", (long)getpid(), what,
		    malloc_usable_size(p), m, object);
		busy--;
		return;
	}
	nreported++;
	say("memcheck: LEAK pid=%ld %s of a %zu-byte chunk holding marker %d "
	    "(%s), called from %s; backtrace:\n", (long)getpid(), what,
	    malloc_usable_size(p), m, markers[m], object);
	n = backtrace(frames, MAX_FRAMES);
	if (log_path != NULL && (fd = open(log_path, O_WRONLY | O_APPEND |
	    O_CREAT | O_CLOEXEC, 0600)) >= 0) {
		backtrace_symbols_fd(frames, n, fd);
		close(fd);
	}
	busy--;
}

void
free(void *p)
{
	resolve();
	check("free", p, __builtin_return_address(0));
	real_free(p);
}

void *
realloc(void *p, size_t n)
{
	resolve();
	check("realloc", p, __builtin_return_address(0));
	return real_realloc(p, n);
}

void *
reallocarray(void *p, size_t nmemb, size_t size)
{
	resolve();
	check("reallocarray", p, __builtin_return_address(0));
	return real_reallocarray(p, nmemb, size);
}
