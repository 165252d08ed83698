#include "ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "bulk.h"
#include "config.h"
#include "ctl_proto.h"
#include "envelope.h"
#include "log.h"
#include "net.h"
#include "pause.h"
#include "queue.h"
#include "select.h"
#include "smtp_server.h"
#include "spool.h"
#include "util.h"
#include "workpool.h"
#include "xmalloc.h"

#define CTL_TIMEOUT_SEC	30
#define CTL_MAX_CONNS	16
#define CTL_PROGRESS_SEC	2	/* a bulk action's progress line */
struct ctl {
	struct event_base	*base;
	const struct config	*cf;
	struct queue		*queue;
	struct spool		*spool;
	struct pause		*pause;		/* NULL until set */
	struct smtp_server	*smtp;		/* NULL until set */
	struct workpool		*wp;		/* NULL: match on the loop */
	struct evconnlistener	*listener;
	struct net_backoff	*backoff;	/* accept() failures */
	char			*path;
	int			 dirfd;		/* socket's directory */
	char			*name;		/* socket's name in it */
	ino_t			 ino;		/* ours: unlink at exit */
	gid_t			 gid;		/* -1: none */
	TAILQ_HEAD(, ctl_conn)	 conns;
	size_t			 nconns;
};

struct ctl_bulk;

struct ctl_conn {
	struct ctl		*ctl;
	struct bufferevent	*bev;
	uid_t			 uid;
	bool			 done;
	struct ctl_bulk		*bulk;		/* a selection being applied */
	struct ctl_proto_args	 args;	/* the request's, checked */
	TAILQ_ENTRY(ctl_conn)	 entry;
};

/*
 * hold, release, requeue and delete of IDs or by selector: the IDs (named,
 * or matched when the request arrives) go to queue_act(), which runs them
 * in slices with the disk work off the loop; the answer goes out when
 * every message's new state is durable.  A client that goes away does not
 * stop the action (conn is then NULL, and the queue's callback frees
 * this); hold all and release all answer at once.
 */
struct ctl_bulk {
	struct ctl_conn		*conn;		/* NULL: gone */
	uid_t			 uid;
	const char		*verb;		/* static */
	enum queue_act		 act;
	bool			 by_ids;	/* IDs named, no selector */
	char			(*ids)[SPOOL_ID_LEN + 1];
	size_t			 n, cap;
	char			 selector[512];
	struct select		 sel;		/* borrows from args */
	char			*args[CTL_ARGS_MAX];
	int			 nargs;
	unsigned		 states;	/* those the action applies to */
	time_t			 now;
	bool			 dry_run;
	struct evbuffer		*listing;	/* dry run */
	const char		*primary_down;	/* NULL, or down_buf */
	char			 down_buf[256];
	/* matched on a worker: the listing's failure, if any */
	int			 match_errno;
	enum spool_area		 match_area;
	struct ctl		*ctl;		/* not on the worker */
	struct spool		*spool;		/* the worker's; outlives ctl */
	struct event		*tick;		/* progress to the client */
};

/*
 * A verb has a handler, or (handler NULL) is a queue action done by
 * ctl_act: act on the messages in one of the states.
 */
struct ctl_command {
	const char	*name;
	int		(*handler)(struct ctl_conn *, int, char **,
			    struct evbuffer *, char *, size_t);
	enum queue_act	 act;
	unsigned	 states;
};

/* Per-ID actions: run fn on each, collect failures into err. */
static int
ctl_each_id(struct ctl_conn *c, int argc, char **argv, const char *verb,
    int (*fn)(struct queue *, const char *), char *err, size_t errlen)
{
	size_t used = 0;
	int i, failed = 0;

	for (i = 1; i < argc; i++) {
		if (fn(c->ctl->queue, argv[i]) == -1) {
			const char *why = errno == ENOENT ? "no such message" :
			    errno == EBUSY ? "being delivered, try again" :
			    errno == EINVAL ? "not in a state for that" :
			    strerror(errno);
			int n = snprintf(err + used, errlen - used, "%s%s: %s",
			    failed ? "; " : "", argv[i], why);

			if (n > 0 && (size_t)n < errlen - used)
				used += (size_t)n;
			failed++;
		} else
			log_info("ctl %s %s uid=%u", verb, argv[i],
			    (unsigned)c->uid);
	}
	return failed ? -1 : 0;
}


static void
ctl_bulk_free(struct ctl_bulk *b)
{
	int i;

	if (b == NULL)
		return;
	if (b->tick != NULL)
		event_free(b->tick);
	for (i = 0; i < b->nargs; i++)
		free(b->args[i]);
	free(b->ids);
	free(b);
}

static void
ctl_bulk_add(struct ctl_bulk *b, const char *id)
{
	if (b->n == b->cap) {
		b->cap = b->cap == 0 ? 64 : b->cap * 2;
		b->ids = xreallocarray(b->ids, b->cap, sizeof(*b->ids));
	}
	util_copy(b->ids[b->n], sizeof(b->ids[b->n]), id);
	b->n++;
}

static void
ctl_bulk_match_cb(void *arg, enum spool_area area, const struct envelope *env,
    const char *state)
{
	struct ctl_bulk *b = arg;
	unsigned bit = select_state_bit(state);

	if (bit == SELECT_ST_WAITING)
		bit |= env->attempts > 0 ? SELECT_ST_DEFERRED : SELECT_ST_QUEUED;
	if ((bit & b->states) == 0 || !select_match(&b->sel, env, state,
	    b->now))
		return;
	if (b->dry_run) {
		ctl_proto_env_rec_live(b->listing, area, env, b->primary_down);
		b->n++;
		return;
	}
	ctl_bulk_add(b, env->id);
}

static void
ctl_bulk_summary(struct ctl_bulk *b, const struct queue_act_result *res,
    struct evbuffer *out)
{
	ctl_proto_kv(out, "action", b->verb);
	ctl_proto_kv(out, "selector", b->selector);
	ctl_proto_kvu(out, "matched", b->n);
	if (res != NULL) {
		ctl_proto_kvu(out, "done", res->done);
		ctl_proto_kvu(out, "skipped", res->skipped);
		ctl_proto_kvu(out, "failed", res->failed);
	}
	ctl_proto_rec_end(out);
}

