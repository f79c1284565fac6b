/* SPDX-License-Identifier: MIT */
/*
 * The IOVA allocator of DMA-API domains (the counterpart of the kernel's iova.c). See iova.c for
 * the data model, the per-thread caches and the lock order.
 *
 * Vocabulary: every quantity here is in page frames of the domain's granule ("pfn"); a range is
 * [pfn_lo, pfn_hi] with pfn_hi inclusive; "size" is a number of frames. Frame 0 is never handed
 * out, so 0 means "no IOVA" in the fast API.
 */
#ifndef UIOMMU_IOMMU_IOVA_H
#define UIOMMU_IOMMU_IOVA_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <bsd/sys/tree.h>

#include "lib/lockdep.h"

/* Sizes up to 2^(IOVA_RANGE_CACHE_MAX_SIZE - 1) frames are cached per thread: 1 .. 32. */
#define IOVA_RANGE_CACHE_MAX_SIZE 6
/* PFNs per magazine: the magazine is then exactly 1 KiB. */
#define IOVA_MAG_SIZE 126
/*
 * Frames a cache miss of a small class takes from the tree at once (see "Chunks" in iova.c): the
 * leaf entries of this many frames fill one 64-byte cache line of an 8-byte-entry page table.
 */
#define IOVA_CHUNK_FRAMES 8ul
/*
 * Bytes that keep a per-thread structure's hot fields off every cache line another allocation
 * may use: malloc() aligns to 16 only, so a structure written by one thread pads this much
 * before and after them (128: a pair of 64-byte lines, which the adjacent-line prefetcher moves
 * together). Two such structures allocated one after the other (a thread's cache and the next
 * thread's, from one malloc arena) would otherwise share a line.
 */
#define IOVA_HOT_PAD 128
/* Full magazines a size class keeps in its depot before handing them back to the tree. */
#define IOVA_DEPOT_MAX 32
/*
 * Threads that get a cache slot of their own. Slots are recycled when a thread exits; threads
 * beyond this many at once share the slow path (the tree), which is slower but correct.
 */
#define IOVA_THREAD_SLOTS 64

/* One allocated (or reserved) range. Head at iova_domain::rbroot. */
struct iova {
	RB_ENTRY(iova) rb;
	unsigned long pfn_lo;
	unsigned long pfn_hi; /* inclusive */
};

RB_HEAD(iova_rb, iova);

struct iova_magazine;
struct iova_thread_cache;

/* The global part of one size class's cache; padded off the read-mostly fields around it. */
struct iova_rcache {
	struct uiommu_mutex lock;     /* protects depot, depot_size; order: 3 (see iova.c) */
	struct iova_magazine *depot;  /* full magazines, a LIFO list */
	unsigned int depot_size;
	char pad_after[IOVA_HOT_PAD];
};

/**
 * struct iova_domain - an IOVA space
 * @lock: protects @rbroot, @cached_node, @failed_size and @failed_limit; last in the order.
 * @granule, @shift: the page size of a frame (a power of two) and its log2; immutable.
 * @start_pfn: the lowest frame ever handed out (at least 1); immutable.
 * @anchor: a permanent node above every frame, so that the top-down search always has a node
 *          to start from.
 * @tcache: per thread slot, that thread's magazines (allocated by their owner on first use,
 *          published with a release store, freed with the domain).
 * @rcaches: per size class, the depot.
 * @node: in the list of live domains that a thread's exit walks (iova_slots_lock).
 */
struct iova_domain {
	/* Read by every allocation and free: never on a line the writers below use. */
	unsigned long granule;
	unsigned int shift;
	unsigned long start_pfn;
	_Atomic(struct iova_thread_cache *) tcache[IOVA_THREAD_SLOTS];
	char pad_read_mostly[IOVA_HOT_PAD];
	/* Written by tree allocations and frees (chunk refills, big ranges, spills). */
	struct uiommu_mutex lock;          /* order: 4, innermost */
	struct iova_rb rbroot;
	struct iova *cached_node;          /* where the last top-down search ended */
	unsigned long failed_size;         /* smallest size known to fail below failed_limit */
	unsigned long failed_limit;
	struct iova anchor;
	atomic_long tree_allocs;           /* statistics, relaxed */
	char pad_tree[IOVA_HOT_PAD];
	/* Written at each magazine exchange with a depot; each padded. */
	struct iova_rcache rcaches[IOVA_RANGE_CACHE_MAX_SIZE];
	struct iova_domain *next_live;     /* iova_slots_lock */
	struct iova_domain **pprev_live;   /* iova_slots_lock */
};

/* Counters for tests and benchmarks. */
struct iova_stats {
	unsigned long tree_nodes;     /* nodes in the tree, reserved ranges and cached IOVAs included */
	unsigned long cached;         /* IOVAs sitting in per-thread magazines and depots */
	unsigned long rcache_hits;    /* allocations served by a per-thread cache */
	unsigned long rcache_misses;  /* cacheable allocations that went to the tree */
	unsigned long tree_allocs;    /* allocations made by a tree search */
};

