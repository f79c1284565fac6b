/* SPDX-License-Identifier: MIT */
/*
 * The ARM SMMUv3 model: an SMMU instance with its ID registers, stage-2 paging domains (which
 * are also nest parents), a vIOMMU (vSMMU) per parent with its vDEVICEs (vSID -> master), nested
 * domains made from a guest's vSTE, the nested walk (vSTE -> CD table -> stage-1 tables, every
 * fetch through stage 2), an ASID-tagged TLB and CD cache with the guest's invalidation
 * commands, and stage-1 fault events for the vEVENTQ. The format facts are
 * ../shared/spec/hw-iommus.md part B; the iommufd-facing errnos part A (the kernel's
 * arm-smmu-v3-iommufd.c). docs/smmuv3.md says what is modelled and what is not.
 *
 * Vocabulary: a "master" is a device behind the SMMU with its one StreamID (SID); "vSID" the
 * StreamID the guest knows it by. "IPA" is a guest physical address, the input of stage 2;
 * "PA" the output, a host virtual address of this process as everywhere in uiommu.
 */
#ifndef UIOMMU_DRIVERS_ARM_SMMU_V3_ARM_SMMU_V3_H
#define UIOMMU_DRIVERS_ARM_SMMU_V3_ARM_SMMU_V3_H

#include <stdbool.h>
#include <stdint.h>

#include "drivers/arm-smmu-v3/arm-lpae.h"
#include "iommu/iommu.h"

#define ARM_SMMU_BIT(n) (UINT64_C(1) << (n))
#define ARM_SMMU_FIELD(v, shift, mask) (((v) >> (shift)) & (mask))

/* ---- ID registers (B.1) ------------------------------------------------------------------- */

#define IDR0_S2P ARM_SMMU_BIT(0)
#define IDR0_S1P ARM_SMMU_BIT(1)
#define IDR0_TTF_AARCH64 (UINT64_C(2) << 2)
#define IDR0_COHACC ARM_SMMU_BIT(4)
#define IDR0_HTTU_SHIFT 6
#define IDR0_HTTU_AD UINT64_C(2)
#define IDR0_ASID16 ARM_SMMU_BIT(12)
#define IDR0_VMID16 ARM_SMMU_BIT(18)
#define IDR0_CD2L ARM_SMMU_BIT(19)
#define IDR0_TTENDIAN_LE (UINT64_C(2) << 21)
#define IDR0_STALL_MODEL_TERM (UINT64_C(1) << 24)
#define IDR0_STALL_MODEL_STALL (UINT64_C(0) << 24) /* stall and terminate */
#define IDR0_ST_LEVEL_2LVL (UINT64_C(1) << 27)
#define IDR1_SIDSIZE_SHIFT 0
#define IDR1_SSIDSIZE_SHIFT 6
#define IDR1_EVTQS_SHIFT 16
#define IDR1_CMDQS_SHIFT 21
#define IDR3_RIL ARM_SMMU_BIT(10)
#define IDR5_OAS_48 UINT64_C(5)
#define IDR5_GRAN4K ARM_SMMU_BIT(4)
#define IDR5_GRAN16K ARM_SMMU_BIT(5)
#define IDR5_GRAN64K ARM_SMMU_BIT(6)
#define ARM_SMMU_AIDR_V3_2 UINT32_C(0x02)

/* ---- STE (B.2): the fields a vSTE may carry ------------------------------------------------ */

#define STE0_V ARM_SMMU_BIT(0)
#define STE0_CFG_SHIFT 1
#define STE0_CFG_MASK UINT64_C(7)
#define STE_CFG_ABORT 0u
#define STE_CFG_BYPASS 4u
#define STE_CFG_S1_TRANS 5u
#define STE0_S1FMT_SHIFT 4
#define STE0_S1FMT_MASK UINT64_C(3)
#define STE_S1FMT_LINEAR 0u
#define STE_S1FMT_64K_L2 2u
#define STE_S1FMT_4K_L2 1u
#define STE0_S1CTXPTR_MASK UINT64_C(0x000fffffffffffc0) /* bits 51:6 */
#define STE0_S1CDMAX_SHIFT 59
#define STE0_S1CDMAX_MASK UINT64_C(0x1f)
#define STE1_S1DSS_MASK UINT64_C(3)
#define STE_S1DSS_TERMINATE 0u
#define STE_S1DSS_BYPASS 1u
#define STE_S1DSS_SSID0 2u
#define STE1_S1CIR (UINT64_C(3) << 2)
#define STE1_S1COR (UINT64_C(3) << 4)
#define STE1_S1CSH (UINT64_C(3) << 6)
#define STE1_S1STALLD ARM_SMMU_BIT(27)
#define STE1_EATS_SHIFT 28
#define STE1_EATS_MASK UINT64_C(3)

