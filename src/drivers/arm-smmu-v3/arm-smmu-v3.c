// SPDX-License-Identifier: MIT
/*
 * The ARM SMMUv3 model (arm-smmu-v3.h has the API, ../shared/spec/hw-iommus.md the formats).
 *
 * Data model.
 *  - An instance (struct arm_smmu_device) has fixed ID registers built from its features, a
 *    list of masters, a VMID allocator, and one TLB.
 *  - A stage-2 domain owns an LPAE table (arm-lpae.c) and a VMID. Made with NEST_PARENT it can
 *    carry vSMMUs; a vSMMU (the vIOMMU) tags everything the guest's stage 1 caches with its
 *    parent's VMID, and maps vSIDs to masters (its vDEVICEs).
 *  - A nested domain is a validated vSTE (DW0, DW1) of a vSMMU. A master attached to it
 *    translates as an SMMU with STE Config=7 would: the vSTE's S1ContextPtr (an IPA) to the CD,
 *    through a linear or 2-level CD table; the CD's TTB0 (an IPA) to the guest's stage-1 tables
 *    at the CD's granule; every table fetch and the final output address through the parent's
 *    stage 2; AP/XN and the access flag checked, HA/HD updates made in place (a compare-and-
 *    exchange on guest memory, which needs stage-2 write permission on that table page).
 *
 * Caches, the reason invalidation commands mean anything:
 *  - the TLB holds combined stage-1+2 translations per 4 KiB input page, tagged (VMID, ASID)
 *    or (VMID, global) for nG=0 leaves, with the stage-1 leaf's span so that a TLBI by VA drops
 *    every splinter of a stage-1 block. An entry is used, once filled, whatever the guest or
 *    the host does to the tables, until a TLBI_NH_* (or TLBI_NSNH_ALL) names it, or the parent
 *    stage 2 unmaps (the host's own TLBI_S12_VMALL);
 *  - sets of their own (after the TLB's) keep stage-2 translations (IPA page -> PA page) met
 *    by walks, the stage-2 walk cache of an SMMU: table fetches and outputs of later walks use
 *    them. Only the parent's own invalidation (its unmap, flush or free: the host's
 *    TLBI_S12_VMALL) drops them;
 *  - the TLB's sets also keep stage-1 walks: (VMID, ASID, VA range of a last-level table) ->
 *    that table's IPA and the table restrictions above it, so a miss reads one descriptor.
 *    TLBI_NH_ALL/ASID drop them, and VA TLBIs that meet them unless Leaf=1 (hardware keeps
 *    walk caches over leaf-only invalidations);
 *  - each master caches the CDs it fetched, per SubstreamID; CFGI_CD and CFGI_CD_ALL drop them,
 *    and so does an attach (the host's CFGI_STE).
 * Stage-2-only translations of paging domains go through the core's IOTLB model; a vSTE
 * bypass uses the stage-2 walk cache.
 *
 * Lock-free lookups. A TLB set and a CD slot are each guarded by a sequence count: a writer
 * makes the count odd while it changes the entries (a TLB set's writers take it odd with a
 * compare-and-exchange, which is how they exclude each other; CD slots' writers hold
 * smmu->lock); a reader retries while the count is odd or changed under it. A fill remembers
 * the TLB's generation from before its walk and installs nothing if an invalidation ran
 * meanwhile (its walk may have read what the invalidation was for), and gives up on a set
 * another writer holds; the walk's result is still used once, as an in-flight transaction may.
 *
 * Locks, outermost first: smmu->lock (masters list, VMIDs, vSMMUs' vDEVICE lists, the masters'
 * attachments and CD caches' writers) -> smmu->tlb_lock (serialises invalidations, which then
 * take each set as its writer). A translation takes no lock on a TLB hit, and on a miss only
 * smmu->lock to cache a CD it fetched.
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/queue.h>

#include "drivers/arm-smmu-v3/arm-smmu-v3.h"
#include "iommu/iotlb.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "lib/lockdep.h"
#include "mm/mm.h"

#define TLB_INDEX_BITS 8u
#define TLB_SETS (1u << TLB_INDEX_BITS)
#define WC_SETS TLB_SETS   /* the stage-2 walk cache: its sets follow the TLB's */
#define TLB_WAYS 3u     /* what fits one cache line with its count */
#define CD_SLOTS 16u

/*
 * A way's key, the whole tag in one word, so that one compare decides a way: the kind
 * (TLB_TAG_*), the VMID, the ASID (0 for global and stage-2 entries) and the input page
 * without its low TLB_INDEX_BITS, which the set's index holds (the index is those bits mixed
 * with the VMID, and the key holds the VMID: tlb_set_at()). An empty way's key is 0.
 */
#define TLB_TAG_VALID ARM_SMMU_BIT(63)
#define TLB_TAG_GLOBAL ARM_SMMU_BIT(62)
#define TLB_TAG_S2 ARM_SMMU_BIT(61)  /* a stage-2 translation, IPA page -> PA page */
/* A stage-1 walk: (ASID, VA range of a last-level table) -> that table's IPA, restrictions. */
#define TLB_TAG_WALK ARM_SMMU_BIT(60)
#define TLB_KEY_VMID_SHIFT 44
#define TLB_KEY_ASID_SHIFT 28
#define TLB_KEY_ASID_MASK (UINT64_C(0xffff) << TLB_KEY_ASID_SHIFT)
#define TLB_KEY_PAGE_MASK ((UINT64_C(1) << 36) - 1)   /* 48-bit input addresses */
_Static_assert(36 - TLB_INDEX_BITS <= TLB_KEY_ASID_SHIFT, "the page fits under the ASID");

/*
 * A way's output word: the output page, and in the low bits the allow bits a hit may serve
 * without a walk (a stage-1 entry's allow bits, below; a stage-1 walk's table restrictions; a
 * stage-2 entry's IOMMU_READ | IOMMU_WRITE), stored inverted: then "found, and allows every
 * bit of want" is one test, (word & (want | TLB_OUT_MISS)) == 0, where TLB_OUT_MISS, which no
 * stored word has, is what a lookup that found no way reads.
 */
#define TLB_OUT_MISS ARM_SMMU_BIT(11)
#define TLB_OUT_ALLOW UINT64_C(0x7ff)

/* A TLB entry as a walk makes it. */
struct tlb_entry {
	uint64_t key;        /* tlb_key() */
	uint64_t page;       /* input page number (IOVA, IPA, or a walk's range; 36 bits) */
	uint64_t phys;       /* output page address (a walk: the last-level table's IPA) */
	uint64_t s1_base;    /* the stage-1 leaf's (or walked range's) first input address */
	uint64_t s1_size;
	uint64_t allow;      /* TLB_OUT_ALLOW bits, not inverted */
};

/*
 * A stage-1 entry's allow bits: bit (access & (READ|WRITE|EXEC)) << (PRIV ? 3 : 0), one per
 * kind and privilege.
 */

/*
 * A set, in one cache line: the count, the ways' keys and output words. What only
 * invalidations read, the stage-1 spans, lives apart (struct tlb_span). Every field is read
 * with atomics under @seq.
 */
struct tlb_set {
	atomic_uint seq;
	uint16_t victim;     /* round-robin replacement; the set's writer */
	uint64_t key[TLB_WAYS];
	uint64_t out[TLB_WAYS];
} __attribute__((aligned(64)));

_Static_assert(sizeof(struct tlb_set) == 64, "a TLB set is one cache line");

static uint64_t tlb_key(uint64_t kind, uint16_t vmid, uint16_t asid, uint64_t page)
{
	_Static_assert(TLB_KEY_VMID_SHIFT == TLB_KEY_ASID_SHIFT + 16, "VMID and ASID adjacent");
	return kind | (uint64_t)((uint32_t)vmid << 16 | asid) << TLB_KEY_ASID_SHIFT |
	       (page & TLB_KEY_PAGE_MASK) >> TLB_INDEX_BITS;
}

static uint16_t tlb_key_vmid(uint64_t key)
{
	return (uint16_t)(key >> TLB_KEY_VMID_SHIFT);
}

static uint16_t tlb_key_asid(uint64_t key)
{
	return (uint16_t)(key >> TLB_KEY_ASID_SHIFT);
}

/* The stage-1 leaf spans of a set's ways (VA invalidations); under the set's count. */
struct tlb_span {
	uint64_t s1_base[TLB_WAYS], s1_size[TLB_WAYS];
};

struct cd_slot {
	atomic_uint seq;
	uint64_t valid;      /* 1 + the SubstreamID key, 0 when empty */
	uint64_t cd[2];      /* CD DW0, DW1 */
};

struct arm_smmu_device {
	struct arm_smmu_features features;
	struct arm_smmu_hw_info info;
	/* Protects masters, next_vmid, every vSMMU's vdevs and every master's domain. */
	struct uiommu_mutex lock;
	LIST_HEAD(, arm_smmu_master) masters;
	unsigned int next_vmid;
	/* Serialises invalidations (and tlb_count); inside lock. Fills take only their set. */
	struct uiommu_mutex tlb_lock;
	atomic_ulong tlb_gen;        /* bumped by every invalidation before it touches a set */
	struct tlb_set *tlb;         /* TLB_SETS + WC_SETS; immutable pointer */
	struct tlb_span *spans;      /* one per set of tlb */
	atomic_ulong stat_misses, stat_cd_fetches;   /* arm_smmu_stats() */
};

struct arm_smmu_master {
	struct arm_smmu_device *smmu;
	uint32_t sid;
	LIST_ENTRY(arm_smmu_master) node;      /* head at smmu->masters */
	_Atomic(struct iommu_domain *) domain;  /* written under smmu->lock */
	struct arm_vsmmu *vsmmu;               /* its vDEVICE's vSMMU; smmu->lock */
	uint64_t vsid;
	struct cd_slot cds[CD_SLOTS];          /* writers hold smmu->lock */
	atomic_ulong cd_gen;                   /* bumped by every drop, under smmu->lock */
	atomic_bool stall;                     /* may stall (arm_smmu_master_set_stall()) */
	unsigned int resumes;                  /* CMD_RESUMEs issued for it; smmu->lock */
	uint64_t last_resume[2];               /* the last of them; smmu->lock */
};

