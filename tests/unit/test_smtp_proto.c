#include "smtp_proto.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sys/socket.h>

#include "t.h"
#include "util.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* A fixed-seed xorshift, so every run sees the same "random" inputs. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 32);
}

static void
test_split(void)
{
	static const struct {
		const char *line;
		int rc;
		const char *verb, *args;
	} cases[] = {
		{ "MAIL FROM:<a@b>", 0, "MAIL", "FROM:<a@b>" },
		{ "mail FROM:<a@b>", 0, "MAIL", "FROM:<a@b>" },
		{ "rCpT   TO:<a@b> NOTIFY=NEVER", 0, "RCPT", "TO:<a@b> NOTIFY=NEVER" },
		{ "QUIT", 0, "QUIT", "" },
		{ "NOOP ", 0, "NOOP", "" },
		{ "STARTTLS", 0, "STARTTLS", "" },
		{ "ABCDEFGHIJKLMNO", 0, "ABCDEFGHIJKLMNO", "" },
		{ "ABCDEFGHIJKLMNOP", -1, "", NULL },
		{ "", -1, "", NULL },
		{ " QUIT", -1, "", NULL },
		{ "MAIL:FROM", -1, "", NULL },
		{ "MAIL\tFROM", -1, "", NULL },
		{ "X-FOO", -1, "", NULL },
		{ "HELO2 x", -1, "", NULL },
		{ "EHLO \xc3\xa9", 0, "EHLO", "\xc3\xa9" },
		{ "\xc3\xa9HLO", -1, "", NULL },
	};
	char verb[SMTP_VERB_MAX], small[4];
	const char *args;
	size_t i;

	for (i = 0; i < NELEM(cases); i++) {
		args = NULL;
		if (smtp_proto_split(cases[i].line, verb, sizeof(verb),
		    &args) != cases[i].rc) {
			fprintf(stderr, "  case %zu: %s\n", i, cases[i].line);
			T_CHECK(!"rc");
			continue;
		}
		T_STREQ(verb, cases[i].verb);
		if (cases[i].args != NULL)
			T_STREQ(args, cases[i].args);
	}
	/* verblen bounds the verb too. */
	T_CHECK(smtp_proto_split("QUIT", small, sizeof(small), &args) == -1);
	T_CHECK(smtp_proto_split("RST", small, sizeof(small), &args) == 0);
	T_STREQ(small, "RST");
	T_CHECK(smtp_proto_split("RST", small, 0, &args) == -1);
}

