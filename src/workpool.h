/*
 * workpool: a few threads that run blocking disk work (fsync-heavy commits,
 * envelope rewrites, moves) off the event loop.
 *
 * The loop submits {work, done, arg}; work(arg) runs on a worker thread and
 * must touch nothing the loop owns; done(arg) runs back on the loop thread,
 * in submission-independent order, and is where results are used.  Jobs
 * are owned by the pool between submit and done.  No SMTP knowledge.
 */
#ifndef HOLDFAST_WORKPOOL_H
#define HOLDFAST_WORKPOOL_H

#include <stddef.h>

struct event_base;
struct workpool;

struct workpool *workpool_new(struct event_base *base, size_t nthreads);
/* Wait for every queued job to finish and its done() to run, then stop the
 * threads and free the pool. */
void workpool_free(struct workpool *wp);
/* Queue a job. */
void workpool_submit(struct workpool *wp, void (*work)(void *arg),
    void (*done)(void *arg), void *arg);
/* Jobs submitted and not yet done. */
size_t workpool_pending(const struct workpool *wp);

#endif
