// SPDX-License-Identifier: MIT
/*
 * bench_vfio: a userspace driver's costs on a vfio-pci dma-test function, each against a
 * baseline the same program measures in the same run (issue 10, item 11).
 *
 * It is a plain Linux VFIO program (cdev + iommufd, the uAPI only), run under uiommu-run; it
 * boots a one-function machine of its own through $UIOMMU_TOPOLOGY, as the VFIO tests do.
 *
 *   a. a BAR register write: pwrite() of SCRATCH on the device fd's BAR0 region, a pwrite()
 *      into the doorbell page (the model's area_written hook wakes the worker), a store through
 *      the mmap of the doorbell page; baseline: an 8-byte pwrite() to a memfd.
 *   b. dma-test COPY of 4 KiB and 64 KiB, end to end: descriptors written into the ring, one
 *      TAIL doorbell per batch, the last descriptor's MSI-X eventfd read, its completion record
 *      checked; the time per descriptor (batches of up to 1024, so the device's work, not the
 *      one doorbell-to-interrupt round trip of each batch, is what is timed); the same with one descriptor per doorbell for information;
 *      baseline: memcpy() of the same bytes between the same buffers.
 *   c. MSI-X delivery, two ways, against an eventfd ping-pong between two threads (one round
 *      trip: two wake-ups, thread placement left to the scheduler):
 *      - the fair one (the target's): an interrupt thread blocked in read() of the vector's
 *        eventfd, which answers through a second eventfd as the ping-pong's thread does; the
 *        main thread writes a NOP descriptor with the IRQ flag, rings the doorbell by pwrite
 *        (the device's pass runs in that call and raises the vector) and waits for the answer.
 *        The same two threads and two wake-ups as the ping-pong, plus the device;
 *      - the driver's own: one thread rings and then reads the eventfd; the device raised it
 *        before the pwrite returned, so no thread is woken (what a QEMU vCPU thread gets).
 *      Both pairs of threads are pinned to one CPU, the same for both sides; each case counts
 *      the round trips whose two threads were on one CPU (sched_getcpu()), as a check.
 *      For information: the doorbell stored through the mmap (the worker finds it by
 *      polling), back to back and 100 us after the previous completion (the worker asleep).
 *
 * Every operation's result is checked (pwrite lengths, completion records and cookies, the
 * eventfd counts); a wrong one exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/pci_regs.h>

#include "bench.h"
#include "machine/models/dma-test.h"
#include "../tests/vfio_utils.h"

#define REGION(i) ((uint64_t)(i) << 40)
#define CFG REGION(VFIO_PCI_CONFIG_REGION_INDEX)
#define IOVA (1ull << 24)
#define RING 2048u                         /* descriptors in queue 0's ring */
#define COMP_OFF (RING * 64u)              /* completion records, 64 bytes apart */
#define SRC_OFF (2 * COMP_OFF)             /* then the copy's source and destination */
#define MAXLEN (64u << 10)
#define DST_OFF (SRC_OFF + MAXLEN)
#define Q1_RING_OFF (DST_OFF + MAXLEN) /* queue 1's ring (c's interrupt thread) */
#define BUFLEN (Q1_RING_OFF + RING * 64u)
#define BATCH 1024u

static const char topology[] =
	"{ \"iommus\": [ { \"name\": \"iommu0\" } ],\n"
	"  \"devices\": [ { \"bdf\": \"0000:07:00.0\", \"iommu\": \"iommu0\","
	" \"model\": \"dma-test\" } ] }\n";

struct dev {
	int vfd, iommufd, efd, memfd;
	unsigned int q;                    /* the queue driven (its vector's eventfd: efd) */
	uint8_t *buf;                      /* BUFLEN bytes at IOVA */
	uint8_t *ring;                     /* queue q's ring */
	volatile uint32_t *db;             /* the mmap of the doorbell page */
	uint32_t tail;                     /* free-running: the next descriptor */
	uint64_t cookie;                   /* the last descriptor's */
};

