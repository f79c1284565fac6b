// SPDX-License-Identifier: MIT
/*
 * The vfio-pci device fd as a userspace driver sees it, black box under uiommu-run: a
 * dma-test function found as /dev/vfio/devices/vfio0, bound to an iommufd and attached to an
 * IOAS, then driven through the Linux uAPI only: GET_INFO, GET_REGION_INFO with its sparse
 * mmap capability, config space through region 7 (BAR sizing, read-only bits, the capability
 * lists, Command), BAR registers by pread/pwrite of every width and by mmap of the doorbell
 * page, GET_IRQ_INFO and SET_IRQS with an MSI-X eventfd the device fires, RESET stopping the
 * device, hot reset, DEVICE_FEATURE with DMA logging fed by the device's own writes, every
 * errno of the kernel's checks on the way; and a bounded stress of DMA racing unmap, detach,
 * reset and close (run under TSan by the sanitizer builds).
 *
 * The topology (each case is a fresh child; the machine boots at its first open):
 *   vfio0 = 0000:07:00.0 dma-test with ATS, PRI and PASID (PASID is hidden by vfio-pci);
 *   vfio1 = 0000:07:00.1 a generic function on the same bus (hot reset's set);
 *   0000:08:00.0 bound to the emulated DMA-API driver (not vfio's).
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/pci_regs.h>

#include "harness.h"
#include "vfio_utils.h"
#include "machine/models/dma-test.h"
#include "uiommu/iommufd.h"
#include "uiommu/uiommu.h"
#include "uiommu/vfio_compat.h"

#ifndef VFIO_PCI_HOT_RESET_FLAG_DEV_ID
#define VFIO_PCI_HOT_RESET_FLAG_DEV_ID (1 << 0)
#define VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED (1 << 1)
#endif
#ifndef VFIO_PCI_DEVID_OWNED
#define VFIO_PCI_DEVID_OWNED 0
#define VFIO_PCI_DEVID_NOT_OWNED -1
#endif

#define VFIO(n) "/dev/vfio/devices/vfio" #n
#define REGION(i) ((uint64_t)(i) << 40)
#define CFG REGION(VFIO_PCI_CONFIG_REGION_INDEX)
#define IOVA (1ull << 24)
#define BUFLEN (64 * 4096)

static const char topology[] =
	"{ \"iommus\": [ { \"name\": \"iommu0\", \"max_pasids\": 1024 } ],\n"
	"  \"devices\": [\n"
	"    { \"bdf\": \"0000:07:00.0\", \"iommu\": \"iommu0\", \"model\": \"dma-test\",\n"
	"      \"pri\": true, \"pasid_bits\": 10 },\n"
	"    { \"bdf\": \"0000:07:00.1\", \"iommu\": \"iommu0\" },\n"
	"    { \"bdf\": \"0000:08:00.0\", \"iommu\": \"iommu0\", \"bound\": true } ] }\n";

struct machine {
	int iommufd, vfd, v1;
	uint32_t devid, ioas;
	uint8_t *buf;       /* BUFLEN bytes mapped at IOVA */
};

static int boot(void)
{
	vfio_machine(topology, "/sys/bus/pci/devices/0000:07:00.0");
	return open(VFIO(0), O_RDWR);
}

static int attach_ioas(int vfd, uint32_t ioas)
{
	struct vfio_device_attach_iommufd_pt a = { .argsz = sizeof(a), .pt_id = ioas };

	return ioctl(vfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &a);
}


/* Boots, binds vfio0, attaches it to a fresh IOAS with BUFLEN bytes mapped at IOVA. */
static int setup(struct machine *m)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };

	memset(m, 0, sizeof(*m));
	m->v1 = -1;
	m->vfd = boot();
	m->iommufd = open("/dev/iommu", O_RDWR);
	if (m->vfd < 0 || m->iommufd < 0 || vfio_bind(m->vfd, m->iommufd, &m->devid) ||
	    ioctl(m->iommufd, IOMMU_IOAS_ALLOC, &alloc))
		return -1;
	m->ioas = alloc.out_ioas_id;
	if (attach_ioas(m->vfd, m->ioas))
		return -1;
	m->buf = mmap(NULL, BUFLEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m->buf == MAP_FAILED)
		return -1;
	memset(m->buf, 0, BUFLEN);
	return ioas_map_fixed(m->iommufd, m->ioas, IOVA, m->buf, BUFLEN);
}

static uint32_t cfg_read(int vfd, unsigned int off, unsigned int width)
{
	uint32_t v = 0;

	if (pread(vfd, &v, width, (off_t)(CFG + off)) != (ssize_t)width)
		return 0xdeadbeef;
	return v;
}

static int cfg_write(int vfd, unsigned int off, unsigned int width, uint32_t v)
{
	return pwrite(vfd, &v, width, (off_t)(CFG + off)) == (ssize_t)width ? 0 : -1;
}

static uint64_t bar_read(int vfd, unsigned int bar, uint64_t off, unsigned int width)
{
	uint64_t v = 0;

	if (pread(vfd, &v, width, (off_t)(REGION(bar) + off)) != (ssize_t)width)
		return 0xdeadbeefdeadbeefull;
	return v;
}

static int bar_write(int vfd, unsigned int bar, uint64_t off, unsigned int width, uint64_t v)
{
	return pwrite(vfd, &v, width, (off_t)(REGION(bar) + off)) == (ssize_t)width ? 0 : -1;
}

static int master_on(int vfd)
{
	return cfg_write(vfd, PCI_COMMAND, 2,
			 cfg_read(vfd, PCI_COMMAND, 2) | PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY);
}

/* Ring of queue 0 at IOVA (one page), enabled with interrupts. */
static int queue_start(struct machine *m)
{
	uint64_t q = DMA_TEST_QUEUE(0);

	if (bar_write(m->vfd, 0, q + DMA_TEST_Q_RING_BASE, 8, IOVA) ||
	    bar_write(m->vfd, 0, q + DMA_TEST_Q_RING_SIZE, 4, 16))
		return -1;
	return bar_write(m->vfd, 0, q + DMA_TEST_Q_CTRL, 4,
			 DMA_TEST_CTRL_ENABLE | DMA_TEST_CTRL_IRQ);
}

/* Descriptor @i: copy @len bytes from page 8 to page 16 + ..., completion record in page 1. */
static void desc_copy(struct machine *m, unsigned int i, uint64_t src, uint64_t dst, uint64_t len)
{
	struct dma_test_desc *d = (struct dma_test_desc *)m->buf + i;

	memset(d, 0, sizeof(*d));
	d->op = DMA_TEST_OP_COPY;
	d->flags = DMA_TEST_DESC_IRQ;
	d->src = IOVA + src;
	d->dst = IOVA + dst;
	d->len = len;
	d->completion = IOVA + 4096 + 64 * i;
	d->cookie = 0xc0c0 + i;
}

static struct dma_test_completion *completion(struct machine *m, unsigned int i)
{
	return (struct dma_test_completion *)(m->buf + 4096 + 64 * i);
}