#define STE0_NESTING_ALLOWED                                                                  \
	(STE0_V | (STE0_CFG_MASK << STE0_CFG_SHIFT) | (STE0_S1FMT_MASK << STE0_S1FMT_SHIFT) | \
	 STE0_S1CTXPTR_MASK | (STE0_S1CDMAX_MASK << STE0_S1CDMAX_SHIFT))
#define STE1_NESTING_ALLOWED                                                           \
	(STE1_S1DSS_MASK | STE1_S1CIR | STE1_S1COR | STE1_S1CSH | STE1_S1STALLD |      \
	 (STE1_EATS_MASK << STE1_EATS_SHIFT))

/* ---- CD (B.4) ------------------------------------------------------------------------------ */

#define CD_SIZE 64u
#define CD0_T0SZ_MASK UINT64_C(0x3f)
#define CD0_TG0_SHIFT 6
#define CD0_TG0_MASK UINT64_C(3)
#define CD_TG_4K 0u
#define CD_TG_64K 1u
#define CD_TG_16K 2u
#define CD0_EPD0 ARM_SMMU_BIT(14)
#define CD0_ENDI ARM_SMMU_BIT(15)
#define CD0_EPD1 ARM_SMMU_BIT(30)
#define CD0_V ARM_SMMU_BIT(31)
#define CD0_IPS_SHIFT 32
#define CD0_IPS_MASK UINT64_C(7)
#define CD0_AFFD ARM_SMMU_BIT(35)
#define CD0_WXN ARM_SMMU_BIT(36)
#define CD0_TBI0 ARM_SMMU_BIT(38)
#define CD0_AA64 ARM_SMMU_BIT(41)
#define CD0_HD ARM_SMMU_BIT(42)
#define CD0_HA ARM_SMMU_BIT(43)
#define CD0_S ARM_SMMU_BIT(44)
#define CD0_R ARM_SMMU_BIT(45)
#define CD0_A ARM_SMMU_BIT(46)
#define CD0_ASET ARM_SMMU_BIT(47)
#define CD0_ASID_SHIFT 48
#define CD1_HAD0 ARM_SMMU_BIT(1)
#define CD1_TTB0_MASK UINT64_C(0x000ffffffffffff0) /* bits 51:4 */
#define L1CD_V ARM_SMMU_BIT(0)
#define L1CD_L2PTR_MASK UINT64_C(0x000ffffffffff000) /* bits 51:12 */

/* ---- commands (B.8) ----------------------------------------------------------------------- */

#define CMDQ_OP_MASK UINT64_C(0xff)
#define CMDQ_OP_CFGI_STE 0x03u
#define CMDQ_OP_CFGI_ALL 0x04u
#define CMDQ_OP_CFGI_CD 0x05u
#define CMDQ_OP_CFGI_CD_ALL 0x06u
#define CMDQ_OP_TLBI_NH_ALL 0x10u
#define CMDQ_OP_TLBI_NH_ASID 0x11u
#define CMDQ_OP_TLBI_NH_VA 0x12u
#define CMDQ_OP_TLBI_NH_VAA 0x13u
#define CMDQ_OP_TLBI_S12_VMALL 0x28u
#define CMDQ_OP_TLBI_S2_IPA 0x2au
#define CMDQ_OP_TLBI_NSNH_ALL 0x30u
#define CMDQ_OP_ATC_INV 0x40u
#define CMDQ_OP_PRI_RESP 0x41u
#define CMDQ_OP_RESUME 0x44u
#define CMDQ_OP_CMD_SYNC 0x46u
#define CMDQ_0_SSID_SHIFT 12
#define CMDQ_0_SSID_MASK UINT64_C(0xfffff)
#define CMDQ_0_SID_SHIFT 32
#define CMDQ_RESUME_0_RESP_SHIFT 12 /* RESP [13:12]; STAG is DW1 [15:0] */
#define CMDQ_0_SID_MASK UINT64_C(0xffffffff)
#define CMDQ_TLBI_0_NUM_SHIFT 12
#define CMDQ_TLBI_0_NUM_MASK UINT64_C(0x1f)
#define CMDQ_TLBI_0_SCALE_SHIFT 20
#define CMDQ_TLBI_0_SCALE_MASK UINT64_C(0x1f)
#define CMDQ_TLBI_0_VMID_SHIFT 32
#define CMDQ_TLBI_0_VMID_MASK UINT64_C(0xffff)
#define CMDQ_TLBI_0_ASID_SHIFT 48
#define CMDQ_TLBI_0_ASID_MASK UINT64_C(0xffff)
#define CMDQ_TLBI_1_LEAF ARM_SMMU_BIT(0)
#define CMDQ_TLBI_1_TG_SHIFT 10
#define CMDQ_TLBI_1_TG_MASK UINT64_C(3)
#define CMDQ_TLBI_1_ADDR_MASK (~UINT64_C(0xfff))
/* The kernel issues guest commands in batches of this many, each followed by its CMD_SYNC. */
#define ARM_SMMU_CMDQ_BATCH 63u

