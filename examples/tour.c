// SPDX-License-Identifier: MIT
/*
 * tour: a guided walk through /dev/iommu (iommufd), one chapter at a time.
 *
 * This program is a plain Linux client. It only uses system calls (open, ioctl, pread, pwrite,
 * mmap, poll) with the structs of <linux/iommufd.h> (our copy: <uiommu/iommufd.h>) and
 * <linux/vfio.h> (<uiommu/vfio_compat.h> adds the cdev ioctls older headers lack) and never
 * calls into libuiommu, so it runs unchanged on a kernel built with CONFIG_IOMMUFD_TEST or under
 *
 *     uiommu-run --topology examples/tour.json ./tour
 *
 * That machine is the embedded default plus one dma-test function (docs/dma-test.md), the
 * device chapter 14 drives as a userspace driver; without one, that chapter is skipped.
 * Chapter 15 drives the default's two other dma-test functions, behind its SMMUv3 and VT-d
 * instances, through nested translation with stage-1 tables in the program's own memory.
 *
 * Every step checks its result. Anything unexpected is reported and the program exits with
 * status 1, so the tour doubles as an end-to-end test. To add a chapter, write a function
 * taking a struct tour and list it in chapters[] at the bottom.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/pci_regs.h>

#include <uiommu/iommufd.h>
#include <uiommu/iommufd_test.h>
#include <uiommu/vfio_compat.h>

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define BUF_SIZE (64 * KiB)

/* An x86-style MSI doorbell window: what a platform driver would reserve in every IOAS. */
#define MSI_START UINT64_C(0xfee00000)
#define MSI_LEN (1 * MiB)

/* What the chapters share. */
struct tour {
	int fd;			/* our /dev/iommu */
	uint32_t ioas_a, ioas_b;
	void *buf;		/* 64 KiB of our memory, 64 KiB aligned */
	uint64_t page;		/* the CPU page size */
};

static int chapter_no;

/* ---- printing -------------------------------------------------------------------------- */

static const char *errname(int e)
{
#define NAME(x) case x: return #x
	static char other[32];

	switch (e) {
	NAME(EPERM); NAME(ENOENT); NAME(EBADF); NAME(ENOMEM); NAME(EFAULT); NAME(EBUSY);
	NAME(EEXIST); NAME(ENODEV); NAME(EINVAL); NAME(ENOTTY); NAME(ENOSPC); NAME(E2BIG);
	NAME(EMSGSIZE); NAME(EOPNOTSUPP); NAME(EADDRINUSE); NAME(EOVERFLOW); NAME(ESPIPE);
	}
#undef NAME
	snprintf(other, sizeof(other), "errno %d", e);
	return other;
}

/* "64 KiB", "1 MiB", "4096 bytes": sizes the way people say them. */
static const char *human(uint64_t n)
{
	static char bufs[4][32];
	static unsigned int next;
	char *s = bufs[next++ % 4];

	if (n && n % MiB == 0)
		snprintf(s, 32, "%" PRIu64 " MiB", n / MiB);
	else if (n && n % KiB == 0)
		snprintf(s, 32, "%" PRIu64 " KiB", n / KiB);
	else
		snprintf(s, 32, "%" PRIu64 " bytes", n);
	return s;
}

static void vprint(const char *prefix, const char *fmt, va_list ap)
{
	fputs(prefix, stdout);
	vprintf(fmt, ap);
	putchar('\n');
}

/* A step: what we are about to do. */
__attribute__((format(printf, 1, 2))) static void step(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprint("  * ", fmt, ap);
	va_end(ap);
}

/* What happened, and what it means. */
__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprint("      ", fmt, ap);
	va_end(ap);
}

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	va_start(ap, fmt);
	fprintf(stderr, "\nUNEXPECTED (chapter %d): ", chapter_no);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nThe tour stops here (exit status 1).\n", stderr);
	exit(1);
}

/* ---- checking -------------------------------------------------------------------------- */

/* ioctl() returning its result, or -errno. */
static long xioctl(int fd, unsigned long req, void *arg)
{
	long rc = ioctl(fd, req, arg);

	return rc < 0 ? -errno : rc;
}

static void expect_ok(long rc, const char *what)
{
	if (rc == -ENOTTY)
		die("%s failed with ENOTTY: this iommufd lacks the feature (on a real kernel:"
		    " CONFIG_IOMMUFD_TEST, CONFIG_IOMMUFD_VFIO_CONTAINER)", what);
	if (rc < 0)
		die("%s failed with %s (%s)", what, errname((int)-rc), strerror((int)-rc));
}

static void expect_errno(long rc, int want, const char *what, const char *why)
{
	if (rc >= 0)
		die("%s succeeded, but %s was expected", what, errname(want));
	if (-rc != want)
		die("%s failed with %s, but %s was expected", what, errname((int)-rc),
		    errname(want));
	say("-> %s, as expected: %s", errname(want), why);
}

static void expect_u64(uint64_t got, uint64_t want, const char *what)
{
	if (got != want)
		die("%s is 0x%" PRIx64 ", expected 0x%" PRIx64, what, got, want);
}

/* ---- thin wrappers around the ioctls --------------------------------------------------- */

static long ioas_alloc(int fd, uint32_t *id)
{
	struct iommu_ioas_alloc cmd = { .size = sizeof(cmd) };
	long rc = xioctl(fd, IOMMU_IOAS_ALLOC, &cmd);

	*id = cmd.out_ioas_id;
	return rc;
}

static long destroy(int fd, uint32_t id)
{
	struct iommu_destroy cmd = { .size = sizeof(cmd), .id = id };

	return xioctl(fd, IOMMU_DESTROY, &cmd);
}

/* IOMMU_IOAS_MAP; *iova is the input with FIXED_IOVA and the output otherwise. */
static long map(int fd, uint32_t ioas, uint32_t flags, const void *va, uint64_t len,
		uint64_t *iova)
{
	struct iommu_ioas_map cmd = {
		.size = sizeof(cmd), .flags = flags, .ioas_id = ioas,
		.user_va = (uintptr_t)va, .length = len, .iova = *iova,
	};
	long rc = xioctl(fd, IOMMU_IOAS_MAP, &cmd);

	if (rc == 0)
		*iova = cmd.iova;
	return rc;
}

static long unmap(int fd, uint32_t ioas, uint64_t iova, uint64_t len, uint64_t *unmapped)
{
	struct iommu_ioas_unmap cmd = {
		.size = sizeof(cmd), .ioas_id = ioas, .iova = iova, .length = len,
	};
	long rc = xioctl(fd, IOMMU_IOAS_UNMAP, &cmd);

	if (unmapped)
		*unmapped = rc == 0 ? cmd.length : 0;
	return rc;
}

static long allow_iovas(int fd, uint32_t ioas, struct iommu_iova_range *r, uint32_t n)
{
	struct iommu_ioas_allow_iovas cmd = {
		.size = sizeof(cmd), .ioas_id = ioas, .num_iovas = n,
		.allowed_iovas = (uintptr_t)r,
	};

	return xioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &cmd);
}

static long add_reserved(int fd, uint32_t ioas, uint64_t start, uint64_t len)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_ADD_RESERVED, .id = ioas,
		.add_reserved = { .start = start, .length = len },
	};

	return xioctl(fd, IOMMU_TEST_CMD, &cmd);
}

static long option(int fd, uint32_t id, uint32_t object, uint16_t op, uint64_t *val)
{
	struct iommu_option cmd = {
		.size = sizeof(cmd), .option_id = id, .op = op, .object_id = object,
		.val64 = *val,
	};
	long rc = xioctl(fd, IOMMU_OPTION, &cmd);

	if (rc == 0)
		*val = cmd.val64;
	return rc;
}

/* IOMMU_IOAS_IOVA_RANGES with the retry protocol: ask how many, then ask with room. */
static uint32_t show_ranges(int fd, uint32_t ioas, struct iommu_iova_range *out, uint32_t max)
{
	struct iommu_ioas_iova_ranges cmd = { .size = sizeof(cmd), .ioas_id = ioas };
	long rc = xioctl(fd, IOMMU_IOAS_IOVA_RANGES, &cmd);

	expect_errno(rc, EMSGSIZE, "IOVA_RANGES with num_iovas 0",
		     "there was no room for even one range.");
	say("   The kernel still wrote back num_iovas = %u: that is how many ranges there are.",
	    cmd.num_iovas);
	if (cmd.num_iovas > max)
		die("IOVA_RANGES reports %u ranges, more than the %u this tour expects",
		    cmd.num_iovas, max);
	cmd.allowed_iovas = (uintptr_t)out;
	rc = xioctl(fd, IOMMU_IOAS_IOVA_RANGES, &cmd);
	expect_ok(rc, "IOVA_RANGES with room");
	say("Asked again with room for %u: success.", cmd.num_iovas);
	for (uint32_t i = 0; i < cmd.num_iovas; i++)
		say("   usable range %u: 0x%" PRIx64 " .. 0x%" PRIx64, i,
		    (uint64_t)out[i].start, (uint64_t)out[i].last);
	say("   IOVAs and lengths must be multiples of %" PRIu64 " (out_iova_alignment).",
	    (uint64_t)cmd.out_iova_alignment);
	return cmd.num_iovas;
}

/* ---- chapters -------------------------------------------------------------------------- */

static void ch_open(struct tour *t)
{
	step("open(\"/dev/iommu\", O_RDWR)");
	t->fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (t->fd < 0)
		die("open(/dev/iommu) failed: %s (%s). On a real kernel you need CONFIG_IOMMUFD;"
		    " otherwise run the tour under uiommu-run.", errname(errno), strerror(errno));
	say("Got fd %d. This fd is a private context: every object we create lives in it.", t->fd);

	step("IOMMU_IOAS_ALLOC, twice");
	expect_ok(ioas_alloc(t->fd, &t->ioas_a), "IOMMU_IOAS_ALLOC");
	expect_ok(ioas_alloc(t->fd, &t->ioas_b), "IOMMU_IOAS_ALLOC");
	say("Created IO address spaces (IOAS) %u and %u. An IOAS is the address space a device",
	    t->ioas_a, t->ioas_b);
	say("sees: it maps IO virtual addresses (IOVAs) to our memory. We call them A and B.");
	expect_u64(t->ioas_a, 1, "the first object ID");
	expect_u64(t->ioas_b, 2, "the second object ID");
	say("Object IDs start at 1 in each new context; 0 never names an object.");
}

static void ch_ranges(struct tour *t)
{
	struct iommu_iova_range r[4];

	step("IOMMU_IOAS_IOVA_RANGES on A, first with num_iovas = 0");
	expect_u64(show_ranges(t->fd, t->ioas_a, r, 4), 1, "the number of ranges");
	expect_u64(r[0].start, 0, "the start of the range");
	expect_u64(r[0].last, UINT64_MAX, "the end of the range");
	say("With no device attached and nothing reserved, all 2^64 addresses are usable.");
}

static void ch_reserved(struct tour *t)
{
	struct iommu_iova_range r[4];

	step("IOMMU_TEST_CMD ADD_RESERVED on A: 0x%" PRIx64 " .. 0x%" PRIx64 " (%s)", MSI_START,
	     MSI_START + MSI_LEN - 1, human(MSI_LEN));
	expect_ok(add_reserved(t->fd, t->ioas_a, MSI_START, MSI_LEN), "ADD_RESERVED");
	say("Reserved. Drivers reserve ranges a device must not use for DMA, for example the");
	say("window where writes become MSI interrupts. This test-only command does the same.");

	step("IOMMU_IOAS_IOVA_RANGES on A again");
	expect_u64(show_ranges(t->fd, t->ioas_a, r, 4), 2, "the number of ranges");
	expect_u64(r[0].last, MSI_START - 1, "the end of the first range");
	expect_u64(r[1].start, MSI_START + MSI_LEN, "the start of the second range");
	say("Two ranges now: the reserved window cut the address space in two.");
}

static void ch_allow(struct tour *t)
{
	struct iommu_iova_range allowed = { .start = 1ULL << 30, .last = (2ULL << 30) - 1 };
	struct iommu_iova_range r[4];
	uint64_t iova = 0, len;

	step("IOMMU_IOAS_ALLOW_IOVAS on A: only 0x%" PRIx64 " .. 0x%" PRIx64, (uint64_t)allowed.start,
	     (uint64_t)allowed.last);
	expect_ok(allow_iovas(t->fd, t->ioas_a, &allowed, 1), "ALLOW_IOVAS");
	say("Done. Automatic IOVA allocation now stays inside this range (1 GiB .. 2 GiB).");

	step("IOMMU_IOAS_MAP of our %s buffer, letting the kernel pick the IOVA", human(BUF_SIZE));
	expect_ok(map(t->fd, t->ioas_a, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE, t->buf,
		      BUF_SIZE, &iova), "IOMMU_IOAS_MAP");
	expect_u64(iova, allowed.start, "the automatic IOVA");
	say("Mapped at IOVA 0x%" PRIx64 ": the lowest suitable address of the allowed range.", iova);

	step("IOMMU_IOAS_IOVA_RANGES on A");
	expect_u64(show_ranges(t->fd, t->ioas_a, r, 4), 2, "the number of ranges");
	say("Unchanged: the allowed list steers allocation, it does not hide the other IOVAs.");

	step("IOMMU_IOAS_UNMAP of that mapping, then ALLOW_IOVAS with an empty list");
	expect_ok(unmap(t->fd, t->ioas_a, iova, BUF_SIZE, &len), "IOMMU_IOAS_UNMAP");
	expect_u64(len, BUF_SIZE, "the unmapped length");
	expect_ok(allow_iovas(t->fd, t->ioas_a, NULL, 0), "ALLOW_IOVAS with 0 ranges");
	say("Unmapped %s; an empty list lifts the restriction again.", human(len));
}

