#include "mxcheck.h"

#include <ares.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include "util.h"
#include "xmalloc.h"

#define MXCHECK_TIMEOUT_DEF	10	/* seconds, whole lookup */
#define MXCHECK_TIMEOUT_MAX	300
#define MXCHECK_TRIES		2
#define MXCHECK_ARG_MAX		1024	/* DOMAIN, --server, --prom */
#define MXCHECK_LABEL_MAX	63
#define MXCHECK_NAME_MAX	253	/* without the trailing dot */

static const char mxcheck_usage_line[] =
    "usage: holdfastctl check-mx DOMAIN --expect HOST[:PREF],... "
    "[--server IP[:PORT]] [--prom FILE] [--timeout SECONDS]";

struct mxcheck_args {
	const char	*domain;
	const char	*expect;
	const char	*server;
	const char	*prom;
	const char	*timeout;
};

/* Options as data: each takes one value, given once. */
static const struct {
	const char	*name;
	size_t		 off;
} mxcheck_opts[] = {
	{ "--expect", offsetof(struct mxcheck_args, expect) },
	{ "--server", offsetof(struct mxcheck_args, server) },
	{ "--prom", offsetof(struct mxcheck_args, prom) },
	{ "--timeout", offsetof(struct mxcheck_args, timeout) },
};

/* Lookup failures worth a short name; anything else gets ares_strerror(). */
static const struct {
	int		 status;
	const char	*reason;
} mxcheck_reasons[] = {
	{ ARES_ENOTFOUND, "NXDOMAIN" },
	{ ARES_ESERVFAIL, "SERVFAIL" },
	{ ARES_EREFUSED, "REFUSED" },
	{ ARES_ENOTIMP, "NOTIMP" },
	{ ARES_EFORMERR, "FORMERR" },
	{ ARES_ETIMEOUT, "timeout" },
	{ ARES_ECONNREFUSED, "connection refused" },
	{ ARES_EBADRESP, "malformed answer" },
	{ ARES_EBADNAME, "bad domain name" },
};

/* One lookup in flight; written by the c-ares callback only. */
struct mxcheck_lookup {
	struct mxcheck_set	*found;
	bool			 done;
	int			 status;	/* ARES_*; ENODATA is success */
	bool			 too_many;
};

/* Append "; "-separated, printf-formatted text to why, truncating. */
static void mxcheck_why_add(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
mxcheck_why_add(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;
	size_t len;

	if (why == NULL || whylen == 0)
		return;
	len = strlen(why);
	if (len > 0 && len + 2 < whylen) {
		memcpy(why + len, "; ", 3);
		len += 2;
	}
	if (len + 1 >= whylen)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(why + len, whylen - len, fmt, ap);
	va_end(ap);
}

/*
 * Lowercase in[0..len) into out without checking its syntax (answers are
 * shown whatever they hold): one trailing dot dropped, bytes outside
 * printable ASCII as '?', truncated to MXCHECK_HOST_MAX.
 */
static void
mxcheck_host_norm(const char *in, size_t len, char *out)
{
	size_t i;

	if (len > 0 && in[len - 1] == '.')
		len--;
	if (len > MXCHECK_HOST_MAX)
		len = MXCHECK_HOST_MAX;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		else if (c <= ' ' || c >= 0x7f)
			c = '?';
		out[i] = (char)c;
	}
	out[len] = '\0';
}

int
mxcheck_host_parse(const char *in, size_t len, char *out)
{
	size_t i, label = 0;

	if (len == 1 && in[0] == '.') {		/* the root: a null MX */
		out[0] = '\0';
		return 0;
	}
	if (len > 0 && in[len - 1] == '.')
		len--;
	if (len == 0 || len > MXCHECK_NAME_MAX)
		return -1;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == '.') {
			if (label == 0)
				return -1;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return -1;
		if (++label > MXCHECK_LABEL_MAX)
			return -1;
	}
	if (label == 0)
		return -1;
	mxcheck_host_norm(in, len, out);
	return 0;
}

