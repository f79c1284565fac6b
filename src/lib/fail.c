// SPDX-License-Identifier: MIT
/* See fail.h for the model. */
#include <stdatomic.h>
#include <stdlib.h>

#include "compiler.h"
#include "fail.h"
#include "uiommu/uiommu.h"

#ifdef UIOMMU_FAULT_INJECT
/*
 * fail_nth: 0 is disarmed; otherwise the number of checks left until one fails, counting the
 * failing one. fail_seen counts every check since the last arm, so a sweep knows when it ran
 * past the last point.
 */
static _Thread_local unsigned long fail_nth;
static _Thread_local unsigned long fail_seen;
static atomic_long alloc_live;
static atomic_long alloc_settled; /* alloc_live, less those handed to call_rcu() */

bool uiommu_should_fail(void)
{
	fail_seen++;
	if (!fail_nth)
		return false;
	if (--fail_nth)
		return false;
	return true;
}

UIOMMU_EXPORT void uiommu_fail_nth_arm(unsigned long nth)
{
	fail_nth = nth;
	fail_seen = 0;
}

UIOMMU_EXPORT unsigned long uiommu_fail_nth_disarm(void)
{
	unsigned long left = fail_nth;

	fail_nth = 0;
	return left;
}

UIOMMU_EXPORT unsigned long uiommu_fail_points_seen(void)
{
	return fail_seen;
}

UIOMMU_EXPORT bool uiommu_fail_nth_available(void)
{
	return true;
}

long uiommu_alloc_live(void)
{
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

void *uiommu_calloc(size_t n, size_t size)
{
	void *p;

	if (uiommu_should_fail())
		return NULL;
	p = calloc(n, size);
	if (p)
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
	if (!p)
		return;
	alloc_count(-1);
	free(p);
}
