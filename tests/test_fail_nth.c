// SPDX-License-Identifier: MIT
/*
 * The fault-injection sweep. For each scenario, on a fresh context each time: build a known
 * state, take a digest of it, arm "fail the Nth fallible step", run one ioctl, and check that
 * either the ioctl failed and the digest, the live objects and the live allocations are exactly
 * as before, or no injected failure was reached (the sweep has passed every step) and the ioctl
 * succeeded. N runs from 1 until the ioctl completes untouched.
 *
 * The digest reads the state through the ABI only: the usable ranges, the alignment, and which
 * probe IOVAs are mapped (a one-byte COPY into a scratch IOAS succeeds exactly when the probe is
 * mapped).
 */
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "drivers/mock/mock.h"
#include "harness.h"
#include "uiommu_test.h"
#include "iommu/iommu.h"
#include "iommufd/iommufd_private.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "lib/rcu.h"
#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"
#include "uiommu/vfio_compat.h"

#define PS 4096ull
#define NPROBE 40

struct state {
	int fd;
	uint32_t a, b, scratch;
	int memfd;
	int event_fd;  /* a fault fd a scenario made or uses (> 0), closed by the teardown */
	char *buf;
};

struct digest {
	long objects, allocations, contexts;
	uint32_t nranges;
	uint64_t alignment;
	struct iommu_iova_range ranges[8];
	bool mapped_a[NPROBE], mapped_b[NPROBE];
	uint64_t huge_a;
};

static char buffer[64 * 4096] __attribute__((aligned(65536)));

static int map_fixed(int fd, uint32_t ioas, uint64_t iova, void *va, uint64_t len)
{
	struct iommu_ioas_map cmd = {
		.size = sizeof(cmd),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = ioas,
		.user_va = (uintptr_t)va,
		.length = len,
		.iova = iova,
	};

	return ioc(fd, IOMMU_IOAS_MAP, &cmd);
}

/* The probes: every 16 KiB from 0 to 640 KiB, and a few auto-allocation spots. */
static uint64_t probe_iova(int i)
{
	return (uint64_t)i * 0x4000;
}

static bool probe_mapped(struct state *s, uint32_t ioas, uint64_t iova)
{
	struct iommu_ioas_copy copy = {
		.size = sizeof(copy),
		.flags = IOMMU_IOAS_MAP_READABLE,
		.dst_ioas_id = s->scratch,
		.src_ioas_id = ioas,
		.length = 1,
		.src_iova = iova,
	};
	struct iommu_ioas_unmap unmap = {
		.size = sizeof(unmap), .ioas_id = s->scratch, .iova = 0, .length = UINT64_MAX,
	};
	bool mapped = !ioc(s->fd, IOMMU_IOAS_COPY, &copy);

	if (ioc(s->fd, IOMMU_IOAS_UNMAP, &unmap))
		abort();
	return mapped;
}

static void take_digest(struct state *s, struct digest *d)
{
	struct iommu_ioas_iova_ranges ranges = {
		.size = sizeof(ranges), .ioas_id = s->a, .num_iovas = 8,
	};
	struct iommu_option opt = {
		.size = sizeof(opt), .option_id = IOMMU_OPTION_HUGE_PAGES,
		.op = IOMMU_OPTION_OP_GET, .object_id = s->a,
	};
	struct uiommu_stats st;
	int i;

	memset(d, 0, sizeof(*d));
	ranges.allowed_iovas = (uintptr_t)d->ranges;
	if (ioc(s->fd, IOMMU_IOAS_IOVA_RANGES, &ranges))
		abort();
	d->nranges = ranges.num_iovas;
	d->alignment = ranges.out_iova_alignment;
	if (ioc(s->fd, IOMMU_OPTION, &opt))
		abort();
	d->huge_a = opt.val64;
	for (i = 0; i < NPROBE; i++) {
		d->mapped_a[i] = probe_mapped(s, s->a, probe_iova(i));
		d->mapped_b[i] = s->b ? probe_mapped(s, s->b, probe_iova(i)) : false;
	}
	uiommu_stats_get(&st);
	d->objects = st.objects;
	d->allocations = st.allocations;
	d->contexts = st.contexts;
}

static void state_setup(struct state *s)
{
	struct iommu_test_cmd resv = {
		.size = sizeof(resv), .op = IOMMU_TEST_OP_ADD_RESERVED,
		.add_reserved = { .start = 0x80000, .length = 0x10000 },
	};

	memset(s, 0, sizeof(*s));
	s->buf = buffer;
	s->fd = uiommu_open(O_RDWR);
	if (s->fd < 0)
		abort();
	s->a = ioas_alloc(s->fd);
	s->b = ioas_alloc(s->fd);
	s->scratch = ioas_alloc(s->fd);
	if (map_fixed(s->fd, s->a, 0x10000, buffer, 4 * PS) ||
	    map_fixed(s->fd, s->a, 0x40000, buffer + 8 * PS, 2 * PS) ||
	    map_fixed(s->fd, s->a, 0x50000, buffer + 16 * PS, PS) ||
	    map_fixed(s->fd, s->b, 0x10000, buffer, PS))
		abort();
	resv.id = s->a;
	if (ioc(s->fd, IOMMU_TEST_CMD, &resv))
		abort();
	s->memfd = memfd_create("uiommu-fail-nth", MFD_CLOEXEC);
	if (s->memfd < 0 || ftruncate(s->memfd, 16 * PS))
		abort();
}

