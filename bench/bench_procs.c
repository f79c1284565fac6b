// SPDX-License-Identifier: MIT
/*
 * bench_procs: one context across two processes (docs/processes.md), against what the same two
 * processes pay for the plain mechanisms.
 *
 * Runs under uiommu-run. The parent opens /dev/iommu, makes an IOAS, maps 64 KiB of its own
 * memory and an access object on it, then forks: the child holds the inherited fds, so each of
 * its calls travels to the parent (the server) and back. The child times:
 *   a  IOMMU_DESTROY of an ID that names nothing (-1/ENOENT): a cross-process ioctl round trip
 *   b  a 1-byte ping-pong on a UNIX socketpair with a thread of the parent: the same two
 *      processes' cheapest round trip
 *   c  ACCESS_RW WRITE of 64 KiB through the access: a device's DMA from the child's buffer
 *      into the parent's memory. The parent's memory is its own private anonymous memory, so
 *      the child copies it itself (the direct path, docs/processes.md): one process_vm_writev()
 *      through the translation it asked for once; with UIOMMU_REMOTE_DIRECT=0 it is the round
 *      trip (the server reads the child's buffer, writes its own pages)
 *   d  memcpy() of 64 KiB in the child
 * Then the child maps two 64 KiB buffers of its own into the IOAS, which a mock domain of the
 * parent's (the device) translates: a shared memfd that the parent maps too (it was made
 * before the fork: the domain maps the parent's own address of each page) and private
 * anonymous memory (the parent has no address for it: the window's, mm/window.c). The parent,
 * the serving process where the device lives, times:
 *   e  uiommu_dma_write() of 64 KiB into the child's shared memfd (a memcpy under the trap)
 *   f  uiommu_dma_write() of 64 KiB into the child's private memory (process_vm_writev())
 *   g  memcpy() of 64 KiB in the parent
 * and the child checks that both writes landed in its memory. Then e, f and g again by the
 * timing thread's CPU time (the least of 15 rounds of 1,000, alternating): on a loaded machine
 * the wall time of f also counts the waits for a CPU that its system call makes more likely,
 * which the CPU time leaves out (for information: the targets are by wall time).
 * Targets (issue 11): a/b at most 2; "a 64 KiB DMA into another process's memory" at least
 * 0.5x memcpy: d/c (through an access, the child's ACCESS_RW), g/e and g/f (the device's DMA).
 * The single-process ioctl is bench_ioctl's.
 *
 * Every thread of both processes runs on one CPU (place_on_one_cpu()); --spread leaves it to
 * the scheduler.
 *
 * Exit status: 0 after a run (targets are reported, not enforced), 1 when a call returns
 * something unexpected, 2 when not run under uiommu-run.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"

#include "bench.h"

#define DMA_LEN (64 * 1024)
#define MISSING_ID 0x12345u

static int iommufd = -1, access_fd = -1, ping[2], ctl[2];
static uint32_t ioas_id;
static uint64_t dma_iova;
static unsigned long unexpected;
static char *src, *dst, *shm;

/* The device's side (the parent): its DMA handle and the child's two buffers' IOVAs. */
static struct uiommu_dma_dev *dev;
static uint64_t child_iova[2]; /* the shared memfd's, the private memory's */

static void run_remote_ioctl(void *ctx, unsigned long iters)
{
	struct iommu_destroy cmd = { .size = sizeof(cmd), .id = MISSING_ID };

	(void)ctx;
	for (unsigned long i = 0; i != iters; i++)
		if (ioctl(iommufd, IOMMU_DESTROY, &cmd) != -1 || errno != ENOENT)
			unexpected++;
}

static void run_ping_pong(void *ctx, unsigned long iters)
{
	char c = 0;

	(void)ctx;
	for (unsigned long i = 0; i != iters; i++)
		if (write(ping[1], &c, 1) != 1 || read(ping[1], &c, 1) != 1)
			unexpected++;
}

static void run_remote_dma(void *ctx, unsigned long iters)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_ACCESS_RW, .id = (uint32_t)access_fd,
		.access_rw = { .iova = dma_iova, .length = DMA_LEN, .uptr = (uintptr_t)src,
			       .flags = MOCK_ACCESS_RW_WRITE },
	};

	(void)ctx;
	for (unsigned long i = 0; i != iters; i++)
		if (ioctl(iommufd, IOMMU_TEST_CMD, &cmd))
			unexpected++;
}

