/* SPDX-License-Identifier: MIT */
/*
 * uiommu: the /dev/iommu (iommufd) ioctl ABI.
 *
 * A self-contained description of the iommufd user interface, usable in
 * place of <linux/iommufd.h>: identifiers, numbers and struct layouts match
 * the Linux uAPI, so programs written against the kernel header compile
 * unchanged. Written by us from the facts collected in
 * ../shared/spec/iommufd-abi.md (sections 2 and 6); the prose is our own.
 *
 * Layout rules that hold for every command:
 *  - the request word is _IO(IOMMUFD_TYPE, nr) == 0x3b00 | nr; no size or
 *    direction bits are encoded;
 *  - the argument struct starts with a __u32 "size" holding the size the
 *    caller compiled against; the kernel accepts shorter structs down to
 *    a per-command minimum and longer ones whose extra bytes are zero;
 *  - 64-bit fields are __aligned_u64 so offsets do not depend on the ABI;
 *  - fields called __reserved must be zero;
 *  - fields prefixed out_ are written back by the call.
 *
 * Errno conventions: ENOTTY unknown request; E2BIG non-zero bytes past the
 * known struct; EOPNOTSUPP unsupported flag/type/option; EINVAL bad field
 * value; ENOENT unknown object ID or IOVA; ENOMEM; EOVERFLOW on arithmetic
 * overflow.
 *
 * The guard is the kernel's own source-tree name. The installed copy of the
 * kernel header (after "make headers_install") is guarded by _IOMMUFD_H
 * instead, so that name is honoured too: whichever of the two headers comes
 * first wins and the other one becomes empty.
 */
#ifndef _UAPI_IOMMUFD_H
#define _UAPI_IOMMUFD_H
#ifndef _IOMMUFD_H
#define _IOMMUFD_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define IOMMUFD_TYPE (';')

/* Command numbers; the request word is _IO(IOMMUFD_TYPE, number). */
enum {
	IOMMUFD_CMD_BASE = 0x80,
	IOMMUFD_CMD_DESTROY = IOMMUFD_CMD_BASE,
	IOMMUFD_CMD_IOAS_ALLOC = 0x81,
	IOMMUFD_CMD_IOAS_ALLOW_IOVAS = 0x82,
	IOMMUFD_CMD_IOAS_COPY = 0x83,
	IOMMUFD_CMD_IOAS_IOVA_RANGES = 0x84,
	IOMMUFD_CMD_IOAS_MAP = 0x85,
	IOMMUFD_CMD_IOAS_UNMAP = 0x86,
	IOMMUFD_CMD_OPTION = 0x87,
	IOMMUFD_CMD_VFIO_IOAS = 0x88,
	IOMMUFD_CMD_HWPT_ALLOC = 0x89,
	IOMMUFD_CMD_GET_HW_INFO = 0x8a,
	IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING = 0x8b,
	IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP = 0x8c,
	IOMMUFD_CMD_HWPT_INVALIDATE = 0x8d,
	IOMMUFD_CMD_FAULT_QUEUE_ALLOC = 0x8e,
	IOMMUFD_CMD_IOAS_MAP_FILE = 0x8f,
	IOMMUFD_CMD_VIOMMU_ALLOC = 0x90,
	IOMMUFD_CMD_VDEVICE_ALLOC = 0x91,
	IOMMUFD_CMD_IOAS_CHANGE_PROCESS = 0x92,
	IOMMUFD_CMD_VEVENTQ_ALLOC = 0x93,
	IOMMUFD_CMD_HW_QUEUE_ALLOC = 0x94,
};

/* ------------------------------------------------------------------------
 * 0x80 IOMMU_DESTROY
 * ------------------------------------------------------------------------ */

/**
 * struct iommu_destroy - argument of IOMMU_DESTROY
 * @size: sizeof(struct iommu_destroy)
 * @id: ID of any object userspace may destroy
 *
 * ENOENT for an unknown ID; EBUSY while other objects still reference it.
 */
struct iommu_destroy {
	__u32 size;
	__u32 id;
};
#define IOMMU_DESTROY _IO(IOMMUFD_TYPE, IOMMUFD_CMD_DESTROY)

/* ------------------------------------------------------------------------
 * 0x81 IOMMU_IOAS_ALLOC
 * ------------------------------------------------------------------------ */

/**
 * struct iommu_ioas_alloc - argument of IOMMU_IOAS_ALLOC
 * @size: sizeof(struct iommu_ioas_alloc)
 * @flags: reserved, must be 0
 * @out_ioas_id: ID of the new, empty IO address space
 */
struct iommu_ioas_alloc {
	__u32 size;
	__u32 flags;
	__u32 out_ioas_id;
};
#define IOMMU_IOAS_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC)

/* ------------------------------------------------------------------------
 * 0x82 IOMMU_IOAS_ALLOW_IOVAS, 0x84 IOMMU_IOAS_IOVA_RANGES
 * ------------------------------------------------------------------------ */

/**
 * struct iommu_iova_range - one IOVA interval
 * @start: first IOVA of the interval
 * @last: last IOVA of the interval, inclusive
 */
struct iommu_iova_range {
	__aligned_u64 start;
	__aligned_u64 last;
};

/**
 * struct iommu_ioas_iova_ranges - argument of IOMMU_IOAS_IOVA_RANGES
 * @size: sizeof(struct iommu_ioas_iova_ranges)
 * @ioas_id: IOAS to query
 * @num_iovas: in: capacity of @allowed_iovas; out: number of ranges
 * @__reserved: must be 0
 * @allowed_iovas: user pointer to an array of struct iommu_iova_range
 * @out_iova_alignment: alignment that MAP/COPY IOVAs and lengths must obey
 *
 * Reports the IOVA ranges currently usable in the IOAS. When the array is
 * too short the call fails with EMSGSIZE after filling what fits and
 * setting @num_iovas to the count needed.
 */
