// SPDX-License-Identifier: MIT
/*
 * Devices: the IOMMUFD_OBJ_DEVICE object (an "idev"), its group's state in the context (an
 * "igroup"), binding, attach, replace and detach, and IOMMU_GET_HW_INFO.
 *
 * Binding a device to a context claims DMA ownership of its group through the core, with the
 * context as the owner cookie: from then on no kernel DMA-API driver may bind, and the group
 * sits on its blocking domain until the owner attaches something. Devices of one group bound to
 * one context share the claim; another context is another owner (the core answers EPERM). The
 * idev object is owned by whoever bound it (the selftest object, or the VFIO cdev emulation):
 * IOMMU_DESTROY cannot remove it (bind holds an extra users reference, so it answers EBUSY);
 * unbinding does.
 *
 * The igroup. The core's group has one domain at its RID and one per PASID, whatever its
 * devices want, so attachments belong to the group: bind looks up, or makes, the igroup of
 * (context, iommu_group), shared by the idevs of that group bound to that context and freed
 * with the last of them (a table of this file under iommufd_groups_lock, a leaf). The igroup
 * keeps, per PASID (IOMMU_NO_PASID: the RID), an iommufd_attach: the HWPT, the handle
 * published in the core, and the devices that asked for it. As in the kernel:
 *  - attach: the first device of the group moves the whole group to the HWPT through the
 *    core's handle API; a later device of the group naming the same HWPT only joins; another
 *    HWPT while one is attached answers EINVAL; a device already a member answers EBUSY;
 *  - replace: only a member may replace (EINVAL otherwise, and when nothing is attached); it
 *    moves the whole group, every member with it (their users references move to the new
 *    HWPT), without a stop on the blocking domain; the same HWPT again is a no-op;
 *  - detach: the device leaves; the last member's detach returns the group (at that PASID) to
 *    its blocking domain;
 *  - the PASID rules are checked when the group's hardware state changes (first attach,
 *    replace): a PASID takes only a HWPT made with IOMMU_HWPT_ALLOC_PASID, and while any PASID
 *    of the group is attached the RID must stay on such a HWPT too.
 * Every member holds a users reference on the HWPT (so it cannot be destroyed, EBUSY, and
 * neither can its IOAS). The reference left behind by a detach or replace is dropped after
 * every lock is released (iommufd_hw_pagetable_put()), since an automatic HWPT dies with it.
 *
 * Attaching names a page table by ID: a paging or nested HWPT directly; an IOAS through its
 * automatic HWPTs: one the group can join or the driver accepts is reused (an incompatible one,
 * or one the group is not on, answers EINVAL and the search goes on), else a new one is made,
 * attached and listed. The answer is the HWPT's ID.
 *
 * Handles. Each attach and replace that changes the group's hardware state publishes a new
 * iommufd_attach_handle in the core, naming the device that asked, so that fault routing can
 * tell groups reported before a replace from those after it; the old handle's pending faults
 * are answered (iommufd_auto_response_faults()) and it is freed. Unlike the kernel, whose
 * handle keeps naming the first device even after that device detached (and was perhaps
 * unbound), every member owns a handle of its own, allocated when it joins: when the device the
 * published handle names leaves while others stay, another member's handle is published in its
 * place (a replace by the same domain, which cannot fail) and the leaving device's handle is
 * retired as above. The spare makes that detach infallible.
 *
 * Reserved regions, as the kernel: a device attaching its RID to a paging HWPT (or a nested
 * one, through its parent) adds its reserved regions (the MSI window, firmware's) to that
 * HWPT's IOAS, owned by the device (iopt_table_enforce_dev_resv_regions()): every member, not
 * only the first, since each has regions of its own. An area already there answers EADDRINUSE
 * and the attach fails. The member's detach removes its regions; a replace onto another IOAS
 * adds every member's regions there first (all or nothing) and removes them from the old IOAS
 * once the group moved. PASID attachments add nothing.
 *
 * Locking: ioas->mutex (automatic attach) -> igroup->lock -> idev->lock (the device's copy of
 * its RID attachment) -> the core's group->mutex; igroup->lock -> an IOAS's iova_rwsem (the
 * reserved regions, taken and dropped before the core is called). iommufd_groups_lock is a
 * leaf.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "iommu/iommu.h"
#include "iommufd/iommufd_private.h"
#include "lib/fail.h"

IOMMUFD_OBJECT_AT_ZERO(struct iommufd_device, obj);

/* ---- the igroup ----------------------------------------------------------------------------- */

