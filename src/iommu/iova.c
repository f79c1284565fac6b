// SPDX-License-Identifier: MIT
/*
 * The IOVA allocator of DMA-API domains.
 *
 * Data model. An iova_domain is an address space counted in frames of its granule. Every range
 * that is allocated, reserved, or sitting in a cache is a `struct iova` node in a red-black tree
 * (libbsd's <sys/tree.h>) ordered by pfn_lo; ranges never overlap. A permanent anchor node at
 * frame ULONG_MAX sits above everything, so a search always has a node to walk down from.
 *
 * Allocation is top-down, as the kernel's: the highest free range that fits below the limit is
 * taken, its start aligned to the size rounded up to a power of two. The search walks the gaps
 * between neighbouring nodes downwards from a hint, `cached_node`, the node the last allocation
 * created: allocations pack downwards from the limit, so the gaps above the hint are usually
 * full and starting there makes the common search O(1) instead of a walk over every live
 * range. If nothing fits below the hint, a second pass covers the space between the limit and
 * the hint. Freeing a range at or above the hint moves the hint just above it, so the hole is
 * seen. The smallest size-aligned request known to fail under a limit is remembered until the
 * next free, so an exhausted space answers at once.
 *
 * The caches (the kernel's "rcache", Bonwick's magazines). The DMA API allocates and frees
 * small ranges at a high rate; taking the tree's lock for each would serialise every mapping
 * thread. So a freed range of 1, 2, 4 ... 32 frames stays allocated in the tree and its first
 * frame goes into a magazine (an array of IOVA_MAG_SIZE frames) of the freeing thread, one
 * `loaded` and one `prev` magazine per size class and thread; an allocation of that class pops
 * from there. When both are full, a full magazine moves to the size class's depot (a global
 * LIFO, bounded at IOVA_DEPOT_MAX; past that its ranges go back to the tree), marked with the
 * thread slot that pushed it; when both are empty, a full one of the thread's own slot comes
 * back from the depot. Only the depot and the tree are shared.
 *
 * Chunks. A miss of a class smaller than IOVA_CHUNK_FRAMES does not take one range from the
 * tree but a whole aligned chunk of IOVA_CHUNK_FRAMES frames, cut into ranges of the class: one
 * is handed out, the others go into the thread's loaded magazine, and the next allocations pop
 * them in the order a top-down search would have produced. The reason is the page table:
 * eight 8-byte leaf entries share a 64-byte cache line, so two threads whose one-page IOVAs
 * came from the tree one after the other (X and X - 1) would write the same line on every map
 * and unmap, and that line bouncing between the CPUs cost more than all the rest of the op
 * (bench_dma, issue 13). A chunk keeps each thread's ranges on leaf lines of its own for as
 * long as they cycle through its own magazines, so the ranges are kept from travelling: a depot
 * magazine goes to another live thread only when no new chunk fits (then ranges of one chunk may
 * serve two threads, which is only slower), and a range freed on behalf of another thread (a
 * flush queue's, freed by whichever thread flushes) goes to that thread's cache
 * (iova_free_fast_slot()). A chunk that does not fit (a nearly full space) falls back to the
 * single range, so exhaustion behaves as without chunks.
 *
 * Per thread instead of per CPU. Each thread gets a slot number (0 .. IOVA_THREAD_SLOTS - 1) on
 * its first use, kept in a _Thread_local; each domain has one `iova_thread_cache` per slot,
 * allocated by the slot's thread on first use. A pthread key's destructor runs at thread exit,
 * returns the slot's magazines of every live domain to their depots and frees the slot for the
 * next thread. A thread cache's lock is a spinlock taken on every cached alloc and free by its
 * own thread (uncontended: its line is not shared with other threads) and by another thread only
 * to take the ranges back (exhaustion, stats) or to give a flush queue's back: the common
 * map/unmap path takes no shared lock. "Not shared" needs padding: thread caches are allocated
 * by their threads, and a thread's malloc arena passes to the next thread after it exits, so two
 * caches can come out back to back; IOVA_HOT_PAD keeps each one's fields, and the domain's
 * read-mostly fields, off the lines of anything else.
 *
 * Lock order (outermost first):
 *   1. iova_slots_lock (global mutex): the slot bitmap and the list of live domains; taken by
 *      slot assignment, thread exit, domain init and destroy.
 *   2. iova_thread_cache::lock (spinlock, per domain and slot): loaded[], prev[], the counters.
 *   3. iova_rcache::lock (mutex, per domain and size class): the depot.
 *   4. iova_domain::lock (mutex, per domain): the tree, the hint, the failure memo.
 * A lock may be skipped but never taken out of this order.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>

#include "iommu/iova.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"

struct iova_magazine {
	unsigned int size;               /* frames held, pfns[0 .. size - 1] */
	unsigned int owner;              /* the thread slot whose cache pushed it to the depot */
	struct iova_magazine *next;      /* in iova_rcache::depot */
	unsigned long pfns[IOVA_MAG_SIZE];
};

