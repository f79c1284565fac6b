// SPDX-License-Identifier: MIT
/*
 * The DMA API over the IOMMU core, and the device emulator's side of DMA.
 *
 * The cookie. Every DMA-API domain (DMA or DMA-FQ) carries an `iommu_dma_cookie` in
 * domain->iova_cookie, created by iommu_get_dma_cookie() when the core makes the domain and freed
 * by iommu_put_dma_cookie() before the driver frees the domain. It holds the domain's IOVA
 * allocator (iova.c) and its flush queues. The cookie being set is also how the hot path tells a
 * DMA-API domain from others: domain->type may be rewritten by a live DMA -> DMA-FQ switch while
 * mappings run, so it is never read here for a domain that has a cookie.
 *
 * Mapping (dma_map_single -> iommu_dma_map_phys): the buffer is widened to whole granules, an
 * IOVA of that many frames is allocated (below 4 GiB first, as the kernel does for PCI devices,
 * then anywhere under the device's limit and the aperture), and iommu_map() writes the page
 * table. Unmapping clears the page table at once with iommu_unmap_fast(); then:
 *
 *   - strict (DMA): iommu_iotlb_sync() sends the driver's invalidation for the range, and only
 *     after it returns is the IOVA freed, so no device can use the old translation and no new
 *     mapping can reuse the IOVA while an IOTLB could still translate it;
 *   - lazy (DMA-FQ): the IOVA range goes into a flush queue instead. A queue is flushed when it
 *     is full, when its oldest entry has waited IOVA_FQ_TIMEOUT_MS (checked by the next map or
 *     unmap on the domain: there is no timer thread, so an idle domain keeps its entries until
 *     it is used again or iommu_dma_flush_fq() is called), or on iommu_dma_flush_fq(). A flush
 *     is one flush_iotlb_all() of the driver, bracketed by two counters: fq_flush_start_cnt
 *     (incremented before) and fq_flush_finish_cnt (after). An entry records the start count
 *     when it is queued; it may be freed once the finish count is above that, because then a
 *     flush that started after the entry's page-table unmap has completed. The IOVA (and with
 *     it the page-table slot) is thus never reused before the flush that covers it.
 *
 * Queues are per thread (the IOVA allocator's thread slots; a thread without a slot shares one
 * extra queue), each under its own spinlock, which only its thread takes on the common path,
 * as the kernel's per-CPU queues. A full queue flushes the IOTLB and frees its own entries; a
 * timeout or an explicit flush frees the covered entries of every queue.
 *
 * The live DMA -> DMA-FQ switch (iommu_dma_init_fq): the queues' shared part is set up, then
 * fq_enabled is set with a release store; an unmap that reads it (acquire) queues, one that ran
 * before is strict. Both are correct at any moment, so drivers may keep mapping meanwhile. The
 * core flips domain->type after we return.
 *
 * DMA-FQ needs IOMMU_CAP_DEFERRED_FLUSH. We learn it from the device's instance,
 * dev->iommu->deferred_flush (or the driver's capable() op when it has one), in
 * iommu_setup_dma_ops(dev), which the core calls for each device once its group's default
 * domain is set: the domain's flush queue is stopped and the domain downgraded to DMA there
 * when the instance cannot defer. iommu_get_dma_cookie() has no device to ask, so it starts the
 * queue of a DMA-FQ domain optimistically (a failure downgrades at once, as the kernel does).
 * Finding the default domain in iommu_setup_dma_ops() uses the core's lockless
 * iommu_get_dma_domain(dev): the core calls us with the group mutex held, so the locking
 * iommu_get_domain_for_dev() would deadlock. The map path uses it too, so a bound driver's
 * DMA takes no group mutex.
 *
 * The device side (dma_device_read/write): the domain the device is attached to now, then for
 * each 4 KiB page, the IOTLB of the device's instance (iotlb.c): a hit is used even if stale, a
 * miss walks the page table and fills. Identity: the DMA address is the CPU address. Blocked:
 * every access faults.
 *
 * Lock order (outermost first): iommu_dma_fq::lock (one at a time) -> the driver's locks taken
 * by flush_iotlb_all -> IOTLB set locks; and iommu_dma_fq::lock -> iova.c's locks (freeing
 * queued IOVAs). No lock of this file is held while calling into the core.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#include "iommu/dma-iommu.h"
#include "iommu/iotlb.h"
#include "iommu/iova.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"

#define IOVA_FQ_SHARED IOVA_THREAD_SLOTS /* the queue of threads without a slot */


