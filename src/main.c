/*
 * main: lifecycle only.  Parses argv, loads the config, creates the event
 * loop and the modules in order (spool, workpool, queue, smtp_server), runs
 * the loop and tears down in reverse.  SIGTERM/SIGINT: stop accepting, cut
 * sessions not yet committed, let commits in flight finish, exit.
 */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include "config.h"
#include "ctl.h"
#include "dns.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "pause.h"
#include "queue.h"
#include "smtp_server.h"
#include "spool.h"
#include "tls.h"
#include "util.h"
#include "workpool.h"

#define MAIN_STOP_GRACE_SEC	10	/* for commits in flight */

struct main_ctx {
	struct event_base	*base;
	struct tls		*tls;
	struct smtp_server	*srv;
	struct queue		*queue;
	struct event		*stop_timer;
	struct event		*watchdog;
	int			 stop_ticks;
	bool			 stopping;
};

static void
main_usage(void)
{
	fprintf(stderr, "usage: holdfast -c FILE [-n] [-v]\n"
	    "       holdfast -c FILE -P [-a]   (the effective configuration: "
	    "what differs from\n"
	    "                                  the defaults; -a: every key)\n"
	    "       holdfast -k   (list configuration keys)\n"
	    "       holdfast -V   (version)\n");
	exit(2);
}

static bool main_healthy(void *arg);

/*
 * holdfast -n past the config: the [tls] pair.  One that cannot be opened
 * is a warning (the daemon runs without STARTTLS until a SIGHUP finds it,
 * as before certbot's first run); one that does not load is an error.
 * Takes ownership of cf.
 */
static int
main_check(const char *path, struct config *cf)
{
	char err[512];
	int rc = 0;

	switch (tls_check(cf, err, sizeof(err))) {
	case TLS_CHECK_OK:
		break;
	case TLS_CHECK_MISSING:
		fprintf(stderr, "%s: warning: [tls] cannot open %s; STARTTLS off "
		    "until the pair exists and holdfast gets SIGHUP\n", path,
		    err);
		break;
	case TLS_CHECK_INVALID:
		fprintf(stderr, "%s: [tls] cert=%s key=%s do not load: %s\n",
		    path, cf->tls_cert, cf->tls_key, err);
		rc = 1;
		break;
	}
	config_free(cf);
	return rc;
}

/* Who a root start becomes: [server] user and group. */
struct main_creds {
	bool		 drop;		/* started as root */
	uid_t		 uid;
	gid_t		 gid;
};

static void
main_creds_get(const struct config *cf, struct main_creds *mc)
{
	struct passwd *pw;
	struct group *gr;

	mc->drop = geteuid() == 0;
	mc->uid = geteuid();
	mc->gid = getegid();
	if (!mc->drop)
		return;
	if ((pw = getpwnam(cf->user)) == NULL)
		fatalx("[server] user %s does not exist", cf->user);
	if ((gr = getgrnam(cf->group)) == NULL)
		fatalx("[server] group %s does not exist", cf->group);
	if (pw->pw_uid == 0)
		fatalx("[server] user must not be root");
	mc->uid = pw->pw_uid;
	mc->gid = gr->gr_gid;
}

/*
 * Started as root: everything privileged (ports, the control socket) is
 * done, so become [server] user/group for good.  Not root: nothing to do.
 */
static void
main_drop_privileges(const struct config *cf, const struct main_creds *mc)
{
	if (!mc->drop)
		return;
	if (setgroups(1, &mc->gid) == -1 ||
	    setresgid(mc->gid, mc->gid, mc->gid) == -1 ||
	    setresuid(mc->uid, mc->uid, mc->uid) == -1)
		fatal("cannot drop privileges to %s:%s", cf->user, cf->group);
	if (setuid(0) != -1 || seteuid(0) != -1)
		fatalx("privileges could be regained");
	log_info("privileges dropped user=%s uid=%u gid=%u", cf->user,
	    (unsigned)mc->uid, (unsigned)mc->gid);
}

static void
main_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	/* The loop turns: that is what the watchdog wants to know. */
	if (main_healthy(arg))
		util_sd_notify("WATCHDOG=1");
}

