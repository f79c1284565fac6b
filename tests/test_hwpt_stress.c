// SPDX-License-Identifier: MIT
/*
 * Devices and page tables under threads: four threads, for a bounded time
 * (UIOMMU_STRESS_SECONDS, default 3), create mock devices (MOCK_DOMAIN), move them between
 * IOASes and HWPTs (MOCK_DOMAIN_REPLACE), allocate HWPTs (HWPT_ALLOC), destroy devices, HWPTs
 * and IOASes, and MAP/UNMAP in IOASes that have domains attached (eager pinning, page-table
 * fill), all on one context and on shared IDs. Every call must succeed or fail with an errno
 * the ABI gives for a lost race (the table below); at the end the context is closed and the
 * library must hold no context, no object and no pinned page, and MD_CHECK_REFS must read 0
 * on the whole buffer. Built and run under ThreadSanitizer by the sanitizer job, which must
 * report nothing.
 *
 * IDs: each thread mostly picks the ID of an object recently created by any thread (one shared
 * list per type), sometimes any ID from 1 to MAX_ID. IDs are reused lowest first, so a stale
 * ID may by now name an object of another type; the errnos allowed below account for it.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "harness.h"
#include "stress.h"
#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"

#define NTHREADS 4
#define NHINTS 8
#define MAX_ID 40
#define PS 4096ull
#define BUF_PAGES 256
#define IOVA_SLOTS 64
#define RW (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)

enum { T_IOAS, T_HWPT, T_STDEV, T_IDEV, NTYPES };

enum op {
	OP_IOAS_ALLOC, OP_MOCK_DOMAIN, OP_REPLACE, OP_HWPT_ALLOC, OP_MAP, OP_UNMAP,
	OP_DESTROY, NOPS
};

static const char *const op_names[NOPS] = {
	"IOAS_ALLOC", "MOCK_DOMAIN", "MOCK_DOMAIN_REPLACE", "HWPT_ALLOC", "IOAS_MAP",
	"IOAS_UNMAP", "DESTROY",
};

/*
 * The errnos a call may lose a race with, and why:
 *
 * ENOENT  every op naming an ID: the object was destroyed under us (or is being destroyed:
 *         a lookup of a dying object fails), or the ID was freed and now names an object of
 *         another type, which a typed lookup does not find (MAP, UNMAP, the idev of
 *         HWPT_ALLOC, the stdev of REPLACE). An UNMAP whose range cuts an area that another
 *         thread mapped meanwhile is ENOENT too (the range does not cover whole areas).
 * EINVAL  the page-table ID of MOCK_DOMAIN, REPLACE and HWPT_ALLOC is looked up with any type
 *         and then dispatched: a stale ID that now names a device, a selftest object, or
 *         (for HWPT_ALLOC) a paging HWPT without nesting data is EINVAL, as in the kernel.
 * EEXIST  MAP with FIXED_IOVA onto a range another thread mapped first.
 * EBUSY   DESTROY of an object that is in use: an IOAS with HWPTs or devices, an HWPT with
 *         devices, a device object (bound: only its selftest object's destroy unbinds it), or
 *         any object another thread holds inside an ioctl right now.
 *
 * Not allowed: EFAULT (the buffer is always mapped), EADDRINUSE (every area is inside the mock
 * aperture and on the 2 KiB granule, so an attach never conflicts), ENOMEM, ENOSPC, anything
 * else.
 */
static const int allowed[NOPS][5] = {
	[OP_IOAS_ALLOC] = { 0 },
	[OP_MOCK_DOMAIN] = { ENOENT, EINVAL, 0 },
	[OP_REPLACE] = { ENOENT, EINVAL, 0 },
	[OP_HWPT_ALLOC] = { ENOENT, EINVAL, 0 },
	[OP_MAP] = { ENOENT, EEXIST, 0 },
	[OP_UNMAP] = { ENOENT, 0 },
	[OP_DESTROY] = { ENOENT, EBUSY, 0 },
};

static int fd = -1;
static _Atomic uint32_t hints[NTYPES][NHINTS];
static atomic_long done[NOPS], succeeded[NOPS];
static atomic_int bad;
static char buffer[BUF_PAGES * 4096] __attribute__((aligned(4096)));

