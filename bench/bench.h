/* SPDX-License-Identifier: MIT */
/*
 * The timing harness the benchmarks share (header only: each benchmark is one program).
 *
 * A case is a function that runs its operation @iters times. bench_run() warms every case up
 * once, then runs BENCH_REPS rounds; each round times every case once, in turn, so that a slow
 * phase of the machine (another tenant of the VM, a frequency change) hits all cases of a
 * round alike instead of one case's every sample. A case's figure is the median of its
 * BENCH_REPS samples, each sample being the elapsed CLOCK_MONOTONIC time of one run divided by
 * its iteration count.
 */
#ifndef UIOMMU_BENCH_H
#define UIOMMU_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_REPS 5

struct bench_case {
	const char *name;
	void (*run)(void *ctx, unsigned long iters);
	void *ctx;
	unsigned long iters;
	/* Results: ns per operation. */
	double sample[BENCH_REPS];
	double median, min, max;
};

static inline double bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static inline double bench_time_one(struct bench_case *c, unsigned long iters)
{
	double t0 = bench_now_ns();

	c->run(c->ctx, iters);
	return (bench_now_ns() - t0) / (double)iters;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Warm-up, then BENCH_REPS interleaved rounds; fills each case's median, min and max. */
static inline void bench_run(struct bench_case *cases, unsigned int n)
{
	unsigned int i, r;

	for (i = 0; i != n; i++)
		bench_time_one(&cases[i], cases[i].iters / 4 ? cases[i].iters / 4 : 1);
	for (r = 0; r != BENCH_REPS; r++)
		for (i = 0; i != n; i++)
			cases[i].sample[r] = bench_time_one(&cases[i], cases[i].iters);
	for (i = 0; i != n; i++) {
		double s[BENCH_REPS];

		memcpy(s, cases[i].sample, sizeof(s));
		qsort(s, BENCH_REPS, sizeof(s[0]), bench_cmp_double);
		cases[i].min = s[0];
		cases[i].median = s[BENCH_REPS / 2];
		cases[i].max = s[BENCH_REPS - 1];
	}
}

static inline void bench_print_header(const char *title, int quick)
{
	printf("%s%s\n", title, quick ? " (--quick: small iteration counts, figures are rough)" : "");
	printf("  median of %d runs after a warm-up; CLOCK_MONOTONIC\n\n", BENCH_REPS);
	printf("  %-58s %11s  %21s  %9s\n", "case", "ns/op", "min .. max", "iters/run");
}

static inline void bench_print_case(const struct bench_case *c)
{
	printf("  %-58s %11.1f  %9.1f .. %9.1f  %9lu\n", c->name, c->median, c->min, c->max,
	       c->iters);
}

/* Prints @ratio against a goal of at most (@at_least 0) or at least @target; 0: no goal. */
static inline int bench_print_goal(const char *what, double ratio, double target, int at_least)
{
	int met = at_least ? ratio >= target : ratio <= target;

	if (target > 0)
		printf("  %-58s %8.2fx   target %s %.2gx: %s\n", what, ratio, at_least ? ">=" : "<=",
		       target, met ? "met" : "MISSED");
	else
		printf("  %-58s %8.2fx\n", what, ratio);
	return met;
}

/* Prints num/den against a "at most @target" goal; returns 1 if the target is met. */
static inline int bench_print_ratio(const char *what, const struct bench_case *num,
				    const struct bench_case *den, double target)
{
	return bench_print_goal(what, num->median / den->median, target, 0);
}

/* Prints base/dev, a throughput ratio (1.0: as fast as the baseline), against "at least". */
static inline int bench_print_ratio_min(const char *what, const struct bench_case *base,
					const struct bench_case *dev, double target)
{
	return bench_print_goal(what, base->median / dev->median, target, 1);
}

/* bench_print_header(), bench_run() and a line per case: one table. */
static inline void bench_table(const char *title, struct bench_case *cases, unsigned int n,
			       int quick)
{
	bench_print_header(title, quick);
	bench_run(cases, n);
	for (unsigned int i = 0; i != n; i++)
		bench_print_case(&cases[i]);
}

static inline int bench_parse_args(int argc, char **argv, const char *usage)
{
	int quick = 0, i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			quick = 1;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			printf("%s", usage);
			exit(0);
		} else {
			fprintf(stderr, "%s: unknown argument %s\n%s", argv[0], argv[i], usage);
			exit(2);
		}
	}
	return quick;
}

#endif