static void
test_path(void)
{
	enum { N = 1, P = 2 };	/* want is_null, is_postmaster */
	static const struct {
		const char *in;
		enum smtp_path_status st;
		const char *mailbox, *domain;
		int flags;
		const char *rest;
	} cases[] = {
		{ "<a@b>", SMTP_PATH_OK, "a@b", "b", 0, "" },
		{ "  <a@b.example> SIZE=10", SMTP_PATH_OK, "a@b.example", "b.example", 0, "SIZE=10" },
		{ "<a@b>   SIZE=10 BODY=8BITMIME", SMTP_PATH_OK, "a@b", "b", 0, "SIZE=10 BODY=8BITMIME" },
		{ "<a@b> ", SMTP_PATH_OK, "a@b", "b", 0, "" },
		{ "<>", SMTP_PATH_OK, "", "", N, "" },
		{ "<> SIZE=0", SMTP_PATH_OK, "", "", N, "SIZE=0" },
		{ "<postmaster>", SMTP_PATH_OK, "postmaster", "", P, "" },
		{ "<PostMaster> X=1", SMTP_PATH_OK, "postmaster", "", P, "X=1" },
		{ "<postmaster@ours.example>", SMTP_PATH_OK, "postmaster@ours.example", "ours.example", 0, "" },
		{ "<First.Last+tag@Sub.Example.org.>", SMTP_PATH_OK, "First.Last+tag@Sub.Example.org.", "Sub.Example.org.", 0, "" },
		{ "<a#$&'*/=?^_`{|}~-@x-1.example>", SMTP_PATH_OK, "a#$&'*/=?^_`{|}~-@x-1.example", "x-1.example", 0, "" },
		{ "<\"john doe\"@ex.org>", SMTP_PATH_OK, "\"john doe\"@ex.org", "ex.org", 0, "" },
		{ "<\"a\\\"b\"@ex.org>", SMTP_PATH_OK, "\"a\\\"b\"@ex.org", "ex.org", 0, "" },
		{ "<\"a>b\"@ex.org>", SMTP_PATH_OK, "\"a>b\"@ex.org", "ex.org", 0, "" },
		{ "<j\xc3\xbc" "rgen@m\xc3\xbc" "nchen.example>", SMTP_PATH_OK, "j\xc3\xbc" "rgen@m\xc3\xbc" "nchen.example", "m\xc3\xbc" "nchen.example", 0, "" },
		/* Syntax errors. */
		{ "", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "a@b", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<a@b", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "a@b>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<a@b>x", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<a@b\0>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "< a@b>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<@>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<@b>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<a@>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<user>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<postmasters>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<\"postmaster\">", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<a b@c>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<a,b@c>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<.a@b>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<a.@b>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<a..b@c>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<a@b..c>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<a@.b>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<a@.>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<a@b_c>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<a@b c>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<\"\"@b>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<\"a\"b@c>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<\"abc@d>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<\"a\\\">", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		/* Shapes that route elsewhere. */
		{ "<@a,@b:u@ours.example>", SMTP_PATH_ROUTED, "u@ours.example", "ours.example", 0, "" },
		{ "<@a:u@ours> SIZE=1", SMTP_PATH_ROUTED, "u@ours", "ours", 0, "SIZE=1" },
		{ "<u%foreign@ours>", SMTP_PATH_ROUTED, "u%foreign@ours", "ours", 0, "" },
		{ "<u!foreign@ours>", SMTP_PATH_ROUTED, "u!foreign@ours", "ours", 0, "" },
		{ "<foreign!u@ours> BODY=7BIT", SMTP_PATH_ROUTED, "foreign!u@ours", "ours", 0, "BODY=7BIT" },
		{ "<u%v>", SMTP_PATH_ROUTED, "u%v", "", 0, "" },
		{ "<\"u@foreign\"@ours>", SMTP_PATH_ROUTED, "\"u@foreign\"@ours", "ours", 0, "" },
		{ "<\"u\\@foreign\"@ours>", SMTP_PATH_ROUTED, "\"u\\@foreign\"@ours", "ours", 0, "" },
		{ "<\"u%foreign\"@ours>", SMTP_PATH_ROUTED, "\"u%foreign\"@ours", "ours", 0, "" },
		{ "<u@foreign@ours>", SMTP_PATH_ROUTED, "u@foreign@ours", "ours", 0, "" },
		{ "<u@[1.2.3.4]>", SMTP_PATH_ROUTED, "u@[1.2.3.4]", "[1.2.3.4]", 0, "" },
		{ "<u@[IPv6:2001:db8::1]>", SMTP_PATH_ROUTED, "u@[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]", 0, "" },
		/* A control byte anywhere in the path is a syntax error. */
		{ "<u\x01@ours>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<u@ours\x7f>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<u\t@ours>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<u@ours\r\n>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<\"a\x01\"@b>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<postmaster\x1b>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<x\x1b]0;pwned\x07\rRCPT TO:<victim@ext.example>>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<x\x1b]0;pwned\x07\rRCPT TO:victim@ext.example>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<x\x1b]0;pwned\x07@ext.example>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<a\rb@ext.example>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<a@ext.example\r>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<a\x07@ext.example> SIZE=1", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<\"a\rb\"@ext.example>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<@a\x1b:u@ours>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<\x7f>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<\x1f@b>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
		{ "<@a:postmaster>", SMTP_PATH_ROUTED, "postmaster", "", 0, "" },
		{ "<\x01>", SMTP_PATH_SYNTAX, "", "", 0, NULL },
	};
	struct smtp_path path;
	enum smtp_path_status st;
	const char *rest;
	size_t i;

	for (i = 0; i < NELEM(cases); i++) {
		rest = NULL;
		st = smtp_proto_parse_path(cases[i].in, &path, &rest);
		if (st != cases[i].st) {
			fprintf(stderr, "  case %zu: %s: got %d want %d\n", i,
			    cases[i].in, (int)st, (int)cases[i].st);
			T_CHECK(!"status");
			continue;
		}
		if (st == SMTP_PATH_SYNTAX)
			continue;
		T_STREQ(path.mailbox, cases[i].mailbox);
		T_STREQ(path.domain, cases[i].domain);
		T_CHECK(path.is_null == ((cases[i].flags & N) != 0));
		T_CHECK(path.is_postmaster == ((cases[i].flags & P) != 0));
		T_STREQ(rest, cases[i].rest);
	}
}

static void
test_path_length(void)
{
	char in[SMTP_PATH_MAX + 16];
	struct smtp_path path;
	const char *rest;
	size_t content;

	/* <64 x a>@<b...b>: content length SMTP_PATH_MAX - 2 fits, one more
	 * does not. */
	for (content = SMTP_PATH_MAX - 4; content <= SMTP_PATH_MAX; content++) {
		memset(in, 'b', sizeof(in));
		in[0] = '<';
		memset(in + 1, 'a', 64);
		in[65] = '@';
		in[content + 1] = '>';
		in[content + 2] = '\0';
		T_CHECK(smtp_proto_parse_path(in, &path, &rest) ==
		    (content <= SMTP_PATH_MAX - 2 ? SMTP_PATH_OK :
		    SMTP_PATH_SYNTAX));
		if (content <= SMTP_PATH_MAX - 2)
			T_CHECK(strlen(path.mailbox) == content);
	}
}

/* Serialise parsed parameters as "K=V K ..." for comparison. */
static void
params_fmt(const struct smtp_param *p, int n, char *out, size_t outlen)
{
	size_t len = 0;
	int i;

	out[0] = '\0';
	for (i = 0; i < n; i++) {
		len += (size_t)snprintf(out + len, outlen - len, "%s%s%s%s",
		    i > 0 ? " " : "", p[i].keyword, p[i].has_value ? "=" : "",
		    p[i].value);
		if (len >= outlen)
			return;
	}
}

static void
test_params(void)
{
	static const struct {
		const char *in;
		int rc;
		const char *want;
	} cases[] = {
		{ "", 0, "" },
		{ "   ", 0, "" },
		{ "SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=abc "
		  "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@x", 7,
		  "SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=abc "
		  "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@x" },
		{ " size=10  body=7bit ", 2, "SIZE=10 BODY=7bit" },
		{ "x-foo-1=bar 9Z", 2, "X-FOO-1=bar 9Z" },
		{ "ENVID=\xc3\xa9t\xc3\xa9", 1, "ENVID=\xc3\xa9t\xc3\xa9" },
		{ "=x", -1, NULL },
		{ "SIZE=", -1, NULL },
		{ "SIZE==1", -1, NULL },
		{ "A=x=y", -1, NULL },
		{ "-X", -1, NULL },
		{ "SI_ZE=1", -1, NULL },
		{ "SIZE=a\tb", -1, NULL },
		{ "SIZE\t=1", -1, NULL },
		{ "SIZE=\x01", -1, NULL },
		{ "SIZE=\x7f", -1, NULL },
		{ "A B C D E F G H I J K L M N O P", 16, "A B C D E F G H I J K L M N O P" },
		{ "A B C D E F G H I J K L M N O P Q", -1, NULL },
		{ "ABCDEFGHIJKLMNOPQRSTUVWXYZ01234", 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZ01234" },
		{ "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", -1, NULL },
	};
	struct smtp_param p[SMTP_PARAMS_MAX];
	char got[2048], in[1024];
	size_t i;
	int n;

	for (i = 0; i < NELEM(cases); i++) {
		n = smtp_proto_parse_params(cases[i].in, p, SMTP_PARAMS_MAX);
		if (n != cases[i].rc) {
			fprintf(stderr, "  case %zu: %s: got %d\n", i,
			    cases[i].in, n);
			T_CHECK(!"rc");
			continue;
		}
		if (n >= 0) {
			params_fmt(p, n, got, sizeof(got));
			T_STREQ(got, cases[i].want);
		}
	}
	T_CHECK(smtp_proto_parse_params("A B", p, 2) == 2);
	T_CHECK(smtp_proto_parse_params("A B C", p, 2) == -1);
	T_CHECK(smtp_proto_parse_params("A", p, 0) == -1);
	T_CHECK(smtp_proto_parse_params("", p, 0) == 0);
	/* The longest value fits; one more byte does not. */
	memcpy(in, "X=", 2);
	memset(in + 2, 'v', sizeof(p[0].value) - 1);
	in[2 + sizeof(p[0].value) - 1] = '\0';
	T_CHECK(smtp_proto_parse_params(in, p, 1) == 1);
	T_CHECK(strlen(p[0].value) == sizeof(p[0].value) - 1);
	in[2 + sizeof(p[0].value) - 1] = 'v';
	in[2 + sizeof(p[0].value)] = '\0';
	T_CHECK(smtp_proto_parse_params(in, p, 1) == -1);
}

/* Feed lines; return the last rc (stopping at the first non-zero one). */
static int
reply_feed_all(struct smtp_reply *r, const char *const *lines)
{
	int rc = -1;

	smtp_proto_reply_init(r);
	for (; *lines != NULL; lines++) {
		rc = smtp_proto_reply_feed(r, *lines, strlen(*lines));
		if (rc != 0)
			break;
	}
	return rc;
}

static void
test_reply(void)
{
	static const struct {
		const char *lines[6];
		int rc, code;
		size_t nlines;
		const char *enhanced, *text;
	} cases[] = {
		{ { "250 ok" }, 1, 250, 1, "", "ok" },
		{ { "250" }, 1, 250, 1, "", "" },
		{ { "250 " }, 1, 250, 1, "", "" },
		{ { "451 4.3.0 try later" }, 1, 451, 1, "4.3.0", "try later" },
		{ { "554 5.7.1" }, 1, 554, 1, "5.7.1", "" },
		{ { "250 2.0.0   Ok: queued as X" }, 1, 250, 1, "2.0.0", "Ok: queued as X" },
		{ { "250-mx.example Hello", "250-PIPELINING", "250-SIZE 1000",
		    "250 8BITMIME" }, 1, 250, 4, "",
		  "mx.example Hello\nPIPELINING\nSIZE 1000\n8BITMIME" },
		{ { "550-5.1.1 no such user", "550-5.1.1", "550 5.1.1 see x" },
		  1, 550, 3, "5.1.1", "no such user\n\nsee x" },
		{ { "550-5.1.1 a", "550 5.1.2 b" }, 1, 550, 2, "5.1.1", "a\n5.1.2 b" },
		{ { "250-", "250 x" }, 1, 250, 2, "", "\nx" },
		{ { "250 4.3.0 x" }, 1, 250, 1, "", "4.3.0 x" },
		{ { "450 4.3.0x" }, 1, 450, 1, "", "4.3.0x" },
		{ { "450 4.3000.0 x" }, 1, 450, 1, "", "4.3000.0 x" },
		{ { "450 4..0 x" }, 1, 450, 1, "", "4..0 x" },
		{ { "350 3.0.0 x" }, 1, 350, 1, "", "3.0.0 x" },
		{ { "250 a\x01" "b\x7f" }, 1, 250, 1, "", "a?b?" },
		{ { "250-a", "251 b" }, -1, 250, 1, "", "a" },
		{ { "250-a", "25" }, -1, 250, 1, "", "a" },
		{ { "250-a", "250 b", "250 c" }, 1, 250, 2, "", "a\nb" },
		{ { "250x" }, -1, 0, 0, "", "" },
		{ { "25" }, -1, 0, 0, "", "" },
		{ { "" }, -1, 0, 0, "", "" },
		{ { "650 x" }, -1, 0, 0, "", "" },
		{ { "150 x" }, -1, 0, 0, "", "" },
		{ { "2a0 x" }, -1, 0, 0, "", "" },
		{ { " 250 x" }, -1, 0, 0, "", "" },
	};
	struct smtp_reply r;
	size_t i;
	int rc;

	for (i = 0; i < NELEM(cases); i++) {
		rc = reply_feed_all(&r, cases[i].lines);
		if (rc != cases[i].rc) {
			fprintf(stderr, "  case %zu: rc %d\n", i, rc);
			T_CHECK(!"rc");
			continue;
		}
		T_CHECK(r.code == cases[i].code);
		T_CHECK(r.nlines == cases[i].nlines);
		T_CHECK(r.complete == (rc == 1));
		T_STREQ(r.enhanced, cases[i].enhanced);
		T_STREQ(r.text, cases[i].text);
	}
	/* A third line after completion is refused. */
	smtp_proto_reply_init(&r);
	T_CHECK(smtp_proto_reply_feed(&r, "250 a", 5) == 1);
	T_CHECK(smtp_proto_reply_feed(&r, "250 b", 5) == -1);
	/* len counts, not the NUL. */
	smtp_proto_reply_init(&r);
	T_CHECK(smtp_proto_reply_feed(&r, "250 okGARBAGE", 6) == 1);
	T_STREQ(r.text, "ok");
	smtp_proto_reply_init(&r);
	T_CHECK(smtp_proto_reply_feed(&r, "250 a\0b", 7) == 1);
	T_STREQ(r.text, "a?b");
}

static void
test_reply_truncate(void)
{
	char line[1000];
	struct smtp_reply r;
	int i;

	memset(line, 'x', sizeof(line));
	memcpy(line, "250-", 4);
	smtp_proto_reply_init(&r);
	for (i = 0; i < 10; i++)
		T_CHECK(smtp_proto_reply_feed(&r, line, sizeof(line)) == 0);
	T_CHECK(smtp_proto_reply_feed(&r, "250 end", 7) == 1);
	T_CHECK(strlen(r.text) == SMTP_REPLY_MAX - 1);
	T_CHECK(r.nlines == 11);
}

static void
test_ehlo_has(void)
{
	static const char *const lines[] = {
		"250-mx.example.test Hello PIPELINING",
		"250-PIPELINING",
		"250-SIZE 1000",
		"250-8bitmime",
		"250-DSN",
		"250-XFORWARD NAME ADDR PROTO HELO",
		"250 STARTTLS",
		NULL,
	};
	static const struct {
		const char *kw;
		bool want;
	} cases[] = {
		{ "PIPELINING", true }, { "pipelining", true },
		{ "SIZE", true }, { "8BITMIME", true }, { "DSN", true },
		{ "XFORWARD", true }, { "STARTTLS", true },
		{ "NAME", false }, { "PIPE", false }, { "SIZE 10", false },
		{ "mx.example.test", false }, { "Hello", false },
		{ "SMTPUTF8", false }, { "", false }, { "STARTTLSX", false },
	};
	struct smtp_reply r;
	size_t i;

	T_CHECK(reply_feed_all(&r, lines) == 1);
	for (i = 0; i < NELEM(cases); i++)
		if (smtp_proto_ehlo_has(&r, cases[i].kw) != cases[i].want) {
			fprintf(stderr, "  keyword %s\n", cases[i].kw);
			T_CHECK(!"ehlo_has");
		}
}

static void
test_ehlo_size(void)
{
	static const struct {
		const char	*lines[5];
		uint64_t	 want;
	} cases[] = {
		{ { "250-mx Hello", "250 SIZE 10240000", NULL }, 10240000 },
		{ { "250-mx", "250-PIPELINING", "250-size 100000",
		    "250 8BITMIME", NULL }, 100000 },
		{ { "250-mx", "250-SIZE", "250 8BITMIME", NULL }, 0 },
		{ { "250-mx", "250 SIZE 0", NULL }, 0 },
		{ { "250-mx", "250 SIZE  2048", NULL }, 2048 },
		{ { "250-mx", "250 SIZE 2048 ", NULL }, 2048 },
		{ { "250-mx", "250 PIPELINING", NULL }, 0 },
		{ { "250 mx SIZE 1000", NULL }, 0 },	/* the greeting line */
		{ { "250-mx", "250 SIZEX 1000", NULL }, 0 },
		{ { "250-mx", "250 SIZE abc", NULL }, 0 },
		{ { "250-mx", "250 SIZE 12abc", NULL }, 0 },
		{ { "250-mx", "250 SIZE -5", NULL }, 0 },
		{ { "250-mx", "250 SIZE 18446744073709551615", NULL },
		  UINT64_MAX },
		{ { "250-mx", "250 SIZE 18446744073709551616", NULL }, 0 },
		{ { "250-mx", "250 SIZE 99999999999999999999999999", NULL },
		  0 },
		{ { "250", NULL }, 0 },
		{ { "250-mx", "250 SIZ", NULL }, 0 },
	};
	struct smtp_reply r;
	size_t i;

	for (i = 0; i < NELEM(cases); i++) {
		T_CHECK(reply_feed_all(&r, cases[i].lines) == 1);
		if (smtp_proto_ehlo_size(&r) != cases[i].want) {
			fprintf(stderr, "  case %zu: got %llu\n", i,
			    (unsigned long long)smtp_proto_ehlo_size(&r));
			T_CHECK(!"ehlo_size");
		}
	}
}

static void
test_reply_fmt(void)
{
	static const struct {
		const char *lines[4];
		size_t outlen;
		const char *want;
	} cases[] = {
		{ { "451 4.3.0 try later" }, 64, "451 4.3.0 try later" },
		{ { "451 4.3.0 try later" }, 4, "451" },
		{ { "451 4.3.0 try later" }, 1, "" },
		{ { "250" }, 64, "250" },
		{ { "250 2.0.0" }, 64, "250 2.0.0" },
		{ { "250 ok" }, 64, "250 ok" },
		{ { "550-5.1.1 first", "550 5.1.1 second" }, 64, "550 5.1.1 first" },
		{ { "550-", "550 second" }, 64, "550" },
		{ { "250 caf\xc3\xa9\t" }, 64, "250 caf???" },
	};
	struct smtp_reply r;
	char out[64];
	size_t i;

	for (i = 0; i < NELEM(cases); i++) {
		T_CHECK(reply_feed_all(&r, cases[i].lines) == 1);
		memset(out, 'Z', sizeof(out));
		smtp_proto_reply_fmt(&r, out, cases[i].outlen);
		T_STREQ(out, cases[i].want);
	}
	smtp_proto_reply_init(&r);
	smtp_proto_reply_fmt(&r, out, sizeof(out));
	T_STREQ(out, "");
	out[0] = 'Z';
	smtp_proto_reply_fmt(&r, out, 0);
	T_CHECK(out[0] == 'Z');
}

/*
 * DATA decoding helpers.  decode() feeds in whole (mode 0), byte by byte
 * (mode 1) or in random chunks (mode 2), checks the per-call output bound,
 * and calls smtp_proto_data_finish() at the end.
 */
struct dres {
	char		*out;
	size_t		 outlen;
	size_t		 consumed;
	bool		 done;
	bool		 in_headers;
	unsigned	 received;
	uint64_t	 out_total;
};

static bool
decode(bool dot, const char *in, size_t len, int mode, struct dres *r)
{
	struct smtp_proto_data d;
	size_t off = 0, chunk, n, got;
	bool ok = true;

	r->out = malloc(2 * len + 8);
	r->outlen = 0;
	smtp_proto_data_init(&d, dot);
	while (off < len && !d.done) {
		chunk = len - off;
		if (mode == 1)
			chunk = 1;
		else if (mode == 2 && chunk > 1)
			chunk = 1 + rng() % (chunk < 64 ? chunk : 64);
		n = smtp_proto_data_feed(&d, in + off, chunk,
		    r->out + r->outlen, &got);
		if (got > 2 * chunk + 4 || n > chunk ||
		    (n < chunk && !d.done))
			ok = false;
		r->outlen += got;
		off += n;
	}
	r->outlen += smtp_proto_data_finish(&d, r->out + r->outlen);
	r->consumed = off;
	r->done = d.done;
	r->in_headers = d.in_headers;
	r->received = d.received;
	r->out_total = d.out_total;
	return ok && d.out_total == r->outlen;
}

static bool
dres_eq(const struct dres *a, const struct dres *b)
{
	return a->outlen == b->outlen &&
	    memcmp(a->out, b->out, a->outlen) == 0 &&
	    a->consumed == b->consumed && a->done == b->done &&
	    a->in_headers == b->in_headers && a->received == b->received &&
	    a->out_total == b->out_total;
}

/* Every CR is followed by LF and every LF preceded by CR; no NUL. */
static bool
is_canonical(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] == '\r' && (i + 1 == len || s[i + 1] != '\n'))
			return false;
		if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
			return false;
		if (s[i] == '\0')
			return false;
	}
	return true;
}

