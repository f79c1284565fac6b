// SPDX-License-Identifier: MIT
/*
 * Devices and hardware page tables through the ABI: the selftest mock's devices (MOCK_DOMAIN,
 * MOCK_DOMAIN_FLAGS, MOCK_DOMAIN_REPLACE), HWPT_ALLOC, automatic domains, GET_HW_INFO, eager
 * pinning with a domain attached (MD_CHECK_MAP, MD_CHECK_REFS), the destroy graph, and a
 * fault-injection sweep over HWPT_ALLOC, attach and MAP with a domain. Written from the ABI
 * description; no kernel code is used.
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


static int mock_domain_flags(int fd, uint32_t pt, uint32_t flags, uint32_t *stdev,
			     uint32_t *hwpt, uint32_t *idev)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, .id = pt,
		.mock_domain_flags = { .dev_flags = flags },
	};
	int rc = ioc(fd, IOMMU_TEST_CMD, &cmd);

	if (!rc) {
		if (stdev)
			*stdev = cmd.mock_domain_flags.out_stdev_id;
		if (hwpt)
			*hwpt = cmd.mock_domain_flags.out_hwpt_id;
		if (idev)
			*idev = cmd.mock_domain_flags.out_idev_id;
	}
	return rc;
}

static int mock_replace(int fd, uint32_t stdev, uint32_t *pt)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, .id = stdev,
		.mock_domain_replace = { .pt_id = *pt },
	};
	int rc = ioc(fd, IOMMU_TEST_CMD, &cmd);

	if (!rc)
		*pt = cmd.mock_domain_replace.pt_id;
	return rc;
}

static int check_map(int fd, uint32_t hwpt, uint64_t iova, const void *va, uint64_t len)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_MD_CHECK_MAP, .id = hwpt,
		.check_map = { .iova = iova, .length = len, .uptr = (uintptr_t)va },
	};

	return ioc(fd, IOMMU_TEST_CMD, &cmd);
}

static int hwpt_alloc(int fd, uint32_t dev, uint32_t pt, uint32_t flags, uint32_t *out)
{
	struct iommu_hwpt_alloc cmd = {
		.size = sizeof(cmd), .flags = flags, .dev_id = dev, .pt_id = pt,
	};
	int rc = ioc(fd, IOMMU_HWPT_ALLOC, &cmd);

	if (!rc && out)
		*out = cmd.out_hwpt_id;
	return rc;
}

static int iova_ranges(int fd, uint32_t ioas, struct iommu_iova_range *r, uint32_t *num,
		       uint64_t *align)
{
	struct iommu_ioas_iova_ranges cmd = {
		.size = sizeof(cmd), .ioas_id = ioas, .num_iovas = *num,
		.allowed_iovas = (uintptr_t)r,
	};
	int rc = ioc(fd, IOMMU_IOAS_IOVA_RANGES, &cmd);

	*num = cmd.num_iovas;
	*align = cmd.out_iova_alignment;
	return rc;
}

static int map_file_fixed(int fd, uint32_t ioas, uint64_t iova, int mfd, uint64_t start,
			  uint64_t len)
{
	struct iommu_ioas_map_file cmd = {
		.size = sizeof(cmd), .flags = RW | IOMMU_IOAS_MAP_FIXED_IOVA, .ioas_id = ioas,
		.fd = mfd, .start = start, .length = len, .iova = iova,
	};

	return ioc(fd, IOMMU_IOAS_MAP_FILE, &cmd);
}

FIXTURE(hwpt) {
	int fd;
	uint32_t ioas;
};

FIXTURE_SETUP(hwpt)
{
	self->fd = uiommu_open(O_RDWR);
	ASSERT_GE(self->fd, 0);
	self->ioas = ioas_alloc(self->fd);
}

FIXTURE_TEARDOWN(hwpt)
{
	int fd;

	uiommu_close(self->fd);
	/* Everything is released at the last close: no pin is left on the buffer. */
	fd = uiommu_open(O_RDWR);
	ASSERT_EQ(0, check_refs(fd, buf, BUF_LEN, 0));
	uiommu_close(fd);
}

