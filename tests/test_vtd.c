// SPDX-License-Identifier: MIT
/*
 * The Intel VT-d model, white box (src/drivers/intel/, docs/vtd.md).
 *
 * Guest first-stage tables are built here in test memory ("guest RAM", 4 MiB mapped at a GPA
 * through a nest parent), as a guest kernel would build them; the model walks them through
 * the second stage. What is checked:
 *   - CAP/ECAP and GET_HW_INFO's data follow the instance's features;
 *   - the second-stage format: 4 and 5 levels, 4K/2M/1G leaves, -EEXIST/-ERANGE, unmap
 *     stopping at holes and never splitting, the nest parent's erratum rule, dirty tracking;
 *   - nested allocation and attach: every errno of intel/nested.c, in its order, and the PASID
 *     entry the driver writes (C.8), at the RID and at a PASID;
 *   - the first-stage walk, case by case (U/S, R/W, XD, SRE, WPE, A/D/EA, reserved bits,
 *     canonical addresses, second-stage faults on table fetches and on the output), then
 *     against a small independent reference walk over thousands of random tables/addresses;
 *   - invalidation: a combined translation stays cached (stale) until an invalidation covers
 *     it; the entry_num write-back and every errno; a parent unmap flushes its children;
 *   - page requests: the descriptors the kernel answers itself, stop markers, the rest to the
 *     fault handler, and the page group response descriptors;
 *   - a fail-nth sweep of probe, allocations, map, attach and PASID attach.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drivers/intel/vtd.h"
#include "harness.h"
#include "stress.h"
#include "topology_file.h"
#include "iommu/iommu.h"
#include "iommu/iotlb.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "machine/ctl.h"
#include "machine/topology.h"
#include "uiommu/iommufd.h"
#include "uiommu/uiommu.h"

#define SZ_4K UINT64_C(4096)
#define SZ_2M (UINT64_C(1) << 21)
#define SZ_1G (UINT64_C(1) << 30)
#define GUEST_PAGES 1024u           /* 4 MiB of guest RAM */
#define GUEST_BASE SZ_1G            /* its GPA: 1 GiB-aligned, so a 1 GiB leaf can reach it */
#define RW (IOMMU_READ | IOMMU_WRITE)

/* ---- fixtures ------------------------------------------------------------------------------- */

static struct iommu_device dmar0 = { .name = "dmar0" };
static struct iommu_device dmar1 = { .name = "dmar1" };

static struct device *vdev_make(const char *bdf, struct iommu_device *iommu, bool pri)
{
	struct device *dev = device_alloc(bdf);

	if (IS_ERR_OR_NULL(dev))
		abort();
	dev->iommu = iommu;
	dev->pasid_bits = 20;
	dev->ats = pri;
	dev->pri = pri;
	return dev;
}

/* Guest RAM: page-aligned test memory, handed out page by page as the guest's tables. */
struct guest {
	uint8_t *ram;
	unsigned int next;
};

static void guest_init(struct guest *g)
{
	/* 2 MiB-aligned, so that a test can map it with 2 MiB leaves too (guest_map()). */
	g->ram = aligned_alloc(SZ_2M, GUEST_PAGES * SZ_4K);
	if (!g->ram)
		abort();
	memset(g->ram, 0, GUEST_PAGES * SZ_4K);
	g->next = 0;
}

/*
 * Maps guest RAM at GUEST_BASE in @parent: with 4 KiB second-stage leaves (one call a page, so
 * that a test can punch 4 KiB holes), or with 2 MiB leaves (one call).
 */
static int guest_map(struct guest *g, struct iommu_domain *parent, bool huge)
{
	uint64_t hpa = (uint64_t)(uintptr_t)g->ram;

	if (huge)
		return iommu_map(parent, GUEST_BASE, hpa, GUEST_PAGES * SZ_4K, RW);
	for (uint64_t off = 0; off < GUEST_PAGES * SZ_4K; off += SZ_4K) {
		int rc = iommu_map(parent, GUEST_BASE + off, hpa + off, SZ_4K, RW);

		if (rc)
			return rc;
	}
	return 0;
}

static uint64_t guest_page(struct guest *g)
{
	if (g->next >= GUEST_PAGES)
		abort();
	return GUEST_BASE + (uint64_t)g->next++ * SZ_4K;
}

static uint64_t *guest_ptr(struct guest *g, uint64_t gpa)
{
	if (gpa < GUEST_BASE || gpa >= GUEST_BASE + GUEST_PAGES * SZ_4K)
		abort();
	return (uint64_t *)(g->ram + (gpa - GUEST_BASE));
}

static uint64_t guest_hpa(struct guest *g, uint64_t gpa)
{
	return (uint64_t)(uintptr_t)guest_ptr(g, gpa);
}

static unsigned int idx_of(uint64_t iova, unsigned int lvl)
{
	return (unsigned int)(iova >> (12 + 9 * (lvl - 1))) & 511;
}

#define TABLE_BITS (VTD_FS_P | VTD_FS_RW | VTD_FS_US)

/*
 * Maps @iova to @out at leaf level @leaf_lvl (1: 4K, 2: 2M, 3: 1G) with @leaf_bits, creating
 * missing tables with @table_bits; returns the leaf's slot.
 */
static uint64_t *fs_map(struct guest *g, uint64_t root, unsigned int levels, uint64_t iova,
			uint64_t out, unsigned int leaf_lvl, uint64_t leaf_bits, uint64_t table_bits)
{
	uint64_t table = root;

	for (unsigned int lvl = levels; lvl > leaf_lvl; lvl--) {
		uint64_t *slot = guest_ptr(g, table) + idx_of(iova, lvl);

		if (!(*slot & VTD_FS_P))
			*slot = guest_page(g) | table_bits;
		table = *slot & VTD_ADDR_MASK;
	}
	uint64_t *leaf = guest_ptr(g, table) + idx_of(iova, leaf_lvl);

	*leaf = out | leaf_bits | (leaf_lvl > 1 ? VTD_FS_PS : 0);
	return leaf;
}

/* A machine: one instance, one device, a nest parent with all of guest RAM mapped. */
FIXTURE(vtd)
{
	struct device *dev;
	struct iommu_domain *parent;
	struct guest g;
	uint64_t root;       /* the guest's first-stage root (GPA) */
};

static void machine_up(struct device **dev, const struct vtd_features *f, bool pri)
{
	if (vtd_iommu_register(&dmar0, f))
		abort();
	*dev = vdev_make("0000:00:04.0", &dmar0, pri);
	if (iommu_probe_device(*dev))
		abort();
}

static void machine_down(struct device *dev)
{
	iommu_release_device(dev);
	device_put(dev);
	vtd_iommu_unregister(&dmar0);
}

FIXTURE_SETUP(vtd)
{
	machine_up(&self->dev, &vtd_default_features, true);
	self->parent = iommu_paging_domain_alloc_flags(self->dev, IOMMU_DOMAIN_ALLOC_NEST_PARENT |
							   IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING, NULL);
	ASSERT_FALSE(IS_ERR(self->parent));
	guest_init(&self->g);
	ASSERT_EQ(0, guest_map(&self->g, self->parent, false));
	self->root = guest_page(&self->g);
}

FIXTURE_TEARDOWN(vtd)
{
	iommu_domain_free(self->parent);
	machine_down(self->dev);
	free(self->g.ram);
}

static struct iommu_domain *nested_alloc(struct iommu_domain *parent, struct device *dev,
					 uint64_t pgtbl, uint32_t aw, uint64_t flags)
{
	struct iommu_hwpt_vtd_s1 s1 = { .flags = flags, .pgtbl_addr = pgtbl, .addr_width = aw };
	struct iommu_user_data ud = { .type = IOMMU_HWPT_DATA_VTD_S1, .data = &s1,
				      .len = sizeof(s1) };

	return vtd_iommu_ops.domain_alloc_nested(dev, parent, 0, &ud);
}

/* ---- registers and hw_info ------------------------------------------------------------------ */

TEST(regs_follow_features)
{
	struct vtd_features f = vtd_default_features;
	uint64_t cap, ecap;

	ASSERT_EQ(0, vtd_iommu_register(&dmar0, &f));
	vtd_iommu_regs(&dmar0, &cap, &ecap);
	EXPECT_EQ(47, (cap >> VTD_CAP_MGAW_SHIFT) & 0x3f);
	EXPECT_EQ(VTD_CAP_SAGAW_4L, cap & (VTD_CAP_SAGAW_4L | VTD_CAP_SAGAW_5L));
	EXPECT_TRUE(cap & VTD_CAP_FS1GP);
	EXPECT_TRUE(cap & VTD_CAP_FS5LP);
	EXPECT_TRUE(cap & VTD_CAP_SSLPS_2M);
	EXPECT_TRUE(cap & VTD_CAP_SSLPS_1G);
	EXPECT_FALSE(cap & VTD_CAP_CM);
	const uint64_t want[] = { VTD_ECAP_SMTS, VTD_ECAP_NEST, VTD_ECAP_SSTS, VTD_ECAP_FSTS,
				  VTD_ECAP_SSADS, VTD_ECAP_SMPWC, VTD_ECAP_SRS, VTD_ECAP_EAFS,
				  VTD_ECAP_PRS, VTD_ECAP_PDS, VTD_ECAP_DT, VTD_ECAP_PASID };

	for (unsigned int i = 0; i < ARRAY_SIZE(want); i++)
		EXPECT_EQ(want[i], ecap & want[i]);
	EXPECT_EQ(19, (ecap >> VTD_ECAP_PSS_SHIFT) & 0x1f);
	vtd_iommu_unregister(&dmar0);

	f = (struct vtd_features){ .five_level = true, .pasid_bits = 0 };
	ASSERT_EQ(0, vtd_iommu_register(&dmar0, &f));
	vtd_iommu_regs(&dmar0, &cap, &ecap);
	EXPECT_EQ(56, (cap >> VTD_CAP_MGAW_SHIFT) & 0x3f);
	EXPECT_TRUE(cap & VTD_CAP_SAGAW_5L);
	EXPECT_EQ(0, cap & (VTD_CAP_FS1GP | VTD_CAP_FS5LP));
	EXPECT_EQ(0, ecap & (VTD_ECAP_NEST | VTD_ECAP_SSADS | VTD_ECAP_SRS | VTD_ECAP_EAFS |
			     VTD_ECAP_PRS | VTD_ECAP_PASID));
	EXPECT_EQ(0u, dmar0.max_pasids);
	vtd_iommu_unregister(&dmar0);

	f.pasid_bits = 21;
	EXPECT_EQ(-EINVAL, vtd_iommu_register(&dmar0, &f));
}

