// SPDX-License-Identifier: MIT
/*
 * I/O page faults: the core's half of PCIe PRI (Page Request Interface, PCIe r6 §10.4).
 *
 * A device that misses a translation sends page requests; several requests that belong
 * together share a group index (grpid) and the last one carries LAST_PAGE. The IOMMU driver
 * hands each to iommu_report_device_fault(). We collect the requests of a group and give the
 * complete group (struct iopf_group) to the iopf_handler of the domain attached where the fault
 * came from (the RID, or the PASID). The handler's owner (iommufd's fault queue, SVA) resolves
 * it and answers once with iopf_group_response(), which calls the driver's page_response, and
 * then frees it. Semantics: ../shared/spec/iommu-core.md §6 (mainline v6.17).
 *
 * Data model.
 *
 *   struct iopf_queue          a driver's fault queue (one per IOMMU instance in practice): its
 *                              devices, and a worker thread for work-queued handlers (SVA),
 *                              started at the first such work.
 *   struct iommu_fault_param   one per device on a queue, made by iopf_queue_add_device() with
 *                              one reference (the queue's) and RCU-published in
 *                              dev->iommu_data->fault_param. Holds the partial faults (non-last
 *                              requests waiting for their group's last one) and the pending
 *                              groups (built, not answered yet).
 *   struct iopf_group          see iommu.h. It holds a fault_param reference until it is freed.
 *
 * Lifetime of the fault data (invariant 22). A reporter looks the pointer up under
 * rcu_read_lock() and takes a reference only if the count is not already zero; a LAST_PAGE
 * report gives one reference to its group. iopf_queue_remove_device() unpublishes the pointer
 * and drops the queue's reference; the last put frees the structure after a grace period, so a
 * reporter that read the pointer just before it was cleared still finds memory to fail its
 * increment on. The report path takes no global lock: two devices fault in parallel.
 *
 * Answers (invariants 23, 24). A group is answered at most once: only while it is on the
 * pending list, which iopf_group_response() and the forced answers of removal leave under
 * fault_param->lock. A request with no handler is answered INVALID at once (even a non-last
 * one); a group that cannot be allocated or that its handler refuses is answered FAILURE. A
 * non-last request is never answered by itself.
 *
 * In-flight reports. fault_param->reporting counts reports between their fault-data lookup and
 * the handler's return. iopf_drain_dev(), iopf_queue_flush_dev() and iopf_queue_remove_device()
 * wait for it to drop to zero: that is what a kernel driver's drain of its hardware queue and
 * IRQ thread guarantees there. iommufd drains after a detach retired an attach handle, so no
 * reporter still holds that handle when its groups are answered and it is freed; and removal
 * never frees a group between its creation and its handler's return. Once `removed` is set no
 * report enters.
 *
 * Removal's contract (the driver order of §6.5): the driver has stopped reporting for the
 * device, its fault-capable domains are detached (their owners answered and freed what they
 * held), then iopf_queue_remove_device() discards the partials, answers INVALID to and frees
 * every group still pending, unpublishes the fault data and drops the queue's reference
 * (invariant 25). Unlike the kernel, a report racing removal is not a WARN here (debug builds
 * stop at a WARN, and the stress test races them on purpose): it finds no fault data and is
 * answered INVALID like any request without a handler.
 *
 * Locks, outermost first: queue->lock (queue->devices) -> dev_iommu->lock (publishing and
 * clearing fault_param) -> fault_param->lock (partial, pending, reporting, removed; the
 * driver's page_response is called under it) -> queue->work_lock (the worker's list; a leaf).
 * Handlers run with none of them held.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "iommu/iommu.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "lib/rcu.h"
#include "lib/thread.h"

struct iommu_fault_param {
	/* Protects everything below but the list node; order: after dev_iommu->lock. */
	struct uiommu_mutex lock;
	struct uiommu_cond drained;          /* reporting dropped to 0; waited on with lock */
	struct iopf_fault *partial;      /* newest first */
	struct iopf_group_list pending;  /* groups not answered yet */
	/*
	 * Reports between lookup and handler return, counted in two phases so that a drain waits
	 * only for those that entered before it (reporters keep entering the other phase).
	 */
	unsigned int reporting[2];
	unsigned int phase;              /* where reports enter now */
	bool draining;                   /* a drain flipped the phase and waits; one at a time */
	bool removed;                    /* no report may enter any more */

	/*
	 * Every report writes the count: on a cache line of its own, so that two devices'
	 * reporters (whose fault data may be neighbours in memory) do not slow each other down.
	 */
	char users_pad_before[64];
	atomic_int users;                /* iopf_get_dev_fault_param()/iopf_put_dev_fault_param() */
	char users_pad_after[64];
	struct rcu_head rcu;
	struct device *dev;              /* constant */
	struct iopf_queue *queue;        /* constant */
	LIST_ENTRY(iommu_fault_param) queue_node; /* in queue->devices; queue->lock */
};