/* ---- events (B.9) ------------------------------------------------------------------------- */

#define EVT_ID_C_BAD_STE 0x04u
#define EVT_ID_F_STREAM_DISABLED 0x06u
#define EVT_ID_C_BAD_SUBSTREAMID 0x08u
#define EVT_ID_C_BAD_CD 0x0au
#define EVT_ID_F_TRANSLATION 0x10u
#define EVT_ID_F_ADDR_SIZE 0x11u
#define EVT_ID_F_ACCESS 0x12u
#define EVT_ID_F_PERMISSION 0x13u
#define EVT0_SSV ARM_SMMU_BIT(11)
#define EVT0_SSID_SHIFT 12
#define EVT0_SID_SHIFT 32
#define EVT1_PNU ARM_SMMU_BIT(33)  /* privileged */
#define EVT1_IND ARM_SMMU_BIT(34)  /* instruction */
#define EVT1_RNW ARM_SMMU_BIT(35)  /* read */
#define EVT1_S2 ARM_SMMU_BIT(39)
#define EVT1_CLASS_SHIFT 40
#define EVT_CLASS_CD 0u
#define EVT_CLASS_TT 1u
#define EVT_CLASS_IN 2u

/* ---- the model ---------------------------------------------------------------------------- */

struct arm_smmu_device;
struct arm_smmu_master;
struct arm_vsmmu;

/* What an instance implements; the IDRs say exactly this. */
struct arm_smmu_features {
	bool nesting;             /* S1P and S2P */
	bool httu;                /* HA/HD in CDs, DBM dirty tracking (IDR0.HTTU = 2) */
	unsigned int ssid_bits;   /* IDR1.SSIDSIZE, 0..20 */
	unsigned int sid_bits;    /* IDR1.SIDSIZE, 16..32 */
};

#define ARM_SMMU_FEATURES_DEFAULT { .nesting = true, .httu = true, .ssid_bits = 20, .sid_bits = 16 }

/* The driver's blocked domain: a master attached to it translates nothing. */
extern struct iommu_domain arm_smmu_blocked_domain;

/** arm_smmu_device_alloc() - an instance; ERR_PTR(-EINVAL) for bad features, (-ENOMEM) */
struct arm_smmu_device *arm_smmu_device_alloc(const struct arm_smmu_features *features);
/** arm_smmu_device_free() - the reverse; no master, domain or vSMMU may remain */
void arm_smmu_device_free(struct arm_smmu_device *smmu);

/* The raw registers GET_HW_INFO reports (struct iommu_hw_info_arm_smmuv3's layout). */
struct arm_smmu_hw_info {
	uint32_t flags;
	uint32_t reserved;
	uint32_t idr[6];
	uint32_t iidr;
	uint32_t aidr;
};
void arm_smmu_hw_info(const struct arm_smmu_device *smmu, struct arm_smmu_hw_info *info);

/** arm_smmu_master_alloc() - a device with StreamID @sid; -EINVAL beyond SIDSIZE, -EEXIST */
struct arm_smmu_master *arm_smmu_master_alloc(struct arm_smmu_device *smmu, uint32_t sid);
/** arm_smmu_master_free() - detached (blocked) first; its vDEVICE must be gone */
void arm_smmu_master_free(struct arm_smmu_master *master);
/**
 * arm_smmu_master_set_stall() - may @master's transactions stall (firmware's "dma-can-stall")?
 * Off by default. A stalling master's host STE leaves S1STALLD clear, so a guest CD with S=1
 * makes its stage-1 faults stall: no event for the guest, a page request for the host
 * (the caller's I/O page fault path), resumed by arm_smmu_master_resume(). Without it, CD.S=1
 * is C_BAD_CD (the host sets S1STALLD, as the kernel does for masters that cannot stall).
 */
void arm_smmu_master_set_stall(struct arm_smmu_master *master, bool stall);
/**
 * arm_smmu_master_resume() - CMD_RESUME for the stalled transaction @stag of @master, with
 * @action CMDQ_RESUME_RETRY, _ABORT or _TERM: recorded (the model's transactions are retried
 * by their issuer, the DMA engine, which the page response reaches on its own).
 */
