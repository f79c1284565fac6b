// SPDX-License-Identifier: MIT
/*
 * The IOMMU core against its invariants (../shared/spec/iommu-core.md, "Invariants", 1 to 17),
 * the sysfs type-switch rules string by string, and the DMA ownership rules.
 *
 * The tests drive the core through a small driver of their own (tests/tdrv.h) whose callbacks
 * check what the core promises them; a "bare" flavour without static identity and blocked
 * domains provides the foreign domains and the paging-domain fallbacks.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "iommu/iommu.h"
#include "lib/compiler.h"
#include "lib/err.h"

#include "tdrv.h"

/* ---- invariants 1 to 5: groups, probe, release ----------------------------------------------- */

TEST(inv01_one_group_per_device_and_group_lifetime)
{
	struct device *a, *b, *c;
	struct iommu_group *g;
	int id;

	setup_drivers();
	a = mkdev("0000:00:01.0", &iommu_lazy, "sw");
	b = mkdev("0000:00:01.1", &iommu_lazy, "sw");
	c = mkdev("0000:00:02.0", &iommu_lazy, NULL);
	ASSERT_EQ(0, iommu_probe_device(a));
	ASSERT_EQ(0, iommu_probe_device(b));
	ASSERT_EQ(0, iommu_probe_device(c));
	/* Probing twice changes nothing. */
	ASSERT_EQ(0, iommu_probe_device(a));
	ASSERT_EQ(3, tdrv.probes);
	ASSERT_TRUE(a->iommu_group == b->iommu_group);
	ASSERT_TRUE(a->iommu_group != c->iommu_group);
	ASSERT_EQ(2, iommu_group_device_count(a->iommu_group));
	id = iommu_group_id(a->iommu_group);

	/* Each member holds a reference: the group outlives a lookup's put and the first member. */
	g = iommu_group_get_by_id(id);
	ASSERT_TRUE(g == a->iommu_group);
	iommu_group_put(g);
	unplug(a);
	g = iommu_group_get_by_id(id);
	ASSERT_TRUE(g != NULL);
	ASSERT_EQ(1, iommu_group_device_count(g));
	iommu_group_put(g);
	/* The last member's release frees the group (and its domains first: put would WARN). */
	unplug(b);
	ASSERT_TRUE(iommu_group_get_by_id(id) == NULL);
	unplug(c);
	ASSERT_EQ(3, tdrv.releases);
	ASSERT_EQ(tdrv.domain_allocs, tdrv.domain_frees);
}

TEST(inv02_03_callbacks_run_under_the_group_mutex_and_release_runs_once)
{
	/* tdrv_attach and tdrv_release assert the mutex and abort on a released device. */
	struct device *a, *b;

	setup_drivers();
	a = mkdev("0000:00:01.0", &iommu_lazy, "k");
	b = mkdev("0000:00:01.1", &iommu_lazy, "k");
	ASSERT_EQ(0, iommu_probe_device(a));
	ASSERT_EQ(0, iommu_probe_device(b));
	ASSERT_EQ(store(a, "identity"), (ssize_t)strlen("identity"));
	unplug(a);
	/* The group lives on with b: switching it must not touch the released a. */
	ASSERT_EQ(store(b, "DMA"), 3);
	ASSERT_EQ(1, tdrv.releases);
	ASSERT_EQ(0, iommu_probe_device(mkdev("0000:00:01.0", &iommu_lazy, "k")));
	unplug(b);
	ASSERT_EQ(2, tdrv.releases);
}

TEST(inv04_last_device_frees_default_and_blocking_domains)
{
	struct device *a = mkdev("0000:00:05.0", &iommu_bare, NULL);
	struct iommu_group_info info;
	int owner;

	setup_drivers();
	ASSERT_EQ(0, iommu_probe_device(a));
	/* The bare driver blocks with an empty paging domain: two allocations now. */
	ASSERT_EQ(0, iommu_device_claim_dma_owner(a, &owner));
	info = ginfo(a);
	ASSERT_TRUE(info.has_blocking_domain && info.domain_is_blocking);
	ASSERT_EQ(2, tdrv.domain_allocs);
	iommu_device_release_dma_owner(a);
	info = ginfo(a);
	ASSERT_TRUE(info.domain_is_default);
	ASSERT_EQ(0, info.owner_cnt);
	unplug(a);
	ASSERT_EQ(2, tdrv.domain_frees);
}

