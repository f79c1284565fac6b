/* SPDX-License-Identifier: MIT */
/*
 * The Intel VT-d model: a scalable-mode IOMMU with nested translation, as the kernel's
 * drivers/iommu/intel/ drives it (../shared/spec/hw-iommus.md part C; docs/vtd.md).
 *
 * Two table formats, both 512 eight-byte entries per 4 KiB table:
 *   - the second stage (vtd-pgtable.c), the host's: the paging domain and the nest parent,
 *     4 or 5 levels, leaves of 4 KiB, 2 MiB and 1 GiB, R/W rights at every level, A/D bits
 *     set by the walk while the PASID entry's SSADE is on (dirty tracking);
 *   - the first stage (x86-64 IA-32e), the guest's, in the guest's own memory: a nested
 *     domain points at its root by guest-physical address, and every table fetch, every
 *     accessed/dirty update and the output address go through the second stage.
 *
 * "Physical" addresses are addresses of this process, as everywhere in uiommu; a guest's
 * physical address (GPA) is an IOVA of the nest parent.
 */
#ifndef UIOMMU_DRIVERS_INTEL_VTD_H
#define UIOMMU_DRIVERS_INTEL_VTD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iommu/iommu.h"

/* ---- registers (C.1, C.2) -------------------------------------------------------------------- */

#define VTD_CAP_ND_SHIFT 0
#define VTD_CAP_CM (UINT64_C(1) << 7)
#define VTD_CAP_SAGAW_SHIFT 8
#define VTD_CAP_SAGAW_4L (UINT64_C(1) << 10)
#define VTD_CAP_SAGAW_5L (UINT64_C(1) << 11)
#define VTD_CAP_MGAW_SHIFT 16
#define VTD_CAP_SSLPS_2M (UINT64_C(1) << 34)
#define VTD_CAP_SSLPS_1G (UINT64_C(1) << 35)
#define VTD_CAP_PSI (UINT64_C(1) << 39)
#define VTD_CAP_MAMV_SHIFT 48
#define VTD_CAP_FS1GP (UINT64_C(1) << 56)
#define VTD_CAP_FS5LP (UINT64_C(1) << 60)

#define VTD_ECAP_C (UINT64_C(1) << 0)
#define VTD_ECAP_QI (UINT64_C(1) << 1)
#define VTD_ECAP_DT (UINT64_C(1) << 2)
#define VTD_ECAP_SC (UINT64_C(1) << 7)
#define VTD_ECAP_NEST (UINT64_C(1) << 26)
#define VTD_ECAP_PRS (UINT64_C(1) << 29)
#define VTD_ECAP_ERS (UINT64_C(1) << 30)
#define VTD_ECAP_SRS (UINT64_C(1) << 31)
#define VTD_ECAP_EAFS (UINT64_C(1) << 34)
#define VTD_ECAP_PSS_SHIFT 35
#define VTD_ECAP_PASID (UINT64_C(1) << 40)
#define VTD_ECAP_PDS (UINT64_C(1) << 42)
#define VTD_ECAP_SMTS (UINT64_C(1) << 43)
#define VTD_ECAP_SSADS (UINT64_C(1) << 45)
#define VTD_ECAP_SSTS (UINT64_C(1) << 46)
#define VTD_ECAP_FSTS (UINT64_C(1) << 47)
#define VTD_ECAP_SMPWC (UINT64_C(1) << 48)

/* The interrupt window every device behind a VT-d unit has reserved (IOMMU_RESV_MSI). */
#define VTD_MSI_WINDOW_START UINT64_C(0xfee00000)
#define VTD_MSI_WINDOW_LENGTH UINT64_C(0x100000)

/* What one instance implements (the topology's per-instance "features"). */
struct vtd_features {
	bool five_level;     /* second stage of 5 levels, MGAW 57 (else 4 levels, MGAW 48) */
	bool nest;           /* ECAP.NEST: nest parents and nested domains */
	bool fs5lp;          /* CAP.FS5LP: nested addr_width 57 */
	bool fs1gp;          /* CAP.FS1GP: first-stage 1 GiB leaves */
	bool ssads;          /* ECAP.SSADS + SMPWC: dirty tracking on the second stage */
	bool srs;            /* ECAP.SRS: supervisor requests (IOMMU_VTD_S1_SRE) */
	bool eafs;           /* ECAP.EAFS: the extended accessed flag (IOMMU_VTD_S1_EAFE) */
	bool prs;            /* ECAP.PRS + DT + PDS: page requests */
	unsigned int pasid_bits; /* ECAP.PASID with PSS = bits - 1; 0: no PASIDs */
};