struct iommu_dma_fq_entry {
	unsigned long pfn;
	unsigned long pages;
	uint64_t counter; /* fq_flush_start_cnt when queued */
};

/* One thread's queue; padded so that no other allocation shares its lines (IOVA_HOT_PAD). */
struct iommu_dma_fq {
	char pad_before[IOVA_HOT_PAD];
	atomic_int lock;        /* spin; see the lock order above */
	unsigned int head;      /* lock; free-running, index modulo IOVA_FQ_SIZE */
	unsigned int tail;      /* lock */
	struct iommu_dma_fq_entry entries[IOVA_FQ_SIZE];
	char pad_after[IOVA_HOT_PAD];
};

/*
 * Read by every map and unmap: domain, fq_enabled, fq[], fq_deadline (written once per
 * timeout). Written by every flush: the two counts (read by every queueing) and the statistics,
 * on lines of their own so that a flush does not take the read-mostly lines from the other CPUs.
 */
struct iommu_dma_cookie {
	struct iova_domain iovad;
	struct iommu_domain *domain;
	_Atomic bool fq_enabled;                   /* release store in iommu_dma_init_fq() */
	/* Allocated by their slot's thread on first use (the shared one at FQ start). */
	_Atomic(struct iommu_dma_fq *) fq[IOVA_THREAD_SLOTS + 1];
	_Atomic uint64_t fq_deadline;              /* ns, CLOCK_MONOTONIC_COARSE; 0: none armed */
	char pad_read_mostly[IOVA_HOT_PAD];
	_Atomic uint64_t fq_flush_start_cnt;
	_Atomic uint64_t fq_flush_finish_cnt;
	char pad_counts[IOVA_HOT_PAD];
	_Atomic unsigned long fq_flushes;
	_Atomic unsigned long fq_timeouts;
	char pad_after[IOVA_HOT_PAD];
};

static uint64_t iommu_dma_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int dma_info_to_prot(enum dma_data_direction dir)
{
	switch (dir) {
	case DMA_BIDIRECTIONAL:
		return IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE;
	case DMA_TO_DEVICE:
		return IOMMU_READ | IOMMU_CACHE;
	case DMA_FROM_DEVICE:
		return IOMMU_WRITE | IOMMU_CACHE;
	default:
		return 0;
	}
}

struct iova_domain *iommu_dma_iovad(struct iommu_domain *domain)
{
	return domain && domain->iova_cookie ? &domain->iova_cookie->iovad : NULL;
}

/* ---- flush queues --------------------------------------------------------------------------- */

static void iommu_dma_fq_lock(struct iommu_dma_fq *fq)
{
	unsigned int spins = 0;

	/* A holder preempted by a busy machine gets the CPU back now and then (as iova.c's). */
	while (atomic_exchange_explicit(&fq->lock, 1, memory_order_acquire))
		while (atomic_load_explicit(&fq->lock, memory_order_relaxed))
			if (++spins % 64 == 0)
				sched_yield();
}

/* The lock if it is free now; the timeout's flush does not wait for a queue in use. */
static bool iommu_dma_fq_trylock(struct iommu_dma_fq *fq)
{
	return !atomic_load_explicit(&fq->lock, memory_order_relaxed) &&
	       !atomic_exchange_explicit(&fq->lock, 1, memory_order_acquire);
}

static void iommu_dma_fq_unlock(struct iommu_dma_fq *fq)
{
	atomic_store_explicit(&fq->lock, 0, memory_order_release);
}

/* One IOTLB flush of the whole domain, counted so queued entries know what it covers. */
static void iommu_dma_fq_flush_iotlb(struct iommu_dma_cookie *cookie)
{
	atomic_fetch_add_explicit(&cookie->fq_flush_start_cnt, 1, memory_order_seq_cst);
	iommu_flush_iotlb_all(cookie->domain);
	/* Pairs with the acquire in iommu_dma_fq_ring_free(): the flush is done before the free. */
	atomic_fetch_add_explicit(&cookie->fq_flush_finish_cnt, 1, memory_order_release);
	atomic_fetch_add_explicit(&cookie->fq_flushes, 1, memory_order_relaxed);
}

