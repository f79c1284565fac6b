// SPDX-License-Identifier: MIT
/*
 * The selftest mock IOMMU.
 *
 * The kernel's iommufd selftest does not drive real hardware: CONFIG_IOMMUFD_TEST adds a mock
 * IOMMU on a private bus, and IOMMU_TEST_CMD's MOCK_DOMAIN creates devices behind it. The suite
 * checks the mock's model exactly (granule, aperture, alignment reporting), so this driver has
 * that model rather than the emulated machine's (mock.c, 4 KiB pages over a 48-bit table):
 *
 *  - paging domains translate with a 2 KiB granule (MOCK_SELFTEST_PAGE_SIZE) inside the aperture
 *    [16 MiB, 2 GiB - 1]; a domain allocated with the HUGE page-table type (HWPT data
 *    IOMMU_HWPT_DATA_SELFTEST, pagetable_type 1) may also use 1 MiB leaves;
 *  - devices are created on demand, each in a group of its own, with the identity domain as
 *    default domain, and set_dev_pasid on every domain (mock_selftest_set_dev_pasid(), with
 *    the kernel mock's PASID-1024 fake failure); flags NO_DIRTY (no dirty tracking: a dirty-tracking domain cannot be
 *    allocated for it, EOPNOTSUPP, nor attached to it, EINVAL) and PASID (20-bit PASIDs);
 *  - hw_info answers type IOMMU_HW_INFO_TYPE_SELFTEST (0xfeedbeef) with {flags 0,
 *    test_reg 0xdeadbeef}, for the default type or that type only;
 *  - the IOMMU instance registers with the core at the first device (no device, no instance);
 *  - page requests (TRIGGER_IOPF): every device joins the instance's I/O page fault queue (made
 *    at the first probe, freed at the last release) and leaves it at release; the kernel mock's user_pasid_table is set,
 *    so a PASID with nothing attached routes to a nested domain at the RID; page_response
 *    counts each answer by code and keeps the last (mock_selftest_page_responses()).
 *
 * The page table is real and multi-level: three levels of 512 64-bit entries. A level-2 entry
 * translates 2 KiB, a level-1 entry 1 MiB (a leaf only in HUGE domains), a level-0 entry
 * 512 MiB (always a table). Entries:
 *   0                                   empty
 *   table address | PTE_VALID           the next level (tables are 16-byte aligned)
 *   output address | PTE_VALID | PTE_LEAF | PTE_READ? | PTE_WRITE?   a translation
 *   ... | PTE_DIRTY                     a translation written through since its dirty bit
 *                                       was last cleared (leaves only)
 * The output address (a host address of the emulator, see iommu.h) is aligned to the leaf size,
 * so the low bits are free for the flags.
 *
 * Dirty tracking. Every paging domain has dirty ops, as the kernel's mock does; enabling them
 * on a domain not allocated with DIRTY_TRACKING is EINVAL. There is no DMA through these
 * domains, so the test command's DIRTY op plays the hardware (mock_selftest_mark_dirty()): it
 * sets the dirty bit of the leaf that translates an IOVA, and the bit stands for the whole leaf,
 * so a dirty 1 MiB leaf reads back as 512 dirty 2 KiB pages. Tables are freed with the domain, and a 1 MiB map over
 * an emptied table frees that table first.
 *
 * Locking: each domain's lock (a leaf, taken inside whatever the core holds) protects its table;
 * map, unmap and walks may come from several threads. mock_selftest_once registers the instance.
 * Allocations go through uiommu_zalloc() (fault injection, the leak ledger).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "drivers/mock/selftest_mock.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "lib/lockdep.h"

#define PT_LEVELS 3u
#define PT_ENTRIES 512u
#define PT_LEAF_LEVEL 2u
#define PT_HUGE_LEVEL 1u

#define PTE_VALID (1ull << 0)
#define PTE_LEAF (1ull << 1)
#define PTE_READ (1ull << 2)
#define PTE_WRITE (1ull << 3)
#define PTE_FLAGS 0xfull
#define PTE_DIRTY (1ull << 4) /* leaves only: tables are only 16-byte aligned */
#define PTE_LEAF_FLAGS (MOCK_SELFTEST_PAGE_SIZE - 1)

/* Selftest HWPT data: the paging format, as iommufd_test.h defines it. */
#define MOCK_SELFTEST_DATA_TYPE 0xdeadu
#define MOCK_SELFTEST_PT_DEFAULT 0u
#define MOCK_SELFTEST_PT_HUGE 1u

#define MOCK_SELFTEST_HW_INFO_TYPE 0xfeedbeefu
#define MOCK_SELFTEST_HW_INFO_REGVAL 0xdeadbeefu