/* Everything on, 4-level second stage, 20-bit PASIDs: what QEMU's fsts=on accepts. */
extern const struct vtd_features vtd_default_features;

/* ---- the second-stage format (vtd-pgtable.c) ------------------------------------------------- */

#define VTD_PAGE_SHIFT 12
#define VTD_PAGE_SIZE (UINT64_C(1) << VTD_PAGE_SHIFT)
#define VTD_SZ_2M (UINT64_C(1) << 21)
#define VTD_SZ_1G (UINT64_C(1) << 30)
#define VTD_PTES 512u

#define VTD_SS_R (UINT64_C(1) << 0)
#define VTD_SS_W (UINT64_C(1) << 1)
#define VTD_SS_PS (UINT64_C(1) << 7)
#define VTD_SS_A (UINT64_C(1) << 8)
#define VTD_SS_D (UINT64_C(1) << 9)
#define VTD_ADDR_MASK UINT64_C(0x000ffffffffff000) /* bits 51:12 */

#define VTD_FS_P (UINT64_C(1) << 0)
#define VTD_FS_RW (UINT64_C(1) << 1)
#define VTD_FS_US (UINT64_C(1) << 2)
#define VTD_FS_A (UINT64_C(1) << 5)
#define VTD_FS_D (UINT64_C(1) << 6)
#define VTD_FS_PS (UINT64_C(1) << 7)
#define VTD_FS_EA (UINT64_C(1) << 10)
#define VTD_FS_XD (UINT64_C(1) << 63)

/*
 * A second-stage table. @root and @levels are immutable; entries change through atomics only:
 * map and unmap of disjoint ranges and walks may run at once (the io_pgtable contract).
 */
struct vtd_ss {
	uint64_t *root;
	unsigned int levels;      /* 4 or 5 */
	unsigned int width;       /* input bits: 48 or 57 */
	bool no_readonly;         /* a nest parent: erratum 772415 refuses maps without write */
	_Atomic bool ssade;       /* the walk sets A/D (dirty tracking on) */
};

int vtd_ss_init(struct vtd_ss *ss, unsigned int levels);
void vtd_ss_destroy(struct vtd_ss *ss);
/* As io_pgtable_map_pages(); -EINVAL also for a write-less map into a nest parent. */
int vtd_ss_map(struct vtd_ss *ss, uint64_t iova, uint64_t paddr, uint64_t pgsize,
	       size_t pgcount, int prot, size_t *mapped);
/* As io_pgtable_unmap_pages(): consecutive entries of @pgsize, stopping at a hole. */
size_t vtd_ss_unmap(struct vtd_ss *ss, uint64_t iova, uint64_t pgsize, size_t pgcount);

/* One second-stage translation (the hardware's walk). */
struct vtd_ss_leaf {
	uint64_t phys;  /* of the input address, offset included */
	uint64_t size;  /* leaf size */
	int prot;       /* IOMMU_READ | IOMMU_WRITE: the rights of every level */
	bool clean;     /* SSADE on and the leaf's D bit clear */
};

/*
 * The walk of @iova for @access (IOMMU_READ or IOMMU_WRITE; 0: a software lookup that changes
 * nothing). With SSADE it sets A in every entry used and D in the leaf on a write that the
 * rights allow. -ENOENT unmapped or outside
 * the width, -EACCES when the rights refuse @access (the leaf is still filled in).
 */
int vtd_ss_walk(struct vtd_ss *ss, uint64_t iova, int access, struct vtd_ss_leaf *leaf);
/* The dirty leaves meeting [@iova, @iova + @size), whole; cleared unless @no_clear. */
void vtd_ss_read_and_clear_dirty(struct vtd_ss *ss, uint64_t iova, uint64_t size, bool no_clear,
				 struct iommu_dirty_bitmap *dirty);

/* ---- the first-stage walk through the second stage (vtd-pgtable.c) --------------------------- */

/* A request's attributes, beside the access. */
#define VTD_REQ_WRITE (1u << 0)
#define VTD_REQ_PRIV (1u << 1)  /* PR=1: a supervisor request */
#define VTD_REQ_EXEC (1u << 2)  /* ER=1: an execute request */

enum vtd_fault_reason {
	VTD_FAULT_NONE = 0,
	VTD_FS_NON_CANONICAL,  /* the input address is not canonical for the paging mode */
	VTD_FS_PRIV,           /* a supervisor request without SRE */
	VTD_FS_NOT_PRESENT,    /* P=0 at some level */
	VTD_FS_RESERVED,       /* a reserved bit set (PS at PML4/PML5, 1 GiB without FS1GP, ...) */
	VTD_FS_USER,           /* a user request and U/S=0 at some level */
	VTD_FS_WRITE,          /* a write and R/W=0 at some level (WPE for supervisors) */
	VTD_FS_EXEC,           /* an execute request and XD=1 at some level */
	VTD_SS_NOT_PRESENT,    /* stage 2 has no translation for a GPA of the walk */
	VTD_SS_PERM,           /* stage 2 refuses the access to a GPA of the walk */
};