static inline unsigned long iova_shift(const struct iova_domain *iovad)
{
	return iovad->shift;
}

static inline uint64_t iova_mask(const struct iova_domain *iovad)
{
	return iovad->granule - 1;
}

static inline uint64_t iova_offset(const struct iova_domain *iovad, uint64_t addr)
{
	return addr & iova_mask(iovad);
}

static inline uint64_t iova_align(const struct iova_domain *iovad, uint64_t size)
{
	return (size + iova_mask(iovad)) & ~iova_mask(iovad);
}

static inline unsigned long iova_pfn(const struct iova_domain *iovad, uint64_t addr)
{
	return (unsigned long)(addr >> iovad->shift);
}

/**
 * iova_domain_init() - set up an empty IOVA space
 * @granule: the frame size in bytes, a power of two
 * @start_pfn: the lowest frame to hand out; 0 is raised to 1
 *
 * Return: 0, or -EINVAL for a bad granule.
 */
int iova_domain_init(struct iova_domain *iovad, unsigned long granule, unsigned long start_pfn);

/**
 * iova_domain_destroy() - free every range, cache and magazine
 *
 * No other call on @iovad may be running or start afterwards.
 */
void iova_domain_destroy(struct iova_domain *iovad);

/**
 * iova_alloc() - a range of @size frames ending at or below @limit_pfn, by a tree search
 * @size_aligned: align the start to @size rounded up to a power of two
 *
 * The highest free range that fits is taken (allocation is top-down). Takes iovad->lock.
 *
 * Return: the new range, ERR_PTR(-ENOMEM) when nothing fits or no memory, ERR_PTR(-EINVAL)
 * for size 0.
 */
struct iova *iova_alloc(struct iova_domain *iovad, unsigned long size, unsigned long limit_pfn,
			bool size_aligned);

/** iova_find() - the range containing @pfn, or NULL. Takes iovad->lock. */
struct iova *iova_find(struct iova_domain *iovad, unsigned long pfn);

/** iova_free() - free the range containing @pfn (nothing if none). Takes iovad->lock. */
void iova_free(struct iova_domain *iovad, unsigned long pfn);

/**
 * iova_reserve() - keep [@pfn_lo, @pfn_hi] out of every future allocation
 *
 * Ranges already allocated inside stay as they are; the holes between them are reserved. A
 * reservation lasts until the domain is destroyed.
 *
 * Return: 0, -EINVAL for an empty range, -ENOMEM (then nothing changed).
 */
int iova_reserve(struct iova_domain *iovad, unsigned long pfn_lo, unsigned long pfn_hi);

/**
 * iova_alloc_fast() - the DMA API's allocation: a size-aligned range below @limit_pfn
 * @size: frames; below 2^(IOVA_RANGE_CACHE_MAX_SIZE - 1) it is rounded up to a power of two so
 *        that a cached range is always exactly the size its class promises
 * @flush_rcache: when the tree is full, give every cached range back and try once more
 *
 * Tries this thread's cache first (no shared lock), then a chunk of IOVA_CHUNK_FRAMES from the
 * tree for a small class (the rest of it goes to this thread's cache), then one range from the
 * tree.
 *
 * Return: the first frame, or 0 when the space is exhausted or memory ran out.
 */
unsigned long iova_alloc_fast(struct iova_domain *iovad, unsigned long size,
			      unsigned long limit_pfn, bool flush_rcache);

/**
 * iova_free_fast() - give back a range from iova_alloc_fast()
 * @size: the size passed to iova_alloc_fast() (not the rounded one)
 *
 * The range goes to this thread's cache when its size class is cached and a magazine has room,
 * else back to the tree.
 */
void iova_free_fast(struct iova_domain *iovad, unsigned long pfn, unsigned long size);

/**
 * iova_free_fast_slot() - iova_free_fast() into the cache of thread slot @slot
 *
 * For a range freed on behalf of another thread (a flush queue's entries, freed by whichever
 * thread flushes): it goes back to the thread that used it, so each thread keeps the chunks it
 * allocated (see "Chunks" in iova.c). A slot out of range, or one without a cache in this
 * domain, means this thread's cache.
 */
void iova_free_fast_slot(struct iova_domain *iovad, int slot, unsigned long pfn,
			 unsigned long size);

/** iova_cache_flush() - return every cached range of every thread to the tree */
void iova_cache_flush(struct iova_domain *iovad);

/** iova_get_stats() - a snapshot of the counters (takes each lock in turn) */
void iova_get_stats(struct iova_domain *iovad, struct iova_stats *stats);

/** iova_verify() - check the tree's order and that no two ranges overlap (tests) */
bool iova_verify(struct iova_domain *iovad);

/**
 * iova_thread_slot() - this thread's cache slot, assigned on first call
 *
 * Also used by the DMA layer for its per-thread flush queues. The slot is freed when the thread
 * exits, after every cache of the slot went back to its depot.
 *
 * Return: 0 .. IOVA_THREAD_SLOTS - 1, or -1 when every slot is taken.
 */
int iova_thread_slot(void);

#endif