/*
 * MD_CHECK_REFS reads each page as the kernel's get_user_pages_fast() does: an unmapped one is
 * EFAULT, so a huge length ends at the first hole (it used to walk 2^50 pages: a hang found
 * by fuzzing).
 */
TEST_F(hwpt, check_refs_stops_at_unmapped_pages)
{
	long pg = sysconf(_SC_PAGESIZE);
	char *map = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ASSERT_TRUE(map != MAP_FAILED);
	ASSERT_EQ(0, munmap(map + pg, pg));
	ASSERT_EQ(0, check_refs(self->fd, map, pg, 0));
	ASSERT_ERRNO(EFAULT, check_refs(self->fd, map, 2 * pg, 0));
	ASSERT_ERRNO(EFAULT, check_refs(self->fd, map, (uint64_t)1 << 50, 0));
	ASSERT_ERRNO(EFAULT, check_refs(self->fd, (void *)((uintptr_t)1 << 46), (uint64_t)1 << 50, 0));
	/* A mismatch before the hole is EIO, as the kernel checks page by page. */
	ASSERT_ERRNO(EIO, check_refs(self->fd, map, 2 * pg, 1));
	munmap(map, pg);
}

TEST_F(hwpt, mock_domain_reports_aperture_and_alignment)
{
	struct iommu_iova_range r[4];
	uint32_t stdev, hwpt, idev, num = 4;
	uint64_t align;

	ASSERT_EQ(0, iova_ranges(self->fd, self->ioas, r, &num, &align));
	ASSERT_EQ(1u, num);
	ASSERT_EQ(1u, align);
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, &stdev, &hwpt, &idev));
	ASSERT_TRUE(stdev && hwpt && idev && stdev != hwpt && hwpt != idev);
	num = 4;
	ASSERT_EQ(0, iova_ranges(self->fd, self->ioas, r, &num, &align));
	ASSERT_EQ(1u, num);
	ASSERT_EQ(MOCK_APERTURE_START, r[0].start);
	ASSERT_EQ(MOCK_APERTURE_LAST, r[0].last);
	ASSERT_EQ(MOCK_PAGE_SIZE, align);
	/* Outside the aperture or off the 2 KiB granule: refused. */
	ASSERT_ERRNO(EINVAL, map_fixed(self->fd, self->ioas, 0x1000, buf, PS));
	ASSERT_ERRNO(EINVAL, map_fixed(self->fd, self->ioas, MOCK_APERTURE_START, buf, 100));
	/* Destroying the stdev detaches: the automatic HWPT goes, the ranges come back. */
	ASSERT_EQ(0, destroy(self->fd, stdev));
	ASSERT_ERRNO(ENOENT, destroy(self->fd, hwpt));
	ASSERT_ERRNO(ENOENT, destroy(self->fd, idev));
	num = 4;
	ASSERT_EQ(0, iova_ranges(self->fd, self->ioas, r, &num, &align));
	ASSERT_EQ(0ull, r[0].start);
	ASSERT_EQ(1u, align);
}

TEST_F(hwpt, attach_conflicts)
{
	uint32_t stdev;

	/* An area outside the aperture keeps the device out. */
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, 0x10000, buf, PS));
	ASSERT_ERRNO(EADDRINUSE, mock_domain(self->fd, self->ioas, &stdev, NULL, NULL));
	ASSERT_EQ(0, unmap(self->fd, self->ioas, 0x10000, PS));
	/* So does one off the granule. */
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, MOCK_APERTURE_START + 1, buf, 100));
	ASSERT_ERRNO(EADDRINUSE, mock_domain(self->fd, self->ioas, &stdev, NULL, NULL));
	ASSERT_EQ(0, unmap(self->fd, self->ioas, MOCK_APERTURE_START + 1, 100));
	ASSERT_ERRNO(ENOENT, mock_domain(self->fd, 9999, &stdev, NULL, NULL));
	ASSERT_ERRNO(EINVAL, mock_domain_flags(self->fd, self->ioas, 1u << 1, &stdev, NULL, NULL));
	ASSERT_ERRNO(EINVAL, mock_domain_flags(self->fd, self->ioas, 1u << 5, &stdev, NULL, NULL));
	ASSERT_EQ(0, check_refs(self->fd, buf, BUF_LEN, 0));
}

