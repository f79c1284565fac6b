/* SPDX-License-Identifier: MIT */
/*
 * The vIOMMU family's objects, shared by viommu.c and eventq.c (see viommu.c for the design).
 */
#ifndef UIOMMU_IOMMUFD_VIOMMU_H
#define UIOMMU_IOMMUFD_VIOMMU_H

#include "iommu/iommufd_driver.h"
#include "iommufd/iommufd_private.h"

struct iommufd_hw_queue;
struct iommufd_veventq;

struct iommufd_viommu {
	struct iommufd_object obj;
	struct iommufd_ctx *ictx;          /* constant */
	struct iommufd_hwpt_paging *hwpt;  /* the parent; a users reference; constant */
	uint32_t type;                     /* constant */
	struct iommu_viommu *drv;          /* the driver's part (iommufd_driver.h); owned; constant */
	/*
	 * The driver's mmap region (our mapping) lent by iommufd_viommu_alloc_mmap(), or NULL; set
	 * at most once, during the driver's init, before publication; then constant.
	 */
	void *region;
	int region_fd;                     /* its memfd (mmap.c) */
	size_t region_len;
	/*
	 * Protects vdevs and veventqs; order: after idev->lock, before the driver's own locks
	 * (its vdevice_alloc and vdevice_destroy run under it).
	 */
	struct uiommu_mutex lock;
	struct iommufd_vdevice *vdevs;     /* linked by next */
	struct iommufd_veventq *veventqs;  /* linked by next */
};

struct iommufd_vdevice {
	struct iommufd_object obj;
	struct iommufd_viommu *viommu;         /* a users reference; constant */
	_Atomic(struct iommufd_device *) idev; /* a users reference while set; see viommu.c */
	uint64_t virt_id;                      /* constant */
	/* The driver's part, or NULL (none, or gone with the link to idev); viommu->lock. */
	struct iommu_vdevice *drv;
	struct iommufd_vdevice *next;          /* viommu->lock */
};

/* The HW-queue services lent to drivers (hw_queue.c): a users reference of one on the other. */
void iommufd_hw_queue_depend_obj(struct iommu_hw_queue *dependent,
				 struct iommu_hw_queue *depended);
void iommufd_hw_queue_undepend_obj(struct iommu_hw_queue *dependent,
				   struct iommu_hw_queue *depended);

#endif