/* True if canonical s holds a line that is exactly ".". */
static bool
has_dot_line(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i + 3 <= len; i++)
		if ((i == 0 || s[i - 1] == '\n') && memcmp(s + i, ".\r\n", 3) == 0)
			return true;
	return false;
}

/*
 * The decoder's semantics, restated line by line: an independent model to
 * compare the byte-level state machine against.
 */
static void
ref_decode(bool dot, const char *in, size_t len, struct dres *r)
{
	size_t i = 0, o = 0, s, e, cend, lstart;
	bool prev_crlf = true, term, crlf;

	r->out = malloc(2 * len + 8);
	r->done = false;
	r->in_headers = true;
	r->received = 0;
	while (i < len) {
		for (e = i; e < len && in[e] != '\n'; e++)
			;
		term = e < len;
		crlf = term && e > i && in[e - 1] == '\r';
		cend = crlf ? e - 1 : e;
		s = i;
		i = term ? e + 1 : e;
		if (dot && cend - s == 1 && in[s] == '.') {
			if (crlf && prev_crlf) {
				r->done = true;
				break;
			}
		} else if (dot && cend > s && in[s] == '.')
			s++;
		lstart = o;
		for (; s < cend; s++)
			r->out[o++] = (in[s] == '\r' || in[s] == '\0') ? ' ' :
			    in[s];
		if (r->in_headers) {
			if (o == lstart)
				r->in_headers = false;
			else if (o - lstart >= 9 &&
			    strncasecmp(r->out + lstart, "Received:", 9) == 0)
				r->received++;
		}
		r->out[o++] = '\r';
		r->out[o++] = '\n';
		prev_crlf = term ? crlf : true;
	}
	r->outlen = o;
	r->consumed = i;
	r->out_total = o;
}

