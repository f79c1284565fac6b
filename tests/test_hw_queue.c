// SPDX-License-Identifier: MIT
/*
 * HW queues and the vIOMMU's mmap region through the ABI: HW_QUEUE_ALLOC with every errno of
 * its fields, of the IOVA range and of the mock's index rules; the IOVA lock (UNMAP EBUSY
 * until the queue goes); the destroy graph (vIOMMU and queue n - 1 held); uiommu_mmap() of
 * the region (its rules, sharing, the vIOMMU held while mapped, the context kept after
 * close); fault-injection sweeps over HW_QUEUE_ALLOC and the mmap. Written from the ABI description; no kernel code.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "nested_utils.h"

#define BUF_IOVA (1ull << 24)
#define BUF_PAGES 8u

static size_t psize(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

static int hw_queue_alloc(int fd, uint32_t viommu, uint32_t type, uint32_t index, uint64_t iova,
			  uint64_t len, uint32_t *out)
{
	struct iommu_hw_queue_alloc cmd = {
		.size = sizeof(cmd), .viommu_id = viommu, .type = type, .index = index,
		.nesting_parent_iova = iova, .length = len,
	};
	int rc = ioc(fd, IOMMU_HW_QUEUE_ALLOC, &cmd);

	if (!rc && out)
		*out = cmd.out_hw_queue_id;
	return rc;
}

FIXTURE(hwq) {
	int fd;
	uint32_t ioas, stdev, idev, parent, viommu;
	void *buf;
};

FIXTURE_SETUP(hwq)
{
	self->buf = mmap(NULL, BUF_PAGES * psize(), PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->buf);
	self->fd = uiommu_open(O_RDWR);
	ASSERT_GE(self->fd, 0);
	self->ioas = ioas_alloc(self->fd);
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, &self->stdev, NULL, &self->idev));
	ASSERT_EQ(0, parent_alloc(self->fd, self->idev, self->ioas, &self->parent));
	ASSERT_EQ(0, viommu_alloc(self->fd, self->idev, self->parent, IOMMU_VIOMMU_TYPE_SELFTEST,
				  NULL, 0, &self->viommu));
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, BUF_IOVA, self->buf, BUF_PAGES * psize()));
}

FIXTURE_TEARDOWN(hwq)
{
	uiommu_close(self->fd);
	munmap(self->buf, BUF_PAGES * psize());
}

TEST_F(hwq, field_errors)
{
	const uint32_t T = IOMMU_HW_QUEUE_TYPE_SELFTEST;
	uint32_t q;

	ASSERT_ERRNO(EOPNOTSUPP, hw_queue_alloc(self->fd, self->viommu,
						IOMMU_HW_QUEUE_TYPE_DEFAULT, 0, BUF_IOVA,
						psize(), &q));
	ASSERT_ERRNO(EOPNOTSUPP, hw_queue_alloc(self->fd, self->viommu,
						IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV, 0,
						BUF_IOVA, psize(), &q));
	ASSERT_ERRNO(EINVAL, hw_queue_alloc(self->fd, self->viommu, T, 0, BUF_IOVA, 0, &q));
	ASSERT_ERRNO(EOVERFLOW, hw_queue_alloc(self->fd, self->viommu, T, 0, ~0ull - psize() + 2,
					       psize(), &q));
	ASSERT_ERRNO(ENOENT, hw_queue_alloc(self->fd, 9999, T, 0, BUF_IOVA, psize(), &q));
	/* Not a vIOMMU. */
	ASSERT_ERRNO(ENOENT, hw_queue_alloc(self->fd, self->ioas, T, 0, BUF_IOVA, psize(), &q));
	/* Not mapped, or only partly. */
	ASSERT_ERRNO(ENOENT, hw_queue_alloc(self->fd, self->viommu, T, 0, BUF_IOVA << 2, psize(),
					    &q));
	ASSERT_ERRNO(ENOENT, hw_queue_alloc(self->fd, self->viommu, T, 0,
					    BUF_IOVA + (BUF_PAGES - 1) * psize(), 2 * psize(),
					    &q));
	ASSERT_ERRNO(EINVAL, hw_queue_alloc(self->fd, self->viommu, T, IOMMU_TEST_HW_QUEUE_MAX,
					    BUF_IOVA, psize(), &q));
	/* Index 1 needs index 0. */
	ASSERT_ERRNO(EIO, hw_queue_alloc(self->fd, self->viommu, T, 1, BUF_IOVA, psize(), &q));
	/* None of the failures left a lock behind. */
	ASSERT_EQ(0, unmap(self->fd, self->ioas, BUF_IOVA, BUF_PAGES * psize()));
}

