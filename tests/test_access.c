// SPDX-License-Identifier: MIT
/*
 * Access objects through the ABI: IOMMU_TEST_CMD's CREATE_ACCESS (a real fd whose close
 * destroys the access), ACCESS_PAGES and DESTROY_ACCESS_PAGES, the unmap callback, ACCESS_RW
 * with and without a domain, ACCESS_REPLACE_IOAS, SET_TEMP_MEMORY_LIMIT, the pin counts they
 * leave (MD_CHECK_REFS), and a fault-injection sweep over ACCESS_PAGES. Written from the ABI
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


static int create_access(int fd, uint32_t ioas, uint32_t flags, int *afd)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_CREATE_ACCESS, .id = ioas,
		.create_access = { .flags = flags },
	};
	int rc = ioc(fd, IOMMU_TEST_CMD, &cmd);

	if (!rc)
		*afd = (int)cmd.create_access.out_access_fd;
	return rc;
}

static int access_pages(int fd, int afd, uint64_t iova, uint64_t len, const void *uptr,
			uint32_t flags, uint32_t *item)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_ACCESS_PAGES, .id = (uint32_t)afd,
		.access_pages = { .flags = flags, .iova = iova, .length = len,
				  .uptr = (uintptr_t)uptr },
	};
	int rc = ioc(fd, IOMMU_TEST_CMD, &cmd);

	if (!rc && item)
		*item = cmd.access_pages.out_access_pages_id;
	return rc;
}

static int destroy_pages(int fd, int afd, uint32_t item)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, .id = (uint32_t)afd,
		.destroy_access_pages = { .access_pages_id = item },
	};

	return ioc(fd, IOMMU_TEST_CMD, &cmd);
}

static int access_rw(int fd, int afd, uint64_t iova, void *uptr, uint64_t len, uint32_t flags)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_ACCESS_RW, .id = (uint32_t)afd,
		.access_rw = { .iova = iova, .length = len, .uptr = (uintptr_t)uptr,
			       .flags = flags },
	};

	return ioc(fd, IOMMU_TEST_CMD, &cmd);
}

static int access_replace(int fd, int afd, uint32_t ioas)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, .id = (uint32_t)afd,
		.access_replace_ioas = { .ioas_id = ioas },
	};

	return ioc(fd, IOMMU_TEST_CMD, &cmd);
}

static int memory_limit(int fd, uint32_t limit)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT,
		.memory_limit = { .limit = limit },
	};

	return ioc(fd, IOMMU_TEST_CMD, &cmd);
}

static uint64_t ioas_alignment(int fd, uint32_t ioas)
{
	struct iommu_iova_range r[4];
	struct iommu_ioas_iova_ranges cmd = {
		.size = sizeof(cmd), .ioas_id = ioas, .num_iovas = 4,
		.allowed_iovas = (uintptr_t)r,
	};

	if (ioc(fd, IOMMU_IOAS_IOVA_RANGES, &cmd))
		abort();
	return cmd.out_iova_alignment;
}

#define IOVA MOCK_APERTURE_START
#define PIN MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES

FIXTURE(access) {
	int fd;
	uint32_t ioas;
};

FIXTURE_SETUP(access)
{
	self->fd = uiommu_open(O_RDWR);
	ASSERT_GE(self->fd, 0);
	self->ioas = ioas_alloc(self->fd);
}

FIXTURE_TEARDOWN(access)
{
	int fd;

	uiommu_close(self->fd);
	fd = uiommu_open(O_RDWR);
	ASSERT_EQ(0, check_refs(fd, buf, BUF_LEN, 0));
	uiommu_close(fd);
}

TEST_F(access, create_errors)
{
	int afd;

	ASSERT_ERRNO(EOPNOTSUPP, create_access(self->fd, self->ioas, 2, &afd));
	ASSERT_ERRNO(ENOENT, create_access(self->fd, 999, PIN, &afd));
	/* An fd number that is no access fd. */
	ASSERT_ERRNO(EBADFD, access_pages(self->fd, self->fd, IOVA, PS, buf, 0, NULL));
	ASSERT_ERRNO(EBADFD, access_rw(self->fd, 12345, IOVA, buf, 1, 0));
	ASSERT_ERRNO(EBADFD, destroy_pages(self->fd, -1, 0));
	ASSERT_ERRNO(EBADFD, access_replace(self->fd, 0, self->ioas));
}

