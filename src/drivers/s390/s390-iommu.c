// SPDX-License-Identifier: MIT
/*
 * The s390-style (zPCI) IOMMU driver.
 *
 * On s390 every PCI function has its own IOMMU: the function registers an I/O translation
 * anchor (IOTA), the origin of a region-third table, and the firmware walks region table ->
 * segment table -> page table for each DMA (the format is in s390-iommu.h). This driver builds
 * and walks those tables for real, and keeps the per-function state the kernel keeps in its
 * struct zpci_dev.
 *
 * Tables. A paging domain owns a region table, allocated with the domain; segment and page
 * tables are allocated on demand by map. Nothing but the domain's free ever removes a table,
 * so readers (iova_to_phys, the IOTLB walker, the "hardware" of s390_zdev_translate) walk
 * without a lock: every entry is read with an acquire load, a new lower table is published
 * with a compare-and-swap from "invalid" (the loser frees its table and uses the winner's), and
 * page entries change with a compare-and-swap (map: invalid -> valid, so overlapping maps
 * cannot silently overwrite) or an exchange (unmap: valid -> invalid). Callers own their IOVA
 * ranges, as the core requires; two maps of disjoint ranges never contend but on a table slot.
 * The aperture of a domain is the DMA range of the function it was made for, [start_dma,
 * end_dma] (at most 4 TiB): map outside it is -EINVAL, unmap outside it unmaps nothing, and a
 * domain whose aperture misses a function's range cannot be attached to it (-EINVAL).
 *
 * The zdev. The function outlives its IOMMU probe: the zdev is made on the first probe (or by
 * s390_zdev_set_dma_range()), keeps its DMA range and its "platform DMA" table (the function's
 * own translation when no domain is attached, the pre-dma-iommu s390 DMA API) across hot-plug,
 * and is freed by s390_device_forget(). Its state:
 *   - probed: the driver's private pointer. probe_device sets it (and dev->iommu_data->priv),
 *     release_device clears both, under dma_domain_lock;
 *   - domain / s390_domain / iota: what the function translates through now;
 *   - platform_dma: the anchor is the function's own table.
 *
 * The race (spec §8, docs/s390.md). Before Linux 6.5 release_device ran outside the group
 * mutex, so VFIO's teardown could attach or detach a domain at the same time as, or after, the
 * function's release: detach re-initialised platform DMA that release had already restored,
 * and attach re-registered a domain's table on a released function whose domain was then freed.
 * Two protections, both kept here:
 *   1. the driver's own (Matthew Rosato's 2022 fix): release clears the private pointer under
 *      dma_domain_lock; after that an attach is a no-op, a detach re-initialises nothing, and
 *      only release restores platform DMA. The legacy entry points (a test knob) reach attach
 *      and detach this way, without the group mutex, as the old core did;
 *   2. the core's (6.5): release_device runs under group->mutex, like every attach and detach,
 *      so through the core the two never overlap. attach_dev through the core checks it: one
 *      that finds the function released is a broken core invariant and aborts.
 *
 * Locks, outermost first: group->mutex (the core's) -> zdev->dma_domain_lock (zdev state) ->
 * s390_domain->list_lock (the domain's device list). s390_lock (the zdev registry, the group
 * keys, the instance table) is a leaf taken with none of the driver's other locks held.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/queue.h>

#include "drivers/s390/s390-iommu.h"
#include "iommu/iotlb.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "lib/lockdep.h"

struct s390_domain;

/* A group_key's group, weakly held (the member devices hold the references). s390_lock. */
struct s390_group_key {
	LIST_ENTRY(s390_group_key) node;   /* head at s390_group_keys */
	const struct iommu_device *iommu;
	char key[sizeof(((struct device *)0)->group_key)];
	struct iommu_group *group;
	unsigned int nr_devices;           /* members between device_group and release */
};

/* An IOMMU instance's driver data (iommu->priv). Immutable while registered. */
struct s390_instance {
	uint64_t start_dma, end_dma;
};

/* A PCI function (the kernel's struct zpci_dev). */
struct zpci_dev {
	struct device *dev;                 /* immutable; not a reference */
	LIST_ENTRY(zpci_dev) reg_node;      /* head at s390_zdevs; s390_lock */
	atomic_int refs;                    /* the registry's, plus s390_zdev_get()'s */
	struct s390_group_key *key;         /* s390_lock */
	uint64_t *dma_table;                /* platform DMA region table; immutable */

	/* Protects everything below. Inside group->mutex, outside the domains' list_lock. */
	struct uiommu_mutex dma_domain_lock;
	uint64_t start_dma, end_dma;
	bool probed;                        /* the private pointer is set */
	struct iommu_domain *domain;        /* blocked, a paging domain, or NULL */
	struct s390_domain *s390_domain;    /* when domain is a paging domain */
	LIST_ENTRY(zpci_dev) domain_node;   /* head at s390_domain->devices; its list_lock */
	_Atomic(uint64_t) iota;             /* written under the lock */
	bool platform_dma;
	unsigned int probes, releases, platform_dma_inits, stale_attaches, stale_detaches;
};

struct s390_domain {
	struct iommu_domain domain;
	uint64_t *dma_table;                /* the region table; immutable */
	struct uiommu_mutex list_lock;          /* protects devices, nr_devices; a leaf */
	LIST_HEAD(, zpci_dev) devices;
	unsigned int nr_devices;
};

