// SPDX-License-Identifier: MIT
/*
 * The IOMMU core: groups, default domains, attach and detach, DMA ownership, the sysfs `type`
 * switch, and device probe and release.
 *
 * Data model (semantics: ../shared/spec/iommu-core.md, mainline v6.17).
 *
 *   struct iommu_group   one or more devices that the IOMMU cannot tell apart, so they always
 *                        share a translation. Its refcount is held by each member device and by
 *                        whoever looked it up; it is freed at the last put, and by then its
 *                        default and blocking domains are already gone.
 *   group->domain        what every member is attached to now. NULL only before the first
 *                        default-domain setup and after the last member left.
 *   group->default_domain  the domain the kernel's DMA API uses (DMA, DMA-FQ or IDENTITY).
 *   group->blocking_domain the "no DMA" domain used while the group is owned by a user
 *                        (VFIO/iommufd) that has attached nothing of its own; made on first need.
 *   group->owner_cnt     with owner NULL: the number of bound DMA-API drivers; with owner set:
 *                        the number of ownership claims made with that one cookie. Never both.
 *   group->pasid_array   what is attached at each PASID (a domain, or an attach handle that
 *                        carries one), and at IOMMU_NO_PASID the RID attachment made through
 *                        the handle API. Any slot in it blocks DMA ownership claims and a second
 *                        DMA-API driver (13, 15). See "PASIDs and attach handles" below.
 *
 * Invariants kept here (numbers from the spec's list):
 *  - every change to a group's devices, domains and ownership is made under group->mutex (2);
 *  - a device's release_device runs once, under group->mutex, after the device left the list,
 *    so no attach can reach it afterwards (3, 11); the last device out frees the default and
 *    blocking domains in the same critical section (4);
 *  - changing the group domain is all or nothing: a failing member puts every member already
 *    moved back where it was, and group->domain changes only on success (5).
 *
 * Locks, outermost first:
 *   iommu_probe_device_lock  serialises probes (a device is probed once).
 *   group->mutex             everything about one group (above).
 *   group->pasid_lock        the PASID table; every store also holds group->mutex, lock-free
 *                            lookups (iommu_attach_handle_get(), fault routing) take it alone.
 *                            A leaf.
 *   iommu_global_pasid_lock  the global PASID space (a leaf).
 *   iommu_groups_lock        the list of live groups and their ids (a leaf).
 *   iommu_device_lock        the list of registered IOMMU instances (a leaf).
 * No group mutex is ever taken while another is held, and none is taken in a loop over
 * devices: a group's members are reached through the group's own list, under its own mutex.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/queue.h>

#include "lib/interval_tree.h" /* <bsd/sys/tree.h>, as the library includes it */

#include "iommu/iommu.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "mm/mm.h"

/*
 * One slot of a group's PASID table. @entry is a tagged pointer: NULL while the slot is only
 * reserved (an attach is in progress: invisible to lookups), else a domain (tag
 * PASID_ENTRY_DOMAIN) or an attach handle (tag PASID_ENTRY_HANDLE). Allocated when the slot is
 * reserved, so the later store cannot fail.
 */
struct group_pasid {
	RB_ENTRY(group_pasid) node; /* in group->pasid_array; group->pasid_lock */
	uint32_t pasid;             /* constant */
	uintptr_t entry;            /* group->pasid_lock; changed only under group->mutex too */
};

#define PASID_ENTRY_DOMAIN 0u
#define PASID_ENTRY_HANDLE 1u
#define PASID_ENTRY_TAG_MASK 1u

static int group_pasid_cmp(struct group_pasid *a, struct group_pasid *b)
{
	return a->pasid < b->pasid ? -1 : a->pasid > b->pasid;
}

RB_HEAD(group_pasid_tree, group_pasid);
/* libbsd spells the attribute of its static generator the BSD way. */
#ifndef __unused
#define __unused __attribute__((unused))
#endif
RB_GENERATE_STATIC(group_pasid_tree, group_pasid, node, group_pasid_cmp)

struct group_device {
	TAILQ_ENTRY(group_device) list; /* in group->devices; group->mutex */
	struct device *dev;
};

struct iommu_group {
	atomic_int refs;                /* iommu_group_ref_get()/iommu_group_put() */
	int id;                         /* the sysfs directory name; constant */
	struct uiommu_mutex mutex;      /* protects everything below; order: after the probe lock and
					   iommu_sva_lock, before the fault and driver locks */
	TAILQ_HEAD(, group_device) devices;
	unsigned int nr_devices;
	struct iommu_domain *default_domain;
	struct iommu_domain *blocking_domain;
	struct iommu_domain *domain;
	unsigned int owner_cnt;
	void *owner;
	/*
	 * The PASID table (the kernel's pasid_array xarray): what is attached at each PASID, and
	 * at IOMMU_NO_PASID the RID attachment made through the handle API. Every store happens
	 * under group->mutex *and* pasid_lock; lookups that must not take the group mutex (fault
	 * routing, iommu_attach_handle_get()) take pasid_lock alone, a leaf.
	 */
	struct uiommu_mutex pasid_lock;
	struct group_pasid_tree pasid_array;
	unsigned int nr_pasid_entries;  /* reserved or published slots; both locks to change */
	TAILQ_ENTRY(iommu_group) node;  /* in iommu_groups; iommu_groups_lock */
};

/* ---- global state ------------------------------------------------------------------------ */

/*
 * Serialises probe and release of devices. Order: inside topology_lock and the sysfs locks,
 * outside mock_selftest_iopf_lock and group->mutex (docs/design.md, "Locks").
 */
UIOMMU_MUTEX_DEFINE(iommu_probe_device_lock);
UIOMMU_MUTEX_DEFINE(iommu_groups_lock); /* iommu_groups; a leaf */
static TAILQ_HEAD(, iommu_group) iommu_groups = TAILQ_HEAD_INITIALIZER(iommu_groups);
UIOMMU_MUTEX_DEFINE(iommu_device_lock); /* iommu_device_list; a leaf */
static struct iommu_device *iommu_device_list;
static atomic_uint iommu_domain_ids;

/*
 * The boot policy: translated and lazy (DMA-FQ) unless told otherwise, as a distribution
 * kernel. Written before devices are probed; read under the group mutex of each setup.
 */
static _Atomic unsigned int iommu_def_domain_type = IOMMU_DOMAIN_DMA_FQ;
static atomic_bool iommu_dma_strict;

unsigned int iommu_default_domain_type(void)
{
	return atomic_load(&iommu_def_domain_type);
}

void iommu_set_default_policy(bool passthrough, bool strict)
{
	atomic_store(&iommu_dma_strict, strict);
	if (passthrough)
		atomic_store(&iommu_def_domain_type, IOMMU_DOMAIN_IDENTITY);
	else
		atomic_store(&iommu_def_domain_type,
			     strict ? IOMMU_DOMAIN_DMA : IOMMU_DOMAIN_DMA_FQ);
}

/* A driver that cannot defer invalidations turns a lazy global default back into strict. */
void iommu_set_dma_strict(void)
{
	unsigned int fq = IOMMU_DOMAIN_DMA_FQ;

	atomic_store(&iommu_dma_strict, true);
	atomic_compare_exchange_strong(&iommu_def_domain_type, &fq, IOMMU_DOMAIN_DMA);
}

/*
 * The DMA layer (dma-iommu.c) provides these. Weak defaults keep the core usable alone (unit
 * tests of the core link no DMA layer): no IOVA cookie is needed, and no flush queue can start.
 */
__attribute__((weak)) int iommu_get_dma_cookie(struct iommu_domain *domain)
{
	(void)domain;
	return 0;
}

__attribute__((weak)) void iommu_put_dma_cookie(struct iommu_domain *domain)
{
	(void)domain;
}

__attribute__((weak)) int iommu_dma_init_fq(struct iommu_domain *domain)
{
	(void)domain;
	return 0;
}

__attribute__((weak)) void iommu_setup_dma_ops(struct device *dev)
{
	struct iommu_group *group = dev->iommu_group;
	struct iommu_domain *dom = group ? group->default_domain : NULL;

	/* Without a DMA layer a lazy domain cannot get a flush queue: it stays strict. */
	if (dom && dom->type == IOMMU_DOMAIN_DMA_FQ && !dev->iommu->deferred_flush)
		iommu_domain_set_type(dom, IOMMU_DOMAIN_DMA);
}

/* ---- IOMMU instances and devices ----------------------------------------------------------- */

int iommu_device_register(struct iommu_device *iommu, const struct iommu_ops *ops)
{
	iommu->ops = ops;
	uiommu_mutex_lock(&iommu_device_lock);
	iommu->next = iommu_device_list;
	iommu_device_list = iommu;
	uiommu_mutex_unlock(&iommu_device_lock);
	return 0;
}

void iommu_device_unregister(struct iommu_device *iommu)
{
	struct iommu_device **p;

	uiommu_mutex_lock(&iommu_device_lock);
	for (p = &iommu_device_list; *p; p = &(*p)->next) {
		if (*p == iommu) {
			*p = iommu->next;
			break;
		}
	}
	uiommu_mutex_unlock(&iommu_device_lock);
}

struct device *device_alloc(const char *bdf)
{
	struct device *dev = uiommu_zalloc(sizeof(*dev));

	if (!dev)
		return NULL;
	snprintf(dev->name, sizeof(dev->name), "%s", bdf);
	atomic_init(&dev->refs, 1);
	return dev;
}

void device_get(struct device *dev)
{
	atomic_fetch_add(&dev->refs, 1);
}

void device_put(struct device *dev)
{
	if (atomic_fetch_sub(&dev->refs, 1) != 1)
		return;
	WARN_ON(dev->iommu_group);
	uiommu_free(dev);
}

static const struct iommu_ops *dev_iommu_ops(struct device *dev)
{
	return dev->iommu->ops;
}

