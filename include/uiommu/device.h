/* SPDX-License-Identifier: MIT */
/*
 * libuiommu device models: emulated PCI functions of the emulated machine (docs/device-models.md).
 *
 * A device model is code that behaves as a PCI function: it answers accesses to its BARs,
 * raises interrupts and does DMA through the IOMMU. The library does the rest, as a PCI
 * function's "hardware" around the model's logic: config space (the standard header, the
 * capability list and, for PCIe functions, the extended capability list), BAR sizing, the
 * command and status registers, MSI and MSI-X capability state with masking and pending bits,
 * the MSI-X table and PBA, INTx, function level reset, and the gate that lets DMA out only
 * while Bus Master is enabled. Who drives the function (the VFIO device fd of a userspace
 * driver or a VMM, a white-box test) is no concern of the model.
 *
 * A model is a struct uiommu_pci_model registered under a name before the machine boots (the
 * built-in ones, such as "dma-test", need no registration); a topology function that names it
 * ("model": "dma-test", docs/topology.md) gets an instance of it at boot: the library builds the
 * function's config space from the description, then calls realize(). The model's own state
 * hangs off the function (uiommu_pci_fn_set_priv()).
 *
 * Conventions. Functions the model calls follow the system-call convention of uiommu.h: 0 (or a
 * count) on success, -1 and errno on failure. Callbacks the model provides return 0 or a
 * negative errno where they can fail at all; hardware does not fail an MMIO access, so the BAR
 * callbacks cannot. Callbacks are called with no library lock held, from whatever thread made
 * the access (a VFIO ioctl, a pread of the device fd, a test); one function's callbacks may run
 * concurrently with each other and with the model's own threads: a model protects its state
 * itself. The library serialises realize, reset and unrealize of a function against each
 * other, and never calls a BAR callback before realize returned or after unrealize began.
 * A model may raise and lower interrupts with its own locks held (the notifier behind them
 * only signals), but must not wait in a callback for its own thread while that thread waits
 * for the callback's lock.
 *
 * Shared memory. A BAR may have sub-areas backed by shared memory (a memfd the library makes):
 * a driver that mmaps that part of the BAR through VFIO maps the very pages the model sees
 * through uiommu_pci_fn_area(), so its loads and stores reach the model with no trap at all.
 * That is how real BARs with doorbell pages work, and it has the same consequence: the model
 * is not told of a store to a mapped page. It watches such a page instead (a "polling doorbell":
 * a thread that checks it, e.g. dma-test's worker). Accesses to an area that do go through the
 * library (pread/pwrite of the VFIO region, uiommu_pci_fn_bar_write() ...) read and write the
 * shared memory with one access of the requested width, and then call area_written(), so a
 * model can wake its watcher at once. Use atomic loads and stores on shared pages.
 *
 * All functions are thread-safe.
 */
#ifndef UIOMMU_DEVICE_H
#define UIOMMU_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "uiommu/uiommu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A PCI function of the emulated machine, as its model sees it. Opaque. */
struct uiommu_pci_fn;

/* The version of struct uiommu_pci_model a model is written against (its `version` field).
 * V2 adds the vendor-specific capabilities at the end of the struct; the library reads them only
 * from a V2 description, so a V1 model built against an older header keeps working. */
#define UIOMMU_PCI_MODEL_V1 1u
#define UIOMMU_PCI_MODEL_V2 2u
#define UIOMMU_PCI_MODEL_V3 3u            /* V2 + an expansion ROM image */
#define UIOMMU_PCI_ROM_MAX (16u << 20)    /* the largest ROM image */

#define UIOMMU_PCI_NUM_BARS 6u
#define UIOMMU_PCI_MAX_AREAS 4u          /* shared-memory areas per BAR */
#define UIOMMU_PCI_MSIX_MAX_VECTORS 2048u
#define UIOMMU_PCI_MSI_MAX_VECTORS 32u

/* struct uiommu_pci_bar::flags */
#define UIOMMU_PCI_BAR_IO (1u << 0)       /* an I/O-space BAR (else memory); never mmap-able */
#define UIOMMU_PCI_BAR_64 (1u << 1)       /* a 64-bit memory BAR: takes this BAR and the next one */
#define UIOMMU_PCI_BAR_PREFETCH (1u << 2) /* prefetchable memory */

/* A part of a memory BAR backed by shared memory, which a driver may mmap. */
struct uiommu_pci_area {
	uint64_t offset;                  /* in the BAR, a multiple of 4 KiB */
	uint64_t size;                    /* a non-zero multiple of 4 KiB */
};

