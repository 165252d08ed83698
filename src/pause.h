/*
 * pause: `holdfastctl pause-smtp`, for disk emergencies (like smtpctl's
 * pause): while on, new SMTP sessions get 421 4.3.2 and sessions already
 * open finish.  It is kept in the spool (state file "smtp-pause": since and
 * until, as hold-mode), so it survives a restart, and it ends by itself at
 * its deadline, so a forgotten pause cannot turn mail away for good.
 *
 * It owns only that state; smtp_server asks it at accept, ctl turns it on
 * and off, and its collector sets the holdfast_smtp_paused gauge.
 */
#ifndef HOLDFAST_PAUSE_H
#define HOLDFAST_PAUSE_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct spool;
struct pause;

/* Borrows sp (which outlives it); loads a persisted pause. */
struct pause *pause_new(struct spool *sp);
void pause_free(struct pause *p);
/* Pause new sessions for seconds from now (a running pause is extended
 * or shortened), persisted: 0, or -1 (logged) if it cannot be kept. */
int pause_set(struct pause *p, uint64_t seconds);
/* Resume; why goes into the log line ("operator", "expired"). */
void pause_off(struct pause *p, const char *why);
/* The end of the pause in force at now, or 0: not paused (a pause past
 * its deadline ends here, logged). */
time_t pause_until(struct pause *p, time_t now);
/* When the pause in force began (0: none). */
time_t pause_since(const struct pause *p);

#endif
