/* SPDX-License-Identifier: MIT */
/*
 * vfio-pci's per-device state, shared by vfio_pci.c (ioctls, regions, interrupts, reset,
 * features) and pci_config.c (the virtual config space). See vfio.h for the lock order.
 */
#ifndef UIOMMU_VFIO_PCI_PRIV_H
#define UIOMMU_VFIO_PCI_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "lib/lockdep.h"
#include "machine/pci.h"
#include "vfio/vfio.h"

/* Region indexes and the offset encoding of the device fd (bits 63:40 select the region). */
#define VFIO_PCI_BAR0 0u
#define VFIO_PCI_ROM 6u
#define VFIO_PCI_CONFIG 7u
#define VFIO_PCI_VGA 8u
#define VFIO_PCI_NUM_REGIONS 9u
#define VFIO_PCI_OFFSET_SHIFT 40
#define VFIO_PCI_OFFSET_MASK ((1ull << VFIO_PCI_OFFSET_SHIFT) - 1)

/* IRQ indexes. */
#define VFIO_PCI_INTX 0u
#define VFIO_PCI_MSI 1u
#define VFIO_PCI_MSIX 2u
#define VFIO_PCI_ERR 3u
#define VFIO_PCI_REQ 4u
#define VFIO_PCI_NUM_IRQS 5u

/* pci_config.c's byte map: who owns each config byte. */
#define VCFG_UNASSIGNED 0xffffu        /* raw: straight to the function */
#define VCFG_HEADER 0x1000u            /* the standard header, 0x00-0x3f */
#define VCFG_EXT 0x2000u               /* | the extended capability id */
/* else: a standard capability id */

struct vfio_pci_dirty_range {
	uint64_t iova, length;             /* aligned to the log's granularity */
	uint64_t *bits;                    /* a bit per granule */
};

struct vfio_pci_core {
	struct device *dev;                /* a reference; constant */
	struct uiommu_pci_fn *fn;          /* a reference; constant */
	LIST_ENTRY(vfio_pci_core) node;    /* vfio_pci_cores; vfio_pci_lock */
	unsigned int open_count;           /* vfio_pci_lock */
	struct iommufd_ctx *ictx;          /* the iommufd of its users (NULL: none); vfio_pci_lock */
	uint32_t devid;                    /* its DEVICE id there; vfio_pci_lock */
	bool group_mode;                   /* opened through a group; vfio_pci_lock */

	/*
	 * lock: the kernel's igate and memory_lock in one. It protects the virtual config space,
	 * the power state, the interrupt mode and the vector count, the VF token. Order: after
	 * vfio_pci_lock, before the function's lock and the leaves below.
	 */
	struct uiommu_mutex lock;
	bool reset_works;
	unsigned int cfg_size;
	uint8_t vconfig[PCI_CFG_SPACE_EXP_SIZE];
	uint8_t vmask[PCI_CFG_SPACE_EXP_SIZE];   /* virtualized bits */
	uint8_t wmask[PCI_CFG_SPACE_EXP_SIZE];   /* writable bits */
	uint16_t map[PCI_CFG_SPACE_EXP_SIZE];    /* VCFG_* or a capability id */
	bool bardirty;
	uint64_t bar_size[7];              /* 0-5 BARs, 6 the ROM BAR (0: no ROM) */
	size_t rom_len;                    /* the model's ROM image's length; constant */
	unsigned int bar_flags[6];         /* UIOMMU_PCI_BAR_* */
	struct pci_fn_bar_info bar_info[6];
	unsigned int msi_cap, msix_cap, pcie_cap, pm_cap;
	unsigned int msi_qmax;             /* the virtual Multiple Message Capable */
	unsigned int power_state;          /* 0 D0 ... 3 D3hot */
	bool maps_live;                    /* BAR mmaps reach the areas (vfio_pci_zap.c) */

	unsigned int irq_type;             /* VFIO_PCI_INTX/MSI/MSIX, or VFIO_PCI_NUM_IRQS: none */
	unsigned int num_ctx;              /* vectors enabled */

	/*
	 * irq_lock: a leaf. It protects the eventfds the machine's notifier signals (trig, the
	 * INTx state), so that the notifier, which runs with no function lock held from any thread,
	 * never sees a closed fd.
	 */
	struct uiommu_mutex irq_lock;
	int *trig;                         /* per vector: an eventfd we own, or -1 */
	unsigned int ntrig;
	int intx_trig;                     /* INTx: eventfd, or -1 */
	bool intx_masked;                  /* automasked or masked by the user */
	bool intx_vdisabled;               /* the virtual DisINTx */
	int err_trig, req_trig;

