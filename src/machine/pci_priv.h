/* SPDX-License-Identifier: MIT */
/*
 * The PCI function object, shared by pci.c (the object, BARs, interrupts, DMA gate, reset) and
 * pci_config.c (config space: layout, register rules, capability walks). Nothing else
 * includes this: the rest of the library uses machine/pci.h, models include/uiommu/device.h.
 */
#ifndef UIOMMU_MACHINE_PCI_PRIV_H
#define UIOMMU_MACHINE_PCI_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "lib/lockdep.h"
#include "machine/pci.h"

/* Where the capabilities sit (fixed, so the layout is the same on every boot). */
#define PCI_CFG_OFF_PM 0x40     /* 8 bytes */
#define PCI_CFG_OFF_MSI 0x48    /* 24 bytes: 64-bit address, per-vector masking */
#define PCI_CFG_OFF_MSIX 0x60   /* 12 bytes */
#define PCI_CFG_OFF_EXP 0x70    /* 0x34 bytes: PCIe v2 endpoint */
#define PCI_CFG_OFF_VNDR 0xa4   /* the model's vendor-specific capabilities, up to 0x100 */
#define PCI_CFG_OFF_EXT 0x100   /* the first extended capability */

/* Register offsets inside the capabilities (as <linux/pci_regs.h> names them). */
#define PCI_PM_CTRL 4
#define PCI_PM_CTRL_STATE_MASK 0x0003
#define PCI_PM_CTRL_NO_SOFT_RESET 0x0008
#define PCI_MSI_FLAGS 2
#define PCI_MSI_FLAGS_ENABLE 0x0001
#define PCI_MSI_FLAGS_QMASK 0x000e
#define PCI_MSI_FLAGS_QSIZE 0x0070
#define PCI_MSI_FLAGS_64BIT 0x0080
#define PCI_MSI_FLAGS_MASKBIT 0x0100
#define PCI_MSI_ADDRESS_LO 4
#define PCI_MSI_ADDRESS_HI 8
#define PCI_MSI_DATA_64 12
#define PCI_MSI_MASK_64 16
#define PCI_MSI_PENDING_64 20
#define PCI_MSIX_FLAGS 2
#define PCI_MSIX_FLAGS_QSIZE 0x07ff
#define PCI_MSIX_FLAGS_MASKALL 0x4000
#define PCI_MSIX_FLAGS_ENABLE 0x8000
#define PCI_MSIX_TABLE 4
#define PCI_MSIX_PBA 8
#define PCI_MSIX_ENTRY_SIZE 16
#define PCI_MSIX_ENTRY_VECTOR_CTRL 12
#define PCI_MSIX_ENTRY_CTRL_MASKBIT 0x1
#define PCI_EXP_DEVCAP 4
#define PCI_EXP_DEVCAP_FLR 0x10000000
#define PCI_EXP_DEVCTL 8
#define PCI_EXP_DEVCTL_BCR_FLR 0x8000
#define PCI_EXP_DEVSTA 10
#define PCI_EXP_SIZEOF 0x34
#define PCI_ATS_CTRL 6
#define PCI_PRI_CTRL 4
#define PCI_PASID_CTRL 6

/* What a config write changed, for the side effects pci.c runs after dropping the lock. */
struct pci_cfg_effects {
	uint16_t old_cmd, new_cmd;
	bool cmd_written;
	bool flr;               /* Initiate FLR was written with 1 (and the function has FLR) */
	bool may_unmask;        /* an MSI/MSI-X control or mask changed: pending may go out */
};

/*
 * struct uiommu_pci_fn - a PCI function of the machine.
 *
 * Lock order: model_lock (rwsem) -> lock. Under model_lock held for reading the model's
 * callbacks run (BAR and area accesses, command_written); realize, reset and unrealize hold
 * it for writing, so they exclude the callbacks and each other. lock (a leaf apart from the
 * model's own locks, which are never held into the library's: see device.h) protects
 * everything marked [lock]; it is never held while calling out (model, notifier, DMA engine).
 * The rest is immutable after pci_fn_create().
 */
