// SPDX-License-Identifier: MIT
/*
 * HW queues: IOMMU_HW_QUEUE_ALLOC on the selftest vIOMMU.
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
 * The driver side is the selftest mock's (type IOMMU_HW_QUEUE_TYPE_SELFTEST): at most
 * IOMMU_TEST_HW_QUEUE_MAX queues per vIOMMU, one per index (EINVAL past the end, EEXIST for a
 * taken index), and queue n needs queue n - 1 (EIO without it), which it holds with a users
 * reference so that queues go in reverse order (EBUSY destroying n - 1 while n exists). The
 * checks come in the kernel's order: the command's fields, the vIOMMU, the IOVA range, then
 * the driver's index rules.
 *
 * Locking: viommu->lock protects viommu->hw_queues. Nothing else of a queue changes after
 * its publication.
 */
#include <errno.h>

#include "iommu/iommu.h"
#include "iommufd/iommufd_private.h"
#include "iommufd/viommu.h"
#include "lib/fail.h"

struct iommufd_hw_queue {
	struct iommufd_object obj;
	struct iommufd_viommu *viommu; /* a users reference; constant */
	struct iommufd_hw_queue *prev; /* queue index - 1: a users reference, or NULL; constant */
	uint32_t index;                /* constant */
	uint64_t iova;                 /* locked in the parent IOAS; constant */
	uint64_t length;
	uint64_t base_pa;              /* the host address behind iova; constant */
	bool linked;                   /* in viommu->hw_queues (viommu->lock) */
};

IOMMUFD_OBJECT_AT_ZERO(struct iommufd_hw_queue, obj);

static struct io_pagetable *iommufd_hw_queue_iopt(struct iommufd_viommu *viommu)
{
	return &iommufd_viommu_parent(viommu)->ioas->iopt;
}

/* Takes @hw_queue out of its vIOMMU's table and lets go of its predecessor. */
static void iommufd_hw_queue_unlink(struct iommufd_hw_queue *hw_queue)
{
	struct iommufd_viommu *viommu = hw_queue->viommu;

	uiommu_mutex_lock(&viommu->lock);
	if (hw_queue->linked) {
		WARN_ON(viommu->hw_queues[hw_queue->index] != hw_queue);
		viommu->hw_queues[hw_queue->index] = NULL;
		hw_queue->linked = false;
	}
	uiommu_mutex_unlock(&viommu->lock);
	if (hw_queue->prev) {
		/* Pairs with the reference taken in iommufd_hw_queue_mock_link(). */
		iommufd_object_unref_users(&hw_queue->prev->obj);
		hw_queue->prev = NULL;
	}
}

void iommufd_hw_queue_destroy(struct iommufd_object *obj)
{
	struct iommufd_hw_queue *hw_queue = container_of(obj, struct iommufd_hw_queue, obj);
	struct iommufd_viommu *viommu = hw_queue->viommu;

	iommufd_hw_queue_unlink(hw_queue);
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

/* The mock's rules: an index in range, free, following a live queue. Publishes @hw_queue. */
static int iommufd_hw_queue_mock_link(struct iommufd_ctx *ictx, struct iommufd_hw_queue *hw_queue)
{
	struct iommufd_viommu *viommu = hw_queue->viommu;
	struct iommufd_hw_queue *prev = NULL;
	uint32_t index = hw_queue->index;
	int rc = 0;

	if (index >= IOMMU_TEST_HW_QUEUE_MAX)
		return -EINVAL;
	uiommu_mutex_lock(&viommu->lock);
	if (viommu->hw_queues[index]) {
		rc = -EEXIST;
		goto out_unlock;
	}
	if (index) {
		prev = viommu->hw_queues[index - 1];
		if (!prev) {
			rc = -EIO;
			goto out_unlock;
		}
		/* Pairs with the put in iommufd_hw_queue_unlink(). */
		iommufd_object_ref_users(&prev->obj);
		hw_queue->prev = prev;
	}
	viommu->hw_queues[index] = hw_queue;
	hw_queue->linked = true;
	/* Published under the lock: a racing alloc of the same index sees it taken. */
	iommufd_object_finalize(ictx, &hw_queue->obj);
out_unlock:
	uiommu_mutex_unlock(&viommu->lock);
	return rc;
}

int iommufd_hw_queue_alloc_ioctl(struct iommufd_ucmd *ucmd)
{
	struct iommu_hw_queue_alloc *cmd = ucmd->cmd;
	struct iommufd_hw_queue *hw_queue;
	struct iommufd_viommu *viommu;
	struct iommufd_object *obj;
	struct io_pagetable *iopt;
	uint64_t last;
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
	if (viommu->type != IOMMU_VIOMMU_TYPE_SELFTEST ||
	    cmd->type != IOMMU_HW_QUEUE_TYPE_SELFTEST) {
		rc = -EOPNOTSUPP;
		goto out_put_viommu;
	}

	hw_queue = iommufd_object_alloc(ucmd->ictx, hw_queue, IOMMUFD_OBJ_HW_QUEUE);
	if (IS_ERR(hw_queue)) {
		rc = PTR_ERR(hw_queue);
		goto out_put_viommu;
	}
	hw_queue->viommu = viommu;
	hw_queue->index = cmd->index;
	hw_queue->iova = cmd->nesting_parent_iova;
	hw_queue->length = cmd->length;
	iopt = iommufd_hw_queue_iopt(viommu);
	rc = uiommu_should_fail() ? -ENOMEM :
				    iopt_lock_iova(iopt, hw_queue->iova, hw_queue->length);
	if (rc)
		goto err_abort;
	rc = iommufd_hw_queue_translate(iommufd_viommu_parent(viommu)->common.domain,
					hw_queue->iova, hw_queue->length, &hw_queue->base_pa);
	if (rc)
		goto err_unlock_iova;
	cmd->out_hw_queue_id = iommufd_object_id(&hw_queue->obj);
	rc = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
	if (rc)
		goto err_unlock_iova;
	/* Pairs with the put in iommufd_hw_queue_destroy(); taken before publication. */
	iommufd_object_ref_users(&viommu->obj);
	rc = iommufd_hw_queue_mock_link(ucmd->ictx, hw_queue);
	if (rc)
		goto err_unref_viommu;
	goto out_put_viommu;

err_unref_viommu:
	iommufd_object_unref_users(&viommu->obj);
err_unlock_iova:
	iopt_unlock_iova(iopt, hw_queue->iova, hw_queue->length);
err_abort:
	iommufd_object_abort(ucmd->ictx, &hw_queue->obj);
out_put_viommu:
	iommufd_put_object(ucmd->ictx, &viommu->obj);
	return rc;
}