void arm_smmu_master_resume(struct arm_smmu_master *master, uint16_t stag, unsigned int action);
/** arm_smmu_master_resumes() - how many CMD_RESUMEs @master had; the last into @cmd if any */
unsigned int arm_smmu_master_resumes(struct arm_smmu_master *master, uint64_t cmd[2]);
#define CMDQ_RESUME_RETRY 1u
#define CMDQ_RESUME_ABORT 2u
#define CMDQ_RESUME_TERM 0u

/**
 * arm_smmu_domain_alloc_paging() - a stage-2 paging domain of @smmu
 * @flags: IOMMU_DOMAIN_ALLOC_NEST_PARENT (alone) or IOMMU_DOMAIN_ALLOC_DIRTY_TRACKING
 * @pg_shift: the granule, 12, 14 or 16 (the page sizes follow)
 *
 * Return: the domain; ERR_PTR(-EOPNOTSUPP) for other flags, NEST_PARENT without nesting or
 * dirty tracking without HTTU; (-EINVAL) for a bad granule; (-ENOMEM).
 */
struct iommu_domain *arm_smmu_domain_alloc_paging(struct arm_smmu_device *smmu, uint32_t flags,
						  unsigned int pg_shift);
bool arm_smmu_domain_is_s2(const struct iommu_domain *domain);
/*
 * The IOTLB model's walker for stage-2 domains (iotlb_walk_fn): the leaf's S2AP as IOMMU_READ |
 * IOMMU_WRITE, | IOTLB_PROT_CLEAN for a writable-clean leaf; a write access marks it dirty.
 */
phys_addr_t arm_smmu_s2_iotlb_walk(struct iommu_domain *domain, uint64_t iova, int access,
				   int *prot);
/* The VMID of a stage-2 domain (its vSMMU tags guest TLB entries with it). */
uint16_t arm_smmu_domain_vmid(struct iommu_domain *domain);

/**
 * arm_vsmmu_alloc() - a vIOMMU of type ARM_SMMUV3 over nest parent @parent
 *
 * Return: the vSMMU; ERR_PTR(-EOPNOTSUPP) without nesting; (-EINVAL) when @parent is not a
 * NEST_PARENT stage-2 domain of @smmu; (-ENOMEM). It holds @parent until arm_vsmmu_free().
 */
struct arm_vsmmu *arm_vsmmu_alloc(struct arm_smmu_device *smmu, struct iommu_domain *parent);
/** arm_vsmmu_free() - no vDEVICE or nested domain may remain */
void arm_vsmmu_free(struct arm_vsmmu *vsmmu);

/*
 * Where a vSMMU's events go: @evt is a 32-byte record (B.9) with the vSID in its StreamID
 * field, the ARM_SMMUV3 vEVENT payload. Called from the translating thread, with no lock of
 * the model held.
 */
typedef void (*arm_vsmmu_event_fn)(void *arg, const uint64_t evt[4]);
void arm_vsmmu_set_event_sink(struct arm_vsmmu *vsmmu, arm_vsmmu_event_fn fn, void *arg);

/**
 * arm_vsmmu_vdevice_add() - @master is @vsid to the guest
 *
 * Return: 0; -EINVAL when @master sits behind another SMMU; -EEXIST when @vsid is taken or
 * @master already has a vDEVICE; -ENOMEM.
 */
int arm_vsmmu_vdevice_add(struct arm_vsmmu *vsmmu, struct arm_smmu_master *master,
			  uint64_t vsid);
void arm_vsmmu_vdevice_del(struct arm_vsmmu *vsmmu, struct arm_smmu_master *master);

/**
 * arm_vsmmu_domain_alloc_nested() - a nested domain from the vSTE in @user_data
 *
 * Return: the domain; ERR_PTR(-EOPNOTSUPP) for @flags; (-EINVAL) for a data type other than
 * IOMMU_HWPT_DATA_ARM_SMMUV3 or a length other than 16; (-EIO) for a vSTE with bits outside
 * the nesting-allowed masks, a Config other than abort/bypass/S1-translate, or EATS > 1;
 * (-ENOMEM).
 */
struct iommu_domain *arm_vsmmu_domain_alloc_nested(struct arm_vsmmu *vsmmu, uint32_t flags,
						   const struct iommu_user_data *user_data);
/* The stored vSTE of a nested domain (EATS cleared, all zero for V=0) and its ATS wish. */
void arm_smmu_nested_vste(struct iommu_domain *domain, uint64_t ste[2], bool *enable_ats);