TEST_F(hwq, lock_and_graph)
{
	const uint32_t T = IOMMU_HW_QUEUE_TYPE_SELFTEST;
	uint32_t q0, q1, dup;

	ASSERT_EQ(0, hw_queue_alloc(self->fd, self->viommu, T, 0, BUF_IOVA, psize(), &q0));
	ASSERT_ERRNO(EEXIST, hw_queue_alloc(self->fd, self->viommu, T, 0, BUF_IOVA + psize(),
					    psize(), &dup));
	/* Several pages, and a range that need not start on a page. */
	ASSERT_EQ(0, hw_queue_alloc(self->fd, self->viommu, T, 1, BUF_IOVA + 2 * psize() + 64,
				    2 * psize(), &q1));
	/* The locked IOVA stays mapped: all of it, or the part a queue holds. */
	ASSERT_ERRNO(EBUSY, unmap(self->fd, self->ioas, BUF_IOVA, BUF_PAGES * psize()));
	ASSERT_ERRNO(EBUSY, unmap(self->fd, self->ioas, 0, ~0ull));
	/* The graph: the vIOMMU and queue 0 are held. */
	ASSERT_ERRNO(EBUSY, destroy(self->fd, self->viommu));
	ASSERT_ERRNO(EBUSY, destroy(self->fd, q0));
	ASSERT_EQ(0, destroy(self->fd, q1));
	ASSERT_ERRNO(ENOENT, destroy(self->fd, q1));
	ASSERT_ERRNO(EBUSY, unmap(self->fd, self->ioas, BUF_IOVA, BUF_PAGES * psize()));
	/* Index 1 is free again. */
	ASSERT_EQ(0, hw_queue_alloc(self->fd, self->viommu, T, 1, BUF_IOVA, psize(), &q1));
	ASSERT_EQ(0, destroy(self->fd, q1));
	ASSERT_EQ(0, destroy(self->fd, q0));
	ASSERT_EQ(0, unmap(self->fd, self->ioas, BUF_IOVA, BUF_PAGES * psize()));
	ASSERT_EQ(0, destroy(self->fd, self->viommu));
}

TEST_F(hwq, close_with_queues)
{
	const uint32_t T = IOMMU_HW_QUEUE_TYPE_SELFTEST;
	struct uiommu_stats before, after;
	uint32_t q;
	int fd;

	ASSERT_EQ(0, uiommu_stats_get(&before));
	fd = uiommu_open(O_RDWR);
	ASSERT_GE(fd, 0);
	{
		uint32_t ioas = ioas_alloc(fd), idev, parent, viommu;

		ASSERT_EQ(0, mock_domain(fd, ioas, NULL, NULL, &idev));
		ASSERT_EQ(0, parent_alloc(fd, idev, ioas, &parent));
		ASSERT_EQ(0, viommu_alloc(fd, idev, parent, IOMMU_VIOMMU_TYPE_SELFTEST, NULL, 0,
					  &viommu));
		ASSERT_EQ(0, map_fixed(fd, ioas, BUF_IOVA, self->buf, psize()));
		ASSERT_EQ(0, hw_queue_alloc(fd, viommu, T, 0, BUF_IOVA, psize(), &q));
		ASSERT_EQ(0, hw_queue_alloc(fd, viommu, T, 1, BUF_IOVA, psize(), &q));
	}
	/* The context's teardown destroys the queues in order, then the rest. */
	ASSERT_EQ(0, uiommu_close(fd));
	ASSERT_EQ(0, uiommu_stats_get(&after));
	ASSERT_EQ(before.objects, after.objects);
	ASSERT_EQ(before.allocations, after.allocations);
	ASSERT_EQ(before.pinned_pages, after.pinned_pages);
}

static void *map_region(int fd, size_t len, int prot, int flags, uint64_t off)
{
	return uiommu_mmap(NULL, len, prot, flags, fd, (off_t)off);
}

#define ASSERT_MAP_ERRNO(en, expr)                                                        \
	do {                                                                              \
		errno = 0;                                                                \
		ASSERT_EQ(MAP_FAILED, (expr));                                            \
		ASSERT_EQ(en, errno);                                                     \
	} while (0)