TEST(hw_info_is_intel_vtd)
{
	struct iommu_hw_info_vtd *info;
	struct device *dev;
	uint32_t len = 0, type = IOMMU_HW_INFO_TYPE_DEFAULT;
	uint64_t cap, ecap;

	machine_up(&dev, &vtd_default_features, false);
	info = vtd_iommu_ops.hw_info(dev, &len, &type);
	ASSERT_FALSE(IS_ERR_OR_NULL(info));
	vtd_iommu_regs(&dmar0, &cap, &ecap);
	EXPECT_EQ(IOMMU_HW_INFO_TYPE_INTEL_VTD, type);
	EXPECT_EQ(24u, len);
	EXPECT_EQ(IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17, info->flags);
	EXPECT_EQ(cap, info->cap_reg);
	EXPECT_EQ(ecap, info->ecap_reg);
	uiommu_free(info);
	type = IOMMU_HW_INFO_TYPE_INTEL_VTD;
	info = vtd_iommu_ops.hw_info(dev, &len, &type);
	ASSERT_FALSE(IS_ERR_OR_NULL(info));
	uiommu_free(info);
	type = IOMMU_HW_INFO_TYPE_ARM_SMMUV3;
	EXPECT_EQ(-EOPNOTSUPP, PTR_ERR(vtd_iommu_ops.hw_info(dev, &len, &type)));
	EXPECT_TRUE(iommu_device_capable(dev, IOMMU_CAP_DIRTY_TRACKING));
	EXPECT_FALSE(iommu_device_capable(dev, IOMMU_CAP_PCI_ATS_SUPPORTED));
	machine_down(dev);
}

/* topology_load() of @json written to a file: its result. */
static int load_json(const char *json)
{
	char path[] = "/tmp/uiommu-vtd-topo-XXXXXX";
	int rc;

	if (topology_file_write(path, json))
		abort();
	rc = topology_load(path);
	unlink(path);
	return rc;
}

TEST(topology_vtd_instances_and_their_errors)
{
	struct iommu_resv_region r[4];
	struct iommu_device *dmar;
	struct device *dev;
	uint64_t cap, ecap;

	/* Every bad description first: nothing is loaded by them. */
	EXPECT_EQ(-EINVAL, load_json("{ \"iommus\": [ { \"name\": \"x\", \"features\": {} } ],"
				     " \"devices\": [] }"));
	EXPECT_EQ(-EINVAL, load_json("{ \"iommus\": [ { \"name\": \"x\", \"driver\": \"vtd\","
				     " \"max_pasids\": 4 } ], \"devices\": [] }"));
	EXPECT_EQ(-EINVAL, load_json("{ \"iommus\": [ { \"name\": \"x\", \"driver\": \"vtd\","
				     " \"features\": { \"nset\": true } } ], \"devices\": [] }"));
	EXPECT_EQ(-EINVAL, load_json("{ \"iommus\": [ { \"name\": \"x\", \"driver\": \"vtd\","
				     " \"features\": { \"pasid_bits\": 21 } } ], \"devices\": [] }"));
	EXPECT_EQ(-EINVAL, load_json("{ \"iommus\": [ { \"name\": \"x\", \"driver\": \"vtd\","
				     " \"features\": [] } ], \"devices\": [] }"));
	ASSERT_EQ(0, load_json("{ \"iommus\": [ { \"name\": \"dmar0\", \"driver\": \"vtd\","
			       " \"features\": { \"five_level\": true, \"ssads\": false,"
			       " \"pasid_bits\": 8 } } ],"
			       " \"devices\": [ { \"bdf\": \"0000:00:04.0\", \"iommu\": \"dmar0\","
			       " \"resv_direct\": [ { \"start\": 4096, \"length\": 4096 } ] } ] }"));
	dmar = topology_find_iommu("dmar0");
	ASSERT_TRUE(dmar != NULL);
	ASSERT_TRUE(vtd_iommu_is_instance(dmar));
	vtd_iommu_regs(dmar, &cap, &ecap);
	EXPECT_TRUE(cap & VTD_CAP_SAGAW_5L);
	EXPECT_EQ(0u, ecap & VTD_ECAP_SSADS);
	EXPECT_EQ(7u, (ecap >> VTD_ECAP_PSS_SHIFT) & 0x1f);
	EXPECT_EQ(256u, dmar->max_pasids);
	EXPECT_FALSE(dmar->dirty_tracking);
	/* The device's RMRR and the MSI window, in that order; a 5-level default domain. */
	dev = topology_find_device("0000:00:04.0");
	ASSERT_TRUE(dev != NULL);
	ASSERT_EQ(2u, iommu_get_resv_regions(dev, r, 4));
	EXPECT_EQ(4096u, r[0].start);
	EXPECT_EQ(IOMMU_RESV_DIRECT, r[0].type);
	EXPECT_EQ(VTD_MSI_WINDOW_START, r[1].start);
	EXPECT_EQ(IOMMU_RESV_MSI, r[1].type);
	EXPECT_EQ((UINT64_C(1) << 57) - 1,
		  iommu_get_domain_for_dev(dev)->geometry.aperture_end);

	/* uiommuctl shows the driver and the registers it reports. */
	char *text = NULL, want[128];
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	ASSERT_TRUE(out != NULL);
	ASSERT_EQ(0, ctl_execute("show", out));
	fclose(out);
	snprintf(want, sizeof(want), "iommu dmar0: driver intel-iommu, max_pasids 256, cap 0x%016llx, "
		 "ecap 0x%016llx\n", (unsigned long long)cap, (unsigned long long)ecap);
	EXPECT_TRUE(strstr(text, want) != NULL);
	if (!strstr(text, want))
		TH_LOG("%s", text);
	free(text);
}

/* ---- the second stage ------------------------------------------------------------------------- */

TEST(second_stage_4_and_5_levels)
{
	static uint8_t buf[2 * 4096] __attribute__((aligned(4096)));
	uint64_t pa = (uint64_t)(uintptr_t)buf;
	struct vtd_ss ss;
	struct vtd_ss_leaf leaf;
	size_t mapped;

	for (unsigned int levels = 4; levels <= 5; levels++) {
		uint64_t top = UINT64_C(1) << (levels == 4 ? 48 : 57);

		ASSERT_EQ(0, vtd_ss_init(&ss, levels));
		ASSERT_EQ(levels == 4 ? 48u : 57u, ss.width);
		ASSERT_EQ(0, vtd_ss_map(&ss, top - SZ_4K, pa, SZ_4K, 1, RW, &mapped));
		ASSERT_EQ(-ERANGE, vtd_ss_map(&ss, top, pa, SZ_4K, 1, RW, &mapped));
		ASSERT_EQ(0, vtd_ss_walk(&ss, top - SZ_4K + 5, IOMMU_WRITE, &leaf));
		EXPECT_EQ(pa + 5, leaf.phys);
		EXPECT_EQ(SZ_4K, leaf.size);
		/* The root entry of the top: levels - 1 tables below it, R|W on each. */
		uint64_t e = ss.root[511];

		EXPECT_EQ(VTD_SS_R | VTD_SS_W, e & 0xfff);
		EXPECT_EQ(-ENOENT, vtd_ss_walk(&ss, top, IOMMU_READ, &leaf));
		EXPECT_EQ(-EEXIST, vtd_ss_map(&ss, top - SZ_4K, pa, SZ_4K, 1, RW, &mapped));
		EXPECT_EQ(SZ_4K, vtd_ss_unmap(&ss, top - SZ_4K, SZ_4K, 1));
		EXPECT_EQ(-ENOENT, vtd_ss_walk(&ss, top - SZ_4K, IOMMU_READ, &leaf));
		vtd_ss_destroy(&ss);
	}
	EXPECT_EQ(-EINVAL, vtd_ss_init(&ss, 3));
}

