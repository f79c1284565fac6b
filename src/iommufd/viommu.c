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
 * The driver side is the selftest mock's (type IOMMU_VIOMMU_TYPE_SELFTEST): optional data
 * struct iommu_viommu_selftest whose in_data comes back as out_data, with the offset and
 * length of a 2-page region whose first word is in_data. The region is a shared memfd that
 * uiommu_mmap() maps for the program (mmap.c); a live mapping holds the vIOMMU. Its invalidation entries clear the cache words
 * of a device named by virtual ID.
 *
 * Locking: viommu->lock protects the vdevs list and the veventqs list (eventq.c); order: after
 * idev->lock. vdev->idev is an atomic (see above); idev->vdev is under idev->lock.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>

#include "drivers/mock/selftest_mock.h"
#include "iommu/iommu.h"
#include "iommufd/iommufd_private.h"
#include "iommufd/viommu.h"
#include "lib/fail.h"

IOMMUFD_OBJECT_AT_ZERO(struct iommufd_viommu, obj);
IOMMUFD_OBJECT_AT_ZERO(struct iommufd_vdevice, obj);

#define VIOMMU_MOCK_REGION_PAGES 2u

struct iommufd_hwpt_paging *iommufd_viommu_parent(struct iommufd_viommu *viommu)
{
	return viommu->hwpt;
}

void iommufd_viommu_destroy(struct iommufd_object *obj)
{
	struct iommufd_viommu *viommu = container_of(obj, struct iommufd_viommu, obj);

	WARN_ON(viommu->vdevs || viommu->veventqs);
	if (viommu->region)
		iommufd_mmap_region_free(viommu->region_fd, viommu->region, viommu->region_len);
	uiommu_mutex_destroy(&viommu->lock);
	/* Pairs with the reference taken in iommufd_viommu_alloc_ioctl(). */
	iommufd_object_unref_users(&viommu->hwpt->common.obj);
}

/* The mock's driver data: in_data echoed, a region made and described. */
static int iommufd_viommu_mock_init(struct iommufd_ucmd *ucmd, struct iommufd_viommu *viommu)
{
	struct iommu_viommu_alloc *cmd = ucmd->cmd;
	struct iommu_viommu_selftest data;
	size_t n;
	int rc;

	/* The region comes with the data, as the kernel mock's does. */
	if (!cmd->data_len)
		return 0;
	if (cmd->data_len < offsetofend(struct iommu_viommu_selftest, out_data))
		return -EINVAL;
	viommu->region_len = VIOMMU_MOCK_REGION_PAGES * uiommu_page_size;
	rc = iommufd_mmap_region_alloc(viommu->region_len, &viommu->region_fd, &viommu->region);
	if (rc)
		return rc;
	memset(&data, 0, sizeof(data));
	n = cmd->data_len < sizeof(data) ? cmd->data_len : sizeof(data);
	rc = uiommu_copy_from_user(ucmd->mm, &data, cmd->data_uptr, n);
	if (rc)
		return rc;
	memcpy(viommu->region, &data.in_data, sizeof(data.in_data));
	data.out_data = data.in_data;
	/* Offsets are per context and page aligned: the object ID keeps them distinct. */
	data.out_mmap_offset = (uint64_t)iommufd_object_id(&viommu->obj) << IOMMUFD_MMAP_ID_SHIFT;
	data.out_mmap_length = viommu->region_len;
	return uiommu_copy_to_user(ucmd->mm, cmd->data_uptr, &data, n);
}

