/*
 * ctl: the control socket the operator's holdfastctl talks to.
 *
 * A unix socket ([control] socket, mode 0660, [control] group), one request
 * per connection in ctl_proto's format, dispatched from a command table
 * {name, min/max args, handler, help}.  The peer's credentials are checked
 * (root, the daemon's own user, or a member of the control group,
 * supplementary groups included).  Handlers only call
 * queue_* and ctl_proto; they never touch the spool's layout themselves.
 */
#ifndef HOLDFAST_CTL_H
#define HOLDFAST_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct config;
struct event_base;
struct pause;
struct queue;
struct smtp_server;
struct workpool;
struct spool;
struct ctl;

/*
 * Bind the socket (replacing a stale one, never anything else at its
 * path), mode 0660, group [control] group.  owner is the user a root start
 * becomes (the socket's directory must be root's or owner's).  NULL
 * (logged) on error.
 */
struct ctl *ctl_new(struct event_base *base, const struct config *cf,
    struct queue *q, struct spool *sp, uid_t owner);
/* May a peer with uid, primary gid and supplementary groups use the
 * socket?  Root, the daemon's own user (self), or a member of ctlgid
 * (-1: no control group).  Pure. */
bool ctl_peer_allowed(uid_t uid, gid_t gid, const gid_t *groups,
    size_t ngroups, uid_t self, gid_t ctlgid);
/* pause-smtp and resume-smtp act on p (borrowed; it outlives ctl). */
void ctl_set_pause(struct ctl *ctl, struct pause *p);
/* trace acts on srv (borrowed; it outlives ctl). */
void ctl_set_smtp(struct ctl *ctl, struct smtp_server *srv);
/* Match bulk selections on wp's threads (borrowed; NULL: on the loop). */
void ctl_set_workpool(struct ctl *ctl, struct workpool *wp);
/* Close the socket, drop open requests, remove the socket file. */
void ctl_free(struct ctl *ctl);

#endif
