// SPDX-License-Identifier: MIT
/*
 * White-box tests of the machine's PCI functions (src/machine/pci.c, pci_config.c): the
 * config space a function shows (header, capability walks, read-only and RW1C bits, BAR
 * sizing), BAR accesses (widths, decode, the MSI-X table and PBA, shared-memory areas),
 * interrupts as config space dictates (MSI-X and MSI masking and pending bits, INTx and its
 * disable bit), the DMA gate of Bus Master, function level reset, power states, model
 * registration and its errnos, and a fail-nth sweep of a boot with device models.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "lib/fail.h"
#include "pci_test.h"
#include "uiommu/device.h"
#include "uiommu/uiommu.h"

#define PM 0x40
#define MSI 0x48
#define MSIX 0x60
#define EXP 0x70

FIXTURE(pci)
{
	struct uiommu_pci_fn *fn, *generic, *plain;
	struct pt_irqs irqs;
};

FIXTURE_SETUP(pci)
{
	ASSERT_EQ(0, pt_load(pt_topology));
	self->fn = pci_fn_get_by_bdf(PT_DMA_TEST);
	self->generic = pci_fn_get_by_bdf(PT_GENERIC);
	self->plain = pci_fn_get(topology_find_device(PT_DMA_TEST2));
	ASSERT_TRUE(self->fn && self->generic && self->plain);
	pt_irqs_init(&self->irqs);
	ASSERT_EQ(0, pci_fn_irq_register(self->fn, &pt_irq_ops, &self->irqs));
}

FIXTURE_TEARDOWN(pci)
{
	pci_fn_irq_unregister(self->fn);
	pci_fn_put(self->fn);
	pci_fn_put(self->generic);
	pci_fn_put(self->plain);
	topology_unload();
}

static int cfg_write(struct uiommu_pci_fn *fn, unsigned int off, unsigned int width, uint32_t v)
{
	return pci_fn_config_write_reg(fn, off, width, v);
}

/* ---- config space ------------------------------------------------------------------------- */

TEST_F(pci, header_and_identity)
{
	struct pci_fn_ids ids;
	uint8_t cfg[4096];

	ASSERT_EQ(4096u, pci_fn_config_size(self->fn));
	ASSERT_EQ(0, pci_fn_config_read(self->fn, 0, cfg, sizeof(cfg)));
	ASSERT_EQ(DMA_TEST_VENDOR_ID, cfg[0] | cfg[1] << 8);
	ASSERT_EQ(DMA_TEST_DEVICE_ID, cfg[2] | cfg[3] << 8);
	ASSERT_EQ(0, cfg[4] | cfg[5] << 8);                    /* Command: all off at power-on */
	ASSERT_EQ(PCI_STS_CAP_LIST, cfg[6] | cfg[7] << 8);
	ASSERT_EQ(DMA_TEST_REVISION, cfg[8]);
	ASSERT_EQ(DMA_TEST_CLASS, cfg[9] | cfg[10] << 8 | cfg[11] << 16);
	ASSERT_EQ(0, cfg[PCI_CFG_HEADER_TYPE]);
	ASSERT_EQ(0x4u, pt_cfg32(self->fn, PCI_CFG_BAR0));     /* 64-bit memory */
	ASSERT_EQ(0u, pt_cfg32(self->fn, PCI_CFG_BAR0 + 4));
	ASSERT_EQ(0x1u, pt_cfg32(self->fn, PCI_CFG_BAR0 + 8)); /* I/O */
	ASSERT_EQ(0u, pt_cfg32(self->fn, PCI_CFG_ROM));
	ASSERT_EQ(DMA_TEST_VENDOR_ID, pt_cfg16(self->fn, PCI_CFG_SUBSYS_VENDOR));
	ASSERT_EQ(DMA_TEST_DEVICE_ID, pt_cfg16(self->fn, PCI_CFG_SUBSYS_ID));
	ASSERT_EQ(1, cfg[PCI_CFG_INT_PIN]);
	pci_fn_get_ids(self->fn, &ids);
	ASSERT_EQ(DMA_TEST_VENDOR_ID, ids.vendor);
	ASSERT_EQ(DMA_TEST_CLASS, ids.class_code);
	ASSERT_EQ(1, ids.interrupt_pin);
	ASSERT_STREQ("dma-test", pci_fn_model_name(self->fn));
	ASSERT_TRUE(pci_fn_device(self->fn) == topology_find_device(PT_DMA_TEST));

	/* The generic function: the topology's class, no BARs, no interrupt, PM and PCIe only. */
	pci_fn_get_ids(self->generic, &ids);
	ASSERT_EQ(0x020000u, ids.class_code);
	ASSERT_EQ(0, ids.interrupt_pin);
	ASSERT_STREQ("", pci_fn_model_name(self->generic));
	for (unsigned int i = 0; i < 6; i++)
		ASSERT_EQ(0u, pt_cfg32(self->generic, PCI_CFG_BAR0 + 4 * i));
	ASSERT_EQ(PM, pci_fn_find_cap(self->generic, PCI_CAP_ID_PM));
	ASSERT_EQ(0u, pci_fn_find_cap(self->generic, PCI_CAP_ID_MSI));
	ASSERT_NE(0u, pci_fn_find_cap(self->generic, PCI_CAP_ID_EXP));
	ASSERT_EQ(0u, pci_fn_irq_count(self->generic, PCI_IRQ_INTX));
	ASSERT_EQ(0u, pci_fn_irq_count(self->generic, PCI_IRQ_MSIX));

	/* Out of range: EINVAL; the whole space reads in one go. */
	ASSERT_EQ(-EINVAL, pci_fn_config_read(self->fn, 4096, cfg, 1));
	ASSERT_EQ(-EINVAL, pci_fn_config_read(self->fn, 4095, cfg, 2));
	ASSERT_EQ(-EINVAL, pci_fn_config_write(self->fn, 4090, cfg, 8));
	ASSERT_EQ(-EINVAL, pci_fn_config_read_reg(self->fn, 1, 2, (uint32_t[1]){ 0 }));
	ASSERT_EQ(-EINVAL, pci_fn_config_read_reg(self->fn, 0, 3, (uint32_t[1]){ 0 }));
}

