// SPDX-License-Identifier: MIT
/*
 * Hardware page tables: the IOMMUFD_OBJ_HWPT_PAGING object and IOMMU_HWPT_ALLOC.
 *
 * A paging HWPT is an IOMMU domain of a device's driver that mirrors one IOAS: it is made empty
 * by the driver, then handed to the IOAS engine (iopt_table_add_domain()), which pins and maps
 * every area into it and keeps it in step with MAP and UNMAP until the HWPT is destroyed. The
 * HWPT holds a users reference on its IOAS, so the IOAS cannot be destroyed under it (EBUSY);
 * each device attached to it holds a users reference on the HWPT in turn.
 *
 * Two ways to make one:
 *  - HWPT_ALLOC with pt_id = an IOAS: a user-managed HWPT. It lives until IOMMU_DESTROY (or the
 *    context's close) and may be attached to any number of compatible devices.
 *  - an attach of a device to an IOAS (device.c): an automatic HWPT. It sits in the IOAS's
 *    auto_hwpts list, where later attaches to the same IOAS find it and reuse it when the
 *    driver accepts, and it is destroyed at its last detach (iommufd_hw_pagetable_put()), so its
 *    ID then names nothing.
 *
 * Nested HWPTs (IOMMUFD_OBJ_HWPT_NESTED) are user-managed stage-1 tables: HWPT_ALLOC with pt_id
 * a NEST_PARENT paging HWPT, or a vIOMMU (whose parent HWPT is then used), and driver data. The
 * driver builds the domain from the data; iommufd keeps the parent alive with a users reference
 * (on the vIOMMU instead, when made from one, which itself holds the parent), so destroying the
 * parent while a nested child exists is EBUSY. The user keeps the stage-1 caches coherent with
 * IOMMU_HWPT_INVALIDATE: an array of driver entries, handed to the driver's op (the nested
 * domain's cache_invalidate_user, or the vIOMMU's cache_invalidate), which walks it through this
 * file's one loop (iommufd_user_array_for_each()), with the count done reported back even when
 * an entry fails. Drivers are reached only through their ops (iommu/iommu.h,
 * iommu/iommufd_driver.h); a driver without the op answers EOPNOTSUPP.
 *
 * A HWPT made with IOMMU_HWPT_ALLOC_PASID is "PASID-compatible" (pasid_compat): only such a
 * HWPT may be attached at a PASID, and while a device has PASIDs attached its RID may only take
 * such a HWPT (device.c).
 *
 * A HWPT allocated with IOMMU_HWPT_FAULT_ID_VALID (paging or nested, never a nesting parent)
 * sends its domain's I/O page faults to that fault queue (eventq.c): it holds the queue with a
 * users reference until its destroy, and its domain's iopf_handler is iommufd's. Attaches go
 * through the core's handle calls (device.c) so that the faults find the attachment.
 */
#include <errno.h>
#include <string.h>

#include "iommu/iommu.h"
#include "iommu/iommufd_driver.h"
#include "iommufd/iommufd_private.h"
#include "iommufd/viommu.h"
#include "lib/fail.h"

IOMMUFD_OBJECT_AT_ZERO(struct iommufd_hwpt_paging, common.obj);
IOMMUFD_OBJECT_AT_ZERO(struct iommufd_hwpt_nested, common.obj);

#define IOMMUFD_HWPT_PAGING_FLAGS                                                            \
	(IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_PASID)

void iommufd_hwpt_paging_destroy(struct iommufd_object *obj)
{
	struct iommufd_hwpt_paging *hwpt =
		container_of(obj, struct iommufd_hwpt_paging, common.obj);
	struct iommufd_ioas *ioas = hwpt->ioas;

	if (hwpt->auto_linked) {
		struct iommufd_hwpt_paging **pos;

		uiommu_mutex_lock(&ioas->mutex);
		for (pos = &ioas->auto_hwpts; *pos; pos = &(*pos)->auto_next) {
			if (*pos == hwpt) {
				*pos = hwpt->auto_next;
				break;
			}
		}
		uiommu_mutex_unlock(&ioas->mutex);
	}
	if (hwpt->common.domain) {
		iopt_table_remove_domain(&ioas->iopt, hwpt->common.domain);
		iommu_domain_free(hwpt->common.domain);
	}
	iommufd_hwpt_put_fault(&hwpt->common);
	/* Pairs with the reference taken in iommufd_hwpt_paging_alloc(). */
	iommufd_object_unref_users(&ioas->obj);
}