TEST_F(access, fd_is_real_and_close_destroys)
{
	struct uiommu_stats before, mid, after;
	int afd;

	ASSERT_EQ(0, uiommu_stats_get(&before));
	ASSERT_EQ(0, create_access(self->fd, self->ioas, PIN, &afd));
	ASSERT_GE(afd, 0);
	ASSERT_TRUE(uiommu_is_fd(afd));
	ASSERT_NE(-1, fcntl(afd, F_GETFD));
	ASSERT_TRUE(fcntl(afd, F_GETFD) & FD_CLOEXEC);
	/* Not an iommufd: ioctls on it are refused. */
	ASSERT_ERRNO(ENOTTY, ioc(afd, IOMMU_IOAS_ALLOC, &(struct iommu_ioas_alloc){ 12 }));
	ASSERT_EQ(0, uiommu_stats_get(&mid));
	ASSERT_EQ(before.objects + 1, mid.objects);
	/* The access holds the IOAS. */
	ASSERT_ERRNO(EBUSY, destroy(self->fd, self->ioas));
	ASSERT_EQ(0, uiommu_close(afd));
	ASSERT_EQ(-1, fcntl(afd, F_GETFD));
	ASSERT_EQ(0, uiommu_stats_get(&after));
	ASSERT_EQ(before.objects, after.objects);
	ASSERT_EQ(before.allocations, after.allocations);
	ASSERT_ERRNO(EBADFD, access_rw(self->fd, afd, IOVA, buf, 1, 0));
	ASSERT_EQ(0, destroy(self->fd, self->ioas));
}

TEST_F(access, access_fd_keeps_the_context)
{
	int fd = uiommu_open(O_RDWR), afd;
	uint32_t ioas = ioas_alloc(fd), item;
	char c = 0;

	ASSERT_EQ(0, map_fixed(fd, ioas, IOVA, buf, BUF_LEN));
	ASSERT_EQ(0, create_access(fd, ioas, PIN, &afd));
	ASSERT_EQ(0, access_pages(fd, afd, IOVA, PS, buf, 0, &item));
	ASSERT_EQ(0, uiommu_close(fd));
	/* The context lives on while its access fd is open: the pin stays. */
	ASSERT_EQ(0, check_refs(self->fd, buf, PS, 1));
	ASSERT_EQ(0, access_rw(self->fd, afd, IOVA + 3, &c, 1, 0));
	ASSERT_EQ(0x5a, c);
	ASSERT_EQ(0, uiommu_close(afd));
	ASSERT_EQ(0, check_refs(self->fd, buf, BUF_LEN, 0));
}

/*
 * The slow path copies through the pinned page without judging what the program keeps there:
 * memory it freed to its allocator is still its memory (ASan builds reported the library's
 * copy as a use-after-free: found by fuzzing).
 */
TEST_F(access, rw_slow_path_reads_freed_user_memory)
{
	char *heap = malloc(4 * PS), *page, c[16];
	int afd;

	ASSERT_TRUE(heap != NULL);
	page = (char *)(((uintptr_t)heap + PS - 1) & ~((uintptr_t)PS - 1));
	memset(page, 0x3c, PS);
	free(heap);
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA, page, PS));
	ASSERT_EQ(0, create_access(self->fd, self->ioas, PIN, &afd));
	ASSERT_EQ(0, access_rw(self->fd, afd, IOVA, c, sizeof(c), MOCK_ACCESS_RW_SLOW_PATH));
	ASSERT_EQ(0, uiommu_close(afd));
	ASSERT_EQ(0, unmap(self->fd, self->ioas, IOVA, PS));
}