static void state_teardown(struct state *s)
{
	close(s->memfd);
	if (s->event_fd > 0)
		uiommu_close(s->event_fd);
	if (s->fd >= 0)
		uiommu_close(s->fd);
}

/*
 * The library keeps a few process-lifetime allocations (the fd table's chunks, the process's
 * address space object) made at first use; make them before taking a baseline.
 */
static void warm_up(void)
{
	int fd = uiommu_open(O_RDWR);

	if (fd < 0 || uiommu_close(fd))
		abort();
}

typedef int (*scenario_fn)(struct state *s);
typedef void (*prep_fn)(struct state *s);

static int sc_ioas_alloc(struct state *s)
{
	struct iommu_ioas_alloc cmd = { .size = sizeof(cmd) };

	return ioc(s->fd, IOMMU_IOAS_ALLOC, &cmd);
}

static int sc_map_auto(struct state *s)
{
	struct iommu_ioas_map cmd = {
		.size = sizeof(cmd), .flags = IOMMU_IOAS_MAP_READABLE, .ioas_id = s->a,
		.user_va = (uintptr_t)buffer, .length = 3 * PS,
	};

	return ioc(s->fd, IOMMU_IOAS_MAP, &cmd);
}

static int sc_map_fixed(struct state *s)
{
	return map_fixed(s->fd, s->a, 0x20000, buffer + 4 * PS, 2 * PS);
}

static int sc_map_file(struct state *s)
{
	struct iommu_ioas_map_file cmd = {
		.size = sizeof(cmd),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = s->a, .fd = s->memfd, .start = PS, .length = 4 * PS, .iova = 0x30000,
	};

	return ioc(s->fd, IOMMU_IOAS_MAP_FILE, &cmd);
}

static int sc_copy_auto(struct state *s)
{
	struct iommu_ioas_copy cmd = {
		.size = sizeof(cmd), .flags = IOMMU_IOAS_MAP_READABLE, .dst_ioas_id = s->b,
		.src_ioas_id = s->a, .length = 4 * PS, .src_iova = 0x10000,
	};

	return ioc(s->fd, IOMMU_IOAS_COPY, &cmd);
}

static int sc_copy_fixed_two_areas(struct state *s)
{
	struct iommu_ioas_copy cmd = {
		.size = sizeof(cmd),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE,
		.dst_ioas_id = s->b, .src_ioas_id = s->a, .length = 3 * PS,
		.dst_iova = 0x60000, .src_iova = 0x40000 + PS,
	};

	/* Spans the end of one area and the whole next one: two pieces. */
	cmd.length = 2 * PS;
	return ioc(s->fd, IOMMU_IOAS_COPY, &cmd);
}

static void prep_second_area(struct state *s)
{
	if (map_fixed(s->fd, s->a, 0x42000, buffer + 20 * PS, PS))
		abort();
}

static int sc_unmap(struct state *s)
{
	struct iommu_ioas_unmap cmd = {
		.size = sizeof(cmd), .ioas_id = s->a, .iova = 0x10000, .length = 0x50000,
	};

	return ioc(s->fd, IOMMU_IOAS_UNMAP, &cmd);
}

static int sc_unmap_all(struct state *s)
{
	struct iommu_ioas_unmap cmd = {
		.size = sizeof(cmd), .ioas_id = s->a, .iova = 0, .length = UINT64_MAX,
	};

	return ioc(s->fd, IOMMU_IOAS_UNMAP, &cmd);
}

static int sc_allow_iovas(struct state *s)
{
	struct iommu_iova_range r[2] = { { 0x100000, 0x1fffff }, { 0x300000, 0x3fffff } };
	struct iommu_ioas_allow_iovas cmd = {
		.size = sizeof(cmd), .ioas_id = s->a, .num_iovas = 2, .allowed_iovas = (uintptr_t)r,
	};

	return ioc(s->fd, IOMMU_IOAS_ALLOW_IOVAS, &cmd);
}

static int sc_iova_ranges(struct state *s)
{
	struct iommu_iova_range r[4];
	struct iommu_ioas_iova_ranges cmd = {
		.size = sizeof(cmd), .ioas_id = s->a, .num_iovas = 4, .allowed_iovas = (uintptr_t)r,
	};

	return ioc(s->fd, IOMMU_IOAS_IOVA_RANGES, &cmd);
}

static int sc_huge_pages_off(struct state *s)
{
	struct iommu_option cmd = {
		.size = sizeof(cmd), .option_id = IOMMU_OPTION_HUGE_PAGES,
		.op = IOMMU_OPTION_OP_SET, .object_id = s->a, .val64 = 0,
	};

	return ioc(s->fd, IOMMU_OPTION, &cmd);
}

static int sc_add_reserved(struct state *s)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_ADD_RESERVED, .id = s->a,
		.add_reserved = { .start = 0x200000, .length = 0x1000 },
	};

	return ioc(s->fd, IOMMU_TEST_CMD, &cmd);
}

static int sc_destroy(struct state *s)
{
	struct iommu_destroy cmd = { .size = sizeof(cmd), .id = s->b };
	int rc = ioc(s->fd, IOMMU_DESTROY, &cmd);

	if (!rc)
		s->b = 0;
	return rc;
}

static void prep_vfio(struct state *s)
{
	struct iommu_vfio_ioas set = {
		.size = sizeof(set), .ioas_id = s->a, .op = IOMMU_VFIO_IOAS_SET,
	};

	if (ioc(s->fd, IOMMU_VFIO_IOAS, &set))
		abort();
}

