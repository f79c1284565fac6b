// SPDX-License-Identifier: MIT
/*
 * The Intel VT-d driver: a scalable-mode IOMMU whose model is the hardware of
 * ../shared/spec/hw-iommus.md part C, driven as the kernel's drivers/iommu/intel/ drives it.
 *
 * Data model.
 *   - An instance (struct vtd_instance, iommu->priv) has its features (what the topology asks
 *     the model to implement), the CAP/ECAP registers derived from them once at registration
 *     (so GET_HW_INFO reports exactly what is implemented), and the page request queue's I/O
 *     page fault queue.
 *   - A paging domain (struct vtd_paging) is a second-stage table (vtd-pgtable.c) of as many
 *     levels as the instance's SAGAW allows: the default DMA domains, the users' paging
 *     domains and, with NEST_PARENT, the nest parent. Its nested children are listed in it: a second-stage
 *     change invalidates every child's combined translations (C.7 step 6).
 *   - A nested domain (struct vtd_nested) is a guest first stage: a copy of the user's
 *     iommu_hwpt_vtd_s1 and its parent. It maps nothing; the hardware walks the guest's tables
 *     through the parent (vtd_nested_walk()).
 *   - Per device (struct vtd_dev, dev->iommu_data->priv) the PASID table: which domain each
 *     PASID (IOMMU_NO_PASID = the RID's RID_PASID entry) points at. The 64-byte scalable-mode
 *     entry of C.8 is rebuilt from it on demand (vtd_dev_pasid_entry()), as hardware would read
 *     it: SSADE follows the parent's dirty tracking at the time of the read.
 *
 * Caching. The IOTLB model (iommu/iotlb.c) is the hardware's IOTLB: it caches combined
 * translations tagged by the domain's id (the DID). A nested domain's entries stay until the
 * user's IOMMU_HWPT_INVALIDATE covers them (or a change of the parent flushes the child), which
 * is the hardware's and the uAPI's contract: stale entries translate until invalidated. A
 * domain's last detach flushes its entries (the kernel's cache-tag removal), so a domain with
 * no attachment has nothing cached and its changes skip the invalidation.
 *
 * Page requests. vtd_prq_report() is the page request queue: it decodes a descriptor, answers
 * what the kernel's prq.c answers itself, and hands the rest to the core; page group responses
 * come back through page_response and are recorded as the hardware's descriptors.
 *
 * Invariants: a device's PASID table changes only under its group mutex (the core calls
 * attach_dev and set_dev_pasid with it held), and vtd_lock guards the lists read elsewhere; a
 * nested domain is on its parent's list from allocation to free, and holds the parent (iommufd
 * keeps the parent HWPT alive for as long as a nested one exists).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/queue.h>

#include "drivers/intel/vtd.h"
#include "iommu/iotlb.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "lib/lockdep.h"
#include "uiommu/iommufd.h"

const struct vtd_features vtd_default_features = {
	.five_level = false,
	.nest = true,
	.fs5lp = true,
	.fs1gp = true,
	.ssads = true,
	.srs = true,
	.eafs = true,
	.prs = true,
	.pasid_bits = 20,
};

struct vtd_instance {
	struct vtd_features f;
	uint64_t cap, ecap;
	struct iopf_queue *iopfq;   /* the page request queue's; NULL without PRS */
};

struct vtd_nested;

struct vtd_paging {
	struct iommu_domain domain;
	struct vtd_ss ss;
	bool nest_parent;
	bool dirty_capable;
	LIST_HEAD(, vtd_nested) children; /* vtd_lock */
	atomic_uint attached;       /* RID and PASID entries pointing here; changed under vtd_lock */
};

struct vtd_nested {
	struct iommu_domain domain;
	struct vtd_paging *parent;
	struct iommu_hwpt_vtd_s1 data;
	struct vtd_s1_cfg s1;       /* derived from @data and the instance at allocation */
	LIST_ENTRY(vtd_nested) link; /* in parent->children; vtd_lock */
	atomic_uint attached;       /* as vtd_paging's */
};

struct vtd_pasid_slot {
	uint32_t pasid;
	struct iommu_domain *domain;
	LIST_ENTRY(vtd_pasid_slot) link;
};

struct vtd_dev {
	struct device *dev;
	struct vtd_instance *inst;
	struct iommu_group *group;              /* what device_group gave it */
	/*
	 * The RID's entry (RID_PASID) is embedded: an attach of the RID must not allocate, the
	 * core's must-succeed paths attach it. NULL: not present (blocked). Group mutex to
	 * change, vtd_lock to read.
	 */
	struct iommu_domain *rid_domain;
	LIST_HEAD(, vtd_pasid_slot) pasids;     /* group mutex to change, vtd_lock to read */
	unsigned int responses;                 /* vtd_lock */
	uint64_t last_response[4];              /* vtd_lock */
	LIST_ENTRY(vtd_dev) link;               /* vtd_devs; vtd_lock */
};

/*
 * Protects vtd_devs, every paging domain's children, the PASID tables' lists (readers outside
 * the group mutex) and the page-response records. Lock order: group->mutex -> vtd_lock ->
 * the IOTLB's locks; taken under the core's fault-data lock by page_response (a leaf there).
 */
UIOMMU_MUTEX_DEFINE(vtd_lock);
static LIST_HEAD(, vtd_dev) vtd_devs = LIST_HEAD_INITIALIZER(vtd_devs);

static const struct iommu_domain_ops vtd_paging_ops;
static const struct iommu_domain_ops vtd_nested_ops;
static const struct iommu_dirty_ops vtd_dirty_ops;
static struct iommu_domain vtd_blocked_domain;
static struct iommu_domain vtd_identity_domain;