/* ---- groups --------------------------------------------------------------------------------- */

struct iommu_group *iommu_group_alloc(void)
{
	struct iommu_group *group, *pos;
	int id = 0;

	group = uiommu_zalloc(sizeof(*group));
	if (!group)
		return ERR_PTR(-ENOMEM);
	atomic_init(&group->refs, 1);
	uiommu_mutex_init(&group->mutex);
	TAILQ_INIT(&group->devices);
	uiommu_mutex_init(&group->pasid_lock);
	RB_INIT(&group->pasid_array);

	/* The lowest free id, as the kernel's IDA; the list is kept in id order. */
	uiommu_mutex_lock(&iommu_groups_lock);
	TAILQ_FOREACH(pos, &iommu_groups, node) {
		if (pos->id != id)
			break;
		id++;
	}
	group->id = id;
	if (pos)
		TAILQ_INSERT_BEFORE(pos, group, node);
	else
		TAILQ_INSERT_TAIL(&iommu_groups, group, node);
	uiommu_mutex_unlock(&iommu_groups_lock);
	return group;
}

struct iommu_group *iommu_group_ref_get(struct iommu_group *group)
{
	atomic_fetch_add(&group->refs, 1);
	return group;
}

/* Pairs with iommu_group_get(), iommu_group_ref_get(), iommu_group_get_by_id(). */
void iommu_group_put(struct iommu_group *group)
{
	if (!group)
		return;
	if (atomic_fetch_sub(&group->refs, 1) != 1)
		return;
	/* Domains are freed by the last device's release, never here. */
	WARN_ON(group->default_domain || group->blocking_domain || group->nr_devices);
	WARN_ON(group->nr_pasid_entries);
	uiommu_mutex_lock(&iommu_groups_lock);
	TAILQ_REMOVE(&iommu_groups, group, node);
	uiommu_mutex_unlock(&iommu_groups_lock);
	uiommu_mutex_destroy(&group->pasid_lock);
	uiommu_mutex_destroy(&group->mutex);
	uiommu_free(group);
}

struct iommu_group *iommu_group_get(struct device *dev)
{
	struct iommu_group *group = dev->iommu_group;

	return group ? iommu_group_ref_get(group) : NULL;
}

struct iommu_group *iommu_group_get_by_id(int id)
{
	struct iommu_group *group, *found = NULL;

	uiommu_mutex_lock(&iommu_groups_lock);
	TAILQ_FOREACH(group, &iommu_groups, node) {
		if (group->id == id) {
			/* A group whose last put is under way is not found. */
			int refs = atomic_load(&group->refs);

			while (refs && !atomic_compare_exchange_weak(&group->refs, &refs, refs + 1))
				;
			if (refs)
				found = group;
			break;
		}
	}
	uiommu_mutex_unlock(&iommu_groups_lock);
	return found;
}

int iommu_group_next_id(int after)
{
	struct iommu_group *group;
	int id = -1;

	uiommu_mutex_lock(&iommu_groups_lock);
	TAILQ_FOREACH(group, &iommu_groups, node) {
		if (group->id > after) {
			id = group->id;
			break;
		}
	}
	uiommu_mutex_unlock(&iommu_groups_lock);
	return id;
}

int iommu_group_id(struct iommu_group *group)
{
	return group->id;
}

unsigned int iommu_group_device_count(struct iommu_group *group)
{
	unsigned int n;

	uiommu_mutex_lock(&group->mutex);
	n = group->nr_devices;
	uiommu_mutex_unlock(&group->mutex);
	return n;
}

int iommu_group_for_each_dev(struct iommu_group *group, void *data,
			     int (*fn)(struct device *dev, void *data))
{
	struct group_device *gdev;
	int ret = 0;

	uiommu_mutex_lock(&group->mutex);
	TAILQ_FOREACH(gdev, &group->devices, list) {
		ret = fn(gdev->dev, data);
		if (ret)
			break;
	}
	uiommu_mutex_unlock(&group->mutex);
	return ret;
}

void iommu_group_mutex_assert(struct device *dev)
{
	lockdep_assert_held(&dev->iommu_group->mutex);
}

void iommu_group_get_info(struct iommu_group *group, struct iommu_group_info *info)
{
	uiommu_mutex_lock(&group->mutex);
	memset(info, 0, sizeof(*info));
	info->id = group->id;
	info->nr_devices = group->nr_devices;
	info->default_type = group->default_domain ? group->default_domain->type : UINT32_MAX;
	info->domain_type = group->domain ? group->domain->type : UINT32_MAX;
	info->domain_is_default = group->domain && group->domain == group->default_domain;
	info->domain_is_blocking = group->domain && group->domain == group->blocking_domain;
	info->has_blocking_domain = group->blocking_domain != NULL;
	info->owner_cnt = group->owner_cnt;
	info->owned = group->owner != NULL;
	info->default_domain_id = group->default_domain ? group->default_domain->id : 0;
	info->domain_id = group->domain ? group->domain->id : 0;
	info->nr_pasid_entries = group->nr_pasid_entries;
	uiommu_mutex_unlock(&group->mutex);
}

/* ---- the PASID table ------------------------------------------------------------------------ */

/* Any slot, reserved or published (the kernel's !xa_empty()); group->mutex held. */
static bool pasid_array_empty(struct iommu_group *group)
{
	lockdep_assert_held(&group->mutex);
	return group->nr_pasid_entries == 0;
}

/* pasid_lock held. */
static struct group_pasid *pasid_array_find(struct iommu_group *group, uint32_t pasid)
{
	struct group_pasid key = { .pasid = pasid };

	return RB_FIND(group_pasid_tree, &group->pasid_array, &key);
}

/*
 * Reserves @pasid's slot: it exists but lookups see nothing there. -EBUSY when the slot is
 * taken (reserved or published), -ENOMEM. With @keep, an existing slot is no error (*@created
 * tells which happened): the kernel's xa_reserve() for the RID replace.
 */
static int pasid_array_reserve(struct iommu_group *group, uint32_t pasid, bool keep,
			       bool *created)
{
	struct group_pasid *gp, *old;

	lockdep_assert_held(&group->mutex);
	*created = false;
	uiommu_mutex_lock(&group->pasid_lock);
	old = pasid_array_find(group, pasid);
	uiommu_mutex_unlock(&group->pasid_lock);
	if (old)
		return keep ? 0 : -EBUSY;
	gp = uiommu_zalloc(sizeof(*gp));
	if (!gp)
		return -ENOMEM;
	gp->pasid = pasid;
	uiommu_mutex_lock(&group->pasid_lock);
	RB_INSERT(group_pasid_tree, &group->pasid_array, gp);
	group->nr_pasid_entries++;
	uiommu_mutex_unlock(&group->pasid_lock);
	*created = true;
	return 0;
}

/* Publishes @entry in @pasid's slot, which must exist (reserved or published). */
static void pasid_array_store(struct iommu_group *group, uint32_t pasid, uintptr_t entry)
{
	struct group_pasid *gp;

	lockdep_assert_held(&group->mutex);
	uiommu_mutex_lock(&group->pasid_lock);
	gp = pasid_array_find(group, pasid);
	if (!WARN_ON(!gp))
		gp->entry = entry;
	uiommu_mutex_unlock(&group->pasid_lock);
}

/* The entry at @pasid (0: none, or only reserved); group->mutex or pasid_lock held. */
static uintptr_t pasid_array_load_locked(struct iommu_group *group, uint32_t pasid)
{
	struct group_pasid *gp = pasid_array_find(group, pasid);

	return gp ? gp->entry : 0;
}

static uintptr_t pasid_array_load(struct iommu_group *group, uint32_t pasid)
{
	uintptr_t entry;

	lockdep_assert_held(&group->mutex);
	uiommu_mutex_lock(&group->pasid_lock);
	entry = pasid_array_load_locked(group, pasid);
	uiommu_mutex_unlock(&group->pasid_lock);
	return entry;
}

/* Removes @pasid's slot, whatever it holds; after this no lookup can return its handle. */
static void pasid_array_erase(struct iommu_group *group, uint32_t pasid)
{
	struct group_pasid *gp;

	lockdep_assert_held(&group->mutex);
	uiommu_mutex_lock(&group->pasid_lock);
	gp = pasid_array_find(group, pasid);
	if (gp) {
		RB_REMOVE(group_pasid_tree, &group->pasid_array, gp);
		group->nr_pasid_entries--;
	}
	uiommu_mutex_unlock(&group->pasid_lock);
	uiommu_free(gp);
}

static uintptr_t pasid_entry_make(struct iommu_domain *domain, struct iommu_attach_handle *handle)
{
	if (handle) {
		handle->domain = domain;
		return (uintptr_t)handle | PASID_ENTRY_HANDLE;
	}
	return (uintptr_t)domain | PASID_ENTRY_DOMAIN;
}

static struct iommu_domain *pasid_entry_to_domain(uintptr_t entry)
{
	if (!entry)
		return NULL;
	if ((entry & PASID_ENTRY_TAG_MASK) == PASID_ENTRY_HANDLE)
		return ((struct iommu_attach_handle *)(entry & ~(uintptr_t)PASID_ENTRY_TAG_MASK))
			->domain;
	return (struct iommu_domain *)entry;
}

/* ---- domains -------------------------------------------------------------------------------- */

bool iommu_is_dma_domain(struct iommu_domain *domain)
{
	return iommu_domain_type(domain) & __IOMMU_DOMAIN_DMA_API;
}

void __iommu_domain_init(struct iommu_domain *domain, unsigned int type,
			 const struct iommu_ops *ops)
{
	domain->type = type;
	domain->owner = ops;
	domain->id = atomic_fetch_add(&iommu_domain_ids, 1) + 1;
}

