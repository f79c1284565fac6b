// SPDX-License-Identifier: MIT
/*
 * The IO page table engine (data model and lock order in io_pagetable.h).
 *
 * Every operation that changes the table checks everything that can fail and allocates
 * everything it needs before it changes anything: a failed call leaves the table exactly as it
 * was. Unmapping a range that cuts through an area fails with ENOENT and unmaps nothing (the
 * kernel unmaps the whole areas it met before the cut one; we check first).
 *
 * Automatic IOVA follows the kernel's choice: the lowest IOVA, inside the allowed ranges (or
 * [PAGE_SIZE, U64_MAX - PAGE_SIZE] when there are none) and outside reserved ranges and areas,
 * that is aligned to the smaller of the length rounded up to a power of two and the alignment
 * of the user address, keeping the user address's offset within its page.
 */
#include <errno.h>
#include <string.h>

#include "iommufd/io_pagetable.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"

void iopt_init_table(struct io_pagetable *iopt)
{
	memset(iopt, 0, sizeof(*iopt));
	uiommu_rwsem_init(&iopt->iova_rwsem);
	interval_tree_init(&iopt->area_itree);
	interval_tree_init(&iopt->reserved_itree);
	interval_tree_init(&iopt->allowed_itree);
	interval_tree_init(&iopt->holes);
	iopt->tail_hole.start = 0;
	iopt->tail_hole.last = UINT64_MAX;
	interval_tree_insert(&iopt->holes, &iopt->tail_hole);
	iopt->tail_hole_in_tree = true;
	iopt->iova_alignment = 1;
}

static struct iopt_area *iopt_area_next(struct iopt_area *area)
{
	return iopt_area_from_node(interval_tree_next(&area->node));
}

static struct iopt_area *iopt_area_prev(struct iopt_area *area)
{
	return iopt_area_from_node(interval_tree_prev(&area->node));
}

static void iopt_hole_set(struct io_pagetable *iopt, struct interval_tree_node *hole,
			  bool *in_tree, bool exists, uint64_t start, uint64_t last)
{
	/*
	 * A gap that only grows or shrinks keeps its place among the others (gaps are disjoint
	 * and in IOVA order), so its node can be updated where it is.
	 */
	if (*in_tree && exists) {
		hole->start = start;
		hole->last = last;
		interval_tree_changed_in_place(hole);
		return;
	}
	if (*in_tree)
		interval_tree_remove(&iopt->holes, hole);
	*in_tree = exists;
	if (!exists)
		return;
	hole->start = start;
	hole->last = last;
	interval_tree_insert(&iopt->holes, hole);
}

/* Recomputes the gap that ends at @area, or the tail gap when @area is NULL. */
static void iopt_hole_update(struct io_pagetable *iopt, struct iopt_area *area)
{
	struct iopt_area *prev;
	uint64_t start;

	lockdep_assert_rwsem_held_write(&iopt->iova_rwsem);
	if (area) {
		prev = iopt_area_prev(area);
		start = prev ? prev->node.last + 1 : 0;
		iopt_hole_set(iopt, &area->hole, &area->hole_in_tree, start < area->node.start,
			      start, area->node.start - 1);
		return;
	}
	prev = iopt_area_from_node(interval_tree_last_node(&iopt->area_itree));
	start = prev ? prev->node.last + 1 : 0;
	iopt_hole_set(iopt, &iopt->tail_hole, &iopt->tail_hole_in_tree,
		      !prev || prev->node.last != UINT64_MAX, start, UINT64_MAX);
}

static void iopt_area_insert(struct io_pagetable *iopt, struct iopt_area *area)
{
	lockdep_assert_rwsem_held_write(&iopt->iova_rwsem);
	interval_tree_insert(&iopt->area_itree, &area->node);
	iopt_hole_update(iopt, area);
	iopt_hole_update(iopt, iopt_area_next(area));
}

static void iopt_area_remove(struct io_pagetable *iopt, struct iopt_area *area)
{
	struct iopt_area *next = iopt_area_next(area);

	lockdep_assert_rwsem_held_write(&iopt->iova_rwsem);
	interval_tree_remove(&iopt->area_itree, &area->node);
	if (area->hole_in_tree)
		interval_tree_remove(&iopt->holes, &area->hole);
	area->hole_in_tree = false;
	iopt_hole_update(iopt, next);
}

