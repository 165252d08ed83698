#include "ctl_proto.h"

#include <event2/buffer.h>

#include "envelope.h"
#include "t.h"

static char *
take_line(struct evbuffer *b)
{
	size_t len;

	return evbuffer_readln(b, &len, EVBUFFER_EOL_LF);
}

static void
test_roundtrip(void)
{
	static const char *const values[] = {
		"plain", "", "with space", "per%cent", "a=b", "tab\there",
		"\x01\x7f\xff", "250 2.0.0 Ok: queued as X", "<a@b>",
	};
	struct evbuffer *b = evbuffer_new();
	struct ctl_rec rec;
	char *line;
	size_t i;

	for (i = 0; i < sizeof(values) / sizeof(values[0]); i++)
		ctl_proto_kv(b, "k", values[i]);
	ctl_proto_kvu(b, "n", 18446744073709551615ULL);
	ctl_proto_rec_end(b);
	line = take_line(b);
	T_CHECK(line != NULL && strchr(line, '\n') == NULL);
	T_CHECK(ctl_proto_rec_parse(line, &rec) == 0);
	T_CHECK(rec.n == sizeof(values) / sizeof(values[0]) + 1);
	for (i = 0; i < sizeof(values) / sizeof(values[0]) && i < rec.n; i++)
		T_STREQ(rec.val[i], values[i]);
	T_STREQ(ctl_proto_rec_get(&rec, "n"), "18446744073709551615");
	T_CHECK(ctl_proto_rec_get(&rec, "missing") == NULL);
	free(line);
	evbuffer_free(b);
}

static void
test_malformed(void)
{
	static const char *const bad[] = { "noequals", "=v", "k=%zz", "k=%4",
	    "k=%" };
	struct ctl_rec rec;
	char buf[64];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), "%s", bad[i]);
		T_CHECK(ctl_proto_rec_parse(buf, &rec) == -1);
	}
}

static void
test_split(void)
{
	char line[] = "hold  0123456789abcdef all ", *argv[3];

	T_CHECK(ctl_proto_split(line, argv, 3) == 3);
	T_STREQ(argv[0], "hold");
	T_STREQ(argv[2], "all");
	{
		char l2[] = "a b c d", *v2[3];

		T_CHECK(ctl_proto_split(l2, v2, 3) == -1);
	}
}

static void
test_env_rec(void)
{
	struct envelope *env = envelope_new();
	struct evbuffer *b = evbuffer_new();
	struct ctl_rec rec;
	char *line;

	memcpy(env->id, "0123456789abcdef", 17);
	envelope_set_str(&env->sender, "s@x.example");
	envelope_add_rcpt(env, "a@ours.example", NULL, NULL);
	envelope_add_rcpt(env, "b@ours.example", NULL, NULL);
	env->rcpts[1].state = ENVELOPE_RCPT_DEAD;
	env->attempts = 2;
	envelope_set_str(&env->last_reply, "451 4.3.0 later");
	ctl_proto_env_rec(b, SPOOL_QUEUE, env);
	line = take_line(b);
	T_CHECK(ctl_proto_rec_parse(line, &rec) == 0);
	T_STREQ(ctl_proto_rec_get(&rec, "state"), "deferred");
	T_STREQ(ctl_proto_rec_get(&rec, "last_reply"), "451 4.3.0 later");
	T_STREQ(ctl_proto_rec_get(&rec, "rcpt"), "pending:a@ours.example");
	T_STREQ(rec.val[rec.n - 1], "dead:b@ours.example");
	T_STREQ(ctl_proto_state(SPOOL_HOLD, env), "held");
	T_STREQ(ctl_proto_state(SPOOL_DEAD, env), "dead");
	T_CHECK(ctl_proto_rec_get(&rec, "reason") == NULL);
	free(line);

	/* The primary is down: a queued message waits for it, held and dead
	 * ones keep their state. */
	ctl_proto_env_rec_live(b, SPOOL_QUEUE, env, "Connection refused");
	line = take_line(b);
	T_CHECK(ctl_proto_rec_parse(line, &rec) == 0);
	T_STREQ(ctl_proto_rec_get(&rec, "state"), "waiting");
	T_STREQ(ctl_proto_rec_get(&rec, "reason"), "primary-down");
	T_STREQ(ctl_proto_rec_get(&rec, "primary_reply"), "Connection refused");
	T_STREQ(ctl_proto_rec_get(&rec, "last_reply"), "451 4.3.0 later");
	free(line);
	ctl_proto_env_rec_live(b, SPOOL_HOLD, env, "Connection refused");
	line = take_line(b);
	T_CHECK(ctl_proto_rec_parse(line, &rec) == 0);
	T_STREQ(ctl_proto_rec_get(&rec, "state"), "held");
	T_CHECK(ctl_proto_rec_get(&rec, "primary_reply") == NULL);
	free(line);
	evbuffer_free(b);
	envelope_free(env);
}

static void
test_commands(void)
{
	const struct ctl_proto_command *c;
	size_t n, i, j;

	c = ctl_proto_commands(&n);
	T_CHECK(n >= 10);
	for (i = 0; i < n; i++) {
		T_CHECK(c[i].name != NULL && c[i].usage != NULL);
		T_CHECK(c[i].min_args >= 0 && c[i].min_args <= c[i].max_args);
		T_CHECK(c[i].max_args < CTL_ARGS_MAX);
		T_CHECK(ctl_proto_command_find(c[i].name) == &c[i]);
		for (j = 0; j < i; j++)
			T_CHECK(strcmp(c[i].name, c[j].name) != 0);
	}
	T_CHECK(ctl_proto_command_find("frobnicate") == NULL);
	T_CHECK(ctl_proto_command_find("") == NULL);
}

