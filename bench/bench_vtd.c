// SPDX-License-Identifier: MIT
/*
 * bench_vtd: the VT-d model's costs, in the ratios issue 12 sets for a nested IOMMU model.
 * Linked against the library's objects (the driver and the IOTLB are internal API), on its own
 * instance and device (no topology).
 *
 *   - a nested IOTLB hit (iotlb_lookup() of a combined translation) against a plain hash
 *     lookup of the same 256 (domain id, page) keys, both out-of-line calls. Target: <= 2x.
 *   - a nested miss, the two-dimensional walk (vtd_domain_translate(): every first-stage
 *     fetch through the 4-level second stage, then the output) against a one-stage miss (the
 *     second-stage walk of a paging domain). Target: <= 6x. Guest RAM is one 2 MiB
 *     second-stage leaf, as a VMM backs it with huge pages: the walk reuses the leaf its
 *     first fetch found. For information, the same over 4 KiB second-stage leaves, where
 *     every fetch walks the second stage (4 x 4 + 4 loads besides the guest's 4).
 *   - map + unmap of 256 pages in one call against one page, on a second-stage paging domain
 *     (iommu_map()/iommu_unmap()). Target: < 8x. Once without an attachment (the table
 *     alone: such a domain has nothing cached, so no invalidation), once attached to a device
 *     that has not done DMA (the IOTLB model's invalidation sees the domain never filled and
 *     reads no set), and, for information, attached to one whose DMA went through the IOTLB
 *     once (an unmap then reads each set its range covers: min(pages, 256) sets).
 *
 * Exit status: 0 after a run (targets are reported, not enforced), 1 when a call fails.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/intel/vtd.h"
#include "iommu/iommu.h"
#include "iommu/iotlb.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "uiommu/iommufd.h"

#include "bench.h"

#define PAGE UINT64_C(4096)
#define NPAGES 256u
#define GUEST_BASE (UINT64_C(1) << 30)
#define GUEST_PAGES (NPAGES + 16u)
#define GUEST_RAM (UINT64_C(2) << 20)
#define IOVA_BASE UINT64_C(0x40000000)
#define RW (IOMMU_READ | IOMMU_WRITE)
#define HASH_SLOTS 1024u

static void fail(const char *what)
{
	fprintf(stderr, "bench_vtd: %s\n", what);
	exit(1);
}

static struct iommu_device dmar = { .name = "dmar0" };
static struct iommu_domain *parent, *nested, *paging, *attached, *used, *parent4k, *nested4k;
static struct iotlb *tlb;
static uint8_t *ram;
static volatile uint64_t sink;

static uint64_t *gptr(uint64_t gpa)
{
	return (uint64_t *)(ram + (gpa - GUEST_BASE));
}

/* The guest's 4-level first stage: NPAGES pages at IOVA_BASE onto guest pages 16.. */
static uint64_t guest_tables(void)
{
	uint64_t root = GUEST_BASE, next = GUEST_BASE + PAGE;

	for (unsigned int p = 0; p < NPAGES; p++) {
		uint64_t iova = IOVA_BASE + p * PAGE, table = root;

		for (int lvl = 4; lvl > 1; lvl--) {
			uint64_t *slot = gptr(table) + ((iova >> (12 + 9 * (lvl - 1))) & 511);

			if (!*slot) {
				*slot = next | VTD_FS_P | VTD_FS_RW | VTD_FS_US | VTD_FS_A;
				next += PAGE;
			}
			table = *slot & VTD_ADDR_MASK;
		}
		gptr(table)[(iova >> 12) & 511] = (GUEST_BASE + (16 + p) * PAGE) | VTD_FS_P |
						   VTD_FS_RW | VTD_FS_US | VTD_FS_A | VTD_FS_D;
	}
	return root;
}

