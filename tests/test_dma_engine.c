// SPDX-License-Identifier: MIT
/*
 * White-box tests of the device DMA engine (src/machine/dma-engine.c, the public uiommu_dma_*).
 *
 * The fixture takes the emulated machine's 0000:03:00.0 (behind the mock IOMMU iommu0, 20-bit
 * PASIDs, PRI), claims its DMA ownership as VFIO would (the group goes to its blocking domain),
 * attaches a fresh paging domain and opens an engine handle on it. Host memory is mmap()ed
 * pages, mapped page by page where a test needs the physical layout to differ from the IOVA
 * layout. The rule under test throughout: every page is translated and checked before a byte
 * of it moves, pages move in IOVA order, a fault stops the transfer at the faulting page, and
 * req.done counts exactly the bytes before it.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "drivers/mock/selftest_mock.h"
#include "harness.h"
#include "iommu/iommu.h"
#include "iommu/iotlb.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "machine/dma-engine.h"
#include "machine/topology.h"
#include "mm/mm.h"
#include "uiommu/uiommu.h"

#define PAGE 4096ul
#define IOVA 0x100000ull
#define BDF "0000:03:00.0"

static char *pages(size_t n)
{
	void *p = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static void fill(void *p, size_t len, unsigned int seed)
{
	unsigned char *c = p;
	size_t i;

	for (i = 0; i < len; i++)
		c[i] = (unsigned char)(seed + i * 7 + (i >> 8));
}

static size_t read_faults(struct uiommu_dma_dev *e, struct uiommu_dma_fault *f, size_t n)
{
	ssize_t got = uiommu_dma_dev_read_faults(e, f, n);

	return got < 0 ? 0 : (size_t)got;
}

FIXTURE(dma)
{
	struct device *dev;
	struct iommu_domain *dom;
	struct uiommu_dma_dev *e;
	char *mem;           /* 16 pages */
	int owner;
};

FIXTURE_SETUP(dma)
{
	ASSERT_EQ(0, topology_load(NULL));
	self->dev = topology_find_device(BDF);
	ASSERT_TRUE(self->dev != NULL);
	ASSERT_EQ(0, iommu_device_claim_dma_owner(self->dev, &self->owner));
	self->dom = iommu_paging_domain_alloc(self->dev);
	ASSERT_FALSE(IS_ERR_OR_NULL(self->dom));
	ASSERT_EQ(0, iommu_attach_device(self->dom, self->dev));
	self->e = dma_engine_dev_open(self->dev);
	ASSERT_FALSE(IS_ERR(self->e));
	self->mem = pages(16);
	ASSERT_TRUE(self->mem != NULL);
}

FIXTURE_TEARDOWN(dma)
{
	uiommu_dma_dev_close(self->e);
	iommu_detach_device(self->dom, self->dev);
	iommu_domain_free(self->dom);
	iommu_device_release_dma_owner(self->dev);
	munmap(self->mem, 16 * PAGE);
}

/* IOVA pages 0..3 map host pages 3, 1, 2, 7: contiguous runs and breaks both. */
TEST_F(dma, write_read_across_pages_and_mappings)
{
	static const unsigned int host[4] = { 3, 1, 2, 7 };
	char src[4 * PAGE], dst[4 * PAGE];
	unsigned int i;

	for (i = 0; i < 4; i++)
		ASSERT_EQ(0, iommu_map(self->dom, IOVA + i * PAGE,
				       (phys_addr_t)(uintptr_t)(self->mem + host[i] * PAGE), PAGE,
				       IOMMU_READ | IOMMU_WRITE));
	fill(src, sizeof(src), 1);
	/* Unaligned start and end: 100 bytes into page 0 to 100 bytes before the end of page 3. */
	ASSERT_EQ((ssize_t)(4 * PAGE - 200),
		  uiommu_dma_write(self->e, 0, IOVA + 100, src, 4 * PAGE - 200, 0));
	for (i = 0; i < 4; i++) {
		size_t lo = i == 0 ? 100 : 0, hi = i == 3 ? PAGE - 100 : PAGE;

		ASSERT_EQ(0, memcmp(self->mem + host[i] * PAGE + lo, src + i * PAGE + lo - 100,
				    hi - lo));
	}
	memset(dst, 0, sizeof(dst));
	ASSERT_EQ((ssize_t)(4 * PAGE), uiommu_dma_read(self->e, 0, IOVA, dst, 4 * PAGE,
						      UIOMMU_DMA_NO_PASID));
	for (i = 0; i < 4; i++)
		ASSERT_EQ(0, memcmp(dst + i * PAGE, self->mem + host[i] * PAGE, PAGE));
	ASSERT_EQ(0, read_faults(self->e, (struct uiommu_dma_fault[1]){}, 1));
	/* A zero-length transfer is a no-op, even at an unmapped address. */
	ASSERT_EQ(0, uiommu_dma_read(self->e, 0, 0xdead000, dst, 0, 0));
}

