// SPDX-License-Identifier: MIT
/*
 * PASID attach handles in the core against invariants 18 to 20 (and 13/15 where PASIDs meet
 * DMA ownership and driver binding), plus a bounded ThreadSanitizer stress of attach, replace
 * and detach racing the lock-free handle lookup. SVA (invariant 21) has its own section.
 *
 * The devices sit behind tdrv's PASID-capable instance (tests/tdrv.h): tdrv's set_dev_pasid
 * checks that the core always tells it the domain the PASID really is on (the "old" argument),
 * can fail its N-th call (tdrv.pasid_fail_nth) and can be slowed down (tdrv.pasid_hook).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/mman.h>

#include "drivers/mock/mock.h"
#include "harness.h"
#include "stress.h"
#include "iommu/iommu.h"
#include "mm/mm.h"
#include "uiommu/uiommu.h"
#include "lib/compiler.h"
#include "lib/err.h"

#include "tdrv.h"

static struct device *mkpasid(const char *bdf, const char *key, uint32_t bits)
{
	struct device *dev = mkdev(bdf, &iommu_pasid, key);

	dev->pasid_bits = bits;
	return dev;
}

static struct iommu_attach_handle *lookup(struct device *dev, uint32_t pasid, unsigned int type)
{
	return iommu_attach_handle_get(dev->iommu_group, pasid, type);
}

/* ---- invariant 18: the errnos of a PASID attach ------------------------------------------------ */

TEST(inv18_pasid_attach_errnos)
{
	struct device *a, *narrow, *bare, *nopasid, *unprobed;
	struct iommu_domain *dom, *dom_narrow, *dom_bare, *dom2;

	setup_drivers();
	a = mkpasid("0000:01:00.0", NULL, 20);
	narrow = mkpasid("0000:01:01.0", NULL, 4);      /* 16 PASIDs */
	bare = mkdev("0000:01:02.0", &iommu_bare, NULL); /* a driver without a blocked domain */
	bare->pasid_bits = 20;
	nopasid = mkpasid("0000:01:03.0", NULL, 0);
	unprobed = mkpasid("0000:01:04.0", NULL, 20);
	ASSERT_EQ(0, iommu_probe_device(a));
	ASSERT_EQ(0, iommu_probe_device(narrow));
	ASSERT_EQ(0, iommu_probe_device(bare));
	ASSERT_EQ(0, iommu_probe_device(nopasid));
	ASSERT_EQ(1u << 20, a->iommu_data->max_pasids);
	ASSERT_EQ(16, narrow->iommu_data->max_pasids);
	dom = iommu_paging_domain_alloc(a);
	dom2 = iommu_paging_domain_alloc(a);
	dom_narrow = iommu_paging_domain_alloc(narrow);
	dom_bare = iommu_paging_domain_alloc(bare);

	ASSERT_EQ(-ENODEV, iommu_attach_device_pasid(dom, unprobed, 1, NULL));
	ASSERT_EQ(-EINVAL, iommu_attach_device_pasid(dom, a, IOMMU_NO_PASID, NULL));
	ASSERT_EQ(-EINVAL, iommu_attach_device_pasid(dom, a, 1u << 20, NULL));
	ASSERT_EQ(-EINVAL, iommu_attach_device_pasid(dom, a, IOMMU_PASID_INVALID, NULL));
	ASSERT_EQ(-EINVAL, iommu_attach_device_pasid(dom_narrow, narrow, 16, NULL));
	ASSERT_EQ(0, iommu_attach_device_pasid(dom_narrow, narrow, 15, NULL));
	/* The blocked domain of that driver cannot remove a PASID: no PASID attach at all. */
	ASSERT_EQ(-EOPNOTSUPP, iommu_attach_device_pasid(dom_bare, bare, 1, NULL));
	/* Another driver's domain. */
	ASSERT_EQ(-EINVAL, iommu_attach_device_pasid(dom_bare, a, 1, NULL));
	/* A group where nobody can emit a PASID. */
	ASSERT_EQ(-EINVAL, iommu_attach_device_pasid(dom, nopasid, 1, NULL));
	ASSERT_EQ(0, ginfo(nopasid).nr_pasid_entries);

	ASSERT_EQ(0, iommu_attach_device_pasid(dom, a, 7, NULL));
	ASSERT_TRUE(tdrv_pasid_domain(a, 7) == dom);
	ASSERT_EQ(-EBUSY, iommu_attach_device_pasid(dom, a, 7, NULL));
	ASSERT_EQ(-EBUSY, iommu_attach_device_pasid(dom2, a, 7, NULL));
	/* The failed attempts changed nothing. */
	ASSERT_TRUE(tdrv_pasid_domain(a, 7) == dom);
	ASSERT_EQ(1, ginfo(a).nr_pasid_entries);
	ASSERT_TRUE(iommu_get_domain_for_dev_pasid(a, 7, 0) == dom);
	ASSERT_TRUE(iommu_get_domain_for_dev_pasid(a, 7, IOMMU_DOMAIN_UNMANAGED) == dom);
	ASSERT_TRUE(iommu_get_domain_for_dev_pasid(a, 7, IOMMU_DOMAIN_SVA) == ERR_PTR(-EBUSY));
	ASSERT_TRUE(iommu_get_domain_for_dev_pasid(a, 8, 0) == NULL);

	iommu_detach_device_pasid(dom, a, 7);
	ASSERT_TRUE(tdrv_pasid_domain(a, 7) == NULL);
	ASSERT_EQ(0, ginfo(a).nr_pasid_entries);
	iommu_detach_device_pasid(dom_narrow, narrow, 15);
	iommu_domain_free(dom);
	iommu_domain_free(dom2);
	iommu_domain_free(dom_narrow);
	iommu_domain_free(dom_bare);
	unplug(a);
	unplug(narrow);
	unplug(bare);
	unplug(nopasid);
	device_put(unprobed);
	ASSERT_EQ(tdrv.domain_allocs, tdrv.domain_frees);
}

