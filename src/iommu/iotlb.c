// SPDX-License-Identifier: MIT
/*
 * The IOTLB model.
 *
 * What it models. A real IOMMU caches translations: a device's DMA to an IOVA is translated by
 * the IOTLB when it hits, and the page table is walked only on a miss. Until software sends an
 * invalidation, a cached translation survives any change to the page table. That is the whole
 * difference between the DMA API's strict mode (invalidate before unmap returns) and its lazy
 * flush-queue mode (invalidate later, in batches): under DMA-FQ a device can still reach an
 * unmapped buffer until the flush. The model makes that window real and testable.
 *
 * Data model. One `struct iotlb` per IOMMU instance, found through a small table keyed by the
 * iommu_device (created on first use; the core's struct iommu_device has no field for it). An
 * IOTLB is IOTLB_SETS sets of IOTLB_WAYS entries, like the hardware's: an entry is tagged with
 * (domain id, IOVA page number) and holds (physical page number, prot). The set is chosen by the
 * low bits of the page number mixed with the domain id, so consecutive pages of one domain
 * spread over consecutive sets. A fill replaces an invalid way, else the way under the set's
 * round-robin hand. The capacity is fixed: memory is bounded by construction and nothing is ever
 * allocated or freed after creation.
 *
 * Concurrency, and why not liburcu. Lookups come from every DMA thread at once and must not
 * serialise; fills and invalidations are rarer and may. Two designs fit:
 *
 *   - an RCU hash table (rculfhash, urcu-bp): lock-free lookups, but every fill allocates a node
 *     and every eviction or invalidation frees one through call_rcu(). An IOTLB churns by
 *     nature (a bounded cache under a working set bigger than itself evicts on every fill), so
 *     the deferred frees and the allocator would dominate, and the bound on memory would depend
 *     on the grace-period thread keeping up. A hit also costs the hash table's bucket-chain walk
 *     and the reader registration check of urcu-bp.
 *   - a fixed array of sets, each with a sequence counter (a seqlock per set, i.e. a striped
 *     lock whose readers take nothing). A hit reads the set's counter, compares WAYS tags on
 *     one or two cache lines, and reads the counter again: no store, so DMA threads hitting the
 *     same sets do not bounce lines between CPUs, and nothing is allocated or freed.
 *
 * We use the second. Writers (fill, invalidate) take a set by moving its counter from even to
 * odd with a compare-and-swap (the counter is the lock), write the entries with relaxed atomic
 * stores after a release fence, and release the set by storing the next even value. Readers
 * load the counter (acquire), the entries (relaxed), fence (acquire), and load the counter
 * again; if it was odd or changed they retry. Every shared field is a C11 atomic, so the
 * sanitizers see no data race.
 *
 * The fill race. A fill walks the page table and then writes the entry. Unmap + invalidate may
 * run between the two: the walk saw the old mapping, the invalidation found nothing to remove,
 * and the fill would then plant a stale entry that no invalidation covers (real hardware avoids
 * this because an invalidation waits for walks in flight). So each set has an invalidation
 * generation: an invalidation that takes the set increments it (a release store, under the set
 * lock); a fill reads its set's generation (acquire) before the walk, and writes the entry only
 * if, once it holds the set, the generation is unchanged. If the invalidation held the set
 * first, the fill's lock orders it after the increment and it sees the change; if the fill held
 * it first, the invalidation takes the set after it and removes the entry; and a fill whose
 * first read already saw the increment synchronised with it, so its walk sees the page table
 * as the unmap left it. The translation a dropped fill found is still used once: that access
 * was in flight before the invalidation completed, as on hardware.
 *
 * Invalidations that find nothing write nothing. Most invalidations remove nothing (the DMA
 * API unmaps buffers the device never touched, or touched through another instance), and an
 * invalidation that locked every set it covers would write those sets' lines: a domain-wide
 * flush (flush_iotlb_all, every 256 unmaps of each flush queue) writes all 256 of them, and two
 * threads flushing in turn would bounce every line between their CPUs. So an invalidation first
 * reads each set as a lookup does (the seqlock read side) and takes the set only when it holds
 * an entry to remove or a writer is inside. That alone would reopen the fill race for a fill
 * that walked before the unmap and takes its set after the read; so a fill announces itself in
 * `fills_inflight` (a seq_cst increment, before it reads the generation and walks) and leaves
 * after it released the set, and an invalidation that sees any fill in flight (after a seq_cst
 * fence that orders the caller's page-table update before the read) locks every set it covers,
 * as before. Either the invalidation sees the fill's increment, or the fill's walk sees the
 * page table as the unmap left it (the store-buffering pattern, with a seq_cst operation on
 * each side). And an invalidation that reads no fill in flight and a set without the entry has
 * nothing to remove: a fill that finished before wrote its entry before leaving (release,
 * paired with the acquire read of the counter), so the read would have seen it.
 *
 * Domains that never filled. The commonest invalidation of all is of a domain whose devices
 * never went through this IOTLB (an attached device that has not done DMA yet, a DMA API
 * domain unmapping buffers no device touched), yet reading the sets a range covers
 * (min(n, IOTLB_SETS) for n pages) costs 3-4 ns a set, which made an attached 256-page unmap
 * several times dearer than its page-table work. So each IOTLB keeps one
 * line of bits, one per domain id modulo IOTLB_FILLED_BITS, set by a fill (after its
 * announcement in `fills_inflight`, before its walk; only when clear, so the line stays
 * shared) and never cleared. An invalidation that reads no fill in flight and its domain's
 * bit clear returns without reading a set: a fill that finished set the bit before its
 * release decrement, which the invalidation's acquire read of the count saw, so the bit
 * would be seen; a fill that had not announced itself walks after the caller's page-table
 * update (the argument above). Ids that share a bit, and domains whose entries were since
 * evicted, only cost the reads as before.
 *
 * Nothing the map/unmap path writes is shared between pages: an invalidation of one page reads
 * only that page's set (its own 128-byte line), and writes it only to remove an entry, so
 * threads unmapping different pages on different CPUs do not contend (the counters live in the
 * sets for the same reason). An earlier design had one generation per IOTLB, incremented by
 * every invalidation: with two threads unmapping, that one line bounced between the CPUs on
 * every unmap. The fills' counter is written only by misses, which walk the page table anyway.
 *
 * The drivers. The IOTLB is a driver's hardware, so the drivers come to it: struct
 * iommu_domain_ops has no walk that reports permissions, so a driver registers its walker
 * (iotlb_register_walker()) when it registers its first instance, before any of its devices
 * can fill an entry; and its iotlb_sync and flush_iotlb_all send their invalidation commands
 * here (iotlb_inv_range(), iotlb_inv_domain()). The core never names a driver.
 *
 * Dirty bits. A walk for a write sets the leaf's dirty bit in a domain that tracks them (the
 * walker does, as the page-table walker of real hardware does). An entry remembers whether the
 * bit was clear when it was filled (IOTLB_PROT_CLEAN): a write that hits such an entry walks
 * and refills, so no write gets past a clear bit. An entry filled with the bit set lets writes
 * through until it is invalidated, which is why whoever clears dirty bits must invalidate what
 * it cleared (the gather of a read_and_clear_dirty), and why turning tracking on flushes.
 *
 * Lock order: iotlb_table_lock (global, creation and release of IOTLBs, walker registration)
 * is never held while a set is. A set lock is a leaf: nothing is taken inside it.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "iommu/iotlb.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"

#define IOTLB_VALID 1u
#define IOTLB_PROT_SHIFT 1

struct iotlb_entry {
	_Atomic uint64_t pfn;      /* IOVA page number */
	_Atomic uint64_t phys_pfn; /* physical page number */
	_Atomic uint32_t domid;
	_Atomic uint32_t flags;    /* IOTLB_VALID | prot << IOTLB_PROT_SHIFT */
};