/* Protects iommufd_groups and every igroup's refs; a leaf. */
UIOMMU_MUTEX_DEFINE(iommufd_groups_lock);
static struct iommufd_group *iommufd_groups; /* linked by next */

/*
 * The igroup of (@ictx, @dev's group), made if there is none, with a reference for the caller.
 * Return: the igroup, ERR_PTR(-ENODEV) (no group), ERR_PTR(-ENOMEM).
 */
static struct iommufd_group *iommufd_get_group(struct iommufd_ctx *ictx, struct device *dev)
{
	struct iommufd_group *igroup;
	struct iommu_group *group;

	group = iommu_group_get(dev);
	if (!group)
		return ERR_PTR(-ENODEV);
	uiommu_mutex_lock(&iommufd_groups_lock);
	for (igroup = iommufd_groups; igroup; igroup = igroup->next) {
		if (igroup->ictx == ictx && igroup->group == group) {
			/* Pairs with iommufd_group_put(). */
			igroup->refs++;
			uiommu_mutex_unlock(&iommufd_groups_lock);
			iommu_group_put(group);
			return igroup;
		}
	}
	igroup = uiommu_zalloc(sizeof(*igroup));
	if (!igroup) {
		uiommu_mutex_unlock(&iommufd_groups_lock);
		iommu_group_put(group);
		return ERR_PTR(-ENOMEM);
	}
	igroup->ictx = ictx;
	/* The group reference moves into the igroup. */
	igroup->group = group;
	igroup->refs = 1;
	uiommu_mutex_init(&igroup->lock);
	igroup->next = iommufd_groups;
	iommufd_groups = igroup;
	uiommu_mutex_unlock(&iommufd_groups_lock);
	return igroup;
}

/* Pairs with iommufd_get_group(); the last reference frees the igroup. */
static void iommufd_group_put(struct iommufd_group *igroup)
{
	struct iommufd_group **pos;
	bool last;

	uiommu_mutex_lock(&iommufd_groups_lock);
	last = --igroup->refs == 0;
	if (last) {
		for (pos = &iommufd_groups; *pos != igroup; pos = &(*pos)->next)
			;
		*pos = igroup->next;
	}
	uiommu_mutex_unlock(&iommufd_groups_lock);
	if (!last)
		return;
	/* Its devices detached before they went. */
	WARN_ON(igroup->attaches);
	iommu_group_put(igroup->group);
	uiommu_mutex_destroy(&igroup->lock);
	uiommu_free(igroup);
}

/* igroup->lock held. The attachment at @pasid, or NULL. */
static struct iommufd_attach *iommufd_group_attach_at(struct iommufd_group *igroup,
						      uint32_t pasid)
{
	struct iommufd_attach *attach;

	lockdep_assert_held(&igroup->lock);
	for (attach = igroup->attaches; attach; attach = attach->next)
		if (attach->pasid == pasid)
			break;
	return attach;
}

/* igroup->lock held. Where @idev is (or would be) in @attach's members. */
static struct iommufd_attach_dev **iommufd_attach_dev_slot(struct iommufd_attach *attach,
							   struct iommufd_device *idev)
{
	struct iommufd_attach_dev **pos;

	lockdep_assert_held(&idev->igroup->lock);
	for (pos = &attach->devices; *pos; pos = &(*pos)->next)
		if ((*pos)->idev == idev)
			break;
	return pos;
}

