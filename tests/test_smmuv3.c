// SPDX-License-Identifier: MIT
/*
 * White-box tests of the ARM SMMUv3 model (src/drivers/arm-smmu-v3/).
 *
 * The guest's side is built by hand in test memory: a block of "guest RAM" mapped into the nest
 * parent's stage 2 at GUEST_BASE, with CD tables and stage-1 tables written into it as a guest
 * kernel would, in IPAs. Then: the stage-2 format read raw for each granule; the ID registers;
 * every errno of the allocation, vSTE, attach and command paths; translations through both
 * stages for each granule and CD-table format; permissions, the access flag and HA/HD updates
 * seen in guest memory; the events and their fields; invalidation semantics (an entry stays
 * stale until exactly the command that names it, a CD until CFGI_CD); the kernel's batching of
 * guest commands; the nested walker against an independent reference walk over thousands of
 * random tables; and fail-nth sweeps over every allocation.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drivers/arm-smmu-v3/arm-smmu-v3.h"
#include "drivers/arm-smmu-v3/arm-smmu-v3-iommu.h"
#include "harness.h"
#include "topology_file.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "machine/ctl.h"
#include "machine/topology.h"
#include "uiommu/uiommu.h"

#define SZ_4K UINT64_C(0x1000)
#define SZ_16K UINT64_C(0x4000)
#define SZ_64K UINT64_C(0x10000)
#define SZ_2M UINT64_C(0x200000)
#define SZ_32M UINT64_C(0x2000000)
#define SZ_512M UINT64_C(0x20000000)
#define SZ_1G UINT64_C(0x40000000)
#define RW (IOMMU_READ | IOMMU_WRITE)

#define GUEST_BASE UINT64_C(0x80000000)
#define GUEST_SIZE (UINT64_C(16) << 20)
#define SID 0x100u
#define VSID 0x42u

#define ACC_R ARM_SMMU_ACC_READ
#define ACC_W ARM_SMMU_ACC_WRITE
#define ACC_X ARM_SMMU_ACC_EXEC
#define ACC_P ARM_SMMU_ACC_PRIV

/* A Linux-style stage-1 leaf: AF, nG, inner-shareable, unprivileged RW. */
#define S1_LEAF (ARM_LPAE_AF | ARM_LPAE_S1_NG | ARM_LPAE_SH_IS | ARM_LPAE_S1_AP1)

/* ---- guest memory ------------------------------------------------------------------------ */

struct guest {
	uint8_t *ram;         /* GUEST_SIZE bytes at IPA GUEST_BASE */
	uint64_t next;        /* bump allocator, an IPA */
};

static uint64_t *g_ptr(struct guest *g, uint64_t ipa)
{
	return (uint64_t *)(g->ram + (ipa - GUEST_BASE));
}

static uint64_t g_alloc(struct guest *g, uint64_t size, uint64_t align)
{
	uint64_t ipa = (g->next + align - 1) & ~(align - 1);

	if (ipa + size > GUEST_BASE + GUEST_SIZE)
		abort();
	g->next = ipa + size;
	memset(g_ptr(g, ipa), 0, size);
	return ipa;
}

static uint64_t g_pa(struct guest *g, uint64_t ipa)
{
	return (uint64_t)(uintptr_t)g_ptr(g, ipa);
}

/* The test's own geometry: the root is the highest level whose span covers @ias bits. */
static unsigned int t_shift(unsigned int g, unsigned int level)
{
	return g + (g - 3) * (3 - level);
}

static unsigned int t_start(unsigned int g, unsigned int ias)
{
	unsigned int level = 3;

	while (level > 0 && t_shift(g, level) + (g - 3) < ias)
		level--;
	return level;
}

static unsigned int t_index_bits(unsigned int g, unsigned int ias, unsigned int level)
{
	return level == t_start(g, ias) ? ias - t_shift(g, level) : g - 3;
}

static uint64_t t_index(unsigned int g, unsigned int ias, unsigned int level, uint64_t va)
{
	return (va >> t_shift(g, level)) & ((UINT64_C(1) << t_index_bits(g, ias, level)) - 1);
}

/* A guest stage-1 address space. */
struct s1 {
	unsigned int g, ias;
	uint64_t root;        /* IPA */
};

static void s1_init(struct guest *gm, struct s1 *s, unsigned int g, unsigned int ias)
{
	uint64_t size = (UINT64_C(8) << t_index_bits(g, ias, t_start(g, ias)));

	s->g = g;
	s->ias = ias;
	if (size < 64)
		size = 64;
	s->root = g_alloc(gm, size, size);
}

/* The descriptor slot of @va at @level, making tables (with @tbl_attrs) on the way. */
static uint64_t *s1_slot(struct guest *gm, struct s1 *s, uint64_t va, unsigned int level,
			 uint64_t tbl_attrs)
{
	uint64_t table = s->root, *slot;
	unsigned int l;

	for (l = t_start(s->g, s->ias);; l++) {
		slot = g_ptr(gm, table + 8 * t_index(s->g, s->ias, l, va));
		if (l == level)
			return slot;
		if (!(*slot & 1)) {
			uint64_t next = g_alloc(gm, UINT64_C(1) << s->g, UINT64_C(1) << s->g);

			*slot = next | 3 | tbl_attrs;
		}
		table = *slot & UINT64_C(0x0000fffffffff000) & ~((UINT64_C(1) << s->g) - 1);
	}
}

/* Map @va -> @oa_ipa with a leaf at @level (3: a page), leaf bits @attrs. */
static uint64_t *s1_map(struct guest *gm, struct s1 *s, uint64_t va, uint64_t oa_ipa,
			unsigned int level, uint64_t attrs)
{
	uint64_t *slot = s1_slot(gm, s, va, level, 0);

	*slot = oa_ipa | attrs | (level == 3 ? 3 : 1);
	return slot;
}

static uint64_t tg0_of(unsigned int g)
{
	return g == 12 ? CD_TG_4K : g == 16 ? CD_TG_64K : CD_TG_16K;
}

/* A Linux-style stage-1 CD for @s with @asid. */
static void cd_write(uint64_t *cd, const struct s1 *s, uint16_t asid, uint64_t extra)
{
	memset(cd, 0, CD_SIZE);
	cd[0] = (uint64_t)(64 - s->ias) | tg0_of(s->g) << CD0_TG0_SHIFT | CD0_EPD1 | CD0_V |
		UINT64_C(5) << CD0_IPS_SHIFT | CD0_AA64 | CD0_R | CD0_A | CD0_ASET |
		(uint64_t)asid << CD0_ASID_SHIFT | extra;
	cd[1] = s->root;
}

static uint64_t ste0(unsigned int cfg, unsigned int fmt, uint64_t ctx, unsigned int cdmax)
{
	return STE0_V | (uint64_t)cfg << STE0_CFG_SHIFT | (uint64_t)fmt << STE0_S1FMT_SHIFT | ctx |
	       (uint64_t)cdmax << STE0_S1CDMAX_SHIFT;
}

/* ---- the fixture: an SMMU, a nest parent mapping guest RAM, a vSMMU, one master ----------- */

struct events {
	unsigned int n;
	uint64_t evt[64][4];
};

static void event_sink(void *arg, const uint64_t evt[4])
{
	struct events *ev = arg;

	if (ev->n < 64)
		memcpy(ev->evt[ev->n], evt, sizeof(ev->evt[0]));
	ev->n++;
}

FIXTURE(nest)
{
	struct arm_smmu_device *smmu;
	struct iommu_domain *parent;
	struct arm_vsmmu *vsmmu;
	struct arm_smmu_master *master;
	struct iommu_domain *nested;
	struct guest gm;
	struct events ev;
	struct s1 s1;
	uint64_t cd_ipa;
	uint8_t *data;           /* guest pages the tests DMA to, in guest RAM */
	uint64_t data_ipa;
};

FIXTURE_VARIANT(nest)
{
	unsigned int s2_shift;   /* the parent's granule */
};

FIXTURE_VARIANT_ADD(nest, s2_4k) { .s2_shift = 12 };
FIXTURE_VARIANT_ADD(nest, s2_16k) { .s2_shift = 14 };
FIXTURE_VARIANT_ADD(nest, s2_64k) { .s2_shift = 16 };

static struct iommu_domain *nested_alloc(struct arm_vsmmu *vsmmu, uint64_t s0, uint64_t s1w)
{
	uint64_t ste[2] = { s0, s1w };
	struct iommu_user_data ud = { .type = 2, .data = ste, .len = sizeof(ste) };

	return arm_vsmmu_domain_alloc_nested(vsmmu, 0, &ud);
}

/* Attach a fresh nested domain with vSTE (@s0, @s1w); the old one is freed. */
static void nest_set_ste(struct __h_test *_metadata, FIXTURE_DATA(nest) *self, uint64_t s0,
			 uint64_t s1w)
{
	struct iommu_domain *dom = nested_alloc(self->vsmmu, s0, s1w);

	ASSERT_FALSE(IS_ERR(dom));
	ASSERT_EQ(arm_smmu_master_attach(self->master, dom), 0);
	if (self->nested)
		self->nested->ops->free(self->nested);
	self->nested = dom;
}

static int xl(FIXTURE_DATA(nest) *self, uint64_t iova, unsigned int access, uint64_t *pa)
{
	struct arm_smmu_txn txn = { .iova = iova, .access = access };

	*pa = 0;
	return arm_smmu_master_translate(self->master, &txn, pa);
}

static int xl_ssid(FIXTURE_DATA(nest) *self, uint64_t iova, unsigned int access, bool ssv,
		   uint32_t ssid, uint64_t *pa)
{
	struct arm_smmu_txn txn = { .iova = iova, .access = access, .ssv = ssv, .ssid = ssid };

	*pa = 0;
	return arm_smmu_master_translate(self->master, &txn, pa);
}

static int cmd1(FIXTURE_DATA(nest) *self, uint64_t c0, uint64_t c1)
{
	uint64_t cmd[1][2] = { { c0, c1 } };
	uint32_t done = 0;
	int rc = arm_vsmmu_cache_invalidate(self->vsmmu, cmd, 1, &done);

	return rc ? rc : (int)done - 1;
}

FIXTURE_SETUP(nest)
{
	struct arm_smmu_features f = ARM_SMMU_FEATURES_DEFAULT;
	uint64_t pgsize = UINT64_C(1) << variant->s2_shift;
	size_t mapped;

	memset(self, 0, sizeof(*self));
	self->smmu = arm_smmu_device_alloc(&f);
	ASSERT_FALSE(IS_ERR(self->smmu));
	self->parent = arm_smmu_domain_alloc_paging(self->smmu, IOMMU_DOMAIN_ALLOC_NEST_PARENT,
						    variant->s2_shift);
	ASSERT_FALSE(IS_ERR(self->parent));
	self->gm.ram = aligned_alloc(SZ_2M, GUEST_SIZE);
	ASSERT_TRUE(self->gm.ram != NULL);
	memset(self->gm.ram, 0, GUEST_SIZE);
	self->gm.next = GUEST_BASE;
	ASSERT_EQ(self->parent->ops->map_pages(self->parent, GUEST_BASE, g_pa(&self->gm, GUEST_BASE),
					       pgsize, GUEST_SIZE / pgsize, RW, &mapped), 0);
	self->vsmmu = arm_vsmmu_alloc(self->smmu, self->parent);
	ASSERT_FALSE(IS_ERR(self->vsmmu));
	arm_vsmmu_set_event_sink(self->vsmmu, event_sink, &self->ev);
	self->master = arm_smmu_master_alloc(self->smmu, SID);
	ASSERT_FALSE(IS_ERR(self->master));
	ASSERT_EQ(arm_vsmmu_vdevice_add(self->vsmmu, self->master, VSID), 0);

	/* Guest: 4K stage 1 over 48 bits, one linear CD, ASID 7; 64 KiB of data pages. */
	self->data_ipa = g_alloc(&self->gm, 16 * SZ_64K, SZ_2M);
	self->data = (uint8_t *)g_ptr(&self->gm, self->data_ipa);
	s1_init(&self->gm, &self->s1, 12, 48);
	self->cd_ipa = g_alloc(&self->gm, CD_SIZE, 64);
	cd_write(g_ptr(&self->gm, self->cd_ipa), &self->s1, 7, 0);
	nest_set_ste(_metadata, self, ste0(STE_CFG_S1_TRANS, 0, self->cd_ipa, 0), 0);
}

FIXTURE_TEARDOWN(nest)
{
	if (self->master) {
		arm_smmu_master_attach(self->master, NULL);
		arm_vsmmu_vdevice_del(self->vsmmu, self->master);
		arm_smmu_master_free(self->master);
	}
	if (self->nested)
		self->nested->ops->free(self->nested);
	if (!IS_ERR_OR_NULL(self->vsmmu))
		arm_vsmmu_free(self->vsmmu);
	if (!IS_ERR_OR_NULL(self->parent))
		self->parent->ops->free(self->parent);
	arm_smmu_device_free(self->smmu);
	free(self->gm.ram);
}

/* ---- the stage-2 format -------------------------------------------------------------------- */

/* The size of the leaf translating @iova, 0 when none. */
static uint64_t s2_leaf_size(struct iommu_domain *dom, uint64_t iova)
{
	int prot;
	uint64_t size;

	return dom->ops->dma_walk(dom, iova, false, &prot, &size) ? size : 0;
}