TEST_F(pci, capability_walks)
{
	unsigned int pos, ids[8], n = 0;

	/* The standard list as software walks it: PM, MSI, MSI-X, PCIe. */
	pos = pt_cfg16(self->fn, PCI_CFG_CAP_PTR) & 0xfc;
	while (pos && n < 8) {
		ids[n++] = pt_cfg16(self->fn, pos) & 0xff;
		pos = (pt_cfg16(self->fn, pos) >> 8) & 0xfc;
	}
	ASSERT_EQ(4u, n);
	ASSERT_EQ(PCI_CAP_ID_PM, ids[0]);
	ASSERT_EQ(PCI_CAP_ID_MSI, ids[1]);
	ASSERT_EQ(PCI_CAP_ID_MSIX, ids[2]);
	ASSERT_EQ(PCI_CAP_ID_EXP, ids[3]);
	ASSERT_EQ(PM, pci_fn_find_cap(self->fn, PCI_CAP_ID_PM));
	ASSERT_EQ(MSI, pci_fn_find_cap(self->fn, PCI_CAP_ID_MSI));
	ASSERT_EQ(MSIX, pci_fn_find_cap(self->fn, PCI_CAP_ID_MSIX));
	ASSERT_EQ(EXP, pci_fn_find_cap(self->fn, PCI_CAP_ID_EXP));
	ASSERT_EQ(0u, pci_fn_find_cap(self->fn, 0x09));

	/* MSI: 64-bit, per-vector mask, 4 vectors capable (MMC 2). MSI-X: 4 vectors, table and
	 * PBA in BAR0. PCIe v2 endpoint with FLR. */
	ASSERT_EQ(0x0184, pt_cfg16(self->fn, MSI + 2));
	ASSERT_EQ(3, pt_cfg16(self->fn, MSIX + 2));
	ASSERT_EQ(DMA_TEST_MSIX_TABLE, pt_cfg32(self->fn, MSIX + 4));
	ASSERT_EQ(DMA_TEST_MSIX_PBA, pt_cfg32(self->fn, MSIX + 8));
	ASSERT_EQ(0x0002, pt_cfg16(self->fn, EXP + 2));
	ASSERT_TRUE(pt_cfg32(self->fn, EXP + 4) & 0x10000000);
	ASSERT_EQ(4u, pci_fn_irq_count(self->fn, PCI_IRQ_MSIX));
	ASSERT_EQ(4u, pci_fn_irq_count(self->fn, PCI_IRQ_MSI));
	ASSERT_EQ(1u, pci_fn_irq_count(self->fn, PCI_IRQ_INTX));

	/* Extended list: ATS, PRI, PASID (the topology gives 05:00.0 all three). */
	pos = 0x100;
	n = 0;
	while (pos >= 0x100 && n < 8) {
		uint32_t hdr = pt_cfg32(self->fn, pos);

		if (!hdr)
			break;
		ids[n++] = hdr & 0xffff;
		ASSERT_EQ(1u, (hdr >> 16) & 0xf);
		pos = (hdr >> 20) & 0xffc;
	}
	ASSERT_EQ(3u, n);
	ASSERT_EQ(PCI_EXT_CAP_ID_ATS, ids[0]);
	ASSERT_EQ(PCI_EXT_CAP_ID_PRI, ids[1]);
	ASSERT_EQ(PCI_EXT_CAP_ID_PASID, ids[2]);
	pos = pci_fn_find_ext_cap(self->fn, PCI_EXT_CAP_ID_PASID);
	ASSERT_NE(0u, pos);
	ASSERT_EQ(20u, (pt_cfg16(self->fn, pos + 4) >> 8) & 0x1f);
	pos = pci_fn_find_ext_cap(self->fn, PCI_EXT_CAP_ID_PRI);
	ASSERT_EQ(512u, pt_cfg32(self->fn, pos + 8));
	ASSERT_EQ(0u, pci_fn_find_ext_cap(self->fn, 0x01));

	/* No ATS/PRI/PASID: the dword at 0x100 is 0, the list is empty. */
	ASSERT_EQ(0u, pt_cfg32(self->plain, 0x100));
	ASSERT_EQ(0u, pci_fn_find_ext_cap(self->plain, PCI_EXT_CAP_ID_ATS));
}

TEST_F(pci, read_only_and_rw1c_bits)
{
	uint8_t before[4096], after[4096], ones[64];

	ASSERT_EQ(0, pci_fn_config_read(self->fn, 0, before, sizeof(before)));
	/* IDs, class, capability pointers, the capability bodies' read-only parts stay. */
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_VENDOR_ID, 4, 0xffffffff));
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_REVISION, 4, 0xffffffff));
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_CAP_PTR, 1, 0xff));
	ASSERT_EQ(0, cfg_write(self->fn, MSIX + 4, 4, 0xffffffff));
	ASSERT_EQ(0, cfg_write(self->fn, EXP + 4, 4, 0));
	ASSERT_EQ(0, cfg_write(self->fn, 0x100, 4, 0));
	ASSERT_EQ(0, pci_fn_config_read(self->fn, 0, after, sizeof(after)));
	ASSERT_EQ(0, memcmp(before, after, sizeof(before)));
	/* Status: writing ones clears (nothing set), never sets. */
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_STATUS, 2, 0xffff));
	ASSERT_EQ(PCI_STS_CAP_LIST, pt_cfg16(self->fn, PCI_CFG_STATUS));
	/* Command: only the implemented bits stick (no special cycles, no VGA snoop). */
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_COMMAND, 2, 0xffff));
	ASSERT_EQ(PCI_CMD_IO | PCI_CMD_MEMORY | PCI_CMD_MASTER | 0x0040 | PCI_CMD_SERR |
		  PCI_CMD_INTX_DISABLE, pt_cfg16(self->fn, PCI_CFG_COMMAND));
	/* Interrupt Line is plain storage; Pin is not. */
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_INT_LINE, 2, 0x0a0b));
	ASSERT_EQ(0x010b, pt_cfg16(self->fn, PCI_CFG_INT_LINE));
	/* A long write across the header applies byte by byte. */
	memset(ones, 0xff, sizeof(ones));
	ASSERT_EQ(0, pci_fn_config_write(self->fn, 0, ones, sizeof(ones)));
	ASSERT_EQ(DMA_TEST_VENDOR_ID, pt_cfg16(self->fn, 0));
	ASSERT_EQ(0xffffc004u, pt_cfg32(self->fn, PCI_CFG_BAR0));
	/* The generic function has no I/O or memory decode to enable. */
	ASSERT_EQ(0, cfg_write(self->generic, PCI_CFG_COMMAND, 2, 0xffff));
	ASSERT_EQ(PCI_CMD_MASTER | 0x0040 | PCI_CMD_SERR, pt_cfg16(self->generic, PCI_CFG_COMMAND));
}

TEST_F(pci, bar_sizing)
{
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_BAR0, 4, 0xffffffff));
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_BAR0 + 4, 4, 0xffffffff));
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_BAR0 + 8, 4, 0xffffffff));
	for (unsigned int i = 3; i < 6; i++)
		ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_BAR0 + 4 * i, 4, 0xffffffff));
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_ROM, 4, 0xffffffff));
	/* 16 KiB 64-bit memory; 16 bytes of I/O; nothing else. */
	ASSERT_EQ(0xffffc004u, pt_cfg32(self->fn, PCI_CFG_BAR0));
	ASSERT_EQ(0xffffffffu, pt_cfg32(self->fn, PCI_CFG_BAR0 + 4));
	ASSERT_EQ(0xfffffff1u, pt_cfg32(self->fn, PCI_CFG_BAR0 + 8));
	for (unsigned int i = 3; i < 6; i++)
		ASSERT_EQ(0u, pt_cfg32(self->fn, PCI_CFG_BAR0 + 4 * i));
	ASSERT_EQ(0xfffff801u, pt_cfg32(self->fn, PCI_CFG_ROM)); /* a 2 KiB ROM, enable set */
	/* An address: the low bits below the size stay 0. */
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_BAR0, 4, 0xfe001234));
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_BAR0 + 4, 4, 0x00000001));
	ASSERT_EQ(0xfe000004u, pt_cfg32(self->fn, PCI_CFG_BAR0));
	ASSERT_EQ(1u, pt_cfg32(self->fn, PCI_CFG_BAR0 + 4));
}

/*
 * The expansion ROM BAR at 0x30 of a function whose model has a ROM (dma-test: a 1 KiB image,
 * a 2 KiB BAR): sized as hardware sizes it, with its enable bit; the ROM answers reads only
 * while Memory and the enable bit are set (all-ones otherwise); a reset clears it. A function
 * without a ROM has no ROM BAR: 0x30 reads 0 whatever is written.
 */
