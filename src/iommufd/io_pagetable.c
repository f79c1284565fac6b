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
 *
 * Domains (see io_pagetable.h). An area is "filled" when the table has domains: its pin user
 * holds its pages and each domain maps it. Filling a new area (MAP, COPY) happens under
 * iova_rwsem before the area enters the tree, so a failure leaves nothing; attaching a domain
 * fills it with every existing area and undoes its own progress on the first failure.
 * Translations go to the host address of each pinned page (iopt_pages_host_addr()); runs of
 * pages that are contiguous in the host are mapped in one iommu_map() call so the domain can
 * use its large pages.
 */
#include <errno.h>
#include <string.h>

#include "iommu/iommu.h"
#include "iommufd/io_pagetable.h"
#include "iommufd/remote.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"

void iopt_init_table(struct io_pagetable *iopt)
{
	memset(iopt, 0, sizeof(*iopt));
	uiommu_rwsem_init(&iopt->domains_rwsem);
	uiommu_rwsem_init(&iopt->iova_rwsem);
	rangemap_init(&iopt->areas);
	interval_tree_init(&iopt->reserved_itree);
	interval_tree_init(&iopt->allowed_itree);
	iopt->iova_alignment = 1;
	atomic_init(&iopt->usable, NULL);
	atomic_init(&iopt->usable_gen, 0);
}

static void iopt_usable_free_rcu(struct rcu_head *head)
{
	uiommu_rcu_callback_begin();
	uiommu_free_deferred(container_of(head, struct iopt_usable, rcu));
}

/*
 * Reserved ranges or the alignment change: the snapshot is stale from now on (readers that
 * found it current answer what a locked reader before this writer saw), and the next locked
 * reader replaces it. Never fails and allocates nothing, so no writer gains an error and an
 * undone change leaves the allocations as they were.
 */
static void iopt_usable_invalidate(struct io_pagetable *iopt)
{
	unsigned long gen = atomic_load_explicit(&iopt->usable_gen, memory_order_relaxed);

	lockdep_assert_rwsem_held_write(&iopt->iova_rwsem);
	atomic_store_explicit(&iopt->usable_gen, gen + 1, memory_order_release);
}

/*
 * Puts @area in the tree. The caller reserved the tree's nodes (iopt_areas_reserve()), so
 * this cannot fail.
 */
static void iopt_area_insert(struct io_pagetable *iopt, struct iopt_area *area)
{
	lockdep_assert_rwsem_held_write(&iopt->iova_rwsem);
	rangemap_insert(&iopt->areas, area->iova.start, area->iova.last, area);
}

static void iopt_area_remove(struct io_pagetable *iopt, struct iopt_area *area)
{
	lockdep_assert_rwsem_held_write(&iopt->iova_rwsem);
	WARN_ON(rangemap_remove(&iopt->areas, area->iova.start) != area);
}

/*
 * Reserves the tree's nodes for @num areas about to be inserted; *@spares receives what to
 * give back with iopt_areas_unreserve() if the caller fails before inserting them, so a
 * failed call leaves no allocation behind.
 */
static int iopt_areas_reserve(struct io_pagetable *iopt, unsigned int num, unsigned int *spares)
{
	lockdep_assert_rwsem_held_write(&iopt->iova_rwsem);
	*spares = rangemap_spare_count(&iopt->areas);
	return rangemap_reserve(&iopt->areas, num);
}

static void iopt_areas_unreserve(struct io_pagetable *iopt, unsigned int spares)
{
	rangemap_spare_trim(&iopt->areas, spares);
}

static struct iopt_area *iopt_area_alloc(void)
{
	return uiommu_zalloc(sizeof(struct iopt_area));
}

static void iopt_area_free(struct iopt_area *area)
{
	WARN_ON(area->pinned);
	if (area->pages)
		iopt_pages_put(area->pages);
	uiommu_free(area);
}

void iopt_destroy_table(struct io_pagetable *iopt)
{
	struct iopt_usable *usable;
	bool had_areas = false;
	struct rangemap_iter it;
	struct interval_tree_node *n;
	struct iopt_area *area;

	uiommu_down_write(&iopt->iova_rwsem);
	/* The tree goes as a whole: free the areas, then its nodes. */
	iopt_for_each_area(area, &it, iopt, 0, UINT64_MAX) {
		iopt_area_free(area);
		had_areas = true;
	}
	rangemap_destroy(&iopt->areas);
	while ((n = interval_tree_first(&iopt->reserved_itree))) {
		interval_tree_remove(&iopt->reserved_itree, n);
		uiommu_free(container_of(n, struct iopt_reserved, node));
	}
	iopt_allowed_free(&iopt->allowed_itree);
	usable = atomic_exchange_explicit(&iopt->usable, NULL, memory_order_relaxed);
	if (usable)
		call_rcu(&usable->rcu, iopt_usable_free_rcu);
	uiommu_up_write(&iopt->iova_rwsem);
	/* As an unmap's: no other process copies through these areas after this. */
	if (had_areas)
		iommufd_direct_invalidate();
	/* Every domain and access holds its IOAS: none can be left when the table goes. */
	WARN_ON(iopt->nr_domains || iopt->nr_accesses);
	uiommu_free(iopt->domains);
	uiommu_free(iopt->accesses);
	uiommu_rwsem_destroy(&iopt->iova_rwsem);
	uiommu_rwsem_destroy(&iopt->domains_rwsem);
}

/* ---- filling domains ----------------------------------------------------------------------- */

static uint64_t iopt_area_first_index(const struct iopt_area *area)
{
	return area->pages_byte / uiommu_page_size;
}

static uint64_t iopt_area_last_index(const struct iopt_area *area)
{
	return (area->pages_byte + iopt_area_length(area) - 1) / uiommu_page_size;
}

/*
 * Maps all of @area (whose pages are pinned) into @domain. All or nothing.
 * Caller holds iova_rwsem for write.
 */
