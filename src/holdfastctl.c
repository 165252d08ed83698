/*
 * holdfastctl: the operator's CLI.  It sends one request to the daemon's
 * control socket (ctl_proto's format), prints the answer as text or JSON,
 * and exits 0 on success, 1 on failure (one line on stderr), 2 on bad
 * usage.  The read-only commands (queue, show, dead) still work from the
 * spool itself when the daemon is down.  check-mx runs here, not in the
 * daemon.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "ctl_proto.h"
#include "mxcheck.h"
#include "select.h"
#include "util.h"
#include "xmalloc.h"

#define HOLDFASTCTL_DEFAULT_CONF "/etc/holdfast/holdfast.conf"

enum hctl_output {
	HCTL_OUT_NONE,		/* ok / error only */
	HCTL_OUT_QUEUE,		/* message records */
	HCTL_OUT_SHOW,
	HCTL_OUT_STATUS,
	HCTL_OUT_BULK,		/* selection: listing + summary */
	HCTL_OUT_SHAPE,		/* computed here from the listing */
};

/* Selector options of the bulk commands (select.c parses them). */
#define HCTL_SELECT_OPTS "--state= --from= --rcpt= --reply= --older-than= " \
	"--dry-run --json"
#define HCTL_SELECT_HELP \
	"  --state S[,S]      queued, deferred, waiting, held or dead\n" \
	"  --from PATTERN     sender glob, case-insensitive (<> for the " \
	"null sender)\n" \
	"  --rcpt PATTERN     glob on any recipient\n" \
	"  --reply PATTERN    glob on the last reply from the primary\n" \
	"  --older-than DUR   arrived at least this long ago (30m, 2h, 3d)\n" \
	"  --dry-run          list what would be touched and the count\n"

/*
 * The CLI's commands.  opts lists the options a command takes, space
 * separated; "--for=" takes a value.  The daemon's own table (ctl.c)
 * checks the same verbs again.
 */
/* The argument counts of the daemon's verb (ctl_proto's table). */
#define HCTL_PROTO_ARGS	-1, -1

struct hctl_command {
	const char		*name;
	const char		*wire;		/* verb sent to the daemon */
	int			 min_args, max_args;	/* -1: the wire's */
	enum hctl_output	 output;
	bool			 offline;	/* works from the spool alone */
	/* usage: after the daemon verb's own (ctl_proto's table, for a
	 * command with a wire verb), holdfastctl's arguments */
	const char		*args;
	const char		*opts;
	const char		*help;
};

static const struct hctl_command hctl_commands[] = {
	{ "queue", "queue", HCTL_PROTO_ARGS, HCTL_OUT_QUEUE, true, "[--json]",
	  "--json", "List every message: ID, size, arrival (UTC) and age, "
	  "state (queued,\ndeferred, waiting for a down primary, held, dead), "
	  "attempts, sender,\nrecipients and the last reply.\n" },
	{ "mailq", "queue", HCTL_PROTO_ARGS, HCTL_OUT_QUEUE, true, "[--json]",
	  "--json", "The same as queue.\n" },
	{ "show", "show", HCTL_PROTO_ARGS, HCTL_OUT_SHOW, true,
	  "[--json]", "--body --json",
	  "The envelope and the headers of one message (--body: the whole "
	  "message).\n" },
	{ "flush", "flush", HCTL_PROTO_ARGS, HCTL_OUT_NONE, false,
	  "", "",
	  "Try now; with no ID, every message, and probe the primary now.\n" },
	{ "hold", "hold", HCTL_PROTO_ARGS, HCTL_OUT_BULK, false,
	  "", HCTL_SELECT_OPTS,
	  "Hold messages: held mail is not drained and does not age.\n"
	  HCTL_SELECT_HELP },
	{ "release", "release", HCTL_PROTO_ARGS, HCTL_OUT_BULK, false,
	  "", HCTL_SELECT_OPTS, "Release held messages into the queue.\n"
	  HCTL_SELECT_HELP },
	{ "delete", "delete", HCTL_PROTO_ARGS, HCTL_OUT_BULK, false,
	  "", HCTL_SELECT_OPTS,
	  "Delete messages (logged as \"removed reason=operator\").\n"
	  HCTL_SELECT_HELP },
	{ "dead", "dead", HCTL_PROTO_ARGS, HCTL_OUT_QUEUE, true, "[--json]",
	  "--json", "List the dead letters with their reasons.\n" },
	{ "requeue", "requeue", HCTL_PROTO_ARGS, HCTL_OUT_BULK, false,
	  "", HCTL_SELECT_OPTS,
	  "Put dead letters back into the queue with a fresh lifetime.\n"
	  HCTL_SELECT_HELP },
	{ "hold-mode", "hold-mode", HCTL_PROTO_ARGS, HCTL_OUT_NONE, false,
	  "", "--for=",
	  "Accept-and-hold: accept and keep mail, drain nothing; ends by "
	  "itself\nafter --for (default 24h) and survives restarts.\n" },
	{ "status", "status", HCTL_PROTO_ARGS, HCTL_OUT_STATUS, false,
	  "[--json]", "--json",
	  "The primary (up/down and since when, its SIZE), counts and bytes "
	  "per state,\nhold-mode, spool space, uptime.  Times are UTC with "
	  "their age; --json\nkeeps epoch seconds and plain numbers.\n" },
	{ "pause-smtp", "pause-smtp", HCTL_PROTO_ARGS, HCTL_OUT_NONE, false,
	  "", "--for=",
	  "Stop accepting without stopping (disk emergencies): new SMTP "
	  "sessions get\n421 4.3.2, open ones finish.  Kept across restarts; "
	  "ends by itself after\n--for (default 1h).\n" },
	{ "resume-smtp", "resume-smtp", HCTL_PROTO_ARGS, HCTL_OUT_NONE, false,
	  "", "", "Accept new SMTP sessions again.\n" },
	{ "trace", "trace", HCTL_PROTO_ARGS, HCTL_OUT_NONE, false,
	  "", "--for=",
	  "Log the SMTP protocol (commands, replies, states; never message "
	  "content or\nauthentication data) of sessions from ADDR (an address "
	  "or CIDR) or of all,\nat info level, like smtpctl's trace; ends by "
	  "itself after --for (default 10m).\n" },
	{ "shape", "queue", 0, 2, HCTL_OUT_SHAPE, true,
	  "[-n N] [--json]", "-n= --json",
	  "The backlog by age (0-5m, 5-10m, 10-20m, ... 640-1280m, older), "
	  "per state\nand for the top N sender domains (default 10), like "
	  "Postfix's qshape.\n" },
	{ "help", NULL, 0, 1, HCTL_OUT_NONE, true, "[COMMAND]", "",
	  "Help on every command, or on one.\n" },
};