/* Waits (poll with a bound) for the eventfd; returns its count, 0 on timeout. */
static uint64_t efd_wait(int efd, int ms)
{
	struct pollfd p = { .fd = efd, .events = POLLIN };
	uint64_t v = 0;

	if (poll(&p, 1, ms) != 1 || read(efd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

TEST(preloaded)
{
	ASSERT_TRUE(getenv("LD_PRELOAD") && strstr(getenv("LD_PRELOAD"), "uiommu"));
}

/* Before BIND: every ioctl but BIND, read, write and mmap answer EINVAL. */
TEST(unbound)
{
	struct vfio_device_info info = { .argsz = sizeof(info) };
	int vfd = boot();
	uint32_t v;

	ASSERT_GE(vfd, 0);
	ASSERT_ERRNO(EINVAL, ioctl(vfd, VFIO_DEVICE_GET_INFO, &info));
	ASSERT_ERRNO(EINVAL, ioctl(vfd, VFIO_DEVICE_RESET));
	ASSERT_ERRNO(EINVAL, pread(vfd, &v, 4, (off_t)CFG));
	ASSERT_ERRNO(EINVAL, pwrite(vfd, &v, 4, (off_t)CFG));
	ASSERT_TRUE(mmap(NULL, 4096, PROT_READ, MAP_SHARED, vfd, (off_t)(REGION(0) + 0x1000)) ==
		    MAP_FAILED);
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(0, close(vfd));
}

TEST(get_info)
{
	struct machine m;
	struct vfio_device_info info;

	ASSERT_EQ(0, setup(&m));
	memset(&info, 0xaa, sizeof(info));
	info.argsz = sizeof(info);
	ASSERT_EQ(0, ioctl(m.vfd, VFIO_DEVICE_GET_INFO, &info));
	ASSERT_EQ((uint32_t)sizeof(info), info.argsz);
	ASSERT_EQ((uint32_t)(VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET), info.flags);
	ASSERT_EQ(9u, info.num_regions);
	ASSERT_EQ(5u, info.num_irqs);
	ASSERT_EQ(0u, info.cap_offset);
	/* argsz 16: only the 16 bytes are written. */
	memset(&info, 0xaa, sizeof(info));
	info.argsz = 16;
	ASSERT_EQ(0, ioctl(m.vfd, VFIO_DEVICE_GET_INFO, &info));
	ASSERT_EQ(9u, info.num_regions);
	ASSERT_EQ(0xaaaaaaaau, info.cap_offset);
	info.argsz = 15;
	ASSERT_ERRNO(EINVAL, ioctl(m.vfd, VFIO_DEVICE_GET_INFO, &info));
	ASSERT_ERRNO(EFAULT, ioctl(m.vfd, VFIO_DEVICE_GET_INFO, (void *)8));
	/* Unknown requests, and the cdev's own ones do not reach vfio-pci. */
	ASSERT_ERRNO(ENOTTY, ioctl(m.vfd, _IO(';', 100 + 14), &info));
	ASSERT_ERRNO(ENOTTY, ioctl(m.vfd, _IO(';', 100 + 21), &info));
}

TEST(region_info)
{
	uint8_t raw[256];
	struct vfio_region_info *ri = (struct vfio_region_info *)raw;
	struct vfio_region_info_cap_sparse_mmap *sp;
	struct machine m;

	ASSERT_EQ(0, setup(&m));
	/* BAR0: 16 KiB, mmap-able only at the doorbell page: a sparse mmap capability. */
	memset(raw, 0, sizeof(raw));
	ri->argsz = sizeof(*ri);
	ri->index = 0;
	ri->cap_offset = 0x55;
	ASSERT_EQ(0, ioctl(m.vfd, VFIO_DEVICE_GET_REGION_INFO, ri));
	ASSERT_EQ((uint32_t)(sizeof(*ri) + 32), ri->argsz); /* raised: the chain did not fit */
	ASSERT_EQ(0u, ri->cap_offset);
	ASSERT_EQ((uint32_t)(VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE |
			     VFIO_REGION_INFO_FLAG_MMAP | VFIO_REGION_INFO_FLAG_CAPS), ri->flags);
	ASSERT_EQ((uint64_t)DMA_TEST_BAR0_SIZE, ri->size);
	ASSERT_EQ(REGION(0), ri->offset);
	ri->argsz = sizeof(raw);
	ASSERT_EQ(0, ioctl(m.vfd, VFIO_DEVICE_GET_REGION_INFO, ri));
	ASSERT_EQ((uint32_t)sizeof(raw), ri->argsz);
	ASSERT_EQ(32u, ri->cap_offset);
	sp = (struct vfio_region_info_cap_sparse_mmap *)(raw + ri->cap_offset);
	ASSERT_EQ(VFIO_REGION_INFO_CAP_SPARSE_MMAP, sp->header.id);
	ASSERT_EQ(1, sp->header.version);
	ASSERT_EQ(0u, sp->header.next);
	ASSERT_EQ(1u, sp->nr_areas);
	ASSERT_EQ((uint64_t)DMA_TEST_DOORBELL_PAGE, sp->areas[0].offset);
	ASSERT_EQ(4096ull, sp->areas[0].size);
	/* BAR1 is the upper half of the 64-bit BAR0; BAR2 is I/O, never mmap-able. */
	ri->argsz = sizeof(*ri);
	ri->index = 1;
	ri->cap_offset = 0x77;
	ASSERT_EQ(0, ioctl(m.vfd, VFIO_DEVICE_GET_REGION_INFO, ri));
	ASSERT_EQ(0ull, ri->size);
	ASSERT_EQ(0u, ri->flags);
	ASSERT_EQ(0x77u, ri->cap_offset); /* no capabilities: echoed */
	ri->index = 2;
	ASSERT_EQ(0, ioctl(m.vfd, VFIO_DEVICE_GET_REGION_INFO, ri));
	ASSERT_EQ((uint64_t)DMA_TEST_BAR2_SIZE, ri->size);
	ASSERT_EQ((uint32_t)(VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE), ri->flags);
	for (unsigned int i = 3; i < 6; i++) {
		ri->index = i;
		ASSERT_EQ(0, ioctl(m.vfd, VFIO_DEVICE_GET_REGION_INFO, ri));
		ASSERT_EQ(0ull, ri->size);
	}
	/* The ROM: the BAR's size (a power of two >= 2 KiB over the 1 KiB image), read-only. */
	ri->index = VFIO_PCI_ROM_REGION_INDEX;
	ri->cap_offset = 0;
	ASSERT_EQ(0, ioctl(m.vfd, VFIO_DEVICE_GET_REGION_INFO, ri));
	ASSERT_EQ((uint64_t)DMA_TEST_ROM_BAR_SIZE, ri->size);
	ASSERT_EQ((uint32_t)VFIO_REGION_INFO_FLAG_READ, ri->flags);
	ASSERT_EQ(REGION(VFIO_PCI_ROM_REGION_INDEX), ri->offset);
	/* A function whose model has no ROM: size 0, no flags, as the kernel's. */
	m.v1 = open(VFIO(1), O_RDWR);
	ASSERT_TRUE(m.v1 >= 0);
	ASSERT_EQ(0, vfio_bind(m.v1, m.iommufd, NULL));
	ASSERT_EQ(0, ioctl(m.v1, VFIO_DEVICE_GET_REGION_INFO, ri));
	ASSERT_EQ(0ull, ri->size);
	ASSERT_EQ(0u, ri->flags);
	{
		uint8_t b[4];

		ASSERT_ERRNO(EINVAL, pread(m.v1, b, 4, (off_t)REGION(VFIO_PCI_ROM_REGION_INDEX)));
	}
	close(m.v1);
	m.v1 = -1;
	ri->index = VFIO_PCI_CONFIG_REGION_INDEX;
	ASSERT_EQ(0, ioctl(m.vfd, VFIO_DEVICE_GET_REGION_INFO, ri));
	ASSERT_EQ(4096ull, ri->size);
	ASSERT_EQ(CFG, ri->offset);
	ASSERT_EQ((uint32_t)(VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE), ri->flags);
	ri->index = VFIO_PCI_VGA_REGION_INDEX;
	ASSERT_ERRNO(EINVAL, ioctl(m.vfd, VFIO_DEVICE_GET_REGION_INFO, ri));
	ri->index = 9;
	ASSERT_ERRNO(EINVAL, ioctl(m.vfd, VFIO_DEVICE_GET_REGION_INFO, ri));
	ri->index = 0;
	ri->argsz = 31;
	ASSERT_ERRNO(EINVAL, ioctl(m.vfd, VFIO_DEVICE_GET_REGION_INFO, ri));
}

TEST(config_space)
{
	uint8_t all[4096], b[4];
	unsigned int pos, ids[8], n = 0;
	struct machine m;
	uint32_t v;

	ASSERT_EQ(0, setup(&m));
	ASSERT_EQ((ssize_t)sizeof(all), pread(m.vfd, all, sizeof(all), (off_t)CFG));
	ASSERT_EQ(DMA_TEST_VENDOR_ID, cfg_read(m.vfd, PCI_VENDOR_ID, 2));
	ASSERT_EQ(DMA_TEST_DEVICE_ID, cfg_read(m.vfd, PCI_DEVICE_ID, 2));
	ASSERT_EQ((uint32_t)DMA_TEST_CLASS, cfg_read(m.vfd, PCI_CLASS_REVISION, 4) >> 8);
	/* A 4-byte read at 1 is 1@1, 2@2, 1@4: the same bytes. */
	ASSERT_EQ(4, pread(m.vfd, b, 4, (off_t)(CFG + 1)));
	ASSERT_EQ(0, memcmp(b, all + 1, 4));
	/* Out of range: EFAULT, nothing done. */
	ASSERT_ERRNO(EFAULT, pread(m.vfd, b, 1, (off_t)(CFG + 4096)));
	ASSERT_ERRNO(EFAULT, pread(m.vfd, b, 4, (off_t)(CFG + 4094)));
	ASSERT_ERRNO(EINVAL, pread(m.vfd, b, 4, (off_t)REGION(9)));
	ASSERT_EQ(0, pread(m.vfd, b, 0, (off_t)CFG));

	/* Read-only: IDs, Status; writes are dropped yet counted. */
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_VENDOR_ID, 4, 0));
	ASSERT_EQ(DMA_TEST_VENDOR_ID, cfg_read(m.vfd, PCI_VENDOR_ID, 2));
	v = cfg_read(m.vfd, PCI_STATUS, 2);
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_STATUS, 2, 0xffff));
	ASSERT_EQ(v, cfg_read(m.vfd, PCI_STATUS, 2));
	ASSERT_TRUE(v & PCI_STATUS_CAP_LIST);
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_INTERRUPT_PIN, 1, 4));
	ASSERT_EQ(1u, cfg_read(m.vfd, PCI_INTERRUPT_PIN, 1));
	/* Interrupt Line is virtual and writable. */
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_INTERRUPT_LINE, 1, 0x5a));
	ASSERT_EQ(0x5au, cfg_read(m.vfd, PCI_INTERRUPT_LINE, 1));

	/* BAR sizing through the virtual BARs. */
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_BASE_ADDRESS_0, 4, 0xffffffff));
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_BASE_ADDRESS_1, 4, 0xffffffff));
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_BASE_ADDRESS_2, 4, 0xffffffff));
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_BASE_ADDRESS_3, 4, 0xffffffff));
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_ROM_ADDRESS, 4, 0xffffffff));
	ASSERT_EQ((uint32_t)(~(DMA_TEST_BAR0_SIZE - 1) | PCI_BASE_ADDRESS_MEM_TYPE_64),
		  cfg_read(m.vfd, PCI_BASE_ADDRESS_0, 4));
	ASSERT_EQ(0xffffffffu, cfg_read(m.vfd, PCI_BASE_ADDRESS_1, 4));
	ASSERT_EQ((uint32_t)(~(DMA_TEST_BAR2_SIZE - 1) | PCI_BASE_ADDRESS_SPACE_IO),
		  cfg_read(m.vfd, PCI_BASE_ADDRESS_2, 4));
	ASSERT_EQ(0u, cfg_read(m.vfd, PCI_BASE_ADDRESS_3, 4));
	/* The ROM BAR sizes as a 2 KiB BAR: its address bits and the enable bit. */
	ASSERT_EQ((uint32_t)(~(DMA_TEST_ROM_BAR_SIZE - 1) | PCI_ROM_ADDRESS_ENABLE),
		  cfg_read(m.vfd, PCI_ROM_ADDRESS, 4));
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_ROM_ADDRESS, 4, 0xfebc1000));
	ASSERT_EQ(0xfebc1000u, cfg_read(m.vfd, PCI_ROM_ADDRESS, 4));
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_BASE_ADDRESS_0, 4, 0xfebc1234));
	ASSERT_EQ(0xfebc0004u, cfg_read(m.vfd, PCI_BASE_ADDRESS_0, 4));

	/* Command: Bus Master and Memory pass through and read back. */
	v = cfg_read(m.vfd, PCI_COMMAND, 2);
	ASSERT_EQ((uint32_t)(PCI_COMMAND_MEMORY | PCI_COMMAND_IO), v);
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_COMMAND, 2, v | PCI_COMMAND_MASTER));
	ASSERT_EQ(v | PCI_COMMAND_MASTER, cfg_read(m.vfd, PCI_COMMAND, 2));
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_COMMAND, 2, v));
	ASSERT_EQ(v, cfg_read(m.vfd, PCI_COMMAND, 2));
	/* Memory off: the memory BAR answers EIO, the I/O BAR still works. */
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_COMMAND, 2, PCI_COMMAND_IO));
	ASSERT_ERRNO(EIO, pread(m.vfd, &v, 4, (off_t)REGION(0)));
	ASSERT_EQ((uint64_t)DMA_TEST_ID, bar_read(m.vfd, 2, DMA_TEST_IO_ID, 4));
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY));
	ASSERT_EQ((uint64_t)DMA_TEST_ID, bar_read(m.vfd, 0, DMA_TEST_REG_ID, 4));
	/* The virtual INTx Disable reads back; the function's own stays the kernel's. */
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_COMMAND, 2,
			       PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_INTX_DISABLE));
	ASSERT_TRUE(cfg_read(m.vfd, PCI_COMMAND, 2) & PCI_COMMAND_INTX_DISABLE);

	/* The standard list: PM, MSI, MSI-X, PCIe, as a driver walks it. */
	for (pos = cfg_read(m.vfd, PCI_CAPABILITY_LIST, 1); pos && n < 8;
	     pos = cfg_read(m.vfd, pos + 1, 1))
		ids[n++] = cfg_read(m.vfd, pos, 1);
	ASSERT_EQ(4u, n);
	ASSERT_EQ(PCI_CAP_ID_PM, ids[0]);
	ASSERT_EQ(PCI_CAP_ID_MSI, ids[1]);
	ASSERT_EQ(PCI_CAP_ID_MSIX, ids[2]);
	ASSERT_EQ(PCI_CAP_ID_EXP, ids[3]);
	/* The extended list: ATS and PRI; PASID is hidden by vfio-pci. */
	n = 0;
	for (pos = 0x100; pos && n < 8; pos = cfg_read(m.vfd, pos, 4) >> 20 & 0xffc) {
		v = cfg_read(m.vfd, pos, 4);
		ids[n++] = v & 0xffff;
		if (!(v >> 20))
			break;
	}
	ASSERT_EQ(2u, n);
	ASSERT_EQ(PCI_EXT_CAP_ID_ATS, ids[0]);
	ASSERT_EQ(PCI_EXT_CAP_ID_PRI, ids[1]);
}

