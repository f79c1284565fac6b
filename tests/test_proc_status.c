// SPDX-License-Identifier: MIT
/*
 * /proc/<pid>/status under uiommu-run: VmPin counts the pages uiommu pins for this process
 * (VmLck those the mm mode charges), through every name of the process's own file, by open
 * and read and by fopen; every other line, and every other process's file, is the host's.
 * Runs under uiommu-run: /dev/iommu and the status file are reached through plain libc calls.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "harness.h"
#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"

#define IOVA (1ull << 24)
#define NPAGES 8

static long page_size(void)
{
	return sysconf(_SC_PAGESIZE);
}

/* Reads all of @fd (closing it) into @out; 0 for an fd that could not be opened. */
static size_t fd_read_all(int fd, char *out, size_t len)
{
	size_t n = 0;
	ssize_t got;

	if (fd < 0)
		return 0;
	while (n + 1 < len && (got = read(fd, out + n, len - n - 1)) > 0)
		n += (size_t)got;
	out[n] = '\0';
	close(fd);
	return n;
}

/* The host's own file, read with the system call so that nothing of ours is in the way. */
static size_t host_status(const char *path, char *out, size_t len)
{
	int fd = (int)syscall(SYS_openat, (long)AT_FDCWD, path, (long)(O_RDONLY | O_CLOEXEC));

	return fd_read_all(fd, out, len);
}

/* The kB value of @tag in @text, or -1 when the line is missing. */
static long status_value(const char *text, const char *tag)
{
	const char *p = text;
	size_t taglen = strlen(tag);

	for (; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, tag, taglen))
			return strtol(p + taglen, NULL, 10);
	return -1;
}

/* Reads @path with open and read (through the preload layer). */
static size_t status_read(const char *path, char *out, size_t len)
{
	return fd_read_all(open(path, O_RDONLY | O_CLOEXEC), out, len);
}

/* The same with fopen, as the kernel selftest reads it. */
static long status_fopen_value(const char *path, const char *mode, const char *tag)
{
	char line[256];
	long v = -1;
	FILE *f = fopen(path, mode);

	if (!f)
		return -2;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, tag, strlen(tag)))
			v = strtol(line + strlen(tag), NULL, 10);
	fclose(f);
	return v;
}

FIXTURE(proc_status)
{
	int fd;
	uint32_t ioas;
	char *mem;
	char paths[5][96];
};

FIXTURE_SETUP(proc_status)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct iommu_test_cmd mock = { .size = sizeof(mock), .op = IOMMU_TEST_OP_MOCK_DOMAIN };
	int pid = getpid(), tid = (int)syscall(SYS_gettid);

	self->fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	ASSERT_GE(self->fd, 0);
	ASSERT_EQ(0, ioctl(self->fd, IOMMU_IOAS_ALLOC, &alloc));
	self->ioas = alloc.out_ioas_id;
	mock.id = self->ioas;
	ASSERT_EQ(0, ioctl(self->fd, IOMMU_TEST_CMD, &mock));
	self->mem = mmap(NULL, NPAGES * page_size(), PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(self->mem != MAP_FAILED);
	memset(self->mem, 1, NPAGES * page_size());
	snprintf(self->paths[0], sizeof(self->paths[0]), "/proc/self/status");
	snprintf(self->paths[1], sizeof(self->paths[1]), "/proc/%d/status", pid);
	snprintf(self->paths[2], sizeof(self->paths[2]), "/proc/thread-self/status");
	snprintf(self->paths[3], sizeof(self->paths[3]), "/proc/self/task/%d/status", tid);
	snprintf(self->paths[4], sizeof(self->paths[4]), "/proc/%d/task/%d/status", pid, tid);
}

FIXTURE_TEARDOWN(proc_status)
{
	close(self->fd);
}

static int map_pages(int fd, uint32_t ioas, void *va, uint64_t len)
{
	struct iommu_ioas_map cmd = {
		.size = sizeof(cmd), .ioas_id = ioas, .user_va = (uintptr_t)va, .length = len,
		.iova = IOVA,
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
	};

	return ioctl(fd, IOMMU_IOAS_MAP, &cmd);
}

static int unmap_all(int fd, uint32_t ioas)
{
	struct iommu_ioas_unmap cmd = { .size = sizeof(cmd), .ioas_id = ioas, .length = UINT64_MAX };

	return ioctl(fd, IOMMU_IOAS_UNMAP, &cmd);
}

/* Every name of our own status file shows the pins, by read and by fopen; unmap clears them. */
TEST_F(proc_status, vmpin_follows_pins)
{
	static char text[16384], host[16384];
	long kb = NPAGES * page_size() / 1024;
	unsigned int i;

	ASSERT_EQ(0, map_pages(self->fd, self->ioas, self->mem, NPAGES * page_size()));
	for (i = 0; i != 5; i++) {
		ASSERT_GT(host_status(self->paths[i], host, sizeof(host)), 0);
		ASSERT_GT(status_read(self->paths[i], text, sizeof(text)), 0);
		ASSERT_EQ(status_value(host, "VmPin:") + kb, status_value(text, "VmPin:"));
		ASSERT_EQ(status_value(host, "VmPin:") + kb,
			  status_fopen_value(self->paths[i], "r", "VmPin:"));
		ASSERT_EQ(status_value(host, "VmPin:") + kb,
			  status_fopen_value(self->paths[i], "re", "VmPin:"));
	}
	ASSERT_EQ(0, unmap_all(self->fd, self->ioas));
	for (i = 0; i != 5; i++) {
		ASSERT_GT(host_status(self->paths[i], host, sizeof(host)), 0);
		ASSERT_GT(status_read(self->paths[i], text, sizeof(text)), 0);
		ASSERT_EQ(status_value(host, "VmPin:"), status_value(text, "VmPin:"));
	}
}

