/* SPDX-License-Identifier: MIT */
/*
 * The selftest mock IOMMU: the driver behind the devices of IOMMU_TEST_CMD's MOCK_DOMAIN, with
 * the model the kernel selftest expects of iommufd's mock (see selftest_mock.c for the design).
 *
 iommufd reaches the driver through its ops (iommu/iommu.h, iommu/iommufd_driver.h) like any
 * other; only the test command (iommufd/selftest.c and the test-only parts of dirty.c,
 * dmabuf.c, built with the iommufd_test option, as the kernel's CONFIG_IOMMUFD_TEST) calls
 * it by name:
 *  - mock_selftest_dev_create() / mock_selftest_dev_destroy(): a mock device appears on the
 *    private bus (probed into a group of its own) or goes away;
 *  - mock_selftest_domain_is(): is a domain one of this driver's paging domains (MD_CHECK_MAP);
 *  - mock_selftest_dev_flags(): the MOCK_FLAGS_DEVICE_* a device was made with;
 *  - the checks of MD_CHECK_IOTLB, DEV_CHECK_CACHE, the DIRTY op and the page responses.
 */
#ifndef UIOMMU_DRIVERS_MOCK_SELFTEST_MOCK_H
#define UIOMMU_DRIVERS_MOCK_SELFTEST_MOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "iommu/iommu.h"

/* The model's constants (the same values as uiommu/iommufd_test.h). */
#define MOCK_SELFTEST_PAGE_SIZE 2048ull
#define MOCK_SELFTEST_HUGE_PAGE_SIZE (512 * MOCK_SELFTEST_PAGE_SIZE)
#define MOCK_SELFTEST_APERTURE_START (1ull << 24)
#define MOCK_SELFTEST_APERTURE_LAST ((1ull << 31) - 1)
#define MOCK_SELFTEST_PASID_WIDTH 20u
/* IOMMU_TEST_PASID_RESERVED: every second non-blocking set_dev_pasid on it fails, ENOMEM. */
#define MOCK_SELFTEST_PASID_FAKE_ERROR 1024u

/** mock_selftest_set_dev_pasid() - the set_dev_pasid of every mock domain (nested ones too) */
int mock_selftest_set_dev_pasid(struct iommu_domain *domain, struct device *dev, uint32_t pasid,
				struct iommu_domain *old);

/* Device flags (MOCK_FLAGS_DEVICE_*). */
#define MOCK_SELFTEST_DEV_NO_DIRTY (1u << 0)
#define MOCK_SELFTEST_DEV_PASID (1u << 2)
#define MOCK_SELFTEST_DEV_FLAGS (MOCK_SELFTEST_DEV_NO_DIRTY | MOCK_SELFTEST_DEV_PASID)

/**
 * mock_selftest_dev_create() - a new mock device, probed behind the selftest IOMMU
 * @dev_flags: MOCK_SELFTEST_DEV_* (others: -EINVAL)
 *
 * The IOMMU instance is registered with the core on first use. The device gets a group of its
 * own and the identity domain as its default domain.
 *
 * Return: the device with one reference (give it back with mock_selftest_dev_destroy()), or
 * ERR_PTR(-EINVAL / -ENOMEM / a probe error).
 */
struct device *mock_selftest_dev_create(uint32_t dev_flags);

/** mock_selftest_dev_destroy() - the device leaves the bus (release) and is freed */
void mock_selftest_dev_destroy(struct device *dev);

/** mock_selftest_dev_flags() - the flags @dev was created with */
uint32_t mock_selftest_dev_flags(struct device *dev);

/* Device cache words (MOCK_DEV_CACHE_*), cleared by vIOMMU invalidation. */
#define MOCK_SELFTEST_DEV_CACHE_NUM 4u
#define MOCK_SELFTEST_DEV_CACHE_DEFAULT 0xbaddadu

/**
 * mock_selftest_page_responses() - the page responses the driver sent to @dev (a mock device):
 * @counts by code (SUCCESS, INVALID, FAILURE), and the last one's grpid and code (0 if none)
 */
