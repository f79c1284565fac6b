/* SPDX-License-Identifier: MIT */
/*
 * What an IOMMU driver implements for iommufd's virtualisation objects, and the few services
 * iommufd lends it back: the counterpart of the kernel's include/linux/iommufd.h (its driver
 * half). A driver includes this and iommu/iommu.h, never an iommufd header.
 *
 * The data model. iommufd owns the objects a user sees (IOMMUFD_OBJ_VIOMMU, _VDEVICE,
 * _HW_QUEUE: IDs, users references, the destroy graph); the driver owns, for each, a struct of
 * its own that embeds the driver-visible part declared here (struct iommu_viommu,
 * iommu_vdevice, iommu_hw_queue), allocated by the driver's alloc op and freed by its destroy
 * op. iommufd's object points at the driver's struct; the driver's struct points back only
 * through @core, an opaque cookie that the services below take. So:
 *   - a vIOMMU:  iommu_ops.viommu_alloc(dev, type), then iommufd fills in @iommu_dev,
 *                @parent, @type, @services and @core, then iommu_ops.viommu_init(viommu,
 *                parent, data); iommufd calls @ops->destroy exactly once (after a failed init
 *                too);
 *   - a vDEVICE: @ops->vdevice_alloc(viommu, dev, virt_id) after iommufd's own checks (EEXIST
 *                and ENOENT are the core's), @ops->vdevice_destroy(vdev) before iommufd lets go
 *                of the device: while a driver's vDEVICE exists, its @dev is alive. Both are
 *                optional: without them a vDEVICE has no driver part (NULL);
 *   - a HW queue: @ops->hw_queue_alloc(viommu, type) before iommufd looks at the memory (a type
 *                the vIOMMU lacks: ERR_PTR(-EOPNOTSUPP)), @ops->hw_queue_init_phys(q, index,
 *                base_pa) once the guest range is locked and its host address known, and
 *                @ops->hw_queue_destroy(q) (after a failed init too).
 * Nested domains of a vIOMMU come from @ops->alloc_domain_nested; its invalidation array
 * (IOMMU_HWPT_INVALIDATE with a vIOMMU ID) goes to @ops->cache_invalidate, which walks it with
 * iommu_user_array_for_each() (iommu/iommu.h), as a nested domain's cache_invalidate_user does.
 *
 * Invariants. The driver's struct outlives every use iommufd makes of it; iommufd calls no op
 * of a vIOMMU after its destroy and destroys a vIOMMU only after its vDEVICEs, HW queues and
 * nested domains. iommufd calls the ops without its own locks held, except vdevice_alloc and
 * vdevice_destroy, which run under the vIOMMU's vDEVICE lock (so a driver's lookup table of
 * vDEVICEs is always in step with iommufd's): a driver lock taken there comes after it.
 *
 * The services (struct iommufd_viommu_services, installed by iommufd in @viommu->services) are
 * how a lower layer reaches the one above without naming it (docs/design.md): report a
 * vEVENT, lend an mmap region to the user, and make one HW queue hold another.
 */
#ifndef UIOMMU_IOMMU_IOMMUFD_DRIVER_H
#define UIOMMU_IOMMU_IOMMUFD_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#include "iommu/iommu.h"

struct iommu_viommu;
struct iommu_vdevice;
struct iommu_hw_queue;

/**
 * struct iommu_viommu_ops - what a driver does with one of its vIOMMUs (@viommu->ops)
 * @destroy: undo init (whatever part of it succeeded) and free the driver's struct. Never fails.
 * @alloc_domain_nested: optional; a nested domain on this vIOMMU (over its parent), from the
 *                       user's @user_data; @flags as iommu_ops.domain_alloc_nested. Without
 *                       it, iommufd answers EOPNOTSUPP.
 * @cache_invalidate: optional; the user's invalidation array for this vIOMMU (TLBs, device
 *                    caches): check @array->type, then iommu_user_array_for_each(). Without
 *                    it, iommufd answers EOPNOTSUPP.
 * @vdevice_alloc: optional; the driver's vDEVICE for @dev (a device behind the vIOMMU's
 *                 instance) with virtual ID @virt_id (vSID, vRID...), or an ERR_PTR (the
 *                 kernel's vdevice_init errors: EOPNOTSUPP, EINVAL, ENOSPC). Under the
 *                 vIOMMU's vDEVICE lock, once iommufd's checks passed.
 * @vdevice_destroy: with @vdevice_alloc; free it. Under the same lock.
 * @hw_queue_alloc: optional; a HW queue of uAPI type @type (IOMMU_HW_QUEUE_TYPE_*), not yet
 *                  initialised; ERR_PTR(-EOPNOTSUPP) for a type this vIOMMU lacks. Without the
 *                  op every HW_QUEUE_ALLOC answers EOPNOTSUPP.
 * @hw_queue_init_phys: with @hw_queue_alloc; program queue @index whose guest memory
 *                      [@q->base_addr, + @q->length) sits at host address @base_pa (contiguous,
 *                      locked in the parent IOAS for the queue's life). The driver's index
 *                      rules are its errnos (EINVAL, EEXIST, EIO, ...).
 * @hw_queue_destroy: with @hw_queue_alloc; undo init if it succeeded, and free.
 */