TEST_F(hwpt, eager_pinning_check_map_and_refs)
{
	uint64_t iova = MOCK_APERTURE_START + BUF_LEN;
	char *hole = mmap(NULL, 4 * PS, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint32_t hwpt;

	/* Lazy without a domain: an unmapped VA maps, and nothing is pinned. */
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, iova, buf, BUF_LEN));
	ASSERT_EQ(0, check_refs(self->fd, buf, BUF_LEN, 0));
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, 0x80000000 - 4 * PS, hole, 4 * PS));
	ASSERT_ERRNO(EFAULT, mock_domain(self->fd, self->ioas, NULL, &hwpt, NULL));
	ASSERT_EQ(0, check_refs(self->fd, buf, BUF_LEN, 0));
	ASSERT_EQ(0, unmap(self->fd, self->ioas, 0x80000000 - 4 * PS, 4 * PS));

	/* The attach pins what is mapped; the domain translates to the buffer. */
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, NULL, &hwpt, NULL));
	ASSERT_EQ(0, check_refs(self->fd, buf, BUF_LEN, 1));
	ASSERT_EQ(0, check_map(self->fd, hwpt, iova, buf, BUF_LEN));
	ASSERT_ERRNO(EINVAL, check_map(self->fd, hwpt, iova, buf + PS, PS));
	ASSERT_ERRNO(EINVAL, check_map(self->fd, hwpt, iova + 1, buf, PS));
	ASSERT_ERRNO(EINVAL, check_map(self->fd, hwpt, MOCK_APERTURE_START, buf, PS));
	ASSERT_ERRNO(ENOENT, check_map(self->fd, self->ioas, iova, buf, PS));
	ASSERT_ERRNO(EIO, check_refs(self->fd, buf, BUF_LEN, 2));
	ASSERT_ERRNO(EINVAL, check_refs(self->fd, buf + 1, PS, 1));

	/* With a domain, MAP pins at once: a bad VA is EFAULT and leaves nothing. */
	ASSERT_ERRNO(EFAULT, map_fixed(self->fd, self->ioas, MOCK_APERTURE_START, hole, 4 * PS));
	ASSERT_ERRNO(ENOENT, unmap(self->fd, self->ioas, MOCK_APERTURE_START, 4 * PS));
	ASSERT_ERRNO(EINVAL, check_map(self->fd, hwpt, MOCK_APERTURE_START, hole, PS));
	/* A second MAP of the same memory pins it a second time; COPY does not. */
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, MOCK_APERTURE_START, buf, 4 * PS));
	ASSERT_EQ(0, check_refs(self->fd, buf, 4 * PS, 2));
	{
		struct iommu_ioas_copy copy = {
			.size = sizeof(copy), .flags = RW | IOMMU_IOAS_MAP_FIXED_IOVA,
			.dst_ioas_id = self->ioas, .src_ioas_id = self->ioas, .length = BUF_LEN,
			.dst_iova = iova + 4 * BUF_LEN, .src_iova = iova,
		};

		ASSERT_EQ(0, ioc(self->fd, IOMMU_IOAS_COPY, &copy));
		ASSERT_EQ(0, check_refs(self->fd, buf + 4 * PS, BUF_LEN - 4 * PS, 1));
		ASSERT_EQ(0, check_map(self->fd, hwpt, iova + 4 * BUF_LEN, buf, BUF_LEN));
	}
	ASSERT_EQ(0, unmap(self->fd, self->ioas, MOCK_APERTURE_START, 4 * PS));
	ASSERT_EQ(0, check_refs(self->fd, buf, BUF_LEN, 1));
	ASSERT_EQ(0, unmap(self->fd, self->ioas, 0, UINT64_MAX));
	ASSERT_EQ(0, check_refs(self->fd, buf, BUF_LEN, 0));
	ASSERT_ERRNO(EINVAL, check_map(self->fd, hwpt, iova, buf, PS));

	/* Pins taken now are released at the close (the teardown checks). */
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, iova, buf, BUF_LEN));
	ASSERT_EQ(0, check_refs(self->fd, buf, BUF_LEN, 1));
	munmap(hole, 4 * PS);
}