struct iommu_ioas_iova_ranges {
	__u32 size;
	__u32 ioas_id;
	__u32 num_iovas;
	__u32 __reserved;
	__aligned_u64 allowed_iovas;
	__aligned_u64 out_iova_alignment;
};
#define IOMMU_IOAS_IOVA_RANGES _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_IOVA_RANGES)

/**
 * struct iommu_ioas_allow_iovas - argument of IOMMU_IOAS_ALLOW_IOVAS
 * @size: sizeof(struct iommu_ioas_allow_iovas)
 * @ioas_id: IOAS to change
 * @num_iovas: number of entries in @allowed_iovas (0 clears the list)
 * @__reserved: must be 0
 * @allowed_iovas: user pointer to an array of struct iommu_iova_range
 *
 * Replaces the list of IOVA ranges that must stay usable: later device
 * attachments may not narrow the IOAS past them, and automatic IOVA
 * allocation stays inside them. EADDRINUSE if they hit a reserved range.
 */
struct iommu_ioas_allow_iovas {
	__u32 size;
	__u32 ioas_id;
	__u32 num_iovas;
	__u32 __reserved;
	__aligned_u64 allowed_iovas;
};
#define IOMMU_IOAS_ALLOW_IOVAS _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOW_IOVAS)

/* ------------------------------------------------------------------------
 * 0x85 IOMMU_IOAS_MAP, 0x8f IOMMU_IOAS_MAP_FILE, 0x83 IOMMU_IOAS_COPY
 * ------------------------------------------------------------------------ */

/**
 * enum iommufd_ioas_map_flags - flags of MAP, MAP_FILE and COPY
 * @IOMMU_IOAS_MAP_FIXED_IOVA: the caller chooses the IOVA; without it the
 *                             IOVA is picked automatically and returned
 * @IOMMU_IOAS_MAP_WRITEABLE: devices may write through the mapping
 * @IOMMU_IOAS_MAP_READABLE: devices may read through the mapping
 */
enum iommufd_ioas_map_flags {
	IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0,
	IOMMU_IOAS_MAP_WRITEABLE = 1 << 1,
	IOMMU_IOAS_MAP_READABLE = 1 << 2,
};

/**
 * struct iommu_ioas_map - argument of IOMMU_IOAS_MAP
 * @size: sizeof(struct iommu_ioas_map)
 * @flags: enum iommufd_ioas_map_flags
 * @ioas_id: IOAS to map into
 * @__reserved: must be 0
 * @user_va: start of the process memory to map
 * @length: number of bytes
 * @iova: input with FIXED_IOVA, otherwise output of the chosen IOVA
 *
 * EEXIST when a fixed IOVA range is already in use; ENOSPC when no
 * automatic IOVA fits.
 */
struct iommu_ioas_map {
	__u32 size;
	__u32 flags;
	__u32 ioas_id;
	__u32 __reserved;
	__aligned_u64 user_va;
	__aligned_u64 length;
	__aligned_u64 iova;
};
#define IOMMU_IOAS_MAP _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP)

/**
 * struct iommu_ioas_map_file - argument of IOMMU_IOAS_MAP_FILE
 * @size: sizeof(struct iommu_ioas_map_file)
 * @flags: enum iommufd_ioas_map_flags
 * @ioas_id: IOAS to map into
 * @fd: memfd (or, on newer kernels, dma-buf) backing the mapping
 * @start: byte offset into the file
 * @length: number of bytes
 * @iova: as for struct iommu_ioas_map
 *
 * Same rules as IOMMU_IOAS_MAP. EINVAL for a zero length or a range past
 * the end of the file; ENODEV for a revoked dma-buf.
 */
struct iommu_ioas_map_file {
	__u32 size;
	__u32 flags;
	__u32 ioas_id;
	__s32 fd;
	__aligned_u64 start;
	__aligned_u64 length;
	__aligned_u64 iova;
};
#define IOMMU_IOAS_MAP_FILE _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP_FILE)

/**
 * struct iommu_ioas_copy - argument of IOMMU_IOAS_COPY
 * @size: sizeof(struct iommu_ioas_copy)
 * @flags: enum iommufd_ioas_map_flags, applied to the destination
 * @dst_ioas_id: IOAS receiving the mapping
 * @src_ioas_id: IOAS holding the existing mapping (may equal @dst_ioas_id)
 * @length: number of bytes
 * @dst_iova: as @iova of struct iommu_ioas_map, for the destination
 * @src_iova: start of the already-mapped source range
 *
 * Shares the pages already pinned for the source range. ENOENT when the
 * source range is not entirely mapped.
 */
struct iommu_ioas_copy {
	__u32 size;
	__u32 flags;
	__u32 dst_ioas_id;
	__u32 src_ioas_id;
	__aligned_u64 length;
	__aligned_u64 dst_iova;
	__aligned_u64 src_iova;
};
#define IOMMU_IOAS_COPY _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_COPY)

/* ------------------------------------------------------------------------
 * 0x86 IOMMU_IOAS_UNMAP
 * ------------------------------------------------------------------------ */

/**
 * struct iommu_ioas_unmap - argument of IOMMU_IOAS_UNMAP
 * @size: sizeof(struct iommu_ioas_unmap)
 * @ioas_id: IOAS to unmap from
 * @iova: first IOVA of the range
 * @length: in: range length; out: number of bytes actually unmapped
 *
 * The range must cover whole mappings (ENOENT otherwise). iova 0 with
 * length U64_MAX removes everything, even from an empty IOAS.
 */
