// SPDX-License-Identifier: MIT
/*
 * vfio-pci's virtual config space: what a user of the device fd sees at region 7, built over
 * the machine's function as the kernel's vfio_pci_config.c builds it over real hardware. The
 * rules are the kernel's (docs/vfio.md, the spec's section 3); the code is ours.
 *
 * Data model. At the device's first open vfio_config_init() copies the function's config space
 * into core->vconfig and gives every byte three things: an owner (core->map: the standard
 * header, a standard capability id, VCFG_EXT | an extended capability id, or VCFG_UNASSIGNED),
 * the bits that are virtualized (vmask: read from vconfig, written to vconfig only) and the bits
 * that are writable (wmask). Per-capability rules are written into those masks once, so an
 * access is one generic step plus a few registers with side effects:
 *   read:  (function & ~vmask) | (vconfig & vmask), with one config cycle of the access width;
 *   write: dropped when no bit is writable; writable non-virtualized bits are merged into a
 *          fresh read of the function and written back with the same width; writable
 *          virtualized bits go to vconfig; the rest is ignored.
 * Unassigned bytes (gaps, hidden capabilities, extended space without a list) are raw: nothing
 * virtualized, everything writable, so they reach the function as they are.
 *
 * Invariants: the capability lists seen through vconfig link exactly the visible capabilities
 * (hidden ones are unlinked by rewriting the previous Next in vconfig); BARs and the ROM BAR
 * never reach the function: their values are recomputed from vconfig and the sizes whenever a
 * BAR was written (bardirty), which is what makes sizing with all-ones work.
 *
 * Everything here runs under core->lock.
 */
#include <errno.h>
#include <string.h>

#include "vfio/vfio_pci_priv.h"

#define PCI_STD_HEADER_SIZE 0x40u
#define PCI_CAP_ID_VPD 0x03
#define PCI_CAP_ID_PCIX 0x07
#define PCI_CAP_ID_HT 0x08
#define PCI_CAP_ID_VNDR 0x09
#define PCI_CAP_ID_SATA 0x12
#define PCI_CAP_ID_AF 0x13
#define PCI_EXP_DEVCAP 4u
#define PCI_EXP_DEVCAP_FLR 0x10000000u
#define PCI_EXP_DEVCTL 8u
#define PCI_EXP_DEVCTL_FLR 0x8000u
#define PCI_EXP_DEVCTL2 0x28u
#define PCI_PM_PMC 2u
#define PCI_PM_CTRL 4u
#define PCI_MSI_FLAGS 2u
#define PCI_MSI_FLAGS_ENABLE 0x01u
#define PCI_MSI_FLAGS_QSIZE 0x70u
#define PCI_MSI_FLAGS_QMASK 0x0eu
#define PCI_MSI_FLAGS_64BIT 0x80u
#define PCI_MSI_FLAGS_MASKBIT 0x100u
#define PCI_BAR_MEM_64 0x4u
#define PCI_BAR_MEM_PREFETCH 0x8u
#define PCI_BAR_IO 0x1u

static uint32_t cfg_get(const uint8_t *p, unsigned int off, unsigned int width)
{
	uint32_t v = 0;

	for (unsigned int i = 0; i < width; i++)
		v |= (uint32_t)p[off + i] << (8 * i);
	return v;
}

static void cfg_put(uint8_t *p, unsigned int off, unsigned int width, uint32_t v)
{
	for (unsigned int i = 0; i < width; i++)
		p[off + i] = (uint8_t)(v >> (8 * i));
}

/* Sets the virtualized and writable bits of a @width-byte field at @off. */
static void perm_set(struct vfio_pci_core *core, unsigned int off, unsigned int width,
		     uint32_t virt, uint32_t write)
{
	if (off + width > core->cfg_size)
		return;
	cfg_put(core->vmask, off, width, virt);
	cfg_put(core->wmask, off, width, write);
}

/* A function's register, as a config cycle; 0 on error (the function is gone). */
static uint32_t hw_read(struct vfio_pci_core *core, unsigned int off, unsigned int width)
{
	uint32_t v = 0;

	if (pci_fn_config_read_reg(core->fn, off, width, &v))
		return 0;
	return v;
}

