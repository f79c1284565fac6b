// SPDX-License-Identifier: MIT
/*
 * The lock-order checker of debug builds (lockdep.h says what it checks and why).
 *
 * Data model:
 *  - a class gets a small id the first time a lock of it is taken; classes[] maps it back;
 *  - the order graph is a bit matrix: after[a] has bit b once a thread took class b while
 *    holding class a. Bits are only ever set, so the fast path (an edge already known) is one
 *    relaxed load per held lock, without any lock;
 *  - each new edge keeps the stack of classes its thread held then, for the report;
 *  - each thread has its stack of held locks (class id and address), in acquisition order.
 * A new edge a->b is accepted only if b cannot already reach a; graph_lock serialises the
 * search with the insertion, so two threads racing to record a->b and b->a cannot both succeed.
 *
 * graph_lock is a bare pthread mutex, the checker's own and never order-checked; nothing here
 * allocates or goes through the should-fail hook: the tables are static and an overflow dies
 * (raise the limit).
 */
#include "lockdep.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef UIOMMU_DEBUG

#define LOCKDEP_MAX_CLASSES 256 /* ids 1..255 */
#define LOCKDEP_MAX_HELD 32
#define LOCKDEP_MAX_EDGES 4096
#define LOCKDEP_WORDS (LOCKDEP_MAX_CLASSES / 64)

struct lockdep_edge {
	int from, to;
	int depth;                       /* of stack[]: the classes held when `to` was taken */
	int stack[LOCKDEP_MAX_HELD];
};

struct lockdep_held {
	int id;
	const void *lock;
};

static pthread_mutex_t graph_lock = PTHREAD_MUTEX_INITIALIZER; /* classes, edges; see the top */
static struct uiommu_lock_class *classes[LOCKDEP_MAX_CLASSES];
static int nr_classes;
static _Atomic uint64_t after[LOCKDEP_MAX_CLASSES][LOCKDEP_WORDS];
static struct lockdep_edge edges[LOCKDEP_MAX_EDGES];
static int nr_edges;

static _Thread_local struct lockdep_held held[LOCKDEP_MAX_HELD];
static _Thread_local int held_depth;

static int lockdep_class_id(struct uiommu_lock_class *cls)
{
	int id = atomic_load_explicit(&cls->id, memory_order_acquire);

	if (id)
		return id;
	pthread_mutex_lock(&graph_lock);
	id = atomic_load_explicit(&cls->id, memory_order_relaxed);
	if (!id) {
		if (nr_classes + 1 >= LOCKDEP_MAX_CLASSES)
			die("lockdep: too many lock classes");
		id = ++nr_classes;
		classes[id] = cls;
		atomic_store_explicit(&cls->id, id, memory_order_release);
	}
	pthread_mutex_unlock(&graph_lock);
	return id;
}

static bool lockdep_edge_known(int a, int b)
{
	return atomic_load_explicit(&after[a][b / 64], memory_order_relaxed) & (1ULL << (b % 64));
}

/* graph_lock held. A path from -> ... -> to through recorded edges, in path[] (to first). */
static int lockdep_path(int from, int to, int *path)
{
	uint64_t seen[LOCKDEP_WORDS] = { 0 };
	int parent[LOCKDEP_MAX_CLASSES];
	int queue[LOCKDEP_MAX_CLASSES];
	int head = 0, tail = 0, n = 0;

	queue[tail++] = from;
	seen[from / 64] |= 1ULL << (from % 64);
	parent[from] = 0;
	while (head < tail) {
		int a = queue[head++];

		if (a == to) {
			for (int c = to; c; c = parent[c])
				path[n++] = c;
			return n;
		}
		for (int b = 1; b <= nr_classes; b++) {
			if (!lockdep_edge_known(a, b) || (seen[b / 64] & (1ULL << (b % 64))))
				continue;
			seen[b / 64] |= 1ULL << (b % 64);
			parent[b] = a;
			queue[tail++] = b;
		}
	}
	return 0;
}

static void lockdep_print_class(const char *prefix, int id)
{
	struct uiommu_lock_class *cls = classes[id];

	fprintf(stderr, "%s%s (%s:%d)\n", prefix, cls->name, cls->file, cls->line);
}

