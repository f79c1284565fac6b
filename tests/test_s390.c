// SPDX-License-Identifier: MIT
/*
 * The s390-style (zPCI) driver, white box.
 *
 * First its translation tables, read entry by entry: region/segment/page boundaries, the
 * protection bit, iova_to_phys, the aperture (the function's DMA range) and its errnos, and DMA
 * through the IOTLB model with the driver's walker. Then probe/release accounting. Then the
 * race of spec §8, two ways:
 *   - through the core: threads hot-unplug and re-plug functions while others claim ownership,
 *     attach, replace and detach domains, and a bound driver does DMA. The driver aborts if an
 *     attach through the core ever reaches a released function, and asserts the group mutex in
 *     release; after each round every function's driver state must match the core's;
 *   - through the legacy entry points (the pre-6.5 core): attach/detach reach the driver
 *     without the group mutex while release runs, and the driver's dma_domain_lock alone must
 *     keep it consistent: no domain keeps a released function, platform DMA is initialised
 *     once per release, nothing is re-initialised behind release's back.
 * Rounds take $UIOMMU_STRESS_SECONDS in all (default 3).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "drivers/s390/s390-iommu.h"
#include "harness.h"
#include "stress.h"
#include "topology_file.h"
#include "iommu/dma-iommu.h"
#include "iommu/iommu.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "machine/topology.h"
#include "uiommu/uiommu.h"

#define GIB (UINT64_C(1) << 30)
#define MIB (UINT64_C(1) << 20)
#define SZ_4K UINT64_C(4096)

static struct iommu_device zpci = { .name = "zpci0" };

static uint64_t iota_of(const uint64_t *rto)
{
	return rto ? (uint64_t)(uintptr_t)rto | S390_IOTA_IOT_ENABLED | S390_IOTA_DT_RT : 0;
}

static struct device *zdev_make(const char *bdf, const char *key)
{
	struct device *dev = device_alloc(bdf);

	if (IS_ERR_OR_NULL(dev))
		abort();
	dev->iommu = &zpci;
	if (key)
		snprintf(dev->group_key, sizeof(dev->group_key), "%s", key);
	return dev;
}

static void zdev_free(struct device *dev)
{
	s390_device_forget(dev);
	device_put(dev);
}

/* The entries on the path of @iova; the lower pointers are NULL past an invalid entry. */
struct path {
	uint64_t rte, ste, pte;
	const uint64_t *sto, *pto;
};

static struct path walk_path(struct iommu_domain *dom, uint64_t iova)
{
	const uint64_t *rto = s390_domain_region_table(dom);
	struct path p = { 0 };

	p.rte = rto[(iova >> S390_RT_SHIFT) & S390_INDEX_MASK];
	if (p.rte & S390_TABLE_INVALID)
		return p;
	p.sto = (const uint64_t *)(uintptr_t)(p.rte & S390_RTE_ADDR_MASK);
	p.ste = p.sto[(iova >> S390_ST_SHIFT) & S390_INDEX_MASK];
	if (p.ste & S390_TABLE_INVALID)
		return p;
	p.pto = (const uint64_t *)(uintptr_t)(p.ste & S390_STE_ADDR_MASK);
	p.pte = p.pto[(iova >> S390_PAGE_SHIFT) & S390_PT_MASK];
	return p;
}

static char page_buf[8 * 4096] __attribute__((aligned(4096)));

FIXTURE(tables)
{
	struct device *dev;
	struct iommu_domain *dom;
	phys_addr_t pa;
};

FIXTURE_SETUP(tables)
{
	/* The whole 4 TiB, so the boundaries near 0 are reachable too. */
	ASSERT_EQ(0, s390_iommu_register(&zpci, 0, S390_TABLE_SIZE_RT - 1));
	self->dev = zdev_make("0000:00:01.0", NULL);
	ASSERT_EQ(0, iommu_probe_device(self->dev));
	self->dom = iommu_paging_domain_alloc(self->dev);
	ASSERT_FALSE(IS_ERR(self->dom));
	self->pa = (phys_addr_t)(uintptr_t)page_buf;
}

FIXTURE_TEARDOWN(tables)
{
	iommu_domain_free(self->dom);
	iommu_release_device(self->dev);
	zdev_free(self->dev);
	s390_iommu_unregister(&zpci);
}