/* Protects the driver's device bookkeeping; a leaf. */
UIOMMU_MUTEX_DEFINE(s390_lock);
static LIST_HEAD(, zpci_dev) s390_zdevs = LIST_HEAD_INITIALIZER(s390_zdevs);
static LIST_HEAD(, s390_group_key) s390_group_keys = LIST_HEAD_INITIALIZER(s390_group_keys);
static atomic_bool s390_legacy_entry;

static const struct iommu_domain_ops s390_paging_domain_ops;
static struct iommu_domain s390_blocked_domain;

static struct s390_domain *to_s390_domain(struct iommu_domain *domain)
{
	return container_of(domain, struct s390_domain, domain);
}

static bool s390_is_paging_domain(const struct iommu_domain *domain)
{
	return domain && domain->ops == &s390_paging_domain_ops;
}

/* ---- tables ------------------------------------------------------------------------------ */

static unsigned int s390_calc_rtx(uint64_t iova)
{
	return (unsigned int)(iova >> S390_RT_SHIFT) & S390_INDEX_MASK;
}

static unsigned int s390_calc_sx(uint64_t iova)
{
	return (unsigned int)(iova >> S390_ST_SHIFT) & S390_INDEX_MASK;
}

static unsigned int s390_calc_px(uint64_t iova)
{
	return (unsigned int)(iova >> S390_PAGE_SHIFT) & S390_PT_MASK;
}

static uint64_t s390_entry_load(const uint64_t *entry)
{
	return __atomic_load_n(entry, __ATOMIC_ACQUIRE);
}

static bool s390_table_entry_valid(uint64_t entry)
{
	return !(entry & S390_TABLE_INVALID);
}

static bool s390_pte_valid(uint64_t pte)
{
	return !(pte & S390_PTE_INVALID);
}

static uint64_t s390_origin(const uint64_t *table)
{
	return (uint64_t)(uintptr_t)table;
}

static uint64_t *s390_table_at(uint64_t origin)
{
	return (uint64_t *)(uintptr_t)origin;
}

/*
 * A table of @entries entries, each @fill, aligned to its own size as the hardware requires.
 * uiommu_zalloc has no alignment argument: over-allocate and keep the block's start in the
 * word before the table, for s390_table_free().
 */
static uint64_t *s390_table_alloc(unsigned int entries, uint64_t fill)
{
	size_t size = (size_t)entries * sizeof(uint64_t);
	uintptr_t raw, aligned;
	uint64_t *table;
	unsigned int i;

	raw = (uintptr_t)uiommu_zalloc(size + size + sizeof(void *));
	if (!raw)
		return NULL;
	aligned = (raw + sizeof(void *) + size - 1) & ~(uintptr_t)(size - 1);
	((void **)aligned)[-1] = (void *)raw;
	table = (uint64_t *)aligned;
	/* Plain stores: the table is published later with a release compare-and-swap. */
	for (i = 0; i < entries; i++)
		table[i] = fill;
	return table;
}

static void s390_table_free(uint64_t *table)
{
	if (table)
		uiommu_free(((void **)table)[-1]);
}

static uint64_t *s390_region_table_alloc(void)
{
	return s390_table_alloc(S390_TABLE_ENTRIES, S390_TABLE_INVALID);
}

/* The segment table of a valid region entry, or NULL if the entry is malformed. */
static uint64_t *s390_rte_to_sto(uint64_t rte)
{
	if ((rte & S390_TABLE_TYPE_MASK) != S390_TABLE_TYPE_RTX)
		return NULL;
	return s390_table_at(rte & S390_RTE_ADDR_MASK);
}

static uint64_t *s390_ste_to_pto(uint64_t ste)
{
	if ((ste & S390_TABLE_TYPE_MASK) != S390_TABLE_TYPE_SX)
		return NULL;
	return s390_table_at(ste & S390_STE_ADDR_MASK);
}

/* Does the segment table a region entry designates reach index @sx (its offset and length)? */
static bool s390_rte_covers(uint64_t rte, unsigned int sx)
{
	unsigned int first = (unsigned int)((rte & S390_TABLE_OFFSET_MASK) >>
					    S390_TABLE_OFFSET_SHIFT);
	unsigned int last = (unsigned int)(rte & S390_TABLE_LEN_MASK);

	return sx >= first * S390_TABLE_QUARTER && sx < (last + 1) * S390_TABLE_QUARTER;
}

/*
 * The lower table behind *@entryp, allocated and published if the entry is invalid. Two
 * mappers may race to fill one slot: the compare-and-swap picks one table, the other is freed.
 */
static uint64_t *s390_get_lower_table(uint64_t *entryp, bool region)
{
	uint64_t entry = s390_entry_load(entryp), expected = S390_TABLE_INVALID;
	uint64_t *table;

	if (s390_table_entry_valid(entry))
		return region ? s390_rte_to_sto(entry) : s390_ste_to_pto(entry);

	if (region) {
		table = s390_table_alloc(S390_TABLE_ENTRIES, S390_TABLE_INVALID);
		if (!table)
			return NULL;
		/* Whole table, offset 0; not protected (protection is per page). */
		entry = (s390_origin(table) & S390_RTE_ADDR_MASK) | S390_TABLE_TYPE_RTX |
			S390_TABLE_LEN_RTX;
	} else {
		table = s390_table_alloc(S390_PT_ENTRIES, S390_PTE_INVALID);
		if (!table)
			return NULL;
		entry = (s390_origin(table) & S390_STE_ADDR_MASK) | S390_TABLE_TYPE_SX;
	}
	if (__atomic_compare_exchange_n(entryp, &expected, entry, false, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE))
		return table;
	/* Someone else published one first: use theirs. */
	s390_table_free(table);
	return region ? s390_rte_to_sto(expected) : s390_ste_to_pto(expected);
}