_Static_assert(sizeof(struct iova_magazine) == 1024, "a magazine is 1 KiB");

struct iova_thread_cache {
	char pad_before[IOVA_HOT_PAD];   /* see IOVA_HOT_PAD */
	atomic_int lock;                 /* order 2; spin */
	unsigned int slot;               /* immutable: whose cache this is */
	struct iova_magazine *loaded[IOVA_RANGE_CACHE_MAX_SIZE];
	struct iova_magazine *prev[IOVA_RANGE_CACHE_MAX_SIZE];
	/* Written by the slot's thread only (no RMW needed), read by stats. */
	atomic_ulong hits, misses;
	char pad_after[IOVA_HOT_PAD];
};

/* ---- the tree ------------------------------------------------------------------------------- */

static int iova_cmp(struct iova *a, struct iova *b)
{
	return a->pfn_lo < b->pfn_lo ? -1 : a->pfn_lo > b->pfn_lo;
}

/* libbsd spells the attribute of its static generator the BSD way. */
#ifndef __unused
#define __unused __attribute__((unused))
#endif
RB_GENERATE_STATIC(iova_rb, iova, rb, iova_cmp)

static unsigned long iova_order(unsigned long size)
{
	return size <= 1 ? 0 : (unsigned long)uiommu_fls64(size - 1);
}

/* The node containing @pfn. Caller holds iovad->lock. */
static struct iova *__iova_find(struct iova_domain *iovad, unsigned long pfn)
{
	struct iova *n = RB_ROOT(&iovad->rbroot);

	lockdep_assert_held(&iovad->lock);
	while (n) {
		if (pfn < n->pfn_lo)
			n = RB_LEFT(n, rb);
		else if (pfn > n->pfn_hi)
			n = RB_RIGHT(n, rb);
		else
			return n;
	}
	return NULL;
}

/* The lowest node starting above @pfn (the anchor at worst). Caller holds iovad->lock. */
static struct iova *__iova_above(struct iova_domain *iovad, unsigned long pfn)
{
	struct iova key = { .pfn_lo = pfn + 1 };

	return RB_NFIND(iova_rb, &iovad->rbroot, &key);
}

static void __iova_insert(struct iova_domain *iovad, struct iova *iova)
{
	RB_INSERT(iova_rb, &iovad->rbroot, iova);
}

/* Removes and frees @iova, keeping the hint above any hole it leaves. Caller holds the lock. */
static void __iova_remove(struct iova_domain *iovad, struct iova *iova)
{
	lockdep_assert_held(&iovad->lock);
	if (WARN_ON(iova == &iovad->anchor))
		return;
	if (iova->pfn_lo >= iovad->cached_node->pfn_lo)
		iovad->cached_node = RB_NEXT(iova_rb, &iovad->rbroot, iova);
	RB_REMOVE(iova_rb, &iovad->rbroot, iova);
	iovad->failed_size = ULONG_MAX;
	iovad->failed_limit = 0;
	uiommu_free(iova);
}

/*
 * Walks the gaps below @from downwards, each clipped to [@low, @high], and fills @new with the
 * highest fitting range. Caller holds the lock.
 */
static int __iova_search(struct iova_domain *iovad, struct iova *from, unsigned long high,
			 unsigned long low, unsigned long size, unsigned long align_mask,
			 struct iova *new)
{
	struct iova *curr = from, *prev;

	lockdep_assert_held(&iovad->lock);
	for (;;) {
		unsigned long gap_lo, top, pfn;

		prev = RB_PREV(iova_rb, &iovad->rbroot, curr);
		gap_lo = prev ? prev->pfn_hi + 1 : 0;
		if (gap_lo < low)
			gap_lo = low;
		if (curr->pfn_lo > gap_lo) {
			top = curr->pfn_lo - 1;
			if (top > high)
				top = high;
			if (top >= gap_lo && top - gap_lo >= size - 1) {
				pfn = (top - (size - 1)) & align_mask;
				if (pfn >= gap_lo) {
					new->pfn_lo = pfn;
					new->pfn_hi = pfn + size - 1;
					return 0;
				}
			}
		}
		if (!prev || prev->pfn_hi < low)
			return -ENOMEM;
		curr = prev;
	}
}

/*
 * Finds room for @size frames at or below @limit_pfn (its start aligned to @size rounded up to
 * a power of two when @size_aligned) and fills @new with it; inserts nothing. Caller holds the
 * lock and has clamped @limit_pfn below the anchor.
 */