/**
 * iommufd_hwpt_paging_alloc() - a new, unpublished paging HWPT of @idev's driver over @ioas
 * @flags: IOMMU_HWPT_ALLOC_NEST_PARENT / _DIRTY_TRACKING / _PASID
 * @user_data: driver data for the domain, or NULL
 *
 * The domain is filled with the IOAS's areas before this returns. The caller publishes the HWPT
 * with iommufd_object_finalize() or undoes it with iommufd_object_abort_and_destroy().
 *
 * Return: the HWPT, or ERR_PTR(-EOPNOTSUPP) (flags the driver lacks), -EADDRINUSE (areas
 * outside the aperture or off its page size), -EFAULT (a page that cannot be pinned), -ENOMEM.
 */
struct iommufd_hwpt_paging *iommufd_hwpt_paging_alloc(struct iommufd_ctx *ictx,
						      struct iommufd_ioas *ioas,
						      struct iommufd_device *idev, uint32_t flags,
						      const struct iommu_user_data *user_data)
{
	struct iommufd_hwpt_paging *hwpt;
	struct iommu_domain *domain;
	int rc;

	if (flags & ~IOMMUFD_HWPT_PAGING_FLAGS)
		return ERR_PTR(-EOPNOTSUPP);
	/* Whatever the driver would allow: the device must be trackable (the kernel's check). */
	if ((flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) &&
	    !iommu_device_capable(idev->dev, IOMMU_CAP_DIRTY_TRACKING))
		return ERR_PTR(-EOPNOTSUPP);
	hwpt = iommufd_object_alloc(ictx, hwpt, IOMMUFD_OBJ_HWPT_PAGING);
	if (IS_ERR(hwpt))
		return hwpt;
	/* Pairs with the put in iommufd_hwpt_paging_destroy(). */
	iommufd_object_ref_users(&ioas->obj);
	hwpt->ioas = ioas;
	hwpt->flags = flags;
	hwpt->common.pasid_compat = flags & IOMMU_HWPT_ALLOC_PASID;

	domain = iommu_paging_domain_alloc_flags(idev->dev, flags, user_data);
	if (IS_ERR(domain)) {
		rc = PTR_ERR(domain);
		goto err_abort;
	}
	rc = iopt_table_add_domain(&ioas->iopt, domain);
	if (rc) {
		iommu_domain_free(domain);
		goto err_abort;
	}
	hwpt->common.domain = domain;
	return hwpt;

err_abort:
	iommufd_object_abort_and_destroy(ictx, &hwpt->common.obj);
	return ERR_PTR(rc);
}

/**
 * iommufd_hw_pagetable_put() - drop an attachment's users reference on @hwpt
 * An automatic HWPT that nothing else holds any more is destroyed, so its ID names nothing.
 * Call with no iommufd lock held (the destroy takes the IOAS's mutex).
 */
void iommufd_hw_pagetable_put(struct iommufd_ctx *ictx, struct iommufd_hw_pagetable *hwpt)
{
	struct iommufd_hwpt_paging *paging =
		container_of(hwpt, struct iommufd_hwpt_paging, common);
	uint32_t id = iommufd_object_id(&hwpt->obj);
	bool auto_domain = hwpt->obj.type == IOMMUFD_OBJ_HWPT_PAGING && paging->auto_domain;

	/* Read before the put: afterwards the HWPT may be gone. */
	iommufd_object_unref_users(&hwpt->obj);
	if (auto_domain)
		/* EBUSY when other devices still use it; ENOENT when someone else won the race. */
		iommufd_object_remove(ictx, &hwpt->obj, id, 0);
}

