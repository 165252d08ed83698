#include "ctl_proto.h"

#include <errno.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "envelope.h"
#include "util.h"
#include "xmalloc.h"

/* "--for DURATION" at argv[i] (i == argc: absent, *secs kept); -1 if
 * anything else is there. */
static int
ctl_proto_for(int argc, char **argv, int i, uint64_t *secs)
{
	uint64_t n;

	if (i == argc)
		return 0;
	if (argc != i + 2 || strcmp(argv[i], "--for") != 0 ||
	    util_parse_duration(argv[i + 1], &n) == -1 || n == 0)
		return -1;
	*secs = n;
	return 0;
}

/* show ID [--body] */
static int
ctl_proto_check_show(int argc, char **argv, struct ctl_proto_args *a)
{
	a->body = argc == 3 && strcmp(argv[2], "--body") == 0;
	return argc == 3 && !a->body ? -1 : 0;
}

/* hold-mode on [--for DURATION] | off */
static int
ctl_proto_check_hold_mode(int argc, char **argv, struct ctl_proto_args *a)
{
	a->on = strcmp(argv[1], "on") == 0;
	if (!a->on)
		return strcmp(argv[1], "off") == 0 && argc == 2 ? 0 : -1;
	return ctl_proto_for(argc, argv, 2, &a->secs);
}

/* pause-smtp [--for DURATION] */
static int
ctl_proto_check_pause(int argc, char **argv, struct ctl_proto_args *a)
{
	return ctl_proto_for(argc, argv, 1, &a->secs);
}

/* trace on ADDR|all [--for DURATION] | off; ADDR is checked by the
 * daemon (smtp_server_trace_set). */
static int
ctl_proto_check_trace(int argc, char **argv, struct ctl_proto_args *a)
{
	a->on = strcmp(argv[1], "on") == 0;
	if (!a->on)
		return strcmp(argv[1], "off") == 0 && argc == 2 ? 0 : -1;
	if (argc < 3)
		return -1;
	a->who = strcmp(argv[2], "all") == 0 ? NULL : argv[2];
	return ctl_proto_for(argc, argv, 3, &a->secs);
}

static const struct ctl_proto_command ctl_proto_table[] = {
	{ "queue", 0, 0, "", 0, NULL },
	{ "show", 1, 2, "ID [--body]", 0, ctl_proto_check_show },
	{ "flush", 0, CTL_ARGS_MAX - 1, "[ID...]", 0, NULL },
	{ "hold", 1, CTL_ARGS_MAX - 1, "ID...|all | SELECTOR... [--dry-run]",
	  0, NULL },
	{ "release", 1, CTL_ARGS_MAX - 1,
	  "ID...|all | SELECTOR... [--dry-run]", 0, NULL },
	{ "delete", 1, CTL_ARGS_MAX - 1, "ID... | SELECTOR... [--dry-run]",
	  0, NULL },
	{ "dead", 0, 0, "", 0, NULL },
	{ "requeue", 1, CTL_ARGS_MAX - 1, "ID... | SELECTOR... [--dry-run]",
	  0, NULL },
	{ "hold-mode", 1, 3, "on [--for DURATION] | off", 86400,
	  ctl_proto_check_hold_mode },
	{ "status", 0, 0, "", 0, NULL },
	{ "pause-smtp", 0, 2, "[--for DURATION]", 3600,
	  ctl_proto_check_pause },
	{ "resume-smtp", 0, 0, "", 0, NULL },
	{ "trace", 1, 4, "on ADDR|all [--for DURATION] | off", 600,
	  ctl_proto_check_trace },
};

const struct ctl_proto_command *
ctl_proto_command_find(const char *name)
{
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(ctl_proto_table); i++)
		if (strcmp(ctl_proto_table[i].name, name) == 0)
			return &ctl_proto_table[i];
	return NULL;
}

const struct ctl_proto_command *
ctl_proto_commands(size_t *n)
{
	*n = UTIL_ARRAY_LEN(ctl_proto_table);
	return ctl_proto_table;
}

int
ctl_proto_check(const struct ctl_proto_command *pc, int argc, char **argv,
    struct ctl_proto_args *a)
{
	memset(a, 0, sizeof(*a));
	a->secs = pc->for_default;
	if (argc - 1 < pc->min_args || argc - 1 > pc->max_args)
		return -1;
	return pc->check != NULL ? pc->check(argc, argv, a) : 0;
}