static int __iova_alloc_range(struct iova_domain *iovad, unsigned long size,
			      unsigned long limit_pfn, bool size_aligned, struct iova *new)
{
	unsigned long align_mask = ULONG_MAX;
	struct iova *cached;
	int ret;

	lockdep_assert_held(&iovad->lock);
	if (size_aligned)
		align_mask <<= iova_order(size);
	if (size_aligned && size >= iovad->failed_size && limit_pfn <= iovad->failed_limit)
		return -ENOMEM;
	cached = iovad->cached_node;
	if (cached != &iovad->anchor && cached->pfn_lo <= limit_pfn) {
		ret = __iova_search(iovad, cached, limit_pfn, iovad->start_pfn, size, align_mask,
				    new);
		/* Then the space between the hint and the limit, which that pass did not see. */
		if (ret && cached->pfn_hi < limit_pfn)
			ret = __iova_search(iovad, __iova_above(iovad, limit_pfn), limit_pfn,
					    cached->pfn_hi + 1, size, align_mask, new);
	} else {
		ret = __iova_search(iovad, __iova_above(iovad, limit_pfn), limit_pfn,
				    iovad->start_pfn, size, align_mask, new);
	}
	if (ret && size_aligned) {
		/*
		 * Any size-aligned request at least this big fails under this limit too: it would
		 * contain a fit for this one.
		 */
		iovad->failed_size = size;
		iovad->failed_limit = limit_pfn;
	}
	return ret;
}

static unsigned long iova_clamp_limit(unsigned long limit_pfn)
{
	return limit_pfn >= ULONG_MAX - 1 ? ULONG_MAX - 2 : limit_pfn;
}

struct iova *iova_alloc(struct iova_domain *iovad, unsigned long size, unsigned long limit_pfn,
			bool size_aligned)
{
	struct iova *new;
	int ret;

	if (!size || size > limit_pfn)
		return ERR_PTR(size ? -ENOMEM : -EINVAL);
	limit_pfn = iova_clamp_limit(limit_pfn);
	new = uiommu_zalloc(sizeof(*new));
	if (!new)
		return ERR_PTR(-ENOMEM);

	uiommu_mutex_lock(&iovad->lock);
	ret = __iova_alloc_range(iovad, size, limit_pfn, size_aligned, new);
	if (ret)
		goto err_unlock;
	__iova_insert(iovad, new);
	iovad->cached_node = new;
	uiommu_mutex_unlock(&iovad->lock);
	atomic_fetch_add_explicit(&iovad->tree_allocs, 1, memory_order_relaxed);
	return new;

err_unlock:
	uiommu_mutex_unlock(&iovad->lock);
	uiommu_free(new);
	return ERR_PTR(ret);
}

struct iova *iova_find(struct iova_domain *iovad, unsigned long pfn)
{
	struct iova *iova;

	uiommu_mutex_lock(&iovad->lock);
	iova = __iova_find(iovad, pfn);
	if (iova == &iovad->anchor)
		iova = NULL;
	uiommu_mutex_unlock(&iovad->lock);
	return iova;
}

void iova_free(struct iova_domain *iovad, unsigned long pfn)
{
	struct iova *iova;

	uiommu_mutex_lock(&iovad->lock);
	iova = __iova_find(iovad, pfn);
	if (!WARN_ON(!iova || iova == &iovad->anchor))
		__iova_remove(iovad, iova);
	uiommu_mutex_unlock(&iovad->lock);
}

/*
 * Counts the holes of [@lo, @hi] (the parts no node covers) and, with @out, writes each into
 * the next node of @out, in order. Caller holds the lock.
 */
static unsigned long __iova_for_each_hole(struct iova_domain *iovad, unsigned long lo,
					  unsigned long hi, struct iova **out)
{
	struct iova *n = __iova_find(iovad, lo);
	unsigned long cursor = lo, count = 0;

	if (!n)
		n = __iova_above(iovad, lo - 1); /* the first node starting at @lo or above */
	while (cursor <= hi) {
		unsigned long hole_hi;

		if (n && n->pfn_lo <= hi) {
			if (n->pfn_lo > cursor) {
				hole_hi = n->pfn_lo - 1;
				goto hole;
			}
			if (n->pfn_hi >= hi)
				break;
			cursor = n->pfn_hi + 1;
			n = RB_NEXT(iova_rb, &iovad->rbroot, n);
			continue;
		}
		hole_hi = hi;
hole:
		if (out) {
			out[count]->pfn_lo = cursor;
			out[count]->pfn_hi = hole_hi;
		}
		count++;
		if (hole_hi >= hi)
			break;
		cursor = hole_hi + 1;
	}
	return count;
}

int iova_reserve(struct iova_domain *iovad, unsigned long pfn_lo, unsigned long pfn_hi)
{
	struct iova **nodes = NULL;
	unsigned long n, i;
	int ret = 0;

	if (pfn_lo > pfn_hi)
		return -EINVAL;
	if (pfn_hi >= ULONG_MAX - 1)
		pfn_hi = ULONG_MAX - 2;
	uiommu_mutex_lock(&iovad->lock);
	n = __iova_for_each_hole(iovad, pfn_lo, pfn_hi, NULL);
	if (!n)
		goto out_unlock;
	nodes = uiommu_calloc(n, sizeof(*nodes));
	if (!nodes) {
		ret = -ENOMEM;
		goto out_unlock;
	}
	for (i = 0; i < n; i++) {
		nodes[i] = uiommu_zalloc(sizeof(*nodes[i]));
		if (!nodes[i]) {
			ret = -ENOMEM;
			goto err_free_nodes;
		}
	}
	__iova_for_each_hole(iovad, pfn_lo, pfn_hi, nodes);
	for (i = 0; i < n; i++)
		__iova_insert(iovad, nodes[i]);
	goto out_free_array;

err_free_nodes:
	while (i--)
		uiommu_free(nodes[i]);
out_free_array:
	uiommu_free(nodes);
out_unlock:
	uiommu_mutex_unlock(&iovad->lock);
	return ret;
}