/* ---- capability lengths, as vfio-pci sizes them -------------------------------------------- */

static unsigned int cap_len(struct vfio_pci_core *core, uint8_t id, unsigned int pos)
{
	uint16_t flags = (uint16_t)cfg_get(core->vconfig, pos + 2, 2);

	switch (id) {
	case PCI_CAP_ID_PM:
		return 8;
	case 0x02: /* AGP */
		return 12;
	case PCI_CAP_ID_VPD:
		return 8;
	case PCI_CAP_ID_MSI:
		return 10 + (flags & PCI_MSI_FLAGS_64BIT ? 4 : 0) +
		       (flags & PCI_MSI_FLAGS_MASKBIT ? 10 : 0);
	case PCI_CAP_ID_PCIX:
		return (cfg_get(core->vconfig, pos + 4, 4) & 0x30000000u) ? 24 : 8;
	case PCI_CAP_ID_HT:
		return 24;
	case PCI_CAP_ID_VNDR:
		return core->vconfig[pos + 2];
	case PCI_CAP_ID_EXP: {
		bool rc_end = ((flags >> 4) & 0xf) == 0x9;

		if ((flags & 0xf) > 1)
			return rc_end ? 0x2c : 0x34;
		return rc_end ? 0x0c : 0x14;
	}
	case PCI_CAP_ID_MSIX:
		return 12;
	case PCI_CAP_ID_SATA:
		return (core->vconfig[pos + 4] & 0xf) == 0xf ? 16 : 8;
	case PCI_CAP_ID_AF:
		return 6;
	default:
		return 0; /* hidden: NULL, SlotID, hot swap, Debug, CCRC, SHPC, SSVID, AGP8x, ... */
	}
}

static unsigned int ext_cap_len(struct vfio_pci_core *core, uint16_t id, unsigned int pos)
{
	uint32_t d4 = pos + 8 <= core->cfg_size ? cfg_get(core->vconfig, pos + 4, 4) : 0;

	switch (id) {
	case 0x01: /* AER */
		return 0x2c;
	case 0x02: case 0x08: case 0x09: /* VC, MFVC: without arbitration tables */
		return 0x10 + 0x0c * (1 + (d4 & 7));
	case 0x03: /* DSN */
		return 12;
	case 0x04: /* power budgeting */
		return 16;
	case 0x0b: case 0x23: /* vendor, DVSEC */
		return (d4 >> 20) & 0xfff;
	case 0x0d: { /* ACS */
		unsigned int bits;

		if (!(d4 & 0x20))
			return 8;
		bits = (d4 >> 8) & 0xff;
		if (!bits)
			bits = 256;
		return 8 + ((bits + 31) / 32) * 4;
	}
	case 0x0e: case 0x0f: case 0x18: /* ARI, ATS, LTR */
		return 8;
	case 0x10: /* SR-IOV */
		return 0x40;
	case 0x12: /* multicast */
		return 40;
	case 0x13: /* PRI */
		return 16;
	case 0x15: /* resizable BAR */
		return 4 + 8 * ((cfg_get(core->vconfig, pos + 8, 4) >> 5) & 7);
	case 0x16: /* DPA */
		return 16 + (d4 & 0x1f) + 1;
	case 0x17: /* TPH */
		return 12 + (((d4 >> 9) & 3) == 1 ? 2 * (((d4 >> 16) & 0x7ff) + 1) : 0);
	default:
		return 0; /* hidden, PASID among them */
	}
}

/* ---- the permissions of each piece ------------------------------------------------------------ */

