// SPDX-License-Identifier: MIT
/*
 * The selftest mock's vIOMMU (type IOMMU_VIOMMU_TYPE_SELFTEST): what the kernel selftest
 * expects of its mock, behind the driver-neutral vIOMMU ops (iommu/iommufd_driver.h).
 *
 * The model:
 *  - init takes optional data, struct iommu_viommu_selftest: in_data comes back as out_data,
 *    with the offset and length of a 2-page region (iommufd_viommu_alloc_mmap()) whose first
 *    word is in_data. Data shorter than out_data's end is EINVAL;
 *  - nested domains over the vIOMMU's parent are the mock's nested domains
 *    (selftest_mock_nested.c), which take only devices with a vDEVICE here (ENOENT);
 *  - a vDEVICE names a mock device by virtual ID; the invalidation array (data type
 *    IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, else EINVAL with nothing done) clears one cache
 *    word of a vDEVICE's device, or all of them (IOMMU_TEST_INVALIDATE_FLAG_ALL): other flags
 *    EOPNOTSUPP, a cache ID past MOCK_DEV_CACHE_ID_MAX or an unknown virtual ID EINVAL;
 *  - HW queues of type IOMMU_HW_QUEUE_TYPE_SELFTEST (others EOPNOTSUPP), at most
 *    IOMMU_TEST_HW_QUEUE_MAX, one per index (EINVAL past the end, EEXIST for a taken index);
 *    queue n needs queue n - 1 (EIO without it) and holds it (iommufd_hw_queue_depend()), so
 *    they are destroyed in reverse order.
 *
 * Locking: mv->lock protects the vDEVICE list and the HW-queue table; it is a leaf, taken
 * inside iommufd's vIOMMU lock by vdevice_alloc/destroy. A listed vDEVICE's device is alive
 * (iommufd destroys the vDEVICE's driver part before it lets the device go), so the
 * invalidation may touch its cache words under mv->lock.
 */
#include <errno.h>
#include <string.h>

#include "drivers/mock/selftest_mock.h"
#include "iommu/iommufd_driver.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "lib/lockdep.h"
#include "mm/mm.h"
#include "uiommu/iommufd_test.h"

#define MOCK_SELFTEST_VIOMMU_REGION_PAGES 2u

struct mock_selftest_vdev {
	struct iommu_vdevice core;
	struct mock_selftest_vdev *next;  /* mv->lock */
};

struct mock_selftest_hw_queue {
	struct iommu_hw_queue core;
	struct mock_selftest_hw_queue *prev; /* index - 1, held (iommufd_hw_queue_depend()) */
	uint32_t index;
	bool linked;                         /* in mv->hw_queues; mv->lock */
};

struct mock_selftest_viommu {
	struct iommu_viommu core;
	struct uiommu_mutex lock; /* protects vdevs, hw_queues; a leaf (after iommufd's) */
	struct mock_selftest_vdev *vdevs;
	struct mock_selftest_hw_queue *hw_queues[IOMMU_TEST_HW_QUEUE_MAX];
};

static struct mock_selftest_viommu *to_mock_viommu(struct iommu_viommu *viommu)
{
	return container_of(viommu, struct mock_selftest_viommu, core);
}

static void mock_selftest_viommu_destroy(struct iommu_viommu *viommu)
{
	struct mock_selftest_viommu *mv = to_mock_viommu(viommu);

	WARN_ON(mv->vdevs);
	uiommu_mutex_destroy(&mv->lock);
	uiommu_free(mv);
}

static struct iommu_domain *mock_selftest_viommu_alloc_nested(
	struct iommu_viommu *viommu, uint32_t flags, const struct iommu_user_data *user_data)
{
	return mock_selftest_nested_alloc(viommu->parent, viommu, flags, user_data);
}

/* ---- vDEVICEs and the invalidation of their caches ------------------------------------------- */

static struct iommu_vdevice *mock_selftest_vdevice_alloc(struct iommu_viommu *viommu,
							 struct device *dev, uint64_t virt_id)
{
	struct mock_selftest_viommu *mv = to_mock_viommu(viommu);
	struct mock_selftest_vdev *mvdev;