/* The device writes 64 KiB into the child's buffer at *@ctx (an IOVA). */
static void run_device_dma(void *ctx, unsigned long iters)
{
	uint64_t iova = *(uint64_t *)ctx;

	for (unsigned long i = 0; i != iters; i++)
		if (uiommu_dma_write(dev, 0, iova, src, DMA_LEN, 0) != DMA_LEN)
			unexpected++;
}

static void run_memcpy(void *ctx, unsigned long iters)
{
	(void)ctx;
	for (unsigned long i = 0; i != iters; i++) {
		memcpy(dst, src, DMA_LEN);
		__asm__ volatile("" : : "r"(dst) : "memory");
	}
}

/* The calling thread's CPU time, in ns. */
static double thread_cpu_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* e, f and g by CPU time: the least ns per op of 15 rounds of 1,000, the cases alternating. */
static void device_cpu_times(struct bench_case *cases, unsigned int n)
{
	double best[3] = { 1e18, 1e18, 1e18 };

	for (unsigned int round = 0; round != 15; round++) {
		for (unsigned int i = 0; i != n && i != 3; i++) {
			double t0 = thread_cpu_ns(), ns;

			cases[i].run(cases[i].ctx, 1000);
			ns = (thread_cpu_ns() - t0) / 1000;
			if (ns < best[i])
				best[i] = ns;
		}
	}
	printf("  by CPU time (least of 15 x 1,000): e %.0f ns, f %.0f ns, g %.0f ns; "
	       "g/e %.2fx, g/f %.2fx\n", best[0], best[1], best[2], best[2] / best[0],
	       best[2] / best[1]);
}

/* The parent's end of the ping-pong: echo every byte until the child hangs up. */
static void *echo_main(void *arg)
{
	char c;

	(void)arg;
	while (read(ping[0], &c, 1) == 1)
		if (write(ping[0], &c, 1) != 1)
			break;
	return NULL;
}

static int child_main(void)
{
	struct bench_case cases[] = {
		{ .name = "a remote ioctl round trip", .run = run_remote_ioctl, .iters = 20000 },
		{ .name = "b UNIX socket ping-pong", .run = run_ping_pong, .iters = 20000 },
		{ .name = "c 64 KiB DMA into the parent", .run = run_remote_dma, .iters = 2000 },
		{ .name = "d memcpy 64 KiB", .run = run_memcpy, .iters = 20000 },
	};

	src = malloc(DMA_LEN);
	dst = malloc(DMA_LEN);
	if (!src || !dst)
		return 1;
	memset(src, 0x5a, DMA_LEN);
	memset(dst, 0, DMA_LEN);
	bench_table("bench_procs: one context across two processes", cases, 4, 0);
	bench_print_ratio("a/b: remote ioctl vs socket ping-pong", &cases[0], &cases[1], 2);
	bench_print_ratio_min("d/c: 64 KiB DMA into another process vs memcpy", &cases[3],
			      &cases[2], 0.5);
	fflush(stdout);
	return unexpected ? 1 : 0;
}

/*
 * The child's buffers for the device: the shared memfd it inherited and private memory of its
 * own, each mapped into the IOAS (the parent's mock domain); their IOVAs go to the parent,
 * which writes 0xa5 into both. Return: 0 when both hold it after the parent's word, else 1.
 */
static int child_buffers(void)
{
	struct iommu_ioas_map map = { .size = sizeof(map), .ioas_id = ioas_id, .length = DMA_LEN,
				      .flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE };
	char *priv = mmap(NULL, DMA_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			  0);
	uint64_t iova[2];
	char c;

	if (priv == MAP_FAILED)
		return 1;
	memset(priv, 0, DMA_LEN);
	map.user_va = (uintptr_t)shm;
	if (ioctl(iommufd, IOMMU_IOAS_MAP, &map))
		return 1;
	iova[0] = map.iova;
	map.user_va = (uintptr_t)priv;
	if (ioctl(iommufd, IOMMU_IOAS_MAP, &map))
		return 1;
	iova[1] = map.iova;
	if (write(ctl[1], iova, sizeof(iova)) != sizeof(iova) || read(ctl[1], &c, 1) != 1)
		return 1;
	for (size_t i = 0; i != DMA_LEN; i++)
		if (shm[i] != (char)0xa5 || priv[i] != (char)0xa5)
			return 1;
	return 0;
}

