/*
 * fuzz_ctl: the control protocol (ctl_proto) on arbitrary bytes.
 *
 * The input is used three ways: as a request line (what a local client
 * sends the daemon) for ctl_proto_split(); as a record line (what
 * holdfastctl reads back) for ctl_proto_rec_parse(); and as a value that
 * ctl_proto_kv() escapes into a record, which must parse back to exactly
 * the same bytes, on one line.  Nothing may crash, leak or read out of
 * bounds; every token must lie inside the line and be non-empty.
 */
#include "fuzz.h"
#include "ctl_proto.h"

#include <event2/buffer.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void
fuzz_split(const uint8_t *data, size_t size)
{
	char *line, *argv[CTL_ARGS_MAX];
	size_t len = size < CTL_LINE_MAX ? size : CTL_LINE_MAX;
	int argc, i;

	line = malloc(len + 1);
	FUZZ_ASSERT(line != NULL);
	memcpy(line, data, len);
	line[len] = '\0';
	argc = ctl_proto_split(line, argv, CTL_ARGS_MAX);
	FUZZ_ASSERT(argc >= -1 && argc <= CTL_ARGS_MAX);
	for (i = 0; i < argc; i++) {
		FUZZ_ASSERT(argv[i] >= line && argv[i] < line + len);
		FUZZ_ASSERT(argv[i][0] != '\0');
		FUZZ_ASSERT(strchr(argv[i], ' ') == NULL);
	}
	free(line);
}

static void
fuzz_rec(const uint8_t *data, size_t size)
{
	struct ctl_rec rec;
	char *line;
	size_t i;

	line = malloc(size + 1);
	FUZZ_ASSERT(line != NULL);
	memcpy(line, data, size);
	line[size] = '\0';
	if (ctl_proto_rec_parse(line, &rec) == 0) {
		FUZZ_ASSERT(rec.n <= CTL_REC_MAX);
		for (i = 0; i < rec.n; i++) {
			FUZZ_ASSERT(rec.key[i] >= line &&
			    rec.key[i] < line + size);
			FUZZ_ASSERT(rec.key[i][0] != '\0');
			FUZZ_ASSERT(rec.val[i] > line &&
			    rec.val[i] <= line + size);
			FUZZ_ASSERT(ctl_proto_rec_get(&rec, rec.key[i]) !=
			    NULL);
		}
	}
	free(line);
}

/* Escape a value into a record and read it back: the same bytes. */
static void
fuzz_roundtrip(const uint8_t *data, size_t size)
{
	struct evbuffer *out = evbuffer_new();
	struct ctl_rec rec;
	char *value, *line;
	size_t vlen, len;

	FUZZ_ASSERT(out != NULL);
	value = malloc(size + 1);
	FUZZ_ASSERT(value != NULL);
	memcpy(value, data, size);
	value[size] = '\0';
	vlen = strlen(value);		/* a C string ends at a NUL */
	ctl_proto_kv(out, "v", value);
	ctl_proto_kvu(out, "n", (unsigned long long)vlen);
	ctl_proto_rec_end(out);
	line = evbuffer_readln(out, &len, EVBUFFER_EOL_LF);
	FUZZ_ASSERT(line != NULL);
	FUZZ_ASSERT(evbuffer_get_length(out) == 0);	/* one line */
	FUZZ_ASSERT(ctl_proto_rec_parse(line, &rec) == 0);
	FUZZ_ASSERT(rec.n == 2);
	FUZZ_ASSERT(strcmp(rec.key[0], "v") == 0);
	FUZZ_ASSERT(strlen(rec.val[0]) == vlen);
	FUZZ_ASSERT(memcmp(rec.val[0], value, vlen) == 0);
	free(line);
	free(value);
	evbuffer_free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_split(data, size);
	fuzz_rec(data, size);
	fuzz_roundtrip(data, size);
	return 0;
}