static int __iopt_area_map_domain(struct iopt_area *area, struct iommu_domain *domain)
{
	uint64_t iova = area->iova.start, byte = area->pages_byte;
	uint64_t remaining = iopt_area_length(area);
	int rc;

	while (remaining) {
		uint64_t index = byte / uiommu_page_size, offset = byte % uiommu_page_size;
		uint64_t host, run, npages;

		/* One iommu_map() per run of pages that are contiguous in the host. */
		npages = (offset + remaining + uiommu_page_size - 1) / uiommu_page_size;
		npages = iopt_pages_host_contig(area->pages, index, npages);
		rc = -EFAULT;
		if (!npages || iopt_pages_host_addr(area->pages, index, &host))
			goto err_unmap;
		host += offset;
		run = npages * uiommu_page_size - offset;
		if (run > remaining)
			run = remaining;
		rc = iommu_map(domain, iova, host, run, area->iommu_prot);
		if (rc)
			goto err_unmap;
		iova += run;
		byte += run;
		remaining -= run;
	}
	return 0;

err_unmap:
	if (iova != area->iova.start)
		iommu_unmap(domain, area->iova.start, iova - area->iova.start);
	return rc;
}

static void __iopt_area_unmap_domain(struct iopt_area *area, struct iommu_domain *domain)
{
	size_t done = iommu_unmap(domain, area->iova.start, iopt_area_length(area));

	WARN_ON(done != iopt_area_length(area));
}

/*
 * A dma-buf's mappings. Revocation (dmabuf.c) must find every domain that maps an area of the
 * buffer without the IOAS locks, which it may not take (they come before pages->mutex), so each
 * (area, domain) pair that maps a dma-buf's pages is tracked on the pages, under pages->mutex:
 * added when the map succeeds, removed at unmap. Revocation unmaps and drops them all; from
 * then on the pages map nowhere and unmapping them finds nothing to do. A dma-buf area is
 * never split (its IOVA range is constant while tracked).
 */
struct iopt_pages_dmabuf_track {
	struct iopt_pages_dmabuf_track *next; /* in pages->dmabuf_tracks */
	struct iopt_area *area;
	struct iommu_domain *domain;
};

static int iopt_area_map_domain(struct iopt_area *area, struct iommu_domain *domain)
{
	struct iopt_pages *pages = area->pages;
	struct iopt_pages_dmabuf_track *track;
	int rc;

	if (!pages->dmabuf)
		return __iopt_area_map_domain(area, domain);
	track = uiommu_zalloc(sizeof(*track));
	if (!track)
		return -ENOMEM;
	uiommu_mutex_lock(&pages->mutex);
	/* Revoked: nothing to map, and success, as the kernel's fill of a revoked buffer. */
	if (pages->dmabuf_revoked) {
		rc = 0;
		goto err_free;
	}
	rc = __iopt_area_map_domain(area, domain);
	if (rc)
		goto err_free;
	track->area = area;
	track->domain = domain;
	track->next = pages->dmabuf_tracks;
	pages->dmabuf_tracks = track;
	uiommu_mutex_unlock(&pages->mutex);
	return 0;

err_free:
	uiommu_mutex_unlock(&pages->mutex);
	uiommu_free(track);
	return rc;
}

static void iopt_area_unmap_domain(struct iopt_area *area, struct iommu_domain *domain)
{
	struct iopt_pages *pages = area->pages;
	struct iopt_pages_dmabuf_track **pos, *track;

	if (!pages->dmabuf) {
		__iopt_area_unmap_domain(area, domain);
		return;
	}
	uiommu_mutex_lock(&pages->mutex);
	for (pos = &pages->dmabuf_tracks; (track = *pos); pos = &track->next)
		if (track->area == area && track->domain == domain)
			break;
	/* Not tracked: revoked, and unmapped then. */
	if (track) {
		*pos = track->next;
		__iopt_area_unmap_domain(area, domain);
		uiommu_free(track);
	}
	uiommu_mutex_unlock(&pages->mutex);
}

/**
 * iopt_pages_dmabuf_revoke() - take @pages, a dma-buf's, out of every domain, for good
 * Called by the dma-buf's revocation, with its lock held and no IOAS lock. Never fails.
 */
void iopt_pages_dmabuf_revoke(struct iopt_pages *pages)
{
	struct iopt_pages_dmabuf_track *track;

	uiommu_mutex_lock(&pages->mutex);
	pages->dmabuf_revoked = true;
	while ((track = pages->dmabuf_tracks)) {
		pages->dmabuf_tracks = track->next;
		__iopt_area_unmap_domain(track->area, track->domain);
		uiommu_free(track);
	}
	uiommu_mutex_unlock(&pages->mutex);
}

/*
 * Pins @area and maps it into every domain of the table, for an area about to be inserted.
 * All or nothing. Caller holds domains_rwsem and iova_rwsem for write.
 */
static int iopt_area_fill_domains(struct io_pagetable *iopt, struct iopt_area *area)
{
	unsigned int i;
	int rc;

	lockdep_assert_rwsem_held(&iopt->domains_rwsem);
	lockdep_assert_rwsem_held_write(&iopt->iova_rwsem);
	if (!iopt->nr_domains)
		return 0;
	rc = iopt_pages_pin(area->pages, &area->pin, iopt_area_first_index(area),
			    iopt_area_last_index(area));
	if (rc)
		return rc;
	area->pinned = true;
	for (i = 0; i != iopt->nr_domains; i++) {
		rc = iopt_area_map_domain(area, iopt->domains[i]);
		if (rc)
			goto err_unmap_domains;
	}
	return 0;

err_unmap_domains:
	while (i--)
		iopt_area_unmap_domain(area, iopt->domains[i]);
	iopt_pages_unpin(area->pages, &area->pin);
	area->pinned = false;
	return rc;
}