struct iotlb_set {
	_Atomic uint32_t seq;      /* odd: a writer holds the set; the set's lock */
	uint32_t hand;             /* the next victim way; seq held */
	_Atomic uint32_t inv_gen;  /* invalidations of this set; see "the fill race"; written
				      with seq held, read by fills without it */
	_Atomic uint32_t fills;    /* statistics; written with seq held */
	struct iotlb_entry e[IOTLB_WAYS];
} __attribute__((aligned(128)));

_Static_assert(sizeof(struct iotlb_set) == 128, "a set is its own pair of cache lines");

#define IOTLB_FILLED_BITS 512u /* one cache line of domain-id bits */

struct iotlb {
	struct iommu_device *iommu;
	/* Fills between their announcement and their set's release; see above. Own line. */
	_Alignas(128) _Atomic uint32_t fills_inflight;
	/* Domain ids (mod IOTLB_FILLED_BITS) that ever filled here; see above. Own line. */
	_Alignas(128) _Atomic uint64_t filled[IOTLB_FILLED_BITS / 64];
	struct iotlb_set sets[IOTLB_SETS];
};

/* The instance table and the walker table; iotlb_table_lock serialises their writers, a leaf. */
UIOMMU_MUTEX_DEFINE(iotlb_table_lock);
static struct {
	_Atomic(struct iommu_device *) iommu; /* published last, with release */
	_Atomic(struct iotlb *) tlb;
} iotlb_table[IOTLB_MAX_INSTANCES];
static _Atomic unsigned int iotlb_table_used; /* high-water mark of iotlb_table */