/* The queue is through with the action (every message durable): answer
 * and log; the connection closes once the answer is out. */
static void
ctl_bulk_done(void *arg, const struct queue_act_result *res)
{
	struct ctl_bulk *b = arg;
	struct ctl_conn *c = b->conn;
	struct evbuffer *out;
	struct timeval tv = { CTL_TIMEOUT_SEC, 0 };
	size_t bad = res->failed + (b->by_ids ? res->skipped : 0);

	log_info("ctl %s finished matched=%zu done=%zu skipped=%zu "
	    "failed=%zu%s uid=%u", b->verb, b->n, res->done, res->skipped,
	    res->failed, res->stopped ? " stopped=yes" : "",
	    (unsigned)b->uid);
	if (c == NULL) {
		ctl_bulk_free(b);
		return;
	}
	out = bufferevent_get_output(c->bev);
	if (res->stopped)
		evbuffer_add_printf(out, "error stopped after %zu of %zu: "
		    "the daemon is stopping\n", res->done + res->skipped +
		    res->failed, b->n);
	else if (bad > 0 && b->by_ids)
		evbuffer_add_printf(out, "error %s\n", res->errs);
	else if (bad > 0)
		evbuffer_add_printf(out, "error %zu of %zu failed (%.256s)\n",
		    res->failed, b->n, res->errs);
	else
		evbuffer_add_printf(out, "ok\n");
	if (!b->by_ids)
		ctl_bulk_summary(b, res, out);
	evbuffer_add_printf(out, ".\n");
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	c->bulk = NULL;
	ctl_bulk_free(b);
}

/* Every CTL_PROGRESS_SEC while the action runs: a progress line ahead of
 * the answer (holdfastctl shows it on a terminal). */
static void
ctl_bulk_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ctl_bulk *b = arg;
	struct bulk_state st;

	(void)fd;
	(void)what;
	if (b->conn == NULL)
		return;
	queue_bulk_state(b->ctl->queue, &st);
	if (st.verb == NULL)
		return;
	evbuffer_add_printf(bufferevent_get_output(b->conn->bev),
	    "progress %s %zu of %zu%s\n", st.verb, st.done, st.total,
	    st.waiting > 0 ? " (more waiting)" : "");
}

/* Hand b's IDs to the queue; the answer is pending on c->bulk.  0, or -1
 * with err (b freed). */
static int
ctl_bulk_run(struct ctl_conn *c, struct ctl_bulk *b, char *err,
    size_t errlen)
{
	const char **ids = xreallocarray(NULL, b->n + 1, sizeof(*ids));
	struct timeval tv = { CTL_PROGRESS_SEC, 0 };
	char who[700], esc[LOG_ESCAPE_MAX];
	size_t i;
	int rc;

	for (i = 0; i < b->n; i++)
		ids[i] = b->ids[i];
	if (b->by_ids)
		snprintf(who, sizeof(who), "uid=%u", (unsigned)c->uid);
	else
		snprintf(who, sizeof(who), "uid=%u selector=%s",
		    (unsigned)c->uid, log_escape(b->selector,
		    strlen(b->selector), esc, sizeof(esc)));
	rc = queue_act(c->ctl->queue, b->act, ids, b->n, "operator", who,
	    ctl_bulk_done, b);
	free(ids);
	if (rc == -1) {
		snprintf(err, errlen, "%s", errno == EAGAIN ? "too many bulk "
		    "actions waiting; try again when one is done" :
		    strerror(errno));
		ctl_bulk_free(b);
		return -1;
	}
	c->bulk = b;
	/* no client timeout while it runs; its answer comes at the end */
	bufferevent_set_timeouts(c->bev, NULL, NULL);
	b->ctl = c->ctl;
	b->tick = event_new(c->ctl->base, -1, EV_PERSIST, ctl_bulk_tick_cb,
	    b);
	if (b->tick == NULL || event_add(b->tick, &tv) == -1)
		fatalx("ctl progress timer");
	return 0;
}

/* Match b's selector against the spool: on a worker (touching only b
 * and the spool, read-only; ctl may be freed meanwhile at shutdown) or,
 * for a dry run, on the loop. */
static void
ctl_bulk_match_work(void *arg)
{
	static const enum spool_area areas[] = { SPOOL_QUEUE, SPOOL_HOLD,
		SPOOL_DEAD };
	static const unsigned area_states[] = { SELECT_ST_QUEUED |
		SELECT_ST_DEFERRED | SELECT_ST_WAITING, SELECT_ST_HELD,
		SELECT_ST_DEAD };
	struct ctl_bulk *b = arg;
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(areas); i++)
		if ((area_states[i] & b->states) != 0 &&
		    ctl_proto_each(b->spool, areas[i], b->primary_down,
		    ctl_bulk_match_cb, b) == -1) {
			b->match_errno = errno;
			b->match_area = areas[i];
			return;
		}
}

/* Answer a pending request with an error (the connection closes once it
 * is out). */
static void
ctl_bulk_fail(struct ctl_conn *c, const char *err)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct timeval tv = { CTL_TIMEOUT_SEC, 0 };

	evbuffer_add_printf(out, "error %s\n.\n", err);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	c->bulk = NULL;
}

/* Loop: the selection is matched; act on it. */
static void
ctl_bulk_match_done(void *arg)
{
	struct ctl_bulk *b = arg;
	struct ctl_conn *c = b->conn;
	struct queue_act_result none;
	char esc[LOG_ESCAPE_MAX], err[512];

	if (c == NULL) {
		/* the client went away (or the daemon stops) before the
		 * action started: nothing is done */
		log_info("ctl %s selector matched=%zu: not applied, the client "
		    "went away first uid=%u", b->verb, b->n, (unsigned)b->uid);
		ctl_bulk_free(b);
		return;
	}
	if (b->match_errno != 0) {
		snprintf(err, sizeof(err), "cannot list %s: %s",
		    spool_area_name(b->match_area), strerror(b->match_errno));
		ctl_bulk_fail(c, err);
		ctl_bulk_free(b);
		return;
	}
	log_info("ctl %s selector=%s matched=%zu uid=%u", b->verb,
	    log_escape(b->selector, strlen(b->selector), esc, sizeof(esc)),
	    b->n, (unsigned)b->uid);
	if (b->n == 0) {
		memset(&none, 0, sizeof(none));
		ctl_bulk_done(b, &none);
		return;
	}
	c->bulk = NULL;
	if (ctl_bulk_run(c, b, err, sizeof(err)) == -1)
		ctl_bulk_fail(c, err);
}

