// SPDX-License-Identifier: MIT
/*
 * The B+tree behind rangemap.h.
 *
 * Every change descends once from the root to a leaf, remembering the slot it took on each
 * level (struct rm_path), changes the leaf, and then, going back up that path, splits full
 * nodes (insert) or refills underfull ones from a sibling (remove), and rewrites the parent's
 * start, last and gap words for the child that changed. The rewrite stops at the first level
 * whose words come out as they were: nothing above can have changed then. An insert or remove
 * in the middle of a big map therefore touches a few nodes of one root-to-leaf path, a few
 * cache lines each.
 *
 * Splits leave four and five items, and a node is refilled only below three, by merging with
 * its sibling when the two together hold six items or fewer, else by taking one of the
 * sibling's. So an insert and a remove of the same entry (one MAP and one UNMAP) cannot split
 * and merge the same node over and over. An insert past the last item of a full node (areas
 * mapped in ascending IOVA, the common way to fill an IOAS) leaves six items and moves two
 * with the new one instead: half-full nodes all along the tree would take 60% more memory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/compiler.h"
#include "lib/fail.h"
#include "lib/rangemap.h"

/* A node holds at least 3 items, so 2^64 entries fit in fewer levels than this. */
#define RM_MAX_HEIGHT 42
/* Siblings merge only when the result leaves room for two more items (see the top). */
#define RM_MERGE_MAX (RANGEMAP_SLOTS - 2)

struct rm_path {
	struct rangemap_node *node[RM_MAX_HEIGHT];
	unsigned int idx[RM_MAX_HEIGHT]; /* branches: the child taken */
};

/* One item of a node: an entry in a leaf, a child's summary in a branch. */
struct rm_item {
	uint64_t start, last, gap;
	void *slot;
};

void rangemap_init(struct rangemap *map)
{
	memset(map, 0, sizeof(*map));
}

static struct rangemap_node *rm_node_take(struct rangemap *map)
{
	struct rangemap_node *n = map->spare;

	/* rangemap_reserve() promised this node: running out is a caller's bug. */
	if (!n)
		die("rangemap: insert without rangemap_reserve()");
	map->spare = n->next;
	map->nr_spare--;
	memset(n, 0, sizeof(*n));
	map->nodes++;
	return n;
}

/* The spares a map keeps between operations: what one insert may need. */
static unsigned int rm_spare_cap(const struct rangemap *map)
{
	return map->height + 2;
}

/* A node leaves the tree: kept as a spare up to the cap, freed beyond it. */
static void rm_node_put(struct rangemap *map, struct rangemap_node *n)
{
	map->nodes--;
	if (map->nr_spare >= rm_spare_cap(map)) {
		uiommu_free(n);
		return;
	}
	n->next = map->spare;
	map->spare = n;
	map->nr_spare++;
}

/* Nodes that @entries inserts may need: a split per level each, and the root growing. */
static unsigned long rm_nodes_needed(const struct rangemap *map, unsigned int entries)
{
	unsigned long growth = 1, e;

	/* The first entry of an empty map is a leaf of its own. */
	if (!map->root && entries == 1)
		return 1;
	for (e = entries; e; e >>= 1)
		growth++;
	return (unsigned long)entries * (map->height + growth);
}

int rangemap_reserve(struct rangemap *map, unsigned int entries)
{
	unsigned long need = rm_nodes_needed(map, entries);

	while (map->nr_spare < need) {
		struct rangemap_node *n = uiommu_zalloc(sizeof(*n));

		if (!n)
			return -ENOMEM;
		n->next = map->spare;
		map->spare = n;
		map->nr_spare++;
	}
	return 0;
}

void rangemap_spare_trim(struct rangemap *map, unsigned int keep)
{
	while (map->nr_spare > keep) {
		struct rangemap_node *n = map->spare;

		map->spare = n->next;
		map->nr_spare--;
		uiommu_free(n);
	}
}

void rangemap_spare_settle(struct rangemap *map)
{
	rangemap_spare_trim(map, rm_spare_cap(map));
}

static void rm_free_subtree(struct rangemap_node *n, unsigned int height)
{
	unsigned int i;

	if (height > 1)
		for (i = 0; i != n->nr; i++)
			rm_free_subtree(n->slot[i], height - 1);
	uiommu_free(n);
}

void rangemap_destroy(struct rangemap *map)
{
	if (map->root)
		rm_free_subtree(map->root, map->height);
	rangemap_spare_trim(map, 0);
	rangemap_init(map);
}

static uint64_t rm_gap_between(const struct rangemap_node *n, unsigned int i)
{
	return n->start[i] - n->last[i - 1] - 1;
}