struct iommu_ioas_unmap {
	__u32 size;
	__u32 ioas_id;
	__aligned_u64 iova;
	__aligned_u64 length;
};
#define IOMMU_IOAS_UNMAP _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_UNMAP)

/* ------------------------------------------------------------------------
 * 0x87 IOMMU_OPTION
 * ------------------------------------------------------------------------ */

/**
 * enum iommufd_option - option selectors of IOMMU_OPTION
 * @IOMMU_OPTION_RLIMIT_MODE: global (object_id 0); 0 charges pinned pages
 *                            to the user (default), 1 to the process.
 *                            Setting it needs privilege.
 * @IOMMU_OPTION_HUGE_PAGES: per IOAS (object_id = IOAS ID); 1 (default)
 *                           lets contiguous pages form large IOPTEs,
 *                           0 restricts mappings to PAGE_SIZE
 */
enum iommufd_option {
	IOMMU_OPTION_RLIMIT_MODE = 0,
	IOMMU_OPTION_HUGE_PAGES = 1,
};

/**
 * enum iommufd_option_ops - operations of IOMMU_OPTION
 * @IOMMU_OPTION_OP_SET: store val64 into the option
 * @IOMMU_OPTION_OP_GET: return the option in val64
 */
enum iommufd_option_ops {
	IOMMU_OPTION_OP_SET = 0,
	IOMMU_OPTION_OP_GET = 1,
};

/**
 * struct iommu_option - argument of IOMMU_OPTION
 * @size: sizeof(struct iommu_option)
 * @option_id: enum iommufd_option
 * @op: enum iommufd_option_ops
 * @__reserved: must be 0
 * @object_id: object the option applies to, 0 for global options
 * @val64: value to set, or the value read back (the only output)
 */
struct iommu_option {
	__u32 size;
	__u32 option_id;
	__u16 op;
	__u16 __reserved;
	__u32 object_id;
	__aligned_u64 val64;
};
#define IOMMU_OPTION _IO(IOMMUFD_TYPE, IOMMUFD_CMD_OPTION)

/* ------------------------------------------------------------------------
 * 0x88 IOMMU_VFIO_IOAS
 * ------------------------------------------------------------------------ */

/**
 * enum iommufd_vfio_ioas_op - operations of IOMMU_VFIO_IOAS
 * @IOMMU_VFIO_IOAS_GET: report the IOAS used by the VFIO-compat ioctls
 *                       (ENODEV if none)
 * @IOMMU_VFIO_IOAS_SET: select that IOAS
 * @IOMMU_VFIO_IOAS_CLEAR: forget it; the IOAS itself survives
 */
enum iommufd_vfio_ioas_op {
	IOMMU_VFIO_IOAS_GET = 0,
	IOMMU_VFIO_IOAS_SET = 1,
	IOMMU_VFIO_IOAS_CLEAR = 2,
};

/**
 * struct iommu_vfio_ioas - argument of IOMMU_VFIO_IOAS
 * @size: sizeof(struct iommu_vfio_ioas)
 * @ioas_id: input for SET, output for GET
 * @op: enum iommufd_vfio_ioas_op
 * @__reserved: must be 0
 */
struct iommu_vfio_ioas {
	__u32 size;
	__u32 ioas_id;
	__u16 op;
	__u16 __reserved;
};
#define IOMMU_VFIO_IOAS _IO(IOMMUFD_TYPE, IOMMUFD_CMD_VFIO_IOAS)

/* ------------------------------------------------------------------------
 * 0x89 IOMMU_HWPT_ALLOC
 * ------------------------------------------------------------------------ */

/**
 * enum iommufd_hwpt_alloc_flags - flags of IOMMU_HWPT_ALLOC
 * @IOMMU_HWPT_ALLOC_NEST_PARENT: the paging HWPT may be the stage-2 parent
 *                                of nested HWPTs or of a vIOMMU
 * @IOMMU_HWPT_ALLOC_DIRTY_TRACKING: the HWPT supports dirty tracking; only
 *                                   devices able to track dirty pages may
 *                                   attach
 * @IOMMU_HWPT_FAULT_ID_VALID: @fault_id names a fault queue that receives
 *                             the HWPT's I/O page faults
 * @IOMMU_HWPT_ALLOC_PASID: the HWPT may be attached to PASIDs
 */
enum iommufd_hwpt_alloc_flags {
	IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0,
	IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1,
	IOMMU_HWPT_FAULT_ID_VALID = 1 << 2,
	IOMMU_HWPT_ALLOC_PASID = 1 << 3,
};

/**
 * enum iommu_hwpt_vtd_s1_flags - attribute bits of struct iommu_hwpt_vtd_s1
 * @IOMMU_VTD_S1_SRE: supervisor requests allowed
 * @IOMMU_VTD_S1_EAFE: extended access flag enabled
 * @IOMMU_VTD_S1_WPE: write protection enabled
 */
enum iommu_hwpt_vtd_s1_flags {
	IOMMU_VTD_S1_SRE = 1 << 0,
	IOMMU_VTD_S1_EAFE = 1 << 1,
	IOMMU_VTD_S1_WPE = 1 << 2,
};

/**
 * struct iommu_hwpt_vtd_s1 - VT-d stage-1 table (IOMMU_HWPT_DATA_VTD_S1)
 * @flags: enum iommu_hwpt_vtd_s1_flags
 * @pgtbl_addr: guest address of the stage-1 page table root
 * @addr_width: input address width of that table
 * @__reserved: must be 0
 */
