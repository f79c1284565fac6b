// SPDX-License-Identifier: MIT
/*
 * Config space of the machine's PCI functions: its power-on layout and the hardware rules of
 * each register.
 *
 * Data model. A function's config space is three byte arrays of the config size: the contents,
 * a writable mask and a write-1-to-clear mask. A config write of any length is applied byte by
 * byte: writable bits take the written value, RW1C bits clear where a 1 is written, everything
 * else stays. That one rule gives most of PCI's behaviour for free: read-only IDs, BAR sizing
 * (a BAR's writable bits are exactly the address bits above its size, so writing all-ones
 * reads back the size mask with the type bits; the expansion ROM BAR the same, with its enable
 * bit), Status's error bits. What the masks cannot say
 * is returned as "effects" (struct pci_cfg_effects) that pci.c runs after dropping the
 * function's lock: the Command register's consequences (DMA gate, INTx line, the model's
 * command_written()), Initiate FLR, MSI/MSI-X unmasking. A few registers are fixed up here
 * after the write: MSI's Multiple Message Enable is clamped to what the function can do, and a
 * write of a power state the PM capability does not support (D1, D2) leaves the state as it
 * was, as the PCI PM spec asks.
 *
 * Layout. The standard header is a type 0 header; the capabilities sit at fixed offsets
 * (pci_priv.h) and are linked in that order: PM, MSI (64-bit, per-vector masking), MSI-X,
 * PCI Express v2 endpoint (with FLR), then the model's vendor-specific ones (read-only bytes
 * packed from 0xa4). PCIe functions have 4 KiB of config space and an
 * extended list at 0x100 with, as the topology gives the function those features, ATS, PRI
 * and PASID; with none the dword at 0x100 is 0, which software reads as "no extended list".
 *
 * Everything here runs with the function's lock held (or before the function is published)
 * and calls nothing outside this file.
 */
#include <string.h>

#include "lib/compiler.h"
#include "machine/pci_priv.h"

uint16_t pci_config_get16(const struct uiommu_pci_fn *fn, unsigned int off)
{
	return (uint16_t)(fn->cfg[off] | fn->cfg[off + 1] << 8);
}

uint32_t pci_config_get32(const struct uiommu_pci_fn *fn, unsigned int off)
{
	return (uint32_t)pci_config_get16(fn, off) | (uint32_t)pci_config_get16(fn, off + 2) << 16;
}

void pci_config_set16(struct uiommu_pci_fn *fn, unsigned int off, uint16_t v)
{
	fn->cfg[off] = (uint8_t)v;
	fn->cfg[off + 1] = (uint8_t)(v >> 8);
}

void pci_config_set32(struct uiommu_pci_fn *fn, unsigned int off, uint32_t v)
{
	pci_config_set16(fn, off, (uint16_t)v);
	pci_config_set16(fn, off + 2, (uint16_t)(v >> 16));
}

static void pci_config_wmask16(struct uiommu_pci_fn *fn, unsigned int off, uint16_t m)
{
	fn->cfg_wmask[off] = (uint8_t)m;
	fn->cfg_wmask[off + 1] = (uint8_t)(m >> 8);
}

static void pci_config_wmask32(struct uiommu_pci_fn *fn, unsigned int off, uint32_t m)
{
	pci_config_wmask16(fn, off, (uint16_t)m);
	pci_config_wmask16(fn, off + 2, (uint16_t)(m >> 16));
}

static void pci_config_w1c16(struct uiommu_pci_fn *fn, unsigned int off, uint16_t m)
{
	fn->cfg_w1c[off] = (uint8_t)m;
	fn->cfg_w1c[off + 1] = (uint8_t)(m >> 8);
}

/* Links a standard capability of @id at @off after the one at *@prev_next. */
static void pci_config_cap(struct uiommu_pci_fn *fn, unsigned int off, uint8_t id,
			   unsigned int *prev_next)
{
	fn->cfg[off] = id;
	fn->cfg[off + 1] = 0;
	fn->cfg[*prev_next] = (uint8_t)off;
	*prev_next = off + 1;
}

