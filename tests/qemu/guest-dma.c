// SPDX-License-Identifier: MIT
/*
 * The QEMU guest's driver for a passed-through dma-test function (docs/dma-test.md), run by
 * tests/qemu/init inside the guest. It is linked statically with the host's compiler and
 * uses only what a Linux guest offers a root process: sysfs to find the function, its
 * `enable` and `config` files to turn on memory decoding and Bus Master, an mmap of
 * `resource0` for the registers and the doorbell page, and /proc/self/pagemap to learn the
 * guest-physical address of the buffers it hands the device.
 *
 * The guest has no IOMMU, so the address the device is given is the guest-physical one; QEMU
 * mapped guest RAM into its VFIO container at those same IOVAs, so every byte the device
 * moves goes through uiommu's translation of that IOVA to QEMU's memory. One address beyond
 * guest RAM is mapped by nobody: a descriptor pointing there must stop the queue with an
 * IOMMU fault (ERROR 1, EFAULT, the IOVA), which shows the translation is real.
 *
 * Buffers are single pages (each locked, its own physical address): the guest's physical
 * pages are not contiguous, so no DMA crosses a page of this program's memory. Output: one
 * "UIOMMU-GUEST: ..." line per check, for the host's log; the exit status is 0 only when
 * every check passed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define DT_VENDOR 0x1234
#define DT_DEVICE 0xd7a0
#define DT_ID 0x54414d44u
#define DT_BAR0_SIZE 0x4000

#define REG_ID 0x000
#define REG_VERSION 0x004
#define REG_NR_QUEUES 0x008
#define REG_CAPS 0x00c
#define REG_SCRATCH 0x010
#define Q_BASE(q) (0x100 + 0x40 * (q))
#define Q_RING_BASE 0x00
#define Q_RING_SIZE 0x08
#define Q_CTRL 0x0c
#define Q_HEAD 0x14
#define Q_TAIL 0x18
#define Q_STATUS 0x1c
#define Q_ERROR 0x20
#define Q_ERRNO 0x24
#define Q_ERROR_IOVA 0x28
#define Q_COMPLETED 0x30
#define DOORBELL(q) (0x1000 + 8 * (q))

#define CTRL_ENABLE 1u
#define STATUS_RUNNING 1u
#define STATUS_IDLE 2u
#define STATUS_ERROR 4u

#define OP_COPY 1u
#define OP_FILL 2u
#define OP_COMPARE 3u

#define PAGE 4096u
#define RING_SIZE 64u
#define NR_COPY_PAGES 32u
/* Beyond the guest's RAM (256 MiB) and every BAR: QEMU maps nothing there. */
#define UNMAPPED_IOVA 0x7000000000ull

struct desc {
	uint32_t op;
	uint32_t flags;
	uint64_t src;
	uint64_t dst;
	uint64_t len;
	uint64_t pattern;
	uint64_t completion;
	uint64_t cookie;
	uint64_t reserved;
};

struct completion {
	uint32_t status;
	uint32_t result;
	uint64_t bytes;
	uint64_t cookie;
	uint64_t reserved;
};

/* A page of guest memory the device may use: its address here and its guest-physical one. */
struct dma_page {
	void *va;
	uint64_t pa;
};

static volatile uint8_t *bar;
static int failures;
static int pagemap_fd = -1;