struct iommu_domain *iommu_paging_domain_alloc(struct device *dev)
{
	const struct iommu_ops *ops;
	struct iommu_domain *domain;

	if (!dev->iommu || !dev->iommu_group)
		return ERR_PTR(-ENODEV);
	ops = dev_iommu_ops(dev);
	if (!ops->domain_alloc_paging)
		return ERR_PTR(-EOPNOTSUPP);
	domain = ops->domain_alloc_paging(dev);
	if (IS_ERR_OR_NULL(domain))
		return domain ? domain : ERR_PTR(-ENOMEM);
	__iommu_domain_init(domain, IOMMU_DOMAIN_UNMANAGED, ops);
	return domain;
}

/**
 * iommu_paging_domain_alloc_flags() - a paging domain for a user (iommufd) of @dev
 * Without flags or data this is iommu_paging_domain_alloc(); otherwise the driver must offer
 * domain_alloc_paging_flags.
 * Return: the domain, or ERR_PTR(-ENODEV), -EOPNOTSUPP, -ENOMEM, or the driver's error.
 */
struct iommu_domain *iommu_paging_domain_alloc_flags(struct device *dev, uint32_t flags,
						     const struct iommu_user_data *user_data)
{
	const struct iommu_ops *ops;
	struct iommu_domain *domain;

	if (!dev->iommu || !dev->iommu_group)
		return ERR_PTR(-ENODEV);
	ops = dev_iommu_ops(dev);
	if (!ops->domain_alloc_paging_flags) {
		if (flags || user_data)
			return ERR_PTR(-EOPNOTSUPP);
		return iommu_paging_domain_alloc(dev);
	}
	if (uiommu_should_fail())
		return ERR_PTR(-ENOMEM);
	domain = ops->domain_alloc_paging_flags(dev, flags, user_data);
	if (IS_ERR_OR_NULL(domain))
		return domain ? domain : ERR_PTR(-ENOMEM);
	__iommu_domain_init(domain, IOMMU_DOMAIN_UNMANAGED, ops);
	return domain;
}

bool iommu_device_capable(struct device *dev, enum iommu_cap cap)
{
	const struct iommu_ops *ops;

	if (!dev->iommu)
		return false;
	ops = dev_iommu_ops(dev);
	return ops->capable && ops->capable(dev, cap);
}

const struct iommu_ops *iommu_device_ops(struct device *dev)
{
	return dev->iommu ? dev_iommu_ops(dev) : NULL;
}

void iommu_domain_free(struct iommu_domain *domain)
{
	struct uiommu_mm *mm;

	if (!domain)
		return;
	if (domain->iova_cookie)
		iommu_put_dma_cookie(domain);
	/* An SVA domain holds its address space (the kernel's mmgrab()/mmdrop()). */
	mm = iommu_domain_type(domain) == IOMMU_DOMAIN_SVA ? domain->mm : NULL;
	/* The drivers' static identity and blocked domains have no free. */
	if (domain->ops->free)
		domain->ops->free(domain);
	if (mm)
		uiommu_mm_put(mm);
}

/*
 * Chooses the largest page size the domain supports that @iova and @paddr are aligned to and
 * that fits in @size, and how many of them to map in one call.
 */
static size_t iommu_pgsize(struct iommu_domain *domain, uint64_t iova, phys_addr_t paddr,
			   size_t size, size_t *count)
{
	uint64_t addr_merge = iova | paddr, pgsizes = domain->pgsize_bitmap, bigger;
	uint64_t pgsize;

	/* Sizes up to @size, and aligned to the addresses. */
	pgsizes &= ((uint64_t)2 << (uiommu_fls64(size) - 1)) - 1;
	if (addr_merge)
		pgsizes &= ((uint64_t)2 << __builtin_ctzll(addr_merge)) - 1;
	if (!pgsizes)
		return 0;
	pgsize = (uint64_t)1 << (uiommu_fls64(pgsizes) - 1);
	*count = size / pgsize;
	/* Stop where a bigger page would become possible, so it is used there. */
	bigger = domain->pgsize_bitmap & ~((pgsize << 1) - 1);
	if (bigger) {
		uint64_t next = (uint64_t)1 << __builtin_ctzll(bigger);
		uint64_t to_boundary = (ALIGN_UP(iova + 1, next) - iova) / pgsize;

		if (to_boundary && to_boundary < *count)
			*count = to_boundary;
	}
	return pgsize;
}

int iommu_map(struct iommu_domain *domain, uint64_t iova, phys_addr_t paddr, size_t size,
	      int prot)
{
	uint64_t min_pagesz, orig_iova = iova;
	size_t orig_size = size;
	int ret = 0;

	if (!(iommu_domain_type(domain) & __IOMMU_DOMAIN_PAGING) || !domain->ops->map_pages)
		return -EINVAL;
	if (!domain->pgsize_bitmap || !size)
		return -EINVAL;
	min_pagesz = (uint64_t)1 << __builtin_ctzll(domain->pgsize_bitmap);
	if (!IS_ALIGNED(iova | paddr | size, min_pagesz))
		return -EINVAL;

	while (size) {
		size_t count = 0, mapped = 0, pgsize = iommu_pgsize(domain, iova, paddr, size, &count);

		if (!pgsize)
			return -EINVAL;
		ret = domain->ops->map_pages(domain, iova, paddr, pgsize, count, prot, &mapped);
		size -= mapped;
		iova += mapped;
		paddr += mapped;
		if (ret)
			break;
	}
	if (ret)
		iommu_unmap(domain, orig_iova, orig_size - size);
	return ret;
}

size_t iommu_unmap_fast(struct iommu_domain *domain, uint64_t iova, size_t size,
			struct iommu_iotlb_gather *gather)
{
	size_t unmapped = 0;
	uint64_t min_pagesz;

	if (!(iommu_domain_type(domain) & __IOMMU_DOMAIN_PAGING) || !domain->ops->unmap_pages)
		return 0;
	min_pagesz = (uint64_t)1 << __builtin_ctzll(domain->pgsize_bitmap);
	if (!IS_ALIGNED(iova | size, min_pagesz))
		return 0;
	while (unmapped < size) {
		size_t count = 0, pgsize, done;

		pgsize = iommu_pgsize(domain, iova, 0, size - unmapped, &count);
		if (!pgsize)
			break;
		done = domain->ops->unmap_pages(domain, iova, pgsize, count, gather);
		if (!done)
			break;
		iova += done;
		unmapped += done;
	}
	return unmapped;
}

size_t iommu_unmap(struct iommu_domain *domain, uint64_t iova, size_t size)
{
	struct iommu_iotlb_gather gather;
	size_t ret;

	iommu_iotlb_gather_init(&gather);
	ret = iommu_unmap_fast(domain, iova, size, &gather);
	iommu_iotlb_sync(domain, &gather);
	return ret;
}

void iommu_iotlb_sync(struct iommu_domain *domain, struct iommu_iotlb_gather *gather)
{
	if (gather->start != UINT64_MAX && domain->ops->iotlb_sync)
		domain->ops->iotlb_sync(domain, gather);
	iommu_iotlb_gather_init(gather);
}

void iommu_flush_iotlb_all(struct iommu_domain *domain)
{
	if (domain->ops->flush_iotlb_all)
		domain->ops->flush_iotlb_all(domain);
}

phys_addr_t iommu_iova_to_phys(struct iommu_domain *domain, uint64_t iova)
{
	unsigned int type = iommu_domain_type(domain);

	if (type == IOMMU_DOMAIN_IDENTITY)
		return iova;
	if (type == IOMMU_DOMAIN_BLOCKED || !domain->ops->iova_to_phys)
		return 0;
	return domain->ops->iova_to_phys(domain, iova);
}

/* The 1:1 mappings a device's firmware needs (RESV_DIRECT), made in a paging domain. */
static int iommu_create_device_direct_mappings(struct iommu_domain *domain, struct device *dev)
{
	uint64_t pg_size;
	unsigned int i;

	if (!(domain->type & __IOMMU_DOMAIN_PAGING) || !domain->pgsize_bitmap)
		return 0;
	pg_size = (uint64_t)1 << __builtin_ctzll(domain->pgsize_bitmap);
	for (i = 0; i < dev->nr_resv; i++) {
		struct iommu_resv_region *r = &dev->resv[i];
		uint64_t start = ALIGN_DOWN(r->start, pg_size);
		uint64_t end = ALIGN_UP(r->start + r->length, pg_size);
		uint64_t addr;

		if (r->type != IOMMU_RESV_DIRECT && r->type != IOMMU_RESV_DIRECT_RELAXABLE)
			continue;
		for (addr = start; addr < end; addr += pg_size) {
			int ret;

			/* Another device of the group may share the region. */
			if (iommu_iova_to_phys(domain, addr))
				continue;
			ret = iommu_map(domain, addr, addr, pg_size, r->prot);
			if (ret)
				return ret;
		}
	}
	return 0;
}

/* ---- switching a group's domain ------------------------------------------------------------- */

enum {
	IOMMU_SET_DOMAIN_MUST_SUCCEED = 1 << 0,
};

static int __iommu_group_alloc_blocking_domain(struct iommu_group *group);

static int __iommu_device_set_domain(struct iommu_group *group, struct device *dev,
				     struct iommu_domain *new_domain, unsigned int flags)
{
	int ret;