TEST(inv18_members_without_pasid_are_skipped)
{
	struct device *a = mkpasid("0000:02:00.0", "sw", 20);
	struct device *b = mkpasid("0000:02:00.1", "sw", 0);
	struct device *c = mkpasid("0000:02:00.2", "sw", 4);
	struct iommu_domain *dom;

	setup_drivers();
	ASSERT_EQ(0, iommu_probe_device(a));
	ASSERT_EQ(0, iommu_probe_device(b));
	ASSERT_EQ(0, iommu_probe_device(c));
	ASSERT_TRUE(a->iommu_group == b->iommu_group && b->iommu_group == c->iommu_group);
	dom = iommu_paging_domain_alloc(a);
	/* c has 16 PASIDs: the group's range is the smallest of its PASID-capable members. */
	ASSERT_EQ(-EINVAL, iommu_attach_device_pasid(dom, b, 16, NULL));
	ASSERT_EQ(0, iommu_attach_device_pasid(dom, b, 3, NULL));
	ASSERT_TRUE(tdrv_pasid_domain(a, 3) == dom);
	ASSERT_TRUE(tdrv_pasid_domain(c, 3) == dom);
	/* tdrv aborts on a set_dev_pasid to a device without PASIDs: b was never called. */
	ASSERT_EQ(2, tdrv.set_dev_pasid_calls);
	iommu_detach_device_pasid(dom, a, 3);
	ASSERT_EQ(4, tdrv.set_dev_pasid_calls);
	iommu_domain_free(dom);
	unplug(a);
	unplug(b);
	unplug(c);
}

/* ---- invariant 19: visible only once every device accepted it ---------------------------------- */

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct iommu_group *group;
	uint32_t pasid;
	int in_attach;         /* the driver is inside set_dev_pasid */
	int looked;            /* the lookup thread has answered */
	long lookup_err;       /* what it saw while the attach was in progress */
	bool domain_seen;      /* iommu_get_domain_for_dev_pasid() returned a domain meanwhile */
} slow = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER };

static void slow_hook(struct device *dev, uint32_t pasid)
{
	struct timespec deadline;

	(void)dev;
	(void)pasid;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 10;
	pthread_mutex_lock(&slow.lock);
	slow.in_attach++;
	pthread_cond_broadcast(&slow.cond);
	/* Hold the attach (and the group mutex) until the reader has looked. */
	while (slow.looked < slow.in_attach)
		if (pthread_cond_timedwait(&slow.cond, &slow.lock, &deadline))
			break;
	pthread_mutex_unlock(&slow.lock);
}

static void *slow_reader(void *arg)
{
	struct device *dev = arg;
	struct iommu_attach_handle *h;
	struct iommu_domain *d;

	pthread_mutex_lock(&slow.lock);
	while (!slow.in_attach)
		pthread_cond_wait(&slow.cond, &slow.lock);
	pthread_mutex_unlock(&slow.lock);
	/* Only the table's lock: the group mutex is held by the attach right now. */
	h = iommu_attach_handle_get(slow.group, slow.pasid, 0);
	d = iommu_get_domain_for_dev_pasid(dev, slow.pasid, 0);
	pthread_mutex_lock(&slow.lock);
	slow.lookup_err = IS_ERR(h) ? PTR_ERR(h) : 0;
	slow.domain_seen = d != NULL;
	slow.looked++;
	pthread_cond_broadcast(&slow.cond);
	pthread_mutex_unlock(&slow.lock);
	return NULL;
}

TEST(inv19_lookup_during_a_slow_attach_sees_enoent_then_the_handle)
{
	struct device *a = mkpasid("0000:03:00.0", NULL, 20);
	struct iommu_attach_handle handle = { 0 };
	struct iommu_domain *dom;
	pthread_t t;

	setup_drivers();
	ASSERT_EQ(0, iommu_probe_device(a));
	dom = iommu_paging_domain_alloc(a);
	slow.group = a->iommu_group;
	slow.pasid = 42;
	tdrv.pasid_hook = slow_hook;
	ASSERT_EQ(0, pthread_create(&t, NULL, slow_reader, a));
	ASSERT_EQ(0, iommu_attach_device_pasid(dom, a, 42, &handle));
	pthread_join(t, NULL);
	tdrv.pasid_hook = NULL;
	ASSERT_EQ(1, slow.looked);
	ASSERT_EQ(-ENOENT, slow.lookup_err);
	ASSERT_FALSE(slow.domain_seen);
	/* Published now, with the domain set in the handle. */
	ASSERT_TRUE(lookup(a, 42, 0) == &handle);
	ASSERT_TRUE(handle.domain == dom);
	iommu_detach_device_pasid(dom, a, 42);
	ASSERT_TRUE(lookup(a, 42, 0) == ERR_PTR(-ENOENT));
	iommu_domain_free(dom);
	unplug(a);
}

