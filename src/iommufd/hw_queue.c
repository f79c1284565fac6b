// SPDX-License-Identifier: MIT
/*
 * HW queues: IOMMU_HW_QUEUE_ALLOC.
 *
 * A HW queue (IOMMUFD_OBJ_HW_QUEUE) is a queue an IOMMU reads directly from guest memory (a
 * virtual command queue, say): the guest hands its vIOMMU a range of its physical address
 * space, which is IOVA of the vIOMMU's parent (stage-2) IOAS, and the hardware is programmed
 * with the host address behind it. Two things follow, and they are the core's side:
 *   - the range must be mapped in the parent IOAS (ENOENT otherwise), and stays mapped as it
 *     is while the queue lives: the core locks it (iopt_lock_iova(), the areas' num_locks),
 *     so an IOAS UNMAP of it answers EBUSY and it cannot be split. The pages are pinned by
 *     the parent domain already, which the vIOMMU keeps attached through its parent HWPT;
 *   - the host address is found by a walk of the parent domain (iommu_iova_to_phys()), and
 *     the range must be contiguous behind it, as a queue is one run of memory (EFAULT).
 * The queue holds its vIOMMU with a users reference, so the vIOMMU is EBUSY while it has one.
 *
 * The driver side goes through the vIOMMU's ops (iommu/iommufd_driver.h): hw_queue_alloc
 * judges the type first (EOPNOTSUPP), hw_queue_init_phys programs the queue once the range is
 * locked and translated (its index rules are the driver's errnos), hw_queue_destroy undoes it.
 * A driver whose queues depend on each other (the selftest mock: queue n needs n - 1) makes
 * one hold the other with iommufd_hw_queue_depend(), a users reference on the object, so the
 * user must destroy them in reverse order (EBUSY otherwise). The checks come in the kernel's
 * order: the command's fields, the vIOMMU and type, the IOVA range, then the driver's init.
 *
 * Nothing of a queue changes after its publication; the driver's init is the last step that
 * can fail, so a queue another depends on is always published.
 */
#include <errno.h>

#include "iommu/iommu.h"
#include "iommu/iommufd_driver.h"
#include "iommufd/iommufd_private.h"
#include "iommufd/viommu.h"
#include "lib/fail.h"

struct iommufd_hw_queue {
	struct iommufd_object obj;
	struct iommufd_viommu *viommu; /* a users reference; constant */
	struct iommu_hw_queue *drv;    /* the driver's part; owned; constant */
	uint64_t iova;                 /* locked in the parent IOAS; constant */
	uint64_t length;
	bool locked;                   /* the IOVA range is locked (until the destroy) */
};

IOMMUFD_OBJECT_AT_ZERO(struct iommufd_hw_queue, obj);

static struct io_pagetable *iommufd_hw_queue_iopt(struct iommufd_viommu *viommu)
{
	return &iommufd_viommu_parent(viommu)->ioas->iopt;
}

void iommufd_hw_queue_depend_obj(struct iommu_hw_queue *dependent,
				 struct iommu_hw_queue *depended)
{
	struct iommufd_hw_queue *dep = depended->core;

	WARN_ON(dependent->viommu != depended->viommu);
	/* Pairs with iommufd_hw_queue_undepend_obj(), from the dependent's destroy. */
	iommufd_object_ref_users(&dep->obj);
}

void iommufd_hw_queue_undepend_obj(struct iommu_hw_queue *dependent,
				   struct iommu_hw_queue *depended)
{
	struct iommufd_hw_queue *dep = depended->core;

	(void)dependent;
	iommufd_object_unref_users(&dep->obj);
}

void iommufd_hw_queue_destroy(struct iommufd_object *obj)
{
	struct iommufd_hw_queue *hw_queue = container_of(obj, struct iommufd_hw_queue, obj);
	struct iommufd_viommu *viommu = hw_queue->viommu;

	viommu->drv->ops->hw_queue_destroy(hw_queue->drv);
	if (hw_queue->locked)
		iopt_unlock_iova(iommufd_hw_queue_iopt(viommu), hw_queue->iova, hw_queue->length);
	/* Pairs with the reference taken in iommufd_hw_queue_alloc_ioctl(). */
	iommufd_object_unref_users(&viommu->obj);
}

