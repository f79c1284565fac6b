// SPDX-License-Identifier: MIT
/*
 * I/O page faults in the core (src/iommu/io-pgfault.c) against invariants 22 to 25 of
 * ../shared/spec/iommu-core.md: the fault data's reference count, one answer per group,
 * grpid merging, INVALID without a handler, FAILURE when a group cannot be made or is refused,
 * and what removal answers and unpublishes.
 *
 * The driver is tdrv (tests/tdrv.h) with a page_response that records every answer; its
 * devices join a queue of the test's own. The last tests check the mock driver's PRI plumbing
 * and that a group of two requests reaches an iommufd fault fd whole.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/mock/mock.h"
#include "harness.h"
#include "iommu/iommu.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "lib/rcu.h"
#include "uiommu/uiommu.h"

/*
 * Live allocations are counted only where fault injection is compiled in (not release), and
 * after the deferred (RCU) frees have run.
 */
#define ASSERT_LIVE(n)                                                                          \
	do {                                                                                    \
		rcu_barrier_bp();                                                               \
		if (uiommu_fail_nth_available())                                                \
			ASSERT_EQ((n), uiommu_alloc_live());                                    \
	} while (0)

#include "tdrv.h"

#include "iommufd/iommufd_private.h"
#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"

/* ---- a PRI-capable tdrv and a handler that keeps the groups ------------------------------- */

#define MAX_RESP 64

static struct {
	struct iommu_page_response resp[MAX_RESP];
	unsigned int nr;
} answers;

static void tpri_page_response(struct device *dev, struct iopf_fault *evt,
			       struct iommu_page_response *msg)
{
	(void)dev;
	(void)evt;
	if (answers.nr < MAX_RESP)
		answers.resp[answers.nr] = *msg;
	answers.nr++;
}

static struct iommu_ops tpri_ops;
static struct iommu_ops tpri_nested_ops; /* user_pasid_table */
static struct iommu_device tpri_iommu = { .name = "pri", .max_pasids = 1u << 20 };
static struct iommu_device tpri_nested_iommu = { .name = "pri-nested", .max_pasids = 1u << 20 };

static struct iopf_group *kept[16];
static unsigned int nr_kept;
static int handler_rc;

static int keep_handler(struct iopf_group *group)
{
	if (handler_rc)
		return handler_rc;
	kept[nr_kept++] = group;
	return 0;
}

static struct iopf_queue *queue;

static void setup_pri(void)
{
	setup_drivers();
	tpri_ops = tdrv_ops;
	tpri_ops.name = "tpri";
	tpri_ops.page_response = tpri_page_response;
	tpri_nested_ops = tpri_ops;
	tpri_nested_ops.user_pasid_table = true;
	iommu_device_register(&tpri_iommu, &tpri_ops);
	iommu_device_register(&tpri_nested_iommu, &tpri_nested_ops);
	queue = iopf_queue_alloc("test");
}

/* A probed PRI device on the queue. */
static struct device *pri_dev(const char *bdf, struct iommu_device *iommu)
{
	struct device *dev = mkdev(bdf, iommu, NULL);

	dev->pri = true;
	dev->pasid_bits = 20;
	if (iommu_probe_device(dev) || iopf_queue_add_device(queue, dev))
		abort();
	return dev;
}

/* A fault-capable paging domain attached at the RID with @handle. */
static struct iommu_domain *attach_fault_domain(struct device *dev,
						struct iommu_attach_handle *handle)
{
	struct iommu_domain *dom = iommu_paging_domain_alloc(dev);

	if (IS_ERR(dom))
		abort();
	dom->iopf_handler = keep_handler;
	if (iommu_attach_group_handle(dom, dev->iommu_group, handle))
		abort();
	return dom;
}

static struct iopf_fault mkfault(uint32_t grpid, uint64_t addr, bool last, int pasid)
{
	struct iopf_fault f = { .fault.type = IOMMU_FAULT_PAGE_REQ };

	f.fault.prm.grpid = grpid;
	f.fault.prm.addr = addr;
	f.fault.prm.perm = IOMMU_FAULT_PERM_READ;
	if (last)
		f.fault.prm.flags |= IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE;
	if (pasid >= 0) {
		f.fault.prm.flags |= IOMMU_FAULT_PAGE_REQUEST_PASID_VALID;
		f.fault.prm.pasid = (uint32_t)pasid;
	}
	return f;
}