/* The commands that are not sent to the daemon's table. */
static const struct hctl_command hctl_extra[] = {
	{ "check-mx", NULL, 1, 16, HCTL_OUT_NONE, true,
	  "DOMAIN --expect HOST[:PREF],... [--server IP[:PORT]] "
	  "[--prom FILE]", NULL,
	  "Compare a domain's MX set with the expected one (exit 1 on "
	  "drift);\n--prom writes a node_exporter textfile instead.\n" },
	{ "version", NULL, 0, 0, HCTL_OUT_NONE, true, "", "",
	  "The version of holdfastctl.\n" },
};

static const struct hctl_command *
hctl_command_find(const char *name)
{
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(hctl_commands); i++)
		if (strcmp(hctl_commands[i].name, name) == 0)
			return &hctl_commands[i];
	for (i = 0; i < UTIL_ARRAY_LEN(hctl_extra); i++)
		if (strcmp(hctl_extra[i].name, name) == 0)
			return &hctl_extra[i];
	return NULL;
}

/* cmd's usage line: the daemon's verb's usage, then holdfastctl's. */
static const char *
hctl_usage_of(const struct hctl_command *cmd, char *buf, size_t len)
{
	ctl_proto_usage(cmd->wire != NULL ?
	    ctl_proto_command_find(cmd->wire) : NULL, cmd->name, cmd->args,
	    buf, len);
	return buf;
}

static void
hctl_usage_fp(FILE *fp)
{
	char u[256];
	size_t i;

	fprintf(fp, "usage: holdfastctl [-c FILE] COMMAND [ARGS]\n"
	    "commands:\n");
	for (i = 0; i < UTIL_ARRAY_LEN(hctl_commands); i++)
		fprintf(fp, "  %s\n", hctl_usage_of(&hctl_commands[i], u,
		    sizeof(u)));
	for (i = 0; i < UTIL_ARRAY_LEN(hctl_extra); i++)
		fprintf(fp, "  %s\n", hctl_usage_of(&hctl_extra[i], u,
		    sizeof(u)));
	fprintf(fp, "holdfastctl help COMMAND, or COMMAND -h, says more.\n");
}

static int
hctl_usage(void)
{
	hctl_usage_fp(stderr);
	return 2;
}

/* COMMAND -h, help COMMAND: its usage and help on stdout. */
static int
hctl_help(const char *name)
{
	const struct hctl_command *cmd = hctl_command_find(name);
	char u[256];

	if (cmd == NULL) {
		fprintf(stderr, "holdfastctl: no command %s\n", name);
		return hctl_usage();
	}
	printf("usage: holdfastctl [-c FILE] %s\n\n%s",
	    hctl_usage_of(cmd, u, sizeof(u)), cmd->help);
	return 0;
}

/* One bad-usage line naming what cmd allows; exit code 2. */
static int hctl_bad_usage(const struct hctl_command *cmd, const char *fmt,
    ...) __attribute__((format(printf, 2, 3)));

static int
hctl_bad_usage(const struct hctl_command *cmd, const char *fmt, ...)
{
	va_list ap;
	char u[256];

	fprintf(stderr, "holdfastctl: %s: ", cmd->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nusage: holdfastctl %s\n",
	    hctl_usage_of(cmd, u, sizeof(u)));
	return 2;
}

/*
 * Check every option after cmd's name against its opts: -h or --help
 * prints its help (exit 0, *done), an unknown one is bad usage naming the
 * allowed ones (exit 2).  Returns -1 to go on.
 */
static int
hctl_check_opts(const struct hctl_command *cmd, int argc, char **argv)
{
	char want[64], allowed[256], u[256];
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *o;
		bool value = false, found = false;
		size_t n;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
			return hctl_help(cmd->name);
		if (a[0] != '-' || a[1] == '\0')
			continue;
		for (o = cmd->opts; o != NULL && *o != '\0' && !found; o += n) {
			while (*o == ' ')
				o++;
			n = strcspn(o, " ");
			if (n == 0 || n >= sizeof(want))
				break;
			memcpy(want, o, n);
			want[n] = '\0';
			value = want[n - 1] == '=';
			if (value)
				want[n - 1] = '\0';
			found = strcmp(want, a) == 0;
		}
		if (!found) {
			util_copy(allowed, sizeof(allowed), cmd->opts != NULL &&
			    *cmd->opts != '\0' ? cmd->opts : "none");
			for (char *p = allowed; *p != '\0'; p++)
				if (*p == '=')
					*p = ' ';
			fprintf(stderr, "holdfastctl: %s: unknown option %s "
			    "(allowed: %s)\nusage: holdfastctl %s\n",
			    cmd->name, a, allowed,
			    hctl_usage_of(cmd, u, sizeof(u)));
			return 2;
		}
		if (value && (i + 1 >= argc || argv[i + 1][0] == '\0'))
			return hctl_bad_usage(cmd, "%s needs a value", a);
		if (value)
			i++;
	}
	return -1;
}