struct iopf_queue {
	struct uiommu_mutex lock;        /* protects devices; the outermost fault lock, inside
					    group->mutex and mock_selftest_iopf_lock */
	LIST_HEAD(, iommu_fault_param) devices;
	char name[32];

	/* The worker for work-queued handlers. work_lock protects all of it; a leaf. */
	struct uiommu_mutex work_lock;
	struct uiommu_cond work_cond;        /* new work or stop (the worker waits) */
	struct uiommu_cond work_done_cond;   /* work_done advanced (flushers wait) */
	struct iopf_group_list work;
	unsigned long work_queued;       /* works ever queued */
	unsigned long work_done;         /* works ever finished: FIFO, one worker */
	pthread_t worker;
	bool worker_started;
	bool stopping;
};

/* ---- fault data ------------------------------------------------------------------------------ */

static void iopf_fault_param_free_rcu(struct rcu_head *head)
{
	struct iommu_fault_param *param = container_of(head, struct iommu_fault_param, rcu);

	uiommu_rcu_callback_begin();
	uiommu_cond_destroy(&param->drained);
	uiommu_mutex_destroy(&param->lock);
	uiommu_free_deferred(param);
}

/*
 * A reference on @dev's fault data, or NULL when it has none (never added, or removed). Pairs
 * with iopf_put_dev_fault_param().
 */
static struct iommu_fault_param *iopf_get_dev_fault_param(struct device *dev)
{
	struct iommu_fault_param *param;
	int users;

	if (!dev->iommu_data)
		return NULL;
	rcu_read_lock();
	param = __atomic_load_n(&dev->iommu_data->fault_param, __ATOMIC_ACQUIRE);
	if (param) {
		users = atomic_load_explicit(&param->users, memory_order_relaxed);
		do {
			if (!users) {
				param = NULL;
				break;
			}
		} while (!atomic_compare_exchange_weak_explicit(&param->users, &users, users + 1,
								memory_order_acquire,
								memory_order_relaxed));
	}
	rcu_read_unlock();
	return param;
}

static void iopf_put_dev_fault_param(struct iommu_fault_param *param)
{
	/* Release: our last accesses happen before the free of whoever drops the last one. */
	if (atomic_fetch_sub_explicit(&param->users, 1, memory_order_acq_rel) == 1)
		call_rcu(&param->rcu, iopf_fault_param_free_rcu);
}

int iopf_dev_fault_param_users(struct device *dev)
{
	struct iommu_fault_param *param;
	int users = -1;

	if (!dev->iommu_data)
		return -1;
	rcu_read_lock();
	param = __atomic_load_n(&dev->iommu_data->fault_param, __ATOMIC_ACQUIRE);
	if (param)
		users = atomic_load_explicit(&param->users, memory_order_relaxed);
	rcu_read_unlock();
	return users;
}