struct mock_selftest_domain {
	struct iommu_domain domain;
	struct uiommu_mutex lock; /* protects root and everything below it; a leaf */
	uint64_t *root;           /* level 0 */
	long nr_tables;           /* tables allocated, the root included */
	uint32_t flags;           /* IOMMU_DOMAIN_ALLOC_* it was made with; constant */
	bool dirty_tracking;      /* dirty tracking is on; under lock */
};

/* A device's driver data (dev->iommu_data->priv); attach runs under the group mutex. */
struct mock_selftest_dev {
	struct iommu_domain *domain; /* last successful attach */
	/* The PASID-1024 trick: the next non-blocking set on PASID 1024 fails (group mutex). */
	bool pasid_1024_fake_error;
	_Atomic uint32_t cache[MOCK_SELFTEST_DEV_CACHE_NUM]; /* invalidated through a vIOMMU */
	/* page_response's record, under the core's fault_param->lock; read with atomics. */
	_Atomic uint32_t responses[3];     /* by code: SUCCESS, INVALID, FAILURE */
	_Atomic uint32_t last_grpid;
	_Atomic uint32_t last_code;
};

static const struct iommu_ops mock_selftest_ops;
static const struct iommu_domain_ops mock_selftest_paging_ops;

static struct iommu_device mock_selftest_iommu = {
	.name = "iommufd_selftest",
	.max_pasids = 1u << MOCK_SELFTEST_PASID_WIDTH,
	.dirty_tracking = true,
};

static pthread_once_t mock_selftest_once = PTHREAD_ONCE_INIT;
/*
 * The instance's fault queue, made at the first probe and freed at the last release, so that a
 * process without mock devices holds nothing of it (the leak checks count on that). The lock
 * protects both; order: inside the probe lock and group->mutex, outside the core's fault locks.
 */
static struct iopf_queue *mock_selftest_iopf_queue;
static unsigned int mock_selftest_iopf_devices;
UIOMMU_MUTEX_DEFINE(mock_selftest_iopf_lock);
static atomic_uint mock_selftest_dev_seq;

static struct mock_selftest_domain *to_mock_selftest_domain(struct iommu_domain *domain)
{
	return container_of(domain, struct mock_selftest_domain, domain);
}

/* ---- the page table ------------------------------------------------------------------------ */

static unsigned int pt_shift(unsigned int level)
{
	return 11 + 9 * (PT_LEAF_LEVEL - level);
}

static unsigned int pt_index(uint64_t iova, unsigned int level)
{
	return (iova >> pt_shift(level)) & (PT_ENTRIES - 1);
}

static uint64_t *pt_table(uint64_t pte)
{
	return (uint64_t *)(uintptr_t)(pte & ~PTE_FLAGS);
}

static uint64_t *pt_table_alloc(struct mock_selftest_domain *md)
{
	uint64_t *table = uiommu_zalloc(PT_ENTRIES * sizeof(uint64_t));

	if (table)
		md->nr_tables++;
	return table;
}

static void pt_table_free(struct mock_selftest_domain *md, uint64_t *table, unsigned int level)
{
	unsigned int i;

	if (level < PT_LEAF_LEVEL)
		for (i = 0; i != PT_ENTRIES; i++)
			if ((table[i] & PTE_VALID) && !(table[i] & PTE_LEAF))
				pt_table_free(md, pt_table(table[i]), level + 1);
	uiommu_free(table);
	md->nr_tables--;
}

static bool pt_table_empty(const uint64_t *table)
{
	unsigned int i;

	for (i = 0; i != PT_ENTRIES; i++)
		if (table[i])
			return false;
	return true;
}

/*
 * The entry of @level for @iova, allocating missing tables on the way with @alloc. NULL with
 * *@err: -ENOENT (a table is missing), -EEXIST (a larger leaf is in the way), -ENOMEM.
 */
static uint64_t *pt_entry(struct mock_selftest_domain *md, uint64_t iova, unsigned int level,
			  bool alloc, int *err)
{
	uint64_t *table = md->root;
	unsigned int l;

	lockdep_assert_held(&md->lock);
	for (l = 0; l != level; l++) {
		uint64_t *pte = &table[pt_index(iova, l)];

		if (!*pte) {
			uint64_t *next;

			if (!alloc) {
				*err = -ENOENT;
				return NULL;
			}
			next = pt_table_alloc(md);
			if (!next) {
				*err = -ENOMEM;
				return NULL;
			}
			*pte = (uint64_t)(uintptr_t)next | PTE_VALID;
		} else if (*pte & PTE_LEAF) {
			*err = -EEXIST;
			return NULL;
		}
		table = pt_table(*pte);
	}
	return &table[pt_index(iova, level)];
}

