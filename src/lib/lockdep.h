/* SPDX-License-Identifier: MIT */
/*
 * The lock wrappers every lock of the library goes through: a mutex, a reader-writer semaphore
 * and a condition variable, so that a function with a lock precondition can assert it on its
 * first line (lockdep_assert_held() and friends), as the kernel does, and so that debug builds
 * (UIOMMU_DEBUG) can check the lock order.
 *
 * Release builds get bare pthread objects: no field, no call and no assertion is added.
 *
 * Debug builds track, per lock, its holder (one relaxed atomic store per operation), and run a
 * light lockdep (lockdep.c):
 *  - every lock belongs to a class, a static struct uiommu_lock_class named after the lock: one
 *    per initialisation site for locks set up by uiommu_mutex_init()/uiommu_rwsem_init() (all
 *    the groups' mutexes are one class), one per lock for the static locks defined with
 *    UIOMMU_MUTEX_DEFINE();
 *  - each thread keeps the stack of the classes it holds;
 *  - the first time a thread takes class B while holding A, the edge A->B is recorded with the
 *    holder's stack, in a graph shared with the processes forked from this one; taking a class that can already reach a held class through the recorded
 *    edges (B then A, or B->C->A) is a potential deadlock: lockdep dies, naming the classes of
 *    both stacks, before it blocks.
 * Taking a second lock of a class already held (two groups' mutexes) is not checked: the code
 * orders such locks by other means.
 *
 * A failing pthread lock call means memory corruption or a double unlock: we die().
 */
#ifndef UIOMMU_LIB_LOCKDEP_H
#define UIOMMU_LIB_LOCKDEP_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "compiler.h"

#ifdef UIOMMU_DEBUG
/* 1 where the order graph cannot be shared with forked children (lockdep.c says why). */
#if defined(__SANITIZE_THREAD__)
#define UIOMMU_LOCKDEP_PER_PROCESS 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UIOMMU_LOCKDEP_PER_PROCESS 1
#endif
#endif
#ifndef UIOMMU_LOCKDEP_PER_PROCESS
#define UIOMMU_LOCKDEP_PER_PROCESS 0
#endif

struct uiommu_lock_class {
	const char *name; /* the lock's expression at its definition or initialisation */
	const char *file;
	int line;
	atomic_int id;    /* 1-based index in the order graph once first taken, 0 before */
};

#define UIOMMU_LOCK_CLASS_INIT(n) { .name = (n), .file = __FILE__, .line = __LINE__ }

void lockdep_acquire(struct uiommu_lock_class *cls, const void *lock);
void lockdep_release(struct uiommu_lock_class *cls, const void *lock);
#endif

struct uiommu_mutex {
	pthread_mutex_t m;
#ifdef UIOMMU_DEBUG
	_Atomic(unsigned long) owner;    /* pthread_self() of the holder, 0 when free */
	struct uiommu_lock_class *cls;   /* NULL: not order-checked (never initialised by us) */
#endif
};

struct uiommu_rwsem {
	pthread_rwlock_t rw;
#ifdef UIOMMU_DEBUG
	_Atomic(unsigned long) writer; /* pthread_self() of the write holder */
	atomic_int readers;            /* read holders, all threads together */
	struct uiommu_lock_class *cls;
#endif
};

/*
 * Waited on with a uiommu_mutex; timed waits take a CLOCK_MONOTONIC deadline
 * (pthread_cond_clockwait(), so no clock attribute: a condition variable initialised with
 * attributes fails under a sanitizer runtime loaded late, as in a preloaded program).
 */
struct uiommu_cond {
	pthread_cond_t c;
};

/*
 * A file-scope lock: `UIOMMU_MUTEX_DEFINE(name); /+ protects ...; order: ... +/` defines
 * `static struct uiommu_mutex name` with its own class (UIOMMU_RWSEM_DEFINE: a uiommu_rwsem).
 */