static struct iopt_area *iopt_area_alloc(void)
{
	return uiommu_zalloc(sizeof(struct iopt_area));
}

static void iopt_area_free(struct iopt_area *area)
{
	if (area->pages)
		iopt_pages_put(area->pages);
	uiommu_free(area);
}

void iopt_destroy_table(struct io_pagetable *iopt)
{
	struct interval_tree_node *n;

	uiommu_down_write(&iopt->iova_rwsem);
	while ((n = interval_tree_first(&iopt->area_itree))) {
		struct iopt_area *area = iopt_area_from_node(n);

		iopt_area_remove(iopt, area);
		iopt_area_free(area);
	}
	while ((n = interval_tree_first(&iopt->reserved_itree))) {
		interval_tree_remove(&iopt->reserved_itree, n);
		uiommu_free(container_of(n, struct iopt_reserved, node));
	}
	while ((n = interval_tree_first(&iopt->allowed_itree))) {
		interval_tree_remove(&iopt->allowed_itree, n);
		uiommu_free(container_of(n, struct iopt_allowed, node));
	}
	uiommu_up_write(&iopt->iova_rwsem);
	uiommu_rwsem_destroy(&iopt->iova_rwsem);
}

/* ---- automatic IOVA ---------------------------------------------------------------------- */

#define IOPT_MAX_ALLOC_ALIGNMENT ((uint64_t)2 << 20)

struct iopt_alloc_req {
	struct io_pagetable *iopt;
	uint64_t length;
	uint64_t alignment;
	uint64_t page_offset;
	uint64_t iova; /* the answer */
};

/* Can [start, last] hold the request? Sets req->iova when it can. */
static bool iopt_alloc_check_range(struct iopt_alloc_req *req, uint64_t start, uint64_t last)
{
	uint64_t aligned;

	if (check_add_overflow(start, req->alignment - 1, &aligned))
		return false;
	aligned &= ~(req->alignment - 1);
	aligned |= req->page_offset;
	if (aligned >= last || last - aligned < req->length - 1)
		return false;
	req->iova = aligned;
	return true;
}

static int iopt_alloc_unreserved_span(void *arg, bool is_hole, uint64_t start, uint64_t last)
{
	return is_hole && iopt_alloc_check_range(arg, start, last);
}

/* A usable run: look for room in it between reserved ranges. */
static int iopt_alloc_usable_span(void *arg, bool is_hole, uint64_t start, uint64_t last)
{
	struct iopt_alloc_req *req = arg;

	if (is_hole)
		return 0;
	return interval_tree_for_each_span(&req->iopt->reserved_itree, start, last,
					   iopt_alloc_unreserved_span, req);
}

/* Does the gap between two areas have room inside the allowed, unreserved IOVA? */
static bool iopt_alloc_hole_fits(const struct interval_tree_node *hole, void *arg)
{
	struct iopt_alloc_req *req = arg;
	struct io_pagetable *iopt = req->iopt;
	uint64_t start = hole->start, last = hole->last;

	if (interval_tree_empty(&iopt->allowed_itree)) {
		if (start < uiommu_page_size)
			start = uiommu_page_size;
		if (last > UINT64_MAX - uiommu_page_size)
			last = UINT64_MAX - uiommu_page_size;
		if (start > last)
			return false;
		return iopt_alloc_usable_span(req, false, start, last);
	}
	return interval_tree_for_each_span(&iopt->allowed_itree, start, last,
					   iopt_alloc_usable_span, req);
}

/**
 * iopt_alloc_iova() - choose an IOVA for @length bytes whose source starts at @addr
 * Caller holds iova_rwsem for write.
 * Return: 0 with *@iova set, -EOVERFLOW for an absurd length, -EINVAL when the natural
 * alignment is below the table's, -ENOSPC when nothing fits.
 */