static void ch_map(struct tour *t)
{
	const uint32_t rw = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
	void *nowhere = (void *)(uintptr_t)0x80000000UL;
	uint64_t iova = 0;

	step("IOMMU_IOAS_MAP of our %s buffer at %p, automatic IOVA", human(BUF_SIZE), t->buf);
	expect_ok(map(t->fd, t->ioas_a, rw, t->buf, BUF_SIZE, &iova), "IOMMU_IOAS_MAP");
	expect_u64(iova, 0x10000, "the automatic IOVA");
	say("Mapped %s of our buffer at IOVA 0x%" PRIx64 " (the kernel chose it: aligned to the",
	    human(BUF_SIZE), iova);
	say("buffer's %s alignment; the first page of IOVA space is never handed out).",
	    human(BUF_SIZE));

	step("IOMMU_IOAS_MAP with FIXED_IOVA: the first 16 KiB, read-only, at IOVA 0x200000");
	iova = 0x200000;
	expect_ok(map(t->fd, t->ioas_a, IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE,
		      t->buf, 16 * KiB, &iova), "IOMMU_IOAS_MAP (fixed)");
	say("Mapped where we asked. Devices may read it but not write it (no WRITEABLE flag).");
	say("The same memory may be mapped several times, at several IOVAs.");

	step("IOMMU_IOAS_MAP of 1 MiB at address %p, automatic IOVA", nowhere);
	if (msync(nowhere, 1 * MiB, MS_ASYNC) < 0 && errno == ENOMEM)
		say("Nothing is mapped at %p in this process (msync says ENOMEM).", nowhere);
	iova = 0;
	expect_ok(map(t->fd, t->ioas_a, rw, nowhere, 1 * MiB, &iova), "IOMMU_IOAS_MAP (lazy)");
	expect_u64(iova, 0x100000, "the automatic IOVA");
	say("It worked anyway, at IOVA 0x%" PRIx64 " (1 MiB aligned, just below the fixed map).",
	    iova);
	say("Pinning is lazy: pages are looked up and pinned only when a device is attached to");
	say("the IOAS. With no device, a map only records \"these IOVAs mean those addresses\".");
}

static void ch_copy(struct tour *t)
{
	struct iommu_ioas_copy cmd = {
		.size = sizeof(cmd),
		.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.dst_ioas_id = t->ioas_b, .src_ioas_id = t->ioas_a,
		.length = BUF_SIZE, .src_iova = 0x10000,
	};
	uint64_t len;

	step("IOMMU_IOAS_COPY of A's IOVAs 0x10000 .. 0x1ffff into B, automatic IOVA");
	expect_ok(xioctl(t->fd, IOMMU_IOAS_COPY, &cmd), "IOMMU_IOAS_COPY");
	say("B now maps the same %s at IOVA 0x%" PRIx64 ". A copy shares the pages of the",
	    human(BUF_SIZE), (uint64_t)cmd.dst_iova);
	say("source (once pinned, they would not be pinned twice), so it is cheaper than a map.");

	step("IOMMU_IOAS_UNMAP of the source in A");
	expect_ok(unmap(t->fd, t->ioas_a, 0x10000, BUF_SIZE, &len), "IOMMU_IOAS_UNMAP of the source");
	expect_u64(len, BUF_SIZE, "the unmapped length");
	say("Unmapped %s from A.", human(len));

	step("IOMMU_IOAS_UNMAP of the copy in B");
	expect_ok(unmap(t->fd, t->ioas_b, cmd.dst_iova, BUF_SIZE, &len),
		  "IOMMU_IOAS_UNMAP of the copy");
	expect_u64(len, BUF_SIZE, "the unmapped length");
	say("Unmapped %s from B: the copy had survived its source. Both were equal owners.",
	    human(len));
}

static void ch_errors(struct tour *t)
{
	const uint32_t rw = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
	struct iommu_iova_range tiny = { .start = 16 * MiB, .last = 16 * MiB + 16 * KiB - 1 };
	struct iommu_iova_range over_msi = { .start = 0xfe000000, .last = 0xfeffffff };
	struct {
		struct iommu_destroy cmd;
		uint32_t extra[2];
	} big = { .cmd = { .size = sizeof(big) }, .extra = { 0, 1 } };
	uint64_t iova;

	step("EEXIST: a fixed map of 4 KiB at IOVA 0x202000");
	iova = 0x202000;
	expect_errno(map(t->fd, t->ioas_a, IOMMU_IOAS_MAP_FIXED_IOVA | rw, t->buf, 4 * KiB, &iova),
		     EEXIST, "fixed map over a used range",
		     "that IOVA is inside the 16 KiB mapping at 0x200000.");

	step("EINVAL: a fixed map of 4 KiB at IOVA 0x%" PRIx64 ", in the reserved window",
	     MSI_START);
	iova = MSI_START;
	expect_errno(map(t->fd, t->ioas_a, IOMMU_IOAS_MAP_FIXED_IOVA | rw, t->buf, 4 * KiB, &iova),
		     EINVAL, "fixed map in a reserved range", "reserved IOVAs can never be mapped.");

	step("ENOENT: unmap the first 8 KiB of the 16 KiB mapping at 0x200000");
	expect_errno(unmap(t->fd, t->ioas_a, 0x200000, 8 * KiB, NULL), ENOENT,
		     "unmap of half a mapping", "an unmap must cover whole mappings, never split one.");

	step("ENOENT: unmap 64 KiB at 0x10000, where nothing is mapped any more");
	expect_errno(unmap(t->fd, t->ioas_a, 0x10000, BUF_SIZE, NULL), ENOENT,
		     "unmap of an empty range", "there was nothing to unmap.");

	step("EINVAL: IOMMU_IOAS_MAP with neither READABLE nor WRITEABLE");
	iova = 0;
	expect_errno(map(t->fd, t->ioas_a, 0, t->buf, BUF_SIZE, &iova), EINVAL,
		     "map without access rights", "a mapping a device can neither read nor write "
		     "is useless.");

	step("EOPNOTSUPP: IOMMU_IOAS_MAP with an unknown flag (1 << 7)");
	iova = 0;
	expect_errno(map(t->fd, t->ioas_a, rw | 1u << 7, t->buf, BUF_SIZE, &iova), EOPNOTSUPP,
		     "map with an unknown flag", "unknown flags are refused, not ignored.");

	step("E2BIG: IOMMU_DESTROY with a %zu-byte struct whose byte past the known %zu is not 0",
	     sizeof(big), sizeof(big.cmd));
	expect_errno(xioctl(t->fd, IOMMU_DESTROY, &big), E2BIG, "oversized struct",
		     "the bytes past the struct this kernel knows must be 0.");
	big.extra[1] = 0;
	expect_errno(xioctl(t->fd, IOMMU_DESTROY, &big), ENOENT, "oversized zeroed struct",
		     "with a zero tail it is accepted (and ID 0 names nothing).");

	step("ENOTTY: an ioctl number nobody knows, _IO(';', 0x7f)");
	expect_errno(xioctl(t->fd, _IO(IOMMUFD_TYPE, 0x7f), NULL), ENOTTY, "unknown ioctl",
		     "the usual answer to a request nobody handles.");

	step("EFAULT: IOMMU_DESTROY with a NULL argument");
	expect_errno(xioctl(t->fd, IOMMU_DESTROY, NULL), EFAULT, "NULL argument",
		     "the kernel could not read the struct from our memory.");

	step("EBUSY: skipped. It needs an object still in use by another, e.g. an IOAS with a");
	say("device attached; this tour has no devices yet.");

	step("ENOSPC: ALLOW_IOVAS on B of just 16 KiB, then an automatic map of 64 KiB");
	expect_ok(allow_iovas(t->fd, t->ioas_b, &tiny, 1), "ALLOW_IOVAS (tiny)");
	iova = 0;
	expect_errno(map(t->fd, t->ioas_b, rw, t->buf, BUF_SIZE, &iova), ENOSPC,
		     "automatic map that cannot fit", "no allowed hole is large enough.");
	expect_ok(allow_iovas(t->fd, t->ioas_b, NULL, 0), "ALLOW_IOVAS with 0 ranges");
	say("(B's allowed list is empty again.)");

	step("EADDRINUSE: ALLOW_IOVAS on A of 0x%" PRIx64 " .. 0x%" PRIx64,
	     (uint64_t)over_msi.start, (uint64_t)over_msi.last);
	expect_errno(allow_iovas(t->fd, t->ioas_a, &over_msi, 1), EADDRINUSE,
		     "ALLOW_IOVAS over a reserved range",
		     "IOVAs cannot be both promised usable and reserved.");

	step("EMSGSIZE: shown in chapter 2 (a result array that is too small).");
}

/* Turn CAP_SYS_RESOURCE on or off in our effective set; returns whether we had it. */
static bool cap_sys_resource(int on)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2] = { 0 };
	const uint32_t bit = 1u << CAP_SYS_RESOURCE;
	bool had;

	if (syscall(SYS_capget, &hdr, data))
		return false;
	had = data[0].effective & bit;
	if (on >= 0 && (data[0].permitted & bit)) {
		data[0].effective = on ? data[0].effective | bit : data[0].effective & ~bit;
		if (syscall(SYS_capset, &hdr, data))
			die("capset failed: %s", strerror(errno));
	}
	return had;
}

static void ch_options(struct tour *t)
{
	uint64_t val = 0;
	long rc;
	int fd2;

	step("IOMMU_OPTION HUGE_PAGES, GET on A");
	expect_ok(option(t->fd, IOMMU_OPTION_HUGE_PAGES, t->ioas_a, IOMMU_OPTION_OP_GET, &val),
		  "HUGE_PAGES GET");
	expect_u64(val, 1, "HUGE_PAGES");
	say("1: contiguous memory may be mapped with large IOMMU pages (the default).");

	step("HUGE_PAGES SET 0 on A, then GET");
	val = 0;
	expect_ok(option(t->fd, IOMMU_OPTION_HUGE_PAGES, t->ioas_a, IOMMU_OPTION_OP_SET, &val),
		  "HUGE_PAGES SET 0");
	expect_ok(option(t->fd, IOMMU_OPTION_HUGE_PAGES, t->ioas_a, IOMMU_OPTION_OP_GET, &val),
		  "HUGE_PAGES GET");
	expect_u64(val, 0, "HUGE_PAGES");
	say("0: A now uses only %s IOMMU pages, so any page-aligned piece of a mapping could",
	    human(t->page));
	say("be unmapped alone. That is what VFIO type1 (v1) needs. We set it back to 1.");
	val = 1;
	expect_ok(option(t->fd, IOMMU_OPTION_HUGE_PAGES, t->ioas_a, IOMMU_OPTION_OP_SET, &val),
		  "HUGE_PAGES SET 1");

	step("IOMMU_OPTION RLIMIT_MODE, GET (a global option: object_id 0)");
	expect_ok(option(t->fd, IOMMU_OPTION_RLIMIT_MODE, 0, IOMMU_OPTION_OP_GET, &val),
		  "RLIMIT_MODE GET");
	expect_u64(val, 0, "RLIMIT_MODE");
	say("0: pinned pages count against the user's RLIMIT_MEMLOCK (1 would charge the process,");
	say("as VFIO does).");

	step("RLIMIT_MODE SET 1 on our fd");
	val = 1;
	rc = option(t->fd, IOMMU_OPTION_RLIMIT_MODE, 0, IOMMU_OPTION_OP_SET, &val);
	if (rc == -EPERM) {
		expect_errno(rc, EPERM, "RLIMIT_MODE SET without privilege",
			     "we lack CAP_SYS_RESOURCE, which changing the mode needs.");
		return;
	}
	expect_errno(rc, EBUSY, "RLIMIT_MODE SET with objects",
		     "we are privileged, but the mode can only change while the context");
	say("   holds no objects, and ours holds two IOASes.");

	step("RLIMIT_MODE SET 1 on a second, empty /dev/iommu fd, then GET");
	fd2 = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (fd2 < 0)
		die("second open(/dev/iommu) failed: %s", strerror(errno));
	val = 1;
	expect_ok(option(fd2, IOMMU_OPTION_RLIMIT_MODE, 0, IOMMU_OPTION_OP_SET, &val),
		  "RLIMIT_MODE SET 1");
	expect_ok(option(fd2, IOMMU_OPTION_RLIMIT_MODE, 0, IOMMU_OPTION_OP_GET, &val),
		  "RLIMIT_MODE GET");
	expect_u64(val, 1, "RLIMIT_MODE of the second fd");
	expect_ok(option(t->fd, IOMMU_OPTION_RLIMIT_MODE, 0, IOMMU_OPTION_OP_GET, &val),
		  "RLIMIT_MODE GET");
	expect_u64(val, 0, "RLIMIT_MODE of our fd");
	say("1 there, still 0 on our fd: each open of /dev/iommu has its own options.");

	if (cap_sys_resource(-1)) {
		step("The same SET with CAP_SYS_RESOURCE dropped from our effective set");
		cap_sys_resource(0);
		rc = option(fd2, IOMMU_OPTION_RLIMIT_MODE, 0, IOMMU_OPTION_OP_SET, &val);
		cap_sys_resource(1);
		expect_errno(rc, EPERM, "RLIMIT_MODE SET without privilege",
			     "changing the mode needs CAP_SYS_RESOURCE.");
	}
	if (close(fd2))
		die("close of the second fd failed: %s", strerror(errno));
}

