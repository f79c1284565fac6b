// SPDX-License-Identifier: MIT
/*
 * The VFIO device cdev, /dev/vfio/devices/vfioN, as an iommufd client drives it: open through
 * libc (this program runs under uiommu-run), bind to an iommufd, attach to an IOAS or a HWPT,
 * map, replace, detach, close; the kernel's errnos on the way; DMA ownership against the
 * emulated DMA-API driver and between iommufds; what closing gives back.
 *
 * The default topology gives vfio three devices (those it does not mark "bound"):
 *   vfio0 = 0000:01:00.2, in group "switch1" with two functions the DMA-API driver holds;
 *   vfio1 = 0000:03:00.0 and vfio2 = 0000:04:00.0, each alone in its group.
 * One case loads a topology of its own (a group of two vfio devices) before the machine boots.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "harness.h"
#include "uiommu/iommufd.h"
#include "uiommu/uiommu.h"
#include "uiommu/vfio_compat.h"

#define VFIO(n) "/dev/vfio/devices/vfio" #n
#define DMA_BIND "/sys/bus/pci/drivers/uiommu-dma/bind"
#define DMA_UNBIND "/sys/bus/pci/drivers/uiommu-dma/unbind"

static int bind_dev(int vfd, int iommufd, uint32_t *devid)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
	int rc = ioctl(vfd, VFIO_DEVICE_BIND_IOMMUFD, &bind);

	if (!rc && devid)
		*devid = bind.out_devid;
	return rc;
}

static int attach_pt(int vfd, uint32_t *pt_id)
{
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach), .pt_id = *pt_id };
	int rc = ioctl(vfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach);

	*pt_id = attach.pt_id;
	return rc;
}

static int detach_pt(int vfd)
{
	struct vfio_device_detach_iommufd_pt detach = { .argsz = sizeof(detach) };

	return ioctl(vfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach);
}

static uint32_t ioas_alloc(int fd)
{
	struct iommu_ioas_alloc cmd = { .size = sizeof(cmd) };

	if (ioctl(fd, IOMMU_IOAS_ALLOC, &cmd))
		return 0;
	return cmd.out_ioas_id;
}

static int destroy(int fd, uint32_t id)
{
	struct iommu_destroy cmd = { .size = sizeof(cmd), .id = id };

	return ioctl(fd, IOMMU_DESTROY, &cmd);
}

static int map_fixed(int fd, uint32_t ioas, uint64_t iova, void *va, uint64_t len)
{
	struct iommu_ioas_map cmd = {
		.size = sizeof(cmd),
		.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE |
			 IOMMU_IOAS_MAP_FIXED_IOVA,
		.ioas_id = ioas, .user_va = (uintptr_t)va, .length = len, .iova = iova,
	};

	return ioctl(fd, IOMMU_IOAS_MAP, &cmd);
}

static int unmap(int fd, uint32_t ioas, uint64_t iova, uint64_t len)
{
	struct iommu_ioas_unmap cmd = {
		.size = sizeof(cmd), .ioas_id = ioas, .iova = iova, .length = len,
	};

	return ioctl(fd, IOMMU_IOAS_UNMAP, &cmd);
}

/* Writes @bdf into a sysfs attribute: 0, or -1 with errno. */
static int sysfs_write(const char *path, const char *bdf)
{
	int fd = open(path, O_WRONLY), rc;

	if (fd < 0)
		return -1;
	rc = write(fd, bdf, strlen(bdf)) == (ssize_t)strlen(bdf) ? 0 : -1;
	if (rc) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return close(fd);
}

static long live_objects(void)
{
	struct uiommu_stats st;

	uiommu_stats_get(&st);
	return st.objects;
}

static long live_contexts(void)
{
	struct uiommu_stats st;

	uiommu_stats_get(&st);
	return st.contexts;
}

TEST(preloaded)
{
	ASSERT_TRUE(getenv("LD_PRELOAD") && strstr(getenv("LD_PRELOAD"), "uiommu"));
}