bool iopf_dev_fault_param_probe(struct device *dev)
{
	struct iommu_fault_param *param = iopf_get_dev_fault_param(dev);

	if (!param)
		return false;
	iopf_put_dev_fault_param(param);
	return true;
}

unsigned int iopf_dev_pending_groups(struct device *dev)
{
	struct iommu_fault_param *param = iopf_get_dev_fault_param(dev);
	struct iopf_group *group;
	unsigned int n = 0;

	if (!param)
		return 0;
	uiommu_mutex_lock(&param->lock);
	TAILQ_FOREACH(group, &param->pending, pending_node)
		n++;
	uiommu_mutex_unlock(&param->lock);
	iopf_put_dev_fault_param(param);
	return n;
}

static const struct iommu_ops *iopf_dev_ops(struct device *dev)
{
	return dev->iommu->ops;
}

/*
 * The device side of an answer. On hardware the IOMMU sends the page response to the function
 * that raised the request; here the function is emulated above the core (the machine's DMA
 * engine), so it registers a sink, and every answer the fault layer has a driver send reaches
 * every sink. Slots are filled in order and never emptied: a sink is code that lives as long
 * as the process, so a reader needs neither RCU nor a reference, only the acquire load that
 * pairs with the registration's compare-and-swap (it then calls a complete function).
 */
static _Atomic(iopf_response_sink_fn) iopf_response_sinks[IOPF_RESPONSE_SINKS_MAX];

int iopf_response_sink_register(iopf_response_sink_fn fn)
{
	unsigned int i;

	for (i = 0; i < IOPF_RESPONSE_SINKS_MAX; i++) {
		iopf_response_sink_fn cur = NULL;

		if (atomic_compare_exchange_strong_explicit(&iopf_response_sinks[i], &cur, fn,
							    memory_order_release,
							    memory_order_acquire) ||
		    cur == fn)
			return 0;
	}
	return -ENOSPC;
}

/*
 * The answer the driver sends for @evt's group, and its arrival at the device. Every answer
 * passes here, so no driver has to remember the device side.
 */
static void iopf_send_response(struct device *dev, struct iopf_fault *evt,
			       enum iommu_page_response_code code)
{
	struct iommu_page_response resp = {
		.pasid = evt->fault.prm.pasid,
		.grpid = evt->fault.prm.grpid,
		.code = code,
	};
	unsigned int i;

	iopf_dev_ops(dev)->page_response(dev, evt, &resp);
	for (i = 0; i < IOPF_RESPONSE_SINKS_MAX; i++) {
		iopf_response_sink_fn sink = atomic_load_explicit(&iopf_response_sinks[i],
								  memory_order_acquire);

		if (!sink)
			break;
		sink(dev, &resp);
	}
}

/* ---- groups ---------------------------------------------------------------------------------- */

/**
 * iopf_group_response() - answer @group with @status, once
 *
 * Only a group still pending is answered (with its last fault's PASID and grpid); an answer
 * after the forced one of a removal or a detach, or a second answer, is dropped silently.
 */
void iopf_group_response(struct iopf_group *group, enum iommu_page_response_code status)
{
	struct iommu_fault_param *param = group->fault_param;

	uiommu_mutex_lock(&param->lock);
	if (group->pending) {
		iopf_send_response(param->dev, &group->last_fault, status);
		TAILQ_REMOVE(&param->pending, group, pending_node);
		group->pending = false;
	}
	uiommu_mutex_unlock(&param->lock);
}

/**
 * iopf_free_group() - free @group and its partial faults, and put its fault_param reference
 *
 * The owner answers first. A group freed unanswered is a bug of its owner (WARN); it is taken
 * off the pending list so nothing reaches freed memory, and the device gets no answer.
 */