/* Trim spaces and tabs around s[0..*len); returns the new start. */
static const char *
mxcheck_trim(const char *s, size_t *len)
{
	while (*len > 0 && (s[0] == ' ' || s[0] == '\t')) {
		s++;
		(*len)--;
	}
	while (*len > 0 && (s[*len - 1] == ' ' || s[*len - 1] == '\t'))
		(*len)--;
	return s;
}

/* Parse one "HOST[:PREF]" item s[0..len) into mx. */
static int
mxcheck_item_parse(const char *s, size_t len, struct mxcheck_mx *mx,
    char *err, size_t errlen)
{
	const char *colon;
	size_t hostlen = len;
	uint64_t pref;
	char num[8];

	colon = memchr(s, ':', len);
	mx->pref = MXCHECK_PREF_ANY;
	if (colon != NULL) {
		size_t numlen = len - (size_t)(colon - s) - 1;

		hostlen = (size_t)(colon - s);
		if (numlen == 0 || numlen >= sizeof(num)) {
			snprintf(err, errlen, "bad preference in \"%.*s\"",
			    (int)len, s);
			return -1;
		}
		memcpy(num, colon + 1, numlen);
		num[numlen] = '\0';
		if (util_parse_u64(num, &pref) == -1 || pref > 65535) {
			snprintf(err, errlen, "bad preference in \"%.*s\"",
			    (int)len, s);
			return -1;
		}
		mx->pref = (int)pref;
	}
	if (mxcheck_host_parse(s, hostlen, mx->host) == -1) {
		snprintf(err, errlen, "bad host name \"%.*s\"", (int)hostlen,
		    s);
		return -1;
	}
	return 0;
}

