// SPDX-License-Identifier: MIT
/*
 * The drop-in path. This program runs under uiommu-run (meson runs it so) and reaches
 * /dev/iommu only through libc: open/openat/open64, ioctl, dup/dup2/dup3/fcntl, mmap, munmap,
 * close. It links libuiommu only to read its counters, which are the same instance the preload
 * layer uses.
 */
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#define TEST_IOCTL ioctl /* through libc: the preload path */
#include "uiommu_test.h"
#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"

int __open_2(const char *path, int flags);

static long live_contexts(void)
{
	struct uiommu_stats st;

	uiommu_stats_get(&st);
	return st.contexts;
}

TEST(preloaded)
{
	/* Guard: without the preload this whole file tests nothing. */
	ASSERT_TRUE(getenv("LD_PRELOAD") && strstr(getenv("LD_PRELOAD"), "uiommu"));
}

TEST(every_open_entry_point)
{
	int fds[5], i;

	fds[0] = open("/dev/iommu", O_RDWR);
	fds[1] = openat(AT_FDCWD, "/dev/iommu", O_RDWR | O_CLOEXEC);
	fds[2] = open64("/dev/iommu", O_RDWR);
	fds[3] = __open_2("/dev/iommu", O_RDWR);
	fds[4] = (int)syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY); /* not ours */
	for (i = 0; i < 4; i++) {
		ASSERT_TRUE(fds[i] >= 0);
		ASSERT_TRUE(uiommu_is_fd(fds[i]));
		/* Each open is its own context: IDs start at 1 in each. */
		ASSERT_EQ(1, ioas_alloc(fds[i]));
	}
	ASSERT_EQ(FD_CLOEXEC, fcntl(fds[1], F_GETFD) & FD_CLOEXEC);
	ASSERT_EQ(0, fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
	ASSERT_EQ(4, live_contexts());
	for (i = 0; i < 4; i++)
		ASSERT_EQ(0, close(fds[i]));
	ASSERT_EQ(0, live_contexts());
	/*
	 * A closed iommufd is no longer ours, and EBADF like any closed fd, unless something else in
	 * the process (a sanitizer's runtime, say) has been given the number meanwhile.
	 */
	ASSERT_FALSE(uiommu_is_fd(fds[0]));
	if (fcntl(fds[0], F_GETFD) < 0)
		ASSERT_ERRNO(EBADF, ioctl(fds[0], IOMMU_IOAS_ALLOC, NULL));
	ASSERT_EQ(0, close(fds[4]));
}

TEST(foreign_fds_pass_through)
{
	int fd = open("/dev/null", O_RDWR);
	int n = -1, dupfd;

	ASSERT_TRUE(fd >= 0);
	ASSERT_FALSE(uiommu_is_fd(fd));
	/* A real ioctl on a real device: /dev/null has no FIONREAD. */
	ASSERT_ERRNO(ENOTTY, ioctl(fd, FIONREAD, &n));
	/* Not even an iommufd number reaches the library on a foreign fd. */
	ASSERT_ERRNO(ENOTTY, ioctl(fd, IOMMU_IOAS_ALLOC, NULL));
	dupfd = dup(fd);
	ASSERT_TRUE(dupfd >= 0);
	ASSERT_FALSE(uiommu_is_fd(dupfd));
	ASSERT_EQ(0, close(dupfd));
	ASSERT_EQ(0, close(fd));
	ASSERT_ERRNO(ENOENT, open("/dev/iommu-not", O_RDWR));
}

TEST(dups_share_the_context)
{
	int fd = open("/dev/iommu", O_RDWR);
	int d1, d2, d3, d4;
	uint32_t id;

	ASSERT_TRUE(fd >= 0);
	id = ioas_alloc(fd);
	ASSERT_EQ(1, id);
	d1 = dup(fd);
	d2 = fcntl(fd, F_DUPFD_CLOEXEC, 100);
	d3 = dup3(fd, 200, O_CLOEXEC);
	d4 = 201;
	ASSERT_EQ(201, dup2(fd, d4));
	ASSERT_TRUE(d1 >= 0);
	ASSERT_TRUE(d2 >= 100);
	ASSERT_EQ(200, d3);
	ASSERT_EQ(FD_CLOEXEC, fcntl(d2, F_GETFD) & FD_CLOEXEC);
	/* Objects made through one fd are seen through the others. */
	ASSERT_EQ(2, ioas_alloc(d1));
	ASSERT_EQ(0, destroy(d2, 1));
	ASSERT_EQ(1, ioas_alloc(d3));
	ASSERT_EQ(1, live_contexts());
	/* The context lives until the last fd that refers to it is closed. */
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, close(d1));
	ASSERT_EQ(0, close(d2));
	ASSERT_EQ(0, close(d3));
	ASSERT_EQ(1, live_contexts());
	ASSERT_EQ(0, destroy(d4, 2));
	ASSERT_EQ(0, close(d4));
	ASSERT_EQ(0, live_contexts());
}

