// SPDX-License-Identifier: MIT
/*
 * vfio-pci config-space rules and region errnos that test_vfio_pci.c does not reach, checked
 * from both sides: the device fd's virtual view (region 7) and the function's own config space
 * as sysfs `config` shows it (a config cycle, not vfio-pci's virtualization), so a test can tell
 * a write that reached the function from one that stayed virtual (../shared/spec/vfio-abi.md
 * sections 2.1, 2.5, 3.2-3.6).
 *
 * The machine (each case a fresh child; the machine boots at the first look at /sys):
 *   0000:07:00.0  dma-test, no extended capabilities
 *   0000:08:00.0  dma-test with PASID only: the hidden capability sits at 0x100
 *   0000:09:00.0  dma-test with ATS and PASID: PASID is unlinked behind ATS
 * Every function is alone in its group and bound to vfio-pci; a case opens one through its
 * cdev, bound to an iommufd (config and BAR access need no attachment).
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
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

#define REGION(i) ((uint64_t)(i) << 40)
#define CFG REGION(VFIO_PCI_CONFIG_REGION_INDEX)

static const char topology[] =
	"{ \"iommus\": [ { \"name\": \"iommu0\", \"max_pasids\": 1024 } ],\n"
	"  \"devices\": [\n"
	"    { \"bdf\": \"0000:07:00.0\", \"iommu\": \"iommu0\", \"model\": \"dma-test\" },\n"
	"    { \"bdf\": \"0000:08:00.0\", \"iommu\": \"iommu0\", \"model\": \"dma-test\",\n"
	"      \"pasid_bits\": 8 },\n"
	"    { \"bdf\": \"0000:09:00.0\", \"iommu\": \"iommu0\", \"model\": \"dma-test\",\n"
	"      \"ats\": true, \"pasid_bits\": 8 } ] }\n";

struct dev {
	const char *bdf;
	int vfd, iommufd;
};

/* Boots the machine, opens @bdf's cdev (named by its vfio-dev/ directory) and binds it. */
static int dev_open(struct dev *d, const char *bdf)
{
	char path[PATH_MAX], node[PATH_MAX] = "";
	struct dirent *de;
	DIR *dir;

	vfio_machine(topology, "/sys/bus/pci/devices/0000:07:00.0");
	d->bdf = bdf;
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vfio-dev", bdf);
	dir = opendir(path);
	if (!dir)
		return -1;
	while ((de = readdir(dir)))
		if (!strncmp(de->d_name, "vfio", 4))
			snprintf(node, sizeof(node), "/dev/vfio/devices/%.200s", de->d_name);
	closedir(dir);
	d->vfd = open(node, O_RDWR);
	d->iommufd = open("/dev/iommu", O_RDWR);
	if (d->vfd < 0 || d->iommufd < 0)
		return -1;
	return vfio_bind(d->vfd, d->iommufd, NULL);
}

static void dev_close(struct dev *d)
{
	close(d->vfd);
	close(d->iommufd);
}

static uint32_t vcfg(struct dev *d, unsigned int off, unsigned int width)
{
	uint32_t v = 0;

	if (pread(d->vfd, &v, width, (off_t)(CFG + off)) != (ssize_t)width)
		return 0xdeadbeef;
	return v;
}

static int vcfg_write(struct dev *d, unsigned int off, unsigned int width, uint32_t v)
{
	return pwrite(d->vfd, &v, width, (off_t)(CFG + off)) == (ssize_t)width ? 0 : -1;
}

/* The function's own config space, through sysfs. */
static uint32_t raw(struct dev *d, unsigned int off, unsigned int width)
{
	char path[PATH_MAX];
	uint32_t v = 0;
	int fd;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/config", d->bdf);
	fd = open(path, O_RDONLY);
	if (fd < 0 || pread(fd, &v, width, off) != (ssize_t)width)
		v = 0xdeadbeef;
	if (fd >= 0)
		close(fd);
	return v;
}

static unsigned int cap_find(struct dev *d, unsigned int id)
{
	unsigned int pos = vcfg(d, PCI_CAPABILITY_LIST, 1), n = 0;

	for (; pos && n < 48; pos = vcfg(d, pos + 1, 1), n++)
		if (vcfg(d, pos, 1) == id)
			return pos;
	return 0;
}

