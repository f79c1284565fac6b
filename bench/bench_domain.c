// SPDX-License-Identifier: MIT
/*
 * bench_domain: the cost of IOMMU_IOAS_MAP + IOMMU_IOAS_UNMAP once a device is attached, and of
 * attaching and detaching a device. Linked against libuiommu and calling uiommu_ioctl()
 * directly, so the figures are the library's alone (no preload layer).
 *
 * With a domain attached to the IOAS (a selftest mock device, bound and attached through
 * IOMMU_TEST_CMD MOCK_DOMAIN), MAP pins the pages at once and fills the mock's page table
 * (2 KiB entries: two per 4 KiB page), and UNMAP clears the entries and unpins. Without a
 * domain MAP only records the range (pinning is lazy). Both run in the same process and the
 * same run, against the same memory at the same IOVA, so the ratios hold across machines.
 *
 * Cases:
 *   no domain, 1 page / 256 pages          the baselines
 *   mock domain, 1 page / 256 pages        target: 256 pages < 8x one page (issue 4)
 *   attach + detach of a device            MOCK_DOMAIN + IOMMU_DESTROY of its selftest object,
 *                                          on an empty IOAS and on one with 1 MiB mapped
 *
 * Exit status: 0 after a run (targets are reported, not enforced), 1 when a call fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"

#include "bench.h"
#include "bench_uiommu.h"

#define BIG_PAGES 256
#define IOVA ((uint64_t)MOCK_APERTURE_START)

static int fd = -1;
static uint64_t page;
static void *buf; /* BIG_PAGES pages, faulted in */

struct map_case {
	uint32_t ioas_id;
	uint64_t length;
};

static void run_map_unmap(void *ctx, unsigned long iters)
{
	const struct map_case *mc = ctx;
	unsigned long i;

	for (i = 0; i != iters; i++) {
		bench_ioas_map(fd, mc->ioas_id, buf, IOVA, mc->length, 1);
		bench_ioas_unmap(fd, mc->ioas_id, IOVA, mc->length);
	}
}

static void run_attach_detach(void *ctx, unsigned long iters)
{
	uint32_t ioas_id = *(const uint32_t *)ctx;
	unsigned long i;

	for (i = 0; i != iters; i++)
		bench_destroy(fd, bench_mock_domain(fd, ioas_id).mock_domain.out_stdev_id);
}

static const char usage[] =
	"Usage: bench_domain [--quick]\n"
	"Times IOMMU_IOAS_MAP + IOMMU_IOAS_UNMAP through libuiommu with and without a mock\n"
	"domain attached (eager pinning), and the attach + detach of a mock device.\n"
	"--quick: small iteration counts (CI smoke run).\n";

int main(int argc, char **argv)
{
	int quick = bench_parse_args(argc, argv, usage);
	unsigned long iters = quick ? 1000 : 100000;
	unsigned long big_iters = quick ? 200 : 20000;
	unsigned long dev_iters = quick ? 500 : 50000;
	uint32_t plain, dom, empty, mapped;
	struct uiommu_stats st;
	unsigned int i;

	bench_prog = "bench_domain";
	page = (uint64_t)sysconf(_SC_PAGESIZE);
	fd = uiommu_open(O_RDWR | O_CLOEXEC);
	if (fd < 0)
		bench_fail("uiommu_open");
	buf = mmap(NULL, BIG_PAGES * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	if (buf == MAP_FAILED)
		bench_fail("mmap");
	memset(buf, 0x5a, BIG_PAGES * page);

	plain = bench_ioas_alloc(fd);
	dom = bench_ioas_alloc(fd);
	bench_mock_domain(fd, dom);
	empty = bench_ioas_alloc(fd);
	mapped = bench_ioas_alloc(fd);
	bench_ioas_map(fd, mapped, buf, IOVA, BIG_PAGES * page, 1);

	struct map_case mc[] = {
		{ plain, page },
		{ plain, BIG_PAGES * page },
		{ dom, page },
		{ dom, BIG_PAGES * page },
	};
	struct bench_case cases[] = {
		{ "no domain, 1 page (4 KiB)", run_map_unmap, &mc[0], iters },
		{ "no domain, 256 pages (1 MiB)", run_map_unmap, &mc[1], iters },
		{ "mock domain, 1 page (4 KiB): pin + 2 PTEs", run_map_unmap, &mc[2], iters },
		{ "mock domain, 256 pages (1 MiB): pin + 512 PTEs", run_map_unmap, &mc[3],
		  big_iters },
		{ "attach + detach a mock device, empty IOAS", run_attach_detach, &empty,
		  dev_iters },
		{ "attach + detach a mock device, 1 MiB mapped", run_attach_detach, &mapped,
		  dev_iters / 10 ? dev_iters / 10 : 1 },
	};

	bench_print_header("bench_domain: MAP + UNMAP with and without a mock domain; device "
			   "attach + detach",
			   quick);
	bench_run(cases, sizeof(cases) / sizeof(cases[0]));
	for (i = 0; i != sizeof(cases) / sizeof(cases[0]); i++)
		bench_print_case(&cases[i]);
	printf("\n");
	bench_print_ratio("256 pages vs 1 page (mock domain)", &cases[3], &cases[2], 8);
	bench_print_ratio("256 pages vs 1 page (no domain)", &cases[1], &cases[0], 0);
	bench_print_ratio("1 page: mock domain vs no domain", &cases[2], &cases[0], 0);
	bench_print_ratio("256 pages: mock domain vs no domain", &cases[3], &cases[1], 0);
	bench_print_ratio("attach + detach: 1 MiB mapped vs empty IOAS", &cases[5], &cases[4], 0);
	printf("  info: mock domain, per 4 KiB page of the 256-page op: %.1f ns\n",
	       cases[3].median / BIG_PAGES);

	if (uiommu_stats_get(&st))
		bench_fail("uiommu_stats_get");
	/* The domain's IOAS is empty again and the mapped one has no device left. */
	if (st.pinned_pages) {
		errno = EIO;
		bench_fail("pages still pinned after the run");
	}
	if (uiommu_close(fd))
		bench_fail("uiommu_close");
	munmap(buf, BIG_PAGES * page);
	return 0;
}
