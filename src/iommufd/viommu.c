// SPDX-License-Identifier: MIT
/*
 * vIOMMUs and vDEVICEs: IOMMU_VIOMMU_ALLOC, IOMMU_VDEVICE_ALLOC, vIOMMU cache invalidation and
 * the selftest's TRIGGER_VEVENT.
 *
 * A vIOMMU (IOMMUFD_OBJ_VIOMMU) is the host's view of one IOMMU instance as a guest sees it:
 * it is made over a NEST_PARENT paging HWPT (the stage-2 the guest's nested tables sit on),
 * holds that HWPT with a users reference, and is the thing nested HWPTs, vDEVICEs, vEVENTQs and
 * HW queues (hw_queue.c) hang from, each holding the vIOMMU in turn. So the destroy graph runs
 * leaves first: a vIOMMU with a nested HWPT, vDEVICE, vEVENTQ, HW queue or live mmap is EBUSY.
 *
 * A vDEVICE (IOMMUFD_OBJ_VDEVICE) gives one bound device a virtual ID inside a vIOMMU (what the
 * guest calls it: a vSID, a vRID). A device has at most one (EEXIST), and a virtual ID names at
 * most one device per vIOMMU (EEXIST). The vDEVICE holds the vIOMMU and the device with users
 * references. The device is owned by whoever bound it, though, and may go away first: its
 * unbind then destroys the vDEVICE itself and leaves its ID as a tombstone, so a later
 * IOMMU_DESTROY of that ID answers ENOENT and the ID is not handed out again until the context
 * closes (the user may still believe it owns the ID).
 *
 * Who unlinks a vDEVICE from its device is decided by an atomic exchange of vdev->idev: the
 * vDEVICE's destroy and the device's unbind may race, and whichever takes the pointer clears
 * idev->vdev and drops the device reference (both under idev->lock); the other sees NULL and
 * leaves it. The unbind first marks the device destroying (under idev->lock), after which
 * VDEVICE_ALLOC answers ENOENT for it, as the kernel does: a vDEVICE linked after the unbind
 * removed the last one would hold the device past its unbind.
 *
 * The driver side is reached only through ops (iommu/iommufd_driver.h): the device's driver
 * makes its part of the vIOMMU (viommu_alloc, viommu_init) and of each vDEVICE (vdevice_alloc,
 * vdevice_destroy), and iommufd lends it services back (iommufd_viommu_services: vEVENTs, an
 * mmap region, HW-queue dependencies). The driver's vDEVICE part lives exactly as long as the
 * link between the vDEVICE and its device: made when the link is made and destroyed by
 * whoever takes the link (the exchange above), under viommu->lock, before the device
 * reference goes; so a driver's own table of vDEVICEs only ever names live devices. The
 * region a driver may ask for is a shared memfd that uiommu_mmap() maps for the program
 * (mmap.c); a live mapping holds the vIOMMU.
 *
 * Locking: viommu->lock protects the vdevs list, each vDEVICE's driver part and the veventqs
 * list (eventq.c); order: after idev->lock, before the driver's locks. vdev->idev is an atomic
 * (see above); idev->vdev is under idev->lock.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>

#include "iommu/iommu.h"
#include "iommu/iommufd_driver.h"
#include "iommufd/iommufd_private.h"
#include "iommufd/viommu.h"
#include "lib/fail.h"

IOMMUFD_OBJECT_AT_ZERO(struct iommufd_viommu, obj);
IOMMUFD_OBJECT_AT_ZERO(struct iommufd_vdevice, obj);

struct iommufd_hwpt_paging *iommufd_viommu_parent(struct iommufd_viommu *viommu)
{
	return viommu->hwpt;
}

void iommufd_viommu_destroy(struct iommufd_object *obj)
{
	struct iommufd_viommu *viommu = container_of(obj, struct iommufd_viommu, obj);

	WARN_ON(viommu->vdevs || viommu->veventqs);
	viommu->drv->ops->destroy(viommu->drv);
	if (viommu->region)
		iommufd_mmap_region_free(viommu->region_fd, viommu->region, viommu->region_len);
	uiommu_mutex_destroy(&viommu->lock);
	/* Pairs with the reference taken in iommufd_viommu_alloc_ioctl(). */
	iommufd_object_unref_users(&viommu->hwpt->common.obj);
}

