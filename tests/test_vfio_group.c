// SPDX-License-Identifier: MIT
/*
 * The legacy VFIO interface, under uiommu-run: /dev/vfio/vfio as an iommufd container,
 * /dev/vfio/<G> with GET_STATUS, SET_CONTAINER, UNSET_CONTAINER and GET_DEVICE_FD, the type1
 * map and unmap through the container, and the function's DMA going through the container's
 * IOAS; every errno the kernel gives on the way; KVM's VFIO device told of our fds.
 *
 * Every case is a fresh child that loads this file's machine at its first look:
 *   0000:07:00.0  a dma-test function alone in its group (group A)
 *   0000:08:00.0, 0000:08:00.1  both vfio-pci's, in group "g"
 *   0000:0a:00.0  vfio-pci's, in group "h" with 0000:0a:00.1, which the DMA-API driver holds
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "harness.h"
#include "machine/models/dma-test.h"
#include "vfio_utils.h"
#include "uiommu/iommufd.h"
#include "uiommu/uiommu.h"
#include "uiommu/vfio_compat.h"

#define DEV(bdf) "/sys/bus/pci/devices/" bdf

static const char topology[] =
	"{ \"iommus\": [ { \"name\": \"iommu0\" } ],\n"
	"  \"devices\": [\n"
	"    { \"bdf\": \"0000:07:00.0\", \"iommu\": \"iommu0\", \"model\": \"dma-test\" },\n"
	"    { \"bdf\": \"0000:08:00.0\", \"iommu\": \"iommu0\", \"group\": \"g\" },\n"
	"    { \"bdf\": \"0000:08:00.1\", \"iommu\": \"iommu0\", \"group\": \"g\" },\n"
	"    { \"bdf\": \"0000:0a:00.0\", \"iommu\": \"iommu0\", \"group\": \"h\" },\n"
	"    { \"bdf\": \"0000:0a:00.1\", \"iommu\": \"iommu0\", \"group\": \"h\", \"bound\": true } ] }\n";

static void machine(void)
{
	vfio_machine(topology, DEV("0000:07:00.0"));
}

/* /dev/vfio/<G> of @bdf's group, as QEMU finds it. */
static int group_open(const char *bdf)
{
	char path[64];
	int id = vfio_group_id(bdf);

	if (id < 0)
		return -1;
	snprintf(path, sizeof(path), "/dev/vfio/%d", id);
	return open(path, O_RDWR);
}

static int status(int g, uint32_t *flags)
{
	struct vfio_group_status st = { .argsz = sizeof(st) };
	int rc = ioctl(g, VFIO_GROUP_GET_STATUS, &st);

	*flags = st.flags;
	return rc;
}

static int set_container(int g, int c)
{
	return ioctl(g, VFIO_GROUP_SET_CONTAINER, &c);
}

/* Nothing of @bdf's group is held: a new container and group hand out its device. 0 or -1. */
static int device_opens_again(const char *bdf)
{
	int c = open("/dev/vfio/vfio", O_RDWR), g = group_open(bdf), d = -1;

	if (c >= 0 && g >= 0 && !set_container(g, c))
		d = ioctl(g, VFIO_GROUP_GET_DEVICE_FD, bdf);
	if (d >= 0)
		close(d);
	if (g >= 0)
		close(g);
	if (c >= 0)
		close(c);
	return d >= 0 ? 0 : -1;
}

static int map_dma(int c, uint64_t iova, void *va, uint64_t size)
{
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map), .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)va, .iova = iova, .size = size,
	};

	return ioctl(c, VFIO_IOMMU_MAP_DMA, &map);
}

static int unmap_dma(int c, uint32_t flags, uint64_t iova, uint64_t *size)
{
	struct vfio_iommu_type1_dma_unmap unmap = {
		.argsz = sizeof(unmap), .flags = flags, .iova = iova, .size = *size,
	};
	int rc = ioctl(c, VFIO_IOMMU_UNMAP_DMA, &unmap);

	*size = unmap.size;
	return rc;
}


