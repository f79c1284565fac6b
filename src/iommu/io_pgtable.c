// SPDX-License-Identifier: MIT
/*
 * The I/O page table of the mock IOMMU: a radix tree of 512-entry tables.
 *
 * Shape. An input address of up to 48 bits is cut into four 9-bit indexes above a 12-bit page
 * offset, as x86-64 and ARM LPAE (4 KiB granule) do:
 *
 *	level 0: bits 47..39   table entries only (a 512 GiB leaf is not supported)
 *	level 1: bits 38..30   table, or a 1 GiB leaf
 *	level 2: bits 29..21   table, or a 2 MiB leaf
 *	level 3: bits 20..12   4 KiB leaf
 *
 * Narrower address spaces start lower: 32 to 39 bits start at level 1 (three levels), whose root
 * uses only its first 2^(ias - 30) entries. The page sizes are therefore always 4K|2M|1G.
 *
 * Entry layout (64 bits; 0 is "nothing here"):
 *
 *	leaf:  output address (bits 63..12) | DIRTY | WRITE | READ | VALID
 *	table: host pointer of the next level (16-byte aligned)        | TABLE | VALID
 *
 * The output address of a leaf is aligned to the leaf's size, so its low 12 bits are free for
 * the attributes; a table pointer comes from the allocator, aligned to max_align_t, which leaves
 * the 4 bits we need. A leaf with neither READ nor WRITE is legal: it translates, and every
 * access through it faults (the IOTLB model checks the permissions, not us).
 *
 * Concurrency. As in the kernel's io-pgtable formats there is no lock: callers guarantee that
 * map, unmap and dirty calls on overlapping ranges never run at the same time (the IOVA
 * allocator or iommufd's area tree hands out disjoint ranges), and we make concurrent calls on
 * *disjoint* ranges safe, walks included:
 *
 *  - Two disjoint ranges can still share the intermediate tables above them. A missing table is
 *    installed with a compare-and-exchange from 0: when two mappers race to create the same
 *    table, one wins and the other frees its copy and descends into the winner's, so both
 *    leaves end up in one table. The exchange is a release so that the zeroed contents of the
 *    new table are visible to anyone who loads the pointer with acquire.
 *  - Leaves are installed with a compare-and-exchange from 0 as well, so a caller who breaks the
 *    contract and maps over a live entry gets -EEXIST instead of silently replacing it.
 *  - Intermediate tables are freed only when a single call removes everything they cover (an
 *    unmap whose page size is the table entry's span, or a map that puts a large leaf where an
 *    empty table was). Everything under that table belongs to the caller's own range, so no
 *    disjoint caller can be inside it. Walkers of the same range are the caller's business, as
 *    with real hardware where the IOTLB flush comes before the free.
 *  - Dirty bits are the exception to "disjoint ranges": the hardware's side, a device's write
 *    (io_pgtable_mark_dirty()), may hit a leaf while the owner of its range reads and clears it
 *    (io_pgtable_read_and_clear_dirty()). The bit is set with a compare-and-exchange that
 *    never revives an entry cleared meanwhile and cleared with an atomic and, so a bit set
 *    after the read looked at the leaf stays for the next read, and none is lost.
 *  - Tables never shrink otherwise: an unmap of the last 4K page of a table leaves the empty
 *    table in place (freeing it would need a lock against a racing mapper of a neighbouring
 *    page). They go at io_pgtable_free().
 *
 * A failed map returns how much it mapped; the caller unmaps that. Tables it installed on the
 * way stay, empty, for the reason just given: the translations are exactly as before the call.
 *
 * Every table comes from uiommu_zalloc(), so the fault-injection sweep fails each allocation in
 * turn; nothing else in this file can fail.
 */
#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>

#include "iommu/io_pgtable.h"
#include "iommu/iommu.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"

_Static_assert(IO_PGTABLE_PROT_READ == IOMMU_READ, "prot bits follow iommu.h");
_Static_assert(IO_PGTABLE_PROT_WRITE == IOMMU_WRITE, "prot bits follow iommu.h");

#define PTES_PER_TABLE 512u
#define LEVEL_BITS 9u
#define GRANULE_SHIFT 12u
#define LAST_LEVEL 3u