/*
 * A MAP_FILE area translates to the file's pages: MD_CHECK_MAP and MD_CHECK_REFS against any
 * shared mmap of the same file at the same offset see them, as the kernel's page-frame checks
 * do; another offset, another file with the same bytes, a private mapping or anonymous memory
 * does not.
 */
TEST_F(hwpt, file_pages_check_map_and_refs)
{
	uint64_t iova = MOCK_APERTURE_START;
	int mfd = memfd_create("hwpt-file", MFD_CLOEXEC), other = memfd_create("other", 0);
	char *va1, *va2, *priv, *oth;
	uint32_t hwpt;

	ASSERT_GE(mfd, 0);
	ASSERT_GE(other, 0);
	ASSERT_EQ(0, ftruncate(mfd, 8 * PS));
	ASSERT_EQ(0, ftruncate(other, 8 * PS));
	va1 = mmap(NULL, 8 * PS, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	va2 = mmap(NULL, 8 * PS, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	priv = mmap(NULL, 8 * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE, mfd, 0);
	oth = mmap(NULL, 8 * PS, PROT_READ | PROT_WRITE, MAP_SHARED, other, 0);
	ASSERT_TRUE(va1 != MAP_FAILED && va2 != MAP_FAILED && priv != MAP_FAILED &&
		    oth != MAP_FAILED);
	memset(priv, 1, 8 * PS); /* its own copies now */

	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, NULL, &hwpt, NULL));
	ASSERT_EQ(0, map_file_fixed(self->fd, self->ioas, iova, mfd, PS, 4 * PS));
	ASSERT_EQ(0, check_map(self->fd, hwpt, iova, va1 + PS, 4 * PS));
	ASSERT_EQ(0, check_map(self->fd, hwpt, iova, va2 + PS, 4 * PS));
	ASSERT_EQ(0, check_map(self->fd, hwpt, iova + 2 * PS, va1 + 3 * PS, PS));
	ASSERT_ERRNO(EINVAL, check_map(self->fd, hwpt, iova, va1, PS));
	ASSERT_ERRNO(EINVAL, check_map(self->fd, hwpt, iova, va1 + 2 * PS, PS));
	ASSERT_ERRNO(EINVAL, check_map(self->fd, hwpt, iova, oth + PS, PS));
	ASSERT_ERRNO(EINVAL, check_map(self->fd, hwpt, iova, priv + PS, PS));
	ASSERT_ERRNO(EINVAL, check_map(self->fd, hwpt, iova, buf, PS));
	/* The last page checked is past the area. */
	ASSERT_ERRNO(EINVAL, check_map(self->fd, hwpt, iova, va1 + PS, 5 * PS));

	/* One pin per file page, seen through every shared mapping of it. */
	ASSERT_EQ(0, check_refs(self->fd, va1 + PS, 4 * PS, 1));
	ASSERT_EQ(0, check_refs(self->fd, va2 + PS, 4 * PS, 1));
	ASSERT_EQ(0, check_refs(self->fd, va1, PS, 0));
	ASSERT_EQ(0, check_refs(self->fd, va1 + 5 * PS, 3 * PS, 0));
	ASSERT_EQ(0, check_refs(self->fd, oth, 8 * PS, 0));
	ASSERT_EQ(0, check_refs(self->fd, priv, 8 * PS, 0));
	/* A second MAP_FILE pins again; a MAP of the mmap pins the same pages as user pages. */
	ASSERT_EQ(0, map_file_fixed(self->fd, self->ioas, iova + 8 * PS, mfd, 2 * PS, PS));
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, iova + 16 * PS, va2 + 2 * PS, PS));
	/*
	 * The user pin counts at the address it was taken through (va2); the kernel would also
	 * count it through va1 (one page frame), see docs/status.md.
	 */
	ASSERT_EQ(0, check_refs(self->fd, va2 + 2 * PS, PS, 3));
	ASSERT_EQ(0, check_refs(self->fd, va1 + 2 * PS, PS, 2));
	ASSERT_EQ(0, check_refs(self->fd, va1 + 3 * PS, 2 * PS, 1));
	ASSERT_EQ(0, check_map(self->fd, hwpt, iova + 16 * PS, va1 + 2 * PS, PS));

	ASSERT_EQ(0, unmap(self->fd, self->ioas, iova, 4 * PS));
	ASSERT_EQ(0, check_refs(self->fd, va2 + 2 * PS, PS, 2));
	ASSERT_EQ(0, check_refs(self->fd, va1 + 3 * PS, 2 * PS, 0));
	ASSERT_ERRNO(EINVAL, check_map(self->fd, hwpt, iova, va1 + PS, PS));
	ASSERT_EQ(0, unmap(self->fd, self->ioas, 0, UINT64_MAX));
	ASSERT_EQ(0, check_refs(self->fd, va1, 8 * PS, 0));
	munmap(va1, 8 * PS);
	munmap(va2, 8 * PS);
	munmap(priv, 8 * PS);
	munmap(oth, 8 * PS);
	close(mfd);
	close(other);
}