static struct vtd_paging *to_paging(struct iommu_domain *domain)
{
	return domain && domain->ops == &vtd_paging_ops ?
		       container_of(domain, struct vtd_paging, domain) : NULL;
}

static struct vtd_nested *to_nested(struct iommu_domain *domain)
{
	return domain && domain->ops == &vtd_nested_ops ?
		       container_of(domain, struct vtd_nested, domain) : NULL;
}

static struct vtd_dev *dev_to_vtd(struct device *dev)
{
	return dev->iommu_data ? dev->iommu_data->priv : NULL;
}

static struct vtd_instance *vtd_inst(const struct iommu_device *iommu)
{
	return iommu->priv;
}

bool vtd_domain_is_nested(const struct iommu_domain *domain)
{
	return to_nested((struct iommu_domain *)domain) != NULL;
}

struct vtd_ss *vtd_domain_ss(struct iommu_domain *domain)
{
	struct vtd_paging *p = to_paging(domain);

	return p ? &p->ss : NULL;
}

/* ---- registers -------------------------------------------------------------------------------- */

static void vtd_regs_compute(struct vtd_instance *inst)
{
	const struct vtd_features *f = &inst->f;
	uint64_t cap, ecap;

	/* 2^16 domain IDs, 4-level SAGAW (and 5-level), MGAW, both large sizes, PSI with 18. */
	cap = (UINT64_C(6) << VTD_CAP_ND_SHIFT) | VTD_CAP_SAGAW_4L | VTD_CAP_SSLPS_2M |
	      VTD_CAP_SSLPS_1G | VTD_CAP_PSI | (UINT64_C(18) << VTD_CAP_MAMV_SHIFT);
	cap |= (uint64_t)(f->five_level ? 56 : 47) << VTD_CAP_MGAW_SHIFT;
	if (f->five_level)
		cap |= VTD_CAP_SAGAW_5L;
	if (f->fs1gp)
		cap |= VTD_CAP_FS1GP;
	if (f->fs5lp)
		cap |= VTD_CAP_FS5LP;

	ecap = VTD_ECAP_C | VTD_ECAP_QI | VTD_ECAP_DT | VTD_ECAP_SC | VTD_ECAP_ERS |
	       VTD_ECAP_SMTS | VTD_ECAP_SSTS | VTD_ECAP_FSTS;
	if (f->nest)
		ecap |= VTD_ECAP_NEST;
	if (f->prs)
		ecap |= VTD_ECAP_PRS | VTD_ECAP_PDS;
	if (f->srs)
		ecap |= VTD_ECAP_SRS;
	if (f->eafs)
		ecap |= VTD_ECAP_EAFS;
	if (f->ssads)
		ecap |= VTD_ECAP_SSADS | VTD_ECAP_SMPWC;
	if (f->pasid_bits)
		ecap |= VTD_ECAP_PASID | ((uint64_t)(f->pasid_bits - 1) << VTD_ECAP_PSS_SHIFT);
	inst->cap = cap;
	inst->ecap = ecap;
}

void vtd_iommu_regs(const struct iommu_device *iommu, uint64_t *cap, uint64_t *ecap)
{
	*cap = vtd_inst(iommu)->cap;
	*ecap = vtd_inst(iommu)->ecap;
}

static void *vtd_hw_info(struct device *dev, uint32_t *length, uint32_t *type)
{
	struct vtd_instance *inst = vtd_inst(dev->iommu);
	struct iommu_hw_info_vtd *info;

	if (*type != IOMMU_HW_INFO_TYPE_DEFAULT && *type != IOMMU_HW_INFO_TYPE_INTEL_VTD)
		return ERR_PTR(-EOPNOTSUPP);
	info = uiommu_zalloc(sizeof(*info));
	if (!info)
		return ERR_PTR(-ENOMEM);
	/* The 7.2 driver sets the erratum flag on every part: no read-only nest-parent maps. */
	info->flags = IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17;
	info->cap_reg = inst->cap;
	info->ecap_reg = inst->ecap;
	*length = sizeof(*info);
	*type = IOMMU_HW_INFO_TYPE_INTEL_VTD;
	return info;
}

static bool vtd_capable(struct device *dev, enum iommu_cap cap)
{
	struct vtd_instance *inst = dev->iommu ? vtd_inst(dev->iommu) : NULL;

	if (!inst)
		return false;
	switch (cap) {
	case IOMMU_CAP_CACHE_COHERENCY:
	case IOMMU_CAP_ENFORCE_CACHE_COHERENCY:
		return true;
	case IOMMU_CAP_DEFERRED_FLUSH:
		return dev->iommu->deferred_flush;
	case IOMMU_CAP_DIRTY_TRACKING:
		return inst->f.ssads;
	case IOMMU_CAP_PCI_ATS_SUPPORTED:
		return dev->ats; /* ECAP.DT is always on */
	default:
		return false;
	}
}

/* ---- paging (second-stage) domains ----------------------------------------------------------- */

/* Can @inst's hardware use @p's table (intel's paging_domain_compatible())? */
static bool vtd_paging_compatible(const struct vtd_paging *p, const struct vtd_instance *inst)
{
	if (p->ss.levels == 5 && !inst->f.five_level)
		return false;
	if (p->dirty_capable && !inst->f.ssads)
		return false;
	return !p->nest_parent || inst->f.nest;
}