#define IOTLB_MAX_WALKERS 8
static struct {
	_Atomic(const struct iommu_ops *) owner; /* published last, with release */
	iotlb_walk_fn walk;
} iotlb_walkers[IOTLB_MAX_WALKERS];
static _Atomic unsigned int iotlb_walkers_used;

/* ---- the table of instances ----------------------------------------------------------------- */

int iotlb_register_walker(const struct iommu_ops *owner, iotlb_walk_fn walk)
{
	unsigned int i, n;
	int ret = 0;

	uiommu_mutex_lock(&iotlb_table_lock);
	n = atomic_load_explicit(&iotlb_walkers_used, memory_order_relaxed);
	for (i = 0; i < n; i++)
		if (atomic_load_explicit(&iotlb_walkers[i].owner, memory_order_relaxed) == owner)
			goto out_unlock;
	if (n == IOTLB_MAX_WALKERS) {
		ret = -ENOSPC;
		goto out_unlock;
	}
	iotlb_walkers[n].walk = walk;
	/* Pairs with the acquire in iotlb_walk(): a reader that sees @owner sees @walk. */
	atomic_store_explicit(&iotlb_walkers[n].owner, owner, memory_order_release);
	atomic_store_explicit(&iotlb_walkers_used, n + 1, memory_order_release);
out_unlock:
	uiommu_mutex_unlock(&iotlb_table_lock);
	return ret;
}

static struct iotlb *iotlb_find(struct iommu_device *iommu)
{
	unsigned int i, n = atomic_load_explicit(&iotlb_table_used, memory_order_acquire);

	for (i = 0; i < n; i++)
		if (atomic_load_explicit(&iotlb_table[i].iommu, memory_order_acquire) == iommu)
			return atomic_load_explicit(&iotlb_table[i].tlb, memory_order_relaxed);
	return NULL;
}

struct iotlb *iotlb_for_iommu(struct iommu_device *iommu)
{
	struct iotlb *tlb = iotlb_find(iommu);
	unsigned int i, n;

