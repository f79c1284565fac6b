// SPDX-License-Identifier: MIT
/*
 * The selftest's dma-buf through the ABI: DMABUF_GET (the new fd is the ioctl's return value),
 * DMABUF_REVOKE and its errnos, IOAS_MAP_FILE of a dma-buf (range checks, ENODEV while
 * revoked, re-mapping after un-revoke), HWPT allocation and attach with a revoked buffer
 * mapped, access objects kept away from a dma-buf, VFIO type1 (v1) refusing to split one, the
 * fd's lifetime against the mappings that use it, and a fault-injection sweep over DMABUF_GET
 * and MAP_FILE of a dma-buf. Each fixture runs without and with a mock domain. Written from
 * the ABI description; no kernel code is used.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "uiommu_test.h"
#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"
#include "uiommu/vfio_compat.h"

#define RW (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)
#define IOVA MOCK_APERTURE_START

static uint64_t PS;
static char *ubuf; /* 16 pages of user memory, faulted in */

static void __attribute__((constructor)) init_page_size(void)
{
	PS = (uint64_t)sysconf(_SC_PAGESIZE);
	ubuf = mmap(NULL, 16 * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ubuf == MAP_FAILED)
		abort();
	memset(ubuf, 0x3c, 16 * PS);
}

/* DMABUF_GET: the fd, or -1 with errno. */
static int dmabuf_get(int fd, uint32_t length, uint32_t open_flags)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_DMABUF_GET,
		.dmabuf_get = { .length = length, .open_flags = open_flags },
	};

	return ioc(fd, IOMMU_TEST_CMD, &cmd);
}

static int dmabuf_revoke(int fd, int dfd, bool revoked)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_DMABUF_REVOKE,
		.dmabuf_revoke = { .dmabuf_fd = dfd, .revoked = revoked },
	};

	return ioc(fd, IOMMU_TEST_CMD, &cmd);
}

static int map_file(int fd, uint32_t ioas, int dfd, uint64_t start, uint64_t len,
		    uint64_t *iova)
{
	struct iommu_ioas_map_file cmd = {
		.size = sizeof(cmd), .flags = RW, .ioas_id = ioas, .fd = dfd, .start = start,
		.length = len,
	};
	int rc = ioc(fd, IOMMU_IOAS_MAP_FILE, &cmd);

	if (!rc && iova)
		*iova = cmd.iova;
	return rc;
}

static int map_file_fixed(int fd, uint32_t ioas, int dfd, uint64_t start, uint64_t len,
			  uint64_t iova)
{
	struct iommu_ioas_map_file cmd = {
		.size = sizeof(cmd), .flags = RW | IOMMU_IOAS_MAP_FIXED_IOVA, .ioas_id = ioas,
		.fd = dfd, .start = start, .length = len, .iova = iova,
	};

	return ioc(fd, IOMMU_IOAS_MAP_FILE, &cmd);
}

static int map_user(int fd, uint32_t ioas, const void *va, uint64_t len, uint64_t *iova)
{
	struct iommu_ioas_map cmd = {
		.size = sizeof(cmd), .flags = RW, .ioas_id = ioas, .user_va = (uintptr_t)va,
		.length = len,
	};
	int rc = ioc(fd, IOMMU_IOAS_MAP, &cmd);

	if (!rc)
		*iova = cmd.iova;
	return rc;
}

/* UNMAP: the bytes unmapped, or -1 with errno. */
static int64_t unmap(int fd, uint32_t ioas, uint64_t iova, uint64_t len)
{
	struct iommu_ioas_unmap cmd = {
		.size = sizeof(cmd), .ioas_id = ioas, .iova = iova, .length = len,
	};

	if (ioc(fd, IOMMU_IOAS_UNMAP, &cmd))
		return -1;
	return (int64_t)cmd.length;
}

