/* SPDX-License-Identifier: MIT */
/*
 * uiommu: the test-only iommufd ABI (IOMMU_TEST_CMD and the mock driver).
 *
 * The kernel offers this interface only with CONFIG_IOMMUFD_TEST; its
 * selftest suite drives the mock IOMMU through it. Identifiers, numbers and
 * layouts match the kernel's test header so the selftests build against
 * this file unchanged. Written by us from the facts in
 * ../shared/spec/iommufd-abi.md (section 4); the prose is our own.
 */
#ifndef _UAPI_IOMMUFD_TEST_H
#define _UAPI_IOMMUFD_TEST_H

#include "iommufd.h"
#include <linux/types.h>

/* Operations of IOMMU_TEST_CMD (iommu_test_cmd.op). Any other op: EOPNOTSUPP. */
enum {
	IOMMU_TEST_OP_ADD_RESERVED = 1,
	IOMMU_TEST_OP_MOCK_DOMAIN = 2,
	IOMMU_TEST_OP_MD_CHECK_MAP = 3,
	IOMMU_TEST_OP_MD_CHECK_REFS = 4,
	IOMMU_TEST_OP_CREATE_ACCESS = 5,
	IOMMU_TEST_OP_DESTROY_ACCESS_PAGES = 6,
	IOMMU_TEST_OP_ACCESS_PAGES = 7,
	IOMMU_TEST_OP_ACCESS_RW = 8,
	IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT = 9,
	IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE = 10,
	IOMMU_TEST_OP_ACCESS_REPLACE_IOAS = 11,
	IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS = 12,
	IOMMU_TEST_OP_DIRTY = 13,
	IOMMU_TEST_OP_MD_CHECK_IOTLB = 14,
	IOMMU_TEST_OP_TRIGGER_IOPF = 15,
	IOMMU_TEST_OP_DEV_CHECK_CACHE = 16,
	IOMMU_TEST_OP_TRIGGER_VEVENT = 17,
	IOMMU_TEST_OP_PASID_ATTACH = 18,
	IOMMU_TEST_OP_PASID_REPLACE = 19,
	IOMMU_TEST_OP_PASID_DETACH = 20,
	IOMMU_TEST_OP_PASID_CHECK_HWPT = 21,
	IOMMU_TEST_OP_DMABUF_GET = 22,
	IOMMU_TEST_OP_DMABUF_REVOKE = 23,
	IOMMU_TEST_OP_MD_CHECK_DMABUF = 24,
	/*
	 * uiommu only, not in the kernel: what the selftest mock's page_response sent to a
	 * device (struct page_responses below), so tests can count the answers to faults.
	 */
	IOMMU_TEST_OP_UIOMMU_PAGE_RESPONSES = 0x1000,
};

/* Mock page-table formats, chosen by iommu_hwpt_selftest.pagetable_type. */
enum {
	MOCK_IOMMUPT_DEFAULT = 0,
	MOCK_IOMMUPT_HUGE = 1,	/* adds 1 MiB IOPTEs */
};

/* Geometry of the mock IOMMU with the DEFAULT format. */
enum {
	MOCK_APERTURE_START = 1UL << 24,		/* 16 MiB */
	MOCK_APERTURE_LAST = (1UL << 31) - 1,		/* 2 GiB - 1, inclusive */
	MOCK_PAGE_SIZE = 2048,				/* IOPTE granule */
	MOCK_HUGE_PAGE_SIZE = 512 * MOCK_PAGE_SIZE,	/* 1 MiB */
};

/* access_pages.flags */
enum {
	MOCK_FLAGS_ACCESS_WRITE = 1 << 0,
	MOCK_FLAGS_ACCESS_SYZ = 1 << 16,	/* syzkaller's area/offset IOVA encoding */
};

/* access_rw.flags */
enum {
	MOCK_ACCESS_RW_WRITE = 1 << 0,		/* copy user buffer -> IOVA (else IOVA -> user) */
	MOCK_ACCESS_RW_SLOW_PATH = 1 << 2,	/* force the page-by-page path */
};

