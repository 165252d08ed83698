#include "queue.h"

#include "t.h"

static void
test_backoff(void)
{
	static const struct {
		unsigned long long attempts, min, max;
		double rnd;
		unsigned long long want;
	} cases[] = {
		{ 1, 300, 3600, 0.5, 300 },	/* no jitter at rnd 0.5 */
		{ 2, 300, 3600, 0.5, 600 },
		{ 3, 300, 3600, 0.5, 1200 },
		{ 4, 300, 3600, 0.5, 2400 },
		{ 5, 300, 3600, 0.5, 3600 },	/* capped */
		{ 500, 300, 3600, 0.5, 3600 },
		{ 1, 300, 3600, 0.0, 270 },	/* -10% */
		{ 1, 300, 3600, 0.999999, 329 },	/* just under +10% */
		{ 1, 1, 1, 0.0, 1 },		/* never below 1 s */
		{ 0, 300, 3600, 0.5, 300 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t got = queue_backoff(cases[i].attempts, cases[i].min,
		    cases[i].max, cases[i].rnd);

		if (got != cases[i].want) {
			fprintf(stderr, "  case %zu: got %llu want %llu\n", i,
			    (unsigned long long)got, cases[i].want);
			T_CHECK(!"backoff");
		}
	}
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "queue_backoff", test_backoff },
	};

	return T_RUN(cases);
}