	lockdep_assert_held(&group->mutex);
	/* Firmware still DMAs into its direct regions: such a device can never be blocked. */
	if (dev->iommu_data->require_direct &&
	    (new_domain->type == IOMMU_DOMAIN_BLOCKED || new_domain == group->blocking_domain)) {
		fprintf(stderr, "uiommu: %s: firmware has requested this device have a 1:1 IOMMU "
				"mapping, rejecting configuring the device without one\n",
			dev->name);
		return -EINVAL;
	}
	/* An attach that must succeed is not an injection point: it has no way back. */
	if (!(flags & IOMMU_SET_DOMAIN_MUST_SUCCEED) && uiommu_should_fail())
		ret = -ENOMEM;
	else
		ret = new_domain->ops->attach_dev(new_domain, dev, group->domain);
	if (!ret)
		return 0;
	if (flags & IOMMU_SET_DOMAIN_MUST_SUCCEED) {
		/*
		 * The device cannot stay on a domain that may be freed next: park it on the blocking
		 * domain, which every driver must accept.
		 */
		WARN_ON(1);
		if (!__iommu_group_alloc_blocking_domain(group) &&
		    group->blocking_domain != new_domain)
			group->blocking_domain->ops->attach_dev(group->blocking_domain, dev,
								group->domain);
	}
	return ret;
}

/*
 * Moves every member to @new_domain, or none: on the first failure the members already moved
 * go back to group->domain. With MUST_SUCCEED the failures are parked and the switch completes.
 */
static int __iommu_group_set_domain_internal(struct iommu_group *group,
					     struct iommu_domain *new_domain, unsigned int flags)
{
	struct group_device *last_gdev, *gdev;
	int result = 0, ret;

	lockdep_assert_held(&group->mutex);
	if (group->domain == new_domain)
		return 0;
	if (WARN_ON(!new_domain))
		return -EINVAL;
	TAILQ_FOREACH(gdev, &group->devices, list) {
		ret = __iommu_device_set_domain(group, gdev->dev, new_domain, flags);
		if (ret) {
			result = ret;
			if (flags & IOMMU_SET_DOMAIN_MUST_SUCCEED)
				continue;
			goto err_revert;
		}
	}
	group->domain = new_domain;
	return result;

err_revert:
	last_gdev = gdev;
	TAILQ_FOREACH(gdev, &group->devices, list) {
		if (gdev == last_gdev)
			break;
		/* Only at first setup is there no old domain; release cleans that up. */
		if (group->domain)
			WARN_ON(__iommu_device_set_domain(group, gdev->dev, group->domain,
							  IOMMU_SET_DOMAIN_MUST_SUCCEED));
	}
	return ret;
}

static int __iommu_group_set_domain(struct iommu_group *group, struct iommu_domain *new_domain)
{
	return __iommu_group_set_domain_internal(group, new_domain, 0);
}

static void __iommu_group_set_domain_nofail(struct iommu_group *group,
					    struct iommu_domain *new_domain)
{
	WARN_ON(__iommu_group_set_domain_internal(group, new_domain,
						  IOMMU_SET_DOMAIN_MUST_SUCCEED));
}

static struct device *iommu_group_first_dev(struct iommu_group *group)
{
	return TAILQ_FIRST(&group->devices)->dev;
}

static int __iommu_group_alloc_blocking_domain(struct iommu_group *group)
{
	struct device *dev = iommu_group_first_dev(group);
	const struct iommu_ops *ops = dev_iommu_ops(dev);
	struct iommu_domain *domain;

	lockdep_assert_held(&group->mutex);
	if (group->blocking_domain)
		return 0;
	if (ops->blocked_domain) {
		group->blocking_domain = ops->blocked_domain;
		return 0;
	}
	/* A driver without a blocked domain blocks with an empty paging domain. */
	domain = ops->domain_alloc_paging ? ops->domain_alloc_paging(dev) : NULL;
	if (IS_ERR_OR_NULL(domain))
		return domain ? PTR_ERR(domain) : -EINVAL;
	__iommu_domain_init(domain, IOMMU_DOMAIN_BLOCKED, ops);
	group->blocking_domain = domain;
	return 0;
}

/* Where a group goes when its user lets go: blocked while owned, else its default. */
static void __iommu_group_set_core_domain(struct iommu_group *group)
{
	struct iommu_domain *new_domain = group->owner ? group->blocking_domain :
							 group->default_domain;

	__iommu_group_set_domain_nofail(group, new_domain);
}

/* ---- default domains ----------------------------------------------------------------------- */

static int iommu_get_def_domain_type(struct device *dev, int cur_type)
{
	const struct iommu_ops *ops = dev_iommu_ops(dev);
	int type;

	if (!ops->def_domain_type)
		return cur_type;
	type = ops->def_domain_type(dev);
	if (!type || cur_type == type)
		return cur_type;
	if (!cur_type)
		return type;
	fprintf(stderr, "uiommu: %s: IOMMU driver error, requesting conflicting def_domain_type "
			"%d and %d for devices in one group\n",
		dev->name, cur_type, type);
	/* Drivers may force IDENTITY or DMA; IDENTITY wins the conflict. */
	return type == (int)IOMMU_DOMAIN_IDENTITY ? type : cur_type;
}

/*
 * The type the group's default domain must have: the drivers' preference, DMA when a member is
 * untrusted, @target_type when asked for one (sysfs). 0 means "the global default"; -1 means a
 * conflict (the caller answers EINVAL).
 */
static int iommu_get_default_domain_type(struct iommu_group *group, int target_type)
{
	struct device *untrusted = NULL;
	struct group_device *gdev;
	int driver_type = 0;

	lockdep_assert_held(&group->mutex);
	TAILQ_FOREACH(gdev, &group->devices, list) {
		driver_type = iommu_get_def_domain_type(gdev->dev, driver_type);
		if (gdev->dev->untrusted)
			untrusted = gdev->dev;
	}
	if (untrusted) {
		if (driver_type && driver_type != (int)IOMMU_DOMAIN_DMA) {
			fprintf(stderr, "uiommu: %s: device is not trusted, but driver is "
					"overriding its group's type, refusing to probe\n",
				untrusted->name);
			return -1;
		}
		driver_type = IOMMU_DOMAIN_DMA;
	}
	if (target_type) {
		if (driver_type && target_type != driver_type)
			return -1;
		return target_type;
	}
	return driver_type;
}

static struct iommu_domain *__iommu_group_domain_alloc(struct iommu_group *group,
						       unsigned int type)
{
	struct device *dev = iommu_group_first_dev(group);
	const struct iommu_ops *ops = dev_iommu_ops(dev);
	struct iommu_domain *domain;

	if (type == IOMMU_DOMAIN_IDENTITY) {
		if (!ops->identity_domain)
			return ERR_PTR(-EOPNOTSUPP);
		return ops->identity_domain;
	}
	if (!(type & __IOMMU_DOMAIN_PAGING) || !ops->domain_alloc_paging)
		return ERR_PTR(-EOPNOTSUPP);
	if (uiommu_should_fail())
		return ERR_PTR(-ENOMEM);
	domain = ops->domain_alloc_paging(dev);
	if (IS_ERR_OR_NULL(domain))
		return domain ? domain : ERR_PTR(-ENOMEM);
	__iommu_domain_init(domain, type, ops);
	return domain;
}

static struct iommu_domain *iommu_group_alloc_default_domain(struct iommu_group *group,
							     unsigned int req_type)
{
	unsigned int def_type = iommu_default_domain_type();
	struct iommu_domain *dom;

	/* Asking for what the default already is keeps the same domain: a no-op switch. */
	if (req_type && group->default_domain && group->default_domain->type == req_type)
		return group->default_domain;
	if (req_type)
		return __iommu_group_domain_alloc(group, req_type);
	dom = __iommu_group_domain_alloc(group, def_type);
	if (!IS_ERR(dom) || def_type == IOMMU_DOMAIN_DMA)
		return dom;
	fprintf(stderr, "uiommu: group %d: failed to allocate default domain type %u, "
			"falling back to DMA\n",
		group->id, def_type);
	return __iommu_group_domain_alloc(group, IOMMU_DOMAIN_DMA);
}

/* Creates (or re-creates, for the sysfs switch) the group's default domain and moves to it. */
static int iommu_setup_default_domain(struct iommu_group *group, int target_type)
{
	struct iommu_domain *old_dom = group->default_domain;
	struct group_device *gdev;
	struct iommu_domain *dom;
	bool direct_failed = false;
	int req_type, ret;

	lockdep_assert_held(&group->mutex);
	req_type = iommu_get_default_domain_type(group, target_type);
	if (req_type < 0)
		return -EINVAL;
	dom = iommu_group_alloc_default_domain(group, (unsigned int)req_type);
	if (IS_ERR(dom))
		return PTR_ERR(dom);
	if (group->default_domain == dom)
		return 0;
	if (iommu_is_dma_domain(dom)) {
		ret = iommu_get_dma_cookie(dom);
		if (ret) {
			iommu_domain_free(dom);
			return ret;
		}
	}

	/* Map what firmware needs before attaching, so its DMA never sees a gap. */
	TAILQ_FOREACH(gdev, &group->devices, list) {
		if (iommu_create_device_direct_mappings(dom, gdev->dev)) {
			direct_failed = true;
			fprintf(stderr, "uiommu: %s: IOMMU direct mappings failed, will retry\n",
				gdev->dev->name);
		}
	}

	/* Release: a lock-free iommu_get_dma_domain() sees the cookie and mappings made above. */
	__atomic_store_n(&group->default_domain, dom, __ATOMIC_RELEASE);
	if (!group->domain) {
		/* The first setup: there is nothing to go back to. */
		__iommu_group_set_domain_nofail(group, dom);
	} else {
		ret = __iommu_group_set_domain(group, dom);
		if (ret)
			goto err_restore_def_domain;
	}

	if (direct_failed) {
		TAILQ_FOREACH(gdev, &group->devices, list) {
			ret = iommu_create_device_direct_mappings(dom, gdev->dev);
			if (ret)
				goto err_restore_domain;
		}
	}
	if (old_dom)
		iommu_domain_free(old_dom);
	return 0;

err_restore_domain:
	if (old_dom)
		__iommu_group_set_domain_nofail(group, old_dom);
err_restore_def_domain:
	if (old_dom) {
		iommu_domain_free(dom);
		__atomic_store_n(&group->default_domain, old_dom, __ATOMIC_RELEASE);
	}
	return ret;
}

