// SPDX-License-Identifier: MIT
/*
 * The mock IOMMU driver.
 *
 * This is the driver behind every IOMMU instance of the emulated machine (topology.c), the
 * counterpart of a hardware driver such as intel-iommu or arm-smmu-v3, but with nothing to
 * program: its "hardware" is the io_pgtable of each paging domain, which the IOTLB model of the
 * DMA layer walks, and an invalidation hook that stands in for the invalidation queue.
 *
 * What it models, callback by callback:
 *
 *  - probe_device / release_device: per-device driver data in dev->iommu_data->priv, made at
 *    probe and freed at release. The core calls release_device exactly once per successful
 *    probe, under the group mutex (invariant 3); the driver checks that (a second release, or
 *    a release without a probe, is a WARN that stops debug builds) and counts the calls where
 *    tests can read them, mock_release_count().
 *  - device_group: PCI-style isolation. Devices behind the same IOMMU instance with the same
 *    non-empty group_key cannot be told apart (functions behind a PCIe switch without ACS) and
 *    share a group; any other device gets a group of its own. The driver remembers the group of
 *    each key, weakly: the table holds no group reference (the member devices do), only a count
 *    of the devices of that key, and the entry goes when release_device sees the last of them
 *    leave. The next device with that key then gets a new group, as in the kernel, where the
 *    group dies with its last device.
 *  - domain_alloc_paging: a struct mock_domain, an iommu_domain with a 48-bit io_pgtable,
 *    page sizes 4K|2M|1G and the aperture [0, 2^48 - 1].
 *  - dirty tracking (domain_alloc_paging_flags with IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING, for a
 *    device whose capable() says IOMMU_CAP_DIRTY_TRACKING): such a domain has dirty_ops and
 *    accepts only devices that can be tracked (-EINVAL otherwise, as intel's and AMD's
 *    compatibility checks). While tracking is on, the walk of a device's write sets the leaf's
 *    dirty bit (mock_domain_access_walk(): the hardware's D bit, which the IOTLB model asks
 *    for on every miss and on every write through an entry cached clean, and the dma_walk op
 *    a device without an IOTLB uses); read_and_clear_dirty
 *    reports and clears the bits and puts every reported range in the caller's gather, so the
 *    caller's sync drops the IOTLB entries that remember the bit set. Turning tracking on
 *    starts clean (every bit cleared) and flushes the domain's IOTLB entries, which were
 *    filled while nothing was tracked.
 *  - attach_dev: records the domain in the driver data (what a driver would write into a
 *    context entry or STE), after refusing another driver's domain with -EINVAL. A test can
 *    make the next attach of a device fail, mock_fail_attach(), to exercise the core's
 *    all-or-nothing group switch.
 *  - map/unmap/iova_to_phys: the page table. unmap adds what it removed to the gather;
 *    iotlb_sync and flush_iotlb_all invalidate the range in the IOTLB model (iotlb.c, our
 *    hardware's IOTLB), then tell mock_iotlb_invalidate_hook (tests watch the commands). The
 *    IOTLB walks our domains with mock_domain_walk(), registered with the first instance.
 *  - set_dev_pasid (every domain): a per-device PASID table, pasid -> domain; the blocked
 *    domain clears an entry. domain_alloc_paging_flags understands IOMMU_DOMAIN_ALLOC_PASID.
 *  - domain_alloc_sva: an SVA domain, whose translation is the bound process's own mappings
 *    (domain->mm; see mock_sva_iova_to_phys()); it goes on PASIDs only.
 *  - identity_domain, blocked_domain: static, shared by every device.
 *  - capable: cache coherency always; deferred flush as the instance says; dirty tracking when
 *    the device can and its instance does.
 *  - def_domain_type: the bound driver's preference, dev->driver_pref.
 *  - get_resv_regions: the device's firmware-described regions, dev->resv, then x86's MSI
 *    window (IOMMU_RESV_MSI, 0xfee00000-0xfeefffff) when the instance has one (the topology's
 *    "msi_window", on by default), as intel-iommu and amd-iommu report it.
 *  - page requests: a PRI device (dev->pri) joins its instance's iopf queue (made at the first
 *    one, iommu->priv) at probe and leaves it at release; page_response records each answer
 *    (mock_page_responses(), mock_page_response_hook) where tests check them.
 *
 * Locking. mock_lock (a leaf below the core's probe lock and group mutexes; nothing is called
 * with it held except iommu_group_ref_get(), an atomic increment) protects the key table and
 * the test bookkeeping. The per-device driver data needs no lock of its own: the core creates
 * and destroys it under its probe lock and group mutex, and attach_dev runs under the group
 * mutex; its domain pointer is atomic only so that tests may peek at it.
 *
 * Allocations of the driver proper go through uiommu_zalloc() (fault injection, the leak
 * ledger). The test bookkeeping (counters that must outlive a release) uses plain calloc: it is
 * not part of the driver's state, and a fail-nth sweep must not see it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "drivers/mock/mock.h"
#include "iommu/iotlb.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "mm/mm.h"

_Atomic(mock_iotlb_flush_fn) mock_iotlb_invalidate_hook;
_Atomic(mock_page_response_fn) mock_page_response_hook;

struct mock_domain {
	struct iommu_domain domain;
	struct io_pgtable *pgt; /* immutable after alloc */
	/*
	 * Dirty tracking is on (domains with dirty_ops only). Changed by set_dirty_tracking,
	 * which iommufd serialises per HWPT; read by every DMA walk without a lock.
	 */
	atomic_bool dirty_tracking;
};