TEST(s2_granules_page_sizes)
{
	struct arm_smmu_features f = ARM_SMMU_FEATURES_DEFAULT;
	struct arm_smmu_device *smmu = arm_smmu_device_alloc(&f);
	static const struct {
		unsigned int shift;
		uint64_t pgsizes;
	} cases[] = {
		{ 12, SZ_4K | SZ_2M | SZ_1G },
		{ 14, SZ_16K | SZ_32M },
		{ 16, SZ_64K | SZ_512M },
	};

	ASSERT_FALSE(IS_ERR(smmu));
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct iommu_domain *dom = arm_smmu_domain_alloc_paging(smmu, 0, cases[i].shift);
		uint64_t pa = UINT64_C(0x7f0000000000), sz;
		size_t mapped;

		ASSERT_FALSE(IS_ERR(dom));
		ASSERT_EQ(dom->pgsize_bitmap, cases[i].pgsizes);
		for (sz = 1; sz; sz <<= 1) {
			uint64_t iova = sz * 3;

			if (!(sz & cases[i].pgsizes))
				continue;
			ASSERT_EQ(dom->ops->map_pages(dom, iova, pa, sz, 1, RW, &mapped), 0);
			ASSERT_EQ(mapped, sz);
			ASSERT_EQ(dom->ops->iova_to_phys(dom, iova + sz - 8), pa + sz - 8);
			ASSERT_EQ(s2_leaf_size(dom, iova), sz);
			ASSERT_EQ(dom->ops->iova_to_phys(dom, iova + sz), 0);
			ASSERT_EQ(dom->ops->iova_to_phys(dom, iova - 1), 0);
			/* Over a live leaf: EEXIST, and nothing changes. */
			ASSERT_EQ(dom->ops->map_pages(dom, iova, pa + sz, sz, 1, RW, &mapped),
				  -EEXIST);
			ASSERT_EQ(dom->ops->unmap_pages(dom, iova, sz, 1, NULL), sz);
			ASSERT_EQ(dom->ops->iova_to_phys(dom, iova), 0);
		}
		/* Not a page size, misaligned, zero count, beyond 48 bits. */
		ASSERT_EQ(dom->ops->map_pages(dom, 0, pa, 8192, 1, RW, &mapped), -EINVAL);
		ASSERT_EQ(dom->ops->map_pages(dom, 1, pa, UINT64_C(1) << cases[i].shift, 1, RW,
					      &mapped), -EINVAL);
		ASSERT_EQ(dom->ops->map_pages(dom, 0, pa, UINT64_C(1) << cases[i].shift, 0, RW,
					      &mapped), -EINVAL);
		ASSERT_EQ(dom->ops->map_pages(dom, UINT64_C(1) << 48, pa,
					      UINT64_C(1) << cases[i].shift, 1, RW, &mapped),
			  -ERANGE);
		ASSERT_EQ(dom->ops->map_pages(dom, 0, UINT64_C(1) << 48,
					      UINT64_C(1) << cases[i].shift, 1, RW, &mapped),
			  -EINVAL);
		dom->ops->free(dom);
	}
	arm_smmu_device_free(smmu);
}

TEST(s2_descriptor_bits)
{
	struct arm_lpae_s2 pt;
	struct arm_lpae_leaf leaf;
	size_t mapped;

	ASSERT_EQ(arm_lpae_s2_init(&pt, 12, 48, false), 0);
	ASSERT_EQ(pt.geom.start, 0);
	ASSERT_EQ(arm_lpae_s2_map(&pt, 0x5000, 0x123000, SZ_4K, 1, IOMMU_READ | IOMMU_NOEXEC,
				  &mapped), 0);
	ASSERT_EQ(arm_lpae_s2_walk(&pt, 0x5abc, IOMMU_READ, &leaf), 0);
	ASSERT_EQ(leaf.phys, 0x123abc);
	ASSERT_EQ(leaf.level, 3);
	/* Page, AF, inner-shareable, WB, read-only, XN: exactly those bits. */
	ASSERT_EQ(leaf.desc, 0x123000 | 3 | ARM_LPAE_AF | ARM_LPAE_SH_IS |
				     ARM_LPAE_S2_MEMATTR_WB << 2 | ARM_LPAE_S2_AP_R | ARM_LPAE_S2_XN);
	ASSERT_EQ(arm_lpae_s2_prot(&pt, leaf.desc), IOMMU_READ);
	/* The root's entry is a table descriptor holding the next table's address. */
	ASSERT_EQ(pt.root[0] & 3, 3);
	ASSERT_EQ(arm_lpae_s2_walk(&pt, 0x6000, IOMMU_READ, &leaf), -ENOENT);
	ASSERT_EQ(arm_lpae_s2_walk(&pt, UINT64_C(1) << 48, IOMMU_READ, &leaf), -ERANGE);
	/* A 2M block: type 01 at level 2. */
	ASSERT_EQ(arm_lpae_s2_map(&pt, SZ_1G, 0x40000000, SZ_2M, 1, RW, &mapped), 0);
	ASSERT_EQ(arm_lpae_s2_walk(&pt, SZ_1G + 5, IOMMU_WRITE, &leaf), 0);
	ASSERT_EQ(leaf.level, 2);
	ASSERT_EQ(leaf.desc & 3, 1);
	ASSERT_EQ(arm_lpae_s2_prot(&pt, leaf.desc), RW);
	arm_lpae_s2_destroy(&pt);

	/* 16K with a 48-bit IPA starts at level 1 with two concatenated tables. */
	ASSERT_EQ(arm_lpae_s2_init(&pt, 14, 48, false), 0);
	ASSERT_EQ(pt.geom.start, 1);
	ASSERT_EQ(arm_lpae_level_entries(&pt.geom, 1), 4096);
	ASSERT_EQ(arm_lpae_s2_map(&pt, UINT64_C(0xffffffffc000), 0x4000, SZ_16K, 1, RW, &mapped),
		  0);
	ASSERT_EQ(arm_lpae_s2_walk(&pt, UINT64_C(0xffffffffc010), IOMMU_READ, &leaf), 0);
	ASSERT_EQ(leaf.phys, 0x4010);
	arm_lpae_s2_destroy(&pt);

	/* 64K: three levels from level 1, a 64-entry root. */
	ASSERT_EQ(arm_lpae_s2_init(&pt, 16, 48, false), 0);
	ASSERT_EQ(pt.geom.start, 1);
	ASSERT_EQ(arm_lpae_level_entries(&pt.geom, 1), 64);
	arm_lpae_s2_destroy(&pt);
	ASSERT_EQ(arm_lpae_s2_init(&pt, 13, 48, false), -EINVAL);
}

TEST(s2_unmap_rules)
{
	struct arm_lpae_s2 pt;
	struct arm_lpae_leaf leaf;
	size_t mapped;
	long live0 = uiommu_alloc_live();

	ASSERT_EQ(arm_lpae_s2_init(&pt, 12, 48, false), 0);
	ASSERT_EQ(arm_lpae_s2_map(&pt, 0, 0x100000, SZ_4K, 4, RW, &mapped), 0);
	/* Stops at the first hole. */
	ASSERT_EQ(arm_lpae_s2_unmap(&pt, 0x2000, SZ_4K, 5), 2 * SZ_4K);
	/* A block is never split by a smaller unmap. */
	ASSERT_EQ(arm_lpae_s2_map(&pt, SZ_2M, 0x200000, SZ_2M, 1, RW, &mapped), 0);
	ASSERT_EQ(arm_lpae_s2_unmap(&pt, SZ_2M, SZ_4K, 1), 0);
	ASSERT_EQ(arm_lpae_s2_unmap(&pt, SZ_2M, SZ_2M, 1), SZ_2M);
	/* A 2M unmap over a table of pages takes the table with it. */
	ASSERT_EQ(arm_lpae_s2_unmap(&pt, 0, SZ_2M, 1), SZ_2M);
	ASSERT_EQ(arm_lpae_s2_map(&pt, 0, 0x400000, SZ_2M, 1, RW, &mapped), 0);
	/* A table emptied by page unmaps gives way to a block. */
	ASSERT_EQ(arm_lpae_s2_map(&pt, SZ_1G, 0x100000, SZ_4K, 2, RW, &mapped), 0);
	ASSERT_EQ(arm_lpae_s2_unmap(&pt, SZ_1G, SZ_4K, 2), 2 * SZ_4K);
	ASSERT_EQ(arm_lpae_s2_map(&pt, SZ_1G, 0x600000, SZ_2M, 1, RW, &mapped), 0);
	/* But one that still maps something does not. */
	ASSERT_EQ(arm_lpae_s2_map(&pt, 2 * SZ_1G, 0x100000, SZ_4K, 1, RW, &mapped), 0);
	ASSERT_EQ(arm_lpae_s2_map(&pt, 2 * SZ_1G, 0x800000, SZ_2M, 1, RW, &mapped), -EEXIST);
	/*
	 * A run of pages that meets a taken slot, in its first table and in a later one: the
	 * pages before it are mapped and counted, the taken one keeps its page, nothing after
	 * is touched. A run over a table emptied by unmaps maps it again, slot by slot.
	 */
	uint64_t run = 4 * SZ_1G - 10 * SZ_4K;

	ASSERT_EQ(arm_lpae_s2_map(&pt, run + 5 * SZ_4K, 0x900000, SZ_4K, 1, RW, &mapped), 0);
	ASSERT_EQ(arm_lpae_s2_map(&pt, run + 15 * SZ_4K, 0x900000, SZ_4K, 1, RW, &mapped), 0);
	ASSERT_EQ(arm_lpae_s2_map(&pt, run, 0x1000000, SZ_4K, 8, RW, &mapped), -EEXIST);
	ASSERT_EQ(mapped, 5 * SZ_4K);
	ASSERT_EQ(arm_lpae_s2_map(&pt, run + 6 * SZ_4K, 0x1000000, SZ_4K, 20, RW, &mapped),
		  -EEXIST);
	ASSERT_EQ(mapped, 9 * SZ_4K);
	for (uint64_t k = 0; k < 26; k++) {
		int rc = arm_lpae_s2_walk(&pt, run + k * SZ_4K, IOMMU_READ, &leaf);

		if (k == 5 || k == 15) {
			ASSERT_EQ(rc, 0);
			ASSERT_EQ(leaf.phys, 0x900000);
		} else if (k < 15) {
			ASSERT_EQ(rc, 0);
			ASSERT_EQ(leaf.phys, 0x1000000 + (k < 5 ? k : k - 6) * SZ_4K);
		} else {
			ASSERT_EQ(rc, -ENOENT);
		}
	}
	ASSERT_EQ(arm_lpae_s2_unmap(&pt, run, SZ_4K, 26), 16 * SZ_4K);
	ASSERT_EQ(arm_lpae_s2_map(&pt, run, 0x1000000, SZ_4K, 26, RW, &mapped), 0);
	ASSERT_EQ(mapped, 26 * SZ_4K);
	ASSERT_EQ(arm_lpae_s2_walk(&pt, run + 25 * SZ_4K, IOMMU_READ, &leaf), 0);
	ASSERT_EQ(leaf.phys, 0x1000000 + 25 * SZ_4K);
	arm_lpae_s2_destroy(&pt);
	ASSERT_EQ(uiommu_alloc_live(), live0);
}

struct dirty_log {
	unsigned int n;
	uint64_t iova[16], len[16];
};

static void dirty_rec(struct iommu_dirty_bitmap *d, uint64_t iova, uint64_t len);

struct dirty_bm {
	struct iommu_dirty_bitmap bm;
	struct dirty_log log;
};

static void dirty_rec(struct iommu_dirty_bitmap *d, uint64_t iova, uint64_t len)
{
	struct dirty_bm *b = container_of(d, struct dirty_bm, bm);

	if (b->log.n < 16) {
		b->log.iova[b->log.n] = iova;
		b->log.len[b->log.n] = len;
	}
	b->log.n++;
}

TEST(s2_dirty_tracking_dbm)
{
	struct arm_smmu_features f = ARM_SMMU_FEATURES_DEFAULT;
	struct arm_smmu_device *smmu = arm_smmu_device_alloc(&f);
	struct iommu_domain *dom;
	struct dirty_bm b = { .bm = { .record = dirty_rec } };
	uint64_t size;
	size_t mapped;
	int prot;

	ASSERT_FALSE(IS_ERR(smmu));
	dom = arm_smmu_domain_alloc_paging(smmu, IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING, 12);
	ASSERT_FALSE(IS_ERR(dom));
	ASSERT_TRUE(dom->dirty_ops != NULL);
	ASSERT_EQ(dom->dirty_ops->set_dirty_tracking(dom, true), 0);
	ASSERT_EQ(dom->ops->map_pages(dom, 0x10000, 0x20000, SZ_4K, 4, RW, &mapped), 0);
	ASSERT_EQ(dom->ops->map_pages(dom, SZ_2M, 0x400000, SZ_2M, 1, RW, &mapped), 0);
	ASSERT_EQ(dom->ops->map_pages(dom, 0x30000, 0x50000, SZ_4K, 1, IOMMU_READ, &mapped), 0);
	/* Writable leaves start writable-dirty (as Linux maps them); a read clears them. */
	ASSERT_EQ(dom->dirty_ops->read_and_clear_dirty(dom, 0, SZ_1G, 0, &b.bm), 0);
	ASSERT_EQ(b.log.n, 5);
	ASSERT_EQ(b.log.iova[4], SZ_2M);
	ASSERT_EQ(b.log.len[4], SZ_2M);
	b.log.n = 0;
	ASSERT_EQ(dom->dirty_ops->read_and_clear_dirty(dom, 0, SZ_1G, 0, &b.bm), 0);
	ASSERT_EQ(b.log.n, 0);
	/* A clean leaf is still writable (DBM), reports CLEAN, and a write makes it dirty. */
	ASSERT_EQ(dom->ops->dma_walk(dom, 0x11000, false, &prot, &size), 0x21000);
	ASSERT_EQ(prot, RW);
	ASSERT_EQ(dom->ops->dma_walk(dom, 0x11008, true, &prot, &size), 0x21008);
	ASSERT_EQ(dom->ops->dma_walk(dom, SZ_2M + 64, true, &prot, &size), 0x400040);
	ASSERT_EQ(dom->dirty_ops->read_and_clear_dirty(dom, 0, SZ_1G, IOMMU_DIRTY_NO_CLEAR,
						       &b.bm), 0);
	ASSERT_EQ(b.log.n, 2);
	ASSERT_EQ(b.log.iova[0], 0x11000);
	ASSERT_EQ(b.log.len[0], SZ_4K);
	b.log.n = 0;
	/* NO_CLEAR kept them; a partial range reports the whole leaf. */
	ASSERT_EQ(dom->dirty_ops->read_and_clear_dirty(dom, SZ_2M + SZ_4K, SZ_4K, 0, &b.bm), 0);
	ASSERT_EQ(b.log.n, 1);
	ASSERT_EQ(b.log.len[0], SZ_2M);
	ASSERT_EQ(dom->dirty_ops->read_and_clear_dirty(dom, 0, 0, 0, &b.bm), -EINVAL);
	dom->ops->free(dom);
	arm_smmu_device_free(smmu);
}