TEST(second_stage_leaves_and_unmap)
{
	struct vtd_ss ss;
	struct vtd_ss_leaf leaf;
	uint64_t pa = SZ_1G * 3; /* never dereferenced: only the walk's output */
	size_t mapped;

	ASSERT_EQ(0, vtd_ss_init(&ss, 4));
	ASSERT_EQ(0, vtd_ss_map(&ss, SZ_1G, pa, SZ_1G, 1, IOMMU_READ, &mapped));
	ASSERT_EQ(0, vtd_ss_map(&ss, 4 * SZ_1G, pa, SZ_2M, 2, RW, &mapped));
	ASSERT_EQ(0, vtd_ss_map(&ss, 8 * SZ_1G, pa, SZ_4K, 3, RW, &mapped));
	EXPECT_EQ(3 * SZ_4K, mapped);
	ASSERT_EQ(0, vtd_ss_walk(&ss, SZ_1G + 12345, IOMMU_READ, &leaf));
	EXPECT_EQ(pa + 12345, leaf.phys);
	EXPECT_EQ(SZ_1G, leaf.size);
	EXPECT_EQ(IOMMU_READ, leaf.prot);
	EXPECT_EQ(-EACCES, vtd_ss_walk(&ss, SZ_1G, IOMMU_WRITE, &leaf));
	ASSERT_EQ(0, vtd_ss_walk(&ss, 4 * SZ_1G + SZ_2M + 7, IOMMU_WRITE, &leaf));
	EXPECT_EQ(pa + SZ_2M + 7, leaf.phys);
	EXPECT_EQ(SZ_2M, leaf.size);
	/* Bad arguments, overlaps, a 4K map inside a 2M leaf. */
	EXPECT_EQ(-EINVAL, vtd_ss_map(&ss, 0, pa, 8192, 1, RW, &mapped));
	EXPECT_EQ(-EINVAL, vtd_ss_map(&ss, SZ_4K / 2, pa, SZ_4K, 1, RW, &mapped));
	EXPECT_EQ(-EINVAL, vtd_ss_map(&ss, 0, pa, SZ_4K, 0, RW, &mapped));
	EXPECT_EQ(-EINVAL, vtd_ss_map(&ss, 0, pa, SZ_4K, 1, 0, &mapped));
	EXPECT_EQ(-EEXIST, vtd_ss_map(&ss, 4 * SZ_1G + SZ_4K, pa, SZ_4K, 1, RW, &mapped));
	EXPECT_EQ(-EEXIST, vtd_ss_map(&ss, 8 * SZ_1G, pa, SZ_4K, 1, RW, &mapped));
	/* Part of a large leaf is never unmapped; a hole stops the unmap. */
	EXPECT_EQ(0u, vtd_ss_unmap(&ss, 4 * SZ_1G, SZ_4K, 1));
	EXPECT_EQ(SZ_2M, vtd_ss_unmap(&ss, 4 * SZ_1G + SZ_2M, SZ_2M, 2));
	EXPECT_EQ(2 * SZ_4K, vtd_ss_unmap(&ss, 8 * SZ_1G + SZ_4K, SZ_4K, 4));
	/* Runs across table boundaries: every page where it belongs, then all gone. */
	ASSERT_EQ(0, vtd_ss_map(&ss, 16 * SZ_1G - 300 * SZ_4K, pa, SZ_4K, 1100, RW, &mapped));
	for (uint64_t k = 0; k < 1100; k++) {
		ASSERT_EQ(0, vtd_ss_walk(&ss, 16 * SZ_1G - 300 * SZ_4K + k * SZ_4K, 0, &leaf));
		ASSERT_EQ(pa + k * SZ_4K, leaf.phys);
	}
	EXPECT_EQ(1100 * SZ_4K, vtd_ss_unmap(&ss, 16 * SZ_1G - 300 * SZ_4K, SZ_4K, 1100));
	for (uint64_t k = 0; k < 1100; k += 99)
		EXPECT_EQ(-ENOENT, vtd_ss_walk(&ss, 16 * SZ_1G - 300 * SZ_4K + k * SZ_4K, 0, &leaf));
	/*
	 * A run that meets a taken slot, in its first table and in a later one: the pages before
	 * it are mapped and counted, the taken slot keeps its page, nothing after is touched; an
	 * unmap stops at the first hole, also past a table boundary.
	 */
	uint64_t run = 32 * SZ_1G - 10 * SZ_4K;

	ASSERT_EQ(0, vtd_ss_map(&ss, run + 5 * SZ_4K, pa + SZ_1G, SZ_4K, 1, RW, &mapped));
	ASSERT_EQ(0, vtd_ss_map(&ss, run + 15 * SZ_4K, pa + SZ_1G, SZ_4K, 1, RW, &mapped));
	EXPECT_EQ(-EEXIST, vtd_ss_map(&ss, run, pa, SZ_4K, 8, RW, &mapped));
	EXPECT_EQ(5 * SZ_4K, mapped);
	EXPECT_EQ(-EEXIST, vtd_ss_map(&ss, run + 6 * SZ_4K, pa, SZ_4K, 20, RW, &mapped));
	EXPECT_EQ(9 * SZ_4K, mapped);
	for (uint64_t k = 0; k < 26; k++) {
		int rc = vtd_ss_walk(&ss, run + k * SZ_4K, 0, &leaf);

		if (k == 5 || k == 15) {
			ASSERT_EQ(0, rc);
			EXPECT_EQ(pa + SZ_1G, leaf.phys);
		} else if (k < 15) {
			ASSERT_EQ(0, rc);
			EXPECT_EQ(pa + (k < 5 ? k : k - 6) * SZ_4K, leaf.phys);
		} else {
			EXPECT_EQ(-ENOENT, rc);
		}
	}
	EXPECT_EQ(16 * SZ_4K, vtd_ss_unmap(&ss, run, SZ_4K, 26));
	EXPECT_EQ(-ENOENT, vtd_ss_walk(&ss, run + 15 * SZ_4K, 0, &leaf));
	/* An unmap of a 2M slot that holds a table removes the table with it. */
	EXPECT_EQ(SZ_2M, vtd_ss_unmap(&ss, 8 * SZ_1G, SZ_2M, 1));
	EXPECT_EQ(-ENOENT, vtd_ss_walk(&ss, 8 * SZ_1G, IOMMU_READ, &leaf));
	vtd_ss_destroy(&ss);
}

TEST(alloc_paging_flags_errnos)
{
	struct vtd_features f = vtd_default_features;
	struct iommu_user_data ud = { .type = IOMMU_HWPT_DATA_VTD_S1 };
	struct iommu_domain *d;
	struct device *dev;
	size_t mapped;

	machine_up(&dev, &f, false);
	EXPECT_EQ(-EOPNOTSUPP, PTR_ERR(iommu_paging_domain_alloc_flags(dev, 0, &ud)));
	EXPECT_EQ(-EOPNOTSUPP, PTR_ERR(iommu_paging_domain_alloc_flags(dev, 1u << 2, NULL)));
	/* The erratum: a nest parent refuses read-only maps, a plain domain takes them. */
	d = iommu_paging_domain_alloc_flags(dev, IOMMU_DOMAIN_ALLOC_NEST_PARENT, NULL);
	ASSERT_FALSE(IS_ERR(d));
	EXPECT_EQ(-EINVAL, iommu_map(d, 0, SZ_1G, SZ_4K, IOMMU_READ));
	EXPECT_EQ(0, iommu_map(d, 0, SZ_1G, SZ_4K, RW));
	EXPECT_TRUE(d->dirty_ops == NULL);
	EXPECT_EQ((UINT64_C(1) << 48) - 1, d->geometry.aperture_end);
	iommu_domain_free(d);
	d = iommu_paging_domain_alloc(dev);
	ASSERT_FALSE(IS_ERR(d));
	EXPECT_EQ(0, d->ops->map_pages(d, 0, SZ_1G, SZ_4K, 1, IOMMU_READ, &mapped));
	iommu_domain_free(d);
	machine_down(dev);

	f.nest = false;
	f.ssads = false;
	machine_up(&dev, &f, false);
	EXPECT_EQ(-EOPNOTSUPP, PTR_ERR(iommu_paging_domain_alloc_flags(
				       dev, IOMMU_DOMAIN_ALLOC_NEST_PARENT, NULL)));
	EXPECT_EQ(-EOPNOTSUPP, PTR_ERR(iommu_paging_domain_alloc_flags(
				       dev, IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING, NULL)));
	EXPECT_FALSE(iommu_device_capable(dev, IOMMU_CAP_DIRTY_TRACKING));
	machine_down(dev);
}

static uint64_t dirty_seen[8];
static unsigned int nr_dirty_seen;

static void dirty_record(struct iommu_dirty_bitmap *dirty, uint64_t iova, uint64_t length)
{
	(void)dirty;
	if (nr_dirty_seen < 8)
		dirty_seen[nr_dirty_seen++] = iova ^ length;
}

TEST_F(vtd, dirty_tracking_through_the_walk)
{
	struct iommu_dirty_bitmap bm = { .record = dirty_record };
	const struct iommu_dirty_ops *ops = self->parent->dirty_ops;
	uint64_t gpa = GUEST_BASE + 16 * SZ_4K, *pte;
	struct vtd_ss_leaf leaf;
	struct vtd_ss *ss;

	ASSERT_TRUE(ops != NULL);
	EXPECT_EQ(-EINVAL, ops->read_and_clear_dirty(self->parent, 0, SZ_1G, 0, &bm));
	ASSERT_EQ(0, ops->set_dirty_tracking(self->parent, true));
	/* The walk of the tests' own table: find the leaf to look at its bits. */
	ss = vtd_domain_ss(self->parent);
	ASSERT_EQ(0, vtd_ss_walk(ss, gpa, IOMMU_READ, &leaf));
	EXPECT_TRUE(leaf.clean);
	nr_dirty_seen = 0;
	ASSERT_EQ(0, ops->read_and_clear_dirty(self->parent, GUEST_BASE, SZ_2M * 2, 0, &bm));
	EXPECT_EQ(0u, nr_dirty_seen);
	ASSERT_EQ(0, vtd_ss_walk(ss, gpa, IOMMU_WRITE, &leaf));
	EXPECT_FALSE(leaf.clean);
	ASSERT_EQ(0, ops->read_and_clear_dirty(self->parent, GUEST_BASE, SZ_2M * 2,
					       IOMMU_DIRTY_NO_CLEAR, &bm));
	ASSERT_EQ(1u, nr_dirty_seen);
	EXPECT_EQ(gpa ^ SZ_4K, dirty_seen[0]);
	ASSERT_EQ(0, ops->read_and_clear_dirty(self->parent, GUEST_BASE, SZ_2M * 2, 0, &bm));
	ASSERT_EQ(2u, nr_dirty_seen);
	ASSERT_EQ(0, ops->read_and_clear_dirty(self->parent, GUEST_BASE, SZ_2M * 2, 0, &bm));
	EXPECT_EQ(2u, nr_dirty_seen);
	/* A software lookup sets nothing. */
	EXPECT_EQ(guest_hpa(&self->g, gpa), iommu_iova_to_phys(self->parent, gpa));
	ASSERT_EQ(0, ops->read_and_clear_dirty(self->parent, GUEST_BASE, SZ_2M * 2, 0, &bm));
	EXPECT_EQ(2u, nr_dirty_seen);
	(void)pte;
	ASSERT_EQ(0, ops->set_dirty_tracking(self->parent, false));
	ASSERT_EQ(0, vtd_ss_walk(ss, gpa, IOMMU_WRITE, &leaf));
	EXPECT_EQ(-EINVAL, ops->read_and_clear_dirty(self->parent, GUEST_BASE, SZ_4K, 0, &bm));
}

/* ---- nested allocation and attach ------------------------------------------------------------- */

