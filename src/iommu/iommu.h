/* SPDX-License-Identifier: MIT */
/*
 * The IOMMU core's internal API: devices, IOMMU instances and their drivers, groups, domains,
 * DMA ownership, and the default-domain machinery. This is the counterpart of the kernel's
 * include/linux/iommu.h; the semantics are those of ../shared/spec/iommu-core.md (mainline
 * v6.17), and the numeric values (domain types, caps) are the kernel's.
 *
 * The model in one paragraph. An IOMMU instance (struct iommu_device) is registered with a
 * driver (struct iommu_ops). A device (struct device, a PCI-style function named by its BDF) sits
 * behind one instance; probing it puts it in exactly one group (struct iommu_group) chosen by the
 * driver, and gives the group a default domain, the one the kernel's DMA API uses. A domain
 * (struct iommu_domain) is a translation: blocked, identity, or a paging page table. The group's
 * `domain` is what its devices are attached to now. DMA ownership (VFIO/iommufd) switches a group
 * to its blocking domain until the owner attaches its own domain. Everything about a group is
 * under group->mutex, and so is device release.
 *
 * Addresses: an "IOVA" is what a device emits; a "physical address" is, in this userspace model,
 * a host virtual address of the emulator's process (the memory a DMA reaches).
 *
 * Lock order: iommu_probe_device_lock -> group->mutex -> (driver locks) -> iommu_device_lock.
 */
#ifndef UIOMMU_IOMMU_IOMMU_H
#define UIOMMU_IOMMU_IOMMU_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "lib/lockdep.h"

typedef uint64_t dma_addr_t;
typedef uint64_t phys_addr_t;

/* ---- domain types (values are the kernel's) ------------------------------------------------ */

#define __IOMMU_DOMAIN_PAGING (1u << 0)
#define __IOMMU_DOMAIN_DMA_API (1u << 1)
#define __IOMMU_DOMAIN_PT (1u << 2)
#define __IOMMU_DOMAIN_DMA_FQ (1u << 3)
#define __IOMMU_DOMAIN_SVA (1u << 4)
#define __IOMMU_DOMAIN_PLATFORM (1u << 5)
#define __IOMMU_DOMAIN_NESTED (1u << 6)

#define IOMMU_DOMAIN_BLOCKED 0u
#define IOMMU_DOMAIN_IDENTITY __IOMMU_DOMAIN_PT
#define IOMMU_DOMAIN_UNMANAGED __IOMMU_DOMAIN_PAGING
#define IOMMU_DOMAIN_DMA (__IOMMU_DOMAIN_PAGING | __IOMMU_DOMAIN_DMA_API)
#define IOMMU_DOMAIN_DMA_FQ (__IOMMU_DOMAIN_PAGING | __IOMMU_DOMAIN_DMA_API | __IOMMU_DOMAIN_DMA_FQ)
#define IOMMU_DOMAIN_SVA __IOMMU_DOMAIN_SVA
#define IOMMU_DOMAIN_PLATFORM __IOMMU_DOMAIN_PLATFORM
#define IOMMU_DOMAIN_NESTED __IOMMU_DOMAIN_NESTED

/* Mapping protections. */
#define IOMMU_READ (1 << 0)
#define IOMMU_WRITE (1 << 1)
#define IOMMU_CACHE (1 << 2)
#define IOMMU_NOEXEC (1 << 3)
#define IOMMU_MMIO (1 << 4)
#define IOMMU_PRIV (1 << 5)

enum iommu_cap {
	IOMMU_CAP_CACHE_COHERENCY,
	IOMMU_CAP_NOEXEC,
	IOMMU_CAP_PRE_BOOT_PROTECTION,
	IOMMU_CAP_ENFORCE_CACHE_COHERENCY,
	IOMMU_CAP_DEFERRED_FLUSH,
	IOMMU_CAP_DIRTY_TRACKING,
	IOMMU_CAP_PCI_ATS_SUPPORTED,  /* the device can use ATS behind this IOMMU */
};

enum iommu_resv_type {
	IOMMU_RESV_DIRECT,
	IOMMU_RESV_DIRECT_RELAXABLE,
	IOMMU_RESV_RESERVED,
	IOMMU_RESV_MSI,
	IOMMU_RESV_SW_MSI,
};

struct iommu_resv_region {
	uint64_t start;
	uint64_t length;
	int prot;
	enum iommu_resv_type type;
};

struct iommu_domain;
struct iommu_group;
struct iommu_device;
struct device;
struct iopf_group;
struct iopf_fault;
struct iommu_page_response;
struct iommu_fault_param;
struct uiommu_mm;
struct iommu_user_data_array;
struct iommu_viommu;

/* Pages an unmap released, to invalidate in one go (iommu_iotlb_gather in the kernel). */
struct iommu_iotlb_gather {
	uint64_t start; /* UINT64_MAX while empty */
	uint64_t end;   /* inclusive */
	uint64_t pgsize;
	bool queued;    /* the flush is deferred to a flush queue */
};

static inline void iommu_iotlb_gather_init(struct iommu_iotlb_gather *g)
{
	g->start = UINT64_MAX;
	g->end = 0;
	g->pgsize = 0;
	g->queued = false;
}

struct iommu_domain_geometry {
	uint64_t aperture_start;
	uint64_t aperture_end;  /* inclusive */
	bool force_aperture;
};