TEST(inv05_group_switch_is_all_or_nothing)
{
	struct device *d[3];
	struct iommu_domain *dom, *def;
	struct iommu_group_info before, after;
	int i, owner;

	setup_drivers();
	for (i = 0; i < 3; i++) {
		char bdf[16];

		snprintf(bdf, sizeof(bdf), "0000:00:0%d.0", i + 1);
		d[i] = mkdev(bdf, &iommu_lazy, "three");
		ASSERT_EQ(0, iommu_probe_device(d[i]));
		ASSERT_TRUE(d[i]->iommu_group != NULL);
	}
	def = iommu_get_domain_for_dev(d[0]);
	ASSERT_TRUE(def != NULL);
	ASSERT_EQ(0, iommu_device_claim_dma_owner(d[0], &owner));
	before = ginfo(d[0]);
	dom = iommu_paging_domain_alloc(d[0]);
	ASSERT_FALSE(IS_ERR(dom));
	/* The second member refuses: the first goes back, the group stays where it was. */
	tdev(d[1])->fail_next_attach = -ENOSPC;
	ASSERT_EQ(-ENOSPC, iommu_attach_group(dom, d[0]->iommu_group));
	after = ginfo(d[0]);
	ASSERT_EQ(before.domain_id, after.domain_id);
	for (i = 0; i < 3; i++)
		ASSERT_TRUE(tdev(d[i])->cur == iommu_get_domain_for_dev(d[0]));
	/* Without the failure every member moves. */
	ASSERT_EQ(0, iommu_attach_group(dom, d[0]->iommu_group));
	for (i = 0; i < 3; i++)
		ASSERT_TRUE(tdev(d[i])->cur == dom);
	iommu_detach_group(dom, d[0]->iommu_group);
	ASSERT_TRUE(ginfo(d[0]).domain_is_blocking);
	iommu_domain_free(dom);
	iommu_device_release_dma_owner(d[0]);
	ASSERT_TRUE(iommu_get_domain_for_dev(d[1]) == def);
	for (i = 0; i < 3; i++) {
		ASSERT_TRUE(iommu_get_domain_for_dev(d[i]) != NULL);
		unplug(d[i]);
	}
}

/* ---- invariants 6 and 7: default type resolution and the global policy ----------------------- */

TEST(inv06_untrusted_forces_dma_and_refuses_identity_drivers)
{
	struct device *u = mkdev("0000:00:06.0", &iommu_lazy, "ext");
	struct device *v = mkdev("0000:00:06.1", &iommu_lazy, NULL);
	struct device *w = mkdev("0000:00:06.2", &iommu_lazy, "ext");

	setup_drivers();
	u->untrusted = true;
	ASSERT_EQ(0, iommu_probe_device(u));
	/* Strict DMA, even though the global default is lazy. */
	ASSERT_EQ(IOMMU_DOMAIN_DMA, ginfo(u).default_type);
	ASSERT_EQ(-EINVAL, store(u, "identity"));
	ASSERT_EQ(4, store(u, "auto"));
	/* An untrusted device whose driver insists on identity is refused at probe. */
	v->untrusted = true;
	v->driver_pref = IOMMU_DOMAIN_IDENTITY;
	ASSERT_EQ(-EINVAL, iommu_probe_device(v));
	ASSERT_TRUE(v->iommu_group == NULL);
	/* A trusted identity-preferring device joining the untrusted group cannot be probed. */
	w->driver_pref = IOMMU_DOMAIN_IDENTITY;
	ASSERT_EQ(0, iommu_probe_device(w)); /* live group: attaches to the current domain */
	ASSERT_EQ(IOMMU_DOMAIN_DMA, ginfo(u).default_type);
	unplug(w);
	unplug(u);
	device_put(v);
}