struct uiommu_pci_bar {
	/* 0: no BAR here (the upper half of a 64-bit BAR is 0 too). Else a power of two: memory
	 * 16 bytes to 2^40 (2 GiB for a 32-bit BAR), I/O 4 to 256 bytes. It is what BAR sizing
	 * reads back; a memory BAR smaller than 4 KiB cannot be mmapped. */
	uint64_t size;
	unsigned int flags;               /* UIOMMU_PCI_BAR_* */
	unsigned int nr_areas;            /* memory BARs only; areas must not overlap each other
					   * or the MSI-X table and PBA */
	struct uiommu_pci_area areas[UIOMMU_PCI_MAX_AREAS];
};

/*
 * A vendor-specific capability (ID 0x09) of the standard list. The library writes its ID, its
 * next pointer and its length byte (PCI's vendor-specific capabilities keep their length at
 * offset 2: 3 + @len); @data are the bytes from offset 3 on, read-only to config writes. The
 * vendor-specific capabilities follow the PCIe one at 4-byte aligned offsets from 0xa4, in the
 * order given, and must all fit below 0x100 (92 bytes, headers included).
 */
struct uiommu_pci_vendor_cap {
	const void *data;
	unsigned int len;                 /* 1 to 89 */
};

/* struct uiommu_pci_model::caps: the standard capabilities the function has. PCIe functions
 * have 4 KiB of config space and an extended capability list; that list gets ATS, PRI and
 * PASID capabilities when the topology gives the function those ("ats", "pri", "pasid_bits"). */
#define UIOMMU_PCI_CAP_PM (1u << 0)       /* power management (D0 and D3hot) */
#define UIOMMU_PCI_CAP_MSI (1u << 1)      /* MSI, 64-bit, with per-vector masking */
#define UIOMMU_PCI_CAP_MSIX (1u << 2)     /* MSI-X */
#define UIOMMU_PCI_CAP_PCIE (1u << 3)     /* PCI Express endpoint (v2), with FLR */

struct uiommu_pci_model {
	unsigned int version;             /* UIOMMU_PCI_MODEL_V1 */
	const char *name;                 /* what a topology's "model" names; at most 31 chars */

	/* Identity (config space header). */
	uint16_t vendor_id, device_id;
	uint16_t subsystem_vendor_id, subsystem_id;
	uint32_t class_code;              /* 24 bits: base class, sub-class, prog. interface */
	uint8_t revision;
	uint8_t interrupt_pin;            /* 0: no INTx; 1-4: INTA#-INTD# */

	unsigned int caps;                /* UIOMMU_PCI_CAP_* */
	unsigned int msi_vectors;         /* with CAP_MSI: 1, 2, 4, 8, 16 or 32 */
	unsigned int msix_vectors;        /* with CAP_MSIX: 1 to 2048 */
	unsigned int msix_table_bar;      /* with CAP_MSIX: the memory BARs holding the table (16
					   * bytes a vector) and the PBA (a bit a vector, in
					   * 8-byte words); offsets 8-byte aligned. The library
					   * emulates both: the model never sees those accesses */
	uint32_t msix_table_offset;
	unsigned int msix_pba_bar;
	uint32_t msix_pba_offset;

	struct uiommu_pci_bar bars[UIOMMU_PCI_NUM_BARS];

	/*
	 * realize(): the function is being made (at boot). Allocate the model's state, attach it
	 * with uiommu_pci_fn_set_priv(), start threads if any. The function is in its power-on
	 * state (Bus Master off). 0 or a negative errno, which fails the machine's boot. Optional.
	 */
	int (*realize)(struct uiommu_pci_fn *fn);
	/*
	 * unrealize(): the function goes away (the machine shuts down). DMA is already fenced
	 * (every uiommu_pci_dma_*() fails EPERM and none is in flight). Stop threads, free what
	 * realize() made. Optional.
	 */
	void (*unrealize)(struct uiommu_pci_fn *fn);
	/*
	 * reset(): a function level reset (PCIe FLR, the VFIO reset, a hot plug): go back to the
	 * power-on state and stop all activity (join or park worker threads) before returning.
	 * DMA is fenced first, as for unrealize; the library resets config space itself. Cannot
	 * fail. Optional.
	 */
	void (*reset)(struct uiommu_pci_fn *fn);
	/*
	 * command_written(): the Command register was written (memory/I/O decode, Bus Master,
	 * INTx disable). When Bus Master went off, DMA is fenced before this is called: no
	 * uiommu_pci_dma_*() of the function is in flight any more and new ones fail EPERM.
	 * Optional.
	 */
	void (*command_written)(struct uiommu_pci_fn *fn, uint16_t old_cmd, uint16_t new_cmd);

