// SPDX-License-Identifier: MIT
/*
 * The VFIO device cdev, /dev/vfio/devices/vfioN, as an iommufd client drives it: open through
 * libc (this program runs under uiommu-run), bind to an iommufd, attach to an IOAS or a HWPT,
 * map, replace, detach, close; the kernel's errnos on the way; DMA ownership against the
 * emulated DMA-API driver and between iommufds; what closing gives back.
 *
 * The default topology gives vfio five devices (those it does not mark "bound"):
 *   vfio0 = 0000:01:00.2, in group "switch1" with two functions the DMA-API driver holds;
 *   vfio1 = 0000:03:00.0 and vfio2 = 0000:04:00.0, each alone in its group;
 *   vfio3 = 0000:08:00.0 (behind the SMMUv3 model) and vfio4 = 0000:09:00.0 (behind the VT-d
 *   model), which these tests only open (test_smmuv3_abi and test_vtd_uapi drive the
 *   models).
 * The shared_group and group_* cases load a topology of their own (a group of two vfio devices)
 * before the machine boots: the devices of one group share its domain (device.c's igroup).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "harness.h"
#define TEST_IOCTL ioctl /* through libc: the preload path */
#include "uiommu_test.h"
#include "vfio_utils.h"
#include "uiommu/iommufd.h"
#include "uiommu/uiommu.h"
#include "uiommu/vfio_compat.h"

#define VFIO(n) "/dev/vfio/devices/vfio" #n
#define DMA_BIND "/sys/bus/pci/drivers/uiommu-dma/bind"
#define DMA_UNBIND "/sys/bus/pci/drivers/uiommu-dma/unbind"
#define VFIO_BIND "/sys/bus/pci/drivers/vfio-pci/bind"
#define VFIO_UNBIND "/sys/bus/pci/drivers/vfio-pci/unbind"
#define OVERRIDE(bdf) "/sys/bus/pci/devices/" bdf "/driver_override"

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
	for (int i = 0; i < 2; i++) {
		int fd = open(i ? VFIO(4) : VFIO(3), O_RDWR);

		ASSERT_GE(fd, 0);
		ASSERT_EQ(0, close(fd));
	}
	ASSERT_ERRNO(ENOENT, open(VFIO(5), O_RDWR));
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
	int other = (int)syscall(SYS_openat, (long)AT_FDCWD, "/dev/null", (long)O_RDONLY);
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
	ASSERT_ERRNO(EBADF, vfio_bind(vfd, 1000, NULL));
	ASSERT_ERRNO(EBADFD, vfio_bind(vfd, other, NULL));
	ASSERT_ERRNO(EBADFD, vfio_bind(vfd, vfd, NULL));
	ASSERT_ERRNO(EFAULT, ioctl(vfd, VFIO_DEVICE_BIND_IOMMUFD, (void *)8));
	ASSERT_EQ(objects, live_objects());

	ASSERT_EQ(0, vfio_bind(vfd, fd, &devid));
	ASSERT_NE(0, devid);
	ASSERT_EQ(objects + 1, live_objects());
	/* The file is bound once; another file of the device cannot bind. */
	ASSERT_ERRNO(EINVAL, vfio_bind(vfd, fd, NULL));
	vfd2 = open(VFIO(2), O_RDWR);
	ASSERT_GE(vfd2, 0);
	ASSERT_ERRNO(EINVAL, vfio_bind(vfd2, fd, NULL));
	ASSERT_EQ(0, close(vfd2));
	/* The DEVICE object belongs to the cdev: IOMMU_DESTROY cannot take it. */
	ASSERT_ERRNO(EBUSY, destroy(fd, devid));

	ASSERT_EQ(0, ioctl(vfd, VFIO_DEVICE_GET_INFO, &info));
	/* vfio-pci's answer (test_vfio_pci.c goes further); min(argsz, 24) bytes are written. */
	ASSERT_EQ(VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET, info.flags);
	ASSERT_EQ(9, info.num_regions);
	ASSERT_EQ(5, info.num_irqs);
	ASSERT_EQ(0, info.cap_offset);
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
	syscall(SYS_close, (long)other);
}