/* A 64 KiB transfer over one 64 KiB contiguous mapping, and a big mapping (2 MiB leaves). */
TEST_F(dma, large_contiguous)
{
	size_t len = 2u << 20;
	char *big = mmap(NULL, 2 * len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *aligned, *src = malloc(len), *dst = malloc(len);

	ASSERT_TRUE(big != MAP_FAILED && src && dst);
	aligned = (char *)ALIGN_UP((uintptr_t)big, len);
	ASSERT_EQ(0, iommu_map(self->dom, 0x40000000ull, (phys_addr_t)(uintptr_t)aligned, len,
			       IOMMU_READ | IOMMU_WRITE));
	fill(src, len, 9);
	ASSERT_EQ((ssize_t)len, uiommu_dma_write(self->e, 0, 0x40000000ull, src, len, 0));
	ASSERT_EQ(0, memcmp(aligned, src, len));
	ASSERT_EQ((ssize_t)(64 << 10), uiommu_dma_read(self->e, 0, 0x40000000ull + 4096, dst,
						       64 << 10, 0));
	ASSERT_EQ(0, memcmp(dst, aligned + 4096, 64 << 10));
	munmap(big, 2 * len);
	free(src);
	free(dst);
}

/*
 * Page 1 of three is read-only: a write moves page 0, not a byte of pages 1 and 2, and says
 * EACCES with done == one page; the fault log names page 1.
 */
TEST_F(dma, read_only_never_written)
{
	struct uiommu_dma_fault f[4];
	char src[3 * PAGE], before[3 * PAGE];
	struct uiommu_dma_req req = {
		.op = UIOMMU_DMA_OP_WRITE, .iova = IOVA, .buf = src, .len = 3 * PAGE,
	};

	ASSERT_EQ(0, iommu_map(self->dom, IOVA, (phys_addr_t)(uintptr_t)self->mem, PAGE,
			       IOMMU_READ | IOMMU_WRITE));
	ASSERT_EQ(0, iommu_map(self->dom, IOVA + PAGE, (phys_addr_t)(uintptr_t)(self->mem + PAGE),
			       PAGE, IOMMU_READ));
	ASSERT_EQ(0, iommu_map(self->dom, IOVA + 2 * PAGE,
			       (phys_addr_t)(uintptr_t)(self->mem + 2 * PAGE), PAGE,
			       IOMMU_READ | IOMMU_WRITE));
	fill(self->mem, 3 * PAGE, 50);
	memcpy(before, self->mem, sizeof(before));
	fill(src, sizeof(src), 3);

	ASSERT_EQ(-1, uiommu_dma_xfer(self->e, &req));
	ASSERT_EQ(EACCES, errno);
	ASSERT_EQ(EACCES, req.error);
	ASSERT_EQ(PAGE, req.done);
	ASSERT_EQ(0, memcmp(self->mem, src, PAGE));
	ASSERT_EQ(0, memcmp(self->mem + PAGE, before + PAGE, 2 * PAGE));
	ASSERT_EQ(1, read_faults(self->e, f, 4));
	ASSERT_EQ(IOVA + PAGE, f[0].iova);
	ASSERT_EQ(UIOMMU_DMA_FAULT_PERM, f[0].reason);
	ASSERT_EQ(UIOMMU_DMA_OP_WRITE, f[0].op);
	ASSERT_EQ(0, f[0].flags);

	/* Starting in the middle of the read-only page: nothing moves. */
	ASSERT_EQ(-1, uiommu_dma_write(self->e, 0, IOVA + PAGE + 8, src, 16, 0));
	ASSERT_EQ(EACCES, errno);
	ASSERT_EQ(0, memcmp(self->mem + PAGE, before + PAGE, PAGE));
	/* Reading it is allowed, and sees what is there. */
	ASSERT_EQ((ssize_t)PAGE, uiommu_dma_read(self->e, 0, IOVA + PAGE, src, PAGE, 0));
	ASSERT_EQ(0, memcmp(src, before + PAGE, PAGE));
	/* A write-only mapping cannot be read. */
	ASSERT_EQ(0, iommu_map(self->dom, IOVA + 3 * PAGE,
			       (phys_addr_t)(uintptr_t)(self->mem + 3 * PAGE), PAGE, IOMMU_WRITE));
	ASSERT_EQ(-1, uiommu_dma_read(self->e, 0, IOVA + 3 * PAGE, src, 8, 0));
	ASSERT_EQ(EACCES, errno);
}

TEST_F(dma, unmapped_records_fault)
{
	struct uiommu_dma_fault f[4];
	char buf[2 * PAGE];
	struct uiommu_dma_req req = {
		.op = UIOMMU_DMA_OP_READ, .iova = IOVA + 512, .buf = buf, .len = 2 * PAGE,
	};

	ASSERT_EQ(0, iommu_map(self->dom, IOVA, (phys_addr_t)(uintptr_t)self->mem, PAGE,
			       IOMMU_READ | IOMMU_WRITE));
	fill(self->mem, PAGE, 77);
	ASSERT_EQ(-1, uiommu_dma_xfer(self->e, &req));
	ASSERT_EQ(EFAULT, req.error);
	ASSERT_EQ(PAGE - 512, req.done);
	ASSERT_EQ(0, memcmp(buf, self->mem + 512, PAGE - 512));
	ASSERT_EQ(-1, uiommu_dma_read(self->e, 0, 0x7000000, buf, 1, 0));
	ASSERT_EQ(EFAULT, errno);
	ASSERT_EQ(2, read_faults(self->e, f, 4));
	ASSERT_EQ(IOVA + PAGE, f[0].iova);
	ASSERT_EQ(UIOMMU_DMA_FAULT_UNMAPPED, f[0].reason);
	ASSERT_EQ(UIOMMU_DMA_OP_READ, f[0].op);
	ASSERT_EQ(0x7000000, f[1].iova);
	/* The log is drained by reading. */
	ASSERT_EQ(0, read_faults(self->e, f, 4));
}

TEST_F(dma, fault_log_keeps_newest)
{
	struct uiommu_dma_fault f[DMA_ENGINE_FAULT_LOG + 8];
	unsigned int i;
	char c;

	for (i = 0; i < DMA_ENGINE_FAULT_LOG + 5; i++)
		ASSERT_EQ(-1, uiommu_dma_read(self->e, 0, 0x9000000 + i * PAGE, &c, 1, 0));
	ASSERT_EQ(DMA_ENGINE_FAULT_LOG, read_faults(self->e, f, ARRAY_SIZE(f)));
	ASSERT_EQ(0x9000000 + 5 * PAGE, f[0].iova);
	ASSERT_TRUE(f[0].flags & UIOMMU_DMA_FAULT_LOST);
	ASSERT_FALSE(f[1].flags & UIOMMU_DMA_FAULT_LOST);
}

TEST_F(dma, bad_arguments)
{
	struct uiommu_dma_req req = { .op = 7, .buf = self->mem, .len = 1 };
	char c;

	ASSERT_EQ(-1, uiommu_dma_xfer(self->e, &req));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(-1, uiommu_dma_read(self->e, 0, IOVA, &c, 1, 1u << 7));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(-1, uiommu_dma_read(self->e, 0, UINT64_MAX, &c, 2, 0)); /* wraps */
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(-1, uiommu_dma_read(self->e, 1u << 20, IOVA, &c, 1, 0)); /* 20-bit PASIDs */
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(-1, uiommu_dma_read(NULL, 0, IOVA, &c, 1, 0));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(0, read_faults(self->e, (struct uiommu_dma_fault[1]){}, 1));
}

TEST_F(dma, blocked_and_identity)
{
	const struct iommu_ops *ops = iommu_device_ops(self->dev);
	struct uiommu_dma_fault f;
	char src[64], *host = self->mem + 5 * PAGE;

	ASSERT_EQ(0, iommu_map(self->dom, IOVA, (phys_addr_t)(uintptr_t)self->mem, PAGE,
			       IOMMU_READ | IOMMU_WRITE));
	/* Owned and detached: the blocking domain. Even a mapped IOVA faults. */
	iommu_detach_device(self->dom, self->dev);
	ASSERT_EQ(-1, uiommu_dma_read(self->e, 0, IOVA, src, 8, 0));
	ASSERT_EQ(EFAULT, errno);
	ASSERT_EQ(1, read_faults(self->e, &f, 1));
	ASSERT_EQ(UIOMMU_DMA_FAULT_BLOCKED, f.reason);

	/* Identity: the IOVA is the address. */
	ASSERT_EQ(0, iommu_attach_device(ops->identity_domain, self->dev));
	fill(src, sizeof(src), 5);
	ASSERT_EQ((ssize_t)sizeof(src),
		  uiommu_dma_write(self->e, 0, (uintptr_t)host, src, sizeof(src), 0));
	ASSERT_EQ(0, memcmp(host, src, sizeof(src)));
	/* Memory the process does not have: EFAULT, no crash; done stops at that page. */
	{
		char *hole = pages(2);
		struct uiommu_dma_req req = {
			.op = UIOMMU_DMA_OP_WRITE, .iova = (uintptr_t)hole + PAGE - 16,
			.buf = src, .len = 32,
		};

		ASSERT_TRUE(hole != NULL);
		ASSERT_EQ(0, munmap(hole + PAGE, PAGE));
		ASSERT_EQ(-1, uiommu_dma_xfer(self->e, &req));
		ASSERT_EQ(EFAULT, req.error);
		ASSERT_EQ(16, req.done);
		ASSERT_EQ(0, memcmp(hole + PAGE - 16, src, 16));
		ASSERT_EQ(1, read_faults(self->e, &f, 1));
		ASSERT_EQ(UIOMMU_DMA_FAULT_HOST, f.reason);
		ASSERT_EQ((uintptr_t)hole + PAGE, f.iova);
		munmap(hole, PAGE);
	}
	iommu_detach_device(ops->identity_domain, self->dev);
	ASSERT_EQ(0, iommu_attach_device(self->dom, self->dev));
}

/*
 * The IOTLB is used: after an unmap whose invalidation has not run, the stale entry still
 * translates (that is the model); once the strict unmap's sync ran, it does not.
 */
TEST_F(dma, stale_iotlb_entry_not_used_after_strict_unmap)
{
	struct iommu_iotlb_gather gather;
	char buf[16];

	ASSERT_EQ(0, iommu_map(self->dom, IOVA, (phys_addr_t)(uintptr_t)self->mem, PAGE,
			       IOMMU_READ | IOMMU_WRITE));
	ASSERT_EQ(16, uiommu_dma_read(self->e, 0, IOVA, buf, 16, 0)); /* fills the IOTLB */
	iommu_iotlb_gather_init(&gather);
	ASSERT_EQ(PAGE, iommu_unmap_fast(self->dom, IOVA, PAGE, &gather));
	ASSERT_EQ(16, uiommu_dma_read(self->e, 0, IOVA, buf, 16, 0)); /* a hit: no walk */
	iommu_iotlb_sync(self->dom, &gather);
	ASSERT_EQ(-1, uiommu_dma_read(self->e, 0, IOVA, buf, 16, 0));
	ASSERT_EQ(EFAULT, errno);

	/* iommu_unmap() is strict on its own. */
	ASSERT_EQ(0, iommu_map(self->dom, IOVA, (phys_addr_t)(uintptr_t)self->mem, PAGE,
			       IOMMU_READ | IOMMU_WRITE));
	ASSERT_EQ(16, uiommu_dma_write(self->e, 0, IOVA, buf, 16, 0));
	ASSERT_EQ(PAGE, iommu_unmap(self->dom, IOVA, PAGE));
	ASSERT_EQ(-1, uiommu_dma_write(self->e, 0, IOVA, buf, 16, 0));
	ASSERT_EQ(EFAULT, errno);
}

TEST_F(dma, pasid_domains)
{
	struct iommu_domain *d2 = iommu_paging_domain_alloc(self->dev);
	struct uiommu_dma_fault f;
	char buf[8];
	int ret;

	ASSERT_FALSE(IS_ERR_OR_NULL(d2));
	ASSERT_EQ(0, iommu_map(self->dom, IOVA, (phys_addr_t)(uintptr_t)self->mem, PAGE,
			       IOMMU_READ | IOMMU_WRITE));
	ASSERT_EQ(0, iommu_map(d2, IOVA, (phys_addr_t)(uintptr_t)(self->mem + PAGE), PAGE,
			       IOMMU_READ));
	memcpy(self->mem, "ridrid!", 8);
	memcpy(self->mem + PAGE, "pasid5!", 8);
	/* Nothing at PASID 5 yet. */
	ASSERT_EQ(-1, uiommu_dma_read(self->e, 5, IOVA, buf, 8, 0));
	ASSERT_EQ(ENODEV, errno);
	ASSERT_EQ(1, read_faults(self->e, &f, 1));
	ASSERT_EQ(UIOMMU_DMA_FAULT_NO_DOMAIN, f.reason);
	ASSERT_EQ(5, f.pasid);
	ASSERT_EQ(UIOMMU_DMA_FAULT_PASID_VALID, f.flags);

	ret = iommu_attach_device_pasid(d2, self->dev, 5, NULL);
	if (ret == -EOPNOTSUPP) {
		iommu_domain_free(d2);
		SKIP("the mock driver has no set_dev_pasid yet");
	}
	ASSERT_EQ(0, ret);
	ASSERT_EQ(8, uiommu_dma_read(self->e, 5, IOVA, buf, 8, 0));
	ASSERT_EQ(0, memcmp(buf, "pasid5!", 8));
	ASSERT_EQ(-1, uiommu_dma_write(self->e, 5, IOVA, buf, 8, 0)); /* read-only there */
	ASSERT_EQ(EACCES, errno);
	/* The same IOVA without PASID is the RID's domain. */
	ASSERT_EQ(8, uiommu_dma_read(self->e, 5, IOVA, buf, 8, UIOMMU_DMA_NO_PASID));
	ASSERT_EQ(0, memcmp(buf, "ridrid!", 8));
	ASSERT_EQ(8, uiommu_dma_read(self->e, 0, IOVA, buf, 8, 0));
	ASSERT_EQ(0, memcmp(buf, "ridrid!", 8));
	iommu_detach_device_pasid(d2, self->dev, 5);
	ASSERT_EQ(-1, uiommu_dma_read(self->e, 5, IOVA, buf, 8, 0));
	ASSERT_EQ(ENODEV, errno);
	iommu_domain_free(d2);
}

/*
 * A fault-capable domain attached without an attach handle: the page request finds no handler,
 * and io-pgfault answers INVALID at once (invariant 24), which the device takes as EFAULT.
 */
static int test_iopf_handler(struct iopf_group *group)
{
	(void)group;
	return -EOPNOTSUPP;
}

TEST_F(dma, fault_capable_without_handle)
{
	struct uiommu_dma_fault f;
	char buf[8];

	self->dom->iopf_handler = test_iopf_handler;
	ASSERT_EQ(-1, uiommu_dma_read(self->e, 0, IOVA, buf, 8, 0));
	ASSERT_EQ(EFAULT, errno);
	ASSERT_EQ(1, read_faults(self->e, &f, 1));
	ASSERT_EQ(UIOMMU_DMA_FAULT_PRQ_INVALID, f.reason);
	/* NO_PRI: the miss faults at once. */
	ASSERT_EQ(-1, uiommu_dma_read(self->e, 0, IOVA, buf, 8, UIOMMU_DMA_NO_PRI));
	ASSERT_EQ(EFAULT, errno);
	ASSERT_EQ(1, read_faults(self->e, &f, 1));
	ASSERT_EQ(UIOMMU_DMA_FAULT_UNMAPPED, f.reason);
	self->dom->iopf_handler = NULL;
}

/*
 * ---- page requests, end to end -------------------------------------------------------------
 *
 * A fault-capable domain attached with an attach handle, so io-pgfault finds the handler. The
 * handler plays the fault's owner (iommufd, a VMM): per the test's mode it maps the faulting
 * page and answers SUCCESS, answers INVALID, answers SUCCESS without mapping, or keeps the group
 * for a later answer from another thread.
 */
enum prq_mode { PRQ_MAP_SUCCESS, PRQ_INVALID, PRQ_SUCCESS_NOMAP, PRQ_KEEP };

static struct {
	enum prq_mode mode;
	struct iommu_domain *dom;
	char *host;                   /* what PRQ_MAP_SUCCESS maps the faulting page to */
	atomic_int calls;
	_Atomic(struct iopf_group *) kept;
	uint32_t last_perm, last_flags, last_pasid;
} prq;

static int prq_handler(struct iopf_group *group)
{
	struct iommu_fault_page_request *f = &group->last_fault.fault.prm;

	atomic_fetch_add(&prq.calls, 1);
	prq.last_perm = f->perm;
	prq.last_flags = f->flags;
	prq.last_pasid = f->pasid;
	switch (prq.mode) {
	case PRQ_MAP_SUCCESS:
		if (iommu_map(prq.dom, f->addr & ~(PAGE - 1), (phys_addr_t)(uintptr_t)prq.host, PAGE,
			      IOMMU_READ | IOMMU_WRITE))
			return -EINVAL;
		/* fallthrough */
	case PRQ_SUCCESS_NOMAP:
		iopf_group_response(group, IOMMU_PAGE_RESP_SUCCESS);
		break;
	case PRQ_INVALID:
		iopf_group_response(group, IOMMU_PAGE_RESP_INVALID);
		break;
	case PRQ_KEEP:
		atomic_store(&prq.kept, group);
		return 0;
	}
	iopf_free_group(group);
	return 0;
}

FIXTURE(prq)
{
	struct device *dev;
	struct iommu_group *group;
	struct iommu_domain *dom;
	struct iommu_attach_handle handle;
	struct uiommu_dma_dev *e;
	char *mem;
	int owner;
};

FIXTURE_SETUP(prq)
{
	ASSERT_EQ(0, topology_load(NULL));
	self->dev = topology_find_device(BDF);
	ASSERT_TRUE(self->dev != NULL);
	ASSERT_TRUE(self->dev->pri);
	ASSERT_EQ(0, iommu_device_claim_dma_owner(self->dev, &self->owner));
	self->group = iommu_group_get(self->dev);
	self->dom = iommu_paging_domain_alloc(self->dev);
	ASSERT_FALSE(IS_ERR_OR_NULL(self->dom));
	self->dom->iopf_handler = prq_handler;
	ASSERT_EQ(0, iommu_attach_group_handle(self->dom, self->group, &self->handle));
	self->e = dma_engine_dev_open(self->dev);
	ASSERT_FALSE(IS_ERR(self->e));
	self->mem = pages(4);
	ASSERT_TRUE(self->mem != NULL);
	memset((void *)&prq, 0, sizeof(prq));
	prq.dom = self->dom;
	prq.host = self->mem;
}

FIXTURE_TEARDOWN(prq)
{
	struct iopf_group *kept = atomic_exchange(&prq.kept, NULL);

	if (kept) {
		iopf_group_response(kept, IOMMU_PAGE_RESP_INVALID);
		iopf_free_group(kept);
	}
	uiommu_dma_dev_close(self->e);
	iommu_detach_group_handle(self->dom, self->group);
	iommu_domain_free(self->dom);
	iommu_group_put(self->group);
	iommu_device_release_dma_owner(self->dev);
	munmap(self->mem, 4 * PAGE);
}

/* A miss raises one page request; the owner maps the page and answers SUCCESS; the DMA retries
 * and completes with the data of the page it mapped. */
TEST_F(prq, success_after_mapping_completes_the_dma)
{
	char buf[64];

	prq.mode = PRQ_MAP_SUCCESS;
	fill(self->mem, PAGE, 3);
	ASSERT_EQ(64, uiommu_dma_read(self->e, 0, IOVA + 128, buf, 64, 0));
	ASSERT_EQ(0, memcmp(buf, self->mem + 128, 64));
	ASSERT_EQ(1, atomic_load(&prq.calls));
	ASSERT_EQ(IOMMU_FAULT_PERM_READ, prq.last_perm);
	/* A RID request: LAST_PAGE, no PASID_VALID. */
	ASSERT_EQ(IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE, prq.last_flags);
	ASSERT_EQ(0, read_faults(self->e, (struct uiommu_dma_fault[1]){}, 1));
	/* Mapped now: no second request. A write asks for WRITE permission. */
	ASSERT_EQ(1, uiommu_dma_write(self->e, 0, IOVA + 128, "x", 1, 0));
	ASSERT_EQ(1, atomic_load(&prq.calls));
	ASSERT_EQ('x', self->mem[128]);
	ASSERT_EQ(0u, iopf_dev_pending_groups(self->dev)); /* answered and freed */
}

/*
 * NO_WAIT: where a page request would be sent, the transfer stops with EAGAIN instead, having
 * moved the pages before the miss, sent nothing and logged nothing; in a batch, the op that
 * stopped says where. The same transfer without the flag then asks and completes.
 */
TEST_F(prq, no_wait_stops_with_eagain_before_asking)
{
	struct uiommu_dma_req req = {
		.op = UIOMMU_DMA_OP_READ, .flags = UIOMMU_DMA_NO_WAIT, .iova = IOVA - 64,
		.len = 128,
	};
	struct uiommu_dma_op ops[2] = {
		{ .op = UIOMMU_DMA_OP_WRITE, .flags = UIOMMU_DMA_NO_WAIT, .iova = IOVA - PAGE,
		  .len = 8 },
		{ .op = UIOMMU_DMA_OP_READ, .flags = UIOMMU_DMA_NO_WAIT, .iova = IOVA, .len = 8 },
	};
	char buf[128], src[8] = "written";

	prq.mode = PRQ_MAP_SUCCESS;
	fill(self->mem, 2 * PAGE, 5);
	/* The page before IOVA is mapped; IOVA's is not. */
	ASSERT_EQ(0, iommu_map(self->dom, IOVA - PAGE, (phys_addr_t)(uintptr_t)(self->mem + PAGE),
			       PAGE, IOMMU_READ | IOMMU_WRITE));
	req.buf = buf;
	ASSERT_EQ(-1, uiommu_dma_xfer(self->e, &req));
	ASSERT_EQ(EAGAIN, errno);
	ASSERT_EQ(EAGAIN, req.error);
	ASSERT_EQ(64u, req.done);
	ASSERT_EQ(0, memcmp(buf, self->mem + 2 * PAGE - 64, 64));
	ASSERT_EQ(0, atomic_load(&prq.calls));
	ASSERT_EQ(0, read_faults(self->e, (struct uiommu_dma_fault[1]){}, 1));
	ASSERT_EQ(0u, iopf_dev_pending_groups(self->dev));

	ops[0].buf = src;
	ops[1].buf = buf;
	ASSERT_EQ(1, uiommu_dma_batch(self->e, ops, 2));
	ASSERT_EQ(0, memcmp(self->mem + PAGE, src, 8));
	ASSERT_EQ(EAGAIN, ops[1].error);
	ASSERT_EQ(0u, ops[1].done);
	ASSERT_EQ(IOVA, ops[1].fault_iova);
	ASSERT_EQ(0, atomic_load(&prq.calls));

	/* Where it may wait, the same read asks, is answered and completes. */
	req.flags = 0;
	ASSERT_EQ(0, uiommu_dma_xfer(self->e, &req));
	ASSERT_EQ(128u, req.done);
	ASSERT_EQ(1, atomic_load(&prq.calls));
	ASSERT_EQ(0, memcmp(buf + 64, self->mem, 64));
}

/*
 * A COPY's record that misses raises its own page request, with WRITE permission, after the
 * copy; once answered the record is written and the op completes. With NO_WAIT it stops with
 * EAGAIN at the record, the copy whole.
 */
TEST_F(prq, copy_record_page_request)
{
	struct uiommu_dma_record r = { .iova = IOVA, .buf = "done", .len = 4 };
	struct uiommu_dma_op op = {
		.op = UIOMMU_DMA_OP_COPY, .flags = UIOMMU_DMA_RECORD | UIOMMU_DMA_NO_WAIT,
		.src = IOVA - PAGE, .iova = IOVA - PAGE + 2048, .len = 256, .buf = &r,
	};

	prq.mode = PRQ_MAP_SUCCESS;
	fill(self->mem + PAGE, PAGE, 9);
	memset(self->mem, 0, PAGE);
	ASSERT_EQ(0, iommu_map(self->dom, IOVA - PAGE, (phys_addr_t)(uintptr_t)(self->mem + PAGE),
			       PAGE, IOMMU_READ | IOMMU_WRITE));
	ASSERT_EQ(0, uiommu_dma_batch(self->e, &op, 1));
	ASSERT_EQ(EAGAIN, op.error);
	ASSERT_EQ(256u, op.done);
	ASSERT_EQ(UIOMMU_DMA_OP_WRITE, op.fault_op);
	ASSERT_EQ(IOVA, op.fault_iova);
	ASSERT_EQ(0, memcmp(self->mem + PAGE + 2048, self->mem + PAGE, 256));
	ASSERT_EQ(0, atomic_load(&prq.calls));

	op.flags = UIOMMU_DMA_RECORD;
	memset(self->mem + PAGE + 2048, 0, 256);
	ASSERT_EQ(1, uiommu_dma_batch(self->e, &op, 1));
	ASSERT_EQ(0, op.error);
	ASSERT_EQ(256u, op.done);
	ASSERT_EQ(1, atomic_load(&prq.calls));
	ASSERT_EQ(IOMMU_FAULT_PERM_WRITE, prq.last_perm);
	ASSERT_EQ(0, memcmp(self->mem + PAGE + 2048, self->mem + PAGE, 256));
	ASSERT_EQ(0, memcmp(self->mem, "done", 4));
}

/* INVALID: the DMA fails EFAULT with nothing moved, and the log says why. */
TEST_F(prq, invalid_fails_the_dma)
{
	struct uiommu_dma_fault f;
	char buf[8] = "keepme!";

	prq.mode = PRQ_INVALID;
	ASSERT_EQ(-1, uiommu_dma_write(self->e, 0, IOVA, buf, 8, 0));
	ASSERT_EQ(EFAULT, errno);
	ASSERT_EQ(1, atomic_load(&prq.calls));
	ASSERT_EQ(IOMMU_FAULT_PERM_WRITE, prq.last_perm);
	ASSERT_EQ(1, read_faults(self->e, &f, 1));
	ASSERT_EQ(UIOMMU_DMA_FAULT_PRQ_INVALID, f.reason);
	ASSERT_EQ(IOVA, f.iova);
	ASSERT_EQ(0u, iopf_dev_pending_groups(self->dev));
}

/* SUCCESS without mapping: the retry misses again and faults; the engine does not loop. */
TEST_F(prq, success_without_mapping_faults_once)
{
	struct uiommu_dma_req req = { .op = UIOMMU_DMA_OP_READ, .iova = IOVA, .len = 2 * PAGE };
	char buf[2 * PAGE];
	struct uiommu_dma_fault f;

	/* The first page is mapped: it moves; the second one faults after one request. */
	ASSERT_EQ(0, iommu_map(self->dom, IOVA, (phys_addr_t)(uintptr_t)self->mem, PAGE,
			       IOMMU_READ));
	prq.mode = PRQ_SUCCESS_NOMAP;
	req.buf = buf;
	ASSERT_EQ(-1, uiommu_dma_xfer(self->e, &req));
	ASSERT_EQ(EFAULT, req.error);
	ASSERT_EQ(PAGE, req.done);
	ASSERT_EQ(1, atomic_load(&prq.calls));
	ASSERT_EQ(1, read_faults(self->e, &f, 1));
	ASSERT_EQ(IOVA + PAGE, f.iova);
	ASSERT_EQ(UIOMMU_DMA_FAULT_UNMAPPED, f.reason);
}

/* No answer in time: ETIMEDOUT; the late answer is harmless (answered once, matches nothing). */
TEST_F(prq, unanswered_request_times_out)
{
	struct uiommu_dma_fault f;
	struct iopf_group *kept;
	char buf[8];

	prq.mode = PRQ_KEEP;
	ASSERT_EQ(0, uiommu_dma_dev_set_timeout(self->e, 50));
	ASSERT_EQ(-1, uiommu_dma_read(self->e, 0, IOVA, buf, 8, 0));
	ASSERT_EQ(ETIMEDOUT, errno);
	ASSERT_EQ(1, read_faults(self->e, &f, 1));
	ASSERT_EQ(UIOMMU_DMA_FAULT_PRQ_TIMEOUT, f.reason);
	kept = atomic_exchange(&prq.kept, NULL);
	ASSERT_TRUE(kept != NULL);
	ASSERT_EQ(1u, iopf_dev_pending_groups(self->dev));
	iopf_group_response(kept, IOMMU_PAGE_RESP_SUCCESS);
	iopf_free_group(kept);
	ASSERT_EQ(0u, iopf_dev_pending_groups(self->dev));
}

static void *prq_answer_later(void *arg)
{
	struct iopf_group *g;
	int i;

	(void)arg;
	for (i = 0; i < 5000 && !(g = atomic_exchange(&prq.kept, NULL)); i++)
		usleep(1000);
	if (!g)
		return NULL;
	usleep(20000);
	if (!iommu_map(prq.dom, g->last_fault.fault.prm.addr & ~(PAGE - 1),
		       (phys_addr_t)(uintptr_t)prq.host, PAGE, IOMMU_READ | IOMMU_WRITE))
		iopf_group_response(g, IOMMU_PAGE_RESP_SUCCESS);
	else
		iopf_group_response(g, IOMMU_PAGE_RESP_INVALID);
	iopf_free_group(g);
	return g;
}

static atomic_int prq_async_done;

static void prq_async_complete(struct uiommu_dma_req *req)
{
	(void)req;
	atomic_fetch_add(&prq_async_done, 1);
}

/* Asynchronous: the request parks on its page request, another (mapped) one completes first,
 * and the parked one completes once another thread answers SUCCESS. */
TEST_F(prq, async_request_completes_after_a_late_answer)
{
	struct uiommu_dma_req fault_req, ok_req;
	char fbuf[32], obuf[32];
	pthread_t t;
	void *answered;
	int i;

	prq.mode = PRQ_KEEP;
	fill(self->mem, 2 * PAGE, 5);
	ASSERT_EQ(0, iommu_map(self->dom, IOVA + PAGE, (phys_addr_t)(uintptr_t)(self->mem + PAGE),
			       PAGE, IOMMU_READ));
	atomic_store(&prq_async_done, 0);
	fault_req = (struct uiommu_dma_req){ .op = UIOMMU_DMA_OP_READ, .iova = IOVA + 32,
					     .buf = fbuf, .len = 32, .complete = prq_async_complete };
	ok_req = (struct uiommu_dma_req){ .op = UIOMMU_DMA_OP_READ, .iova = IOVA + PAGE,
					  .buf = obuf, .len = 32, .complete = prq_async_complete };
	ASSERT_EQ(0, pthread_create(&t, NULL, prq_answer_later, NULL));
	ASSERT_EQ(0, uiommu_dma_submit(self->e, &fault_req));
	ASSERT_EQ(0, uiommu_dma_submit(self->e, &ok_req));
	for (i = 0; i < 5000 && atomic_load(&prq_async_done) < 1; i++)
		usleep(1000);
	/* The mapped one did not wait behind the parked one (the answer comes 20 ms later). */
	ASSERT_EQ(0, ok_req.error);
	ASSERT_EQ(0, memcmp(obuf, self->mem + PAGE, 32));
	ASSERT_EQ(0, pthread_join(t, &answered));
	ASSERT_TRUE(answered != NULL);
	for (i = 0; i < 5000 && atomic_load(&prq_async_done) < 2; i++)
		usleep(1000);
	ASSERT_EQ(2, atomic_load(&prq_async_done));
	ASSERT_EQ(0, fault_req.error);
	ASSERT_EQ(32u, fault_req.done);
	ASSERT_EQ(0, memcmp(fbuf, self->mem + 32, 32));
}

/* ---- asynchronous requests ---------------------------------------------------------------- */

static atomic_int async_done;

static void async_complete(struct uiommu_dma_req *req)
{
	atomic_fetch_add(&async_done, 1);
	(void)req;
}

TEST_F(dma, async_submit)
{
	struct uiommu_dma_req req[8];
	char bufs[8][256];
	unsigned int i;

	ASSERT_EQ(0, iommu_map(self->dom, IOVA, (phys_addr_t)(uintptr_t)self->mem, PAGE,
			       IOMMU_READ | IOMMU_WRITE));
	fill(self->mem, PAGE, 11);
	atomic_store(&async_done, 0);
	for (i = 0; i < 8; i++) {
		req[i] = (struct uiommu_dma_req){
			.op = UIOMMU_DMA_OP_READ, .iova = IOVA + i * 256, .buf = bufs[i],
			.len = 256, .complete = async_complete,
		};
		if (i == 7)
			req[i].iova = 0x5000000; /* unmapped */
		ASSERT_EQ(0, uiommu_dma_submit(self->e, &req[i]));
	}
	for (i = 0; i < 5000 && atomic_load(&async_done) < 8; i++)
		usleep(1000);
	ASSERT_EQ(8, atomic_load(&async_done));
	for (i = 0; i < 7; i++) {
		ASSERT_EQ(0, req[i].error);
		ASSERT_EQ(256, req[i].done);
		ASSERT_EQ(0, memcmp(bufs[i], self->mem + i * 256, 256));
	}
	ASSERT_EQ(EFAULT, req[7].error);
	ASSERT_EQ(0, req[7].done);
	ASSERT_EQ(-1, uiommu_dma_submit(self->e, &(struct uiommu_dma_req){ .op = 9 }));
	ASSERT_EQ(EINVAL, errno);
}

/* ---- several threads ---------------------------------------------------------------------- */

struct conc_arg {
	struct uiommu_dma_dev *e;
	unsigned int id;
	char *host;    /* this thread's page, mapped at IOVA + id * PAGE */
	int failures;
};

static void *conc_thread(void *p)
{
	struct conc_arg *a = p;
	char out[PAGE], in[PAGE];
	unsigned int i;

	for (i = 0; i < 200; i++) {
		fill(out, PAGE, a->id * 1000 + i);
		if (uiommu_dma_write(a->e, 0, IOVA + a->id * PAGE, out, PAGE, 0) != (ssize_t)PAGE ||
		    uiommu_dma_read(a->e, 0, IOVA + a->id * PAGE, in, PAGE, 0) != (ssize_t)PAGE ||
		    memcmp(in, out, PAGE))
			a->failures++;
	}
	return NULL;
}

/* Threads DMA to their own pages while another maps and unmaps next to them. */
TEST_F(dma, concurrent_threads)
{
	struct conc_arg args[4];
	pthread_t t[4];
	unsigned int i;
	char c = 0;

	for (i = 0; i < 4; i++) {
		ASSERT_EQ(0, iommu_map(self->dom, IOVA + i * PAGE,
				       (phys_addr_t)(uintptr_t)(self->mem + i * PAGE), PAGE,
				       IOMMU_READ | IOMMU_WRITE));
		args[i] = (struct conc_arg){ .e = self->e, .id = i, .host = self->mem + i * PAGE };
		ASSERT_EQ(0, pthread_create(&t[i], NULL, conc_thread, &args[i]));
	}
	for (i = 0; i < 200; i++) {
		ASSERT_EQ(0, iommu_map(self->dom, IOVA + 8 * PAGE,
				       (phys_addr_t)(uintptr_t)(self->mem + 8 * PAGE), PAGE,
				       IOMMU_READ | IOMMU_WRITE));
		uiommu_dma_write(self->e, 0, IOVA + 8 * PAGE, &c, 1, 0);
		ASSERT_EQ(PAGE, iommu_unmap(self->dom, IOVA + 8 * PAGE, PAGE));
	}
	for (i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ASSERT_EQ(0, args[i].failures);
	}
}

/* ---- the selftest mock: 2 KiB pages -------------------------------------------------------- */

TEST(selftest_mock_2k_pages)
{
	struct device *dev = mock_selftest_dev_create(0);
	struct iommu_domain *dom;
	struct uiommu_dma_dev *e;
	char *mem = pages(4), src[4096], dst[4096];
	const uint64_t iova = 1ull << 24, half = 2048;
	int owner;

	ASSERT_FALSE(IS_ERR(dev));
	ASSERT_TRUE(mem != NULL);
	ASSERT_EQ(0, iommu_device_claim_dma_owner(dev, &owner));
	dom = iommu_paging_domain_alloc(dev);
	ASSERT_FALSE(IS_ERR_OR_NULL(dom));
	ASSERT_EQ(0, iommu_attach_device(dom, dev));
	/* Two 2 KiB IOVA pages backed by the second halves of two host pages: not contiguous. */
	ASSERT_EQ(0, iommu_map(dom, iova, (phys_addr_t)(uintptr_t)(mem + 2 * PAGE + half), half,
			       IOMMU_READ | IOMMU_WRITE));
	ASSERT_EQ(0, iommu_map(dom, iova + half, (phys_addr_t)(uintptr_t)(mem + half), half,
			       IOMMU_READ));
	e = dma_engine_dev_open(dev);
	ASSERT_FALSE(IS_ERR(e));
	fill(mem, 4 * PAGE, 1);
	fill(src, sizeof(src), 2);
	ASSERT_EQ((ssize_t)sizeof(dst), uiommu_dma_read(e, 0, iova, dst, sizeof(dst), 0));
	ASSERT_EQ(0, memcmp(dst, mem + 2 * PAGE + half, half));
	ASSERT_EQ(0, memcmp(dst + half, mem + half, half));
	/* The second 2 KiB page is read-only: a 4 KiB write stops exactly at it. */
	memcpy(dst, mem + half, half);
	ASSERT_EQ(-1, uiommu_dma_write(e, 0, iova, src, sizeof(src), 0));
	ASSERT_EQ(EACCES, errno);
	ASSERT_EQ(0, memcmp(mem + 2 * PAGE + half, src, half));
	ASSERT_EQ(0, memcmp(mem + half, dst, half));
	/* Just past the first 2 KiB page: unmapped, although its 4 KiB page is mapped. */
	ASSERT_EQ(-1, uiommu_dma_read(e, 0, iova + 2 * half, dst, 1, 0));
	ASSERT_EQ(EFAULT, errno);

	uiommu_dma_dev_close(e);
	iommu_detach_device(dom, dev);
	iommu_domain_free(dom);
	iommu_device_release_dma_owner(dev);
	mock_selftest_dev_destroy(dev);
	munmap(mem, 4 * PAGE);
}

/* The driver's dma_walk marks what the device writes: dirty tracking sees DMA, not reads. */
struct dirty_log {
	struct iommu_dirty_bitmap bitmap;
	uint64_t iova[4], len[4];
	unsigned int nr;
};

static void dirty_log_record(struct iommu_dirty_bitmap *dirty, uint64_t iova, uint64_t length)
{
	struct dirty_log *log = (struct dirty_log *)dirty;

	if (log->nr < 4) {
		log->iova[log->nr] = iova;
		log->len[log->nr] = length;
	}
	log->nr++;
}

TEST(selftest_mock_dma_writes_mark_dirty)
{
	struct device *dev = mock_selftest_dev_create(0);
	struct dirty_log log = { .bitmap.record = dirty_log_record };
	const uint64_t iova = 1ull << 24, half = 2048;
	struct iommu_domain *dom;
	struct uiommu_dma_dev *e;
	char *mem = pages(1), buf[64] = { 1 };
	int owner;

	ASSERT_FALSE(IS_ERR(dev));
	ASSERT_TRUE(mem != NULL);
	ASSERT_EQ(0, iommu_device_claim_dma_owner(dev, &owner));
	dom = iommu_paging_domain_alloc_flags(dev, IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING, NULL);
	ASSERT_FALSE(IS_ERR_OR_NULL(dom));
	ASSERT_EQ(0, iommu_attach_device(dom, dev));
	ASSERT_EQ(0, iommu_map(dom, iova, (phys_addr_t)(uintptr_t)mem, 2 * half,
			       IOMMU_READ | IOMMU_WRITE));
	ASSERT_EQ(0, dom->dirty_ops->set_dirty_tracking(dom, true));
	e = dma_engine_dev_open(dev);
	ASSERT_FALSE(IS_ERR(e));
	ASSERT_EQ((ssize_t)sizeof(buf), uiommu_dma_read(e, 0, iova, buf, sizeof(buf), 0));
	ASSERT_EQ((ssize_t)sizeof(buf), uiommu_dma_write(e, 0, iova + half + 8, buf, sizeof(buf), 0));
	ASSERT_EQ(0, dom->dirty_ops->read_and_clear_dirty(dom, iova, 2 * half, 0, &log.bitmap));
	ASSERT_EQ(1u, log.nr); /* the written 2 KiB leaf only */
	ASSERT_EQ(iova + half, log.iova[0]);
	ASSERT_EQ(half, log.len[0]);

	uiommu_dma_dev_close(e);
	ASSERT_EQ(0, dom->dirty_ops->set_dirty_tracking(dom, false));
	iommu_detach_device(dom, dev);
	iommu_domain_free(dom);
	iommu_device_release_dma_owner(dev);
	mock_selftest_dev_destroy(dev);
	munmap(mem, PAGE);
}

/*
 * The selftest mock's dma_walk_run: a run of 2 KiB leaves under one lock, which must stop
 * exactly where a leaf differs and mark dirty exactly the leaves it covers. The layout, in 2 KiB
 * leaves from RUN_IOVA over 16 host pages: 0-7 read-write and contiguous, 8-9 read-only,
 * 10-11 read-write, 12 a hole, 13 read-write with its output elsewhere (leaf 14's), 14-15
 * read-write; 16 on unmapped.
 */
#define RUN_IOVA (1ull << 24)
#define RUN_LEAF 2048ull

/* The dirty leaves, as bits by leaf number from RUN_IOVA. */
struct run_dirty {
	struct iommu_dirty_bitmap bitmap;
	uint64_t leaves;
};

static void run_dirty_record(struct iommu_dirty_bitmap *dirty, uint64_t iova, uint64_t length)
{
	struct run_dirty *d = (struct run_dirty *)dirty;

	for (uint64_t a = iova; a < iova + length; a += RUN_LEAF)
		d->leaves |= 1ull << ((a - RUN_IOVA) / RUN_LEAF);
}

/* Reads and clears the dirty bits of leaves 0-31. */
static uint64_t run_dirty_take(struct __h_test *_metadata, struct iommu_domain *dom)
{
	struct run_dirty d = { .bitmap.record = run_dirty_record };

	ASSERT_EQ(0, dom->dirty_ops->read_and_clear_dirty(dom, RUN_IOVA, 32 * RUN_LEAF, 0,
							  &d.bitmap));
	return d.leaves;
}

static void run_layout_map(struct __h_test *_metadata, struct iommu_domain *dom, char *mem)
{
	const int rw = IOMMU_READ | IOMMU_WRITE;

#define RUN_MAP(leaf, out, n, prot)                                                               \
	ASSERT_EQ(0, iommu_map(dom, RUN_IOVA + (leaf) * RUN_LEAF,                                  \
			       (phys_addr_t)(uintptr_t)(mem + (out) * RUN_LEAF), (n) * RUN_LEAF, prot))
	RUN_MAP(0, 0, 8, rw);
	RUN_MAP(8, 8, 2, IOMMU_READ);
	RUN_MAP(10, 10, 2, rw);
	RUN_MAP(13, 14, 1, rw);
	RUN_MAP(14, 14, 2, rw);
#undef RUN_MAP
	ASSERT_EQ(0, dom->dirty_ops->set_dirty_tracking(dom, true));
}

FIXTURE(walk_run)
{
	struct device *dev;
	struct iommu_domain *dom;
	char *mem;
	int owner;
};

FIXTURE_SETUP(walk_run)
{
	self->dev = mock_selftest_dev_create(0);
	ASSERT_FALSE(IS_ERR(self->dev));
	self->mem = pages(8);
	ASSERT_TRUE(self->mem != NULL);
	ASSERT_EQ(0, iommu_device_claim_dma_owner(self->dev, &self->owner));
	self->dom = iommu_paging_domain_alloc_flags(self->dev, IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING,
						    NULL);
	ASSERT_FALSE(IS_ERR_OR_NULL(self->dom));
	ASSERT_TRUE(self->dom->ops->dma_walk_run != NULL);
	ASSERT_EQ(0, iommu_attach_device(self->dom, self->dev));
	run_layout_map(_metadata, self->dom, self->mem);
}

FIXTURE_TEARDOWN(walk_run)
{
	self->dom->dirty_ops->set_dirty_tracking(self->dom, false);
	iommu_detach_device(self->dom, self->dev);
	iommu_domain_free(self->dom);
	iommu_device_release_dma_owner(self->dev);
	mock_selftest_dev_destroy(self->dev);
	munmap(self->mem, 8 * PAGE);
}

/* The op itself: where each run ends, what it reports, which leaves it marks. */
TEST_F(walk_run, op_stops_at_each_difference)
{
	phys_addr_t (*run_walk)(struct iommu_domain *, uint64_t, uint64_t, bool, int *,
				uint64_t *) = self->dom->ops->dma_walk_run;
	const phys_addr_t base = (phys_addr_t)(uintptr_t)self->mem;
	uint64_t run = 0;
	int prot = -1;

	/* A read: to the read-only leaf, from inside the first leaf; nothing marked. */
	ASSERT_EQ(base + 100, run_walk(self->dom, RUN_IOVA + 100, 64 * 1024, false, &prot, &run));
	ASSERT_EQ(IOMMU_READ | IOMMU_WRITE, prot);
	ASSERT_EQ(8 * RUN_LEAF - 100, run);
	ASSERT_EQ(0ull, run_dirty_take(_metadata, self->dom));
	/* @len caps the run, and a write marks the leaves it covers, not one more. */
	ASSERT_EQ(base, run_walk(self->dom, RUN_IOVA, 2 * RUN_LEAF + 1, true, &prot, &run));
	ASSERT_EQ(2 * RUN_LEAF + 1, run);
	ASSERT_EQ(0x7ull, run_dirty_take(_metadata, self->dom));
	/* A write that ends at a leaf's end marks no leaf past it. */
	ASSERT_EQ(base + RUN_LEAF, run_walk(self->dom, RUN_IOVA + RUN_LEAF, RUN_LEAF, true, &prot,
					    &run));
	ASSERT_EQ(RUN_LEAF, run);
	ASSERT_EQ(0x2ull, run_dirty_take(_metadata, self->dom));
	/* The whole writable run stops before the read-only leaf, whatever @len. */
	ASSERT_EQ(base + 3, run_walk(self->dom, RUN_IOVA + 3, 64 * 1024, true, &prot, &run));
	ASSERT_EQ(8 * RUN_LEAF - 3, run);
	ASSERT_EQ(0xffull, run_dirty_take(_metadata, self->dom));
	/* The read-only pair: its own run, and a write through it marks nothing. */
	ASSERT_EQ(base + 8 * RUN_LEAF, run_walk(self->dom, RUN_IOVA + 8 * RUN_LEAF, 64 * 1024, true,
						&prot, &run));
	ASSERT_EQ(IOMMU_READ, prot);
	ASSERT_EQ(2 * RUN_LEAF, run);
	ASSERT_EQ(0ull, run_dirty_take(_metadata, self->dom));
	/* Read-write again, to the hole. */
	ASSERT_EQ(base + 10 * RUN_LEAF, run_walk(self->dom, RUN_IOVA + 10 * RUN_LEAF, 64 * 1024,
						 true, &prot, &run));
	ASSERT_EQ(IOMMU_READ | IOMMU_WRITE, prot);
	ASSERT_EQ(2 * RUN_LEAF, run);
	ASSERT_EQ(0xc00ull, run_dirty_take(_metadata, self->dom));
	/* The hole itself: unmapped, no permission. */
	ASSERT_EQ(0, run_walk(self->dom, RUN_IOVA + 12 * RUN_LEAF + 5, 64 * 1024, true, &prot, &run));
	ASSERT_EQ(0, prot);
	/* Same permissions, output elsewhere: leaf 13 alone. */
	ASSERT_EQ(base + 14 * RUN_LEAF, run_walk(self->dom, RUN_IOVA + 13 * RUN_LEAF, 64 * 1024,
						 true, &prot, &run));
	ASSERT_EQ(RUN_LEAF, run);
	ASSERT_EQ(0x2000ull, run_dirty_take(_metadata, self->dom));
	/* To the end of what is mapped. */
	ASSERT_EQ(base + 14 * RUN_LEAF, run_walk(self->dom, RUN_IOVA + 14 * RUN_LEAF, 64 * 1024,
						 false, &prot, &run));
	ASSERT_EQ(2 * RUN_LEAF, run);
	/* Below the aperture: nothing, as dma_walk says. */
	ASSERT_EQ(0, run_walk(self->dom, 4096, 4096, false, &prot, &run));
	ASSERT_EQ(0, prot);
	/* Leaf by leaf, the run's start agrees with dma_walk. */
	for (uint64_t leaf = 0; leaf < 17; leaf++) {
		uint64_t size = 0;
		int wprot = -1;
		phys_addr_t a = self->dom->ops->dma_walk(self->dom, RUN_IOVA + leaf * RUN_LEAF + 9,
							 false, &wprot, &size);

		ASSERT_EQ(a, run_walk(self->dom, RUN_IOVA + leaf * RUN_LEAF + 9, 1, false, &prot,
				      &run));
		ASSERT_EQ(wprot, prot);
		if (a)
			ASSERT_EQ(1ull, run);
	}
}

/* Through the engine: a transfer over runs faults at the exact IOVA, marking what it wrote. */
TEST_F(walk_run, dma_faults_at_the_exact_leaf)
{
	char src[16 * RUN_LEAF], got[3 * RUN_LEAF], before[16 * RUN_LEAF];
	struct uiommu_dma_fault f[2];
	struct uiommu_dma_dev *e = dma_engine_dev_open(self->dev);

	ASSERT_FALSE(IS_ERR(e));
	fill(src, sizeof(src), 3);
	fill(self->mem, 8 * PAGE, 4);
	memcpy(before, self->mem, sizeof(before));
	/* Eight writable leaves, then the read-only one: EACCES there, eight leaves moved. */
	ASSERT_EQ(-1, uiommu_dma_write(e, 0, RUN_IOVA + 5, src, 12 * RUN_LEAF, 0));
	ASSERT_EQ(EACCES, errno);
	ASSERT_EQ(1, read_faults(e, f, 2));
	ASSERT_EQ(RUN_IOVA + 8 * RUN_LEAF, f[0].iova);
	ASSERT_EQ(UIOMMU_DMA_FAULT_PERM, f[0].reason);
	ASSERT_EQ(0, memcmp(self->mem + 5, src, 8 * RUN_LEAF - 5));
	ASSERT_EQ(0, memcmp(self->mem + 8 * RUN_LEAF, before + 8 * RUN_LEAF, 8 * RUN_LEAF));
	ASSERT_EQ(0xffull, run_dirty_take(_metadata, self->dom));
	/* Two writable leaves, then the hole: EFAULT at its first byte. */
	ASSERT_EQ(-1, uiommu_dma_write(e, 0, RUN_IOVA + 10 * RUN_LEAF, src, 4 * RUN_LEAF, 0));
	ASSERT_EQ(EFAULT, errno);
	ASSERT_EQ(1, read_faults(e, f, 2));
	ASSERT_EQ(RUN_IOVA + 12 * RUN_LEAF, f[0].iova);
	ASSERT_EQ(UIOMMU_DMA_FAULT_UNMAPPED, f[0].reason);
	ASSERT_EQ(0, memcmp(self->mem + 10 * RUN_LEAF, src, 2 * RUN_LEAF));
	ASSERT_EQ(0xc00ull, run_dirty_take(_metadata, self->dom));
	/* A read over the leaf whose output is elsewhere: each leaf from its own output. */
	ASSERT_EQ((ssize_t)sizeof(got), uiommu_dma_read(e, 0, RUN_IOVA + 13 * RUN_LEAF, got,
							sizeof(got), 0));
	ASSERT_EQ(0, memcmp(got, self->mem + 14 * RUN_LEAF, RUN_LEAF));
	ASSERT_EQ(0, memcmp(got + RUN_LEAF, self->mem + 14 * RUN_LEAF, 2 * RUN_LEAF));
	ASSERT_EQ(0ull, run_dirty_take(_metadata, self->dom));
	ASSERT_EQ(0, read_faults(e, f, 2));
	uiommu_dma_dev_close(e);
}

/* A copy whose source runs into the hole marks only the destination leaves it wrote. */
TEST_F(walk_run, copy_marks_only_what_it_wrote)
{
	char src[2 * RUN_LEAF];
	struct uiommu_dma_op op = {
		.op = UIOMMU_DMA_OP_COPY, .src = RUN_IOVA + 10 * RUN_LEAF, .iova = RUN_IOVA,
		.len = 4 * RUN_LEAF,
	};
	struct uiommu_dma_dev *e = dma_engine_dev_open(self->dev);

	ASSERT_FALSE(IS_ERR(e));
	fill(self->mem, 8 * PAGE, 6);
	memcpy(src, self->mem + 10 * RUN_LEAF, sizeof(src));
	ASSERT_EQ(0, uiommu_dma_batch(e, &op, 1));
	ASSERT_EQ(EFAULT, op.error);
	ASSERT_EQ(2 * RUN_LEAF, op.done);
	ASSERT_EQ(UIOMMU_DMA_OP_READ, op.fault_op);
	ASSERT_EQ(RUN_IOVA + 12 * RUN_LEAF, op.fault_iova);
	ASSERT_EQ(0, memcmp(self->mem, src, sizeof(src)));
	ASSERT_EQ(0x3ull, run_dirty_take(_metadata, self->dom));
	uiommu_dma_dev_close(e);
}

/*
 * A COPY from one source run into a destination whose leaves are scattered (leaf 16 + i
 * mapped at host leaf 7 - i of its own pages): each step is one destination leaf, the source
 * run serves them all; a source hole still stops it exactly, and only the destination leaves
 * written are dirty.
 */
TEST_F(walk_run, copy_into_scattered_leaves)
{
	char *dmem = pages(4), want[8 * RUN_LEAF];
	struct uiommu_dma_op op = {
		.op = UIOMMU_DMA_OP_COPY, .src = RUN_IOVA, .iova = RUN_IOVA + 16 * RUN_LEAF,
		.len = 8 * RUN_LEAF,
	};
	struct uiommu_dma_dev *e = dma_engine_dev_open(self->dev);

	ASSERT_FALSE(IS_ERR(e));
	ASSERT_TRUE(dmem != NULL);
	for (unsigned int i = 0; i < 8; i++)
		ASSERT_EQ(0, iommu_map(self->dom, RUN_IOVA + (16 + i) * RUN_LEAF,
				       (phys_addr_t)(uintptr_t)(dmem + (7 - i) * RUN_LEAF), RUN_LEAF,
				       IOMMU_READ | IOMMU_WRITE));
	fill(self->mem, 8 * PAGE, 10);
	memcpy(want, self->mem, sizeof(want));
	ASSERT_EQ(0ull, run_dirty_take(_metadata, self->dom));
	ASSERT_EQ(1, uiommu_dma_batch(e, &op, 1));
	ASSERT_EQ(0, op.error);
	ASSERT_EQ(8 * RUN_LEAF, op.done);
	for (unsigned int i = 0; i < 8; i++)
		ASSERT_EQ(0, memcmp(dmem + (7 - i) * RUN_LEAF, want + i * RUN_LEAF, RUN_LEAF));
	ASSERT_EQ(0xff0000ull, run_dirty_take(_metadata, self->dom));
	/* Leaves 10-11, then the hole: two destination leaves written and marked. */
	memset(dmem, 0, 4 * PAGE);
	op = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_COPY, .src = RUN_IOVA + 10 * RUN_LEAF,
				     .iova = RUN_IOVA + 16 * RUN_LEAF, .len = 4 * RUN_LEAF };
	ASSERT_EQ(0, uiommu_dma_batch(e, &op, 1));
	ASSERT_EQ(EFAULT, op.error);
	ASSERT_EQ(2 * RUN_LEAF, op.done);
	ASSERT_EQ(UIOMMU_DMA_OP_READ, op.fault_op);
	ASSERT_EQ(RUN_IOVA + 12 * RUN_LEAF, op.fault_iova);
	ASSERT_EQ(0, memcmp(dmem + 7 * RUN_LEAF, self->mem + 10 * RUN_LEAF, RUN_LEAF));
	ASSERT_EQ(0, memcmp(dmem + 6 * RUN_LEAF, self->mem + 11 * RUN_LEAF, RUN_LEAF));
	ASSERT_EQ(0x30000ull, run_dirty_take(_metadata, self->dom));
	uiommu_dma_dev_close(e);
	ASSERT_EQ(8 * RUN_LEAF, iommu_unmap(self->dom, RUN_IOVA + 16 * RUN_LEAF, 8 * RUN_LEAF));
	munmap(dmem, 4 * PAGE);
}