TEST_F(tables, entries_across_region_segment_and_page_boundaries)
{
	/* Two pages on each side of a 2 GiB region boundary, then of a 1 MiB segment boundary. */
	static const uint64_t bounds[] = { 2 * GIB, 7 * GIB + MIB, 5 * MIB };
	const uint64_t *rto = s390_domain_region_table(self->dom);

	ASSERT_TRUE(rto != NULL);
	ASSERT_EQ(0, (uint64_t)(uintptr_t)rto % S390_TABLE_SIZE);
	for (unsigned int i = 0; i < S390_TABLE_ENTRIES; i++)
		ASSERT_EQ(S390_TABLE_INVALID, rto[i]);

	for (unsigned int b = 0; b < 3; b++) {
		uint64_t iova = bounds[b] - 2 * SZ_4K;
		struct path lo, hi;

		ASSERT_EQ(0, iommu_map(self->dom, iova, self->pa, 4 * SZ_4K,
				       IOMMU_READ | IOMMU_WRITE));
		lo = walk_path(self->dom, bounds[b] - SZ_4K);
		hi = walk_path(self->dom, bounds[b]);
		/* Region entries: type region-third, the whole segment table, offset 0. */
		ASSERT_EQ(S390_TABLE_TYPE_RTX, lo.rte & S390_TABLE_TYPE_MASK);
		ASSERT_EQ(S390_TABLE_LEN_RTX, lo.rte & S390_TABLE_LEN_MASK);
		ASSERT_EQ(0, lo.rte & (S390_TABLE_OFFSET_MASK | S390_TABLE_INVALID |
				       S390_TABLE_PROTECTED));
		ASSERT_EQ(0, (uint64_t)(uintptr_t)lo.sto % S390_TABLE_SIZE);
		ASSERT_EQ(S390_TABLE_TYPE_SX, lo.ste & S390_TABLE_TYPE_MASK);
		ASSERT_EQ(0, (uint64_t)(uintptr_t)lo.pto % S390_PT_SIZE);
		/* Neighbours across the boundary share no page table; across 2 GiB no segment. */
		ASSERT_TRUE(lo.pto != hi.pto);
		if (bounds[b] % (2 * GIB) == 0)
			ASSERT_TRUE(lo.sto != hi.sto);
		else
			ASSERT_TRUE(lo.sto == hi.sto);
		/* The last entry of one page table, the first of the next. */
		ASSERT_TRUE(&lo.pto[S390_PT_ENTRIES - 1] ==
			    &lo.pto[((bounds[b] - SZ_4K) >> S390_PAGE_SHIFT) & S390_PT_MASK]);
		ASSERT_EQ(self->pa + SZ_4K, lo.pte);
		ASSERT_EQ(self->pa + 2 * SZ_4K, hi.pte);
		for (unsigned int k = 0; k < 4; k++)
			ASSERT_EQ(self->pa + k * SZ_4K + 0x123,
				  iommu_iova_to_phys(self->dom, iova + k * SZ_4K + 0x123));

		ASSERT_EQ(4 * SZ_4K, iommu_unmap(self->dom, iova, 4 * SZ_4K));
		lo = walk_path(self->dom, bounds[b] - SZ_4K);
		/* The tables stay; the pages are invalid. */
		ASSERT_TRUE(lo.pto != NULL);
		ASSERT_EQ(S390_PTE_INVALID, lo.pte);
		ASSERT_EQ(0, iommu_iova_to_phys(self->dom, bounds[b]));
	}
	/* Nothing left to unmap. */
	ASSERT_EQ(0, iommu_unmap(self->dom, 2 * GIB, SZ_4K));
}

TEST_F(tables, protection_bit_and_walker_permissions)
{
	phys_addr_t phys;
	int prot;

	ASSERT_EQ(0, iommu_map(self->dom, 0x10000, self->pa, SZ_4K, IOMMU_READ));
	ASSERT_EQ(0, iommu_map(self->dom, 0x11000, self->pa + SZ_4K, SZ_4K,
			       IOMMU_READ | IOMMU_WRITE));
	ASSERT_EQ(S390_TABLE_PROTECTED, walk_path(self->dom, 0x10000).pte & S390_TABLE_PROTECTED);
	ASSERT_EQ(0, walk_path(self->dom, 0x11000).pte & (S390_TABLE_PROTECTED | S390_PTE_INVALID));
	ASSERT_EQ(0, s390_domain_walk(self->dom, 0x10008, &phys, &prot));
	ASSERT_EQ(self->pa + 8, phys);
	ASSERT_EQ(IOMMU_READ, prot);
	ASSERT_EQ(0, s390_domain_walk(self->dom, 0x11000, &phys, &prot));
	ASSERT_EQ(IOMMU_READ | IOMMU_WRITE, prot);
	ASSERT_EQ(-ENOENT, s390_domain_walk(self->dom, 0x12000, &phys, &prot));

	/* The function's view once the domain is attached: a write to a protected page fails. */
	ASSERT_EQ(0, iommu_attach_device(self->dom, self->dev));
	ASSERT_EQ(0, s390_zdev_translate(self->dev, 0x10010, IOMMU_READ, &phys));
	ASSERT_EQ(self->pa + 0x10, phys);
	ASSERT_EQ(-EACCES, s390_zdev_translate(self->dev, 0x10010, IOMMU_WRITE, &phys));
	ASSERT_EQ(0, s390_zdev_translate(self->dev, 0x11010, IOMMU_WRITE, &phys));
	ASSERT_EQ(-EFAULT, s390_zdev_translate(self->dev, 0x12000, IOMMU_READ, &phys));
	iommu_detach_device(self->dom, self->dev);
	ASSERT_EQ(-EFAULT, s390_zdev_translate(self->dev, 0x10010, IOMMU_READ, &phys));
}