static char *hctl_esc(const char *s);

/*
 * While a hold/release/requeue/delete runs, the daemon sends "progress
 * VERB DONE TOTAL" lines ahead of its answer: shown on a terminal's
 * stderr, dropped otherwise, never part of the answer.
 */
static void
hctl_progress(struct evbuffer *ans)
{
	struct evbuffer_ptr p;
	char *line, *e;
	size_t len;

	for (;;) {
		if (evbuffer_get_length(ans) < 9)
			return;
		p = evbuffer_search(ans, "progress ", 9, NULL);
		if (p.pos != 0)
			return;
		p = evbuffer_search_eol(ans, NULL, NULL, EVBUFFER_EOL_LF);
		if (p.pos == -1)
			return;
		line = evbuffer_readln(ans, &len, EVBUFFER_EOL_LF);
		if (line == NULL)
			return;
		if (isatty(STDERR_FILENO)) {
			e = hctl_esc(line + 9);
			fprintf(stderr, "holdfastctl: %s\n", e);
			free(e);
		}
		free(line);
	}
}

/* Send line to the daemon; the whole answer goes to ans.  -1 with errno
 * if the daemon cannot be reached. */
static int
hctl_ask(const char *path, const char *line, struct evbuffer *ans)
{
	struct sockaddr_un sun;
	char buf[65536];
	ssize_t n;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (util_copy(sun.sun_path, sizeof(sun.sun_path), path) == -1) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1)
		goto fail;
	if (write(fd, line, strlen(line)) != (ssize_t)strlen(line) ||
	    write(fd, "\n", 1) != 1)
		goto fail;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		evbuffer_add(ans, buf, (size_t)n);
		hctl_progress(ans);
	}
	if (n == -1)
		goto fail;
	close(fd);
	return 0;
fail:
	n = errno;
	close(fd);
	errno = (int)n;
	return -1;
}

/* The daemon is down: answer a read-only request from the spool. */
static int
hctl_offline(const struct config *cf, int argc, char **argv,
    struct evbuffer *ans)
{
	struct evbuffer *recs = evbuffer_new();
	struct spool *sp;
	char err[512] = "";
	int rc = 0;

	if ((sp = spool_open_readonly(cf->spool_dir)) == NULL) {
		fprintf(stderr, "holdfastctl: daemon not running and spool %s "
		    "unreadable: %s\n", cf->spool_dir, strerror(errno));
		evbuffer_free(recs);
		return -1;
	}
	fprintf(stderr, "holdfastctl: daemon not running; read-only view of "
	    "%s\n", cf->spool_dir);
	if (strcmp(argv[0], "show") == 0)
		rc = ctl_proto_show(sp, argv[1], argc == 3 &&
		    strcmp(argv[2], "--body") == 0, recs, err, sizeof(err));
	else {
		if (strcmp(argv[0], "dead") != 0) {
			rc |= ctl_proto_list(sp, SPOOL_QUEUE, recs);
			rc |= ctl_proto_list(sp, SPOOL_HOLD, recs);
		}
		rc |= ctl_proto_list(sp, SPOOL_DEAD, recs);
		if (rc != 0)
			snprintf(err, sizeof(err), "cannot list the spool");
	}
	if (rc == 0)
		evbuffer_add_printf(ans, "ok\n");
	else
		evbuffer_add_printf(ans, "error %s\n", err);
	evbuffer_add_buffer(ans, recs);
	evbuffer_add_printf(ans, ".\n");
	evbuffer_free(recs);
	spool_close(sp);
	return 0;
}

/*
 * The length of the well-formed UTF-8 sequence of 2 to 4 bytes at s that
 * is not a C1 control (U+0080..U+009F, which some terminals obey), or 0.
 */
static size_t
hctl_utf8_len(const unsigned char *s)
{
	size_t n, i;
	uint32_t cp;

	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		cp = s[0] & 0x07;
	} else
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;	/* also stops at the NUL */
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 ||
	    cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff) ||
	    (cp >= 0x80 && cp <= 0x9f))
		return 0;
	return n;
}

/*
 * s as it may reach a terminal, in a new string (caller frees): printable
 * ASCII and well-formed UTF-8 as they are, a backslash doubled, every
 * other byte (controls such as ESC, CR, BEL, DEL; C1 controls; bytes that
 * are not UTF-8) as \xNN.  The daemon's data and an offline spool are
 * both read this way: a peer's bytes never drive the operator's terminal.
 */
static char *
hctl_esc(const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0, n;
	char *out = xreallocarray(NULL, strlen(s) * 4 + 1, 1);

	while (*p != '\0') {
		if (*p == '\\') {
			out[o++] = '\\';
			out[o++] = '\\';
			p++;
		} else if (*p >= 0x20 && *p < 0x7f)
			out[o++] = (char)*p++;
		else if ((n = hctl_utf8_len(p)) > 0) {
			memcpy(out + o, p, n);
			o += n;
			p += n;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
			p++;
		}
	}
	out[o] = '\0';
	return out;
}

/* printf("%s", s) with s escaped by hctl_esc(). */
static void
hctl_put(const char *s)
{
	char *e = hctl_esc(s);

	fputs(e, stdout);
	free(e);
}