/* A group_key's group. Head at mock_group_keys; mock_lock. */
struct mock_group_key {
	LIST_ENTRY(mock_group_key) node;
	const struct iommu_device *iommu;
	char key[sizeof(((struct device *)0)->group_key)];
	struct iommu_group *group;  /* weak: alive while nr_devices > 0 (they hold references) */
	int group_id;               /* for debugging */
	unsigned int nr_devices;    /* devices of this key between device_group and release */
};

/* One PASID of a device and the domain it is on. Head at mock_dev::pasids; group mutex. */
struct mock_pasid {
	uint32_t pasid;
	struct iommu_domain *domain;
	struct mock_pasid *next;
};

/* An SVA domain: it translates through the process's own mappings (its mm). */
struct mock_sva_domain {
	struct iommu_domain domain; /* domain.mm: the address space, the core's reference */
};

/* The driver data of a probed device: dev->iommu_data->priv. */
struct mock_dev {
	_Atomic(struct iommu_domain *) domain; /* last successful attach; group mutex */
	struct mock_pasid *pasids;             /* PASID table entries; group mutex */
	struct mock_group_key *key;            /* counted in key->nr_devices; mock_lock */
};

/* Test bookkeeping of a device, across probes. Head at mock_dev_states; mock_lock. */
struct mock_dev_state {
	LIST_ENTRY(mock_dev_state) node;
	const struct device *dev;
	unsigned int probes;
	unsigned int releases;
	int fail_attach; /* the next attach_dev's errno, 0 for none */
	unsigned int page_responses;            /* page_response calls */
	struct iommu_page_response last_response;
};

/* Protects the mock's bookkeeping lists; a leaf. */
UIOMMU_MUTEX_DEFINE(mock_lock);
static LIST_HEAD(, mock_group_key) mock_group_keys = LIST_HEAD_INITIALIZER(mock_group_keys);
static LIST_HEAD(, mock_dev_state) mock_dev_states = LIST_HEAD_INITIALIZER(mock_dev_states);

static const struct iommu_domain_ops mock_paging_domain_ops;
static const struct iommu_dirty_ops mock_dirty_ops;
static bool mock_capable(struct device *dev, enum iommu_cap cap);

/* A domain that tracks dirty pages takes only devices whose DMA can be tracked. */
static bool mock_domain_compatible(struct iommu_domain *domain, struct device *dev)
{
	return domain->dirty_ops != &mock_dirty_ops || mock_capable(dev, IOMMU_CAP_DIRTY_TRACKING);
}

static struct mock_domain *to_mock_domain(struct iommu_domain *domain)
{
	return container_of(domain, struct mock_domain, domain);
}

static struct mock_dev *dev_to_mock(struct device *dev)
{
	return dev->iommu_data ? dev->iommu_data->priv : NULL;
}

/* mock_lock held. @create: make the entry if missing (NULL if that fails). */
static struct mock_dev_state *mock_dev_state_find(const struct device *dev, bool create)
{
	struct mock_dev_state *st;

	LIST_FOREACH(st, &mock_dev_states, node)
		if (st->dev == dev)
			return st;
	if (!create)
		return NULL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->dev = dev;
	LIST_INSERT_HEAD(&mock_dev_states, st, node);
	return st;
}

/* ---- domains ----------------------------------------------------------------------------- */

static int mock_attach_dev(struct iommu_domain *domain, struct device *dev,
			   struct iommu_domain *old)
{
	const struct iommu_ops *ops = &mock_iommu_ops;
	struct mock_dev *mdev = dev_to_mock(dev);
	struct mock_dev_state *st;
	int err = 0;