static int mock_domain(int fd, uint32_t pt, uint32_t *hwpt, uint32_t *idev)
{
	struct iommu_test_cmd cmd = { .size = sizeof(cmd), .op = IOMMU_TEST_OP_MOCK_DOMAIN,
				      .id = pt };
	int rc = ioc(fd, IOMMU_TEST_CMD, &cmd);

	if (!rc) {
		if (hwpt)
			*hwpt = cmd.mock_domain.out_hwpt_id;
		if (idev)
			*idev = cmd.mock_domain.out_idev_id;
	}
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

static int check_dmabuf(int fd, uint32_t hwpt, int dfd, uint64_t iova, uint64_t len,
			uint64_t offset)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_MD_CHECK_DMABUF, .id = hwpt,
		.check_dmabuf = { .dmabuf_fd = dfd, .iova = iova, .length = len, .offset = offset },
	};

	return ioc(fd, IOMMU_TEST_CMD, &cmd);
}

static int hwpt_alloc(int fd, uint32_t dev, uint32_t pt, uint32_t *out)
{
	struct iommu_hwpt_alloc cmd = { .size = sizeof(cmd), .dev_id = dev, .pt_id = pt };
	int rc = ioc(fd, IOMMU_HWPT_ALLOC, &cmd);

	if (!rc)
		*out = cmd.out_hwpt_id;
	return rc;
}

/* The lowest free fd number right now. */
static int next_fd(void)
{
	/*
	 * A number no fd has: one far above the others, not the lowest free one, which another
	 * thread of the process may take at any moment (seen in CI's TSan build, twice: EINVAL,
	 * an fd that is no dma-buf at the number this returned; likely ThreadSanitizer's own
	 * symbolizer, which opens files to match a suppressed report of liburcu's thread).
	 */
	int fd = 3900;

	while (fcntl(fd, F_GETFD) >= 0)
		fd++;
	return fd;
}

/*
 * The open fds that are the library's files: its memfds ("iommufd" behind every fd of ours,
 * "uiommu-dmabuf" behind each buffer). Counting these, not the lowest free number, keeps a
 * sanitizer's own fds (ThreadSanitizer's symbolizer pipes) out of a leak check.
 */
static int our_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d))) {
		char path[300], link[256];
		ssize_t len;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
		len = readlink(path, link, sizeof(link) - 1);
		if (len <= 0)
			continue;
		link[len] = 0;
		/* A file's fd and its peer are a socketpair (docs/processes.md); the server listens
		 * on one more socket, which stays. */
		if (!strncmp(link, "socket:[", 8) || !strncmp(link, "/memfd:uiommu-dmabuf", 20))
			n++;
	}
	closedir(d);
	return n;
}

FIXTURE(dmabuf) {
	long allocations; /* before the context was opened */
	int fd;
	uint32_t ioas;
	uint32_t hwpt; /* the mock domain's, or 0 */
	uint32_t idev;
};

FIXTURE_VARIANT(dmabuf) {
	bool mock_domain;
};

FIXTURE_VARIANT_ADD(dmabuf, no_domain) { .mock_domain = false };
FIXTURE_VARIANT_ADD(dmabuf, mock_domain) { .mock_domain = true };

FIXTURE_SETUP(dmabuf)
{
	struct uiommu_stats st;

	/* The first open makes the library's permanent tables; count from after it. */
	ASSERT_EQ(0, uiommu_close(uiommu_open(O_RDWR)));
	ASSERT_EQ(0, uiommu_stats_get(&st));
	self->allocations = st.allocations;
	self->fd = uiommu_open(O_RDWR);
	ASSERT_GE(self->fd, 0);
	self->ioas = ioas_alloc(self->fd);
	if (variant->mock_domain)
		ASSERT_EQ(0, mock_domain(self->fd, self->ioas, &self->hwpt, &self->idev));
}

FIXTURE_TEARDOWN(dmabuf)
{
	struct uiommu_stats st;

	uiommu_close(self->fd);
	/* Every test closes its dma-buf fds: nothing of ours may be left. */
	ASSERT_EQ(0, uiommu_stats_get(&st));
	ASSERT_EQ(0, st.objects);
	ASSERT_EQ(0, st.contexts);
	ASSERT_EQ(self->allocations, st.allocations);
}

