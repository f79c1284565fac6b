// SPDX-License-Identifier: MIT
/*
 * bench_map: the cost of IOMMU_IOAS_MAP + IOMMU_IOAS_UNMAP, by mapping size and by how many
 * other areas the IOAS holds. Linked against libuiommu and calling uiommu_ioctl() directly,
 * so the figures are the library's alone (no preload layer).
 *
 * One op = one MAP and the UNMAP of the same range, which leaves the IOAS as it was. Pinning
 * is lazy (nothing pins without a device or an access), so MAP does not touch the memory and
 * its cost should not depend on the length; and the IOVA trees are balanced, so its cost
 * should grow only logarithmically with the number of areas.
 *
 * The populated IOASes hold N separate one-page areas, all of the same page of memory, at
 * IOVA PAGE * (1 + 2i): every area is followed by a one-page gap. The fixed-IOVA op maps into
 * the gap in the middle; the automatic-IOVA ops ask for one page (it goes to the first gap)
 * and for two pages (no gap fits, so the first-fit search must skip all N gaps: linear in N
 * unless the search prunes subtrees, O(log N) if it does).
 *
 * Cases (baseline of each ratio in the same run):
 *   fixed 1 page, empty IOAS           baseline
 *   fixed 256 pages, empty IOAS        target: < 8x the one-page op
 *   fixed 1 page, 1,000 areas          target: <= 1.3x the empty case
 *   fixed 1 page, 100,000 areas        target: <= 1.5x the empty case
 *   auto 1 page / 2 pages, 100,000 areas  vs the same op on the empty IOAS; target <= 1.5x
 *
 * It also reports the heap the 100,000 areas take, per area (glibc's mallinfo2() around the
 * fill): the area, its iopt_pages (one per MAP) and its share of the IOVA tree's nodes.
 *
 * Exit status: 0 after a run (targets are reported, not enforced), 1 when a call fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "uiommu/iommufd.h"
#include "uiommu/uiommu.h"

#include "bench.h"
#include "bench_uiommu.h"

#define BIG_PAGES 256
#define POP_SMALL 1000
#define POP_LARGE 100000

static int fd = -1;
static uint64_t page;
static void *buf; /* BIG_PAGES pages, never touched */

struct map_case {
	uint32_t ioas_id;
	uint64_t length;
	uint64_t iova;  /* with fixed */
	bool fixed;
};

static void run_map_unmap(void *ctx, unsigned long iters)
{
	const struct map_case *mc = ctx;
	unsigned long i;

	for (i = 0; i != iters; i++) {
		uint64_t iova = bench_ioas_map(fd, mc->ioas_id, buf, mc->iova, mc->length, mc->fixed);

		bench_ioas_unmap(fd, mc->ioas_id, iova, mc->length);
	}
}

static uint64_t filler_iova(unsigned long i)
{
	return page * (1 + 2 * (uint64_t)i);
}

/*
 * An IOAS with @n one-page areas, each followed by a one-page gap. Optionally reports the time
 * per MAP and the heap bytes per area the fill took.
 */
static uint32_t ioas_populated(unsigned long n, double *ns_per_map, double *bytes_per_area)
{
	uint32_t id = bench_ioas_alloc(fd);
	size_t heap0 = mallinfo2().uordblks;
	double t0 = bench_now_ns();
	unsigned long i;

	for (i = 0; i != n; i++)
		bench_ioas_map(fd, id, buf, filler_iova(i), page, true);
	if (ns_per_map)
		*ns_per_map = (bench_now_ns() - t0) / (double)(n ? n : 1);
	if (bytes_per_area)
		*bytes_per_area = ((double)mallinfo2().uordblks - (double)heap0) / (double)(n ? n : 1);
	return id;
}

static const char usage[] =
	"Usage: bench_map [--quick]\n"
	"Times IOMMU_IOAS_MAP + IOMMU_IOAS_UNMAP through libuiommu by size and by the number of\n"
	"live areas in the IOAS. --quick: small iteration counts (CI smoke run).\n";

