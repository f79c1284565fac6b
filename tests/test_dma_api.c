// SPDX-License-Identifier: MIT
/*
 * White-box tests of the DMA API layer: the IOVA allocator (src/iommu/iova.c), the IOTLB model
 * (src/iommu/iotlb.c) and the DMA API with its strict and flush-queue modes
 * (src/iommu/dma-iommu.c).
 *
 * Most cases run on a stand-in domain of this file (a flat array of PTEs behind a struct
 * iommu_domain, with its own driver identity), so that the layer is tested alone with exact
 * control of the page table and the IOTLB; the core's iommu_map()/iommu_unmap_fast() drive it.
 * The last cases go through the real pieces: the default topology, the mock driver, and the
 * devices' default domains.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "iommu/dma-iommu.h"
#include "iommu/iommu.h"
#include "iommu/iotlb.h"
#include "iommu/iova.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "machine/topology.h"
#include "uiommu/uiommu.h"

#define PAGE 4096ul

/* ---- a stand-in domain -------------------------------------------------------------------- */

#define SD_PAGES 4096u
#define SD_VALID 1u

struct sd_domain {
	struct iommu_domain dom;
	_Atomic uint64_t pte[SD_PAGES]; /* phys | prot << 1 | SD_VALID */
	unsigned long pages;            /* the aperture, in pages */
};

static const struct iommu_ops sd_iommu_ops = { .name = "standin" };
static struct iommu_device sd_iommu = { .name = "sd0", .deferred_flush = true };
static struct iommu_device sd_iommu2 = { .name = "sd1", .deferred_flush = true };
static atomic_uint sd_ids = 0x40000000u;

static struct sd_domain *to_sd(struct iommu_domain *d)
{
	return container_of(d, struct sd_domain, dom);
}

static int sd_map_pages(struct iommu_domain *d, uint64_t iova, phys_addr_t paddr, size_t pgsize,
			size_t pgcount, int prot, size_t *mapped)
{
	struct sd_domain *sd = to_sd(d);
	size_t i;

	*mapped = 0;
	for (i = 0; i < pgcount; i++) {
		uint64_t pfn = iova / PAGE + i, old = 0;

		if (pfn >= sd->pages)
			return -ERANGE;
		if (!atomic_compare_exchange_strong(&sd->pte[pfn], &old,
						    (paddr + i * PAGE) |
						    ((uint64_t)(prot & 3) << 1) | SD_VALID))
			return -EEXIST;
		*mapped += pgsize;
	}
	return 0;
}

static size_t sd_unmap_pages(struct iommu_domain *d, uint64_t iova, size_t pgsize,
			     size_t pgcount, struct iommu_iotlb_gather *g)
{
	struct sd_domain *sd = to_sd(d);
	size_t i;

	for (i = 0; i < pgcount; i++) {
		uint64_t pfn = iova / PAGE + i;

		if (pfn >= sd->pages || !atomic_exchange(&sd->pte[pfn], 0))
			break;
	}
	if (i) {
		if (iova < g->start)
			g->start = iova;
		if (iova + i * pgsize - 1 > g->end)
			g->end = iova + i * pgsize - 1;
	}
	return i * pgsize;
}

static void sd_iotlb_sync(struct iommu_domain *d, struct iommu_iotlb_gather *g)
{
	if (g->start <= g->end)
		iotlb_inv_range(d, g->start, g->end - g->start + 1);
}

/*
 * A point of the stand-in driver (its flush, its walk) where a test can hold one thread: the
 * thread named in @holder waits there, once it said so in @entered, until @release.
 */
struct sd_hold {
	_Atomic(pthread_t *) holder;
	atomic_bool entered, release;
};

static struct sd_hold sd_flush_hold, sd_walk_hold;

/* Called at the point: waits there if this is the held thread. */
static void sd_hold_point(struct sd_hold *h)
{
	pthread_t *holder = atomic_load(&h->holder);

	if (holder && pthread_equal(*holder, pthread_self())) {
		atomic_store(&h->entered, true);
		while (!atomic_load(&h->release))
			usleep(100);
	}
}

/* Starts @fn(@arg) in *@t and returns once that thread waits at @h's point. */
static int sd_hold_start(struct sd_hold *h, pthread_t *t, void *(*fn)(void *), void *arg)
{
	int ret;

	atomic_store(&h->release, false);
	atomic_store(&h->entered, false);
	atomic_store(&h->holder, t);
	ret = pthread_create(t, NULL, fn, arg);
	if (ret)
		return ret;
	while (!atomic_load(&h->entered))
		usleep(100);
	return 0;
}

/* Lets the held thread go on, and joins it. */
static int sd_hold_finish(struct sd_hold *h, pthread_t *t)
{
	int ret;

	atomic_store(&h->release, true);
	ret = pthread_join(*t, NULL);
	atomic_store(&h->holder, NULL);
	return ret;
}

/*
 * Every flush_iotlb_all, numbered as it starts, is marked done once its invalidation returned:
 * what a test of "no IOVA reused before its flush" checks a reuse against.
 */
#define SD_FLUSHES_MAX 65536u
static atomic_uint sd_flush_started;
static atomic_bool sd_flush_done[SD_FLUSHES_MAX];

/* Has a flush that started at or after number @since finished? */
static bool sd_flush_done_since(unsigned int since)
{
	unsigned int i, n = atomic_load(&sd_flush_started);

	for (i = since; i < n && i < SD_FLUSHES_MAX; i++)
		if (atomic_load(&sd_flush_done[i]))
			return true;
	return false;
}

static void sd_flush_iotlb_all(struct iommu_domain *d)
{
	unsigned int nr = atomic_fetch_add(&sd_flush_started, 1);

	sd_hold_point(&sd_flush_hold);
	iotlb_inv_domain(d);
	if (nr < SD_FLUSHES_MAX)
		atomic_store(&sd_flush_done[nr], true);
}

static phys_addr_t sd_walk(struct iommu_domain *d, uint64_t iova, int access, int *prot)
{
	(void)access;
	struct sd_domain *sd = to_sd(d);
	uint64_t pfn = iova / PAGE, pte;

	if (pfn >= sd->pages)
		return 0;
	pte = atomic_load(&sd->pte[pfn]);
	sd_hold_point(&sd_walk_hold); /* a test may hold the walk after it read the entry */
	if (!(pte & SD_VALID))
		return 0;
	*prot = (int)((pte >> 1) & 3);
	return (pte & ~(PAGE - 1)) + (iova & (PAGE - 1));
}

static phys_addr_t sd_iova_to_phys(struct iommu_domain *d, uint64_t iova)
{
	int prot;

	return sd_walk(d, iova, IOMMU_READ, &prot);
}

static const struct iommu_domain_ops sd_domain_ops = {
	.map_pages = sd_map_pages,
	.unmap_pages = sd_unmap_pages,
	.iotlb_sync = sd_iotlb_sync,
	.flush_iotlb_all = sd_flush_iotlb_all,
	.iova_to_phys = sd_iova_to_phys,
};

/* A DMA-API stand-in domain of @pages pages of aperture, with its cookie. */
static struct sd_domain *sd_domain_new(unsigned int type, unsigned long pages)
{
	struct sd_domain *sd = calloc(1, sizeof(*sd));

	if (!sd)
		return NULL;
	if (iotlb_register_walker(&sd_iommu_ops, sd_walk))
		abort();
	sd->pages = pages;
	sd->dom.type = type;
	sd->dom.ops = &sd_domain_ops;
	sd->dom.owner = &sd_iommu_ops;
	sd->dom.pgsize_bitmap = PAGE;
	sd->dom.geometry.aperture_start = 0;
	sd->dom.geometry.aperture_end = pages * PAGE - 1;
	sd->dom.geometry.force_aperture = true;
	sd->dom.id = atomic_fetch_add(&sd_ids, 1);
	if (type & __IOMMU_DOMAIN_DMA_API) {
		if (iommu_get_dma_cookie(&sd->dom)) {
			free(sd);
			return NULL;
		}
	}
	return sd;
}

static void sd_domain_free(struct sd_domain *sd)
{
	iommu_put_dma_cookie(&sd->dom);
	free(sd);
}

static void *page_buf(size_t pages)
{
	void *p = NULL;

	if (posix_memalign(&p, PAGE, pages * PAGE))
		return NULL;
	memset(p, 0, pages * PAGE);
	return p;
}

/* ---- the IOVA allocator --------------------------------------------------------------------- */

