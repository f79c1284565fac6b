/* SPDX-License-Identifier: MIT */
/*
 * The device DMA engine (dma-engine.c): a device emulator's DMA through the IOMMU, the public
 * uiommu_dma_* API of include/uiommu/uiommu.h. What the rest of the library reaches:
 * dma_engine_dev_open(), a handle on a core device, for iommufd (uiommu_dma_dev_open_iommufd()
 * resolves its device IDs there, iommufd/device_dma.c), white-box tests and benchmarks. The
 * engine hears page responses through the sink it registers with the fault layer
 * (iopf_response_sink_register()); the core never names it.
 */
#ifndef UIOMMU_MACHINE_DMA_ENGINE_H
#define UIOMMU_MACHINE_DMA_ENGINE_H

#include "iommu/iommu.h"
#include "uiommu/uiommu.h"

/* Outstanding page requests per device handle (PCIe PRI's Outstanding Page Request Capacity). */
#define DMA_ENGINE_MAX_PRQ 512u
/* Fault events a handle keeps; older ones are overwritten. */
#define DMA_ENGINE_FAULT_LOG 64u
#define DMA_ENGINE_DEFAULT_TIMEOUT_MS 1000u

/**
 * dma_engine_dev_open() - a DMA engine handle on @dev (probed), as uiommu_dma_dev_open()
 *
 * Takes a reference on @dev and on its group. Close with uiommu_dma_dev_close().
 *
 * Return: the handle, or ERR_PTR(-ENODEV) (not probed), -ENOMEM, -ENOSPC (the fault layer has
 * no room for the engine's page-response sink).
 */
struct uiommu_dma_dev *dma_engine_dev_open(struct device *dev);

/*
 * The write-log hook: an upper layer (VFIO's device DMA logging) asks to be told of every range
 * a device's DMA wrote, after the bytes moved. @fn runs on the DMA's thread with the device's
 * group mutex held: it may take only leaf locks of its own.
 */
typedef void (*dma_engine_write_log_fn)(void *priv, uint32_t pasid, uint64_t iova, uint64_t len);

/**
 * dma_engine_write_log_set() - register @fn for the writes of @dev (one hook per device)
 * Return: 0, -EBUSY (a hook is set for @dev), -ENOSPC (DMA_ENGINE_MAX_LOG_HOOKS devices have
 * one).
 */
#define DMA_ENGINE_MAX_LOG_HOOKS 64u
int dma_engine_write_log_set(struct device *dev, dma_engine_write_log_fn fn, void *priv);
/* dma_engine_write_log_clear() - remove @dev's hook; when it returns, no call of it runs. */
void dma_engine_write_log_clear(struct device *dev);

/**
 * dma_engine_copy_run() - COPYs @copies[0..n) (@stride bytes apart), each with its record
 * @recs[i] (len 0 or @recs NULL: none), on the fast path alone (uiommu_pci_dma_copy_run())
 * Return: how many went (the rest untouched: the caller runs them through uiommu_dma_batch(),
 * but for one whose copy was made and record failed: *@stop, error set), or -EINVAL.
 */
ssize_t dma_engine_copy_run(struct uiommu_dma_dev *e, uint32_t pasid, unsigned int flags,
			    const void *copies, size_t stride, const struct uiommu_dma_record *recs,
			    size_t n, struct uiommu_dma_op *stop);

#endif