	if (likely(tlb))
		return tlb;
	uiommu_mutex_lock(&iotlb_table_lock);
	tlb = iotlb_find(iommu);
	if (tlb)
		goto out_unlock;
	n = atomic_load_explicit(&iotlb_table_used, memory_order_relaxed);
	for (i = 0; i < n; i++)
		if (!atomic_load_explicit(&iotlb_table[i].iommu, memory_order_relaxed))
			break;
	if (i == IOTLB_MAX_INSTANCES) {
		tlb = ERR_PTR(-ENOSPC);
		goto out_unlock;
	}
	/* Zeroed memory is an empty IOTLB: every counter even, every entry invalid. */
	tlb = uiommu_zalloc(sizeof(*tlb));
	if (!tlb) {
		tlb = ERR_PTR(-ENOMEM);
		goto out_unlock;
	}
	tlb->iommu = iommu;
	atomic_store_explicit(&iotlb_table[i].tlb, tlb, memory_order_relaxed);
	/* Pairs with the acquire in iotlb_find(): who finds @iommu finds the whole IOTLB. */
	atomic_store_explicit(&iotlb_table[i].iommu, iommu, memory_order_release);
	if (i == n)
		atomic_store_explicit(&iotlb_table_used, n + 1, memory_order_release);
out_unlock:
	uiommu_mutex_unlock(&iotlb_table_lock);
	return tlb;
}

void iotlb_release(struct iommu_device *iommu)
{
	struct iotlb *tlb = NULL;
	unsigned int i, n;

	uiommu_mutex_lock(&iotlb_table_lock);
	n = atomic_load_explicit(&iotlb_table_used, memory_order_relaxed);
	for (i = 0; i < n; i++) {
		if (atomic_load_explicit(&iotlb_table[i].iommu, memory_order_relaxed) == iommu) {
			tlb = atomic_load_explicit(&iotlb_table[i].tlb, memory_order_relaxed);
			atomic_store_explicit(&iotlb_table[i].iommu, NULL, memory_order_relaxed);
			atomic_store_explicit(&iotlb_table[i].tlb, NULL, memory_order_relaxed);
			break;
		}
	}
	uiommu_mutex_unlock(&iotlb_table_lock);
	uiommu_free(tlb);
}

/* ---- sets ----------------------------------------------------------------------------------- */

static inline struct iotlb_set *iotlb_set_of(struct iotlb *tlb, uint32_t domid, uint64_t pfn)
{
	uint64_t mix = ((uint64_t)domid * UINT64_C(0x9e3779b97f4a7c15)) >> 40;

	return &tlb->sets[(pfn ^ mix) & (IOTLB_SETS - 1)];
}

static void iotlb_set_lock(struct iotlb_set *set)
{
	unsigned int spins = 0;

	for (;;) {
		uint32_t s = atomic_load_explicit(&set->seq, memory_order_relaxed);

		if (!(s & 1) && atomic_compare_exchange_weak_explicit(&set->seq, &s, s + 1,
								      memory_order_seq_cst,
								      memory_order_relaxed))
			break;
		if (++spins % 64 == 0)
			sched_yield();
	}
	/* The entry stores below must not become visible before the odd counter. */
	atomic_thread_fence(memory_order_release);
}

static void iotlb_set_unlock(struct iotlb_set *set)
{
	uint32_t s = atomic_load_explicit(&set->seq, memory_order_relaxed);

	/* Pairs with the readers' acquire load: a reader of the even value sees our entries. */
	atomic_store_explicit(&set->seq, s + 1, memory_order_release);
}

static inline void iotlb_entry_clear(struct iotlb_entry *e)
{
	atomic_store_explicit(&e->flags, 0, memory_order_relaxed);
}

/*
 * One read of @set for (@domid, @pfn): false when a writer held the set or came and went
 * (then read again). The first read of the counter is not waited on: an odd value (a writer
 * inside) never matches the second read with its low bit cleared, as the counter only grows,
 * so one compare covers both. The way's flags (0: none) and output into @flags, @phys_pfn.
 */