/*
 * Frees the entries of @fq, the queue of thread slot @slot, that a completed flush covers, into
 * that thread's IOVA cache whoever frees them. Caller holds fq->lock.
 */
static void iommu_dma_fq_ring_free(struct iommu_dma_cookie *cookie, struct iommu_dma_fq *fq,
				   int slot)
{
	uint64_t done = atomic_load_explicit(&cookie->fq_flush_finish_cnt, memory_order_acquire);

	while (fq->head != fq->tail) {
		struct iommu_dma_fq_entry *e = &fq->entries[fq->head % IOVA_FQ_SIZE];

		if (e->counter >= done)
			break;
		/* The shared queue has no slot (-1): the freeing thread's cache. */
		iova_free_fast_slot(&cookie->iovad, slot, e->pfn, e->pages);
		fq->head++;
	}
}

/*
 * Flushes the IOTLB once and frees what it covered in every queue. With @skip_busy (the
 * timeout), a queue whose lock is held is left alone: its thread is queueing, and frees what
 * the flush covered itself as it does (iommu_dma_fq_queue() first frees the covered entries).
 * Spinning there instead lost to that thread's next op nearly every time (the lock is not
 * fair) and stole the lock's line from it while waiting.
 */
static void iommu_dma_fq_flush_all(struct iommu_dma_cookie *cookie, bool skip_busy)
{
	bool pending = false;
	unsigned int i;

	iommu_dma_fq_flush_iotlb(cookie);
	for (i = 0; i <= IOVA_THREAD_SLOTS; i++) {
		struct iommu_dma_fq *fq = atomic_load_explicit(&cookie->fq[i], memory_order_acquire);

		if (!fq)
			continue;
		if (!skip_busy)
			iommu_dma_fq_lock(fq);
		else if (!iommu_dma_fq_trylock(fq)) {
			pending = true; /* its thread frees them; the deadline stays armed */
			continue;
		}
		iommu_dma_fq_ring_free(cookie, fq, i == IOVA_FQ_SHARED ? -1 : (int)i);
		pending |= fq->head != fq->tail;
		iommu_dma_fq_unlock(fq);
	}
	/* Entries queued while we ran wait for the next timeout. */
	if (pending)
		atomic_store_explicit(&cookie->fq_deadline,
				      iommu_dma_now_ns() + IOVA_FQ_TIMEOUT_MS * 1000000ull,
				      memory_order_relaxed);
}

/* The timer, run by whoever maps or unmaps next: one thread flushes once the deadline passed. */
static void iommu_dma_fq_check_timeout(struct iommu_dma_cookie *cookie)
{
	uint64_t deadline = atomic_load_explicit(&cookie->fq_deadline, memory_order_relaxed);

	if (likely(!deadline) || iommu_dma_now_ns() < deadline)
		return;
	if (!atomic_compare_exchange_strong_explicit(&cookie->fq_deadline, &deadline, 0,
						     memory_order_relaxed, memory_order_relaxed))
		return;
	atomic_fetch_add_explicit(&cookie->fq_timeouts, 1, memory_order_relaxed);
	iommu_dma_fq_flush_all(cookie, true);
}

/* This thread's queue, created on first use; NULL when there is no memory for it. */
static struct iommu_dma_fq *iommu_dma_fq_get(struct iommu_dma_cookie *cookie)
{
	int slot = iova_thread_slot();
	unsigned int i = slot < 0 ? IOVA_FQ_SHARED : (unsigned int)slot;
	struct iommu_dma_fq *fq = atomic_load_explicit(&cookie->fq[i], memory_order_acquire);

	if (likely(fq) || i == IOVA_FQ_SHARED)
		return fq;
	fq = uiommu_zalloc(sizeof(*fq));
	if (!fq)
		return NULL;
	atomic_init(&fq->lock, 0);
	/* Only this slot's thread stores here; pairs with the flushers' acquire loads. */
	atomic_store_explicit(&cookie->fq[i], fq, memory_order_release);
	return fq;
}