/* WatchdogSec= in the unit: ping at half the interval. */
static void
main_watchdog_start(struct main_ctx *ctx)
{
	const char *usec = getenv("WATCHDOG_USEC");
	uint64_t us;
	struct timeval tv;

	if (usec == NULL || util_parse_u64(usec, &us) == -1 || us == 0)
		return;
	us /= 2;
	tv.tv_sec = (time_t)(us / 1000000);
	tv.tv_usec = (suseconds_t)(us % 1000000);
	ctx->watchdog = event_new(ctx->base, -1, EV_PERSIST, main_watchdog_cb,
	    ctx);
	if (ctx->watchdog == NULL || event_add(ctx->watchdog, &tv) == -1)
		fatalx("watchdog timer");
}

/* /healthz: listeners up and the spool usable. */
/* A peer-triggerable log line over its rate limit: count it. */
static void
main_log_suppressed(void)
{
	metrics_inc(M_LOG_SUPPRESSED);
}

static bool
main_healthy(void *arg)
{
	struct main_ctx *ctx = arg;

	return !ctx->stopping && queue_is_healthy(ctx->queue);
}

static void
main_stop_check_cb(evutil_socket_t fd, short what, void *arg)
{
	struct main_ctx *ctx = arg;

	(void)fd;
	(void)what;
	if (smtp_server_sessions(ctx->srv) == 0 ||
	    ++ctx->stop_ticks > MAIN_STOP_GRACE_SEC * 10)
		event_base_loopexit(ctx->base, NULL);
}

static void
main_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct main_ctx *ctx = arg;
	struct timeval tv = { 0, 100 * 1000 };

	(void)what;
	if (sig == SIGHUP) {
		log_info("SIGHUP: reloading the TLS certificate");
		util_sd_notify("RELOADING=1");
		tls_reload(ctx->tls);
		util_sd_notify("READY=1");
		return;
	}
	if (ctx->stopping)
		return;
	ctx->stopping = true;
	util_sd_notify("STOPPING=1");
	log_info("holdfast stopping signal=%d", (int)sig);
	smtp_server_stop(ctx->srv);
	queue_stop(ctx->queue);
	ctx->stop_timer = event_new(ctx->base, -1, EV_PERSIST,
	    main_stop_check_cb, ctx);
	event_add(ctx->stop_timer, &tv);
}

/* What the command line asks for. */
struct main_opts {
	const char	*path;		/* -c */
	bool		 check_only;	/* -n */
	bool		 verbose;	/* -v */
	bool		 print_conf;	/* -P */
	bool		 print_all;	/* -a, with -P only */
};

/* Parse argv into o; -k and -V are answered here and exit. */
static void
main_args(int argc, char **argv, struct main_opts *o)
{
	int ch;

	memset(o, 0, sizeof(*o));
	while ((ch = getopt(argc, argv, "ac:nPvkV")) != -1) {
		switch (ch) {
		case 'c':
			o->path = optarg;
			break;
		case 'n':
			o->check_only = true;
			break;
		case 'P':
			o->print_conf = true;
			break;
		case 'a':
			o->print_all = true;
			break;
		case 'v':
			o->verbose = true;
			break;
		case 'k':
			config_print_keys();
			exit(0);
		case 'V':
			printf("holdfast %s\n", HOLDFAST_VERSION);
			exit(0);
		default:
			main_usage();
		}
	}
	if (o->path == NULL || optind != argc)
		main_usage();
}

/*
 * Startup in the order the modules depend on each other, the loop, then
 * teardown in reverse.  It stays one function on purpose: the order of
 * creation (and of the privilege drop within it) is the thing to read,
 * and each step is one call.
 */