/* The DMA engine of a device known as (iommufd, dev_id): iommufd resolves it for the machine. */
TEST(dma_open_iommufd)
{
	int fd = open("/dev/iommu", O_RDWR), vfd = open(VFIO(2), O_RDWR);
	int other = (int)syscall(SYS_openat, (long)AT_FDCWD, "/dev/null", (long)O_RDONLY);
	struct uiommu_dma_dev *e;
	uint32_t devid = 0, ioas;

	ASSERT_GE(fd, 0);
	ASSERT_GE(vfd, 0);
	ASSERT_GE(other, 0);
	ioas = ioas_alloc(fd);
	ASSERT_TRUE(uiommu_dma_dev_open_iommufd(-1, 1) == NULL);
	ASSERT_EQ(EBADF, errno);
	ASSERT_TRUE(uiommu_dma_dev_open_iommufd(other, 1) == NULL);
	ASSERT_EQ(EBADFD, errno);
	ASSERT_EQ(0, vfio_bind(vfd, fd, &devid));
	ASSERT_TRUE(uiommu_dma_dev_open_iommufd(fd, devid + 100) == NULL);
	ASSERT_EQ(ENOENT, errno);
	ASSERT_TRUE(uiommu_dma_dev_open_iommufd(fd, ioas) == NULL); /* not a device */
	ASSERT_EQ(ENOENT, errno);

	e = uiommu_dma_dev_open_iommufd(fd, devid);
	ASSERT_TRUE(e != NULL);
	/* The handle outlives the binding. */
	ASSERT_EQ(0, close(vfd));
	ASSERT_EQ(0, uiommu_dma_dev_close(e));
	ASSERT_EQ(0, close(fd));
	syscall(SYS_close, (long)other);
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
	ASSERT_EQ(0, vfio_bind(vfd, fd, &devid));

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
	ASSERT_EQ(0, ioas_map_fixed(fd, ioas, 1ULL << 24, buf, len));
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
	ASSERT_EQ(0, ioas_unmap(fd, ioas, 1ULL << 24, len));

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
	ASSERT_EQ(0, vfio_bind(vfd, fd, NULL));
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
	ASSERT_ERRNO(EPERM, vfio_bind(v0, a, NULL));
	/* Two groups, two owners. */
	ASSERT_EQ(0, vfio_bind(v1, a, NULL));
	ASSERT_EQ(0, vfio_bind(v2, b, NULL));

	/* vfio-pci holds the function: no other driver, and no unbind while it is open. */
	ASSERT_ERRNO(EBUSY, sysfs_store(DMA_BIND, "0000:04:00.0"));
	ASSERT_ERRNO(EBUSY, sysfs_store(VFIO_UNBIND, "0000:04:00.0"));
	ASSERT_EQ(0, close(v2));
	ASSERT_EQ(0, sysfs_store(VFIO_UNBIND, "0000:04:00.0"));
	ASSERT_EQ(0, sysfs_store(DMA_BIND, "0000:04:00.0"));
	/* Bound to a kernel driver, the function is no longer vfio's. */
	ASSERT_ERRNO(ENOENT, open(VFIO(2), O_RDWR));
	ASSERT_EQ(0, sysfs_store(DMA_UNBIND, "0000:04:00.0"));
	/* vfio-pci binds only what driver_override gives it; vfio2 is the lowest free index. */
	ASSERT_ERRNO(ENODEV, sysfs_store(VFIO_BIND, "0000:04:00.0"));
	ASSERT_EQ(0, sysfs_store(OVERRIDE("0000:04:00.0"), "vfio-pci\n"));
	ASSERT_EQ(0, sysfs_store(VFIO_BIND, "0000:04:00.0"));
	v2 = open(VFIO(2), O_RDWR);
	ASSERT_GE(v2, 0);
	ASSERT_EQ(0, vfio_bind(v2, a, NULL));

	/* With the switch's drivers unbound, its third function can be owned. */
	ASSERT_EQ(0, sysfs_store(DMA_UNBIND, "0000:01:00.0"));
	ASSERT_ERRNO(EPERM, vfio_bind(v0, a, NULL));
	ASSERT_EQ(0, sysfs_store(DMA_UNBIND, "0000:01:00.1"));
	ASSERT_EQ(0, vfio_bind(v0, a, NULL));
	/* ... and then a DMA-API driver cannot come back into the group. */
	ASSERT_ERRNO(EBUSY, sysfs_store(DMA_BIND, "0000:01:00.0"));
	ASSERT_EQ(0, close(v0));
	ASSERT_EQ(0, sysfs_store(DMA_BIND, "0000:01:00.0"));

	ASSERT_EQ(0, close(v1));
	ASSERT_EQ(0, close(v2));
	ASSERT_EQ(0, close(a));
	ASSERT_EQ(0, close(b));
}

