// SPDX-License-Identifier: MIT
/*
 * Dirty tracking through the ABI on the selftest mock: IOMMU_HWPT_SET_DIRTY_TRACKING,
 * IOMMU_HWPT_GET_DIRTY_BITMAP (page sizes, unaligned user bitmaps, NO_CLEAR, huge-leaf
 * granularity), IOMMU_TEST_CMD DIRTY, their errnos, and a fault-injection sweep over
 * GET_DIRTY_BITMAP. Written from the ABI description; no kernel code is used.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "iommufd_utils.h"
#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"



static int hwpt_alloc(int fd, uint32_t dev, uint32_t pt, uint32_t flags, bool huge,
		      uint32_t *out)
{
	struct iommu_hwpt_selftest data = { .iotlb = 0, .pagetable_type = 1 };
	struct iommu_hwpt_alloc cmd = {
		.size = sizeof(cmd), .flags = flags, .dev_id = dev, .pt_id = pt,
	};
	int rc;

	if (huge) {
		cmd.data_type = IOMMU_HWPT_DATA_SELFTEST;
		cmd.data_len = sizeof(data);
		cmd.data_uptr = (uintptr_t)&data;
	}
	rc = ioc(fd, IOMMU_HWPT_ALLOC, &cmd);
	if (!rc && out)
		*out = cmd.out_hwpt_id;
	return rc;
}

static int set_dirty(int fd, uint32_t hwpt, uint32_t flags)
{
	struct iommu_hwpt_set_dirty_tracking cmd = {
		.size = sizeof(cmd), .flags = flags, .hwpt_id = hwpt,
	};

	return ioc(fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &cmd);
}

static int get_bitmap(int fd, uint32_t hwpt, uint64_t iova, uint64_t len, uint64_t pgsize,
		      void *data, uint32_t flags)
{
	struct iommu_hwpt_get_dirty_bitmap cmd = {
		.size = sizeof(cmd), .hwpt_id = hwpt, .flags = flags, .iova = iova,
		.length = len, .page_size = pgsize, .data = (uintptr_t)data,
	};

	return ioc(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &cmd);
}

static int mark_dirty(int fd, uint32_t hwpt, uint64_t iova, uint64_t len, uint64_t pgsize,
		      const void *bitmap, uint64_t *nr)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_DIRTY, .id = hwpt,
		.dirty = { .iova = iova, .length = len, .page_size = pgsize,
			   .uptr = (uintptr_t)bitmap },
	};
	int rc = ioc(fd, IOMMU_TEST_CMD, &cmd);

	if (!rc && nr)
		*nr = cmd.dirty.out_nr_dirty;
	return rc;
}

static bool bit(const unsigned char *map, uint64_t n)
{
	return map[n / 8] & (1u << (n % 8));
}

#define IOVA MOCK_APERTURE_START
#define MPS MOCK_PAGE_SIZE
#define NPAGES (BUF_LEN / MPS)

FIXTURE(dirty) {
	int fd;
	uint32_t ioas, idev, hwpt;
	unsigned char *bitmap; /* NPAGES bits, plus room for odd offsets */
};

FIXTURE_SETUP(dirty)
{
	self->fd = uiommu_open(O_RDWR);
	ASSERT_GE(self->fd, 0);
	self->ioas = ioas_alloc(self->fd);
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, NULL, NULL, &self->idev));
	ASSERT_EQ(0, hwpt_alloc(self->fd, self->idev, self->ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
				false, &self->hwpt));
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA, buf, BUF_LEN));
	self->bitmap = calloc(1, NPAGES / 8 + 2 * 4096);
	ASSERT_NE(NULL, self->bitmap);
}

FIXTURE_TEARDOWN(dirty)
{
	free(self->bitmap);
	uiommu_close(self->fd);
}

