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
 *
 * A nested domain sits on a parent: a paging domain of this driver that was allocated as a
 * nesting parent. iommufd keeps the parent HWPT alive for as long as the nested one exists, so
 * the domain only remembers it. Attaching a mock device to a nested domain is always accepted
 * (the core already checked that the domain belongs to this driver).
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

struct mock_selftest_nested {
	struct iommu_domain domain;
	struct iommu_domain *parent; /* kept alive by the caller; constant */
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
	(void)old;
	if (!mock_selftest_dev_is(dev) || domain->owner != mock_selftest_iommu_ops())
		return -EINVAL;
	return 0;
}

static void mock_selftest_nested_free(struct iommu_domain *domain)
{
	uiommu_free(to_mock_nested(domain));
}

static const struct iommu_domain_ops mock_selftest_nested_ops = {
	.attach_dev = mock_selftest_nested_attach_dev,
	.set_dev_pasid = mock_selftest_set_dev_pasid,
	.free = mock_selftest_nested_free,
};

struct iommu_domain *mock_selftest_nested_alloc(struct iommu_domain *parent, struct device *dev,
						uint32_t flags, uint32_t data_type,
						const void *data, uint32_t len)
{
	struct mock_selftest_nested *mn;
	uint32_t iotlb;
	unsigned int i;

	if (!mock_selftest_dev_is(dev) || !mock_selftest_domain_is(parent))
		return ERR_PTR(-EOPNOTSUPP);
	if (flags & ~IOMMU_DOMAIN_ALLOC_PASID)
		return ERR_PTR(-EOPNOTSUPP);
	if (data_type != MOCK_SELFTEST_DATA_TYPE)
		return ERR_PTR(-EOPNOTSUPP);
	if (len < sizeof(iotlb))
		return ERR_PTR(-EINVAL);
	memcpy(&iotlb, data, sizeof(iotlb));

	mn = uiommu_zalloc(sizeof(*mn));
	if (!mn)
		return ERR_PTR(-ENOMEM);
	mn->parent = parent;
	for (i = 0; i != MOCK_SELFTEST_NESTED_IOTLB_NUM; i++)
		atomic_init(&mn->iotlb[i], iotlb);
	mn->domain.type = IOMMU_DOMAIN_NESTED;
	mn->domain.ops = &mock_selftest_nested_ops;
	mn->domain.owner = mock_selftest_iommu_ops();
	mn->domain.geometry = parent->geometry;
	return &mn->domain;
}

bool mock_selftest_nested_is(struct iommu_domain *domain)
{
	return domain && domain->ops == &mock_selftest_nested_ops;
}

int mock_selftest_nested_invalidate(struct iommu_domain *domain, uint32_t flags,
				    uint32_t iotlb_id)
{
	struct mock_selftest_nested *mn = to_mock_nested(domain);
	unsigned int i;

	if (flags & ~MOCK_SELFTEST_INVALIDATE_ALL)
		return -EOPNOTSUPP;
	if (iotlb_id >= MOCK_SELFTEST_NESTED_IOTLB_NUM)
		return -EINVAL;
	if (flags & MOCK_SELFTEST_INVALIDATE_ALL) {
		for (i = 0; i != MOCK_SELFTEST_NESTED_IOTLB_NUM; i++)
			atomic_store(&mn->iotlb[i], 0);
	} else {
		atomic_store(&mn->iotlb[iotlb_id], 0);
	}
	return 0;
}

uint32_t mock_selftest_nested_iotlb(struct iommu_domain *domain, uint32_t id)
{
	return atomic_load(&to_mock_nested(domain)->iotlb[id]);
}
