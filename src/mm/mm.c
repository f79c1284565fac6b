// SPDX-License-Identifier: MIT
/*
 * The pin ledger and the mm reference count (model in mm.h).
 *
 * The ledger is a tree of chunks, each covering MM_PIN_CHUNK consecutive user pages with one
 * counter per page. Pinning allocates the chunks it lacks before changing any counter, so it is
 * all or nothing; unpinning only decrements and frees chunks that drop to all zeros, so it never
 * allocates and never fails, as a destroy path must not.
 *
 * File pages (MAP_FILE) have no user address; they are counted in a ledger of the same kind per
 * file, indexed by page of the file, so that a check of a user address that shows a file page
 * (the caller's own mmap of the file) sees the pins of that page.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "lib/compiler.h"
#include "lib/err.h"
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

static struct mm_pin_chunk *ledger_chunk_find(struct interval_tree_root *tree, uint64_t chunk)
{
	struct interval_tree_node *n = interval_tree_iter_first(tree, chunk, chunk);

	return n ? container_of(n, struct mm_pin_chunk, node) : NULL;
}

/*
 * Adds one to the count of each page of [page_index, page_index + npages) in the ledger @tree
 * (whose lock the caller holds), counting in *@pinned_pages the pages that become pinned.
 * Allocates the missing chunks first: all or nothing, -ENOMEM.
 */