/**
 * struct iommu_domain_ops - what a driver does with one of its domains
 * @attach_dev: point @dev at @domain (@old is what it was on). -EINVAL means "incompatible".
 * @map_pages: map @pgcount pages of @pgsize at @iova to @paddr; *@mapped gets the bytes done.
 * @unmap_pages: returns the bytes unmapped; adds the range to @gather for a later sync.
 * @flush_iotlb_all: invalidate everything this domain may have in an IOTLB.
 * @iotlb_sync: invalidate what @gather collected.
 * @iova_to_phys: a software walk of the page table; 0 when unmapped.
 * @set_dev_pasid: point (@dev, @pasid) at @domain; @old is what that PASID was on (NULL: nothing).
 *                 The driver's blocked domain's set_dev_pasid removes a PASID attachment.
 * @free: release the domain (the core calls it once, after the last user).
 */
struct iommu_domain_ops {
	int (*attach_dev)(struct iommu_domain *domain, struct device *dev,
			  struct iommu_domain *old);
	int (*map_pages)(struct iommu_domain *domain, uint64_t iova, phys_addr_t paddr,
			 size_t pgsize, size_t pgcount, int prot, size_t *mapped);
	size_t (*unmap_pages)(struct iommu_domain *domain, uint64_t iova, size_t pgsize,
			      size_t pgcount, struct iommu_iotlb_gather *gather);
	void (*flush_iotlb_all)(struct iommu_domain *domain);
	void (*iotlb_sync)(struct iommu_domain *domain, struct iommu_iotlb_gather *gather);
	phys_addr_t (*iova_to_phys)(struct iommu_domain *domain, uint64_t iova);
	/*
	 * Optional: what an emulated device's access to @iova meets, as the hardware's walk would
	 * (no kernel counterpart: there the walk is silicon). The output address (0: unmapped), the
	 * leaf's IOMMU_READ | IOMMU_WRITE in *@prot, its size in *@size; a @write access sets the
	 * leaf's dirty bit while dirty tracking is on. The machine's DMA engine uses it for domains
	 * the IOTLB model cannot serve (pages smaller than an IOTLB entry, or an instance without
	 * an IOTLB); the domain's own locks only.
	 */
	phys_addr_t (*dma_walk)(struct iommu_domain *domain, uint64_t iova, bool write, int *prot,
				uint64_t *size);
	/*
	 * Optional: dma_walk over a run of leaves under one hold of the domain's lock (a 2 KiB-leaf
	 * domain otherwise costs a walk and a lock round trip per 2 KiB). From @iova, at most @len
	 * bytes (> 0); *@run gets the bytes from @iova (> 0, <= @len) that leaves with the same
	 * IOMMU_READ | IOMMU_WRITE as @iova's and output contiguous with it translate, *@prot that
	 * permission. The run ends before a hole, a leaf of other permissions or output elsewhere,
	 * so the caller meets that IOVA itself on its next call (a fault there is at the exact
	 * IOVA). A @write sets the dirty bit of each writable leaf the run meets, as dma_walk of
	 * each would, and of no leaf past @iova + @len. 0: @iova itself is unmapped.
	 */
	phys_addr_t (*dma_walk_run)(struct iommu_domain *domain, uint64_t iova, uint64_t len,
				    bool write, int *prot, uint64_t *run);
	/*
	 * Optional: dma_walk for a domain whose translation depends on who asks (a nested domain:
	 * the requester's StreamID picks its vSID and events, the PASID its context descriptor).
	 * A transaction of @dev at @pasid (IOMMU_NO_PASID: none); the DMA engine prefers it to
	 * dma_walk and uses it for nested domains too. The domain's and @dev's driver locks only.
	 */
	phys_addr_t (*dma_walk_dev)(struct iommu_domain *domain, struct device *dev,
				    uint32_t pasid, uint64_t iova, bool write, int *prot,
				    uint64_t *size);
	int (*set_dev_pasid)(struct iommu_domain *domain, struct device *dev, uint32_t pasid,
			     struct iommu_domain *old);
	/*
	 * Optional, nested domains only: the user's stage-1 cache invalidation
	 * (IOMMU_HWPT_INVALIDATE on a nested HWPT). The driver checks @array->type, then walks the
	 * entries with iommu_user_array_for_each() (the core's one loop, which leaves in
	 * @array->entry_num the count handled); it may lower entry_num afterwards (a batch that
	 * failed as a whole). Without it the core answers EOPNOTSUPP, as for every SMMUv3 nested
	 * domain, whose invalidation goes through its vIOMMU.
	 */
	int (*cache_invalidate_user)(struct iommu_domain *domain,
				     struct iommu_user_data_array *array);
	void (*free)(struct iommu_domain *domain);
};

/*
 * Dirty tracking. A driver reports each dirty leaf it finds with iommu_dirty_bitmap_record(),
 * whole: a dirty 1 MiB leaf is one record of 1 MiB, whatever part of it the caller asked about.
 * Every recorded range also goes into @gather (when the caller gave one): an IOTLB may still
 * hold the leaf's translation with its dirty bit set, and a write through that entry would not
 * set the bit again, so a caller that cleared the bits syncs @gather before it trusts the next
 * read (the kernel's iommu_dirty_bitmap and iommu_read_and_clear_dirty()).
 */