bool iova_verify(struct iova_domain *iovad)
{
	struct iova *n, *prev = NULL;
	bool ok = true;

	uiommu_mutex_lock(&iovad->lock);
	RB_FOREACH(n, iova_rb, &iovad->rbroot) {
		if (n->pfn_lo > n->pfn_hi)
			ok = false;
		if (prev && prev->pfn_hi >= n->pfn_lo)
			ok = false;
		if (n != &iovad->anchor && n->pfn_lo < iovad->start_pfn)
			ok = false;
		prev = n;
	}
	if (prev != &iovad->anchor)
		ok = false;
	uiommu_mutex_unlock(&iovad->lock);
	return ok;
}

/* ---- magazines ------------------------------------------------------------------------------ */

static bool iova_magazine_full(const struct iova_magazine *mag)
{
	return mag->size == IOVA_MAG_SIZE;
}

static bool iova_magazine_empty(const struct iova_magazine *mag)
{
	return !mag || !mag->size;
}

/* Gives every frame of @mag back to the tree, leaving it empty. */
static void iova_magazine_free_pfns(struct iova_domain *iovad, struct iova_magazine *mag)
{
	unsigned long i;

	if (iova_magazine_empty(mag))
		return;
	uiommu_mutex_lock(&iovad->lock);
	for (i = 0; i < mag->size; i++) {
		struct iova *iova = __iova_find(iovad, mag->pfns[i]);

		if (!WARN_ON(!iova || iova == &iovad->anchor))
			__iova_remove(iovad, iova);
	}
	uiommu_mutex_unlock(&iovad->lock);
	mag->size = 0;
}

/* The highest-indexed frame at or below @limit_pfn, taken out; 0 if none. */
static unsigned long iova_magazine_pop(struct iova_magazine *mag, unsigned long limit_pfn)
{
	unsigned long i, pfn;

	for (i = mag->size; i--;) {
		if (mag->pfns[i] <= limit_pfn) {
			pfn = mag->pfns[i];
			mag->pfns[i] = mag->pfns[--mag->size];
			return pfn;
		}
	}
	return 0;
}

/* ---- thread slots --------------------------------------------------------------------------- */

/* Order 1: the slot bitmap and the list of live domains. */
UIOMMU_MUTEX_DEFINE(iova_slots_lock);
static uint64_t iova_slots_used;                  /* iova_slots_lock */
static struct iova_domain *iova_live_domains;     /* iova_slots_lock */
static pthread_key_t iova_slot_key;
static pthread_once_t iova_slot_once = PTHREAD_ONCE_INIT;
static bool iova_slot_key_ok;
/* -1: not assigned yet; -2: every slot was taken when this thread asked. */
static _Thread_local int iova_tls_slot = -1;

_Static_assert(IOVA_THREAD_SLOTS <= 64, "the slot bitmap is one word");

static void iova_tc_lock(struct iova_thread_cache *tc)
{
	unsigned int spins = 0;

	while (atomic_exchange_explicit(&tc->lock, 1, memory_order_acquire)) {
		while (atomic_load_explicit(&tc->lock, memory_order_relaxed))
			if (++spins % 64 == 0)
				sched_yield();
	}
}

static void iova_tc_unlock(struct iova_thread_cache *tc)
{
	atomic_store_explicit(&tc->lock, 0, memory_order_release);
}

/*
 * Moves @mag (full or not) to the depot of class @c, or to the tree past IOVA_DEPOT_MAX. @owner
 * is the slot of the cache it comes from: that slot's thread takes it back first.
 */
static void iova_depot_push(struct iova_domain *iovad, unsigned int c, struct iova_magazine *mag,
			    unsigned int owner)
{
	struct iova_rcache *rcache = &iovad->rcaches[c];
	bool spill;

	if (iova_magazine_empty(mag)) {
		uiommu_free(mag);
		return;
	}
	mag->owner = owner;
	uiommu_mutex_lock(&rcache->lock);
	spill = rcache->depot_size >= IOVA_DEPOT_MAX;
	if (!spill) {
		mag->next = rcache->depot;
		rcache->depot = mag;
		rcache->depot_size++;
	}
	uiommu_mutex_unlock(&rcache->lock);
	if (spill) {
		iova_magazine_free_pfns(iovad, mag);
		uiommu_free(mag);
	}
}