TEST_F(dirty, errors)
{
	uint32_t plain;
	uint64_t nr;

	ASSERT_ERRNO(EOPNOTSUPP, set_dirty(self->fd, self->hwpt, 2));
	{
		struct iommu_hwpt_set_dirty_tracking cmd = {
			.size = sizeof(cmd), .hwpt_id = self->hwpt, .__reserved = 1,
		};
		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &cmd));
	}
	ASSERT_ERRNO(ENOENT, set_dirty(self->fd, 9999, IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
	ASSERT_ERRNO(ENOENT, set_dirty(self->fd, self->ioas, IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
	ASSERT_EQ(0, hwpt_alloc(self->fd, self->idev, self->ioas, 0, false, &plain));
	ASSERT_ERRNO(EINVAL, set_dirty(self->fd, plain, IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
	ASSERT_EQ(0, set_dirty(self->fd, plain, 0));
	/* Tracking off: no bitmap, no marks. */
	ASSERT_ERRNO(EINVAL, get_bitmap(self->fd, self->hwpt, IOVA, BUF_LEN, MPS, self->bitmap, 0));
	ASSERT_ERRNO(EINVAL, mark_dirty(self->fd, self->hwpt, IOVA, BUF_LEN, MPS, self->bitmap,
					&nr));
	ASSERT_EQ(0, set_dirty(self->fd, self->hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
	ASSERT_ERRNO(EOPNOTSUPP, get_bitmap(self->fd, self->hwpt, IOVA, BUF_LEN, MPS,
					    self->bitmap, 2));
	ASSERT_ERRNO(ENOENT, get_bitmap(self->fd, 9999, IOVA, BUF_LEN, MPS, self->bitmap, 0));
	ASSERT_ERRNO(EINVAL, get_bitmap(self->fd, self->hwpt, IOVA, BUF_LEN, 0, self->bitmap, 0));
	ASSERT_ERRNO(EINVAL, get_bitmap(self->fd, self->hwpt, IOVA, BUF_LEN, 3 * MPS,
					self->bitmap, 0));
	ASSERT_ERRNO(EINVAL, get_bitmap(self->fd, self->hwpt, IOVA + MPS, BUF_LEN, 2 * MPS,
					self->bitmap, 0));
	ASSERT_ERRNO(EINVAL, get_bitmap(self->fd, self->hwpt, IOVA, MPS + 1, MPS, self->bitmap,
					0));
	ASSERT_ERRNO(EINVAL, get_bitmap(self->fd, self->hwpt, IOVA + 1, MPS, 1, self->bitmap, 0));
	ASSERT_ERRNO(EOVERFLOW, get_bitmap(self->fd, self->hwpt, UINT64_MAX - MPS + 1, 2 * MPS,
					   MPS, self->bitmap, 0));
	ASSERT_ERRNO(EINVAL, mark_dirty(self->fd, self->hwpt, IOVA, BUF_LEN, 0, self->bitmap,
					&nr));
	ASSERT_ERRNO(EINVAL, mark_dirty(self->fd, self->hwpt, IOVA + 1, MPS, MPS, self->bitmap,
					&nr));
	ASSERT_ERRNO(EINVAL, mark_dirty(self->fd, self->hwpt, IOVA, MPS, MPS, NULL, &nr));
	ASSERT_ERRNO(ENOENT, mark_dirty(self->fd, self->ioas, IOVA, MPS, MPS, self->bitmap, &nr));
	ASSERT_EQ(0, destroy(self->fd, plain));
}

/* Marks every third 2 KiB page, then reads at several page sizes and bitmap offsets. */
TEST_F(dirty, bitmaps)
{
	static const uint64_t sizes[] = { MPS, 2 * MPS, 4 * MPS, 64 * MPS };
	static const uint64_t offsets[] = { 0, 1, MPS, 0xff1 };
	unsigned char *marks = calloc(1, NPAGES / 8);
	unsigned int s, o;
	uint64_t i, nr;

	ASSERT_EQ(0, set_dirty(self->fd, self->hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
	for (s = 0; s != 4; s++) {
		for (o = 0; o != 4; o++) {
			unsigned char *map = self->bitmap + offsets[o];
			uint64_t pgsize = sizes[s], nbits = BUF_LEN / pgsize, want = 0;

			memset(marks, 0, NPAGES / 8);
			for (i = 0; i < NPAGES; i += 3)
				marks[i / 8] |= (unsigned char)(1u << (i % 8));
			for (i = 0; i < NPAGES; i += 3)
				want++;
			ASSERT_EQ(0, mark_dirty(self->fd, self->hwpt, IOVA, BUF_LEN, MPS, marks,
						&nr));
			ASSERT_EQ(want, nr);
			memset(self->bitmap, 0, NPAGES / 8 + 2 * 4096);
			ASSERT_EQ(0, get_bitmap(self->fd, self->hwpt, IOVA, BUF_LEN, pgsize, map,
						IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR));
			for (i = 0; i != nbits; i++) {
				uint64_t per = pgsize / MPS, j;
				bool any = false;

				for (j = 0; j != per; j++)
					any |= (i * per + j) % 3 == 0;
				ASSERT_EQ(any, bit(map, i));
			}
			/* Nothing past the bitmap was touched. */
			ASSERT_EQ(0, map[nbits / 8 + 1]);
			/* NO_CLEAR kept them: the same again, then cleared by a plain read. */
			memset(self->bitmap, 0, NPAGES / 8 + 2 * 4096);
			ASSERT_EQ(0, get_bitmap(self->fd, self->hwpt, IOVA, BUF_LEN, pgsize, map, 0));
			ASSERT_EQ(true, bit(map, 0));
			memset(self->bitmap, 0, NPAGES / 8 + 2 * 4096);
			ASSERT_EQ(0, get_bitmap(self->fd, self->hwpt, IOVA, BUF_LEN, pgsize, map, 0));
			for (i = 0; i != nbits / 8; i++)
				ASSERT_EQ(0, map[i]);
		}
	}
	free(marks);
}

TEST_F(dirty, subrange_and_unmapped)
{
	unsigned char marks[8] = { 0xff, 0xff };
	uint64_t nr;

	ASSERT_EQ(0, set_dirty(self->fd, self->hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
	/* 16 pages from the last 8 mapped ones: only 8 are mapped. */
	ASSERT_EQ(0, mark_dirty(self->fd, self->hwpt, IOVA + BUF_LEN - 8 * MPS, 16 * MPS, MPS,
				marks, &nr));
	ASSERT_EQ(8, nr);
	memset(self->bitmap, 0, 64);
	/* A window in the middle of the marks. */
	ASSERT_EQ(0, get_bitmap(self->fd, self->hwpt, IOVA + BUF_LEN - 4 * MPS, 8 * MPS, MPS,
				self->bitmap, 0));
	ASSERT_EQ(0x0f, self->bitmap[0]);
	/* Disabling and enabling again starts clean. */
	ASSERT_EQ(0, set_dirty(self->fd, self->hwpt, 0));
	ASSERT_EQ(0, set_dirty(self->fd, self->hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
	memset(self->bitmap, 0, 64);
	ASSERT_EQ(0, get_bitmap(self->fd, self->hwpt, IOVA + BUF_LEN - 8 * MPS, 8 * MPS, MPS,
				self->bitmap, 0));
	ASSERT_EQ(0, self->bitmap[0]);
}

TEST_F(dirty, huge_leaf_granularity)
{
	unsigned char marks[1] = { 1 };
	uint32_t huge;
	uint64_t nr, i;

	ASSERT_EQ(0, hwpt_alloc(self->fd, self->idev, self->ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
				true, &huge));
	ASSERT_EQ(0, set_dirty(self->fd, huge, IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
	/* One 2 KiB unit in the middle of the 1 MiB leaf. */
	ASSERT_EQ(0, mark_dirty(self->fd, huge, IOVA + 100 * MPS, MPS, MPS, marks, &nr));
	ASSERT_EQ(1, nr);
	memset(self->bitmap, 0, NPAGES / 8 + 16);
	ASSERT_EQ(0, get_bitmap(self->fd, huge, IOVA, BUF_LEN, MPS, self->bitmap + 3, 0));
	for (i = 0; i != NPAGES / 8; i++)
		ASSERT_EQ(0xff, self->bitmap[3 + i]);
	ASSERT_EQ(0, self->bitmap[3 + NPAGES / 8]);
	/* The other HWPT (2 KiB leaves only) saw nothing. */
	ASSERT_EQ(0, set_dirty(self->fd, self->hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
	memset(self->bitmap, 0, NPAGES / 8);
	ASSERT_EQ(0, get_bitmap(self->fd, self->hwpt, IOVA, BUF_LEN, MPS, self->bitmap, 0));
	ASSERT_EQ(0, self->bitmap[12]);
	ASSERT_EQ(0, destroy(self->fd, huge));
}

/* Fail the Nth fallible step of GET_DIRTY_BITMAP: nothing may leak; NO_CLEAR keeps the bits. */
TEST_F(dirty, fail_nth_get_dirty_bitmap)
{
	unsigned char marks[NPAGES / 8];
	unsigned long nth;
	uint64_t nr;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	memset(marks, 0x55, sizeof(marks));
	ASSERT_EQ(0, set_dirty(self->fd, self->hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
	ASSERT_EQ(0, mark_dirty(self->fd, self->hwpt, IOVA, BUF_LEN, MPS, marks, &nr));
	for (nth = 1; nth < 1000; nth++) {
		struct uiommu_stats before, after;
		unsigned long left;
		int rc;

		ASSERT_EQ(0, uiommu_stats_get(&before));
		memset(self->bitmap, 0, NPAGES / 8 + 2 * 4096);
		uiommu_fail_nth_arm(nth);
		rc = get_bitmap(self->fd, self->hwpt, IOVA, BUF_LEN, MPS, self->bitmap + 0xff1,
				IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR);
		left = uiommu_fail_nth_disarm();
		ASSERT_EQ(0, uiommu_stats_get(&after));
		ASSERT_EQ(before.objects, after.objects);
		ASSERT_EQ(before.allocations, after.allocations);
		if (left) {
			ASSERT_EQ(0, rc);
			break;
		}
		ASSERT_NE(0, rc);
	}
	ASSERT_TRUE(nth > 1 && nth < 1000);
	ASSERT_EQ(0, memcmp(self->bitmap + 0xff1, marks, sizeof(marks)));
}

TEST_HARNESS_MAIN
