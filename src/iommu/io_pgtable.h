/* SPDX-License-Identifier: MIT */
/*
 * A multi-level I/O page-table format, the one every paging domain of the mock IOMMU driver
 * uses: x86-64/ARM-LPAE-like, four levels of 512 64-bit entries over a 4 KiB granule, with
 * leaves of 4 KiB (level 3), 2 MiB (level 2) and 1 GiB (level 1). See io_pgtable.c for the
 * design, the entry layout and the concurrency contract.
 *
 * Vocabulary: `iova` is the input address, `paddr`/`phys` the output address (in this userspace
 * model, an address of the emulator's own memory); sizes are in bytes; a "leaf" is an entry that
 * translates, a "table" an entry that points at the next level.
 */
#ifndef UIOMMU_IOMMU_IO_PGTABLE_H
#define UIOMMU_IOMMU_IO_PGTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IO_PGTABLE_SZ_4K (UINT64_C(1) << 12)
#define IO_PGTABLE_SZ_2M (UINT64_C(1) << 21)
#define IO_PGTABLE_SZ_1G (UINT64_C(1) << 30)
#define IO_PGTABLE_PGSIZE_BITMAP (IO_PGTABLE_SZ_4K | IO_PGTABLE_SZ_2M | IO_PGTABLE_SZ_1G)

/* Input address widths the format accepts: 32..39 bits use 3 levels, 40..48 bits 4. */
#define IO_PGTABLE_IAS_MIN 32u
#define IO_PGTABLE_IAS_MAX 48u

/* Permissions a leaf records; the values are IOMMU_READ and IOMMU_WRITE of iommu.h. */
#define IO_PGTABLE_PROT_READ (1 << 0)
#define IO_PGTABLE_PROT_WRITE (1 << 1)

struct io_pgtable;

/* One translation, as the IOTLB model caches it. */
struct io_pgtable_leaf {
	uint64_t iova;  /* first IOVA of the leaf, aligned to @size */
	uint64_t phys;  /* output address of @iova */
	uint64_t size;  /* IO_PGTABLE_SZ_4K, _2M or _1G */
	int prot;       /* IO_PGTABLE_PROT_READ | IO_PGTABLE_PROT_WRITE */
	bool dirty;     /* written through since the dirty bit was last cleared */
};

/**
 * io_pgtable_alloc() - a new, empty page table
 * @ias: input address size in bits, IO_PGTABLE_IAS_MIN..IO_PGTABLE_IAS_MAX (48 usually)
 *
 * Return: the table, or ERR_PTR(-EINVAL) for a bad @ias, ERR_PTR(-ENOMEM).
 */
struct io_pgtable *io_pgtable_alloc(unsigned int ias);

/**
 * io_pgtable_free() - free every table level and the object
 * @pgt: the table, or NULL / an ERR_PTR (nothing to do)
 *
 * No other call on @pgt may be running or start afterwards.
 */
void io_pgtable_free(struct io_pgtable *pgt);

/**
 * io_pgtable_map_pages() - map @pgcount pages of @pgsize at @iova to @paddr
 * @pgsize: one of the sizes in IO_PGTABLE_PGSIZE_BITMAP; @iova and @paddr aligned to it
 * @prot: IOMMU_READ / IOMMU_WRITE (other bits are accepted and not recorded)
 * @mapped: out, the bytes mapped, also on failure: the caller unmaps that partial progress
 *
 * Safe against concurrent map/unmap/walks of disjoint ranges (see the file comment).
 *
 * Return: 0; -EINVAL for a bad size or alignment or @pgcount 0; -ERANGE when the range leaves
 * the input address space; -EEXIST when anything is already mapped in the range (page
 * @mapped / @pgsize is the first one that was not mapped); -ENOMEM.
 */
int io_pgtable_map_pages(struct io_pgtable *pgt, uint64_t iova, uint64_t paddr, size_t pgsize,
			 size_t pgcount, int prot, size_t *mapped);

/**
 * io_pgtable_unmap_pages() - unmap @pgcount pages of @pgsize at @iova
 *
 * Unmaps consecutive entries of exactly @pgsize and stops at the first hole. An entry of
 * @pgsize's level that is a table is removed with everything below it, as a leaf of that size
 * would be. Part of a larger leaf is never unmapped: the walk stops there (mainline's
 * io-pgtable-arm refuses the same way since Linux 6.13; it used to split the leaf).
 *
 * Return: the bytes unmapped from @iova on; 0 for bad arguments.
 */
size_t io_pgtable_unmap_pages(struct io_pgtable *pgt, uint64_t iova, size_t pgsize,
			      size_t pgcount);

/** io_pgtable_iova_to_phys() - software walk; 0 when @iova is not mapped */
uint64_t io_pgtable_iova_to_phys(struct io_pgtable *pgt, uint64_t iova);

/**
 * io_pgtable_walk() - the leaf translating @iova, for an IOTLB fill
 *
 * Return: 0 with *@leaf filled; -ENOENT when unmapped; -ERANGE outside the address space.
 */
int io_pgtable_walk(struct io_pgtable *pgt, uint64_t iova, struct io_pgtable_leaf *leaf);

/**
 * io_pgtable_mark_dirty() - the hardware's side of dirty tracking: a write through @iova
 *
 * Return: 0; -ENOENT when unmapped; -EPERM when the leaf is not writable.
 */
int io_pgtable_mark_dirty(struct io_pgtable *pgt, uint64_t iova);

/**
 * io_pgtable_read_and_clear_dirty() - report the dirty leaves of [@iova, @iova + @size)
 * @clear: also clear their dirty bits (false: IOMMU_DIRTY_NO_CLEAR)
 * @record: called for each dirty leaf, clipped to the range, in IOVA order
 *
 * Return: 0, or -EINVAL for an empty or wrapping range.
 */
int io_pgtable_read_and_clear_dirty(struct io_pgtable *pgt, uint64_t iova, uint64_t size,
				    bool clear,
				    void (*record)(void *arg, uint64_t iova, uint64_t length),
				    void *arg);

/** io_pgtable_ias() - the input address size in bits */
unsigned int io_pgtable_ias(const struct io_pgtable *pgt);

/** io_pgtable_nr_tables() - table levels currently allocated, the root included (tests) */
long io_pgtable_nr_tables(struct io_pgtable *pgt);

#endif