static inline __attribute__((always_inline)) bool
iotlb_set_read(struct iotlb_set *set, uint32_t domid, uint64_t pfn, uint32_t *flags,
	       uint64_t *phys_pfn)
{
	uint32_t s = atomic_load_explicit(&set->seq, memory_order_acquire);
	unsigned int w;

	*flags = 0;
	/*
	 * The page number first: it tells most ways apart, so a way that is not the one costs
	 * one compare (issue 12's "at most 2x a plain hash lookup").
	 */
	for (w = 0; w < IOTLB_WAYS; w++) {
		struct iotlb_entry *e = &set->e[w];

		if (atomic_load_explicit(&e->pfn, memory_order_relaxed) != pfn ||
		    atomic_load_explicit(&e->domid, memory_order_relaxed) != domid)
			continue;
		*flags = atomic_load_explicit(&e->flags, memory_order_relaxed);
		if (*flags & IOTLB_VALID) {
			*phys_pfn = atomic_load_explicit(&e->phys_pfn, memory_order_relaxed);
			break;
		}
	}
	/* The loads above complete before the counter is read again. */
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(&set->seq, memory_order_relaxed) == (s & ~1u);
}

/* The end of a lookup whose first read met a writer: read until no writer interferes. */
static __attribute__((noinline)) bool iotlb_lookup_retry(struct iotlb_set *set, uint32_t domid,
							 uint64_t iova, phys_addr_t *phys,
							 int *prot)
{
	uint64_t phys_pfn = 0;
	uint32_t flags;

	while (!iotlb_set_read(set, domid, iova >> IOTLB_PAGE_SHIFT, &flags, &phys_pfn))
		;
	if (!(flags & IOTLB_VALID))
		return false;
	*phys = (phys_pfn << IOTLB_PAGE_SHIFT) | (iova & (IOTLB_PAGE_SIZE - 1));
	*prot = (int)(flags >> IOTLB_PROT_SHIFT);
	return true;
}

/*
 * The retry loop is out of line (a tail call): inside the loop, the compiler kept a register
 * for each way's address across retries, and saved five callee-saved registers for them.
 */
bool iotlb_lookup(struct iotlb *tlb, uint32_t domid, uint64_t iova, phys_addr_t *phys, int *prot)
{
	uint64_t pfn = iova >> IOTLB_PAGE_SHIFT, phys_pfn = 0;
	struct iotlb_set *set = iotlb_set_of(tlb, domid, pfn);
	uint32_t flags;

	if (unlikely(!iotlb_set_read(set, domid, pfn, &flags, &phys_pfn)))
		return iotlb_lookup_retry(set, domid, iova, phys, prot);
	if (!(flags & IOTLB_VALID))
		return false;
	*phys = (phys_pfn << IOTLB_PAGE_SHIFT) | (iova & (IOTLB_PAGE_SIZE - 1));
	*prot = (int)(flags >> IOTLB_PROT_SHIFT);
	return true;
}

/* Adds the translation to @set unless an invalidation took it since @gen was read. */
static void iotlb_fill(struct iotlb_set *set, uint32_t domid, uint64_t pfn, uint64_t phys_pfn,
		       int prot, uint32_t gen)
{
	struct iotlb_entry *victim = NULL;
	unsigned int w;

	if (uiommu_should_fail())
		return; /* a fill that does not happen is only a later miss */
	iotlb_set_lock(set);
	if (atomic_load_explicit(&set->inv_gen, memory_order_relaxed) != gen)
		goto out_unlock;
	for (w = 0; w < IOTLB_WAYS; w++) {
		struct iotlb_entry *e = &set->e[w];
		uint32_t flags = atomic_load_explicit(&e->flags, memory_order_relaxed);

		if (!(flags & IOTLB_VALID)) {
			if (!victim)
				victim = e;
			continue;
		}
		if (atomic_load_explicit(&e->pfn, memory_order_relaxed) == pfn &&
		    atomic_load_explicit(&e->domid, memory_order_relaxed) == domid) {
			victim = e;
			break;
		}
	}
	if (!victim)
		victim = &set->e[set->hand++ % IOTLB_WAYS];
	atomic_store_explicit(&victim->pfn, pfn, memory_order_relaxed);
	atomic_store_explicit(&victim->domid, domid, memory_order_relaxed);
	atomic_store_explicit(&victim->phys_pfn, phys_pfn, memory_order_relaxed);
	atomic_store_explicit(&victim->flags, IOTLB_VALID | ((uint32_t)prot << IOTLB_PROT_SHIFT),
			      memory_order_relaxed);
	atomic_store_explicit(&set->fills, atomic_load_explicit(&set->fills, memory_order_relaxed) + 1,
			      memory_order_relaxed);
out_unlock:
	iotlb_set_unlock(set);
}

