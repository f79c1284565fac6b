// SPDX-License-Identifier: MIT
/*
 * bench_dma_engine: a device's DMA through the emulated IOMMU (uiommu_dma_read/write: the
 * group mutex, the domain lookup, one IOTLB translation per 4 KiB page, the permission check,
 * one memcpy per physically contiguous run under the fault trap) against a plain memcpy of the
 * same bytes between the same buffers, in the same run. 64 KiB and 4 KiB, read and write.
 *
 * The device is the default topology's 0000:03:00.0 with a paging domain of the mock driver;
 * the 64 KiB buffer is mapped at one IOVA as 16 physically contiguous pages, so after the first
 * pass every translation is an IOTLB hit and the copy is one run.
 *
 * Targets, as memcpy_time / dma_time (1.0: the IOMMU costs nothing): at least 0.8 at 64 KiB,
 * at least 0.5 at 4 KiB. Exit status: 0 after a run (targets are reported, not enforced), 1
 * when a call fails.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "iommu/iommu.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "machine/dma-engine.h"
#include "machine/topology.h"
#include "mm/mm.h"
#include "uiommu/uiommu.h"

#include "bench.h"

#define IOVA 0x100000ull
#define LEN_BIG (64u << 10)
#define LEN_SMALL 4096u
#define BATCH 64u

struct dma_case {
	struct uiommu_dma_dev *e;
	char *host;  /* the device's memory, mapped at IOVA */
	char *buf;   /* the emulator's buffer */
	size_t len;
	bool write;
};

static void fail(const char *what)
{
	fprintf(stderr, "bench_dma_engine: %s\n", what);
	exit(1);
}

static void run_dma(void *p, unsigned long iters)
{
	struct dma_case *c = p;
	unsigned long i;

	for (i = 0; i != iters; i++) {
		ssize_t n = c->write ? uiommu_dma_write(c->e, 0, IOVA, c->buf, c->len, 0) :
				       uiommu_dma_read(c->e, 0, IOVA, c->buf, c->len, 0);

		if (n != (ssize_t)c->len)
			fail("DMA failed");
	}
}

static void run_memcpy(void *p, unsigned long iters)
{
	struct dma_case *c = p;
	unsigned long i;

	for (i = 0; i != iters; i++) {
		if (c->write)
			memcpy(c->host, c->buf, c->len);
		else
			memcpy(c->buf, c->host, c->len);
		/* Keep the copy: the compiler may not fold iterations together. */
		__asm__ volatile("" : : "r"(c->buf), "r"(c->host) : "memory");
	}
}

/*
 * COPY cases: @n copies of @len bytes, IOVA -> IOVA + LEN_BIG, in one uiommu_dma_batch(); with
 * @record, each also writes a 32-byte completion record (UIOMMU_DMA_RECORD), 64 bytes apart
 * after the copy's destination, as a copy engine's descriptors do.
 */
struct copy_case {
	struct uiommu_dma_dev *e;
	char *host;
	size_t len;
	unsigned int n;
	bool record;
	struct uiommu_dma_op ops[BATCH];
	struct uiommu_dma_record recs[BATCH];
	uint64_t rec_data[4];
};

static void run_copy(void *p, unsigned long iters)
{
	struct copy_case *c = p;

	for (unsigned long i = 0; i < iters; i += c->n) {
		for (unsigned int k = 0; k < c->n; k++)
			c->ops[k] = (struct uiommu_dma_op){
				.op = UIOMMU_DMA_OP_COPY, .src = IOVA, .iova = IOVA + LEN_BIG,
				.len = c->len, .flags = c->record ? UIOMMU_DMA_RECORD : 0,
				.buf = &c->recs[k],
			};
		if (uiommu_dma_batch(c->e, c->ops, c->n) != (ssize_t)c->n)
			fail("COPY failed");
	}
}

static void run_memcpy_copy(void *p, unsigned long iters)
{
	struct copy_case *c = p;

	for (unsigned long i = 0; i != iters; i++) {
		memcpy(c->host + LEN_BIG, c->host, c->len);
		__asm__ volatile("" : : "r"(c->host) : "memory");
	}
}

static const char usage[] =
	"Usage: bench_dma_engine [--quick]\n"
	"Device DMA through the IOMMU (uiommu_dma_read/write) against memcpy of the same sizes.\n"
	"--quick: small iteration counts (CI smoke run).\n";