static void setup(void)
{
	struct iommu_hwpt_vtd_s1 s1 = { .addr_width = 48 };
	struct iommu_user_data ud = { .type = IOMMU_HWPT_DATA_VTD_S1, .data = &s1,
				      .len = sizeof(s1) };
	struct device *dev, *dev2;

	if (vtd_iommu_register(&dmar, &vtd_default_features))
		fail("register");
	dev2 = device_alloc("0000:00:05.0");
	if (IS_ERR_OR_NULL(dev2))
		fail("device_alloc");
	dev2->iommu = &dmar;
	if (iommu_probe_device(dev2))
		fail("probe");
	attached = iommu_paging_domain_alloc(dev2);
	if (IS_ERR(attached) || iommu_attach_device(attached, dev2))
		fail("attached domain");
	dev = device_alloc("0000:00:04.0");
	if (IS_ERR_OR_NULL(dev))
		fail("device_alloc");
	dev->iommu = &dmar;
	if (iommu_probe_device(dev))
		fail("probe");
	/* Guest RAM in one 2 MiB page, as a VMM backs it with huge pages. */
	ram = aligned_alloc(GUEST_RAM, GUEST_RAM);
	if (!ram)
		fail("guest RAM");
	memset(ram, 0, GUEST_RAM);
	parent = iommu_paging_domain_alloc_flags(dev, IOMMU_DOMAIN_ALLOC_NEST_PARENT, NULL);
	parent4k = iommu_paging_domain_alloc_flags(dev, IOMMU_DOMAIN_ALLOC_NEST_PARENT, NULL);
	paging = iommu_paging_domain_alloc(dev);
	if (IS_ERR(parent) || IS_ERR(parent4k) || IS_ERR(paging))
		fail("paging domains");
	if (iommu_map(parent, GUEST_BASE, (uint64_t)(uintptr_t)ram, GUEST_RAM, RW) ||
	    iommu_map(paging, IOVA_BASE, (uint64_t)(uintptr_t)ram + 16 * PAGE, NPAGES * PAGE, RW))
		fail("map");
	/* The same RAM with 4 KiB second-stage leaves: one map call a page. */
	for (uint64_t off = 0; off < GUEST_PAGES * PAGE; off += PAGE)
		if (iommu_map(parent4k, GUEST_BASE + off, (uint64_t)(uintptr_t)ram + off, PAGE, RW))
			fail("map 4K");
	s1.pgtbl_addr = guest_tables();
	nested = vtd_iommu_ops.domain_alloc_nested(dev, parent, 0, &ud);
	nested4k = vtd_iommu_ops.domain_alloc_nested(dev, parent4k, 0, &ud);
	if (IS_ERR(nested) || IS_ERR(nested4k) || iommu_attach_device(nested, dev))
		fail("nested");
	tlb = iotlb_for_iommu(&dmar);
	if (IS_ERR(tlb))
		fail("iotlb");
	/*
	 * A third device's domain that has been through the IOTLB once (a page outside the
	 * benchmark's range): its invalidations read every set they cover.
	 */
	phys_addr_t phys;
	struct device *dev3 = device_alloc("0000:00:06.0");

	if (IS_ERR_OR_NULL(dev3))
		fail("device_alloc");
	dev3->iommu = &dmar;
	if (iommu_probe_device(dev3))
		fail("probe");
	used = iommu_paging_domain_alloc(dev3);
	if (IS_ERR(used) || iommu_attach_device(used, dev3) ||
	    iommu_map(used, IOVA_BASE, (uint64_t)(uintptr_t)ram, PAGE, RW) ||
	    iotlb_translate(tlb, used, IOVA_BASE, IOMMU_READ, &phys))
		fail("used domain");
	for (unsigned int p = 0; p < NPAGES; p++) {
		if (iotlb_translate(tlb, nested, IOVA_BASE + p * PAGE, IOMMU_READ, &phys) ||
		    phys != (uint64_t)(uintptr_t)ram + (16 + p) * PAGE)
			fail("nested translation");
	}
}

/* ---- hits ------------------------------------------------------------------------------------ */

struct hash_slot {
	uint64_t key;   /* domain id << 40 | page number, 0: empty */
	uint64_t phys;
};

static struct hash_slot table[HASH_SLOTS];

static size_t hash_of(uint64_t key)
{
	return (size_t)((key * UINT64_C(0x9e3779b97f4a7c15)) >> 54) & (HASH_SLOTS - 1);
}

__attribute__((noinline)) static bool hash_lookup(uint32_t domid, uint64_t iova, uint64_t *phys)
{
	uint64_t key = ((uint64_t)domid << 40) | (iova >> 12);

	for (size_t i = hash_of(key); table[i].key; i = (i + 1) & (HASH_SLOTS - 1)) {
		if (table[i].key == key) {
			*phys = table[i].phys | (iova & (PAGE - 1));
			return true;
		}
	}
	return false;
}

static void hash_fill(void)
{
	for (unsigned int p = 0; p < NPAGES; p++) {
		uint64_t key = ((uint64_t)nested->id << 40) | ((IOVA_BASE >> 12) + p);
		size_t i = hash_of(key);

		while (table[i].key)
			i = (i + 1) & (HASH_SLOTS - 1);
		table[i] = (struct hash_slot){ key, (uint64_t)(uintptr_t)ram + (16 + p) * PAGE };
	}
}

static void run_hash(void *ctx, unsigned long iters)
{
	uint64_t acc = 0, phys;

	(void)ctx;
	for (unsigned long i = 0; i != iters; i++) {
		if (!hash_lookup(nested->id, IOVA_BASE + (i % NPAGES) * PAGE, &phys))
			fail("hash lookup missed");
		acc += phys;
	}
	sink = acc;
}

static void run_nested_hit(void *ctx, unsigned long iters)
{
	/*
	 * Read once, as run_hash()'s domain id is: the compiler reloads globals after each
	 * call it cannot see into, and run_hash()'s call it can.
	 */
	struct iotlb *t = tlb;
	uint32_t domid = nested->id;
	uint64_t acc = 0;
	phys_addr_t phys;
	int prot;

	(void)ctx;
	for (unsigned long i = 0; i != iters; i++) {
		if (!iotlb_lookup(t, domid, IOVA_BASE + (i % NPAGES) * PAGE, &phys, &prot))
			fail("nested IOTLB lookup missed");
		acc += phys;
	}
	sink = acc;
}

