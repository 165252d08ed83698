#include "commit.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "spool.h"
#include "workpool.h"
#include "xmalloc.h"

/* One received message on its way to queue/. */
struct commit_item {
	struct spool_msg	*msg;		/* owned until staged/published */
	char			*envtext;
	size_t			 envlen;
	int			 err;
	void			(*done)(void *, int);
	void			*arg;
};

struct commit_batch {
	struct commit		*c;
	struct commit_item	*items;
	size_t			 n;
};

struct commit {
	struct spool		*sp;
	struct workpool		*wp;
	struct commit_item	*wait;		/* FIFO: arrived, no batch yet */
	size_t			 nwait, await;
	size_t			 inflight;	/* batches on the workpool */
	size_t			 pending;	/* messages not yet done */
	size_t			 batches;	/* started so far */
};

/*
 * Worker: stage every message, one sync of the data for all, then rename
 * them all and fsync queue/ once.  A message whose staging failed is out
 * of the batch (its handle consumed); a failed sync fails every staged
 * one, a failed directory fsync every renamed one it may have covered.
 */
static void
commit_batch_work(void *arg)
{
	struct commit_batch *b = arg;
	struct spool *sp = b->c->sp;
	struct spool_msg **pub;
	int *errs, err = 0;
	size_t i, staged = 0, *idx;

	for (i = 0; i < b->n; i++) {
		struct commit_item *it = &b->items[i];

		if (spool_msg_stage(it->msg, it->envtext, it->envlen) == -1) {
			it->err = errno != 0 ? errno : EIO;
			it->msg = NULL;		/* consumed */
		} else
			staged++;
	}
	if (staged == 0)
		return;
	if (spool_sync(sp) == -1)
		err = errno != 0 ? errno : EIO;
	pub = xreallocarray(NULL, staged, sizeof(*pub));
	idx = xreallocarray(NULL, staged, sizeof(*idx));
	errs = xreallocarray(NULL, staged, sizeof(*errs));
	staged = 0;
	for (i = 0; i < b->n; i++) {
		struct commit_item *it = &b->items[i];

		if (it->msg == NULL)
			continue;
		if (err != 0 || !spool_msg_is_synced(it->msg)) {
			if (err == 0)
				log_warnx("msg=%s not durable: a sync failed "
				    "while it was written", spool_msg_id(it->msg));
			spool_msg_abort(it->msg);
			it->err = err != 0 ? err : EIO;
		} else {
			pub[staged] = it->msg;
			idx[staged++] = i;
		}
		it->msg = NULL;
	}
	spool_msg_publish_many(sp, pub, staged, errs);
	for (i = 0; i < staged; i++)
		b->items[idx[i]].err = errs[i];
	free(errs);
	free(idx);
	free(pub);
}

static void commit_kick(struct commit *c);

static void
commit_batch_done(void *arg)
{
	struct commit_batch *b = arg;
	struct commit *c = b->c;
	size_t i;

	c->inflight--;
	c->pending -= b->n;
	/* The next batch first: the callbacks may take a while. */
	commit_kick(c);
	for (i = 0; i < b->n; i++) {
		free(b->items[i].envtext);
		b->items[i].done(b->items[i].arg, b->items[i].err);
	}
	free(b->items);
	free(b);
}

/* Start a batch of what waits, if the pipeline has room. */
static void
commit_kick(struct commit *c)
{
	struct commit_batch *b;
	size_t n;

	if (c->inflight >= COMMIT_PIPELINE || c->nwait == 0)
		return;
	n = c->nwait < COMMIT_BATCH_MAX ? c->nwait : COMMIT_BATCH_MAX;
	b = xcalloc(1, sizeof(*b));
	b->c = c;
	b->n = n;
	b->items = xreallocarray(NULL, n, sizeof(*b->items));
	memcpy(b->items, c->wait, n * sizeof(*b->items));
	memmove(c->wait, c->wait + n, (c->nwait - n) * sizeof(*c->wait));
	c->nwait -= n;
	c->inflight++;
	c->batches++;
	workpool_submit(c->wp, commit_batch_work, commit_batch_done, b);
}

struct commit *
commit_new(struct spool *sp, struct workpool *wp)
{
	struct commit *c = xcalloc(1, sizeof(*c));

	c->sp = sp;
	c->wp = wp;
	return c;
}

void
commit_free(struct commit *c)
{
	size_t i;

	if (c == NULL)
		return;
	/*
	 * workpool_free() ran every batch, and each batch's done started the
	 * next, so nothing waits; should anything, it was never kept.
	 */
	for (i = 0; i < c->nwait; i++) {
		spool_msg_abort(c->wait[i].msg);
		free(c->wait[i].envtext);
	}
	free(c->wait);
	free(c);
}

void
commit_submit(struct commit *c, struct spool_msg *msg, char *envtext,
    size_t envlen, void (*done)(void *arg, int err), void *arg)
{
	struct commit_item *it;

	if (c->nwait == c->await) {
		c->await = c->await == 0 ? 64 : c->await * 2;
		c->wait = xreallocarray(c->wait, c->await, sizeof(*c->wait));
	}
	it = &c->wait[c->nwait++];
	it->msg = msg;
	it->envtext = envtext;
	it->envlen = envlen;
	it->err = 0;
	it->done = done;
	it->arg = arg;
	c->pending++;
	commit_kick(c);
}

size_t
commit_pending(const struct commit *c)
{
	return c->pending;
}

size_t
commit_batches(const struct commit *c)
{
	return c->batches;
}