TEST_F(access, pages_errors)
{
	int afd, nopin;
	uint32_t item;

	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA, buf, BUF_LEN));
	ASSERT_EQ(0, create_access(self->fd, self->ioas, PIN, &afd));
	ASSERT_EQ(0, create_access(self->fd, self->ioas, 0, &nopin));
	ASSERT_ERRNO(ENOMEM, access_pages(self->fd, afd, IOVA, (16 << 20) + 1, buf, 0, &item));
	ASSERT_ERRNO(EOPNOTSUPP, access_pages(self->fd, afd, IOVA, PS, buf, 2, &item));
	ASSERT_ERRNO(EOPNOTSUPP, access_pages(self->fd, nopin, IOVA, PS, buf, 0, &item));
	ASSERT_ERRNO(EINVAL, access_pages(self->fd, afd, IOVA, 0, buf, 0, &item));
	ASSERT_ERRNO(ENOENT, access_pages(self->fd, afd, IOVA - PS, PS, buf, 0, &item));
	ASSERT_ERRNO(ENOENT, access_pages(self->fd, afd, IOVA + BUF_LEN - PS, 2 * PS, buf, 0,
					  &item));
	/* The pages are not those of the user VA given. */
	ASSERT_ERRNO(EBADE, access_pages(self->fd, afd, IOVA, PS, buf + PS, 0, &item));
	ASSERT_EQ(0, check_refs(self->fd, buf, BUF_LEN, 0));
	ASSERT_ERRNO(ENOENT, destroy_pages(self->fd, afd, 0));
	/* A NULL uptr skips the check. */
	ASSERT_EQ(0, access_pages(self->fd, afd, IOVA, PS, NULL, 0, &item));
	ASSERT_EQ(0, destroy_pages(self->fd, afd, item));
	ASSERT_ERRNO(ENOENT, destroy_pages(self->fd, afd, item));
	ASSERT_EQ(0, uiommu_close(nopin));
	ASSERT_EQ(0, uiommu_close(afd));
}

/*
 * ACCESS_PAGES of a MAP_FILE area: the pinned pages are the file's, so the caller's shared
 * mmap of the file at the same offset passes the uptr check; another offset is EBADE.
 */
