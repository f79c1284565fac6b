// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: sequences of operations on one iommufd context.
 *
 * An input is a program for a tiny machine. Each operation starts with an opcode byte:
 *
 *   ioctl     an iommufd ioctl (0x80-0x94, IOMMU_TEST_CMD 0xa0), a VFIO compat request or a
 *             generic fd request, on the context or on an fd an earlier operation created
 *   read      read() of an event fd the sequence created (fault and vEVENTQ fds)
 *   write     write() of one
 *   mmap      mmap of the context at an offset a reply handed out or an object's (the
 *             vIOMMU region), a touch of its pages, maybe a DESTROY, munmap
 *   close     close of an fd the sequence created
 *
 * An ioctl's argument is built a 32-bit word at a time, each word by a selector byte: raw
 * bytes of the input, an object ID the sequence got back so far (or a bad one), a small
 * constant, the argument's own size, or a pointer (two words) into the scratch area: good
 * memory, NULL, a guard page, a read-only page, a range that runs into the guard page, an
 * unmapped or a non-canonical address. After a successful ioctl every word the call changed
 * that looks like an ID is remembered as one, every new fd of the library's as an fd, every
 * changed page-aligned 64-bit value as an mmap offset. So a seed that allocates an IOAS, a mock
 * device, a vIOMMU... lets the fuzzer reach every object with IDs that exist.
 *
 * At the end of each input every fd the sequence created and the context are closed, and the
 * library must be back where it started: no live object, no context, no allocation (deferred
 * frees counted, uiommu_alloc_live_settled()), no fd. A difference aborts, which libFuzzer
 * reports with the input.
 *
 * `fuzz_ioctl -dump=DIR` writes the seed corpus (seeds_dump() below) into DIR; FUZZ_TRACE=1
 * prints each operation and its result. docs/fuzzing.md has how to run it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "iommufd/iommufd_private.h"
#include "lib/fail.h"
#include "lib/rcu.h"
#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"
#include "uiommu/vfio_compat.h"
#include "seed.h"

enum { OP_IOCTL, OP_IOCTL_FD, OP_READ, OP_WRITE, OP_MMAP, OP_CLOSE, OP_NR };

/* Word selectors of an ioctl argument. */
enum { W_RAW, W_ID, W_SMALL, W_SIZE, W_PTR, W_NR };

enum {
	P_GOOD,      /* + 256 * (byte / P_NR) into the good area */
	P_NULL,
	P_GUARD,     /* a PROT_NONE page */
	P_RDONLY,    /* a read-only page: output structs must give EFAULT */
	P_CROSS,     /* the last 8 bytes before the guard page */
	P_UNMAPPED,  /* canonical, never mapped by us */
	P_NONCANON,
	P_NR,
};

#define MAX_IDS 32
#define MAX_FDS 16
#define MAX_OFFS 8
#define MAX_WORDS 32
#define GOOD_PAGES 16

static const unsigned int ioctl_nrs[] = {
	0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a,
	0x8b, 0x8c, 0x8d, 0x8e, 0x8f, 0x90, 0x91, 0x92, 0x93, 0x94, 0xa0,
};

static const unsigned long other_requests[] = {
	VFIO_GET_API_VERSION, VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU, VFIO_IOMMU_GET_INFO,
	VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA, FIOCLEX, FIONCLEX, FIONBIO, FIOASYNC,
	FIONREAD, _IO(IOMMUFD_TYPE, 0x95), _IO(IOMMUFD_TYPE, 0x7f), 0,
};

static const uint32_t smalls[] = {
	0, 1, 2, 3, 4, 7, 8, 16, 64, 0x1000, 0x2000, 0x10000, 0x100000, 0x7fffffff,
	0x80000000, 0xffffffff, IOMMU_TEST_OP_MOCK_DOMAIN, IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
	IOMMU_TEST_OP_CREATE_ACCESS, IOMMU_TEST_OP_TRIGGER_IOPF, IOMMU_TEST_OP_TRIGGER_VEVENT,
	IOMMU_TEST_OP_DMABUF_GET, IOMMU_HWPT_DATA_SELFTEST, IOMMU_VIOMMU_TYPE_SELFTEST,
	IOMMU_VEVENTQ_TYPE_SELFTEST, IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_HWPT_FAULT_ID_VALID,
	IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_FIXED_IOVA,
};

struct seq {
	const uint8_t *p;
	size_t left;
	int fd;                     /* the context */
	uint32_t ids[MAX_IDS];
	unsigned int nr_ids;
	int fds[MAX_FDS];           /* fds this input created (not the context) */
	unsigned int nr_fds;
	uint64_t offs[MAX_OFFS];    /* mmap offsets replies handed out */
	unsigned int nr_offs;
};

