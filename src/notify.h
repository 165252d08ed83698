/*
 * notify: runs the operator's [notify] exec program on events worth a push
 * to a phone (the primary down for long, the backlog drained, a dead
 * letter, the spool low, hold-mode on or off, the certificate near its
 * end).
 *
 * No shell: the program gets the words of [notify] exec as argv and the
 * event in its environment (HOLDFAST_EVENT, HOLDFAST_SUMMARY, numbers),
 * nothing else.  At most one runs at a time; later events wait in a
 * bounded queue (beyond it they are dropped and counted); a program that
 * outlives [notify] timeout is killed with its process group.  Repeats of
 * an event within [notify] repeat_interval are suppressed and counted.
 * Spawning is posix_spawn, the exit is watched through a pidfd on the
 * loop: nothing here blocks.  It decides nothing about when an event
 * happens: its callers (the queue) do.  Every function accepts a NULL
 * notify (notifications off).
 */
#ifndef HOLDFAST_NOTIFY_H
#define HOLDFAST_NOTIFY_H

#include <stddef.h>

struct config;
struct event_base;
struct notify;

enum notify_event {
	NOTIFY_PRIMARY_DOWN,	/* down longer than primary_down_after */
	NOTIFY_PRIMARY_DRAINED,	/* back, and queue/ empty again */
	NOTIFY_DEAD_LETTER,	/* a message moved to dead/ */
	NOTIFY_SPOOL_LOW,	/* free space fell below min_free */
	NOTIFY_HOLD_MODE_ON,
	NOTIFY_HOLD_MODE_OFF,
	NOTIFY_CERT_EXPIRY,	/* the STARTTLS certificate expires soon */
	NOTIFY_EVENT_COUNT
};

/* One environment variable of an event: HOLDFAST_<name>=value. */
struct notify_var {
	const char	*name;	/* e.g. "MESSAGES" */
	const char	*value;
};

#define NOTIFY_QUEUE_MAX	16	/* events waiting for the program */
#define NOTIFY_VARS_MAX		8	/* per event, extra */

/* NULL when [notify] exec is not set.  Borrows base and cf. */
struct notify *notify_new(struct event_base *base, const struct config *cf);
/* Kills a program still running (and its process group) and reaps it;
 * waiting events are dropped. */
void notify_free(struct notify *n);

/*
 * Queue event ev with a one-line summary and up to NOTIFY_VARS_MAX
 * variables (copied).  The program runs now if none is running.
 */
void notify_send(struct notify *n, enum notify_event ev, const char *summary,
    const struct notify_var *vars, size_t nvars);

/* "primary-down" etc.: the value of HOLDFAST_EVENT. */
const char *notify_event_name(enum notify_event ev);

#endif