TEST(iova_top_down_aligned_no_overlap)
{
	struct iova_domain iovad;
	unsigned int seed = 7;
	struct iova *first;
	int i;

	ASSERT_EQ(0, iova_domain_init(&iovad, PAGE, 1));
	first = iova_alloc(&iovad, 1, 1000, true);
	ASSERT_FALSE(IS_ERR(first));
	EXPECT_EQ(1000, first->pfn_lo); /* top-down: the highest frame under the limit */
	for (i = 0; i < 500; i++) {
		unsigned long size = 1 + (unsigned long)rand_r(&seed) % 40;
		unsigned long align = roundup_pow_of_two(size);
		struct iova *iova = iova_alloc(&iovad, size, 100000, true);

		ASSERT_FALSE(IS_ERR(iova));
		ASSERT_EQ(size, iova->pfn_hi - iova->pfn_lo + 1);
		ASSERT_EQ(0, iova->pfn_lo % align);
		ASSERT_LE(iova->pfn_hi, 100000);
		if (i % 3 == 0)
			iova_free(&iovad, iova->pfn_lo);
	}
	ASSERT_TRUE(iova_verify(&iovad));
	iova_domain_destroy(&iovad);
}

TEST(iova_unaligned_and_limits)
{
	struct iova_domain iovad;
	struct iova *a, *b;

	ASSERT_EQ(0, iova_domain_init(&iovad, PAGE, 16));
	a = iova_alloc(&iovad, 3, 100, false);
	ASSERT_FALSE(IS_ERR(a));
	EXPECT_EQ(98, a->pfn_lo);
	b = iova_alloc(&iovad, 3, 100, true); /* aligned to 4, below 98 */
	ASSERT_FALSE(IS_ERR(b));
	EXPECT_EQ(92, b->pfn_lo);
	/* Nothing below start_pfn, nothing for size 0, nothing bigger than the space. */
	EXPECT_EQ(-ENOMEM, PTR_ERR(iova_alloc(&iovad, 200, 100, false)));
	EXPECT_EQ(-EINVAL, PTR_ERR(iova_alloc(&iovad, 0, 100, false)));
	EXPECT_TRUE(iova_find(&iovad, 99) == a);
	EXPECT_TRUE(iova_find(&iovad, 97) == NULL);
	ASSERT_TRUE(iova_verify(&iovad));
	iova_domain_destroy(&iovad);
}

TEST(iova_reuse_after_free_and_hint)
{
	struct iova_domain iovad;
	unsigned long pfn[8];
	struct iova *iova;
	int i;

	ASSERT_EQ(0, iova_domain_init(&iovad, PAGE, 1));
	for (i = 0; i < 8; i++) {
		iova = iova_alloc(&iovad, 1, 1023, true);
		ASSERT_FALSE(IS_ERR(iova));
		pfn[i] = iova->pfn_lo;
		EXPECT_EQ(1023 - i, pfn[i]);
	}
	/* A hole above the hint is found again. */
	iova_free(&iovad, pfn[2]);
	iova = iova_alloc(&iovad, 1, 1023, true);
	ASSERT_FALSE(IS_ERR(iova));
	EXPECT_EQ(pfn[2], iova->pfn_lo);
	iova_domain_destroy(&iovad);
}

TEST(iova_exhaustion_and_reserve)
{
	struct iova_domain iovad;
	unsigned long n = 0, pfn;
	struct iova *iova;

	ASSERT_EQ(0, iova_domain_init(&iovad, PAGE, 1));
	ASSERT_EQ(0, iova_reserve(&iovad, 10, 20));
	ASSERT_EQ(0, iova_reserve(&iovad, 15, 25)); /* overlapping: only the new part */
	while ((pfn = iova_alloc_fast(&iovad, 1, 63, false)) != 0) {
		ASSERT_TRUE(pfn < 10 || pfn > 25);
		n++;
	}
	EXPECT_EQ(63 - 16, n);
	iova = iova_alloc(&iovad, 1, 63, true);
	EXPECT_EQ(-ENOMEM, PTR_ERR(iova));
	ASSERT_TRUE(iova_verify(&iovad));
	iova_domain_destroy(&iovad);
}

TEST(iova_rcache_hit_path)
{
	struct iova_domain iovad;
	struct iova_stats st;
	unsigned long a, b, c;

	ASSERT_EQ(0, iova_domain_init(&iovad, PAGE, 1));
	a = iova_alloc_fast(&iovad, 3, 1u << 20, true); /* rounded to 4 */
	ASSERT_NE(0, a);
	EXPECT_EQ(0, a % 4);
	iova_free_fast(&iovad, a, 3);
	iova_get_stats(&iovad, &st);
	/* The miss took a chunk of IOVA_CHUNK_FRAMES: two ranges of 4, the other one cached. */
	EXPECT_EQ(2, st.cached);
	EXPECT_EQ(2, st.tree_nodes); /* a cached IOVA stays allocated in the tree */
	b = iova_alloc_fast(&iovad, 4, 1u << 20, true);
	EXPECT_EQ(a, b); /* same class: from this thread's magazine */
	iova_get_stats(&iovad, &st);
	EXPECT_EQ(1, st.rcache_hits);
	EXPECT_EQ(1, st.tree_allocs);
	/* A cached IOVA above the limit is not handed out. */
	iova_free_fast(&iovad, b, 4);
	c = iova_alloc_fast(&iovad, 4, b - 1, true);
	ASSERT_NE(0, c);
	EXPECT_LT(c, b);
	/* Big sizes are not cached. */
	a = iova_alloc_fast(&iovad, 100, 1u << 20, true);
	ASSERT_NE(0, a);
	EXPECT_EQ(0, a % 128);
	iova_free_fast(&iovad, a, 100);
	EXPECT_TRUE(iova_find(&iovad, a) == NULL);
	/* Flushing the caches gives everything back to the tree. */
	iova_free_fast(&iovad, c, 4);
	iova_cache_flush(&iovad);
	iova_get_stats(&iovad, &st);
	EXPECT_EQ(0, st.cached);
	EXPECT_EQ(0, st.tree_nodes);
	iova_domain_destroy(&iovad);
}

TEST(iova_rcache_many_magazines)
{
	struct iova_domain iovad;
	struct iova_stats st;
	unsigned long *pfns = calloc(2000, sizeof(*pfns));
	int i, hits_before;

	ASSERT_TRUE(pfns != NULL);
	ASSERT_EQ(0, iova_domain_init(&iovad, PAGE, 1));
	for (i = 0; i < 2000; i++) {
		pfns[i] = iova_alloc_fast(&iovad, 1, 1u << 24, true);
		ASSERT_NE(0, pfns[i]);
	}
	for (i = 0; i < 2000; i++)
		iova_free_fast(&iovad, pfns[i], 1);
	iova_get_stats(&iovad, &st);
	EXPECT_EQ(2000, st.tree_nodes);
	EXPECT_EQ(2000, st.cached); /* loaded + prev + depot hold them all */
	hits_before = (int)st.rcache_hits;
	for (i = 0; i < 2000; i++)
		ASSERT_NE(0, iova_alloc_fast(&iovad, 1, 1u << 24, true));
	iova_get_stats(&iovad, &st);
	EXPECT_EQ(2000, st.rcache_hits - (unsigned long)hits_before);
	EXPECT_EQ(2000, st.tree_nodes);
	ASSERT_TRUE(iova_verify(&iovad));
	iova_domain_destroy(&iovad);
	free(pfns);
}

/* Frees into a cache that the main thread cannot take without the depot: the exit path. */
static void *iova_thread_free_fn(void *arg)
{
	struct iova_domain *iovad = arg;
	unsigned long pfn[300];
	int i;

	for (i = 0; i < 300; i++)
		pfn[i] = iova_alloc_fast(iovad, 1, 1u << 20, true);
	for (i = 0; i < 300; i++)
		if (pfn[i])
			iova_free_fast(iovad, pfn[i], 1);
	return NULL;
}

TEST(iova_thread_exit_returns_magazines)
{
	struct iova_domain iovad;
	struct iova_stats st;
	pthread_t t;

	ASSERT_EQ(0, iova_domain_init(&iovad, PAGE, 1));
	ASSERT_EQ(0, pthread_create(&t, NULL, iova_thread_free_fn, &iovad));
	ASSERT_EQ(0, pthread_join(t, NULL));
	iova_get_stats(&iovad, &st);
	/* 300 frames came as whole chunks: the last chunk's unused frames are cached too. */
	EXPECT_EQ(ALIGN_UP(300, IOVA_CHUNK_FRAMES), st.cached);
	/*
	 * The magazines are in the depot now, marked with the thread's slot, which this thread
	 * (a forked test's first to ask) takes next: its first allocation hits there.
	 */
	ASSERT_NE(0, iova_alloc_fast(&iovad, 1, 1u << 20, true));
	iova_get_stats(&iovad, &st);
	EXPECT_GE(st.rcache_hits, 1);
	EXPECT_EQ(ALIGN_UP(300, IOVA_CHUNK_FRAMES) / IOVA_CHUNK_FRAMES, st.tree_allocs);
	iova_domain_destroy(&iovad);
}