/* ---- probe and release ------------------------------------------------------------------------ */

/* Frees what probe gave the device; the last member out frees the group's domains too. */
static void iommu_deinit_device(struct device *dev)
{
	struct iommu_group *group = dev->iommu_group;
	const struct iommu_ops *ops = dev_iommu_ops(dev);

	lockdep_assert_held(&group->mutex);
	/* The driver must forget every domain pointer of this device here. */
	ops->release_device(dev);

	if (!group->nr_devices) {
		iommu_domain_free(group->default_domain);
		__atomic_store_n(&group->default_domain, NULL, __ATOMIC_RELEASE);
		if (group->blocking_domain)
			iommu_domain_free(group->blocking_domain);
		group->blocking_domain = NULL;
		group->domain = NULL;
	}
	dev->iommu_group = NULL;
	uiommu_mutex_destroy(&dev->iommu_data->lock);
	uiommu_free(dev->iommu_data);
	dev->iommu_data = NULL;
}

static int iommu_init_device(struct device *dev)
{
	const struct iommu_ops *ops;
	struct iommu_device *iommu_dev;
	struct iommu_group *group;
	uint32_t dev_pasids;
	unsigned int i;
	int ret;

	if (!dev->iommu)
		return -ENODEV;
	ops = dev_iommu_ops(dev);
	dev->iommu_data = uiommu_zalloc(sizeof(*dev->iommu_data));
	if (!dev->iommu_data)
		return -ENOMEM;
	uiommu_mutex_init(&dev->iommu_data->lock);

	iommu_dev = uiommu_should_fail() ? ERR_PTR(-ENOMEM) : ops->probe_device(dev);
	if (IS_ERR(iommu_dev)) {
		ret = PTR_ERR(iommu_dev);
		goto err_free;
	}
	dev->iommu_data->iommu_dev = iommu_dev;

	group = uiommu_should_fail() ? ERR_PTR(-ENOMEM) : ops->device_group(dev);
	if (IS_ERR_OR_NULL(group)) {
		ret = group ? PTR_ERR(group) : -EINVAL;
		goto err_release;
	}
	dev->iommu_group = group;

	dev_pasids = dev->pasid_bits ? (uint32_t)1 << dev->pasid_bits : 0;
	dev->iommu_data->max_pasids = dev_pasids < iommu_dev->max_pasids ? dev_pasids :
									   iommu_dev->max_pasids;
	for (i = 0; i < dev->nr_resv; i++)
		if (dev->resv[i].type == IOMMU_RESV_DIRECT)
			dev->iommu_data->require_direct = true;
	return 0;

err_release:
	ops->release_device(dev);
err_free:
	uiommu_mutex_destroy(&dev->iommu_data->lock);
	uiommu_free(dev->iommu_data);
	dev->iommu_data = NULL;
	return ret;
}

/**
 * iommu_probe_device() - a device appeared: put it in its group and on the group's domain
 * Return: 0 (also when it was probed already), -ENODEV without an IOMMU, -EINVAL when the
 * group's default type conflicts with what its devices need, -ENOMEM.
 */
int iommu_probe_device(struct device *dev)
{
	struct group_device *gdev;
	struct iommu_group *group;
	int ret;

	uiommu_mutex_lock(&iommu_probe_device_lock);
	if (dev->iommu_group) {
		ret = 0;
		goto out_unlock_probe;
	}
	ret = iommu_init_device(dev);
	if (ret)
		goto out_unlock_probe;
	group = dev->iommu_group;

	gdev = uiommu_zalloc(sizeof(*gdev));
	if (!gdev) {
		ret = -ENOMEM;
		goto err_deinit_unlocked;
	}
	gdev->dev = dev;
	device_get(dev); /* the group's reference to its member; put at release */

	uiommu_mutex_lock(&group->mutex);
	/* In the list before the default domain is chosen: the choice looks at every member. */
	TAILQ_INSERT_TAIL(&group->devices, gdev, list);
	group->nr_devices++;

	if (group->default_domain) {
		ret = iommu_create_device_direct_mappings(group->default_domain, dev);
		if (ret)
			goto err_remove_gdev;
	}
	if (group->domain)
		ret = __iommu_device_set_domain(group, dev, group->domain, 0);
	else
		ret = iommu_setup_default_domain(group, 0);
	if (ret)
		goto err_remove_gdev;
	if (group->default_domain)
		iommu_setup_dma_ops(dev);
	uiommu_mutex_unlock(&group->mutex);
	uiommu_mutex_unlock(&iommu_probe_device_lock);
	return 0;

err_remove_gdev:
	TAILQ_REMOVE(&group->devices, gdev, list);
	group->nr_devices--;
	uiommu_free(gdev);
	device_put(dev);
	iommu_deinit_device(dev);
	uiommu_mutex_unlock(&group->mutex);
	iommu_group_put(group);
	goto out_unlock_probe;
err_deinit_unlocked:
	uiommu_mutex_lock(&group->mutex);
	iommu_deinit_device(dev);
	uiommu_mutex_unlock(&group->mutex);
	iommu_group_put(group);
out_unlock_probe:
	uiommu_mutex_unlock(&iommu_probe_device_lock);
	return ret;
}

/**
 * iommu_release_device() - a device went away
 * Under the group mutex, in one critical section: the device leaves the list, the driver's
 * release_device runs, and if it was the last member the group's domains are freed. Nothing
 * that takes the group mutex (attach, ownership, the type switch) can see it half gone.
 */
void iommu_release_device(struct device *dev)
{
	struct iommu_group *group = dev->iommu_group;
	struct group_device *gdev;

	if (!group)
		return;
	uiommu_mutex_lock(&group->mutex);
	TAILQ_FOREACH(gdev, &group->devices, list)
		if (gdev->dev == dev)
			break;
	if (WARN_ON(!gdev)) {
		uiommu_mutex_unlock(&group->mutex);
		return;
	}
	TAILQ_REMOVE(&group->devices, gdev, list);
	group->nr_devices--;
	if (!group->nr_devices)
		WARN_ON(group->owner_cnt || group->domain != group->default_domain ||
			!pasid_array_empty(group));
	iommu_deinit_device(dev);
	uiommu_mutex_unlock(&group->mutex);
	uiommu_free(gdev);
	device_put(dev);
	/* Pairs with the reference device_group() gave at probe. */
	iommu_group_put(group);
}

/* ---- attach and detach -------------------------------------------------------------------- */

static bool iommu_domain_compatible(struct iommu_domain *domain, struct device *dev)
{
	const struct iommu_ops *ops = dev_iommu_ops(dev);

	return domain->owner == ops || domain == ops->blocked_domain ||
	       domain == ops->identity_domain;
}

static int __iommu_attach_group(struct iommu_domain *domain, struct iommu_group *group)
{
	lockdep_assert_held(&group->mutex);
	if (group->domain && group->domain != group->default_domain &&
	    group->domain != group->blocking_domain)
		return -EBUSY;
	if (!group->nr_devices || !iommu_domain_compatible(domain, iommu_group_first_dev(group)))
		return -EINVAL;
	return __iommu_group_set_domain(group, domain);
}

/* Attaches @domain to every member; -EBUSY if the group is already on a domain of someone's. */
int iommu_attach_group(struct iommu_domain *domain, struct iommu_group *group)
{
	int ret;

	uiommu_mutex_lock(&group->mutex);
	ret = __iommu_attach_group(domain, group);
	uiommu_mutex_unlock(&group->mutex);
	return ret;
}

void iommu_detach_group(struct iommu_domain *domain, struct iommu_group *group)
{
	uiommu_mutex_lock(&group->mutex);
	if (!WARN_ON(domain != group->domain))
		__iommu_group_set_core_domain(group);
	uiommu_mutex_unlock(&group->mutex);
}

/* The single-device form: -EINVAL when the device shares its group. */
int iommu_attach_device(struct iommu_domain *domain, struct device *dev)
{
	struct iommu_group *group = dev->iommu_group;
	int ret;

	if (!group)
		return -ENODEV;
	uiommu_mutex_lock(&group->mutex);
	if (group->nr_devices != 1)
		ret = -EINVAL;
	else
		ret = __iommu_attach_group(domain, group);
	uiommu_mutex_unlock(&group->mutex);
	return ret;
}

void iommu_detach_device(struct iommu_domain *domain, struct device *dev)
{
	struct iommu_group *group = dev->iommu_group;

	if (!group)
		return;
	uiommu_mutex_lock(&group->mutex);
	if (!WARN_ON(domain != group->domain) && !WARN_ON(group->nr_devices != 1))
		__iommu_group_set_core_domain(group);
	uiommu_mutex_unlock(&group->mutex);
}

/*
 * iommufd's replace: from whatever the group is on straight to @new_domain, without passing
 * through the blocking domain. The caller owns the group.
 */
int iommu_group_replace_domain(struct iommu_group *group, struct iommu_domain *new_domain)
{
	int ret;

	if (!new_domain)
		return -EINVAL;
	uiommu_mutex_lock(&group->mutex);
	if (!group->nr_devices || !iommu_domain_compatible(new_domain, iommu_group_first_dev(group)))
		ret = -EINVAL;
	else
		ret = __iommu_group_set_domain(group, new_domain);
	uiommu_mutex_unlock(&group->mutex);
	return ret;
}

struct iommu_domain *iommu_get_dma_domain(struct device *dev)
{
	struct iommu_group *group = dev->iommu_group;

	return group ? __atomic_load_n(&group->default_domain, __ATOMIC_ACQUIRE) : NULL;
}

/*
 * A device's DMA holds its group's mutex over each transfer (dma-engine.c), so that no attach,
 * detach or replace (and so no free of the domain it reads through) completes under it: the
 * drain of in-flight DMA a hardware detach implies.
 */