static int report(struct device *dev, uint32_t grpid, uint64_t addr, bool last, int pasid)
{
	struct iopf_fault f = mkfault(grpid, addr, last, pasid);

	return iommu_report_device_fault(dev, &f);
}

/* ---- invariant 22: the fault data's lifetime ------------------------------------------------ */

TEST(inv22_fault_param_refcount)
{
	struct iommu_attach_handle handle = { 0 };
	struct iommu_domain *dom;
	struct device *dev, *plain;
	long live;

	setup_pri();
	dev = pri_dev("0000:01:00.0", &tpri_iommu);
	/* One reference, the queue's. */
	ASSERT_EQ(1, iopf_dev_fault_param_users(dev));
	dom = attach_fault_domain(dev, &handle);

	/* A partial takes a reference only while it reports. */
	ASSERT_EQ(0, report(dev, 7, 0x1000, false, -1));
	ASSERT_EQ(1, iopf_dev_fault_param_users(dev));
	/* A last request moves one into its group, held until the group is freed. */
	ASSERT_EQ(0, report(dev, 7, 0x2000, true, -1));
	ASSERT_EQ(1u, nr_kept);
	ASSERT_EQ(2, iopf_dev_fault_param_users(dev));
	ASSERT_EQ(0, report(dev, 8, 0x3000, true, -1));
	ASSERT_EQ(3, iopf_dev_fault_param_users(dev));
	iopf_group_response(kept[0], IOMMU_PAGE_RESP_SUCCESS);
	iopf_free_group(kept[0]);
	ASSERT_EQ(2, iopf_dev_fault_param_users(dev));
	iopf_group_response(kept[1], IOMMU_PAGE_RESP_SUCCESS);
	iopf_free_group(kept[1]);
	ASSERT_EQ(1, iopf_dev_fault_param_users(dev));

	/* Adding twice is EBUSY; a driver without page_response cannot take part. */
	ASSERT_EQ(-EBUSY, iopf_queue_add_device(queue, dev));
	plain = mkdev("0000:02:00.0", &iommu_lazy, NULL);
	ASSERT_EQ(0, iommu_probe_device(plain));
	ASSERT_EQ(-ENODEV, iopf_queue_add_device(queue, plain));
	ASSERT_EQ(-1, iopf_dev_fault_param_users(plain));

	iommu_detach_group_handle(dom, dev->iommu_group);
	/* Removal unpublishes and drops the last reference: freed after a grace period. */
	live = uiommu_alloc_live();
	iopf_queue_remove_device(queue, dev);
	ASSERT_EQ(-1, iopf_dev_fault_param_users(dev));
	rcu_barrier_bp();
	ASSERT_LIVE(live - 1);
	/* It can come back. */
	ASSERT_EQ(0, iopf_queue_add_device(queue, dev));
	ASSERT_EQ(1, iopf_dev_fault_param_users(dev));
	iopf_queue_remove_device(queue, dev);
	iommu_domain_free(dom);
	unplug(dev);
	unplug(plain);
	iopf_queue_free(queue);
}

/* ---- invariant 23: one answer per group, the last fault's PASID and grpid --------------------- */