/* A first-stage configuration: the guest's PASID entry fields (iommu_hwpt_vtd_s1). */
struct vtd_s1_cfg {
	uint64_t pgtbl_gpa;       /* FSPTPTR, 4 KiB aligned */
	unsigned int levels;      /* 4 (addr_width 48) or 5 (57) */
	bool sre, wpe, eafe;
	bool fs1gp;               /* the instance's CAP.FS1GP */
	unsigned int gpa_width;   /* address bits of entries at and above it are reserved */
};

struct vtd_xlate {
	uint64_t gpa;             /* the first stage's output */
	uint64_t phys;            /* through the second stage */
	int prot;                 /* IOMMU_READ | IOMMU_WRITE this request kind may do */
	bool clean;               /* a later write must walk again (D bits to set) */
	enum vtd_fault_reason reason;
	uint64_t fault_gpa;       /* VTD_SS_*: the GPA stage 2 refused */
};

/*
 * The nested walk of @iova for a request @req (VTD_REQ_*). 0 with @x filled; -EFAULT with
 * @x->reason for a fault (nothing is written to the tables then). A/D (and EA with EAFE) are
 * set as hardware does, in guest memory through stage 2.
 */
int vtd_nested_walk(const struct vtd_s1_cfg *cfg, struct vtd_ss *ss, uint64_t iova,
		    unsigned int req, struct vtd_xlate *x);

/* ---- the driver (vtd.c) ------------------------------------------------------------------------ */

extern const struct iommu_ops vtd_iommu_ops;

/*
 * Registers @iommu with the core, driven by this driver with @features (copied). The features
 * decide @iommu->max_pasids and ->dirty_tracking; ->msi_window and ->deferred_flush are the
 * caller's. -EINVAL for pasid_bits above 20, -ENOMEM.
 */
int vtd_iommu_register(struct iommu_device *iommu, const struct vtd_features *features);
void vtd_iommu_unregister(struct iommu_device *iommu);
bool vtd_iommu_is_instance(const struct iommu_device *iommu);
/* The registers the model reports (GET_HW_INFO): derived from the features. */
void vtd_iommu_regs(const struct iommu_device *iommu, uint64_t *cap, uint64_t *ecap);

/*
 * A nested (first-stage) domain over the nest parent @parent, from IOMMU_HWPT_DATA_VTD_S1
 * @user_data: the kernel's intel_iommu_domain_alloc_nested() checks and errnos. @flags are
 * the driver-visible IOMMU_HWPT_ALLOC_* (PASID only). The ops' domain_alloc_nested. Its
 * cache_invalidate_user takes IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 entries with
 * intel_nested_cache_invalidate_user()'s rules (C.9, A.8).
 */
struct iommu_domain *vtd_domain_alloc_nested(struct device *dev, struct iommu_domain *parent,
					     uint32_t flags,
					     const struct iommu_user_data *user_data);

bool vtd_domain_is_nested(const struct iommu_domain *domain);
/* The second-stage table of a paging domain of this driver; NULL for any other domain. */
struct vtd_ss *vtd_domain_ss(struct iommu_domain *domain);
/* The nested domain's walk for a user request (what the DMA engine's IOTLB fills use). */
int vtd_domain_translate(struct iommu_domain *domain, uint64_t iova, unsigned int req,
			 struct vtd_xlate *x);

/*
 * The scalable-mode PASID-table entry the driver wrote for (@dev, @pasid) (C.8): 0 with
 * @val[0..7]; -ENOENT when the entry is not present.
 */
int vtd_dev_pasid_entry(struct device *dev, uint32_t pasid, uint64_t val[8]);

/*
 * The hardware's page request queue: one 32-byte Page Request Descriptor (C.10) from @dev.
 * Requests the kernel answers itself (non-canonical, PM with RD/WR, ER with RD, ...) get an
 * INVALID page group response at once; stop markers are dropped; the rest go to the core's
 * I/O page fault layer. 0, or the errno of the report.
 */
int vtd_prq_report(struct device *dev, const uint64_t desc[4]);
/* Page group responses sent to @dev (C.10 descriptors); the last one into @desc if not NULL. */
unsigned int vtd_dev_page_responses(struct device *dev, uint64_t desc[4]);

#endif