TEST(iova_exhaustion_flushes_other_threads_caches)
{
	struct iova_domain iovad;
	pthread_t t;
	unsigned long pfn;

	ASSERT_EQ(0, iova_domain_init(&iovad, PAGE, 1));
	/* The thread fills most of [1, 511] and leaves it all cached (via the depot) at exit. */
	ASSERT_EQ(0, pthread_create(&t, NULL, iova_thread_free_fn, &iovad));
	ASSERT_EQ(0, pthread_join(t, NULL));
	/* 256 frames fit only if the cached single frames go back to the tree. */
	pfn = iova_alloc_fast(&iovad, 256, 511, true);
	EXPECT_EQ(256, pfn);
	iova_domain_destroy(&iovad);
}

struct iova_fill_arg {
	struct iova_domain *iovad;
	unsigned long limit;
	unsigned long pfn[64];
	unsigned int n;
};

/* Allocates everything below the limit, frees it all into its cache, and exits. */
static void *iova_fill_fn(void *p)
{
	struct iova_fill_arg *a = p;
	unsigned int i;

	while (a->n < 64 && (a->pfn[a->n] = iova_alloc_fast(a->iovad, 1, a->limit, false)) != 0)
		a->n++;
	for (i = 0; i < a->n; i++)
		iova_free_fast(a->iovad, a->pfn[i], 1);
	return NULL;
}

/*
 * A thread's magazines in the depot go to another live thread only when no new chunk fits:
 * taken earlier, they would mix two threads' ranges in one chunk for good.
 */
TEST(iova_depot_keeps_threads_apart)
{
	struct iova_domain iovad, tight;
	struct iova_fill_arg a = { .iovad = &iovad, .limit = 1u << 20 };
	struct iova_fill_arg b = { .iovad = &tight, .limit = 16 };
	struct iova_stats st0, st;
	unsigned long pfn;
	unsigned int i;
	pthread_t t;

	ASSERT_EQ(0, iova_domain_init(&iovad, PAGE, 1));
	ASSERT_EQ(0, iova_domain_init(&tight, PAGE, 1));
	ASSERT_GE(iova_thread_slot(), 0); /* ours before the thread takes one */
	a.limit = 1000;
	ASSERT_EQ(0, pthread_create(&t, NULL, iova_fill_fn, &a));
	ASSERT_EQ(0, pthread_join(t, NULL));
	ASSERT_EQ(64, a.n);
	iova_get_stats(&iovad, &st0);
	/* Room for a chunk: a new one, not the dead thread's magazines. */
	pfn = iova_alloc_fast(&iovad, 1, 1u << 20, false);
	ASSERT_NE(0, pfn);
	for (i = 0; i < a.n; i++)
		EXPECT_NE(a.pfn[i] / IOVA_CHUNK_FRAMES, pfn / IOVA_CHUNK_FRAMES);
	iova_get_stats(&iovad, &st);
	EXPECT_EQ(st0.tree_allocs + 1, st.tree_allocs);
	EXPECT_EQ(st0.cached + IOVA_CHUNK_FRAMES - 1, st.cached);
	iova_free_fast(&iovad, pfn, 1);

	/* No room for a chunk (all 16 frames sit in the dead thread's magazines): take them. */
	ASSERT_EQ(0, pthread_create(&t, NULL, iova_fill_fn, &b));
	ASSERT_EQ(0, pthread_join(t, NULL));
	ASSERT_EQ(16, b.n);
	iova_get_stats(&tight, &st0);
	pfn = iova_alloc_fast(&tight, 1, 16, false);
	ASSERT_NE(0, pfn);
	iova_get_stats(&tight, &st);
	EXPECT_EQ(st0.tree_allocs, st.tree_allocs);
	EXPECT_EQ(st0.rcache_hits + 1, st.rcache_hits);
	iova_free_fast(&tight, pfn, 1);
	ASSERT_TRUE(iova_verify(&iovad) && iova_verify(&tight));
	iova_domain_destroy(&tight);
	iova_domain_destroy(&iovad);
}

/* A chunk is invisible to one thread: the same IOVAs, in the same order, as the tree's. */
TEST(iova_chunk_keeps_top_down_order)
{
	struct iova_domain iovad;
	struct iova_stats st;
	unsigned long pfn;
	int i;

	ASSERT_EQ(0, iova_domain_init(&iovad, PAGE, 1));
	for (i = 0; i < 20; i++) {
		pfn = iova_alloc_fast(&iovad, 1, 1023, false);
		ASSERT_EQ(1023 - i, pfn);
	}
	iova_get_stats(&iovad, &st);
	EXPECT_EQ(3, st.tree_allocs); /* three chunks of 8 */
	EXPECT_EQ(24, st.tree_nodes);
	EXPECT_EQ(4, st.cached);      /* the last chunk's rest, in this thread's magazine */
	/* Two-frame ranges: four per chunk, also top-down, aligned, never overlapping. */
	for (i = 0; i < 8; i++) {
		pfn = iova_alloc_fast(&iovad, 2, 999, false);
		ASSERT_EQ(998 - 2 * i, pfn);
	}
	/* Eight frames and more are a chunk's size already: one range from the tree. */
	pfn = iova_alloc_fast(&iovad, 8, 1u << 20, false);
	EXPECT_EQ(0, pfn % 8);
	iova_get_stats(&iovad, &st);
	EXPECT_EQ(24 + 8 + 1, st.tree_nodes);
	ASSERT_TRUE(iova_verify(&iovad));
	iova_domain_destroy(&iovad);
}

struct iova_chunk_arg {
	struct iova_domain *iovad;
	unsigned long pfn[IOVA_CHUNK_FRAMES];
};

static void *iova_chunk_thread_fn(void *p)
{
	struct iova_chunk_arg *a = p;
	unsigned int i;

	for (i = 0; i < IOVA_CHUNK_FRAMES; i++)
		a->pfn[i] = iova_alloc_fast(a->iovad, 1, 1u << 20, false);
	for (i = 0; i < IOVA_CHUNK_FRAMES; i++)
		if (a->pfn[i])
			iova_free_fast(a->iovad, a->pfn[i], 1);
	return NULL;
}

/*
 * Two threads' one-frame IOVAs lie in different chunks, so their leaf entries never share a
 * cache line (without chunks they were X and X - 1); each thread's first eight are one chunk.
 */
TEST(iova_chunks_are_per_thread)
{
	struct iova_domain iovad;
	struct iova_chunk_arg a;
	unsigned long mine;
	unsigned int i;
	pthread_t t;

	ASSERT_EQ(0, iova_domain_init(&iovad, PAGE, 1));
	a.iovad = &iovad;
	mine = iova_alloc_fast(&iovad, 1, 1u << 20, false);
	ASSERT_NE(0, mine);
	ASSERT_EQ(0, pthread_create(&t, NULL, iova_chunk_thread_fn, &a));
	ASSERT_EQ(0, pthread_join(t, NULL));
	for (i = 0; i < IOVA_CHUNK_FRAMES; i++) {
		ASSERT_NE(0, a.pfn[i]);
		EXPECT_NE(mine / IOVA_CHUNK_FRAMES, a.pfn[i] / IOVA_CHUNK_FRAMES);
		EXPECT_EQ(a.pfn[0] / IOVA_CHUNK_FRAMES, a.pfn[i] / IOVA_CHUNK_FRAMES);
	}
	iova_free_fast(&iovad, mine, 1);
	ASSERT_TRUE(iova_verify(&iovad));
	iova_domain_destroy(&iovad);
}

/* Every fallible step of a chunk refill fails in turn: one range still comes, nothing leaks. */
TEST(iova_chunk_fault_injection)
{
	long live = uiommu_alloc_live();
	unsigned long nth;
	bool covered = false;

	if (!uiommu_fail_nth_available())
		SKIP("no fault injection in this build");
	for (nth = 1; nth < 64 && !covered; nth++) {
		struct iova_domain iovad;
		struct iova_stats st;
		unsigned long pfn;

		ASSERT_EQ(0, iova_domain_init(&iovad, PAGE, 1));
		uiommu_fail_nth_arm(nth);
		pfn = iova_alloc_fast(&iovad, 1, 1023, false);
		covered = uiommu_fail_nth_disarm() != 0;
		/* A failed chunk falls back to one range from the tree, a later step cannot fail. */
		ASSERT_EQ(1023, pfn);
		iova_get_stats(&iovad, &st);
		if (covered) {
			EXPECT_EQ(IOVA_CHUNK_FRAMES, st.tree_nodes);
			EXPECT_EQ(IOVA_CHUNK_FRAMES - 1, st.cached);
		} else {
			EXPECT_EQ(st.cached + 1, st.tree_nodes);
		}
		ASSERT_TRUE(iova_verify(&iovad));
		iova_free_fast(&iovad, pfn, 1);
		iova_domain_destroy(&iovad);
		EXPECT_EQ(live, uiommu_alloc_live());
	}
	EXPECT_TRUE(covered);
}