TEST(inv23_group_answered_exactly_once)
{
	struct iommu_attach_handle handle = { 0 }, phandle = { 0 };
	struct iommu_domain *dom, *pdom;
	struct device *dev;

	setup_pri();
	dev = pri_dev("0000:01:00.0", &tpri_iommu);
	dom = attach_fault_domain(dev, &handle);

	ASSERT_EQ(0, report(dev, 3, 0x1000, true, -1));
	ASSERT_EQ(1u, nr_kept);
	ASSERT_TRUE(kept[0]->attach_handle == &handle);
	ASSERT_EQ(0u, answers.nr);
	ASSERT_EQ(1u, iopf_dev_pending_groups(dev));
	iopf_group_response(kept[0], IOMMU_PAGE_RESP_SUCCESS);
	ASSERT_EQ(1u, answers.nr);
	ASSERT_EQ(3u, answers.resp[0].grpid);
	ASSERT_EQ(IOMMU_PAGE_RESP_SUCCESS, answers.resp[0].code);
	ASSERT_EQ(0u, iopf_dev_pending_groups(dev));
	/* A second answer, of any code, is dropped. */
	iopf_group_response(kept[0], IOMMU_PAGE_RESP_INVALID);
	iopf_group_response(kept[0], IOMMU_PAGE_RESP_FAILURE);
	ASSERT_EQ(1u, answers.nr);
	iopf_free_group(kept[0]);

	/* A PASID fault goes to the PASID's handle; the answer carries that PASID. */
	pdom = iommu_paging_domain_alloc(dev);
	ASSERT_FALSE(IS_ERR(pdom));
	pdom->iopf_handler = keep_handler;
	ASSERT_EQ(0, iommu_attach_device_pasid(pdom, dev, 5, &phandle));
	ASSERT_EQ(0, report(dev, 9, 0x5000, false, 5));
	ASSERT_EQ(0, report(dev, 9, 0x6000, true, 5));
	ASSERT_EQ(2u, nr_kept);
	ASSERT_TRUE(kept[1]->attach_handle == &phandle);
	ASSERT_EQ(2u, kept[1]->fault_count);
	iopf_group_response(kept[1], IOMMU_PAGE_RESP_INVALID);
	iopf_group_response(kept[1], IOMMU_PAGE_RESP_SUCCESS);
	ASSERT_EQ(2u, answers.nr);
	ASSERT_EQ(5u, answers.resp[1].pasid);
	ASSERT_EQ(9u, answers.resp[1].grpid);
	ASSERT_EQ(IOMMU_PAGE_RESP_INVALID, answers.resp[1].code);
	iopf_free_group(kept[1]);

	iommu_detach_device_pasid(pdom, dev, 5);
	iommu_detach_group_handle(dom, dev->iommu_group);
	iopf_queue_remove_device(queue, dev);
	/* Nothing was pending any more: removal answered nothing. */
	ASSERT_EQ(2u, answers.nr);
	iommu_domain_free(dom);
	iommu_domain_free(pdom);
	unplug(dev);
	iopf_queue_free(queue);
}

/* ---- invariant 24: merging, INVALID without handler, FAILURE ------------------------------- */

TEST(inv24_partials_merge_by_grpid_and_are_never_answered)
{
	struct iommu_attach_handle handle = { 0 };
	struct iommu_domain *dom;
	struct iopf_fault *f;
	struct device *dev;
	uint64_t want[] = { 0x1000, 0x3000, 0x4000 };
	unsigned int i;

	setup_pri();
	dev = pri_dev("0000:01:00.0", &tpri_iommu);
	dom = attach_fault_domain(dev, &handle);

	ASSERT_EQ(0, report(dev, 1, 0x1000, false, -1));
	ASSERT_EQ(0, report(dev, 2, 0x2000, false, -1));
	ASSERT_EQ(0, report(dev, 1, 0x3000, false, -1));
	ASSERT_EQ(0u, answers.nr);
	ASSERT_EQ(0u, nr_kept);
	ASSERT_EQ(0, report(dev, 1, 0x4000, true, -1));
	ASSERT_EQ(1u, nr_kept);
	ASSERT_EQ(3u, kept[0]->fault_count);
	/* Arrival order, the last request at the end. */
	for (i = 0, f = kept[0]->faults; f; f = f->next, i++) {
		ASSERT_LT(i, 3u);
		ASSERT_EQ(want[i], f->fault.prm.addr);
	}
	ASSERT_TRUE(kept[0]->faults->next->next == &kept[0]->last_fault);
	/* grpid 2's partial stayed: its last request gets it. */
	ASSERT_EQ(0, report(dev, 2, 0x5000, true, -1));
	ASSERT_EQ(2u, nr_kept);
	ASSERT_EQ(2u, kept[1]->fault_count);
	ASSERT_EQ(0x2000u, kept[1]->faults->fault.prm.addr);
	ASSERT_EQ(0u, answers.nr);
	for (i = 0; i < 2; i++) {
		iopf_group_response(kept[i], IOMMU_PAGE_RESP_SUCCESS);
		iopf_free_group(kept[i]);
	}
	ASSERT_EQ(2u, answers.nr);

	/* A discarded partial is not merged any more. */
	ASSERT_EQ(0, report(dev, 4, 0x6000, false, -1));
	ASSERT_EQ(0, iopf_queue_discard_partial(queue));
	ASSERT_EQ(-EINVAL, iopf_queue_discard_partial(NULL));
	ASSERT_EQ(0, report(dev, 4, 0x7000, true, -1));
	ASSERT_EQ(1u, kept[2]->fault_count);
	iopf_group_response(kept[2], IOMMU_PAGE_RESP_SUCCESS);
	iopf_free_group(kept[2]);

	iommu_detach_group_handle(dom, dev->iommu_group);
	iopf_queue_remove_device(queue, dev);
	iommu_domain_free(dom);
	unplug(dev);
	iopf_queue_free(queue);
}