static int iopt_alloc_iova(struct io_pagetable *iopt, uint64_t *iova, uint64_t addr,
			   uint64_t length)
{
	struct iopt_alloc_req req = { .iopt = iopt, .length = length };

	lockdep_assert_rwsem_held_write(&iopt->iova_rwsem);
	if (length == 0 || length >= UINT64_MAX / 2)
		return -EOVERFLOW;
	req.page_offset = addr % uiommu_page_size;
	/* Keep the alignment the source already has: it lets later layers use large pages. */
	req.alignment = roundup_pow_of_two(length);
	if (addr && uiommu_ffs64_bit(addr) < req.alignment)
		req.alignment = uiommu_ffs64_bit(addr);
	/* No gain in aligning past the largest page a CPU mapping can use (a THP). */
	if (req.alignment > IOPT_MAX_ALLOC_ALIGNMENT)
		req.alignment = IOPT_MAX_ALLOC_ALIGNMENT;
	if (req.alignment < iopt->iova_alignment)
		return -EINVAL;
	if (!interval_tree_find_fit(&iopt->holes, length - 1, iopt_alloc_hole_fits, &req))
		return -ENOSPC;
	*iova = req.iova;
	return 0;
}

/**
 * iopt_check_iova() - may [iova, iova + length) be mapped at a fixed address?
 * Caller holds iova_rwsem for write.
 */
static int iopt_check_iova(struct io_pagetable *iopt, uint64_t iova, uint64_t length)
{
	uint64_t last;

	lockdep_assert_rwsem_held_write(&iopt->iova_rwsem);
	if (iova & (iopt->iova_alignment - 1))
		return -EINVAL;
	if (check_add_overflow(iova, length - 1, &last))
		return -EOVERFLOW;
	if (interval_tree_iter_first(&iopt->reserved_itree, iova, last))
		return -EINVAL;
	if (interval_tree_iter_first(&iopt->area_itree, iova, last))
		return -EEXIST;
	return 0;
}

/* ---- map, copy ---------------------------------------------------------------------------- */

/* One piece of a mapping request: bytes [start_byte, start_byte + length) of @pages. */
struct iopt_pages_elm {
	struct iopt_pages *pages; /* a reference, moved into the area on success */
	uint64_t start_byte;
	uint64_t length;
	struct iopt_area *area;   /* preallocated */
};

static uint64_t iopt_pages_source_addr(const struct iopt_pages *pages, uint64_t start_byte)
{
	if (pages->type == IOPT_ADDRESS_USER)
		return pages->uptr + start_byte;
	return pages->file_start + start_byte;
}

/*
 * Maps @num contiguous pieces at *@iova (chosen here with IOPT_ALLOC_IOVA). On success the
 * pages references move into the new areas; on failure the caller still owns them.
 */
static int iopt_map_pages(struct io_pagetable *iopt, struct iopt_pages_elm *elms, unsigned int num,
			  uint64_t length, uint64_t *iova, int iommu_prot, unsigned int flags)
{
	unsigned int i, made = 0;
	uint64_t cur;
	int rc;

	for (i = 0; i != num; i++) {
		elms[i].area = iopt_area_alloc();
		if (!elms[i].area) {
			rc = -ENOMEM;
			goto err_free_areas;
		}
		made++;
	}

	uiommu_down_write(&iopt->iova_rwsem);
	if (!length || (length & (iopt->iova_alignment - 1))) {
		rc = -EINVAL;
		goto err_unlock;
	}
	if (flags & IOPT_ALLOC_IOVA)
		rc = iopt_alloc_iova(iopt, iova,
				     iopt_pages_source_addr(elms[0].pages, elms[0].start_byte),
				     length);
	else
		rc = iopt_check_iova(iopt, *iova, length);
	if (rc)
		goto err_unlock;
	for (i = 0; i != num; i++) {
		uint64_t page_offset = elms[i].start_byte % uiommu_page_size;

		if ((iommu_prot & IOMMU_WRITE) && !elms[i].pages->writable) {
			rc = -EPERM;
			goto err_unlock;
		}
		if (page_offset & (iopt->iova_alignment - 1)) {
			rc = -EINVAL;
			goto err_unlock;
		}
	}

	/* Nothing can fail from here on. */
	cur = *iova;
	for (i = 0; i != num; i++) {
		struct iopt_area *area = elms[i].area;

		area->node.start = cur;
		area->node.last = cur + elms[i].length - 1;
		area->pages = elms[i].pages;
		area->pages_byte = elms[i].start_byte;
		area->iommu_prot = iommu_prot;
		iopt_area_insert(iopt, area);
		elms[i].pages = NULL;
		elms[i].area = NULL;
		cur += elms[i].length;
	}
	uiommu_up_write(&iopt->iova_rwsem);
	return 0;

err_unlock:
	uiommu_up_write(&iopt->iova_rwsem);
err_free_areas:
	for (i = 0; i != made; i++) {
		uiommu_free(elms[i].area);
		elms[i].area = NULL;
	}
	return rc;
}