/*
 * pt_entry() for a loop that advances @iova one entry of @level at a time: *@table is the table
 * of the previous entry (NULL at the start), used until the index wraps into the next table, so
 * a run of entries walks from the root once per table instead of once per entry. The loop must
 * not free the table of the entries it walks (freeing tables below them is fine).
 */
static uint64_t *pt_entry_next(struct mock_selftest_domain *md, uint64_t **table, uint64_t iova,
			       unsigned int level, bool alloc, int *err)
{
	unsigned int idx = pt_index(iova, level);
	uint64_t *pte;

	if (*table && idx)
		return &(*table)[idx];
	pte = pt_entry(md, iova, level, alloc, err);
	*table = pte ? pte - idx : NULL;
	return pte;
}

static unsigned int pt_level_of(size_t pgsize)
{
	if (pgsize == MOCK_SELFTEST_PAGE_SIZE)
		return PT_LEAF_LEVEL;
	if (pgsize == MOCK_SELFTEST_HUGE_PAGE_SIZE)
		return PT_HUGE_LEVEL;
	return PT_LEVELS;
}

static bool mock_selftest_in_aperture(uint64_t iova, uint64_t length)
{
	uint64_t last;

	return length && !check_add_overflow(iova, length - 1, &last) &&
	       iova >= MOCK_SELFTEST_APERTURE_START && last <= MOCK_SELFTEST_APERTURE_LAST;
}

/* ---- paging domains --------------------------------------------------------------------------- */

static int mock_selftest_map_pages(struct iommu_domain *domain, uint64_t iova, phys_addr_t paddr,
				   size_t pgsize, size_t pgcount, int prot, size_t *mapped)
{
	struct mock_selftest_domain *md = to_mock_selftest_domain(domain);
	unsigned int level = pt_level_of(pgsize);
	uint64_t bits = PTE_VALID | PTE_LEAF, *table = NULL;
	size_t i;
	int rc = 0;

	*mapped = 0;
	if (level == PT_LEVELS || !(domain->pgsize_bitmap & pgsize) || !pgcount ||
	    ((iova | paddr) & (pgsize - 1)) || pgcount > UINT64_MAX / pgsize ||
	    !mock_selftest_in_aperture(iova, pgsize * pgcount))
		return -EINVAL;
	if (prot & IOMMU_READ)
		bits |= PTE_READ;
	if (prot & IOMMU_WRITE)
		bits |= PTE_WRITE;

	uiommu_mutex_lock(&md->lock);
	for (i = 0; i != pgcount; i++) {
		uint64_t *pte = pt_entry_next(md, &table, iova, level, true, &rc);

		if (!pte)
			break;
		/* An emptied table where a huge leaf goes: drop it. */
		if (*pte && !(*pte & PTE_LEAF) && level == PT_HUGE_LEVEL &&
		    pt_table_empty(pt_table(*pte))) {
			pt_table_free(md, pt_table(*pte), level + 1);
			*pte = 0;
		}
		if (*pte) {
			rc = -EEXIST;
			break;
		}
		*pte = paddr | bits;
		*mapped += pgsize;
		iova += pgsize;
		paddr += pgsize;
	}
	uiommu_mutex_unlock(&md->lock);
	return rc;
}

static size_t mock_selftest_unmap_pages(struct iommu_domain *domain, uint64_t iova, size_t pgsize,
					size_t pgcount, struct iommu_iotlb_gather *gather)
{
	struct mock_selftest_domain *md = to_mock_selftest_domain(domain);
	unsigned int level = pt_level_of(pgsize);
	uint64_t *table = NULL;
	size_t i, done = 0;
	int err;

	(void)gather; /* no IOTLB to invalidate */
	if (level == PT_LEVELS || (iova & (pgsize - 1)))
		return 0;
	uiommu_mutex_lock(&md->lock);
	for (i = 0; i != pgcount; i++) {
		uint64_t *pte = pt_entry_next(md, &table, iova, level, false, &err);

		if (!pte || !*pte)
			break;
		/* A table where a leaf of this size would be goes with everything below it. */
		if (!(*pte & PTE_LEAF))
			pt_table_free(md, pt_table(*pte), level + 1);
		*pte = 0;
		done += pgsize;
		iova += pgsize;
	}
	uiommu_mutex_unlock(&md->lock);
	return done;
}

static phys_addr_t mock_selftest_walk(struct iommu_domain *domain, uint64_t iova, bool write,
				      int *prot, uint64_t *size);

static phys_addr_t mock_selftest_iova_to_phys(struct iommu_domain *domain, uint64_t iova)
{
	uint64_t size;
	int prot;

	/* A read-only walk: the software walk never marks anything dirty. */
	return mock_selftest_walk(domain, iova, false, &prot, &size);
}