/* VFIO_IOMMU_GET_INFO: learn the size, fetch everything, walk the capability chain. */
static void vfio_info(struct tour *t)
{
	struct vfio_iommu_type1_info probe = { .argsz = sizeof(probe) };
	struct vfio_iommu_type1_info *info;
	uint32_t off, hops = 0;

	step("VFIO_IOMMU_GET_INFO with argsz = %zu (just the fixed part)", sizeof(probe));
	expect_ok(xioctl(t->fd, VFIO_IOMMU_GET_INFO, &probe), "VFIO_IOMMU_GET_INFO");
	if (probe.argsz <= sizeof(probe) || probe.cap_offset != 0 ||
	    !(probe.flags & VFIO_IOMMU_INFO_CAPS))
		die("GET_INFO: argsz %u, cap_offset %u, flags 0x%x; expected a larger argsz, "
		    "cap_offset 0 and the CAPS flag", probe.argsz, probe.cap_offset, probe.flags);
	say("IOMMU page sizes: 0x%" PRIx64 " (any power of two from %s).",
	    (uint64_t)probe.iova_pgsizes, human(probe.iova_pgsizes & -probe.iova_pgsizes));
	say("The capabilities did not fit: cap_offset is 0, and argsz came back as %u,",
	    probe.argsz);
	say("the size needed for everything.");

	step("VFIO_IOMMU_GET_INFO again with argsz = %u", probe.argsz);
	info = calloc(1, probe.argsz);
	if (!info)
		die("out of memory");
	info->argsz = probe.argsz;
	expect_ok(xioctl(t->fd, VFIO_IOMMU_GET_INFO, info), "VFIO_IOMMU_GET_INFO");
	if (!info->cap_offset)
		die("GET_INFO with argsz %u still reports no capabilities", info->argsz);
	say("The capability chain starts at offset %u:", info->cap_offset);
	for (off = info->cap_offset; off; hops++) {
		const struct vfio_info_cap_header *h = (const void *)((char *)info + off);

		if (hops > 8 || off < sizeof(*info) || off + sizeof(*h) > info->argsz)
			die("bad capability chain link at offset %u", off);
		if (h->id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL) {
			const struct vfio_iommu_type1_info_dma_avail *c = (const void *)h;

			say("   DMA_AVAIL: %u more mappings allowed.", c->avail);
		} else if (h->id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
			const struct vfio_iommu_type1_info_cap_iova_range *c = (const void *)h;

			say("   IOVA_RANGE: %u usable ranges, the same as IOMMU_IOAS_IOVA_RANGES:",
			    c->nr_iovas);
			expect_u64(c->nr_iovas, 2, "IOVA_RANGE nr_iovas");
			for (uint32_t i = 0; i < c->nr_iovas; i++)
				say("      0x%" PRIx64 " .. 0x%" PRIx64,
				    (uint64_t)c->iova_ranges[i].start, (uint64_t)c->iova_ranges[i].end);
			expect_u64(c->iova_ranges[0].end, MSI_START - 1, "the first range's end");
		} else {
			say("   capability %u (version %u), not described here.", h->id, h->version);
		}
		off = h->next;
	}
	free(info);
}

static void ch_vfio(struct tour *t)
{
	struct iommu_vfio_ioas vi = { .size = sizeof(vi), .op = IOMMU_VFIO_IOAS_GET };
	struct vfio_iommu_type1_dma_map dm = {
		.argsz = sizeof(dm), .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)t->buf, .iova = 0x300000, .size = BUF_SIZE,
	};
	struct vfio_iommu_type1_dma_unmap du = {
		.argsz = sizeof(du), .iova = 0x300000, .size = BUF_SIZE,
	};
	uint64_t iova = 0x300000;
	long rc;

	say("Programs written for VFIO's /dev/vfio/vfio container can use this fd as-is.");
	step("IOMMU_VFIO_IOAS SET A: the IOAS the VFIO calls will act on");
	vi.op = IOMMU_VFIO_IOAS_SET;
	vi.ioas_id = t->ioas_a;
	expect_ok(xioctl(t->fd, IOMMU_VFIO_IOAS, &vi), "IOMMU_VFIO_IOAS SET");
	vi.op = IOMMU_VFIO_IOAS_GET;
	vi.ioas_id = 0;
	expect_ok(xioctl(t->fd, IOMMU_VFIO_IOAS, &vi), "IOMMU_VFIO_IOAS GET");
	expect_u64(vi.ioas_id, t->ioas_a, "the VFIO IOAS");
	say("GET confirms IOAS %u.", vi.ioas_id);

	step("VFIO_GET_API_VERSION");
	rc = xioctl(t->fd, VFIO_GET_API_VERSION, NULL);
	expect_ok(rc, "VFIO_GET_API_VERSION");
	expect_u64((uint64_t)rc, VFIO_API_VERSION, "the VFIO API version");
	say("Returned %ld, VFIO_API_VERSION.", rc);

	step("VFIO_CHECK_EXTENSION(VFIO_TYPE1v2_IOMMU)");
	rc = ioctl(t->fd, VFIO_CHECK_EXTENSION, (unsigned long)VFIO_TYPE1v2_IOMMU);
	expect_u64((uint64_t)rc, 1, "CHECK_EXTENSION(TYPE1v2)");
	say("Returned 1: the type1 v2 IOMMU model is supported.");

	step("VFIO_SET_IOMMU(VFIO_TYPE1v2_IOMMU)");
	rc = ioctl(t->fd, VFIO_SET_IOMMU, (unsigned long)VFIO_TYPE1v2_IOMMU);
	expect_ok(rc < 0 ? -errno : rc, "VFIO_SET_IOMMU");
	say("Done: the container now speaks type1 v2.");

	vfio_info(t);

	step("VFIO_IOMMU_MAP_DMA of our buffer at IOVA 0x%" PRIx64, (uint64_t)dm.iova);
	expect_ok(xioctl(t->fd, VFIO_IOMMU_MAP_DMA, &dm), "VFIO_IOMMU_MAP_DMA");
	say("Mapped. VFIO maps always use a fixed IOVA.");
	step("IOMMU_IOAS_MAP with FIXED_IOVA at the same IOVA in A");
	expect_errno(map(t->fd, t->ioas_a, IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE,
			 t->buf, BUF_SIZE, &iova), EEXIST, "native map over a VFIO map",
		     "the VFIO mapping lives in A like any other.");

	step("VFIO_IOMMU_UNMAP_DMA of the same range");
	expect_ok(xioctl(t->fd, VFIO_IOMMU_UNMAP_DMA, &du), "VFIO_IOMMU_UNMAP_DMA");
	expect_u64(du.size, BUF_SIZE, "the unmapped size");
	say("Unmapped; size came back as %s, the bytes removed.", human(du.size));
}

static void ch_teardown(struct tour *t)
{
	uint32_t id;
	int rc;

	step("IOMMU_DESTROY of B (IOAS %u)", t->ioas_b);
	expect_ok(destroy(t->fd, t->ioas_b), "IOMMU_DESTROY");
	say("Destroyed.");

	step("IOMMU_DESTROY of B again");
	expect_errno(destroy(t->fd, t->ioas_b), ENOENT, "second destroy",
		     "that ID names nothing any more.");

	step("close() of the fd, with A still holding its reserved window and two mappings");
	rc = close(t->fd);
	if (rc)
		die("close failed: %s", strerror(errno));
	t->fd = -1;
	say("Closed. Closing destroys every object left in the context, in a safe order.");

	step("A fresh open(\"/dev/iommu\") and IOMMU_IOAS_ALLOC");
	t->fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (t->fd < 0)
		die("open(/dev/iommu) failed: %s", strerror(errno));
	expect_ok(ioas_alloc(t->fd, &id), "IOMMU_IOAS_ALLOC");
	expect_u64(id, 1, "the first ID of a new context");
	say("The new context starts from scratch: its first IOAS is %u again.", id);
	if (close(t->fd))
		die("close failed: %s", strerror(errno));
	t->fd = -1;
}

/* ---- devices and page tables, on the selftest's mock IOMMU ------------------------------ */

static long test_cmd(int fd, struct iommu_test_cmd *cmd)
{
	cmd->size = sizeof(*cmd);
	return xioctl(fd, IOMMU_TEST_CMD, cmd);
}

/* A 64-bit dirty bitmap, one character per bit: "1" dirty, "." clean. */
static const char *bits(uint64_t map, unsigned int n)
{
	static char s[65];

	for (unsigned int i = 0; i < n && i < 64; i++)
		s[i] = map & (UINT64_C(1) << i) ? '1' : '.';
	s[n < 64 ? n : 64] = '\0';
	return s;
}

/*
 * A fresh open("/dev/iommu") with an IOAS and a mock device attached to it, for the chapters
 * that need a device. False (and the chapter skips) on a kernel without IOMMU_TEST_CMD.
 */
static bool tour_mock_device(struct tour *t, uint32_t *ioas, struct iommu_test_cmd *cmd)
{
	long rc;

	t->fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (t->fd < 0)
		die("open(/dev/iommu) failed: %s", strerror(errno));
	expect_ok(ioas_alloc(t->fd, ioas), "IOMMU_IOAS_ALLOC");
	*cmd = (struct iommu_test_cmd){ .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = *ioas };
	rc = test_cmd(t->fd, cmd);
	if (rc == -ENOTTY) {
		say("-> ENOTTY: this kernel has no IOMMU_TEST_CMD (CONFIG_IOMMUFD_TEST). The mock");
		say("IOMMU lives behind it, so this chapter is skipped.");
		return false;
	}
	expect_ok(rc, "MOCK_DOMAIN");
	return true;
}