TEST_F(hwpt, two_domains_share_pins)
{
	uint64_t iova = MOCK_APERTURE_START;
	uint32_t s1, s2, s3, h1, h2, h3, i1, ioas2 = ioas_alloc(self->fd);

	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, iova, buf, BUF_LEN));
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, &s1, &h1, &i1));
	/* A compatible automatic HWPT is reused, also by a NO_DIRTY device. */
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, &s2, &h2, NULL));
	ASSERT_EQ(h1, h2);
	ASSERT_EQ(0, mock_domain_flags(self->fd, self->ioas, MOCK_FLAGS_DEVICE_NO_DIRTY, &s3, &h2,
				       NULL));
	ASSERT_EQ(h1, h2);
	/* A second domain on the IOAS, with a device of its own: still one pin per page. */
	ASSERT_EQ(0, hwpt_alloc(self->fd, i1, self->ioas, 0, &h3));
	ASSERT_EQ(0, mock_domain(self->fd, h3, NULL, &h2, NULL));
	ASSERT_EQ(h3, h2);
	ASSERT_EQ(0, check_refs(self->fd, buf, BUF_LEN, 1));
	ASSERT_EQ(0, check_map(self->fd, h1, iova, buf, BUF_LEN));
	ASSERT_EQ(0, check_map(self->fd, h3, iova, buf, BUF_LEN));

	/* The graph: an IOAS with devices, an HWPT in use, a device object: EBUSY. */
	ASSERT_ERRNO(EBUSY, destroy(self->fd, self->ioas));
	ASSERT_ERRNO(EBUSY, destroy(self->fd, h1));

	/* Replace moves s1 to another IOAS; h1 stays while s2 uses it. */
	h2 = ioas2;
	ASSERT_EQ(0, mock_replace(self->fd, s1, &h2));
	ASSERT_TRUE(h2 != h1 && h2 != ioas2);
	ASSERT_ERRNO(EBUSY, destroy(self->fd, h1));
	/* The last device leaves h1: the automatic HWPT is freed and its ID names nothing. */
	h3 = ioas2;
	ASSERT_EQ(0, mock_replace(self->fd, s2, &h3));
	ASSERT_EQ(h2, h3);
	ASSERT_ERRNO(EBUSY, destroy(self->fd, h1)); /* the NO_DIRTY device is still on it */
	/* Its last device leaves h1: the automatic HWPT is freed and its ID names nothing. */
	ASSERT_EQ(0, destroy(self->fd, s3));
	ASSERT_ERRNO(ENOENT, destroy(self->fd, h1));
	ASSERT_ERRNO(ENOENT, check_map(self->fd, h1, iova, buf, PS));
	/* The user HWPT still holds the pins. */
	ASSERT_EQ(0, check_refs(self->fd, buf, BUF_LEN, 1));
	ASSERT_ERRNO(ENOENT, mock_replace(self->fd, s1, &(uint32_t){ 9999 }));
	ASSERT_ERRNO(EINVAL, mock_replace(self->fd, s1, &(uint32_t){ s2 }));
	ASSERT_ERRNO(EBUSY, destroy(self->fd, ioas2));
}

