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

/* Write in[0..len) into out as a double-quoted string with \\, \" and
 * non-printable bytes escaped (\xNN), truncated with "..." to fit outlen.
 * Returns out. */
char *log_escape(const char *in, size_t len, char *out, size_t outlen);
/* The same for a mail address, as <addr> with spaces, '>' and the rest
 * escaped (\xNN), so a log line splits on spaces safely. */
char *log_addr(const char *addr, char *out, size_t outlen);

#endif