void iopf_free_group(struct iopf_group *group)
{
	struct iommu_fault_param *param = group->fault_param;
	struct iopf_fault *f, *next;

	uiommu_mutex_lock(&param->lock);
	if (WARN_ON(group->pending)) {
		TAILQ_REMOVE(&param->pending, group, pending_node);
		group->pending = false;
	}
	uiommu_mutex_unlock(&param->lock);

	for (f = group->faults; f; f = next) {
		next = f->next;
		if (f != &group->last_fault)
			uiommu_free(f);
	}
	/* Pairs with the reference iommu_report_device_fault() gave the group. */
	iopf_put_dev_fault_param(param);
	if (!group->on_stack)
		uiommu_free(group);
}

/*
 * fault_param->lock held. Build the group of the LAST_PAGE @evt: the partials with its grpid
 * move in (in arrival order, ahead of the last fault), and it becomes pending. The caller gave
 * the group its fault_param reference.
 */
static void iopf_group_init(struct iommu_fault_param *param, struct iopf_group *group,
			    const struct iopf_fault *evt)
{
	struct iopf_fault **pp, *f;

	lockdep_assert_held(&param->lock);
	group->last_fault.fault = evt->fault;
	group->last_fault.next = NULL;
	group->faults = &group->last_fault;
	group->fault_count = 1;
	group->fault_param = param;
	group->dev = param->dev;
	/* The partial list is newest first: prepending each match restores arrival order. */
	for (pp = &param->partial; (f = *pp);) {
		if (f->fault.prm.grpid != evt->fault.prm.grpid) {
			pp = &f->next;
			continue;
		}
		*pp = f->next;
		f->next = group->faults;
		group->faults = f;
		group->fault_count++;
	}
	group->pending = true;
	TAILQ_INSERT_TAIL(&param->pending, group, pending_node);
}

/* ---- reporting ------------------------------------------------------------------------------- */

/* The attach handle whose domain takes faults from @evt, or an ERR_PTR. */
static struct iommu_attach_handle *iopf_find_fault_handler(struct device *dev,
							    const struct iopf_fault *evt)
{
	const struct iommu_fault *fault = &evt->fault;
	struct iommu_group *group = dev->iommu_group;
	struct iommu_attach_handle *handle;

	if (!group)
		return ERR_PTR(-ENODEV);
	if (fault->prm.flags & IOMMU_FAULT_PAGE_REQUEST_PASID_VALID) {
		handle = iommu_attach_handle_get(group, fault->prm.pasid, 0);
		if (IS_ERR(handle) && iopf_dev_ops(dev)->user_pasid_table)
			/* The guest owns the PASID table: its PASIDs all go to the nested RID. */
			handle = iommu_attach_handle_get(group, IOMMU_NO_PASID,
							 IOMMU_DOMAIN_NESTED);
	} else {
		handle = iommu_attach_handle_get(group, IOMMU_NO_PASID, 0);
	}
	if (IS_ERR(handle))
		return handle;
	if (!handle->domain || !handle->domain->iopf_handler)
		return ERR_PTR(-ENODEV);
	return handle;
}

/* fault_param->lock held. Keep the non-last @evt until its group's last request comes. */
static int iopf_report_partial(struct iommu_fault_param *param, const struct iopf_fault *evt)
{
	struct iopf_fault *copy;

	lockdep_assert_held(&param->lock);
	copy = uiommu_zalloc(sizeof(*copy));
	if (!copy)
		return -ENOMEM;
	copy->fault = evt->fault;
	copy->next = param->partial;
	param->partial = copy;
	return 0;
}

/* The report entered in @phase left; wake a drain waiting for the last one. */
static void iopf_report_exit(struct iommu_fault_param *param, unsigned int phase)
{
	uiommu_mutex_lock(&param->lock);
	if (!--param->reporting[phase])
		uiommu_cond_broadcast(&param->drained);
	uiommu_mutex_unlock(&param->lock);
	/* Pairs with iopf_get_dev_fault_param() in iommu_report_device_fault(). */
	iopf_put_dev_fault_param(param);
}

