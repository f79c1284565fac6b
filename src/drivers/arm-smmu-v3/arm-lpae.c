// SPDX-License-Identifier: MIT
/*
 * The host's stage-2 VMSAv8-64 table of an SMMUv3 paging domain, and the geometry both stages
 * share (arm-lpae.h has the format).
 *
 * Data model. Every table is a real array of descriptors in granule-aligned memory from
 * uiommu_zalloc_aligned() (the root aligned to its own size), so what a walk reads is what an
 * SMMU would read: a table descriptor holds the next table's address in its OA bits, a leaf its
 * output address with S2AP, AF, SH, MemAttr, XN and DBM. Nothing else describes the mapping.
 *
 * Concurrency, the io-pgtable contract: no lock; callers own their ranges (the IOVA allocator
 * or iommufd's area tree never hands out overlapping ones), and what we make safe is calls on
 * disjoint ranges that share intermediate tables, and walks:
 *  - a missing table is installed with a release compare-and-exchange from 0; the loser of a
 *    race frees its copy and descends into the winner's;
 *  - a leaf is installed with a release store where the entry was 0 (a compare-and-exchange
 *    where it replaces an empty table), so a mapping over a live one is -EEXIST, never a
 *    silent overwrite; the store is not a compare-and-exchange because a range's leaves are
 *    its caller's alone, and one locked instruction per page would cost a 256-page map most
 *    of its time;
 *  - a map or unmap walks once per last-level table and then runs along its entries;
 *  - tables are freed only when one call removes everything under them (an unmap at the
 *    table's own level, or a block replacing an empty table): the whole span is the caller's;
 *  - the hardware's dirty update (a write to a writable-clean leaf) is a compare-and-exchange
 *    that sets S2AP[1], and clearing is an atomic and: a write racing a read-and-clear is either
 *    reported by this read or stays for the next, never lost.
 * Tables emptied by unmaps of smaller leaves stay until the domain is freed (or until a block
 * takes their place), as in the mock's format.
 */
#include <errno.h>
#include <string.h>

#include "drivers/arm-smmu-v3/arm-lpae.h"
#include "iommu/iommu.h"
#include "lib/compiler.h"
#include "lib/fail.h"

int arm_lpae_geom_init(struct arm_lpae_geom *geom, unsigned int pg_shift, unsigned int ias,
		       bool concat)
{
	unsigned int levels;

	if ((pg_shift != 12 && pg_shift != 14 && pg_shift != 16) || ias < 25 || ias > 48)
		return -EINVAL;
	geom->pg_shift = pg_shift;
	geom->bits = pg_shift - 3;
	geom->ias = ias;
	levels = (ias - pg_shift + geom->bits - 1) / geom->bits;
	geom->start = 4 - levels;
	/* One level fewer when the next level's root fits in 16 concatenated tables. */
	if (concat && geom->start < 3 &&
	    ias - arm_lpae_level_shift(geom, geom->start + 1) <= geom->bits + 4)
		geom->start++;
	return 0;
}

uint64_t arm_lpae_pgsize_bitmap(const struct arm_lpae_geom *geom)
{
	uint64_t bitmap = 0;
	unsigned int level;

	for (level = geom->start; level <= 3; level++)
		if (arm_lpae_block_ok(geom, level))
			bitmap |= UINT64_C(1) << arm_lpae_level_shift(geom, level);
	return bitmap;
}

size_t arm_lpae_root_size(const struct arm_lpae_geom *geom)
{
	size_t size = (size_t)arm_lpae_level_entries(geom, geom->start) * sizeof(uint64_t);

	return size < 64 ? 64 : size;
}

static uint64_t lpae_load(const uint64_t *ptep)
{
	return __atomic_load_n(ptep, __ATOMIC_ACQUIRE);
}

static bool lpae_cmpxchg(uint64_t *ptep, uint64_t *old, uint64_t new)
{
	return __atomic_compare_exchange_n(ptep, old, new, false, __ATOMIC_ACQ_REL,
					   __ATOMIC_ACQUIRE);
}

static bool lpae_is_table(unsigned int level, uint64_t desc)
{
	return level < 3 && (desc & ARM_LPAE_TYPE_MASK) == ARM_LPAE_TYPE_TABLE;
}

static uint64_t *lpae_table_ptr(const struct arm_lpae_s2 *pt, uint64_t desc)
{
	return (uint64_t *)(uintptr_t)arm_lpae_oa(&pt->geom, 0, desc, true);
}

static uint64_t *lpae_table_alloc(const struct arm_lpae_s2 *pt)
{
	size_t size = (size_t)1 << pt->geom.pg_shift;

	return uiommu_zalloc_aligned(size, size);
}