/*
 * s as a JSON string: '"', '\\' and every control (C0, DEL, C1) as an
 * escape, well-formed UTF-8 as it is.  A byte that is not UTF-8 cannot be
 * said in JSON; it becomes the six characters \\xNN, as in the text
 * output, so the document stays valid.
 */
static void
hctl_json_str(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	putchar('"');
	while (*p != '\0') {
		if (*p == '"' || *p == '\\') {
			printf("\\%c", *p);
			p++;
		} else if (*p < 0x20 || *p == 0x7f) {
			printf("\\u%04x", *p);
			p++;
		} else if (*p < 0x7f) {
			putchar(*p);
			p++;
		} else if ((n = hctl_utf8_len(p)) > 0) {
			fwrite(p, 1, n, stdout);
			p += n;
		} else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			printf("\\u%04x", p[1]);	/* C1 control */
			p += 2;
		} else {
			printf("\\\\x%02x", *p);
			p++;
		}
	}
	putchar('"');
}

static bool
hctl_is_number(const char *key, const char *v)
{
	if (strcmp(key, "id") == 0 || *v == '\0' || strlen(v) > 18)
		return false;
	for (; *v != '\0'; v++)
		if (*v < '0' || *v > '9')
			return false;
	return true;
}

static bool
hctl_is_list_key(const char *key)
{
	return strcmp(key, "rcpt") == 0 || strcmp(key, "header") == 0 ||
	    strcmp(key, "line") == 0 || strcmp(key, "rcpt_reply") == 0;
}

/* One record as a JSON object; repeatable keys become arrays. */
static void
hctl_json_rec(const struct ctl_rec *rec)
{
	size_t i, k;
	bool first = true;

	putchar('{');
	for (i = 0; i < rec->n; i++) {
		bool seen = false;

		for (k = 0; k < i; k++)
			if (strcmp(rec->key[k], rec->key[i]) == 0)
				seen = true;
		if (seen)
			continue;
		printf("%s", first ? "" : ",");
		first = false;
		hctl_json_str(rec->key[i]);
		putchar(':');
		if (hctl_is_list_key(rec->key[i])) {
			bool f = true;

			putchar('[');
			for (k = i; k < rec->n; k++)
				if (strcmp(rec->key[k], rec->key[i]) == 0) {
					printf("%s", f ? "" : ",");
					f = false;
					hctl_json_str(rec->val[k]);
				}
			putchar(']');
		} else if (hctl_is_number(rec->key[i], rec->val[i]))
			printf("%s", rec->val[i]);
		else
			hctl_json_str(rec->val[i]);
	}
	putchar('}');
}

/*
 * A time as "2026-11-30T14:02:11Z (2h14m ago)" (UTC; "in 5m" ahead), or
 * zero when v is 0 or missing ("never", "-").
 */
static void
hctl_fmt_time(const char *v, time_t now, const char *zero, char *out,
    size_t outlen)
{
	char iso[32], rel[32];
	uint64_t t;
	struct tm tm;
	time_t tt;

	if (v == NULL || util_parse_u64(v, &t) == -1 || t == 0 ||
	    t > (uint64_t)INT64_MAX) {
		util_copy(out, outlen, zero);
		return;
	}
	tt = (time_t)t;
	gmtime_r(&tt, &tm);
	strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%SZ", &tm);
	util_fmt_duration((uint64_t)(tt <= now ? now - tt : tt - now), rel,
	    sizeof(rel));
	snprintf(out, outlen, "%s (%s%s%s)", iso, tt <= now ? "" : "in ", rel,
	    tt <= now ? " ago" : "");
}

/* Bytes with a binary unit: "512 B", "97.7 KiB". */
static void
hctl_fmt_bytes(uint64_t b, char *out, size_t outlen)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	size_t u = 0;

	if (b < 1024) {
		snprintf(out, outlen, "%llu B", (unsigned long long)b);
		return;
	}
	v /= 1024;
	while (v >= 1024 && u + 1 < UTIL_ARRAY_LEN(units)) {
		v /= 1024;
		u++;
	}
	snprintf(out, outlen, "%.1f %s", v, units[u]);
}

enum hctl_kind {
	HCTL_K_TIME,		/* epoch seconds */
	HCTL_K_BYTES,
	HCTL_K_AGE,		/* seconds */
};

/* How status values read in text; --json keeps the numbers. */
static const struct {
	const char	*key;		/* exact, or "*suffix" */
	enum hctl_kind	 kind;
	const char	*zero;		/* text for 0; NULL: format 0 */
} hctl_status_fmt[] = {
	{ "primary_since", HCTL_K_TIME, "never" },
	{ "last_delivery", HCTL_K_TIME, "never" },
	{ "hold_until", HCTL_K_TIME, "-" },
	{ "config_mtime", HCTL_K_TIME, "-" },
	{ "smtp_paused_since", HCTL_K_TIME, "-" },
	{ "smtp_paused_until", HCTL_K_TIME, "-" },
	{ "trace_until", HCTL_K_TIME, "-" },
	{ "primary_size", HCTL_K_BYTES, "none" },
	{ "size_limit", HCTL_K_BYTES, NULL },
	{ "*_bytes", HCTL_K_BYTES, NULL },
	{ "*oldest_age", HCTL_K_AGE, "-" },
	{ "uptime", HCTL_K_AGE, NULL },
};

/* One status value as text into out: times, sizes and ages made
 * readable, the rest escaped as it is. */