TEST_F(pci, rom_bar)
{
	uint8_t b[8], ones[8];
	const void *image;
	size_t image_len;

	memset(ones, 0xff, sizeof(ones));
	ASSERT_EQ((size_t)DMA_TEST_ROM_BAR_SIZE, pci_fn_rom(self->fn, &image, &image_len));
	ASSERT_EQ((size_t)DMA_TEST_ROM_SIZE, image_len);
	ASSERT_EQ(0u, pt_cfg32(self->fn, PCI_CFG_ROM));
	/* Sizing as the kernel's __pci_read_base() does it: all-ones but the enable bit. */
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_ROM, 4, ~PCI_ROM_ENABLE));
	ASSERT_EQ(~(uint32_t)(DMA_TEST_ROM_BAR_SIZE - 1), pt_cfg32(self->fn, PCI_CFG_ROM));
	/* An address keeps the bits above the size; reserved bits 10:1 read 0. */
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_ROM, 4, 0xfe1007fe));
	ASSERT_EQ(0xfe100000u, pt_cfg32(self->fn, PCI_CFG_ROM));
	/* Not decoded: neither Memory nor enable, then only one of them. */
	ASSERT_EQ(0, pci_fn_rom_read(self->fn, 0, b, sizeof(b)));
	ASSERT_EQ(0, memcmp(b, ones, sizeof(b)));
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_COMMAND, 2, PCI_CMD_MEMORY));
	ASSERT_EQ(0, pci_fn_rom_read(self->fn, 0, b, sizeof(b)));
	ASSERT_EQ(0, memcmp(b, ones, sizeof(b)));
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_ROM, 4, 0xfe100000u | PCI_ROM_ENABLE));
	ASSERT_EQ(0xfe100001u, pt_cfg32(self->fn, PCI_CFG_ROM));
	/* Decoded: the image (the PCI ROM signature first), 0xff past it up to the BAR's end. */
	ASSERT_EQ(0, pci_fn_rom_read(self->fn, 0, b, sizeof(b)));
	ASSERT_EQ(0, memcmp(b, image, sizeof(b)));
	ASSERT_EQ(0x55, b[0]);
	ASSERT_EQ(0xaa, b[1]);
	ASSERT_EQ(0, pci_fn_rom_read(self->fn, DMA_TEST_ROM_SIZE - 4, b, sizeof(b)));
	ASSERT_EQ(0, memcmp(b, (const uint8_t *)image + DMA_TEST_ROM_SIZE - 4, 4));
	ASSERT_EQ(0, memcmp(b + 4, ones, 4));
	ASSERT_EQ(0, pci_fn_rom_read(self->fn, DMA_TEST_ROM_BAR_SIZE - 8, b, sizeof(b)));
	ASSERT_EQ(0, memcmp(b, ones, sizeof(b)));
	ASSERT_EQ(-EINVAL, pci_fn_rom_read(self->fn, DMA_TEST_ROM_BAR_SIZE - 4, b, sizeof(b)));
	ASSERT_EQ(-EINVAL, pci_fn_rom_read(self->fn, DMA_TEST_ROM_BAR_SIZE + 1, b, 0));
	/* D3hot stops decoding; D0 brings it back. */
	ASSERT_EQ(0, cfg_write(self->fn, PM + 4, 2, 3));
	ASSERT_EQ(0, pci_fn_rom_read(self->fn, 0, b, sizeof(b)));
	ASSERT_EQ(0, memcmp(b, ones, sizeof(b)));
	ASSERT_EQ(0, cfg_write(self->fn, PM + 4, 2, 0));
	ASSERT_EQ(0, pci_fn_rom_read(self->fn, 0, b, sizeof(b)));
	ASSERT_EQ(0x55, b[0]);
	/* A reset returns the ROM BAR to 0: not decoded. */
	ASSERT_EQ(0, pci_fn_reset(self->fn));
	ASSERT_EQ(0u, pt_cfg32(self->fn, PCI_CFG_ROM));
	ASSERT_EQ(0, pci_fn_rom_read(self->fn, 0, b, sizeof(b)));
	ASSERT_EQ(0, memcmp(b, ones, sizeof(b)));
	/* No ROM: no ROM BAR. */
	ASSERT_EQ(0u, pci_fn_rom(self->generic, &image, &image_len));
	ASSERT_TRUE(image == NULL && image_len == 0);
	ASSERT_EQ(0, cfg_write(self->generic, PCI_CFG_ROM, 4, 0xffffffff));
	ASSERT_EQ(0u, pt_cfg32(self->generic, PCI_CFG_ROM));
	ASSERT_EQ(-EINVAL, pci_fn_rom_read(self->generic, 0, b, 1));
}

/* ---- BARs ---------------------------------------------------------------------------------- */

TEST_F(pci, bar_accesses_widths_decode)
{
	struct pci_fn_bar_info info;
	uint64_t v;

	ASSERT_EQ(0, pci_fn_bar_info(self->fn, 0, &info));
	ASSERT_EQ(DMA_TEST_BAR0_SIZE, info.size);
	ASSERT_EQ(UIOMMU_PCI_BAR_64, info.flags);
	ASSERT_EQ(1u, info.nr_areas);
	ASSERT_EQ(DMA_TEST_DOORBELL_PAGE, info.areas[0].offset);
	ASSERT_EQ(4096u, info.areas[0].size);
	ASSERT_GE(info.areas[0].fd, 0);
	ASSERT_TRUE(info.msix_table && info.msix_pba);
	ASSERT_EQ(DMA_TEST_MSIX_TABLE, info.msix_table_offset);
	ASSERT_EQ(64u, info.msix_table_size);
	ASSERT_EQ(DMA_TEST_MSIX_PBA, info.msix_pba_offset);
	ASSERT_EQ(8u, info.msix_pba_size);
	ASSERT_EQ(0, pci_fn_bar_info(self->fn, 1, &info));
	ASSERT_EQ(0u, info.size);
	ASSERT_EQ(0, pci_fn_bar_info(self->fn, 2, &info));
	ASSERT_EQ(DMA_TEST_BAR2_SIZE, info.size);
	ASSERT_EQ(UIOMMU_PCI_BAR_IO, info.flags);
	ASSERT_EQ(-EINVAL, pci_fn_bar_info(self->fn, 6, &info));

	/* Memory decode off: a master abort (all ones), writes dropped. */
	ASSERT_EQ(0xffffffffu, pt_bar(self->fn, 0, DMA_TEST_REG_ID, 4));
	ASSERT_EQ(0, pci_fn_bar_write(self->fn, 0, DMA_TEST_REG_SCRATCH, 8, 0x1122334455667788ull));
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_COMMAND, 2, PCI_CMD_MEMORY));
	ASSERT_EQ(DMA_TEST_ID, pt_bar(self->fn, 0, DMA_TEST_REG_ID, 4));
	ASSERT_EQ(0u, pt_bar(self->fn, 0, DMA_TEST_REG_SCRATCH, 8));
	ASSERT_EQ(0xffffu, pt_bar(self->fn, 2, DMA_TEST_IO_ID, 2)); /* I/O still off */

	/* Every width, naturally aligned, and byte lanes. */
	ASSERT_EQ(0, pci_fn_bar_write(self->fn, 0, DMA_TEST_REG_SCRATCH, 8, 0x1122334455667788ull));
	ASSERT_EQ(0x1122334455667788ull, pt_bar(self->fn, 0, DMA_TEST_REG_SCRATCH, 8));
	ASSERT_EQ(0x55667788u, pt_bar(self->fn, 0, DMA_TEST_REG_SCRATCH, 4));
	ASSERT_EQ(0x11223344u, pt_bar(self->fn, 0, DMA_TEST_REG_SCRATCH + 4, 4));
	ASSERT_EQ(0x3344u, pt_bar(self->fn, 0, DMA_TEST_REG_SCRATCH + 4, 2));
	ASSERT_EQ(0x22u, pt_bar(self->fn, 0, DMA_TEST_REG_SCRATCH + 6, 1));
	ASSERT_EQ(0, pci_fn_bar_write(self->fn, 0, DMA_TEST_REG_SCRATCH + 3, 1, 0xab));
	ASSERT_EQ(0, pci_fn_bar_write(self->fn, 0, DMA_TEST_REG_SCRATCH + 6, 2, 0xcdef));
	ASSERT_EQ(0xcdef3344ab667788ull, pt_bar(self->fn, 0, DMA_TEST_REG_SCRATCH, 8));
	ASSERT_EQ(DMA_TEST_NR_QUEUES, pt_bar(self->fn, 0, DMA_TEST_REG_NR_QUEUES, 4));
	/* PASID capability shows in CAPS for 05:00.0 and not for 07:00.0. */
	ASSERT_TRUE(pt_bar(self->fn, 0, DMA_TEST_REG_CAPS, 4) & DMA_TEST_CAP_PASID);

	/* Bad accesses. */
	ASSERT_EQ(-EINVAL, pci_fn_bar_read(self->fn, 0, 1, 2, &v));        /* misaligned */
	ASSERT_EQ(-EINVAL, pci_fn_bar_read(self->fn, 0, 0, 3, &v));        /* width */
	ASSERT_EQ(-EINVAL, pci_fn_bar_read(self->fn, 0, DMA_TEST_BAR0_SIZE, 4, &v));
	ASSERT_EQ(-EINVAL, pci_fn_bar_read(self->fn, 1, 0, 4, &v));        /* upper half */
	ASSERT_EQ(-EINVAL, pci_fn_bar_read(self->fn, 3, 0, 4, &v));        /* no BAR */
	ASSERT_EQ(-EINVAL, pci_fn_bar_write(self->fn, 6, 0, 4, 0));
	ASSERT_EQ(-EINVAL, pci_fn_bar_read(self->fn, 2, 8, 8, &v));        /* 8 bytes of I/O */
	ASSERT_EQ(-EINVAL, pci_fn_bar_read(self->generic, 0, 0, 4, &v));

	/* I/O space. */
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_COMMAND, 2, PCI_CMD_MEMORY | PCI_CMD_IO));
	ASSERT_EQ(DMA_TEST_ID, pt_bar(self->fn, 2, DMA_TEST_IO_ID, 4));
	ASSERT_EQ(0, pci_fn_bar_write(self->fn, 2, DMA_TEST_IO_SCRATCH, 4, 0xcafe0001));
	ASSERT_EQ(0xcafe0001u, pt_bar(self->fn, 2, DMA_TEST_IO_SCRATCH, 4));
	ASSERT_EQ(0xcafeu, pt_bar(self->fn, 2, DMA_TEST_IO_SCRATCH + 2, 2));
}

