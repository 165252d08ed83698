/*
 * smtp_server: inbound SMTP sessions.
 *
 * Owns the listeners, every session and transaction, the command table,
 * every limit (line, size, recipients, sessions, timeouts) and every reply.
 * It accepts any recipient in our domains, refuses relaying, streams DATA
 * and BDAT through the smtp_proto decoder into a spool handle and replies
 * 250 only after queue_submit() reports the commit.  It never writes files
 * itself, never knows the spool layout and never calls drain.
 */
#ifndef HOLDFAST_SMTP_SERVER_H
#define HOLDFAST_SMTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct config;
struct dns;
struct event_base;
struct pause;
struct queue;
struct spool;
struct tls;
struct smtp_server;

/* Borrows everything (dns may be NULL: no client name lookups; tls NULL
 * or without a certificate: no STARTTLS); binds every [server] listen
 * address.  NULL (after logging why) if a listener cannot be set up. */
struct smtp_server *smtp_server_new(struct event_base *base,
    const struct config *cf, struct spool *sp, struct queue *q,
    struct dns *dns, struct tls *tls);
/* Stop accepting and cut every session: a transaction not yet committed
 * gets 421 and is discarded; one being committed finishes first. */
void smtp_server_stop(struct smtp_server *srv);
/* Ask p (borrowed, outlives srv; NULL: never) at each accept whether
 * new sessions are paused (421 4.3.2). */
void smtp_server_set_pause(struct smtp_server *srv, struct pause *p);
/*
 * holdfastctl trace: for seconds from now, the protocol lines (commands,
 * replies, states; never content or authentication data) of sessions
 * from cidr (an address or CIDR; NULL: all) are logged at info.  -1 if
 * cidr does not parse.
 */
int smtp_server_trace_set(struct smtp_server *srv, const char *cidr,
    uint64_t seconds);
void smtp_server_trace_off(struct smtp_server *srv);
/* The end of the trace in force (0: none) and what it matches. */
time_t smtp_server_trace_get(const struct smtp_server *srv,
    const char **cidr);
/* Sessions still open (ones waiting for a commit included). */
size_t smtp_server_sessions(const struct smtp_server *srv);
void smtp_server_free(struct smtp_server *srv);

#endif
