/*
 * select: which messages an operator's bulk command means, postsuper
 * style: --state, --from, --rcpt, --reply (shell globs, case-insensitive)
 * and --older-than, plus --dry-run; and the fixed age buckets that
 * `holdfastctl shape` and the queue-age metric count in.
 *
 * Pure code: it parses arguments and matches one envelope at a time; the
 * caller (ctl.c) lists the spool and hands the matching IDs to the
 * queue's per-ID actions.  A struct select borrows its patterns from the
 * argv it was parsed from.
 */
#ifndef HOLDFAST_SELECT_H
#define HOLDFAST_SELECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct envelope;

/* States a selection can name (bits of struct select's states). */
#define SELECT_ST_QUEUED	0x01
#define SELECT_ST_DEFERRED	0x02
#define SELECT_ST_WAITING	0x04	/* queued or deferred, primary down */
#define SELECT_ST_HELD		0x08
#define SELECT_ST_DEAD		0x10

struct select {
	unsigned	 states;	/* SELECT_ST_* bits; 0: any */
	const char	*from;		/* glob on the sender ("" is <>) */
	const char	*rcpt;		/* glob on any recipient */
	const char	*reply;		/* glob on the last reply */
	uint64_t	 older_than;	/* seconds since arrival; 0: any age */
	bool		 dry_run;
	bool		 any;		/* a selector was given */
};

/*
 * Parse argv[0..argc) (the arguments after the command's name): selector
 * options fill sel (zeroed first), anything else is an ID and is stored
 * in ids (at most maxids; *nids gets the count).  IDs and selectors do
 * not mix.  0, or -1 with a reason in err.
 */
int select_parse(int argc, char **argv, struct select *sel,
    const char **ids, size_t maxids, size_t *nids, char *err,
    size_t errlen);
/* The bit for a state name ("queued", ...), or 0. */
unsigned select_state_bit(const char *state);
/*
 * Whether env, shown as state (as in the listings: queued, deferred,
 * waiting, held, dead), matches sel at time now.  A waiting message also
 * matches --state queued or deferred, by its attempts.
 */
bool select_match(const struct select *sel, const struct envelope *env,
    const char *state, time_t now);
/* sel as the options that make it, --dry-run aside, for log lines
 * ("--state deferred --from *@spam.example"); truncated to outlen. */
void select_fmt(const struct select *sel, char *out, size_t outlen);

/* Age buckets (qshape's doubling): 0-5m, 5-10m, 10-20m, ... 640-1280m,
 * older. */
#define SELECT_NBUCKETS	10
/* The bucket of age seconds (0 .. SELECT_NBUCKETS - 1). */
size_t select_bucket(uint64_t age);
/* The age at which bucket ends (the next one starts); UINT64_MAX for the
 * last. */
uint64_t select_bucket_end(size_t bucket);
/* "5m", "10m", ... "1280m", "older": the bucket's upper bound as a label
 * (also the metric's le= value). */
const char *select_bucket_name(size_t bucket);

#endif
