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
 * A new edge a->b is accepted only if b cannot already reach a; the graph's lock serialises
 * the search with the insertion, so two threads racing to record a->b and b->a cannot both
 * succeed.
 *
 * The graph lives in a shared anonymous mapping, made at load (or at an earlier first lock,
 * from another constructor) and so before any fork: a process and the children it forks (each
 * test case of the harness is one) build one graph, and an order seen in one case and its
 * inverse in another are caught. Its lock is a process-shared, robust pthread mutex (a child
 * may die holding it: the report aborts), the checker's own and never order-checked. A class
 * id is cached in the class, per process; a process that has not cached it finds its class in
 * the shared table (a forked child has the same addresses). Nothing here goes through the
 * should-fail hook; an overflow of the tables dies (raise the limit).
 *
 * ThreadSanitizer does not follow a lock across processes (a child sees the parent's lock as
 * its own, held): its builds keep a graph per process, the child's lock released after fork.
 */
#include "lockdep.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

struct lockdep_graph {
	pthread_mutex_t lock; /* classes, nr_classes, edges, nr_edges, writers of after */
	struct uiommu_lock_class *classes[LOCKDEP_MAX_CLASSES];
	int nr_classes;
	_Atomic uint64_t after[LOCKDEP_MAX_CLASSES][LOCKDEP_WORDS];
	struct lockdep_edge edges[LOCKDEP_MAX_EDGES];
	int nr_edges;
};

static struct lockdep_graph *graph; /* shared with forked children; set once */
static pthread_once_t graph_once = PTHREAD_ONCE_INIT;
#define classes (graph->classes)
#define nr_classes (graph->nr_classes)
#define after (graph->after)
#define edges (graph->edges)
#define nr_edges (graph->nr_edges)

static _Thread_local struct lockdep_held held[LOCKDEP_MAX_HELD];
static _Thread_local int held_depth;

static void graph_lock(void)
{
	int ret = pthread_mutex_lock(&graph->lock);

	/* A process died holding it (a report aborts): the tables are consistent at any abort. */
	if (ret == EOWNERDEAD)
		ret = pthread_mutex_consistent(&graph->lock);
	if (ret)
		die("lockdep: graph lock");
}

static void graph_unlock(void)
{
	pthread_mutex_unlock(&graph->lock);
}

/* A fork() while another thread records an edge must wait for it: the lock is shared. */
static void lockdep_fork_prepare(void)
{
	graph_lock();
}

static void lockdep_fork_parent(void)
{
	graph_unlock();
}

static void lockdep_graph_init(void)
{
	pthread_mutexattr_t attr;

	graph = mmap(NULL, sizeof(*graph), PROT_READ | PROT_WRITE,
		     (UIOMMU_LOCKDEP_PER_PROCESS ? MAP_PRIVATE : MAP_SHARED) | MAP_ANONYMOUS, -1, 0);
	if (graph == MAP_FAILED)
		die("lockdep: mmap");
	if (pthread_mutexattr_init(&attr) ||
	    (!UIOMMU_LOCKDEP_PER_PROCESS &&
	     (pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED) ||
	      pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST))) ||
	    pthread_mutex_init(&graph->lock, &attr))
		die("lockdep: graph lock");
	pthread_mutexattr_destroy(&attr);
	/* A shared lock is the parent's to release; a per-process one each side's own. */
	if (pthread_atfork(lockdep_fork_prepare, lockdep_fork_parent,
			   UIOMMU_LOCKDEP_PER_PROCESS ? lockdep_fork_parent : NULL))
		die("pthread_atfork");
}

/* At load, so that the processes forked before the first lock is taken share the graph too. */
__attribute__((constructor)) static void lockdep_init(void)
{
	pthread_once(&graph_once, lockdep_graph_init);
}

static int lockdep_class_id(struct uiommu_lock_class *cls)
{
	int id = atomic_load_explicit(&cls->id, memory_order_acquire);

	if (id)
		return id;
	pthread_once(&graph_once, lockdep_graph_init);
	graph_lock();
	id = atomic_load_explicit(&cls->id, memory_order_relaxed);
	for (int i = 1; !id && i <= nr_classes; i++)
		if (classes[i] == cls)
			id = i; /* registered by a process of this fork tree */
	if (!id) {
		if (nr_classes + 1 >= LOCKDEP_MAX_CLASSES)
			die("lockdep: too many lock classes");
		id = ++nr_classes;
		classes[id] = cls;
	}
	atomic_store_explicit(&cls->id, id, memory_order_release);
	graph_unlock();
	return id;
}

static bool lockdep_edge_known(int a, int b)
{
	return atomic_load_explicit(&after[a][b / 64], memory_order_relaxed) & (1ULL << (b % 64));
}

/* the graph's lock held. A path from -> ... -> to through recorded edges, in path[] (to first). */
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

/* the graph's lock held. Taking b while holding a closes the cycle a -> b -> ... -> a: say so, die. */
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

	graph_lock();
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
	graph_unlock();
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

	if (!env || !*env || !strcmp(env, "0") || !graph)
		return;
	graph_lock();
	for (int i = 0; i < nr_edges; i++)
		fprintf(stderr, "uiommu: lockdep: %s -> %s\n", classes[edges[i].from]->name,
			classes[edges[i].to]->name);
	graph_unlock();
}

#endif