/* At a PASID the run walk is the PASID's domain's: its leaves, its fault, its PASID. */
TEST(walk_run_at_a_pasid)
{
	struct device *dev = mock_selftest_dev_create(MOCK_SELFTEST_DEV_PASID);
	char *rid_mem = pages(4), *pasid_mem = pages(4), src[8 * RUN_LEAF], before[8 * RUN_LEAF];
	const int rw = IOMMU_READ | IOMMU_WRITE;
	struct iommu_domain *rid, *pd;
	struct uiommu_dma_fault f[2];
	struct uiommu_dma_dev *e;
	int owner;

	ASSERT_FALSE(IS_ERR(dev));
	ASSERT_TRUE(rid_mem && pasid_mem);
	ASSERT_EQ(0, iommu_device_claim_dma_owner(dev, &owner));
	rid = iommu_paging_domain_alloc(dev);
	pd = iommu_paging_domain_alloc(dev);
	ASSERT_FALSE(IS_ERR_OR_NULL(rid));
	ASSERT_FALSE(IS_ERR_OR_NULL(pd));
	ASSERT_EQ(0, iommu_attach_device(rid, dev));
	ASSERT_EQ(0, iommu_attach_device_pasid(pd, dev, 7, NULL));
	ASSERT_EQ(0, iommu_map(rid, RUN_IOVA, (phys_addr_t)(uintptr_t)rid_mem, 8 * RUN_LEAF, rw));
	ASSERT_EQ(0, iommu_map(pd, RUN_IOVA, (phys_addr_t)(uintptr_t)pasid_mem, 6 * RUN_LEAF, rw));
	ASSERT_EQ(0, iommu_map(pd, RUN_IOVA + 6 * RUN_LEAF,
			       (phys_addr_t)(uintptr_t)(pasid_mem + 6 * RUN_LEAF), 2 * RUN_LEAF,
			       IOMMU_READ));
	e = dma_engine_dev_open(dev);
	ASSERT_FALSE(IS_ERR(e));
	fill(src, sizeof(src), 8);
	fill(rid_mem, 4 * PAGE, 9);
	memcpy(before, rid_mem, sizeof(before));
	/* PASID 7: six writable leaves, then the read-only ones: EACCES at the seventh. */
	ASSERT_EQ(-1, uiommu_dma_write(e, 7, RUN_IOVA, src, sizeof(src), 0));
	ASSERT_EQ(EACCES, errno);
	ASSERT_EQ(1, read_faults(e, f, 2));
	ASSERT_EQ(RUN_IOVA + 6 * RUN_LEAF, f[0].iova);
	ASSERT_EQ(7u, f[0].pasid);
	ASSERT_TRUE(f[0].flags & UIOMMU_DMA_FAULT_PASID_VALID);
	ASSERT_EQ(0, memcmp(pasid_mem, src, 6 * RUN_LEAF));
	ASSERT_EQ(0, memcmp(rid_mem, before, sizeof(before)));
	/* Without a PASID the same IOVAs are the RID's domain's, all writable. */
	ASSERT_EQ((ssize_t)sizeof(src), uiommu_dma_write(e, 0, RUN_IOVA, src, sizeof(src), 0));
	ASSERT_EQ(0, memcmp(rid_mem, src, sizeof(src)));

	uiommu_dma_dev_close(e);
	iommu_detach_device_pasid(pd, dev, 7);
	iommu_detach_device(rid, dev);
	iommu_domain_free(pd);
	iommu_domain_free(rid);
	iommu_device_release_dma_owner(dev);
	mock_selftest_dev_destroy(dev);
	munmap(rid_mem, 4 * PAGE);
	munmap(pasid_mem, 4 * PAGE);
}

