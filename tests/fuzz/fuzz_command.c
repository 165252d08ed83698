/*
 * fuzz_command: a command line as smtp_server sees it, after the line limit
 * and CRLF are taken off: smtp_proto_split() into verb and arguments, then
 * smtp_proto_parse_params() on the arguments (and, for MAIL FROM: and
 * RCPT TO:, on what follows the path).  Asserts the verb is what the
 * dispatch table can match, args and rest point into the line, and the
 * parameters are well formed whatever max is.
 */
#include "fuzz.h"
#include "smtp_proto.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool
fuzz_is_kwchar(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

/* Parse in with max SMTP_PARAMS_MAX and with a smaller max; they agree. */
static void
fuzz_params(const char *in, size_t small)
{
	struct smtp_param params[SMTP_PARAMS_MAX];
	int n, m;
	size_t i, k;

	n = smtp_proto_parse_params(in, params, SMTP_PARAMS_MAX);
	FUZZ_ASSERT(n >= -1 && n <= SMTP_PARAMS_MAX);
	for (i = 0; n > 0 && i < (size_t)n; i++) {
		const struct smtp_param *p = &params[i];

		FUZZ_ASSERT(p->keyword[0] != '\0');
		FUZZ_ASSERT(strlen(p->keyword) < sizeof(p->keyword));
		for (k = 0; p->keyword[k] != '\0'; k++)
			FUZZ_ASSERT(fuzz_is_kwchar(p->keyword[k]));
		FUZZ_ASSERT(strlen(p->value) < sizeof(p->value));
		FUZZ_ASSERT(p->has_value == (p->value[0] != '\0'));
		for (k = 0; p->value[k] != '\0'; k++)
			FUZZ_ASSERT((unsigned char)p->value[k] > ' ' &&
			    p->value[k] != 0x7f && p->value[k] != '=');
	}
	m = smtp_proto_parse_params(in, params, small);
	if (n >= 0 && (size_t)n <= small)
		FUZZ_ASSERT(m == n);
	else
		FUZZ_ASSERT(m == -1);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char verb[SMTP_VERB_MAX], *line;
	const char *args, *rest, *p;
	struct smtp_path path;
	enum smtp_path_status st;
	size_t len, i, small;

	/* The server refuses longer lines before parsing them. */
	if (size > SMTP_LINE_MAX)
		return 0;
	/* An exact-size copy, so ASan sees any read past the NUL. */
	line = malloc(size + 1);
	if (line == NULL)
		abort();
	memcpy(line, data, size);
	line[size] = '\0';
	len = strlen(line);
	small = size > 0 ? data[size - 1] % (SMTP_PARAMS_MAX + 1) : 0;

	if (smtp_proto_split(line, verb, sizeof(verb), &args) == -1) {
		FUZZ_ASSERT(verb[0] == '\0');
		goto out;
	}
	FUZZ_ASSERT(verb[0] != '\0' && strlen(verb) < SMTP_VERB_MAX);
	for (i = 0; verb[i] != '\0'; i++)
		FUZZ_ASSERT(verb[i] >= 'A' && verb[i] <= 'Z');
	FUZZ_ASSERT(args > line && args <= line + len && *args != ' ');
	fuzz_params(args, small);

	/* A small verblen truncates nothing silently: it fails or fits. */
	{
		char v4[4];
		const char *a4;

		if (smtp_proto_split(line, v4, sizeof(v4), &a4) == 0)
			FUZZ_ASSERT(strcmp(v4, verb) == 0 && a4 == args);
		else
			FUZZ_ASSERT(strlen(verb) >= sizeof(v4) - 1);
	}

	p = NULL;
	if (strcmp(verb, "MAIL") == 0 && strncasecmp(args, "FROM:", 5) == 0)
		p = args + 5;
	else if (strcmp(verb, "RCPT") == 0 && strncasecmp(args, "TO:", 3) == 0)
		p = args + 3;
	if (p != NULL) {
		st = smtp_proto_parse_path(p, &path, &rest);
		if (st != SMTP_PATH_SYNTAX) {
			FUZZ_ASSERT(rest > p && rest <= line + len);
			fuzz_params(rest, small);
		}
	}
out:
	free(line);
	return 0;
}