/* 300 dead recipients: the record stays within CTL_REC_MAX pairs. */
static void
test_env_rec_many(void)
{
	struct envelope *env = envelope_new();
	struct evbuffer *b = evbuffer_new();
	struct ctl_rec rec;
	char *line, addr[64];
	size_t i, nrcpt = 0, nreply = 0;

	memcpy(env->id, "0123456789abcdef", 17);
	envelope_set_str(&env->sender, "s@x.example");
	for (i = 0; i < 300; i++) {
		snprintf(addr, sizeof(addr), "r%03zu@ours.example", i);
		envelope_add_rcpt(env, addr, NULL, NULL);
		env->rcpts[i].state = ENVELOPE_RCPT_DEAD;
		envelope_set_str(&env->rcpts[i].reply, "550 5.1.1 no");
	}
	ctl_proto_env_rec(b, SPOOL_DEAD, env);
	line = take_line(b);
	T_CHECK(line != NULL && ctl_proto_rec_parse(line, &rec) == 0);
	for (i = 0; line != NULL && i < rec.n; i++) {
		nrcpt += strcmp(rec.key[i], "rcpt") == 0;
		nreply += strcmp(rec.key[i], "rcpt_reply") == 0;
	}
	T_CHECK(nrcpt == CTL_REC_RCPTS && nreply == CTL_REC_RCPTS);
	T_STREQ(ctl_proto_rec_get(&rec, "rcpt_more"), "200");
	T_STREQ(ctl_proto_rec_get(&rec, "rcpt_reply"),
	    "<r000@ours.example> 550 5.1.1 no");
	free(line);
	evbuffer_free(b);
	envelope_free(env);
}

/* Every verb's argument rules, one table both sides check with. */
static void
test_check(void)
{
	static const struct {
		const char	*line;
		int		 rc;
		bool		 on;
		unsigned long long secs;
		const char	*who;
	} cases[] = {
		{ "hold-mode on", 0, true, 86400, NULL },
		{ "hold-mode on --for 2h", 0, true, 7200, NULL },
		{ "hold-mode off", 0, false, 86400, NULL },
		{ "hold-mode off --for 2h", -1, false, 0, NULL },
		{ "hold-mode on --for 0", -1, false, 0, NULL },
		{ "hold-mode on --four 2h", -1, false, 0, NULL },
		{ "hold-mode maybe", -1, false, 0, NULL },
		{ "pause-smtp", 0, false, 3600, NULL },
		{ "pause-smtp --for 5m", 0, false, 300, NULL },
		{ "pause-smtp --for", -1, false, 0, NULL },
		{ "pause-smtp 5m x", -1, false, 0, NULL },
		{ "trace on all", 0, true, 600, NULL },
		{ "trace on 192.0.2.0/24 --for 1m", 0, true, 60, "192.0.2.0/24" },
		{ "trace on", -1, false, 0, NULL },
		{ "trace on all --for", -1, false, 0, NULL },
		{ "trace off", 0, false, 600, NULL },
		{ "trace off all", -1, false, 0, NULL },
		{ "show 0123456789abcdef --body", 0, false, 0, NULL },
		{ "show 0123456789abcdef --bodies", -1, false, 0, NULL },
		{ "queue x", -1, false, 0, NULL },
		{ "status", 0, false, 0, NULL },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char line[128], *argv[CTL_ARGS_MAX];
		struct ctl_proto_args a;
		int argc, rc;

		snprintf(line, sizeof(line), "%s", cases[i].line);
		argc = ctl_proto_split(line, argv, CTL_ARGS_MAX);
		rc = ctl_proto_check(ctl_proto_command_find(argv[0]), argc,
		    argv, &a);
		if (rc != cases[i].rc || (rc == 0 && (a.on != cases[i].on ||
		    a.secs != cases[i].secs || (a.who == NULL) !=
		    (cases[i].who == NULL)))) {
			fprintf(stderr, "  \"%s\": rc %d\n", cases[i].line,
			    rc);
			T_CHECK(!"check");
		}
	}
}

/* The usage line: the name before every alternative, extra at the end. */
static void
test_usage(void)
{
	char u[256];

	ctl_proto_usage(ctl_proto_command_find("trace"), "trace", "", u,
	    sizeof(u));
	T_STREQ(u, "trace on ADDR|all [--for DURATION] | trace off");
	ctl_proto_usage(ctl_proto_command_find("show"), "show", "[--json]",
	    u, sizeof(u));
	T_STREQ(u, "show ID [--body] [--json]");
	ctl_proto_usage(ctl_proto_command_find("queue"), "mailq", "[--json]",
	    u, sizeof(u));
	T_STREQ(u, "mailq [--json]");
	ctl_proto_usage(NULL, "version", "", u, sizeof(u));
	T_STREQ(u, "version");
	ctl_proto_usage(ctl_proto_command_find("hold"), "hold", "", u, 12);
	T_STREQ(u, "hold ID...|");	/* cut, terminated */
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "ctl_proto_roundtrip", test_roundtrip },
		{ "ctl_proto_malformed", test_malformed },
		{ "ctl_proto_split", test_split },
		{ "ctl_proto_env_rec", test_env_rec },
		{ "ctl_proto_commands", test_commands },
		{ "ctl_proto_check", test_check },
		{ "ctl_proto_usage", test_usage },
		{ "ctl_proto_env_rec_many", test_env_rec_many },
	};

	return T_RUN(cases);
}
