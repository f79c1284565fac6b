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
 * Nested HWPTs, fault queues, dirty tracking and invalidation arrive in later layers: HWPT_ALLOC
 * with a paging parent answers EINVAL or EOPNOTSUPP as the kernel does for what it cannot build.
 */
#include <errno.h>
#include <string.h>

#include "iommu/iommu.h"
#include "iommufd/iommufd_private.h"
#include "lib/fail.h"

IOMMUFD_OBJECT_AT_ZERO(struct iommufd_hwpt_paging, common.obj);

#define IOMMUFD_HWPT_PAGING_FLAGS                                                            \
	(IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_PASID)

/* The largest driver data HWPT_ALLOC copies in (every driver's struct is far smaller). */
#define IOMMUFD_HWPT_DATA_MAX 64u

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
	hwpt = iommufd_object_alloc(ictx, hwpt, IOMMUFD_OBJ_HWPT_PAGING);
	if (IS_ERR(hwpt))
		return hwpt;
	/* Pairs with the put in iommufd_hwpt_paging_destroy(). */
	iommufd_object_ref_users(&ioas->obj);
	hwpt->ioas = ioas;
	hwpt->flags = flags;

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

int iommufd_hwpt_alloc(struct iommufd_ucmd *ucmd)
{
	struct iommu_hwpt_alloc *cmd = ucmd->cmd;
	struct iommu_user_data user_data, *ud = NULL;
	unsigned char data[IOMMUFD_HWPT_DATA_MAX];
	struct iommufd_hwpt_paging *hwpt;
	struct iommufd_device *idev;
	struct iommufd_object *pt;
	int rc;

	if (cmd->flags & ~(IOMMUFD_HWPT_PAGING_FLAGS | IOMMU_HWPT_FAULT_ID_VALID))
		return -EOPNOTSUPP;
	if (cmd->__reserved || cmd->__reserved2)
		return -EOPNOTSUPP;
	if ((cmd->data_type == IOMMU_HWPT_DATA_NONE && cmd->data_len) ||
	    (cmd->data_type != IOMMU_HWPT_DATA_NONE && (!cmd->data_len || !cmd->data_uptr)))
		return -EINVAL;

	idev = iommufd_get_device(ucmd->ictx, cmd->dev_id);
	if (IS_ERR(idev))
		return PTR_ERR(idev);
	pt = iommufd_get_object(ucmd->ictx, cmd->pt_id, IOMMUFD_OBJ_ANY);
	if (IS_ERR(pt)) {
		rc = PTR_ERR(pt);
		goto out_put_idev;
	}
	if (pt->type == IOMMUFD_OBJ_HWPT_PAGING) {
		struct iommufd_hwpt_paging *parent =
			container_of(pt, struct iommufd_hwpt_paging, common.obj);

		/* A nested HWPT needs driver data and a NEST_PARENT parent; none is built yet. */
		if (cmd->data_type == IOMMU_HWPT_DATA_NONE ||
		    !(parent->flags & IOMMU_HWPT_ALLOC_NEST_PARENT))
			rc = -EINVAL;
		else
			rc = -EOPNOTSUPP;
		goto out_put_pt;
	}
	if (pt->type != IOMMUFD_OBJ_IOAS) {
		rc = -EINVAL;
		goto out_put_pt;
	}
	/* No fault queue exists before the fault layer: every fault ID names nothing. */
	if (cmd->flags & IOMMU_HWPT_FAULT_ID_VALID) {
		rc = -ENOENT;
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
	cmd->out_hwpt_id = iommufd_object_id(&hwpt->common.obj);
	rc = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
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