/* A machine of its own: one group of two functions, both vfio's. */
/*
 * GET_HW_INFO through a bound cdev: IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED for a device without
 * ATS (vfio2, 0000:04:00.0), not for one with it (vfio1, 0000:03:00.0, PRI and so ATS).
 */
TEST(hw_info_ats)
{
	struct iommu_hw_info info = { .size = sizeof(info) };
	int fd = open("/dev/iommu", O_RDWR), v1 = open(VFIO(1), O_RDWR), v2 = open(VFIO(2), O_RDWR);
	uint32_t d1, d2;

	ASSERT_GE(fd, 0);
	ASSERT_GE(v1, 0);
	ASSERT_GE(v2, 0);
	ASSERT_EQ(0, vfio_bind(v1, fd, &d1));
	ASSERT_EQ(0, vfio_bind(v2, fd, &d2));
	info.dev_id = d1;
	ASSERT_EQ(0, ioctl(fd, IOMMU_GET_HW_INFO, &info));
	ASSERT_EQ(0ull, info.out_capabilities & IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED);
	ASSERT_EQ(20, info.out_max_pasid_log2);
	info = (struct iommu_hw_info){ .size = sizeof(info), .dev_id = d2 };
	ASSERT_EQ(0, ioctl(fd, IOMMU_GET_HW_INFO, &info));
	ASSERT_EQ((uint64_t)(IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED | IOMMU_HW_CAP_DIRTY_TRACKING),
		  info.out_capabilities);
	ASSERT_EQ(0, close(v2));
	ASSERT_EQ(0, close(v1));
	ASSERT_EQ(0, close(fd));
}

static const char shared_topology[] =
	"{ \"iommus\": [ { \"name\": \"iommu0\" } ],\n"
	"  \"devices\": [\n"
	"    { \"bdf\": \"0000:05:00.0\", \"iommu\": \"iommu0\", \"group\": \"g\" },\n"
	"    { \"bdf\": \"0000:05:00.1\", \"iommu\": \"iommu0\", \"group\": \"g\" },\n"
	"    { \"bdf\": \"0000:06:00.0\", \"iommu\": \"iommu0\", \"bound\": true } ] }\n";