TEST_F(hwpt, hwpt_alloc_and_attach)
{
	uint32_t stdev, idev, auto_hwpt, hwpt, nodirty_idev, pt;

	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, &stdev, &auto_hwpt, &idev));
	ASSERT_EQ(0, mock_domain_flags(self->fd, self->ioas, MOCK_FLAGS_DEVICE_NO_DIRTY, NULL,
				       NULL, &nodirty_idev));
	ASSERT_ERRNO(EBUSY, destroy(self->fd, idev));
	ASSERT_ERRNO(ENOENT, hwpt_alloc(self->fd, 9999, self->ioas, 0, &hwpt));
	ASSERT_ERRNO(ENOENT, hwpt_alloc(self->fd, idev, 9999, 0, &hwpt));
	ASSERT_ERRNO(EINVAL, hwpt_alloc(self->fd, idev, stdev, 0, &hwpt));
	ASSERT_ERRNO(EOPNOTSUPP, hwpt_alloc(self->fd, idev, self->ioas, 1u << 7, &hwpt));
	ASSERT_ERRNO(EOPNOTSUPP, hwpt_alloc(self->fd, nodirty_idev, self->ioas,
					    IOMMU_HWPT_ALLOC_DIRTY_TRACKING, &hwpt));
	/* A nested HWPT needs data and a NEST_PARENT parent. */
	ASSERT_ERRNO(EINVAL, hwpt_alloc(self->fd, idev, auto_hwpt, 0, &hwpt));
	ASSERT_EQ(0, hwpt_alloc(self->fd, idev, self->ioas,
				IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING |
					IOMMU_HWPT_ALLOC_PASID,
				&hwpt));
	/* A user HWPT is not taken by automatic attaches, and it survives its detach. */
	pt = hwpt;
	ASSERT_EQ(0, mock_replace(self->fd, stdev, &pt));
	ASSERT_EQ(hwpt, pt);
	ASSERT_ERRNO(EBUSY, destroy(self->fd, auto_hwpt)); /* the NO_DIRTY device is on it */
	ASSERT_ERRNO(EBUSY, destroy(self->fd, hwpt));
	pt = self->ioas;
	ASSERT_EQ(0, mock_replace(self->fd, stdev, &pt));
	ASSERT_TRUE(pt != hwpt);
	ASSERT_EQ(0, destroy(self->fd, hwpt));
	/* A NO_DIRTY device cannot attach to a dirty-tracking domain. */
	ASSERT_EQ(0, hwpt_alloc(self->fd, idev, self->ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
				&hwpt));
	ASSERT_ERRNO(EINVAL, mock_domain_flags(self->fd, hwpt, MOCK_FLAGS_DEVICE_NO_DIRTY, NULL,
					       NULL, NULL));
	ASSERT_EQ(0, mock_domain(self->fd, hwpt, NULL, &pt, NULL));
	ASSERT_EQ(hwpt, pt);
}

