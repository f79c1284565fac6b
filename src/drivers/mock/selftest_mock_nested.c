// SPDX-License-Identifier: MIT
/*
 * Nested domains of the selftest mock IOMMU.
 *
 * A nested (stage-1) domain is what a guest would own: its page table lives in guest memory
 * and the host only learns of changes through the guest's cache invalidations. The mock has no
 * guest page table to walk, so its nested domain is only what the kernel selftest can see: an
 * IOTLB of MOCK_SELFTEST_NESTED_IOTLB_NUM 32-bit entries, all loaded from the iotlb word of
 * the user's struct iommu_hwpt_selftest at allocation, which user invalidation clears (one
 * entry, or all of them with MOCK_SELFTEST_INVALIDATE_ALL) and MD_CHECK_IOTLB reads back.
 * The invalidation is the domain's cache_invalidate_user op: data type
 * MOCK_SELFTEST_INVALIDATE_TYPE (else EINVAL, nothing done), entries of struct
 * iommu_hwpt_invalidate_selftest (other flags EOPNOTSUPP, an entry past the IOTLB EINVAL).
 *
 * A nested domain sits on a parent: a paging domain of this driver that was allocated as a
 * nesting parent. iommufd keeps the parent HWPT alive for as long as the nested one exists, so
 * the domain only remembers it (and the vIOMMU it was made on, if any, which iommufd keeps
 * too). Attaching a mock device to a nested domain is accepted, except that one made on a
 * vIOMMU takes only a device with a vDEVICE there (ENOENT), as the kernel mock's attach.
 *
 * Locking: the IOTLB entries are atomics; invalidations and checks may race from several
 * threads and each entry is one word, so no lock is needed.
 */
#include <errno.h>
#include <string.h>

#include "drivers/mock/selftest_mock.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "uiommu/iommufd_test.h"

struct mock_selftest_nested {
	struct iommu_domain domain;
	struct iommu_domain *parent; /* kept alive by the caller; constant */
	struct iommu_viommu *viommu; /* made on a vIOMMU (which outlives it), or NULL; constant */
	_Atomic uint32_t iotlb[MOCK_SELFTEST_NESTED_IOTLB_NUM];
};

static const struct iommu_domain_ops mock_selftest_nested_ops;

static struct mock_selftest_nested *to_mock_nested(struct iommu_domain *domain)
{
	return container_of(domain, struct mock_selftest_nested, domain);
}

static int mock_selftest_nested_attach_dev(struct iommu_domain *domain, struct device *dev,
					   struct iommu_domain *old)
{
	struct mock_selftest_nested *mn = to_mock_nested(domain);

	(void)old;
	if (!mock_selftest_dev_is(dev) || domain->owner != mock_selftest_iommu_ops())
		return -EINVAL;
	/* A vIOMMU's nested domain takes only devices with a vDEVICE in that vIOMMU. */
	if (mn->viommu && !mock_selftest_viommu_has_vdev(mn->viommu, dev))
		return -ENOENT;
	return 0;
}

static void mock_selftest_nested_free(struct iommu_domain *domain)
{
	uiommu_free(to_mock_nested(domain));
}

static int mock_selftest_nested_cache_invalidate_user(struct iommu_domain *domain,
						      struct iommu_user_data_array *array);

static const struct iommu_domain_ops mock_selftest_nested_ops = {
	.attach_dev = mock_selftest_nested_attach_dev,
	.set_dev_pasid = mock_selftest_set_dev_pasid,
	.cache_invalidate_user = mock_selftest_nested_cache_invalidate_user,
	.free = mock_selftest_nested_free,
};

struct iommu_domain *mock_selftest_nested_alloc(struct iommu_domain *parent,
						struct iommu_viommu *viommu, uint32_t flags,
						const struct iommu_user_data *user_data)
{
	struct mock_selftest_nested *mn;
	uint32_t iotlb;
	unsigned int i;

	if (!mock_selftest_domain_is(parent))
		return ERR_PTR(-EINVAL);
	if (flags & ~IOMMU_DOMAIN_ALLOC_PASID)
		return ERR_PTR(-EOPNOTSUPP);
	if (user_data->type != MOCK_SELFTEST_DATA_TYPE)
		return ERR_PTR(-EOPNOTSUPP);
	if (user_data->len < sizeof(iotlb))
		return ERR_PTR(-EINVAL);
	memcpy(&iotlb, user_data->data, sizeof(iotlb));

	mn = uiommu_zalloc(sizeof(*mn));
	if (!mn)
		return ERR_PTR(-ENOMEM);
	mn->parent = parent;
	mn->viommu = viommu;
	for (i = 0; i != MOCK_SELFTEST_NESTED_IOTLB_NUM; i++)
		atomic_init(&mn->iotlb[i], iotlb);
	mn->domain.type = IOMMU_DOMAIN_NESTED;
	mn->domain.ops = &mock_selftest_nested_ops;
	mn->domain.owner = mock_selftest_iommu_ops();
	mn->domain.geometry = parent->geometry;
	return &mn->domain;
}

struct iommu_domain *mock_selftest_domain_alloc_nested(struct device *dev,
						       struct iommu_domain *parent, uint32_t flags,
						       const struct iommu_user_data *user_data)
{
	if (!mock_selftest_dev_is(dev))
		return ERR_PTR(-EOPNOTSUPP);
	return mock_selftest_nested_alloc(parent, NULL, flags, user_data);
}

bool mock_selftest_nested_is(struct iommu_domain *domain)
{
	return domain && domain->ops == &mock_selftest_nested_ops;
}

/* One entry: ALL, or IOTLB entry @iotlb_id cleared. */
static int mock_selftest_nested_invalidate_one(void *arg, const void *entry)
{
	const struct iommu_hwpt_invalidate_selftest *inv = entry;
	struct mock_selftest_nested *mn = arg;
	unsigned int i;

	if (inv->flags & ~MOCK_SELFTEST_INVALIDATE_ALL)
		return -EOPNOTSUPP;
	if (inv->iotlb_id >= MOCK_SELFTEST_NESTED_IOTLB_NUM)
		return -EINVAL;
	if (inv->flags & MOCK_SELFTEST_INVALIDATE_ALL) {
		for (i = 0; i != MOCK_SELFTEST_NESTED_IOTLB_NUM; i++)
			atomic_store(&mn->iotlb[i], 0);
	} else {
		atomic_store(&mn->iotlb[inv->iotlb_id], 0);
	}
	return 0;
}

static int mock_selftest_nested_cache_invalidate_user(struct iommu_domain *domain,
						      struct iommu_user_data_array *array)
{
	struct iommu_hwpt_invalidate_selftest inv;

	if (array->type != MOCK_SELFTEST_INVALIDATE_TYPE) {
		array->entry_num = 0;
		return -EINVAL;
	}
	/* The kernel mock copies entry by entry: a longer entry is EINVAL. */
	return iommu_user_array_for_each(
		array, &inv, sizeof(inv),
		offsetofend(struct iommu_hwpt_invalidate_selftest, iotlb_id), true,
		mock_selftest_nested_invalidate_one, to_mock_nested(domain));
}

uint32_t mock_selftest_nested_iotlb(struct iommu_domain *domain, uint32_t id)
{
	return atomic_load(&to_mock_nested(domain)->iotlb[id]);
}