/*
 * Decode whole, then from first_mode on (1: byte by byte, 2: random
 * chunks), check all agree with each other and the model, and return the
 * whole-feed result (caller frees out).
 */
static void
decode_modes(bool dot, const char *in, size_t len, int first_mode,
    struct dres *whole)
{
	struct dres other, ref;
	int mode;

	T_CHECK(decode(dot, in, len, 0, whole));
	for (mode = first_mode; mode <= 2; mode++) {
		T_CHECK(decode(dot, in, len, mode, &other));
		T_CHECK(dres_eq(whole, &other));
		free(other.out);
	}
	ref_decode(dot, in, len, &ref);
	if (!dres_eq(whole, &ref)) {
		fprintf(stderr, "  model mismatch: outlen %zu/%zu consumed "
		    "%zu/%zu done %d/%d received %u/%u\n", whole->outlen,
		    ref.outlen, whole->consumed, ref.consumed, whole->done,
		    ref.done, whole->received, ref.received);
		T_CHECK(!"model");
	}
	free(ref.out);
	T_CHECK(is_canonical(whole->out, whole->outlen));
}

static void
decode_checked(bool dot, const char *in, size_t len, struct dres *whole)
{
	decode_modes(dot, in, len, 1, whole);
}

#define S(x) x, sizeof(x) - 1

static void
test_data(void)
{
	static const struct {
		bool dot;
		const char *in;
		size_t inlen;
		const char *want;
		size_t wantlen;
		bool done;
		size_t consumed;	/* SIZE_MAX: all */
	} cases[] = {
		{ true, S("Subject: x\r\n\r\nbody\r\n.\r\n"), S("Subject: x\r\n\r\nbody\r\n"), true, SIZE_MAX },
		{ true, S(".\r\n"), S(""), true, SIZE_MAX },
		{ true, S(".\r\nQUIT\r\n"), S(""), true, 3 },
		{ true, S("\r\n.\r\n"), S("\r\n"), true, SIZE_MAX },
		{ true, S("..foo\r\n.\r\n"), S(".foo\r\n"), true, SIZE_MAX },
		{ true, S("a\r\n..\r\n.\r\n"), S("a\r\n.\r\n"), true, SIZE_MAX },
		{ true, S("a\r\n...\r\n.\r\n"), S("a\r\n..\r\n"), true, SIZE_MAX },
		{ true, S("a.\r\n.b.\r\n.\r\n"), S("a.\r\nb.\r\n"), true, SIZE_MAX },
		{ true, S("a\n.\nb\r\n.\r\n"), S("a\r\n.\r\nb\r\n"), true, SIZE_MAX },
		{ true, S("a\n.\r\nb\r\n.\r\n"), S("a\r\n.\r\nb\r\n"), true, SIZE_MAX },
		{ true, S("a\r\n.\n.\r\n.\r\n"), S("a\r\n.\r\n.\r\n"), true, SIZE_MAX },
		{ true, S("a\rb\r\n.\r\n"), S("a b\r\n"), true, SIZE_MAX },
		{ true, S("a\0b\r\n.\r\n"), S("a b\r\n"), true, SIZE_MAX },
		{ true, S("a\r\r\n.\r\n"), S("a \r\n"), true, SIZE_MAX },
		{ true, S("a\r\r\r\n.\r\n"), S("a  \r\n"), true, SIZE_MAX },
		{ true, S(".\rX\r\n.\r\n"), S(" X\r\n"), true, SIZE_MAX },
		{ true, S(".x\r\n.\r\n"), S("x\r\n"), true, SIZE_MAX },
		{ true, S(". \r\n.\r\n"), S(" \r\n"), true, SIZE_MAX },
		{ true, S(".\0\r\n.\r\n"), S(" \r\n"), true, SIZE_MAX },
		{ true, S("a\r\n.\r\r\n.\r\n"), S("a\r\n \r\n"), true, SIZE_MAX },
		{ true, S("a\r\n\r\n.\r\n"), S("a\r\n\r\n"), true, SIZE_MAX },
		{ true, S("a\n\r\n.\r\n"), S("a\r\n\r\n"), true, SIZE_MAX },
		{ true, S("a\r\n.\r\n.\r\n"), S("a\r\n"), true, 6 },
		/* Not ended: smtp_proto_data_finish() flushes. */
		{ true, S("\n.\r\n"), S("\r\n.\r\n"), false, SIZE_MAX },
		{ true, S("\n.\n"), S("\r\n.\r\n"), false, SIZE_MAX },
		{ true, S("\r.\r"), S(" . \r\n"), false, SIZE_MAX },
		{ true, S("abc"), S("abc\r\n"), false, SIZE_MAX },
		{ true, S("abc\r"), S("abc \r\n"), false, SIZE_MAX },
		{ true, S("a\r\n."), S("a\r\n.\r\n"), false, SIZE_MAX },
		{ true, S("a\r\n.\r"), S("a\r\n \r\n"), false, SIZE_MAX },
		{ true, S(""), S(""), false, SIZE_MAX },
		/* BDAT: no dots, no end. */
		{ false, S("a\r\n.\r\nb"), S("a\r\n.\r\nb\r\n"), false, SIZE_MAX },
		{ false, S("..x\nab\r"), S("..x\r\nab \r\n"), false, SIZE_MAX },
		{ false, S("\0\r\n"), S(" \r\n"), false, SIZE_MAX },
		{ false, S("\r\r\n\n"), S(" \r\n\r\n"), false, SIZE_MAX },
		{ false, S(""), S(""), false, SIZE_MAX },
	};
	struct dres r;
	size_t i, consumed;

	for (i = 0; i < NELEM(cases); i++) {
		decode_checked(cases[i].dot, cases[i].in, cases[i].inlen, &r);
		consumed = cases[i].consumed == SIZE_MAX ? cases[i].inlen :
		    cases[i].consumed;
		if (r.outlen != cases[i].wantlen ||
		    memcmp(r.out, cases[i].want, r.outlen) != 0 ||
		    r.done != cases[i].done || r.consumed != consumed) {
			fprintf(stderr, "  case %zu: outlen %zu consumed %zu "
			    "done %d\n", i, r.outlen, r.consumed, r.done);
			T_CHECK(!"data");
		}
		free(r.out);
	}
}

