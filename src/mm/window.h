/* SPDX-License-Identifier: MIT */
/*
 * The window (window.c): stand-in host addresses for another process's pinned private pages.
 * Only src/mm uses it; everything above sees window addresses as host addresses, which the
 * host copies (mm.h) read and write, and recognises them with uiommu_host_is_window() (mm.h)
 * where it would load through one itself.
 */
#ifndef UIOMMU_MM_WINDOW_H
#define UIOMMU_MM_WINDOW_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct uiommu_mm;

/* Written once, the size last (release), before any window address exists. */
extern _Atomic uintptr_t uiommu_window_base;
extern _Atomic uint64_t uiommu_window_size;

/*
 * Is @p a window address? The host copies' hot path: one subtraction and one compare (the
 * acquire is a plain load on x86 and arm64's ldar). Before the window exists its size is 0
 * and nothing is in it.
 */
static inline bool uiommu_window_has(const void *p)
{
	uint64_t size = atomic_load_explicit(&uiommu_window_size, memory_order_acquire);

	return (uintptr_t)p - atomic_load_explicit(&uiommu_window_base, memory_order_relaxed) <
	       size;
}

int uiommu_window_copy(void *dst, const void *src, size_t len);

int mm_window_cover(struct uiommu_mm *mm, uint64_t uaddr, uint64_t len);
bool mm_window_host(struct uiommu_mm *mm, uint64_t uaddr, uint64_t *host);
void mm_window_kill(struct uiommu_mm *mm, uint64_t uaddr, uint64_t len);
void mm_window_release(struct uiommu_mm *mm, uint64_t uaddr, uint64_t len);
void mm_window_release_all(struct uiommu_mm *mm);
bool mm_window_any(struct uiommu_mm *mm, uint64_t uaddr, uint64_t len);

struct iovec;
/* The owner's side (mm_remote.c): one copy to or from several ranges of its memory. */
int mm_remote_copyv(struct uiommu_mm *mm, void *local, const struct iovec *remote, unsigned int n,
		    size_t len, bool write);

#endif