TEST(config_caps)
{
	struct machine m;
	unsigned int msi = 0, msix = 0, pm = 0, exp = 0, pos;
	uint32_t v;

	ASSERT_EQ(0, setup(&m));
	for (pos = cfg_read(m.vfd, PCI_CAPABILITY_LIST, 1); pos; pos = cfg_read(m.vfd, pos + 1, 1)) {
		switch (cfg_read(m.vfd, pos, 1)) {
		case PCI_CAP_ID_MSI: msi = pos; break;
		case PCI_CAP_ID_MSIX: msix = pos; break;
		case PCI_CAP_ID_PM: pm = pos; break;
		case PCI_CAP_ID_EXP: exp = pos; break;
		}
	}
	ASSERT_TRUE(msi && msix && pm && exp);
	/* Cap ID and Next are read-only. */
	ASSERT_EQ(0, cfg_write(m.vfd, msi, 2, 0));
	ASSERT_EQ(PCI_CAP_ID_MSI, cfg_read(m.vfd, msi, 1));
	/* MSI: Multiple Message Capable reads 0 until SET_IRQS enables MSI; Enable cannot be
	 * set by a config write. Address and data are virtual and writable. */
	ASSERT_EQ(0u, cfg_read(m.vfd, msi + PCI_MSI_FLAGS, 2) & PCI_MSI_FLAGS_QMASK);
	ASSERT_EQ(0, cfg_write(m.vfd, msi + PCI_MSI_FLAGS, 2, PCI_MSI_FLAGS_ENABLE));
	ASSERT_EQ(0u, cfg_read(m.vfd, msi + PCI_MSI_FLAGS, 2) & PCI_MSI_FLAGS_ENABLE);
	ASSERT_EQ(0, cfg_write(m.vfd, msi + PCI_MSI_ADDRESS_LO, 4, 0xfee01000));
	ASSERT_EQ(0xfee01000u, cfg_read(m.vfd, msi + PCI_MSI_ADDRESS_LO, 4));
	/* MSI-X: every write dropped; the table size reads as the function's. */
	v = cfg_read(m.vfd, msix + PCI_MSIX_FLAGS, 2);
	ASSERT_EQ(DMA_TEST_NR_QUEUES - 1, v & PCI_MSIX_FLAGS_QSIZE);
	ASSERT_EQ(0, cfg_write(m.vfd, msix + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE));
	ASSERT_EQ(v, cfg_read(m.vfd, msix + PCI_MSIX_FLAGS, 2));
	/* PCIe: Initiate FLR reads 0 always; Max Payload is virtual. */
	v = cfg_read(m.vfd, exp + PCI_EXP_DEVCTL, 2);
	ASSERT_EQ(0, cfg_write(m.vfd, exp + PCI_EXP_DEVCTL, 2, v | 0x0020));
	ASSERT_EQ((v & ~PCI_EXP_DEVCTL_BCR_FLR) | 0x0020, cfg_read(m.vfd, exp + PCI_EXP_DEVCTL, 2));
	ASSERT_EQ(0u, cfg_read(m.vfd, exp + PCI_EXP_DEVCTL, 2) & PCI_EXP_DEVCTL_BCR_FLR);
	/* PM: PME bits read 0; D3hot makes the memory BAR EIO; D0 brings it back. */
	ASSERT_EQ(0u, cfg_read(m.vfd, pm + PCI_PM_PMC, 2) & PCI_PM_CAP_PME_MASK);
	ASSERT_EQ(0, cfg_write(m.vfd, pm + PCI_PM_CTRL, 2, 3));
	ASSERT_EQ(3u, cfg_read(m.vfd, pm + PCI_PM_CTRL, 2) & 3);
	ASSERT_ERRNO(EIO, pread(m.vfd, &v, 4, (off_t)REGION(0)));
	ASSERT_EQ(0, cfg_write(m.vfd, pm + PCI_PM_CTRL, 2, 0));
	ASSERT_EQ(0u, cfg_read(m.vfd, pm + PCI_PM_CTRL, 2) & 3);
	ASSERT_EQ(4, pread(m.vfd, &v, 4, (off_t)REGION(0)));
}

TEST(bar_access)
{
	void *volatile bad;
	struct machine m;
	uint8_t b[16];

	ASSERT_EQ(0, setup(&m));
	ASSERT_EQ((uint64_t)DMA_TEST_ID, bar_read(m.vfd, 0, DMA_TEST_REG_ID, 4));
	ASSERT_EQ((uint64_t)DMA_TEST_NR_QUEUES, bar_read(m.vfd, 0, DMA_TEST_REG_NR_QUEUES, 4));
	/* Every width on the scratch register. */
	ASSERT_EQ(0, bar_write(m.vfd, 0, DMA_TEST_REG_SCRATCH, 8, 0x1122334455667788ull));
	ASSERT_EQ(0x1122334455667788ull, bar_read(m.vfd, 0, DMA_TEST_REG_SCRATCH, 8));
	ASSERT_EQ(0x55667788ull, bar_read(m.vfd, 0, DMA_TEST_REG_SCRATCH, 4));
	ASSERT_EQ(0x3344ull, bar_read(m.vfd, 0, DMA_TEST_REG_SCRATCH + 4, 2));
	ASSERT_EQ(0x11ull, bar_read(m.vfd, 0, DMA_TEST_REG_SCRATCH + 7, 1));
	ASSERT_EQ(0, bar_write(m.vfd, 0, DMA_TEST_REG_SCRATCH + 2, 2, 0xabcd));
	ASSERT_EQ(0, bar_write(m.vfd, 0, DMA_TEST_REG_SCRATCH + 1, 1, 0xef));
	ASSERT_EQ(0x11223344abcdef88ull, bar_read(m.vfd, 0, DMA_TEST_REG_SCRATCH, 8));
	/* An unaligned 16-byte access is split: 1@0x0f, ... the same bytes as aligned reads. */
	ASSERT_EQ(16, pread(m.vfd, b, 16, (off_t)(REGION(0) + DMA_TEST_REG_SCRATCH - 1)));
	ASSERT_EQ(0x88, b[1]);
	ASSERT_EQ(0x11, b[8]);
	/* The MSI-X table is never reached: all-ones, writes dropped. */
	ASSERT_EQ(~0ull, bar_read(m.vfd, 0, DMA_TEST_MSIX_TABLE, 8));
	ASSERT_EQ(0, bar_write(m.vfd, 0, DMA_TEST_MSIX_TABLE + 12, 4, 0));
	/* Clipped at the end of the BAR; past it, EINVAL; absent BARs EINVAL; ROM EINVAL. */
	ASSERT_EQ(8, pread(m.vfd, b, 16, (off_t)(REGION(0) + DMA_TEST_BAR0_SIZE - 8)));
	ASSERT_ERRNO(EINVAL, pread(m.vfd, b, 4, (off_t)(REGION(0) + DMA_TEST_BAR0_SIZE)));
	ASSERT_ERRNO(EINVAL, pread(m.vfd, b, 4, (off_t)REGION(1)));
	ASSERT_ERRNO(EINVAL, pread(m.vfd, b, 4, (off_t)REGION(3)));
	ASSERT_ERRNO(EINVAL, pread(m.vfd, b, 4, (off_t)REGION(VFIO_PCI_VGA_REGION_INDEX)));
	/* The ROM: the image's header, 0xff past the image, clipped at the BAR's end, EINVAL
	 * past it and for writes, EIO while memory decode is off. */
	{
		uint8_t rom[16];
		const off_t r = (off_t)REGION(VFIO_PCI_ROM_REGION_INDEX);

		ASSERT_EQ(4, pread(m.vfd, rom, 4, r));
		ASSERT_EQ(0x55, rom[0]);
		ASSERT_EQ(0xaa, rom[1]);
		ASSERT_EQ(DMA_TEST_ROM_SIZE / 512, rom[2]);
		ASSERT_EQ(4, pread(m.vfd, rom, 4, r + 0x1c));
		ASSERT_EQ(0, memcmp(rom, "PCIR", 4));
		ASSERT_EQ(8, pread(m.vfd, rom, 8, r + DMA_TEST_ROM_SIZE - 4));
		ASSERT_EQ(0xffu, rom[4]);
		ASSERT_EQ(0xffu, rom[7]);
		ASSERT_EQ(8, pread(m.vfd, rom, 16, r + DMA_TEST_ROM_BAR_SIZE - 8));
		ASSERT_ERRNO(EINVAL, pread(m.vfd, rom, 4, r + DMA_TEST_ROM_BAR_SIZE));
		ASSERT_ERRNO(EINVAL, pwrite(m.vfd, rom, 4, r));
		ASSERT_EQ(0, cfg_write(m.vfd, PCI_COMMAND, 2,
				       cfg_read(m.vfd, PCI_COMMAND, 2) & ~PCI_COMMAND_MEMORY));
		ASSERT_ERRNO(EIO, pread(m.vfd, rom, 4, r));
		ASSERT_EQ(4, pread(m.vfd, rom, 4, r + DMA_TEST_ROM_SIZE)); /* past the image */
		ASSERT_EQ(0, cfg_write(m.vfd, PCI_COMMAND, 2,
				       cfg_read(m.vfd, PCI_COMMAND, 2) | PCI_COMMAND_MEMORY));
		ASSERT_EQ(4, pread(m.vfd, rom, 4, r));
		ASSERT_EQ(MAP_FAILED, mmap(NULL, 4096, PROT_READ, MAP_SHARED, m.vfd, r));
		ASSERT_EQ(EINVAL, errno);
	}
	/* The I/O BAR. */
	ASSERT_EQ((uint64_t)DMA_TEST_ID, bar_read(m.vfd, 2, DMA_TEST_IO_ID, 4));
	ASSERT_EQ(0, bar_write(m.vfd, 2, DMA_TEST_IO_SCRATCH, 4, 0xcafe));
	ASSERT_EQ(0xcafeull, bar_read(m.vfd, 2, DMA_TEST_IO_SCRATCH, 4));
	ASSERT_EQ(0xcaull, bar_read(m.vfd, 2, DMA_TEST_IO_SCRATCH + 1, 1));
	/* A bad user buffer is EFAULT. */
	bad = (void *)8;
	ASSERT_ERRNO(EFAULT, pread(m.vfd, bad, 4, (off_t)REGION(0)));
}

/* The permissions column of /proc/self/maps for the mapping holding @addr ("" if none). */
static const char *map_prot(const void *addr)
{
	static char prot[8];
	unsigned long lo, hi;
	char line[512];
	FILE *f = fopen("/proc/self/maps", "r");

	prot[0] = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx %4s", &lo, &hi, prot) == 3 && lo <= (uintptr_t)addr &&
		    (uintptr_t)addr < hi)
			break;
		else
			prot[0] = 0;
	if (f)
		fclose(f);
	return prot;
}

TEST(mmap_doorbell)
{
	struct machine m;
	volatile uint32_t *db;
	void *p;

	ASSERT_EQ(0, setup(&m));
	db = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, m.vfd,
		  (off_t)(REGION(0) + DMA_TEST_DOORBELL_PAGE));
	ASSERT_TRUE(db != MAP_FAILED);
	/* The same page the device sees: a pwrite shows in the mapping, a store in the BAR. */
	ASSERT_EQ(0, bar_write(m.vfd, 0, DMA_TEST_DOORBELL(1), 4, 7));
	ASSERT_EQ(7u, db[2]);
	db[2] = 9;
	ASSERT_EQ(9ull, bar_read(m.vfd, 0, DMA_TEST_DOORBELL(1), 4));
	ASSERT_EQ(0, munmap((void *)db, 4096));
	/*
	 * More of the BAR than the area (the whole BAR, as libvfio maps it): the area's page is
	 * the device's, the register pages are PROT_NONE; past the BAR's end is EINVAL.
	 */
	p = mmap(NULL, 16384, PROT_READ | PROT_WRITE, MAP_SHARED, m.vfd, (off_t)REGION(0));
	ASSERT_TRUE(p != MAP_FAILED);
	ASSERT_EQ(9u, ((volatile uint32_t *)((char *)p + DMA_TEST_DOORBELL_PAGE))[2]);
	ASSERT_STREQ("---p", map_prot(p));			/* registers */
	ASSERT_STREQ("rw-s", map_prot((char *)p + DMA_TEST_DOORBELL_PAGE));
	ASSERT_STREQ("---p", map_prot((char *)p + DMA_TEST_MSIX_TABLE));
	ASSERT_EQ(0, munmap(p, 16384));
	p = mmap(NULL, 8192, PROT_READ, MAP_SHARED, m.vfd,
		 (off_t)(REGION(0) + DMA_TEST_DOORBELL_PAGE));
	ASSERT_TRUE(p != MAP_FAILED);
	ASSERT_EQ(0, munmap(p, 8192));
	p = mmap(NULL, 8192, PROT_READ, MAP_SHARED, m.vfd, (off_t)(REGION(0) + 3 * 4096));
	ASSERT_TRUE(p == MAP_FAILED && errno == EINVAL);
	/* The I/O BAR, config, ROM, private mappings: not mmap-able. */
	p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, m.vfd, (off_t)REGION(2));
	ASSERT_TRUE(p == MAP_FAILED && errno == EINVAL);
	p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, m.vfd, (off_t)CFG);
	ASSERT_TRUE(p == MAP_FAILED && errno == EINVAL);
	p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, m.vfd,
		 (off_t)(REGION(0) + DMA_TEST_DOORBELL_PAGE));
	ASSERT_TRUE(p == MAP_FAILED && errno == EINVAL);
}