TEST_F(tables, overlapping_and_misaligned_maps_change_nothing)
{
	ASSERT_EQ(0, iommu_map(self->dom, 0x20000, self->pa, SZ_4K, IOMMU_READ));
	/* The second page is taken: the first must not stay mapped. */
	ASSERT_EQ(-EEXIST, iommu_map(self->dom, 0x1f000, self->pa, 2 * SZ_4K, IOMMU_READ));
	ASSERT_EQ(0, iommu_iova_to_phys(self->dom, 0x1f000));
	ASSERT_EQ(self->pa, iommu_iova_to_phys(self->dom, 0x20000));
	ASSERT_EQ(-EINVAL, iommu_map(self->dom, 0x30800, self->pa, SZ_4K, IOMMU_READ));
	ASSERT_EQ(0, iommu_iova_to_phys(self->dom, 0x30000));
}

FIXTURE(aperture)
{
	struct device *dev, *other;
	struct iommu_domain *dom;
};

#define START (4 * GIB)
#define END (8 * GIB - 1)

FIXTURE_SETUP(aperture)
{
	ASSERT_EQ(0, s390_iommu_register(&zpci, START, END));
	self->dev = zdev_make("0000:00:02.0", NULL);
	self->other = zdev_make("0000:00:02.1", NULL);
	/* Firmware gave the second function a disjoint range. */
	ASSERT_EQ(0, s390_zdev_set_dma_range(self->other, 16 * GIB, 20 * GIB - 1));
	ASSERT_EQ(0, iommu_probe_device(self->dev));
	ASSERT_EQ(0, iommu_probe_device(self->other));
	self->dom = iommu_paging_domain_alloc(self->dev);
	ASSERT_FALSE(IS_ERR(self->dom));
}

FIXTURE_TEARDOWN(aperture)
{
	iommu_domain_free(self->dom);
	iommu_release_device(self->other);
	iommu_release_device(self->dev);
	zdev_free(self->other);
	zdev_free(self->dev);
	s390_iommu_unregister(&zpci);
}

TEST_F(aperture, is_the_functions_dma_range)
{
	phys_addr_t pa = (phys_addr_t)(uintptr_t)page_buf, phys;
	int prot;

	ASSERT_EQ(START, self->dom->geometry.aperture_start);
	ASSERT_EQ(END, self->dom->geometry.aperture_end);
	ASSERT_TRUE(self->dom->geometry.force_aperture);
	/* Map: EINVAL below, across the end, and beyond. */
	ASSERT_EQ(-EINVAL, iommu_map(self->dom, START - SZ_4K, pa, SZ_4K, IOMMU_READ));
	ASSERT_EQ(-EINVAL, iommu_map(self->dom, END + 1 - SZ_4K, pa, 2 * SZ_4K, IOMMU_READ));
	ASSERT_EQ(-EINVAL, iommu_map(self->dom, 64 * GIB, pa, SZ_4K, IOMMU_READ));
	ASSERT_EQ(0, iommu_map(self->dom, START, pa, SZ_4K, IOMMU_READ));
	ASSERT_EQ(0, iommu_map(self->dom, END + 1 - SZ_4K, pa, SZ_4K, IOMMU_READ));
	/* Outside: unmap unmaps nothing, iova_to_phys finds nothing, the walker says ERANGE. */
	ASSERT_EQ(0, iommu_unmap(self->dom, START - SZ_4K, 2 * SZ_4K));
	ASSERT_EQ(pa, iommu_iova_to_phys(self->dom, START));
	ASSERT_EQ(0, iommu_iova_to_phys(self->dom, START - SZ_4K));
	ASSERT_EQ(-ERANGE, s390_domain_walk(self->dom, END + 1, &phys, &prot));
	ASSERT_EQ(-ERANGE, s390_zdev_translate(self->dev, START - 1, IOMMU_READ, &phys));
	/* Reserved regions: what lies outside the range. */
	{
		char buf[512];

		ASSERT_GT(iommu_group_reserved_regions_show(self->dev->iommu_group, buf,
							    sizeof(buf)), 0);
		ASSERT_TRUE(strstr(buf, "0x0000000000000000 0x00000000ffffffff reserved") != NULL);
		ASSERT_TRUE(strstr(buf, "0x0000000200000000 0x000003ffffffffff reserved") != NULL);
	}
	/* A domain made for a disjoint range cannot be attached. */
	ASSERT_EQ(-EINVAL, iommu_attach_device(self->dom, self->other));
}

TEST(probe_refuses_a_bad_range)
{
	struct device *dev;
	struct s390_zdev_info info;

	ASSERT_EQ(0, s390_iommu_register(&zpci, 0, S390_TABLE_SIZE_RT - 1));
	dev = zdev_make("0000:00:03.0", NULL);
	ASSERT_EQ(0, s390_zdev_set_dma_range(dev, 8 * GIB, 4 * GIB));
	ASSERT_EQ(-EINVAL, iommu_probe_device(dev));
	ASSERT_EQ(0, s390_zdev_set_dma_range(dev, S390_TABLE_SIZE_RT, UINT64_MAX));
	ASSERT_EQ(-EINVAL, iommu_probe_device(dev));
	/* An end beyond the tables is clamped. */
	ASSERT_EQ(0, s390_zdev_set_dma_range(dev, 0, UINT64_MAX));
	ASSERT_EQ(0, iommu_probe_device(dev));
	ASSERT_EQ(-EBUSY, s390_zdev_set_dma_range(dev, 0, 1));
	ASSERT_EQ(0, s390_zdev_get_info(dev, &info));
	ASSERT_EQ(S390_TABLE_SIZE_RT - 1, info.end_dma);
	ASSERT_EQ(1, info.probes);
	iommu_release_device(dev);
	zdev_free(dev);
	s390_iommu_unregister(&zpci);
}