/* ---- the IOTLB ------------------------------------------------------------------------------ */

TEST(iotlb_fill_hit_invalidate)
{
	struct sd_domain *a = sd_domain_new(IOMMU_DOMAIN_UNMANAGED, 64);
	struct sd_domain *b = sd_domain_new(IOMMU_DOMAIN_UNMANAGED, 64);
	char *buf = page_buf(8);
	struct iotlb *tlb = iotlb_for_iommu(&sd_iommu);
	phys_addr_t phys;
	int prot, i;

	ASSERT_TRUE(a && b && buf);
	ASSERT_FALSE(IS_ERR(tlb));
	EXPECT_TRUE(iotlb_for_iommu(&sd_iommu) == tlb);
	ASSERT_EQ(0, iommu_map(&a->dom, 0, (phys_addr_t)(uintptr_t)buf, 8 * PAGE,
			       IOMMU_READ | IOMMU_WRITE));
	ASSERT_EQ(0, iommu_map(&b->dom, 0, (phys_addr_t)(uintptr_t)buf, 8 * PAGE, IOMMU_READ));
	EXPECT_FALSE(iotlb_lookup(tlb, a->dom.id, 0, &phys, &prot));
	for (i = 0; i < 8; i++) {
		ASSERT_EQ(0, iotlb_translate(tlb, &a->dom, i * PAGE + 5, IOMMU_WRITE, &phys));
		EXPECT_EQ((phys_addr_t)(uintptr_t)buf + i * PAGE + 5, phys);
		ASSERT_EQ(0, iotlb_translate(tlb, &b->dom, i * PAGE, IOMMU_READ, &phys));
	}
	EXPECT_EQ(8, iotlb_count(tlb, a->dom.id));
	EXPECT_EQ(8, iotlb_count(tlb, b->dom.id));
	ASSERT_TRUE(iotlb_lookup(tlb, a->dom.id, 3 * PAGE + 7, &phys, &prot));
	EXPECT_EQ((phys_addr_t)(uintptr_t)buf + 3 * PAGE + 7, phys);
	EXPECT_EQ(IOMMU_READ | IOMMU_WRITE, prot);

	/* A hit is used even when the page table changed: the entry is stale until invalidated. */
	atomic_store(&a->pte[3], 0);
	EXPECT_EQ(0, iotlb_translate(tlb, &a->dom, 3 * PAGE, IOMMU_READ, &phys));
	iotlb_inv_range(&a->dom, 2 * PAGE, 2 * PAGE);
	EXPECT_EQ(6, iotlb_count(tlb, a->dom.id));
	EXPECT_EQ(-EFAULT, iotlb_translate(tlb, &a->dom, 3 * PAGE, IOMMU_READ, &phys));
	EXPECT_EQ(0, iotlb_translate(tlb, &a->dom, 2 * PAGE, IOMMU_READ, &phys)); /* refilled */
	EXPECT_EQ(8, iotlb_count(tlb, b->dom.id)); /* the other domain is untouched */

	iotlb_inv_domain(&a->dom);
	EXPECT_EQ(0, iotlb_count(tlb, a->dom.id));
	EXPECT_EQ(8, iotlb_count(tlb, b->dom.id));

	/* Permissions: b is read-only. */
	EXPECT_EQ(-EFAULT, iotlb_translate(tlb, &b->dom, PAGE, IOMMU_WRITE, &phys));
	EXPECT_EQ(0, iotlb_translate(tlb, &b->dom, PAGE, IOMMU_READ, &phys));
	/* Unmapped: a fault, and nothing cached. */
	EXPECT_EQ(-EFAULT, iotlb_translate(tlb, &b->dom, 40 * PAGE, IOMMU_READ, &phys));
	EXPECT_EQ(8, iotlb_count(tlb, b->dom.id));
	iotlb_inv_domain(&b->dom);
	sd_domain_free(a);
	sd_domain_free(b);
	free(buf);
}

/*
 * A stamp vouches only for the translation its caller keeps: an entry invalidated and refilled
 * with another mapping between the caller's lookup and its stamp (another device of the domain
 * filling it) gives no stamp for the old one, nor for another permission.
 */
TEST(iotlb_stamp_only_of_the_translation_kept)
{
	struct sd_domain *a = sd_domain_new(IOMMU_DOMAIN_UNMANAGED, 64);
	char *buf = page_buf(2);
	struct iotlb *tlb = iotlb_for_iommu(&sd_iommu);
	phys_addr_t old, phys, base;
	struct iotlb_stamp st;
	int prot;

	ASSERT_TRUE(a && buf);
	ASSERT_FALSE(IS_ERR(tlb));
	base = (phys_addr_t)(uintptr_t)buf;
	ASSERT_EQ(0, iommu_map(&a->dom, 0, base, PAGE, IOMMU_READ | IOMMU_WRITE));
	ASSERT_EQ(0, iotlb_fetch(tlb, &a->dom, 0, IOMMU_READ, &old, &prot));
	ASSERT_EQ(base, old);
	ASSERT_EQ(IOMMU_READ | IOMMU_WRITE, prot);
	ASSERT_TRUE(iotlb_stamp(tlb, a->dom.id, 0, IOMMU_READ, old, prot, &st));
	ASSERT_TRUE(iotlb_stamp_valid(&st));
	ASSERT_FALSE(iotlb_stamp(tlb, a->dom.id, 0, IOMMU_READ, old, IOMMU_READ, &st));
	/* Unmapped, invalidated, mapped elsewhere and refilled before the first caller stamps. */
	ASSERT_EQ(PAGE, iommu_unmap(&a->dom, 0, PAGE));
	iotlb_inv_range(&a->dom, 0, PAGE);
	ASSERT_EQ(0, iommu_map(&a->dom, 0, base + PAGE, PAGE, IOMMU_READ));
	ASSERT_EQ(0, iotlb_fetch(tlb, &a->dom, 0, IOMMU_READ, &phys, &prot));
	ASSERT_EQ(base + PAGE, phys);
	ASSERT_FALSE(iotlb_stamp(tlb, a->dom.id, 0, IOMMU_READ, old, IOMMU_READ | IOMMU_WRITE, &st));
	ASSERT_FALSE(iotlb_stamp(tlb, a->dom.id, 0, IOMMU_READ, old, IOMMU_READ, &st));
	ASSERT_TRUE(iotlb_stamp(tlb, a->dom.id, 0, IOMMU_READ, phys, prot, &st));
	iotlb_inv_domain(&a->dom);
	ASSERT_FALSE(iotlb_stamp_valid(&st));
	sd_domain_free(a);
	free(buf);
}

TEST(iotlb_bounded_and_per_instance)
{
	struct sd_domain *a = sd_domain_new(IOMMU_DOMAIN_UNMANAGED, SD_PAGES);
	char *buf = page_buf(1);
	struct iotlb *t1 = iotlb_for_iommu(&sd_iommu), *t2 = iotlb_for_iommu(&sd_iommu2);
	phys_addr_t phys;
	unsigned int i;

	ASSERT_TRUE(a && buf);
	ASSERT_FALSE(IS_ERR(t1) || IS_ERR(t2));
	ASSERT_TRUE(t1 != t2);
	for (i = 0; i < SD_PAGES; i++)
		ASSERT_EQ(0, iommu_map(&a->dom, i * PAGE, (phys_addr_t)(uintptr_t)buf, PAGE,
				       IOMMU_READ));
	for (i = 0; i < SD_PAGES; i++)
		ASSERT_EQ(0, iotlb_translate(t1, &a->dom, i * PAGE, IOMMU_READ, &phys));
	EXPECT_EQ(IOTLB_SETS * IOTLB_WAYS, iotlb_count(t1, a->dom.id));
	EXPECT_EQ(0, iotlb_count(t2, a->dom.id));
	ASSERT_EQ(0, iotlb_translate(t2, &a->dom, 0, IOMMU_READ, &phys));
	/* One invalidation reaches every instance. */
	iotlb_inv_range(&a->dom, 0, (uint64_t)SD_PAGES * PAGE);
	EXPECT_EQ(0, iotlb_count(t1, a->dom.id));
	EXPECT_EQ(0, iotlb_count(t2, a->dom.id));
	sd_domain_free(a);
	free(buf);
}

struct fill_arg {
	struct iotlb *tlb;
	struct sd_domain *sd;
	int ret;
};