/* A handle outlives its device's membership: unplug, and every request says ENODEV. */
TEST(device_gone)
{
	struct uiommu_dma_dev *e;
	char c;

	ASSERT_EQ(0, topology_load(NULL));
	e = uiommu_dma_dev_open("0000:04:00.0");
	ASSERT_TRUE(e != NULL);
	ASSERT_EQ(0, topology_unplug("0000:04:00.0"));
	ASSERT_EQ(-1, uiommu_dma_read(e, 0, 0x1000, &c, 1, 0));
	ASSERT_EQ(ENODEV, errno);
	ASSERT_EQ(0, uiommu_dma_dev_close(e));
	ASSERT_TRUE(uiommu_dma_dev_open("0000:99:00.0") == NULL);
	ASSERT_EQ(ENOENT, errno);
	ASSERT_TRUE(uiommu_dma_dev_open("0000:04:00.0") == NULL);
	ASSERT_EQ(ENODEV, errno);
}

/* The engine hears page responses through a sink of the fault layer; no room, no handle. */
static void other_sink1(struct device *dev, const struct iommu_page_response *msg)
{
	(void)dev;
	(void)msg;
}

static void other_sink2(struct device *dev, const struct iommu_page_response *msg)
{
	other_sink1(dev, msg);
}

static void other_sink3(struct device *dev, const struct iommu_page_response *msg)
{
	other_sink1(dev, msg);
}

