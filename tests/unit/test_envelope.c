#include "envelope.h"

#include <stdio.h>
#include <stdlib.h>

#include "t.h"
#include "xmalloc.h"

#define HELO_HOSTILE "a b\r\nRCPT: x\\y\xff\x01 \x7f "

static struct envelope *
full_envelope(void)
{
	struct envelope *env = envelope_new();

	memcpy(env->id, "0123456789abcdef", ENVELOPE_ID_LEN + 1);
	env->arrival = 1700000000;
	envelope_set_str(&env->sender, "");
	env->size = 123456789012ULL;
	env->body_8bit = true;
	env->smtputf8 = true;
	envelope_set_str(&env->ret, "HDRS");
	envelope_set_str(&env->envid, "QQ+2Bx");
	envelope_set_str(&env->client_addr, "2001:db8::7");
	env->client_port = 65535;
	envelope_set_str(&env->client_helo, HELO_HOSTILE);
	envelope_set_str(&env->client_name, "");
	envelope_set_str(&env->proto, "ESMTPS");
	env->attempts = 3;
	env->next_attempt = 1700000600;
	envelope_set_str(&env->last_reply, "451 4.3.0 try\tlater");
	envelope_set_str(&env->dead_reason, "550 5.1.1 no = such\\user");
	env->held = true;
	/* distinct from arrival and from each other: a swap shows */
	env->held_since = 1700000900;
	env->age_base = 1700000300;
	envelope_add_rcpt(env, "b@ours.example", "SUCCESS,FAILURE",
	    "rfc822;b@x");
	envelope_add_rcpt(env, "c d@ours.example", NULL, NULL);
	envelope_add_rcpt(env, "", NULL, "x=y z");
	env->rcpts[1].state = ENVELOPE_RCPT_DONE;
	envelope_set_str(&env->rcpts[1].reply, "250 2.0.0 Ok");
	env->rcpts[2].state = ENVELOPE_RCPT_DEAD;
	envelope_set_str(&env->rcpts[2].reply, "reply=550 \xc3\xa9");
	return env;
}