/* ---- services to the driver (struct iommufd_viommu_services) --------------------------------- */

static int iommufd_viommu_svc_report_event(struct iommu_viommu *drv, uint32_t type,
					   const void *event, size_t len)
{
	if (len > UINT32_MAX)
		return -EINVAL;
	return iommufd_veventq_report(drv->core, type, event, (uint32_t)len);
}

static int iommufd_viommu_svc_alloc_mmap(struct iommu_viommu *drv, size_t len, void **map,
					 uint64_t *offset)
{
	struct iommufd_viommu *viommu = drv->core;
	int rc;

	if (viommu->region)
		return -EEXIST;
	if (!len || len % uiommu_page_size)
		return -EINVAL;
	rc = iommufd_mmap_region_alloc(len, &viommu->region_fd, &viommu->region);
	if (rc)
		return rc;
	viommu->region_len = len;
	*map = viommu->region;
	/* Offsets are per context and page aligned: the object ID keeps them distinct. */
	*offset = (uint64_t)iommufd_object_id(&viommu->obj) << IOMMUFD_MMAP_ID_SHIFT;
	return 0;
}

static const struct iommufd_viommu_services iommufd_viommu_services = {
	.report_event = iommufd_viommu_svc_report_event,
	.alloc_mmap = iommufd_viommu_svc_alloc_mmap,
	.hw_queue_depend = iommufd_hw_queue_depend_obj,
	.hw_queue_undepend = iommufd_hw_queue_undepend_obj,
};

/* The user's optional vIOMMU data in, the driver's answer (if any) back out. */
static int iommufd_viommu_init(struct iommufd_ucmd *ucmd, struct iommufd_viommu *viommu,
			       const struct iommu_ops *ops)
{
	struct iommu_viommu_alloc *cmd = ucmd->cmd;
	unsigned char data[IOMMU_USER_DATA_MAX], out[IOMMU_USER_DATA_MAX];
	size_t out_len = 0;
	struct iommu_user_data user_data = {
		.type = cmd->type,
		.data = data,
		.len = cmd->data_len < sizeof(data) ? cmd->data_len : sizeof(data),
		.out = out,
		.out_len = &out_len,
	};
	int rc;

	if (user_data.len) {
		rc = uiommu_copy_from_user(ucmd->mm, data, cmd->data_uptr, user_data.len);
		if (rc)
			return rc;
		memcpy(out, data, user_data.len);
	}
	rc = uiommu_should_fail() ?
		     -ENOMEM :
		     ops->viommu_init(viommu->drv, viommu->hwpt->common.domain,
				      user_data.len ? &user_data : NULL);
	if (rc)
		return rc;
	if (WARN_ON(out_len > user_data.len))
		return -EINVAL;
	return out_len ? uiommu_copy_to_user(ucmd->mm, cmd->data_uptr, out, out_len) : 0;
}