TEST_F(vtd, nested_alloc_errnos_in_kernel_order)
{
	struct iommu_hwpt_vtd_s1 s1 = { .pgtbl_addr = self->root, .addr_width = 48 };
	struct iommu_user_data ud = { .type = IOMMU_HWPT_DATA_VTD_S1, .data = &s1,
				      .len = sizeof(s1) };
	struct iommu_user_data bad_type = ud;
	struct iommu_domain *plain, *n;

	plain = iommu_paging_domain_alloc(self->dev);
	ASSERT_FALSE(IS_ERR(plain));
	bad_type.type = IOMMU_HWPT_DATA_ARM_SMMUV3;
	EXPECT_EQ(-EOPNOTSUPP, PTR_ERR(vtd_domain_alloc_nested(self->dev, self->parent,
							       IOMMU_DOMAIN_ALLOC_NEST_PARENT,
							       &ud)));
	/* The type before the parent. */
	EXPECT_EQ(-EOPNOTSUPP, PTR_ERR(vtd_domain_alloc_nested(self->dev, plain, 0, &bad_type)));
	EXPECT_EQ(-EINVAL, PTR_ERR(vtd_domain_alloc_nested(self->dev, plain, 0, &ud)));
	ud.len = 16;
	EXPECT_EQ(-EINVAL, PTR_ERR(vtd_domain_alloc_nested(self->dev, self->parent, 0, &ud)));
	ud.len = 32;
	EXPECT_EQ(-EINVAL, PTR_ERR(vtd_domain_alloc_nested(self->dev, self->parent, 0, &ud)));
	ud.len = sizeof(s1);
	/* addr_width, SRE and EAFE are judged at attach, unknown flag bits never. */
	s1.addr_width = 39;
	s1.flags = 1u << 7;
	n = vtd_domain_alloc_nested(self->dev, self->parent, IOMMU_DOMAIN_ALLOC_PASID, &ud);
	ASSERT_FALSE(IS_ERR(n));
	EXPECT_EQ(IOMMU_DOMAIN_NESTED, n->type);
	EXPECT_TRUE(vtd_domain_is_nested(n));
	EXPECT_FALSE(vtd_domain_is_nested(self->parent));
	EXPECT_EQ(-EINVAL, iommu_attach_device(n, self->dev));
	iommu_domain_free(n);
	iommu_domain_free(plain);
}

TEST(nested_alloc_needs_nest)
{
	struct vtd_features f = vtd_default_features;
	struct iommu_domain *parent;
	struct device *dev;

	machine_up(&dev, &f, false);
	parent = iommu_paging_domain_alloc_flags(dev, IOMMU_DOMAIN_ALLOC_NEST_PARENT, NULL);
	ASSERT_FALSE(IS_ERR(parent));
	ASSERT_EQ(0, vtd_iommu_register(&dmar1, &(struct vtd_features){ .pasid_bits = 8 }));
	struct device *other = vdev_make("0000:00:05.0", &dmar1, false);

	ASSERT_EQ(0, iommu_probe_device(other));
	EXPECT_EQ(-EOPNOTSUPP, PTR_ERR(nested_alloc(parent, other, SZ_4K, 48, 0)));
	/* The parent itself cannot go on an instance without NEST. */
	EXPECT_EQ(-EINVAL, iommu_attach_device(parent, other));
	iommu_release_device(other);
	device_put(other);
	vtd_iommu_unregister(&dmar1);
	iommu_domain_free(parent);
	machine_down(dev);
}

/* The attach checks of A.7 against an instance that lacks each feature in turn. */
TEST(nested_attach_errnos)
{
	struct vtd_features lean = { .nest = true, .pasid_bits = 20 };
	struct iommu_domain *parent, *n;
	struct device *dev, *other;
	struct {
		uint32_t aw;
		uint64_t flags;
		int on_rich, on_lean;
	} cases[] = {
		{ 48, 0, 0, 0 },
		{ 57, 0, 0, -EINVAL },                         /* FS5LP */
		{ 39, 0, -EINVAL, -EINVAL },
		{ 0, 0, -EINVAL, -EINVAL },
		{ 48, IOMMU_VTD_S1_SRE, 0, -EINVAL },           /* SRS */
		{ 48, IOMMU_VTD_S1_EAFE, 0, -EINVAL },          /* EAFS */
		{ 48, IOMMU_VTD_S1_WPE, 0, 0 },                 /* WPE alone: no check */
	};

	machine_up(&dev, &vtd_default_features, false);
	ASSERT_EQ(0, vtd_iommu_register(&dmar1, &lean));
	other = vdev_make("0000:00:05.0", &dmar1, false);
	ASSERT_EQ(0, iommu_probe_device(other));
	parent = iommu_paging_domain_alloc_flags(dev, IOMMU_DOMAIN_ALLOC_NEST_PARENT, NULL);
	ASSERT_FALSE(IS_ERR(parent));
	for (unsigned int i = 0; i < ARRAY_SIZE(cases); i++) {
		n = nested_alloc(parent, dev, SZ_1G, cases[i].aw, cases[i].flags);
		ASSERT_FALSE(IS_ERR(n));
		EXPECT_EQ(cases[i].on_rich, iommu_attach_device(n, dev));
		EXPECT_EQ(cases[i].on_lean, iommu_attach_device(n, other));
		if (!cases[i].on_rich)
			iommu_detach_device(n, dev);
		if (!cases[i].on_lean)
			iommu_detach_device(n, other);
		iommu_domain_free(n);
	}
	/* Fault-capable without PRI on the device: ENODEV, after the parent check. */
	n = nested_alloc(parent, dev, SZ_1G, 48, 0);
	n->iopf_handler = (int (*)(struct iopf_group *))abort;
	EXPECT_EQ(-ENODEV, iommu_attach_device(n, dev));
	iommu_domain_free(n);
	/* A dirty-tracking parent is incompatible with an instance without SSADS. */
	iommu_domain_free(parent);
	parent = iommu_paging_domain_alloc_flags(dev, IOMMU_DOMAIN_ALLOC_NEST_PARENT |
						      IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING, NULL);
	n = nested_alloc(parent, dev, SZ_1G, 48, 0);
	EXPECT_EQ(-EINVAL, iommu_attach_device(n, other));
	EXPECT_EQ(-EINVAL, iommu_attach_device(parent, other));
	iommu_domain_free(n);
	iommu_domain_free(parent);
	iommu_release_device(other);
	device_put(other);
	vtd_iommu_unregister(&dmar1);
	machine_down(dev);
}

TEST_F(vtd, pasid_entries_at_rid_and_pasid)
{
	struct iommu_domain *n;
	uint64_t val[8];

	n = nested_alloc(self->parent, self->dev, self->root | 0xabc, 57,
			 IOMMU_VTD_S1_SRE | IOMMU_VTD_S1_WPE | IOMMU_VTD_S1_EAFE);
	ASSERT_FALSE(IS_ERR(n));
	ASSERT_EQ(0, iommu_attach_device(n, self->dev));
	ASSERT_EQ(0, vtd_dev_pasid_entry(self->dev, IOMMU_NO_PASID, val));
	EXPECT_EQ(1u, val[0] & 1);                          /* P */
	EXPECT_EQ(2u, (val[0] >> 2) & 7);                   /* AW: 4-level parent */
	EXPECT_EQ(3u, (val[0] >> 6) & 7);                   /* PGTT nested */
	EXPECT_EQ(0u, (val[0] >> 9) & 1);                   /* SSADE: tracking off */
	EXPECT_EQ(n->id & 0xffff, val[1] & 0xffff);          /* DID */
	EXPECT_EQ(1u, (val[2] >> 0) & 1);                   /* SRE */
	EXPECT_EQ(1u, (val[2] >> 2) & 3);                   /* FSPM 5-level */
	EXPECT_EQ(1u, (val[2] >> 4) & 1);                   /* WPE */
	EXPECT_EQ(1u, (val[2] >> 7) & 1);                   /* EAFE */
	EXPECT_EQ(self->root, val[2] & ~UINT64_C(0xfff));   /* FSPTPTR, low bits dropped */
	ASSERT_EQ(0, self->parent->dirty_ops->set_dirty_tracking(self->parent, true));
	ASSERT_EQ(0, vtd_dev_pasid_entry(self->dev, IOMMU_NO_PASID, val));
	EXPECT_EQ(1u, (val[0] >> 9) & 1);
	EXPECT_EQ(-ENOENT, vtd_dev_pasid_entry(self->dev, 5, val));

	/* The same nested domain at a PASID, then off it. */
	ASSERT_EQ(0, iommu_attach_device_pasid(n, self->dev, 5, NULL));
	ASSERT_EQ(0, vtd_dev_pasid_entry(self->dev, 5, val));
	EXPECT_EQ(3u, (val[0] >> 6) & 7);
	EXPECT_TRUE(iommu_get_domain_for_dev_pasid(self->dev, 5, 0) == n);
	iommu_detach_device_pasid(n, self->dev, 5);
	EXPECT_EQ(-ENOENT, vtd_dev_pasid_entry(self->dev, 5, val));
	/* WPE without SRE is not written. */
	iommu_detach_device(n, self->dev);
	iommu_domain_free(n);
	n = nested_alloc(self->parent, self->dev, self->root, 48, IOMMU_VTD_S1_WPE);
	ASSERT_EQ(0, iommu_attach_device(n, self->dev));
	ASSERT_EQ(0, vtd_dev_pasid_entry(self->dev, IOMMU_NO_PASID, val));
	EXPECT_EQ(0u, val[2] & 0xff);
	iommu_detach_device(n, self->dev);
	iommu_domain_free(n);
	/* Back on the default domain: a second-stage-only entry. */
	ASSERT_EQ(0, vtd_dev_pasid_entry(self->dev, IOMMU_NO_PASID, val));
	EXPECT_EQ(2u, (val[0] >> 6) & 7);
}

/* ---- the first-stage walk, case by case ----------------------------------------------------- */

static struct vtd_s1_cfg cfg_of(uint64_t root, unsigned int levels)
{
	return (struct vtd_s1_cfg){ .pgtbl_gpa = root, .levels = levels, .fs1gp = true,
				    .gpa_width = 48 };
}