struct iommu_hwpt_vtd_s1 {
	__aligned_u64 flags;
	__aligned_u64 pgtbl_addr;
	__u32 addr_width;
	__u32 __reserved;
};

/**
 * struct iommu_hwpt_arm_smmuv3 - SMMUv3 nested STE (IOMMU_HWPT_DATA_ARM_SMMUV3)
 * @ste: the first two little-endian 64-bit words of the guest Stream Table
 *       Entry; illegal or unsupported contents give EIO
 */
struct iommu_hwpt_arm_smmuv3 {
	__aligned_le64 ste[2];
};

/**
 * struct iommu_hwpt_amd_guest - AMD guest Device Table Entry (IOMMU_HWPT_DATA_AMD_GUEST)
 * @dte: the guest's 256-bit DTE, four 64-bit words, pointing at its I/O page table
 */
struct iommu_hwpt_amd_guest {
	__aligned_u64 dte[4];
};

/**
 * enum iommu_hwpt_data_type - driver data formats of IOMMU_HWPT_ALLOC
 * @IOMMU_HWPT_DATA_NONE: no data; allocates a kernel-managed paging HWPT
 * @IOMMU_HWPT_DATA_VTD_S1: struct iommu_hwpt_vtd_s1
 * @IOMMU_HWPT_DATA_ARM_SMMUV3: struct iommu_hwpt_arm_smmuv3
 * @IOMMU_HWPT_DATA_AMD_GUEST: struct iommu_hwpt_amd_guest
 */
enum iommu_hwpt_data_type {
	IOMMU_HWPT_DATA_NONE = 0,
	IOMMU_HWPT_DATA_VTD_S1 = 1,
	IOMMU_HWPT_DATA_ARM_SMMUV3 = 2,
	IOMMU_HWPT_DATA_AMD_GUEST = 3,
};

/**
 * struct iommu_hwpt_alloc - argument of IOMMU_HWPT_ALLOC
 * @size: sizeof(struct iommu_hwpt_alloc)
 * @flags: enum iommufd_hwpt_alloc_flags
 * @dev_id: device the HWPT is created for
 * @pt_id: an IOAS (gives a paging HWPT), or a NEST_PARENT paging HWPT or a
 *         vIOMMU (gives a nested HWPT, which needs driver data)
 * @out_hwpt_id: ID of the new HWPT
 * @__reserved: must be 0
 * @data_type: enum iommu_hwpt_data_type
 * @data_len: length of the driver data
 * @data_uptr: user pointer to the driver data
 * @fault_id: fault queue ID, read only with IOMMU_HWPT_FAULT_ID_VALID
 * @__reserved2: must be 0
 *
 * @fault_id and @__reserved2 were added later; the minimum size ends at
 * @__reserved (24 bytes).
 */
struct iommu_hwpt_alloc {
	__u32 size;
	__u32 flags;
	__u32 dev_id;
	__u32 pt_id;
	__u32 out_hwpt_id;
	__u32 __reserved;
	__u32 data_type;
	__u32 data_len;
	__aligned_u64 data_uptr;
	__u32 fault_id;
	__u32 __reserved2;
};
#define IOMMU_HWPT_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_ALLOC)

/* ------------------------------------------------------------------------
 * 0x8a IOMMU_GET_HW_INFO
 * ------------------------------------------------------------------------ */

/**
 * enum iommu_hw_info_vtd_flags - flags of struct iommu_hw_info_vtd
 * @IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17: read-only mappings must not be
 *                                         used on a nesting parent (Intel
 *                                         erratum 772415)
 */
enum iommu_hw_info_vtd_flags {
	IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 = 1 << 0,
};

/**
 * struct iommu_hw_info_vtd - VT-d information (IOMMU_HW_INFO_TYPE_INTEL_VTD)
 * @flags: enum iommu_hw_info_vtd_flags
 * @__reserved: must be 0
 * @cap_reg: raw VT-d Capability Register
 * @ecap_reg: raw VT-d Extended Capability Register
 */
struct iommu_hw_info_vtd {
	__u32 flags;
	__u32 __reserved;
	__aligned_u64 cap_reg;
	__aligned_u64 ecap_reg;
};

/**
 * struct iommu_hw_info_arm_smmuv3 - SMMUv3 information
 *                                   (IOMMU_HW_INFO_TYPE_ARM_SMMUV3)
 * @flags: must be 0
 * @__reserved: must be 0
 * @idr: raw SMMU_IDR0..SMMU_IDR5
 * @iidr: raw SMMU_IIDR
 * @aidr: raw SMMU_AIDR
 */
struct iommu_hw_info_arm_smmuv3 {
	__u32 flags;
	__u32 __reserved;
	__u32 idr[6];
	__u32 iidr;
	__u32 aidr;
};

/**
 * struct iommu_hw_info_tegra241_cmdqv - Tegra241 CMDQV information
 *                                       (IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV)
 * @flags: must be 0
 * @version: CMDQV hardware version
 * @log2vcmdqs: log2 of the number of virtual command queues
 * @log2vsids: log2 of the number of stream-ID replacements
 * @__reserved: must be 0
 */
struct iommu_hw_info_tegra241_cmdqv {
	__u32 flags;
	__u8 version;
	__u8 log2vcmdqs;
	__u8 log2vsids;
	__u8 __reserved;
};

/**
 * struct iommu_hw_info_amd - AMD IOMMU information (IOMMU_HW_INFO_TYPE_AMD)
 * @efr: the raw Extended Feature Register (MMIO offset 0x30)
 * @efr2: the raw Extended Feature 2 Register (MMIO offset 0x1a0)
 * The values are the hardware's; the VMM decides which features its guest sees.
 */
