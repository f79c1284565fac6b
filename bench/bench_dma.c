// SPDX-License-Identifier: MIT
/*
 * bench_dma: the DMA API of an emulated driver (dma_map_single + dma_unmap_single of one page)
 * under a strict (DMA) and a lazy (DMA-FQ) default domain, with one and with two threads; and
 * the IOTLB model's hit cost against a plain hash-table lookup of the same keys. Linked against
 * the library's objects (the DMA layer is internal API), on the embedded default topology:
 * 0000:02:00.0 is untrusted (strict DMA), 0000:00:03.0 gets the global default (DMA-FQ).
 *
 * One op = one map and the unmap of the same page. With two threads, both map their own page on
 * the same device (one driver, several CPUs submitting: the kernel's common case), and the
 * figure is wall time divided by the ops of both threads together, so perfect scaling halves
 * it (ratio 0.5).
 *
 * The IOTLB cases look up 512 resident translations of one domain in turn: iotlb_lookup() (the
 * seqlock read of a 4-way set) against an open-addressing hash table of the same (domain id,
 * page) keys with the same index function, single-threaded and unlocked. Both are out-of-line
 * calls (the plain lookup is kept from being inlined into its loop, as iotlb_lookup() is in
 * another file), so the ratio is the price of the IOTLB's concurrency and associativity alone.
 * Target: at most 2x.
 *
 * The domain-level cases run the same loop on iommu_dma_map_phys()/iommu_dma_unmap_phys() of
 * the same default domains, without dma_map_single()'s lookup of the device's domain (today
 * iommu_get_domain_for_dev(), which takes the group mutex twice per op): the difference is the
 * cost of that lookup, and their scaling is that of the DMA layer itself.
 *
 * Exit status: 0 after a run (targets are reported, not enforced), 1 when a call fails.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iommu/dma-iommu.h"
#include "iommu/iommu.h"
#include "iommu/iotlb.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "machine/topology.h"

#include "bench.h"

#define PAGE 4096ul
#define TLB_KEYS 512u

static void fail(const char *what)
{
	fprintf(stderr, "bench_dma: %s\n", what);
	exit(1);
}

/* ---- map + unmap ---------------------------------------------------------------------------- */

/* @domain set: the domain-level calls, without the core's per-call domain lookup. */
struct dma_case {
	struct device *dev;
	unsigned int threads;
	struct iommu_domain *domain;
};

struct dma_thread {
	struct device *dev;
	struct iommu_domain *domain;
	unsigned long iters;
	pthread_t t;
	char *buf;
};

static void *dma_loop(void *p)
{
	struct dma_thread *t = p;
	unsigned long i;

	for (i = 0; i != t->iters; i++) {
		dma_addr_t d;

		if (t->domain) {
			d = iommu_dma_map_phys(t->domain, (phys_addr_t)(uintptr_t)t->buf, PAGE,
					       IOMMU_READ | IOMMU_WRITE, UINT64_MAX);
			if (d == DMA_MAPPING_ERROR)
				fail("iommu_dma_map_phys");
			iommu_dma_unmap_phys(t->domain, d, PAGE);
			continue;
		}
		d = dma_map_single(t->dev, t->buf, PAGE, DMA_BIDIRECTIONAL);
		if (d == DMA_MAPPING_ERROR)
			fail("dma_map_single");
		dma_unmap_single(t->dev, d, PAGE, DMA_BIDIRECTIONAL);
	}
	return NULL;
}

static char *bufs[2];

static void run_dma(void *ctx, unsigned long iters)
{
	struct dma_case *c = ctx;
	struct dma_thread t[2];
	unsigned int i;

	if (c->threads == 1) {
		t[0] = (struct dma_thread){ .dev = c->dev, .domain = c->domain, .iters = iters,
					    .buf = bufs[0] };
		dma_loop(&t[0]);
		return;
	}
	/* The harness divides by @iters: split them so the figure is wall time per op. */
	for (i = 0; i < 2; i++) {
		t[i] = (struct dma_thread){ .dev = c->dev, .domain = c->domain,
					    .iters = iters / 2, .buf = bufs[i] };
		if (pthread_create(&t[i].t, NULL, dma_loop, &t[i]))
			fail("pthread_create");
	}
	for (i = 0; i < 2; i++)
		pthread_join(t[i].t, NULL);
}

