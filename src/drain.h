/*
 * drain: outbound SMTP sessions to the fixed primary host:port.
 *
 * Connect, EHLO (HELO fallback), MAIL/RCPT/DATA (pipelined when offered)
 * with the body streamed from the spool and dot-stuffed, several messages
 * per connection, at most [primary] connections of them, then QUIT.  It
 * reports the primary's reply per recipient (code and text) through the
 * done callback.  What drain classifies itself is the session: a failure
 * of the whole site (connect, timeout, TLS, 421, a bad banner or EHLO,
 * a malformed or overlong reply) goes through one function,
 * drain_site_failure(), and sets job->site_failure; a refused MAIL is
 * copied onto every recipient and the reply to DATA or the final dot onto
 * the recipients RCPT accepted (drain_results_set); a reply while the
 * body is being sent aborts the transaction.  It does not turn reply
 * codes into fates: policy.c turns 2xx/4xx/5xx into delivered, deferred
 * and dead, and queue_drain_done() applies that.  It never edits the
 * spool and never decides when to retry.
 */
#ifndef HOLDFAST_DRAIN_H
#define HOLDFAST_DRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct dns;
struct envelope;
struct event_base;
struct tls;

#define DRAIN_REPLY_MAX 512

struct drain_rcpt_result {
	int	code;			/* 0: not tried */
	char	reply[DRAIN_REPLY_MAX];
};

/*
 * One message to deliver.  The queue owns the job and everything it points
 * to; drain borrows it from drain_send() until done() is called, and fills
 * in the result fields.  results has env->nrcpt entries; only recipients
 * in ENVELOPE_RCPT_PENDING state are sent.
 */
struct drain_job {
	struct envelope			*env;	/* NULL: a health probe (the
						 * session up to EHLO only) */
	int				 body_fd;
	void				*owner;
	/* results */
	bool				 site_failure;	/* primary unusable */
	/* what the primary's EHLO (or HELO) said, when it got that far */
	bool				 greeted;
	uint64_t			 primary_size;	/* 0: no limit */
	bool				 primary_smtputf8;
	bool				 primary_8bitmime;
	char				 reply[DRAIN_REPLY_MAX];
	struct drain_rcpt_result	*results;
};

struct drain;

/* done(arg, job) reports each finished job; it may call drain_send().
 * dns resolves a primary given by name; tls carries the [primary] tls
 * policy and client context. */
struct drain *drain_new(struct event_base *base, const struct config *cf,
    struct dns *dns, struct tls *tls,
    void (*done)(void *arg, struct drain_job *job), void *arg);
/* Close every connection; jobs in flight are reported with site_failure. */
void drain_free(struct drain *d);
/* Start delivering job on an idle or new connection: 0, or -1 (EBUSY)
 * when every allowed connection is busy. */
int drain_send(struct drain *d, struct drain_job *job);
/* Connections open (busy or idle). */
size_t drain_connections(const struct drain *d);

#endif
