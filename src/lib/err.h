/* SPDX-License-Identifier: MIT */
/*
 * Pointer-or-errno returns, the kernel's idiom: a pointer-returning call hands back either a
 * valid pointer or a negative errno folded into the top page of the address space. NULL never
 * means "error" in uiommu's internal API.
 */
#ifndef UIOMMU_LIB_ERR_H
#define UIOMMU_LIB_ERR_H

#include <stdbool.h>
#include <stdint.h>

#define UIOMMU_MAX_ERRNO 4095

static inline void *ERR_PTR(long error)
{
	return (void *)(intptr_t)error;
}

static inline long PTR_ERR(const void *ptr)
{
	return (long)(intptr_t)ptr;
}

static inline bool IS_ERR(const void *ptr)
{
	return (uintptr_t)ptr >= (uintptr_t)-UIOMMU_MAX_ERRNO;
}

static inline bool IS_ERR_OR_NULL(const void *ptr)
{
	return !ptr || IS_ERR(ptr);
}

static inline void *ERR_CAST(const void *ptr)
{
	return (void *)(uintptr_t)ptr;
}

#endif