int main(int argc, char **argv)
{
	int quick = bench_parse_args(argc, argv, usage);
	unsigned long iters = quick ? 1000 : 100000;
	uint32_t empty, pop_small, pop_large;
	struct uiommu_stats st;
	double fill_ns, fill_bytes, t0;
	unsigned int i;

	bench_prog = "bench_map";
	page = (uint64_t)sysconf(_SC_PAGESIZE);
	fd = uiommu_open(O_RDWR | O_CLOEXEC);
	if (fd < 0)
		bench_fail("uiommu_open");
	buf = mmap(NULL, BIG_PAGES * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	if (buf == MAP_FAILED)
		bench_fail("mmap");

	empty = bench_ioas_alloc(fd);
	pop_small = ioas_populated(POP_SMALL, NULL, NULL);
	pop_large = ioas_populated(POP_LARGE, &fill_ns, &fill_bytes);

	struct map_case mc[] = {
		{ empty, page, (uint64_t)1 << 32, true },
		{ empty, BIG_PAGES * page, (uint64_t)1 << 32, true },
		{ pop_small, page, filler_iova(POP_SMALL / 2) + page, true },
		{ pop_large, page, filler_iova(POP_LARGE / 2) + page, true },
		{ empty, page, 0, false },
		{ pop_large, page, 0, false },
		{ empty, 2 * page, 0, false },
		{ pop_large, 2 * page, 0, false },
	};
	struct bench_case cases[] = {
		{ "fixed IOVA, 1 page, empty IOAS", run_map_unmap, &mc[0], iters },
		{ "fixed IOVA, 256 pages, empty IOAS", run_map_unmap, &mc[1], iters },
		{ "fixed IOVA, 1 page, 1,000 live areas", run_map_unmap, &mc[2], iters },
		{ "fixed IOVA, 1 page, 100,000 live areas", run_map_unmap, &mc[3], iters },
		{ "auto IOVA, 1 page, empty IOAS", run_map_unmap, &mc[4], iters },
		{ "auto IOVA, 1 page, 100,000 live areas (first gap)", run_map_unmap, &mc[5],
		  iters },
		{ "auto IOVA, 2 pages, empty IOAS", run_map_unmap, &mc[6], iters },
		{ "auto IOVA, 2 pages, 100,000 live areas (no gap fits)", run_map_unmap, &mc[7],
		  iters },
	};

	bench_print_header("bench_map: IOMMU_IOAS_MAP + IOMMU_IOAS_UNMAP through libuiommu "
			   "(one op = MAP + UNMAP)",
			   quick);
	bench_run(cases, sizeof(cases) / sizeof(cases[0]));
	for (i = 0; i != sizeof(cases) / sizeof(cases[0]); i++)
		bench_print_case(&cases[i]);
	printf("\n");
	bench_print_ratio("256 pages vs 1 page (fixed, empty)", &cases[1], &cases[0], 8);
	bench_print_ratio("1,000 live areas vs empty (fixed, 1 page)", &cases[2], &cases[0], 1.3);
	bench_print_ratio("100,000 live areas vs empty (fixed, 1 page)", &cases[3], &cases[0],
			  1.5);
	bench_print_ratio("auto 1 page: 100,000 live areas vs empty", &cases[5], &cases[4], 1.5);
	bench_print_ratio("auto 2 pages: 100,000 live areas vs empty", &cases[7], &cases[6], 1.5);

	if (uiommu_stats_get(&st))
		bench_fail("uiommu_stats_get");
	printf("\n  info: filling %d areas: %.1f ns per MAP; pinned pages: %lu (lazy pinning)\n",
	       POP_LARGE, fill_ns, st.pinned_pages);
	printf("  info: heap per live area: %.1f bytes (area, its iopt_pages, tree nodes)\n",
	       fill_bytes);
	t0 = bench_now_ns();
	if (uiommu_close(fd))
		bench_fail("uiommu_close");
	printf("  info: close of the context (destroys %d areas): %.1f ms\n",
	       POP_LARGE + POP_SMALL, (bench_now_ns() - t0) / 1e6);
	munmap(buf, BIG_PAGES * page);
	return 0;
}