/* ---- ID registers and allocation errnos ----------------------------------------------------- */

TEST(hw_info_idrs)
{
	struct arm_smmu_features f = ARM_SMMU_FEATURES_DEFAULT;
	struct arm_smmu_device *smmu = arm_smmu_device_alloc(&f);
	struct arm_smmu_hw_info info;

	ASSERT_FALSE(IS_ERR(smmu));
	arm_smmu_hw_info(smmu, &info);
	/* What QEMU's arm-smmuv3,accel=on compares (hw-iommus.md D.1). */
	EXPECT_EQ((info.idr[0] >> 27) & 3, 1);        /* ST_LEVEL: 2-level */
	EXPECT_EQ((info.idr[0] >> 21) & 3, 2);        /* TTENDIAN: little-endian */
	EXPECT_EQ((info.idr[0] >> 2) & 3, 2);         /* TTF: AArch64 */
	EXPECT_EQ(info.idr[0] & 3, 3);                /* S1P and S2P */
	EXPECT_EQ((info.idr[0] >> 6) & 3, 2);         /* HTTU: access and dirty */
	EXPECT_EQ((info.idr[0] >> 19) & 1, 1);        /* CD2L */
	EXPECT_EQ((info.idr[0] >> 12) & 1, 1);        /* ASID16 */
	EXPECT_EQ((info.idr[0] >> 10) & 1, 0);        /* no ATS */
	EXPECT_EQ((info.idr[0] >> 24) & 3, 0);        /* stall and terminate */
	EXPECT_EQ(info.idr[1] & 0x3f, 16);            /* SIDSIZE */
	EXPECT_EQ((info.idr[1] >> 6) & 0x1f, 20);     /* SSIDSIZE */
	EXPECT_EQ((info.idr[3] >> 10) & 1, 1);        /* RIL */
	EXPECT_EQ(info.idr[5] & 7, 5);                /* OAS 48 */
	EXPECT_EQ((info.idr[5] >> 4) & 7, 7);         /* 4K, 16K and 64K granules */
	EXPECT_EQ(info.idr[2], 0);
	EXPECT_EQ(info.idr[4], 0);
	EXPECT_EQ(info.aidr, 2);
	arm_smmu_device_free(smmu);

	f.nesting = false;
	f.httu = false;
	f.ssid_bits = 0;
	smmu = arm_smmu_device_alloc(&f);
	ASSERT_FALSE(IS_ERR(smmu));
	arm_smmu_hw_info(smmu, &info);
	EXPECT_EQ(info.idr[0] & 3, 1);
	EXPECT_EQ((info.idr[0] >> 6) & 3, 0);
	EXPECT_EQ((info.idr[1] >> 6) & 0x1f, 0);
	arm_smmu_device_free(smmu);

	f.ssid_bits = 21;
	ASSERT_EQ(PTR_ERR(arm_smmu_device_alloc(&f)), -EINVAL);
	f.ssid_bits = 0;
	f.sid_bits = 15;
	ASSERT_EQ(PTR_ERR(arm_smmu_device_alloc(&f)), -EINVAL);
}

TEST(alloc_errnos)
{
	struct arm_smmu_features f = ARM_SMMU_FEATURES_DEFAULT, plain = f;
	struct arm_smmu_device *smmu = arm_smmu_device_alloc(&f), *other, *flat;
	struct iommu_domain *parent, *paging, *other_parent, *flat_paging;
	struct arm_smmu_master *m1, *m2, *om;
	struct arm_vsmmu *vsmmu;

	plain.nesting = false;
	plain.httu = false;
	other = arm_smmu_device_alloc(&f);
	flat = arm_smmu_device_alloc(&plain);
	ASSERT_FALSE(IS_ERR(smmu) || IS_ERR(other) || IS_ERR(flat));

	/* Paging: NEST_PARENT alone; no nesting or no HTTU refuse theirs; granules. */
	ASSERT_EQ(PTR_ERR(arm_smmu_domain_alloc_paging(smmu, IOMMU_DOMAIN_ALLOC_NEST_PARENT |
							    IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING, 12)),
		  -EOPNOTSUPP);
	ASSERT_EQ(PTR_ERR(arm_smmu_domain_alloc_paging(smmu, IOMMU_DOMAIN_ALLOC_PASID, 12)),
		  -EOPNOTSUPP);
	ASSERT_EQ(PTR_ERR(arm_smmu_domain_alloc_paging(flat, IOMMU_DOMAIN_ALLOC_NEST_PARENT, 12)),
		  -EOPNOTSUPP);
	ASSERT_EQ(PTR_ERR(arm_smmu_domain_alloc_paging(flat, IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING,
						       12)), -EOPNOTSUPP);
	ASSERT_EQ(PTR_ERR(arm_smmu_domain_alloc_paging(smmu, 0, 13)), -EINVAL);
	parent = arm_smmu_domain_alloc_paging(smmu, IOMMU_DOMAIN_ALLOC_NEST_PARENT, 12);
	paging = arm_smmu_domain_alloc_paging(smmu, 0, 12);
	other_parent = arm_smmu_domain_alloc_paging(other, IOMMU_DOMAIN_ALLOC_NEST_PARENT, 12);
	flat_paging = arm_smmu_domain_alloc_paging(flat, 0, 16);
	ASSERT_FALSE(IS_ERR(parent) || IS_ERR(paging) || IS_ERR(other_parent) ||
		     IS_ERR(flat_paging));
	ASSERT_NE(arm_smmu_domain_vmid(parent), arm_smmu_domain_vmid(paging));

	/* vIOMMU: nesting needed; a NEST_PARENT of the same SMMU. */
	ASSERT_EQ(PTR_ERR(arm_vsmmu_alloc(flat, flat_paging)), -EOPNOTSUPP);
	ASSERT_EQ(PTR_ERR(arm_vsmmu_alloc(smmu, paging)), -EINVAL);
	ASSERT_EQ(PTR_ERR(arm_vsmmu_alloc(smmu, other_parent)), -EINVAL);
	vsmmu = arm_vsmmu_alloc(smmu, parent);
	ASSERT_FALSE(IS_ERR(vsmmu));

	/* Masters: SIDSIZE, unique SIDs. */
	ASSERT_EQ(PTR_ERR(arm_smmu_master_alloc(smmu, 1u << 16)), -EINVAL);
	m1 = arm_smmu_master_alloc(smmu, 1);
	m2 = arm_smmu_master_alloc(smmu, 2);
	om = arm_smmu_master_alloc(other, 1);
	ASSERT_FALSE(IS_ERR(m1) || IS_ERR(m2) || IS_ERR(om));
	ASSERT_EQ(PTR_ERR(arm_smmu_master_alloc(smmu, 1)), -EEXIST);

	/* vDEVICEs: same SMMU, one per master, unique vSIDs. */
	ASSERT_EQ(arm_vsmmu_vdevice_add(vsmmu, om, 5), -EINVAL);
	ASSERT_EQ(arm_vsmmu_vdevice_add(vsmmu, m1, 5), 0);
	ASSERT_EQ(arm_vsmmu_vdevice_add(vsmmu, m1, 6), -EEXIST);
	ASSERT_EQ(arm_vsmmu_vdevice_add(vsmmu, m2, 5), -EEXIST);
	ASSERT_EQ(arm_vsmmu_vdevice_add(vsmmu, m2, UINT64_C(1) << 40), 0);

	/* Attach: a paging domain of another SMMU is EINVAL. */
	ASSERT_EQ(arm_smmu_master_attach(m1, other_parent), -EINVAL);
	ASSERT_EQ(arm_smmu_master_attach(m1, paging), 0);
	ASSERT_EQ(arm_smmu_master_attach(m1, NULL), 0);

	arm_vsmmu_vdevice_del(vsmmu, m1);
	arm_vsmmu_vdevice_del(vsmmu, m2);
	arm_smmu_master_free(m1);
	arm_smmu_master_free(m2);
	arm_smmu_master_free(om);
	arm_vsmmu_free(vsmmu);
	parent->ops->free(parent);
	paging->ops->free(paging);
	other_parent->ops->free(other_parent);
	flat_paging->ops->free(flat_paging);
	arm_smmu_device_free(smmu);
	arm_smmu_device_free(other);
	arm_smmu_device_free(flat);
}

/* ---- vSTE validation ----------------------------------------------------------------------- */

TEST_F(nest, vste_validation)
{
	uint64_t ok0 = ste0(STE_CFG_S1_TRANS, 0, self->cd_ipa, 0), ste[2], bad[2];
	struct iommu_user_data ud = { .type = 2, .data = bad, .len = 16 };
	struct iommu_domain *dom;
	bool ats;
	unsigned int bit, cfg, eats;

	/* Flags (PASID) are EOPNOTSUPP; a wrong type or length EINVAL. */
	bad[0] = ok0;
	bad[1] = 0;
	ASSERT_EQ(PTR_ERR(arm_vsmmu_domain_alloc_nested(self->vsmmu, IOMMU_DOMAIN_ALLOC_PASID, &ud)),
		  -EOPNOTSUPP);
	ud.type = 1;
	ASSERT_EQ(PTR_ERR(arm_vsmmu_domain_alloc_nested(self->vsmmu, 0, &ud)), -EINVAL);
	ud.type = 2;
	ud.len = 8;
	ASSERT_EQ(PTR_ERR(arm_vsmmu_domain_alloc_nested(self->vsmmu, 0, &ud)), -EINVAL);
	ud.len = 24;
	ASSERT_EQ(PTR_ERR(arm_vsmmu_domain_alloc_nested(self->vsmmu, 0, &ud)), -EINVAL);
	ud.len = 16;

	/* Every bit outside the nesting masks is EIO; every bit inside is accepted. */
	for (bit = 0; bit < 128; bit++) {
		uint64_t mask = bit < 64 ? STE0_NESTING_ALLOWED : STE1_NESTING_ALLOWED;
		uint64_t b = UINT64_C(1) << (bit % 64);

		if (bit == 0 || (bit >= 1 && bit <= 3) || (bit >= 92 && bit <= 93))
			continue; /* V, Config, EATS: their own rules below */
		bad[0] = ok0 | (bit < 64 ? b : 0);
		bad[1] = bit < 64 ? 0 : b;
		dom = arm_vsmmu_domain_alloc_nested(self->vsmmu, 0, &ud);
		if (mask & b) {
			ASSERT_FALSE(IS_ERR(dom));
			dom->ops->free(dom);
		} else {
			ASSERT_EQ(PTR_ERR(dom), -EIO);
		}
	}
	/* Config: abort, bypass and S1 translate only. */
	for (cfg = 0; cfg < 8; cfg++) {
		bad[0] = ste0(cfg, 0, self->cd_ipa, 0);
		bad[1] = 0;
		dom = arm_vsmmu_domain_alloc_nested(self->vsmmu, 0, &ud);
		if (cfg == 0 || cfg == 4 || cfg == 5) {
			ASSERT_FALSE(IS_ERR(dom));
			dom->ops->free(dom);
		} else {
			ASSERT_EQ(PTR_ERR(dom), -EIO);
		}
	}
	/* EATS 0/1 accepted and cleared from what is stored; ATS wanted only for S1 + EATS=1. */
	for (eats = 0; eats < 4; eats++) {
		for (cfg = 4; cfg <= 5; cfg++) {
			bad[0] = ste0(cfg, 0, self->cd_ipa, 0);
			bad[1] = (uint64_t)eats << STE1_EATS_SHIFT | STE1_S1CSH;
			dom = arm_vsmmu_domain_alloc_nested(self->vsmmu, 0, &ud);
			if (eats > 1) {
				ASSERT_EQ(PTR_ERR(dom), -EIO);
				continue;
			}
			ASSERT_FALSE(IS_ERR(dom));
			arm_smmu_nested_vste(dom, ste, &ats);
			ASSERT_EQ(ste[0], bad[0]);
			ASSERT_EQ(ste[1], STE1_S1CSH);
			ASSERT_EQ(ats, cfg == 5 && eats == 1);
			dom->ops->free(dom);
		}
	}
	/* V=0: anything goes, and the whole vSTE is stored as zeroes. */
	bad[0] = ~STE0_V;
	bad[1] = ~UINT64_C(0);
	dom = arm_vsmmu_domain_alloc_nested(self->vsmmu, 0, &ud);
	ASSERT_FALSE(IS_ERR(dom));
	arm_smmu_nested_vste(dom, ste, &ats);
	ASSERT_EQ(ste[0], 0);
	ASSERT_EQ(ste[1], 0);
	ASSERT_FALSE(ats);
	dom->ops->free(dom);
}