static void
hctl_fmt_status(const char *key, const char *v, time_t now, char *out,
    size_t outlen)
{
	char tmp[64];
	uint64_t n;
	size_t i, kl = strlen(key);

	for (i = 0; i < UTIL_ARRAY_LEN(hctl_status_fmt); i++) {
		const char *k = hctl_status_fmt[i].key;
		bool hit = k[0] == '*' ? kl >= strlen(k + 1) &&
		    strcmp(key + kl - strlen(k + 1), k + 1) == 0 :
		    strcmp(key, k) == 0;

		if (!hit || util_parse_u64(v, &n) == -1)
			continue;
		if (n == 0 && hctl_status_fmt[i].zero != NULL) {
			util_copy(out, outlen, hctl_status_fmt[i].zero);
			return;
		}
		switch (hctl_status_fmt[i].kind) {
		case HCTL_K_TIME:
			hctl_fmt_time(v, now, "never", out, outlen);
			return;
		case HCTL_K_BYTES:
			hctl_fmt_bytes(n, tmp, sizeof(tmp));
			if (n < 1024)
				util_copy(out, outlen, tmp);
			else
				snprintf(out, outlen, "%s (%llu)", tmp,
				    (unsigned long long)n);
			return;
		case HCTL_K_AGE:
			util_fmt_duration(n, out, outlen);
			return;
		}
	}
	util_copy(out, outlen, v);
}

static void
hctl_text_queue(const struct ctl_rec *rec, time_t now, uint64_t *nmsgs,
    uint64_t *bytes)
{
	const char *v;
	char arrival[64], next[64], size_s[32], age[32] = "-";
	uint64_t size = 0, t;
	size_t i;

	if ((v = ctl_proto_rec_get(rec, "size")) != NULL)
		util_parse_u64(v, &size);
	hctl_fmt_bytes(size, size_s, sizeof(size_s));
	v = ctl_proto_rec_get(rec, "arrival");
	hctl_fmt_time(v, now, "-", arrival, sizeof(arrival));
	if (v != NULL && util_parse_u64(v, &t) == 0 && t > 0 &&
	    (time_t)t <= now)
		util_fmt_duration((uint64_t)(now - (time_t)t), age,
		    sizeof(age));
	if (strchr(arrival, ' ') != NULL)
		*strchr(arrival, ' ') = '\0';	/* the age has a column */
	hctl_fmt_time(ctl_proto_rec_get(rec, "next_attempt"), now, "now",
	    next, sizeof(next));
	{
		const char *id = ctl_proto_rec_get(rec, "id");
		const char *state = ctl_proto_rec_get(rec, "state");
		const char *attempts = ctl_proto_rec_get(rec, "attempts");
		const char *sender = ctl_proto_rec_get(rec, "sender");

		char *eid = hctl_esc(id ? id : "?");
		char *estate = hctl_esc(state ? state : "?");
		char *eatt = hctl_esc(attempts ? attempts : "-");
		char *esender = hctl_esc(sender ? sender : "?");

		printf("%-16s %10s %s %7s %-9s %3s  <%s>\n", eid, size_s,
		    arrival, age, estate, eatt, esender);
		free(esender);
		free(eatt);
		free(estate);
		free(eid);
	}
	for (i = 0; i < rec->n; i++)
		if (strcmp(rec->key[i], "rcpt") == 0) {
			printf("%18s", "");
			hctl_put(rec->val[i]);
			putchar('\n');
		}
	if ((v = ctl_proto_rec_get(rec, "rcpt_more")) != NULL) {
		printf("%18s(and ", "");
		hctl_put(v);
		printf(" more: holdfastctl show ID lists them all)\n");
	}
	if ((v = ctl_proto_rec_get(rec, "primary_reply")) != NULL) {
		printf("%18s(primary down: ", "");
		hctl_put(v);
		printf(") next: as soon as it is back\n");
	} else if ((v = ctl_proto_rec_get(rec, "last_reply")) != NULL) {
		printf("%18s(", "");
		hctl_put(v);
		printf(") next: %s\n", next);
	}
	if ((v = ctl_proto_rec_get(rec, "dead_reason")) != NULL) {
		printf("%18sdead: ", "");
		hctl_put(v);
		putchar('\n');
	}
	for (i = 0; i < rec->n; i++)
		if (strcmp(rec->key[i], "rcpt_reply") == 0) {
			printf("%20s", "");
			hctl_put(rec->val[i]);
			putchar('\n');
		}
	(*nmsgs)++;
	*bytes += size;
}

/* The summary of a bulk command: "held 3 messages" or, dry, "would
 * hold 3 messages". */
static void
hctl_text_bulk(const char *verb, const struct ctl_rec *rec)
{
	static const struct {
		const char	*verb, *done;
	} past[] = {
		{ "hold", "held" }, { "release", "released" },
		{ "delete", "deleted" }, { "requeue", "requeued" },
	};
	const char *matched = ctl_proto_rec_get(rec, "matched");
	const char *done = ctl_proto_rec_get(rec, "done");
	const char *skipped = ctl_proto_rec_get(rec, "skipped");
	const char *failed = ctl_proto_rec_get(rec, "failed");
	const char *pv = verb;
	char *esel = hctl_esc(ctl_proto_rec_get(rec, "selector") ?
	    ctl_proto_rec_get(rec, "selector") : "");
	size_t i;

	for (i = 0; i < UTIL_ARRAY_LEN(past); i++)
		if (strcmp(past[i].verb, verb) == 0)
			pv = past[i].done;
	if (done == NULL)
		printf("would %s %s message%s (%s)\n", verb,
		    matched ? matched : "0", matched && strcmp(matched, "1") ==
		    0 ? "" : "s", esel);
	else
		printf("%s %s of %s message%s (%s); %s skipped (busy or "
		    "gone), %s failed\n", pv, done, matched ? matched : "0",
		    matched && strcmp(matched, "1") == 0 ? "" : "s", esel,
		    skipped ? skipped : "0", failed ? failed : "0");
	free(esel);
}

