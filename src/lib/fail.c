// SPDX-License-Identifier: MIT
/* See fail.h for the model. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compiler.h"
#include "fail.h"
#include "lockdep.h"
#include "uiommu/uiommu.h"

static void after_fork_drain(void);

#ifdef UIOMMU_FAULT_INJECT
/*
 * The per-thread countdown lives in a registry keyed by thread id, not in a plain thread-local,
 * because the kernel's interface lets any thread of a process arm any other
 * (/proc/self/task/<tid>/fail-nth), so a countdown must be reachable from outside its thread.
 *
 * A thread finds its own record through fail_self, set at its first check (or first arm); the
 * record may exist already when another thread armed it first. The record is freed by the
 * thread-specific-data destructor when its thread exits, and a fork() child keeps only the
 * record of the thread that forked, re-keyed to its new id (the child is a new task: the kernel
 * copies the forking task's fail_nth into it, as we do).
 *
 * nth: 0 is disarmed; otherwise the checks left until one fails, counting the failing one.
 * Another thread may store it at any time, hence the atomic. seen counts every check of the
 * owning thread since its last arm (only that thread touches it), so a sweep knows when it ran
 * past the last point.
 *
 * Records come from calloc(), not uiommu_zalloc(): they are not allocations of an operation
 * (no fail point, outside the live-allocation count a test compares).
 */
struct fail_thread {
	pid_t tid;
	atomic_ulong nth;
	unsigned long seen;
	struct fail_thread *next;  /* fail_threads list; fail_threads_lock */
};

/* Protects the fail_threads list and every record's tid and next; a leaf lock. */
UIOMMU_MUTEX_DEFINE(fail_threads_lock);
static struct fail_thread *fail_threads;
/*
 * A fork child's records of the parent's other threads: freed with the next record made, not
 * in the fork handler, which must not call the allocator (after_fork_list). fail_threads_lock
 */
static struct fail_thread *fail_orphans;
static _Thread_local struct fail_thread *fail_self;
static pthread_key_t fail_thread_key;
static pthread_once_t fail_thread_once = PTHREAD_ONCE_INIT;
static bool fail_thread_key_ok;
static atomic_long alloc_live;
static atomic_long alloc_settled; /* alloc_live, less those handed to call_rcu() */

static void fail_thread_unlink_locked(struct fail_thread *t)
{
	struct fail_thread **pp;

	lockdep_assert_held(&fail_threads_lock);
	for (pp = &fail_threads; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			return;
		}
	}
}

/* A thread's exit: its id may be reused by the next thread, which must start disarmed. */
static void fail_thread_exit(void *arg)
{
	struct fail_thread *t = arg;

	/* A later destructor of this thread that reaches the hook registers afresh. */
	if (fail_self == t)
		fail_self = NULL;
	uiommu_mutex_lock(&fail_threads_lock);
	fail_thread_unlink_locked(t);
	uiommu_mutex_unlock(&fail_threads_lock);
	free(t);
}

/* The fork() child: one thread, with a new id; the other records belong to no thread. */
static void fail_thread_atfork_child(void)
{
	struct fail_thread *t, *next;

	uiommu_mutex_init(&fail_threads_lock);
	for (t = fail_threads; t; t = next) {
		next = t->next;
		if (t != fail_self) {
			t->next = fail_orphans;
			fail_orphans = t;
		}
	}
	fail_threads = fail_self;
	if (fail_self) {
		fail_self->tid = gettid();
		fail_self->next = NULL;
	}
}

static void fail_thread_init(void)
{
	fail_thread_key_ok = !pthread_key_create(&fail_thread_key, fail_thread_exit);
	pthread_atfork(NULL, NULL, fail_thread_atfork_child);
}

static struct fail_thread *fail_thread_find_locked(pid_t tid)
{
	struct fail_thread *t;

	lockdep_assert_held(&fail_threads_lock);
	for (t = fail_threads; t; t = t->next)
		if (t->tid == tid)
			return t;
	return NULL;
}

/* @tid's record, made if it has none; NULL when out of memory. */
static struct fail_thread *fail_thread_get_locked(pid_t tid)
{
	struct fail_thread *t = fail_thread_find_locked(tid);

