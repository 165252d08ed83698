/*
 * libFuzzer harness for smtp_proto: every parser of peer input gets the
 * same bytes, and the properties the rest of holdfast relies on are
 * asserted: decoded DATA is canonical CRLF text within its output bound,
 * feeding in pieces changes nothing, a stored body survives dot-stuffing
 * and decoding, xtext round-trips, and the Received field stays one field.
 */
#include "smtp_proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX	(64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(c)                                                       \
	do {                                                                 \
		if (!(c))                                                    \
			abort();                                             \
	} while (0)

static char fz_line[SMTP_LINE_MAX + 1];
static char fz_out[2 * FUZZ_MAX + 8], fz_out2[2 * FUZZ_MAX + 8];
static char fz_stuffed[4 * FUZZ_MAX + 32], fz_back[2 * FUZZ_MAX + 8];

static void
fuzz_canonical(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		FUZZ_ASSERT(s[i] != '\0');
		if (s[i] == '\r')
			FUZZ_ASSERT(i + 1 < len && s[i + 1] == '\n');
		if (s[i] == '\n')
			FUZZ_ASSERT(i > 0 && s[i - 1] == '\r');
	}
}

static void
fuzz_printable(const char *s)
{
	for (; *s != '\0'; s++)
		FUZZ_ASSERT(*s >= ' ' && *s < 0x7f);
}

static void
fuzz_line(const char *line)
{
	struct smtp_param params[SMTP_PARAMS_MAX];
	struct smtp_path path;
	enum smtp_path_status st;
	char verb[SMTP_VERB_MAX], x[SMTP_LINE_MAX * 3 + 1], y[SMTP_LINE_MAX + 1];
	const char *args, *rest;
	size_t i;
	int n;

	if (smtp_proto_split(line, verb, sizeof(verb), &args) == 0) {
		FUZZ_ASSERT(verb[0] != '\0' && strlen(verb) < SMTP_VERB_MAX);
		FUZZ_ASSERT(args >= line && args <= line + strlen(line));
	}
	st = smtp_proto_parse_path(line, &path, &rest);
	if (st != SMTP_PATH_SYNTAX) {
		FUZZ_ASSERT(rest > line && rest <= line + strlen(line));
		FUZZ_ASSERT(*rest != ' ');
		FUZZ_ASSERT(strlen(path.mailbox) < sizeof(path.mailbox));
	}
	if (st == SMTP_PATH_OK) {
		for (i = 0; path.mailbox[i] != '\0'; i++)
			FUZZ_ASSERT((unsigned char)path.mailbox[i] >= 0x20 &&
			    path.mailbox[i] != 0x7f);
		if (path.is_null)
			FUZZ_ASSERT(path.mailbox[0] == '\0');
		else if (path.is_postmaster)
			FUZZ_ASSERT(strcmp(path.mailbox, "postmaster") == 0);
		else {
			FUZZ_ASSERT(path.domain[0] != '\0' &&
			    path.domain[0] != '[');
			FUZZ_ASSERT(strchr(path.domain, '@') == NULL);
		}
		n = smtp_proto_parse_params(rest, params, SMTP_PARAMS_MAX);
		FUZZ_ASSERT(n >= -1 && n <= SMTP_PARAMS_MAX);
	}
	n = smtp_proto_parse_params(line, params, SMTP_PARAMS_MAX);
	FUZZ_ASSERT(n >= -1 && n <= SMTP_PARAMS_MAX);
	for (i = 0; i < (size_t)(n > 0 ? n : 0); i++) {
		FUZZ_ASSERT(params[i].keyword[0] != '\0');
		FUZZ_ASSERT(strchr(params[i].value, ' ') == NULL);
	}

	FUZZ_ASSERT(smtp_proto_xtext_encode(line, x, sizeof(x)) == 0);
	FUZZ_ASSERT(smtp_proto_xtext_decode(x, y, sizeof(y)) == 0);
	FUZZ_ASSERT(strcmp(y, line) == 0);
	if (smtp_proto_xtext_decode(line, y, sizeof(y)) == 0)
		FUZZ_ASSERT(strlen(y) <= strlen(line));
}