static struct iommu_domain *vtd_domain_alloc_paging_flags(struct device *dev, uint32_t flags,
							  const struct iommu_user_data *user_data)
{
	const uint32_t known = IOMMU_DOMAIN_ALLOC_NEST_PARENT | IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING |
			       IOMMU_DOMAIN_ALLOC_PASID;
	struct vtd_instance *inst = vtd_inst(dev->iommu);
	struct vtd_paging *p;
	int rc;

	if (user_data || (flags & ~known))
		return ERR_PTR(-EOPNOTSUPP);
	if ((flags & IOMMU_DOMAIN_ALLOC_NEST_PARENT) && !inst->f.nest)
		return ERR_PTR(-EOPNOTSUPP);
	if ((flags & IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING) && !inst->f.ssads)
		return ERR_PTR(-EOPNOTSUPP);
	p = uiommu_zalloc(sizeof(*p));
	if (!p)
		return ERR_PTR(-ENOMEM);
	rc = vtd_ss_init(&p->ss, inst->f.five_level ? 5 : 4);
	if (rc)
		goto err_free;
	p->nest_parent = flags & IOMMU_DOMAIN_ALLOC_NEST_PARENT;
	p->ss.no_readonly = p->nest_parent;
	p->dirty_capable = flags & IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING;
	LIST_INIT(&p->children);
	atomic_init(&p->attached, 0);
	p->domain.type = IOMMU_DOMAIN_UNMANAGED;
	p->domain.owner = &vtd_iommu_ops;
	p->domain.ops = &vtd_paging_ops;
	p->domain.dirty_ops = p->dirty_capable ? &vtd_dirty_ops : NULL;
	p->domain.pgsize_bitmap = VTD_PAGE_SIZE | VTD_SZ_2M | VTD_SZ_1G;
	p->domain.geometry.aperture_start = 0;
	p->domain.geometry.aperture_end = (UINT64_C(1) << p->ss.width) - 1;
	p->domain.geometry.force_aperture = true;
	return &p->domain;

err_free:
	uiommu_free(p);
	return ERR_PTR(rc);
}

static struct iommu_domain *vtd_domain_alloc_paging(struct device *dev)
{
	return vtd_domain_alloc_paging_flags(dev, 0, NULL);
}

static int vtd_map_pages(struct iommu_domain *domain, uint64_t iova, phys_addr_t paddr,
			 size_t pgsize, size_t pgcount, int prot, size_t *mapped)
{
	return vtd_ss_map(&to_paging(domain)->ss, iova, paddr, pgsize, pgcount, prot, mapped);
}

static size_t vtd_unmap_pages(struct iommu_domain *domain, uint64_t iova, size_t pgsize,
			      size_t pgcount, struct iommu_iotlb_gather *gather)
{
	size_t done = vtd_ss_unmap(&to_paging(domain)->ss, iova, pgsize, pgcount);

	iommu_iotlb_gather_add_range(gather, iova, done);
	return done;
}

/*
 * A second-stage change reaches every combined translation built on it: the children are
 * flushed domain-selectively, as the kernel does per nested DID (GPA ranges do not map back
 * to IOVAs).
 */
static void vtd_children_flush(struct vtd_paging *p)
{
	struct vtd_nested *n;

	uiommu_mutex_lock(&vtd_lock);
	LIST_FOREACH(n, &p->children, link)
		if (atomic_load(&n->attached))
			iotlb_inv_domain(&n->domain);
	uiommu_mutex_unlock(&vtd_lock);
}

/*
 * Does the IOTLB hold anything of @p? Not without an attachment (the last detach flushed it).
 * The fence orders the caller's table change before the count's load, against an attach
 * whose increment precedes the first fill (the group mutex orders that side).
 */
static bool vtd_paging_cached(struct vtd_paging *p)
{
	atomic_thread_fence(memory_order_seq_cst);
	return atomic_load(&p->attached) != 0;
}

static void vtd_iotlb_sync(struct iommu_domain *domain, struct iommu_iotlb_gather *gather)
{
	struct vtd_paging *p = to_paging(domain);

	if (gather->start > gather->end)
		return;
	if (vtd_paging_cached(p))
		iotlb_inv_range(domain, gather->start, gather->end - gather->start + 1);
	if (p->nest_parent)
		vtd_children_flush(p);
}

static void vtd_flush_iotlb_all(struct iommu_domain *domain)
{
	struct vtd_paging *p = to_paging(domain);

	if (vtd_paging_cached(p))
		iotlb_inv_domain(domain);
	if (p->nest_parent)
		vtd_children_flush(p);
}

static phys_addr_t vtd_iova_to_phys(struct iommu_domain *domain, uint64_t iova)
{
	struct vtd_paging *p = to_paging(domain);
	struct vtd_ss_leaf leaf;
	int rc;

	/* A software lookup (no access): it leaves A/D alone. */
	rc = vtd_ss_walk(&p->ss, iova, 0, &leaf);
	return rc ? 0 : leaf.phys;
}

static void vtd_paging_free(struct iommu_domain *domain)
{
	struct vtd_paging *p = to_paging(domain);

	WARN_ON(!LIST_EMPTY(&p->children));
	vtd_ss_destroy(&p->ss);
	uiommu_free(p);
}

static int vtd_set_dirty_tracking(struct iommu_domain *domain, bool enabled)
{
	struct vtd_paging *p = to_paging(domain);
	struct iommu_dirty_bitmap none = { 0 };

	if (!p->dirty_capable)
		return -EINVAL;
	if (enabled == atomic_load(&p->ss.ssade))
		return 0;
	/* Starting: what was dirty before is forgotten (the kernel clears the D bits). */
	if (enabled)
		vtd_ss_read_and_clear_dirty(&p->ss, 0, UINT64_C(1) << p->ss.width, false, &none);
	atomic_store(&p->ss.ssade, enabled);
	/* Cached entries were filled under the other SSADE: they must walk again. */
	vtd_flush_iotlb_all(domain);
	return 0;
}