/*
 * A BAR's mmap is device memory (VM_PFNMAP | VM_IO in the kernel): pin_user_pages() refuses
 * it, so QEMU's peer-to-peer IOMMU_IOAS_MAP of a BAR area fails with EFAULT when a domain
 * needs the pages, and nothing is mapped. After the munmap, the same addresses are memory.
 */
TEST(mmap_doorbell_not_pinnable)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct machine m;
	void *db, *p;

	ASSERT_EQ(0, setup(&m));
	db = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, m.vfd,
		  (off_t)(REGION(0) + DMA_TEST_DOORBELL_PAGE));
	ASSERT_TRUE(db != MAP_FAILED);
	/* The IOAS the device is attached to: the MAP pins at once. */
	ASSERT_EQ(-1, ioas_map_fixed(m.iommufd, m.ioas, IOVA + BUFLEN, db, 4096));
	ASSERT_EQ(EFAULT, errno);
	ASSERT_EQ(-1, ioas_unmap(m.iommufd, m.ioas, IOVA + BUFLEN, 4096));
	ASSERT_EQ(ENOENT, errno);
	/* An IOAS without a domain pins nothing at MAP (as the kernel's); the attach does. */
	ASSERT_EQ(0, ioctl(m.iommufd, IOMMU_IOAS_ALLOC, &alloc));
	ASSERT_EQ(0, ioas_map_fixed(m.iommufd, alloc.out_ioas_id, IOVA, db, 4096));
	ASSERT_EQ(-1, attach_ioas(m.vfd, alloc.out_ioas_id));
	ASSERT_EQ(EFAULT, errno);
	/* The device stays where it was: its buffer is still reachable through m.ioas. */
	ASSERT_EQ(0, ioas_unmap(m.iommufd, m.ioas, IOVA, BUFLEN));
	ASSERT_EQ(0, ioas_map_fixed(m.iommufd, m.ioas, IOVA, m.buf, BUFLEN));
	ASSERT_EQ(0, munmap(db, 4096));
	/* The addresses, memory again, pin. */
	p = mmap(db, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
		 -1, 0);
	ASSERT_TRUE(p == db);
	ASSERT_EQ(0, ioas_map_fixed(m.iommufd, m.ioas, IOVA + BUFLEN, p, 4096));
	ASSERT_EQ(0, ioas_unmap(m.iommufd, m.ioas, IOVA + BUFLEN, 4096));
	ASSERT_EQ(0, munmap(p, 4096));
}

/*
 * A load through a BAR mapping that SIGBUS answers: its value, or -1 for the SIGBUS. The jump
 * buffer is the thread's: the reset race loads from a thread of its own.
 */
static _Thread_local sigjmp_buf bus_env;

static void bus_handler(int sig)
{
	(void)sig;
	siglongjmp(bus_env, 1);
}

static int64_t load_or_sigbus(volatile uint32_t *p)
{
	struct sigaction sa = { .sa_handler = bus_handler }, old;
	int64_t v = -1;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &old);
	if (!sigsetjmp(bus_env, 1))
		v = __atomic_load_n(p, __ATOMIC_RELAXED);
	sigaction(SIGBUS, &old, NULL);
	return v;
}

/*
 * Memory decode off revokes the BAR mmaps, as the kernel's vfio-pci zaps them: a load is
 * SIGBUS until Memory is back, and then the same addresses reach the same pages (the bytes are
 * still there). A munmapped range is no longer followed: what the program maps there next is
 * never touched by a later revocation.
 */
TEST(mmap_revoked_while_memory_off)
{
	const uint16_t cmd_on = PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	volatile uint32_t *db, *whole;
	struct machine m;
	void *p;

	ASSERT_EQ(0, setup(&m));
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_COMMAND, 2, cmd_on));
	db = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, m.vfd,
		  (off_t)(REGION(0) + DMA_TEST_DOORBELL_PAGE));
	whole = mmap(NULL, 16384, PROT_READ | PROT_WRITE, MAP_SHARED, m.vfd, (off_t)REGION(0));
	ASSERT_TRUE(db != MAP_FAILED && whole != MAP_FAILED);
	db[100] = 0xabcd;
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_COMMAND, 2, PCI_COMMAND_MASTER));
	ASSERT_EQ(-1, load_or_sigbus(&db[100]));
	ASSERT_EQ(-1, load_or_sigbus(&whole[DMA_TEST_DOORBELL_PAGE / 4 + 100]));
	/* A mapping made while Memory is off is revoked from the start. */
	p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, m.vfd,
		 (off_t)(REGION(0) + DMA_TEST_DOORBELL_PAGE));
	ASSERT_TRUE(p != MAP_FAILED);
	ASSERT_EQ(-1, load_or_sigbus((volatile uint32_t *)p + 100));
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_COMMAND, 2, cmd_on));
	ASSERT_EQ(0xabcd, load_or_sigbus(&db[100]));
	ASSERT_EQ(0xabcd, load_or_sigbus(&whole[DMA_TEST_DOORBELL_PAGE / 4 + 100]));
	ASSERT_EQ(0xabcd, load_or_sigbus((volatile uint32_t *)p + 100));
	/* D3hot revokes too (the power state's bits of PMCSR, PM at 0x40). */
	ASSERT_EQ(0, cfg_write(m.vfd, 0x44, 2, 3));
	ASSERT_EQ(-1, load_or_sigbus(&db[100]));
	ASSERT_EQ(0, cfg_write(m.vfd, 0x44, 2, 0));
	ASSERT_EQ(0xabcd, load_or_sigbus(&db[100]));
	/* Unmapped, and the program's own page there: Memory off must not touch it. */
	ASSERT_EQ(0, munmap((void *)db, 4096));
	ASSERT_TRUE(mmap((void *)db, 4096, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == (void *)db);
	db[100] = 0x77;
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_COMMAND, 2, PCI_COMMAND_MASTER));
	ASSERT_EQ(0x77, load_or_sigbus(&db[100]));
	ASSERT_EQ(-1, load_or_sigbus(&whole[DMA_TEST_DOORBELL_PAGE / 4 + 100]));
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_COMMAND, 2, cmd_on));
	ASSERT_EQ(0x77, load_or_sigbus(&db[100]));
	ASSERT_EQ(0, munmap((void *)whole, 16384));
	ASSERT_EQ(0, munmap(p, 4096));
	ASSERT_EQ(0, munmap((void *)db, 4096));
}

/* The doorbell page's words the race and the reset tests use (past the queues' doorbells). */
#define DB_FIRST 256u
#define DB_LAST 1023u
#define DB_PATTERN 0x5a5a5a5au

static volatile uint32_t *doorbell_map(int vfd)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, vfd,
		       (off_t)(REGION(0) + DMA_TEST_DOORBELL_PAGE));

	return p == MAP_FAILED ? NULL : p;
}

static int bus_hot_reset(struct machine *m)
{
	struct vfio_pci_hot_reset hr = { .argsz = sizeof(hr) };
	uint32_t devid1;

	m->v1 = open(VFIO(1), O_RDWR);
	if (m->v1 < 0 || vfio_bind(m->v1, m->iommufd, &devid1))
		return -1;
	return ioctl(m->vfd, VFIO_DEVICE_PCI_HOT_RESET, &hr);
}

/*
 * Every reset revokes the BAR mappings while it runs and gives them back after it when memory
 * decode is on: the virtual Command is the user's and survives the reset (the kernel keeps its
 * vconfig; the PCI core restores the function's own Command), and a reset leaves the function
 * in D0. The area reads zero after it. With Memory off before the reset they stay revoked until
 * the user sets Memory again.
 */
TEST(mmap_across_reset)
{
	const uint16_t cmd_on = PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	volatile uint32_t *db;
	struct machine m;
	unsigned int pos;

	ASSERT_EQ(0, setup(&m));
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_COMMAND, 2, cmd_on));
	db = doorbell_map(m.vfd);
	ASSERT_TRUE(db != NULL);
	/* VFIO_DEVICE_RESET: the same pages, zeroed by the reset, reachable at once. */
	db[DB_FIRST] = DB_PATTERN;
	ASSERT_EQ(0, ioctl(m.vfd, VFIO_DEVICE_RESET));
	ASSERT_EQ((uint32_t)cmd_on, cfg_read(m.vfd, PCI_COMMAND, 2) & cmd_on);
	ASSERT_EQ(0, load_or_sigbus(&db[DB_FIRST]));
	db[DB_FIRST] = 0x1234;
	ASSERT_EQ(0x1234ull, bar_read(m.vfd, 0, DMA_TEST_DOORBELL_PAGE + 4 * DB_FIRST, 4));
	/* From D3hot (revoked), a reset brings the function to D0 and the mapping back. */
	ASSERT_EQ(0, cfg_write(m.vfd, 0x44, 2, 3));
	ASSERT_EQ(-1, load_or_sigbus(&db[DB_FIRST]));
	ASSERT_EQ(0, ioctl(m.vfd, VFIO_DEVICE_RESET));
	ASSERT_EQ(0u, cfg_read(m.vfd, 0x44, 2) & PCI_PM_CTRL_STATE_MASK);
	ASSERT_EQ(0, load_or_sigbus(&db[DB_FIRST]));
	/* Memory off: the reset does not turn it on; revoked until the user does. */
	db[DB_FIRST] = DB_PATTERN;
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_COMMAND, 2, PCI_COMMAND_MASTER));
	ASSERT_EQ(0, ioctl(m.vfd, VFIO_DEVICE_RESET));
	ASSERT_EQ(0u, cfg_read(m.vfd, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY);
	ASSERT_EQ(-1, load_or_sigbus(&db[DB_FIRST]));
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_COMMAND, 2, cmd_on));
	ASSERT_EQ(0, load_or_sigbus(&db[DB_FIRST]));
	/* PCIe Initiate FLR through the virtual Device Control: the same. */
	for (pos = cfg_read(m.vfd, PCI_CAPABILITY_LIST, 1); pos; pos = cfg_read(m.vfd, pos + 1, 1))
		if (cfg_read(m.vfd, pos, 1) == PCI_CAP_ID_EXP)
			break;
	ASSERT_NE(0u, pos);
	db[DB_FIRST] = DB_PATTERN;
	ASSERT_EQ(0, cfg_write(m.vfd, pos + PCI_EXP_DEVCTL, 2,
			       cfg_read(m.vfd, pos + PCI_EXP_DEVCTL, 2) | PCI_EXP_DEVCTL_BCR_FLR));
	ASSERT_EQ(0, load_or_sigbus(&db[DB_FIRST]));
	/* A hot reset of the bus: the same. */
	db[DB_FIRST] = DB_PATTERN;
	ASSERT_EQ(0, bus_hot_reset(&m));
	ASSERT_EQ(0, load_or_sigbus(&db[DB_FIRST]));
	db[DB_FIRST] = 7;
	ASSERT_EQ(7ull, bar_read(m.vfd, 0, DMA_TEST_DOORBELL_PAGE + 4 * DB_FIRST, 4));
	ASSERT_EQ(0, munmap((void *)db, 4096));
}

/*
 * The reset race: a reader loads two words of the doorbell page through its mapping while the
 * main thread fills the page and resets the function, 100 times. gen is a sequence count, odd
 * while the main thread fills or resets. A SIGBUS may come only while a reset runs (the
 * mapping is revoked then, never shown half reset); two loads that no fill or reset overlapped
 * see the same value, the pattern or the zeroes of the reset.
 */
struct reset_race {
	volatile uint32_t *db;
	atomic_uint gen;
	atomic_bool started, stop;
	unsigned int loads, sigbus, stray_sigbus, torn, strange;
};