TEST(dma_api_translates_through_the_driver_walker)
{
	static char buf[4096] __attribute__((aligned(4096)));
	struct device *dev;
	dma_addr_t ro, rw;
	char out[16] = { 0 };

	ASSERT_EQ(0, s390_iommu_register(&zpci, START, END));
	dev = zdev_make("0000:00:04.0", NULL);
	ASSERT_EQ(0, iommu_probe_device(dev));
	ASSERT_EQ(0, iommu_device_use_default_domain(dev));
	rw = dma_map_single(dev, buf, sizeof(buf), DMA_FROM_DEVICE);
	ro = dma_map_single(dev, buf, sizeof(buf), DMA_TO_DEVICE);
	ASSERT_FALSE(dma_mapping_error(dev, rw));
	ASSERT_FALSE(dma_mapping_error(dev, ro));
	/* IOVAs come from the aperture. */
	ASSERT_GE(rw, START);
	ASSERT_LE(rw, END);
	ASSERT_EQ(0, dma_device_write(dev, rw + 8, "zpci", 5));
	ASSERT_STREQ("zpci", buf + 8);
	ASSERT_EQ(0, dma_device_read(dev, ro + 8, out, 5));
	ASSERT_STREQ("zpci", out);
	/* Mapped for the device to read only: the protection bit refuses its write. */
	ASSERT_EQ(-EFAULT, dma_device_write(dev, ro, "x", 1));
	dma_unmap_single(dev, ro, sizeof(buf), DMA_TO_DEVICE);
	dma_unmap_single(dev, rw, sizeof(buf), DMA_FROM_DEVICE);
	ASSERT_EQ(-EFAULT, dma_device_read(dev, rw, out, 1));
	iommu_device_unuse_default_domain(dev);
	iommu_release_device(dev);
	zdev_free(dev);
	s390_iommu_unregister(&zpci);
}

/* Every fallible step of probe, domain allocation and map fails once: no leak, no change. */
TEST(fail_nth_probe_alloc_map_leave_nothing)
{
	const uint64_t iova = 2 * GIB - 2 * SZ_4K; /* across a region boundary: two new paths */
	phys_addr_t pa = (phys_addr_t)(uintptr_t)page_buf;
	struct s390_zdev_info info;
	struct iommu_domain *dom;
	struct device *dev;
	long live;
	int rc;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	ASSERT_EQ(0, s390_iommu_register(&zpci, 0, S390_TABLE_SIZE_RT - 1));
	dev = zdev_make("0000:00:07.0", NULL);
	/* The function exists before its probe (firmware made it). */
	ASSERT_EQ(0, s390_zdev_set_dma_range(dev, 0, S390_TABLE_SIZE_RT - 1));
	live = uiommu_alloc_live();
	for (unsigned long n = 1;; n++) {
		uiommu_fail_nth_arm(n);
		rc = iommu_probe_device(dev);
		if (!rc && uiommu_fail_nth_disarm())
			break;
		uiommu_fail_nth_disarm();
		if (!rc) {
			iommu_release_device(dev);
		} else {
			ASSERT_EQ(-ENOMEM, rc);
			ASSERT_TRUE(dev->iommu_group == NULL);
		}
		ASSERT_EQ(live, uiommu_alloc_live());
		ASSERT_EQ(0, s390_zdev_get_info(dev, &info));
		ASSERT_EQ(info.probes, info.releases);
		ASSERT_TRUE(info.platform_dma);
	}
	for (unsigned long n = 1;; n++) {
		uiommu_fail_nth_arm(n);
		dom = iommu_paging_domain_alloc(dev);
		if (!IS_ERR(dom) && uiommu_fail_nth_disarm())
			break;
		uiommu_fail_nth_disarm();
		if (!IS_ERR(dom))
			iommu_domain_free(dom);
	}
	for (unsigned long n = 1;; n++) {
		uiommu_fail_nth_arm(n);
		rc = iommu_map(dom, iova, pa, 4 * SZ_4K, IOMMU_READ | IOMMU_WRITE);
		if (!rc && uiommu_fail_nth_disarm())
			break;
		uiommu_fail_nth_disarm();
		if (!rc) {
			ASSERT_EQ(4 * SZ_4K, iommu_unmap(dom, iova, 4 * SZ_4K));
			continue;
		}
		ASSERT_EQ(-ENOMEM, rc);
		for (unsigned int k = 0; k < 4; k++)
			ASSERT_EQ(0, iommu_iova_to_phys(dom, iova + k * SZ_4K));
	}
	for (unsigned int k = 0; k < 4; k++)
		ASSERT_EQ(pa + k * SZ_4K, iommu_iova_to_phys(dom, iova + k * SZ_4K));
	iommu_domain_free(dom);
	iommu_release_device(dev);
	zdev_free(dev);
	s390_iommu_unregister(&zpci);
}

/* ---- probe and release --------------------------------------------------------------------- */