/**
 * iommu_report_device_fault() - a driver reports one page request of @dev
 * @evt: the request; copied, the caller keeps it
 *
 * See the essay at the top. The handler runs in the caller's thread, without our locks.
 *
 * Return: 0 (the request is kept, or its group was handed over or answered FAILURE), -EINVAL
 * when no handler takes it (answered INVALID already), -ENOMEM when a partial could not be kept.
 */
int iommu_report_device_fault(struct device *dev, struct iopf_fault *evt)
{
	struct iommu_attach_handle *handle;
	struct iommu_fault_param *param;
	struct iopf_group abort_group = { .on_stack = true };
	struct iopf_group *group;
	unsigned int phase;
	int rc;

	/* The report is in flight from the lookup on: a drain waits for it from here. */
	param = iopf_get_dev_fault_param(dev);
	if (!param)
		goto err_bad_iopf;
	uiommu_mutex_lock(&param->lock);
	if (param->removed) {
		uiommu_mutex_unlock(&param->lock);
		iopf_put_dev_fault_param(param);
		goto err_bad_iopf;
	}
	phase = param->phase;
	param->reporting[phase]++;
	uiommu_mutex_unlock(&param->lock);

	handle = iopf_find_fault_handler(dev, evt);
	if (IS_ERR(handle)) {
		iopf_report_exit(param, phase);
		goto err_bad_iopf;
	}

	if (!(evt->fault.prm.flags & IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE)) {
		uiommu_mutex_lock(&param->lock);
		rc = iopf_report_partial(param, evt);
		uiommu_mutex_unlock(&param->lock);
		iopf_report_exit(param, phase);
		return rc;
	}

	group = uiommu_zalloc(sizeof(*group));
	if (!group)
		group = &abort_group;
	/* The group's own reference, dropped by iopf_free_group(); ours is still held. */
	atomic_fetch_add_explicit(&param->users, 1, memory_order_relaxed);
	uiommu_mutex_lock(&param->lock);
	iopf_group_init(param, group, evt);
	uiommu_mutex_unlock(&param->lock);

	if (group == &abort_group) {
		/* The device still gets its answer, and the partials of the group go. */
		iopf_group_response(group, IOMMU_PAGE_RESP_FAILURE);
		iopf_free_group(group);
		goto out_exit;
	}

	group->attach_handle = handle;
	/* On success the handler's owner answers and frees the group, possibly already. */
	if (handle->domain->iopf_handler(group)) {
		iopf_group_response(group, IOMMU_PAGE_RESP_FAILURE);
		iopf_free_group(group);
	}
out_exit:
	iopf_report_exit(param, phase);
	return 0;

err_bad_iopf:
	if (evt->fault.type == IOMMU_FAULT_PAGE_REQ)
		iopf_send_response(dev, evt, IOMMU_PAGE_RESP_INVALID);
	return -EINVAL;
}

/* ---- the queue and its worker -------------------------------------------------------------- */

static void *iopf_queue_worker(void *arg)
{
	struct iopf_queue *queue = arg;
	void (*fn)(struct iopf_group *group);
	struct iopf_group *group;

	uiommu_mutex_lock(&queue->work_lock);
	for (;;) {
		while (TAILQ_EMPTY(&queue->work) && !queue->stopping)
			uiommu_cond_wait(&queue->work_cond, &queue->work_lock);
		group = TAILQ_FIRST(&queue->work);
		if (!group)
			break; /* stopping, and nothing left */
		TAILQ_REMOVE(&queue->work, group, work_node);
		fn = group->work_fn;
		group->work_fn = NULL;
		uiommu_mutex_unlock(&queue->work_lock);
		/* The work owns the group now and may free it: no touching it afterwards. */
		fn(group);
		uiommu_mutex_lock(&queue->work_lock);
		queue->work_done++;
		uiommu_cond_broadcast(&queue->work_done_cond);
	}
	uiommu_mutex_unlock(&queue->work_lock);
	return NULL;
}