struct iommu_hw_info_amd {
	__aligned_u64 efr;
	__aligned_u64 efr2;
};

/**
 * enum iommu_hw_info_type - formats of the IOMMU_GET_HW_INFO driver data
 * @IOMMU_HW_INFO_TYPE_NONE: output: the driver reports no data
 * @IOMMU_HW_INFO_TYPE_DEFAULT: input: let the driver pick its format
 * @IOMMU_HW_INFO_TYPE_INTEL_VTD: struct iommu_hw_info_vtd
 * @IOMMU_HW_INFO_TYPE_ARM_SMMUV3: struct iommu_hw_info_arm_smmuv3
 * @IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV: struct iommu_hw_info_tegra241_cmdqv
 * @IOMMU_HW_INFO_TYPE_AMD: struct iommu_hw_info_amd
 */
enum iommu_hw_info_type {
	IOMMU_HW_INFO_TYPE_NONE = 0,
	IOMMU_HW_INFO_TYPE_DEFAULT = 0,
	IOMMU_HW_INFO_TYPE_INTEL_VTD = 1,
	IOMMU_HW_INFO_TYPE_ARM_SMMUV3 = 2,
	IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV = 3,
	IOMMU_HW_INFO_TYPE_AMD = 4,
};

/**
 * enum iommufd_hw_capabilities - bits of iommu_hw_info.out_capabilities
 * @IOMMU_HW_CAP_DIRTY_TRACKING: the IOMMU can track dirty IOVAs, so
 *                               IOMMU_HWPT_SET_DIRTY_TRACKING and
 *                               IOMMU_HWPT_GET_DIRTY_BITMAP work
 * @IOMMU_HW_CAP_PCI_PASID_EXEC: PCI PASID Execute permission supported
 *                               (meaningless when out_max_pasid_log2 is 0)
 * @IOMMU_HW_CAP_PCI_PASID_PRIV: PCI PASID Privileged mode supported
 *                               (meaningless when out_max_pasid_log2 is 0)
 * @IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED: the device cannot use ATS (it has none,
 *                                      or its IOMMU cannot serve it); its
 *                                      absence means ATS may be enabled
 */
enum iommufd_hw_capabilities {
	IOMMU_HW_CAP_DIRTY_TRACKING = 1 << 0,
	IOMMU_HW_CAP_PCI_PASID_EXEC = 1 << 1,
	IOMMU_HW_CAP_PCI_PASID_PRIV = 1 << 2,
	IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED = 1 << 3,
};

/**
 * enum iommufd_hw_info_flags - flags of struct iommu_hw_info
 * @IOMMU_HW_INFO_FLAG_INPUT_TYPE: @in_data_type selects the format wanted;
 *                                 without it the driver default is used
 */
enum iommufd_hw_info_flags {
	IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1 << 0,
};

/**
 * struct iommu_hw_info - argument of IOMMU_GET_HW_INFO
 * @size: sizeof(struct iommu_hw_info)
 * @flags: enum iommufd_hw_info_flags
 * @dev_id: bound device to query
 * @data_len: in: size of the user buffer; out: size of the driver's data
 * @data_uptr: user buffer for the driver data; a larger buffer has its tail
 *             zeroed, a smaller one receives a truncated copy
 * @in_data_type: requested format (enum iommu_hw_info_type), read only
 *                with IOMMU_HW_INFO_FLAG_INPUT_TYPE
 * @out_data_type: format of the data written (shares storage with
 *                 @in_data_type)
 * @out_max_pasid_log2: PASID width supported by the device, 0 for none
 * @__reserved: must be 0
 * @out_capabilities: enum iommufd_hw_capabilities
 */
struct iommu_hw_info {
	__u32 size;
	__u32 flags;
	__u32 dev_id;
	__u32 data_len;
	__aligned_u64 data_uptr;
	union {
		__u32 in_data_type;
		__u32 out_data_type;
	};
	__u8 out_max_pasid_log2;
	__u8 __reserved[3];
	__aligned_u64 out_capabilities;
};
#define IOMMU_GET_HW_INFO _IO(IOMMUFD_TYPE, IOMMUFD_CMD_GET_HW_INFO)

/* ------------------------------------------------------------------------
 * 0x8b IOMMU_HWPT_SET_DIRTY_TRACKING, 0x8c IOMMU_HWPT_GET_DIRTY_BITMAP
 * ------------------------------------------------------------------------ */

/**
 * enum iommufd_hwpt_set_dirty_tracking_flags - flags of
 *                                              IOMMU_HWPT_SET_DIRTY_TRACKING
 * @IOMMU_HWPT_DIRTY_TRACKING_ENABLE: turn tracking on (clear: turn it off)
 */
enum iommufd_hwpt_set_dirty_tracking_flags {
	IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1,
};

/**
 * struct iommu_hwpt_set_dirty_tracking - argument of
 *                                        IOMMU_HWPT_SET_DIRTY_TRACKING
 * @size: sizeof(struct iommu_hwpt_set_dirty_tracking)
 * @flags: enum iommufd_hwpt_set_dirty_tracking_flags
 * @hwpt_id: paging HWPT to switch
 * @__reserved: must be 0
 */
struct iommu_hwpt_set_dirty_tracking {
	__u32 size;
	__u32 flags;
	__u32 hwpt_id;
	__u32 __reserved;
};
#define IOMMU_HWPT_SET_DIRTY_TRACKING \
	_IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING)

/**
 * enum iommufd_hwpt_get_dirty_bitmap_flags - flags of
 *                                            IOMMU_HWPT_GET_DIRTY_BITMAP
 * @IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR: report dirty state but keep it
 */