static void iommu_dma_fq_queue(struct iommu_dma_cookie *cookie, struct iommu_dma_fq *fq,
			       unsigned long pfn, unsigned long pages)
{
	int slot = iova_thread_slot(); /* ours, or -1 with the shared queue */
	struct iommu_dma_fq_entry *e;
	uint64_t zero = 0;

	iommu_dma_fq_lock(fq);
	/* First free what earlier flushes covered; a full queue then flushes for itself. */
	iommu_dma_fq_ring_free(cookie, fq, slot);
	/*
	 * A loop, not one flush: while another thread's flush is in flight the finish count may
	 * trail our own flush, and entries queued after that other flush started are not covered
	 * yet. Each of our flushes raises the finish count by one, so this ends; writing into a
	 * full ring instead would overwrite the oldest entry and free the new one twice.
	 */
	while (fq->tail - fq->head == IOVA_FQ_SIZE) {
		iommu_dma_fq_flush_iotlb(cookie);
		iommu_dma_fq_ring_free(cookie, fq, slot);
	}
	e = &fq->entries[fq->tail % IOVA_FQ_SIZE];
	e->pfn = pfn;
	e->pages = pages;
	/* After the page-table unmap: only a flush that starts later covers this entry. */
	e->counter = atomic_load_explicit(&cookie->fq_flush_start_cnt, memory_order_seq_cst);
	fq->tail++;
	iommu_dma_fq_unlock(fq);

	if (!atomic_load_explicit(&cookie->fq_deadline, memory_order_relaxed))
		atomic_compare_exchange_strong_explicit(
			&cookie->fq_deadline, &zero,
			iommu_dma_now_ns() + IOVA_FQ_TIMEOUT_MS * 1000000ull, memory_order_relaxed,
			memory_order_relaxed);
}

void iommu_dma_flush_fq(struct iommu_domain *domain)
{
	struct iommu_dma_cookie *cookie = domain ? domain->iova_cookie : NULL;

	if (!cookie || !atomic_load_explicit(&cookie->fq_enabled, memory_order_acquire))
		return;
	atomic_store_explicit(&cookie->fq_deadline, 0, memory_order_relaxed);
	iommu_dma_fq_flush_all(cookie, false);
}

/**
 * iommu_dma_init_fq() - start lazy invalidation on a DMA-API domain (the live switch)
 *
 * May run while the domain's driver maps and unmaps. The caller changes domain->type after
 * this succeeds. Idempotent.
 *
 * Return: 0; -EINVAL for a domain without a cookie; -ENOMEM.
 */
int iommu_dma_init_fq(struct iommu_domain *domain)
{
	struct iommu_dma_cookie *cookie = domain->iova_cookie;
	struct iommu_dma_fq *shared;

	if (!cookie)
		return -EINVAL;
	if (atomic_load_explicit(&cookie->fq_enabled, memory_order_acquire))
		return 0;
	if (!atomic_load_explicit(&cookie->fq[IOVA_FQ_SHARED], memory_order_acquire)) {
		shared = uiommu_zalloc(sizeof(*shared));
		if (!shared)
			return -ENOMEM;
		atomic_init(&shared->lock, 0);
		atomic_store_explicit(&cookie->fq[IOVA_FQ_SHARED], shared, memory_order_release);
	}
	/* Pairs with the acquire in iommu_dma_unmap_phys(): a queuer sees the shared queue. */
	atomic_store_explicit(&cookie->fq_enabled, true, memory_order_release);
	return 0;
}

/* Back to strict: drains every queue. Only while no driver uses the domain (probe time). */
static void iommu_dma_stop_fq(struct iommu_dma_cookie *cookie)
{
	if (!atomic_load_explicit(&cookie->fq_enabled, memory_order_acquire))
		return;
	atomic_store_explicit(&cookie->fq_enabled, false, memory_order_release);
	iommu_dma_fq_flush_all(cookie, false);
	atomic_store_explicit(&cookie->fq_deadline, 0, memory_order_relaxed);
}

/* ---- cookies -------------------------------------------------------------------------------- */

/**
 * iommu_get_dma_cookie() - give a new DMA-API domain its IOVA allocator
 *
 * Called by the core with the domain not yet attached. The granule is the smallest page size of
 * the domain, and IOVAs start at its aperture (never at 0). A DMA-FQ domain gets its flush
 * queue started; if that fails it becomes DMA.
 *
 * Return: 0; -EEXIST when it has one; -EINVAL without page sizes; -ENOMEM.
 */