TEST(container_is_an_iommufd)
{
	char link[64], proc[32];
	struct stat st;
	int c;

	machine();
	c = open("/dev/vfio/vfio", O_RDWR);
	ASSERT_GE(c, 0);
	ASSERT_EQ(VFIO_API_VERSION, ioctl(c, VFIO_GET_API_VERSION));
	ASSERT_EQ(1, ioctl(c, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU));
	ASSERT_EQ(1, ioctl(c, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU));
	ASSERT_EQ(1, ioctl(c, VFIO_CHECK_EXTENSION, VFIO_UNMAP_ALL));
	/* No group yet: no compat IOAS. */
	ASSERT_ERRNO(ENODEV, ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
	ASSERT_EQ(0, fstat(c, &st));
	ASSERT_EQ(S_IFCHR | 0666, st.st_mode);
	ASSERT_EQ(makedev(10, 196), st.st_rdev);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", c);
	ASSERT_EQ(14, readlink(proc, link, sizeof(link)));
	ASSERT_EQ(0, memcmp(link, "/dev/vfio/vfio", 14));
	/* And an iommufd: its own ioctls work on it. */
	{
		struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };

		ASSERT_EQ(0, ioctl(c, IOMMU_IOAS_ALLOC, &alloc));
	}
	ASSERT_EQ(0, close(c));
}