/* DMABUF_GET: the length is rounded up to pages, 1 to 512 pages; the result is a real fd. */
TEST_F(dmabuf, get)
{
	uint64_t iova;
	int dfd;

	ASSERT_ERRNO(EINVAL, dmabuf_get(self->fd, 0, O_CLOEXEC));
	ASSERT_ERRNO(EINVAL, dmabuf_get(self->fd, 512 * PS + 1, O_CLOEXEC));

	/* Any free number: a sanitizer's thread may hold the lowest one for a moment. */
	dfd = dmabuf_get(self->fd, 512 * PS, O_CLOEXEC);
	ASSERT_GE(dfd, 0);
	ASSERT_TRUE(uiommu_is_fd(dfd));
	ASSERT_EQ(FD_CLOEXEC, fcntl(dfd, F_GETFD) & FD_CLOEXEC);
	ASSERT_EQ(0, map_file(self->fd, self->ioas, dfd, 0, 512 * PS, &iova));
	ASSERT_EQ(512 * PS, unmap(self->fd, self->ioas, iova, 512 * PS));
	ASSERT_EQ(0, uiommu_close(dfd));

	/* One byte is one page; no O_CLOEXEC, no close-on-exec. */
	dfd = dmabuf_get(self->fd, 1, 0);
	ASSERT_GE(dfd, 0);
	ASSERT_EQ(0, fcntl(dfd, F_GETFD) & FD_CLOEXEC);
	ASSERT_EQ(0, map_file(self->fd, self->ioas, dfd, 0, PS, &iova));
	ASSERT_ERRNO(EINVAL, map_file(self->fd, self->ioas, dfd, 0, PS + 1, NULL));
	ASSERT_EQ(PS, unmap(self->fd, self->ioas, iova, PS));
	/* A dma-buf fd takes no iommufd ioctls. */
	ASSERT_ERRNO(ENOTTY, ioc(dfd, IOMMU_IOAS_ALLOC, &(struct iommu_ioas_alloc){
		.size = sizeof(struct iommu_ioas_alloc) }));
	ASSERT_EQ(0, uiommu_close(dfd));
	ASSERT_FALSE(uiommu_is_fd(dfd));
}

/* DMABUF_REVOKE of anything that is not one of our dma-bufs: dma_buf_get()'s errnos. */
TEST_F(dmabuf, revoke_errors)
{
	int dfd, memfd, afd;
	struct iommu_test_cmd acc = {
		.size = sizeof(acc), .op = IOMMU_TEST_OP_CREATE_ACCESS, .id = self->ioas,
	};

	ASSERT_ERRNO(EBADF, dmabuf_revoke(self->fd, -1, true));
	ASSERT_ERRNO(EBADF, dmabuf_revoke(self->fd, next_fd(), true));
	memfd = memfd_create("not-a-dmabuf", MFD_CLOEXEC);
	ASSERT_GE(memfd, 0);
	ASSERT_ERRNO(EINVAL, dmabuf_revoke(self->fd, memfd, true));
	close(memfd);
	ASSERT_ERRNO(EINVAL, dmabuf_revoke(self->fd, self->fd, true));
	ASSERT_EQ(0, ioc(self->fd, IOMMU_TEST_CMD, &acc));
	afd = (int)acc.create_access.out_access_fd;
	ASSERT_ERRNO(EINVAL, dmabuf_revoke(self->fd, afd, true));
	ASSERT_EQ(0, uiommu_close(afd));

	/*
	 * A closed dma-buf is gone. Its number is one far above the process's others: another
	 * thread (a runtime's or the library's) may open an fd at any moment and takes the lowest
	 * free number, which a low closed number would be (seen once, in the TSan build: EINVAL,
	 * an fd that is no dma-buf at the number just closed).
	 */
	afd = dmabuf_get(self->fd, PS, O_CLOEXEC);
	ASSERT_GE(afd, 0);
	dfd = uiommu_dupfd(afd, 900, true);
	ASSERT_GE(dfd, 900);
	ASSERT_EQ(0, uiommu_close(afd));
	ASSERT_EQ(0, dmabuf_revoke(self->fd, dfd, true));
	ASSERT_EQ(0, dmabuf_revoke(self->fd, dfd, true));
	ASSERT_EQ(0, dmabuf_revoke(self->fd, dfd, false));
	ASSERT_EQ(0, uiommu_close(dfd));
	ASSERT_ERRNO(EBADF, dmabuf_revoke(self->fd, dfd, false));
}