TEST(dup2_over_an_iommufd_releases_it)
{
	int fd = open("/dev/iommu", O_RDWR);
	int other = open("/dev/null", O_RDONLY);

	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(1, live_contexts());
	/* Another file put on the iommufd's number: that was its last fd. */
	ASSERT_EQ(fd, dup2(other, fd));
	ASSERT_FALSE(uiommu_is_fd(fd));
	ASSERT_EQ(0, live_contexts());
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, close(other));
}

TEST(fork_gives_the_child_a_copy)
{
	int fd;
	int status;
	pid_t pid;

#if defined(__SANITIZE_THREAD__)
	/* TSan cannot follow liburcu re-creating its helper thread in a forked child. */
	SKIP("fork of a multi-threaded process under ThreadSanitizer");
#endif
	fd = open("/dev/iommu", O_RDWR);
	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(1, ioas_alloc(fd));
	pid = fork();
	ASSERT_TRUE(pid >= 0);
	if (pid == 0) {
		/* The child sees the parent's objects as of the fork, and changes only its copy. */
		int ok = ioas_alloc(fd) == 2 && destroy(fd, 1) == 0 && close(fd) == 0;

		_exit(ok ? 0 : 1);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	/* The parent still has IOAS 1, and its next ID is 2. */
	ASSERT_EQ(2, ioas_alloc(fd));
	ASSERT_EQ(0, destroy(fd, 1));
	ASSERT_EQ(0, close(fd));
}

TEST(bad_argument_pointer_is_efault)
{
	int fd = open("/dev/iommu", O_RDWR);
	void *hole = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ASSERT_TRUE(fd >= 0);
	ASSERT_TRUE(hole != MAP_FAILED && ro != MAP_FAILED);
	ASSERT_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_ALLOC, NULL));
	ASSERT_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_ALLOC, hole));
	ASSERT_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_ALLOC, (void *)~0ul));
	/* Readable but not writable: the reply cannot be written, and no IOAS is left behind. */
	ASSERT_EQ(0, mprotect(ro, 4096, PROT_READ | PROT_WRITE));
	*(uint32_t *)ro = sizeof(struct iommu_ioas_alloc);
	ASSERT_EQ(0, mprotect(ro, 4096, PROT_READ));
	ASSERT_ERRNO(EFAULT, ioctl(fd, IOMMU_IOAS_ALLOC, ro));
	ASSERT_EQ(1, ioas_alloc(fd));
	ASSERT_EQ(0, close(fd));
}

/* mmap(2) of the iommufd fd reaches the library, and munmap(2) lets the vIOMMU go. */
TEST(mmap_of_the_viommu_region)
{
	struct iommu_test_cmd md = { .size = sizeof(md), .op = IOMMU_TEST_OP_MOCK_DOMAIN };
	struct iommu_hwpt_alloc hwpt = { .size = sizeof(hwpt),
					 .flags = IOMMU_HWPT_ALLOC_NEST_PARENT };
	struct iommu_viommu_selftest data = { .in_data = 0xabcd };
	struct iommu_viommu_alloc va = { .size = sizeof(va), .type = IOMMU_VIOMMU_TYPE_SELFTEST,
					 .data_len = sizeof(data),
					 .data_uptr = (uintptr_t)&data };
	int fd = open("/dev/iommu", O_RDWR);
	uint32_t *p;

	ASSERT_GE(fd, 0);
	md.id = ioas_alloc(fd);
	ASSERT_EQ(0, ioctl(fd, IOMMU_TEST_CMD, &md));
	hwpt.dev_id = md.mock_domain.out_idev_id;
	hwpt.pt_id = md.id;
	ASSERT_EQ(0, ioctl(fd, IOMMU_HWPT_ALLOC, &hwpt));
	va.dev_id = md.mock_domain.out_idev_id;
	va.hwpt_id = hwpt.out_hwpt_id;
	ASSERT_EQ(0, ioctl(fd, IOMMU_VIOMMU_ALLOC, &va));
	errno = 0;
	ASSERT_EQ(MAP_FAILED, mmap(NULL, data.out_mmap_length, PROT_READ, MAP_PRIVATE, fd,
				   (off_t)data.out_mmap_offset));
	ASSERT_EQ(EINVAL, errno);
	p = mmap(NULL, data.out_mmap_length, PROT_READ, MAP_SHARED, fd,
		 (off_t)data.out_mmap_offset);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(0xabcdu, p[0]);
	ASSERT_NE(0, destroy(fd, va.out_viommu_id));
	ASSERT_EQ(EBUSY, errno);
	ASSERT_EQ(0, munmap(p, data.out_mmap_length));
	ASSERT_EQ(0, destroy(fd, va.out_viommu_id));
	ASSERT_EQ(0, close(fd));
}

TEST_HARNESS_MAIN
