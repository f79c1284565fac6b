/* SPDX-License-Identifier: MIT */
/*
 * "tdrv": a small IOMMU driver for the core's tests. Every callback checks what the core
 * promises it: attach_dev and release_device assert that the group mutex is held (debug builds
 * abort otherwise), no callback ever sees a released device, and the driver counts probes,
 * releases, domain allocations and frees so leaks and double releases show. Its counters are
 * atomic and its group table has a lock, so the stress test can use it from many threads.
 * Include it once per test program.
 */
#ifndef UIOMMU_TESTS_TDRV_H
#define UIOMMU_TESTS_TDRV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "iommu/iommu.h"
#include "lib/compiler.h"
#include "lib/err.h"

/* ---- the test driver ---------------------------------------------------------------------- */

#define TDRV_MAP_SLOTS 1024

/* The "page table": a slot array under a lock, enough for DMA-API traffic from threads. */
struct tdrv_domain {
	struct iommu_domain domain;
	pthread_mutex_t lock; /* protects the slots */
	uint64_t iova[TDRV_MAP_SLOTS]; /* 4 KiB pages mapped; paddr[i] for iova[i]; 0 = free */
	uint64_t paddr[TDRV_MAP_SLOTS];
	bool used[TDRV_MAP_SLOTS];
};

#define TDRV_PASID_SLOTS 8

struct tdrv_dev {
	struct iommu_domain *cur;  /* what the "hardware" translates with */
	struct {
		uint32_t pasid;    /* 0: free slot */
		struct iommu_domain *domain;
	} pasids[TDRV_PASID_SLOTS]; /* what each PASID translates with; group mutex */
	int fail_next_attach;      /* errno for the next attach_dev, 0 for none */
	unsigned int attaches;
	bool released;
};

static struct {
	atomic_int probes, releases, domain_allocs, domain_frees;
	bool fail_alloc;
	/*
	 * set_dev_pasid to a non-blocked domain fails with -EIO when this counts down to 0 (so 2
	 * fails the second call: on the second device of a group); 0 disarms.
	 */
	atomic_int pasid_fail_nth;
	atomic_int set_dev_pasid_calls;
	/* Called inside each successful set_dev_pasid, under the group mutex (a slow attach). */
	void (*pasid_hook)(struct device *dev, uint32_t pasid);
} tdrv;

static struct tdrv_dev *tdev(struct device *dev)
{
	return dev->iommu_data->priv;
}

static int tdrv_attach(struct iommu_domain *domain, struct device *dev, struct iommu_domain *old)
{
	struct tdrv_dev *d = tdev(dev);
	int err;

	(void)old;
	iommu_group_mutex_assert(dev);
	if (d->released)
		abort();
	if (domain->owner && domain->owner != dev->iommu->ops)
		return -EINVAL;
	err = d->fail_next_attach;
	if (err) {
		d->fail_next_attach = 0;
		return err;
	}
	d->cur = domain;
	d->attaches++;
	return 0;
}

/* The domain @dev's @pasid translates with in the "hardware", NULL for none. */
__attribute__((unused)) static struct iommu_domain *tdrv_pasid_domain(struct device *dev,
								      uint32_t pasid)
{
	for (int i = 0; i < TDRV_PASID_SLOTS; i++)
		if (tdev(dev)->pasids[i].pasid == pasid)
			return tdev(dev)->pasids[i].domain;
	return NULL;
}

static int tdrv_set_dev_pasid(struct iommu_domain *domain, struct device *dev, uint32_t pasid,
			      struct iommu_domain *old)
{
	struct tdrv_dev *d = tdev(dev);
	int i, slot = -1;

	iommu_group_mutex_assert(dev);
	if (d->released || !pasid || !dev->iommu_data->max_pasids)
		abort();
	/* The core says what the PASID was on: it must match the hardware. */
	if (tdrv_pasid_domain(dev, pasid) != old)
		abort();
	atomic_fetch_add(&tdrv.set_dev_pasid_calls, 1);
	if (domain->type != IOMMU_DOMAIN_BLOCKED) {
		if (domain->owner && domain->owner != dev->iommu->ops)
			return -EINVAL;
		if (atomic_load(&tdrv.pasid_fail_nth) > 0 &&
		    atomic_fetch_sub(&tdrv.pasid_fail_nth, 1) == 1)
			return -EIO;
	}
	for (i = 0; i < TDRV_PASID_SLOTS; i++) {
		if (d->pasids[i].pasid == pasid) {
			slot = i;
			break;
		}
		if (!d->pasids[i].pasid && slot < 0)
			slot = i;
	}
	if (slot < 0)
		return -ENOSPC;
	if (domain->type == IOMMU_DOMAIN_BLOCKED) {
		d->pasids[slot].pasid = 0;
		d->pasids[slot].domain = NULL;
		return 0;
	}
	if (tdrv.pasid_hook)
		tdrv.pasid_hook(dev, pasid);
	d->pasids[slot].pasid = pasid;
	d->pasids[slot].domain = domain;
	return 0;
}