	mvdev = uiommu_zalloc(sizeof(*mvdev));
	if (!mvdev)
		return ERR_PTR(-ENOMEM);
	mvdev->core.viommu = viommu;
	mvdev->core.dev = dev;
	mvdev->core.virt_id = virt_id;
	uiommu_mutex_lock(&mv->lock);
	mvdev->next = mv->vdevs;
	mv->vdevs = mvdev;
	uiommu_mutex_unlock(&mv->lock);
	return &mvdev->core;
}

static void mock_selftest_vdevice_destroy(struct iommu_vdevice *vdev)
{
	struct mock_selftest_vdev *mvdev = container_of(vdev, struct mock_selftest_vdev, core);
	struct mock_selftest_viommu *mv = to_mock_viommu(vdev->viommu);
	struct mock_selftest_vdev **pos;

	uiommu_mutex_lock(&mv->lock);
	for (pos = &mv->vdevs; *pos; pos = &(*pos)->next) {
		if (*pos == mvdev) {
			*pos = mvdev->next;
			break;
		}
	}
	uiommu_mutex_unlock(&mv->lock);
	uiommu_free(mvdev);
}

bool mock_selftest_viommu_has_vdev(struct iommu_viommu *viommu, struct device *dev)
{
	struct mock_selftest_viommu *mv = to_mock_viommu(viommu);
	struct mock_selftest_vdev *mvdev;

	uiommu_mutex_lock(&mv->lock);
	for (mvdev = mv->vdevs; mvdev; mvdev = mvdev->next)
		if (mvdev->core.dev == dev)
			break;
	uiommu_mutex_unlock(&mv->lock);
	return mvdev;
}

static int mock_selftest_viommu_invalidate_one(void *arg, const void *entry)
{
	const struct iommu_viommu_invalidate_selftest *inv = entry;
	struct mock_selftest_viommu *mv = arg;
	struct mock_selftest_vdev *mvdev;
	_Atomic uint32_t *cache;
	unsigned int i;
	int rc = 0;

	if (inv->flags & ~IOMMU_TEST_INVALIDATE_FLAG_ALL)
		return -EOPNOTSUPP;
	if (inv->cache_id > MOCK_DEV_CACHE_ID_MAX)
		return -EINVAL;
	uiommu_mutex_lock(&mv->lock);
	for (mvdev = mv->vdevs; mvdev; mvdev = mvdev->next)
		if (mvdev->core.virt_id == inv->vdev_id)
			break;
	if (!mvdev) {
		rc = -EINVAL;
		goto out_unlock;
	}
	cache = mock_selftest_dev_cache(mvdev->core.dev);
	if (inv->flags & IOMMU_TEST_INVALIDATE_FLAG_ALL) {
		for (i = 0; i != MOCK_SELFTEST_DEV_CACHE_NUM; i++)
			atomic_store(&cache[i], 0);
	} else {
		atomic_store(&cache[inv->cache_id], 0);
	}
out_unlock:
	uiommu_mutex_unlock(&mv->lock);
	return rc;
}

static int mock_selftest_viommu_cache_invalidate(struct iommu_viommu *viommu,
						 struct iommu_user_data_array *array)
{
	struct iommu_viommu_invalidate_selftest inv;

	if (array->type != IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST) {
		array->entry_num = 0;
		return -EINVAL;
	}
	/* The kernel mock copies the whole array at once: longer entries need a zero tail. */
	return iommu_user_array_for_each(
		array, &inv, sizeof(inv),
		offsetofend(struct iommu_viommu_invalidate_selftest, cache_id), false,
		mock_selftest_viommu_invalidate_one, to_mock_viommu(viommu));
}

/* ---- HW queues ------------------------------------------------------------------------------- */

static struct iommu_hw_queue *mock_selftest_hw_queue_alloc(struct iommu_viommu *viommu,
							   uint32_t type)
{
	struct mock_selftest_hw_queue *mq;

	if (type != IOMMU_HW_QUEUE_TYPE_SELFTEST)
		return ERR_PTR(-EOPNOTSUPP);
	mq = uiommu_zalloc(sizeof(*mq));
	if (!mq)
		return ERR_PTR(-ENOMEM);
	mq->core.viommu = viommu;
	mq->core.type = type;
	return &mq->core;
}

