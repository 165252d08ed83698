/*
 * fuzz_data: the DATA/BDAT decoder and what goes with a stored body.
 * Asserts decoded DATA is canonical CRLF text within its output bound,
 * feeding in pieces changes nothing, a stored body survives dot-stuffing
 * and decoding, xtext round-trips, and the Received field stays one field.
 * (Command lines, paths and replies have their own harnesses.)
 */
#include "fuzz.h"
#include "smtp_proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX	(64 * 1024)

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

/* xtext (ENVID=, ORCPT=) round-trips and never grows when decoded. */
static void
fuzz_xtext(const char *line)
{
	char x[SMTP_LINE_MAX * 3 + 1], y[SMTP_LINE_MAX + 1];

	FUZZ_ASSERT(smtp_proto_xtext_encode(line, x, sizeof(x)) == 0);
	FUZZ_ASSERT(smtp_proto_xtext_decode(x, y, sizeof(y)) == 0);
	FUZZ_ASSERT(strcmp(y, line) == 0);
	if (smtp_proto_xtext_decode(line, y, sizeof(y)) == 0)
		FUZZ_ASSERT(strlen(y) <= strlen(line));
}

/* Decode whole and in input-chosen pieces; both must agree. */
static size_t
fuzz_data(bool dot, const char *in, size_t len, char *out, uint8_t seed,
    struct smtp_proto_data *d)
{
	struct smtp_proto_data d2;
	size_t off = 0, n, got, chunk, total = 0, consumed;

	smtp_proto_data_init(d, dot);
	consumed = smtp_proto_data_feed(d, in, len, out, &got);
	FUZZ_ASSERT(got <= 2 * len + 4);
	FUZZ_ASSERT(consumed == len || d->done);
	got += smtp_proto_data_finish(d, out + got);
	FUZZ_ASSERT(d->out_total == got);
	fuzz_canonical(out, got);

	smtp_proto_data_init(&d2, dot);
	while (off < len && !d2.done) {
		chunk = 1 + (seed + off * 7) % 13;
		if (chunk > len - off)
			chunk = len - off;
		n = smtp_proto_data_feed(&d2, in + off, chunk, fz_out2 + total,
		    &got);
		FUZZ_ASSERT(got <= 2 * chunk + 4);
		total += got;
		off += n;
	}
	total += smtp_proto_data_finish(&d2, fz_out2 + total);
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
	struct smtp_proto_data d;
	char hdr[2048];
	size_t n, m, i, crlf;
	bool bol;
	int len;

	if (size > FUZZ_MAX)
		return 0;

	n = size < SMTP_LINE_MAX ? size : SMTP_LINE_MAX;
	memcpy(fz_line, in, n);
	fz_line[n] = '\0';
	fuzz_xtext(fz_line);

	fuzz_data(false, in, size, fz_out, size > 0 ? data[0] : 0, &d);
	n = fuzz_data(true, in, size, fz_out, size > 0 ? data[size - 1] : 0,
	    &d);
	/* What we store, dot-stuffed for the primary, decodes back to
	 * itself and ends exactly at our terminator. */
	bol = true;
	m = smtp_proto_dotstuff(&bol, fz_out, n, fz_stuffed);
	FUZZ_ASSERT(m <= 2 * n);
	memcpy(fz_stuffed + m, ".\r\n", 3);
	smtp_proto_data_init(&d, true);
	FUZZ_ASSERT(smtp_proto_data_feed(&d, fz_stuffed, m + 3, fz_back, &i) ==
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