/* Maps all of freshly made @pages (its reference moves into the area on success). */
static int iopt_map_new_pages(struct io_pagetable *iopt, struct iopt_pages *pages,
			      uint64_t *iova, int iommu_prot, unsigned int flags)
{
	struct iopt_pages_elm elm = {
		.pages = pages,
		.start_byte = pages->start_byte,
		.length = pages->length,
	};
	int rc;

	rc = iopt_map_pages(iopt, &elm, 1, pages->length, iova, iommu_prot, flags);
	if (rc)
		iopt_pages_put(pages);
	return rc;
}

/**
 * iopt_map_user_pages() - map @length bytes of @mm at @uptr
 * Pinning is lazy: nothing reads the memory here.
 */
int iopt_map_user_pages(struct io_pagetable *iopt, struct uiommu_mm *mm, uint64_t *iova,
			uint64_t uptr, uint64_t length, int iommu_prot, unsigned int flags)
{
	struct iopt_pages *pages = iopt_alloc_user_pages(mm, uptr, length, iommu_prot & IOMMU_WRITE);

	if (IS_ERR(pages))
		return PTR_ERR(pages);
	return iopt_map_new_pages(iopt, pages, iova, iommu_prot, flags);
}

/* iopt_map_file_pages() - map @length bytes of the file @fd from byte @start */
int iopt_map_file_pages(struct io_pagetable *iopt, struct uiommu_mm *mm, uint64_t *iova,
			int fd, uint64_t start, uint64_t length, int iommu_prot,
			unsigned int flags)
{
	struct iopt_pages *pages =
		iopt_alloc_file_pages(mm, fd, start, length, iommu_prot & IOMMU_WRITE);

	if (IS_ERR(pages))
		return PTR_ERR(pages);
	return iopt_map_new_pages(iopt, pages, iova, iommu_prot, flags);
}

static void iopt_elms_put(struct iopt_pages_elm *elms, unsigned int num)
{
	unsigned int i;

	for (i = 0; i != num; i++)
		if (elms[i].pages)
			iopt_pages_put(elms[i].pages);
	uiommu_free(elms);
}

/*
 * Collects the pages behind [iova, iova + length) of @iopt, which must be mapped without a gap.
 * Each piece holds its own pages reference.
 */
static int iopt_get_pages(struct io_pagetable *iopt, uint64_t iova, uint64_t length,
			  struct iopt_pages_elm **out, unsigned int *out_num)
{
	struct interval_tree_node *n;
	struct iopt_pages_elm *elms;
	unsigned int num = 0, i = 0;
	uint64_t last, expect = iova;
	int rc = 0;

	if (!length)
		return -EINVAL;
	if (check_add_overflow(iova, length - 1, &last))
		return -EOVERFLOW;

	uiommu_down_read(&iopt->iova_rwsem);
	interval_tree_for_each(n, &iopt->area_itree, iova, last) {
		if (n->start > expect) {
			rc = -ENOENT;
			goto out_unlock;
		}
		num++;
		if (n->last >= last)
			break;
		expect = n->last + 1;
	}
	if (!num || (expect <= last && !n)) {
		rc = -ENOENT;
		goto out_unlock;
	}
	elms = uiommu_calloc(num, sizeof(*elms));
	if (!elms) {
		rc = -ENOMEM;
		goto out_unlock;
	}
	interval_tree_for_each(n, &iopt->area_itree, iova, last) {
		struct iopt_area *area = iopt_area_from_node(n);
		uint64_t first = n->start > iova ? n->start : iova;
		uint64_t end = n->last < last ? n->last : last;

		elms[i].pages = iopt_pages_get(area->pages);
		elms[i].start_byte = area->pages_byte + (first - n->start);
		elms[i].length = end - first + 1;
		if (++i == num)
			break;
	}
	*out = elms;
	*out_num = num;
out_unlock:
	uiommu_up_read(&iopt->iova_rwsem);
	return rc;
}

/**
 * iopt_copy_iova() - map the pages behind @src's [src_iova, +length) into @dst as well
 * The new areas share the source's iopt_pages, so the memory is pinned once for both.
 * Return: 0, -ENOENT when the source range has a gap, or an error of the mapping.
 */