TEST(inv06_conflicting_preferences_resolve_to_identity)
{
	struct device *a = mkdev("0000:00:07.0", &iommu_lazy, "mix");
	struct device *b = mkdev("0000:00:07.1", &iommu_lazy, "mix");

	setup_drivers();
	a->driver_pref = IOMMU_DOMAIN_DMA;
	b->driver_pref = IOMMU_DOMAIN_IDENTITY;
	ASSERT_EQ(0, iommu_probe_device(a));
	ASSERT_EQ(IOMMU_DOMAIN_DMA, ginfo(a).default_type);
	ASSERT_EQ(0, iommu_probe_device(b));
	/* Recomputing ("auto") sees both: identity wins. */
	ASSERT_EQ(4, store(a, "auto"));
	ASSERT_EQ(IOMMU_DOMAIN_IDENTITY, ginfo(a).default_type);
	/* A requested type that conflicts with a driver requirement: EINVAL, nothing changes. */
	ASSERT_EQ(-EINVAL, store(a, "DMA"));
	ASSERT_EQ(IOMMU_DOMAIN_IDENTITY, ginfo(a).default_type);
	unplug(a);
	unplug(b);
}

TEST(inv06_no_preference_uses_global_default_and_falls_back_to_dma)
{
	struct device *a = mkdev("0000:00:08.0", &iommu_bare, NULL);
	struct device *b = mkdev("0000:00:08.1", &iommu_lazy, NULL);

	setup_drivers();
	/* Passthrough by default, but the bare driver has no identity domain: DMA instead. */
	iommu_set_default_policy(true, false);
	ASSERT_EQ(IOMMU_DOMAIN_IDENTITY, iommu_default_domain_type());
	ASSERT_EQ(0, iommu_probe_device(a));
	ASSERT_EQ(IOMMU_DOMAIN_DMA, ginfo(a).default_type);
	ASSERT_EQ(0, iommu_probe_device(b));
	ASSERT_EQ(IOMMU_DOMAIN_IDENTITY, ginfo(b).default_type);
	ASSERT_STREQ("identity\n", show(b));
	unplug(a);
	unplug(b);
	iommu_set_default_policy(false, false);
}

TEST(inv07_global_default_is_dma_fq_exactly_when_translated_and_lazy)
{
	struct device *a = mkdev("0000:00:09.0", &iommu_strict, NULL);
	struct device *b = mkdev("0000:00:09.1", &iommu_lazy, NULL);

	setup_drivers();
	iommu_set_default_policy(false, false);
	ASSERT_EQ(IOMMU_DOMAIN_DMA_FQ, iommu_default_domain_type());
	iommu_set_default_policy(false, true);
	ASSERT_EQ(IOMMU_DOMAIN_DMA, iommu_default_domain_type());
	iommu_set_default_policy(true, false);
	ASSERT_EQ(IOMMU_DOMAIN_IDENTITY, iommu_default_domain_type());
	/* A driver forcing strict mode turns lazy into strict, and leaves passthrough alone. */
	iommu_set_dma_strict();
	ASSERT_EQ(IOMMU_DOMAIN_IDENTITY, iommu_default_domain_type());
	iommu_set_default_policy(false, false);
	iommu_set_dma_strict();
	ASSERT_EQ(IOMMU_DOMAIN_DMA, iommu_default_domain_type());

	/* An IOMMU without deferred flush downgrades a lazy domain to strict. */
	iommu_set_default_policy(false, false);
	ASSERT_EQ(0, iommu_probe_device(a));
	ASSERT_EQ(IOMMU_DOMAIN_DMA, ginfo(a).default_type);
	ASSERT_EQ(0, iommu_probe_device(b));
	ASSERT_EQ(IOMMU_DOMAIN_DMA_FQ, ginfo(b).default_type);
	ASSERT_STREQ("DMA-FQ\n", show(b));
	unplug(a);
	unplug(b);
}

/* ---- invariants 8 to 11: the sysfs type switch --------------------------------------------------- */