static void perm_header(struct vfio_pci_core *core)
{
	for (unsigned int i = 0; i < PCI_STD_HEADER_SIZE; i++)
		core->map[i] = VCFG_HEADER;
	memset(core->vmask, 0, PCI_STD_HEADER_SIZE);
	memset(core->wmask, 0, PCI_STD_HEADER_SIZE);
	perm_set(core, PCI_CFG_VENDOR_ID, 4, 0xffffffffu, 0);
	perm_set(core, PCI_CFG_COMMAND, 2, PCI_CMD_INTX_DISABLE, 0xffff);
	perm_set(core, PCI_CFG_STATUS, 2, PCI_STS_CAP_LIST, 0);
	perm_set(core, 0x0c, 2, 0, 0xffff);       /* cache line size, latency timer */
	perm_set(core, 0x0f, 1, 0, 0xff);         /* BIST */
	perm_set(core, PCI_CFG_BAR0, 4, 0xffffffffu, 0xffffffffu);
	for (unsigned int b = 1; b < 6; b++)
		perm_set(core, PCI_CFG_BAR0 + 4 * b, 4, 0xffffffffu, 0xffffffffu);
	perm_set(core, PCI_CFG_ROM, 4, 0xffffffffu, 0xffffffffu);
	perm_set(core, PCI_CFG_CAP_PTR, 1, 0xff, 0);
	perm_set(core, PCI_CFG_INT_LINE, 1, 0xff, 0xff);
	perm_set(core, PCI_CFG_INT_PIN, 1, 0xff, 0);
}

static void perm_cap(struct vfio_pci_core *core, uint8_t id, unsigned int pos, unsigned int len)
{
	uint16_t flags = (uint16_t)cfg_get(core->vconfig, pos + 2, 2);

	for (unsigned int i = 0; i < len; i++)
		core->map[pos + i] = id;
	memset(core->vmask + pos, 0, len);
	memset(core->wmask + pos, 0, len);
	perm_set(core, pos, 2, 0xffff, 0); /* ID and Next */
	switch (id) {
	case PCI_CAP_ID_PM:
		core->pm_cap = pos;
		perm_set(core, pos + PCI_PM_PMC, 2, 0xf800, 0);
		perm_set(core, pos + PCI_PM_CTRL, 4, 0x8100, 0xffff7efcu);
		/* The guest cannot take PME: PME_Support, PME_En and PME_Status read 0. */
		cfg_put(core->vconfig, pos + PCI_PM_PMC, 2,
			cfg_get(core->vconfig, pos + PCI_PM_PMC, 2) & ~0xf800u);
		cfg_put(core->vconfig, pos + PCI_PM_CTRL, 2,
			cfg_get(core->vconfig, pos + PCI_PM_CTRL, 2) & ~0x8100u);
		break;
	case PCI_CAP_ID_VPD:
		perm_set(core, pos + 2, 2, 0xffff, 0xffff);
		perm_set(core, pos + 4, 4, 0xffffffffu, 0xffffffffu);
		break;
	case PCI_CAP_ID_PCIX:
		perm_set(core, pos + 2, 2, 0, 0xffff);
		if (len >= 12)
			perm_set(core, pos + 8, 4, 0, 0xffffffffu);
		break;
	case PCI_CAP_ID_MSI: {
		unsigned int data = pos + (flags & PCI_MSI_FLAGS_64BIT ? 12 : 8);

		core->msi_cap = pos;
		perm_set(core, pos + PCI_MSI_FLAGS, 1, 0xff, 0xff);
		perm_set(core, pos + 4, 4, 0xffffffffu, 0xffffffffu);
		if (flags & PCI_MSI_FLAGS_64BIT)
			perm_set(core, pos + 8, 4, 0xffffffffu, 0xffffffffu);
		perm_set(core, data, 2, 0xffff, 0xffff);
		if (flags & PCI_MSI_FLAGS_MASKBIT) {
			perm_set(core, data + 4, 4, 0, 0xffffffffu); /* mask */
			perm_set(core, data + 8, 4, 0, 0xffffffffu); /* pending */
		}
		break;
	}
	case PCI_CAP_ID_MSIX:
		core->msix_cap = pos; /* controlled only through SET_IRQS: nothing writable */
		break;
	case PCI_CAP_ID_EXP:
		core->pcie_cap = pos;
		perm_set(core, pos + PCI_EXP_DEVCTL, 2, PCI_EXP_DEVCTL_FLR | 0x00e0 | 0x7000,
			 0xfdff);
		if (len >= PCI_EXP_DEVCTL2 + 2)
			perm_set(core, pos + PCI_EXP_DEVCTL2, 2, 0, 0xffdf);
		break;
	case PCI_CAP_ID_AF:
		perm_set(core, pos + 4, 1, 0x01, 0x01);
		break;
	case PCI_CAP_ID_VNDR: /* raw beyond ID/Next */
		memset(core->wmask + pos + 2, 0xff, len - 2);
		break;
	default:
		break;
	}
}