/* Is @idev a member of its group's attachment at @pasid? igroup->lock held. */
static bool iommufd_device_is_attached(struct iommufd_device *idev, uint32_t pasid)
{
	struct iommufd_attach *attach = iommufd_group_attach_at(idev->igroup, pasid);

	return attach && *iommufd_attach_dev_slot(attach, idev);
}

/* igroup->lock held: the device's copy of its RID attachment changes. */
static void iommufd_device_set_hwpt(struct iommufd_device *idev,
				    struct iommufd_hw_pagetable *hwpt)
{
	lockdep_assert_held(&idev->igroup->lock);
	uiommu_mutex_lock(&idev->lock);
	idev->hwpt = hwpt;
	uiommu_mutex_unlock(&idev->lock);
}

/* ---- bind, unbind --------------------------------------------------------------------------- */

void iommufd_device_destroy(struct iommufd_object *obj)
{
	struct iommufd_device *idev = container_of(obj, struct iommufd_device, obj);

	/*
	 * A vDEVICE's unlink drops its reference on us under idev->lock and unlocks after: the
	 * removal that reached this destroy may have seen that drop before the unlock. Wait it out.
	 */
	uiommu_mutex_lock(&idev->lock);
	uiommu_mutex_unlock(&idev->lock);

	/* The owner detaches the RID before it unbinds (a WARN if not); PASIDs left over go here. */
	for (;;) {
		struct iommufd_attach *attach;
		uint32_t pasid = 0;
		bool found = false;

		uiommu_mutex_lock(&idev->igroup->lock);
		for (attach = idev->igroup->attaches; attach; attach = attach->next) {
			if (*iommufd_attach_dev_slot(attach, idev)) {
				pasid = attach->pasid;
				found = true;
				break;
			}
		}
		uiommu_mutex_unlock(&idev->igroup->lock);
		if (!found)
			break;
		WARN_ON(pasid == IOMMU_NO_PASID);
		iommufd_device_pasid_detach(idev, pasid);
	}
	iommu_device_release_dma_owner(idev->dev);
	iommufd_group_put(idev->igroup);
	device_put(idev->dev);
	uiommu_mutex_destroy(&idev->lock);
}

/**
 * iommufd_device_bind() - make @dev a device of @ictx, taking DMA ownership of its group
 * The caller must undo this with iommufd_device_unbind().
 * Return: the published idev with *@id set, or ERR_PTR(-EPERM) (a driver or another context
 * owns the group), -EBUSY, -ENODEV, -ENOMEM.
 */
struct iommufd_device *iommufd_device_bind(struct iommufd_ctx *ictx, struct device *dev,
					   uint32_t *id)
{
	struct iommufd_group *igroup;
	struct iommufd_device *idev;
	int rc;

	idev = iommufd_object_alloc(ictx, idev, IOMMUFD_OBJ_DEVICE);
	if (IS_ERR(idev))
		return idev;
	igroup = iommufd_get_group(ictx, dev);
	if (IS_ERR(igroup)) {
		rc = PTR_ERR(igroup);
		goto err_abort;
	}
	rc = uiommu_should_fail() ? -ENOMEM : iommu_device_claim_dma_owner(dev, ictx);
	if (rc)
		goto err_group_put;
	device_get(dev);
	idev->dev = dev;
	idev->ictx = ictx;
	/* The igroup reference moves into the idev; iommufd_device_destroy() puts it. */
	idev->igroup = igroup;
	uiommu_mutex_init(&idev->lock);
	*id = iommufd_object_id(&idev->obj);
	/*
	 * The binder's hold: IOMMU_DESTROY of a device is EBUSY. Dropped by unbind. Taken before
	 * the object is published, or a racing IOMMU_DESTROY of the new ID could find users at
	 * one and destroy the device under the binder. A lookup that meets this early count is
	 * still ordered after the stores above: iommufd_object_finalize() publishes by wait_cnt.
	 */
	iommufd_object_ref_users(&idev->obj);
	iommufd_object_finalize(ictx, &idev->obj);
	return idev;

err_group_put:
	iommufd_group_put(igroup);
err_abort:
	iommufd_object_abort(ictx, &idev->obj);
	return ERR_PTR(rc);
}