static void say(const char *fmt, ...)
{
	va_list ap;

	printf("UIOMMU-GUEST: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static void check(bool ok, const char *fmt, ...)
{
	va_list ap;

	printf("UIOMMU-GUEST: %s ", ok ? "ok" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!ok)
		failures++;
}

static uint32_t rd32(uint32_t off)
{
	return *(volatile uint32_t *)(bar + off);
}

static void wr32(uint32_t off, uint32_t v)
{
	*(volatile uint32_t *)(bar + off) = v;
}

/* 64-bit registers as two dword accesses, low first: every width is allowed, dwords are the
 * accesses every VMM forwards unsplit. */
static uint64_t rd64(uint32_t off)
{
	return rd32(off) | (uint64_t)rd32(off + 4) << 32;
}

static void wr64(uint32_t off, uint64_t v)
{
	wr32(off, (uint32_t)v);
	wr32(off + 4, (uint32_t)(v >> 32));
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int read_hex(const char *dir, const char *name, unsigned long *val)
{
	char path[600], buf[64];
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "r");
	if (!f)
		return -1;
	ok = fgets(buf, sizeof(buf), f) != NULL;
	fclose(f);
	if (!ok)
		return -1;
	*val = strtoul(buf, NULL, 16);
	return 0;
}

static int find_function(char *dir, size_t len)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *e;
	int found = -1;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		unsigned long vendor, device;

		if (e->d_name[0] == '.')
			continue;
		snprintf(dir, len, "/sys/bus/pci/devices/%s", e->d_name);
		if (read_hex(dir, "vendor", &vendor) || read_hex(dir, "device", &device))
			continue;
		if (vendor == DT_VENDOR && device == DT_DEVICE) {
			found = 0;
			break;
		}
	}
	closedir(d);
	return found;
}

static int write_file(const char *dir, const char *name, const char *s)
{
	char path[600];
	int fd, ret = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		ret = -1;
	close(fd);
	return ret;
}

/* Bus Master on through the function's config space, as a driver's pci_set_master(). */
static int set_bus_master(const char *dir, uint16_t *cmd_out)
{
	char path[600];
	uint16_t cmd;
	int fd, ret = -1;

	snprintf(path, sizeof(path), "%s/config", dir);
	fd = open(path, O_RDWR);
	if (fd < 0)
		return -1;
	if (pread(fd, &cmd, 2, 4) != 2)
		goto out;
	cmd |= 0x6; /* memory space, bus master */
	if (pwrite(fd, &cmd, 2, 4) != 2)
		goto out;
	if (pread(fd, &cmd, 2, 4) != 2)
		goto out;
	*cmd_out = cmd;
	ret = 0;
out:
	close(fd);
	return ret;
}

static int page_alloc(struct dma_page *p)
{
	uint64_t entry;
	void *va;

	va = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED,
		  -1, 0);
	if (va == MAP_FAILED)
		return -1;
	memset(va, 0, PAGE); /* fault it in; MAP_LOCKED keeps it where it is */
	if (pread(pagemap_fd, &entry, sizeof(entry),
		  (off_t)((uintptr_t)va / PAGE * sizeof(entry))) != sizeof(entry))
		return -1;
	if (!(entry & (1ull << 63)) || !(entry & ((1ull << 55) - 1)))
		return -1; /* not present, or the PFN is hidden (not root) */
	p->va = va;
	p->pa = (entry & ((1ull << 55) - 1)) * PAGE;
	return 0;
}

/* Waits until queue 0 has completed `target` descriptors or stopped; returns its STATUS. */
static uint32_t queue_wait(uint32_t target, double limit)
{
	double end = now() + limit;
	uint32_t status;

	for (;;) {
		status = rd32(Q_BASE(0) + Q_STATUS);
		if (status & STATUS_ERROR)
			return status;
		if (rd32(Q_BASE(0) + Q_COMPLETED) == target && (status & STATUS_IDLE))
			return status;
		if (now() > end)
			return status;
		usleep(1000);
	}
}

