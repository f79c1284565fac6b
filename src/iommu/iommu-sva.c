// SPDX-License-Identifier: MIT
/*
 * Shared virtual addressing: a device works in a process's address space, through a PASID.
 *
 * Data model (semantics: ../shared/spec/iommu-core.md section 5.3, invariant 21).
 *
 *   mm->iommu_mm   made at the mm's first bind: its PASID, from the global PASID space, and
 *                  the list of SVA domains translating this mm (one per driver or domain
 *                  format, shared by every device that can take it). The PASID stays with the
 *                  mm until the mm is freed (mm_pasid_drop()), whatever is bound meanwhile, so a
 *                  process keeps one PASID for its whole life.
 *   SVA domain     an iommu_domain of type SVA made by the driver's domain_alloc_sva(): it
 *                  translates through the mm (domain->mm, a reference) and handles its faults
 *                  by faulting the pages in (iommu_sva_iopf_handler()). domain->users counts the
 *                  devices attached to it; the last unbind frees it.
 *   struct iommu_sva  one bond of (device, mm): the attach handle the core publishes at the
 *                  mm's PASID in the device's group, plus the number of binds that returned it.
 *                  Binding the same pair again returns the same bond, users + 1.
 *
 * Locking. One global mutex, iommu_sva_lock, serialises every bind and unbind and protects
 * mm->iommu_mm, the SVA domain lists, domain->users and iommu_sva.users. Order:
 * iommu_sva_lock -> group->mutex (the PASID attach and detach take it) -> the PASID table's
 * lock. The fault path takes none of these: the handle lookup is the core's, and the domain and
 * its mm live at least until the detach that unpublishes the handle returns.
 */
#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>

#include "iommu/iommu.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "lib/lockdep.h"
#include "mm/mm.h"

/* The SVA state of an address space (mm->iommu_mm). */
struct iommu_mm_data {
	uint32_t pasid;                   /* constant */
	struct iommu_domain *sva_domains; /* linked by sva_next; iommu_sva_lock */
};

/* Protects every iommu_mm_data; order: after a DMA handle's sva_lock, before group->mutex. */
static struct uiommu_mutex iommu_sva_lock;
static pthread_once_t iommu_sva_once = PTHREAD_ONCE_INIT;

static void iommu_sva_lock_init(void)
{
	uiommu_mutex_init(&iommu_sva_lock);
}

static void iommu_sva_lock_take(void)
{
	pthread_once(&iommu_sva_once, iommu_sva_lock_init);
	uiommu_mutex_lock(&iommu_sva_lock);
}

/*
 * The mm's SVA state, made at its first bind with a PASID that @dev can use. -EOVERFLOW when
 * the mm already has a PASID beyond @dev's range, -ENOSPC when no PASID is left, -ENOMEM.
 */
static struct iommu_mm_data *iommu_alloc_mm_data(struct uiommu_mm *mm, struct device *dev)
{
	struct iommu_mm_data *iommu_mm;

	lockdep_assert_held(&iommu_sva_lock);
	if (mm->iommu_mm) {
		if (mm->iommu_mm->pasid >= dev->iommu_data->max_pasids)
			return ERR_PTR(-EOVERFLOW);
		return mm->iommu_mm;
	}
	iommu_mm = uiommu_zalloc(sizeof(*iommu_mm));
	if (!iommu_mm)
		return ERR_PTR(-ENOMEM);
	iommu_mm->pasid = iommu_alloc_global_pasid(dev);
	if (iommu_mm->pasid == IOMMU_PASID_INVALID) {
		uiommu_free(iommu_mm);
		return ERR_PTR(-ENOSPC);
	}
	/*
	 * Published under iommu_sva_lock, which every reader of mm->iommu_mm holds: no ordering
	 * beyond the lock is needed (the kernel's release store serves lock-free readers we lack).
	 */
	mm->iommu_mm = iommu_mm;
	return iommu_mm;
}

void mm_pasid_drop(struct uiommu_mm *mm)
{
	struct iommu_mm_data *iommu_mm;

	iommu_sva_lock_take();
	iommu_mm = mm->iommu_mm;
	mm->iommu_mm = NULL;
	uiommu_mutex_unlock(&iommu_sva_lock);
	if (!iommu_mm)
		return;
	/* Every SVA domain holds a reference on the mm: none can be left when it is freed. */
	WARN_ON(iommu_mm->sva_domains);
	iommu_free_global_pasid(iommu_mm->pasid);
	uiommu_free(iommu_mm);
}

static int iommu_sva_iopf_handler(struct iopf_group *group);