/* Pairs with iommufd_device_bind(); the device must be detached. */
void iommufd_device_unbind(struct iommufd_device *idev)
{
	iommufd_device_remove_vdev(idev);
	WARN_ON(iommufd_object_remove(idev->ictx, &idev->obj, 0, REMOVE_WAIT));
}

/* ---- attach, replace, detach (RID and PASID) -------------------------------------------------- */

bool iommufd_device_pasid_attached(struct iommufd_device *idev, uint32_t pasid)
{
	bool attached;

	uiommu_mutex_lock(&idev->igroup->lock);
	attached = iommufd_device_is_attached(idev, pasid);
	uiommu_mutex_unlock(&idev->igroup->lock);
	return attached;
}

/*
 * The kernel's PASID compatibility, per group: a PASID takes only a HWPT made with
 * IOMMU_HWPT_ALLOC_PASID, and while any PASID is attached the RID must stay on such a HWPT too
 * (a domain format that cannot live beside PASID tables could not be set at the RID then).
 * igroup->lock held.
 */
static int iommufd_hwpt_pasid_compat(struct iommufd_hw_pagetable *hwpt,
				     struct iommufd_group *igroup, uint32_t pasid)
{
	struct iommufd_attach *attach;

	lockdep_assert_held(&igroup->lock);
	if (pasid == IOMMU_NO_PASID) {
		if (hwpt->pasid_compat)
			return 0;
		for (attach = igroup->attaches; attach; attach = attach->next)
			if (attach->pasid != IOMMU_NO_PASID)
				return -EINVAL;
		return 0;
	}
	if (!hwpt->pasid_compat)
		return -EINVAL;
	attach = iommufd_group_attach_at(igroup, IOMMU_NO_PASID);
	if (attach && !attach->hwpt->pasid_compat)
		return -EINVAL;
	return 0;
}

/*
 * A handle is gone from the core's table: answer its pending faults, then
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

/* A member's record with a handle of its own naming @idev, or NULL (-ENOMEM). */
static struct iommufd_attach_dev *iommufd_attach_dev_alloc(struct iommufd_device *idev)
{
	struct iommufd_attach_dev *adev;

	adev = uiommu_zalloc(sizeof(*adev));
	if (!adev)
		return NULL;
	adev->handle = uiommu_zalloc(sizeof(*adev->handle));
	if (!adev->handle) {
		uiommu_free(adev);
		return NULL;
	}
	adev->idev = idev;
	adev->handle->idev = idev;
	return adev;
}

static void iommufd_attach_dev_free(struct iommufd_attach_dev *adev)
{
	uiommu_free(adev->handle);
	uiommu_free(adev);
}

/* The IOAS whose IOVA a RID attachment to @hwpt takes reserved regions from, or NULL. */
static struct io_pagetable *iommufd_hwpt_resv_iopt(struct iommufd_hw_pagetable *hwpt)
{
	struct iommufd_hwpt_paging *paging;

	if (hwpt->obj.type == IOMMUFD_OBJ_HWPT_PAGING)
		paging = container_of(hwpt, struct iommufd_hwpt_paging, common);
	else if (hwpt->obj.type == IOMMUFD_OBJ_HWPT_NESTED)
		paging = container_of(hwpt, struct iommufd_hwpt_nested, common)->parent;
	else
		paging = NULL;
	return paging ? &paging->ioas->iopt : NULL;
}

/* Removes the reserved regions of every member of @attach from @iopt. igroup->lock held. */
static void iommufd_attach_remove_resv(struct iommufd_attach *attach, struct io_pagetable *iopt)
{
	struct iommufd_attach_dev *cur;

	for (cur = attach->devices; cur; cur = cur->next)
		iopt_remove_reserved_iova(iopt, cur->idev->dev);
}

/*
 * @idev joins its group's attachment at @pasid to @hwpt; the first member attaches the group
 * (at that PASID) in the core. Takes a users reference on @hwpt for the membership.
 * Return: 0, -EBUSY (@idev is a member already), -EINVAL (the group is on another HWPT there,
 * PASID rules, the driver refuses), -EOPNOTSUPP, -ENODEV, -ENOMEM. On error nothing changed.
 */