	/* Another driver's domain: "incompatible", silently, as the kernel's contract asks. */
	if (domain->owner != ops && domain != ops->identity_domain &&
	    domain != ops->blocked_domain)
		return -EINVAL;
	if (!mock_domain_compatible(domain, dev))
		return -EINVAL;
	/* After release_device nothing may attach the device any more (invariant 3). */
	if (WARN_ON(!mdev))
		return -ENODEV;

	uiommu_mutex_lock(&mock_lock);
	st = mock_dev_state_find(dev, false);
	if (st && st->fail_attach) {
		err = st->fail_attach;
		st->fail_attach = 0;
	}
	uiommu_mutex_unlock(&mock_lock);
	if (err)
		return err;

	atomic_store_explicit(&mdev->domain, domain, memory_order_release);
	return 0;
}

static struct mock_pasid **mock_pasid_slot(struct mock_dev *mdev, uint32_t pasid)
{
	struct mock_pasid **pos;

	for (pos = &mdev->pasids; *pos; pos = &(*pos)->next)
		if ((*pos)->pasid == pasid)
			break;
	return pos;
}

/*
 * Writes (@dev, @pasid) -> @domain into the device's PASID table (a PASID-table entry of real
 * hardware); the blocked domain clears the entry. A new entry is allocated, so attaching can
 * fail (-ENOMEM) while replacing and removing cannot.
 */
static int mock_set_dev_pasid(struct iommu_domain *domain, struct device *dev, uint32_t pasid,
			      struct iommu_domain *old)
{
	const struct iommu_ops *ops = &mock_iommu_ops;
	struct mock_dev *mdev = dev_to_mock(dev);
	struct mock_pasid **pos, *entry;

	iommu_group_mutex_assert(dev);
	if (WARN_ON(!mdev))
		return -ENODEV;
	pos = mock_pasid_slot(mdev, pasid);
	/* The core's idea of the old domain is the table's. */
	WARN_ON((*pos ? (*pos)->domain : NULL) != old);
	if (domain == ops->blocked_domain) {
		entry = *pos;
		if (entry) {
			*pos = entry->next;
			uiommu_free(entry);
		}
		return 0;
	}
	if (domain->owner != ops && domain != ops->identity_domain)
		return -EINVAL;
	if (!mock_domain_compatible(domain, dev))
		return -EINVAL;
	if (*pos) {
		(*pos)->domain = domain;
		return 0;
	}
	entry = uiommu_zalloc(sizeof(*entry));
	if (!entry)
		return -ENOMEM;
	entry->pasid = pasid;
	entry->domain = domain;
	entry->next = mdev->pasids;
	mdev->pasids = entry;
	return 0;
}

static int mock_map_pages(struct iommu_domain *domain, uint64_t iova, phys_addr_t paddr,
			  size_t pgsize, size_t pgcount, int prot, size_t *mapped)
{
	return io_pgtable_map_pages(to_mock_domain(domain)->pgt, iova, paddr, pgsize, pgcount,
				    prot, mapped);
}

static size_t mock_unmap_pages(struct iommu_domain *domain, uint64_t iova, size_t pgsize,
			       size_t pgcount, struct iommu_iotlb_gather *gather)
{
	size_t size = io_pgtable_unmap_pages(to_mock_domain(domain)->pgt, iova, pgsize, pgcount);

	/*
	 * Grow the gathered range over what went. Merging disjoint ranges over-invalidates,
	 * which is always safe, and keeps one invalidation per sync.
	 */
	if (size && gather) {
		if (iova < gather->start)
			gather->start = iova;
		if (iova + size - 1 > gather->end)
			gather->end = iova + size - 1;
		gather->pgsize = pgsize;
	}
	return size;
}

/* Tells the test hook of an invalidation command, [@start, @last] inclusive. */
static void mock_iotlb_invalidate_notify(struct iommu_domain *domain, uint64_t start,
					 uint64_t last)
{
	mock_iotlb_flush_fn fn = atomic_load_explicit(&mock_iotlb_invalidate_hook,
						      memory_order_acquire);

	if (fn)
		fn(domain, start, last);
}

static void mock_flush_iotlb_all(struct iommu_domain *domain)
{
	iotlb_inv_domain(domain);
	mock_iotlb_invalidate_notify(domain, 0, UINT64_MAX);
}

static void mock_iotlb_sync(struct iommu_domain *domain, struct iommu_iotlb_gather *gather)
{
	/* An empty gather (nothing unmapped since init) needs nothing. */
	if (gather->start > gather->end)
		return;
	iotlb_inv_range(domain, gather->start, gather->end - gather->start + 1);
	mock_iotlb_invalidate_notify(domain, gather->start, gather->end);
}