TEST_F(hwpt, get_hw_info)
{
	struct {
		uint32_t flags, test_reg;
		uint64_t tail;
	} data;
	struct iommu_hw_info info = { .size = sizeof(info) };
	uint32_t idev, pasid_idev, nodirty_idev;

	info.dev_id = 9999;
	ASSERT_ERRNO(ENOENT, ioc(self->fd, IOMMU_GET_HW_INFO, &info));
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, NULL, NULL, &idev));
	ASSERT_EQ(0, mock_domain_flags(self->fd, self->ioas, MOCK_FLAGS_DEVICE_PASID, NULL, NULL,
				       &pasid_idev));
	ASSERT_EQ(0, mock_domain_flags(self->fd, self->ioas, MOCK_FLAGS_DEVICE_NO_DIRTY, NULL,
				       NULL, &nodirty_idev));

	memset(&data, 0xff, sizeof(data));
	info = (struct iommu_hw_info){ .size = sizeof(info), .dev_id = idev,
				       .data_len = sizeof(data), .data_uptr = (uintptr_t)&data };
	ASSERT_EQ(0, ioc(self->fd, IOMMU_GET_HW_INFO, &info));
	ASSERT_EQ(8u, info.data_len);
	ASSERT_EQ(IOMMU_HW_INFO_TYPE_SELFTEST, info.out_data_type);
	ASSERT_EQ(0u, data.flags);
	ASSERT_EQ(IOMMU_HW_INFO_SELFTEST_REGVAL, data.test_reg);
	ASSERT_EQ(0ull, data.tail);
	/* The selftest mock serves no ATS (it never answers IOMMU_CAP_PCI_ATS_SUPPORTED). */
	ASSERT_EQ((uint64_t)(IOMMU_HW_CAP_DIRTY_TRACKING | IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED),
		  info.out_capabilities);
	ASSERT_EQ(0, info.out_max_pasid_log2);
	/* Shorter buffers are truncated; none at all is fine. */
	memset(&data, 0xff, sizeof(data));
	info.data_len = 4;
	ASSERT_EQ(0, ioc(self->fd, IOMMU_GET_HW_INFO, &info));
	ASSERT_EQ(8u, info.data_len);
	ASSERT_EQ(0u, data.flags);
	ASSERT_EQ(0xffffffffu, data.test_reg);
	info.data_len = 0;
	ASSERT_EQ(0, ioc(self->fd, IOMMU_GET_HW_INFO, &info));
	/* Input type: DEFAULT or SELFTEST only. */
	info.flags = IOMMU_HW_INFO_FLAG_INPUT_TYPE;
	info.in_data_type = IOMMU_HW_INFO_TYPE_SELFTEST;
	ASSERT_EQ(0, ioc(self->fd, IOMMU_GET_HW_INFO, &info));
	info.in_data_type = IOMMU_HW_INFO_TYPE_INTEL_VTD;
	ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_GET_HW_INFO, &info));

	info = (struct iommu_hw_info){ .size = sizeof(info), .dev_id = pasid_idev };
	ASSERT_EQ(0, ioc(self->fd, IOMMU_GET_HW_INFO, &info));
	ASSERT_EQ(20, info.out_max_pasid_log2);
	info = (struct iommu_hw_info){ .size = sizeof(info), .dev_id = nodirty_idev };
	ASSERT_EQ(0, ioc(self->fd, IOMMU_GET_HW_INFO, &info));
	ASSERT_EQ((uint64_t)IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED, info.out_capabilities);
}

TEST_F(hwpt, close_releases_everything)
{
	struct uiommu_stats before, after;
	int fd = uiommu_open(O_RDWR);
	uint32_t ioas = ioas_alloc(fd), hwpt, idev;

	ASSERT_EQ(0, uiommu_stats_get(&before));
	ASSERT_EQ(0, map_fixed(fd, ioas, MOCK_APERTURE_START, buf, BUF_LEN));
	ASSERT_EQ(0, mock_domain(fd, ioas, NULL, NULL, &idev));
	ASSERT_EQ(0, hwpt_alloc(fd, idev, ioas, 0, &hwpt));
	ASSERT_EQ(0, mock_domain(fd, hwpt, NULL, NULL, NULL));
	ASSERT_EQ(0, check_refs(fd, buf, BUF_LEN, 1));
	uiommu_close(fd);
	ASSERT_EQ(0, check_refs(self->fd, buf, BUF_LEN, 0));
	ASSERT_EQ(0, uiommu_stats_get(&after));
	ASSERT_EQ(before.objects - 1, after.objects); /* the IOAS of the closed context */
	ASSERT_EQ(before.contexts - 1, after.contexts);
}