/*
 * The leaf that translates @iova, or NULL; *@level is the level where the walk stopped (the
 * leaf's, or the first empty entry's). Caller holds md->lock.
 */
static uint64_t *pt_leaf(struct mock_selftest_domain *md, uint64_t iova, unsigned int *level)
{
	uint64_t *table = md->root;
	unsigned int l;

	lockdep_assert_held(&md->lock);
	for (l = 0; l != PT_LEVELS; l++) {
		uint64_t *pte = &table[pt_index(iova, l)];

		*level = l;
		if (!*pte)
			return NULL;
		if (*pte & PTE_LEAF)
			return pte;
		table = pt_table(*pte);
	}
	return NULL;
}

/* A leaf's IOMMU_READ | IOMMU_WRITE. */
static int pt_leaf_prot(uint64_t pte)
{
	return ((pte & PTE_READ) ? IOMMU_READ : 0) | ((pte & PTE_WRITE) ? IOMMU_WRITE : 0);
}

/*
 * What a device's access to the leaf at *@pte (from pt_leaf()) meets: its
 * IOMMU_READ | IOMMU_WRITE; a @write through a writable leaf sets its dirty bit while dirty
 * tracking is on, as the hardware would. Caller holds md->lock.
 */
static int pt_leaf_access(struct mock_selftest_domain *md, uint64_t *pte, bool write)
{
	lockdep_assert_held(&md->lock);
	if (write && (*pte & PTE_WRITE) && md->dirty_tracking)
		*pte |= PTE_DIRTY;
	return pt_leaf_prot(*pte);
}

/*
 * The device's page walk (our dma_walk op): @iova's leaf, with its permissions; a @write access
 * marks it dirty (pt_leaf_access()). Leaves are 2 KiB or 1 MiB.
 */
static phys_addr_t mock_selftest_walk(struct iommu_domain *domain, uint64_t iova, bool write,
				      int *prot, uint64_t *size)
{
	struct mock_selftest_domain *md = to_mock_selftest_domain(domain);
	phys_addr_t phys = 0;
	unsigned int level;
	uint64_t *pte;

	*prot = 0;
	if (!mock_selftest_in_aperture(iova, 1))
		return 0;
	uiommu_mutex_lock(&md->lock);
	pte = pt_leaf(md, iova, &level);
	if (pte) {
		*size = 1ull << pt_shift(level);
		phys = (*pte & ~PTE_LEAF_FLAGS) + (iova & (*size - 1));
		*prot = pt_leaf_access(md, pte, write);
	}
	uiommu_mutex_unlock(&md->lock);
	return phys;
}

/*
 * Our dma_walk_run op: the leaves from @iova on, under one hold of the lock, for as long as
 * they are mapped, have @iova's permissions and continue its output, up to @len bytes. A
 * 64 KiB transfer through 2 KiB leaves is then one call instead of 32. Each leaf the run takes
 * goes through pt_leaf_access() exactly as a walk of it would; the leaf that ends the run is
 * left untouched (not taken, not marked), for the caller's next call to meet.
 */
static phys_addr_t mock_selftest_walk_run(struct iommu_domain *domain, uint64_t iova,
					  uint64_t len, bool write, int *prot, uint64_t *run)
{
	struct mock_selftest_domain *md = to_mock_selftest_domain(domain);
	phys_addr_t phys = 0;
	unsigned int level;
	uint64_t *pte, size, done;

	*prot = 0;
	if (!len || !mock_selftest_in_aperture(iova, 1))
		return 0;
	uiommu_mutex_lock(&md->lock);
	pte = pt_leaf(md, iova, &level);
	if (!pte)
		goto out_unlock;
	size = 1ull << pt_shift(level);
	done = size - (iova & (size - 1));
	phys = (*pte & ~PTE_LEAF_FLAGS) + (iova & (size - 1));
	*prot = pt_leaf_access(md, pte, write);
	/*
	 * The aperture ends below 2 GiB, so iova + done cannot wrap. The next leaf is most often
	 * the next entry of the same table: taken from there, not walked to from the root again
	 * (three dependent loads a leaf, each a likely cache miss after the previous run's copy).
	 */
	while (done < len && mock_selftest_in_aperture(iova + done, 1)) {
		if (pt_index(iova + done, level) && (pte[1] & PTE_LEAF))
			pte++;
		else if (!(pte = pt_leaf(md, iova + done, &level)))
			break;
		if ((*pte & ~PTE_LEAF_FLAGS) != phys + done || pt_leaf_prot(*pte) != *prot)
			break;
		pt_leaf_access(md, pte, write);
		done += 1ull << pt_shift(level);
	}
	*run = done < len ? done : len;
out_unlock:
	uiommu_mutex_unlock(&md->lock);
	return phys;
}