struct uiommu_pci_fn {
	atomic_int refs;
	struct device *dev;                 /* device_get(); the function's name is dev->name */
	const struct uiommu_pci_model *model; /* the registered one, or &generic */
	struct uiommu_pci_model generic;    /* the generic function's description */
	uint64_t bar_size[UIOMMU_PCI_NUM_BARS];
	unsigned int bar_flags[UIOMMU_PCI_NUM_BARS];
	uint64_t rom_size;                  /* the ROM BAR's (a power of two), 0: no ROM */

	/* Shared-memory areas: one memfd for all of them, mapped once here. */
	int memfd;                          /* -1: no areas */
	uint8_t *shm;
	size_t shm_size;
	uint64_t area_fd_offset[UIOMMU_PCI_NUM_BARS][UIOMMU_PCI_MAX_AREAS];

	struct uiommu_rwsem model_lock;     /* see above; outermost of the function's locks */
	void *priv;                         /* the model's; set by the model (atomic pointer) */

	struct uiommu_mutex lock;           /* protects [lock]; a leaf, never held calling out */
	struct uiommu_cond cond;            /* [lock] DMA drained, notifier callbacks finished */
	bool alive;                         /* [lock] realized and not yet unrealized */
	bool present;                       /* [lock] plugged: its device is probed */
	bool resetting;                     /* [lock] a reset or unrealize is under way */

	/* Config space [lock]: contents, per-byte writable and write-1-to-clear masks. */
	uint8_t cfg[PCI_CFG_SPACE_EXP_SIZE];
	uint8_t cfg_wmask[PCI_CFG_SPACE_EXP_SIZE];
	uint8_t cfg_w1c[PCI_CFG_SPACE_EXP_SIZE];
	unsigned int cfg_size;              /* immutable: 256, or 4096 for PCIe */
	unsigned int cap_pm, cap_msi, cap_msix, cap_exp; /* offsets, 0: absent */
	unsigned int cap_ats, cap_pri, cap_pasid;
	char *backing;                      /* the topology's "backing" option, or NULL */

	/* MSI-X structures [lock]. */
	uint8_t *msix_table;                /* 16 bytes a vector */
	uint64_t *msix_pba;                 /* a bit a vector */
	unsigned int msix_vectors;

	bool intx_asserted;                 /* [lock] the model's level */
	bool intx_line;                     /* [lock] what the notifier was last told */

	/* The interrupt notifier [lock]; irq_busy counts callbacks running. */
	const struct pci_irq_ops *irq_ops;
	void *irq_priv;
	unsigned int irq_busy;

	/* The DMA gate [lock]: dma_enabled = Bus Master && present && !resetting && alive. */
	struct uiommu_dma_dev *dma;         /* the engine handle while present, else NULL */
	bool dma_enabled;
	unsigned int dma_active;            /* transfers past the gate */

	LIST_ENTRY(uiommu_pci_fn) node;     /* in pci.c's list of functions; pci_fns_lock */
};

/* pci_config.c */
void pci_config_init(struct uiommu_pci_fn *fn);
void pci_config_write_locked(struct uiommu_pci_fn *fn, unsigned int off, const uint8_t *buf,
			     size_t len, struct pci_cfg_effects *eff);
uint16_t pci_config_get16(const struct uiommu_pci_fn *fn, unsigned int off);
uint32_t pci_config_get32(const struct uiommu_pci_fn *fn, unsigned int off);
void pci_config_set16(struct uiommu_pci_fn *fn, unsigned int off, uint16_t v);
void pci_config_set32(struct uiommu_pci_fn *fn, unsigned int off, uint32_t v);
unsigned int pci_config_find_cap_locked(const struct uiommu_pci_fn *fn, uint8_t id);
unsigned int pci_config_find_ext_cap_locked(const struct uiommu_pci_fn *fn, uint16_t id);

/* models/ */
extern const struct uiommu_pci_model pci_model_dma_test;
extern const struct uiommu_pci_model pci_model_virtio_rng;
extern const struct uiommu_pci_model pci_model_virtio_blk;

#endif