/* Returns every magazine of @tc to the depots. Caller holds iova_slots_lock. */
static void iova_tc_return(struct iova_domain *iovad, struct iova_thread_cache *tc)
{
	unsigned int c;

	lockdep_assert_held(&iova_slots_lock);
	iova_tc_lock(tc);
	for (c = 0; c < IOVA_RANGE_CACHE_MAX_SIZE; c++) {
		iova_depot_push(iovad, c, tc->loaded[c], tc->slot);
		iova_depot_push(iovad, c, tc->prev[c], tc->slot);
		tc->loaded[c] = NULL;
		tc->prev[c] = NULL;
	}
	iova_tc_unlock(tc);
}

/* The pthread key destructor: the thread exits, its slot's caches go to the depots. */
static void iova_slot_release(void *arg)
{
	int slot = (int)(uintptr_t)arg - 1;
	struct iova_domain *iovad;

	uiommu_mutex_lock(&iova_slots_lock);
	for (iovad = iova_live_domains; iovad; iovad = iovad->next_live) {
		struct iova_thread_cache *tc =
			atomic_load_explicit(&iovad->tcache[slot], memory_order_acquire);

		if (tc)
			iova_tc_return(iovad, tc);
	}
	iova_slots_used &= ~((uint64_t)1 << slot);
	uiommu_mutex_unlock(&iova_slots_lock);
	iova_tls_slot = -1;
}

static void iova_slot_key_init(void)
{
	iova_slot_key_ok = !pthread_key_create(&iova_slot_key, iova_slot_release);
}

static int iova_thread_slot_assign(void)
{
	int slot;

	pthread_once(&iova_slot_once, iova_slot_key_init);
	if (!iova_slot_key_ok)
		goto err_none;
	uiommu_mutex_lock(&iova_slots_lock);
	if (iova_slots_used == UINT64_MAX) {
		uiommu_mutex_unlock(&iova_slots_lock);
		goto err_none;
	}
	slot = __builtin_ctzll(~iova_slots_used);
	iova_slots_used |= (uint64_t)1 << slot;
	uiommu_mutex_unlock(&iova_slots_lock);
	if (pthread_setspecific(iova_slot_key, (void *)(uintptr_t)(slot + 1))) {
		uiommu_mutex_lock(&iova_slots_lock);
		iova_slots_used &= ~((uint64_t)1 << slot);
		uiommu_mutex_unlock(&iova_slots_lock);
		goto err_none;
	}
	iova_tls_slot = slot;
	return slot;

err_none:
	iova_tls_slot = -2;
	return -1;
}

int iova_thread_slot(void)
{
	int slot = iova_tls_slot;

	if (likely(slot >= 0))
		return slot;
	if (slot == -2)
		return -1;
	return iova_thread_slot_assign();
}

/* This thread's cache of @iovad; created on first use when @create. NULL if none. */
static struct iova_thread_cache *iova_tc_get(struct iova_domain *iovad, bool create)
{
	struct iova_thread_cache *tc;
	int slot = iova_thread_slot();

	if (slot < 0)
		return NULL;
	/* Only this thread stores into its slot, so a relaxed load sees its own store. */
	tc = atomic_load_explicit(&iovad->tcache[slot], memory_order_relaxed);
	if (tc || !create)
		return tc;
	tc = uiommu_zalloc(sizeof(*tc));
	if (!tc)
		return NULL;
	atomic_init(&tc->lock, 0);
	atomic_init(&tc->hits, 0);
	atomic_init(&tc->misses, 0);
	tc->slot = (unsigned int)slot;
	/* Pairs with the acquire loads of remote flushes: they see an initialised cache. */
	atomic_store_explicit(&iovad->tcache[slot], tc, memory_order_release);
	return tc;
}

/* ---- the cached paths ----------------------------------------------------------------------- */