/* qshape: counts per age bucket for each state and sender domain. */
struct hctl_shape_row {
	char		*name;
	uint64_t	 total, n[SELECT_NBUCKETS];
};

struct hctl_shape {
	struct hctl_shape_row	 all, states[5];
	struct hctl_shape_row	*domains;
	size_t			 ndomains;
};

static const char *const hctl_shape_states[] = {
	"queued", "deferred", "waiting", "held", "dead",
};

static void
hctl_shape_count(struct hctl_shape_row *row, size_t b)
{
	row->total++;
	row->n[b]++;
}

static void
hctl_shape_add(struct hctl_shape *sh, const struct ctl_rec *rec, time_t now)
{
	const char *state = ctl_proto_rec_get(rec, "state");
	const char *sender = ctl_proto_rec_get(rec, "sender");
	const char *arr = ctl_proto_rec_get(rec, "arrival"), *dom;
	uint64_t t = 0;
	size_t b, i;

	if (state == NULL || arr == NULL || util_parse_u64(arr, &t) == -1)
		return;		/* unreadable entries have neither */
	b = select_bucket((time_t)t < now ? (uint64_t)(now - (time_t)t) : 0);
	hctl_shape_count(&sh->all, b);
	for (i = 0; i < UTIL_ARRAY_LEN(hctl_shape_states); i++)
		if (strcmp(state, hctl_shape_states[i]) == 0)
			hctl_shape_count(&sh->states[i], b);
	dom = sender == NULL || *sender == '\0' ? "<>" :
	    strrchr(sender, '@') != NULL ? strrchr(sender, '@') + 1 : sender;
	for (i = 0; i < sh->ndomains; i++)
		if (util_strcaseeq(sh->domains[i].name, dom))
			break;
	if (i == sh->ndomains) {
		sh->domains = xreallocarray(sh->domains, sh->ndomains + 1,
		    sizeof(*sh->domains));
		memset(&sh->domains[i], 0, sizeof(sh->domains[i]));
		sh->domains[i].name = xstrdup(dom);
		sh->ndomains++;
	}
	hctl_shape_count(&sh->domains[i], b);
}

static int
hctl_shape_cmp(const void *a, const void *b)
{
	const struct hctl_shape_row *x = a, *y = b;

	if (x->total != y->total)
		return x->total > y->total ? -1 : 1;
	return strcmp(x->name, y->name);
}

static void
hctl_shape_row_text(const char *name, const struct hctl_shape_row *row)
{
	char *e = hctl_esc(name);
	size_t b;

	printf("%-24.24s %6llu", e, (unsigned long long)row->total);
	for (b = 0; b < SELECT_NBUCKETS; b++)
		printf(" %5llu", (unsigned long long)row->n[b]);
	putchar('\n');
	free(e);
}

static void
hctl_shape_row_json(const char *name, const struct hctl_shape_row *row)
{
	size_t b;

	printf("{\"name\":");
	hctl_json_str(name);
	printf(",\"total\":%llu,\"counts\":{", (unsigned long long)row->total);
	for (b = 0; b < SELECT_NBUCKETS; b++)
		printf("%s\"%s\":%llu", b ? "," : "", select_bucket_name(b),
		    (unsigned long long)row->n[b]);
	printf("}}");
}

static void
hctl_shape_print(struct hctl_shape *sh, size_t top, bool json)
{
	size_t i, b, n;

	if (sh->ndomains > 0)
		qsort(sh->domains, sh->ndomains, sizeof(*sh->domains),
		    hctl_shape_cmp);
	n = sh->ndomains < top ? sh->ndomains : top;
	if (json) {
		printf("{\"buckets\":[");
		for (b = 0; b < SELECT_NBUCKETS; b++)
			printf("%s\"%s\"", b ? "," : "", select_bucket_name(b));
		printf("],\"total\":");
		hctl_shape_row_json("total", &sh->all);
		printf(",\"states\":[");
		for (i = 0; i < UTIL_ARRAY_LEN(hctl_shape_states); i++) {
			printf("%s", i ? "," : "");
			hctl_shape_row_json(hctl_shape_states[i],
			    &sh->states[i]);
		}
		printf("],\"domains\":[");
		for (i = 0; i < n; i++) {
			printf("%s", i ? "," : "");
			hctl_shape_row_json(sh->domains[i].name,
			    &sh->domains[i]);
		}
		printf("],\"other_domains\":%zu}\n", sh->ndomains - n);
		return;
	}
	printf("%-24s %6s", "age (upper bound)", "total");
	for (b = 0; b < SELECT_NBUCKETS; b++)
		printf(" %5s", select_bucket_name(b));
	putchar('\n');
	hctl_shape_row_text("TOTAL", &sh->all);
	for (i = 0; i < UTIL_ARRAY_LEN(hctl_shape_states); i++)
		hctl_shape_row_text(hctl_shape_states[i], &sh->states[i]);
	printf("-- sender domains (top %zu of %zu)\n", n, sh->ndomains);
	for (i = 0; i < n; i++)
		hctl_shape_row_text(sh->domains[i].name, &sh->domains[i]);
}

/* What hctl_print carries from one record of the answer to the next. */
struct hctl_out {
	const struct hctl_command *cmd;
	struct hctl_shape	 sh;
	time_t			 now;
	uint64_t		 nmsgs, bytes;
	bool			 json, any, sep;
};