TEST(preloaded)
{
	ASSERT_TRUE(getenv("LD_PRELOAD") && strstr(getenv("LD_PRELOAD"), "uiommu"));
}

/* 3.2: which header writes reach the function, which stay virtual, which are dropped. */
TEST(header_passthrough_virtual_readonly)
{
	static const struct { unsigned int off, width; } ro[] = {
		{ PCI_REVISION_ID, 1 }, { PCI_CLASS_PROG, 1 }, { PCI_CLASS_DEVICE, 2 },
		{ PCI_HEADER_TYPE, 1 }, { PCI_SUBSYSTEM_VENDOR_ID, 2 }, { PCI_SUBSYSTEM_ID, 2 },
		{ PCI_CAPABILITY_LIST, 1 }, { PCI_INTERRUPT_PIN, 1 }, { PCI_MIN_GNT, 1 },
		{ PCI_MAX_LAT, 1 },
	};
	struct dev d;
	uint32_t v;

	ASSERT_EQ(0, dev_open(&d, "0000:07:00.0"));
	/* Read-only fields: a write is counted as done and changes nothing on either side. */
	for (unsigned int i = 0; i < sizeof(ro) / sizeof(ro[0]); i++) {
		v = vcfg(&d, ro[i].off, ro[i].width);
		ASSERT_EQ(raw(&d, ro[i].off, ro[i].width), v);
		ASSERT_EQ(0, vcfg_write(&d, ro[i].off, ro[i].width, ~v));
		ASSERT_EQ(v, vcfg(&d, ro[i].off, ro[i].width));
		ASSERT_EQ(v, raw(&d, ro[i].off, ro[i].width));
	}
	ASSERT_EQ((uint32_t)DMA_TEST_CLASS, vcfg(&d, PCI_CLASS_REVISION, 4) >> 8);

	/* BARs are virtual: sized and moved in the device fd's view only. */
	v = raw(&d, PCI_BASE_ADDRESS_0, 4);
	ASSERT_EQ(v, vcfg(&d, PCI_BASE_ADDRESS_0, 4)); /* before any write: the address at open */
	ASSERT_EQ(0, vcfg_write(&d, PCI_BASE_ADDRESS_0, 4, 0xffffffff));
	ASSERT_EQ(v, raw(&d, PCI_BASE_ADDRESS_0, 4));
	/* The ROM BAR (dma-test has a 2 KiB one) is virtual too: sized, enabled, moved in the
	 * device fd's view only; the bits below its size read 0. */
	v = raw(&d, PCI_ROM_ADDRESS, 4);
	ASSERT_EQ(0, vcfg_write(&d, PCI_ROM_ADDRESS, 4, 0xffffffff));
	ASSERT_EQ(0xfffff801u, vcfg(&d, PCI_ROM_ADDRESS, 4));
	ASSERT_EQ(0, vcfg_write(&d, PCI_ROM_ADDRESS, 4, 0xfe0007ff));
	ASSERT_EQ(0xfe000001u, vcfg(&d, PCI_ROM_ADDRESS, 4));
	ASSERT_EQ(v, raw(&d, PCI_ROM_ADDRESS, 4));
	/* The function's own ROM BAR: unassigned, decode off; a read of the ROM region sets its
	 * enable bit only around the read, as the kernel's pci_map_rom(). */
	ASSERT_EQ(0u, v);
	{
		uint8_t rom[4];

		ASSERT_EQ(0, vcfg_write(&d, PCI_COMMAND, 2,
					vcfg(&d, PCI_COMMAND, 2) | PCI_COMMAND_MEMORY));
		ASSERT_EQ(4, pread(d.vfd, rom, 4, (off_t)REGION(VFIO_PCI_ROM_REGION_INDEX)));
		ASSERT_EQ(0x55, rom[0]);
		ASSERT_EQ(0xaa, rom[1]);
		ASSERT_EQ(0u, raw(&d, PCI_ROM_ADDRESS, 4));
	}
	/* Interrupt Line is virtual: the function keeps its own. */
	v = raw(&d, PCI_INTERRUPT_LINE, 1);
	ASSERT_EQ(0, vcfg_write(&d, PCI_INTERRUPT_LINE, 1, v ^ 0xa5));
	ASSERT_EQ(v ^ 0xa5, vcfg(&d, PCI_INTERRUPT_LINE, 1));
	ASSERT_EQ(v, raw(&d, PCI_INTERRUPT_LINE, 1));

	/* Command: Bus Master reaches the function; INTx Disable stays virtual. */
	v = vcfg(&d, PCI_COMMAND, 2);
	ASSERT_EQ(0, vcfg_write(&d, PCI_COMMAND, 2,
				v | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE));
	ASSERT_EQ(v | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE, vcfg(&d, PCI_COMMAND, 2));
	ASSERT_TRUE(raw(&d, PCI_COMMAND, 2) & PCI_COMMAND_MASTER);
	ASSERT_FALSE(raw(&d, PCI_COMMAND, 2) & PCI_COMMAND_INTX_DISABLE);
	ASSERT_EQ(0, vcfg_write(&d, PCI_COMMAND, 2, v));
	ASSERT_FALSE(raw(&d, PCI_COMMAND, 2) & PCI_COMMAND_MASTER);

	/* Status: every write dropped (RW1C bits cannot be cleared through vfio-pci). */
	v = vcfg(&d, PCI_STATUS, 2);
	ASSERT_EQ(0, vcfg_write(&d, PCI_STATUS, 2, 0));
	ASSERT_EQ(v, vcfg(&d, PCI_STATUS, 2));
	dev_close(&d);
}

