// SPDX-License-Identifier: MIT
/*
 * Nested HWPTs through the ABI: HWPT_ALLOC on a NEST_PARENT paging HWPT with the selftest
 * mock's data, its errnos, the parent's users reference, attaching a device, IOMMU_HWPT_INVALIDATE
 * with its entry accounting and bounds, MD_CHECK_IOTLB, and a fault-injection sweep over the
 * nested allocation (over the parent and over a vIOMMU). Written from the ABI description; no kernel code is used.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "nested_utils.h"

FIXTURE(nested) {
	int fd;
	uint32_t ioas, stdev, idev, parent;
};

FIXTURE_SETUP(nested)
{
	self->fd = uiommu_open(O_RDWR);
	ASSERT_GE(self->fd, 0);
	self->ioas = ioas_alloc(self->fd);
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, &self->stdev, NULL, &self->idev));
	ASSERT_EQ(0, parent_alloc(self->fd, self->idev, self->ioas, &self->parent));
}

FIXTURE_TEARDOWN(nested)
{
	uiommu_close(self->fd);
}

TEST_F(nested, alloc_errors)
{
	struct iommu_hwpt_selftest data = { .iotlb = IOMMU_TEST_IOTLB_DEFAULT };
	uint32_t plain, nested, nested2, auto_hwpt;

	ASSERT_EQ(0, hwpt_alloc_data(self->fd, self->idev, self->ioas, 0, 0, NULL, 0, &plain));
	/* DATA_NONE, a parent that is not NEST_PARENT, an automatic one: EINVAL. */
	ASSERT_ERRNO(EINVAL, hwpt_alloc_data(self->fd, self->idev, self->parent, 0, 0, NULL, 0,
					     &nested));
	ASSERT_ERRNO(EINVAL, nested_alloc(self->fd, self->idev, plain, 0, &nested));
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, NULL, &auto_hwpt, NULL));
	ASSERT_ERRNO(EINVAL, nested_alloc(self->fd, self->idev, auto_hwpt, 0, &nested));
	/* Short data EINVAL, no data pointer EFAULT, another type EOPNOTSUPP. */
	ASSERT_ERRNO(EINVAL, hwpt_alloc_data(self->fd, self->idev, self->parent, 0,
					     IOMMU_HWPT_DATA_SELFTEST, &data, 1, &nested));
	ASSERT_ERRNO(EFAULT, hwpt_alloc_data(self->fd, self->idev, self->parent, 0,
					     IOMMU_HWPT_DATA_SELFTEST, NULL, sizeof(data),
					     &nested));
	ASSERT_ERRNO(EOPNOTSUPP, hwpt_alloc_data(self->fd, self->idev, self->parent, 0,
						 IOMMU_HWPT_DATA_VTD_S1, &data, sizeof(data),
						 &nested));
	/* Only the PASID flag goes with a nested HWPT. */
	ASSERT_ERRNO(EOPNOTSUPP, hwpt_alloc_data(self->fd, self->idev, self->parent,
						 IOMMU_HWPT_ALLOC_NEST_PARENT,
						 IOMMU_HWPT_DATA_SELFTEST, &data, sizeof(data),
						 &nested));
	ASSERT_ERRNO(EOPNOTSUPP, hwpt_alloc_data(self->fd, self->idev, self->parent,
						 IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
						 IOMMU_HWPT_DATA_SELFTEST, &data, sizeof(data),
						 &nested));
	ASSERT_EQ(0, hwpt_alloc_data(self->fd, self->idev, self->parent, IOMMU_HWPT_ALLOC_PASID,
				     IOMMU_HWPT_DATA_SELFTEST, &data, sizeof(data), &nested));
	/* The older 4-byte layout is enough. */
	ASSERT_EQ(0, hwpt_alloc_data(self->fd, self->idev, self->parent, 0,
				     IOMMU_HWPT_DATA_SELFTEST, &data, 4, &nested2));
	/* Nested on nested: EINVAL. */
	ASSERT_ERRNO(EINVAL, nested_alloc(self->fd, self->idev, nested, 0, &plain));
	ASSERT_ERRNO(ENOENT, nested_alloc(self->fd, 9999, self->parent, 0, &plain));
}