/* create_access.flags */
enum {
	MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES = 1 << 0,
};

/* mock_domain_flags.dev_flags; unknown bits give EINVAL */
enum {
	MOCK_FLAGS_DEVICE_NO_DIRTY = 1 << 0,	/* device cannot track dirty pages */
	MOCK_FLAGS_DEVICE_HUGE_IOVA = 1 << 1,	/* older trees only; newer ones reject it */
	MOCK_FLAGS_DEVICE_PASID = 1 << 2,	/* device supports PASIDs */
};

/* Nested mock domains keep a 4-entry IOTLB, indexed 0..3. */
enum {
	MOCK_NESTED_DOMAIN_IOTLB_ID_MAX = 3,
	MOCK_NESTED_DOMAIN_IOTLB_NUM = 4,
};

/* Mock devices keep a 4-entry cache, indexed 0..3. */
enum {
	MOCK_DEV_CACHE_ID_MAX = 3,
	MOCK_DEV_CACHE_NUM = 4,
};

/* PASID on which every second replace fails with ENOMEM (rollback test). */
#define IOMMU_TEST_PASID_RESERVED 1024

/**
 * struct iommu_test_cmd - argument of IOMMU_TEST_CMD
 * @size: sizeof(struct iommu_test_cmd); the minimum is offsetofend(last)
 * @op: one of IOMMU_TEST_OP_*
 * @id: target object of the op: an IOAS, HWPT, selftest device (stdev),
 *      bound device (idev) or access fd, depending on @op
 * @__reserved: must be 0
 * @last: marks the end of the struct; must be 0
 *
 * The anonymous union at offset 16 holds one member per op:
 *
 * add_reserved (ADD_RESERVED): reserve [@start, @start + @length) in IOAS @id.
 * mock_domain (MOCK_DOMAIN): create a mock device, bind it and attach it to
 *   @id (IOAS or HWPT); returns the selftest object, the HWPT and the idev.
 * mock_domain_flags (MOCK_DOMAIN_FLAGS): the same with MOCK_FLAGS_DEVICE_*.
 * mock_domain_replace (MOCK_DOMAIN_REPLACE): re-attach stdev @id to @pt_id;
 *   returns the resulting HWPT in @pt_id.
 * check_map (MD_CHECK_MAP): check that each MOCK_PAGE_SIZE step of the IOVA
 *   range in paging HWPT @id translates to the memory at @uptr.
 * check_refs (MD_CHECK_REFS): check the pin count of every page of the user
 *   range equals @refs (EIO if not).
 * create_access (CREATE_ACCESS): create an access on IOAS @id; returns a new
 *   fd that later ops pass as @id.
 * destroy_access_pages (DESTROY_ACCESS_PAGES): drop one ACCESS_PAGES item.
 * access_pages (ACCESS_PAGES): pin an IOVA range through access @id and
 *   check it maps @uptr; returns the item ID.
 * access_rw (ACCESS_RW): copy between @uptr and IOVA through access @id.
 * memory_limit (SET_TEMP_MEMORY_LIMIT): internal batch buffer limit.
 * access_replace_ioas (ACCESS_REPLACE_IOAS): move access @id to @ioas_id.
 * dirty (DIRTY): mark the IOVAs selected by the bitmap at @uptr dirty in
 *   HWPT @id; returns the count in @out_nr_dirty.
 * check_iotlb (MD_CHECK_IOTLB): nested HWPT @id has iotlb[@id] == @iotlb.
 * trigger_iopf (TRIGGER_IOPF): report a one-page fault for idev @dev_id.
 * check_dev_cache (DEV_CHECK_CACHE): mock device @id has cache[@id] == @cache.
 * trigger_vevent (TRIGGER_VEVENT): post a selftest vEVENT for idev @dev_id.
 * pasid_attach / pasid_replace / pasid_detach / pasid_check (PASID_*): act
 *   on PASID @pasid of stdev @id; pasid_check with @hwpt_id 0 means "must
 *   be detached".
 * dmabuf_get (DMABUF_GET): create a test dma-buf; the new fd is the ioctl's
 *   return value.
 * dmabuf_revoke (DMABUF_REVOKE): set or clear the revoked state.
 * check_dmabuf (MD_CHECK_DMABUF): each mock page of [@iova, @iova + @length)
 *   in mock HWPT @id translates to byte @offset onwards of dma-buf @dmabuf_fd
 *   (a later addition of the kernel's selftest, not in every tree).
		} check_dmabuf;
		struct {
 * page_responses (UIOMMU_PAGE_RESPONSES, uiommu only): the page responses the
 *   mock sent to idev @dev_id so far, counted by code, and the last one's
 *   grpid and code (0 when none).
 */
