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
#include "util.h"
#include "xmalloc.h"

#define HOLDFASTCTL_DEFAULT_CONF "/etc/holdfast/holdfast.conf"

enum hctl_output {
	HCTL_OUT_NONE,		/* ok / error only */
	HCTL_OUT_QUEUE,		/* message records */
	HCTL_OUT_SHOW,
	HCTL_OUT_STATUS,
};

struct hctl_command {
	const char		*name;
	const char		*wire;		/* verb sent to the daemon */
	int			 min_args, max_args;
	enum hctl_output	 output;
	bool			 offline;	/* works from the spool alone */
	const char		*usage;
};

static const struct hctl_command hctl_commands[] = {
	{ "queue", "queue", 0, 0, HCTL_OUT_QUEUE, true, "queue [--json]" },
	{ "mailq", "queue", 0, 0, HCTL_OUT_QUEUE, true, "mailq [--json]" },
	{ "show", "show", 1, 2, HCTL_OUT_SHOW, true,
	  "show ID [--body] [--json]" },
	{ "flush", "flush", 0, CTL_ARGS_MAX - 1, HCTL_OUT_NONE, false,
	  "flush [ID...]" },
	{ "hold", "hold", 1, CTL_ARGS_MAX - 1, HCTL_OUT_NONE, false,
	  "hold ID...|all" },
	{ "release", "release", 1, CTL_ARGS_MAX - 1, HCTL_OUT_NONE, false,
	  "release ID...|all" },
	{ "delete", "delete", 1, CTL_ARGS_MAX - 1, HCTL_OUT_NONE, false,
	  "delete ID..." },
	{ "dead", "dead", 0, 0, HCTL_OUT_QUEUE, true, "dead [--json]" },
	{ "requeue", "requeue", 1, CTL_ARGS_MAX - 1, HCTL_OUT_NONE, false,
	  "requeue ID..." },
	{ "hold-mode", "hold-mode", 1, 3, HCTL_OUT_NONE, false,
	  "hold-mode on [--for DURATION] | hold-mode off" },
	{ "status", "status", 0, 0, HCTL_OUT_STATUS, false,
	  "status [--json]" },
};