void
ctl_proto_usage(const struct ctl_proto_command *pc, const char *name,
    const char *extra, char *buf, size_t len)
{
	const char *u = pc != NULL ? pc->usage : "", *bar;
	size_t n;

	n = (size_t)snprintf(buf, len, "%s", name);
	while (n < len && *u != '\0') {
		bar = strstr(u, " | ");
		n += (size_t)snprintf(buf + n, len - n, " %.*s",
		    bar != NULL ? (int)(bar - u) : (int)strlen(u), u);
		if (bar == NULL)
			break;
		u = bar + 3;
		if (n < len)
			n += (size_t)snprintf(buf + n, len - n, " | %s", name);
	}
	if (n < len && *extra != '\0')
		snprintf(buf + n, len - n, " %s", extra);
}

/* Two pairs per recipient at most; the other keys number fewer than 20. */
_Static_assert(2 * CTL_REC_RCPTS + 20 <= CTL_REC_MAX,
    "a record holds its pairs");

static bool
ctl_proto_must_escape(unsigned char c)
{
	return c <= 0x20 || c >= 0x7f || c == '%' || c == '=';
}

void
ctl_proto_kv(struct evbuffer *out, const char *key, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;
	char buf[256];
	size_t n = 0;

	evbuffer_add_printf(out, " %s=", key);
	for (p = (const unsigned char *)value; *p != '\0'; p++) {
		if (n + 3 > sizeof(buf)) {
			evbuffer_add(out, buf, n);
			n = 0;
		}
		if (ctl_proto_must_escape(*p)) {
			buf[n++] = '%';
			buf[n++] = hex[*p >> 4];
			buf[n++] = hex[*p & 15];
		} else
			buf[n++] = (char)*p;
	}
	evbuffer_add(out, buf, n);
}

void
ctl_proto_kvu(struct evbuffer *out, const char *key, unsigned long long value)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "%llu", value);
	ctl_proto_kv(out, key, buf);
}

void
ctl_proto_rec_end(struct evbuffer *out)
{
	evbuffer_add(out, "\n", 1);
}

/* Unescape s in place; -1 on a malformed escape. */
static int
ctl_proto_unescape(char *s)
{
	char *w = s;

	for (; *s != '\0'; s++) {
		if (*s == '%') {
			int hi = util_hexval(s[1]), lo;

			if (hi == -1 || (lo = util_hexval(s[2])) == -1)
				return -1;
			*w++ = (char)(hi << 4 | lo);
			s += 2;
		} else
			*w++ = *s;
	}
	*w = '\0';
	return 0;
}

int
ctl_proto_rec_parse(char *line, struct ctl_rec *rec)
{
	char *tok;

	rec->n = 0;
	while ((tok = strsep(&line, " ")) != NULL) {
		char *eq;

		if (*tok == '\0')
			continue;
		if ((eq = strchr(tok, '=')) == NULL || eq == tok ||
		    rec->n == CTL_REC_MAX)
			return -1;
		*eq = '\0';
		if (ctl_proto_unescape(eq + 1) == -1)
			return -1;
		rec->key[rec->n] = tok;
		rec->val[rec->n] = eq + 1;
		rec->n++;
	}
	return 0;
}

const char *
ctl_proto_rec_get(const struct ctl_rec *rec, const char *key)
{
	size_t i;

	for (i = 0; i < rec->n; i++)
		if (strcmp(rec->key[i], key) == 0)
			return rec->val[i];
	return NULL;
}

int
ctl_proto_split(char *line, char **argv, size_t max)
{
	char *tok;
	size_t n = 0;

	while ((tok = strsep(&line, " ")) != NULL) {
		if (*tok == '\0')
			continue;
		if (n == max)
			return -1;
		argv[n++] = tok;
	}
	return (int)n;
}

const char *
ctl_proto_state(enum spool_area area, const struct envelope *env)
{
	switch (area) {
	case SPOOL_QUEUE:
		return env != NULL && env->attempts > 0 ? "deferred" :
		    "queued";
	case SPOOL_HOLD:
		return "held";
	case SPOOL_DEAD:
		return "dead";
	case SPOOL_QUARANTINE:
		return "quarantined";
	case SPOOL_TMP:
	case SPOOL_NAREAS:
		break;
	}
	return "unknown";
}

void
ctl_proto_env_rec(struct evbuffer *out, enum spool_area area,
    const struct envelope *env)
{
	ctl_proto_env_rec_live(out, area, env, NULL);
}

