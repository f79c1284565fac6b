/* SPDX-License-Identifier: MIT */
/*
 * The iommufd calls every ABI test makes, written once: ioc(), ioas_alloc(), ioas_alloc_id(),
 * destroy() and viommu_with_region(). They return what the ioctl does (0, or -1 with errno) unless they say
 * otherwise.
 *
 * The calls go through uiommu_ioctl(); a program run under uiommu-run, which tests the drop-in
 * path through libc, defines TEST_IOCTL as ioctl before including this header.
 */
#ifndef UIOMMU_TESTS_UIOMMU_TEST_H
#define UIOMMU_TESTS_UIOMMU_TEST_H

#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/types.h>
#include <sys/wait.h>

#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"

#ifndef TEST_IOCTL
#define TEST_IOCTL uiommu_ioctl
#endif

/*
 * First in a case that drives IOMMU_TEST_CMD (the harness's SKIP): such a case is skipped in a
 * build without the command (meson option iommufd_test off, the kernel's
 * CONFIG_IOMMUFD_TEST=n), where it answers ENOTTY (test_drvops checks that).
 */
#ifdef UIOMMU_IOMMUFD_TEST
#define NEEDS_IOMMUFD_TEST() do { } while (0)
#else
#define NEEDS_IOMMUFD_TEST() SKIP("IOMMU_TEST_CMD is not built (meson option iommufd_test)")
#endif

__attribute__((unused)) static int ioc(int fd, unsigned long req, void *arg)
{
	return TEST_IOCTL(fd, req, arg);
}

/* IOAS_ALLOC: 0 with *id set, or -1 with errno. */
__attribute__((unused)) static int ioas_alloc_id(int fd, uint32_t *id)
{
	struct iommu_ioas_alloc cmd = { .size = sizeof(cmd) };
	int rc = ioc(fd, IOMMU_IOAS_ALLOC, &cmd);

	if (!rc)
		*id = cmd.out_ioas_id;
	return rc;
}

/* IOAS_ALLOC where it cannot fail: the new ID, or 0 (never an ID) if it did. */
__attribute__((unused)) static uint32_t ioas_alloc(int fd)
{
	uint32_t id;

	return ioas_alloc_id(fd, &id) ? 0 : id;
}

__attribute__((unused)) static int destroy(int fd, uint32_t id)
{
	struct iommu_destroy cmd = { .size = sizeof(cmd), .id = id };

	return ioc(fd, IOMMU_DESTROY, &cmd);
}

/*
 * The selftest vIOMMU with its mmap region (the driver writes @data's in_data into it): a mock
 * device on a new IOAS, a NEST_PARENT HWPT, the vIOMMU; *@data gets the region's offset and
 * length. 0 with *@viommu set, or -1 with errno.
 */
__attribute__((unused)) static int viommu_with_region(int fd, struct iommu_viommu_selftest *data,
						      uint32_t *viommu)
{
	struct iommu_test_cmd md = { .size = sizeof(md), .op = IOMMU_TEST_OP_MOCK_DOMAIN };
	struct iommu_hwpt_alloc hwpt = { .size = sizeof(hwpt),
					 .flags = IOMMU_HWPT_ALLOC_NEST_PARENT };
	struct iommu_viommu_alloc va = { .size = sizeof(va), .type = IOMMU_VIOMMU_TYPE_SELFTEST,
					 .data_len = sizeof(*data),
					 .data_uptr = (uintptr_t)data };

	md.id = ioas_alloc(fd);
	if (ioc(fd, IOMMU_TEST_CMD, &md))
		return -1;
	hwpt.dev_id = md.mock_domain.out_idev_id;
	hwpt.pt_id = md.id;
	if (ioc(fd, IOMMU_HWPT_ALLOC, &hwpt))
		return -1;
	va.dev_id = md.mock_domain.out_idev_id;
	va.hwpt_id = hwpt.out_hwpt_id;
	if (ioc(fd, IOMMU_VIOMMU_ALLOC, &va))
		return -1;
	*viommu = va.out_viommu_id;
	return 0;
}

/* How child @pid ended, as a shell says it: its exit status, 128 + the signal that killed it,
 * or -1 when waitpid() fails. */
static inline int test_child_wait(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

#endif