TEST(inv24_no_handler_is_answered_invalid_at_once)
{
	struct iommu_attach_handle handle = { 0 }, nhandle = { 0 };
	struct iommu_domain *dom, *nested;
	struct device *dev, *ndev;

	setup_pri();
	dev = pri_dev("0000:01:00.0", &tpri_iommu);

	/* Nothing attached with a handle: even a non-last request is answered INVALID. */
	ASSERT_EQ(-EINVAL, report(dev, 6, 0x1000, false, -1));
	ASSERT_EQ(1u, answers.nr);
	ASSERT_EQ(IOMMU_PAGE_RESP_INVALID, answers.resp[0].code);
	ASSERT_EQ(6u, answers.resp[0].grpid);
	/* A handle whose domain takes no faults is no handler either. */
	dom = iommu_paging_domain_alloc(dev);
	ASSERT_EQ(0, iommu_attach_group_handle(dom, dev->iommu_group, &handle));
	ASSERT_EQ(-EINVAL, report(dev, 6, 0x1000, true, -1));
	ASSERT_EQ(2u, answers.nr);
	/* A PASID without an attachment: the RID's handle does not take it (no user table). */
	dom->iopf_handler = keep_handler;
	ASSERT_EQ(-EINVAL, report(dev, 6, 0x1000, true, 3));
	ASSERT_EQ(3u, answers.nr);
	ASSERT_EQ(3u, answers.resp[2].pasid);
	ASSERT_EQ(0u, nr_kept);
	/* The partial of a refused request was not kept: a last request finds none. */
	ASSERT_EQ(0, report(dev, 6, 0x2000, true, -1));
	ASSERT_EQ(1u, kept[0]->fault_count);
	iopf_group_response(kept[0], IOMMU_PAGE_RESP_SUCCESS);
	iopf_free_group(kept[0]);
	iommu_detach_group_handle(dom, dev->iommu_group);
	/* A device that is not on a queue has no fault data: INVALID too. */
	iopf_queue_remove_device(queue, dev);
	ASSERT_EQ(-EINVAL, report(dev, 1, 0x1000, true, -1));
	ASSERT_EQ(5u, answers.nr);
	ASSERT_EQ(IOMMU_PAGE_RESP_INVALID, answers.resp[4].code);

	/* With a user PASID table, an unknown PASID goes to the RID's NESTED handle. */
	ndev = pri_dev("0000:03:00.0", &tpri_nested_iommu);
	nested = iommu_paging_domain_alloc(ndev);
	iommu_domain_set_type(nested, IOMMU_DOMAIN_NESTED);
	nested->iopf_handler = keep_handler;
	ASSERT_EQ(0, iommu_attach_group_handle(nested, ndev->iommu_group, &nhandle));
	ASSERT_EQ(0, report(ndev, 2, 0x1000, true, 77));
	ASSERT_EQ(2u, nr_kept);
	ASSERT_TRUE(kept[1]->attach_handle == &nhandle);
	iopf_group_response(kept[1], IOMMU_PAGE_RESP_SUCCESS);
	ASSERT_EQ(77u, answers.resp[5].pasid);
	iopf_free_group(kept[1]);
	iommu_detach_group_handle(nested, ndev->iommu_group);
	iopf_queue_remove_device(queue, ndev);
	iommu_domain_set_type(nested, IOMMU_DOMAIN_UNMANAGED);
	iommu_domain_free(nested);
	iommu_domain_free(dom);
	unplug(dev);
	unplug(ndev);
	iopf_queue_free(queue);
}

/* ---- the device side: response sinks ------------------------------------------------------- */

static struct {
	struct device *dev;
	struct iommu_page_response resp;
	unsigned int nr;
} sink_a, sink_b;

static void record_sink_a(struct device *dev, const struct iommu_page_response *msg)
{
	sink_a.dev = dev;
	sink_a.resp = *msg;
	sink_a.nr++;
}

static void record_sink_b(struct device *dev, const struct iommu_page_response *msg)
{
	sink_b.dev = dev;
	sink_b.resp = *msg;
	sink_b.nr++;
}

static void sink_noop1(struct device *dev, const struct iommu_page_response *msg)
{
	(void)dev;
	(void)msg;
}

static void sink_noop2(struct device *dev, const struct iommu_page_response *msg)
{
	sink_noop1(dev, msg);
}