static void other_sink4(struct device *dev, const struct iommu_page_response *msg)
{
	other_sink1(dev, msg);
}

TEST(no_room_for_the_response_sink)
{
	_Static_assert(IOPF_RESPONSE_SINKS_MAX == 4, "four others fill the table");
	ASSERT_EQ(0, iopf_response_sink_register(other_sink1));
	ASSERT_EQ(0, iopf_response_sink_register(other_sink2));
	ASSERT_EQ(0, iopf_response_sink_register(other_sink3));
	ASSERT_EQ(0, iopf_response_sink_register(other_sink4));
	ASSERT_EQ(0, topology_load(NULL));
	ASSERT_TRUE(uiommu_dma_dev_open(BDF) == NULL);
	ASSERT_EQ(ENOSPC, errno);
	/* The outcome is kept: a second open does not retry. */
	ASSERT_TRUE(PTR_ERR(dma_engine_dev_open(topology_find_device(BDF))) == -ENOSPC);
	topology_unload();
}

/*
 * ---- batches and device-to-device copies (uiommu_dma_batch) ---------------------------------
 *
 * The rule of single transfers holds for each side of a COPY: pages in IOVA order, every page of
 * both sides checked before a byte of it moves, done exactly the bytes before the fault; and the
 * side and the byte the IOMMU refused are those a read or a write of the range would name.
 */
static struct {
	uint64_t iova[8], len[8];
	unsigned int n;
} wlog;

static void wlog_hook(void *priv, uint32_t pasid, uint64_t iova, uint64_t len)
{
	(void)priv;
	(void)pasid;
	if (wlog.n < 8) {
		wlog.iova[wlog.n] = iova;
		wlog.len[wlog.n] = len;
	}
	wlog.n++;
}

/* Source IOVA pages 0..3 on host pages 3, 1, 2, 7; destination pages 8..11 on 12, 13, 9, 10. */
static void map_copy_layout(struct __h_test *_metadata, struct iommu_domain *dom, char *mem)
{
	static const unsigned int src_host[4] = { 3, 1, 2, 7 }, dst_host[4] = { 12, 13, 9, 10 };

	for (unsigned int i = 0; i < 4; i++) {
		ASSERT_EQ(0, iommu_map(dom, IOVA + i * PAGE,
				       (phys_addr_t)(uintptr_t)(mem + src_host[i] * PAGE), PAGE,
				       IOMMU_READ | IOMMU_WRITE));
		ASSERT_EQ(0, iommu_map(dom, IOVA + (8 + i) * PAGE,
				       (phys_addr_t)(uintptr_t)(mem + dst_host[i] * PAGE), PAGE,
				       IOMMU_READ | IOMMU_WRITE));
	}
}

/* Reads @len bytes at @iova back through the engine (the test's view of the device memory). */
static void dma_peek(struct __h_test *_metadata, struct uiommu_dma_dev *e, uint64_t iova,
		     void *buf, size_t len)
{
	ASSERT_EQ((ssize_t)len, uiommu_dma_read(e, 0, iova, buf, len, 0));
}

TEST_F(dma, copy_across_pages_both_sides)
{
	char want[4 * PAGE], got[4 * PAGE];
	struct uiommu_dma_op op = {
		.op = UIOMMU_DMA_OP_COPY, .src = IOVA + 100, .iova = IOVA + 8 * PAGE + 300,
		.len = 4 * PAGE - 400,
	};

	map_copy_layout(_metadata, self->dom, self->mem);
	fill(want, sizeof(want), 21);
	ASSERT_EQ((ssize_t)sizeof(want), uiommu_dma_write(self->e, 0, IOVA, want, sizeof(want), 0));
	ASSERT_EQ(0, dma_engine_write_log_set(self->dev, wlog_hook, NULL));
	memset(&wlog, 0, sizeof(wlog));
	ASSERT_EQ(1, uiommu_dma_batch(self->e, &op, 1));
	dma_engine_write_log_clear(self->dev);
	ASSERT_EQ(0, op.error);
	ASSERT_EQ(4 * PAGE - 400, op.done);
	dma_peek(_metadata, self->e, IOVA + 8 * PAGE + 300, got, 4 * PAGE - 400);
	ASSERT_EQ(0, memcmp(got, want + 100, 4 * PAGE - 400));
	/* The destination's bytes, and only they, were logged as written. */
	ASSERT_TRUE(wlog.n >= 1);
	{
		uint64_t total = 0;

		for (unsigned int i = 0; i < wlog.n && i < 8; i++) {
			ASSERT_TRUE(wlog.iova[i] >= IOVA + 8 * PAGE + 300);
			total += wlog.len[i];
		}
		ASSERT_EQ(4 * PAGE - 400, total);
	}
	ASSERT_EQ(0, read_faults(self->e, (struct uiommu_dma_fault[1]){}, 1));
}

/* A hole in the source: the copy stops at its first byte, fault_op READ, the log says READ. */
TEST_F(dma, copy_source_fault)
{
	struct uiommu_dma_fault f[2];
	char zero[PAGE] = { 0 }, got[PAGE], want[2 * PAGE];
	struct uiommu_dma_op op = {
		.op = UIOMMU_DMA_OP_COPY, .src = IOVA + 512, .iova = IOVA + 8 * PAGE, .len = 3 * PAGE,
	};

	map_copy_layout(_metadata, self->dom, self->mem);
	ASSERT_EQ(PAGE, iommu_unmap(self->dom, IOVA + 2 * PAGE, PAGE));
	fill(want, sizeof(want), 5);
	ASSERT_EQ((ssize_t)sizeof(want), uiommu_dma_write(self->e, 0, IOVA, want, sizeof(want), 0));
	ASSERT_EQ((ssize_t)PAGE, uiommu_dma_write(self->e, 0, IOVA + 10 * PAGE, zero, PAGE, 0));
	ASSERT_EQ(0, uiommu_dma_batch(self->e, &op, 1));
	ASSERT_EQ(EFAULT, op.error);
	ASSERT_EQ(2 * PAGE - 512, op.done);
	ASSERT_EQ(UIOMMU_DMA_OP_READ, op.fault_op);
	ASSERT_EQ(IOVA + 2 * PAGE, op.fault_iova);
	/* The bytes before the hole arrived; nothing after. */
	{
		char all[2 * PAGE];

		dma_peek(_metadata, self->e, IOVA + 8 * PAGE, all, 2 * PAGE - 512);
		ASSERT_EQ(0, memcmp(all, want + 512, 2 * PAGE - 512));
	}
	dma_peek(_metadata, self->e, IOVA + 10 * PAGE - 512, got, PAGE);
	ASSERT_EQ(0, memcmp(got + 512, zero, PAGE - 512));
	ASSERT_EQ(1, read_faults(self->e, f, 2));
	ASSERT_EQ(IOVA + 2 * PAGE, f[0].iova);
	ASSERT_EQ(UIOMMU_DMA_OP_READ, f[0].op);
	ASSERT_EQ(UIOMMU_DMA_FAULT_UNMAPPED, f[0].reason);
}

/* A read-only page in the destination: EACCES, fault_op WRITE, not a byte of it written. */
TEST_F(dma, copy_destination_read_only)
{
	struct uiommu_dma_fault f[2];
	char before[PAGE], got[PAGE], want[4 * PAGE];
	struct uiommu_dma_op op = {
		.op = UIOMMU_DMA_OP_COPY, .src = IOVA, .iova = IOVA + 8 * PAGE + 8, .len = 3 * PAGE,
	};

	map_copy_layout(_metadata, self->dom, self->mem);
	ASSERT_EQ(PAGE, iommu_unmap(self->dom, IOVA + 9 * PAGE, PAGE));
	ASSERT_EQ(0, iommu_map(self->dom, IOVA + 9 * PAGE,
			       (phys_addr_t)(uintptr_t)(self->mem + 13 * PAGE), PAGE, IOMMU_READ));
	fill(want, sizeof(want), 9);
	ASSERT_EQ((ssize_t)sizeof(want), uiommu_dma_write(self->e, 0, IOVA, want, sizeof(want), 0));
	memcpy(before, self->mem + 13 * PAGE, PAGE);
	ASSERT_EQ(0, uiommu_dma_batch(self->e, &op, 1));
	ASSERT_EQ(EACCES, op.error);
	ASSERT_EQ(PAGE - 8, op.done);
	ASSERT_EQ(UIOMMU_DMA_OP_WRITE, op.fault_op);
	ASSERT_EQ(IOVA + 9 * PAGE, op.fault_iova);
	ASSERT_EQ(0, memcmp(self->mem + 13 * PAGE, before, PAGE));
	dma_peek(_metadata, self->e, IOVA + 8 * PAGE + 8, got, PAGE - 8);
	ASSERT_EQ(0, memcmp(got, want, PAGE - 8));
	ASSERT_EQ(1, read_faults(self->e, f, 2));
	ASSERT_EQ(IOVA + 9 * PAGE, f[0].iova);
	ASSERT_EQ(UIOMMU_DMA_OP_WRITE, f[0].op);
	ASSERT_EQ(UIOMMU_DMA_FAULT_PERM, f[0].reason);
}