TEST(group_status_and_container_errnos)
{
	int c, c2, g, p[2];
	uint32_t flags;
	struct stat st;

	machine();
	c = open("/dev/vfio/vfio", O_RDWR);
	c2 = open("/dev/iommu", O_RDWR);
	g = group_open("0000:07:00.0");
	ASSERT_GE(c, 0);
	ASSERT_GE(c2, 0);
	ASSERT_GE(g, 0);
	ASSERT_EQ(0, fstat(g, &st));
	ASSERT_TRUE(S_ISCHR(st.st_mode));
	ASSERT_EQ(S_IFCHR | 0600, st.st_mode);
	/* One open per group. */
	ASSERT_ERRNO(EBUSY, group_open("0000:07:00.0"));

	ASSERT_EQ(0, status(g, &flags));
	ASSERT_EQ(VFIO_GROUP_FLAGS_VIABLE, flags);
	{
		struct vfio_group_status st7 = { .argsz = 7 };

		ASSERT_ERRNO(EINVAL, ioctl(g, VFIO_GROUP_GET_STATUS, &st7));
		ASSERT_ERRNO(EFAULT, ioctl(g, VFIO_GROUP_GET_STATUS, (void *)8));
	}
	/* No container: nothing to unset, no device. */
	ASSERT_ERRNO(EINVAL, ioctl(g, VFIO_GROUP_UNSET_CONTAINER));
	ASSERT_ERRNO(EINVAL, ioctl(g, VFIO_GROUP_GET_DEVICE_FD, "0000:07:00.0"));

	/* SET_CONTAINER: a closed fd, a file that is no container, a bad pointer. */
	ASSERT_ERRNO(EBADF, set_container(g, -1));
	ASSERT_EQ(0, pipe(p));
	ASSERT_ERRNO(EBADFD, set_container(g, p[0]));
	ASSERT_ERRNO(EBADFD, set_container(g, g));
	ASSERT_ERRNO(EFAULT, ioctl(g, VFIO_GROUP_SET_CONTAINER, (void *)8));
	ASSERT_EQ(0, set_container(g, c));
	ASSERT_EQ(0, status(g, &flags));
	ASSERT_EQ(VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET, flags);
	ASSERT_ERRNO(EINVAL, set_container(g, c));
	ASSERT_ERRNO(EINVAL, set_container(g, c2));
	ASSERT_ERRNO(EBADF, set_container(g, -1));
	/* The compat IOAS exists now: SET_IOMMU works. */
	ASSERT_EQ(0, ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
	ASSERT_EQ(0, ioctl(g, VFIO_GROUP_UNSET_CONTAINER));
	ASSERT_ERRNO(EINVAL, ioctl(g, VFIO_GROUP_UNSET_CONTAINER));
	ASSERT_EQ(0, status(g, &flags));
	ASSERT_EQ(VFIO_GROUP_FLAGS_VIABLE, flags);
	/* /dev/iommu is a container too. */
	ASSERT_EQ(0, set_container(g, c2));
	ASSERT_ERRNO(ENOTTY, ioctl(g, VFIO_GET_API_VERSION));
	close(p[0]);
	close(p[1]);
	/* Closing the group unsets; then it opens again. */
	ASSERT_EQ(0, close(g));
	g = group_open("0000:07:00.0");
	ASSERT_GE(g, 0);
	ASSERT_EQ(0, status(g, &flags));
	ASSERT_EQ(VFIO_GROUP_FLAGS_VIABLE, flags);
	ASSERT_EQ(0, close(g));
	ASSERT_EQ(0, close(c));
	ASSERT_EQ(0, close(c2));
}

TEST(viability_follows_the_drivers_of_the_group)
{
	int c = -1, g, d;
	uint32_t flags;

	machine();
	c = open("/dev/vfio/vfio", O_RDWR);
	ASSERT_GE(c, 0);
	g = group_open("0000:0a:00.0");
	ASSERT_GE(g, 0);
	/* 0a:00.1 has the DMA-API driver: the group is not viable. */
	ASSERT_EQ(0, status(g, &flags));
	ASSERT_EQ(0u, flags);
	/* With an iommufd container the claim comes at GET_DEVICE_FD: EPERM there. */
	ASSERT_EQ(0, set_container(g, c));
	ASSERT_EQ(0, status(g, &flags));
	ASSERT_EQ(VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET, flags);
	ASSERT_ERRNO(EPERM, ioctl(g, VFIO_GROUP_GET_DEVICE_FD, "0000:0a:00.0"));
	ASSERT_EQ(0, ioctl(g, VFIO_GROUP_UNSET_CONTAINER));
	/* Unbound (no driver at all), 0a:00.1 no longer counts. */
	ASSERT_EQ(0, sysfs_store("/sys/bus/pci/drivers/uiommu-dma/unbind", "0000:0a:00.1"));
	ASSERT_EQ(0, status(g, &flags));
	ASSERT_EQ(VFIO_GROUP_FLAGS_VIABLE, flags);
	ASSERT_EQ(0, set_container(g, c));
	d = ioctl(g, VFIO_GROUP_GET_DEVICE_FD, "0000:0a:00.0");
	ASSERT_GE(d, 0);
	/* Owned by the container's context now: the DMA-API driver cannot come back. */
	ASSERT_EQ(-1, sysfs_store("/sys/bus/pci/drivers/uiommu-dma/bind", "0000:0a:00.1"));
	ASSERT_EQ(0, close(d));
	ASSERT_EQ(0, sysfs_store("/sys/bus/pci/drivers/uiommu-dma/bind", "0000:0a:00.1"));
	ASSERT_EQ(0, ioctl(g, VFIO_GROUP_UNSET_CONTAINER));
	ASSERT_EQ(0, status(g, &flags));
	ASSERT_EQ(0u, flags);
	ASSERT_EQ(0, close(g));
	ASSERT_EQ(0, close(c));
}

TEST(get_device_fd)
{
	char proc[32], link[64];
	struct stat st;
	int c, g, d, v;
	ssize_t n;

	machine();
	c = open("/dev/vfio/vfio", O_RDWR);
	g = group_open("0000:08:00.0");
	ASSERT_GE(c, 0);
	ASSERT_GE(g, 0);
	ASSERT_EQ(0, set_container(g, c));
	/* Another group's function, a name that is none, a bad pointer, no NUL in a page. */
	ASSERT_ERRNO(ENODEV, ioctl(g, VFIO_GROUP_GET_DEVICE_FD, "0000:07:00.0"));
	ASSERT_ERRNO(ENODEV, ioctl(g, VFIO_GROUP_GET_DEVICE_FD, "0000:08:00.0 "));
	ASSERT_ERRNO(ENODEV, ioctl(g, VFIO_GROUP_GET_DEVICE_FD, ""));
	ASSERT_ERRNO(EFAULT, ioctl(g, VFIO_GROUP_GET_DEVICE_FD, (void *)8));
	{
		char *big = malloc(8192);

		ASSERT_TRUE(big != NULL);
		memset(big, 'a', 8192);
		ASSERT_ERRNO(EINVAL, ioctl(g, VFIO_GROUP_GET_DEVICE_FD, big));
		free(big);
	}

	d = ioctl(g, VFIO_GROUP_GET_DEVICE_FD, "0000:08:00.0");
	ASSERT_GE(d, 0);
	/* An anonymous file, close-on-exec. */
	ASSERT_EQ(FD_CLOEXEC, fcntl(d, F_GETFD));
	ASSERT_EQ(0, fstat(d, &st));
	ASSERT_EQ(0600u, st.st_mode);
	ASSERT_EQ(0u, (unsigned int)st.st_rdev);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", d);
	n = readlink(proc, link, sizeof(link) - 1);
	ASSERT_GT(n, 0);
	link[n] = '\0';
	ASSERT_STREQ("anon_inode:[vfio-device]", link);
	/* A group's device fd is no cdev: no BIND, no ATTACH. */
	{
		struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = c };
		struct vfio_device_info info = { .argsz = sizeof(info) };

		ASSERT_ERRNO(EINVAL, ioctl(d, VFIO_DEVICE_BIND_IOMMUFD, &bind));
		ASSERT_ERRNO(ENOTTY, ioctl(d, VFIO_DEVICE_DETACH_IOMMUFD_PT, &bind));
		ASSERT_EQ(0, ioctl(d, VFIO_DEVICE_GET_INFO, &info));
		ASSERT_TRUE(info.flags & VFIO_DEVICE_FLAGS_PCI);
	}
	/* Open already: we refuse a second fd (the kernel shares the open). */
	ASSERT_ERRNO(EBUSY, ioctl(g, VFIO_GROUP_GET_DEVICE_FD, "0000:08:00.0"));
	/* The other function of the group: its own fd. */
	v = ioctl(g, VFIO_GROUP_GET_DEVICE_FD, "0000:08:00.1");
	ASSERT_GE(v, 0);
	ASSERT_EQ(0, close(v));

	/* The cdev path and the group path exclude each other. */
	v = open("/dev/vfio/devices/vfio2", O_RDWR); /* 08:00.1 */
	ASSERT_GE(v, 0);
	{
		struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = c };

		ASSERT_ERRNO(EBUSY, ioctl(v, VFIO_DEVICE_BIND_IOMMUFD, &bind));
	}
	/* UNSET with a device open succeeds (iommufd), and the device stays usable. */
	ASSERT_EQ(0, ioctl(g, VFIO_GROUP_UNSET_CONTAINER));
	ASSERT_ERRNO(EINVAL, ioctl(g, VFIO_GROUP_GET_DEVICE_FD, "0000:08:00.1"));
	ASSERT_EQ(0, close(g));
	/* The group's fd is closed, but its device fd holds the group open. */
	{
		struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = c };

		ASSERT_ERRNO(EBUSY, ioctl(v, VFIO_DEVICE_BIND_IOMMUFD, &bind));
	}
	ASSERT_ERRNO(EBUSY, group_open("0000:08:00.0"));
	ASSERT_EQ(0, close(d));
	/* Now a cdev can bind, and the group node cannot open while it is. */
	{
		struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = c };

		ASSERT_EQ(0, ioctl(v, VFIO_DEVICE_BIND_IOMMUFD, &bind));
	}
	ASSERT_ERRNO(EBUSY, group_open("0000:08:00.0"));
	ASSERT_EQ(0, close(v));
	g = group_open("0000:08:00.0");
	ASSERT_GE(g, 0);
	ASSERT_EQ(0, close(g));
	ASSERT_EQ(0, close(c));
}