static int vtd_read_and_clear_dirty(struct iommu_domain *domain, uint64_t iova, uint64_t size,
				    unsigned int flags, struct iommu_dirty_bitmap *dirty)
{
	struct vtd_paging *p = to_paging(domain);

	if (!atomic_load(&p->ss.ssade))
		return -EINVAL;
	vtd_ss_read_and_clear_dirty(&p->ss, iova, size, flags & IOMMU_DIRTY_NO_CLEAR, dirty);
	return 0;
}

static const struct iommu_dirty_ops vtd_dirty_ops = {
	.set_dirty_tracking = vtd_set_dirty_tracking,
	.read_and_clear_dirty = vtd_read_and_clear_dirty,
};

/* ---- nested (first-stage) domains ------------------------------------------------------------- */

struct iommu_domain *vtd_domain_alloc_nested(struct device *dev, struct iommu_domain *parent,
					     uint32_t flags,
					     const struct iommu_user_data *user_data)
{
	struct vtd_instance *inst = vtd_inst(dev->iommu);
	struct vtd_paging *p = to_paging(parent);
	struct vtd_nested *n;

	if (!inst->f.nest || (flags & ~IOMMU_DOMAIN_ALLOC_PASID))
		return ERR_PTR(-EOPNOTSUPP);
	/* The type is checked before the copy, and before the parent. */
	if (!user_data || user_data->type != IOMMU_HWPT_DATA_VTD_S1)
		return ERR_PTR(-EOPNOTSUPP);
	if (!p || !p->nest_parent)
		return ERR_PTR(-EINVAL);
	/* The 7.2 copy helper: anything but exactly the struct is EINVAL. */
	if (user_data->len != sizeof(struct iommu_hwpt_vtd_s1) || !user_data->data)
		return ERR_PTR(-EINVAL);
	n = uiommu_zalloc(sizeof(*n));
	if (!n)
		return ERR_PTR(-ENOMEM);
	memcpy(&n->data, user_data->data, sizeof(n->data));
	n->parent = p;
	atomic_init(&n->attached, 0);
	n->s1.pgtbl_gpa = n->data.pgtbl_addr & ~(VTD_PAGE_SIZE - 1);
	n->s1.levels = n->data.addr_width == 57 ? 5 : 4;
	n->s1.sre = n->data.flags & IOMMU_VTD_S1_SRE;
	/* WPE is meaningful only with SRE (C.8). */
	n->s1.wpe = n->s1.sre && (n->data.flags & IOMMU_VTD_S1_WPE);
	n->s1.eafe = n->data.flags & IOMMU_VTD_S1_EAFE;
	n->s1.fs1gp = inst->f.fs1gp;
	n->s1.gpa_width = p->ss.width;
	n->domain.ops = &vtd_nested_ops;
	n->domain.pgsize_bitmap = VTD_PAGE_SIZE;
	__iommu_domain_init(&n->domain, IOMMU_DOMAIN_NESTED, &vtd_iommu_ops);

	uiommu_mutex_lock(&vtd_lock);
	LIST_INSERT_HEAD(&p->children, n, link);
	uiommu_mutex_unlock(&vtd_lock);
	return &n->domain;
}

static void vtd_nested_free(struct iommu_domain *domain)
{
	struct vtd_nested *n = to_nested(domain);

	uiommu_mutex_lock(&vtd_lock);
	LIST_REMOVE(n, link);
	uiommu_mutex_unlock(&vtd_lock);
	uiommu_free(n);
}

int vtd_domain_translate(struct iommu_domain *domain, uint64_t iova, unsigned int req,
			 struct vtd_xlate *x)
{
	struct vtd_nested *n = to_nested(domain);

	if (!n)
		return -EINVAL;
	return vtd_nested_walk(&n->s1, &n->parent->ss, iova, req, x);
}

/*
 * [addr, addr + npages pages) widened to the naturally aligned power-of-two block the
 * page-selective descriptor can name (C.9); false when that block reaches bit 63: PASID-wide.
 */
static bool vtd_inv_block(uint64_t addr, uint64_t npages, uint64_t *start, uint64_t *size)
{
	uint64_t last, bits;
	unsigned int order = 0;

	if (!npages || npages > (UINT64_MAX >> VTD_PAGE_SHIFT))
		return false;
	last = addr + (npages << VTD_PAGE_SHIFT) - 1;
	if (last < addr)
		return false;
	bits = addr ^ last;
	while (order < 64 && (bits >> order))
		order++;
	if (order >= 63)
		return false;
	*start = addr & ~((UINT64_C(1) << order) - 1);
	*size = UINT64_C(1) << order;
	if (*size < VTD_PAGE_SIZE)
		*size = VTD_PAGE_SIZE;
	return true;
}

/* One iommu_hwpt_vtd_s1_invalidate, copied in by the core's loop. */
static int vtd_invalidate_one(void *arg, const void *entry)
{
	const struct iommu_hwpt_vtd_s1_invalidate *inv = entry;
	struct iommu_domain *domain = arg;
	uint64_t start, size;

	if ((inv->flags & ~IOMMU_VTD_INV_FLAGS_LEAF) || inv->__reserved)
		return -EOPNOTSUPP;
	if (!IS_ALIGNED(inv->addr, VTD_PAGE_SIZE) || (inv->npages == UINT64_MAX && inv->addr))
		return -EINVAL;
	/* LEAF keeps paging-structure caches; the model caches only combined leaves. */
	if (vtd_inv_block(inv->addr, inv->npages, &start, &size))
		iotlb_inv_range(domain, start, size);
	else if (inv->npages)
		iotlb_inv_domain(domain);
	return 0;
}