TEST_F(pci, shared_area_is_the_memfd)
{
	struct pci_fn_bar_info info;
	uint32_t *map, *model_view;

	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_COMMAND, 2, PCI_CMD_MEMORY));
	ASSERT_EQ(0, pci_fn_bar_info(self->fn, 0, &info));
	map = mmap(NULL, info.areas[0].size, PROT_READ | PROT_WRITE, MAP_SHARED, info.areas[0].fd,
		   (off_t)info.areas[0].fd_offset);
	ASSERT_TRUE(map != MAP_FAILED);
	model_view = uiommu_pci_fn_area(self->fn, 0, 0);
	ASSERT_TRUE(model_view != NULL);
	/* A BAR write lands in the pages a driver's mmap sees, and the other way round. */
	ASSERT_EQ(0, pci_fn_bar_write(self->fn, 0, DMA_TEST_DOORBELL(1), 4, 0x77));
	ASSERT_EQ(0x77u, map[2]);
	ASSERT_EQ(0x77u, model_view[2]);
	map[4] = 0x1234;
	ASSERT_EQ(0x1234u, pt_bar(self->fn, 0, DMA_TEST_DOORBELL(2), 4));
	ASSERT_EQ(0x1234u, pt_bar(self->fn, 0, DMA_TEST_QUEUE(2) + DMA_TEST_Q_TAIL, 4));
	/* The TAIL register is the doorbell page's word. */
	ASSERT_EQ(0, pci_fn_bar_write(self->fn, 0, DMA_TEST_QUEUE(3) + DMA_TEST_Q_TAIL, 4, 9));
	ASSERT_EQ(9u, map[6]);
	ASSERT_TRUE(uiommu_pci_fn_area(self->fn, 0, 1) == NULL);
	ASSERT_EQ(EINVAL, errno);
	ASSERT_TRUE(uiommu_pci_fn_area(self->fn, 6, 0) == NULL);
	/* A reset zeroes the area (the driver's mapping sees it). */
	ASSERT_EQ(0, pci_fn_reset(self->fn));
	ASSERT_EQ(0u, map[4]);
	munmap(map, info.areas[0].size);
}

/* ---- interrupts ------------------------------------------------------------------------------ */

TEST_F(pci, msix_masking_and_pending)
{
	uint64_t tbl = DMA_TEST_MSIX_TABLE;

	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_COMMAND, 2, PCI_CMD_MEMORY | PCI_CMD_MASTER));
	/* Enable MSI-X from config space; every vector is masked at power-on. */
	ASSERT_EQ(0, cfg_write(self->fn, MSIX + 2, 2, 0x8000));
	ASSERT_EQ(0x8003, pt_cfg16(self->fn, MSIX + 2));
	for (unsigned int v = 0; v < 4; v++)
		ASSERT_EQ(1u, pt_bar(self->fn, 0, tbl + 16 * v + 12, 4));
	ASSERT_EQ(0, uiommu_pci_irq_raise(self->fn, 1));
	ASSERT_EQ(0u, pt_irqs_msix(&self->irqs, 1));
	ASSERT_TRUE(pci_fn_irq_pending(self->fn, PCI_IRQ_MSIX, 1));
	ASSERT_EQ(2u, pt_bar(self->fn, 0, DMA_TEST_MSIX_PBA, 8));
	/* The PBA is read-only. */
	ASSERT_EQ(0, pci_fn_bar_write(self->fn, 0, DMA_TEST_MSIX_PBA, 8, 0));
	ASSERT_EQ(2u, pt_bar(self->fn, 0, DMA_TEST_MSIX_PBA, 8));
	/* Program and unmask vector 1 through the table: the pending message goes out. */
	ASSERT_EQ(0, pci_fn_bar_write(self->fn, 0, tbl + 16, 8, 0xfee00000ull));
	ASSERT_EQ(0, pci_fn_bar_write(self->fn, 0, tbl + 24, 4, 0x41));
	ASSERT_EQ(0xfee00000ull, pt_bar(self->fn, 0, tbl + 16, 8));
	ASSERT_EQ(0, pci_fn_bar_write(self->fn, 0, tbl + 28, 4, 0xfffffffe));
	ASSERT_EQ(0u, pt_bar(self->fn, 0, tbl + 28, 4)); /* reserved bits read 0 */
	ASSERT_EQ(1u, pt_irqs_msix(&self->irqs, 1));
	ASSERT_FALSE(pci_fn_irq_pending(self->fn, PCI_IRQ_MSIX, 1));
	ASSERT_EQ(0, uiommu_pci_irq_raise(self->fn, 1));
	ASSERT_EQ(2u, pt_irqs_msix(&self->irqs, 1));
	/* Function mask: pending while set, sent when cleared. */
	ASSERT_EQ(0, cfg_write(self->fn, MSIX + 2, 2, 0xc000));
	ASSERT_EQ(0, uiommu_pci_irq_raise(self->fn, 1));
	ASSERT_EQ(2u, pt_irqs_msix(&self->irqs, 1));
	ASSERT_TRUE(pci_fn_irq_pending(self->fn, PCI_IRQ_MSIX, 1));
	ASSERT_EQ(0, cfg_write(self->fn, MSIX + 2, 2, 0x8000));
	ASSERT_EQ(3u, pt_irqs_msix(&self->irqs, 1));
	/* Bus Master off: a message cannot be sent (nor is it kept). */
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_COMMAND, 2, PCI_CMD_MEMORY));
	ASSERT_EQ(0, uiommu_pci_irq_raise(self->fn, 1));
	ASSERT_EQ(3u, pt_irqs_msix(&self->irqs, 1));
	ASSERT_FALSE(pci_fn_irq_pending(self->fn, PCI_IRQ_MSIX, 1));
	/* Beyond the table: EINVAL. */
	ASSERT_EQ(-1, uiommu_pci_irq_raise(self->fn, 4));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(0, self->irqs.intx_changes);
}