static void *iotlb_fill_fn(void *p)
{
	struct fill_arg *a = p;
	phys_addr_t phys;

	a->ret = iotlb_translate(a->tlb, &a->sd->dom, 5 * PAGE, IOMMU_READ, &phys);
	return NULL;
}

/*
 * The fill race: a fill walks the page table, the page is unmapped and invalidated while the
 * fill is between its walk and its write, and the set held no entry. The invalidation reads the
 * set without locking it when nothing is to be removed; it must still see the fill in flight
 * and keep the stale translation out of the IOTLB. The access itself may use it (in flight).
 */
TEST(iotlb_invalidation_during_fill_in_flight)
{
	struct sd_domain *sd = sd_domain_new(IOMMU_DOMAIN_UNMANAGED, 64);
	struct iotlb *tlb = iotlb_for_iommu(&sd_iommu);
	char *buf = page_buf(1);
	struct fill_arg a;
	phys_addr_t phys;
	uint64_t fills0, fills1, invs;
	int prot;
	pthread_t t;

	ASSERT_TRUE(sd && buf);
	ASSERT_FALSE(IS_ERR(tlb));
	ASSERT_EQ(0, iommu_map(&sd->dom, 5 * PAGE, (phys_addr_t)(uintptr_t)buf, PAGE, IOMMU_READ));
	a = (struct fill_arg){ .tlb = tlb, .sd = sd, .ret = -1 };
	iotlb_stats(tlb, &fills0, &invs);
	ASSERT_EQ(0, sd_hold_start(&sd_walk_hold, &t, iotlb_fill_fn, &a));
	/* The walk read the entry; now the unmap and its invalidation, on an empty set. */
	EXPECT_EQ(PAGE, iommu_unmap(&sd->dom, 5 * PAGE, PAGE));
	iotlb_inv_range(&sd->dom, 5 * PAGE, PAGE);
	ASSERT_EQ(0, sd_hold_finish(&sd_walk_hold, &t));
	EXPECT_EQ(0, a.ret); /* the access was in flight: it used what it walked */
	EXPECT_FALSE(iotlb_lookup(tlb, sd->dom.id, 5 * PAGE, &phys, &prot));
	EXPECT_EQ(-EFAULT, iotlb_translate(tlb, &sd->dom, 5 * PAGE, IOMMU_READ, &phys));
	iotlb_stats(tlb, &fills1, &invs);
	EXPECT_EQ(fills0, fills1); /* the fill was dropped, not made and removed */
	sd_domain_free(sd);
	free(buf);
}

/* An invalidation that finds nothing takes no set: counted only when it removed or locked. */
TEST(iotlb_invalidation_of_nothing_writes_nothing)
{
	struct sd_domain *sd = sd_domain_new(IOMMU_DOMAIN_UNMANAGED, 64);
	struct iotlb *tlb = iotlb_for_iommu(&sd_iommu);
	char *buf = page_buf(1);
	uint64_t fills, inv0, inv1;
	phys_addr_t phys;

	ASSERT_TRUE(sd && buf);
	ASSERT_FALSE(IS_ERR(tlb));
	ASSERT_EQ(0, iommu_map(&sd->dom, 0, (phys_addr_t)(uintptr_t)buf, PAGE, IOMMU_READ));
	iotlb_stats(tlb, &fills, &inv0);
	iotlb_inv_range(&sd->dom, 0, 8 * PAGE); /* nothing cached */
	iotlb_inv_domain(&sd->dom);
	iotlb_stats(tlb, &fills, &inv1);
	EXPECT_EQ(inv0, inv1);
	ASSERT_EQ(0, iotlb_translate(tlb, &sd->dom, 0, IOMMU_READ, &phys));
	iotlb_inv_range(&sd->dom, 0, 8 * PAGE); /* one set holds the entry: it is taken */
	iotlb_stats(tlb, &fills, &inv1);
	EXPECT_EQ(inv0 + 1, inv1);
	EXPECT_EQ(0, iotlb_count(tlb, sd->dom.id));
	sd_domain_free(sd);
	free(buf);
}

/* ---- the DMA API on a stand-in domain ----------------------------------------------------- */

static int sd_read(struct sd_domain *sd, uint64_t iova, void *buf, size_t len)
{
	return iommu_dma_device_access(&sd_iommu, &sd->dom, iova, buf, len, false);
}

static int sd_write(struct sd_domain *sd, uint64_t iova, const void *buf, size_t len)
{
	return iommu_dma_device_access(&sd_iommu, &sd->dom, iova, (void *)(uintptr_t)buf, len,
				       true);
}

TEST(dma_map_unmap_strict_no_stale)
{
	struct sd_domain *sd = sd_domain_new(IOMMU_DOMAIN_DMA, 256);
	char *buf = page_buf(2), out[64];
	dma_addr_t d;

	ASSERT_TRUE(sd && buf);
	strcpy(buf + 100, "hello, device");
	d = iommu_dma_map_phys(&sd->dom, (phys_addr_t)(uintptr_t)(buf + 100), 6000,
			       IOMMU_READ | IOMMU_WRITE, UINT64_MAX);
	ASSERT_NE(DMA_MAPPING_ERROR, d);
	EXPECT_EQ(100, d % PAGE);
	ASSERT_EQ(0, sd_read(sd, d, out, 14));
	EXPECT_STREQ("hello, device", out);
	ASSERT_EQ(0, sd_write(sd, d + 4000, "xyz", 4)); /* across the page boundary mapping */
	EXPECT_STREQ("xyz", buf + 4100);
	iommu_dma_unmap_phys(&sd->dom, d, 6000);
	/* Strict: the IOTLB entry was invalidated before unmap returned. */
	EXPECT_EQ(-EFAULT, sd_read(sd, d, out, 14));
	EXPECT_EQ(-EFAULT, sd_read(sd, d + 4000, out, 4));
	sd_domain_free(sd);
	free(buf);
}

TEST(dma_direction_is_enforced)
{
	struct sd_domain *sd = sd_domain_new(IOMMU_DOMAIN_DMA, 256);
	char *buf = page_buf(1), out[8];
	dma_addr_t d;

	ASSERT_TRUE(sd && buf);
	d = iommu_dma_map_phys(&sd->dom, (phys_addr_t)(uintptr_t)buf, 64, IOMMU_READ, UINT64_MAX);
	ASSERT_NE(DMA_MAPPING_ERROR, d);
	EXPECT_EQ(0, sd_read(sd, d, out, 8));
	EXPECT_EQ(-EFAULT, sd_write(sd, d, "no", 3));
	iommu_dma_unmap_phys(&sd->dom, d, 64);
	sd_domain_free(sd);
	free(buf);
}

TEST(dma_fq_stale_translation_until_flush)
{
	struct sd_domain *sd = sd_domain_new(IOMMU_DOMAIN_DMA_FQ, 256);
	char *buf = page_buf(1), out[16];
	struct iommu_dma_stats st;
	dma_addr_t d;

	ASSERT_TRUE(sd && buf);
	iommu_dma_get_stats(&sd->dom, &st);
	ASSERT_TRUE(st.fq_enabled);
	strcpy(buf, "secret");
	d = iommu_dma_map_phys(&sd->dom, (phys_addr_t)(uintptr_t)buf, 16, IOMMU_READ, UINT64_MAX);
	ASSERT_NE(DMA_MAPPING_ERROR, d);
	ASSERT_EQ(0, sd_read(sd, d, out, 7)); /* fills the IOTLB */
	iommu_dma_unmap_phys(&sd->dom, d, 16);
	/* The page table is clear at once... */
	EXPECT_EQ(0, iommu_iova_to_phys(&sd->dom, d));
	/* ...but the IOTLB still translates: the device reaches the buffer until the flush. */
	memset(out, 0, sizeof(out));
	EXPECT_EQ(0, sd_read(sd, d, out, 7));
	EXPECT_STREQ("secret", out);
	iommu_dma_get_stats(&sd->dom, &st);
	EXPECT_EQ(1, st.fq_pending);
	iommu_dma_flush_fq(&sd->dom);
	EXPECT_EQ(-EFAULT, sd_read(sd, d, out, 7));
	iommu_dma_get_stats(&sd->dom, &st);
	EXPECT_EQ(0, st.fq_pending);
	EXPECT_GE(st.fq_flushes, 1);
	sd_domain_free(sd);
	free(buf);
}