/* The words a parent keeps for @n. */
static struct rm_item rm_summary(struct rangemap_node *n, bool leaf)
{
	struct rm_item s = { n->start[0], n->last[n->nr - 1], 0, n };
	unsigned int i;

	for (i = 1; i < n->nr; i++)
		if (rm_gap_between(n, i) > s.gap)
			s.gap = rm_gap_between(n, i);
	if (!leaf)
		for (i = 0; i != n->nr; i++)
			if (n->gap[i] > s.gap)
				s.gap = n->gap[i];
	return s;
}

static void rm_item_set(struct rangemap_node *n, unsigned int i, const struct rm_item *it)
{
	n->start[i] = it->start;
	n->last[i] = it->last;
	n->gap[i] = it->gap;
	n->slot[i] = it->slot;
}

static struct rm_item rm_item_get(const struct rangemap_node *n, unsigned int i)
{
	struct rm_item it = { n->start[i], n->last[i], n->gap[i], n->slot[i] };

	return it;
}

/* Moves items [from, nr) of @n by @shift slots (up when positive), within the node. */
static void rm_items_shift(struct rangemap_node *n, unsigned int from, int shift)
{
	size_t count = n->nr - from;

	memmove(&n->start[from + shift], &n->start[from], count * sizeof(n->start[0]));
	memmove(&n->last[from + shift], &n->last[from], count * sizeof(n->last[0]));
	memmove(&n->gap[from + shift], &n->gap[from], count * sizeof(n->gap[0]));
	memmove(&n->slot[from + shift], &n->slot[from], count * sizeof(n->slot[0]));
}

/* Appends items [from, from + count) of @src to @dst. */
static void rm_items_append(struct rangemap_node *dst, const struct rangemap_node *src,
			    unsigned int from, unsigned int count)
{
	memcpy(&dst->start[dst->nr], &src->start[from], count * sizeof(src->start[0]));
	memcpy(&dst->last[dst->nr], &src->last[from], count * sizeof(src->last[0]));
	memcpy(&dst->gap[dst->nr], &src->gap[from], count * sizeof(src->gap[0]));
	memcpy(&dst->slot[dst->nr], &src->slot[from], count * sizeof(src->slot[0]));
	dst->nr += count;
}

static void rm_item_insert(struct rangemap_node *n, unsigned int pos, const struct rm_item *it)
{
	rm_items_shift(n, pos, 1);
	n->nr++;
	rm_item_set(n, pos, it);
}

static void rm_item_delete(struct rangemap_node *n, unsigned int pos)
{
	rm_items_shift(n, pos + 1, -1);
	n->nr--;
}

/* How many items of @n start at or before @key. */
static unsigned int rm_rank(const struct rangemap_node *n, uint64_t key)
{
	unsigned int i = 0;

	while (i != n->nr && n->start[i] <= key)
		i++;
	return i;
}

/* Walks to the leaf where @key belongs, filling @path; returns the leaf. */
static struct rangemap_node *rm_descend(struct rangemap *map, uint64_t key, struct rm_path *path)
{
	struct rangemap_node *n = map->root;
	unsigned int level;

	for (level = 0; level + 1 < map->height; level++) {
		unsigned int rank = rm_rank(n, key);

		path->node[level] = n;
		path->idx[level] = rank ? rank - 1 : 0;
		n = n->slot[path->idx[level]];
	}
	path->node[level] = n;
	return n;
}

/*
 * Rewrites, from @level up, each parent's words for the child on the path; stops as soon as
 * they come out unchanged.
 */
static void rm_fix_up(struct rangemap *map, struct rm_path *path, unsigned int level)
{
	for (; level > 0; level--) {
		struct rangemap_node *parent = path->node[level - 1];
		unsigned int i = path->idx[level - 1];
		struct rm_item s = rm_summary(path->node[level], level + 1 == map->height);

		if (parent->start[i] == s.start && parent->last[i] == s.last && parent->gap[i] == s.gap)
			return;
		rm_item_set(parent, i, &s);
	}
}