TEST(release_once_per_probe_restores_platform_dma)
{
	struct device *a, *b;
	struct s390_zdev_info info;
	struct iommu_domain *def;

	ASSERT_EQ(0, s390_iommu_register(&zpci, START, END));
	a = zdev_make("0000:00:05.0", "mf");
	b = zdev_make("0000:00:05.1", "mf");
	for (int round = 1; round <= 3; round++) {
		ASSERT_EQ(0, iommu_probe_device(a));
		ASSERT_EQ(0, iommu_probe_device(b));
		ASSERT_TRUE(a->iommu_group == b->iommu_group);
		def = iommu_get_domain_for_dev(a);
		ASSERT_EQ(2, s390_domain_nr_devices(def));
		ASSERT_EQ(0, s390_zdev_get_info(a, &info));
		ASSERT_TRUE(info.probed);
		ASSERT_TRUE(info.domain == def);
		ASSERT_FALSE(info.platform_dma);
		ASSERT_EQ(iota_of(s390_domain_region_table(def)), info.iota);
		ASSERT_EQ(round, info.probes);
		ASSERT_EQ(round - 1, info.releases);

		/* Ownership: the blocking domain unregisters the anchor. */
		ASSERT_EQ(0, iommu_group_claim_dma_owner(a->iommu_group, &info));
		ASSERT_EQ(0, s390_zdev_get_info(b, &info));
		ASSERT_EQ(0, info.iota);
		ASSERT_EQ(0, s390_domain_nr_devices(def));
		iommu_group_release_dma_owner(a->iommu_group);

		iommu_release_device(b);
		ASSERT_EQ(1, s390_domain_nr_devices(def));
		ASSERT_EQ(0, s390_zdev_get_info(b, &info));
		ASSERT_FALSE(info.probed);
		ASSERT_TRUE(info.platform_dma);
		ASSERT_TRUE(info.domain == NULL);
		ASSERT_EQ(round, info.releases);
		/* Once at creation, once per release. */
		ASSERT_EQ(round + 1, info.platform_dma_inits);
		iommu_release_device(a);
	}
	zdev_free(a);
	zdev_free(b);
	s390_iommu_unregister(&zpci);
}

TEST(legacy_paths_are_no_ops_after_release)
{
	struct device *dev;
	struct iommu_domain *dom;
	struct s390_zdev_info info;

	ASSERT_EQ(0, s390_iommu_register(&zpci, START, END));
	dev = zdev_make("0000:00:06.0", NULL);
	ASSERT_EQ(0, iommu_probe_device(dev));
	dom = iommu_paging_domain_alloc(dev);
	/* The knob is off by default: nothing bypasses the core. */
	ASSERT_EQ(-EPERM, s390_iommu_legacy_attach_dev(dom, dev));
	s390_iommu_set_legacy_entry(true);

	/* While probed the legacy paths act: detach re-initialises platform DMA. */
	ASSERT_EQ(0, s390_iommu_legacy_attach_dev(dom, dev));
	ASSERT_EQ(1, s390_domain_nr_devices(dom));
	ASSERT_EQ(0, s390_iommu_legacy_detach_dev(dom, dev));
	ASSERT_EQ(0, s390_zdev_get_info(dev, &info));
	ASSERT_TRUE(info.platform_dma);
	ASSERT_EQ(2, info.platform_dma_inits);
	ASSERT_EQ(0, s390_iommu_legacy_attach_dev(dom, dev));

	/* Release takes the function off the domain and restores platform DMA itself. */
	iommu_release_device(dev);
	ASSERT_EQ(0, s390_domain_nr_devices(dom));
	ASSERT_EQ(0, s390_zdev_get_info(dev, &info));
	ASSERT_EQ(3, info.platform_dma_inits);
	/* Afterwards: attach is a no-op, detach re-initialises nothing. */
	ASSERT_EQ(0, s390_iommu_legacy_attach_dev(dom, dev));
	ASSERT_EQ(0, s390_iommu_legacy_detach_dev(dom, dev));
	ASSERT_EQ(0, s390_domain_nr_devices(dom));
	ASSERT_EQ(0, s390_zdev_get_info(dev, &info));
	ASSERT_EQ(1, info.stale_attaches);
	ASSERT_EQ(1, info.stale_detaches);
	ASSERT_EQ(3, info.platform_dma_inits);
	ASSERT_TRUE(info.platform_dma);
	ASSERT_TRUE(info.domain == NULL);
	iommu_domain_free(dom);
	zdev_free(dev);
	s390_iommu_unregister(&zpci);
}

/* ---- the race through the core ------------------------------------------------------------- */

#define NMF 3   /* a multi-function group: member 0 stays, 1 and 2 come and go */
#define NSINGLE 2

struct sdev {
	struct device *dev;
	pthread_mutex_t bind;  /* singletons: users hold it, unplug takes it (the driver core) */
	bool present;          /* plugger's; read by others under bind (singletons) */
};

static struct sdev mf[NMF], single[NSINGLE];
static struct iommu_group *mf_group;
static atomic_long nops, plugs, owned_attaches, dma_rounds;
static atomic_int unexpected;

