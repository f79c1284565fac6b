/* SPDX-License-Identifier: MIT */
/*
 * The IOTLB model: per IOMMU instance, a bounded set-associative cache of translations tagged
 * (domain id, IOVA page) -> (physical page, prot). See iotlb.c for the design and its
 * concurrency.
 *
 * Who calls what:
 *   - the device emulator (dma_device_read/write in dma-iommu.c) translates through
 *     iotlb_translate(): a hit is used as it is (even if the page table changed since: that is
 *     the point), a miss walks the domain's page table and fills;
 *   - a driver's invalidation ops call iotlb_inv_range() (iotlb_sync) and iotlb_inv_domain()
 *     (flush_iotlb_all): the IOTLB is the driver's hardware, and these are its invalidation
 *     commands. They act on every instance's IOTLB, as a driver invalidates on every IOMMU the
 *     domain is attached through.
 *
 * Pages are IOTLB_PAGE_SIZE (4 KiB) whatever the domain's page sizes.
 */
#ifndef UIOMMU_IOMMU_IOTLB_H
#define UIOMMU_IOMMU_IOTLB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "iommu/iommu.h"

#define IOTLB_PAGE_SHIFT 12
#define IOTLB_PAGE_SIZE (UINT64_C(1) << IOTLB_PAGE_SHIFT)
#define IOTLB_SETS 256u /* a power of two */
#define IOTLB_WAYS 4u
/* IOMMU instances with an IOTLB at once. */
#define IOTLB_MAX_INSTANCES 32u

struct iotlb;

/*
 * A prot bit of the walk and of a cached entry, beside IOMMU_READ | IOMMU_WRITE: the domain
 * tracks dirty pages and the leaf's dirty bit was clear. A write through such an entry walks
 * again (which sets the bit), as hardware does for a D bit its IOTLB entry does not have.
 */
#define IOTLB_PROT_CLEAN (1 << 8)

/**
 * typedef iotlb_walk_fn - a page-table walk that also reports the leaf's permissions
 * @iova: page-aligned
 * @access: IOMMU_READ or IOMMU_WRITE, the access that missed: a driver that tracks dirty
 *          pages sets the leaf's dirty bit on a write
 * @prot: out, IOMMU_READ | IOMMU_WRITE of the leaf, | IOTLB_PROT_CLEAN (see there)
 *
 * Return: the physical address of @iova, 0 when unmapped.
 */
typedef phys_addr_t (*iotlb_walk_fn)(struct iommu_domain *domain, uint64_t iova, int access,
				     int *prot);

/**
 * iotlb_register_walker() - how to walk the domains of driver @owner, permissions included
 *
 * struct iommu_domain_ops has only iova_to_phys(), which says nothing of permissions; a driver
 * registers a walker here at init so that the IOTLB can refuse a write through a read-only
 * mapping (the mock and s390 drivers register theirs with their first instance). Domains
 * without one are walked with iova_to_phys() and get IOMMU_READ | IOMMU_WRITE.
 *
 * Return: 0, -ENOSPC when the table is full.
 */
int iotlb_register_walker(const struct iommu_ops *owner, iotlb_walk_fn walk);

/**
 * iotlb_for_iommu() - the IOTLB of @iommu, created on first use
 *
 * Return: the IOTLB, or ERR_PTR(-ENOMEM) / ERR_PTR(-ENOSPC) (too many instances).
 */
struct iotlb *iotlb_for_iommu(struct iommu_device *iommu);

/**
 * iotlb_release() - forget @iommu's IOTLB (at iommu_device_unregister())
 *
 * No translation through @iommu may be running or start afterwards.
 */
void iotlb_release(struct iommu_device *iommu);

/**
 * iotlb_lookup() - the hit path alone: is (@domid, @iova's page) cached?
 * @phys: out, the physical address of @iova (the page offset included)
 * @prot: out, IOMMU_READ | IOMMU_WRITE, and IOTLB_PROT_CLEAN for an entry cached clean
 *
 * Lock-free and store-free; callable from any thread.
 *
 * Return: true on a hit.
 */
bool iotlb_lookup(struct iotlb *tlb, uint32_t domid, uint64_t iova, phys_addr_t *phys, int *prot);