TEST(nodes)
{
	int fds[3];

	fds[0] = open(VFIO(0), O_RDWR);
	fds[1] = openat(AT_FDCWD, VFIO(1), O_RDWR | O_CLOEXEC);
	fds[2] = open64(VFIO(2), O_RDWR);
	for (int i = 0; i < 3; i++) {
		ASSERT_GE(fds[i], 0);
		ASSERT_TRUE(uiommu_is_fd(fds[i]));
	}
	ASSERT_EQ(FD_CLOEXEC, fcntl(fds[1], F_GETFD));
	ASSERT_ERRNO(ENOENT, open(VFIO(3), O_RDWR));
	ASSERT_ERRNO(ENOENT, open(VFIO(01), O_RDWR));
	ASSERT_ERRNO(ENOENT, open("/dev/vfio/devices/vfio", O_RDWR));
	ASSERT_ERRNO(ENOENT, open("/dev/vfio/devices/iommu", O_RDWR));
	for (int i = 0; i < 3; i++) {
		ASSERT_EQ(0, close(fds[i]));
		ASSERT_TRUE(!uiommu_is_fd(fds[i]));
	}
}

TEST(before_bind)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	struct vfio_device_detach_iommufd_pt detach = { .argsz = sizeof(detach) };
	uint32_t pt = 1;
	int vfd = open(VFIO(2), O_RDWR);

	ASSERT_GE(vfd, 0);
	/* No access before BIND_IOMMUFD: EINVAL, whatever the request. */
	ASSERT_ERRNO(EINVAL, ioctl(vfd, VFIO_DEVICE_GET_INFO, &info));
	ASSERT_ERRNO(EINVAL, attach_pt(vfd, &pt));
	ASSERT_ERRNO(EINVAL, ioctl(vfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach));
	ASSERT_ERRNO(EINVAL, ioctl(vfd, _IO(';', 100 + 60), NULL));
	ASSERT_EQ(0, close(vfd));
}

TEST(bind_errnos)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
	struct vfio_device_info info = { .argsz = sizeof(info), .cap_offset = 77 };
	int fd = open("/dev/iommu", O_RDWR), vfd = open(VFIO(2), O_RDWR), vfd2;
	int other = (int)syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY);
	long objects = live_objects();
	uint32_t devid = 0;

	ASSERT_GE(fd, 0);
	ASSERT_GE(vfd, 0);
	ASSERT_GE(other, 0);

	bind.iommufd = fd;
	bind.argsz = 12;
	ASSERT_ERRNO(EINVAL, ioctl(vfd, VFIO_DEVICE_BIND_IOMMUFD, &bind));
	bind.argsz = sizeof(bind);
	bind.flags = 1;
	ASSERT_ERRNO(EINVAL, ioctl(vfd, VFIO_DEVICE_BIND_IOMMUFD, &bind));
	bind.flags = 0;
	bind.iommufd = -1;
	ASSERT_ERRNO(EINVAL, ioctl(vfd, VFIO_DEVICE_BIND_IOMMUFD, &bind));
	ASSERT_ERRNO(EBADF, bind_dev(vfd, 1000, NULL));
	ASSERT_ERRNO(EBADFD, bind_dev(vfd, other, NULL));
	ASSERT_ERRNO(EBADFD, bind_dev(vfd, vfd, NULL));
	ASSERT_ERRNO(EFAULT, ioctl(vfd, VFIO_DEVICE_BIND_IOMMUFD, (void *)8));
	ASSERT_EQ(objects, live_objects());

	ASSERT_EQ(0, bind_dev(vfd, fd, &devid));
	ASSERT_NE(0, devid);
	ASSERT_EQ(objects + 1, live_objects());
	/* The file is bound once; another file of the device cannot bind. */
	ASSERT_ERRNO(EINVAL, bind_dev(vfd, fd, NULL));
	vfd2 = open(VFIO(2), O_RDWR);
	ASSERT_GE(vfd2, 0);
	ASSERT_ERRNO(EINVAL, bind_dev(vfd2, fd, NULL));
	ASSERT_EQ(0, close(vfd2));
	/* The DEVICE object belongs to the cdev: IOMMU_DESTROY cannot take it. */
	ASSERT_ERRNO(EBUSY, destroy(fd, devid));

	ASSERT_EQ(0, ioctl(vfd, VFIO_DEVICE_GET_INFO, &info));
	ASSERT_EQ(VFIO_DEVICE_FLAGS_PCI, info.flags);
	ASSERT_EQ(0, info.num_regions);
	ASSERT_EQ(0, info.num_irqs);
	ASSERT_EQ(77, info.cap_offset); /* not written without capabilities */
	info.argsz = 12;
	ASSERT_ERRNO(EINVAL, ioctl(vfd, VFIO_DEVICE_GET_INFO, &info));
	ASSERT_ERRNO(ENOTTY, ioctl(vfd, _IO(';', 100 + 60), NULL));

	/* The fd shares the open file with its dups: the last close unbinds. */
	vfd2 = dup(vfd);
	ASSERT_GE(vfd2, 0);
	ASSERT_EQ(0, close(vfd));
	ASSERT_EQ(objects + 1, live_objects());
	ASSERT_EQ(0, close(vfd2));
	ASSERT_EQ(objects, live_objects());
	ASSERT_EQ(0, close(fd));
	syscall(SYS_close, other);
}