int iommufd_viommu_alloc_ioctl(struct iommufd_ucmd *ucmd)
{
	struct iommu_viommu_alloc *cmd = ucmd->cmd;
	struct iommufd_hwpt_paging *hwpt;
	struct iommufd_viommu *viommu;
	struct iommufd_device *idev;
	int rc;

	if (cmd->flags || cmd->__reserved || cmd->type == IOMMU_VIOMMU_TYPE_DEFAULT)
		return -EOPNOTSUPP;
	idev = iommufd_get_device(ucmd->ictx, cmd->dev_id);
	if (IS_ERR(idev))
		return PTR_ERR(idev);
	if (!mock_selftest_dev_is(idev->dev) || cmd->type != IOMMU_VIOMMU_TYPE_SELFTEST) {
		rc = -EOPNOTSUPP;
		goto out_put_idev;
	}
	hwpt = iommufd_get_hwpt_paging(ucmd->ictx, cmd->hwpt_id);
	if (IS_ERR(hwpt)) {
		rc = PTR_ERR(hwpt);
		goto out_put_idev;
	}
	if (!(hwpt->flags & IOMMU_HWPT_ALLOC_NEST_PARENT) || hwpt->auto_domain) {
		rc = -EINVAL;
		goto out_put_hwpt;
	}

	viommu = iommufd_object_alloc(ucmd->ictx, viommu, IOMMUFD_OBJ_VIOMMU);
	if (IS_ERR(viommu)) {
		rc = PTR_ERR(viommu);
		goto out_put_hwpt;
	}
	viommu->ictx = ucmd->ictx;
	viommu->type = cmd->type;
	viommu->hwpt = hwpt;
	uiommu_mutex_init(&viommu->lock);
	/* Pairs with the put in iommufd_viommu_destroy(). */
	iommufd_object_ref_users(&hwpt->common.obj);
	rc = iommufd_viommu_mock_init(ucmd, viommu);
	if (rc)
		goto err_abort;
	cmd->out_viommu_id = iommufd_object_id(&viommu->obj);
	rc = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
	if (rc)
		goto err_abort;
	iommufd_object_finalize(ucmd->ictx, &viommu->obj);
	goto out_put_hwpt;

err_abort:
	iommufd_object_abort_and_destroy(ucmd->ictx, &viommu->obj);
out_put_hwpt:
	iommufd_put_object(ucmd->ictx, &hwpt->common.obj);
out_put_idev:
	iommufd_put_object(ucmd->ictx, &idev->obj);
	return rc;
}

/* ---- vDEVICEs -------------------------------------------------------------------------------- */

/* Takes @vdev's link to its device, if nobody took it yet: clears idev->vdev, drops the ref. */
static void iommufd_vdevice_unlink_idev(struct iommufd_vdevice *vdev)
{
	struct iommufd_device *idev = atomic_exchange(&vdev->idev, NULL);

	if (!idev)
		return;
	uiommu_mutex_lock(&idev->lock);
	if (idev->vdev == vdev)
		idev->vdev = NULL;
	/*
	 * Pairs with the reference taken in iommufd_vdevice_alloc_ioctl(). Dropped under the
	 * lock: an unbind that then finds idev->vdev cleared must also find users back down,
	 * or its removal of the device meets this reference and fails with EBUSY. The unbind
	 * waits for this lock, so the device outlives the unlock.
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
	if (!mock_selftest_dev_is(idev->dev)) {
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

bool iommufd_viommu_has_vdev(struct iommufd_viommu *viommu, struct iommufd_device *idev)
{
	bool ok;

	uiommu_mutex_lock(&idev->lock);
	ok = idev->vdev && idev->vdev->viommu == viommu;
	uiommu_mutex_unlock(&idev->lock);
	return ok;
}

/* ---- vIOMMU invalidation --------------------------------------------------------------------- */

static int iommufd_viommu_mock_invalidate_one(void *arg, const void *entry)
{
	const struct iommu_viommu_invalidate_selftest *inv = entry;
	struct iommufd_viommu *viommu = arg;
	_Atomic uint32_t *cache;
	struct iommufd_vdevice *vdev;
	struct iommufd_device *idev;
	unsigned int i;
	int rc = 0;

	if (inv->flags & ~IOMMU_TEST_INVALIDATE_FLAG_ALL)
		return -EOPNOTSUPP;
	if (inv->cache_id > MOCK_DEV_CACHE_ID_MAX)
		return -EINVAL;
	uiommu_mutex_lock(&viommu->lock);
	vdev = iommufd_viommu_find_vdev(viommu, inv->vdev_id);
	idev = vdev ? atomic_load(&vdev->idev) : NULL;
	if (!idev) {
		rc = -EINVAL;
		goto out_unlock;
	}
	/* The device cannot leave while its vDEVICE is listed here (viommu->lock). */
	cache = mock_selftest_dev_cache(idev->dev);
	if (inv->flags & IOMMU_TEST_INVALIDATE_FLAG_ALL) {
		for (i = 0; i != MOCK_SELFTEST_DEV_CACHE_NUM; i++)
			atomic_store(&cache[i], 0);
	} else {
		atomic_store(&cache[inv->cache_id], 0);
	}
out_unlock:
	uiommu_mutex_unlock(&viommu->lock);
	return rc;
}

int iommufd_viommu_invalidate(struct iommufd_ucmd *ucmd, struct iommufd_viommu *viommu)
{
	struct iommu_hwpt_invalidate *cmd = ucmd->cmd;
	struct iommu_viommu_invalidate_selftest inv;

	if (cmd->data_type != IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST) {
		cmd->entry_num = 0;
		return -EINVAL;
	}
	return iommufd_user_array_for_each(
		ucmd, &inv, sizeof(inv),
		offsetofend(struct iommu_viommu_invalidate_selftest, cache_id), false,
		iommufd_viommu_mock_invalidate_one, viommu);
}

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