static bool
streq_null(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static void
test_round_trip(void)
{
	struct envelope *a = full_envelope(), *b;
	char err[128] = "", *t1, *t2;
	size_t l1, l2, i;

	t1 = envelope_dump(a, &l1);
	T_CHECK(strlen(t1) == l1);
	/* one line per field: no raw control or high bytes */
	for (i = 0; i < l1; i++)
		T_CHECK(t1[i] == '\n' || (t1[i] >= 0x20 && t1[i] <= 0x7e));
	b = envelope_load(t1, l1, err, sizeof(err));
	T_CHECK(b != NULL);
	if (b == NULL) {
		fprintf(stderr, "  err: %s\n", err);
		free(t1);
		envelope_free(a);
		return;
	}
	T_STREQ(b->id, a->id);
	T_CHECK(b->arrival == a->arrival);
	T_STREQ(b->sender, "");
	T_CHECK(b->size == a->size);
	T_CHECK(b->body_8bit && b->smtputf8 && b->held);
	T_STREQ(b->ret, "HDRS");
	T_STREQ(b->envid, "QQ+2Bx");
	T_STREQ(b->client_addr, "2001:db8::7");
	T_CHECK(b->client_port == 65535);
	T_STREQ(b->client_helo, HELO_HOSTILE);
	T_STREQ(b->client_name, "");
	T_STREQ(b->proto, "ESMTPS");
	T_CHECK(b->attempts == 3 && b->next_attempt == 1700000600);
	T_CHECK(b->held_since == 1700000900);
	T_CHECK(b->age_base == 1700000300);
	T_CHECK(strstr(t1, "\nheld_since: 1700000900\n") != NULL);
	T_CHECK(strstr(t1, "\nage_base: 1700000300\n") != NULL);
	T_STREQ(b->last_reply, a->last_reply);
	T_STREQ(b->dead_reason, a->dead_reason);
	T_CHECK(b->nrcpt == 3);
	for (i = 0; i < a->nrcpt && i < b->nrcpt; i++) {
		T_STREQ(b->rcpts[i].addr, a->rcpts[i].addr);
		T_CHECK(streq_null(b->rcpts[i].notify, a->rcpts[i].notify));
		T_CHECK(streq_null(b->rcpts[i].orcpt, a->rcpts[i].orcpt));
		T_CHECK(streq_null(b->rcpts[i].reply, a->rcpts[i].reply));
		T_CHECK(b->rcpts[i].state == a->rcpts[i].state);
	}
	T_CHECK(envelope_count(b, ENVELOPE_RCPT_PENDING) == 1);
	T_CHECK(envelope_count(b, ENVELOPE_RCPT_DONE) == 1);
	T_CHECK(envelope_count(b, ENVELOPE_RCPT_DEAD) == 1);
	t2 = envelope_dump(b, &l2);
	T_CHECK(l1 == l2 && memcmp(t1, t2, l1) == 0);
	free(t1);
	free(t2);
	envelope_free(a);
	envelope_free(b);
}

#define MIN_HEAD "version: 1\nid: 0123456789abcdef\narrival: 1700000000\n"
#define MIN_TEXT MIN_HEAD "sender: a@x.example\nrcpt: pending b@y\n"

/* The exact text of a minimal envelope: NULL optionals are absent. */
static void
test_minimal_text(void)
{
	static const char want[] = "version: 1\n"
	    "id: 0123456789abcdef\n"
	    "arrival: 1700000000\n"
	    "sender: a@x.example\n"
	    "size: 0\n"
	    "client_port: 0\n"
	    "attempts: 0\n"
	    "next_attempt: 0\n"
	    "held_since: 0\n"
	    "age_base: 0\n"
	    "rcpt: pending b@y\n";
	struct envelope *env;
	char err[128] = "", *t;
	size_t len;

	env = envelope_load(MIN_TEXT, strlen(MIN_TEXT), err, sizeof(err));
	T_CHECK(env != NULL);
	if (env == NULL)
		return;
	T_CHECK(env->ret == NULL && env->client_helo == NULL);
	T_CHECK(!env->body_8bit && !env->held);
	T_CHECK(env->rcpts[0].notify == NULL && env->rcpts[0].reply == NULL);
	t = envelope_dump(env, &len);
	T_STREQ(t, want);
	free(t);
	envelope_free(env);
}

static void
test_malformed(void)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "", "missing version" },
		{ "version: 2\n", "line 1: version: unsupported version" },
		{ "version: 1", "line 1: no newline at end" },
		{ "id: 0123456789abcdef\n", "line 1: version must be the first" },
		{ MIN_TEXT "version: 1\n", "line 6: version must be the first" },
		{ MIN_TEXT "bogus: 1\n", "line 6: unknown key" },
		{ MIN_TEXT "Sender: x\n", "line 6: unknown key" },
		{ MIN_TEXT "sender: x\n", "line 6: duplicate key sender" },
		{ MIN_TEXT "size 5\n", "line 6: expected key: value" },
		{ MIN_TEXT "size:5\n", "line 6: expected key: value" },
		{ MIN_TEXT "size: 5", "line 6: no newline at end" },
		{ MIN_TEXT "size: -1\n", "line 6: size: bad number" },
		{ MIN_TEXT "size: 1x\n", "line 6: size: bad number" },
		{ MIN_TEXT "size: \n", "line 6: size: bad number" },
		{ MIN_TEXT "size: 18446744073709551616\n", "size: bad number" },
		{ "version: 1\nid: 0123456789abcdef\n"
		    "arrival: 9223372036854775808\n"
		    "sender: a@x.example\nrcpt: pending b@y\n",
		    "line 3: arrival: bad number" },
		{ MIN_TEXT "next_attempt: 9223372036854775808\n",
		    "next_attempt: bad number" },
		{ MIN_TEXT "client_port: 65536\n", "client_port: bad number" },
		{ MIN_TEXT "held: no\n", "line 6: held: bad flag value" },
		{ MIN_TEXT "body: 7bit\n", "body: bad flag value" },
		{ MIN_TEXT "client_helo: a\\x0\n", "client_helo: bad escape" },
		{ MIN_TEXT "client_helo: a\\x00b\n", "client_helo: bad escape" },
		{ MIN_TEXT "client_helo: a\\\\\n", "client_helo: bad escape" },
		{ MIN_TEXT "client_helo: a\\n\n", "client_helo: bad escape" },
		{ MIN_TEXT "client_helo: a\\xg0\n", "client_helo: bad escape" },
		{ MIN_TEXT "client_helo: a\rb\n", "client_helo: bad escape" },
		{ MIN_TEXT "client_helo: \xff\n", "client_helo: bad escape" },
		{ MIN_TEXT "client_helo: a\tb\n", "client_helo: bad escape" },
		{ MIN_TEXT "\n", "line 6: expected key: value" },
		{ MIN_TEXT "rcpt: queued c@y\n", "line 6: rcpt: bad rcpt state" },
		{ MIN_TEXT "rcpt: pending\n", "rcpt: rcpt without address" },
		{ MIN_TEXT "rcpt: pending c@y \n", "rcpt: bad rcpt field" },
		{ MIN_TEXT "rcpt: pending c@y  reply=x\n", "bad rcpt field" },
		{ MIN_TEXT "rcpt: pending c@y foo=1\n", "bad rcpt field" },
		{ MIN_TEXT "rcpt: pending c@y reply=1 reply=2\n",
		    "duplicate rcpt field" },
		{ MIN_TEXT "rcpt: pending c@y reply=\\x\n", "bad escape" },
		{ MIN_HEAD "sender: a\n", "missing rcpt" },
		{ "version: 1\narrival: 1\nsender: a\nrcpt: done b\n",
		    "missing id" },
		{ "version: 1\nid: 0123456789abcdef\nsender: a\nrcpt: done b\n",
		    "missing arrival" },
		{ MIN_HEAD "rcpt: done b\n", "missing sender" },
		{ "version: 1\nid: 0123456789ABCDEF\n", "line 2: id: id is not" },
		{ "version: 1\nid: 0123456789abcde\n", "line 2: id: id is not" },
		{ "version: 1\nid: 0123456789abcdef0\n", "id: id is not" },
		{ "version: 1\nid: 0123456789abcdeg\n", "id: id is not" },
		{ "version: 1\nid: ../../etc/passw\n", "id: id is not" },
	};
	struct envelope *env;
	char err[128];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		env = envelope_load(cases[i].text, strlen(cases[i].text), err,
		    sizeof(err));
		T_CHECK(env == NULL);
		envelope_free(env);
		if (strstr(err, cases[i].want) == NULL) {
			fprintf(stderr, "  case %zu: got \"%s\" want \"%s\"\n",
			    i, err, cases[i].want);
			T_CHECK(!"error text");
		}
	}
}