void mock_selftest_page_responses(struct device *dev, uint32_t counts[3], uint32_t *last_grpid,
				  uint32_t *last_code);

/** mock_selftest_dev_is() - is @dev a probed mock device of this driver? */
bool mock_selftest_dev_is(struct device *dev);

/** mock_selftest_iommu_ops() - the driver's ops (the owner of its domains) */
const struct iommu_ops *mock_selftest_iommu_ops(void);

/** mock_selftest_dev_cache() - @dev's MOCK_SELFTEST_DEV_CACHE_NUM cache words; a mock device */
_Atomic uint32_t *mock_selftest_dev_cache(struct device *dev);

/*
 * Nested domains (selftest_mock_nested.c): a stage-1 domain on top of a NEST_PARENT paging
 * domain, described by HWPT data type MOCK_SELFTEST_DATA_TYPE (struct iommu_hwpt_selftest,
 * whose iotlb word loads all four IOTLB entries). They translate nothing themselves; the IOTLB
 * entries are what user invalidation acts on and MD_CHECK_IOTLB reads.
 */
#define MOCK_SELFTEST_DATA_TYPE 0xdeadu
#define MOCK_SELFTEST_NESTED_IOTLB_NUM 4u
#define MOCK_SELFTEST_INVALIDATE_TYPE 0xdeadbeefu
#define MOCK_SELFTEST_INVALIDATE_ALL 1u

/**
 * mock_selftest_nested_alloc() - a nested domain over @parent (a mock paging domain)
 * @viommu: the vIOMMU it is made on (its attaches then need a vDEVICE there), or NULL
 * @flags: IOMMU_DOMAIN_ALLOC_PASID only (others: -EOPNOTSUPP)
 * @user_data: the user's data, already copied in
 * Return: the domain, or ERR_PTR(-EOPNOTSUPP) (flags, data type), -EINVAL (data too short, or
 * @parent is not a paging domain of this driver), -ENOMEM.
 */
struct iommu_viommu;
struct iommu_domain *mock_selftest_nested_alloc(struct iommu_domain *parent,
						struct iommu_viommu *viommu, uint32_t flags,
						const struct iommu_user_data *user_data);
/** mock_selftest_domain_alloc_nested() - the driver's domain_alloc_nested op */
struct iommu_domain *mock_selftest_domain_alloc_nested(struct device *dev,
						       struct iommu_domain *parent, uint32_t flags,
						       const struct iommu_user_data *user_data);
bool mock_selftest_nested_is(struct iommu_domain *domain);
/** mock_selftest_nested_iotlb() - IOTLB entry @id (< MOCK_SELFTEST_NESTED_IOTLB_NUM) */
uint32_t mock_selftest_nested_iotlb(struct iommu_domain *domain, uint32_t id);

/*
 * The vIOMMU (selftest_mock_viommu.c): the driver's viommu_alloc and viommu_init ops, for type
 * IOMMU_VIOMMU_TYPE_SELFTEST (see that file for the model).
 */
struct iommu_viommu *mock_selftest_viommu_alloc(struct device *dev, uint32_t type);
int mock_selftest_viommu_init(struct iommu_viommu *viommu, struct iommu_domain *parent_domain,
			      const struct iommu_user_data *user_data);
/** mock_selftest_viommu_has_vdev() - has @dev a vDEVICE in @viommu (one of this driver's)? */
bool mock_selftest_viommu_has_vdev(struct iommu_viommu *viommu, struct device *dev);

/** mock_selftest_domain_is() - is @domain a paging domain of the selftest mock? */
bool mock_selftest_domain_is(struct iommu_domain *domain);

/**
 * mock_selftest_mark_dirty() - the "hardware" writes through @iova of a mock paging domain
 * Return: 1 when a leaf translates @iova (its dirty bit is now set), 0 when none does,
 * -EINVAL while dirty tracking is off.
 */
int mock_selftest_mark_dirty(struct iommu_domain *domain, uint64_t iova);

/** mock_selftest_nr_tables() - table pages a mock paging domain holds now (tests) */
long mock_selftest_nr_tables(struct iommu_domain *domain);

#endif