static int vtd_cache_invalidate_user(struct iommu_domain *domain,
				     struct iommu_user_data_array *array)
{
	struct iommu_hwpt_vtd_s1_invalidate inv;

	if (array->type != IOMMU_HWPT_INVALIDATE_DATA_VTD_S1) {
		array->entry_num = 0;
		return -EINVAL;
	}
	/* The 7.2 per-entry copy: an entry_len other than the struct's is EINVAL. */
	return iommu_user_array_for_each(array, &inv, sizeof(inv), sizeof(inv), true,
					 vtd_invalidate_one, domain);
}

/* ---- attach and the PASID table --------------------------------------------------------------- */

/* intel's nested attach checks, in the kernel's order (A.7). */
static int vtd_nested_check(struct vtd_nested *n, struct device *dev)
{
	struct vtd_instance *inst = vtd_inst(dev->iommu);

	if (!vtd_paging_compatible(n->parent, inst))
		return -EINVAL;
	if (n->domain.iopf_handler && !(dev->pri && inst->f.prs))
		return -ENODEV;
	if (n->data.addr_width != 48 && n->data.addr_width != 57)
		return -EINVAL;
	if (n->data.addr_width == 57 && !inst->f.fs5lp)
		return -EINVAL;
	if ((n->data.flags & IOMMU_VTD_S1_SRE) && !inst->f.srs)
		return -EINVAL;
	if ((n->data.flags & IOMMU_VTD_S1_EAFE) && !inst->f.eafs)
		return -EINVAL;
	return 0;
}

static int vtd_domain_check(struct iommu_domain *domain, struct device *dev)
{
	struct vtd_paging *p = to_paging(domain);
	struct vtd_nested *n = to_nested(domain);

	if (domain == &vtd_identity_domain || domain == &vtd_blocked_domain)
		return 0;
	if (p)
		return vtd_paging_compatible(p, vtd_inst(dev->iommu)) ? 0 : -EINVAL;
	if (n)
		return vtd_nested_check(n, dev);
	return -EINVAL; /* another driver's domain */
}

static struct vtd_pasid_slot *vtd_pasid_find(struct vtd_dev *vdev, uint32_t pasid)
{
	struct vtd_pasid_slot *s;

	LIST_FOREACH(s, &vdev->pasids, link)
		if (s->pasid == pasid)
			return s;
	return NULL;
}

/* Points (@vdev, @pasid) at @domain; the blocked domain clears the entry. Group mutex held. */
/* The attachment count of one of our translating domains, NULL for the static ones. */
static atomic_uint *vtd_domain_attached(struct iommu_domain *domain)
{
	struct vtd_paging *p = to_paging(domain);
	struct vtd_nested *n = to_nested(domain);

	return p ? &p->attached : n ? &n->attached : NULL;
}

/*
 * Moves one attachment from @old to @new (either may be NULL or a static domain). A domain's
 * last detach flushes what the IOTLB holds of it, as the kernel's cache-tag removal does:
 * from then on a domain without attachments has nothing cached, and its changes need no
 * invalidation. Group mutex held (no DMA through @old can run); vtd_lock is taken here.
 */
static void vtd_attached_move(struct iommu_domain *old, struct iommu_domain *new)
{
	atomic_uint *from = old ? vtd_domain_attached(old) : NULL;
	atomic_uint *to = new ? vtd_domain_attached(new) : NULL;
	bool last = false;

	if (old == new)
		return;
	uiommu_mutex_lock(&vtd_lock);
	if (to)
		atomic_fetch_add(to, 1);
	if (from)
		last = atomic_fetch_sub(from, 1) == 1;
	uiommu_mutex_unlock(&vtd_lock);
	if (last)
		iotlb_inv_domain(old);
}

/* Points (@vdev, @pasid) at @domain; the blocked domain clears the entry. Group mutex held. */
static int vtd_pasid_set(struct vtd_dev *vdev, uint32_t pasid, struct iommu_domain *domain)
{
	struct iommu_domain *new = domain == &vtd_blocked_domain ? NULL : domain, *old;
	struct vtd_pasid_slot *s = NULL;

	if (pasid == IOMMU_NO_PASID) {
		old = vdev->rid_domain;
		uiommu_mutex_lock(&vtd_lock);
		vdev->rid_domain = new;
		uiommu_mutex_unlock(&vtd_lock);
		vtd_attached_move(old, new);
		return 0;
	}
	s = vtd_pasid_find(vdev, pasid);
	old = s ? s->domain : NULL;
	if (!s && new) {
		s = uiommu_zalloc(sizeof(*s));
		if (!s)
			return -ENOMEM;
		s->pasid = pasid;
		uiommu_mutex_lock(&vtd_lock);
		LIST_INSERT_HEAD(&vdev->pasids, s, link);
		uiommu_mutex_unlock(&vtd_lock);
	}
	if (s) {
		uiommu_mutex_lock(&vtd_lock);
		s->domain = new;
		if (!new)
			LIST_REMOVE(s, link);
		uiommu_mutex_unlock(&vtd_lock);
		if (!new)
			uiommu_free(s);
	}
	vtd_attached_move(old, new);
	return 0;
}

static int vtd_attach_dev(struct iommu_domain *domain, struct device *dev,
			  struct iommu_domain *old)
{
	struct vtd_dev *vdev = dev_to_vtd(dev);
	int rc;

	(void)old;
	if (WARN_ON(!vdev))
		return -ENODEV;
	rc = vtd_domain_check(domain, dev);
	if (rc)
		return rc;
	return vtd_pasid_set(vdev, IOMMU_NO_PASID, domain);
}