TEST_F(access, file_pages_uptr_check)
{
	int mfd = memfd_create("access-file", MFD_CLOEXEC), afd;
	struct iommu_ioas_map_file map = {
		.size = sizeof(map), .flags = RW | IOMMU_IOAS_MAP_FIXED_IOVA, .ioas_id = self->ioas,
		.start = 2 * PS, .length = 4 * PS, .iova = IOVA,
	};
	uint32_t item;
	char *va;

	ASSERT_GE(mfd, 0);
	ASSERT_EQ(0, ftruncate(mfd, 8 * PS));
	va = mmap(NULL, 8 * PS, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	ASSERT_TRUE(va != MAP_FAILED);
	map.fd = mfd;
	ASSERT_EQ(0, ioc(self->fd, IOMMU_IOAS_MAP_FILE, &map));
	ASSERT_EQ(0, create_access(self->fd, self->ioas, PIN, &afd));
	ASSERT_EQ(0, access_pages(self->fd, afd, IOVA, 4 * PS, va + 2 * PS, 0, &item));
	ASSERT_EQ(0, check_refs(self->fd, va + 2 * PS, 4 * PS, 1));
	ASSERT_EQ(0, check_refs(self->fd, va, 2 * PS, 0));
	ASSERT_EQ(0, destroy_pages(self->fd, afd, item));
	ASSERT_EQ(0, check_refs(self->fd, va + 2 * PS, 4 * PS, 0));
	ASSERT_ERRNO(EBADE, access_pages(self->fd, afd, IOVA, PS, va, 0, &item));
	ASSERT_ERRNO(EBADE, access_pages(self->fd, afd, IOVA, PS, buf, 0, &item));
	ASSERT_EQ(0, check_refs(self->fd, va, 8 * PS, 0));
	ASSERT_EQ(0, uiommu_close(afd));
	munmap(va, 8 * PS);
	close(mfd);
}

TEST_F(access, read_only_area)
{
	struct iommu_ioas_map cmd = {
		.size = sizeof(cmd), .flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA,
		.ioas_id = self->ioas, .user_va = (uintptr_t)buf, .length = PS, .iova = IOVA,
	};
	char c = 1;
	int afd;

	ASSERT_EQ(0, ioc(self->fd, IOMMU_IOAS_MAP, &cmd));
	ASSERT_EQ(0, create_access(self->fd, self->ioas, PIN, &afd));
	ASSERT_ERRNO(EPERM, access_pages(self->fd, afd, IOVA, PS, buf, MOCK_FLAGS_ACCESS_WRITE,
					 NULL));
	ASSERT_ERRNO(EPERM, access_rw(self->fd, afd, IOVA, &c, 1, MOCK_ACCESS_RW_WRITE));
	ASSERT_EQ(0, access_rw(self->fd, afd, IOVA, &c, 1, 0));
	ASSERT_EQ(0, uiommu_close(afd));
}

TEST_F(access, pins_count_once_with_a_domain)
{
	uint32_t item, item2;
	int afd;

	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA, buf, BUF_LEN));
	ASSERT_EQ(0, create_access(self->fd, self->ioas, PIN, &afd));
	ASSERT_EQ(0, access_pages(self->fd, afd, IOVA + PS, 2 * PS, buf + PS, 0, &item));
	ASSERT_EQ(0, check_refs(self->fd, buf, PS, 0));
	ASSERT_EQ(0, check_refs(self->fd, buf + PS, 2 * PS, 1));
	ASSERT_EQ(0, check_refs(self->fd, buf + 3 * PS, BUF_LEN - 3 * PS, 0));
	/* A second pin of the same pages, unaligned: still one pin per page. */
	ASSERT_EQ(0, access_pages(self->fd, afd, IOVA + PS + 7, PS, buf + PS + 7, 0, &item2));
	ASSERT_NE(item, item2);
	ASSERT_EQ(0, check_refs(self->fd, buf + PS, 2 * PS, 1));
	/* A domain on the same pages shares the pins. */
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, NULL, NULL, NULL));
	ASSERT_EQ(0, check_refs(self->fd, buf, BUF_LEN, 1));
	ASSERT_EQ(0, destroy_pages(self->fd, afd, item));
	ASSERT_EQ(0, check_refs(self->fd, buf, BUF_LEN, 1));
	ASSERT_EQ(0, uiommu_close(afd));
	ASSERT_EQ(0, check_refs(self->fd, buf, BUF_LEN, 1));
}

TEST_F(access, pin_across_areas)
{
	uint32_t item;
	int afd;

	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA, buf, 4 * PS));
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA + 4 * PS, buf + 4 * PS, 4 * PS));
	ASSERT_EQ(0, create_access(self->fd, self->ioas, PIN, &afd));
	ASSERT_EQ(0, access_pages(self->fd, afd, IOVA + 2 * PS, 4 * PS, buf + 2 * PS, 0, &item));
	ASSERT_EQ(0, check_refs(self->fd, buf + 2 * PS, 4 * PS, 1));
	ASSERT_EQ(0, uiommu_close(afd));
	ASSERT_EQ(0, check_refs(self->fd, buf, 8 * PS, 0));
}

TEST_F(access, unmap_calls_back)
{
	uint32_t item, other;
	int afd;

	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA, buf, 4 * PS));
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA + 4 * PS, buf + 4 * PS, 4 * PS));
	ASSERT_EQ(0, create_access(self->fd, self->ioas, PIN, &afd));
	ASSERT_EQ(0, access_pages(self->fd, afd, IOVA + PS, PS, buf + PS, 0, &item));
	ASSERT_EQ(0, access_pages(self->fd, afd, IOVA + 5 * PS, PS, buf + 5 * PS, 0, &other));
	/* An area with access pins cannot be cut (VFIO v1 unmap relies on cuts). */
	ASSERT_EQ(0, unmap(self->fd, self->ioas, IOVA, 4 * PS));
	ASSERT_EQ(0, check_refs(self->fd, buf, 4 * PS, 0));
	ASSERT_ERRNO(ENOENT, destroy_pages(self->fd, afd, item));
	/* The other item was outside the range: untouched. */
	ASSERT_EQ(0, check_refs(self->fd, buf + 5 * PS, PS, 1));
	ASSERT_EQ(0, destroy_pages(self->fd, afd, other));
	ASSERT_EQ(0, access_pages(self->fd, afd, IOVA + 5 * PS, PS, buf + 5 * PS, 0, &other));
	/* Unmap everything also calls back. */
	ASSERT_EQ(0, unmap(self->fd, self->ioas, 0, UINT64_MAX));
	ASSERT_ERRNO(ENOENT, destroy_pages(self->fd, afd, other));
	ASSERT_EQ(0, check_refs(self->fd, buf, BUF_LEN, 0));
	ASSERT_EQ(0, uiommu_close(afd));
}