TEST(dma_fq_no_iova_reuse_before_flush)
{
	struct sd_domain *sd = sd_domain_new(IOMMU_DOMAIN_DMA_FQ, 1024);
	char *buf = page_buf(1);
	dma_addr_t first, d;
	int i;

	ASSERT_TRUE(sd && buf);
	first = iommu_dma_map_phys(&sd->dom, (phys_addr_t)(uintptr_t)buf, PAGE, IOMMU_READ,
				   UINT64_MAX);
	ASSERT_NE(DMA_MAPPING_ERROR, first);
	iommu_dma_unmap_phys(&sd->dom, first, PAGE);
	for (i = 0; i < 200; i++) { /* fewer than a queue: no flush happens */
		d = iommu_dma_map_phys(&sd->dom, (phys_addr_t)(uintptr_t)buf, PAGE, IOMMU_READ,
				       UINT64_MAX);
		ASSERT_NE(DMA_MAPPING_ERROR, d);
		ASSERT_NE(first, d);
		iommu_dma_unmap_phys(&sd->dom, d, PAGE);
	}
	iommu_dma_flush_fq(&sd->dom);
	/* Freed now: this thread's cache hands the most recently freed IOVAs out again. */
	d = iommu_dma_map_phys(&sd->dom, (phys_addr_t)(uintptr_t)buf, PAGE, IOMMU_READ, UINT64_MAX);
	ASSERT_NE(DMA_MAPPING_ERROR, d);
	iommu_dma_unmap_phys(&sd->dom, d, PAGE);
	iommu_dma_flush_fq(&sd->dom);
	sd_domain_free(sd);
	free(buf);
}

TEST(dma_strict_reuses_at_once)
{
	struct sd_domain *sd = sd_domain_new(IOMMU_DOMAIN_DMA, 1024);
	char *buf = page_buf(1);
	dma_addr_t a, b;

	ASSERT_TRUE(sd && buf);
	a = iommu_dma_map_phys(&sd->dom, (phys_addr_t)(uintptr_t)buf, PAGE, IOMMU_READ, UINT64_MAX);
	iommu_dma_unmap_phys(&sd->dom, a, PAGE);
	b = iommu_dma_map_phys(&sd->dom, (phys_addr_t)(uintptr_t)buf, PAGE, IOMMU_READ, UINT64_MAX);
	EXPECT_EQ(a, b); /* from the rcache, safe: it was invalidated */
	iommu_dma_unmap_phys(&sd->dom, b, PAGE);
	sd_domain_free(sd);
	free(buf);
}

TEST(dma_fq_full_queue_and_timeout)
{
	struct sd_domain *sd = sd_domain_new(IOMMU_DOMAIN_DMA_FQ, 2048);
	char *buf = page_buf(1);
	struct iommu_dma_stats st;
	dma_addr_t d;
	int i;

	ASSERT_TRUE(sd && buf);
	for (i = 0; i < (int)IOVA_FQ_SIZE + 10; i++) {
		d = iommu_dma_map_phys(&sd->dom, (phys_addr_t)(uintptr_t)buf, PAGE, IOMMU_READ,
				       UINT64_MAX);
		ASSERT_NE(DMA_MAPPING_ERROR, d);
		iommu_dma_unmap_phys(&sd->dom, d, PAGE);
	}
	iommu_dma_get_stats(&sd->dom, &st);
	EXPECT_GE(st.fq_flushes, 1);
	EXPECT_LE(st.fq_pending, IOVA_FQ_SIZE);
	/*
	 * A slow machine (a sanitizer build, a loaded CI host) may already have crossed the timeout
	 * inside the loop; then the queue may be empty. Count from where we are.
	 */
	{
		uint64_t timeouts = st.fq_timeouts;
		bool pending = st.fq_pending > 0;

		if (!timeouts)
			EXPECT_TRUE(pending);
		/* The timeout: the next operation after IOVA_FQ_TIMEOUT_MS flushes everything. */
		usleep((IOVA_FQ_TIMEOUT_MS + 20) * 1000);
		d = iommu_dma_map_phys(&sd->dom, (phys_addr_t)(uintptr_t)buf, PAGE, IOMMU_READ,
				       UINT64_MAX);
		ASSERT_NE(DMA_MAPPING_ERROR, d);
		iommu_dma_get_stats(&sd->dom, &st);
		if (pending)
			EXPECT_EQ(timeouts + 1, st.fq_timeouts);
		EXPECT_EQ(0, st.fq_pending);
	}
	iommu_dma_unmap_phys(&sd->dom, d, PAGE);
	sd_domain_free(sd);
	free(buf);
}

static void *flush_fq_fn(void *p)
{
	iommu_dma_flush_fq(p);
	return NULL;
}

/*
 * A queue fills up while another thread's flush is in flight (started, not finished): the
 * entries queued meanwhile are not covered by the first flush that finishes, and must not be
 * overwritten or freed twice. Every IOVA handed out afterwards must be distinct.
 */
TEST(dma_fq_full_queue_during_other_flush)
{
	struct sd_domain *sd = sd_domain_new(IOMMU_DOMAIN_DMA_FQ, 2048);
	char *buf = page_buf(1);
	dma_addr_t d[600];
	pthread_t t;
	int i, j;

	ASSERT_TRUE(sd && buf);
	ASSERT_EQ(0, sd_hold_start(&sd_flush_hold, &t, flush_fq_fn, &sd->dom));
	for (i = 0; i < (int)IOVA_FQ_SIZE + 20; i++) {
		dma_addr_t x = iommu_dma_map_phys(&sd->dom, (phys_addr_t)(uintptr_t)buf, PAGE,
						  IOMMU_READ, UINT64_MAX);

		ASSERT_NE(DMA_MAPPING_ERROR, x);
		iommu_dma_unmap_phys(&sd->dom, x, PAGE);
	}
	ASSERT_EQ(0, sd_hold_finish(&sd_flush_hold, &t));
	iommu_dma_flush_fq(&sd->dom);
	for (i = 0; i < 600; i++) {
		d[i] = iommu_dma_map_phys(&sd->dom, (phys_addr_t)(uintptr_t)buf, PAGE, IOMMU_READ,
					  UINT64_MAX);
		ASSERT_NE(DMA_MAPPING_ERROR, d[i]);
		for (j = 0; j < i; j++)
			ASSERT_NE(d[j], d[i]);
	}
	for (i = 0; i < 600; i++)
		iommu_dma_unmap_phys(&sd->dom, d[i], PAGE);
	iommu_dma_flush_fq(&sd->dom);
	EXPECT_TRUE(iova_verify(iommu_dma_iovad(&sd->dom)));
	sd_domain_free(sd);
	free(buf);
}

struct fq_filler {
	struct sd_domain *sd;
	char *buf;
	int bad;
};

/* Maps and unmaps until its queue is full and flushes (held there by the test). */
static void *fq_fill_fn(void *p)
{
	struct fq_filler *f = p;
	int i;

	for (i = 0; i < (int)IOVA_FQ_SIZE + 1; i++) {
		dma_addr_t d = iommu_dma_map_phys(&f->sd->dom, (phys_addr_t)(uintptr_t)f->buf, PAGE,
						  IOMMU_READ, UINT64_MAX);

		if (d == DMA_MAPPING_ERROR) {
			f->bad++;
			continue;
		}
		iommu_dma_unmap_phys(&f->sd->dom, d, PAGE);
	}
	return NULL;
}

/*
 * The timeout's flush meets a queue whose thread holds it (that thread is inside its own
 * full-queue flush): it must not wait for it. It leaves the queue to its thread, keeps the
 * deadline armed, and the entries are freed once, by whoever flushes next.
 */
TEST(dma_fq_timeout_skips_busy_queue)
{
	struct sd_domain *sd = sd_domain_new(IOMMU_DOMAIN_DMA_FQ, 2048);
	struct fq_filler f = { .sd = sd, .buf = page_buf(1) };
	struct iommu_dma_stats st;
	uint64_t timeouts;
	dma_addr_t d;
	pthread_t t;

	ASSERT_TRUE(sd && f.buf);
	/* (The statistics lock every queue: read only while no thread holds one.) */
	iommu_dma_get_stats(&sd->dom, &st);
	timeouts = st.fq_timeouts;
	ASSERT_EQ(0, sd_hold_start(&sd_flush_hold, &t, fq_fill_fn, &f));
	/* Past the deadline, our next map runs the timeout: it returns although t holds its queue. */
	usleep((IOVA_FQ_TIMEOUT_MS + 20) * 1000);
	d = iommu_dma_map_phys(&sd->dom, (phys_addr_t)(uintptr_t)f.buf, PAGE, IOMMU_READ,
			       UINT64_MAX);
	ASSERT_NE(DMA_MAPPING_ERROR, d);
	ASSERT_EQ(0, sd_hold_finish(&sd_flush_hold, &t));
	EXPECT_EQ(0, f.bad);
	iommu_dma_get_stats(&sd->dom, &st);
	EXPECT_GE(st.fq_timeouts, timeouts + 1);
	iommu_dma_unmap_phys(&sd->dom, d, PAGE);
	iommu_dma_flush_fq(&sd->dom);
	iommu_dma_get_stats(&sd->dom, &st);
	EXPECT_EQ(0, st.fq_pending);
	EXPECT_TRUE(iova_verify(iommu_dma_iovad(&sd->dom)));
	sd_domain_free(sd);
	free(f.buf);
}