/* ---- nested HWPTs ---------------------------------------------------------------------------- */

void iommufd_hwpt_nested_destroy(struct iommufd_object *obj)
{
	struct iommufd_hwpt_nested *hwpt = container_of(obj, struct iommufd_hwpt_nested, common.obj);

	iommu_domain_free(hwpt->common.domain);
	iommufd_hwpt_put_fault(&hwpt->common);
	/* Pairs with the reference taken in iommufd_hwpt_nested_alloc(). */
	if (hwpt->viommu)
		iommufd_object_unref_users((struct iommufd_object *)hwpt->viommu);
	else
		iommufd_object_unref_users(&hwpt->parent->common.obj);
}

/*
 * A new, unpublished nested HWPT over @parent made by @idev's driver (domain_alloc_nested), or,
 * with @viommu, by the vIOMMU's driver (alloc_domain_nested) over its parent, from the user's
 * data (HWPT_ALLOC's data_type, data_len, data_uptr). The kernel's checks and order:
 * unsupported flags or no such op EOPNOTSUPP; then, without a vIOMMU, a parent that is
 * automatic, not a NEST_PARENT or another driver's EINVAL; then the data's copy (EFAULT, which
 * the kernel's driver meets first thing) and the driver's own.
 */
static struct iommufd_hwpt_nested *
iommufd_hwpt_nested_alloc(struct iommufd_ucmd *ucmd, struct iommufd_hwpt_paging *parent,
			  struct iommufd_viommu *viommu, struct iommufd_device *idev, uint32_t flags)
{
	const struct iommu_ops *ops = iommu_device_ops(idev->dev);
	uint32_t drv_flags = flags & IOMMU_HWPT_ALLOC_PASID ? IOMMU_DOMAIN_ALLOC_PASID : 0;
	struct iommu_hwpt_alloc *cmd = ucmd->cmd;
	unsigned char data[IOMMU_USER_DATA_MAX];
	struct iommu_user_data user_data = {
		.type = cmd->data_type,
		.data = data,
		.len = cmd->data_len < sizeof(data) ? cmd->data_len : sizeof(data),
	};
	struct iommufd_ctx *ictx = ucmd->ictx;
	struct iommufd_hwpt_nested *hwpt;
	struct iommu_domain *domain;
	int rc;

	if (flags & ~IOMMU_HWPT_ALLOC_PASID)
		return ERR_PTR(-EOPNOTSUPP);
	if (viommu) {
		if (!viommu->drv->ops->alloc_domain_nested)
			return ERR_PTR(-EOPNOTSUPP);
	} else {
		if (!ops || !ops->domain_alloc_nested)
			return ERR_PTR(-EOPNOTSUPP);
		if (parent->auto_domain || !(parent->flags & IOMMU_HWPT_ALLOC_NEST_PARENT) ||
		    parent->common.domain->owner != ops)
			return ERR_PTR(-EINVAL);
	}
	rc = uiommu_copy_from_user(ucmd->mm, data, cmd->data_uptr, user_data.len);
	if (rc)
		return ERR_PTR(rc);

	hwpt = iommufd_object_alloc(ictx, hwpt, IOMMUFD_OBJ_HWPT_NESTED);
	if (IS_ERR(hwpt))
		return hwpt;
	if (uiommu_should_fail())
		domain = ERR_PTR(-ENOMEM);
	else if (viommu)
		domain = viommu->drv->ops->alloc_domain_nested(viommu->drv, drv_flags, &user_data);
	else
		domain = ops->domain_alloc_nested(idev->dev, parent->common.domain, drv_flags,
						  &user_data);
	if (IS_ERR(domain)) {
		rc = PTR_ERR(domain);
		goto err_abort;
	}
	/* A driver bug, answered as the kernel does. */
	if (WARN_ON(domain->type != IOMMU_DOMAIN_NESTED)) {
		iommu_domain_free(domain);
		rc = -EOPNOTSUPP;
		goto err_abort;
	}
	hwpt->common.domain = domain;
	hwpt->common.pasid_compat = flags & IOMMU_HWPT_ALLOC_PASID;
	hwpt->parent = parent;
	hwpt->viommu = viommu;
	/* Pairs with the put in iommufd_hwpt_nested_destroy(). */
	if (viommu)
		iommufd_object_ref_users((struct iommufd_object *)viommu);
	else
		iommufd_object_ref_users(&parent->common.obj);
	return hwpt;

err_abort:
	iommufd_object_abort(ictx, &hwpt->common.obj);
	return ERR_PTR(rc);
}