/* The page entry of @iova, building the path to it when @alloc; NULL when absent. */
static uint64_t *s390_walk_pte(uint64_t *rto, uint64_t iova, bool alloc)
{
	unsigned int rtx = s390_calc_rtx(iova), sx = s390_calc_sx(iova);
	uint64_t *sto, *pto, rte, ste;

	if (alloc) {
		sto = s390_get_lower_table(&rto[rtx], true);
		if (!sto)
			return NULL;
		pto = s390_get_lower_table(&sto[sx], false);
		return pto ? &pto[s390_calc_px(iova)] : NULL;
	}
	rte = s390_entry_load(&rto[rtx]);
	if (!s390_table_entry_valid(rte) || !s390_rte_covers(rte, sx))
		return NULL;
	sto = s390_rte_to_sto(rte);
	if (WARN_ON(!sto))
		return NULL;
	ste = s390_entry_load(&sto[sx]);
	if (!s390_table_entry_valid(ste))
		return NULL;
	pto = s390_ste_to_pto(ste);
	if (WARN_ON(!pto))
		return NULL;
	return &pto[s390_calc_px(iova)];
}

/* The valid page entry of @iova, or 0 (an invalid entry is never 0: it has its bit set). */
static uint64_t s390_lookup_pte(uint64_t *rto, uint64_t iova)
{
	uint64_t *ptep = s390_walk_pte(rto, iova, false);
	uint64_t pte;

	if (!ptep)
		return 0;
	pte = s390_entry_load(ptep);
	return s390_pte_valid(pte) ? pte : 0;
}

static void s390_tables_free(uint64_t *rto)
{
	unsigned int rtx, sx;

	if (!rto)
		return;
	for (rtx = 0; rtx < S390_TABLE_ENTRIES; rtx++) {
		uint64_t *sto;

		if (!s390_table_entry_valid(rto[rtx]))
			continue;
		sto = s390_rte_to_sto(rto[rtx]);
		for (sx = 0; sto && sx < S390_TABLE_ENTRIES; sx++)
			if (s390_table_entry_valid(sto[sx]))
				s390_table_free(s390_ste_to_pto(sto[sx]));
		s390_table_free(sto);
	}
	s390_table_free(rto);
}

/* ---- paging domains ----------------------------------------------------------------------- */

static bool s390_in_aperture(struct iommu_domain *domain, uint64_t iova, uint64_t size)
{
	uint64_t last = iova + size - 1;

	return size && last >= iova && iova >= domain->geometry.aperture_start &&
	       last <= domain->geometry.aperture_end;
}

