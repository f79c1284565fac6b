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

	/* The owner detaches the RID before it unbinds; PASIDs left over go here. */
	WARN_ON(idev->hwpt);
	while (idev->pasids)
		iommufd_device_pasid_detach(idev, idev->pasids->pasid);
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

/* ---- attach, replace, detach (RID and PASID) -------------------------------------------------- */

/* idev->lock held. The HWPT at @pasid (IOMMU_NO_PASID: the RID), or NULL. */
static struct iommufd_pasid_attach **iommufd_device_pasid_slot(struct iommufd_device *idev,
								uint32_t pasid)
{
	struct iommufd_pasid_attach **pos;

	lockdep_assert_held(&idev->lock);
	for (pos = &idev->pasids; *pos; pos = &(*pos)->next)
		if ((*pos)->pasid == pasid)
			break;
	return pos;
}

static struct iommufd_hw_pagetable *iommufd_device_pt_at(struct iommufd_device *idev,
							  uint32_t pasid)
{
	struct iommufd_pasid_attach *pa;

	if (pasid == IOMMU_NO_PASID)
		return idev->hwpt;
	pa = *iommufd_device_pasid_slot(idev, pasid);
	return pa ? pa->hwpt : NULL;
}

bool iommufd_device_pasid_attached(struct iommufd_device *idev, uint32_t pasid)
{
	bool attached;

	uiommu_mutex_lock(&idev->lock);
	attached = iommufd_device_pt_at(idev, pasid) != NULL;
	uiommu_mutex_unlock(&idev->lock);
	return attached;
}

/*
 * The kernel's PASID compatibility: a PASID takes only a HWPT made with IOMMU_HWPT_ALLOC_PASID,
 * and while any PASID is attached the RID must stay on such a HWPT too (a domain format that
 * cannot live beside PASID tables could not be set at the RID then). idev->lock held.
 */
static int iommufd_hwpt_pasid_compat(struct iommufd_hw_pagetable *hwpt,
				     struct iommufd_device *idev, uint32_t pasid)
{
	lockdep_assert_held(&idev->lock);
	if (pasid == IOMMU_NO_PASID)
		return !hwpt->pasid_compat && idev->pasids ? -EINVAL : 0;
	if (!hwpt->pasid_compat)
		return -EINVAL;
	if (idev->hwpt && !idev->hwpt->pasid_compat)
		return -EINVAL;
	return 0;
}

/* The handle the core publishes at (@idev's group, @pasid) now; idev->lock held. */
static struct iommufd_attach_handle *iommufd_device_get_attach_handle(struct iommufd_device *idev,
								       uint32_t pasid)
{
	struct iommu_attach_handle *handle;

	lockdep_assert_held(&idev->lock);
	handle = iommu_attach_handle_get(idev->dev->iommu_group, pasid, 0);
	return IS_ERR(handle) ? NULL : to_iommufd_handle(handle);
}

/*
 * The old attachment's handle is gone from the core's table: answer its pending faults, then
 * free it. Only fault-capable HWPTs can have faults routed through a handle, but a reporter
 * may have looked up any handle (to learn that its domain takes no faults) just before the
 * core unpublished it: the drain waits for such reporters before the free, with or without
 * faults (iommufd_auto_response_faults() drains first itself).
 */
static void iommufd_attach_handle_retire(struct iommufd_hw_pagetable *old,
					 struct iommufd_attach_handle *handle)
{
	if (!handle)
		return;
	if (old->fault)
		iommufd_auto_response_faults(old, handle);
	else
		iopf_drain_dev(handle->idev->dev);
	uiommu_free(handle);
}

/*
 * Points @pasid of @idev at @hwpt with a new handle. @replace: the PASID must be attached (it
 * moves without a stop on the blocked domain), else it must not be (-EBUSY). Takes a users
 * reference on @hwpt for the attachment; *@old gets the HWPT left (its reference now the
 * caller's to put), or NULL. Caller holds no idev lock.
 * Return: 0, -EBUSY (attach of an attached PASID), -EINVAL (replace of a detached one, PASID
 * incompatibility, the driver refuses, a group of several devices), -EOPNOTSUPP, -ENOMEM.
 */