TEST_F(vtd, first_stage_rights_and_bits)
{
	struct vtd_s1_cfg c = cfg_of(self->root, 4);
	struct vtd_ss *ss = vtd_domain_ss(self->parent);
	uint64_t data = guest_page(&self->g), *leaf, *pml4e;
	uint64_t iova = UINT64_C(0x7f1234567000);
	struct vtd_xlate x;

	leaf = fs_map(&self->g, self->root, 4, iova, data, 1, VTD_FS_P | VTD_FS_US, TABLE_BITS);
	pml4e = guest_ptr(&self->g, self->root) + idx_of(iova, 4);
	/* A read: A set everywhere (not D), the output through stage 2. */
	ASSERT_EQ(0, vtd_nested_walk(&c, ss, iova + 0x10, 0, &x));
	EXPECT_EQ(data + 0x10, x.gpa);
	EXPECT_EQ(guest_hpa(&self->g, data) + 0x10, x.phys);
	EXPECT_EQ(IOMMU_READ, x.prot);
	EXPECT_TRUE(*leaf & VTD_FS_A);
	EXPECT_TRUE(*pml4e & VTD_FS_A);
	EXPECT_FALSE(*leaf & (VTD_FS_D | VTD_FS_EA));
	EXPECT_TRUE(x.clean);
	/* Read-only leaf: a user write faults and changes nothing. */
	*leaf &= ~VTD_FS_A;
	EXPECT_EQ(-EFAULT, vtd_nested_walk(&c, ss, iova, VTD_REQ_WRITE, &x));
	EXPECT_EQ(VTD_FS_WRITE, x.reason);
	EXPECT_FALSE(*leaf & VTD_FS_A);
	/* Supervisor: refused without SRE; with SRE and no WPE, R/W is ignored. */
	EXPECT_EQ(-EFAULT, vtd_nested_walk(&c, ss, iova, VTD_REQ_PRIV, &x));
	EXPECT_EQ(VTD_FS_PRIV, x.reason);
	c.sre = true;
	ASSERT_EQ(0, vtd_nested_walk(&c, ss, iova, VTD_REQ_PRIV | VTD_REQ_WRITE, &x));
	EXPECT_TRUE(*leaf & VTD_FS_D);
	EXPECT_EQ(RW, x.prot);
	c.wpe = true;
	EXPECT_EQ(-EFAULT, vtd_nested_walk(&c, ss, iova, VTD_REQ_PRIV | VTD_REQ_WRITE, &x));
	EXPECT_EQ(VTD_FS_WRITE, x.reason);
	/* U/S=0 at one level: user requests fault, supervisor ones do not. */
	*pml4e &= ~VTD_FS_US;
	EXPECT_EQ(-EFAULT, vtd_nested_walk(&c, ss, iova, 0, &x));
	EXPECT_EQ(VTD_FS_USER, x.reason);
	EXPECT_EQ(0, vtd_nested_walk(&c, ss, iova, VTD_REQ_PRIV, &x));
	*pml4e |= VTD_FS_US;
	/* Writable: D only on a write; EA with EAFE. */
	*leaf = data | VTD_FS_P | VTD_FS_US | VTD_FS_RW;
	c.eafe = true;
	ASSERT_EQ(0, vtd_nested_walk(&c, ss, iova, 0, &x));
	EXPECT_EQ(RW, x.prot);
	EXPECT_EQ(VTD_FS_A | VTD_FS_EA, *leaf & (VTD_FS_A | VTD_FS_EA | VTD_FS_D));
	ASSERT_EQ(0, vtd_nested_walk(&c, ss, iova, VTD_REQ_WRITE, &x));
	EXPECT_TRUE(*leaf & VTD_FS_D);
	EXPECT_FALSE(x.clean);
	/* XD at any level stops execute requests only. */
	*pml4e |= VTD_FS_XD;
	EXPECT_EQ(-EFAULT, vtd_nested_walk(&c, ss, iova, VTD_REQ_EXEC, &x));
	EXPECT_EQ(VTD_FS_EXEC, x.reason);
	EXPECT_EQ(0, vtd_nested_walk(&c, ss, iova, 0, &x));
	*pml4e &= ~VTD_FS_XD;
	EXPECT_EQ(0, vtd_nested_walk(&c, ss, iova, VTD_REQ_EXEC, &x));
	/* Not present. */
	*leaf &= ~VTD_FS_P;
	EXPECT_EQ(-EFAULT, vtd_nested_walk(&c, ss, iova, 0, &x));
	EXPECT_EQ(VTD_FS_NOT_PRESENT, x.reason);
}

TEST_F(vtd, first_stage_large_leaves_reserved_bits_canonical)
{
	struct vtd_s1_cfg c = cfg_of(self->root, 4);
	struct vtd_ss *ss = vtd_domain_ss(self->parent);
	uint64_t *slot, iova2m = UINT64_C(0x40200000) + SZ_2M * 4, iova1g = 5 * SZ_1G;
	struct vtd_xlate x;

	/* A 2 MiB leaf onto GUEST_BASE (its first 2 MiB are guest RAM). */
	slot = fs_map(&self->g, self->root, 4, iova2m, GUEST_BASE, 2,
		      VTD_FS_P | VTD_FS_US | VTD_FS_RW, TABLE_BITS);
	ASSERT_EQ(0, vtd_nested_walk(&c, ss, iova2m + 0x12345, 0, &x));
	EXPECT_EQ(GUEST_BASE + 0x12345, x.gpa);
	/* PAT (bit 12) is allowed, other low address bits are reserved. */
	*slot |= SZ_4K;
	EXPECT_EQ(0, vtd_nested_walk(&c, ss, iova2m, 0, &x));
	*slot |= 2 * SZ_4K;
	EXPECT_EQ(-EFAULT, vtd_nested_walk(&c, ss, iova2m, 0, &x));
	EXPECT_EQ(VTD_FS_RESERVED, x.reason);
	*slot &= ~(3 * SZ_4K);
	/* Address bits at and above the GPA width are reserved. */
	*slot |= UINT64_C(1) << 49;
	EXPECT_EQ(-EFAULT, vtd_nested_walk(&c, ss, iova2m, 0, &x));
	EXPECT_EQ(VTD_FS_RESERVED, x.reason);
	*slot &= ~(UINT64_C(1) << 49);
	/* 1 GiB leaves need FS1GP. */
	fs_map(&self->g, self->root, 4, iova1g, GUEST_BASE & ~(SZ_1G - 1), 3,
	       VTD_FS_P | VTD_FS_US | VTD_FS_RW, TABLE_BITS);
	ASSERT_EQ(0, vtd_nested_walk(&c, ss, iova1g + 0x3000, VTD_REQ_WRITE, &x));
	EXPECT_EQ(GUEST_BASE + 0x3000, x.gpa);
	/* Beyond guest RAM inside the 1 GiB leaf: stage 2 has nothing there. */
	EXPECT_EQ(-EFAULT, vtd_nested_walk(&c, ss, iova1g + 8 * SZ_2M, 0, &x));
	EXPECT_EQ(VTD_SS_NOT_PRESENT, x.reason);
	EXPECT_EQ(GUEST_BASE + 8 * SZ_2M, x.fault_gpa);
	c.fs1gp = false;
	EXPECT_EQ(-EFAULT, vtd_nested_walk(&c, ss, iova1g, 0, &x));
	EXPECT_EQ(VTD_FS_RESERVED, x.reason);
	/* PS in a PML4E is reserved. */
	uint64_t *pml4e = guest_ptr(&self->g, self->root) + idx_of(iova1g, 4);

	*pml4e |= VTD_FS_PS;
	EXPECT_EQ(-EFAULT, vtd_nested_walk(&c, ss, iova1g, 0, &x));
	EXPECT_EQ(VTD_FS_RESERVED, x.reason);
	*pml4e &= ~VTD_FS_PS;
	/* Canonical: 4-level wants bits 63:47 equal, 5-level bits 63:56. */
	EXPECT_EQ(-EFAULT, vtd_nested_walk(&c, ss, UINT64_C(1) << 47, 0, &x));
	EXPECT_EQ(VTD_FS_NON_CANONICAL, x.reason);
	EXPECT_EQ(-EFAULT, vtd_nested_walk(&c, ss, UINT64_C(0xffff800000000000), 0, &x));
	EXPECT_EQ(VTD_FS_NOT_PRESENT, x.reason); /* canonical, then not mapped */
	c.levels = 5;
	EXPECT_EQ(-EFAULT, vtd_nested_walk(&c, ss, UINT64_C(1) << 56, 0, &x));
	EXPECT_EQ(VTD_FS_NON_CANONICAL, x.reason);
}

TEST_F(vtd, first_stage_fetches_go_through_stage_two)
{
	struct vtd_s1_cfg c = cfg_of(self->root, 4);
	struct vtd_ss *ss = vtd_domain_ss(self->parent);
	uint64_t data = guest_page(&self->g), iova = 0x5000, pt_gpa;
	struct vtd_xlate x;

	fs_map(&self->g, self->root, 4, iova, data, 1, VTD_FS_P | VTD_FS_US | VTD_FS_RW,
	       TABLE_BITS);
	pt_gpa = *(guest_ptr(&self->g, *(guest_ptr(&self->g, *(guest_ptr(&self->g, self->root)) &
								  VTD_ADDR_MASK)) & VTD_ADDR_MASK)) &
		 VTD_ADDR_MASK;
	ASSERT_EQ(0, vtd_nested_walk(&c, ss, iova, 0, &x));
	/* The page table's GPA unmapped in stage 2: a second-stage fault at its entry. */
	ASSERT_EQ(SZ_4K, iommu_unmap(self->parent, pt_gpa, SZ_4K));
	EXPECT_EQ(-EFAULT, vtd_nested_walk(&c, ss, iova, 0, &x));
	EXPECT_EQ(VTD_SS_NOT_PRESENT, x.reason);
	EXPECT_EQ(pt_gpa + 8 * idx_of(iova, 1), x.fault_gpa);
	ASSERT_EQ(0, iommu_map(self->parent, pt_gpa, guest_hpa(&self->g, pt_gpa), SZ_4K, RW));
	/* The root pointer too. */
	ASSERT_EQ(SZ_4K, iommu_unmap(self->parent, self->root, SZ_4K));
	EXPECT_EQ(-EFAULT, vtd_nested_walk(&c, ss, iova, 0, &x));
	EXPECT_EQ(VTD_SS_NOT_PRESENT, x.reason);
	EXPECT_EQ(self->root, x.fault_gpa);
	ASSERT_EQ(0, iommu_map(self->parent, self->root, guest_hpa(&self->g, self->root), SZ_4K,
			       RW));
	/* Stage 2's rights bound the result: a read-only output page (plain SS for that). */
	ASSERT_EQ(SZ_4K, iommu_unmap(self->parent, data, SZ_4K));
	size_t mapped;

	self->parent->ops->map_pages(self->parent, data, guest_hpa(&self->g, data), SZ_4K, 1,
				     IOMMU_WRITE, &mapped);
	ASSERT_EQ(0, vtd_nested_walk(&c, ss, iova, VTD_REQ_WRITE, &x));
	EXPECT_EQ(guest_hpa(&self->g, data), x.phys);
}

/* ---- the walker against a reference --------------------------------------------------------- */

/*
 * The reference: the spec's rules (C.5, C.6, C.7) written as plainly as possible, over guest
 * RAM as an array, with stage 2 as "inside RAM and not a hole". It does not set A/D.
 */
struct ref {
	struct guest *g;
	const uint64_t *holes;
	unsigned int nr_holes;
};