enum iommufd_hwpt_get_dirty_bitmap_flags {
	IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1,
};

/**
 * struct iommu_hwpt_get_dirty_bitmap - argument of IOMMU_HWPT_GET_DIRTY_BITMAP
 * @size: sizeof(struct iommu_hwpt_get_dirty_bitmap)
 * @hwpt_id: paging HWPT to read
 * @flags: enum iommufd_hwpt_get_dirty_bitmap_flags
 * @__reserved: must be 0
 * @iova: IOVA described by bit 0
 * @length: length of the IOVA range
 * @page_size: IOVA bytes covered by one bit
 * @data: user pointer to the bitmap; bit n (word n / 64, bit n % 64 of an
 *        array of __u64) stands for iova + n * page_size. No alignment is
 *        required of the pointer.
 */
struct iommu_hwpt_get_dirty_bitmap {
	__u32 size;
	__u32 hwpt_id;
	__u32 flags;
	__u32 __reserved;
	__aligned_u64 iova;
	__aligned_u64 length;
	__aligned_u64 page_size;
	__aligned_u64 data;
};
#define IOMMU_HWPT_GET_DIRTY_BITMAP \
	_IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP)

/* ------------------------------------------------------------------------
 * 0x8d IOMMU_HWPT_INVALIDATE
 * ------------------------------------------------------------------------ */

/**
 * enum iommu_hwpt_invalidate_data_type - entry formats of
 *                                        IOMMU_HWPT_INVALIDATE
 * @IOMMU_HWPT_INVALIDATE_DATA_VTD_S1: struct iommu_hwpt_vtd_s1_invalidate
 * @IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3: struct
 *                                          iommu_viommu_arm_smmuv3_invalidate
 */
enum iommu_hwpt_invalidate_data_type {
	IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 = 0,
	IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 = 1,
};

/**
 * enum iommu_hwpt_vtd_s1_invalidate_flags - flags of
 *                                           struct iommu_hwpt_vtd_s1_invalidate
 * @IOMMU_VTD_INV_FLAGS_LEAF: only leaf entries changed; paging-structure
 *                            caches may be kept
 */
enum iommu_hwpt_vtd_s1_invalidate_flags {
	IOMMU_VTD_INV_FLAGS_LEAF = 1 << 0,
};

/**
 * struct iommu_hwpt_vtd_s1_invalidate - one VT-d stage-1 invalidation
 * @addr: first address, 4 KiB aligned
 * @npages: number of 4 KiB pages (addr 0 with U64_MAX pages: everything)
 * @flags: enum iommu_hwpt_vtd_s1_invalidate_flags
 * @__reserved: must be 0
 */
struct iommu_hwpt_vtd_s1_invalidate {
	__aligned_u64 addr;
	__aligned_u64 npages;
	__u32 flags;
	__u32 __reserved;
};

/**
 * struct iommu_viommu_arm_smmuv3_invalidate - one SMMUv3 invalidation
 * @cmd: a 128-bit SMMUv3 command-queue entry, little-endian; commands the
 *       kernel does not accept give EIO
 */
struct iommu_viommu_arm_smmuv3_invalidate {
	__aligned_le64 cmd[2];
};

/**
 * struct iommu_hwpt_invalidate - argument of IOMMU_HWPT_INVALIDATE
 * @size: sizeof(struct iommu_hwpt_invalidate)
 * @hwpt_id: nested HWPT or vIOMMU whose caches are invalidated
 * @data_uptr: user pointer to an array of driver entries
 * @data_type: enum iommu_hwpt_invalidate_data_type
 * @entry_len: size of one entry in bytes
 * @entry_num: in: number of entries; out: number handled successfully.
 *             0 only checks that @data_type is supported.
 * @__reserved: must be 0
 */
struct iommu_hwpt_invalidate {
	__u32 size;
	__u32 hwpt_id;
	__aligned_u64 data_uptr;
	__u32 data_type;
	__u32 entry_len;
	__u32 entry_num;
	__u32 __reserved;
};
#define IOMMU_HWPT_INVALIDATE _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_INVALIDATE)

/* ------------------------------------------------------------------------
 * 0x8e IOMMU_FAULT_QUEUE_ALLOC and the records exchanged on the fault fd
 * ------------------------------------------------------------------------ */

/**
 * enum iommu_hwpt_pgfault_flags - bits of iommu_hwpt_pgfault.flags
 * @IOMMU_PGFAULT_FLAGS_PASID_VALID: @pasid is meaningful
 * @IOMMU_PGFAULT_FLAGS_LAST_PAGE: last request of its fault group
 */
enum iommu_hwpt_pgfault_flags {
	IOMMU_PGFAULT_FLAGS_PASID_VALID = 1 << 0,
	IOMMU_PGFAULT_FLAGS_LAST_PAGE = 1 << 1,
};

/**
 * enum iommu_hwpt_pgfault_perm - bits of iommu_hwpt_pgfault.perm
 * @IOMMU_PGFAULT_PERM_READ: read access requested
 * @IOMMU_PGFAULT_PERM_WRITE: write access requested
 * @IOMMU_PGFAULT_PERM_EXEC: PASID prefix had Execute Requested set
 * @IOMMU_PGFAULT_PERM_PRIV: PASID prefix had Privileged Mode Requested set
 */
enum iommu_hwpt_pgfault_perm {
	IOMMU_PGFAULT_PERM_READ = 1 << 0,
	IOMMU_PGFAULT_PERM_WRITE = 1 << 1,
	IOMMU_PGFAULT_PERM_EXEC = 1 << 2,
	IOMMU_PGFAULT_PERM_PRIV = 1 << 3,
};