/* HWPT_ALLOC with pt_id = a paging HWPT or a vIOMMU: a nested HWPT. */
static int iommufd_hwpt_nested_alloc_ioctl(struct iommufd_ucmd *ucmd, struct iommufd_device *idev,
					   struct iommufd_object *pt)
{
	struct iommu_hwpt_alloc *cmd = ucmd->cmd;
	struct iommufd_viommu *viommu = NULL;
	struct iommufd_hwpt_paging *parent;
	struct iommufd_hwpt_nested *hwpt;
	int rc;

	if (cmd->data_type == IOMMU_HWPT_DATA_NONE)
		return -EINVAL;
	if (pt->type == IOMMUFD_OBJ_VIOMMU) {
		viommu = (struct iommufd_viommu *)pt;
		parent = iommufd_viommu_parent(viommu);
		/* The vIOMMU stands for one physical instance: the device must sit behind it. */
		if (viommu->drv->iommu_dev != idev->dev->iommu)
			return -EINVAL;
	} else {
		parent = container_of(pt, struct iommufd_hwpt_paging, common.obj);
	}
	if (cmd->flags & ~(IOMMU_HWPT_ALLOC_PASID | IOMMU_HWPT_FAULT_ID_VALID))
		return -EOPNOTSUPP;

	hwpt = iommufd_hwpt_nested_alloc(ucmd, parent, viommu, idev,
					 cmd->flags & ~IOMMU_HWPT_FAULT_ID_VALID);
	if (IS_ERR(hwpt))
		return PTR_ERR(hwpt);
	if (cmd->flags & IOMMU_HWPT_FAULT_ID_VALID) {
		rc = iommufd_hwpt_set_fault(ucmd->ictx, &hwpt->common, cmd->fault_id);
		if (rc)
			goto err_abort;
	}
	cmd->out_hwpt_id = iommufd_object_id(&hwpt->common.obj);
	rc = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
	if (rc)
		goto err_abort;
	iommufd_object_finalize(ucmd->ictx, &hwpt->common.obj);
	return 0;

err_abort:
	iommufd_object_abort_and_destroy(ucmd->ictx, &hwpt->common.obj);
	return rc;
}

/*
 * Bounds of an invalidation array, v7.2's: one call must not keep a CPU for long, and the
 * entry length also bounds the scan of an entry's tail for non-zero bytes. They apply only
 * when there are entries (entry_num 0 checks the type and nothing else).
 */
#define IOMMUFD_INVALIDATE_ENTRY_NUM_MAX (1u << 19)
#define IOMMUFD_INVALIDATE_ENTRY_LEN_MAX uiommu_page_size

/*
 * Entry @index of the invalidation array into @dst (@ksize bytes, zero-filled past a shorter
 * entry). @min_len: the end of the entry's first-version fields; a shorter entry_len is
 * EINVAL. @no_longer: the driver copies entry by entry as the kernel's
 * iommu_copy_struct_from_user_array() does, which refuses an entry longer than its struct
 * (EINVAL); without it, the full-array copy's rule: bytes past @ksize must be zero (E2BIG).
 */
