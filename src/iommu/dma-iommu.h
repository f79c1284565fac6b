/* SPDX-License-Identifier: MIT */
/*
 * The DMA API of an emulated kernel driver bound to a device, over the IOMMU core (the
 * counterpart of the kernel's dma-iommu.c behind dma_map_single()), and the device emulator's
 * side of DMA (dma_device_read/write), which translates through the IOTLB model. See
 * dma-iommu.c for the design.
 *
 * The hooks the core calls (iommu_get_dma_cookie, iommu_put_dma_cookie, iommu_dma_init_fq,
 * iommu_setup_dma_ops) are declared in iommu/iommu.h.
 */
#ifndef UIOMMU_IOMMU_DMA_IOMMU_H
#define UIOMMU_IOMMU_DMA_IOMMU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iommu/iommu.h"

/* The values are the kernel's. */
enum dma_data_direction {
	DMA_BIDIRECTIONAL = 0,
	DMA_TO_DEVICE = 1,
	DMA_FROM_DEVICE = 2,
	DMA_NONE = 3,
};

#define DMA_MAPPING_ERROR (~(dma_addr_t)0)

/* Entries per flush queue, and how long a queued IOVA may wait for its flush. */
#define IOVA_FQ_SIZE 256u
#define IOVA_FQ_TIMEOUT_MS 10u

static inline bool dma_mapping_error(struct device *dev, dma_addr_t addr)
{
	(void)dev;
	return addr == DMA_MAPPING_ERROR;
}

/**
 * dma_map_single() - make [@cpu_addr, @cpu_addr + @size) reachable by @dev's DMA
 * @dir: DMA_TO_DEVICE (the device reads), DMA_FROM_DEVICE (it writes) or DMA_BIDIRECTIONAL
 *
 * Through the group's default domain: a DMA or DMA-FQ domain gets an IOVA from its allocator
 * and a mapping with the permissions @dir implies; an identity domain, or a device without an
 * IOMMU, uses the CPU address itself.
 *
 * Return: the DMA address, or DMA_MAPPING_ERROR (no IOVA space, no memory, a bad @dir, or a
 * default domain the DMA API cannot use).
 */
dma_addr_t dma_map_single(struct device *dev, void *cpu_addr, size_t size,
			  enum dma_data_direction dir);

/**
 * dma_unmap_single() - undo dma_map_single() (same @size and @dir)
 *
 * Strict (DMA) domains: the IOTLB is invalidated before this returns, and the IOVA is free.
 * Lazy (DMA-FQ) domains: the page table is cleared now, but the IOTLB invalidation and the
 * freeing of the IOVA wait in a flush queue; until that flush a device may still reach the
 * buffer through a stale IOTLB entry, and the IOVA is never handed out again before it.
 */
void dma_unmap_single(struct device *dev, dma_addr_t addr, size_t size,
		      enum dma_data_direction dir);

/**
 * dma_device_read() - @dev's DMA engine reads @len bytes at @addr into @buf
 *
 * Translates through @dev's IOMMU instance: its IOTLB first (a stale entry is used if present),
 * then the page table of the domain the device is attached to now.
 *
 * Return: 0; -EFAULT (an IOMMU fault) when a page is unmapped, not readable, or the device is
 * blocked; nothing is copied from the faulting page on.
 */
int dma_device_read(struct device *dev, dma_addr_t addr, void *buf, size_t len);

/** dma_device_write() - @dev's DMA engine writes @buf at @addr; as dma_device_read() */
int dma_device_write(struct device *dev, dma_addr_t addr, const void *buf, size_t len);

/* ---- the domain-level API (the device-level calls above go through these) ------------------ */

/**
 * iommu_dma_map_phys() - map @phys for DMA in a DMA-API @domain
 * @prot: IOMMU_READ / IOMMU_WRITE
 * @dma_limit: the highest DMA address the device can emit (its DMA mask)
 *
 * Return: the DMA address (with @phys's offset in the granule), or DMA_MAPPING_ERROR.
 */
dma_addr_t iommu_dma_map_phys(struct iommu_domain *domain, phys_addr_t phys, size_t size,
			      int prot, uint64_t dma_limit);

/** iommu_dma_unmap_phys() - undo iommu_dma_map_phys(), strict or queued as the domain is */
void iommu_dma_unmap_phys(struct iommu_domain *domain, dma_addr_t addr, size_t size);

/**
 * iommu_dma_device_access() - a device's access through @iommu to @domain
 * @write: the device writes memory (else it reads it)
 *
 * Return: 0 or -EFAULT, as dma_device_read().
 */
int iommu_dma_device_access(struct iommu_device *iommu, struct iommu_domain *domain,
			    uint64_t addr, void *buf, size_t len, bool write);

/**
 * iommu_dma_flush_fq() - flush @domain's queues now
 *
 * When it returns, the IOTLB holds no translation of anything unmapped before the call, and
 * every IOVA queued before the call is free again. Nothing for a strict domain.
 */
void iommu_dma_flush_fq(struct iommu_domain *domain);

/* Counters for tests and benchmarks. */
struct iommu_dma_stats {
	bool fq_enabled;
	unsigned long fq_pending;   /* IOVAs waiting in flush queues */
	unsigned long fq_flushes;   /* IOTLB flushes the queues issued */
	unsigned long fq_timeouts;  /* flushes started by the timeout */
};
void iommu_dma_get_stats(struct iommu_domain *domain, struct iommu_dma_stats *stats);

struct iova_domain;
/** iommu_dma_iovad() - the IOVA allocator of a DMA-API domain (tests), NULL for others */
struct iova_domain *iommu_dma_iovad(struct iommu_domain *domain);

#endif