static int s390_map_pages(struct iommu_domain *domain, uint64_t iova, phys_addr_t paddr,
			  size_t pgsize, size_t pgcount, int prot, size_t *mapped)
{
	struct s390_domain *sdom = to_s390_domain(domain);
	uint64_t pte, size;
	size_t i;
	int rc;

	if (pgsize != S390_PAGE_SIZE || !pgcount || pgcount > (S390_TABLE_SIZE_RT >> S390_PAGE_SHIFT))
		return -EINVAL;
	size = (uint64_t)pgcount << S390_PAGE_SHIFT;
	if (!s390_in_aperture(domain, iova, size))
		return -EINVAL;
	if ((iova | paddr) & (S390_PAGE_SIZE - 1))
		return -EINVAL;

	/* No write permission: the device may only read the page. */
	pte = paddr & S390_PTE_ADDR_MASK;
	if (!(prot & IOMMU_WRITE))
		pte |= S390_TABLE_PROTECTED;
	for (i = 0; i < pgcount; i++) {
		uint64_t *ptep = s390_walk_pte(sdom->dma_table, iova + (i << S390_PAGE_SHIFT), true);
		uint64_t expected = S390_PTE_INVALID;

		if (!ptep) {
			rc = -ENOMEM;
			goto err_undo;
		}
		if (!__atomic_compare_exchange_n(ptep, &expected, pte + (i << S390_PAGE_SHIFT),
						 false, __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
			rc = -EEXIST;
			goto err_undo;
		}
	}
	*mapped = size;
	return 0;

err_undo:
	/* The tables stay (they hold nothing); the pages this call mapped go. */
	while (i--) {
		uint64_t *ptep = s390_walk_pte(sdom->dma_table, iova + (i << S390_PAGE_SHIFT), false);

		if (!WARN_ON(!ptep))
			__atomic_store_n(ptep, S390_PTE_INVALID, __ATOMIC_RELEASE);
	}
	return rc;
}

static size_t s390_unmap_pages(struct iommu_domain *domain, uint64_t iova, size_t pgsize,
			       size_t pgcount, struct iommu_iotlb_gather *gather)
{
	struct s390_domain *sdom = to_s390_domain(domain);
	uint64_t done = 0;
	size_t i;

	if (pgsize != S390_PAGE_SIZE || pgcount > (S390_TABLE_SIZE_RT >> S390_PAGE_SHIFT) ||
	    !s390_in_aperture(domain, iova, (uint64_t)pgcount << S390_PAGE_SHIFT))
		return 0;
	/* Up to the first hole, as the other formats do. */
	for (i = 0; i < pgcount; i++) {
		uint64_t *ptep = s390_walk_pte(sdom->dma_table, iova + done, false);

		if (!ptep || !s390_pte_valid(__atomic_exchange_n(ptep, S390_PTE_INVALID,
								 __ATOMIC_ACQ_REL)))
			break;
		done += S390_PAGE_SIZE;
	}
	if (done && gather) {
		if (iova < gather->start)
			gather->start = iova;
		if (iova + done - 1 > gather->end)
			gather->end = iova + done - 1;
		gather->pgsize = pgsize;
	}
	return (size_t)done;
}

/* The refresh-translations (RPCIT) of the model: the IOTLB forgets the range. */
static void s390_iotlb_sync(struct iommu_domain *domain, struct iommu_iotlb_gather *gather)
{
	if (gather->start > gather->end)
		return;
	iotlb_inv_range(domain, gather->start, gather->end - gather->start + 1);
}

static void s390_flush_iotlb_all(struct iommu_domain *domain)
{
	iotlb_inv_domain(domain);
}

static phys_addr_t s390_iova_to_phys(struct iommu_domain *domain, uint64_t iova)
{
	uint64_t pte;

	if (!s390_in_aperture(domain, iova, 1))
		return 0;
	pte = s390_lookup_pte(to_s390_domain(domain)->dma_table, iova);
	return pte ? (pte & S390_PTE_ADDR_MASK) | (iova & (S390_PAGE_SIZE - 1)) : 0;
}

static void s390_domain_free(struct iommu_domain *domain)
{
	struct s390_domain *sdom = to_s390_domain(domain);

	/* The core frees a domain after its last device moved off it; release unlinks too. */
	uiommu_mutex_lock(&sdom->list_lock);
	WARN_ON(sdom->nr_devices || !LIST_EMPTY(&sdom->devices));
	uiommu_mutex_unlock(&sdom->list_lock);
	uiommu_mutex_destroy(&sdom->list_lock);
	s390_tables_free(sdom->dma_table);
	uiommu_free(sdom);
}

static int s390_attach_dev(struct iommu_domain *domain, struct device *dev,
			   struct iommu_domain *old);

static const struct iommu_domain_ops s390_paging_domain_ops = {
	.attach_dev = s390_attach_dev,
	.map_pages = s390_map_pages,
	.unmap_pages = s390_unmap_pages,
	.flush_iotlb_all = s390_flush_iotlb_all,
	.iotlb_sync = s390_iotlb_sync,
	.iova_to_phys = s390_iova_to_phys,
	.free = s390_domain_free,
};

/* Blocked: the function's anchor is unregistered, every DMA fails. */
static const struct iommu_domain_ops s390_blocked_domain_ops = {
	.attach_dev = s390_attach_dev,
};

static struct iommu_domain s390_blocked_domain = {
	.type = IOMMU_DOMAIN_BLOCKED,
	.ops = &s390_blocked_domain_ops,
	.owner = &s390_iommu_ops,
};

/* ---- the zdev registry ------------------------------------------------------------------ */

/* s390_lock held. */
static struct zpci_dev *s390_zdev_find_locked(const struct device *dev)
{
	struct zpci_dev *zdev;

	LIST_FOREACH(zdev, &s390_zdevs, reg_node)
		if (zdev->dev == dev)
			return zdev;
	return NULL;
}

/* The zdev of @dev with a reference (put with s390_zdev_put()), or NULL. */
static struct zpci_dev *s390_zdev_get(const struct device *dev)
{
	struct zpci_dev *zdev;

	uiommu_mutex_lock(&s390_lock);
	zdev = s390_zdev_find_locked(dev);
	if (zdev)
		atomic_fetch_add(&zdev->refs, 1);
	uiommu_mutex_unlock(&s390_lock);
	return zdev;
}

static void s390_zdev_put(struct zpci_dev *zdev)
{
	if (atomic_fetch_sub(&zdev->refs, 1) != 1)
		return;
	WARN_ON(zdev->probed || zdev->s390_domain);
	uiommu_mutex_destroy(&zdev->dma_domain_lock);
	s390_table_free(zdev->dma_table);
	uiommu_free(zdev);
}

/*
 * The zdev of @dev with a reference, made (with the DMA range of @dev's instance, platform DMA
 * on, as after the function was enabled) if it does not exist yet.
 */
static struct zpci_dev *s390_zdev_get_or_create(struct device *dev)
{
	const struct s390_instance *inst = dev->iommu ? dev->iommu->priv : NULL;
	struct zpci_dev *zdev, *found;

	zdev = s390_zdev_get(dev);
	if (zdev)
		return zdev;
	zdev = uiommu_zalloc(sizeof(*zdev));
	if (!zdev)
		return ERR_PTR(-ENOMEM);
	zdev->dma_table = s390_region_table_alloc();
	if (!zdev->dma_table)
		goto err_free_zdev;
	zdev->dev = dev;
	uiommu_mutex_init(&zdev->dma_domain_lock);
	zdev->start_dma = inst ? inst->start_dma : S390_DEFAULT_START_DMA;
	zdev->end_dma = inst ? inst->end_dma : S390_DEFAULT_END_DMA;
	zdev->platform_dma = true;
	zdev->platform_dma_inits = 1;
	atomic_init(&zdev->iota, s390_origin(zdev->dma_table) | S390_IOTA_IOT_ENABLED |
				 S390_IOTA_DT_RT);
	atomic_init(&zdev->refs, 2); /* the registry's and the caller's */

	uiommu_mutex_lock(&s390_lock);
	found = s390_zdev_find_locked(dev);
	if (found)
		atomic_fetch_add(&found->refs, 1);
	else
		LIST_INSERT_HEAD(&s390_zdevs, zdev, reg_node);
	uiommu_mutex_unlock(&s390_lock);
	if (found) {
		/* Never published: free it directly. */
		uiommu_mutex_destroy(&zdev->dma_domain_lock);
		s390_table_free(zdev->dma_table);
		uiommu_free(zdev);
		return found;
	}
	return zdev;

err_free_zdev:
	uiommu_free(zdev);
	return ERR_PTR(-ENOMEM);
}

/* ---- zdev state changes (dma_domain_lock) --------------------------------------------------- */

static void s390_zdev_set_iota(struct zpci_dev *zdev, const uint64_t *rto)
{
	lockdep_assert_held(&zdev->dma_domain_lock);
	atomic_store_explicit(&zdev->iota,
			      rto ? s390_origin(rto) | S390_IOTA_IOT_ENABLED | S390_IOTA_DT_RT : 0,
			      memory_order_release);
}

/* The function translates through its own table again (zpci_dma_init_device). */
static void s390_zdev_dma_init(struct zpci_dev *zdev)
{
	lockdep_assert_held(&zdev->dma_domain_lock);
	/* Twice in a row is the bug of §8: a detach re-initialised what release had restored. */
	if (WARN_ON(zdev->platform_dma || zdev->s390_domain))
		return;
	zdev->platform_dma = true;
	zdev->platform_dma_inits++;
	s390_zdev_set_iota(zdev, zdev->dma_table);
}

static void s390_zdev_dma_exit(struct zpci_dev *zdev)
{
	lockdep_assert_held(&zdev->dma_domain_lock);
	zdev->platform_dma = false;
	s390_zdev_set_iota(zdev, NULL);
}

/* Off the paging domain it translates through, if any; the anchor is unregistered. */
static void s390_zdev_unlink(struct zpci_dev *zdev)
{
	struct s390_domain *sdom = zdev->s390_domain;

	lockdep_assert_held(&zdev->dma_domain_lock);
	zdev->domain = NULL;
	if (!sdom)
		return;
	uiommu_mutex_lock(&sdom->list_lock);
	LIST_REMOVE(zdev, domain_node);
	sdom->nr_devices--;
	uiommu_mutex_unlock(&sdom->list_lock);
	zdev->s390_domain = NULL;
	s390_zdev_set_iota(zdev, NULL);
}

/*
 * The attach path. @from_core: the core called attach_dev, under the group mutex, so the
 * function cannot have been released (invariant 3); the legacy entry point can find it
 * released, and then does nothing (the driver-side fix).
 */
static int s390_zdev_attach(struct zpci_dev *zdev, struct iommu_domain *domain, bool from_core)
{
	struct s390_domain *sdom = s390_is_paging_domain(domain) ? to_s390_domain(domain) : NULL;

	uiommu_mutex_lock(&zdev->dma_domain_lock);
	if (!zdev->probed) {
		if (from_core)
			die("s390: attach_dev through the core reached a released function");
		zdev->stale_attaches++;
		uiommu_mutex_unlock(&zdev->dma_domain_lock);
		return 0;
	}
	/* A domain made for another range: incompatible, silently (the core may try another). */
	if (sdom && (domain->geometry.aperture_start > zdev->end_dma ||
		     domain->geometry.aperture_end < zdev->start_dma)) {
		uiommu_mutex_unlock(&zdev->dma_domain_lock);
		return -EINVAL;
	}
	if (zdev->platform_dma)
		s390_zdev_dma_exit(zdev);
	s390_zdev_unlink(zdev);
	zdev->domain = domain;
	if (sdom) {
		uiommu_mutex_lock(&sdom->list_lock);
		LIST_INSERT_HEAD(&sdom->devices, zdev, domain_node);
		sdom->nr_devices++;
		uiommu_mutex_unlock(&sdom->list_lock);
		zdev->s390_domain = sdom;
		s390_zdev_set_iota(zdev, sdom->dma_table);
	}
	uiommu_mutex_unlock(&zdev->dma_domain_lock);
	return 0;
}

static int s390_attach_dev(struct iommu_domain *domain, struct device *dev,
			   struct iommu_domain *old)
{
	struct zpci_dev *zdev;
	int rc;

	(void)old;
	/* Another driver's domain: "incompatible", silently, as the kernel's contract asks. */
	if (domain->owner != &s390_iommu_ops)
		return -EINVAL;
	iommu_group_mutex_assert(dev);
	/* Through the registry, not the private pointer: the check below must see a release. */
	zdev = s390_zdev_get(dev);
	if (WARN_ON(!zdev))
		return -ENODEV;
	WARN_ON(dev->iommu_data->priv != zdev);
	rc = s390_zdev_attach(zdev, domain, true);
	s390_zdev_put(zdev);
	return rc;
}

/* ---- devices ------------------------------------------------------------------------------ */

static bool s390_capable(struct device *dev, enum iommu_cap cap)
{
	switch (cap) {
	case IOMMU_CAP_CACHE_COHERENCY:
		return true;
	case IOMMU_CAP_DEFERRED_FLUSH:
		return dev->iommu && dev->iommu->deferred_flush;
	default:
		return false;
	}
}

static struct iommu_domain *s390_domain_alloc_paging(struct device *dev)
{
	struct zpci_dev *zdev = dev->iommu_data ? dev->iommu_data->priv : NULL;
	struct s390_domain *sdom;
	uint64_t start, end;

	if (!zdev)
		return ERR_PTR(-ENODEV);
	uiommu_mutex_lock(&zdev->dma_domain_lock);
	start = zdev->start_dma;
	end = zdev->end_dma;
	uiommu_mutex_unlock(&zdev->dma_domain_lock);

	sdom = uiommu_zalloc(sizeof(*sdom));
	if (!sdom)
		return ERR_PTR(-ENOMEM);
	sdom->dma_table = s390_region_table_alloc();
	if (!sdom->dma_table)
		goto err_free_domain;
	uiommu_mutex_init(&sdom->list_lock);
	LIST_INIT(&sdom->devices);
	/* The core sets type, owner and id after we return; these are the driver's. */
	sdom->domain.type = IOMMU_DOMAIN_UNMANAGED;
	sdom->domain.owner = &s390_iommu_ops;
	sdom->domain.ops = &s390_paging_domain_ops;
	sdom->domain.pgsize_bitmap = S390_PAGE_SIZE;
	sdom->domain.geometry.aperture_start = start;
	sdom->domain.geometry.aperture_end = end;
	sdom->domain.geometry.force_aperture = true;
	return &sdom->domain;

err_free_domain:
	uiommu_free(sdom);
	return ERR_PTR(-ENOMEM);
}

static struct iommu_device *s390_probe_device(struct device *dev)
{
	struct zpci_dev *zdev;
	int rc = 0;

	if (!dev->iommu || dev->iommu->ops != &s390_iommu_ops)
		return ERR_PTR(-ENODEV);
	zdev = s390_zdev_get_or_create(dev);
	if (IS_ERR(zdev))
		return ERR_CAST(zdev);

	uiommu_mutex_lock(&zdev->dma_domain_lock);
	/* The firmware's range must make sense and start inside what the tables can map. */
	if (zdev->start_dma > zdev->end_dma || zdev->start_dma > S390_TABLE_SIZE_RT - 1)
		rc = -EINVAL;
	else if (WARN_ON(zdev->probed || dev->iommu_data->priv))
		rc = -EBUSY;
	if (rc) {
		uiommu_mutex_unlock(&zdev->dma_domain_lock);
		s390_zdev_put(zdev);
		return ERR_PTR(rc);
	}
	if (zdev->end_dma > S390_TABLE_SIZE_RT - 1)
		zdev->end_dma = S390_TABLE_SIZE_RT - 1;
	zdev->probed = true;
	zdev->probes++;
	/* The caller's reference moves into the private pointer; put at release. */
	dev->iommu_data->priv = zdev;
	uiommu_mutex_unlock(&zdev->dma_domain_lock);
	return dev->iommu;
}

static void s390_release_device(struct device *dev)
{
	struct zpci_dev *zdev = dev->iommu_data->priv;
	struct s390_group_key *key_to_free = NULL;

	/*
	 * The core's half of the fix: under the group mutex, so no attach can run now. A probe
	 * that failed before it had a group releases under the core's probe lock instead.
	 */
	if (dev->iommu_group)
		iommu_group_mutex_assert(dev);
	/* Exactly once per probe: a second call finds the private pointer gone. */
	if (WARN_ON(!zdev))
		return;

	/* The driver's half: clear the private pointer and restore platform DMA in one go. */
	uiommu_mutex_lock(&zdev->dma_domain_lock);
	WARN_ON(!zdev->probed || zdev->releases >= zdev->probes);
	zdev->probed = false;
	zdev->releases++;
	dev->iommu_data->priv = NULL;
	s390_zdev_unlink(zdev);
	if (!zdev->platform_dma)
		s390_zdev_dma_init(zdev);
	uiommu_mutex_unlock(&zdev->dma_domain_lock);

	uiommu_mutex_lock(&s390_lock);
	/* The last device of a key: forget its group, which dies with the device's reference. */
	if (zdev->key && --zdev->key->nr_devices == 0) {
		key_to_free = zdev->key;
		LIST_REMOVE(key_to_free, node);
	}
	zdev->key = NULL;
	uiommu_mutex_unlock(&s390_lock);
	uiommu_free(key_to_free);
	/* Pairs with the reference probe moved into the private pointer. */
	s390_zdev_put(zdev);
}

/* s390_lock held. */
static struct s390_group_key *s390_group_key_find(const struct device *dev)
{
	struct s390_group_key *k;

	LIST_FOREACH(k, &s390_group_keys, node)
		if (k->iommu == dev->iommu && !strcmp(k->key, dev->group_key))
			return k;
	return NULL;
}

/*
 * A group per function, as zPCI functions are isolated; functions with the same non-empty
 * group_key share one (multi-function devices passed through together). Under the core's probe
 * lock, so two device_group calls never race; a release of a same-key device can.
 */
static struct iommu_group *s390_device_group(struct device *dev)
{
	struct zpci_dev *zdev = dev->iommu_data->priv;
	struct s390_group_key *k, *new_key;
	struct iommu_group *group;

	if (!dev->group_key[0])
		return iommu_group_alloc();

	uiommu_mutex_lock(&s390_lock);
	k = s390_group_key_find(dev);
	if (k) {
		/* Safe: k->nr_devices > 0, so a member still holds a reference. */
		group = iommu_group_ref_get(k->group);
		k->nr_devices++;
		zdev->key = k;
		uiommu_mutex_unlock(&s390_lock);
		return group;
	}
	uiommu_mutex_unlock(&s390_lock);

	new_key = uiommu_zalloc(sizeof(*new_key));
	if (!new_key)
		return ERR_PTR(-ENOMEM);
	group = iommu_group_alloc();
	if (IS_ERR(group)) {
		uiommu_free(new_key);
		return group;
	}
	new_key->iommu = dev->iommu;
	snprintf(new_key->key, sizeof(new_key->key), "%s", dev->group_key);
	new_key->group = group;
	new_key->nr_devices = 1;

	uiommu_mutex_lock(&s390_lock);
	LIST_INSERT_HEAD(&s390_group_keys, new_key, node);
	zdev->key = new_key;
	uiommu_mutex_unlock(&s390_lock);
	return group;
}

/* What lies outside the function's DMA range, up to the 4 TiB the tables can map. */
static unsigned int s390_get_resv_regions(struct device *dev, struct iommu_resv_region *regions,
					  unsigned int max)
{
	struct zpci_dev *zdev = dev->iommu_data ? dev->iommu_data->priv : NULL;
	uint64_t start, end;
	unsigned int n = 0;

	if (!zdev)
		return 0;
	uiommu_mutex_lock(&zdev->dma_domain_lock);
	start = zdev->start_dma;
	end = zdev->end_dma;
	uiommu_mutex_unlock(&zdev->dma_domain_lock);
	if (start && n < max)
		regions[n++] = (struct iommu_resv_region){ .start = 0, .length = start,
							   .type = IOMMU_RESV_RESERVED };
	if (end < S390_TABLE_SIZE_RT - 1 && n < max)
		regions[n++] = (struct iommu_resv_region){ .start = end + 1,
							   .length = S390_TABLE_SIZE_RT - end - 1,
							   .type = IOMMU_RESV_RESERVED };
	return n;
}

const struct iommu_ops s390_iommu_ops = {
	.name = "s390",
	.capable = s390_capable,
	.domain_alloc_paging = s390_domain_alloc_paging,
	.probe_device = s390_probe_device,
	.release_device = s390_release_device,
	.device_group = s390_device_group,
	.get_resv_regions = s390_get_resv_regions,
	.blocked_domain = &s390_blocked_domain,
};

/* ---- instances ---------------------------------------------------------------------------- */

static phys_addr_t s390_iotlb_walk(struct iommu_domain *domain, uint64_t iova, int access,
				   int *prot)
{
	phys_addr_t phys;

	(void)access; /* no dirty tracking: s390_capable() never claims it */

	return s390_domain_walk(domain, iova, &phys, prot) ? 0 : phys;
}

static pthread_once_t s390_walker_once = PTHREAD_ONCE_INIT;
static int s390_walker_err;

static void s390_register_walker(void)
{
	s390_walker_err = iotlb_register_walker(&s390_iommu_ops, s390_iotlb_walk);
}

int s390_iommu_register(struct iommu_device *iommu, uint64_t start_dma, uint64_t end_dma)
{
	struct s390_instance *inst;
	int rc;

	pthread_once(&s390_walker_once, s390_register_walker);
	if (s390_walker_err)
		return s390_walker_err;
	inst = uiommu_zalloc(sizeof(*inst));
	if (!inst)
		return -ENOMEM;
	inst->start_dma = start_dma;
	inst->end_dma = end_dma;
	iommu->priv = inst;
	rc = iommu_device_register(iommu, &s390_iommu_ops);
	if (rc) {
		iommu->priv = NULL;
		uiommu_free(inst);
	}
	return rc;
}

void s390_iommu_unregister(struct iommu_device *iommu)
{
	iommu_device_unregister(iommu);
	uiommu_free(iommu->priv);
	iommu->priv = NULL;
}

bool s390_iommu_is_instance(const struct iommu_device *iommu)
{
	return iommu && iommu->ops == &s390_iommu_ops;
}

int s390_zdev_set_dma_range(struct device *dev, uint64_t start_dma, uint64_t end_dma)
{
	struct zpci_dev *zdev = s390_zdev_get_or_create(dev);
	int rc = 0;

	if (IS_ERR(zdev))
		return (int)PTR_ERR(zdev);
	uiommu_mutex_lock(&zdev->dma_domain_lock);
	if (zdev->probed) {
		rc = -EBUSY;
	} else {
		zdev->start_dma = start_dma;
		zdev->end_dma = end_dma;
	}
	uiommu_mutex_unlock(&zdev->dma_domain_lock);
	s390_zdev_put(zdev);
	return rc;
}

void s390_device_forget(struct device *dev)
{
	struct zpci_dev *zdev;

	uiommu_mutex_lock(&s390_lock);
	zdev = s390_zdev_find_locked(dev);
	if (zdev)
		LIST_REMOVE(zdev, reg_node);
	uiommu_mutex_unlock(&s390_lock);
	if (!zdev)
		return;
	WARN_ON(zdev->probed);
	/* Pairs with the registry's reference from s390_zdev_get_or_create(). */
	s390_zdev_put(zdev);
}

/* ---- walks and snapshots ------------------------------------------------------------------ */

const uint64_t *s390_domain_region_table(struct iommu_domain *domain)
{
	return s390_is_paging_domain(domain) ? to_s390_domain(domain)->dma_table : NULL;
}

int s390_domain_walk(struct iommu_domain *domain, uint64_t iova, phys_addr_t *phys, int *prot)
{
	uint64_t pte;

	if (!s390_is_paging_domain(domain))
		return -EINVAL;
	if (!s390_in_aperture(domain, iova, 1))
		return -ERANGE;
	pte = s390_lookup_pte(to_s390_domain(domain)->dma_table, iova);
	if (!pte)
		return -ENOENT;
	*phys = (pte & S390_PTE_ADDR_MASK) | (iova & (S390_PAGE_SIZE - 1));
	*prot = IOMMU_READ | ((pte & S390_TABLE_PROTECTED) ? 0 : IOMMU_WRITE);
	return 0;
}

unsigned int s390_domain_nr_devices(struct iommu_domain *domain)
{
	struct s390_domain *sdom;
	unsigned int n;

	if (!s390_is_paging_domain(domain))
		return 0;
	sdom = to_s390_domain(domain);
	uiommu_mutex_lock(&sdom->list_lock);
	n = sdom->nr_devices;
	uiommu_mutex_unlock(&sdom->list_lock);
	return n;
}

int s390_zdev_get_info(struct device *dev, struct s390_zdev_info *info)
{
	struct zpci_dev *zdev = s390_zdev_get(dev);

	if (!zdev)
		return -ENOENT;
	uiommu_mutex_lock(&zdev->dma_domain_lock);
	*info = (struct s390_zdev_info){
		.probed = zdev->probed,
		.probes = zdev->probes,
		.releases = zdev->releases,
		.domain = zdev->domain,
		.iota = atomic_load_explicit(&zdev->iota, memory_order_relaxed),
		.platform_dma = zdev->platform_dma,
		.platform_dma_inits = zdev->platform_dma_inits,
		.stale_attaches = zdev->stale_attaches,
		.stale_detaches = zdev->stale_detaches,
		.start_dma = zdev->start_dma,
		.end_dma = zdev->end_dma,
	};
	uiommu_mutex_unlock(&zdev->dma_domain_lock);
	s390_zdev_put(zdev);
	return 0;
}

int s390_zdev_translate(struct device *dev, uint64_t iova, int access, phys_addr_t *phys)
{
	struct zpci_dev *zdev = s390_zdev_get(dev);
	uint64_t iota, pte;
	int rc = 0;

	if (!zdev)
		return -ENOENT;
	/* Under the lock: the table behind the anchor must not be freed during the walk. */
	uiommu_mutex_lock(&zdev->dma_domain_lock);
	iota = atomic_load_explicit(&zdev->iota, memory_order_relaxed);
	if (iova < zdev->start_dma || iova > zdev->end_dma) {
		rc = -ERANGE;
	} else if (!(iota & S390_IOTA_IOT_ENABLED)) {
		rc = -EFAULT;
	} else {
		pte = s390_lookup_pte(s390_table_at(iota & S390_RTE_ADDR_MASK), iova);
		if (!pte)
			rc = -EFAULT;
		else if ((access & IOMMU_WRITE) && (pte & S390_TABLE_PROTECTED))
			rc = -EACCES;
		else
			*phys = (pte & S390_PTE_ADDR_MASK) | (iova & (S390_PAGE_SIZE - 1));
	}
	uiommu_mutex_unlock(&zdev->dma_domain_lock);
	s390_zdev_put(zdev);
	return rc;
}

/* ---- the legacy entry points ------------------------------------------------------------- */

void s390_iommu_set_legacy_entry(bool enabled)
{
	atomic_store(&s390_legacy_entry, enabled);
}

int s390_iommu_legacy_attach_dev(struct iommu_domain *domain, struct device *dev)
{
	struct zpci_dev *zdev;
	int rc;

	if (!atomic_load(&s390_legacy_entry))
		return -EPERM;
	if (!domain || domain->owner != &s390_iommu_ops)
		return -EINVAL;
	zdev = s390_zdev_get(dev);
	if (!zdev)
		return -ENODEV;
	rc = s390_zdev_attach(zdev, domain, false);
	s390_zdev_put(zdev);
	return rc;
}

int s390_iommu_legacy_detach_dev(struct iommu_domain *domain, struct device *dev)
{
	struct zpci_dev *zdev;

	if (!atomic_load(&s390_legacy_entry))
		return -EPERM;
	zdev = s390_zdev_get(dev);
	if (!zdev)
		return -ENODEV;
	uiommu_mutex_lock(&zdev->dma_domain_lock);
	if (!zdev->probed) {
		/* Released: release restored platform DMA already; touching it again is the bug. */
		zdev->stale_detaches++;
	} else if (zdev->domain == domain) {
		s390_zdev_unlink(zdev);
		s390_zdev_dma_init(zdev);
	}
	uiommu_mutex_unlock(&zdev->dma_domain_lock);
	s390_zdev_put(zdev);
	return 0;
}
