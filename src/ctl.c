#include "ctl.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <grp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "ctl_proto.h"
#include "log.h"
#include "queue.h"
#include "spool.h"
#include "util.h"
#include "xmalloc.h"

#define CTL_TIMEOUT_SEC	30
#define CTL_MAX_CONNS	16

struct ctl {
	struct event_base	*base;
	const struct config	*cf;
	struct queue		*queue;
	struct spool		*spool;
	struct evconnlistener	*listener;
	char			*path;
	gid_t			 gid;		/* -1: none */
	TAILQ_HEAD(, ctl_conn)	 conns;
	size_t			 nconns;
};

struct ctl_conn {
	struct ctl		*ctl;
	struct bufferevent	*bev;
	uid_t			 uid;
	bool			 done;
	TAILQ_ENTRY(ctl_conn)	 entry;
};

struct ctl_command {
	const char	*name;
	int		 min_args, max_args;	/* after the name */
	int		(*handler)(struct ctl_conn *, int, char **,
			    struct evbuffer *, char *, size_t);
	const char	*help;
};

/* Per-ID actions: run fn on each, collect failures into err. */
static int
ctl_each_id(struct ctl_conn *c, int argc, char **argv, const char *verb,
    int (*fn)(struct queue *, const char *), bool all_ok, char *err,
    size_t errlen)
{
	size_t used = 0;
	int i, failed = 0;

	for (i = 1; i < argc; i++) {
		const char *id = argv[i];

		if (all_ok && strcmp(id, "all") == 0)
			id = NULL;
		if (fn(c->ctl->queue, id) == -1) {
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
		if (ctl_proto_list(c->ctl->spool, areas[i], out) == -1) {
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
	bool body = argc == 3 && strcmp(argv[2], "--body") == 0;

	if (argc == 3 && !body) {
		snprintf(err, errlen, "usage: show ID [--body]");
		return -1;
	}
	return ctl_proto_show(c->ctl->spool, argv[1], body, out, err, errlen);
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
	return ctl_each_id(c, argc, argv, "flush", queue_flush, false, err,
	    errlen);
}

static int
ctl_cmd_hold(struct ctl_conn *c, int argc, char **argv, struct evbuffer *out,
    char *err, size_t errlen)
{
	(void)out;
	return ctl_each_id(c, argc, argv, "hold", queue_hold, true, err,
	    errlen);
}

static int
ctl_cmd_release(struct ctl_conn *c, int argc, char **argv,
    struct evbuffer *out, char *err, size_t errlen)
{
	(void)out;
	return ctl_each_id(c, argc, argv, "release", queue_release, true, err,
	    errlen);
}

static int
ctl_cmd_delete(struct ctl_conn *c, int argc, char **argv,
    struct evbuffer *out, char *err, size_t errlen)
{
	(void)out;
	return ctl_each_id(c, argc, argv, "delete", queue_delete, false, err,
	    errlen);
}

static int
ctl_cmd_requeue(struct ctl_conn *c, int argc, char **argv,
    struct evbuffer *out, char *err, size_t errlen)
{
	(void)out;
	return ctl_each_id(c, argc, argv, "requeue", queue_requeue, false, err,
	    errlen);
}

static int
ctl_cmd_hold_mode(struct ctl_conn *c, int argc, char **argv,
    struct evbuffer *out, char *err, size_t errlen)
{
	uint64_t secs = 86400;

	(void)out;
	if (strcmp(argv[1], "off") == 0 && argc == 2) {
		log_info("ctl hold-mode off uid=%u", (unsigned)c->uid);
		return queue_hold_mode_set(c->ctl->queue, false, 0);
	}
	if (strcmp(argv[1], "on") != 0 || (argc != 2 && argc != 4) ||
	    (argc == 4 && (strcmp(argv[2], "--for") != 0 ||
	    util_parse_duration(argv[3], &secs) == -1 || secs == 0))) {
		snprintf(err, errlen, "usage: hold-mode on [--for DURATION] | "
		    "hold-mode off");
		return -1;
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

static int
ctl_cmd_status(struct ctl_conn *c, int argc, char **argv,
    struct evbuffer *out, char *err, size_t errlen)
{
	(void)argc;
	(void)argv;
	(void)err;
	(void)errlen;
	queue_status(c->ctl->queue, out);
	return 0;
}

static const struct ctl_command ctl_commands[] = {
	{ "queue", 0, 0, ctl_cmd_queue, "list every message" },
	{ "show", 1, 2, ctl_cmd_show, "ID [--body]: envelope and headers" },
	{ "flush", 0, CTL_ARGS_MAX - 1, ctl_cmd_flush,
	  "[ID...]: try now (no ID: all, and probe the primary)" },
	{ "hold", 1, CTL_ARGS_MAX - 1, ctl_cmd_hold, "ID...|all" },
	{ "release", 1, CTL_ARGS_MAX - 1, ctl_cmd_release, "ID...|all" },
	{ "delete", 1, CTL_ARGS_MAX - 1, ctl_cmd_delete, "ID..." },
	{ "dead", 0, 0, ctl_cmd_dead, "list dead letters" },
	{ "requeue", 1, CTL_ARGS_MAX - 1, ctl_cmd_requeue, "ID..." },
	{ "hold-mode", 1, 3, ctl_cmd_hold_mode,
	  "on [--for DURATION] | off" },
	{ "status", 0, 0, ctl_cmd_status, "daemon and queue state" },
};

static void
ctl_conn_free(struct ctl_conn *c)
{
	TAILQ_REMOVE(&c->ctl->conns, c, entry);
	c->ctl->nconns--;
	bufferevent_free(c->bev);
	free(c);
}

static void
ctl_request(struct ctl_conn *c, char *line)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct evbuffer *body = evbuffer_new();
	char *argv[CTL_ARGS_MAX], err[1024] = "";
	const struct ctl_command *cmd = NULL;
	int argc, rc = -1;
	size_t i;

	if (body == NULL)
		fatalx("evbuffer_new");
	argc = ctl_proto_split(line, argv, CTL_ARGS_MAX);
	if (argc <= 0)
		snprintf(err, sizeof(err), "empty or overlong request");
	else {
		for (i = 0; i < UTIL_ARRAY_LEN(ctl_commands); i++)
			if (strcmp(ctl_commands[i].name, argv[0]) == 0)
				cmd = &ctl_commands[i];
		if (cmd == NULL)
			snprintf(err, sizeof(err), "unknown command %.64s",
			    argv[0]);
		else if (argc - 1 < cmd->min_args ||
		    argc - 1 > cmd->max_args)
			snprintf(err, sizeof(err), "usage: %s %s", cmd->name,
			    cmd->help);
		else {
			rc = cmd->handler(c, argc, argv, body, err,
			    sizeof(err));
			if (rc == -1 && err[0] == '\0')
				snprintf(err, sizeof(err), "%s",
				    strerror(errno));
		}
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

static void
ctl_read_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line;

	if (c->done)
		return;
	line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
	if (line == NULL) {
		if (evbuffer_get_length(in) > CTL_LINE_MAX) {
			evbuffer_add_printf(bufferevent_get_output(bev),
			    "error request too long\n.\n");
			c->done = true;
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
}

static void
ctl_write_cb(struct bufferevent *bev, void *arg)
{
	struct ctl_conn *c = arg;

	if (c->done && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		ctl_conn_free(c);
}

static void
ctl_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	ctl_conn_free(arg);
}

/*
 * Whether gid is among the peer's supplementary groups: members added with
 * `adduser alice holdfast` have the control group only there, not as their
 * primary group (which is all SO_PEERCRED tells).
 */
static bool
ctl_peer_has_group(int fd, gid_t gid)
{
	gid_t small[64], *groups = small;
	socklen_t len = sizeof(small), i;
	bool found = false;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == -1) {
		if (errno != ERANGE || len == 0)
			return false;
		groups = xmalloc(len);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups,
		    &len) == -1) {
			free(groups);
			return false;
		}
	}
	for (i = 0; i < len / sizeof(*groups); i++)
		if (groups[i] == gid)
			found = true;
	if (groups != small)
		free(groups);
	return found;
}

static bool
ctl_peer_ok(struct ctl *ctl, int fd, uid_t *uid)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1)
		return false;
	*uid = cred.uid;
	if (cred.uid == 0 || cred.uid == geteuid())
		return true;
	return ctl->gid != (gid_t)-1 && (cred.gid == ctl->gid ||
	    ctl_peer_has_group(fd, ctl->gid));
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
		log_warnx("ctl refused uid=%d reason=%s", (int)uid,
		    ctl->nconns >= CTL_MAX_CONNS ? "busy" : "credentials");
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
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

struct ctl *
ctl_new(struct event_base *base, const struct config *cf, struct queue *q,
    struct spool *sp)
{
	struct ctl *ctl = xcalloc(1, sizeof(*ctl));
	struct sockaddr_un sun;
	struct stat st;

	ctl->base = base;
	ctl->cf = cf;
	ctl->queue = q;
	ctl->spool = sp;
	ctl->gid = (gid_t)-1;
	ctl->path = xstrdup(cf->control_socket);
	TAILQ_INIT(&ctl->conns);
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
	/* A socket left by a previous run is stale: we hold the spool. */
	if (lstat(ctl->path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(ctl->path);
	ctl->listener = evconnlistener_new_bind(base, ctl_accept_cb, ctl,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
	    (struct sockaddr *)&sun, sizeof(sun));
	if (ctl->listener == NULL) {
		log_warn("control socket %s", ctl->path);
		goto fail;
	}
	if (chmod(ctl->path, 0660) == -1 || (ctl->gid != (gid_t)-1 &&
	    chown(ctl->path, (uid_t)-1, ctl->gid) == -1)) {
		log_warn("control socket %s permissions", ctl->path);
		goto fail;
	}
	log_info("control socket listening path=%s", ctl->path);
	return ctl;
fail:
	ctl_free(ctl);
	return NULL;
}

void
ctl_free(struct ctl *ctl)
{
	if (ctl == NULL)
		return;
	while (!TAILQ_EMPTY(&ctl->conns))
		ctl_conn_free(TAILQ_FIRST(&ctl->conns));
	if (ctl->listener != NULL) {
		evconnlistener_free(ctl->listener);
		unlink(ctl->path);
	}
	free(ctl->path);
	free(ctl);
}
