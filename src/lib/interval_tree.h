/* SPDX-License-Identifier: MIT */
/*
 * Interval trees over [start, last] (last inclusive, as everywhere in iommufd).
 *
 * A red-black tree (libbsd's <sys/tree.h>) ordered by start, augmented with the largest `last`
 * of each subtree, for overlap queries in O(log n + k). (The IOAS's areas, disjoint, and the
 * gaps between them live in lib/rangemap.h instead.)
 *
 * Intervals may overlap and may be equal (reserved ranges from several owners); ties are broken
 * by node address so every node has its own place in the order.
 *
 * The tree does no locking and no allocation: nodes are embedded in their owners and the owner's
 * lock protects the tree.
 */
#ifndef UIOMMU_LIB_INTERVAL_TREE_H
#define UIOMMU_LIB_INTERVAL_TREE_H

#include <stdbool.h>
#include <stdint.h>

#include <bsd/sys/tree.h>

struct interval_tree_node {
	RB_ENTRY(interval_tree_node) rb;
	uint64_t start;
	uint64_t last;
	uint64_t subtree_last; /* max `last` in this subtree */
};

RB_HEAD(interval_tree_rb, interval_tree_node);

struct interval_tree_root {
	struct interval_tree_rb rb;
	unsigned long count;
};

static inline void interval_tree_init(struct interval_tree_root *root)
{
	RB_INIT(&root->rb);
	root->count = 0;
}

static inline bool interval_tree_empty(const struct interval_tree_root *root)
{
	return root->count == 0;
}

void interval_tree_insert(struct interval_tree_root *root, struct interval_tree_node *node);
void interval_tree_remove(struct interval_tree_root *root, struct interval_tree_node *node);

/* The overlapping node with the lowest start, or NULL. */
struct interval_tree_node *interval_tree_iter_first(struct interval_tree_root *root,
						    uint64_t start, uint64_t last);
/* The next overlapping node after @node in start order, or NULL. */
struct interval_tree_node *interval_tree_iter_next(struct interval_tree_node *node,
						   uint64_t start, uint64_t last);

struct interval_tree_node *interval_tree_first(struct interval_tree_root *root);
struct interval_tree_node *interval_tree_next(struct interval_tree_node *node);

/* Checks every augmented value and the order; for unit tests and debug sweeps. */
bool interval_tree_verify(struct interval_tree_root *root);

#define interval_tree_for_each(node, root, s, l)                                          \
	for ((node) = interval_tree_iter_first((root), (s), (l)); (node);                  \
	     (node) = interval_tree_iter_next((node), (s), (l)))

#endif

/*
 * Walks [first, last] in order as alternating spans: maximal runs covered by the union of the
 * tree's intervals (is_hole false) and the runs between them (is_hole true). Stops at the first
 * non-zero return of @fn and returns it; 0 when the walk completes.
 */
typedef int (*interval_tree_span_fn)(void *arg, bool is_hole, uint64_t start, uint64_t last);
int interval_tree_for_each_span(struct interval_tree_root *root, uint64_t first, uint64_t last,
				interval_tree_span_fn fn, void *arg);