TEST(shared_group)
{
	char path[] = "/tmp/uiommu-vfio-topo-XXXXXX";
	int a, b, v0, v1;
	uint32_t ioas, pt;

	/* Each case is a fresh child: the machine boots at the first open below. */
	ASSERT_EQ(0, topology_file_env(path, shared_topology));
	v0 = open(VFIO(0), O_RDWR);
	unlink(path);
	ASSERT_GE(v0, 0);
	v1 = open(VFIO(1), O_RDWR);
	ASSERT_GE(v1, 0);
	ASSERT_ERRNO(ENOENT, open(VFIO(2), O_RDWR));
	a = open("/dev/iommu", O_RDWR);
	b = open("/dev/iommu", O_RDWR);

	ASSERT_EQ(0, vfio_bind(v0, a, NULL));
	/* Another iommufd is another owner: the group is taken. */
	ASSERT_ERRNO(EPERM, vfio_bind(v1, b, NULL));
	/* The same iommufd shares the claim. */
	ASSERT_EQ(0, vfio_bind(v1, a, NULL));
	/* A device of a group of two attaches (group_* below go further); closing detaches. */
	ioas = ioas_alloc(a);
	pt = ioas;
	ASSERT_EQ(0, attach_pt(v0, &pt));
	/* The claim is the group's until its last device lets go. */
	ASSERT_EQ(0, close(v0));
	v0 = open(VFIO(0), O_RDWR);
	ASSERT_GE(v0, 0);
	ASSERT_ERRNO(EPERM, vfio_bind(v0, b, NULL));
	ASSERT_EQ(0, close(v1));
	ASSERT_EQ(0, vfio_bind(v0, b, NULL));
	ASSERT_EQ(0, close(v0));
	ASSERT_EQ(0, close(a));
	ASSERT_EQ(0, close(b));
}

/*
 * A group of two PASID-capable vfio devices (vfio0, vfio1) and one device alone (vfio2). Each
 * case is a fresh child: the machine boots at its first open.
 */
static const char group_topology[] =
	"{ \"iommus\": [ { \"name\": \"iommu0\", \"max_pasids\": 1024 } ],\n"
	"  \"devices\": [\n"
	"    { \"bdf\": \"0000:05:00.0\", \"iommu\": \"iommu0\", \"group\": \"g\", \"pasid_bits\": 10 },\n"
	"    { \"bdf\": \"0000:05:00.1\", \"iommu\": \"iommu0\", \"group\": \"g\", \"pasid_bits\": 10 },\n"
	"    { \"bdf\": \"0000:06:00.0\", \"iommu\": \"iommu0\", \"pasid_bits\": 10 } ] }\n";

#define GIOVA (1ULL << 24)
#define GLEN (4 * 4096)

struct gmachine {
	int fd, v[2];
	uint32_t devid[2];
	struct uiommu_dma_dev *dma[2];
	char *buf, *buf2;
};

static int gboot(struct gmachine *m)
{
	char path[] = "/tmp/uiommu-vfio-topo-XXXXXX";
	int i;

	if (topology_file_env(path, group_topology))
		return -1;
	m->v[0] = open(VFIO(0), O_RDWR);
	unlink(path);
	m->v[1] = open(VFIO(1), O_RDWR);
	m->fd = open("/dev/iommu", O_RDWR);
	if (m->v[0] < 0 || m->v[1] < 0 || m->fd < 0)
		return -1;
	for (i = 0; i < 2; i++) {
		if (vfio_bind(m->v[i], m->fd, &m->devid[i]))
			return -1;
		m->dma[i] = uiommu_dma_dev_open_iommufd(m->fd, m->devid[i]);
		if (!m->dma[i])
			return -1;
		uiommu_dma_dev_set_timeout(m->dma[i], 100);
	}
	m->buf = mmap(NULL, 2 * GLEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m->buf == MAP_FAILED)
		return -1;
	m->buf2 = m->buf + GLEN;
	memset(m->buf, 0x11, GLEN);
	memset(m->buf2, 0x22, GLEN);
	return 0;
}

static void gshutdown(struct gmachine *m)
{
	uiommu_dma_dev_close(m->dma[0]);
	uiommu_dma_dev_close(m->dma[1]);
	close(m->v[0]);
	close(m->v[1]);
	close(m->fd);
	munmap(m->buf, 2 * GLEN);
}