TEST(attach_map_replace_detach)
{
	struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach) };
	struct vfio_device_detach_iommufd_pt detach = { .argsz = sizeof(detach) };
	int fd = open("/dev/iommu", O_RDWR), vfd = open(VFIO(2), O_RDWR);
	const size_t len = 16 * 4096;
	uint32_t devid, ioas, pt, auto_hwpt;
	long objects = live_objects();
	char *buf;

	ASSERT_GE(fd, 0);
	ASSERT_GE(vfd, 0);
	buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, buf);
	memset(buf, 0x5a, len);
	ioas = ioas_alloc(fd);
	ASSERT_NE(0, ioas);
	ASSERT_EQ(0, bind_dev(vfd, fd, &devid));

	/* Argument checks of attach. */
	attach.pt_id = ioas;
	attach.argsz = 8;
	ASSERT_ERRNO(EINVAL, ioctl(vfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach));
	attach.argsz = sizeof(attach);
	attach.flags = 2;
	ASSERT_ERRNO(EINVAL, ioctl(vfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach));
	attach.flags = VFIO_DEVICE_ATTACH_PASID;
	attach.pasid = 0; /* the RID is no PASID */
	ASSERT_ERRNO(EINVAL, ioctl(vfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach));
	/* An IOAS's automatic HWPT is not PASID-compatible. */
	attach.pasid = 1;
	ASSERT_ERRNO(EINVAL, ioctl(vfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach));
	attach.flags = 0;
	pt = 9999;
	ASSERT_ERRNO(ENOENT, attach_pt(vfd, &pt));
	pt = devid; /* a DEVICE is no page table */
	ASSERT_ERRNO(EINVAL, attach_pt(vfd, &pt));

	/* An IOAS: the answer is the automatic HWPT. */
	pt = ioas;
	ASSERT_EQ(0, attach_pt(vfd, &pt));
	ASSERT_NE(ioas, pt);
	auto_hwpt = pt;
	ASSERT_ERRNO(EBUSY, destroy(fd, auto_hwpt));
	ASSERT_ERRNO(EBUSY, destroy(fd, ioas));

	/* Mapping reaches the attached domain: the pages are pinned for it. */
	ASSERT_EQ(0, map_fixed(fd, ioas, 1ULL << 24, buf, len));
	ASSERT_GT(uiommu_page_pin_count(buf), 0);

	/* A second attach replaces: a HWPT of our own. */
	{
		struct iommu_hwpt_alloc alloc = {
			.size = sizeof(alloc), .dev_id = devid, .pt_id = ioas,
		};
		uint32_t hwpt;

		ASSERT_EQ(0, ioctl(fd, IOMMU_HWPT_ALLOC, &alloc));
		hwpt = alloc.out_hwpt_id;
		pt = hwpt;
		ASSERT_EQ(0, attach_pt(vfd, &pt));
		ASSERT_EQ(hwpt, pt);
		/* The automatic HWPT died with its last attachment. */
		ASSERT_ERRNO(ENOENT, destroy(fd, auto_hwpt));
		ASSERT_ERRNO(EBUSY, destroy(fd, hwpt));
		/* And back to the IOAS. */
		pt = ioas;
		ASSERT_EQ(0, attach_pt(vfd, &pt));
		ASSERT_NE(hwpt, pt);
		ASSERT_EQ(0, destroy(fd, hwpt));
	}

	/* Detach: argument checks, then detach twice (the second is no error). */
	detach.argsz = 4;
	ASSERT_ERRNO(EINVAL, ioctl(vfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach));
	detach.argsz = sizeof(detach);
	detach.flags = 4;
	ASSERT_ERRNO(EINVAL, ioctl(vfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach));
	detach.flags = VFIO_DEVICE_DETACH_PASID;
	detach.pasid = 0; /* the RID is no PASID */
	ASSERT_ERRNO(EINVAL, ioctl(vfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach));
	/* A PASID that is not attached: no error, and the RID stays attached. */
	detach.pasid = 5;
	ASSERT_EQ(0, ioctl(vfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach));
	ASSERT_GT(uiommu_page_pin_count(buf), 0);
	ASSERT_EQ(0, detach_pt(vfd));
	ASSERT_EQ(0, detach_pt(vfd));
	/* No domain holds the pages any more. */
	ASSERT_EQ(0, uiommu_page_pin_count(buf));
	ASSERT_EQ(0, unmap(fd, ioas, 1ULL << 24, len));

	/* Close while attached: the device is detached and unbound. */
	pt = ioas;
	ASSERT_EQ(0, attach_pt(vfd, &pt));
	ASSERT_EQ(0, close(vfd));
	ASSERT_EQ(0, destroy(fd, ioas));
	ASSERT_EQ(objects, live_objects());
	ASSERT_EQ(0, close(fd));
	munmap(buf, len);
}