static void expect_rc(const char *what, long rc, long ok0, long ok1, long ok2)
{
	atomic_fetch_add(&nops, 1);
	if (rc == ok0 || rc == ok1 || rc == ok2)
		return;
	printf("# %s: unexpected %ld\n", what, rc);
	atomic_fetch_add(&unexpected, 1);
}

static void *plugger(void *arg)
{
	unsigned int seed = (unsigned int)(uintptr_t)arg;

	while (stress_running()) {
		unsigned int i = (unsigned int)rand_r(&seed) % (NMF - 1 + NSINGLE);
		struct sdev *s = i < NMF - 1 ? &mf[i + 1] : &single[i - (NMF - 1)];

		pthread_mutex_lock(&s->bind);
		if (s->present) {
			iommu_release_device(s->dev);
			s->present = false;
		} else {
			expect_rc("probe", iommu_probe_device(s->dev), 0, 0, 0);
			s->present = true;
		}
		pthread_mutex_unlock(&s->bind);
		atomic_fetch_add(&plugs, 1);
	}
	return NULL;
}

/* A VFIO-like owner of the multi-function group, whose members come and go meanwhile. */
static void *group_owner(void *arg)
{
	unsigned int seed = (unsigned int)(uintptr_t)arg;
	int cookie;

	while (stress_running()) {
		struct iommu_domain *d1, *d2;
		int rc;

		rc = iommu_group_claim_dma_owner(mf_group, &cookie);
		expect_rc("claim", rc, 0, -EPERM, -EBUSY);
		if (rc)
			continue;
		/* mf[0] is never unplugged: a safe device to allocate for. */
		d1 = iommu_paging_domain_alloc(mf[0].dev);
		d2 = iommu_paging_domain_alloc(mf[0].dev);
		if (IS_ERR(d1) || IS_ERR(d2))
			abort();
		expect_rc("attach", iommu_attach_group(d1, mf_group), 0, 0, 0);
		atomic_fetch_add(&owned_attaches, 1);
		if (rand_r(&seed) & 1)
			expect_rc("replace", iommu_group_replace_domain(mf_group, d2), 0, 0, 0);
		else
			iommu_detach_group(d1, mf_group);
		if (iommu_get_domain_for_dev(mf[0].dev) == d2)
			iommu_detach_group(d2, mf_group);
		iommu_group_release_dma_owner(mf_group);
		iommu_domain_free(d1);
		iommu_domain_free(d2);
	}
	return NULL;
}

/* Device-level ownership and attach of the singletons, under their bind locks. */
static void *single_owner(void *arg)
{
	unsigned int seed = (unsigned int)(uintptr_t)arg;
	int cookie;

	while (stress_running()) {
		struct sdev *s = &single[(unsigned int)rand_r(&seed) % NSINGLE];
		struct iommu_domain *d;
		int rc;

		pthread_mutex_lock(&s->bind);
		if (!s->present)
			goto next;
		rc = iommu_device_claim_dma_owner(s->dev, &cookie);
		expect_rc("device claim", rc, 0, -EPERM, -EBUSY);
		if (rc)
			goto next;
		d = iommu_paging_domain_alloc(s->dev);
		if (IS_ERR(d))
			abort();
		expect_rc("device attach", iommu_attach_device(d, s->dev), 0, 0, 0);
		atomic_fetch_add(&owned_attaches, 1);
		iommu_detach_device(d, s->dev);
		iommu_device_release_dma_owner(s->dev);
		iommu_domain_free(d);
next:
		pthread_mutex_unlock(&s->bind);
	}
	return NULL;
}

/* A DMA-API driver on mf[0], doing DMA through the group's default domain while bound. */
static void *dma_user(void *arg)
{
	static char buf[4096] __attribute__((aligned(4096)));
	struct device *dev = mf[0].dev;

	(void)arg;
	while (stress_running()) {
		dma_addr_t addr;
		char c = 0;
		int rc = iommu_device_use_default_domain(dev);

		expect_rc("bind", rc, 0, -EBUSY, -EBUSY);
		if (rc)
			continue;
		addr = dma_map_single(dev, buf, sizeof(buf), DMA_BIDIRECTIONAL);
		if (dma_mapping_error(dev, addr)) {
			atomic_fetch_add(&unexpected, 1);
		} else {
			expect_rc("dma write", dma_device_write(dev, addr + 1, "z", 1), 0, 0, 0);
			expect_rc("dma read", dma_device_read(dev, addr + 1, &c, 1), 0, 0, 0);
			dma_unmap_single(dev, addr, sizeof(buf), DMA_BIDIRECTIONAL);
			atomic_fetch_add(&dma_rounds, 1);
		}
		iommu_device_unuse_default_domain(dev);
	}
	return NULL;
}