/* ---- IOTLB hit against a plain hash lookup ------------------------------------------------ */

struct plain_entry {
	uint64_t pfn;
	uint64_t phys_pfn;
	uint32_t domid;
	uint32_t flags;
};

static struct plain_entry plain[IOTLB_SETS * IOTLB_WAYS];
static struct iotlb *tlb;
static uint32_t tlb_domid;
static volatile uint64_t sink;

static size_t plain_index(uint32_t domid, uint64_t pfn)
{
	uint64_t mix = ((uint64_t)domid * UINT64_C(0x9e3779b97f4a7c15)) >> 40;

	return (size_t)((pfn ^ mix) & (IOTLB_SETS * IOTLB_WAYS - 1));
}

static void plain_insert(uint32_t domid, uint64_t pfn, uint64_t phys_pfn)
{
	size_t i = plain_index(domid, pfn);

	while (plain[i].flags)
		i = (i + 1) & (IOTLB_SETS * IOTLB_WAYS - 1);
	plain[i] = (struct plain_entry){ .pfn = pfn, .phys_pfn = phys_pfn, .domid = domid,
					 .flags = 1 };
}

__attribute__((noinline)) static bool plain_lookup(uint32_t domid, uint64_t iova, uint64_t *phys)
{
	uint64_t pfn = iova >> 12;
	size_t i = plain_index(domid, pfn);

	while (plain[i].flags) {
		if (plain[i].pfn == pfn && plain[i].domid == domid) {
			*phys = (plain[i].phys_pfn << 12) | (iova & (PAGE - 1));
			return true;
		}
		i = (i + 1) & (IOTLB_SETS * IOTLB_WAYS - 1);
	}
	return false;
}

static void run_plain(void *ctx, unsigned long iters)
{
	uint64_t acc = 0, phys;
	unsigned long i;

	(void)ctx;
	for (i = 0; i != iters; i++) {
		if (!plain_lookup(tlb_domid, (uint64_t)(i % TLB_KEYS) * PAGE, &phys))
			fail("plain lookup missed");
		acc += phys;
	}
	sink = acc;
}

static void run_iotlb(void *ctx, unsigned long iters)
{
	uint64_t acc = 0;
	unsigned long i;
	phys_addr_t phys;
	int prot;

	(void)ctx;
	for (i = 0; i != iters; i++) {
		if (!iotlb_lookup(tlb, tlb_domid, (uint64_t)(i % TLB_KEYS) * PAGE, &phys, &prot))
			fail("IOTLB lookup missed");
		acc += phys;
	}
	sink = acc;
}

/* A translation-only domain for the IOTLB cases: IOVA page n -> the page at base + n pages. */
static phys_addr_t fake_iova_to_phys(struct iommu_domain *d, uint64_t iova)
{
	(void)d;
	return UINT64_C(0x7f0000000000) + iova;
}

static const struct iommu_domain_ops fake_ops = { .iova_to_phys = fake_iova_to_phys };
static struct iommu_domain fake_domain = {
	.type = IOMMU_DOMAIN_UNMANAGED, .ops = &fake_ops, .pgsize_bitmap = PAGE, .id = 0x7fff0001,
};
static struct iommu_device fake_iommu = { .name = "bench" };

static void iotlb_setup(void)
{
	phys_addr_t phys;
	unsigned int i;

	tlb = iotlb_for_iommu(&fake_iommu);
	if (IS_ERR(tlb))
		fail("iotlb_for_iommu");
	tlb_domid = fake_domain.id;
	for (i = 0; i < TLB_KEYS; i++) {
		if (iotlb_translate(tlb, &fake_domain, (uint64_t)i * PAGE, IOMMU_READ, &phys))
			fail("iotlb_translate");
		plain_insert(tlb_domid, i, phys >> 12);
	}
	if (iotlb_count(tlb, tlb_domid) != TLB_KEYS)
		fail("IOTLB does not hold every key");
}

static const char usage[] =
	"Usage: bench_dma [--quick]\n"
	"DMA API map+unmap of one page, strict and lazy, one and two threads; IOTLB hit cost\n"
	"against a plain hash lookup. --quick: small iteration counts (CI smoke run).\n";