static int ledger_pin(struct interval_tree_root *tree, uint64_t *pinned_pages,
		      uint64_t page_index, uint64_t npages)
{
	uint64_t first_chunk, last_chunk, c, i;
	struct mm_pin_chunk **spare = NULL;
	unsigned long nspare = 0, used = 0;
	int rc;

	first_chunk = page_index / MM_PIN_CHUNK;
	last_chunk = (page_index + npages - 1) / MM_PIN_CHUNK;

	for (c = first_chunk; c <= last_chunk; c++)
		if (!ledger_chunk_find(tree, c))
			nspare++;
	if (nspare) {
		spare = uiommu_calloc(nspare, sizeof(*spare));
		if (!spare)
			return -ENOMEM;
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
		struct mm_pin_chunk *chunk = ledger_chunk_find(tree, c);
		uint64_t lo = c * MM_PIN_CHUNK, hi = lo + MM_PIN_CHUNK - 1;
		uint64_t p;

		if (!chunk) {
			chunk = spare[used++];
			chunk->node.start = chunk->node.last = c;
			interval_tree_insert(tree, &chunk->node);
		}
		if (lo < page_index)
			lo = page_index;
		if (hi > page_index + npages - 1)
			hi = page_index + npages - 1;
		for (p = lo; p <= hi; p++) {
			if (!chunk->count[p % MM_PIN_CHUNK]++) {
				chunk->live++;
				(*pinned_pages)++;
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
	return rc;
}

/* The reverse of ledger_pin(); never fails, frees the chunks that empty. */
static void ledger_unpin(struct interval_tree_root *tree, uint64_t *pinned_pages,
			 uint64_t page_index, uint64_t npages)
{
	struct mm_pin_chunk *chunk = NULL;
	uint64_t p;

	for (p = page_index; p < page_index + npages; p++) {
		uint32_t *cnt;

		if (!chunk || chunk->node.start != p / MM_PIN_CHUNK)
			chunk = ledger_chunk_find(tree, p / MM_PIN_CHUNK);
		if (WARN_ON(!chunk))
			continue;
		cnt = &chunk->count[p % MM_PIN_CHUNK];
		if (WARN_ON(!*cnt))
			continue;
		if (--*cnt)
			continue;
		(*pinned_pages)--;
		if (--chunk->live)
			continue;
		interval_tree_remove(tree, &chunk->node);
		uiommu_free(chunk);
		chunk = NULL;
	}
}

static unsigned int ledger_count(struct interval_tree_root *tree, uint64_t page_index)
{
	struct mm_pin_chunk *chunk = ledger_chunk_find(tree, page_index / MM_PIN_CHUNK);

	return chunk ? chunk->count[page_index % MM_PIN_CHUNK] : 0;
}

int uiommu_mm_ledger_pin(struct uiommu_mm *mm, uint64_t page_index, uint64_t npages)
{
	int rc;

	uiommu_mutex_lock(&mm->pin_lock);
	rc = ledger_pin(&mm->pinned, &mm->pinned_pages, page_index, npages);
	uiommu_mutex_unlock(&mm->pin_lock);
	return rc;
}

void uiommu_mm_ledger_unpin(struct uiommu_mm *mm, uint64_t page_index, uint64_t npages)
{
	uiommu_mutex_lock(&mm->pin_lock);
	ledger_unpin(&mm->pinned, &mm->pinned_pages, page_index, npages);
	uiommu_mutex_unlock(&mm->pin_lock);
}

int uiommu_mm_pin(struct uiommu_mm *mm, uint64_t page_index, uint64_t npages, bool write)
{
	int rc;

	if (!npages)
		return 0;
	if (mm->ops->pin)
		return mm->ops->pin(mm, page_index, npages, write);
	rc = mm->ops->fault_in(mm, page_index << uiommu_page_shift, npages, write);
	if (rc)
		return rc;
	return uiommu_mm_ledger_pin(mm, page_index, npages);
}

void uiommu_mm_unpin(struct uiommu_mm *mm, uint64_t page_index, uint64_t npages)
{
	if (mm->ops->unpin)
		mm->ops->unpin(mm, page_index, npages);
	else
		uiommu_mm_ledger_unpin(mm, page_index, npages);
}

unsigned int uiommu_mm_pin_count(struct uiommu_mm *mm, uint64_t page_index)
{
	unsigned int cnt;

	uiommu_mutex_lock(&mm->pin_lock);
	cnt = ledger_count(&mm->pinned, page_index);
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

/* ---- file pages ---------------------------------------------------------------------------- */

/*
 * One ledger per file (device, inode) with pinned pages, indexed by page of the file; made at
 * the first uiommu_file_pins_get() and freed at the last put. The list is process-wide: a
 * file's pages are the same pages whichever mm maps them.
 */
struct uiommu_file_pins {
	struct uiommu_file_pins *next; /* in file_pins_list; under file_pins_lock */
	uint64_t dev, ino;             /* constant */
	unsigned int refs;             /* under file_pins_lock */
	struct uiommu_mutex lock;      /* protects pinned, pinned_pages; a leaf */
	struct interval_tree_root pinned;
	uint64_t pinned_pages;
};

/* Protects file_pins_list and each entry's next and refs; only the ledger locks nest inside. */
UIOMMU_MUTEX_DEFINE(file_pins_lock);
static struct uiommu_file_pins *file_pins_list;

/**
 * uiommu_file_pins_get() - the pin ledger of file (@dev, @ino), with a reference
 * Return: it (uiommu_file_pins_put()), or ERR_PTR(-ENOMEM).
 */
struct uiommu_file_pins *uiommu_file_pins_get(uint64_t dev, uint64_t ino)
{
	struct uiommu_file_pins *fp;

	uiommu_mutex_lock(&file_pins_lock);
	for (fp = file_pins_list; fp; fp = fp->next)
		if (fp->dev == dev && fp->ino == ino)
			break;
	if (fp) {
		fp->refs++;
		goto out_unlock;
	}
	fp = uiommu_zalloc(sizeof(*fp));
	if (!fp) {
		fp = ERR_PTR(-ENOMEM);
		goto out_unlock;
	}
	fp->dev = dev;
	fp->ino = ino;
	fp->refs = 1;
	uiommu_mutex_init(&fp->lock);
	interval_tree_init(&fp->pinned);
	fp->next = file_pins_list;
	file_pins_list = fp;
out_unlock:
	uiommu_mutex_unlock(&file_pins_lock);
	return fp;
}

void uiommu_file_pins_put(struct uiommu_file_pins *fp)
{
	struct uiommu_file_pins **pos;

	uiommu_mutex_lock(&file_pins_lock);
	if (--fp->refs) {
		uiommu_mutex_unlock(&file_pins_lock);
		return;
	}
	for (pos = &file_pins_list; *pos != fp; pos = &(*pos)->next)
		;
	*pos = fp->next;
	uiommu_mutex_unlock(&file_pins_lock);
	/* Every pin holder holds a reference: the ledger is empty. */
	WARN_ON(!interval_tree_empty(&fp->pinned));
	uiommu_mutex_destroy(&fp->lock);
	uiommu_free(fp);
}

/* Pins file pages [page_index, page_index + npages): all or nothing, -ENOMEM. */
int uiommu_file_pin(struct uiommu_file_pins *fp, uint64_t page_index, uint64_t npages)
{
	int rc;

	if (!npages)
		return 0;
	uiommu_mutex_lock(&fp->lock);
	rc = ledger_pin(&fp->pinned, &fp->pinned_pages, page_index, npages);
	uiommu_mutex_unlock(&fp->lock);
	return rc;
}

void uiommu_file_unpin(struct uiommu_file_pins *fp, uint64_t page_index, uint64_t npages)
{
	uiommu_mutex_lock(&fp->lock);
	ledger_unpin(&fp->pinned, &fp->pinned_pages, page_index, npages);
	uiommu_mutex_unlock(&fp->lock);
}

/* The pin count of page @page_index of file (@dev, @ino): 0 when nothing of it is pinned. */
unsigned int uiommu_file_pin_count(uint64_t dev, uint64_t ino, uint64_t page_index)
{
	struct uiommu_file_pins *fp;
	unsigned int cnt = 0;

	uiommu_mutex_lock(&file_pins_lock);
	for (fp = file_pins_list; fp; fp = fp->next) {
		if (fp->dev != dev || fp->ino != ino)
			continue;
		uiommu_mutex_lock(&fp->lock);
		cnt = ledger_count(&fp->pinned, page_index);
		uiommu_mutex_unlock(&fp->lock);
		break;
	}
	uiommu_mutex_unlock(&file_pins_lock);
	return cnt;
}

/* Whether any file has a ledger: checks skip reading the mappings when none does. */
bool uiommu_file_pins_any(void)
{
	bool any;

	uiommu_mutex_lock(&file_pins_lock);
	any = file_pins_list != NULL;
	uiommu_mutex_unlock(&file_pins_lock);
	return any;
}