TEST_F(pci, msix_enable_helpers)
{
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_COMMAND, 2, PCI_CMD_MASTER));
	ASSERT_EQ(-EINVAL, pci_fn_irq_enable(self->fn, PCI_IRQ_MSIX, 5));
	ASSERT_EQ(-EINVAL, pci_fn_irq_enable(self->fn, PCI_IRQ_MSIX, 0));
	ASSERT_EQ(-ENODEV, pci_fn_irq_enable(self->generic, PCI_IRQ_MSIX, 1));
	ASSERT_EQ(-ENODEV, pci_fn_irq_enable(self->generic, PCI_IRQ_INTX, 1));
	ASSERT_EQ(0, pci_fn_irq_enable(self->fn, PCI_IRQ_MSIX, 2));
	ASSERT_EQ(0x8003, pt_cfg16(self->fn, MSIX + 2));
	ASSERT_EQ(0, uiommu_pci_irq_raise(self->fn, 0));
	ASSERT_EQ(0, uiommu_pci_irq_raise(self->fn, 1));
	ASSERT_EQ(0, uiommu_pci_irq_raise(self->fn, 2)); /* beyond nvec: stays masked */
	ASSERT_EQ(1u, pt_irqs_msix(&self->irqs, 0));
	ASSERT_EQ(1u, pt_irqs_msix(&self->irqs, 1));
	ASSERT_EQ(0u, pt_irqs_msix(&self->irqs, 2));
	ASSERT_TRUE(pci_fn_irq_pending(self->fn, PCI_IRQ_MSIX, 2));
	ASSERT_EQ(0, pci_fn_irq_mask(self->fn, PCI_IRQ_MSIX, 0, true));
	ASSERT_EQ(0, uiommu_pci_irq_raise(self->fn, 0));
	ASSERT_EQ(1u, pt_irqs_msix(&self->irqs, 0));
	ASSERT_EQ(0, pci_fn_irq_mask(self->fn, PCI_IRQ_MSIX, 0, false));
	ASSERT_EQ(2u, pt_irqs_msix(&self->irqs, 0));
	ASSERT_EQ(-EINVAL, pci_fn_irq_mask(self->fn, PCI_IRQ_MSIX, 4, false));
	ASSERT_EQ(0, pci_fn_irq_disable(self->fn));
	ASSERT_EQ(0x0003, pt_cfg16(self->fn, MSIX + 2));
	ASSERT_TRUE(pt_cfg16(self->fn, PCI_CFG_COMMAND) & PCI_CMD_INTX_DISABLE);
	/* A second notifier: EBUSY. */
	ASSERT_EQ(-EBUSY, pci_fn_irq_register(self->fn, &pt_irq_ops, &self->irqs));
}

TEST_F(pci, msi_mask_and_pending)
{
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_COMMAND, 2, PCI_CMD_MASTER));
	ASSERT_EQ(0, pci_fn_irq_enable(self->fn, PCI_IRQ_MSI, 2));
	ASSERT_EQ(0x0195, pt_cfg16(self->fn, MSI + 2)); /* enabled, MME 1 (2 vectors), MMC 2 */
	ASSERT_EQ(0, uiommu_pci_irq_raise(self->fn, 1));
	ASSERT_EQ(1u, self->irqs.msi[1]);
	ASSERT_EQ(-1, uiommu_pci_irq_raise(self->fn, 2));
	ASSERT_EQ(EINVAL, errno);
	/* Mask vector 0 in config space: pending there; unmasking sends it. */
	ASSERT_EQ(0, cfg_write(self->fn, MSI + 16, 4, 0x1));
	ASSERT_EQ(0, uiommu_pci_irq_raise(self->fn, 0));
	ASSERT_EQ(0u, self->irqs.msi[0]);
	ASSERT_EQ(1u, pt_cfg32(self->fn, MSI + 20));
	ASSERT_EQ(0, cfg_write(self->fn, MSI + 20, 4, 0)); /* pending bits are read-only */
	ASSERT_EQ(1u, pt_cfg32(self->fn, MSI + 20));
	ASSERT_EQ(0, cfg_write(self->fn, MSI + 16, 4, 0));
	ASSERT_EQ(1u, self->irqs.msi[0]);
	ASSERT_EQ(0u, pt_cfg32(self->fn, MSI + 20));
	/* Multiple Message Enable beyond the capable count is clamped; mask bits past the
	 * vectors the function has are not writable. */
	ASSERT_EQ(0, cfg_write(self->fn, MSI + 2, 2, 0x0071));
	ASSERT_EQ(0x01a5, pt_cfg16(self->fn, MSI + 2));
	ASSERT_EQ(0, cfg_write(self->fn, MSI + 16, 4, 0xffffffff));
	ASSERT_EQ(0xfu, pt_cfg32(self->fn, MSI + 16));
	/* Address and data are storage (the low two address bits are not). */
	ASSERT_EQ(0, cfg_write(self->fn, MSI + 4, 4, 0xfee01003));
	ASSERT_EQ(0xfee01000u, pt_cfg32(self->fn, MSI + 4));
}

TEST_F(pci, intx_level_and_disable)
{
	ASSERT_EQ(0, uiommu_pci_irq_raise(self->fn, 0));
	ASSERT_EQ(1u, self->irqs.intx_changes);
	ASSERT_TRUE(self->irqs.intx_level);
	ASSERT_TRUE(pt_cfg16(self->fn, PCI_CFG_STATUS) & PCI_STS_INTERRUPT);
	ASSERT_TRUE(pci_fn_irq_pending(self->fn, PCI_IRQ_INTX, 0));
	/* Asserting again changes nothing. */
	ASSERT_EQ(0, uiommu_pci_irq_raise(self->fn, 0));
	ASSERT_EQ(1u, self->irqs.intx_changes);
	/* INTx Disable hides the line but Status still shows the function's interrupt. */
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_COMMAND, 2, PCI_CMD_INTX_DISABLE));
	ASSERT_EQ(2u, self->irqs.intx_changes);
	ASSERT_FALSE(self->irqs.intx_level);
	ASSERT_TRUE(pt_cfg16(self->fn, PCI_CFG_STATUS) & PCI_STS_INTERRUPT);
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_COMMAND, 2, 0));
	ASSERT_EQ(3u, self->irqs.intx_changes);
	ASSERT_TRUE(self->irqs.intx_level);
	ASSERT_EQ(0, uiommu_pci_irq_lower(self->fn));
	ASSERT_EQ(4u, self->irqs.intx_changes);
	ASSERT_FALSE(self->irqs.intx_level);
	ASSERT_FALSE(pt_cfg16(self->fn, PCI_CFG_STATUS) & PCI_STS_INTERRUPT);
	ASSERT_EQ(-1, uiommu_pci_irq_raise(self->fn, 1));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(-1, uiommu_pci_irq_raise(self->generic, 0));
	ASSERT_EQ(ENODEV, errno);
	ASSERT_EQ(-1, uiommu_pci_irq_raise(NULL, 0));
	ASSERT_EQ(EINVAL, errno);
	/* With MSI on, INTx is not signalled. */
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_COMMAND, 2, PCI_CMD_MASTER));
	ASSERT_EQ(0, pci_fn_irq_enable(self->fn, PCI_IRQ_MSI, 1));
	ASSERT_EQ(0, uiommu_pci_irq_raise(self->fn, 0));
	ASSERT_EQ(4u, self->irqs.intx_changes);
	ASSERT_EQ(1u, self->irqs.msi[0]);
}

/* ---- the DMA gate, reset, power ------------------------------------------------------------- */

