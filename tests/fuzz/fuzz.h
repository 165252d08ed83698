/*
 * fuzz.h: what every libFuzzer harness here shares.  FUZZ_ASSERT aborts,
 * so a broken invariant is a crash libFuzzer keeps as a reproducer.
 */
#ifndef HOLDFAST_FUZZ_H
#define HOLDFAST_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(c)                                                       \
	do {                                                                 \
		if (!(c))                                                    \
			abort();                                             \
	} while (0)

#endif
