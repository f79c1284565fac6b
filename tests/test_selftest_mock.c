// SPDX-License-Identifier: MIT
/*
 * White-box tests of the selftest mock IOMMU (src/drivers/mock/selftest_mock.c): its devices,
 * its 2 KiB-granule page table with optional 1 MiB leaves, its aperture, dirty-tracking rules
 * and hw_info, reached through the IOMMU core.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/mock/selftest_mock.h"
#include "harness.h"
#include "iommu/iommu.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "uiommu/uiommu.h"

#define PG MOCK_SELFTEST_PAGE_SIZE
#define HUGE MOCK_SELFTEST_HUGE_PAGE_SIZE
#define AP MOCK_SELFTEST_APERTURE_START

static char target[4 << 20] __attribute__((aligned(1 << 20)));

static uint64_t host(uint64_t off)
{
	return (uint64_t)(uintptr_t)target + off;
}

TEST(devices_are_isolated_and_identity_by_default)
{
	struct device *a, *b;

	ASSERT_EQ(-EINVAL, PTR_ERR(mock_selftest_dev_create(1u << 1)));
	a = mock_selftest_dev_create(0);
	b = mock_selftest_dev_create(MOCK_SELFTEST_DEV_NO_DIRTY | MOCK_SELFTEST_DEV_PASID);
	ASSERT_FALSE(IS_ERR(a));
	ASSERT_FALSE(IS_ERR(b));
	ASSERT_TRUE(a->iommu_group != b->iommu_group);
	ASSERT_EQ(IOMMU_DOMAIN_IDENTITY, iommu_get_domain_for_dev(a)->type);
	ASSERT_EQ(0u, mock_selftest_dev_flags(a));
	ASSERT_EQ(MOCK_SELFTEST_DEV_NO_DIRTY | MOCK_SELFTEST_DEV_PASID, mock_selftest_dev_flags(b));
	ASSERT_TRUE(iommu_device_capable(a, IOMMU_CAP_DIRTY_TRACKING));
	ASSERT_FALSE(iommu_device_capable(b, IOMMU_CAP_DIRTY_TRACKING));
	ASSERT_EQ(1u << 20, b->iommu_data->max_pasids);
	mock_selftest_dev_destroy(a);
	mock_selftest_dev_destroy(b);
}

TEST(paging_domain_granule_aperture_and_table)
{
	struct device *dev = mock_selftest_dev_create(0);
	struct iommu_domain *d = iommu_paging_domain_alloc_flags(dev, 0, NULL);
	size_t i;

	ASSERT_FALSE(IS_ERR(d));
	ASSERT_TRUE(mock_selftest_domain_is(d));
	ASSERT_EQ(PG, d->pgsize_bitmap);
	ASSERT_EQ(AP, d->geometry.aperture_start);
	ASSERT_EQ((1ull << 31) - 1, d->geometry.aperture_end);
	ASSERT_EQ(1, mock_selftest_nr_tables(d));

	/* 2 KiB steps translate one by one; the half page offset is kept. */
	ASSERT_EQ(0, iommu_map(d, AP + PG, host(PG), 3 * PG, IOMMU_READ));
	for (i = 0; i < 3; i++)
		ASSERT_EQ(host(PG + i * PG) + 5, iommu_iova_to_phys(d, AP + PG + i * PG + 5));
	ASSERT_EQ(0, iommu_iova_to_phys(d, AP));
	ASSERT_EQ(3, mock_selftest_nr_tables(d));
	ASSERT_EQ(-EEXIST, iommu_map(d, AP + 2 * PG, host(0), PG, IOMMU_READ));
	/* Outside the aperture, or off the granule: refused. */
	ASSERT_EQ(-EINVAL, iommu_map(d, AP - PG, host(0), PG, IOMMU_READ));
	ASSERT_EQ(-EINVAL, iommu_map(d, 1ull << 31, host(0), PG, IOMMU_READ));
	ASSERT_EQ(-EINVAL, iommu_map(d, AP + 1024, host(0), PG, IOMMU_READ));
	ASSERT_EQ(3 * PG, iommu_unmap(d, AP + PG, 3 * PG));
	ASSERT_EQ(0, iommu_iova_to_phys(d, AP + PG));

	/* A default domain never uses 1 MiB leaves: a 1 MiB map is 512 leaves. */
	ASSERT_EQ(0, iommu_map(d, AP + HUGE, host(HUGE), HUGE, IOMMU_READ | IOMMU_WRITE));
	ASSERT_EQ(host(HUGE) + HUGE - 1, iommu_iova_to_phys(d, AP + 2 * HUGE - 1));
	ASSERT_EQ(HUGE, iommu_unmap(d, AP + HUGE, HUGE));

	/* Every fallible step of a map fails cleanly: nothing left mapped. */
	for (i = 1; uiommu_fail_nth_available() && i < 20; i++) {
		int rc;

		uiommu_fail_nth_arm(i);
		rc = iommu_map(d, AP + 64 * HUGE, host(0), 2 * PG, IOMMU_READ);
		if (uiommu_fail_nth_disarm()) {
			ASSERT_EQ(0, rc);
			break;
		}
		ASSERT_EQ(-ENOMEM, rc);
		ASSERT_EQ(0, iommu_iova_to_phys(d, AP + 64 * HUGE));
	}
	iommu_domain_free(d);
	mock_selftest_dev_destroy(dev);
}