/*
 * 2.1: the last close disables the function; a re-open rebuilds the virtual config from it, so
 * the values a user wrote (BARs, Interrupt Line, MSI address, Command) do not survive.
 */
TEST(reopen_rebuilds_virtual_config)
{
	uint32_t bar0, line, cmd, addr;
	unsigned int msi;
	struct dev d;

	ASSERT_EQ(0, dev_open(&d, "0000:07:00.0"));
	msi = cap_find(&d, PCI_CAP_ID_MSI);
	ASSERT_NE(0u, msi);
	bar0 = vcfg(&d, PCI_BASE_ADDRESS_0, 4);
	line = vcfg(&d, PCI_INTERRUPT_LINE, 1);
	cmd = vcfg(&d, PCI_COMMAND, 2);
	addr = vcfg(&d, msi + PCI_MSI_ADDRESS_LO, 4);
	/* A fresh open: decode on for the BARs the function has, Bus Master and DisINTx off. */
	ASSERT_EQ((uint32_t)(PCI_COMMAND_MEMORY | PCI_COMMAND_IO), cmd);
	ASSERT_EQ(0, vcfg_write(&d, PCI_BASE_ADDRESS_0, 4, 0xfe000000));
	ASSERT_EQ(0, vcfg_write(&d, PCI_INTERRUPT_LINE, 1, line ^ 0xff));
	ASSERT_EQ(0, vcfg_write(&d, PCI_COMMAND, 2,
				cmd | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE));
	ASSERT_EQ(0, vcfg_write(&d, msi + PCI_MSI_ADDRESS_LO, 4, 0xfee0f00c & ~3u));
	ASSERT_NE(bar0, vcfg(&d, PCI_BASE_ADDRESS_0, 4));
	dev_close(&d);
	/* Closed: the function's Bus Master is off. */
	ASSERT_FALSE(raw(&d, PCI_COMMAND, 2) & PCI_COMMAND_MASTER);

	ASSERT_EQ(0, dev_open(&d, "0000:07:00.0"));
	ASSERT_EQ(bar0, vcfg(&d, PCI_BASE_ADDRESS_0, 4));
	ASSERT_EQ(line, vcfg(&d, PCI_INTERRUPT_LINE, 1));
	ASSERT_EQ(cmd, vcfg(&d, PCI_COMMAND, 2));
	ASSERT_EQ(addr, vcfg(&d, msi + PCI_MSI_ADDRESS_LO, 4));
	dev_close(&d);
}