int main(void)
{
	struct dma_page ring, comp, fillp, src[NR_COPY_PAGES], dst[NR_COPY_PAGES];
	struct desc *descs;
	struct completion *cr;
	char dir[512];
	uint16_t cmd;
	uint32_t tail = 0, done = 0, status;
	uint64_t moved = 0;
	unsigned int i, j;
	int fd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (find_function(dir, sizeof(dir))) {
		say("FAIL no PCI function %04x:%04x in /sys/bus/pci/devices", DT_VENDOR, DT_DEVICE);
		return 1;
	}
	say("found dma-test at %s", dir);
	if (write_file(dir, "enable", "1")) {
		say("FAIL echo 1 > %s/enable: %s", dir, strerror(errno));
		return 1;
	}
	if (set_bus_master(dir, &cmd)) {
		say("FAIL config space command register: %s", strerror(errno));
		return 1;
	}
	check((cmd & 0x6) == 0x6, "command register 0x%04x has memory space and bus master", cmd);

	snprintf(dir + strlen(dir), sizeof(dir) - strlen(dir), "/resource0");
	fd = open(dir, O_RDWR | O_SYNC);
	if (fd < 0) {
		say("FAIL open %s: %s", dir, strerror(errno));
		return 1;
	}
	bar = mmap(NULL, DT_BAR0_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (bar == MAP_FAILED) {
		say("FAIL mmap %s: %s", dir, strerror(errno));
		return 1;
	}
	check(rd32(REG_ID) == DT_ID, "ID 0x%08x", rd32(REG_ID));
	say("version 0x%08x, %u queues, caps 0x%x", rd32(REG_VERSION), rd32(REG_NR_QUEUES),
	    rd32(REG_CAPS));
	wr64(REG_SCRATCH, 0x0123456789abcdefull);
	check(rd64(REG_SCRATCH) == 0x0123456789abcdefull, "SCRATCH reads back what was written");
	if (failures)
		return 1;

	pagemap_fd = open("/proc/self/pagemap", O_RDONLY);
	if (pagemap_fd < 0) {
		say("FAIL open /proc/self/pagemap: %s", strerror(errno));
		return 1;
	}
	if (page_alloc(&ring) || page_alloc(&comp) || page_alloc(&fillp)) {
		say("FAIL guest-physical pages: %s", strerror(errno));
		return 1;
	}
	for (i = 0; i < NR_COPY_PAGES; i++) {
		if (page_alloc(&src[i]) || page_alloc(&dst[i])) {
			say("FAIL guest-physical pages: %s", strerror(errno));
			return 1;
		}
		for (j = 0; j < PAGE; j++)
			((uint8_t *)src[i].va)[j] = (uint8_t)(i * 131 + j * 7 + 1);
		memset(dst[i].va, 0xee, PAGE);
	}
	descs = ring.va;
	cr = comp.va; /* one 32-byte record per ring slot: 64 * 32 = 2 KiB */
	say("ring at guest-physical 0x%" PRIx64 ", first source page 0x%" PRIx64, ring.pa, src[0].pa);

	wr64(Q_BASE(0) + Q_RING_BASE, ring.pa);
	wr32(Q_BASE(0) + Q_RING_SIZE, RING_SIZE);
	wr32(Q_BASE(0) + Q_CTRL, CTRL_ENABLE);
	status = rd32(Q_BASE(0) + Q_STATUS);
	check(status & STATUS_RUNNING, "queue 0 enabled, STATUS 0x%x", status);

	/* 1: a page-by-page COPY of 128 KiB, announced through the TAIL register. */
	for (i = 0; i < NR_COPY_PAGES; i++, tail++) {
		descs[tail] = (struct desc){ .op = OP_COPY, .src = src[i].pa, .dst = dst[i].pa,
					     .len = PAGE,
					     .completion = comp.pa + 32 * tail,
					     .cookie = 0xc0de0000u + tail };
	}
	__sync_synchronize();
	wr32(Q_BASE(0) + Q_TAIL, tail);
	status = queue_wait(tail, 30);
	check(!(status & STATUS_ERROR) && rd32(Q_BASE(0) + Q_COMPLETED) == tail,
	      "%u COPY descriptors through the TAIL register: COMPLETED %u, STATUS 0x%x", tail,
	      rd32(Q_BASE(0) + Q_COMPLETED), status);
	for (i = 0; i < NR_COPY_PAGES; i++) {
		if (memcmp(src[i].va, dst[i].va, PAGE))
			break;
		if (cr[i].status != 1 || cr[i].bytes != PAGE || cr[i].cookie != 0xc0de0000u + i)
			break;
		moved += PAGE;
	}
	check(i == NR_COPY_PAGES, "%u KiB copied byte for byte, %u completion records right",
	      (unsigned int)(moved / 1024), i);
	done = tail;

	/* 2: FILL and two COMPAREs (equal, then different at a known offset), announced through
	 * the mmapped doorbell page: a store with no trap, which the device finds by itself. */
	descs[tail] = (struct desc){ .op = OP_FILL, .dst = fillp.pa, .len = PAGE,
				     .pattern = 0x5a5aa5a5deadbeefull,
				     .completion = comp.pa + 32 * tail, .cookie = 1 };
	tail++;
	descs[tail] = (struct desc){ .op = OP_COMPARE, .src = src[3].pa, .dst = dst[3].pa,
				     .len = PAGE, .completion = comp.pa + 32 * tail, .cookie = 2 };
	tail++;
	((uint8_t *)dst[4].va)[1000] ^= 0xff;
	descs[tail] = (struct desc){ .op = OP_COMPARE, .src = src[4].pa, .dst = dst[4].pa,
				     .len = PAGE, .completion = comp.pa + 32 * tail, .cookie = 3 };
	tail++;
	__sync_synchronize();
	wr32(DOORBELL(0), tail);
	status = queue_wait(tail, 30);
	check(!(status & STATUS_ERROR) && rd32(Q_BASE(0) + Q_COMPLETED) == tail,
	      "FILL and 2 COMPAREs through the mmapped doorbell: COMPLETED %u, STATUS 0x%x",
	      rd32(Q_BASE(0) + Q_COMPLETED), status);
	for (j = 0; j < PAGE / 8; j++)
		if (((uint64_t *)fillp.va)[j] != 0x5a5aa5a5deadbeefull)
			break;
	check(j == PAGE / 8 && cr[done].status == 1, "FILL wrote its pattern over the page");
	check(cr[done + 1].status == 1 && cr[done + 1].result == 0, "COMPARE of equal pages: equal");
	check(cr[done + 2].status == 1 && cr[done + 2].result == 1 && cr[done + 2].bytes == 1000,
	      "COMPARE of different pages: different at byte %" PRIu64, cr[done + 2].bytes);
	done = tail;

	/* 3: an IOVA nobody mapped. The IOMMU refuses it and the queue stops, as hardware's. */
	descs[tail] = (struct desc){ .op = OP_COPY, .src = src[0].pa, .dst = UNMAPPED_IOVA,
				     .len = PAGE, .completion = comp.pa + 32 * tail, .cookie = 4 };
	tail++;
	__sync_synchronize();
	wr32(Q_BASE(0) + Q_TAIL, tail);
	status = queue_wait(tail, 30);
	check((status & STATUS_ERROR) && rd32(Q_BASE(0) + Q_ERROR) == 1 &&
		      rd32(Q_BASE(0) + Q_ERRNO) == EFAULT &&
		      rd64(Q_BASE(0) + Q_ERROR_IOVA) == UNMAPPED_IOVA &&
		      rd32(Q_BASE(0) + Q_HEAD) == done && cr[done].status == 0,
	      "DMA to unmapped IOVA 0x%" PRIx64 " faults: STATUS 0x%x ERROR %u ERRNO %u IOVA 0x%" PRIx64
	      " HEAD %u", (uint64_t)UNMAPPED_IOVA, status, rd32(Q_BASE(0) + Q_ERROR),
	      rd32(Q_BASE(0) + Q_ERRNO), rd64(Q_BASE(0) + Q_ERROR_IOVA), rd32(Q_BASE(0) + Q_HEAD));
	wr32(Q_BASE(0) + Q_CTRL, 0);
	check(!(rd32(Q_BASE(0) + Q_STATUS) & STATUS_ERROR) && rd32(Q_BASE(0) + Q_ERROR) == 0,
	      "disabling the queue clears its error");

	say("%s: %u descriptors, %u KiB moved by the device", failures ? "FAIL" : "done", done,
	    (unsigned int)(moved / 1024 + 4));
	return failures ? 1 : 0;
}