/*
 * `VERB SELECTOR... [--dry-run]`: match, then list (dry run) or apply the
 * action to the matches.  states are those the action applies to.  0
 * with the answer in out (dry run) or pending on c->bulk; -1 with err.
 */
static int
ctl_bulk_start(struct ctl_conn *c, struct ctl_bulk *b, int argc, char **argv,
    struct evbuffer *out, char *err, size_t errlen)
{
	const char *ids[1], *down;
	char esc[LOG_ESCAPE_MAX];
	unsigned states = b->states;
	size_t nids;

	/* the request's words go when it returns; a match on a worker
	 * outlives it */
	for (b->nargs = 0; b->nargs < argc && b->nargs < CTL_ARGS_MAX;
	    b->nargs++)
		b->args[b->nargs] = xstrdup(argv[b->nargs]);
	if (select_parse(b->nargs - 1, b->args + 1, &b->sel, ids, 0, &nids,
	    err, errlen) == -1 || !b->sel.any) {
		if (b->sel.any || err[0] == '\0')
			snprintf(err, errlen, "usage: %s SELECTOR... "
			    "[--dry-run]", b->verb);
		else {
			char tmp[256];

			util_copy(tmp, sizeof(tmp), err);
			snprintf(err, errlen, "usage: %s", tmp);
		}
		ctl_bulk_free(b);
		return -1;
	}
	b->now = util_now();
	b->dry_run = b->sel.dry_run;
	b->listing = out;
	if ((down = queue_primary_down_reason(c->ctl->queue)) != NULL) {
		util_copy(b->down_buf, sizeof(b->down_buf), down);
		b->primary_down = b->down_buf;
	}
	b->states = b->sel.states != 0 ? b->sel.states & states : states;
	select_fmt(&b->sel, b->selector, sizeof(b->selector));
	b->ctl = c->ctl;
	b->spool = c->ctl->spool;
	if (!b->dry_run && c->ctl->wp != NULL) {
		/* reading every envelope takes long in a big queue: off the
		 * loop; the answer is pending on c->bulk from now on */
		c->bulk = b;
		bufferevent_set_timeouts(c->bev, NULL, NULL);
		workpool_submit(c->ctl->wp, ctl_bulk_match_work,
		    ctl_bulk_match_done, b);
		return 0;
	}
	ctl_bulk_match_work(b);
	if (b->match_errno != 0) {
		snprintf(err, errlen, "cannot list %s: %s",
		    spool_area_name(b->match_area), strerror(b->match_errno));
		ctl_bulk_free(b);
		return -1;
	}
	log_info("ctl %s selector=%s matched=%zu%s uid=%u", b->verb,
	    log_escape(b->selector, strlen(b->selector), esc, sizeof(esc)),
	    b->n, b->dry_run ? " dry-run" : "", (unsigned)c->uid);
	if (b->dry_run || b->n == 0) {
		struct queue_act_result none;

		memset(&none, 0, sizeof(none));
		ctl_bulk_summary(b, b->dry_run ? NULL : &none, out);
		ctl_bulk_free(b);
		return 0;
	}
	return ctl_bulk_run(c, b, err, errlen);
}

/* Whether argv (after the verb) is a selection rather than IDs. */
static bool
ctl_is_selection(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++)
		if (argv[i][0] == '-')
			return true;
	return false;
}

/*
 * hold, release, delete, requeue: `VERB ID...`, `VERB SELECTOR...` or
 * (hold, release) `VERB all`, all through queue_act().
 */
static int
ctl_act(struct ctl_conn *c, int argc, char **argv, enum queue_act act,
    unsigned states, struct evbuffer *out, char *err, size_t errlen)
{
	struct ctl_bulk *b;
	int i;

	if (argc == 2 && strcmp(argv[1], "all") == 0 &&
	    (act == QUEUE_ACT_HOLD || act == QUEUE_ACT_RELEASE)) {
		log_info("ctl %s all uid=%u", argv[0], (unsigned)c->uid);
		if (queue_act(c->ctl->queue, act, NULL, 0, "operator", NULL,
		    NULL, NULL) == -1) {
			snprintf(err, errlen, "%s", errno == EAGAIN ? "too "
			    "many bulk actions waiting; try again when one "
			    "is done" : strerror(errno));
			return -1;
		}
		return 0;
	}
	static const char *const verbs[] = {
		[QUEUE_ACT_HOLD] = "hold", [QUEUE_ACT_RELEASE] = "release",
		[QUEUE_ACT_REQUEUE] = "requeue", [QUEUE_ACT_DELETE] = "delete",
	};
	char esc[LOG_ESCAPE_MAX];

	if (!ctl_is_selection(argc, argv))
		for (i = 1; i < argc; i++)
			if (strlen(argv[i]) > SPOOL_ID_LEN) {
				/* never cut one down to another's ID */
				snprintf(err, errlen, "%.64s: no such message",
				    argv[i]);
				return -1;
			}
	b = xcalloc(1, sizeof(*b));
	b->conn = c;
	b->uid = c->uid;
	b->verb = verbs[act];
	b->act = act;
	b->states = states;
	if (ctl_is_selection(argc, argv))
		return ctl_bulk_start(c, b, argc, argv, out, err, errlen);
	b->by_ids = true;
	for (i = 1; i < argc; i++)
		ctl_bulk_add(b, argv[i]);
	log_info("ctl %s ids=%zu first=%s uid=%u", b->verb, b->n,
	    log_escape(b->ids[0], strlen(b->ids[0]), esc, sizeof(esc)),
	    (unsigned)c->uid);
	return ctl_bulk_run(c, b, err, errlen);
}

