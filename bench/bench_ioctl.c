// SPDX-License-Identifier: MIT
/*
 * bench_ioctl: the round trip of an ioctl on /dev/iommu through the preload layer, against a
 * real system call.
 *
 * This program knows nothing of uiommu: it opens "/dev/iommu" and calls ioctl() like any
 * iommufd user, so it must run under uiommu-run (LD_PRELOAD of libuiommu-preload.so). Each
 * iommufd ioctl then costs the preload's ioctl() wrapper, the fd lookup, the command dispatch
 * (size word, struct copy-in under the fault trap) and the handler, all in this process; the
 * goal is that this costs well under a real trip into the kernel. The fd lookup trusts the
 * library's table (no system call) unless UIOMMU_FD_CHECK=strict is set, which brings back one
 * fstat() per call (docs/running.md, "Identity"); the run says which it measured.
 *
 * Cases (one op = one ioctl() call):
 *   a  IOMMU_DESTROY of an ID that names nothing: -1/ENOENT (dispatch + a lock-free miss in
 *      the object table, under RCU with no file reference: the RCU dispatch of main.c)
 *   b  IOMMU_IOAS_IOVA_RANGES on an empty IOAS, room for 8 ranges: 0, one range reported
 *      (from the second call on, the IOAS's RCU snapshot: no lock, no hold)
 *   c  baseline: ioctl(/dev/null fd, FIONREAD): a real system call (the kernel answers
 *      ENOTTY); it passes through the preload's ioctl() wrapper as every non-iommufd ioctl of
 *      a program under uiommu-run does
 *   d  for information: the same call as syscall(SYS_ioctl, ...), bypassing libc and the
 *      preload; c - d is what the preload adds to every other ioctl of the program
 * Targets: a/c and b/c at most 0.3.
 *
 * Exit status: 0 after a run (targets met or not: they are reported), 1 when a call returns
 * something unexpected, 2 when not run under uiommu-run.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "uiommu/iommufd.h"

#include "bench.h"

#define MISSING_ID 0x12345u

static int iommufd = -1, null_fd = -1;
static uint32_t ioas_id;
static unsigned long unexpected; /* calls whose result was not the expected one */

static void run_destroy_missing(void *ctx, unsigned long iters)
{
	struct iommu_destroy cmd = { .size = sizeof(cmd), .id = MISSING_ID };
	unsigned long i;

	(void)ctx;
	for (i = 0; i != iters; i++)
		if (ioctl(iommufd, IOMMU_DESTROY, &cmd) != -1 || errno != ENOENT)
			unexpected++;
}

static void run_iova_ranges(void *ctx, unsigned long iters)
{
	struct iommu_iova_range ranges[8];
	struct iommu_ioas_iova_ranges cmd;
	unsigned long i;

	(void)ctx;
	for (i = 0; i != iters; i++) {
		memset(&cmd, 0, sizeof(cmd));
		cmd.size = sizeof(cmd);
		cmd.ioas_id = ioas_id;
		cmd.num_iovas = 8;
		cmd.allowed_iovas = (uintptr_t)ranges;
		if (ioctl(iommufd, IOMMU_IOAS_IOVA_RANGES, &cmd) || cmd.num_iovas != 1)
			unexpected++;
	}
}

static void run_null_ioctl(void *ctx, unsigned long iters)
{
	unsigned long i;
	int n;

	(void)ctx;
	for (i = 0; i != iters; i++)
		if (ioctl(null_fd, FIONREAD, &n) != -1)
			unexpected++;
}

static void run_null_syscall(void *ctx, unsigned long iters)
{
	unsigned long i;
	int n;

	(void)ctx;
	for (i = 0; i != iters; i++)
		if (syscall(SYS_ioctl, (long)null_fd, (long)FIONREAD, &n) != -1)
			unexpected++;
}

static const char usage[] =
	"Usage: uiommu-run bench_ioctl [--quick]\n"
	"Times ioctl() on /dev/iommu (served by uiommu through LD_PRELOAD) against a real\n"
	"ioctl() system call on /dev/null. --quick: small iteration counts (CI smoke run).\n";

int main(int argc, char **argv)
{
	int quick = bench_parse_args(argc, argv, usage);
	unsigned long iters = quick ? 2000 : 400000;
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct bench_case cases[] = {
		{ "a  IOMMU_DESTROY, missing ID (-1/ENOENT)", run_destroy_missing, NULL, iters },
		{ "b  IOMMU_IOAS_IOVA_RANGES, empty IOAS", run_iova_ranges, NULL, iters },
		{ "c  baseline: ioctl(/dev/null, FIONREAD), real syscall", run_null_ioctl, NULL,
		  iters },
		{ "d  (info) syscall(SYS_ioctl, /dev/null), no libc/preload", run_null_syscall,
		  NULL, iters },
	};
	int n, rc, e;

	iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (iommufd < 0) {
		fprintf(stderr,
			"bench_ioctl: cannot open /dev/iommu (%s).\n"
			"This benchmark times /dev/iommu as served by uiommu: run it under the "
			"preload runner,\n  e.g. build/tools/uiommu-run build/bench/bench_ioctl\n",
			strerror(errno));
		return 2;
	}
	if (!dlsym(RTLD_DEFAULT, "uiommu_is_fd")) {
		fprintf(stderr, "bench_ioctl: /dev/iommu is the kernel's here, not uiommu's: run it "
				"under uiommu-run\n");
		return 2;
	}
	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null_fd < 0) {
		perror("bench_ioctl: /dev/null");
		return 1;
	}
	if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc)) {
		perror("bench_ioctl: IOMMU_IOAS_ALLOC");
		return 1;
	}
	ioas_id = alloc.out_ioas_id;

	/* Say once what the baseline really answers: it is a system call whatever it says. */
	errno = 0;
	rc = ioctl(null_fd, FIONREAD, &n);
	e = errno;
	if (rc != -1) {
		fprintf(stderr, "bench_ioctl: ioctl(/dev/null, FIONREAD) returned %d, not -1\n", rc);
		return 1;
	}

	bench_print_header("bench_ioctl: ioctl round trip through the uiommu preload layer", quick);
	bench_run(cases, sizeof(cases) / sizeof(cases[0]));
	if (unexpected) {
		fprintf(stderr, "bench_ioctl: %lu calls returned an unexpected result\n",
			unexpected);
		return 1;
	}
	for (n = 0; n != (int)(sizeof(cases) / sizeof(cases[0])); n++)
		bench_print_case(&cases[n]);
	printf("\n  baseline answer: ioctl(/dev/null, FIONREAD) = %d, errno %d (%s)\n", rc, e,
	       strerror(e));
	printf("  fd identity check: %s\n\n",
	       getenv("UIOMMU_FD_CHECK") ? "UIOMMU_FD_CHECK set (\"strict\": one fstat per call)" :
					   "the library's table (no system call)");
	bench_print_ratio("a/c  DESTROY(missing) vs real syscall", &cases[0], &cases[2], 0.3);
	bench_print_ratio("b/c  IOVA_RANGES(empty) vs real syscall", &cases[1], &cases[2], 0.3);
	printf("  %-58s %8.1f ns\n", "c-d  preload overhead on a non-iommufd ioctl",
	       cases[2].median - cases[3].median);

	close(null_fd);
	close(iommufd);
	return 0;
}
