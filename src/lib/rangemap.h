/* SPDX-License-Identifier: MIT */
/*
 * A map of disjoint ranges [start, last] (last inclusive) to pointers, and of the gaps between
 * them: a B+tree with nodes of eight slots, in the spirit of the kernel's maple tree.
 *
 * Data model. Every node holds up to RANGEMAP_SLOTS items in IOVA order, each four words kept
 * in four arrays (so the eight starts a lookup compares share one cache line):
 *   leaf    start, last: an entry's range; slot: its value; next: the leaf after it.
 *   branch  start: the lowest start below child i; last: the highest last below it; gap: the
 *           longest gap inside child i's subtree (a length, 0 for none); slot: the child.
 * All leaves are at the same depth. A gap between two children is not stored: it is
 * start[i] - last[i - 1] - 1, read from the branch itself. So a first-fit search for a gap of
 * some length skips every child whose gap word is too small, and a search that no gap can
 * satisfy reads the root only.
 *
 * Invariants: entries are disjoint and ordered (last[i - 1] < start[i] in every node); every
 * node but the root holds at least RANGEMAP_MIN items, a branch root at least two; a branch's
 * start, last and gap words are exactly those of its children; count is the number of
 * entries. rangemap_verify() checks them all.
 *
 * Memory. Inserting may split a node on every level and add a root, and the tree cannot ask
 * for memory then: its owner is committing a change that must not fail. So nodes come from a
 * spare list that rangemap_reserve() fills beforehand, the one fallible step; insert only
 * takes from it. Removing never needs a node (merges free them, back onto the spare list), so
 * a removal cannot fail. In a steady state of inserts and removals the spares go round and
 * nothing is allocated; the map keeps only the spares one insert may need (the rest are
 * freed), and a map that becomes empty frees them all, so it holds no memory.
 *
 * The map does no locking: its owner's lock protects it, spares included. Iterators are
 * invalidated by any insert or remove.
 */
#ifndef UIOMMU_LIB_RANGEMAP_H
#define UIOMMU_LIB_RANGEMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RANGEMAP_SLOTS 8
#define RANGEMAP_MIN 3 /* items in every node but the root */

struct rangemap_node {
	uint64_t start[RANGEMAP_SLOTS];
	uint64_t last[RANGEMAP_SLOTS];
	uint64_t gap[RANGEMAP_SLOTS];  /* branches only */
	void *slot[RANGEMAP_SLOTS];
	struct rangemap_node *next;    /* leaves: the next leaf; spares: the next spare */
	unsigned int nr;
};

struct rangemap {
	struct rangemap_node *root;  /* NULL when empty */
	unsigned int height;         /* levels; 0 when empty, 1 when the root is a leaf */
	unsigned long count;         /* entries */
	unsigned long nodes;         /* nodes in the tree, spares not counted */
	struct rangemap_node *spare; /* filled by rangemap_reserve(), taken by insert */
	unsigned int nr_spare;
};

/* A position: the entry at leaf->slot[pos], whose range is [start, last]. */
struct rangemap_iter {
	struct rangemap_node *leaf;
	unsigned int pos;
	uint64_t start;
	uint64_t last;
};

void rangemap_init(struct rangemap *map);
/* Frees the nodes and spares; the values are the caller's. The map is empty afterwards. */
void rangemap_destroy(struct rangemap *map);

static inline bool rangemap_empty(const struct rangemap *map)
{
	return map->count == 0;
}

/*
 * Makes sure the next @entries inserts cannot run out of nodes. 0 or -ENOMEM (the spares
 * allocated before the failure stay; rangemap_spare_trim() gives them back).
 */
int rangemap_reserve(struct rangemap *map, unsigned int entries);
static inline unsigned int rangemap_spare_count(const struct rangemap *map)
{
	return map->nr_spare;
}
/* Frees spares until at most @keep are left. */
void rangemap_spare_trim(struct rangemap *map, unsigned int keep);
/*
 * Frees the spares beyond what one insert may need, after a change that reserved for many.
 * Removals keep no more than that either, so a map that shrank holds no node of its peak.
 */
void rangemap_spare_settle(struct rangemap *map);

/*
 * Adds [start, last] -> @value. The range must not overlap an entry and rangemap_reserve() must
 * have been called for it. Cannot fail.
 */
void rangemap_insert(struct rangemap *map, uint64_t start, uint64_t last, void *value);
/*
 * Removes the entry that starts at @start (it must exist); returns its value. Cannot fail.
 * Removing the last entry frees the spares too.
 */
void *rangemap_remove(struct rangemap *map, uint64_t start);
/*
 * The entry that starts at @start now ends at @last, which must not reach the next entry.
 * Cannot fail.
 */
void rangemap_set_last(struct rangemap *map, uint64_t start, uint64_t last);

/* The first entry in order that overlaps [start, last], or NULL. */
void *rangemap_iter_first(struct rangemap *map, struct rangemap_iter *it, uint64_t start,
			  uint64_t last);
/* The entry after @it's if it starts at or before @last, else NULL. */
void *rangemap_iter_next(struct rangemap_iter *it, uint64_t last);

#define rangemap_for_each(value, it, map, s, l)                                             \
	for ((value) = rangemap_iter_first((map), (it), (s), (l)); (value);                  \
	     (value) = rangemap_iter_next((it), (l)))

/*
 * First fit: calls @fits on the gaps of at least @min_span + 1 bytes (the gaps between
 * entries, before the first and after the last; [0, U64_MAX] when empty), lowest first,
 * until it returns true. Returns whether one did. Gaps too small are skipped subtree by
 * subtree without being visited.
 */
typedef bool (*rangemap_gap_fn)(uint64_t start, uint64_t last, void *arg);
bool rangemap_gap_find(struct rangemap *map, uint64_t min_span, rangemap_gap_fn fits, void *arg);

/* Checks every invariant of the header comment; for unit tests and debug sweeps. */
bool rangemap_verify(struct rangemap *map);

#endif