/**
 * struct iommu_hwpt_pgfault - one fault record read from a fault fd
 * @flags: enum iommu_hwpt_pgfault_flags
 * @dev_id: object ID of the faulting device
 * @pasid: PASID of the request
 * @grpid: page request group index
 * @perm: enum iommu_hwpt_pgfault_perm
 * @__reserved: 0
 * @addr: faulting address
 * @length: expected access length hint, 0 when unknown
 * @cookie: group identifier to echo in struct iommu_hwpt_page_response;
 *          every record of a group carries the same cookie
 */
struct iommu_hwpt_pgfault {
	__u32 flags;
	__u32 dev_id;
	__u32 pasid;
	__u32 grpid;
	__u32 perm;
	__u32 __reserved;
	__aligned_u64 addr;
	__u32 length;
	__u32 cookie;
};

/**
 * enum iommufd_page_response_code - outcome written back for a fault group
 * @IOMMUFD_PAGE_RESP_SUCCESS: fault resolved, the device may retry
 *                             (PCIe "Success")
 * @IOMMUFD_PAGE_RESP_INVALID: fault not resolved, do not retry
 *                             (PCIe "Invalid Request")
 */
enum iommufd_page_response_code {
	IOMMUFD_PAGE_RESP_SUCCESS = 0,
	IOMMUFD_PAGE_RESP_INVALID = 1,
};

/**
 * struct iommu_hwpt_page_response - one response written to a fault fd
 * @cookie: cookie of the fault group being answered
 * @code: enum iommufd_page_response_code
 */
struct iommu_hwpt_page_response {
	__u32 cookie;
	__u32 code;
};

/**
 * struct iommu_fault_alloc - argument of IOMMU_FAULT_QUEUE_ALLOC
 * @size: sizeof(struct iommu_fault_alloc)
 * @flags: must be 0
 * @out_fault_id: ID of the new fault queue object
 * @out_fault_fd: new file descriptor: read struct iommu_hwpt_pgfault
 *                records from it, write struct iommu_hwpt_page_response
 */
struct iommu_fault_alloc {
	__u32 size;
	__u32 flags;
	__u32 out_fault_id;
	__u32 out_fault_fd;
};
#define IOMMU_FAULT_QUEUE_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_FAULT_QUEUE_ALLOC)

/* ------------------------------------------------------------------------
 * 0x90 IOMMU_VIOMMU_ALLOC
 * ------------------------------------------------------------------------ */

/**
 * enum iommu_viommu_type - vIOMMU kinds
 * @IOMMU_VIOMMU_TYPE_DEFAULT: reserved
 * @IOMMU_VIOMMU_TYPE_ARM_SMMUV3: ARM SMMUv3
 * @IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV: ARM SMMUv3 with the Tegra241 CMDQV
 *                                    extension (driver data: struct
 *                                    iommu_viommu_tegra241_cmdqv)
 */
enum iommu_viommu_type {
	IOMMU_VIOMMU_TYPE_DEFAULT = 0,
	IOMMU_VIOMMU_TYPE_ARM_SMMUV3 = 1,
	IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV = 2,
};

/**
 * struct iommu_viommu_tegra241_cmdqv - Tegra241 CMDQV vIOMMU output data
 * @out_vintf_mmap_offset: mmap offset, on the iommufd, of the virtual
 *                         interface's page 0
 * @out_vintf_mmap_length: length to pass to that mmap
 */
struct iommu_viommu_tegra241_cmdqv {
	__aligned_u64 out_vintf_mmap_offset;
	__aligned_u64 out_vintf_mmap_length;
};

/**
 * struct iommu_viommu_alloc - argument of IOMMU_VIOMMU_ALLOC
 * @size: sizeof(struct iommu_viommu_alloc)
 * @flags: must be 0
 * @type: enum iommu_viommu_type
 * @dev_id: device whose physical IOMMU backs the vIOMMU
 * @hwpt_id: NEST_PARENT paging HWPT the vIOMMU holds
 * @out_viommu_id: ID of the new vIOMMU
 * @data_len: length of the driver data
 * @__reserved: must be 0
 * @data_uptr: user pointer to the driver data (in and out)
 *
 * The minimum size ends at @out_viommu_id (24 bytes).
 */
struct iommu_viommu_alloc {
	__u32 size;
	__u32 flags;
	__u32 type;
	__u32 dev_id;
	__u32 hwpt_id;
	__u32 out_viommu_id;
	__u32 data_len;
	__u32 __reserved;
	__aligned_u64 data_uptr;
};
#define IOMMU_VIOMMU_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_VIOMMU_ALLOC)

/* ------------------------------------------------------------------------
 * 0x91 IOMMU_VDEVICE_ALLOC
 * ------------------------------------------------------------------------ */

/**
 * struct iommu_vdevice_alloc - argument of IOMMU_VDEVICE_ALLOC
 * @size: sizeof(struct iommu_vdevice_alloc)
 * @viommu_id: vIOMMU the virtual device belongs to
 * @dev_id: physical device being given a virtual ID
 * @out_vdevice_id: ID of the new vDEVICE
 * @virt_id: the device's ID as the guest sees it (e.g. a virtual StreamID)
 *
 * EEXIST if the device already has a vDEVICE. If the device goes away
 * first, the vDEVICE is destroyed and its ID stays unusable (ENOENT) until
 * the iommufd is closed.
 */
struct iommu_vdevice_alloc {
	__u32 size;
	__u32 viommu_id;
	__u32 dev_id;
	__u32 out_vdevice_id;
	__aligned_u64 virt_id;
};
#define IOMMU_VDEVICE_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_VDEVICE_ALLOC)

