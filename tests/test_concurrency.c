// SPDX-License-Identifier: MIT
/*
 * Concurrency: four threads issue random IOAS_ALLOC, MAP, UNMAP, COPY, IOVA_RANGES, DESTROY and
 * close/reopen on shared IDs and shared fds for a bounded time (UIOMMU_STRESS_SECONDS, default
 * 3). Every call must return success or one of the errnos the ABI gives for a lost race (an ID
 * destroyed under us, a range already taken or gone, an object busy), never anything else and
 * never crash. At the end every context is closed, and the library must be back to no contexts,
 * no objects, no pinned pages and no live allocations. Built and run under ThreadSanitizer by
 * the sanitizer job, which must report nothing.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "harness.h"
#include "stress.h"
#include "uiommu/iommufd.h"
#include "uiommu/uiommu.h"

#define NTHREADS 4
#define NSLOTS 2
#define PS 4096ull

static _Atomic int fds[NSLOTS];
static atomic_int bad;
static atomic_long ops;
static pthread_mutex_t reopen_lock = PTHREAD_MUTEX_INITIALIZER;
static char buffer[256 * 4096] __attribute__((aligned(4096)));

/* A call lost a race in an allowed way, or it is a bug. */
static void check(const char *what, int rc, int err, const int *allowed)
{
	int i;

	atomic_fetch_add(&ops, 1);
	if (rc >= 0)
		return;
	for (i = 0; allowed[i]; i++)
		if (err == allowed[i])
			return;
	fprintf(stderr, "# %s: unexpected errno %d (%s)\n", what, err, strerror(err));
	atomic_fetch_add(&bad, 1);
}

#define CHECK(what, call, ...)                                                         \
	do {                                                                           \
		static const int _allowed[] = { __VA_ARGS__, 0 };                      \
		int _rc = (call);                                                      \
		check(what, _rc, errno, _allowed);                                     \
	} while (0)

struct stress_arg {
	unsigned int seed;
};

static void *stress_thread(void *p)
{
	struct stress_arg *arg = p;
	unsigned int seed = arg->seed;

	while (stress_running()) {
		int slot = rand_r(&seed) % NSLOTS;
		int fd = atomic_load(&fds[slot]);
		uint32_t id = 1 + rand_r(&seed) % 6;
		uint64_t iova = (uint64_t)(rand_r(&seed) % 64) * PS;
		uint64_t len = (uint64_t)(1 + rand_r(&seed) % 4) * PS;

		switch (rand_r(&seed) % 9) {
		case 0: {
			struct iommu_ioas_alloc cmd = { .size = sizeof(cmd) };

			/* Mostly refill the low IDs the others race on; few pile up beyond them. */
			if (rand_r(&seed) % 4)
				break;
			CHECK("alloc", uiommu_ioctl(fd, IOMMU_IOAS_ALLOC, &cmd), EBADF);
			break;
		}
		case 1:
		case 2: {
			struct iommu_ioas_map cmd = {
				.size = sizeof(cmd),
				.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE |
					 (rand_r(&seed) % 2 ? IOMMU_IOAS_MAP_FIXED_IOVA : 0),
				.ioas_id = id,
				.user_va = (uintptr_t)buffer + (rand_r(&seed) % 128) * PS,
				.length = len,
				.iova = iova,
			};

			CHECK("map", uiommu_ioctl(fd, IOMMU_IOAS_MAP, &cmd), EBADF, ENOENT, EEXIST);
			break;
		}
		case 3: {
			struct iommu_ioas_unmap cmd = {
				.size = sizeof(cmd), .ioas_id = id, .iova = iova, .length = len,
			};

			if (rand_r(&seed) % 8 == 0) {
				cmd.iova = 0;
				cmd.length = UINT64_MAX;
			}
			CHECK("unmap", uiommu_ioctl(fd, IOMMU_IOAS_UNMAP, &cmd), EBADF, ENOENT);
			break;
		}
		case 4: {
			struct iommu_ioas_copy cmd = {
				.size = sizeof(cmd),
				.flags = IOMMU_IOAS_MAP_READABLE,
				.dst_ioas_id = 1 + rand_r(&seed) % 6,
				.src_ioas_id = id,
				.length = PS,
				.src_iova = iova,
			};

			CHECK("copy", uiommu_ioctl(fd, IOMMU_IOAS_COPY, &cmd), EBADF, ENOENT, EEXIST,
			      ENOSPC);
			break;
		}
		case 5: {
			struct iommu_iova_range r[4];
			struct iommu_ioas_iova_ranges cmd = {
				.size = sizeof(cmd), .ioas_id = id, .num_iovas = 4,
				.allowed_iovas = (uintptr_t)r,
			};

			CHECK("ranges", uiommu_ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &cmd), EBADF, ENOENT);
			break;
		}
		case 6:
		case 7: {
			struct iommu_destroy cmd = { .size = sizeof(cmd), .id = id };

			/* EBUSY: another thread is inside an ioctl on it right now. */
			CHECK("destroy", uiommu_ioctl(fd, IOMMU_DESTROY, &cmd), EBADF, ENOENT, EBUSY);
			break;
		}
		case 8:
			if (rand_r(&seed) % 16)
				break;
			/* Close a shared fd under the others' feet and put a fresh one in its place. */
			pthread_mutex_lock(&reopen_lock);
			fd = atomic_load(&fds[slot]);
			atomic_store(&fds[slot], uiommu_open(O_RDWR));
			CHECK("close", uiommu_close(fd), EBADF);
			pthread_mutex_unlock(&reopen_lock);
			break;
		}
	}
	return NULL;
}

TEST(threads_race_on_shared_ids)
{
	struct stress_arg args[NTHREADS];
	struct stress_worker w[NTHREADS];
	double seconds = stress_seconds(3.0);
	struct uiommu_stats st;
	int i;

	for (i = 0; i < NSLOTS; i++) {
		int fd = uiommu_open(O_RDWR);

		ASSERT_TRUE(fd >= 0);
		atomic_store(&fds[i], fd);
	}
	for (i = 0; i < NTHREADS; i++) {
		args[i].seed = 7919u * (unsigned int)i + 1;
		w[i] = (struct stress_worker){ stress_thread, &args[i] };
	}
	ASSERT_EQ(0, stress_run(w, NTHREADS, seconds));
	for (i = 0; i < NSLOTS; i++)
		ASSERT_EQ(0, uiommu_close(atomic_load(&fds[i])));

	printf("# %ld operations in %g s on %d threads\n", atomic_load(&ops), seconds, NTHREADS);
	ASSERT_EQ(0, atomic_load(&bad));
	ASSERT_TRUE(atomic_load(&ops) > 1000);
	ASSERT_EQ(0, uiommu_stats_get(&st));
	ASSERT_EQ(0, st.contexts);
	ASSERT_EQ(0, st.objects);
	ASSERT_EQ(0, st.pinned_pages);
}

TEST_HARNESS_MAIN