static bool ref_ss_ok(const struct ref *r, uint64_t gpa)
{
	if (gpa < GUEST_BASE || gpa >= GUEST_BASE + GUEST_PAGES * SZ_4K)
		return false;
	for (unsigned int i = 0; i < r->nr_holes; i++)
		if ((gpa & ~(SZ_4K - 1)) == r->holes[i])
			return false;
	return true;
}

static int ref_walk(const struct ref *r, const struct vtd_s1_cfg *c, uint64_t va,
		    unsigned int req, uint64_t *phys, int *prot)
{
	static const unsigned int shift[6] = { 0, 12, 21, 30, 39, 48 };
	int64_t sva = (int64_t)va;
	unsigned int bits = c->levels == 5 ? 57 : 48;
	bool user = !(req & VTD_REQ_PRIV), w_ok = true, u_ok = true, x_ok = true;
	uint64_t table = c->pgtbl_gpa, e = 0, page = 0;
	int level;

	/* Sign-extended from bit (bits - 1) it must be itself (unsigned shift: no UB). */
	if (((int64_t)((uint64_t)sva << (64 - bits)) >> (64 - bits)) != sva)
		return VTD_FS_NON_CANONICAL;
	if (!user && !c->sre)
		return VTD_FS_PRIV;
	for (level = (int)c->levels; level > 0; level--) {
		uint64_t at = table + 8 * ((va >> shift[level]) & 511);

		if (!ref_ss_ok(r, at))
			return VTD_SS_NOT_PRESENT;
		e = *guest_ptr(r->g, at);
		if (!(e & 1))
			return VTD_FS_NOT_PRESENT;
		if ((e & VTD_ADDR_MASK) >= (UINT64_C(1) << c->gpa_width))
			return VTD_FS_RESERVED;
		w_ok &= (e >> 1) & 1;
		u_ok &= (e >> 2) & 1;
		x_ok &= !(e >> 63);
		if (level == 1) {
			page = SZ_4K;
			break;
		}
		if (e & VTD_FS_PS) {
			if (level > 3 || (level == 3 && !c->fs1gp))
				return VTD_FS_RESERVED;
			page = UINT64_C(1) << shift[level];
			if ((e & VTD_ADDR_MASK) % page & ~SZ_4K)
				return VTD_FS_RESERVED;
			break;
		}
		table = e & VTD_ADDR_MASK;
	}
	bool may_write = user ? (u_ok && w_ok) : (!c->wpe || w_ok);

	if (user && !u_ok)
		return VTD_FS_USER;
	if ((req & VTD_REQ_WRITE) && !may_write)
		return VTD_FS_WRITE;
	if ((req & VTD_REQ_EXEC) && !x_ok)
		return VTD_FS_EXEC;
	uint64_t gpa = (e & VTD_ADDR_MASK) / page * page + va % page;

	if (!ref_ss_ok(r, gpa))
		return VTD_SS_NOT_PRESENT;
	*phys = (uint64_t)(uintptr_t)guest_ptr(r->g, gpa);
	*prot = may_write ? RW : IOMMU_READ;
	return 0;
}

static uint64_t rnd_state;

static uint64_t rnd(void)
{
	/* xorshift64*: reproducible from the seed printed on failure. */
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return rnd_state * UINT64_C(2685821657736338717);
}

static bool chance(unsigned int percent)
{
	return rnd() % 100 < percent;
}

static const unsigned int rnd_idx[] = { 0, 1, 2, 511 };

static uint64_t rnd_guest_gpa(struct guest *g)
{
	return GUEST_BASE + (rnd() % GUEST_PAGES) * SZ_4K;
}

/* Fills table @gpa (level @lvl) with random entries at the indexes addresses will use. */
static void rnd_table(struct guest *g, uint64_t gpa, unsigned int lvl)
{
	for (unsigned int i = 0; i < ARRAY_SIZE(rnd_idx); i++) {
		uint64_t e = 0, *slot = guest_ptr(g, gpa) + rnd_idx[i];
		bool leaf = lvl == 1 || (lvl <= 3 && chance(30)) || chance(3);

		if (chance(8)) {
			*slot = rnd() & ~VTD_FS_P;
			continue;
		}
		e = VTD_FS_P | (chance(95) ? VTD_FS_RW : 0) | (chance(95) ? VTD_FS_US : 0) |
		    (chance(10) ? VTD_FS_XD : 0) | (chance(30) ? VTD_FS_A : 0);
		if (chance(3))
			e |= UINT64_C(1) << (48 + rnd() % 4);
		if (leaf && lvl > 1) {
			uint64_t size = UINT64_C(1) << (12 + 9 * (lvl - 1));

			e |= VTD_FS_PS | (GUEST_BASE & ~(size - 1));
			if (chance(10))
				e |= SZ_4K << (rnd() % 3); /* PAT, or a reserved low bit */
			*slot = e;
			continue;
		}
		if (leaf) {
			e |= chance(90) ? rnd_guest_gpa(g) : rnd_guest_gpa(g) + GUEST_PAGES * SZ_4K;
			*slot = e;
			continue;
		}
		if (g->next < GUEST_PAGES && chance(90)) {
			uint64_t next = guest_page(g);

			*slot = e | next;
			rnd_table(g, next, lvl - 1);
		} else {
			*slot = e | rnd_guest_gpa(g); /* shared or nonsense: both walkers agree */
		}
	}
}

static uint64_t rnd_iova(unsigned int levels)
{
	uint64_t va = rnd() & (SZ_4K - 1);

	for (unsigned int lvl = 1; lvl <= levels; lvl++)
		va |= (uint64_t)rnd_idx[rnd() % ARRAY_SIZE(rnd_idx)] << (12 + 9 * (lvl - 1));
	if (chance(5))
		va |= UINT64_C(1) << (47 + rnd() % 17);
	else if ((va >> (levels == 5 ? 56 : 47)) & 1)
		va |= ~UINT64_C(0) << (levels == 5 ? 56 : 47); /* keep it canonical */
	return va;
}

TEST_F(vtd, walker_matches_reference_on_random_tables)
{
	struct vtd_ss *ss = vtd_domain_ss(self->parent);
	unsigned int checked = 0, ok = 0;
	uint64_t holes[4];

	rnd_state = UINT64_C(0x9e3779b97f4a7c15);
	for (unsigned int round = 0; round < 24; round++) {
		struct ref r = { .g = &self->g, .holes = holes, .nr_holes = 0 };
		struct vtd_s1_cfg c;
		uint64_t root;

		memset(self->g.ram, 0, GUEST_PAGES * SZ_4K);
		self->g.next = 0;
		/*
		 * Odd rounds back guest RAM with 2 MiB second-stage leaves, which the walk reuses
		 * across its fetches; holes cannot be punched into those.
		 */
		ASSERT_EQ(GUEST_PAGES * SZ_4K, iommu_unmap(self->parent, GUEST_BASE,
							   GUEST_PAGES * SZ_4K));
		ASSERT_EQ(0, guest_map(&self->g, self->parent, round % 2));
		root = guest_page(&self->g);
		c = cfg_of(root, chance(50) ? 5 : 4);
		c.sre = chance(50);
		c.wpe = c.sre && chance(50);
		c.eafe = chance(50);
		c.fs1gp = chance(70);
		rnd_table(&self->g, root, c.levels);
		/* A few holes in stage 2, on pages the walk may fetch or reach. */
		for (unsigned int i = 0; i < 1 + round % 3; i++) {
			uint64_t gpa = i == 0 && chance(30) ? root : rnd_guest_gpa(&self->g);

			if (iommu_unmap(self->parent, gpa, SZ_4K) == SZ_4K)
				holes[r.nr_holes++] = gpa;
		}
		/* The leaves are what the round wanted: 4 KiB ones take holes, 2 MiB ones not. */
		ASSERT_EQ(round % 2 == 0, r.nr_holes > 0);
		for (unsigned int k = 0; k < 500; k++) {
			uint64_t va = rnd_iova(c.levels), want_phys = 0;
			unsigned int req = rnd() % 8;
			int want_prot = 0, want = ref_walk(&r, &c, va, req, &want_phys, &want_prot);
			struct vtd_xlate x;
			int rc = vtd_nested_walk(&c, ss, va, req, &x);

			if (want == 0) {
				ASSERT_EQ(0, rc);
				ASSERT_EQ(want_phys, x.phys);
				ASSERT_EQ(want_prot, x.prot);
				ok++;
			} else {
				if (rc != -EFAULT || (int)x.reason != want)
					TH_LOG("round %u va %#llx req %u", round,
					       (unsigned long long)va, req);
				ASSERT_EQ(-EFAULT, rc);
				ASSERT_EQ(want, (int)x.reason);
			}
			checked++;
		}
	}
	EXPECT_EQ(12000u, checked);
	/* The tables are random, not hopeless: a fair share translates. */
	EXPECT_GT(ok, checked / 20);
	EXPECT_LT(ok, checked);
}

/* ---- invalidation ------------------------------------------------------------------------------ */

/*
 * The core's loop over a user array (iommufd's, with the kernel's per-entry copy rules), over
 * entries in test memory: what the driver's cache_invalidate_user walks.
 */
static int mem_for_each(struct iommu_user_data_array *a, void *entry, size_t ksize,
			size_t min_len, bool no_longer, int (*handle)(void *arg, const void *entry),
			void *arg)
{
	const uint8_t *base = a->priv;
	uint32_t i;
	int rc = 0;

	for (i = 0; i < a->entry_num; i++) {
		if (a->entry_len < min_len || (no_longer && a->entry_len > ksize)) {
			rc = -EINVAL;
			break;
		}
		memset(entry, 0, ksize);
		memcpy(entry, base + (size_t)i * a->entry_len,
		       a->entry_len < ksize ? a->entry_len : ksize);
		rc = handle(arg, entry);
		if (rc)
			break;
	}
	a->entry_num = i;
	return rc;
}

static int inv(struct iommu_domain *n, uint32_t type, const void *entries, uint32_t len,
	       uint32_t num, uint32_t *done)
{
	struct iommu_user_data_array a = { .type = type, .entry_len = len, .entry_num = num,
					   .for_each = mem_for_each, .priv = (void *)entries };
	int rc = n->ops->cache_invalidate_user(n, &a);

	*done = a.entry_num;
	return rc;
}

