/*
 * ctl_proto: the control socket's wire format, shared by the daemon (ctl.c)
 * and holdfastctl.
 *
 * A request is one line: "verb arg ...\n" (at most CTL_LINE_MAX octets).
 * The answer is "ok\n" or "error REASON\n", then zero or more record lines,
 * then ".\n".  A record is space-separated key=value pairs; values are
 * escaped (%XX for bytes <= 0x20, >= 0x7f, '%' and '='), so a record is one
 * line and splits on spaces.  Keys may repeat (one "rcpt" per recipient).
 * A record carries at most CTL_REC_RCPTS recipients and then "rcpt_more=N"
 * for the ones left out (a message may have up to 100000), so that it
 * always fits in CTL_REC_MAX pairs.
 *
 * It also renders spool entries as records, for the daemon and for the
 * CLI's read-only view of a stopped daemon's spool.  Pure apart from
 * reading the spool through spool.c: it never changes the spool, never
 * reads the queue's index and never writes to a socket (the caller sends
 * the evbuffer it fills).
 */
#ifndef HOLDFAST_CTL_PROTO_H
#define HOLDFAST_CTL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spool.h"

#define CTL_LINE_MAX	4096
#define CTL_ARGS_MAX	64
#define CTL_REC_MAX	256		/* pairs in one record */
#define CTL_REC_RCPTS	100		/* recipients in one record */
#define CTL_BODY_MAX	(8 * 1024 * 1024)	/* show --body through ctl */

struct envelope;
struct evbuffer;

/* A request's arguments as its verb's check parsed them. */
struct ctl_proto_args {
	bool		 on;	/* hold-mode, trace: on (else off) */
	uint64_t	 secs;	/* --for DURATION, or the verb's default */
	const char	*who;	/* trace on: ADDR, or NULL for all */
	bool		 body;	/* show --body */
};

/*
 * The daemon's verbs: one table that ctl.c (which pairs each with its
 * handler) and holdfastctl (which checks a request before sending it and
 * builds its help from it) share.  Arguments are counted after the name;
 * usage follows the name, its alternatives split by " | ".  check, where
 * set, is the rest of the verb's argument rules.
 */
struct ctl_proto_command {
	const char	*name;
	int		 min_args, max_args;
	const char	*usage;
	uint64_t	 for_default;	/* --for's default, 0: no --for */
	int		(*check)(int argc, char **argv,
			    struct ctl_proto_args *a);
};

/* The verb called name, or NULL. */
const struct ctl_proto_command *ctl_proto_command_find(const char *name);
/* The whole table (*n entries), for iteration. */
const struct ctl_proto_command *ctl_proto_commands(size_t *n);
/*
 * Check argv (argv[0] the verb) against pc's rules (count, then check)
 * into *a.  0, or -1 when malformed.  Both holdfastctl and the daemon check
 * requests with it.
 */
int ctl_proto_check(const struct ctl_proto_command *pc, int argc,
    char **argv, struct ctl_proto_args *a);
/* "NAME ALT1 | NAME ALT2..." from pc's usage, with extra (holdfastctl's
 * own options, "" for none) after the last alternative. */
void ctl_proto_usage(const struct ctl_proto_command *pc, const char *name,
    const char *extra, char *buf, size_t len);

struct ctl_rec {
	size_t	 n;
	char	*key[CTL_REC_MAX];
	char	*val[CTL_REC_MAX];
};

/* Append " key=escaped(value)" to out (start a record with nothing, end it
 * with ctl_proto_rec_end). */
void ctl_proto_kv(struct evbuffer *out, const char *key, const char *value);
void ctl_proto_kvu(struct evbuffer *out, const char *key,
    unsigned long long value);
void ctl_proto_rec_end(struct evbuffer *out);

/* Split a record line in place into rec (values unescaped, pointing into
 * line).  -1 if malformed or too many pairs. */
int ctl_proto_rec_parse(char *line, struct ctl_rec *rec);
/* The first value for key, or NULL. */
const char *ctl_proto_rec_get(const struct ctl_rec *rec, const char *key);

/* Split a request line in place into argv (at most CTL_ARGS_MAX); returns
 * argc, or -1. */
int ctl_proto_split(char *line, char **argv, size_t max);

/* The queue state a message in area shows from the spool alone: queued
 * (never tried), deferred (the primary answered 4xx), held, dead,
 * quarantined.  The daemon's listings add "waiting" (below). */
const char *ctl_proto_state(enum spool_area area,
    const struct envelope *env);

/* One listing record for env in area. */
void ctl_proto_env_rec(struct evbuffer *out, enum spool_area area,
    const struct envelope *env);
/* The same as the daemon sees it: with primary_down (why the primary is
 * down; NULL while it is up) a message in queue/ is state=waiting with
 * reason=primary-down and primary_reply=primary_down. */
void ctl_proto_env_rec_live(struct evbuffer *out, enum spool_area area,
    const struct envelope *env, const char *primary_down);
/*
 * Records for every message in area, oldest first.  Unreadable entries get
 * a record with state=unreadable.  0 or -1.
 */
int ctl_proto_list(struct spool *sp, enum spool_area area,
    struct evbuffer *out);
int ctl_proto_list_live(struct spool *sp, enum spool_area area,
    struct evbuffer *out, const char *primary_down);
/*
 * cb(arg, area, env, state) for every readable message in area, oldest
 * first, with state as the listings show it (primary_down as above); env
 * is borrowed for the call.  0 or -1.
 */
typedef void (*ctl_proto_each_cb)(void *arg, enum spool_area area,
    const struct envelope *env, const char *state);
int ctl_proto_each(struct spool *sp, enum spool_area area,
    const char *primary_down, ctl_proto_each_cb cb, void *arg);
/*
 * The "show" answer for id: one record with the envelope, then records of
 * only "rcpt" for the recipients beyond its first CTL_REC_RCPTS (all of
 * them: show lists every recipient), then one record per header line
 * (key "header"), or per body line with body (key "line",
 * at most CTL_BODY_MAX octets, then a record "truncated=yes").  0, or -1
 * with a reason in err.
 */
int ctl_proto_show(struct spool *sp, const char *id, bool body,
    struct evbuffer *out, char *err, size_t errlen);
int ctl_proto_show_live(struct spool *sp, const char *id, bool body,
    struct evbuffer *out, char *err, size_t errlen, const char *primary_down);

#endif