TEST(inv19_failed_attach_leaves_no_entry_and_no_device_attached)
{
	struct device *a = mkpasid("0000:04:00.0", "sw", 20);
	struct device *b = mkpasid("0000:04:00.1", "sw", 20);
	struct device *c = mkpasid("0000:04:00.2", "sw", 20);
	struct iommu_attach_handle h1 = { 0 }, h2 = { 0 };
	struct iommu_domain *dom;

	setup_drivers();
	ASSERT_EQ(0, iommu_probe_device(a));
	ASSERT_EQ(0, iommu_probe_device(b));
	ASSERT_EQ(0, iommu_probe_device(c));
	dom = iommu_paging_domain_alloc(a);
	for (int nth = 1; nth <= 3; nth++) {
		tdrv.pasid_fail_nth = nth;
		ASSERT_EQ(-EIO, iommu_attach_device_pasid(dom, a, 9, &h1));
		ASSERT_TRUE(tdrv_pasid_domain(a, 9) == NULL);
		ASSERT_TRUE(tdrv_pasid_domain(b, 9) == NULL);
		ASSERT_TRUE(tdrv_pasid_domain(c, 9) == NULL);
		ASSERT_EQ(0, ginfo(a).nr_pasid_entries);
		ASSERT_TRUE(lookup(a, 9, 0) == ERR_PTR(-ENOENT));
	}
	tdrv.pasid_fail_nth = 0;
	/* Nothing was left behind: the same attach now works. */
	ASSERT_EQ(0, iommu_attach_device_pasid(dom, b, 9, &h1));
	ASSERT_TRUE(tdrv_pasid_domain(c, 9) == dom);
	ASSERT_TRUE(lookup(c, 9, 0) == &h1);
	/* A replace that fails on the third device leaves the two others on the old domain. */
	{
		struct iommu_domain *dom2 = iommu_paging_domain_alloc(a);

		tdrv.pasid_fail_nth = 3;
		ASSERT_EQ(-EIO, iommu_replace_device_pasid(dom2, a, 9, &h2));
		ASSERT_TRUE(tdrv_pasid_domain(a, 9) == dom);
		ASSERT_TRUE(tdrv_pasid_domain(b, 9) == dom);
		ASSERT_TRUE(tdrv_pasid_domain(c, 9) == dom);
		ASSERT_TRUE(lookup(a, 9, 0) == &h1);
		tdrv.pasid_fail_nth = 0;
		ASSERT_EQ(0, iommu_replace_device_pasid(dom2, a, 9, &h2));
		ASSERT_TRUE(tdrv_pasid_domain(b, 9) == dom2);
		ASSERT_TRUE(lookup(a, 9, 0) == &h2);
		ASSERT_TRUE(h2.domain == dom2);
		iommu_detach_device_pasid(dom2, a, 9);
		iommu_domain_free(dom2);
	}
	iommu_domain_free(dom);
	unplug(a);
	unplug(b);
	unplug(c);
	ASSERT_EQ(tdrv.domain_allocs, tdrv.domain_frees);
}

/* ---- invariant 20: attach handles --------------------------------------------------------------- */

TEST(inv20_handles_replace_rules_and_lookup_filters)
{
	struct device *a = mkpasid("0000:05:00.0", NULL, 20);
	struct iommu_attach_handle h1 = { 0 }, h2 = { 0 }, h3 = { 0 };
	struct iommu_domain *dom, *dom2;

	setup_drivers();
	ASSERT_EQ(0, iommu_probe_device(a));
	dom = iommu_paging_domain_alloc(a);
	dom2 = iommu_paging_domain_alloc(a);

	/* A bare-domain entry is no handle. */
	ASSERT_EQ(0, iommu_attach_device_pasid(dom, a, 5, NULL));
	ASSERT_TRUE(lookup(a, 5, 0) == ERR_PTR(-ENOENT));
	ASSERT_TRUE(iommu_get_domain_for_dev_pasid(a, 5, 0) == dom);
	iommu_detach_device_pasid(dom, a, 5);

	ASSERT_EQ(0, iommu_attach_device_pasid(dom, a, 5, &h1));
	ASSERT_TRUE(lookup(a, 5, 0) == &h1);
	ASSERT_TRUE(lookup(a, 5, IOMMU_DOMAIN_UNMANAGED) == &h1);
	ASSERT_TRUE(lookup(a, 5, IOMMU_DOMAIN_SVA) == ERR_PTR(-EBUSY));
	ASSERT_TRUE(lookup(a, 6, 0) == ERR_PTR(-ENOENT));

	/* Replace needs a handle, a new one, and an attached PASID. */
	ASSERT_EQ(-EINVAL, iommu_replace_device_pasid(dom2, a, 5, NULL));
	ASSERT_EQ(-EINVAL, iommu_replace_device_pasid(dom2, a, 6, &h2));
	ASSERT_EQ(1, ginfo(a).nr_pasid_entries); /* PASID 6 left no slot behind */
	ASSERT_EQ(-EINVAL, iommu_replace_device_pasid(dom, a, 0, &h2));
	ASSERT_TRUE(lookup(a, 5, 0) == &h1);
	ASSERT_TRUE(tdrv_pasid_domain(a, 5) == dom);

	/* Same domain, new handle: only the handle changes (no driver call). */
	{
		int calls = tdrv.set_dev_pasid_calls;

		ASSERT_EQ(0, iommu_replace_device_pasid(dom, a, 5, &h2));
		ASSERT_EQ(calls, tdrv.set_dev_pasid_calls);
		ASSERT_TRUE(lookup(a, 5, 0) == &h2);
	}
	ASSERT_EQ(0, iommu_replace_device_pasid(dom2, a, 5, &h3));
	ASSERT_TRUE(lookup(a, 5, 0) == &h3);
	ASSERT_TRUE(tdrv_pasid_domain(a, 5) == dom2);
	iommu_detach_device_pasid(dom2, a, 5);
	ASSERT_TRUE(lookup(a, 5, 0) == ERR_PTR(-ENOENT));
	ASSERT_TRUE(tdrv_pasid_domain(a, 5) == NULL);
	iommu_domain_free(dom);
	iommu_domain_free(dom2);
	unplug(a);
}