	/*
	 * BAR register accesses outside the shared-memory areas and the MSI-X structures: @width
	 * is 1, 2, 4 or 8 and @offset is a multiple of it, inside the BAR. A read returns the
	 * value in the low @width bytes (whatever the model wants for holes: real hardware reads 0
	 * or ~0). Only called while the function decodes the BAR's space (Command memory or I/O
	 * enable). Optional: without them reads give 0 and writes are dropped.
	 */
	uint64_t (*bar_read)(struct uiommu_pci_fn *fn, unsigned int bar, uint64_t offset,
			     unsigned int width);
	void (*bar_write)(struct uiommu_pci_fn *fn, unsigned int bar, uint64_t offset,
			  unsigned int width, uint64_t value);
	/*
	 * area_written(): an access through the library stored @width bytes at @offset of @bar,
	 * inside a shared-memory area (already visible in the area). Not called for stores
	 * through a driver's mmap of the area: the model polls those. Optional.
	 */
	void (*area_written)(struct uiommu_pci_fn *fn, unsigned int bar, uint64_t offset,
			     unsigned int width);

	/* V2: vendor-specific capabilities (virtio-pci's, for one), linked after the others. */
	unsigned int nr_vendor_caps;
	const struct uiommu_pci_vendor_cap *vendor_caps;

	/*
	 * V3: an expansion ROM image (NULL/0: none), read-only, @rom_size bytes up to
	 * UIOMMU_PCI_ROM_MAX, valid while the model is registered. The function gets a ROM BAR
	 * of the smallest power of two >= max(@rom_size, 2 KiB); reads past the image give 0xff.
	 * The library serves every ROM access: the model is never called for one.
	 */
	const void *rom;
	size_t rom_size;
};

/*
 * uiommu_pci_model_register() - make a model available to topologies, by its name
 *
 * The description is checked (EINVAL: unknown version, an empty or too long name, BAR sizes
 * that are not powers of two or out of range, a 64-bit BAR in slot 5 or followed by a used
 * slot, areas that are not page aligned, overlap or lie outside their BAR, MSI/MSI-X vector
 * counts out of range, an MSI-X table or PBA outside a memory BAR or overlapping an area,
 * interrupt_pin > 4, vendor-specific capabilities that are empty or do not fit below 0x100).
 * EEXIST: the name is taken (a built-in model's too). ENOMEM. @model must
 * stay valid and unchanged until it is unregistered. Register before the machine boots: a
 * topology naming an unknown model fails to load.
 */
int uiommu_pci_model_register(const struct uiommu_pci_model *model);
/* ENOENT: no such registered model (built-ins cannot be unregistered); EBUSY: a function runs
 * it (one of the loaded machine, or one a VFIO user still holds after the machine unloaded). */
int uiommu_pci_model_unregister(const char *name);

/* The model's state, as set by the model (NULL until set). */
void uiommu_pci_fn_set_priv(struct uiommu_pci_fn *fn, void *priv);
void *uiommu_pci_fn_priv(const struct uiommu_pci_fn *fn);
/* The function's PCI address, "0000:03:00.0"; the model it runs. */
const char *uiommu_pci_fn_name(const struct uiommu_pci_fn *fn);
const struct uiommu_pci_model *uiommu_pci_fn_model(const struct uiommu_pci_fn *fn);
/* The Command register now (PCI_COMMAND_MEMORY 0x2, PCI_COMMAND_MASTER 0x4, ...). */
uint16_t uiommu_pci_fn_command(const struct uiommu_pci_fn *fn);
/* The function's PASID capability width (0: none), from the topology. */
unsigned int uiommu_pci_fn_pasid_bits(const struct uiommu_pci_fn *fn);
/* The topology function's "backing" option (a path, e.g. a disk image), NULL when it has none.
 * Valid from realize() until unrealize() returns. */
const char *uiommu_pci_fn_backing(const struct uiommu_pci_fn *fn);

/*
 * uiommu_pci_fn_area() - the model's view of shared-memory area @index of @bar: a mapping of
 * the area's pages, valid from realize() until unrealize() returns. NULL + EINVAL for no such
 * area. Its contents are zero at realize and after each reset.
 */
void *uiommu_pci_fn_area(struct uiommu_pci_fn *fn, unsigned int bar, unsigned int index);

