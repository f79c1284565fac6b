// SPDX-License-Identifier: MIT
/*
 * VT-d's two table formats, as the hardware walks them (hw-iommus.md C.4-C.7).
 *
 * Second stage. Levels are numbered as the spec does: 1 = the page table (4 KiB leaves),
 * 2 = the directory (2 MiB leaves with PS), 3 = the PDPT (1 GiB leaves with PS), 4 = PML4,
 * 5 = PML5; level L indexes with input bits [12 + 9L - 1 : 12 + 9(L - 1)]. An entry is present
 * when R or W is set: there is no present bit. Table entries carry R|W (as Linux writes them),
 * so the rights of a translation are the leaf's. A and D are set by the walk only while SSADE is
 * on (the domain's dirty tracking); D only in a leaf and only on a write the rights allow.
 *
 * Concurrency is io_pgtable.c's contract: the entries are the only shared mutable state and are
 * touched only with atomics. Map and unmap of disjoint ranges and walks of any range may run at
 * once. A table is installed with a compare-and-swap from 0 (the loser frees its copy); a leaf
 * with a plain store, its slot being the caller's alone. An
 * unmap that meets a table where it expected a leaf of its size owns everything under it (the
 * caller's range) and frees it at once; otherwise tables never shrink and go with the domain.
 * The walk's A/D updates are compare-and-swaps from the value it read, so they never revive an
 * entry an unmap cleared meanwhile, and the dirty reader clears D with an atomic and, so a D set
 * after the reader looked stays for the next read.
 *
 * First stage, nested. The guest's tables are guest memory: every entry is fetched by
 * translating its GPA through the second stage (read right needed), the root pointer
 * included; the leaf's output GPA is translated with the request's access. The rights are the
 * intersection over every level (R/W, U/S; XD is sticky), judged by the request's kind (C.6).
 * A fault leaves the tables untouched; a translation that succeeds sets A (and EA with EAFE) in
 * each entry it used and D in the leaf on a write, each update a write through the second
 * stage (so it needs the second stage's W right, and marks that page dirty there too).
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "drivers/intel/vtd.h"
#include "lib/compiler.h"
#include "lib/fail.h"
#include "mm/mm.h"

#define VTD_LEVEL_BITS 9u
#define VTD_SS_PRESENT (VTD_SS_R | VTD_SS_W)
#define VTD_MAX_LEVELS 5u

typedef _Atomic uint64_t vtd_pte_t;

static inline unsigned int vtd_level_shift(unsigned int lvl)
{
	return VTD_PAGE_SHIFT + VTD_LEVEL_BITS * (lvl - 1);
}

static inline uint64_t vtd_level_size(unsigned int lvl)
{
	return UINT64_C(1) << vtd_level_shift(lvl);
}

static inline unsigned int vtd_level_index(uint64_t iova, unsigned int lvl)
{
	return (unsigned int)(iova >> vtd_level_shift(lvl)) & (VTD_PTES - 1);
}

static inline vtd_pte_t *vtd_table_at(uint64_t pte)
{
	return (vtd_pte_t *)(uintptr_t)(pte & VTD_ADDR_MASK);
}

static inline bool vtd_ss_is_leaf(uint64_t pte, unsigned int lvl)
{
	return lvl == 1 || (pte & VTD_SS_PS);
}

/*
 * A 4 KiB-aligned zeroed table. uiommu_zalloc() has no alignment argument, so the block is
 * twice the size and its start is kept in the slot just below the table.
 */
static vtd_pte_t *vtd_table_alloc(void)
{
	uintptr_t raw = (uintptr_t)uiommu_zalloc(2 * VTD_PAGE_SIZE);
	uintptr_t table;

	if (!raw)
		return NULL;
	table = ALIGN_UP(raw + sizeof(void *), (uintptr_t)VTD_PAGE_SIZE);
	((void **)table)[-1] = (void *)raw;
	return (vtd_pte_t *)table;
}

static void vtd_table_free(vtd_pte_t *table)
{
	uiommu_free(((void **)table)[-1]);
}