TEST(huge_domain_uses_1m_leaves)
{
	struct device *dev = mock_selftest_dev_create(0);
	uint32_t data[2] = { 0, 1 };
	struct iommu_user_data ud = { .type = 0xdead, .data = data, .len = sizeof(data) };
	struct iommu_domain *d = iommu_paging_domain_alloc_flags(dev, 0, &ud);
	long tables;

	ASSERT_FALSE(IS_ERR(d));
	ASSERT_EQ(PG | HUGE, d->pgsize_bitmap);
	ASSERT_EQ(0, iommu_map(d, AP + HUGE, host(HUGE), HUGE, IOMMU_READ));
	tables = mock_selftest_nr_tables(d);
	ASSERT_EQ(2, tables); /* root and one level-1 table: no level-2 table for a leaf */
	ASSERT_EQ(host(HUGE) + 12345, iommu_iova_to_phys(d, AP + HUGE + 12345));
	ASSERT_EQ(HUGE, iommu_unmap(d, AP + HUGE, HUGE));
	/* An emptied 2 KiB table makes way for a 1 MiB leaf. */
	ASSERT_EQ(0, iommu_map(d, AP + 2 * HUGE, host(0), PG, IOMMU_READ));
	ASSERT_EQ(PG, iommu_unmap(d, AP + 2 * HUGE, PG));
	ASSERT_EQ(0, iommu_map(d, AP + 2 * HUGE, host(0), HUGE, IOMMU_READ));
	ASSERT_EQ(2, mock_selftest_nr_tables(d));
	iommu_domain_free(d);

	data[1] = 7;
	ASSERT_EQ(-EOPNOTSUPP, PTR_ERR(iommu_paging_domain_alloc_flags(dev, 0, &ud)));
	ud.type = 0xbeef;
	ASSERT_EQ(-EOPNOTSUPP, PTR_ERR(iommu_paging_domain_alloc_flags(dev, 0, &ud)));
	mock_selftest_dev_destroy(dev);
}

/*
 * dma_walk_run across table boundaries: from the last entries of one 2 KiB table into the next
 * table, and, in a HUGE domain, from 2 KiB leaves into a 1 MiB leaf and out of it into 2 KiB
 * leaves again, as long as the output goes on; it stops at the first unmapped byte.
 */