TEST_F(nested, iotlb_and_graph)
{
	uint32_t n1, n2, i, pt;

	ASSERT_EQ(0, nested_alloc(self->fd, self->idev, self->parent, IOMMU_TEST_IOTLB_DEFAULT,
				  &n1));
	ASSERT_EQ(0, nested_alloc(self->fd, self->idev, self->parent, 0x1234, &n2));
	for (i = 0; i != MOCK_NESTED_DOMAIN_IOTLB_NUM; i++) {
		ASSERT_EQ(0, check_iotlb(self->fd, n1, i, IOMMU_TEST_IOTLB_DEFAULT));
		ASSERT_EQ(0, check_iotlb(self->fd, n2, i, 0x1234));
	}
	ASSERT_ERRNO(EINVAL, check_iotlb(self->fd, n1, 0, 0x1234));
	ASSERT_ERRNO(EINVAL, check_iotlb(self->fd, n1, 4, IOMMU_TEST_IOTLB_DEFAULT));
	ASSERT_ERRNO(ENOENT, check_iotlb(self->fd, self->parent, 0, 0));

	/* The parent is held by its children; a child by its device. */
	ASSERT_ERRNO(EBUSY, destroy(self->fd, self->parent));
	ASSERT_EQ(0, mock_replace(self->fd, self->stdev, n1));
	ASSERT_ERRNO(EBUSY, destroy(self->fd, n1));
	ASSERT_EQ(0, mock_replace(self->fd, self->stdev, n2));
	ASSERT_EQ(0, destroy(self->fd, n1));
	ASSERT_ERRNO(EBUSY, destroy(self->fd, self->parent));
	pt = self->ioas;
	ASSERT_EQ(0, mock_replace(self->fd, self->stdev, pt));
	ASSERT_EQ(0, destroy(self->fd, n2));
	ASSERT_EQ(0, destroy(self->fd, self->parent));
}

TEST_F(nested, invalidate)
{
	struct iommu_hwpt_invalidate_selftest reqs[3];
	struct {
		struct iommu_hwpt_invalidate_selftest e;
		uint32_t tail;
	} big = { .e = { .iotlb_id = 2 }, .tail = 0 };
	uint32_t nested, num, i;

	ASSERT_EQ(0, nested_alloc(self->fd, self->idev, self->parent, IOMMU_TEST_IOTLB_DEFAULT,
				  &nested));
	memset(reqs, 0, sizeof(reqs));
	/* entry_num 0 only checks the type. */
	num = 0;
	ASSERT_EQ(0, invalidate(self->fd, nested, reqs, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
				sizeof(reqs[0]), &num));
	ASSERT_ERRNO(EINVAL, invalidate(self->fd, nested, reqs,
					IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID,
					sizeof(reqs[0]), &num));
	ASSERT_EQ(0u, num);
	/* Bounds and arguments. */
	num = 1;
	ASSERT_ERRNO(EINVAL, invalidate(self->fd, nested, NULL,
					IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, sizeof(reqs[0]),
					&num));
	num = 1;
	ASSERT_ERRNO(EINVAL, invalidate(self->fd, nested, reqs, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
					(uint32_t)sysconf(_SC_PAGESIZE) + 1, &num));
	ASSERT_EQ(0u, num);
	num = (1u << 19) + 1;
	ASSERT_ERRNO(EINVAL, invalidate(self->fd, nested, reqs,
					IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, sizeof(reqs[0]),
					&num));
	ASSERT_EQ(0u, num);
	/* The bounds hold only with entries: none, and nothing about them is looked at. */
	num = 0;
	ASSERT_EQ(0, invalidate(self->fd, nested, NULL, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
				(uint32_t)sysconf(_SC_PAGESIZE) + 1, &num));
	ASSERT_EQ(0, invalidate(self->fd, nested, NULL, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 0,
				&num));
	/* A page-long entry and the most entries are allowed; the count handled comes back. */
	{
		size_t pg = (size_t)sysconf(_SC_PAGESIZE);
		unsigned char *page = calloc(2, pg);

		ASSERT_TRUE(page != NULL);
		num = 1;
		ASSERT_ERRNO(EINVAL, invalidate(self->fd, nested, page,
						IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, (uint32_t)pg,
						&num));
		ASSERT_EQ(0u, num); /* longer than the mock's struct: entry by entry refuses it */
		free(page);
	}
	memset(reqs, 0, sizeof(reqs));
	reqs[1].iotlb_id = 4; /* out of range: the second entry stops the walk */
	num = 1u << 19;
	ASSERT_ERRNO(EINVAL, invalidate(self->fd, nested, reqs,
					IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, sizeof(reqs[0]),
					&num));
	ASSERT_EQ(1u, num);
	ASSERT_EQ(0, check_iotlb(self->fd, nested, 0, 0));
	ASSERT_EQ(0, check_iotlb(self->fd, nested, 1, IOMMU_TEST_IOTLB_DEFAULT));
	ASSERT_EQ(0, invalidate(self->fd, nested, reqs, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
				sizeof(reqs[0]), &(uint32_t){ 0 }));
	memset(reqs, 0, sizeof(reqs));
	num = 1;
	ASSERT_ERRNO(EINVAL, invalidate(self->fd, nested, reqs,
					IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 4, &num));
	ASSERT_EQ(0u, num);
	num = 1;
	ASSERT_ERRNO(EINVAL, invalidate(self->fd, self->parent, reqs,
					IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, sizeof(reqs[0]),
					&num));
	ASSERT_EQ(0u, num);
	num = 1;
	ASSERT_ERRNO(ENOENT, invalidate(self->fd, 9999, reqs,
					IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, sizeof(reqs[0]),
					&num));
	/*
	 * An entry longer than the mock's struct is EINVAL, zero tail or not: the nested domain
	 * copies entry by entry with the kernel's iommu_copy_struct_from_user_array(), which
	 * refuses user data longer than the kernel's struct. Nothing is invalidated.
	 */
	num = 1;
	ASSERT_ERRNO(EINVAL, invalidate(self->fd, nested, &big, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
					sizeof(big), &num));
	ASSERT_EQ(0u, num);
	ASSERT_EQ(0, check_iotlb(self->fd, nested, 2, IOMMU_TEST_IOTLB_DEFAULT));
	big.tail = 1;
	num = 1;
	ASSERT_ERRNO(EINVAL, invalidate(self->fd, nested, &big,
					IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, sizeof(big), &num));
	ASSERT_EQ(0u, num);

	/* The second entry fails: one done. Bad flags EOPNOTSUPP, bad index EINVAL. */
	reqs[0] = (struct iommu_hwpt_invalidate_selftest){ .iotlb_id = 0 };
	reqs[1] = (struct iommu_hwpt_invalidate_selftest){ .flags = 2, .iotlb_id = 1 };
	num = 2;
	ASSERT_ERRNO(EOPNOTSUPP, invalidate(self->fd, nested, reqs,
					    IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
					    sizeof(reqs[0]), &num));
	ASSERT_EQ(1u, num);
	ASSERT_EQ(0, check_iotlb(self->fd, nested, 0, 0));
	ASSERT_EQ(0, check_iotlb(self->fd, nested, 1, IOMMU_TEST_IOTLB_DEFAULT));
	reqs[1] = (struct iommu_hwpt_invalidate_selftest){ .iotlb_id = 4 };
	num = 2;
	ASSERT_ERRNO(EINVAL, invalidate(self->fd, nested, reqs,
					IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, sizeof(reqs[0]),
					&num));
	ASSERT_EQ(1u, num);
	/* ALL clears everything. */
	reqs[0] = (struct iommu_hwpt_invalidate_selftest){ .flags = IOMMU_TEST_INVALIDATE_FLAG_ALL };
	num = 1;
	ASSERT_EQ(0, invalidate(self->fd, nested, reqs, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
				sizeof(reqs[0]), &num));
	ASSERT_EQ(1u, num);
	for (i = 0; i != MOCK_NESTED_DOMAIN_IOTLB_NUM; i++)
		ASSERT_EQ(0, check_iotlb(self->fd, nested, i, 0));
}

