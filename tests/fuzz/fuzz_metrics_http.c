/*
 * fuzz_metrics_http: the metrics listener's request path on arbitrary
 * bytes, as a peer inside [metrics] allow sends them: find the end of the
 * request head within the first 8 KB (what the server buffers), then build
 * the reply.  Nothing may crash, leak or read out of bounds, and every
 * reply must be well formed: "HTTP/1.1 NNN reason", headers, an empty line,
 * and a body as long as its Content-Length (none for HEAD).
 */
#include "fuzz.h"
#include "metrics.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_HEAD_MAX	8192

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *cl, *end;
	size_t n = size < FUZZ_HEAD_MAX ? size : FUZZ_HEAD_MAX, head, len;
	unsigned long clen;
	char *out;
	int code;

	head = metrics_http_head_len(p, n);
	FUZZ_ASSERT(head <= n);
	if (head == 0)
		return 0;
	out = metrics_http_respond(p, head, &len);
	FUZZ_ASSERT(out != NULL && len >= 12 && out[len] == '\0');
	FUZZ_ASSERT(memcmp(out, "HTTP/1.1 ", 9) == 0);
	code = atoi(out + 9);
	FUZZ_ASSERT(code == 200 || code == 400 || code == 404 ||
	    code == 405 || code == 503);
	FUZZ_ASSERT((end = strstr(out, "\r\n\r\n")) != NULL);
	FUZZ_ASSERT((cl = strstr(out, "\r\nContent-Length: ")) != NULL &&
	    cl < end);
	clen = strtoul(cl + 18, NULL, 10);
	end += 4;
	FUZZ_ASSERT((size_t)(out + len - end) == clen ||
	    (size_t)(out + len - end) == 0);
	FUZZ_ASSERT(strstr(out, "\r\nConnection: close\r\n") != NULL);
	free(out);
	return 0;
}