int
mxcheck_parse_expect(const char *s, struct mxcheck_set *set, char *err,
    size_t errlen)
{
	const char *p = s, *comma;
	size_t i, len;

	set->n = 0;
	if (strnlen(s, MXCHECK_EXPECT_MAX + 1) > MXCHECK_EXPECT_MAX) {
		snprintf(err, errlen, "list longer than %d bytes",
		    MXCHECK_EXPECT_MAX);
		return -1;
	}
	for (;;) {
		const char *item;

		comma = strchr(p, ',');
		len = comma != NULL ? (size_t)(comma - p) : strlen(p);
		item = mxcheck_trim(p, &len);
		if (len == 0) {
			snprintf(err, errlen, "empty host in list");
			return -1;
		}
		if (set->n == MXCHECK_SET_MAX) {
			snprintf(err, errlen, "more than %d hosts",
			    MXCHECK_SET_MAX);
			return -1;
		}
		if (mxcheck_item_parse(item, len, &set->mx[set->n], err,
		    errlen) == -1)
			return -1;
		for (i = 0; i < set->n; i++) {
			if (strcmp(set->mx[i].host, set->mx[set->n].host) ==
			    0) {
				snprintf(err, errlen, "host %s. listed twice",
				    set->mx[i].host);
				return -1;
			}
		}
		set->n++;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	return 0;
}

/* Index of host in set, or -1. */
static int
mxcheck_set_find(const struct mxcheck_set *set, const char *host)
{
	size_t i;

	for (i = 0; i < set->n; i++)
		if (strcmp(set->mx[i].host, host) == 0)
			return (int)i;
	return -1;
}

/* True if set holds host with preference pref. */
static bool
mxcheck_set_has(const struct mxcheck_set *set, const char *host, int pref)
{
	size_t i;

	for (i = 0; i < set->n; i++)
		if (strcmp(set->mx[i].host, host) == 0 &&
		    set->mx[i].pref == pref)
			return true;
	return false;
}

enum mxcheck_result
mxcheck_compare(const struct mxcheck_set *found,
    const struct mxcheck_set *expect, char *why, size_t whylen)
{
	enum mxcheck_result res = MXCHECK_MATCH;
	size_t i;
	int j;

	if (why != NULL && whylen > 0)
		why[0] = '\0';
	for (i = 0; i < expect->n; i++) {
		const struct mxcheck_mx *e = &expect->mx[i];

		if ((j = mxcheck_set_find(found, e->host)) == -1) {
			mxcheck_why_add(why, whylen, "missing %s.", e->host);
			res = MXCHECK_DRIFT;
		} else if (e->pref != MXCHECK_PREF_ANY &&
		    !mxcheck_set_has(found, e->host, e->pref)) {
			mxcheck_why_add(why, whylen, "%s. has preference %d, "
			    "expected %d", e->host, found->mx[j].pref,
			    e->pref);
			res = MXCHECK_DRIFT;
		}
	}
	for (i = 0; i < found->n; i++) {
		const struct mxcheck_mx *f = &found->mx[i];
		const struct mxcheck_mx *e;

		if ((j = mxcheck_set_find(expect, f->host)) == -1) {
			mxcheck_why_add(why, whylen, "unexpected %d %s.",
			    f->pref, f->host);
			res = MXCHECK_DRIFT;
			continue;
		}
		e = &expect->mx[j];
		/* A wrong preference is reported above, unless the expected
		 * one is there too and this is an extra record. */
		if (e->pref != MXCHECK_PREF_ANY && e->pref != f->pref &&
		    mxcheck_set_has(found, e->host, e->pref)) {
			mxcheck_why_add(why, whylen, "unexpected %d %s.",
			    f->pref, f->host);
			res = MXCHECK_DRIFT;
		}
	}
	return res;
}

static int
mxcheck_mx_cmp(const void *a, const void *b)
{
	const struct mxcheck_mx *x = a, *y = b;

	if (x->pref != y->pref)
		return x->pref < y->pref ? -1 : 1;
	return strcmp(x->host, y->host);
}

void
mxcheck_set_sort(struct mxcheck_set *set)
{
	qsort(set->mx, set->n, sizeof(set->mx[0]), mxcheck_mx_cmp);
}

void
mxcheck_set_fmt(const struct mxcheck_set *set, char *out, size_t outlen)
{
	size_t i, len = 0;
	int n;

	if (outlen == 0)
		return;
	out[0] = '\0';
	if (set->n == 0) {
		(void)util_copy(out, outlen, "(none)");
		return;
	}
	for (i = 0; i < set->n; i++) {
		const struct mxcheck_mx *mx = &set->mx[i];
		const char *sep = i > 0 ? ", " : "";

		if (mx->pref == MXCHECK_PREF_ANY)
			n = snprintf(out + len, outlen - len, "%s%s.", sep,
			    mx->host);
		else
			n = snprintf(out + len, outlen - len, "%s%d %s.", sep,
			    mx->pref, mx->host);
		if (n < 0 || (size_t)n >= outlen - len) {
			if (outlen >= 4)
				memcpy(out + outlen - 4, "...", 4);
			return;
		}
		len += (size_t)n;
	}
}

int
mxcheck_prom_escape(const char *in, char *out, size_t outlen)
{
	size_t o = 0;

	if (outlen == 0)
		return -1;
	for (; *in != '\0'; in++) {
		const char *rep = NULL;
		size_t n;

		switch (*in) {
		case '\\':
			rep = "\\\\";
			break;
		case '"':
			rep = "\\\"";
			break;
		case '\n':
			rep = "\\n";
			break;
		}
		n = rep != NULL ? 2 : 1;
		if (o + n >= outlen) {
			out[o] = '\0';
			return -1;
		}
		if (rep != NULL)
			memcpy(out + o, rep, 2);
		else
			out[o] = *in;
		o += n;
	}
	out[o] = '\0';
	return 0;
}

/* ---------------------------------------------------------------- lookup */

static void
mxcheck_query_cb(void *arg, int status, int timeouts, unsigned char *abuf,
    int alen)
{
	struct mxcheck_lookup *l = arg;
	struct ares_mx_reply *mxs = NULL, *m;

	(void)timeouts;
	l->done = true;
	l->status = status;
	if (status != ARES_SUCCESS)
		return;
	l->status = ares_parse_mx_reply(abuf, alen, &mxs);
	if (l->status != ARES_SUCCESS)
		return;
	for (m = mxs; m != NULL; m = m->next) {
		struct mxcheck_mx *mx;

		if (l->found->n == MXCHECK_SET_MAX) {
			l->too_many = true;
			break;
		}
		mx = &l->found->mx[l->found->n++];
		mxcheck_host_norm(m->host, strlen(m->host), mx->host);
		mx->pref = m->priority;
	}
	ares_free_data(mxs);
}

static const char *
mxcheck_reason(int status)
{
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(mxcheck_reasons); i++)
		if (mxcheck_reasons[i].status == status)
			return mxcheck_reasons[i].reason;
	return ares_strerror(status);
}