struct iommu_dirty_bitmap {
	void (*record)(struct iommu_dirty_bitmap *dirty, uint64_t iova, uint64_t length);
	struct iommu_iotlb_gather *gather; /* NULL: nothing to invalidate */
};

/* Grows @gather over [@iova, @iova + @size): one range, merged over any gap (over-invalidates). */
static inline void iommu_iotlb_gather_add_range(struct iommu_iotlb_gather *gather, uint64_t iova,
						uint64_t size)
{
	uint64_t last = iova + size - 1;

	if (!size)
		return;
	if (last < iova)
		last = UINT64_MAX;
	if (iova < gather->start)
		gather->start = iova;
	if (last > gather->end)
		gather->end = last;
}

static inline void iommu_dirty_bitmap_record(struct iommu_dirty_bitmap *dirty, uint64_t iova,
					     uint64_t length)
{
	if (dirty->record)
		dirty->record(dirty, iova, length);
	if (dirty->gather)
		iommu_iotlb_gather_add_range(dirty->gather, iova, length);
}

#define IOMMU_DIRTY_NO_CLEAR (1u << 0) /* report, but leave the dirty bits set */

/**
 * struct iommu_dirty_ops - a domain's dirty tracking (domain->dirty_ops; NULL: none)
 * @set_dirty_tracking: start (clearing what was dirty) or stop tracking; -EINVAL when the
 *                      domain was not made for it.
 * @read_and_clear_dirty: report the dirty leaves that meet [iova, iova + size) and clear them
 *                        unless IOMMU_DIRTY_NO_CLEAR; -EINVAL while tracking is off.
 */
struct iommu_dirty_ops {
	int (*set_dirty_tracking)(struct iommu_domain *domain, bool enabled);
	int (*read_and_clear_dirty)(struct iommu_domain *domain, uint64_t iova, uint64_t size,
				    unsigned int flags, struct iommu_dirty_bitmap *dirty);
};

struct iommu_dma_cookie;

struct iommu_domain {
	/*
	 * Changes only under the group mutex, and only once a domain is in use for the live
	 * DMA -> DMA-FQ switch; lock-free readers (the DMA path) use iommu_domain_type().
	 */
	unsigned int type;
	const struct iommu_domain_ops *ops;
	const struct iommu_dirty_ops *dirty_ops; /* NULL: no dirty tracking; constant */
	const struct iommu_ops *owner;  /* the driver that made it */
	uint64_t pgsize_bitmap;
	struct iommu_domain_geometry geometry;
	struct iommu_dma_cookie *iova_cookie; /* DMA-API domains: the IOVA allocator, flush queue */
	uint32_t id;                    /* unique, for IOTLB tags and tools */
	/*
	 * Fault routing: a domain with an iopf_handler is fault-capable; the I/O page fault layer
	 * hands it every complete fault group reported on a (device, PASID) attached to it.
	 * Set once before the domain is first attached; constant afterwards.
	 */
	int (*iopf_handler)(struct iopf_group *group);
	void *fault_data;               /* the handler owner's (iommufd: its fault object) */
	/*
	 * SVA domains: the address space translated (a reference, put by iommu_domain_free()), and
	 * under iommu_sva_lock the devices sharing it and the link in the mm's SVA domain list.
	 */
	struct uiommu_mm *mm;
	unsigned int users;
	struct iommu_domain *sva_next;
};

static inline unsigned int iommu_domain_type(const struct iommu_domain *domain)
{
	return __atomic_load_n(&domain->type, __ATOMIC_RELAXED);
}

static inline void iommu_domain_set_type(struct iommu_domain *domain, unsigned int type)
{
	__atomic_store_n(&domain->type, type, __ATOMIC_RELAXED);
}

/*
 * Driver-specific data a user (iommufd's HWPT_ALLOC, VIOMMU_ALLOC) passes to an allocation,
 * already copied out of user memory: @type is the uAPI data type, @data/@len its bytes. @len is
 * the user's data_len clamped to IOMMU_USER_DATA_MAX: every driver's struct is smaller, so a
 * clamped length is one the driver's copy rule rejects (EINVAL) as it would the user's.
 *
 * @out: for an op that answers (viommu_init): NULL elsewhere; else a buffer of @len bytes
 * (the same clamp) holding a copy of @data, that the driver may fill with its answer, setting
 * *@out_len to the bytes the core is to copy back to the user's buffer (0: nothing).
 */
#define IOMMU_USER_DATA_MAX 64u

struct iommu_user_data {
	uint32_t type;
	const void *data;
	size_t len;
	void *out;
	size_t *out_len;
};

/**
 * struct iommu_user_data_array - an array of driver entries in user memory (invalidation)
 * @type: the uAPI data type of every entry
 * @entry_len: the user's length of one entry
 * @entry_num: in: the user's count; out: the entries handled (iommu_user_array_for_each()
 *             sets it; a driver may lower it afterwards), written back to the user on success
 *             and on failure alike
 *
 * The entries stay in user memory: iommufd copies them one at a time, in its one loop
 * (iommufd_user_array_for_each()), which it reaches the driver through @for_each; a driver
 * never copies user memory itself. @for_each and @priv are iommufd's.
 */
struct iommu_user_data_array {
	uint32_t type;
	uint32_t entry_len;
	uint32_t entry_num;
	int (*for_each)(struct iommu_user_data_array *array, void *entry, size_t ksize,
			size_t min_len, bool no_longer, int (*handle)(void *arg, const void *entry),
			void *arg);
	void *priv;
};

