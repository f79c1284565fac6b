/* SPDX-License-Identifier: MIT */
/*
 * The mock IOMMU driver: a complete struct iommu_ops over the io_pgtable format, the driver the
 * emulated machine's IOMMU instances use (see mock.c for the design).
 *
 * What tests and the layers above reach directly:
 *  - mock_iommu_register(): an IOMMU instance joins the core with the mock ops;
 *  - mock_domain_walk(): the page walk the driver gives the IOTLB model;
 *  - mock_iotlb_invalidate_hook: tests hear every invalidation command;
 *  - mock_fail_attach(), mock_release_count(), mock_attached_domain(): test hooks.
 */
#ifndef UIOMMU_DRIVERS_MOCK_MOCK_H
#define UIOMMU_DRIVERS_MOCK_MOCK_H

#include <stdint.h>

#include "iommu/io_pgtable.h"
#include "iommu/iommu.h"

/*
 * The interrupt window of x86 (the IOAPIC/MSI address range intel-iommu and amd-iommu report
 * as IOMMU_RESV_MSI): a device's DMA there is an interrupt, never memory.
 */
#define MOCK_MSI_WINDOW_START UINT64_C(0xfee00000)
#define MOCK_MSI_WINDOW_LENGTH UINT64_C(0x100000)

/* Input address width of every mock paging domain (aperture [0, 2^48 - 1]). */
#define MOCK_IAS 48u

/* The driver, for comparisons (domain->owner == &mock_iommu_ops). */
extern const struct iommu_ops mock_iommu_ops;

/**
 * mock_iotlb_flush_fn - an IOTLB invalidation of [@start, @last] (inclusive) in @domain
 *
 * Called from flush_iotlb_all (0, UINT64_MAX) and iotlb_sync (the gathered range), in the
 * caller's context: possibly under a group mutex, never under a driver lock.
 */
typedef void (*mock_iotlb_flush_fn)(struct iommu_domain *domain, uint64_t start, uint64_t last);

/*
 * Set by tests that watch the driver's invalidation commands (NULL by default); called after
 * the IOTLB model was invalidated. Atomic so that it may be set while other threads map and
 * unmap: plain assignment and reads work.
 */
extern _Atomic(mock_iotlb_flush_fn) mock_iotlb_invalidate_hook;

/**
 * mock_iommu_register() - register @iommu (name, max_pasids, deferred_flush, dirty_tracking
 * filled in by the caller) with the core, driven by the mock driver
 *
 * The first one also registers the driver's walker with the IOTLB model.
 *
 * Return: 0, -ENOSPC (the IOTLB model's walker table is full) or -errno from
 * iommu_device_register().
 */
int mock_iommu_register(struct iommu_device *iommu);

/** mock_iommu_unregister() - the reverse; no device may still be probed behind @iommu */
void mock_iommu_unregister(struct iommu_device *iommu);

/**
 * mock_domain_walk() - the page walk the IOTLB model does on a miss (the driver registers it)
 * @domain: a mock paging domain
 *
 * Return: 0 with *@leaf filled, -ENOENT when unmapped, -ERANGE outside the aperture, -EINVAL
 * for a domain that is not a mock paging domain (identity and blocked have no table).
 */
int mock_domain_walk(struct iommu_domain *domain, uint64_t iova, struct io_pgtable_leaf *leaf);

/** mock_domain_pgtable() - the page table of a mock paging domain, NULL for any other */
struct io_pgtable *mock_domain_pgtable(struct iommu_domain *domain);

/**
 * mock_page_response_fn - a page response the driver sends to @dev (after recording it)
 *
 * Called under the core's fault-data lock of @dev: the hook must not report faults or answer
 * groups. Set by tests that count answers (NULL by default).
 */
typedef void (*mock_page_response_fn)(struct device *dev, const struct iommu_page_response *msg);
extern _Atomic(mock_page_response_fn) mock_page_response_hook;

/* ---- test hooks ----------------------------------------------------------------------------- */

/**
 * mock_fail_attach() - make the next attach_dev of @dev (to any domain) fail with @err
 * @err: a negative errno; 0 cancels a pending failure
 *
 * One-shot. Lets tests prove that the core's group domain switch is all-or-nothing.
 */
void mock_fail_attach(struct device *dev, int err);

/** mock_release_count() - how many times release_device ran for @dev (since it was first seen) */
unsigned int mock_release_count(struct device *dev);

/** mock_probe_count() - how many times probe_device succeeded for @dev */
unsigned int mock_probe_count(struct device *dev);

/**
 * mock_attached_domain() - the domain the driver believes @dev is attached to (what the last
 * successful attach_dev recorded), NULL when @dev is not probed. Compare with the core's view.
 */
struct iommu_domain *mock_attached_domain(struct device *dev);

/**
 * mock_pasid_domain() - the domain the driver's PASID table has for (@dev, @pasid), or NULL.
 * Call with @dev's group mutex held (iommu_group_for_each_dev()).
 */
struct iommu_domain *mock_pasid_domain(struct device *dev, uint32_t pasid);

/**
 * mock_device_forget() - drop the test bookkeeping of @dev (counters, pending failure) before
 * the struct device is freed, so that a new device at the same address starts from zero.
 */
void mock_device_forget(struct device *dev);

/**
 * mock_page_responses() - how many page responses the driver sent to @dev (since it was first
 * seen); *@last (if not NULL) gets the latest one
 */
unsigned int mock_page_responses(struct device *dev, struct iommu_page_response *last);

#endif