/*
 * Calls @fn on each leaf that meets [iova, last], in IOVA order, with the leaf's first IOVA and
 * size. Caller holds md->lock.
 */
static void pt_for_each_leaf(struct mock_selftest_domain *md, uint64_t iova, uint64_t last,
			     void (*fn)(uint64_t *pte, uint64_t leaf_iova, uint64_t size, void *arg),
			     void *arg)
{
	while (iova <= last) {
		unsigned int level;
		uint64_t *pte = pt_leaf(md, iova, &level);
		uint64_t size = 1ull << pt_shift(level), start = iova & ~(size - 1);

		if (pte)
			fn(pte, start, size, arg);
		if (start + size - 1 >= last || start + size < start)
			return;
		iova = start + size;
	}
}

struct mock_selftest_dirty_walk {
	unsigned int flags;
	struct iommu_dirty_bitmap *dirty;
};

static void mock_selftest_dirty_leaf(uint64_t *pte, uint64_t leaf_iova, uint64_t size, void *arg)
{
	struct mock_selftest_dirty_walk *walk = arg;

	if (!(*pte & PTE_DIRTY))
		return;
	if (walk->dirty)
		iommu_dirty_bitmap_record(walk->dirty, leaf_iova, size);
	if (!(walk->flags & IOMMU_DIRTY_NO_CLEAR))
		*pte &= ~PTE_DIRTY;
}

static int mock_selftest_set_dirty_tracking(struct iommu_domain *domain, bool enabled)
{
	struct mock_selftest_domain *md = to_mock_selftest_domain(domain);
	struct mock_selftest_dirty_walk walk = { 0 };

	if (enabled && !(md->flags & IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING))
		return -EINVAL;
	uiommu_mutex_lock(&md->lock);
	/* Tracking starts clean. */
	if (enabled && !md->dirty_tracking)
		pt_for_each_leaf(md, MOCK_SELFTEST_APERTURE_START, MOCK_SELFTEST_APERTURE_LAST,
				 mock_selftest_dirty_leaf, &walk);
	md->dirty_tracking = enabled;
	uiommu_mutex_unlock(&md->lock);
	return 0;
}

static int mock_selftest_read_and_clear_dirty(struct iommu_domain *domain, uint64_t iova,
					      uint64_t size, unsigned int flags,
					      struct iommu_dirty_bitmap *dirty)
{
	struct mock_selftest_domain *md = to_mock_selftest_domain(domain);
	struct mock_selftest_dirty_walk walk = { .flags = flags, .dirty = dirty };
	uint64_t last;
	int rc = 0;

	if (!size || check_add_overflow(iova, size - 1, &last))
		return -EINVAL;
	uiommu_mutex_lock(&md->lock);
	if (!md->dirty_tracking)
		rc = -EINVAL;
	else
		pt_for_each_leaf(md, iova, last, mock_selftest_dirty_leaf, &walk);
	uiommu_mutex_unlock(&md->lock);
	return rc;
}

static const struct iommu_dirty_ops mock_selftest_dirty_ops = {
	.set_dirty_tracking = mock_selftest_set_dirty_tracking,
	.read_and_clear_dirty = mock_selftest_read_and_clear_dirty,
};

int mock_selftest_mark_dirty(struct iommu_domain *domain, uint64_t iova)
{
	struct mock_selftest_domain *md = to_mock_selftest_domain(domain);
	unsigned int level;
	uint64_t *pte;
	int rc = 0;

	uiommu_mutex_lock(&md->lock);
	if (!md->dirty_tracking) {
		rc = -EINVAL;
	} else if (mock_selftest_in_aperture(iova, 1) && (pte = pt_leaf(md, iova, &level))) {
		*pte |= PTE_DIRTY;
		rc = 1;
	}
	uiommu_mutex_unlock(&md->lock);
	return rc;
}

static void mock_selftest_domain_free(struct iommu_domain *domain)
{
	struct mock_selftest_domain *md = to_mock_selftest_domain(domain);

	pt_table_free(md, md->root, 0);
	WARN_ON(md->nr_tables);
	uiommu_mutex_destroy(&md->lock);
	uiommu_free(md);
}

static int mock_selftest_attach_dev(struct iommu_domain *domain, struct device *dev,
				    struct iommu_domain *old)
{
	struct mock_selftest_dev *mdev = dev->iommu_data ? dev->iommu_data->priv : NULL;