static int64_t
mxcheck_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Run the channel until the query is done or timeout_ms has passed (the
 * query is then cancelled).  Returns 0, or -1 with a reason in err.
 */
static int
mxcheck_run(ares_channel channel, struct mxcheck_lookup *l, int timeout_ms,
    char *err, size_t errlen)
{
	int64_t deadline = mxcheck_now_ms() + timeout_ms;

	while (!l->done) {
		struct timeval maxtv, tv, *tvp;
		fd_set rfds, wfds;
		int64_t left;
		int nfds;

		if ((left = deadline - mxcheck_now_ms()) <= 0) {
			ares_cancel(channel);	/* runs the callback */
			snprintf(err, errlen, "timeout after %d s",
			    timeout_ms / 1000);
			return -1;
		}
		FD_ZERO(&rfds);
		FD_ZERO(&wfds);
		nfds = ares_fds(channel, &rfds, &wfds);
		maxtv.tv_sec = left / 1000;
		maxtv.tv_usec = (left % 1000) * 1000;
		tvp = ares_timeout(channel, &maxtv, &tv);
		if (select(nfds, &rfds, &wfds, NULL, tvp) == -1) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "select: %s", strerror(errno));
			ares_cancel(channel);
			return -1;
		}
		ares_process(channel, &rfds, &wfds);
	}
	if (l->status == ARES_ENODATA)		/* no MX: an empty set */
		l->status = ARES_SUCCESS;
	if (l->status != ARES_SUCCESS) {
		snprintf(err, errlen, "%s", mxcheck_reason(l->status));
		return -1;
	}
	if (l->too_many) {
		snprintf(err, errlen, "more than %d MX records",
		    MXCHECK_SET_MAX);
		return -1;
	}
	return 0;
}

/*
 * Resolve domain's MX set into found.  Returns 0, -1 with a reason in err
 * on a lookup failure, or -2 (reason in err) if server is bad usage.
 */
static int
mxcheck_lookup(const char *domain, const char *server, int timeout_ms,
    struct mxcheck_set *found, char *err, size_t errlen)
{
	struct mxcheck_lookup l = { .found = found };
	struct ares_options opts;
	ares_channel channel;
	int rc, ret = -1;

	found->n = 0;
	if ((rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
		snprintf(err, errlen, "ares_library_init: %s",
		    ares_strerror(rc));
		return -1;
	}
	memset(&opts, 0, sizeof(opts));
	/* c-ares doubles the per-try timeout each round: T + 2T = the
	 * whole budget; mxcheck_run() enforces it anyway. */
	opts.timeout = timeout_ms / (2 * MXCHECK_TRIES - 1);
	if (opts.timeout < 1)
		opts.timeout = 1;
	opts.tries = MXCHECK_TRIES;
	/* Report SERVFAIL and REFUSED as such instead of c-ares' generic
	 * "connection refused" once every server has refused. */
	opts.flags = ARES_FLAG_NOCHECKRESP;
	rc = ares_init_options(&channel, &opts,
	    ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "resolver init: %s", ares_strerror(rc));
		goto fail_lib;
	}
	if (server != NULL &&
	    (rc = ares_set_servers_ports_csv(channel, server)) !=
	    ARES_SUCCESS) {
		snprintf(err, errlen, "bad --server \"%s\": %s", server,
		    ares_strerror(rc));
		ret = -2;
		goto fail;
	}
	ares_query(channel, domain, ns_c_in, ns_t_mx, mxcheck_query_cb, &l);
	ret = mxcheck_run(channel, &l, timeout_ms, err, errlen);
fail:
	ares_destroy(channel);
fail_lib:
	ares_library_cleanup();
	return ret;
}

/* ---------------------------------------------------------------- output */