/* Frees @table (level @lvl) and every table below it. */
static void vtd_tables_free(vtd_pte_t *table, unsigned int lvl)
{
	for (unsigned int i = 0; lvl > 1 && i < VTD_PTES; i++) {
		uint64_t pte = atomic_load_explicit(&table[i], memory_order_relaxed);

		if ((pte & VTD_SS_PRESENT) && !vtd_ss_is_leaf(pte, lvl))
			vtd_tables_free(vtd_table_at(pte), lvl - 1);
	}
	vtd_table_free(table);
}

int vtd_ss_init(struct vtd_ss *ss, unsigned int levels)
{
	if (levels != 4 && levels != 5)
		return -EINVAL;
	ss->root = (uint64_t *)vtd_table_alloc();
	if (!ss->root)
		return -ENOMEM;
	ss->levels = levels;
	ss->width = vtd_level_shift(levels) + VTD_LEVEL_BITS;
	ss->no_readonly = false;
	atomic_init(&ss->ssade, false);
	return 0;
}

void vtd_ss_destroy(struct vtd_ss *ss)
{
	if (ss->root)
		vtd_tables_free((vtd_pte_t *)ss->root, ss->levels);
	ss->root = NULL;
}

static unsigned int vtd_pgsize_level(uint64_t pgsize)
{
	switch (pgsize) {
	case VTD_PAGE_SIZE:
		return 1;
	case VTD_SZ_2M:
		return 2;
	case VTD_SZ_1G:
		return 3;
	default:
		return 0;
	}
}

/* The entry for @iova at level @target, installing missing tables; NULL on -ENOMEM/-EEXIST. */
static vtd_pte_t *vtd_ss_slot(struct vtd_ss *ss, uint64_t iova, unsigned int target, int *err)
{
	vtd_pte_t *table = (vtd_pte_t *)ss->root;

	for (unsigned int lvl = ss->levels; lvl > target; lvl--) {
		vtd_pte_t *slot = &table[vtd_level_index(iova, lvl)];
		uint64_t pte = atomic_load_explicit(slot, memory_order_acquire);

		if (!(pte & VTD_SS_PRESENT)) {
			vtd_pte_t *next = vtd_table_alloc();
			uint64_t want;

			if (!next) {
				*err = -ENOMEM;
				return NULL;
			}
			want = (uint64_t)(uintptr_t)next | VTD_SS_R | VTD_SS_W;
			if (atomic_compare_exchange_strong_explicit(slot, &pte, want,
								    memory_order_acq_rel,
								    memory_order_acquire)) {
				pte = want;
			} else {
				/* A neighbour's map installed it first: use theirs. */
				vtd_table_free(next);
			}
		}
		if (vtd_ss_is_leaf(pte, lvl)) {
			*err = -EEXIST;
			return NULL;
		}
		table = vtd_table_at(pte);
	}
	return &table[vtd_level_index(iova, target)];
}