/* A call succeeded, lost a race in an allowed way, or it is a bug. */
static void check(enum op op, int rc, int err)
{
	int i;

	atomic_fetch_add(&done[op], 1);
	if (rc >= 0) {
		atomic_fetch_add(&succeeded[op], 1);
		return;
	}
	for (i = 0; allowed[op][i]; i++)
		if (err == allowed[op][i])
			return;
	fprintf(stderr, "# %s: unexpected errno %d (%s)\n", op_names[op], err, strerror(err));
	atomic_fetch_add(&bad, 1);
}

static void do_destroy_id(uint32_t id)
{
	struct iommu_destroy cmd = { .size = sizeof(cmd), .id = id };
	int rc = uiommu_ioctl(fd, IOMMU_DESTROY, &cmd);

	check(OP_DESTROY, rc, errno);
}

/*
 * A new object takes a slot of the list of its type; the one it evicts is destroyed, so the
 * context stays small and the IDs low (a device object goes with its selftest object).
 */
static void remember(unsigned int *seed, int type, uint32_t id)
{
	uint32_t old = atomic_exchange(&hints[type][rand_r(seed) % NHINTS], id);

	if (old && type != T_IDEV)
		do_destroy_id(old);
}

/* Mostly an ID recently created of @type, sometimes any ID. */
static uint32_t pick(unsigned int *seed, int type)
{
	uint32_t id = 0;

	if (rand_r(seed) % 4)
		id = atomic_load(&hints[type][rand_r(seed) % NHINTS]);
	return id ? id : 1 + (uint32_t)(rand_r(seed) % MAX_ID);
}

/* A page table for a device: an IOAS (automatic domain) or an HWPT. */
static uint32_t pick_pt(unsigned int *seed)
{
	return pick(seed, rand_r(seed) % 2 ? T_IOAS : T_HWPT);
}

static void do_mock_domain(unsigned int *seed)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = pick_pt(seed),
	};
	int rc = uiommu_ioctl(fd, IOMMU_TEST_CMD, &cmd);

	check(OP_MOCK_DOMAIN, rc, errno);
	if (!rc) {
		remember(seed, T_STDEV, cmd.mock_domain.out_stdev_id);
		remember(seed, T_IDEV, cmd.mock_domain.out_idev_id);
		remember(seed, T_HWPT, cmd.mock_domain.out_hwpt_id);
	}
}

static void do_replace(unsigned int *seed)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE,
		.id = pick(seed, T_STDEV), .mock_domain_replace = { .pt_id = pick_pt(seed) },
	};
	int rc = uiommu_ioctl(fd, IOMMU_TEST_CMD, &cmd);

	check(OP_REPLACE, rc, errno);
	if (!rc)
		remember(seed, T_HWPT, cmd.mock_domain_replace.pt_id);
}

static void do_hwpt_alloc(unsigned int *seed)
{
	struct iommu_hwpt_alloc cmd = {
		.size = sizeof(cmd),
		.flags = rand_r(seed) % 2 ? IOMMU_HWPT_ALLOC_DIRTY_TRACKING : 0,
		.dev_id = pick(seed, T_IDEV),
		.pt_id = pick(seed, T_IOAS),
	};
	int rc = uiommu_ioctl(fd, IOMMU_HWPT_ALLOC, &cmd);

	check(OP_HWPT_ALLOC, rc, errno);
	if (!rc)
		remember(seed, T_HWPT, cmd.out_hwpt_id);
}

static void do_map(unsigned int *seed)
{
	uint64_t pages = 1 + (uint64_t)(rand_r(seed) % 4);
	struct iommu_ioas_map cmd = {
		.size = sizeof(cmd),
		.flags = RW | IOMMU_IOAS_MAP_FIXED_IOVA,
		.ioas_id = pick(seed, T_IOAS),
		.user_va = (uintptr_t)buffer + (uint64_t)(rand_r(seed) % (BUF_PAGES - 4)) * PS,
		.length = pages * PS,
		.iova = MOCK_APERTURE_START + (uint64_t)(rand_r(seed) % IOVA_SLOTS) * PS,
	};

	int rc = uiommu_ioctl(fd, IOMMU_IOAS_MAP, &cmd);

	check(OP_MAP, rc, errno);
}