/* The registered walk of @domain's driver. */
static phys_addr_t iotlb_walk(struct iommu_domain *domain, uint64_t iova, int access, int *prot)
{
	unsigned int i, n = atomic_load_explicit(&iotlb_walkers_used, memory_order_acquire);

	for (i = 0; i < n; i++)
		if (atomic_load_explicit(&iotlb_walkers[i].owner, memory_order_acquire) ==
		    domain->owner)
			return iotlb_walkers[i].walk(domain, iova, access, prot);
	*prot = IOMMU_READ | IOMMU_WRITE;
	return domain->ops->iova_to_phys ? domain->ops->iova_to_phys(domain, iova) : 0;
}

static _Atomic uint64_t *iotlb_filled_word(struct iotlb *tlb, uint32_t domid, uint64_t *bit)
{
	*bit = UINT64_C(1) << (domid % 64);
	return &tlb->filled[(domid % IOTLB_FILLED_BITS) / 64];
}

/* A fill's mark, made once per domain id: the read keeps the line shared after that. */
static void iotlb_mark_filled(struct iotlb *tlb, uint32_t domid)
{
	uint64_t bit;
	_Atomic uint64_t *word = iotlb_filled_word(tlb, domid, &bit);

	if (!(atomic_load_explicit(word, memory_order_relaxed) & bit))
		atomic_fetch_or_explicit(word, bit, memory_order_seq_cst);
}

int iotlb_fetch(struct iotlb *tlb, struct iommu_domain *domain, uint64_t iova, int access,
		phys_addr_t *phys, int *prot)
{
	uint64_t page = iova & ~(IOTLB_PAGE_SIZE - 1);
	struct iotlb_set *set;
	phys_addr_t pa;
	uint32_t gen;

	*prot = 0;
	/* A write through an entry cached clean must reach the page table's dirty bit. */
	if (likely(iotlb_lookup(tlb, domain->id, iova, phys, prot)) &&
	    !((access & IOMMU_WRITE) && (*prot & IOTLB_PROT_CLEAN))) {
		*prot &= IOMMU_READ | IOMMU_WRITE;
		return 0;
	}
	/* Announced before the walk: pairs with the fence in iotlb_inv_one(). */
	atomic_fetch_add_explicit(&tlb->fills_inflight, 1, memory_order_seq_cst);
	atomic_thread_fence(memory_order_seq_cst);
	iotlb_mark_filled(tlb, domain->id);
	/* Read before the walk; pairs with the release in iotlb_set_inv(): see "the fill race". */
	set = iotlb_set_of(tlb, domain->id, page >> IOTLB_PAGE_SHIFT);
	gen = atomic_load_explicit(&set->inv_gen, memory_order_acquire);
	pa = iotlb_walk(domain, page, access, prot);
	if (pa)
		iotlb_fill(set, domain->id, page >> IOTLB_PAGE_SHIFT, pa >> IOTLB_PAGE_SHIFT,
			   *prot, gen);
	/* Release: an invalidation that reads the decrement sees the entry we wrote. */
	atomic_fetch_sub_explicit(&tlb->fills_inflight, 1, memory_order_release);
	if (!pa)
		return -EFAULT;
	*prot &= IOMMU_READ | IOMMU_WRITE;
	*phys = (pa & ~(IOTLB_PAGE_SIZE - 1)) | (iova & (IOTLB_PAGE_SIZE - 1));
	return 0;
}

int iotlb_translate(struct iotlb *tlb, struct iommu_domain *domain, uint64_t iova, int access,
		    phys_addr_t *phys)
{
	int prot, ret;

	ret = iotlb_fetch(tlb, domain, iova, access, phys, &prot);
	if (ret)
		return ret;
	if ((prot & access) != access)
		return -EFAULT;
	return 0;
}

