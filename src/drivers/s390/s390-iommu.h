/* SPDX-License-Identifier: MIT */
/*
 * The s390-style (zPCI) IOMMU driver: a second hardware-shaped driver next to the mock, with
 * the translation-table format of s390 PCI DMA and the per-function state ("zdev") whose
 * release_device once raced attach/detach (see s390-iommu.c and docs/s390.md).
 *
 * The table format, as the hardware walks it (all entries 64-bit):
 *
 *   IOVA bits  41..31 region index (rtx)   -> region-third table, 2048 entries, 16 KiB aligned
 *              30..20 segment index (sx)   -> segment table,      2048 entries, 16 KiB aligned
 *              19..12 page index (px)      -> page table,          256 entries,  2 KiB aligned
 *              11..0  byte in the 4 KiB page
 *
 * so one region entry spans 2 GiB, one segment entry 1 MiB, and a domain at most 4 TiB
 * (S390_TABLE_SIZE_RT). A region or segment entry is valid when S390_TABLE_INVALID is clear;
 * it holds the origin of the next table, its type (S390_TABLE_TYPE_*) and, for region entries,
 * the offset and length of the segment table in quarters of 512 entries. A page-table entry is
 * valid when S390_PTE_INVALID is clear and holds the page frame; S390_TABLE_PROTECTED in it
 * makes the page read-only for the device. "Physical" addresses are host virtual addresses of
 * this process, as everywhere in uiommu.
 */
#ifndef UIOMMU_DRIVERS_S390_S390_IOMMU_H
#define UIOMMU_DRIVERS_S390_S390_IOMMU_H

#include <stdbool.h>
#include <stdint.h>

#include "iommu/iommu.h"

/* ---- the translation-table format ----------------------------------------------------------- */

#define S390_PAGE_SHIFT 12
#define S390_PAGE_SIZE (UINT64_C(1) << S390_PAGE_SHIFT)
#define S390_TABLE_BITS 11
#define S390_PT_BITS 8
#define S390_TABLE_ENTRIES (1u << S390_TABLE_BITS) /* region and segment tables */
#define S390_PT_ENTRIES (1u << S390_PT_BITS)       /* page tables */
#define S390_TABLE_SIZE (S390_TABLE_ENTRIES * 8u)  /* 16 KiB, and their alignment */
#define S390_PT_SIZE (S390_PT_ENTRIES * 8u)        /* 2 KiB, and their alignment */
#define S390_INDEX_MASK (S390_TABLE_ENTRIES - 1u)
#define S390_PT_MASK (S390_PT_ENTRIES - 1u)
#define S390_ST_SHIFT (S390_PT_BITS + S390_PAGE_SHIFT)   /* 20: a segment entry maps 1 MiB */
#define S390_RT_SHIFT (S390_ST_SHIFT + S390_TABLE_BITS)  /* 31: a region entry maps 2 GiB */
#define S390_TABLE_SIZE_RT (UINT64_C(1) << (S390_RT_SHIFT + S390_TABLE_BITS)) /* 4 TiB */

/* Region and segment entries. */
#define S390_TABLE_TYPE_MASK UINT64_C(0xc)
#define S390_TABLE_TYPE_RTX UINT64_C(0x4)    /* region-third: points at a segment table */
#define S390_TABLE_TYPE_SX UINT64_C(0x0)     /* segment: points at a page table */
#define S390_TABLE_LEN_MASK UINT64_C(0x3)    /* last quarter of the next table present */
#define S390_TABLE_LEN_RTX UINT64_C(0x3)     /* all four quarters: 2048 entries */
#define S390_TABLE_OFFSET_MASK UINT64_C(0xc0) /* first quarter present */
#define S390_TABLE_OFFSET_SHIFT 6
#define S390_TABLE_QUARTER (S390_TABLE_ENTRIES / 4u)
#define S390_RTE_ADDR_MASK (~UINT64_C(0x3fff))
#define S390_STE_ADDR_MASK (~UINT64_C(0x7ff))
/* Bits every level shares. */
#define S390_TABLE_INVALID UINT64_C(0x20)
#define S390_TABLE_PROTECTED UINT64_C(0x200)
/* Page-table entries. */
#define S390_PTE_INVALID UINT64_C(0x400)
#define S390_PTE_ADDR_MASK (~UINT64_C(0xfff))

/* The I/O translation anchor a function registers: region-table origin and these flags. */
#define S390_IOTA_IOT_ENABLED UINT64_C(0x800)
#define S390_IOTA_DT_RT (UINT64_C(1) << 2) /* designation type: region-third table */

/* The DMA range a function gets when the topology does not say (firmware's usual one). */
#define S390_DEFAULT_START_DMA UINT64_C(0x100000000)
#define S390_DEFAULT_END_DMA (S390_TABLE_SIZE_RT - 1)