/**
 * iommu_user_array_for_each() - hand each entry of @array to @handle, in order
 * @entry: a buffer of @ksize bytes (the driver's struct) each entry is copied into in turn,
 *         zero-filled past a shorter entry_len
 * @min_len: the end of the struct's first-version fields: a shorter entry_len is EINVAL
 * @no_longer: true for the kernel's per-entry copy (iommu_copy_struct_from_user_array(): an
 *             entry longer than @ksize is EINVAL); false for the whole-array copy (bytes past
 *             @ksize must be zero, else E2BIG)
 * @handle: the driver's work for one entry, given @arg; a non-zero return stops the loop
 *
 * Return: 0, or the error of the first entry that could not be copied (EINVAL, E2BIG,
 * EFAULT) or handled. @array->entry_num is the count of entries handled either way.
 */
static inline int iommu_user_array_for_each(struct iommu_user_data_array *array, void *entry,
					    size_t ksize, size_t min_len, bool no_longer,
					    int (*handle)(void *arg, const void *entry), void *arg)
{
	return array->for_each(array, entry, ksize, min_len, no_longer, handle, arg);
}

/* Flags of domain_alloc_paging_flags(): the values of the uAPI's IOMMU_HWPT_ALLOC_*. */
#define IOMMU_DOMAIN_ALLOC_NEST_PARENT (1u << 0)
#define IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING (1u << 1)
#define IOMMU_DOMAIN_ALLOC_PASID (1u << 3)

/**
 * struct iommu_ops - an IOMMU driver
 * @capable: does this IOMMU (for @dev) have @cap?
 * @domain_alloc_paging: a new empty paging domain usable by @dev.
 * @probe_device: take @dev on; returns its IOMMU instance or an ERR_PTR.
 * @release_device: let @dev go. Called with the group mutex held, once per probe.
 * @device_group: the group @dev belongs in, with a reference (iommu_group_alloc() or an
 *                existing group's iommu_group_ref_get()).
 * @def_domain_type: IOMMU_DOMAIN_IDENTITY or _DMA when the driver insists, 0 otherwise.
 * @get_resv_regions: fill @regions (up to @max) with @dev's reserved regions; returns the count.
 * @domain_alloc_paging_flags: optional; a paging domain for a user with IOMMU_DOMAIN_ALLOC_*
 *                  @flags and optional driver data @user_data (NULL for none). -EOPNOTSUPP for
 *                  flags or data it does not support.
 * @hw_info: optional; the driver's hardware description for @dev, in a uiommu_zalloc'd buffer
 *           the caller frees, with *@length set. *@type is in/out: 0 (default) or the wanted
 *           uAPI info type in, the type of the data out; -EOPNOTSUPP for a type it lacks.
 * @domain_alloc_sva: optional; an SVA domain translating through @mm for @dev.
 * @page_response: optional; deliver a page response for the request @evt (the last fault of a
 *                 group) to @dev. iopf_queue_add_device() needs it.
 * @domain_alloc_nested: optional; a nested (IOMMU_DOMAIN_NESTED) domain over the driver's
 *                  NEST_PARENT paging domain @parent for @dev, from the user's stage-1 data
 *                  @user_data; @flags are IOMMU_DOMAIN_ALLOC_PASID or 0 (iommufd keeps
 *                  FAULT_ID_VALID to itself). -EOPNOTSUPP (flags, data type), -EINVAL (a
 *                  parent it cannot nest on, bad data), -ENOMEM. Drivers with a vIOMMU nest
 *                  through iommu_viommu_ops.alloc_domain_nested instead (SMMUv3 has no
 *                  domain_alloc_nested: iommufd answers EOPNOTSUPP for a parent HWPT pt_id).
 * @viommu_alloc: optional; the driver's vIOMMU of uAPI type @type (IOMMU_VIOMMU_TYPE_*) on
 *                @dev's IOMMU instance, not yet initialised (iommufd_driver.h). Return
 *                ERR_PTR(-EOPNOTSUPP) for a type the instance cannot do (the kernel's
 *                get_viommu_size() returning 0); iommufd asks before it looks the parent up.
 * @viommu_init: with @viommu_alloc; make @viommu a vIOMMU over the nesting parent
 *               @parent_domain (one of the driver's; -EINVAL for another instance's) with the
 *               user's optional @user_data, which may carry an answer (@user_data->out). On
 *               failure iommufd calls @viommu->ops->destroy, which must undo any part of init.
 * @user_pasid_table: faults with a PASID the core does not know go to the RID's NESTED handle.
 * @identity_domain, @blocked_domain: static domains of the driver, always attachable.
 */