static int vtd_set_dev_pasid(struct iommu_domain *domain, struct device *dev, uint32_t pasid,
			     struct iommu_domain *old)
{
	struct vtd_instance *inst = vtd_inst(dev->iommu);
	struct vtd_dev *vdev = dev_to_vtd(dev);
	int rc;

	(void)old;
	iommu_group_mutex_assert(dev);
	if (WARN_ON(!vdev))
		return -ENODEV;
	if (domain != &vtd_blocked_domain) {
		if (!inst->f.pasid_bits)
			return -EOPNOTSUPP;
		rc = vtd_domain_check(domain, dev);
		if (rc)
			return rc;
	}
	return vtd_pasid_set(vdev, pasid, domain);
}

int vtd_dev_pasid_entry(struct device *dev, uint32_t pasid, uint64_t val[8])
{
	struct vtd_dev *vdev = dev_to_vtd(dev);
	struct iommu_domain *domain = NULL;
	struct vtd_pasid_slot *s;
	struct vtd_paging *p;
	struct vtd_nested *n;
	int rc = 0;

	memset(val, 0, 8 * sizeof(*val));
	if (!vdev)
		return -ENOENT;
	uiommu_mutex_lock(&vtd_lock);
	if (pasid == IOMMU_NO_PASID) {
		domain = vdev->rid_domain;
	} else {
		s = vtd_pasid_find(vdev, pasid);
		domain = s ? s->domain : NULL;
	}
	if (!domain) {
		rc = -ENOENT;
		goto out;
	}
	n = to_nested(domain);
	p = n ? n->parent : to_paging(domain);
	val[0] = 1; /* P; FPD = 0 */
	if (!p) {
		val[0] |= UINT64_C(4) << 6; /* PGTT pass-through */
		goto out;
	}
	val[0] |= (uint64_t)(p->ss.levels - 2) << 2;                 /* AW */
	val[0] |= (uint64_t)(n ? 3 : 2) << 6;                        /* PGTT nested / SS */
	if (atomic_load(&p->ss.ssade))
		val[0] |= UINT64_C(1) << 9;                           /* SSADE */
	val[0] |= (uint64_t)(uintptr_t)p->ss.root & VTD_ADDR_MASK;   /* SSPTPTR */
	val[1] = (domain->id & 0xffff) | (UINT64_C(1) << 23);     /* DID, PWSNP */
	if (n) {
		val[2] = (n->s1.sre ? 1 : 0) | (n->s1.levels == 5 ? UINT64_C(1) << 2 : 0) |
			 (n->s1.wpe ? UINT64_C(1) << 4 : 0) | (n->s1.eafe ? UINT64_C(1) << 7 : 0);
		val[2] |= n->s1.pgtbl_gpa & ~(VTD_PAGE_SIZE - 1);          /* FSPTPTR */
	}
out:
	uiommu_mutex_unlock(&vtd_lock);
	return rc;
}

static const struct iommu_domain_ops vtd_paging_ops = {
	.attach_dev = vtd_attach_dev,
	.map_pages = vtd_map_pages,
	.unmap_pages = vtd_unmap_pages,
	.flush_iotlb_all = vtd_flush_iotlb_all,
	.iotlb_sync = vtd_iotlb_sync,
	.iova_to_phys = vtd_iova_to_phys,
	.set_dev_pasid = vtd_set_dev_pasid,
	.free = vtd_paging_free,
};

static const struct iommu_domain_ops vtd_nested_ops = {
	.attach_dev = vtd_attach_dev,
	.set_dev_pasid = vtd_set_dev_pasid,
	.cache_invalidate_user = vtd_cache_invalidate_user,
	.free = vtd_nested_free,
};

static const struct iommu_domain_ops vtd_static_ops = {
	.attach_dev = vtd_attach_dev,
	.set_dev_pasid = vtd_set_dev_pasid,
};

static struct iommu_domain vtd_blocked_domain = {
	.type = IOMMU_DOMAIN_BLOCKED,
	.ops = &vtd_static_ops,
};

static struct iommu_domain vtd_identity_domain = {
	.type = IOMMU_DOMAIN_IDENTITY,
	.ops = &vtd_static_ops,
};

/* ---- page requests ---------------------------------------------------------------------------- */

/* The requester ID of a "DDDD:BB:DD.F" name. */
static uint16_t vtd_dev_rid(const struct device *dev)
{
	unsigned int dom, bus, slot, fn;

	if (sscanf(dev->name, "%x:%x:%x.%x", &dom, &bus, &slot, &fn) != 4)
		return 0;
	return (uint16_t)((bus << 8) | (slot << 3) | fn);
}

static void vtd_response_record(struct device *dev, const uint64_t desc[4])
{
	struct vtd_dev *vdev = dev_to_vtd(dev);

	if (!vdev)
		return;
	uiommu_mutex_lock(&vtd_lock);
	vdev->responses++;
	memcpy(vdev->last_response, desc, sizeof(vdev->last_response));
	uiommu_mutex_unlock(&vtd_lock);
}

/* A Page Group Response Descriptor (queued-invalidation type 9). */
static void vtd_response_build(uint64_t desc[4], bool pasid_present, unsigned int code,
			       uint16_t rid, uint32_t pasid, uint32_t prgi)
{
	desc[0] = 9 | (pasid_present ? UINT64_C(1) << 4 : 0) | ((uint64_t)(code & 0xf) << 12) |
		  ((uint64_t)rid << 16) | ((uint64_t)(pasid & 0xfffff) << 32);
	desc[1] = (uint64_t)(prgi & 0x1ff) << 3;
	desc[2] = desc[3] = 0;
}