static bool trace; /* FUZZ_TRACE=1: each operation's result on stderr, to check seeds */
static unsigned char *scratch; /* GOOD_PAGES good, 1 guard, 1 read-only */
static size_t page;
static long base_allocs;
static int base_fds;
static bool fds_at_start[1024];

static uint8_t take8(struct seq *s)
{
	if (!s->left)
		return 0;
	s->left--;
	return *s->p++;
}

static uint32_t take32(struct seq *s)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++)
		v |= (uint32_t)take8(s) << (8 * i);
	return v;
}

static uint64_t pick_ptr(struct seq *s)
{
	uint8_t b = take8(s);
	uintptr_t good = (uintptr_t)scratch, guard = good + GOOD_PAGES * page;

	switch (b % P_NR) {
	case P_GOOD:
		return good + (uintptr_t)(b / P_NR) * 64 * 4 % (GOOD_PAGES * page);
	case P_NULL:
		return 0;
	case P_GUARD:
		return guard;
	case P_RDONLY:
		return guard + page;
	case P_CROSS:
		return guard - 8;
	case P_UNMAPPED:
		return (uint64_t)1 << 46;
	default:
		return (uint64_t)1 << 60;
	}
}

/*
 * Byte b < 0xe0: the (b mod n)-th ID the sequence got; 0xe0-0xef: the (b mod n)-th fd it got
 * (test ops name access fds and dma-bufs in ID fields); else 0..14, or 0xff: the bad ID.
 */
static uint32_t pick_id(struct seq *s)
{
	uint8_t b = take8(s);

	if (s->nr_ids && b < 0xe0)
		return s->ids[b % s->nr_ids];
	if (s->nr_fds && b < 0xf0)
		return (uint32_t)s->fds[b % s->nr_fds];
	return b == 0xff ? 0xffffffffu : (uint32_t)(b & 0xf);
}

/* Byte b < 0xf0: the (b mod n)-th fd the sequence got; else the context, or 0xff: -1. */
static int pick_fd(struct seq *s)
{
	uint8_t b = take8(s);

	if (s->nr_fds && b < 0xf0)
		return s->fds[b % s->nr_fds];
	return b == 0xff ? -1 : s->fd;
}

/* Builds the argument into @buf (at most MAX_WORDS words); returns its size in bytes. */
static size_t build_arg(struct seq *s, uint32_t *buf)
{
	unsigned int n = take8(s) % (MAX_WORDS + 1), i;

	memset(buf, 0, MAX_WORDS * 4);
	for (i = 0; i < n; i++) {
		uint8_t sel = take8(s);

		switch (sel % W_NR) {
		case W_RAW:
			buf[i] = take32(s);
			break;
		case W_ID:
			buf[i] = pick_id(s);
			break;
		case W_SMALL:
			buf[i] = smalls[(sel / W_NR) % (sizeof(smalls) / sizeof(smalls[0]))];
			break;
		case W_SIZE:
			buf[i] = n * 4;
			break;
		default: {
			uint64_t p = pick_ptr(s);

			/* Pointers are __aligned_u64: keep them on an 8-byte boundary. */
			if (i % 2 == 0 && i + 1 < MAX_WORDS) {
				buf[i] = (uint32_t)p;
				buf[++i] = (uint32_t)(p >> 32);
				if (i >= n)
					n = i + 1;
			} else {
				buf[i] = (uint32_t)p;
			}
		}
		}
	}
	/*
	 * ASan's shadow on x86-64, [0x7fff8000, 0x8fff7000) and [0x2008fff7000, 0x10007fff8000),
	 * is terabytes of readable memory a real process does not have: an operation that reads
	 * or pins every page of a range there runs for hours, in the kernel as here. Such
	 * addresses move above it (unmapped). Only those ranges: the PROT_NONE gap between them
	 * faults at once, and the (size, flags) pair of many structs reads as an address in it.
	 */
	for (i = 0; i + 1 < MAX_WORDS; i += 2) {
		uint64_t v = buf[i] | (uint64_t)buf[i + 1] << 32;

		if ((v >= 0x7fff8000ull && v < 0x8fff7000ull) ||
		    (v >= 0x2008fff7000ull && v < 0x10007fff8000ull))
			buf[i + 1] |= 1u << 14; /* bit 46 */
	}
	return n * 4;
}

static bool fd_is_new(int fd)
{
	return fd > 2 && fd < (int)(sizeof(fds_at_start)) && !fds_at_start[fd] &&
	       fcntl(fd, F_GETFD) >= 0;
}

