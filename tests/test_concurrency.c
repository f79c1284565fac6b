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

/*
 * The RCU dispatch (main.c): IOVA_RANGES and DESTROY of a missing ID run with no reference on
 * the file and no hold on the IOAS. Readers hammer them while one thread flips the IOAS's
 * alignment (which replaces the snapshot they read), destroys and re-allocates the IOAS, and
 * closes the fd under them for a fresh one. Every answer must be one the ABI allows at some
 * instant: one range [0, max] with the alignment 1 or a page, ENOENT for an IOAS that is gone,
 * EBADF for a closed fd. ThreadSanitizer checks the grace periods that make it safe.
 */
static _Atomic int rcu_fd;
static atomic_long rcu_answers;

static void *rcu_reader(void *p)
{
	struct iommu_iova_range r[2];

	(void)p;
	while (stress_running()) {
		struct iommu_ioas_iova_ranges cmd = {
			.size = sizeof(cmd), .ioas_id = 1, .num_iovas = 2,
			.allowed_iovas = (uintptr_t)r,
		};
		struct iommu_destroy d = { .size = sizeof(d), .id = 1000 };
		int fd = atomic_load(&rcu_fd);

		if (!uiommu_ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &cmd)) {
			if (cmd.num_iovas != 1 || r[0].start || r[0].last != UINT64_MAX ||
			    (cmd.out_iova_alignment != 1 && cmd.out_iova_alignment != PS)) {
				fprintf(stderr, "# ranges: %u ranges, alignment %llu\n",
					cmd.num_iovas, (unsigned long long)cmd.out_iova_alignment);
				atomic_fetch_add(&bad, 1);
			}
			atomic_fetch_add(&rcu_answers, 1);
		} else {
			check("ranges", -1, errno, (const int[]){ EBADF, ENOENT, 0 });
		}
		if (!uiommu_ioctl(fd, IOMMU_DESTROY, &d))
			atomic_fetch_add(&bad, 1); /* nothing has that ID */
		else
			check("destroy missing", -1, errno, (const int[]){ EBADF, ENOENT, 0 });
	}
	return NULL;
}

static void *rcu_changer(void *p)
{
	unsigned int seed = 17, round = 0;

	(void)p;
	while (stress_running()) {
		int fd = atomic_load(&rcu_fd);
		struct iommu_option opt = {
			.size = sizeof(opt), .option_id = IOMMU_OPTION_HUGE_PAGES,
			.op = IOMMU_OPTION_OP_SET, .object_id = 1, .val64 = round++ & 1,
		};
		struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
		struct iommu_destroy d = { .size = sizeof(d), .id = 1 };

		switch (rand_r(&seed) % 8) {
		case 0:
			/* A fresh context under the readers' feet; the old one's last close. */
			atomic_store(&rcu_fd, uiommu_open(O_RDWR));
			CHECK("alloc", uiommu_ioctl(atomic_load(&rcu_fd), IOMMU_IOAS_ALLOC, &alloc),
			      EBADF);
			CHECK("close", uiommu_close(fd), EBADF);
			break;
		case 1:
			/* EBUSY: a reader's locked IOVA_RANGES (no snapshot yet) holds it. */
			if (uiommu_ioctl(fd, IOMMU_DESTROY, &d)) {
				check("destroy", -1, errno, (const int[]){ EBUSY, 0 });
				break;
			}
			CHECK("alloc", uiommu_ioctl(fd, IOMMU_IOAS_ALLOC, &alloc), EBADF);
			break;
		default:
			CHECK("option", uiommu_ioctl(fd, IOMMU_OPTION, &opt), ENOENT);
			break;
		}
	}
	return NULL;
}

TEST(rcu_dispatch_races_close_and_destroy)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct stress_worker w[] = {
		{ rcu_reader, NULL }, { rcu_reader, NULL }, { rcu_changer, NULL },
	};
	struct uiommu_stats st;

	atomic_store(&bad, 0);
	atomic_store(&rcu_fd, uiommu_open(O_RDWR));
	ASSERT_TRUE(atomic_load(&rcu_fd) >= 0);
	ASSERT_EQ(0, uiommu_ioctl(atomic_load(&rcu_fd), IOMMU_IOAS_ALLOC, &alloc));
	ASSERT_EQ(1, alloc.out_ioas_id);
	ASSERT_EQ(0, stress_run(w, 3, stress_seconds(2.0)));
	ASSERT_EQ(0, uiommu_close(atomic_load(&rcu_fd)));
	printf("# %ld IOVA_RANGES answers\n", atomic_load(&rcu_answers));
	ASSERT_EQ(0, atomic_load(&bad));
	ASSERT_TRUE(atomic_load(&rcu_answers) > 100);
	ASSERT_EQ(0, uiommu_stats_get(&st));
	ASSERT_EQ(0, st.contexts);
	ASSERT_EQ(0, st.objects);
}

TEST_HARNESS_MAIN
