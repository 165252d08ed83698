/*
 * fuzz_reply: what the primary sends the drain, split into lines the way
 * drain_read_cb() does (LF ends a line, one CR before it is dropped, a line
 * over SMTP_LINE_MAX or a reply over 64 lines ends the session) and fed to
 * smtp_proto_reply_feed(), up to 16 pipelined replies one after another.  Each reply is then inspected as the
 * drain does: smtp_proto_ehlo_has() for the capabilities it looks for,
 * smtp_proto_ehlo_size() for the primary's SIZE, and
 * smtp_proto_reply_fmt() for logs and envelopes, into buffers of every
 * awkward size.  Asserts codes, enhanced codes and text stay in shape and
 * ehlo_has() agrees with a plain reading of the text.
 */
#include "fuzz.h"
#include "smtp_proto.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FUZZ_MAX	(64 * 1024)
#define FUZZ_REPLY_LINES	64	/* drain.c: DRAIN_REPLY_LINES */
#define FUZZ_REPLIES		16	/* more teach nothing new */

static const char *const fuzz_keywords[] = {
	"PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "DSN", "STARTTLS",
	"XFORWARD", "ENHANCEDSTATUSCODES", "X", "",
};

/* The first word of some line after the first equals kw, any case. */
static bool
fuzz_ehlo_ref(const char *text, const char *kw)
{
	size_t klen = strlen(kw), n;
	const char *p;

	if (klen == 0)
		return false;
	for (p = strchr(text, '\n'); p != NULL; p = strchr(p, '\n')) {
		p++;
		n = strcspn(p, " \n");
		if (n == klen && strncasecmp(p, kw, klen) == 0)
			return true;
	}
	return false;
}

static void
fuzz_enhanced(const struct smtp_reply *r)
{
	const char *e = r->enhanced;
	size_t i, part, n;

	if (e[0] == '\0')
		return;
	FUZZ_ASSERT(strlen(e) < sizeof(r->enhanced));
	FUZZ_ASSERT(e[0] == '0' + r->code / 100 && e[1] == '.');
	for (i = 2, part = 0; part < 2; part++) {
		for (n = 0; e[i] >= '0' && e[i] <= '9'; i++)
			n++;
		FUZZ_ASSERT(n >= 1 && n <= 3);
		if (part == 0)
			FUZZ_ASSERT(e[i++] == '.');
	}
	FUZZ_ASSERT(e[i] == '\0');
}

static void
fuzz_fmt(const struct smtp_reply *r)
{
	static const size_t sizes[] = { 0, 1, 2, 4, 5, 12, 64, 512 };
	char out[512], code[4];
	size_t i, k, len;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		memset(out, 'Z', sizeof(out));
		smtp_proto_reply_fmt(r, out, sizes[i]);
		if (sizes[i] == 0) {
			FUZZ_ASSERT(out[0] == 'Z');
			continue;
		}
		len = strnlen(out, sizes[i]);
		FUZZ_ASSERT(len < sizes[i]);
		for (k = len + 1; k < sizeof(out); k++)
			FUZZ_ASSERT(out[k] == 'Z');
		for (k = 0; k < len; k++)
			FUZZ_ASSERT(out[k] >= ' ' && out[k] < 0x7f);
		if (r->nlines == 0) {
			FUZZ_ASSERT(len == 0);
			continue;
		}
		code[0] = (char)('0' + r->code / 100);
		code[1] = (char)('0' + r->code / 10 % 10);
		code[2] = (char)('0' + r->code % 10);
		code[3] = '\0';
		FUZZ_ASSERT(strncmp(out, code, len < 3 ? len : 3) == 0);
	}
}

static void
fuzz_inspect(const struct smtp_reply *r)
{
	size_t i, nl;

	FUZZ_ASSERT(strlen(r->text) < sizeof(r->text));
	for (i = 0, nl = 0; r->text[i] != '\0'; i++) {
		FUZZ_ASSERT((unsigned char)r->text[i] >= ' ' ||
		    r->text[i] == '\n');
		FUZZ_ASSERT(r->text[i] != 0x7f);
		if (r->text[i] == '\n')
			nl++;
	}
	/* One '\n' between lines, unless the text was cut short. */
	FUZZ_ASSERT(nl + 1 <= r->nlines || r->nlines == 0);
	if (r->nlines > 0)
		FUZZ_ASSERT(r->code >= 200 && r->code <= 599);
	fuzz_enhanced(r);
	for (i = 0; i < sizeof(fuzz_keywords) / sizeof(fuzz_keywords[0]); i++)
		FUZZ_ASSERT(smtp_proto_ehlo_has(r, fuzz_keywords[i]) ==
		    fuzz_ehlo_ref(r->text, fuzz_keywords[i]));
	/* A learned SIZE needs a SIZE line. */
	FUZZ_ASSERT(smtp_proto_ehlo_size(r) == 0 ||
	    smtp_proto_ehlo_has(r, "SIZE"));
	fuzz_fmt(r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data, *nl;
	struct smtp_reply r;
	char *line;
	size_t len, n, eol, nreplies = 0;
	int rc;

	if (size > FUZZ_MAX)
		return 0;
	smtp_proto_reply_init(&r);
	while (size > 0 && nreplies < FUZZ_REPLIES) {
		nl = memchr(in, '\n', size);
		if (nl == NULL)
			break;		/* the drain waits for the rest */
		len = (size_t)(nl - in);
		eol = 1;
		if (len + eol > SMTP_LINE_MAX)
			break;		/* "reply line too long" */
		n = len;
		if (n > 0 && in[n - 1] == '\r')
			n--;
		/* An exact-size copy, so ASan sees any overread. */
		line = malloc(n + 1);
		if (line == NULL)
			abort();
		memcpy(line, in, n);
		line[n] = '\0';
		rc = smtp_proto_reply_feed(&r, line, n);
		free(line);
		in += len + eol;
		size -= len + eol;
		FUZZ_ASSERT(rc >= -1 && rc <= 1);
		if (rc == -1)
			break;		/* "malformed reply" */
		if (rc == 0) {
			FUZZ_ASSERT(!r.complete && r.nlines > 0);
			if (r.nlines >= FUZZ_REPLY_LINES)
				break;	/* the drain gives up here */
			continue;
		}
		FUZZ_ASSERT(r.complete && r.nlines > 0);
		fuzz_inspect(&r);
		/* A complete reply takes no more lines. */
		FUZZ_ASSERT(smtp_proto_reply_feed(&r, "250 more", 8) == -1);
		smtp_proto_reply_init(&r);
		nreplies++;
	}
	/* What a log line shows of a reply cut short or gone wrong. */
	fuzz_inspect(&r);
	return 0;
}
