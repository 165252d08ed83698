/*
 * util: small helpers with no SMTP knowledge: truncation-checked copies,
 * number/duration/size parsing, random IDs, time formatting, the clock
 * (util_now) and systemd's readiness notification.
 * Nothing here allocates except where the name says so.  It owns no state
 * and must not grow any: a helper that needs state or knows a protocol
 * belongs to the module that owns that state.
 */
#ifndef HOLDFAST_UTIL_H
#define HOLDFAST_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define UTIL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Copy src into dst (size dstlen); return 0, or -1 if it did not fit (dst
 * then holds a truncated, terminated copy). */
int util_copy(char *dst, size_t dstlen, const char *src);

/* Parse a non-negative decimal integer; -1 on junk or overflow. */
int util_parse_u64(const char *s, uint64_t *out);
/* "30d", "5m", "10s", "2h", bare number = seconds. */
int util_parse_duration(const char *s, uint64_t *seconds);
/* "50M", "10K", "1G", bare number = bytes. */
int util_parse_size(const char *s, uint64_t *bytes);

/* n random octets (the kernel's, drawn in batches per thread). */
void util_random(void *out, size_t n);
/* Fill out with n random lowercase hex characters and a NUL (out has n+1). */
void util_random_hex(char *out, size_t n);

/* RFC 5322 date-time of t, local zone numeric offset, into out. */
void util_fmt_date(time_t t, char *out, size_t outlen);
/* Compact duration such as 2h14m or 35s. */
void util_fmt_duration(uint64_t seconds, char *out, size_t outlen);

/* Wall-clock seconds (for timestamps stored on disk). */
time_t util_now(void);

/* Tell systemd (Type=notify) state, e.g. "READY=1", if $NOTIFY_SOCKET is
 * set; 0 when sent or not under systemd, -1 on error. */
int util_sd_notify(const char *state);

/* The value of hex digit c (either case), or -1. */
int util_hexval(char c);

/* ASCII case-insensitive comparison of n bytes / whole strings. */
bool util_strcaseeq(const char *a, const char *b);

#endif
