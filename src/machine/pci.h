/* SPDX-License-Identifier: MIT */
/*
 * The machine's PCI functions (pci.c, pci_config.c), as the layers above see them: the
 * "physical" side of a function, what the kernel's PCI core and vfio-pci reach through config
 * cycles, MMIO and the MSI machinery.
 *
 * Every function of the topology has one (struct uiommu_pci_fn, the same object a device model
 * gets through include/uiommu/device.h): a function that names a model runs it, one that does
 * not is a minimal generic function (the topology's class, no BARs) so that every function has
 * config space. Functions are made at topology load and realized then; they are unrealized at
 * unload. The object lives while a reference is held (pci_fn_get*() / pci_fn_put()); after
 * unrealize every access answers -ENODEV.
 *
 * What is "physical" here. pci_fn_config_read/write() are config cycles: reads return the
 * registers, writes obey each register's hardware rules (read-only bits ignored, RW1C status
 * bits, BAR sizing, the MSI/MSI-X controls, Device Control's Initiate FLR, PM power states).
 * vfio-pci's virtualization (src/vfio/) sits on top, as the kernel's sits on real hardware.
 * pci_fn_bar_read/write() are MMIO or port accesses: the MSI-X table and PBA are the library's,
 * the shared-memory areas are memory, the rest goes to the model; a BAR whose space the
 * Command register does not decode reads all-ones and drops writes (a master abort).
 *
 * Interrupts go up through a notifier the upper layer registers (pci_fn_irq_register()); the
 * machine never calls VFIO by name. pci_fn_irq_enable() and friends do what the host kernel's
 * MSI code does to a real function (program Message Control, the MSI-X table's mask bits), so
 * the VFIO layer enables vectors without knowing the table layout.
 *
 * Lock order: the caller's locks (VFIO's) -> a function's lock (pci.c) -> the model's own
 * locks; the notifier and the model's callbacks are called with no function lock held.
 */
#ifndef UIOMMU_MACHINE_PCI_H
#define UIOMMU_MACHINE_PCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iommu/iommu.h"
#include "uiommu/device.h"

/* Config space offsets and bits used across the machine and VFIO (as <linux/pci_regs.h>). */
#define PCI_CFG_SPACE_SIZE 256u
#define PCI_CFG_SPACE_EXP_SIZE 4096u
#define PCI_CFG_VENDOR_ID 0x00
#define PCI_CFG_DEVICE_ID 0x02
#define PCI_CFG_COMMAND 0x04
#define PCI_CFG_STATUS 0x06
#define PCI_CFG_REVISION 0x08
#define PCI_CFG_CLASS_PROG 0x09
#define PCI_CFG_HEADER_TYPE 0x0e
#define PCI_CFG_BAR0 0x10
#define PCI_CFG_SUBSYS_VENDOR 0x2c
#define PCI_CFG_SUBSYS_ID 0x2e
#define PCI_CFG_ROM 0x30
#define PCI_ROM_ENABLE 0x1u              /* ROM BAR: address decode enable */
#define PCI_ROM_ADDR_MASK 0xfffff800u    /* ROM BAR: the address bits (2 KiB at least) */
#define PCI_CFG_CAP_PTR 0x34
#define PCI_CFG_INT_LINE 0x3c
#define PCI_CFG_INT_PIN 0x3d

#define PCI_CMD_IO 0x0001
#define PCI_CMD_MEMORY 0x0002
#define PCI_CMD_MASTER 0x0004
#define PCI_CMD_SERR 0x0100
#define PCI_CMD_INTX_DISABLE 0x0400
#define PCI_STS_INTERRUPT 0x0008
#define PCI_STS_CAP_LIST 0x0010

/* Standard capability IDs; extended capability IDs. */
#define PCI_CAP_ID_PM 0x01
#define PCI_CAP_ID_MSI 0x05
#define PCI_CAP_ID_VNDR 0x09
#define PCI_CAP_ID_EXP 0x10
#define PCI_CAP_ID_MSIX 0x11
#define PCI_EXT_CAP_ID_ATS 0x0f
#define PCI_EXT_CAP_ID_PRI 0x13
#define PCI_EXT_CAP_ID_PASID 0x1b

/* Identity of a function, from its config header (what sysfs shows). */
struct pci_fn_ids {
	uint16_t vendor, device;
	uint16_t subsystem_vendor, subsystem_device;
	uint32_t class_code;                /* 24 bits */
	uint8_t revision;
	uint8_t interrupt_pin;              /* 0: none */
};

/* One shared-memory area of a BAR: mmap(fd, fd_offset + x) maps BAR offset offset + x. */
struct pci_fn_area {
	uint64_t offset;                    /* in the BAR, page aligned */
	uint64_t size;                      /* page multiple */
	int fd;                             /* the function's memfd, while a reference is held */
	uint64_t fd_offset;
};

