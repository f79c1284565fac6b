// SPDX-License-Identifier: MIT
/*
 * PASID attach, replace and detach through iommufd's test ops (PASID_ATTACH, PASID_REPLACE,
 * PASID_DETACH, PASID_CHECK_HWPT) on the selftest mock, black box: every success path and every
 * errno the kernel's rules give (iommufd-abi.md, "PASID rules"), and the EBUSY of a second RID
 * attach. Each case: a PASID-capable mock device (20-bit PASIDs) and one without PASIDs, both
 * attached at the RID to an IOAS.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "iommufd_utils.h"
#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"

#define PASID_DEV_FLAG 4u /* MOCK_FLAGS_DEVICE_PASID */
#define PASID_FAKE_ERROR 1024u

static int mock_domain_flags(int fd, uint32_t pt, uint32_t flags, uint32_t *stdev,
			     uint32_t *hwpt, uint32_t *idev)
{
	struct iommu_test_cmd cmd = { .size = sizeof(cmd), .op = IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
				      .id = pt, .mock_domain_flags = { .dev_flags = flags } };
	int rc = ioc(fd, IOMMU_TEST_CMD, &cmd);

	if (!rc) {
		*stdev = cmd.mock_domain_flags.out_stdev_id;
		*hwpt = cmd.mock_domain_flags.out_hwpt_id;
		*idev = cmd.mock_domain_flags.out_idev_id;
	}
	return rc;
}

static int hwpt_alloc(int fd, uint32_t dev, uint32_t pt, uint32_t flags, uint32_t *out)
{
	struct iommu_hwpt_alloc cmd = { .size = sizeof(cmd), .flags = flags, .dev_id = dev,
					.pt_id = pt };
	int rc = ioc(fd, IOMMU_HWPT_ALLOC, &cmd);

	if (!rc)
		*out = cmd.out_hwpt_id;
	return rc;
}

static int pasid_op(int fd, uint32_t op, uint32_t stdev, uint32_t pasid, uint32_t *pt)
{
	struct iommu_test_cmd cmd = { .size = sizeof(cmd), .op = op, .id = stdev };
	int rc;

	/* pasid and pt_id sit at the same offsets in all four forms. */
	cmd.pasid_attach.pasid = pasid;
	cmd.pasid_attach.pt_id = pt ? *pt : 0;
	rc = ioc(fd, IOMMU_TEST_CMD, &cmd);
	if (!rc && pt)
		*pt = cmd.pasid_attach.pt_id;
	return rc;
}

static int pasid_attach(int fd, uint32_t stdev, uint32_t pasid, uint32_t pt)
{
	return pasid_op(fd, IOMMU_TEST_OP_PASID_ATTACH, stdev, pasid, &pt);
}

static int pasid_replace(int fd, uint32_t stdev, uint32_t pasid, uint32_t pt)
{
	return pasid_op(fd, IOMMU_TEST_OP_PASID_REPLACE, stdev, pasid, &pt);
}

static int pasid_detach(int fd, uint32_t stdev, uint32_t pasid)
{
	return pasid_op(fd, IOMMU_TEST_OP_PASID_DETACH, stdev, pasid, NULL);
}

static int pasid_check(int fd, uint32_t stdev, uint32_t pasid, uint32_t hwpt)
{
	return pasid_op(fd, IOMMU_TEST_OP_PASID_CHECK_HWPT, stdev, pasid, &hwpt);
}

static int rid_replace(int fd, uint32_t stdev, uint32_t pt)
{
	struct iommu_test_cmd cmd = { .size = sizeof(cmd), .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE,
				      .id = stdev, .mock_domain_replace = { .pt_id = pt } };

	return ioc(fd, IOMMU_TEST_CMD, &cmd);
}

FIXTURE(pasid) {
	int fd;
	uint32_t ioas;
	uint32_t stdev, idev, rid_hwpt;    /* PASID-capable */
	uint32_t stdev_np, idev_np;        /* no PASIDs */
	uint32_t s2, s2b, plain, parent, nested; /* HWPTs */
};