static void
test_data_smuggling(void)
{
	static const struct {
		const char *v;
		size_t len;
	} vectors[] = {
		{ S("\n.\n") }, { S("\n.\r") }, { S("\r.\n") }, { S("\r.\r") },
		{ S("\n.\r\n") }, { S("\r.\r\n") }, { S("\r\n\0.\r\n") },
		{ S("\r\n.\n") }, { S("\r\n.\r") }, { S("\n..\r\n") },
	};
	static const char head[] = "Subject: x\r\n\r\nbody";
	static const char tail[] = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
	    "DATA\r\nsmuggled\r\n.\r\n";
	static const char quit[] = "QUIT\r\n";
	char in[256], stuffed[512];
	bool bol;
	size_t i, len, n;
	struct dres r;

	for (i = 0; i < NELEM(vectors); i++) {
		len = 0;
		memcpy(in + len, head, sizeof(head) - 1);
		len += sizeof(head) - 1;
		memcpy(in + len, vectors[i].v, vectors[i].len);
		len += vectors[i].len;
		memcpy(in + len, tail, sizeof(tail) - 1);
		len += sizeof(tail) - 1;
		memcpy(in + len, quit, sizeof(quit) - 1);
		decode_checked(true, in, len + sizeof(quit) - 1, &r);
		if (!r.done || r.consumed != len) {
			fprintf(stderr, "  vector %zu: done %d consumed %zu "
			    "want %zu\n", i, r.done, r.consumed, len);
			T_CHECK(!"smuggling");
		}
		T_CHECK(memmem(r.out, r.outlen, "smuggled\r\n", 10) != NULL);
		T_CHECK(!r.in_headers);
		/* Stored lines may be "."; sent dot-stuffed, none can end. */
		bol = true;
		n = smtp_proto_dotstuff(&bol, r.out, r.outlen, stuffed);
		T_CHECK(!has_dot_line(stuffed, n));
		free(r.out);
	}
}

static void
test_data_received(void)
{
	static const char in[] =
	    "Received: from a\r\n"
	    "received: from b\r\n"
	    "\tReceived: folded\r\n"
	    "RECEIVED:c\r\n"
	    "Subject: Received: no\r\n"
	    "Received-SPF: pass\r\n"
	    "Received : old\r\n"
	    "Receive: x\r\n"
	    "\r\n"
	    "Received: in the body\r\n"
	    ".\r\n";
	struct dres r;

	decode_checked(true, in, sizeof(in) - 1, &r);
	T_CHECK(r.done);
	T_CHECK(r.received == 3);
	T_CHECK(!r.in_headers);
	free(r.out);

	/* A bare LF ends the header too; BDAT counts the same. */
	decode_checked(false, S("Received: a\nReceived: b\n\nReceived: c\n"),
	    &r);
	T_CHECK(r.received == 2);
	T_CHECK(!r.in_headers);
	free(r.out);

	/* Unterminated: the finish line end still counts it. */
	decode_checked(false, S("Received: a"), &r);
	T_CHECK(r.received == 1);
	T_CHECK(r.in_headers);
	free(r.out);

	/* A stuffed dot is removed before matching. */
	decode_checked(true, S(".Received: a\r\n.\r\n"), &r);
	T_CHECK(r.received == 1);
	free(r.out);
}

static void
test_data_long(void)
{
	size_t len = 200000, i;
	char *in = malloc(len + 5);
	struct dres r;

	for (i = 0; i < len; i++)
		in[i] = (char)('a' + i % 26);
	memcpy(in + len, "\r\n.\r\n", 5);
	decode_checked(true, in, len + 5, &r);
	T_CHECK(r.done && r.consumed == len + 5);
	T_CHECK(r.outlen == len + 2 && memcmp(r.out, in, len + 2) == 0);
	T_CHECK(r.in_headers && r.received == 0);
	free(r.out);
	free(in);
}

/* Many short inputs over an alphabet dense in CR, LF, '.', NUL. */
static void
test_data_random_short(void)
{
	static const char alpha[] = "\r\n.\r\n.\0aR:";
	char in[600];
	struct dres r;
	size_t len, i;
	int iter;

	for (iter = 0; iter < 1500; iter++) {
		len = rng() % sizeof(in);
		for (i = 0; i < len; i++)
			in[i] = alpha[rng() % (sizeof(alpha) - 1)];
		decode_checked(iter & 1, in, len, &r);
		T_CHECK(r.outlen <= 2 * len + 4);
		free(r.out);
	}
}

/*
 * One megabyte of arbitrary bytes, in both modes; byte-by-byte feeding is
 * left to the short inputs above to stay well under a second.
 */
static void
test_data_random_big(void)
{
	size_t len = 1 << 20, i;
	char *in = malloc(len);
	struct dres r;
	int dot;

	for (i = 0; i < len; i++)
		in[i] = (char)rng();
	for (dot = 0; dot <= 1; dot++) {
		decode_modes(dot, in, len, 2, &r);
		T_CHECK(r.outlen <= 2 * len + 4);
		free(r.out);
	}
	free(in);
}

/*
 * A second model, byte by byte: the documented DATA/BDAT rules applied
 * plainly to a whole input with look-ahead, without the streaming
 * decoder's states or the line model's splitting.  smtp_proto_data_finish() is included (what
 * is left at the end is flushed), as decode() calls it.
 */