TEST_F(nest, attach_needs_vdevice_to_translate)
{
	struct arm_smmu_master *m = arm_smmu_master_alloc(self->smmu, 7);
	struct iommu_domain *s1dom, *abort_dom, *bypass_dom;
	uint64_t pa;

	ASSERT_FALSE(IS_ERR(m));
	s1dom = nested_alloc(self->vsmmu, ste0(STE_CFG_S1_TRANS, 0, self->cd_ipa, 0), 0);
	abort_dom = nested_alloc(self->vsmmu, STE0_V, 0);
	bypass_dom = nested_alloc(self->vsmmu, ste0(STE_CFG_BYPASS, 0, 0, 0), 0);
	ASSERT_FALSE(IS_ERR(s1dom) || IS_ERR(abort_dom) || IS_ERR(bypass_dom));
	ASSERT_EQ(arm_smmu_master_attach(m, s1dom), -ENOENT);
	/* Abort and bypass need no vDEVICE (GBPA while the guest's SMMU is off). */
	ASSERT_EQ(arm_smmu_master_attach(m, abort_dom), 0);
	ASSERT_EQ(arm_smmu_master_attach(m, bypass_dom), 0);
	ASSERT_EQ(arm_vsmmu_vdevice_add(self->vsmmu, m, 9), 0);
	ASSERT_EQ(arm_smmu_master_attach(m, s1dom), 0);
	ASSERT_EQ(arm_smmu_master_attach(m, NULL), 0);
	arm_vsmmu_vdevice_del(self->vsmmu, m);
	arm_smmu_master_free(m);

	/* Bypass: stage 2 only; abort: nothing, and no event. */
	nest_set_ste(_metadata, self, ste0(STE_CFG_BYPASS, 0, 0, 0), 0);
	ASSERT_EQ(xl(self, self->data_ipa + 8, ACC_W, &pa), 0);
	ASSERT_EQ(pa, (uint64_t)(uintptr_t)self->data + 8);
	ASSERT_EQ(xl(self, 0x1000, ACC_R, &pa), -EFAULT);
	nest_set_ste(_metadata, self, STE0_V, 0);
	ASSERT_EQ(xl(self, self->data_ipa, ACC_R, &pa), -EFAULT);
	ASSERT_EQ(self->ev.n, 0);
	s1dom->ops->free(s1dom);
	abort_dom->ops->free(abort_dom);
	bypass_dom->ops->free(bypass_dom);
}

/* ---- translation -------------------------------------------------------------------------- */

TEST_F(nest, translate_both_stages)
{
	uint64_t pa;

	s1_map(&self->gm, &self->s1, 0x7000, self->data_ipa + SZ_4K, 3, S1_LEAF);
	ASSERT_EQ(xl(self, 0x7123, ACC_R, &pa), 0);
	ASSERT_EQ(pa, (uint64_t)(uintptr_t)self->data + SZ_4K + 0x123);
	ASSERT_EQ(xl(self, 0x7ff8, ACC_W, &pa), 0);
	ASSERT_EQ(pa, (uint64_t)(uintptr_t)self->data + 2 * SZ_4K - 8);
	/* A 2 MiB and a 1 GiB stage-1 block. */
	s1_map(&self->gm, &self->s1, SZ_1G + SZ_2M, self->data_ipa & ~(SZ_2M - 1), 2, S1_LEAF);
	ASSERT_EQ(xl(self, SZ_1G + SZ_2M + (self->data_ipa & (SZ_2M - 1)) + 0x10, ACC_R, &pa), 0);
	ASSERT_EQ(pa, (uint64_t)(uintptr_t)self->data + 0x10);
	s1_map(&self->gm, &self->s1, 4 * SZ_1G, self->data_ipa & ~(SZ_1G - 1), 1, S1_LEAF);
	ASSERT_EQ(xl(self, 4 * SZ_1G + (self->data_ipa & (SZ_1G - 1)) + 0x20, ACC_R, &pa), 0);
	ASSERT_EQ(pa, (uint64_t)(uintptr_t)self->data + 0x20);
	ASSERT_EQ(self->ev.n, 0);
}

/*
 * Stalls: a CD with S=1 is C_BAD_CD for a master that may not stall (the host's S1STALLD) and
 * for a vSTE with S1STALLD; for a stalling master its stage-1 faults stall, with no event for
 * the guest (the page request is the host's). CMD_RESUME is recorded per master.
 */
TEST_F(nest, stalls_and_resume)
{
	uint64_t *cd = g_ptr(&self->gm, self->cd_ipa), pa, cmd[2];

	cd[0] |= CD0_S;
	ASSERT_EQ(cmd1(self, CMDQ_OP_CFGI_CD | (uint64_t)VSID << 32, 0), 0);
	ASSERT_EQ(xl(self, 0x9000, ACC_R, &pa), -EFAULT);
	ASSERT_EQ(self->ev.n, 1);
	ASSERT_EQ(self->ev.evt[0][0], EVT_ID_C_BAD_CD | (uint64_t)VSID << 32);

	arm_smmu_master_set_stall(self->master, true);
	ASSERT_EQ(xl(self, 0x9000, ACC_R, &pa), -EFAULT); /* F_TRANSLATION, stalled */
	ASSERT_EQ(xl(self, 0x9000, ACC_W, &pa), -EFAULT);
	ASSERT_EQ(self->ev.n, 1);
	s1_map(&self->gm, &self->s1, 0x9000, self->data_ipa, 3, S1_LEAF);
	ASSERT_EQ(xl(self, 0x9010, ACC_R, &pa), 0);
	ASSERT_EQ(pa, (uint64_t)(uintptr_t)self->data + 0x10);

	nest_set_ste(_metadata, self, ste0(STE_CFG_S1_TRANS, 0, self->cd_ipa, 0), STE1_S1STALLD);
	ASSERT_EQ(xl(self, 0xa000, ACC_R, &pa), -EFAULT);
	ASSERT_EQ(self->ev.n, 2);
	ASSERT_EQ(self->ev.evt[1][0], EVT_ID_C_BAD_CD | (uint64_t)VSID << 32);

	ASSERT_EQ(arm_smmu_master_resumes(self->master, NULL), 0u);
	arm_smmu_master_resume(self->master, 0x1234, CMDQ_RESUME_RETRY);
	arm_smmu_master_resume(self->master, 0x99, CMDQ_RESUME_ABORT);
	ASSERT_EQ(arm_smmu_master_resumes(self->master, cmd), 2u);
	ASSERT_EQ(cmd[0], CMDQ_OP_RESUME | (uint64_t)SID << 32 |
				  (uint64_t)CMDQ_RESUME_ABORT << CMDQ_RESUME_0_RESP_SHIFT);
	ASSERT_EQ(cmd[1], 0x99u);
}

static void granule_case(struct __h_test *_metadata, FIXTURE_DATA(nest) *self, unsigned int g,
			 unsigned int ias, unsigned int fmt)
{
	unsigned int cdmax = fmt == STE_S1FMT_LINEAR ? 4 : 12;
	uint64_t ctx, pa, va = (UINT64_C(1) << (ias - 1)) + (UINT64_C(5) << g);
	uint32_t ssids[] = { 0, 3, 15 };
	struct s1 s[3];

	if (fmt == STE_S1FMT_LINEAR) {
		ctx = g_alloc(&self->gm, (UINT64_C(1) << cdmax) * CD_SIZE, SZ_4K);
	} else {
		unsigned int split = fmt == STE_S1FMT_64K_L2 ? 10 : 6;
		uint64_t *l1;

		ctx = g_alloc(&self->gm, 8 << (cdmax - split), 64);
		l1 = g_ptr(&self->gm, ctx);
		/* Only the L2 table of SSIDs 0..2^split-1 is valid. */
		l1[0] = g_alloc(&self->gm, CD_SIZE << split, SZ_4K) | L1CD_V;
	}
	for (size_t i = 0; i < ARRAY_SIZE(ssids); i++) {
		uint64_t *cd;

		s1_init(&self->gm, &s[i], g, ias);
		s1_map(&self->gm, &s[i], va, self->data_ipa + i * SZ_64K, 3, S1_LEAF);
		if (fmt == STE_S1FMT_LINEAR)
			cd = g_ptr(&self->gm, ctx + ssids[i] * CD_SIZE);
		else
			cd = g_ptr(&self->gm, (*g_ptr(&self->gm, ctx) & L1CD_L2PTR_MASK) +
						      ssids[i] * CD_SIZE);
		cd_write(cd, &s[i], (uint16_t)(100 + i), 0);
	}
	nest_set_ste(_metadata, self, ste0(STE_CFG_S1_TRANS, fmt, ctx, cdmax), STE_S1DSS_SSID0);
	for (size_t i = 0; i < ARRAY_SIZE(ssids); i++) {
		ASSERT_EQ(xl_ssid(self, va + 0x18, ACC_R, ssids[i] != 0, ssids[i], &pa), 0);
		ASSERT_EQ(pa, (uint64_t)(uintptr_t)self->data + i * SZ_64K + 0x18);
	}
	/* The page beyond the leaf: F_TRANSLATION with the SSID. */
	ASSERT_EQ(xl_ssid(self, va + (UINT64_C(1) << g), ACC_R, true, 3, &pa), -EFAULT);
	ASSERT_EQ(self->ev.n, 1);
	ASSERT_EQ(self->ev.evt[0][0], EVT_ID_F_TRANSLATION | EVT0_SSV | UINT64_C(3) << 12 |
					      (uint64_t)VSID << 32);
	if (fmt != STE_S1FMT_LINEAR) {
		/* An SSID in an invalid L1 descriptor's span: C_BAD_SUBSTREAMID. */
		uint32_t far = fmt == STE_S1FMT_64K_L2 ? 1024 : 64;

		ASSERT_EQ(xl_ssid(self, va, ACC_R, true, far, &pa), -EFAULT);
		ASSERT_EQ(self->ev.n, 2);
		ASSERT_EQ(self->ev.evt[1][0], EVT_ID_C_BAD_SUBSTREAMID | EVT0_SSV |
						      (uint64_t)far << 12 | (uint64_t)VSID << 32);
	}
}

TEST_F(nest, granule_4k_linear) { granule_case(_metadata, self, 12, 48, STE_S1FMT_LINEAR); }
TEST_F(nest, granule_16k_linear) { granule_case(_metadata, self, 14, 47, STE_S1FMT_LINEAR); }
TEST_F(nest, granule_64k_linear) { granule_case(_metadata, self, 16, 42, STE_S1FMT_LINEAR); }
TEST_F(nest, granule_4k_cd2l_64k) { granule_case(_metadata, self, 12, 39, STE_S1FMT_64K_L2); }
TEST_F(nest, granule_64k_cd2l_4k) { granule_case(_metadata, self, 16, 48, STE_S1FMT_4K_L2); }
TEST_F(nest, granule_16k_cd2l_4k) { granule_case(_metadata, self, 14, 25, STE_S1FMT_4K_L2); }

/* The last event, with the fields a stage-1 fault carries. */
static void expect_fault(struct __h_test *_metadata, FIXTURE_DATA(nest) *self, unsigned int id,
			 uint64_t iova, unsigned int access)
{
	const uint64_t *e;

	ASSERT_GT(self->ev.n, 0);
	e = self->ev.evt[self->ev.n - 1];
	ASSERT_EQ(e[0], id | (uint64_t)VSID << 32);
	ASSERT_EQ(e[1], (uint64_t)EVT_CLASS_IN << EVT1_CLASS_SHIFT |
				(access & ACC_W ? 0 : EVT1_RNW) | (access & ACC_P ? EVT1_PNU : 0) |
				(access & ACC_X ? EVT1_IND : 0));
	ASSERT_EQ(e[2], iova);
	ASSERT_EQ(e[3], 0);
}