struct iommu_ops {
	const char *name;
	bool (*capable)(struct device *dev, enum iommu_cap cap);
	struct iommu_domain *(*domain_alloc_paging)(struct device *dev);
	struct iommu_device *(*probe_device)(struct device *dev);
	void (*release_device)(struct device *dev);
	struct iommu_group *(*device_group)(struct device *dev);
	int (*def_domain_type)(struct device *dev);
	unsigned int (*get_resv_regions)(struct device *dev, struct iommu_resv_region *regions,
					 unsigned int max);
	struct iommu_domain *(*domain_alloc_paging_flags)(struct device *dev, uint32_t flags,
							  const struct iommu_user_data *user_data);
	void *(*hw_info)(struct device *dev, uint32_t *length, uint32_t *type);
	struct iommu_domain *(*domain_alloc_sva)(struct device *dev, struct uiommu_mm *mm);
	struct iommu_domain *(*domain_alloc_nested)(struct device *dev,
						    struct iommu_domain *parent, uint32_t flags,
						    const struct iommu_user_data *user_data);
	struct iommu_viommu *(*viommu_alloc)(struct device *dev, uint32_t type);
	int (*viommu_init)(struct iommu_viommu *viommu, struct iommu_domain *parent_domain,
			   const struct iommu_user_data *user_data);
	void (*page_response)(struct device *dev, struct iopf_fault *evt,
			      struct iommu_page_response *msg);
	bool user_pasid_table;
	struct iommu_domain *identity_domain;
	struct iommu_domain *blocked_domain;
};

/* An IOMMU instance. */
struct iommu_device {
	const struct iommu_ops *ops;
	char name[32];
	uint32_t max_pasids;      /* PASIDs this instance supports, 0 for none */
	bool deferred_flush;      /* IOMMU_CAP_DEFERRED_FLUSH */
	bool dirty_tracking;
	bool msi_window;          /* mock: x86's MSI window is reserved for every device */
	void *priv;               /* the driver's */
	struct iommu_device *next; /* in the registered list; iommu_device_lock */
};

/* What the core keeps per probed device (dev->iommu). */
struct dev_iommu {
	/*
	 * Protects the publication and clearing of fault_param. Lock order:
	 * iopf_queue->lock -> dev_iommu->lock -> fault_param->lock.
	 */
	struct uiommu_mutex lock;
	/*
	 * The device's I/O page fault state: RCU-published by iopf_queue_add_device(), read by
	 * reporters under rcu_read_lock() plus a reference taken only if the count is not zero.
	 */
	struct iommu_fault_param *fault_param;
	struct iommu_device *iommu_dev;
	void *priv;                   /* the driver's */
	uint32_t max_pasids;
	bool require_direct;          /* has IOMMU_RESV_DIRECT regions */
	bool attach_deferred;
};

/* A PCI-style function, as the topology describes it. */
struct device {
	char name[32];                /* the BDF, "0000:00:03.0" */
	char group_key[32];           /* same non-empty key: same group (no ACS isolation) */
	struct iommu_device *iommu;   /* the instance it sits behind (its fwspec) */
	bool untrusted;               /* external-facing: the core forces DMA */
	uint32_t pasid_bits;          /* PCI PASID capability width, 0 for none */
	bool ats;                     /* PCI Address Translation Services capability */
	bool pri;                     /* page request interface (an ATS extension: implies ats) */
	bool dirty;                   /* the IOMMU can track dirty bits for it */
	int driver_pref;              /* the emulated driver's def_domain_type preference */
	struct iommu_resv_region resv[4];
	unsigned int nr_resv;

	/* The core's, under the probe lock / group mutex. */
	struct iommu_group *iommu_group;
	struct dev_iommu *iommu_data;
	bool driver_bound;            /* an emulated kernel DMA-API driver is bound */
	atomic_int refs;
};

/* ---- global policy --------------------------------------------------------------------------- */

/* IOMMU_DOMAIN_IDENTITY (passthrough), IOMMU_DOMAIN_DMA or IOMMU_DOMAIN_DMA_FQ. */
unsigned int iommu_default_domain_type(void);
/* Set at "boot" (before any probe): passthrough or translated, strict or lazy. */
void iommu_set_default_policy(bool passthrough, bool strict);
void iommu_set_dma_strict(void);

/* ---- instances and devices ------------------------------------------------------------------ */

int iommu_device_register(struct iommu_device *iommu, const struct iommu_ops *ops);
void iommu_device_unregister(struct iommu_device *iommu);

struct device *device_alloc(const char *bdf);
void device_get(struct device *dev);
void device_put(struct device *dev);

/* Bus notifications: a device appears (probe) or goes away (release). */
int iommu_probe_device(struct device *dev);
void iommu_release_device(struct device *dev);

/* ---- groups ------------------------------------------------------------------------------- */

struct iommu_group *iommu_group_alloc(void);
struct iommu_group *iommu_group_get(struct device *dev);
struct iommu_group *iommu_group_ref_get(struct iommu_group *group);
void iommu_group_put(struct iommu_group *group);
int iommu_group_id(struct iommu_group *group);
int iommu_group_for_each_dev(struct iommu_group *group, void *data,
			     int (*fn)(struct device *dev, void *data));
void iommu_group_mutex_assert(struct device *dev);

/* The group with sysfs id @id, with a reference; NULL if none. */
struct iommu_group *iommu_group_get_by_id(int id);
/* The lowest group id above @after (-1 to start), or -1 when there is none. */
int iommu_group_next_id(int after);
/* Number of devices in the group now. */
unsigned int iommu_group_device_count(struct iommu_group *group);

/* Snapshot for tools and tests, under the group mutex. */
struct iommu_group_info {
	int id;
	unsigned int nr_devices;
	unsigned int default_type;   /* UINT32_MAX: no default domain */
	unsigned int domain_type;    /* UINT32_MAX: no domain */
	bool domain_is_default;
	bool domain_is_blocking;
	bool has_blocking_domain;
	unsigned int owner_cnt;
	bool owned;                  /* owner set */
	uint32_t default_domain_id;
	uint32_t domain_id;
	unsigned int nr_pasid_entries; /* slots of the PASID table, IOMMU_NO_PASID's included */
};
void iommu_group_get_info(struct iommu_group *group, struct iommu_group_info *info);