/* The kernel selftest's dmabuf_simple, and the rest of MAP_FILE's range checks. */
TEST_F(dmabuf, map_simple)
{
	uint64_t len = 4 * PS, iova, iova2;
	int dfd = dmabuf_get(self->fd, len, O_CLOEXEC);

	ASSERT_GE(dfd, 0);
	ASSERT_ERRNO(EINVAL, map_file(self->fd, self->ioas, dfd, 0, 0, NULL));
	ASSERT_ERRNO(EINVAL, map_file(self->fd, self->ioas, dfd, len, len, NULL));
	ASSERT_ERRNO(EINVAL, map_file(self->fd, self->ioas, dfd, 0, len + 1, NULL));
	ASSERT_ERRNO(EINVAL, map_file(self->fd, self->ioas, dfd, PS, len, NULL));
	ASSERT_ERRNO(EOVERFLOW, map_file(self->fd, self->ioas, dfd, UINT64_MAX - PS + 1,
					 2 * PS, NULL));
	ASSERT_EQ(0, map_file(self->fd, self->ioas, dfd, 0, len, &iova));
	/* Sub-ranges of one buffer, side by side with user memory. */
	ASSERT_EQ(0, map_file(self->fd, self->ioas, dfd, PS, 2 * PS, &iova2));
	ASSERT_EQ(0, map_user(self->fd, self->ioas, ubuf, 4 * PS, &iova2));
	if (variant->mock_domain)
		ASSERT_EQ(0, check_map(self->fd, self->hwpt, iova2, ubuf, 4 * PS));
	ASSERT_EQ(0, uiommu_close(dfd));
}

/* MD_CHECK_DMABUF: the translation of a dma-buf's pages, and the op's errnos. */
TEST_F(dmabuf, check_dmabuf)
{
	uint64_t len = 16 * PS, iova, iova2;
	int dfd = dmabuf_get(self->fd, len, O_CLOEXEC), other = dmabuf_get(self->fd, len, 0);
	int memfd = memfd_create("not-a-dmabuf", MFD_CLOEXEC);

	ASSERT_GE(dfd, 0);
	ASSERT_GE(other, 0);
	ASSERT_GE(memfd, 0);
	ASSERT_EQ(0, map_file(self->fd, self->ioas, dfd, 4 * PS, 8 * PS, &iova));
	ASSERT_EQ(0, map_file(self->fd, self->ioas, dfd, 12 * PS, 2 * PS, &iova2));
	if (!variant->mock_domain) {
		/* No mock HWPT to check: the IOAS is no paging HWPT. */
		ASSERT_ERRNO(ENOENT, check_dmabuf(self->fd, self->ioas, dfd, iova, PS, 4 * PS));
		goto out;
	}
	ASSERT_EQ(0, check_dmabuf(self->fd, self->hwpt, dfd, iova, 8 * PS, 4 * PS));
	ASSERT_EQ(0, check_dmabuf(self->fd, self->hwpt, dfd, iova + 2 * PS, PS, 6 * PS));
	ASSERT_EQ(0, check_dmabuf(self->fd, self->hwpt, dfd, iova2, 2 * PS, 12 * PS));
	ASSERT_EQ(0, check_dmabuf(self->fd, self->hwpt, dfd, iova + 2048, 2048, 4 * PS + 2048));
	/* Another offset, another buffer, an IOVA not mapped. */
	ASSERT_ERRNO(EINVAL, check_dmabuf(self->fd, self->hwpt, dfd, iova, PS, 0));
	ASSERT_ERRNO(EINVAL, check_dmabuf(self->fd, self->hwpt, other, iova, PS, 4 * PS));
	ASSERT_ERRNO(EINVAL, check_dmabuf(self->fd, self->hwpt, dfd, iova2, PS, 4 * PS));
	ASSERT_ERRNO(EINVAL, check_dmabuf(self->fd, self->hwpt, dfd, IOVA + (1ull << 30), PS,
					  4 * PS));
	/* Alignment to the mock page, and the buffer's end. */
	ASSERT_ERRNO(EINVAL, check_dmabuf(self->fd, self->hwpt, dfd, iova + 1, PS, 4 * PS));
	ASSERT_ERRNO(EINVAL, check_dmabuf(self->fd, self->hwpt, dfd, iova, PS + 1, 4 * PS));
	ASSERT_ERRNO(EINVAL, check_dmabuf(self->fd, self->hwpt, dfd, iova, PS, 4 * PS + 1));
	ASSERT_ERRNO(EINVAL, check_dmabuf(self->fd, self->hwpt, dfd, iova2, 4 * PS, 14 * PS));
	/* The HWPT and the fd. */
	ASSERT_ERRNO(ENOENT, check_dmabuf(self->fd, self->ioas, dfd, iova, PS, 4 * PS));
	ASSERT_ERRNO(ENOENT, check_dmabuf(self->fd, 9999, dfd, iova, PS, 4 * PS));
	ASSERT_ERRNO(EINVAL, check_dmabuf(self->fd, self->hwpt, memfd, iova, PS, 4 * PS));
	ASSERT_ERRNO(EBADF, check_dmabuf(self->fd, self->hwpt, next_fd(), iova, PS, 4 * PS));
out:
	close(memfd);
	ASSERT_EQ(0, uiommu_close(other));
	ASSERT_EQ(0, uiommu_close(dfd));
}