void rangemap_insert(struct rangemap *map, uint64_t start, uint64_t last, void *value)
{
	struct rm_item it = { start, last, 0, value };
	struct rangemap_node *n;
	struct rm_path path;
	unsigned int level, pos;

	map->count++;
	if (!map->root) {
		n = rm_node_take(map);
		rm_item_insert(n, 0, &it);
		map->root = n;
		map->height = 1;
		return;
	}
	n = rm_descend(map, start, &path);
	level = map->height - 1;
	pos = rm_rank(n, start);
	while (n->nr == RANGEMAP_SLOTS) {
		bool leaf = level + 1 == map->height;
		struct rangemap_node *right = rm_node_take(map);
		/* Items left in n: half, or all but two when appending (see the top). */
		unsigned int keep = pos == RANGEMAP_SLOTS ? RANGEMAP_SLOTS - 2 : (RANGEMAP_SLOTS + 1) / 2;
		struct rm_item left_sum, right_sum;

		/* Split the nine items (eight and the new one): four and five, or six and three. */
		if (pos < keep) {
			rm_items_append(right, n, keep - 1, RANGEMAP_SLOTS - (keep - 1));
			n->nr = keep - 1;
			rm_item_insert(n, pos, &it);
		} else {
			rm_items_append(right, n, keep, RANGEMAP_SLOTS - keep);
			n->nr = keep;
			rm_item_insert(right, pos - keep, &it);
		}
		if (leaf) {
			right->next = n->next;
			n->next = right;
		}
		left_sum = rm_summary(n, leaf);
		right_sum = rm_summary(right, leaf);
		if (level == 0) {
			struct rangemap_node *root = rm_node_take(map);

			rm_item_insert(root, 0, &left_sum);
			rm_item_insert(root, 1, &right_sum);
			map->root = root;
			map->height++;
			return;
		}
		level--;
		n = path.node[level];
		rm_item_set(n, path.idx[level], &left_sum);
		pos = path.idx[level] + 1;
		it = right_sum;
	}
	rm_item_insert(n, pos, &it);
	rm_fix_up(map, &path, level);
}

/*
 * @path's node at @level (not the root) has fewer than RANGEMAP_MIN items: take one from a
 * sibling, or merge with it. Returns true when the parent lost a child (a merge).
 */
static bool rm_refill(struct rangemap *map, struct rm_path *path, unsigned int level)
{
	struct rangemap_node *parent = path->node[level - 1];
	unsigned int li = path->idx[level - 1];
	bool leaf = level + 1 == map->height;
	struct rangemap_node *left, *right;
	struct rm_item s;

	/* Pair the node with its left sibling, or its right one when it is the first child. */
	if (li > 0)
		li--;
	left = parent->slot[li];
	right = parent->slot[li + 1];
	if (left->nr + right->nr <= RM_MERGE_MAX) {
		rm_items_append(left, right, 0, right->nr);
		if (leaf)
			left->next = right->next;
		s = rm_summary(left, leaf);
		rm_item_set(parent, li, &s);
		rm_item_delete(parent, li + 1);
		rm_node_put(map, right);
		path->idx[level - 1] = li;
		path->node[level] = left;
		return true;
	}
	if (left->nr > right->nr) {
		s = rm_item_get(left, left->nr - 1);
		left->nr--;
		rm_item_insert(right, 0, &s);
	} else {
		s = rm_item_get(right, 0);
		rm_item_delete(right, 0);
		rm_item_insert(left, left->nr, &s);
	}
	s = rm_summary(left, leaf);
	rm_item_set(parent, li, &s);
	s = rm_summary(right, leaf);
	rm_item_set(parent, li + 1, &s);
	return false;
}

void *rangemap_remove(struct rangemap *map, uint64_t start)
{
	struct rangemap_node *n;
	struct rm_path path;
	unsigned int level, pos;
	void *value;

	n = rm_descend(map, start, &path);
	pos = rm_rank(n, start);
	if (WARN_ON(!pos || n->start[pos - 1] != start))
		return NULL;
	value = n->slot[pos - 1];
	rm_item_delete(n, pos - 1);
	map->count--;
	level = map->height - 1;
	/*
	 * Refill underfull nodes upwards. After a refill at some level the parent's words for
	 * the two siblings are right, but the parent's own words in the grandparent may not be:
	 * go on from the parent's level.
	 */
	while (level > 0 && path.node[level]->nr < RANGEMAP_MIN) {
		bool merged = rm_refill(map, &path, level);

		level--;
		if (!merged)
			break;
	}
	if (level > 0) {
		/* The node at level is settled; the words above it may be stale. */
		rm_fix_up(map, &path, level);
		return value;
	}
	n = map->root;
	if (n->nr == 0) {
		/* An empty map holds no memory: the last unmap leaves the table as it began. */
		rm_node_put(map, n);
		rangemap_spare_trim(map, 0);
		map->root = NULL;
		map->height = 0;
	} else if (n->nr == 1 && map->height > 1) {
		map->root = n->slot[0];
		map->height--;
		rm_node_put(map, n);
	}
	return value;
}

void rangemap_set_last(struct rangemap *map, uint64_t start, uint64_t last)
{
	struct rangemap_node *n;
	struct rm_path path;
	unsigned int pos;

	n = rm_descend(map, start, &path);
	pos = rm_rank(n, start);
	if (WARN_ON(!pos || n->start[pos - 1] != start))
		return;
	n->last[pos - 1] = last;
	rm_fix_up(map, &path, map->height - 1);
}