/* The first byte device @i reads at @iova through @pasid (0: the RID), or -errno. */
static int gread(struct gmachine *m, int i, uint32_t pasid, uint64_t iova)
{
	unsigned char c;

	if (uiommu_dma_read(m->dma[i], pasid, iova, &c, 1,
			    (pasid ? 0 : UIOMMU_DMA_NO_PASID) | UIOMMU_DMA_NO_PRI) != 1)
		return -errno;
	return c;
}

/* The reason of device @i's last recorded fault, or 0. */
static unsigned int glast_fault(struct gmachine *m, int i)
{
	struct uiommu_dma_fault f[64];
	ssize_t n = uiommu_dma_dev_read_faults(m->dma[i], f, 64);

	return n > 0 ? f[n - 1].reason : 0;
}

static uint32_t ghwpt_alloc(struct gmachine *m, uint32_t ioas, uint32_t flags)
{
	struct iommu_hwpt_alloc alloc = {
		.size = sizeof(alloc), .flags = flags, .dev_id = m->devid[0], .pt_id = ioas,
	};

	if (ioctl(m->fd, IOMMU_HWPT_ALLOC, &alloc))
		return 0;
	return alloc.out_hwpt_id;
}

static int gattach_pasid(int vfd, uint32_t pasid, uint32_t *pt_id)
{
	struct vfio_device_attach_iommufd_pt attach = {
		.argsz = sizeof(attach), .flags = VFIO_DEVICE_ATTACH_PASID, .pt_id = *pt_id,
		.pasid = pasid,
	};
	int rc = ioctl(vfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach);

	*pt_id = attach.pt_id;
	return rc;
}

static int gdetach_pasid(int vfd, uint32_t pasid)
{
	struct vfio_device_detach_iommufd_pt detach = {
		.argsz = sizeof(detach), .flags = VFIO_DEVICE_DETACH_PASID, .pasid = pasid,
	};

	return ioctl(vfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach);
}

/* Two devices of a group, one IOAS: one automatic HWPT, one domain for the group. */
TEST(group_attach_detach)
{
	struct gmachine m;
	uint32_t ioas, pt0, pt1, other;

	ASSERT_EQ(0, gboot(&m));
	ioas = ioas_alloc(m.fd);
	ASSERT_EQ(0, ioas_map_fixed(m.fd, ioas, GIOVA, m.buf, GLEN));
	/* Bound, nothing attached: the group is on its blocking domain. */
	ASSERT_EQ(-EFAULT, gread(&m, 1, 0, GIOVA));
	ASSERT_EQ(UIOMMU_DMA_FAULT_BLOCKED, glast_fault(&m, 1));

	pt0 = ioas;
	ASSERT_EQ(0, attach_pt(m.v[0], &pt0));
	ASSERT_NE(ioas, pt0);
	/* The group moved as a whole: the device not attached yet translates too. */
	ASSERT_EQ(0x11, gread(&m, 0, 0, GIOVA));
	ASSERT_EQ(0x11, gread(&m, 1, 0, GIOVA));
	/* The second device joins the same automatic HWPT. */
	pt1 = ioas;
	ASSERT_EQ(0, attach_pt(m.v[1], &pt1));
	ASSERT_EQ(pt0, pt1);
	ASSERT_ERRNO(EBUSY, destroy(m.fd, pt0));

	/* Another HWPT while the group is on one: EINVAL, nothing changes. */
	other = ghwpt_alloc(&m, ioas, 0);
	ASSERT_NE(0, other);
	ASSERT_EQ(0, detach_pt(m.v[1]));
	pt1 = other;
	ASSERT_ERRNO(EINVAL, attach_pt(m.v[1], &pt1));
	/* Another IOAS too: its automatic HWPT cannot be joined, and the new one goes again. */
	{
		uint32_t ioas2 = ioas_alloc(m.fd);

		pt1 = ioas2;
		ASSERT_ERRNO(EINVAL, attach_pt(m.v[1], &pt1));
		ASSERT_EQ(0, destroy(m.fd, ioas2));
	}
	ASSERT_EQ(0x11, gread(&m, 1, 0, GIOVA));
	pt1 = ioas;
	ASSERT_EQ(0, attach_pt(m.v[1], &pt1));
	ASSERT_EQ(pt0, pt1);

	/* Detach of one: the other's DMA is still translated (so is the detached one's: the
	 * group has one domain). */
	ASSERT_EQ(0, detach_pt(m.v[0]));
	ASSERT_EQ(0x11, gread(&m, 1, 0, GIOVA));
	ASSERT_EQ(0x11, gread(&m, 0, 0, GIOVA));
	ASSERT_ERRNO(EBUSY, destroy(m.fd, pt0));
	/* Detach of both: the blocking domain, and the automatic HWPT is gone. */
	ASSERT_EQ(0, detach_pt(m.v[1]));
	ASSERT_EQ(-EFAULT, gread(&m, 0, 0, GIOVA));
	ASSERT_EQ(UIOMMU_DMA_FAULT_BLOCKED, glast_fault(&m, 0));
	ASSERT_EQ(-EFAULT, gread(&m, 1, 0, GIOVA));
	ASSERT_ERRNO(ENOENT, destroy(m.fd, pt0));
	ASSERT_EQ(0, destroy(m.fd, other));
	gshutdown(&m);
}