FIXTURE_SETUP(pasid)
{
	uint32_t hwpt;

	self->fd = uiommu_open(O_RDWR);
	ASSERT_GE(self->fd, 0);
	self->ioas = ioas_alloc(self->fd);
	ASSERT_EQ(0, mock_domain_flags(self->fd, self->ioas, PASID_DEV_FLAG, &self->stdev,
				       &self->rid_hwpt, &self->idev));
	ASSERT_EQ(0, mock_domain_flags(self->fd, self->ioas, 0, &self->stdev_np, &hwpt,
				       &self->idev_np));
	ASSERT_EQ(0, hwpt_alloc(self->fd, self->idev, self->ioas, IOMMU_HWPT_ALLOC_PASID,
				&self->s2));
	ASSERT_EQ(0, hwpt_alloc(self->fd, self->idev, self->ioas, IOMMU_HWPT_ALLOC_PASID,
				&self->s2b));
	ASSERT_EQ(0, hwpt_alloc(self->fd, self->idev, self->ioas, 0, &self->plain));
	ASSERT_EQ(0, hwpt_alloc(self->fd, self->idev, self->ioas,
				IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_PASID,
				&self->parent));
	{
		uint32_t data[2] = { 0xbadbeef, 0 };
		struct iommu_hwpt_alloc cmd = {
			.size = sizeof(cmd), .flags = IOMMU_HWPT_ALLOC_PASID, .dev_id = self->idev,
			.pt_id = self->parent, .data_type = IOMMU_HWPT_DATA_SELFTEST,
			.data_len = sizeof(data), .data_uptr = (uintptr_t)data,
		};

		ASSERT_EQ(0, ioc(self->fd, IOMMU_HWPT_ALLOC, &cmd));
		self->nested = cmd.out_hwpt_id;
	}
	/* The RID goes on a PASID-compatible HWPT so that PASIDs may be attached. */
	ASSERT_EQ(0, rid_replace(self->fd, self->stdev, self->s2));
}

FIXTURE_TEARDOWN(pasid)
{
	int fd;

	uiommu_close(self->fd);
	fd = uiommu_open(O_RDWR);
	ASSERT_EQ(0, check_refs(fd, buf, BUF_LEN, 0));
	uiommu_close(fd);
}

TEST_F(pasid, attach_check_replace_detach)
{
	/* Nothing there yet. */
	ASSERT_EQ(0, pasid_check(self->fd, self->stdev, 100, 0));
	ASSERT_ERRNO(EINVAL, pasid_check(self->fd, self->stdev, 100, self->s2));

	ASSERT_EQ(0, pasid_attach(self->fd, self->stdev, 100, self->s2));
	ASSERT_EQ(0, pasid_check(self->fd, self->stdev, 100, self->s2));
	ASSERT_ERRNO(EINVAL, pasid_check(self->fd, self->stdev, 100, 0));
	ASSERT_ERRNO(EINVAL, pasid_check(self->fd, self->stdev, 100, self->s2b));
	/* The attachment holds the HWPT. */
	ASSERT_ERRNO(EBUSY, destroy(self->fd, self->s2));

	/* Attach never overwrites: the same HWPT or another. */
	ASSERT_ERRNO(EBUSY, pasid_attach(self->fd, self->stdev, 100, self->s2));
	ASSERT_ERRNO(EBUSY, pasid_attach(self->fd, self->stdev, 100, self->nested));

	/* Replace: to a nested HWPT, to the same one (no-op), back. */
	ASSERT_EQ(0, pasid_replace(self->fd, self->stdev, 100, self->nested));
	ASSERT_EQ(0, pasid_check(self->fd, self->stdev, 100, self->nested));
	ASSERT_EQ(0, pasid_replace(self->fd, self->stdev, 100, self->nested));
	ASSERT_EQ(0, pasid_replace(self->fd, self->stdev, 100, self->s2));
	ASSERT_EQ(0, pasid_check(self->fd, self->stdev, 100, self->s2));

	/* A second PASID, independent of the first. */
	ASSERT_EQ(0, pasid_attach(self->fd, self->stdev, 200, self->nested));
	ASSERT_EQ(0, pasid_check(self->fd, self->stdev, 200, self->nested));
	ASSERT_EQ(0, pasid_detach(self->fd, self->stdev, 200));
	ASSERT_EQ(0, pasid_check(self->fd, self->stdev, 200, 0));
	ASSERT_EQ(0, pasid_check(self->fd, self->stdev, 100, self->s2));

	ASSERT_EQ(0, pasid_detach(self->fd, self->stdev, 100));
	ASSERT_EQ(0, pasid_check(self->fd, self->stdev, 100, 0));
	/* Detach never fails, attached or not. */
	ASSERT_EQ(0, pasid_detach(self->fd, self->stdev, 100));
	ASSERT_EQ(0, pasid_detach(self->fd, self->stdev, 12345));
	/* Nothing holds the nested HWPT any more. */
	ASSERT_EQ(0, destroy(self->fd, self->nested));
}