#define PTE_VALID (UINT64_C(1) << 0)
#define PTE_TABLE (UINT64_C(1) << 1)
#define PTE_READ (UINT64_C(1) << 2)
#define PTE_WRITE (UINT64_C(1) << 3)
#define PTE_DIRTY (UINT64_C(1) << 4)
#define PTE_LEAF_ADDR_MASK (~(IO_PGTABLE_SZ_4K - 1))
#define PTE_TABLE_ADDR_MASK (~UINT64_C(0xf))

_Static_assert(alignof(max_align_t) >= 16, "table pointers need 4 free low bits");

struct io_pgtable_table {
	_Atomic uint64_t pte[PTES_PER_TABLE];
};

/*
 * @root, @ias and @start_level are immutable after alloc; the entries are the only shared
 * mutable state and are accessed only through atomics.
 */
struct io_pgtable {
	struct io_pgtable_table *root;
	unsigned int ias;
	unsigned int start_level;
	atomic_long nr_tables; /* statistics for tests */
};

static inline unsigned int level_shift(unsigned int lvl)
{
	return GRANULE_SHIFT + LEVEL_BITS * (LAST_LEVEL - lvl);
}

static inline uint64_t level_size(unsigned int lvl)
{
	return UINT64_C(1) << level_shift(lvl);
}

static inline unsigned int level_index(uint64_t iova, unsigned int lvl)
{
	return (unsigned int)(iova >> level_shift(lvl)) & (PTES_PER_TABLE - 1);
}

static inline bool pte_is_table(uint64_t pte)
{
	return (pte & (PTE_VALID | PTE_TABLE)) == (PTE_VALID | PTE_TABLE);
}

static inline bool pte_is_leaf(uint64_t pte)
{
	return (pte & (PTE_VALID | PTE_TABLE)) == PTE_VALID;
}

static inline struct io_pgtable_table *pte_to_table(uint64_t pte)
{
	return (struct io_pgtable_table *)(uintptr_t)(pte & PTE_TABLE_ADDR_MASK);
}

static inline uint64_t table_to_pte(struct io_pgtable_table *t)
{
	return (uint64_t)(uintptr_t)t | PTE_TABLE | PTE_VALID;
}

static inline int pte_prot(uint64_t pte)
{
	return ((pte & PTE_READ) ? IO_PGTABLE_PROT_READ : 0) |
	       ((pte & PTE_WRITE) ? IO_PGTABLE_PROT_WRITE : 0);
}

static uint64_t leaf_pte(uint64_t paddr, int prot)
{
	uint64_t pte = (paddr & PTE_LEAF_ADDR_MASK) | PTE_VALID;

	if (prot & IO_PGTABLE_PROT_READ)
		pte |= PTE_READ;
	if (prot & IO_PGTABLE_PROT_WRITE)
		pte |= PTE_WRITE;
	return pte;
}

/* The level whose leaves have size @pgsize, or 0 (never a leaf level) when unsupported. */
static unsigned int pgsize_to_level(uint64_t pgsize)
{
	switch (pgsize) {
	case IO_PGTABLE_SZ_4K:
		return 3;
	case IO_PGTABLE_SZ_2M:
		return 2;
	case IO_PGTABLE_SZ_1G:
		return 1;
	default:
		return 0;
	}
}

/*
 * A table is a page-aligned page, as a hardware table is. Not for the hardware's sake here but
 * for the caches': a table from plain malloc() starts 16 bytes into a line, so its first and
 * last entries share lines with whatever the heap put beside it. The DMA API allocates top-down
 * from 4 GiB, whose walk ends in entry 511 of its tables, and a neighbour written by another
 * thread then slowed every walk (bench_dma, issue 13).
 */
static struct io_pgtable_table *table_alloc(struct io_pgtable *pgt)
{
	struct io_pgtable_table *t = uiommu_zalloc_aligned(sizeof(*t), sizeof(*t));

	if (!t)
		return NULL;
	if (WARN_ON((uintptr_t)t & ~PTE_TABLE_ADDR_MASK)) {
		uiommu_free(t);
		return NULL;
	}
	atomic_fetch_add_explicit(&pgt->nr_tables, 1, memory_order_relaxed);
	return t;
}