int main(int argc, char **argv)
{
	int quick = bench_parse_args(argc, argv, usage);
	unsigned long iters = quick ? 2000 : 200000, tlb_iters = quick ? 20000 : 4000000;
	struct device *strict_dev, *lazy_dev;
	struct dma_case dc[8];
	int ret;

	ret = topology_load(NULL);
	if (ret) {
		fprintf(stderr, "bench_dma: topology_load: %s\n", strerror(-ret));
		return 1;
	}
	strict_dev = topology_find_device("0000:02:00.0");
	lazy_dev = topology_find_device("0000:00:03.0");
	if (!strict_dev || !lazy_dev)
		fail("default topology lacks the devices");
	if (iommu_get_domain_for_dev(strict_dev)->type != IOMMU_DOMAIN_DMA ||
	    iommu_get_domain_for_dev(lazy_dev)->type != IOMMU_DOMAIN_DMA_FQ)
		fail("unexpected default domain types");
	if (posix_memalign((void **)&bufs[0], PAGE, PAGE) ||
	    posix_memalign((void **)&bufs[1], PAGE, PAGE))
		fail("posix_memalign");
	dc[0] = (struct dma_case){ strict_dev, 1, NULL };
	dc[1] = (struct dma_case){ lazy_dev, 1, NULL };
	dc[2] = (struct dma_case){ strict_dev, 2, NULL };
	dc[3] = (struct dma_case){ lazy_dev, 2, NULL };
	dc[4] = (struct dma_case){ strict_dev, 1, iommu_get_domain_for_dev(strict_dev) };
	dc[5] = (struct dma_case){ lazy_dev, 1, iommu_get_domain_for_dev(lazy_dev) };
	dc[6] = (struct dma_case){ strict_dev, 2, iommu_get_domain_for_dev(strict_dev) };
	dc[7] = (struct dma_case){ lazy_dev, 2, iommu_get_domain_for_dev(lazy_dev) };
	iotlb_setup();

	struct bench_case cases[] = {
		{ "map+unmap 1 page, DMA (strict), 1 thread", run_dma, &dc[0], iters },
		{ "map+unmap 1 page, DMA-FQ (lazy), 1 thread", run_dma, &dc[1], iters },
		{ "map+unmap 1 page, DMA (strict), 2 threads (wall/op)", run_dma, &dc[2], iters },
		{ "map+unmap 1 page, DMA-FQ (lazy), 2 threads (wall/op)", run_dma, &dc[3], iters },
		{ "  domain-level (iommu_dma_map_phys), DMA, 1 thread", run_dma, &dc[4], iters },
		{ "  domain-level, DMA-FQ, 1 thread", run_dma, &dc[5], iters },
		{ "  domain-level, DMA, 2 threads (wall/op)", run_dma, &dc[6], iters },
		{ "  domain-level, DMA-FQ, 2 threads (wall/op)", run_dma, &dc[7], iters },
		{ "plain hash lookup, 512 resident keys", run_plain, NULL, tlb_iters },
		{ "IOTLB hit (iotlb_lookup), same 512 keys", run_iotlb, NULL, tlb_iters },
	};

	bench_run(cases, ARRAY_SIZE(cases));
	bench_print_header("bench_dma: the DMA API and the IOTLB model", quick);
	for (unsigned int i = 0; i < ARRAY_SIZE(cases); i++)
		bench_print_case(&cases[i]);
	printf("\n");
	bench_print_ratio("DMA-FQ / DMA, 1 thread", &cases[1], &cases[0], 0);
	bench_print_ratio("DMA-FQ / DMA, 2 threads", &cases[3], &cases[2], 0);
	bench_print_ratio("DMA, 2 threads / 1 thread (0.5 = perfect scaling)", &cases[2],
			  &cases[0], 0);
	bench_print_ratio("DMA-FQ, 2 threads / 1 thread (0.5 = perfect scaling)", &cases[3],
			  &cases[1], 0);
	bench_print_ratio("domain-level DMA, 2 threads / 1 thread", &cases[6], &cases[4], 0);
	bench_print_ratio("domain-level DMA-FQ, 2 threads / 1 thread", &cases[7], &cases[5], 0);
	bench_print_ratio("IOTLB hit / plain hash lookup", &cases[9], &cases[8], 2.0);
	topology_unload();
	free(bufs[0]);
	free(bufs[1]);
	return 0;
}