void iommu_group_mutex_lock(struct iommu_group *group)
{
	uiommu_mutex_lock(&group->mutex);
}

void iommu_group_mutex_unlock(struct iommu_group *group)
{
	uiommu_mutex_unlock(&group->mutex);
}

/* The group's current domain, with its mutex held; NULL when @dev left @group. */
struct iommu_domain *__iommu_group_domain_for_dev(struct iommu_group *group, struct device *dev)
{
	lockdep_assert_held(&group->mutex);
	return dev->iommu_group == group ? group->domain : NULL;
}

struct iommu_domain *iommu_get_domain_for_dev(struct device *dev)
{
	struct iommu_group *group = dev->iommu_group;
	struct iommu_domain *domain;

	if (!group)
		return NULL;
	uiommu_mutex_lock(&group->mutex);
	domain = group->domain;
	uiommu_mutex_unlock(&group->mutex);
	return domain;
}

/* ---- PASIDs and attach handles --------------------------------------------------------------- */

/*
 * The PASID layer. A PASID attachment points one PASID of every PASID-capable member of a
 * group at a domain (set_dev_pasid); members without PASID support (max_pasids 0) cannot emit
 * PASID-tagged requests and are skipped. Removing one is attaching the driver's blocked domain
 * to the PASID, which is why a driver without a blocked domain that can do set_dev_pasid
 * cannot attach PASIDs at all.
 *
 * Publication (invariant 19). An attach first reserves the PASID's slot (invisible: lookups
 * answer -ENOENT), programs every device, and only then stores the entry: a fault that comes
 * in meanwhile finds no handler rather than a half-attached domain. A failure puts the devices
 * already done back where they were and frees the slot.
 *
 * Handles (invariant 20). A handle stored in the table is what lock-free readers get; they may
 * use it until the detach or replace that removes it returns. So a replace must bring a new
 * handle: reusing the published one would change it under a reader.
 */

/* -EOPNOTSUPP unless both @domain and the driver's blocked domain can be set on a PASID. */
static int iommu_pasid_supported(const struct iommu_ops *ops, struct iommu_domain *domain)
{
	if (!domain->ops->set_dev_pasid || !ops->blocked_domain ||
	    !ops->blocked_domain->ops->set_dev_pasid)
		return -EOPNOTSUPP;
	return 0;
}

static bool group_device_has_pasid(struct group_device *gdev)
{
	return gdev->dev->iommu_data->max_pasids > 0;
}

/* Takes @pasid of @dev off whatever it is on (the blocked domain's set_dev_pasid). */
static void iommu_remove_dev_pasid(struct device *dev, uint32_t pasid,
				   struct iommu_domain *domain)
{
	struct iommu_domain *blocked = dev_iommu_ops(dev)->blocked_domain;

	WARN_ON(blocked->ops->set_dev_pasid(blocked, dev, pasid, domain));
}

/*
 * Sets @domain on @pasid of every PASID-capable member; @old is what the PASID is on now (NULL:
 * nothing). All or nothing: on failure the members done go back to @old, or off the PASID.
 */
static int __iommu_set_group_pasid(struct iommu_domain *domain, struct iommu_group *group,
				   uint32_t pasid, struct iommu_domain *old)
{
	struct group_device *gdev, *last_gdev;
	int ret = 0;

	lockdep_assert_held(&group->mutex);
	TAILQ_FOREACH(gdev, &group->devices, list) {
		if (!group_device_has_pasid(gdev))
			continue;
		ret = uiommu_should_fail() ? -ENOMEM :
					     domain->ops->set_dev_pasid(domain, gdev->dev, pasid, old);
		if (ret)
			goto err_revert;
	}
	return 0;

err_revert:
	last_gdev = gdev;
	TAILQ_FOREACH(gdev, &group->devices, list) {
		if (gdev == last_gdev)
			break;
		if (!group_device_has_pasid(gdev))
			continue;
		/* A driver must take back a domain that worked a moment ago. */
		if (!old || WARN_ON(old->ops->set_dev_pasid(old, gdev->dev, pasid, domain)))
			iommu_remove_dev_pasid(gdev->dev, pasid, domain);
	}
	return ret;
}

static void __iommu_remove_group_pasid(struct iommu_group *group, uint32_t pasid,
				       struct iommu_domain *domain)
{
	struct group_device *gdev;

	lockdep_assert_held(&group->mutex);
	TAILQ_FOREACH(gdev, &group->devices, list)
		if (group_device_has_pasid(gdev))
			iommu_remove_dev_pasid(gdev->dev, pasid, domain);
}

/*
 * -EINVAL when @pasid is beyond a PASID-capable member's range, or when no member can use
 * PASIDs at all (the kernel would "attach" to nobody; we refuse).
 */
static int iommu_group_check_pasid(struct iommu_group *group, uint32_t pasid)
{
	struct group_device *gdev;
	bool any = false;

	lockdep_assert_held(&group->mutex);
	TAILQ_FOREACH(gdev, &group->devices, list) {
		uint32_t max = gdev->dev->iommu_data->max_pasids;

		if (!max)
			continue;
		if (pasid >= max)
			return -EINVAL;
		any = true;
	}
	return any ? 0 : -EINVAL;
}

/* The argument checks shared by attach and replace; no lock needed. */
static int iommu_pasid_check_args(struct iommu_domain *domain, struct device *dev,
				  uint32_t pasid)
{
	const struct iommu_ops *ops;
	int ret;

	if (!dev->iommu_group || !dev->iommu_data)
		return -ENODEV;
	ops = dev_iommu_ops(dev);
	ret = iommu_pasid_supported(ops, domain);
	if (ret)
		return ret;
	if (!iommu_domain_compatible(domain, dev) || pasid == IOMMU_NO_PASID)
		return -EINVAL;
	return 0;
}

/**
 * iommu_attach_device_pasid() - attach @domain to @pasid of @dev's group
 * @handle: published with the entry (its @domain set), or NULL for a bare-domain entry
 *
 * Return: 0; -ENODEV (no group), -EOPNOTSUPP (no set_dev_pasid, or no blocked domain with one),
 * -EINVAL (PASID 0, out of a member's range, no PASID-capable member, incompatible domain),
 * -EBUSY (the PASID is taken), -ENOMEM, or the driver's error. On error nothing changed.
 */
int iommu_attach_device_pasid(struct iommu_domain *domain, struct device *dev, uint32_t pasid,
			      struct iommu_attach_handle *handle)
{
	struct iommu_group *group = dev->iommu_group;
	bool created;
	int ret;

	ret = iommu_pasid_check_args(domain, dev, pasid);
	if (ret)
		return ret;

	uiommu_mutex_lock(&group->mutex);
	ret = iommu_group_check_pasid(group, pasid);
	if (ret)
		goto out_unlock;
	ret = pasid_array_reserve(group, pasid, false, &created);
	if (ret)
		goto out_unlock;
	ret = __iommu_set_group_pasid(domain, group, pasid, NULL);
	if (ret) {
		pasid_array_erase(group, pasid);
		goto out_unlock;
	}
	/* Only now may a lookup see it: every device accepted the domain. */
	pasid_array_store(group, pasid, pasid_entry_make(domain, handle));
out_unlock:
	uiommu_mutex_unlock(&group->mutex);
	return ret;
}

/**
 * iommu_detach_device_pasid() - the reverse of iommu_attach_device_pasid()
 * Every PASID-capable member goes to the blocked domain at @pasid, then the entry goes. Once
 * this returns, the handle that was published there is the caller's to free.
 */
void iommu_detach_device_pasid(struct iommu_domain *domain, struct device *dev, uint32_t pasid)
{
	struct iommu_group *group = dev->iommu_group;

	if (!group)
		return;
	uiommu_mutex_lock(&group->mutex);
	if (!WARN_ON(pasid_entry_to_domain(pasid_array_load(group, pasid)) != domain)) {
		__iommu_remove_group_pasid(group, pasid, domain);
		pasid_array_erase(group, pasid);
	}
	uiommu_mutex_unlock(&group->mutex);
}

/**
 * iommu_replace_device_pasid() - move an attached @pasid of @dev's group to @domain
 * @handle: required, and never the one published now (lock-free readers may hold that one)
 *
 * Return: 0; -EINVAL (no handle, the PASID is not attached, the handle is the current one, PASID
 * 0 or an incompatible domain), -EOPNOTSUPP, -ENODEV, -ENOMEM, or the driver's error. On error
 * the PASID keeps its old domain and handle.
 */
int iommu_replace_device_pasid(struct iommu_domain *domain, struct device *dev, uint32_t pasid,
			       struct iommu_attach_handle *handle)
{
	struct iommu_group *group = dev->iommu_group;
	struct iommu_domain *old;
	uintptr_t curr;
	int ret;

	if (!handle)
		return -EINVAL;
	ret = iommu_pasid_check_args(domain, dev, pasid);
	if (ret)
		return ret;

	uiommu_mutex_lock(&group->mutex);
	curr = pasid_array_load(group, pasid);
	if (!curr) {
		ret = -EINVAL;
		goto out_unlock;
	}
	if (WARN_ON(curr == ((uintptr_t)handle | PASID_ENTRY_HANDLE))) {
		ret = -EINVAL;
		goto out_unlock;
	}
	old = pasid_entry_to_domain(curr);
	if (old != domain) {
		ret = __iommu_set_group_pasid(domain, group, pasid, old);
		if (ret)
			goto out_unlock;
	}
	pasid_array_store(group, pasid, pasid_entry_make(domain, handle));
out_unlock:
	uiommu_mutex_unlock(&group->mutex);
	return ret;
}