struct pci_fn_bar_info {
	uint64_t size;                      /* 0: none (or the upper half of a 64-bit BAR) */
	unsigned int flags;                 /* UIOMMU_PCI_BAR_* */
	unsigned int nr_areas;
	struct pci_fn_area areas[UIOMMU_PCI_MAX_AREAS];
	bool msix_table;                    /* the MSI-X table is in this BAR, there: */
	uint64_t msix_table_offset, msix_table_size;
	bool msix_pba;
	uint64_t msix_pba_offset, msix_pba_size;
};

/* ---- functions: lookup and references -------------------------------------------------------- */

/* The function of @dev / of BDF @bdf, with a reference; NULL if the topology has none. */
struct uiommu_pci_fn *pci_fn_get(struct device *dev);
struct uiommu_pci_fn *pci_fn_get_by_bdf(const char *bdf);
void pci_fn_ref(struct uiommu_pci_fn *fn);
void pci_fn_put(struct uiommu_pci_fn *fn);

struct device *pci_fn_device(const struct uiommu_pci_fn *fn);
void pci_fn_get_ids(const struct uiommu_pci_fn *fn, struct pci_fn_ids *ids);
/* "dma-test", or "" for the generic function. */
const char *pci_fn_model_name(const struct uiommu_pci_fn *fn);
/* false once unrealized (the machine was unloaded): every access then answers -ENODEV. */
bool pci_fn_alive(const struct uiommu_pci_fn *fn);

/* ---- config space ---------------------------------------------------------------------------- */

/* 4096 for PCIe functions, 256 otherwise. */
unsigned int pci_fn_config_size(const struct uiommu_pci_fn *fn);
/*
 * pci_fn_config_read(), pci_fn_config_write() - config cycles over [@off, @off + @len)
 *
 * Any offset and length inside the config space (-EINVAL otherwise), little endian, done as one
 * atomic step; a write applies every register's rules and then its side effects (a Bus Master
 * clear fences DMA before returning, Initiate FLR resets the function before returning, an
 * unmask sends pending messages). Return: 0, -EINVAL, -ENODEV (unrealized).
 */
int pci_fn_config_read(struct uiommu_pci_fn *fn, unsigned int off, void *buf, size_t len);
int pci_fn_config_write(struct uiommu_pci_fn *fn, unsigned int off, const void *buf, size_t len);
/* Convenience: one naturally aligned register of 1, 2 or 4 bytes. */
int pci_fn_config_read_reg(struct uiommu_pci_fn *fn, unsigned int off, unsigned int width,
			   uint32_t *val);
int pci_fn_config_write_reg(struct uiommu_pci_fn *fn, unsigned int off, unsigned int width,
			    uint32_t val);
/*
 * pci_fn_find_cap(), pci_fn_find_ext_cap() - offset of the first capability @id in the
 * standard (extended) list, walked as software walks it; 0 when there is none.
 */
unsigned int pci_fn_find_cap(struct uiommu_pci_fn *fn, uint8_t id);
unsigned int pci_fn_find_ext_cap(struct uiommu_pci_fn *fn, uint16_t id);

/* ---- BARs ------------------------------------------------------------------------------------ */

/*
 * pci_fn_rom() - the function's expansion ROM (a V3 model's image): *@image and *@image_size
 * (valid while the function is referenced), and the ROM BAR's size, 0 when it has none.
 */
size_t pci_fn_rom(const struct uiommu_pci_fn *fn, const void **image, size_t *image_size);
/*
 * pci_fn_rom_read() - @len bytes of the ROM from @offset, as a memory read of the ROM BAR: the
 * image, 0xff past it; all-ones while the function does not decode it (Command's Memory, the
 * ROM BAR's enable bit, D0). Return: 0, -EINVAL (no ROM, past the BAR), -ENODEV (unrealized).
 */
int pci_fn_rom_read(struct uiommu_pci_fn *fn, uint64_t offset, void *buf, size_t len);
/* Return: 0, -EINVAL (@bar > 5). */
int pci_fn_bar_info(struct uiommu_pci_fn *fn, unsigned int bar, struct pci_fn_bar_info *info);
/*
 * pci_fn_bar_read(), pci_fn_bar_write() - one access of @width (1, 2, 4 or 8) bytes at @offset,
 * naturally aligned, inside BAR @bar. Return: 0; -EINVAL (no such BAR, out of range, bad width
 * or alignment); -ENODEV (unrealized). A BAR not decoded (Command) reads ~0, drops writes.
 */
int pci_fn_bar_read(struct uiommu_pci_fn *fn, unsigned int bar, uint64_t offset,
		    unsigned int width, uint64_t *val);