TEST(dma_live_switch_to_fq)
{
	struct sd_domain *sd = sd_domain_new(IOMMU_DOMAIN_DMA, 256);
	char *buf = page_buf(1), out[4];
	struct iommu_dma_stats st;
	dma_addr_t d;

	ASSERT_TRUE(sd && buf);
	iommu_dma_get_stats(&sd->dom, &st);
	EXPECT_FALSE(st.fq_enabled);
	d = iommu_dma_map_phys(&sd->dom, (phys_addr_t)(uintptr_t)buf, 4, IOMMU_READ, UINT64_MAX);
	ASSERT_EQ(0, sd_read(sd, d, out, 4));
	ASSERT_EQ(0, iommu_dma_init_fq(&sd->dom)); /* a mapping is live: allowed */
	ASSERT_EQ(0, iommu_dma_init_fq(&sd->dom)); /* idempotent */
	sd->dom.type = IOMMU_DOMAIN_DMA_FQ;        /* the core's part */
	iommu_dma_unmap_phys(&sd->dom, d, 4);
	EXPECT_EQ(0, sd_read(sd, d, out, 4)); /* now lazy: stale until the flush */
	iommu_dma_flush_fq(&sd->dom);
	EXPECT_EQ(-EFAULT, sd_read(sd, d, out, 4));
	sd_domain_free(sd);
	free(buf);
}

TEST(dma_exhaustion_is_mapping_error)
{
	struct sd_domain *sd = sd_domain_new(IOMMU_DOMAIN_DMA, 32); /* frames 1..31 */
	char *buf = page_buf(1);
	dma_addr_t d[40];
	int i, n = 0;

	ASSERT_TRUE(sd && buf);
	for (i = 0; i < 40; i++) {
		d[i] = iommu_dma_map_phys(&sd->dom, (phys_addr_t)(uintptr_t)buf, PAGE, IOMMU_READ,
					  UINT64_MAX);
		if (d[i] != DMA_MAPPING_ERROR)
			n++;
	}
	EXPECT_EQ(31, n);
	for (i = 0; i < 40; i++)
		if (d[i] != DMA_MAPPING_ERROR)
			iommu_dma_unmap_phys(&sd->dom, d[i], PAGE);
	/* All free again, cached in this thread: a 16-page mapping needs them flushed back. */
	d[0] = iommu_dma_map_phys(&sd->dom, (phys_addr_t)(uintptr_t)buf, 16 * PAGE, IOMMU_READ,
				  UINT64_MAX);
	EXPECT_NE(DMA_MAPPING_ERROR, d[0]);
	sd_domain_free(sd);
	free(buf);
}

TEST(dma_map_fault_injection)
{
	long live = uiommu_alloc_live();
	struct sd_domain *sd = sd_domain_new(IOMMU_DOMAIN_DMA_FQ, 256);
	char *buf = page_buf(1);
	unsigned long nth;

	ASSERT_TRUE(sd && buf);
	if (!uiommu_fail_nth_available())
		SKIP("no fault injection in this build");
	/* Fail each fallible step of a first map + unmap in turn: an error, never a leak. */
	for (nth = 1; nth < 50; nth++) {
		dma_addr_t d;

		uiommu_fail_nth_arm(nth);
		d = iommu_dma_map_phys(&sd->dom, (phys_addr_t)(uintptr_t)buf, PAGE, IOMMU_READ,
				       UINT64_MAX);
		if (d != DMA_MAPPING_ERROR)
			iommu_dma_unmap_phys(&sd->dom, d, PAGE);
		if (uiommu_fail_nth_disarm())
			break; /* nothing failed: every step was covered */
	}
	iommu_dma_flush_fq(&sd->dom);
	EXPECT_TRUE(iova_verify(iommu_dma_iovad(&sd->dom)));
	sd_domain_free(sd);
	EXPECT_EQ(live, uiommu_alloc_live());
	free(buf);
}

struct dma_thread_arg {
	struct sd_domain *sd;
	int id;
	int iters;
	int bad;
};

static void *dma_thread_fn(void *p)
{
	struct dma_thread_arg *a = p;
	char *buf = page_buf(1), out[8];
	int i;

	if (!buf) {
		a->bad++;
		return NULL;
	}
	for (i = 0; i < a->iters; i++) {
		dma_addr_t d;

		snprintf(buf, 8, "t%d:%d", a->id, i % 1000);
		d = iommu_dma_map_phys(&a->sd->dom, (phys_addr_t)(uintptr_t)buf, 8, IOMMU_READ,
				       UINT64_MAX);
		if (d == DMA_MAPPING_ERROR) {
			a->bad++;
			continue;
		}
		/* The IOVA is ours alone while mapped: the device sees our buffer through it. */
		if (sd_read(a->sd, d, out, 8) || memcmp(out, buf, 8))
			a->bad++;
		iommu_dma_unmap_phys(&a->sd->dom, d, 8);
	}
	free(buf);
	return NULL;
}

static void dma_two_threads(struct __h_test *_metadata, unsigned int type)
{
	struct sd_domain *sd = sd_domain_new(type, 1u << 12);
	struct dma_thread_arg args[2];
	pthread_t t[2];
	int i;

	ASSERT_TRUE(sd != NULL);
	for (i = 0; i < 2; i++) {
		args[i] = (struct dma_thread_arg){ .sd = sd, .id = i, .iters = 20000 };
		ASSERT_EQ(0, pthread_create(&t[i], NULL, dma_thread_fn, &args[i]));
	}
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, pthread_join(t[i], NULL));
		EXPECT_EQ(0, args[i].bad);
	}
	iommu_dma_flush_fq(&sd->dom);
	EXPECT_TRUE(iova_verify(iommu_dma_iovad(&sd->dom)));
	sd_domain_free(sd);
}

TEST(dma_two_threads_strict)
{
	dma_two_threads(_metadata, IOMMU_DOMAIN_DMA);
}

TEST(dma_two_threads_fq)
{
	dma_two_threads(_metadata, IOMMU_DOMAIN_DMA_FQ);
}

/*
 * Several threads map and unmap through one domain, each its own buffer, and check what the
 * DMA API promises across threads:
 *   - no IOVA is handed out twice: each mapped page is claimed in an owner table, and a claim
 *     that finds another owner is a double hand-out;
 *   - strict: once the unmap returned, the IOTLB holds no translation of the IOVA to our buffer
 *     (the device read it through the IOTLB before, so an entry was there);
 *   - lazy: an IOVA comes back only after a flush that started after its unmap was called has
 *     finished (the stand-in's flushes are numbered and marked done), so neither the IOVA nor
 *     the page behind a stale entry is reused before its flush.
 */
#define DT_THREADS 4
#define DT_PAGES 2048u

struct dt_shared {
	struct sd_domain *sd;
	struct iotlb *tlb;
	bool lazy;
	atomic_int owner[DT_PAGES];            /* thread id + 1 while mapped, else 0 */
	atomic_uint unmapped_at[DT_PAGES];     /* sd_flush_started when its last unmap began, + 1 */
};

struct dt_arg {
	struct dt_shared *sh;
	int id;
	int iters;
	int double_handout, stale_after_strict, reused_before_flush, other;
};

static void *dt_thread_fn(void *p)
{
	struct dt_arg *a = p;
	struct dt_shared *sh = a->sh;
	char *buf = page_buf(1), out[8];
	int i;

	if (!buf) {
		a->other++;
		return NULL;
	}
	for (i = 0; i < a->iters; i++) {
		unsigned int since;
		phys_addr_t phys;
		uint64_t pfn;
		dma_addr_t d;
		int prot, free_owner = 0;

		snprintf(buf, 8, "%d:%d", a->id, i % 10000);
		d = iommu_dma_map_phys(&sh->sd->dom, (phys_addr_t)(uintptr_t)buf, 8, IOMMU_READ,
				       UINT64_MAX);
		if (d == DMA_MAPPING_ERROR || d / PAGE >= DT_PAGES) {
			a->other++;
			continue;
		}
		pfn = d / PAGE;
		if (!atomic_compare_exchange_strong(&sh->owner[pfn], &free_owner, a->id + 1))
			a->double_handout++;
		since = atomic_load(&sh->unmapped_at[pfn]);
		if (sh->lazy && since && !sd_flush_done_since(since - 1))
			a->reused_before_flush++;
		if (sd_read(sh->sd, d, out, 8) || memcmp(out, buf, 8))
			a->other++;
		/* Given up before the unmap: from then on another thread may get it. */
		atomic_store(&sh->unmapped_at[pfn], atomic_load(&sd_flush_started) + 1);
		atomic_store(&sh->owner[pfn], 0);
		iommu_dma_unmap_phys(&sh->sd->dom, d, 8);
		if (!sh->lazy && iotlb_lookup(sh->tlb, sh->sd->dom.id, d, &phys, &prot) &&
		    phys == (phys_addr_t)(uintptr_t)buf + (d % PAGE))
			a->stale_after_strict++;
	}
	free(buf);
	return NULL;
}