/* Replace by one member moves the group and every member's reference. */
TEST(group_replace)
{
	struct gmachine m;
	uint32_t ioas, ioas2, pt, auto_hwpt, manual;

	ASSERT_EQ(0, gboot(&m));
	ioas = ioas_alloc(m.fd);
	ioas2 = ioas_alloc(m.fd);
	ASSERT_EQ(0, ioas_map_fixed(m.fd, ioas, GIOVA, m.buf, GLEN));
	ASSERT_EQ(0, ioas_map_fixed(m.fd, ioas2, GIOVA, m.buf2, GLEN));
	manual = ghwpt_alloc(&m, ioas2, 0);
	ASSERT_NE(0, manual);

	pt = ioas;
	ASSERT_EQ(0, attach_pt(m.v[0], &pt));
	auto_hwpt = pt;
	pt = ioas;
	ASSERT_EQ(0, attach_pt(m.v[1], &pt));
	/* A second attach of vfio1 is a replace: the whole group moves. */
	pt = manual;
	ASSERT_EQ(0, attach_pt(m.v[1], &pt));
	ASSERT_EQ(manual, pt);
	ASSERT_EQ(0x22, gread(&m, 0, 0, GIOVA));
	ASSERT_EQ(0x22, gread(&m, 1, 0, GIOVA));
	/* Both references moved: the automatic HWPT died, the manual one is held twice. */
	ASSERT_ERRNO(ENOENT, destroy(m.fd, auto_hwpt));
	ASSERT_ERRNO(EBUSY, destroy(m.fd, manual));
	ASSERT_EQ(0, detach_pt(m.v[1]));
	ASSERT_ERRNO(EBUSY, destroy(m.fd, manual));
	ASSERT_EQ(0x22, gread(&m, 0, 0, GIOVA));
	/* The member left re-attaches to the page table the group is on, as an IOAS too. */
	pt = ioas2;
	ASSERT_ERRNO(EINVAL, attach_pt(m.v[1], &pt));
	pt = manual;
	ASSERT_EQ(0, attach_pt(m.v[1], &pt));
	/* And the other member moves the group back to an IOAS. */
	pt = ioas;
	ASSERT_EQ(0, attach_pt(m.v[0], &pt));
	ASSERT_NE(manual, pt);
	ASSERT_EQ(0x11, gread(&m, 1, 0, GIOVA));
	ASSERT_EQ(0, destroy(m.fd, manual));
	auto_hwpt = pt;
	ASSERT_EQ(0, detach_pt(m.v[0]));
	ASSERT_EQ(0, detach_pt(m.v[1]));
	ASSERT_ERRNO(ENOENT, destroy(m.fd, auto_hwpt));
	ASSERT_EQ(-EFAULT, gread(&m, 1, 0, GIOVA));
	gshutdown(&m);
}

