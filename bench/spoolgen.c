/*
 * spoolgen: fill a spool with N valid queued messages, fast, with the
 * daemon's own spool and envelope code (for backlog benchmarks: status and
 * metrics cost, startup time with a large queue).
 *
 *   spoolgen DIR N [SIZE]
 *
 * Each message has a SIZE-byte body (default 1024), one recipient, and an
 * arrival spread over the last 30 hours (so every age bucket has some).
 * Messages are committed in batches of 512 that share one syncfs and one
 * fsync of queue/ (spool_msg_stage, spool_sync, spool_msg_publish_many),
 * as the daemon's group commit does.  The spool must not be in use.
 * Build: cc -Isrc -D_GNU_SOURCE -o build/spoolgen bench/spoolgen.c \
 *   build/libholdfast.a -levent -lssl -lcrypto -lcares -pthread
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "envelope.h"
#include "log.h"
#include "spool.h"
#include "util.h"

#define SPOOLGEN_BATCH	512

int
main(int argc, char **argv)
{
	struct spool_msg *batch[SPOOLGEN_BATCH];
	int errs[SPOOLGEN_BATCH];
	struct spool *sp;
	unsigned long n, i, done = 0;
	size_t size, nb = 0, k;
	char *body;
	time_t now = time(NULL);

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: spoolgen DIR N [SIZE]\n");
		return 2;
	}
	n = strtoul(argv[2], NULL, 10);
	size = argc == 4 ? strtoul(argv[3], NULL, 10) : 1024;
	if ((sp = spool_open(argv[1])) == NULL)
		return 1;
	body = malloc(size + 1);
	if (body == NULL)
		return 1;
	memset(body, 'x', size);
	if (size >= 2)
		memcpy(body + size - 2, "\r\n", 2);
	for (i = 0; i < n; i++) {
		struct spool_msg *msg = spool_msg_new(sp);
		struct envelope *env;
		char *text;
		size_t len;

		if (msg == NULL || spool_msg_write(msg, body, size) == -1)
			return 1;
		env = envelope_new();
		util_copy(env->id, sizeof(env->id), spool_msg_id(msg));
		env->arrival = now - (time_t)(i * 108000 / (n + 1));
		envelope_set_str(&env->sender, "sender@example.org");
		envelope_set_str(&env->client_addr, "192.0.2.1");
		envelope_set_str(&env->client_helo, "client.example.org");
		envelope_set_str(&env->proto, "ESMTP");
		env->size = size;
		envelope_add_rcpt(env, "someone@example.test", NULL, NULL);
		text = envelope_dump(env, &len);
		envelope_free(env);
		if (spool_msg_stage(msg, text, len) == -1)
			return 1;
		free(text);
		batch[nb++] = msg;
		if (nb == SPOOLGEN_BATCH || i + 1 == n) {
			if (spool_sync(sp) == -1)
				return 1;
			done += spool_msg_publish_many(sp, batch, nb, errs);
			for (k = 0; k < nb; k++)
				if (errs[k] != 0)
					return 1;
			nb = 0;
		}
	}
	free(body);
	spool_close(sp);
	printf("messages=%lu\n", done);
	return done == n ? 0 : 1;
}
