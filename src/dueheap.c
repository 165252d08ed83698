#include "dueheap.h"

#include <stdlib.h>

#include "log.h"
#include "xmalloc.h"

static bool
dueheap_before(const struct dueheap_item *a, const struct dueheap_item *b)
{
	if (a->due != b->due)
		return a->due < b->due;
	if (a->arrival != b->arrival)
		return a->arrival < b->arrival;
	return a->seq < b->seq;
}

static void
dueheap_place(struct dueheap *s, size_t i, struct dueheap_item *it)
{
	s->heap[i] = it;
	it->slot = i;
}

static void
dueheap_up(struct dueheap *s, size_t i)
{
	struct dueheap_item *it = s->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (!dueheap_before(it, s->heap[parent]))
			break;
		dueheap_place(s, i, s->heap[parent]);
		i = parent;
	}
	dueheap_place(s, i, it);
}

static void
dueheap_down(struct dueheap *s, size_t i)
{
	struct dueheap_item *it = s->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= s->n)
			break;
		if (c + 1 < s->n && dueheap_before(s->heap[c + 1], s->heap[c]))
			c++;
		if (!dueheap_before(s->heap[c], it))
			break;
		dueheap_place(s, i, s->heap[c]);
		i = c;
	}
	dueheap_place(s, i, it);
}

void
dueheap_init(struct dueheap *s)
{
	s->heap = NULL;
	s->n = s->alloc = 0;
}

void
dueheap_fini(struct dueheap *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		s->heap[i]->slot = DUEHEAP_NONE;
	free(s->heap);
	dueheap_init(s);
}

void
dueheap_item_init(struct dueheap_item *it, time_t due, time_t arrival,
    uint64_t seq)
{
	it->due = due;
	it->arrival = arrival;
	it->seq = seq;
	it->slot = DUEHEAP_NONE;
}

bool
dueheap_has(const struct dueheap_item *it)
{
	return it->slot != DUEHEAP_NONE;
}

void
dueheap_add(struct dueheap *s, struct dueheap_item *it)
{
	if (it->slot != DUEHEAP_NONE)
		fatalx("%s: item already in the heap", __func__);
	if (s->n == s->alloc) {
		s->alloc = s->alloc == 0 ? 256 : s->alloc * 2;
		s->heap = xreallocarray(s->heap, s->alloc, sizeof(*s->heap));
	}
	dueheap_place(s, s->n++, it);
	dueheap_up(s, it->slot);
}

void
dueheap_del(struct dueheap *s, struct dueheap_item *it)
{
	size_t i = it->slot;
	struct dueheap_item *last;

	if (i == DUEHEAP_NONE)
		return;
	if (i >= s->n || s->heap[i] != it)
		fatalx("%s: item not where it says", __func__);
	it->slot = DUEHEAP_NONE;
	last = s->heap[--s->n];
	if (i == s->n)
		return;
	dueheap_place(s, i, last);
	dueheap_up(s, i);
	dueheap_down(s, last->slot);
}

void
dueheap_set_due(struct dueheap *s, struct dueheap_item *it, time_t due)
{
	time_t was = it->due;

	it->due = due;
	if (it->slot == DUEHEAP_NONE || due == was)
		return;
	if (due < was)
		dueheap_up(s, it->slot);
	else
		dueheap_down(s, it->slot);
}

struct dueheap_item *
dueheap_first(const struct dueheap *s)
{
	return s->n > 0 ? s->heap[0] : NULL;
}

size_t
dueheap_count(const struct dueheap *s)
{
	return s->n;
}

struct dueheap_item *
dueheap_at(const struct dueheap *s, size_t i)
{
	return i < s->n ? s->heap[i] : NULL;
}

void
dueheap_fix(struct dueheap *s)
{
	size_t i;

	for (i = s->n / 2; i-- > 0;)
		dueheap_down(s, i);
}