/* Frees @t, a table of level @lvl, and every table below it. */
static void table_free_tree(struct io_pgtable *pgt, struct io_pgtable_table *t, unsigned int lvl)
{
	unsigned int i;

	if (lvl < LAST_LEVEL) {
		for (i = 0; i < PTES_PER_TABLE; i++) {
			uint64_t pte = atomic_load_explicit(&t->pte[i], memory_order_acquire);

			if (pte_is_table(pte))
				table_free_tree(pgt, pte_to_table(pte), lvl + 1);
		}
	}
	atomic_fetch_sub_explicit(&pgt->nr_tables, 1, memory_order_relaxed);
	uiommu_free(t);
}

/* Does the table @t of level @lvl (and everything below) translate nothing? */
static bool table_is_empty(struct io_pgtable_table *t, unsigned int lvl)
{
	unsigned int i;

	for (i = 0; i < PTES_PER_TABLE; i++) {
		uint64_t pte = atomic_load_explicit(&t->pte[i], memory_order_acquire);

		if (!pte)
			continue;
		if (pte_is_leaf(pte) || lvl == LAST_LEVEL)
			return false;
		if (!table_is_empty(pte_to_table(pte), lvl + 1))
			return false;
	}
	return true;
}

struct io_pgtable *io_pgtable_alloc(unsigned int ias)
{
	struct io_pgtable *pgt;
	unsigned int levels;

	if (ias < IO_PGTABLE_IAS_MIN || ias > IO_PGTABLE_IAS_MAX)
		return ERR_PTR(-EINVAL);
	levels = (ias - GRANULE_SHIFT + LEVEL_BITS - 1) / LEVEL_BITS;

	pgt = uiommu_zalloc(sizeof(*pgt));
	if (!pgt)
		return ERR_PTR(-ENOMEM);
	pgt->ias = ias;
	pgt->start_level = LAST_LEVEL + 1 - levels;
	atomic_init(&pgt->nr_tables, 0);
	pgt->root = table_alloc(pgt);
	if (!pgt->root)
		goto err_free_pgt;
	return pgt;

err_free_pgt:
	uiommu_free(pgt);
	return ERR_PTR(-ENOMEM);
}

void io_pgtable_free(struct io_pgtable *pgt)
{
	if (IS_ERR_OR_NULL(pgt))
		return;
	table_free_tree(pgt, pgt->root, pgt->start_level);
	WARN_ON(atomic_load_explicit(&pgt->nr_tables, memory_order_relaxed) != 0);
	uiommu_free(pgt);
}

unsigned int io_pgtable_ias(const struct io_pgtable *pgt)
{
	return pgt->ias;
}

long io_pgtable_nr_tables(struct io_pgtable *pgt)
{
	return atomic_load_explicit(&pgt->nr_tables, memory_order_relaxed);
}

/* Is [iova, iova + len) a non-empty range inside the input address space? */
static bool range_valid(struct io_pgtable *pgt, uint64_t iova, uint64_t len)
{
	uint64_t last;

	if (!len || check_add_overflow(iova, len - 1, &last))
		return false;
	return (last >> pgt->ias) == 0;
}

/*
 * Descends from the root to the table of level @target holding @iova's entry. With @alloc,
 * missing tables are created (racing creators agree on one, see the file comment).
 *
 * Return: 0 with *@table set; -ENOENT (a missing table, without @alloc); -EEXIST when a leaf
 * of a level above @target covers @iova; -ENOMEM.
 */
static int table_find(struct io_pgtable *pgt, uint64_t iova, unsigned int target, bool alloc,
		      struct io_pgtable_table **table)
{
	struct io_pgtable_table *t = pgt->root;
	unsigned int lvl;

	for (lvl = pgt->start_level; lvl < target; lvl++) {
		_Atomic uint64_t *ptep = &t->pte[level_index(iova, lvl)];
		uint64_t pte = atomic_load_explicit(ptep, memory_order_acquire);

		if (!pte) {
			struct io_pgtable_table *new_table;
			uint64_t expected = 0;

			if (!alloc)
				return -ENOENT;
			new_table = table_alloc(pgt);
			if (!new_table)
				return -ENOMEM;
			pte = table_to_pte(new_table);
			/* Release: the zeroed entries before the pointer that leads to them. */
			if (!atomic_compare_exchange_strong_explicit(ptep, &expected, pte,
								     memory_order_acq_rel,
								     memory_order_acquire)) {
				/* Another mapper installed this table first: use theirs. */
				table_free_tree(pgt, new_table, lvl + 1);
				pte = expected;
			}
		}
		if (!pte_is_table(pte))
			return -EEXIST;
		t = pte_to_table(pte);
	}
	*table = t;
	return 0;
}