static int iommufd_hw_pagetable_attach(struct iommufd_hw_pagetable *hwpt,
				       struct iommufd_device *idev, uint32_t pasid)
{
	struct iommufd_group *igroup = idev->igroup;
	struct iommufd_attach *attach, *new_attach = NULL;
	struct io_pagetable *resv_iopt = NULL;
	struct iommufd_attach_dev *adev;
	int rc;

	uiommu_mutex_lock(&igroup->lock);
	attach = iommufd_group_attach_at(igroup, pasid);
	if (attach && *iommufd_attach_dev_slot(attach, idev)) {
		rc = -EBUSY;
		goto out_unlock;
	}
	if (attach && attach->hwpt != hwpt) {
		rc = -EINVAL;
		goto out_unlock;
	}
	if (!attach) {
		rc = iommufd_hwpt_pasid_compat(hwpt, igroup, pasid);
		if (rc)
			goto out_unlock;
	}
	if (pasid == IOMMU_NO_PASID)
		resv_iopt = iommufd_hwpt_resv_iopt(hwpt);
	if (resv_iopt) {
		rc = iopt_table_enforce_dev_resv_regions(resv_iopt, idev->dev);
		if (rc)
			goto out_unlock;
	}
	adev = iommufd_attach_dev_alloc(idev);
	if (!adev) {
		rc = -ENOMEM;
		goto err_unresv;
	}
	if (!attach) {
		new_attach = uiommu_zalloc(sizeof(*new_attach));
		if (!new_attach) {
			rc = -ENOMEM;
			goto err_free_adev;
		}
		if (pasid == IOMMU_NO_PASID)
			rc = iommu_attach_group_handle(hwpt->domain, igroup->group,
						       &adev->handle->handle);
		else
			rc = iommu_attach_device_pasid(hwpt->domain, idev->dev, pasid,
						       &adev->handle->handle);
		if (rc)
			goto err_free_attach;
		new_attach->pasid = pasid;
		new_attach->hwpt = hwpt;
		new_attach->handle = adev->handle;
		new_attach->next = igroup->attaches;
		igroup->attaches = new_attach;
		attach = new_attach;
	}
	adev->next = attach->devices;
	attach->devices = adev;
	/* Pairs with iommufd_hw_pagetable_put() after this member's detach (or a replace's). */
	iommufd_object_ref_users(&hwpt->obj);
	if (pasid == IOMMU_NO_PASID)
		iommufd_device_set_hwpt(idev, hwpt);
	uiommu_mutex_unlock(&igroup->lock);
	return 0;

err_free_attach:
	uiommu_free(new_attach);
err_free_adev:
	iommufd_attach_dev_free(adev);
err_unresv:
	if (resv_iopt)
		iopt_remove_reserved_iova(resv_iopt, idev->dev);
out_unlock:
	uiommu_mutex_unlock(&igroup->lock);
	return rc;
}

/*
 * @idev leaves its group's attachment at @pasid; the last member's leaving detaches the group
 * there in the core. Never fails.
 * Return: the HWPT whose users reference the caller must now put, or NULL (@idev was not a
 * member there).
 */