int main(int argc, char **argv)
{
	int quick = bench_parse_args(argc, argv, usage);
	unsigned long big_iters = quick ? 2000 : 100000, small_iters = quick ? 20000 : 1000000;
	struct dma_case dc[4];
	struct copy_case cc[3];
	struct bench_case cases[14];
	struct iommu_domain *dom;
	struct device *dev;
	char *host, *buf;
	unsigned int i;
	int owner, ret;

	/*
	 * One trap span for the whole run, as the engine's own threads and every thread
	 * under uiommu-run (whose signal mask the preload tracks) have: what is timed is the
	 * engine, not two rt_sigprocmask calls per copy of a thread the library knows nothing of.
	 */
	uiommu_uaccess_begin();
	ret = topology_load(NULL);
	if (ret) {
		fprintf(stderr, "bench_dma_engine: topology_load: %s\n", strerror(-ret));
		return 1;
	}
	dev = topology_find_device("0000:03:00.0");
	if (!dev || iommu_device_claim_dma_owner(dev, &owner))
		fail("no device 0000:03:00.0 to own");
	dom = iommu_paging_domain_alloc(dev);
	if (IS_ERR_OR_NULL(dom) || iommu_attach_device(dom, dev))
		fail("paging domain");
	host = mmap(NULL, 2 * LEN_BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	buf = aligned_alloc(4096, LEN_BIG);
	if (host == MAP_FAILED || !buf)
		fail("memory");
	memset(host, 1, 2 * LEN_BIG);
	memset(buf, 2, LEN_BIG);
	if (iommu_map(dom, IOVA, (phys_addr_t)(uintptr_t)host, 2 * LEN_BIG,
		      IOMMU_READ | IOMMU_WRITE))
		fail("iommu_map");

	for (i = 0; i < 4; i++) {
		dc[i] = (struct dma_case){
			.host = host, .buf = buf, .len = i < 2 ? LEN_BIG : LEN_SMALL, .write = i & 1,
		};
		dc[i].e = dma_engine_dev_open(dev);
		if (IS_ERR(dc[i].e))
			fail("dma_engine_dev_open");
	}
	for (i = 0; i < 3; i++) {
		cc[i] = (struct copy_case){ .host = host, .len = i ? LEN_SMALL : LEN_BIG,
					    .n = i ? BATCH : 1, .record = i == 2 };
		for (unsigned int k = 0; k < BATCH; k++)
			cc[i].recs[k] = (struct uiommu_dma_record){
				.iova = IOVA + LEN_BIG + LEN_SMALL + 64 * k, .buf = cc[i].rec_data,
				.len = sizeof(cc[i].rec_data),
			};
		cc[i].e = dma_engine_dev_open(dev);
		if (IS_ERR(cc[i].e))
			fail("dma_engine_dev_open");
	}
	cases[8] = (struct bench_case){ "64 KiB device copy (uiommu_dma_batch COPY)", run_copy,
					&cc[0], big_iters };
	cases[9] = (struct bench_case){ "64 KiB memcpy (memory -> memory)", run_memcpy_copy,
					&cc[0], big_iters };
	cases[10] = (struct bench_case){ "4 KiB device copy, 64 per batch, per copy", run_copy,
					 &cc[1], small_iters };
	cases[11] = (struct bench_case){ "4 KiB memcpy (memory -> memory)", run_memcpy_copy,
					 &cc[1], small_iters };
	cases[12] = (struct bench_case){ "4 KiB device copy + 32-byte record, 64 per batch",
					 run_copy, &cc[2], small_iters };
	cases[13] = (struct bench_case){ "4 KiB memcpy (memory -> memory)", run_memcpy_copy,
					 &cc[2], small_iters };
	cases[0] = (struct bench_case){ "64 KiB device read (uiommu_dma_read)", run_dma, &dc[0],
					big_iters };
	cases[1] = (struct bench_case){ "64 KiB memcpy (memory -> buffer)", run_memcpy, &dc[0],
					big_iters };
	cases[2] = (struct bench_case){ "64 KiB device write (uiommu_dma_write)", run_dma, &dc[1],
					big_iters };
	cases[3] = (struct bench_case){ "64 KiB memcpy (buffer -> memory)", run_memcpy, &dc[1],
					big_iters };
	cases[4] = (struct bench_case){ "4 KiB device read", run_dma, &dc[2], small_iters };
	cases[5] = (struct bench_case){ "4 KiB memcpy (memory -> buffer)", run_memcpy, &dc[2],
					small_iters };
	cases[6] = (struct bench_case){ "4 KiB device write", run_dma, &dc[3], small_iters };
	cases[7] = (struct bench_case){ "4 KiB memcpy (buffer -> memory)", run_memcpy, &dc[3],
					small_iters };

	bench_run(cases, ARRAY_SIZE(cases));
	bench_print_header("bench_dma_engine: device DMA through the IOMMU vs memcpy", quick);
	for (i = 0; i < ARRAY_SIZE(cases); i++)
		bench_print_case(&cases[i]);
	printf("\n  memcpy_time / dma_time (1.0: the IOMMU is free)\n");
	bench_print_ratio_min("64 KiB read", &cases[1], &cases[0], 0.8);
	bench_print_ratio_min("64 KiB write", &cases[3], &cases[2], 0.8);
	bench_print_ratio_min("4 KiB read", &cases[5], &cases[4], 0.5);
	bench_print_ratio_min("4 KiB write", &cases[7], &cases[6], 0.5);
	bench_print_ratio_min("64 KiB copy", &cases[9], &cases[8], 0.8);
	bench_print_ratio_min("4 KiB copy, batched", &cases[11], &cases[10], 0.5);
	bench_print_ratio_min("4 KiB copy + record, batched", &cases[13], &cases[12], 0);

	for (i = 0; i < 4; i++)
		uiommu_dma_dev_close(dc[i].e);
	for (i = 0; i < 3; i++)
		uiommu_dma_dev_close(cc[i].e);
	iommu_unmap(dom, IOVA, 2 * LEN_BIG);
	iommu_detach_device(dom, dev);
	iommu_domain_free(dom);
	iommu_device_release_dma_owner(dev);
	topology_unload();
	munmap(host, 2 * LEN_BIG);
	free(buf);
	return 0;
}