	(void)old;
	if (WARN_ON(!mdev))
		return -ENODEV;
	if (domain->owner != &mock_selftest_ops)
		return -EINVAL;
	/* A device that cannot track dirty pages cannot sit in a domain that tracks them. */
	if (domain->ops == &mock_selftest_paging_ops &&
	    (to_mock_selftest_domain(domain)->flags & IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING) &&
	    !dev->dirty)
		return -EINVAL;
	mdev->domain = domain;
	return 0;
}

/*
 * set_dev_pasid of every domain of the mock, the blocked one included. The mock programs no
 * PASID table; what it models is the kernel mock's checks and its PASID-1024 trick: the first
 * non-blocking set on PASID 1024 arms a fake failure that the next one takes (ENOMEM), so a
 * replace there fails once and the core must roll back; the blocked domain disarms it.
 */
int mock_selftest_set_dev_pasid(struct iommu_domain *domain, struct device *dev, uint32_t pasid,
				struct iommu_domain *old)
{
	struct mock_selftest_dev *mdev = dev->iommu_data ? dev->iommu_data->priv : NULL;

	(void)old;
	if (WARN_ON(!mdev))
		return -ENODEV;
	iommu_group_mutex_assert(dev);
	if (domain->type != IOMMU_DOMAIN_BLOCKED) {
		if (domain->owner != &mock_selftest_ops)
			return -EINVAL;
		if (domain->ops == &mock_selftest_paging_ops &&
		    (to_mock_selftest_domain(domain)->flags & IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING) &&
		    !dev->dirty)
			return -EINVAL;
	}
	if (pasid == MOCK_SELFTEST_PASID_FAKE_ERROR) {
		if (domain->type == IOMMU_DOMAIN_BLOCKED) {
			mdev->pasid_1024_fake_error = false;
		} else if (mdev->pasid_1024_fake_error) {
			mdev->pasid_1024_fake_error = false;
			return -ENOMEM;
		} else {
			mdev->pasid_1024_fake_error = true;
		}
	}
	return 0;
}

static const struct iommu_domain_ops mock_selftest_paging_ops = {
	.attach_dev = mock_selftest_attach_dev,
	.set_dev_pasid = mock_selftest_set_dev_pasid,
	.map_pages = mock_selftest_map_pages,
	.unmap_pages = mock_selftest_unmap_pages,
	.iova_to_phys = mock_selftest_iova_to_phys,
	.dma_walk = mock_selftest_walk,
	.dma_walk_run = mock_selftest_walk_run,
	.free = mock_selftest_domain_free,
};

static const struct iommu_domain_ops mock_selftest_static_ops = {
	.attach_dev = mock_selftest_attach_dev,
	.set_dev_pasid = mock_selftest_set_dev_pasid,
};

static struct iommu_domain mock_selftest_identity_domain = {
	.type = IOMMU_DOMAIN_IDENTITY,
	.ops = &mock_selftest_static_ops,
	.owner = &mock_selftest_ops,
};

static struct iommu_domain mock_selftest_blocked_domain = {
	.type = IOMMU_DOMAIN_BLOCKED,
	.ops = &mock_selftest_static_ops,
	.owner = &mock_selftest_ops,
};

static struct iommu_domain *
mock_selftest_domain_alloc_paging_flags(struct device *dev, uint32_t flags,
					const struct iommu_user_data *user_data)
{
	uint64_t pgsize_bitmap = MOCK_SELFTEST_PAGE_SIZE;
	struct mock_selftest_domain *md;

	if (flags & ~(IOMMU_DOMAIN_ALLOC_NEST_PARENT | IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING |
		      IOMMU_DOMAIN_ALLOC_PASID))
		return ERR_PTR(-EOPNOTSUPP);
	if ((flags & IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING) && !dev->dirty)
		return ERR_PTR(-EOPNOTSUPP);
	if (user_data) {
		uint32_t pt_type = MOCK_SELFTEST_PT_DEFAULT;

		if (user_data->type != MOCK_SELFTEST_DATA_TYPE)
			return ERR_PTR(-EOPNOTSUPP);
		/* Older layouts stop after the 4-byte iotlb field: the default format. */
		if (user_data->len >= 8)
			memcpy(&pt_type, (const char *)user_data->data + 4, sizeof(pt_type));
		if (pt_type == MOCK_SELFTEST_PT_HUGE)
			pgsize_bitmap |= MOCK_SELFTEST_HUGE_PAGE_SIZE;
		else if (pt_type != MOCK_SELFTEST_PT_DEFAULT)
			return ERR_PTR(-EOPNOTSUPP);
	}

	md = uiommu_zalloc(sizeof(*md));
	if (!md)
		return ERR_PTR(-ENOMEM);
	md->root = pt_table_alloc(md);
	if (!md->root) {
		uiommu_free(md);
		return ERR_PTR(-ENOMEM);
	}
	uiommu_mutex_init(&md->lock);
	md->flags = flags;
	md->domain.ops = &mock_selftest_paging_ops;
	md->domain.dirty_ops = &mock_selftest_dirty_ops;
	md->domain.pgsize_bitmap = pgsize_bitmap;
	md->domain.geometry.aperture_start = MOCK_SELFTEST_APERTURE_START;
	md->domain.geometry.aperture_end = MOCK_SELFTEST_APERTURE_LAST;
	md->domain.geometry.force_aperture = true;
	return &md->domain;
}