TEST_F(nest, permissions)
{
	struct guest *gm = &self->gm;
	uint64_t pa;

	s1_map(gm, &self->s1, 0x1000, self->data_ipa, 3, S1_LEAF | ARM_LPAE_S1_AP2);
	ASSERT_EQ(xl(self, 0x1008, ACC_R, &pa), 0);
	ASSERT_EQ(xl(self, 0x1010, ACC_W, &pa), -EFAULT);
	expect_fault(_metadata, self, EVT_ID_F_PERMISSION, 0x1010, ACC_W);
	ASSERT_EQ(xl(self, 0x1010, ACC_W | ACC_P, &pa), -EFAULT);
	expect_fault(_metadata, self, EVT_ID_F_PERMISSION, 0x1010, ACC_W | ACC_P);

	/* AP[1]=0: privileged only. */
	s1_map(gm, &self->s1, 0x2000, self->data_ipa, 3, S1_LEAF & ~ARM_LPAE_S1_AP1);
	ASSERT_EQ(xl(self, 0x2000, ACC_R, &pa), -EFAULT);
	expect_fault(_metadata, self, EVT_ID_F_PERMISSION, 0x2000, ACC_R);
	ASSERT_EQ(xl(self, 0x2000, ACC_W | ACC_P, &pa), 0);

	/* XN: UXN stops unprivileged execution, PXN privileged. */
	s1_map(gm, &self->s1, 0x3000, self->data_ipa, 3, S1_LEAF | ARM_LPAE_S1_UXN);
	ASSERT_EQ(xl(self, 0x3000, ACC_R | ACC_X, &pa), -EFAULT);
	expect_fault(_metadata, self, EVT_ID_F_PERMISSION, 0x3000, ACC_R | ACC_X);
	ASSERT_EQ(xl(self, 0x3000, ACC_R | ACC_X | ACC_P, &pa), 0);
	s1_map(gm, &self->s1, 0x4000, self->data_ipa, 3, S1_LEAF | ARM_LPAE_S1_PXN);
	ASSERT_EQ(xl(self, 0x4000, ACC_R | ACC_X | ACC_P, &pa), -EFAULT);
	ASSERT_EQ(xl(self, 0x4000, ACC_R | ACC_X, &pa), 0);

	/* APTable read-only on a level-2 table restricts the page under it. */
	s1_map(gm, &self->s1, SZ_1G, self->data_ipa, 3, S1_LEAF);
	*s1_slot(gm, &self->s1, SZ_1G, 2, 0) |= ARM_LPAE_TBL_AP2;
	ASSERT_EQ(xl(self, SZ_1G, ACC_R, &pa), 0);
	ASSERT_EQ(xl(self, SZ_1G + 8, ACC_W | ACC_P, &pa), -EFAULT);
	expect_fault(_metadata, self, EVT_ID_F_PERMISSION, SZ_1G + 8, ACC_W | ACC_P);
	/* The hit path refuses what the walk refused: a cached read does not serve a write. */
	ASSERT_EQ(xl(self, 0x1018, ACC_W, &pa), -EFAULT);
	ASSERT_EQ(self->ev.n, 7);
}

TEST_F(nest, stage2_permission_limits_stage1)
{
	uint64_t pa, page = self->data_ipa + 8 * SZ_64K;
	uint64_t pgsize = UINT64_C(1) << variant->s2_shift;
	size_t mapped;

	/* Make one stage-2 page read-only: a stage-1 writable page there is read-only. */
	ASSERT_EQ(self->parent->ops->unmap_pages(self->parent, page & ~(pgsize - 1), pgsize, 1,
						 NULL), pgsize);
	ASSERT_EQ(self->parent->ops->map_pages(self->parent, page & ~(pgsize - 1),
					       g_pa(&self->gm, page & ~(pgsize - 1)), pgsize, 1,
					       IOMMU_READ, &mapped), 0);
	s1_map(&self->gm, &self->s1, 0x9000, page, 3, S1_LEAF);
	ASSERT_EQ(xl(self, 0x9000, ACC_R, &pa), 0);
	ASSERT_EQ(xl(self, 0x9000, ACC_W, &pa), -EFAULT);
	/* A stage-2 fault stays in the host: no event for the guest. */
	ASSERT_EQ(self->ev.n, 0);
	/* Output IPA outside stage 2: also the host's. */
	s1_map(&self->gm, &self->s1, 0xa000, UINT64_C(0x10000000), 3, S1_LEAF);
	ASSERT_EQ(xl(self, 0xa000, ACC_R, &pa), -EFAULT);
	ASSERT_EQ(self->ev.n, 0);
}

TEST_F(nest, access_flag_and_hw_updates)
{
	struct guest *gm = &self->gm;
	uint64_t pa, *leaf, *cd = g_ptr(gm, self->cd_ipa);

	/* AF=0 without HA or AFFD: F_ACCESS, and the descriptor is untouched. */
	leaf = s1_map(gm, &self->s1, 0x5000, self->data_ipa, 3, S1_LEAF & ~ARM_LPAE_AF);
	ASSERT_EQ(xl(self, 0x5000, ACC_R, &pa), -EFAULT);
	expect_fault(_metadata, self, EVT_ID_F_ACCESS, 0x5000, ACC_R);
	ASSERT_EQ(*leaf & ARM_LPAE_AF, 0);

	/* HA: the SMMU sets AF in guest memory. HD: a write to writable-clean clears AP[2]. */
	cd[0] |= CD0_HA | CD0_HD;
	ASSERT_EQ(cmd1(self, CMDQ_OP_CFGI_CD | (uint64_t)VSID << 32, 0), 0);
	ASSERT_EQ(xl(self, 0x5000, ACC_R, &pa), 0);
	ASSERT_EQ(*leaf & ARM_LPAE_AF, ARM_LPAE_AF);
	leaf = s1_map(gm, &self->s1, 0x6000, self->data_ipa, 3,
		      (S1_LEAF & ~ARM_LPAE_AF) | ARM_LPAE_S1_AP2 | ARM_LPAE_DBM);
	ASSERT_EQ(xl(self, 0x6000, ACC_R, &pa), 0);
	ASSERT_EQ(*leaf & (ARM_LPAE_AF | ARM_LPAE_S1_AP2), ARM_LPAE_AF | ARM_LPAE_S1_AP2);
	/* The cached read-only entry does not serve the write: it walks and marks dirty. */
	ASSERT_EQ(xl(self, 0x6008, ACC_W, &pa), 0);
	ASSERT_EQ(*leaf & ARM_LPAE_S1_AP2, 0);
	ASSERT_EQ(pa, (uint64_t)(uintptr_t)self->data + 8);
	/* Read-only without DBM stays a permission fault under HD. */
	s1_map(gm, &self->s1, 0x8000, self->data_ipa, 3, S1_LEAF | ARM_LPAE_S1_AP2);
	ASSERT_EQ(xl(self, 0x8000, ACC_W, &pa), -EFAULT);
	expect_fault(_metadata, self, EVT_ID_F_PERMISSION, 0x8000, ACC_W);

	/* AFFD without HA: AF=0 is treated as 1 and stays 0. */
	cd[0] = (cd[0] & ~(CD0_HA | CD0_HD)) | CD0_AFFD;
	ASSERT_EQ(cmd1(self, CMDQ_OP_CFGI_CD_ALL | (uint64_t)VSID << 32, 0), 0);
	leaf = s1_map(gm, &self->s1, 0xb000, self->data_ipa, 3, S1_LEAF & ~ARM_LPAE_AF);
	ASSERT_EQ(xl(self, 0xb000, ACC_R, &pa), 0);
	ASSERT_EQ(*leaf & ARM_LPAE_AF, 0);
}

TEST_F(nest, configuration_events)
{
	struct guest *gm = &self->gm;
	uint64_t pa, *cd = g_ptr(gm, self->cd_ipa);

	/* A vSTE with V=0: C_BAD_STE with the vSID. */
	nest_set_ste(_metadata, self, 0, 0);
	ASSERT_EQ(xl(self, 0x1000, ACC_R, &pa), -EFAULT);
	ASSERT_EQ(self->ev.n, 1);
	ASSERT_EQ(self->ev.evt[0][0], EVT_ID_C_BAD_STE | (uint64_t)VSID << 32);
	ASSERT_EQ(self->ev.evt[0][1], 0);
	ASSERT_EQ(self->ev.evt[0][2], 0);
	/* S1Fmt 3 is reserved: C_BAD_STE too. */
	nest_set_ste(_metadata, self, ste0(STE_CFG_S1_TRANS, 3, self->cd_ipa, 0), 0);
	ASSERT_EQ(xl(self, 0x1000, ACC_R, &pa), -EFAULT);
	ASSERT_EQ(self->ev.evt[1][0], EVT_ID_C_BAD_STE | (uint64_t)VSID << 32);

	/* CDs: V=0, AA64=0, T0SZ out of 16..39, TG0=3, big-endian, stall: C_BAD_CD. */
	nest_set_ste(_metadata, self, ste0(STE_CFG_S1_TRANS, 0, self->cd_ipa, 0), 0);
	{
		uint64_t good = cd[0];
		uint64_t bads[] = {
			good & ~CD0_V, good & ~CD0_AA64, (good & ~CD0_T0SZ_MASK) | 15,
			(good & ~CD0_T0SZ_MASK) | 40, good | 3u << CD0_TG0_SHIFT, good | CD0_ENDI,
			good | CD0_S,
		};

		for (size_t i = 0; i < ARRAY_SIZE(bads); i++) {
			cd[0] = bads[i];
			ASSERT_EQ(cmd1(self, CMDQ_OP_CFGI_CD | (uint64_t)VSID << 32, 0), 0);
			ASSERT_EQ(xl(self, 0x1000, ACC_R, &pa), -EFAULT);
			ASSERT_EQ(self->ev.evt[self->ev.n - 1][0],
				  EVT_ID_C_BAD_CD | (uint64_t)VSID << 32);
		}
		cd[0] = good;
		/* TTB0 beyond IPS (40 bits). */
		cd[0] = (good & ~(UINT64_C(7) << CD0_IPS_SHIFT)) | UINT64_C(2) << CD0_IPS_SHIFT;
		cd[1] = UINT64_C(1) << 41;
		ASSERT_EQ(cmd1(self, CMDQ_OP_CFGI_CD | (uint64_t)VSID << 32, 0), 0);
		ASSERT_EQ(xl(self, 0x1000, ACC_R, &pa), -EFAULT);
		ASSERT_EQ(self->ev.evt[self->ev.n - 1][0], EVT_ID_C_BAD_CD | (uint64_t)VSID << 32);
		cd_write(cd, &self->s1, 7, 0);
		ASSERT_EQ(cmd1(self, CMDQ_OP_CFGI_CD | (uint64_t)VSID << 32, 0), 0);
	}

	/* Substreams with S1CDMax=2: SSV with SSID 4 is beyond; no SSID with S1DSS=0 is
	 * F_STREAM_DISABLED; S1DSS=1 bypasses stage 1; S1DSS=2 uses CD 0 and refuses SSID 0. */
	self->ev.n = 0;
	nest_set_ste(_metadata, self, ste0(STE_CFG_S1_TRANS, 0, self->cd_ipa, 2),
		     STE_S1DSS_TERMINATE);
	ASSERT_EQ(xl_ssid(self, 0x1000, ACC_R, true, 4, &pa), -EFAULT);
	ASSERT_EQ(self->ev.evt[0][0], EVT_ID_C_BAD_SUBSTREAMID | EVT0_SSV | UINT64_C(4) << 12 |
					      (uint64_t)VSID << 32);
	ASSERT_EQ(xl(self, 0x1000, ACC_R, &pa), -EFAULT);
	ASSERT_EQ(self->ev.evt[1][0], EVT_ID_F_STREAM_DISABLED | (uint64_t)VSID << 32);
	nest_set_ste(_metadata, self, ste0(STE_CFG_S1_TRANS, 0, self->cd_ipa, 2),
		     STE_S1DSS_BYPASS);
	ASSERT_EQ(xl(self, self->data_ipa + 4, ACC_R, &pa), 0);
	ASSERT_EQ(pa, (uint64_t)(uintptr_t)self->data + 4);
	nest_set_ste(_metadata, self, ste0(STE_CFG_S1_TRANS, 0, self->cd_ipa, 2),
		     STE_S1DSS_SSID0);
	ASSERT_EQ(xl_ssid(self, 0x1000, ACC_R, true, 0, &pa), -EFAULT);
	ASSERT_EQ(self->ev.evt[2][0], EVT_ID_C_BAD_SUBSTREAMID | EVT0_SSV | (uint64_t)VSID << 32);
	s1_map(gm, &self->s1, 0x1000, self->data_ipa, 3, S1_LEAF);
	ASSERT_EQ(xl(self, 0x1000, ACC_R, &pa), 0);
	/* With S1CDMax=0 any SSID is C_BAD_SUBSTREAMID. */
	nest_set_ste(_metadata, self, ste0(STE_CFG_S1_TRANS, 0, self->cd_ipa, 0), 0);
	ASSERT_EQ(xl_ssid(self, 0x1000, ACC_R, true, 1, &pa), -EFAULT);
	ASSERT_EQ(self->ev.n, 4);
	ASSERT_EQ(self->ev.evt[3][0] & 0xff, EVT_ID_C_BAD_SUBSTREAMID);
}

TEST_F(nest, translation_and_size_faults)
{
	struct guest *gm = &self->gm;
	uint64_t pa, *cd = g_ptr(gm, self->cd_ipa);

	/* Unmapped, beyond the input size, EPD0, a reserved level-3 type, a level-0 block. */
	ASSERT_EQ(xl(self, 0x3000, ACC_W, &pa), -EFAULT);
	expect_fault(_metadata, self, EVT_ID_F_TRANSLATION, 0x3000, ACC_W);
	ASSERT_EQ(xl(self, UINT64_C(1) << 48, ACC_R, &pa), -EFAULT);
	expect_fault(_metadata, self, EVT_ID_F_TRANSLATION, UINT64_C(1) << 48, ACC_R);
	*s1_slot(gm, &self->s1, 0x4000, 3, 0) = self->data_ipa | S1_LEAF | 1;
	ASSERT_EQ(xl(self, 0x4000, ACC_R, &pa), -EFAULT);
	expect_fault(_metadata, self, EVT_ID_F_TRANSLATION, 0x4000, ACC_R);
	*s1_slot(gm, &self->s1, UINT64_C(1) << 40, 0, 0) = S1_LEAF | 1;
	ASSERT_EQ(xl(self, UINT64_C(1) << 40, ACC_R, &pa), -EFAULT);
	expect_fault(_metadata, self, EVT_ID_F_TRANSLATION, UINT64_C(1) << 40, ACC_R);
	/* Output beyond the CD's IPS (40 bits): F_ADDR_SIZE. */
	cd[0] = (cd[0] & ~(UINT64_C(7) << CD0_IPS_SHIFT)) | UINT64_C(2) << CD0_IPS_SHIFT;
	ASSERT_EQ(cmd1(self, CMDQ_OP_CFGI_CD_ALL | (uint64_t)VSID << 32, 0), 0);
	s1_map(gm, &self->s1, 0x6000, UINT64_C(1) << 42, 3, S1_LEAF);
	ASSERT_EQ(xl(self, 0x6000, ACC_R, &pa), -EFAULT);
	expect_fault(_metadata, self, EVT_ID_F_ADDR_SIZE, 0x6000, ACC_R);
	cd[0] |= CD0_EPD0;
	ASSERT_EQ(cmd1(self, CMDQ_OP_CFGI_CD_ALL | (uint64_t)VSID << 32, 0), 0);
	ASSERT_EQ(xl(self, 0x6000, ACC_R, &pa), -EFAULT);
	expect_fault(_metadata, self, EVT_ID_F_TRANSLATION, 0x6000, ACC_R);
	/* CD.R=0: faults are not recorded (configuration errors still would be). */
	cd[0] &= ~(CD0_EPD0 | CD0_R);
	ASSERT_EQ(cmd1(self, CMDQ_OP_CFGI_CD_ALL | (uint64_t)VSID << 32, 0), 0);
	self->ev.n = 0;
	ASSERT_EQ(xl(self, 0x3000, ACC_R, &pa), -EFAULT);
	ASSERT_EQ(self->ev.n, 0);
}

