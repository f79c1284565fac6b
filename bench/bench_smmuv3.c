// SPDX-License-Identifier: MIT
/*
 * bench_smmuv3: the SMMUv3 model's translation and page-table costs, each against a baseline
 * of the same run (issue 12's targets):
 *   - a nested TLB hit: the TLB's lookup of a resident (VMID, ASID, page) (the seqlock read of
 *     a 3-way set, from the translation's lookup context) over 512 pages, against an unlocked
 *     open-addressing hash lookup of the same keys kept out of line as the model's is.
 *     Target: at most 2x. And, reported without a
 *     target, the whole arm_smmu_master_translate() hit: the master's attached domain, the
 *     substream, its cached CD (a second seqlock read), then that lookup;
 *   - a nested miss: the same call over 16384 pages, more than the TLB holds, so every call
 *     walks the guest's 4-level stage 1 with each table fetch and the output through the 4-level
 *     stage 2 (the two-dimensional walk) and fills; against a one-stage miss, the same master
 *     on a stage-2 paging domain (which walks every time). Target: at most 6x;
 *   - map + unmap of 256 4 KiB pages in one call each, against one page. Target: below 8x (the
 *     kernel's generic page table is about 6-7x).
 * Linked against the library's objects (the model is internal API); guest memory is this
 * process's. Exit status: 0 after a run (targets are reported, not enforced), 1 on a failure.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/arm-smmu-v3/arm-smmu-v3.h"
#include "lib/err.h"

#include "bench.h"
#include "../tests/smmuv3_guest.h"

#define PG 4096ull
#define GUEST_BASE 0x80000000ull
#define GUEST_SIZE (96ull << 20)
#define HIT_PAGES 512u
#define MISS_PAGES 16384u

static void fail(const char *what)
{
	fprintf(stderr, "bench_smmuv3: %s\n", what);
	exit(1);
}

struct bench_vm {
	struct arm_smmu_device *smmu;
	struct iommu_domain *parent, *nested, *paging;
	struct arm_vsmmu *vsmmu;
	struct arm_smmu_master *master, *flat;
	struct smmuv3_guest g;          /* GUEST_SIZE bytes at IPA GUEST_BASE, its stage-1 tables */
};

/* A 4 KiB stage-1 mapping in the guest's tables; fails the run when guest RAM runs out. */
static void guest_map(struct bench_vm *vm, uint64_t iova, uint64_t ipa)
{
	if (!smmuv3_guest_map(&vm->g, iova, ipa))
		fail("guest memory exhausted");
}

static void vm_build(struct bench_vm *vm)
{
	struct arm_smmu_features f = ARM_SMMU_FEATURES_DEFAULT;
	uint64_t ste[2], cd_ipa;
	struct iommu_user_data ud = { .type = 2, .data = ste, .len = sizeof(ste) };
	size_t mapped;

	vm->g.ram = aligned_alloc(2u << 20, GUEST_SIZE);
	if (!vm->g.ram)
		fail("no memory");
	memset(vm->g.ram, 0, GUEST_SIZE);
	vm->g.base = vm->g.next = GUEST_BASE;
	vm->g.size = GUEST_SIZE;
	vm->smmu = arm_smmu_device_alloc(&f);
	if (IS_ERR(vm->smmu))
		fail("smmu");
	vm->parent = arm_smmu_domain_alloc_paging(vm->smmu, IOMMU_DOMAIN_ALLOC_NEST_PARENT, 12);
	vm->paging = arm_smmu_domain_alloc_paging(vm->smmu, 0, 12);
	if (IS_ERR(vm->parent) || IS_ERR(vm->paging))
		fail("domains");
	/* 4 KiB stage-2 pages, as a VMM's IOAS of guest RAM with small pages. */
	if (vm->parent->ops->map_pages(vm->parent, GUEST_BASE, (uintptr_t)vm->g.ram, PG,
				       GUEST_SIZE / PG, IOMMU_READ | IOMMU_WRITE, &mapped) ||
	    vm->paging->ops->map_pages(vm->paging, 0, (uintptr_t)vm->g.ram, PG, MISS_PAGES,
				       IOMMU_READ | IOMMU_WRITE, &mapped))
		fail("stage-2 map");
	vm->vsmmu = arm_vsmmu_alloc(vm->smmu, vm->parent);
	vm->master = arm_smmu_master_alloc(vm->smmu, 1);
	vm->flat = arm_smmu_master_alloc(vm->smmu, 2);
	if (IS_ERR(vm->vsmmu) || IS_ERR(vm->master) || IS_ERR(vm->flat) ||
	    arm_vsmmu_vdevice_add(vm->vsmmu, vm->master, 1))
		fail("vsmmu");
	cd_ipa = smmuv3_guest_page(&vm->g);
	vm->g.ttb0 = smmuv3_guest_page(&vm->g);
	smmuv3_guest_va(&vm->g, cd_ipa)[0] = 16 | 1ull << 30 | CD0_V | 5ull << CD0_IPS_SHIFT | CD0_AA64 | CD0_R |
			     CD0_A | 7ull << CD0_ASID_SHIFT;
	smmuv3_guest_va(&vm->g, cd_ipa)[1] = vm->g.ttb0;
	for (uint64_t i = 0; i < MISS_PAGES; i++)
		guest_map(vm, i * PG, GUEST_BASE + (i % 4096) * PG);
	ste[0] = STE0_V | (uint64_t)STE_CFG_S1_TRANS << STE0_CFG_SHIFT | cd_ipa;
	ste[1] = 0;
	vm->nested = arm_vsmmu_domain_alloc_nested(vm->vsmmu, 0, &ud);
	if (IS_ERR(vm->nested) || arm_smmu_master_attach(vm->master, vm->nested) ||
	    arm_smmu_master_attach(vm->flat, vm->paging))
		fail("nested");
}