static struct iommu_domain *mock_selftest_domain_alloc_paging(struct device *dev)
{
	return mock_selftest_domain_alloc_paging_flags(dev, 0, NULL);
}

/* ---- devices ----------------------------------------------------------------------------------- */

static bool mock_selftest_capable(struct device *dev, enum iommu_cap cap)
{
	switch (cap) {
	case IOMMU_CAP_CACHE_COHERENCY:
		return true;
	case IOMMU_CAP_DIRTY_TRACKING:
		return dev->dirty;
	default:
		return false;
	}
}

/* @dev joins the instance's fault queue, which is made for the first device. */
static int mock_selftest_iopf_add(struct device *dev)
{
	int rc = -ENOMEM;

	uiommu_mutex_lock(&mock_selftest_iopf_lock);
	if (!mock_selftest_iopf_queue)
		mock_selftest_iopf_queue = iopf_queue_alloc(mock_selftest_iommu.name);
	if (mock_selftest_iopf_queue)
		rc = iopf_queue_add_device(mock_selftest_iopf_queue, dev);
	if (!rc)
		mock_selftest_iopf_devices++;
	if (!mock_selftest_iopf_devices) {
		iopf_queue_free(mock_selftest_iopf_queue);
		mock_selftest_iopf_queue = NULL;
	}
	uiommu_mutex_unlock(&mock_selftest_iopf_lock);
	return rc;
}

/*
 * The driver order of removal: iommufd detached and answered what its fault queues held before
 * the device goes; the core answers what is left and @dev leaves the queue, freed with the last.
 */
static void mock_selftest_iopf_remove(struct device *dev)
{
	uiommu_mutex_lock(&mock_selftest_iopf_lock);
	iopf_queue_remove_device(mock_selftest_iopf_queue, dev);
	if (!--mock_selftest_iopf_devices) {
		iopf_queue_free(mock_selftest_iopf_queue);
		mock_selftest_iopf_queue = NULL;
	}
	uiommu_mutex_unlock(&mock_selftest_iopf_lock);
}

/* An answer to a page request group reaches the "device": counted for the tests. */
static void mock_selftest_page_response(struct device *dev, struct iopf_fault *evt,
					struct iommu_page_response *msg)
{
	struct mock_selftest_dev *mdev = dev->iommu_data ? dev->iommu_data->priv : NULL;

	if (!mdev || msg->code > IOMMU_PAGE_RESP_FAILURE)
		return;
	atomic_store(&mdev->last_grpid, msg->grpid);
	atomic_store(&mdev->last_code, msg->code);
	atomic_fetch_add(&mdev->responses[msg->code], 1);
}

static struct iommu_device *mock_selftest_probe_device(struct device *dev)
{
	struct mock_selftest_dev *mdev;
	int rc;

	if (dev->iommu != &mock_selftest_iommu)
		return ERR_PTR(-ENODEV);
	mdev = uiommu_zalloc(sizeof(*mdev));
	if (!mdev)
		return ERR_PTR(-ENOMEM);
	for (unsigned int i = 0; i != MOCK_SELFTEST_DEV_CACHE_NUM; i++)
		atomic_init(&mdev->cache[i], MOCK_SELFTEST_DEV_CACHE_DEFAULT);
	/* page_response finds the record through priv, so it is set before faults can come. */
	dev->iommu_data->priv = mdev;
	rc = mock_selftest_iopf_add(dev);
	if (rc) {
		dev->iommu_data->priv = NULL;
		uiommu_free(mdev);
		return ERR_PTR(rc);
	}
	return dev->iommu;
}

static void mock_selftest_release_device(struct device *dev)
{
	mock_selftest_iopf_remove(dev);
	uiommu_free(dev->iommu_data->priv);
	dev->iommu_data->priv = NULL;
}

/* Every mock device is isolated: a group of its own. */
static struct iommu_group *mock_selftest_device_group(struct device *dev)
{
	(void)dev;
	return iommu_group_alloc();
}

static int mock_selftest_def_domain_type(struct device *dev)
{
	(void)dev;
	return IOMMU_DOMAIN_IDENTITY;
}