static phys_addr_t mock_iova_to_phys(struct iommu_domain *domain, uint64_t iova)
{
	return io_pgtable_iova_to_phys(to_mock_domain(domain)->pgt, iova);
}

/* ---- dirty tracking ------------------------------------------------------------------------- */

struct mock_dirty_walk {
	struct iommu_dirty_bitmap *dirty;
};

static void mock_dirty_record(void *arg, uint64_t iova, uint64_t length)
{
	struct mock_dirty_walk *walk = arg;

	if (walk->dirty)
		iommu_dirty_bitmap_record(walk->dirty, iova, length);
}

static int mock_set_dirty_tracking(struct iommu_domain *domain, bool enabled)
{
	struct mock_domain *mdom = to_mock_domain(domain);
	struct mock_dirty_walk walk = { NULL };

	if (enabled == atomic_load(&mdom->dirty_tracking))
		return 0;
	if (enabled)
		/* Tracking starts clean: bits left from an earlier period mean nothing. */
		io_pgtable_read_and_clear_dirty(mdom->pgt, 0, UINT64_C(1) << MOCK_IAS, true,
						mock_dirty_record, &walk);
	atomic_store(&mdom->dirty_tracking, enabled);
	/*
	 * The hardware reloads its context (intel's PASID entry, AMD's DTE) and drops what it
	 * cached: entries filled while nothing was tracked do not know a write must set a bit.
	 * After the store, so that a fill racing us either saw it or is dropped by the flush.
	 */
	mock_flush_iotlb_all(domain);
	return 0;
}

static int mock_read_and_clear_dirty(struct iommu_domain *domain, uint64_t iova, uint64_t size,
				     unsigned int flags, struct iommu_dirty_bitmap *dirty)
{
	struct mock_domain *mdom = to_mock_domain(domain);
	struct mock_dirty_walk walk = { dirty };

	/* As the selftest mock (and dirty.c's callers expect): nothing to read while off. */
	if (!atomic_load(&mdom->dirty_tracking))
		return -EINVAL;
	return io_pgtable_read_and_clear_dirty(mdom->pgt, iova, size,
					       !(flags & IOMMU_DIRTY_NO_CLEAR), mock_dirty_record,
					       &walk);
}

static const struct iommu_dirty_ops mock_dirty_ops = {
	.set_dirty_tracking = mock_set_dirty_tracking,
	.read_and_clear_dirty = mock_read_and_clear_dirty,
};

static void mock_domain_free(struct iommu_domain *domain)
{
	struct mock_domain *mdom = to_mock_domain(domain);

	io_pgtable_free(mdom->pgt);
	uiommu_free(mdom);
}

/*
 * The hardware's walk for a device's access: @iova's leaf. @write: in a domain that tracks dirty
 * pages, a writable leaf gets its dirty bit on the way (the D bit). *@clean: the domain tracks
 * and the leaf's bit is clear, so a later write through this translation must walk again.
 */
static int mock_domain_access_walk(struct iommu_domain *domain, uint64_t iova, bool write,
				   struct io_pgtable_leaf *leaf, bool *clean)
{
	struct io_pgtable *pgt = to_mock_domain(domain)->pgt;
	int rc;

	*clean = false;
	rc = io_pgtable_walk(pgt, iova, leaf);
	if (rc || !atomic_load(&to_mock_domain(domain)->dirty_tracking) || leaf->dirty)
		return rc;
	if (write && (leaf->prot & IO_PGTABLE_PROT_WRITE)) {
		/* -ENOENT: unmapped since the walk, which the caller's translation already used. */
		if (!io_pgtable_mark_dirty(pgt, iova))
			leaf->dirty = true;
	} else {
		*clean = true;
	}
	return 0;
}

/* The dma_walk op: the machine's DMA engine without an IOTLB walks as the IOTLB's miss does. */
static phys_addr_t mock_dma_walk(struct iommu_domain *domain, uint64_t iova, bool write, int *prot,
				 uint64_t *size)
{
	struct io_pgtable_leaf leaf;
	bool clean;

	*prot = 0;
	if (mock_domain_access_walk(domain, iova, write, &leaf, &clean))
		return 0;
	*prot = leaf.prot & (IOMMU_READ | IOMMU_WRITE);
	*size = leaf.size;
	return leaf.phys + (iova - leaf.iova);
}

static const struct iommu_domain_ops mock_paging_domain_ops = {
	.attach_dev = mock_attach_dev,
	.map_pages = mock_map_pages,
	.unmap_pages = mock_unmap_pages,
	.flush_iotlb_all = mock_flush_iotlb_all,
	.iotlb_sync = mock_iotlb_sync,
	.iova_to_phys = mock_iova_to_phys,
	.dma_walk = mock_dma_walk,
	.set_dev_pasid = mock_set_dev_pasid,
	.free = mock_domain_free,
};

