// SPDX-License-Identifier: MIT
/*
 * Devices: the IOMMUFD_OBJ_DEVICE object (an "idev"), binding, attach, replace and detach, and
 * IOMMU_GET_HW_INFO.
 *
 * Binding a device to a context claims DMA ownership of its group through the core, with the
 * context as the owner cookie: from then on no kernel DMA-API driver may bind, and the group
 * sits on its blocking domain until the owner attaches something. The idev object is owned by
 * whoever bound it (the selftest object, or the VFIO cdev emulation later): IOMMU_DESTROY cannot
 * remove it (bind holds an extra users reference, so it answers EBUSY); unbinding does.
 *
 * Attaching names a page table by ID:
 *  - a paging HWPT: the group moves straight to its domain (iommu_group_replace_domain(), no
 *    stop on the blocking domain in between);
 *  - an IOAS: an automatic HWPT of that IOAS the driver accepts is reused (an incompatible one
 *    answers EINVAL from the driver and the search goes on), else a new one is made, attached
 *    and listed. The answer is the HWPT's ID.
 * The attachment holds a users reference on the HWPT (so it cannot be destroyed, EBUSY, and
 * neither can its IOAS). Replace is the same operation on an attached device; detach moves the
 * group back to its blocking domain. The reference on the HWPT left behind is dropped after
 * every lock is released (iommufd_hw_pagetable_put()), since an automatic HWPT dies with it.
 *
 * Today a device's group must hold only that device for attach (the mock devices are isolated);
 * groups of several devices need the kernel's igroup bookkeeping, a later layer.
 *
 * Locking: ioas->mutex (automatic attach) -> idev->lock -> the core's group->mutex.
 */
#include <errno.h>
#include <string.h>

#include "iommu/iommu.h"
#include "iommufd/iommufd_private.h"
#include "lib/fail.h"

IOMMUFD_OBJECT_AT_ZERO(struct iommufd_device, obj);

void iommufd_device_destroy(struct iommufd_object *obj)
{
	struct iommufd_device *idev = container_of(obj, struct iommufd_device, obj);

	/* The owner detaches before it unbinds. */
	WARN_ON(idev->hwpt);
	iommu_device_release_dma_owner(idev->dev);
	device_put(idev->dev);
	uiommu_mutex_destroy(&idev->lock);
}

/**
 * iommufd_device_bind() - make @dev a device of @ictx, taking DMA ownership of its group
 * Return: the published idev with *@id set, or ERR_PTR(-EPERM) (a driver or another context
 * owns the group), -EBUSY, -ENODEV, -ENOMEM.
 */
struct iommufd_device *iommufd_device_bind(struct iommufd_ctx *ictx, struct device *dev,
					   uint32_t *id)
{
	struct iommufd_device *idev;
	int rc;

	idev = iommufd_object_alloc(ictx, idev, IOMMUFD_OBJ_DEVICE);
	if (IS_ERR(idev))
		return idev;
	rc = uiommu_should_fail() ? -ENOMEM : iommu_device_claim_dma_owner(dev, ictx);
	if (rc) {
		iommufd_object_abort(ictx, &idev->obj);
		return ERR_PTR(rc);
	}
	device_get(dev);
	idev->dev = dev;
	idev->ictx = ictx;
	uiommu_mutex_init(&idev->lock);
	*id = iommufd_object_id(&idev->obj);
	/*
	 * The binder's hold: IOMMU_DESTROY of a device is EBUSY. Dropped by unbind. Taken before
	 * the object is published, or a racing IOMMU_DESTROY of the new ID could find users at
	 * one and destroy the device under the binder.
	 */
	iommufd_object_ref_users(&idev->obj);
	iommufd_object_finalize(ictx, &idev->obj);
	return idev;
}

/* Pairs with iommufd_device_bind(); the device must be detached. */
void iommufd_device_unbind(struct iommufd_device *idev)
{
	iommufd_device_remove_vdev(idev);
	WARN_ON(iommufd_object_remove(idev->ictx, &idev->obj, 0, REMOVE_WAIT));
}

/*
 * Moves @idev to @hwpt, taking an attachment reference on it. *@old gets the HWPT left (its
 * reference now the caller's to put), or NULL. Caller holds no idev lock.
 * Return: 0, -EINVAL (the driver refuses the domain, or a group of several devices), -ENOMEM.
 */