/* Ops run in order; the first failure ends the batch and later ops stay untouched. */
TEST_F(dma, batch_stops_at_the_first_failure)
{
	char a[64], b[64], c[64] = "unchanged";
	struct uiommu_dma_op ops[4] = {
		/* Stale results in the ops, as a caller reusing its array leaves them: every
		 * result of an op that ran or follows the failure is rewritten. */
		{ .op = UIOMMU_DMA_OP_WRITE, .iova = IOVA + 8 * PAGE, .buf = a, .len = 64,
		  .error = EIO, .fault_op = UIOMMU_DMA_OP_WRITE, .fault_iova = 1 },
		{ .op = UIOMMU_DMA_OP_COPY, .src = IOVA + 8 * PAGE, .iova = IOVA + 16, .len = 64 },
		{ .op = UIOMMU_DMA_OP_READ, .iova = 0x7000000, .buf = b, .len = 64 },
		{ .op = UIOMMU_DMA_OP_READ, .iova = IOVA, .buf = c, .len = 64, .done = 99,
		  .error = EIO, .fault_op = UIOMMU_DMA_OP_WRITE, .fault_iova = 1 },
	};

	map_copy_layout(_metadata, self->dom, self->mem);
	fill(a, sizeof(a), 1);
	ASSERT_EQ(2, uiommu_dma_batch(self->e, ops, 4));
	ASSERT_EQ(64, ops[0].done);
	ASSERT_EQ(0, ops[0].error);
	ASSERT_EQ(0, ops[0].fault_op);
	ASSERT_EQ(0, ops[0].fault_iova);
	ASSERT_EQ(64, ops[1].done);
	ASSERT_EQ(0, ops[1].error);
	ASSERT_EQ(EFAULT, ops[2].error);
	ASSERT_EQ(UIOMMU_DMA_OP_READ, ops[2].fault_op);
	ASSERT_EQ(0x7000000, ops[2].fault_iova);
	ASSERT_EQ(0, ops[3].done);
	ASSERT_EQ(0, ops[3].error);
	ASSERT_EQ(0, ops[3].fault_op);
	ASSERT_EQ(0, ops[3].fault_iova);
	ASSERT_EQ(0, strcmp(c, "unchanged"));
	/* The whole batch again without the bad op: every op done, the copy's bytes in place. */
	ops[2] = ops[3];
	ASSERT_EQ(3, uiommu_dma_batch(self->e, ops, 3));
	for (int i = 0; i < 3; i++) {
		ASSERT_EQ(64, ops[i].done);
		ASSERT_EQ(0, ops[i].error);
		ASSERT_EQ(0, ops[i].fault_op);
		ASSERT_EQ(0, ops[i].fault_iova);
	}
	ASSERT_EQ(0, memcmp(c + 16, a, 48));
	/* A translation kept by one batch is not used by the next: after an unmap the copy into
	 * that page faults on its WRITE side, and a read of it faults. */
	ASSERT_EQ(PAGE, iommu_unmap(self->dom, IOVA, PAGE));
	ASSERT_EQ(1, uiommu_dma_batch(self->e, ops, 3));
	ASSERT_EQ(UIOMMU_DMA_OP_WRITE, ops[1].fault_op);
	ASSERT_EQ(IOVA + 16, ops[1].fault_iova);
	ASSERT_EQ(0, ops[2].done);
	ASSERT_EQ(0, uiommu_dma_batch(self->e, &ops[2], 1));
	ASSERT_EQ(EFAULT, ops[2].error);
	ASSERT_EQ(IOVA, ops[2].fault_iova);
	ASSERT_EQ(0, ops[1].done);
}

TEST_F(dma, batch_bad_arguments)
{
	char c;
	struct uiommu_dma_op op = { .op = 3, .iova = IOVA, .buf = &c, .len = 1 };

	ASSERT_EQ(-1, uiommu_dma_batch(self->e, &op, 1));
	ASSERT_EQ(EINVAL, errno);
	op = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_COPY, .src = UINT64_MAX, .iova = IOVA,
				     .len = 2 };
	ASSERT_EQ(-1, uiommu_dma_batch(self->e, &op, 1)); /* the source wraps */
	ASSERT_EQ(EINVAL, errno);
	op = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_COPY, .src = IOVA, .iova = UINT64_MAX,
				     .len = 2 };
	ASSERT_EQ(-1, uiommu_dma_batch(self->e, &op, 1)); /* the destination wraps */
	ASSERT_EQ(EINVAL, errno);
	op = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_READ, .iova = IOVA, .len = 1 };
	ASSERT_EQ(-1, uiommu_dma_batch(self->e, &op, 1)); /* no buffer */
	ASSERT_EQ(EINVAL, errno);
	op = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_COPY, .pasid = 1u << 20, .src = IOVA,
				     .iova = IOVA, .len = 1 };
	ASSERT_EQ(-1, uiommu_dma_batch(self->e, &op, 1)); /* 20-bit PASIDs */
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(-1, uiommu_dma_batch(self->e, &op, UIOMMU_DMA_BATCH_MAX + 1));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(-1, uiommu_dma_batch(self->e, NULL, 1));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(-1, uiommu_dma_batch(NULL, &op, 1));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(0, uiommu_dma_batch(self->e, NULL, 0));
	ASSERT_EQ(0, read_faults(self->e, (struct uiommu_dma_fault[1]){}, 1));
}

/* A blocked device: the copy faults BLOCKED on its source side, nothing moves. */
TEST_F(dma, copy_blocked)
{
	struct uiommu_dma_fault f;
	struct uiommu_dma_op op = {
		.op = UIOMMU_DMA_OP_COPY, .src = IOVA, .iova = IOVA + PAGE, .len = 8,
	};

	iommu_detach_device(self->dom, self->dev); /* back to the blocking domain */
	ASSERT_EQ(0, uiommu_dma_batch(self->e, &op, 1));
	ASSERT_EQ(EFAULT, op.error);
	ASSERT_EQ(UIOMMU_DMA_OP_READ, op.fault_op);
	ASSERT_EQ(IOVA, op.fault_iova);
	ASSERT_EQ(1, read_faults(self->e, &f, 1));
	ASSERT_EQ(UIOMMU_DMA_FAULT_BLOCKED, f.reason);
	ASSERT_EQ(0, iommu_attach_device(self->dom, self->dev));
}

/*
 * Memory behind a translation that the process no longer has (identity: the IOVA is the
 * address): the copy stops at the first byte of the page that traps, on the side it is on
 * (HOST, EFAULT), with every byte before it copied; no crash.
 */
/*
 * A batch arms the host fault trap once for all its copies: memory gone from the process
 * under a READ or a WRITE op, after ops that completed, stops that op at the host page that
 * trapped, the ops before it done and those after it untouched; the next batch runs as usual.
 */
TEST_F(dma, batch_host_memory_gone_under_read_and_write)
{
	const struct iommu_ops *ops = iommu_device_ops(self->dev);
	char *hole = pages(2), *buf = self->mem + 4 * PAGE, in[80], out[16] = "sixteen bytes!!";
	struct uiommu_dma_op op[3];

	ASSERT_TRUE(hole != NULL);
	fill(hole, PAGE, 12);
	ASSERT_EQ(0, munmap(hole + PAGE, PAGE));
	iommu_detach_device(self->dom, self->dev);
	ASSERT_EQ(0, iommu_attach_device(ops->identity_domain, self->dev));
	memset(buf, 0, PAGE);
	memset(in, 0, sizeof(in));
	op[0] = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_WRITE, .iova = (uintptr_t)buf,
					.buf = out, .len = 16 };
	op[1] = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_READ,
					.iova = (uintptr_t)hole + PAGE - 40, .buf = in, .len = 80 };
	op[2] = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_WRITE, .iova = (uintptr_t)buf + 64,
					.buf = out, .len = 16 };
	ASSERT_EQ(1, uiommu_dma_batch(self->e, op, 3));
	ASSERT_EQ(16u, op[0].done);
	ASSERT_EQ(0, memcmp(buf, out, 16));
	ASSERT_EQ(EFAULT, op[1].error);
	ASSERT_EQ(40u, op[1].done);
	ASSERT_EQ(UIOMMU_DMA_OP_READ, op[1].fault_op);
	ASSERT_EQ((uintptr_t)hole + PAGE, op[1].fault_iova);
	ASSERT_EQ(0, memcmp(in, hole + PAGE - 40, 40));
	ASSERT_EQ(0u, op[2].done);
	ASSERT_EQ(0, buf[64]);
	/* A WRITE into the hole, after a READ that completed. */
	op[0] = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_READ, .iova = (uintptr_t)buf,
					.buf = in, .len = 16 };
	op[1] = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_WRITE,
					.iova = (uintptr_t)hole + PAGE - 8, .buf = out, .len = 16 };
	ASSERT_EQ(1, uiommu_dma_batch(self->e, op, 2));
	ASSERT_EQ(0, memcmp(in, out, 16));
	ASSERT_EQ(EFAULT, op[1].error);
	ASSERT_EQ(8u, op[1].done);
	ASSERT_EQ(UIOMMU_DMA_OP_WRITE, op[1].fault_op);
	ASSERT_EQ(0, memcmp(hole + PAGE - 8, out, 8));
	/* Nothing is left armed: the next batch runs, and a fault of this thread elsewhere is
	 * still a user copy's EFAULT, not a jump into a finished batch. */
	ASSERT_EQ(1, uiommu_dma_batch(self->e, &op[2], 1));
	ASSERT_EQ(0, memcmp(buf + 64, out, 16));
	ASSERT_EQ(-EFAULT, uiommu_host_copy(in, hole + PAGE, 8));
	munmap(hole, PAGE);
	iommu_detach_device(ops->identity_domain, self->dev);
	ASSERT_EQ(0, iommu_attach_device(self->dom, self->dev));
}

/*
 * The batch's fast path (an op whose pages are all in the device's translation cache runs as
 * one host copy) meets the same events as the general one. A write-log hook runs inside the
 * batch, after a write, with the group mutex held: there it takes the host memory behind a
 * cached source page away, or unmaps an IOVA page the cache holds, between two ops.
 */
/* @op failed with @error after @done bytes, the IOMMU refusing @fault_op at @fault_iova. */
static void op_failed(struct __h_test *_metadata, const struct uiommu_dma_op *op, int error,
		      size_t done, unsigned int fault_op, uint64_t fault_iova)
{
	ASSERT_EQ(error, op->error);
	ASSERT_EQ(done, op->done);
	ASSERT_EQ(fault_op, op->fault_op);
	ASSERT_EQ(fault_iova, op->fault_iova);
}

/* The one fault logged since the last look: @reason, for @op at @iova. */
static void fault_logged(struct __h_test *_metadata, struct uiommu_dma_dev *e,
			 unsigned int reason, unsigned int op, uint64_t iova)
{
	struct uiommu_dma_fault f;

	ASSERT_EQ(1, read_faults(e, &f, 1));
	ASSERT_EQ(reason, f.reason);
	ASSERT_EQ(op, f.op);
	ASSERT_EQ(iova, f.iova);
}

struct fastlog {
	unsigned int skip;             /* writes logged before the one that acts */
	void *unmap_host;              /* munmap() this page at the first write logged */
	struct iommu_domain *dom;      /* or iommu_unmap() this IOVA page of it */
	uint64_t unmap_iova;
	unsigned int n;                /* the writes logged, the first 8 of them here */
	uint64_t iova[8], len[8];
};

static struct fastlog fastlog;

static void fastlog_hook(void *priv, uint32_t pasid, uint64_t iova, uint64_t len)
{
	(void)priv;
	(void)pasid;
	if (fastlog.n < 8) {
		fastlog.iova[fastlog.n] = iova;
		fastlog.len[fastlog.n] = len;
	}
	fastlog.n++;
	if (fastlog.skip) {
		fastlog.skip--;
		return;
	}
	if (fastlog.unmap_host) {
		munmap(fastlog.unmap_host, PAGE);
		fastlog.unmap_host = NULL;
	}
	if (fastlog.dom) {
		iommu_unmap(fastlog.dom, fastlog.unmap_iova, PAGE);
		fastlog.dom = NULL;
	}
}

/* A cached source page whose host memory is gone: HOST at its first byte, nothing copied. */
TEST_F(dma, batch_cached_page_host_memory_gone)
{
	char *src = pages(1), *dst = self->mem + 4 * PAGE, in[16], want[16];
	char out[16] = "fifteen bytes..";
	struct uiommu_dma_op op[4];

	ASSERT_TRUE(src != NULL);
	fill(src, PAGE, 5);
	ASSERT_EQ(0, iommu_map(self->dom, IOVA, (phys_addr_t)(uintptr_t)src, PAGE,
			       IOMMU_READ | IOMMU_WRITE));
	ASSERT_EQ(0, iommu_map(self->dom, IOVA + PAGE, (phys_addr_t)(uintptr_t)dst, PAGE,
			       IOMMU_READ | IOMMU_WRITE));
	memset(dst, 0, PAGE);
	/* Both pages cached, then the source's memory goes with the WRITE's log. */
	op[0] = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_READ, .iova = IOVA, .buf = in,
					.len = 16 };
	op[1] = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_WRITE, .iova = IOVA + PAGE + 64,
					.buf = out, .len = 16 };
	op[2] = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_COPY, .src = IOVA,
					.iova = IOVA + PAGE + 1024, .len = 2048 };
	op[3] = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_WRITE, .iova = IOVA + PAGE,
					.buf = out, .len = 16 };
	fastlog = (struct fastlog){ .unmap_host = src };
	ASSERT_EQ(0, dma_engine_write_log_set(self->dev, fastlog_hook, NULL));
	ASSERT_EQ(2, uiommu_dma_batch(self->e, op, 4));
	dma_engine_write_log_clear(self->dev);
	ASSERT_EQ(16u, op[0].done);
	fill(want, sizeof(want), 5);
	ASSERT_EQ(0, memcmp(in, want, 16));
	ASSERT_EQ(16u, op[1].done);
	ASSERT_EQ(0, memcmp(dst + 64, out, 16));
	op_failed(_metadata, &op[2], EFAULT, 0u, UIOMMU_DMA_OP_READ, IOVA);
	ASSERT_EQ(0, dst[1024]);
	ASSERT_EQ(0u, op[3].done);
	ASSERT_EQ(0, dst[0]);
	fault_logged(_metadata, self->e, UIOMMU_DMA_FAULT_HOST, UIOMMU_DMA_OP_READ, IOVA);
	iommu_unmap(self->dom, IOVA, 2 * PAGE);
}

/*
 * The stage of the two tests below: @buf at IOVA, @rec_page (a record's) at IOVA + PAGE, both
 * read-write, and ops[0..2] caching every page a COPY at IOVA with its record at IOVA + PAGE
 * touches, in each direction; @want is @buf as those ops leave it. Their batch's second WRITE
 * (into the record's page) takes that page's host memory away in its log.
 */