static int mock_selftest_hw_queue_init_phys(struct iommu_hw_queue *hw_queue, uint32_t index,
					    phys_addr_t base_pa)
{
	struct mock_selftest_hw_queue *mq = container_of(hw_queue, struct mock_selftest_hw_queue,
							  core);
	struct mock_selftest_viommu *mv = to_mock_viommu(hw_queue->viommu);
	int rc = 0;

	(void)base_pa;
	if (index >= IOMMU_TEST_HW_QUEUE_MAX)
		return -EINVAL;
	uiommu_mutex_lock(&mv->lock);
	if (mv->hw_queues[index]) {
		rc = -EEXIST;
		goto out_unlock;
	}
	if (index) {
		mq->prev = mv->hw_queues[index - 1];
		if (!mq->prev) {
			rc = -EIO;
			goto out_unlock;
		}
		/* Pairs with the undepend in mock_selftest_hw_queue_destroy(). */
		iommufd_hw_queue_depend(&mq->core, &mq->prev->core);
	}
	mq->index = index;
	mv->hw_queues[index] = mq;
	mq->linked = true;
out_unlock:
	uiommu_mutex_unlock(&mv->lock);
	return rc;
}

static void mock_selftest_hw_queue_destroy(struct iommu_hw_queue *hw_queue)
{
	struct mock_selftest_hw_queue *mq = container_of(hw_queue, struct mock_selftest_hw_queue,
							  core);
	struct mock_selftest_viommu *mv = to_mock_viommu(hw_queue->viommu);

	uiommu_mutex_lock(&mv->lock);
	if (mq->linked) {
		WARN_ON(mv->hw_queues[mq->index] != mq);
		mv->hw_queues[mq->index] = NULL;
		if (mq->prev)
			iommufd_hw_queue_undepend(&mq->core, &mq->prev->core);
	}
	uiommu_mutex_unlock(&mv->lock);
	uiommu_free(mq);
}

static const struct iommu_viommu_ops mock_selftest_viommu_ops = {
	.destroy = mock_selftest_viommu_destroy,
	.alloc_domain_nested = mock_selftest_viommu_alloc_nested,
	.cache_invalidate = mock_selftest_viommu_cache_invalidate,
	.vdevice_alloc = mock_selftest_vdevice_alloc,
	.vdevice_destroy = mock_selftest_vdevice_destroy,
	.hw_queue_alloc = mock_selftest_hw_queue_alloc,
	.hw_queue_init_phys = mock_selftest_hw_queue_init_phys,
	.hw_queue_destroy = mock_selftest_hw_queue_destroy,
};

/* ---- the iommu_ops side ---------------------------------------------------------------------- */

struct iommu_viommu *mock_selftest_viommu_alloc(struct device *dev, uint32_t type)
{
	struct mock_selftest_viommu *mv;

	if (!mock_selftest_dev_is(dev) || type != IOMMU_VIOMMU_TYPE_SELFTEST)
		return ERR_PTR(-EOPNOTSUPP);
	mv = uiommu_zalloc(sizeof(*mv));
	if (!mv)
		return ERR_PTR(-ENOMEM);
	uiommu_mutex_init(&mv->lock);
	mv->core.ops = &mock_selftest_viommu_ops;
	return &mv->core;
}

int mock_selftest_viommu_init(struct iommu_viommu *viommu, struct iommu_domain *parent_domain,
			      const struct iommu_user_data *user_data)
{
	struct iommu_viommu_selftest data;
	uint64_t offset;
	size_t n;
	void *region;
	int rc;

	if (!mock_selftest_domain_is(parent_domain))
		return -EINVAL;
	/* The region comes with the data, as the kernel mock's does. */
	if (!user_data)
		return 0;
	if (user_data->len < offsetofend(struct iommu_viommu_selftest, out_data))
		return -EINVAL;
	memset(&data, 0, sizeof(data));
	n = user_data->len < sizeof(data) ? user_data->len : sizeof(data);
	memcpy(&data, user_data->data, n);
	rc = iommufd_viommu_alloc_mmap(viommu, MOCK_SELFTEST_VIOMMU_REGION_PAGES * uiommu_page_size,
				       &region, &offset);
	if (rc)
		return rc;
	data.out_mmap_offset = offset;
	memcpy(region, &data.in_data, sizeof(data.in_data));
	data.out_data = data.in_data;
	data.out_mmap_length = MOCK_SELFTEST_VIOMMU_REGION_PAGES * uiommu_page_size;
	memcpy(user_data->out, &data, n);
	*user_data->out_len = n;
	return 0;
}