/* The kernel selftest's dmabuf_revoke, and what a revoked buffer still allows. */
TEST_F(dmabuf, revoke)
{
	uint64_t len = 4 * PS, iova, iova2, uiova;
	uint32_t hwpt = 0, stdev2 = 0;
	int dfd = dmabuf_get(self->fd, len, O_CLOEXEC);

	ASSERT_GE(dfd, 0);
	ASSERT_EQ(0, map_file(self->fd, self->ioas, dfd, 0, len, &iova));
	ASSERT_EQ(0, map_user(self->fd, self->ioas, ubuf, 4 * PS, &uiova));
	if (variant->mock_domain)
		ASSERT_EQ(0, check_dmabuf(self->fd, self->hwpt, dfd, iova, len, 0));
	ASSERT_EQ(0, dmabuf_revoke(self->fd, dfd, true));
	/* Revoked: out of every domain at once; the user memory's mapping stays. */
	if (variant->mock_domain) {
		ASSERT_ERRNO(EINVAL, check_dmabuf(self->fd, self->hwpt, dfd, iova, len, 0));
		ASSERT_ERRNO(EINVAL, check_dmabuf(self->fd, self->hwpt, dfd, iova + len - PS, PS,
						  len - PS));
		ASSERT_EQ(0, check_map(self->fd, self->hwpt, uiova, ubuf, 4 * PS));
	}

	/* Page tables still come and go with the revoked buffer mapped; none maps it. */
	if (variant->mock_domain) {
		struct iommu_test_cmd md = { .size = sizeof(md), .op = IOMMU_TEST_OP_MOCK_DOMAIN };

		ASSERT_EQ(0, hwpt_alloc(self->fd, self->idev, self->ioas, &hwpt));
		md.id = hwpt;
		ASSERT_EQ(0, ioc(self->fd, IOMMU_TEST_CMD, &md));
		ASSERT_EQ(hwpt, md.mock_domain.out_hwpt_id);
		stdev2 = md.mock_domain.out_stdev_id;
		ASSERT_EQ(0, check_map(self->fd, hwpt, uiova, ubuf, 4 * PS));
		ASSERT_EQ(0, check_map(self->fd, self->hwpt, uiova, ubuf, 4 * PS));
		ASSERT_ERRNO(EINVAL, check_dmabuf(self->fd, hwpt, dfd, iova, PS, 0));
	}
	ASSERT_ERRNO(ENODEV, map_file(self->fd, self->ioas, dfd, 0, len, NULL));
	ASSERT_ERRNO(ENODEV, map_file(self->fd, self->ioas, dfd, PS, PS, NULL));
	/* The range checks come first. */
	ASSERT_ERRNO(EINVAL, map_file(self->fd, self->ioas, dfd, 0, 0, NULL));
	ASSERT_ERRNO(EINVAL, map_file(self->fd, self->ioas, dfd, 0, len + 1, NULL));

	ASSERT_EQ(0, dmabuf_revoke(self->fd, dfd, false));
	ASSERT_EQ(0, map_file(self->fd, self->ioas, dfd, 0, len, &iova2));
	ASSERT_NE(iova, iova2);
	/* Un-revoking lets new maps in; the mapping revoked before stays empty. */
	if (variant->mock_domain) {
		ASSERT_EQ(0, check_dmabuf(self->fd, self->hwpt, dfd, iova2, len, 0));
		ASSERT_EQ(0, check_dmabuf(self->fd, hwpt, dfd, iova2, len, 0));
		ASSERT_ERRNO(EINVAL, check_dmabuf(self->fd, self->hwpt, dfd, iova, PS, 0));
	}

	/* The old mapping was kept: unmap it and map again at its IOVA. */
	ASSERT_ERRNO(EEXIST, map_file_fixed(self->fd, self->ioas, dfd, 0, len, iova));
	ASSERT_EQ(len, unmap(self->fd, self->ioas, iova, len));
	ASSERT_EQ(0, map_file_fixed(self->fd, self->ioas, dfd, 0, len, iova));
	if (variant->mock_domain)
		ASSERT_EQ(0, check_dmabuf(self->fd, hwpt, dfd, iova, len, 0));

	/* Revoked again, a fixed map fails with nothing left behind. */
	ASSERT_EQ(0, dmabuf_revoke(self->fd, dfd, true));
	if (variant->mock_domain) {
		ASSERT_ERRNO(EINVAL, check_dmabuf(self->fd, hwpt, dfd, iova, PS, 0));
		ASSERT_ERRNO(EINVAL, check_dmabuf(self->fd, self->hwpt, dfd, iova2, PS, 0));
		/* A domain that leaves after the revoke has nothing of the buffer to unmap. */
		ASSERT_EQ(0, destroy(self->fd, stdev2));
		ASSERT_EQ(0, destroy(self->fd, hwpt));
		ASSERT_EQ(0, check_map(self->fd, self->hwpt, uiova, ubuf, 4 * PS));
	}
	ASSERT_EQ(len, unmap(self->fd, self->ioas, iova, len));
	ASSERT_ERRNO(ENODEV, map_file_fixed(self->fd, self->ioas, dfd, 0, len, iova));
	ASSERT_ERRNO(ENOENT, (int)unmap(self->fd, self->ioas, iova, len));
	ASSERT_EQ(0, uiommu_close(dfd));
}