static void do_unmap(unsigned int *seed)
{
	struct iommu_ioas_unmap cmd = {
		.size = sizeof(cmd),
		.ioas_id = pick(seed, T_IOAS),
		.iova = MOCK_APERTURE_START + (uint64_t)(rand_r(seed) % IOVA_SLOTS) * PS,
		.length = (1 + (uint64_t)(rand_r(seed) % 4)) * PS,
	};

	int rc;

	if (rand_r(seed) % 8 == 0) {
		cmd.iova = 0;
		cmd.length = UINT64_MAX;
	}
	rc = uiommu_ioctl(fd, IOMMU_IOAS_UNMAP, &cmd);
	check(OP_UNMAP, rc, errno);
}

static void do_destroy(unsigned int *seed)
{
	do_destroy_id(pick(seed, rand_r(seed) % NTYPES));
}

struct stress_arg {
	unsigned int seed;
};

static void *stress_thread(void *p)
{
	struct stress_arg *arg = p;
	unsigned int seed = arg->seed;

	while (stress_running()) {
		switch (rand_r(&seed) % 12) {
		case 0: {
			struct iommu_ioas_alloc cmd = { .size = sizeof(cmd) };
			int rc;

			/* Few new IOASes: the IDs stay low, where the random picks land. */
			if (rand_r(&seed) % 4)
				break;
			rc = uiommu_ioctl(fd, IOMMU_IOAS_ALLOC, &cmd);
			check(OP_IOAS_ALLOC, rc, errno);
			if (!rc)
				remember(&seed, T_IOAS, cmd.out_ioas_id);
			break;
		}
		case 1:
			do_mock_domain(&seed);
			break;
		case 2:
		case 3:
			do_replace(&seed);
			break;
		case 4:
			do_hwpt_alloc(&seed);
			break;
		case 5:
		case 6:
		case 7:
			do_map(&seed);
			break;
		case 8:
		case 9:
			do_unmap(&seed);
			break;
		default:
			do_destroy(&seed);
			break;
		}
	}
	return NULL;
}

static int check_refs(int cfd, const void *va, uint64_t len, uint32_t refs)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_MD_CHECK_REFS,
		.check_refs = { .length = len, .uptr = (uintptr_t)va, .refs = refs },
	};

	return uiommu_ioctl(cfd, IOMMU_TEST_CMD, &cmd);
}

TEST(devices_and_page_tables_race_map_and_destroy)
{
	struct stress_arg args[NTHREADS];
	struct stress_worker w[NTHREADS];
	double seconds = stress_seconds(3.0);
	struct uiommu_stats st;
	long total = 0;
	int i, cfd;

	fd = uiommu_open(O_RDWR);
	ASSERT_TRUE(fd >= 0);
	for (i = 0; i < NTHREADS; i++) {
		args[i].seed = 104729u * (unsigned int)i + 3;
		w[i] = (struct stress_worker){ stress_thread, &args[i] };
	}
	ASSERT_EQ(0, stress_run(w, NTHREADS, seconds));

	ASSERT_EQ(0, uiommu_stats_get(&st));
	printf("# %g s on %d threads; left at the end: %ld objects, %ld pinned pages\n", seconds,
	       NTHREADS, st.objects, (long)st.pinned_pages);
	for (i = 0; i < NOPS; i++) {
		printf("#   %-20s %8ld calls, %8ld succeeded\n", op_names[i], atomic_load(&done[i]),
		       atomic_load(&succeeded[i]));
		total += atomic_load(&done[i]);
	}
	ASSERT_EQ(0, uiommu_close(fd));
	ASSERT_EQ(0, atomic_load(&bad));
	ASSERT_TRUE(total > 1000);
	/* Every kind of call got through at least once: the race covered what it claims. */
	for (i = 0; i < NOPS; i++)
		ASSERT_TRUE(atomic_load(&succeeded[i]) > 0);

	ASSERT_EQ(0, uiommu_stats_get(&st));
	ASSERT_EQ(0, st.contexts);
	ASSERT_EQ(0, st.objects);
	ASSERT_EQ(0, st.pinned_pages);
	cfd = uiommu_open(O_RDWR);
	ASSERT_TRUE(cfd >= 0);
	ASSERT_EQ(0, check_refs(cfd, buffer, sizeof(buffer), 0));
	ASSERT_EQ(0, uiommu_close(cfd));
}

TEST_HARNESS_MAIN