/* ---- a plain hash table of the same keys ---------------------------------------------------- */

struct plain_entry {
	uint64_t key;     /* vmid << 48 | asid << 32 | page, + 1 (0: empty) */
	uint64_t phys;
};

static struct plain_entry plain[4096];

static size_t plain_index(uint64_t key)
{
	return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 52) & (4096 - 1);
}

__attribute__((noinline)) static bool plain_lookup(uint64_t key, uint64_t iova, uint64_t *phys)
{
	size_t i = plain_index(key);

	while (plain[i].key) {
		if (plain[i].key == key) {
			*phys = plain[i].phys | (iova & (PG - 1));
			return true;
		}
		i = (i + 1) & (4096 - 1);
	}
	return false;
}

static uint64_t plain_key(uint64_t iova)
{
	return (1ull << 48 | 7ull << 32 | iova >> 12) + 1;
}

/* ---- cases --------------------------------------------------------------------------------- */

struct xlate_case {
	struct arm_smmu_master *master;
	unsigned int pages;
};

static void run_translate(void *ctx, unsigned long iters)
{
	struct xlate_case *c = ctx;
	struct arm_smmu_txn txn = { .access = ARM_SMMU_ACC_READ };
	uint64_t phys;

	for (unsigned long i = 0; i < iters; i++) {
		txn.iova = (i % c->pages) * PG + 8;
		if (arm_smmu_master_translate(c->master, &txn, &phys))
			fail("translation faulted");
	}
}

/* The miss case of the round before evicted some of the hit case's pages: walk one back in. */
__attribute__((noinline)) static void probe_refill(struct bench_vm *vm, uint64_t iova)
{
	struct arm_smmu_txn txn = { .access = ARM_SMMU_ACC_READ, .iova = iova };
	uint64_t phys;

	if (arm_smmu_master_translate(vm->master, &txn, &phys))
		fail("translation faulted");
}

/* A loop as run_plain()'s: a key, one call, its result tested (the refill is out of line). */
static void run_probe(void *arg, unsigned long iters)
{
	struct bench_vm *vm = arg;
	struct arm_smmu_tlb_ctx ctx;
	uint64_t phys;

	/* The context a translation has from its STE and CD before it looks. */
	arm_smmu_tlb_ctx_init(&ctx, vm->smmu, arm_smmu_domain_vmid(vm->parent), 7);
	for (unsigned long i = 0; i < iters; i++) {
		uint64_t iova = (i % HIT_PAGES) * PG + 8;

		if (!arm_smmu_tlb_probe(&ctx, iova, ARM_SMMU_ACC_READ, &phys))
			probe_refill(vm, iova);
	}
}