/* Takes @fd if it is one this input created and did not know yet; returns whether it did. */
static bool remember_fd(struct seq *s, int fd)
{
	if (fd == s->fd || !fd_is_new(fd))
		return false;
	for (unsigned int i = 0; i < s->nr_fds; i++)
		if (s->fds[i] == fd)
			return false;
	if (s->nr_fds < MAX_FDS) {
		s->fds[s->nr_fds++] = fd;
		return true;
	}
	/* Full: nothing may outlive the input, so close it at once. */
	if (uiommu_close(fd))
		close(fd);
	return true;
}

static void remember_id(struct seq *s, uint32_t id)
{
	for (unsigned int i = 0; i < s->nr_ids; i++)
		if (s->ids[i] == id)
			return;
	if (s->nr_ids < MAX_IDS)
		s->ids[s->nr_ids++] = id;
}

/* What a successful call handed back: IDs, fds and mmap offsets among the changed words. */
static void harvest(struct seq *s, const uint32_t *before, const uint32_t *after, int rc)
{
	if (rc > 2)
		(void)remember_fd(s, rc);
	for (unsigned int i = 0; i < MAX_WORDS; i++) {
		/*
		 * An fd field holds an fd of the library's; an ID that happens to equal the
		 * number of one of the library's own fds (a region's memfd) is still an ID.
		 * Unchanged words too: the input may have guessed the new fd's number.
		 */
		if ((uiommu_is_fd((int)after[i]) || uiommu_event_is_fd((int)after[i])) &&
		    remember_fd(s, (int)after[i]))
			continue;
		if (before[i] == after[i])
			continue;
		if (after[i] && after[i] < 4096)
			remember_id(s, after[i]);
		if (i % 2 == 0 && i + 1 < MAX_WORDS) {
			uint64_t v = after[i] | (uint64_t)after[i + 1] << 32;

			if (v && !(v % page) && s->nr_offs < MAX_OFFS)
				s->offs[s->nr_offs++] = v;
		}
	}
}

static void op_ioctl(struct seq *s, bool on_other_fd)
{
	uint32_t before[MAX_WORDS], after[MAX_WORDS];
	uint8_t b = take8(s);
	unsigned long req;
	int fd = on_other_fd ? pick_fd(s) : s->fd;
	size_t len;
	int rc;

	if (b < 0xe0)
		req = _IO(IOMMUFD_TYPE, ioctl_nrs[b % (sizeof(ioctl_nrs) / sizeof(ioctl_nrs[0]))]);
	else
		req = other_requests[b % (sizeof(other_requests) / sizeof(other_requests[0]))];
	len = build_arg(s, before);
	memcpy(after, before, sizeof(after));
	if (req == VFIO_CHECK_EXTENSION || req == VFIO_SET_IOMMU) {
		/* These take an integer, not a pointer: the first word. */
		(void)uiommu_ioctl(fd, req, (void *)(uintptr_t)before[0]);
		return;
	}
	/* The argument pointer itself may be bad too. */
	if (take8(s) == 0xff) {
		rc = uiommu_ioctl(fd, req, (void *)(uintptr_t)pick_ptr(s));
	} else {
		if (trace) {
			fprintf(stderr, "ioctl fd %d nr %#lx:", fd, req & 0xff);
			for (unsigned int i = 0; i < len / 4; i++)
				fprintf(stderr, " %#x", before[i]);
		}
		rc = uiommu_ioctl(fd, req, after);
		if (trace)
			fprintf(stderr, " -> %d %s\n", rc, rc < 0 ? strerror(errno) : "");
		if (rc >= 0)
			harvest(s, before, after, rc);
	}
}

static void op_read_write(struct seq *s, bool write)
{
	int fd = pick_fd(s);
	size_t len = take8(s);
	uint64_t p;

	if (take8(s) % 4 == 0)
		len *= 16;
	/* Any byte offset: records that straddle the guard page, or start mid-record. */
	p = pick_ptr(s);
	p += take8(s);
	if (fd == s->fd || fd < 0)
		fd = s->nr_fds ? s->fds[0] : fd;
	if (trace && (fd < 0 || !uiommu_event_is_fd(fd)))
		fprintf(stderr, "%s fd %d: not an event fd\n", write ? "write" : "read", fd);
	if (fd < 0 || !uiommu_event_is_fd(fd))
		return; /* read()/write() of another fd is not the library's */
	ssize_t n = write ? uiommu_event_write(fd, (const void *)(uintptr_t)p, len) :
			    uiommu_event_read(fd, (void *)(uintptr_t)p, len);

	if (trace)
		fprintf(stderr, "%s fd %d %zu: %zd %s\n", write ? "write" : "read", fd, len, n,
			n < 0 ? strerror(errno) : "");
}