/* " rcpt=STATE:ADDR" for env's recipients [from, from + n), each dead one
 * followed by " rcpt_reply=<ADDR> REPLY" (the primary's refusal, or
 * "expired"). */
static void
ctl_proto_rcpts(struct evbuffer *out, const struct envelope *env,
    size_t from, size_t n)
{
	static const char *const rstates[] = {
		[ENVELOPE_RCPT_PENDING] = "pending",
		[ENVELOPE_RCPT_DONE] = "done",
		[ENVELOPE_RCPT_DEAD] = "dead",
	};
	size_t i;

	for (i = from; i < from + n && i < env->nrcpt; i++) {
		char buf[1024];	/* path 256, reply 512 */

		snprintf(buf, sizeof(buf), "%s:%s", rstates[env->rcpts[i].state],
		    env->rcpts[i].addr);
		ctl_proto_kv(out, "rcpt", buf);
		if (env->rcpts[i].state != ENVELOPE_RCPT_DEAD ||
		    env->rcpts[i].reply == NULL)
			continue;
		snprintf(buf, sizeof(buf), "<%s> %s", env->rcpts[i].addr,
		    env->rcpts[i].reply);
		ctl_proto_kv(out, "rcpt_reply", buf);
	}
}

void
ctl_proto_env_rec_live(struct evbuffer *out, enum spool_area area,
    const struct envelope *env, const char *primary_down)
{

	ctl_proto_kv(out, "id", env->id);
	ctl_proto_kv(out, "state", primary_down != NULL &&
	    area == SPOOL_QUEUE ? "waiting" : ctl_proto_state(area, env));
	ctl_proto_kvu(out, "size", env->size);
	ctl_proto_kvu(out, "arrival", (unsigned long long)env->arrival);
	ctl_proto_kv(out, "sender", env->sender);
	ctl_proto_kvu(out, "attempts", env->attempts);
	ctl_proto_kvu(out, "next_attempt",
	    (unsigned long long)env->next_attempt);
	if (env->last_reply != NULL)
		ctl_proto_kv(out, "last_reply", env->last_reply);
	if (primary_down != NULL && area == SPOOL_QUEUE) {
		ctl_proto_kv(out, "reason", "primary-down");
		ctl_proto_kv(out, "primary_reply", primary_down);
	}
	if (env->dead_reason != NULL)
		ctl_proto_kv(out, "dead_reason", env->dead_reason);
	if (env->client_addr != NULL)
		ctl_proto_kv(out, "client_addr", env->client_addr);
	ctl_proto_rcpts(out, env, 0, CTL_REC_RCPTS);
	if (env->nrcpt > CTL_REC_RCPTS)
		ctl_proto_kvu(out, "rcpt_more", env->nrcpt - CTL_REC_RCPTS);
	ctl_proto_rec_end(out);
}

struct ctl_proto_item {
	char		 id[SPOOL_ID_LEN + 1];
	struct envelope	*env;
};

struct ctl_proto_collect {
	struct ctl_proto_item	*items;
	size_t			 n;
};

static void
ctl_proto_collect_cb(void *arg, const char *id)
{
	struct ctl_proto_collect *c = arg;

	c->items = xreallocarray(c->items, c->n + 1, sizeof(*c->items));
	memset(&c->items[c->n], 0, sizeof(c->items[c->n]));
	util_copy(c->items[c->n].id, sizeof(c->items[c->n].id), id);
	c->n++;
}

static int
ctl_proto_item_cmp(const void *a, const void *b)
{
	const struct ctl_proto_item *x = a, *y = b;
	time_t tx = x->env != NULL ? x->env->arrival : 0;
	time_t ty = y->env != NULL ? y->env->arrival : 0;

	if (tx != ty)
		return tx < ty ? -1 : 1;
	return strcmp(x->id, y->id);
}

static struct envelope *
ctl_proto_env_get(struct spool *sp, enum spool_area area, const char *id)
{
	struct envelope *env;
	char *text, err[128];
	size_t len;

	if (spool_env_read(sp, area, id, &text, &len) == -1)
		return NULL;
	env = envelope_load(text, len, err, sizeof(err));
	free(text);
	return env;
}

int
ctl_proto_list(struct spool *sp, enum spool_area area, struct evbuffer *out)
{
	return ctl_proto_list_live(sp, area, out, NULL);
}

/* Every message of area with its envelope (NULL: gone meanwhile or
 * unreadable), sorted as the listings show them.  -1 if the area cannot
 * be listed (c is then empty). */
