/*
 * log: where log lines go and their shape.
 *
 * Lines are key=value and start with the ID they concern (sess=, msg=);
 * callers pass IDs in, log.c knows no sessions.  Peer bytes must go through
 * log_escape() before they reach a format string's %s.  Output is stderr
 * (foreground, tests) with a UTC timestamp and level; fatal() and fatalx()
 * are for startup, config errors and broken invariants only.
 */
#ifndef HOLDFAST_LOG_H
#define HOLDFAST_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct event_base;

#define LOG_ESCAPE_MAX 512	/* a sane size for log_escape() buffers */

/* Set verbosity (debug lines shown when verbose) and route libevent's and
 * OpenSSL's own messages into the same stream. */
void log_init(bool verbose);
bool log_is_verbose(void);

void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* log_warn appends ": strerror(errno)"; log_warnx does not. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
_Noreturn void fatalx(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/*
 * A line a peer can trigger (a refused connection, a protocol error, a
 * deferral, an accept error) is written at most LOG_LIMIT_PER_SEC times a
 * second per call site:
 *
 *	static struct log_limit ll = LOG_LIMIT_INIT("smtp accept");
 *
 *	if (log_limit_ok(&ll))
 *		log_warn("smtp accept");
 *
 * Lines over the limit are counted, not written; when the second is over,
 * one "log suppressed site=... lines=N" line says how many (written by the
 * next call at that site or by the timer log_limit_start() sets up), and
 * log_suppressed_total() counts them all; a hook set with
 * log_limit_set_hook() is called for each (main.c counts them in
 * /metrics: log.c knows no metrics).  Loop thread only.
 */
#define LOG_LIMIT_PER_SEC 10

struct log_limit {
	const char		*site;		/* named in the summary line */
	time_t			 window;	/* the second being counted */
	unsigned		 n;		/* lines written in it */
	uint64_t		 suppressed;	/* lines dropped, not summed yet */
	bool			 listed;	/* on the pending-summary list */
	struct log_limit	*next;
	unsigned		 per_sec;	/* 0: LOG_LIMIT_PER_SEC */
};
#define LOG_LIMIT_INIT(site) { (site), 0, 0, 0, false, NULL, 0 }
/* A site whose lines come with every normal session: a higher cap. */
#define LOG_LIMIT_INIT_N(site, n) { (site), 0, 0, 0, false, NULL, (n) }

/* May the line at this site be written now?  Counts it if not. */
bool log_limit_ok(struct log_limit *ll);
/* fn() is called once for each line suppressed; NULL for none. */
void log_limit_set_hook(void (*fn)(void));
/* Lines suppressed since start, all sites. */
uint64_t log_suppressed_total(void);
/* Write the summary of every window that has ended (the timer calls it). */
void log_limit_flush(void);
/* A 1 s timer on base that calls log_limit_flush(); stop frees it. */
void log_limit_start(struct event_base *base);
void log_limit_stop(void);

/* Write in[0..len) into out as a double-quoted string with \\, \" and
 * non-printable bytes escaped (\xNN), truncated with "..." to fit outlen.
 * Returns out. */
char *log_escape(const char *in, size_t len, char *out, size_t outlen);
/* The same for a mail address, as <addr> with spaces, '>' and the rest
 * escaped (\xNN), so a log line splits on spaces safely. */
char *log_addr(const char *addr, char *out, size_t outlen);

#endif