static void *reset_race_reader(void *arg)
{
	struct reset_race *r = arg;

	for (unsigned int i = 0; i < 2000000 && !atomic_load(&r->stop); i++) {
		unsigned int g1 = atomic_load(&r->gen), g2;
		int64_t last = load_or_sigbus(&r->db[DB_LAST]);
		int64_t first = load_or_sigbus(&r->db[DB_FIRST]);

		g2 = atomic_load(&r->gen);
		r->loads++;
		atomic_store(&r->started, true);
		if (last < 0 || first < 0) {
			r->sigbus++;
			r->stray_sigbus += g1 == g2 && !(g1 & 1);
			continue;
		}
		r->strange += (last != 0 && last != DB_PATTERN) || (first != 0 && first != DB_PATTERN);
		r->torn += g1 == g2 && !(g1 & 1) && last != first;
	}
	return NULL;
}

TEST(mmap_reset_race)
{
	struct reset_race r = { 0 };
	struct machine m;
	unsigned int failed = 0;
	pthread_t t;

	ASSERT_EQ(0, setup(&m));
	ASSERT_EQ(0, cfg_write(m.vfd, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER));
	r.db = doorbell_map(m.vfd);
	ASSERT_TRUE(r.db != NULL);
	ASSERT_EQ(0, pthread_create(&t, NULL, reset_race_reader, &r));
	while (!atomic_load(&r.started)) /* the reader's first loads: the race needs it running */
		sched_yield();
	for (unsigned int i = 0; i < 100; i++) {
		atomic_fetch_add(&r.gen, 1);
		for (unsigned int w = DB_LAST + 1; w-- > DB_FIRST;)
			__atomic_store_n(&r.db[w], DB_PATTERN, __ATOMIC_RELAXED);
		atomic_fetch_add(&r.gen, 1);
		atomic_fetch_add(&r.gen, 1);
		failed += ioctl(m.vfd, VFIO_DEVICE_RESET) != 0;
		atomic_fetch_add(&r.gen, 1);
		/* Back and zeroed as soon as the ioctl returns. */
		failed += __atomic_load_n(&r.db[DB_FIRST], __ATOMIC_RELAXED) != 0 ||
			  __atomic_load_n(&r.db[DB_LAST], __ATOMIC_RELAXED) != 0;
	}
	atomic_store(&r.stop, true);
	ASSERT_EQ(0, pthread_join(t, NULL));
	TH_LOG("%u load pairs, %u met a revoked mapping", r.loads, r.sigbus);
	ASSERT_EQ(0u, failed);
	ASSERT_NE(0u, r.loads);
	ASSERT_EQ(0u, r.stray_sigbus);
	ASSERT_EQ(0u, r.torn);
	ASSERT_EQ(0u, r.strange);
	ASSERT_EQ(0, munmap((void *)r.db, 4096));
}

TEST(irq_info)
{
	struct vfio_irq_info ii = { .argsz = sizeof(ii) };
	static const uint32_t count[] = { 1, DMA_TEST_NR_QUEUES, DMA_TEST_NR_QUEUES, 1, 1 };
	static const uint32_t flags[] = {
		VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED,
		VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE,
		VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE,
		VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE,
		VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE,
	};
	struct machine m;

	ASSERT_EQ(0, setup(&m));
	for (unsigned int i = 0; i < 5; i++) {
		ii.index = i;
		ASSERT_EQ(0, ioctl(m.vfd, VFIO_DEVICE_GET_IRQ_INFO, &ii));
		ASSERT_EQ(count[i], ii.count);
		ASSERT_EQ(flags[i], ii.flags);
	}
	ii.index = 5;
	ASSERT_ERRNO(EINVAL, ioctl(m.vfd, VFIO_DEVICE_GET_IRQ_INFO, &ii));
	ii.index = 0;
	ii.argsz = 15;
	ASSERT_ERRNO(EINVAL, ioctl(m.vfd, VFIO_DEVICE_GET_IRQ_INFO, &ii));
}

/* A SET_IRQS argument with room for 8 data words. */
struct irq_set {
	struct vfio_irq_set hdr;
	int32_t fds[8];
};

static int set_irqs(int vfd, uint32_t flags, uint32_t index, uint32_t start, uint32_t count,
		    const int32_t *fds)
{
	struct irq_set s = { .hdr = { .argsz = sizeof(s), .flags = flags, .index = index,
				      .start = start, .count = count } };

	if (fds)
		memcpy(s.fds, fds, count * sizeof(*fds));
	return ioctl(vfd, VFIO_DEVICE_SET_IRQS, &s);
}

#define TRIG_EFD (VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER)
#define TRIG_NONE (VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER)

TEST(set_irqs_errnos)
{
	struct irq_set s;
	struct machine m;
	int32_t fds[4];
	int notefd;

	ASSERT_EQ(0, setup(&m));
	for (int i = 0; i < 4; i++)
		fds[i] = eventfd(0, EFD_CLOEXEC);
	notefd = open("/dev/null", O_RDONLY);
	/* The header's checks, in the kernel's order: all EINVAL. */
	memset(&s, 0, sizeof(s));
	s.hdr.argsz = 19;
	s.hdr.flags = TRIG_NONE;
	ASSERT_ERRNO(EINVAL, ioctl(m.vfd, VFIO_DEVICE_SET_IRQS, &s));
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, TRIG_NONE, 5, 0, 0, NULL));
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, TRIG_NONE, 2, 1, 0xfffffffe, NULL));
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, TRIG_NONE | (1u << 6), 2, 0, 0, NULL));
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, TRIG_EFD, 2, 4, 1, fds));
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, TRIG_EFD, 2, 2, 3, fds));
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL |
					     VFIO_IRQ_SET_ACTION_TRIGGER, 2, 0, 1, NULL));
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, VFIO_IRQ_SET_ACTION_TRIGGER, 2, 0, 1, NULL));
	memset(&s, 0, sizeof(s));
	s.hdr = (struct vfio_irq_set){ .argsz = 20 + 7, .flags = TRIG_EFD, .index = 2, .count = 2 };
	ASSERT_ERRNO(EINVAL, ioctl(m.vfd, VFIO_DEVICE_SET_IRQS, &s));
	/* The action: exactly one, else ENOTTY; MSI-X has no MASK. */
	ASSERT_ERRNO(ENOTTY, set_irqs(m.vfd, VFIO_IRQ_SET_DATA_NONE, 2, 0, 1, NULL));
	ASSERT_ERRNO(ENOTTY, set_irqs(m.vfd, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK |
					     VFIO_IRQ_SET_ACTION_TRIGGER, 2, 0, 1, NULL));
	ASSERT_ERRNO(ENOTTY, set_irqs(m.vfd, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK,
				      2, 0, 1, NULL));
	/* Not active: loopback and disable are EINVAL. */
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, TRIG_NONE, 2, 0, 1, NULL));
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, TRIG_NONE, 2, 0, 0, NULL));
	/* Bad eventfds: EBADF, EINVAL; nothing stays enabled. */
	fds[3] = 1000000;
	ASSERT_ERRNO(EBADF, set_irqs(m.vfd, TRIG_EFD, 2, 3, 1, fds + 3));
	fds[3] = notefd;
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, TRIG_EFD, 2, 3, 1, fds + 3));
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, TRIG_NONE, 2, 0, 0, NULL));
	fds[3] = eventfd(0, EFD_CLOEXEC);
	/* Enable MSI-X: another type is then EINVAL; INTx MASK needs INTx active. */
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_EFD, 2, 0, 2, fds));
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, TRIG_EFD, 1, 0, 1, fds));
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, TRIG_EFD, 0, 0, 1, fds));
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK,
				      0, 0, 1, NULL));
	/* No dynamic MSI-X: vectors past the first allocation are EINVAL. */
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, TRIG_EFD, 2, 2, 1, fds + 2));
	/* Loopback: vector 1 fires its eventfd. BOOL false does not. */
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_NONE, 2, 1, 1, NULL));
	ASSERT_EQ(1ull, efd_wait(fds[1], 1000));
	memset(&s, 0, sizeof(s));
	s.hdr = (struct vfio_irq_set){ .argsz = sizeof(s), .index = 2, .start = 0, .count = 2,
				       .flags = VFIO_IRQ_SET_DATA_BOOL |
						VFIO_IRQ_SET_ACTION_TRIGGER };
	((uint8_t *)s.fds)[0] = 0;
	((uint8_t *)s.fds)[1] = 1;
	ASSERT_EQ(0, ioctl(m.vfd, VFIO_DEVICE_SET_IRQS, &s));
	ASSERT_EQ(1ull, efd_wait(fds[1], 1000));
	ASSERT_EQ(0ull, efd_wait(fds[0], 0));
	/* Unbind vector 1 (fd -1): loopback reaches nothing. */
	fds[4 - 4] = -1;
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_EFD, 2, 1, 1, fds));
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_NONE, 2, 1, 1, NULL));
	ASSERT_EQ(0ull, efd_wait(fds[1], 0));
	/* Disable. */
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_NONE, 2, 0, 0, NULL));
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, TRIG_NONE, 2, 0, 1, NULL));

	/* MSI: enabling 3 vectors makes Multiple Message Capable read 2 (ceil log2 3). */
	fds[0] = eventfd(0, EFD_CLOEXEC);
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_EFD, 1, 0, 3, (int32_t[]){ fds[0], -1, -1 }));
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_NONE, 1, 0, 1, NULL));
	ASSERT_EQ(1ull, efd_wait(fds[0], 1000));
	ASSERT_ERRNO(ENOTTY, set_irqs(m.vfd, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
				      1, 0, 1, NULL));
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_NONE, 1, 0, 0, NULL));

	/* INTx: enable, loopback, mask/unmask, EVENTFD MASK is ENOTTY, disable. */
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_EFD, 0, 0, 1, fds));
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, TRIG_EFD, 0, 0, 0, fds));
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_NONE, 0, 0, 1, NULL));
	ASSERT_EQ(1ull, efd_wait(fds[0], 1000));
	ASSERT_EQ(0, set_irqs(m.vfd, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, 0, 0, 1,
			      NULL));
	ASSERT_EQ(0, set_irqs(m.vfd, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1,
			      NULL));
	ASSERT_ERRNO(ENOTTY, set_irqs(m.vfd, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_MASK,
				      0, 0, 1, fds));
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_NONE, 0, 0, 0, NULL));
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, TRIG_NONE, 0, 0, 0, NULL));

	/* ERR and REQ: one eventfd each. */
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, TRIG_NONE, 4, 0, 1, NULL));
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_EFD, 4, 0, 1, fds));
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_NONE, 4, 0, 1, NULL));
	ASSERT_EQ(1ull, efd_wait(fds[0], 1000));
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, TRIG_EFD, 4, 0, 1, (int32_t[]){ -2 }));
	ASSERT_ERRNO(ENOTTY, set_irqs(m.vfd, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK,
				      3, 0, 1, NULL));
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_NONE, 4, 0, 0, NULL));
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, TRIG_NONE, 4, 0, 0, NULL));
	ASSERT_ERRNO(EFAULT, ioctl(m.vfd, VFIO_DEVICE_SET_IRQS, (void *)8));
}

/*
 * The INTx unmask irqfd (KVM's resampler): a signal of it unmasks INTx, and a line the device
 * still asserts signals the trigger again at once; a signal already pending counts at install.
 * The errnos are the kernel's virqfd's.
 */