static int tdrv_map(struct iommu_domain *domain, uint64_t iova, phys_addr_t paddr, size_t pgsize,
		    size_t pgcount, int prot, size_t *mapped)
{
	struct tdrv_domain *td = container_of(domain, struct tdrv_domain, domain);
	size_t n;
	int i;

	(void)prot;
	pthread_mutex_lock(&td->lock);
	for (n = 0; n < pgcount; n++) {
		for (i = 0; i < TDRV_MAP_SLOTS && td->used[i]; i++)
			;
		if (i == TDRV_MAP_SLOTS) {
			pthread_mutex_unlock(&td->lock);
			return -ENOMEM;
		}
		td->used[i] = true;
		td->iova[i] = iova + n * pgsize;
		td->paddr[i] = paddr + n * pgsize;
		*mapped += pgsize;
	}
	pthread_mutex_unlock(&td->lock);
	return 0;
}

static size_t tdrv_unmap(struct iommu_domain *domain, uint64_t iova, size_t pgsize, size_t pgcount,
			 struct iommu_iotlb_gather *gather)
{
	struct tdrv_domain *td = container_of(domain, struct tdrv_domain, domain);
	size_t n, done = 0;
	int i;

	(void)gather;
	pthread_mutex_lock(&td->lock);
	for (n = 0; n < pgcount; n++)
		for (i = 0; i < TDRV_MAP_SLOTS; i++)
			if (td->used[i] && td->iova[i] == iova + n * pgsize) {
				td->used[i] = false;
				done += pgsize;
			}
	pthread_mutex_unlock(&td->lock);
	return done;
}

static phys_addr_t tdrv_iova_to_phys(struct iommu_domain *domain, uint64_t iova)
{
	struct tdrv_domain *td = container_of(domain, struct tdrv_domain, domain);
	phys_addr_t pa = 0;
	int i;

	pthread_mutex_lock(&td->lock);
	for (i = 0; i < TDRV_MAP_SLOTS; i++)
		if (td->used[i] && td->iova[i] == (iova & ~4095ull))
			pa = td->paddr[i] + (iova & 4095);
	pthread_mutex_unlock(&td->lock);
	return pa;
}

static void tdrv_domain_free(struct iommu_domain *domain)
{
	struct tdrv_domain *td = container_of(domain, struct tdrv_domain, domain);

	tdrv.domain_frees++;
	pthread_mutex_destroy(&td->lock);
	free(td);
}

static const struct iommu_domain_ops tdrv_paging_ops = {
	.attach_dev = tdrv_attach,
	.map_pages = tdrv_map,
	.unmap_pages = tdrv_unmap,
	.iova_to_phys = tdrv_iova_to_phys,
	.set_dev_pasid = tdrv_set_dev_pasid,
	.free = tdrv_domain_free,
};

static const struct iommu_domain_ops tdrv_static_ops = {
	.attach_dev = tdrv_attach,
	.set_dev_pasid = tdrv_set_dev_pasid,
};

static struct iommu_domain tdrv_identity = { .type = IOMMU_DOMAIN_IDENTITY, .ops = &tdrv_static_ops };
static struct iommu_domain tdrv_blocked = { .type = IOMMU_DOMAIN_BLOCKED, .ops = &tdrv_static_ops };

static struct iommu_domain *tdrv_alloc_paging(struct device *dev)
{
	struct tdrv_domain *td;

	(void)dev;
	if (tdrv.fail_alloc)
		return ERR_PTR(-ENOMEM);
	td = calloc(1, sizeof(*td));
	pthread_mutex_init(&td->lock, NULL);
	td->domain.ops = &tdrv_paging_ops;
	td->domain.pgsize_bitmap = 4096;
	td->domain.geometry.aperture_end = (1ull << 48) - 1;
	tdrv.domain_allocs++;
	return &td->domain;
}

static struct iommu_device *tdrv_probe(struct device *dev)
{
	dev->iommu_data->priv = calloc(1, sizeof(struct tdrv_dev));
	tdrv.probes++;
	return dev->iommu;
}

/* Groups by key: devices with the same key share one. */
static pthread_mutex_t tdrv_groups_lock = PTHREAD_MUTEX_INITIALIZER; /* tdrv_groups; a leaf */
static struct {
	char key[32];
	struct iommu_group *group;
	int members;
} tdrv_groups[16];