TEST_F(vtd, invalidation_errnos_and_entry_num)
{
	struct iommu_hwpt_vtd_s1_invalidate e[3] = {
		{ .addr = 0, .npages = 1 },
		{ .addr = SZ_4K, .npages = 2, .flags = IOMMU_VTD_INV_FLAGS_LEAF },
		{ .addr = 0, .npages = UINT64_MAX },
	};
	struct iommu_domain *n = nested_alloc(self->parent, self->dev, self->root, 48, 0);
	uint32_t done;

	ASSERT_FALSE(IS_ERR(n));
	EXPECT_EQ(0, inv(n, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, e, sizeof(e[0]), 3, &done));
	EXPECT_EQ(3u, done);
	/* The zero-entry probe works; a wrong type is EINVAL first. */
	EXPECT_EQ(0, inv(n, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, e, sizeof(e[0]), 0, &done));
	EXPECT_EQ(0u, done);
	EXPECT_EQ(-EINVAL, inv(n, 1, e, sizeof(e[0]), 0, &done));
	EXPECT_EQ(0u, done);
	EXPECT_EQ(-EINVAL, inv(n, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, e, 16, 3, &done));
	EXPECT_EQ(0u, done);
	EXPECT_EQ(-EINVAL, inv(n, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, e, 32, 3, &done));
	EXPECT_EQ(0u, done);
	e[2].flags = 2;
	EXPECT_EQ(-EOPNOTSUPP, inv(n, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, e, sizeof(e[0]), 3,
				   &done));
	EXPECT_EQ(2u, done);
	e[2].flags = 0;
	e[2].__reserved = 1;
	EXPECT_EQ(-EOPNOTSUPP, inv(n, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, e, sizeof(e[0]), 3,
				   &done));
	EXPECT_EQ(2u, done);
	e[2].__reserved = 0;
	e[1].addr = 0x800;
	EXPECT_EQ(-EINVAL, inv(n, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, e, sizeof(e[0]), 3, &done));
	EXPECT_EQ(1u, done);
	e[1].addr = SZ_4K;
	e[2].addr = SZ_4K;
	EXPECT_EQ(-EINVAL, inv(n, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, e, sizeof(e[0]), 3, &done));
	EXPECT_EQ(2u, done);
	iommu_domain_free(n);
}

TEST_F(vtd, stale_until_invalidated)
{
	struct iommu_hwpt_vtd_s1_invalidate e = { 0 };
	uint64_t a = guest_page(&self->g), b = guest_page(&self->g), iova = 0x200000 + 3 * SZ_4K;
	struct iommu_domain *n;
	struct iotlb *tlb;
	phys_addr_t phys;
	uint64_t *leaf;
	uint32_t done;

	leaf = fs_map(&self->g, self->root, 4, iova, a, 1, VTD_FS_P | VTD_FS_US | VTD_FS_RW,
		      TABLE_BITS);
	n = nested_alloc(self->parent, self->dev, self->root, 48, 0);
	ASSERT_FALSE(IS_ERR(n));
	ASSERT_EQ(0, iommu_attach_device(n, self->dev));
	tlb = iotlb_for_iommu(&dmar0);
	ASSERT_FALSE(IS_ERR(tlb));
	ASSERT_EQ(0, iotlb_translate(tlb, n, iova + 8, IOMMU_READ, &phys));
	EXPECT_EQ(guest_hpa(&self->g, a) + 8, phys);
	/* The guest retargets its PTE: the cached translation still answers. */
	*leaf = b | VTD_FS_P | VTD_FS_US | VTD_FS_RW | VTD_FS_A;
	ASSERT_EQ(0, iotlb_translate(tlb, n, iova, IOMMU_READ, &phys));
	EXPECT_EQ(guest_hpa(&self->g, a), phys);
	/* An invalidation that misses it changes nothing; one that covers it does. */
	e.addr = iova + SZ_4K;
	e.npages = 4;
	ASSERT_EQ(0, inv(n, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, &e, sizeof(e), 1, &done));
	ASSERT_EQ(0, iotlb_translate(tlb, n, iova, IOMMU_READ, &phys));
	EXPECT_EQ(guest_hpa(&self->g, a), phys);
	e.addr = iova - SZ_4K;
	e.npages = 2;
	ASSERT_EQ(0, inv(n, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, &e, sizeof(e), 1, &done));
	ASSERT_EQ(0, iotlb_translate(tlb, n, iova, IOMMU_READ, &phys));
	EXPECT_EQ(guest_hpa(&self->g, b), phys);
	/* A write through an entry cached clean walks again and sets D. */
	EXPECT_FALSE(*leaf & VTD_FS_D);
	ASSERT_EQ(0, iotlb_translate(tlb, n, iova, IOMMU_WRITE, &phys));
	EXPECT_TRUE(*leaf & VTD_FS_D);
	/* Unmapped now, but cached: still translates until the everything-flush. */
	*leaf = 0;
	ASSERT_EQ(0, iotlb_translate(tlb, n, iova, IOMMU_READ, &phys));
	e.addr = 0;
	e.npages = UINT64_MAX;
	ASSERT_EQ(0, inv(n, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, &e, sizeof(e), 1, &done));
	EXPECT_EQ(-EFAULT, iotlb_translate(tlb, n, iova, IOMMU_READ, &phys));
	/* A stage-2 change flushes the children by itself (the host's duty, C.7 step 6). */
	*leaf = b | VTD_FS_P | VTD_FS_US | VTD_FS_RW | VTD_FS_A;
	ASSERT_EQ(0, iotlb_translate(tlb, n, iova, IOMMU_READ, &phys));
	EXPECT_NE(0u, iotlb_count(tlb, n->id));
	ASSERT_EQ(SZ_4K, iommu_unmap(self->parent, b, SZ_4K));
	EXPECT_EQ(0u, iotlb_count(tlb, n->id));
	EXPECT_EQ(-EFAULT, iotlb_translate(tlb, n, iova, IOMMU_READ, &phys));
	/* A read-only first stage: the IOTLB refuses the write. */
	ASSERT_EQ(0, iommu_map(self->parent, b, guest_hpa(&self->g, b), SZ_4K, RW));
	*leaf &= ~VTD_FS_RW;
	ASSERT_EQ(0, inv(n, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, &e, sizeof(e), 1, &done));
	EXPECT_EQ(0, iotlb_translate(tlb, n, iova, IOMMU_READ, &phys));
	EXPECT_EQ(-EFAULT, iotlb_translate(tlb, n, iova, IOMMU_WRITE, &phys));
	iommu_detach_device(n, self->dev);
	iommu_domain_free(n);
}

/*
 * Invalidation racing DMA: readers translate a window of pages through the IOTLB while the
 * guest flips each page's PTE between two targets and invalidates it, and the host maps and
 * unmaps an unrelated part of the parent (each a flush of the children). Every translation a
 * reader gets must be one the tables held at some point (a or b, at the right offset): a stale
 * entry is allowed, a torn or foreign one never. After the race, one invalidation of
 * everything makes every page translate to what its PTE says.
 */
#define RACE_PAGES 8u
#define RACE_IOVA UINT64_C(0x300000)

struct race {
	struct guest *g;
	struct iommu_domain *nested, *parent;
	struct iotlb *tlb;
	uint64_t *leaf[RACE_PAGES];
	uint64_t a[RACE_PAGES], b[RACE_PAGES];
	atomic_uint bad;
	uint64_t spare_hpa;
};

static void *race_reader(void *arg)
{
	struct race *r = arg;

	for (unsigned int k = 0; k < 20000; k++) {
		unsigned int i = k % RACE_PAGES;
		phys_addr_t phys;

		if (iotlb_translate(r->tlb, r->nested, RACE_IOVA + i * SZ_4K + 8, IOMMU_READ,
				    &phys))
			continue;
		if (phys != guest_hpa(r->g, r->a[i]) + 8 && phys != guest_hpa(r->g, r->b[i]) + 8)
			atomic_fetch_add(&r->bad, 1);
	}
	return NULL;
}

static void *race_flipper(void *arg)
{
	struct race *r = arg;
	struct iommu_hwpt_vtd_s1_invalidate e = { .npages = 1 };
	uint32_t done;

	for (unsigned int k = 0; stress_running(); k++) {
		unsigned int i = k % RACE_PAGES;
		uint64_t to = (k / RACE_PAGES) % 2 ? r->a[i] : r->b[i];

		/* The guest's store: atomic, as the walker's A/D updates race it. */
		__atomic_store_n(r->leaf[i], to | VTD_FS_P | VTD_FS_US | VTD_FS_RW,
				 __ATOMIC_RELEASE);
		e.addr = RACE_IOVA + i * SZ_4K;
		if (inv(r->nested, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, &e, sizeof(e), 1, &done))
			atomic_fetch_add(&r->bad, 1);
	}
	return NULL;
}

static void *race_host(void *arg)
{
	struct race *r = arg;
	const uint64_t gpa = 64 * SZ_1G;

	while (stress_running()) {
		if (iommu_map(r->parent, gpa, r->spare_hpa, SZ_4K, RW) ||
		    iommu_unmap(r->parent, gpa, SZ_4K) != SZ_4K)
			atomic_fetch_add(&r->bad, 1);
	}
	return NULL;
}

TEST_F(vtd, invalidation_races_dma)
{
	struct iommu_hwpt_vtd_s1_invalidate all = { .addr = 0, .npages = UINT64_MAX };
	struct race r = { .g = &self->g, .parent = self->parent };
	struct stress_worker w[] = { { race_reader, &r }, { race_reader, &r },
				     { race_flipper, &r }, { race_host, &r } };
	uint32_t done;

	for (unsigned int i = 0; i < RACE_PAGES; i++) {
		r.a[i] = guest_page(&self->g);
		r.b[i] = guest_page(&self->g);
		r.leaf[i] = fs_map(&self->g, self->root, 4, RACE_IOVA + i * SZ_4K, r.a[i], 1,
				   VTD_FS_P | VTD_FS_US | VTD_FS_RW, TABLE_BITS);
	}
	r.spare_hpa = guest_hpa(&self->g, guest_page(&self->g));
	r.nested = nested_alloc(self->parent, self->dev, self->root, 48, 0);
	ASSERT_FALSE(IS_ERR(r.nested));
	ASSERT_EQ(0, iommu_attach_device(r.nested, self->dev));
	r.tlb = iotlb_for_iommu(&dmar0);
	ASSERT_FALSE(IS_ERR(r.tlb));
	ASSERT_EQ(0, stress_run_work(w, ARRAY_SIZE(w), 2));
	EXPECT_EQ(0u, atomic_load(&r.bad));
	ASSERT_EQ(0, inv(r.nested, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, &all, sizeof(all), 1, &done));
	for (unsigned int i = 0; i < RACE_PAGES; i++) {
		phys_addr_t phys;
		uint64_t pte = __atomic_load_n(r.leaf[i], __ATOMIC_ACQUIRE);

		ASSERT_EQ(0, iotlb_translate(r.tlb, r.nested, RACE_IOVA + i * SZ_4K, IOMMU_READ,
					     &phys));
		EXPECT_EQ(guest_hpa(&self->g, pte & VTD_ADDR_MASK), phys);
	}
	iommu_detach_device(r.nested, self->dev);
	iommu_domain_free(r.nested);
}