static int iommufd_user_array_entry(struct iommufd_ucmd *ucmd, void *dst, size_t ksize,
				    size_t min_len, uint32_t index, bool no_longer)
{
	struct iommu_hwpt_invalidate *cmd = ucmd->cmd;
	uint64_t src = cmd->data_uptr + (uint64_t)index * cmd->entry_len;
	size_t n = cmd->entry_len < ksize ? cmd->entry_len : ksize;
	unsigned char byte;
	size_t off;
	int rc;

	if (cmd->entry_len < min_len || (no_longer && cmd->entry_len > ksize))
		return -EINVAL;
	memset(dst, 0, ksize);
	rc = uiommu_copy_from_user(ucmd->mm, dst, src, n);
	if (rc)
		return rc;
	for (off = ksize; off < cmd->entry_len; off++) {
		rc = uiommu_copy_from_user(ucmd->mm, &byte, src + off, 1);
		if (rc)
			return rc;
		if (byte)
			return -E2BIG;
	}
	return 0;
}

/**
 * iommufd_user_array_for_each() - the one loop over an invalidation array's entries
 * @entry: @ksize bytes each entry is copied into in turn (see iommufd_user_array_entry())
 * @handle: the driver's work for one entry, given @arg
 *
 * Drivers reach it through iommu_user_array_for_each() (array->for_each). Stops at the first
 * entry that cannot be copied or handled. array->entry_num becomes the number of entries
 * handled: the ABI's answer, on failure as on success.
 * Return: 0, or the failed entry's error.
 */
static int iommufd_user_array_for_each(struct iommu_user_data_array *array, void *entry,
				       size_t ksize, size_t min_len, bool no_longer,
				       int (*handle)(void *arg, const void *entry), void *arg)
{
	struct iommufd_ucmd *ucmd = array->priv;
	uint32_t i;
	int rc = 0;

	for (i = 0; i != array->entry_num; i++) {
		rc = iommufd_user_array_entry(ucmd, entry, ksize, min_len, i, no_longer);
		if (rc)
			break;
		rc = handle(arg, entry);
		if (rc)
			break;
	}
	array->entry_num = i;
	return rc;
}

int iommufd_hwpt_invalidate(struct iommufd_ucmd *ucmd)
{
	struct iommu_hwpt_invalidate *cmd = ucmd->cmd;
	struct iommu_user_data_array array = {
		.type = cmd->data_type,
		.entry_len = cmd->entry_len,
		.entry_num = cmd->entry_num,
		.for_each = iommufd_user_array_for_each,
		.priv = ucmd,
	};
	struct iommu_domain *domain;
	struct iommu_viommu *drv;
	struct iommufd_object *obj;
	uint32_t done_num = 0;
	int rc, rc_respond;

	/* Every answer, errors included, tells the caller how many entries were done. */
	if (cmd->__reserved)
		rc = -EOPNOTSUPP;
	else if (cmd->entry_num &&
		 (!cmd->data_uptr || !cmd->entry_len ||
		  cmd->entry_len > IOMMUFD_INVALIDATE_ENTRY_LEN_MAX ||
		  cmd->entry_num > IOMMUFD_INVALIDATE_ENTRY_NUM_MAX))
		rc = -EINVAL;
	else
		rc = 0;
	obj = rc ? ERR_PTR(rc) : iommufd_get_object(ucmd->ictx, cmd->hwpt_id, IOMMUFD_OBJ_ANY);
	if (IS_ERR(obj)) {
		cmd->entry_num = 0;
		rc_respond = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
		return rc_respond ? rc_respond : PTR_ERR(obj);
	}
	/* Only a driver that ran reports entries done: 0 for every answer of the core's own. */
	if (obj->type == IOMMUFD_OBJ_HWPT_NESTED) {
		domain = container_of(obj, struct iommufd_hwpt_nested, common.obj)->common.domain;
		if (domain->ops->cache_invalidate_user) {
			rc = domain->ops->cache_invalidate_user(domain, &array);
			done_num = array.entry_num;
		} else {
			rc = -EOPNOTSUPP;
		}
	} else if (obj->type == IOMMUFD_OBJ_VIOMMU) {
		drv = ((struct iommufd_viommu *)obj)->drv;
		if (drv->ops->cache_invalidate) {
			rc = drv->ops->cache_invalidate(drv, &array);
			done_num = array.entry_num;
		} else {
			rc = -EOPNOTSUPP;
		}
	} else {
		rc = -EINVAL;
	}
	cmd->entry_num = done_num;
	/* entry_num tells how far it got, also on failure. */
	rc_respond = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
	iommufd_put_object(ucmd->ictx, obj);
	return rc ? rc : rc_respond;
}