TEST_F(nest, no_vdevice_no_event)
{
	uint64_t pa;

	arm_vsmmu_vdevice_del(self->vsmmu, self->master);
	ASSERT_EQ(xl(self, 0x3000, ACC_R, &pa), -EFAULT);
	ASSERT_EQ(self->ev.n, 0);
	/* And nested translations without a vDEVICE cannot be attached again. */
	ASSERT_EQ(arm_smmu_master_attach(self->master, self->nested), -ENOENT);
}

/* ---- invalidation ------------------------------------------------------------------------- */

/* A TLBI's DW0 with @asid and a VMID the conversion must overwrite. */
static uint64_t tlbi_va(unsigned int op, uint16_t asid)
{
	return op | (uint64_t)asid << CMDQ_TLBI_0_ASID_SHIFT | UINT64_C(0xbeef) << 32;
}

TEST_F(nest, tlb_stale_until_the_matching_command)
{
	struct guest *gm = &self->gm;
	uint64_t pa, *leaf, old = (uint64_t)(uintptr_t)self->data, new = old + SZ_4K, cur;

	struct arm_smmu_stats st0, st;

	leaf = s1_map(gm, &self->s1, 0x7000, self->data_ipa, 3, S1_LEAF);
	arm_smmu_stats(self->smmu, &st0);
	ASSERT_EQ(xl(self, 0x7000, ACC_R, &pa), 0);
	ASSERT_EQ(pa, old);
	/* One walk (and one CD fetch), then hits. */
	ASSERT_EQ(xl(self, 0x7008, ACC_W, &pa), 0);
	arm_smmu_stats(self->smmu, &st);
	ASSERT_EQ(st.tlb_misses, st0.tlb_misses + 1);
	ASSERT_EQ(st.cd_fetches, st0.cd_fetches + 1);
	/* The guest remaps without invalidating: the TLB still translates the old way. */
	*leaf = (self->data_ipa + SZ_4K) | S1_LEAF | 3;
	ASSERT_EQ(xl(self, 0x7000, ACC_R, &pa), 0);
	ASSERT_EQ(pa, old);
	/* Commands that do not name it leave it: another VA, another ASID, CFGI_CD, ATC_INV. */
	ASSERT_EQ(cmd1(self, tlbi_va(CMDQ_OP_TLBI_NH_VA, 7), 0x8000), 0);
	ASSERT_EQ(cmd1(self, tlbi_va(CMDQ_OP_TLBI_NH_VA, 8), 0x7000), 0);
	ASSERT_EQ(cmd1(self, tlbi_va(CMDQ_OP_TLBI_NH_ASID, 8), 0), 0);
	ASSERT_EQ(cmd1(self, CMDQ_OP_CFGI_CD | (uint64_t)VSID << 32, 0), 0);
	ASSERT_EQ(cmd1(self, CMDQ_OP_ATC_INV | (uint64_t)VSID << 32, 52), 0);
	ASSERT_EQ(xl(self, 0x7000, ACC_R, &pa), 0);
	ASSERT_EQ(pa, old);
	/* The VA in the ASID (the guest's VMID field is replaced by the vSMMU's). */
	ASSERT_EQ(cmd1(self, tlbi_va(CMDQ_OP_TLBI_NH_VA, 7), 0x7000 | CMDQ_TLBI_1_LEAF), 0);
	ASSERT_EQ(xl(self, 0x7000, ACC_R, &pa), 0);
	ASSERT_EQ(pa, new);

	/* NH_ASID, NH_VAA, NH_ALL and NSNH_ALL each drop it. */
	static const uint64_t drops[][2] = {
		{ CMDQ_OP_TLBI_NH_ASID | UINT64_C(7) << CMDQ_TLBI_0_ASID_SHIFT, 0 },
		{ CMDQ_OP_TLBI_NH_VAA | UINT64_C(3) << CMDQ_TLBI_0_ASID_SHIFT, 0x7000 },
		{ CMDQ_OP_TLBI_NH_ALL | UINT64_C(0x1234) << 32, 0 },
		{ CMDQ_OP_TLBI_NSNH_ALL, UINT64_C(0xdead) },
	};
	cur = new;
	for (size_t i = 0; i < ARRAY_SIZE(drops); i++) {
		uint64_t other = cur == old ? new : old;

		*leaf = (other == old ? self->data_ipa : self->data_ipa + SZ_4K) | S1_LEAF | 3;
		ASSERT_EQ(xl(self, 0x7000, ACC_R, &pa), 0);
		ASSERT_EQ(pa, cur);
		ASSERT_EQ(cmd1(self, drops[i][0], drops[i][1]), 0);
		ASSERT_EQ(xl(self, 0x7000, ACC_R, &pa), 0);
		ASSERT_EQ(pa, other);
		cur = other;
	}
	/* An unmapped page stays translated (and writable) until invalidated. */
	*leaf = 0;
	ASSERT_EQ(xl(self, 0x7000, ACC_W, &pa), 0);
	ASSERT_EQ(cmd1(self, CMDQ_OP_TLBI_NH_ALL, 0), 0);
	ASSERT_EQ(xl(self, 0x7000, ACC_W, &pa), -EFAULT);
}

TEST_F(nest, tlbi_ranges_globals_and_splinters)
{
	struct guest *gm = &self->gm;
	uint64_t pa, *blk, *g;
	uint64_t base = self->data_ipa & ~(SZ_2M - 1), va = 4 * SZ_1G;

	/* A 2 MiB stage-1 block used at two 4 KiB pages (two TLB entries): a TLBI by VA at the
	 * block's base drops both splinters. */
	blk = s1_map(gm, &self->s1, va, base, 2, S1_LEAF);
	ASSERT_EQ(xl(self, va + (self->data_ipa - base), ACC_R, &pa), 0);
	ASSERT_EQ(xl(self, va + (self->data_ipa - base) + SZ_4K, ACC_R, &pa), 0);
	ASSERT_EQ(arm_smmu_tlb_count(self->smmu, arm_smmu_domain_vmid(self->parent)), 2);
	*blk = 0;
	ASSERT_EQ(cmd1(self, tlbi_va(CMDQ_OP_TLBI_NH_VA, 7), va), 0);
	ASSERT_EQ(arm_smmu_tlb_count(self->smmu, arm_smmu_domain_vmid(self->parent)), 0);
	ASSERT_EQ(xl(self, va + (self->data_ipa - base), ACC_R, &pa), -EFAULT);

	/* Range TLBI: TG=4K, SCALE=1, NUM=1 covers 4 pages from the address. */
	for (unsigned int i = 0; i < 6; i++) {
		s1_map(gm, &self->s1, 0x10000 + i * SZ_4K, self->data_ipa, 3, S1_LEAF);
		ASSERT_EQ(xl(self, 0x10000 + i * SZ_4K, ACC_R, &pa), 0);
	}
	ASSERT_EQ(cmd1(self, tlbi_va(CMDQ_OP_TLBI_NH_VA, 7) | 1u << CMDQ_TLBI_0_NUM_SHIFT |
				     1u << CMDQ_TLBI_0_SCALE_SHIFT,
		       0x11000 | 1u << CMDQ_TLBI_1_TG_SHIFT), 0);
	ASSERT_EQ(arm_smmu_tlb_count(self->smmu, arm_smmu_domain_vmid(self->parent)), 2);

	/* A global leaf (nG=0) survives NH_ASID but not NH_VA of any ASID. */
	ASSERT_EQ(cmd1(self, CMDQ_OP_TLBI_NH_ALL, 0), 0);
	g = s1_map(gm, &self->s1, 0x20000, self->data_ipa, 3, S1_LEAF & ~ARM_LPAE_S1_NG);
	ASSERT_EQ(xl(self, 0x20000, ACC_R, &pa), 0);
	*g = 0;
	ASSERT_EQ(cmd1(self, CMDQ_OP_TLBI_NH_ASID | UINT64_C(7) << CMDQ_TLBI_0_ASID_SHIFT, 0), 0);
	ASSERT_EQ(xl(self, 0x20000, ACC_R, &pa), 0);
	ASSERT_EQ(cmd1(self, tlbi_va(CMDQ_OP_TLBI_NH_VA, 99), 0x20000), 0);
	ASSERT_EQ(xl(self, 0x20000, ACC_R, &pa), -EFAULT);
}

/*
 * A TLB key leaves out the page's low 8 bits, which the set index holds: two pages 256 apart
 * share a set, and their keys must still tell them apart, each stale on its own, and a TLBI
 * by VA must drop the one it names and not the other.
 */
TEST_F(nest, tlb_pages_sharing_a_set_stay_apart)
{
	struct guest *gm = &self->gm;
	uint64_t pa, *a, *b, va = SZ_1G, vb = SZ_1G + 256 * SZ_4K;
	uint64_t pa_a = (uint64_t)(uintptr_t)self->data, pa_b = pa_a + SZ_4K;

	a = s1_map(gm, &self->s1, va, self->data_ipa, 3, S1_LEAF);
	b = s1_map(gm, &self->s1, vb, self->data_ipa + SZ_4K, 3, S1_LEAF);
	ASSERT_EQ(xl(self, va + 8, ACC_R, &pa), 0);
	ASSERT_EQ(pa, pa_a + 8);
	ASSERT_EQ(xl(self, vb + 8, ACC_R, &pa), 0);
	ASSERT_EQ(pa, pa_b + 8);
	ASSERT_EQ(arm_smmu_tlb_count(self->smmu, arm_smmu_domain_vmid(self->parent)), 2);
	/* Unmapped without a TLBI: both still hit, each with its own output. */
	*a = 0;
	*b = 0;
	ASSERT_EQ(xl(self, va, ACC_R, &pa), 0);
	ASSERT_EQ(pa, pa_a);
	ASSERT_EQ(xl(self, vb, ACC_R, &pa), 0);
	ASSERT_EQ(pa, pa_b);
	/* A TLBI of one drops that one alone. */
	ASSERT_EQ(cmd1(self, tlbi_va(CMDQ_OP_TLBI_NH_VA, 7), vb | CMDQ_TLBI_1_LEAF), 0);
	ASSERT_EQ(xl(self, vb, ACC_R, &pa), -EFAULT);
	ASSERT_EQ(xl(self, va, ACC_R, &pa), 0);
	ASSERT_EQ(pa, pa_a);
	ASSERT_EQ(arm_smmu_tlb_count(self->smmu, arm_smmu_domain_vmid(self->parent)), 1);
}

/*
 * The stage-1 walk cache keeps a range's last-level table: a guest that swaps that table
 * without a non-leaf TLBI still walks the old one; TLBI_NH_VA with Leaf=1 keeps it, Leaf=0
 * drops it.
 */
TEST_F(nest, walk_cache_until_non_leaf_tlbi)
{
	struct guest *gm = &self->gm;
	uint64_t pa, *l2, t2, base = (uint64_t)(uintptr_t)self->data;
	struct s1 scratch = self->s1;

	s1_map(gm, &self->s1, 0x200000, self->data_ipa, 3, S1_LEAF);
	s1_map(gm, &self->s1, 0x201000, self->data_ipa + SZ_4K, 3, S1_LEAF);
	ASSERT_EQ(xl(self, 0x200000, ACC_R, &pa), 0);
	ASSERT_EQ(pa, base);
	/* A new last-level table for the range: page 0x201000 moves, 0x200000 goes. */
	t2 = g_alloc(gm, SZ_4K, SZ_4K);
	g_ptr(gm, t2)[1] = (self->data_ipa + 2 * SZ_4K) | S1_LEAF | 3;
	l2 = s1_slot(gm, &scratch, 0x200000, 2, 0);
	*l2 = t2 | 3;
	ASSERT_EQ(xl(self, 0x201000, ACC_R, &pa), 0);
	ASSERT_EQ(pa, base + SZ_4K);          /* the cached walk: the old table */
	ASSERT_EQ(cmd1(self, tlbi_va(CMDQ_OP_TLBI_NH_VA, 7), 0x201000 | CMDQ_TLBI_1_LEAF), 0);
	ASSERT_EQ(xl(self, 0x201000, ACC_R, &pa), 0);
	ASSERT_EQ(pa, base + SZ_4K);          /* Leaf=1: the walk stays */
	ASSERT_EQ(cmd1(self, tlbi_va(CMDQ_OP_TLBI_NH_VA, 7), 0x201000), 0);
	ASSERT_EQ(xl(self, 0x201000, ACC_R, &pa), 0);
	ASSERT_EQ(pa, base + 2 * SZ_4K);      /* Leaf=0: the new table */
	/* 0x200000's own TLB entry was not named: stale until its TLBI. */
	ASSERT_EQ(xl(self, 0x200000, ACC_R, &pa), 0);
	ASSERT_EQ(cmd1(self, tlbi_va(CMDQ_OP_TLBI_NH_VA, 7), 0x200000 | CMDQ_TLBI_1_LEAF), 0);
	ASSERT_EQ(xl(self, 0x200000, ACC_R, &pa), -EFAULT);
	expect_fault(_metadata, self, EVT_ID_F_TRANSLATION, 0x200000, ACC_R);
}