static struct iommufd_hw_pagetable *iommufd_hw_pagetable_detach(struct iommufd_device *idev,
								 uint32_t pasid)
{
	struct iommufd_group *igroup = idev->igroup;
	struct iommufd_attach_handle *retired = NULL;
	struct iommufd_attach_dev **pos, *adev;
	struct iommufd_hw_pagetable *hwpt;
	struct iommufd_attach *attach;

	uiommu_mutex_lock(&igroup->lock);
	attach = iommufd_group_attach_at(igroup, pasid);
	pos = attach ? iommufd_attach_dev_slot(attach, idev) : NULL;
	if (!pos || !*pos) {
		uiommu_mutex_unlock(&igroup->lock);
		return NULL;
	}
	adev = *pos;
	*pos = adev->next;
	hwpt = attach->hwpt;
	if (!attach->devices) {
		struct iommufd_attach **apos;

		if (pasid == IOMMU_NO_PASID)
			iommu_detach_group_handle(hwpt->domain, igroup->group);
		else
			iommu_detach_device_pasid(hwpt->domain, idev->dev, pasid);
		for (apos = &igroup->attaches; *apos != attach; apos = &(*apos)->next)
			;
		*apos = attach->next;
		uiommu_free(attach);
		retired = adev->handle;
	} else if (attach->handle == adev->handle) {
		/* The published handle names @idev: publish a remaining member's instead. */
		struct iommufd_attach_dev *heir = attach->devices;
		int rc;

		if (pasid == IOMMU_NO_PASID)
			rc = iommu_replace_group_handle(igroup->group, hwpt->domain,
							&heir->handle->handle);
		else
			rc = iommu_replace_device_pasid(hwpt->domain, heir->idev->dev, pasid,
							&heir->handle->handle);
		/* The same domain again: the core has nothing that could fail. */
		if (!WARN_ON(rc)) {
			attach->handle = heir->handle;
			retired = adev->handle;
		} else {
			/* Keep the published handle; it names the heir from now on. */
			uiommu_free(heir->handle);
			heir->handle = adev->handle;
			heir->handle->idev = heir->idev;
		}
	} else {
		/* A spare, never published: no fault was routed through it. */
		uiommu_free(adev->handle);
	}
	if (pasid == IOMMU_NO_PASID) {
		struct io_pagetable *resv_iopt = iommufd_hwpt_resv_iopt(hwpt);

		iommufd_device_set_hwpt(idev, NULL);
		if (resv_iopt)
			iopt_remove_reserved_iova(resv_iopt, idev->dev);
	}
	if (retired)
		iommufd_attach_handle_retire(hwpt, retired);
	uiommu_mutex_unlock(&igroup->lock);
	uiommu_free(adev);
	return hwpt;
}

/*
 * Moves the group's attachment at @pasid, which @idev is a member of, to @hwpt, every member
 * with it; *@old gets the HWPT left, with one users reference that is now the caller's to put
 * (the other members' references move), or NULL when nothing changed.
 * Return: 0, -EINVAL (nothing attached there, @idev is not a member, PASID rules, the driver
 * refuses), -EOPNOTSUPP, -ENODEV, -ENOMEM. On error the group stays where it was.
 */
static int iommufd_device_do_replace(struct iommufd_device *idev, uint32_t pasid,
				     struct iommufd_hw_pagetable *hwpt,
				     struct iommufd_hw_pagetable **old)
{
	struct iommufd_group *igroup = idev->igroup;
	struct io_pagetable *resv_iopt = NULL, *old_resv_iopt = NULL;
	struct iommufd_attach_handle *handle, *retired;
	struct iommufd_attach_dev *adev, *cur;
	struct iommufd_hw_pagetable *old_hwpt;
	struct iommufd_attach *attach;
	unsigned int members = 0;
	int rc;

	uiommu_mutex_lock(&igroup->lock);
	attach = iommufd_group_attach_at(igroup, pasid);
	if (!attach) {
		rc = -EINVAL;
		goto out_unlock;
	}
	adev = *iommufd_attach_dev_slot(attach, idev);
	if (!adev) {
		rc = -EINVAL;
		goto out_unlock;
	}
	if (attach->hwpt == hwpt) {
		rc = 0;
		goto out_unlock;
	}
	rc = iommufd_hwpt_pasid_compat(hwpt, igroup, pasid);
	if (rc)
		goto out_unlock;
	if (pasid == IOMMU_NO_PASID) {
		resv_iopt = iommufd_hwpt_resv_iopt(hwpt);
		old_resv_iopt = iommufd_hwpt_resv_iopt(attach->hwpt);
		/* The same IOAS keeps the members' regions: nothing moves. */
		if (resv_iopt == old_resv_iopt)
			resv_iopt = old_resv_iopt = NULL;
	}
	for (cur = resv_iopt ? attach->devices : NULL; cur; cur = cur->next) {
		rc = iopt_table_enforce_dev_resv_regions(resv_iopt, cur->idev->dev);
		if (rc)
			goto err_unresv;
	}
	handle = uiommu_zalloc(sizeof(*handle));
	if (!handle) {
		rc = -ENOMEM;
		goto err_unresv;
	}
	handle->idev = idev;
	if (pasid == IOMMU_NO_PASID)
		rc = iommu_replace_group_handle(igroup->group, hwpt->domain, &handle->handle);
	else
		rc = iommu_replace_device_pasid(hwpt->domain, idev->dev, pasid, &handle->handle);
	if (rc)
		goto err_free_handle;