static int
ctl_cmd_queue(struct ctl_conn *c, int argc, char **argv, struct evbuffer *out,
    char *err, size_t errlen)
{
	static const enum spool_area areas[] = { SPOOL_QUEUE, SPOOL_HOLD,
		SPOOL_DEAD };
	size_t i;

	(void)argc;
	(void)argv;
	for (i = 0; i < UTIL_ARRAY_LEN(areas); i++)
		if (ctl_proto_list_live(c->ctl->spool, areas[i], out,
		    queue_primary_down_reason(c->ctl->queue)) == -1) {
			snprintf(err, errlen, "cannot list %s: %s",
			    spool_area_name(areas[i]), strerror(errno));
			return -1;
		}
	return 0;
}

static int
ctl_cmd_dead(struct ctl_conn *c, int argc, char **argv, struct evbuffer *out,
    char *err, size_t errlen)
{
	(void)argc;
	(void)argv;
	if (ctl_proto_list(c->ctl->spool, SPOOL_DEAD, out) == -1) {
		snprintf(err, errlen, "cannot list dead: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int
ctl_cmd_show(struct ctl_conn *c, int argc, char **argv, struct evbuffer *out,
    char *err, size_t errlen)
{
	(void)argc;
	return ctl_proto_show_live(c->ctl->spool, argv[1], c->args.body, out,
	    err, errlen, queue_primary_down_reason(c->ctl->queue));
}

static int
ctl_cmd_flush(struct ctl_conn *c, int argc, char **argv, struct evbuffer *out,
    char *err, size_t errlen)
{
	(void)out;
	if (argc == 1) {
		log_info("ctl flush all uid=%u", (unsigned)c->uid);
		return queue_flush(c->ctl->queue, NULL);
	}
	return ctl_each_id(c, argc, argv, "flush", queue_flush, err, errlen);
}

static int
ctl_cmd_hold_mode(struct ctl_conn *c, int argc, char **argv,
    struct evbuffer *out, char *err, size_t errlen)
{
	uint64_t secs = c->args.secs;

	(void)argc;
	(void)argv;
	(void)out;
	if (!c->args.on) {
		/* the held-time credit reaches only indexed messages */
		if (queue_is_loading(c->ctl->queue)) {
			snprintf(err, errlen, "the queue is still being "
			    "loaded (holdfastctl status): try again shortly");
			return -1;
		}
		log_info("ctl hold-mode off uid=%u", (unsigned)c->uid);
		return queue_hold_mode_set(c->ctl->queue, false, 0);
	}
	log_info("ctl hold-mode on for=%llus uid=%u",
	    (unsigned long long)secs, (unsigned)c->uid);
	if (queue_hold_mode_set(c->ctl->queue, true, secs) == -1) {
		snprintf(err, errlen, "cannot persist hold-mode: %s",
		    strerror(errno));
		return -1;
	}
	return 0;
}

/* pause-smtp [--for DURATION] (default 1h, ctl_proto's table) */
static int
ctl_cmd_pause_smtp(struct ctl_conn *c, int argc, char **argv,
    struct evbuffer *out, char *err, size_t errlen)
{
	uint64_t secs = c->args.secs;

	(void)argc;
	(void)argv;
	(void)out;
	if (c->ctl->pause == NULL) {
		snprintf(err, errlen, "not ready yet");
		return -1;
	}
	log_info("ctl pause-smtp for=%llus uid=%u", (unsigned long long)secs,
	    (unsigned)c->uid);
	if (pause_set(c->ctl->pause, secs) == -1) {
		snprintf(err, errlen, "cannot persist the pause: %s",
		    strerror(errno));
		return -1;
	}
	return 0;
}

static int
ctl_cmd_resume_smtp(struct ctl_conn *c, int argc, char **argv,
    struct evbuffer *out, char *err, size_t errlen)
{
	(void)argc;
	(void)argv;
	(void)out;
	if (c->ctl->pause == NULL) {
		snprintf(err, errlen, "not ready yet");
		return -1;
	}
	log_info("ctl resume-smtp uid=%u", (unsigned)c->uid);
	pause_off(c->ctl->pause, "operator");
	return 0;
}

/* trace on ADDR|CIDR|all [--for DURATION] (default 10m, ctl_proto's
 * table) | trace off */
static int
ctl_cmd_trace(struct ctl_conn *c, int argc, char **argv,
    struct evbuffer *out, char *err, size_t errlen)
{
	uint64_t secs = c->args.secs;
	const char *who = c->args.who;

	(void)argc;
	(void)out;
	if (c->ctl->smtp == NULL) {
		snprintf(err, errlen, "not ready yet");
		return -1;
	}
	if (!c->args.on) {
		log_info("ctl trace off uid=%u", (unsigned)c->uid);
		smtp_server_trace_off(c->ctl->smtp);
		return 0;
	}
	if (smtp_server_trace_set(c->ctl->smtp, who, secs) == -1) {
		snprintf(err, errlen, "usage: trace on ADDR|all: %.64s is not "
		    "an address or CIDR", argv[2]);
		return -1;
	}
	log_info("ctl trace on addr=%s for=%llus uid=%u", who != NULL ? who :
	    "all", (unsigned long long)secs, (unsigned)c->uid);
	return 0;
}

/* The queue's part of the status record (its fields, no record end). */
static void
ctl_status_queue(struct evbuffer *out, const struct queue_stats *st)
{
	static const struct {
		const char		*name;
		enum queue_stats_state	 state;
	} states[] = {
		{ "queued", QUEUE_STATS_QUEUED },
		{ "deferred", QUEUE_STATS_DEFERRED },
		{ "held", QUEUE_STATS_HELD },
		{ "dead", QUEUE_STATS_DEAD },
	};
	size_t i;
	char key[32];

	ctl_proto_kv(out, "primary", st->primary_up ? "up" : "down");
	ctl_proto_kvu(out, "primary_since",
	    (unsigned long long)st->primary_since);
	ctl_proto_kv(out, "refusing", st->refusing ? "yes" : "no");
	ctl_proto_kvu(out, "last_delivery",
	    (unsigned long long)st->last_delivery);
	ctl_proto_kvu(out, "primary_size", st->primary_size);
	ctl_proto_kv(out, "primary_smtputf8", !st->primary_known ? "unknown" :
	    st->primary_smtputf8 ? "yes" : "no");
	ctl_proto_kvu(out, "size_limit", st->size_limit);
	ctl_proto_kv(out, "hold_mode", st->hold_mode ? "on" : "off");
	ctl_proto_kvu(out, "hold_until", (unsigned long long)st->hold_until);
	for (i = 0; i < UTIL_ARRAY_LEN(states); i++) {
		time_t oldest = st->state[states[i].state].oldest;

		snprintf(key, sizeof(key), "%s_messages", states[i].name);
		ctl_proto_kvu(out, key, st->state[states[i].state].messages);
		snprintf(key, sizeof(key), "%s_bytes", states[i].name);
		ctl_proto_kvu(out, key, st->state[states[i].state].bytes);
		snprintf(key, sizeof(key), "%s_oldest_age", states[i].name);
		ctl_proto_kvu(out, key, oldest == 0 ? 0 :
		    (unsigned long long)(st->now - oldest));
	}
	ctl_proto_kvu(out, "waiting_messages", st->primary_up ? 0 :
	    st->state[QUEUE_STATS_QUEUED].messages +
	    st->state[QUEUE_STATS_DEFERRED].messages);
	ctl_proto_kvu(out, "oldest_age", st->oldest == 0 ? 0 :
	    (unsigned long long)(st->now - st->oldest));
	ctl_proto_kvu(out, "spool_free_bytes", st->spool_free_bytes < 0 ? 0 :
	    (unsigned long long)st->spool_free_bytes);
	ctl_proto_kv(out, "spool_suspect", st->spool_suspect ? "yes" : "no");
	ctl_proto_kv(out, "version", HOLDFAST_VERSION);
	ctl_proto_kvu(out, "uptime",
	    (unsigned long long)(st->now - st->started));
	ctl_proto_kv(out, "bulk", st->bulk.verb != NULL ? st->bulk.verb :
	    "none");
	ctl_proto_kvu(out, "bulk_done", st->bulk.done);
	ctl_proto_kvu(out, "bulk_total", st->bulk.total);
	ctl_proto_kvu(out, "bulk_waiting", st->bulk.waiting);
	if (st->load_total != 0) {
		char v[64];

		snprintf(v, sizeof(v), "%llu of %llu",
		    (unsigned long long)st->load_done,
		    (unsigned long long)st->load_total);
		ctl_proto_kv(out, "loading", v);
	}
}

static int
ctl_cmd_status(struct ctl_conn *c, int argc, char **argv,
    struct evbuffer *out, char *err, size_t errlen)
{
	const struct config *cf = c->ctl->cf;
	struct queue_stats st;
	uint64_t hash;
	int64_t mtime;

	(void)argc;
	(void)argv;
	(void)err;
	(void)errlen;
	queue_stats_get(c->ctl->queue, &st);
	ctl_status_queue(out, &st);
	ctl_proto_kv(out, "config_file", cf->path != NULL ? cf->path : "");
	ctl_proto_kvu(out, "config_mtime", (unsigned long long)cf->mtime);
	ctl_proto_kv(out, "config_changed", cf->path == NULL ||
	    config_file_stat(cf->path, &mtime, &hash) == -1 ? "unknown" :
	    hash != cf->hash ? "yes" : mtime != cf->mtime ? "touched" :
	    "no");
	if (c->ctl->smtp != NULL) {
		const char *who;
		time_t until = smtp_server_trace_get(c->ctl->smtp, &who);

		ctl_proto_kv(out, "trace", until != 0 ? who : "off");
		ctl_proto_kvu(out, "trace_until", (unsigned long long)until);
	}
	if (c->ctl->pause != NULL) {
		time_t until = pause_until(c->ctl->pause, util_now());

		ctl_proto_kv(out, "smtp_paused", until != 0 ? "on" : "off");
		ctl_proto_kvu(out, "smtp_paused_since",
		    (unsigned long long)pause_since(c->ctl->pause));
		ctl_proto_kvu(out, "smtp_paused_until",
		    (unsigned long long)until);
	}
	ctl_proto_rec_end(out);
	return 0;
}

/* Handlers of ctl_proto's verbs (which hold their argument counts and
 * usage); ctl_new checks that every verb has one. */
static const struct ctl_command ctl_commands[] = {
	{ .name = "queue", .handler = ctl_cmd_queue },
	{ .name = "show", .handler = ctl_cmd_show },
	{ .name = "flush", .handler = ctl_cmd_flush },
	{ .name = "hold", .act = QUEUE_ACT_HOLD, .states = SELECT_ST_QUEUED |
	    SELECT_ST_DEFERRED | SELECT_ST_WAITING },
	{ .name = "release", .act = QUEUE_ACT_RELEASE,
	    .states = SELECT_ST_HELD },
	{ .name = "delete", .act = QUEUE_ACT_DELETE, .states =
	    SELECT_ST_QUEUED | SELECT_ST_DEFERRED | SELECT_ST_WAITING |
	    SELECT_ST_HELD | SELECT_ST_DEAD },
	{ .name = "dead", .handler = ctl_cmd_dead },
	{ .name = "requeue", .act = QUEUE_ACT_REQUEUE,
	    .states = SELECT_ST_DEAD },
	{ .name = "hold-mode", .handler = ctl_cmd_hold_mode },
	{ .name = "status", .handler = ctl_cmd_status },
	{ .name = "pause-smtp", .handler = ctl_cmd_pause_smtp },
	{ .name = "resume-smtp", .handler = ctl_cmd_resume_smtp },
	{ .name = "trace", .handler = ctl_cmd_trace },
};

static const struct ctl_command *
ctl_command_find(const char *name)
{
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(ctl_commands); i++)
		if (strcmp(ctl_commands[i].name, name) == 0)
			return &ctl_commands[i];
	return NULL;
}

static void
ctl_conn_free(struct ctl_conn *c)
{
	TAILQ_REMOVE(&c->ctl->conns, c, entry);
	c->ctl->nconns--;
	if (c->bulk != NULL) {
		log_info("ctl %s: the client went away; an action under way "
		    "goes on uid=%u", c->bulk->verb, (unsigned)c->uid);
		c->bulk->conn = NULL;	/* freed by ctl_bulk_done() */
	}
	bufferevent_free(c->bev);
	free(c);
}

/*
 * Verbs that act on the queue's index (IDs, "all", selectors): refused
 * while the startup scan runs, since a message not indexed yet would be
 * missed ("hold all") or reported as unknown.
 */
static bool
ctl_is_index_verb(const char *name)
{
	static const char *const verbs[] = { "flush", "hold", "release",
		"delete", "requeue" };
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(verbs); i++)
		if (strcmp(name, verbs[i]) == 0)
			return true;
	return false;
}

static void
ctl_request(struct ctl_conn *c, char *line)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct evbuffer *body = evbuffer_new();
	char *argv[CTL_ARGS_MAX], err[1024] = "";
	const struct ctl_command *cmd = NULL;
	const struct ctl_proto_command *pc = NULL;
	int argc, rc = -1;
	size_t i;

	if (body == NULL)
		fatalx("evbuffer_new");
	argc = ctl_proto_split(line, argv, CTL_ARGS_MAX);
	if (argc <= 0)
		snprintf(err, sizeof(err), "empty or overlong request");
	else {
		if ((pc = ctl_proto_command_find(argv[0])) != NULL)
			cmd = ctl_command_find(argv[0]);
		if (cmd == NULL)
			snprintf(err, sizeof(err), "unknown command %.64s",
			    argv[0]);
		else if (ctl_proto_check(pc, argc, argv, &c->args) == -1) {
			char usage[256];

			ctl_proto_usage(pc, pc->name, "", usage,
			    sizeof(usage));
			snprintf(err, sizeof(err), "usage: %s", usage);
		} else if (ctl_is_index_verb(pc->name) &&
		    queue_is_loading(c->ctl->queue))
			snprintf(err, sizeof(err), "the queue is still being "
			    "loaded (holdfastctl status): try again shortly");
		else {
			rc = cmd->handler != NULL ? cmd->handler(c, argc,
			    argv, body, err, sizeof(err)) : ctl_act(c, argc,
			    argv, cmd->act, cmd->states, body, err,
			    sizeof(err));
			if (rc == -1 && err[0] == '\0')
				snprintf(err, sizeof(err), "%s",
				    strerror(errno));
		}
	}
	if (rc == 0 && c->bulk != NULL) {
		/* answered by ctl_bulk_done() */
		evbuffer_free(body);
		c->done = true;
		return;
	}
	if (rc == 0)
		evbuffer_add_printf(out, "ok\n");
	else {
		for (i = 0; err[i] != '\0'; i++)
			if (err[i] == '\n')
				err[i] = ' ';
		evbuffer_add_printf(out, "error %s\n", err);
	}
	evbuffer_add_buffer(out, body);
	evbuffer_add_printf(out, ".\n");
	evbuffer_free(body);
	c->done = true;
}