/* ---- domains ------------------------------------------------------------------------------ */

struct iommu_domain *iommu_paging_domain_alloc(struct device *dev);
struct iommu_domain *iommu_paging_domain_alloc_flags(struct device *dev, uint32_t flags,
						     const struct iommu_user_data *user_data);
/*
 * @dev's reserved regions as its driver reports them (get_resv_regions: firmware's direct
 * regions, the MSI window, what lies outside the aperture), up to @max; returns the count.
 */
unsigned int iommu_get_resv_regions(struct device *dev, struct iommu_resv_region *regions,
				    unsigned int max);
/* Can the driver of @dev do @cap for it? */
bool iommu_device_capable(struct device *dev, enum iommu_cap cap);
const struct iommu_ops *iommu_device_ops(struct device *dev);
void iommu_domain_free(struct iommu_domain *domain);
/* For the core's own files (iommu-sva.c): a driver's new domain gets its type, owner and id. */
void __iommu_domain_init(struct iommu_domain *domain, unsigned int type,
			 const struct iommu_ops *ops);
int iommu_attach_device(struct iommu_domain *domain, struct device *dev);
void iommu_detach_device(struct iommu_domain *domain, struct device *dev);
int iommu_attach_group(struct iommu_domain *domain, struct iommu_group *group);
void iommu_detach_group(struct iommu_domain *domain, struct iommu_group *group);
/* The iommufd way: switch from whatever is attached straight to @new_domain. */
int iommu_group_replace_domain(struct iommu_group *group, struct iommu_domain *new_domain);
struct iommu_domain *iommu_get_domain_for_dev(struct device *dev);
/*
 * For a device's DMA (dma-engine.c): hold the group's mutex over a transfer so that its domain
 * stays attached (detach waits for in-flight DMA), and read the domain under it: NULL when
 * @dev is no longer a member of @group (released).
 */
void iommu_group_mutex_lock(struct iommu_group *group);
void iommu_group_mutex_unlock(struct iommu_group *group);
struct iommu_domain *__iommu_group_domain_for_dev(struct iommu_group *group, struct device *dev);
/*
 * The group's default domain, without the group mutex: for the DMA API of a bound driver,
 * which the core never leaves without its domain (a type change that replaces the default
 * domain needs the driver unbound; the live DMA -> DMA-FQ change keeps it).
 */
struct iommu_domain *iommu_get_dma_domain(struct device *dev);

int iommu_map(struct iommu_domain *domain, uint64_t iova, phys_addr_t paddr, size_t size,
	      int prot);
size_t iommu_unmap(struct iommu_domain *domain, uint64_t iova, size_t size);
size_t iommu_unmap_fast(struct iommu_domain *domain, uint64_t iova, size_t size,
			struct iommu_iotlb_gather *gather);
void iommu_iotlb_sync(struct iommu_domain *domain, struct iommu_iotlb_gather *gather);
void iommu_flush_iotlb_all(struct iommu_domain *domain);
phys_addr_t iommu_iova_to_phys(struct iommu_domain *domain, uint64_t iova);
bool iommu_is_dma_domain(struct iommu_domain *domain);

/* ---- DMA ownership and driver binding ------------------------------------------------------ */

/* The kernel-internal "try again later" of a driver probe (EPROBE_DEFER). */
#define EPROBE_DEFER 517

int iommu_device_use_default_domain(struct device *dev);
void iommu_device_unuse_default_domain(struct device *dev);
int iommu_group_claim_dma_owner(struct iommu_group *group, void *owner);
void iommu_group_release_dma_owner(struct iommu_group *group);
int iommu_device_claim_dma_owner(struct device *dev, void *owner);
void iommu_device_release_dma_owner(struct device *dev);
bool iommu_group_dma_owner_claimed(struct iommu_group *group);

/* ---- PASIDs and attach handles (iommu.c) ---------------------------------------------------- */

#define IOMMU_NO_PASID 0u             /* the RID: the device's requests without a PASID */
#define IOMMU_FIRST_GLOBAL_PASID 1u
#define IOMMU_PASID_INVALID (~0u)

/*
 * struct iommu_attach_handle - what an attachment of a domain to (group, PASID) is, for
 * lookups that run without the group mutex (fault reporting). Users embed it in their own
 * struct (iommufd: with its device; SVA: struct iommu_sva with the bond's refcount). The core
 * sets @domain when it publishes the handle. A handle is valid from its attach until the detach
 * or replace that removes it returns; every attach and every replace takes a new one.
 */
struct iommu_attach_handle {
	struct iommu_domain *domain;
};

/*
 * Attach @domain to every PASID-capable device of @dev's group at @pasid. @handle may be NULL
 * (a bare-domain entry, invisible to handle lookups). -EINVAL for PASID 0, a PASID beyond a
 * member's max_pasids or an incompatible domain; -EBUSY when the PASID is taken; -EOPNOTSUPP
 * without driver support; -ENODEV without a group. The entry becomes visible only once every
 * device accepted it.
 */