static const struct lockdep_edge *lockdep_edge_find(int from, int to)
{
	for (int i = 0; i < nr_edges; i++)
		if (edges[i].from == from && edges[i].to == to)
			return &edges[i];
	return NULL;
}

/* graph_lock held. Taking b while holding a closes the cycle a -> b -> ... -> a: say so, die. */
static _Noreturn void lockdep_report(int a, int b, const int *path, int n)
{
	fprintf(stderr, "uiommu: lockdep: possible deadlock: taking %s while holding %s\n",
		classes[b]->name, classes[a]->name);
	fprintf(stderr, "this thread holds, outermost first:\n");
	for (int i = 0; i < held_depth; i++)
		lockdep_print_class("  ", held[i].id);
	lockdep_print_class("and is taking:\n  ", b);
	fprintf(stderr, "but the opposite order was seen before:\n");
	/* path[] runs from a back to b: the edges b -> ... -> a were recorded in that order. */
	for (int i = n - 1; i > 0; i--) {
		const struct lockdep_edge *e = lockdep_edge_find(path[i], path[i - 1]);

		fprintf(stderr, " a thread holding, outermost first:\n");
		for (int j = 0; e && j < e->depth; j++)
			lockdep_print_class("  ", e->stack[j]);
		lockdep_print_class(" took:\n  ", path[i - 1]);
	}
	abort();
}

static void lockdep_edge_add(int a, int b)
{
	int path[LOCKDEP_MAX_CLASSES];
	struct lockdep_edge *e;
	int n;

	pthread_mutex_lock(&graph_lock);
	if (lockdep_edge_known(a, b))
		goto out_unlock;
	n = lockdep_path(b, a, path);
	if (n)
		lockdep_report(a, b, path, n);
	if (nr_edges == LOCKDEP_MAX_EDGES)
		die("lockdep: too many lock-order edges");
	e = &edges[nr_edges++];
	e->from = a;
	e->to = b;
	e->depth = held_depth;
	for (int i = 0; i < held_depth; i++)
		e->stack[i] = held[i].id;
	atomic_fetch_or_explicit(&after[a][b / 64], 1ULL << (b % 64), memory_order_relaxed);
out_unlock:
	pthread_mutex_unlock(&graph_lock);
}

/* A fork() while another thread records an edge must not leave the child's graph_lock held. */
static void lockdep_fork_prepare(void)
{
	pthread_mutex_lock(&graph_lock);
}

static void lockdep_fork_done(void)
{
	pthread_mutex_unlock(&graph_lock);
}

__attribute__((constructor)) static void lockdep_init(void)
{
	if (pthread_atfork(lockdep_fork_prepare, lockdep_fork_done, lockdep_fork_done))
		die("pthread_atfork");
}

void lockdep_acquire(struct uiommu_lock_class *cls, const void *lock)
{
	int id;

	if (!cls)
		return;
	id = lockdep_class_id(cls);
	for (int i = 0; i < held_depth; i++) {
		int h = held[i].id;

		if (h != id && !lockdep_edge_known(h, id))
			lockdep_edge_add(h, id);
	}
	if (held_depth == LOCKDEP_MAX_HELD)
		die("lockdep: too many locks held by one thread");
	held[held_depth].id = id;
	held[held_depth].lock = lock;
	held_depth++;
}

void lockdep_release(struct uiommu_lock_class *cls, const void *lock)
{
	int i;

	if (!cls)
		return;
	for (i = held_depth - 1; i >= 0 && held[i].lock != lock; i--)
		;
	if (i < 0)
		die("lockdep: releasing a lock this thread does not hold");
	for (; i < held_depth - 1; i++)
		held[i] = held[i + 1];
	held_depth--;
}

/*
 * UIOMMU_LOCKDEP_DUMP=1: print every recorded edge at exit, to check docs/design.md's order
 * against what a test run really took.
 */
__attribute__((destructor)) static void lockdep_dump(void)
{
	const char *env = getenv("UIOMMU_LOCKDEP_DUMP");

	if (!env || !*env || !strcmp(env, "0"))
		return;
	pthread_mutex_lock(&graph_lock);
	for (int i = 0; i < nr_edges; i++)
		fprintf(stderr, "uiommu: lockdep: %s -> %s\n", classes[edges[i].from]->name,
			classes[edges[i].to]->name);
	pthread_mutex_unlock(&graph_lock);
}

#endif