static void dma_threads_check(struct __h_test *_metadata, unsigned int type)
{
	struct dt_shared *sh = calloc(1, sizeof(*sh));
	struct dt_arg args[DT_THREADS];
	pthread_t t[DT_THREADS];
	int i;

	ASSERT_TRUE(sh != NULL);
	sh->sd = sd_domain_new(type, DT_PAGES);
	sh->tlb = iotlb_for_iommu(&sd_iommu);
	sh->lazy = type == IOMMU_DOMAIN_DMA_FQ;
	ASSERT_TRUE(sh->sd != NULL);
	ASSERT_FALSE(IS_ERR(sh->tlb));
	for (i = 0; i < DT_THREADS; i++) {
		args[i] = (struct dt_arg){ .sh = sh, .id = i, .iters = 5000 };
		ASSERT_EQ(0, pthread_create(&t[i], NULL, dt_thread_fn, &args[i]));
	}
	for (i = 0; i < DT_THREADS; i++) {
		ASSERT_EQ(0, pthread_join(t[i], NULL));
		EXPECT_EQ(0, args[i].double_handout);
		EXPECT_EQ(0, args[i].stale_after_strict);
		EXPECT_EQ(0, args[i].reused_before_flush);
		EXPECT_EQ(0, args[i].other);
	}
	iommu_dma_flush_fq(&sh->sd->dom);
	EXPECT_TRUE(iova_verify(iommu_dma_iovad(&sh->sd->dom)));
	sd_domain_free(sh->sd);
	free(sh);
}

TEST(dma_threads_strict_no_double_handout_no_stale)
{
	dma_threads_check(_metadata, IOMMU_DOMAIN_DMA);
}

TEST(dma_threads_fq_no_reuse_before_flush)
{
	dma_threads_check(_metadata, IOMMU_DOMAIN_DMA_FQ);
}

/* ---- through the core, the mock driver and the default topology ---------------------------- */

struct real_dev {
	struct device *dev;
	struct iommu_domain *dom;
};

static int real_setup(struct __h_test *_metadata, const char *bdf, struct real_dev *r)
{
	int ret = topology_load(NULL);

	if (ret)
		return ret;
	r->dev = topology_find_device(bdf);
	if (!r->dev)
		return -ENODEV;
	r->dom = iommu_get_domain_for_dev(r->dev);
	return r->dom ? 0 : -ENODEV;
}

TEST(real_fq_device_stale_until_flush)
{
	struct real_dev r;
	char *buf = page_buf(1), out[8];
	dma_addr_t d;

	ASSERT_TRUE(buf != NULL);
	ASSERT_EQ(0, real_setup(_metadata, "0000:00:03.0", &r));
	ASSERT_EQ(IOMMU_DOMAIN_DMA_FQ, r.dom->type);
	strcpy(buf, "nic");
	d = dma_map_single(r.dev, buf, 4, DMA_TO_DEVICE);
	ASSERT_NE(DMA_MAPPING_ERROR, d);
	EXPECT_NE((dma_addr_t)(uintptr_t)buf, d);
	ASSERT_EQ(0, dma_device_read(r.dev, d, out, 4));
	EXPECT_STREQ("nic", out);
	EXPECT_EQ(-EFAULT, dma_device_write(r.dev, d, "x", 1)); /* TO_DEVICE: read-only */
	dma_unmap_single(r.dev, d, 4, DMA_TO_DEVICE);
	EXPECT_EQ(0, dma_device_read(r.dev, d, out, 4)); /* stale, through the mock's IOTLB */
	iommu_dma_flush_fq(r.dom);
	EXPECT_EQ(-EFAULT, dma_device_read(r.dev, d, out, 4));
	topology_unload();
	free(buf);
}

TEST(real_strict_device_never_stale)
{
	struct real_dev r;
	char *buf = page_buf(1), out[8];
	dma_addr_t d;

	ASSERT_TRUE(buf != NULL);
	ASSERT_EQ(0, real_setup(_metadata, "0000:02:00.0", &r)); /* untrusted: DMA */
	ASSERT_EQ(IOMMU_DOMAIN_DMA, r.dom->type);
	d = dma_map_single(r.dev, buf, 8, DMA_BIDIRECTIONAL);
	ASSERT_NE(DMA_MAPPING_ERROR, d);
	ASSERT_EQ(0, dma_device_write(r.dev, d, "dev", 4));
	EXPECT_STREQ("dev", buf);
	ASSERT_EQ(0, dma_device_read(r.dev, d, out, 4));
	dma_unmap_single(r.dev, d, 8, DMA_BIDIRECTIONAL);
	EXPECT_EQ(-EFAULT, dma_device_read(r.dev, d, out, 4));
	topology_unload();
	free(buf);
}

TEST(real_fq_downgraded_without_deferred_flush)
{
	struct real_dev r;
	char *buf = page_buf(1), out[4];
	struct iommu_dma_stats st;
	dma_addr_t d;

	ASSERT_TRUE(buf != NULL);
	/* Behind iommu1, which cannot defer flushes: the global DMA-FQ becomes DMA. */
	ASSERT_EQ(0, real_setup(_metadata, "0000:01:00.0", &r));
	ASSERT_FALSE(r.dev->iommu->deferred_flush);
	EXPECT_EQ(IOMMU_DOMAIN_DMA, r.dom->type);
	iommu_dma_get_stats(r.dom, &st);
	EXPECT_FALSE(st.fq_enabled);
	d = dma_map_single(r.dev, buf, 4, DMA_TO_DEVICE);
	ASSERT_NE(DMA_MAPPING_ERROR, d);
	ASSERT_EQ(0, dma_device_read(r.dev, d, out, 4));
	dma_unmap_single(r.dev, d, 4, DMA_TO_DEVICE);
	EXPECT_EQ(-EFAULT, dma_device_read(r.dev, d, out, 4));
	topology_unload();
	free(buf);
}

TEST(real_identity_device_uses_cpu_address)
{
	struct real_dev r;
	char *buf = page_buf(1), out[8];
	dma_addr_t d;

	ASSERT_TRUE(buf != NULL);
	ASSERT_EQ(0, real_setup(_metadata, "0000:00:02.0", &r));
	ASSERT_EQ(IOMMU_DOMAIN_IDENTITY, r.dom->type);
	strcpy(buf, "id");
	d = dma_map_single(r.dev, buf, 3, DMA_TO_DEVICE);
	EXPECT_EQ((dma_addr_t)(uintptr_t)buf, d);
	ASSERT_EQ(0, dma_device_read(r.dev, d, out, 3));
	EXPECT_STREQ("id", out);
	dma_unmap_single(r.dev, d, 3, DMA_TO_DEVICE);
	topology_unload();
	free(buf);
}

TEST(real_live_switch_dma_to_fq_while_bound)
{
	struct real_dev r;
	struct iommu_group *group;
	char *buf = page_buf(1), out[4];
	dma_addr_t d;

	ASSERT_TRUE(buf != NULL);
	ASSERT_EQ(0, real_setup(_metadata, "0000:02:00.0", &r));
	/* Untrusted forces DMA at probe, but the sysfs live switch is still allowed. */
	group = iommu_group_get(r.dev);
	ASSERT_TRUE(group != NULL);
	d = dma_map_single(r.dev, buf, 4, DMA_TO_DEVICE);
	ASSERT_NE(DMA_MAPPING_ERROR, d);
	ASSERT_EQ(0, dma_device_read(r.dev, d, out, 4));
	ASSERT_EQ(7, iommu_group_type_store(group, "DMA-FQ\n", 7, true));
	EXPECT_TRUE(iommu_get_domain_for_dev(r.dev) == r.dom); /* the same domain object */
	EXPECT_EQ(IOMMU_DOMAIN_DMA_FQ, r.dom->type);
	dma_unmap_single(r.dev, d, 4, DMA_TO_DEVICE);
	EXPECT_EQ(0, dma_device_read(r.dev, d, out, 4)); /* lazy from now on */
	iommu_dma_flush_fq(r.dom);
	EXPECT_EQ(-EFAULT, dma_device_read(r.dev, d, out, 4));
	iommu_group_put(group);
	topology_unload();
	free(buf);
}

TEST_HARNESS_MAIN