static void ch_devices(struct tour *t)
{
	const uint32_t rw = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
	const uint64_t iova = MOCK_APERTURE_START;
	struct iommu_test_cmd cmd = { .op = IOMMU_TEST_OP_MOCK_DOMAIN };
	uint32_t ioas, stdev, auto_hwpt, idev, hwpt, n;
	struct iommu_iova_range r[4];
	char text[32] = "";
	uint64_t map_iova, marks, dirty;
	void *gone;
	int afd;

	step("A fresh open(\"/dev/iommu\"), IOMMU_IOAS_ALLOC, IOMMU_TEST_CMD MOCK_DOMAIN on it");
	if (!tour_mock_device(t, &ioas, &cmd))
		goto out_close;
	stdev = cmd.mock_domain.out_stdev_id;
	auto_hwpt = cmd.mock_domain.out_hwpt_id;
	idev = cmd.mock_domain.out_idev_id;
	say("A device is bound to our context and attached to IOAS %u. On a real machine this",
	    ioas);
	say("is VFIO: open /dev/vfio/devices/vfioN, VFIO_DEVICE_BIND_IOMMUFD, then");
	say("VFIO_DEVICE_ATTACH_IOMMUFD_PT. The kernel selftest's mock device stands in for it:");
	say("   device object (idev) %u, the test's handle on the device (stdev) %u,", idev, stdev);
	say("   hardware page table (HWPT) %u: an IOMMU domain made for the IOAS on the spot.",
	    auto_hwpt);

	step("IOMMU_IOAS_IOVA_RANGES on the IOAS, now that a device is attached");
	n = show_ranges(t->fd, ioas, r, 4);
	expect_u64(n, 1, "the number of ranges");
	expect_u64(r[0].start, MOCK_APERTURE_START, "the start of the range");
	expect_u64(r[0].last, MOCK_APERTURE_LAST, "the end of the range");
	{
		struct iommu_ioas_iova_ranges q = { .size = sizeof(q), .ioas_id = ioas,
						    .num_iovas = 4, .allowed_iovas = (uintptr_t)r };

		expect_ok(xioctl(t->fd, IOMMU_IOAS_IOVA_RANGES, &q), "IOVA_RANGES");
		expect_u64(q.out_iova_alignment, MOCK_PAGE_SIZE, "the IOVA alignment");
	}
	say("Only the mock IOMMU's aperture (16 MiB .. 2 GiB) is usable now, in steps of its");
	say("2 KiB page: the IOAS takes on the limits of every domain attached to it.");

	step("IOMMU_IOAS_MAP of our %s buffer at IOVA 0x%" PRIx64, human(BUF_SIZE), iova);
	memset(t->buf, 0, BUF_SIZE);
	strcpy(t->buf, "hello from the CPU");
	map_iova = iova;
	expect_ok(map(t->fd, ioas, rw | IOMMU_IOAS_MAP_FIXED_IOVA, t->buf, BUF_SIZE, &map_iova),
		  "IOMMU_IOAS_MAP");
	say("Mapped, and this time pinned at once: the domain needs the physical pages now.");

	gone = mmap(NULL, 1 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (gone == MAP_FAILED || munmap(gone, 1 * MiB))
		die("mmap/munmap of a scratch range failed: %s", strerror(errno));
	step("IOMMU_IOAS_MAP of 1 MiB at %p, an address we just munmap()ed", gone);
	map_iova = 0;
	expect_errno(map(t->fd, ioas, rw, gone, 1 * MiB, &map_iova), EFAULT,
		     "map of unmapped memory",
		     "with a domain attached, pinning is eager and there is nothing to pin.");
	say("In the mapping chapter this kind of map worked: with no device, pinning was lazy.");

	step("IOMMU_TEST_CMD CREATE_ACCESS on the IOAS, then ACCESS_RW: read 32 bytes at IOVA"
	     " 0x%" PRIx64, iova);
	cmd = (struct iommu_test_cmd){ .op = IOMMU_TEST_OP_CREATE_ACCESS, .id = ioas };
	expect_ok(test_cmd(t->fd, &cmd), "CREATE_ACCESS");
	afd = (int)cmd.create_access.out_access_fd;
	say("An access object (fd %d) reads and writes IOVAs the way an emulated device", afd);
	say("(vfio-mdev, a kernel driver) would: through the IOAS, without an IOMMU.");
	cmd = (struct iommu_test_cmd){
		.op = IOMMU_TEST_OP_ACCESS_RW, .id = (uint32_t)afd,
		.access_rw = { .iova = iova, .length = sizeof(text), .uptr = (uintptr_t)text },
	};
	expect_ok(test_cmd(t->fd, &cmd), "ACCESS_RW (read)");
	if (strcmp(text, "hello from the CPU"))
		die("ACCESS_RW read \"%.32s\", expected what the CPU wrote", text);
	say("Read back: \"%s\". IOVA 0x%" PRIx64 " is our buffer.", text, iova);
	cmd = (struct iommu_test_cmd){
		.op = IOMMU_TEST_OP_ACCESS_RW, .id = (uint32_t)afd,
		.access_rw = { .iova = iova + 64, .length = sizeof("hello from the device"),
			       .uptr = (uintptr_t)"hello from the device",
			       .flags = MOCK_ACCESS_RW_WRITE },
	};
	expect_ok(test_cmd(t->fd, &cmd), "ACCESS_RW (write)");
	if (strcmp((char *)t->buf + 64, "hello from the device"))
		die("the write through the access did not reach our buffer");
	say("And written: at buf + 64 the CPU now reads \"%s\".", (char *)t->buf + 64);
	if (close(afd))
		die("close of the access fd failed: %s", strerror(errno));
	say("close(%d): the access fd was a real fd; closing it destroyed the access.", afd);

	step("IOMMU_HWPT_ALLOC for idev %u over the IOAS, with DIRTY_TRACKING", idev);
	{
		struct iommu_hwpt_alloc a = {
			.size = sizeof(a), .flags = IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
			.dev_id = idev, .pt_id = ioas,
		};

		expect_ok(xioctl(t->fd, IOMMU_HWPT_ALLOC, &a), "IOMMU_HWPT_ALLOC");
		hwpt = a.out_hwpt_id;
	}
	say("HWPT %u: a second page table for the same IOAS, asked for explicitly, able to", hwpt);
	say("record which pages the device writes. It holds the same mappings already.");

	step("IOMMU_TEST_CMD MOCK_DOMAIN_REPLACE: move the device to HWPT %u", hwpt);
	cmd = (struct iommu_test_cmd){ .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, .id = stdev,
				       .mock_domain_replace = { .pt_id = hwpt } };
	expect_ok(test_cmd(t->fd, &cmd), "MOCK_DOMAIN_REPLACE");
	expect_u64(cmd.mock_domain_replace.pt_id, hwpt, "the HWPT attached");
	say("Replaced in one step, with no moment without translation (on a real machine:");
	say("VFIO_DEVICE_ATTACH_IOMMUFD_PT again).");

	step("IOMMU_DESTROY of HWPT %u, the one made at the first attach", auto_hwpt);
	expect_errno(destroy(t->fd, auto_hwpt), ENOENT, "IOMMU_DESTROY of the first HWPT",
		     "the automatic HWPT went away with its last device.");

	step("IOMMU_HWPT_SET_DIRTY_TRACKING: enable on HWPT %u", hwpt);
	{
		struct iommu_hwpt_set_dirty_tracking d = {
			.size = sizeof(d), .flags = IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
			.hwpt_id = hwpt,
		};

		expect_ok(xioctl(t->fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &d),
			  "SET_DIRTY_TRACKING");
	}
	say("From now on the IOMMU sets a dirty bit in each page-table entry the device writes.");

	/* 2 KiB mock pages 0, 5, 6 and 31 of the buffer: 4 KiB pages 0, 2, 3 and 15. */
	marks = UINT64_C(1) << 0 | UINT64_C(1) << 5 | UINT64_C(1) << 6 | UINT64_C(1) << 31;
	step("IOMMU_TEST_CMD DIRTY: the device writes 2 KiB pages 0, 5, 6 and 31 of the buffer");
	cmd = (struct iommu_test_cmd){
		.op = IOMMU_TEST_OP_DIRTY, .id = hwpt,
		.dirty = { .iova = iova, .length = BUF_SIZE, .page_size = MOCK_PAGE_SIZE,
			   .uptr = (uintptr_t)&marks },
	};
	expect_ok(test_cmd(t->fd, &cmd), "DIRTY");
	expect_u64(cmd.dirty.out_nr_dirty, 4, "the number of entries marked");
	say("Marked %" PRIu64 " entries dirty, as the hardware would on DMA writes.",
	    (uint64_t)cmd.dirty.out_nr_dirty);

	step("IOMMU_HWPT_GET_DIRTY_BITMAP over the %s, one bit per 4 KiB", human(BUF_SIZE));
	{
		struct iommu_hwpt_get_dirty_bitmap g = {
			.size = sizeof(g), .hwpt_id = hwpt, .iova = iova, .length = BUF_SIZE,
			.page_size = 4 * KiB, .data = (uintptr_t)&dirty,
		};

		dirty = 0;
		expect_ok(xioctl(t->fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), "GET_DIRTY_BITMAP");
		say("   pages 0..15: %s", bits(dirty, 16));
		expect_u64(dirty, UINT64_C(1) << 0 | UINT64_C(1) << 2 | UINT64_C(1) << 3 |
					  UINT64_C(1) << 15, "the dirty bitmap");
		say("4 KiB pages 0, 2, 3 and 15 are dirty: live migration would copy them again.");
		dirty = 0;
		expect_ok(xioctl(t->fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &g), "GET_DIRTY_BITMAP");
		say("   pages 0..15: %s  (read again)", bits(dirty, 16));
		expect_u64(dirty, 0, "the dirty bitmap read a second time");
		say("Reading cleared the bits (IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR keeps them).");
	}

	step("Teardown: IOMMU_DESTROY of HWPT %u, of the device (stdev %u), then of HWPT %u", hwpt,
	     stdev, hwpt);
	expect_errno(destroy(t->fd, hwpt), EBUSY, "IOMMU_DESTROY of the HWPT",
		     "a device is attached to it.");
	expect_ok(destroy(t->fd, stdev), "IOMMU_DESTROY of the stdev");
	say("The device is detached and unbound (VFIO: close the device fd).");
	expect_ok(destroy(t->fd, hwpt), "IOMMU_DESTROY of the HWPT");
	say("Now the HWPT goes too; the close below takes the IOAS and unpins the buffer.");
out_close:
	if (close(t->fd))
		die("close failed: %s", strerror(errno));
	t->fd = -1;
}

/* ---- groups, through sysfs ---------------------------------------------------------------- */

#define GROUPS "/sys/kernel/iommu_groups"
#define PCI "/sys/bus/pci"

/* A small sysfs file: its content without the newline, or NULL with errno set. */
static const char *sysfs_read(const char *path)
{
	static char buf[4][256];
	static unsigned int next;
	char *s = buf[next++ % 4];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	n = read(fd, s, 255);
	close(fd);
	if (n < 0)
		return NULL;
	s[n] = 0;
	if (n && s[n - 1] == '\n')
		s[n - 1] = 0;
	return s;
}

/* A sysfs store: 0, or -errno as the kernel's store returned it. */
static long sysfs_write(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	long rc = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* The group number of a PCI function, from its iommu_group link; -1 if it has none. */
static int pci_group(const char *bdf)
{
	char path[256], target[256];
	ssize_t n;
	const char *slash;

	snprintf(path, sizeof(path), PCI "/devices/%s/iommu_group", bdf);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return -1;
	target[n] = 0;
	slash = strrchr(target, '/');
	return slash ? atoi(slash + 1) : -1;
}

static bool group_has(int group, const char *bdf)
{
	char path[256];

	snprintf(path, sizeof(path), GROUPS "/%d/devices/%s", group, bdf);
	return access(path, F_OK) == 0;
}

static void list_groups(void)
{
	struct dirent *de;
	DIR *d = opendir(GROUPS);
	int ids[64], n = 0, i, j;

	if (!d)
		die("opendir(" GROUPS ") failed: %s", strerror(errno));
	while ((de = readdir(d)) && n < 64)
		if (de->d_name[0] != '.')
			ids[n++] = atoi(de->d_name);
	closedir(d);
	for (i = 1; i < n; i++)
		for (j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
			int x = ids[j];

			ids[j] = ids[j - 1];
			ids[j - 1] = x;
		}
	for (i = 0; i < n; i++) {
		char path[256], devs[256] = "";
		DIR *dd;

		snprintf(path, sizeof(path), GROUPS "/%d/devices", ids[i]);
		dd = opendir(path);
		if (!dd)
			die("opendir(%s) failed: %s", path, strerror(errno));
		while ((de = readdir(dd)))
			if (de->d_name[0] != '.') {
				strncat(devs, " ", sizeof(devs) - strlen(devs) - 1);
				strncat(devs, de->d_name, sizeof(devs) - strlen(devs) - 1);
			}
		closedir(dd);
		snprintf(path, sizeof(path), GROUPS "/%d/type", ids[i]);
		say("group %-2d %-9s devices:%s", ids[i], sysfs_read(path), devs);
	}
}

static void ch_groups(struct tour *t)
{
	const char *shared = "0000:01:00.0", *nic = "0000:00:03.0", *spare = "0000:00:14.0";
	char type[256], path[256];
	int g, g2;
	long rc;

	(void)t;
	if (access(GROUPS, F_OK)) {
		say("There is no " GROUPS " on this machine (no IOMMU, or not under uiommu-run):");
		say("this chapter needs one and is skipped.");
		return;
	}
	step("The groups: ls " GROUPS ", and each group's devices/ and type");
	list_groups();
	say("A group is the unit of isolation: devices the IOMMU cannot tell apart (here the");
	say("three functions behind a switch without ACS) always share one translation. Each");
	say("group's `type` is its default domain, the one the kernel's DMA API uses: identity");
	say("(no translation), DMA (strict: unmap invalidates at once) or DMA-FQ (lazy: batched).");

	/*
	 * Everything below changes the machine. Only on uiommu's emulated one (its emulated
	 * driver is registered): on a real machine these addresses are real devices.
	 */
	if (access(PCI "/drivers/uiommu-dma", F_OK)) {
		say("This is not uiommu's emulated machine: the chapter changes nothing here.");
		return;
	}
	g = pci_group(shared);
	if (g < 0)
		die("%s has no iommu_group link", shared);
	step("readlink " PCI "/devices/%s/iommu_group", shared);
	say("-> ../../../kernel/iommu_groups/%d: the function's group.", g);
	snprintf(type, sizeof(type), GROUPS "/%d/type", g);

	step("echo identity > %s (its drivers are bound)", type);
	rc = sysfs_write(type, "identity");
	if (rc == -EACCES) {
		say("-> EACCES: changing a group's type needs CAP_SYS_ADMIN and CAP_SYS_RAWIO,");
		say("as in the kernel, and this tour runs without them. Run it as root to see the");
		say("type switches; hot unplug below needs no privilege of its own here.");
		goto unplug;
	}
	expect_errno(rc, EPERM, "the identity switch",
		     "a new default domain would pull the translation from under bound drivers.");

	step("echo DMA-FQ > %s", type);
	if (strcmp(sysfs_read(type), "DMA"))
		die("group %d is %s, expected DMA", g, sysfs_read(type));
	expect_ok(sysfs_write(type, "DMA-FQ"), "the DMA-FQ switch");
	say("Accepted, drivers and all: DMA -> DMA-FQ is the one change made live. The same");
	say("domain gets a flush queue; nothing is re-attached. The type now reads %s.",
	    sysfs_read(type));

	g2 = pci_group(spare);
	snprintf(path, sizeof(path), GROUPS "/%d/type", g2);
	step("echo %s > " PCI "/drivers/uiommu-dma/unbind, then echo identity > %s", spare,
	     path);
	{
		char was[64];

		snprintf(was, sizeof(was), "%s", sysfs_read(path));
		expect_errno(sysfs_write(path, "identity"), EPERM, "the identity switch",
			     "its driver is still bound.");
		expect_ok(sysfs_write(PCI "/drivers/uiommu-dma/unbind", spare), "unbind");
		expect_ok(sysfs_write(path, "identity"), "the identity switch");
		say("With no driver bound the group may change: %s -> %s, a new default domain.",
		    was, sysfs_read(path));
		expect_ok(sysfs_write(path, "auto"), "the auto switch");
		say("`auto` recomputes it from the driver's wishes and the global policy: %s.",
		    sysfs_read(path));
		expect_ok(sysfs_write(PCI "/drivers/uiommu-dma/bind", spare), "bind");
		say("echo %s > " PCI "/drivers/uiommu-dma/bind: the driver is back.", spare);
	}

unplug:
	g = pci_group(nic);
	step("echo 1 > " PCI "/devices/%s/remove, while its driver does DMA", nic);
	snprintf(path, sizeof(path), PCI "/devices/%s/remove", nic);
	expect_ok(sysfs_write(path, "1"), "remove");
	if (pci_group(nic) >= 0 || group_has(g, nic))
		die("%s is still in group %d after its removal", nic, g);
	say("Gone. The driver stopped its DMA first; then the core released the device under");
	say("its group's mutex, so no attach or type switch could see it half gone. It was the");
	say("group's only member, so group %d went too:", g);
	list_groups();

	step("echo 1 > " PCI "/rescan");
	expect_ok(sysfs_write(PCI "/rescan", "1"), "rescan");
	g = pci_group(nic);
	if (g < 0)
		die("%s did not come back", nic);
	snprintf(path, sizeof(path), GROUPS "/%d/type", g);
	say("%s is back, in group %d, type %s, its driver bound again.", nic, g, sysfs_read(path));
}

/* ---- I/O page faults ------------------------------------------------------------------------ */

/*
 * The device's side of this chapter. Under uiommu-run the device is emulated and libuiommu's
 * DMA engine is in the process: found with dlsym(), so this program still links nothing of
 * uiommu's and still runs on a real kernel, where the mock device's fault is made with
 * IOMMU_TEST_OP_TRIGGER_IOPF instead (there is no DMA to complete there).
 */
struct tour_dma_api {
	void *(*open_iommufd)(int iommufd, uint32_t dev_id);
	long (*write)(void *dev, uint32_t pasid, uint64_t iova, const void *buf, size_t len,
		      unsigned int flags);
	int (*close)(void *dev);
};

struct tour_dma_job {
	const struct tour_dma_api *api;
	void *dev;
	uint64_t iova;
	const char *text;
	long ret;
	int err;
};

static void *tour_device_dma(void *arg)
{
	struct tour_dma_job *job = arg;

	job->ret = job->api->write(job->dev, 0, job->iova, job->text, strlen(job->text) + 1, 0);
	job->err = job->ret < 0 ? errno : 0;
	return NULL;
}

static void ch_faults(struct tour *t)
{
	const uint32_t rw = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
	const uint64_t iova = MOCK_APERTURE_START + 4 * MiB;
	const char *text = "written by the device, after its page fault";
	struct iommu_test_cmd cmd = { .op = IOMMU_TEST_OP_MOCK_DOMAIN };
	struct iommu_fault_alloc fq = { .size = sizeof(fq) };
	struct iommu_hwpt_alloc ha = { .size = sizeof(ha) };
	struct iommu_hwpt_pgfault rec;
	struct iommu_hwpt_page_response resp;
	struct tour_dma_api api = { 0 };
	struct tour_dma_job job = { 0 };
	struct pollfd pfd;
	uint32_t ioas, stdev, idev;
	uint64_t map_iova = iova;
	pthread_t device_thread;
	bool emulated;
	long rc;
	int ffd;

	step("A mock device on a fresh context, and IOMMU_FAULT_QUEUE_ALLOC");
	if (!tour_mock_device(t, &ioas, &cmd))
		goto out_close;
	stdev = cmd.mock_domain.out_stdev_id;
	idev = cmd.mock_domain.out_idev_id;
	expect_ok(xioctl(t->fd, IOMMU_FAULT_QUEUE_ALLOC, &fq), "IOMMU_FAULT_QUEUE_ALLOC");
	ffd = (int)fq.out_fault_fd;
	say("Fault queue %u, read through its own fd %d: one 40-byte record per fault, and",
	    fq.out_fault_id, ffd);
	say("8-byte answers written back. A VMM forwards these to its guest (PCI PRI).");

	step("IOMMU_HWPT_ALLOC with IOMMU_HWPT_FAULT_ID_VALID, and the device moves onto it");
	ha.flags = IOMMU_HWPT_FAULT_ID_VALID;
	ha.dev_id = idev;
	ha.pt_id = ioas;
	ha.fault_id = fq.out_fault_id;
	expect_ok(xioctl(t->fd, IOMMU_HWPT_ALLOC, &ha), "IOMMU_HWPT_ALLOC");
	memset(&cmd, 0, sizeof(cmd));
	cmd.op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE;
	cmd.id = stdev;
	cmd.mock_domain_replace.pt_id = ha.out_hwpt_id;
	expect_ok(test_cmd(t->fd, &cmd), "MOCK_DOMAIN_REPLACE");
	say("Page table %u is fault-capable: a miss in it is a page request, not an error.",
	    ha.out_hwpt_id);

	*(void **)&api.open_iommufd = dlsym(RTLD_DEFAULT, "uiommu_dma_dev_open_iommufd");
	*(void **)&api.write = dlsym(RTLD_DEFAULT, "uiommu_dma_write");
	*(void **)&api.close = dlsym(RTLD_DEFAULT, "uiommu_dma_dev_close");
	/* TOUR_NO_DEVICE_DMA=1 takes the real kernel's path under uiommu-run too (a test runs it). */
	emulated = api.open_iommufd && api.write && api.close && !getenv("TOUR_NO_DEVICE_DMA");
	memset(t->buf, 0, BUF_SIZE);
	if (emulated) {
		step("The device writes to IOVA 0x%" PRIx64 ", where nothing is mapped yet", iova);
		job.api = &api;
		job.dev = api.open_iommufd(t->fd, idev);
		if (!job.dev)
			die("uiommu_dma_dev_open_iommufd: %s", strerror(errno));
		job.iova = iova;
		job.text = text;
		if (pthread_create(&device_thread, NULL, tour_device_dma, &job))
			die("pthread_create failed");
		say("(uiommu's emulated device does real DMA: it now waits for our answer.)");
	} else {
		step("IOMMU_TEST_OP_TRIGGER_IOPF: the mock device faults at IOVA 0x%" PRIx64, iova);
		memset(&cmd, 0, sizeof(cmd));
		cmd.op = IOMMU_TEST_OP_TRIGGER_IOPF;
		cmd.trigger_iopf.dev_id = idev;
		cmd.trigger_iopf.grpid = 1;
		cmd.trigger_iopf.perm = IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE;
		cmd.trigger_iopf.addr = iova;
		expect_ok(test_cmd(t->fd, &cmd), "TRIGGER_IOPF");
	}

	step("poll() and read() on the fault fd");
	pfd = (struct pollfd){ .fd = ffd, .events = POLLIN };
	if (poll(&pfd, 1, 5000) != 1 || !(pfd.revents & POLLIN))
		die("no fault arrived on the fault fd within 5 s");
	rc = read(ffd, &rec, sizeof(rec));
	if (rc != (long)sizeof(rec))
		die("read of the fault fd gave %ld (%s)", rc, strerror(errno));
	expect_u64(rec.dev_id, idev, "the faulting device");
	expect_u64(rec.addr & ~(uint64_t)(t->page - 1), iova, "the faulting address");
	expect_u64(!!(rec.perm & IOMMU_PGFAULT_PERM_WRITE), 1, "write permission asked");
	say("Fault: device %u, address 0x%" PRIx64 ", perm %#x, group %u, cookie %u.", rec.dev_id,
	    (uint64_t)rec.addr, rec.perm, rec.grpid, rec.cookie);
	expect_errno(read(ffd, &rec, 8) < 0 ? -errno : 0, ESPIPE, "a read of 8 bytes",
		     "only whole 40-byte records");

	step("IOMMU_IOAS_MAP our buffer there, then write {cookie %u, SUCCESS} to the fault fd",
	     rec.cookie);
	expect_ok(map(t->fd, ioas, rw | IOMMU_IOAS_MAP_FIXED_IOVA, t->buf, BUF_SIZE, &map_iova),
		  "IOMMU_IOAS_MAP");
	resp = (struct iommu_hwpt_page_response){ .cookie = rec.cookie,
						  .code = IOMMUFD_PAGE_RESP_SUCCESS };
	rc = write(ffd, &resp, sizeof(resp));
	if (rc != (long)sizeof(resp))
		die("write of the answer gave %ld (%s)", rc, strerror(errno));
	rc = write(ffd, &resp, sizeof(resp));
	expect_errno(rc < 0 ? -errno : 0, EINVAL, "answering the same cookie twice",
		     "a group is answered once; its cookie is gone");
	if (emulated) {
		pthread_join(device_thread, NULL);
		if (job.ret != (long)strlen(text) + 1)
			die("the device's DMA gave %ld (%s)", job.ret, strerror(job.err));
		if (strcmp(t->buf, text))
			die("our buffer says \"%s\"", (char *)t->buf);
		say("The device's DMA resumed and completed. Our buffer now says:");
		say("   \"%s\"", (char *)t->buf);
		api.close(job.dev);
	} else {
		say("Answered. (On a real kernel the mock device has no DMA to resume.)");
	}

	step("Another fault, read and left unanswered; then the device goes back to the IOAS");
	if (emulated) {
		job.dev = api.open_iommufd(t->fd, idev);
		if (!job.dev)
			die("uiommu_dma_dev_open_iommufd: %s", strerror(errno));
		job.iova = iova + 1 * MiB; /* beyond our 64 KiB buffer: nothing there */
		if (pthread_create(&device_thread, NULL, tour_device_dma, &job))
			die("pthread_create failed");
	} else {
		memset(&cmd, 0, sizeof(cmd));
		cmd.op = IOMMU_TEST_OP_TRIGGER_IOPF;
		cmd.trigger_iopf.dev_id = idev;
		cmd.trigger_iopf.grpid = 2;
		cmd.trigger_iopf.perm = IOMMU_PGFAULT_PERM_WRITE;
		cmd.trigger_iopf.addr = iova + 1 * MiB;
		expect_ok(test_cmd(t->fd, &cmd), "TRIGGER_IOPF");
	}
	if (poll(&pfd, 1, 5000) != 1 || read(ffd, &rec, sizeof(rec)) != (long)sizeof(rec))
		die("the second fault did not arrive");
	memset(&cmd, 0, sizeof(cmd));
	cmd.op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE;
	cmd.id = stdev;
	cmd.mock_domain_replace.pt_id = ioas;
	expect_ok(test_cmd(t->fd, &cmd), "MOCK_DOMAIN_REPLACE back to the IOAS");
	resp = (struct iommu_hwpt_page_response){ .cookie = rec.cookie,
						  .code = IOMMUFD_PAGE_RESP_SUCCESS };
	rc = write(ffd, &resp, sizeof(resp));
	expect_errno(rc < 0 ? -errno : 0, EINVAL, "answering it after the replace",
		     "the replace already answered it INVALID");
	if (emulated) {
		pthread_join(device_thread, NULL);
		if (job.ret != -1 || job.err != EFAULT)
			die("the device's DMA gave %ld (%s), not EFAULT", job.ret, strerror(job.err));
		say("The device's DMA failed with EFAULT: nobody is left to answer a page table that");
		say("is gone, so iommufd answers INVALID for us (so does detach, or destroying the");
		say("queue). No device ever waits forever. docs/faults.md has the rules.");
		api.close(job.dev);
	} else {
		say("Replace answered the pending fault INVALID (so do detach and destroying the");
		say("queue). docs/faults.md has the rules.");
	}
	close(ffd);
out_close:
	if (close(t->fd))
		die("close failed: %s", strerror(errno));
	t->fd = -1;
}

/* ---- chapter 14: a userspace driver and its device ------------------------------------- */

/* dma-test's identity and the BAR0 registers we use (docs/dma-test.md). */
#define DT_VENDOR 0x1234
#define DT_DEVICE 0xd7a0
#define DT_INT_STATUS 0x018
#define DT_Q0_RING_BASE 0x100
#define DT_Q0_RING_SIZE 0x108
#define DT_Q0_CTRL 0x10c	/* ENABLE (bit 0), interrupts (bit 1) */
#define DT_Q0_TAIL 0x118
#define DT_Q0_STATUS 0x11c	/* RUNNING (bit 0), IDLE (bit 1), ERROR (bit 2) */
#define DT_Q0_ERROR 0x120
#define DT_Q0_ERRNO 0x124
#define DT_Q0_ERROR_IOVA 0x128
#define DT_DOORBELL 0x1000	/* queue 0's tail again, in a page a driver may mmap */
#define DT_RING 16u

struct dt_desc {
	uint32_t op, flags;	/* op 1 COPY, 2 FILL; flags bit 0: interrupt when done */
	uint64_t src, dst, len, pattern, completion, cookie, reserved;
};

struct dt_completion {
	uint32_t status, result;
	uint64_t bytes, cookie, reserved;
};

/* Our memory, seen by the device at DT_IOVA: the ring, the completions, source, destination. */
#define DT_IOVA UINT64_C(0x10000000)
#define DT_CPL (4 * KiB)
#define DT_SRC (8 * KiB)
#define DT_DST (12 * KiB)
#define DT_MEM (16 * KiB)
#define DT_XFER (4 * KiB)

struct dt {
	int dev, efd;
	uint64_t bar0, cfg;	/* the regions' offsets in the device fd */
	uint8_t *mem;
	unsigned int tail;
};

static uint64_t dt_read(struct dt *d, uint64_t reg)
{
	uint32_t v = 0;

	if (pread(d->dev, &v, 4, (off_t)(d->bar0 + reg)) != 4)
		die("pread of BAR0 + 0x%" PRIx64 ": %s", reg, strerror(errno));
	return v;
}

static void dt_write(struct dt *d, uint64_t reg, unsigned int width, uint64_t v)
{
	if (pwrite(d->dev, &v, width, (off_t)(d->bar0 + reg)) != (ssize_t)width)
		die("pwrite of BAR0 + 0x%" PRIx64 ": %s", reg, strerror(errno));
}

/* The cdev of PCI function @bdf (named by its vfio-dev/ directory), "" when vfio-pci lacks it. */
static void dt_node(const char *bdf, char *node, size_t node_len)
{
	char path[512];
	struct dirent *de;
	DIR *dir;

	node[0] = 0;
	snprintf(path, sizeof(path), PCI "/devices/%s/vfio-dev", bdf);
	dir = opendir(path);
	while (dir && (de = readdir(dir)))
		if (!strncmp(de->d_name, "vfio", 4))
			snprintf(node, node_len, "/dev/vfio/devices/%s", de->d_name);
	if (dir)
		closedir(dir);
}

/* IOMMU_GET_HW_INFO's type for the device behind cdev @node, bound to a scratch iommufd. */
static long dt_hw_type(const char *node)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
	struct iommu_hw_info info = { .size = sizeof(info) };
	int dev = open(node, O_RDWR | O_CLOEXEC), fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	long rc = dev < 0 || fd < 0 ? -ENODEV : 0;

	bind.iommufd = fd;
	if (!rc)
		rc = xioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind);
	info.dev_id = bind.out_devid;
	if (!rc)
		rc = xioctl(fd, IOMMU_GET_HW_INFO, &info);
	if (dev >= 0)
		close(dev);
	if (fd >= 0)
		close(fd);
	return rc ? rc : (long)info.out_data_type;
}