static void lpae_table_free(const struct arm_lpae_s2 *pt, uint64_t *table, unsigned int level)
{
	uint64_t i, n = arm_lpae_level_entries(&pt->geom, level);

	for (i = 0; i < n; i++) {
		uint64_t desc = table[i];

		if (lpae_is_table(level, desc))
			lpae_table_free(pt, lpae_table_ptr(pt, desc), level + 1);
	}
	uiommu_free(table);
}

/* Does the table (at @level) map nothing, at any depth? */
static bool lpae_table_empty(const struct arm_lpae_s2 *pt, const uint64_t *table,
			     unsigned int level)
{
	uint64_t i, n = arm_lpae_level_entries(&pt->geom, level);

	for (i = 0; i < n; i++) {
		uint64_t desc = lpae_load(&table[i]);

		if (!desc)
			continue;
		if (!lpae_is_table(level, desc) ||
		    !lpae_table_empty(pt, lpae_table_ptr(pt, desc), level + 1))
			return false;
	}
	return true;
}

int arm_lpae_s2_init(struct arm_lpae_s2 *pt, unsigned int pg_shift, unsigned int ias, bool dbm)
{
	size_t size;
	int rc;

	memset(pt, 0, sizeof(*pt));
	rc = arm_lpae_geom_init(&pt->geom, pg_shift, ias, true);
	if (rc)
		return rc;
	size = arm_lpae_root_size(&pt->geom);
	pt->root = uiommu_zalloc_aligned(size, size);
	if (!pt->root)
		return -ENOMEM;
	pt->dbm = dbm;
	return 0;
}

void arm_lpae_s2_destroy(struct arm_lpae_s2 *pt)
{
	if (pt->root)
		lpae_table_free(pt, pt->root, pt->geom.start);
	pt->root = NULL;
}

/* The level whose leaves are @pgsize, or 4 when the granule has no such leaf. */
static unsigned int lpae_pgsize_level(const struct arm_lpae_geom *geom, uint64_t pgsize)
{
	unsigned int level;

	for (level = geom->start; level <= 3; level++)
		if (arm_lpae_block_ok(geom, level) &&
		    pgsize == UINT64_C(1) << arm_lpae_level_shift(geom, level))
			return level;
	return 4;
}

static uint64_t lpae_s2_leaf(const struct arm_lpae_s2 *pt, unsigned int level, uint64_t paddr,
			     int prot)
{
	uint64_t desc = paddr | ARM_LPAE_VALID | ARM_LPAE_AF | ARM_LPAE_SH_IS;

	desc |= level == 3 ? ARM_LPAE_TYPE_TABLE : ARM_LPAE_TYPE_BLOCK;
	desc |= (prot & IOMMU_MMIO ? ARM_LPAE_S2_MEMATTR_DEV : ARM_LPAE_S2_MEMATTR_WB)
		<< ARM_LPAE_S2_MEMATTR_SHIFT;
	if (prot & IOMMU_READ)
		desc |= ARM_LPAE_S2_AP_R;
	if (prot & IOMMU_WRITE)
		desc |= ARM_LPAE_S2_AP_W | (pt->dbm ? ARM_LPAE_DBM : 0);
	if (prot & IOMMU_NOEXEC)
		desc |= ARM_LPAE_S2_XN;
	return desc;
}

/* The entry for @iova at @level, creating tables on the way; NULL with *@err set. */
static uint64_t *lpae_s2_entry(struct arm_lpae_s2 *pt, uint64_t iova, unsigned int target,
			       int *err)
{
	uint64_t *table = pt->root;
	unsigned int level;

	for (level = pt->geom.start;; level++) {
		uint64_t *ptep = &table[arm_lpae_index(&pt->geom, level, iova)];
		uint64_t desc, *next;

		if (level == target)
			return ptep;
		desc = lpae_load(ptep);
		if (!desc) {
			next = lpae_table_alloc(pt);
			if (!next) {
				*err = -ENOMEM;
				return NULL;
			}
			desc = 0;
			if (lpae_cmpxchg(ptep, &desc, (uint64_t)(uintptr_t)next | ARM_LPAE_TYPE_TABLE)) {
				table = next;
				continue;
			}
			/* Another mapper installed a table (or a leaf) first. */
			uiommu_free(next);
		}
		if (!lpae_is_table(level, desc)) {
			*err = -EEXIST;
			return NULL;
		}
		table = lpae_table_ptr(pt, desc);
	}
}

