#include "notify.h"

#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "util.h"
#include "xmalloc.h"

#define NOTIFY_OUTPUT_MAX	400	/* output kept for the log */
#define NOTIFY_POLL_MSEC	200	/* exit polling without a pidfd */
#define NOTIFY_PATH		"PATH=/usr/local/bin:/usr/bin:/bin"

static const char *const notify_event_names[NOTIFY_EVENT_COUNT] = {
	[NOTIFY_PRIMARY_DOWN] = "primary-down",
	[NOTIFY_PRIMARY_DRAINED] = "primary-drained",
	[NOTIFY_DEAD_LETTER] = "dead-letter",
	[NOTIFY_SPOOL_LOW] = "spool-low",
	[NOTIFY_HOLD_MODE_ON] = "hold-mode-on",
	[NOTIFY_HOLD_MODE_OFF] = "hold-mode-off",
	[NOTIFY_CERT_EXPIRY] = "cert-expiry",
};

/* One event waiting for (or given to) the program: its environment. */
struct notify_item {
	enum notify_event	 ev;
	char			**envp;	/* NULL-terminated, owned */
};

struct notify {
	struct event_base	*base;
	const struct config	*cf;
	char			**argv;	/* words of [notify] exec */
	struct notify_item	*waiting[NOTIFY_QUEUE_MAX];
	size_t			 head, nwaiting;
	/* the running program; pid 0 when none */
	struct notify_item	*running;
	pid_t			 pid;
	int			 pidfd;	/* -1: polled instead */
	int			 outfd;	/* stdout+stderr, or -1 */
	struct event		*exit_ev, *out_ev, *timer;
	char			 out[NOTIFY_OUTPUT_MAX];
	size_t			 outlen;
	bool			 timed_out;
	struct timespec		 started;
	/* rate limit per event */
	time_t			 last[NOTIFY_EVENT_COUNT];
	bool			 ever[NOTIFY_EVENT_COUNT];
	unsigned long		 suppressed[NOTIFY_EVENT_COUNT];
};

static void notify_start(struct notify *n);

/* Free the running program's events and close its descriptors (the
 * program itself is reaped or killed by the caller). */
static void
notify_release(struct notify *n)
{
	if (n->exit_ev != NULL)
		event_free(n->exit_ev);
	if (n->out_ev != NULL)
		event_free(n->out_ev);
	if (n->timer != NULL)
		event_free(n->timer);
	n->exit_ev = n->out_ev = n->timer = NULL;
	if (n->pidfd != -1)
		close(n->pidfd);
	if (n->outfd != -1)
		close(n->outfd);
	n->pidfd = n->outfd = -1;
}

const char *
notify_event_name(enum notify_event ev)
{
	if ((unsigned)ev >= NOTIFY_EVENT_COUNT)
		fatalx("%s: bad event %u", __func__, (unsigned)ev);
	return notify_event_names[ev];
}

static void
notify_item_free(struct notify_item *it)
{
	size_t i;

	if (it == NULL)
		return;
	for (i = 0; it->envp[i] != NULL; i++)
		free(it->envp[i]);
	free(it->envp);
	free(it);
}

struct notify *
notify_new(struct event_base *base, const struct config *cf)
{
	struct notify *n;
	char *copy, *p, *w;
	size_t argc = 0;

	if (*cf->notify_exec == '\0')
		return NULL;
	n = xcalloc(1, sizeof(*n));
	n->base = base;
	n->cf = cf;
	n->pidfd = n->outfd = -1;
	copy = xstrdup(cf->notify_exec);
	p = copy;
	while ((w = strsep(&p, " \t")) != NULL) {
		if (*w == '\0')
			continue;
		n->argv = xreallocarray(n->argv, argc + 2, sizeof(*n->argv));
		n->argv[argc++] = xstrdup(w);
		n->argv[argc] = NULL;
	}
	free(copy);
	/* config checked it is an absolute path; warn if unusable now. */
	if (access(n->argv[0], X_OK) == -1)
		log_warn("notify: %s is not executable; notices will fail",
		    n->argv[0]);
	return n;
}