int iommu_attach_device_pasid(struct iommu_domain *domain, struct device *dev, uint32_t pasid,
			      struct iommu_attach_handle *handle);
void iommu_detach_device_pasid(struct iommu_domain *domain, struct device *dev, uint32_t pasid);
/* iommufd's replace: @handle is required and must not be the current one (-EINVAL). */
int iommu_replace_device_pasid(struct iommu_domain *domain, struct device *dev, uint32_t pasid,
			       struct iommu_attach_handle *handle);
/*
 * The domain attached at (@dev's group, @pasid) now, NULL when none is published there,
 * ERR_PTR(-EBUSY) when @type is not 0 and differs. Takes no group mutex.
 */
struct iommu_domain *iommu_get_domain_for_dev_pasid(struct device *dev, uint32_t pasid,
						    unsigned int type);
/*
 * The handle at (@group, @pasid): ERR_PTR(-ENOENT) when there is none or the entry is a bare
 * domain, ERR_PTR(-EBUSY) when @type is not 0 and the handle's domain is of another type.
 * Takes only the PASID table's own lock; the caller synchronises with attach and detach.
 */
struct iommu_attach_handle *iommu_attach_handle_get(struct iommu_group *group, uint32_t pasid,
						    unsigned int type);
/* The RID attachment with a handle (iommufd's fault-capable HWPTs). */
int iommu_attach_group_handle(struct iommu_domain *domain, struct iommu_group *group,
			      struct iommu_attach_handle *handle);
void iommu_detach_group_handle(struct iommu_domain *domain, struct iommu_group *group);
int iommu_replace_group_handle(struct iommu_group *group, struct iommu_domain *new_domain,
			       struct iommu_attach_handle *handle);
/* A PASID from the global space [1, max_pasids - 1] of @dev, or IOMMU_PASID_INVALID. */
uint32_t iommu_alloc_global_pasid(struct device *dev);
void iommu_free_global_pasid(uint32_t pasid);

/* ---- SVA (iommu-sva.c) ----------------------------------------------------------------------- */

/*
 * A bond of a device to an address space: the attach handle at the mm's PASID, plus the number
 * of binds that returned it (iommu_sva_lock).
 */
struct iommu_sva {
	struct iommu_attach_handle handle;
	struct device *dev;
	unsigned int users;
};

/* Binds @dev to @mm (the calling process's, for the public API). ERR_PTR(-errno). */
struct iommu_sva *iommu_sva_bind_device(struct device *dev, struct uiommu_mm *mm);
void iommu_sva_unbind_device(struct iommu_sva *handle);
uint32_t iommu_sva_get_pasid(struct iommu_sva *handle);
/*
 * How an SVA domain answers one fault of @mm: IOMMU_PAGE_RESP_SUCCESS once the page is present
 * with the access asked for, IOMMU_PAGE_RESP_INVALID otherwise (no PASID, a dead mm, nothing
 * mapped there, or a permission the mapping lacks).
 */
struct iommu_fault;
int iommu_sva_resolve_fault(struct uiommu_mm *mm, const struct iommu_fault *fault);

/* ---- I/O page faults (io-pgfault.c) ---------------------------------------------------------- */

/* Values are the kernel's (include/linux/iommu.h). */
#define IOMMU_FAULT_PAGE_REQ 1u

#define IOMMU_FAULT_PERM_READ (1u << 0)
#define IOMMU_FAULT_PERM_WRITE (1u << 1)
#define IOMMU_FAULT_PERM_EXEC (1u << 2)
#define IOMMU_FAULT_PERM_PRIV (1u << 3)

#define IOMMU_FAULT_PAGE_REQUEST_PASID_VALID (1u << 0)
#define IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE (1u << 1)
#define IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID (1u << 2)

enum iommu_page_response_code {
	IOMMU_PAGE_RESP_SUCCESS = 0,
	IOMMU_PAGE_RESP_INVALID = 1,
	IOMMU_PAGE_RESP_FAILURE = 2,
};

struct iommu_fault_page_request {
	uint32_t flags;   /* IOMMU_FAULT_PAGE_REQUEST_* */
	uint32_t pasid;
	uint32_t grpid;
	uint32_t perm;    /* IOMMU_FAULT_PERM_* */
	uint64_t addr;
	uint64_t private_data[2];
};

struct iommu_fault {
	uint32_t type;    /* IOMMU_FAULT_PAGE_REQ */
	struct iommu_fault_page_request prm;
};

struct iommu_page_response {
	uint32_t pasid;
	uint32_t grpid;
	uint32_t code;    /* enum iommu_page_response_code */
};

struct iopf_fault {
	struct iommu_fault fault;
	struct iopf_fault *next;          /* partial list / group list; fault_param->lock */
};

/*
 * struct iopf_group - the faults of one page request group, from the last (LAST_PAGE) one's
 * report until its handler's owner answers it with iopf_group_response() and frees it with
 * iopf_free_group(). It holds a reference on the device's fault_param all that time.
 */