int iommu_get_dma_cookie(struct iommu_domain *domain)
{
	struct iommu_dma_cookie *cookie;
	unsigned long granule;
	unsigned int i;
	int ret;

	if (domain->iova_cookie)
		return -EEXIST;
	if (!domain->pgsize_bitmap)
		return -EINVAL;
	granule = (unsigned long)uiommu_ffs64_bit(domain->pgsize_bitmap);
	cookie = uiommu_zalloc(sizeof(*cookie));
	if (!cookie)
		return -ENOMEM;
	ret = iova_domain_init(&cookie->iovad, granule,
			       (unsigned long)(domain->geometry.aperture_start /
					       (uint64_t)granule));
	if (ret)
		goto err_free;
	cookie->domain = domain;
	atomic_init(&cookie->fq_enabled, false);
	for (i = 0; i <= IOVA_THREAD_SLOTS; i++)
		atomic_init(&cookie->fq[i], NULL);
	domain->iova_cookie = cookie;
	if (iommu_domain_type(domain) == IOMMU_DOMAIN_DMA_FQ && iommu_dma_init_fq(domain))
		iommu_domain_set_type(domain, IOMMU_DOMAIN_DMA);
	return 0;

err_free:
	uiommu_free(cookie);
	return ret;
}

/**
 * iommu_put_dma_cookie() - free @domain's cookie (the domain is going away)
 *
 * Nothing may map or unmap any more. Queued IOVAs are flushed (the IOTLB forgets the domain).
 */
void iommu_put_dma_cookie(struct iommu_domain *domain)
{
	struct iommu_dma_cookie *cookie = domain->iova_cookie;
	unsigned int i;

	if (!cookie)
		return;
	if (atomic_load_explicit(&cookie->fq_enabled, memory_order_acquire))
		iommu_dma_fq_flush_iotlb(cookie);
	/* The id is never reused, but the entries would take IOTLB space until evicted. */
	iotlb_inv_domain(domain);
	for (i = 0; i <= IOVA_THREAD_SLOTS; i++)
		uiommu_free(atomic_load_explicit(&cookie->fq[i], memory_order_relaxed));
	iova_domain_destroy(&cookie->iovad);
	domain->iova_cookie = NULL;
	uiommu_free(cookie);
}

/**
 * iommu_setup_dma_ops() - @dev's DMA now goes through its group's default domain
 *
 * Called by the core with the group mutex held. A DMA-FQ default domain behind an instance
 * without deferred-flush support goes back to strict DMA here. The device's direct-mapped and
 * reserved regions are kept out of the IOVA space.
 */
void iommu_setup_dma_ops(struct device *dev)
{
	struct iommu_domain *domain;
	struct iommu_dma_cookie *cookie;
	struct iommu_device *iommu = dev->iommu;
	struct iommu_resv_region regions[8];
	unsigned int i, nr;
	bool can_defer;

	domain = iommu_get_dma_domain(dev);
	if (!domain || !domain->iova_cookie)
		return;
	cookie = domain->iova_cookie;
	can_defer = iommu && iommu->deferred_flush;
	if (iommu && iommu->ops && iommu->ops->capable)
		can_defer = iommu->ops->capable(dev, IOMMU_CAP_DEFERRED_FLUSH);
	if (iommu_domain_type(domain) == IOMMU_DOMAIN_DMA_FQ && !can_defer) {
		iommu_dma_stop_fq(cookie);
		iommu_domain_set_type(domain, IOMMU_DOMAIN_DMA);
	}
	nr = iommu_get_resv_regions(dev, regions, ARRAY_SIZE(regions));
	for (i = 0; i < nr; i++) {
		const struct iommu_resv_region *r = &regions[i];
		struct iova_domain *iovad = &cookie->iovad;

		/* SW_MSI is ours to manage (the kernel maps MSI doorbells there); none here. */
		if (!r->length || r->type == IOMMU_RESV_SW_MSI)
			continue;
		/* Best effort, as the kernel's: a failure only risks a clash with a later map. */
		iova_reserve(iovad, iova_pfn(iovad, r->start),
			     iova_pfn(iovad, r->start + r->length - 1));
	}
}