	/*
	 * The INTx unmask irqfd (SET_IRQS INTx UNMASK with an eventfd: KVM's resampler): a
	 * signal of unmask_fd unmasks INTx, as the kernel's virqfd does. A watcher thread polls
	 * it with unmask_stop (an eventfd of ours that ends the thread) and takes only irq_lock.
	 * All four are set and cleared under core->lock; the thread only reads the two fds.
	 */
	int unmask_fd;                     /* our duplicate of the user's eventfd, or -1 */
	int unmask_stop;
	bool unmask_running;
	pthread_t unmask_thread;

	/*
	 * log_lock: a leaf, taken by the DMA engine's write-log hook. It protects the DMA logging
	 * state below.
	 */
	struct uiommu_mutex log_lock;
	bool logging;
	uint64_t log_granule;
	unsigned int nr_ranges;
	struct vfio_pci_dirty_range *ranges;

	/*
	 * ioev_lock: VFIO_DEVICE_IOEVENTFD's registrations (vfio_pci_ioeventfd.c). It protects
	 * the fields below; never held with core->lock (the watcher's writes take core->lock
	 * through vfio_pci_rw(), and a change waits for the watcher with ioev_lock released in
	 * the condition wait).
	 */
	struct uiommu_mutex ioev_lock;
	struct uiommu_cond ioev_cond;      /* the watcher saw ioev_gen */
	struct vfio_pci_ioeventfd *ioev;   /* VFIO_PCI_IOEVENTFD_MAX slots, from the first add */
	unsigned int ioev_nr;
	uint64_t ioev_gen, ioev_seen;      /* changes made; the last the watcher took */
	int ioev_kick;                     /* our eventfd: look at the registrations again */
	bool ioev_running, ioev_stop;
	pthread_t ioev_thread;
};

/* pci_config.c */
int vfio_config_init(struct vfio_pci_core *core);
/* A config region access of the whole [@off, @off + @count): 0, -EFAULT, -errno. core->lock held. */
int vfio_config_rw(struct vfio_pci_core *core, void *buf, size_t count, unsigned int off,
		   bool write);
bool vfio_pci_memory_enabled(struct vfio_pci_core *core);

/* vfio_pci.c: our own reference on a caller's eventfd (-EBADF, -EINVAL, -EMFILE), its release. */
int vfio_efd_get(int fd);
void vfio_efd_put(int fd);
/* Takes its count without blocking: 0, or -EAGAIN when there was none. */
int vfio_efd_consume(int fd);
/*
 * A watcher thread running @fn(@arg) and *@kick, an eventfd of ours that wakes it (made before
 * the thread starts). Return: 0, or -errno with nothing left (*@kick -1).
 */
int vfio_watcher_start(int *kick, pthread_t *thread, void *(*fn)(void *), void *arg);
/* The kernel's id of the eventfd behind @fd (two fds of one eventfd share it); 0: unknown. */
uint64_t vfio_efd_id(int fd);

/* vfio_pci_ioeventfd.c: VFIO_DEVICE_IOEVENTFD, without core->lock; the last close's release. */
#define VFIO_PCI_IOEVENTFD_MAX 1000u
void vfio_pci_ioeventfd_init(struct vfio_pci_core *core);
int vfio_pci_ioeventfd_ioctl(struct vfio_pci_core *core, struct uiommu_mm *mm, uint64_t arg);
void vfio_pci_ioeventfd_release(struct vfio_pci_core *core);

/*
 * vfio_pci_zap.c: the BAR area mappings of the device, revoked while it does not decode memory.
 * mmap: mmap(2) with raw arguments that also forgets what it replaces and, with @record,
 * follows the new mapping (MAP_FAILED with errno); update: after a config write or a reset,
 * zaps or restores them when the decode state moved; revoke: zaps them whatever the decode
 * state (before a reset; update brings them back); forget: the last close; unmap: munmap and
 * forget a range. The first four with core->lock held.
 */
void *vfio_pci_maps_mmap(struct vfio_pci_core *core, void *addr, size_t len, int prot,
			 int flags, int fd, uint64_t fd_off, bool record);
void vfio_pci_maps_update(struct vfio_pci_core *core);
void vfio_pci_maps_revoke(struct vfio_pci_core *core);
void vfio_pci_maps_forget(struct vfio_pci_core *core);
void vfio_pci_maps_unmap(void *addr, size_t len);

/* vfio_pci.c, for pci_config.c: core->lock held. */
int vfio_pci_function_reset(struct vfio_pci_core *core);
void vfio_pci_intx_vdisable(struct vfio_pci_core *core, bool disabled);

#endif