/*
 * The first dma-test function under /sys/bus/pci/devices, into @bdf, and its cdev ("" when
 * vfio-pci does not drive it) into @node; with @hw_type >= 0, the first one vfio-pci drives
 * whose IOMMU reports that GET_HW_INFO type. False if none.
 */
static bool dt_find(char *bdf, size_t len, char *node, size_t node_len, long hw_type)
{
	char path[512];
	struct dirent *de;
	DIR *dir = opendir(PCI "/devices");
	bool found = false;

	while (dir && !found && (de = readdir(dir))) {
		const char *v, *dv;

		snprintf(path, sizeof(path), PCI "/devices/%s/vendor", de->d_name);
		v = sysfs_read(path);
		snprintf(path, sizeof(path), PCI "/devices/%s/device", de->d_name);
		dv = sysfs_read(path);
		if (!v || !dv || strtol(v, NULL, 0) != DT_VENDOR || strtol(dv, NULL, 0) != DT_DEVICE)
			continue;
		dt_node(de->d_name, node, node_len);
		found = hw_type < 0 || (node[0] && dt_hw_type(node) == hw_type);
		if (found)
			snprintf(bdf, len, "%s", de->d_name);
	}
	if (dir)
		closedir(dir);
	return found;
}

/* Writes the next descriptor (interrupt on completion); the caller rings the doorbell. */
static unsigned int dt_queue(struct dt *d, uint32_t op, uint64_t pattern)
{
	unsigned int i = d->tail++ % DT_RING;

	((struct dt_desc *)d->mem)[i] = (struct dt_desc){
		.op = op, .flags = 1, .src = op == 1 ? DT_IOVA + DT_SRC : 0, .dst = DT_IOVA + DT_DST,
		.len = DT_XFER, .pattern = pattern, .cookie = 0xd7a00000u + i,
		.completion = DT_IOVA + DT_CPL + i * sizeof(struct dt_completion),
	};
	return i;
}

