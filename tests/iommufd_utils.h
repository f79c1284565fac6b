/* SPDX-License-Identifier: MIT */
/*
 * Helpers the ABI tests of devices and page tables share: a 1 MiB buffer (1 MiB aligned,
 * faulted in) and one-line wrappers of the ioctls and test ops they all use. Every function
 * returns what uiommu_ioctl() does (0, or -1 with errno) unless it says otherwise.
 */
#ifndef UIOMMU_TESTS_IOMMUFD_UTILS_H
#define UIOMMU_TESTS_IOMMUFD_UTILS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"
#include "uiommu_test.h"

#define __U __attribute__((unused))

#define BUF_LEN (1ull << 20)
#define RW (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)

static char *buf; /* BUF_LEN, 1 MiB aligned, faulted in */
static uint64_t PS;

static void __attribute__((constructor)) init_buf(void)
{
	char *p = mmap(NULL, 2 * BUF_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);

	if (p == MAP_FAILED)
		abort();
	buf = (char *)(((uintptr_t)p + BUF_LEN - 1) & ~(uintptr_t)(BUF_LEN - 1));
	memset(buf, 0x5a, BUF_LEN);
	PS = (uint64_t)sysconf(_SC_PAGESIZE);
}

__U static int map_fixed(int fd, uint32_t ioas, uint64_t iova, const void *va, uint64_t len)
{
	struct iommu_ioas_map cmd = {
		.size = sizeof(cmd), .flags = RW | IOMMU_IOAS_MAP_FIXED_IOVA, .ioas_id = ioas,
		.user_va = (uintptr_t)va, .length = len, .iova = iova,
	};

	return ioc(fd, IOMMU_IOAS_MAP, &cmd);
}

__U static int unmap(int fd, uint32_t ioas, uint64_t iova, uint64_t len)
{
	struct iommu_ioas_unmap cmd = {
		.size = sizeof(cmd), .ioas_id = ioas, .iova = iova, .length = len,
	};

	return ioc(fd, IOMMU_IOAS_UNMAP, &cmd);
}

__U static int mock_domain(int fd, uint32_t pt, uint32_t *stdev, uint32_t *hwpt, uint32_t *idev)
{
	struct iommu_test_cmd cmd = { .size = sizeof(cmd), .op = IOMMU_TEST_OP_MOCK_DOMAIN,
				      .id = pt };
	int rc = ioc(fd, IOMMU_TEST_CMD, &cmd);

	if (!rc) {
		if (stdev)
			*stdev = cmd.mock_domain.out_stdev_id;
		if (hwpt)
			*hwpt = cmd.mock_domain.out_hwpt_id;
		if (idev)
			*idev = cmd.mock_domain.out_idev_id;
	}
	return rc;
}

__U static int check_refs(int fd, const void *va, uint64_t len, uint32_t refs)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_MD_CHECK_REFS,
		.check_refs = { .length = len, .uptr = (uintptr_t)va, .refs = refs },
	};

	return ioc(fd, IOMMU_TEST_CMD, &cmd);
}

#endif