/**
 * iommu_get_domain_for_dev_pasid() - the domain at (@dev's group, @pasid)
 * Return: the domain, NULL when nothing is published there, ERR_PTR(-EBUSY) when @type is not
 * 0 and the domain is of another type. Takes only the table's lock.
 */
struct iommu_domain *iommu_get_domain_for_dev_pasid(struct device *dev, uint32_t pasid,
						    unsigned int type)
{
	struct iommu_group *group = dev->iommu_group;
	struct iommu_domain *domain;

	if (!group)
		return NULL;
	uiommu_mutex_lock(&group->pasid_lock);
	domain = pasid_entry_to_domain(pasid_array_load_locked(group, pasid));
	if (type && domain && iommu_domain_type(domain) != type)
		domain = ERR_PTR(-EBUSY);
	uiommu_mutex_unlock(&group->pasid_lock);
	return domain;
}

/**
 * iommu_attach_handle_get() - the handle published at (@group, @pasid)
 * Takes only the table's own lock (never the group mutex): fault reporting calls it. The handle
 * stays valid until the detach or replace that removes it returns; the caller synchronises
 * with those (iommufd: its own locks; io-pgfault: the driver's fault flush before detach).
 * Return: the handle, ERR_PTR(-ENOENT) (nothing, only reserved, or a bare domain), or
 * ERR_PTR(-EBUSY) (@type not 0 and the handle's domain is of another type).
 */
struct iommu_attach_handle *iommu_attach_handle_get(struct iommu_group *group, uint32_t pasid,
						    unsigned int type)
{
	struct iommu_attach_handle *handle;
	uintptr_t entry;

	uiommu_mutex_lock(&group->pasid_lock);
	entry = pasid_array_load_locked(group, pasid);
	if (!entry || (entry & PASID_ENTRY_TAG_MASK) != PASID_ENTRY_HANDLE) {
		handle = ERR_PTR(-ENOENT);
	} else {
		handle = (struct iommu_attach_handle *)(entry & ~(uintptr_t)PASID_ENTRY_TAG_MASK);
		if (type && iommu_domain_type(handle->domain) != type)
			handle = ERR_PTR(-EBUSY);
	}
	uiommu_mutex_unlock(&group->pasid_lock);
	return handle;
}

/**
 * iommu_attach_group_handle() - iommu_attach_group() that also publishes @handle at the RID
 * (IOMMU_NO_PASID), so faults without a PASID find it.
 * Return: as iommu_attach_group(); -EBUSY too when a handle is already there; -ENOMEM.
 */
int iommu_attach_group_handle(struct iommu_domain *domain, struct iommu_group *group,
			      struct iommu_attach_handle *handle)
{
	bool created;
	int ret;

	if (!handle)
		return -EINVAL;
	uiommu_mutex_lock(&group->mutex);
	ret = pasid_array_reserve(group, IOMMU_NO_PASID, false, &created);
	if (ret)
		goto out_unlock;
	ret = __iommu_attach_group(domain, group);
	if (ret) {
		pasid_array_erase(group, IOMMU_NO_PASID);
		goto out_unlock;
	}
	pasid_array_store(group, IOMMU_NO_PASID, pasid_entry_make(domain, handle));
out_unlock:
	uiommu_mutex_unlock(&group->mutex);
	return ret;
}

/* Pairs with iommu_attach_group_handle() (or the replace that published the handle). */
void iommu_detach_group_handle(struct iommu_domain *domain, struct iommu_group *group)
{
	uiommu_mutex_lock(&group->mutex);
	if (!WARN_ON(domain != group->domain))
		__iommu_group_set_core_domain(group);
	pasid_array_erase(group, IOMMU_NO_PASID);
	uiommu_mutex_unlock(&group->mutex);
}

/**
 * iommu_replace_group_handle() - switch the group straight to @new_domain (no stop on the
 * blocking domain) and publish @handle at the RID. While the switch runs, lookups still see the
 * previous handle, if any; on failure it stays.
 * Return: 0; -EINVAL (no domain or handle, an incompatible domain), -ENOMEM, the driver's error.
 */
int iommu_replace_group_handle(struct iommu_group *group, struct iommu_domain *new_domain,
			       struct iommu_attach_handle *handle)
{
	bool created;
	int ret;

	if (!new_domain || !handle)
		return -EINVAL;
	uiommu_mutex_lock(&group->mutex);
	if (!group->nr_devices ||
	    !iommu_domain_compatible(new_domain, iommu_group_first_dev(group))) {
		ret = -EINVAL;
		goto out_unlock;
	}
	ret = pasid_array_reserve(group, IOMMU_NO_PASID, true, &created);
	if (ret)
		goto out_unlock;
	ret = __iommu_group_set_domain(group, new_domain);
	if (ret) {
		if (created)
			pasid_array_erase(group, IOMMU_NO_PASID);
		goto out_unlock;
	}
	pasid_array_store(group, IOMMU_NO_PASID, pasid_entry_make(new_domain, handle));
out_unlock:
	uiommu_mutex_unlock(&group->mutex);
	return ret;
}

/*
 * The global PASID space (the kernel's iommu_global_pasid_ida): PASIDs handed to address spaces
 * (SVA) and to kernel users, unique across all devices so one PASID means one address space
 * everywhere. A bitmap over [0, 2^20); iommu_global_pasid_lock, a leaf.
 */
#define IOMMU_GLOBAL_PASID_MAX (1u << 20)
UIOMMU_MUTEX_DEFINE(iommu_global_pasid_lock);
static uint64_t iommu_global_pasids[IOMMU_GLOBAL_PASID_MAX / 64];

/**
 * iommu_alloc_global_pasid() - the lowest free PASID in [1, max_pasids - 1] of @dev
 * Return: the PASID, or IOMMU_PASID_INVALID (no PASID support, none free, or an injected
 * failure).
 */
uint32_t iommu_alloc_global_pasid(struct device *dev)
{
	uint32_t max, pasid, ret = IOMMU_PASID_INVALID;

	if (!dev->iommu_data || !dev->iommu_data->max_pasids || uiommu_should_fail())
		return IOMMU_PASID_INVALID;
	max = dev->iommu_data->max_pasids;
	if (max > IOMMU_GLOBAL_PASID_MAX)
		max = IOMMU_GLOBAL_PASID_MAX;
	uiommu_mutex_lock(&iommu_global_pasid_lock);
	for (pasid = IOMMU_FIRST_GLOBAL_PASID; pasid < max; pasid++) {
		uint64_t *word = &iommu_global_pasids[pasid / 64];

		if (*word == UINT64_MAX) {
			pasid |= 63;
			continue;
		}
		if (!(*word & (1ull << (pasid % 64)))) {
			*word |= 1ull << (pasid % 64);
			ret = pasid;
			break;
		}
	}
	uiommu_mutex_unlock(&iommu_global_pasid_lock);
	return ret;
}

/* Pairs with iommu_alloc_global_pasid(); IOMMU_PASID_INVALID is ignored. */
void iommu_free_global_pasid(uint32_t pasid)
{
	if (pasid == IOMMU_PASID_INVALID || WARN_ON(pasid >= IOMMU_GLOBAL_PASID_MAX))
		return;
	uiommu_mutex_lock(&iommu_global_pasid_lock);
	WARN_ON(!(iommu_global_pasids[pasid / 64] & (1ull << (pasid % 64))));
	iommu_global_pasids[pasid / 64] &= ~(1ull << (pasid % 64));
	uiommu_mutex_unlock(&iommu_global_pasid_lock);
}

/* ---- DMA ownership -------------------------------------------------------------------------- */

/**
 * iommu_device_use_default_domain() - a DMA-API driver is about to bind to @dev
 * Return: 0; -EPROBE_DEFER before the group has a default domain; -EBUSY when the group is
 * owned by a user, is on another domain, or has PASIDs attached.
 */
int iommu_device_use_default_domain(struct device *dev)
{
	struct iommu_group *group = dev->iommu_group;
	int ret = 0;

	if (!group)
		return 0;
	uiommu_mutex_lock(&group->mutex);
	if (!group->default_domain) {
		ret = -EPROBE_DEFER;
		goto out_unlock;
	}
	if (group->owner_cnt) {
		if (group->domain != group->default_domain || group->owner ||
		    !pasid_array_empty(group)) {
			ret = -EBUSY;
			goto out_unlock;
		}
	}
	group->owner_cnt++;
out_unlock:
	uiommu_mutex_unlock(&group->mutex);
	return ret;
}

/* Pairs with a successful iommu_device_use_default_domain(). */
void iommu_device_unuse_default_domain(struct device *dev)
{
	struct iommu_group *group = dev->iommu_group;

	if (!group)
		return;
	uiommu_mutex_lock(&group->mutex);
	if (!WARN_ON(!group->owner_cnt || !pasid_array_empty(group)))
		group->owner_cnt--;
	uiommu_mutex_unlock(&group->mutex);
}

static int __iommu_take_dma_ownership(struct iommu_group *group, void *owner)
{
	int ret;

	lockdep_assert_held(&group->mutex);
	if ((group->domain && group->domain != group->default_domain) || !pasid_array_empty(group))
		return -EBUSY;
	ret = __iommu_group_alloc_blocking_domain(group);
	if (ret)
		return ret;
	ret = __iommu_group_set_domain(group, group->blocking_domain);
	if (ret)
		return ret;
	group->owner = owner;
	group->owner_cnt++;
	return 0;
}

/**
 * iommu_group_claim_dma_owner() - a user (the legacy VFIO group path) takes the whole group
 * Return: 0; -EINVAL for a NULL cookie; -EPERM when drivers or another owner hold it; -EBUSY
 * when it is on a non-default domain or has PASIDs.
 */