int vtd_ss_map(struct vtd_ss *ss, uint64_t iova, uint64_t paddr, uint64_t pgsize,
	       size_t pgcount, int prot, size_t *mapped)
{
	unsigned int target = vtd_pgsize_level(pgsize);
	uint64_t last, leaf_bits = 0;

	*mapped = 0;
	if (!target || !pgcount || !IS_ALIGNED(iova, pgsize) || !IS_ALIGNED(paddr, pgsize))
		return -EINVAL;
	if (!(prot & (IOMMU_READ | IOMMU_WRITE)))
		return -EINVAL;
	/* Erratum 772415: the kernel's nest parent refuses mappings without write. */
	if (ss->no_readonly && !(prot & IOMMU_WRITE))
		return -EINVAL;
	if (check_mul_overflow((uint64_t)pgcount, pgsize, &last) ||
	    check_add_overflow(iova, last - 1, &last) || (last >> ss->width))
		return -ERANGE;
	if ((paddr + (uint64_t)pgcount * pgsize - 1) & ~(VTD_ADDR_MASK | (VTD_PAGE_SIZE - 1)))
		return -ERANGE; /* the output does not fit the entry's address field */
	if (prot & IOMMU_READ)
		leaf_bits |= VTD_SS_R;
	if (prot & IOMMU_WRITE)
		leaf_bits |= VTD_SS_W;
	if (target > 1)
		leaf_bits |= VTD_SS_PS;

	/*
	 * One walk per table, then its run of consecutive slots, with the progress counted once
	 * per run: per page, a load, a test and a store. Plain loads and stores: the range is the
	 * caller's alone, and a walker never writes an empty entry (its A/D updates
	 * compare-and-swap from what it read). A taken slot stops the map with EEXIST, the pages
	 * before it left mapped and counted, as the kernel's map does.
	 */
	for (size_t i = 0; i < pgcount;) {
		uint64_t at = iova + i * pgsize, out = paddr + i * pgsize;
		size_t n = VTD_PTES - vtd_level_index(at, target), j;
		int err = 0;
		vtd_pte_t *slot = vtd_ss_slot(ss, at, target, &err);

		if (!slot)
			return err;
		if (n > pgcount - i)
			n = pgcount - i;
		/* Four slots a step while they are all empty, then one at a time. */
		for (j = 0; j + 4 <= n; j += 4, out += 4 * pgsize) {
			if (atomic_load_explicit(&slot[j], memory_order_relaxed) |
			    atomic_load_explicit(&slot[j + 1], memory_order_relaxed) |
			    atomic_load_explicit(&slot[j + 2], memory_order_relaxed) |
			    atomic_load_explicit(&slot[j + 3], memory_order_relaxed))
				break;
#pragma GCC unroll 4
			for (unsigned int k = 0; k < 4; k++)
				atomic_store_explicit(&slot[j + k], (out + k * pgsize) | leaf_bits,
						      memory_order_release);
		}
		for (; j < n; j++, out += pgsize) {
			if (atomic_load_explicit(&slot[j], memory_order_relaxed))
				break;
			atomic_store_explicit(&slot[j], out | leaf_bits, memory_order_release);
		}
		i += j;
		*mapped = i * pgsize;
		if (j < n)
			return -EEXIST;
	}
	return 0;
}

size_t vtd_ss_unmap(struct vtd_ss *ss, uint64_t iova, uint64_t pgsize, size_t pgcount)
{
	unsigned int target = vtd_pgsize_level(pgsize);
	size_t done = 0;

	if (!target || !IS_ALIGNED(iova, pgsize))
		return 0;
	/* As map: one walk per table, then its run of slots, until the first hole. */
	for (size_t i = 0; i < pgcount;) {
		uint64_t at = iova + i * pgsize, pte = 0;
		size_t n = VTD_PTES - vtd_level_index(at, target), j;
		vtd_pte_t *table = (vtd_pte_t *)ss->root, *slot = NULL;

		if (at >> ss->width)
			break;
		for (unsigned int lvl = ss->levels; lvl >= target; lvl--) {
			slot = &table[vtd_level_index(at, lvl)];
			pte = atomic_load_explicit(slot, memory_order_acquire);
			if (!(pte & VTD_SS_PRESENT) || lvl == target)
				break;
			if (vtd_ss_is_leaf(pte, lvl)) {
				pte = 0; /* part of a larger leaf: never split */
				break;
			}
			table = vtd_table_at(pte);
		}
		if (!(pte & VTD_SS_PRESENT))
			break;
		if (n > pgcount - i)
			n = pgcount - i;
		/* 4 KiB leaves, four a step while they are all present; then one at a time. */
		for (j = 0; target == 1 && j + 4 <= n; j += 4) {
			if (!((atomic_load_explicit(&slot[j], memory_order_acquire) & VTD_SS_PRESENT) &&
			      (atomic_load_explicit(&slot[j + 1], memory_order_acquire) & VTD_SS_PRESENT) &&
			      (atomic_load_explicit(&slot[j + 2], memory_order_acquire) & VTD_SS_PRESENT) &&
			      (atomic_load_explicit(&slot[j + 3], memory_order_acquire) & VTD_SS_PRESENT)))
				break;
#pragma GCC unroll 4
			for (unsigned int k = 0; k < 4; k++)
				atomic_store_explicit(&slot[j + k], 0, memory_order_release);
		}
		for (; j < n; j++) {
			pte = atomic_load_explicit(&slot[j], memory_order_acquire);
			if (!(pte & VTD_SS_PRESENT))
				break;
			atomic_store_explicit(&slot[j], 0, memory_order_release);
			if (!vtd_ss_is_leaf(pte, target))
				vtd_tables_free(vtd_table_at(pte), target - 1);
		}
		done += j * pgsize;
		if (j < n)
			break;
		i += n;
	}
	return done;
}

