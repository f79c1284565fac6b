// SPDX-License-Identifier: MIT
/*
 * Compile-time checks of the ABI headers in include/uiommu/ against the
 * numbers in ../shared/spec/iommufd-abi.md (sections 2.2, 2.3, 2.4, 4, 6).
 *
 * This translation unit holds only _Static_asserts: it produces no code,
 * and it fails to compile if a struct size, a field offset or width, a
 * minimum command size, a request number or an enum value drifts from the
 * kernel ABI. Offsets are those of x86_64 / LP64; every iommufd struct uses
 * __aligned_u64, so they hold on 32-bit ABIs as well. The few VFIO layouts
 * that use plain __u64 and would differ there are checked only on LP64.
 */
#include <stddef.h>

#include <uiommu/iommufd.h>
#include <uiommu/iommufd_test.h>
#include <uiommu/vfio_compat.h>

/* Offset of the first byte past @member: what "min size (last field)" means. */
#define UAPI_OFFSETOFEND(type, member) \
	(offsetof(type, member) + sizeof(((type *)0)->member))

#define UAPI_SIZE(type, n) \
	_Static_assert(sizeof(type) == (n), "sizeof(" #type ") != " #n)

/* Field @member of @type sits at byte @off and is @len bytes wide. */
#define UAPI_FIELD(type, member, off, len)                                       \
	_Static_assert(offsetof(type, member) == (off),                          \
		       "offsetof(" #type ", " #member ") != " #off);             \
	_Static_assert(sizeof(((type *)0)->member) == (len),                     \
		       "sizeof(" #type "." #member ") != " #len)

/* The command's minimum accepted size ends at @member, @n bytes in. */
#define UAPI_MINSZ(type, member, n)                                              \
	_Static_assert(UAPI_OFFSETOFEND(type, member) == (n),                    \
		       "offsetofend(" #type ", " #member ") != " #n)

#define UAPI_VAL(expr, n) _Static_assert((expr) == (n), #expr " != " #n)

/* ------------------------------------------------------------------------
 * 2.1 / 2.2: request numbers
 * ------------------------------------------------------------------------ */

UAPI_VAL(IOMMUFD_TYPE, 0x3b);
UAPI_VAL(IOMMUFD_TYPE, ';');
UAPI_VAL(IOMMUFD_CMD_BASE, 0x80);

UAPI_VAL(IOMMUFD_CMD_DESTROY, 0x80);
UAPI_VAL(IOMMUFD_CMD_IOAS_ALLOC, 0x81);
UAPI_VAL(IOMMUFD_CMD_IOAS_ALLOW_IOVAS, 0x82);
UAPI_VAL(IOMMUFD_CMD_IOAS_COPY, 0x83);
UAPI_VAL(IOMMUFD_CMD_IOAS_IOVA_RANGES, 0x84);
UAPI_VAL(IOMMUFD_CMD_IOAS_MAP, 0x85);
UAPI_VAL(IOMMUFD_CMD_IOAS_UNMAP, 0x86);
UAPI_VAL(IOMMUFD_CMD_OPTION, 0x87);
UAPI_VAL(IOMMUFD_CMD_VFIO_IOAS, 0x88);
UAPI_VAL(IOMMUFD_CMD_HWPT_ALLOC, 0x89);
UAPI_VAL(IOMMUFD_CMD_GET_HW_INFO, 0x8a);
UAPI_VAL(IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING, 0x8b);
UAPI_VAL(IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP, 0x8c);
UAPI_VAL(IOMMUFD_CMD_HWPT_INVALIDATE, 0x8d);
UAPI_VAL(IOMMUFD_CMD_FAULT_QUEUE_ALLOC, 0x8e);
UAPI_VAL(IOMMUFD_CMD_IOAS_MAP_FILE, 0x8f);
UAPI_VAL(IOMMUFD_CMD_VIOMMU_ALLOC, 0x90);
UAPI_VAL(IOMMUFD_CMD_VDEVICE_ALLOC, 0x91);
UAPI_VAL(IOMMUFD_CMD_IOAS_CHANGE_PROCESS, 0x92);
UAPI_VAL(IOMMUFD_CMD_VEVENTQ_ALLOC, 0x93);
UAPI_VAL(IOMMUFD_CMD_HW_QUEUE_ALLOC, 0x94);

UAPI_VAL(IOMMU_DESTROY, 0x3b80);
UAPI_VAL(IOMMU_IOAS_ALLOC, 0x3b81);
UAPI_VAL(IOMMU_IOAS_ALLOW_IOVAS, 0x3b82);
UAPI_VAL(IOMMU_IOAS_COPY, 0x3b83);
UAPI_VAL(IOMMU_IOAS_IOVA_RANGES, 0x3b84);
UAPI_VAL(IOMMU_IOAS_MAP, 0x3b85);
UAPI_VAL(IOMMU_IOAS_UNMAP, 0x3b86);
UAPI_VAL(IOMMU_OPTION, 0x3b87);
UAPI_VAL(IOMMU_VFIO_IOAS, 0x3b88);
UAPI_VAL(IOMMU_HWPT_ALLOC, 0x3b89);
UAPI_VAL(IOMMU_GET_HW_INFO, 0x3b8a);
UAPI_VAL(IOMMU_HWPT_SET_DIRTY_TRACKING, 0x3b8b);
UAPI_VAL(IOMMU_HWPT_GET_DIRTY_BITMAP, 0x3b8c);
UAPI_VAL(IOMMU_HWPT_INVALIDATE, 0x3b8d);
UAPI_VAL(IOMMU_FAULT_QUEUE_ALLOC, 0x3b8e);
UAPI_VAL(IOMMU_IOAS_MAP_FILE, 0x3b8f);
UAPI_VAL(IOMMU_VIOMMU_ALLOC, 0x3b90);
UAPI_VAL(IOMMU_VDEVICE_ALLOC, 0x3b91);
UAPI_VAL(IOMMU_IOAS_CHANGE_PROCESS, 0x3b92);
UAPI_VAL(IOMMU_VEVENTQ_ALLOC, 0x3b93);
UAPI_VAL(IOMMU_HW_QUEUE_ALLOC, 0x3b94);
UAPI_VAL(IOMMU_TEST_CMD, 0x3ba0);

/* ------------------------------------------------------------------------
 * 2.2: sizeof and minimum size of every command struct
 * ------------------------------------------------------------------------ */

UAPI_SIZE(struct iommu_destroy, 8);
UAPI_MINSZ(struct iommu_destroy, id, 8);
UAPI_SIZE(struct iommu_ioas_alloc, 12);
UAPI_MINSZ(struct iommu_ioas_alloc, out_ioas_id, 12);
UAPI_SIZE(struct iommu_ioas_allow_iovas, 24);
UAPI_MINSZ(struct iommu_ioas_allow_iovas, allowed_iovas, 24);
UAPI_SIZE(struct iommu_ioas_copy, 40);
UAPI_MINSZ(struct iommu_ioas_copy, src_iova, 40);
UAPI_SIZE(struct iommu_ioas_iova_ranges, 32);
UAPI_MINSZ(struct iommu_ioas_iova_ranges, out_iova_alignment, 32);
UAPI_SIZE(struct iommu_ioas_map, 40);
UAPI_MINSZ(struct iommu_ioas_map, iova, 40);
UAPI_SIZE(struct iommu_ioas_unmap, 24);
UAPI_MINSZ(struct iommu_ioas_unmap, length, 24);
UAPI_SIZE(struct iommu_option, 24);
UAPI_MINSZ(struct iommu_option, val64, 24);
UAPI_SIZE(struct iommu_vfio_ioas, 12);
UAPI_MINSZ(struct iommu_vfio_ioas, __reserved, 12);
UAPI_SIZE(struct iommu_hwpt_alloc, 48);
UAPI_MINSZ(struct iommu_hwpt_alloc, __reserved, 24);
UAPI_SIZE(struct iommu_hw_info, 40);
UAPI_MINSZ(struct iommu_hw_info, __reserved, 32);
UAPI_SIZE(struct iommu_hwpt_set_dirty_tracking, 16);
UAPI_MINSZ(struct iommu_hwpt_set_dirty_tracking, __reserved, 16);
UAPI_SIZE(struct iommu_hwpt_get_dirty_bitmap, 48);
UAPI_MINSZ(struct iommu_hwpt_get_dirty_bitmap, data, 48);
UAPI_SIZE(struct iommu_hwpt_invalidate, 32);
UAPI_MINSZ(struct iommu_hwpt_invalidate, __reserved, 32);
UAPI_SIZE(struct iommu_fault_alloc, 16);
UAPI_MINSZ(struct iommu_fault_alloc, out_fault_fd, 16);
UAPI_SIZE(struct iommu_ioas_map_file, 40);
UAPI_MINSZ(struct iommu_ioas_map_file, iova, 40);
UAPI_SIZE(struct iommu_viommu_alloc, 40);
UAPI_MINSZ(struct iommu_viommu_alloc, out_viommu_id, 24);
UAPI_SIZE(struct iommu_vdevice_alloc, 24);
UAPI_MINSZ(struct iommu_vdevice_alloc, virt_id, 24);
UAPI_SIZE(struct iommu_ioas_change_process, 8);
UAPI_MINSZ(struct iommu_ioas_change_process, __reserved, 8);
UAPI_SIZE(struct iommu_veventq_alloc, 32);
UAPI_MINSZ(struct iommu_veventq_alloc, out_veventq_fd, 28);
UAPI_SIZE(struct iommu_hw_queue_alloc, 40);
UAPI_MINSZ(struct iommu_hw_queue_alloc, length, 40);
UAPI_SIZE(struct iommu_test_cmd, 72);
UAPI_MINSZ(struct iommu_test_cmd, last, 68);

/* ------------------------------------------------------------------------
 * 2.3: field layouts and enum values
 * ------------------------------------------------------------------------ */

/* iommu_destroy */
UAPI_FIELD(struct iommu_destroy, size, 0, 4);
UAPI_FIELD(struct iommu_destroy, id, 4, 4);

/* iommu_ioas_alloc */
UAPI_FIELD(struct iommu_ioas_alloc, size, 0, 4);
UAPI_FIELD(struct iommu_ioas_alloc, flags, 4, 4);
UAPI_FIELD(struct iommu_ioas_alloc, out_ioas_id, 8, 4);

/* iommu_iova_range */
UAPI_SIZE(struct iommu_iova_range, 16);
UAPI_FIELD(struct iommu_iova_range, start, 0, 8);
UAPI_FIELD(struct iommu_iova_range, last, 8, 8);

/* iommu_ioas_iova_ranges */
UAPI_FIELD(struct iommu_ioas_iova_ranges, size, 0, 4);
UAPI_FIELD(struct iommu_ioas_iova_ranges, ioas_id, 4, 4);
UAPI_FIELD(struct iommu_ioas_iova_ranges, num_iovas, 8, 4);
UAPI_FIELD(struct iommu_ioas_iova_ranges, __reserved, 12, 4);
UAPI_FIELD(struct iommu_ioas_iova_ranges, allowed_iovas, 16, 8);
UAPI_FIELD(struct iommu_ioas_iova_ranges, out_iova_alignment, 24, 8);

/* iommu_ioas_allow_iovas */
UAPI_FIELD(struct iommu_ioas_allow_iovas, size, 0, 4);
UAPI_FIELD(struct iommu_ioas_allow_iovas, ioas_id, 4, 4);
UAPI_FIELD(struct iommu_ioas_allow_iovas, num_iovas, 8, 4);
UAPI_FIELD(struct iommu_ioas_allow_iovas, __reserved, 12, 4);
UAPI_FIELD(struct iommu_ioas_allow_iovas, allowed_iovas, 16, 8);

/* enum iommufd_ioas_map_flags */
UAPI_VAL(IOMMU_IOAS_MAP_FIXED_IOVA, 1);
UAPI_VAL(IOMMU_IOAS_MAP_WRITEABLE, 2);
UAPI_VAL(IOMMU_IOAS_MAP_READABLE, 4);

/* iommu_ioas_map */
UAPI_FIELD(struct iommu_ioas_map, size, 0, 4);
UAPI_FIELD(struct iommu_ioas_map, flags, 4, 4);
UAPI_FIELD(struct iommu_ioas_map, ioas_id, 8, 4);
UAPI_FIELD(struct iommu_ioas_map, __reserved, 12, 4);
UAPI_FIELD(struct iommu_ioas_map, user_va, 16, 8);
UAPI_FIELD(struct iommu_ioas_map, length, 24, 8);
UAPI_FIELD(struct iommu_ioas_map, iova, 32, 8);

/* iommu_ioas_map_file */
UAPI_FIELD(struct iommu_ioas_map_file, size, 0, 4);
UAPI_FIELD(struct iommu_ioas_map_file, flags, 4, 4);
UAPI_FIELD(struct iommu_ioas_map_file, ioas_id, 8, 4);
UAPI_FIELD(struct iommu_ioas_map_file, fd, 12, 4);
UAPI_FIELD(struct iommu_ioas_map_file, start, 16, 8);
UAPI_FIELD(struct iommu_ioas_map_file, length, 24, 8);
UAPI_FIELD(struct iommu_ioas_map_file, iova, 32, 8);

/* iommu_ioas_copy */
UAPI_FIELD(struct iommu_ioas_copy, size, 0, 4);
UAPI_FIELD(struct iommu_ioas_copy, flags, 4, 4);
UAPI_FIELD(struct iommu_ioas_copy, dst_ioas_id, 8, 4);
UAPI_FIELD(struct iommu_ioas_copy, src_ioas_id, 12, 4);
UAPI_FIELD(struct iommu_ioas_copy, length, 16, 8);
UAPI_FIELD(struct iommu_ioas_copy, dst_iova, 24, 8);
UAPI_FIELD(struct iommu_ioas_copy, src_iova, 32, 8);

/* iommu_ioas_unmap */
UAPI_FIELD(struct iommu_ioas_unmap, size, 0, 4);
UAPI_FIELD(struct iommu_ioas_unmap, ioas_id, 4, 4);
UAPI_FIELD(struct iommu_ioas_unmap, iova, 8, 8);
UAPI_FIELD(struct iommu_ioas_unmap, length, 16, 8);

/* enum iommufd_option, enum iommufd_option_ops */
UAPI_VAL(IOMMU_OPTION_RLIMIT_MODE, 0);
UAPI_VAL(IOMMU_OPTION_HUGE_PAGES, 1);
UAPI_VAL(IOMMU_OPTION_OP_SET, 0);
UAPI_VAL(IOMMU_OPTION_OP_GET, 1);

/* iommu_option */
UAPI_FIELD(struct iommu_option, size, 0, 4);
UAPI_FIELD(struct iommu_option, option_id, 4, 4);
UAPI_FIELD(struct iommu_option, op, 8, 2);
UAPI_FIELD(struct iommu_option, __reserved, 10, 2);
UAPI_FIELD(struct iommu_option, object_id, 12, 4);
UAPI_FIELD(struct iommu_option, val64, 16, 8);

/* enum iommufd_vfio_ioas_op */
UAPI_VAL(IOMMU_VFIO_IOAS_GET, 0);
UAPI_VAL(IOMMU_VFIO_IOAS_SET, 1);
UAPI_VAL(IOMMU_VFIO_IOAS_CLEAR, 2);

/* iommu_vfio_ioas */
UAPI_FIELD(struct iommu_vfio_ioas, size, 0, 4);
UAPI_FIELD(struct iommu_vfio_ioas, ioas_id, 4, 4);
UAPI_FIELD(struct iommu_vfio_ioas, op, 8, 2);
UAPI_FIELD(struct iommu_vfio_ioas, __reserved, 10, 2);

/* enum iommufd_hwpt_alloc_flags */
UAPI_VAL(IOMMU_HWPT_ALLOC_NEST_PARENT, 1);
UAPI_VAL(IOMMU_HWPT_ALLOC_DIRTY_TRACKING, 2);
UAPI_VAL(IOMMU_HWPT_FAULT_ID_VALID, 4);
UAPI_VAL(IOMMU_HWPT_ALLOC_PASID, 8);

/* enum iommu_hwpt_data_type */
UAPI_VAL(IOMMU_HWPT_DATA_NONE, 0);
UAPI_VAL(IOMMU_HWPT_DATA_VTD_S1, 1);
UAPI_VAL(IOMMU_HWPT_DATA_ARM_SMMUV3, 2);
UAPI_VAL(IOMMU_HWPT_DATA_AMD_GUEST, 3);

/* iommu_hwpt_alloc */
UAPI_FIELD(struct iommu_hwpt_alloc, size, 0, 4);
UAPI_FIELD(struct iommu_hwpt_alloc, flags, 4, 4);
UAPI_FIELD(struct iommu_hwpt_alloc, dev_id, 8, 4);
UAPI_FIELD(struct iommu_hwpt_alloc, pt_id, 12, 4);
UAPI_FIELD(struct iommu_hwpt_alloc, out_hwpt_id, 16, 4);
UAPI_FIELD(struct iommu_hwpt_alloc, __reserved, 20, 4);
UAPI_FIELD(struct iommu_hwpt_alloc, data_type, 24, 4);
UAPI_FIELD(struct iommu_hwpt_alloc, data_len, 28, 4);
UAPI_FIELD(struct iommu_hwpt_alloc, data_uptr, 32, 8);
UAPI_FIELD(struct iommu_hwpt_alloc, fault_id, 40, 4);
UAPI_FIELD(struct iommu_hwpt_alloc, __reserved2, 44, 4);

/* enum iommu_hwpt_vtd_s1_flags, iommu_hwpt_vtd_s1 */
UAPI_VAL(IOMMU_VTD_S1_SRE, 1);
UAPI_VAL(IOMMU_VTD_S1_EAFE, 2);
UAPI_VAL(IOMMU_VTD_S1_WPE, 4);
UAPI_SIZE(struct iommu_hwpt_vtd_s1, 24);
UAPI_FIELD(struct iommu_hwpt_vtd_s1, flags, 0, 8);
UAPI_FIELD(struct iommu_hwpt_vtd_s1, pgtbl_addr, 8, 8);
UAPI_FIELD(struct iommu_hwpt_vtd_s1, addr_width, 16, 4);
UAPI_FIELD(struct iommu_hwpt_vtd_s1, __reserved, 20, 4);

/* iommu_hwpt_amd_guest */
UAPI_SIZE(struct iommu_hwpt_amd_guest, 32);
UAPI_FIELD(struct iommu_hwpt_amd_guest, dte, 0, 32);
/* iommu_hwpt_arm_smmuv3 */
UAPI_SIZE(struct iommu_hwpt_arm_smmuv3, 16);
UAPI_FIELD(struct iommu_hwpt_arm_smmuv3, ste, 0, 16);
UAPI_FIELD(struct iommu_hwpt_arm_smmuv3, ste[1], 8, 8);

/* enum iommu_hw_info_type */
UAPI_VAL(IOMMU_HW_INFO_TYPE_NONE, 0);
UAPI_VAL(IOMMU_HW_INFO_TYPE_DEFAULT, 0);
UAPI_VAL(IOMMU_HW_INFO_TYPE_INTEL_VTD, 1);
UAPI_VAL(IOMMU_HW_INFO_TYPE_ARM_SMMUV3, 2);
UAPI_VAL(IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV, 3);
UAPI_VAL(IOMMU_HW_INFO_TYPE_AMD, 4);

/* enum iommufd_hw_capabilities, iommufd_hw_info_flags, iommu_hw_info_vtd_flags */
UAPI_VAL(IOMMU_HW_CAP_DIRTY_TRACKING, 1);
UAPI_VAL(IOMMU_HW_CAP_PCI_PASID_EXEC, 2);
UAPI_VAL(IOMMU_HW_CAP_PCI_PASID_PRIV, 4);
UAPI_VAL(IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED, 8);
UAPI_VAL(IOMMU_HW_INFO_FLAG_INPUT_TYPE, 1);
UAPI_VAL(IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17, 1);

/* iommu_hw_info */
UAPI_FIELD(struct iommu_hw_info, size, 0, 4);
UAPI_FIELD(struct iommu_hw_info, flags, 4, 4);
UAPI_FIELD(struct iommu_hw_info, dev_id, 8, 4);
UAPI_FIELD(struct iommu_hw_info, data_len, 12, 4);
UAPI_FIELD(struct iommu_hw_info, data_uptr, 16, 8);
UAPI_FIELD(struct iommu_hw_info, in_data_type, 24, 4);
UAPI_FIELD(struct iommu_hw_info, out_data_type, 24, 4);
UAPI_FIELD(struct iommu_hw_info, out_max_pasid_log2, 28, 1);
UAPI_FIELD(struct iommu_hw_info, __reserved, 29, 3);
UAPI_FIELD(struct iommu_hw_info, out_capabilities, 32, 8);

/* iommu_hw_info_vtd */
UAPI_SIZE(struct iommu_hw_info_vtd, 24);
UAPI_FIELD(struct iommu_hw_info_vtd, flags, 0, 4);
UAPI_FIELD(struct iommu_hw_info_vtd, __reserved, 4, 4);
UAPI_FIELD(struct iommu_hw_info_vtd, cap_reg, 8, 8);
UAPI_FIELD(struct iommu_hw_info_vtd, ecap_reg, 16, 8);

/* iommu_hw_info_arm_smmuv3 */
UAPI_SIZE(struct iommu_hw_info_arm_smmuv3, 40);
UAPI_FIELD(struct iommu_hw_info_arm_smmuv3, flags, 0, 4);
UAPI_FIELD(struct iommu_hw_info_arm_smmuv3, __reserved, 4, 4);
UAPI_FIELD(struct iommu_hw_info_arm_smmuv3, idr, 8, 24);
UAPI_FIELD(struct iommu_hw_info_arm_smmuv3, iidr, 32, 4);
UAPI_FIELD(struct iommu_hw_info_arm_smmuv3, aidr, 36, 4);

/* iommu_hw_info_amd */
UAPI_SIZE(struct iommu_hw_info_amd, 16);
UAPI_FIELD(struct iommu_hw_info_amd, efr, 0, 8);
UAPI_FIELD(struct iommu_hw_info_amd, efr2, 8, 8);
/* iommu_hw_info_tegra241_cmdqv */
UAPI_SIZE(struct iommu_hw_info_tegra241_cmdqv, 8);
UAPI_FIELD(struct iommu_hw_info_tegra241_cmdqv, flags, 0, 4);
UAPI_FIELD(struct iommu_hw_info_tegra241_cmdqv, version, 4, 1);
UAPI_FIELD(struct iommu_hw_info_tegra241_cmdqv, log2vcmdqs, 5, 1);
UAPI_FIELD(struct iommu_hw_info_tegra241_cmdqv, log2vsids, 6, 1);
UAPI_FIELD(struct iommu_hw_info_tegra241_cmdqv, __reserved, 7, 1);

/* dirty tracking */
UAPI_VAL(IOMMU_HWPT_DIRTY_TRACKING_ENABLE, 1);
UAPI_FIELD(struct iommu_hwpt_set_dirty_tracking, size, 0, 4);
UAPI_FIELD(struct iommu_hwpt_set_dirty_tracking, flags, 4, 4);
UAPI_FIELD(struct iommu_hwpt_set_dirty_tracking, hwpt_id, 8, 4);
UAPI_FIELD(struct iommu_hwpt_set_dirty_tracking, __reserved, 12, 4);

UAPI_VAL(IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, 1);
UAPI_FIELD(struct iommu_hwpt_get_dirty_bitmap, size, 0, 4);
UAPI_FIELD(struct iommu_hwpt_get_dirty_bitmap, hwpt_id, 4, 4);
UAPI_FIELD(struct iommu_hwpt_get_dirty_bitmap, flags, 8, 4);
UAPI_FIELD(struct iommu_hwpt_get_dirty_bitmap, __reserved, 12, 4);
UAPI_FIELD(struct iommu_hwpt_get_dirty_bitmap, iova, 16, 8);
UAPI_FIELD(struct iommu_hwpt_get_dirty_bitmap, length, 24, 8);
UAPI_FIELD(struct iommu_hwpt_get_dirty_bitmap, page_size, 32, 8);
UAPI_FIELD(struct iommu_hwpt_get_dirty_bitmap, data, 40, 8);

/* invalidation */
UAPI_VAL(IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, 0);
UAPI_VAL(IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3, 1);
UAPI_VAL(IOMMU_VTD_INV_FLAGS_LEAF, 1);

UAPI_SIZE(struct iommu_hwpt_vtd_s1_invalidate, 24);
UAPI_FIELD(struct iommu_hwpt_vtd_s1_invalidate, addr, 0, 8);
UAPI_FIELD(struct iommu_hwpt_vtd_s1_invalidate, npages, 8, 8);
UAPI_FIELD(struct iommu_hwpt_vtd_s1_invalidate, flags, 16, 4);
UAPI_FIELD(struct iommu_hwpt_vtd_s1_invalidate, __reserved, 20, 4);

UAPI_SIZE(struct iommu_viommu_arm_smmuv3_invalidate, 16);
UAPI_FIELD(struct iommu_viommu_arm_smmuv3_invalidate, cmd, 0, 16);

UAPI_FIELD(struct iommu_hwpt_invalidate, size, 0, 4);
UAPI_FIELD(struct iommu_hwpt_invalidate, hwpt_id, 4, 4);
UAPI_FIELD(struct iommu_hwpt_invalidate, data_uptr, 8, 8);
UAPI_FIELD(struct iommu_hwpt_invalidate, data_type, 16, 4);
UAPI_FIELD(struct iommu_hwpt_invalidate, entry_len, 20, 4);
UAPI_FIELD(struct iommu_hwpt_invalidate, entry_num, 24, 4);
UAPI_FIELD(struct iommu_hwpt_invalidate, __reserved, 28, 4);

/* vIOMMU */
UAPI_VAL(IOMMU_VIOMMU_TYPE_DEFAULT, 0);
UAPI_VAL(IOMMU_VIOMMU_TYPE_ARM_SMMUV3, 1);
UAPI_VAL(IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV, 2);

UAPI_FIELD(struct iommu_viommu_alloc, size, 0, 4);
UAPI_FIELD(struct iommu_viommu_alloc, flags, 4, 4);
UAPI_FIELD(struct iommu_viommu_alloc, type, 8, 4);
UAPI_FIELD(struct iommu_viommu_alloc, dev_id, 12, 4);
UAPI_FIELD(struct iommu_viommu_alloc, hwpt_id, 16, 4);
UAPI_FIELD(struct iommu_viommu_alloc, out_viommu_id, 20, 4);
UAPI_FIELD(struct iommu_viommu_alloc, data_len, 24, 4);
UAPI_FIELD(struct iommu_viommu_alloc, __reserved, 28, 4);
UAPI_FIELD(struct iommu_viommu_alloc, data_uptr, 32, 8);

UAPI_SIZE(struct iommu_viommu_tegra241_cmdqv, 16);
UAPI_FIELD(struct iommu_viommu_tegra241_cmdqv, out_vintf_mmap_offset, 0, 8);
UAPI_FIELD(struct iommu_viommu_tegra241_cmdqv, out_vintf_mmap_length, 8, 8);

/* vDEVICE */
UAPI_FIELD(struct iommu_vdevice_alloc, size, 0, 4);
UAPI_FIELD(struct iommu_vdevice_alloc, viommu_id, 4, 4);
UAPI_FIELD(struct iommu_vdevice_alloc, dev_id, 8, 4);
UAPI_FIELD(struct iommu_vdevice_alloc, out_vdevice_id, 12, 4);
UAPI_FIELD(struct iommu_vdevice_alloc, virt_id, 16, 8);

/* IOAS_CHANGE_PROCESS */
UAPI_FIELD(struct iommu_ioas_change_process, size, 0, 4);
UAPI_FIELD(struct iommu_ioas_change_process, __reserved, 4, 4);

/* vEVENTQ */
UAPI_VAL(IOMMU_VEVENTQ_FLAG_LOST_EVENTS, 1);
UAPI_VAL(IOMMU_VEVENTQ_TYPE_DEFAULT, 0);
UAPI_VAL(IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, 1);
UAPI_VAL(IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV, 2);

UAPI_SIZE(struct iommufd_vevent_header, 8);
UAPI_FIELD(struct iommufd_vevent_header, flags, 0, 4);
UAPI_FIELD(struct iommufd_vevent_header, sequence, 4, 4);

UAPI_SIZE(struct iommu_vevent_arm_smmuv3, 32);
UAPI_FIELD(struct iommu_vevent_arm_smmuv3, evt, 0, 32);
UAPI_SIZE(struct iommu_vevent_tegra241_cmdqv, 16);
UAPI_FIELD(struct iommu_vevent_tegra241_cmdqv, lvcmdq_err_map, 0, 16);

UAPI_FIELD(struct iommu_veventq_alloc, size, 0, 4);
UAPI_FIELD(struct iommu_veventq_alloc, flags, 4, 4);
UAPI_FIELD(struct iommu_veventq_alloc, viommu_id, 8, 4);
UAPI_FIELD(struct iommu_veventq_alloc, type, 12, 4);
UAPI_FIELD(struct iommu_veventq_alloc, veventq_depth, 16, 4);
UAPI_FIELD(struct iommu_veventq_alloc, out_veventq_id, 20, 4);
UAPI_FIELD(struct iommu_veventq_alloc, out_veventq_fd, 24, 4);
UAPI_FIELD(struct iommu_veventq_alloc, __reserved, 28, 4);

/* HW queue */
UAPI_VAL(IOMMU_HW_QUEUE_TYPE_DEFAULT, 0);
UAPI_VAL(IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV, 1);

UAPI_FIELD(struct iommu_hw_queue_alloc, size, 0, 4);
UAPI_FIELD(struct iommu_hw_queue_alloc, flags, 4, 4);
UAPI_FIELD(struct iommu_hw_queue_alloc, viommu_id, 8, 4);
UAPI_FIELD(struct iommu_hw_queue_alloc, type, 12, 4);
UAPI_FIELD(struct iommu_hw_queue_alloc, index, 16, 4);
UAPI_FIELD(struct iommu_hw_queue_alloc, out_hw_queue_id, 20, 4);
UAPI_FIELD(struct iommu_hw_queue_alloc, nesting_parent_iova, 24, 8);
UAPI_FIELD(struct iommu_hw_queue_alloc, length, 32, 8);

/* ------------------------------------------------------------------------
 * 6: fault queue
 * ------------------------------------------------------------------------ */

UAPI_FIELD(struct iommu_fault_alloc, size, 0, 4);
UAPI_FIELD(struct iommu_fault_alloc, flags, 4, 4);
UAPI_FIELD(struct iommu_fault_alloc, out_fault_id, 8, 4);
UAPI_FIELD(struct iommu_fault_alloc, out_fault_fd, 12, 4);

UAPI_VAL(IOMMU_PGFAULT_FLAGS_PASID_VALID, 1);
UAPI_VAL(IOMMU_PGFAULT_FLAGS_LAST_PAGE, 2);
UAPI_VAL(IOMMU_PGFAULT_PERM_READ, 1);
UAPI_VAL(IOMMU_PGFAULT_PERM_WRITE, 2);
UAPI_VAL(IOMMU_PGFAULT_PERM_EXEC, 4);
UAPI_VAL(IOMMU_PGFAULT_PERM_PRIV, 8);

UAPI_SIZE(struct iommu_hwpt_pgfault, 40);
UAPI_FIELD(struct iommu_hwpt_pgfault, flags, 0, 4);
UAPI_FIELD(struct iommu_hwpt_pgfault, dev_id, 4, 4);
UAPI_FIELD(struct iommu_hwpt_pgfault, pasid, 8, 4);
UAPI_FIELD(struct iommu_hwpt_pgfault, grpid, 12, 4);
UAPI_FIELD(struct iommu_hwpt_pgfault, perm, 16, 4);
UAPI_FIELD(struct iommu_hwpt_pgfault, __reserved, 20, 4);
UAPI_FIELD(struct iommu_hwpt_pgfault, addr, 24, 8);
UAPI_FIELD(struct iommu_hwpt_pgfault, length, 32, 4);
UAPI_FIELD(struct iommu_hwpt_pgfault, cookie, 36, 4);

UAPI_VAL(IOMMUFD_PAGE_RESP_SUCCESS, 0);
UAPI_VAL(IOMMUFD_PAGE_RESP_INVALID, 1);
UAPI_SIZE(struct iommu_hwpt_page_response, 8);
UAPI_FIELD(struct iommu_hwpt_page_response, cookie, 0, 4);
UAPI_FIELD(struct iommu_hwpt_page_response, code, 4, 4);

/* ------------------------------------------------------------------------
 * 2.4: VFIO type1 compatibility
 * ------------------------------------------------------------------------ */

UAPI_VAL(VFIO_TYPE, ';');
UAPI_VAL(VFIO_BASE, 100);
UAPI_VAL(VFIO_API_VERSION, 0);
UAPI_VAL(VFIO_TYPE1_IOMMU, 1);
UAPI_VAL(VFIO_TYPE1v2_IOMMU, 3);
UAPI_VAL(VFIO_UNMAP_ALL, 9);
UAPI_VAL(VFIO_UPDATE_VADDR, 10);

UAPI_VAL(VFIO_GET_API_VERSION, 0x3b64);
UAPI_VAL(VFIO_CHECK_EXTENSION, 0x3b65);
UAPI_VAL(VFIO_SET_IOMMU, 0x3b66);
UAPI_VAL(VFIO_IOMMU_GET_INFO, 0x3b70);
UAPI_VAL(VFIO_IOMMU_MAP_DMA, 0x3b71);
UAPI_VAL(VFIO_IOMMU_UNMAP_DMA, 0x3b72);
/* The whole compat range lies below the iommufd command table. */
UAPI_VAL(VFIO_IOMMU_UNMAP_DMA < IOMMU_DESTROY, 1);

UAPI_VAL(VFIO_IOMMU_INFO_PGSIZES, 1);
UAPI_VAL(VFIO_IOMMU_INFO_CAPS, 2);
UAPI_VAL(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1);
UAPI_VAL(VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 3);
UAPI_VAL(VFIO_DMA_MAP_FLAG_READ, 1);
UAPI_VAL(VFIO_DMA_MAP_FLAG_WRITE, 2);
UAPI_VAL(VFIO_DMA_MAP_FLAG_VADDR, 4);
UAPI_VAL(VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, 1);
UAPI_VAL(VFIO_DMA_UNMAP_FLAG_ALL, 2);
UAPI_VAL(VFIO_DMA_UNMAP_FLAG_VADDR, 4);

UAPI_SIZE(struct vfio_info_cap_header, 8);
UAPI_FIELD(struct vfio_info_cap_header, id, 0, 2);
UAPI_FIELD(struct vfio_info_cap_header, version, 2, 2);
UAPI_FIELD(struct vfio_info_cap_header, next, 4, 4);

UAPI_FIELD(struct vfio_iommu_type1_info, argsz, 0, 4);
UAPI_FIELD(struct vfio_iommu_type1_info, flags, 4, 4);
UAPI_FIELD(struct vfio_iommu_type1_info, iova_pgsizes, 8, 8);
UAPI_FIELD(struct vfio_iommu_type1_info, cap_offset, 16, 4);
#ifdef __LP64__
UAPI_SIZE(struct vfio_iommu_type1_info, 24);
#endif

UAPI_SIZE(struct vfio_iova_range, 16);
UAPI_FIELD(struct vfio_iova_range, start, 0, 8);
UAPI_FIELD(struct vfio_iova_range, end, 8, 8);

UAPI_SIZE(struct vfio_iommu_type1_info_cap_iova_range, 16);
UAPI_FIELD(struct vfio_iommu_type1_info_cap_iova_range, header, 0, 8);
UAPI_FIELD(struct vfio_iommu_type1_info_cap_iova_range, nr_iovas, 8, 4);
UAPI_FIELD(struct vfio_iommu_type1_info_cap_iova_range, reserved, 12, 4);
_Static_assert(offsetof(struct vfio_iommu_type1_info_cap_iova_range, iova_ranges) == 16,
	       "iova_ranges[] must start at 16");

UAPI_SIZE(struct vfio_iommu_type1_info_dma_avail, 12);
UAPI_FIELD(struct vfio_iommu_type1_info_dma_avail, header, 0, 8);
UAPI_FIELD(struct vfio_iommu_type1_info_dma_avail, avail, 8, 4);

UAPI_SIZE(struct vfio_iommu_type1_dma_map, 32);
UAPI_FIELD(struct vfio_iommu_type1_dma_map, argsz, 0, 4);
UAPI_FIELD(struct vfio_iommu_type1_dma_map, flags, 4, 4);
UAPI_FIELD(struct vfio_iommu_type1_dma_map, vaddr, 8, 8);
UAPI_FIELD(struct vfio_iommu_type1_dma_map, iova, 16, 8);
UAPI_FIELD(struct vfio_iommu_type1_dma_map, size, 24, 8);

UAPI_FIELD(struct vfio_iommu_type1_dma_unmap, argsz, 0, 4);
UAPI_FIELD(struct vfio_iommu_type1_dma_unmap, flags, 4, 4);
UAPI_FIELD(struct vfio_iommu_type1_dma_unmap, iova, 8, 8);
UAPI_FIELD(struct vfio_iommu_type1_dma_unmap, size, 16, 8);
_Static_assert(offsetof(struct vfio_iommu_type1_dma_unmap, data) == 24,
	       "data[] must start at 24");
UAPI_SIZE(struct vfio_iommu_type1_dma_unmap, 24);

/* ------------------------------------------------------------------------
 * 4: test-only ABI
 * ------------------------------------------------------------------------ */

UAPI_VAL(IOMMU_TEST_OP_ADD_RESERVED, 1);
UAPI_VAL(IOMMU_TEST_OP_MOCK_DOMAIN, 2);
UAPI_VAL(IOMMU_TEST_OP_MD_CHECK_MAP, 3);
UAPI_VAL(IOMMU_TEST_OP_MD_CHECK_REFS, 4);
UAPI_VAL(IOMMU_TEST_OP_CREATE_ACCESS, 5);
UAPI_VAL(IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, 6);
UAPI_VAL(IOMMU_TEST_OP_ACCESS_PAGES, 7);
UAPI_VAL(IOMMU_TEST_OP_ACCESS_RW, 8);
UAPI_VAL(IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT, 9);
UAPI_VAL(IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, 10);
UAPI_VAL(IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, 11);
UAPI_VAL(IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, 12);
UAPI_VAL(IOMMU_TEST_OP_DIRTY, 13);
UAPI_VAL(IOMMU_TEST_OP_MD_CHECK_IOTLB, 14);
UAPI_VAL(IOMMU_TEST_OP_TRIGGER_IOPF, 15);
UAPI_VAL(IOMMU_TEST_OP_DEV_CHECK_CACHE, 16);
UAPI_VAL(IOMMU_TEST_OP_TRIGGER_VEVENT, 17);
UAPI_VAL(IOMMU_TEST_OP_PASID_ATTACH, 18);
UAPI_VAL(IOMMU_TEST_OP_PASID_REPLACE, 19);
UAPI_VAL(IOMMU_TEST_OP_PASID_DETACH, 20);
UAPI_VAL(IOMMU_TEST_OP_PASID_CHECK_HWPT, 21);
UAPI_VAL(IOMMU_TEST_OP_DMABUF_GET, 22);
UAPI_VAL(IOMMU_TEST_OP_DMABUF_REVOKE, 23);
UAPI_VAL(IOMMU_TEST_OP_MD_CHECK_DMABUF, 24);

/* struct iommu_test_cmd: header, the union at 16 (48 bytes), last at 64 */
UAPI_FIELD(struct iommu_test_cmd, size, 0, 4);
UAPI_FIELD(struct iommu_test_cmd, op, 4, 4);
UAPI_FIELD(struct iommu_test_cmd, id, 8, 4);
UAPI_FIELD(struct iommu_test_cmd, __reserved, 12, 4);
UAPI_FIELD(struct iommu_test_cmd, add_reserved, 16, 16);
UAPI_FIELD(struct iommu_test_cmd, dirty, 16, 48);
UAPI_FIELD(struct iommu_test_cmd, last, 64, 4);
_Static_assert(_Alignof(struct iommu_test_cmd) == 8, "iommu_test_cmd must be 8-aligned");

UAPI_FIELD(struct iommu_test_cmd, add_reserved.start, 16, 8);
UAPI_FIELD(struct iommu_test_cmd, add_reserved.length, 24, 8);

UAPI_FIELD(struct iommu_test_cmd, mock_domain.out_stdev_id, 16, 4);
UAPI_FIELD(struct iommu_test_cmd, mock_domain.out_hwpt_id, 20, 4);
UAPI_FIELD(struct iommu_test_cmd, mock_domain.out_idev_id, 24, 4);

UAPI_FIELD(struct iommu_test_cmd, check_map.iova, 16, 8);
UAPI_FIELD(struct iommu_test_cmd, check_map.length, 24, 8);
UAPI_FIELD(struct iommu_test_cmd, check_map.uptr, 32, 8);

UAPI_FIELD(struct iommu_test_cmd, check_refs.length, 16, 8);
UAPI_FIELD(struct iommu_test_cmd, check_refs.uptr, 24, 8);
UAPI_FIELD(struct iommu_test_cmd, check_refs.refs, 32, 4);

UAPI_FIELD(struct iommu_test_cmd, create_access.out_access_fd, 16, 4);
UAPI_FIELD(struct iommu_test_cmd, create_access.flags, 20, 4);

UAPI_FIELD(struct iommu_test_cmd, destroy_access_pages.access_pages_id, 16, 4);

UAPI_FIELD(struct iommu_test_cmd, access_pages.flags, 16, 4);
UAPI_FIELD(struct iommu_test_cmd, access_pages.out_access_pages_id, 20, 4);
UAPI_FIELD(struct iommu_test_cmd, access_pages.iova, 24, 8);
UAPI_FIELD(struct iommu_test_cmd, access_pages.length, 32, 8);
UAPI_FIELD(struct iommu_test_cmd, access_pages.uptr, 40, 8);

UAPI_FIELD(struct iommu_test_cmd, access_rw.iova, 16, 8);
UAPI_FIELD(struct iommu_test_cmd, access_rw.length, 24, 8);
UAPI_FIELD(struct iommu_test_cmd, access_rw.uptr, 32, 8);
UAPI_FIELD(struct iommu_test_cmd, access_rw.flags, 40, 4);

UAPI_FIELD(struct iommu_test_cmd, memory_limit.limit, 16, 4);

UAPI_FIELD(struct iommu_test_cmd, mock_domain_replace.pt_id, 16, 4);

UAPI_FIELD(struct iommu_test_cmd, access_replace_ioas.ioas_id, 16, 4);

UAPI_FIELD(struct iommu_test_cmd, mock_domain_flags.out_stdev_id, 16, 4);
UAPI_FIELD(struct iommu_test_cmd, mock_domain_flags.out_hwpt_id, 20, 4);
UAPI_FIELD(struct iommu_test_cmd, mock_domain_flags.out_idev_id, 24, 4);
UAPI_FIELD(struct iommu_test_cmd, mock_domain_flags.dev_flags, 28, 4);

UAPI_FIELD(struct iommu_test_cmd, dirty.flags, 16, 4);
UAPI_FIELD(struct iommu_test_cmd, dirty.iova, 24, 8);
UAPI_FIELD(struct iommu_test_cmd, dirty.length, 32, 8);
UAPI_FIELD(struct iommu_test_cmd, dirty.page_size, 40, 8);
UAPI_FIELD(struct iommu_test_cmd, dirty.uptr, 48, 8);
UAPI_FIELD(struct iommu_test_cmd, dirty.out_nr_dirty, 56, 8);

UAPI_FIELD(struct iommu_test_cmd, check_iotlb.id, 16, 4);
UAPI_FIELD(struct iommu_test_cmd, check_iotlb.iotlb, 20, 4);

UAPI_FIELD(struct iommu_test_cmd, trigger_iopf.dev_id, 16, 4);
UAPI_FIELD(struct iommu_test_cmd, trigger_iopf.pasid, 20, 4);
UAPI_FIELD(struct iommu_test_cmd, trigger_iopf.grpid, 24, 4);
UAPI_FIELD(struct iommu_test_cmd, trigger_iopf.perm, 28, 4);
UAPI_FIELD(struct iommu_test_cmd, trigger_iopf.addr, 32, 8);

UAPI_FIELD(struct iommu_test_cmd, check_dev_cache.id, 16, 4);
UAPI_FIELD(struct iommu_test_cmd, check_dev_cache.cache, 20, 4);

UAPI_FIELD(struct iommu_test_cmd, trigger_vevent.dev_id, 16, 4);

UAPI_FIELD(struct iommu_test_cmd, pasid_attach.pasid, 16, 4);
UAPI_FIELD(struct iommu_test_cmd, pasid_attach.pt_id, 20, 4);
UAPI_FIELD(struct iommu_test_cmd, pasid_replace.pasid, 16, 4);
UAPI_FIELD(struct iommu_test_cmd, pasid_replace.pt_id, 20, 4);
UAPI_FIELD(struct iommu_test_cmd, pasid_detach.pasid, 16, 4);
UAPI_FIELD(struct iommu_test_cmd, pasid_check.pasid, 16, 4);
UAPI_FIELD(struct iommu_test_cmd, pasid_check.hwpt_id, 20, 4);

UAPI_FIELD(struct iommu_test_cmd, dmabuf_get.length, 16, 4);
UAPI_FIELD(struct iommu_test_cmd, dmabuf_get.open_flags, 20, 4);
UAPI_FIELD(struct iommu_test_cmd, dmabuf_revoke.dmabuf_fd, 16, 4);
UAPI_FIELD(struct iommu_test_cmd, dmabuf_revoke.revoked, 20, 4);
UAPI_FIELD(struct iommu_test_cmd, check_dmabuf.dmabuf_fd, 16, 4);
UAPI_FIELD(struct iommu_test_cmd, check_dmabuf.iova, 24, 8);
UAPI_FIELD(struct iommu_test_cmd, check_dmabuf.length, 32, 8);
UAPI_FIELD(struct iommu_test_cmd, check_dmabuf.offset, 40, 8);

/* Constants */
UAPI_VAL(MOCK_APERTURE_START, 1UL << 24);
UAPI_VAL(MOCK_APERTURE_LAST, (1UL << 31) - 1);
UAPI_VAL(MOCK_PAGE_SIZE, 2048);
UAPI_VAL(MOCK_HUGE_PAGE_SIZE, 512 * 2048);
UAPI_VAL(MOCK_IOMMUPT_DEFAULT, 0);
UAPI_VAL(MOCK_IOMMUPT_HUGE, 1);
UAPI_VAL(MOCK_FLAGS_ACCESS_WRITE, 1);
UAPI_VAL(MOCK_FLAGS_ACCESS_SYZ, 1 << 16);
UAPI_VAL(MOCK_ACCESS_RW_WRITE, 1);
UAPI_VAL(MOCK_ACCESS_RW_SLOW_PATH, 4);
UAPI_VAL(MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, 1);
UAPI_VAL(MOCK_FLAGS_DEVICE_NO_DIRTY, 1);
UAPI_VAL(MOCK_FLAGS_DEVICE_HUGE_IOVA, 2);
UAPI_VAL(MOCK_FLAGS_DEVICE_PASID, 4);
UAPI_VAL(MOCK_NESTED_DOMAIN_IOTLB_ID_MAX, 3);
UAPI_VAL(MOCK_NESTED_DOMAIN_IOTLB_NUM, 4);
UAPI_VAL(MOCK_DEV_CACHE_ID_MAX, 3);
UAPI_VAL(MOCK_DEV_CACHE_NUM, 4);
UAPI_VAL(IOMMU_TEST_PASID_RESERVED, 1024);
UAPI_VAL(MOCK_PASID_WIDTH, 20);
UAPI_VAL(IOMMU_HW_INFO_TYPE_SELFTEST, 0xfeedbeef);
UAPI_VAL(IOMMU_HW_INFO_SELFTEST_REGVAL, 0xdeadbeef);
UAPI_VAL(IOMMU_HWPT_DATA_SELFTEST, 0xdead);
UAPI_VAL(IOMMU_TEST_IOTLB_DEFAULT, 0xbadbeef);
UAPI_VAL(IOMMU_TEST_DEV_CACHE_DEFAULT, 0xbaddad);
UAPI_VAL(IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 0xdeadbeef);
UAPI_VAL(IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID, 0xdadbeef);
UAPI_VAL(IOMMU_VIOMMU_TYPE_SELFTEST, 0xdeadbeef);
UAPI_VAL(IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, 0xdeadbeef);
UAPI_VAL(IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID, 0xdadbeef);
UAPI_VAL(IOMMU_VEVENTQ_TYPE_SELFTEST, 0xbeefbeef);
UAPI_VAL(IOMMU_HW_QUEUE_TYPE_SELFTEST, 0xdeadbeef);
UAPI_VAL(IOMMU_TEST_INVALIDATE_FLAG_ALL, 1);
UAPI_VAL(IOMMU_TEST_HW_QUEUE_MAX, 2);

/* Test data structs */
UAPI_SIZE(struct iommu_test_hw_info, 8);
UAPI_FIELD(struct iommu_test_hw_info, flags, 0, 4);
UAPI_FIELD(struct iommu_test_hw_info, test_reg, 4, 4);

UAPI_SIZE(struct iommu_hwpt_selftest, 8);
UAPI_FIELD(struct iommu_hwpt_selftest, iotlb, 0, 4);
UAPI_FIELD(struct iommu_hwpt_selftest, pagetable_type, 4, 4);

UAPI_SIZE(struct iommu_hwpt_invalidate_selftest, 8);
UAPI_FIELD(struct iommu_hwpt_invalidate_selftest, flags, 0, 4);
UAPI_FIELD(struct iommu_hwpt_invalidate_selftest, iotlb_id, 4, 4);

UAPI_SIZE(struct iommu_viommu_selftest, 24);
UAPI_FIELD(struct iommu_viommu_selftest, in_data, 0, 4);
UAPI_FIELD(struct iommu_viommu_selftest, out_data, 4, 4);
UAPI_FIELD(struct iommu_viommu_selftest, out_mmap_offset, 8, 8);
UAPI_FIELD(struct iommu_viommu_selftest, out_mmap_length, 16, 8);

UAPI_SIZE(struct iommu_viommu_invalidate_selftest, 12);
UAPI_FIELD(struct iommu_viommu_invalidate_selftest, flags, 0, 4);
UAPI_FIELD(struct iommu_viommu_invalidate_selftest, vdev_id, 4, 4);
UAPI_FIELD(struct iommu_viommu_invalidate_selftest, cache_id, 8, 4);

UAPI_SIZE(struct iommu_viommu_event_selftest, 4);
UAPI_FIELD(struct iommu_viommu_event_selftest, virt_id, 0, 4);