/* 3.6: the PCIe and PM bits vfio-pci keeps from the user. */
TEST(pcie_pm_protected_bits)
{
	unsigned int exp, pm;
	struct dev d;
	uint32_t v, r;

	ASSERT_EQ(0, dev_open(&d, "0000:07:00.0"));
	exp = cap_find(&d, PCI_CAP_ID_EXP);
	pm = cap_find(&d, PCI_CAP_ID_PM);
	ASSERT_TRUE(exp && pm);
	/* Device Control: Phantom Functions is not writable; Max Read Request stays virtual. */
	v = vcfg(&d, exp + PCI_EXP_DEVCTL, 2);
	r = raw(&d, exp + PCI_EXP_DEVCTL, 2);
	ASSERT_EQ(0, vcfg_write(&d, exp + PCI_EXP_DEVCTL, 2, v ^ PCI_EXP_DEVCTL_PHANTOM));
	ASSERT_EQ(v, vcfg(&d, exp + PCI_EXP_DEVCTL, 2));
	ASSERT_EQ(0, vcfg_write(&d, exp + PCI_EXP_DEVCTL, 2, (v & ~PCI_EXP_DEVCTL_READRQ) | 0x5000));
	ASSERT_EQ(0x5000u, vcfg(&d, exp + PCI_EXP_DEVCTL, 2) & PCI_EXP_DEVCTL_READRQ);
	ASSERT_EQ(r & PCI_EXP_DEVCTL_READRQ, raw(&d, exp + PCI_EXP_DEVCTL, 2) & PCI_EXP_DEVCTL_READRQ);
	/* Device Control 2: ARI Forwarding is not writable. */
	v = vcfg(&d, exp + PCI_EXP_DEVCTL2, 2);
	ASSERT_EQ(0, vcfg_write(&d, exp + PCI_EXP_DEVCTL2, 2, v | PCI_EXP_DEVCTL2_ARI));
	ASSERT_EQ(v, vcfg(&d, exp + PCI_EXP_DEVCTL2, 2));
	ASSERT_FALSE(vcfg(&d, exp + PCI_EXP_DEVCTL2, 2) & PCI_EXP_DEVCTL2_ARI);
	/* PMCSR: PME Enable and PME Status never set (the state stays D0: the BAR answers). */
	ASSERT_EQ(0, vcfg_write(&d, pm + PCI_PM_CTRL, 2,
				PCI_PM_CTRL_PME_ENABLE | PCI_PM_CTRL_PME_STATUS));
	ASSERT_EQ(0u, vcfg(&d, pm + PCI_PM_CTRL, 2) &
			  (PCI_PM_CTRL_PME_ENABLE | PCI_PM_CTRL_PME_STATUS | PCI_PM_CTRL_STATE_MASK));
	ASSERT_EQ(4, pread(d.vfd, &v, 4, (off_t)REGION(0)));
	dev_close(&d);
}

/* 3.5: hidden extended capabilities, from both sides. */
TEST(ext_caps_hidden)
{
	struct dev d;

	/* Nothing visible (and nothing there): 0x100 reads 0. */
	ASSERT_EQ(0, dev_open(&d, "0000:07:00.0"));
	ASSERT_EQ(0u, vcfg(&d, 0x100, 4));
	dev_close(&d);
}

TEST(ext_cap_hidden_first_is_a_placeholder)
{
	struct dev d;

	/* PASID alone at 0x100: the function has it, the device fd shows ID and version 0. */
	ASSERT_EQ(0, dev_open(&d, "0000:08:00.0"));
	ASSERT_EQ((uint32_t)PCI_EXT_CAP_ID_PASID, raw(&d, 0x100, 4) & 0xffff);
	ASSERT_EQ(0u, vcfg(&d, 0x100, 4) & 0xfffff);
	ASSERT_EQ(raw(&d, 0x100, 4) >> 20, vcfg(&d, 0x100, 4) >> 20); /* next kept */
	dev_close(&d);
}