TEST_F(pasid, errnos)
{
	/* Not PASID-compatible: a plain HWPT, an IOAS (its automatic HWPT), a device without. */
	ASSERT_ERRNO(EINVAL, pasid_attach(self->fd, self->stdev, 100, self->plain));
	ASSERT_ERRNO(EINVAL, pasid_attach(self->fd, self->stdev, 100, self->ioas));
	ASSERT_ERRNO(EINVAL, pasid_attach(self->fd, self->stdev_np, 100, self->s2));
	/* PASID 0 is the RID, attached already (the second RID attach of an idev: EBUSY). */
	ASSERT_ERRNO(EBUSY, pasid_attach(self->fd, self->stdev, 0, self->s2));
	/* PASIDs go up to 2^20 - 1. */
	ASSERT_ERRNO(EINVAL, pasid_attach(self->fd, self->stdev, 1u << 20, self->s2));
	ASSERT_EQ(0, pasid_attach(self->fd, self->stdev, (1u << 20) - 1, self->s2));
	ASSERT_EQ(0, pasid_detach(self->fd, self->stdev, (1u << 20) - 1));
	/* Objects that are not there or not page tables. */
	ASSERT_ERRNO(ENOENT, pasid_attach(self->fd, self->stdev, 100, 99999));
	ASSERT_ERRNO(EINVAL, pasid_attach(self->fd, self->stdev, 100, self->idev));
	ASSERT_ERRNO(ENOENT, pasid_attach(self->fd, 99999, 100, self->s2));
	ASSERT_ERRNO(ENOENT, pasid_attach(self->fd, self->idev, 100, self->s2));
	ASSERT_ERRNO(ENOENT, pasid_check(self->fd, self->stdev, 100, 99999));
	/* Replace of a PASID that is not attached. */
	ASSERT_ERRNO(EINVAL, pasid_replace(self->fd, self->stdev, 100, self->s2));
	ASSERT_EQ(0, pasid_check(self->fd, self->stdev, 100, 0));

	/* While a PASID is attached, the RID stays PASID-compatible. */
	ASSERT_EQ(0, pasid_attach(self->fd, self->stdev, 100, self->s2));
	ASSERT_ERRNO(EINVAL, rid_replace(self->fd, self->stdev, self->plain));
	ASSERT_ERRNO(EINVAL, rid_replace(self->fd, self->stdev, self->ioas));
	ASSERT_EQ(0, rid_replace(self->fd, self->stdev, self->s2b));
	ASSERT_ERRNO(EINVAL, pasid_replace(self->fd, self->stdev, 100, self->plain));
	ASSERT_EQ(0, pasid_check(self->fd, self->stdev, 100, self->s2));
	ASSERT_EQ(0, pasid_detach(self->fd, self->stdev, 100));
	/* And the reverse: a RID on a plain HWPT admits no PASID. */
	ASSERT_EQ(0, rid_replace(self->fd, self->stdev, self->plain));
	ASSERT_ERRNO(EINVAL, pasid_attach(self->fd, self->stdev, 100, self->s2));
	ASSERT_EQ(0, pasid_check(self->fd, self->stdev, 100, 0));
}