TEST(walk_run_crosses_tables_and_leaf_sizes)
{
	struct device *dev = mock_selftest_dev_create(0);
	uint32_t data[2] = { 0, 1 };
	struct iommu_user_data ud = { .type = 0xdead, .data = data, .len = sizeof(data) };
	const int rw = IOMMU_READ | IOMMU_WRITE;
	struct iommu_domain *d = iommu_paging_domain_alloc_flags(dev, 0, NULL);
	uint64_t run = 0;
	int prot = 0;

	ASSERT_FALSE(IS_ERR(d));
	ASSERT_EQ(0, iommu_map(d, AP + HUGE - 2 * PG, host(HUGE - 2 * PG), 4 * PG, rw));
	ASSERT_EQ(host(HUGE - 2 * PG) + 7,
		  d->ops->dma_walk_run(d, AP + HUGE - 2 * PG + 7, 1 << 20, false, &prot, &run));
	ASSERT_EQ(4 * PG - 7, run);
	ASSERT_EQ(rw, prot);
	iommu_domain_free(d);

	d = iommu_paging_domain_alloc_flags(dev, 0, &ud);
	ASSERT_FALSE(IS_ERR(d));
	ASSERT_EQ(0, iommu_map(d, AP + HUGE - 2 * PG, host(HUGE - 2 * PG), 2 * PG, rw));
	ASSERT_EQ(0, iommu_map(d, AP + HUGE, host(HUGE), HUGE, rw));
	ASSERT_EQ(0, iommu_map(d, AP + 2 * HUGE, host(2 * HUGE), 3 * PG, rw));
	ASSERT_EQ(4, mock_selftest_nr_tables(d)); /* root, level 1, a level-2 table either side */
	ASSERT_EQ(host(HUGE - 2 * PG),
		  d->ops->dma_walk_run(d, AP + HUGE - 2 * PG, 4 << 20, true, &prot, &run));
	ASSERT_EQ(2 * PG + HUGE + 3 * PG, run);
	/* From inside the 1 MiB leaf, capped by @len. */
	ASSERT_EQ(host(HUGE) + 100, d->ops->dma_walk_run(d, AP + HUGE + 100, 5000, false, &prot,
							  &run));
	ASSERT_EQ(5000ull, run);
	iommu_domain_free(d);
	mock_selftest_dev_destroy(dev);
}

TEST(dirty_tracking_and_flags)
{
	struct device *dev = mock_selftest_dev_create(0);
	struct device *nodirty = mock_selftest_dev_create(MOCK_SELFTEST_DEV_NO_DIRTY);
	struct iommu_domain *d;
	int owner;

	ASSERT_EQ(-EOPNOTSUPP, PTR_ERR(iommu_paging_domain_alloc_flags(dev, 1u << 2, NULL)));
	ASSERT_EQ(-EOPNOTSUPP, PTR_ERR(iommu_paging_domain_alloc_flags(
				       nodirty, IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING, NULL)));
	d = iommu_paging_domain_alloc_flags(dev, IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING |
							 IOMMU_DOMAIN_ALLOC_NEST_PARENT |
							 IOMMU_DOMAIN_ALLOC_PASID, NULL);
	ASSERT_FALSE(IS_ERR(d));
	ASSERT_EQ(0, iommu_device_claim_dma_owner(nodirty, &owner));
	ASSERT_EQ(-EINVAL, iommu_group_replace_domain(nodirty->iommu_group, d));
	iommu_device_release_dma_owner(nodirty);
	ASSERT_EQ(0, iommu_device_claim_dma_owner(dev, &owner));
	ASSERT_EQ(0, iommu_group_replace_domain(dev->iommu_group, d));
	ASSERT_TRUE(iommu_get_domain_for_dev(dev) == d);
	iommu_device_release_dma_owner(dev);
	ASSERT_EQ(IOMMU_DOMAIN_IDENTITY, iommu_get_domain_for_dev(dev)->type);
	iommu_domain_free(d);
	mock_selftest_dev_destroy(dev);
	mock_selftest_dev_destroy(nodirty);
}

TEST(hw_info)
{
	struct device *dev = mock_selftest_dev_create(0);
	const struct iommu_ops *ops = iommu_device_ops(dev);
	uint32_t len = 0, type = 0, *info;

	info = ops->hw_info(dev, &len, &type);
	ASSERT_FALSE(IS_ERR(info));
	ASSERT_EQ(8u, len);
	ASSERT_EQ(0xfeedbeefu, type);
	ASSERT_EQ(0u, info[0]);
	ASSERT_EQ(0xdeadbeefu, info[1]);
	uiommu_free(info);
	type = 1;
	ASSERT_EQ(-EOPNOTSUPP, PTR_ERR(ops->hw_info(dev, &len, &type)));
	mock_selftest_dev_destroy(dev);
}

TEST_HARNESS_MAIN