struct bref {
	char		*out;
	size_t		 outlen;
	size_t		 consumed;
	bool		 done;
	bool		 in_headers;
	unsigned	 received;
	bool		 prev_crlf;
	bool		 bol;
	char		 hdr[10];
	size_t		 hdrlen;
};

static void
bref_put(struct bref *r, char c)
{
	r->out[r->outlen++] = c;
	if (r->in_headers && r->hdrlen < sizeof(r->hdr))
		r->hdr[r->hdrlen++] = c;
	r->bol = false;
}

static void
bref_eol(struct bref *r, bool crlf)
{
	r->out[r->outlen++] = '\r';
	r->out[r->outlen++] = '\n';
	if (r->in_headers) {
		if (r->hdrlen == 0)
			r->in_headers = false;	/* the empty line */
		else if (r->hdrlen >= 9 &&
		    strncasecmp(r->hdr, "Received:", 9) == 0)
			r->received++;
	}
	r->hdrlen = 0;
	r->prev_crlf = crlf;
	r->bol = true;
}

static void
bref_decode(bool dot, const char *in, size_t len, struct bref *r)
{
	size_t i = 0;
	char c;

	memset(r, 0, sizeof(*r));
	r->out = malloc(2 * len + 8);
	r->in_headers = true;
	r->prev_crlf = true;	/* the DATA command's CRLF */
	r->bol = true;
	while (i < len) {
		c = in[i];
		if (dot && r->bol && c == '.') {
			if (i + 1 == len) {		/* "." at the end */
				bref_put(r, '.');
				bref_eol(r, true);
				i++;
			} else if (in[i + 1] == '\n') {	/* ".\n": content */
				bref_put(r, '.');
				bref_eol(r, false);
				i += 2;
			} else if (in[i + 1] != '\r') {	/* un-stuff */
				r->bol = false;
				i++;
			} else if (i + 2 == len) {	/* ".\r" at the end */
				bref_put(r, ' ');
				bref_eol(r, true);
				i += 2;
			} else if (in[i + 2] == '\n' && r->prev_crlf) {
				r->done = true;		/* CRLF.CRLF */
				i += 3;
				break;
			} else if (in[i + 2] == '\n') {	/* "\n.\r\n" */
				bref_put(r, '.');
				bref_eol(r, true);
				i += 3;
			} else {			/* ".\rx": CR is a space */
				bref_put(r, ' ');
				i += 2;
			}
			continue;
		}
		if (c == '\r') {
			if (i + 1 < len && in[i + 1] == '\n') {
				bref_eol(r, true);
				i += 2;
			} else if (i + 1 < len) {	/* bare CR */
				bref_put(r, ' ');
				i++;
			} else {			/* CR at the end */
				bref_put(r, ' ');
				bref_eol(r, true);
				i++;
			}
			continue;
		}
		if (c == '\n')
			bref_eol(r, false);		/* bare LF */
		else
			bref_put(r, c == '\0' ? ' ' : c);
		i++;
	}
	if (!r->done && !r->bol)
		bref_eol(r, true);	/* an unterminated last line */
	r->consumed = i;
}

/*
 * Feed in to the streaming decoder split at the offsets cuts[0..ncuts)
 * (ascending), finish, and compare everything with the reference.
 */
static bool
bref_check_cuts(bool dot, const char *in, size_t len, const struct bref *want,
    const size_t *cuts, size_t ncuts, char *out)
{
	struct smtp_proto_data d;
	size_t off = 0, k = 0, next, n, got, outlen = 0;

	smtp_proto_data_init(&d, dot);
	while (off < len && !d.done) {
		next = k < ncuts ? cuts[k++] : len;
		if (next <= off)
			continue;
		n = smtp_proto_data_feed(&d, in + off, next - off,
		    out + outlen, &got);
		if (got > 2 * (next - off) + 4 || n > next - off ||
		    (n < next - off && !d.done))
			return false;
		outlen += got;
		off += n;
	}
	outlen += smtp_proto_data_finish(&d, out + outlen);
	return outlen == want->outlen &&
	    memcmp(out, want->out, outlen) == 0 && off == want->consumed &&
	    d.done == want->done && d.in_headers == want->in_headers &&
	    d.received == want->received && d.out_total == outlen;
}

/*
 * A generated body: pieces drawn from a table dense in what the decoder
 * must get right (CR, LF, dots at line starts, CRLF.CRLF in every
 * disguise, NUL, 8-bit bytes, Received: fields, long runs).
 */
static size_t
bref_gen(char *buf, size_t max)
{
	static const char *const pieces[] = {
		"\r\n", "\r\n", "\r\n", "\n", "\r", ".", "..", "\r\n.\r\n",
		"\n.\r\n", "\r.\n", "\r\n.\n", "\n.\n", ".\r", "\r\r\n",
		"\r\n\r\n", "Received: from x\r\n", "received:", "RECEIVED:y",
		"Receive", "d:", "x", "ab", "\t", " ", "\r\n..\r\n",
		"\r\n. \r\n", "\xff\xfe", "\x80",
	};
	size_t len = 0, n, k, cap = max == 0 ? 0 : 1 + rng() % max;
	const char *p;

	while (len < cap) {
		switch (rng() % 8) {
		case 0:		/* a run of ordinary or 8-bit bytes */
			n = rng() % (rng() % 4 == 0 ? 3000 : 90);
			for (k = 0; k < n && len < cap; k++)
				buf[len++] = (char)(rng() % 2 ? 'a' + rng() %
				    26 : 0x80 + rng() % 128);
			break;
		case 1:		/* any byte at all */
			buf[len++] = (char)rng();
			break;
		case 2:
			buf[len++] = '\0';
			break;
		default:
			p = pieces[rng() % NELEM(pieces)];
			n = strlen(p);
			if (p[0] == '\x80' || p[0] == '\xff')
				n = p[0] == '\x80' ? 1 : 2;
			for (k = 0; k < n && len < cap; k++)
				buf[len++] = p[k];
			break;
		}
	}
	return len;
}

/* Short bodies, split into two reads at every offset and into three. */
static void
test_data_reference_splits(void)
{
	char in[400], *out = malloc(2 * sizeof(in) + 16);
	struct bref want;
	size_t len, cut[2];
	int iter, dot, bad = 0;

	for (iter = 0; iter < 250; iter++) {
		len = bref_gen(in, sizeof(in));
		for (dot = 0; dot <= 1; dot++) {
			bref_decode(dot, in, len, &want);
			for (cut[0] = 0; cut[0] <= len; cut[0]++) {
				if (!bref_check_cuts(dot, in, len, &want, cut,
				    1, out))
					bad++;
				cut[1] = cut[0] + rng() % (len - cut[0] + 1);
				if (!bref_check_cuts(dot, in, len, &want, cut,
				    2, out))
					bad++;
			}
			free(want.out);
		}
	}
	T_CHECK(bad == 0);
	free(out);
}

/*
 * Bodies up to 300 KB, fed whole, byte by byte (the smaller ones) and in
 * random chunk sizes from 1 byte to 64 KB.
 */