/* Threads joined: the driver's view of each function is the core's. */
static int check_round(void)
{
	struct sdev *all[NMF + NSINGLE];
	unsigned int n = 0, present_mf = 0;
	int bad = 0;

	for (int i = 0; i < NMF; i++)
		all[n++] = &mf[i];
	for (int i = 0; i < NSINGLE; i++)
		all[n++] = &single[i];
	for (unsigned int i = 0; i < n; i++) {
		struct sdev *s = all[i];
		struct s390_zdev_info info;
		struct iommu_group_info gi;
		struct iommu_domain *dom;

		if (s390_zdev_get_info(s->dev, &info))
			return 1;
		bad += info.probes - info.releases != (s->present ? 1u : 0u);
		bad += info.probed != s->present;
		if (!s->present) {
			bad += !info.platform_dma || info.domain || !info.iota;
			bad += s->dev->iommu_group != NULL;
			continue;
		}
		present_mf += i < NMF;
		dom = iommu_get_domain_for_dev(s->dev);
		iommu_group_get_info(s->dev->iommu_group, &gi);
		bad += !gi.domain_is_default || gi.owner_cnt || gi.owned;
		bad += info.domain != dom || info.platform_dma;
		bad += info.iota != iota_of(s390_domain_region_table(dom));
	}
	bad += s390_domain_nr_devices(iommu_get_domain_for_dev(mf[0].dev)) != present_mf;
	return bad;
}

static void sdev_init(struct sdev *s, const char *bdf, const char *key)
{
	s->dev = zdev_make(bdf, key);
	pthread_mutex_init(&s->bind, NULL);
	s->present = false;
}

TEST(race_release_against_attach_through_the_core)
{
	void *(*fns[])(void *) = { plugger, group_owner, group_owner, single_owner, dma_user };
	const unsigned int nth = sizeof(fns) / sizeof(fns[0]);
	double seconds = stress_seconds(3.0);
	int rounds = 6;

	ASSERT_EQ(0, s390_iommu_register(&zpci, START, END));
	for (int i = 0; i < NMF; i++) {
		char bdf[16];

		snprintf(bdf, sizeof(bdf), "0000:10:00.%d", i);
		sdev_init(&mf[i], bdf, "mf");
	}
	sdev_init(&single[0], "0000:11:00.0", NULL);
	sdev_init(&single[1], "0000:12:00.0", NULL);
	for (int i = 0; i < NMF; i++) {
		ASSERT_EQ(0, iommu_probe_device(mf[i].dev));
		mf[i].present = true;
	}
	mf_group = iommu_group_get(mf[0].dev);

	for (int r = 0; r < rounds; r++) {
		struct stress_worker w[8];

		for (unsigned int i = 0; i < nth; i++)
			w[i] = (struct stress_worker){ fns[i], (void *)(uintptr_t)(r * 8 + i + 1) };
		ASSERT_EQ(0, stress_run(w, nth, seconds / rounds));
		ASSERT_EQ(0, check_round());
	}
	printf("# %ld operations in %d rounds: %ld hot-plugs, %ld owned attaches, %ld DMA rounds\n",
	       atomic_load(&nops), rounds, atomic_load(&plugs), atomic_load(&owned_attaches),
	       atomic_load(&dma_rounds));
	ASSERT_EQ(0, atomic_load(&unexpected));
	/* Each side of the race ran. */
	ASSERT_GT(atomic_load(&plugs), 10);
	ASSERT_GT(atomic_load(&owned_attaches), 10);
	ASSERT_GT(atomic_load(&dma_rounds), 10);

	iommu_group_put(mf_group);
	for (int i = NMF - 1; i >= 0; i--)
		if (mf[i].present)
			iommu_release_device(mf[i].dev);
	for (int i = 0; i < NSINGLE; i++)
		if (single[i].present)
			iommu_release_device(single[i].dev);
	for (int i = 0; i < NMF; i++)
		zdev_free(mf[i].dev);
	for (int i = 0; i < NSINGLE; i++)
		zdev_free(single[i].dev);
	s390_iommu_unregister(&zpci);
}

/* ---- the race through the legacy entry points (the driver's lock alone) --------------------- */

static struct sdev legacy;
static struct iommu_domain *legacy_dom;
static atomic_long legacy_attaches;

static void *legacy_plugger(void *arg)
{
	(void)arg;
	while (stress_running()) {
		if (legacy.present)
			iommu_release_device(legacy.dev);
		else
			expect_rc("probe", iommu_probe_device(legacy.dev), 0, 0, 0);
		legacy.present = !legacy.present;
	}
	return NULL;
}

/* VFIO's container teardown of old: attach and detach straight into the driver. */
static void *legacy_user(void *arg)
{
	(void)arg;
	while (stress_running()) {
		expect_rc("legacy attach", s390_iommu_legacy_attach_dev(legacy_dom, legacy.dev),
			  0, 0, 0);
		expect_rc("legacy detach", s390_iommu_legacy_detach_dev(legacy_dom, legacy.dev),
			  0, 0, 0);
		atomic_fetch_add(&legacy_attaches, 1);
	}
	return NULL;
}

