/*
 * fuzz_ctl: the control-socket protocol on arbitrary bytes.  As a request
 * (what the daemon splits): at most CTL_ARGS_MAX words, none empty, none
 * with a space.  As an answer record (what holdfastctl parses): whatever
 * parses re-encodes with ctl_proto_kv() to a record that parses to the
 * same pairs.
 */
#include "fuzz.h"
#include "ctl_proto.h"

#include <event2/buffer.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void
fuzz_ctl_request(const uint8_t *data, size_t size)
{
	char *line, *argv[CTL_ARGS_MAX];
	int argc, i;

	if (size > CTL_LINE_MAX)
		size = CTL_LINE_MAX;
	line = malloc(size + 1);
	FUZZ_ASSERT(line != NULL);
	memcpy(line, data, size);
	line[size] = '\0';
	argc = ctl_proto_split(line, argv, CTL_ARGS_MAX);
	FUZZ_ASSERT(argc >= -1 && argc <= CTL_ARGS_MAX);
	for (i = 0; i < argc; i++)
		FUZZ_ASSERT(argv[i][0] != '\0' && strchr(argv[i], ' ') == NULL);
	free(line);
}

static void
fuzz_ctl_record(const uint8_t *data, size_t size)
{
	struct ctl_rec a, b;
	struct evbuffer *out;
	char *line, *again;
	size_t i, len;

	line = malloc(size + 1);
	FUZZ_ASSERT(line != NULL);
	memcpy(line, data, size);
	line[size] = '\0';
	if (ctl_proto_rec_parse(line, &a) == -1) {
		free(line);
		return;
	}
	out = evbuffer_new();
	FUZZ_ASSERT(out != NULL);
	for (i = 0; i < a.n; i++)
		ctl_proto_kv(out, a.key[i], a.val[i]);
	len = evbuffer_get_length(out);
	again = malloc(len + 1);
	FUZZ_ASSERT(again != NULL);
	evbuffer_remove(out, again, len);
	again[len] = '\0';
	FUZZ_ASSERT(ctl_proto_rec_parse(again, &b) == 0);
	FUZZ_ASSERT(a.n == b.n);
	for (i = 0; i < a.n; i++) {
		FUZZ_ASSERT(strcmp(a.key[i], b.key[i]) == 0);
		FUZZ_ASSERT(strcmp(a.val[i], b.val[i]) == 0);
	}
	free(again);
	evbuffer_free(out);
	free(line);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_ctl_request(data, size);
	fuzz_ctl_record(data, size);
	return 0;
}