/* A new SVA domain of @dev's driver for @mm; the core's part of it is set here. */
static struct iommu_domain *iommu_sva_domain_alloc(struct device *dev, struct uiommu_mm *mm)
{
	const struct iommu_ops *ops = iommu_device_ops(dev);
	struct iommu_domain *domain;

	if (!ops || !ops->domain_alloc_sva)
		return ERR_PTR(-EOPNOTSUPP);
	if (uiommu_should_fail())
		return ERR_PTR(-ENOMEM);
	domain = ops->domain_alloc_sva(dev, mm);
	if (IS_ERR_OR_NULL(domain))
		return domain ? domain : ERR_PTR(-ENOMEM);
	__iommu_domain_init(domain, IOMMU_DOMAIN_SVA, ops);
	/* Put by iommu_domain_free() (the kernel's mmgrab()/mmdrop()). */
	domain->mm = uiommu_mm_get(mm);
	domain->iopf_handler = iommu_sva_iopf_handler;
	return domain;
}

/**
 * iommu_sva_bind_device() - let @dev work in @mm through the mm's PASID
 *
 * The same (device, mm) again gives the same bond with one more user. A domain of the mm that
 * @dev's driver accepts is shared; otherwise a new one is made.
 *
 * Return: the bond (give it back with iommu_sva_unbind_device()), or ERR_PTR(-ENODEV) (no
 * group), -EOVERFLOW (the mm's PASID is beyond @dev's range), -ENOSPC (no PASID left), -EBUSY
 * (another mm, or a non-SVA domain, is on that PASID), -EOPNOTSUPP (no SVA in the driver), -EINVAL
 * or -ENOMEM, or the driver's error.
 */
struct iommu_sva *iommu_sva_bind_device(struct device *dev, struct uiommu_mm *mm)
{
	struct iommu_group *group = dev->iommu_group;
	struct iommu_attach_handle *attach_handle;
	struct iommu_mm_data *iommu_mm;
	struct iommu_domain *domain;
	struct iommu_sva *handle;
	int ret;

	if (!group || !dev->iommu_data)
		return ERR_PTR(-ENODEV);

	iommu_sva_lock_take();
	iommu_mm = iommu_alloc_mm_data(mm, dev);
	if (IS_ERR(iommu_mm)) {
		ret = PTR_ERR(iommu_mm);
		goto out_unlock;
	}

	/* A bond of this device to this PASID already? */
	attach_handle = iommu_attach_handle_get(group, iommu_mm->pasid, IOMMU_DOMAIN_SVA);
	if (!IS_ERR(attach_handle)) {
		handle = container_of(attach_handle, struct iommu_sva, handle);
		if (attach_handle->domain->mm != mm) {
			ret = -EBUSY;
			goto out_unlock;
		}
		handle->users++;
		uiommu_mutex_unlock(&iommu_sva_lock);
		return handle;
	}
	if (PTR_ERR(attach_handle) != -ENOENT) {
		ret = PTR_ERR(attach_handle);
		goto out_unlock;
	}

	handle = uiommu_zalloc(sizeof(*handle));
	if (!handle) {
		ret = -ENOMEM;
		goto out_unlock;
	}

	/* Share a domain of this mm if the device's driver takes it. */
	for (domain = iommu_mm->sva_domains; domain; domain = domain->sva_next) {
		ret = iommu_attach_device_pasid(domain, dev, iommu_mm->pasid, &handle->handle);
		if (!ret) {
			domain->users++;
			goto out_bound;
		}
	}

	domain = iommu_sva_domain_alloc(dev, mm);
	if (IS_ERR(domain)) {
		ret = PTR_ERR(domain);
		goto err_free_handle;
	}
	ret = iommu_attach_device_pasid(domain, dev, iommu_mm->pasid, &handle->handle);
	if (ret)
		goto err_free_domain;
	domain->users = 1;
	domain->sva_next = iommu_mm->sva_domains;
	iommu_mm->sva_domains = domain;
out_bound:
	handle->users = 1;
	handle->dev = dev;
	uiommu_mutex_unlock(&iommu_sva_lock);
	return handle;

err_free_domain:
	iommu_domain_free(domain);
err_free_handle:
	uiommu_free(handle);
out_unlock:
	uiommu_mutex_unlock(&iommu_sva_lock);
	return ERR_PTR(ret);
}

/**
 * iommu_sva_unbind_device() - pairs with a successful iommu_sva_bind_device()
 * The last unbind of a bond detaches the PASID and frees the bond; the last device of a domain
 * frees the domain. The mm keeps its PASID.
 */