static void sink_noop3(struct device *dev, const struct iommu_page_response *msg)
{
	sink_noop1(dev, msg);
}

TEST(response_sinks_hear_every_answer_after_the_driver)
{
	struct iommu_attach_handle handle = { 0 };
	struct iommu_domain *dom;
	struct device *dev;

	setup_pri();
	dev = pri_dev("0000:01:00.0", &tpri_iommu);
	/* Before any sink: the driver alone answers. */
	ASSERT_EQ(-EINVAL, report(dev, 4, 0x1000, true, -1));
	ASSERT_EQ(1u, answers.nr);
	ASSERT_EQ(0, iopf_response_sink_register(record_sink_a));
	ASSERT_EQ(0, iopf_response_sink_register(record_sink_a)); /* again: no second call */
	ASSERT_EQ(0, iopf_response_sink_register(record_sink_b));

	/* A forced answer (no handler) reaches both, once each, with what the driver sent. */
	ASSERT_EQ(-EINVAL, report(dev, 5, 0x1000, true, 9));
	ASSERT_EQ(2u, answers.nr);
	ASSERT_EQ(1u, sink_a.nr);
	ASSERT_EQ(1u, sink_b.nr);
	ASSERT_TRUE(sink_a.dev == dev);
	ASSERT_EQ(5u, sink_a.resp.grpid);
	ASSERT_EQ(9u, sink_a.resp.pasid);
	ASSERT_EQ(IOMMU_PAGE_RESP_INVALID, sink_a.resp.code);
	ASSERT_EQ(0, memcmp(&sink_a.resp, &answers.resp[1], sizeof(sink_a.resp)));
	ASSERT_EQ(0, memcmp(&sink_b.resp, &sink_a.resp, sizeof(sink_a.resp)));

	/* A handler's answer too. */
	dom = attach_fault_domain(dev, &handle);
	ASSERT_EQ(0, report(dev, 7, 0x2000, true, -1));
	ASSERT_EQ(1u, nr_kept);
	ASSERT_EQ(1u, sink_a.nr); /* not answered yet */
	iopf_group_response(kept[0], IOMMU_PAGE_RESP_SUCCESS);
	ASSERT_EQ(2u, sink_a.nr);
	ASSERT_EQ(2u, sink_b.nr);
	ASSERT_EQ(7u, sink_b.resp.grpid);
	ASSERT_EQ(IOMMU_PAGE_RESP_SUCCESS, sink_b.resp.code);
	iopf_free_group(kept[0]);
	iommu_detach_group_handle(dom, dev->iommu_group);
	iommu_domain_free(dom);

	/* The table is bounded; a sink already in it still registers. */
	_Static_assert(IOPF_RESPONSE_SINKS_MAX == 4, "two more fill the table");
	ASSERT_EQ(0, iopf_response_sink_register(sink_noop1));
	ASSERT_EQ(0, iopf_response_sink_register(sink_noop2));
	ASSERT_EQ(-ENOSPC, iopf_response_sink_register(sink_noop3));
	ASSERT_EQ(0, iopf_response_sink_register(record_sink_b));
	/* Every registered sink still hears. */
	ASSERT_EQ(-EINVAL, report(dev, 8, 0x1000, true, -1));
	ASSERT_EQ(3u, sink_a.nr);
	ASSERT_EQ(3u, sink_b.nr);
	iopf_queue_remove_device(queue, dev);
	unplug(dev);
	iopf_queue_free(queue);
}