TEST_F(hwq, mmap_rules)
{
	struct iommu_viommu_selftest data = { .in_data = 0xfeedcafe };
	const int RWP = PROT_READ | PROT_WRITE;
	uint64_t off, len;
	uint32_t v, *a, *b;

	ASSERT_EQ(0, viommu_alloc(self->fd, self->idev, self->parent, IOMMU_VIOMMU_TYPE_SELFTEST,
				  &data, sizeof(data), &v));
	off = data.out_mmap_offset;
	len = data.out_mmap_length;
	ASSERT_MAP_ERRNO(EINVAL, map_region(self->fd, len, RWP, MAP_PRIVATE, off));
	ASSERT_MAP_ERRNO(EPERM, map_region(self->fd, len, RWP | PROT_EXEC, MAP_SHARED, off));
	ASSERT_MAP_ERRNO(EINVAL, map_region(self->fd, len, RWP, MAP_SHARED, off + 1));
	ASSERT_MAP_ERRNO(EINVAL, map_region(self->fd, 0, RWP, MAP_SHARED, off));
	ASSERT_MAP_ERRNO(ENXIO, map_region(self->fd, len, RWP, MAP_SHARED, off + psize()));
	ASSERT_MAP_ERRNO(ENXIO, map_region(self->fd, len - psize(), RWP, MAP_SHARED, off));
	ASSERT_MAP_ERRNO(ENXIO, map_region(self->fd, len + psize(), RWP, MAP_SHARED, off));
	/* The offset of something without a region. */
	ASSERT_MAP_ERRNO(ENXIO, map_region(self->fd, len, RWP, MAP_SHARED,
					   (uint64_t)self->ioas << 20));
	ASSERT_MAP_ERRNO(ENXIO, map_region(self->fd, len, RWP, MAP_SHARED,
					   (uint64_t)self->viommu << 20));
	ASSERT_MAP_ERRNO(EBADF, map_region(9999, len, RWP, MAP_SHARED, off));

	a = map_region(self->fd, len, RWP, MAP_SHARED, off);
	ASSERT_NE(MAP_FAILED, a);
	ASSERT_EQ(0xfeedcafeu, a[0]);
	/* A length inside the last page counts as the page. */
	b = map_region(self->fd, len - 100, PROT_READ, MAP_SHARED_VALIDATE, off);
	ASSERT_NE(MAP_FAILED, b);
	ASSERT_TRUE(uiommu_mmap_claims(b, 1));
	a[psize() / 4] = 0x5a5a;
	ASSERT_EQ(0x5a5au, b[psize() / 4]);
	/* Each mapping holds the vIOMMU, all of its pages until the last. */
	ASSERT_ERRNO(EBUSY, destroy(self->fd, v));
	ASSERT_EQ(0, uiommu_munmap(a, len));
	ASSERT_FALSE(uiommu_mmap_claims(a, len));
	ASSERT_ERRNO(EBUSY, destroy(self->fd, v));
	ASSERT_EQ(0, uiommu_munmap(b, psize()));
	ASSERT_EQ(0, uiommu_munmap(b, psize()));
	ASSERT_ERRNO(EBUSY, destroy(self->fd, v));
	ASSERT_EQ(0, uiommu_munmap((char *)b + psize(), psize()));
	ASSERT_EQ(0, destroy(self->fd, v));
	ASSERT_MAP_ERRNO(ENXIO, map_region(self->fd, len, RWP, MAP_SHARED, off));
}

/* A mapping keeps the context alive after the fd's close, as a VMA keeps its file. */
TEST(mmap_outlives_close)
{
	struct iommu_viommu_selftest data = { .in_data = 42 };
	struct uiommu_stats before, mid, after;
	uint32_t ioas, idev, parent, v, *p;
	int fd;

	/* What the first open of the process sets up for good is not counted. */
	ASSERT_EQ(0, uiommu_close(uiommu_open(O_RDWR)));
	ASSERT_EQ(0, uiommu_stats_get(&before));
	fd = uiommu_open(O_RDWR);
	ASSERT_GE(fd, 0);
	ioas = ioas_alloc(fd);
	ASSERT_EQ(0, mock_domain(fd, ioas, NULL, NULL, &idev));
	ASSERT_EQ(0, parent_alloc(fd, idev, ioas, &parent));
	ASSERT_EQ(0, viommu_alloc(fd, idev, parent, IOMMU_VIOMMU_TYPE_SELFTEST, &data,
				  sizeof(data), &v));
	p = map_region(fd, data.out_mmap_length, PROT_READ, MAP_SHARED, data.out_mmap_offset);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(0, uiommu_close(fd));
	ASSERT_EQ(0, uiommu_stats_get(&mid));
	ASSERT_EQ(before.contexts + 1, mid.contexts);
	ASSERT_EQ(42u, p[0]);
	ASSERT_EQ(0, uiommu_munmap(p, data.out_mmap_length));
	ASSERT_EQ(0, uiommu_stats_get(&after));
	ASSERT_EQ(before.contexts, after.contexts);
	ASSERT_EQ(before.objects, after.objects);
	ASSERT_EQ(before.allocations, after.allocations);
}

