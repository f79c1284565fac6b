/* SPDX-License-Identifier: MIT */
/*
 * The AArch64 VMSAv8-64 translation-table format (ARM "LPAE" long descriptors), as an SMMUv3
 * walks it: 4, 16 or 64 KiB granules, 48-bit input and output addresses, no LPA2.
 *
 * Two users:
 *  - the SMMUv3 model's paging domains (and nest parents): a stage-2 table the host owns, built
 *    and torn down here (struct arm_lpae_s2), whose tables are real granule-aligned memory
 *    holding real descriptors, so a hardware-style walk of them reads exactly what the
 *    architecture defines;
 *  - the nested walk of a guest's stage-1 tables (arm-smmu-v3.c), which uses the geometry and
 *    descriptor definitions below on memory the guest owns.
 *
 * Geometry. With granule 2^g bytes a table holds 2^(g-3) descriptors, so each level resolves
 * b = g - 3 address bits. Level l (0..3) maps 2^(g + b*(3-l)) bytes per entry; the walk starts
 * at the level that leaves the fewest bits for the root, and the root table holds only the
 * entries the input size needs (2^(ias - shift(start))). A stage-2 root may instead start one
 * level lower with up to 16 concatenated tables, as the architecture allows and Linux chooses
 * when it saves a level (16 KiB granule with a 48-bit IPA).
 *
 * Addresses: outputs and table pointers are "physical" addresses, which in uiommu are host
 * virtual addresses of this process (x86-64 and AArch64 user addresses fit in 47 bits).
 */
#ifndef UIOMMU_DRIVERS_ARM_SMMU_V3_ARM_LPAE_H
#define UIOMMU_DRIVERS_ARM_SMMU_V3_ARM_LPAE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- descriptors ------------------------------------------------------------------------- */

#define ARM_LPAE_VALID (UINT64_C(1) << 0)
#define ARM_LPAE_TABLE (UINT64_C(1) << 1) /* levels 0-2: a table; level 3: a page (required) */
#define ARM_LPAE_TYPE_MASK UINT64_C(3)
#define ARM_LPAE_TYPE_BLOCK UINT64_C(1)
#define ARM_LPAE_TYPE_TABLE UINT64_C(3)   /* and "page" at level 3 */
#define ARM_LPAE_OA_MASK UINT64_C(0x0000fffffffff000) /* bits 47:12, narrowed by the granule */

/* Leaf attributes, both stages. */
#define ARM_LPAE_SH_IS (UINT64_C(3) << 8)
#define ARM_LPAE_AF (UINT64_C(1) << 10)
#define ARM_LPAE_DBM (UINT64_C(1) << 51)
#define ARM_LPAE_CONT (UINT64_C(1) << 52)

/* Stage-1 leaves. */
#define ARM_LPAE_S1_ATTRIDX_SHIFT 2
#define ARM_LPAE_S1_AP1 (UINT64_C(1) << 6)  /* unprivileged access allowed */
#define ARM_LPAE_S1_AP2 (UINT64_C(1) << 7)  /* read-only */
#define ARM_LPAE_S1_NG (UINT64_C(1) << 11)  /* not global: tagged with the ASID */
#define ARM_LPAE_S1_PXN (UINT64_C(1) << 53)
#define ARM_LPAE_S1_UXN (UINT64_C(1) << 54)

/* Stage-1 table descriptors: restrictions on everything below. */
#define ARM_LPAE_TBL_PXN (UINT64_C(1) << 59)
#define ARM_LPAE_TBL_UXN (UINT64_C(1) << 60)
#define ARM_LPAE_TBL_AP1 (UINT64_C(1) << 61) /* no unprivileged access below */
#define ARM_LPAE_TBL_AP2 (UINT64_C(1) << 62) /* read-only below */

/* Stage-2 leaves. */
#define ARM_LPAE_S2_MEMATTR_SHIFT 2
#define ARM_LPAE_S2_MEMATTR_DEV UINT64_C(0x1)
#define ARM_LPAE_S2_MEMATTR_WB UINT64_C(0xf)
#define ARM_LPAE_S2_AP_R (UINT64_C(1) << 6)
#define ARM_LPAE_S2_AP_W (UINT64_C(1) << 7)
#define ARM_LPAE_S2_XN (UINT64_C(1) << 54)

#define ARM_LPAE_MAX_LEVELS 4u
#define ARM_LPAE_MAX_CONCAT 16u

/* ---- geometry ---------------------------------------------------------------------------- */

struct arm_lpae_geom {
	unsigned int pg_shift;   /* 12, 14 or 16 */
	unsigned int bits;       /* pg_shift - 3: address bits per level */
	unsigned int ias;        /* input address bits */
	unsigned int start;      /* the level of the root table */
};

/**
 * arm_lpae_geom_init() - the walk for a @pg_shift granule over @ias input bits
 * @concat: a stage-2 root may start one level lower with up to 16 concatenated tables
 *
 * Return: 0; -EINVAL for a granule other than 12/14/16, or @ias outside 25..48.
 */
int arm_lpae_geom_init(struct arm_lpae_geom *geom, unsigned int pg_shift, unsigned int ias,
		       bool concat);

static inline unsigned int arm_lpae_level_shift(const struct arm_lpae_geom *geom,
						unsigned int level)
{
	return geom->pg_shift + geom->bits * (3u - level);
}

/* Entries of a table at @level (the root's may be fewer, or up to 16 tables' worth). */
static inline uint64_t arm_lpae_level_entries(const struct arm_lpae_geom *geom, unsigned int level)
{
	if (level == geom->start)
		return UINT64_C(1) << (geom->ias - arm_lpae_level_shift(geom, level));
	return UINT64_C(1) << geom->bits;
}