void iommu_dma_get_stats(struct iommu_domain *domain, struct iommu_dma_stats *st)
{
	struct iommu_dma_cookie *cookie = domain->iova_cookie;
	unsigned int i;

	*st = (struct iommu_dma_stats){ 0 };
	if (!cookie)
		return;
	st->fq_enabled = atomic_load_explicit(&cookie->fq_enabled, memory_order_acquire);
	st->fq_flushes = atomic_load_explicit(&cookie->fq_flushes, memory_order_relaxed);
	st->fq_timeouts = atomic_load_explicit(&cookie->fq_timeouts, memory_order_relaxed);
	for (i = 0; i <= IOVA_THREAD_SLOTS; i++) {
		struct iommu_dma_fq *fq = atomic_load_explicit(&cookie->fq[i], memory_order_acquire);

		if (!fq)
			continue;
		iommu_dma_fq_lock(fq);
		st->fq_pending += fq->tail - fq->head;
		iommu_dma_fq_unlock(fq);
	}
}

/* ---- map and unmap -------------------------------------------------------------------------- */

static uint64_t iommu_dma_alloc_iova(struct iommu_dma_cookie *cookie, uint64_t size,
				     uint64_t dma_limit)
{
	struct iommu_domain *domain = cookie->domain;
	struct iova_domain *iovad = &cookie->iovad;
	unsigned long shift = iova_shift(iovad), len = (unsigned long)(size >> shift), pfn = 0;
	const uint64_t limit32 = UINT32_MAX;

	if (domain->geometry.aperture_end && domain->geometry.aperture_end < dma_limit)
		dma_limit = domain->geometry.aperture_end;
	/* Below 4 GiB first (single-address-cycle DMA is cheaper on real PCI), then anywhere. */
	if (dma_limit > limit32)
		pfn = iova_alloc_fast(iovad, len, (unsigned long)(limit32 >> shift), false);
	if (!pfn)
		pfn = iova_alloc_fast(iovad, len, (unsigned long)(dma_limit >> shift), true);
	return (uint64_t)pfn << shift;
}

dma_addr_t iommu_dma_map_phys(struct iommu_domain *domain, phys_addr_t phys, size_t size,
			      int prot, uint64_t dma_limit)
{
	struct iommu_dma_cookie *cookie = domain->iova_cookie;
	struct iova_domain *iovad;
	uint64_t off, iova;

	if (!cookie || !size || !prot)
		return DMA_MAPPING_ERROR;
	iovad = &cookie->iovad;
	off = iova_offset(iovad, phys);
	if (check_add_overflow((uint64_t)size, off, &iova))
		return DMA_MAPPING_ERROR;
	size = iova_align(iovad, iova);
	if (atomic_load_explicit(&cookie->fq_enabled, memory_order_relaxed))
		iommu_dma_fq_check_timeout(cookie);
	iova = iommu_dma_alloc_iova(cookie, size, dma_limit);
	if (!iova)
		return DMA_MAPPING_ERROR;
	if (iommu_map(domain, iova, phys - off, size, prot)) {
		/* Never visible to a device: no invalidation needed, free at once. */
		iova_free_fast(iovad, iova_pfn(iovad, iova), size >> iova_shift(iovad));
		return DMA_MAPPING_ERROR;
	}
	return iova + off;
}

void iommu_dma_unmap_phys(struct iommu_domain *domain, dma_addr_t addr, size_t size)
{
	struct iommu_dma_cookie *cookie = domain->iova_cookie;
	struct iommu_iotlb_gather gather;
	struct iommu_dma_fq *fq = NULL;
	struct iova_domain *iovad;
	unsigned long pfn, pages;
	size_t unmapped;
	uint64_t off;

	if (WARN_ON(!cookie) || addr == DMA_MAPPING_ERROR)
		return;
	iovad = &cookie->iovad;
	off = iova_offset(iovad, addr);
	addr -= off;
	size = iova_align(iovad, size + off);
	pfn = iova_pfn(iovad, addr);
	pages = size >> iova_shift(iovad);

	/* Pairs with the release in iommu_dma_init_fq(). */
	if (atomic_load_explicit(&cookie->fq_enabled, memory_order_acquire)) {
		iommu_dma_fq_check_timeout(cookie);
		fq = iommu_dma_fq_get(cookie); /* NULL: no memory for a queue, be strict */
	}
	iommu_iotlb_gather_init(&gather);
	gather.queued = fq != NULL;
	unmapped = iommu_unmap_fast(domain, addr, size, &gather);
	WARN_ON(unmapped != size);
	if (!fq) {
		iommu_iotlb_sync(domain, &gather);
		iova_free_fast(iovad, pfn, pages);
		return;
	}
	iommu_dma_fq_queue(cookie, fq, pfn, pages);
}

