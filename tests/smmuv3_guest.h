/* SPDX-License-Identifier: MIT */
/*
 * A guest's memory and its SMMUv3 stage-1 page tables, shared by the uAPI test of the model
 * (test_smmuv3_abi.c) and its benchmark (bench/bench_smmuv3.c): guest RAM is a buffer of this
 * process that sits at IPA @base; pages are handed out in order and never freed; a mapping is
 * a 4 KiB page of a 48-bit, 4-level AArch64 stage-1 table, written as a guest's kernel writes
 * it (hw-iommus.md B.9: table descriptors 0b11, leaves with AF, nG, AP[1] and inner shareable).
 * Libc only.
 */
#ifndef UIOMMU_TESTS_SMMUV3_GUEST_H
#define UIOMMU_TESTS_SMMUV3_GUEST_H

#include <stdint.h>
#include <string.h>

#define SMMUV3_GUEST_PG 4096ull
#define SMMUV3_GUEST_PTE_TABLE 3ull
#define SMMUV3_GUEST_PTE_PAGE (3ull | 1ull << 10 /* AF */ | 1ull << 11 /* nG */ | \
			       1ull << 6 /* AP1 */ | 3ull << 8 /* SH inner */)

struct smmuv3_guest {
	uint8_t *ram;            /* size bytes at IPA base */
	uint64_t base, size;
	uint64_t next;           /* the next free page, an IPA */
	uint64_t ttb0;           /* the stage-1 root table, an IPA (the caller's page) */
};

/* Where the IPA @ipa of guest RAM is in this process. */
static inline uint64_t *smmuv3_guest_va(struct smmuv3_guest *g, uint64_t ipa)
{
	return (uint64_t *)(g->ram + (ipa - g->base));
}

/* A zeroed page of guest RAM: its IPA, or 0 (never guest RAM) when none is left. */
static inline uint64_t smmuv3_guest_page(struct smmuv3_guest *g)
{
	uint64_t ipa = g->next;

	if (ipa + SMMUV3_GUEST_PG > g->base + g->size)
		return 0;
	g->next += SMMUV3_GUEST_PG;
	memset(smmuv3_guest_va(g, ipa), 0, SMMUV3_GUEST_PG);
	return ipa;
}

/* Maps @iova to @ipa under ttb0, making the missing tables: the leaf, or NULL (no pages). */
static inline uint64_t *smmuv3_guest_map(struct smmuv3_guest *g, uint64_t iova, uint64_t ipa)
{
	uint64_t table = g->ttb0, *pte = NULL;

	for (int level = 0; level < 4; level++) {
		pte = smmuv3_guest_va(g, table + 8 * ((iova >> (39 - 9 * level)) & 511));
		if (level == 3)
			break;
		if (!*pte) {
			uint64_t next = smmuv3_guest_page(g);

			if (!next)
				return NULL;
			*pte = next | SMMUV3_GUEST_PTE_TABLE;
		}
		table = *pte & 0xfffffffff000ull;
	}
	*pte = ipa | SMMUV3_GUEST_PTE_PAGE;
	return pte;
}

#endif