static int iommufd_device_do_replace(struct iommufd_device *idev, uint32_t pasid,
				     struct iommufd_hw_pagetable *hwpt, bool replace,
				     struct iommufd_hw_pagetable **old)
{
	struct iommu_group *group = idev->dev->iommu_group;
	struct iommufd_attach_handle *handle, *old_handle = NULL;
	struct iommufd_pasid_attach *pa = NULL;
	struct iommufd_hw_pagetable *cur;
	int rc;

	*old = NULL;
	uiommu_mutex_lock(&idev->lock);
	cur = iommufd_device_pt_at(idev, pasid);
	if (!replace && cur) {
		rc = -EBUSY;
		goto out_unlock;
	}
	if (replace && !cur) {
		rc = -EINVAL;
		goto out_unlock;
	}
	if (cur == hwpt) {
		rc = 0;
		goto out_unlock;
	}
	if (iommu_group_device_count(group) != 1) {
		rc = -EINVAL;
		goto out_unlock;
	}
	rc = iommufd_hwpt_pasid_compat(hwpt, idev, pasid);
	if (rc)
		goto out_unlock;
	handle = uiommu_zalloc(sizeof(*handle));
	if (!handle) {
		rc = -ENOMEM;
		goto out_unlock;
	}
	handle->idev = idev;
	if (pasid != IOMMU_NO_PASID && !cur) {
		pa = uiommu_zalloc(sizeof(*pa));
		if (!pa) {
			rc = -ENOMEM;
			goto err_free_handle;
		}
	}
	if (cur)
		old_handle = iommufd_device_get_attach_handle(idev, pasid);

	if (pasid == IOMMU_NO_PASID)
		rc = cur ? iommu_replace_group_handle(group, hwpt->domain, &handle->handle) :
			   iommu_attach_group_handle(hwpt->domain, group, &handle->handle);
	else
		rc = cur ? iommu_replace_device_pasid(hwpt->domain, idev->dev, pasid,
						      &handle->handle) :
			   iommu_attach_device_pasid(hwpt->domain, idev->dev, pasid,
						     &handle->handle);
	if (rc)
		goto err_free_pa;

	/* Pairs with iommufd_hw_pagetable_put() at the next replace or detach. */
	iommufd_object_ref_users(&hwpt->obj);
	if (pasid == IOMMU_NO_PASID) {
		idev->hwpt = hwpt;
	} else if (pa) {
		pa->pasid = pasid;
		pa->hwpt = hwpt;
		pa->next = idev->pasids;
		idev->pasids = pa;
	} else {
		(*iommufd_device_pasid_slot(idev, pasid))->hwpt = hwpt;
	}
	*old = cur;
	if (cur)
		iommufd_attach_handle_retire(cur, old_handle);
	uiommu_mutex_unlock(&idev->lock);
	return 0;

err_free_pa:
	uiommu_free(pa);
err_free_handle:
	uiommu_free(handle);
out_unlock:
	uiommu_mutex_unlock(&idev->lock);
	return rc;
}

/* Attach to an IOAS: reuse an automatic HWPT the driver accepts, else make one. */
static int iommufd_device_auto_get_domain(struct iommufd_device *idev, uint32_t pasid,
					  struct iommufd_ioas *ioas, bool replace, uint32_t *pt_id,
					  struct iommufd_hw_pagetable **old)
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
		rc = iommufd_device_do_replace(idev, pasid, &hwpt->common, replace, old);
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
	rc = iommufd_device_do_replace(idev, pasid, &hwpt->common, replace, old);
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

