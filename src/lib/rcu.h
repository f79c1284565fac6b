/* SPDX-License-Identifier: MIT */
/*
 * RCU for the whole library: liburcu's "bulletproof" flavour (urcu-bp), so that no host thread
 * ever has to register. The iommufd object table and the core's per-device fault data (the
 * kernel design this follows assumes RCU readers that never block) both read through it.
 *
 * uiommu_rcu_callback_begin() opens every call_rcu() callback: under ThreadSanitizer it is the
 * acquire that pairs with the releases below, which is how TSan learns about grace periods.
 */
#ifndef UIOMMU_LIB_RCU_H
#define UIOMMU_LIB_RCU_H

/*
 * Inline RCU read-side primitives (liburcu is LGPL; inlining is permitted with this define):
 * two out-of-line calls per lookup were a quarter of an ioctl's cost. Not under UBSan: liburcu
 * places its per-thread reader records without the 128-byte alignment their type declares,
 * which the inlined code would then report.
 */
#ifdef UIOMMU_RCU_INLINE
#define _LGPL_SOURCE
#endif
#include <urcu-bp.h>
#include <urcu/rculfhash.h>

#ifdef __SANITIZE_THREAD__
/*
 * ThreadSanitizer cannot see liburcu's grace periods (liburcu is not instrumented). Model them
 * with one sync object: every read-side section ends with a release on it, so does every
 * call_rcu(), and our RCU callbacks start with an acquire. That orders the readers and the
 * remover before the free, as the grace period does. Without it every object freed after a
 * grace period gave a (suppressed) report, and TSan's handling of suppressed reports searches
 * every racy address seen so far: quadratic, minutes for a few ten thousand objects.
 */
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
extern char uiommu_tsan_rcu_sync;
#undef rcu_read_unlock
#define rcu_read_unlock() (__tsan_release(&uiommu_tsan_rcu_sync), urcu_bp_read_unlock())
#define uiommu_rcu_callback_begin() __tsan_acquire(&uiommu_tsan_rcu_sync)
#define uiommu_synchronize_rcu() (urcu_bp_synchronize_rcu(), __tsan_acquire(&uiommu_tsan_rcu_sync))
#else
#define uiommu_rcu_callback_begin() do { } while (0)
#define uiommu_synchronize_rcu() urcu_bp_synchronize_rcu()
#endif

#define iommufd_rcu_callback_begin() uiommu_rcu_callback_begin()

/*
 * Every call_rcu() of the library frees one allocation in its callback, with
 * uiommu_free_deferred(); counting it as queued here keeps uiommu_alloc_live_settled() exact.
 */
#include "lib/fail.h"
#undef call_rcu
#ifdef __SANITIZE_THREAD__
#define call_rcu(head, fn)                                                                    \
	(uiommu_free_queued(), __tsan_release(&uiommu_tsan_rcu_sync), urcu_bp_call_rcu(head, fn))
#else
#define call_rcu(head, fn) (uiommu_free_queued(), urcu_bp_call_rcu(head, fn))
#endif

#endif