TEST(inv08_type_store_strings_and_privilege)
{
	static const struct {
		const char *in;
		ssize_t want; /* 0: accepted (count) */
	} cases[] = {
		{ "identity", 0 }, { "identity\n", 0 }, { "DMA", 0 },   { "DMA\n", 0 },
		{ "DMA-FQ", 0 },   { "DMA-FQ\n", 0 },   { "auto", 0 },  { "auto\n", 0 },
		{ "dma", -EINVAL }, { "Identity", -EINVAL }, { "DMA-FQ\n\n", -EINVAL },
		{ " DMA", -EINVAL }, { "DMA ", -EINVAL }, { "", -EINVAL }, { "\n", -EINVAL },
		{ "passthrough", -EINVAL }, { "unmanaged", -EINVAL }, { "blocked", -EINVAL },
		{ "DMA-F", -EINVAL }, { "DMA_FQ", -EINVAL },
	};
	struct device *a = mkdev("0000:00:0a.0", &iommu_lazy, NULL);
	struct iommu_group *empty;
	unsigned int i;

	setup_drivers();
	ASSERT_EQ(0, iommu_probe_device(a));
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		ssize_t got = iommu_group_type_store(a->iommu_group, cases[i].in,
						     strlen(cases[i].in), true);

		if (cases[i].want)
			EXPECT_EQ(cases[i].want, got);
		else
			EXPECT_EQ((ssize_t)strlen(cases[i].in), got);
	}
	/* Without CAP_SYS_ADMIN and CAP_SYS_RAWIO: EACCES, before anything else. */
	ASSERT_EQ(-EACCES, iommu_group_type_store(a->iommu_group, "DMA", 3, false));
	ASSERT_EQ(-EACCES, iommu_group_type_store(a->iommu_group, "junk", 4, false));
	/* A group with no default domain: EINVAL. */
	empty = iommu_group_alloc();
	ASSERT_EQ(-EINVAL, iommu_group_type_store(empty, "DMA", 3, true));
	{
		char buf[16];

		iommu_group_type_show(empty, buf, sizeof(buf));
		ASSERT_STREQ("unknown\n", buf);
	}
	iommu_group_put(empty);
	unplug(a);
}

TEST(inv09_dma_to_dma_fq_is_live_with_a_driver_bound)
{
	struct device *a = mkdev("0000:00:0b.0", &iommu_lazy, NULL);
	struct iommu_group_info before, after;

	setup_drivers();
	iommu_set_default_policy(false, true);
	ASSERT_EQ(0, iommu_probe_device(a));
	ASSERT_STREQ("DMA\n", show(a));
	ASSERT_EQ(0, iommu_device_use_default_domain(a));
	before = ginfo(a);
	ASSERT_EQ(6, store(a, "DMA-FQ"));
	after = ginfo(a);
	/* The same domain object, now lazy; the driver stayed bound. */
	ASSERT_EQ(before.default_domain_id, after.default_domain_id);
	ASSERT_EQ(IOMMU_DOMAIN_DMA_FQ, after.default_type);
	ASSERT_EQ(1, after.owner_cnt);
	/* The reverse is not live: with the driver bound it is refused. */
	ASSERT_EQ(-EPERM, store(a, "DMA"));
	iommu_device_unuse_default_domain(a);
	ASSERT_EQ(3, store(a, "DMA"));
	ASSERT_NE(before.default_domain_id, ginfo(a).default_domain_id);
	unplug(a);
	iommu_set_default_policy(false, false);
}

TEST(inv10_other_changes_need_no_driver_and_no_owner)
{
	struct device *a = mkdev("0000:00:0c.0", &iommu_lazy, "pair");
	struct device *b = mkdev("0000:00:0c.1", &iommu_lazy, "pair");
	struct iommu_group_info before;
	int owner;

	setup_drivers();
	ASSERT_EQ(0, iommu_probe_device(a));
	ASSERT_EQ(0, iommu_probe_device(b));
	/* One member with a bound driver blocks the whole group. */
	ASSERT_EQ(0, iommu_device_use_default_domain(b));
	ASSERT_EQ(-EPERM, store(a, "identity"));
	ASSERT_EQ(-EPERM, store(a, "auto"));
	iommu_device_unuse_default_domain(b);
	/* So does an owner. */
	ASSERT_EQ(0, iommu_device_claim_dma_owner(a, &owner));
	ASSERT_EQ(-EPERM, store(a, "identity"));
	iommu_device_release_dma_owner(a);
	/* Free: the default domain object is replaced and every member follows. */
	before = ginfo(a);
	ASSERT_EQ(8, store(a, "identity"));
	ASSERT_NE(before.default_domain_id, ginfo(a).default_domain_id);
	ASSERT_TRUE(tdev(a)->cur == &tdrv_identity && tdev(b)->cur == &tdrv_identity);
	/* Writing the current type is a successful no-op: same domain. */
	before = ginfo(a);
	ASSERT_EQ(8, store(a, "identity"));
	ASSERT_EQ(before.default_domain_id, ginfo(a).default_domain_id);
	ASSERT_EQ(6, store(a, "DMA-FQ"));
	ASSERT_STREQ("DMA-FQ\n", show(b));
	unplug(a);
	unplug(b);
	ASSERT_EQ(tdrv.domain_allocs, tdrv.domain_frees);
}