static void rw_checks(struct __h_test *_metadata, int fd, uint32_t ioas, bool domain)
{
	char *tmp = malloc(3 * PS), *want = malloc(3 * PS);
	static const uint32_t modes[] = { 0, MOCK_ACCESS_RW_SLOW_PATH };
	uint64_t offs[] = { 0, 1, PS - 1, PS - 3, 2047 };
	uint64_t lens[] = { 1, 3, PS, PS + 1, 2 * PS + 5 };
	unsigned int m, o, l;
	int afd;

	ASSERT_EQ(0, map_fixed(fd, ioas, IOVA, buf, 4 * PS));
	if (domain)
		ASSERT_EQ(0, mock_domain(fd, ioas, NULL, NULL, NULL));
	ASSERT_EQ(0, create_access(fd, ioas, 0, &afd));
	for (m = 0; m != 2; m++) {
		for (o = 0; o != 5; o++) {
			for (l = 0; l != 5; l++) {
				uint64_t i;

				for (i = 0; i != lens[l]; i++)
					want[i] = (char)(i * 7 + o + l + m);
				ASSERT_EQ(0, access_rw(fd, afd, IOVA + offs[o], want, lens[l],
						       modes[m] | MOCK_ACCESS_RW_WRITE));
				ASSERT_EQ(0, memcmp(buf + offs[o], want, lens[l]));
				memset(tmp, 0, lens[l]);
				ASSERT_EQ(0, access_rw(fd, afd, IOVA + offs[o], tmp, lens[l], modes[m]));
				ASSERT_EQ(0, memcmp(tmp, want, lens[l]));
			}
		}
	}
	ASSERT_ERRNO(EINVAL, access_rw(fd, afd, IOVA, tmp, 0, 0));
	ASSERT_ERRNO(ENOENT, access_rw(fd, afd, IOVA + 4 * PS - 1, tmp, 2, 0));
	ASSERT_ERRNO(ENOENT, access_rw(fd, afd, IOVA - 1, tmp, 2, 0));
	ASSERT_ERRNO(ENOMEM, access_rw(fd, afd, IOVA, tmp, (16 << 20) + 1, 0));
	ASSERT_ERRNO(EOPNOTSUPP, access_rw(fd, afd, IOVA, tmp, 1, 2));
	ASSERT_ERRNO(EFAULT, access_rw(fd, afd, IOVA, NULL, 1, 0));
	ASSERT_EQ(0, uiommu_close(afd));
	memset(buf, 0x5a, 4 * PS);
	free(tmp);
	free(want);
}

TEST_F(access, rw_without_domain)
{
	rw_checks(_metadata, self->fd, self->ioas, false);
}

TEST_F(access, rw_with_domain)
{
	rw_checks(_metadata, self->fd, self->ioas, true);
}