/* Identity and blocked translate nothing that needs a table: attach is all they do. */
static const struct iommu_domain_ops mock_static_domain_ops = {
	.attach_dev = mock_attach_dev,
	.set_dev_pasid = mock_set_dev_pasid,
};

/* ---- SVA domains ---------------------------------------------------------------------------- */

/* An SVA domain goes on PASIDs only. */
static int mock_sva_attach_dev(struct iommu_domain *domain, struct device *dev,
			       struct iommu_domain *old)
{
	(void)domain;
	(void)dev;
	(void)old;
	return -EINVAL;
}

/*
 * The translation of an SVA domain is the process's: an address translates (to itself: this
 * process's addresses are the emulator's "physical" ones) exactly when the mm maps it.
 */
static phys_addr_t mock_sva_iova_to_phys(struct iommu_domain *domain, uint64_t iova)
{
	struct uiommu_mm *mm = domain->mm;
	unsigned int prot;

	if (!mm->ops->vma_prot || mm->ops->vma_prot(mm, iova, &prot) || !prot)
		return 0;
	return (phys_addr_t)(uintptr_t)mm->ops->host_ptr(mm, iova);
}

static void mock_sva_domain_free(struct iommu_domain *domain)
{
	uiommu_free(container_of(domain, struct mock_sva_domain, domain));
}

static const struct iommu_domain_ops mock_sva_domain_ops = {
	.attach_dev = mock_sva_attach_dev,
	.iova_to_phys = mock_sva_iova_to_phys,
	.set_dev_pasid = mock_set_dev_pasid,
	.free = mock_sva_domain_free,
};

/* The core sets type, owner, mm (its reference) and the fault handler after we return. */
static struct iommu_domain *mock_domain_alloc_sva(struct device *dev, struct uiommu_mm *mm)
{
	struct mock_sva_domain *sdom;

	(void)dev;
	(void)mm;
	sdom = uiommu_zalloc(sizeof(*sdom));
	if (!sdom)
		return ERR_PTR(-ENOMEM);
	sdom->domain.ops = &mock_sva_domain_ops;
	return &sdom->domain;
}

static struct iommu_domain mock_identity_domain = {
	.type = IOMMU_DOMAIN_IDENTITY,
	.ops = &mock_static_domain_ops,
	.owner = &mock_iommu_ops,
};

static struct iommu_domain mock_blocked_domain = {
	.type = IOMMU_DOMAIN_BLOCKED,
	.ops = &mock_static_domain_ops,
	.owner = &mock_iommu_ops,
};

static struct iommu_domain *mock_domain_alloc_paging(struct device *dev)
{
	struct mock_domain *mdom;
	struct io_pgtable *pgt;

	mdom = uiommu_zalloc(sizeof(*mdom));
	if (!mdom)
		return ERR_PTR(-ENOMEM);
	pgt = io_pgtable_alloc(MOCK_IAS);
	if (IS_ERR(pgt))
		goto err_free_domain;
	mdom->pgt = pgt;
	/* The core sets type, owner and id after we return; these are the driver's. */
	mdom->domain.type = IOMMU_DOMAIN_UNMANAGED;
	mdom->domain.owner = &mock_iommu_ops;
	mdom->domain.ops = &mock_paging_domain_ops;
	mdom->domain.pgsize_bitmap = IO_PGTABLE_PGSIZE_BITMAP;
	mdom->domain.geometry.aperture_start = 0;
	mdom->domain.geometry.aperture_end = (UINT64_C(1) << MOCK_IAS) - 1;
	mdom->domain.geometry.force_aperture = true;
	atomic_init(&mdom->dirty_tracking, false);
	return &mdom->domain;

err_free_domain:
	uiommu_free(mdom);
	return ERR_CAST(pgt);
}

/*
 * A user's paging domain (iommufd): IOMMU_DOMAIN_ALLOC_PASID, and _DIRTY_TRACKING for a
 * device that can be tracked; no driver data.
 */
static struct iommu_domain *mock_domain_alloc_paging_flags(struct device *dev, uint32_t flags,
							   const struct iommu_user_data *user_data)
{
	struct iommu_domain *domain;

	if ((flags & ~(IOMMU_DOMAIN_ALLOC_PASID | IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING)) || user_data)
		return ERR_PTR(-EOPNOTSUPP);
	if ((flags & IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING) &&
	    !mock_capable(dev, IOMMU_CAP_DIRTY_TRACKING))
		return ERR_PTR(-EOPNOTSUPP);
	domain = mock_domain_alloc_paging(dev);
	if (!IS_ERR(domain) && (flags & IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING))
		domain->dirty_ops = &mock_dirty_ops;
	return domain;
}