TEST(inv10_group_without_devices_is_eperm)
{
	struct device *a = mkdev("0000:00:0d.0", &iommu_lazy, NULL);
	struct iommu_group *g;

	setup_drivers();
	ASSERT_EQ(0, iommu_probe_device(a));
	g = iommu_group_get(a);
	/* The device goes; a holder of the group still writes to it. */
	unplug(a);
	/* With no member the default domain is gone too: EINVAL comes first. */
	ASSERT_EQ(-EINVAL, iommu_group_type_store(g, "DMA", 3, true));
	iommu_group_put(g);
}

/* ---- invariants 12 to 15: ownership and driver binding ------------------------------------------ */

TEST(inv12_13_ownership_claims)
{
	struct device *a = mkdev("0000:00:0e.0", &iommu_lazy, "own");
	struct device *b = mkdev("0000:00:0e.1", &iommu_lazy, "own");
	int owner1, owner2;

	setup_drivers();
	ASSERT_EQ(0, iommu_probe_device(a));
	ASSERT_EQ(0, iommu_probe_device(b));
	ASSERT_FALSE(iommu_group_dma_owner_claimed(a->iommu_group));
	/* Drivers bound: owner_cnt counts them; no claim of any kind succeeds. */
	ASSERT_EQ(0, iommu_device_use_default_domain(a));
	ASSERT_EQ(1, ginfo(a).owner_cnt);
	ASSERT_FALSE(ginfo(a).owned);
	ASSERT_EQ(-EPERM, iommu_device_claim_dma_owner(b, &owner1));
	ASSERT_EQ(-EPERM, iommu_group_claim_dma_owner(a->iommu_group, &owner1));
	iommu_device_unuse_default_domain(a);

	{
		struct device *lone = mkdev("0000:00:0e.7", &iommu_lazy, NULL);

		ASSERT_EQ(-ENODEV, iommu_device_claim_dma_owner(lone, &owner1));
		device_put(lone);
	}
	/* Device claims with one cookie add up; another cookie is EPERM. */
	ASSERT_EQ(0, iommu_device_claim_dma_owner(a, &owner1));
	ASSERT_EQ(0, iommu_device_claim_dma_owner(b, &owner1));
	ASSERT_EQ(2, ginfo(a).owner_cnt);
	ASSERT_TRUE(ginfo(a).owned);
	ASSERT_EQ(-EPERM, iommu_device_claim_dma_owner(b, &owner2));
	ASSERT_EQ(-EPERM, iommu_group_claim_dma_owner(a->iommu_group, &owner1));
	/* While owned, drivers cannot bind. */
	ASSERT_EQ(-EBUSY, iommu_device_use_default_domain(a));
	iommu_device_release_dma_owner(b);
	ASSERT_EQ(1, ginfo(a).owner_cnt);
	ASSERT_TRUE(ginfo(a).domain_is_blocking);
	iommu_device_release_dma_owner(a);
	ASSERT_EQ(0, ginfo(a).owner_cnt);
	ASSERT_TRUE(ginfo(a).domain_is_default);
	/* The group claim. */
	ASSERT_EQ(0, iommu_group_claim_dma_owner(a->iommu_group, &owner2));
	ASSERT_TRUE(ginfo(b).domain_is_blocking);
	iommu_group_release_dma_owner(a->iommu_group);
	unplug(a);
	unplug(b);
}