TEST(intx_unmask_irqfd)
{
	const uint32_t unmask_efd = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK;
	int32_t trig = eventfd(0, EFD_CLOEXEC), unmask = eventfd(0, EFD_CLOEXEC);
	int32_t other = eventfd(0, EFD_CLOEXEC), notefd = open("/dev/null", O_RDONLY);
	struct machine m;

	ASSERT_EQ(0, setup(&m));
	ASSERT_TRUE(trig >= 0 && unmask >= 0 && other >= 0 && notefd >= 0);
	/* INTx must be active. */
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, unmask_efd, 0, 0, 1, &unmask));
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_EFD, 0, 0, 1, &trig));
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, unmask_efd, 0, 1, 1, &unmask));
	ASSERT_ERRNO(EBADF, set_irqs(m.vfd, unmask_efd, 0, 0, 1, (int32_t[]){ 1000000 }));
	ASSERT_ERRNO(EINVAL, set_irqs(m.vfd, unmask_efd, 0, 0, 1, &notefd));
	ASSERT_EQ(0, set_irqs(m.vfd, unmask_efd, 0, 0, 1, &unmask));
	ASSERT_ERRNO(EBUSY, set_irqs(m.vfd, unmask_efd, 0, 0, 1, &other));
	/* The device asserts INTx (a NOP with IRQ): the trigger fires once, automasked. */
	ASSERT_EQ(0, master_on(m.vfd));
	ASSERT_EQ(0, queue_start(&m));
	memset(m.buf, 0, 64);
	((struct dma_test_desc *)m.buf)->op = DMA_TEST_OP_NOP;
	((struct dma_test_desc *)m.buf)->flags = DMA_TEST_DESC_IRQ;
	ASSERT_EQ(0, bar_write(m.vfd, 0, DMA_TEST_DOORBELL(0), 4, 1));
	ASSERT_EQ(1ull, efd_wait(trig, 5000));
	/* The resampler signals: unmasked, the line is still up, so the trigger fires again. */
	ASSERT_EQ(8, write(unmask, &(uint64_t){ 1 }, 8));
	ASSERT_EQ(1ull, efd_wait(trig, 5000));
	/* Removed with -1 (twice is no error), then a signal pending before the install counts. */
	ASSERT_EQ(0, set_irqs(m.vfd, unmask_efd, 0, 0, 1, (int32_t[]){ -1 }));
	ASSERT_EQ(0, set_irqs(m.vfd, unmask_efd, 0, 0, 1, (int32_t[]){ -1 }));
	ASSERT_EQ(8, write(other, &(uint64_t){ 1 }, 8));
	ASSERT_EQ(0, set_irqs(m.vfd, unmask_efd, 0, 0, 1, &other));
	ASSERT_EQ(1ull, efd_wait(trig, 5000));
	/* The watcher consumed the count, as the kernel's virqfd does. */
	ASSERT_EQ(0ull, efd_wait(other, 0));
	/* Disabling INTx drops the unmask irqfd too: a new one installs without EBUSY. */
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_NONE, 0, 0, 0, NULL));
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_EFD, 0, 0, 1, &trig));
	ASSERT_EQ(0, set_irqs(m.vfd, unmask_efd, 0, 0, 1, &unmask));
	/* The caller's close does not end ours (we hold a duplicate); closing the device does. */
	close(unmask);
	close(other);
	close(notefd);
}

static int ioeventfd(int vfd, uint32_t argsz, uint32_t flags, uint64_t offset, uint64_t data,
		     int32_t fd)
{
	struct vfio_device_ioeventfd io = {
		.argsz = argsz, .flags = flags, .offset = offset, .data = data, .fd = fd,
	};

	return ioctl(vfd, VFIO_DEVICE_IOEVENTFD, &io);
}

/*
 * VFIO_DEVICE_IOEVENTFD: a signal of the eventfd becomes the registered BAR write. Here the
 * write is dma-test's doorbell, as KVM's ioeventfd of a guest's doorbell store would be: the
 * device runs the descriptor and raises MSI-X without the driver writing the BAR itself. The
 * errnos are the kernel's vfio_pci_ioeventfd()'s.
 */
TEST(ioeventfd)
{
	const uint32_t sz = sizeof(struct vfio_device_ioeventfd), w4 = VFIO_DEVICE_IOEVENTFD_32;
	const uint64_t db = REGION(0) + DMA_TEST_DOORBELL(0);
	int32_t kick = eventfd(0, EFD_CLOEXEC), irq = eventfd(0, EFD_CLOEXEC);
	int notefd = open("/dev/null", O_RDONLY);
	struct machine m;

	ASSERT_EQ(0, setup(&m));
	ASSERT_TRUE(kick >= 0 && irq >= 0 && notefd >= 0);
	ASSERT_ERRNO(EINVAL, ioeventfd(m.vfd, 27, w4, db, 1, kick));
	ASSERT_ERRNO(EINVAL, ioeventfd(m.vfd, sz, w4 | (1u << 4), db, 1, kick));
	ASSERT_ERRNO(EINVAL, ioeventfd(m.vfd, sz, 0, db, 1, kick));
	ASSERT_ERRNO(EINVAL, ioeventfd(m.vfd, sz, VFIO_DEVICE_IOEVENTFD_8 | w4, db, 1, kick));
	ASSERT_ERRNO(EINVAL, ioeventfd(m.vfd, sz, w4, db, 1, -2));
	ASSERT_ERRNO(EINVAL, ioeventfd(m.vfd, sz, w4, CFG, 1, kick));
	ASSERT_ERRNO(EINVAL, ioeventfd(m.vfd, sz, w4, REGION(VFIO_PCI_ROM_REGION_INDEX), 1, kick));
	ASSERT_ERRNO(EINVAL, ioeventfd(m.vfd, sz, w4, REGION(0) + DMA_TEST_BAR0_SIZE - 2, 1, kick));
	ASSERT_ERRNO(EINVAL, ioeventfd(m.vfd, sz, w4, REGION(3), 1, kick));
	ASSERT_ERRNO(EINVAL, ioeventfd(m.vfd, sz, w4, REGION(0) + DMA_TEST_MSIX_TABLE + 12, 1,
				       kick));
	ASSERT_ERRNO(EINVAL, ioeventfd(m.vfd, sz, VFIO_DEVICE_IOEVENTFD_64, db, 1, kick));
	ASSERT_ERRNO(ENODEV, ioeventfd(m.vfd, sz, w4, db, 1, -1));
	ASSERT_ERRNO(EBADF, ioeventfd(m.vfd, sz, w4, db, 1, 1000000));
	ASSERT_ERRNO(EINVAL, ioeventfd(m.vfd, sz, w4, db, 1, notefd));
	ASSERT_ERRNO(EFAULT, ioctl(m.vfd, VFIO_DEVICE_IOEVENTFD, (void *)8));
	/* Registered: the same triple again is EEXIST, another datum is another registration. */
	ASSERT_EQ(0, ioeventfd(m.vfd, sz, w4, db, 1, kick));
	ASSERT_ERRNO(EEXIST, ioeventfd(m.vfd, sz, w4, db, 1, irq));
	ASSERT_EQ(0, ioeventfd(m.vfd, sz, w4, REGION(2) + DMA_TEST_IO_SCRATCH, 0x5a5a, kick));
	/* The caller's close does not end it: we hold a duplicate, as for IRQ eventfds. */
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_EFD, 2, 0, 1, &irq));
	ASSERT_EQ(0, master_on(m.vfd));
	ASSERT_EQ(0, queue_start(&m));
	desc_copy(&m, 0, 8 * 4096, 16 * 4096, 64);
	ASSERT_EQ(8, write(kick, &(uint64_t){ 1 }, 8));
	/* The doorbell write rang: the descriptor ran and its interrupt came. */
	ASSERT_EQ(1ull, efd_wait(irq, 5000));
	ASSERT_EQ(DMA_TEST_COMP_DONE, completion(&m, 0)->status);
	ASSERT_EQ(1ull, bar_read(m.vfd, 0, DMA_TEST_QUEUE(0) + DMA_TEST_Q_HEAD, 4));
	/*
	 * The same signal made the I/O BAR write too. The two registrations are served one after
	 * the other, in no promised order (the kernel promises none either), so the doorbell's
	 * interrupt may come first: wait for the write, bounded.
	 */
	for (int i = 0; i < 5000 && bar_read(m.vfd, 2, DMA_TEST_IO_SCRATCH, 4) != 0x5a5a; i++)
		usleep(1000);
	ASSERT_EQ(0x5a5aull, bar_read(m.vfd, 2, DMA_TEST_IO_SCRATCH, 4));
	/* Removed by fd -1 (its triple); a second removal finds none. */
	ASSERT_EQ(0, ioeventfd(m.vfd, sz, w4, db, 1, -1));
	ASSERT_ERRNO(ENODEV, ioeventfd(m.vfd, sz, w4, db, 1, -1));
	ASSERT_EQ(0, ioeventfd(m.vfd, sz, w4, db, 1, irq)); /* the triple is free again */
	close(notefd);
	close(kick);
}

/* The device copies by DMA through the IOMMU and raises its MSI-X vector: the eventfd fires. */
TEST(msix_dma)
{
	struct machine m;
	int32_t efd = eventfd(0, EFD_CLOEXEC);

	ASSERT_EQ(0, setup(&m));
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_EFD, 2, 0, 1, &efd));
	ASSERT_EQ(0, master_on(m.vfd));
	ASSERT_EQ(0, queue_start(&m));
	for (int i = 0; i < 4096; i++)
		m.buf[8 * 4096 + i] = (uint8_t)(i * 7);
	desc_copy(&m, 0, 8 * 4096, 16 * 4096, 4096);
	ASSERT_EQ(0, bar_write(m.vfd, 0, DMA_TEST_DOORBELL(0), 4, 1));
	/* The interrupt comes after the completion record: nothing to poll for. */
	ASSERT_EQ(1ull, efd_wait(efd, 5000));
	ASSERT_EQ(DMA_TEST_COMP_DONE, completion(&m, 0)->status);
	ASSERT_EQ(0xc0c0ull, completion(&m, 0)->cookie);
	ASSERT_EQ(0, memcmp(m.buf + 8 * 4096, m.buf + 16 * 4096, 4096));
}

/* RESET: the device is back at power-on, its queues stopped; nothing more is DMAed. */
TEST(reset_stops_dma)
{
	struct machine m;
	int32_t efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	ASSERT_EQ(0, setup(&m));
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_EFD, 2, 0, 1, &efd));
	ASSERT_EQ(0, master_on(m.vfd));
	ASSERT_EQ(0, queue_start(&m));
	desc_copy(&m, 0, 8 * 4096, 16 * 4096, 4096);
	ASSERT_EQ(0, bar_write(m.vfd, 0, DMA_TEST_DOORBELL(0), 4, 1));
	ASSERT_EQ(1ull, efd_wait(efd, 5000));
	ASSERT_EQ(1ull, bar_read(m.vfd, 0, DMA_TEST_QUEUE(0) + DMA_TEST_Q_COMPLETED, 4));
	ASSERT_EQ(0, ioctl(m.vfd, VFIO_DEVICE_RESET));
	/* The queue's registers are back at zero, the doorbell page too. */
	ASSERT_EQ(0ull, bar_read(m.vfd, 0, DMA_TEST_QUEUE(0) + DMA_TEST_Q_RING_BASE, 8));
	ASSERT_EQ(0ull, bar_read(m.vfd, 0, DMA_TEST_QUEUE(0) + DMA_TEST_Q_CTRL, 4));
	ASSERT_EQ(0ull, bar_read(m.vfd, 0, DMA_TEST_DOORBELL(0), 4));
	/* A doorbell now finds the queue disabled: it stays stopped, nothing is taken. */
	desc_copy(&m, 1, 8 * 4096, 24 * 4096, 4096);
	ASSERT_EQ(0, bar_write(m.vfd, 0, DMA_TEST_DOORBELL(0), 4, 2));
	ASSERT_EQ(0ull, bar_read(m.vfd, 0, DMA_TEST_QUEUE(0) + DMA_TEST_Q_STATUS, 4) &
			     DMA_TEST_STATUS_RUNNING);
	ASSERT_EQ(0ull, bar_read(m.vfd, 0, DMA_TEST_QUEUE(0) + DMA_TEST_Q_HEAD, 4));
	ASSERT_EQ(0ull, bar_read(m.vfd, 0, DMA_TEST_QUEUE(0) + DMA_TEST_Q_COMPLETED, 4));
	ASSERT_EQ(0u, completion(&m, 1)->status);
	/* The interrupt setup survives the reset (the kernel restores it): loopback works. */
	while (efd_wait(efd, 0))
		;
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_NONE, 2, 0, 1, NULL));
	ASSERT_EQ(1ull, efd_wait(efd, 1000));
}