/* The reverse of iopt_area_fill_domains(), for an area leaving the table. Never fails. */
static void iopt_area_unfill_domains(struct io_pagetable *iopt, struct iopt_area *area)
{
	unsigned int i;

	lockdep_assert_rwsem_held(&iopt->domains_rwsem);
	lockdep_assert_rwsem_held_write(&iopt->iova_rwsem);
	for (i = 0; i != iopt->nr_domains; i++)
		iopt_area_unmap_domain(area, iopt->domains[i]);
	if (area->pinned) {
		iopt_pages_unpin(area->pages, &area->pin);
		area->pinned = false;
	}
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
static bool iopt_alloc_hole_fits(uint64_t start, uint64_t last, void *arg)
{
	struct iopt_alloc_req *req = arg;
	struct io_pagetable *iopt = req->iopt;

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
	if (!rangemap_gap_find(&iopt->areas, length - 1, iopt_alloc_hole_fits, &req))
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
	struct rangemap_iter it;
	uint64_t last;

	lockdep_assert_rwsem_held_write(&iopt->iova_rwsem);
	if (iova & (iopt->iova_alignment - 1))
		return -EINVAL;
	if (check_add_overflow(iova, length - 1, &last))
		return -EOVERFLOW;
	if (interval_tree_iter_first(&iopt->reserved_itree, iova, last))
		return -EINVAL;
	if (rangemap_iter_first(&iopt->areas, &it, iova, last))
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
	unsigned int i, made = 0, spares;
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

	uiommu_down_read(&iopt->domains_rwsem);
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
	rc = iopt_areas_reserve(iopt, num, &spares);
	if (rc)
		goto err_unreserve;

	/* With domains attached the pages are pinned and mapped now (eager), all or nothing. */
	cur = *iova;
	for (i = 0; i != num; i++) {
		struct iopt_area *area = elms[i].area;

		area->iova.start = cur;
		area->iova.last = cur + elms[i].length - 1;
		area->pages = elms[i].pages;
		area->pages_byte = elms[i].start_byte;
		area->iommu_prot = iommu_prot;
		rc = iopt_area_fill_domains(iopt, area);
		if (rc)
			goto err_unfill;
		cur += elms[i].length;
	}

	/* Nothing can fail from here on. */
	for (i = 0; i != num; i++) {
		iopt_area_insert(iopt, elms[i].area);
		elms[i].pages = NULL;
		elms[i].area = NULL;
	}
	rangemap_spare_settle(&iopt->areas);
	uiommu_up_write(&iopt->iova_rwsem);
	uiommu_up_read(&iopt->domains_rwsem);
	return 0;

err_unfill:
	while (i--)
		iopt_area_unfill_domains(iopt, elms[i].area);
err_unreserve:
	iopt_areas_unreserve(iopt, spares);
err_unlock:
	uiommu_up_write(&iopt->iova_rwsem);
	uiommu_up_read(&iopt->domains_rwsem);
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

	/* Nothing shares the new pages yet, so their account can still change. */
	if ((flags & IOPT_ACCOUNT_MM) && pages->account_mode == UIOMMU_ACCOUNT_USER)
		pages->account_mode = UIOMMU_ACCOUNT_MM;
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
	struct rangemap_iter it;
	struct iopt_pages_elm *elms;
	struct iopt_area *area;
	unsigned int num = 0, i = 0;
	uint64_t last, expect = iova;
	int rc = 0;

	if (!length)
		return -EINVAL;
	if (check_add_overflow(iova, length - 1, &last))
		return -EOVERFLOW;

	uiommu_down_read(&iopt->iova_rwsem);
	iopt_for_each_area(area, &it, iopt, iova, last) {
		if (area->iova.start > expect) {
			rc = -ENOENT;
			goto out_unlock;
		}
		num++;
		if (area->iova.last >= last)
			break;
		expect = area->iova.last + 1;
	}
	if (!num || (expect <= last && !area)) {
		rc = -ENOENT;
		goto out_unlock;
	}
	elms = uiommu_calloc(num, sizeof(*elms));
	if (!elms) {
		rc = -ENOMEM;
		goto out_unlock;
	}
	iopt_for_each_area(area, &it, iopt, iova, last) {
		uint64_t first = area->iova.start > iova ? area->iova.start : iova;
		uint64_t end = area->iova.last < last ? area->iova.last : last;

		elms[i].pages = iopt_pages_get(area->pages);
		elms[i].start_byte = area->pages_byte + (first - area->iova.start);
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

/* Give up after this many rounds of asking accesses to unpin: one of them does not listen. */
#define IOPT_UNMAP_NOTIFY_TRIES 100

static int iopt_unmap_iova_range(struct io_pagetable *iopt, uint64_t start, uint64_t last,
				 uint64_t *unmapped)
{
	struct rangemap_iter it;
	struct iopt_area *area;
	unsigned int tries = 0;
	uint64_t bytes = 0;
	bool pinned;

again:
	uiommu_down_read(&iopt->domains_rwsem);
	uiommu_down_write(&iopt->iova_rwsem);
	pinned = false;
	iopt_for_each_area(area, &it, iopt, start, last) {
		if (area->num_locks || area->iova.start < start || area->iova.last > last) {
			/* Decide before unlocking: the area may be gone the moment we do. */
			int rc = area->num_locks ? -EBUSY : -ENOENT;

			uiommu_up_write(&iopt->iova_rwsem);
			uiommu_up_read(&iopt->domains_rwsem);
			*unmapped = 0;
			return rc;
		}
		if (atomic_load_explicit(&area->num_accesses, memory_order_acquire)) {
			area->prevent_access = true;
			pinned = true;
		}
	}
	if (pinned) {
		/* The accesses unpin with our locks dropped; then look again. */
		uiommu_up_write(&iopt->iova_rwsem);
		uiommu_up_read(&iopt->domains_rwsem);
		if (++tries > IOPT_UNMAP_NOTIFY_TRIES) {
			*unmapped = 0;
			return -EDEADLK;
		}
		iommufd_access_notify_unmap(iopt, start, last);
		goto again;
	}
	while ((area = rangemap_iter_first(&iopt->areas, &it, start, last))) {
		bytes += iopt_area_length(area);
		iopt_area_unfill_domains(iopt, area);
		iopt_area_remove(iopt, area);
		iopt_area_free(area);
	}
	uiommu_up_write(&iopt->iova_rwsem);
	uiommu_up_read(&iopt->domains_rwsem);
	/*
	 * Another process's ACCESS_RW copies by itself through translations it was given
	 * (remote_direct.c): those of the areas just removed die, and a copy in flight with one
	 * ends, before the unmap returns, as the kernel's iova_rwsem orders them.
	 */
	if (bytes)
		iommufd_direct_invalidate();
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
	struct rangemap_iter it;
	struct iopt_area *area = rangemap_iter_first(&iopt->areas, &it, iova, iova);

	lockdep_assert_rwsem_held_write(&iopt->iova_rwsem);
	if (!area || area->iova.start == iova)
		return 0;
	/* The kernel maps a dma-buf as a whole and never divides it. */
	if (area->pages->dmabuf)
		return -EOPNOTSUPP;
	/* Access pins and locks are kept per area: they cannot be divided. */
	if (atomic_load_explicit(&area->num_accesses, memory_order_acquire) || area->num_locks)
		return -EINVAL;
	/* A domain may map the area with a page that spans the cut. */
	if (area->pinned && !iopt->disable_large_pages)
		return -EINVAL;
	if ((iova & (iopt->iova_alignment - 1)) ||
	    ((area->pages_byte + (iova - area->iova.start)) & (iopt->iova_alignment - 1)))
		return -EINVAL;
	return 1;
}

/* Splits the area holding @iova so that @rhs, a new area, starts at @iova. Cannot fail. */
static void iopt_area_split(struct io_pagetable *iopt, uint64_t iova, struct iopt_area *rhs)
{
	struct rangemap_iter it;
	struct iopt_area *area = rangemap_iter_first(&iopt->areas, &it, iova, iova);

	lockdep_assert_rwsem_held_write(&iopt->iova_rwsem);
	rhs->iova.start = iova;
	rhs->iova.last = area->iova.last;
	rhs->pages = iopt_pages_get(area->pages);
	rhs->pages_byte = area->pages_byte + (iova - area->iova.start);
	rhs->iommu_prot = area->iommu_prot;

	/* The left piece keeps its place in the tree: it only ends sooner. */
	area->iova.last = iova - 1;
	rangemap_set_last(&iopt->areas, area->iova.start, area->iova.last);
	if (area->pinned) {
		/*
		 * The cut is page aligned (large pages are disabled), so the halves cover disjoint
		 * pages; the new half's pages are pinned already, which makes its pin unable to fail.
		 */
		WARN_ON(iopt_pages_pin(rhs->pages, &rhs->pin, iopt_area_first_index(rhs),
				       iopt_area_last_index(rhs)));
		rhs->pinned = true;
		iopt_pages_pin_shrink(area->pages, &area->pin, iopt_area_first_index(area),
				      iopt_area_last_index(area));
	}
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
	unsigned int i, used = 0, spares;
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
	uiommu_down_read(&iopt->domains_rwsem);
	uiommu_down_write(&iopt->iova_rwsem);
	for (i = 0; i != num; i++) {
		rc = iopt_area_split_check(iopt, iovas[i]);
		if (rc < 0)
			goto out_unlock;
	}
	rc = iopt_areas_reserve(iopt, num, &spares);
	if (rc) {
		iopt_areas_unreserve(iopt, spares);
		goto out_unlock;
	}
	for (i = 0; i != num; i++)
		if (iopt_area_split_check(iopt, iovas[i]) > 0)
			iopt_area_split(iopt, iovas[i], spare[used++]);
	rangemap_spare_settle(&iopt->areas);
	rc = 0;
out_unlock:
	uiommu_up_write(&iopt->iova_rwsem);
	uiommu_up_read(&iopt->domains_rwsem);
out_free:
	for (i = used; i != num; i++)
		uiommu_free(spare[i]);
	return rc;
}

/* ---- locks ------------------------------------------------------------------------------- */

/* Applies @delta to num_locks of every area of [start, last]. Caller holds iova_rwsem for write. */
static void iopt_lock_areas(struct io_pagetable *iopt, uint64_t start, uint64_t last, int delta)
{
	struct rangemap_iter it;
	struct iopt_area *area;

	iopt_for_each_area(area, &it, iopt, start, last) {
		WARN_ON(delta < 0 && !area->num_locks);
		area->num_locks += delta;
	}
}

/**
 * iopt_lock_iova() - keep [iova, iova + length) mapped as it is: no unmap, no split
 * Return: 0; -ENOENT when an IOVA of the range is not mapped (nothing is locked then);
 * -EINVAL, -EOVERFLOW for a bad range. Undo with iopt_unlock_iova() on the same range.
 */
int iopt_lock_iova(struct io_pagetable *iopt, uint64_t iova, uint64_t length)
{
	struct rangemap_iter it;
	struct iopt_area *area;
	uint64_t last, next = iova;
	int rc = 0;

	if (!length)
		return -EINVAL;
	if (check_add_overflow(iova, length - 1, &last))
		return -EOVERFLOW;
	uiommu_down_write(&iopt->iova_rwsem);
	/* The areas of the range must follow each other without a gap. */
	iopt_for_each_area(area, &it, iopt, iova, last) {
		if (area->iova.start > next) {
			rc = -ENOENT;
			goto out_unlock;
		}
		if (area->iova.last >= last)
			break;
		next = area->iova.last + 1;
	}
	if (!area) {
		rc = -ENOENT;
		goto out_unlock;
	}
	iopt_lock_areas(iopt, iova, last, 1);
out_unlock:
	uiommu_up_write(&iopt->iova_rwsem);
	return rc;
}

/* Pairs with a successful iopt_lock_iova() of the same range. */
void iopt_unlock_iova(struct io_pagetable *iopt, uint64_t iova, uint64_t length)
{
	uiommu_down_write(&iopt->iova_rwsem);
	iopt_lock_areas(iopt, iova, iova + length - 1, -1);
	uiommu_up_write(&iopt->iova_rwsem);
}

/* ---- allowed and reserved ranges, alignment ------------------------------------------------ */

/* Frees the struct iopt_allowed nodes of @root. */
void iopt_allowed_free(struct interval_tree_root *root)
{
	struct interval_tree_node *n;

	while ((n = interval_tree_first(root))) {
		interval_tree_remove(root, n);
		uiommu_free(container_of(n, struct iopt_allowed, node));
	}
}

/**
 * iopt_set_allow_iova() - make the ranges of @fresh (struct iopt_allowed nodes) the allowed ones
 * Return: 0, and @fresh holds the old ranges; -EADDRINUSE when one meets a reserved range
 * (nothing changes). Either way the caller frees what @fresh holds (iopt_allowed_free()).
 */
int iopt_set_allow_iova(struct io_pagetable *iopt, struct interval_tree_root *fresh)
{
	struct interval_tree_root old;
	struct interval_tree_node *n;
	int rc = 0;

	uiommu_down_write(&iopt->iova_rwsem);
	for (n = interval_tree_first(fresh); n; n = interval_tree_next(n)) {
		if (interval_tree_iter_first(&iopt->reserved_itree, n->start, n->last)) {
			rc = -EADDRINUSE;
			break;
		}
	}
	if (!rc) {
		old = iopt->allowed_itree;
		iopt->allowed_itree = *fresh;
		*fresh = old;
	}
	uiommu_up_write(&iopt->iova_rwsem);
	return rc;
}

/*
 * Inserts @reserved as [start, last] for @owner. Caller holds iova_rwsem for write.
 * Return: 0, or -EADDRINUSE when the range meets an allowed range or an area.
 */
static int __iopt_reserve_iova(struct io_pagetable *iopt, struct iopt_reserved *reserved,
			       uint64_t start, uint64_t last, const void *owner)
{
	struct rangemap_iter it;

	lockdep_assert_rwsem_held_write(&iopt->iova_rwsem);
	if (interval_tree_iter_first(&iopt->allowed_itree, start, last) ||
	    rangemap_iter_first(&iopt->areas, &it, start, last))
		return -EADDRINUSE;
	reserved->node.start = start;
	reserved->node.last = last;
	reserved->owner = owner;
	interval_tree_insert(&iopt->reserved_itree, &reserved->node);
	iopt_usable_invalidate(iopt);
	return 0;
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
	int rc;

	if (start > last)
		return -EINVAL;
	reserved = uiommu_zalloc(sizeof(*reserved));
	if (!reserved)
		return -ENOMEM;
	uiommu_down_write(&iopt->iova_rwsem);
	rc = __iopt_reserve_iova(iopt, reserved, start, last, owner);
	uiommu_up_write(&iopt->iova_rwsem);
	if (rc)
		uiommu_free(reserved);
	return rc;
}

static void __iopt_remove_reserved_iova(struct io_pagetable *iopt, const void *owner)
{
	struct interval_tree_node *n, *next;

	lockdep_assert_rwsem_held_write(&iopt->iova_rwsem);
	for (n = interval_tree_first(&iopt->reserved_itree); n; n = next) {
		next = interval_tree_next(n);
		if (container_of(n, struct iopt_reserved, node)->owner != owner)
			continue;
		interval_tree_remove(&iopt->reserved_itree, n);
		uiommu_free(container_of(n, struct iopt_reserved, node));
		iopt_usable_invalidate(iopt);
	}
}

/* Drops every reserved range @owner added. */
void iopt_remove_reserved_iova(struct io_pagetable *iopt, const void *owner)
{
	uiommu_down_write(&iopt->iova_rwsem);
	__iopt_remove_reserved_iova(iopt, owner);
	uiommu_up_write(&iopt->iova_rwsem);
}

#define IOPT_DEV_RESV_MAX 8 /* regions of one device; more than any driver reports */

/**
 * iopt_table_enforce_dev_resv_regions() - reserve @dev's reserved regions in @iopt
 *
 * What the device's driver reports (iommu_get_resv_regions()) becomes reserved IOVA owned by
 * @dev, every type but DIRECT_RELAXABLE (firmware memory the device may lose), as the kernel
 * does when a device attaches its RID to a paging HWPT of the IOAS: a MAP there then fails, and
 * IOVA_RANGES shows the hole. All or nothing; the caller undoes it with
 * iopt_remove_reserved_iova(@iopt, @dev).
 *
 * Return: 0; -EADDRINUSE when a region meets a mapped area or an allowed range; -EINVAL for a
 * driver that offers both hardware and software MSI regions, or two software ones; -ENOMEM.
 */
int iopt_table_enforce_dev_resv_regions(struct io_pagetable *iopt, struct device *dev)
{
	struct iopt_reserved *nodes[IOPT_DEV_RESV_MAX] = { NULL };
	struct iommu_resv_region regions[IOPT_DEV_RESV_MAX];
	unsigned int n, i, hw_msi = 0, sw_msi = 0;
	int rc = 0;

	n = iommu_get_resv_regions(dev, regions, IOPT_DEV_RESV_MAX);
	/* Allocate first: nothing can fail once the table is locked but a clash. */
	for (i = 0; i < n; i++) {
		uint64_t last;

		if (regions[i].type == IOMMU_RESV_DIRECT_RELAXABLE || !regions[i].length)
			continue;
		if (check_add_overflow(regions[i].start, regions[i].length - 1, &last)) {
			rc = -EINVAL;
			goto out_free;
		}
		hw_msi += regions[i].type == IOMMU_RESV_MSI;
		sw_msi += regions[i].type == IOMMU_RESV_SW_MSI;
		nodes[i] = uiommu_zalloc(sizeof(*nodes[i]));
		if (!nodes[i]) {
			rc = -ENOMEM;
			goto out_free;
		}
	}
	/* A driver's bug, refused as the kernel does: one kind of MSI window, at most one. */
	if ((sw_msi && hw_msi) || sw_msi > 1) {
		rc = -EINVAL;
		goto out_free;
	}

	uiommu_down_write(&iopt->iova_rwsem);
	for (i = 0; i < n && !rc; i++) {
		if (!nodes[i])
			continue;
		rc = __iopt_reserve_iova(iopt, nodes[i], regions[i].start,
					 regions[i].start + regions[i].length - 1, dev);
		if (!rc)
			nodes[i] = NULL; /* the tree's now */
	}
	if (rc)
		__iopt_remove_reserved_iova(iopt, dev);
	uiommu_up_write(&iopt->iova_rwsem);
out_free:
	for (i = 0; i < n; i++)
		uiommu_free(nodes[i]);
	return rc;
}

/* Would every area stay aligned to @alignment? */
static int iopt_check_iova_alignment(struct io_pagetable *iopt, uint64_t alignment)
{
	struct rangemap_iter it;
	struct iopt_area *area;
	uint64_t mask = alignment - 1;

	lockdep_assert_rwsem_held(&iopt->iova_rwsem);
	iopt_for_each_area(area, &it, iopt, 0, UINT64_MAX) {
		uint64_t page_offset =
			iopt_pages_source_addr(area->pages, area->pages_byte) % uiommu_page_size;

		if ((area->iova.start & mask) || (iopt_area_length(area) & mask) || (page_offset & mask))
			return -EADDRINUSE;
	}
	return 0;
}

/* The smallest page a domain maps: the alignment it needs of every area. */
static uint64_t iopt_domain_alignment(const struct iommu_domain *domain)
{
	return domain->pgsize_bitmap ? (uint64_t)1 << __builtin_ctzll(domain->pgsize_bitmap) : 1;
}

/*
 * The table's alignment: the largest of its users' (the domains' smallest page sizes, and
 * @extra, a domain about to join; the accesses' alignments), and PAGE_SIZE while large pages are disabled. Raising it
 * fails with EADDRINUSE when an existing area would break it.
 */
static int __iopt_calculate_iova_alignment(struct io_pagetable *iopt,
					   struct iommu_domain *extra)
{
	uint64_t alignment = 1;
	unsigned int i;
	int rc;

	lockdep_assert_rwsem_held(&iopt->domains_rwsem);
	lockdep_assert_rwsem_held_write(&iopt->iova_rwsem);
	for (i = 0; i != iopt->nr_domains; i++)
		if (iopt_domain_alignment(iopt->domains[i]) > alignment)
			alignment = iopt_domain_alignment(iopt->domains[i]);
	if (extra && iopt_domain_alignment(extra) > alignment)
		alignment = iopt_domain_alignment(extra);
	for (i = 0; i != iopt->nr_accesses; i++)
		if (iopt->accesses[i]->iova_alignment > alignment)
			alignment = iopt->accesses[i]->iova_alignment;
	if (iopt->disable_large_pages && uiommu_page_size > alignment)
		alignment = uiommu_page_size;
	if (alignment > iopt->iova_alignment) {
		rc = iopt_check_iova_alignment(iopt, alignment);
		if (rc)
			return rc;
	}
	if (alignment != iopt->iova_alignment)
		iopt_usable_invalidate(iopt);
	iopt->iova_alignment = alignment;
	return 0;
}

static int iopt_calculate_iova_alignment(struct io_pagetable *iopt)
{
	return __iopt_calculate_iova_alignment(iopt, NULL);
}

/* ---- attaching domains ---------------------------------------------------------------------- */

/*
 * Fills @domain with every area, pinning them first when the table had no domain. Undoes its
 * own progress on failure. Caller holds domains_rwsem and iova_rwsem for write.
 */
static int iopt_fill_domain(struct io_pagetable *iopt, struct iommu_domain *domain)
{
	bool pin = !iopt->nr_domains;
	struct iopt_area *area, *done;
	struct rangemap_iter it;
	int rc = 0;

	lockdep_assert_rwsem_held_write(&iopt->domains_rwsem);
	lockdep_assert_rwsem_held_write(&iopt->iova_rwsem);
	iopt_for_each_area(area, &it, iopt, 0, UINT64_MAX) {
		if (pin) {
			rc = iopt_pages_pin(area->pages, &area->pin, iopt_area_first_index(area),
					    iopt_area_last_index(area));
			if (rc)
				goto err_unfill;
			area->pinned = true;
		}
		rc = iopt_area_map_domain(area, domain);
		if (rc) {
			if (pin) {
				iopt_pages_unpin(area->pages, &area->pin);
				area->pinned = false;
			}
			goto err_unfill;
		}
	}
	return 0;

err_unfill:
	done = area;
	iopt_for_each_area(area, &it, iopt, 0, UINT64_MAX) {
		if (area == done)
			break;
		iopt_area_unmap_domain(area, domain);
		if (pin) {
			iopt_pages_unpin(area->pages, &area->pin);
			area->pinned = false;
		}
	}
	return rc;
}

/**
 * iopt_table_add_domain() - mirror the table into @domain from now on
 * @domain: a paging domain, empty, not attached to this table yet
 *
 * Reserves the IOVA outside the domain's aperture, raises the table's alignment to the domain's
 * smallest page, pins every area (when it is the first domain) and maps it. All or nothing.
 *
 * Return: 0; -EADDRINUSE when an area lies outside the aperture or breaks the new alignment,
 * or an allowed range lies outside the aperture; -EFAULT at the first page that cannot be
 * pinned; -ENOMEM; an error of the domain's map.
 */
int iopt_table_add_domain(struct io_pagetable *iopt, struct iommu_domain *domain)
{
	const struct iommu_domain_geometry *geo = &domain->geometry;
	struct iopt_reserved *below = NULL, *above = NULL;
	unsigned int i;
	int rc;

	if (geo->aperture_start > geo->aperture_end)
		return -EINVAL;
	if (geo->aperture_start) {
		below = uiommu_zalloc(sizeof(*below));
		if (!below)
			return -ENOMEM;
	}
	if (geo->aperture_end != UINT64_MAX) {
		above = uiommu_zalloc(sizeof(*above));
		if (!above) {
			rc = -ENOMEM;
			goto out_free;
		}
	}

	uiommu_down_write(&iopt->domains_rwsem);
	uiommu_down_write(&iopt->iova_rwsem);
	for (i = 0; i != iopt->nr_domains; i++) {
		if (WARN_ON(iopt->domains[i] == domain)) {
			rc = -EEXIST;
			goto out_unlock;
		}
	}
	if (iopt->nr_domains == iopt->domains_cap) {
		unsigned int cap = iopt->domains_cap ? iopt->domains_cap * 2 : 2;
		struct iommu_domain **domains =
			uiommu_realloc_array(iopt->domains, cap, sizeof(*domains));

		if (!domains) {
			rc = -ENOMEM;
			goto out_unlock;
		}
		iopt->domains = domains;
		iopt->domains_cap = cap;
	}
	rc = __iopt_calculate_iova_alignment(iopt, domain);
	if (rc)
		goto out_unlock;
	if (below) {
		rc = __iopt_reserve_iova(iopt, below, 0, geo->aperture_start - 1, domain);
		if (rc)
			goto err_restore_alignment;
		below = NULL;
	}
	if (above) {
		rc = __iopt_reserve_iova(iopt, above, geo->aperture_end + 1, UINT64_MAX, domain);
		if (rc)
			goto err_unreserve;
		above = NULL;
	}
	rc = iopt_fill_domain(iopt, domain);
	if (rc)
		goto err_unreserve;
	iopt->domains[iopt->nr_domains++] = domain;
	goto out_unlock;

err_unreserve:
	__iopt_remove_reserved_iova(iopt, domain);
err_restore_alignment:
	WARN_ON(iopt_calculate_iova_alignment(iopt));
out_unlock:
	/* A failed first attach leaves no array behind. */
	if (rc && !iopt->nr_domains) {
		uiommu_free(iopt->domains);
		iopt->domains = NULL;
		iopt->domains_cap = 0;
	}
	uiommu_up_write(&iopt->iova_rwsem);
	uiommu_up_write(&iopt->domains_rwsem);
out_free:
	uiommu_free(below);
	uiommu_free(above);
	return rc;
}

/**
 * iopt_table_remove_domain() - stop mirroring the table into @domain, and empty it
 * Unpins every area when it was the last domain; the alignment falls back. Never fails.
 */
void iopt_table_remove_domain(struct io_pagetable *iopt, struct iommu_domain *domain)
{
	struct rangemap_iter it;
	struct iopt_area *area;
	unsigned int i;

	uiommu_down_write(&iopt->domains_rwsem);
	uiommu_down_write(&iopt->iova_rwsem);
	for (i = 0; i != iopt->nr_domains; i++)
		if (iopt->domains[i] == domain)
			break;
	if (WARN_ON(i == iopt->nr_domains))
		goto out_unlock;
	iopt->domains[i] = iopt->domains[--iopt->nr_domains];
	iopt_for_each_area(area, &it, iopt, 0, UINT64_MAX) {
		iopt_area_unmap_domain(area, domain);
		if (!iopt->nr_domains && area->pinned) {
			iopt_pages_unpin(area->pages, &area->pin);
			area->pinned = false;
		}
	}
	__iopt_remove_reserved_iova(iopt, domain);
	/* Only falls: cannot fail. */
	WARN_ON(iopt_calculate_iova_alignment(iopt));
	if (!iopt->nr_domains) {
		uiommu_free(iopt->domains);
		iopt->domains = NULL;
		iopt->domains_cap = 0;
	}
out_unlock:
	uiommu_up_write(&iopt->iova_rwsem);
	uiommu_up_write(&iopt->domains_rwsem);
}

/* ---- accesses ------------------------------------------------------------------------------ */

/**
 * iopt_add_access() - list @access in the table; its alignment joins the table's
 * Return: 0, -EADDRINUSE when an area breaks the access's alignment, -ENOMEM.
 */
int iopt_add_access(struct io_pagetable *iopt, struct iopt_access *access)
{
	int rc = 0;

	uiommu_down_read(&iopt->domains_rwsem);
	uiommu_down_write(&iopt->iova_rwsem);
	if (iopt->nr_accesses == iopt->accesses_cap) {
		unsigned int cap = iopt->accesses_cap ? iopt->accesses_cap * 2 : 2;
		struct iopt_access **accesses =
			uiommu_realloc_array(iopt->accesses, cap, sizeof(*accesses));

		if (!accesses) {
			rc = -ENOMEM;
			goto out_unlock;
		}
		iopt->accesses = accesses;
		iopt->accesses_cap = cap;
	}
	iopt->accesses[iopt->nr_accesses++] = access;
	rc = iopt_calculate_iova_alignment(iopt);
	if (rc)
		iopt->accesses[--iopt->nr_accesses] = NULL;
out_unlock:
	/* A failed first add leaves no array behind. */
	if (rc && !iopt->nr_accesses) {
		uiommu_free(iopt->accesses);
		iopt->accesses = NULL;
		iopt->accesses_cap = 0;
	}
	uiommu_up_write(&iopt->iova_rwsem);
	uiommu_up_read(&iopt->domains_rwsem);
	return rc;
}

/* Unlists @access (which holds no pins in the table any more); the alignment may fall. */
void iopt_remove_access(struct io_pagetable *iopt, struct iopt_access *access)
{
	unsigned int i;

	uiommu_down_read(&iopt->domains_rwsem);
	uiommu_down_write(&iopt->iova_rwsem);
	for (i = 0; i != iopt->nr_accesses; i++)
		if (iopt->accesses[i] == access)
			break;
	if (!WARN_ON(i == iopt->nr_accesses)) {
		iopt->accesses[i] = iopt->accesses[--iopt->nr_accesses];
		/* Only falls: cannot fail. */
		WARN_ON(iopt_calculate_iova_alignment(iopt));
	}
	if (!iopt->nr_accesses) {
		uiommu_free(iopt->accesses);
		iopt->accesses = NULL;
		iopt->accesses_cap = 0;
	}
	uiommu_up_write(&iopt->iova_rwsem);
	uiommu_up_read(&iopt->domains_rwsem);
}

/**
 * iopt_disable_large_pages() - IOMMU_OPTION_HUGE_PAGES = 0: map in PAGE_SIZE units only
 * Return: 0, or -EADDRINUSE when an existing area is not page aligned (nothing changes).
 */
int iopt_disable_large_pages(struct io_pagetable *iopt)
{
	int rc = 0;

	uiommu_down_read(&iopt->domains_rwsem);
	uiommu_down_write(&iopt->iova_rwsem);
	if (iopt->disable_large_pages)
		goto out_unlock;
	iopt->disable_large_pages = true;
	rc = iopt_calculate_iova_alignment(iopt);
	if (rc)
		iopt->disable_large_pages = false;
out_unlock:
	uiommu_up_write(&iopt->iova_rwsem);
	uiommu_up_read(&iopt->domains_rwsem);
	return rc;
}

void iopt_enable_large_pages(struct io_pagetable *iopt)
{
	uiommu_down_read(&iopt->domains_rwsem);
	uiommu_down_write(&iopt->iova_rwsem);
	iopt->disable_large_pages = false;
	WARN_ON(iopt_calculate_iova_alignment(iopt));
	uiommu_up_write(&iopt->iova_rwsem);
	uiommu_up_read(&iopt->domains_rwsem);
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
	struct iopt_usable_range *ranges;
	unsigned long max;
	unsigned long count;
};

static int iopt_usable_span(void *arg, bool is_hole, uint64_t start, uint64_t last)
{
	struct iopt_ranges_out *out = arg;

	if (!is_hole)
		return 0;
	if (out->count < out->max) {
		out->ranges[out->count].start = start;
		out->ranges[out->count].last = last;
	}
	out->count++;
	return 0;
}

unsigned long iopt_get_usable_ranges(struct io_pagetable *iopt,
				     struct iopt_usable_range *ranges, unsigned long max)
{
	struct iopt_ranges_out out = { .ranges = ranges, .max = max };

	lockdep_assert_rwsem_held(&iopt->iova_rwsem);
	interval_tree_for_each_span(&iopt->reserved_itree, 0, UINT64_MAX, iopt_usable_span, &out);
	return out.count;
}

void iopt_usable_publish(struct io_pagetable *iopt)
{
	struct iopt_usable *usable, *old;
	struct iopt_usable_range few[IOPT_USABLE_RCU_MAX];
	unsigned long nr, gen;

	lockdep_assert_rwsem_held(&iopt->iova_rwsem);
	/* No writer while we hold the lock: the generation stays what it is. */
	gen = atomic_load_explicit(&iopt->usable_gen, memory_order_relaxed);
	old = atomic_load_explicit(&iopt->usable, memory_order_acquire);
	if (old && old->gen == gen)
		return;
	nr = iopt_get_usable_ranges(iopt, few, ARRAY_SIZE(few));
	/* Lock-free readers answer from a handful of ranges; more go the locked way. */
	if (nr > ARRAY_SIZE(few))
		return;
	usable = uiommu_zalloc(sizeof(*usable) + nr * sizeof(usable->ranges[0]));
	if (!usable)
		return;
	usable->gen = gen;
	usable->iova_alignment = iopt->iova_alignment;
	usable->nr = nr;
	memcpy(usable->ranges, few, nr * sizeof(few[0]));
	/* Another reader under the same shared lock may have built the same one first. */
	if (!atomic_compare_exchange_strong_explicit(&iopt->usable, &old, usable,
						     memory_order_release, memory_order_relaxed))
		uiommu_free(usable);
	else if (old)
		call_rcu(&old->rcu, iopt_usable_free_rcu);
}

bool iopt_only_file_areas(struct io_pagetable *iopt)
{
	struct rangemap_iter it;
	struct iopt_area *area;

	lockdep_assert_rwsem_held(&iopt->iova_rwsem);
	iopt_for_each_area(area, &it, iopt, 0, UINT64_MAX)
		if (area->pages->type != IOPT_ADDRESS_FILE || area->pages->dmabuf)
			return false;
	return true;
}

int iopt_collect_pages(struct io_pagetable *iopt, struct iopt_pages ***list, size_t *num)
{
	size_t count = iopt->areas.count;
	struct rangemap_iter it;
	struct iopt_pages **grown;
	struct iopt_area *area;

	lockdep_assert_rwsem_held(&iopt->iova_rwsem);
	if (!count)
		return 0;
	grown = uiommu_realloc_array(*list, *num + count, sizeof(**list));
	if (!grown)
		return -ENOMEM;
	iopt_for_each_area(area, &it, iopt, 0, UINT64_MAX)
		grown[(*num)++] = area->pages;
	*list = grown;
	return 0;
}