TEST(inv24_group_alloc_or_handler_failure_is_answered_failure)
{
	struct iommu_attach_handle handle = { 0 };
	struct iommu_domain *dom;
	struct device *dev;
	unsigned int n0;
	long live;

	setup_pri();
	dev = pri_dev("0000:01:00.0", &tpri_iommu);
	dom = attach_fault_domain(dev, &handle);

	/* Injected allocation failures need a build with fault injection (not release). */
	if (uiommu_fail_nth_available()) {
		/* The group allocation fails: the device is still answered, FAILURE, partials freed. */
		live = uiommu_alloc_live();
		ASSERT_EQ(0, report(dev, 5, 0x1000, false, -1));
		ASSERT_LIVE(live + 1);
		uiommu_fail_nth_arm(1);
		ASSERT_EQ(0, report(dev, 5, 0x2000, true, -1));
		uiommu_fail_nth_disarm();
		ASSERT_EQ(0u, nr_kept);
		ASSERT_EQ(1u, answers.nr);
		ASSERT_EQ(IOMMU_PAGE_RESP_FAILURE, answers.resp[0].code);
		ASSERT_EQ(5u, answers.resp[0].grpid);
		ASSERT_LIVE(live);
		ASSERT_EQ(1, iopf_dev_fault_param_users(dev));
		ASSERT_EQ(0u, iopf_dev_pending_groups(dev));

		/* A partial that cannot be kept: -ENOMEM, no answer. */
		uiommu_fail_nth_arm(1);
		ASSERT_EQ(-ENOMEM, report(dev, 5, 0x2000, false, -1));
		uiommu_fail_nth_disarm();
		ASSERT_EQ(1u, answers.nr);
	}

	/* The handler refuses: FAILURE, and the group is gone. */
	n0 = answers.nr;
	live = uiommu_alloc_live();
	handler_rc = -ENOSPC;
	ASSERT_EQ(0, report(dev, 6, 0x3000, true, -1));
	ASSERT_EQ(n0 + 1, answers.nr);
	ASSERT_EQ(IOMMU_PAGE_RESP_FAILURE, answers.resp[n0].code);
	ASSERT_EQ(6u, answers.resp[n0].grpid);
	ASSERT_EQ(0u, nr_kept);
	ASSERT_LIVE(live);
	ASSERT_EQ(1, iopf_dev_fault_param_users(dev));

	iommu_detach_group_handle(dom, dev->iommu_group);
	iopf_queue_remove_device(queue, dev);
	iommu_domain_free(dom);
	unplug(dev);
	iopf_queue_free(queue);
}

/* ---- invariant 25: removal ----------------------------------------------------------------- */

TEST(inv25_remove_answers_pending_invalid_and_unpublishes)
{
	struct iommu_attach_handle handle = { 0 };
	struct iommu_domain *dom;
	struct device *dev;
	long live;
	unsigned int i;

	setup_pri();
	dev = pri_dev("0000:01:00.0", &tpri_iommu);
	dom = attach_fault_domain(dev, &handle);

	/* Two groups handed over and left unanswered, one answered, and a partial. */
	ASSERT_EQ(0, report(dev, 1, 0x1000, true, -1));
	ASSERT_EQ(0, report(dev, 2, 0x2000, true, -1));
	ASSERT_EQ(0, report(dev, 3, 0x3000, true, -1));
	ASSERT_EQ(0, report(dev, 4, 0x4000, false, -1));
	iopf_group_response(kept[2], IOMMU_PAGE_RESP_SUCCESS);
	iopf_free_group(kept[2]);
	ASSERT_EQ(1u, answers.nr);
	ASSERT_EQ(2u, iopf_dev_pending_groups(dev));
	ASSERT_EQ(3, iopf_dev_fault_param_users(dev));

	/* Their owner gives them up (a detach); removal answers and frees them. */
	iommu_detach_group_handle(dom, dev->iommu_group);
	live = uiommu_alloc_live();
	iopf_queue_remove_device(queue, dev);
	ASSERT_EQ(3u, answers.nr);
	for (i = 1; i < 3; i++) {
		ASSERT_EQ(IOMMU_PAGE_RESP_INVALID, answers.resp[i].code);
		ASSERT_EQ(i, answers.resp[i].grpid);
	}
	ASSERT_EQ(-1, iopf_dev_fault_param_users(dev));
	rcu_barrier_bp();
	/* The two groups, the partial and the fault data are all gone. */
	ASSERT_LIVE(live - 4);

	/* Later reports find nothing, even with a handler attached again. */
	ASSERT_EQ(0, iommu_attach_group_handle(dom, dev->iommu_group, &handle));
	ASSERT_EQ(-EINVAL, report(dev, 4, 0x5000, true, -1));
	ASSERT_EQ(4u, answers.nr);
	ASSERT_EQ(IOMMU_PAGE_RESP_INVALID, answers.resp[3].code);
	ASSERT_EQ(3u, nr_kept);
	iommu_detach_group_handle(dom, dev->iommu_group);
	iommu_domain_free(dom);
	unplug(dev);
	iopf_queue_free(queue);
}

/* ---- the queue's worker and flush ---------------------------------------------------------- */

static _Atomic int work_ran, work_gate;

static void slow_work(struct iopf_group *group)
{
	while (!atomic_load(&work_gate))
		usleep(1000);
	iopf_group_response(group, IOMMU_PAGE_RESP_SUCCESS);
	iopf_free_group(group);
	atomic_fetch_add(&work_ran, 1);
}