TEST(race_release_against_legacy_attach_detach)
{
	void *(*fns[])(void *) = { legacy_plugger, legacy_user, legacy_user };
	const unsigned int nth = sizeof(fns) / sizeof(fns[0]);
	double seconds = stress_seconds(3.0);
	struct s390_zdev_info info;
	int rounds = 6;

	ASSERT_EQ(0, s390_iommu_register(&zpci, START, END));
	sdev_init(&legacy, "0000:20:00.0", NULL);
	ASSERT_EQ(0, iommu_probe_device(legacy.dev));
	legacy.present = true;
	/* The user's domain, never attached through the core. */
	legacy_dom = iommu_paging_domain_alloc(legacy.dev);
	ASSERT_FALSE(IS_ERR(legacy_dom));
	s390_iommu_set_legacy_entry(true);

	for (int r = 0; r < rounds; r++) {
		struct stress_worker w[4];

		for (unsigned int i = 0; i < nth; i++)
			w[i] = (struct stress_worker){ fns[i], NULL };
		ASSERT_EQ(0, stress_run(w, nth, seconds / rounds));

		/* Quiesce: release, then nothing may keep the function. */
		if (legacy.present)
			iommu_release_device(legacy.dev);
		legacy.present = false;
		ASSERT_EQ(0, s390_zdev_get_info(legacy.dev, &info));
		ASSERT_FALSE(info.probed);
		ASSERT_EQ(info.probes, info.releases);
		ASSERT_TRUE(info.platform_dma);
		ASSERT_TRUE(info.domain == NULL);
		ASSERT_EQ(0, s390_domain_nr_devices(legacy_dom));
		/* A late attach or detach changes nothing now. */
		ASSERT_EQ(0, s390_iommu_legacy_attach_dev(legacy_dom, legacy.dev));
		ASSERT_EQ(0, s390_iommu_legacy_detach_dev(legacy_dom, legacy.dev));
		ASSERT_EQ(0, s390_domain_nr_devices(legacy_dom));
		ASSERT_EQ(0, s390_zdev_get_info(legacy.dev, &info));
		ASSERT_TRUE(info.platform_dma);
		ASSERT_EQ(0, iommu_probe_device(legacy.dev));
		legacy.present = true;
	}
	ASSERT_EQ(0, s390_zdev_get_info(legacy.dev, &info));
	printf("# %ld legacy attach/detach pairs, %u probes; %u attaches and %u detaches found "
	       "the function released\n", atomic_load(&legacy_attaches), info.probes,
	       info.stale_attaches, info.stale_detaches);
	ASSERT_EQ(0, atomic_load(&unexpected));
	ASSERT_GT(info.probes, (unsigned int)rounds);

	iommu_release_device(legacy.dev);
	/* The domain keeps no function: its free would warn otherwise. */
	iommu_domain_free(legacy_dom);
	zdev_free(legacy.dev);
	s390_iommu_unregister(&zpci);
}

/* ---- the topology hook ---------------------------------------------------------------------- */


TEST(topology_puts_functions_behind_an_s390_instance)
{
	static const char good[] =
		"{ \"iommus\": [ { \"name\": \"zpci\", \"driver\": \"s390\",\n"
		"                  \"start_dma\": \"0x100000000\", \"end_dma\": \"0x1ffffffff\",\n"
		"                  \"dirty_tracking\": true },\n"
		"                { \"name\": \"m\" } ],\n"
		"  \"devices\": [ { \"bdf\": \"0000:00:01.0\", \"iommu\": \"zpci\", \"bound\": true,\n"
		"                   \"dirty\": true },\n"
		"                 { \"bdf\": \"0000:00:02.0\", \"iommu\": \"m\" } ] }\n";
	static const char bad[] =
		"{ \"iommus\": [ { \"name\": \"m\", \"start_dma\": 0 } ], \"devices\": [] }\n";
	char path[] = "/tmp/uiommu-s390-XXXXXX", path2[] = "/tmp/uiommu-s390-XXXXXX";
	struct s390_zdev_info info;
	struct device *dev;

	ASSERT_EQ(0, topology_file_write(path, good));
	ASSERT_EQ(0, topology_file_write(path2, bad));
	ASSERT_EQ(-EINVAL, topology_load(path2));
	ASSERT_EQ(0, topology_load(path));
	ASSERT_TRUE(s390_iommu_is_instance(topology_find_iommu("zpci")));
	ASSERT_FALSE(s390_iommu_is_instance(topology_find_iommu("m")));
	dev = topology_find_device("0000:00:01.0");
	ASSERT_EQ(0, s390_zdev_get_info(dev, &info));
	ASSERT_TRUE(info.probed);
	ASSERT_EQ(UINT64_C(0x100000000), info.start_dma);
	ASSERT_EQ(UINT64_C(0x1ffffffff), info.end_dma);
	/* The driver never claims dirty tracking, whatever the topology says of the instance. */
	ASSERT_FALSE(iommu_device_capable(dev, IOMMU_CAP_DIRTY_TRACKING));
	/* Its reserved regions are what lies outside the DMA range: no MSI window. */
	{
		struct iommu_resv_region r[4];

		ASSERT_EQ(2u, iommu_get_resv_regions(dev, r, 4));
		ASSERT_EQ(IOMMU_RESV_RESERVED, r[0].type);
		ASSERT_EQ(IOMMU_RESV_RESERVED, r[1].type);
		ASSERT_EQ(UINT64_C(0x200000000), r[1].start);
	}
	ASSERT_EQ(0, topology_unplug("0000:00:01.0"));
	ASSERT_EQ(0, s390_zdev_get_info(dev, &info));
	ASSERT_FALSE(info.probed);
	ASSERT_EQ(0, topology_plug("0000:00:01.0"));
	topology_unload();
	unlink(path);
	unlink(path2);
}

TEST_HARNESS_MAIN