static void
test_data_reference_big(void)
{
	size_t max = 300 * 1024, len, ncuts, off, *cuts;
	char *in = malloc(max), *out = malloc(2 * max + 16);
	struct bref want;
	int iter, dot, bad = 0;

	cuts = malloc((max + 1) * sizeof(*cuts));
	for (iter = 0; iter < 24; iter++) {
		len = bref_gen(in, iter < 4 ? 4096 : max);
		dot = iter & 1;
		bref_decode(dot, in, len, &want);
		if (!bref_check_cuts(dot, in, len, &want, NULL, 0, out))
			bad++;
		if (iter < 4) {
			for (ncuts = 0; ncuts < len; ncuts++)
				cuts[ncuts] = ncuts + 1;
			if (!bref_check_cuts(dot, in, len, &want, cuts, ncuts,
			    out))
				bad++;
		}
		for (ncuts = 0, off = 0; off < len; ncuts++) {
			off += 1 + (rng() % 3 == 0 ? rng() % 65536 :
			    rng() % 16);
			cuts[ncuts] = off < len ? off : len;
		}
		if (!bref_check_cuts(dot, in, len, &want, cuts, ncuts, out))
			bad++;
		free(want.out);
	}
	T_CHECK(bad == 0);
	free(cuts);
	free(out);
	free(in);
}

/* decode(dotstuff(x) ".\r\n") == x for canonical x ending in CRLF. */
static void
test_dotstuff(void)
{
	static const char *const lines[] = {
		"", ".", "..", "...", ".a", "a.", "a", "Received: x", " .",
		"\t.", ".\t", "x.y",
	};
	char x[4096], y[8192 + 3];
	struct dres r;
	size_t xlen, ylen, off, chunk;
	bool bol;
	int iter, n;

	bol = true;
	T_CHECK(smtp_proto_dotstuff(&bol, S("..a\r\n.\r\nb.\r\n."), y) == 16);
	T_CHECK(memcmp(y, "...a\r\n..\r\nb.\r\n..", 16) == 0);
	T_CHECK(bol == false);

	for (iter = 0; iter < 2000; iter++) {
		xlen = 0;
		for (n = rng() % 40; n > 0; n--) {
			const char *l = lines[rng() % NELEM(lines)];

			memcpy(x + xlen, l, strlen(l));
			xlen += strlen(l);
			memcpy(x + xlen, "\r\n", 2);
			xlen += 2;
		}
		bol = true;
		for (off = 0, ylen = 0; off < xlen; off += chunk) {
			chunk = 1 + rng() % (xlen - off);
			ylen += smtp_proto_dotstuff(&bol, x + off, chunk,
			    y + ylen);
			T_CHECK(ylen <= 2 * (off + chunk));
		}
		T_CHECK(!has_dot_line(y, ylen));
		memcpy(y + ylen, ".\r\n", 3);
		decode_checked(true, y, ylen + 3, &r);
		T_CHECK(r.done && r.consumed == ylen + 3);
		T_CHECK(r.outlen == xlen && memcmp(r.out, x, xlen) == 0);
		free(r.out);
	}
}

static void
test_xtext(void)
{
	static const struct {
		const char *plain, *xtext;
	} cases[] = {
		{ "", "" },
		{ "abc", "abc" },
		{ "a+b=c", "a+2Bb+3Dc" },
		{ "a b", "a+20b" },
		{ "rfc822;a+b@x", "rfc822;a+2Bb@x" },
		{ "\x01\x7f\xff~!", "+01+7F+FF~!" },
	};
	static const struct {
		const char *in;
		int rc;
		const char *want;
	} dec[] = {
		{ "a+2bb", 0, "a+b" },
		{ "+7e+7E", 0, "~~" },
		{ "+41", 0, "A" },
		{ "+", -1, NULL },
		{ "+2", -1, NULL },
		{ "a+2", -1, NULL },
		{ "+G0", -1, NULL },
		{ "+0G", -1, NULL },
		{ "+00", -1, NULL },
		{ "a b", -1, NULL },
		{ "a=b", -1, NULL },
		{ "a\x7f", -1, NULL },
		{ "\xc3\xa9", -1, NULL },
	};
	char out[64], back[64], in[2];
	size_t i;
	int c;

	for (i = 0; i < NELEM(cases); i++) {
		T_CHECK(smtp_proto_xtext_encode(cases[i].plain, out,
		    sizeof(out)) == 0);
		T_STREQ(out, cases[i].xtext);
		T_CHECK(smtp_proto_xtext_decode(cases[i].xtext, out,
		    sizeof(out)) == 0);
		T_STREQ(out, cases[i].plain);
	}
	for (i = 0; i < NELEM(dec); i++) {
		if (smtp_proto_xtext_decode(dec[i].in, out, sizeof(out)) !=
		    dec[i].rc) {
			fprintf(stderr, "  decode case %zu\n", i);
			T_CHECK(!"decode rc");
		} else if (dec[i].rc == 0)
			T_STREQ(out, dec[i].want);
	}
	for (c = 1; c < 256; c++) {
		in[0] = (char)c;
		in[1] = '\0';
		T_CHECK(smtp_proto_xtext_encode(in, out, sizeof(out)) == 0);
		T_CHECK(smtp_proto_xtext_decode(out, back, sizeof(back)) == 0);
		T_CHECK(strcmp(back, in) == 0);
	}
	T_CHECK(smtp_proto_xtext_encode("abc", out, 3) == -1);
	T_CHECK(smtp_proto_xtext_encode("abc", out, 4) == 0);
	T_CHECK(smtp_proto_xtext_encode("a b", out, 5) == -1);
	T_CHECK(smtp_proto_xtext_encode("", out, 0) == -1);
	T_CHECK(smtp_proto_xtext_decode("a+2B", out, 2) == -1);
	T_CHECK(smtp_proto_xtext_decode("a+2B", out, 3) == 0);
}

static void
test_received(void)
{
	struct smtp_received r = {
		.helo = "client.example",
		.rdns = "mail.client.example",
		.addr = "192.0.2.7",
		.hostname = "mx2.example.test",
		.proto = "ESMTPS",
		.tls = "TLSv1.3 TLS_AES_256_GCM_SHA384",
		.id = "5e1d0123456789ab",
		.rcpt = "b@ours.example",
		.when = 1700000000,
	};
	char date[64], want[512], out[512];
	int n, len;

	util_fmt_date(r.when, date, sizeof(date));
	snprintf(want, sizeof(want), "Received: from client.example "
	    "(mail.client.example [192.0.2.7])\r\n\tby mx2.example.test "
	    "(holdfast) with ESMTPS (TLSv1.3 TLS_AES_256_GCM_SHA384) id "
	    "5e1d0123456789ab\r\n\tfor <b@ours.example>; %s\r\n", date);
	len = smtp_proto_fmt_received(&r, out, sizeof(out));
	T_STREQ(out, want);
	T_CHECK(len == (int)strlen(want));

	/* Every buffer too small by even one byte fails. */
	for (n = 0; n <= len; n++)
		T_CHECK(smtp_proto_fmt_received(&r, out, (size_t)n) == -1);
	T_CHECK(smtp_proto_fmt_received(&r, out, (size_t)len + 1) == len);

	r.rdns = NULL;
	r.tls = NULL;
	r.rcpt = NULL;
	r.proto = "ESMTP";
	snprintf(want, sizeof(want), "Received: from client.example "
	    "(unknown [192.0.2.7])\r\n\tby mx2.example.test (holdfast) with "
	    "ESMTP id 5e1d0123456789ab;\r\n\t%s\r\n", date);
	T_CHECK(smtp_proto_fmt_received(&r, out, sizeof(out)) ==
	    (int)strlen(want));
	T_STREQ(out, want);
}

/* Every field at its longest still fits SMTP_RECEIVED_MAX (the headroom
 * the learned size limit keeps for our own header counts on it). */
static void
test_received_max(void)
{
	char big[1200], out[4096];
	struct smtp_received r;
	int len;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	r.helo = r.rdns = r.addr = r.hostname = r.proto = r.tls = r.id =
	    r.rcpt = big;
	r.when = 1700000000;
	len = smtp_proto_fmt_received(&r, out, sizeof(out));
	T_CHECK(len > 1300 && len <= SMTP_RECEIVED_MAX);
}