TEST_F(pci, bus_master_gates_dma)
{
	struct pt_domain d = { 0 };
	char *mem = pt_pages(1), buf[16];
	struct uiommu_dma_fault f;

	ASSERT_TRUE(mem != NULL);
	ASSERT_EQ(0, pt_domain_attach(&d, pci_fn_device(self->fn)));
	ASSERT_EQ(0, pt_map(&d, 0x10000, mem, 4096, IOMMU_READ | IOMMU_WRITE));
	memcpy(mem, "bus master on!!", 16);
	ASSERT_EQ(-1, uiommu_pci_dma_read(self->fn, 0, 0x10000, buf, 16, UIOMMU_DMA_NO_PASID));
	ASSERT_EQ(EPERM, errno);
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_COMMAND, 2, PCI_CMD_MASTER));
	ASSERT_EQ(16, uiommu_pci_dma_read(self->fn, 0, 0x10000, buf, 16, UIOMMU_DMA_NO_PASID));
	ASSERT_EQ(0, memcmp(buf, mem, 16));
	ASSERT_EQ(16, uiommu_pci_dma_write(self->fn, 0, 0x10010, "written by DMA!", 16,
					   UIOMMU_DMA_NO_PASID));
	ASSERT_EQ(0, memcmp(mem + 16, "written by DMA!", 16));
	/* A fault is the engine's, recorded in the function's log. */
	ASSERT_EQ(-1, uiommu_pci_dma_read(self->fn, 0, 0x90000, buf, 16, UIOMMU_DMA_NO_PASID));
	ASSERT_EQ(EFAULT, errno);
	ASSERT_EQ(1, uiommu_pci_dma_read_faults(self->fn, &f, 1));
	ASSERT_EQ(0x90000u, f.iova);
	ASSERT_EQ(UIOMMU_DMA_FAULT_UNMAPPED, f.reason);
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_COMMAND, 2, 0));
	ASSERT_EQ(-1, uiommu_pci_dma_write(self->fn, 0, 0x10000, buf, 16, UIOMMU_DMA_NO_PASID));
	ASSERT_EQ(EPERM, errno);
	ASSERT_EQ(-1, uiommu_pci_dma_xfer(self->fn, NULL));
	ASSERT_EQ(EINVAL, errno);
	/* Unplugged: ENODEV, even with Bus Master set. */
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_COMMAND, 2, PCI_CMD_MASTER));
	pt_domain_detach(&d);
	ASSERT_EQ(0, topology_unplug(PT_DMA_TEST));
	ASSERT_EQ(-1, uiommu_pci_dma_read(self->fn, 0, 0x10000, buf, 16, UIOMMU_DMA_NO_PASID));
	ASSERT_EQ(ENODEV, errno);
	/* Plugged again: power-on state, Bus Master off. */
	ASSERT_EQ(0, topology_plug(PT_DMA_TEST));
	ASSERT_EQ(0, pt_cfg16(self->fn, PCI_CFG_COMMAND));
	ASSERT_EQ(-1, uiommu_pci_dma_read(self->fn, 0, 0x10000, buf, 16, UIOMMU_DMA_NO_PASID));
	ASSERT_EQ(EPERM, errno);
	munmap(mem, 4096);
}

TEST_F(pci, flr_returns_to_power_on)
{
	uint8_t poweron[4096], now[4096];
	struct pci_fn_bar_info info;
	uint32_t *db;

	ASSERT_EQ(0, pci_fn_config_read(self->fn, 0, poweron, sizeof(poweron)));
	ASSERT_EQ(0, pci_fn_bar_info(self->fn, 0, &info));
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_BAR0, 4, 0xfe000000));
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_COMMAND, 2, PCI_CMD_MEMORY | PCI_CMD_MASTER));
	ASSERT_EQ(0, pci_fn_irq_enable(self->fn, PCI_IRQ_MSIX, 4));
	ASSERT_EQ(0, pci_fn_bar_write(self->fn, 0, DMA_TEST_REG_SCRATCH, 8, 42));
	ASSERT_EQ(0, pci_fn_bar_write(self->fn, 0, DMA_TEST_DOORBELL(0), 4, 3));
	ASSERT_EQ(0, cfg_write(self->fn, EXP + 8, 2, 0x2810 | 0x00e0)); /* DevCtl: MPS */
	db = uiommu_pci_fn_area(self->fn, 0, 0);
	ASSERT_EQ(3u, db[0]);
	/* Initiate FLR: it reads 0, and everything is as at power-on. */
	ASSERT_EQ(0, cfg_write(self->fn, EXP + 8, 2, 0x8000 | 0x2810));
	ASSERT_EQ(0x2810, pt_cfg16(self->fn, EXP + 8));
	ASSERT_EQ(0, pci_fn_config_read(self->fn, 0, now, sizeof(now)));
	ASSERT_EQ(0, memcmp(poweron, now, sizeof(now)));
	ASSERT_EQ(0u, db[0]);
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_COMMAND, 2, PCI_CMD_MEMORY));
	ASSERT_EQ(0u, pt_bar(self->fn, 0, DMA_TEST_REG_SCRATCH, 8));
	ASSERT_EQ(1u, pt_bar(self->fn, 0, DMA_TEST_MSIX_TABLE + 12, 4)); /* masked again */
	/* pci_fn_reset() is the same reset. */
	ASSERT_EQ(0, pci_fn_bar_write(self->fn, 0, DMA_TEST_REG_SCRATCH, 8, 42));
	ASSERT_EQ(0, pci_fn_reset(self->fn));
	ASSERT_EQ(0, pci_fn_config_read(self->fn, 0, now, sizeof(now)));
	ASSERT_EQ(0, memcmp(poweron, now, sizeof(now)));
	/* The generic function resets too. */
	ASSERT_EQ(0, cfg_write(self->generic, PCI_CFG_COMMAND, 2, PCI_CMD_MASTER));
	ASSERT_EQ(0, cfg_write(self->generic, pci_fn_find_cap(self->generic, PCI_CAP_ID_EXP) + 8, 2,
			       0x8000));
	ASSERT_EQ(0, pt_cfg16(self->generic, PCI_CFG_COMMAND));
}

TEST_F(pci, power_states)
{
	ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_COMMAND, 2, PCI_CMD_MEMORY));
	ASSERT_EQ(DMA_TEST_ID, pt_bar(self->fn, 0, DMA_TEST_REG_ID, 4));
	/* D1 and D2 are not supported: the state stays D0. */
	ASSERT_EQ(0, cfg_write(self->fn, PM + 4, 2, 1));
	ASSERT_EQ(0x0008, pt_cfg16(self->fn, PM + 4)); /* D0, No_Soft_Reset */
	/* D3hot: the BARs do not answer. */
	ASSERT_EQ(0, cfg_write(self->fn, PM + 4, 2, 3));
	ASSERT_EQ(3u, pt_cfg16(self->fn, PM + 4) & 3);
	ASSERT_EQ(0xffffffffu, pt_bar(self->fn, 0, DMA_TEST_REG_ID, 4));
	ASSERT_EQ(0, cfg_write(self->fn, PM + 4, 2, 0));
	ASSERT_EQ(DMA_TEST_ID, pt_bar(self->fn, 0, DMA_TEST_REG_ID, 4));
}

/* Threads raising interrupts and reading config space and BARs while the function is reset
 * and its interrupts re-enabled over and over: no crash, no lost lock, nothing TSan sees. */
struct stress {
	struct uiommu_pci_fn *fn;
	atomic_bool stop;
};

static void *stress_raiser(void *arg)
{
	struct stress *st = arg;

	for (unsigned int i = 0; !atomic_load(&st->stop); i++)
		uiommu_pci_irq_raise(st->fn, i % 4);
	return NULL;
}