/* Put @leaf in *@ptep: over nothing, or over a table left empty by unmaps (freed). */
static int lpae_s2_set_leaf(struct arm_lpae_s2 *pt, uint64_t *ptep, unsigned int level,
			    uint64_t leaf)
{
	uint64_t old = lpae_load(ptep);

	if (!old) {
		__atomic_store_n(ptep, leaf, __ATOMIC_RELEASE);
		return 0;
	}
	if (lpae_is_table(level, old) && lpae_table_empty(pt, lpae_table_ptr(pt, old), level + 1) &&
	    lpae_cmpxchg(ptep, &old, leaf)) {
		lpae_table_free(pt, lpae_table_ptr(pt, old), level + 1);
		return 0;
	}
	return -EEXIST;
}

/* Entries from @iova's on to the end of its table at @level. */
static uint64_t lpae_entries_left(const struct arm_lpae_geom *geom, unsigned int level,
				  uint64_t iova)
{
	return arm_lpae_level_entries(geom, level) - arm_lpae_index(geom, level, iova);
}

int arm_lpae_s2_map(struct arm_lpae_s2 *pt, uint64_t iova, uint64_t paddr, size_t pgsize,
		    size_t pgcount, int prot, size_t *mapped)
{
	unsigned int level = lpae_pgsize_level(&pt->geom, pgsize);
	uint64_t last, span, leaf;
	size_t i = 0;
	int rc = 0;

	*mapped = 0;
	if (level > 3 || !pgcount || !IS_ALIGNED(iova, pgsize) || !IS_ALIGNED(paddr, pgsize))
		return -EINVAL;
	if (check_mul_overflow((uint64_t)pgsize, (uint64_t)pgcount, &span) ||
	    check_add_overflow(paddr, span - 1, &last) || last >> 48)
		return -EINVAL;
	if (check_add_overflow(iova, span - 1, &last) || last >> pt->geom.ias)
		return -ERANGE;
	leaf = lpae_s2_leaf(pt, level, 0, prot);
	/* One walk per table, then its consecutive entries. */
	while (i < pgcount) {
		uint64_t va = iova + i * pgsize, n, j;
		uint64_t *ptep = lpae_s2_entry(pt, va, level, &rc);

		if (!ptep)
			return rc;
		n = lpae_entries_left(&pt->geom, level, va);
		if (n > pgcount - i)
			n = pgcount - i;
		/*
		 * Four empty slots a step (one OR of four loads, four stores), then slot by slot:
		 * the slow path replaces a table left empty by unmaps, or stops at a taken slot.
		 */
		for (j = 0; j + 4 <= n; j += 4, i += 4) {
			if (lpae_load(&ptep[j]) | lpae_load(&ptep[j + 1]) | lpae_load(&ptep[j + 2]) |
			    lpae_load(&ptep[j + 3]))
				break;
#pragma GCC unroll 4
			for (unsigned int k = 0; k < 4; k++)
				__atomic_store_n(&ptep[j + k], leaf | (paddr + (i + k) * pgsize),
						 __ATOMIC_RELEASE);
		}
		for (; j < n; j++, i++) {
			rc = lpae_s2_set_leaf(pt, &ptep[j], level, leaf | (paddr + i * pgsize));
			if (rc)
				break;
		}
		*mapped = i * pgsize; /* once per table: the stores above need not wait for it */
		if (rc)
			return rc;
	}
	return 0;
}

size_t arm_lpae_s2_unmap(struct arm_lpae_s2 *pt, uint64_t iova, size_t pgsize, size_t pgcount)
{
	unsigned int target = lpae_pgsize_level(&pt->geom, pgsize), level;
	size_t done = 0, i = 0;

	if (target > 3 || !IS_ALIGNED(iova, pgsize))
		return 0;
	while (i < pgcount) {
		uint64_t va = iova + i * pgsize, *table = pt->root, desc, n, j, *ptep;

		if (va >> pt->geom.ias)
			break;
		for (level = pt->geom.start; level < target; level++) {
			desc = lpae_load(&table[arm_lpae_index(&pt->geom, level, va)]);
			if (!lpae_is_table(level, desc))
				return done; /* a hole, or a larger leaf we never split */
			table = lpae_table_ptr(pt, desc);
		}
		ptep = &table[arm_lpae_index(&pt->geom, target, va)];
		n = lpae_entries_left(&pt->geom, target, va);
		if (n > pgcount - i)
			n = pgcount - i;
		/* Pages (no tables below them), four a step while all four are mapped. */
		for (j = 0; target == 3 && j + 4 <= n; j += 4, i += 4, done += 4 * pgsize) {
			if (!(lpae_load(&ptep[j]) && lpae_load(&ptep[j + 1]) &&
			      lpae_load(&ptep[j + 2]) && lpae_load(&ptep[j + 3])))
				break;
#pragma GCC unroll 4
			for (unsigned int k = 0; k < 4; k++)
				__atomic_store_n(&ptep[j + k], 0, __ATOMIC_RELEASE);
		}
		for (; j < n; j++, i++) {
			/*
			 * A plain store: a hardware dirty update racing it either lands first
			 * and is overwritten, or finds 0 and fails; tables never change under us.
			 */
			desc = lpae_load(&ptep[j]);
			if (!desc)
				return done;
			__atomic_store_n(&ptep[j], 0, __ATOMIC_RELEASE);
			if (lpae_is_table(target, desc))
				lpae_table_free(pt, lpae_table_ptr(pt, desc), target + 1);
			done += pgsize;
		}
	}
	return done;
}

