/*
 * fuzz_proxy: smtp_proto_proxy_parse() on the first bytes of a connection
 * to a "proxy" listener, v1 text or v2 binary.  The server calls it again
 * each time more bytes arrive, so every prefix of the input is parsed too,
 * and the answers must be a run of MORE followed by one verdict that longer
 * input never changes: a good header is never judged on a part of it, and
 * MORE never asks for more than SMTP_PROXY_MAX bytes.  An accepted address
 * written back as a v1 header parses to itself.
 */
#include "fuzz.h"
#include "smtp_proto.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Past the cap the server has closed the connection. */
#define FUZZ_MAX	(SMTP_PROXY_MAX + 64)

static void
fuzz_ok(const struct smtp_proxy *px)
{
	static const unsigned char zero[12];
	struct smtp_proxy again;
	char a[INET6_ADDRSTRLEN], line[128];
	enum smtp_proxy_status st;
	size_t consumed;
	int n;

	FUZZ_ASSERT(px->family == AF_INET || px->family == AF_INET6);
	FUZZ_ASSERT(px->port <= 65535);
	if (px->family == AF_INET)
		FUZZ_ASSERT(memcmp(px->addr + 4, zero, sizeof(zero)) == 0);
	if (px->port == 0)
		return;		/* v2 allows it; v1 cannot say it */
	FUZZ_ASSERT(inet_ntop(px->family, px->addr, a, sizeof(a)) != NULL);
	n = snprintf(line, sizeof(line), "PROXY %s %s %s %u 25\r\n",
	    px->family == AF_INET ? "TCP4" : "TCP6", a,
	    px->family == AF_INET ? "192.0.2.1" : "2001:db8::1", px->port);
	FUZZ_ASSERT(n > 0 && (size_t)n < sizeof(line));
	st = smtp_proto_proxy_parse((const unsigned char *)line, (size_t)n,
	    &again, &consumed);
	FUZZ_ASSERT(st == SMTP_PROXY_OK && consumed == (size_t)n);
	FUZZ_ASSERT(again.family == px->family && again.port == px->port);
	FUZZ_ASSERT(memcmp(again.addr, px->addr, sizeof(px->addr)) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum smtp_proxy_status st, verdict = SMTP_PROXY_MORE;
	struct smtp_proxy px, first;
	size_t consumed, first_consumed = 0, i;
	unsigned char *heap;

	if (size > FUZZ_MAX)
		return 0;
	/*
	 * Each prefix is copied to the end of an exact-size heap block, so
	 * ASan catches any read past the bytes the parser was given.
	 */
	heap = malloc(size > 0 ? size : 1);
	if (heap == NULL)
		abort();
	memset(&first, 0, sizeof(first));
	for (i = 0; i <= size; i++) {
		unsigned char *p = heap + (size - i);

		memcpy(p, data, i);
		memset(&px, 0, sizeof(px));
		consumed = (size_t)-1;
		st = smtp_proto_proxy_parse(p, i, &px, &consumed);
		switch (st) {
		case SMTP_PROXY_MORE:
			/* Nothing decided yet, and the cap is not reached. */
			FUZZ_ASSERT(verdict == SMTP_PROXY_MORE);
			FUZZ_ASSERT(i < SMTP_PROXY_MAX);
			break;
		case SMTP_PROXY_OK:
		case SMTP_PROXY_LOCAL:
			FUZZ_ASSERT(consumed > 0 && consumed <= i);
			FUZZ_ASSERT(consumed <= SMTP_PROXY_MAX);
			/* A v1 line ends with CRLF; a v2 block is binary. */
			if (p[0] == 'P')
				FUZZ_ASSERT(consumed <= 107 &&
				    p[consumed - 2] == '\r' &&
				    p[consumed - 1] == '\n');
			else
				FUZZ_ASSERT(consumed >= 16);
			if (verdict == SMTP_PROXY_MORE) {
				/* The header ends where it was found. */
				FUZZ_ASSERT(consumed == i);
				verdict = st;
				first = px;
				first_consumed = consumed;
				if (st == SMTP_PROXY_OK)
					fuzz_ok(&px);
				break;
			}
			FUZZ_ASSERT(st == verdict && consumed == first_consumed);
			if (st == SMTP_PROXY_OK)
				FUZZ_ASSERT(px.family == first.family &&
				    px.port == first.port &&
				    memcmp(px.addr, first.addr,
				    sizeof(px.addr)) == 0);
			break;
		case SMTP_PROXY_BAD:
			FUZZ_ASSERT(verdict == SMTP_PROXY_MORE ||
			    verdict == SMTP_PROXY_BAD);
			verdict = SMTP_PROXY_BAD;
			break;
		default:
			abort();
		}
	}
	free(heap);
	return 0;
}