/* ---- the device-level API ------------------------------------------------------------------- */

/* The default domain the DMA API of a bound driver uses. */
static struct iommu_domain *iommu_dma_domain_of(struct device *dev)
{
	return iommu_get_dma_domain(dev);
}

dma_addr_t dma_map_single(struct device *dev, void *cpu_addr, size_t size,
			  enum dma_data_direction dir)
{
	int prot = dma_info_to_prot(dir);
	struct iommu_domain *domain;

	if (!prot || !size)
		return DMA_MAPPING_ERROR;
	domain = iommu_dma_domain_of(dev);
	if (!domain)
		return (dma_addr_t)(uintptr_t)cpu_addr; /* no IOMMU: direct */
	if (domain->iova_cookie)
		return iommu_dma_map_phys(domain, (phys_addr_t)(uintptr_t)cpu_addr, size, prot,
					  UINT64_MAX);
	if (iommu_domain_type(domain) == IOMMU_DOMAIN_IDENTITY)
		return (dma_addr_t)(uintptr_t)cpu_addr;
	return DMA_MAPPING_ERROR;
}

void dma_unmap_single(struct device *dev, dma_addr_t addr, size_t size,
		      enum dma_data_direction dir)
{
	struct iommu_domain *domain = iommu_dma_domain_of(dev);

	(void)dir;
	if (domain && domain->iova_cookie)
		iommu_dma_unmap_phys(domain, addr, size);
}

int iommu_dma_device_access(struct iommu_device *iommu, struct iommu_domain *domain,
			    uint64_t addr, void *buf, size_t len, bool write)
{
	int access = write ? IOMMU_WRITE : IOMMU_READ;
	struct iotlb *tlb = NULL;
	char *p = buf;

	/* A DMA-API domain's type may be changing under us (DMA -> DMA-FQ): test the cookie. */
	if (!domain || (!domain->iova_cookie && iommu_domain_type(domain) == IOMMU_DOMAIN_IDENTITY)) {
		if (write)
			memcpy((void *)(uintptr_t)addr, p, len);
		else
			memcpy(p, (const void *)(uintptr_t)addr, len);
		return 0;
	}
	if (!domain->iova_cookie && !(iommu_domain_type(domain) & __IOMMU_DOMAIN_PAGING))
		return -EFAULT; /* blocked (or a type without a page table): the IOMMU faults */
	if (iommu) {
		tlb = iotlb_for_iommu(iommu);
		if (IS_ERR(tlb))
			tlb = NULL; /* no IOTLB to cache in: walk every time */
	}
	while (len) {
		uint64_t chunk = IOTLB_PAGE_SIZE - (addr & (IOTLB_PAGE_SIZE - 1));
		phys_addr_t phys;
		int ret;

		if (chunk > len)
			chunk = len;
		if (tlb) {
			ret = iotlb_translate(tlb, domain, addr, access, &phys);
		} else {
			phys = iommu_iova_to_phys(domain, addr);
			ret = phys ? 0 : -EFAULT;
		}
		if (ret)
			return ret;
		if (write)
			memcpy((void *)(uintptr_t)phys, p, chunk);
		else
			memcpy(p, (const void *)(uintptr_t)phys, chunk);
		p += chunk;
		addr += chunk;
		len -= chunk;
	}
	return 0;
}

int dma_device_read(struct device *dev, dma_addr_t addr, void *buf, size_t len)
{
	return iommu_dma_device_access(dev->iommu, iommu_get_domain_for_dev(dev), addr, buf, len,
				       false);
}

int dma_device_write(struct device *dev, dma_addr_t addr, const void *buf, size_t len)
{
	return iommu_dma_device_access(dev->iommu, iommu_get_domain_for_dev(dev), addr,
				       (void *)(uintptr_t)buf, len, true);
}