/**
 * iopf_group_queue_work() - run @fn(@group) on the worker of @group's queue
 *
 * For handlers that must not resolve faults in the reporter's thread (SVA). The worker starts
 * at the first work of a queue.
 *
 * Return: 0; -EBUSY if @group is queued already; -ENOMEM (or the thread's error) when the
 * worker could not start.
 */
int iopf_group_queue_work(struct iopf_group *group, void (*fn)(struct iopf_group *group))
{
	struct iopf_queue *queue = group->fault_param->queue;
	int rc = 0;

	uiommu_mutex_lock(&queue->work_lock);
	if (group->work_fn) {
		rc = -EBUSY;
		goto out_unlock;
	}
	if (!queue->worker_started) {
		if (uiommu_should_fail()) {
			rc = -ENOMEM;
			goto out_unlock;
		}
		rc = -uiommu_thread_create(&queue->worker, NULL, iopf_queue_worker, queue);
		if (rc)
			goto out_unlock;
		queue->worker_started = true;
	}
	group->work_fn = fn;
	TAILQ_INSERT_TAIL(&queue->work, group, work_node);
	queue->work_queued++;
	uiommu_cond_signal(&queue->work_cond);
out_unlock:
	uiommu_mutex_unlock(&queue->work_lock);
	return rc;
}

/* Waits for every work queued on @queue before the call. Not from the worker itself. */
static void iopf_queue_flush_work(struct iopf_queue *queue)
{
	unsigned long target;

	uiommu_mutex_lock(&queue->work_lock);
	WARN_ON(queue->worker_started && pthread_equal(pthread_self(), queue->worker));
	target = queue->work_queued;
	while (queue->work_done < target)
		uiommu_cond_wait(&queue->work_done_cond, &queue->work_lock);
	uiommu_mutex_unlock(&queue->work_lock);
}

/* fault_param->lock held: waits for a drain to progress. */
static void iopf_wait_drained(struct iommu_fault_param *param)
{
	lockdep_assert_held(&param->lock);
	uiommu_cond_wait(&param->drained, &param->lock);
}

/* Waits for the reports of @param's device that are in flight now (not for later ones). */
static void iopf_drain_param(struct iommu_fault_param *param)
{
	unsigned int old;

	uiommu_mutex_lock(&param->lock);
	while (param->draining)
		iopf_wait_drained(param);
	param->draining = true;
	old = param->phase;
	param->phase ^= 1;
	while (param->reporting[old])
		iopf_wait_drained(param);
	param->draining = false;
	uiommu_cond_broadcast(&param->drained);
	uiommu_mutex_unlock(&param->lock);
}

/**
 * iopf_drain_dev() - wait until @dev has no report in flight
 *
 * What a kernel driver gets from draining its page request queue and IRQ thread. iommufd
 * calls it after the core detached (or replaced) a fault-capable domain and retired the attach
 * handle, before it answers the groups tagged with that handle: a reporter that looked the old
 * handle up has handed its group over by then. Nothing to do when @dev has no fault data.
 */
void iopf_drain_dev(struct device *dev)
{
	struct iommu_fault_param *param = iopf_get_dev_fault_param(dev);

	if (!param)
		return;
	iopf_drain_param(param);
	iopf_put_dev_fault_param(param);
}

/**
 * iopf_queue_flush_dev() - wait until @dev has no report in flight and its queue's worker
 * has finished what was queued before the call
 *
 * It does not touch groups already handed to a handler that keeps them (iommufd's deliver
 * list). Return: 0, or -ENODEV (with a WARN) when @dev has no fault data: flushing a device
 * after its removal is a driver bug.
 */
