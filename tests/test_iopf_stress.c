// SPDX-License-Identifier: MIT
/*
 * I/O page faults under contention (run it under ThreadSanitizer and ASan too): reporters on
 * several threads race a responder, and a thread that detaches the fault-capable domain,
 * removes the device from its queue, adds it back and attaches again with a new handle.
 *
 * What must hold: every request group is answered exactly once (the driver counts answers per
 * grpid, each reporter uses grpids of its own; a partial refused at once adds its own INVALID),
 * no handler ever sees a group tagged with an attach handle that a detach retired (the
 * detacher drains in-flight reports, iopf_drain_dev()), and nothing is used after it was freed
 * (the sanitizers). The driver order is the kernel's: the handler's owner stops accepting and
 * answers what it holds, the domain is detached, then the device leaves the queue.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "stress.h"
#include "iommu/iommu.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/rcu.h"

#include "tdrv.h"

#define REPORTERS 3
#define PER_REPORTER 20000
#define NGRP (REPORTERS * PER_REPORTER + 1)

static _Atomic unsigned int answered[NGRP];
static unsigned int expected[NGRP];

static void count_page_response(struct device *dev, struct iopf_fault *evt,
				struct iommu_page_response *msg)
{
	(void)dev;
	(void)evt;
	if (msg->grpid >= NGRP)
		abort();
	atomic_fetch_add(&answered[msg->grpid], 1);
}

static struct iommu_ops tpri_ops;
static struct iommu_device tpri_iommu = { .name = "pri", .max_pasids = 1u << 20 };

/* The handler's owner: a list of groups to answer, and whether it takes any. */
static pthread_mutex_t owner_lock = PTHREAD_MUTEX_INITIALIZER; /* all below; before the core's */
static struct iopf_group_list owned = TAILQ_HEAD_INITIALIZER(owned);
static bool accepting;
static struct iommu_attach_handle *cur_handle;

static int owner_handler(struct iopf_group *group)
{
	pthread_mutex_lock(&owner_lock);
	if (!accepting) {
		pthread_mutex_unlock(&owner_lock);
		return -ESHUTDOWN; /* the core answers FAILURE */
	}
	/* A retired handle here would mean a reporter outlived the detach's drain. */
	if (group->attach_handle != cur_handle)
		abort();
	TAILQ_INSERT_TAIL(&owned, group, node);
	pthread_mutex_unlock(&owner_lock);
	return 0;
}

/* owner_lock held: answer @code to everything held. */
static unsigned int owner_answer_all(enum iommu_page_response_code code)
{
	struct iopf_group *group;
	unsigned int n = 0;

	while ((group = TAILQ_FIRST(&owned))) {
		TAILQ_REMOVE(&owned, group, node);
		iopf_group_response(group, code);
		iopf_free_group(group);
		n++;
	}
	return n;
}

static struct device *dev;

static void *reporter(void *arg)
{
	unsigned int base = (unsigned int)(uintptr_t)arg * PER_REPORTER + 1;

	for (unsigned int i = 0; i < PER_REPORTER; i++) {
		unsigned int grpid = base + i;
		struct iopf_fault f = { .fault.type = IOMMU_FAULT_PAGE_REQ };
		int rc;

		f.fault.prm.grpid = grpid;
		f.fault.prm.addr = (uint64_t)grpid << 12;
		expected[grpid] = 1;
		if (i & 1) {
			/* A partial first: answered by itself only when refused at once. */
			rc = iommu_report_device_fault(dev, &f);
			if (rc == -EINVAL)
				expected[grpid]++;
			else if (rc)
				abort();
		}
		f.fault.prm.flags = IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE;
		rc = iommu_report_device_fault(dev, &f);
		if (rc && rc != -EINVAL)
			abort();
		if (!(i % 64))
			sched_yield();
	}
	return NULL;
}