static int queue_handler(struct iopf_group *group)
{
	uint32_t grpid = group->last_fault.fault.prm.grpid; /* the work may free the group */
	int rc = iopf_group_queue_work(group, slow_work);

	/*
	 * Queued already: the same group cannot be queued twice. Group 2 waits behind group 1,
	 * which the gate holds in the worker, so it is certainly not started yet.
	 */
	if (!rc && grpid == 2 &&
	    iopf_group_queue_work(group, slow_work) != -EBUSY)
		abort();
	return rc;
}

TEST(work_queued_handlers_and_flush)
{
	struct iommu_attach_handle handle = { 0 };
	struct iommu_domain *dom;
	struct device *dev;

	setup_pri();
	dev = pri_dev("0000:01:00.0", &tpri_iommu);
	dom = iommu_paging_domain_alloc(dev);
	dom->iopf_handler = queue_handler;
	ASSERT_EQ(0, iommu_attach_group_handle(dom, dev->iommu_group, &handle));
	ASSERT_EQ(0, report(dev, 1, 0x1000, true, -1));
	ASSERT_EQ(0, report(dev, 2, 0x2000, true, -1));
	ASSERT_EQ(0, atomic_load(&work_ran));
	atomic_store(&work_gate, 1);
	/* flush waits for both works. */
	ASSERT_EQ(0, iopf_queue_flush_dev(dev));
	ASSERT_EQ(2, atomic_load(&work_ran));
	ASSERT_EQ(2u, answers.nr);
	ASSERT_EQ(1, iopf_dev_fault_param_users(dev));
	/* Removal waits for queued work too: nothing is answered twice. */
	ASSERT_EQ(0, report(dev, 3, 0x3000, true, -1));
	iommu_detach_group_handle(dom, dev->iommu_group);
	iopf_queue_remove_device(queue, dev);
	ASSERT_EQ(3, atomic_load(&work_ran));
	ASSERT_EQ(3u, answers.nr);
	ASSERT_EQ(IOMMU_PAGE_RESP_SUCCESS, answers.resp[2].code);
	iommu_domain_free(dom);
	unplug(dev);
	iopf_queue_free(queue);
}

/* ---- the mock driver: PRI devices join a queue at probe and leave at release -------------- */

TEST(mock_driver_pri_devices)
{
	static struct iommu_device inst = { .name = "mock-pri", .max_pasids = 1u << 20 };
	struct iommu_page_response last;
	struct device *dev, *nopri;

	ASSERT_EQ(0, mock_iommu_register(&inst));
	dev = device_alloc("0000:05:00.0");
	dev->iommu = &inst;
	dev->pri = true;
	nopri = device_alloc("0000:06:00.0");
	nopri->iommu = &inst;
	ASSERT_EQ(0, iommu_probe_device(dev));
	ASSERT_EQ(0, iommu_probe_device(nopri));
	ASSERT_EQ(1, iopf_dev_fault_param_users(dev));
	ASSERT_EQ(-1, iopf_dev_fault_param_users(nopri));
	/* No handler: the mock's page_response gets the INVALID answer. */
	ASSERT_EQ(-EINVAL, report(dev, 12, 0x1000, true, -1));
	ASSERT_EQ(1u, mock_page_responses(dev, &last));
	ASSERT_EQ(12u, last.grpid);
	ASSERT_EQ(IOMMU_PAGE_RESP_INVALID, last.code);
	iommu_release_device(dev);
	ASSERT_EQ(-1, iopf_dev_fault_param_users(dev));
	/* Probed again, it joins again. */
	ASSERT_EQ(0, iommu_probe_device(dev));
	ASSERT_EQ(1, iopf_dev_fault_param_users(dev));
	iommu_release_device(dev);
	iommu_release_device(nopri);
	mock_device_forget(dev);
	mock_device_forget(nopri);
	device_put(dev);
	device_put(nopri);
	mock_iommu_unregister(&inst);
}

/* The uAPI call @req on @fd: 0 or -errno. */
static int fq_ioctl(int fd, unsigned long req, void *arg)
{
	return uiommu_ioctl(fd, req, arg) ? -errno : 0;
}

/*
 * A group of two page requests reaches an iommufd fault fd whole: a read whose count fits one
 * record only is EINVAL (never half a group), one that fits both gives both with one cookie,
 * and the one answer goes to the device. The selftest's TRIGGER_IOPF only makes one-page
 * groups, so the two requests are reported here through the core, to the mock device the ABI
 * made.
 */