int iommu_group_claim_dma_owner(struct iommu_group *group, void *owner)
{
	int ret;

	if (WARN_ON(!owner))
		return -EINVAL;
	uiommu_mutex_lock(&group->mutex);
	if (group->owner_cnt) {
		ret = -EPERM;
		goto out_unlock;
	}
	ret = __iommu_take_dma_ownership(group, owner);
out_unlock:
	uiommu_mutex_unlock(&group->mutex);
	return ret;
}

/**
 * iommu_device_claim_dma_owner() - a user (VFIO cdev, iommufd) takes the group of @dev
 * Several devices of one group may be claimed with the same cookie; each claim counts.
 * Return: 0; -ENODEV without a group; -EINVAL for a NULL cookie; -EPERM for another cookie or
 * bound drivers; -EBUSY as for the group claim.
 */
int iommu_device_claim_dma_owner(struct device *dev, void *owner)
{
	struct iommu_group *group = dev->iommu_group;
	int ret = 0;

	if (!group)
		return -ENODEV;
	if (WARN_ON(!owner))
		return -EINVAL;
	uiommu_mutex_lock(&group->mutex);
	if (group->owner_cnt) {
		if (group->owner != owner) {
			ret = -EPERM;
			goto out_unlock;
		}
		group->owner_cnt++;
		goto out_unlock;
	}
	ret = __iommu_take_dma_ownership(group, owner);
out_unlock:
	uiommu_mutex_unlock(&group->mutex);
	return ret;
}

static void __iommu_release_dma_ownership(struct iommu_group *group)
{
	lockdep_assert_held(&group->mutex);
	if (WARN_ON(!group->owner_cnt || !group->owner || !pasid_array_empty(group)))
		return;
	group->owner_cnt = 0;
	group->owner = NULL;
	__iommu_group_set_domain_nofail(group, group->default_domain);
}

void iommu_group_release_dma_owner(struct iommu_group *group)
{
	uiommu_mutex_lock(&group->mutex);
	__iommu_release_dma_ownership(group);
	uiommu_mutex_unlock(&group->mutex);
}

/* Pairs with a successful iommu_device_claim_dma_owner(). */
void iommu_device_release_dma_owner(struct device *dev)
{
	struct iommu_group *group = dev->iommu_group;

	if (!group)
		return;
	uiommu_mutex_lock(&group->mutex);
	if (group->owner_cnt > 1)
		group->owner_cnt--;
	else
		__iommu_release_dma_ownership(group);
	uiommu_mutex_unlock(&group->mutex);
}

bool iommu_group_dma_owner_claimed(struct iommu_group *group)
{
	bool claimed;

	uiommu_mutex_lock(&group->mutex);
	claimed = group->owner_cnt != 0;
	uiommu_mutex_unlock(&group->mutex);
	return claimed;
}

/* ---- sysfs attributes ------------------------------------------------------------------------ */

/* The name sysfs gives a domain type ("DMA-FQ"; "unknown" for what it does not name). */
const char *iommu_domain_type_str(unsigned int type)
{
	switch (type) {
	case IOMMU_DOMAIN_BLOCKED:
		return "blocked";
	case IOMMU_DOMAIN_IDENTITY:
		return "identity";
	case IOMMU_DOMAIN_UNMANAGED:
		return "unmanaged";
	case IOMMU_DOMAIN_DMA:
		return "DMA";
	case IOMMU_DOMAIN_DMA_FQ:
		return "DMA-FQ";
	default:
		return "unknown";
	}
}

ssize_t iommu_group_type_show(struct iommu_group *group, char *buf, size_t len)
{
	const char *type = "unknown";
	int n;

	uiommu_mutex_lock(&group->mutex);
	if (group->default_domain)
		type = iommu_domain_type_str(group->default_domain->type);
	uiommu_mutex_unlock(&group->mutex);
	n = snprintf(buf, len, "%s\n", type);
	return n < 0 ? -EINVAL : (ssize_t)((size_t)n < len ? (size_t)n : len ? len - 1 : 0);
}

/* sysfs_streq(): equal, allowing one trailing newline on either side. */
static bool sysfs_streq(const char *s1, size_t n1, const char *s2)
{
	size_t n2 = strlen(s2);

	if (n1 && s1[n1 - 1] == '\n')
		n1--;
	return n1 == n2 && !memcmp(s1, s2, n1);
}

/**
 * iommu_group_type_store() - the sysfs `type` write
 * DMA -> DMA-FQ happens live on the same domain, with drivers bound. Every other change needs
 * a group with members and no bound driver and no owner, and replaces the default domain.
 * Return: @count, or -EACCES (not privileged), -EINVAL (bad string, no default domain, or a
 * type the devices cannot take), -EPERM (drivers bound or owned, or no device).
 */
ssize_t iommu_group_type_store(struct iommu_group *group, const char *buf, size_t count,
			       bool privileged)
{
	return iommu_group_type_store_held(group, buf, count, privileged, false);
}

ssize_t iommu_group_type_store_held(struct iommu_group *group, const char *buf, size_t count,
				    bool privileged, bool owned_elsewhere)
{
	struct group_device *gdev;
	unsigned int req_type;
	int ret;

	if (!privileged)
		return -EACCES;
	uiommu_mutex_lock(&group->mutex);
	ret = group->default_domain ? 0 : -EINVAL;
	uiommu_mutex_unlock(&group->mutex);
	if (ret)
		return ret;

	if (sysfs_streq(buf, count, "identity"))
		req_type = IOMMU_DOMAIN_IDENTITY;
	else if (sysfs_streq(buf, count, "DMA"))
		req_type = IOMMU_DOMAIN_DMA;
	else if (sysfs_streq(buf, count, "DMA-FQ"))
		req_type = IOMMU_DOMAIN_DMA_FQ;
	else if (sysfs_streq(buf, count, "auto"))
		req_type = 0;
	else
		return -EINVAL;

	uiommu_mutex_lock(&group->mutex);
	/* The one live change: a flush queue starts on the domain in use, drivers and all. */
	if (req_type == IOMMU_DOMAIN_DMA_FQ && group->default_domain &&
	    group->default_domain->type == IOMMU_DOMAIN_DMA) {
		ret = iommu_dma_init_fq(group->default_domain);
		if (!ret)
			iommu_domain_set_type(group->default_domain, IOMMU_DOMAIN_DMA_FQ);
		goto out_unlock;
	}
	if (!group->nr_devices || group->owner_cnt || owned_elsewhere) {
		ret = -EPERM;
		goto out_unlock;
	}
	ret = iommu_setup_default_domain(group, (int)req_type);
	if (ret)
		goto out_unlock;
	TAILQ_FOREACH(gdev, &group->devices, list)
		iommu_setup_dma_ops(gdev->dev);
out_unlock:
	uiommu_mutex_unlock(&group->mutex);
	return ret ? ret : (ssize_t)count;
}

unsigned int iommu_get_resv_regions(struct device *dev, struct iommu_resv_region *regions,
				    unsigned int max)
{
	const struct iommu_ops *ops = dev->iommu ? dev->iommu->ops : NULL;

	return ops && ops->get_resv_regions ? ops->get_resv_regions(dev, regions, max) : 0;
}

/*
 * Adds @r to the @n regions of @list, kept sorted by start, merging it into a region of the
 * same type it overlaps or touches (the kernel's iommu_insert_resv_region()); drops it when
 * the list is full. Returns the new count.
 */
static unsigned int iommu_resv_list_insert(struct iommu_resv_region *list, unsigned int n,
					   unsigned int max, const struct iommu_resv_region *r)
{
	uint64_t last = r->start + r->length - 1;
	unsigned int i, j;

	for (i = 0; i < n; i++) {
		uint64_t ilast = list[i].start + list[i].length - 1;

		if (list[i].type != r->type || r->start > ilast + 1 || last + 1 < list[i].start)
			continue;
		if (r->start < list[i].start)
			list[i].start = r->start;
		if (last > ilast)
			ilast = last;
		list[i].length = ilast - list[i].start + 1;
		return n;
	}
	if (n == max)
		return n;
	for (i = 0; i < n && list[i].start <= r->start; i++)
		;
	for (j = n; j > i; j--)
		list[j] = list[j - 1];
	list[i] = *r;
	return n + 1;
}

static const char *const iommu_resv_type_str[] = {
	[IOMMU_RESV_DIRECT] = "direct",
	[IOMMU_RESV_DIRECT_RELAXABLE] = "direct-relaxable",
	[IOMMU_RESV_RESERVED] = "reserved",
	[IOMMU_RESV_MSI] = "msi",
	[IOMMU_RESV_SW_MSI] = "msi",
};

/*
 * One line per reserved region of the group, "0x<start> 0x<end> <type>" (end inclusive), sorted
 * by start, the regions of one type that members share or that touch merged into one, as the
 * kernel's iommu_get_group_resv_regions() makes them.
 */
ssize_t iommu_group_reserved_regions_show(struct iommu_group *group, char *buf, size_t len)
{
	struct iommu_resv_region list[32];
	struct group_device *gdev;
	unsigned int n = 0, i;
	size_t off = 0;

	uiommu_mutex_lock(&group->mutex);
	TAILQ_FOREACH(gdev, &group->devices, list) {
		struct iommu_resv_region regions[8];
		unsigned int nr = iommu_get_resv_regions(gdev->dev, regions, 8);

		for (i = 0; i < nr; i++)
			if (regions[i].length)
				n = iommu_resv_list_insert(list, n, ARRAY_SIZE(list), &regions[i]);
	}
	uiommu_mutex_unlock(&group->mutex);
	for (i = 0; i < n && off < len; i++) {
		int w = snprintf(buf + off, len - off, "0x%016llx 0x%016llx %s\n",
				 (unsigned long long)list[i].start,
				 (unsigned long long)(list[i].start + list[i].length - 1),
				 iommu_resv_type_str[list[i].type]);

		if (w < 0)
			break;
		off += (size_t)w < len - off ? (size_t)w : len - off - 1;
	}
	return (ssize_t)off;
}