TEST(iommufd_closed_first)
{
	int fd = open("/dev/iommu", O_RDWR), vfd = open(VFIO(1), O_RDWR);
	long contexts = live_contexts();
	uint32_t ioas, pt;

	ASSERT_GE(fd, 0);
	ASSERT_GE(vfd, 0);
	ioas = ioas_alloc(fd);
	ASSERT_EQ(0, bind_dev(vfd, fd, NULL));
	/* The bound device holds the iommufd, as the kernel's cdev holds its file. */
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(contexts, live_contexts());
	pt = ioas;
	ASSERT_EQ(0, attach_pt(vfd, &pt));
	ASSERT_EQ(0, close(vfd));
	ASSERT_EQ(contexts - 1, live_contexts());
}

TEST(ownership)
{
	int a = open("/dev/iommu", O_RDWR), b = open("/dev/iommu", O_RDWR);
	int v0 = open(VFIO(0), O_RDWR), v1 = open(VFIO(1), O_RDWR), v2 = open(VFIO(2), O_RDWR);

	ASSERT_GE(a, 0);
	ASSERT_GE(b, 0);
	ASSERT_GE(v0, 0);
	/* 01:00.2 shares its group with two functions the DMA-API driver holds. */
	ASSERT_ERRNO(EPERM, bind_dev(v0, a, NULL));
	/* Two groups, two owners. */
	ASSERT_EQ(0, bind_dev(v1, a, NULL));
	ASSERT_EQ(0, bind_dev(v2, b, NULL));

	/* An owned group refuses the DMA-API driver; closing gives the group back. */
	ASSERT_ERRNO(EBUSY, sysfs_write(DMA_BIND, "0000:04:00.0"));
	ASSERT_EQ(0, close(v2));
	ASSERT_EQ(0, sysfs_write(DMA_BIND, "0000:04:00.0"));
	/* Bound to a kernel driver, the function is no longer vfio's. */
	ASSERT_ERRNO(ENOENT, open(VFIO(2), O_RDWR));
	ASSERT_EQ(0, sysfs_write(DMA_UNBIND, "0000:04:00.0"));
	v2 = open(VFIO(2), O_RDWR);
	ASSERT_GE(v2, 0);
	ASSERT_EQ(0, bind_dev(v2, a, NULL));

	/* With the switch's drivers unbound, its third function can be owned. */
	ASSERT_EQ(0, sysfs_write(DMA_UNBIND, "0000:01:00.0"));
	ASSERT_ERRNO(EPERM, bind_dev(v0, a, NULL));
	ASSERT_EQ(0, sysfs_write(DMA_UNBIND, "0000:01:00.1"));
	ASSERT_EQ(0, bind_dev(v0, a, NULL));
	/* ... and then a DMA-API driver cannot come back into the group. */
	ASSERT_ERRNO(EBUSY, sysfs_write(DMA_BIND, "0000:01:00.0"));
	ASSERT_EQ(0, close(v0));
	ASSERT_EQ(0, sysfs_write(DMA_BIND, "0000:01:00.0"));

	ASSERT_EQ(0, close(v1));
	ASSERT_EQ(0, close(v2));
	ASSERT_EQ(0, close(a));
	ASSERT_EQ(0, close(b));
}