/* The line format is the kernel's: a tab, the value right-aligned in 8, " kB". */
TEST_F(proc_status, vmpin_line_format)
{
	static char text[16384];
	char want[64];
	long kb = NPAGES * page_size() / 1024;

	ASSERT_EQ(0, map_pages(self->fd, self->ioas, self->mem, NPAGES * page_size()));
	ASSERT_GT(status_read("/proc/self/status", text, sizeof(text)), 0);
	snprintf(want, sizeof(want), "\nVmPin:\t%8ld kB\n", kb);
	ASSERT_TRUE(strstr(text, want) != NULL);
	/* Right after VmLck, as the kernel orders them. */
	ASSERT_TRUE(strstr(text, "kB\nVmPin:") != NULL);
	ASSERT_TRUE(strstr(strstr(text, "\nVmLck:") + 1, "\n") == strstr(text, "\nVmPin:"));
}

/* Every other line is the host's, in the host's order. */
TEST_F(proc_status, other_lines_are_the_hosts)
{
	static char text[16384], host[16384];
	const char *a = text, *b = host;

	ASSERT_EQ(0, map_pages(self->fd, self->ioas, self->mem, NPAGES * page_size()));
	ASSERT_GT(status_read("/proc/self/status", text, sizeof(text)), 0);
	ASSERT_GT(host_status("/proc/self/status", host, sizeof(host)), 0);
	/* The tags (up to the colon) match line by line; Name/State/Uid lines match whole. */
	while (*a && *b) {
		const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');

		ASSERT_TRUE(ea && eb);
		ASSERT_EQ(strcspn(a, ":"), strcspn(b, ":"));
		ASSERT_EQ(0, strncmp(a, b, strcspn(a, ":")));
		if (!strncmp(a, "Name:", 5) || !strncmp(a, "Uid:", 4) || !strncmp(a, "Pid:", 4))
			ASSERT_EQ(0, strncmp(a, b, (size_t)(ea - a + 1)));
		a = ea + 1;
		b = eb + 1;
	}
	ASSERT_EQ(*a, *b);
}

/* Another process's file is not ours to change; opens for writing get the host's answer. */
TEST_F(proc_status, foreign_and_writable_opens_are_the_hosts)
{
	static char text[16384], host[16384];
	char parent[64];
	int fd, host_errno;

	ASSERT_EQ(0, map_pages(self->fd, self->ioas, self->mem, NPAGES * page_size()));
	snprintf(parent, sizeof(parent), "/proc/%d/status", (int)getppid());
	ASSERT_FALSE(uiommu_proc_status_claims(parent));
	ASSERT_GT(status_read(parent, text, sizeof(text)), 0);
	ASSERT_GT(host_status(parent, host, sizeof(host)), 0);
	ASSERT_EQ(status_value(host, "VmPin:"), status_value(text, "VmPin:"));

	fd = (int)syscall(SYS_openat, (long)AT_FDCWD, "/proc/self/status", (long)O_WRONLY);
	host_errno = fd < 0 ? errno : 0;
	if (fd >= 0)
		close(fd);
	fd = open("/proc/self/status", O_WRONLY);
	ASSERT_EQ(host_errno ? -1 : 0, fd < 0 ? -1 : 0);
	if (fd >= 0)
		close(fd);
	else
		ASSERT_EQ(host_errno, errno);

	/* Our fd is read-only, as the kernel's is. */
	fd = open("/proc/self/status", O_RDONLY);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(-1, write(fd, "x", 1));
	ASSERT_EQ(EBADF, errno);
	close(fd);
	ASSERT_ERRNO(ENOENT, open("/proc/self/task/999999999/status", O_RDONLY));
}

static int fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n++;
	closedir(d);
	return n;
}

/* Each fallible step of serving the file fails in turn: ENOMEM, no fd left behind. */
TEST_F(proc_status, fail_nth_leaves_no_fd)
{
	unsigned long nth, failures = 0;
	int before = fd_count(), fd = -1;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	for (nth = 1; nth < 100; nth++) {
		unsigned long left;

		uiommu_fail_nth_arm(nth);
		fd = uiommu_proc_status_open("/proc/self/status", O_RDONLY | O_CLOEXEC);
		left = uiommu_fail_nth_disarm();
		if (fd >= 0 && left)
			break;
		if (fd >= 0) {
			close(fd);
			fd = -1;
		} else {
			ASSERT_EQ(ENOMEM, errno);
			failures++;
		}
		ASSERT_EQ(before, fd_count());
	}
	ASSERT_GE(fd, 0);
	ASSERT_GT(failures, 0);
	close(fd);
	ASSERT_EQ(before, fd_count());
}

TEST_HARNESS_MAIN