static void *responder(void *arg)
{
	(void)arg;
	while (stress_running()) {
		pthread_mutex_lock(&owner_lock);
		owner_answer_all(IOMMU_PAGE_RESP_SUCCESS);
		pthread_mutex_unlock(&owner_lock);
		sched_yield();
	}
	return NULL;
}

static struct iopf_queue *queue;
static struct iommu_domain *dom;
static struct iommu_attach_handle handles[2];

static void *churner(void *arg)
{
	unsigned int *rounds = arg;

	for (unsigned int i = 0; stress_running(); i++) {
		/* The owner stops taking groups and answers what it holds... */
		pthread_mutex_lock(&owner_lock);
		accepting = false;
		owner_answer_all(IOMMU_PAGE_RESP_INVALID);
		pthread_mutex_unlock(&owner_lock);
		/* ...the domain leaves, and no reporter keeps the old handle... */
		iommu_detach_group_handle(dom, dev->iommu_group);
		iopf_drain_dev(dev);
		/* ...and the device leaves its queue, and comes back. */
		iopf_queue_remove_device(queue, dev);
		if (iopf_queue_add_device(queue, dev))
			abort();
		pthread_mutex_lock(&owner_lock);
		cur_handle = &handles[i & 1];
		if (iommu_attach_group_handle(dom, dev->iommu_group, cur_handle))
			abort();
		accepting = true;
		pthread_mutex_unlock(&owner_lock);
		(*rounds)++;
		sched_yield();
	}
	return NULL;
}

TEST(reporters_race_response_remove_and_detach)
{
	struct stress_worker w[REPORTERS + 2];
	unsigned int rounds = 0, i, n_answered = 0;

	setup_drivers();
	tpri_ops = tdrv_ops;
	tpri_ops.name = "tpri";
	tpri_ops.page_response = count_page_response;
	ASSERT_EQ(0, iommu_device_register(&tpri_iommu, &tpri_ops));
	dev = mkdev("0000:01:00.0", &tpri_iommu, NULL);
	dev->pri = true;
	ASSERT_EQ(0, iommu_probe_device(dev));
	queue = iopf_queue_alloc("stress");
	ASSERT_EQ(0, iopf_queue_add_device(queue, dev));
	dom = iommu_paging_domain_alloc(dev);
	ASSERT_FALSE(IS_ERR(dom));
	dom->iopf_handler = owner_handler;
	cur_handle = &handles[1];
	ASSERT_EQ(0, iommu_attach_group_handle(dom, dev->iommu_group, cur_handle));
	accepting = true;

	/* The reporters' faults are the work; the responder and the churner race them. */
	for (i = 0; i < REPORTERS; i++)
		w[i] = (struct stress_worker){ reporter, (void *)(uintptr_t)i };
	w[REPORTERS] = (struct stress_worker){ responder, NULL };
	w[REPORTERS + 1] = (struct stress_worker){ churner, &rounds };
	ASSERT_EQ(0, stress_run_work(w, REPORTERS + 2, REPORTERS));

	/* Whatever is still held is answered; the device leaves. */
	pthread_mutex_lock(&owner_lock);
	accepting = false;
	owner_answer_all(IOMMU_PAGE_RESP_INVALID);
	pthread_mutex_unlock(&owner_lock);
	iommu_detach_group_handle(dom, dev->iommu_group);
	iopf_queue_remove_device(queue, dev);

	for (i = 1; i < NGRP; i++) {
		if (atomic_load(&answered[i]) != expected[i])
			printf("# grpid %u: %u answers, %u expected\n", i,
			       atomic_load(&answered[i]), expected[i]);
		ASSERT_EQ(expected[i], atomic_load(&answered[i]));
		n_answered += atomic_load(&answered[i]);
	}
	printf("# %u answers, %u remove/re-add rounds\n", n_answered, rounds);
	ASSERT_GT(rounds, 0u);
	ASSERT_EQ(-1, iopf_dev_fault_param_users(dev));
	iommu_domain_free(dom);
	iopf_queue_free(queue);
	unplug(dev);
	rcu_barrier_bp();
}

TEST_HARNESS_MAIN