int
main(int argc, char **argv)
{
	struct main_opts o;
	struct main_ctx ctx = { 0 };
	struct main_creds mc;
	struct event *sigs[3];
	static const int signums[3] = { SIGTERM, SIGINT, SIGHUP };
	struct config *cf;
	struct spool *sp;
	struct workpool *wp;
	struct dns *dns;
	struct ctl *ctl;
	struct notify *notify;
	struct pause *pause;
	char err[512];
	int i;

	main_args(argc, argv, &o);
	log_init(o.verbose);
	if ((cf = config_load(o.path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (o.print_conf) {
		config_print(cf, o.print_all);
		config_free(cf);
		return 0;
	}
	if (o.print_all)
		main_usage();
	if (o.check_only)
		return main_check(o.path, cf);
	signal(SIGPIPE, SIG_IGN);
	umask(077);
	if (evthread_use_pthreads() == -1)
		fatalx("libevent threads");
	if ((ctx.base = event_base_new()) == NULL)
		fatalx("event_base_new");
	log_limit_start(ctx.base);
	log_limit_set_hook(main_log_suppressed);
	/*
	 * As root, nothing in the spool is trusted that its user could
	 * redirect (spool_open_owned), and the scan, which purges tmp/, runs
	 * only after the drop.  The spool's lock comes first: a second daemon
	 * stops here, before it reads or changes anything.
	 */
	main_creds_get(cf, &mc);
	sp = mc.drop ? spool_open_owned(cf->spool_dir, mc.uid, mc.gid) :
	    spool_open(cf->spool_dir);
	if (sp == NULL)
		fatalx("cannot open spool %s", cf->spool_dir);
	wp = workpool_new(ctx.base, cf->commit_workers);
	if ((dns = dns_new(ctx.base, NULL)) == NULL)
		fatalx("cannot set up the resolver");
	if ((ctx.tls = tls_new(cf)) == NULL)
		fatalx("cannot set up TLS");
	ctx.queue = queue_new(ctx.base, cf, sp, wp, dns, ctx.tls);
	metrics_add_queue(ctx.queue);
	if ((ctx.srv = smtp_server_new(ctx.base, cf, sp, ctx.queue, dns,
	    ctx.tls)) == NULL)
		fatalx("cannot set up listeners");
	for (i = 0; i < 3; i++) {
		sigs[i] = evsignal_new(ctx.base, signums[i], main_signal_cb,
		    &ctx);
		if (sigs[i] == NULL || event_add(sigs[i], NULL) == -1)
			fatalx("signal handler");
	}
	if ((ctl = ctl_new(ctx.base, cf, ctx.queue, sp, mc.uid)) == NULL)
		fatalx("cannot set up the control socket");
	metrics_set(M_BUILD_INFO, 1);
	metrics_set(M_START_TIME, (double)time(NULL));
	metrics_set_health(main_healthy, &ctx);
	if (metrics_start(ctx.base, cf) == -1)
		fatalx("cannot set up the metrics listener");
	main_drop_privileges(cf, &mc);
	if (queue_load(ctx.queue) == -1)
		fatalx("spool scan failed");
	/* after the drop: its state file is in the spool */
	pause = pause_new(sp);
	smtp_server_set_pause(ctx.srv, pause);
	ctl_set_pause(ctl, pause);
	ctl_set_smtp(ctl, ctx.srv);
	ctl_set_workpool(ctl, wp);
	notify = notify_new(ctx.base, cf);
	queue_set_notify(ctx.queue, notify);
	queue_start(ctx.queue);
	log_info("holdfast ready version=%s hostname=%s spool=%s",
	    HOLDFAST_VERSION, cf->hostname, cf->spool_dir);
	util_sd_notify("READY=1");
	main_watchdog_start(&ctx);
	event_base_dispatch(ctx.base);

	metrics_stop();
	ctl_free(ctl);
	/* Commits still in flight finish here; their sessions are gone. */
	workpool_free(wp);
	smtp_server_free(ctx.srv);
	queue_free(ctx.queue);
	pause_free(pause);
	notify_free(notify);
	dns_free(dns);
	tls_free(ctx.tls);
	for (i = 0; i < 3; i++)
		event_free(sigs[i]);
	if (ctx.stop_timer != NULL)
		event_free(ctx.stop_timer);
	if (ctx.watchdog != NULL)
		event_free(ctx.watchdog);
	spool_close(sp);
	log_limit_stop();
	event_base_free(ctx.base);
	log_info("holdfast stopped");
	config_free(cf);
	return 0;
}
