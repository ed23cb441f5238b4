/*
 * pwcheck: password checks off the event loop; see pwcheck.h.
 *
 * Threads are started on first use, in the worker (never before the
 * supervisor forks), with every signal blocked: signals stay the loop's.
 * A job is freed on the loop only, after its result came back, so a
 * cancelled job needs nothing but a flag.
 */
#include "pwcheck.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/mem.h>

#include "accounts.h"
#include "log.h"

#define NTHREADS	2

struct pwcheck {
	char		*hash;
	char		*password;
	size_t		 len;
	bool		 dummy;
	bool		 ok;
	bool		 cancelled;	/* under lock */
	pwcheck_cb	 cb;
	void		*arg;
	struct pwcheck	*next;
};

static pthread_mutex_t	 lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	 wake = PTHREAD_COND_INITIALIZER;
static struct pwcheck	*todo, *done;	/* FIFO in, any order out */
static struct pwcheck	**todo_tail = &todo;
static ev_async		 back;
static struct ev_loop	*loop_of_back;
static int		 nthreads;
static int		 queued;	/* jobs in todo */

static void *
run(void *unused)
{
	struct pwcheck *j;
	bool cancelled;

	(void)unused;
	for (;;) {
		pthread_mutex_lock(&lock);
		while (todo == NULL)
			pthread_cond_wait(&wake, &lock);
		j = todo;
		if ((todo = j->next) == NULL)
			todo_tail = &todo;
		queued--;
		/* A client that left does not get its check computed: it
		 * was counted as a failure when it left (see pwcheck.h). */
		cancelled = j->cancelled;
		pthread_mutex_unlock(&lock);
		j->ok = !cancelled && account_password_ok(j->hash, j->password,
		    j->len) && !j->dummy;
		OPENSSL_cleanse(j->password, j->len);

		pthread_mutex_lock(&lock);
		j->next = done;
		done = j;
		pthread_mutex_unlock(&lock);
		ev_async_send(loop_of_back, &back);
	}
	return NULL;
}

static void
job_free(struct pwcheck *j)
{
	free(j->hash);
	free(j->password);
	free(j);
}

/* On the loop: every finished job's callback, then the job goes. */
static void
back_cb(EV_P_ ev_async *w, int revents)
{
	struct pwcheck *j, *next;

	(void)w;
	(void)revents;
	pthread_mutex_lock(&lock);
	j = done;
	done = NULL;
	pthread_mutex_unlock(&lock);
	for (; j != NULL; j = next) {
		bool cancelled;
		next = j->next;
		pthread_mutex_lock(&lock);
		cancelled = j->cancelled;
		pthread_mutex_unlock(&lock);
		if (!cancelled)
			j->cb(EV_A_ j->arg, j->ok);
		job_free(j);
	}
}

/* The threads and the way back, once per worker. */
static int
start_threads(EV_P)
{
	sigset_t all, old;
	pthread_t t;

	if (nthreads > 0)
		return 0;
	ev_async_init(&back, back_cb);
	ev_async_start(EV_A_ &back);
	ev_unref(EV_A);		/* the loop may end with no check pending */
	loop_of_back = EV_A;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (int i = 0; i < NTHREADS; i++)
		if (pthread_create(&t, NULL, run, NULL) == 0) {
			pthread_detach(t);
			nthreads++;
		}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (nthreads == 0)
		log_warnx("event=pwcheck-failed: cannot start a thread");
	return nthreads > 0 ? 0 : -1;
}

struct pwcheck *
pwcheck_start(EV_P_ const char *hash, const char *password, size_t len,
    bool dummy, pwcheck_cb cb, void *arg)
{
	struct pwcheck *j;

	if (start_threads(EV_A) < 0 || (j = calloc(1, sizeof(*j))) == NULL)
		return NULL;
	if ((j->hash = strdup(hash)) == NULL ||
	    (j->password = malloc(len + 1)) == NULL) {
		job_free(j);
		return NULL;
	}
	memcpy(j->password, password, len);
	j->len = len;
	j->dummy = dummy;
	j->cb = cb;
	j->arg = arg;
	pthread_mutex_lock(&lock);
	if (queued >= PWCHECK_QUEUE_MAX) {
		pthread_mutex_unlock(&lock);
		OPENSSL_cleanse(j->password, len);
		job_free(j);
		errno = EBUSY;
		return NULL;
	}
	*todo_tail = j;
	todo_tail = &j->next;
	queued++;
	pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
	return j;
}

void
pwcheck_cancel(struct pwcheck *job)
{
	if (job == NULL)
		return;
	pthread_mutex_lock(&lock);
	job->cancelled = true;
	pthread_mutex_unlock(&lock);
}