int iommufd_viommu_alloc_ioctl(struct iommufd_ucmd *ucmd)
{
	struct iommu_viommu_alloc *cmd = ucmd->cmd;
	struct iommufd_hwpt_paging *hwpt;
	struct iommufd_viommu *viommu;
	struct iommufd_device *idev;
	const struct iommu_ops *ops;
	struct iommu_viommu *drv;
	int rc;

	if (cmd->flags || cmd->__reserved || cmd->type == IOMMU_VIOMMU_TYPE_DEFAULT)
		return -EOPNOTSUPP;
	idev = iommufd_get_device(ucmd->ictx, cmd->dev_id);
	if (IS_ERR(idev))
		return PTR_ERR(idev);
	ops = iommu_device_ops(idev->dev);
	if (!ops || !ops->viommu_alloc || !ops->viommu_init) {
		rc = -EOPNOTSUPP;
		goto out_put_idev;
	}
	/* The type is the driver's to judge, before the parent is looked at (the kernel's order). */
	drv = uiommu_should_fail() ? ERR_PTR(-ENOMEM) : ops->viommu_alloc(idev->dev, cmd->type);
	if (IS_ERR(drv)) {
		rc = PTR_ERR(drv);
		goto out_put_idev;
	}
	hwpt = iommufd_get_hwpt_paging(ucmd->ictx, cmd->hwpt_id);
	if (IS_ERR(hwpt)) {
		rc = PTR_ERR(hwpt);
		goto err_destroy_drv;
	}
	if (!(hwpt->flags & IOMMU_HWPT_ALLOC_NEST_PARENT) || hwpt->auto_domain) {
		rc = -EINVAL;
		goto err_put_hwpt;
	}

	viommu = iommufd_object_alloc(ucmd->ictx, viommu, IOMMUFD_OBJ_VIOMMU);
	if (IS_ERR(viommu)) {
		rc = PTR_ERR(viommu);
		goto err_put_hwpt;
	}
	viommu->ictx = ucmd->ictx;
	viommu->type = cmd->type;
	viommu->hwpt = hwpt;
	viommu->drv = drv;
	drv->iommu_dev = idev->dev->iommu;
	drv->parent = hwpt->common.domain;
	drv->type = cmd->type;
	drv->services = &iommufd_viommu_services;
	drv->core = viommu;
	uiommu_mutex_init(&viommu->lock);
	/* Pairs with the put in iommufd_viommu_destroy(); the destroy owns drv from here on. */
	iommufd_object_ref_users(&hwpt->common.obj);
	rc = iommufd_viommu_init(ucmd, viommu, ops);
	if (rc)
		goto err_abort;
	cmd->out_viommu_id = iommufd_object_id(&viommu->obj);
	rc = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
	if (rc)
		goto err_abort;
	iommufd_object_finalize(ucmd->ictx, &viommu->obj);
	iommufd_put_object(ucmd->ictx, &hwpt->common.obj);
	goto out_put_idev;

err_abort:
	iommufd_object_abort_and_destroy(ucmd->ictx, &viommu->obj);
	iommufd_put_object(ucmd->ictx, &hwpt->common.obj);
	goto out_put_idev;
err_put_hwpt:
	iommufd_put_object(ucmd->ictx, &hwpt->common.obj);
err_destroy_drv:
	drv->ops->destroy(drv);
out_put_idev:
	iommufd_put_object(ucmd->ictx, &idev->obj);
	return rc;
}

/* ---- vDEVICEs -------------------------------------------------------------------------------- */

/* The driver's part of @vdev goes (the link's taker calls it, under idev->lock). */
static void iommufd_vdevice_destroy_drv(struct iommufd_vdevice *vdev)
{
	struct iommufd_viommu *viommu = vdev->viommu;

	uiommu_mutex_lock(&viommu->lock);
	if (vdev->drv)
		viommu->drv->ops->vdevice_destroy(vdev->drv);
	vdev->drv = NULL;
	uiommu_mutex_unlock(&viommu->lock);
}

/*
 * Takes @vdev's link to its device, if nobody took it yet: destroys the driver's part, clears
 * idev->vdev, drops the ref.
 */
static void iommufd_vdevice_unlink_idev(struct iommufd_vdevice *vdev)
{
	struct iommufd_device *idev = atomic_exchange(&vdev->idev, NULL);

	if (!idev)
		return;
	uiommu_mutex_lock(&idev->lock);
	iommufd_vdevice_destroy_drv(vdev);
	if (idev->vdev == vdev)
		idev->vdev = NULL;
	/*
	 * Pairs with the reference taken in iommufd_vdevice_alloc_ioctl(). Dropped under the
	 * lock: an unbind that then finds idev->vdev cleared must also find users back down,
	 * or its removal of the device meets this reference and fails with EBUSY. The device's
	 * destroy (iommufd_device_destroy()) takes this lock first, so it outlives the unlock.
	 */
	iommufd_object_unref_users(&idev->obj);
	uiommu_mutex_unlock(&idev->lock);
}