int vtd_prq_report(struct device *dev, const uint64_t desc[4])
{
	bool pasid_present = desc[0] & (UINT64_C(1) << 8);
	bool exe = desc[0] & (UINT64_C(1) << 52), pm = desc[0] & (UINT64_C(1) << 53);
	bool rd = desc[1] & 1, wr = desc[1] & 2, lpig = desc[1] & 4;
	uint16_t rid = (uint16_t)(desc[0] >> 16);
	uint32_t pasid = (uint32_t)(desc[0] >> 32) & 0xfffff;
	uint32_t prgi = (uint32_t)(desc[1] >> 3) & 0x1ff;
	uint64_t addr = desc[1] & ~(VTD_PAGE_SIZE - 1), resp[4];
	struct iopf_fault evt = { 0 };

	/* The checks prq.c answers INVALID to without asking anyone. */
	if (((addr >> 47) && (addr >> 47) != (UINT64_MAX >> 47)) || (pm && (rd || wr)) ||
	    (exe && rd) || rid != vtd_dev_rid(dev) || !dev_to_vtd(dev)) {
		if (lpig) {
			vtd_response_build(resp, pasid_present, IOMMU_PAGE_RESP_INVALID, rid,
					   pasid, prgi);
			vtd_response_record(dev, resp);
		}
		return 0;
	}
	if (lpig && !rd && !wr)
		return 0; /* a stop marker */
	evt.fault.type = IOMMU_FAULT_PAGE_REQ;
	evt.fault.prm.addr = addr;
	evt.fault.prm.grpid = prgi;
	evt.fault.prm.pasid = pasid;
	if (pasid_present)
		evt.fault.prm.flags |= IOMMU_FAULT_PAGE_REQUEST_PASID_VALID |
				       IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID;
	if (lpig)
		evt.fault.prm.flags |= IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE;
	evt.fault.prm.perm = (rd ? IOMMU_FAULT_PERM_READ : 0) | (wr ? IOMMU_FAULT_PERM_WRITE : 0) |
			     (exe ? IOMMU_FAULT_PERM_EXEC : 0) | (pm ? IOMMU_FAULT_PERM_PRIV : 0);
	evt.fault.prm.private_data[0] = desc[2];
	evt.fault.prm.private_data[1] = desc[3];
	return iommu_report_device_fault(dev, &evt);
}

static void vtd_page_response(struct device *dev, struct iopf_fault *evt,
			      struct iommu_page_response *msg)
{
	bool pasid_present = evt->fault.prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID;
	unsigned int code = msg->code == IOMMU_PAGE_RESP_FAILURE ? 0xf : msg->code;
	uint64_t desc[4];

	vtd_response_build(desc, pasid_present, code, vtd_dev_rid(dev), msg->pasid, msg->grpid);
	vtd_response_record(dev, desc);
}

unsigned int vtd_dev_page_responses(struct device *dev, uint64_t desc[4])
{
	struct vtd_dev *vdev = dev_to_vtd(dev);
	unsigned int count = 0;

	uiommu_mutex_lock(&vtd_lock);
	if (vdev) {
		count = vdev->responses;
		if (desc)
			memcpy(desc, vdev->last_response, sizeof(vdev->last_response));
	}
	uiommu_mutex_unlock(&vtd_lock);
	return count;
}

/* ---- devices ---------------------------------------------------------------------------------- */

static struct iommu_device *vtd_probe_device(struct device *dev)
{
	struct vtd_instance *inst;
	struct vtd_dev *vdev;
	int rc;

	if (!dev->iommu || dev->iommu->ops != &vtd_iommu_ops)
		return ERR_PTR(-ENODEV);
	if (WARN_ON(dev->iommu_data->priv))
		return ERR_PTR(-EBUSY);
	inst = vtd_inst(dev->iommu);
	vdev = uiommu_zalloc(sizeof(*vdev));
	if (!vdev)
		return ERR_PTR(-ENOMEM);
	vdev->dev = dev;
	vdev->inst = inst;
	LIST_INIT(&vdev->pasids);
	if (dev->pri && inst->iopfq) {
		rc = iopf_queue_add_device(inst->iopfq, dev);
		if (rc)
			goto err_free;
	}
	uiommu_mutex_lock(&vtd_lock);
	LIST_INSERT_HEAD(&vtd_devs, vdev, link);
	uiommu_mutex_unlock(&vtd_lock);
	dev->iommu_data->priv = vdev;
	return dev->iommu;

err_free:
	uiommu_free(vdev);
	return ERR_PTR(rc);
}

static void vtd_release_device(struct device *dev)
{
	struct vtd_dev *vdev = dev_to_vtd(dev);
	struct vtd_pasid_slot *s;

	if (WARN_ON(!vdev))
		return;
	if (dev->pri && vdev->inst->iopfq && iopf_dev_fault_param_users(dev) > 0)
		iopf_queue_remove_device(vdev->inst->iopfq, dev);
	/*
	 * The entries go without their domains' attachment counts: those domains may be freed
	 * already (a group's default domain goes after its last device). A count left too high
	 * only keeps its domain's invalidations on, never skips one.
	 */
	uiommu_mutex_lock(&vtd_lock);
	LIST_REMOVE(vdev, link);
	while ((s = LIST_FIRST(&vdev->pasids))) {
		LIST_REMOVE(s, link);
		uiommu_free(s);
	}
	uiommu_mutex_unlock(&vtd_lock);
	dev->iommu_data->priv = NULL;
	uiommu_free(vdev);
}

/*
 * Devices with the same group key behind the same instance share a group (no ACS between
 * them); the group lives while a member holds it, and every member is on vtd_devs.
 */
static struct iommu_group *vtd_device_group(struct device *dev)
{
	struct vtd_dev *vdev = dev_to_vtd(dev), *other;
	struct iommu_group *group = NULL;