TEST_F(pasid, failed_replace_keeps_the_old_hwpt)
{
	/* The mock fails every second non-blocking set on PASID 1024. */
	ASSERT_EQ(0, pasid_attach(self->fd, self->stdev, PASID_FAKE_ERROR, self->s2));
	ASSERT_ERRNO(ENOMEM, pasid_replace(self->fd, self->stdev, PASID_FAKE_ERROR, self->s2b));
	ASSERT_EQ(0, pasid_check(self->fd, self->stdev, PASID_FAKE_ERROR, self->s2));
	/* The third call succeeds. */
	ASSERT_EQ(0, pasid_replace(self->fd, self->stdev, PASID_FAKE_ERROR, self->s2b));
	ASSERT_EQ(0, pasid_check(self->fd, self->stdev, PASID_FAKE_ERROR, self->s2b));
	/* The old HWPT was let go, the new one is held. */
	ASSERT_ERRNO(EBUSY, destroy(self->fd, self->s2b));
	ASSERT_EQ(0, pasid_detach(self->fd, self->stdev, PASID_FAKE_ERROR));
	ASSERT_EQ(0, pasid_check(self->fd, self->stdev, PASID_FAKE_ERROR, 0));
	/* The blocked domain disarmed the trick: a fresh attach works. */
	ASSERT_EQ(0, pasid_attach(self->fd, self->stdev, PASID_FAKE_ERROR, self->s2b));
	ASSERT_EQ(0, pasid_detach(self->fd, self->stdev, PASID_FAKE_ERROR));
	ASSERT_EQ(0, destroy(self->fd, self->s2b));
}

TEST_F(pasid, dirty_tracking_hwpt_and_no_dirty_device)
{
	uint32_t stdev, hwpt, idev, dirty;

	/* A PASID-capable device without dirty tracking. */
	ASSERT_EQ(0, mock_domain_flags(self->fd, self->ioas, PASID_DEV_FLAG | 1u, &stdev, &hwpt,
				       &idev));
	ASSERT_EQ(0, rid_replace(self->fd, stdev, self->s2));
	ASSERT_EQ(0, hwpt_alloc(self->fd, self->idev, self->ioas,
				IOMMU_HWPT_ALLOC_PASID | IOMMU_HWPT_ALLOC_DIRTY_TRACKING, &dirty));
	ASSERT_ERRNO(EINVAL, pasid_attach(self->fd, stdev, 100, dirty));
	ASSERT_EQ(0, pasid_check(self->fd, stdev, 100, 0));
	ASSERT_EQ(0, pasid_attach(self->fd, self->stdev, 100, dirty));
	ASSERT_EQ(0, pasid_check(self->fd, self->stdev, 100, dirty));
}

TEST_F(pasid, destroying_the_device_detaches_its_pasids)
{
	ASSERT_EQ(0, pasid_attach(self->fd, self->stdev, 100, self->s2b));
	ASSERT_EQ(0, pasid_attach(self->fd, self->stdev, 101, self->nested));
	ASSERT_ERRNO(EBUSY, destroy(self->fd, self->s2b));
	ASSERT_EQ(0, destroy(self->fd, self->stdev));
	/* Every reference the attachments held is gone with the device. */
	ASSERT_EQ(0, destroy(self->fd, self->nested));
	ASSERT_EQ(0, destroy(self->fd, self->s2b));
}

TEST_F(pasid, rid_replace_moves_the_reference)
{
	/*
	 * The second RID attach of one idev (EBUSY) is PASID_ATTACH with PASID 0, in the errnos
	 * case; MOCK_DOMAIN attaches a fresh device and the VFIO cdev replaces.
	 */
	ASSERT_EQ(0, rid_replace(self->fd, self->stdev, self->plain));
	ASSERT_EQ(0, destroy(self->fd, self->s2));
	ASSERT_ERRNO(EBUSY, destroy(self->fd, self->plain));
}

TEST_HARNESS_MAIN