static void perm_ext_cap(struct vfio_pci_core *core, uint16_t id, unsigned int pos,
			 unsigned int len)
{
	for (unsigned int i = 0; i < len; i++)
		core->map[pos + i] = (uint16_t)(VCFG_EXT | id);
	memset(core->vmask + pos, 0, len);
	memset(core->wmask + pos, 0, len);
	perm_set(core, pos, 4, 0xffffffffu, 0);
	switch (id) {
	case 0x01: /* AER */
		perm_set(core, pos + 0x04, 4, 0, 0x03fff031u);
		perm_set(core, pos + 0x08, 4, 0, 0x03fff031u);
		perm_set(core, pos + 0x0c, 4, 0, 0x03fff031u);
		perm_set(core, pos + 0x10, 4, 0, 0xf1c1u);
		perm_set(core, pos + 0x14, 4, 0, 0xf1c1u);
		perm_set(core, pos + 0x18, 4, 0, 0x140u);
		break;
	case 0x04: /* power budgeting */
		perm_set(core, pos + 8, 1, 0, 0xff);
		break;
	case 0x0b: case 0x23: /* vendor, DVSEC: raw writes past the header */
		memset(core->wmask + pos + 4, 0xff, len - 4);
		break;
	default:
		break;
	}
}

/* ---- building ---------------------------------------------------------------------------------- */

static bool range_free(struct vfio_pci_core *core, unsigned int pos, unsigned int len)
{
	if (pos + len > core->cfg_size)
		return false;
	for (unsigned int i = 0; i < len; i++)
		if (core->map[pos + i] != VCFG_UNASSIGNED)
			return false;
	return true;
}

static void config_walk_std(struct vfio_pci_core *core)
{
	unsigned int prev = PCI_CFG_CAP_PTR, pos, visible = 0;

	if (!(cfg_get(core->vconfig, PCI_CFG_STATUS, 2) & PCI_STS_CAP_LIST)) {
		core->vconfig[PCI_CFG_CAP_PTR] = 0;
		return;
	}
	pos = core->vconfig[PCI_CFG_CAP_PTR] & ~3u;
	for (unsigned int ttl = 48; pos >= PCI_STD_HEADER_SIZE && pos < PCI_CFG_SPACE_SIZE && ttl;
	     ttl--) {
		uint8_t id = core->vconfig[pos];
		unsigned int next = core->vconfig[pos + 1] & ~3u;
		unsigned int len = cap_len(core, id, pos);

		if (len && pos + len > PCI_CFG_SPACE_SIZE)
			len = 0;
		if (!len || !range_free(core, pos, len)) {
			/* Hidden: the previous link skips it; its bytes stay raw. */
			core->vconfig[prev] = (uint8_t)next;
		} else {
			perm_cap(core, id, pos, len);
			prev = pos + 1;
			visible++;
		}
		pos = next;
	}
	core->vconfig[prev] = 0;
	if (!visible)
		cfg_put(core->vconfig, PCI_CFG_STATUS, 2,
			cfg_get(core->vconfig, PCI_CFG_STATUS, 2) & ~PCI_STS_CAP_LIST);
}

