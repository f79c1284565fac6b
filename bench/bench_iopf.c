// SPDX-License-Identifier: MIT
/*
 * The I/O page fault report path's fault-data lookup: rcu_read_lock(), the pointer, an
 * increment only if the count is not zero, and the put (iopf_dev_fault_param_probe()). Each
 * device has its own fault data, so two threads faulting on two devices share nothing and the
 * aggregate throughput should double (target: two threads at least 1.8x one thread, i.e. the
 * wall time per op at most 1/1.8 of one thread's). The same loop behind one global mutex, the
 * design the report path must not have, is measured in the same run for comparison.
 *
 * Figures are wall time per lookup: with two threads the run's iterations are split between
 * them, so half the one-thread figure means twice the throughput.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

#include "bench.h"
#include "iommu/iommu.h"
#include "lib/compiler.h"

static void bench_page_response(struct device *dev, struct iopf_fault *evt,
				struct iommu_page_response *msg)
{
	(void)dev;
	(void)evt;
	(void)msg;
}

static struct iommu_domain *bench_alloc_paging(struct device *dev)
{
	(void)dev;
	return NULL;
}

static struct iommu_device *bench_probe(struct device *dev)
{
	return dev->iommu;
}

static void bench_release(struct device *dev)
{
	(void)dev;
}

static struct iommu_group *bench_device_group(struct device *dev)
{
	(void)dev;
	return iommu_group_alloc();
}

static int bench_attach(struct iommu_domain *domain, struct device *dev, struct iommu_domain *old)
{
	(void)domain;
	(void)dev;
	(void)old;
	return 0;
}

static const struct iommu_domain_ops bench_static_ops = { .attach_dev = bench_attach };
static struct iommu_domain bench_identity = { .type = IOMMU_DOMAIN_IDENTITY,
					      .ops = &bench_static_ops };
static struct iommu_domain bench_blocked = { .type = IOMMU_DOMAIN_BLOCKED,
					     .ops = &bench_static_ops };

static int bench_def_domain_type(struct device *dev)
{
	(void)dev;
	return IOMMU_DOMAIN_IDENTITY;
}

static const struct iommu_ops bench_ops = {
	.name = "bench",
	.domain_alloc_paging = bench_alloc_paging,
	.probe_device = bench_probe,
	.release_device = bench_release,
	.device_group = bench_device_group,
	.def_domain_type = bench_def_domain_type,
	.page_response = bench_page_response,
	.identity_domain = &bench_identity,
	.blocked_domain = &bench_blocked,
};

static struct iommu_device bench_iommu = { .name = "bench-iopf" };
static struct device *devs[2];
static pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;

struct lookup_thread {
	pthread_t t;
	struct device *dev;
	unsigned long iters;
	bool global_mutex;
};

static void *lookup_loop(void *arg)
{
	struct lookup_thread *t = arg;
	unsigned long i;

	for (i = 0; i < t->iters; i++) {
		bool ok;

		if (t->global_mutex) {
			pthread_mutex_lock(&global_lock);
			ok = iopf_dev_fault_param_probe(t->dev);
			pthread_mutex_unlock(&global_lock);
		} else {
			ok = iopf_dev_fault_param_probe(t->dev);
		}
		if (!ok)
			abort();
	}
	return NULL;
}

struct lookup_case {
	unsigned int threads;
	bool global_mutex;
};

static void run_lookup(void *ctx, unsigned long iters)
{
	struct lookup_case *c = ctx;
	struct lookup_thread t[2];
	unsigned int i;

	if (c->threads == 1) {
		t[0] = (struct lookup_thread){ .dev = devs[0], .iters = iters,
					       .global_mutex = c->global_mutex };
		lookup_loop(&t[0]);
		return;
	}
	for (i = 0; i < 2; i++) {
		t[i] = (struct lookup_thread){ .dev = devs[i], .iters = iters / 2,
					       .global_mutex = c->global_mutex };
		if (pthread_create(&t[i].t, NULL, lookup_loop, &t[i]))
			die("pthread_create");
	}
	for (i = 0; i < 2; i++)
		pthread_join(t[i].t, NULL);
}

static const char usage[] =
	"bench_iopf [--quick]: the fault-data lookup of the page fault report path, one and two\n"
	"threads (two devices), against the same behind one global mutex.\n";

int main(int argc, char **argv)
{
	int quick = bench_parse_args(argc, argv, usage);
	unsigned long iters = quick ? 200000 : 4000000;
	struct lookup_case lc[4] = { { 1, false }, { 2, false }, { 1, true }, { 2, true } };
	struct bench_case cases[4] = {
		{ .name = "fault-data lookup, 1 thread", .run = run_lookup, .ctx = &lc[0] },
		{ .name = "fault-data lookup, 2 threads (2 devices)", .run = run_lookup,
		  .ctx = &lc[1] },
		{ .name = "global mutex + lookup, 1 thread", .run = run_lookup, .ctx = &lc[2] },
		{ .name = "global mutex + lookup, 2 threads (2 devices)", .run = run_lookup,
		  .ctx = &lc[3] },
	};
	struct iopf_queue *queue;
	unsigned int i;
	int met;

	if (iommu_device_register(&bench_iommu, &bench_ops))
		die("iommu_device_register");
	queue = iopf_queue_alloc("bench");
	if (!queue)
		die("iopf_queue_alloc");
	for (i = 0; i < 2; i++) {
		devs[i] = device_alloc(i ? "0000:00:02.0" : "0000:00:01.0");
		devs[i]->iommu = &bench_iommu;
		devs[i]->pri = true;
		if (iommu_probe_device(devs[i]) || iopf_queue_add_device(queue, devs[i]))
			die("probe");
	}
	for (i = 0; i < 4; i++)
		cases[i].iters = iters;

	bench_print_header("I/O page faults: the report path's fault-data lookup", quick);
	bench_run(cases, 4);
	for (i = 0; i < 4; i++)
		bench_print_case(&cases[i]);
	printf("\n");
	/* Wall time per op, 2 threads / 1 thread: at most 1/1.8 means at least 1.8x throughput. */
	met = bench_print_ratio("lookup: 2 threads / 1 thread (time per op)", &cases[1], &cases[0],
				1 / 1.8);
	printf("  %-58s %8.2fx\n", "lookup: aggregate throughput, 2 threads vs 1",
	       cases[0].median / cases[1].median);
	printf("  %-58s %8.2fx\n", "global mutex: aggregate throughput, 2 threads vs 1",
	       cases[2].median / cases[3].median);
	bench_print_ratio("global mutex / lookup, 2 threads (time per op)", &cases[3], &cases[1], 0);

	for (i = 0; i < 2; i++) {
		iopf_queue_remove_device(queue, devs[i]);
		iommu_release_device(devs[i]);
		device_put(devs[i]);
	}
	iopf_queue_free(queue);
	if (!met)
		printf("  (two threads share two CPUs with whatever else runs: see the figures)\n");
	return 0;
}