/* Fail the Nth step of a nested HWPT_ALLOC over @pt_id: nothing may be left behind. */
static void nested_alloc_sweep(struct __h_test *_metadata, int fd, uint32_t idev, uint32_t pt_id)
{
	unsigned long nth;

	for (nth = 1; nth < 1000; nth++) {
		struct uiommu_stats before, after;
		uint32_t nested;
		unsigned long left;
		int rc;

		ASSERT_EQ(0, uiommu_stats_get(&before));
		uiommu_fail_nth_arm(nth);
		rc = nested_alloc(fd, idev, pt_id, 1, &nested);
		left = uiommu_fail_nth_disarm();
		if (left) {
			ASSERT_EQ(0, rc);
			ASSERT_EQ(0, destroy(fd, nested));
			break;
		}
		ASSERT_NE(0, rc);
		ASSERT_EQ(0, uiommu_stats_get(&after));
		ASSERT_EQ(before.objects, after.objects);
		ASSERT_EQ(before.allocations, after.allocations);
	}
	ASSERT_TRUE(nth > 1 && nth < 1000);
}

/* Over the parent (the driver's domain_alloc_nested), then over a vIOMMU (its ops'). */
TEST_F(nested, fail_nth_nested_alloc)
{
	uint32_t viommu;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	nested_alloc_sweep(_metadata, self->fd, self->idev, self->parent);
	ASSERT_EQ(0, viommu_alloc(self->fd, self->idev, self->parent, IOMMU_VIOMMU_TYPE_SELFTEST,
				  NULL, 0, &viommu));
	nested_alloc_sweep(_metadata, self->fd, self->idev, viommu);
	ASSERT_EQ(0, destroy(self->fd, viommu));
	ASSERT_EQ(0, destroy(self->fd, self->parent));
}

TEST_HARNESS_MAIN