/* Access objects never reach a dma-buf's memory (EINVAL), as in the kernel. */
TEST_F(dmabuf, no_access)
{
	struct iommu_test_cmd acc = {
		.size = sizeof(acc), .op = IOMMU_TEST_OP_CREATE_ACCESS, .id = self->ioas,
		.create_access = { .flags = MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES },
	};
	char data[16] = { 0 };
	uint64_t iova;
	int dfd = dmabuf_get(self->fd, 4 * PS, O_CLOEXEC), afd;

	ASSERT_GE(dfd, 0);
	ASSERT_EQ(0, map_file(self->fd, self->ioas, dfd, 0, 4 * PS, &iova));
	ASSERT_EQ(0, ioc(self->fd, IOMMU_TEST_CMD, &acc));
	afd = (int)acc.create_access.out_access_fd;
	{
		struct iommu_test_cmd rw = {
			.size = sizeof(rw), .op = IOMMU_TEST_OP_ACCESS_RW, .id = (uint32_t)afd,
			.access_rw = { .iova = iova, .length = sizeof(data),
				       .uptr = (uintptr_t)data },
		};
		struct iommu_test_cmd pages = {
			.size = sizeof(pages), .op = IOMMU_TEST_OP_ACCESS_PAGES,
			.id = (uint32_t)afd,
			.access_pages = { .iova = iova, .length = PS, .uptr = (uintptr_t)ubuf },
		};

		ASSERT_ERRNO(EINVAL, ioc(self->fd, IOMMU_TEST_CMD, &rw));
		ASSERT_ERRNO(EINVAL, ioc(self->fd, IOMMU_TEST_CMD, &pages));
	}
	/* Unmap is not held up by the access. */
	ASSERT_EQ(4 * PS, unmap(self->fd, self->ioas, iova, 4 * PS));
	ASSERT_EQ(0, uiommu_close(afd));
	ASSERT_EQ(0, uiommu_close(dfd));
}