/*
 * Installs the leaf @pte at *@ptep, an entry of level @lvl. An empty table there is replaced
 * (and freed): the new leaf covers all of it, so it is part of the caller's range.
 */
static int leaf_install(struct io_pgtable *pgt, _Atomic uint64_t *ptep, unsigned int lvl,
			uint64_t pte)
{
	uint64_t old = 0;

	if (atomic_compare_exchange_strong_explicit(ptep, &old, pte, memory_order_release,
						    memory_order_acquire))
		return 0;
	if (!pte_is_table(old) || lvl == LAST_LEVEL)
		return -EEXIST;
	if (!table_is_empty(pte_to_table(old), lvl + 1))
		return -EEXIST;
	if (!atomic_compare_exchange_strong_explicit(ptep, &old, pte, memory_order_acq_rel,
						     memory_order_acquire))
		return -EEXIST;
	table_free_tree(pgt, pte_to_table(old), lvl + 1);
	return 0;
}

int io_pgtable_map_pages(struct io_pgtable *pgt, uint64_t iova, uint64_t paddr, size_t pgsize,
			 size_t pgcount, int prot, size_t *mapped)
{
	unsigned int lvl = pgsize_to_level(pgsize);
	uint64_t size, paddr_last;
	size_t done = 0;
	int rc = 0;

	*mapped = 0;
	if (!lvl || lvl < pgt->start_level || !pgcount)
		return -EINVAL;
	if (!IS_ALIGNED(iova, pgsize) || !IS_ALIGNED(paddr, pgsize))
		return -EINVAL;
	if (check_mul_overflow((uint64_t)pgsize, (uint64_t)pgcount, &size) ||
	    !range_valid(pgt, iova, size) || check_add_overflow(paddr, size - 1, &paddr_last))
		return -ERANGE;

	/* One descent per table: the entries of a table are consecutive IOVAs. */
	while (done < pgcount) {
		struct io_pgtable_table *t;
		unsigned int idx, n;

		rc = table_find(pgt, iova, lvl, true, &t);
		if (rc)
			break;
		idx = level_index(iova, lvl);
		n = PTES_PER_TABLE - idx;
		if (n > pgcount - done)
			n = (unsigned int)(pgcount - done);
		for (; n; n--, idx++, done++, iova += pgsize, paddr += pgsize) {
			rc = leaf_install(pgt, &t->pte[idx], lvl, leaf_pte(paddr, prot));
			if (rc)
				goto out;
		}
	}
out:
	*mapped = done * pgsize;
	return rc;
}

size_t io_pgtable_unmap_pages(struct io_pgtable *pgt, uint64_t iova, size_t pgsize,
			      size_t pgcount)
{
	unsigned int lvl = pgsize_to_level(pgsize);
	size_t done = 0;
	uint64_t size;

	if (!lvl || lvl < pgt->start_level || !pgcount || !IS_ALIGNED(iova, pgsize))
		return 0;
	if (check_mul_overflow((uint64_t)pgsize, (uint64_t)pgcount, &size) ||
	    !range_valid(pgt, iova, size))
		return 0;

	while (done < pgcount) {
		struct io_pgtable_table *t;
		unsigned int idx, n;

		/* -ENOENT: nothing mapped here; -EEXIST: inside a larger leaf. Stop either way. */
		if (table_find(pgt, iova, lvl, false, &t))
			break;
		idx = level_index(iova, lvl);
		n = PTES_PER_TABLE - idx;
		if (n > pgcount - done)
			n = (unsigned int)(pgcount - done);
		for (; n; n--, idx++, done++, iova += pgsize) {
			uint64_t old = atomic_exchange_explicit(&t->pte[idx], 0,
								memory_order_acq_rel);

			if (!old)
				goto out;
			if (pte_is_table(old))
				table_free_tree(pgt, pte_to_table(old), lvl + 1);
		}
	}
out:
	return done * pgsize;
}