#ifdef UIOMMU_DEBUG
#define UIOMMU_MUTEX_DEFINE(name)                                                               \
	static struct uiommu_lock_class name##_lock_class = UIOMMU_LOCK_CLASS_INIT(#name);    \
	static struct uiommu_mutex name = { .m = PTHREAD_MUTEX_INITIALIZER,                    \
					    .cls = &name##_lock_class }
#define UIOMMU_RWSEM_DEFINE(name)                                                               \
	static struct uiommu_lock_class name##_lock_class = UIOMMU_LOCK_CLASS_INIT(#name);    \
	static struct uiommu_rwsem name = { .rw = PTHREAD_RWLOCK_INITIALIZER,                 \
					    .cls = &name##_lock_class }
#else
#define UIOMMU_MUTEX_DEFINE(name) static struct uiommu_mutex name = { .m = PTHREAD_MUTEX_INITIALIZER }
#define UIOMMU_RWSEM_DEFINE(name) static struct uiommu_rwsem name = { .rw = PTHREAD_RWLOCK_INITIALIZER }
#endif

static inline void uiommu_mutex_init_class(struct uiommu_mutex *m, void *cls)
{
	if (pthread_mutex_init(&m->m, NULL))
		die("pthread_mutex_init");
#ifdef UIOMMU_DEBUG
	atomic_init(&m->owner, 0);
	m->cls = cls;
#endif
}

static inline void uiommu_rwsem_init_class(struct uiommu_rwsem *s, void *cls)
{
	if (pthread_rwlock_init(&s->rw, NULL))
		die("pthread_rwlock_init");
#ifdef UIOMMU_DEBUG
	atomic_init(&s->writer, 0);
	atomic_init(&s->readers, 0);
	s->cls = cls;
#endif
}

/* Every lock initialised at one place is one class, named after the expression. */
#ifdef UIOMMU_DEBUG
#define uiommu_mutex_init(mtx)                                                                  \
	do {                                                                                    \
		static struct uiommu_lock_class init_lock_class = UIOMMU_LOCK_CLASS_INIT(#mtx); \
		uiommu_mutex_init_class((mtx), &init_lock_class);                               \
	} while (0)
#define uiommu_rwsem_init(sem)                                                                  \
	do {                                                                                    \
		static struct uiommu_lock_class init_lock_class = UIOMMU_LOCK_CLASS_INIT(#sem); \
		uiommu_rwsem_init_class((sem), &init_lock_class);                               \
	} while (0)
#else
#define uiommu_mutex_init(mtx) uiommu_mutex_init_class((mtx), NULL)
#define uiommu_rwsem_init(sem) uiommu_rwsem_init_class((sem), NULL)
#endif

static inline void uiommu_mutex_destroy(struct uiommu_mutex *m)
{
	pthread_mutex_destroy(&m->m);
}

static inline void uiommu_mutex_lock(struct uiommu_mutex *m)
{
#ifdef UIOMMU_DEBUG
	lockdep_acquire(m->cls, m);
#endif
	if (pthread_mutex_lock(&m->m))
		die("pthread_mutex_lock");
#ifdef UIOMMU_DEBUG
	atomic_store_explicit(&m->owner, (unsigned long)pthread_self(), memory_order_relaxed);
#endif
}

/*
 * The unlocks touch nothing of the lock after the release: the next holder may free the
 * object that embeds it (a device's destroy waits out a vDEVICE's unlink by taking its lock,
 * then frees it), so the bookkeeping goes first.
 */
static inline void uiommu_mutex_unlock(struct uiommu_mutex *m)
{
#ifdef UIOMMU_DEBUG
	atomic_store_explicit(&m->owner, 0, memory_order_relaxed);
	lockdep_release(m->cls, m);
#endif
	if (pthread_mutex_unlock(&m->m))
		die("pthread_mutex_unlock");
}

static inline void uiommu_rwsem_destroy(struct uiommu_rwsem *s)
{
	pthread_rwlock_destroy(&s->rw);
}

static inline void uiommu_down_read(struct uiommu_rwsem *s)
{
#ifdef UIOMMU_DEBUG
	lockdep_acquire(s->cls, s);
#endif
	if (pthread_rwlock_rdlock(&s->rw))
		die("pthread_rwlock_rdlock");
#ifdef UIOMMU_DEBUG
	atomic_fetch_add_explicit(&s->readers, 1, memory_order_relaxed);
#endif
}

static inline void uiommu_up_read(struct uiommu_rwsem *s)
{
#ifdef UIOMMU_DEBUG
	atomic_fetch_sub_explicit(&s->readers, 1, memory_order_relaxed);
	lockdep_release(s->cls, s);
#endif
	if (pthread_rwlock_unlock(&s->rw))
		die("pthread_rwlock_unlock");
}

static inline void uiommu_down_write(struct uiommu_rwsem *s)
{
#ifdef UIOMMU_DEBUG
	lockdep_acquire(s->cls, s);
#endif
	if (pthread_rwlock_wrlock(&s->rw))
		die("pthread_rwlock_wrlock");
#ifdef UIOMMU_DEBUG
	atomic_store_explicit(&s->writer, (unsigned long)pthread_self(), memory_order_relaxed);
#endif
}

static inline void uiommu_up_write(struct uiommu_rwsem *s)
{
#ifdef UIOMMU_DEBUG
	atomic_store_explicit(&s->writer, 0, memory_order_relaxed);
	lockdep_release(s->cls, s);
#endif
	if (pthread_rwlock_unlock(&s->rw))
		die("pthread_rwlock_unlock");
}

/*
 * The copy of a rwsem a fork's prepare handler held for write, in the child: glibc takes an
 * unlock for a writer's only from the writer's own thread id, which the child's thread does not
 * have (its unlock would count as a reader's and leave the lock wedged), so the child starts it
 * anew instead.
 */
#ifdef __SANITIZE_THREAD__
void __tsan_mutex_pre_unlock(void *addr, unsigned flags);
void __tsan_mutex_post_unlock(void *addr, unsigned flags);
#endif

static inline void uiommu_up_write_in_fork_child(struct uiommu_rwsem *s)
{
#ifdef UIOMMU_DEBUG
	atomic_store_explicit(&s->writer, 0, memory_order_relaxed);
	lockdep_release(s->cls, s);
#endif
#ifdef __SANITIZE_THREAD__
	/* ThreadSanitizer is told of the unlock the new start stands for. */
	__tsan_mutex_pre_unlock(&s->rw, 0);
#endif
	if (pthread_rwlock_init(&s->rw, NULL))
		die("pthread_rwlock_init");
#ifdef __SANITIZE_THREAD__
	__tsan_mutex_post_unlock(&s->rw, 0);
#endif
}

static inline void uiommu_cond_init(struct uiommu_cond *c)
{
	if (pthread_cond_init(&c->c, NULL))
		die("pthread_cond_init");
}

static inline void uiommu_cond_destroy(struct uiommu_cond *c)
{
	pthread_cond_destroy(&c->c);
}

static inline void uiommu_cond_signal(struct uiommu_cond *c)
{
	pthread_cond_signal(&c->c);
}

static inline void uiommu_cond_broadcast(struct uiommu_cond *c)
{
	pthread_cond_broadcast(&c->c);
}

/*
 * m held. The mutex stays on the thread's held stack while it sleeps (it is retaken before the
 * wait returns); only the owner field follows the real state, so another thread's assertion
 * during the wait sees the mutex free.
 */
static inline void uiommu_cond_wait(struct uiommu_cond *c, struct uiommu_mutex *m)
{
#ifdef UIOMMU_DEBUG
	atomic_store_explicit(&m->owner, 0, memory_order_relaxed);
#endif
	if (pthread_cond_wait(&c->c, &m->m))
		die("pthread_cond_wait");
#ifdef UIOMMU_DEBUG
	atomic_store_explicit(&m->owner, (unsigned long)pthread_self(), memory_order_relaxed);
#endif
}

/* As uiommu_cond_wait() until the CLOCK_MONOTONIC time *deadline: 0, or -ETIMEDOUT. */
static inline int uiommu_cond_timedwait(struct uiommu_cond *c, struct uiommu_mutex *m,
					const struct timespec *deadline)
{
	int ret;

#ifdef UIOMMU_DEBUG
	atomic_store_explicit(&m->owner, 0, memory_order_relaxed);
#endif
	ret = pthread_cond_clockwait(&c->c, &m->m, CLOCK_MONOTONIC, deadline);
	if (ret && ret != ETIMEDOUT)
		die("pthread_cond_clockwait");
#ifdef UIOMMU_DEBUG
	atomic_store_explicit(&m->owner, (unsigned long)pthread_self(), memory_order_relaxed);
#endif
	return -ret;
}

#ifdef UIOMMU_DEBUG
static inline bool uiommu_mutex_held(struct uiommu_mutex *m)
{
	return atomic_load_explicit(&m->owner, memory_order_relaxed) ==
	       (unsigned long)pthread_self();
}

static inline bool uiommu_rwsem_held_write(struct uiommu_rwsem *s)
{
	return atomic_load_explicit(&s->writer, memory_order_relaxed) ==
	       (unsigned long)pthread_self();
}

/* Held for read by someone, or for write by us: readers are not tracked per thread. */
static inline bool uiommu_rwsem_held(struct uiommu_rwsem *s)
{
	return uiommu_rwsem_held_write(s) ||
	       atomic_load_explicit(&s->readers, memory_order_relaxed) > 0;
}

#define lockdep_assert_held(m) WARN_ON(!uiommu_mutex_held(m))
#define lockdep_assert_not_held(m) WARN_ON(uiommu_mutex_held(m))
#define lockdep_assert_rwsem_held(s) WARN_ON(!uiommu_rwsem_held(s))
#define lockdep_assert_rwsem_held_write(s) WARN_ON(!uiommu_rwsem_held_write(s))
#else
#define lockdep_assert_held(m) ((void)(m))
#define lockdep_assert_not_held(m) ((void)(m))
#define lockdep_assert_rwsem_held(s) ((void)(s))
#define lockdep_assert_rwsem_held_write(s) ((void)(s))
#endif

#endif