static void record_page_stage(struct __h_test *_metadata, struct iommu_domain *dom, char *buf,
			      char *rec_page, struct uiommu_dma_op *op, char *want)
{
	static char out[16] = "fifteen bytes..", in[16];

	ASSERT_TRUE(rec_page != NULL);
	memset(rec_page, 0, PAGE);
	ASSERT_EQ(0, iommu_map(dom, IOVA, (phys_addr_t)(uintptr_t)buf, PAGE,
			       IOMMU_READ | IOMMU_WRITE));
	ASSERT_EQ(0, iommu_map(dom, IOVA + PAGE, (phys_addr_t)(uintptr_t)rec_page, PAGE,
			       IOMMU_READ | IOMMU_WRITE));
	op[0] = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_READ, .iova = IOVA + 3072, .buf = in,
					.len = 16 };
	op[1] = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_WRITE, .iova = IOVA + 2048,
					.buf = out, .len = 16 };
	op[2] = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_WRITE, .iova = IOVA + PAGE + 1024,
					.buf = out, .len = 16 };
	memcpy(want, buf, PAGE);
	memcpy(want + 2048, out, 16);
	/* The first WRITE's log passes; the second's (into the record's page) takes it away. */
	fastlog = (struct fastlog){ .skip = 1, .unmap_host = rec_page };
}

/*
 * A COPY whose record's host memory is gone after its translation was cached (by the op
 * before, whose log takes the page away): the copy runs once, whole, and the record faults
 * HOST, as the general way has it. The copy overlaps its source downwards, so a second run of
 * it would leave other bytes at its start.
 */
TEST_F(dma, batch_cached_record_host_memory_gone_copies_once)
{
	char *buf = self->mem, want[PAGE];
	struct uiommu_dma_record r = { .iova = IOVA + PAGE, .buf = "done", .len = 4 };
	struct uiommu_dma_op op[4];

	fill(buf, PAGE, 8);
	/* Every page the COPY touches cached by the ops before it, in each direction. */
	record_page_stage(_metadata, self->dom, buf, pages(1), op, want);
	op[3] = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_COPY, .flags = UIOMMU_DMA_RECORD,
					.src = IOVA + 64, .iova = IOVA, .len = 128, .buf = &r };
	memmove(want, want + 64, 128); /* one run of the copy, ascending */
	ASSERT_EQ(0, dma_engine_write_log_set(self->dev, fastlog_hook, NULL));
	ASSERT_EQ(3, uiommu_dma_batch(self->e, op, 4));
	dma_engine_write_log_clear(self->dev);
	ASSERT_TRUE(fastlog.unmap_host == NULL);
	op_failed(_metadata, &op[3], EFAULT, 128u, UIOMMU_DMA_OP_WRITE, IOVA + PAGE);
	ASSERT_EQ(0, memcmp(buf, want, PAGE));
	fault_logged(_metadata, self->e, UIOMMU_DMA_FAULT_HOST, UIOMMU_DMA_OP_WRITE, IOVA + PAGE);
	/* The two WRITEs, then the copy, once: written, so logged, though its record trapped. */
	ASSERT_EQ(3u, fastlog.n);
	ASSERT_EQ(IOVA, fastlog.iova[2]);
	ASSERT_EQ(128u, fastlog.len[2]);
	iommu_unmap(self->dom, IOVA, 2 * PAGE);
}

/*
 * The same in a copy run (dma_engine_copy_run(), on the caches that batch left): the copy
 * made, its record trapping, is taken up at the record, not left for the caller to send again
 * (copied twice); the record's fault is the run's stop, the copy logged once.
 */
TEST_F(dma, copy_run_record_host_memory_gone_copies_once)
{
	char *buf = self->mem, want[PAGE];
	struct uiommu_dma_record r[2] = {
		{ .iova = IOVA + 512, .buf = "done", .len = 4 },
		{ .iova = IOVA + PAGE, .buf = "done", .len = 4 },
	};
	struct uiommu_dma_copy c[2] = {
		{ .src = IOVA + 1024, .dst = IOVA + 768, .len = 64 },
		{ .src = IOVA + 64, .dst = IOVA, .len = 128 },
	};
	struct uiommu_dma_op op[3], stop;

	fill(buf, PAGE, 9);
	/* The batch warms every page and takes the record's away. */
	record_page_stage(_metadata, self->dom, buf, pages(1), op, want);
	memmove(want + 768, want + 1024, 64);
	memcpy(want + 512, "done", 4);
	memmove(want, want + 64, 128); /* one run of the copy, ascending */
	ASSERT_EQ(0, dma_engine_write_log_set(self->dev, fastlog_hook, NULL));
	ASSERT_EQ(3, uiommu_dma_batch(self->e, op, 3));
	ASSERT_TRUE(fastlog.unmap_host == NULL);
	fastlog.n = 0;
	memset(&stop, 0xa5, sizeof(stop));
	ASSERT_EQ(1, dma_engine_copy_run(self->e, 0, UIOMMU_DMA_NO_PASID, c, sizeof(c[0]), r, 2,
					 &stop));
	dma_engine_write_log_clear(self->dev);
	op_failed(_metadata, &stop, EFAULT, 128u, UIOMMU_DMA_OP_WRITE, IOVA + PAGE);
	ASSERT_EQ(0, memcmp(buf, want, PAGE));
	fault_logged(_metadata, self->e, UIOMMU_DMA_FAULT_HOST, UIOMMU_DMA_OP_WRITE, IOVA + PAGE);
	/* The first copy and its record, then the second copy, once. */
	ASSERT_EQ(3u, fastlog.n);
	ASSERT_EQ(IOVA + 768, fastlog.iova[0]);
	ASSERT_EQ(IOVA + 512, fastlog.iova[1]);
	ASSERT_EQ(IOVA, fastlog.iova[2]);
	ASSERT_EQ(128u, fastlog.len[2]);
	/* A run that goes whole says so in stop too. */
	memset(&stop, 0xa5, sizeof(stop));
	ASSERT_EQ(1, dma_engine_copy_run(self->e, 0, UIOMMU_DMA_NO_PASID, c, sizeof(c[0]), r, 1,
					 &stop));
	ASSERT_EQ(0, stop.error);
	ASSERT_EQ(0u, stop.done);
	iommu_unmap(self->dom, IOVA, 2 * PAGE);
}

/* A cached page unmapped between two ops of one batch: the next op faults there, UNMAPPED. */
TEST_F(dma, batch_cached_page_unmapped_mid_batch)
{
	char *src = self->mem, *dst = self->mem + 4 * PAGE, out[16] = "fifteen bytes..";
	struct uiommu_dma_op op[3];

	fill(src, PAGE, 6);
	memset(dst, 0, PAGE);
	ASSERT_EQ(0, iommu_map(self->dom, IOVA, (phys_addr_t)(uintptr_t)src, PAGE,
			       IOMMU_READ | IOMMU_WRITE));
	ASSERT_EQ(0, iommu_map(self->dom, IOVA + PAGE, (phys_addr_t)(uintptr_t)dst, PAGE,
			       IOMMU_READ | IOMMU_WRITE));
	op[0] = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_COPY, .src = IOVA,
					.iova = IOVA + PAGE, .len = 512 };
	op[1] = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_COPY, .src = IOVA + 512,
					.iova = IOVA + PAGE + 512, .len = 512 };
	op[2] = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_WRITE, .iova = IOVA + PAGE + 2048,
					.buf = out, .len = 16 };
	/* The first copy's log unmaps the source page its successor would reuse. */
	fastlog = (struct fastlog){ .dom = self->dom, .unmap_iova = IOVA };
	ASSERT_EQ(0, dma_engine_write_log_set(self->dev, fastlog_hook, NULL));
	ASSERT_EQ(1, uiommu_dma_batch(self->e, op, 3));
	dma_engine_write_log_clear(self->dev);
	ASSERT_EQ(512u, op[0].done);
	ASSERT_EQ(0, memcmp(dst, src, 512));
	op_failed(_metadata, &op[1], EFAULT, 0u, UIOMMU_DMA_OP_READ, IOVA + 512);
	ASSERT_EQ(0, dst[512]);
	ASSERT_EQ(0u, op[2].done);
	fault_logged(_metadata, self->e, UIOMMU_DMA_FAULT_UNMAPPED, UIOMMU_DMA_OP_READ, IOVA + 512);
	/* Mapped again, the batch runs whole, every op through cached pages after the first. */
	ASSERT_EQ(0, iommu_map(self->dom, IOVA, (phys_addr_t)(uintptr_t)src, PAGE,
			       IOMMU_READ | IOMMU_WRITE));
	ASSERT_EQ(3, uiommu_dma_batch(self->e, op, 3));
	ASSERT_EQ(512u, op[1].done);
	ASSERT_EQ(0, op[1].error);
	ASSERT_EQ(0, memcmp(dst, src, 1024));
	ASSERT_EQ(0, memcmp(dst + 2048, out, 16));
	iommu_unmap(self->dom, IOVA, 2 * PAGE);
}

/*
 * Many ops through the same pages: contiguous multi-page sides (one host copy) and sides whose
 * host pages are not contiguous (map_copy_layout: the fast path must not take them as one run)
 * give the bytes a byte-by-byte copy gives, and each op's results are its own.
 */
TEST_F(dma, batch_cached_pages_contiguous_and_not)
{
	char want[4 * PAGE], got[4 * PAGE];
	struct uiommu_dma_op op[7];

	map_copy_layout(_metadata, self->dom, self->mem);
	fill(want, sizeof(want), 33);
	ASSERT_EQ((ssize_t)sizeof(want), uiommu_dma_write(self->e, 0, IOVA, want, sizeof(want), 0));
	for (unsigned int i = 0; i < 6; i++)
		op[i] = (struct uiommu_dma_op){
			.op = UIOMMU_DMA_OP_COPY, .src = IOVA + i * 600,
			.iova = IOVA + 8 * PAGE + i * 600, .len = PAGE - 100 * i,
		};
	/*
	 * Source pages 1 and 2 are host pages 1 and 2, destination pages 10 and 11 host pages 9
	 * and 10: one run each (0 -> 1 and 2 -> 3 are not); the second time, all cached.
	 */
	op[5] = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_COPY, .src = IOVA + PAGE + 8,
					.iova = IOVA + 10 * PAGE + 8, .len = PAGE };
	op[6] = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_COPY, .src = IOVA + PAGE + 100,
					.iova = IOVA + 10 * PAGE + 100, .len = PAGE - 200 };
	ASSERT_EQ(7, uiommu_dma_batch(self->e, op, 7));
	for (unsigned int i = 0; i < 7; i++) {
		ASSERT_EQ(op[i].len, op[i].done);
		ASSERT_EQ(0, op[i].error);
		ASSERT_EQ(0u, op[i].fault_op);
		ASSERT_EQ(0u, op[i].fault_iova);
	}
	dma_peek(_metadata, self->e, IOVA + 8 * PAGE, got, 4 * PAGE);
	/* Ops 0..4 overlap on the destination: each later one rewrites what it shares. */
	ASSERT_EQ(0, memcmp(got, want, 4 * 600 + PAGE - 400));
	ASSERT_EQ(0, memcmp(got + 2 * PAGE + 8, want + PAGE + 8, PAGE));
}

/*
 * UIOMMU_DMA_RECORD: a COPY writes its record once the copy is whole, as a WRITE of the record
 * would (the log sees the copy, then the record); in the next op, through cached pages, the
 * same. A record that cannot be written fails the op with the copy whole (done = len) and names
 * the record's byte; a copy that faults writes no record.
 */
TEST_F(dma, copy_with_record)
{
	char *src = self->mem, *dst = self->mem + 4 * PAGE, *rec = self->mem + 8 * PAGE;
	struct uiommu_dma_record r[2] = {
		{ .iova = IOVA + 2 * PAGE + 64, .buf = "record one, twenty-nine bytes", .len = 29 },
		{ .iova = IOVA + 2 * PAGE + 128, .buf = "record two", .len = 10 },
	};
	struct uiommu_dma_op op[2];

	fill(src, PAGE, 8);
	memset(dst, 0, PAGE);
	memset(rec, 0, PAGE);
	ASSERT_EQ(0, iommu_map(self->dom, IOVA, (phys_addr_t)(uintptr_t)src, PAGE, IOMMU_READ));
	ASSERT_EQ(0, iommu_map(self->dom, IOVA + PAGE, (phys_addr_t)(uintptr_t)dst, PAGE,
			       IOMMU_READ | IOMMU_WRITE));
	ASSERT_EQ(0, iommu_map(self->dom, IOVA + 2 * PAGE, (phys_addr_t)(uintptr_t)rec, PAGE,
			       IOMMU_READ | IOMMU_WRITE));
	for (unsigned int i = 0; i < 2; i++)
		op[i] = (struct uiommu_dma_op){
			.op = UIOMMU_DMA_OP_COPY, .flags = UIOMMU_DMA_RECORD,
			.src = IOVA + i * 1024, .iova = IOVA + PAGE + i * 1024, .len = 1024,
			.buf = &r[i],
		};
	ASSERT_EQ(0, dma_engine_write_log_set(self->dev, wlog_hook, NULL));
	memset(&wlog, 0, sizeof(wlog));
	ASSERT_EQ(2, uiommu_dma_batch(self->e, op, 2));
	dma_engine_write_log_clear(self->dev);
	for (unsigned int i = 0; i < 2; i++) {
		ASSERT_EQ(1024u, op[i].done);
		ASSERT_EQ(0, op[i].error);
		ASSERT_EQ(0u, op[i].fault_op);
		ASSERT_EQ(0u, op[i].fault_iova);
	}
	ASSERT_EQ(0, memcmp(dst, src, 2048));
	ASSERT_EQ(0, memcmp(rec + 64, r[0].buf, 29));
	ASSERT_EQ(0, memcmp(rec + 128, r[1].buf, 10));
	ASSERT_EQ(0, rec[138]);
	ASSERT_EQ(4u, wlog.n);
	ASSERT_EQ(IOVA + PAGE, wlog.iova[0]);
	ASSERT_EQ(1024u, wlog.len[0]);
	ASSERT_EQ(IOVA + 2 * PAGE + 64, wlog.iova[1]);
	ASSERT_EQ(29u, wlog.len[1]);
	ASSERT_EQ(IOVA + PAGE + 1024, wlog.iova[2]);
	ASSERT_EQ(IOVA + 2 * PAGE + 128, wlog.iova[3]);
	ASSERT_EQ(10u, wlog.len[3]);

	/* The record's page read-only: the copy is whole, the record refused. */
	iommu_unmap(self->dom, IOVA + 2 * PAGE, PAGE);
	ASSERT_EQ(0, iommu_map(self->dom, IOVA + 2 * PAGE, (phys_addr_t)(uintptr_t)rec, PAGE,
			       IOMMU_READ));
	memset(dst, 0, PAGE);
	memset(rec, 0, PAGE);
	ASSERT_EQ(0, uiommu_dma_batch(self->e, op, 2));
	op_failed(_metadata, &op[0], EACCES, 1024u, UIOMMU_DMA_OP_WRITE, IOVA + 2 * PAGE + 64);
	ASSERT_EQ(0, memcmp(dst, src, 1024));
	ASSERT_EQ(0, rec[64]);
	ASSERT_EQ(0u, op[1].done);
	ASSERT_EQ(0, dst[1024]);
	fault_logged(_metadata, self->e, UIOMMU_DMA_FAULT_PERM, UIOMMU_DMA_OP_WRITE,
		     IOVA + 2 * PAGE + 64);

	/* The second op's record unmapped by the first op's record write (its log): the second
	 * copy goes through cached pages, its record faults UNMAPPED. */
	iommu_unmap(self->dom, IOVA + 2 * PAGE, PAGE);
	ASSERT_EQ(0, iommu_map(self->dom, IOVA + 2 * PAGE, (phys_addr_t)(uintptr_t)rec, PAGE,
			       IOMMU_READ | IOMMU_WRITE));
	r[1].iova = IOVA + 3 * PAGE;
	ASSERT_EQ(0, iommu_map(self->dom, IOVA + 3 * PAGE, (phys_addr_t)(uintptr_t)(rec + PAGE),
			       PAGE, IOMMU_READ | IOMMU_WRITE));
	ASSERT_EQ(2, uiommu_dma_batch(self->e, op, 2)); /* caches nothing across batches */
	fastlog = (struct fastlog){ .dom = self->dom, .unmap_iova = IOVA + 3 * PAGE };
	ASSERT_EQ(0, dma_engine_write_log_set(self->dev, fastlog_hook, NULL));
	ASSERT_EQ(1, uiommu_dma_batch(self->e, op, 2));
	dma_engine_write_log_clear(self->dev);
	op_failed(_metadata, &op[1], EFAULT, 1024u, UIOMMU_DMA_OP_WRITE, IOVA + 3 * PAGE);
	fault_logged(_metadata, self->e, UIOMMU_DMA_FAULT_UNMAPPED, UIOMMU_DMA_OP_WRITE,
		     IOVA + 3 * PAGE);

	/* A copy that faults (its source unmapped) writes no record. */
	iommu_unmap(self->dom, IOVA, PAGE);
	memset(rec, 0, PAGE);
	ASSERT_EQ(0, uiommu_dma_batch(self->e, op, 1));
	op_failed(_metadata, &op[0], EFAULT, 0u, UIOMMU_DMA_OP_READ, IOVA);
	ASSERT_EQ(0, rec[64]);
	fault_logged(_metadata, self->e, UIOMMU_DMA_FAULT_UNMAPPED, UIOMMU_DMA_OP_READ, IOVA);
	iommu_unmap(self->dom, IOVA + PAGE, 2 * PAGE);
}