TEST(inv20_replace_with_the_current_handle_is_rejected)
{
	/* The core WARNs (a debug build stops): run it in a child and expect that. */
	struct device *a = mkpasid("0000:05:01.0", NULL, 20);
	struct iommu_attach_handle h1 = { 0 };
	struct iommu_domain *dom, *dom2;
	pid_t pid;
	int status;

	setup_drivers();
	ASSERT_EQ(0, iommu_probe_device(a));
	dom = iommu_paging_domain_alloc(a);
	dom2 = iommu_paging_domain_alloc(a);
	ASSERT_EQ(0, iommu_attach_device_pasid(dom, a, 5, &h1));
	pid = fork();
	if (!pid) {
		int rc = iommu_replace_device_pasid(dom2, a, 5, &h1);

		/* Release builds carry on past the WARN: the answer and the state must be right. */
		_exit(rc == -EINVAL && lookup(a, 5, 0) == &h1 && tdrv_pasid_domain(a, 5) == dom ?
			      0 : 1);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
#ifdef UIOMMU_DEBUG
	ASSERT_TRUE(WIFSIGNALED(status));
#else
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
#endif
	ASSERT_TRUE(lookup(a, 5, 0) == &h1);
	iommu_detach_device_pasid(dom, a, 5);
	iommu_domain_free(dom);
	iommu_domain_free(dom2);
	unplug(a);
}

TEST(inv20_rid_handles_live_at_no_pasid)
{
	struct device *a = mkpasid("0000:06:00.0", NULL, 20);
	struct iommu_attach_handle h1 = { 0 }, h2 = { 0 };
	struct iommu_domain *dom, *dom2;
	struct iommu_group *group;

	setup_drivers();
	ASSERT_EQ(0, iommu_probe_device(a));
	group = a->iommu_group;
	ASSERT_EQ(0, iommu_device_claim_dma_owner(a, &h1));
	dom = iommu_paging_domain_alloc(a);
	dom2 = iommu_paging_domain_alloc(a);
	ASSERT_TRUE(lookup(a, IOMMU_NO_PASID, 0) == ERR_PTR(-ENOENT));
	ASSERT_EQ(-EINVAL, iommu_attach_group_handle(dom, group, NULL));
	ASSERT_EQ(0, iommu_attach_group_handle(dom, group, &h1));
	ASSERT_TRUE(lookup(a, IOMMU_NO_PASID, 0) == &h1);
	ASSERT_TRUE(h1.domain == dom);
	ASSERT_TRUE(iommu_get_domain_for_dev(a) == dom);
	/* The RID is taken (a second attach is the kernel's EBUSY). */
	ASSERT_EQ(-EBUSY, iommu_attach_group_handle(dom2, group, &h2));
	ASSERT_TRUE(lookup(a, IOMMU_NO_PASID, 0) == &h1);
	/* A failing replace keeps the old handle published and the old domain attached. */
	tdev(a)->fail_next_attach = -EIO;
	ASSERT_EQ(-EIO, iommu_replace_group_handle(group, dom2, &h2));
	ASSERT_TRUE(lookup(a, IOMMU_NO_PASID, 0) == &h1);
	ASSERT_TRUE(iommu_get_domain_for_dev(a) == dom);
	ASSERT_EQ(0, iommu_replace_group_handle(group, dom2, &h2));
	ASSERT_TRUE(lookup(a, IOMMU_NO_PASID, 0) == &h2);
	ASSERT_TRUE(iommu_get_domain_for_dev(a) == dom2);
	/* PASIDs and the RID handle share the table but not their slots. */
	ASSERT_EQ(0, iommu_attach_device_pasid(dom, a, 1, &h1));
	ASSERT_EQ(2, ginfo(a).nr_pasid_entries);
	iommu_detach_device_pasid(dom, a, 1);
	iommu_detach_group_handle(dom2, group);
	ASSERT_TRUE(lookup(a, IOMMU_NO_PASID, 0) == ERR_PTR(-ENOENT));
	ASSERT_TRUE(ginfo(a).domain_is_blocking);
	/* A replace from nothing publishes too, and a failed one from nothing leaves no slot. */
	tdev(a)->fail_next_attach = -EIO;
	ASSERT_EQ(-EIO, iommu_replace_group_handle(group, dom, &h1));
	ASSERT_EQ(0, ginfo(a).nr_pasid_entries);
	ASSERT_EQ(0, iommu_replace_group_handle(group, dom, &h1));
	ASSERT_TRUE(lookup(a, IOMMU_NO_PASID, 0) == &h1);
	iommu_detach_group_handle(dom, group);
	iommu_device_release_dma_owner(a);
	iommu_domain_free(dom);
	iommu_domain_free(dom2);
	unplug(a);
}

/* ---- invariants 13 and 15: PASID entries against ownership and driver binding ---------------- */

TEST(inv13_15_pasid_entries_block_ownership_and_a_second_driver)
{
	struct device *a = mkpasid("0000:07:00.0", "sw", 20);
	struct device *b = mkpasid("0000:07:00.1", "sw", 20);
	struct iommu_domain *dom;
	int cookie;

	setup_drivers();
	ASSERT_EQ(0, iommu_probe_device(a));
	ASSERT_EQ(0, iommu_probe_device(b));
	dom = iommu_paging_domain_alloc(a);
	/* A kernel user's PASID on the default-domain group (no ownership is needed). */
	ASSERT_EQ(0, iommu_attach_device_pasid(dom, a, 11, NULL));
	ASSERT_EQ(-EBUSY, iommu_device_claim_dma_owner(a, &cookie));
	ASSERT_EQ(-EBUSY, iommu_group_claim_dma_owner(a->iommu_group, &cookie));
	/* The first driver binds (owner_cnt was 0); a second one is refused while PASIDs exist. */
	ASSERT_EQ(0, iommu_device_use_default_domain(a));
	ASSERT_EQ(-EBUSY, iommu_device_use_default_domain(b));
	ASSERT_EQ(1, ginfo(a).owner_cnt);
	iommu_detach_device_pasid(dom, a, 11);
	ASSERT_EQ(0, iommu_device_use_default_domain(b));
	iommu_device_unuse_default_domain(b);
	iommu_device_unuse_default_domain(a);
	/* With the PASID gone, ownership can be claimed, and PASIDs work under it too. */
	ASSERT_EQ(0, iommu_device_claim_dma_owner(a, &cookie));
	ASSERT_EQ(0, iommu_attach_device_pasid(dom, b, 11, NULL));
	ASSERT_EQ(-EBUSY, iommu_device_use_default_domain(a));
	iommu_detach_device_pasid(dom, b, 11);
	iommu_device_release_dma_owner(a);
	ASSERT_TRUE(ginfo(a).domain_is_default);
	iommu_domain_free(dom);
	unplug(a);
	unplug(b);
}

/* ---- the global PASID space ------------------------------------------------------------------- */

TEST(global_pasid_allocator)
{
	struct device *a = mkpasid("0000:08:00.0", NULL, 4); /* PASIDs 1..15 */
	struct device *none = mkpasid("0000:08:01.0", NULL, 0);
	uint32_t got[15];

	setup_drivers();
	ASSERT_EQ(0, iommu_probe_device(a));
	ASSERT_EQ(0, iommu_probe_device(none));
	ASSERT_EQ(IOMMU_PASID_INVALID, iommu_alloc_global_pasid(none));
	for (int i = 0; i < 15; i++) {
		got[i] = iommu_alloc_global_pasid(a);
		ASSERT_EQ(i + 1, got[i]);
	}
	ASSERT_EQ(IOMMU_PASID_INVALID, iommu_alloc_global_pasid(a));
	iommu_free_global_pasid(got[6]);
	ASSERT_EQ(7, iommu_alloc_global_pasid(a));
	for (int i = 0; i < 15; i++)
		iommu_free_global_pasid(got[i]);
	ASSERT_EQ(1, iommu_alloc_global_pasid(a));
	iommu_free_global_pasid(1);
	unplug(a);
	unplug(none);
}


/* ---- invariant 21: SVA -------------------------------------------------------------------------- */

static struct iommu_device sva_iommu = { .name = "sva", .max_pasids = 1u << 20 };

static struct device *mksva(const char *bdf, uint32_t bits)
{
	struct device *dev = device_alloc(bdf);

	dev->iommu = &sva_iommu;
	dev->pasid_bits = bits;
	return dev;
}

TEST(inv21_sva_bind_twice_share_domain_keep_pasid)
{
	struct device *a = mksva("0000:0a:00.0", 20), *b = mksva("0000:0a:01.0", 20);
	struct iommu_sva *h, *h2, *hb;
	struct uiommu_mm *mm;
	struct iommu_domain *dom;
	uint32_t pasid;
	int refs;

	mock_iommu_register(&sva_iommu);
	ASSERT_EQ(0, iommu_probe_device(a));
	ASSERT_EQ(0, iommu_probe_device(b));
	mm = uiommu_mm_self();
	refs = atomic_load(&mm->refs);

	h = iommu_sva_bind_device(a, mm);
	ASSERT_FALSE(IS_ERR(h));
	pasid = iommu_sva_get_pasid(h);
	ASSERT_GE(pasid, IOMMU_FIRST_GLOBAL_PASID);
	dom = h->handle.domain;
	ASSERT_EQ(IOMMU_DOMAIN_SVA, dom->type);
	ASSERT_TRUE(dom->mm == mm);
	ASSERT_TRUE(dom->iopf_handler != NULL);
	ASSERT_EQ(refs + 1, atomic_load(&mm->refs)); /* the domain holds the mm */
	ASSERT_TRUE(iommu_attach_handle_get(a->iommu_group, pasid, IOMMU_DOMAIN_SVA) ==
		    &h->handle);
	/* The same (device, mm): the same bond, one more user. */
	h2 = iommu_sva_bind_device(a, mm);
	ASSERT_TRUE(h2 == h);
	ASSERT_EQ(2, h->users);
	/* Another device of the same driver shares the domain. */
	hb = iommu_sva_bind_device(b, mm);
	ASSERT_FALSE(IS_ERR(hb));
	ASSERT_TRUE(hb != h);
	ASSERT_TRUE(hb->handle.domain == dom);
	ASSERT_EQ(2, dom->users);
	ASSERT_EQ(pasid, iommu_sva_get_pasid(hb));

	iommu_sva_unbind_device(h);
	ASSERT_TRUE(iommu_attach_handle_get(a->iommu_group, pasid, 0) == &h->handle);
	iommu_sva_unbind_device(h);
	ASSERT_TRUE(iommu_attach_handle_get(a->iommu_group, pasid, 0) == ERR_PTR(-ENOENT));
	ASSERT_EQ(1, dom->users);
	ASSERT_EQ(refs + 1, atomic_load(&mm->refs));
	iommu_sva_unbind_device(hb);
	/* The last user freed the domain, and with it its hold on the mm. */
	ASSERT_EQ(refs, atomic_load(&mm->refs));
	ASSERT_TRUE(iommu_attach_handle_get(b->iommu_group, pasid, 0) == ERR_PTR(-ENOENT));
	/* The mm keeps its PASID across binds. */
	h = iommu_sva_bind_device(b, mm);
	ASSERT_FALSE(IS_ERR(h));
	ASSERT_EQ(pasid, iommu_sva_get_pasid(h));
	iommu_sva_unbind_device(h);
	uiommu_mm_put(mm);
	unplug(a);
	unplug(b);
}

TEST(inv21_sva_errnos)
{
	struct device *a = mksva("0000:0b:00.0", 20), *small = mksva("0000:0b:01.0", 1);
	struct device *none = mksva("0000:0b:02.0", 0), *unprobed = mksva("0000:0b:03.0", 20);
	struct device *t = mkpasid("0000:0b:04.0", NULL, 20); /* tdrv: no SVA */
	struct iommu_attach_handle other = { 0 };
	struct uiommu_mm *mm, *mm2;
	struct iommu_domain *dom;
	struct iommu_sva *h;
	uint32_t pasid;

	setup_drivers();
	mock_iommu_register(&sva_iommu);
	ASSERT_EQ(0, iommu_probe_device(a));
	ASSERT_EQ(0, iommu_probe_device(small));
	ASSERT_EQ(0, iommu_probe_device(none));
	ASSERT_EQ(0, iommu_probe_device(t));
	mm = uiommu_mm_self();
	ASSERT_TRUE(iommu_sva_bind_device(unprobed, mm) == ERR_PTR(-ENODEV));
	/* A device without PASIDs gives the mm no PASID. */
	ASSERT_TRUE(iommu_sva_bind_device(none, mm) == ERR_PTR(-ENOSPC));
	/* PASIDs 1 and 2 go elsewhere: the mm gets 3, beyond small's range [1, 1]. */
	ASSERT_EQ(1, iommu_alloc_global_pasid(a));
	ASSERT_EQ(2, iommu_alloc_global_pasid(a));
	h = iommu_sva_bind_device(a, mm);
	ASSERT_FALSE(IS_ERR(h));
	pasid = iommu_sva_get_pasid(h);
	ASSERT_EQ(3, pasid);
	ASSERT_TRUE(iommu_sva_bind_device(small, mm) == ERR_PTR(-EOVERFLOW));
	ASSERT_TRUE(iommu_sva_bind_device(none, mm) == ERR_PTR(-EOVERFLOW));
	/* A driver without SVA domains. */
	ASSERT_TRUE(iommu_sva_bind_device(t, mm) == ERR_PTR(-EOPNOTSUPP));
	ASSERT_EQ(0, ginfo(t).nr_pasid_entries);
	/* A non-SVA domain on the mm's PASID: EBUSY. */
	dom = iommu_paging_domain_alloc(t);
	ASSERT_EQ(0, iommu_attach_device_pasid(dom, t, pasid, &other));
	ASSERT_TRUE(iommu_sva_bind_device(t, mm) == ERR_PTR(-EBUSY));
	iommu_detach_device_pasid(dom, t, pasid);
	iommu_domain_free(dom);
	/* Another address space sharing that PASID finds this mm's bond there: EBUSY. */
	mm2 = calloc(1, sizeof(*mm2));
	mm2->ops = mm->ops;
	atomic_init(&mm2->refs, 1);
	mm2->iommu_mm = mm->iommu_mm;
	ASSERT_TRUE(iommu_sva_bind_device(a, mm2) == ERR_PTR(-EBUSY));
	mm2->iommu_mm = NULL;
	free(mm2);
	iommu_sva_unbind_device(h);
	uiommu_mm_put(mm);
	unplug(a);
	unplug(small);
	unplug(none);
	unplug(t);
	device_put(unprobed);
}

/* Each fallible step of a bind (handle, domain, driver, PASID slot) fails once: no leak, no bond. */
TEST(sva_bind_fail_nth_sweep)
{
	struct device *a = mksva("0000:0c:00.0", 20);
	struct uiommu_mm *mm;
	struct iommu_sva *h;
	unsigned long nth;
	long live;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out of release builds");
	mock_iommu_register(&sva_iommu);
	ASSERT_EQ(0, iommu_probe_device(a));
	mm = uiommu_mm_self();
	/* The mm's PASID data is made once and kept: make it before counting. */
	h = iommu_sva_bind_device(a, mm);
	ASSERT_FALSE(IS_ERR(h));
	iommu_sva_unbind_device(h);
	live = uiommu_alloc_live();
	for (nth = 1; nth < 100; nth++) {
		uiommu_fail_nth_arm(nth);
		h = iommu_sva_bind_device(a, mm);
		if (uiommu_fail_nth_disarm()) {
			ASSERT_FALSE(IS_ERR(h));
			break;
		}
		ASSERT_TRUE(IS_ERR(h));
		ASSERT_EQ(live, uiommu_alloc_live());
		ASSERT_EQ(0, ginfo(a).nr_pasid_entries);
	}
	ASSERT_GT(nth, 2);
	iommu_sva_unbind_device(h);
	ASSERT_EQ(live, uiommu_alloc_live());
	uiommu_mm_put(mm);
	unplug(a);
}

/* A page request on an SVA bond goes through the I/O page fault queue to the SVA handler. */
TEST(sva_page_request_end_to_end)
{
	long psz = sysconf(_SC_PAGESIZE);
	struct device *a = mksva("0000:0d:00.0", 20);
	struct iommu_page_response last;
	struct iopf_fault evt = { .fault = { .type = IOMMU_FAULT_PAGE_REQ } };
	unsigned char *rw, *ro;
	struct uiommu_mm *mm;
	struct iommu_sva *h;

	a->pri = true;
	mock_iommu_register(&sva_iommu);
	ASSERT_EQ(0, iommu_probe_device(a));
	mm = uiommu_mm_self();
	h = iommu_sva_bind_device(a, mm);
	ASSERT_FALSE(IS_ERR(h));
	rw = mmap(NULL, psz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ro = mmap(NULL, psz, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(rw != MAP_FAILED && ro != MAP_FAILED);

	evt.fault.prm.flags = IOMMU_FAULT_PAGE_REQUEST_PASID_VALID |
			      IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE;
	evt.fault.prm.pasid = iommu_sva_get_pasid(h);
	evt.fault.prm.grpid = 7;
	evt.fault.prm.perm = IOMMU_FAULT_PERM_READ | IOMMU_FAULT_PERM_WRITE;
	evt.fault.prm.addr = (uintptr_t)rw;
	ASSERT_EQ(0, iommu_report_device_fault(a, &evt));
	ASSERT_EQ(0, iopf_queue_flush_dev(a));
	ASSERT_EQ(1, mock_page_responses(a, &last));
	ASSERT_EQ(IOMMU_PAGE_RESP_SUCCESS, last.code);
	ASSERT_EQ(7, last.grpid);
	/* A partial that fails makes the whole group INVALID (errors are sticky). */
	evt.fault.prm.flags = IOMMU_FAULT_PAGE_REQUEST_PASID_VALID;
	evt.fault.prm.grpid = 8;
	evt.fault.prm.addr = (uintptr_t)ro; /* written: not allowed */
	ASSERT_EQ(0, iommu_report_device_fault(a, &evt));
	evt.fault.prm.flags |= IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE;
	evt.fault.prm.addr = (uintptr_t)rw;
	ASSERT_EQ(0, iommu_report_device_fault(a, &evt));
	ASSERT_EQ(0, iopf_queue_flush_dev(a));
	ASSERT_EQ(2, mock_page_responses(a, &last));
	ASSERT_EQ(IOMMU_PAGE_RESP_INVALID, last.code);
	ASSERT_EQ(8, last.grpid);
	iommu_sva_unbind_device(h);
	munmap(rw, psz);
	munmap(ro, psz);
	uiommu_mm_put(mm);
	unplug(a);
}

TEST(sva_fault_resolution_follows_the_mappings)
{
	long psz = sysconf(_SC_PAGESIZE);
	struct uiommu_mm *mm = uiommu_mm_self();
	struct iommu_fault f = { .type = IOMMU_FAULT_PAGE_REQ };
	unsigned char *rw, *ro, *none, vec;

	rw = mmap(NULL, psz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ro = mmap(NULL, psz, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	none = mmap(NULL, 2 * psz, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(rw != MAP_FAILED && ro != MAP_FAILED && none != MAP_FAILED);
	ASSERT_EQ(0, munmap(none + psz, psz)); /* a hole */
	f.prm.flags = IOMMU_FAULT_PAGE_REQUEST_PASID_VALID | IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE;
	f.prm.pasid = 1;

	/* A write fault brings the page in, writable. */
	ASSERT_EQ(0, mincore(rw, psz, &vec));
	ASSERT_EQ(0, vec & 1);
	f.prm.addr = (uintptr_t)rw + 8;
	f.prm.perm = IOMMU_FAULT_PERM_READ | IOMMU_FAULT_PERM_WRITE;
	ASSERT_EQ(IOMMU_PAGE_RESP_SUCCESS, iommu_sva_resolve_fault(mm, &f));
	ASSERT_EQ(0, mincore(rw, psz, &vec));
	ASSERT_EQ(1, vec & 1);
	/* Read-only: reads resolve, writes and execution do not. */
	f.prm.addr = (uintptr_t)ro;
	f.prm.perm = IOMMU_FAULT_PERM_READ;
	ASSERT_EQ(IOMMU_PAGE_RESP_SUCCESS, iommu_sva_resolve_fault(mm, &f));
	f.prm.perm = IOMMU_FAULT_PERM_WRITE;
	ASSERT_EQ(IOMMU_PAGE_RESP_INVALID, iommu_sva_resolve_fault(mm, &f));
	f.prm.perm = IOMMU_FAULT_PERM_READ | IOMMU_FAULT_PERM_EXEC;
	ASSERT_EQ(IOMMU_PAGE_RESP_INVALID, iommu_sva_resolve_fault(mm, &f));
	/* No access at all, and nothing mapped. */
	f.prm.addr = (uintptr_t)none;
	f.prm.perm = IOMMU_FAULT_PERM_READ;
	ASSERT_EQ(IOMMU_PAGE_RESP_INVALID, iommu_sva_resolve_fault(mm, &f));
	f.prm.addr = (uintptr_t)none + psz;
	ASSERT_EQ(IOMMU_PAGE_RESP_INVALID, iommu_sva_resolve_fault(mm, &f));
	/* A request without a PASID is no SVA fault. */
	f.prm.addr = (uintptr_t)rw;
	f.prm.flags = IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE;
	ASSERT_EQ(IOMMU_PAGE_RESP_INVALID, iommu_sva_resolve_fault(mm, &f));
	munmap(rw, psz);
	munmap(ro, psz);
	munmap(none, psz);
	uiommu_mm_put(mm);
}

/* ---- stress: attach/replace/detach racing lock-free lookups (run it under TSan) --------------- */

#define STRESS_PASIDS 4
#define STRESS_HANDLES 200000

static struct {
	struct device *dev;
	struct iommu_domain *dom[2];
	struct iommu_attach_handle *handles; /* each used once, never reused, freed at the end */
	atomic_int next_handle;
	atomic_long lookups, hits, bad;
} st;

static struct iommu_attach_handle *stress_new_handle(void)
{
	int i = atomic_fetch_add(&st.next_handle, 1);

	return i < STRESS_HANDLES ? &st.handles[i] : NULL;
}

/*
 * Each writer cycles attach/replace/detach on its own PASID until the shared handle pool runs
 * dry; from then on it keeps one attachment (its reserved last handle) until told to stop. So
 * the readers always have published handles to find, however fast the writers were: a fast
 * machine cannot make the test vacuous.
 */
static void *stress_writer(void *arg)
{
	uint32_t pasid = (uint32_t)(uintptr_t)arg; /* each writer owns one PASID */
	struct iommu_attach_handle *last = &st.handles[STRESS_HANDLES + pasid - 1];
	unsigned int n = 0;

	while (stress_running()) {
		struct iommu_attach_handle *h = stress_new_handle();
		struct iommu_domain *d = st.dom[n++ & 1];

		if (iommu_attach_device_pasid(d, st.dev, pasid, h ? h : last)) {
			atomic_fetch_add(&st.bad, 1);
			return NULL;
		}
		if (!h)
			goto hold;
		for (int r = 0; r < 3; r++) {
			struct iommu_attach_handle *h2 = stress_new_handle();

			if (!h2)
				goto hold;
			d = st.dom[n++ & 1];
			if (iommu_replace_device_pasid(d, st.dev, pasid, h2))
				atomic_fetch_add(&st.bad, 1);
		}
		iommu_detach_device_pasid(iommu_get_domain_for_dev_pasid(st.dev, pasid, 0), st.dev,
					  pasid);
	}
	return NULL;

hold:
	while (stress_running())
		sched_yield();
	iommu_detach_device_pasid(iommu_get_domain_for_dev_pasid(st.dev, pasid, 0), st.dev, pasid);
	return NULL;
}

static void *stress_reader(void *arg)
{
	(void)arg;
	while (stress_running()) {
		for (uint32_t pasid = 1; pasid <= STRESS_PASIDS; pasid++) {
			struct iommu_attach_handle *h =
				iommu_attach_handle_get(st.dev->iommu_group, pasid, 0);

			atomic_fetch_add(&st.lookups, 1);
			if (IS_ERR(h)) {
				if (PTR_ERR(h) != -ENOENT)
					atomic_fetch_add(&st.bad, 1);
				continue;
			}
			/* A published handle always carries one of the two domains. */
			if (h->domain != st.dom[0] && h->domain != st.dom[1])
				atomic_fetch_add(&st.bad, 1);
			atomic_fetch_add(&st.hits, 1);
		}
	}
	return NULL;
}

TEST(stress_attach_replace_detach_racing_handle_lookups)
{
	struct stress_worker w[STRESS_PASIDS + 2];

	setup_drivers();
	st.dev = mkpasid("0000:09:00.0", NULL, 20);
	ASSERT_EQ(0, iommu_probe_device(st.dev));
	st.dom[0] = iommu_paging_domain_alloc(st.dev);
	st.dom[1] = iommu_paging_domain_alloc(st.dev);
	/* The pool, then one reserved last handle per writer. */
	st.handles = calloc(STRESS_HANDLES + STRESS_PASIDS, sizeof(*st.handles));
	ASSERT_TRUE(st.handles != NULL);
	for (uintptr_t i = 0; i < STRESS_PASIDS; i++)
		w[i] = (struct stress_worker){ stress_writer, (void *)(i + 1) };
	w[STRESS_PASIDS] = w[STRESS_PASIDS + 1] = (struct stress_worker){ stress_reader, NULL };
	ASSERT_EQ(0, stress_run(w, STRESS_PASIDS + 2, stress_seconds(2.0)));
	ASSERT_EQ(0, st.bad);
	ASSERT_GT(st.lookups, 0);
	ASSERT_GT(st.hits, 0);
	ASSERT_EQ(0, ginfo(st.dev).nr_pasid_entries);
	fprintf(stderr, "  %ld lookups (%ld hits), %d handles\n", (long)st.lookups,
		(long)st.hits, atomic_load(&st.next_handle));
	iommu_domain_free(st.dom[0]);
	iommu_domain_free(st.dom[1]);
	unplug(st.dev);
	free(st.handles);
}

TEST_HARNESS_MAIN