static void prep_vfio_v1(struct state *s)
{
	prep_vfio(s);
	if (ioc(s->fd, VFIO_SET_IOMMU, (void *)(uintptr_t)VFIO_TYPE1_IOMMU))
		abort();
}

static int sc_vfio_get_info(struct state *s)
{
	unsigned char info[256];
	struct vfio_iommu_type1_info *hdr = (void *)info;

	memset(info, 0, sizeof(info));
	hdr->argsz = sizeof(info);
	return ioc(s->fd, VFIO_IOMMU_GET_INFO, info);
}

static int sc_vfio_v1_unmap(struct state *s)
{
	struct vfio_iommu_type1_dma_unmap unmap = {
		.argsz = sizeof(unmap), .iova = 0x11000, .size = 2 * PS,
	};

	return ioc(s->fd, VFIO_IOMMU_UNMAP_DMA, &unmap);
}

/*
 * PASIDs (device.c, iommu.c): a PASID-capable mock device (its stdev in pasid_stdev) whose RID
 * sits on a PASID-compatible HWPT (pasid_s2), and a second such HWPT (pasid_s2b); the state's own IDs stay untouched.
 */
static uint32_t pasid_stdev, pasid_ioas, pasid_s2, pasid_s2b; /* its IOAS: the state's maps are outside the mock's
					    aperture */

static int pasid_test_op(struct state *s, uint32_t op, uint32_t pasid, uint32_t pt)
{
	struct iommu_test_cmd cmd = { .size = sizeof(cmd), .op = op, .id = pasid_stdev };

	(void)s;
	cmd.pasid_attach.pasid = pasid;
	cmd.pasid_attach.pt_id = pt;
	return ioc(s->fd, IOMMU_TEST_CMD, &cmd);
}

static uint32_t pasid_hwpt_alloc(struct state *s, uint32_t idev)
{
	struct iommu_hwpt_alloc cmd = { .size = sizeof(cmd), .flags = IOMMU_HWPT_ALLOC_PASID,
					.dev_id = idev, .pt_id = pasid_ioas };

	if (ioc(s->fd, IOMMU_HWPT_ALLOC, &cmd))
		abort();
	return cmd.out_hwpt_id;
}

static void prep_pasid(struct state *s)
{
	struct iommu_test_cmd mock = { .size = sizeof(mock), .op = IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
				       .mock_domain_flags = { .dev_flags = 4 } };
	struct iommu_test_cmd replace = { .size = sizeof(replace),
					  .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE };

	pasid_ioas = ioas_alloc(s->fd);
	mock.id = pasid_ioas;
	if (ioc(s->fd, IOMMU_TEST_CMD, &mock))
		abort();
	pasid_stdev = mock.mock_domain_flags.out_stdev_id;
	pasid_s2 = pasid_hwpt_alloc(s, mock.mock_domain_flags.out_idev_id);
	pasid_s2b = pasid_hwpt_alloc(s, mock.mock_domain_flags.out_idev_id);
	replace.id = pasid_stdev;
	replace.mock_domain_replace.pt_id = pasid_s2;
	if (ioc(s->fd, IOMMU_TEST_CMD, &replace))
		abort();
}

static void prep_pasid_attached(struct state *s)
{
	prep_pasid(s);
	if (pasid_test_op(s, IOMMU_TEST_OP_PASID_ATTACH, 100, pasid_s2))
		abort();
}

/* Cover device.c and iommu.c: the handle, the PASID slot, the driver's set_dev_pasid. */
static int sc_pasid_attach(struct state *s)
{
	return pasid_test_op(s, IOMMU_TEST_OP_PASID_ATTACH, 100, pasid_s2);
}

static int sc_pasid_replace(struct state *s)
{
	return pasid_test_op(s, IOMMU_TEST_OP_PASID_REPLACE, 100, pasid_s2b);
}

/* Cover the RID through the handle API: a new handle, the NO_PASID slot. */
static int sc_rid_replace(struct state *s)
{
	struct iommu_test_cmd replace = { .size = sizeof(replace),
					  .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, .id = pasid_stdev,
					  .mock_domain_replace = { .pt_id = pasid_s2b } };

	return ioc(s->fd, IOMMU_TEST_CMD, &replace);
}

/*
 * Fault queues (eventq.c, hw_pagetable.c, selftest.c): a mock device on its own IOAS, a fault
 * queue whose fd the state keeps, a fault-capable HWPT at the RID, a fault reported, read and
 * answered. The state's own IDs stay untouched.
 */
static uint32_t fq_ioas, fq_stdev, fq_idev, fq_fault;

static void prep_fault_dev(struct state *s)
{
	struct iommu_test_cmd mock = { .size = sizeof(mock), .op = IOMMU_TEST_OP_MOCK_DOMAIN };

	fq_ioas = ioas_alloc(s->fd);
	mock.id = fq_ioas;
	if (ioc(s->fd, IOMMU_TEST_CMD, &mock))
		abort();
	fq_stdev = mock.mock_domain.out_stdev_id;
	fq_idev = mock.mock_domain.out_idev_id;
}

static int fault_queue_alloc(struct state *s)
{
	struct iommu_fault_alloc cmd = { .size = sizeof(cmd) };
	int rc = ioc(s->fd, IOMMU_FAULT_QUEUE_ALLOC, &cmd);

	if (!rc) {
		fq_fault = cmd.out_fault_id;
		s->event_fd = (int)cmd.out_fault_fd;
	}
	return rc;
}

