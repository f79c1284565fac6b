// SPDX-License-Identifier: MIT
/*
 * The DMA engine of a device found through iommufd: uiommu_dma_dev_open_iommufd(), the public
 * way for a device emulator to do the DMA of a device it knows only as (iommufd fd, dev_id),
 * such as the selftest's mock devices or a device bound through its VFIO cdev.
 *
 * Why here. The engine belongs to the emulated machine (src/machine/dma-engine.c), which sits
 * below iommufd and works on core devices; it must not know iommufd's objects. iommufd knows
 * both sides: it resolves the ID to its core device and hands that to the engine. The handle
 * holds its own references on the device and its group, so it outlives the binding: after an
 * unbind the device translates through whatever its group is attached to, as hardware would.
 */
#include <errno.h>

#include "iommufd/iommufd_private.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "machine/dma-engine.h"

UIOMMU_EXPORT struct uiommu_dma_dev *uiommu_dma_dev_open_iommufd(int iommufd, uint32_t dev_id)
{
	struct iommufd_device *idev;
	struct iommufd_ctx *ictx;
	struct uiommu_dma_dev *e;

	ictx = iommufd_ctx_from_fd(iommufd);
	if (IS_ERR(ictx)) {
		errno = (int)-PTR_ERR(ictx);
		return NULL;
	}
	idev = iommufd_get_device(ictx, dev_id);
	if (IS_ERR(idev)) {
		e = ERR_CAST(idev);
		goto out_put_ctx;
	}
	/* The handle takes its own references before we drop the object's. */
	e = dma_engine_dev_open(idev->dev);
	iommufd_put_object(ictx, &idev->obj);
out_put_ctx:
	iommufd_ctx_file_put(ictx);
	if (IS_ERR(e)) {
		errno = (int)-PTR_ERR(e);
		return NULL;
	}
	return e;
}