/* Fail the Nth step of an mmap of the region: nothing recorded, the vIOMMU free. */
TEST_F(hwq, fail_nth_mmap)
{
	struct iommu_viommu_selftest data = { .in_data = 1 };
	unsigned long nth;
	uint32_t v;

	if (!uiommu_fail_nth_available())
		return;
	ASSERT_EQ(0, viommu_alloc(self->fd, self->idev, self->parent, IOMMU_VIOMMU_TYPE_SELFTEST,
				  &data, sizeof(data), &v));
	for (nth = 1; nth < 100; nth++) {
		struct uiommu_stats before, after;
		unsigned long left;
		void *p;

		ASSERT_EQ(0, uiommu_stats_get(&before));
		uiommu_fail_nth_arm(nth);
		p = map_region(self->fd, data.out_mmap_length, PROT_READ, MAP_SHARED,
			       data.out_mmap_offset);
		left = uiommu_fail_nth_disarm();
		if (left) {
			ASSERT_NE(MAP_FAILED, p);
			ASSERT_EQ(0, uiommu_munmap(p, data.out_mmap_length));
			break;
		}
		ASSERT_EQ(MAP_FAILED, p);
		ASSERT_EQ(0, uiommu_stats_get(&after));
		ASSERT_EQ(before.allocations, after.allocations);
	}
	ASSERT_TRUE(nth > 1 && nth < 100);
	ASSERT_EQ(0, destroy(self->fd, v));
}

/* Fail the Nth step of HW_QUEUE_ALLOC (index 1): nothing may be left behind. */
TEST(fail_nth_hw_queue_alloc)
{
	const uint32_t T = IOMMU_HW_QUEUE_TYPE_SELFTEST;
	size_t len = 4 * psize();
	void *qbuf;
	unsigned long nth;

	if (!uiommu_fail_nth_available())
		return;
	qbuf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, qbuf);
	for (nth = 1; nth < 1000; nth++) {
		struct uiommu_stats before, after;
		uint32_t ioas, idev, parent, viommu, q0, q1;
		unsigned long left;
		int fd = uiommu_open(O_RDWR), rc;

		ASSERT_GE(fd, 0);
		ioas = ioas_alloc(fd);
		ASSERT_EQ(0, mock_domain(fd, ioas, NULL, NULL, &idev));
		ASSERT_EQ(0, parent_alloc(fd, idev, ioas, &parent));
		ASSERT_EQ(0, viommu_alloc(fd, idev, parent, IOMMU_VIOMMU_TYPE_SELFTEST, NULL, 0,
					  &viommu));
		ASSERT_EQ(0, map_fixed(fd, ioas, BUF_IOVA, qbuf, len));
		ASSERT_EQ(0, hw_queue_alloc(fd, viommu, T, 0, BUF_IOVA, psize(), &q0));
		ASSERT_EQ(0, uiommu_stats_get(&before));
		uiommu_fail_nth_arm(nth);
		rc = hw_queue_alloc(fd, viommu, T, 1, BUF_IOVA + psize(), 2 * psize(), &q1);
		left = uiommu_fail_nth_disarm();
		if (left) {
			ASSERT_EQ(0, rc);
			ASSERT_ERRNO(EBUSY, destroy(fd, q0));
			ASSERT_EQ(0, destroy(fd, q1));
			uiommu_close(fd);
			break;
		}
		ASSERT_NE(0, rc);
		ASSERT_EQ(0, uiommu_stats_get(&after));
		ASSERT_EQ(before.objects, after.objects);
		ASSERT_EQ(before.allocations, after.allocations);
		/* Queue 0 is free, and nothing locks the IOVA of the failed queue. */
		ASSERT_EQ(0, destroy(fd, q0));
		ASSERT_EQ(0, unmap(fd, ioas, BUF_IOVA, len));
		ASSERT_EQ(0, destroy(fd, viommu));
		uiommu_close(fd);
	}
	ASSERT_TRUE(nth > 1 && nth < 1000);
	munmap(qbuf, len);
}

TEST_HARNESS_MAIN