/* One MSI-X interrupt within 5 s, acknowledged in INT_STATUS as a handler does. */
static void dt_wait(struct dt *d)
{
	struct pollfd p = { .fd = d->efd, .events = POLLIN };
	uint64_t n = 0;

	if (poll(&p, 1, 5000) != 1 || read(d->efd, &n, sizeof(n)) != sizeof(n) || n != 1)
		die("no MSI-X interrupt on the eventfd within 5 s (count %" PRIu64 ")", n);
	dt_write(d, DT_INT_STATUS, 4, 1);
	say("-> the eventfd fired: one MSI-X interrupt.");
}

static void dt_check(struct dt *d, unsigned int i, uint8_t byte)
{
	struct dt_completion *c = (struct dt_completion *)(d->mem + DT_CPL) + i;

	if (__atomic_load_n(&c->status, __ATOMIC_ACQUIRE) != 1 || c->bytes != DT_XFER ||
	    c->cookie != 0xd7a00000u + i)
		die("completion %u: status %u, %" PRIu64 " bytes", i, c->status, (uint64_t)c->bytes);
	for (uint64_t k = 0; k < DT_XFER; k++)
		if (d->mem[DT_DST + k] != (byte ? byte : d->mem[DT_SRC + k]))
			die("destination byte %" PRIu64 " is 0x%02x", k, d->mem[DT_DST + k]);
	say("-> completion record %u: done, %s; the destination holds the expected bytes.", i,
	    human(c->bytes));
}

/* BAR0's region info and whether its sparse-mmap capability covers the doorbell page. */
static bool dt_bar0(struct dt *d, struct tour *t)
{
	union {
		struct vfio_region_info info;
		char raw[512];
	} r = { .info = { .argsz = sizeof(r), .index = VFIO_PCI_BAR0_REGION_INDEX } };
	struct vfio_info_cap_header *h;
	bool mappable = false;

	expect_ok(xioctl(d->dev, VFIO_DEVICE_GET_REGION_INFO, &r), "GET_REGION_INFO(BAR0)");
	if (r.info.argsz > sizeof(r))
		die("BAR0's region info needs %u bytes", r.info.argsz);
	d->bar0 = r.info.offset;
	for (uint32_t off = r.info.flags & VFIO_REGION_INFO_FLAG_CAPS ? r.info.cap_offset : 0;
	     off; off = h->next) {
		struct vfio_region_info_cap_sparse_mmap *sp = (void *)(r.raw + off);

		h = (void *)(r.raw + off);
		for (uint32_t a = 0; h->id == VFIO_REGION_INFO_CAP_SPARSE_MMAP && a < sp->nr_areas; a++)
			mappable |= sp->areas[a].offset <= DT_DOORBELL &&
				    sp->areas[a].offset + sp->areas[a].size >= DT_DOORBELL + t->page;
	}
	say("-> BAR0: %s at offset 0x%" PRIx64 " of the device fd; the doorbell page is%s in a"
	    " sparse-mmap area.", human(r.info.size), d->bar0, mappable ? "" : " not");
	return mappable && r.info.flags & VFIO_REGION_INFO_FLAG_MMAP;
}