/**
 * arm_smmu_master_attach() - what @master translates through from now on
 * @domain: a stage-2 or nested domain, or NULL for blocked
 *
 * Attaching drops the master's cached CDs (the host's CFGI_STE); TLB entries stay, tagged by
 * VMID and ASID, as in hardware.
 *
 * Return: 0; -EINVAL for a domain of another SMMU; -ENOENT for a nested domain whose vSTE
 * translates (Config=5) when @master has no vDEVICE in the domain's vSMMU.
 */
int arm_smmu_master_attach(struct arm_smmu_master *master, struct iommu_domain *domain);

/* Access kinds of a transaction. */
#define ARM_SMMU_ACC_READ 1u
#define ARM_SMMU_ACC_WRITE 2u
#define ARM_SMMU_ACC_EXEC 4u
#define ARM_SMMU_ACC_PRIV 8u

struct arm_smmu_txn {
	uint64_t iova;
	unsigned int access;     /* ARM_SMMU_ACC_* */
	bool ssv;                /* a SubstreamID (PASID) comes with it */
	uint32_t ssid;
};

/**
 * arm_smmu_master_translate() - a transaction of @master, as the SMMU handles it
 * @phys: out, where it goes
 *
 * Stage-1 faults of a nested master with a vDEVICE become events for its vSMMU's sink.
 * Callers keep the attached domain alive (the core's group mutex over a DMA).
 *
 * Return: 0; -EFAULT for a transaction that was aborted (with or without an event).
 */
int arm_smmu_master_translate(struct arm_smmu_master *master, const struct arm_smmu_txn *txn,
			      uint64_t *phys);

/**
 * arm_vsmmu_cache_invalidate() - the guest's commands, as IOMMU_HWPT_INVALIDATE gives them
 * @cmds: @n commands of two little-endian words each, converted in place (VMID, SID)
 * @done: out, the entry_num the kernel reports (commands handled, or the failing index)
 *
 * Return: 0; -EIO for an opcode the kernel does not forward or an unknown vSID.
 */
int arm_vsmmu_cache_invalidate(struct arm_vsmmu *vsmmu, uint64_t (*cmds)[2], uint32_t n,
			       uint32_t *done);

/*
 * The kernel's batching of guest commands, one at a time (iommufd hands the driver one entry
 * at a time): arm_vsmmu_batch_add() converts @cmd (-EIO as above) and issues the batch once it
 * holds ARM_SMMU_CMDQ_BATCH; arm_vsmmu_batch_issue() issues the rest after the last entry. A
 * conversion error leaves the batch unissued, as the kernel leaves it.
 */
struct arm_vsmmu_batch {
	uint32_t n;
	uint64_t cmds[ARM_SMMU_CMDQ_BATCH][2];
};
int arm_vsmmu_batch_add(struct arm_vsmmu *vsmmu, struct arm_vsmmu_batch *batch,
			const uint64_t cmd[2]);
void arm_vsmmu_batch_issue(struct arm_vsmmu *vsmmu, struct arm_vsmmu_batch *batch);

/* TLB and CD-cache statistics (tests and benchmarks). */
struct arm_smmu_stats {
	uint64_t tlb_misses;   /* walks (hits are not counted: the hit path stores nothing) */
	uint64_t cd_fetches;   /* CDs read from guest memory */
};
void arm_smmu_stats(struct arm_smmu_device *smmu, struct arm_smmu_stats *stats);
/*
 * A (VMID, ASID) context of lookups in an instance's TLB: what a translation knows before it
 * looks (hardware has it from its STE and CD), made once by arm_smmu_tlb_ctx_init().
 */
struct arm_smmu_tlb_ctx {
	uint64_t tag;        /* the key's VMID, ASID and kind */
	void *sets;          /* the instance's TLB sets */
	unsigned int mix;    /* the VMID's share of the set index */
};
void arm_smmu_tlb_ctx_init(struct arm_smmu_tlb_ctx *ctx, struct arm_smmu_device *smmu,
			   uint16_t vmid, uint16_t asid);
/* The TLB's hit path alone, for @iova in @ctx (benchmarks): true on a hit. */
bool arm_smmu_tlb_probe(const struct arm_smmu_tlb_ctx *ctx, uint64_t iova, unsigned int access,
			uint64_t *phys);
/* Valid stage-1 (combined) TLB entries of @vmid, not the walk caches' (a snapshot, tests). */
unsigned int arm_smmu_tlb_count(struct arm_smmu_device *smmu, uint16_t vmid);

#endif