/*
 * Read the answer's first line. Returns -1 when records follow (*ok set
 * to the exit code the answer means), else the exit code of an error
 * answer, already reported.
 */
static int
hctl_answer_head(struct evbuffer *ans, int *ok)
{
	char *first;
	size_t len;
	int rc;

	if ((first = evbuffer_readln(ans, &len, EVBUFFER_EOL_LF)) == NULL) {
		fprintf(stderr, "holdfastctl: no answer from the daemon\n");
		return 1;
	}
	if (strncmp(first, "error", 5) == 0) {
		char *e = hctl_esc(first[5] == ' ' ? first + 6 : "failed");

		fprintf(stderr, "holdfastctl: %s\n", e);
		free(e);
		rc = strncmp(first, "error usage:", 12) == 0 ? 2 : 1;
		free(first);
		return rc;
	}
	*ok = strcmp(first, "ok") == 0 ? 0 : 1;
	free(first);
	return -1;
}

/* One record as "key: value" lines (show, status and the others). */
static void
hctl_text_fields(struct hctl_out *o, const struct ctl_rec *rec)
{
	size_t i;

	/* A blank line ends the envelope (and the records of its further
	 * recipients). */
	if (o->cmd->output == HCTL_OUT_SHOW && o->any && !o->sep &&
	    rec->n > 0 && strcmp(rec->key[0], "rcpt") != 0) {
		printf("\n");
		o->sep = true;
	}
	for (i = 0; i < rec->n; i++) {
		char val[128];

		if (strcmp(rec->key[i], "line") != 0 &&
		    strcmp(rec->key[i], "header") != 0) {
			hctl_put(rec->key[i]);
			printf(": ");
		}
		if (o->cmd->output == HCTL_OUT_STATUS) {
			hctl_fmt_status(rec->key[i], rec->val[i], o->now, val,
			    sizeof(val));
			hctl_put(val);
		} else
			hctl_put(rec->val[i]);
		putchar('\n');
	}
}

/* One record of the answer, in the command's output form. */
static void
hctl_print_rec(struct hctl_out *o, const struct ctl_rec *rec)
{
	enum hctl_output out = o->cmd->output;

	if (out == HCTL_OUT_SHAPE) {
		hctl_shape_add(&o->sh, rec, o->now);
		return;
	}
	if (o->json) {
		printf("%s", o->any ? ",\n" : "");
		hctl_json_rec(rec);
	} else if (out == HCTL_OUT_QUEUE || (out == HCTL_OUT_BULK &&
	    ctl_proto_rec_get(rec, "id") != NULL))
		hctl_text_queue(rec, o->now, &o->nmsgs, &o->bytes);
	else if (out == HCTL_OUT_BULK)
		hctl_text_bulk(o->cmd->name, rec);
	else
		hctl_text_fields(o, rec);
	o->any = true;
}

/* What follows the last record: the shape table, the closing of a JSON
 * list, the queue's totals. */
static void
hctl_print_end(struct hctl_out *o, bool list, size_t top)
{
	size_t i;

	if (o->cmd->output == HCTL_OUT_SHAPE) {
		hctl_shape_print(&o->sh, top, o->json);
		for (i = 0; i < o->sh.ndomains; i++)
			free(o->sh.domains[i].name);
		free(o->sh.domains);
	} else if (list)
		printf("]\n");
	else if (o->json)
		printf("\n");
	else if (o->cmd->output == HCTL_OUT_QUEUE) {
		char b[32];

		hctl_fmt_bytes(o->bytes, b, sizeof(b));
		printf("-- %llu message%s, %s (%llu bytes)\n",
		    (unsigned long long)o->nmsgs, o->nmsgs == 1 ? "" : "s", b,
		    (unsigned long long)o->bytes);
	}
}

/* Print the answer; returns the exit code. */
static int
hctl_print(const struct hctl_command *cmd, struct evbuffer *ans, bool json,
    size_t top)
{
	struct hctl_out o;
	char *line;
	size_t len;
	bool list = json && cmd->output != HCTL_OUT_STATUS &&
	    cmd->output != HCTL_OUT_SHAPE;
	int rc, ok;

	if ((rc = hctl_answer_head(ans, &ok)) != -1)
		return rc;
	memset(&o, 0, sizeof(o));
	o.cmd = cmd;
	o.json = json;
	o.now = util_now();
	if (list)
		printf("[");
	while ((line = evbuffer_readln(ans, &len, EVBUFFER_EOL_LF)) != NULL) {
		struct ctl_rec rec;

		if (strcmp(line, ".") == 0) {
			free(line);
			break;
		}
		if (ctl_proto_rec_parse(line, &rec) == -1) {
			fprintf(stderr, "holdfastctl: malformed answer\n");
			free(line);
			return 1;
		}
		hctl_print_rec(&o, &rec);
		free(line);
	}
	hctl_print_end(&o, list, top);
	return ok;
}

/*
 * The request line's words cannot hold a space: in a selector's pattern
 * a space becomes '?', the glob for any one character (a reply such as
 * "451 4.7.1 try later" is matched by '*4.7.1 try*').
 */
static void
hctl_pattern_spaces(int argc, char **argv)
{
	int i;

	for (i = 1; i + 1 < argc; i++)
		if (strcmp(argv[i], "--from") == 0 ||
		    strcmp(argv[i], "--rcpt") == 0 ||
		    strcmp(argv[i], "--reply") == 0)
			for (char *p = argv[++i]; *p != '\0'; p++)
				if (*p == ' ')
					*p = '?';
}

