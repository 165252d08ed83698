/*
 * fuzz_envelope: envelope_load() on arbitrary bytes must not crash, leak or
 * read out of bounds; whatever it accepts must dump to text that loads
 * again and dumps identically (the dump is canonical).
 */
#include "fuzz.h"
#include "envelope.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct envelope *a, *b;
	char err[256], *t1, *t2;
	size_t l1, l2;

	a = envelope_load((const char *)data, size, err, sizeof(err));
	if (a == NULL)
		return 0;
	t1 = envelope_dump(a, &l1);
	b = envelope_load(t1, l1, err, sizeof(err));
	if (b == NULL)
		abort();	/* a dump that does not load */
	t2 = envelope_dump(b, &l2);
	if (l1 != l2 || memcmp(t1, t2, l1) != 0)
		abort();	/* not canonical */
	free(t1);
	free(t2);
	envelope_free(a);
	envelope_free(b);
	return 0;
}