	if (dev->group_key[0]) {
		uiommu_mutex_lock(&vtd_lock);
		LIST_FOREACH(other, &vtd_devs, link) {
			if (other != vdev && other->group && other->dev->iommu == dev->iommu &&
			    !strcmp(other->dev->group_key, dev->group_key)) {
				group = iommu_group_ref_get(other->group);
				break;
			}
		}
		uiommu_mutex_unlock(&vtd_lock);
	}
	if (!group)
		group = iommu_group_alloc();
	if (!IS_ERR(group)) {
		uiommu_mutex_lock(&vtd_lock);
		vdev->group = group;
		uiommu_mutex_unlock(&vtd_lock);
	}
	return group;
}

static int vtd_def_domain_type(struct device *dev)
{
	return dev->driver_pref;
}

/* The firmware's RMRRs (RESV_DIRECT), then the IOAPIC/MSI range, as intel-iommu lists them. */
static unsigned int vtd_get_resv_regions(struct device *dev, struct iommu_resv_region *regions,
					 unsigned int max)
{
	unsigned int n = dev->nr_resv < max ? dev->nr_resv : max;

	memcpy(regions, dev->resv, n * sizeof(*regions));
	if (dev->iommu->msi_window && n < max)
		regions[n++] = (struct iommu_resv_region){
			.start = VTD_MSI_WINDOW_START,
			.length = VTD_MSI_WINDOW_LENGTH,
			.prot = IOMMU_WRITE | IOMMU_MMIO,
			.type = IOMMU_RESV_MSI,
		};
	return n;
}

const struct iommu_ops vtd_iommu_ops = {
	.name = "intel-iommu",
	.capable = vtd_capable,
	.domain_alloc_paging = vtd_domain_alloc_paging,
	.probe_device = vtd_probe_device,
	.release_device = vtd_release_device,
	.device_group = vtd_device_group,
	.def_domain_type = vtd_def_domain_type,
	.get_resv_regions = vtd_get_resv_regions,
	.domain_alloc_paging_flags = vtd_domain_alloc_paging_flags,
	.hw_info = vtd_hw_info,
	.page_response = vtd_page_response,
	.domain_alloc_nested = vtd_domain_alloc_nested,
	.identity_domain = &vtd_identity_domain,
	.blocked_domain = &vtd_blocked_domain,
};

/* ---- instances -------------------------------------------------------------------------------- */

/*
 * The hardware's walk on an IOTLB miss: a user request (the DMA engine's kind) for @access.
 * A refused write still returns the translation with its rights, so the caller can tell a
 * permission fault from a missing page.
 */
static phys_addr_t vtd_iotlb_walk(struct iommu_domain *domain, uint64_t iova, int access,
				  int *prot)
{
	struct vtd_paging *p = to_paging(domain);
	struct vtd_ss_leaf leaf;
	struct vtd_xlate x;
	int rc;

	*prot = 0;
	if (p) {
		rc = vtd_ss_walk(&p->ss, iova, access & (IOMMU_READ | IOMMU_WRITE), &leaf);
		if (rc == -ENOENT)
			return 0;
		*prot = leaf.prot | (leaf.clean ? IOTLB_PROT_CLEAN : 0);
		return leaf.phys;
	}
	rc = vtd_domain_translate(domain, iova, (access & IOMMU_WRITE) ? VTD_REQ_WRITE : 0, &x);
	if (rc && (access & IOMMU_WRITE) && (x.reason == VTD_FS_WRITE || x.reason == VTD_SS_PERM))
		rc = vtd_domain_translate(domain, iova, 0, &x);
	if (rc)
		return 0;
	*prot = x.prot | (x.clean ? IOTLB_PROT_CLEAN : 0);
	return x.phys;
}

static pthread_once_t vtd_walker_once = PTHREAD_ONCE_INIT;
static int vtd_walker_err;

static void vtd_register_walker(void)
{
	vtd_walker_err = iotlb_register_walker(&vtd_iommu_ops, vtd_iotlb_walk);
}

int vtd_iommu_register(struct iommu_device *iommu, const struct vtd_features *features)
{
	struct vtd_instance *inst;
	int rc;

	pthread_once(&vtd_walker_once, vtd_register_walker);
	if (vtd_walker_err)
		return vtd_walker_err;
	if (features->pasid_bits > 20)
		return -EINVAL;
	inst = uiommu_zalloc(sizeof(*inst));
	if (!inst)
		return -ENOMEM;
	inst->f = *features;
	vtd_regs_compute(inst);
	if (inst->f.prs) {
		inst->iopfq = iopf_queue_alloc(iommu->name);
		if (!inst->iopfq) {
			rc = -ENOMEM;
			goto err_free;
		}
	}
	iommu->priv = inst;
	iommu->max_pasids = inst->f.pasid_bits ? UINT32_C(1) << inst->f.pasid_bits : 0;
	iommu->dirty_tracking = inst->f.ssads;
	rc = iommu_device_register(iommu, &vtd_iommu_ops);
	if (rc)
		goto err_queue;
	return 0;

err_queue:
	iommu->priv = NULL;
	iopf_queue_free(inst->iopfq);
err_free:
	uiommu_free(inst);
	return rc;
}

void vtd_iommu_unregister(struct iommu_device *iommu)
{
	struct vtd_instance *inst = vtd_inst(iommu);

	iommu_device_unregister(iommu);
	if (inst->iopfq)
		iopf_queue_free(inst->iopfq);
	uiommu_free(inst);
	iommu->priv = NULL;
}

bool vtd_iommu_is_instance(const struct iommu_device *iommu)
{
	return iommu && iommu->ops == &vtd_iommu_ops;
}