struct arm_smmu_domain {
	struct iommu_domain domain;
	struct arm_smmu_device *smmu;
	struct arm_lpae_s2 pt;
	uint16_t vmid;
	bool nest_parent;
	atomic_uint vsmmus;                    /* vSMMUs over it */
};

struct arm_vsmmu {
	struct arm_smmu_device *smmu;
	struct arm_smmu_domain *s2;
	uint16_t vmid;
	struct arm_smmu_tlb_ctx tlb;           /* its VMID's half of its lookups' context */
	atomic_uint nested;                    /* nested domains of it */
	arm_vsmmu_event_fn event_fn;           /* set before the first translation */
	void *event_arg;
};

struct arm_smmu_nested {
	struct iommu_domain domain;
	struct arm_vsmmu *vsmmu;
	uint64_t ste[2];
	bool invalid;                          /* the guest's vSTE had V=0 */
	bool enable_ats;
};

static const struct iommu_domain_ops arm_smmu_s2_ops;
static const struct iommu_domain_ops arm_smmu_nested_ops;
static const struct iommu_dirty_ops arm_smmu_dirty_ops;

static struct arm_smmu_domain *to_smmu_domain(struct iommu_domain *domain)
{
	return container_of(domain, struct arm_smmu_domain, domain);
}

static struct arm_smmu_nested *to_nested(struct iommu_domain *domain)
{
	return container_of(domain, struct arm_smmu_nested, domain);
}

bool arm_smmu_domain_is_s2(const struct iommu_domain *domain)
{
	return domain && domain->ops == &arm_smmu_s2_ops;
}

static bool arm_smmu_domain_is_nested(const struct iommu_domain *domain)
{
	return domain && domain->ops == &arm_smmu_nested_ops;
}

/* ---- sequence counts ------------------------------------------------------------------------ */

/*
 * Entries are read with acquire loads: the count's second read cannot move before them (on
 * x86 and AArch64 an acquire load is a plain or LDAR load, and this needs no fence, which
 * ThreadSanitizer cannot see).
 */