static void op_mmap(struct seq *s)
{
	uint8_t b = take8(s);
	size_t len = (size_t)(b % 4) * page + (b & 0x80 ? 1 : 0);
	uint8_t o = take8(s);
	uint64_t off;
	int prot = b & 0x10 ? PROT_READ : PROT_READ | PROT_WRITE;
	int flags = b & 0x20 ? MAP_PRIVATE : MAP_SHARED;
	unsigned char *m;

	/* A reply's offset, an object's (the ID names a region's owner), or any page. */
	if (o < 0x40 && s->nr_offs)
		off = s->offs[o % s->nr_offs];
	else if (o < 0xf0 && s->nr_ids)
		off = (uint64_t)s->ids[o % s->nr_ids] << IOMMUFD_MMAP_ID_SHIFT;
	else
		off = (uint64_t)take32(s) * page;
	if (b & 0x40)
		off += page;
	m = uiommu_mmap(NULL, len, prot, flags, s->fd, (off_t)off);
	if (trace)
		fprintf(stderr, "mmap %zu at %#llx: %s\n", len, (unsigned long long)off,
			m == MAP_FAILED ? strerror(errno) : "ok");
	if (m == MAP_FAILED)
		return;
	/* Every page of the mapping is the region's: reading it must not fault. */
	for (size_t i = 0; i < len; i += page)
		(void)*(volatile unsigned char *)(m + i);
	if (take8(s) & 1) {
		/* Left mapped across a DESTROY attempt of its owner, unmapped at the end. */
		(void)uiommu_ioctl(s->fd, IOMMU_DESTROY,
				   &(struct iommu_destroy){ .size = sizeof(struct iommu_destroy),
							    .id = pick_id(s) });
	}
	if (uiommu_munmap(m, len))
		abort();
}

static void op_close(struct seq *s)
{
	unsigned int i;

	if (!s->nr_fds)
		return;
	i = take8(s) % s->nr_fds;
	if (trace)
		fprintf(stderr, "close fd %d\n", s->fds[i]);
	if (uiommu_close(s->fds[i]))
		close(s->fds[i]);
	s->fds[i] = s->fds[--s->nr_fds];
}

/*
 * The open fds, from /proc/self/fd (one directory read, not a syscall per number): their
 * count, and in @open (if not NULL) a map of the low ones.
 */
static int fds_scan(bool *open)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		abort();
	if (open)
		memset(open, 0, sizeof(fds_at_start));
	while ((e = readdir(d))) {
		int fd;

		if (e->d_name[0] == '.')
			continue;
		fd = atoi(e->d_name);
		if (fd == dirfd(d))
			continue;
		if (open && fd < (int)sizeof(fds_at_start))
			open[fd] = true;
		n++;
	}
	closedir(d);
	return n;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void seeds_dump(const char *dir);

/*
 * The last close releases its context before it returns, unless something else held the open
 * file at that moment (then the server thread releases it at the hang-up it sees, as the
 * kernel's last fput() may run after the close() that dropped the last fd). Such a release
 * is counted and reported at exit (stat::late_releases); one that does not come within 5 s
 * is a leak.
 */
static unsigned long late_releases;

static void release_wait_late(void)
{
	long objects = iommufd_objects_live(), contexts = iommufd_contexts_live();
	struct timespec ms = { .tv_nsec = 1000000 };

	fprintf(stderr, "late: %ld objects, %ld contexts live after close (in RCU: %d)\n",
		objects, contexts, (int)rcu_read_ongoing());
	iommufd_files_dump(stderr);
	for (int i = 0; i < 5000; i++) {
		rcu_barrier();
		if (!iommufd_objects_live() && !iommufd_contexts_live()) {
			fprintf(stderr, "late: released after %d ms\n", i);
			iommufd_files_dump(stderr);
			late_releases++;
			return;
		}
		nanosleep(&ms, NULL);
	}
	fprintf(stderr, "leak: %ld objects, %ld contexts live 5 s after close\n",
		iommufd_objects_live(), iommufd_contexts_live());
	iommufd_files_dump(stderr);
	abort();
}