/* ---- devices ------------------------------------------------------------------------------- */

static bool mock_capable(struct device *dev, enum iommu_cap cap)
{
	switch (cap) {
	case IOMMU_CAP_CACHE_COHERENCY:
		return true;
	case IOMMU_CAP_DEFERRED_FLUSH:
		return dev->iommu && dev->iommu->deferred_flush;
	case IOMMU_CAP_DIRTY_TRACKING:
		/* The device's ATS/PRI path and the instance's page-table walker both need it. */
		return dev->dirty && dev->iommu && dev->iommu->dirty_tracking;
	case IOMMU_CAP_PCI_ATS_SUPPORTED:
		return dev->ats; /* every mock instance serves ATS (its PRI path needs it) */
	default:
		return false;
	}
}

/* ---- page requests (PRI) ------------------------------------------------------------------- */

/*
 * The instance's fault queue (iommu->priv), made at the first PRI device and freed when the
 * instance is unregistered. mock_lock protects the pointer.
 */
static struct iopf_queue *mock_iopf_queue_get(struct iommu_device *iommu)
{
	struct iopf_queue *queue;

	uiommu_mutex_lock(&mock_lock);
	if (!iommu->priv)
		iommu->priv = iopf_queue_alloc(iommu->name);
	queue = iommu->priv;
	uiommu_mutex_unlock(&mock_lock);
	return queue;
}

/* Probe of a PRI-capable device: its page requests go through the instance's queue. */
static int mock_iopf_enable(struct device *dev)
{
	struct iopf_queue *queue;

	if (!dev->pri)
		return 0;
	queue = mock_iopf_queue_get(dev->iommu);
	if (!queue)
		return -ENOMEM;
	return iopf_queue_add_device(queue, dev);
}

/*
 * Release, in the order of the kernel's drivers: the IOMMU stops taking the device's page
 * requests (the mock has no hardware queue to drain: its reports come from callers, which
 * the removal waits for), the core discards and answers what is left, then PRI would be
 * disabled in the device.
 */
static void mock_iopf_disable(struct device *dev)
{
	if (dev->pri && dev->iommu->priv && iopf_dev_fault_param_users(dev) > 0)
		iopf_queue_remove_device(dev->iommu->priv, dev);
}

/* The answer to a page request group reaches the "device": recorded for tests. */
static void mock_page_response(struct device *dev, struct iopf_fault *evt,
			       struct iommu_page_response *msg)
{
	mock_page_response_fn hook = atomic_load(&mock_page_response_hook);
	struct mock_dev_state *st;

	uiommu_mutex_lock(&mock_lock);
	st = mock_dev_state_find(dev, true);
	if (st) {
		st->page_responses++;
		st->last_response = *msg;
	}
	uiommu_mutex_unlock(&mock_lock);
	if (hook)
		hook(dev, msg);
}

static struct iommu_device *mock_probe_device(struct device *dev)
{
	struct mock_dev_state *st;
	struct mock_dev *mdev;
	int rc;

	if (!dev->iommu || dev->iommu->ops != &mock_iommu_ops)
		return ERR_PTR(-ENODEV);
	/* A probe of a probed device would leak the first driver data. */
	if (WARN_ON(dev->iommu_data->priv))
		return ERR_PTR(-EBUSY);
	mdev = uiommu_zalloc(sizeof(*mdev));
	if (!mdev)
		return ERR_PTR(-ENOMEM);
	atomic_init(&mdev->domain, NULL);
	rc = mock_iopf_enable(dev);
	if (rc)
		goto err_free_mdev;

	uiommu_mutex_lock(&mock_lock);
	st = mock_dev_state_find(dev, true);
	if (st)
		st->probes++;
	uiommu_mutex_unlock(&mock_lock);
	rc = -ENOMEM;
	if (!st)
		goto err_iopf_disable;

	dev->iommu_data->priv = mdev;
	return dev->iommu;

err_iopf_disable:
	mock_iopf_disable(dev);
err_free_mdev:
	uiommu_free(mdev);
	return ERR_PTR(rc);
}