static void ch_driver(struct tour *t)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
	struct vfio_device_attach_iommufd_pt at = { .argsz = sizeof(at) };
	struct { struct vfio_irq_set s; int32_t fd; } irq = { .s = {
		.argsz = sizeof(irq), .index = VFIO_PCI_MSIX_IRQ_INDEX, .count = 1,
		.flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER } };
	struct vfio_region_info cfg = { .argsz = sizeof(cfg), .index = VFIO_PCI_CONFIG_REGION_INDEX };
	struct dt d = { .dev = -1 };
	char bdf[256], node[300];
	uint64_t iova = DT_IOVA, left, status, err, fault;
	unsigned int i;
	uint32_t ioas;
	uint16_t cmd;
	bool mappable;
	int fd;

	step("Look for a dma-test function (%04x:%04x) in " PCI "/devices", DT_VENDOR, DT_DEVICE);
	if (!dt_find(bdf, sizeof(bdf), node, sizeof(node), -1)) {
		say("There is none on this machine (tools/tour.sh runs the tour on examples/tour.json,");
		say("which has one): this chapter needs one and is skipped.");
		return;
	}
	if (!node[0]) {
		say("-> %s is not bound to vfio-pci (no vfio-dev/): the chapter is skipped.", bdf);
		return;
	}
	say("-> %s, bound to vfio-pci; its vfio-dev/ names the cdev %s.", bdf, node);

	step("open(\"%s\"), VFIO_DEVICE_BIND_IOMMUFD to a fresh /dev/iommu, attach a new IOAS", node);
	d.dev = open(node, O_RDWR | O_CLOEXEC);
	fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (d.dev < 0 || fd < 0)
		die("open of %s or /dev/iommu: %s", node, strerror(errno));
	bind.iommufd = fd;
	expect_ok(xioctl(d.dev, VFIO_DEVICE_BIND_IOMMUFD, &bind), "VFIO_DEVICE_BIND_IOMMUFD");
	expect_ok(ioas_alloc(fd, &ioas), "IOMMU_IOAS_ALLOC");
	at.pt_id = ioas;
	expect_ok(xioctl(d.dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at), "ATTACH_IOMMUFD_PT");
	say("-> device %u of the iommufd, attached to IOAS %u (through HWPT %u): all its DMA",
	    bind.out_devid, ioas, at.pt_id);
	say("now goes through that IOAS's page table.");

	step("IOMMU_IOAS_MAP of a ring, completions and a source at IOVA 0x%" PRIx64 ", and a"
	     " destination on its own", DT_IOVA);
	d.mem = mmap(NULL, DT_MEM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (d.mem == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	for (uint64_t k = 0; k < DT_XFER; k++)
		d.mem[DT_SRC + k] = (uint8_t)(k * 7 + 3);
	expect_ok(map(fd, ioas, IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
		      IOMMU_IOAS_MAP_WRITEABLE, d.mem, DT_DST, &iova), "IOMMU_IOAS_MAP");
	iova = DT_IOVA + DT_DST;
	expect_ok(map(fd, ioas, IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE,
		      d.mem + DT_DST, DT_XFER, &iova), "IOMMU_IOAS_MAP");

	step("Regions: BAR0 and config; COMMAND |= Memory | Bus Master, by pwrite to config");
	mappable = dt_bar0(&d, t);
	expect_ok(xioctl(d.dev, VFIO_DEVICE_GET_REGION_INFO, &cfg), "GET_REGION_INFO(config)");
	d.cfg = cfg.offset;
	if (pread(d.dev, &cmd, 2, (off_t)(d.cfg + PCI_COMMAND)) != 2)
		die("pread of COMMAND: %s", strerror(errno));
	cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	if (pwrite(d.dev, &cmd, 2, (off_t)(d.cfg + PCI_COMMAND)) != 2)
		die("pwrite of COMMAND: %s", strerror(errno));
	say("-> COMMAND = 0x%04x. Without Bus Master the device may do no DMA at all.", cmd);

	step("Queue 0: RING_BASE = 0x%" PRIx64 ", RING_SIZE = %u, CTRL = ENABLE | IRQ; MSI-X"
	     " vector 0 -> an eventfd (VFIO_DEVICE_SET_IRQS)", DT_IOVA, DT_RING);
	dt_write(&d, DT_Q0_RING_BASE, 8, DT_IOVA);
	dt_write(&d, DT_Q0_RING_SIZE, 4, DT_RING);
	dt_write(&d, DT_Q0_CTRL, 4, 3);
	d.efd = irq.fd = eventfd(0, EFD_CLOEXEC);
	if (d.efd < 0)
		die("eventfd: %s", strerror(errno));
	expect_ok(xioctl(d.dev, VFIO_DEVICE_SET_IRQS, &irq), "SET_IRQS(MSI-X 0)");

	step("COPY %s from the source to the destination; doorbell: pwrite TAIL = 1",
	     human(DT_XFER));
	i = dt_queue(&d, 1, 0);
	dt_write(&d, DT_Q0_TAIL, 4, d.tail % DT_RING);
	dt_wait(&d);
	dt_check(&d, i, 0);

	if (mappable) {
		volatile uint32_t *bell = mmap(NULL, t->page, PROT_READ | PROT_WRITE, MAP_SHARED,
					       d.dev, (off_t)(d.bar0 + DT_DOORBELL));

		if (bell == MAP_FAILED)
			die("mmap of the doorbell page: %s", strerror(errno));
		step("FILL it with 0xa5; doorbell: a store to the mmapped doorbell page, no syscall");
		i = dt_queue(&d, 2, UINT64_C(0xa5a5a5a5a5a5a5a5));
		/* A driver reads a register before a posted doorbell: it orders our stores too. */
		if ((dt_read(&d, DT_Q0_STATUS) & 3) != 3)
			die("queue 0 is not running and idle");
		__atomic_store_n(bell, d.tail % DT_RING, __ATOMIC_RELEASE);
		dt_wait(&d);
		dt_check(&d, i, 0xa5);
		munmap((void *)bell, t->page);
	}

	step("IOMMU_IOAS_UNMAP of the destination, then the same COPY again");
	expect_ok(unmap(fd, ioas, DT_IOVA + DT_DST, DT_XFER, &left), "IOMMU_IOAS_UNMAP");
	i = dt_queue(&d, 1, 0);
	dt_write(&d, DT_Q0_TAIL, 4, d.tail % DT_RING);
	dt_wait(&d);
	status = dt_read(&d, DT_Q0_STATUS);
	err = dt_read(&d, DT_Q0_ERRNO);
	fault = dt_read(&d, DT_Q0_ERROR_IOVA) | dt_read(&d, DT_Q0_ERROR_IOVA + 4) << 32;
	if (!(status & 4) || dt_read(&d, DT_Q0_ERROR) != 1 || err != EFAULT ||
	    fault != DT_IOVA + DT_DST || ((struct dt_completion *)(d.mem + DT_CPL))[i].status)
		die("queue 0: STATUS 0x%" PRIx64 ", ERRNO %" PRIu64 ", ERROR_IOVA 0x%" PRIx64,
		    status, err, fault);
	say("-> STATUS 0x%" PRIx64 " (ERROR), ERROR 1 (DMA), ERRNO %s, ERROR_IOVA 0x%" PRIx64 ":",
	    status, errname((int)err), fault);
	say("the IOMMU refused the write and the queue stopped there, as hardware does: no");
	say("completion record, and the interrupt still tells the driver. docs/vfio.md has more.");

	dt_write(&d, DT_Q0_CTRL, 4, 0);
	irq.s.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
	irq.s.count = 0;
	irq.s.argsz = sizeof(irq.s);
	expect_ok(xioctl(d.dev, VFIO_DEVICE_SET_IRQS, &irq.s), "SET_IRQS(MSI-X off)");
	close(d.efd);
	close(d.dev);
	close(fd);
	munmap(d.mem, DT_MEM);
}

/* ---- chapter 15: nested translation, the guest's own stage-1 tables ----------------------- */

/*
 * "Guest RAM": our memory at IPA NG_BASE, mapped into an IOAS that becomes the nest parent
 * (stage 2). The guest's page tables, the dma-test's ring, completions, source and
 * destination all live in it; the device sees them through stage-1 IOVAs the guest chose.
 */
#define NG_BASE UINT64_C(0x80000000)
#define NG_SIZE (1 * MiB)
#define NG_DATA (NG_BASE + 64 * KiB)	/* IPA of the dma-test's 16 KiB, DT_IOVA in stage 1 */
#define NG_SPARE (NG_BASE + 128 * KiB)	/* a page the guest moves the destination to */
#define NG_FAULT UINT64_C(0x20000000)	/* an IOVA the guest has not mapped */
#define NG_VSID 0x42u

struct ng {
	int fd, efd, ffd, qfd;	/* iommufd, MSI-X eventfd, fault fd, vEVENTQ fd */
	struct dt d;
	uint8_t *ram;
	uint64_t next;		/* the guest's page allocator (an IPA) */
	uint64_t root;		/* stage-1 root table (IPA) */
	long type;		/* IOMMU_HW_INFO_TYPE_ARM_SMMUV3 or _INTEL_VTD */
	uint32_t devid, ioas, parent, viommu, nested;
};

static uint64_t *ng_ptr(struct ng *g, uint64_t ipa)
{
	return (uint64_t *)(g->ram + (ipa - NG_BASE));
}

static uint64_t ng_page(struct ng *g)
{
	uint64_t ipa = g->next;

	g->next += 4 * KiB;
	memset(ng_ptr(g, ipa), 0, 4 * KiB);
	return ipa;
}

/*
 * The guest maps @iova -> @ipa in its 4-level, 4 KiB stage 1, in the format of its IOMMU: AArch64
 * LPAE (table 0b11; page 0b11 with AF, nG, AP[1] EL0 access, inner shareable) or x86-64 first
 * stage (P, R/W, U/S at every level). Returns the leaf.
 */
static uint64_t *ng_map(struct ng *g, uint64_t iova, uint64_t ipa)
{
	bool arm = g->type == IOMMU_HW_INFO_TYPE_ARM_SMMUV3;
	uint64_t table = g->root, *pte = NULL;

	for (int level = 0; level < 4; level++) {
		pte = ng_ptr(g, table) + ((iova >> (39 - 9 * level)) & 511);
		if (level == 3)
			break;
		if (!*pte)
			*pte = ng_page(g) | (arm ? 3 : 7);
		table = *pte & UINT64_C(0xfffffffff000);
	}
	*pte = ipa | (arm ? 3 | 1 << 10 | 1 << 11 | 1 << 6 | 3 << 8 : 7);
	return pte;
}

/* The guest's invalidation of @iova: TLBI_NH_VA (ASID 7) on the vIOMMU, or a VT-d S1 entry. */
static void ng_invalidate(struct ng *g, uint64_t iova)
{
	uint64_t tlbi[2] = { 0x12 | UINT64_C(7) << 48, iova };
	struct iommu_hwpt_vtd_s1_invalidate vtd = { .addr = iova, .npages = 1 };
	bool arm = g->type == IOMMU_HW_INFO_TYPE_ARM_SMMUV3;
	struct iommu_hwpt_invalidate inv = {
		.size = sizeof(inv), .hwpt_id = arm ? g->viommu : g->nested,
		.data_uptr = arm ? (uintptr_t)tlbi : (uintptr_t)&vtd,
		.data_type = arm ? IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 :
				   IOMMU_HWPT_INVALIDATE_DATA_VTD_S1,
		.entry_len = arm ? sizeof(tlbi) : sizeof(vtd), .entry_num = 1,
	};

	expect_ok(xioctl(g->fd, IOMMU_HWPT_INVALIDATE, &inv), "IOMMU_HWPT_INVALIDATE");
	expect_u64(inv.entry_num, 1, "entry_num");
}

/*
 * The device behind @node bound to a fresh iommufd, guest RAM as its stage 2 (NEST_PARENT), the
 * guest's stage 1 over it (SMMUv3: vIOMMU, vDEVICE, vEVENTQ, a CD and a vSTE; VT-d: a VTD_S1
 * HWPT with a fault queue), attached, and the dma-test's memory mapped by the guest.
 */
static void ng_nest(struct ng *g, const char *node)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
	struct vfio_device_attach_iommufd_pt at = { .argsz = sizeof(at) };
	struct iommu_hwpt_alloc ha = { .size = sizeof(ha) };
	bool arm = g->type == IOMMU_HW_INFO_TYPE_ARM_SMMUV3;
	uint64_t iova = NG_BASE;

	g->d.dev = open(node, O_RDWR | O_CLOEXEC);
	g->fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	if (g->d.dev < 0 || g->fd < 0)
		die("open of %s or /dev/iommu: %s", node, strerror(errno));
	bind.iommufd = g->fd;
	expect_ok(xioctl(g->d.dev, VFIO_DEVICE_BIND_IOMMUFD, &bind), "VFIO_DEVICE_BIND_IOMMUFD");
	g->devid = bind.out_devid;
	g->ram = mmap(NULL, NG_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (g->ram == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	g->next = NG_BASE;
	expect_ok(ioas_alloc(g->fd, &g->ioas), "IOMMU_IOAS_ALLOC");
	expect_ok(map(g->fd, g->ioas, IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
		      IOMMU_IOAS_MAP_WRITEABLE, g->ram, NG_SIZE, &iova), "IOMMU_IOAS_MAP");
	ha.flags = IOMMU_HWPT_ALLOC_NEST_PARENT;
	ha.dev_id = g->devid;
	ha.pt_id = g->ioas;
	expect_ok(xioctl(g->fd, IOMMU_HWPT_ALLOC, &ha), "IOMMU_HWPT_ALLOC(NEST_PARENT)");
	g->parent = ha.out_hwpt_id;
	say("-> %s of guest RAM at IPA 0x%" PRIx64 " in IOAS %u; HWPT %u is stage 2 over it"
	    " (NEST_PARENT).", human(NG_SIZE), NG_BASE, g->ioas, g->parent);
	g->root = ng_page(g);
	if (arm) {
		struct iommu_viommu_alloc va = { .size = sizeof(va), .dev_id = g->devid,
						 .type = IOMMU_VIOMMU_TYPE_ARM_SMMUV3,
						 .hwpt_id = g->parent };
		struct iommu_vdevice_alloc vd = { .size = sizeof(vd), .dev_id = g->devid,
						  .virt_id = NG_VSID };
		struct iommu_veventq_alloc eq = { .size = sizeof(eq), .veventq_depth = 8,
						  .type = IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 };
		struct iommu_hwpt_arm_smmuv3 ste = { .ste = { 0 } };
		uint64_t cd = ng_page(g);

		expect_ok(xioctl(g->fd, IOMMU_VIOMMU_ALLOC, &va), "IOMMU_VIOMMU_ALLOC");
		g->viommu = vd.viommu_id = eq.viommu_id = va.out_viommu_id;
		expect_ok(xioctl(g->fd, IOMMU_VDEVICE_ALLOC, &vd), "IOMMU_VDEVICE_ALLOC");
		expect_ok(xioctl(g->fd, IOMMU_VEVENTQ_ALLOC, &eq), "IOMMU_VEVENTQ_ALLOC");
		g->qfd = (int)eq.out_veventq_fd;
		/* The guest's context descriptor: 4 KiB granule, 48-bit VA and IPA, R, A, ASID 7. */
		ng_ptr(g, cd)[0] = 16 | UINT64_C(1) << 30 | UINT64_C(5) << 32 | UINT64_C(1) << 41 |
				   UINT64_C(1) << 45 | UINT64_C(1) << 46 | UINT64_C(1) << 31 |
				   UINT64_C(7) << 48;
		ng_ptr(g, cd)[1] = g->root;
		ste.ste[0] = 1 | 5 << 1 | cd; /* V, Config = stage 1 translate, S1ContextPtr */
		ha = (struct iommu_hwpt_alloc){ .size = sizeof(ha), .dev_id = g->devid,
						.pt_id = g->viommu,
						.data_type = IOMMU_HWPT_DATA_ARM_SMMUV3,
						.data_len = sizeof(ste), .data_uptr = (uintptr_t)&ste };
		expect_ok(xioctl(g->fd, IOMMU_HWPT_ALLOC, &ha), "IOMMU_HWPT_ALLOC(ARM_SMMUV3)");
		say("-> vIOMMU %u (ARM_SMMUV3) over it, vDEVICE vSID 0x%x, a vEVENTQ; the guest's CD"
		    " at IPA 0x%" PRIx64 ",", g->viommu, NG_VSID, cd);
		say("   its stage-1 root at 0x%" PRIx64 "; nested HWPT %u from the guest's STE.",
		    g->root, ha.out_hwpt_id);
	} else {
		struct iommu_fault_alloc fa = { .size = sizeof(fa) };
		struct iommu_hwpt_vtd_s1 s1 = { .pgtbl_addr = g->root, .addr_width = 48 };

		expect_ok(xioctl(g->fd, IOMMU_FAULT_QUEUE_ALLOC, &fa), "IOMMU_FAULT_QUEUE_ALLOC");
		g->ffd = (int)fa.out_fault_fd;
		ha = (struct iommu_hwpt_alloc){ .size = sizeof(ha), .dev_id = g->devid,
						.flags = IOMMU_HWPT_FAULT_ID_VALID,
						.fault_id = fa.out_fault_id, .pt_id = g->parent,
						.data_type = IOMMU_HWPT_DATA_VTD_S1,
						.data_len = sizeof(s1), .data_uptr = (uintptr_t)&s1 };
		expect_ok(xioctl(g->fd, IOMMU_HWPT_ALLOC, &ha), "IOMMU_HWPT_ALLOC(VTD_S1)");
		say("-> nested HWPT %u (VTD_S1: first-stage root at IPA 0x%" PRIx64 ", 48 bits),"
		    " fault-capable: its", ha.out_hwpt_id, g->root);
		say("   page requests go to fault queue %u.", fa.out_fault_id);
	}
	g->nested = at.pt_id = ha.out_hwpt_id;
	expect_ok(xioctl(g->d.dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at), "ATTACH_IOMMUFD_PT");
	for (uint64_t off = 0; off < DT_MEM; off += 4 * KiB)
		ng_map(g, DT_IOVA + off, NG_DATA + off);
	g->d.mem = (uint8_t *)ng_ptr(g, NG_DATA);
	for (uint64_t k = 0; k < DT_XFER; k++)
		g->d.mem[DT_SRC + k] = (uint8_t)(k * 5 + 1);
	say("-> attached; the guest maps IOVA 0x%" PRIx64 "..+%s -> IPA 0x%" PRIx64 " in its own"
	    " tables.", DT_IOVA, human(DT_MEM), NG_DATA);
}

/* BAR0, Memory and Bus Master, queue 0 on the ring at DT_IOVA, MSI-X vector 0 -> an eventfd. */
static void ng_queue(struct ng *g)
{
	struct vfio_region_info bar = { .argsz = sizeof(bar), .index = VFIO_PCI_BAR0_REGION_INDEX };
	struct vfio_region_info cfg = { .argsz = sizeof(cfg), .index = VFIO_PCI_CONFIG_REGION_INDEX };
	struct { struct vfio_irq_set s; int32_t fd; } irq = { .s = {
		.argsz = sizeof(irq), .index = VFIO_PCI_MSIX_IRQ_INDEX, .count = 1,
		.flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER } };
	uint16_t cmd;

	expect_ok(xioctl(g->d.dev, VFIO_DEVICE_GET_REGION_INFO, &bar), "GET_REGION_INFO(BAR0)");
	expect_ok(xioctl(g->d.dev, VFIO_DEVICE_GET_REGION_INFO, &cfg), "GET_REGION_INFO(config)");
	g->d.bar0 = bar.offset;
	if (pread(g->d.dev, &cmd, 2, (off_t)(cfg.offset + PCI_COMMAND)) != 2)
		die("pread of COMMAND: %s", strerror(errno));
	cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
	if (pwrite(g->d.dev, &cmd, 2, (off_t)(cfg.offset + PCI_COMMAND)) != 2)
		die("pwrite of COMMAND: %s", strerror(errno));
	dt_write(&g->d, DT_Q0_RING_BASE, 8, DT_IOVA);
	dt_write(&g->d, DT_Q0_RING_SIZE, 4, DT_RING);
	dt_write(&g->d, DT_Q0_CTRL, 4, 3);
	g->d.efd = irq.fd = eventfd(0, EFD_CLOEXEC);
	if (g->d.efd < 0)
		die("eventfd: %s", strerror(errno));
	expect_ok(xioctl(g->d.dev, VFIO_DEVICE_SET_IRQS, &irq), "SET_IRQS(MSI-X 0)");
}

/* FILL @iova's page with @byte; the caller waits for its interrupt. */
static unsigned int ng_fill(struct ng *g, uint64_t iova, uint8_t byte)
{
	unsigned int i = dt_queue(&g->d, 2, UINT64_C(0x0101010101010101) * byte);

	((struct dt_desc *)g->d.mem)[i].dst = iova;
	dt_write(&g->d, DT_Q0_TAIL, 4, g->d.tail % DT_RING);
	return i;
}

static bool ng_page_is(struct ng *g, uint64_t ipa, uint8_t byte)
{
	const uint8_t *p = (const uint8_t *)ng_ptr(g, ipa);

	for (uint64_t k = 0; k < DT_XFER; k++)
		if (p[k] != byte)
			return false;
	return true;
}

static void ng_run(struct ng *g, const char *bdf, const char *node)
{
	bool arm = g->type == IOMMU_HW_INFO_TYPE_ARM_SMMUV3;
	unsigned int i;

	step("%s: %s behind an %s; a nest parent, then the guest's stage 1", arm ? "SMMUv3" : "VT-d",
	     bdf, arm ? "SMMUv3 (GET_HW_INFO type ARM_SMMUV3)" : "Intel VT-d (type INTEL_VTD)");
	ng_nest(g, node);
	ng_queue(g);

	step("COPY %s through both stages: IOVA -> (guest's tables) IPA -> (stage 2) our page",
	     human(DT_XFER));
	i = dt_queue(&g->d, 1, 0);
	dt_write(&g->d, DT_Q0_TAIL, 4, g->d.tail % DT_RING);
	dt_wait(&g->d);
	dt_check(&g->d, i, 0);

	step("The guest moves its destination page to IPA 0x%" PRIx64 " without an invalidation,"
	     " then FILLs it with 0x5a", NG_SPARE);
	ng_map(g, DT_IOVA + DT_DST, NG_SPARE);
	memset(ng_ptr(g, NG_SPARE), 0, DT_XFER);
	ng_fill(g, DT_IOVA + DT_DST, 0x5a);
	dt_wait(&g->d);
	if (!ng_page_is(g, NG_DATA + DT_DST, 0x5a) || !ng_page_is(g, NG_SPARE, 0))
		die("the FILL did not land in the old destination page");
	say("-> it landed in the OLD page: the IOTLB still holds the translation, as hardware");
	say("   does until the guest invalidates it.");
	step("IOMMU_HWPT_INVALIDATE of that IOVA (%s), and the FILL again with 0x6b",
	     arm ? "the guest's TLBI_NH_VA, through the vIOMMU" : "a VTD_S1 entry, on the nested HWPT");
	ng_invalidate(g, DT_IOVA + DT_DST);
	ng_fill(g, DT_IOVA + DT_DST, 0x6b);
	dt_wait(&g->d);
	if (!ng_page_is(g, NG_SPARE, 0x6b) || !ng_page_is(g, NG_DATA + DT_DST, 0x5a))
		die("after the invalidation the FILL did not land in the new page");
	say("-> now it reaches the new page.");

	step("FILL at IOVA 0x%" PRIx64 ", which the guest never mapped", NG_FAULT);
	if (arm) {
		struct {
			struct iommufd_vevent_header hdr;
			struct iommu_vevent_arm_smmuv3 evt;
		} rec;
		struct pollfd p = { .fd = g->qfd, .events = POLLIN };

		ng_fill(g, NG_FAULT, 0x77);
		dt_wait(&g->d);
		if (!(dt_read(&g->d, DT_Q0_STATUS) & 4) || dt_read(&g->d, DT_Q0_ERRNO) != EFAULT)
			die("queue 0 did not stop with EFAULT");
		if (poll(&p, 1, 5000) != 1 || read(g->qfd, &rec, sizeof(rec)) != sizeof(rec))
			die("no vEVENT: %s", strerror(errno));
		expect_u64(rec.evt.evt[0] & 0xff, 0x10, "the event ID (F_TRANSLATION)");
		expect_u64(rec.evt.evt[0] >> 32, NG_VSID, "the event's StreamID (the vSID)");
		expect_u64(rec.evt.evt[2], NG_FAULT, "the event's InputAddr");
		say("-> the queue stopped (ERRNO EFAULT), and the vEVENTQ has an ARM_SMMUV3 record:");
		say("   F_TRANSLATION for vSID 0x%x at 0x%" PRIx64 ", what the guest's SMMU driver reads"
		    " from its event queue.", NG_VSID, NG_FAULT);
	} else {
		struct iommu_hwpt_pgfault rec;
		struct iommu_hwpt_page_response resp = { .code = IOMMUFD_PAGE_RESP_SUCCESS };
		struct pollfd p = { .fd = g->ffd, .events = POLLIN };
		uint64_t page = ng_page(g);

		i = ng_fill(g, NG_FAULT, 0x77);
		if (poll(&p, 1, 5000) != 1 || read(g->ffd, &rec, sizeof(rec)) != sizeof(rec))
			die("no page request on the fault fd: %s", strerror(errno));
		expect_u64(rec.addr, NG_FAULT, "the page request's address");
		expect_u64(rec.dev_id, g->devid, "the page request's device");
		expect_u64(rec.perm, IOMMU_PGFAULT_PERM_WRITE, "the page request's permission");
		say("-> a page request on the fault fd: device %u, WRITE at 0x%" PRIx64 ". The guest"
		    " maps a page", rec.dev_id, (uint64_t)rec.addr);
		say("   there and we answer SUCCESS (write(), cookie %u); the device retries.",
		    rec.cookie);
		ng_map(g, NG_FAULT, page);
		resp.cookie = rec.cookie;
		if (write(g->ffd, &resp, sizeof(resp)) != sizeof(resp))
			die("write of the page response: %s", strerror(errno));
		dt_wait(&g->d);
		if (!ng_page_is(g, page, 0x77) ||
		    ((struct dt_completion *)(g->d.mem + DT_CPL))[i].status != 1)
			die("the FILL did not complete after the page response");
		say("-> the FILL completed into the page the guest mapped.");
	}

	dt_write(&g->d, DT_Q0_CTRL, 4, 0);
	close(g->d.efd);
	close(g->d.dev);
	if (arm)
		close(g->qfd);
	else
		close(g->ffd);
	close(g->fd);
	munmap(g->ram, NG_SIZE);
}

static void ch_nested(struct tour *t)
{
	static const long types[] = { IOMMU_HW_INFO_TYPE_ARM_SMMUV3, IOMMU_HW_INFO_TYPE_INTEL_VTD };
	char bdf[256], node[300];

	(void)t;
	say("A VMM with a virtual IOMMU (QEMU's arm-smmuv3,accel=on or intel-iommu,fsts=on) lets");
	say("the guest own stage 1: its page tables live in guest RAM, the host's IOMMU walks them");
	say("and then translates every table fetch and the output through stage 2.");
	for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
		struct ng g = { .fd = -1, .type = types[k] };

		if (!dt_find(bdf, sizeof(bdf), node, sizeof(node), types[k])) {
			say("No dma-test for vfio-pci behind an %s here: that half is skipped.",
			    k ? "Intel VT-d" : "SMMUv3");
			continue;
		}
		ng_run(&g, bdf, node);
	}
}

/* ---- the table of contents ------------------------------------------------------------- */

static const struct chapter {
	const char *title;
	void (*run)(struct tour *t);
} chapters[] = {
	{ "Opening /dev/iommu and creating IO address spaces", ch_open },
	{ "Which IOVAs can be used? (IOMMU_IOAS_IOVA_RANGES)", ch_ranges },
	{ "Reserved ranges (IOMMU_TEST_CMD ADD_RESERVED)", ch_reserved },
	{ "Steering automatic allocation (IOMMU_IOAS_ALLOW_IOVAS)", ch_allow },
	{ "Mapping memory (IOMMU_IOAS_MAP)", ch_map },
	{ "Sharing mappings between IOASes (IOMMU_IOAS_COPY)", ch_copy },
	{ "When things go wrong: the errors and what they mean", ch_errors },
	{ "Options (IOMMU_OPTION)", ch_options },
	{ "VFIO type1 compatibility on the same fd", ch_vfio },
	{ "Teardown (IOMMU_DESTROY and close)", ch_teardown },
	{ "Devices and page tables (mock IOMMU)", ch_devices },
	{ "IOMMU groups, their types, and hot unplug (sysfs)", ch_groups },
	{ "I/O page faults: a device faults, we map and answer, its DMA completes", ch_faults },
	{ "A userspace driver and its device (VFIO cdev, iommufd, dma-test)", ch_driver },
	{ "Nested translation: the guest's own page tables (SMMUv3 and VT-d)", ch_nested },
};

int main(void)
{
	struct tour t = { .fd = -1, .page = (uint64_t)sysconf(_SC_PAGESIZE) };

	setvbuf(stdout, NULL, _IOLBF, 0);
	t.buf = aligned_alloc(BUF_SIZE, BUF_SIZE);
	if (!t.buf)
		die("cannot allocate the %s buffer", human(BUF_SIZE));
	memset(t.buf, 0x5a, BUF_SIZE);

	printf("A tour of /dev/iommu (iommufd). Every step checks its result.\n");
	for (size_t i = 0; i < sizeof(chapters) / sizeof(chapters[0]); i++) {
		chapter_no = (int)i + 1;
		printf("\n%d. %s\n", chapter_no, chapters[i].title);
		chapters[i].run(&t);
	}
	printf("\nThe tour is over: every step behaved as the kernel's iommufd does.\n");
	free(t.buf);
	return 0;
}