/* The parent: the device's DMA into the child's memory against memcpy. */
static int device_main(void)
{
	struct bench_case cases[] = {
		{ .name = "e device DMA 64 KiB into the child's memfd", .run = run_device_dma,
		  .ctx = &child_iova[0], .iters = 4000 },
		{ .name = "f device DMA 64 KiB into the child's private mem", .run = run_device_dma,
		  .ctx = &child_iova[1], .iters = 4000 },
		{ .name = "g memcpy 64 KiB", .run = run_memcpy, .iters = 20000 },
	};

	src = malloc(DMA_LEN);
	dst = malloc(DMA_LEN);
	if (!src || !dst)
		return 1;
	memset(src, 0xa5, DMA_LEN);
	memset(dst, 0, DMA_LEN);
	bench_table("bench_procs: a device writes into another process's memory", cases, 3, 0);
	bench_print_ratio_min("g/e: device DMA into another process's memfd vs memcpy",
			      &cases[2], &cases[0], 0.5);
	bench_print_ratio_min("g/f: device DMA into another process's private memory vs memcpy",
			      &cases[2], &cases[1], 0.5);
	device_cpu_times(cases, 3);
	fflush(stdout);
	return unexpected ? 1 : 0;
}

/*
 * Every thread of both processes on the CPU main() starts on (the child, the library's threads
 * and the echo thread inherit it), as bench_vfio's MSI-X case does: on a VM an idle CPU's
 * wake-up costs 10-25 us, which otherwise swamps both round trips, a and b alike, by a
 * different amount each run. --spread leaves the placement to the scheduler.
 */
static int place_on_one_cpu(int argc, char **argv)
{
	cpu_set_t one;
	int cpu;

	if (argc > 1 && !strcmp(argv[1], "--spread")) {
		printf("placement: wherever the scheduler puts each thread (--spread)\n");
		return 0;
	}
	cpu = sched_getcpu();
	CPU_ZERO(&one);
	CPU_SET(cpu < 0 ? 0 : cpu, &one);
	if (sched_setaffinity(0, sizeof(one), &one))
		return -1;
	printf("placement: every thread of both processes on CPU %d (--spread: the scheduler's)\n",
	       cpu < 0 ? 0 : cpu);
	return 0;
}

int main(int argc, char **argv)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct iommu_test_cmd create = { .size = sizeof(create), .op = IOMMU_TEST_OP_CREATE_ACCESS };
	struct iommu_ioas_map map = { .size = sizeof(map), .length = DMA_LEN,
				      .flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE };
	struct iommu_test_cmd mock = { .size = sizeof(mock), .op = IOMMU_TEST_OP_MOCK_DOMAIN };
	pthread_t echo;
	void *mem;
	int status, memfd, rc;
	pid_t pid;

	if (place_on_one_cpu(argc, argv))
		return 1;
	iommufd = open("/dev/iommu", O_RDWR);
	if (iommufd < 0) {
		fprintf(stderr, "bench_procs: run it under uiommu-run\n");
		return 2;
	}
	mem = mmap(NULL, DMA_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc))
		return 1;
	ioas_id = alloc.out_ioas_id;
	map.ioas_id = ioas_id;
	map.user_va = (uintptr_t)mem;
	create.id = ioas_id;
	mock.id = ioas_id;
	/* The device first: its reserved IOVAs must not hold a mapping already (EADDRINUSE). */
	if (ioctl(iommufd, IOMMU_TEST_CMD, &mock) || ioctl(iommufd, IOMMU_IOAS_MAP, &map) ||
	    ioctl(iommufd, IOMMU_TEST_CMD, &create))
		return 1;
	dma_iova = map.iova;
	access_fd = (int)create.create_access.out_access_fd;
	dev = uiommu_dma_dev_open_iommufd(iommufd, mock.mock_domain.out_idev_id);
	memfd = memfd_create("bench_procs", MFD_CLOEXEC);
	if (!dev || memfd < 0 || ftruncate(memfd, DMA_LEN))
		return 1;
	shm = mmap(NULL, DMA_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (shm == MAP_FAILED || socketpair(AF_UNIX, SOCK_STREAM, 0, ping) ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, ctl) ||
	    pthread_create(&echo, NULL, echo_main, NULL))
		return 1;
	pid = fork();
	if (pid == 0)
		_exit(child_main() || child_buffers());
	close(ping[1]);
	if (pid < 0)
		return 1;
	/* The child's table is printed when its buffers' IOVAs come. */
	rc = read(ctl[0], child_iova, sizeof(child_iova)) != sizeof(child_iova) || device_main();
	if (write(ctl[0], "", 1) != 1 || waitpid(pid, &status, 0) != pid)
		return 1;
	pthread_join(echo, NULL);
	if (((char *)mem)[DMA_LEN - 1] != 0x5a)
		return 1; /* the child's DMA did not land in our memory */
	return rc || !WIFEXITED(status) ? 1 : WEXITSTATUS(status);
}