static void run_plain(void *ctx, unsigned long iters)
{
	uint64_t phys;

	(void)ctx;
	for (unsigned long i = 0; i < iters; i++) {
		uint64_t iova = (i % HIT_PAGES) * PG + 8;

		if (!plain_lookup(plain_key(iova), iova, &phys))
			fail("plain lookup missed");
	}
}

struct map_case {
	struct iommu_domain *domain;
	size_t pages;
};

static void run_map_unmap(void *ctx, unsigned long iters)
{
	struct map_case *c = ctx;
	size_t mapped;

	for (unsigned long i = 0; i < iters; i++) {
		if (c->domain->ops->map_pages(c->domain, 1ull << 32, 1ull << 32, PG, c->pages,
					      IOMMU_READ | IOMMU_WRITE, &mapped) ||
		    c->domain->ops->unmap_pages(c->domain, 1ull << 32, PG, c->pages, NULL) !=
			    c->pages * PG)
			fail("map/unmap");
	}
}

static const char usage[] =
	"usage: bench_smmuv3 [--quick]\n"
	"The SMMUv3 model: nested TLB hit vs a plain hash lookup, the two-dimensional walk vs a\n"
	"one-stage walk, map+unmap of 256 pages vs one. --quick: small iteration counts.\n";

int main(int argc, char **argv)
{
	int quick = argc > 1 && !strcmp(argv[1], "--quick");
	unsigned long scale = quick ? 20 : 1;
	struct bench_vm vm = { 0 };
	struct xlate_case hit, miss, flat;
	struct map_case one, many;

	if (argc > 1 && !quick) {
		fputs(usage, argc == 2 && !strcmp(argv[1], "--help") ? stdout : stderr);
		return argc == 2 && !strcmp(argv[1], "--help") ? 0 : 2;
	}
	vm_build(&vm);
	for (uint64_t i = 0; i < HIT_PAGES; i++) {
		size_t j = plain_index(plain_key(i * PG));

		while (plain[j].key)
			j = (j + 1) & (4096 - 1);
		plain[j].key = plain_key(i * PG);
		plain[j].phys = (uintptr_t)vm.g.ram + (i % 4096) * PG;
	}
	hit = (struct xlate_case){ vm.master, HIT_PAGES };
	miss = (struct xlate_case){ vm.master, MISS_PAGES };
	flat = (struct xlate_case){ vm.flat, MISS_PAGES };
	one = (struct map_case){ vm.paging, 1 };
	many = (struct map_case){ vm.paging, 256 };

	struct bench_case cases[] = {
		{ "plain hash lookup (512 keys)", run_plain, NULL, 20000000 / scale },
		{ "nested TLB hit: the TLB's lookup of (VMID, ASID, page)", run_probe, &vm,
		  20000000 / scale },
		{ "nested TLB hit: a whole translation (STE, CD cache, TLB)", run_translate, &hit,
		  10000000 / scale },
		{ "one-stage miss: stage-2 walk (16384 pages)", run_translate, &flat,
		  2000000 / scale },
		{ "nested miss: 2D walk + fill (16384 pages, 4K S1 over 4K S2)", run_translate,
		  &miss, 500000 / scale },
		{ "S2 map + unmap, 1 page", run_map_unmap, &one, 1000000 / scale },
		{ "S2 map + unmap, 256 pages in one call", run_map_unmap, &many, 20000 / scale },
	};

	/* The hit cases' pages are resident before anything is timed. */
	run_translate(&hit, HIT_PAGES);
	bench_print_header("bench_smmuv3: the SMMUv3 model", quick);
	bench_run(cases, ARRAY_SIZE(cases));
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		bench_print_case(&cases[i]);
	printf("\n");
	bench_print_goal("nested TLB hit (lookup) / plain hash lookup",
			 cases[1].median / cases[0].median, 2, 0);
	bench_print_goal("whole translation hit / plain hash lookup",
			 cases[2].median / cases[0].median, 0, 0);
	bench_print_goal("nested miss / one-stage miss", cases[4].median / cases[3].median, 6, 0);
	bench_print_goal("map+unmap 256 pages / 1 page", cases[6].median / cases[5].median, 8, 0);
	return 0;
}