	old_hwpt = attach->hwpt;
	retired = attach->handle;
	if (adev->handle != retired) {
		/* The member the old handle named takes @idev's spare (never published). */
		for (cur = attach->devices; cur->handle != retired; cur = cur->next)
			;
		cur->handle = adev->handle;
		cur->handle->idev = cur->idev;
	}
	adev->handle = handle;
	attach->handle = handle;
	attach->hwpt = hwpt;
	for (cur = attach->devices; cur; cur = cur->next) {
		members++;
		/* Pairs with iommufd_hw_pagetable_put() after this member's detach. */
		iommufd_object_ref_users(&hwpt->obj);
		if (pasid == IOMMU_NO_PASID)
			iommufd_device_set_hwpt(cur->idev, hwpt);
	}
	/* The members' references on the old HWPT go, all but the one the caller puts. */
	while (--members)
		iommufd_object_unref_users(&old_hwpt->obj);
	iommufd_attach_handle_retire(old_hwpt, retired);
	if (old_resv_iopt)
		iommufd_attach_remove_resv(attach, old_resv_iopt);
	*old = old_hwpt;
	uiommu_mutex_unlock(&igroup->lock);
	return 0;

err_free_handle:
	uiommu_free(handle);
err_unresv:
	if (resv_iopt)
		iommufd_attach_remove_resv(attach, resv_iopt);
out_unlock:
	uiommu_mutex_unlock(&igroup->lock);
	return rc;
}

/* Attach (@replace false) or replace @pasid of @idev to @hwpt; see the two above. */
static int iommufd_device_change_hwpt(struct iommufd_device *idev, uint32_t pasid,
				      struct iommufd_hw_pagetable *hwpt, bool replace,
				      struct iommufd_hw_pagetable **old)
{
	*old = NULL;
	if (replace)
		return iommufd_device_do_replace(idev, pasid, hwpt, old);
	return iommufd_hw_pagetable_attach(hwpt, idev, pasid);
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
		rc = iommufd_device_change_hwpt(idev, pasid, &hwpt->common, replace, old);
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
	rc = iommufd_device_change_hwpt(idev, pasid, &hwpt->common, replace, old);
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

		rc = iommufd_device_change_hwpt(idev, pasid, &nested->common, replace, &old);
		break;
	}
	case IOMMUFD_OBJ_HWPT_PAGING:
		rc = iommufd_device_change_hwpt(
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
 * iommufd_device_pasid_detach() - @idev leaves its group's attachment at @pasid (IOMMU_NO_PASID:
 * the RID); the last member's detach returns the group there to the blocked domain. The
 * membership's reference is dropped. Never fails; not being a member there is no error.
 */
void iommufd_device_pasid_detach(struct iommufd_device *idev, uint32_t pasid)
{
	struct iommufd_hw_pagetable *hwpt;

	hwpt = iommufd_hw_pagetable_detach(idev, pasid);
	/* After every lock: an automatic HWPT dies with its last reference. */
	if (hwpt)
		iommufd_hw_pagetable_put(idev->ictx, hwpt);
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
	/* Said when ATS cannot be used: a driver that does not know the cap answers false. */
	if (!iommu_device_capable(idev->dev, IOMMU_CAP_PCI_ATS_SUPPORTED))
		cmd->out_capabilities |= IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED;
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