/* ---- misses (walks) --------------------------------------------------------------------------- */

static void run_nested_walk(void *ctx, unsigned long iters)
{
	struct iommu_domain *domain = *(struct iommu_domain **)ctx;
	struct vtd_xlate x;
	uint64_t acc = 0;

	for (unsigned long i = 0; i != iters; i++) {
		if (vtd_domain_translate(domain, IOVA_BASE + (i % NPAGES) * PAGE, 0, &x))
			fail("nested walk");
		acc += x.phys;
	}
	sink = acc;
}

static void run_one_stage_walk(void *ctx, unsigned long iters)
{
	struct vtd_ss *ss = vtd_domain_ss(paging);
	struct vtd_ss_leaf leaf;
	uint64_t acc = 0;

	(void)ctx;
	for (unsigned long i = 0; i != iters; i++) {
		if (vtd_ss_walk(ss, IOVA_BASE + (i % NPAGES) * PAGE, IOMMU_READ, &leaf))
			fail("one-stage walk");
		acc += leaf.phys;
	}
	sink = acc;
}

/* ---- map + unmap -------------------------------------------------------------------------------- */

struct map_case {
	struct iommu_domain **domain;
	uint64_t pages;
};

static void run_map_unmap(void *ctx, unsigned long iters)
{
	const struct map_case *c = ctx;
	uint64_t iova = UINT64_C(0x100000000), len = c->pages * PAGE;

	for (unsigned long i = 0; i != iters; i++) {
		if (iommu_map(*c->domain, iova, (uint64_t)(uintptr_t)ram, len, RW) ||
		    iommu_unmap(*c->domain, iova, len) != len)
			fail("map + unmap");
	}
}

int main(int argc, char **argv)
{
	static const char usage[] =
		"usage: bench_vtd [--quick]\n"
		"The VT-d model: a nested IOTLB hit against a plain hash lookup, the nested walk\n"
		"against a one-stage walk, 256-page against 1-page map+unmap. --quick: small\n"
		"iteration counts (CI smoke run).\n";
	int quick = bench_parse_args(argc, argv, usage);
	unsigned long hits = quick ? 20000 : 4000000, walks = quick ? 2000 : 400000;
	unsigned long maps = quick ? 200 : 20000;

	struct map_case mc[] = { { &paging, 1 }, { &paging, NPAGES }, { &attached, 1 },
				 { &attached, NPAGES }, { &used, 1 }, { &used, NPAGES } };

	setup();
	hash_fill();

	struct bench_case cases[] = {
		{ "plain hash lookup, 256 resident keys", run_hash, NULL, hits },
		{ "nested IOTLB hit (iotlb_lookup), 256 resident pages", run_nested_hit, NULL, hits },
		{ "one-stage miss: 4-level second-stage walk", run_one_stage_walk, NULL, walks },
		{ "nested miss: 4-level first stage, 2 MiB second-stage leaves", run_nested_walk,
		  &nested, walks },
		{ "nested miss: the same over 4 KiB second-stage leaves", run_nested_walk, &nested4k,
		  walks },
		{ "map + unmap, 1 page (second stage, no attachment)", run_map_unmap, &mc[0],
		  maps },
		{ "map + unmap, 256 pages in one call", run_map_unmap, &mc[1],
		  maps / 16 ? maps / 16 : 1 },
		{ "map + unmap, 1 page, attached (IOTLB invalidation)", run_map_unmap, &mc[2],
		  maps },
		{ "map + unmap, 256 pages, attached", run_map_unmap, &mc[3],
		  maps / 16 ? maps / 16 : 1 },
		{ "map + unmap, 1 page, attached, domain seen by the IOTLB", run_map_unmap, &mc[4],
		  maps },
		{ "map + unmap, 256 pages, the same", run_map_unmap, &mc[5],
		  maps / 16 ? maps / 16 : 1 },
	};

	bench_table("bench_vtd: the VT-d model", cases, ARRAY_SIZE(cases), quick);
	printf("\n");
	bench_print_ratio("nested IOTLB hit / plain hash lookup", &cases[1], &cases[0], 2.0);
	bench_print_ratio("nested miss / one-stage miss", &cases[3], &cases[2], 6.0);
	bench_print_ratio("nested miss over 4 KiB leaves / one-stage miss", &cases[4], &cases[2],
			  0);
	bench_print_ratio("256-page / 1-page map+unmap", &cases[6], &cases[5], 8.0);
	bench_print_ratio("256-page / 1-page map+unmap, attached", &cases[8], &cases[7], 8.0);
	bench_print_ratio("256-page / 1-page map+unmap, attached, seen by the IOTLB", &cases[10],
			  &cases[9], 0);
	return 0;
}