TEST(ext_cap_hidden_later_is_unlinked)
{
	struct dev d;
	uint32_t r;

	/* ATS then PASID: the device fd's ATS is the last in its list. */
	ASSERT_EQ(0, dev_open(&d, "0000:09:00.0"));
	r = raw(&d, 0x100, 4);
	ASSERT_EQ((uint32_t)PCI_EXT_CAP_ID_ATS, r & 0xffff);
	ASSERT_NE(0u, r >> 20);
	ASSERT_EQ((uint32_t)PCI_EXT_CAP_ID_PASID, raw(&d, r >> 20 & 0xffc, 4) & 0xffff);
	ASSERT_EQ(r & 0xfffff, vcfg(&d, 0x100, 4));
	/* ATS is visible and read-only. */
	ASSERT_EQ(0, vcfg_write(&d, 0x100 + PCI_ATS_CTRL, 2, PCI_ATS_CTRL_ENABLE));
	ASSERT_EQ(raw(&d, 0x100 + PCI_ATS_CTRL, 2), vcfg(&d, 0x100 + PCI_ATS_CTRL, 2));
	ASSERT_FALSE(vcfg(&d, 0x100 + PCI_ATS_CTRL, 2) & PCI_ATS_CTRL_ENABLE);
	dev_close(&d);
}

/* 2.5: the region errnos and clipping rules not covered elsewhere. */
TEST(region_errnos)
{
	uint8_t b[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, before[4];
	struct dev d;

	ASSERT_EQ(0, dev_open(&d, "0000:07:00.0"));
	/* Writes: ROM, VGA and indexes past the last region are EINVAL. */
	ASSERT_ERRNO(EINVAL, pwrite(d.vfd, b, 4, (off_t)REGION(VFIO_PCI_ROM_REGION_INDEX)));
	ASSERT_ERRNO(EINVAL, pwrite(d.vfd, b, 4, (off_t)REGION(VFIO_PCI_VGA_REGION_INDEX)));
	ASSERT_ERRNO(EINVAL, pwrite(d.vfd, b, 4, (off_t)REGION(9)));
	ASSERT_ERRNO(EINVAL, pwrite(d.vfd, b, 4, (off_t)(REGION(0) + DMA_TEST_BAR0_SIZE)));
	ASSERT_ERRNO(EINVAL, pwrite(d.vfd, b, 4, (off_t)REGION(4)));
	/* Config past the end: EFAULT, and nothing of it written. */
	ASSERT_EQ(4, pread(d.vfd, before, 4, (off_t)(CFG + 4092)));
	ASSERT_ERRNO(EFAULT, pwrite(d.vfd, b, 8, (off_t)(CFG + 4092)));
	ASSERT_ERRNO(EFAULT, pwrite(d.vfd, b, 1, (off_t)(CFG + 4096)));
	ASSERT_EQ(4u, (unsigned int)pread(d.vfd, b, 4, (off_t)(CFG + 4092)));
	ASSERT_EQ(0, memcmp(before, b, 4));
	/* A BAR access is clipped at the BAR's end; count 0 is 0. */
	ASSERT_EQ(4, pread(d.vfd, b, 8, (off_t)(REGION(0) + DMA_TEST_BAR0_SIZE - 4)));
	ASSERT_EQ(0, pread(d.vfd, b, 0, (off_t)REGION(0)));
	ASSERT_EQ(0, pwrite(d.vfd, b, 0, (off_t)REGION(0)));
	ASSERT_EQ(0, pwrite(d.vfd, b, 0, (off_t)CFG));
	dev_close(&d);
}

/*
 * A whole-BAR mmap (libvfio's) is a reservation and one mapping per area: a failure at any
 * step leaves nothing mapped and the next try works.
 */
TEST(fail_nth_whole_bar_mmap)
{
	unsigned long nth;
	struct dev d;
	void *p;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	ASSERT_EQ(0, dev_open(&d, "0000:07:00.0"));
	for (nth = 1; nth < 100; nth++) {
		unsigned long left;

		uiommu_fail_nth_arm(nth);
		p = mmap(NULL, DMA_TEST_BAR0_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, d.vfd,
			 (off_t)REGION(0));
		left = uiommu_fail_nth_disarm();
		if (left) {
			ASSERT_TRUE(p != MAP_FAILED);
			ASSERT_EQ(0, munmap(p, DMA_TEST_BAR0_SIZE));
			break;
		}
		ASSERT_TRUE(p == MAP_FAILED);
		ASSERT_TRUE(errno == ENOMEM || errno == EMFILE);
	}
	/* The call's own step, the doorbell area's, its record (followed for revocation while
	 * Memory is off), the process's empty memfd that revoked mappings map (made once). */
	ASSERT_EQ(5ul, nth);
	dev_close(&d);
}

TEST_HARNESS_MAIN