TEST(inv13_first_claim_is_ebusy_on_a_foreign_domain)
{
	struct device *a = mkdev("0000:00:0f.0", &iommu_lazy, NULL);
	struct iommu_domain *dom;
	int owner;

	setup_drivers();
	ASSERT_EQ(0, iommu_probe_device(a));
	dom = iommu_paging_domain_alloc(a);
	/* The core does not check ownership for attach; the next claim sees the domain. */
	ASSERT_EQ(0, iommu_attach_device(dom, a));
	ASSERT_EQ(-EBUSY, iommu_device_claim_dma_owner(a, &owner));
	/* A driver binding checks the domain only when it is not the first user. */
	ASSERT_EQ(0, iommu_device_use_default_domain(a));
	ASSERT_EQ(-EBUSY, iommu_device_use_default_domain(a));
	iommu_device_unuse_default_domain(a);
	iommu_detach_device(dom, a);
	iommu_domain_free(dom);
	ASSERT_EQ(0, iommu_device_claim_dma_owner(a, &owner));
	iommu_device_release_dma_owner(a);
	unplug(a);
}

TEST(inv14_owned_groups_sit_on_the_blocking_domain)
{
	struct device *a = mkdev("0000:00:10.0", &iommu_lazy, NULL);
	struct iommu_domain *dom;
	int owner;

	setup_drivers();
	ASSERT_EQ(0, iommu_probe_device(a));
	ASSERT_EQ(0, iommu_device_claim_dma_owner(a, &owner));
	ASSERT_TRUE(ginfo(a).domain_is_blocking);
	ASSERT_TRUE(tdev(a)->cur == &tdrv_blocked);
	dom = iommu_paging_domain_alloc(a);
	ASSERT_EQ(0, iommu_attach_group(dom, a->iommu_group));
	ASSERT_TRUE(tdev(a)->cur == dom);
	/* Replace goes straight from one user domain to another. */
	{
		struct iommu_domain *dom2 = iommu_paging_domain_alloc(a);

		ASSERT_EQ(0, iommu_group_replace_domain(a->iommu_group, dom2));
		ASSERT_TRUE(tdev(a)->cur == dom2);
		ASSERT_EQ(0, iommu_group_replace_domain(a->iommu_group, dom));
		iommu_domain_free(dom2);
	}
	iommu_detach_group(dom, a->iommu_group);
	ASSERT_TRUE(ginfo(a).domain_is_blocking);
	iommu_domain_free(dom);
	iommu_device_release_dma_owner(a);
	ASSERT_TRUE(ginfo(a).domain_is_default);
	unplug(a);
}

TEST(inv15_driver_bind_rules)
{
	struct device *a = mkdev("0000:00:11.0", &iommu_lazy, NULL);
	struct device *bare = mkdev("0000:00:11.1", &iommu_lazy, NULL);
	struct iommu_group *g;

	setup_drivers();
	/* No group at all: nothing to do. */
	ASSERT_EQ(0, iommu_device_use_default_domain(bare));
	/* A group that has no default domain yet: try later. */
	g = iommu_group_alloc();
	bare->iommu_group = g;
	ASSERT_EQ(-EPROBE_DEFER, iommu_device_use_default_domain(bare));
	bare->iommu_group = NULL;
	iommu_group_put(g);
	device_put(bare);

	ASSERT_EQ(0, iommu_probe_device(a));
	ASSERT_EQ(0, iommu_device_use_default_domain(a));
	ASSERT_EQ(0, iommu_device_use_default_domain(a));
	ASSERT_EQ(2, ginfo(a).owner_cnt);
	iommu_device_unuse_default_domain(a);
	iommu_device_unuse_default_domain(a);
	ASSERT_EQ(0, ginfo(a).owner_cnt);
	unplug(a);
}

/* ---- invariants 16 and 17: direct regions, attach rules ---------------------------------------- */