/* Sets @bits in *@slot if it still holds @old (an unmap may have cleared it meanwhile). */
static void vtd_pte_set_bits(vtd_pte_t *slot, uint64_t old, uint64_t bits)
{
	if ((old & bits) != bits)
		atomic_compare_exchange_strong_explicit(slot, &old, old | bits,
							memory_order_relaxed, memory_order_relaxed);
}

int vtd_ss_walk(struct vtd_ss *ss, uint64_t iova, int access, struct vtd_ss_leaf *leaf)
{
	vtd_pte_t *table = (vtd_pte_t *)ss->root, *slots[VTD_MAX_LEVELS];
	uint64_t ptes[VTD_MAX_LEVELS], pte = 0;
	unsigned int n = 0, lvl;
	bool ssade;

	if (iova >> ss->width)
		return -ENOENT;
	for (lvl = ss->levels;; lvl--) {
		slots[n] = &table[vtd_level_index(iova, lvl)];
		pte = atomic_load_explicit(slots[n], memory_order_acquire);
		ptes[n++] = pte;
		if (!(pte & VTD_SS_PRESENT))
			return -ENOENT;
		if (vtd_ss_is_leaf(pte, lvl))
			break;
		table = vtd_table_at(pte);
	}
	leaf->size = vtd_level_size(lvl);
	leaf->phys = (pte & VTD_ADDR_MASK & ~(leaf->size - 1)) | (iova & (leaf->size - 1));
	leaf->prot = ((pte & VTD_SS_R) ? IOMMU_READ : 0) | ((pte & VTD_SS_W) ? IOMMU_WRITE : 0);
	ssade = atomic_load_explicit(&ss->ssade, memory_order_relaxed);
	leaf->clean = ssade && !(pte & VTD_SS_D);
	if ((access & leaf->prot) != access)
		return -EACCES;
	if (!ssade || !access)
		return 0;
	for (unsigned int i = 0; i < n; i++)
		vtd_pte_set_bits(slots[i], ptes[i],
				 VTD_SS_A | ((i == n - 1 && (access & IOMMU_WRITE)) ? VTD_SS_D : 0));
	if (access & IOMMU_WRITE)
		leaf->clean = false;
	return 0;
}

static void vtd_ss_dirty_table(vtd_pte_t *table, unsigned int lvl, uint64_t base, uint64_t first,
			       uint64_t last, bool no_clear, struct iommu_dirty_bitmap *dirty)
{
	uint64_t size = vtd_level_size(lvl);

	for (unsigned int i = vtd_level_index(first, lvl); i < VTD_PTES; i++) {
		uint64_t at = base + (uint64_t)i * size;
		uint64_t pte = atomic_load_explicit(&table[i], memory_order_acquire);

		if (at > last)
			break;
		if (!(pte & VTD_SS_PRESENT))
			continue;
		if (!vtd_ss_is_leaf(pte, lvl)) {
			vtd_ss_dirty_table(vtd_table_at(pte), lvl - 1, at, first > at ? first : at,
					   last, no_clear, dirty);
			continue;
		}
		if (!(pte & VTD_SS_D))
			continue;
		if (!no_clear)
			atomic_fetch_and_explicit(&table[i], ~VTD_SS_D, memory_order_relaxed);
		iommu_dirty_bitmap_record(dirty, at, size);
	}
}

