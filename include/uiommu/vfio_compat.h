/* SPDX-License-Identifier: MIT */
/*
 * uiommu: the VFIO type1 container definitions served by /dev/iommu.
 *
 * Requests below IOMMUFD_CMD_BASE on an iommufd are VFIO container ioctls
 * (type ';', numbers from VFIO_BASE = 100), handled by the VFIO-compat
 * layer. Written by us from the facts in ../shared/spec/iommufd-abi.md
 * (section 2.4); numbers and layouts were checked against the system's
 * <linux/vfio.h>.
 *
 * The system header is authoritative for VFIO and is used whenever it can
 * be found, so this file and <linux/vfio.h> may be included together in any
 * order. Only on a system without it do we declare the type1 subset
 * ourselves, with the same names and layouts.
 */
#ifndef UIOMMU_VFIO_COMPAT_H
#define UIOMMU_VFIO_COMPAT_H

#ifdef __has_include
#if __has_include(<linux/vfio.h>)
#define UIOMMU_HAVE_LINUX_VFIO_H 1
#endif
#else
/* No way to probe: every Linux toolchain we target ships the header. */
#define UIOMMU_HAVE_LINUX_VFIO_H 1
#endif

#if defined(UIOMMU_HAVE_LINUX_VFIO_H)
#include <linux/vfio.h>
#elif !defined(VFIO_H) && !defined(_UAPIVFIO_H)

#include <linux/types.h>
#include <linux/ioctl.h>

#define VFIO_API_VERSION	0

/* Extensions, for VFIO_CHECK_EXTENSION and VFIO_SET_IOMMU. */
#define VFIO_TYPE1_IOMMU	1
#define VFIO_TYPE1v2_IOMMU	3
#define VFIO_UNMAP_ALL		9	/* VFIO_DMA_UNMAP_FLAG_ALL is available */
#define VFIO_UPDATE_VADDR	10	/* the VADDR map/unmap flags are available */

#define VFIO_TYPE	(';')
#define VFIO_BASE	100

/**
 * struct vfio_info_cap_header - link of a capability chain in an INFO reply
 * @id: capability identifier, specific to the INFO ioctl
 * @version: version of that capability's layout
 * @next: offset of the next capability from the start of the reply, 0 ends
 */
struct vfio_info_cap_header {
	__u16 id;
	__u16 version;
	__u32 next;
};

/* Container ioctls (no argument struct, the argument is an integer). */
#define VFIO_GET_API_VERSION	_IO(VFIO_TYPE, VFIO_BASE + 0)
#define VFIO_CHECK_EXTENSION	_IO(VFIO_TYPE, VFIO_BASE + 1)
#define VFIO_SET_IOMMU		_IO(VFIO_TYPE, VFIO_BASE + 2)

/**
 * struct vfio_group_status - argument of VFIO_GROUP_GET_STATUS
 * @argsz: at least 8
 * @flags: out: VFIO_GROUP_FLAGS_*
 */
struct vfio_group_status {
	__u32 argsz;
	__u32 flags;
#define VFIO_GROUP_FLAGS_VIABLE		(1 << 0)	/* no kernel driver holds the group's DMA */
#define VFIO_GROUP_FLAGS_CONTAINER_SET	(1 << 1)
};

/* Group ioctls: a status, a pointer to the container's int fd, none, a pointer to a name. */
#define VFIO_GROUP_GET_STATUS		_IO(VFIO_TYPE, VFIO_BASE + 3)
#define VFIO_GROUP_SET_CONTAINER	_IO(VFIO_TYPE, VFIO_BASE + 4)
#define VFIO_GROUP_UNSET_CONTAINER	_IO(VFIO_TYPE, VFIO_BASE + 5)
#define VFIO_GROUP_GET_DEVICE_FD	_IO(VFIO_TYPE, VFIO_BASE + 6)