/* ------------------------------------------------------------------------
 * 0x92 IOMMU_IOAS_CHANGE_PROCESS
 * ------------------------------------------------------------------------ */

/**
 * struct iommu_ioas_change_process - argument of IOMMU_IOAS_CHANGE_PROCESS
 * @size: sizeof(struct iommu_ioas_change_process)
 * @__reserved: must be 0
 *
 * Moves the pinned-memory accounting of every IOAS in this iommufd to the
 * calling process. Only IOMMU_IOAS_MAP_FILE mappings qualify: any other
 * mapping makes the whole call fail with EINVAL and change nothing.
 */
struct iommu_ioas_change_process {
	__u32 size;
	__u32 __reserved;
};
#define IOMMU_IOAS_CHANGE_PROCESS \
	_IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_CHANGE_PROCESS)

/* ------------------------------------------------------------------------
 * 0x93 IOMMU_VEVENTQ_ALLOC and the records read from a vEVENTQ fd
 * ------------------------------------------------------------------------ */

/**
 * enum iommu_veventq_flag - bits of iommufd_vevent_header.flags
 * @IOMMU_VEVENTQ_FLAG_LOST_EVENTS: the queue overflowed and events were
 *                                  dropped; no payload follows this header
 */
enum iommu_veventq_flag {
	IOMMU_VEVENTQ_FLAG_LOST_EVENTS = (1U << 0),
};

/**
 * struct iommufd_vevent_header - header in front of every vEVENT
 * @flags: enum iommu_veventq_flag
 * @sequence: event counter, 0..INT_MAX then back to 0; a jump larger than
 *            one means events were lost
 */
struct iommufd_vevent_header {
	__u32 flags;
	__u32 sequence;
};

/**
 * enum iommu_veventq_type - vEVENTQ kinds (one queue per kind per vIOMMU)
 * @IOMMU_VEVENTQ_TYPE_DEFAULT: reserved
 * @IOMMU_VEVENTQ_TYPE_ARM_SMMUV3: payload struct iommu_vevent_arm_smmuv3
 * @IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV: payload struct
 *                                     iommu_vevent_tegra241_cmdqv
 */
enum iommu_veventq_type {
	IOMMU_VEVENTQ_TYPE_DEFAULT = 0,
	IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 = 1,
	IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV = 2,
};

/**
 * struct iommu_vevent_arm_smmuv3 - SMMUv3 virtual event
 * @evt: the 256-bit SMMUv3 event record, little-endian, with the StreamID
 *       replaced by the vDEVICE's virtual ID
 */
struct iommu_vevent_arm_smmuv3 {
	__aligned_le64 evt[4];
};

/**
 * struct iommu_vevent_tegra241_cmdqv - Tegra241 CMDQV virtual event
 * @lvcmdq_err_map: 128-bit error map of the logical VCMDQs, little-endian
 */
struct iommu_vevent_tegra241_cmdqv {
	__aligned_le64 lvcmdq_err_map[2];
};

/**
 * struct iommu_veventq_alloc - argument of IOMMU_VEVENTQ_ALLOC
 * @size: sizeof(struct iommu_veventq_alloc)
 * @flags: must be 0
 * @viommu_id: vIOMMU whose events are queued
 * @type: enum iommu_veventq_type (DEFAULT is refused)
 * @veventq_depth: maximum number of queued events (must not be 0)
 * @out_veventq_id: ID of the new vEVENTQ
 * @out_veventq_fd: new file descriptor; each read returns whole events,
 *                  a struct iommufd_vevent_header followed by its payload
 * @__reserved: must be 0
 *
 * The minimum size ends at @out_veventq_fd (28 bytes).
 */
struct iommu_veventq_alloc {
	__u32 size;
	__u32 flags;
	__u32 viommu_id;
	__u32 type;
	__u32 veventq_depth;
	__u32 out_veventq_id;
	__u32 out_veventq_fd;
	__u32 __reserved;
};
#define IOMMU_VEVENTQ_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_VEVENTQ_ALLOC)

/* ------------------------------------------------------------------------
 * 0x94 IOMMU_HW_QUEUE_ALLOC
 * ------------------------------------------------------------------------ */

/**
 * enum iommu_hw_queue_type - HW queue kinds
 * @IOMMU_HW_QUEUE_TYPE_DEFAULT: reserved
 * @IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV: Tegra241 virtual command queue
 */
enum iommu_hw_queue_type {
	IOMMU_HW_QUEUE_TYPE_DEFAULT = 0,
	IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV = 1,
};

/**
 * struct iommu_hw_queue_alloc - argument of IOMMU_HW_QUEUE_ALLOC
 * @size: sizeof(struct iommu_hw_queue_alloc)
 * @flags: must be 0
 * @viommu_id: vIOMMU owning the queue
 * @type: enum iommu_hw_queue_type
 * @index: queue index within the vIOMMU and type
 * @out_hw_queue_id: ID of the new HW queue
 * @nesting_parent_iova: guest-physical base of the queue memory, an IOVA
 *                       of the parent IOAS; that range stays pinned (and
 *                       cannot be unmapped) while the queue exists
 * @length: size of the queue memory in bytes
 */
struct iommu_hw_queue_alloc {
	__u32 size;
	__u32 flags;
	__u32 viommu_id;
	__u32 type;
	__u32 index;
	__u32 out_hw_queue_id;
	__aligned_u64 nesting_parent_iova;
	__aligned_u64 length;
};
#define IOMMU_HW_QUEUE_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HW_QUEUE_ALLOC)

#endif /* _IOMMUFD_H */
#endif /* _UAPI_IOMMUFD_H */