struct iommu_test_cmd {
	__u32 size;
	__u32 op;
	__u32 id;
	__u32 __reserved;
	union {
		struct {
			__aligned_u64 start;
			__aligned_u64 length;
		} add_reserved;
		struct {
			__u32 out_stdev_id;
			__u32 out_hwpt_id;
			__u32 out_idev_id;
		} mock_domain;
		struct {
			__u32 out_stdev_id;
			__u32 out_hwpt_id;
			__u32 out_idev_id;
			__u32 dev_flags;
		} mock_domain_flags;
		struct {
			__u32 pt_id;
		} mock_domain_replace;
		struct {
			__aligned_u64 iova;
			__aligned_u64 length;
			__aligned_u64 uptr;
		} check_map;
		struct {
			__aligned_u64 length;
			__aligned_u64 uptr;
			__u32 refs;
		} check_refs;
		struct {
			__u32 out_access_fd;
			__u32 flags;
		} create_access;
		struct {
			__u32 access_pages_id;
		} destroy_access_pages;
		struct {
			__u32 flags;
			__u32 out_access_pages_id;
			__aligned_u64 iova;
			__aligned_u64 length;
			__aligned_u64 uptr;
		} access_pages;
		struct {
			__aligned_u64 iova;
			__aligned_u64 length;
			__aligned_u64 uptr;
			__u32 flags;
		} access_rw;
		struct {
			__u32 limit;
		} memory_limit;
		struct {
			__u32 ioas_id;
		} access_replace_ioas;
		struct {
			__u32 flags;
			__aligned_u64 iova;
			__aligned_u64 length;
			__aligned_u64 page_size;
			__aligned_u64 uptr;
			__aligned_u64 out_nr_dirty;
		} dirty;
		struct {
			__u32 id;
			__u32 iotlb;
		} check_iotlb;
		struct {
			__u32 dev_id;
			__u32 pasid;
			__u32 grpid;
			__u32 perm;
			__aligned_u64 addr;
		} trigger_iopf;
		struct {
			__u32 id;
			__u32 cache;
		} check_dev_cache;
		struct {
			__u32 dev_id;
		} trigger_vevent;
		struct {
			__u32 pasid;
			__u32 pt_id;
		} pasid_attach;
		struct {
			__u32 pasid;
			__u32 pt_id;
		} pasid_replace;
		struct {
			__u32 pasid;
		} pasid_detach;
		struct {
			__u32 pasid;
			__u32 hwpt_id;
		} pasid_check;
		struct {
			__u32 length;
			__u32 open_flags;
		} dmabuf_get;
		struct {
			__s32 dmabuf_fd;
			__u32 revoked;
		} dmabuf_revoke;
		struct {
			__s32 dmabuf_fd;
			__aligned_u64 iova;
			__aligned_u64 length;
			__aligned_u64 offset;
		} check_dmabuf;
		struct {
			__u32 dev_id;
			__u32 out_success;
			__u32 out_invalid;
			__u32 out_failure;
			__u32 out_last_grpid;
			__u32 out_last_code;
		} page_responses;
	};
	__u32 last;
};
#define IOMMU_TEST_CMD _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 32)

/* PASID width of PASID-capable mock devices (out_max_pasid_log2). */
#define MOCK_PASID_WIDTH 20

/* IOMMU_GET_HW_INFO on a mock device: type and payload. */
#define IOMMU_HW_INFO_TYPE_SELFTEST	0xfeedbeef
#define IOMMU_HW_INFO_SELFTEST_REGVAL	0xdeadbeef

