// SPDX-License-Identifier: MIT
/*
 * The IOMMU core under contention. Rounds of a bounded time (UIOMMU_STRESS_SECONDS in all,
 * default 3) in which threads race, on a group of three devices and two singletons:
 *   - sysfs type switches (every string) on random groups;
 *   - hot unplug and re-plug of random devices;
 *   - DMA ownership claims, attach of a paging domain, replace, detach and release;
 *   - DMA-API traffic: a driver binds, translates through the group's current domain, unbinds.
 * Device lifetime is what the kernel's driver core guarantees: a device is unbound (its owner or
 * driver lets go) before it is released, so each device has a bind lock that users hold and
 * unplug takes. The core itself takes no lock but group mutexes.
 *
 * After every round, with the threads joined, the invariants are checked: every present device
 * is in a group on its default domain with no owner left; every absent one is in none; probes
 * and releases balance; no domain leaked. Built under ThreadSanitizer by the sanitizer job.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "harness.h"
#include "stress.h"
#include "iommu/dma-iommu.h"
#include "tdrv.h"

#define NDEV 5

static struct iommu_device iommu0 = { .name = "stress0", .deferred_flush = true };

struct sdev {
	struct device *dev;
	pthread_mutex_t bind;  /* held by users of the device; unplug takes it: driver core */
	bool present;          /* under bind */
};

static struct sdev sdevs[NDEV];
static char dma_buf[4096] __attribute__((aligned(4096)));
static atomic_long nops;
static atomic_int unexpected;

static void expect(const char *what, long rc, const long *ok, int n)
{
	int i;

	atomic_fetch_add(&nops, 1);
	for (i = 0; i < n; i++)
		if (rc == ok[i])
			return;
	printf("# %s: unexpected %ld\n", what, rc);
	atomic_fetch_add(&unexpected, 1);
}

#define EXPECT_ONE_OF(what, rc, ...)                                                      \
	do {                                                                              \
		static const long _ok[] = { __VA_ARGS__ };                                \
		expect(what, (long)(rc), _ok, (int)(sizeof(_ok) / sizeof(_ok[0])));        \
	} while (0)

static void *type_switcher(void *arg)
{
	static const char *const types[] = { "identity", "DMA", "DMA-FQ", "auto" };
	unsigned int seed = (unsigned int)(uintptr_t)arg;

	while (stress_running()) {
		struct sdev *s = &sdevs[rand_r(&seed) % NDEV];
		const char *t = types[rand_r(&seed) % 4];
		struct iommu_group *g;
		ssize_t rc;

		pthread_mutex_lock(&s->bind);
		g = s->present ? iommu_group_get(s->dev) : NULL;
		pthread_mutex_unlock(&s->bind);
		if (!g)
			continue;
		/* The group may lose every member meanwhile: that is EINVAL (no default domain). */
		rc = iommu_group_type_store(g, t, strlen(t), true);
		/* Accepted (the count), refused while bound or owned, or conflicting. */
		if (rc != (ssize_t)strlen(t))
			EXPECT_ONE_OF("type store", rc, -EPERM, -EINVAL);
		iommu_group_put(g);
	}
	return NULL;
}

static void *plugger(void *arg)
{
	unsigned int seed = (unsigned int)(uintptr_t)arg;

	while (stress_running()) {
		struct sdev *s = &sdevs[rand_r(&seed) % NDEV];

		pthread_mutex_lock(&s->bind);
		if (s->present) {
			iommu_release_device(s->dev);
			s->present = false;
		} else {
			EXPECT_ONE_OF("probe", iommu_probe_device(s->dev), 0);
			s->present = true;
		}
		pthread_mutex_unlock(&s->bind);
	}
	return NULL;
}

static void *owner(void *arg)
{
	unsigned int seed = (unsigned int)(uintptr_t)arg;
	int cookie;

	while (stress_running()) {
		struct sdev *s = &sdevs[rand_r(&seed) % NDEV];
		struct iommu_domain *d1, *d2;
		int rc;

		pthread_mutex_lock(&s->bind);
		if (!s->present)
			goto next;
		rc = iommu_device_claim_dma_owner(s->dev, &cookie);
		/* EPERM: drivers are bound (the DMA thread), or another owner's cookie. */
		EXPECT_ONE_OF("claim", rc, 0, -EPERM, -EBUSY);
		if (rc)
			goto next;
		d1 = iommu_paging_domain_alloc(s->dev);
		d2 = iommu_paging_domain_alloc(s->dev);
		EXPECT_ONE_OF("attach", iommu_attach_group(d1, s->dev->iommu_group), 0);
		EXPECT_ONE_OF("replace", iommu_group_replace_domain(s->dev->iommu_group, d2), 0);
		iommu_detach_group(d2, s->dev->iommu_group);
		iommu_device_release_dma_owner(s->dev);
		iommu_domain_free(d1);
		iommu_domain_free(d2);
next:
		pthread_mutex_unlock(&s->bind);
	}
	return NULL;
}