/* One case's way of driving the device. */
struct job {
	struct dev *d;
	size_t len;                        /* COPY: bytes per descriptor */
	unsigned int batch;                /* descriptors per doorbell */
	int use_mmap;                      /* ring the doorbell through the mmap */
};

static void die(const char *what)
{
	fprintf(stderr, "bench_vfio: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void bar_write(struct dev *d, uint64_t off, unsigned int width, uint64_t v)
{
	if (pwrite(d->vfd, &v, width, (off_t)(REGION(0) + off)) != (ssize_t)width)
		die("BAR0 pwrite");
}

static uint32_t cfg_read16(struct dev *d, unsigned int off)
{
	uint16_t v = 0;

	if (pread(d->vfd, &v, 2, (off_t)(CFG + off)) != 2)
		die("config pread");
	return v;
}

static void dev_open(struct dev *d, struct dev *q1)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct vfio_device_attach_iommufd_pt at = { .argsz = sizeof(at) };
	struct {
		struct vfio_irq_set hdr;
		int32_t fd[2];
	} irq = { .hdr = { .argsz = sizeof(irq), .index = VFIO_PCI_MSIX_IRQ_INDEX, .count = 2,
			   .flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER } };
	uint16_t cmd;

	memset(d, 0, sizeof(*d));
	vfio_machine(topology, "/sys/bus/pci/devices/0000:07:00.0");
	d->vfd = open("/dev/vfio/devices/vfio0", O_RDWR);
	d->iommufd = open("/dev/iommu", O_RDWR);
	if (d->vfd < 0 || d->iommufd < 0)
		die("open /dev/vfio/devices/vfio0 and /dev/iommu (run under uiommu-run)");
	if (vfio_bind(d->vfd, d->iommufd, NULL) || ioctl(d->iommufd, IOMMU_IOAS_ALLOC, &alloc))
		die("bind, IOAS_ALLOC");
	at.pt_id = alloc.out_ioas_id;
	if (ioctl(d->vfd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at))
		die("ATTACH_IOMMUFD_PT");
	d->buf = mmap(NULL, BUFLEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (d->buf == MAP_FAILED)
		die("mmap");
	memset(d->buf, 0x5a, BUFLEN);
	if (ioas_map_fixed(d->iommufd, alloc.out_ioas_id, IOVA, d->buf, BUFLEN))
		die("IOAS_MAP");
	cmd = (uint16_t)(cfg_read16(d, PCI_COMMAND) | PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY);
	if (pwrite(d->vfd, &cmd, 2, (off_t)(CFG + PCI_COMMAND)) != 2)
		die("Command");
	d->efd = eventfd(0, EFD_CLOEXEC);
	irq.fd[0] = d->efd;
	irq.fd[1] = eventfd(0, EFD_CLOEXEC);
	if (d->efd < 0 || irq.fd[1] < 0 || ioctl(d->vfd, VFIO_DEVICE_SET_IRQS, &irq))
		die("SET_IRQS MSI-X");
	d->ring = d->buf;
	d->db = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, d->vfd,
		     (off_t)(REGION(0) + DMA_TEST_DOORBELL_PAGE));
	if (d->db == MAP_FAILED)
		die("mmap of the doorbell page");
	bar_write(d, DMA_TEST_QUEUE(0) + DMA_TEST_Q_RING_BASE, 8, IOVA);
	bar_write(d, DMA_TEST_QUEUE(0) + DMA_TEST_Q_RING_SIZE, 4, RING);
	bar_write(d, DMA_TEST_QUEUE(0) + DMA_TEST_Q_CTRL, 4, DMA_TEST_CTRL_ENABLE | DMA_TEST_CTRL_IRQ);
	d->memfd = memfd_create("bench_vfio", MFD_CLOEXEC);
	if (d->memfd < 0 || ftruncate(d->memfd, 4096))
		die("memfd");
	*q1 = *d;
	q1->q = 1;
	q1->efd = irq.fd[1];
	q1->ring = d->buf + Q1_RING_OFF;
}

/* Queue 1, for c's interrupt thread (after a, which rings it disabled): its ring, vector 1. */
static void queue1_start(struct dev *q1)
{
	bar_write(q1, DMA_TEST_DOORBELL(1), 4, 0);
	bar_write(q1, DMA_TEST_QUEUE(1) + DMA_TEST_Q_RING_BASE, 8, IOVA + Q1_RING_OFF);
	bar_write(q1, DMA_TEST_QUEUE(1) + DMA_TEST_Q_RING_SIZE, 4, RING);
	bar_write(q1, DMA_TEST_QUEUE(1) + DMA_TEST_Q_CTRL, 4,
		  DMA_TEST_CTRL_ENABLE | DMA_TEST_CTRL_IRQ);
}

/* ---- a. register writes ------------------------------------------------------------------ */

static void run_pwrite_scratch(void *ctx, unsigned long iters)
{
	struct dev *d = ctx;

	for (unsigned long i = 0; i < iters; i++)
		bar_write(d, DMA_TEST_REG_SCRATCH, 8, i);
}

/* Queue 1 is disabled: the doorbell wakes the worker, which finds nothing to do. */
static void run_pwrite_doorbell(void *ctx, unsigned long iters)
{
	struct dev *d = ctx;

	for (unsigned long i = 0; i < iters; i++)
		bar_write(d, DMA_TEST_DOORBELL(1), 4, i);
}

static void run_mmap_doorbell(void *ctx, unsigned long iters)
{
	struct dev *d = ctx;

	for (unsigned long i = 0; i < iters; i++)
		__atomic_store_n(&d->db[2], (uint32_t)i, __ATOMIC_RELEASE);
}

static void run_memfd_pwrite(void *ctx, unsigned long iters)
{
	struct dev *d = ctx;

	for (unsigned long i = 0; i < iters; i++)
		if (pwrite(d->memfd, &i, 8, 16) != 8)
			die("memfd pwrite");
}

/* ---- b, c. descriptors ------------------------------------------------------------------- */

/* Writes descriptor d->tail (IRQ on @irq) and advances the tail; the doorbell is not rung. */
static void desc_post(struct dev *d, uint32_t op, uint64_t len, int irq)
{
	unsigned int i = d->tail % RING;
	struct dma_test_desc *desc = (struct dma_test_desc *)d->ring + i;
	struct dma_test_completion *c = (void *)(d->buf + COMP_OFF + 64u * i);

	memset(desc, 0, sizeof(*desc));
	c->status = 0;
	desc->op = op;
	desc->flags = irq ? DMA_TEST_DESC_IRQ : 0;
	desc->src = IOVA + SRC_OFF;
	desc->dst = IOVA + DST_OFF;
	desc->len = len;
	desc->completion = op == DMA_TEST_OP_NOP ? 0 : IOVA + COMP_OFF + 64u * i;
	desc->cookie = ++d->cookie;
	d->tail++;
}

static void doorbell(struct dev *d, int use_mmap)
{
	if (use_mmap)
		__atomic_store_n(&d->db[2 * d->q], d->tail % RING, __ATOMIC_RELEASE);
	else
		bar_write(d, DMA_TEST_DOORBELL(d->q), 4, d->tail % RING);
}

/* Blocks until the vector fires; checks the last descriptor's completion (@check). */
static void irq_wait(struct dev *d, size_t len, int check)
{
	uint64_t n;
	unsigned int i = (d->tail - 1) % RING;
	struct dma_test_completion *c = (void *)(d->buf + COMP_OFF + 64u * i);

	if (read(d->efd, &n, sizeof(n)) != sizeof(n) || n != 1)
		die("MSI-X eventfd read");
	if (check && (__atomic_load_n(&c->status, __ATOMIC_ACQUIRE) != DMA_TEST_COMP_DONE ||
		      c->cookie != d->cookie || c->bytes != len)) {
		errno = EIO;
		die("completion record");
	}
}

/* @iters descriptors, d->batch per doorbell, the last of each with the IRQ flag. */
static void run_copy(void *ctx, unsigned long iters)
{
	struct job *j = ctx;

	for (unsigned long done = 0; done < iters;) {
		unsigned int n = iters - done < j->batch ? (unsigned int)(iters - done) : j->batch;

		for (unsigned int k = 0; k < n; k++)
			desc_post(j->d, DMA_TEST_OP_COPY, j->len, k == n - 1);
		doorbell(j->d, j->use_mmap);
		irq_wait(j->d, j->len, 1);
		done += n;
	}
}

static void run_nop_irq(void *ctx, unsigned long iters)
{
	struct job *j = ctx;

	for (unsigned long i = 0; i < iters; i++) {
		desc_post(j->d, DMA_TEST_OP_NOP, 0, 1);
		doorbell(j->d, j->use_mmap);
		irq_wait(j->d, 0, 0);
	}
}

/*
 * A NOP + IRQ round trip rung through the mmap some time after the previous completion, when the
 * worker has gone back to sleep: the doorbell waits for the worker's next look. The gap (spent
 * spinning, so it is exact) is part of the figure.
 */
#define GAP_NS 100000.0

static void run_nop_irq_after_gap(void *ctx, unsigned long iters)
{
	for (unsigned long i = 0; i < iters; i++) {
		double t0 = bench_now_ns();

		while (bench_now_ns() - t0 < GAP_NS)
			;
		run_nop_irq(ctx, 1);
	}
}

struct memcpy_ctx {
	struct dev *d;
	size_t len;
};

static void run_memcpy(void *ctx, unsigned long iters)
{
	struct memcpy_ctx *m = ctx;

	for (unsigned long i = 0; i < iters; i++) {
		memcpy(m->d->buf + DST_OFF, m->d->buf + SRC_OFF, m->len);
		/* Keep every copy: the compiler may not fold iterations together. */
		__asm__ volatile("" : : "r"(m->d->buf) : "memory");
	}
}

/* ---- c: two threads, one answering the other (the ping-pong, the interrupt thread) ------- */

/*
 * A thread blocked in read() of @ping that answers every value with 1 on @pong, noting its
 * CPU first; 2 asks it to stop (the ping-pong's). With @dev, @ping is the device's MSI-X
 * eventfd and the main thread rings a NOP + IRQ instead of writing it.
 */
struct pingpong {
	int ping, pong;
	struct dev *dev;
	pthread_t thread;
	_Atomic int cpu;                   /* the answering thread's, at its last answer */
	unsigned long same_cpu, trips;     /* round trips with both threads on one CPU */
};

static void *pong_thread(void *arg)
{
	struct pingpong *p = arg;
	uint64_t v;

	for (;;) {
		if (read(p->ping, &v, sizeof(v)) != sizeof(v))
			die("ping read");
		if (v == 2 && !p->dev)
			return NULL; /* asked to stop */
		if (p->dev && v != 1) {
			errno = EIO;
			die("MSI-X eventfd count");
		}
		atomic_store_explicit(&p->cpu, sched_getcpu(), memory_order_relaxed);
		v = 1;
		if (write(p->pong, &v, sizeof(v)) != sizeof(v))
			die("pong write");
	}
}

static void run_pingpong(void *ctx, unsigned long iters)
{
	struct pingpong *p = ctx;
	uint64_t v;

	for (unsigned long i = 0; i < iters; i++) {
		v = 1;
		if (p->dev) {
			desc_post(p->dev, DMA_TEST_OP_NOP, 0, 1);
			doorbell(p->dev, 0);
		} else if (write(p->ping, &v, sizeof(v)) != sizeof(v)) {
			die("ping");
		}
		if (read(p->pong, &v, sizeof(v)) != sizeof(v) || v != 1)
			die("ping-pong");
		p->same_cpu += atomic_load_explicit(&p->cpu, memory_order_relaxed) == sched_getcpu();
		p->trips++;
	}
}

/* The answering thread on @cpu, where the main thread is pinned too. */
static void pingpong_start(struct pingpong *p, struct dev *dev, const cpu_set_t *cpu)
{
	memset(p, 0, sizeof(*p));
	p->dev = dev;
	p->ping = dev ? dev->efd : eventfd(0, EFD_CLOEXEC);
	p->pong = eventfd(0, EFD_CLOEXEC);
	if (p->ping < 0 || p->pong < 0 || pthread_create(&p->thread, NULL, pong_thread, p))
		die("ping-pong setup");
	errno = pthread_setaffinity_np(p->thread, sizeof(*cpu), cpu);
	if (errno)
		die("pthread_setaffinity_np");
}

static void pingpong_print(const char *what, const struct pingpong *p)
{
	printf("  %-60s %5.1f%%\n", what, p->trips ? 100.0 * (double)p->same_cpu / (double)p->trips : 0);
}

static const char usage[] =
	"usage: uiommu-run bench_vfio [--quick]\n"
	"A vfio-pci dma-test function's register writes, copies and MSI-X delivery, against\n"
	"a memfd pwrite, memcpy and an eventfd ping-pong.\n"
	"--quick: small iteration counts (CI smoke run).\n"
	"BENCH_VFIO_COPY_ONLY=N in the environment: only b's 4 KiB loop, N descriptors, no table\n"
	"(a profiler's run: perf record sees the device's work and little else).\n";

int main(int argc, char **argv)
{
	int quick = bench_parse_args(argc, argv, usage);
	unsigned long n_reg = quick ? 2000 : 200000, n_4k = quick ? 2000 : 100000;
	unsigned long n_64k = quick ? 256 : 10000, n_lat = quick ? 200 : 20000;
	unsigned long n_poll = quick ? 10 : 400;
	struct job d4, d64, d4one, d64one, dnop, dpoll;
	struct memcpy_ctx m4, m64;
	struct pingpong pp, ppirq;
	struct dev dev, dev_q1;
	cpu_set_t cpu;
	uint64_t stop = 2;

	if (!getenv("LD_PRELOAD") || !strstr(getenv("LD_PRELOAD"), "uiommu")) {
		fprintf(stderr, "bench_vfio: run it under uiommu-run\n");
		return 2;
	}
	dev_open(&dev, &dev_q1);
	d4 = (struct job){ &dev, 4096, BATCH, 0 };
	d64 = (struct job){ &dev, MAXLEN, BATCH, 0 };
	d4one = (struct job){ &dev, 4096, 1, 0 };
	d64one = (struct job){ &dev, MAXLEN, 1, 0 };
	dnop = (struct job){ &dev, 0, 1, 0 };
	dpoll = (struct job){ &dev, 0, 1, 1 };
	m4 = (struct memcpy_ctx){ &dev, 4096 };
	m64 = (struct memcpy_ctx){ &dev, MAXLEN };
	if (getenv("BENCH_VFIO_COPY_ONLY")) {
		run_copy(&d4, strtoul(getenv("BENCH_VFIO_COPY_ONLY"), NULL, 0));
		return 0;
	}

	{
		struct bench_case cases[] = {
			{ "a  BAR0 SCRATCH, pwrite on the device fd (8 bytes)", run_pwrite_scratch, &dev, n_reg },
			{ "   doorbell page, pwrite on the device fd (4 bytes)", run_pwrite_doorbell, &dev, n_reg },
			{ "   doorbell page, store through its mmap", run_mmap_doorbell, &dev, n_reg * 10 },
			{ "   baseline: pwrite of 8 bytes to a memfd", run_memfd_pwrite, &dev, n_reg },
		};

		bench_table("bench_vfio a: a BAR register write (ns per write)", cases, 4, quick);
		bench_print_ratio("pwrite SCRATCH / memfd pwrite", &cases[0], &cases[3], 0);
		bench_print_ratio("pwrite doorbell / memfd pwrite", &cases[1], &cases[3], 0);
		bench_print_ratio("mmap doorbell store / memfd pwrite", &cases[2], &cases[3], 0);
		printf("\n");
	}
	{
		struct bench_case cases[] = {
			{ "b  COPY 4 KiB, 1024 per doorbell, per descriptor", run_copy, &d4, n_4k },
			{ "   baseline: memcpy 4 KiB", run_memcpy, &m4, n_4k * 10 },
			{ "   COPY 64 KiB, 1024 per doorbell, per descriptor", run_copy, &d64, n_64k },
			{ "   baseline: memcpy 64 KiB", run_memcpy, &m64, n_64k * 4 },
			{ "   COPY 4 KiB, one per doorbell (latency)", run_copy, &d4one, n_lat },
			{ "   COPY 64 KiB, one per doorbell (latency)", run_copy, &d64one, n_lat / 4 },
		};

		bench_table("bench_vfio b: dma-test COPY, doorbell to MSI-X and completion "
				   "record (ns per descriptor)", cases, 6, quick);
		bench_print_ratio_min("4 KiB: memcpy / device (throughput ratio)", &cases[1], &cases[0], 0.5);
		bench_print_ratio_min("64 KiB: memcpy / device (throughput ratio)", &cases[3], &cases[2], 0.8);
		bench_print_ratio_min("4 KiB, one per doorbell: memcpy / device", &cases[1], &cases[4], 0);
		bench_print_ratio_min("64 KiB, one per doorbell: memcpy / device", &cases[3], &cases[5], 0);
		printf("\n");
	}
	/*
	 * Both pairs of threads on one CPU, the main thread's: the same placement for both sides
	 * (left to the scheduler, the two sides were placed apart at different rates, and a hop
	 * between vCPUs costs tens of microseconds here: bench/README.md).
	 */
	CPU_ZERO(&cpu);
	CPU_SET(sched_getcpu(), &cpu);
	errno = pthread_setaffinity_np(pthread_self(), sizeof(cpu), &cpu);
	if (errno)
		die("pthread_setaffinity_np");
	pingpong_start(&pp, NULL, &cpu);
	queue1_start(&dev_q1);
	pingpong_start(&ppirq, &dev_q1, &cpu);
	{
		struct bench_case cases[] = {
			{ "c  NOP + IRQ: pwrite doorbell -> MSI-X -> irq thread -> eventfd back",
			  run_pingpong, &ppirq, n_lat },
			{ "   baseline: eventfd ping-pong, two threads, round trip", run_pingpong, &pp, n_lat },
			{ "   NOP + IRQ, one thread: pwrite doorbell, then read() the MSI-X eventfd",
			  run_nop_irq, &dnop, n_lat },
			{ "   NOP + IRQ, mmap doorbell (found by polling)", run_nop_irq, &dpoll, n_poll },
			{ "   the same, rung 100 us after the last completion (+gap)", run_nop_irq_after_gap,
			  &dpoll, n_poll },
		};

		bench_table("bench_vfio c: MSI-X delivery (ns per round trip)", cases, 5, quick);
		bench_print_ratio("MSI-X to a waiting thread / eventfd ping-pong", &cases[0], &cases[1],
				  2.0);
		bench_print_ratio("MSI-X, one thread / eventfd ping-pong", &cases[2], &cases[1], 0);
		bench_print_ratio("mmap doorbell round trip / eventfd ping-pong", &cases[3], &cases[1], 0);
		pingpong_print("round trips with both threads on one CPU, MSI-X", &ppirq);
		pingpong_print("round trips with both threads on one CPU, ping-pong", &pp);
	}
	if (write(pp.ping, &stop, sizeof(stop)) != sizeof(stop) || pthread_join(pp.thread, NULL))
		die("ping-pong stop");
	/* The interrupt thread leaves when the device is gone; the process's exit takes it. */
	return 0;
}
