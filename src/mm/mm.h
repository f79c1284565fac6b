/* SPDX-License-Identifier: MIT */
/*
 * The address-space object: uiommu's stand-in for the kernel's struct mm_struct.
 *
 * Every byte of user memory that uiommu reads or writes, and every page it pins, is reached
 * through a struct uiommu_mm. No other code may dereference a user pointer: user addresses are
 * carried as uint64_t so the compiler refuses a stray dereference. Today the only address space
 * is the calling process ("self"); a daemon mode will add address spaces of other processes
 * behind the same operations.
 *
 * The mm also keeps the pin ledger, the counterpart of a struct page's pin count: for every user
 * page it counts how many pin holders (iopt_pages) hold it. Nothing else here stands for
 * physical memory, so tests read the ledger where the kernel selftest reads page refcounts.
 *
 * Locking: pin_lock protects the ledger. It is a leaf lock: nothing is taken under it.
 */
#ifndef UIOMMU_MM_H
#define UIOMMU_MM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <errno.h>

#include "lib/fail.h"
#include "lib/interval_tree.h"
#include "lib/lockdep.h"

struct uiommu_mm;

struct uiommu_mm_ops {
	/* Copy @len bytes; 0 or -EFAULT. A fault part way may leave @dst partly written. */
	int (*copy_from)(struct uiommu_mm *mm, void *dst, uint64_t uaddr, size_t len);
	int (*copy_to)(struct uiommu_mm *mm, uint64_t uaddr, const void *src, size_t len);
	/* Make sure each page of [uaddr, uaddr + npages * page size) is present (and writable if
	 * @write); 0 or -EFAULT. Says nothing about later unmaps by the owner. */
	int (*fault_in)(struct uiommu_mm *mm, uint64_t uaddr, size_t npages, bool write);
	/* A host pointer for an address that fault_in accepted, or NULL when the address space is
	 * not directly addressable (another process). */
	void *(*host_ptr)(struct uiommu_mm *mm, uint64_t uaddr);
	/* Optional: the PROT_READ/WRITE/EXEC bits of the mapping that holds @uaddr in *@prot;
	 * -EFAULT when nothing is mapped there (SVA's permission check, the kernel's vma). */
	int (*vma_prot)(struct uiommu_mm *mm, uint64_t uaddr, unsigned int *prot);
	void (*release)(struct uiommu_mm *mm);
};

struct iommu_mm_data;

struct uiommu_mm {
	const struct uiommu_mm_ops *ops;
	atomic_int refs;          /* uiommu_mm_get()/uiommu_mm_put() */
	int pid;                  /* the owning process */
	struct uiommu_mutex pin_lock; /* protects pinned; leaf lock */
	struct interval_tree_root pinned; /* struct mm_pin_extent by page index; disjoint */
	uint64_t pinned_pages;    /* pages with a non-zero pin count */
	/*
	 * SVA (iommu/iommu-sva.c): the address space's PASID and SVA domains, made at its first
	 * bind and kept until the mm is freed (mm_pasid_drop()); iommu_sva_lock.
	 */
	struct iommu_mm_data *iommu_mm;
};

/* The mm is being freed: give its PASID back (iommu-sva.c; the kernel's mm_pasid_drop()). */
void mm_pasid_drop(struct uiommu_mm *mm);

/* The calling process's address space; a new reference each call. */
struct uiommu_mm *uiommu_mm_self(void);
struct uiommu_mm *uiommu_mm_get(struct uiommu_mm *mm);
void uiommu_mm_put(struct uiommu_mm *mm);

/* Every user access is a fallible step for fault injection (lib/fail.h). */
static inline int uiommu_copy_from_user(struct uiommu_mm *mm, void *dst, uint64_t uaddr,
					size_t len)
{
	if (uiommu_should_fail())
		return -EFAULT;
	return mm->ops->copy_from(mm, dst, uaddr, len);
}

static inline int uiommu_copy_to_user(struct uiommu_mm *mm, uint64_t uaddr, const void *src,
				      size_t len)
{
	if (uiommu_should_fail())
		return -EFAULT;
	return mm->ops->copy_to(mm, uaddr, src, len);
}

/*
 * The same copy, not subject to fault injection: only for writing a reply after an
 * irreversible change, to a place the same ioctl has just written successfully. It fails only
 * if the caller unmapped its own argument meanwhile.
 */
static inline int __uiommu_copy_to_user(struct uiommu_mm *mm, uint64_t uaddr, const void *src,
					size_t len)
{
	return mm->ops->copy_to(mm, uaddr, src, len);
}

/*
 * Pin [page_index, page_index + npages) (user page numbers, uaddr >> PAGE_SHIFT): faults the
 * pages in and adds one to each page's count in the ledger. All or nothing: -EFAULT or -ENOMEM
 * leave the ledger as it was.
 */
int uiommu_mm_pin(struct uiommu_mm *mm, uint64_t page_index, uint64_t npages, bool write);
void uiommu_mm_unpin(struct uiommu_mm *mm, uint64_t page_index, uint64_t npages);
/* The ledger's count for one user page. */
unsigned int uiommu_mm_pin_count(struct uiommu_mm *mm, uint64_t page_index);
uint64_t uiommu_mm_pinned_pages(struct uiommu_mm *mm);

/* The host page size (the kernel's PAGE_SIZE), read once. */
extern uint64_t uiommu_page_size;
extern unsigned int uiommu_page_shift;

#endif