/* ---- page requests ------------------------------------------------------------------------------ */

static struct iopf_group *kept_group;
static unsigned int handled;

static int keep_handler(struct iopf_group *group)
{
	handled++;
	kept_group = group;
	return 0;
}

static void prq_desc(uint64_t d[4], uint16_t rid, int pasid, uint64_t addr, bool rd, bool wr,
		     bool last, uint32_t prgi)
{
	d[0] = 1 | ((uint64_t)rid << 16);
	if (pasid >= 0)
		d[0] |= (UINT64_C(1) << 8) | ((uint64_t)pasid << 32);
	d[1] = addr | (rd ? 1 : 0) | (wr ? 2 : 0) | (last ? 4 : 0) | ((uint64_t)prgi << 3);
	d[2] = d[3] = 0;
}

TEST_F(vtd, page_requests_and_responses)
{
	const uint16_t rid = (0 << 8) | (4 << 3);
	struct iommu_attach_handle handle = { 0 }, pasid_handle = { 0 };
	struct iommu_domain *n = nested_alloc(self->parent, self->dev, self->root, 48, 0);
	uint64_t d[4], r[4];

	ASSERT_FALSE(IS_ERR(n));
	n->iopf_handler = keep_handler;
	ASSERT_EQ(0, iommu_group_claim_dma_owner(self->dev->iommu_group, &handle));
	ASSERT_EQ(0, iommu_attach_group_handle(n, self->dev->iommu_group, &handle));
	ASSERT_EQ(0, iommu_attach_device_pasid(n, self->dev, 9, &pasid_handle));
	handled = 0;
	/* A read at a PASID, last in group 7: to the handler. */
	prq_desc(d, rid, 9, 0x7000, true, false, true, 7);
	ASSERT_EQ(0, vtd_prq_report(self->dev, d));
	ASSERT_EQ(1u, handled);
	EXPECT_EQ(0x7000u, kept_group->last_fault.fault.prm.addr);
	EXPECT_EQ(7u, kept_group->last_fault.fault.prm.grpid);
	EXPECT_EQ(9u, kept_group->last_fault.fault.prm.pasid);
	EXPECT_EQ(IOMMU_FAULT_PERM_READ, kept_group->last_fault.fault.prm.perm);
	EXPECT_TRUE(kept_group->last_fault.fault.prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID);
	EXPECT_EQ(0u, vtd_dev_page_responses(self->dev, NULL));
	iopf_group_response(kept_group, IOMMU_PAGE_RESP_SUCCESS);
	iopf_free_group(kept_group);
	ASSERT_EQ(1u, vtd_dev_page_responses(self->dev, r));
	EXPECT_EQ(9u, r[0] & 0xf);                  /* page group response */
	EXPECT_EQ(1u, (r[0] >> 4) & 1);             /* PASID present */
	EXPECT_EQ(0u, (r[0] >> 12) & 0xf);          /* success */
	EXPECT_EQ(rid, (r[0] >> 16) & 0xffff);
	EXPECT_EQ(9u, (r[0] >> 32) & 0xfffff);
	EXPECT_EQ(7u, (r[1] >> 3) & 0x1ff);
	/* What the kernel answers INVALID by itself, without the handler. */
	struct {
		uint64_t addr;
		bool rd, wr;
		uint64_t extra;
		uint16_t rid;
	} bad[] = {
		{ UINT64_C(1) << 47, true, false, 0, rid },              /* non-canonical */
		{ 0x1000, true, false, UINT64_C(1) << 53, rid },        /* PM with RD */
		{ 0x1000, false, true, UINT64_C(1) << 53, rid },        /* PM with WR */
		{ 0x1000, true, false, UINT64_C(1) << 52, rid },        /* ER with RD */
		{ 0x1000, true, false, 0, rid + 1 },                     /* unknown RID */
	};
	for (unsigned int i = 0; i < ARRAY_SIZE(bad); i++) {
		prq_desc(d, bad[i].rid, -1, bad[i].addr, bad[i].rd, bad[i].wr, true, 3);
		d[0] |= bad[i].extra;
		ASSERT_EQ(0, vtd_prq_report(self->dev, d));
		EXPECT_EQ(1u, handled);
		ASSERT_EQ(2u + i, vtd_dev_page_responses(self->dev, r));
		EXPECT_EQ(1u, (r[0] >> 12) & 0xf);
		EXPECT_EQ(0u, (r[0] >> 4) & 1);
		EXPECT_EQ(3u, (r[1] >> 3) & 0x1ff);
	}
	/* A stop marker is dropped: no handler, no response. */
	prq_desc(d, rid, 9, 0x1000, false, false, true, 4);
	ASSERT_EQ(0, vtd_prq_report(self->dev, d));
	EXPECT_EQ(1u, handled);
	EXPECT_EQ(1u + ARRAY_SIZE(bad), vtd_dev_page_responses(self->dev, NULL));
	/* A write with ER (allowed) to the handler, then a FAILURE answer (code 0xf). */
	prq_desc(d, rid, -1, 0x3000, false, true, true, 5);
	d[0] |= UINT64_C(1) << 52;
	ASSERT_EQ(0, vtd_prq_report(self->dev, d));
	ASSERT_EQ(2u, handled);
	EXPECT_EQ(IOMMU_FAULT_PERM_WRITE | IOMMU_FAULT_PERM_EXEC,
		  kept_group->last_fault.fault.prm.perm);
	iopf_group_response(kept_group, IOMMU_PAGE_RESP_FAILURE);
	iopf_free_group(kept_group);
	vtd_dev_page_responses(self->dev, r);
	EXPECT_EQ(0xfu, (r[0] >> 12) & 0xf);
	iommu_detach_device_pasid(n, self->dev, 9);
	iommu_detach_group_handle(n, self->dev->iommu_group);
	iommu_group_release_dma_owner(self->dev->iommu_group);
	iommu_domain_free(n);
}

/* ---- fault injection ---------------------------------------------------------------------------- */

TEST(fail_nth_every_step_leaves_nothing)
{
	static uint8_t ram[4 * 4096] __attribute__((aligned(4096)));
	struct iommu_domain *parent = NULL, *n = NULL;
	struct device *dev;
	long live;
	int rc;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	live = uiommu_alloc_live();
	for (unsigned long k = 1;; k++) {
		uiommu_fail_nth_arm(k);
		rc = vtd_iommu_register(&dmar0, &vtd_default_features);
		if (!rc && uiommu_fail_nth_disarm())
			break;
		uiommu_fail_nth_disarm();
		if (!rc)
			vtd_iommu_unregister(&dmar0);
		ASSERT_EQ(live, uiommu_alloc_live());
	}
	dev = vdev_make("0000:00:04.0", &dmar0, true);
	/* Settled: a release frees the device's fault data after an RCU grace period. */
	live = uiommu_alloc_live_settled();
	for (unsigned long k = 1;; k++) {
		uiommu_fail_nth_arm(k);
		rc = iommu_probe_device(dev);
		if (!rc && uiommu_fail_nth_disarm())
			break;
		uiommu_fail_nth_disarm();
		if (!rc)
			iommu_release_device(dev);
		else
			ASSERT_EQ(-ENOMEM, rc);
		ASSERT_EQ(live, uiommu_alloc_live_settled());
	}
	for (unsigned long k = 1;; k++) {
		uiommu_fail_nth_arm(k);
		parent = iommu_paging_domain_alloc_flags(dev, IOMMU_DOMAIN_ALLOC_NEST_PARENT, NULL);
		if (!IS_ERR(parent) && uiommu_fail_nth_disarm())
			break;
		uiommu_fail_nth_disarm();
		if (!IS_ERR(parent))
			iommu_domain_free(parent);
	}
	/* Across a 1 GiB boundary: new tables at two levels. */
	for (unsigned long k = 1;; k++) {
		uiommu_fail_nth_arm(k);
		rc = iommu_map(parent, SZ_1G - 2 * SZ_4K, (uint64_t)(uintptr_t)ram, 4 * SZ_4K, RW);
		if (!rc && uiommu_fail_nth_disarm())
			break;
		uiommu_fail_nth_disarm();
		if (!rc) {
			ASSERT_EQ(4 * SZ_4K, iommu_unmap(parent, SZ_1G - 2 * SZ_4K, 4 * SZ_4K));
			continue;
		}
		ASSERT_EQ(-ENOMEM, rc);
		for (unsigned int i = 0; i < 4; i++)
			ASSERT_EQ(0u, iommu_iova_to_phys(parent, SZ_1G - 2 * SZ_4K + i * SZ_4K));
	}
	for (unsigned long k = 1;; k++) {
		uiommu_fail_nth_arm(k);
		n = nested_alloc(parent, dev, SZ_1G, 48, 0);
		if (!IS_ERR(n) && uiommu_fail_nth_disarm())
			break;
		uiommu_fail_nth_disarm();
		if (!IS_ERR(n))
			iommu_domain_free(n);
		else
			ASSERT_EQ(-ENOMEM, PTR_ERR(n));
	}
	for (unsigned long k = 1;; k++) {
		uiommu_fail_nth_arm(k);
		rc = iommu_attach_device_pasid(n, dev, 3, NULL);
		if (!rc && uiommu_fail_nth_disarm())
			break;
		uiommu_fail_nth_disarm();
		if (!rc) {
			iommu_detach_device_pasid(n, dev, 3);
			continue;
		}
		uint64_t val[8];

		ASSERT_EQ(-ENOMEM, rc);
		ASSERT_EQ(-ENOENT, vtd_dev_pasid_entry(dev, 3, val));
	}
	iommu_detach_device_pasid(n, dev, 3);
	iommu_domain_free(n);
	iommu_domain_free(parent);
	machine_down(dev);
}

TEST_HARNESS_MAIN
