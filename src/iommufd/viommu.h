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
	void *region;                      /* the driver's mmap region (our mapping), or NULL */
	int region_fd;                     /* its memfd (mmap.c); constant */
	size_t region_len;
	struct uiommu_mutex lock;          /* protects vdevs, veventqs, hw_queues; after idev->lock */
	struct iommufd_vdevice *vdevs;     /* linked by next */
	struct iommufd_veventq *veventqs;  /* linked by next */
	struct iommufd_hw_queue *hw_queues[IOMMU_TEST_HW_QUEUE_MAX]; /* by index (hw_queue.c) */
};

struct iommufd_vdevice {
	struct iommufd_object obj;
	struct iommufd_viommu *viommu;         /* a users reference; constant */
	_Atomic(struct iommufd_device *) idev; /* a users reference while set; see viommu.c */
	uint64_t virt_id;                      /* constant */
	struct iommufd_vdevice *next;          /* viommu->lock */
};

#endif