static void tdrv_release(struct device *dev)
{
	int i;

	iommu_group_mutex_assert(dev);
	if (tdev(dev)->released)
		abort();
	tdev(dev)->released = true;
	free(dev->iommu_data->priv);
	dev->iommu_data->priv = NULL;
	tdrv.releases++;
	pthread_mutex_lock(&tdrv_groups_lock);
	for (i = 0; i < 16; i++)
		if (tdrv_groups[i].group == dev->iommu_group && !--tdrv_groups[i].members)
			memset(&tdrv_groups[i], 0, sizeof(tdrv_groups[i]));
	pthread_mutex_unlock(&tdrv_groups_lock);
}

static struct iommu_group *tdrv_device_group(struct device *dev)
{
	struct iommu_group *group;
	int i, free_slot = -1;

	pthread_mutex_lock(&tdrv_groups_lock);
	for (i = 0; i < 16; i++) {
		if (dev->group_key[0] && tdrv_groups[i].group &&
		    !strcmp(tdrv_groups[i].key, dev->group_key)) {
			tdrv_groups[i].members++;
			group = iommu_group_ref_get(tdrv_groups[i].group);
			goto out_unlock;
		}
		if (!tdrv_groups[i].group && free_slot < 0)
			free_slot = i;
	}
	group = iommu_group_alloc();
	if (!IS_ERR(group) && free_slot >= 0) {
		strcpy(tdrv_groups[free_slot].key, dev->group_key);
		tdrv_groups[free_slot].group = group;
		tdrv_groups[free_slot].members = 1;
	}
out_unlock:
	pthread_mutex_unlock(&tdrv_groups_lock);
	return group;
}

static int tdrv_def_domain_type(struct device *dev)
{
	return dev->driver_pref;
}

static bool tdrv_capable(struct device *dev, enum iommu_cap cap)
{
	return cap == IOMMU_CAP_DEFERRED_FLUSH ? dev->iommu->deferred_flush : true;
}

static unsigned int tdrv_resv(struct device *dev, struct iommu_resv_region *r, unsigned int max)
{
	unsigned int n = dev->nr_resv < max ? dev->nr_resv : max;

	memcpy(r, dev->resv, n * sizeof(*r));
	return n;
}

static struct iommu_ops tdrv_ops = {
	.name = "tdrv",
	.capable = tdrv_capable,
	.domain_alloc_paging = tdrv_alloc_paging,
	.probe_device = tdrv_probe,
	.release_device = tdrv_release,
	.device_group = tdrv_device_group,
	.def_domain_type = tdrv_def_domain_type,
	.get_resv_regions = tdrv_resv,
	.identity_domain = &tdrv_identity,
	.blocked_domain = &tdrv_blocked,
};

/* The same driver with no static domains: blocking falls back to an empty paging domain. */
static struct iommu_ops tdrv_bare_ops;

static struct iommu_device iommu_lazy = { .name = "lazy", .deferred_flush = true };
static struct iommu_device iommu_strict = { .name = "strict", .deferred_flush = false };
static struct iommu_device iommu_bare = { .name = "bare", .deferred_flush = true };
/* PASID-capable: a device behind it with pasid_bits N gets min(2^N, 2^20) PASIDs. */
static struct iommu_device iommu_pasid = { .name = "pasid", .deferred_flush = true,
					   .max_pasids = 1u << 20 };

__attribute__((unused)) static struct device *mkdev(const char *bdf, struct iommu_device *iommu, const char *key)
{
	struct device *dev = device_alloc(bdf);

	dev->iommu = iommu;
	if (key)
		snprintf(dev->group_key, sizeof(dev->group_key), "%s", key);
	return dev;
}

__attribute__((unused)) static void setup_drivers(void)
{
	tdrv_bare_ops = tdrv_ops;
	tdrv_bare_ops.name = "bare";
	tdrv_bare_ops.identity_domain = NULL;
	tdrv_bare_ops.blocked_domain = NULL;
	iommu_set_default_policy(false, false);
	iommu_device_register(&iommu_lazy, &tdrv_ops);
	iommu_device_register(&iommu_strict, &tdrv_ops);
	iommu_device_register(&iommu_bare, &tdrv_bare_ops);
	iommu_device_register(&iommu_pasid, &tdrv_ops);
}

__attribute__((unused)) static struct iommu_group_info ginfo(struct device *dev)
{
	struct iommu_group_info info;

	iommu_group_get_info(dev->iommu_group, &info);
	return info;
}

__attribute__((unused)) static ssize_t store(struct device *dev, const char *s)
{
	return iommu_group_type_store(dev->iommu_group, s, strlen(s), true);
}

__attribute__((unused)) static const char *show(struct device *dev)
{
	static char buf[32];

	iommu_group_type_show(dev->iommu_group, buf, sizeof(buf));
	return buf;
}

__attribute__((unused)) static void unplug(struct device *dev)
{
	iommu_release_device(dev);
	device_put(dev);
}


#endif