void iommu_sva_unbind_device(struct iommu_sva *handle)
{
	struct iommu_domain *domain = handle->handle.domain;
	struct iommu_mm_data *iommu_mm;
	struct device *dev = handle->dev;
	struct uiommu_mm *mm;

	iommu_sva_lock_take();
	iommu_mm = domain->mm->iommu_mm;
	if (--handle->users) {
		uiommu_mutex_unlock(&iommu_sva_lock);
		return;
	}
	/*
	 * Freeing the domain drops its reference on the mm; if that were the last one, the mm's
	 * release would give its PASID back under iommu_sva_lock, which we hold. Keep the mm until
	 * the lock is released. Put below.
	 */
	mm = uiommu_mm_get(domain->mm);
	iommu_detach_device_pasid(domain, dev, iommu_mm->pasid);
	if (--domain->users == 0) {
		struct iommu_domain **pos;

		for (pos = &iommu_mm->sva_domains; *pos; pos = &(*pos)->sva_next) {
			if (*pos == domain) {
				*pos = domain->sva_next;
				break;
			}
		}
		iommu_domain_free(domain);
	}
	uiommu_free(handle);
	uiommu_mutex_unlock(&iommu_sva_lock);
	uiommu_mm_put(mm);
}

uint32_t iommu_sva_get_pasid(struct iommu_sva *handle)
{
	struct uiommu_mm *mm = handle->handle.domain->mm;

	/* Constant for the mm's life, and the bond holds the mm (through its domain). */
	return mm->iommu_mm->pasid;
}

/* ---- faults ---------------------------------------------------------------------------------- */

/**
 * iommu_sva_resolve_fault() - what the SVA fault handler answers to one fault of @mm
 *
 * The device asked for the page at prm.addr with prm.perm: the mapping there must allow every
 * access asked for (read, write, execute), as the kernel checks the VMA's flags, and then the
 * page is brought in by touching it with that access (a write fault writes). PRIV is the
 * privileged (kernel-mode) access: the process's mappings say nothing about it, and the kernel
 * resolves it the same way, so it is accepted.
 *
 * Return: IOMMU_PAGE_RESP_SUCCESS or IOMMU_PAGE_RESP_INVALID.
 */
int iommu_sva_resolve_fault(struct uiommu_mm *mm, const struct iommu_fault *fault)
{
	const struct iommu_fault_page_request *prm = &fault->prm;
	unsigned int need = 0, prot;
	uint64_t page;

	if (fault->type != IOMMU_FAULT_PAGE_REQ ||
	    !(prm->flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID))
		return IOMMU_PAGE_RESP_INVALID;
	/* The kernel's mmget_not_zero(): an mm on its way out resolves nothing. */
	if (!mm || atomic_load(&mm->refs) == 0 || !mm->ops->vma_prot)
		return IOMMU_PAGE_RESP_INVALID;
	if (mm->ops->vma_prot(mm, prm->addr, &prot))
		return IOMMU_PAGE_RESP_INVALID;
	if (prm->perm & IOMMU_FAULT_PERM_READ)
		need |= PROT_READ;
	if (prm->perm & IOMMU_FAULT_PERM_WRITE)
		need |= PROT_WRITE;
	if (prm->perm & IOMMU_FAULT_PERM_EXEC)
		need |= PROT_EXEC;
	if (need & ~prot)
		return IOMMU_PAGE_RESP_INVALID;
	/* An execute-only page cannot be touched from here; its mapping is proof enough. */
	if (!(prot & PROT_READ))
		return IOMMU_PAGE_RESP_SUCCESS;
	page = prm->addr & ~(uiommu_page_size - 1);
	if (mm->ops->fault_in(mm, page, 1, prm->perm & IOMMU_FAULT_PERM_WRITE))
		return IOMMU_PAGE_RESP_INVALID;
	return IOMMU_PAGE_RESP_SUCCESS;
}

/*
 * The work of one fault group, on the I/O page fault queue's worker: resolve each fault in
 * order; the first failure is the answer for the whole group (the rest are not tried).
 */
static void iommu_sva_handle_iopf(struct iopf_group *group)
{
	struct uiommu_mm *mm = group->attach_handle->domain->mm;
	int status = IOMMU_PAGE_RESP_SUCCESS;
	struct iopf_fault *iopf;

	for (iopf = group->faults; iopf; iopf = iopf->next) {
		if (status != IOMMU_PAGE_RESP_SUCCESS)
			break;
		status = iommu_sva_resolve_fault(mm, &iopf->fault);
	}
	iopf_group_response(group, status);
	iopf_free_group(group);
}

/* An SVA domain's iopf_handler: the resolution may sleep, so it runs on the queue's worker. */
static int iommu_sva_iopf_handler(struct iopf_group *group)
{
	return iopf_group_queue_work(group, iommu_sva_handle_iopf);
}