/* ---- invalidation --------------------------------------------------------------------------- */

/*
 * Does @set hold an entry of @domid in [@first, @last], or is a writer inside (the read side of
 * a lookup, without retrying: a writer means "take the lock and see")?
 */
static bool iotlb_set_may_hold(struct iotlb_set *set, uint32_t domid, uint64_t first,
			       uint64_t last)
{
	uint32_t s1 = atomic_load_explicit(&set->seq, memory_order_acquire), s2;
	bool found = false;
	unsigned int w;

	if (s1 & 1)
		return true;
	for (w = 0; w < IOTLB_WAYS && !found; w++) {
		struct iotlb_entry *e = &set->e[w];
		uint64_t pfn;

		if (!(atomic_load_explicit(&e->flags, memory_order_relaxed) & IOTLB_VALID) ||
		    atomic_load_explicit(&e->domid, memory_order_relaxed) != domid)
			continue;
		pfn = atomic_load_explicit(&e->pfn, memory_order_relaxed);
		found = pfn >= first && pfn <= last;
	}
	atomic_thread_fence(memory_order_acquire);
	s2 = atomic_load_explicit(&set->seq, memory_order_relaxed);
	return found || s1 != s2;
}

/* Removes @domid's entries in [@first, @last] from @set; with @lock_always, also takes it when
 * it seems to hold none (a fill is in flight). */
static void iotlb_set_inv(struct iotlb_set *set, uint32_t domid, uint64_t first, uint64_t last,
			  bool lock_always)
{
	unsigned int w;

	if (!lock_always && !iotlb_set_may_hold(set, domid, first, last))
		return;
	iotlb_set_lock(set);
	/* A fill that walked before our caller's unmap now cannot add its entry. */
	atomic_store_explicit(&set->inv_gen,
			      atomic_load_explicit(&set->inv_gen, memory_order_relaxed) + 1,
			      memory_order_release);
	for (w = 0; w < IOTLB_WAYS; w++) {
		struct iotlb_entry *e = &set->e[w];
		uint64_t pfn;

		if (!(atomic_load_explicit(&e->flags, memory_order_relaxed) & IOTLB_VALID) ||
		    atomic_load_explicit(&e->domid, memory_order_relaxed) != domid)
			continue;
		pfn = atomic_load_explicit(&e->pfn, memory_order_relaxed);
		if (pfn >= first && pfn <= last)
			iotlb_entry_clear(e);
	}
	iotlb_set_unlock(set);
}

static void iotlb_inv_one(struct iotlb *tlb, uint32_t domid, uint64_t first, uint64_t last)
{
	uint64_t pfn;
	unsigned int i;
	bool fills;

	/*
	 * Our caller's page-table update before the read of the fills in flight; pairs with the
	 * seq_cst increment in iotlb_fetch() (see "invalidations that find nothing").
	 */
	atomic_thread_fence(memory_order_seq_cst);
	fills = atomic_load_explicit(&tlb->fills_inflight, memory_order_acquire) != 0;
	if (!fills) {
		uint64_t bit;
		_Atomic uint64_t *word = iotlb_filled_word(tlb, domid, &bit);

		/* After the acquire above: a finished fill's mark is seen ("never filled"). */
		if (!(atomic_load_explicit(word, memory_order_relaxed) & bit))
			return;
	}
	if (last - first < IOTLB_SETS) {
		for (pfn = first;; pfn++) {
			iotlb_set_inv(iotlb_set_of(tlb, domid, pfn), domid, pfn, pfn, fills);
			if (pfn == last)
				break;
		}
		return;
	}
	for (i = 0; i < IOTLB_SETS; i++)
		iotlb_set_inv(&tlb->sets[i], domid, first, last, fills);
}