TEST_F(nest, cd_cache_until_cfgi)
{
	struct guest *gm = &self->gm;
	uint64_t pa, *cd = g_ptr(gm, self->cd_ipa);
	struct arm_smmu_stats st0, st;
	struct s1 other;

	s1_map(gm, &self->s1, 0x1000, self->data_ipa, 3, S1_LEAF);
	ASSERT_EQ(xl(self, 0x1000, ACC_R, &pa), 0);
	/* A new CD (other tables, ASID 9) is not seen until CFGI_CD names (vSID, SSID 0). */
	s1_init(gm, &other, 12, 48);
	s1_map(gm, &other, 0x2000, self->data_ipa + SZ_4K, 3, S1_LEAF);
	cd_write(cd, &other, 9, 0);
	ASSERT_EQ(xl(self, 0x2000, ACC_R, &pa), -EFAULT);
	ASSERT_EQ(cmd1(self, CMDQ_OP_CFGI_CD | (uint64_t)VSID << 32 | UINT64_C(1) << 12, 0), 0);
	ASSERT_EQ(xl(self, 0x2000, ACC_R, &pa), -EFAULT);
	arm_smmu_stats(self->smmu, &st0);
	ASSERT_EQ(cmd1(self, CMDQ_OP_CFGI_CD | (uint64_t)VSID << 32, CMDQ_TLBI_1_LEAF), 0);
	ASSERT_EQ(xl(self, 0x2000, ACC_R, &pa), 0);
	arm_smmu_stats(self->smmu, &st);
	ASSERT_EQ(st.cd_fetches, st0.cd_fetches + 1);
	ASSERT_EQ(pa, (uint64_t)(uintptr_t)self->data + SZ_4K);
	/* The TLB entry of ASID 7 still serves if the CD goes back (no TLBI was issued). */
	cd_write(cd, &self->s1, 7, 0);
	ASSERT_EQ(cmd1(self, CMDQ_OP_CFGI_CD_ALL | (uint64_t)VSID << 32, 0), 0);
	*s1_slot(gm, &self->s1, 0x1000, 3, 0) = 0;
	ASSERT_EQ(xl(self, 0x1000, ACC_R, &pa), 0);
	ASSERT_EQ(pa, (uint64_t)(uintptr_t)self->data);
}

TEST_F(nest, parent_unmap_drops_nested_entries)
{
	uint64_t pa, pgsize = UINT64_C(1) << variant->s2_shift;
	uint64_t page = (self->data_ipa + 4 * SZ_64K) & ~(pgsize - 1);
	struct iommu_iotlb_gather gather;

	s1_map(&self->gm, &self->s1, 0x1000, page, 3, S1_LEAF);
	ASSERT_EQ(xl(self, 0x1000, ACC_R, &pa), 0);
	iommu_iotlb_gather_init(&gather);
	ASSERT_EQ(self->parent->ops->unmap_pages(self->parent, page, pgsize, 1, &gather), pgsize);
	self->parent->ops->iotlb_sync(self->parent, &gather);
	ASSERT_EQ(xl(self, 0x1000, ACC_R, &pa), -EFAULT);
	ASSERT_EQ(self->ev.n, 0);
}

TEST_F(nest, command_errnos_and_batches)
{
	static const unsigned int refused[] = {
		CMDQ_OP_CFGI_STE, CMDQ_OP_CFGI_ALL, CMDQ_OP_TLBI_S12_VMALL, CMDQ_OP_TLBI_S2_IPA,
		CMDQ_OP_PRI_RESP, CMDQ_OP_RESUME, CMDQ_OP_CMD_SYNC, 0x01, 0x20, 0x00, 0xff,
	};
	uint64_t (*cmds)[2] = calloc(70, sizeof(*cmds));
	struct guest *gm = &self->gm;
	uint64_t pa, *a, *b;
	uint32_t done;

	ASSERT_TRUE(cmds != NULL);
	for (size_t i = 0; i < ARRAY_SIZE(refused); i++) {
		cmds[0][0] = CMDQ_OP_TLBI_NH_ALL;
		cmds[0][1] = 0;
		cmds[1][0] = refused[i];
		cmds[1][1] = 0;
		done = 99;
		ASSERT_EQ(arm_vsmmu_cache_invalidate(self->vsmmu, cmds, 2, &done), -EIO);
		ASSERT_EQ(done, 1);
	}
	/* Unknown vSIDs for the SID-carrying commands. */
	ASSERT_EQ(cmd1(self, CMDQ_OP_CFGI_CD | (uint64_t)(VSID + 1) << 32, 0), -EIO);
	ASSERT_EQ(cmd1(self, CMDQ_OP_CFGI_CD_ALL | (uint64_t)SID << 32, 0), -EIO);
	ASSERT_EQ(cmd1(self, CMDQ_OP_ATC_INV, 0), -EIO);
	/* The conversion rewrote in place: VMID and SID. */
	cmds[0][0] = CMDQ_OP_TLBI_NSNH_ALL;
	cmds[0][1] = 5;
	cmds[1][0] = CMDQ_OP_TLBI_NH_ASID | UINT64_C(0xffff) << 32 | UINT64_C(3) << 48;
	cmds[2][0] = CMDQ_OP_CFGI_CD | (uint64_t)VSID << 32 | UINT64_C(6) << 12;
	ASSERT_EQ(arm_vsmmu_cache_invalidate(self->vsmmu, cmds, 3, &done), 0);
	ASSERT_EQ(done, 3);
	ASSERT_EQ(cmds[0][0], CMDQ_OP_TLBI_NH_ALL |
				      (uint64_t)arm_smmu_domain_vmid(self->parent) << 32);
	ASSERT_EQ(cmds[0][1], 0);
	ASSERT_EQ(cmds[1][0], CMDQ_OP_TLBI_NH_ASID | UINT64_C(3) << 48 |
				      (uint64_t)arm_smmu_domain_vmid(self->parent) << 32);
	ASSERT_EQ(cmds[2][0], CMDQ_OP_CFGI_CD | (uint64_t)SID << 32 | UINT64_C(6) << 12);

	/* Batches of 63: an error at index 65 reports 65; the first batch (0..62) ran, the
	 * second (63, 64) was converted but never issued. */
	a = s1_map(gm, &self->s1, 0x1000, self->data_ipa, 3, S1_LEAF);
	b = s1_map(gm, &self->s1, 0x2000, self->data_ipa, 3, S1_LEAF);
	ASSERT_EQ(xl(self, 0x1000, ACC_R, &pa), 0);
	ASSERT_EQ(xl(self, 0x2000, ACC_R, &pa), 0);
	*a = 0;
	*b = 0;
	for (unsigned int i = 0; i < 70; i++) {
		cmds[i][0] = CMDQ_OP_ATC_INV | (uint64_t)VSID << 32;
		cmds[i][1] = 0;
	}
	cmds[10][0] = tlbi_va(CMDQ_OP_TLBI_NH_VA, 7);
	cmds[10][1] = 0x1000;
	cmds[64][0] = tlbi_va(CMDQ_OP_TLBI_NH_VA, 7);
	cmds[64][1] = 0x2000;
	cmds[65][0] = CMDQ_OP_CMD_SYNC;
	ASSERT_EQ(arm_vsmmu_cache_invalidate(self->vsmmu, cmds, 70, &done), -EIO);
	ASSERT_EQ(done, 65);
	ASSERT_EQ(xl(self, 0x1000, ACC_R, &pa), -EFAULT);
	ASSERT_EQ(xl(self, 0x2000, ACC_R, &pa), 0);
	/* Without the bad one, all 70 run (the array again: the last call converted it). */
	for (unsigned int i = 0; i < 70; i++) {
		cmds[i][0] = CMDQ_OP_ATC_INV | (uint64_t)VSID << 32;
		cmds[i][1] = 0;
	}
	cmds[64][0] = tlbi_va(CMDQ_OP_TLBI_NH_VA, 7);
	cmds[64][1] = 0x2000;
	ASSERT_EQ(arm_vsmmu_cache_invalidate(self->vsmmu, cmds, 70, &done), 0);
	ASSERT_EQ(done, 70);
	ASSERT_EQ(xl(self, 0x2000, ACC_R, &pa), -EFAULT);
	free(cmds);
}

/* ---- invalidation racing translation ---------------------------------------------------- */

#define RACE_PAGES 8u
#define RACE_ROUNDS 3000u

struct race {
	FIXTURE_DATA(nest) *self;
	uint64_t *pte[RACE_PAGES];
	uint64_t pa[2];             /* the two pages every IOVA flips between */
	atomic_bool stop;
	atomic_uint bad;
};

static void *race_translator(void *arg)
{
	struct race *r = arg;
	unsigned int i = 0;

	while (!atomic_load(&r->stop)) {
		uint64_t pa;
		unsigned int p = i++ % RACE_PAGES;

		if (xl(r->self, 0x100000 + p * SZ_4K + 8, i % 2 ? ACC_R : ACC_W, &pa) ||
		    (pa != r->pa[0] + 8 && pa != r->pa[1] + 8))
			atomic_fetch_add(&r->bad, 1);
	}
	return NULL;
}

/* Threads translate while the guest remaps and invalidates: every answer is one of the two
 * mappings (never a torn entry), and after the last TLBI only the new one. */
TEST_F(nest, invalidation_races_translation)
{
	struct race r = { .self = self };
	uint64_t ipa[2] = { self->data_ipa, self->data_ipa + SZ_4K }, pa;
	pthread_t th[2];
	unsigned int i;

	r.pa[0] = g_pa(&self->gm, ipa[0]);
	r.pa[1] = g_pa(&self->gm, ipa[1]);
	for (i = 0; i < RACE_PAGES; i++)
		r.pte[i] = s1_map(&self->gm, &self->s1, 0x100000 + i * SZ_4K, ipa[0], 3, S1_LEAF);
	for (i = 0; i < ARRAY_SIZE(th); i++)
		ASSERT_EQ(pthread_create(&th[i], NULL, race_translator, &r), 0);
	for (i = 0; i < RACE_ROUNDS; i++) {
		unsigned int p = i % RACE_PAGES;

		__atomic_store_n(r.pte[p], ipa[(i / RACE_PAGES) % 2] | S1_LEAF | 3, __ATOMIC_RELEASE);
		if (i % 3 == 0)
			cmd1(self, CMDQ_OP_TLBI_NH_VA | UINT64_C(7) << 48, 0x100000 + p * SZ_4K);
		else if (i % 3 == 1)
			cmd1(self, CMDQ_OP_TLBI_NH_ALL, 0);
		else
			cmd1(self, CMDQ_OP_CFGI_CD | (uint64_t)VSID << 32, 0);
	}
	atomic_store(&r.stop, true);
	for (i = 0; i < ARRAY_SIZE(th); i++)
		pthread_join(th[i], NULL);
	ASSERT_EQ(atomic_load(&r.bad), 0);
	for (i = 0; i < RACE_PAGES; i++)
		__atomic_store_n(r.pte[i], ipa[1] | S1_LEAF | 3, __ATOMIC_RELEASE);
	ASSERT_EQ(cmd1(self, CMDQ_OP_TLBI_NH_ALL, 0), 0);
	for (i = 0; i < RACE_PAGES; i++) {
		ASSERT_EQ(xl(self, 0x100000 + i * SZ_4K + 8, ACC_R, &pa), 0);
		ASSERT_EQ(pa, r.pa[1] + 8);
	}
}

/* ---- the walker against an independent reference ------------------------------------------ */

/* xorshift64*, seeded per case: reproducible. */
static uint64_t rnd_state;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return rnd_state * UINT64_C(2685821657736338717);
}

struct ref_result {
	unsigned int id;     /* 0: translated; EVT_ID_*; 1: a stage-2 (host) fault */
	uint64_t ipa;
};