static void
test_received_injection(void)
{
	struct smtp_received r = {
		.helo = "evil\r\nX-Injected: 1",
		.rdns = "a)b(c\\d\"e",
		.addr = "192.0.2.7",
		.hostname = "mx2.example.test",
		.proto = "ESMTP",
		.id = "5e1d0123456789ab",
		.rcpt = "x>; y\r\nBcc: z\x80\x01",
		.when = 0,
	};
	char out[2048], big[600];
	size_t i, crlf = 0;
	int len;

	len = smtp_proto_fmt_received(&r, out, sizeof(out));
	T_CHECK(len > 0);
	for (i = 0; i < (size_t)len; i++) {
		if (out[i] == '\r') {
			T_CHECK(out[i + 1] == '\n');
			T_CHECK(i + 2 == (size_t)len || out[i + 2] == '\t');
			crlf++;
		} else if (out[i] == '\n')
			T_CHECK(i > 0 && out[i - 1] == '\r');
		else
			T_CHECK((out[i] >= ' ' && out[i] < 0x7f) ||
			    (out[i] == '\t' && out[i - 1] == '\n'));
	}
	T_CHECK(crlf == 3);
	T_CHECK(strstr(out, "from evil??X-Injected: 1 (a?b?c?d?e [") != NULL);
	T_CHECK(strstr(out, "for <x?? y??Bcc: z?" "?>; ") != NULL);

	/* A huge HELO is cut to a domain's length. */
	memset(big, 'h', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	r.helo = big;
	len = smtp_proto_fmt_received(&r, out, sizeof(out));
	T_CHECK(len > 0 && strstr(out, "\r\n") - out ==
	    (long)(strlen("Received: from  (a?b?c?d?e [192.0.2.7])") +
	    SMTP_DOMAIN_MAX));
}

static void
test_proxy(void)
{
	static const unsigned char v2_tcp4[] = {
		0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49,
		0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c,
		192, 0, 2, 7, 127, 0, 0, 1, 0xc3, 0x50, 0x00, 0x19,
		'E', 'H', 'L', 'O' };
	static const unsigned char v2_local[] = {
		0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49,
		0x54, 0x0a, 0x20, 0x00, 0x00, 0x00 };
	static const struct {
		const char		*in;
		enum smtp_proxy_status	 want;
		size_t			 consumed;
		unsigned		 port;
	} v1[] = {
		{ "PROXY TCP4 192.0.2.7 127.0.0.1 50000 25\r\nEHLO x\r\n",
		  SMTP_PROXY_OK, 41, 50000 },
		{ "PROXY TCP6 2001:db8::7 ::1 1234 25\r\n", SMTP_PROXY_OK, 36,
		  1234 },
		{ "PROXY UNKNOWN\r\n", SMTP_PROXY_LOCAL, 15, 0 },
		{ "PROXY TCP4 192.0.2.7 127.0.0.1 50000", SMTP_PROXY_MORE, 0,
		  0 },
		{ "PROX", SMTP_PROXY_MORE, 0, 0 },
		{ "PROXY TCP4 192.0.2.7 127.0.0.1 50000 25\n", SMTP_PROXY_BAD,
		  0, 0 },
		{ "PROXY TCP4 192.0.2.777 127.0.0.1 1 25\r\n", SMTP_PROXY_BAD,
		  0, 0 },
		{ "PROXY TCP4 192.0.2.7 127.0.0.1 0 25\r\n", SMTP_PROXY_BAD, 0,
		  0 },
		{ "PROXY TCP4 192.0.2.7 127.0.0.1 70000 25\r\n", SMTP_PROXY_BAD,
		  0, 0 },
		{ "PROXY TCP4 2001:db8::7 ::1 1 25\r\n", SMTP_PROXY_BAD, 0, 0 },
		{ "PROXY UDP4 192.0.2.7 127.0.0.1 1 25\r\n", SMTP_PROXY_BAD, 0,
		  0 },
		{ "PROXY TCP4 192.0.2.7 127.0.0.1 1 25 extra\r\n",
		  SMTP_PROXY_BAD, 0, 0 },
		{ "EHLO client\r\n", SMTP_PROXY_BAD, 0, 0 },
	};
	struct smtp_proxy p;
	size_t i, used;
	char big[200];

	for (i = 0; i < sizeof(v1) / sizeof(v1[0]); i++) {
		enum smtp_proxy_status st = smtp_proto_proxy_parse(
		    (const unsigned char *)v1[i].in, strlen(v1[i].in), &p,
		    &used);

		if (st != v1[i].want || (st == SMTP_PROXY_OK &&
		    (used != v1[i].consumed || p.port != v1[i].port))) {
			fprintf(stderr, "  v1 case %zu: st %d used %zu\n", i,
			    (int)st, used);
			T_CHECK(!"proxy v1");
		}
	}
	T_CHECK(smtp_proto_proxy_parse(v2_tcp4, sizeof(v2_tcp4), &p, &used) ==
	    SMTP_PROXY_OK);
	T_CHECK(used == 28 && p.family == AF_INET && p.port == 50000 &&
	    p.addr[0] == 192 && p.addr[3] == 7);
	for (i = 0; i < 28; i++)
		T_CHECK(smtp_proto_proxy_parse(v2_tcp4, i, &p, &used) ==
		    SMTP_PROXY_MORE);
	T_CHECK(smtp_proto_proxy_parse(v2_local, sizeof(v2_local), &p,
	    &used) == SMTP_PROXY_LOCAL && used == 16);
	/* an overlong v1 line without its end is refused, not buffered */
	memset(big, 'a', sizeof(big));
	memcpy(big, "PROXY ", 6);
	T_CHECK(smtp_proto_proxy_parse((const unsigned char *)big,
	    sizeof(big), &p, &used) == SMTP_PROXY_BAD);
	{
		unsigned char huge[16];

		memcpy(huge, v2_tcp4, 16);
		huge[14] = 0xff;	/* length far over the cap */
		T_CHECK(smtp_proto_proxy_parse(huge, sizeof(huge), &p,
		    &used) == SMTP_PROXY_BAD);
		huge[14] = 0;
		huge[13] = 0x12;	/* UDP */
		huge[15] = 12;
		T_CHECK(smtp_proto_proxy_parse(v2_tcp4, 16, &p, &used) ==
		    SMTP_PROXY_MORE);
	}
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "proxy", test_proxy },
		{ "smtp_proto_split", test_split },
		{ "smtp_proto_path", test_path },
		{ "smtp_proto_path_length", test_path_length },
		{ "smtp_proto_params", test_params },
		{ "smtp_proto_reply", test_reply },
		{ "smtp_proto_reply_truncate", test_reply_truncate },
		{ "smtp_proto_ehlo_has", test_ehlo_has },
		{ "smtp_proto_ehlo_size", test_ehlo_size },
		{ "smtp_proto_received_max", test_received_max },
		{ "smtp_proto_reply_fmt", test_reply_fmt },
		{ "smtp_proto_data", test_data },
		{ "smtp_proto_data_smuggling", test_data_smuggling },
		{ "smtp_proto_data_received", test_data_received },
		{ "smtp_proto_data_long", test_data_long },
		{ "smtp_proto_data_random_short", test_data_random_short },
		{ "smtp_proto_data_random_big", test_data_random_big },
		{ "smtp_proto_data_reference_splits",
		    test_data_reference_splits },
		{ "smtp_proto_data_reference_big", test_data_reference_big },
		{ "smtp_proto_dotstuff", test_dotstuff },
		{ "smtp_proto_xtext", test_xtext },
		{ "smtp_proto_received", test_received },
		{ "smtp_proto_received_injection", test_received_injection },
	};

	return T_RUN(cases);
}