static void release_report(void)
{
	printf("stat::late_releases: %lu\n", late_releases);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	page = (size_t)sysconf(_SC_PAGESIZE);
	trace = getenv("FUZZ_TRACE") != NULL;
	scratch = mmap(NULL, (GOOD_PAGES + 2) * page, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (scratch == MAP_FAILED ||
	    mprotect(scratch + GOOD_PAGES * page, page, PROT_NONE) ||
	    mprotect(scratch + (GOOD_PAGES + 1) * page, page, PROT_READ))
		abort();
	for (int i = 1; i < *argc; i++) {
		if (!strncmp((*argv)[i], "-dump=", 6)) {
			seeds_dump((*argv)[i] + 6);
			exit(0);
		}
	}
	/* Warm up what lives as long as the process (liburcu's threads, the mm), then measure. */
	uiommu_close(uiommu_open(O_RDWR));
	rcu_barrier();
	base_allocs = uiommu_alloc_live_settled();
	atexit(release_report);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seq s = { .p = data, .left = size };
	unsigned int ops = 0;

	base_fds = fds_scan(fds_at_start);
	/* The same input must run the same way: earlier inputs wrote into the good area. */
	memset(scratch, 0, GOOD_PAGES * page);
	s.fd = uiommu_open(O_RDWR);
	if (s.fd < 0)
		abort();
	while (s.left && ops++ < 64) {
		switch (take8(&s) % OP_NR) {
		case OP_IOCTL:
			op_ioctl(&s, false);
			break;
		case OP_IOCTL_FD:
			op_ioctl(&s, true);
			break;
		case OP_READ:
			op_read_write(&s, false);
			break;
		case OP_WRITE:
			op_read_write(&s, true);
			break;
		case OP_MMAP:
			op_mmap(&s);
			break;
		default:
			op_close(&s);
		}
	}
	while (s.nr_fds) {
		int fd = s.fds[--s.nr_fds];
		int rc = uiommu_close(fd);

		if (rc)
			rc = close(fd);
		if (trace)
			fprintf(stderr, "close fd %d: %d\n", fd, rc);
	}
	if (uiommu_close(s.fd))
		abort();
	if (iommufd_objects_live() || iommufd_contexts_live())
		release_wait_late();
	if (uiommu_alloc_live_settled() != base_allocs) {
		fprintf(stderr, "leak: %ld allocations live after close, %ld before\n",
			uiommu_alloc_live_settled(), base_allocs);
		abort();
	}
	if (fds_scan(NULL) != base_fds) {
		fprintf(stderr, "leak: %d fds open after close, %d before\n", fds_scan(NULL),
			base_fds);
		abort();
	}
	return 0;
}

/* ---- the seed corpus ------------------------------------------------------------------------ */

/*
 * Each seed is built with the same encoding the harness decodes: e8() appends a byte, an
 * ioctl is OP_IOCTL, its request byte, the word count, then a selector (and data) per word.
 */
struct seed {
	uint8_t b[512];
	size_t n;
};

static void e8(struct seed *sd, uint8_t v)
{
	if (sd->n < sizeof(sd->b))
		sd->b[sd->n++] = v;
}

static void eraw(struct seed *sd, uint32_t v)
{
	e8(sd, W_RAW);
	for (int i = 0; i < 4; i++)
		e8(sd, (uint8_t)(v >> (8 * i)));
}

static void eid(struct seed *sd, uint8_t nth) /* the nth ID the sequence got, from 0 */
{
	e8(sd, W_ID);
	e8(sd, nth);
}

static void eptr(struct seed *sd, uint8_t kind)
{
	e8(sd, W_PTR);
	e8(sd, kind);
}

static uint8_t nr_index(unsigned int nr)
{
	for (unsigned int i = 0; i < sizeof(ioctl_nrs) / sizeof(ioctl_nrs[0]); i++)
		if (ioctl_nrs[i] == nr)
			return (uint8_t)i;
	abort();
}

/* Starts an ioctl of @nr with @words words; the caller appends them. */
static void eioctl(struct seed *sd, unsigned int nr, uint8_t words)
{
	e8(sd, OP_IOCTL);
	e8(sd, nr_index(nr));
	e8(sd, words);
}

static void eioctl_end(struct seed *sd)
{
	e8(sd, 0); /* the argument pointer is the built struct */
}

static void eword(struct seed *sd, uint32_t v)
{
	eraw(sd, v);
}

static void eu64(struct seed *sd, uint64_t v)
{
	eraw(sd, (uint32_t)v);
	eraw(sd, (uint32_t)(v >> 32));
}

static void efd(struct seed *sd, uint8_t nth) /* the nth fd the sequence got, from 0 */
{
	e8(sd, W_ID);
	e8(sd, (uint8_t)(0xe0 + nth));
}

/* A request outside ioctl_nrs[]: its index in other_requests[]. */
static void eioctl_other(struct seed *sd, unsigned long req, uint8_t words)
{
	const unsigned int n = sizeof(other_requests) / sizeof(other_requests[0]);

	for (unsigned int b = 0xe0; b <= 0xff; b++) {
		if (other_requests[b % n] == req) {
			e8(sd, OP_IOCTL);
			e8(sd, (uint8_t)b);
			e8(sd, words);
			return;
		}
	}
	abort();
}

/* IOAS_ALLOC: ID 0 of the sequence. */
static void s_ioas(struct seed *sd)
{
	eioctl(sd, 0x81, 3);
	e8(sd, W_SIZE);
	eword(sd, 0);
	eword(sd, 0);
	eioctl_end(sd);
}

/* IOMMU_TEST_CMD @op on the nth ID, the union's first two words @u0, @u1. */
static void s_test(struct seed *sd, uint32_t op, uint8_t id, uint32_t u0, uint32_t u1)
{
	eioctl(sd, 0xa0, 6);
	eword(sd, sizeof(struct iommu_test_cmd));
	eword(sd, op);
	eid(sd, id);
	eword(sd, 0);
	eword(sd, u0);
	eword(sd, u1);
	eioctl_end(sd);
}

/* After s_ioas(): MOCK_DOMAIN gives IDs 1 (stdev), 2 (HWPT), 3 (idev). */
static void s_mock(struct seed *sd)
{
	s_test(sd, IOMMU_TEST_OP_MOCK_DOMAIN, 0, 0, 0);
}

/* IOAS_MAP of the first 4 pages of the good area at IOVA 1 MiB. */
static void s_map(struct seed *sd)
{
	eioctl(sd, 0x85, 10);
	eword(sd, sizeof(struct iommu_ioas_map));
	eword(sd, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_FIXED_IOVA);
	eid(sd, 0);
	eword(sd, 0);
	eptr(sd, P_GOOD);
	eu64(sd, 4 * 4096);
	eu64(sd, 0x1000000); /* the mock's aperture starts at 16 MiB */
	eioctl_end(sd);
}

/*
 * HWPT_ALLOC for idev ID 3 on ID @pt; @fault: the ID of a fault queue, or 0xff for none;
 * @nested: a selftest nested HWPT (@pt is a vIOMMU), its data zeroes in the good area.
 */
static void s_hwpt(struct seed *sd, uint32_t flags, uint8_t pt, uint8_t fault, bool nested)
{
	eioctl(sd, 0x89, 12);
	eword(sd, sizeof(struct iommu_hwpt_alloc));
	eword(sd, flags);
	eid(sd, 3);
	eid(sd, pt);
	eword(sd, 0);
	eword(sd, 0);
	eword(sd, nested ? IOMMU_HWPT_DATA_SELFTEST : 0);
	eword(sd, nested ? sizeof(struct iommu_hwpt_selftest) : 0);
	if (nested) {
		e8(sd, W_PTR);
		e8(sd, (uint8_t)(P_GOOD + P_NR * 30));
	} else {
		eu64(sd, 0);
	}
	if (fault == 0xff)
		eword(sd, 0);
	else
		eid(sd, fault);
	eword(sd, 0);
	eioctl_end(sd);
}

/* MOCK_DOMAIN_REPLACE of stdev ID 1 onto ID @pt. */
static void s_replace(struct seed *sd, uint8_t pt)
{
	eioctl(sd, 0xa0, 5);
	eword(sd, sizeof(struct iommu_test_cmd));
	eword(sd, IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE);
	eid(sd, 1);
	eword(sd, 0);
	eid(sd, pt);
	eioctl_end(sd);
}

/*
 * ioas, mock, a nest parent (ID 4), a selftest vIOMMU (5), a vDEVICE (6), a nested HWPT (7)
 * the device is moved to, a vEVENTQ (8, fd 0).
 */
static void s_viommu(struct seed *sd)
{
	s_ioas(sd);
	s_mock(sd);
	s_hwpt(sd, IOMMU_HWPT_ALLOC_NEST_PARENT, 0, 0xff, false);
	eioctl(sd, 0x90, 10);
	eword(sd, sizeof(struct iommu_viommu_alloc));
	eword(sd, 0);
	eword(sd, IOMMU_VIOMMU_TYPE_SELFTEST);
	eid(sd, 3);
	eid(sd, 4);
	eword(sd, 0);
	eword(sd, sizeof(struct iommu_viommu_selftest));
	eword(sd, 0);
	eptr(sd, P_GOOD);
	eioctl_end(sd);
	eioctl(sd, 0x91, 6);
	eword(sd, sizeof(struct iommu_vdevice_alloc));
	eid(sd, 5);
	eid(sd, 3);
	eword(sd, 0);
	eu64(sd, 0x10);
	eioctl_end(sd);
	s_hwpt(sd, 0, 5, 0xff, true);
	s_replace(sd, 7);
	eioctl(sd, 0x93, 8);
	eword(sd, sizeof(struct iommu_veventq_alloc));
	eword(sd, 0);
	eid(sd, 5);
	eword(sd, IOMMU_VEVENTQ_TYPE_SELFTEST);
	eword(sd, 8);
	eword(sd, 0);
	eword(sd, 0);
	eword(sd, 0);
	eioctl_end(sd);
}

/* read() (or write()) of fd 0 of @len bytes at byte @at (< 8 KiB) of the good area. */
static void s_rw(struct seed *sd, bool write, uint8_t len, unsigned int at)
{
	e8(sd, write ? OP_WRITE : OP_READ);
	e8(sd, 0);
	e8(sd, len);
	e8(sd, 1);
	e8(sd, (uint8_t)(P_GOOD + P_NR * (at / 256)));
	e8(sd, at % 256);
}

/* TRIGGER_VEVENT or TRIGGER_IOPF for idev ID 3. */
static void s_trigger(struct seed *sd, uint32_t op)
{
	eioctl(sd, 0xa0, op == IOMMU_TEST_OP_TRIGGER_IOPF ? 10 : 5);
	eword(sd, sizeof(struct iommu_test_cmd));
	eword(sd, op);
	eid(sd, 3);
	eword(sd, 0);
	eid(sd, 3);
	if (op == IOMMU_TEST_OP_TRIGGER_IOPF) {
		eword(sd, 0);       /* pasid */
		eword(sd, 1);       /* grpid */
		eword(sd, 1);       /* perm: read */
		eu64(sd, 0x1000000); /* addr */
	}
	eioctl_end(sd);
}

static void seeds_dump(const char *dir)
{
	struct seed sd;

	memset(&sd, 0, sizeof(sd));
	s_ioas(&sd);
	seed_write(dir, "ioas", &sd);
	s_map(&sd);
	seed_write(dir, "ioas_map", &sd);
	s_mock(&sd);
	seed_write(dir, "mock_domain", &sd);
	s_test(&sd, IOMMU_TEST_OP_DMABUF_GET, 0, 0x1000, O_RDWR);
	/* IOAS_MAP_FILE of the dma-buf (fd 0). */
	eioctl(&sd, 0x8f, 10);
	eword(&sd, sizeof(struct iommu_ioas_map_file));
	eword(&sd, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_FIXED_IOVA);
	eid(&sd, 0);
	efd(&sd, 0);
	eu64(&sd, 0);
	eu64(&sd, 0x1000);
	eu64(&sd, 0x2000000);
	eioctl_end(&sd);
	seed_write(dir, "dmabuf", &sd);

	memset(&sd, 0, sizeof(sd));
	s_ioas(&sd);
	s_map(&sd);
	s_test(&sd, IOMMU_TEST_OP_CREATE_ACCESS, 0, 0, 0);
	/* ACCESS_RW of 64 bytes at IOVA 1 MiB through the access fd (fd 0). */
	eioctl(&sd, 0xa0, 11);
	eword(&sd, sizeof(struct iommu_test_cmd));
	eword(&sd, IOMMU_TEST_OP_ACCESS_RW);
	efd(&sd, 0);
	eword(&sd, 0);
	eu64(&sd, 0x1000000);
	eu64(&sd, 64);
	e8(&sd, W_PTR);
	e8(&sd, (uint8_t)(P_GOOD + P_NR * 20));
	eword(&sd, 0);
	eioctl_end(&sd);
	seed_write(dir, "access", &sd);

	memset(&sd, 0, sizeof(sd));
	s_viommu(&sd);
	s_trigger(&sd, IOMMU_TEST_OP_TRIGGER_VEVENT);
	s_rw(&sd, false, 64, 4096);
	/* mmap of the vIOMMU's region: 2 pages, the offset of ID 5's. */
	e8(&sd, OP_MMAP);
	e8(&sd, 2);
	e8(&sd, 0x40 + 5);
	e8(&sd, 0);
	seed_write(dir, "viommu", &sd);

	memset(&sd, 0, sizeof(sd));
	s_ioas(&sd);
	s_map(&sd);
	s_mock(&sd);
	eioctl(&sd, 0x8e, 4); /* FAULT_QUEUE_ALLOC: ID 4, fd 0 */
	eword(&sd, sizeof(struct iommu_fault_alloc));
	eword(&sd, 0);
	eword(&sd, 0);
	eword(&sd, 0);
	eioctl_end(&sd);
	s_hwpt(&sd, IOMMU_HWPT_FAULT_ID_VALID, 0, 4, false); /* ID 5 */
	s_replace(&sd, 5);
	s_trigger(&sd, IOMMU_TEST_OP_TRIGGER_IOPF);
	/* The fault record at 4 KiB; its cookie (at 36) and the zero after it: SUCCESS. */
	s_rw(&sd, false, sizeof(struct iommu_hwpt_pgfault), 4096);
	s_rw(&sd, true, sizeof(struct iommu_hwpt_page_response), 4096 + 36);
	seed_write(dir, "fault", &sd);

	memset(&sd, 0, sizeof(sd));
	s_ioas(&sd);
	eioctl(&sd, 0x88, 3); /* IOMMU_VFIO_IOAS SET */
	eword(&sd, sizeof(struct iommu_vfio_ioas));
	eid(&sd, 0);
	eword(&sd, IOMMU_VFIO_IOAS_SET);
	eioctl_end(&sd);
	eioctl_other(&sd, VFIO_SET_IOMMU, 1);
	eword(&sd, VFIO_TYPE1v2_IOMMU);
	eioctl_other(&sd, VFIO_IOMMU_MAP_DMA, 8);
	eword(&sd, sizeof(struct vfio_iommu_type1_dma_map));
	eword(&sd, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
	eptr(&sd, P_GOOD);
	eu64(&sd, 0x100000);
	eu64(&sd, 0x4000);
	eioctl_end(&sd);
	eioctl_other(&sd, VFIO_IOMMU_UNMAP_DMA, 8);
	eword(&sd, sizeof(struct vfio_iommu_type1_dma_map));
	eword(&sd, 0);
	eu64(&sd, 0x100000);
	eu64(&sd, 0x4000);
	eu64(&sd, 0);
	eioctl_end(&sd);
	seed_write(dir, "vfio", &sd);

	memset(&sd, 0, sizeof(sd));
	s_ioas(&sd);
	/* IOVA_RANGES into a read-only page, then with the argument itself on the guard page. */
	eioctl(&sd, 0x84, 6);
	eword(&sd, sizeof(struct iommu_ioas_iova_ranges));
	eid(&sd, 0);
	eword(&sd, 4);
	eword(&sd, 0);
	eptr(&sd, P_RDONLY);
	eioctl_end(&sd);
	eioctl(&sd, 0x84, 0);
	e8(&sd, 0xff);
	e8(&sd, P_GUARD);
	seed_write(dir, "bad_pointers", &sd);

	/* The reproducers of what the harness found, rebuilt here (docs/fuzzing.md). */
	memset(&sd, 0, sizeof(sd));
	eioctl(&sd, 0x8e, 4); /* a fault queue; its fd written from NULL: UB in eventq.c */
	eword(&sd, sizeof(struct iommu_fault_alloc));
	eword(&sd, 0);
	eword(&sd, 0);
	eword(&sd, 0);
	eioctl_end(&sd);
	e8(&sd, OP_WRITE);
	e8(&sd, 0);
	e8(&sd, sizeof(struct iommu_hwpt_page_response));
	e8(&sd, 1);
	e8(&sd, P_NULL);
	e8(&sd, 0);
	seed_write(dir, "repro_fault_write_null", &sd);

	memset(&sd, 0, sizeof(sd));
	eioctl(&sd, 0xa0, 9); /* MD_CHECK_REFS of 2^50 bytes of unmapped memory: a hang */
	eword(&sd, sizeof(struct iommu_test_cmd));
	eword(&sd, IOMMU_TEST_OP_MD_CHECK_REFS);
	eword(&sd, 0);
	eword(&sd, 0);
	eu64(&sd, (uint64_t)1 << 50);
	eu64(&sd, (uint64_t)1 << 46);
	eword(&sd, 0);
	eioctl_end(&sd);
	seed_write(dir, "repro_check_refs_huge", &sd);

	memset(&sd, 0, sizeof(sd));
	s_ioas(&sd); /* ALLOW_IOVAS claiming 2^32-1 ranges: it allocated 64 GB up front */
	eioctl(&sd, 0x82, 6);
	eword(&sd, sizeof(struct iommu_ioas_allow_iovas));
	eid(&sd, 0);
	eword(&sd, UINT32_MAX);
	eword(&sd, 0);
	eptr(&sd, P_CROSS);
	eioctl_end(&sd);
	seed_write(dir, "repro_allow_iovas_huge", &sd);
}