/* Attach (@replace false) or replace at @pasid, to the page table *@pt_id. */
static int iommufd_device_change_pt(struct iommufd_device *idev, uint32_t pasid, uint32_t *pt_id,
				    bool replace)
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
		rc = iommufd_device_do_replace(idev, pasid, &nested->common, replace, &old);
		break;
	}
	case IOMMUFD_OBJ_HWPT_PAGING:
		rc = iommufd_device_do_replace(
			idev, pasid, container_of(pt, struct iommufd_hw_pagetable, obj), replace,
			&old);
		break;
	case IOMMUFD_OBJ_IOAS:
		rc = iommufd_device_auto_get_domain(idev, pasid,
						    container_of(pt, struct iommufd_ioas, obj),
						    replace, pt_id, &old);
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

/**
 * iommufd_device_pasid_attach() - attach @pasid of @idev (IOMMU_NO_PASID: its RID) to the page
 * table *@pt_id (a paging or nested HWPT, or an IOAS: an automatic HWPT); on success *@pt_id is
 * the HWPT attached.
 * Return: 0, -EBUSY (already attached there), -ENOENT (no such object), -EINVAL (another
 * type, PASID rules, the driver refuses), -EOPNOTSUPP, -EADDRINUSE / -EFAULT / -ENOMEM.
 */
int iommufd_device_pasid_attach(struct iommufd_device *idev, uint32_t pasid, uint32_t *pt_id)
{
	return iommufd_device_change_pt(idev, pasid, pt_id, false);
}

/**
 * iommufd_device_pasid_replace() - move an attached @pasid of @idev (IOMMU_NO_PASID: its RID)
 * to *@pt_id without a stop on the blocked domain; the same HWPT again is a no-op.
 * Return: as iommufd_device_pasid_attach(), and -EINVAL when @pasid is not attached. On error
 * the old HWPT stays attached.
 */
int iommufd_device_pasid_replace(struct iommufd_device *idev, uint32_t pasid, uint32_t *pt_id)
{
	return iommufd_device_change_pt(idev, pasid, pt_id, true);
}

/* The RID forms. */
int iommufd_device_attach(struct iommufd_device *idev, uint32_t *pt_id)
{
	return iommufd_device_pasid_attach(idev, IOMMU_NO_PASID, pt_id);
}

int iommufd_device_replace(struct iommufd_device *idev, uint32_t *pt_id)
{
	return iommufd_device_pasid_replace(idev, IOMMU_NO_PASID, pt_id);
}

/**
 * iommufd_device_pasid_detach() - @pasid of @idev (IOMMU_NO_PASID: the RID) goes back to the
 * blocked domain and its attachment's reference is dropped. Never fails; nothing attached there
 * is no error.
 */
void iommufd_device_pasid_detach(struct iommufd_device *idev, uint32_t pasid)
{
	struct iommufd_attach_handle *handle;
	struct iommufd_pasid_attach *pa = NULL;
	struct iommufd_hw_pagetable *old;

	uiommu_mutex_lock(&idev->lock);
	old = iommufd_device_pt_at(idev, pasid);
	if (!old) {
		uiommu_mutex_unlock(&idev->lock);
		return;
	}
	handle = iommufd_device_get_attach_handle(idev, pasid);
	if (pasid == IOMMU_NO_PASID) {
		iommu_detach_group_handle(old->domain, idev->dev->iommu_group);
		idev->hwpt = NULL;
	} else {
		struct iommufd_pasid_attach **pos = iommufd_device_pasid_slot(idev, pasid);

		iommu_detach_device_pasid(old->domain, idev->dev, pasid);
		pa = *pos;
		*pos = pa->next;
	}
	iommufd_attach_handle_retire(old, handle);
	uiommu_mutex_unlock(&idev->lock);
	uiommu_free(pa);
	iommufd_hw_pagetable_put(idev->ictx, old);
}

void iommufd_device_detach(struct iommufd_device *idev)
{
	iommufd_device_pasid_detach(idev, IOMMU_NO_PASID);
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