static void
fuzz_reply(const char *in, size_t len)
{
	struct smtp_reply r;
	char out[256];
	const char *nl;
	size_t n;
	int rc = 0;

	smtp_proto_reply_init(&r);
	while (len > 0 && rc == 0) {
		nl = memchr(in, '\n', len);
		n = nl != NULL ? (size_t)(nl - in) : len;
		rc = smtp_proto_reply_feed(&r, in, n);
		FUZZ_ASSERT(rc >= -1 && rc <= 1);
		FUZZ_ASSERT(strlen(r.text) < sizeof(r.text));
		if (rc == 1)
			FUZZ_ASSERT(r.complete && r.code >= 200 &&
			    r.code <= 599);
		in += n;
		len -= n;
		if (len > 0) {
			in++;
			len--;
		}
	}
	smtp_proto_reply_fmt(&r, out, sizeof(out));
	fuzz_printable(out);
	(void)smtp_proto_ehlo_has(&r, "PIPELINING");
}

/* Decode whole and in input-chosen pieces; both must agree. */
static size_t
fuzz_data(bool dot, const char *in, size_t len, char *out, uint8_t seed,
    struct smtp_data *d)
{
	struct smtp_data d2;
	size_t off = 0, n, got, chunk, total = 0, consumed;

	smtp_data_init(d, dot);
	consumed = smtp_data_feed(d, in, len, out, &got);
	FUZZ_ASSERT(got <= 2 * len + 4);
	FUZZ_ASSERT(consumed == len || d->done);
	got += smtp_data_finish(d, out + got);
	FUZZ_ASSERT(d->out_total == got);
	fuzz_canonical(out, got);

	smtp_data_init(&d2, dot);
	while (off < len && !d2.done) {
		chunk = 1 + (seed + off * 7) % 13;
		if (chunk > len - off)
			chunk = len - off;
		n = smtp_data_feed(&d2, in + off, chunk, fz_out2 + total,
		    &got);
		FUZZ_ASSERT(got <= 2 * chunk + 4);
		total += got;
		off += n;
	}
	total += smtp_data_finish(&d2, fz_out2 + total);
	FUZZ_ASSERT(off == consumed && d2.done == d->done);
	FUZZ_ASSERT(total == d->out_total);
	FUZZ_ASSERT(memcmp(out, fz_out2, total) == 0);
	FUZZ_ASSERT(d2.received == d->received &&
	    d2.in_headers == d->in_headers);
	return total;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	struct smtp_received rcv;
	struct smtp_data d;
	char hdr[2048];
	size_t n, m, i, crlf;
	bool bol;
	int len;

	if (size > FUZZ_MAX)
		return 0;

	n = size < SMTP_LINE_MAX ? size : SMTP_LINE_MAX;
	memcpy(fz_line, in, n);
	fz_line[n] = '\0';
	fuzz_line(fz_line);
	fuzz_reply(in, size);

	fuzz_data(false, in, size, fz_out, size > 0 ? data[0] : 0, &d);
	n = fuzz_data(true, in, size, fz_out, size > 0 ? data[size - 1] : 0,
	    &d);
	/* What we store, dot-stuffed for the primary, decodes back to
	 * itself and ends exactly at our terminator. */
	bol = true;
	m = smtp_proto_dotstuff(&bol, fz_out, n, fz_stuffed);
	FUZZ_ASSERT(m <= 2 * n);
	memcpy(fz_stuffed + m, ".\r\n", 3);
	smtp_data_init(&d, true);
	FUZZ_ASSERT(smtp_data_feed(&d, fz_stuffed, m + 3, fz_back, &i) ==
	    m + 3);
	FUZZ_ASSERT(d.done && i == n && memcmp(fz_back, fz_out, n) == 0);

	memset(&rcv, 0, sizeof(rcv));
	rcv.helo = fz_line;
	rcv.rdns = fz_line;
	rcv.addr = "192.0.2.1";
	rcv.hostname = "mx.example";
	rcv.proto = "ESMTP";
	rcv.id = "0123456789abcdef";
	rcv.rcpt = fz_line;
	rcv.when = 0;
	len = smtp_proto_fmt_received(&rcv, hdr, sizeof(hdr));
	FUZZ_ASSERT(len > 0);
	fuzz_canonical(hdr, (size_t)len);
	for (i = 0, crlf = 0; i < (size_t)len; i++) {
		if (hdr[i] == '\n') {
			crlf++;
			FUZZ_ASSERT(i + 1 == (size_t)len || hdr[i + 1] == '\t');
		} else if (hdr[i] != '\r' && hdr[i] != '\t')
			FUZZ_ASSERT(hdr[i] >= ' ' && hdr[i] < 0x7f);
	}
	FUZZ_ASSERT(crlf == 3);
	return 0;
}