/* Embedded NUL, odd but valid forms, the size bound. */
static void
test_limits(void)
{
	static const char nul[] = MIN_TEXT "client_helo: a\0b\n";
	struct envelope *env;
	char err[128] = "", *big, *t;
	size_t n, len;

	env = envelope_load(nul, sizeof(nul) - 1, err, sizeof(err));
	T_CHECK(env == NULL && strstr(err, "bad escape") != NULL);
	envelope_free(env);

	/* "key:" is an empty value; upper-case escapes are accepted */
	env = envelope_load(MIN_TEXT "ret:\nenvid: \\x41\\x5C\n",
	    strlen(MIN_TEXT "ret:\nenvid: \\x41\\x5C\n"), err, sizeof(err));
	T_CHECK(env != NULL);
	if (env != NULL) {
		T_STREQ(env->ret, "");
		T_STREQ(env->envid, "A\\");
		t = envelope_dump(env, &len);
		T_CHECK(strstr(t, "ret: \nenvid: A\\x5c\n") != NULL);
		free(t);
	}
	envelope_free(env);

	/* over 1 MiB: refused before parsing */
	n = 1024 * 1024 + 1;
	big = xmalloc(n);
	memset(big, 'x', n);
	memcpy(big, MIN_TEXT, strlen(MIN_TEXT));
	big[n - 1] = '\n';
	env = envelope_load(big, n, err, sizeof(err));
	T_CHECK(env == NULL && strstr(err, "over") != NULL);
	envelope_free(env);
	free(big);

	/* 100001 recipients cannot fit in 1 MiB: refused either way */
	env = envelope_new();
	memcpy(env->id, "0123456789abcdef", ENVELOPE_ID_LEN + 1);
	for (n = 0; n < 100001; n++)
		envelope_add_rcpt(env, "a", NULL, NULL);
	t = envelope_dump(env, &len);
	envelope_free(env);
	env = envelope_load(t, len, err, sizeof(err));
	T_CHECK(env == NULL);
	envelope_free(env);
	free(t);
}

static void
test_helpers(void)
{
	struct envelope *env = envelope_new();

	T_STREQ(env->sender, "");
	envelope_set_str(&env->sender, "x@y");
	envelope_set_str(&env->sender, env->sender);	/* self-assign */
	T_STREQ(env->sender, "x@y");
	envelope_set_str(&env->ret, NULL);
	T_CHECK(env->ret == NULL);
	T_CHECK(envelope_count(env, ENVELOPE_RCPT_PENDING) == 0);
	envelope_add_rcpt(env, "a@b", "NEVER", NULL);
	T_CHECK(env->nrcpt == 1 && env->rcpts[0].state ==
	    ENVELOPE_RCPT_PENDING);
	T_STREQ(env->rcpts[0].notify, "NEVER");
	envelope_free(env);
	envelope_free(NULL);
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "envelope_round_trip", test_round_trip },
		{ "envelope_minimal_text", test_minimal_text },
		{ "envelope_malformed", test_malformed },
		{ "envelope_limits", test_limits },
		{ "envelope_helpers", test_helpers },
	};

	return T_RUN(cases);
}