static int fault_hwpt_alloc(struct state *s, uint32_t *out)
{
	struct iommu_hwpt_alloc cmd = { .size = sizeof(cmd), .flags = IOMMU_HWPT_FAULT_ID_VALID,
					.dev_id = fq_idev, .pt_id = fq_ioas, .fault_id = fq_fault };
	int rc = ioc(s->fd, IOMMU_HWPT_ALLOC, &cmd);

	if (!rc && out)
		*out = cmd.out_hwpt_id;
	return rc;
}

static void prep_fault_queue(struct state *s)
{
	prep_fault_dev(s);
	if (fault_queue_alloc(s))
		abort();
}

/* One fault waiting on the queue of the HWPT at the device's RID. */
static void prep_fault_pending(struct state *s)
{
	struct iommu_test_cmd replace = { .size = sizeof(replace),
					  .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE };
	struct iommu_test_cmd trigger = { .size = sizeof(trigger),
					  .op = IOMMU_TEST_OP_TRIGGER_IOPF };
	uint32_t hwpt;

	prep_fault_queue(s);
	if (fault_hwpt_alloc(s, &hwpt))
		abort();
	replace.id = fq_stdev;
	replace.mock_domain_replace.pt_id = hwpt;
	trigger.trigger_iopf.dev_id = fq_idev;
	trigger.trigger_iopf.grpid = 3;
	if (ioc(s->fd, IOMMU_TEST_CMD, &replace) || ioc(s->fd, IOMMU_TEST_CMD, &trigger))
		abort();
}

/* The fault read (cookie 1), not answered yet. */
static void prep_fault_read(struct state *s)
{
	struct iommu_hwpt_pgfault rec;

	prep_fault_pending(s);
	if (uiommu_event_read(s->event_fd, &rec, sizeof(rec)) != sizeof(rec) || rec.cookie != 1)
		abort();
}

/* Cover eventq.c: the object, its eventfd, the fd table entry. */
static int sc_fault_alloc(struct state *s)
{
	return fault_queue_alloc(s);
}

/* Cover hw_pagetable.c with a fault ID: the queue's reference, the domain's handler. */
static int sc_fault_hwpt_alloc(struct state *s)
{
	return fault_hwpt_alloc(s, NULL);
}

/* Cover the read: the cookie table, the record's copy; the group stays queued on failure. */
static int sc_fault_read(struct state *s)
{
	struct iommu_hwpt_pgfault rec;

	return (int)uiommu_event_read(s->event_fd, &rec, sizeof(rec));
}

/* Cover the write: the response's copy; on failure the cookie stays live. */
static int sc_fault_write(struct state *s)
{
	struct iommu_hwpt_page_response r = { .cookie = 1, .code = IOMMUFD_PAGE_RESP_SUCCESS };

	return (int)uiommu_event_write(s->event_fd, &r, sizeof(r));
}

static bool digest_equal(struct digest *x, struct digest *y, const char *what, unsigned long nth)
{
	if (memcmp(x, y, sizeof(*x)) == 0)
		return true;
	fprintf(stderr, "  %s, fail-nth %lu: state changed (objects %ld->%ld, allocations "
			"%ld->%ld, ranges %u->%u)\n",
		what, nth, x->objects, y->objects, x->allocations, y->allocations, x->nranges,
		y->nranges);
	return false;
}

/* Returns the number of fallible steps the scenario's ioctl went through. */
static unsigned long sweep(struct __h_test *_metadata, const char *what, prep_fn prep,
			   scenario_fn fn)
{
	struct uiommu_stats base, after;
	unsigned long nth;

	if (!uiommu_fail_nth_available())
		return 0;
	warm_up();
	uiommu_stats_get(&base);
	for (nth = 1; nth < 500; nth++) {
		struct digest before, now;
		struct state s;
		unsigned long left;
		int rc, err;

		state_setup(&s);
		if (prep)
			prep(&s);
		take_digest(&s, &before);
		uiommu_fail_nth_arm(nth);
		rc = fn(&s);
		err = errno;
		left = uiommu_fail_nth_disarm();
		if (left) {
			/* Every fallible step passed: the ioctl must have worked. */
			if (rc < 0)
				fprintf(stderr, "  %s: failed without injection: %s\n", what,
					strerror(err));
			ASSERT_TRUE(rc >= 0);
			state_teardown(&s);
			break;
		}
		ASSERT_EQ(-1, rc);
		ASSERT_NE(0, err);
		take_digest(&s, &now);
		ASSERT_TRUE(digest_equal(&before, &now, what, nth));
		state_teardown(&s);
		uiommu_stats_get(&after);
		ASSERT_EQ(base.allocations, after.allocations);
		ASSERT_EQ(base.objects, after.objects);
		ASSERT_EQ(base.contexts, after.contexts);
	}
	uiommu_stats_get(&after);
	ASSERT_EQ(base.allocations, after.allocations);
	ASSERT_EQ(0, after.pinned_pages);
	/* The sweep must have failed something, or it tested nothing. */
	ASSERT_TRUE(nth > 1);
	ASSERT_TRUE(nth < 500);
	return nth - 1;
}