static void config_walk_ext(struct vfio_pci_core *core)
{
	unsigned int pos = PCI_CFG_SPACE_SIZE, prev = 0, visible = 0;
	bool first_hidden = false;

	if (!core->pcie_cap || core->cfg_size <= PCI_CFG_SPACE_SIZE ||
	    !cfg_get(core->vconfig, PCI_CFG_SPACE_SIZE, 4))
		return;
	for (unsigned int ttl = (PCI_CFG_SPACE_EXP_SIZE - PCI_CFG_SPACE_SIZE) / 8; ttl; ttl--) {
		uint32_t hdr = cfg_get(core->vconfig, pos, 4);
		uint16_t id = (uint16_t)(hdr & 0xffff);
		unsigned int next = (hdr >> 20) & 0xffc;
		unsigned int len = ext_cap_len(core, id, pos);

		if (len && (len < 4 || !range_free(core, pos, len)))
			len = 0;
		if (!len) {
			if (pos == PCI_CFG_SPACE_SIZE) {
				/* A placeholder: ID and version read 0, the link stays. */
				cfg_put(core->vconfig, pos, 4, hdr & 0xfff00000u);
				perm_ext_cap(core, 0, pos, 4);
				prev = pos;
				first_hidden = true;
			} else if (prev) {
				uint32_t p = cfg_get(core->vconfig, prev, 4);

				cfg_put(core->vconfig, prev, 4, (p & 0x000fffffu) | (uint32_t)next << 20);
			}
		} else {
			perm_ext_cap(core, id, pos, len);
			prev = pos;
			visible++;
		}
		if (next < PCI_CFG_SPACE_SIZE)
			break;
		pos = next;
	}
	if (!visible && first_hidden)
		cfg_put(core->vconfig, PCI_CFG_SPACE_SIZE, 4, 0);
}

int vfio_config_init(struct vfio_pci_core *core)
{
	int rc;

	core->cfg_size = pci_fn_config_size(core->fn);
	if (core->cfg_size > PCI_CFG_SPACE_EXP_SIZE)
		return -EINVAL;
	rc = pci_fn_config_read(core->fn, 0, core->vconfig, core->cfg_size);
	if (rc)
		return rc;
	for (unsigned int i = 0; i < core->cfg_size; i++)
		core->map[i] = VCFG_UNASSIGNED;
	memset(core->vmask, 0, sizeof(core->vmask));
	memset(core->wmask, 0xff, sizeof(core->wmask));
	core->msi_cap = core->msix_cap = core->pcie_cap = core->pm_cap = 0;
	perm_header(core);
	config_walk_std(core);
	config_walk_ext(core);
	/* The user starts with INTx not disabled by its own hand. */
	cfg_put(core->vconfig, PCI_CFG_COMMAND, 2,
		cfg_get(core->vconfig, PCI_CFG_COMMAND, 2) & ~PCI_CMD_INTX_DISABLE);
	core->msi_qmax = 0;
	core->bardirty = true;
	return 0;
}

/* ---- BARs -------------------------------------------------------------------------------------- */

static void config_bars_update(struct vfio_pci_core *core)
{
	for (unsigned int i = 0; i < 6; i++) {
		unsigned int off = PCI_CFG_BAR0 + 4 * i;
		uint64_t size = core->bar_size[i];
		uint32_t lo = cfg_get(core->vconfig, off, 4);

		if (!size) {
			cfg_put(core->vconfig, off, 4, 0);
			continue;
		}
		if (core->bar_flags[i] & UIOMMU_PCI_BAR_IO) {
			cfg_put(core->vconfig, off, 4, (lo & ~(uint32_t)(size - 1)) | PCI_BAR_IO);
			continue;
		}
		lo &= ~(uint32_t)(size - 1) & ~0xfu;
		if (core->bar_flags[i] & UIOMMU_PCI_BAR_PREFETCH)
			lo |= PCI_BAR_MEM_PREFETCH;
		if ((core->bar_flags[i] & UIOMMU_PCI_BAR_64) && i < 5) {
			uint32_t hi = cfg_get(core->vconfig, off + 4, 4);

			cfg_put(core->vconfig, off, 4, lo | PCI_BAR_MEM_64);
			cfg_put(core->vconfig, off + 4, 4, hi & (uint32_t)(~(size - 1) >> 32));
			i++;
			continue;
		}
		cfg_put(core->vconfig, off, 4, lo);
	}
	/* The ROM BAR: its address bits and the enable bit; 0 without a ROM. */
	if (core->bar_size[VFIO_PCI_ROM])
		cfg_put(core->vconfig, PCI_CFG_ROM, 4,
			cfg_get(core->vconfig, PCI_CFG_ROM, 4) &
				(~(uint32_t)(core->bar_size[VFIO_PCI_ROM] - 1) | PCI_ROM_ENABLE));
	else
		cfg_put(core->vconfig, PCI_CFG_ROM, 4, 0);
	core->bardirty = false;
}