/* Write all of buf to fd; 0 or -1 with errno set. */
static int
mxcheck_write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* fsync the directory holding path, so a rename into it is durable. */
static int
mxcheck_fsync_dir(const char *path)
{
	char *copy = xstrdup(path);
	int fd, ret = -1;

	if ((fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	    -1)
		goto out;
	if (fsync(fd) == -1 && errno != EINVAL) {
		(void)close(fd);
		goto out;
	}
	ret = close(fd);
out:
	free(copy);
	return ret;
}

/*
 * Write the node_exporter textfile atomically (path.tmp, fsync, rename,
 * fsync the directory).  The HELP texts are constant so that files for
 * several domains can sit side by side.  Returns 0, or -1 (reported).
 */
static int
mxcheck_prom_write(const char *path, const char *domain, bool lookup_ok,
    bool match, time_t now)
{
	char label[2 * MXCHECK_HOST_MAX + 1];
	char *tmp = NULL, *text = NULL;
	const char *what;
	int fd = -1, len, saved;

	(void)mxcheck_prom_escape(domain, label, sizeof(label));
	len = xasprintf(&text,
	    "# HELP holdfast_mx_match 1 if the domain's MX set matches the "
	    "expected set\n"
	    "# TYPE holdfast_mx_match gauge\n"
	    "holdfast_mx_match{domain=\"%s\"} %d\n"
	    "# HELP holdfast_mx_lookup_ok 1 if the domain's MX lookup "
	    "succeeded\n"
	    "# TYPE holdfast_mx_lookup_ok gauge\n"
	    "holdfast_mx_lookup_ok{domain=\"%s\"} %d\n"
	    "# HELP holdfast_mx_check_timestamp_seconds Unix time of the "
	    "last MX check\n"
	    "# TYPE holdfast_mx_check_timestamp_seconds gauge\n"
	    "holdfast_mx_check_timestamp_seconds{domain=\"%s\"} %lld\n",
	    label, match ? 1 : 0, label, lookup_ok ? 1 : 0, label,
	    (long long)now);
	(void)xasprintf(&tmp, "%s.tmp", path);
	what = "open";
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0644)) == -1)
		goto fail;
	what = "write";
	if (mxcheck_write_all(fd, text, (size_t)len) == -1)
		goto fail_unlink;
	what = "fsync";
	if (fsync(fd) == -1)
		goto fail_unlink;
	what = "close";
	saved = close(fd);
	fd = -1;
	if (saved == -1)
		goto fail_unlink;
	what = "rename";
	if (rename(tmp, path) == -1)
		goto fail_unlink;
	if (mxcheck_fsync_dir(path) == -1) {
		fprintf(stderr, "check-mx: fsync directory of %s: %s\n", path,
		    strerror(errno));
		goto fail_free;
	}
	free(tmp);
	free(text);
	return 0;
fail_unlink:
	saved = errno;
	if (fd != -1)
		(void)close(fd);
	(void)unlink(tmp);
	errno = saved;
fail:
	fprintf(stderr, "check-mx: %s %s: %s\n", what, tmp, strerror(errno));
fail_free:
	free(tmp);
	free(text);
	return -1;
}

/* ---------------------------------------------------------------- main */

/* Print "check-mx: REASON" and the usage line; returns 2. */
static int mxcheck_usage(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static int
mxcheck_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("check-mx: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n%s\n", mxcheck_usage_line);
	return 2;
}