/**
 * struct vfio_iommu_type1_info - argument of VFIO_IOMMU_GET_INFO
 * @argsz: size of the caller's buffer; raised on return when the capability
 *         chain did not fit (and @cap_offset is then 0)
 * @flags: VFIO_IOMMU_INFO_* bits describing the valid fields
 * @iova_pgsizes: bitmap of supported IOMMU page sizes
 * @cap_offset: offset of the first capability from the start of the struct
 *
 * On LP64 the struct has 4 bytes of tail padding (sizeof 24).
 */
struct vfio_iommu_type1_info {
	__u32 argsz;
	__u32 flags;
#define VFIO_IOMMU_INFO_PGSIZES	(1 << 0)	/* @iova_pgsizes is valid */
#define VFIO_IOMMU_INFO_CAPS	(1 << 1)	/* @cap_offset is valid */
	__u64 iova_pgsizes;
	__u32 cap_offset;
};

/* Capability: the usable IOVA ranges (version 1). */
#define VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE	1

/**
 * struct vfio_iova_range - one usable IOVA range
 * @start: first IOVA
 * @end: last IOVA, inclusive
 */
struct vfio_iova_range {
	__u64 start;
	__u64 end;
};

struct vfio_iommu_type1_info_cap_iova_range {
	struct vfio_info_cap_header header;
	__u32 nr_iovas;
	__u32 reserved;
	struct vfio_iova_range iova_ranges[];
};

/* Capability: how many more DMA mappings may be created (version 1). */
#define VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL	3

struct vfio_iommu_type1_info_dma_avail {
	struct vfio_info_cap_header header;
	__u32 avail;
};

#define VFIO_IOMMU_GET_INFO	_IO(VFIO_TYPE, VFIO_BASE + 12)

/**
 * struct vfio_iommu_type1_dma_map - argument of VFIO_IOMMU_MAP_DMA
 * @argsz: sizeof(struct vfio_iommu_type1_dma_map)
 * @flags: VFIO_DMA_MAP_FLAG_*
 * @vaddr: process virtual address of the memory
 * @iova: IOVA to map it at
 * @size: length in bytes
 */
struct vfio_iommu_type1_dma_map {
	__u32 argsz;
	__u32 flags;
#define VFIO_DMA_MAP_FLAG_READ	(1 << 0)	/* the device may read */
#define VFIO_DMA_MAP_FLAG_WRITE	(1 << 1)	/* the device may write */
#define VFIO_DMA_MAP_FLAG_VADDR	(1 << 2)	/* only replace the vaddr */
	__u64 vaddr;
	__u64 iova;
	__u64 size;
};

#define VFIO_IOMMU_MAP_DMA	_IO(VFIO_TYPE, VFIO_BASE + 13)

/**
 * struct vfio_iommu_type1_dma_unmap - argument of VFIO_IOMMU_UNMAP_DMA
 * @argsz: size of the argument, including any trailing @data
 * @flags: VFIO_DMA_UNMAP_FLAG_*
 * @iova: first IOVA to unmap
 * @size: in: length; out: bytes actually unmapped
 * @data: flag-dependent trailing data
 */
struct vfio_iommu_type1_dma_unmap {
	__u32 argsz;
	__u32 flags;
#define VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP	(1 << 0)
#define VFIO_DMA_UNMAP_FLAG_ALL			(1 << 1)	/* iova and size must be 0 */
#define VFIO_DMA_UNMAP_FLAG_VADDR		(1 << 2)
	__u64 iova;
	__u64 size;
	__u8 data[];
};

#define VFIO_IOMMU_UNMAP_DMA	_IO(VFIO_TYPE, VFIO_BASE + 14)

#endif /* UIOMMU_HAVE_LINUX_VFIO_H */

/* ==== The VFIO device cdev: /dev/vfio/devices/vfioN ======================================== */
/*
 * Served by the library's VFIO cdev emulation (src/vfio/device_cdev.c). Kernels before 6.6
 * (like the 6.1 header some systems ship) lack the iommufd ioctls of the device cdev, so each
 * block below is declared only when the header included above did not declare it; the numbers
 * and layouts are those of the kernel uAPI. Written by us, checked against the kernel's
 * include/uapi/linux/vfio.h.
 */