static int iommufd_device_do_replace(struct iommufd_device *idev,
				     struct iommufd_hw_pagetable *hwpt,
				     struct iommufd_hw_pagetable **old)
{
	struct iommu_group *group = idev->dev->iommu_group;
	int rc = 0;

	*old = NULL;
	uiommu_mutex_lock(&idev->lock);
	if (idev->hwpt == hwpt)
		goto out_unlock;
	if (iommu_group_device_count(group) != 1) {
		rc = -EINVAL;
		goto out_unlock;
	}
	rc = iommu_group_replace_domain(group, hwpt->domain);
	if (rc)
		goto out_unlock;
	/* Pairs with iommufd_hw_pagetable_put() at the next replace or detach. */
	iommufd_object_ref_users(&hwpt->obj);
	*old = idev->hwpt;
	idev->hwpt = hwpt;
out_unlock:
	uiommu_mutex_unlock(&idev->lock);
	return rc;
}

/* Attach to an IOAS: reuse an automatic HWPT the driver accepts, else make one. */
static int iommufd_device_auto_get_domain(struct iommufd_device *idev, struct iommufd_ioas *ioas,
					  uint32_t *pt_id, struct iommufd_hw_pagetable **old)
{
	struct iommufd_hwpt_paging *hwpt;
	int rc;

	uiommu_mutex_lock(&ioas->mutex);
	for (hwpt = ioas->auto_hwpts; hwpt; hwpt = hwpt->auto_next) {
		struct iommufd_object *obj;

		/* A short-term hold; fails for one that is being destroyed. */
		obj = iommufd_get_object(idev->ictx, iommufd_object_id(&hwpt->common.obj),
					 IOMMUFD_OBJ_HWPT_PAGING);
		if (IS_ERR(obj))
			continue;
		rc = iommufd_device_do_replace(idev, &hwpt->common, old);
		iommufd_put_object(idev->ictx, obj);
		if (rc == -EINVAL)
			continue; /* incompatible: try the next one */
		if (!rc)
			*pt_id = iommufd_object_id(&hwpt->common.obj);
		goto out_unlock;
	}

	hwpt = iommufd_hwpt_paging_alloc(idev->ictx, ioas, idev, 0, NULL);
	if (IS_ERR(hwpt)) {
		rc = PTR_ERR(hwpt);
		goto out_unlock;
	}
	hwpt->auto_domain = true;
	rc = iommufd_device_do_replace(idev, &hwpt->common, old);
	if (rc) {
		iommufd_object_abort_and_destroy(idev->ictx, &hwpt->common.obj);
		goto out_unlock;
	}
	hwpt->auto_next = ioas->auto_hwpts;
	ioas->auto_hwpts = hwpt;
	hwpt->auto_linked = true;
	*pt_id = iommufd_object_id(&hwpt->common.obj);
	iommufd_object_finalize(idev->ictx, &hwpt->common.obj);
out_unlock:
	uiommu_mutex_unlock(&ioas->mutex);
	return rc;
}

/**
 * iommufd_device_replace() - point @idev at the page table *@pt_id (a paging HWPT or an IOAS)
 * On success *@pt_id is the HWPT now attached. Works whether or not @idev was attached.
 * Return: 0, -ENOENT (no such object), -EINVAL (another type, or the driver refuses),
 * -EADDRINUSE / -EFAULT / -ENOMEM from making an automatic HWPT.
 */
int iommufd_device_replace(struct iommufd_device *idev, uint32_t *pt_id)
{
	struct iommufd_hw_pagetable *old = NULL;
	struct iommufd_object *pt;
	int rc;

	pt = iommufd_get_object(idev->ictx, *pt_id, IOMMUFD_OBJ_ANY);
	if (IS_ERR(pt))
		return PTR_ERR(pt);
	switch (pt->type) {
	case IOMMUFD_OBJ_HWPT_NESTED: {
		struct iommufd_hwpt_nested *nested =
			container_of(pt, struct iommufd_hwpt_nested, common.obj);

		/* A vIOMMU's nested HWPT takes only devices with a vDEVICE in that vIOMMU. */
		if (nested->viommu && !iommufd_viommu_has_vdev(nested->viommu, idev)) {
			rc = -ENOENT;
			break;
		}
		rc = iommufd_device_do_replace(idev, &nested->common, &old);
		break;
	}
	case IOMMUFD_OBJ_HWPT_PAGING:
		rc = iommufd_device_do_replace(
			idev, container_of(pt, struct iommufd_hw_pagetable, obj), &old);
		break;
	case IOMMUFD_OBJ_IOAS:
		rc = iommufd_device_auto_get_domain(idev, container_of(pt, struct iommufd_ioas, obj),
						    pt_id, &old);
		break;
	default:
		rc = -EINVAL;
		break;
	}
	iommufd_put_object(idev->ictx, pt);
	if (old)
		iommufd_hw_pagetable_put(idev->ictx, old);
	return rc;
}