TEST(fault_fd_reads_whole_groups)
{
	struct iommu_test_cmd mock = { .size = sizeof(mock), .op = IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
				       .mock_domain_flags = { .dev_flags = MOCK_FLAGS_DEVICE_PASID } };
	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	struct iommu_fault_alloc fault = { .size = sizeof(fault) };
	struct iommu_hwpt_alloc hwpt = { .size = sizeof(hwpt),
					 .flags = IOMMU_HWPT_ALLOC_PASID | IOMMU_HWPT_FAULT_ID_VALID };
	struct iopf_fault f = { .fault.type = IOMMU_FAULT_PAGE_REQ };
	struct iommu_hwpt_pgfault rec[3];
	struct iommu_hwpt_page_response resp = { .code = IOMMUFD_PAGE_RESP_SUCCESS };
	struct iommu_test_cmd resps = { .size = sizeof(resps),
					  .op = IOMMU_TEST_OP_UIOMMU_PAGE_RESPONSES };
	struct iommufd_device *idev;
	struct iommufd_ctx *ictx;
	int fd, ffd;

	fd = uiommu_open(O_RDWR);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, fq_ioctl(fd, IOMMU_IOAS_ALLOC, &ioas));
	mock.id = ioas.out_ioas_id;
	ASSERT_EQ(0, fq_ioctl(fd, IOMMU_TEST_CMD, &mock));
	ASSERT_EQ(0, fq_ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &fault));
	ffd = (int)fault.out_fault_fd;
	hwpt.dev_id = mock.mock_domain_flags.out_idev_id;
	hwpt.pt_id = ioas.out_ioas_id;
	hwpt.fault_id = fault.out_fault_id;
	ASSERT_EQ(0, fq_ioctl(fd, IOMMU_HWPT_ALLOC, &hwpt));
	mock = (struct iommu_test_cmd){ .size = sizeof(mock), .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE,
					.id = mock.mock_domain_flags.out_stdev_id,
					.mock_domain_replace = { .pt_id = hwpt.out_hwpt_id } };
	ASSERT_EQ(0, fq_ioctl(fd, IOMMU_TEST_CMD, &mock));

	ictx = iommufd_ctx_from_fd(fd);
	ASSERT_FALSE(IS_ERR(ictx));
	idev = iommufd_get_device(ictx, hwpt.dev_id);
	ASSERT_FALSE(IS_ERR(idev));
	f.fault.prm.grpid = 7;
	f.fault.prm.addr = 0x10000;
	ASSERT_EQ(0, iommu_report_device_fault(idev->dev, &f));
	f.fault.prm.flags = IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE;
	f.fault.prm.addr = 0x11000;
	ASSERT_EQ(0, iommu_report_device_fault(idev->dev, &f));
	iommufd_put_object(ictx, &idev->obj);
	iommufd_ctx_file_put(ictx);

	ASSERT_EQ(-1, uiommu_event_read(ffd, rec, sizeof(rec[0])));
	ASSERT_EQ(EINVAL, errno);
	memset(rec, 0, sizeof(rec));
	ASSERT_EQ((ssize_t)(2 * sizeof(rec[0])), uiommu_event_read(ffd, rec, sizeof(rec)));
	ASSERT_EQ(7u, rec[0].grpid);
	ASSERT_EQ(7u, rec[1].grpid);
	ASSERT_EQ(rec[0].cookie, rec[1].cookie);
	ASSERT_EQ(0x10000ull, rec[0].addr);
	ASSERT_EQ(0x11000ull, rec[1].addr);
	ASSERT_EQ(0u, rec[2].cookie); /* nothing past the group */
	ASSERT_EQ(0, uiommu_event_read(ffd, rec, sizeof(rec)));
	resp.cookie = rec[0].cookie;
	ASSERT_EQ((ssize_t)sizeof(resp), uiommu_event_write(ffd, &resp, sizeof(resp)));
	resps.page_responses.dev_id = hwpt.dev_id;
	ASSERT_EQ(0, fq_ioctl(fd, IOMMU_TEST_CMD, &resps));
	ASSERT_EQ(1u, resps.page_responses.out_success);
	ASSERT_EQ(7u, resps.page_responses.out_last_grpid);
	ASSERT_EQ(0, uiommu_close(ffd));
	ASSERT_EQ(0, uiommu_close(fd));
}

TEST_HARNESS_MAIN