TEST_F(access, rw_across_areas)
{
	char tmp[64], want[64];
	int afd;

	memset(want, 0x33, sizeof(want));
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA, buf, PS));
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA + PS, buf + 2 * PS, PS));
	ASSERT_EQ(0, create_access(self->fd, self->ioas, 0, &afd));
	ASSERT_EQ(0, access_rw(self->fd, afd, IOVA + PS - 32, want, 64, MOCK_ACCESS_RW_WRITE));
	ASSERT_EQ(0, memcmp(buf + PS - 32, want, 32));
	ASSERT_EQ(0, memcmp(buf + 2 * PS, want, 32));
	ASSERT_EQ(0x5a, buf[PS]);
	ASSERT_EQ(0, access_rw(self->fd, afd, IOVA + PS - 32, tmp, 64,
			       MOCK_ACCESS_RW_SLOW_PATH));
	ASSERT_EQ(0, memcmp(tmp, want, 64));
	ASSERT_EQ(0, uiommu_close(afd));
	memset(buf, 0x5a, 3 * PS);
}

TEST_F(access, replace_ioas)
{
	uint32_t ioas2 = ioas_alloc(self->fd), item;
	char c;
	int afd;

	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA, buf, PS));
	ASSERT_EQ(0, map_fixed(self->fd, ioas2, IOVA, buf + PS, PS));
	buf[PS] = 0x11;
	ASSERT_EQ(0, create_access(self->fd, self->ioas, PIN, &afd));
	ASSERT_EQ(0, access_pages(self->fd, afd, IOVA, PS, buf, 0, &item));
	ASSERT_ERRNO(ENOENT, access_replace(self->fd, afd, 999));
	ASSERT_EQ(0, access_replace(self->fd, afd, ioas2));
	/* The pins in the old IOAS went with it, and the old IOAS is free. */
	ASSERT_EQ(0, check_refs(self->fd, buf, PS, 0));
	ASSERT_ERRNO(ENOENT, destroy_pages(self->fd, afd, item));
	ASSERT_EQ(0, destroy(self->fd, self->ioas));
	ASSERT_ERRNO(EBUSY, destroy(self->fd, ioas2));
	ASSERT_EQ(0, access_rw(self->fd, afd, IOVA, &c, 1, 0));
	ASSERT_EQ(0x11, c);
	ASSERT_EQ(0, access_replace(self->fd, afd, ioas2));
	ASSERT_EQ(0, uiommu_close(afd));
	ASSERT_EQ(0, destroy(self->fd, ioas2));
	buf[PS] = 0x5a;
}

TEST_F(access, alignment)
{
	int afd, nopin;

	ASSERT_EQ(1, ioas_alignment(self->fd, self->ioas));
	ASSERT_EQ(0, create_access(self->fd, self->ioas, 0, &nopin));
	ASSERT_EQ(1, ioas_alignment(self->fd, self->ioas));
	ASSERT_EQ(0, create_access(self->fd, self->ioas, PIN, &afd));
	ASSERT_EQ(PS, ioas_alignment(self->fd, self->ioas));
	ASSERT_ERRNO(EINVAL, map_fixed(self->fd, self->ioas, IOVA + 1, buf + 1, PS));
	ASSERT_EQ(0, uiommu_close(afd));
	ASSERT_EQ(1, ioas_alignment(self->fd, self->ioas));
	/* An unaligned area keeps a pinning access out. */
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA + 1, buf + 1, PS));
	ASSERT_ERRNO(EADDRINUSE, create_access(self->fd, self->ioas, PIN, &afd));
	ASSERT_EQ(0, uiommu_close(nopin));
}

TEST_F(access, temp_memory_limit)
{
	ASSERT_ERRNO(EINVAL, memory_limit(self->fd, 11));
	ASSERT_EQ(0, memory_limit(self->fd, 12));
	ASSERT_EQ(0, memory_limit(self->fd, 65536));
}