static int
hctl_usage(void)
{
	size_t i;

	fprintf(stderr, "usage: holdfastctl [-c FILE] COMMAND [ARGS]\n"
	    "commands:\n");
	for (i = 0; i < UTIL_ARRAY_LEN(hctl_commands); i++)
		fprintf(stderr, "  %s\n", hctl_commands[i].usage);
	fprintf(stderr, "  check-mx DOMAIN --expect HOST[:PREF],... "
	    "[--server IP[:PORT]] [--prom FILE]\n  version\n");
	return 2;
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
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		evbuffer_add(ans, buf, (size_t)n);
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

static void
hctl_fmt_time(const char *v, char *out, size_t outlen)
{
	uint64_t t;
	struct tm tm;
	time_t tt;

	if (v == NULL || util_parse_u64(v, &t) == -1 || t == 0) {
		util_copy(out, outlen, "-");
		return;
	}
	tt = (time_t)t;
	localtime_r(&tt, &tm);
	strftime(out, outlen, "%Y-%m-%d %H:%M:%S", &tm);
}

static void
hctl_text_queue(const struct ctl_rec *rec, uint64_t *nmsgs, uint64_t *bytes)
{
	const char *v;
	char arrival[32], next[32];
	uint64_t size = 0;
	size_t i;

	if ((v = ctl_proto_rec_get(rec, "size")) != NULL)
		util_parse_u64(v, &size);
	hctl_fmt_time(ctl_proto_rec_get(rec, "arrival"), arrival,
	    sizeof(arrival));
	hctl_fmt_time(ctl_proto_rec_get(rec, "next_attempt"), next,
	    sizeof(next));
	{
		const char *id = ctl_proto_rec_get(rec, "id");
		const char *state = ctl_proto_rec_get(rec, "state");
		const char *attempts = ctl_proto_rec_get(rec, "attempts");
		const char *sender = ctl_proto_rec_get(rec, "sender");

		char *eid = hctl_esc(id ? id : "?");
		char *estate = hctl_esc(state ? state : "?");
		char *eatt = hctl_esc(attempts ? attempts : "-");
		char *esender = hctl_esc(sender ? sender : "?");

		printf("%-16s %10llu %s %-9s %3s  <%s>\n", eid,
		    (unsigned long long)size, arrival, estate, eatt, esender);
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

/* Print the answer; returns the exit code. */
static int
hctl_print(const struct hctl_command *cmd, struct evbuffer *ans, bool json)
{
	char *line, *first;
	size_t len;
	uint64_t nmsgs = 0, bytes = 0;
	bool any = false, sep = false;
	int rc;

	if ((first = evbuffer_readln(ans, &len, EVBUFFER_EOL_LF)) == NULL) {
		fprintf(stderr, "holdfastctl: no answer from the daemon\n");
		return 1;
	}
	if (strncmp(first, "error", 5) == 0) {
		char *e = hctl_esc(first[5] == ' ' ? first + 6 : "failed");

		fprintf(stderr, "holdfastctl: %s\n", e);
		free(e);
		free(first);
		return 1;
	}
	rc = strcmp(first, "ok") == 0 ? 0 : 1;
	free(first);
	if (json && cmd->output != HCTL_OUT_STATUS)
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
		if (json) {
			printf("%s", any ? ",\n" : "");
			hctl_json_rec(&rec);
		} else if (cmd->output == HCTL_OUT_QUEUE)
			hctl_text_queue(&rec, &nmsgs, &bytes);
		else {
			/* A blank line ends the envelope (and the records of
			 * its further recipients). */
			if (cmd->output == HCTL_OUT_SHOW && any && !sep &&
			    rec.n > 0 && strcmp(rec.key[0], "rcpt") != 0) {
				printf("\n");
				sep = true;
			}
			for (size_t i = 0; i < rec.n; i++) {
				if (strcmp(rec.key[i], "line") != 0 &&
				    strcmp(rec.key[i], "header") != 0) {
					hctl_put(rec.key[i]);
					printf(": ");
				}
				hctl_put(rec.val[i]);
				putchar('\n');
			}
		}
		any = true;
		free(line);
	}
	if (json && cmd->output != HCTL_OUT_STATUS)
		printf("]\n");
	else if (json)
		printf("\n");
	else if (cmd->output == HCTL_OUT_QUEUE)
		printf("-- %llu message%s, %llu bytes\n",
		    (unsigned long long)nmsgs, nmsgs == 1 ? "" : "s",
		    (unsigned long long)bytes);
	return rc;
}

/* hold-mode on [--for DURATION] | off */
static bool
hctl_hold_mode_ok(int argc, char **argv)
{
	uint64_t secs;

	if (strcmp(argv[1], "off") == 0)
		return argc == 2;
	if (strcmp(argv[1], "on") != 0)
		return false;
	return argc == 2 || (argc == 4 && strcmp(argv[2], "--for") == 0 &&
	    util_parse_duration(argv[3], &secs) == 0 && secs > 0);
}

int
main(int argc, char **argv)
{
	const char *path = HOLDFASTCTL_DEFAULT_CONF;
	const struct hctl_command *cmd = NULL;
	struct evbuffer *req, *ans;
	struct config *cf;
	char err[512], *line;
	bool json = false;
	int ch, i, n, rc;

	while ((ch = getopt(argc, argv, "+c:")) != -1) {
		if (ch != 'c')
			return hctl_usage();
		path = optarg;
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		return hctl_usage();
	if (strcmp(argv[0], "version") == 0 && argc == 1) {
		printf("holdfastctl %s\n", HOLDFAST_VERSION);
		return 0;
	}
	if (strcmp(argv[0], "check-mx") == 0)
		return mxcheck_main(argc, argv);
	/* --json anywhere after the command */
	for (i = n = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else
			argv[n++] = argv[i];
	}
	argc = n;
	for (i = 0; i < (int)UTIL_ARRAY_LEN(hctl_commands); i++)
		if (strcmp(hctl_commands[i].name, argv[0]) == 0)
			cmd = &hctl_commands[i];
	if (cmd == NULL || argc - 1 < cmd->min_args ||
	    argc - 1 > cmd->max_args)
		return hctl_usage();
	for (i = 1; i < argc; i++)
		if (strchr(argv[i], ' ') != NULL || strchr(argv[i], '\n'))
			return hctl_usage();
	if (strcmp(cmd->name, "hold-mode") == 0 && !hctl_hold_mode_ok(argc,
	    argv))
		return hctl_usage();
	if (strcmp(cmd->name, "show") == 0 && argc == 3 &&
	    strcmp(argv[2], "--body") != 0)
		return hctl_usage();
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
			rc = hctl_print(cmd, ans, json);
		else {
			fprintf(stderr, "holdfastctl: cannot reach the daemon "
			    "at %s: %s\n", cf->control_socket,
			    strerror(errno));
			rc = 1;
		}
	} else
		rc = hctl_print(cmd, ans, json);
	free(line);
	evbuffer_free(req);
	evbuffer_free(ans);
	config_free(cf);
	return rc;
}