bool vfio_pci_memory_enabled(struct vfio_pci_core *core)
{
	return (cfg_get(core->vconfig, PCI_CFG_COMMAND, 2) & PCI_CMD_MEMORY) &&
	       core->power_state < 3;
}

/* ---- accesses ---------------------------------------------------------------------------------- */

static int config_read_piece(struct vfio_pci_core *core, unsigned int off, unsigned int w,
			     uint8_t *out)
{
	uint8_t hw[4];
	int rc;

	if (core->bardirty && off < PCI_CFG_CAP_PTR && off >= PCI_CFG_BAR0)
		config_bars_update(core);
	if (core->msi_cap && core->map[off] == PCI_CAP_ID_MSI) {
		unsigned int f = core->msi_cap + PCI_MSI_FLAGS;

		core->vconfig[f] = (uint8_t)((core->vconfig[f] & ~PCI_MSI_FLAGS_QMASK) |
					     (core->msi_qmax << 1));
	}
	rc = pci_fn_config_read(core->fn, off, hw, w);
	if (rc)
		return rc;
	for (unsigned int i = 0; i < w; i++)
		out[i] = (uint8_t)((hw[i] & ~core->vmask[off + i]) |
				   (core->vconfig[off + i] & core->vmask[off + i]));
	return 0;
}

static bool piece_covers(unsigned int off, unsigned int w, unsigned int reg)
{
	return off <= reg && reg < off + w;
}

/* Side effects of a write that touched the Command register. */
static void config_command_written(struct vfio_pci_core *core)
{
	uint16_t hw = (uint16_t)hw_read(core, PCI_CFG_COMMAND, 2);
	uint16_t v = (uint16_t)cfg_get(core->vconfig, PCI_CFG_COMMAND, 2);

	v = (uint16_t)((v & ~(PCI_CMD_MEMORY | PCI_CMD_IO)) | (hw & (PCI_CMD_MEMORY | PCI_CMD_IO)));
	cfg_put(core->vconfig, PCI_CFG_COMMAND, 2, v);
	vfio_pci_intx_vdisable(core, v & PCI_CMD_INTX_DISABLE);
}

static void config_msi_written(struct vfio_pci_core *core)
{
	unsigned int f = core->msi_cap + PCI_MSI_FLAGS;
	uint8_t flags = core->vconfig[f];
	unsigned int mme = (flags & PCI_MSI_FLAGS_QSIZE) >> 4;

	if (core->irq_type != VFIO_PCI_MSI)
		flags &= (uint8_t)~PCI_MSI_FLAGS_ENABLE;
	if (mme > core->msi_qmax)
		mme = core->msi_qmax;
	flags = (uint8_t)((flags & ~PCI_MSI_FLAGS_QSIZE) | (mme << 4));
	core->vconfig[f] = flags;
}