static void *rm_iter_load(struct rangemap_iter *it, uint64_t last)
{
	struct rangemap_node *leaf = it->leaf;

	if (it->pos == leaf->nr) {
		leaf = leaf->next;
		if (!leaf)
			return NULL;
		it->leaf = leaf;
		it->pos = 0;
	}
	if (leaf->start[it->pos] > last)
		return NULL;
	it->start = leaf->start[it->pos];
	it->last = leaf->last[it->pos];
	return leaf->slot[it->pos];
}

void *rangemap_iter_first(struct rangemap *map, struct rangemap_iter *it, uint64_t start,
			  uint64_t last)
{
	struct rm_path path;
	unsigned int rank;

	if (!map->root)
		return NULL;
	it->leaf = rm_descend(map, start, &path);
	rank = rm_rank(it->leaf, start);
	/* The entry before the rank may reach start; otherwise the one at it is the first. */
	it->pos = rank && it->leaf->last[rank - 1] >= start ? rank - 1 : rank;
	return rm_iter_load(it, last);
}

void *rangemap_iter_next(struct rangemap_iter *it, uint64_t last)
{
	if (it->last == UINT64_MAX)
		return NULL;
	it->pos++;
	return rm_iter_load(it, last);
}

/* The gaps inside @n's subtree, in order; @height is the subtree's. */
static bool rm_gap_search(const struct rangemap_node *n, unsigned int height, uint64_t min_len,
			  rangemap_gap_fn fits, void *arg)
{
	unsigned int i;

	for (i = 0; i != n->nr; i++) {
		if (i > 0) {
			uint64_t len = rm_gap_between(n, i);

			if (len && len >= min_len && fits(n->last[i - 1] + 1, n->start[i] - 1, arg))
				return true;
		}
		if (height > 1 && n->gap[i] >= min_len &&
		    rm_gap_search(n->slot[i], height - 1, min_len, fits, arg))
			return true;
	}
	return false;
}

bool rangemap_gap_find(struct rangemap *map, uint64_t min_span, rangemap_gap_fn fits, void *arg)
{
	const struct rangemap_node *root = map->root;
	uint64_t min_len, first, last;

	if (!root)
		return fits(0, UINT64_MAX, arg);
	/* With an entry in the map no gap spans all of U64. */
	if (min_span == UINT64_MAX)
		return false;
	min_len = min_span + 1;
	first = root->start[0];
	last = root->last[root->nr - 1];
	if (first >= min_len && fits(0, first - 1, arg))
		return true;
	if (rm_gap_search(root, map->height, min_len, fits, arg))
		return true;
	return last != UINT64_MAX && UINT64_MAX - last >= min_len && fits(last + 1, UINT64_MAX, arg);
}

struct rm_verify {
	unsigned long entries, nodes;
	struct rangemap_node *leaf; /* the next leaf expected in the chain */
	bool any;
	uint64_t prev_last;
};

static bool rm_verify_node(struct rangemap *map, struct rangemap_node *n, unsigned int height,
			   struct rm_verify *v)
{
	bool root = n == map->root;
	unsigned int i;

	v->nodes++;
	if (n->nr > RANGEMAP_SLOTS || n->nr < (root ? (height > 1 ? 2 : 1) : RANGEMAP_MIN))
		return false;
	for (i = 0; i != n->nr; i++) {
		if (n->start[i] > n->last[i] || (i && n->last[i - 1] >= n->start[i]))
			return false;
		if (height > 1) {
			struct rm_item s;

			if (!rm_verify_node(map, n->slot[i], height - 1, v))
				return false;
			s = rm_summary(n->slot[i], height == 2);
			if (s.start != n->start[i] || s.last != n->last[i] || s.gap != n->gap[i])
				return false;
		}
	}
	if (height > 1)
		return true;
	/* A leaf: the chain must reach it next, and its entries follow the previous leaf's. */
	if (n != v->leaf || (v->any && v->prev_last >= n->start[0]))
		return false;
	v->leaf = n->next;
	v->any = true;
	v->prev_last = n->last[n->nr - 1];
	v->entries += n->nr;
	return true;
}

bool rangemap_verify(struct rangemap *map)
{
	struct rm_verify v = { 0 };
	struct rangemap_node *n;
	unsigned int spares = 0, h;

	for (n = map->spare; n; n = n->next)
		spares++;
	if (spares != map->nr_spare)
		return false;
	if (!map->root)
		return map->height == 0 && map->count == 0 && map->nodes == 0;
	/* The leftmost leaf starts the chain. */
	for (n = map->root, h = map->height; h > 1; h--)
		n = n->slot[0];
	v.leaf = n;
	if (!rm_verify_node(map, map->root, map->height, &v))
		return false;
	return v.leaf == NULL && v.entries == map->count && v.nodes == map->nodes;
}