int iommufd_hwpt_alloc(struct iommufd_ucmd *ucmd)
{
	struct iommu_hwpt_alloc *cmd = ucmd->cmd;
	struct iommu_user_data user_data = { 0 }, *ud = NULL;
	unsigned char data[IOMMU_USER_DATA_MAX];
	struct iommufd_hwpt_paging *hwpt;
	struct iommufd_device *idev;
	struct iommufd_object *pt;
	int rc;

	if (cmd->flags & ~(IOMMUFD_HWPT_PAGING_FLAGS | IOMMU_HWPT_FAULT_ID_VALID))
		return -EOPNOTSUPP;
	if (cmd->__reserved || cmd->__reserved2)
		return -EOPNOTSUPP;
	if ((cmd->data_type == IOMMU_HWPT_DATA_NONE && cmd->data_len) ||
	    (cmd->data_type != IOMMU_HWPT_DATA_NONE && !cmd->data_len))
		return -EINVAL;

	idev = iommufd_get_device(ucmd->ictx, cmd->dev_id);
	if (IS_ERR(idev))
		return PTR_ERR(idev);
	pt = iommufd_get_object(ucmd->ictx, cmd->pt_id, IOMMUFD_OBJ_ANY);
	if (IS_ERR(pt)) {
		rc = PTR_ERR(pt);
		goto out_put_idev;
	}
	if (pt->type == IOMMUFD_OBJ_HWPT_PAGING || pt->type == IOMMUFD_OBJ_VIOMMU) {
		rc = iommufd_hwpt_nested_alloc_ioctl(ucmd, idev, pt);
		goto out_put_pt;
	}
	if (pt->type != IOMMUFD_OBJ_IOAS) {
		rc = -EINVAL;
		goto out_put_pt;
	}
	/* A paging domain that can fault cannot also be a nesting parent. */
	if ((cmd->flags & IOMMU_HWPT_FAULT_ID_VALID) &&
	    (cmd->flags & IOMMU_HWPT_ALLOC_NEST_PARENT)) {
		rc = -EOPNOTSUPP;
		goto out_put_pt;
	}
	if (cmd->data_type != IOMMU_HWPT_DATA_NONE) {
		uint32_t len = cmd->data_len < sizeof(data) ? cmd->data_len : sizeof(data);

		rc = uiommu_copy_from_user(ucmd->mm, data, cmd->data_uptr, len);
		if (rc)
			goto out_put_pt;
		user_data.type = cmd->data_type;
		user_data.data = data;
		user_data.len = len;
		ud = &user_data;
	}

	hwpt = iommufd_hwpt_paging_alloc(ucmd->ictx, container_of(pt, struct iommufd_ioas, obj),
					 idev, cmd->flags & IOMMUFD_HWPT_PAGING_FLAGS, ud);
	if (IS_ERR(hwpt)) {
		rc = PTR_ERR(hwpt);
		goto out_put_pt;
	}
	rc = 0;
	if (cmd->flags & IOMMU_HWPT_FAULT_ID_VALID)
		rc = iommufd_hwpt_set_fault(ucmd->ictx, &hwpt->common, cmd->fault_id);
	if (!rc) {
		cmd->out_hwpt_id = iommufd_object_id(&hwpt->common.obj);
		rc = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
	}
	if (rc) {
		iommufd_object_abort_and_destroy(ucmd->ictx, &hwpt->common.obj);
		goto out_put_pt;
	}
	iommufd_object_finalize(ucmd->ictx, &hwpt->common.obj);
out_put_pt:
	iommufd_put_object(ucmd->ictx, pt);
out_put_idev:
	iommufd_put_object(ucmd->ictx, &idev->obj);
	return rc;
}