/* The first attach; the same as a replace (the kernel's EBUSY for an attached device aside). */
int iommufd_device_attach(struct iommufd_device *idev, uint32_t *pt_id)
{
	return iommufd_device_replace(idev, pt_id);
}

/* Back to the blocking domain; drops the attachment's reference. Never fails. */
void iommufd_device_detach(struct iommufd_device *idev)
{
	struct iommufd_hw_pagetable *old;

	uiommu_mutex_lock(&idev->lock);
	old = idev->hwpt;
	if (old)
		iommu_detach_group(old->domain, idev->dev->iommu_group);
	idev->hwpt = NULL;
	uiommu_mutex_unlock(&idev->lock);
	if (old)
		iommufd_hw_pagetable_put(idev->ictx, old);
}

/* ---- IOMMU_GET_HW_INFO --------------------------------------------------------------------- */

int iommufd_get_hw_info(struct iommufd_ucmd *ucmd)
{
	struct iommu_hw_info *cmd = ucmd->cmd;
	const struct iommu_ops *ops;
	struct iommufd_device *idev;
	uint32_t type = IOMMU_HW_INFO_TYPE_DEFAULT, len = 0;
	void *data = NULL;
	int rc = 0;

	if (cmd->flags & ~IOMMU_HW_INFO_FLAG_INPUT_TYPE)
		return -EOPNOTSUPP;
	if (cmd->__reserved[0] || cmd->__reserved[1] || cmd->__reserved[2])
		return -EOPNOTSUPP;
	idev = iommufd_get_device(ucmd->ictx, cmd->dev_id);
	if (IS_ERR(idev))
		return PTR_ERR(idev);
	if (cmd->flags & IOMMU_HW_INFO_FLAG_INPUT_TYPE)
		type = cmd->in_data_type;

	ops = iommu_device_ops(idev->dev);
	if (ops && ops->hw_info) {
		data = uiommu_should_fail() ? ERR_PTR(-ENOMEM) : ops->hw_info(idev->dev, &len, &type);
		if (IS_ERR(data)) {
			rc = PTR_ERR(data);
			data = NULL;
			goto out_put;
		}
	} else if (type != IOMMU_HW_INFO_TYPE_DEFAULT) {
		rc = -EOPNOTSUPP;
		goto out_put;
	} else {
		type = IOMMU_HW_INFO_TYPE_NONE;
	}

	if (cmd->data_len) {
		uint32_t n = cmd->data_len < len ? cmd->data_len : len;

		if (n) {
			rc = uiommu_copy_to_user(ucmd->mm, cmd->data_uptr, data, n);
			if (rc)
				goto out_put;
		}
		/* A larger buffer gets zeros after the data. */
		while (n < cmd->data_len) {
			static const unsigned char zeros[64];
			uint32_t chunk = cmd->data_len - n < sizeof(zeros) ? cmd->data_len - n :
									    sizeof(zeros);

			rc = uiommu_copy_to_user(ucmd->mm, cmd->data_uptr + n, zeros, chunk);
			if (rc)
				goto out_put;
			n += chunk;
		}
	}
	cmd->data_len = len;
	cmd->out_data_type = type;
	cmd->out_capabilities = 0;
	if (iommu_device_capable(idev->dev, IOMMU_CAP_DIRTY_TRACKING))
		cmd->out_capabilities |= IOMMU_HW_CAP_DIRTY_TRACKING;
	cmd->out_max_pasid_log2 = 0;
	if (idev->dev->iommu_data && idev->dev->iommu_data->max_pasids)
		cmd->out_max_pasid_log2 =
			(uint8_t)(31 - __builtin_clz(idev->dev->iommu_data->max_pasids));
	rc = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
out_put:
	uiommu_free(data);
	iommufd_put_object(ucmd->ictx, &idev->obj);
	return rc;
}