int iopt_copy_iova(struct io_pagetable *dst, struct io_pagetable *src, uint64_t *dst_iova,
		   uint64_t src_iova, uint64_t length, int iommu_prot, unsigned int flags)
{
	struct iopt_pages_elm *elms;
	unsigned int num;
	int rc;

	rc = iopt_get_pages(src, src_iova, length, &elms, &num);
	if (rc)
		return rc;
	rc = iopt_map_pages(dst, elms, num, length, dst_iova, iommu_prot, flags);
	iopt_elms_put(elms, num);
	return rc;
}

/* ---- unmap, split ------------------------------------------------------------------------ */

static int iopt_unmap_iova_range(struct io_pagetable *iopt, uint64_t start, uint64_t last,
				 uint64_t *unmapped)
{
	struct interval_tree_node *n;
	uint64_t bytes = 0;

	uiommu_down_write(&iopt->iova_rwsem);
	interval_tree_for_each(n, &iopt->area_itree, start, last) {
		if (n->start < start || n->last > last) {
			uiommu_up_write(&iopt->iova_rwsem);
			*unmapped = 0;
			return -ENOENT;
		}
	}
	while ((n = interval_tree_iter_first(&iopt->area_itree, start, last))) {
		struct iopt_area *area = iopt_area_from_node(n);

		bytes += iopt_area_length(area);
		iopt_area_remove(iopt, area);
		iopt_area_free(area);
	}
	uiommu_up_write(&iopt->iova_rwsem);
	*unmapped = bytes;
	return 0;
}

/**
 * iopt_unmap_iova() - unmap every area inside [iova, iova + length)
 * Return: 0 with *@unmapped bytes, which may be 0 for an empty range (the caller decides what
 * that means); -ENOENT when an area crosses an end of the range (nothing is unmapped then);
 * -EINVAL, -EOVERFLOW for a bad range.
 */
int iopt_unmap_iova(struct io_pagetable *iopt, uint64_t iova, uint64_t length,
		    uint64_t *unmapped)
{
	uint64_t last;

	*unmapped = 0;
	if (!length)
		return -EINVAL;
	if (check_add_overflow(iova, length - 1, &last))
		return -EOVERFLOW;
	return iopt_unmap_iova_range(iopt, iova, last, unmapped);
}

/* Unmaps everything; succeeds on an empty table too. */
int iopt_unmap_all(struct io_pagetable *iopt, uint64_t *unmapped)
{
	return iopt_unmap_iova_range(iopt, 0, UINT64_MAX, unmapped);
}

/* May the area holding @iova be split so that a piece starts at @iova? */
static int iopt_area_split_check(struct io_pagetable *iopt, uint64_t iova)
{
	struct interval_tree_node *n = interval_tree_iter_first(&iopt->area_itree, iova, iova);
	struct iopt_area *area;

	lockdep_assert_rwsem_held_write(&iopt->iova_rwsem);
	if (!n || n->start == iova)
		return 0;
	area = iopt_area_from_node(n);
	if ((iova & (iopt->iova_alignment - 1)) ||
	    ((area->pages_byte + (iova - area->node.start)) & (iopt->iova_alignment - 1)))
		return -EINVAL;
	return 1;
}

/* Splits the area holding @iova so that @rhs, a new area, starts at @iova. Cannot fail. */
static void iopt_area_split(struct io_pagetable *iopt, uint64_t iova, struct iopt_area *rhs)
{
	struct interval_tree_node *n = interval_tree_iter_first(&iopt->area_itree, iova, iova);
	struct iopt_area *area = iopt_area_from_node(n);

	lockdep_assert_rwsem_held_write(&iopt->iova_rwsem);
	rhs->node.start = iova;
	rhs->node.last = area->node.last;
	rhs->pages = iopt_pages_get(area->pages);
	rhs->pages_byte = area->pages_byte + (iova - area->node.start);
	rhs->iommu_prot = area->iommu_prot;

	interval_tree_remove(&iopt->area_itree, &area->node);
	area->node.last = iova - 1;
	interval_tree_insert(&iopt->area_itree, &area->node);
	iopt_area_insert(iopt, rhs);
}

/**
 * iopt_cut_iova() - make every IOVA in @iovas the start of an area (VFIO type1 v1 unmap)
 * The mapping itself does not change, only how it is divided into areas. All or nothing.
 * Return: 0, -EINVAL for a cut off the table's alignment, -ENOMEM.
 */