static void *stress_reader(void *arg)
{
	struct stress *st = arg;
	uint8_t cfg[256];
	uint64_t v;

	while (!atomic_load(&st->stop)) {
		pci_fn_config_read(st->fn, 0, cfg, sizeof(cfg));
		pci_fn_bar_read(st->fn, 0, DMA_TEST_DOORBELL(0), 4, &v);
		pci_fn_bar_read(st->fn, 0, DMA_TEST_REG_SCRATCH, 8, &v);
		pci_fn_bar_write(st->fn, 0, DMA_TEST_DOORBELL(3), 4, 0);
		pci_fn_bar_read(st->fn, 0, DMA_TEST_MSIX_PBA, 8, &v);
		pci_fn_irq_pending(st->fn, PCI_IRQ_MSIX, 1);
	}
	return NULL;
}

TEST_F_TIMEOUT(pci, concurrent_accesses_and_resets, 120)
{
	struct stress st = { .fn = self->fn };
	pthread_t t[2];

	ASSERT_EQ(0, pthread_create(&t[0], NULL, stress_raiser, &st));
	ASSERT_EQ(0, pthread_create(&t[1], NULL, stress_reader, &st));
	for (unsigned int i = 0; i < 200; i++) {
		ASSERT_EQ(0, cfg_write(self->fn, PCI_CFG_COMMAND, 2,
				       PCI_CMD_MEMORY | PCI_CMD_MASTER));
		ASSERT_EQ(0, pci_fn_irq_enable(self->fn, i % 3 ? PCI_IRQ_MSIX : PCI_IRQ_MSI,
					       1 + i % 4));
		/* Now and then, make sure messages do get out between the resets. */
		if (i % 40 == 1 && i % 3) {
			unsigned int seen = pt_irqs_msix(&self->irqs, 0);

			ASSERT_TRUE(pt_irqs_wait_msix(&self->irqs, 0, seen + 1));
		}
		if (i % 2)
			ASSERT_EQ(0, cfg_write(self->fn, EXP + 8, 2, 0x8000));
		else
			ASSERT_EQ(0, pci_fn_reset(self->fn));
	}
	atomic_store(&st.stop, true);
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	/* Power-on after the last reset, and the messages that went out were counted. */
	ASSERT_EQ(0, pt_cfg16(self->fn, PCI_CFG_COMMAND));
	pthread_mutex_lock(&self->irqs.lock);
	TH_LOG("%u MSI-X, %u MSI messages on vector 0", self->irqs.msix[0], self->irqs.msi[0]);
	pthread_mutex_unlock(&self->irqs.lock);
}

/* ---- models ---------------------------------------------------------------------------------- */

static atomic_int toy_realized, toy_unrealized, toy_resets;
static uint64_t toy_last_write;

static int toy_realize(struct uiommu_pci_fn *fn)
{
	atomic_fetch_add(&toy_realized, 1);
	uiommu_pci_fn_set_priv(fn, &toy_last_write);
	return 0;
}

static void toy_unrealize(struct uiommu_pci_fn *fn)
{
	atomic_fetch_add(&toy_unrealized, 1);
}

static void toy_reset(struct uiommu_pci_fn *fn)
{
	atomic_fetch_add(&toy_resets, 1);
}

static uint64_t toy_read(struct uiommu_pci_fn *fn, unsigned int bar, uint64_t off, unsigned int w)
{
	return 0x0102030405060708ull;
}

static void toy_write(struct uiommu_pci_fn *fn, unsigned int bar, uint64_t off, unsigned int w,
		      uint64_t v)
{
	*(uint64_t *)uiommu_pci_fn_priv(fn) = v;
}

static const struct uiommu_pci_model toy = {
	.version = UIOMMU_PCI_MODEL_V1,
	.name = "toy",
	.vendor_id = 0x1234, .device_id = 0x7070, .class_code = 0x058000,
	.caps = UIOMMU_PCI_CAP_MSIX,
	.msix_vectors = 8, .msix_table_bar = 1, .msix_pba_bar = 1, .msix_pba_offset = 0x800,
	.bars = { [0] = { .size = 4096 }, [1] = { .size = 4096 } },
	.realize = toy_realize, .unrealize = toy_unrealize, .reset = toy_reset,
	.bar_read = toy_read, .bar_write = toy_write,
};

static int register_variant(void (*change)(struct uiommu_pci_model *m))
{
	struct uiommu_pci_model m = toy;

	m.name = "variant";
	change(&m);
	if (!uiommu_pci_model_register(&m)) {
		uiommu_pci_model_unregister("variant");
		return 0;
	}
	return errno;
}

static void bad_version(struct uiommu_pci_model *m) { m->version = UIOMMU_PCI_MODEL_V3 + 1; }
static const uint8_t toy_rom[3000] = { 0x55, 0xaa };
static void rom_without_size(struct uiommu_pci_model *m)
{
	m->version = UIOMMU_PCI_MODEL_V3;
	m->rom = toy_rom;
}
static void size_without_rom(struct uiommu_pci_model *m)
{
	m->version = UIOMMU_PCI_MODEL_V3;
	m->rom_size = 16;
}
static void rom_too_big(struct uiommu_pci_model *m)
{
	m->version = UIOMMU_PCI_MODEL_V3;
	m->rom = toy_rom;
	m->rom_size = UIOMMU_PCI_ROM_MAX + 1;
}
static void fine_rom(struct uiommu_pci_model *m)
{
	m->version = UIOMMU_PCI_MODEL_V3;
	m->rom = toy_rom;
	m->rom_size = sizeof(toy_rom);
}
/* A V1 or V2 model's bytes past its struct are not read: a stray ROM pointer is ignored. */
static void rom_ignored_before_v3(struct uiommu_pci_model *m)
{
	m->version = UIOMMU_PCI_MODEL_V2;
	m->rom_size = 16;
}
static void no_name(struct uiommu_pci_model *m) { m->name = ""; }
static void long_name(struct uiommu_pci_model *m) { m->name = "a-name-of-thirty-two-characters!"; }
static void bar_not_pow2(struct uiommu_pci_model *m) { m->bars[0].size = 3000; }
static void bar_too_small(struct uiommu_pci_model *m) { m->bars[0].size = 8; }
static void io_too_big(struct uiommu_pci_model *m)
{
	m->bars[2].size = 512;
	m->bars[2].flags = UIOMMU_PCI_BAR_IO;
}
static void bar64_in_5(struct uiommu_pci_model *m)
{
	m->bars[5].size = 4096;
	m->bars[5].flags = UIOMMU_PCI_BAR_64;
}
static void bar64_next_used(struct uiommu_pci_model *m) { m->bars[0].flags = UIOMMU_PCI_BAR_64; }
static void area_unaligned(struct uiommu_pci_model *m)
{
	m->bars[2].size = 16384;
	m->bars[2].nr_areas = 1;
	m->bars[2].areas[0] = (struct uiommu_pci_area){ .offset = 100, .size = 4096 };
}
static void area_outside(struct uiommu_pci_model *m)
{
	m->bars[2].size = 16384;
	m->bars[2].nr_areas = 1;
	m->bars[2].areas[0] = (struct uiommu_pci_area){ .offset = 12288, .size = 8192 };
}
static void areas_overlap(struct uiommu_pci_model *m)
{
	m->bars[2].size = 16384;
	m->bars[2].nr_areas = 2;
	m->bars[2].areas[0] = (struct uiommu_pci_area){ .offset = 0, .size = 8192 };
	m->bars[2].areas[1] = (struct uiommu_pci_area){ .offset = 4096, .size = 4096 };
}
static void area_over_msix(struct uiommu_pci_model *m)
{
	m->bars[1].nr_areas = 1;
	m->bars[1].areas[0] = (struct uiommu_pci_area){ .offset = 0, .size = 4096 };
}
static void msix_outside(struct uiommu_pci_model *m) { m->msix_table_offset = 4088; }
static void msix_in_io(struct uiommu_pci_model *m) { m->bars[1].flags = UIOMMU_PCI_BAR_IO; }
static void msix_overlap(struct uiommu_pci_model *m) { m->msix_pba_offset = 64; }
static void msix_too_many(struct uiommu_pci_model *m) { m->msix_vectors = 2049; }
static void msi_not_pow2(struct uiommu_pci_model *m)
{
	m->caps |= UIOMMU_PCI_CAP_MSI;
	m->msi_vectors = 3;
}
static void msi_without_cap(struct uiommu_pci_model *m) { m->msi_vectors = 2; }
static void bad_pin(struct uiommu_pci_model *m) { m->interrupt_pin = 5; }
static void bad_caps(struct uiommu_pci_model *m) { m->caps |= 1u << 9; }
static void bad_class(struct uiommu_pci_model *m) { m->class_code = 0x1000000; }
static void fine(struct uiommu_pci_model *m) { (void)m; }