/* What a record may not be: on another op, missing, wrapping, with bytes but no buffer. */
TEST_F(dma, copy_with_record_bad_arguments)
{
	struct uiommu_dma_record r = { .iova = IOVA, .buf = "xy", .len = 2 };
	struct uiommu_dma_op op = {
		.op = UIOMMU_DMA_OP_WRITE, .flags = UIOMMU_DMA_RECORD, .iova = IOVA, .buf = &r,
		.len = 1,
	};
	struct uiommu_dma_req req = {
		.op = UIOMMU_DMA_OP_WRITE, .flags = UIOMMU_DMA_RECORD, .iova = IOVA, .buf = "x",
		.len = 1,
	};

	ASSERT_EQ(-1, uiommu_dma_batch(self->e, &op, 1)); /* a WRITE has no record */
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(-1, uiommu_dma_xfer(self->e, &req));    /* nor a single transfer */
	ASSERT_EQ(EINVAL, errno);
	op = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_COPY, .flags = UIOMMU_DMA_RECORD,
				     .src = IOVA, .iova = IOVA + PAGE, .len = 8 };
	ASSERT_EQ(-1, uiommu_dma_batch(self->e, &op, 1)); /* no record */
	ASSERT_EQ(EINVAL, errno);
	op.buf = &r;
	r.iova = UINT64_MAX;
	ASSERT_EQ(-1, uiommu_dma_batch(self->e, &op, 1)); /* the record wraps */
	ASSERT_EQ(EINVAL, errno);
	r = (struct uiommu_dma_record){ .iova = IOVA, .buf = "xy", .len = (size_t)SSIZE_MAX + 1 };
	ASSERT_EQ(-1, uiommu_dma_batch(self->e, &op, 1)); /* a record too long */
	ASSERT_EQ(EINVAL, errno);
	r = (struct uiommu_dma_record){ .iova = IOVA, .len = 4 };
	ASSERT_EQ(-1, uiommu_dma_batch(self->e, &op, 1)); /* bytes without a buffer */
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(0, read_faults(self->e, (struct uiommu_dma_fault[1]){}, 1));
	/* An empty record is no record: the copy runs (and faults: nothing is mapped). */
	r.len = 0;
	ASSERT_EQ(0, uiommu_dma_batch(self->e, &op, 1));
	ASSERT_EQ(EFAULT, op.error);
	ASSERT_EQ(UIOMMU_DMA_OP_READ, op.fault_op);
}

TEST_F(dma, copy_host_memory_gone)
{
	const struct iommu_ops *ops = iommu_device_ops(self->dev);
	char *hole = pages(2), *buf = self->mem + 4 * PAGE;
	struct uiommu_dma_fault f;
	struct uiommu_dma_op op;

	ASSERT_TRUE(hole != NULL);
	fill(hole, PAGE, 11);
	ASSERT_EQ(0, munmap(hole + PAGE, PAGE));
	iommu_detach_device(self->dom, self->dev);
	ASSERT_EQ(0, iommu_attach_device(ops->identity_domain, self->dev));
	/* The source's second page is gone. */
	memset(buf, 0, 2 * PAGE);
	op = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_COPY, .src = (uintptr_t)hole + PAGE - 40,
				     .iova = (uintptr_t)buf, .len = 80 };
	ASSERT_EQ(0, uiommu_dma_batch(self->e, &op, 1));
	ASSERT_EQ(EFAULT, op.error);
	ASSERT_EQ(40, op.done);
	ASSERT_EQ(UIOMMU_DMA_OP_READ, op.fault_op);
	ASSERT_EQ((uintptr_t)hole + PAGE, op.fault_iova);
	ASSERT_EQ(0, memcmp(buf, hole + PAGE - 40, 40));
	ASSERT_EQ(1, read_faults(self->e, &f, 1));
	ASSERT_EQ(UIOMMU_DMA_FAULT_HOST, f.reason);
	ASSERT_EQ(UIOMMU_DMA_OP_READ, f.op);
	/* The destination's second page is gone. */
	op = (struct uiommu_dma_op){ .op = UIOMMU_DMA_OP_COPY, .src = (uintptr_t)buf,
				     .iova = (uintptr_t)hole + PAGE - 24, .len = 64 };
	ASSERT_EQ(0, uiommu_dma_batch(self->e, &op, 1));
	ASSERT_EQ(EFAULT, op.error);
	ASSERT_EQ(24, op.done);
	ASSERT_EQ(UIOMMU_DMA_OP_WRITE, op.fault_op);
	ASSERT_EQ((uintptr_t)hole + PAGE, op.fault_iova);
	ASSERT_EQ(0, memcmp(hole + PAGE - 24, buf, 24));
	ASSERT_EQ(1, read_faults(self->e, &f, 1));
	ASSERT_EQ(UIOMMU_DMA_FAULT_HOST, f.reason);
	ASSERT_EQ(UIOMMU_DMA_OP_WRITE, f.op);
	munmap(hole, PAGE);
	iommu_detach_device(ops->identity_domain, self->dev);
	ASSERT_EQ(0, iommu_attach_device(self->dom, self->dev));
}

/* The failure-injection sweep: every fallible step of opening a handle and running a batch of
 * copies either fails cleanly (the open answers ENOMEM) or the copies complete. */
TEST(fail_nth_batch_copy)
{
	struct device *dev;
	struct iommu_domain *dom;
	char *mem = pages(4);
	int owner;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	ASSERT_TRUE(mem != NULL);
	ASSERT_EQ(0, topology_load(NULL));
	dev = topology_find_device(BDF);
	ASSERT_EQ(0, iommu_device_claim_dma_owner(dev, &owner));
	dom = iommu_paging_domain_alloc(dev);
	ASSERT_FALSE(IS_ERR_OR_NULL(dom));
	ASSERT_EQ(0, iommu_attach_device(dom, dev));
	ASSERT_EQ(0, iommu_map(dom, IOVA, (phys_addr_t)(uintptr_t)mem, 4 * PAGE,
			       IOMMU_READ | IOMMU_WRITE));
	for (unsigned int nth = 1;; nth++) {
		struct uiommu_dma_op ops[2] = {
			{ .op = UIOMMU_DMA_OP_COPY, .src = IOVA, .iova = IOVA + 2 * PAGE,
			  .len = 2 * PAGE },
			{ .op = UIOMMU_DMA_OP_COPY, .src = IOVA + 2 * PAGE, .iova = IOVA + PAGE / 2,
			  .len = 64 },
		};
		struct uiommu_dma_dev *e;
		ssize_t done = -1;
		unsigned long left;

		fill(mem, 2 * PAGE, nth);
		uiommu_fail_nth_arm(nth);
		e = uiommu_dma_dev_open(BDF);
		if (e)
			done = uiommu_dma_batch(e, ops, 2);
		left = uiommu_fail_nth_disarm();
		if (!e) {
			ASSERT_EQ(ENOMEM, errno);
		} else {
			ASSERT_EQ(2, done);
			ASSERT_EQ(0, memcmp(mem + 2 * PAGE, mem, 64));
			uiommu_dma_dev_close(e);
		}
		if (left > 0)
			break; /* the nth point was never reached: every one was swept */
		ASSERT_TRUE(nth < 100);
	}
	iommu_detach_device(dom, dev);
	iommu_domain_free(dom);
	iommu_device_release_dma_owner(dev);
	munmap(mem, 4 * PAGE);
}

/* A miss on the destination raises a page request; the owner maps it; the copy completes. */
TEST_F(prq, copy_resumes_after_a_page_request)
{
	char src[256], got[256];
	struct uiommu_dma_op op = {
		.op = UIOMMU_DMA_OP_COPY, .src = IOVA + 4 * PAGE, .iova = IOVA + 64, .len = 256,
	};

	ASSERT_EQ(0, iommu_map(self->dom, IOVA + 4 * PAGE,
			       (phys_addr_t)(uintptr_t)(self->mem + PAGE), PAGE,
			       IOMMU_READ | IOMMU_WRITE));
	fill(src, sizeof(src), 4);
	memcpy(self->mem + PAGE, src, sizeof(src));
	prq.mode = PRQ_MAP_SUCCESS; /* maps the faulting page onto self->mem */
	ASSERT_EQ(1, uiommu_dma_batch(self->e, &op, 1));
	ASSERT_EQ(0, op.error);
	ASSERT_EQ(256, op.done);
	ASSERT_EQ(1, atomic_load(&prq.calls));
	ASSERT_EQ(IOMMU_FAULT_PERM_WRITE, prq.last_perm);
	memcpy(got, self->mem + 64, sizeof(got));
	ASSERT_EQ(0, memcmp(got, src, sizeof(src)));
	/* INVALID on the source side: EFAULT, READ, the log says PRQ_INVALID. */
	prq.mode = PRQ_INVALID;
	op.src = IOVA + 6 * PAGE;
	ASSERT_EQ(0, uiommu_dma_batch(self->e, &op, 1));
	ASSERT_EQ(EFAULT, op.error);
	ASSERT_EQ(UIOMMU_DMA_OP_READ, op.fault_op);
	ASSERT_EQ(IOVA + 6 * PAGE, op.fault_iova);
	ASSERT_EQ(IOMMU_FAULT_PERM_READ, prq.last_perm);
}

TEST_HARNESS_MAIN

/*
 * ---- shared virtual addressing -----------------------------------------------------------
 *
 * The device bound to this process: its PASID's IOVAs are our own virtual addresses, with our
 * mappings' permissions. A write to a read-only page of ours traps, becomes a page request, and
 * the SVA handler answers INVALID (the mapping does not allow it): EFAULT, the page unchanged.
 */
TEST(sva_dma_uses_the_process_address_space)
{
	struct device *dev;
	struct uiommu_dma_dev *e;
	struct uiommu_dma_fault f;
	uint32_t pasid, pasid2;
	char *rw, *ro, buf[16];

	ASSERT_EQ(0, topology_load(NULL));
	dev = topology_find_device(BDF);
	ASSERT_TRUE(dev != NULL);
	e = dma_engine_dev_open(dev);
	ASSERT_FALSE(IS_ERR(e));
	rw = pages(1);
	ro = pages(1);
	ASSERT_TRUE(rw && ro);
	strcpy(rw, "shared virtual!");
	strcpy(ro, "read only page!");
	ASSERT_EQ(0, mprotect(ro, PAGE, PROT_READ));

	/* Nothing bound: nothing at any PASID yet. */
	ASSERT_EQ(-1, uiommu_dma_dev_sva_unbind(e));
	ASSERT_EQ(ENOENT, errno);
	ASSERT_EQ(0, uiommu_dma_dev_sva_bind(e, &pasid));
	ASSERT_NE(0u, pasid);
	ASSERT_EQ(0, uiommu_dma_dev_sva_bind(e, &pasid2));
	ASSERT_EQ(pasid, pasid2);

	ASSERT_EQ(16, uiommu_dma_read(e, pasid, (uintptr_t)rw, buf, 16, 0));
	ASSERT_STREQ("shared virtual!", buf);
	ASSERT_EQ(6, uiommu_dma_write(e, pasid, (uintptr_t)rw, "device", 6, 0));
	ASSERT_EQ(0, memcmp(rw, "device virtual!", 16));
	ASSERT_EQ(16, uiommu_dma_read(e, pasid, (uintptr_t)ro, buf, 16, 0));
	ASSERT_STREQ("read only page!", buf);
	ASSERT_EQ(-1, uiommu_dma_write(e, pasid, (uintptr_t)ro, "x", 1, 0));
	ASSERT_EQ(EFAULT, errno);
	ASSERT_STREQ("read only page!", ro);
	ASSERT_EQ(1, read_faults(e, &f, 1));
	ASSERT_EQ(UIOMMU_DMA_FAULT_PRQ_INVALID, f.reason);
	ASSERT_EQ(pasid, f.pasid);
	/* The RID is not the process's address space. */
	ASSERT_EQ(-1, uiommu_dma_read(e, 0, (uintptr_t)rw, buf, 16, UIOMMU_DMA_NO_PRI));

	ASSERT_EQ(0, uiommu_dma_dev_sva_unbind(e));
	ASSERT_EQ(16, uiommu_dma_read(e, pasid, (uintptr_t)rw, buf, 16, 0)); /* one bind left */
	ASSERT_EQ(0, uiommu_dma_dev_sva_unbind(e));
	ASSERT_EQ(-1, uiommu_dma_read(e, pasid, (uintptr_t)rw, buf, 16, 0));
	ASSERT_EQ(ENODEV, errno);
	ASSERT_EQ(-1, uiommu_dma_dev_sva_unbind(e));
	ASSERT_EQ(ENOENT, errno);
	/* A bind left in place goes with the handle. */
	ASSERT_EQ(0, uiommu_dma_dev_sva_bind(e, &pasid2));
	ASSERT_EQ(0, uiommu_dma_dev_close(e));
	ASSERT_EQ(NULL, iommu_get_domain_for_dev_pasid(dev, pasid2, 0));
	munmap(rw, PAGE);
	munmap(ro, PAGE);
}