/*
 * The words after the command: takes out --json and (shape) -n N, then
 * checks the arguments against the command's usage. Returns -1 when
 * they fit, else the exit code, already reported.
 */
static int
hctl_parse_args(const struct hctl_command *cmd, int *argcp, char **argv,
    bool *json, uint64_t *top)
{
	struct ctl_proto_args pargs;
	char err[512];
	int argc = *argcp, i, n, min, max;

	/* --json (where allowed) anywhere after the command; -n N (shape) */
	for (i = n = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			*json = true;
		else if (cmd->output == HCTL_OUT_SHAPE &&
		    strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
			if (util_parse_u64(argv[++i], top) == -1 || *top == 0)
				return hctl_bad_usage(cmd, "-n %s: not a "
				    "positive number", argv[i]);
		} else
			argv[n++] = argv[i];
	}
	argc = *argcp = n;
	if (cmd->output == HCTL_OUT_SHAPE)
		argc = *argcp = 1;
	min = cmd->min_args;
	max = cmd->max_args;
	if (min < 0) {
		const struct ctl_proto_command *pc =
		    ctl_proto_command_find(cmd->wire);

		min = pc != NULL ? pc->min_args : 0;
		max = pc != NULL ? pc->max_args : 0;
	}
	if (argc - 1 < min || argc - 1 > max)
		return hctl_bad_usage(cmd, "%s", argc - 1 < min ?
		    "too few arguments" : "too many arguments");
	hctl_pattern_spaces(argc, argv);
	for (i = 1; i < argc; i++)
		if (strchr(argv[i], ' ') != NULL || strchr(argv[i], '\n'))
			return hctl_bad_usage(cmd, "an argument has a "
			    "newline or a space");
	if (cmd->min_args < 0 && ctl_proto_check(ctl_proto_command_find(
	    cmd->wire), argc, argv, &pargs) == -1)
		return hctl_bad_usage(cmd, "%s", "arguments do not fit the usage");
	if (cmd->output == HCTL_OUT_BULK) {
		const char *ids[CTL_ARGS_MAX];
		struct select sel;
		size_t nids;

		if (select_parse(argc - 1, argv + 1, &sel, ids,
		    UTIL_ARRAY_LEN(ids), &nids, err, sizeof(err)) == -1)
			return hctl_bad_usage(cmd, "%s", err);
	}
	return -1;
}

/*
 * Send the request to the daemon (or answer it offline when allowed and
 * the daemon is down) and print the answer; returns the exit code.
 */
static int
hctl_request(const struct hctl_command *cmd, const char *path, int argc,
    char **argv, bool json, size_t top)
{
	struct evbuffer *req, *ans;
	struct config *cf;
	char err[512], *line;
	int i, rc;

	if ((cf = config_load(path, err, sizeof(err))) == NULL) {
		fprintf(stderr, "holdfastctl: %s\n", err);
		return 1;
	}
	req = evbuffer_new();
	ans = evbuffer_new();
	evbuffer_add_printf(req, "%s", cmd->wire);
	for (i = 1; i < argc; i++)
		evbuffer_add_printf(req, " %s", argv[i]);
	line = xstrndup((const char *)evbuffer_pullup(req, -1),
	    evbuffer_get_length(req));
	if (hctl_ask(cf->control_socket, line, ans) == -1) {
		if (cmd->offline && (errno == ENOENT ||
		    errno == ECONNREFUSED) &&
		    hctl_offline(cf, argc, argv, ans) == 0)
			rc = hctl_print(cmd, ans, json, top);
		else {
			fprintf(stderr, "holdfastctl: cannot reach the daemon "
			    "at %s: %s\n", cf->control_socket,
			    strerror(errno));
			rc = 1;
		}
	} else
		rc = hctl_print(cmd, ans, json, top);
	free(line);
	evbuffer_free(req);
	evbuffer_free(ans);
	config_free(cf);
	return rc;
}

/*
 * What needs no daemon: help, a command's -h/--help, version, check-mx.
 * Returns -1 when the command goes to the daemon, else the exit code.
 */
static int
hctl_local(const struct hctl_command *cmd, int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++)
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
			return hctl_help(cmd->name);
	if (strcmp(argv[0], "version") == 0 && argc == 1) {
		printf("holdfastctl %s\n", HOLDFAST_VERSION);
		return 0;
	}
	if (strcmp(argv[0], "check-mx") == 0)
		return mxcheck_main(argc, argv);
	if (cmd->wire == NULL)
		return hctl_usage();
	return -1;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = HOLDFASTCTL_DEFAULT_CONF;
	const struct hctl_command *cmd = NULL;
	bool json = false;
	uint64_t top = 10;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
		if (ch == 'h') {
			hctl_usage_fp(stdout);
			return 0;
		}
		if (ch != 'c')
			return hctl_usage();
		path = optarg;
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		return hctl_usage();
	if (strcmp(argv[0], "help") == 0) {
		if (argc == 1) {
			hctl_usage_fp(stdout);
			return 0;
		}
		return argc == 2 ? hctl_help(argv[1]) : hctl_usage();
	}
	if ((cmd = hctl_command_find(argv[0])) == NULL) {
		fprintf(stderr, "holdfastctl: unknown command %s\n", argv[0]);
		return hctl_usage();
	}
	if ((rc = hctl_local(cmd, argc, argv)) != -1)
		return rc;
	if ((rc = hctl_check_opts(cmd, argc, argv)) != -1)
		return rc;
	if ((rc = hctl_parse_args(cmd, &argc, argv, &json, &top)) != -1)
		return rc;
	return hctl_request(cmd, path, argc, argv, json, (size_t)top);
}