TEST(type1v2_map_unmap_and_dma_through_the_container)
{
	const size_t len = 2 * 4096;
	struct uiommu_dma_dev *dma;
	unsigned char out[16];
	uint64_t size;
	int c, g, d;
	char *buf;

	machine();
	buf = mmap(NULL, 2 * len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(buf != MAP_FAILED);
	c = open("/dev/vfio/vfio", O_RDWR);
	g = group_open("0000:07:00.0");
	ASSERT_GE(c, 0);
	ASSERT_GE(g, 0);
	ASSERT_EQ(0, set_container(g, c));
	ASSERT_EQ(0, ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
	ASSERT_EQ(0, map_dma(c, 1 << 20, buf, len));
	ASSERT_ERRNO(EEXIST, map_dma(c, 1 << 20, buf, len));
	ASSERT_EQ(0, map_dma(c, 1 << 24, buf + len, len));
	d = ioctl(g, VFIO_GROUP_GET_DEVICE_FD, "0000:07:00.0");
	ASSERT_GE(d, 0);

	/* The function's DMA goes through the container's IOAS. */
	dma = uiommu_dma_dev_open("0000:07:00.0");
	ASSERT_TRUE(dma != NULL);
	ASSERT_EQ(5, uiommu_dma_write(dma, 0, (1 << 20) + 100, "hello", 5, 0));
	ASSERT_EQ(0, memcmp(buf + 100, "hello", 5));
	memcpy(buf + len + 8, "world", 5);
	ASSERT_EQ(5, uiommu_dma_read(dma, 0, (1 << 24) + 8, out, 5, 0));
	ASSERT_EQ(0, memcmp(out, "world", 5));
	/* Outside what the container mapped: a fault. */
	ASSERT_ERRNO(EFAULT, uiommu_dma_write(dma, 0, 1 << 28, "x", 1, 0));

	/* v2: an unmap that cuts a mapping fails (ENOENT with iommufd's compat). */
	size = 4096;
	ASSERT_ERRNO(ENOENT, unmap_dma(c, 0, 1 << 20, &size));
	size = len;
	ASSERT_EQ(0, unmap_dma(c, 0, 1 << 20, &size));
	ASSERT_EQ((uint64_t)len, size);
	ASSERT_ERRNO(EFAULT, uiommu_dma_write(dma, 0, (1 << 20) + 100, "hello", 5, 0));
	/* UNMAP_ALL: iova and size must be 0; everything goes. */
	ASSERT_EQ(0, map_dma(c, 1 << 20, buf, len));
	size = 4096;
	ASSERT_ERRNO(EINVAL, unmap_dma(c, VFIO_DMA_UNMAP_FLAG_ALL, 0, &size));
	size = 0;
	ASSERT_ERRNO(EINVAL, unmap_dma(c, VFIO_DMA_UNMAP_FLAG_ALL, 1 << 20, &size));
	size = 0;
	ASSERT_EQ(0, unmap_dma(c, VFIO_DMA_UNMAP_FLAG_ALL, 0, &size));
	ASSERT_EQ((uint64_t)(2 * len), size);
	ASSERT_ERRNO(EFAULT, uiommu_dma_read(dma, 0, (1 << 24) + 8, out, 5, 0));
	size = 0;
	ASSERT_EQ(0, unmap_dma(c, VFIO_DMA_UNMAP_FLAG_ALL, 0, &size));
	ASSERT_EQ(0ull, (unsigned long long)size);

	ASSERT_EQ(0, uiommu_dma_dev_close(dma));
	ASSERT_EQ(0, close(d));
	ASSERT_EQ(0, close(g));
	ASSERT_EQ(0, close(c));
	munmap(buf, 2 * len);
}

/* Each fallible step of open, SET_CONTAINER and GET_DEVICE_FD failed once, in turn. */
TEST(fail_nth)
{
	int c, g, d, rc;
	unsigned long n;

	machine();
	if (!uiommu_fail_nth_available())
		SKIP("a build without fault injection");
	/* The library's one-time setup (the caller's mm, kept for good) is not under test. */
	c = open("/dev/vfio/vfio", O_RDWR);
	ASSERT_GE(c, 0);
	ASSERT_EQ(0, close(c));
	for (n = 1; n < 3000; n++) {
		uiommu_fail_nth_arm(n);
		c = open("/dev/vfio/vfio", O_RDWR);
		g = c >= 0 ? group_open("0000:07:00.0") : -1;
		rc = g >= 0 ? set_container(g, c) : -1;
		d = !rc ? ioctl(g, VFIO_GROUP_GET_DEVICE_FD, "0000:07:00.0") : -1;
		if (!uiommu_fail_nth_disarm()) {
			/* The armed step failed: whatever came before it unwinds. */
			ASSERT_TRUE(c < 0 || g < 0 || rc < 0 || d < 0);
		} else {
			ASSERT_GE(d, 0);
		}
		if (d >= 0)
			ASSERT_EQ(0, close(d));
		if (g >= 0)
			ASSERT_EQ(0, close(g));
		if (c >= 0)
			ASSERT_EQ(0, close(c));
		if (d >= 0)
			break;
	}
	ASSERT_LT(n, 3000ul);
	/* Nothing is left behind: the group opens and the device binds again. */
	ASSERT_EQ(0, device_opens_again("0000:07:00.0"));
}

/*
 * What every fd of ours keeps whatever its kind (the container, a group, a group's device fd):
 * read/write answer by the file's ops (a device fd's config region) or EINVAL, EBADF by the
 * access mode; the node is found by any name the path walk accepts; a file put on the number
 * behind our back is the host's; close_range() closes each kind and lets it go.
 */
TEST(every_file_kind_rw_names_identity_close_range)
{
	struct vfio_region_info ri = { .argsz = sizeof(ri),
				       .index = VFIO_PCI_CONFIG_REGION_INDEX };
	uint16_t vendor = 0;
	int c, g, d, w, dir, null_fd, hi;
	struct stat st;
	char b[4];

	machine();
	c = open("//dev/vfio/./vfio", O_RDWR); /* the container by another spelling */
	g = group_open("0000:07:00.0");
	ASSERT_GE(c, 0);
	ASSERT_GE(g, 0);
	ASSERT_EQ(0, fstat(c, &st));
	ASSERT_TRUE(S_ISCHR(st.st_mode));
	ASSERT_EQ(10u, major(st.st_rdev));
	ASSERT_EQ(0, set_container(g, c));
	d = ioctl(g, VFIO_GROUP_GET_DEVICE_FD, "0000:07:00.0");
	ASSERT_GE(d, 0);

	/* Names: below a node ENOTDIR, the node as a directory ENOTDIR, the directory itself. */
	ASSERT_ERRNO(ENOTDIR, open("/dev/vfio/vfio/x", O_RDWR));
	ASSERT_ERRNO(ENOTDIR, open("/dev/vfio/vfio", O_RDWR | O_DIRECTORY));
	ASSERT_ERRNO(ENOENT, open("/dev/vfio/../vfio/none", O_RDWR));
	dir = open("/dev/vfio/devices/..", O_RDONLY | O_DIRECTORY);
	ASSERT_GE(dir, 0);
	ASSERT_EQ(0, close(dir));

	/* read/write: the device fd's regions, EINVAL for the others, offsets checked first. */
	ASSERT_EQ(0, ioctl(d, VFIO_DEVICE_GET_REGION_INFO, &ri));
	ASSERT_EQ(2, pread(d, &vendor, 2, (off_t)ri.offset));
	ASSERT_EQ(DMA_TEST_VENDOR_ID, vendor);
	ASSERT_ERRNO(EINVAL, pread(d, b, 2, -1));
	ASSERT_ERRNO(EINVAL, read(c, b, sizeof(b)));
	ASSERT_ERRNO(EINVAL, write(g, b, sizeof(b)));
	ASSERT_ERRNO(EINVAL, pwrite(c, b, sizeof(b), -1));
	w = open("/dev/vfio/vfio", O_WRONLY);
	ASSERT_GE(w, 0);
	ASSERT_ERRNO(EBADF, read(w, b, sizeof(b)));
	ASSERT_ERRNO(EINVAL, write(w, b, sizeof(b)));

	/* Another file on the number behind our back: the host's from then on. */
	null_fd = open("/dev/null", O_RDWR);
	ASSERT_GE(null_fd, 0);
	ASSERT_EQ(w, syscall(SYS_dup3, null_fd, w, 0));
	ASSERT_FALSE(uiommu_is_fd(w));
	ASSERT_EQ(0, read(w, b, sizeof(b))); /* /dev/null's end of file */
	ASSERT_EQ(0, close(w));
	ASSERT_EQ(0, close(null_fd));

	/* close_range() of each kind, each alone in its range. */
	hi = fcntl(d, F_DUPFD_CLOEXEC, 0);
	ASSERT_GE(hi, 0);
	ASSERT_EQ(0, close(d));
	ASSERT_EQ(0, close_range((unsigned int)hi, (unsigned int)hi, 0));
	ASSERT_FALSE(uiommu_is_fd(hi));
	ASSERT_ERRNO(EBADF, fcntl(hi, F_GETFD));
	ASSERT_EQ(0, close_range((unsigned int)g, (unsigned int)g, 0));
	ASSERT_FALSE(uiommu_is_fd(g));
	ASSERT_EQ(0, close_range((unsigned int)c, (unsigned int)c, 0));
	ASSERT_FALSE(uiommu_is_fd(c));
	/* All three let go: the group opens again and hands out its device. */
	ASSERT_EQ(0, device_opens_again("0000:07:00.0"));
}

/* KVM's VFIO device accepts our group and device fds as it accepts real ones (Debian 12's
 * <linux/kvm.h> has the old names: GROUP_ADD/DEL are FILE_ADD/DEL, the same values). */
TEST(kvm_vfio_device)
{
	struct kvm_create_device cd = { .type = KVM_DEV_TYPE_VFIO };
	struct kvm_device_attr attr = { .group = KVM_DEV_VFIO_GROUP };
	int kvm, vm, c, g, d;
	int32_t fd;

	machine();
	c = open("/dev/vfio/vfio", O_RDWR);
	g = group_open("0000:07:00.0");
	ASSERT_GE(c, 0);
	ASSERT_GE(g, 0);
	/* Not a kvm-vfio fd: the library leaves the call to the kernel. */
	fd = g;
	attr.attr = KVM_DEV_VFIO_GROUP_ADD;
	attr.addr = (uintptr_t)&fd;
	ASSERT_EQ(UIOMMU_KVM_PASS, uiommu_kvm_ioctl(c, KVM_SET_DEVICE_ATTR, &attr));
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		SKIP("no /dev/kvm here");
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		SKIP("KVM_CREATE_VM: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(vm, KVM_CREATE_DEVICE, &cd));
	ASSERT_EQ(0, set_container(g, c));
	d = ioctl(g, VFIO_GROUP_GET_DEVICE_FD, "0000:07:00.0");
	ASSERT_GE(d, 0);

	/* Each fallible step of an add failed once: nothing is held after a failure. */
	if (uiommu_fail_nth_available()) {
		bool saw_enomem = false;
		unsigned long n;
		int rc = -1;

		for (n = 1; n < 100 && rc; n++) {
			int err;

			uiommu_fail_nth_arm(n);
			rc = ioctl((int)cd.fd, KVM_SET_DEVICE_ATTR, &attr);
			err = errno;
			if (uiommu_fail_nth_disarm()) {
				ASSERT_EQ(0, rc);
			} else {
				/* ENOMEM from the list; a failed copy of the argument leaves
				 * the call to the kernel, which refuses our fd (EINVAL). */
				ASSERT_EQ(-1, rc);
				ASSERT_TRUE(err == ENOMEM || err == EINVAL);
				saw_enomem |= err == ENOMEM;
			}
		}
		ASSERT_EQ(0, rc);
		ASSERT_TRUE(saw_enomem);
	} else {
		ASSERT_EQ(0, ioctl((int)cd.fd, KVM_SET_DEVICE_ATTR, &attr));
	}
	ASSERT_ERRNO(EEXIST, ioctl((int)cd.fd, KVM_SET_DEVICE_ATTR, &attr));
	fd = d;
	ASSERT_EQ(0, ioctl((int)cd.fd, KVM_SET_DEVICE_ATTR, &attr));
	/* A container is no VFIO group or device file. */
	fd = c;
	ASSERT_ERRNO(EINVAL, ioctl((int)cd.fd, KVM_SET_DEVICE_ATTR, &attr));
	attr.attr = KVM_DEV_VFIO_GROUP_DEL;
	ASSERT_ERRNO(ENOENT, ioctl((int)cd.fd, KVM_SET_DEVICE_ATTR, &attr));
	fd = g;
	ASSERT_EQ(0, ioctl((int)cd.fd, KVM_SET_DEVICE_ATTR, &attr));
	ASSERT_ERRNO(ENOENT, ioctl((int)cd.fd, KVM_SET_DEVICE_ATTR, &attr));
	/* The kernel's own answers stay: an fd that is not open. */
	fd = 1000000;
	attr.attr = KVM_DEV_VFIO_GROUP_ADD;
	ASSERT_ERRNO(EBADF, ioctl((int)cd.fd, KVM_SET_DEVICE_ATTR, &attr));
	/* Closing the KVM device lets go of the device file it held. */
	ASSERT_EQ(0, close((int)cd.fd));
	ASSERT_EQ(0, close(d));
	d = open("/dev/vfio/devices/vfio0", O_RDWR);
	ASSERT_GE(d, 0);
	ASSERT_EQ(0, close(d));
	ASSERT_EQ(0, close(vm));
	ASSERT_EQ(0, close(kvm));
	ASSERT_EQ(0, close(g));
	ASSERT_EQ(0, close(c));
}

TEST_HARNESS_MAIN