/*
 * One request per connection, at most CTL_LINE_MAX octets: the read
 * watermark stops reading beyond that, and whatever arrives after the
 * request is discarded until the answer is out and the connection closes,
 * so a client cannot grow the daemon's memory.
 */
static void
ctl_read_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line;

	if (c->done) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
	if (line == NULL) {
		if (evbuffer_get_length(in) > CTL_LINE_MAX) {
			log_warnx("ctl refused uid=%u reason=request-too-long",
			    (unsigned)c->uid);
			evbuffer_add_printf(bufferevent_get_output(bev),
			    "error request too long\n.\n");
			c->done = true;
			evbuffer_drain(in, evbuffer_get_length(in));
		}
		return;
	}
	if (len > CTL_LINE_MAX) {
		evbuffer_add_printf(bufferevent_get_output(bev),
		    "error request too long\n.\n");
		c->done = true;
	} else
		ctl_request(c, line);
	free(line);
	evbuffer_drain(in, evbuffer_get_length(in));
}

static void
ctl_write_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_conn *c = arg;

	/* (a progress line out while the answer is pending closes nothing) */
	if (c->done && c->bulk == NULL &&
	    evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		ctl_conn_free(c);
}

static void
ctl_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	ctl_conn_free(arg);
}

bool
ctl_peer_allowed(uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups,
    uid_t self, gid_t ctlgid)
{
	size_t i;

	if (uid == 0 || uid == self)
		return true;
	if (ctlgid == (gid_t)-1)
		return false;
	if (gid == ctlgid)
		return true;
	for (i = 0; i < ngroups; i++)
		if (groups[i] == ctlgid)
			return true;
	return false;
}

