/*
 * commit: the pipeline that makes received messages durable before their
 * 250.
 *
 * Messages that arrive together are committed as one batch on a worker
 * thread: every message staged (body flushed, env written), one sync of
 * the spool's data, every message renamed into queue/, then one fsync of
 * queue/ for the whole batch.  Up to COMMIT_PIPELINE batches run at once,
 * so a new batch is being written while the previous one syncs (pipelined
 * group commit).  The durability order per message never changes: data
 * durable, rename, directory durable, then the callback that lets the
 * caller say 250.
 *
 * It owns the batches and nothing else: it knows no envelope, no index and
 * no SMTP.  Loop thread only (its work runs on the workpool).
 */
#ifndef HOLDFAST_COMMIT_H
#define HOLDFAST_COMMIT_H

#include <stddef.h>

struct spool;
struct spool_msg;
struct workpool;

/* Batches in flight at once (one writing while another syncs). */
#define COMMIT_PIPELINE		2
/* Messages per batch at most. */
#define COMMIT_BATCH_MAX	512

struct commit;

/* Borrows sp and wp, which outlive it. */
struct commit *commit_new(struct spool *sp, struct workpool *wp);
/* Free it; the workpool has finished every batch (workpool_free first). */
void commit_free(struct commit *c);
/*
 * Make msg durable with envtext (envlen octets) as its env, in queue/.
 * Takes ownership of msg and envtext.  done(arg, err) runs on the loop
 * with err 0 (durable and in queue/) or an errno (nothing kept).
 */
void commit_submit(struct commit *c, struct spool_msg *msg, char *envtext,
    size_t envlen, void (*done)(void *arg, int err), void *arg);
/* Messages submitted and not yet done (waiting or in a batch). */
size_t commit_pending(const struct commit *c);
/* Batches started so far (for tests and metrics). */
size_t commit_batches(const struct commit *c);

#endif