/* A machine of its own: one group of two functions, both vfio's. */
static const char shared_topology[] =
	"{ \"iommus\": [ { \"name\": \"iommu0\" } ],\n"
	"  \"devices\": [\n"
	"    { \"bdf\": \"0000:05:00.0\", \"iommu\": \"iommu0\", \"group\": \"g\" },\n"
	"    { \"bdf\": \"0000:05:00.1\", \"iommu\": \"iommu0\", \"group\": \"g\" },\n"
	"    { \"bdf\": \"0000:06:00.0\", \"iommu\": \"iommu0\", \"bound\": true } ] }\n";

TEST(shared_group)
{
	char path[] = "/tmp/uiommu-vfio-topo-XXXXXX";
	int tfd = mkstemp(path), a, b, v0, v1;
	uint32_t ioas, pt;

	ASSERT_GE(tfd, 0);
	ASSERT_EQ((ssize_t)strlen(shared_topology),
		  write(tfd, shared_topology, strlen(shared_topology)));
	close(tfd);
	/* Each case is a fresh child: the machine boots at the first open below. */
	setenv("UIOMMU_TOPOLOGY", path, 1);
	v0 = open(VFIO(0), O_RDWR);
	unlink(path);
	ASSERT_GE(v0, 0);
	v1 = open(VFIO(1), O_RDWR);
	ASSERT_GE(v1, 0);
	ASSERT_ERRNO(ENOENT, open(VFIO(2), O_RDWR));
	a = open("/dev/iommu", O_RDWR);
	b = open("/dev/iommu", O_RDWR);

	ASSERT_EQ(0, bind_dev(v0, a, NULL));
	/* Another iommufd is another owner: the group is taken. */
	ASSERT_ERRNO(EPERM, bind_dev(v1, b, NULL));
	/* The same iommufd shares the claim. */
	ASSERT_EQ(0, bind_dev(v1, a, NULL));
	/* Attaching a device of a group of two is not supported yet (device.c). */
	ioas = ioas_alloc(a);
	pt = ioas;
	ASSERT_ERRNO(EINVAL, attach_pt(v0, &pt));
	/* The claim is the group's until its last device lets go. */
	ASSERT_EQ(0, close(v0));
	v0 = open(VFIO(0), O_RDWR);
	ASSERT_GE(v0, 0);
	ASSERT_ERRNO(EPERM, bind_dev(v0, b, NULL));
	ASSERT_EQ(0, close(v1));
	ASSERT_EQ(0, bind_dev(v0, b, NULL));
	ASSERT_EQ(0, close(v0));
	ASSERT_EQ(0, close(a));
	ASSERT_EQ(0, close(b));
}

TEST_HARNESS_MAIN