/*
 * The peer's supplementary groups: those of the connected process
 * (SO_PEERGROUPS), or, on a kernel without it, its user's from the group
 * database.  A new array (caller frees) and its length in *n.
 */
static gid_t *
ctl_peer_groups(int fd, const struct ucred *cred, size_t *n)
{
	socklen_t len = 64 * sizeof(gid_t);
	struct passwd *pw;
	gid_t *groups;
	int ng, rc;

	groups = xcalloc(1, len);
	rc = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len);
	if (rc == -1 && errno == ERANGE) {
		free(groups);
		groups = xcalloc(1, len + sizeof(gid_t));
		rc = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len);
	}
	if (rc == 0) {
		*n = len / sizeof(gid_t);
		return groups;
	}
	*n = 0;
	if ((pw = getpwuid(cred->uid)) == NULL)
		return groups;
	ng = 64;
	free(groups);
	groups = xcalloc((size_t)ng, sizeof(gid_t));
	if (getgrouplist(pw->pw_name, cred->gid, groups, &ng) == -1) {
		free(groups);
		groups = xcalloc((size_t)ng, sizeof(gid_t));
		if (getgrouplist(pw->pw_name, cred->gid, groups, &ng) == -1)
			ng = 0;
	}
	*n = (size_t)ng;
	return groups;
}