/* Done with the running program: log, count, start the next one. */
static void
notify_finish(struct notify *n, int status)
{
	struct timespec now;
	char esc[LOG_ESCAPE_MAX], how[32];
	const char *ev = notify_event_name(n->running->ev);
	double secs;
	ssize_t r;

	/* Whatever output is left in the pipe now. */
	while (n->outfd != -1 && n->outlen < sizeof(n->out) &&
	    (r = read(n->outfd, n->out + n->outlen,
	    sizeof(n->out) - n->outlen)) > 0)
		n->outlen += (size_t)r;
	clock_gettime(CLOCK_MONOTONIC, &now);
	secs = (double)(now.tv_sec - n->started.tv_sec) +
	    (double)(now.tv_nsec - n->started.tv_nsec) / 1e9;
	while (n->outlen > 0 && (n->out[n->outlen - 1] == '\n' ||
	    n->out[n->outlen - 1] == '\r'))
		n->outlen--;
	log_escape(n->out, n->outlen, esc, sizeof(esc));
	if (WIFEXITED(status))
		snprintf(how, sizeof(how), "exit:%d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(how, sizeof(how), "signal:%d", WTERMSIG(status));
	else
		snprintf(how, sizeof(how), "status:%d", status);
	if (n->timed_out) {
		metrics_inc(M_NOTIFY_TIMEOUT);
		log_warnx("notify failed event=%s reason=timeout "
		    "timeout=%" PRIu64 "s output=%s", ev,
		    n->cf->notify_timeout, esc);
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		metrics_inc(M_NOTIFY_OK);
		log_info("notify sent event=%s duration=%.1fs", ev, secs);
	} else {
		metrics_inc(M_NOTIFY_FAILED);
		log_warnx("notify failed event=%s status=%s duration=%.1fs "
		    "output=%s", ev, how, secs, esc);
	}
	notify_release(n);
	n->pid = 0;
	notify_item_free(n->running);
	n->running = NULL;
	notify_start(n);
}

static void
notify_exit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct notify *n = arg;
	int status;
	pid_t r;

	(void)fd;
	(void)what;
	r = waitpid(n->pid, &status, WNOHANG);
	if (r == 0)
		return;		/* polled: still running */
	if (r == -1) {
		log_warn("notify: waitpid %ld", (long)n->pid);
		status = 0x7f00;	/* exit 127: unknown */
	}
	notify_finish(n, status);
}

static void
notify_out_cb(evutil_socket_t fd, short what, void *arg)
{
	struct notify *n = arg;
	char sink[512];
	ssize_t r;

	(void)what;
	/* Keep the beginning; drain the rest so the program never blocks. */
	if (n->outlen < sizeof(n->out))
		r = read(fd, n->out + n->outlen, sizeof(n->out) - n->outlen);
	else
		r = read(fd, sink, sizeof(sink));
	if (r > 0) {
		if (n->outlen < sizeof(n->out))
			n->outlen += (size_t)r;
		return;
	}
	if (r == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	event_del(n->out_ev);		/* EOF or error: stop reading */
}

static void
notify_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct notify *n = arg;

	(void)fd;
	(void)what;
	if (n->pid <= 0)
		return;
	n->timed_out = true;
	/* The whole group: a script's curl goes with it. */
	if (kill(-n->pid, SIGKILL) == -1 && kill(n->pid, SIGKILL) == -1)
		log_warn("notify: kill %ld", (long)n->pid);
}

/*
 * posix_spawn the program for n->running: stdin /dev/null, stdout and
 * stderr into outfd, no other descriptor, default signal handling, its
 * own process group (so a timeout kills the whole group).  0 or an errno.
 */
static int
notify_spawn(struct notify *n, int outfd, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, dfl;
	int rc;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, outfd, 1);
	posix_spawn_file_actions_adddup2(&fa, outfd, 2);
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGHUP);
	sigaddset(&dfl, SIGCHLD);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
	    POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	rc = posix_spawn(pid, n->argv[0], &fa, &attr, n->argv,
	    n->running->envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	return rc;
}

/*
 * Watch the started program: its exit (a pidfd, or a poll every
 * NOTIFY_POLL_MSEC on kernels without one), its output and its
 * [notify] timeout.
 */
static void
notify_watch(struct notify *n)
{
	struct timeval tv;

	n->pidfd = (int)syscall(SYS_pidfd_open, n->pid, 0);
	if (n->pidfd != -1) {
		n->exit_ev = event_new(n->base, n->pidfd, EV_READ,
		    notify_exit_cb, n);
		if (n->exit_ev == NULL || event_add(n->exit_ev, NULL) == -1)
			fatalx("notify: exit event");
	} else {
		/* No pidfd (kernel < 5.3): look every NOTIFY_POLL_MSEC. */
		tv.tv_sec = 0;
		tv.tv_usec = NOTIFY_POLL_MSEC * 1000;
		n->exit_ev = event_new(n->base, -1, EV_PERSIST,
		    notify_exit_cb, n);
		if (n->exit_ev == NULL || event_add(n->exit_ev, &tv) == -1)
			fatalx("notify: exit poll");
	}
	n->out_ev = event_new(n->base, n->outfd, EV_READ | EV_PERSIST,
	    notify_out_cb, n);
	tv.tv_sec = (time_t)n->cf->notify_timeout;
	tv.tv_usec = 0;
	n->timer = evtimer_new(n->base, notify_timeout_cb, n);
	if (n->out_ev == NULL || event_add(n->out_ev, NULL) == -1 ||
	    n->timer == NULL || evtimer_add(n->timer, &tv) == -1)
		fatalx("notify: events");
}