static void mock_release_device(struct device *dev)
{
	struct mock_dev *mdev = dev_to_mock(dev);
	struct mock_group_key *key_to_free = NULL;
	struct mock_dev_state *st;

	/* Under the group mutex; a probe that failed before it had a group releases under the
	 * core's probe lock instead. */
	if (dev->iommu_group)
		iommu_group_mutex_assert(dev);
	/* Exactly once per probe: a second call finds the driver data gone. */
	if (WARN_ON(!mdev))
		return;
	mock_iopf_disable(dev);

	uiommu_mutex_lock(&mock_lock);
	st = mock_dev_state_find(dev, false);
	if (!WARN_ON(!st || st->releases >= st->probes))
		st->releases++;
	/* The last device of a key: forget its group, which dies with the device's reference. */
	if (mdev->key && --mdev->key->nr_devices == 0) {
		key_to_free = mdev->key;
		LIST_REMOVE(key_to_free, node);
	}
	uiommu_mutex_unlock(&mock_lock);

	uiommu_free(key_to_free);
	/* The core removed every PASID before release; a leftover is a core bug. */
	WARN_ON(mdev->pasids);
	while (mdev->pasids) {
		struct mock_pasid *entry = mdev->pasids;

		mdev->pasids = entry->next;
		uiommu_free(entry);
	}
	atomic_store_explicit(&mdev->domain, NULL, memory_order_relaxed);
	uiommu_free(mdev);
	dev->iommu_data->priv = NULL;
}

/* mock_lock held. */
static struct mock_group_key *mock_group_key_find(const struct device *dev)
{
	struct mock_group_key *k;

	LIST_FOREACH(k, &mock_group_keys, node)
		if (k->iommu == dev->iommu && !strcmp(k->key, dev->group_key))
			return k;
	return NULL;
}

/*
 * The group of @dev, with a reference for the device. Runs under the core's probe lock, so
 * two device_group calls never race; a release_device of a device of the same key can.
 */
static struct iommu_group *mock_device_group(struct device *dev)
{
	struct mock_dev *mdev = dev_to_mock(dev);
	struct mock_group_key *k, *new_key;
	struct iommu_group *group;

	if (!dev->group_key[0])
		return iommu_group_alloc();

	uiommu_mutex_lock(&mock_lock);
	k = mock_group_key_find(dev);
	if (k) {
		/* Safe: k->nr_devices > 0, so a member still holds a reference. */
		group = iommu_group_ref_get(k->group);
		k->nr_devices++;
		mdev->key = k;
		uiommu_mutex_unlock(&mock_lock);
		return group;
	}
	uiommu_mutex_unlock(&mock_lock);

	/* A new key: allocate outside mock_lock, the core's group allocation takes its own. */
	new_key = uiommu_zalloc(sizeof(*new_key));
	if (!new_key)
		return ERR_PTR(-ENOMEM);
	group = iommu_group_alloc();
	if (IS_ERR(group))
		goto err_free_key;
	new_key->iommu = dev->iommu;
	snprintf(new_key->key, sizeof(new_key->key), "%s", dev->group_key);
	new_key->group = group;
	new_key->group_id = iommu_group_id(group);
	new_key->nr_devices = 1;

	uiommu_mutex_lock(&mock_lock);
	LIST_INSERT_HEAD(&mock_group_keys, new_key, node);
	mdev->key = new_key;
	uiommu_mutex_unlock(&mock_lock);
	return group;

err_free_key:
	uiommu_free(new_key);
	return group;
}

static int mock_def_domain_type(struct device *dev)
{
	return dev->driver_pref;
}

static unsigned int mock_get_resv_regions(struct device *dev, struct iommu_resv_region *regions,
					  unsigned int max)
{
	unsigned int i, n = dev->nr_resv < max ? dev->nr_resv : max;

	for (i = 0; i < n; i++)
		regions[i] = dev->resv[i];
	/* After the firmware's regions, as intel-iommu lists its RMRRs before the IOAPIC range. */
	if (dev->iommu && dev->iommu->msi_window && n < max)
		regions[n++] = (struct iommu_resv_region){
			.start = MOCK_MSI_WINDOW_START,
			.length = MOCK_MSI_WINDOW_LENGTH,
			.prot = IOMMU_WRITE | IOMMU_MMIO,
			.type = IOMMU_RESV_MSI,
		};
	return n;
}

const struct iommu_ops mock_iommu_ops = {
	.name = "mock",
	.capable = mock_capable,
	.domain_alloc_paging = mock_domain_alloc_paging,
	.probe_device = mock_probe_device,
	.release_device = mock_release_device,
	.device_group = mock_device_group,
	.def_domain_type = mock_def_domain_type,
	.get_resv_regions = mock_get_resv_regions,
	.domain_alloc_paging_flags = mock_domain_alloc_paging_flags,
	.domain_alloc_sva = mock_domain_alloc_sva,
	.page_response = mock_page_response,
	.identity_domain = &mock_identity_domain,
	.blocked_domain = &mock_blocked_domain,
};