static bool
ctl_peer_ok(struct ctl *ctl, int fd, uid_t *uid)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	gid_t *groups = NULL;
	size_t n = 0;
	bool ok;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1)
		return false;
	*uid = cred.uid;
	if (ctl_peer_allowed(cred.uid, cred.gid, NULL, 0, geteuid(), ctl->gid))
		return true;
	if (ctl->gid == (gid_t)-1)
		return false;
	groups = ctl_peer_groups(fd, &cred, &n);
	ok = ctl_peer_allowed(cred.uid, cred.gid, groups, n, geteuid(),
	    ctl->gid);
	free(groups);
	return ok;
}

static void
ctl_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct ctl *ctl = arg;
	struct timeval tv = { CTL_TIMEOUT_SEC, 0 };
	struct ctl_conn *c;
	uid_t uid = (uid_t)-1;

	(void)l;
	(void)sa;
	(void)salen;
	if (!ctl_peer_ok(ctl, fd, &uid) || ctl->nconns >= CTL_MAX_CONNS) {
		static struct log_limit ll = LOG_LIMIT_INIT("ctl refused");

		if (log_limit_ok(&ll))
			log_warnx("ctl refused uid=%d reason=%s", (int)uid,
			    ctl->nconns >= CTL_MAX_CONNS ? "busy" :
			    "credentials");
		evutil_closesocket(fd);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->ctl = ctl;
	c->uid = uid;
	c->bev = bufferevent_socket_new(ctl->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		fatalx("ctl bufferevent");
	TAILQ_INSERT_TAIL(&ctl->conns, c, entry);
	ctl->nconns++;
	bufferevent_setcb(c->bev, ctl_read_cb, ctl_write_cb, ctl_event_cb, c);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_setwatermark(c->bev, EV_READ, 0, CTL_LINE_MAX + 1);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void
ctl_listen_error_cb(struct evconnlistener *l, void *arg)
{
	struct ctl *ctl = arg;
	int err = EVUTIL_SOCKET_ERROR();

	(void)l;
	net_backoff_start(ctl->backoff, err);
}

/*
 * Open dir, started as root: component by component from "/" without
 * following a symlink, creating the last one (0700 by the umask; the
 * caller makes it 0755) if missing.  A directory the daemon's user owns
 * on the way could otherwise be swapped for a symlink that has root bind,
 * or unlink a stale socket, in any directory.  The fd, or -1 (errno set;
 * *made: whether the last one was created).
 */
static int
ctl_dir_walk(const char *dir, int *made)
{
	char *copy = xstrdup(dir), *p = copy, *name;
	int fd, nfd, saved;

	*made = -1;
	if ((fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		goto fail;
	while ((name = strsep(&p, "/")) != NULL) {
		if (*name == '\0')
			continue;
		if (p == NULL || strspn(p, "/") == strlen(p))
			*made = mkdirat(fd, name, 0755);
		if (strcmp(name, "..") == 0) {
			errno = EINVAL;
			goto fail;
		}
		nfd = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
		    O_CLOEXEC);
		if (nfd == -1)
			goto fail;
		close(fd);
		fd = nfd;
	}
	free(copy);
	return fd;
fail:
	saved = errno;
	if (fd != -1)
		close(fd);
	free(copy);
	errno = saved;
	return -1;
}

/*
 * Split path into its directory (opened: ctl->dirfd) and its last
 * component (ctl->name).  Started as root, the directory must be root's
 * or the daemon user's and writable by no one else (unless sticky).  A
 * missing directory is created (mode 0755; e.g. /run/holdfast outside
 * systemd).  0 or -1 (logged).
 */
static int
ctl_dir_open(struct ctl *ctl, uid_t owner)
{
	char *dir = xstrdup(ctl->path), *slash = strrchr(dir, '/');
	const char *dpath;
	struct stat st;
	int rc = -1, made;

	if (slash == NULL || slash[1] == '\0') {
		log_warnx("control socket %s: give an absolute file path",
		    ctl->path);
		goto done;
	}
	ctl->name = xstrdup(slash + 1);
	*slash = '\0';
	dpath = *dir == '\0' ? "/" : dir;
	if (geteuid() == 0 && *dpath == '/') {
		if ((ctl->dirfd = ctl_dir_walk(dpath, &made)) == -1) {
			if (errno == ELOOP || errno == ENOTDIR)
				log_warnx("control socket directory %s: a "
				    "symlink or not a directory on the way; a "
				    "root start follows no symlink there",
				    dpath);
			else
				log_warn("control socket directory %s", dpath);
			goto done;
		}
	} else {
		if ((made = mkdir(dpath, 0755)) == -1 && errno != EEXIST) {
			log_warn("control socket directory %s", dpath);
			goto done;
		}
		ctl->dirfd = open(dpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (ctl->dirfd == -1 || (made == 0 && fchmod(ctl->dirfd, 0755) == -1) ||
	    fstat(ctl->dirfd, &st) == -1) {
		log_warn("control socket directory %s", dpath);
		goto done;
	}
	if (geteuid() == 0 && ((st.st_uid != 0 && st.st_uid != owner) ||
	    ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 &&
	    (st.st_mode & S_ISVTX) == 0))) {
		log_warnx("control socket directory %s is writable by others "
		    "than root and %s: refusing to create the socket there",
		    dpath, ctl->cf->user);
		goto done;
	}
	rc = 0;
done:
	free(dir);
	return rc;
}

/*
 * Remove a stale socket left by a previous run, relative to the directory
 * fd and without following symlinks.  Anything else at the path, or a
 * socket something still listens on, is left alone: -1 (logged).
 */
static int
ctl_stale_remove(struct ctl *ctl, const struct sockaddr_un *sun)
{
	struct stat st;
	int fd;

	if (fstatat(ctl->dirfd, ctl->name, &st, AT_SYMLINK_NOFOLLOW) == -1)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISSOCK(st.st_mode)) {
		log_warnx("control socket %s exists and is not a socket: "
		    "refusing to touch it", ctl->path);
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	if (connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0) {
		close(fd);
		log_warnx("control socket %s: another daemon answers on it",
		    ctl->path);
		return -1;
	}
	close(fd);
	if (unlinkat(ctl->dirfd, ctl->name, 0) == -1 && errno != ENOENT) {
		log_warn("control socket %s: cannot remove the stale one",
		    ctl->path);
		return -1;
	}
	return 0;
}

/*
 * Create the socket without a window in which its file can be swapped:
 * bound through /proc/self/fd/<dirfd>/<name> (the directory we opened and
 * checked, whatever its path now points to), created 0660 by the umask,
 * and, started as root, with the control group as the effective gid, so
 * that no chmod or chown by path follows the bind.  Not root, the group is
 * set relative to the directory fd without following symlinks.
 */
static int
ctl_bind(struct ctl *ctl, struct sockaddr_un *sun)
{
	struct sockaddr_un bsun = *sun;
	struct stat st;
	mode_t omask;
	gid_t egid = getegid();
	int fd, rc, n;

	n = snprintf(bsun.sun_path, sizeof(bsun.sun_path),
	    "/proc/self/fd/%d/%s", ctl->dirfd, ctl->name);
	if (n < 0 || (size_t)n >= sizeof(bsun.sun_path) ||
	    access("/proc/self/fd", X_OK) == -1)
		bsun = *sun;	/* no /proc: the path, still checked */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	if (geteuid() == 0 && ctl->gid != (gid_t)-1 &&
	    setegid(ctl->gid) == -1)
		goto fail;
	omask = umask(0117);
	rc = bind(fd, (struct sockaddr *)&bsun, sizeof(bsun));
	umask(omask);
	if (geteuid() == 0 && getegid() != egid && setegid(egid) == -1)
		fatal("cannot restore the effective gid");
	if (rc == -1 || listen(fd, 16) == -1)
		goto fail;
	if (fstatat(ctl->dirfd, ctl->name, &st, AT_SYMLINK_NOFOLLOW) == -1)
		goto fail;
	ctl->ino = st.st_ino;
	if (geteuid() != 0 && ctl->gid != (gid_t)-1 && st.st_gid != ctl->gid &&
	    fchownat(ctl->dirfd, ctl->name, (uid_t)-1, ctl->gid,
	    AT_SYMLINK_NOFOLLOW) == -1)
		log_warn("control socket %s: cannot give it to group %s (the "
		    "daemon's user must be a member); only root and %s can "
		    "connect", ctl->path, ctl->cf->control_group,
		    ctl->cf->user);
	return fd;
fail:
	close(fd);
	return -1;
}

struct ctl *
ctl_new(struct event_base *base, const struct config *cf, struct queue *q,
    struct spool *sp, uid_t owner)
{
	struct ctl *ctl = xcalloc(1, sizeof(*ctl));
	struct sockaddr_un sun;
	int fd;

	ctl->base = base;
	ctl->cf = cf;
	ctl->queue = q;
	ctl->spool = sp;
	ctl->gid = (gid_t)-1;
	ctl->dirfd = -1;
	ctl->path = xstrdup(cf->control_socket);
	TAILQ_INIT(&ctl->conns);
	{
		const struct ctl_proto_command *pcs;
		size_t n, i;

		pcs = ctl_proto_commands(&n);
		for (i = 0; i < n; i++)
			if (ctl_command_find(pcs[i].name) == NULL)
				fatalx("ctl: no handler for %s", pcs[i].name);
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (util_copy(sun.sun_path, sizeof(sun.sun_path), ctl->path) == -1) {
		log_warnx("control socket path too long: %s", ctl->path);
		goto fail;
	}
	if (*cf->control_group != '\0') {
		struct group *gr = getgrnam(cf->control_group);

		if (gr == NULL) {
			log_warnx("control group %s: no such group",
			    cf->control_group);
			goto fail;
		}
		ctl->gid = gr->gr_gid;
	}
	if (ctl_dir_open(ctl, owner) == -1 || ctl_stale_remove(ctl, &sun) == -1)
		goto fail;
	if ((fd = ctl_bind(ctl, &sun)) == -1) {
		log_warn("control socket %s", ctl->path);
		goto fail;
	}
	ctl->listener = evconnlistener_new(base, ctl_accept_cb, ctl,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (ctl->listener == NULL) {
		close(fd);
		log_warnx("control socket %s: listener", ctl->path);
		goto fail;
	}
	evconnlistener_set_error_cb(ctl->listener, ctl_listen_error_cb);
	ctl->backoff = net_backoff_new(base, ctl->listener, "ctl");
	log_info("control socket listening path=%s", ctl->path);
	return ctl;
fail:
	ctl_free(ctl);
	return NULL;
}

void
ctl_set_pause(struct ctl *ctl, struct pause *p)
{
	ctl->pause = p;
}

void
ctl_set_smtp(struct ctl *ctl, struct smtp_server *srv)
{
	ctl->smtp = srv;
}

void
ctl_set_workpool(struct ctl *ctl, struct workpool *wp)
{
	ctl->wp = wp;
}

void
ctl_free(struct ctl *ctl)
{
	struct stat st;

	if (ctl == NULL)
		return;
	while (!TAILQ_EMPTY(&ctl->conns))
		ctl_conn_free(TAILQ_FIRST(&ctl->conns));
	net_backoff_free(ctl->backoff);
	if (ctl->listener != NULL) {
		evconnlistener_free(ctl->listener);
		/* Ours only: not a socket another process put there since. */
		if (fstatat(ctl->dirfd, ctl->name, &st,
		    AT_SYMLINK_NOFOLLOW) == 0 && S_ISSOCK(st.st_mode) &&
		    st.st_ino == ctl->ino)
			unlinkat(ctl->dirfd, ctl->name, 0);
	}
	if (ctl->dirfd != -1)
		close(ctl->dirfd);
	free(ctl->name);
	free(ctl->path);
	free(ctl);
}