/**
 * iotlb_translate() - what a device's access to @iova goes through
 * @access: IOMMU_READ (the device reads memory) or IOMMU_WRITE (it writes memory)
 * @phys: out, the physical address of @iova
 *
 * A hit is used whatever the page table now says; a miss walks @domain's page table and fills
 * the entry, unless an invalidation ran meanwhile (then the walk's result is used once and not
 * cached: it may already be stale).
 *
 * Return: 0; -EFAULT for an unmapped IOVA or an access the mapping does not permit.
 */
int iotlb_translate(struct iotlb *tlb, struct iommu_domain *domain, uint64_t iova, int access,
		    phys_addr_t *phys);

/**
 * iotlb_fetch() - iotlb_translate() without the permission check: the translation and its prot
 * @access: IOMMU_READ or IOMMU_WRITE: a write hit on an entry cached IOTLB_PROT_CLEAN walks
 * @phys: out, the physical address of @iova
 * @prot: out, IOMMU_READ | IOMMU_WRITE of the entry (or of the walk, on a miss)
 *
 * For a device that must tell an unmapped IOVA from a forbidden access (the DMA engine).
 *
 * Return: 0; -EFAULT for an unmapped IOVA.
 */
int iotlb_fetch(struct iotlb *tlb, struct iommu_domain *domain, uint64_t iova, int access,
		phys_addr_t *phys, int *prot);

/**
 * iotlb_inv_range() - invalidate @domain's entries for [@iova, @iova + @size) everywhere
 *
 * When it returns, no lookup on any instance finds such an entry, and no fill that walked the
 * page table before the call can add one.
 */
void iotlb_inv_range(struct iommu_domain *domain, uint64_t iova, uint64_t size);

/** iotlb_inv_domain() - invalidate all of @domain's entries everywhere, as iotlb_inv_range() */
void iotlb_inv_domain(struct iommu_domain *domain);

/*
 * A stamp of a cached entry: where the entry's set keeps its sequence count, and the count when
 * the stamp was taken. The pointer is kept so that checking a stamp is one load in the caller,
 * not a call into iotlb.c and a set lookup: the DMA engine checks one per page it touches.
 * The sets live as long as their IOTLB (iotlb_release()).
 */
struct iotlb_stamp {
	const _Atomic uint32_t *seq;
	uint32_t val;
};

/**
 * iotlb_stamp() - a stamp of the cached entry of (@domid, @iova), for a device's own copy
 *
 * A device that keeps a translation of its own for a while (the DMA engine, within one batch)
 * takes a stamp once the entry is in the IOTLB and reuses its copy only while
 * iotlb_stamp_valid() says so. The stamp is the entry's set's sequence count: any write to the
 * set (an invalidation that removes the entry, a fill that evicts it) moves it, and an
 * invalidation that finds the entry always writes its set. @phys and @prot are the translation
 * the caller keeps (its physical page, its IOMMU_READ | IOMMU_WRITE). Returns false (no stamp:
 * do not keep a copy) when the entry is not cached, says another translation than that (it was
 * invalidated and refilled since the caller's lookup), or is cached clean and @access is a write.
 */
bool iotlb_stamp(struct iotlb *tlb, uint32_t domid, uint64_t iova, int access, phys_addr_t phys,
		 int prot, struct iotlb_stamp *stamp);

/** iotlb_stamp_valid() - is the entry @stamp was taken of still cached, unchanged? */
static inline bool iotlb_stamp_valid(const struct iotlb_stamp *stamp)
{
	/* Pairs with the release of the writer's unlock: a moved count is seen once it is done. */
	return atomic_load_explicit(stamp->seq, memory_order_acquire) == stamp->val;
}

/** iotlb_count() - valid entries of @domid in @tlb (tests; a racy snapshot) */
unsigned int iotlb_count(struct iotlb *tlb, uint32_t domid);

/**
 * iotlb_stats() - fills so far, and set invalidations (one per set an invalidation command
 * took: a command of n < IOTLB_SETS pages counts n, a bigger one IOTLB_SETS); tests, racy
 */
void iotlb_stats(struct iotlb *tlb, uint64_t *fills, uint64_t *invalidations);

#endif
