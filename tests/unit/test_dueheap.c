/*
 * The due-heap against a brute-force minimum: random adds, removes and due
 * changes, checking after each that the first item is the earliest by
 * (due, arrival, seq) and that every item knows its slot.
 */
#include "dueheap.h"

#include <stdbool.h>
#include <stdint.h>

#include "t.h"

#define N 600

static struct dueheap_item items[N];

static bool
before(const struct dueheap_item *a, const struct dueheap_item *b)
{
	if (a->due != b->due)
		return a->due < b->due;
	if (a->arrival != b->arrival)
		return a->arrival < b->arrival;
	return a->seq < b->seq;
}

static uint32_t rnd_state = 12345;

static uint32_t
rnd(void)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return rnd_state >> 8;
}

static bool
consistent(const struct dueheap *h)
{
	const struct dueheap_item *min = NULL;
	size_t i, n = 0;

	for (i = 0; i < N; i++) {
		if (!dueheap_has(&items[i]))
			continue;
		n++;
		if (dueheap_at(h, items[i].slot) != &items[i])
			return false;
		if (min == NULL || before(&items[i], min))
			min = &items[i];
	}
	return n == dueheap_count(h) && dueheap_first(h) == min;
}

static void
test_random(void)
{
	struct dueheap h;
	size_t i, step;
	bool ok = true;

	dueheap_init(&h);
	for (i = 0; i < N; i++)
		dueheap_item_init(&items[i], (time_t)(rnd() % 50),
		    (time_t)(rnd() % 20), i);
	for (step = 0; step < 5000 && ok; step++) {
		struct dueheap_item *it = &items[rnd() % N];

		switch (rnd() % 4) {
		case 0:
		case 1:
			if (!dueheap_has(it))
				dueheap_add(&h, it);
			break;
		case 2:
			dueheap_del(&h, it);
			break;
		case 3:
			dueheap_set_due(&h, it, (time_t)(rnd() % 50));
			break;
		}
		ok = consistent(&h);
	}
	T_CHECK(ok);
	/* a pass that changes due times, then one fix */
	for (i = 0; i < dueheap_count(&h); i++)
		dueheap_at(&h, i)->due = (time_t)(rnd() % 7);
	dueheap_fix(&h);
	T_CHECK(consistent(&h));
	/* drained in order */
	{
		struct dueheap_item *prev = NULL, *it;

		while ((it = dueheap_first(&h)) != NULL) {
			T_CHECK(prev == NULL || !before(it, prev));
			dueheap_del(&h, it);
			T_CHECK(!dueheap_has(it));
			prev = it;
		}
	}
	dueheap_fini(&h);
}

/* Ties on due go oldest first: a returning primary drains in order. */
static void
test_ties(void)
{
	struct dueheap h;
	struct dueheap_item a, b, c;

	dueheap_init(&h);
	dueheap_item_init(&a, 0, 300, 1);
	dueheap_item_init(&b, 0, 100, 2);
	dueheap_item_init(&c, 0, 100, 3);
	dueheap_add(&h, &a);
	dueheap_add(&h, &c);
	dueheap_add(&h, &b);
	T_CHECK(dueheap_first(&h) == &b);
	dueheap_set_due(&h, &b, 10);
	T_CHECK(dueheap_first(&h) == &c);
	dueheap_del(&h, &c);
	T_CHECK(dueheap_first(&h) == &a);
	dueheap_fini(&h);
	T_CHECK(!dueheap_has(&a) && !dueheap_has(&b));
}

int
main(void)
{
	static const struct t_case cases[] = {
		{ "dueheap_random", test_random },
		{ "dueheap_ties", test_ties },
	};

	return T_RUN(cases);
}