/*
 * The leaf entry translating @iova: returns its slot and sets *@lvl to its level, or returns
 * NULL and sets *@lvl to the level at which the walk found nothing (everything in that entry's
 * span is unmapped).
 */
static _Atomic uint64_t *leaf_lookup(struct io_pgtable *pgt, uint64_t iova, unsigned int *lvl,
				     uint64_t *pte_out)
{
	struct io_pgtable_table *t = pgt->root;
	unsigned int l;

	/* Every caller uses *lvl, also when nothing is mapped: start from the top level. */
	*lvl = pgt->start_level;
	for (l = pgt->start_level; l <= LAST_LEVEL; l++) {
		_Atomic uint64_t *ptep = &t->pte[level_index(iova, l)];
		uint64_t pte = atomic_load_explicit(ptep, memory_order_acquire);

		*lvl = l;
		if (pte_is_leaf(pte)) {
			*pte_out = pte;
			return ptep;
		}
		if (!pte_is_table(pte) || l == LAST_LEVEL)
			return NULL;
		t = pte_to_table(pte);
	}
	return NULL;
}

uint64_t io_pgtable_iova_to_phys(struct io_pgtable *pgt, uint64_t iova)
{
	unsigned int lvl;
	uint64_t pte;

	if (!range_valid(pgt, iova, 1) || !leaf_lookup(pgt, iova, &lvl, &pte))
		return 0;
	return (pte & PTE_LEAF_ADDR_MASK) + (iova & (level_size(lvl) - 1));
}

int io_pgtable_walk(struct io_pgtable *pgt, uint64_t iova, struct io_pgtable_leaf *leaf)
{
	unsigned int lvl;
	uint64_t pte;

	if (!range_valid(pgt, iova, 1))
		return -ERANGE;
	if (!leaf_lookup(pgt, iova, &lvl, &pte))
		return -ENOENT;
	leaf->size = level_size(lvl);
	leaf->iova = ALIGN_DOWN(iova, leaf->size);
	leaf->phys = pte & PTE_LEAF_ADDR_MASK;
	leaf->prot = pte_prot(pte);
	leaf->dirty = pte & PTE_DIRTY;
	return 0;
}

int io_pgtable_mark_dirty(struct io_pgtable *pgt, uint64_t iova)
{
	_Atomic uint64_t *ptep;
	unsigned int lvl;
	uint64_t pte;

	if (!range_valid(pgt, iova, 1))
		return -ENOENT;
	ptep = leaf_lookup(pgt, iova, &lvl, &pte);
	if (!ptep)
		return -ENOENT;
	/*
	 * A loop rather than fetch_or: an entry cleared meanwhile (by the owner of the range,
	 * breaking the contract) must stay 0, not become a stray DIRTY bit.
	 */
	while (!(pte & PTE_DIRTY)) {
		if (!pte_is_leaf(pte))
			return -ENOENT;
		if (!(pte & PTE_WRITE))
			return -EPERM;
		if (atomic_compare_exchange_weak_explicit(ptep, &pte, pte | PTE_DIRTY,
							  memory_order_relaxed,
							  memory_order_relaxed))
			break;
	}
	return 0;
}

int io_pgtable_read_and_clear_dirty(struct io_pgtable *pgt, uint64_t iova, uint64_t size,
				    bool clear,
				    void (*record)(void *arg, uint64_t iova, uint64_t length),
				    void *arg)
{
	uint64_t last, cur = iova;

	if (!range_valid(pgt, iova, size))
		return -EINVAL;
	last = iova + size - 1;

	for (;;) {
		_Atomic uint64_t *ptep;
		unsigned int lvl;
		uint64_t pte, span_last;

		ptep = leaf_lookup(pgt, cur, &lvl, &pte);
		span_last = ALIGN_DOWN(cur, level_size(lvl)) + level_size(lvl) - 1;
		if (ptep && (pte & PTE_DIRTY)) {
			if (clear)
				atomic_fetch_and_explicit(ptep, ~PTE_DIRTY, memory_order_relaxed);
			if (record)
				record(arg, cur, (span_last < last ? span_last : last) - cur + 1);
		}
		if (span_last >= last)
			break;
		cur = span_last + 1;
	}
	return 0;
}