static inline uint64_t arm_lpae_index(const struct arm_lpae_geom *geom, unsigned int level,
				      uint64_t va)
{
	return (va >> arm_lpae_level_shift(geom, level)) &
	       (arm_lpae_level_entries(geom, level) - 1);
}

/* Can a level-@level descriptor be a leaf? 4K: 1 GiB and 2 MiB blocks; 16K/64K: level 2. */
static inline bool arm_lpae_block_ok(const struct arm_lpae_geom *geom, unsigned int level)
{
	if (level == 3)
		return true;
	return geom->pg_shift == 12 ? level >= 1 : level == 2;
}

/* The output address of a level-@level leaf or the next table of a table descriptor. */
static inline uint64_t arm_lpae_oa(const struct arm_lpae_geom *geom, unsigned int level,
				   uint64_t desc, bool table)
{
	unsigned int low = table ? geom->pg_shift : arm_lpae_level_shift(geom, level);

	return desc & ARM_LPAE_OA_MASK & ~((UINT64_C(1) << low) - 1);
}

/* Page sizes (leaf sizes) of the geometry, as a bitmap. */
uint64_t arm_lpae_pgsize_bitmap(const struct arm_lpae_geom *geom);

/* Bytes of the root table (at least 64, its required alignment too). */
size_t arm_lpae_root_size(const struct arm_lpae_geom *geom);

/* ---- the host's stage-2 table ------------------------------------------------------------- */

/*
 * A stage-2 table owned by a paging domain. No lock: callers never map, unmap or clear the
 * dirty bits of overlapping ranges at the same time (the core's rule for every io-pgtable);
 * disjoint ranges may run concurrently with each other and with walks (see arm-lpae.c).
 */
struct arm_lpae_s2 {
	struct arm_lpae_geom geom;
	uint64_t *root;
	bool dbm;          /* writable leaves carry DBM: writes mark them dirty (S2HD) */
};

/* What a walk found: the leaf and where it is. */
struct arm_lpae_leaf {
	uint64_t phys;        /* output address of the looked-up input address */
	uint64_t size;        /* bytes the leaf maps */
	uint64_t desc;        /* the descriptor, after any hardware update */
	unsigned int level;
};

/** arm_lpae_s2_init() - an empty table; -EINVAL (see arm_lpae_geom_init()), -ENOMEM */
int arm_lpae_s2_init(struct arm_lpae_s2 *pt, unsigned int pg_shift, unsigned int ias, bool dbm);

/** arm_lpae_s2_destroy() - free every table; no call on @pt may run or follow */
void arm_lpae_s2_destroy(struct arm_lpae_s2 *pt);

/**
 * arm_lpae_s2_map() - map @pgcount leaves of @pgsize at @iova to @paddr with IOMMU_* @prot
 * @mapped: bytes mapped, also on failure (the caller unmaps that progress)
 *
 * A leaf's place may hold a table that maps nothing (left by unmaps): it is replaced.
 *
 * Return: 0; -EINVAL for a size the granule lacks, misalignment, @pgcount 0 or an output
 * address beyond 48 bits; -ERANGE beyond the input size; -EEXIST over a mapping; -ENOMEM.
 */
int arm_lpae_s2_map(struct arm_lpae_s2 *pt, uint64_t iova, uint64_t paddr, size_t pgsize,
		    size_t pgcount, int prot, size_t *mapped);

/**
 * arm_lpae_s2_unmap() - unmap consecutive leaves of exactly @pgsize from @iova on
 *
 * A table where a leaf of @pgsize would be goes with everything under it. It stops at the first
 * hole or at a larger leaf (which it never splits).
 *
 * Return: the bytes unmapped.
 */
size_t arm_lpae_s2_unmap(struct arm_lpae_s2 *pt, uint64_t iova, size_t pgsize, size_t pgcount);

/**
 * arm_lpae_s2_walk() - the hardware's walk of @iova for an @access (IOMMU_READ or IOMMU_WRITE)
 *
 * A write to a writable-clean leaf (DBM set, S2AP write clear) makes it dirty in place, as
 * S2HD does; other permission checks are the caller's (@leaf->desc holds S2AP).
 *
 * Return: 0; -ENOENT for a translation fault; -ERANGE beyond the input size.
 */
int arm_lpae_s2_walk(struct arm_lpae_s2 *pt, uint64_t iova, int access,
		     struct arm_lpae_leaf *leaf);

/* IOMMU_READ | IOMMU_WRITE of a stage-2 leaf; a writable-clean one counts as writable. */
int arm_lpae_s2_prot(const struct arm_lpae_s2 *pt, uint64_t desc);

/* Is the stage-2 leaf writable-clean (a write must walk again to mark it dirty)? */
static inline bool arm_lpae_s2_clean(uint64_t desc)
{
	return (desc & ARM_LPAE_DBM) && !(desc & ARM_LPAE_S2_AP_W);
}

/**
 * arm_lpae_s2_read_and_clear_dirty() - report the dirty leaves meeting [@iova, @iova + @size)
 * @clear: make them writable-clean again
 * @record: called with each dirty leaf, whole, in address order
 *
 * Return: 0; -EINVAL for an empty or wrapping range.
 */
int arm_lpae_s2_read_and_clear_dirty(struct arm_lpae_s2 *pt, uint64_t iova, uint64_t size,
				     bool clear,
				     void (*record)(void *arg, uint64_t iova, uint64_t length),
				     void *arg);

#endif