static int config_write_piece(struct vfio_pci_core *core, unsigned int off, unsigned int w,
			      const uint8_t *in)
{
	uint8_t hwm[4], any_w = 0, any_raw = 0;
	uint16_t owner = core->map[off];
	int rc;

	for (unsigned int i = 0; i < w; i++) {
		any_w |= core->wmask[off + i];
		any_raw |= core->wmask[off + i] & ~core->vmask[off + i];
	}
	if (!any_w)
		return 0; /* read-only: dropped, and still done */
	/* A power state change is trapped: D0-D3hot through the function's own register. */
	if (core->pm_cap && off == core->pm_cap + PCI_PM_CTRL) {
		uint32_t pmcsr = hw_read(core, off, 2);

		rc = pci_fn_config_write_reg(core->fn, off, 2, (pmcsr & ~3u) | (in[0] & 3u));
		if (rc)
			return rc;
		core->power_state = hw_read(core, off, 2) & 3u;
	}
	if (any_raw) {
		rc = pci_fn_config_read(core->fn, off, hwm, w);
		if (rc)
			return rc;
		for (unsigned int i = 0; i < w; i++) {
			uint8_t m = core->wmask[off + i] & ~core->vmask[off + i];

			hwm[i] = (uint8_t)((hwm[i] & ~m) | (in[i] & m));
		}
		rc = pci_fn_config_write(core->fn, off, hwm, w);
		if (rc)
			return rc;
	}
	for (unsigned int i = 0; i < w; i++) {
		uint8_t m = core->wmask[off + i] & core->vmask[off + i];

		core->vconfig[off + i] = (uint8_t)((core->vconfig[off + i] & ~m) | (in[i] & m));
	}

	if (owner == VCFG_HEADER) {
		if (piece_covers(off, w, PCI_CFG_COMMAND) || piece_covers(off, w, PCI_CFG_COMMAND + 1))
			config_command_written(core);
		if ((off >= PCI_CFG_BAR0 && off < PCI_CFG_BAR0 + 24) ||
		    (off >= PCI_CFG_ROM && off < PCI_CFG_ROM + 4))
			core->bardirty = true;
	} else if (owner == PCI_CAP_ID_MSI && piece_covers(off, w, core->msi_cap + PCI_MSI_FLAGS)) {
		config_msi_written(core);
	} else if (owner == PCI_CAP_ID_EXP) {
		unsigned int ctl = core->pcie_cap + PCI_EXP_DEVCTL;
		uint16_t devctl = (uint16_t)cfg_get(core->vconfig, ctl, 2);

		if (devctl & PCI_EXP_DEVCTL_FLR) {
			/* Initiate FLR: reads 0 always; resets when the function has FLR. */
			cfg_put(core->vconfig, ctl, 2, devctl & ~PCI_EXP_DEVCTL_FLR);
			if (hw_read(core, core->pcie_cap + PCI_EXP_DEVCAP, 4) & PCI_EXP_DEVCAP_FLR)
				return vfio_pci_function_reset(core);
		}
	} else if (owner == PCI_CAP_ID_AF) {
		unsigned int pos = off;

		while (pos > PCI_STD_HEADER_SIZE && core->map[pos - 1] == PCI_CAP_ID_AF)
			pos--;
		if (core->vconfig[pos + 4] & 1) {
			core->vconfig[pos + 4] &= (uint8_t)~1u;
			if ((hw_read(core, pos + 3, 1) & 3u) == 3u)
				return vfio_pci_function_reset(core);
		}
	}
	return 0;
}

/* The width of the next piece at @off with @left bytes: aligned, inside one owner. */
static unsigned int config_piece_width(struct vfio_pci_core *core, unsigned int off, size_t left)
{
	unsigned int w = (!(off & 3) && left >= 4) ? 4 : (!(off & 1) && left >= 2) ? 2 : 1;

	while (w > 1) {
		bool same = true;

		for (unsigned int i = 1; i < w; i++)
			same &= core->map[off + i] == core->map[off];
		if (same)
			break;
		w >>= 1;
	}
	return w;
}

int vfio_config_rw(struct vfio_pci_core *core, void *buf, size_t count, unsigned int off,
		   bool write)
{
	uint8_t *p = buf;
	size_t done = 0;
	int rc;

	if (off >= core->cfg_size || count > core->cfg_size - off)
		return -EFAULT;
	while (done < count) {
		unsigned int w = config_piece_width(core, off, count - done);

		rc = write ? config_write_piece(core, off, w, p + done) :
			     config_read_piece(core, off, w, p + done);
		if (rc)
			return rc;
		off += w;
		done += w;
	}
	return 0;
}
