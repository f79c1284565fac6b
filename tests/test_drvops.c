// SPDX-License-Identifier: MIT
/*
 * iommufd reaches drivers only through their ops (docs/design.md): what a driver without the
 * nesting and vIOMMU ops answers, and the test command present exactly when the build has it
 * (meson option iommufd_test, the kernel's CONFIG_IOMMUFD_TEST). Runs in both builds.
 *
 * The device is a function of the embedded default machine (vfio1, 0000:03:00.0), behind the
 * machine's mock driver (src/drivers/mock/mock.c): paging domains, no nesting parent, no
 * domain_alloc_nested, no vIOMMU, so the core answers for it as the kernel's does for such a
 * driver.
 */
#include <errno.h>
#include <fcntl.h>

#include "harness.h"
#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"
#include "uiommu/vfio_compat.h"
#include "uiommu_test.h"

struct bound {
	int fd;          /* the iommufd */
	int vfd;         /* vfio1, bound to fd */
	uint32_t devid;
	uint32_t ioas;
};

static int bound_open(struct bound *b)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };

	b->fd = uiommu_open(O_RDWR);
	b->vfd = uiommu_vfio_open("/dev/vfio/devices/vfio1", O_RDWR);
	if (b->fd < 0 || b->vfd < 0)
		return -1;
	bind.iommufd = b->fd;
	if (uiommu_ioctl(b->vfd, VFIO_DEVICE_BIND_IOMMUFD, &bind))
		return -1;
	b->devid = bind.out_devid;
	b->ioas = ioas_alloc(b->fd);
	return b->ioas ? 0 : -1;
}

static void bound_close(struct bound *b)
{
	uiommu_close(b->vfd);
	uiommu_close(b->fd);
}

static int hwpt_alloc(struct bound *b, uint32_t pt_id, uint32_t flags, uint32_t data_type,
		      void *data, uint32_t len, uint32_t *out)
{
	struct iommu_hwpt_alloc cmd = {
		.size = sizeof(cmd), .flags = flags, .dev_id = b->devid, .pt_id = pt_id,
		.data_type = data_type, .data_len = len, .data_uptr = (uintptr_t)data,
	};
	int rc = ioc(b->fd, IOMMU_HWPT_ALLOC, &cmd);

	*out = cmd.out_hwpt_id;
	return rc;
}

/*
 * This driver makes no nesting parent, and a nested HWPT needs domain_alloc_nested: the core
 * asks for the op before it judges the parent (a plain HWPT would be EINVAL otherwise).
 */
TEST(no_domain_alloc_nested_is_eopnotsupp)
{
	uint32_t plain, nested = 0, data[6] = { 0 };
	struct bound b;

	ASSERT_EQ(0, bound_open(&b));
	ASSERT_ERRNO(EOPNOTSUPP, hwpt_alloc(&b, b.ioas, IOMMU_HWPT_ALLOC_NEST_PARENT,
					    IOMMU_HWPT_DATA_NONE, NULL, 0, &plain));
	ASSERT_EQ(0, hwpt_alloc(&b, b.ioas, 0, IOMMU_HWPT_DATA_NONE, NULL, 0, &plain));
	ASSERT_ERRNO(EOPNOTSUPP, hwpt_alloc(&b, plain, 0, IOMMU_HWPT_DATA_VTD_S1, data,
					    sizeof(data), &nested));
	ASSERT_ERRNO(EOPNOTSUPP, hwpt_alloc(&b, plain, 0, IOMMU_HWPT_DATA_ARM_SMMUV3, data, 16,
					    &nested));
	/* The data is the driver's to read: without the op, a bad pointer is never followed. */
	ASSERT_ERRNO(EOPNOTSUPP, hwpt_alloc(&b, plain, 0, IOMMU_HWPT_DATA_VTD_S1, (void *)8, 24,
					    &nested));
	ASSERT_EQ(0u, nested);
	ASSERT_EQ(0, destroy(b.fd, plain));
	bound_close(&b);
}

/* No viommu_alloc: every vIOMMU type is EOPNOTSUPP, before the HWPT is even looked up. */
TEST(no_viommu_ops_is_eopnotsupp)
{
	struct iommu_viommu_alloc cmd = {
		.size = sizeof(cmd), .type = IOMMU_VIOMMU_TYPE_ARM_SMMUV3,
	};
	uint32_t plain;
	struct bound b;

	ASSERT_EQ(0, bound_open(&b));
	ASSERT_EQ(0, hwpt_alloc(&b, b.ioas, 0, IOMMU_HWPT_DATA_NONE, NULL, 0, &plain));
	cmd.dev_id = b.devid;
	/* Not a nesting parent: with the ops that would be EINVAL; without, EOPNOTSUPP first. */
	cmd.hwpt_id = plain;
	ASSERT_ERRNO(EOPNOTSUPP, ioc(b.fd, IOMMU_VIOMMU_ALLOC, &cmd));
	cmd.hwpt_id = 0; /* no such object: still the type's answer */
	ASSERT_ERRNO(EOPNOTSUPP, ioc(b.fd, IOMMU_VIOMMU_ALLOC, &cmd));
	cmd.type = IOMMU_VIOMMU_TYPE_SELFTEST;
	ASSERT_ERRNO(EOPNOTSUPP, ioc(b.fd, IOMMU_VIOMMU_ALLOC, &cmd));
	/* The core's own checks still come first. */
	cmd.dev_id = 0;
	ASSERT_ERRNO(ENOENT, ioc(b.fd, IOMMU_VIOMMU_ALLOC, &cmd));
	ASSERT_EQ(0, destroy(b.fd, plain));
	bound_close(&b);
}

/* Invalidation of a paging HWPT: neither nested nor a vIOMMU, EINVAL, nothing done. */
TEST(invalidate_paging_hwpt_is_einval)
{
	uint32_t entry[6] = { 0 }, hwpt;
	struct iommu_hwpt_invalidate inv = {
		.size = sizeof(inv), .data_uptr = (uintptr_t)entry, .entry_len = sizeof(entry),
		.entry_num = 1,
	};
	struct bound b;

	ASSERT_EQ(0, bound_open(&b));
	ASSERT_EQ(0, hwpt_alloc(&b, b.ioas, 0, IOMMU_HWPT_DATA_NONE, NULL, 0, &hwpt));
	inv.hwpt_id = hwpt;
	ASSERT_ERRNO(EINVAL, ioc(b.fd, IOMMU_HWPT_INVALIDATE, &inv));
	ASSERT_EQ(0u, inv.entry_num);
	ASSERT_EQ(0, destroy(b.fd, hwpt));
	bound_close(&b);
}

/* IOMMU_TEST_CMD exists only with the option: an unknown op is the command's EOPNOTSUPP. */
TEST(test_cmd_only_with_iommufd_test)
{
	struct iommu_test_cmd cmd = { .size = sizeof(cmd), .op = 0x7fff };
	int fd = uiommu_open(O_RDWR);

	ASSERT_TRUE(fd >= 0);
#ifdef UIOMMU_IOMMUFD_TEST
	ASSERT_ERRNO(EOPNOTSUPP, ioc(fd, IOMMU_TEST_CMD, &cmd));
#else
	ASSERT_ERRNO(ENOTTY, ioc(fd, IOMMU_TEST_CMD, &cmd));
#endif
	uiommu_close(fd);
}

TEST_HARNESS_MAIN