int arm_lpae_s2_walk(struct arm_lpae_s2 *pt, uint64_t iova, int access,
		     struct arm_lpae_leaf *leaf)
{
	uint64_t *table = pt->root, *ptep, desc;
	unsigned int level;

	if (iova >> pt->geom.ias)
		return -ERANGE;
	for (level = pt->geom.start;; level++) {
		ptep = &table[arm_lpae_index(&pt->geom, level, iova)];
		desc = lpae_load(ptep);
		if (!(desc & ARM_LPAE_VALID))
			return -ENOENT;
		if (!lpae_is_table(level, desc))
			break;
		table = lpae_table_ptr(pt, desc);
	}
	if (level < 3 && !arm_lpae_block_ok(&pt->geom, level))
		return -ENOENT;
	if (level == 3 && (desc & ARM_LPAE_TYPE_MASK) != ARM_LPAE_TYPE_TABLE)
		return -ENOENT;
	/* S2HD: the first write to a writable-clean leaf makes it writable-dirty. */
	while ((access & IOMMU_WRITE) && arm_lpae_s2_clean(desc))
		if (lpae_cmpxchg(ptep, &desc, desc | ARM_LPAE_S2_AP_W))
			desc |= ARM_LPAE_S2_AP_W;
	leaf->level = level;
	leaf->size = UINT64_C(1) << arm_lpae_level_shift(&pt->geom, level);
	leaf->desc = desc;
	leaf->phys = arm_lpae_oa(&pt->geom, level, desc, false) | (iova & (leaf->size - 1));
	return 0;
}

int arm_lpae_s2_prot(const struct arm_lpae_s2 *pt, uint64_t desc)
{
	int prot = 0;

	(void)pt;
	if (desc & ARM_LPAE_S2_AP_R)
		prot |= IOMMU_READ;
	if ((desc & ARM_LPAE_S2_AP_W) || (desc & ARM_LPAE_DBM))
		prot |= IOMMU_WRITE;
	return prot;
}

struct lpae_dirty_walk {
	struct arm_lpae_s2 *pt;
	uint64_t start, last;
	bool clear;
	void (*record)(void *arg, uint64_t iova, uint64_t length);
	void *arg;
};

static void lpae_dirty_table(struct lpae_dirty_walk *w, uint64_t *table, unsigned int level,
			     uint64_t base)
{
	unsigned int shift = arm_lpae_level_shift(&w->pt->geom, level);
	uint64_t i, n = arm_lpae_level_entries(&w->pt->geom, level), size = UINT64_C(1) << shift;

	for (i = 0; i < n; i++) {
		uint64_t va = base + i * size, desc;

		if (va > w->last || va + size - 1 < w->start)
			continue;
		desc = lpae_load(&table[i]);
		if (!(desc & ARM_LPAE_VALID))
			continue;
		if (lpae_is_table(level, desc)) {
			lpae_dirty_table(w, lpae_table_ptr(w->pt, desc), level + 1, va);
			continue;
		}
		if (!(desc & ARM_LPAE_DBM) || !(desc & ARM_LPAE_S2_AP_W))
			continue;
		if (w->clear)
			__atomic_fetch_and(&table[i], ~ARM_LPAE_S2_AP_W, __ATOMIC_ACQ_REL);
		if (w->record)
			w->record(w->arg, va, size);
	}
}

int arm_lpae_s2_read_and_clear_dirty(struct arm_lpae_s2 *pt, uint64_t iova, uint64_t size,
				     bool clear,
				     void (*record)(void *arg, uint64_t iova, uint64_t length),
				     void *arg)
{
	struct lpae_dirty_walk w = {
		.pt = pt, .start = iova, .clear = clear, .record = record, .arg = arg,
	};

	if (!size || check_add_overflow(iova, size - 1, &w.last))
		return -EINVAL;
	lpae_dirty_table(&w, pt->root, pt->geom.start, 0);
	return 0;
}
