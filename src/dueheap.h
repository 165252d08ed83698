/*
 * dueheap: the queue's due-heap: a binary min-heap of the messages that may
 * be sent, ordered by next-due time, then arrival (oldest first), then the
 * order they were indexed in.  The next message to send is found in O(1),
 * added, moved or removed in O(log n), so the cost of a dispatch does not
 * grow with the backlog; held, dead and busy messages are not in it.
 *
 * The caller (queue.c) embeds a struct dueheap_item in each index entry and
 * owns it; dueheap only orders the items it is given.  Pure data structure,
 * loop thread only.
 */
#ifndef HOLDFAST_DUEHEAP_H
#define HOLDFAST_DUEHEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define DUEHEAP_NONE	((size_t)-1)

struct dueheap_item {
	time_t		 due;		/* next attempt; 0: now */
	time_t		 arrival;
	uint64_t	 seq;		/* ties: order of indexing */
	size_t		 slot;		/* place in the heap; DUEHEAP_NONE */
};

struct dueheap {
	struct dueheap_item	**heap;
	size_t			  n, alloc;
};

void dueheap_init(struct dueheap *s);
void dueheap_fini(struct dueheap *s);
/* Initialise an item that is in no heap. */
void dueheap_item_init(struct dueheap_item *it, time_t due, time_t arrival,
    uint64_t seq);
bool dueheap_has(const struct dueheap_item *it);
/* Add it (not in the heap yet); borrows it until dueheap_del(). */
void dueheap_add(struct dueheap *s, struct dueheap_item *it);
/* Remove it if it is in the heap. */
void dueheap_del(struct dueheap *s, struct dueheap_item *it);
/* Set its due time, moving it if it is in the heap. */
void dueheap_set_due(struct dueheap *s, struct dueheap_item *it, time_t due);
/* The item due first, or NULL. */
struct dueheap_item *dueheap_first(const struct dueheap *s);
size_t dueheap_count(const struct dueheap *s);
/* The i-th item in heap order (any order; i < dueheap_count()): for a pass
 * that changes due times, followed by dueheap_fix(). */
struct dueheap_item *dueheap_at(const struct dueheap *s, size_t i);
/* Restore the order after due times were changed through dueheap_at(). */
void dueheap_fix(struct dueheap *s);

#endif