	if (t)
		return t;
	while ((t = fail_orphans)) {
		fail_orphans = t->next;
		free(t);
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->tid = tid;
	t->next = fail_threads;
	fail_threads = t;
	return t;
}

/* The calling thread's record; NULL only when out of memory (the thread then never fails). */
static struct fail_thread *fail_thread_self(void)
{
	struct fail_thread *t = fail_self;

	if (likely(t))
		return t;
	pthread_once(&fail_thread_once, fail_thread_init);
	if (!fail_thread_key_ok)
		return NULL;
	uiommu_mutex_lock(&fail_threads_lock);
	t = fail_thread_get_locked(gettid());
	uiommu_mutex_unlock(&fail_threads_lock);
	if (t && pthread_setspecific(fail_thread_key, t)) {
		fail_thread_exit(t);
		t = NULL;
	}
	fail_self = t;
	return t;
}

/* The calling thread's test hook (uiommu_fail_point_hook()). */
static _Thread_local void (*fail_hook)(void);

void uiommu_fail_point_hook(void (*fn)(void))
{
	fail_hook = fn;
}

bool uiommu_should_fail(void)
{
	struct fail_thread *t;
	unsigned long n;

	if (unlikely(fail_hook))
		fail_hook();
	t = fail_thread_self();
	if (!t)
		return false;
	t->seen++;
	n = atomic_load_explicit(&t->nth, memory_order_relaxed);
	/* Another thread may re-arm us meanwhile: count down only the value we saw. */
	while (n && !atomic_compare_exchange_weak_explicit(&t->nth, &n, n - 1,
							   memory_order_relaxed,
							   memory_order_relaxed))
		;
	return n == 1;
}

int fail_nth_store(pid_t tid, unsigned long nth)
{
	struct fail_thread *t;

	pthread_once(&fail_thread_once, fail_thread_init);
	if (tid == gettid()) {
		/* Through fail_self: the destructor must know the record. */
		t = fail_thread_self();
		if (!t)
			return -ENOMEM;
		atomic_store_explicit(&t->nth, nth, memory_order_relaxed);
		return 0;
	}
	uiommu_mutex_lock(&fail_threads_lock);
	t = nth ? fail_thread_get_locked(tid) : fail_thread_find_locked(tid);
	if (t)
		atomic_store_explicit(&t->nth, nth, memory_order_relaxed);
	uiommu_mutex_unlock(&fail_threads_lock);
	return t || !nth ? 0 : -ENOMEM;
}

unsigned long fail_nth_show(pid_t tid)
{
	struct fail_thread *t;
	unsigned long nth = 0;

	if (tid == gettid())
		return fail_self ? atomic_load_explicit(&fail_self->nth, memory_order_relaxed) : 0;
	uiommu_mutex_lock(&fail_threads_lock);
	t = fail_thread_find_locked(tid);
	if (t)
		nth = atomic_load_explicit(&t->nth, memory_order_relaxed);
	uiommu_mutex_unlock(&fail_threads_lock);
	return nth;
}

UIOMMU_EXPORT void uiommu_fail_nth_arm(unsigned long nth)
{
	struct fail_thread *t = fail_thread_self();

	if (!t)
		return;
	atomic_store_explicit(&t->nth, nth, memory_order_relaxed);
	t->seen = 0;
}

UIOMMU_EXPORT unsigned long uiommu_fail_nth_disarm(void)
{
	struct fail_thread *t = fail_self;

	return t ? atomic_exchange_explicit(&t->nth, 0, memory_order_relaxed) : 0;
}

UIOMMU_EXPORT unsigned long uiommu_fail_points_seen(void)
{
	return fail_self ? fail_self->seen : 0;
}

UIOMMU_EXPORT bool uiommu_fail_nth_available(void)
{
	return true;
}

long uiommu_alloc_live(void)
{
	after_fork_drain();
	return atomic_load_explicit(&alloc_live, memory_order_relaxed);
}

static void alloc_count(long delta)
{
	atomic_fetch_add_explicit(&alloc_live, delta, memory_order_relaxed);
	atomic_fetch_add_explicit(&alloc_settled, delta, memory_order_relaxed);
}

void uiommu_free_queued(void)
{
	atomic_fetch_sub_explicit(&alloc_settled, 1, memory_order_relaxed);
}

void uiommu_free_deferred(void *p)
{
	/* Left the settled count when it was queued. */
	atomic_fetch_sub_explicit(&alloc_live, 1, memory_order_relaxed);
	free(p);
}

long uiommu_alloc_live_settled(void)
{
	after_fork_drain();
	return atomic_load_explicit(&alloc_settled, memory_order_relaxed);
}
#else
UIOMMU_EXPORT void uiommu_fail_nth_arm(unsigned long nth)
{
	(void)nth;
}

UIOMMU_EXPORT unsigned long uiommu_fail_nth_disarm(void)
{
	return 0;
}

UIOMMU_EXPORT unsigned long uiommu_fail_points_seen(void)
{
	return 0;
}

UIOMMU_EXPORT bool uiommu_fail_nth_available(void)
{
	return false;
}

int fail_nth_store(pid_t tid, unsigned long nth)
{
	(void)tid;
	(void)nth;
	return 0;
}

unsigned long fail_nth_show(pid_t tid)
{
	(void)tid;
	return 0;
}

long uiommu_alloc_live(void)
{
	return 0;
}

static inline void alloc_count(long delta)
{
	(void)delta;
}

void uiommu_free_queued(void)
{
}

void uiommu_free_deferred(void *p)
{
	uiommu_free(p);
}

long uiommu_alloc_live_settled(void)
{
	return 0;
}
#endif

/*
 * Blocks that a forked child's fork handlers let go of (uiommu_free_after_fork()), linked
 * through each block's first word. A handler must not call the allocator: another thread of
 * the parent may have been inside it at the fork, holding one of its locks, and the child has
 * no such thread to let it go (glibc's malloc resets its own locks in the child; ASan's, in
 * GCC 12's runtime, does not). They are freed by this process's next allocation or free,
 * which a child that only execs or exits never makes.
 */
static _Atomic(void *) after_fork_list;

static void after_fork_drain(void)
{
	void *p, *next;

	if (likely(!atomic_load_explicit(&after_fork_list, memory_order_relaxed)))
		return;
	for (p = atomic_exchange_explicit(&after_fork_list, NULL, memory_order_acquire); p;
	     p = next) {
		memcpy(&next, p, sizeof(next));
		alloc_count(-1);
		free(p);
	}
}

void uiommu_free_after_fork(void *p)
{
	void *head;

	if (!p)
		return;
	head = atomic_load_explicit(&after_fork_list, memory_order_relaxed);
	do
		memcpy(p, &head, sizeof(head));
	while (!atomic_compare_exchange_weak_explicit(&after_fork_list, &head, p,
						      memory_order_release, memory_order_relaxed));
}

void *uiommu_calloc(size_t n, size_t size)
{
	void *p;

	after_fork_drain();
	if (uiommu_should_fail())
		return NULL;
	p = calloc(n, size);
	if (p)
		alloc_count(1);
	return p;
}

void *uiommu_zalloc_aligned(size_t align, size_t size)
{
	void *p;

	after_fork_drain();
	if (uiommu_should_fail())
		return NULL;
	if (posix_memalign(&p, align, size ? size : 1))
		return NULL;
	memset(p, 0, size);
	alloc_count(1);
	return p;
}

void *uiommu_zalloc(size_t size)
{
	return uiommu_calloc(1, size);
}

/* Like reallocarray(); on failure the old block stays valid and owned by the caller. */
void *uiommu_realloc_array(void *p, size_t n, size_t size)
{
	size_t bytes;
	void *np;

	after_fork_drain();
	if (check_mul_overflow(n, size, &bytes))
		return NULL;
	if (uiommu_should_fail())
		return NULL;
	np = realloc(p, bytes ? bytes : 1);
	if (np && !p)
		alloc_count(1);
	return np;
}

void uiommu_free(void *p)
{
	after_fork_drain();
	if (!p)
		return;
	alloc_count(-1);
	free(p);
}