int iopt_cut_iova(struct io_pagetable *iopt, const uint64_t *iovas, unsigned int num)
{
	struct iopt_area *spare[4] = { NULL };
	unsigned int i, used = 0;
	int rc = 0;

	if (num > ARRAY_SIZE(spare))
		return -EINVAL;
	for (i = 0; i != num; i++) {
		spare[i] = iopt_area_alloc();
		if (!spare[i]) {
			rc = -ENOMEM;
			goto out_free;
		}
	}
	uiommu_down_write(&iopt->iova_rwsem);
	for (i = 0; i != num; i++) {
		rc = iopt_area_split_check(iopt, iovas[i]);
		if (rc < 0)
			goto out_unlock;
	}
	for (i = 0; i != num; i++)
		if (iopt_area_split_check(iopt, iovas[i]) > 0)
			iopt_area_split(iopt, iovas[i], spare[used++]);
	rc = 0;
out_unlock:
	uiommu_up_write(&iopt->iova_rwsem);
out_free:
	for (i = used; i != num; i++)
		uiommu_free(spare[i]);
	return rc;
}

/* ---- allowed and reserved ranges, alignment ------------------------------------------------ */

/**
 * iopt_set_allow_iova() - replace the allowed ranges with copies of @ranges
 * Return: 0, -EADDRINUSE when one meets a reserved range (nothing changes), -ENOMEM.
 */
int iopt_set_allow_iova(struct io_pagetable *iopt, const struct iopt_allowed *ranges,
			unsigned int num)
{
	struct interval_tree_root fresh, old;
	struct interval_tree_node *n;
	unsigned int i;
	int rc = 0;

	interval_tree_init(&fresh);
	for (i = 0; i != num; i++) {
		struct iopt_allowed *allowed = uiommu_zalloc(sizeof(*allowed));

		if (!allowed) {
			rc = -ENOMEM;
			goto out_free;
		}
		allowed->node.start = ranges[i].node.start;
		allowed->node.last = ranges[i].node.last;
		interval_tree_insert(&fresh, &allowed->node);
	}

	uiommu_down_write(&iopt->iova_rwsem);
	for (n = interval_tree_first(&fresh); n; n = interval_tree_next(n)) {
		if (interval_tree_iter_first(&iopt->reserved_itree, n->start, n->last)) {
			rc = -EADDRINUSE;
			break;
		}
	}
	if (!rc) {
		old = iopt->allowed_itree;
		iopt->allowed_itree = fresh;
		fresh = old;
	}
	uiommu_up_write(&iopt->iova_rwsem);

out_free:
	while ((n = interval_tree_first(&fresh))) {
		interval_tree_remove(&fresh, n);
		uiommu_free(container_of(n, struct iopt_allowed, node));
	}
	return rc;
}

/**
 * iopt_reserve_iova() - forbid [start, last] to mappings, on behalf of @owner
 * The driver-facing API: a domain's or device's reserved regions go in here.
 * Return: 0, -EADDRINUSE when the range meets an allowed range or an area, -ENOMEM.
 */
int iopt_reserve_iova(struct io_pagetable *iopt, uint64_t start, uint64_t last,
		      const void *owner)
{
	struct iopt_reserved *reserved;
	int rc = 0;

	if (start > last)
		return -EINVAL;
	reserved = uiommu_zalloc(sizeof(*reserved));
	if (!reserved)
		return -ENOMEM;
	uiommu_down_write(&iopt->iova_rwsem);
	if (interval_tree_iter_first(&iopt->allowed_itree, start, last) ||
	    interval_tree_iter_first(&iopt->area_itree, start, last)) {
		rc = -EADDRINUSE;
		goto out_unlock;
	}
	reserved->node.start = start;
	reserved->node.last = last;
	reserved->owner = owner;
	interval_tree_insert(&iopt->reserved_itree, &reserved->node);
	reserved = NULL;
out_unlock:
	uiommu_up_write(&iopt->iova_rwsem);
	uiommu_free(reserved);
	return rc;
}

/* Drops every reserved range @owner added. */
void iopt_remove_reserved_iova(struct io_pagetable *iopt, const void *owner)
{
	struct interval_tree_node *n, *next;

	uiommu_down_write(&iopt->iova_rwsem);
	for (n = interval_tree_first(&iopt->reserved_itree); n; n = next) {
		next = interval_tree_next(n);
		if (container_of(n, struct iopt_reserved, node)->owner != owner)
			continue;
		interval_tree_remove(&iopt->reserved_itree, n);
		uiommu_free(container_of(n, struct iopt_reserved, node));
	}
	uiommu_up_write(&iopt->iova_rwsem);
}

