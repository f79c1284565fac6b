// SPDX-License-Identifier: MIT
/*
 * The augmented red-black tree behind interval_tree.h.
 *
 * libbsd's tree.h calls RB_AUGMENT(x) on each node whose children change during a rotation or a
 * splice; we make it recompute x alone from its children. That is enough for every node whose
 * subtree did not gain or lose the inserted or removed node: its children are correct when it
 * is recomputed. Every node whose subtree did change is an ancestor of the deepest point the
 * operation touched, so after the library returns we walk from that point to the root once:
 * from the new node after an insert, and after a removal from the successor's old parent (or
 * the removed node's parent). One walk of O(log n) per operation.
 */
#include <stddef.h>
#include <stdlib.h>

#include "interval_tree.h"

static void itree_recompute(struct interval_tree_node *n)
{
	struct interval_tree_node *l = RB_LEFT(n, rb), *r = RB_RIGHT(n, rb);
	uint64_t last = n->last;

	if (l && l->subtree_last > last)
		last = l->subtree_last;
	if (r && r->subtree_last > last)
		last = r->subtree_last;
	n->subtree_last = last;
}

static void itree_propagate(struct interval_tree_node *n)
{
	for (; n; n = RB_PARENT(n, rb))
		itree_recompute(n);
}

static int itree_cmp(struct interval_tree_node *a, struct interval_tree_node *b)
{
	if (a->start != b->start)
		return a->start < b->start ? -1 : 1;
	if (a->last != b->last)
		return a->last < b->last ? -1 : 1;
	if (a != b)
		return (uintptr_t)a < (uintptr_t)b ? -1 : 1;
	return 0;
}

#undef RB_AUGMENT
#define RB_AUGMENT(x) itree_recompute(x)

/* libbsd spells the attribute of its static generator the BSD way. */
#ifndef __unused
#define __unused __attribute__((unused))
#endif
RB_GENERATE_STATIC(interval_tree_rb, interval_tree_node, rb, itree_cmp)

void interval_tree_insert(struct interval_tree_root *root, struct interval_tree_node *node)
{
	node->subtree_last = node->last;
	RB_INSERT(interval_tree_rb, &root->rb, node);
	itree_propagate(node);
	root->count++;
}

void interval_tree_remove(struct interval_tree_root *root, struct interval_tree_node *node)
{
	struct interval_tree_node *deepest = RB_PARENT(node, rb);

	/*
	 * With two children the successor moves into node's place, and the subtree of its old
	 * parent lost it: that parent is the deepest node whose subtree changed (or the successor
	 * itself when it was node's own child). Otherwise node's child moves up and node's parent
	 * is the deepest.
	 */
	if (RB_LEFT(node, rb) && RB_RIGHT(node, rb)) {
		struct interval_tree_node *next = RB_NEXT(interval_tree_rb, &root->rb, node);

		deepest = RB_PARENT(next, rb) == node ? next : RB_PARENT(next, rb);
	}
	RB_REMOVE(interval_tree_rb, &root->rb, node);
	itree_propagate(deepest);
	root->count--;
}

static struct interval_tree_node *itree_subtree_search(struct interval_tree_node *n,
						       uint64_t start, uint64_t last)
{
	for (;;) {
		struct interval_tree_node *l = RB_LEFT(n, rb);

		/*
		 * The leftmost node whose `last` reaches start is the only candidate: everything
		 * after it starts later, so if it starts past `last` so does everything else.
		 */
		if (l && l->subtree_last >= start) {
			n = l;
			continue;
		}
		if (n->start > last)
			return NULL;
		if (n->last >= start)
			return n;
		n = RB_RIGHT(n, rb);
		if (!n || n->subtree_last < start)
			return NULL;
	}
}

struct interval_tree_node *interval_tree_iter_first(struct interval_tree_root *root,
						    uint64_t start, uint64_t last)
{
	struct interval_tree_node *n = RB_ROOT(&root->rb);

	if (!n || n->subtree_last < start)
		return NULL;
	return itree_subtree_search(n, start, last);
}

struct interval_tree_node *interval_tree_iter_next(struct interval_tree_node *node,
						   uint64_t start, uint64_t last)
{
	struct interval_tree_node *r = RB_RIGHT(node, rb);

	for (;;) {
		struct interval_tree_node *prev;

		if (r && r->subtree_last >= start)
			return itree_subtree_search(r, start, last);
		/* Climb until we arrive from a left child: that parent is next in order. */
		do {
			prev = node;
			node = RB_PARENT(node, rb);
			if (!node)
				return NULL;
			r = RB_RIGHT(node, rb);
		} while (prev == r);
		if (node->start > last)
			return NULL;
		if (node->last >= start)
			return node;
	}
}

struct interval_tree_node *interval_tree_first(struct interval_tree_root *root)
{
	return RB_MIN(interval_tree_rb, &root->rb);
}

struct interval_tree_node *interval_tree_next(struct interval_tree_node *node)
{
	return interval_tree_rb_RB_NEXT(node);
}

static bool itree_verify_node(struct interval_tree_node *n, unsigned long *count)
{
	struct interval_tree_node *l, *r;
	uint64_t last;

	if (!n)
		return true;
	l = RB_LEFT(n, rb);
	r = RB_RIGHT(n, rb);
	if (l && (RB_PARENT(l, rb) != n || itree_cmp(l, n) >= 0))
		return false;
	if (r && (RB_PARENT(r, rb) != n || itree_cmp(r, n) <= 0))
		return false;
	if (!itree_verify_node(l, count) || !itree_verify_node(r, count))
		return false;
	last = n->subtree_last;
	itree_recompute(n);
	(*count)++;
	return last == n->subtree_last;
}

bool interval_tree_verify(struct interval_tree_root *root)
{
	unsigned long count = 0;

	if (!itree_verify_node(RB_ROOT(&root->rb), &count))
		return false;
	return count == root->count;
}

int interval_tree_for_each_span(struct interval_tree_root *root, uint64_t first, uint64_t last,
				interval_tree_span_fn fn, void *arg)
{
	struct interval_tree_node *n = interval_tree_iter_first(root, first, last);
	uint64_t next = first;
	int rc;

	while (n) {
		uint64_t used_first = n->start > next ? n->start : next;
		uint64_t used_last = n->last;

		if (used_first > next) {
			rc = fn(arg, true, next, used_first - 1);
			if (rc)
				return rc;
		}
		/* Extend the covered run over every interval that overlaps or touches it. */
		for (n = interval_tree_iter_next(n, first, last); n; n = interval_tree_iter_next(n, first, last)) {
			if (used_last != UINT64_MAX && n->start > used_last + 1)
				break;
			if (n->last > used_last)
				used_last = n->last;
		}
		if (used_last > last)
			used_last = last;
		rc = fn(arg, false, used_first, used_last);
		if (rc)
			return rc;
		if (used_last == last)
			return 0;
		next = used_last + 1;
	}
	return fn(arg, true, next, last);
}