TEST(model_registration_errnos)
{
	static void (*const bad[])(struct uiommu_pci_model *) = {
		bad_version, no_name, long_name, bar_not_pow2, bar_too_small, io_too_big,
		bar64_in_5, bar64_next_used, area_unaligned, area_outside, areas_overlap,
		area_over_msix, msix_outside, msix_in_io, msix_overlap, msix_too_many,
		msi_not_pow2, msi_without_cap, bad_pin, bad_caps, bad_class, rom_without_size,
		size_without_rom, rom_too_big,
	};
	struct uiommu_pci_model dup = toy;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		TH_LOG("case %zu", i);
		ASSERT_EQ(EINVAL, register_variant(bad[i]));
	}
	ASSERT_EQ(0, register_variant(fine));
	ASSERT_EQ(0, register_variant(fine_rom));
	ASSERT_EQ(0, register_variant(rom_ignored_before_v3));
	ASSERT_EQ(-1, uiommu_pci_model_register(NULL));
	ASSERT_EQ(EINVAL, errno);
	dup.name = "dma-test";
	ASSERT_EQ(-1, uiommu_pci_model_register(&dup));
	ASSERT_EQ(EEXIST, errno);
	ASSERT_EQ(0, uiommu_pci_model_register(&toy));
	ASSERT_EQ(-1, uiommu_pci_model_register(&toy));
	ASSERT_EQ(EEXIST, errno);
	ASSERT_EQ(0, uiommu_pci_model_unregister("toy"));
	ASSERT_EQ(-1, uiommu_pci_model_unregister("toy"));
	ASSERT_EQ(ENOENT, errno);
	ASSERT_EQ(-1, uiommu_pci_model_unregister("dma-test"));
	ASSERT_EQ(ENOENT, errno);
	ASSERT_EQ(-1, uiommu_pci_model_unregister(NULL));
	ASSERT_EQ(EINVAL, errno);
}

TEST(a_registered_model_runs)
{
	static const char json[] =
		"{ \"iommus\": [ { \"name\": \"i0\" } ], \"devices\": [\n"
		"  { \"bdf\": \"0000:09:00.0\", \"iommu\": \"i0\", \"model\": \"toy\" } ] }";
	struct uiommu_pci_fn *fn;

	/* Unknown model: the topology does not load; a model with a class: refused. */
	ASSERT_EQ(-EINVAL, pt_load(json));
	ASSERT_EQ(-EINVAL, pt_load("{ \"iommus\": [ { \"name\": \"i0\" } ], \"devices\": [\n"
				   "  { \"bdf\": \"0000:09:00.0\", \"iommu\": \"i0\",\n"
				   "    \"model\": \"dma-test\", \"class\": 1 } ] }"));
	ASSERT_EQ(-EINVAL, pt_load("{ \"iommus\": [ { \"name\": \"i0\" } ], \"devices\": [\n"
				   "  { \"bdf\": \"0000:09:00.0\", \"iommu\": \"i0\",\n"
				   "    \"class\": \"0x1000000\" } ] }"));
	ASSERT_EQ(0, uiommu_pci_model_register(&toy));
	ASSERT_EQ(0, pt_load(json));
	ASSERT_EQ(1, atomic_load(&toy_realized));
	ASSERT_EQ(1, atomic_load(&toy_resets)); /* plugged at boot: power-on reset */
	fn = pci_fn_get_by_bdf("0000:09:00.0");
	ASSERT_TRUE(fn != NULL);
	ASSERT_TRUE(uiommu_pci_fn_model(fn) == &toy);
	ASSERT_STREQ("0000:09:00.0", uiommu_pci_fn_name(fn));
	ASSERT_EQ(0u, uiommu_pci_fn_pasid_bits(fn));
	/* No PCIe: 256 bytes of config space, only the MSI-X capability. */
	ASSERT_EQ(256u, pci_fn_config_size(fn));
	/* Capabilities sit at fixed places. */
	ASSERT_EQ(0x60u, pci_fn_find_cap(fn, PCI_CAP_ID_MSIX));
	ASSERT_EQ(0x60u, pt_cfg16(fn, PCI_CFG_CAP_PTR) & 0xff);
	ASSERT_EQ(0u, pci_fn_find_cap(fn, PCI_CAP_ID_EXP));
	ASSERT_EQ(0x00000801u, pt_cfg32(fn, 0x68)); /* the PBA in BAR1 at 0x800 */
	ASSERT_EQ(0, pci_fn_config_write_reg(fn, PCI_CFG_COMMAND, 2, PCI_CMD_MEMORY));
	ASSERT_EQ(0x05060708u, pt_bar(fn, 0, 0x10, 4));
	ASSERT_EQ(0, pci_fn_bar_write(fn, 0, 0x18, 8, 77));
	ASSERT_EQ(77u, toy_last_write);
	ASSERT_EQ(0u, pt_bar(fn, 1, 0, 4)); /* the MSI-X table, not the model */
	ASSERT_EQ(1u, pt_bar(fn, 1, 12, 4));
	/* No FLR without PCIe; pci_fn_reset() still resets. */
	ASSERT_EQ(0, pci_fn_reset(fn));
	ASSERT_EQ(2, atomic_load(&toy_resets));
	ASSERT_EQ(-1, uiommu_pci_model_unregister("toy"));
	ASSERT_EQ(EBUSY, errno);
	topology_unload();
	ASSERT_EQ(1, atomic_load(&toy_unrealized));
	/* After unrealize the held function answers ENODEV. */
	ASSERT_FALSE(pci_fn_alive(fn));
	ASSERT_EQ(-ENODEV, pci_fn_config_read_reg(fn, 0, 4, (uint32_t[1]){ 0 }));
	ASSERT_EQ(-ENODEV, pci_fn_bar_read(fn, 0, 0, 4, (uint64_t[1]){ 0 }));
	ASSERT_EQ(-ENODEV, pci_fn_reset(fn));
	ASSERT_EQ(-1, uiommu_pci_irq_raise(fn, 0));
	ASSERT_EQ(ENODEV, errno);
	pci_fn_put(fn);
	ASSERT_EQ(0, uiommu_pci_model_unregister("toy"));
}

/* ---- fault injection ------------------------------------------------------------------------ */

static int load_pt_topology(void)
{
	return pt_load(pt_topology);
}

TEST(fail_nth_boot_with_models)
{
	/* Settled: deferred (RCU) frees still queued count as freed. */
	long live0 = uiommu_alloc_live_settled();
	unsigned long nth;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	ASSERT_EQ(0ul, pt_fail_nth_boot(load_pt_topology));
	ASSERT_TRUE(topology_loaded());
	topology_unload();
	ASSERT_EQ(live0, uiommu_alloc_live_settled());
	/* And the model's own registration. */
	for (nth = 1; nth < 100; nth++) {
		int rc;

		uiommu_fail_nth_arm(nth);
		rc = uiommu_pci_model_register(&toy);
		if (uiommu_fail_nth_disarm()) {
			ASSERT_EQ(0, rc);
			break;
		}
		ASSERT_EQ(-1, rc);
		ASSERT_EQ(ENOMEM, errno);
	}
	ASSERT_EQ(0, uiommu_pci_model_unregister("toy"));
}

TEST_HARNESS_MAIN