#include <linux/types.h>
#include <linux/ioctl.h>

#ifndef VFIO_DEVICE_GET_INFO
/**
 * struct vfio_device_info - argument of VFIO_DEVICE_GET_INFO
 * @argsz: size of the caller's buffer (at least up to @num_irqs)
 * @flags: VFIO_DEVICE_FLAGS_*
 * @num_regions: how many regions the device has
 * @num_irqs: how many IRQ indexes it has
 * @cap_offset: offset of the first capability (with VFIO_DEVICE_FLAGS_CAPS)
 * @pad: zero
 */
struct vfio_device_info {
	__u32 argsz;
	__u32 flags;
#define VFIO_DEVICE_FLAGS_RESET	(1 << 0)	/* the device supports reset */
#define VFIO_DEVICE_FLAGS_PCI	(1 << 1)	/* a PCI function */
#define VFIO_DEVICE_FLAGS_CAPS	(1 << 7)	/* @cap_offset is valid */
	__u32 num_regions;
	__u32 num_irqs;
	__u32 cap_offset;
	__u32 pad;
};

#define VFIO_DEVICE_GET_INFO	_IO(VFIO_TYPE, VFIO_BASE + 7)
#endif /* VFIO_DEVICE_GET_INFO */

#ifndef VFIO_DEVICE_BIND_IOMMUFD
/**
 * struct vfio_device_bind_iommufd - argument of VFIO_DEVICE_BIND_IOMMUFD
 * @argsz: sizeof the struct, at least up to @out_devid
 * @flags: zero
 * @iommufd: an open /dev/iommu fd to bind the device to
 * @out_devid: the iommufd DEVICE object's ID, for IOMMU_* ioctls on that iommufd
 */
struct vfio_device_bind_iommufd {
	__u32 argsz;
	__u32 flags;
	__s32 iommufd;
	__u32 out_devid;
};

#define VFIO_DEVICE_BIND_IOMMUFD	_IO(VFIO_TYPE, VFIO_BASE + 18)
#endif /* VFIO_DEVICE_BIND_IOMMUFD */

#ifndef VFIO_DEVICE_ATTACH_IOMMUFD_PT
/**
 * struct vfio_device_attach_iommufd_pt - argument of VFIO_DEVICE_ATTACH_IOMMUFD_PT
 * @argsz: sizeof the struct, at least up to @pt_id (up to @pasid with the PASID flag)
 * @flags: VFIO_DEVICE_ATTACH_PASID or zero
 * @pt_id: in: an IOAS or HWPT ID of the bound iommufd; out: the HWPT now attached
 * @pasid: the PASID to attach, with VFIO_DEVICE_ATTACH_PASID
 *
 * Attaching an attached device replaces its page table.
 */
struct vfio_device_attach_iommufd_pt {
	__u32 argsz;
	__u32 flags;
#define VFIO_DEVICE_ATTACH_PASID	(1 << 0)
	__u32 pt_id;
	__u32 pasid;
};

#define VFIO_DEVICE_ATTACH_IOMMUFD_PT	_IO(VFIO_TYPE, VFIO_BASE + 19)

/**
 * struct vfio_device_detach_iommufd_pt - argument of VFIO_DEVICE_DETACH_IOMMUFD_PT
 * @argsz: sizeof the struct, at least up to @flags (up to @pasid with the PASID flag)
 * @flags: VFIO_DEVICE_DETACH_PASID or zero
 * @pasid: the PASID to detach, with VFIO_DEVICE_DETACH_PASID
 */
struct vfio_device_detach_iommufd_pt {
	__u32 argsz;
	__u32 flags;
#define VFIO_DEVICE_DETACH_PASID	(1 << 0)
	__u32 pasid;
};

#define VFIO_DEVICE_DETACH_IOMMUFD_PT	_IO(VFIO_TYPE, VFIO_BASE + 20)
#endif /* VFIO_DEVICE_ATTACH_IOMMUFD_PT */

#endif /* UIOMMU_VFIO_COMPAT_H */