/* Unbinding one member (closing its cdev) leaves the other attached and translating. */
TEST(group_unbind_order)
{
	long objects = live_objects();
	struct gmachine m;
	uint32_t ioas, pt, auto_hwpt;
	int b;

	ASSERT_EQ(0, gboot(&m));
	ioas = ioas_alloc(m.fd);
	ASSERT_EQ(0, ioas_map_fixed(m.fd, ioas, GIOVA, m.buf, GLEN));
	pt = ioas;
	ASSERT_EQ(0, attach_pt(m.v[0], &pt));
	auto_hwpt = pt;
	pt = ioas;
	ASSERT_EQ(0, attach_pt(m.v[1], &pt));
	/* The first device, whose attach moved the group, goes first. */
	ASSERT_EQ(0, close(m.v[0]));
	ASSERT_EQ(0x11, gread(&m, 1, 0, GIOVA));
	ASSERT_ERRNO(EBUSY, destroy(m.fd, auto_hwpt));
	/* Another iommufd still cannot have the group. */
	b = open("/dev/iommu", O_RDWR);
	m.v[0] = open(VFIO(0), O_RDWR);
	ASSERT_GE(m.v[0], 0);
	ASSERT_ERRNO(EPERM, vfio_bind(m.v[0], b, NULL));
	/* Bound again to ours, it joins. */
	ASSERT_EQ(0, vfio_bind(m.v[0], m.fd, &m.devid[0]));
	pt = ioas;
	ASSERT_EQ(0, attach_pt(m.v[0], &pt));
	ASSERT_EQ(auto_hwpt, pt);
	ASSERT_EQ(0, close(m.v[1]));
	m.v[1] = -1;
	ASSERT_EQ(0, detach_pt(m.v[0]));
	ASSERT_ERRNO(ENOENT, destroy(m.fd, auto_hwpt));
	ASSERT_EQ(0, close(m.v[0]));
	m.v[0] = -1;
	/* The group is free now. */
	m.v[1] = open(VFIO(1), O_RDWR);
	ASSERT_EQ(0, vfio_bind(m.v[1], b, NULL));
	ASSERT_EQ(0, close(b));
	gshutdown(&m);
	ASSERT_EQ(objects, live_objects());
}