int iopf_queue_flush_dev(struct device *dev)
{
	struct iommu_fault_param *param = iopf_get_dev_fault_param(dev);

	if (WARN_ON(!param))
		return -ENODEV;
	iopf_drain_param(param);
	iopf_queue_flush_work(param->queue);
	iopf_put_dev_fault_param(param);
	return 0;
}

/**
 * iopf_queue_discard_partial() - drop every partial fault of every device on @queue
 *
 * For a driver whose hardware queue overflowed: requests were lost, so the groups they began
 * will never complete. Return: 0, or -EINVAL for a NULL @queue.
 */
int iopf_queue_discard_partial(struct iopf_queue *queue)
{
	struct iommu_fault_param *param;
	struct iopf_fault *f, *next;

	if (!queue)
		return -EINVAL;
	uiommu_mutex_lock(&queue->lock);
	LIST_FOREACH(param, &queue->devices, queue_node) {
		uiommu_mutex_lock(&param->lock);
		for (f = param->partial; f; f = next) {
			next = f->next;
			uiommu_free(f);
		}
		param->partial = NULL;
		uiommu_mutex_unlock(&param->lock);
	}
	uiommu_mutex_unlock(&queue->lock);
	return 0;
}

/**
 * iopf_queue_add_device() - let @dev report page faults through @queue
 *
 * Return: 0; -ENODEV when the driver has no page_response (it could not answer) or @dev is
 * not probed; -EBUSY when @dev already has fault data; -ENOMEM.
 */
int iopf_queue_add_device(struct iopf_queue *queue, struct device *dev)
{
	struct dev_iommu *dev_iommu = dev->iommu_data;
	struct iommu_fault_param *param;
	int rc = 0;

	if (!dev_iommu || !dev->iommu || !iopf_dev_ops(dev)->page_response)
		return -ENODEV;

	uiommu_mutex_lock(&queue->lock);
	uiommu_mutex_lock(&dev_iommu->lock);
	if (dev_iommu->fault_param) {
		rc = -EBUSY;
		goto out_unlock;
	}
	param = uiommu_zalloc(sizeof(*param));
	if (!param) {
		rc = -ENOMEM;
		goto out_unlock;
	}
	uiommu_mutex_init(&param->lock);
	uiommu_cond_init(&param->drained);
	TAILQ_INIT(&param->pending);
	atomic_init(&param->users, 1); /* the queue's: put by iopf_queue_remove_device() */
	param->dev = dev;
	param->queue = queue;
	LIST_INSERT_HEAD(&queue->devices, param, queue_node);
	/*
	 * Release (rcu_assign_pointer, in C11 so ThreadSanitizer sees it): a reporter that sees
	 * the pointer sees the initialised structure.
	 */
	__atomic_store_n(&dev_iommu->fault_param, param, __ATOMIC_RELEASE);
out_unlock:
	uiommu_mutex_unlock(&dev_iommu->lock);
	uiommu_mutex_unlock(&queue->lock);
	return rc;
}

/**
 * iopf_queue_remove_device() - @dev stops reporting page faults through @queue
 *
 * The driver order (§6.5): stop the IOMMU's page request reception for @dev and drain its
 * hardware queue, detach every fault-capable domain (their owners answer what they hold), call
 * this, then disable PRI in the device. Here: no new report enters; in-flight reports and
 * queued work finish; the partials are discarded; every group still pending is answered
 * INVALID and freed; the fault data is unpublished and the queue's reference dropped. A WARN,
 * and nothing done, if @dev is not on @queue.
 */
