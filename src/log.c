#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static bool log_verbose;
static uint64_t log_suppressed;		/* all sites, since start */
static struct log_limit *log_limit_pending;
static struct event *log_limit_timer;
static void (*log_limit_hook)(void);
static bool log_journal;	/* stderr is systemd's journal */

static void log_vline(const char *level, const char *fmt, va_list ap,
    int errnum) __attribute__((format(printf, 2, 0)));

/* sd-daemon(3) priority prefixes for the journal, by level name. */
static int
log_priority(const char *level)
{
	switch (level[0]) {
	case 'f':
		return 2;	/* crit */
	case 'w':
		return 4;	/* warning */
	case 'd':
		return 7;	/* debug */
	default:
		return 6;	/* info */
	}
}

/*
 * The "YYYY-MM-DDTHH:MM:SS" of now, formatted once a second per thread
 * (gmtime and strftime cost more than the rest of a line); 19 bytes.
 */
static const char *
log_stamp(time_t sec)
{
	static _Thread_local time_t cached = -1;
	static _Thread_local char ts[32];
	struct tm tm;

	if (sec != cached) {
		gmtime_r(&sec, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
		cached = sec;
	}
	return ts;
}

/* The whole line in one write(2), as stdio's line buffer wrote it: lines
 * from several threads never mix, and none waits in a buffer. */
static void
log_write(const char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		if ((n = write(STDERR_FILENO, buf, len)) <= 0) {
			if (n == -1 && errno == EINTR)
				continue;
			return;		/* nowhere to say it */
		}
		buf += n;
		len -= (size_t)n;
	}
}

/*
 * One line: "<stamp>.<ms>Z <level> <message>[: <strerror>]\n", or for
 * the journal "<<priority>><message>[: <strerror>]\n".  The message is
 * formatted once, in place, truncated to LOG_MSG_MAX - 1 bytes.
 */
#define LOG_MSG_MAX	2048
static void
log_vline(const char *level, const char *fmt, va_list ap, int errnum)
{
	char line[64 + LOG_MSG_MAX + 256];
	struct timespec now;
	size_t off, room;
	int n;

	if (log_journal) {
		/* The journal stamps lines itself and reads the level. */
		n = snprintf(line, 64, "<%d>", log_priority(level));
	} else {
		clock_gettime(CLOCK_REALTIME, &now);
		n = snprintf(line, 64, "%s.%03ldZ %s ", log_stamp(now.tv_sec),
		    now.tv_nsec / 1000000, level);
	}
	off = n > 0 && n < 64 ? (size_t)n : 0;
	n = vsnprintf(line + off, LOG_MSG_MAX, fmt, ap);
	if (n > 0)
		off += (size_t)n < LOG_MSG_MAX ? (size_t)n : LOG_MSG_MAX - 1;
	room = sizeof(line) - off - 1;		/* the newline */
	if (errnum != 0) {
		n = snprintf(line + off, room, ": %s", strerror(errnum));
		if (n > 0)
			off += (size_t)n < room ? (size_t)n : room - 1;
	}
	line[off++] = '\n';
	log_write(line, off);
}

static void
log_event_cb(int severity, const char *msg)
{
	/* libevent's own warnings can follow a peer's actions too */
	static struct log_limit ll = LOG_LIMIT_INIT("libevent");

	if (severity == EVENT_LOG_DEBUG && !log_verbose)
		return;
	if (!log_limit_ok(&ll))
		return;
	log_warnx("libevent severity=%d msg=\"%s\"", severity, msg);
}

static void
log_event_fatal_cb(int err)
{
	fatalx("libevent fatal error %d", err);
}

void
log_init(bool verbose)
{
	log_verbose = verbose;
	log_journal = getenv("JOURNAL_STREAM") != NULL;
	/* log lines are written directly (log_write); anything else on
	 * stderr still goes out line by line */
	setvbuf(stderr, NULL, _IOLBF, 0);
	event_set_log_callback(log_event_cb);
	event_set_fatal_callback(log_event_fatal_cb);
}

bool
log_is_verbose(void)
{
	return log_verbose;
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vline("info", fmt, ap, 0);
	va_end(ap);
}