/* Fill a from argv; returns 0, or the exit code of a usage error. */
static int
mxcheck_args_parse(int argc, char **argv, struct mxcheck_args *a)
{
	bool opts_done = false;
	int i;
	size_t k;

	memset(a, 0, sizeof(*a));
	for (i = 1; i < argc; i++) {
		const char *arg = argv[i], *val = NULL, *eq;
		const char **field = NULL;

		if (strnlen(arg, MXCHECK_EXPECT_MAX + 1) > MXCHECK_EXPECT_MAX)
			return mxcheck_usage("argument too long");
		if (!opts_done && strcmp(arg, "--") == 0) {
			opts_done = true;
			continue;
		}
		if (opts_done || arg[0] != '-') {
			if (a->domain != NULL)
				return mxcheck_usage("unexpected argument "
				    "\"%s\"", arg);
			a->domain = arg;
			continue;
		}
		eq = strchr(arg, '=');
		for (k = 0; k < UTIL_ARRAY_LEN(mxcheck_opts); k++) {
			size_t n = strlen(mxcheck_opts[k].name);

			if (strncmp(arg, mxcheck_opts[k].name, n) == 0 &&
			    (arg[n] == '\0' || arg + n == eq)) {
				field = (const char **)(void *)((char *)a +
				    mxcheck_opts[k].off);
				break;
			}
		}
		if (field == NULL)
			return mxcheck_usage("unknown option \"%s\"", arg);
		if (*field != NULL)
			return mxcheck_usage("option %s given twice",
			    mxcheck_opts[k].name);
		if (eq != NULL)
			val = eq + 1;
		else if (i + 1 < argc)
			val = argv[++i];
		else
			return mxcheck_usage("option %s needs a value",
			    mxcheck_opts[k].name);
		if (val[0] == '\0')
			return mxcheck_usage("empty value for %s",
			    mxcheck_opts[k].name);
		*field = val;
	}
	if (a->domain == NULL)
		return mxcheck_usage("no DOMAIN given");
	if (a->expect == NULL)
		return mxcheck_usage("--expect is required");
	if ((a->server != NULL && strlen(a->server) > MXCHECK_ARG_MAX) ||
	    (a->prom != NULL && strlen(a->prom) > MXCHECK_ARG_MAX))
		return mxcheck_usage("argument too long");
	return 0;
}

int
mxcheck_main(int argc, char **argv)
{
	struct mxcheck_set expect, found;
	struct mxcheck_args a;
	char domain[MXCHECK_HOST_MAX + 1], err[512];
	char *foundstr = NULL, *expectstr = NULL, *why = NULL;
	uint64_t secs = MXCHECK_TIMEOUT_DEF;
	bool lookup_ok, match = false;
	int rc, ret = 1;

	if ((rc = mxcheck_args_parse(argc, argv, &a)) != 0)
		return rc;
	if (mxcheck_host_parse(a.domain, strlen(a.domain), domain) == -1 ||
	    domain[0] == '\0')
		return mxcheck_usage("bad domain name \"%s\"", a.domain);
	if (mxcheck_parse_expect(a.expect, &expect, err, sizeof(err)) == -1)
		return mxcheck_usage("bad --expect: %s", err);
	if (a.timeout != NULL && (util_parse_duration(a.timeout, &secs) ==
	    -1 || secs < 1 || secs > MXCHECK_TIMEOUT_MAX))
		return mxcheck_usage("bad --timeout \"%s\" (1 to 300 s)",
		    a.timeout);

	err[0] = '\0';
	rc = mxcheck_lookup(domain, a.server, (int)secs * 1000, &found, err,
	    sizeof(err));
	if (rc == -2)
		return mxcheck_usage("%s", err);
	lookup_ok = rc == 0;

	foundstr = xmalloc(MXCHECK_SET_FMT_MAX);
	expectstr = xmalloc(MXCHECK_SET_FMT_MAX);
	why = xmalloc(MXCHECK_SET_FMT_MAX);
	if (lookup_ok) {
		match = mxcheck_compare(&found, &expect, why,
		    MXCHECK_SET_FMT_MAX) == MXCHECK_MATCH;
		mxcheck_set_sort(&found);
		mxcheck_set_sort(&expect);
		mxcheck_set_fmt(&found, foundstr, MXCHECK_SET_FMT_MAX);
		mxcheck_set_fmt(&expect, expectstr, MXCHECK_SET_FMT_MAX);
	}

	if (a.prom != NULL) {
		ret = mxcheck_prom_write(a.prom, domain, lookup_ok, match,
		    time(NULL)) == 0 ? 0 : 1;
	} else if (!lookup_ok) {
		fprintf(stderr, "check-mx: %s: MX lookup failed: %s\n",
		    domain, err);
	} else if (match) {
		printf("ok: %s MX matches: %s\n", domain, foundstr);
		ret = fflush(stdout) == 0 ? 0 : 1;
	} else {
		fprintf(stderr, "drift: %s MX is: %s; expected: %s (%s)\n",
		    domain, foundstr, expectstr, why);
	}
	free(why);
	free(expectstr);
	free(foundstr);
	return ret;
}
