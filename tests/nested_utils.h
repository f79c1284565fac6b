/* SPDX-License-Identifier: MIT */
/*
 * Thin wrappers around the ioctls of nested HWPTs and the vIOMMU family, shared by
 * test_nested.c, test_viommu.c and test_hw_queue.c, on top of iommufd_utils.h. Each returns the ioctl's result (0, or -1 with errno).
 */
#ifndef UIOMMU_TESTS_NESTED_UTILS_H
#define UIOMMU_TESTS_NESTED_UTILS_H

#include <fcntl.h>
#include <stdint.h>

#include "iommufd_utils.h"

static inline int mock_replace(int fd, uint32_t stdev, uint32_t pt)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, .id = stdev,
		.mock_domain_replace = { .pt_id = pt },
	};

	return ioc(fd, IOMMU_TEST_CMD, &cmd);
}

static inline int hwpt_alloc_data(int fd, uint32_t dev, uint32_t pt, uint32_t flags,
				  uint32_t type, const void *data, uint32_t len, uint32_t *out)
{
	struct iommu_hwpt_alloc cmd = {
		.size = sizeof(cmd), .flags = flags, .dev_id = dev, .pt_id = pt,
		.data_type = type, .data_len = len, .data_uptr = (uintptr_t)data,
	};
	int rc = ioc(fd, IOMMU_HWPT_ALLOC, &cmd);

	if (!rc && out)
		*out = cmd.out_hwpt_id;
	return rc;
}

static inline int parent_alloc(int fd, uint32_t dev, uint32_t ioas, uint32_t *out)
{
	return hwpt_alloc_data(fd, dev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, 0, NULL, 0, out);
}

static inline int nested_alloc(int fd, uint32_t dev, uint32_t pt, uint32_t iotlb, uint32_t *out)
{
	struct iommu_hwpt_selftest data = { .iotlb = iotlb };

	return hwpt_alloc_data(fd, dev, pt, 0, IOMMU_HWPT_DATA_SELFTEST, &data, sizeof(data), out);
}

static inline int invalidate(int fd, uint32_t id, const void *reqs, uint32_t type, uint32_t len,
			     uint32_t *num)
{
	struct iommu_hwpt_invalidate cmd = {
		.size = sizeof(cmd), .hwpt_id = id, .data_uptr = (uintptr_t)reqs,
		.data_type = type, .entry_len = len, .entry_num = *num,
	};
	int rc = ioc(fd, IOMMU_HWPT_INVALIDATE, &cmd);

	*num = cmd.entry_num;
	return rc;
}

static inline int check_iotlb(int fd, uint32_t hwpt, uint32_t id, uint32_t val)
{
	struct iommu_test_cmd cmd = { .size = sizeof(cmd), .op = IOMMU_TEST_OP_MD_CHECK_IOTLB,
				      .id = hwpt, .check_iotlb = { .id = id, .iotlb = val } };

	return ioc(fd, IOMMU_TEST_CMD, &cmd);
}

static inline int check_dev_cache(int fd, uint32_t idev, uint32_t id, uint32_t val)
{
	struct iommu_test_cmd cmd = { .size = sizeof(cmd), .op = IOMMU_TEST_OP_DEV_CHECK_CACHE,
				      .id = idev, .check_dev_cache = { .id = id, .cache = val } };

	return ioc(fd, IOMMU_TEST_CMD, &cmd);
}

static inline int viommu_alloc(int fd, uint32_t dev, uint32_t hwpt, uint32_t type, void *data,
			       uint32_t len, uint32_t *out)
{
	struct iommu_viommu_alloc cmd = {
		.size = sizeof(cmd), .type = type, .dev_id = dev, .hwpt_id = hwpt,
		.data_len = len, .data_uptr = (uintptr_t)data,
	};
	int rc = ioc(fd, IOMMU_VIOMMU_ALLOC, &cmd);

	if (!rc && out)
		*out = cmd.out_viommu_id;
	return rc;
}

static inline int vdevice_alloc(int fd, uint32_t viommu, uint32_t dev, uint64_t virt_id,
				uint32_t *out)
{
	struct iommu_vdevice_alloc cmd = { .size = sizeof(cmd), .viommu_id = viommu,
					   .dev_id = dev, .virt_id = virt_id };
	int rc = ioc(fd, IOMMU_VDEVICE_ALLOC, &cmd);

	if (!rc && out)
		*out = cmd.out_vdevice_id;
	return rc;
}

static inline int veventq_alloc(int fd, uint32_t viommu, uint32_t type, uint32_t depth,
				uint32_t *id, int *efd)
{
	struct iommu_veventq_alloc cmd = { .size = sizeof(cmd), .viommu_id = viommu,
					   .type = type, .veventq_depth = depth };
	int rc = ioc(fd, IOMMU_VEVENTQ_ALLOC, &cmd);

	if (!rc) {
		if (id)
			*id = cmd.out_veventq_id;
		if (efd)
			*efd = cmd.out_veventq_fd;
	}
	return rc;
}

static inline int trigger_vevent(int fd, uint32_t idev)
{
	struct iommu_test_cmd cmd = { .size = sizeof(cmd), .op = IOMMU_TEST_OP_TRIGGER_VEVENT,
				      .trigger_vevent = { .dev_id = idev } };

	return ioc(fd, IOMMU_TEST_CMD, &cmd);
}

#endif