void vtd_ss_read_and_clear_dirty(struct vtd_ss *ss, uint64_t iova, uint64_t size, bool no_clear,
				 struct iommu_dirty_bitmap *dirty)
{
	uint64_t last = iova + size - 1, top = (UINT64_C(1) << ss->width) - 1;

	if (!size || last < iova || iova > top)
		return;
	if (last > top)
		last = top;
	vtd_ss_dirty_table((vtd_pte_t *)ss->root, ss->levels, 0, iova, last, no_clear, dirty);
}

/* ---- the first stage, nested ------------------------------------------------------------------ */

static int vtd_fault(struct vtd_xlate *x, enum vtd_fault_reason reason, uint64_t gpa)
{
	x->reason = reason;
	x->fault_gpa = gpa;
	return -EFAULT;
}

/*
 * The second-stage leaf a walk used last, for its next reads: guest tables and the pages they
 * map often share one large second-stage leaf (hugepage-backed guest RAM), which hardware's
 * walk caches hold as well. It lives for one walk only, so it needs no invalidation. Reads
 * only: a read through it changes nothing the first walk did not (A is set), while a write
 * may have a D bit to set.
 */
struct vtd_ss_last {
	uint64_t base;            /* GPA of the leaf, aligned to its size */
	struct vtd_ss_leaf leaf;  /* .phys: of @base; size 0: empty */
};

/* A second-stage access for the walk: a fault reason, or 0 with @leaf. */
static enum vtd_fault_reason vtd_ss_access(struct vtd_ss *ss, uint64_t gpa, int access,
					   struct vtd_ss_leaf *leaf, struct vtd_ss_last *last)
{
	int rc;

	if (access == IOMMU_READ && last->leaf.size && gpa - last->base < last->leaf.size &&
	    (last->leaf.prot & IOMMU_READ)) {
		*leaf = last->leaf;
		leaf->phys += gpa - last->base;
		return VTD_FAULT_NONE;
	}
	rc = vtd_ss_walk(ss, gpa, access, leaf);
	if (rc == -ENOENT)
		return VTD_SS_NOT_PRESENT;
	if (rc)
		return VTD_SS_PERM;
	last->leaf = *leaf;
	last->base = gpa & ~(leaf->size - 1);
	last->leaf.phys -= gpa - last->base;
	return VTD_FAULT_NONE;
}

/* Is @pte (level @lvl) a leaf, and are its reserved bits clear? */
static enum vtd_fault_reason vtd_fs_check(const struct vtd_s1_cfg *cfg, uint64_t pte,
					  unsigned int lvl, bool *leaf)
{
	uint64_t addr = pte & VTD_ADDR_MASK;

	*leaf = lvl == 1;
	if (cfg->gpa_width < 52 && (addr >> cfg->gpa_width))
		return VTD_FS_RESERVED;
	if (!(pte & VTD_FS_PS) || lvl == 1)
		return VTD_FAULT_NONE; /* in a 4 KiB PTE bit 7 is PAT */
	if (lvl >= 4 || (lvl == 3 && !cfg->fs1gp))
		return VTD_FS_RESERVED;
	/* A large leaf's frame is aligned; bit 12 is its PAT bit. */
	if (addr & (vtd_level_size(lvl) - 1) & ~VTD_PAGE_SIZE)
		return VTD_FS_RESERVED;
	*leaf = true;
	return VTD_FAULT_NONE;
}