void iommufd_vdevice_destroy(struct iommufd_object *obj)
{
	struct iommufd_vdevice *vdev = container_of(obj, struct iommufd_vdevice, obj);
	struct iommufd_viommu *viommu = vdev->viommu;
	struct iommufd_vdevice **pos;

	/* Unlisted first: a listed vDEVICE's device is alive for whoever holds viommu->lock. */
	uiommu_mutex_lock(&viommu->lock);
	for (pos = &viommu->vdevs; *pos; pos = &(*pos)->next) {
		if (*pos == vdev) {
			*pos = vdev->next;
			break;
		}
	}
	uiommu_mutex_unlock(&viommu->lock);
	iommufd_vdevice_unlink_idev(vdev);
	/* Pairs with the reference taken in iommufd_vdevice_alloc_ioctl(). */
	iommufd_object_unref_users(&viommu->obj);
}

static struct iommufd_vdevice *iommufd_viommu_find_vdev(struct iommufd_viommu *viommu,
							 uint64_t virt_id)
{
	struct iommufd_vdevice *vdev;

	lockdep_assert_held(&viommu->lock);
	for (vdev = viommu->vdevs; vdev; vdev = vdev->next)
		if (vdev->virt_id == virt_id)
			return vdev;
	return NULL;
}

int iommufd_vdevice_alloc_ioctl(struct iommufd_ucmd *ucmd)
{
	struct iommu_vdevice_alloc *cmd = ucmd->cmd;
	struct iommufd_viommu *viommu;
	struct iommufd_vdevice *vdev;
	struct iommu_vdevice *drv;
	struct iommufd_device *idev;
	struct iommufd_object *obj;
	int rc;

	obj = iommufd_get_object(ucmd->ictx, cmd->viommu_id, IOMMUFD_OBJ_VIOMMU);
	if (IS_ERR(obj))
		return PTR_ERR(obj);
	viommu = container_of(obj, struct iommufd_viommu, obj);
	idev = iommufd_get_device(ucmd->ictx, cmd->dev_id);
	if (IS_ERR(idev)) {
		rc = PTR_ERR(idev);
		goto out_put_viommu;
	}
	/* The vIOMMU stands for one physical instance: the device must sit behind it. */
	if (viommu->drv->iommu_dev != idev->dev->iommu) {
		rc = -EINVAL;
		goto out_put_idev;
	}
	vdev = iommufd_object_alloc(ucmd->ictx, vdev, IOMMUFD_OBJ_VDEVICE);
	if (IS_ERR(vdev)) {
		rc = PTR_ERR(vdev);
		goto out_put_idev;
	}
	vdev->viommu = viommu;
	vdev->virt_id = cmd->virt_id;
	cmd->out_vdevice_id = iommufd_object_id(&vdev->obj);
	rc = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
	if (rc)
		goto err_abort;

	uiommu_mutex_lock(&idev->lock);
	uiommu_mutex_lock(&viommu->lock);
	/* Being unbound: a vDEVICE linked now would hold the device past its unbind. */
	if (idev->destroying) {
		rc = -ENOENT;
		goto err_unlock;
	}
	if (idev->vdev || iommufd_viommu_find_vdev(viommu, cmd->virt_id)) {
		rc = -EEXIST;
		goto err_unlock;
	}
	if (viommu->drv->ops->vdevice_alloc) {
		drv = uiommu_should_fail() ?
			      ERR_PTR(-ENOMEM) :
			      viommu->drv->ops->vdevice_alloc(viommu->drv, idev->dev, cmd->virt_id);
		if (IS_ERR(drv)) {
			rc = PTR_ERR(drv);
			goto err_unlock;
		}
		vdev->drv = drv;
	}
	idev->vdev = vdev;
	atomic_store(&vdev->idev, idev);
	vdev->next = viommu->vdevs;
	viommu->vdevs = vdev;
	/* Pair with the puts in iommufd_vdevice_destroy() / _unlink_idev(). */
	iommufd_object_ref_users(&viommu->obj);
	iommufd_object_ref_users(&idev->obj);
	iommufd_object_finalize(ucmd->ictx, &vdev->obj);
	uiommu_mutex_unlock(&viommu->lock);
	uiommu_mutex_unlock(&idev->lock);
	goto out_put_idev;

err_unlock:
	uiommu_mutex_unlock(&viommu->lock);
	uiommu_mutex_unlock(&idev->lock);
err_abort:
	iommufd_object_abort(ucmd->ictx, &vdev->obj);
out_put_idev:
	iommufd_put_object(ucmd->ictx, &idev->obj);
out_put_viommu:
	iommufd_put_object(ucmd->ictx, &viommu->obj);
	return rc;
}