TEST(inv16_direct_regions_are_mapped_and_never_blocked)
{
	struct device *a = mkdev("0000:00:12.0", &iommu_lazy, NULL);
	struct iommu_domain *def;
	char buf[128];
	int owner;

	setup_drivers();
	iommu_set_default_policy(false, true);
	a->resv[0] = (struct iommu_resv_region){ .start = 0xe0000, .length = 0x2000,
						 .prot = IOMMU_READ | IOMMU_WRITE,
						 .type = IOMMU_RESV_DIRECT };
	a->nr_resv = 1;
	ASSERT_EQ(0, iommu_probe_device(a));
	def = iommu_get_domain_for_dev(a);
	/* 1:1 in the default domain before anything else ran. */
	ASSERT_EQ(0xe0000, iommu_iova_to_phys(def, 0xe0000));
	ASSERT_EQ(0xe1000, iommu_iova_to_phys(def, 0xe1000));
	/* It cannot be owned (blocked), nor put on the blocked domain. */
	ASSERT_EQ(-EINVAL, iommu_device_claim_dma_owner(a, &owner));
	ASSERT_EQ(0, ginfo(a).owner_cnt);
	ASSERT_TRUE(ginfo(a).domain_is_default);
	ASSERT_EQ(-EINVAL, iommu_attach_device(&tdrv_blocked, a));
	ASSERT_TRUE(ginfo(a).domain_is_default);
	/* A new default domain gets the mappings too. */
	ASSERT_EQ(6, store(a, "DMA-FQ"));
	ASSERT_EQ(3, store(a, "DMA"));
	ASSERT_EQ(0xe1000, iommu_iova_to_phys(iommu_get_domain_for_dev(a), 0xe1000));
	iommu_group_reserved_regions_show(a->iommu_group, buf, sizeof(buf));
	ASSERT_STREQ("0x00000000000e0000 0x00000000000e1fff direct\n", buf);
	unplug(a);
	iommu_set_default_policy(false, false);
}

TEST(inv17_attach_rules)
{
	struct device *a = mkdev("0000:00:13.0", &iommu_lazy, "two");
	struct device *b = mkdev("0000:00:13.1", &iommu_lazy, "two");
	struct device *c = mkdev("0000:00:13.2", &iommu_bare, NULL);
	struct iommu_domain *dom1, *dom2, *foreign;
	int owner;

	setup_drivers();
	ASSERT_EQ(0, iommu_probe_device(a));
	ASSERT_EQ(0, iommu_probe_device(b));
	ASSERT_EQ(0, iommu_probe_device(c));
	dom1 = iommu_paging_domain_alloc(a);
	dom2 = iommu_paging_domain_alloc(a);
	foreign = iommu_paging_domain_alloc(c);
	/* A device-level attach on a group of two: EINVAL. */
	ASSERT_EQ(-EINVAL, iommu_attach_device(dom1, a));
	ASSERT_EQ(0, iommu_device_claim_dma_owner(a, &owner));
	/* A domain of another driver: EINVAL. */
	ASSERT_EQ(-EINVAL, iommu_attach_group(foreign, a->iommu_group));
	ASSERT_EQ(0, iommu_attach_group(dom1, a->iommu_group));
	/* Someone else's domain is attached: EBUSY, and nothing moves. */
	ASSERT_EQ(-EBUSY, iommu_attach_group(dom2, a->iommu_group));
	ASSERT_TRUE(tdev(a)->cur == dom1 && tdev(b)->cur == dom1);
	iommu_detach_group(dom1, a->iommu_group);
	ASSERT_EQ(0, iommu_attach_group(dom2, a->iommu_group));
	iommu_detach_group(dom2, a->iommu_group);
	iommu_device_release_dma_owner(a);
	iommu_domain_free(dom1);
	iommu_domain_free(dom2);
	iommu_domain_free(foreign);
	unplug(a);
	unplug(b);
	unplug(c);
	ASSERT_EQ(tdrv.domain_allocs, tdrv.domain_frees);
}

TEST(hot_unplug_and_replug)
{
	struct device *a = mkdev("0000:00:14.0", &iommu_lazy, "hp");
	struct device *b = mkdev("0000:00:14.1", &iommu_lazy, "hp");
	int i, id;

	setup_drivers();
	ASSERT_EQ(0, iommu_probe_device(a));
	ASSERT_EQ(0, iommu_probe_device(b));
	id = iommu_group_id(a->iommu_group);
	for (i = 0; i < 20; i++) {
		device_get(b);
		iommu_release_device(b);
		ASSERT_TRUE(b->iommu_group == NULL);
		ASSERT_EQ(1, iommu_group_device_count(a->iommu_group));
		ASSERT_EQ(0, iommu_probe_device(b));
		/* Back in the same group, on its current domain. */
		ASSERT_TRUE(b->iommu_group == a->iommu_group);
		ASSERT_TRUE(tdev(b)->cur == iommu_get_domain_for_dev(a));
		device_put(b);
	}
	ASSERT_EQ(id, iommu_group_id(b->iommu_group));
	unplug(a);
	unplug(b);
	ASSERT_EQ(tdrv.probes, tdrv.releases);
}

TEST_HARNESS_MAIN