/* PCIe Initiate FLR through the virtual Device Control resets the function too. */
TEST(pcie_flr)
{
	struct machine m;
	unsigned int pos;

	ASSERT_EQ(0, setup(&m));
	for (pos = cfg_read(m.vfd, PCI_CAPABILITY_LIST, 1); pos; pos = cfg_read(m.vfd, pos + 1, 1))
		if (cfg_read(m.vfd, pos, 1) == PCI_CAP_ID_EXP)
			break;
	ASSERT_NE(0u, pos);
	ASSERT_TRUE(cfg_read(m.vfd, pos + PCI_EXP_DEVCAP, 4) & PCI_EXP_DEVCAP_FLR);
	ASSERT_EQ(0, bar_write(m.vfd, 0, DMA_TEST_REG_SCRATCH, 8, 0x77));
	ASSERT_EQ(0, cfg_write(m.vfd, pos + PCI_EXP_DEVCTL, 2,
			       cfg_read(m.vfd, pos + PCI_EXP_DEVCTL, 2) | PCI_EXP_DEVCTL_BCR_FLR));
	ASSERT_EQ(0ull, bar_read(m.vfd, 0, DMA_TEST_REG_SCRATCH, 8));
	/* The decode the user had is restored with the header. */
	ASSERT_TRUE(cfg_read(m.vfd, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY);
}

TEST(hot_reset)
{
	uint8_t raw[12 + 8 * 4];
	struct vfio_pci_hot_reset_info *hi = (struct vfio_pci_hot_reset_info *)raw;
	struct vfio_pci_dependent_device *dd = (struct vfio_pci_dependent_device *)(raw + 12);
	struct vfio_pci_hot_reset hr = { .argsz = sizeof(hr) };
	struct machine m;
	uint32_t devid1;

	ASSERT_EQ(0, setup(&m));
	/* Too small: ENOSPC with the count needed. */
	memset(raw, 0, sizeof(raw));
	hi->argsz = 12;
	ASSERT_ERRNO(ENOSPC, ioctl(m.vfd, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, hi));
	ASSERT_EQ(2u, hi->count);
	ASSERT_EQ(0u, hi->flags);
	hi->argsz = 11;
	ASSERT_ERRNO(EINVAL, ioctl(m.vfd, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, hi));
	/* vfio1 is not bound to our iommufd: NOT_OWNED, and the hot reset is refused. */
	hi->argsz = sizeof(raw);
	ASSERT_EQ(0, ioctl(m.vfd, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, hi));
	ASSERT_EQ(2u, hi->count);
	ASSERT_EQ((uint32_t)VFIO_PCI_HOT_RESET_FLAG_DEV_ID, hi->flags);
	ASSERT_EQ(m.devid, dd[0].group_id);
	ASSERT_EQ((uint32_t)VFIO_PCI_DEVID_NOT_OWNED, dd[1].group_id);
	ASSERT_EQ(7, dd[0].bus);
	ASSERT_EQ(0, dd[0].devfn);
	ASSERT_EQ(1, dd[1].devfn);
	ASSERT_ERRNO(EINVAL, ioctl(m.vfd, VFIO_DEVICE_PCI_HOT_RESET, &hr));
	/* The cdev form takes no group fds; flags must be 0. */
	hr.count = 1;
	ASSERT_ERRNO(EINVAL, ioctl(m.vfd, VFIO_DEVICE_PCI_HOT_RESET, &hr));
	hr.count = 0;
	hr.flags = 1;
	ASSERT_ERRNO(EINVAL, ioctl(m.vfd, VFIO_DEVICE_PCI_HOT_RESET, &hr));
	hr.flags = 0;
	/* Bind vfio1 to the same iommufd: both owned, the bus resets. */
	m.v1 = open(VFIO(1), O_RDWR);
	ASSERT_GE(m.v1, 0);
	ASSERT_EQ(0, vfio_bind(m.v1, m.iommufd, &devid1));
	ASSERT_EQ(0, ioctl(m.vfd, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, hi));
	ASSERT_EQ((uint32_t)(VFIO_PCI_HOT_RESET_FLAG_DEV_ID | VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED),
		  hi->flags);
	ASSERT_EQ(devid1, dd[1].group_id);
	ASSERT_EQ(0, bar_write(m.vfd, 0, DMA_TEST_REG_SCRATCH, 8, 0x1234));
	ASSERT_EQ(0, ioctl(m.vfd, VFIO_DEVICE_PCI_HOT_RESET, &hr));
	ASSERT_EQ(0ull, bar_read(m.vfd, 0, DMA_TEST_REG_SCRATCH, 8));
}

struct feature_buf {
	struct vfio_device_feature f;
	uint8_t data[64];
};

static int feature(int vfd, uint32_t flags, const void *data, size_t len)
{
	struct feature_buf b = { .f = { .argsz = (uint32_t)(sizeof(b.f) + len), .flags = flags } };

	if (len)
		memcpy(b.data, data, len);
	return ioctl(vfd, VFIO_DEVICE_FEATURE, &b);
}

static int log_start(int vfd, uint64_t pgsize, struct vfio_device_feature_dma_logging_range *r,
		     uint32_t n)
{
	struct vfio_device_feature_dma_logging_control c = {
		.page_size = pgsize, .num_ranges = n, .ranges = (uintptr_t)r,
	};

	return feature(vfd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START, &c,
		       sizeof(c));
}

static int log_report(int vfd, uint64_t iova, uint64_t len, uint64_t pgsize, uint64_t *bm)
{
	struct vfio_device_feature_dma_logging_report r = {
		.iova = iova, .length = len, .page_size = pgsize, .bitmap = (uintptr_t)bm,
	};

	return feature(vfd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, &r,
		       sizeof(r));
}

TEST(feature)
{
	struct vfio_device_feature_dma_logging_range r[2] = {
		{ .iova = IOVA, .length = BUFLEN },
	};
	struct vfio_device_feature f = { .argsz = 7 };
	static struct vfio_device_feature_dma_logging_range many[257];
	struct machine m;
	uint8_t uuid[16] = { 1 };

	ASSERT_EQ(0, setup(&m));
	ASSERT_ERRNO(EINVAL, ioctl(m.vfd, VFIO_DEVICE_FEATURE, &f));
	ASSERT_ERRNO(EINVAL, feature(m.vfd, 1u << 19 | 6, NULL, 0));
	ASSERT_ERRNO(EINVAL, feature(m.vfd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | 6,
				     NULL, 0));
	/* PROBE: the ops the feature has, no data touched; unsupported features ENOTTY. */
	ASSERT_EQ(0, feature(m.vfd, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET | 6, NULL, 0));
	ASSERT_EQ(0, feature(m.vfd, VFIO_DEVICE_FEATURE_PROBE | 6, NULL, 0));
	ASSERT_ERRNO(EINVAL, feature(m.vfd, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET |
				     VFIO_DEVICE_FEATURE_SET | 6, NULL, 0));
	ASSERT_ERRNO(EINVAL, feature(m.vfd, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET | 6,
				     NULL, 0));
	ASSERT_EQ(0, feature(m.vfd, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET | 8, NULL, 0));
	ASSERT_ERRNO(EINVAL, feature(m.vfd, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET | 8,
				     NULL, 0));
	ASSERT_ERRNO(ENOTTY, feature(m.vfd, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET |
				     VFIO_DEVICE_FEATURE_PCI_VF_TOKEN, NULL, 0));
	ASSERT_ERRNO(ENOTTY, feature(m.vfd, VFIO_DEVICE_FEATURE_SET |
				     VFIO_DEVICE_FEATURE_PCI_VF_TOKEN, uuid, sizeof(uuid)));
	ASSERT_ERRNO(ENOTTY, feature(m.vfd, VFIO_DEVICE_FEATURE_PROBE | 1, NULL, 0));
	ASSERT_ERRNO(EINVAL, feature(m.vfd, VFIO_DEVICE_FEATURE_SET | 12, NULL, 0));
	/* Without PROBE one of GET/SET, and the minimum size. */
	ASSERT_ERRNO(EINVAL, feature(m.vfd, 6, NULL, 0));
	ASSERT_ERRNO(EINVAL, feature(m.vfd, VFIO_DEVICE_FEATURE_SET | 6, uuid, 8));

	/* START's checks. */
	ASSERT_ERRNO(EINVAL, log_start(m.vfd, 4096, r, 0));
	ASSERT_ERRNO(E2BIG, log_start(m.vfd, 4096, many, 257));
	r[1] = (struct vfio_device_feature_dma_logging_range){ .iova = IOVA + 100, .length = 4096 };
	ASSERT_ERRNO(EINVAL, log_start(m.vfd, 4096, r, 2));
	r[1] = (struct vfio_device_feature_dma_logging_range){ .iova = IOVA + 4096, .length = 4096 };
	ASSERT_ERRNO(EINVAL, log_start(m.vfd, 4096, r, 2)); /* overlap */
	r[1] = (struct vfio_device_feature_dma_logging_range){ .iova = ~0ull << 12, .length = 8192 };
	ASSERT_ERRNO(EOVERFLOW, log_start(m.vfd, 4096, r, 2));
	ASSERT_ERRNO(EFAULT, log_start(m.vfd, 4096, (void *)8, 1));
	/* REPORT before START; STOP without START is fine. */
	ASSERT_ERRNO(EINVAL, log_report(m.vfd, IOVA, BUFLEN, 4096, (uint64_t[1]){ 0 }));
	ASSERT_EQ(0, feature(m.vfd, VFIO_DEVICE_FEATURE_SET | 7, NULL, 0));
	ASSERT_EQ(0, log_start(m.vfd, 4096, r, 1));
	ASSERT_ERRNO(EINVAL, log_start(m.vfd, 4096, r, 1)); /* one START at a time */
	ASSERT_ERRNO(EINVAL, log_report(m.vfd, IOVA, BUFLEN, 1000, (uint64_t[1]){ 0 }));
	ASSERT_ERRNO(EINVAL, log_report(m.vfd, IOVA, BUFLEN, 2048, (uint64_t[1]){ 0 }));
	ASSERT_ERRNO(EOVERFLOW, log_report(m.vfd, ~0ull - 4095, 8192, 4096, (uint64_t[1]){ 0 }));
	ASSERT_EQ(0, feature(m.vfd, VFIO_DEVICE_FEATURE_SET | 7, NULL, 0));
}

/* DMA_LOGGING_REPORT shows exactly the pages the device wrote, then reads as clean. */
TEST(dma_logging)
{
	struct vfio_device_feature_dma_logging_range r = { .iova = IOVA, .length = BUFLEN };
	struct machine m;
	uint64_t bm[1] = { 0 };
	int32_t efd = eventfd(0, EFD_CLOEXEC);

	ASSERT_EQ(0, setup(&m));
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_EFD, 2, 0, 1, &efd));
	ASSERT_EQ(0, log_start(m.vfd, 4096, &r, 1));
	ASSERT_EQ(0, master_on(m.vfd));
	ASSERT_EQ(0, queue_start(&m));
	/* Copy 2 pages from 8-9 to 20-21; the completion record lands in page 1. */
	desc_copy(&m, 0, 8 * 4096, 20 * 4096, 8192);
	ASSERT_EQ(0, bar_write(m.vfd, 0, DMA_TEST_DOORBELL(0), 4, 1));
	ASSERT_EQ(1ull, efd_wait(efd, 5000));
	ASSERT_EQ(0, log_report(m.vfd, IOVA, BUFLEN, 4096, bm));
	ASSERT_EQ((1ull << 1) | (1ull << 20) | (1ull << 21), bm[0]);
	/* Read and clear: a second report adds nothing. */
	bm[0] = 0;
	ASSERT_EQ(0, log_report(m.vfd, IOVA, BUFLEN, 4096, bm));
	ASSERT_EQ(0ull, bm[0]);
	/* A coarser page size folds pages together. */
	desc_copy(&m, 1, 8 * 4096, 33 * 4096, 4096);
	ASSERT_EQ(0, bar_write(m.vfd, 0, DMA_TEST_DOORBELL(0), 4, 2));
	ASSERT_EQ(1ull, efd_wait(efd, 5000));
	bm[0] = 0;
	ASSERT_EQ(0, log_report(m.vfd, IOVA, BUFLEN, 4 * 4096, bm));
	ASSERT_EQ((1ull << 0) | (1ull << 8), bm[0]);
	ASSERT_EQ(0, feature(m.vfd, VFIO_DEVICE_FEATURE_SET | 7, NULL, 0));
	ASSERT_ERRNO(EINVAL, log_report(m.vfd, IOVA, BUFLEN, 4096, bm));
}