static void *dma_user(void *arg)
{
	unsigned int seed = (unsigned int)(uintptr_t)arg;

	while (stress_running()) {
		struct sdev *s = &sdevs[rand_r(&seed) % NDEV];
		struct iommu_domain *dom;
		int rc, i;

		pthread_mutex_lock(&s->bind);
		if (!s->present)
			goto next;
		rc = iommu_device_use_default_domain(s->dev);
		EXPECT_ONE_OF("bind", rc, 0, -EBUSY);
		if (rc)
			goto next;
		/*
		 * While bound, the group stays on its default domain: map a buffer with the DMA
		 * API and check the device's view of it through the domain.
		 */
		for (i = 0; i < 16; i++) {
			dma_addr_t addr;

			dom = iommu_get_domain_for_dev(s->dev);
			if (!dom) {
				printf("# bound device without a domain\n");
				atomic_fetch_add(&unexpected, 1);
				break;
			}
			addr = dma_map_single(s->dev, dma_buf, 4096, DMA_BIDIRECTIONAL);
			if (dma_mapping_error(s->dev, addr)) {
				printf("# dma_map_single failed\n");
				atomic_fetch_add(&unexpected, 1);
				break;
			}
			if (iommu_iova_to_phys(dom, addr) != (phys_addr_t)(uintptr_t)dma_buf) {
				printf("# the device does not see the mapping\n");
				atomic_fetch_add(&unexpected, 1);
			}
			dma_unmap_single(s->dev, addr, 4096, DMA_BIDIRECTIONAL);
		}
		iommu_device_unuse_default_domain(s->dev);
next:
		pthread_mutex_unlock(&s->bind);
	}
	return NULL;
}

static int check_invariants(void)
{
	int bad = 0, present = 0, i;

	for (i = 0; i < NDEV; i++) {
		struct sdev *s = &sdevs[i];
		struct iommu_group_info info;

		if (!s->present) {
			bad += s->dev->iommu_group != NULL;
			continue;
		}
		present++;
		if (!s->dev->iommu_group) {
			bad++;
			continue;
		}
		iommu_group_get_info(s->dev->iommu_group, &info);
		bad += !info.domain_is_default || info.owner_cnt || info.owned ||
		       info.default_type == UINT32_MAX;
	}
	bad += atomic_load(&tdrv.probes) - atomic_load(&tdrv.releases) != present;
	return bad;
}

TEST(threads_race_type_switch_plug_ownership_and_dma)
{
	void *(*fns[])(void *) = { type_switcher, plugger, owner, dma_user };
	double seconds = stress_seconds(3.0);
	int rounds = 6, r, i;

	setup_drivers();
	iommu_device_register(&iommu0, &tdrv_ops);
	for (i = 0; i < NDEV; i++) {
		char bdf[16];

		snprintf(bdf, sizeof(bdf), "0000:01:00.%d", i);
		sdevs[i].dev = mkdev(bdf, &iommu0, i < 3 ? "switch" : NULL);
		pthread_mutex_init(&sdevs[i].bind, NULL);
		ASSERT_EQ(0, iommu_probe_device(sdevs[i].dev));
		sdevs[i].present = true;
	}
	for (r = 0; r < rounds; r++) {
		struct stress_worker w[4];

		for (i = 0; i < 4; i++)
			w[i] = (struct stress_worker){ fns[i], (void *)(uintptr_t)(r * 4 + i + 1) };
		ASSERT_EQ(0, stress_run(w, 4, seconds / rounds));
		ASSERT_EQ(0, check_invariants());
	}
	printf("# %ld operations in %d rounds\n", atomic_load(&nops), rounds);
	ASSERT_EQ(0, atomic_load(&unexpected));
	ASSERT_TRUE(atomic_load(&nops) > 100);
	for (i = 0; i < NDEV; i++) {
		if (sdevs[i].present)
			iommu_release_device(sdevs[i].dev);
		device_put(sdevs[i].dev);
	}
	ASSERT_EQ(atomic_load(&tdrv.probes), atomic_load(&tdrv.releases));
	ASSERT_EQ(atomic_load(&tdrv.domain_allocs), atomic_load(&tdrv.domain_frees));
}

TEST_HARNESS_MAIN