#define SWEEP_TEST(name, prep, fn)                                                          \
	TEST(fail_nth_##name)                                                               \
	{                                                                                   \
		unsigned long points;                                                       \
		if (!uiommu_fail_nth_available())                                           \
			SKIP("fault injection is compiled out of release builds");          \
		points = sweep(_metadata, #name, prep, fn);                                 \
		printf("# %s: %lu failure points swept\n", #name, points);                  \
	}

SWEEP_TEST(ioas_alloc, NULL, sc_ioas_alloc)
SWEEP_TEST(map_auto, NULL, sc_map_auto)
SWEEP_TEST(map_fixed, NULL, sc_map_fixed)
SWEEP_TEST(map_file, NULL, sc_map_file)
SWEEP_TEST(copy_auto, NULL, sc_copy_auto)
SWEEP_TEST(copy_fixed_two_areas, prep_second_area, sc_copy_fixed_two_areas)
SWEEP_TEST(unmap, NULL, sc_unmap)
SWEEP_TEST(unmap_all, NULL, sc_unmap_all)
SWEEP_TEST(allow_iovas, NULL, sc_allow_iovas)
SWEEP_TEST(iova_ranges, NULL, sc_iova_ranges)
SWEEP_TEST(huge_pages_off, NULL, sc_huge_pages_off)
SWEEP_TEST(add_reserved, NULL, sc_add_reserved)
SWEEP_TEST(destroy, NULL, sc_destroy)
SWEEP_TEST(vfio_get_info, prep_vfio, sc_vfio_get_info)
SWEEP_TEST(vfio_v1_unmap, prep_vfio_v1, sc_vfio_v1_unmap)
SWEEP_TEST(pasid_attach, prep_pasid, sc_pasid_attach)
SWEEP_TEST(pasid_replace, prep_pasid_attached, sc_pasid_replace)
SWEEP_TEST(rid_replace_handle, prep_pasid, sc_rid_replace)
SWEEP_TEST(fault_queue_alloc, prep_fault_dev, sc_fault_alloc)
SWEEP_TEST(fault_hwpt_alloc, prep_fault_queue, sc_fault_hwpt_alloc)
SWEEP_TEST(fault_read, prep_fault_pending, sc_fault_read)
SWEEP_TEST(fault_write, prep_fault_read, sc_fault_write)

/*
 * Cover device.c's igroup: two devices of one group bound to one context. Each step of a scenario
 * runs on a fresh context; a failed step must leave the group's domain, its PASID table, the
 * devices' attachments, the live objects and the live allocations as they were.
 */
static struct iommu_device fnth_ginst = { .name = "fnth-igroup", .max_pasids = 1024 };
static struct device *fnth_gdev[2];

struct gstate {
	int fd;
	struct iommufd_ctx *ictx;
	struct iommufd_device *idev[2];
	uint32_t devid[2], ioas, hp, manual;
};

struct gdigest {
	long objects, allocations;
	uint32_t domain_id;
	bool blocking;
	unsigned int nr_pasid_entries;
	bool attached[2][2]; /* [device][RID, PASID 5] */
};

enum { G_BOUND0, G_BOUND, G_ATT0, G_ATT, G_PASID0 };

static void gmachine_up(struct __h_test *_metadata)
{
	ASSERT_EQ(0, mock_iommu_register(&fnth_ginst));
	for (int i = 0; i < 2; i++) {
		char bdf[16];

		snprintf(bdf, sizeof(bdf), "0000:7e:00.%d", i);
		fnth_gdev[i] = device_alloc(bdf);
		ASSERT_FALSE(IS_ERR_OR_NULL(fnth_gdev[i]));
		fnth_gdev[i]->iommu = &fnth_ginst;
		fnth_gdev[i]->pasid_bits = 10;
		snprintf(fnth_gdev[i]->group_key, sizeof(fnth_gdev[i]->group_key), "fnth");
		ASSERT_EQ(0, iommu_probe_device(fnth_gdev[i]));
	}
	ASSERT_TRUE(fnth_gdev[0]->iommu_group == fnth_gdev[1]->iommu_group);
}

static void gmachine_down(void)
{
	for (int i = 0; i < 2; i++) {
		iommu_release_device(fnth_gdev[i]);
		mock_device_forget(fnth_gdev[i]);
		device_put(fnth_gdev[i]);
	}
	mock_iommu_unregister(&fnth_ginst);
}

static uint32_t ghwpt_alloc(struct gstate *g, uint32_t flags)
{
	struct iommu_hwpt_alloc cmd = { .size = sizeof(cmd), .flags = flags,
					.dev_id = g->devid[0], .pt_id = g->ioas };

	if (ioc(g->fd, IOMMU_HWPT_ALLOC, &cmd))
		abort();
	return cmd.out_hwpt_id;
}

static void gstate_setup(struct gstate *g, int level)
{
	uint32_t pt;

	memset(g, 0, sizeof(*g));
	g->fd = uiommu_open(O_RDWR);
	if (g->fd < 0)
		abort();
	g->ictx = iommufd_ctx_from_fd(g->fd);
	if (IS_ERR(g->ictx))
		abort();
	g->ioas = ioas_alloc(g->fd);
	g->idev[0] = iommufd_device_bind(g->ictx, fnth_gdev[0], &g->devid[0]);
	if (IS_ERR(g->idev[0]))
		abort();
	if (level == G_BOUND0)
		return;
	g->idev[1] = iommufd_device_bind(g->ictx, fnth_gdev[1], &g->devid[1]);
	if (IS_ERR(g->idev[1]))
		abort();
	if (level == G_PASID0) {
		g->hp = ghwpt_alloc(g, IOMMU_HWPT_ALLOC_PASID);
		pt = g->hp;
		if (iommufd_device_pasid_attach(g->idev[0], 5, &pt))
			abort();
		return;
	}
	g->manual = ghwpt_alloc(g, 0);
	if (level == G_BOUND)
		return;
	pt = g->ioas;
	if (iommufd_device_attach(g->idev[0], &pt))
		abort();
	if (level == G_ATT0)
		return;
	pt = g->ioas;
	if (iommufd_device_attach(g->idev[1], &pt))
		abort();
}

static void gstate_teardown(struct gstate *g)
{
	for (int i = 0; i < 2; i++) {
		if (!g->idev[i])
			continue;
		iommufd_device_pasid_detach(g->idev[i], 5);
		iommufd_device_detach(g->idev[i]);
		iommufd_device_unbind(g->idev[i]);
	}
	iommufd_ctx_file_put(g->ictx);
	if (uiommu_close(g->fd))
		abort();
}

static void gtake_digest(struct gstate *g, struct gdigest *d)
{
	struct iommu_group_info info;

	memset(d, 0, sizeof(*d));
	rcu_barrier_bp();
	d->allocations = uiommu_alloc_live();
	d->objects = iommufd_objects_live();
	iommu_group_get_info(fnth_gdev[0]->iommu_group, &info);
	d->domain_id = info.domain_id;
	d->blocking = info.domain_is_blocking;
	d->nr_pasid_entries = info.nr_pasid_entries;
	for (int i = 0; i < 2; i++) {
		if (!g->idev[i])
			continue;
		d->attached[i][0] = iommufd_device_pasid_attached(g->idev[i], IOMMU_NO_PASID);
		d->attached[i][1] = iommufd_device_pasid_attached(g->idev[i], 5);
	}
}

typedef int (*gscenario_fn)(struct gstate *g);

static int gsc_bind_join(struct gstate *g)
{
	struct iommufd_device *idev = iommufd_device_bind(g->ictx, fnth_gdev[1], &g->devid[1]);

	if (IS_ERR(idev))
		return (int)PTR_ERR(idev);
	g->idev[1] = idev;
	return 0;
}

static int gsc_attach_first(struct gstate *g)
{
	uint32_t pt = g->ioas;

	return iommufd_device_attach(g->idev[0], &pt);
}

static int gsc_attach_join(struct gstate *g)
{
	uint32_t pt = g->ioas;

	return iommufd_device_attach(g->idev[1], &pt);
}

static int gsc_replace_group(struct gstate *g)
{
	uint32_t pt = g->manual;

	return iommufd_device_replace(g->idev[1], &pt);
}

static int gsc_pasid_join(struct gstate *g)
{
	uint32_t pt = g->hp;

	return iommufd_device_pasid_attach(g->idev[1], 5, &pt);
}

/* The device the published handle names leaves; the other's handle is published: no failure. */
static int gsc_detach_publisher(struct gstate *g)
{
	iommufd_device_detach(g->idev[0]);
	return 0;
}

static unsigned long gsweep(struct __h_test *_metadata, int level, gscenario_fn fn)
{
	struct gdigest before, now;
	long base;
	unsigned long nth;

	gmachine_up(_metadata);
	warm_up();
	rcu_barrier_bp();
	base = uiommu_alloc_live();
	for (nth = 1; nth < 500; nth++) {
		struct gstate g;
		unsigned long left;
		int rc;

		gstate_setup(&g, level);
		gtake_digest(&g, &before);
		uiommu_fail_nth_arm(nth);
		rc = fn(&g);
		left = uiommu_fail_nth_disarm();
		if (left) {
			ASSERT_EQ(0, rc);
			gstate_teardown(&g);
			break;
		}
		ASSERT_NE(0, rc);
		gtake_digest(&g, &now);
		ASSERT_EQ(0, memcmp(&before, &now, sizeof(before)));
		gstate_teardown(&g);
		rcu_barrier_bp();
		ASSERT_EQ(base, uiommu_alloc_live());
	}
	rcu_barrier_bp();
	ASSERT_EQ(base, uiommu_alloc_live());
	ASSERT_TRUE(nth < 500);
	gmachine_down();
	return nth - 1;
}

#define GSWEEP_TEST(name, level, fn, fallible)                                           \
	TEST(fail_nth_igroup_##name)                                                        \
	{                                                                                   \
		unsigned long points;                                                       \
		if (!uiommu_fail_nth_available())                                           \
			SKIP("fault injection is compiled out of release builds");          \
		points = gsweep(_metadata, level, fn);                                      \
		printf("# igroup_%s: %lu failure points swept\n", #name, points);          \
		/* A fallible step was swept, or (detach) none was met at all. */         \
		ASSERT_TRUE((fallible) ? points > 0 : points == 0);                        \
	}

GSWEEP_TEST(bind_join, G_BOUND0, gsc_bind_join, true)
GSWEEP_TEST(attach_first, G_BOUND, gsc_attach_first, true)
GSWEEP_TEST(attach_join, G_ATT0, gsc_attach_join, true)
GSWEEP_TEST(replace_group, G_ATT, gsc_replace_group, true)
GSWEEP_TEST(pasid_join, G_PASID0, gsc_pasid_join, true)
GSWEEP_TEST(detach_publisher, G_ATT, gsc_detach_publisher, false)

/* Opening the device: a failed open leaves no context and no allocation behind. */
TEST(fail_nth_open)
{
	struct uiommu_stats base, after;
	unsigned long nth;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out of release builds");
	warm_up();
	uiommu_stats_get(&base);
	for (nth = 1; nth < 100; nth++) {
		int fd;

		uiommu_fail_nth_arm(nth);
		fd = uiommu_open(O_RDWR);
		if (uiommu_fail_nth_disarm()) {
			ASSERT_TRUE(fd >= 0);
			ASSERT_EQ(0, uiommu_close(fd));
			break;
		}
		ASSERT_EQ(-1, fd);
		uiommu_stats_get(&after);
		ASSERT_EQ(base.contexts, after.contexts);
		ASSERT_EQ(base.allocations, after.allocations);
	}
	ASSERT_TRUE(nth > 1);
}

/* Closes @fd (its last fd): the objects and allocations are back to @base. */
static bool closed_leaves_nothing(int fd, const struct uiommu_stats *base)
{
	struct uiommu_stats after;

	if (uiommu_close(fd) || uiommu_stats_get(&after))
		return false;
	return after.allocations == base->allocations && after.objects == base->objects;
}

static int ranges_of(int fd, uint32_t ioas, struct iommu_iova_range *r, uint32_t *n)
{
	struct iommu_ioas_iova_ranges cmd = {
		.size = sizeof(cmd), .ioas_id = ioas, .num_iovas = *n,
		.allowed_iovas = (uintptr_t)r,
	};
	int rc = ioc(fd, IOMMU_IOAS_IOVA_RANGES, &cmd);

	*n = cmd.num_iovas;
	return rc;
}

/*
 * The first IOVA_RANGES of an IOAS builds its RCU snapshot (main.c, "RCU dispatch"), best
 * effort: a failure there is silent (the call still answers, from the locked walk) and the
 * next call builds it again. Every other step's failure fails the call and leaves nothing.
 */
TEST(fail_nth_iova_ranges_snapshot)
{
	struct uiommu_stats base;
	struct iommu_iova_range r[4];
	unsigned long nth, silent = 0;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out of release builds");
	warm_up();
	uiommu_stats_get(&base);
	for (nth = 1; nth < 100; nth++) {
		struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
		int fd = uiommu_open(O_RDWR);
		uint32_t n = 4;
		unsigned long left;
		int rc;

		ASSERT_TRUE(fd >= 0);
		ASSERT_EQ(0, ioc(fd, IOMMU_IOAS_ALLOC, &alloc));
		uiommu_fail_nth_arm(nth);
		rc = ranges_of(fd, alloc.out_ioas_id, r, &n);
		left = uiommu_fail_nth_disarm();
		if (!rc) {
			ASSERT_EQ(1, n);
			ASSERT_EQ(0, r[0].start);
			ASSERT_EQ(UINT64_MAX, r[0].last);
			silent += !left;
		}
		/* Whatever happened, the next calls answer the same, with or without one. */
		n = 4;
		ASSERT_EQ(0, ranges_of(fd, alloc.out_ioas_id, r, &n));
		ASSERT_EQ(1, n);
		ASSERT_EQ(0, ranges_of(fd, alloc.out_ioas_id, r, &n));
		ASSERT_EQ(1, n);
		ASSERT_TRUE(closed_leaves_nothing(fd, &base));
		if (left)
			break;
	}
	ASSERT_TRUE(nth > 1 && nth < 100);
	ASSERT_EQ(1, silent);
}

/*
 * The object array grows with the ID bitmap (256 IDs first, then twice as many): a failed
 * growth fails the allocation with ENOMEM and leaves every published object where lookups
 * find it.
 */
TEST(fail_nth_object_table_growth)
{
	struct uiommu_stats base;
	struct iommu_iova_range r[4];
	unsigned long nth, enomem = 0;
	uint32_t i;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out of release builds");
	warm_up();
	uiommu_stats_get(&base);
	for (nth = 1; nth < 100; nth++) {
		struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
		int fd = uiommu_open(O_RDWR);
		unsigned long left;
		uint32_t n;
		int rc, err;

		ASSERT_TRUE(fd >= 0);
		/* IDs 1..255 fill the first 256 slots (0 is never used). */
		for (i = 1; i != 256; i++) {
			ASSERT_EQ(0, ioc(fd, IOMMU_IOAS_ALLOC, &alloc));
			ASSERT_EQ(i, alloc.out_ioas_id);
		}
		uiommu_fail_nth_arm(nth);
		rc = ioc(fd, IOMMU_IOAS_ALLOC, &alloc);
		err = errno;
		left = uiommu_fail_nth_disarm();
		if (left) {
			ASSERT_EQ(0, rc);
			ASSERT_EQ(256, alloc.out_ioas_id);
		} else {
			/* Its other steps fail too (the copies: EFAULT), each leaving nothing. */
			ASSERT_EQ(-1, rc);
			ASSERT_NE(0, err);
			enomem += err == ENOMEM;
		}
		for (i = 1; i < 256; i += 127) {
			n = 4;
			ASSERT_EQ(0, ranges_of(fd, i, r, &n));
		}
		ASSERT_EQ(0, ioc(fd, IOMMU_IOAS_ALLOC, &alloc));
		ASSERT_EQ(left ? 257 : 256, alloc.out_ioas_id);
		n = 4;
		ASSERT_EQ(0, ranges_of(fd, alloc.out_ioas_id, r, &n));
		ASSERT_TRUE(closed_leaves_nothing(fd, &base));
		if (left)
			break;
	}
	ASSERT_TRUE(nth > 1 && nth < 100);
	/* The object's own allocation, the array's and the bitmap's. */
	ASSERT_GE(enomem, 3);
}

/*
 * ACCESS_PAGES checks what it pinned against the user's pages; that check must not spend
 * fallible steps per page. It did (two per page), so the kernel's iommufd_fail_nth
 * access_pin sweep of 2 MiB needed over a thousand runs and hit the selftest's cap.
 */
static unsigned long access_pages_points(int fd, int afd, uint64_t len)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_ACCESS_PAGES, .id = (uint32_t)afd,
		.access_pages = { .iova = 0x100000, .length = len, .uptr = (uintptr_t)buffer },
	};
	struct iommu_test_cmd destroy = {
		.size = sizeof(destroy), .op = IOMMU_TEST_OP_DESTROY_ACCESS_PAGES,
		.id = (uint32_t)afd,
	};
	unsigned long points;

	uiommu_fail_nth_arm(1000000);
	if (ioc(fd, IOMMU_TEST_CMD, &cmd))
		abort();
	points = uiommu_fail_points_seen();
	uiommu_fail_nth_disarm();
	destroy.destroy_access_pages.access_pages_id = cmd.access_pages.out_access_pages_id;
	if (ioc(fd, IOMMU_TEST_CMD, &destroy))
		abort();
	return points;
}

TEST(fail_nth_access_pages_check_per_range)
{
	struct iommu_test_cmd create = {
		.size = sizeof(create), .op = IOMMU_TEST_OP_CREATE_ACCESS,
		.create_access = { .flags = MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES },
	};
	unsigned long one, all;
	int fd, afd;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out of release builds");
	if (sysconf(_SC_PAGESIZE) != 4096)
		SKIP("the buffer's layout assumes 4 KiB pages");
	fd = uiommu_open(O_RDWR);
	ASSERT_TRUE(fd >= 0);
	create.id = ioas_alloc(fd);
	ASSERT_EQ(0, map_fixed(fd, create.id, 0x100000, buffer, sizeof(buffer)));
	ASSERT_EQ(0, ioc(fd, IOMMU_TEST_CMD, &create));
	afd = (int)create.create_access.out_access_fd;
	/* 16 pages from the 64 KiB-aligned buffer: one chunk of the pin ledger, as one page. */
	one = access_pages_points(fd, afd, 4096);
	all = access_pages_points(fd, afd, 16 * 4096);
	ASSERT_TRUE(one > 0);
	ASSERT_EQ(one, all);
	ASSERT_EQ(0, uiommu_close(afd));
	ASSERT_EQ(0, uiommu_close(fd));
}

/*
 * Cover io-pgfault.c: a device joins a queue, reports a partial and the last request of a
 * group, and the handler's owner answers. Whichever step fails, the device gets exactly one
 * answer for the group (FAILURE when the group could not be made, SUCCESS otherwise), or, when
 * it could not join, INVALID for each request; once it left nothing is left allocated.
 */
static struct iopf_group *fnth_group;

static int fnth_keep_handler(struct iopf_group *group)
{
	fnth_group = group;
	return 0;
}

TEST(fail_nth_iopf_report)
{
	static struct iommu_device inst = { .name = "fnth-iopf", .max_pasids = 1u << 20 };
	struct iommu_attach_handle handle = { 0 };
	struct iommu_page_response last;
	struct iopf_fault partial = { .fault.type = IOMMU_FAULT_PAGE_REQ };
	struct iopf_fault lastf = { .fault.type = IOMMU_FAULT_PAGE_REQ };
	struct iommu_domain *dom;
	struct iopf_queue *queue;
	struct device *dev;
	unsigned long nth;
	unsigned int answers;
	bool joined;
	long base;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out of release builds");
	ASSERT_EQ(0, mock_iommu_register(&inst));
	dev = device_alloc("0000:7f:00.0");
	dev->iommu = &inst;
	ASSERT_EQ(0, iommu_probe_device(dev));
	dom = iommu_paging_domain_alloc(dev);
	ASSERT_FALSE(IS_ERR(dom));
	dom->iopf_handler = fnth_keep_handler;
	ASSERT_EQ(0, iommu_attach_group_handle(dom, dev->iommu_group, &handle));
	queue = iopf_queue_alloc("fnth");
	ASSERT_TRUE(queue != NULL);
	partial.fault.prm.grpid = lastf.fault.prm.grpid = 9;
	lastf.fault.prm.flags = IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE;
	rcu_barrier_bp();
	base = uiommu_alloc_live();

	for (nth = 1; nth < 100; nth++) {
		fnth_group = NULL;
		answers = mock_page_responses(dev, NULL);
		uiommu_fail_nth_arm(nth);
		joined = !iopf_queue_add_device(queue, dev);
		iommu_report_device_fault(dev, &partial);
		iommu_report_device_fault(dev, &lastf);
		if (fnth_group) {
			ASSERT_TRUE(joined);
			ASSERT_LE(fnth_group->fault_count, 2u);
			iopf_group_response(fnth_group, IOMMU_PAGE_RESP_SUCCESS);
			iopf_free_group(fnth_group);
		}
		/* Joined: one answer for the group. Not: each request answered INVALID. */
		ASSERT_EQ(answers + (joined ? 1u : 2u), mock_page_responses(dev, &last));
		if (fnth_group)
			ASSERT_EQ(IOMMU_PAGE_RESP_SUCCESS, last.code);
		else
			ASSERT_NE(IOMMU_PAGE_RESP_SUCCESS, last.code);
		if (joined)
			iopf_queue_remove_device(queue, dev);
		rcu_barrier_bp();
		ASSERT_EQ(base, uiommu_alloc_live());
		if (uiommu_fail_nth_disarm())
			break;
	}
	ASSERT_TRUE(nth > 1);
	ASSERT_TRUE(fnth_group != NULL);
	iommu_detach_group_handle(dom, dev->iommu_group);
	iommu_domain_free(dom);
	iopf_queue_free(queue);
	iommu_release_device(dev);
	mock_device_forget(dev);
	device_put(dev);
	mock_iommu_unregister(&inst);
}

TEST_HARNESS_MAIN