/* Links an extended capability of @id, version 1, at @off after the one at *@prev (0: first). */
static void pci_config_ext_cap(struct uiommu_pci_fn *fn, unsigned int off, uint16_t id,
			       unsigned int *prev)
{
	pci_config_set32(fn, off, id | 1u << 16);
	if (*prev)
		pci_config_set32(fn, *prev, pci_config_get32(fn, *prev) | (uint32_t)off << 20);
	*prev = off;
}

static void pci_config_init_header(struct uiommu_pci_fn *fn)
{
	const struct uiommu_pci_model *m = fn->model;
	uint16_t cmd_mask = PCI_CMD_MASTER | 0x0040 /* parity */ | PCI_CMD_SERR;

	pci_config_set16(fn, PCI_CFG_VENDOR_ID, m->vendor_id);
	pci_config_set16(fn, PCI_CFG_DEVICE_ID, m->device_id);
	fn->cfg[PCI_CFG_REVISION] = m->revision;
	fn->cfg[PCI_CFG_CLASS_PROG] = (uint8_t)m->class_code;
	fn->cfg[PCI_CFG_CLASS_PROG + 1] = (uint8_t)(m->class_code >> 8);
	fn->cfg[PCI_CFG_CLASS_PROG + 2] = (uint8_t)(m->class_code >> 16);
	fn->cfg_wmask[0x0c] = 0xff; /* cache line size */
	pci_config_set16(fn, PCI_CFG_SUBSYS_VENDOR, m->subsystem_vendor_id);
	pci_config_set16(fn, PCI_CFG_SUBSYS_ID, m->subsystem_id);
	fn->cfg[PCI_CFG_INT_PIN] = m->interrupt_pin;
	fn->cfg_wmask[PCI_CFG_INT_LINE] = 0xff;
	if (m->interrupt_pin)
		cmd_mask |= PCI_CMD_INTX_DISABLE;
	/* Status: the error bits are RW1C (parity, signalled/received aborts, SERR). */
	pci_config_w1c16(fn, PCI_CFG_STATUS, 0xf900);

	for (unsigned int i = 0; i < UIOMMU_PCI_NUM_BARS; i++) {
		uint64_t size = fn->bar_size[i], addr_mask = ~(size - 1);
		unsigned int off = PCI_CFG_BAR0 + 4 * i;

		if (!size)
			continue;
		if (fn->bar_flags[i] & UIOMMU_PCI_BAR_IO) {
			pci_config_set32(fn, off, 0x1);
			pci_config_wmask32(fn, off, (uint32_t)addr_mask & ~0x3u);
			cmd_mask |= PCI_CMD_IO;
			continue;
		}
		cmd_mask |= PCI_CMD_MEMORY;
		pci_config_set32(fn, off,
				 (fn->bar_flags[i] & UIOMMU_PCI_BAR_64 ? 0x4u : 0) |
				 (fn->bar_flags[i] & UIOMMU_PCI_BAR_PREFETCH ? 0x8u : 0));
		pci_config_wmask32(fn, off, (uint32_t)addr_mask & ~0xfu);
		if (fn->bar_flags[i] & UIOMMU_PCI_BAR_64)
			pci_config_wmask32(fn, off + 4, (uint32_t)(addr_mask >> 32));
	}
	/* The expansion ROM BAR: address bits above its size and the enable bit, as hardware's. */
	if (fn->rom_size) {
		pci_config_wmask32(fn, PCI_CFG_ROM,
				   ((uint32_t)~(fn->rom_size - 1) & PCI_ROM_ADDR_MASK) | PCI_ROM_ENABLE);
		cmd_mask |= PCI_CMD_MEMORY;
	}
	pci_config_wmask16(fn, PCI_CFG_COMMAND, cmd_mask);
}

static void pci_config_init_msi(struct uiommu_pci_fn *fn, unsigned int c)
{
	unsigned int n = fn->model->msi_vectors, mmc = 0;

	while ((1u << mmc) < n)
		mmc++;
	pci_config_set16(fn, c + PCI_MSI_FLAGS, (uint16_t)(PCI_MSI_FLAGS_64BIT |
			 PCI_MSI_FLAGS_MASKBIT | mmc << 1));
	pci_config_wmask16(fn, c + PCI_MSI_FLAGS, PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE);
	pci_config_wmask32(fn, c + PCI_MSI_ADDRESS_LO, 0xfffffffc);
	pci_config_wmask32(fn, c + PCI_MSI_ADDRESS_HI, 0xffffffff);
	pci_config_wmask16(fn, c + PCI_MSI_DATA_64, 0xffff);
	pci_config_wmask32(fn, c + PCI_MSI_MASK_64, n == 32 ? 0xffffffffu : (1u << n) - 1);
}

