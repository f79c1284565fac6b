/* SPDX-License-Identifier: MIT */
/*
 * The device DMA engine (dma-engine.c): a device emulator's DMA through the IOMMU, the public
 * uiommu_dma_* API of include/uiommu/uiommu.h. What the rest of the library reaches:
 *
 *  - dma_engine_page_response(): the fault layer calls it with every page response it has a
 *    driver send, so that the response to a request an engine raised wakes its waiter;
 *  - dma_engine_dev_open(): a handle on a core device, for white-box tests and benchmarks.
 */
#ifndef UIOMMU_IOMMU_DMA_ENGINE_H
#define UIOMMU_IOMMU_DMA_ENGINE_H

#include "iommu/iommu.h"
#include "uiommu/uiommu.h"

/* Outstanding page requests per device handle (PCIe PRI's Outstanding Page Request Capacity). */
#define DMA_ENGINE_MAX_PRQ 512u
/* Fault events a handle keeps; older ones are overwritten. */
#define DMA_ENGINE_FAULT_LOG 64u
#define DMA_ENGINE_DEFAULT_TIMEOUT_MS 1000u

/**
 * dma_engine_page_response() - the driver of @dev delivers a page response
 * @evt: the last fault of the request group being answered
 * @msg: the response (its PASID, grpid and code)
 *
 * Called by the fault layer right after the driver's page_response op, in the same context
 * (possibly under the fault layer's locks): it only takes the engine's own leaf locks and wakes a waiter. A
 * response that matches no outstanding request of ours (another device model's, or one that
 * timed out) is ignored.
 */
void dma_engine_page_response(struct device *dev, struct iopf_fault *evt,
			      struct iommu_page_response *msg);

/**
 * dma_engine_dev_open() - a DMA engine handle on @dev (probed), as uiommu_dma_dev_open()
 *
 * Takes a reference on @dev and on its group. Close with uiommu_dma_dev_close().
 *
 * Return: the handle, or ERR_PTR(-ENODEV) (not probed), -ENOMEM.
 */
struct uiommu_dma_dev *dma_engine_dev_open(struct device *dev);

#endif