/* Run the program for the next waiting event, if none is running. */
static void
notify_start(struct notify *n)
{
	int pipefd[2] = { -1, -1 }, rc;
	pid_t pid;

	if (n->pid != 0 || n->nwaiting == 0)
		return;
	n->running = n->waiting[n->head];
	n->waiting[n->head] = NULL;
	n->head = (n->head + 1) % NOTIFY_QUEUE_MAX;
	n->nwaiting--;
	n->outlen = 0;
	n->timed_out = false;
	if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) == -1) {
		log_warn("notify: pipe");
		goto fail;
	}
	rc = notify_spawn(n, pipefd[1], &pid);
	close(pipefd[1]);
	if (rc != 0) {
		errno = rc;
		log_warn("notify failed event=%s: cannot run %s",
		    notify_event_name(n->running->ev), n->argv[0]);
		goto fail;
	}
	n->pid = pid;
	n->outfd = pipefd[0];
	clock_gettime(CLOCK_MONOTONIC, &n->started);
	notify_watch(n);
	log_debug("notify started event=%s pid=%ld",
	    notify_event_name(n->running->ev), (long)pid);
	return;
fail:
	if (pipefd[0] != -1)
		close(pipefd[0]);
	metrics_inc(M_NOTIFY_FAILED);
	notify_item_free(n->running);
	n->running = NULL;
	/* Try the next one; each failure consumes its event, so this ends. */
	notify_start(n);
}

void
notify_send(struct notify *n, enum notify_event ev, const char *summary,
    const struct notify_var *vars, size_t nvars)
{
	struct notify_item *it;
	const char *name = notify_event_name(ev);
	time_t now = time(NULL);
	size_t i, k = 0;

	if (n == NULL)
		return;
	if (n->ever[ev] && now - n->last[ev] <
	    (time_t)n->cf->notify_repeat_interval) {
		n->suppressed[ev]++;
		metrics_inc(M_NOTIFY_SUPPRESSED);
		log_info("notify suppressed event=%s reason=repeat", name);
		return;
	}
	if (n->nwaiting == NOTIFY_QUEUE_MAX) {
		metrics_inc(M_NOTIFY_DROPPED);
		log_warnx("notify dropped event=%s reason=\"%d events "
		    "waiting\"", name, NOTIFY_QUEUE_MAX);
		return;
	}
	if (nvars > NOTIFY_VARS_MAX)
		fatalx("%s: %zu variables", __func__, nvars);
	it = xcalloc(1, sizeof(*it));
	it->ev = ev;
	it->envp = xcalloc(7 + nvars, sizeof(*it->envp));
	xasprintf(&it->envp[k++], "HOLDFAST_EVENT=%s", name);
	xasprintf(&it->envp[k++], "HOLDFAST_SUMMARY=%s", summary);
	xasprintf(&it->envp[k++], "HOLDFAST_HOSTNAME=%s", n->cf->hostname);
	xasprintf(&it->envp[k++], "HOLDFAST_TIME=%lld", (long long)now);
	xasprintf(&it->envp[k++], "HOLDFAST_SUPPRESSED=%lu",
	    n->suppressed[ev]);
	it->envp[k++] = xstrdup(NOTIFY_PATH);
	for (i = 0; i < nvars; i++)
		xasprintf(&it->envp[k++], "HOLDFAST_%s=%s", vars[i].name,
		    vars[i].value);
	it->envp[k] = NULL;
	n->ever[ev] = true;
	n->last[ev] = now;
	n->suppressed[ev] = 0;
	n->waiting[(n->head + n->nwaiting) % NOTIFY_QUEUE_MAX] = it;
	n->nwaiting++;
	log_info("notify queued event=%s summary=\"%s\"", name, summary);
	notify_start(n);
}

void
notify_free(struct notify *n)
{
	size_t i;

	if (n == NULL)
		return;
	if (n->pid > 0) {
		/* Killed: its exit is immediate, so this wait is short. */
		if (kill(-n->pid, SIGKILL) == -1)
			kill(n->pid, SIGKILL);
		while (waitpid(n->pid, NULL, 0) == -1 && errno == EINTR)
			;
		log_info("notify killed event=%s reason=shutdown",
		    notify_event_name(n->running->ev));
	}
	notify_release(n);
	notify_item_free(n->running);
	for (i = 0; i < NOTIFY_QUEUE_MAX; i++)
		notify_item_free(n->waiting[i]);
	for (i = 0; n->argv[i] != NULL; i++)
		free(n->argv[i]);
	free(n->argv);
	free(n);
}
