/* SPDX-License-Identifier: MIT */
/*
 * The stress scaffold: runs a set of worker threads for a bounded time.
 *
 *   struct stress_worker w[] = { { writer, &a }, { reader, NULL } };
 *   ASSERT_EQ(0, stress_run(w, 2, stress_seconds(3.0)));
 *
 * stress_run() starts every worker, releases them together once all exist (so no worker runs
 * alone through its budget before the others are scheduled), lets them run for the given time,
 * then asks them to stop and joins them all. Workers loop `while (stress_running())` and may
 * return early. The time is how long the race runs, never a synchronisation: the checks after
 * stress_run() hold whatever the workers managed to do in it.
 *
 * stress_run_work() bounds by work instead of time: its first workers do a fixed amount each
 * and return; the others (responders, churners) race them until the last one has, then stop.
 *
 * UIOMMU_STRESS_SECONDS overrides the default time of every stress test (CI machines are small,
 * sanitizer builds slow).
 */
#ifndef UIOMMU_TESTS_STRESS_H
#define UIOMMU_TESTS_STRESS_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#define STRESS_MAX_WORKERS 32

struct stress_worker {
	void *(*fn)(void *arg);
	void *arg;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool go;            /* every worker exists: start; under lock */
	atomic_bool stop;   /* the time is up */
	const struct stress_worker *workers;
} stress = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

/* The workers' loop condition. */
__attribute__((unused)) static bool stress_running(void)
{
	return !atomic_load_explicit(&stress.stop, memory_order_acquire);
}

/* UIOMMU_STRESS_SECONDS if set, else def. */
__attribute__((unused)) static double stress_seconds(double def)
{
	const char *env = getenv("UIOMMU_STRESS_SECONDS");

	return env && atof(env) > 0 ? atof(env) : def;
}

static void *stress_start(void *arg)
{
	const struct stress_worker *w = arg;

	pthread_mutex_lock(&stress.lock);
	while (!stress.go)
		pthread_cond_wait(&stress.cond, &stress.lock);
	pthread_mutex_unlock(&stress.lock);
	return w->fn(w->arg);
}

/* Starts w[0..n) held at the gate; returns how many threads exist, *ret the first error. */
static unsigned int stress_spawn(pthread_t *th, const struct stress_worker *w, unsigned int n,
				 int *ret)
{
	unsigned int started;

	*ret = 0;
	atomic_store(&stress.stop, false);
	stress.go = false;
	for (started = 0; started < n; started++) {
		*ret = -pthread_create(&th[started], NULL, stress_start, (void *)&w[started]);
		if (*ret) {
			atomic_store(&stress.stop, true);
			break;
		}
	}
	pthread_mutex_lock(&stress.lock);
	stress.go = true;
	pthread_cond_broadcast(&stress.cond);
	pthread_mutex_unlock(&stress.lock);
	return started;
}

/*
 * Runs n workers for `seconds`, then stops and joins them: 0, or
 * -errno if a thread could not be created (the ones that were are still stopped and joined).
 * A worker that returns early leaves the others running until the time is up.
 */
__attribute__((unused)) static int stress_run(const struct stress_worker *w, unsigned int n,
					      double seconds)
{
	pthread_t th[STRESS_MAX_WORKERS];
	struct timespec ts = {
		.tv_sec = (time_t)seconds,
		.tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9),
	};
	unsigned int started;
	int ret;

	if (n > STRESS_MAX_WORKERS)
		return -E2BIG;
	started = stress_spawn(th, w, n, &ret);
	if (!ret)
		while (nanosleep(&ts, &ts) && errno == EINTR)
			;
	atomic_store_explicit(&stress.stop, true, memory_order_release);
	for (unsigned int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	return ret;
}

/*
 * Runs w[0..n): once the first nwork have returned (each a bounded amount of work), stops the
 * others and joins them: 0, or -errno as stress_run().
 */
__attribute__((unused)) static int stress_run_work(const struct stress_worker *w, unsigned int n,
						   unsigned int nwork)
{
	pthread_t th[STRESS_MAX_WORKERS];
	unsigned int started, i;
	int ret;

	if (n > STRESS_MAX_WORKERS || nwork > n)
		return -E2BIG;
	started = stress_spawn(th, w, n, &ret);
	for (i = 0; i < started && i < nwork; i++)
		pthread_join(th[i], NULL);
	atomic_store_explicit(&stress.stop, true, memory_order_release);
	for (; i < started; i++)
		pthread_join(th[i], NULL);
	return ret;
}

#endif