/* PASID attachments are the group's: a device of it joins the same HWPT at that PASID. */
TEST(group_pasid)
{
	struct gmachine m;
	uint32_t ioas, hp, hp2, pt;

	ASSERT_EQ(0, gboot(&m));
	ioas = ioas_alloc(m.fd);
	ASSERT_EQ(0, ioas_map_fixed(m.fd, ioas, GIOVA, m.buf, GLEN));
	hp = ghwpt_alloc(&m, ioas, IOMMU_HWPT_ALLOC_PASID);
	hp2 = ghwpt_alloc(&m, ioas, IOMMU_HWPT_ALLOC_PASID);
	ASSERT_NE(0, hp);
	ASSERT_NE(0, hp2);

	pt = hp;
	ASSERT_EQ(0, gattach_pasid(m.v[0], 5, &pt));
	/* The PASID is set on every device of the group. */
	ASSERT_EQ(0x11, gread(&m, 1, 5, GIOVA));
	pt = hp2;
	ASSERT_ERRNO(EINVAL, gattach_pasid(m.v[1], 5, &pt));
	pt = hp;
	ASSERT_EQ(0, gattach_pasid(m.v[1], 5, &pt));
	ASSERT_EQ(hp, pt);
	/* While a PASID is attached the RID takes only a PASID-capable HWPT. */
	pt = ioas;
	ASSERT_ERRNO(EINVAL, attach_pt(m.v[0], &pt));
	pt = hp2;
	ASSERT_EQ(0, attach_pt(m.v[0], &pt));
	ASSERT_EQ(0, detach_pt(m.v[0]));

	/* A member's replace moves the group's PASID, both references with it. */
	pt = hp2;
	ASSERT_EQ(0, gattach_pasid(m.v[1], 5, &pt));
	ASSERT_EQ(0, destroy(m.fd, hp));
	ASSERT_ERRNO(EBUSY, destroy(m.fd, hp2));
	/* One member leaves: the PASID stays for the group. */
	ASSERT_EQ(0, gdetach_pasid(m.v[1], 5));
	ASSERT_EQ(0x11, gread(&m, 1, 5, GIOVA));
	ASSERT_EQ(0x11, gread(&m, 0, 5, GIOVA));
	/* A member leaving twice is no error and changes nothing. */
	ASSERT_EQ(0, gdetach_pasid(m.v[1], 5));
	ASSERT_EQ(0x11, gread(&m, 0, 5, GIOVA));
	/* The last leaves: nothing at that PASID any more. */
	ASSERT_EQ(0, gdetach_pasid(m.v[0], 5));
	ASSERT_EQ(-ENODEV, gread(&m, 1, 5, GIOVA));
	ASSERT_EQ(0, destroy(m.fd, hp2));
	/* A PASID attached at unbind is detached with the device. */
	hp = ghwpt_alloc(&m, ioas, IOMMU_HWPT_ALLOC_PASID);
	pt = hp;
	ASSERT_EQ(0, gattach_pasid(m.v[0], 7, &pt));
	pt = hp;
	ASSERT_EQ(0, gattach_pasid(m.v[1], 7, &pt));
	ASSERT_EQ(0, close(m.v[0]));
	m.v[0] = -1;
	ASSERT_EQ(0x11, gread(&m, 1, 7, GIOVA));
	ASSERT_ERRNO(EBUSY, destroy(m.fd, hp));
	ASSERT_EQ(0, close(m.v[1]));
	m.v[1] = -1;
	ASSERT_EQ(0, destroy(m.fd, hp));
	gshutdown(&m);
}

/* The cdev by any name the path walk accepts, with a character device's answers to flags. */
TEST(node_names_and_flags)
{
	int dev = open("/dev", O_RDONLY | O_DIRECTORY), fd;
	char b[4];

	ASSERT_GE(dev, 0);
	fd = open("//dev/vfio/./devices/../devices/vfio0", O_RDWR);
	ASSERT_GE(fd, 0);
	ASSERT_TRUE(uiommu_is_fd(fd));
	ASSERT_ERRNO(EINVAL, read(fd, b, sizeof(b)));
	ASSERT_ERRNO(EINVAL, write(fd, b, sizeof(b)));
	ASSERT_EQ(0, close(fd));
	fd = openat(dev, "vfio/devices/vfio0", O_RDWR);
	ASSERT_GE(fd, 0);
	ASSERT_TRUE(uiommu_is_fd(fd));
	ASSERT_EQ(0, close(fd));
	ASSERT_ERRNO(ENOTDIR, open(VFIO(0), O_RDWR | O_DIRECTORY));
	ASSERT_ERRNO(EEXIST, open(VFIO(0), O_RDWR | O_CREAT | O_EXCL, 0600));
	ASSERT_ERRNO(ENOTDIR, open(VFIO(0) "/", O_RDWR));
	/* A device that does not exist stays ENOENT whatever the flags. */
	ASSERT_ERRNO(ENOENT, openat(dev, "vfio/devices/vfio5", O_RDWR | O_DIRECTORY));
	fd = open(VFIO(0), O_PATH);
	ASSERT_GE(fd, 0);
	ASSERT_FALSE(uiommu_is_fd(fd));
	ASSERT_ERRNO(EBADF, ioctl(fd, VFIO_DEVICE_GET_INFO, NULL));
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, close(dev));
}

TEST_HARNESS_MAIN
