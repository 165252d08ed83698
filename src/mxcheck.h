/*
 * mxcheck: "holdfastctl check-mx", the MX drift check.  It resolves one
 * domain's MX set with its own short-lived c-ares channel, driven
 * synchronously (this is CLI code: it never runs inside the daemon's loop),
 * compares it with the operator's expected set and reports on stdout/stderr
 * or as a node_exporter textfile.  It owns nothing after mxcheck_main()
 * returns: no globals, no open fds, every allocation freed.
 * The pure helpers below (parse, compare, format, escape) do no I/O and are
 * what the unit tests exercise; sets they fill are owned by the caller.
 */
#ifndef HOLDFAST_MXCHECK_H
#define HOLDFAST_MXCHECK_H

#include <stdbool.h>
#include <stddef.h>

#define MXCHECK_HOST_MAX	255	/* RFC 1035 name, text form */
#define MXCHECK_SET_MAX		64	/* hosts in --expect or in an answer */
#define MXCHECK_EXPECT_MAX	4096	/* bytes of the --expect argument */
#define MXCHECK_PREF_ANY	(-1)	/* --expect HOST without :PREF */
/* Enough for mxcheck_set_fmt() of a full set: "65535 host., " per entry. */
#define MXCHECK_SET_FMT_MAX	(MXCHECK_SET_MAX * (MXCHECK_HOST_MAX + 10))

/* One MX: host normalised (lowercase, no trailing dot; "" is the root, as
 * in a null MX) and its preference, or MXCHECK_PREF_ANY when expected
 * without one. */
struct mxcheck_mx {
	char	host[MXCHECK_HOST_MAX + 1];
	int	pref;
};

struct mxcheck_set {
	struct mxcheck_mx	mx[MXCHECK_SET_MAX];
	size_t			n;
};

enum mxcheck_result {
	MXCHECK_MATCH,
	MXCHECK_DRIFT,
};

/*
 * "holdfastctl check-mx": argv[0] is "check-mx", then DOMAIN --expect
 * HOST[:PREF],... [--server IP[:PORT]] [--prom FILE] [--timeout SECONDS].
 * Returns the exit code: 0 match (or textfile written), 1 drift, lookup
 * failure or textfile not written, 2 bad usage.
 */
int mxcheck_main(int argc, char **argv);

/* Normalise a host name into out (MXCHECK_HOST_MAX + 1 bytes): lowercase,
 * one trailing dot dropped.  Returns 0, or -1 if it is not a syntactically
 * valid name (empty, empty label, label over 63, bad byte, too long). */
int mxcheck_host_parse(const char *in, size_t len, char *out);

/* Parse an --expect list "HOST[:PREF],..." (spaces around items allowed)
 * into set.  Returns 0, or -1 with a reason in err (errlen bytes). */
int mxcheck_parse_expect(const char *s, struct mxcheck_set *set, char *err,
    size_t errlen);

/*
 * Compare the found set with the expected one, ignoring order: every found
 * MX must have an expected entry with the same host (and the same
 * preference, if one was given), and every expected entry must be found.
 * On MXCHECK_DRIFT, why (whylen bytes, may be 0) says what differs.
 */
enum mxcheck_result mxcheck_compare(const struct mxcheck_set *found,
    const struct mxcheck_set *expect, char *why, size_t whylen);

/* Sort set by preference, then host (for stable output). */
void mxcheck_set_sort(struct mxcheck_set *set);

/* "10 a.example., 20 b.example." or "(none)"; an entry without a
 * preference prints as "a.example.".  MXCHECK_SET_FMT_MAX bytes always
 * suffice; a smaller out is truncated with "...". */
void mxcheck_set_fmt(const struct mxcheck_set *set, char *out,
    size_t outlen);

/* Escape in for a Prometheus label value (\\, \", \n).  Returns 0, or -1
 * if it did not fit (out then holds a truncated, terminated prefix). */
int mxcheck_prom_escape(const char *in, char *out, size_t outlen);

#endif