/*
 * Interrupts. uiommu_pci_irq_raise() signals @vector the way the function's config space says,
 * as hardware does:
 *   - MSI-X enabled: vector < table size (else EINVAL); when the function mask or the vector's
 *     mask bit is set, the vector's PBA bit is set instead and the message goes out when it is
 *     unmasked;
 *   - MSI enabled: vector < the enabled count (Multiple Message Enable; else EINVAL); a masked
 *     vector becomes pending in the Pending Bits register, sent when unmasked;
 *   - neither: INTx (vector must be 0, EINVAL otherwise; ENODEV without an interrupt pin): the
 *     line is asserted (Status Interrupt Status set) and stays so until uiommu_pci_irq_lower();
 *     Command INTx Disable keeps it from being signalled.
 * MSI and MSI-X messages are memory writes: with Bus Master off they are not sent (dropped;
 * 0 is returned, as a device cannot tell). Returns 0, or -1 and errno.
 */
int uiommu_pci_irq_raise(struct uiommu_pci_fn *fn, unsigned int vector);
/* Deasserts INTx (a no-op when it is not asserted). */
int uiommu_pci_irq_lower(struct uiommu_pci_fn *fn);

/*
 * DMA of the function, through the IOMMU (the DMA engine of uiommu.h, on the function's
 * device; docs/dma-engine.md for translation, faults, PASIDs and page requests). The same
 * calls as uiommu_dma_read/write/xfer(), gated as PCI gates a function's memory requests: they
 * fail EPERM while Bus Master is off, during a reset and after unrealize. A transfer that has
 * started when Bus Master goes off or a reset begins finishes first: the Command write or the
 * reset waits for it (keep transfers short). ENODEV: the function is unplugged.
 */
ssize_t uiommu_pci_dma_read(struct uiommu_pci_fn *fn, uint32_t pasid, uint64_t iova, void *buf,
			    size_t len, unsigned int flags);
ssize_t uiommu_pci_dma_write(struct uiommu_pci_fn *fn, uint32_t pasid, uint64_t iova,
			     const void *buf, size_t len, unsigned int flags);
int uiommu_pci_dma_xfer(struct uiommu_pci_fn *fn, struct uiommu_dma_req *req);
/*
 * uiommu_dma_batch() for the function (UIOMMU_DMA_0.4), behind the same gate: device-to-device
 * copies (UIOMMU_DMA_OP_COPY) and many small transfers in one pass of the gate and one visit
 * to the IOMMU. Returns how many ops completed, or -1 with errno (EPERM: no bus mastering now,
 * nothing ran; ENODEV; EINVAL as uiommu_dma_batch()).
 */
ssize_t uiommu_pci_dma_batch(struct uiommu_pci_fn *fn, struct uiommu_dma_op *ops, size_t n);
/*
 * A run of plain device-to-device copies (UIOMMU_DMA_0.5), for a model whose descriptors hold
 * them: copy i is the struct uiommu_dma_copy at @copies + i * @stride (so a model may point
 * into its fetched descriptors), then its completion record @recs[i] (@recs NULL or a record's
 * len 0: none), as a UIOMMU_DMA_OP_COPY with UIOMMU_DMA_RECORD would do it. Only what can go
 * without a fault or a page request runs here, and only once an earlier uiommu_pci_dma_batch()
 * at the same PASID, with the same domain attached there, left the function's translation
 * cache warm (a page missing from it is translated, never faulted); the run stops at the first
 * copy that cannot go, with nothing of it done, and the caller sends it and the rest through
 * uiommu_pci_dma_batch(), which reports faults as always. One exception: a copy made whose
 * record then could not be written (its host memory gone under the translation) is not undone
 * and must not be sent again; the run writes its record the general way and counts it, or
 * stops there with @stop->error set and @stop holding its results as a batch's COPY with
 * UIOMMU_DMA_RECORD would (done its length, fault_op UIOMMU_DMA_OP_WRITE, fault_iova).
 * Otherwise @stop->error is 0. The write log sees every copy.
 * Returns how many copies went (0..n), or -1 with errno: EPERM (no bus mastering now, nothing
 * ran), ENODEV, EINVAL (@fn NULL, @copies NULL with @n, @stop NULL, @stride smaller than the
 * struct, @copies or @stride not aligned for it, @flags other than UIOMMU_DMA_NO_PASID/NO_PRI/
 * NO_WAIT, @n above UIOMMU_DMA_BATCH_MAX, @pasid beyond the device's PASID width).
 */
ssize_t uiommu_pci_dma_copy_run(struct uiommu_pci_fn *fn, uint32_t pasid, unsigned int flags,
				const void *copies, size_t stride,
				const struct uiommu_dma_record *recs, size_t n,
				struct uiommu_dma_op *stop);
/* Takes up to @n recorded DMA faults of the function, oldest first (uiommu_dma_dev_read_faults). */
ssize_t uiommu_pci_dma_read_faults(struct uiommu_pci_fn *fn, struct uiommu_dma_fault *buf,
				   size_t n);

#ifdef __cplusplus
}
#endif

#endif