/* A statistics counter of this thread's own cache: one writer, so no atomic increment. */
static void iova_tc_count(atomic_ulong *counter)
{
	atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

/*
 * Takes a magazine out of the depot of class @c: the most recent that @tc's own slot pushed
 * (its ranges came from this thread's chunks: see "Chunks"), or with @any, else the most
 * recent of all.
 */
static struct iova_magazine *iova_depot_pop(struct iova_rcache *rcache,
					    struct iova_thread_cache *tc, bool any)
{
	struct iova_magazine **pp, *mag = NULL;

	uiommu_mutex_lock(&rcache->lock);
	for (pp = &rcache->depot; *pp; pp = &(*pp)->next) {
		if ((*pp)->owner == tc->slot)
			break;
	}
	if (!*pp && any)
		pp = &rcache->depot;
	if (*pp) {
		mag = *pp;
		*pp = mag->next;
		rcache->depot_size--;
	}
	uiommu_mutex_unlock(&rcache->lock);
	return mag;
}

/* From this thread's magazines, then its own ones in the depot, or with @any anybody's. */
static unsigned long iova_rcache_get(struct iova_domain *iovad, unsigned int c,
				     unsigned long limit_pfn, bool any)
{
	struct iova_rcache *rcache = &iovad->rcaches[c];
	struct iova_thread_cache *tc = iova_tc_get(iovad, false);
	struct iova_magazine *old = NULL;
	unsigned long pfn = 0;

	if (!tc)
		return 0;
	iova_tc_lock(tc);
	if (iova_magazine_empty(tc->loaded[c])) {
		if (!iova_magazine_empty(tc->prev[c])) {
			struct iova_magazine *t = tc->loaded[c];

			tc->loaded[c] = tc->prev[c];
			tc->prev[c] = t;
		} else {
			struct iova_magazine *mag = iova_depot_pop(rcache, tc, any);

			if (mag) {
				old = tc->loaded[c];
				tc->loaded[c] = mag;
			}
		}
	}
	if (!iova_magazine_empty(tc->loaded[c]))
		pfn = iova_magazine_pop(tc->loaded[c], limit_pfn);
	iova_tc_unlock(tc);
	uiommu_free(old);
	return pfn;
}

/* Puts @pfn (of class @c) in the cache @tc, of this thread or another. */
static bool iova_rcache_insert(struct iova_domain *iovad, struct iova_thread_cache *tc,
			       unsigned int c, unsigned long pfn)
{
	struct iova_magazine *to_depot = NULL, *mag;

	iova_tc_lock(tc);
	mag = tc->loaded[c];
	if (!mag || iova_magazine_full(mag)) {
		if (mag && tc->prev[c] && !iova_magazine_full(tc->prev[c])) {
			tc->loaded[c] = tc->prev[c];
			tc->prev[c] = mag;
		} else {
			struct iova_magazine *new = uiommu_zalloc(sizeof(*new));

			if (!new) {
				iova_tc_unlock(tc);
				return false;
			}
			if (mag && !tc->prev[c])
				tc->prev[c] = mag;
			else
				to_depot = mag;
			tc->loaded[c] = new;
		}
	}
	mag = tc->loaded[c];
	mag->pfns[mag->size++] = pfn;
	/* The depot (order 3) and, past its bound, the tree (order 4) nest inside us (2). */
	if (to_depot)
		iova_depot_push(iovad, c, to_depot, tc->slot);
	iova_tc_unlock(tc);
	return true;
}

/*
 * A miss of class @c (ranges of 2^c frames, c < log2(IOVA_CHUNK_FRAMES)): takes a whole
 * IOVA_CHUNK_FRAMES-aligned chunk from the tree, as 2^-c * IOVA_CHUNK_FRAMES ranges, hands out
 * the highest and puts the others in this thread's loaded magazine. See "Chunks" above.
 *
 * Return: the first frame of the range handed out, or 0 (no chunk fits below @limit_pfn, no
 * memory, no room in the magazine): the caller then allocates the one range from the tree.
 */
static unsigned long iova_rcache_refill(struct iova_domain *iovad, unsigned int c,
					unsigned long limit_pfn)
{
	unsigned long n = IOVA_CHUNK_FRAMES >> c, frames = 1ul << c, i, pfn = 0;
	struct iova *nodes[IOVA_CHUNK_FRAMES], range;
	struct iova_thread_cache *tc;
	struct iova_magazine *mag;

	if (n < 2 || limit_pfn < IOVA_CHUNK_FRAMES)
		return 0;
	tc = iova_tc_get(iovad, true);
	if (!tc)
		return 0;
	for (i = 0; i < n; i++) {
		nodes[i] = uiommu_zalloc(sizeof(*nodes[i]));
		if (!nodes[i])
			goto err_free_nodes;
	}
	iova_tc_lock(tc);
	mag = tc->loaded[c];
	if (!mag) {
		mag = uiommu_zalloc(sizeof(*mag));
		if (!mag)
			goto err_unlock_tc;
		tc->loaded[c] = mag;
	}
	/* A miss with ranges loaded: they are all above the limit. Keep them, no chunk. */
	if (mag->size + n - 1 > IOVA_MAG_SIZE)
		goto err_unlock_tc;
	uiommu_mutex_lock(&iovad->lock);
	if (__iova_alloc_range(iovad, IOVA_CHUNK_FRAMES, iova_clamp_limit(limit_pfn), true,
			       &range)) {
		uiommu_mutex_unlock(&iovad->lock);
		goto err_unlock_tc;
	}
	for (i = 0; i < n; i++) {
		nodes[i]->pfn_lo = range.pfn_lo + i * frames;
		nodes[i]->pfn_hi = nodes[i]->pfn_lo + frames - 1;
		__iova_insert(iovad, nodes[i]);
	}
	iovad->cached_node = nodes[0];
	uiommu_mutex_unlock(&iovad->lock);
	/* Top-down as the tree would have handed them out: the highest now, the rest popped next. */
	for (i = 0; i < n - 1; i++)
		mag->pfns[mag->size++] = nodes[i]->pfn_lo;
	pfn = nodes[n - 1]->pfn_lo;
	iova_tc_unlock(tc);
	atomic_fetch_add_explicit(&iovad->tree_allocs, 1, memory_order_relaxed);
	return pfn;

err_unlock_tc:
	iova_tc_unlock(tc);
err_free_nodes:
	while (i--)
		uiommu_free(nodes[i]);
	return 0;
}

unsigned long iova_alloc_fast(struct iova_domain *iovad, unsigned long size,
			      unsigned long limit_pfn, bool flush_rcache)
{
	unsigned long c;
	struct iova *iova;

	if (!size)
		return 0;
	/*
	 * A cached range must be exactly as big as its class says, or a later allocation from the
	 * cache would get less than it asked for: round cacheable sizes up.
	 */
	if (size < (1ul << (IOVA_RANGE_CACHE_MAX_SIZE - 1)))
		size = roundup_pow_of_two(size);
	c = iova_order(size);
	if (c < IOVA_RANGE_CACHE_MAX_SIZE) {
		struct iova_thread_cache *tc = iova_tc_get(iovad, false);
		unsigned long pfn = iova_rcache_get(iovad, (unsigned int)c, limit_pfn, false);
		bool hit = pfn != 0;

		/*
		 * Another thread's magazines only when no new chunk fits: taking them would put
		 * two threads' ranges in one chunk for good (see "Chunks").
		 */
		if (!pfn)
			pfn = iova_rcache_refill(iovad, (unsigned int)c, limit_pfn);
		if (!pfn) {
			pfn = iova_rcache_get(iovad, (unsigned int)c, limit_pfn, true);
			hit = pfn != 0;
		}
		tc = tc ? tc : iova_tc_get(iovad, false);
		if (tc)
			iova_tc_count(hit ? &tc->hits : &tc->misses);
		if (pfn)
			return pfn;
	}
	iova = iova_alloc(iovad, size, limit_pfn, true);
	if (IS_ERR(iova) && flush_rcache) {
		/* Other threads may sit on free space: take it all back and try once more. */
		iova_cache_flush(iovad);
		iova = iova_alloc(iovad, size, limit_pfn, true);
	}
	return IS_ERR(iova) ? 0 : iova->pfn_lo;
}

/* Into cache @tc if there is one and the class is cached, else back to the tree. */
static void __iova_free_fast(struct iova_domain *iovad, struct iova_thread_cache *tc,
			     unsigned long pfn, unsigned long size)
{
	unsigned long c = iova_order(size);

	if (tc && c < IOVA_RANGE_CACHE_MAX_SIZE &&
	    iova_rcache_insert(iovad, tc, (unsigned int)c, pfn))
		return;
	iova_free(iovad, pfn);
}

void iova_free_fast(struct iova_domain *iovad, unsigned long pfn, unsigned long size)
{
	__iova_free_fast(iovad, iova_tc_get(iovad, true), pfn, size);
}

void iova_free_fast_slot(struct iova_domain *iovad, int slot, unsigned long pfn,
			 unsigned long size)
{
	struct iova_thread_cache *tc = NULL;

	if (slot == iova_thread_slot())
		tc = iova_tc_get(iovad, true);
	else if (slot >= 0 && slot < IOVA_THREAD_SLOTS)
		tc = atomic_load_explicit(&iovad->tcache[slot], memory_order_acquire);
	/* A slot that never cached anything here: this thread's cache. */
	__iova_free_fast(iovad, tc ? tc : iova_tc_get(iovad, true), pfn, size);
}

void iova_cache_flush(struct iova_domain *iovad)
{
	unsigned int s, c;

	for (s = 0; s < IOVA_THREAD_SLOTS; s++) {
		struct iova_thread_cache *tc =
			atomic_load_explicit(&iovad->tcache[s], memory_order_acquire);

		if (!tc)
			continue;
		iova_tc_lock(tc);
		for (c = 0; c < IOVA_RANGE_CACHE_MAX_SIZE; c++) {
			iova_magazine_free_pfns(iovad, tc->loaded[c]);
			iova_magazine_free_pfns(iovad, tc->prev[c]);
		}
		iova_tc_unlock(tc);
	}
	for (c = 0; c < IOVA_RANGE_CACHE_MAX_SIZE; c++) {
		struct iova_rcache *rcache = &iovad->rcaches[c];
		struct iova_magazine *list;

		uiommu_mutex_lock(&rcache->lock);
		list = rcache->depot;
		rcache->depot = NULL;
		rcache->depot_size = 0;
		uiommu_mutex_unlock(&rcache->lock);
		while (list) {
			struct iova_magazine *next = list->next;

			iova_magazine_free_pfns(iovad, list);
			uiommu_free(list);
			list = next;
		}
	}
}

/* ---- the domain ----------------------------------------------------------------------------- */

int iova_domain_init(struct iova_domain *iovad, unsigned long granule, unsigned long start_pfn)
{
	unsigned int s, c;

	if (!granule || (granule & (granule - 1)))
		return -EINVAL;
	uiommu_mutex_init(&iovad->lock);
	RB_INIT(&iovad->rbroot);
	iovad->granule = granule;
	iovad->shift = (unsigned int)__builtin_ctzl(granule);
	iovad->start_pfn = start_pfn ? start_pfn : 1;
	iovad->anchor.pfn_lo = ULONG_MAX;
	iovad->anchor.pfn_hi = ULONG_MAX;
	__iova_insert(iovad, &iovad->anchor);
	iovad->cached_node = &iovad->anchor;
	iovad->failed_size = ULONG_MAX;
	iovad->failed_limit = 0;
	atomic_init(&iovad->tree_allocs, 0);
	for (s = 0; s < IOVA_THREAD_SLOTS; s++)
		atomic_init(&iovad->tcache[s], NULL);
	for (c = 0; c < IOVA_RANGE_CACHE_MAX_SIZE; c++) {
		uiommu_mutex_init(&iovad->rcaches[c].lock);
		iovad->rcaches[c].depot = NULL;
		iovad->rcaches[c].depot_size = 0;
	}
	uiommu_mutex_lock(&iova_slots_lock);
	iovad->next_live = iova_live_domains;
	if (iova_live_domains)
		iova_live_domains->pprev_live = &iovad->next_live;
	iovad->pprev_live = &iova_live_domains;
	iova_live_domains = iovad;
	uiommu_mutex_unlock(&iova_slots_lock);
	return 0;
}

void iova_domain_destroy(struct iova_domain *iovad)
{
	struct iova *n, *next;
	unsigned int s, c;

	/* First out of the live list, so no exiting thread touches our caches any more. */
	uiommu_mutex_lock(&iova_slots_lock);
	*iovad->pprev_live = iovad->next_live;
	if (iovad->next_live)
		iovad->next_live->pprev_live = iovad->pprev_live;
	uiommu_mutex_unlock(&iova_slots_lock);

	/* Cached frames are tree nodes too: the magazines just go, the tree frees them all. */
	for (s = 0; s < IOVA_THREAD_SLOTS; s++) {
		struct iova_thread_cache *tc =
			atomic_load_explicit(&iovad->tcache[s], memory_order_acquire);

		if (!tc)
			continue;
		for (c = 0; c < IOVA_RANGE_CACHE_MAX_SIZE; c++) {
			uiommu_free(tc->loaded[c]);
			uiommu_free(tc->prev[c]);
		}
		uiommu_free(tc);
	}
	for (c = 0; c < IOVA_RANGE_CACHE_MAX_SIZE; c++) {
		struct iova_magazine *mag = iovad->rcaches[c].depot;

		while (mag) {
			struct iova_magazine *m_next = mag->next;

			uiommu_free(mag);
			mag = m_next;
		}
		uiommu_mutex_destroy(&iovad->rcaches[c].lock);
	}
	for (n = RB_MIN(iova_rb, &iovad->rbroot); n; n = next) {
		next = RB_NEXT(iova_rb, &iovad->rbroot, n);
		RB_REMOVE(iova_rb, &iovad->rbroot, n);
		if (n != &iovad->anchor)
			uiommu_free(n);
	}
	uiommu_mutex_destroy(&iovad->lock);
}

void iova_get_stats(struct iova_domain *iovad, struct iova_stats *st)
{
	struct iova *n;
	unsigned int s, c;

	*st = (struct iova_stats){ 0 };
	for (s = 0; s < IOVA_THREAD_SLOTS; s++) {
		struct iova_thread_cache *tc =
			atomic_load_explicit(&iovad->tcache[s], memory_order_acquire);

		if (!tc)
			continue;
		iova_tc_lock(tc);
		st->rcache_hits += atomic_load_explicit(&tc->hits, memory_order_relaxed);
		st->rcache_misses += atomic_load_explicit(&tc->misses, memory_order_relaxed);
		for (c = 0; c < IOVA_RANGE_CACHE_MAX_SIZE; c++) {
			st->cached += tc->loaded[c] ? tc->loaded[c]->size : 0;
			st->cached += tc->prev[c] ? tc->prev[c]->size : 0;
		}
		iova_tc_unlock(tc);
	}
	for (c = 0; c < IOVA_RANGE_CACHE_MAX_SIZE; c++) {
		struct iova_magazine *mag;

		uiommu_mutex_lock(&iovad->rcaches[c].lock);
		for (mag = iovad->rcaches[c].depot; mag; mag = mag->next)
			st->cached += mag->size;
		uiommu_mutex_unlock(&iovad->rcaches[c].lock);
	}
	uiommu_mutex_lock(&iovad->lock);
	RB_FOREACH(n, iova_rb, &iovad->rbroot)
		if (n != &iovad->anchor)
			st->tree_nodes++;
	uiommu_mutex_unlock(&iovad->lock);
	st->tree_allocs = (unsigned long)atomic_load_explicit(&iovad->tree_allocs,
							      memory_order_relaxed);
}