struct iommu_viommu_ops {
	void (*destroy)(struct iommu_viommu *viommu);
	struct iommu_domain *(*alloc_domain_nested)(struct iommu_viommu *viommu, uint32_t flags,
						    const struct iommu_user_data *user_data);
	int (*cache_invalidate)(struct iommu_viommu *viommu, struct iommu_user_data_array *array);
	struct iommu_vdevice *(*vdevice_alloc)(struct iommu_viommu *viommu, struct device *dev,
					       uint64_t virt_id);
	void (*vdevice_destroy)(struct iommu_vdevice *vdev);
	struct iommu_hw_queue *(*hw_queue_alloc)(struct iommu_viommu *viommu, uint32_t type);
	int (*hw_queue_init_phys)(struct iommu_hw_queue *hw_queue, uint32_t index,
				  phys_addr_t base_pa);
	void (*hw_queue_destroy)(struct iommu_hw_queue *hw_queue);
};

/**
 * struct iommufd_viommu_services - iommufd's help to a vIOMMU's driver (@viommu->services)
 * @report_event: queue one vEVENT of uAPI type @type (IOMMU_VEVENTQ_TYPE_*), @len bytes, on
 *                the vIOMMU's vEVENTQ of that type: 0, -ENOENT when there is none (the event
 *                is dropped), -ENOMEM. It takes the vIOMMU's vDEVICE lock, so never call it
 *                from vdevice_alloc/vdevice_destroy nor under a driver lock they take (look
 *                the vSID up under that lock, drop it, then report).
 * @alloc_mmap: a zeroed shared region of @len bytes (page multiple) the user may mmap() at
 *              *@offset through the iommufd fd, mapped for the driver at *@map; freed with the
 *              vIOMMU. At most one per vIOMMU (-EEXIST). -ENOMEM, -errno of the memfd.
 * @hw_queue_depend: @dependent holds @depended (a users reference) until undepend: the user
 *                   must destroy @dependent first (EBUSY otherwise). Same vIOMMU.
 * @hw_queue_undepend: the reverse, from the driver's hw_queue_destroy.
 */
struct iommufd_viommu_services {
	int (*report_event)(struct iommu_viommu *viommu, uint32_t type, const void *event,
			    size_t len);
	int (*alloc_mmap)(struct iommu_viommu *viommu, size_t len, void **map, uint64_t *offset);
	void (*hw_queue_depend)(struct iommu_hw_queue *dependent, struct iommu_hw_queue *depended);
	void (*hw_queue_undepend)(struct iommu_hw_queue *dependent,
				  struct iommu_hw_queue *depended);
};

/*
 * struct iommu_viommu - the driver-visible part of a vIOMMU; a driver embeds it in its own
 * struct and gets back with container_of(). @ops is the driver's (set in viommu_alloc); the
 * rest is set by iommufd before viommu_init and is constant afterwards.
 */
struct iommu_viommu {
	const struct iommu_viommu_ops *ops;
	struct iommu_device *iommu_dev;    /* the physical instance */
	struct iommu_domain *parent;       /* the nesting parent's domain; iommufd holds it */
	uint32_t type;                     /* IOMMU_VIOMMU_TYPE_* */
	const struct iommufd_viommu_services *services;
	void *core;                        /* iommufd's object; for the services only */
};

/* The driver-visible part of a vDEVICE; all constant. */
struct iommu_vdevice {
	struct iommu_viommu *viommu;
	struct device *dev;                /* alive while the vDEVICE exists */
	uint64_t virt_id;
};

/*
 * The driver-visible part of a HW queue. @viommu, @type by the driver's alloc; @base_addr,
 * @length (the guest's range, IOVA of the parent) and @core by iommufd before init.
 */
struct iommu_hw_queue {
	struct iommu_viommu *viommu;
	uint32_t type;
	uint64_t base_addr;
	uint64_t length;
	void *core;
};

static inline int iommufd_viommu_report_event(struct iommu_viommu *viommu, uint32_t type,
					      const void *event, size_t len)
{
	return viommu->services->report_event(viommu, type, event, len);
}

static inline int iommufd_viommu_alloc_mmap(struct iommu_viommu *viommu, size_t len, void **map,
					    uint64_t *offset)
{
	return viommu->services->alloc_mmap(viommu, len, map, offset);
}

static inline void iommufd_hw_queue_depend(struct iommu_hw_queue *dependent,
					   struct iommu_hw_queue *depended)
{
	dependent->viommu->services->hw_queue_depend(dependent, depended);
}

static inline void iommufd_hw_queue_undepend(struct iommu_hw_queue *dependent,
					     struct iommu_hw_queue *depended)
{
	dependent->viommu->services->hw_queue_undepend(dependent, depended);
}

#endif
