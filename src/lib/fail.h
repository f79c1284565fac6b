/* SPDX-License-Identifier: MIT */
/*
 * Fault injection and the allocator.
 *
 * Every allocation and every other fallible step in uiommu calls uiommu_should_fail() first, the
 * counterpart of the kernel's should_fail()/fail-nth: a thread arms "fail the Nth point" with
 * uiommu_fail_nth_arm(), and the Nth check that thread makes returns true once. A sweep arms
 * 1, 2, 3 ... until a whole operation succeeds with the counter still armed, so each fallible
 * step is failed exactly once. The state is per thread, so a sweep in one test thread cannot
 * disturb another; fail_nth_store()/fail_nth_show() reach another thread's countdown by its id,
 * which is what the kernel's /proc fail-nth files do (served by machine/fault_inject.c).
 *
 * Release builds (UIOMMU_FAULT_INJECT undefined) compile the hook to a constant false.
 *
 * Allocations go through uiommu_zalloc()/uiommu_free() so the hook covers them and, in
 * fault-injection builds, a live-allocation counter lets tests prove that a failed ioctl left
 * nothing behind.
 */
#ifndef UIOMMU_LIB_FAIL_H
#define UIOMMU_LIB_FAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#ifdef UIOMMU_FAULT_INJECT
bool uiommu_should_fail(void);
/*
 * Tests only: @fn runs at every check of the calling thread's from now on (NULL: none), before
 * the countdown; a point in a test's hands where the library has no other (a signal raised
 * inside a read-side section, test_unit). Fault-injection builds only.
 */
void uiommu_fail_point_hook(void (*fn)(void));
#else
static inline bool uiommu_should_fail(void)
{
	return false;
}
#endif

/*
 * The countdown of thread @tid (of this process), as /proc/<pid>/task/<tid>/fail-nth stores and
 * shows it: store arms (0 disarms); show is what is left, 0 once the failure happened or when
 * never armed. Release builds store nothing and show 0. fail_nth_store() is 0 or -ENOMEM.
 */
int fail_nth_store(pid_t tid, unsigned long nth);
unsigned long fail_nth_show(pid_t tid);

void *uiommu_zalloc(size_t size);
/* Zeroed, aligned to @align (a power of two, a multiple of sizeof(void *)); uiommu_free() it. */
void *uiommu_zalloc_aligned(size_t align, size_t size);
void *uiommu_calloc(size_t n, size_t size);
void *uiommu_realloc_array(void *p, size_t n, size_t size);
void uiommu_free(void *p);
/*
 * For a forked child's fork handlers, which must not call the allocator (a lock of its may be
 * held by a thread of the parent that the child does not have): @p, of uiommu_zalloc() and
 * friends (at least a pointer's size), is freed at this process's next allocation or free
 * (fail.c).
 */
void uiommu_free_after_fork(void *p);

/* Allocations made through uiommu_zalloc() and friends and not yet freed (0 in release). */
long uiommu_alloc_live(void);

/*
 * Deferred frees. An allocation handed to call_rcu() is counted as queued (lib/rcu.h does it),
 * and its callback frees it with uiommu_free_deferred(). uiommu_alloc_live_settled() is then
 * uiommu_alloc_live() without the queued ones: what will be live once every grace period has
 * ended, known without waiting for them (rcu_barrier() waits 10 ms, liburcu's batching delay,
 * too long for a leak check after each of thousands of fuzz inputs).
 */
void uiommu_free_queued(void);
void uiommu_free_deferred(void *p);
long uiommu_alloc_live_settled(void);

#endif