/*
 * The fd and the buffer: closing the fd while a mapping uses the buffer leaves the mapping
 * (it still unmaps, and a domain keeps it); the buffer goes with the last mapping; an fd
 * closed with nothing mapped frees everything at once.
 */
TEST_F(dmabuf, fd_lifetime)
{
	struct uiommu_stats before, st;
	uint64_t iova, iova2;
	volatile uint32_t hwpt2 = 0;
	int dfd;

	ASSERT_EQ(0, uiommu_stats_get(&before));
	dfd = dmabuf_get(self->fd, 8 * PS, O_CLOEXEC);
	ASSERT_GE(dfd, 0);
	ASSERT_EQ(0, uiommu_close(dfd));
	ASSERT_EQ(0, uiommu_stats_get(&st));
	ASSERT_EQ(before.allocations, st.allocations);
	ASSERT_FALSE(uiommu_is_fd(dfd));
	/*
	 * The closed number maps nothing. Another thread (a sanitizer's symbolizer pipe) may have
	 * been given the number meanwhile: then it is a foreign file, refused all the same.
	 */
	ASSERT_EQ(-1, map_file(self->fd, self->ioas, dfd, 0, PS, NULL));
	if (errno != EBADF)
		ASSERT_NE(-1, fcntl(dfd, F_GETFD));

	dfd = dmabuf_get(self->fd, 8 * PS, O_CLOEXEC);
	ASSERT_GE(dfd, 0);
	ASSERT_EQ(0, map_file(self->fd, self->ioas, dfd, 0, 8 * PS, &iova));
	ASSERT_EQ(0, map_file(self->fd, self->ioas, dfd, 2 * PS, 2 * PS, &iova2));
	ASSERT_EQ(0, uiommu_close(dfd));
	ASSERT_FALSE(uiommu_is_fd(dfd));
	/* The buffer behind the mappings lives on: a new domain still fills from it. */
	if (variant->mock_domain)
		ASSERT_EQ(0, hwpt_alloc(self->fd, self->idev, self->ioas, (uint32_t *)&hwpt2));
	ASSERT_EQ(8 * PS, unmap(self->fd, self->ioas, iova, 8 * PS));
	ASSERT_EQ(2 * PS, unmap(self->fd, self->ioas, iova2, 2 * PS));
	if (variant->mock_domain)
		ASSERT_EQ(0, destroy(self->fd, hwpt2));
	ASSERT_EQ(0, uiommu_stats_get(&st));
	/* A mock domain keeps the table levels it grew; the teardown checks the rest. */
	if (!variant->mock_domain)
		ASSERT_EQ(before.allocations, st.allocations);
	ASSERT_EQ(before.objects, st.objects);

	/*
	 * The iommufd may be closed first; the dma-buf fd, made by its ioctl, keeps the
	 * context until it closes too, and the mapping goes with it.
	 */
	dfd = dmabuf_get(self->fd, PS, O_CLOEXEC);
	ASSERT_GE(dfd, 0);
	ASSERT_EQ(0, map_file(self->fd, self->ioas, dfd, 0, PS, &iova));
	ASSERT_EQ(0, uiommu_close(self->fd));
	self->fd = uiommu_open(O_RDWR);
	ASSERT_GE(self->fd, 0);
	ASSERT_EQ(0, dmabuf_revoke(self->fd, dfd, true));
	ASSERT_EQ(0, uiommu_close(dfd));
}