void iommufd_device_remove_vdev(struct iommufd_device *idev)
{
	struct iommufd_device *unlinked = NULL;
	struct iommufd_vdevice *vdev;
	uint32_t id = 0;
	int rc;

	uiommu_mutex_lock(&idev->lock);
	/* From here on VDEVICE_ALLOC answers ENOENT: the vDEVICE removed below is the last. */
	idev->destroying = true;
	vdev = idev->vdev;
	if (vdev)
		id = iommufd_object_id(&vdev->obj);
	uiommu_mutex_unlock(&idev->lock);
	if (!vdev)
		return;
	/*
	 * Gone with a tombstone; an in-flight lookup of the ID (EBUSY) is short, so try again.
	 * ENOENT: a concurrent destroy (IOMMU_DESTROY, the context's close) has it and unlinks.
	 * Only @vdev's address is compared, so it may already be freed.
	 */
	do {
		rc = iommufd_object_remove(idev->ictx, &vdev->obj, id, REMOVE_OBJ_TOMBSTONE);
		if (rc == -EBUSY)
			sched_yield();
	} while (rc == -EBUSY);
	if (rc != -ENOENT)
		return;
	/*
	 * Someone else is destroying it, perhaps later on this very thread (the context's close
	 * unpublishes a batch, then destroys it): unlink it now rather than wait. While
	 * idev->vdev still names it, its destroy has not passed the unlink, so it is alive.
	 * If that destroy took the link already, wait for it to drop its device reference:
	 * the caller removes the device next and must find it unreferenced.
	 */
	for (;;) {
		uiommu_mutex_lock(&idev->lock);
		/* Cleared: whoever did it dropped the device reference with it, under this lock. */
		if (idev->vdev != vdev)
			break;
		unlinked = atomic_exchange(&vdev->idev, NULL);
		if (unlinked) {
			iommufd_vdevice_destroy_drv(vdev);
			idev->vdev = NULL;
			iommufd_object_unref_users(&idev->obj);
			break;
		}
		/*
		 * The destroy took the link and is on its way to this lock to drop the reference;
		 * the device's removal must not begin before it has.
		 */
		uiommu_mutex_unlock(&idev->lock);
		sched_yield();
	}
	uiommu_mutex_unlock(&idev->lock);
}

#ifdef UIOMMU_IOMMUFD_TEST
/* ---- TRIGGER_VEVENT -------------------------------------------------------------------------- */

int iommufd_viommu_trigger_vevent(struct iommufd_device *idev)
{
	struct iommu_viommu_event_selftest event;
	struct iommufd_hwpt_nested *nested;
	struct iommufd_viommu *viommu;
	int rc = -ENOENT;

	uiommu_mutex_lock(&idev->lock);
	if (!idev->hwpt || idev->hwpt->obj.type != IOMMUFD_OBJ_HWPT_NESTED || !idev->vdev)
		goto out_unlock;
	nested = container_of(idev->hwpt, struct iommufd_hwpt_nested, common);
	viommu = nested->viommu;
	if (!viommu || idev->vdev->viommu != viommu)
		goto out_unlock;
	event.virt_id = (uint32_t)idev->vdev->virt_id;
	/* idev->lock keeps the attachment, hence the vIOMMU (order: idev->lock, viommu->lock). */
	rc = iommufd_veventq_report(viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, &event, sizeof(event));
out_unlock:
	uiommu_mutex_unlock(&idev->lock);
	return rc;
}

#endif /* UIOMMU_IOMMUFD_TEST */