/* The host address behind [iova, iova + length) of @domain, which must be one run (EFAULT). */
static int iommufd_hw_queue_translate(struct iommu_domain *domain, uint64_t iova,
				      uint64_t length, uint64_t *base_pa)
{
	uint64_t base = iommu_iova_to_phys(domain, iova), off;

	if (!base || uiommu_should_fail())
		return -EFAULT;
	/* Each following page must continue the first. */
	for (off = uiommu_page_size - (iova & (uiommu_page_size - 1)); off < length;
	     off += uiommu_page_size)
		if (iommu_iova_to_phys(domain, iova + off) != base + off)
			return -EFAULT;
	*base_pa = base;
	return 0;
}

int iommufd_hw_queue_alloc_ioctl(struct iommufd_ucmd *ucmd)
{
	struct iommu_hw_queue_alloc *cmd = ucmd->cmd;
	struct iommufd_hw_queue *hw_queue;
	const struct iommu_viommu_ops *ops;
	struct iommufd_viommu *viommu;
	struct iommufd_object *obj;
	struct iommu_hw_queue *drv;
	uint64_t last, base_pa;
	int rc;

	if (cmd->flags || cmd->type == IOMMU_HW_QUEUE_TYPE_DEFAULT)
		return -EOPNOTSUPP;
	if (!cmd->length)
		return -EINVAL;
	if (check_add_overflow(cmd->nesting_parent_iova, cmd->length - 1, &last))
		return -EOVERFLOW;
	obj = iommufd_get_object(ucmd->ictx, cmd->viommu_id, IOMMUFD_OBJ_VIOMMU);
	if (IS_ERR(obj))
		return PTR_ERR(obj);
	viommu = container_of(obj, struct iommufd_viommu, obj);
	ops = viommu->drv->ops;
	if (!ops->hw_queue_alloc || !ops->hw_queue_init_phys || !ops->hw_queue_destroy) {
		rc = -EOPNOTSUPP;
		goto out_put_viommu;
	}
	drv = uiommu_should_fail() ? ERR_PTR(-ENOMEM) : ops->hw_queue_alloc(viommu->drv, cmd->type);
	if (IS_ERR(drv)) {
		rc = PTR_ERR(drv);
		goto out_put_viommu;
	}

	hw_queue = iommufd_object_alloc(ucmd->ictx, hw_queue, IOMMUFD_OBJ_HW_QUEUE);
	if (IS_ERR(hw_queue)) {
		ops->hw_queue_destroy(drv);
		rc = PTR_ERR(hw_queue);
		goto out_put_viommu;
	}
	hw_queue->viommu = viommu;
	hw_queue->drv = drv;
	hw_queue->iova = cmd->nesting_parent_iova;
	hw_queue->length = cmd->length;
	drv->base_addr = cmd->nesting_parent_iova;
	drv->length = cmd->length;
	drv->core = hw_queue;
	/* Pairs with the put in iommufd_hw_queue_destroy(), which owns drv from here on. */
	iommufd_object_ref_users(&viommu->obj);
	rc = uiommu_should_fail() ?
		     -ENOMEM :
		     iopt_lock_iova(iommufd_hw_queue_iopt(viommu), hw_queue->iova, hw_queue->length);
	if (rc)
		goto err_abort;
	hw_queue->locked = true;
	rc = iommufd_hw_queue_translate(iommufd_viommu_parent(viommu)->common.domain,
					hw_queue->iova, hw_queue->length, &base_pa);
	if (rc)
		goto err_abort;
	cmd->out_hw_queue_id = iommufd_object_id(&hw_queue->obj);
	rc = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
	if (rc)
		goto err_abort;
	/* Last: once the driver took the queue on, nothing may fail (see the essay). */
	rc = ops->hw_queue_init_phys(drv, cmd->index, base_pa);
	if (rc)
		goto err_abort;
	iommufd_object_finalize(ucmd->ictx, &hw_queue->obj);
	goto out_put_viommu;

err_abort:
	iommufd_object_abort_and_destroy(ucmd->ictx, &hw_queue->obj);
out_put_viommu:
	iommufd_put_object(ucmd->ictx, &viommu->obj);
	return rc;
}