void
log_warn(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vline("warn", fmt, ap, saved);
	va_end(ap);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vline("warn", fmt, ap, 0);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	if (!log_verbose)
		return;
	va_start(ap, fmt);
	log_vline("debug", fmt, ap, 0);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vline("fatal", fmt, ap, saved);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vline("fatal", fmt, ap, 0);
	va_end(ap);
	exit(1);
}

static time_t
log_limit_now(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec;
}

/* The summary of a window that has ended, once. */
static void
log_limit_summary(struct log_limit *ll)
{
	if (ll->suppressed == 0)
		return;
	log_warnx("log suppressed site=\"%s\" lines=%" PRIu64
	    " window=1s limit=%u", ll->site, ll->suppressed,
	    ll->per_sec != 0 ? ll->per_sec : LOG_LIMIT_PER_SEC);
	ll->suppressed = 0;
}

bool
log_limit_ok(struct log_limit *ll)
{
	time_t now = log_limit_now();

	if (now != ll->window) {
		log_limit_summary(ll);
		ll->window = now;
		ll->n = 0;
	}
	if (ll->n < (ll->per_sec != 0 ? ll->per_sec : LOG_LIMIT_PER_SEC)) {
		ll->n++;
		return true;
	}
	ll->suppressed++;
	log_suppressed++;
	if (log_limit_hook != NULL)
		log_limit_hook();
	if (!ll->listed) {
		ll->listed = true;
		ll->next = log_limit_pending;
		log_limit_pending = ll;
	}
	return false;
}

void
log_limit_set_hook(void (*fn)(void))
{
	log_limit_hook = fn;
}

uint64_t
log_suppressed_total(void)
{
	return log_suppressed;
}

void
log_limit_flush(void)
{
	struct log_limit **pp = &log_limit_pending, *ll;
	time_t now = log_limit_now();

	while ((ll = *pp) != NULL) {
		if (ll->window == now && ll->suppressed > 0) {
			pp = &ll->next;		/* still counting */
			continue;
		}
		log_limit_summary(ll);
		*pp = ll->next;
		ll->next = NULL;
		ll->listed = false;
	}
}

static void
log_limit_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	log_limit_flush();
}

void
log_limit_start(struct event_base *base)
{
	struct timeval tv = { 1, 0 };

	if (log_limit_timer != NULL)
		fatalx("%s: already started", __func__);
	log_limit_timer = event_new(base, -1, EV_PERSIST, log_limit_timer_cb,
	    NULL);
	if (log_limit_timer == NULL || event_add(log_limit_timer, &tv) == -1)
		fatalx("%s: cannot set up the timer", __func__);
}

void
log_limit_stop(void)
{
	struct log_limit *ll;

	if (log_limit_timer == NULL)
		return;
	event_free(log_limit_timer);
	log_limit_timer = NULL;
	while ((ll = log_limit_pending) != NULL) {
		log_limit_summary(ll);
		log_limit_pending = ll->next;
		ll->next = NULL;
		ll->listed = false;
	}
}

/* Escape in between the delimiters open and close; see log_escape(). */
static char *
log_escape_between(const char *in, size_t len, char *out, size_t outlen,
    char open, char close)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	if (outlen < 6) {
		if (outlen > 0)
			out[0] = '\0';
		return out;
	}
	out[o++] = open;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		size_t need = (c == '"' || c == '\\') ? 2 :
		    (c <= 0x20 || c > 0x7e || c == (unsigned char)close) ? 4 :
		    1;

		if (c == ' ' && open == '"')
			need = 1;	/* quoted: spaces are plain */

		if (o + need + 5 > outlen) {	/* room for ...", NUL */
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		if (need == 2) {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (need == 4) {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else
			out[o++] = (char)c;
	}
	out[o++] = close;
	out[o] = '\0';
	return out;
}

char *
log_escape(const char *in, size_t len, char *out, size_t outlen)
{
	return log_escape_between(in, len, out, outlen, '"', '"');
}

char *
log_addr(const char *addr, char *out, size_t outlen)
{
	return log_escape_between(addr, strlen(addr), out, outlen, '<', '>');
}