void iopf_queue_remove_device(struct iopf_queue *queue, struct device *dev)
{
	struct dev_iommu *dev_iommu = dev->iommu_data;
	struct iommu_fault_param *param;
	struct iopf_group_list answered = TAILQ_HEAD_INITIALIZER(answered);
	struct iopf_group *group;
	struct iopf_fault *f, *next;

	uiommu_mutex_lock(&queue->lock);
	uiommu_mutex_lock(&dev_iommu->lock);
	param = dev_iommu->fault_param;
	if (WARN_ON(!param || param->queue != queue))
		goto out_unlock;

	uiommu_mutex_lock(&param->lock);
	param->removed = true;
	while (param->reporting[0] || param->reporting[1])
		iopf_wait_drained(param);
	uiommu_mutex_unlock(&param->lock);
	/* Work-queued handlers (SVA) of this device own their groups until they return. */
	iopf_queue_flush_work(queue);

	uiommu_mutex_lock(&param->lock);
	for (f = param->partial; f; f = next) {
		next = f->next;
		uiommu_free(f);
	}
	param->partial = NULL;
	while ((group = TAILQ_FIRST(&param->pending))) {
		iopf_send_response(dev, &group->last_fault, IOMMU_PAGE_RESP_INVALID);
		TAILQ_REMOVE(&param->pending, group, pending_node);
		group->pending = false;
		TAILQ_INSERT_TAIL(&answered, group, pending_node);
	}
	uiommu_mutex_unlock(&param->lock);
	/* Each drops a group reference; the queue's keeps the count above zero. */
	while ((group = TAILQ_FIRST(&answered))) {
		TAILQ_REMOVE(&answered, group, pending_node);
		iopf_free_group(group);
	}

	LIST_REMOVE(param, queue_node);
	__atomic_store_n(&dev_iommu->fault_param, NULL, __ATOMIC_RELEASE);
	/* Pairs with the initial reference of iopf_queue_add_device(). */
	iopf_put_dev_fault_param(param);
out_unlock:
	uiommu_mutex_unlock(&dev_iommu->lock);
	uiommu_mutex_unlock(&queue->lock);
}

/**
 * iopf_queue_alloc() - a fault queue for a driver; @name is for debugging
 * Return: the queue, or NULL when out of memory (the kernel's convention for this one).
 */
struct iopf_queue *iopf_queue_alloc(const char *name)
{
	struct iopf_queue *queue = uiommu_zalloc(sizeof(*queue));

	if (!queue)
		return NULL;
	uiommu_mutex_init(&queue->lock);
	LIST_INIT(&queue->devices);
	snprintf(queue->name, sizeof(queue->name), "%s", name ? name : "");
	uiommu_mutex_init(&queue->work_lock);
	uiommu_cond_init(&queue->work_cond);
	uiommu_cond_init(&queue->work_done_cond);
	TAILQ_INIT(&queue->work);
	return queue;
}

/**
 * iopf_queue_free() - remove every device still on @queue, stop its worker, wait for the
 * deferred frees of fault data, and free it. Not from an RCU read-side section or callback.
 */
void iopf_queue_free(struct iopf_queue *queue)
{
	struct iommu_fault_param *param;

	if (!queue)
		return;
	for (;;) {
		uiommu_mutex_lock(&queue->lock);
		param = LIST_FIRST(&queue->devices);
		uiommu_mutex_unlock(&queue->lock);
		if (!param)
			break;
		iopf_queue_remove_device(queue, param->dev);
	}

	uiommu_mutex_lock(&queue->work_lock);
	queue->stopping = true;
	uiommu_cond_signal(&queue->work_cond);
	uiommu_mutex_unlock(&queue->work_lock);
	if (queue->worker_started)
		pthread_join(queue->worker, NULL);

	/*
	 * The fault data of the devices that left is freed after a grace period, without the
	 * queue, so there is nothing to wait for here. (An rcu_barrier() here cost every context
	 * close with a mock device 10 ms, liburcu's callback batching delay; leak checks wait
	 * for deferred frees themselves, as uiommu_stats_get() does.)
	 */
	uiommu_cond_destroy(&queue->work_done_cond);
	uiommu_cond_destroy(&queue->work_cond);
	uiommu_mutex_destroy(&queue->work_lock);
	uiommu_mutex_destroy(&queue->lock);
	uiommu_free(queue);
}