/* A compat IOAS in type1 (v1) mode cuts areas on unmap, but never a dma-buf's. */
TEST_F(dmabuf, vfio_v1_no_split)
{
	struct iommu_vfio_ioas vi = {
		.size = sizeof(vi), .op = IOMMU_VFIO_IOAS_SET, .ioas_id = self->ioas,
	};
	struct vfio_iommu_type1_dma_unmap u = { .argsz = sizeof(u) };
	uint64_t iova;
	int dfd;

	ASSERT_EQ(0, ioc(self->fd, IOMMU_VFIO_IOAS, &vi));
	ASSERT_EQ(0, uiommu_ioctl(self->fd, VFIO_SET_IOMMU, (void *)(uintptr_t)VFIO_TYPE1_IOMMU));
	dfd = dmabuf_get(self->fd, 4 * PS, O_CLOEXEC);
	ASSERT_GE(dfd, 0);
	ASSERT_EQ(0, map_file(self->fd, self->ioas, dfd, 0, 4 * PS, &iova));
	u.iova = iova + PS;
	u.size = PS;
	ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, VFIO_IOMMU_UNMAP_DMA, &u));
	u.iova = iova;
	u.size = 4 * PS;
	ASSERT_EQ(0, ioc(self->fd, VFIO_IOMMU_UNMAP_DMA, &u));
	ASSERT_EQ(4 * PS, u.size);
	ASSERT_EQ(0, uiommu_close(dfd));
}

/* Fail each fallible step of DMABUF_GET in turn: no fd, no allocation may be left. */
TEST_F(dmabuf, fail_nth_get)
{
	unsigned long nth;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	for (nth = 1; nth < 1000; nth++) {
		struct uiommu_stats before, after;
		int fds = our_fds(), dfd;
		unsigned long left;

		ASSERT_GE(fds, 1); /* the context's own */
		ASSERT_EQ(0, uiommu_stats_get(&before));
		uiommu_fail_nth_arm(nth);
		dfd = dmabuf_get(self->fd, 4 * PS, O_CLOEXEC);
		left = uiommu_fail_nth_disarm();
		if (left) {
			ASSERT_GE(dfd, 0);
			ASSERT_TRUE(uiommu_is_fd(dfd));
			ASSERT_EQ(0, uiommu_close(dfd));
			break;
		}
		ASSERT_EQ(-1, dfd);
		ASSERT_EQ(fds, our_fds());
		ASSERT_EQ(0, uiommu_stats_get(&after));
		ASSERT_EQ(before.allocations, after.allocations);
		ASSERT_EQ(before.objects, after.objects);
	}
	ASSERT_TRUE(nth > 1 && nth < 1000);
}

/* Fail each fallible step of MAP_FILE of a dma-buf: the IOAS and the buffer are unchanged. */
TEST_F(dmabuf, fail_nth_map)
{
	unsigned long nth;
	int dfd;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	dfd = dmabuf_get(self->fd, 4 * PS, O_CLOEXEC);
	ASSERT_GE(dfd, 0);
	/* Once first, so that a domain's table levels for the IOVA exist before the sweep. */
	ASSERT_EQ(0, map_file_fixed(self->fd, self->ioas, dfd, PS, 2 * PS, IOVA));
	ASSERT_EQ(2 * PS, unmap(self->fd, self->ioas, IOVA, 2 * PS));
	for (nth = 1; nth < 1000; nth++) {
		struct uiommu_stats before, after;
		unsigned long left;
		int rc;

		ASSERT_EQ(0, uiommu_stats_get(&before));
		uiommu_fail_nth_arm(nth);
		rc = map_file_fixed(self->fd, self->ioas, dfd, PS, 2 * PS, IOVA);
		left = uiommu_fail_nth_disarm();
		if (left) {
			ASSERT_EQ(0, rc);
			ASSERT_EQ(2 * PS, unmap(self->fd, self->ioas, IOVA, 2 * PS));
			break;
		}
		ASSERT_NE(0, rc);
		/* Nothing was mapped: unmapping everything finds nothing. */
		ASSERT_EQ(0, unmap(self->fd, self->ioas, 0, UINT64_MAX));
		ASSERT_EQ(0, uiommu_stats_get(&after));
		ASSERT_EQ(before.allocations, after.allocations);
		ASSERT_EQ(before.objects, after.objects);
	}
	ASSERT_TRUE(nth > 1 && nth < 1000);
	/* The buffer is intact: revoke and close still work. */
	ASSERT_EQ(0, dmabuf_revoke(self->fd, dfd, true));
	ASSERT_EQ(0, uiommu_close(dfd));
}

TEST_HARNESS_MAIN