/*
 * The IOTLB model's walk of our domains, with the leaf's permissions, its dirty bit set by a
 * write while the domain tracks, and IOTLB_PROT_CLEAN while it is clear.
 */
static phys_addr_t mock_iotlb_walk(struct iommu_domain *domain, uint64_t iova, int access,
				   int *prot)
{
	struct io_pgtable_leaf leaf;
	bool clean;

	if (!mock_domain_pgtable(domain) ||
	    mock_domain_access_walk(domain, iova, access & IOMMU_WRITE, &leaf, &clean))
		return 0;
	*prot = (leaf.prot & (IOMMU_READ | IOMMU_WRITE)) | (clean ? IOTLB_PROT_CLEAN : 0);
	return leaf.phys + (iova - leaf.iova);
}

static pthread_once_t mock_walker_once = PTHREAD_ONCE_INIT;
static int mock_walker_err;

static void mock_register_walker(void)
{
	mock_walker_err = iotlb_register_walker(&mock_iommu_ops, mock_iotlb_walk);
}

int mock_iommu_register(struct iommu_device *iommu)
{
	/* Before the instance has devices, so before its IOTLB can hold an entry. */
	pthread_once(&mock_walker_once, mock_register_walker);
	if (mock_walker_err)
		return mock_walker_err;
	return iommu_device_register(iommu, &mock_iommu_ops);
}

void mock_iommu_unregister(struct iommu_device *iommu)
{
	iommu_device_unregister(iommu);
	iopf_queue_free(iommu->priv);
	iommu->priv = NULL;
}

struct io_pgtable *mock_domain_pgtable(struct iommu_domain *domain)
{
	if (!domain || domain->ops != &mock_paging_domain_ops)
		return NULL;
	return to_mock_domain(domain)->pgt;
}

int mock_domain_walk(struct iommu_domain *domain, uint64_t iova, struct io_pgtable_leaf *leaf)
{
	struct io_pgtable *pgt = mock_domain_pgtable(domain);

	if (!pgt)
		return -EINVAL;
	return io_pgtable_walk(pgt, iova, leaf);
}

/* ---- test hooks --------------------------------------------------------------------------- */

void mock_fail_attach(struct device *dev, int err)
{
	struct mock_dev_state *st;

	uiommu_mutex_lock(&mock_lock);
	st = mock_dev_state_find(dev, true);
	if (st)
		st->fail_attach = err;
	uiommu_mutex_unlock(&mock_lock);
	if (!st)
		die("mock_fail_attach: out of memory");
}

unsigned int mock_release_count(struct device *dev)
{
	struct mock_dev_state *st;
	unsigned int n;

	uiommu_mutex_lock(&mock_lock);
	st = mock_dev_state_find(dev, false);
	n = st ? st->releases : 0;
	uiommu_mutex_unlock(&mock_lock);
	return n;
}

unsigned int mock_probe_count(struct device *dev)
{
	struct mock_dev_state *st;
	unsigned int n;

	uiommu_mutex_lock(&mock_lock);
	st = mock_dev_state_find(dev, false);
	n = st ? st->probes : 0;
	uiommu_mutex_unlock(&mock_lock);
	return n;
}

struct iommu_domain *mock_pasid_domain(struct device *dev, uint32_t pasid)
{
	struct mock_dev *mdev = dev_to_mock(dev);
	struct mock_pasid *entry;

	if (!mdev)
		return NULL;
	iommu_group_mutex_assert(dev);
	entry = *mock_pasid_slot(mdev, pasid);
	return entry ? entry->domain : NULL;
}

struct iommu_domain *mock_attached_domain(struct device *dev)
{
	struct mock_dev *mdev = dev_to_mock(dev);

	return mdev ? atomic_load_explicit(&mdev->domain, memory_order_acquire) : NULL;
}

void mock_device_forget(struct device *dev)
{
	struct mock_dev_state *st;

	uiommu_mutex_lock(&mock_lock);
	st = mock_dev_state_find(dev, false);
	if (st)
		LIST_REMOVE(st, node);
	uiommu_mutex_unlock(&mock_lock);
	free(st);
}

unsigned int mock_page_responses(struct device *dev, struct iommu_page_response *last)
{
	struct mock_dev_state *st;
	unsigned int n = 0;

	uiommu_mutex_lock(&mock_lock);
	st = mock_dev_state_find(dev, false);
	if (st) {
		n = st->page_responses;
		if (last)
			*last = st->last_response;
	}
	uiommu_mutex_unlock(&mock_lock);
	return n;
}