static int
ctl_proto_collect_area(struct spool *sp, enum spool_area area,
    struct ctl_proto_collect *c)
{
	size_t i;

	if (spool_list(sp, area, ctl_proto_collect_cb, c) == -1) {
		free(c->items);
		c->items = NULL;
		c->n = 0;
		return -1;
	}
	for (i = 0; i < c->n; i++)
		c->items[i].env = ctl_proto_env_get(sp, area, c->items[i].id);
	if (c->n > 0)
		qsort(c->items, c->n, sizeof(*c->items), ctl_proto_item_cmp);
	return 0;
}

int
ctl_proto_list_live(struct spool *sp, enum spool_area area,
    struct evbuffer *out, const char *primary_down)
{
	struct ctl_proto_collect c = { NULL, 0 };
	size_t i;

	if (ctl_proto_collect_area(sp, area, &c) == -1)
		return -1;
	for (i = 0; i < c.n; i++) {
		if (c.items[i].env != NULL)
			ctl_proto_env_rec_live(out, area, c.items[i].env,
			    primary_down);
		else {
			/* Gone meanwhile, or unreadable: say so. */
			ctl_proto_kv(out, "id", c.items[i].id);
			ctl_proto_kv(out, "state", "unreadable");
			ctl_proto_rec_end(out);
		}
		envelope_free(c.items[i].env);
	}
	free(c.items);
	return 0;
}

int
ctl_proto_each(struct spool *sp, enum spool_area area,
    const char *primary_down, ctl_proto_each_cb cb, void *arg)
{
	struct ctl_proto_collect c = { NULL, 0 };
	size_t i;

	if (ctl_proto_collect_area(sp, area, &c) == -1)
		return -1;
	for (i = 0; i < c.n; i++) {
		struct envelope *env = c.items[i].env;

		if (env != NULL)
			cb(arg, area, env, primary_down != NULL &&
			    area == SPOOL_QUEUE ? "waiting" :
			    ctl_proto_state(area, env));
		envelope_free(env);
	}
	free(c.items);
	return 0;
}

int
ctl_proto_show(struct spool *sp, const char *id, bool body,
    struct evbuffer *out, char *err, size_t errlen)
{
	return ctl_proto_show_live(sp, id, body, out, err, errlen, NULL);
}

int
ctl_proto_show_live(struct spool *sp, const char *id, bool body,
    struct evbuffer *out, char *err, size_t errlen, const char *primary_down)
{
	enum spool_area area;
	struct envelope *env;
	char buf[8192], *line = NULL;
	size_t cap = 0, used = 0, total = 0, r;
	int fd;

	if (spool_find(sp, id, &area) == -1) {
		snprintf(err, errlen, "no such message: %s", id);
		return -1;
	}
	if ((env = ctl_proto_env_get(sp, area, id)) == NULL) {
		snprintf(err, errlen, "cannot read the envelope of %s", id);
		return -1;
	}
	ctl_proto_env_rec_live(out, area, env, primary_down);
	/* The recipients the envelope record had no room for. */
	for (r = CTL_REC_RCPTS; r < env->nrcpt; r += CTL_REC_RCPTS) {
		ctl_proto_rcpts(out, env, r, CTL_REC_RCPTS);
		ctl_proto_rec_end(out);
	}
	envelope_free(env);
	if ((fd = spool_body_open(sp, area, id)) == -1) {
		snprintf(err, errlen, "cannot open the body of %s", id);
		return -1;
	}
	/* Line by line; stored bodies are CRLF text. */
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		size_t i;

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (i = 0; i < (size_t)n; i++) {
			if (used + 1 >= cap) {
				cap = cap == 0 ? 1024 : cap * 2;
				line = xreallocarray(line, cap, 1);
			}
			if (buf[i] != '\n' && used < CTL_LINE_MAX * 16) {
				line[used++] = buf[i];
				continue;
			}
			if (buf[i] != '\n') {
				/* Stored lines are short; split a freak one. */
				line[used++] = buf[i];
			}
			if (used > 0 && line[used - 1] == '\r')
				used--;
			line[used] = '\0';
			if (!body && used == 0)
				goto done;	/* end of the header */
			ctl_proto_kv(out, body ? "line" : "header", line);
			ctl_proto_rec_end(out);
			total += used + 2;
			used = 0;
			if (body && total > CTL_BODY_MAX) {
				ctl_proto_kv(out, "truncated", "yes");
				ctl_proto_rec_end(out);
				goto done;
			}
		}
	}
done:
	free(line);
	close(fd);
	return 0;
}