/* The driver, for comparisons (domain->owner == &s390_iommu_ops). */
extern const struct iommu_ops s390_iommu_ops;

/**
 * s390_iommu_register() - register @iommu (name, deferred_flush filled in by the caller) with
 * the core, driven by this driver; functions behind it get [@start_dma, @end_dma] as their DMA
 * range unless s390_zdev_set_dma_range() said otherwise before their first probe.
 *
 * Return: 0, -ENOMEM, or an errno of iommu_device_register().
 */
int s390_iommu_register(struct iommu_device *iommu, uint64_t start_dma, uint64_t end_dma);

/** s390_iommu_unregister() - the reverse; no device may still be probed behind @iommu */
void s390_iommu_unregister(struct iommu_device *iommu);

/** s390_iommu_is_instance() - is @iommu driven by this driver? */
bool s390_iommu_is_instance(const struct iommu_device *iommu);

/**
 * s390_zdev_set_dma_range() - the DMA range firmware reports for @dev (its CLP query): made
 * before the first probe, kept across hot-plug. A range probe refuses (@start_dma > @end_dma,
 * or beyond 4 TiB) is stored as given; probe then fails with -EINVAL.
 *
 * Return: 0, -ENOMEM, -EBUSY while @dev is probed.
 */
int s390_zdev_set_dma_range(struct device *dev, uint64_t start_dma, uint64_t end_dma);

/**
 * s390_device_forget() - free the zdev of @dev (the PCI function is gone for good), before the
 * struct device is freed. @dev must not be probed. A no-op for a device without a zdev.
 */
void s390_device_forget(struct device *dev);

/**
 * s390_domain_walk() - the table walk the IOTLB model does on a miss
 * @phys: out, the physical address of @iova (its page offset included)
 * @prot: out, IOMMU_READ, plus IOMMU_WRITE unless the page is protected
 *
 * Lock-free. Return: 0; -ENOENT unmapped; -ERANGE outside the aperture; -EINVAL for a domain
 * that is not an s390 paging domain.
 */
int s390_domain_walk(struct iommu_domain *domain, uint64_t iova, phys_addr_t *phys, int *prot);

/** s390_domain_region_table() - the region table of an s390 paging domain, NULL otherwise */
const uint64_t *s390_domain_region_table(struct iommu_domain *domain);

/** s390_domain_nr_devices() - functions whose anchor points at @domain's table now */
unsigned int s390_domain_nr_devices(struct iommu_domain *domain);

/* What the driver knows of a function (tests; a consistent snapshot under its lock). */
struct s390_zdev_info {
	bool probed;                 /* between probe_device and release_device */
	unsigned int probes, releases;
	struct iommu_domain *domain; /* what the last effective attach installed; NULL: none */
	uint64_t iota;               /* the registered anchor, 0 when DMA is blocked */
	bool platform_dma;           /* the anchor is the function's own platform DMA table */
	unsigned int platform_dma_inits; /* times platform DMA was (re)initialised */
	unsigned int stale_attaches;     /* legacy attaches that found the function released */
	unsigned int stale_detaches;     /* legacy detaches that found it released */
	uint64_t start_dma, end_dma;
};

/** s390_zdev_get_info() - fill @info; -ENOENT when @dev has no zdev */
int s390_zdev_get_info(struct device *dev, struct s390_zdev_info *info);

/**
 * s390_zdev_translate() - what the function's DMA to @iova reaches, through its registered
 * anchor (the hardware's view, not the core's)
 * @access: IOMMU_READ or IOMMU_WRITE (the device reads or writes memory)
 *
 * Return: 0 with *@phys; -ERANGE outside the function's DMA range; -EFAULT when translation
 * is off or @iova is unmapped; -EACCES for a write to a protected page; -ENOENT without zdev.
 */
int s390_zdev_translate(struct device *dev, uint64_t iova, int access, phys_addr_t *phys);

/* ---- the legacy entry points (test knob) ------------------------------------------------------ */

/*
 * Before Linux 6.5 the core called a driver's attach_dev/detach_dev without serialising them
 * against release_device (VFIO's container teardown did, while the function was deconfigured).
 * These reach the driver's attach and detach paths the same way, without the group mutex, so a
 * test can show that the driver's own dma_domain_lock keeps it safe. They refuse (-EPERM)
 * until s390_iommu_set_legacy_entry(true): nothing but a test may bypass the core.
 */
void s390_iommu_set_legacy_entry(bool enabled);
/* 0 (also the no-op after release), -EPERM, -ENODEV without zdev, -EINVAL incompatible. */
int s390_iommu_legacy_attach_dev(struct iommu_domain *domain, struct device *dev);
/* Detach from @domain; re-initialises platform DMA only while the function is probed. */
int s390_iommu_legacy_detach_dev(struct iommu_domain *domain, struct device *dev);

#endif