static void pci_config_init_msix(struct uiommu_pci_fn *fn, unsigned int c)
{
	const struct uiommu_pci_model *m = fn->model;

	pci_config_set16(fn, c + PCI_MSIX_FLAGS, (uint16_t)(m->msix_vectors - 1));
	pci_config_wmask16(fn, c + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	pci_config_set32(fn, c + PCI_MSIX_TABLE, m->msix_table_offset | m->msix_table_bar);
	pci_config_set32(fn, c + PCI_MSIX_PBA, m->msix_pba_offset | m->msix_pba_bar);
}

static void pci_config_init_exp(struct uiommu_pci_fn *fn, unsigned int c)
{
	pci_config_set16(fn, c + 2, 0x0002);              /* version 2, endpoint */
	pci_config_set32(fn, c + PCI_EXP_DEVCAP, PCI_EXP_DEVCAP_FLR | 0x8000 /* RBER */);
	/* Relaxed ordering, no snoop, 512-byte reads: what firmware leaves. Phantom functions and
	 * Initiate FLR are not storage (FLR is an action that reads 0). */
	pci_config_set16(fn, c + PCI_EXP_DEVCTL, 0x2810);
	pci_config_wmask16(fn, c + PCI_EXP_DEVCTL, 0x7dff);
	pci_config_w1c16(fn, c + PCI_EXP_DEVSTA, 0x000f);
	pci_config_set32(fn, c + 0x0c, 0x00000011);       /* link: 2.5 GT/s, x1 */
	pci_config_wmask16(fn, c + 0x10, 0x00cb);         /* ASPM, RCB, common clock, ext sync */
	pci_config_set16(fn, c + 0x12, 0x0011);
	pci_config_set32(fn, c + 0x2c, 0x00000002);       /* link cap 2: 2.5 GT/s */
	pci_config_set16(fn, c + 0x30, 0x0001);
}

static void pci_config_init_ext(struct uiommu_pci_fn *fn)
{
	struct device *dev = fn->dev;
	unsigned int off = PCI_CFG_OFF_EXT, prev = 0;

	if (dev->ats) {
		fn->cap_ats = off;
		pci_config_ext_cap(fn, off, PCI_EXT_CAP_ID_ATS, &prev);
		pci_config_set16(fn, off + 4, 0x0020);      /* page aligned requests */
		pci_config_wmask16(fn, off + PCI_ATS_CTRL, 0x801f); /* enable, STU */
		off += 8;
	}
	if (dev->pri) {
		fn->cap_pri = off;
		pci_config_ext_cap(fn, off, PCI_EXT_CAP_ID_PRI, &prev);
		/* Enable (Reset is an action, not storage). */
		pci_config_wmask16(fn, off + PCI_PRI_CTRL, 0x0001);
		/* Status: stopped while disabled; PRG responses need a PASID when it has them. */
		pci_config_set16(fn, off + 6, (uint16_t)(0x0100 | (dev->pasid_bits ? 0x8000 : 0)));
		pci_config_w1c16(fn, off + 6, 0x0003);
		pci_config_set32(fn, off + 8, 512);         /* outstanding request capacity */
		pci_config_wmask32(fn, off + 12, 0xffffffff);
		off += 16;
	}
	if (dev->pasid_bits) {
		fn->cap_pasid = off;
		pci_config_ext_cap(fn, off, PCI_EXT_CAP_ID_PASID, &prev);
		pci_config_set16(fn, off + 4, (uint16_t)(dev->pasid_bits << 8));
		pci_config_wmask16(fn, off + PCI_PASID_CTRL, 0x0001);
	}
}

/* The model's vendor-specific capabilities, packed from 0xa4 (registration checked the fit). */
static void pci_config_init_vendor(struct uiommu_pci_fn *fn, unsigned int *next)
{
	const struct uiommu_pci_model *m = fn->model;
	unsigned int off = PCI_CFG_OFF_VNDR;

	for (unsigned int i = 0; i < m->nr_vendor_caps; i++) {
		const struct uiommu_pci_vendor_cap *c = &m->vendor_caps[i];

		pci_config_cap(fn, off, PCI_CAP_ID_VNDR, next);
		fn->cfg[off + 2] = (uint8_t)(3 + c->len);
		memcpy(&fn->cfg[off + 3], c->data, c->len);
		off = ALIGN_UP(off + 3 + c->len, 4u);
	}
}

/**
 * pci_config_init() - the function's power-on config space, from its model and its device
 *
 * Also what a function level reset returns to. Sets the capability offsets (the same ones
 * every time); the config size is the creator's, fixed for the function's life.
 */
void pci_config_init(struct uiommu_pci_fn *fn)
{
	const struct uiommu_pci_model *m = fn->model;
	unsigned int next = PCI_CFG_CAP_PTR;

	memset(fn->cfg, 0, sizeof(fn->cfg));
	memset(fn->cfg_wmask, 0, sizeof(fn->cfg_wmask));
	memset(fn->cfg_w1c, 0, sizeof(fn->cfg_w1c));
	fn->cap_pm = fn->cap_msi = fn->cap_msix = fn->cap_exp = 0;
	fn->cap_ats = fn->cap_pri = fn->cap_pasid = 0;

	pci_config_init_header(fn);
	if (m->caps & UIOMMU_PCI_CAP_PM) {
		fn->cap_pm = PCI_CFG_OFF_PM;
		pci_config_cap(fn, PCI_CFG_OFF_PM, PCI_CAP_ID_PM, &next);
		pci_config_set16(fn, PCI_CFG_OFF_PM + 2, 0x0003);   /* PM spec 1.2, no D1/D2/PME */
		pci_config_set16(fn, PCI_CFG_OFF_PM + PCI_PM_CTRL, PCI_PM_CTRL_NO_SOFT_RESET);
		pci_config_wmask16(fn, PCI_CFG_OFF_PM + PCI_PM_CTRL, PCI_PM_CTRL_STATE_MASK);
	}
	if (m->caps & UIOMMU_PCI_CAP_MSI) {
		fn->cap_msi = PCI_CFG_OFF_MSI;
		pci_config_cap(fn, PCI_CFG_OFF_MSI, PCI_CAP_ID_MSI, &next);
		pci_config_init_msi(fn, PCI_CFG_OFF_MSI);
	}
	if (m->caps & UIOMMU_PCI_CAP_MSIX) {
		fn->cap_msix = PCI_CFG_OFF_MSIX;
		pci_config_cap(fn, PCI_CFG_OFF_MSIX, PCI_CAP_ID_MSIX, &next);
		pci_config_init_msix(fn, PCI_CFG_OFF_MSIX);
	}
	if (m->caps & UIOMMU_PCI_CAP_PCIE) {
		fn->cap_exp = PCI_CFG_OFF_EXP;
		pci_config_cap(fn, PCI_CFG_OFF_EXP, PCI_CAP_ID_EXP, &next);
		pci_config_init_exp(fn, PCI_CFG_OFF_EXP);
		pci_config_init_ext(fn);
	}
	if (m->version >= UIOMMU_PCI_MODEL_V2)
		pci_config_init_vendor(fn, &next);
	if (next != PCI_CFG_CAP_PTR)
		pci_config_set16(fn, PCI_CFG_STATUS, PCI_STS_CAP_LIST);
}

static bool pci_config_overlaps(unsigned int off, size_t len, unsigned int reg, unsigned int size)
{
	return off < reg + size && reg < off + len;
}

/**
 * pci_config_write_locked() - apply a config write of @len bytes at @off (inside the config
 * space, checked by the caller) and say what it changed in @eff
 */
void pci_config_write_locked(struct uiommu_pci_fn *fn, unsigned int off, const uint8_t *buf,
			     size_t len, struct pci_cfg_effects *eff)
{
	unsigned int flr_byte = fn->cap_exp ? fn->cap_exp + PCI_EXP_DEVCTL + 1 : 0;
	uint16_t old_pm = fn->cap_pm ? pci_config_get16(fn, fn->cap_pm + PCI_PM_CTRL) : 0;

	lockdep_assert_held(&fn->lock);
	memset(eff, 0, sizeof(*eff));
	eff->old_cmd = pci_config_get16(fn, PCI_CFG_COMMAND);
	for (size_t i = 0; i < len; i++) {
		unsigned int o = off + (unsigned int)i;

		fn->cfg[o] = (uint8_t)((fn->cfg[o] & ~fn->cfg_wmask[o]) |
				       (buf[i] & fn->cfg_wmask[o]));
		fn->cfg[o] &= (uint8_t)~(buf[i] & fn->cfg_w1c[o]);
		if (o == flr_byte && (buf[i] & (PCI_EXP_DEVCTL_BCR_FLR >> 8)))
			eff->flr = true;
	}
	eff->new_cmd = pci_config_get16(fn, PCI_CFG_COMMAND);
	eff->cmd_written = pci_config_overlaps(off, len, PCI_CFG_COMMAND, 2);

	if (fn->cap_msi) {
		unsigned int c = fn->cap_msi;
		uint16_t flags = pci_config_get16(fn, c + PCI_MSI_FLAGS);
		unsigned int mmc = (flags & PCI_MSI_FLAGS_QMASK) >> 1;

		/* A Multiple Message Enable beyond the capable count gets the capable count. */
		if ((unsigned int)((flags & PCI_MSI_FLAGS_QSIZE) >> 4) > mmc)
			pci_config_set16(fn, c + PCI_MSI_FLAGS,
					 (uint16_t)((flags & ~PCI_MSI_FLAGS_QSIZE) | mmc << 4));
		if (pci_config_overlaps(off, len, c + PCI_MSI_FLAGS, 2) ||
		    pci_config_overlaps(off, len, c + PCI_MSI_MASK_64, 4))
			eff->may_unmask = true;
	}
	if (fn->cap_msix && pci_config_overlaps(off, len, fn->cap_msix + PCI_MSIX_FLAGS, 2))
		eff->may_unmask = true;
	if (fn->cap_pm) {
		unsigned int c = fn->cap_pm + PCI_PM_CTRL;
		uint16_t pm = pci_config_get16(fn, c);
		unsigned int state = pm & PCI_PM_CTRL_STATE_MASK;

		/* D1 and D2 are not supported: such a write leaves the state alone. */
		if (state == 1 || state == 2)
			pci_config_set16(fn, c, (uint16_t)((pm & ~PCI_PM_CTRL_STATE_MASK) |
					 (old_pm & PCI_PM_CTRL_STATE_MASK)));
	}
	if (eff->flr && !(pci_config_get32(fn, fn->cap_exp + PCI_EXP_DEVCAP) & PCI_EXP_DEVCAP_FLR))
		eff->flr = false;
}

/* The first standard capability @id, walked from the pointer at 0x34 (at most 48 links). */
unsigned int pci_config_find_cap_locked(const struct uiommu_pci_fn *fn, uint8_t id)
{
	unsigned int pos;

	if (!(pci_config_get16(fn, PCI_CFG_STATUS) & PCI_STS_CAP_LIST))
		return 0;
	pos = fn->cfg[PCI_CFG_CAP_PTR] & ~3u;
	for (unsigned int ttl = 48; pos >= 0x40 && ttl; ttl--) {
		if (fn->cfg[pos] == id)
			return pos;
		pos = fn->cfg[pos + 1] & ~3u;
	}
	return 0;
}

/* The first extended capability @id, walked from 0x100 (0 when the list is empty). */
unsigned int pci_config_find_ext_cap_locked(const struct uiommu_pci_fn *fn, uint16_t id)
{
	unsigned int pos = PCI_CFG_OFF_EXT;

	if (fn->cfg_size <= PCI_CFG_SPACE_SIZE)
		return 0;
	for (unsigned int ttl = (PCI_CFG_SPACE_EXP_SIZE - PCI_CFG_SPACE_SIZE) / 8; ttl; ttl--) {
		uint32_t hdr = pci_config_get32(fn, pos);

		if (!hdr)
			return 0;
		if ((hdr & 0xffff) == id)
			return pos;
		pos = (hdr >> 20) & 0xffc;
		if (pos < PCI_CFG_OFF_EXT)
			return 0;
	}
	return 0;
}