/**
 * struct iommu_test_hw_info - mock hw_info payload (IOMMU_HW_INFO_TYPE_SELFTEST)
 * @flags: 0
 * @test_reg: IOMMU_HW_INFO_SELFTEST_REGVAL
 */
struct iommu_test_hw_info {
	__u32 flags;
	__u32 test_reg;
};

/* HWPT data type of mock nested domains; distinct from enum iommu_hwpt_data_type. */
#define IOMMU_HWPT_DATA_SELFTEST 0xdead
/* Initial IOTLB value of mock nested domains and cache value of mock devices. */
#define IOMMU_TEST_IOTLB_DEFAULT 0xbadbeef
#define IOMMU_TEST_DEV_CACHE_DEFAULT 0xbaddad

/**
 * struct iommu_hwpt_selftest - mock HWPT data (IOMMU_HWPT_DATA_SELFTEST)
 * @iotlb: value loaded into all IOTLB entries of a nested domain
 * @pagetable_type: MOCK_IOMMUPT_* format of a paging domain (newer trees;
 *                  older ones stop after @iotlb, 4 bytes)
 */
struct iommu_hwpt_selftest {
	__u32 iotlb;
	__u32 pagetable_type;
};

/* Invalidation entry types of mock nested HWPTs, and a value never accepted. */
#define IOMMU_HWPT_INVALIDATE_DATA_SELFTEST 0xdeadbeef
#define IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID 0xdadbeef

/* Entry flag: invalidate every IOTLB / cache entry, ignoring the index. */
#define IOMMU_TEST_INVALIDATE_FLAG_ALL (1 << 0)

/**
 * struct iommu_hwpt_invalidate_selftest - mock nested HWPT invalidation entry
 * @flags: IOMMU_TEST_INVALIDATE_FLAG_ALL or 0
 * @iotlb_id: IOTLB entry to clear (0..MOCK_NESTED_DOMAIN_IOTLB_ID_MAX)
 */
struct iommu_hwpt_invalidate_selftest {
	__u32 flags;
	__u32 iotlb_id;
};

/* vIOMMU type of the mock driver. */
#define IOMMU_VIOMMU_TYPE_SELFTEST 0xdeadbeef

/**
 * struct iommu_viommu_selftest - mock vIOMMU data (IOMMU_VIOMMU_TYPE_SELFTEST)
 * @in_data: any value; echoed back and stored in the mmap region
 * @out_data: set to @in_data
 * @out_mmap_offset: offset to mmap the vIOMMU region from the iommufd
 * @out_mmap_length: length of that region
 */
struct iommu_viommu_selftest {
	__u32 in_data;
	__u32 out_data;
	__aligned_u64 out_mmap_offset;
	__aligned_u64 out_mmap_length;
};

/* Invalidation entry types of the mock vIOMMU, and a value never accepted. */
#define IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST 0xdeadbeef
#define IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID 0xdadbeef

/**
 * struct iommu_viommu_invalidate_selftest - mock vIOMMU invalidation entry
 * @flags: IOMMU_TEST_INVALIDATE_FLAG_ALL or 0
 * @vdev_id: virtual ID of the target vDEVICE
 * @cache_id: device cache entry to clear (0..MOCK_DEV_CACHE_ID_MAX)
 */
struct iommu_viommu_invalidate_selftest {
	__u32 flags;
	__u32 vdev_id;
	__u32 cache_id;
};

/* vEVENTQ type of the mock driver. */
#define IOMMU_VEVENTQ_TYPE_SELFTEST 0xbeefbeef

/**
 * struct iommu_viommu_event_selftest - mock vEVENT payload
 * @virt_id: virtual ID of the vDEVICE the event is about
 */
struct iommu_viommu_event_selftest {
	__u32 virt_id;
};

/* HW queue type of the mock driver and its number of indexes. */
#define IOMMU_HW_QUEUE_TYPE_SELFTEST 0xdeadbeef
#define IOMMU_TEST_HW_QUEUE_MAX 2

#endif /* _UAPI_IOMMUFD_TEST_H */