/* Fail the Nth fallible step of ACCESS_PAGES: nothing may be left pinned or allocated. */
TEST_F(access, fail_nth_access_pages)
{
	unsigned long nth;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	for (nth = 1; nth < 1000; nth++) {
		struct uiommu_stats before, after;
		int fd = uiommu_open(O_RDWR), afd;
		uint32_t ioas = ioas_alloc(fd), item;
		unsigned long left;
		int rc;

		ASSERT_EQ(0, map_fixed(fd, ioas, IOVA, buf, BUF_LEN / 2));
		ASSERT_EQ(0, map_fixed(fd, ioas, IOVA + BUF_LEN / 2, buf + BUF_LEN / 2, BUF_LEN / 2));
		ASSERT_EQ(0, create_access(fd, ioas, PIN, &afd));
		ASSERT_EQ(0, uiommu_stats_get(&before));
		uiommu_fail_nth_arm(nth);
		rc = access_pages(fd, afd, IOVA + PS, BUF_LEN - 2 * PS, buf + PS, 0, &item);
		left = uiommu_fail_nth_disarm();
		if (left) {
			ASSERT_EQ(0, rc);
			ASSERT_EQ(0, check_refs(fd, buf + PS, BUF_LEN - 2 * PS, 1));
			uiommu_close(afd);
			uiommu_close(fd);
			break;
		}
		ASSERT_NE(0, rc);
		ASSERT_EQ(0, uiommu_stats_get(&after));
		ASSERT_EQ(before.objects, after.objects);
		ASSERT_EQ(before.allocations, after.allocations);
		ASSERT_EQ(before.pinned_pages, after.pinned_pages);
		ASSERT_EQ(0, check_refs(fd, buf, BUF_LEN, 0));
		ASSERT_ERRNO(ENOENT, destroy_pages(fd, afd, 0));
		uiommu_close(afd);
		uiommu_close(fd);
	}
	ASSERT_TRUE(nth > 1 && nth < 1000);
}

/*
 * The kernel takes any user address at MAP time (only uptr + length must not wrap): NULL and
 * non-canonical addresses are refused where the pages are pinned or copied, with EFAULT: at
 * MAP itself when a domain is attached, else at the first attach, ACCESS_PAGES or ACCESS_RW.
 */
TEST_F(access, map_of_unbacked_user_addresses)
{
	static const uint64_t bad[] = { 0, 0x8000000000000000ull, 0xffff800000000000ull - 0x10000 };
	const uint64_t len = 0x4000;
	unsigned int i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint32_t ioas = ioas_alloc(self->fd), stdev, ioas2;
		char out[16];
		int afd;

		ASSERT_NE(0u, ioas);
		ASSERT_EQ(0, map_fixed(self->fd, ioas, IOVA, (void *)(uintptr_t)bad[i], len));
		ASSERT_EQ(0, create_access(self->fd, ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES,
					   &afd));
		ASSERT_ERRNO(EFAULT, access_rw(self->fd, afd, IOVA, out, sizeof(out),
					       MOCK_ACCESS_RW_SLOW_PATH));
		ASSERT_ERRNO(EFAULT, access_rw(self->fd, afd, IOVA, out, sizeof(out), 0));
		ASSERT_ERRNO(EFAULT, access_pages(self->fd, afd, IOVA, len,
						  (void *)(uintptr_t)bad[i], 0, NULL));
		ASSERT_EQ(0, uiommu_close(afd));
		ASSERT_ERRNO(EFAULT, mock_domain(self->fd, ioas, &stdev, NULL, NULL));
		ASSERT_EQ(0, unmap(self->fd, ioas, IOVA, len));

		/* With a domain the pages are pinned at MAP: EFAULT there, nothing mapped. */
		ioas2 = ioas_alloc(self->fd);
		ASSERT_EQ(0, mock_domain(self->fd, ioas2, &stdev, NULL, NULL));
		ASSERT_ERRNO(EFAULT, map_fixed(self->fd, ioas2, IOVA,
					       (void *)(uintptr_t)bad[i], len));
		ASSERT_ERRNO(ENOENT, unmap(self->fd, ioas2, IOVA, len));
		ASSERT_EQ(0, destroy(self->fd, stdev));
		ASSERT_EQ(0, destroy(self->fd, ioas2));
		ASSERT_EQ(0, destroy(self->fd, ioas));
	}
	/* Only a range that wraps is refused at MAP. */
	ASSERT_ERRNO(EOVERFLOW, map_fixed(self->fd, self->ioas, IOVA,
					  (void *)(uintptr_t)(0ull - 0x1000), 0x2000));
}

TEST_HARNESS_MAIN