/* The architecture's stage-1 walk, written from the spec, reading guest RAM directly. */
static struct ref_result ref_walk(struct guest *gm, const uint64_t cd[2], uint64_t va,
				  unsigned int acc)
{
	static const unsigned int tgs[4] = { 12, 16, 14, 0 };
	static const unsigned int ipss[8] = { 32, 36, 40, 42, 44, 48, 48, 48 };
	unsigned int g = tgs[(cd[0] >> 6) & 3], ias = 64 - (cd[0] & 0x3f);
	unsigned int ips = ipss[(cd[0] >> 32) & 7], level;
	bool no_unpriv = false, ro = false, uxn = false, pxn = false;
	bool priv = acc & ACC_P;
	uint64_t table = cd[1] & UINT64_C(0x000ffffffffffff0), d = 0, oa, size;
	struct ref_result r = { 0, 0 };

	if (va >> ias) {
		r.id = EVT_ID_F_TRANSLATION;
		return r;
	}
	table &= ~((UINT64_C(8) << t_index_bits(g, ias, t_start(g, ias))) - 1);
	for (level = t_start(g, ias); level <= 3; level++) {
		uint64_t ipa = table + 8 * t_index(g, ias, level, va);

		if (ipa < GUEST_BASE || ipa >= GUEST_BASE + GUEST_SIZE) {
			r.id = 1;
			return r;
		}
		d = *g_ptr(gm, ipa);
		if (!(d & 1)) {
			r.id = EVT_ID_F_TRANSLATION;
			return r;
		}
		if (level == 3 || !(d & 2))
			break;
		no_unpriv |= (d >> 61) & 1;
		ro |= (d >> 62) & 1;
		uxn |= (d >> 60) & 1;
		pxn |= (d >> 59) & 1;
		table = d & UINT64_C(0x0000ffffffffffff) & ~((UINT64_C(1) << g) - 1);
		if (table >> ips) {
			r.id = EVT_ID_F_ADDR_SIZE;
			return r;
		}
	}
	if (level == 3 && !(d & 2)) {
		r.id = EVT_ID_F_TRANSLATION;
		return r;
	}
	if (level < 3 && !(g == 12 ? level == 1 || level == 2 : level == 2)) {
		r.id = EVT_ID_F_TRANSLATION;
		return r;
	}
	size = UINT64_C(1) << t_shift(g, level);
	oa = d & UINT64_C(0x0000ffffffffffff) & ~(size - 1);
	if (oa >> ips) {
		r.id = EVT_ID_F_ADDR_SIZE;
		return r;
	}
	if (!(d & ARM_LPAE_AF) && !(cd[0] & CD0_AFFD)) {
		r.id = EVT_ID_F_ACCESS;
		return r;
	}
	if ((!priv && (!(d & ARM_LPAE_S1_AP1) || no_unpriv)) ||
	    ((acc & ACC_W) && ((d & ARM_LPAE_S1_AP2) || ro)) ||
	    ((acc & ACC_X) && (priv ? (d & ARM_LPAE_S1_PXN) || pxn
				    : (d & ARM_LPAE_S1_UXN) || uxn))) {
		r.id = EVT_ID_F_PERMISSION;
		return r;
	}
	r.ipa = oa | (va & (size - 1));
	if (r.ipa < GUEST_BASE || r.ipa >= GUEST_BASE + GUEST_SIZE)
		r.id = 1;
	return r;
}

/* A random descriptor for @level: mostly valid tables/leaves into guest RAM, some junk. */
static uint64_t rnd_leaf(unsigned int g, unsigned int level)
{
	uint64_t size = UINT64_C(1) << t_shift(g, level), oa, attrs;
	unsigned int kind = rnd() % 16;

	if (kind == 0)
		oa = (rnd() & UINT64_C(0x0000ffffffffffff)) & ~(size - 1); /* anywhere */
	else if (size >= GUEST_SIZE)
		oa = GUEST_BASE & ~(size - 1);
	else
		oa = GUEST_BASE + ((rnd() % (GUEST_SIZE / size)) * size);
	attrs = ARM_LPAE_SH_IS | (rnd() & (ARM_LPAE_AF | ARM_LPAE_S1_AP1 | ARM_LPAE_S1_AP2 |
					   ARM_LPAE_S1_NG | ARM_LPAE_S1_PXN | ARM_LPAE_S1_UXN));
	if (rnd() % 4)
		attrs |= ARM_LPAE_AF;
	return oa | attrs | (level == 3 ? (rnd() % 8 ? 3 : 1) : 1);
}

TEST_F(nest, walker_against_reference)
{
	struct guest *gm = &self->gm;
	uint64_t *cd = g_ptr(gm, self->cd_ipa);
	uint64_t fresh = gm->next;
	unsigned int trial, checked = 0, translated = 0, faults = 0;

	rnd_state = UINT64_C(0x9e3779b97f4a7c15);
	for (trial = 0; trial < 400; trial++) {
		static const unsigned int gs[3] = { 12, 14, 16 };
		unsigned int g = gs[rnd() % 3], ias = 25 + rnd() % 24, k, level;
		uint64_t vas[12];
		struct s1 s;

		gm->next = fresh; /* g_alloc() zeroes what it hands out again */
		s1_init(gm, &s, g, ias);
		cd_write(cd, &s, (uint16_t)trial, rnd() % 4 ? 0 : CD0_AFFD);
		if (rnd() % 4 == 0)
			cd[0] = (cd[0] & ~(UINT64_C(7) << CD0_IPS_SHIFT)) |
				(rnd() % 6) << CD0_IPS_SHIFT;
		/* Build: a few addresses, each with a random path of tables and a random end. */
		for (k = 0; k < ARRAY_SIZE(vas); k++) {
			vas[k] = rnd() & ((UINT64_C(1) << ias) - 1);
			for (level = t_start(g, ias); level <= 3; level++) {
				uint64_t *slot = s1_slot(gm, &s, vas[k], level,
							 rnd() % 8 ? 0 : rnd() & (UINT64_C(0xf) << 59));

				if (*slot & 1 && (level == 3 || (*slot & 2)))
					continue; /* a table made by an earlier address */
				if (*slot & 1)
					break;    /* a leaf of an earlier address */
				if (level < 3 && rnd() % 3)
					continue; /* descend: s1_slot makes the table */
				*slot = rnd() % 10 ? rnd_leaf(g, level) : rnd() & ~UINT64_C(1);
				break;
			}
		}
		ASSERT_EQ(cmd1(self, CMDQ_OP_CFGI_CD_ALL | (uint64_t)VSID << 32, 0), 0);
		ASSERT_EQ(cmd1(self, CMDQ_OP_TLBI_NH_ALL, 0), 0);
		/* Probe each address (and a neighbour) with random accesses, twice (TLB). */
		for (k = 0; k < 2 * ARRAY_SIZE(vas); k++) {
			uint64_t va = k % 2 ? vas[k / 2] : vas[k / 2] ^ (rnd() & 0xffff);
			unsigned int acc = (rnd() % 2 ? ACC_W : ACC_R) | (rnd() % 3 ? 0 : ACC_X) |
					   (rnd() % 2 ? ACC_P : 0);
			struct ref_result r = ref_walk(gm, cd, va, acc);

			for (unsigned int rep = 0; rep < 2; rep++) {
				unsigned int n0 = self->ev.n;
				uint64_t pa;
				int rc = xl(self, va, acc, &pa);

				checked++;
				if (!r.id) {
					ASSERT_EQ(rc, 0);
					ASSERT_EQ(pa, g_pa(gm, r.ipa));
					translated++;
				} else if (r.id == 1) {
					ASSERT_EQ(rc, -EFAULT);
					ASSERT_EQ(self->ev.n, n0);
				} else {
					ASSERT_EQ(rc, -EFAULT);
					ASSERT_EQ(self->ev.n, n0 + 1);
					ASSERT_EQ(self->ev.evt[(n0) % 64][0] & 0xff, r.id);
					ASSERT_EQ(self->ev.evt[(n0) % 64][2], va);
					faults++;
				}
				if (self->ev.n >= 60)
					self->ev.n = 0;
			}
		}
	}
	/* Thousands of checks, both outcomes well represented. */
	ASSERT_GT(checked, 9000);
	ASSERT_GT(translated, 1000);
	ASSERT_GT(faults, 1000);
}

/* ---- the machine ------------------------------------------------------------------------- */

/* A topology with an SMMUv3: registered with the driver, shown by the control command. */
TEST(topology_instance)
{
	static const char json[] =
		"{ \"iommus\": [ { \"name\": \"smmu0\", \"driver\": \"smmuv3\",\n"
		"    \"features\": { \"ssid_bits\": 8 } } ],\n"
		"  \"devices\": [ { \"bdf\": \"0000:01:02.3\", \"iommu\": \"smmu0\" } ] }\n";
	char path[] = "/tmp/uiommu-smmuv3-topo-XXXXXX", out[4096] = { 0 };
	struct iommu_device *iommu;
	struct iommu_domain *dom;
	struct device *dev;
	FILE *f;

	ASSERT_EQ(0, topology_file_write(path, json));
	ASSERT_EQ(topology_load(path), 0);
	unlink(path);
	iommu = topology_find_iommu("smmu0");
	ASSERT_TRUE(iommu != NULL);
	ASSERT_TRUE(arm_smmu_iommu_is_instance(iommu));
	ASSERT_EQ(iommu->max_pasids, 256);
	ASSERT_TRUE(iommu->dirty_tracking);
	dev = topology_find_device("0000:01:02.3");
	ASSERT_TRUE(dev != NULL);
	/* The device got the driver's default domain: a stage-2 paging domain. */
	dom = iommu_get_domain_for_dev(dev);
	ASSERT_TRUE(dom != NULL);
	ASSERT_TRUE(arm_smmu_domain_is_s2(dom) || iommu_domain_type(dom) == IOMMU_DOMAIN_IDENTITY);
	f = fmemopen(out, sizeof(out) - 1, "w");
	ASSERT_TRUE(f != NULL);
	ASSERT_EQ(ctl_execute("show", f), 0);
	fclose(f);
	ASSERT_TRUE(strstr(out, "iommu smmu0: driver arm-smmu-v3") != NULL);
}

/* ---- fault injection ----------------------------------------------------------------------- */

/* Build the whole nested stack; return the first error. Everything is freed either way. */
static int build_stack(struct guest *gm)
{
	struct arm_smmu_features f = ARM_SMMU_FEATURES_DEFAULT;
	struct arm_smmu_device *smmu;
	struct iommu_domain *parent = NULL, *nested = NULL;
	struct arm_vsmmu *vsmmu = NULL;
	struct arm_smmu_master *master = NULL;
	uint64_t ste[2], pa;
	struct iommu_user_data ud = { .type = 2, .data = ste, .len = 16 };
	struct arm_smmu_txn txn = { .iova = 0x1000, .access = ACC_R };
	size_t mapped = 0;
	int rc;

	smmu = arm_smmu_device_alloc(&f);
	if (IS_ERR(smmu))
		return (int)PTR_ERR(smmu);
	parent = arm_smmu_domain_alloc_paging(smmu, IOMMU_DOMAIN_ALLOC_NEST_PARENT, 12);
	if (IS_ERR(parent)) {
		rc = (int)PTR_ERR(parent);
		parent = NULL;
		goto out;
	}
	rc = parent->ops->map_pages(parent, GUEST_BASE, g_pa(gm, GUEST_BASE), SZ_4K, 1024, RW,
				    &mapped);
	if (rc)
		goto out;
	vsmmu = arm_vsmmu_alloc(smmu, parent);
	if (IS_ERR(vsmmu)) {
		rc = (int)PTR_ERR(vsmmu);
		vsmmu = NULL;
		goto out;
	}
	master = arm_smmu_master_alloc(smmu, 3);
	if (IS_ERR(master)) {
		rc = (int)PTR_ERR(master);
		master = NULL;
		goto out;
	}
	rc = arm_vsmmu_vdevice_add(vsmmu, master, 4);
	if (rc)
		goto out;
	ste[0] = ste0(STE_CFG_S1_TRANS, 0, GUEST_BASE, 0);
	ste[1] = 0;
	nested = arm_vsmmu_domain_alloc_nested(vsmmu, 0, &ud);
	if (IS_ERR(nested)) {
		rc = (int)PTR_ERR(nested);
		nested = NULL;
		goto out;
	}
	rc = arm_smmu_master_attach(master, nested);
	if (!rc)
		rc = arm_smmu_master_translate(master, &txn, &pa);
out:
	if (master) {
		arm_smmu_master_attach(master, NULL);
		arm_vsmmu_vdevice_del(vsmmu, master);
		arm_smmu_master_free(master);
	}
	if (nested)
		nested->ops->free(nested);
	if (vsmmu)
		arm_vsmmu_free(vsmmu);
	if (parent)
		parent->ops->free(parent);
	arm_smmu_device_free(smmu);
	return rc;
}

TEST(fail_nth_stack)
{
	struct guest gm = { 0 };
	long live0;
	unsigned long nth;
	struct s1 s;
	uint64_t *cd;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	gm.ram = aligned_alloc(SZ_2M, GUEST_SIZE);
	ASSERT_TRUE(gm.ram != NULL);
	gm.next = GUEST_BASE;
	cd = g_ptr(&gm, g_alloc(&gm, SZ_4K, SZ_4K));
	s1_init(&gm, &s, 12, 48);
	s1_map(&gm, &s, 0x1000, GUEST_BASE, 3, S1_LEAF);
	cd_write(cd, &s, 1, 0);
	ASSERT_EQ(build_stack(&gm), 0);
	live0 = uiommu_alloc_live();
	for (nth = 1; nth < 100; nth++) {
		int rc;

		uiommu_fail_nth_arm(nth);
		rc = build_stack(&gm);
		if (uiommu_fail_nth_disarm()) {
			ASSERT_EQ(rc, 0);
			break;
		}
		ASSERT_EQ(rc, -ENOMEM);
		ASSERT_EQ(uiommu_alloc_live(), live0);
	}
	/* SMMU, TLB, domain, root, 3 tables, vSMMU, master, nested: at least 10 points. */
	ASSERT_GT(nth, 10);
	ASSERT_LT(nth, 100);
	ASSERT_EQ(uiommu_alloc_live(), live0);
	free(gm.ram);
}

TEST_HARNESS_MAIN