static uint64_t rd(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void wr(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/*
 * A reader does not wait for an even count before it reads: it reads the entries whatever the
 * count, and retries when the count read after them is not its first read with the low bit
 * cleared. An odd first read (a writer inside) can never match (the count only grows), so
 * one compare after the reads covers both "a writer was inside" and "a writer came and went".
 */
static unsigned int seq_read_begin(atomic_uint *seq)
{
	return atomic_load_explicit(seq, memory_order_acquire);
}

static bool seq_read_retry(atomic_uint *seq, unsigned int s)
{
	return atomic_load_explicit(seq, memory_order_relaxed) != (s & ~1u);
}

/* Odd: the acquire half keeps the entry stores after it. */
static void seq_write_begin(atomic_uint *seq)
{
	atomic_fetch_add_explicit(seq, 1, memory_order_acq_rel);
}

/* Even again: the release publishes the entries to a reader of the new count. */
static void seq_write_end(atomic_uint *seq)
{
	atomic_fetch_add_explicit(seq, 1, memory_order_release);
}

/* ---- the instance ------------------------------------------------------------------------- */

static void arm_smmu_build_idrs(struct arm_smmu_device *smmu)
{
	const struct arm_smmu_features *f = &smmu->features;
	struct arm_smmu_hw_info *info = &smmu->info;
	uint64_t idr0;

	idr0 = IDR0_S2P | IDR0_TTF_AARCH64 | IDR0_COHACC | IDR0_ASID16 | IDR0_VMID16 |
	       IDR0_CD2L | IDR0_TTENDIAN_LE | IDR0_STALL_MODEL_STALL | IDR0_ST_LEVEL_2LVL;
	if (f->nesting)
		idr0 |= IDR0_S1P;
	if (f->httu)
		idr0 |= IDR0_HTTU_AD << IDR0_HTTU_SHIFT;
	info->idr[0] = (uint32_t)idr0;
	info->idr[1] = f->sid_bits << IDR1_SIDSIZE_SHIFT | f->ssid_bits << IDR1_SSIDSIZE_SHIFT |
		       19u << IDR1_EVTQS_SHIFT | 19u << IDR1_CMDQS_SHIFT;
	info->idr[3] = (uint32_t)IDR3_RIL;
	info->idr[5] = (uint32_t)(IDR5_OAS_48 | IDR5_GRAN4K | IDR5_GRAN16K | IDR5_GRAN64K);
	info->aidr = ARM_SMMU_AIDR_V3_2;
}

struct arm_smmu_device *arm_smmu_device_alloc(const struct arm_smmu_features *features)
{
	struct arm_smmu_device *smmu;

	if (features->ssid_bits > 20 || features->sid_bits < 16 || features->sid_bits > 32)
		return ERR_PTR(-EINVAL);
	smmu = uiommu_zalloc(sizeof(*smmu));
	if (!smmu)
		return ERR_PTR(-ENOMEM);
	smmu->tlb = uiommu_zalloc_aligned(64, (TLB_SETS + WC_SETS) * sizeof(*smmu->tlb));
	if (!smmu->tlb)
		goto err_free_smmu;
	smmu->spans = uiommu_calloc(TLB_SETS + WC_SETS, sizeof(*smmu->spans));
	if (!smmu->spans)
		goto err_free_tlb;
	smmu->features = *features;
	uiommu_mutex_init(&smmu->lock);
	uiommu_mutex_init(&smmu->tlb_lock);
	LIST_INIT(&smmu->masters);
	smmu->next_vmid = 1;
	arm_smmu_build_idrs(smmu);
	return smmu;

err_free_tlb:
	uiommu_free(smmu->tlb);
err_free_smmu:
	uiommu_free(smmu);
	return ERR_PTR(-ENOMEM);
}

void arm_smmu_device_free(struct arm_smmu_device *smmu)
{
	if (IS_ERR_OR_NULL(smmu))
		return;
	WARN_ON(!LIST_EMPTY(&smmu->masters));
	uiommu_mutex_destroy(&smmu->tlb_lock);
	uiommu_mutex_destroy(&smmu->lock);
	uiommu_free(smmu->spans);
	uiommu_free(smmu->tlb);
	uiommu_free(smmu);
}

void arm_smmu_hw_info(const struct arm_smmu_device *smmu, struct arm_smmu_hw_info *info)
{
	*info = smmu->info;
}

void arm_smmu_stats(struct arm_smmu_device *smmu, struct arm_smmu_stats *stats)
{
	stats->tlb_misses = atomic_load(&smmu->stat_misses);
	stats->cd_fetches = atomic_load(&smmu->stat_cd_fetches);
}

/* ---- masters ------------------------------------------------------------------------------ */

static struct arm_smmu_master *arm_smmu_find_master_locked(struct arm_smmu_device *smmu,
							   uint32_t sid)
{
	struct arm_smmu_master *master;

	lockdep_assert_held(&smmu->lock);
	LIST_FOREACH(master, &smmu->masters, node)
		if (master->sid == sid)
			return master;
	return NULL;
}

struct arm_smmu_master *arm_smmu_master_alloc(struct arm_smmu_device *smmu, uint32_t sid)
{
	struct arm_smmu_master *master;

	if (smmu->features.sid_bits < 32 && sid >> smmu->features.sid_bits)
		return ERR_PTR(-EINVAL);
	master = uiommu_zalloc(sizeof(*master));
	if (!master)
		return ERR_PTR(-ENOMEM);
	master->smmu = smmu;
	master->sid = sid;
	uiommu_mutex_lock(&smmu->lock);
	if (arm_smmu_find_master_locked(smmu, sid)) {
		uiommu_mutex_unlock(&smmu->lock);
		uiommu_free(master);
		return ERR_PTR(-EEXIST);
	}
	LIST_INSERT_HEAD(&smmu->masters, master, node);
	uiommu_mutex_unlock(&smmu->lock);
	return master;
}

void arm_smmu_master_set_stall(struct arm_smmu_master *master, bool stall)
{
	atomic_store_explicit(&master->stall, stall, memory_order_relaxed);
}

void arm_smmu_master_resume(struct arm_smmu_master *master, uint16_t stag, unsigned int action)
{
	struct arm_smmu_device *smmu = master->smmu;

	uiommu_mutex_lock(&smmu->lock);
	master->last_resume[0] = CMDQ_OP_RESUME | (uint64_t)master->sid << CMDQ_0_SID_SHIFT |
				 (uint64_t)(action & 3) << CMDQ_RESUME_0_RESP_SHIFT;
	master->last_resume[1] = stag;
	master->resumes++;
	uiommu_mutex_unlock(&smmu->lock);
}

unsigned int arm_smmu_master_resumes(struct arm_smmu_master *master, uint64_t cmd[2])
{
	struct arm_smmu_device *smmu = master->smmu;
	unsigned int n;

	uiommu_mutex_lock(&smmu->lock);
	n = master->resumes;
	if (n && cmd)
		memcpy(cmd, master->last_resume, sizeof(master->last_resume));
	uiommu_mutex_unlock(&smmu->lock);
	return n;
}

void arm_smmu_master_free(struct arm_smmu_master *master)
{
	struct arm_smmu_device *smmu = master->smmu;

	uiommu_mutex_lock(&smmu->lock);
	WARN_ON(master->vsmmu);
	WARN_ON(atomic_load(&master->domain));
	LIST_REMOVE(master, node);
	uiommu_mutex_unlock(&smmu->lock);
	uiommu_free(master);
}

static void arm_smmu_cd_drop_locked(struct arm_smmu_master *master, bool all, uint32_t ssid)
{
	unsigned int i;

	lockdep_assert_held(&master->smmu->lock);
	atomic_fetch_add_explicit(&master->cd_gen, 1, memory_order_relaxed);
	for (i = 0; i < CD_SLOTS; i++) {
		struct cd_slot *slot = &master->cds[i];

		if (!rd(&slot->valid) || (!all && rd(&slot->valid) != (uint64_t)ssid + 1))
			continue;
		seq_write_begin(&slot->seq);
		wr(&slot->valid, 0);
		seq_write_end(&slot->seq);
	}
}

int arm_smmu_master_attach(struct arm_smmu_master *master, struct iommu_domain *domain)
{
	struct arm_smmu_device *smmu = master->smmu;
	int rc = 0;

	uiommu_mutex_lock(&smmu->lock);
	if (arm_smmu_domain_is_s2(domain)) {
		if (to_smmu_domain(domain)->smmu != smmu)
			rc = -EINVAL;
	} else if (arm_smmu_domain_is_nested(domain)) {
		struct arm_smmu_nested *nested = to_nested(domain);
		unsigned int cfg = ARM_SMMU_FIELD(nested->ste[0], STE0_CFG_SHIFT, STE0_CFG_MASK);

		if (nested->vsmmu->smmu != smmu)
			rc = -EINVAL;
		else if (cfg == STE_CFG_S1_TRANS && master->vsmmu != nested->vsmmu)
			rc = -ENOENT;
	} else if (domain) {
		rc = -EINVAL;
	}
	if (!rc) {
		arm_smmu_cd_drop_locked(master, true, 0);
		atomic_store_explicit(&master->domain, domain, memory_order_release);
	}
	uiommu_mutex_unlock(&smmu->lock);
	return rc;
}

/* ---- stage-2 domains ---------------------------------------------------------------------- */

static void arm_smmu_tlb_inv(struct arm_smmu_device *smmu, uint16_t vmid, int kind,
			     uint16_t asid, uint64_t start, uint64_t last, bool leaf);

enum { TLB_INV_S12, TLB_INV_VMID, TLB_INV_ASID, TLB_INV_VA, TLB_INV_VAA };

struct iommu_domain *arm_smmu_domain_alloc_paging(struct arm_smmu_device *smmu, uint32_t flags,
						  unsigned int pg_shift)
{
	bool dirty = flags & IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING;
	struct arm_smmu_domain *sd;
	int rc;

	if (flags & ~(IOMMU_DOMAIN_ALLOC_NEST_PARENT | IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING))
		return ERR_PTR(-EOPNOTSUPP);
	if ((flags & IOMMU_DOMAIN_ALLOC_NEST_PARENT) &&
	    (flags != IOMMU_DOMAIN_ALLOC_NEST_PARENT || !smmu->features.nesting))
		return ERR_PTR(-EOPNOTSUPP);
	if (dirty && !smmu->features.httu)
		return ERR_PTR(-EOPNOTSUPP);
	if (pg_shift != 12 && pg_shift != 14 && pg_shift != 16)
		return ERR_PTR(-EINVAL);
	sd = uiommu_zalloc(sizeof(*sd));
	if (!sd)
		return ERR_PTR(-ENOMEM);
	rc = arm_lpae_s2_init(&sd->pt, pg_shift, 48, dirty);
	if (rc)
		goto err_free_domain;
	uiommu_mutex_lock(&smmu->lock);
	sd->vmid = (uint16_t)smmu->next_vmid;
	smmu->next_vmid = smmu->next_vmid == UINT16_MAX ? 1 : smmu->next_vmid + 1;
	uiommu_mutex_unlock(&smmu->lock);
	sd->smmu = smmu;
	sd->nest_parent = flags & IOMMU_DOMAIN_ALLOC_NEST_PARENT;
	sd->domain.type = IOMMU_DOMAIN_UNMANAGED;
	sd->domain.ops = &arm_smmu_s2_ops;
	sd->domain.dirty_ops = dirty ? &arm_smmu_dirty_ops : NULL;
	sd->domain.pgsize_bitmap = arm_lpae_pgsize_bitmap(&sd->pt.geom);
	sd->domain.geometry.aperture_end = (UINT64_C(1) << 48) - 1;
	sd->domain.geometry.force_aperture = true;
	return &sd->domain;

err_free_domain:
	uiommu_free(sd);
	return ERR_PTR(rc);
}

uint16_t arm_smmu_domain_vmid(struct iommu_domain *domain)
{
	return to_smmu_domain(domain)->vmid;
}

static int arm_smmu_s2_map_pages(struct iommu_domain *domain, uint64_t iova, phys_addr_t paddr,
				 size_t pgsize, size_t pgcount, int prot, size_t *mapped)
{
	return arm_lpae_s2_map(&to_smmu_domain(domain)->pt, iova, paddr, pgsize, pgcount, prot,
			       mapped);
}

static size_t arm_smmu_s2_unmap_pages(struct iommu_domain *domain, uint64_t iova, size_t pgsize,
				      size_t pgcount, struct iommu_iotlb_gather *gather)
{
	size_t done = arm_lpae_s2_unmap(&to_smmu_domain(domain)->pt, iova, pgsize, pgcount);

	if (gather)
		iommu_iotlb_gather_add_range(gather, iova, done);
	return done;
}

/* A stage-2 change: the core's IOTLB, and every guest translation made through it. */
static void arm_smmu_s2_iotlb_sync(struct iommu_domain *domain,
				   struct iommu_iotlb_gather *gather)
{
	struct arm_smmu_domain *sd = to_smmu_domain(domain);

	if (gather->start > gather->end)
		return;
	iotlb_inv_range(domain, gather->start, gather->end - gather->start + 1);
	if (sd->nest_parent)
		arm_smmu_tlb_inv(sd->smmu, sd->vmid, TLB_INV_S12, 0, 0, UINT64_MAX, false);
}

static void arm_smmu_s2_flush_iotlb_all(struct iommu_domain *domain)
{
	struct arm_smmu_domain *sd = to_smmu_domain(domain);

	iotlb_inv_domain(domain);
	arm_smmu_tlb_inv(sd->smmu, sd->vmid, TLB_INV_S12, 0, 0, UINT64_MAX, false);
}

static phys_addr_t arm_smmu_s2_iova_to_phys(struct iommu_domain *domain, uint64_t iova)
{
	struct arm_lpae_leaf leaf;

	if (arm_lpae_s2_walk(&to_smmu_domain(domain)->pt, iova, 0, &leaf))
		return 0;
	return leaf.phys;
}

static phys_addr_t arm_smmu_s2_dma_walk(struct iommu_domain *domain, uint64_t iova, bool write,
					int *prot, uint64_t *size)
{
	struct arm_smmu_domain *sd = to_smmu_domain(domain);
	struct arm_lpae_leaf leaf;

	if (arm_lpae_s2_walk(&sd->pt, iova, write ? IOMMU_WRITE : IOMMU_READ, &leaf))
		return 0;
	*prot = arm_lpae_s2_prot(&sd->pt, leaf.desc);
	*size = leaf.size;
	return leaf.phys;
}

phys_addr_t arm_smmu_s2_iotlb_walk(struct iommu_domain *domain, uint64_t iova, int access,
				   int *prot)
{
	struct arm_smmu_domain *sd = to_smmu_domain(domain);
	struct arm_lpae_leaf leaf;

	if (arm_lpae_s2_walk(&sd->pt, iova, access, &leaf))
		return 0;
	*prot = arm_lpae_s2_prot(&sd->pt, leaf.desc);
	if (arm_lpae_s2_clean(leaf.desc))
		*prot |= IOTLB_PROT_CLEAN;
	return leaf.phys;
}

static void arm_smmu_s2_free(struct iommu_domain *domain)
{
	struct arm_smmu_domain *sd = to_smmu_domain(domain);

	WARN_ON(atomic_load(&sd->vsmmus));
	arm_smmu_tlb_inv(sd->smmu, sd->vmid, TLB_INV_S12, 0, 0, UINT64_MAX, false);
	arm_lpae_s2_destroy(&sd->pt);
	uiommu_free(sd);
}

/* The core's attach (the group mutex held): the device's master takes the domain. */
static int arm_smmu_attach_dev(struct iommu_domain *domain, struct device *dev,
			       struct iommu_domain *old)
{
	struct arm_smmu_master *master = dev->iommu_data ? dev->iommu_data->priv : NULL;

	(void)old;
	if (!master)
		return -ENODEV;
	return arm_smmu_master_attach(master,
				      iommu_domain_type(domain) == IOMMU_DOMAIN_BLOCKED ? NULL
											: domain);
}

static const struct iommu_domain_ops arm_smmu_blocked_ops = {
	.attach_dev = arm_smmu_attach_dev,
};

struct iommu_domain arm_smmu_blocked_domain = {
	.type = IOMMU_DOMAIN_BLOCKED,
	.ops = &arm_smmu_blocked_ops,
};

static const struct iommu_domain_ops arm_smmu_s2_ops = {
	.attach_dev = arm_smmu_attach_dev,
	.map_pages = arm_smmu_s2_map_pages,
	.unmap_pages = arm_smmu_s2_unmap_pages,
	.iotlb_sync = arm_smmu_s2_iotlb_sync,
	.flush_iotlb_all = arm_smmu_s2_flush_iotlb_all,
	.iova_to_phys = arm_smmu_s2_iova_to_phys,
	.dma_walk = arm_smmu_s2_dma_walk,
	.free = arm_smmu_s2_free,
};

/* HD is always on in a dirty-tracking domain: the bits are only ever read and cleared. */
static int arm_smmu_set_dirty_tracking(struct iommu_domain *domain, bool enabled)
{
	(void)domain;
	(void)enabled;
	return 0;
}

static void arm_smmu_dirty_record(void *arg, uint64_t iova, uint64_t length)
{
	iommu_dirty_bitmap_record(arg, iova, length);
}

static int arm_smmu_read_and_clear_dirty(struct iommu_domain *domain, uint64_t iova,
					 uint64_t size, unsigned int flags,
					 struct iommu_dirty_bitmap *dirty)
{
	return arm_lpae_s2_read_and_clear_dirty(&to_smmu_domain(domain)->pt, iova, size,
						!(flags & IOMMU_DIRTY_NO_CLEAR),
						arm_smmu_dirty_record, dirty);
}

static const struct iommu_dirty_ops arm_smmu_dirty_ops = {
	.set_dirty_tracking = arm_smmu_set_dirty_tracking,
	.read_and_clear_dirty = arm_smmu_read_and_clear_dirty,
};

/* ---- vSMMUs, vDEVICEs, nested domains -------------------------------------------------------- */

struct arm_vsmmu *arm_vsmmu_alloc(struct arm_smmu_device *smmu, struct iommu_domain *parent)
{
	struct arm_smmu_domain *sd;
	struct arm_vsmmu *vsmmu;

	if (!smmu->features.nesting)
		return ERR_PTR(-EOPNOTSUPP);
	if (!arm_smmu_domain_is_s2(parent))
		return ERR_PTR(-EINVAL);
	sd = to_smmu_domain(parent);
	if (!sd->nest_parent || sd->smmu != smmu)
		return ERR_PTR(-EINVAL);
	vsmmu = uiommu_zalloc(sizeof(*vsmmu));
	if (!vsmmu)
		return ERR_PTR(-ENOMEM);
	vsmmu->smmu = smmu;
	vsmmu->s2 = sd;
	vsmmu->vmid = sd->vmid;
	arm_smmu_tlb_ctx_init(&vsmmu->tlb, smmu, vsmmu->vmid, 0);
	/* Pairs with arm_vsmmu_free(). */
	atomic_fetch_add(&sd->vsmmus, 1);
	return vsmmu;
}

void arm_vsmmu_free(struct arm_vsmmu *vsmmu)
{
	WARN_ON(atomic_load(&vsmmu->nested));
	atomic_fetch_sub(&vsmmu->s2->vsmmus, 1);
	uiommu_free(vsmmu);
}

void arm_vsmmu_set_event_sink(struct arm_vsmmu *vsmmu, arm_vsmmu_event_fn fn, void *arg)
{
	vsmmu->event_fn = fn;
	vsmmu->event_arg = arg;
}

int arm_vsmmu_vdevice_add(struct arm_vsmmu *vsmmu, struct arm_smmu_master *master,
			  uint64_t vsid)
{
	struct arm_smmu_device *smmu = vsmmu->smmu;
	struct arm_smmu_master *m;
	int rc = 0;

	if (master->smmu != smmu)
		return -EINVAL;
	uiommu_mutex_lock(&smmu->lock);
	if (master->vsmmu) {
		rc = -EEXIST;
		goto out_unlock;
	}
	LIST_FOREACH(m, &smmu->masters, node) {
		if (m->vsmmu == vsmmu && m->vsid == vsid) {
			rc = -EEXIST;
			goto out_unlock;
		}
	}
	master->vsmmu = vsmmu;
	master->vsid = vsid;
out_unlock:
	uiommu_mutex_unlock(&smmu->lock);
	return rc;
}

void arm_vsmmu_vdevice_del(struct arm_vsmmu *vsmmu, struct arm_smmu_master *master)
{
	uiommu_mutex_lock(&vsmmu->smmu->lock);
	if (master->vsmmu == vsmmu)
		master->vsmmu = NULL;
	uiommu_mutex_unlock(&vsmmu->smmu->lock);
}

/* The kernel's vSTE rules (hw-iommus.md A.6); @ste is rewritten as the kernel stores it. */
static int arm_smmu_vste_validate(uint64_t ste[2], bool *enable_ats, bool *invalid)
{
	unsigned int cfg, eats;

	*enable_ats = false;
	*invalid = false;
	if (!(ste[0] & STE0_V)) {
		ste[0] = ste[1] = 0;
		*invalid = true;
		return 0;
	}
	if ((ste[0] & ~STE0_NESTING_ALLOWED) || (ste[1] & ~STE1_NESTING_ALLOWED))
		return -EIO;
	cfg = ARM_SMMU_FIELD(ste[0], STE0_CFG_SHIFT, STE0_CFG_MASK);
	if (cfg != STE_CFG_ABORT && cfg != STE_CFG_BYPASS && cfg != STE_CFG_S1_TRANS)
		return -EIO;
	eats = ARM_SMMU_FIELD(ste[1], STE1_EATS_SHIFT, STE1_EATS_MASK);
	if (eats > 1)
		return -EIO;
	ste[1] &= ~(STE1_EATS_MASK << STE1_EATS_SHIFT);
	*enable_ats = cfg == STE_CFG_S1_TRANS && eats == 1;
	return 0;
}

static void arm_smmu_nested_free(struct iommu_domain *domain)
{
	struct arm_smmu_nested *nested = to_nested(domain);

	atomic_fetch_sub(&nested->vsmmu->nested, 1);
	uiommu_free(nested);
}

static phys_addr_t arm_smmu_nested_dma_walk_dev(struct iommu_domain *domain, struct device *dev,
						uint32_t pasid, uint64_t iova, bool write,
						int *prot, uint64_t *size);

static const struct iommu_domain_ops arm_smmu_nested_ops = {
	.attach_dev = arm_smmu_attach_dev,
	.dma_walk_dev = arm_smmu_nested_dma_walk_dev,
	.free = arm_smmu_nested_free,
};

struct iommu_domain *arm_vsmmu_domain_alloc_nested(struct arm_vsmmu *vsmmu, uint32_t flags,
						   const struct iommu_user_data *user_data)
{
	struct arm_smmu_nested *nested;
	bool enable_ats, invalid;
	uint64_t ste[2];
	int rc;

	if (flags)
		return ERR_PTR(-EOPNOTSUPP);
	if (!user_data || user_data->type != 2 /* IOMMU_HWPT_DATA_ARM_SMMUV3 */ ||
	    user_data->len != sizeof(ste))
		return ERR_PTR(-EINVAL);
	memcpy(ste, user_data->data, sizeof(ste));
	rc = arm_smmu_vste_validate(ste, &enable_ats, &invalid);
	if (rc)
		return ERR_PTR(rc);
	nested = uiommu_zalloc(sizeof(*nested));
	if (!nested)
		return ERR_PTR(-ENOMEM);
	nested->vsmmu = vsmmu;
	nested->ste[0] = ste[0];
	nested->ste[1] = ste[1];
	nested->invalid = invalid;
	nested->enable_ats = enable_ats;
	nested->domain.type = IOMMU_DOMAIN_NESTED;
	nested->domain.ops = &arm_smmu_nested_ops;
	/* Pairs with arm_smmu_nested_free(). */
	atomic_fetch_add(&vsmmu->nested, 1);
	return &nested->domain;
}

void arm_smmu_nested_vste(struct iommu_domain *domain, uint64_t ste[2], bool *enable_ats)
{
	struct arm_smmu_nested *nested = to_nested(domain);

	ste[0] = nested->ste[0];
	ste[1] = nested->ste[1];
	*enable_ats = nested->enable_ats;
}

/* ---- the TLB ------------------------------------------------------------------------------- */

/*
 * Stage-2 entries have sets of their own, so that a thrashing TLB keeps its walks cheap. The
 * set is the page's low bits mixed with the VMID, as in the IOTLB model and in hardware: the
 * consecutive pages of a buffer go to consecutive sets, filled in order, so consecutive hits
 * tend to find their page in the same way and the scan's exit is predicted (a hash scattered
 * them over the sets in random order, and the exit mispredicted: 6.8 -> 5.2 ns a hit). Given
 * the VMID, the index gives back the page's low bits: which is why the key can leave them out.
 */
static unsigned int tlb_mix(uint16_t vmid)
{
	/* An odd multiplier spreads consecutive VMIDs 157 sets apart. */
	return (unsigned int)vmid * 157u;
}

/* The set of @page among @sets (an instance's) for a VMID whose tlb_mix() is @mix. */
static struct tlb_set *tlb_set_at(struct tlb_set *sets, unsigned int mix, uint64_t page,
				  uint64_t kind)
{
	unsigned int i = ((unsigned int)page ^ mix) & (TLB_SETS - 1);

	return &sets[kind & TLB_TAG_S2 ? TLB_SETS + i : i];
}

static struct tlb_set *tlb_set_of(struct arm_smmu_device *smmu, uint16_t vmid, uint64_t page,
				  uint64_t kind)
{
	return tlb_set_at(smmu->tlb, tlb_mix(vmid), page, kind);
}

/*
 * What a stage-1 hit for @access must find: its allow bit(s) (and TLB_OUT_MISS, see
 * tlb_set_read()). A table, not the shift and select: the hit path's want is one load.
 */
#define TLB_WANT(access)                                                                    \
	(TLB_OUT_MISS | ((access) & (ARM_SMMU_ACC_READ | ARM_SMMU_ACC_WRITE | ARM_SMMU_ACC_EXEC)) \
				<< ((access) & ARM_SMMU_ACC_PRIV ? 3 : 0))
static const uint16_t tlb_want_s1[16] = {
	TLB_WANT(0u),  TLB_WANT(1u),  TLB_WANT(2u),  TLB_WANT(3u),
	TLB_WANT(4u),  TLB_WANT(5u),  TLB_WANT(6u),  TLB_WANT(7u),
	TLB_WANT(8u),  TLB_WANT(9u),  TLB_WANT(10u), TLB_WANT(11u),
	TLB_WANT(12u), TLB_WANT(13u), TLB_WANT(14u), TLB_WANT(15u),
};

/* The allow bits of a found way's output word. */
static uint64_t tlb_out_allow(uint64_t out)
{
	return (out & TLB_OUT_ALLOW) ^ TLB_OUT_ALLOW;
}

/*
 * One read of @set for @key: the output word of @key's way, TLB_OUT_MISS when no way holds
 * it, into @outp; false when a writer held the set or came and went (read again). A caller's
 * test of a hit for the allow bits @want is then one instruction: !(word & want) (the
 * callers' want constants have TLB_OUT_MISS in them). A set holds a key at most once (a fill
 * of a key it holds refreshes that way), so the first equal key decides. Inlined into each
 * caller: the hit path is issue 12's "at most 2x a plain hash lookup" (bench/README.md has
 * the instruction counts).
 */
static inline __attribute__((always_inline)) bool tlb_set_read_once(struct tlb_set *set,
								    uint64_t key,
								    uint64_t *outp)
{
	unsigned int s = seq_read_begin(&set->seq), w;
	uint64_t out = TLB_OUT_MISS;

	/* Unrolled: no way counter, one load, compare and branch a way. */
#pragma GCC unroll 3
	for (w = 0; w < TLB_WAYS; w++) {
		if (rd(&set->key[w]) == key) {
			out = rd(&set->out[w]);
			break;
		}
	}
	*outp = out;
	return !seq_read_retry(&set->seq, s);
}

/* tlb_set_read_once() until no writer interferes; the output word. */
static inline __attribute__((always_inline)) uint64_t tlb_set_read(struct tlb_set *set,
								   uint64_t key)
{
	uint64_t out;

	while (!tlb_set_read_once(set, key, &out))
		;
	return out;
}

/*
 * The rest of arm_smmu_tlb_lookup() when its one read met a writer (@out is not to be used)
 * or did not find the ASID's entry allowing @want (@out is that read's word): the ASID's
 * entry read to a consistent answer, else the global one (an nG=0 leaf) of the same page, in
 * the same set. Out of line and called last (a tail call), so that the hit path keeps no
 * retry loop (in a loop, the compiler kept the ways' addresses in registers) and saves no
 * register.
 */
static __attribute__((noinline)) bool tlb_lookup_slow(struct tlb_set *set, uint64_t key,
						      uint64_t want, uint64_t iova,
						      uint64_t *phys, uint64_t out, bool torn)
{
	if (torn)
		out = tlb_set_read(set, key);

	if (out & want) {
		out = tlb_set_read(set, (key & ~TLB_KEY_ASID_MASK) | TLB_TAG_GLOBAL);
		if (out & want)
			return false;
	}
	*phys = (out & ~UINT64_C(0xfff)) | (iova & 0xfff);
	return true;
}

/*
 * A stage-1 (combined) hit of @iova for @access in the (VMID, ASID) context @ctx: the ASID's
 * entry, else the global one. The context (the key's tag, the VMID's tlb_mix(), the sets) is
 * what a translation has before it looks (as hardware has the VMID and ASID from its STE and
 * CD): the vSMMU keeps its VMID's half, so the hit path builds no key from the VMID and ASID.
 */
static inline __attribute__((always_inline)) bool
arm_smmu_tlb_lookup(const struct arm_smmu_tlb_ctx *ctx, uint64_t iova, unsigned int access,
		    uint64_t *phys)
{
	uint64_t page = iova >> 12, key = ctx->tag | (page & TLB_KEY_PAGE_MASK) >> TLB_INDEX_BITS;
	uint64_t want = tlb_want_s1[access & 15u], out;
	struct tlb_set *set = tlb_set_at(ctx->sets, ctx->mix, page, 0);
	bool torn = !tlb_set_read_once(set, key, &out);

	if (unlikely(torn || (out & want)))
		return tlb_lookup_slow(set, key, want, iova, phys, out, torn);
	*phys = (out & ~UINT64_C(0xfff)) | (iova & 0xfff);
	return true;
}

/* A set's writers exclude each other by making its count odd; readers retry meanwhile. */
static bool tlb_set_trylock(struct tlb_set *set)
{
	unsigned int s = atomic_load_explicit(&set->seq, memory_order_relaxed);

	return !(s & 1) && atomic_compare_exchange_strong_explicit(&set->seq, &s, s + 1,
								    memory_order_acq_rel,
								    memory_order_relaxed);
}

static void tlb_set_lock(struct tlb_set *set)
{
	while (!tlb_set_trylock(set))
		;
}

/*
 * A release store, not seq_write_end()'s locked add: while the count is odd its holder is
 * its only writer, and a miss releases two sets (its fills).
 */
static void tlb_set_unlock(struct tlb_set *set)
{
	unsigned int s = atomic_load_explicit(&set->seq, memory_order_relaxed);

	atomic_store_explicit(&set->seq, s + 1, memory_order_release);
}

/*
 * Lock-free fill: a busy set is skipped (a cache may always decline), and so is a fill whose
 * walk an invalidation overtook (@gen is the generation read before the walk).
 */
static void arm_smmu_tlb_fill(struct arm_smmu_device *smmu, unsigned long gen,
			      const struct tlb_entry *entry)
{
	struct tlb_set *set = tlb_set_of(smmu, tlb_key_vmid(entry->key), entry->page, entry->key);
	unsigned int w, e = TLB_WAYS;

	if (!tlb_set_trylock(set))
		return;
	if (atomic_load_explicit(&smmu->tlb_gen, memory_order_seq_cst) != gen)
		goto out_unlock;
	for (w = 0; w < TLB_WAYS; w++) {
		uint64_t k = rd(&set->key[w]);

		if (k == entry->key) {
			e = w; /* refresh (more permissions, or a newer walk) */
			break;
		}
		if (!k && e == TLB_WAYS)
			e = w;
	}
	if (e == TLB_WAYS) {
		e = set->victim;
		set->victim = (uint16_t)(e + 1 == TLB_WAYS ? 0 : e + 1);
	}
	wr(&set->key[e], entry->key);
	wr(&set->out[e], entry->phys | (entry->allow ^ TLB_OUT_ALLOW));
	if (!(entry->key & TLB_TAG_S2)) {
		/* Only stage-1 invalidations read spans; stage-2 entries go by VMID alone. */
		struct tlb_span *span = &smmu->spans[set - smmu->tlb];

		wr(&span->s1_base[e], entry->s1_base);
		wr(&span->s1_size[e], entry->s1_size);
	}
out_unlock:
	tlb_set_unlock(set);
}

/*
 * Drop the entries of @vmid that @kind selects: TLB_INV_S12 everything, the others stage-1
 * (combined) entries and stage-1 walks only, VA kinds by the stage-1 leaf's (or the walked
 * table's) span; @leaf (a TLBI's Leaf=1) keeps the walks.
 */
static void arm_smmu_tlb_inv(struct arm_smmu_device *smmu, uint16_t vmid, int kind,
			     uint16_t asid, uint64_t start, uint64_t last, bool leaf)
{
	unsigned int i, w;

	uiommu_mutex_lock(&smmu->tlb_lock);
	/* Before any set is touched: a fill that read the old value gives up. */
	atomic_fetch_add_explicit(&smmu->tlb_gen, 1, memory_order_seq_cst);
	for (i = 0; i < TLB_SETS + WC_SETS; i++) {
		struct tlb_set *set = &smmu->tlb[i];
		struct tlb_span *span = &smmu->spans[i];

		if (i >= TLB_SETS && kind != TLB_INV_S12)
			break; /* stage-1 commands never reach the walk cache */
		tlb_set_lock(set);
		for (w = 0; w < TLB_WAYS; w++) {
			uint64_t key = rd(&set->key[w]);
			uint16_t kasid = tlb_key_asid(key);
			bool global = key & TLB_TAG_GLOBAL;

			if (!key || tlb_key_vmid(key) != vmid)
				continue;
			if (kind != TLB_INV_S12 && (key & TLB_TAG_S2))
				continue;
			if (leaf && (key & TLB_TAG_WALK))
				continue;
			if (kind == TLB_INV_ASID && (global || kasid != asid))
				continue;
			if (kind == TLB_INV_VA && !global && kasid != asid)
				continue;
			if ((kind == TLB_INV_VA || kind == TLB_INV_VAA) &&
			    (rd(&span->s1_base[w]) > last ||
			     rd(&span->s1_base[w]) + rd(&span->s1_size[w]) - 1 < start))
				continue;
			wr(&set->key[w], 0);
		}
		tlb_set_unlock(set);
	}
	uiommu_mutex_unlock(&smmu->tlb_lock);
}

void arm_smmu_tlb_ctx_init(struct arm_smmu_tlb_ctx *ctx, struct arm_smmu_device *smmu,
			   uint16_t vmid, uint16_t asid)
{
	ctx->tag = tlb_key(TLB_TAG_VALID, vmid, asid, 0);
	ctx->sets = smmu->tlb;
	ctx->mix = tlb_mix(vmid);
}

bool arm_smmu_tlb_probe(const struct arm_smmu_tlb_ctx *ctx, uint64_t iova, unsigned int access,
			uint64_t *phys)
{
	return arm_smmu_tlb_lookup(ctx, iova, access, phys);
}

unsigned int arm_smmu_tlb_count(struct arm_smmu_device *smmu, uint16_t vmid)
{
	unsigned int i, w, n = 0;

	uiommu_mutex_lock(&smmu->tlb_lock);
	for (i = 0; i < TLB_SETS; i++) {
		for (w = 0; w < TLB_WAYS; w++) {
			uint64_t key = rd(&smmu->tlb[i].key[w]);

			if (key && !(key & (TLB_TAG_S2 | TLB_TAG_WALK)) && tlb_key_vmid(key) == vmid)
				n++;
		}
	}
	uiommu_mutex_unlock(&smmu->tlb_lock);
	return n;
}

/* ---- the nested walk --------------------------------------------------------------------- */

/* A transaction's progress: the event it would raise, and whether the guest may see it. */
struct xlate {
	struct arm_smmu_master *master;
	struct arm_vsmmu *vsmmu;
	const struct arm_smmu_txn *txn;
	uint64_t cd[2];
	uint32_t id;          /* the event ID, 0 while none */
	bool s2;              /* a stage-2 fault: the host's, never forwarded */
	bool s1stalld;        /* stage-1 stalls disabled: the guest's STE, or a master that cannot */
	unsigned int class;
};

static int xlate_fault(struct xlate *x, uint32_t id, bool s2, unsigned int class)
{
	x->id = id;
	x->s2 = s2;
	x->class = class;
	return -EFAULT;
}

/*
 * Stage 2 of the walk: @ipa for @access, PA out, and the leaf's usable IOMMU_READ |
 * IOMMU_WRITE (a writable-clean leaf is not writable until a write walks it). The TLB keeps
 * these too (TLB_TAG_S2), as an SMMU's walk caches do, until the parent changes. A failure is
 * the host's fault.
 */
static int xlate_s2(struct xlate *x, uint64_t ipa, int access, unsigned int class,
		    uint64_t *pa, int *prot)
{
	struct arm_smmu_device *smmu = x->master->smmu;
	struct arm_lpae_s2 *pt = &x->vsmmu->s2->pt;
	uint16_t vmid = x->vsmmu->vmid;
	uint64_t key = tlb_key(TLB_TAG_VALID | TLB_TAG_S2, vmid, 0, ipa >> 12), out;
	struct tlb_entry entry;
	struct arm_lpae_leaf leaf;
	unsigned long gen;
	int p;

	out = tlb_set_read(tlb_set_of(smmu, vmid, ipa >> 12, TLB_TAG_S2), key);
	if (!(out & (TLB_OUT_MISS | (uint64_t)access))) {
		*pa = (out & ~UINT64_C(0xfff)) | (ipa & 0xfff);
		if (prot)
			*prot = (int)tlb_out_allow(out);
		return 0;
	}
	gen = atomic_load_explicit(&smmu->tlb_gen, memory_order_seq_cst);
	if (arm_lpae_s2_walk(pt, ipa, access, &leaf))
		return xlate_fault(x, EVT_ID_F_TRANSLATION, true, class);
	p = arm_lpae_s2_prot(pt, leaf.desc);
	if ((access & p) != access)
		return xlate_fault(x, EVT_ID_F_PERMISSION, true, class);
	p &= arm_lpae_s2_clean(leaf.desc) ? ~IOMMU_WRITE : ~0;
	*pa = leaf.phys;
	if (prot)
		*prot = p;
	entry = (struct tlb_entry){
		.key = key, .page = ipa >> 12, .phys = leaf.phys & ~UINT64_C(0xfff),
		.allow = (uint64_t)p,
	};
	arm_smmu_tlb_fill(smmu, gen, &entry);
	return 0;
}

/* One 64-bit word of guest memory at @ipa (8-byte aligned), read through stage 2. */
static int xlate_read(struct xlate *x, uint64_t ipa, unsigned int class, uint64_t *val,
		      uint64_t **where)
{
	uint64_t pa;
	int rc;

	rc = xlate_s2(x, ipa, IOMMU_READ, class, &pa, NULL);
	if (rc)
		return rc;
	/* Another process's private page (mm.h): not ours to load from, a stage-2 fault. */
	if (uiommu_host_is_window(pa))
		return xlate_fault(x, EVT_ID_F_TRANSLATION, true, class);
	*where = (uint64_t *)(uintptr_t)pa;
	*val = __atomic_load_n(*where, __ATOMIC_ACQUIRE);
	return 0;
}

/* The CD for the transaction (B.5): from the master's cache, or fetched. */
static int xlate_cd(struct xlate *x, const uint64_t ste[2], uint32_t ssid, unsigned long gen)
{
	struct arm_smmu_master *master = x->master;
	struct arm_smmu_device *smmu = master->smmu;
	unsigned int fmt = ARM_SMMU_FIELD(ste[0], STE0_S1FMT_SHIFT, STE0_S1FMT_MASK);
	unsigned int cdmax = ARM_SMMU_FIELD(ste[0], STE0_S1CDMAX_SHIFT, STE0_S1CDMAX_MASK);
	uint64_t ctx = ste[0] & STE0_S1CTXPTR_MASK, cd_ipa, desc, *where;
	struct cd_slot *slot = &master->cds[ssid % CD_SLOTS];
	unsigned int s, split;
	bool hit;
	int rc;

	do {
		s = seq_read_begin(&slot->seq);
		hit = rd(&slot->valid) == (uint64_t)ssid + 1;
		if (hit) {
			x->cd[0] = rd(&slot->cd[0]);
			x->cd[1] = rd(&slot->cd[1]);
		}
	} while (seq_read_retry(&slot->seq, s));
	if (hit)
		return 0;

	atomic_fetch_add_explicit(&smmu->stat_cd_fetches, 1, memory_order_relaxed);
	if (fmt == STE_S1FMT_LINEAR) {
		cd_ipa = ctx + (uint64_t)ssid * CD_SIZE;
	} else if (fmt == STE_S1FMT_64K_L2 || fmt == STE_S1FMT_4K_L2) {
		split = fmt == STE_S1FMT_64K_L2 ? 10 : 6;
		/* An L1 table smaller than one descriptor still has one. */
		rc = xlate_read(x, ctx + (uint64_t)(cdmax > split ? ssid >> split : 0) * 8,
				EVT_CLASS_CD, &desc, &where);
		if (rc)
			return rc;
		if (!(desc & L1CD_V))
			return xlate_fault(x, EVT_ID_C_BAD_SUBSTREAMID, false, EVT_CLASS_CD);
		cd_ipa = (desc & L1CD_L2PTR_MASK) +
			 (uint64_t)(ssid & ((1u << split) - 1)) * CD_SIZE;
	} else {
		return xlate_fault(x, EVT_ID_C_BAD_STE, false, EVT_CLASS_CD);
	}
	rc = xlate_read(x, cd_ipa, EVT_CLASS_CD, &x->cd[0], &where);
	if (!rc)
		rc = xlate_read(x, cd_ipa + 8, EVT_CLASS_CD, &x->cd[1], &where);
	if (rc)
		return rc;

	/* Not cached if a CFGI_CD (or an attach) ran during the fetch: it may be stale. */
	uiommu_mutex_lock(&smmu->lock);
	if (atomic_load_explicit(&master->cd_gen, memory_order_relaxed) == gen) {
		seq_write_begin(&slot->seq);
		wr(&slot->cd[0], x->cd[0]);
		wr(&slot->cd[1], x->cd[1]);
		wr(&slot->valid, (uint64_t)ssid + 1);
		seq_write_end(&slot->seq);
	}
	uiommu_mutex_unlock(&smmu->lock);
	return 0;
}

static const unsigned int oas_bits[8] = { 32, 36, 40, 42, 44, 48, 52, 52 };

/* Is the CD one this SMMU can use (C_BAD_CD otherwise)? The geometry out. */
static bool xlate_cd_ok(struct xlate *x, struct arm_lpae_geom *geom, unsigned int *ips)
{
	const uint64_t *cd = x->cd;
	unsigned int t0sz = cd[0] & CD0_T0SZ_MASK, tg = ARM_SMMU_FIELD(cd[0], CD0_TG0_SHIFT,
								      CD0_TG0_MASK);
	static const unsigned int tg_shift[4] = { 12, 16, 14, 0 };

	if (!(cd[0] & CD0_V) || !(cd[0] & CD0_AA64) || (cd[0] & CD0_ENDI) || t0sz < 16 ||
	    t0sz > 39 || !tg_shift[tg])
		return false;
	if ((cd[0] & (CD0_HA | CD0_HD)) && !x->master->smmu->features.httu)
		return false;
	if ((cd[0] & CD0_S) && x->s1stalld) /* CD.S with STE.S1STALLD is ILLEGAL */
		return false;
	*ips = oas_bits[ARM_SMMU_FIELD(cd[0], CD0_IPS_SHIFT, CD0_IPS_MASK)];
	if (*ips > 48)
		*ips = 48;
	if ((cd[1] & CD1_TTB0_MASK) >> *ips)
		return false;
	return !arm_lpae_geom_init(geom, tg_shift[tg], 64 - t0sz, false);
}

/* Which CD the transaction uses (B.5); -EFAULT with the event, or 1 for "stage 1 bypassed". */
static int xlate_substream(struct xlate *x, const uint64_t ste[2], uint32_t *ssid)
{
	const struct arm_smmu_txn *txn = x->txn;
	unsigned int cdmax = ARM_SMMU_FIELD(ste[0], STE0_S1CDMAX_SHIFT, STE0_S1CDMAX_MASK);
	unsigned int dss = ste[1] & STE1_S1DSS_MASK;

	if (!txn->ssv) {
		*ssid = 0;
		if (!cdmax || dss == STE_S1DSS_SSID0)
			return 0;
		if (dss == STE_S1DSS_BYPASS)
			return 1;
		return xlate_fault(x, EVT_ID_F_STREAM_DISABLED, false, EVT_CLASS_CD);
	}
	if (!cdmax || txn->ssid >> cdmax || (txn->ssid == 0 && dss == STE_S1DSS_SSID0) ||
	    txn->ssid >> x->master->smmu->features.ssid_bits)
		return xlate_fault(x, EVT_ID_C_BAD_SUBSTREAMID, false, EVT_CLASS_CD);
	*ssid = txn->ssid;
	return 0;
}

/* Can @access pass a stage-1 leaf @desc under the walk's table restrictions @tbl? */
static bool s1_allows(uint64_t desc, uint64_t tbl, bool wxn, bool hd, unsigned int access)
{
	bool priv = access & ARM_SMMU_ACC_PRIV;
	bool ro = (desc & ARM_LPAE_S1_AP2) || (tbl & ARM_LPAE_TBL_AP2);
	bool writable_clean = hd && (desc & ARM_LPAE_DBM) && !(tbl & ARM_LPAE_TBL_AP2);

	if (!priv && (!(desc & ARM_LPAE_S1_AP1) || (tbl & ARM_LPAE_TBL_AP1)))
		return false;
	if ((access & ARM_SMMU_ACC_WRITE) && ro && !writable_clean)
		return false;
	if (access & ARM_SMMU_ACC_EXEC) {
		if (priv ? (desc & ARM_LPAE_S1_PXN) || (tbl & ARM_LPAE_TBL_PXN)
			 : (desc & ARM_LPAE_S1_UXN) || (tbl & ARM_LPAE_TBL_UXN))
			return false;
		if (wxn && !ro)
			return false;
	}
	return true;
}

/*
 * The allow bits a hit of a walk's result may serve: each kind at each privilege that
 * s1_allows() would pass with stage 2's @s2prot, except a write to a leaf that is read-only
 * (here or above) or clean at stage 2: that write must walk, to fault or to set a dirty bit
 * (so s1_allows()' writable-clean case never reaches a bit). One pass over the bits instead of
 * s1_allows() six times: the miss path is issue 12's "at most 6x a one-stage miss".
 */
static uint64_t s1_allow_bits(uint64_t desc, uint64_t tbl, bool wxn, int s2prot)
{
	bool ro = (desc & ARM_LPAE_S1_AP2) || (tbl & ARM_LPAE_TBL_AP2);
	uint64_t kinds = 0, priv, unpriv;

	if (s2prot & IOMMU_READ)
		kinds |= ARM_SMMU_ACC_READ;
	if (!ro && (s2prot & IOMMU_WRITE))
		kinds |= ARM_SMMU_ACC_WRITE;
	priv = kinds;
	unpriv = kinds;
	if ((s2prot & IOMMU_READ) && !(wxn && !ro)) {
		if (!(desc & ARM_LPAE_S1_PXN) && !(tbl & ARM_LPAE_TBL_PXN))
			priv |= ARM_SMMU_ACC_EXEC;
		if (!(desc & ARM_LPAE_S1_UXN) && !(tbl & ARM_LPAE_TBL_UXN))
			unpriv |= ARM_SMMU_ACC_EXEC;
	}
	if (!(desc & ARM_LPAE_S1_AP1) || (tbl & ARM_LPAE_TBL_AP1))
		unpriv = 0;
	return unpriv | priv << 3;
}

/* The stage-1 walk of @iova at the CD's granule, every fetch through stage 2; fills @out. */
static int xlate_s1(struct xlate *x, struct tlb_entry *out, uint64_t *phys)
{
	const struct arm_smmu_txn *txn = x->txn;
	unsigned int access = txn->access, level, ips;
	bool write = access & ARM_SMMU_ACC_WRITE, hd, ha;
	uint64_t iova = txn->iova, table, desc, tbl = 0, *where, oa, size, pa;
	struct arm_lpae_geom geom;
	struct tlb_entry walk;
	uint16_t vmid = x->vsmmu->vmid, asid = (uint16_t)(x->cd[0] >> CD0_ASID_SHIFT);
	unsigned long gen;
	int s2prot, rc, k;

	if (!xlate_cd_ok(x, &geom, &ips))
		return xlate_fault(x, EVT_ID_C_BAD_CD, false, EVT_CLASS_CD);
	hd = x->cd[0] & CD0_HD;
	ha = x->cd[0] & CD0_HA;
	if (x->cd[0] & CD0_TBI0)
		iova &= ~(UINT64_C(0xff) << 56);
	if ((x->cd[0] & CD0_EPD0) || iova >> geom.ias)
		return xlate_fault(x, EVT_ID_F_TRANSLATION, false, EVT_CLASS_IN);

	table = x->cd[1] & CD1_TTB0_MASK & ~(uint64_t)(arm_lpae_root_size(&geom) - 1);
	level = geom.start;
	/*
	 * The stage-1 walk cache: the last-level table of this VA's range, found by an earlier
	 * walk of the same ASID (its IPA and the restrictions of the tables above it). The key
	 * holds the granule and the input size too, so that another CD's geometry never matches.
	 */
	walk = (struct tlb_entry){
		.page = iova >> arm_lpae_level_shift(&geom, 2) |
			(uint64_t)(geom.pg_shift - 12) / 2 << 27 | (uint64_t)geom.ias << 29,
		.s1_base = iova & ~((UINT64_C(1) << arm_lpae_level_shift(&geom, 2)) - 1),
		.s1_size = UINT64_C(1) << arm_lpae_level_shift(&geom, 2),
	};
	walk.key = tlb_key(TLB_TAG_VALID | TLB_TAG_WALK, vmid, asid, walk.page);
	gen = atomic_load_explicit(&x->master->smmu->tlb_gen, memory_order_seq_cst);
	if (geom.start < 3) {
		uint64_t cached = tlb_set_read(tlb_set_of(x->master->smmu, vmid, walk.page, 0),
					       walk.key);

		if (!(cached & TLB_OUT_MISS)) {
			table = cached & ~UINT64_C(0xfff);
			tbl = tlb_out_allow(cached) << 59;
			level = 3;
		}
	}
	for (;; level++) {
		rc = xlate_read(x, table + 8 * arm_lpae_index(&geom, level, iova), EVT_CLASS_TT,
				&desc, &where);
		if (rc)
			return rc;
		if (!(desc & ARM_LPAE_VALID))
			return xlate_fault(x, EVT_ID_F_TRANSLATION, false, EVT_CLASS_IN);
		if (level == 3 || (desc & ARM_LPAE_TYPE_MASK) == ARM_LPAE_TYPE_BLOCK)
			break;
		if (!(x->cd[1] & CD1_HAD0))
			tbl |= desc & (ARM_LPAE_TBL_PXN | ARM_LPAE_TBL_UXN | ARM_LPAE_TBL_AP1 |
				       ARM_LPAE_TBL_AP2);
		table = arm_lpae_oa(&geom, level, desc, true);
		if (table >> ips)
			return xlate_fault(x, EVT_ID_F_ADDR_SIZE, false, EVT_CLASS_IN);
		if (level == 2) {
			walk.phys = table;
			walk.allow = tbl >> 59;
			arm_smmu_tlb_fill(x->master->smmu, gen, &walk);
		}
	}
	if ((level < 3 && !arm_lpae_block_ok(&geom, level)) ||
	    (level == 3 && (desc & ARM_LPAE_TYPE_MASK) != ARM_LPAE_TYPE_TABLE))
		return xlate_fault(x, EVT_ID_F_TRANSLATION, false, EVT_CLASS_IN);
	size = UINT64_C(1) << arm_lpae_level_shift(&geom, level);
	oa = arm_lpae_oa(&geom, level, desc, false);
	if (oa >> ips)
		return xlate_fault(x, EVT_ID_F_ADDR_SIZE, false, EVT_CLASS_IN);
	if (!(desc & ARM_LPAE_AF) && !ha && !(x->cd[0] & CD0_AFFD))
		return xlate_fault(x, EVT_ID_F_ACCESS, false, EVT_CLASS_IN);
	if (!s1_allows(desc, tbl, x->cd[0] & CD0_WXN, hd, access))
		return xlate_fault(x, EVT_ID_F_PERMISSION, false, EVT_CLASS_IN);

	/* HA/HD: set AF, or make a writable-clean leaf dirty, in place (a write through S2). */
	for (k = 0; k < 64; k++) {
		uint64_t new = desc;

		if (ha && !(desc & ARM_LPAE_AF))
			new |= ARM_LPAE_AF;
		if (write && hd && (desc & ARM_LPAE_DBM) && (desc & ARM_LPAE_S1_AP2))
			new &= ~ARM_LPAE_S1_AP2;
		if (new == desc)
			break;
		rc = xlate_s2(x, (table + 8 * arm_lpae_index(&geom, level, iova)), IOMMU_WRITE,
			      EVT_CLASS_TT, &pa, NULL);
		if (rc)
			return rc;
		if (__atomic_compare_exchange_n(where, &desc, new, false, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			desc = new;
	}

	/* The output IPA through stage 2, with the access's own permission. */
	rc = xlate_s2(x, oa | (iova & (size - 1)), write ? IOMMU_WRITE : IOMMU_READ, EVT_CLASS_IN,
		      &pa, &s2prot);
	if (rc)
		return rc;
	*phys = pa;

	/*
	 * What a hit may serve later: each kind (read, write, execute) at each privilege this
	 * walk would allow; an access of several kinds needs each one's bit.
	 */
	out->allow = s1_allow_bits(desc, tbl, x->cd[0] & CD0_WXN, s2prot);
	out->page = iova >> 12;
	out->phys = pa & ~UINT64_C(0xfff);
	out->s1_base = iova & ~(size - 1);
	out->s1_size = size;
	out->key = desc & ARM_LPAE_S1_NG
			   ? tlb_key(TLB_TAG_VALID, vmid, asid, out->page)
			   : tlb_key(TLB_TAG_VALID | TLB_TAG_GLOBAL, vmid, 0, out->page);
	return 0;
}

/* Deliver the fault of @x to the guest when the rules let it through (A.9). */
static void xlate_report(struct xlate *x)
{
	const struct arm_smmu_txn *txn = x->txn;
	unsigned int access = txn->access;
	uint64_t evt[4];
	bool record_bit;

	/* A vDEVICE-less master sees no events: the kernel cannot name it to the guest. */
	if (!x->id || x->s2 || x->master->vsmmu != x->vsmmu || !x->vsmmu->event_fn)
		return;
	/*
	 * A stage-1 fault of a CD with S=1 stalls (s1stalld made such a CD C_BAD_CD before): the
	 * event is the host's, which turns it into a page request (A.10); the guest sees none.
	 */
	if (x->id >= EVT_ID_F_TRANSLATION && x->id <= EVT_ID_F_PERMISSION && (x->cd[0] & CD0_S))
		return;
	/* F_* faults are recorded only with CD.R; configuration errors always are. */
	record_bit = x->id < EVT_ID_F_TRANSLATION || (x->cd[0] & CD0_R);
	if (!record_bit)
		return;
	evt[0] = x->id | (uint64_t)x->master->vsid << EVT0_SID_SHIFT;
	if (txn->ssv)
		evt[0] |= EVT0_SSV | (uint64_t)txn->ssid << EVT0_SSID_SHIFT;
	evt[1] = 0;
	evt[2] = 0;
	evt[3] = 0;
	if (x->id >= EVT_ID_F_TRANSLATION) {
		evt[1] = (uint64_t)x->class << EVT1_CLASS_SHIFT;
		if (access & ARM_SMMU_ACC_PRIV)
			evt[1] |= EVT1_PNU;
		if (access & ARM_SMMU_ACC_EXEC)
			evt[1] |= EVT1_IND;
		if (!(access & ARM_SMMU_ACC_WRITE))
			evt[1] |= EVT1_RNW;
		evt[2] = txn->iova;
	}
	x->vsmmu->event_fn(x->vsmmu->event_arg, evt);
}

static int arm_smmu_translate_nested(struct arm_smmu_master *master,
				     struct arm_smmu_nested *nested,
				     const struct arm_smmu_txn *txn, uint64_t *phys)
{
	struct arm_smmu_device *smmu = master->smmu;
	struct xlate x = {
		.master = master, .vsmmu = nested->vsmmu, .txn = txn,
		.s1stalld = (nested->ste[1] & STE1_S1STALLD) ||
			    !atomic_load_explicit(&master->stall, memory_order_relaxed),
	};
	unsigned int cfg = ARM_SMMU_FIELD(nested->ste[0], STE0_CFG_SHIFT, STE0_CFG_MASK);
	unsigned long gen, cd_gen;
	struct arm_smmu_tlb_ctx ctx;
	struct tlb_entry entry;
	uint32_t ssid;
	int rc;

	if (nested->invalid) {
		/* The host installs an abort STE; a guest's SMMU would say C_BAD_STE. */
		rc = xlate_fault(&x, EVT_ID_C_BAD_STE, false, EVT_CLASS_CD);
		goto out_report;
	}
	if (cfg == STE_CFG_ABORT)
		return -EFAULT; /* no event, as the architecture says */
	if (cfg == STE_CFG_BYPASS)
		goto s2_only;

	rc = xlate_substream(&x, nested->ste, &ssid);
	if (rc == 1)
		goto s2_only;
	if (rc)
		goto out_report;
	cd_gen = atomic_load_explicit(&master->cd_gen, memory_order_acquire);
	rc = xlate_cd(&x, nested->ste, ssid, cd_gen);
	if (rc)
		goto out_report;
	if (!(x.cd[0] & CD0_V)) {
		rc = xlate_fault(&x, EVT_ID_C_BAD_CD, false, EVT_CLASS_CD);
		goto out_report;
	}
	ctx = x.vsmmu->tlb;
	ctx.tag |= (x.cd[0] >> CD0_ASID_SHIFT) << TLB_KEY_ASID_SHIFT;
	if (arm_smmu_tlb_lookup(&ctx, txn->iova, txn->access, phys))
		return 0;

	atomic_fetch_add_explicit(&smmu->stat_misses, 1, memory_order_relaxed);
	gen = atomic_load_explicit(&smmu->tlb_gen, memory_order_acquire);
	rc = xlate_s1(&x, &entry, phys);
	if (!rc) {
		arm_smmu_tlb_fill(smmu, gen, &entry);
		return 0;
	}
out_report:
	xlate_report(&x);
	return rc;

s2_only:
	return xlate_s2(&x, txn->iova,
			txn->access & ARM_SMMU_ACC_WRITE ? IOMMU_WRITE : IOMMU_READ,
			EVT_CLASS_IN, phys, NULL);
}

int arm_smmu_master_translate(struct arm_smmu_master *master, const struct arm_smmu_txn *txn,
			      uint64_t *phys)
{
	struct iommu_domain *domain = atomic_load_explicit(&master->domain, memory_order_acquire);

	if (arm_smmu_domain_is_nested(domain))
		return arm_smmu_translate_nested(master, to_nested(domain), txn, phys);
	if (arm_smmu_domain_is_s2(domain)) {
		struct arm_smmu_domain *sd = to_smmu_domain(domain);
		int want = txn->access & ARM_SMMU_ACC_WRITE ? IOMMU_WRITE : IOMMU_READ;
		struct arm_lpae_leaf leaf;

		if (txn->ssv || arm_lpae_s2_walk(&sd->pt, txn->iova, want, &leaf) ||
		    !(arm_lpae_s2_prot(&sd->pt, leaf.desc) & want))
			return -EFAULT;
		*phys = leaf.phys;
		return 0;
	}
	return -EFAULT;
}

/*
 * A device's DMA through its nested domain: one 4 KiB page at a time (the TLB's grain), with
 * the access's own permission: a read never claims write access, so the engine asks again.
 */
static phys_addr_t arm_smmu_nested_dma_walk_dev(struct iommu_domain *domain, struct device *dev,
						uint32_t pasid, uint64_t iova, bool write,
						int *prot, uint64_t *size)
{
	struct arm_smmu_master *master = dev->iommu_data ? dev->iommu_data->priv : NULL;
	struct arm_smmu_txn txn = {
		.iova = iova,
		.access = write ? ARM_SMMU_ACC_WRITE : ARM_SMMU_ACC_READ,
		.ssv = pasid != IOMMU_NO_PASID,
		.ssid = pasid,
	};
	uint64_t phys;

	(void)domain;
	if (!master || arm_smmu_master_translate(master, &txn, &phys))
		return 0;
	*prot = write ? IOMMU_READ | IOMMU_WRITE : IOMMU_READ;
	*size = 4096;
	return phys;
}

/* ---- commands ------------------------------------------------------------------------------ */

/* The kernel's rewrite of one guest command (A.8); -EIO for what it does not forward. */
static int arm_vsmmu_convert_cmd(struct arm_vsmmu *vsmmu, uint64_t cmd[2])
{
	struct arm_smmu_master *m;
	uint64_t vsid;
	int rc = -EIO;

	switch (cmd[0] & CMDQ_OP_MASK) {
	case CMDQ_OP_TLBI_NSNH_ALL:
		cmd[0] = CMDQ_OP_TLBI_NH_ALL | (uint64_t)vsmmu->vmid << CMDQ_TLBI_0_VMID_SHIFT;
		cmd[1] = 0;
		return 0;
	case CMDQ_OP_TLBI_NH_VA:
	case CMDQ_OP_TLBI_NH_VAA:
	case CMDQ_OP_TLBI_NH_ALL:
	case CMDQ_OP_TLBI_NH_ASID:
		cmd[0] &= ~(CMDQ_TLBI_0_VMID_MASK << CMDQ_TLBI_0_VMID_SHIFT);
		cmd[0] |= (uint64_t)vsmmu->vmid << CMDQ_TLBI_0_VMID_SHIFT;
		return 0;
	case CMDQ_OP_ATC_INV:
	case CMDQ_OP_CFGI_CD:
	case CMDQ_OP_CFGI_CD_ALL:
		vsid = ARM_SMMU_FIELD(cmd[0], CMDQ_0_SID_SHIFT, CMDQ_0_SID_MASK);
		uiommu_mutex_lock(&vsmmu->smmu->lock);
		LIST_FOREACH(m, &vsmmu->smmu->masters, node) {
			if (m->vsmmu == vsmmu && m->vsid == vsid) {
				cmd[0] &= ~(CMDQ_0_SID_MASK << CMDQ_0_SID_SHIFT);
				cmd[0] |= (uint64_t)m->sid << CMDQ_0_SID_SHIFT;
				rc = 0;
				break;
			}
		}
		uiommu_mutex_unlock(&vsmmu->smmu->lock);
		return rc;
	default:
		return -EIO;
	}
}

/* The VA range of a TLBI_NH_VA/VAA (B.8): one address, or a range in TG units. */
static void tlbi_range(const uint64_t cmd[2], uint64_t *start, uint64_t *last)
{
	unsigned int tg = ARM_SMMU_FIELD(cmd[1], CMDQ_TLBI_1_TG_SHIFT, CMDQ_TLBI_1_TG_MASK);
	unsigned int num = ARM_SMMU_FIELD(cmd[0], CMDQ_TLBI_0_NUM_SHIFT, CMDQ_TLBI_0_NUM_MASK);
	unsigned int scale = ARM_SMMU_FIELD(cmd[0], CMDQ_TLBI_0_SCALE_SHIFT,
					    CMDQ_TLBI_0_SCALE_MASK);
	static const unsigned int tg_shift[4] = { 0, 12, 14, 16 };
	uint64_t size;

	*start = cmd[1] & CMDQ_TLBI_1_ADDR_MASK;
	if (!tg) {
		*last = *start;
		return;
	}
	size = (uint64_t)(num + 1) << (scale + tg_shift[tg]);
	*last = *start + size - 1 < *start ? UINT64_MAX : *start + size - 1;
}

/* The hardware's execution of one converted command. */
static void arm_smmu_cmd_exec(struct arm_smmu_device *smmu, const uint64_t cmd[2])
{
	uint16_t vmid = (uint16_t)ARM_SMMU_FIELD(cmd[0], CMDQ_TLBI_0_VMID_SHIFT,
						 CMDQ_TLBI_0_VMID_MASK);
	uint16_t asid = (uint16_t)ARM_SMMU_FIELD(cmd[0], CMDQ_TLBI_0_ASID_SHIFT,
						 CMDQ_TLBI_0_ASID_MASK);
	uint32_t sid = (uint32_t)ARM_SMMU_FIELD(cmd[0], CMDQ_0_SID_SHIFT, CMDQ_0_SID_MASK);
	uint32_t ssid = (uint32_t)ARM_SMMU_FIELD(cmd[0], CMDQ_0_SSID_SHIFT, CMDQ_0_SSID_MASK);
	struct arm_smmu_master *master;
	uint64_t start, last;

	switch (cmd[0] & CMDQ_OP_MASK) {
	case CMDQ_OP_TLBI_NH_ALL:
		arm_smmu_tlb_inv(smmu, vmid, TLB_INV_VMID, 0, 0, UINT64_MAX, false);
		break;
	case CMDQ_OP_TLBI_NH_ASID:
		arm_smmu_tlb_inv(smmu, vmid, TLB_INV_ASID, asid, 0, UINT64_MAX, false);
		break;
	case CMDQ_OP_TLBI_NH_VA:
		tlbi_range(cmd, &start, &last);
		arm_smmu_tlb_inv(smmu, vmid, TLB_INV_VA, asid, start, last,
				 cmd[1] & CMDQ_TLBI_1_LEAF);
		break;
	case CMDQ_OP_TLBI_NH_VAA:
		tlbi_range(cmd, &start, &last);
		arm_smmu_tlb_inv(smmu, vmid, TLB_INV_VAA, 0, start, last,
				 cmd[1] & CMDQ_TLBI_1_LEAF);
		break;
	case CMDQ_OP_CFGI_CD:
	case CMDQ_OP_CFGI_CD_ALL:
		uiommu_mutex_lock(&smmu->lock);
		master = arm_smmu_find_master_locked(smmu, sid);
		if (master)
			arm_smmu_cd_drop_locked(master,
						(cmd[0] & CMDQ_OP_MASK) == CMDQ_OP_CFGI_CD_ALL,
						ssid);
		uiommu_mutex_unlock(&smmu->lock);
		break;
	default:
		break; /* ATC_INV: the model has no ATC */
	}
}

void arm_vsmmu_batch_issue(struct arm_vsmmu *vsmmu, struct arm_vsmmu_batch *batch)
{
	uint32_t i;

	for (i = 0; i < batch->n; i++)
		arm_smmu_cmd_exec(vsmmu->smmu, batch->cmds[i]);
	batch->n = 0;
}

int arm_vsmmu_batch_add(struct arm_vsmmu *vsmmu, struct arm_vsmmu_batch *batch,
			const uint64_t cmd[2])
{
	uint64_t *slot = batch->cmds[batch->n];
	int rc;

	slot[0] = cmd[0];
	slot[1] = cmd[1];
	rc = arm_vsmmu_convert_cmd(vsmmu, slot);
	if (rc)
		return rc; /* the batch so far stays converted and unissued */
	if (++batch->n == ARM_SMMU_CMDQ_BATCH)
		arm_vsmmu_batch_issue(vsmmu, batch);
	return 0;
}

int arm_vsmmu_cache_invalidate(struct arm_vsmmu *vsmmu, uint64_t (*cmds)[2], uint32_t n,
			       uint32_t *done)
{
	struct arm_vsmmu_batch batch = { .n = 0 };
	uint32_t cur;
	int rc = 0;

	for (cur = 0; cur < n; cur++) {
		rc = arm_vsmmu_batch_add(vsmmu, &batch, cmds[cur]);
		if (rc)
			break;
		cmds[cur][0] = batch.cmds[(batch.n ? batch.n : ARM_SMMU_CMDQ_BATCH) - 1][0];
		cmds[cur][1] = batch.cmds[(batch.n ? batch.n : ARM_SMMU_CMDQ_BATCH) - 1][1];
	}
	if (!rc)
		arm_vsmmu_batch_issue(vsmmu, &batch);
	*done = cur;
	return rc;
}