static void iotlb_inv_all_instances(uint32_t domid, uint64_t first, uint64_t last)
{
	unsigned int i, n = atomic_load_explicit(&iotlb_table_used, memory_order_acquire);

	for (i = 0; i < n; i++) {
		struct iotlb *tlb;

		if (!atomic_load_explicit(&iotlb_table[i].iommu, memory_order_acquire))
			continue;
		tlb = atomic_load_explicit(&iotlb_table[i].tlb, memory_order_relaxed);
		if (tlb)
			iotlb_inv_one(tlb, domid, first, last);
	}
}

void iotlb_inv_range(struct iommu_domain *domain, uint64_t iova, uint64_t size)
{
	uint64_t last;

	if (!size)
		return;
	if (check_add_overflow(iova, size - 1, &last))
		last = UINT64_MAX;
	iotlb_inv_all_instances(domain->id, iova >> IOTLB_PAGE_SHIFT, last >> IOTLB_PAGE_SHIFT);
}

void iotlb_inv_domain(struct iommu_domain *domain)
{
	iotlb_inv_all_instances(domain->id, 0, UINT64_MAX);
}

unsigned int iotlb_count(struct iotlb *tlb, uint32_t domid)
{
	unsigned int i, w, n = 0;

	for (i = 0; i < IOTLB_SETS; i++)
		for (w = 0; w < IOTLB_WAYS; w++) {
			struct iotlb_entry *e = &tlb->sets[i].e[w];

			if ((atomic_load_explicit(&e->flags, memory_order_relaxed) & IOTLB_VALID) &&
			    atomic_load_explicit(&e->domid, memory_order_relaxed) == domid)
				n++;
		}
	return n;
}

bool iotlb_stamp(struct iotlb *tlb, uint32_t domid, uint64_t iova, int access, phys_addr_t phys,
		 int prot, struct iotlb_stamp *stamp)
{
	const uint32_t rw = IOMMU_READ | IOMMU_WRITE;
	uint64_t pfn = iova >> IOTLB_PAGE_SHIFT;
	struct iotlb_set *set = iotlb_set_of(tlb, domid, pfn);
	uint32_t s1, s2, flags = 0;
	unsigned int w;
	bool hit = false;

	s1 = atomic_load_explicit(&set->seq, memory_order_acquire);
	if (s1 & 1)
		return false;
	for (w = 0; w < IOTLB_WAYS && !hit; w++) {
		struct iotlb_entry *e = &set->e[w];

		flags = atomic_load_explicit(&e->flags, memory_order_relaxed);
		hit = (flags & IOTLB_VALID) &&
		      atomic_load_explicit(&e->pfn, memory_order_relaxed) == pfn &&
		      atomic_load_explicit(&e->domid, memory_order_relaxed) == domid;
	}
	/*
	 * The entry must still say what the caller keeps: between its translation and this call
	 * the entry may have been invalidated and refilled with a new mapping (another device of
	 * the domain), and a stamp of that one would vouch for the old translation.
	 */
	if (hit && (atomic_load_explicit(&set->e[w - 1].phys_pfn, memory_order_relaxed) !=
			    phys >> IOTLB_PAGE_SHIFT ||
		    ((flags >> IOTLB_PROT_SHIFT) & rw) != ((uint32_t)prot & rw)))
		hit = false;
	atomic_thread_fence(memory_order_acquire);
	s2 = atomic_load_explicit(&set->seq, memory_order_relaxed);
	if (!hit || s1 != s2)
		return false;
	/* A write through a clean entry must walk again to reach the dirty bit. */
	if ((access & IOMMU_WRITE) && ((flags >> IOTLB_PROT_SHIFT) & IOTLB_PROT_CLEAN))
		return false;
	stamp->seq = &set->seq;
	stamp->val = s1;
	return true;
}

void iotlb_stats(struct iotlb *tlb, uint64_t *fills, uint64_t *invalidations)
{
	unsigned int i;

	*fills = 0;
	*invalidations = 0;
	for (i = 0; i < IOTLB_SETS; i++) {
		*fills += atomic_load_explicit(&tlb->sets[i].fills, memory_order_relaxed);
		*invalidations += atomic_load_explicit(&tlb->sets[i].inv_gen, memory_order_relaxed);
	}
}