int pci_fn_bar_write(struct uiommu_pci_fn *fn, unsigned int bar, uint64_t offset,
		     unsigned int width, uint64_t val);

/* ---- reset ----------------------------------------------------------------------------------- */

/*
 * pci_fn_reset() - function level reset (what Initiate FLR does): DMA fenced, the model's
 * reset(), config space and MSI-X table back to power-on state, shared areas zeroed. Every
 * function can be reset this way. Return: 0, -ENODEV (unrealized).
 */
int pci_fn_reset(struct uiommu_pci_fn *fn);

/* ---- interrupts ------------------------------------------------------------------------------ */

enum pci_irq_type {
	PCI_IRQ_NONE = 0,
	PCI_IRQ_INTX,
	PCI_IRQ_MSI,
	PCI_IRQ_MSIX,
};

/*
 * What the function's interrupts reach. Called from the thread that raised or unmasked, with
 * no function lock held; never concurrently with pci_fn_irq_unregister() returning. That
 * thread may be a model's worker, which a reset joins while holding the function's model lock:
 * a callback only signals (an eventfd, a condition) and never accesses the function.
 *   msi(): a message for @vector was sent (MSI or MSI-X, @type says which);
 *   intx(): the INTx line as the interrupt controller sees it (asserted and not disabled by
 *           Command INTx Disable) changed to @asserted.
 */
struct pci_irq_ops {
	void (*msi)(void *priv, enum pci_irq_type type, unsigned int vector);
	void (*intx)(void *priv, bool asserted);
};

/*
 * pci_fn_irq_register() - set the function's interrupt notifier (one at a time: -EBUSY).
 * pci_fn_irq_unregister() - remove it; when it returns no callback is running or will run.
 * Must not be called from a callback.
 */
int pci_fn_irq_register(struct uiommu_pci_fn *fn, const struct pci_irq_ops *ops, void *priv);
void pci_fn_irq_unregister(struct uiommu_pci_fn *fn);

/*
 * The host kernel's side of MSI setup, on the "physical" function:
 * pci_fn_irq_count() - vectors the function has of @type (INTx: 1 with a pin, else 0; MSI:
 *   Multiple Message Capable; MSI-X: table size); 0 when it has none.
 * pci_fn_irq_enable() - make @type the function's interrupt mode with @nvec vectors: the other
 *   modes are disabled; INTx clears INTx Disable; MSI sets Multiple Message Enable to cover
 *   @nvec and unmasks them; MSI-X enables the table and unmasks vectors [0, @nvec) (the rest
 *   stay masked), clearing the function mask. -EINVAL: @nvec out of range, -ENODEV: no such
 *   capability.
 * pci_fn_irq_disable() - no interrupt mode: MSI and MSI-X disabled, INTx Disable set.
 * pci_fn_irq_mask() - mask or unmask one vector (MSI, MSI-X: the vector's mask bit; INTx: the
 *   INTx Disable bit); an unmask sends a pending message.
 * pci_fn_irq_pending() - is @vector pending (MSI-X PBA, MSI Pending Bits, INTx asserted)?
 */
unsigned int pci_fn_irq_count(struct uiommu_pci_fn *fn, enum pci_irq_type type);
int pci_fn_irq_enable(struct uiommu_pci_fn *fn, enum pci_irq_type type, unsigned int nvec);
int pci_fn_irq_disable(struct uiommu_pci_fn *fn);
int pci_fn_irq_mask(struct uiommu_pci_fn *fn, enum pci_irq_type type, unsigned int vector,
		    bool mask);
bool pci_fn_irq_pending(struct uiommu_pci_fn *fn, enum pci_irq_type type, unsigned int vector);

/* ---- the machine's side (topology.c) -------------------------------------------------------- */

/*
 * pci_fn_create() - make and realize the function of @dev running model @model ("" or NULL:
 * the generic function, with @class_code); @backing is the topology's "backing" option (NULL:
 * none), copied for uiommu_pci_fn_backing(). Return: the function (one reference, the
 * topology's), or ERR_PTR(-EINVAL) for an unknown model, -ENOMEM, or the model's realize()
 * errno.
 */
struct uiommu_pci_fn *pci_fn_create(struct device *dev, const char *model, uint32_t class_code,
				    const char *backing);
/* pci_fn_destroy() - unrealize (DMA fenced first) and drop the topology's reference. */
void pci_fn_destroy(struct uiommu_pci_fn *fn);
/* Hot plug: unplug fences DMA and lets the DMA handle go; plug resets the function. */
void pci_fn_unplug(struct uiommu_pci_fn *fn);
void pci_fn_plug(struct uiommu_pci_fn *fn);
/* Is @name a model a topology may name (registered or built in)? */
bool pci_model_exists(const char *name);

#endif
