/* SPDX-License-Identifier: MIT */
/*
 * Owner-tracking lock wrappers, so that a function with a lock precondition can assert it on its
 * first line (lockdep_assert_held() and friends), as the kernel does. The tracking costs one
 * atomic store per lock operation and exists only in debug builds (UIOMMU_DEBUG); release
 * builds get bare pthread locks and the assertions compile to nothing.
 *
 * A failing pthread lock call means memory corruption or a double unlock: we die().
 */
#ifndef UIOMMU_LIB_LOCKDEP_H
#define UIOMMU_LIB_LOCKDEP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "compiler.h"

struct uiommu_mutex {
	pthread_mutex_t m;
#ifdef UIOMMU_DEBUG
	_Atomic(unsigned long) owner; /* pthread_self() of the holder, 0 when free */
#endif
};

struct uiommu_rwsem {
	pthread_rwlock_t rw;
#ifdef UIOMMU_DEBUG
	_Atomic(unsigned long) writer; /* pthread_self() of the write holder */
	atomic_int readers;            /* read holders, all threads together */
#endif
};

static inline void uiommu_mutex_init(struct uiommu_mutex *m)
{
	if (pthread_mutex_init(&m->m, NULL))
		die("pthread_mutex_init");
#ifdef UIOMMU_DEBUG
	atomic_init(&m->owner, 0);
#endif
}

static inline void uiommu_mutex_destroy(struct uiommu_mutex *m)
{
	pthread_mutex_destroy(&m->m);
}

static inline void uiommu_mutex_lock(struct uiommu_mutex *m)
{
	if (pthread_mutex_lock(&m->m))
		die("pthread_mutex_lock");
#ifdef UIOMMU_DEBUG
	atomic_store_explicit(&m->owner, (unsigned long)pthread_self(), memory_order_relaxed);
#endif
}

static inline void uiommu_mutex_unlock(struct uiommu_mutex *m)
{
#ifdef UIOMMU_DEBUG
	atomic_store_explicit(&m->owner, 0, memory_order_relaxed);
#endif
	if (pthread_mutex_unlock(&m->m))
		die("pthread_mutex_unlock");
}

static inline void uiommu_rwsem_init(struct uiommu_rwsem *s)
{
	if (pthread_rwlock_init(&s->rw, NULL))
		die("pthread_rwlock_init");
#ifdef UIOMMU_DEBUG
	atomic_init(&s->writer, 0);
	atomic_init(&s->readers, 0);
#endif
}

static inline void uiommu_rwsem_destroy(struct uiommu_rwsem *s)
{
	pthread_rwlock_destroy(&s->rw);
}

static inline void uiommu_down_read(struct uiommu_rwsem *s)
{
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
#endif
	if (pthread_rwlock_unlock(&s->rw))
		die("pthread_rwlock_unlock");
}

static inline void uiommu_down_write(struct uiommu_rwsem *s)
{
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
#endif
	if (pthread_rwlock_unlock(&s->rw))
		die("pthread_rwlock_unlock");
}

/* pthread_cond_wait() on a held uiommu_mutex, keeping the owner tracker honest across it. */
static inline void uiommu_cond_wait(pthread_cond_t *cond, struct uiommu_mutex *m)
{
#ifdef UIOMMU_DEBUG
	atomic_store_explicit(&m->owner, 0, memory_order_relaxed);
#endif
	pthread_cond_wait(cond, &m->m);
#ifdef UIOMMU_DEBUG
	atomic_store_explicit(&m->owner, (unsigned long)pthread_self(), memory_order_relaxed);
#endif
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
