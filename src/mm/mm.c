// SPDX-License-Identifier: MIT
/*
 * The pin ledger and the mm reference count (model in mm.h).
 *
 * The ledger is a tree of chunks, each covering MM_PIN_CHUNK consecutive user pages with one
 * counter per page. Pinning allocates the chunks it lacks before changing any counter, so it is
 * all or nothing; unpinning only decrements and frees chunks that drop to all zeros, so it never
 * allocates and never fails, as a destroy path must not.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "lib/compiler.h"
#include "lib/fail.h"
#include "mm/mm.h"

#define MM_PIN_CHUNK 64

struct mm_pin_chunk {
	struct interval_tree_node node; /* start == last == chunk number; in mm->pinned */
	unsigned int live;              /* counters that are non-zero */
	uint32_t count[MM_PIN_CHUNK];
};

uint64_t uiommu_page_size;
unsigned int uiommu_page_shift;

__attribute__((constructor)) static void mm_page_size_init(void)
{
	long ps = sysconf(_SC_PAGESIZE);

	if (ps <= 0)
		ps = 4096;
	uiommu_page_size = (uint64_t)ps;
	uiommu_page_shift = (unsigned int)__builtin_ctzll(uiommu_page_size);
}

struct uiommu_mm *uiommu_mm_get(struct uiommu_mm *mm)
{
	atomic_fetch_add_explicit(&mm->refs, 1, memory_order_relaxed);
	return mm;
}

void uiommu_mm_put(struct uiommu_mm *mm)
{
	if (atomic_fetch_sub_explicit(&mm->refs, 1, memory_order_acq_rel) != 1)
		return;
	/* Every pin holds a reference on its mm (iopt_pages), so the ledger is empty here. */
	WARN_ON(!interval_tree_empty(&mm->pinned));
	mm->ops->release(mm);
}

static struct mm_pin_chunk *mm_chunk_find(struct uiommu_mm *mm, uint64_t chunk)
{
	struct interval_tree_node *n = interval_tree_iter_first(&mm->pinned, chunk, chunk);

	return n ? container_of(n, struct mm_pin_chunk, node) : NULL;
}

int uiommu_mm_pin(struct uiommu_mm *mm, uint64_t page_index, uint64_t npages, bool write)
{
	uint64_t first_chunk, last_chunk, c, i;
	struct mm_pin_chunk **spare = NULL;
	unsigned long nspare = 0, used = 0;
	int rc;

	if (!npages)
		return 0;
	rc = mm->ops->fault_in(mm, page_index << uiommu_page_shift, npages, write);
	if (rc)
		return rc;

	first_chunk = page_index / MM_PIN_CHUNK;
	last_chunk = (page_index + npages - 1) / MM_PIN_CHUNK;

	uiommu_mutex_lock(&mm->pin_lock);
	for (c = first_chunk; c <= last_chunk; c++)
		if (!mm_chunk_find(mm, c))
			nspare++;
	if (nspare) {
		spare = uiommu_calloc(nspare, sizeof(*spare));
		if (!spare) {
			rc = -ENOMEM;
			goto out_unlock;
		}
		for (i = 0; i < nspare; i++) {
			spare[i] = uiommu_zalloc(sizeof(**spare));
			if (!spare[i]) {
				rc = -ENOMEM;
				goto err_free_spare;
			}
		}
	}

	/* Nothing can fail from here on. */
	for (c = first_chunk; c <= last_chunk; c++) {
		struct mm_pin_chunk *chunk = mm_chunk_find(mm, c);
		uint64_t lo = c * MM_PIN_CHUNK, hi = lo + MM_PIN_CHUNK - 1;
		uint64_t p;

		if (!chunk) {
			chunk = spare[used++];
			chunk->node.start = chunk->node.last = c;
			interval_tree_insert(&mm->pinned, &chunk->node);
		}
		if (lo < page_index)
			lo = page_index;
		if (hi > page_index + npages - 1)
			hi = page_index + npages - 1;
		for (p = lo; p <= hi; p++) {
			if (!chunk->count[p % MM_PIN_CHUNK]++) {
				chunk->live++;
				mm->pinned_pages++;
			}
		}
	}
	rc = 0;
	i = nspare;
err_free_spare:
	/* On success every spare was used; on failure i counts the ones allocated. */
	while (i-- > used)
		uiommu_free(spare[i]);
	uiommu_free(spare);
out_unlock:
	uiommu_mutex_unlock(&mm->pin_lock);
	return rc;
}

void uiommu_mm_unpin(struct uiommu_mm *mm, uint64_t page_index, uint64_t npages)
{
	uint64_t p;
	struct mm_pin_chunk *chunk = NULL;

	uiommu_mutex_lock(&mm->pin_lock);
	for (p = page_index; p < page_index + npages; p++) {
		uint32_t *cnt;

		if (!chunk || chunk->node.start != p / MM_PIN_CHUNK)
			chunk = mm_chunk_find(mm, p / MM_PIN_CHUNK);
		if (WARN_ON(!chunk))
			continue;
		cnt = &chunk->count[p % MM_PIN_CHUNK];
		if (WARN_ON(!*cnt))
			continue;
		if (--*cnt)
			continue;
		mm->pinned_pages--;
		if (--chunk->live)
			continue;
		interval_tree_remove(&mm->pinned, &chunk->node);
		uiommu_free(chunk);
		chunk = NULL;
	}
	uiommu_mutex_unlock(&mm->pin_lock);
}

unsigned int uiommu_mm_pin_count(struct uiommu_mm *mm, uint64_t page_index)
{
	struct mm_pin_chunk *chunk;
	unsigned int cnt = 0;

	uiommu_mutex_lock(&mm->pin_lock);
	chunk = mm_chunk_find(mm, page_index / MM_PIN_CHUNK);
	if (chunk)
		cnt = chunk->count[page_index % MM_PIN_CHUNK];
	uiommu_mutex_unlock(&mm->pin_lock);
	return cnt;
}

uint64_t uiommu_mm_pinned_pages(struct uiommu_mm *mm)
{
	uint64_t n;

	uiommu_mutex_lock(&mm->pin_lock);
	n = mm->pinned_pages;
	uiommu_mutex_unlock(&mm->pin_lock);
	return n;
}
