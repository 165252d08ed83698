/*
 * ctl: the control socket the operator's holdfastctl talks to.
 *
 * A unix socket ([control] socket, mode 0660, [control] group), one request
 * per connection in ctl_proto's format, dispatched from a command table
 * {name, min/max args, handler, help}.  The peer's credentials are checked
 * (root, the daemon's own user, or the control group).  Handlers only call
 * queue_* and ctl_proto; they never touch the spool's layout themselves.
 */
#ifndef HOLDFAST_CTL_H
#define HOLDFAST_CTL_H

struct config;
struct event_base;
struct queue;
struct spool;
struct ctl;

/* Bind the socket (replacing a stale one).  NULL (logged) on error. */
struct ctl *ctl_new(struct event_base *base, const struct config *cf,
    struct queue *q, struct spool *sp);
/* Close the socket, drop open requests, remove the socket file. */
void ctl_free(struct ctl *ctl);

#endif