int vtd_nested_walk(const struct vtd_s1_cfg *cfg, struct vtd_ss *ss, uint64_t iova,
		    unsigned int req, struct vtd_xlate *x)
{
	bool write = req & VTD_REQ_WRITE, priv = req & VTD_REQ_PRIV, leaf = false;
	unsigned int top = cfg->levels == 5 ? 56 : 47, n = 0, lvl;
	uint64_t table_gpa = cfg->pgtbl_gpa & ~(VTD_PAGE_SIZE - 1);
	uint64_t gpas[VTD_MAX_LEVELS], ptes[VTD_MAX_LEVELS], pte = 0, size;
	vtd_pte_t *slots[VTD_MAX_LEVELS];
	bool rw = true, us = true, xd = false, may_write;
	struct vtd_ss_last last = { 0 };
	enum vtd_fault_reason why;
	struct vtd_ss_leaf sl;

	memset(x, 0, sizeof(*x));
	if ((iova >> top) != 0 && (iova >> top) != (UINT64_MAX >> top))
		return vtd_fault(x, VTD_FS_NON_CANONICAL, 0);
	if (priv && !cfg->sre)
		return vtd_fault(x, VTD_FS_PRIV, 0);

	for (lvl = cfg->levels; lvl >= 1; lvl--) {
		uint64_t gpa = table_gpa + 8u * vtd_level_index(iova, lvl);

		why = vtd_ss_access(ss, gpa, IOMMU_READ, &sl, &last);
		if (why)
			return vtd_fault(x, why, gpa);
		/* Another process's private page (mm.h): not ours to load from. */
		if (uiommu_host_is_window(sl.phys))
			return vtd_fault(x, VTD_SS_NOT_PRESENT, gpa);
		slots[n] = (vtd_pte_t *)(uintptr_t)sl.phys;
		pte = atomic_load_explicit(slots[n], memory_order_acquire);
		if (!(pte & VTD_FS_P))
			return vtd_fault(x, VTD_FS_NOT_PRESENT, 0);
		why = vtd_fs_check(cfg, pte, lvl, &leaf);
		if (why)
			return vtd_fault(x, why, 0);
		gpas[n] = gpa;
		ptes[n++] = pte;
		rw = rw && (pte & VTD_FS_RW);
		us = us && (pte & VTD_FS_US);
		xd = xd || (pte & VTD_FS_XD);
		if (leaf)
			break;
		table_gpa = pte & VTD_ADDR_MASK;
	}

	size = vtd_level_size(lvl);
	may_write = priv ? (!cfg->wpe || rw) : (us && rw);
	if (!priv && !us)
		return vtd_fault(x, VTD_FS_USER, 0);
	if (write && !may_write)
		return vtd_fault(x, VTD_FS_WRITE, 0);
	if ((req & VTD_REQ_EXEC) && xd)
		return vtd_fault(x, VTD_FS_EXEC, 0);

	x->gpa = (pte & VTD_ADDR_MASK & ~(size - 1)) | (iova & (size - 1));
	why = vtd_ss_access(ss, x->gpa, write ? IOMMU_WRITE : IOMMU_READ, &sl, &last);
	if (why)
		return vtd_fault(x, why, x->gpa);
	x->phys = sl.phys;
	x->prot = IOMMU_READ | ((may_write && (sl.prot & IOMMU_WRITE)) ? IOMMU_WRITE : 0);
	x->clean = sl.clean;

	/*
	 * The walk's own writes: A (EA) everywhere, D in the leaf on a write. Each is a write
	 * through stage 2; all are checked before any is made, so a fault changes nothing.
	 */
	uint64_t bits[VTD_MAX_LEVELS];

	for (unsigned int i = 0; i < n; i++) {
		struct vtd_ss_leaf tl;

		bits[i] = VTD_FS_A | (cfg->eafe ? VTD_FS_EA : 0);
		if (i == n - 1 && write)
			bits[i] |= VTD_FS_D;
		if ((ptes[i] & bits[i]) == bits[i])
			continue;
		why = vtd_ss_access(ss, gpas[i], IOMMU_WRITE, &tl, &last);
		if (why)
			return vtd_fault(x, why, gpas[i]);
	}
	for (unsigned int i = 0; i < n; i++)
		vtd_pte_set_bits(slots[i], ptes[i], bits[i]);
	if (!write && !(ptes[n - 1] & VTD_FS_D))
		x->clean = true;
	return 0;
}
