#include "workpool.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "xmalloc.h"

struct workpool_job {
	void			(*work)(void *);
	void			(*done)(void *);
	void			*arg;
	struct workpool_job	*next;
};

struct workpool {
	pthread_mutex_t		 lock;
	pthread_cond_t		 cond;
	struct workpool_job	*todo, **todo_tail;	/* FIFO */
	struct workpool_job	*finished;		/* LIFO, loop drains */
	bool			 stopping;
	pthread_t		*threads;
	size_t			 nthreads;
	size_t			 pending;	/* loop thread only */
	int			 pipe[2];	/* wakes the loop */
	struct event		*ev;
};

static void *
workpool_thread(void *arg)
{
	struct workpool *wp = arg;
	struct workpool_job *job;
	char c = 'j';

	pthread_mutex_lock(&wp->lock);
	for (;;) {
		while (wp->todo == NULL && !wp->stopping)
			pthread_cond_wait(&wp->cond, &wp->lock);
		if (wp->todo == NULL)
			break;
		job = wp->todo;
		wp->todo = job->next;
		if (wp->todo == NULL)
			wp->todo_tail = &wp->todo;
		pthread_mutex_unlock(&wp->lock);

		job->work(job->arg);

		pthread_mutex_lock(&wp->lock);
		job->next = wp->finished;
		wp->finished = job;
		/* The pipe only wakes the loop; a full pipe already will. */
		if (write(wp->pipe[1], &c, 1) == -1 && errno != EAGAIN)
			log_warn("workpool wake");
	}
	pthread_mutex_unlock(&wp->lock);
	return NULL;
}

/* Run done() for every finished job; returns how many ran. */
static size_t
workpool_reap(struct workpool *wp)
{
	struct workpool_job *list, *job;
	char buf[256];
	size_t n = 0;

	while (read(wp->pipe[0], buf, sizeof(buf)) > 0)
		;
	pthread_mutex_lock(&wp->lock);
	list = wp->finished;
	wp->finished = NULL;
	pthread_mutex_unlock(&wp->lock);
	while ((job = list) != NULL) {
		list = job->next;
		wp->pending--;
		job->done(job->arg);
		free(job);
		n++;
	}
	return n;
}

static void
workpool_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	workpool_reap(arg);
}

struct workpool *
workpool_new(struct event_base *base, size_t nthreads)
{
	struct workpool *wp = xcalloc(1, sizeof(*wp));
	size_t i;

	pthread_mutex_init(&wp->lock, NULL);
	pthread_cond_init(&wp->cond, NULL);
	wp->todo_tail = &wp->todo;
	if (pipe2(wp->pipe, O_NONBLOCK | O_CLOEXEC) == -1)
		fatal("workpool pipe");
	wp->ev = event_new(base, wp->pipe[0], EV_READ | EV_PERSIST,
	    workpool_wake_cb, wp);
	if (wp->ev == NULL || event_add(wp->ev, NULL) == -1)
		fatalx("workpool event");
	wp->threads = xcalloc(nthreads, sizeof(*wp->threads));
	for (i = 0; i < nthreads; i++) {
		if ((errno = pthread_create(&wp->threads[i], NULL,
		    workpool_thread, wp)) != 0)
			fatal("pthread_create");
		wp->nthreads++;
	}
	return wp;
}

void
workpool_free(struct workpool *wp)
{
	size_t i;

	if (wp == NULL)
		return;
	pthread_mutex_lock(&wp->lock);
	wp->stopping = true;
	pthread_cond_broadcast(&wp->cond);
	pthread_mutex_unlock(&wp->lock);
	for (i = 0; i < wp->nthreads; i++)
		pthread_join(wp->threads[i], NULL);
	/*
	 * done() callbacks may submit more work (a delivery's delete); with
	 * the threads gone it runs here, until nothing is left.
	 */
	while (wp->pending > 0) {
		struct workpool_job *job;

		if (workpool_reap(wp) > 0)
			continue;
		if ((job = wp->todo) == NULL)
			fatalx("%s: %zu jobs lost", __func__, wp->pending);
		wp->todo = job->next;
		if (wp->todo == NULL)
			wp->todo_tail = &wp->todo;
		job->work(job->arg);
		job->next = wp->finished;
		wp->finished = job;
	}
	event_free(wp->ev);
	close(wp->pipe[0]);
	close(wp->pipe[1]);
	pthread_cond_destroy(&wp->cond);
	pthread_mutex_destroy(&wp->lock);
	free(wp->threads);
	free(wp);
}

void
workpool_submit(struct workpool *wp, void (*work)(void *arg),
    void (*done)(void *arg), void *arg)
{
	struct workpool_job *job = xcalloc(1, sizeof(*job));

	job->work = work;
	job->done = done;
	job->arg = arg;
	wp->pending++;
	pthread_mutex_lock(&wp->lock);
	*wp->todo_tail = job;
	wp->todo_tail = &job->next;
	pthread_cond_signal(&wp->cond);
	pthread_mutex_unlock(&wp->lock);
}

size_t
workpool_pending(const struct workpool *wp)
{
	return wp->pending;
}