/*
 * The sweep: fail the Nth fallible step of one ioctl, for N = 1, 2, ... until it succeeds; every
 * failure must leave the objects, the allocations and the pins as they were.
 */
enum sweep_op { SWEEP_HWPT_ALLOC, SWEEP_ATTACH, SWEEP_MAP, SWEEP_MAP_FILE };

static void sweep(struct __h_test *_metadata, enum sweep_op op)
{
	int mfd = memfd_create("sweep", MFD_CLOEXEC);
	unsigned long nth;

	ASSERT_GE(mfd, 0);
	ASSERT_EQ(0, ftruncate(mfd, 8 * PS));
	if (!uiommu_fail_nth_available())
		return;
	for (nth = 1; nth < 1000; nth++) {
		struct uiommu_stats before, after;
		int fd = uiommu_open(O_RDWR);
		uint32_t ioas = ioas_alloc(fd), idev, hwpt;
		unsigned long left;
		int rc;

		ASSERT_EQ(0, map_fixed(fd, ioas, MOCK_APERTURE_START, buf, BUF_LEN / 2));
		if (op != SWEEP_ATTACH)
			ASSERT_EQ(0, mock_domain(fd, ioas, NULL, NULL, &idev));
		ASSERT_EQ(0, uiommu_stats_get(&before));
		uiommu_fail_nth_arm(nth);
		if (op == SWEEP_HWPT_ALLOC)
			rc = hwpt_alloc(fd, idev, ioas, 0, &hwpt);
		else if (op == SWEEP_ATTACH)
			rc = mock_domain(fd, ioas, NULL, NULL, &idev);
		else if (op == SWEEP_MAP)
			rc = map_fixed(fd, ioas, MOCK_APERTURE_START + BUF_LEN, buf, BUF_LEN);
		else
			rc = map_file_fixed(fd, ioas, MOCK_APERTURE_START + BUF_LEN, mfd, PS,
					    4 * PS);
		left = uiommu_fail_nth_disarm();
		if (left) {
			ASSERT_EQ(0, rc);
			uiommu_close(fd);
			break;
		}
		ASSERT_NE(0, rc);
		ASSERT_EQ(0, uiommu_stats_get(&after));
		if (getenv("SWEEP_DEBUG"))
			fprintf(stderr, "op %d nth %lu rc %d errno %d objs %ld/%ld allocs %ld/%ld\n",
				op, nth, rc, errno, before.objects, after.objects,
				before.allocations, after.allocations);
		ASSERT_EQ(before.objects, after.objects);
		ASSERT_EQ(before.allocations, after.allocations);
		ASSERT_EQ(before.pinned_pages, after.pinned_pages);
		ASSERT_EQ(0, check_refs(fd, buf, BUF_LEN / 2, op == SWEEP_ATTACH ? 0 : 1));
		ASSERT_EQ(0, check_refs(fd, buf + BUF_LEN / 2, BUF_LEN / 2, 0));
		ASSERT_ERRNO(ENOENT, unmap(fd, ioas, MOCK_APERTURE_START + BUF_LEN, BUF_LEN));
		uiommu_close(fd);
	}
	ASSERT_TRUE(nth > 1 && nth < 1000);
	close(mfd);
}

TEST_F(hwpt, fail_nth_hwpt_alloc)
{
	sweep(_metadata, SWEEP_HWPT_ALLOC);
}

TEST_F(hwpt, fail_nth_attach)
{
	sweep(_metadata, SWEEP_ATTACH);
}

TEST_F(hwpt, fail_nth_map_with_domain)
{
	sweep(_metadata, SWEEP_MAP);
}

TEST_F(hwpt, fail_nth_map_file_with_domain)
{
	sweep(_metadata, SWEEP_MAP_FILE);
}

TEST_HARNESS_MAIN