static void *mock_selftest_hw_info(struct device *dev, uint32_t *length, uint32_t *type)
{
	struct {
		uint32_t flags;
		uint32_t test_reg;
	} *info;

	(void)dev;
	if (*type != 0 && *type != MOCK_SELFTEST_HW_INFO_TYPE)
		return ERR_PTR(-EOPNOTSUPP);
	info = uiommu_zalloc(sizeof(*info));
	if (!info)
		return ERR_PTR(-ENOMEM);
	info->test_reg = MOCK_SELFTEST_HW_INFO_REGVAL;
	*length = sizeof(*info);
	*type = MOCK_SELFTEST_HW_INFO_TYPE;
	return info;
}

static const struct iommu_ops mock_selftest_ops = {
	.name = "iommufd_selftest",
	.capable = mock_selftest_capable,
	.domain_alloc_paging = mock_selftest_domain_alloc_paging,
	.domain_alloc_paging_flags = mock_selftest_domain_alloc_paging_flags,
	.probe_device = mock_selftest_probe_device,
	.release_device = mock_selftest_release_device,
	.device_group = mock_selftest_device_group,
	.def_domain_type = mock_selftest_def_domain_type,
	.hw_info = mock_selftest_hw_info,
	.domain_alloc_nested = mock_selftest_domain_alloc_nested,
	.viommu_alloc = mock_selftest_viommu_alloc,
	.viommu_init = mock_selftest_viommu_init,
	.page_response = mock_selftest_page_response,
	.user_pasid_table = true,
	.identity_domain = &mock_selftest_identity_domain,
	.blocked_domain = &mock_selftest_blocked_domain,
};

static void mock_selftest_register(void)
{
	if (iommu_device_register(&mock_selftest_iommu, &mock_selftest_ops))
		die("mock_selftest: iommu_device_register");
}

struct device *mock_selftest_dev_create(uint32_t dev_flags)
{
	char name[32];
	struct device *dev;
	int rc;

	if (dev_flags & ~MOCK_SELFTEST_DEV_FLAGS)
		return ERR_PTR(-EINVAL);
	pthread_once(&mock_selftest_once, mock_selftest_register);
	snprintf(name, sizeof(name), "iommufd_mock%u",
		 atomic_fetch_add_explicit(&mock_selftest_dev_seq, 1, memory_order_relaxed));
	dev = device_alloc(name);
	if (!dev)
		return ERR_PTR(-ENOMEM);
	dev->iommu = &mock_selftest_iommu;
	dev->dirty = !(dev_flags & MOCK_SELFTEST_DEV_NO_DIRTY);
	if (dev_flags & MOCK_SELFTEST_DEV_PASID)
		dev->pasid_bits = MOCK_SELFTEST_PASID_WIDTH;
	rc = iommu_probe_device(dev);
	if (rc) {
		device_put(dev);
		return ERR_PTR(rc);
	}
	return dev;
}

void mock_selftest_dev_destroy(struct device *dev)
{
	iommu_release_device(dev);
	device_put(dev);
}

uint32_t mock_selftest_dev_flags(struct device *dev)
{
	return (dev->dirty ? 0 : MOCK_SELFTEST_DEV_NO_DIRTY) |
	       (dev->pasid_bits ? MOCK_SELFTEST_DEV_PASID : 0);
}

bool mock_selftest_dev_is(struct device *dev)
{
	return dev->iommu == &mock_selftest_iommu && dev->iommu_data && dev->iommu_data->priv;
}

const struct iommu_ops *mock_selftest_iommu_ops(void)
{
	return &mock_selftest_ops;
}

_Atomic uint32_t *mock_selftest_dev_cache(struct device *dev)
{
	struct mock_selftest_dev *mdev = dev->iommu_data->priv;

	return mdev->cache;
}

bool mock_selftest_domain_is(struct iommu_domain *domain)
{
	return domain->ops == &mock_selftest_paging_ops;
}

long mock_selftest_nr_tables(struct iommu_domain *domain)
{
	struct mock_selftest_domain *md = to_mock_selftest_domain(domain);
	long n;

	uiommu_mutex_lock(&md->lock);
	n = md->nr_tables;
	uiommu_mutex_unlock(&md->lock);
	return n;
}

void mock_selftest_page_responses(struct device *dev, uint32_t counts[3], uint32_t *last_grpid,
				  uint32_t *last_code)
{
	struct mock_selftest_dev *mdev = dev->iommu_data->priv;

	for (unsigned int i = 0; i != 3; i++)
		counts[i] = atomic_load(&mdev->responses[i]);
	*last_grpid = atomic_load(&mdev->last_grpid);
	*last_code = atomic_load(&mdev->last_code);
}