/* Would every area stay aligned to @alignment? */
static int iopt_check_iova_alignment(struct io_pagetable *iopt, uint64_t alignment)
{
	struct interval_tree_node *n;
	uint64_t mask = alignment - 1;

	lockdep_assert_rwsem_held(&iopt->iova_rwsem);
	for (n = interval_tree_first(&iopt->area_itree); n; n = interval_tree_next(n)) {
		struct iopt_area *area = iopt_area_from_node(n);
		uint64_t page_offset =
			iopt_pages_source_addr(area->pages, area->pages_byte) % uiommu_page_size;

		if ((n->start & mask) || (iopt_area_length(area) & mask) || (page_offset & mask))
			return -EADDRINUSE;
	}
	return 0;
}

/*
 * The table's alignment: the largest of its users' (domains and accesses, in later layers), and
 * PAGE_SIZE while large pages are disabled.
 */
static int iopt_calculate_iova_alignment(struct io_pagetable *iopt)
{
	uint64_t alignment = 1;
	int rc;

	lockdep_assert_rwsem_held_write(&iopt->iova_rwsem);
	if (iopt->disable_large_pages)
		alignment = uiommu_page_size;
	if (alignment > iopt->iova_alignment) {
		rc = iopt_check_iova_alignment(iopt, alignment);
		if (rc)
			return rc;
	}
	iopt->iova_alignment = alignment;
	return 0;
}

/**
 * iopt_disable_large_pages() - IOMMU_OPTION_HUGE_PAGES = 0: map in PAGE_SIZE units only
 * Return: 0, or -EADDRINUSE when an existing area is not page aligned (nothing changes).
 */
int iopt_disable_large_pages(struct io_pagetable *iopt)
{
	int rc = 0;

	uiommu_down_write(&iopt->iova_rwsem);
	if (iopt->disable_large_pages)
		goto out_unlock;
	iopt->disable_large_pages = true;
	rc = iopt_calculate_iova_alignment(iopt);
	if (rc)
		iopt->disable_large_pages = false;
out_unlock:
	uiommu_up_write(&iopt->iova_rwsem);
	return rc;
}

void iopt_enable_large_pages(struct io_pagetable *iopt)
{
	uiommu_down_write(&iopt->iova_rwsem);
	iopt->disable_large_pages = false;
	WARN_ON(iopt_calculate_iova_alignment(iopt));
	uiommu_up_write(&iopt->iova_rwsem);
}

bool iopt_large_pages_disabled(struct io_pagetable *iopt)
{
	bool ret;

	uiommu_down_read(&iopt->iova_rwsem);
	ret = iopt->disable_large_pages;
	uiommu_up_read(&iopt->iova_rwsem);
	return ret;
}

struct iopt_ranges_out {
	struct iopt_allowed *ranges;
	unsigned long max;
	unsigned long count;
};

static int iopt_usable_span(void *arg, bool is_hole, uint64_t start, uint64_t last)
{
	struct iopt_ranges_out *out = arg;

	if (!is_hole)
		return 0;
	if (out->count < out->max) {
		out->ranges[out->count].node.start = start;
		out->ranges[out->count].node.last = last;
	}
	out->count++;
	return 0;
}

unsigned long iopt_get_usable_ranges(struct io_pagetable *iopt, struct iopt_allowed *ranges,
				     unsigned long max)
{
	struct iopt_ranges_out out = { .ranges = ranges, .max = max };

	lockdep_assert_rwsem_held(&iopt->iova_rwsem);
	interval_tree_for_each_span(&iopt->reserved_itree, 0, UINT64_MAX, iopt_usable_span, &out);
	return out.count;
}

bool iopt_only_file_areas(struct io_pagetable *iopt)
{
	struct interval_tree_node *n;

	lockdep_assert_rwsem_held(&iopt->iova_rwsem);
	for (n = interval_tree_first(&iopt->area_itree); n; n = interval_tree_next(n))
		if (iopt_area_from_node(n)->pages->type != IOPT_ADDRESS_FILE)
			return false;
	return true;
}
