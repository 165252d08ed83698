/*
 * t.h: the unit-test harness.  A test file defines test functions, lists
 * them in a table and calls t_main(); T_CHECK records a failure and goes on.
 * The binary prints "PASS name" / "FAIL name" lines, then "N passed, N failed",
 * and exits non-zero when anything failed.
 */
#ifndef HOLDFAST_T_H
#define HOLDFAST_T_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct t_case {
	const char	*name;
	void		(*fn)(void);
};

static int t_failed_checks;

#define T_CHECK(cond)                                                        \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "  %s:%d: check failed: %s\n",       \
			    __FILE__, __LINE__, #cond);                      \
			t_failed_checks++;                                   \
		}                                                            \
	} while (0)

#define T_STREQ(a, b)                                                        \
	do {                                                                 \
		const char *t_a_ = (a), *t_b_ = (b);                         \
		if (t_a_ == NULL || t_b_ == NULL || strcmp(t_a_, t_b_) != 0) { \
			fprintf(stderr, "  %s:%d: \"%s\" != \"%s\"\n",       \
			    __FILE__, __LINE__, t_a_ ? t_a_ : "(null)",      \
			    t_b_ ? t_b_ : "(null)");                         \
			t_failed_checks++;                                   \
		}                                                            \
	} while (0)

static int
t_main(const struct t_case *cases, size_t n)
{
	int passed = 0, failed = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		int before = t_failed_checks;

		cases[i].fn();
		if (t_failed_checks == before) {
			printf("PASS %s\n", cases[i].name);
			passed++;
		} else {
			printf("FAIL %s\n", cases[i].name);
			failed++;
		}
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}

#define T_RUN(cases) t_main((cases), sizeof(cases) / sizeof((cases)[0]))

#endif