/* ---- the legacy group's device fd: the same vfio-pci behind VFIO_GROUP_GET_DEVICE_FD -------- */

static int group_open(const char *bdf, int container)
{
	char path[96], link[96];
	ssize_t n;
	int gid, g;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return -1;
	link[n] = 0;
	if (sscanf(strrchr(link, '/') + 1, "%d", &gid) != 1)
		return -1;
	snprintf(path, sizeof(path), "/dev/vfio/%d", gid);
	g = open(path, O_RDWR);
	if (g < 0 || ioctl(g, VFIO_GROUP_SET_CONTAINER, &container))
		return -1;
	return g;
}

TEST(group_device_fd)
{
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map), .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.iova = IOVA, .size = BUFLEN,
	};
	struct vfio_device_attach_iommufd_pt at = { .argsz = sizeof(at) };
	struct vfio_device_info info = { .argsz = sizeof(info) };
	uint8_t raw[12 + 8 * 4];
	struct vfio_pci_hot_reset_info *hi = (struct vfio_pci_hot_reset_info *)raw;
	struct vfio_pci_dependent_device *dd = (struct vfio_pci_dependent_device *)(raw + 12);
	struct { struct vfio_pci_hot_reset h; int32_t fds[2]; } hr = {
		.h = { .argsz = sizeof(hr) } };
	int32_t efd = eventfd(0, EFD_CLOEXEC);
	int c, g0, g1, d, v;
	struct machine m;

	v = boot(); /* the machine, then the legacy way in */
	ASSERT_GE(v, 0);
	ASSERT_EQ(0, close(v));
	c = open("/dev/vfio/vfio", O_RDWR);
	ASSERT_GE(c, 0);
	g0 = group_open("0000:07:00.0", c);
	ASSERT_GE(g0, 0);
	ASSERT_EQ(0, ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
	m.buf = mmap(NULL, BUFLEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(m.buf != MAP_FAILED);
	memset(m.buf, 0, BUFLEN);
	map.vaddr = (uintptr_t)m.buf;
	ASSERT_EQ(0, ioctl(c, VFIO_IOMMU_MAP_DMA, &map));
	d = ioctl(g0, VFIO_GROUP_GET_DEVICE_FD, "0000:07:00.0");
	ASSERT_GE(d, 0);
	m.vfd = d;
	/* vfio-pci answers; the cdev's own ioctls do not exist here. */
	ASSERT_EQ(0, ioctl(d, VFIO_DEVICE_GET_INFO, &info));
	ASSERT_EQ(9u, info.num_regions);
	ASSERT_EQ(DMA_TEST_VENDOR_ID, cfg_read(d, PCI_VENDOR_ID, 2));
	ASSERT_ERRNO(EINVAL, vfio_bind(d, c, NULL));
	ASSERT_ERRNO(ENOTTY, ioctl(d, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at));
	/* DMA through the container's mappings, the MSI-X eventfd fires. */
	ASSERT_EQ(0, set_irqs(d, TRIG_EFD, 2, 0, 1, &efd));
	ASSERT_EQ(0, master_on(d));
	ASSERT_EQ(0, queue_start(&m));
	memset(m.buf + 8 * 4096, 0x5c, 4096);
	desc_copy(&m, 0, 8 * 4096, 16 * 4096, 4096);
	ASSERT_EQ(0, bar_write(d, 0, DMA_TEST_DOORBELL(0), 4, 1));
	ASSERT_EQ(1ull, efd_wait(efd, 5000));
	ASSERT_EQ(0, memcmp(m.buf + 8 * 4096, m.buf + 16 * 4096, 4096));
	/* Hot reset, group form: group numbers, no flags; every group of the bus is needed. */
	hi->argsz = sizeof(raw);
	ASSERT_EQ(0, ioctl(d, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, hi));
	ASSERT_EQ(0u, hi->flags);
	ASSERT_EQ(2u, hi->count);
	ASSERT_NE(dd[0].group_id, dd[1].group_id);
	ASSERT_ERRNO(EINVAL, ioctl(d, VFIO_DEVICE_PCI_HOT_RESET, &hr));
	hr.h.count = 1;
	hr.fds[0] = g0;
	ASSERT_ERRNO(EINVAL, ioctl(d, VFIO_DEVICE_PCI_HOT_RESET, &hr)); /* 07:00.1 not owned */
	hr.fds[0] = c;
	ASSERT_ERRNO(EINVAL, ioctl(d, VFIO_DEVICE_PCI_HOT_RESET, &hr)); /* not a group */
	hr.fds[0] = -1;
	ASSERT_ERRNO(EBADF, ioctl(d, VFIO_DEVICE_PCI_HOT_RESET, &hr));
	hr.h.count = 3;
	ASSERT_ERRNO(EINVAL, ioctl(d, VFIO_DEVICE_PCI_HOT_RESET, &hr)); /* more than the set */
	g1 = group_open("0000:07:00.1", c);
	ASSERT_GE(g1, 0);
	hr.h.count = 2;
	hr.fds[0] = g0;
	hr.fds[1] = g1;
	ASSERT_EQ(0, ioctl(d, VFIO_DEVICE_PCI_HOT_RESET, &hr));
	ASSERT_EQ(0ull, bar_read(d, 0, DMA_TEST_QUEUE(0) + DMA_TEST_Q_RING_BASE, 8));
	ASSERT_EQ(0, close(d));
	ASSERT_EQ(0, close(g1));
	ASSERT_EQ(0, close(g0));
	ASSERT_EQ(0, close(c));
}

/*
 * fail-nth: every fallible step of opening the device for vfio-pci (BIND), enabling MSI-X with
 * an eventfd, starting DMA logging and a config read fails in turn; each failure is an error
 * of the call, and closing leaves nothing behind.
 */
TEST(fail_nth_open_irqs_logging)
{
	struct vfio_device_feature_dma_logging_range r = { .iova = IOVA, .length = BUFLEN };
	int iommufd, v;
	unsigned long nth;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	v = boot();
	ASSERT_GE(v, 0);
	ASSERT_EQ(0, close(v));
	iommufd = open("/dev/iommu", O_RDWR);
	ASSERT_GE(iommufd, 0);
	/* One bind first: what the context makes once and keeps is not counted as a leak. */
	v = open(VFIO(0), O_RDWR);
	ASSERT_EQ(0, vfio_bind(v, iommufd, NULL));
	ASSERT_EQ(0, close(v));
	for (nth = 1; nth < 5000; nth++) {
		struct uiommu_stats before, after;
		int32_t efd = eventfd(0, EFD_CLOEXEC), unmask = eventfd(0, EFD_CLOEXEC);
		unsigned long left;
		uint32_t id;
		int rc;

		ASSERT_EQ(0, uiommu_stats_get(&before));
		v = open(VFIO(0), O_RDWR);
		ASSERT_GE(v, 0);
		uiommu_fail_nth_arm(nth);
		rc = vfio_bind(v, iommufd, NULL);
		rc = rc ?: set_irqs(v, TRIG_EFD, 2, 0, 1, &efd);
		rc = rc ?: log_start(v, 4096, &r, 1);
		rc = rc ?: (pread(v, &id, 4, (off_t)CFG) == 4 ? 0 : -1);
		/* INTx with an unmask irqfd (its duplicate, its stop eventfd, its watcher). */
		rc = rc ?: set_irqs(v, TRIG_NONE, 2, 0, 0, NULL);
		rc = rc ?: set_irqs(v, TRIG_EFD, 0, 0, 1, &efd);
		rc = rc ?: set_irqs(v, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK, 0, 0,
				    1, &unmask);
		/* An ioeventfd (its slots, its kick eventfd, its watcher, the duplicate). */
		rc = rc ?: ioeventfd(v, sizeof(struct vfio_device_ioeventfd),
				     VFIO_DEVICE_IOEVENTFD_32, REGION(0) + DMA_TEST_REG_SCRATCH, 7,
				     unmask);
		left = uiommu_fail_nth_disarm();
		ASSERT_EQ(0, close(v));
		close(efd);
		close(unmask);
		ASSERT_EQ(0, uiommu_stats_get(&after));
		ASSERT_EQ(before.objects, after.objects);
		ASSERT_EQ(before.allocations, after.allocations);
		if (left) {
			ASSERT_EQ(0, rc);
			break;
		}
		/* A failed reset at open only clears the RESET flag: no error to see. */
		if (!rc)
			continue;
		ASSERT_TRUE(errno == ENOMEM || errno == EFAULT || errno == EMFILE ||
			    errno == EAGAIN);
	}
	ASSERT_TRUE(nth > 1 && nth < 5000);
	ASSERT_EQ(0, close(iommufd));
}

/* ---- stress: DMA racing unmap, detach, reset and close ------------------------------------- */

struct stress {
	struct machine *m;
	atomic_bool stop;
};

static void *stress_reset(void *arg)
{
	struct stress *s = arg;

	for (int i = 0; i < 200 && !atomic_load(&s->stop); i++) {
		ioctl(s->m->vfd, VFIO_DEVICE_RESET);
		master_on(s->m->vfd);
		queue_start(s->m);
	}
	return NULL;
}

static void *stress_unmap(void *arg)
{
	struct stress *s = arg;
	struct vfio_device_detach_iommufd_pt d = { .argsz = sizeof(d) };

	for (int i = 0; i < 200 && !atomic_load(&s->stop); i++) {
		ioas_unmap(s->m->iommufd, s->m->ioas, IOVA + 16 * 4096, 16 * 4096);
		ioas_map_fixed(s->m->iommufd, s->m->ioas, IOVA + 16 * 4096, s->m->buf + 16 * 4096,
			  16 * 4096);
		if (i % 16 == 0) {
			ioctl(s->m->vfd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &d);
			attach_ioas(s->m->vfd, s->m->ioas);
		}
	}
	return NULL;
}

TEST(stress_dma_reset_unmap_close)
{
	struct machine m;
	struct stress s = { .m = &m };
	pthread_t t[2];
	int32_t efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	ASSERT_EQ(0, setup(&m));
	ASSERT_EQ(0, set_irqs(m.vfd, TRIG_EFD, 2, 0, 1, &efd));
	ASSERT_EQ(0, master_on(m.vfd));
	ASSERT_EQ(0, queue_start(&m));
	ASSERT_EQ(0, pthread_create(&t[0], NULL, stress_reset, &s));
	ASSERT_EQ(0, pthread_create(&t[1], NULL, stress_unmap, &s));
	/* Keep the device busy: ring doorbells for copies into the range being unmapped. */
	for (unsigned int i = 0; i < 400; i++) {
		desc_copy(&m, i % 16, 8 * 4096, 16 * 4096 + (i % 8) * 4096, 4096);
		bar_write(m.vfd, 0, DMA_TEST_DOORBELL(0), 4, (i + 1) % 16);
		bar_read(m.vfd, 0, DMA_TEST_QUEUE(0) + DMA_TEST_Q_STATUS, 4);
	}
	atomic_store(&s.stop, true);
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	/* Close while the device may still run: the close resets it and fences its DMA. */
	ASSERT_EQ(0, close(m.vfd));
	ASSERT_EQ(0, close(m.iommufd));
	close(efd);
}

TEST_HARNESS_MAIN