struct iopf_group {
	struct iopf_fault last_fault;
	struct iopf_fault *faults;        /* the partials, in arrival order, then &last_fault */
	unsigned int fault_count;
	/* Not answered yet: linked in fault_param's pending list. Both under fault_param->lock. */
	bool pending;
	TAILQ_ENTRY(iopf_group) pending_node;
	struct iommu_attach_handle *attach_handle;
	struct iommu_fault_param *fault_param;
	struct device *dev;
	/* For the handler's owner (iommufd: its deliver list and the response cookie). */
	TAILQ_ENTRY(iopf_group) node;
	uint32_t cookie;
	/* For work-queued handlers (SVA): run by the queue's worker thread; the queue's lock. */
	void (*work_fn)(struct iopf_group *group);
	TAILQ_ENTRY(iopf_group) work_node;
	bool on_stack;                    /* the report path's abort group: never freed */
};

TAILQ_HEAD(iopf_group_list, iopf_group);

struct iopf_queue;

struct iopf_queue *iopf_queue_alloc(const char *name);
void iopf_queue_free(struct iopf_queue *queue);
/* -ENODEV without the driver's page_response, -EBUSY if @dev already has fault data. */
int iopf_queue_add_device(struct iopf_queue *queue, struct device *dev);
/* Discards partials, answers INVALID to and frees every pending group, unpublishes. */
void iopf_queue_remove_device(struct iopf_queue *queue, struct device *dev);
/*
 * Waits until no report of @dev is in flight and for the work-queued handlers of its queue;
 * -ENODEV (a WARN) if @dev has no fault data.
 */
int iopf_queue_flush_dev(struct device *dev);
/*
 * Waits until no report of @dev is in flight (the kernel driver's drain of its page request
 * queue and IRQ thread); nothing to do without fault data. A detach calls it after the core
 * retired the old attach handle: afterwards no reporter still holds that handle.
 */
void iopf_drain_dev(struct device *dev);
int iopf_queue_discard_partial(struct iopf_queue *queue);
/* Runs @fn(group) on @group's queue worker; -EBUSY if it is already queued. */
int iopf_group_queue_work(struct iopf_group *group, void (*fn)(struct iopf_group *group));

/*
 * Called by a driver for each page request its hardware reports: 0, or -EINVAL when there is
 * no handler (the request was answered INVALID), -ENOMEM for a partial that could not be kept.
 */
int iommu_report_device_fault(struct device *dev, struct iopf_fault *evt);
/* Answers @group once (a second answer is dropped), with its last fault's PASID and grpid. */
void iopf_group_response(struct iopf_group *group, enum iommu_page_response_code status);

/**
 * typedef iopf_response_sink_fn - the device side of a page response
 *
 * Called with every answer the fault layer has a driver send (after the driver's page_response),
 * in the same context: under @dev's fault-data lock, so it may take only leaf locks of its own
 * and must not report faults or answer groups. An answer to a request the sink's owner did not
 * raise is for it to ignore.
 */
typedef void (*iopf_response_sink_fn)(struct device *dev, const struct iommu_page_response *msg);

#define IOPF_RESPONSE_SINKS_MAX 4u

/**
 * iopf_response_sink_register() - @fn hears every page response from now on
 *
 * How an emulated device that raises page requests (the machine's DMA engine) learns of their
 * answers without the core naming it, as the hardware's response message reaches the function
 * that asked. A sink stays registered for the life of the process; register it before the
 * first request whose answer it must see. Registering the same @fn again does nothing.
 *
 * Return: 0, -ENOSPC when IOPF_RESPONSE_SINKS_MAX others are registered.
 */
int iopf_response_sink_register(iopf_response_sink_fn fn);
void iopf_free_group(struct iopf_group *group);

/* For tests: the fault_param's reference count (-1: no fault data), its pending groups. */
int iopf_dev_fault_param_users(struct device *dev);
unsigned int iopf_dev_pending_groups(struct device *dev);
/* For benchmarks: the report path's lookup alone (take a reference as a reporter, drop it). */
bool iopf_dev_fault_param_probe(struct device *dev);

/* ---- sysfs attributes (the virtual sysfs serves these) -------------------------------------- */

const char *iommu_domain_type_str(unsigned int type);

/* `type`: returns the bytes written into @buf (at most @len), e.g. "DMA-FQ\n". */
ssize_t iommu_group_type_show(struct iommu_group *group, char *buf, size_t len);
/* Returns @count or -errno, as the kernel's store. @privileged: CAP_SYS_ADMIN and CAP_SYS_RAWIO. */
ssize_t iommu_group_type_store(struct iommu_group *group, const char *buf, size_t count,
			       bool privileged);
/*
 * The same, with @owned_elsewhere: a user the core cannot see (another process's copy of the
 * machine, which the caller asked) owns the group, which counts as the core's own owner: -EPERM
 * for every switch but the live DMA -> DMA-FQ, after the -EACCES and -EINVAL checks.
 */
ssize_t iommu_group_type_store_held(struct iommu_group *group, const char *buf, size_t count,
				    bool privileged, bool owned_elsewhere);
ssize_t iommu_group_reserved_regions_show(struct iommu_group *group, char *buf, size_t len);

/* ---- hooks the DMA layer provides (dma-iommu.c) --------------------------------------------- */

/* Sets up a DMA-API domain's IOVA allocator; -errno. */
int iommu_get_dma_cookie(struct iommu_domain *domain);
void iommu_put_dma_cookie(struct iommu_domain *domain);
/* Starts a flush queue on a DMA domain (the live DMA -> DMA-FQ switch); -errno. */
int iommu_dma_init_fq(struct iommu_domain *domain);
/* The device's DMA ops now follow its group's default domain. */
void iommu_setup_dma_ops(struct device *dev);

#endif
