// SPDX-License-Identifier: MIT
/*
 * The ioctl-level suite of uiommu: every command of /dev/iommu, its dispatch and size rules, its
 * flags, and the IOAS semantics (map, unmap, copy, ranges, options), checked value by value
 * against the kernel's behaviour. Written from the ABI description; no kernel code is used.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "uiommu_test.h"
#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"

#define U64_MAX UINT64_MAX
#define SZ_2M (2ull << 20)

static uint64_t PS;		/* page size */
static char *g_base;		/* 8 MiB, 2 MiB aligned */
#define G_BASE_LEN (8ull << 20)

static void __attribute__((constructor)) init_globals(void)
{
	void *p;

	PS = (uint64_t)sysconf(_SC_PAGESIZE);
	p = mmap(NULL, G_BASE_LEN + SZ_2M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		 -1, 0);
	if (p == MAP_FAILED)
		abort();
	g_base = (char *)(((uintptr_t)p + SZ_2M - 1) & ~(uintptr_t)(SZ_2M - 1));
}

/* ---- helpers ------------------------------------------------------------------------------ */

#define RW (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)

static int map_ex(int fd, uint32_t ioas, uint32_t flags, const void *va, uint64_t len,
		  uint64_t *iova)
{
	struct iommu_ioas_map cmd = {
		.size = sizeof(cmd),
		.flags = flags,
		.ioas_id = ioas,
		.user_va = (uintptr_t)va,
		.length = len,
		.iova = iova ? *iova : 0,
	};
	int rc = ioc(fd, IOMMU_IOAS_MAP, &cmd);

	if (!rc && iova)
		*iova = cmd.iova;
	return rc;
}

static int map_fixed(int fd, uint32_t ioas, uint64_t iova, const void *va, uint64_t len)
{
	return map_ex(fd, ioas, RW | IOMMU_IOAS_MAP_FIXED_IOVA, va, len, &iova);
}

static int map_auto(int fd, uint32_t ioas, const void *va, uint64_t len, uint64_t *iova)
{
	*iova = 0;
	return map_ex(fd, ioas, RW, va, len, iova);
}

static int unmap(int fd, uint32_t ioas, uint64_t iova, uint64_t len, uint64_t *out)
{
	struct iommu_ioas_unmap cmd = {
		.size = sizeof(cmd), .ioas_id = ioas, .iova = iova, .length = len };
	int rc = ioc(fd, IOMMU_IOAS_UNMAP, &cmd);

	if (out)
		*out = cmd.length;
	return rc;
}

static int copy(int fd, uint32_t flags, uint32_t dst, uint64_t *dst_iova, uint32_t src,
		uint64_t src_iova, uint64_t len)
{
	struct iommu_ioas_copy cmd = {
		.size = sizeof(cmd),
		.flags = flags,
		.dst_ioas_id = dst,
		.src_ioas_id = src,
		.length = len,
		.dst_iova = *dst_iova,
		.src_iova = src_iova,
	};
	int rc = ioc(fd, IOMMU_IOAS_COPY, &cmd);

	if (!rc)
		*dst_iova = cmd.dst_iova;
	return rc;
}

static int add_reserved(int fd, uint32_t ioas, uint64_t start, uint64_t len)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd),
		.op = IOMMU_TEST_OP_ADD_RESERVED,
		.id = ioas,
		.add_reserved = { .start = start, .length = len },
	};

	return ioc(fd, IOMMU_TEST_CMD, &cmd);
}

static int option(int fd, uint32_t id, uint32_t obj, uint16_t op, uint64_t *val)
{
	struct iommu_option cmd = {
		.size = sizeof(cmd), .option_id = id, .op = op, .object_id = obj,
		.val64 = val ? *val : 0 };
	int rc = ioc(fd, IOMMU_OPTION, &cmd);

	if (!rc && val)
		*val = cmd.val64;
	return rc;
}

static int huge_set(int fd, uint32_t ioas, uint64_t v)
{
	return option(fd, IOMMU_OPTION_HUGE_PAGES, ioas, IOMMU_OPTION_OP_SET, &v);
}

static int64_t huge_get(int fd, uint32_t ioas)
{
	uint64_t v = 0xdead;

	if (option(fd, IOMMU_OPTION_HUGE_PAGES, ioas, IOMMU_OPTION_OP_GET, &v))
		return -1;
	return (int64_t)v;
}

static int allow(int fd, uint32_t ioas, const struct iommu_iova_range *r, uint32_t n)
{
	struct iommu_ioas_allow_iovas cmd = {
		.size = sizeof(cmd), .ioas_id = ioas, .num_iovas = n,
		.allowed_iovas = (uintptr_t)r };

	return ioc(fd, IOMMU_IOAS_ALLOW_IOVAS, &cmd);
}

static int ranges(int fd, uint32_t ioas, struct iommu_iova_range *r, uint32_t *n,
		  uint64_t *align)
{
	struct iommu_ioas_iova_ranges cmd = {
		.size = sizeof(cmd), .ioas_id = ioas, .num_iovas = *n,
		.allowed_iovas = (uintptr_t)r, .out_iova_alignment = 0x1234 };
	int rc = ioc(fd, IOMMU_IOAS_IOVA_RANGES, &cmd);

	*n = cmd.num_iovas;
	if (align)
		*align = cmd.out_iova_alignment;
	return rc;
}

static uint64_t roundup_pow2(uint64_t x)
{
	uint64_t r = 1;

	while (r < x)
		r <<= 1;
	return r;
}

/* The automatic IOVA the allocator picks for (va, len) in a hole starting at @start. */
static uint64_t auto_iova(uint64_t start, uint64_t va, uint64_t len)
{
	uint64_t a = roundup_pow2(len);

	if (va && (va & -va) < a)
		a = va & -va;
	if (a > SZ_2M)
		a = SZ_2M;
	return ((start + a - 1) & ~(a - 1)) | (va % PS);
}

static bool has_sys_resource(void)
{
	char line[256];
	bool cap = false, init_ns = false;
	FILE *f = fopen("/proc/self/status", "r");

	if (f) {
		while (fgets(line, sizeof(line), f)) {
			unsigned long long v;

			if (sscanf(line, "CapEff: %llx", &v) == 1)
				cap = (v >> 24) & 1;
		}
		fclose(f);
	}
	f = fopen("/proc/self/uid_map", "r");
	if (f) {
		unsigned long a, b, c;

		if (fscanf(f, "%lu %lu %lu", &a, &b, &c) == 3)
			init_ns = a == 0 && b == 0 && c == 4294967295ul;
		fclose(f);
	}
	return cap && init_ns;
}

/* ===========================================================================================
 * Fixture: a fresh fd with no objects.
 * =========================================================================================== */

FIXTURE(iommufd) {
	int fd;
};

FIXTURE_SETUP(iommufd)
{
	self->fd = uiommu_open(O_RDWR);
	ASSERT_GE(self->fd, 0);
}

FIXTURE_TEARDOWN(iommufd)
{
	uiommu_close(self->fd);
}

TEST_F(iommufd, dispatch_null_and_unknown)
{
	uint64_t buf[16] = { 0 };

	NEEDS_IOMMUFD_TEST();

	ASSERT_ERRNO(EFAULT, ioc(self->fd, IOMMU_DESTROY, NULL));
	ASSERT_ERRNO(EFAULT, ioc(self->fd, IOMMU_IOAS_ALLOC, NULL));
	/* The size is read before the table slot is checked. */
	ASSERT_ERRNO(EFAULT, ioc(self->fd, _IO(IOMMUFD_TYPE, 0x95), NULL));
	ASSERT_ERRNO(EFAULT, ioc(self->fd, _IO(IOMMUFD_TYPE, 0x9f), NULL));

	buf[0] = sizeof(buf);
	ASSERT_ERRNO(ENOTTY, ioc(self->fd, _IO(IOMMUFD_TYPE, 0x7f), buf));
	for (unsigned int nr = 0x95; nr <= 0x9f; nr++)
		ASSERT_ERRNO(ENOTTY, ioc(self->fd, _IO(IOMMUFD_TYPE, nr), buf));
	/* Wrong full command words on valid numbers. */
	buf[0] = sizeof(struct iommu_destroy);
	ASSERT_ERRNO(ENOTTY, ioc(self->fd, _IOWR(IOMMUFD_TYPE, 0x80, struct iommu_destroy), buf));
	ASSERT_ERRNO(ENOTTY, ioc(self->fd, _IO('x', 0x80), buf));
	ASSERT_ERRNO(ENOTTY, ioc(self->fd, _IOR(IOMMUFD_TYPE, 0x81, struct iommu_ioas_alloc), buf));
	/* Nothing was created by any of that. */
	ASSERT_ERRNO(ENOENT, destroy(self->fd, 1));
}

struct size_rule {
	const char *name;
	unsigned long req;
	uint32_t size, min;
};

#define SR(r, s, m) { #r, r, sizeof(struct s), m }
static const struct size_rule size_rules[] = {
	SR(IOMMU_DESTROY, iommu_destroy, 8),
	SR(IOMMU_IOAS_ALLOC, iommu_ioas_alloc, 12),
	SR(IOMMU_IOAS_ALLOW_IOVAS, iommu_ioas_allow_iovas, 24),
	SR(IOMMU_IOAS_COPY, iommu_ioas_copy, 40),
	SR(IOMMU_IOAS_IOVA_RANGES, iommu_ioas_iova_ranges, 32),
	SR(IOMMU_IOAS_MAP, iommu_ioas_map, 40),
	SR(IOMMU_IOAS_UNMAP, iommu_ioas_unmap, 24),
	SR(IOMMU_OPTION, iommu_option, 24),
	SR(IOMMU_VFIO_IOAS, iommu_vfio_ioas, 12),
	SR(IOMMU_HWPT_ALLOC, iommu_hwpt_alloc, 24),
	SR(IOMMU_GET_HW_INFO, iommu_hw_info, 32),
	SR(IOMMU_HWPT_SET_DIRTY_TRACKING, iommu_hwpt_set_dirty_tracking, 16),
	SR(IOMMU_HWPT_GET_DIRTY_BITMAP, iommu_hwpt_get_dirty_bitmap, 48),
	SR(IOMMU_HWPT_INVALIDATE, iommu_hwpt_invalidate, 32),
	SR(IOMMU_FAULT_QUEUE_ALLOC, iommu_fault_alloc, 16),
	SR(IOMMU_IOAS_MAP_FILE, iommu_ioas_map_file, 40),
	SR(IOMMU_VIOMMU_ALLOC, iommu_viommu_alloc, 24),
	SR(IOMMU_VDEVICE_ALLOC, iommu_vdevice_alloc, 24),
	SR(IOMMU_IOAS_CHANGE_PROCESS, iommu_ioas_change_process, 8),
	SR(IOMMU_VEVENTQ_ALLOC, iommu_veventq_alloc, 28),
	SR(IOMMU_HW_QUEUE_ALLOC, iommu_hw_queue_alloc, 40),
	SR(IOMMU_TEST_CMD, iommu_test_cmd, 68),
};

TEST_F(iommufd, size_rules_every_command)
{
	NEEDS_IOMMUFD_TEST();

	/* Check that the table covers every command number. */
	ASSERT_EQ(sizeof(size_rules) / sizeof(size_rules[0]), 22);
	for (size_t i = 0; i < sizeof(size_rules) / sizeof(size_rules[0]); i++) {
		const struct size_rule *r = &size_rules[i];
		uint8_t buf[256];
		int rc1, e1, rc2, e2;

		TH_LOG("%s (sizeof %u, min %u)", r->name, r->size, r->min);
		ASSERT_EQ(_IOC_NR(r->req), i < 21 ? 0x80 + i : 0xa0);
		ASSERT_LE(r->min, r->size);

		memset(buf, 0, sizeof(buf));
		buf[r->min - 1] = 0xff;
		*(uint32_t *)buf = r->min - 1;
		ASSERT_ERRNO(EINVAL, ioc(self->fd, r->req, buf));

		memset(buf, 0, sizeof(buf));
		*(uint32_t *)buf = r->size + 8;
		buf[r->size + 7] = 0x01;
		ASSERT_ERRNO(E2BIG, ioc(self->fd, r->req, buf));
		memset(buf, 0, sizeof(buf));
		*(uint32_t *)buf = r->size + 8;
		buf[r->size] = 0x80;
		ASSERT_ERRNO(E2BIG, ioc(self->fd, r->req, buf));

		memset(buf, 0, sizeof(buf));
		*(uint32_t *)buf = r->size;
		errno = 0;
		rc1 = ioc(self->fd, r->req, buf);
		e1 = rc1 ? errno : 0;

		memset(buf, 0, sizeof(buf));
		*(uint32_t *)buf = r->size + 8;
		errno = 0;
		rc2 = ioc(self->fd, r->req, buf);
		e2 = rc2 ? errno : 0;
		TH_LOG("  sizeof: rc %d errno %d; sizeof+8: rc %d errno %d", rc1, e1, rc2, e2);
		ASSERT_EQ(rc1, rc2);
		ASSERT_EQ(e1, e2);
		/* A huge size with zeros beyond the page: still the same answer. */
	}
}

/*
 * A caller's struct shorter than ours reads as zero-extended whatever lies past its size: the
 * dispatch may copy our whole struct at once when it sits in one page (main.c), and must then
 * ignore what it read past the caller's size.
 */
TEST_F(iommufd, size_rules_short_struct_ignores_bytes_past_size)
{
	unsigned int shorter = 0;

	NEEDS_IOMMUFD_TEST();

	for (size_t i = 0; i < sizeof(size_rules) / sizeof(size_rules[0]); i++) {
		const struct size_rule *r = &size_rules[i];
		uint8_t buf[256] __attribute__((aligned(64)));
		int rc1, e1, rc2, e2;

		if (r->min == r->size)
			continue;
		shorter++;
		memset(buf, 0, sizeof(buf));
		*(uint32_t *)buf = r->min;
		errno = 0;
		rc1 = ioc(self->fd, r->req, buf);
		e1 = rc1 ? errno : 0;

		memset(buf, 0xa5, sizeof(buf));
		memset(buf, 0, r->min);
		*(uint32_t *)buf = r->min;
		errno = 0;
		rc2 = ioc(self->fd, r->req, buf);
		e2 = rc2 ? errno : 0;
		TH_LOG("%s: zeros past %u: rc %d errno %d; garbage: rc %d errno %d", r->name,
		       r->min, rc1, e1, rc2, e2);
		ASSERT_EQ(rc1, rc2);
		ASSERT_EQ(e1, e2);
	}
	ASSERT_GE(shorter, 3);
}

TEST_F(iommufd, size_rules_zero_payload_results)
{
	uint8_t buf[256];
	bool priv = has_sys_resource();
	struct {
		unsigned long req;
		int err;	/* 0: success */
	} want[] = {
		{ IOMMU_DESTROY, ENOENT },
		{ IOMMU_IOAS_ALLOW_IOVAS, ENOENT },
		{ IOMMU_IOAS_COPY, EINVAL },
		{ IOMMU_IOAS_IOVA_RANGES, ENOENT },
		{ IOMMU_IOAS_MAP, EINVAL },
		{ IOMMU_IOAS_UNMAP, ENOENT },
		{ IOMMU_OPTION, priv ? 0 : EPERM },	/* RLIMIT SET 0 on an empty ctx */
		{ IOMMU_VFIO_IOAS, ENODEV },
		{ IOMMU_HWPT_ALLOC, ENOENT },
		{ IOMMU_GET_HW_INFO, ENOENT },
		{ IOMMU_HWPT_SET_DIRTY_TRACKING, ENOENT },
		{ IOMMU_HWPT_GET_DIRTY_BITMAP, ENOENT },
		{ IOMMU_HWPT_INVALIDATE, ENOENT },
		{ IOMMU_FAULT_QUEUE_ALLOC, 0 },	/* flags 0: a fault queue and its fd */
		{ IOMMU_IOAS_MAP_FILE, EINVAL },
		{ IOMMU_VDEVICE_ALLOC, ENOENT },
		{ IOMMU_IOAS_CHANGE_PROCESS, 0 },
		{ IOMMU_TEST_CMD, EOPNOTSUPP },
		{ IOMMU_IOAS_ALLOC, 0 },
		{ IOMMU_OPTION, priv ? EBUSY : EPERM },	/* now an object exists */
	};

	NEEDS_IOMMUFD_TEST();

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		TH_LOG("case %zu nr 0x%x", i, (unsigned)_IOC_NR(want[i].req));
		memset(buf, 0, sizeof(buf));
		*(uint32_t *)buf = 200;
		if (want[i].err)
			ASSERT_ERRNO(want[i].err, ioc(self->fd, want[i].req, buf));
		else
			ASSERT_EQ(ioc(self->fd, want[i].req, buf), 0);
		/* The fault fd (out_fault_fd at 12) keeps the context open: close it. */
		if (want[i].req == IOMMU_FAULT_QUEUE_ALLOC)
			ASSERT_EQ(0, uiommu_close((int)((struct iommu_fault_alloc *)buf)->out_fault_fd));
	}
}

TEST_F(iommufd, reserved_and_flags_eopnotsupp)
{
	uint32_t ioas;
	struct iommu_iova_range r[2] = { 0 };

	NEEDS_IOMMUFD_TEST();

	{
		struct iommu_ioas_alloc c = { .size = sizeof(c), .flags = 1 };

		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_IOAS_ALLOC, &c));
		c.flags = 1u << 31;
		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_IOAS_ALLOC, &c));
	}
	ASSERT_EQ(ioas_alloc_id(self->fd, &ioas), 0);
	{
		struct iommu_ioas_map c = { .size = sizeof(c), .flags = RW | (1u << 3),
					    .ioas_id = ioas, .user_va = (uintptr_t)g_base,
					    .length = PS };

		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_IOAS_MAP, &c));
		c.flags = RW;
		c.__reserved = 1;
		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_IOAS_MAP, &c));
	}
	{
		struct iommu_ioas_map_file c = { .size = sizeof(c), .flags = RW | (1u << 3),
						 .ioas_id = ioas, .fd = -1, .length = PS };

		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_IOAS_MAP_FILE, &c));
	}
	{
		struct iommu_ioas_copy c = { .size = sizeof(c), .flags = RW | (1u << 3),
					     .dst_ioas_id = ioas, .src_ioas_id = ioas,
					     .length = PS };

		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_IOAS_COPY, &c));
	}
	{
		struct iommu_ioas_iova_ranges c = { .size = sizeof(c), .ioas_id = ioas,
						    .num_iovas = 2, .__reserved = 1,
						    .allowed_iovas = (uintptr_t)r };

		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_IOAS_IOVA_RANGES, &c));
	}
	{
		struct iommu_ioas_allow_iovas c = { .size = sizeof(c), .ioas_id = ioas,
						    .__reserved = 1 };

		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_IOAS_ALLOW_IOVAS, &c));
	}
	{
		struct iommu_option c = { .size = sizeof(c), .option_id = IOMMU_OPTION_HUGE_PAGES,
					  .op = IOMMU_OPTION_OP_GET, .__reserved = 1,
					  .object_id = ioas };

		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_OPTION, &c));
		c.__reserved = 0;
		c.op = 2;
		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_OPTION, &c));
		c.op = IOMMU_OPTION_OP_GET;
		c.option_id = 2;
		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_OPTION, &c));
		c.option_id = IOMMU_OPTION_RLIMIT_MODE;
		c.object_id = 0;
		c.op = 2;
		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_OPTION, &c));
		c.op = IOMMU_OPTION_OP_GET;
		c.object_id = ioas;
		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_OPTION, &c));
		c.object_id = 0;
		c.__reserved = 0x8000;
		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_OPTION, &c));
	}
	{
		struct iommu_vfio_ioas c = { .size = sizeof(c), .ioas_id = ioas,
					     .op = IOMMU_VFIO_IOAS_SET, .__reserved = 1 };

		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_VFIO_IOAS, &c));
		c.__reserved = 0;
		c.op = 3;
		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_VFIO_IOAS, &c));
	}
	{
		struct iommu_ioas_change_process c = { .size = sizeof(c), .__reserved = 1 };

		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_IOAS_CHANGE_PROCESS, &c));
	}
	{
		struct iommu_hwpt_alloc c = { .size = sizeof(c), .flags = 1u << 31, .pt_id = ioas };

		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_HWPT_ALLOC, &c));
		c.flags = 0;
		c.__reserved = 1;
		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_HWPT_ALLOC, &c));
		c.__reserved = 0;
		c.__reserved2 = 1;
		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_HWPT_ALLOC, &c));
		c.__reserved2 = 0;
		c.flags = IOMMU_HWPT_ALLOC_NEST_PARENT;
		ASSERT_ERRNO(ENOENT, ioc(self->fd, IOMMU_HWPT_ALLOC, &c));
		/* An IOAS id is not a device. */
		c.dev_id = ioas;
		ASSERT_ERRNO(ENOENT, ioc(self->fd, IOMMU_HWPT_ALLOC, &c));
	}
	{
		struct iommu_hw_info c = { .size = sizeof(c), .flags = 2 };

		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_GET_HW_INFO, &c));
		c.flags = 0;
		c.__reserved[2] = 1;
		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_GET_HW_INFO, &c));
		c.__reserved[2] = 0;
		c.dev_id = ioas;
		ASSERT_ERRNO(ENOENT, ioc(self->fd, IOMMU_GET_HW_INFO, &c));
	}
	{
		struct iommu_hwpt_set_dirty_tracking c = { .size = sizeof(c), .flags = 2 };

		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &c));
		c.flags = 0;
		c.__reserved = 1;
		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &c));
		c.__reserved = 0;
		c.hwpt_id = ioas;
		ASSERT_ERRNO(ENOENT, ioc(self->fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &c));
	}
	{
		struct iommu_hwpt_get_dirty_bitmap c = { .size = sizeof(c), .flags = 2 };

		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &c));
		c.flags = 0;
		c.__reserved = 1;
		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &c));
	}
	{
		struct iommu_hwpt_invalidate c = { .size = sizeof(c), .__reserved = 1 };

		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_HWPT_INVALIDATE, &c));
		c.__reserved = 0;
		c.hwpt_id = 9999;
		ASSERT_ERRNO(ENOENT, ioc(self->fd, IOMMU_HWPT_INVALIDATE, &c));
		/* Neither a nested HWPT nor a vIOMMU: EINVAL (the newest kernel's answer). */
		c.hwpt_id = ioas;
		ASSERT_ERRNO(EINVAL, ioc(self->fd, IOMMU_HWPT_INVALIDATE, &c));
	}
	{
		struct iommu_fault_alloc c = { .size = sizeof(c), .flags = 1 };

		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_FAULT_QUEUE_ALLOC, &c));
		c.flags = 0;
		ASSERT_EQ(0, ioc(self->fd, IOMMU_FAULT_QUEUE_ALLOC, &c));
		ASSERT_EQ(0, uiommu_close((int)c.out_fault_fd));
	}
	{
		struct iommu_viommu_alloc c = { .size = sizeof(c), .flags = 1, .type = 1 };

		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_VIOMMU_ALLOC, &c));
		c.flags = 0;
		c.__reserved = 1;
		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_VIOMMU_ALLOC, &c));
		c.__reserved = 0;
		ASSERT_ERRNO(ENOENT, ioc(self->fd, IOMMU_VIOMMU_ALLOC, &c));
	}
	{
		struct iommu_vdevice_alloc c = { .size = sizeof(c), .viommu_id = ioas };

		ASSERT_ERRNO(ENOENT, ioc(self->fd, IOMMU_VDEVICE_ALLOC, &c));
	}
	{
		struct iommu_veventq_alloc c = { .size = sizeof(c), .flags = 1, .type = 1,
						 .veventq_depth = 1 };

		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_VEVENTQ_ALLOC, &c));
		c.flags = 0;
		c.__reserved = 1;
		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_VEVENTQ_ALLOC, &c));
		c.__reserved = 0;
		c.type = IOMMU_VEVENTQ_TYPE_DEFAULT;
		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_VEVENTQ_ALLOC, &c));
		c.type = 1;
		ASSERT_ERRNO(ENOENT, ioc(self->fd, IOMMU_VEVENTQ_ALLOC, &c));
	}
	{
		struct iommu_hw_queue_alloc c = { .size = sizeof(c), .flags = 1, .type = 1,
						  .length = PS };

		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_HW_QUEUE_ALLOC, &c));
		c.flags = 0;
		c.type = IOMMU_HW_QUEUE_TYPE_DEFAULT;
		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_HW_QUEUE_ALLOC, &c));
		c.type = 1;
		ASSERT_ERRNO(ENOENT, ioc(self->fd, IOMMU_HW_QUEUE_ALLOC, &c));
	}
	{
		struct iommu_test_cmd c = { .size = sizeof(c), .op = 99, .id = ioas };

		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_TEST_CMD, &c));
	}
	/* The IOAS is still there and the only object. */
	ASSERT_EQ(destroy(self->fd, ioas), 0);
	ASSERT_ERRNO(ENOENT, destroy(self->fd, ioas));
}

TEST_F(iommufd, ids_start_at_one_and_reuse_lowest)
{
	uint32_t id[5];

	for (int i = 0; i < 5; i++) {
		ASSERT_EQ(ioas_alloc_id(self->fd, &id[i]), 0);
		ASSERT_EQ(id[i], (uint32_t)i + 1);
	}
	ASSERT_EQ(destroy(self->fd, 2), 0);
	ASSERT_EQ(destroy(self->fd, 4), 0);
	ASSERT_ERRNO(ENOENT, destroy(self->fd, 2));
	ASSERT_ERRNO(ENOENT, destroy(self->fd, 0));
	ASSERT_ERRNO(ENOENT, destroy(self->fd, 6));
	ASSERT_ERRNO(ENOENT, destroy(self->fd, 0xffffffff));
	ASSERT_EQ(ioas_alloc_id(self->fd, &id[0]), 0);
	ASSERT_EQ(id[0], 2);
	ASSERT_EQ(ioas_alloc_id(self->fd, &id[0]), 0);
	ASSERT_EQ(id[0], 4);
	ASSERT_EQ(ioas_alloc_id(self->fd, &id[0]), 0);
	ASSERT_EQ(id[0], 6);
}

TEST_F(iommufd, destroy_sizes)
{
	uint8_t buf[24] = { 0 };
	uint32_t ioas;

	ASSERT_EQ(ioas_alloc_id(self->fd, &ioas), 0);
	*(uint32_t *)buf = 16;
	*(uint32_t *)(buf + 4) = ioas + 1;
	ASSERT_ERRNO(ENOENT, ioc(self->fd, IOMMU_DESTROY, buf));
	buf[15] = 1;
	ASSERT_ERRNO(E2BIG, ioc(self->fd, IOMMU_DESTROY, buf));
	*(uint32_t *)buf = 7;
	ASSERT_ERRNO(EINVAL, ioc(self->fd, IOMMU_DESTROY, buf));
	*(uint32_t *)buf = 8;
	ASSERT_ERRNO(ENOENT, ioc(self->fd, IOMMU_DESTROY, buf));
	*(uint32_t *)(buf + 4) = ioas;
	*(uint32_t *)buf = 16;
	buf[15] = 0;
	ASSERT_EQ(ioc(self->fd, IOMMU_DESTROY, buf), 0);
	ASSERT_ERRNO(ENOENT, ioc(self->fd, IOMMU_DESTROY, buf));
}

TEST_F(iommufd, reply_copied_up_to_user_size)
{
	uint8_t buf[32];
	uint32_t id;

	memset(buf, 0xaa, sizeof(buf));
	*(uint32_t *)buf = 12;
	*(uint32_t *)(buf + 4) = 0;
	ASSERT_EQ(ioc(self->fd, IOMMU_IOAS_ALLOC, buf), 0);
	memcpy(&id, buf + 8, 4);
	ASSERT_EQ(id, 1);
	for (int i = 12; i < 32; i++)
		ASSERT_EQ(buf[i], 0xaa);

	/* A larger user struct (zero tail) gets exactly sizeof back; the tail stays zero. */
	memset(buf, 0, sizeof(buf));
	buf[31] = 0;
	*(uint32_t *)buf = 24;
	memset(buf + 24, 0xbb, 8);
	ASSERT_EQ(ioc(self->fd, IOMMU_IOAS_ALLOC, buf), 0);
	memcpy(&id, buf + 8, 4);
	ASSERT_EQ(id, 2);
	for (int i = 12; i < 24; i++)
		ASSERT_EQ(buf[i], 0);
	for (int i = 24; i < 32; i++)
		ASSERT_EQ(buf[i], 0xbb);
	ASSERT_EQ(*(uint32_t *)buf, 24);
}

TEST_F(iommufd, wrong_type_lookups)
{
	uint32_t ioas;
	struct iommu_vfio_ioas v = { .size = sizeof(v), .op = IOMMU_VFIO_IOAS_SET };

	NEEDS_IOMMUFD_TEST();

	ASSERT_EQ(ioas_alloc_id(self->fd, &ioas), 0);
	/* Every IOAS command on ids that do not name an IOAS. */
	ASSERT_ERRNO(ENOENT, map_fixed(self->fd, ioas + 1, PS, g_base, PS));
	ASSERT_ERRNO(ENOENT, map_fixed(self->fd, 0, PS, g_base, PS));
	ASSERT_ERRNO(ENOENT, unmap(self->fd, ioas + 1, 0, U64_MAX, NULL));
	ASSERT_ERRNO(ENOENT, huge_get(self->fd, 0));
	ASSERT_ERRNO(ENOENT, huge_get(self->fd, ioas + 1));
	ASSERT_ERRNO(ENOENT, huge_set(self->fd, 0, 1));
	v.ioas_id = ioas + 1;
	ASSERT_ERRNO(ENOENT, ioc(self->fd, IOMMU_VFIO_IOAS, &v));
	ASSERT_ERRNO(ENOENT, add_reserved(self->fd, ioas + 1, PS, PS));
	{
		uint64_t d = PS;

		ASSERT_ERRNO(ENOENT, copy(self->fd, RW | IOMMU_IOAS_MAP_FIXED_IOVA, ioas, &d,
					  ioas + 1, 0, PS));
	}
}

TEST_F(iommufd, global_options)
{
	uint64_t v = 0x55;
	uint32_t ioas;

	ASSERT_EQ(option(self->fd, IOMMU_OPTION_RLIMIT_MODE, 0, IOMMU_OPTION_OP_GET, &v), 0);
	ASSERT_EQ(v, 0);
	if (!has_sys_resource()) {
		v = 1;
		ASSERT_ERRNO(EPERM, option(self->fd, IOMMU_OPTION_RLIMIT_MODE, 0,
					   IOMMU_OPTION_OP_SET, &v));
		v = 2;
		ASSERT_ERRNO(EPERM, option(self->fd, IOMMU_OPTION_RLIMIT_MODE, 0,
					   IOMMU_OPTION_OP_SET, &v));
		return;
	}
	v = 2;
	ASSERT_ERRNO(EINVAL, option(self->fd, IOMMU_OPTION_RLIMIT_MODE, 0, IOMMU_OPTION_OP_SET,
				    &v));
	v = 1;
	ASSERT_EQ(option(self->fd, IOMMU_OPTION_RLIMIT_MODE, 0, IOMMU_OPTION_OP_SET, &v), 0);
	ASSERT_EQ(v, 1);
	v = 7;
	ASSERT_EQ(option(self->fd, IOMMU_OPTION_RLIMIT_MODE, 0, IOMMU_OPTION_OP_GET, &v), 0);
	ASSERT_EQ(v, 1);
	ASSERT_EQ(ioas_alloc_id(self->fd, &ioas), 0);
	/* Busy is checked before the value. */
	v = 0;
	ASSERT_ERRNO(EBUSY, option(self->fd, IOMMU_OPTION_RLIMIT_MODE, 0, IOMMU_OPTION_OP_SET,
				   &v));
	v = 2;
	ASSERT_ERRNO(EBUSY, option(self->fd, IOMMU_OPTION_RLIMIT_MODE, 0, IOMMU_OPTION_OP_SET,
				   &v));
	ASSERT_EQ(destroy(self->fd, ioas), 0);
	v = 0;
	ASSERT_EQ(option(self->fd, IOMMU_OPTION_RLIMIT_MODE, 0, IOMMU_OPTION_OP_SET, &v), 0);
	v = 7;
	ASSERT_EQ(option(self->fd, IOMMU_OPTION_RLIMIT_MODE, 0, IOMMU_OPTION_OP_GET, &v), 0);
	ASSERT_EQ(v, 0);
	/* object_id != 0 is refused for the global option. */
	v = 0;
	ASSERT_ERRNO(EOPNOTSUPP, option(self->fd, IOMMU_OPTION_RLIMIT_MODE, 1,
					IOMMU_OPTION_OP_SET, &v));
}

TEST_F(iommufd, test_cmd_add_reserved)
{
	uint32_t ioas;

	NEEDS_IOMMUFD_TEST();

	ASSERT_EQ(ioas_alloc_id(self->fd, &ioas), 0);
	ASSERT_ERRNO(EINVAL, add_reserved(self->fd, ioas, PS, 0));
	ASSERT_ERRNO(EOVERFLOW, add_reserved(self->fd, ioas, U64_MAX - PS + 1, 2 * PS));
	ASSERT_ERRNO(ENOENT, add_reserved(self->fd, 0, PS, PS));
	ASSERT_ERRNO(ENOENT, add_reserved(self->fd, ioas + 1, PS, PS));
	ASSERT_EQ(add_reserved(self->fd, ioas, PS, PS), 0);
	{
		struct iommu_test_cmd c = { .size = sizeof(c), .op = 99, .id = ioas };

		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_TEST_CMD, &c));
		c.op = 0;
		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_TEST_CMD, &c));
	}
}

TEST_F(iommufd, change_process)
{
	struct iommu_ioas_change_process c = { .size = sizeof(c) };
	uint32_t ioas;
	uint64_t iova;
	int mfd;

	ASSERT_EQ(ioc(self->fd, IOMMU_IOAS_CHANGE_PROCESS, &c), 0);
	ASSERT_EQ(ioas_alloc_id(self->fd, &ioas), 0);
	ASSERT_EQ(ioc(self->fd, IOMMU_IOAS_CHANGE_PROCESS, &c), 0);

	mfd = memfd_create("uiommu-test", 0);
	ASSERT_GE(mfd, 0);
	ASSERT_EQ(ftruncate(mfd, 16 * PS), 0);
	{
		struct iommu_ioas_map_file m = { .size = sizeof(m), .flags = RW, .ioas_id = ioas,
						 .fd = mfd, .start = 0, .length = 4 * PS };

		ASSERT_EQ(ioc(self->fd, IOMMU_IOAS_MAP_FILE, &m), 0);
	}
	ASSERT_EQ(ioc(self->fd, IOMMU_IOAS_CHANGE_PROCESS, &c), 0);
	ASSERT_EQ(map_auto(self->fd, ioas, g_base, PS, &iova), 0);
	ASSERT_ERRNO(EINVAL, ioc(self->fd, IOMMU_IOAS_CHANGE_PROCESS, &c));
	c.__reserved = 1;
	ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_IOAS_CHANGE_PROCESS, &c));
	c.__reserved = 0;
	ASSERT_EQ(unmap(self->fd, ioas, iova, PS, NULL), 0);
	ASSERT_EQ(ioc(self->fd, IOMMU_IOAS_CHANGE_PROCESS, &c), 0);
	close(mfd);
}

TEST_F(iommufd, map_file)
{
	uint32_t ioas;
	int mfd, rofd;
	char path[64];
	struct iommu_ioas_map_file m = { .size = sizeof(m) };
	uint64_t len;

	ASSERT_EQ(ioas_alloc_id(self->fd, &ioas), 0);
	mfd = memfd_create("uiommu-test", 0);
	ASSERT_GE(mfd, 0);
	ASSERT_EQ(ftruncate(mfd, 8 * PS), 0);

	m = (struct iommu_ioas_map_file){ .size = sizeof(m), .flags = RW, .ioas_id = ioas,
					  .fd = mfd, .start = PS, .length = 4 * PS };
	ASSERT_EQ(ioc(self->fd, IOMMU_IOAS_MAP_FILE, &m), 0);
	/* Alignment hint is the file offset: PS -> alignment PS, first fit at PS. */
	ASSERT_EQ(m.iova, PS);
	ASSERT_EQ(unmap(self->fd, ioas, m.iova, 4 * PS, &len), 0);
	ASSERT_EQ(len, 4 * PS);

	m.flags = RW | IOMMU_IOAS_MAP_FIXED_IOVA;
	m.iova = 64 * PS;
	m.start = 0;
	m.length = 8 * PS;
	ASSERT_EQ(ioc(self->fd, IOMMU_IOAS_MAP_FILE, &m), 0);
	ASSERT_EQ(m.iova, 64 * PS);
	ASSERT_ERRNO(EEXIST, ioc(self->fd, IOMMU_IOAS_MAP_FILE, &m));
	ASSERT_EQ(unmap(self->fd, ioas, 64 * PS, 8 * PS, &len), 0);
	ASSERT_EQ(len, 8 * PS);

	m.flags = RW;
	m.length = 0;
	ASSERT_ERRNO(EINVAL, ioc(self->fd, IOMMU_IOAS_MAP_FILE, &m));
	m.length = 8 * PS;
	m.start = PS;
	ASSERT_ERRNO(EINVAL, ioc(self->fd, IOMMU_IOAS_MAP_FILE, &m));
	m.start = 0;
	m.length = 9 * PS;
	ASSERT_ERRNO(EINVAL, ioc(self->fd, IOMMU_IOAS_MAP_FILE, &m));
	m.length = PS;
	m.flags = 0;
	ASSERT_ERRNO(EINVAL, ioc(self->fd, IOMMU_IOAS_MAP_FILE, &m));
	m.flags = RW;
	m.fd = -1;
	ASSERT_ERRNO(EBADF, ioc(self->fd, IOMMU_IOAS_MAP_FILE, &m));
	m.fd = 1000000;
	ASSERT_ERRNO(EBADF, ioc(self->fd, IOMMU_IOAS_MAP_FILE, &m));
	m.fd = mfd;
	m.length = U64_MAX;
	ASSERT_ERRNO(EOVERFLOW, ioc(self->fd, IOMMU_IOAS_MAP_FILE, &m));
	m.length = PS;
	m.ioas_id = ioas + 1;
	ASSERT_ERRNO(ENOENT, ioc(self->fd, IOMMU_IOAS_MAP_FILE, &m));
	m.ioas_id = ioas;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", mfd);
	rofd = open(path, O_RDONLY);
	ASSERT_GE(rofd, 0);
	m.fd = rofd;
	m.flags = RW;
	ASSERT_ERRNO(EPERM, ioc(self->fd, IOMMU_IOAS_MAP_FILE, &m));
	m.flags = IOMMU_IOAS_MAP_READABLE;
	ASSERT_EQ(ioc(self->fd, IOMMU_IOAS_MAP_FILE, &m), 0);
	ASSERT_EQ(unmap(self->fd, ioas, m.iova, PS, &len), 0);
	ASSERT_EQ(len, PS);
	/* Nothing left. */
	ASSERT_EQ(unmap(self->fd, ioas, 0, U64_MAX, &len), 0);
	ASSERT_EQ(len, 0);
	close(rofd);
	close(mfd);
}

TEST_F(iommufd, bad_user_pointers)
{
	uint32_t ioas;
	char *page = mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct uiommu_stats a, b;

	ASSERT_NE(page, MAP_FAILED);
	ASSERT_EQ(ioas_alloc_id(self->fd, &ioas), 0);
	{
		struct iommu_ioas_iova_ranges c = { .size = sizeof(c), .ioas_id = ioas,
						    .num_iovas = 0, .allowed_iovas = 0 };

		ASSERT_ERRNO(EMSGSIZE, ioc(self->fd, IOMMU_IOAS_IOVA_RANGES, &c));
		ASSERT_EQ(c.num_iovas, 1);
		ASSERT_EQ(c.out_iova_alignment, 1);
		c.num_iovas = 1;
		ASSERT_ERRNO(EFAULT, ioc(self->fd, IOMMU_IOAS_IOVA_RANGES, &c));
	}
	{
		struct iommu_ioas_allow_iovas c = { .size = sizeof(c), .ioas_id = ioas,
						    .num_iovas = 1, .allowed_iovas = 8 };

		ASSERT_ERRNO(EFAULT, ioc(self->fd, IOMMU_IOAS_ALLOW_IOVAS, &c));
	}
	/* An unwritable IOAS_ALLOC argument: EFAULT and no IOAS is left behind. */
	ASSERT_EQ(uiommu_stats_get(&a), 0);
	*(struct iommu_ioas_alloc *)page = (struct iommu_ioas_alloc){
		.size = sizeof(struct iommu_ioas_alloc) };
	ASSERT_EQ(mprotect(page, PS, PROT_READ), 0);
	ASSERT_ERRNO(EFAULT, ioc(self->fd, IOMMU_IOAS_ALLOC, page));
	ASSERT_EQ(uiommu_stats_get(&b), 0);
	ASSERT_EQ(b.objects, a.objects);
	ASSERT_ERRNO(ENOENT, destroy(self->fd, ioas + 1));
	ASSERT_EQ(ioas_alloc_id(self->fd, &ioas), 0);
	ASSERT_EQ(ioas, 2);
	munmap(page, PS);
}

/*
 * An argument that ends where the caller's memory ends (a PROT_NONE page after it): read
 * whole when the caller gave all of it, never past what the caller's size says (a short
 * GET_HW_INFO reaches its handler, ENOENT for device 0), and EFAULT when it runs into the
 * inaccessible page, as the kernel's copy gives.
 */
TEST_F(iommufd, argument_at_page_end)
{
	/* GET_HW_INFO's first version: up to __reserved. */
	const size_t info_min = offsetof(struct iommu_hw_info, out_capabilities);
	long pg = sysconf(_SC_PAGESIZE);
	char *map = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *end = map + pg;
	struct iommu_ioas_alloc *alloc = (void *)(end - sizeof(*alloc));
	struct iommu_ioas_iova_ranges *ranges = (void *)(end - sizeof(*ranges));
	struct iommu_hw_info *info = (void *)(end - info_min);
	struct iommu_destroy *destroy = (void *)(end - sizeof(*destroy));

	ASSERT_TRUE(map != MAP_FAILED);
	ASSERT_EQ(0, mprotect(end, pg, PROT_NONE));
	*alloc = (struct iommu_ioas_alloc){ .size = sizeof(*alloc) };
	ASSERT_EQ(0, ioc(self->fd, IOMMU_IOAS_ALLOC, alloc));
	ASSERT_NE(0, alloc->out_ioas_id);
	*ranges = (struct iommu_ioas_iova_ranges){ .size = sizeof(*ranges),
						   .ioas_id = alloc->out_ioas_id };
	ASSERT_ERRNO(EMSGSIZE, ioc(self->fd, IOMMU_IOAS_IOVA_RANGES, ranges));
	ASSERT_EQ(1, ranges->num_iovas);
	ASSERT_EQ(1, ranges->out_iova_alignment);
	memset(info, 0, info_min);
	info->size = info_min;
	ASSERT_ERRNO(ENOENT, ioc(self->fd, IOMMU_GET_HW_INFO, info));
	*destroy = (struct iommu_destroy){ .size = sizeof(*destroy), .id = 0x12345 };
	ASSERT_ERRNO(ENOENT, ioc(self->fd, IOMMU_DESTROY, destroy));
	/* The caller's size runs past its memory: EFAULT, nothing made. */
	alloc = (void *)(end - 8);
	alloc->size = sizeof(*alloc);
	alloc->flags = 0;
	ASSERT_ERRNO(EFAULT, ioc(self->fd, IOMMU_IOAS_ALLOC, alloc));
	ranges = (void *)(end - 16);
	ranges->size = sizeof(*ranges);
	ASSERT_ERRNO(EFAULT, ioc(self->fd, IOMMU_IOAS_IOVA_RANGES, ranges));
	destroy = (void *)(end - 4);
	destroy->size = sizeof(*destroy);
	ASSERT_ERRNO(EFAULT, ioc(self->fd, IOMMU_DESTROY, destroy));
	/* Only the first IOAS exists. */
	ASSERT_ERRNO(ENOENT, ioc(self->fd, IOMMU_DESTROY,
				 &(struct iommu_destroy){ .size = 8, .id = 2 }));
	munmap(map, 2 * pg);
}

TEST_F(iommufd, option_val64_only_written_back)
{
	uint32_t ioas;
	struct iommu_option c;

	ASSERT_EQ(ioas_alloc_id(self->fd, &ioas), 0);
	c = (struct iommu_option){ .size = sizeof(c), .option_id = IOMMU_OPTION_HUGE_PAGES,
				   .op = IOMMU_OPTION_OP_GET, .object_id = ioas, .val64 = 77 };
	ASSERT_EQ(ioc(self->fd, IOMMU_OPTION, &c), 0);
	ASSERT_EQ(c.val64, 1);
	ASSERT_EQ(c.size, sizeof(c));
	ASSERT_EQ(c.object_id, ioas);
	ASSERT_EQ(c.op, IOMMU_OPTION_OP_GET);
	/* val64 is not written on failure. */
	c.object_id = 0;
	c.val64 = 77;
	ASSERT_ERRNO(ENOENT, ioc(self->fd, IOMMU_OPTION, &c));
	ASSERT_EQ(c.val64, 77);
	c.object_id = ioas;
	c.op = IOMMU_OPTION_OP_SET;
	c.val64 = 2;
	ASSERT_ERRNO(EINVAL, ioc(self->fd, IOMMU_OPTION, &c));
	ASSERT_EQ(c.val64, 2);
}

/* ===========================================================================================
 * Fixture: an fd with one IOAS, run for several buffer placements and HUGE_PAGES settings.
 * =========================================================================================== */

FIXTURE(ioas) {
	int fd;
	uint32_t ioas;
	char *buf;	/* the variant's buffer: g_base + offset */
	uint64_t align;	/* the IOAS's IOVA alignment */
};

FIXTURE_VARIANT(ioas) {
	uint64_t offset;	/* of the buffer in its page */
	bool huge;
};

FIXTURE_VARIANT_ADD(ioas, aligned) { .offset = 0, .huge = true };
FIXTURE_VARIANT_ADD(ioas, subpage) { .offset = 0x200, .huge = true };
FIXTURE_VARIANT_ADD(ioas, nohuge) { .offset = 0, .huge = false };

FIXTURE_SETUP(ioas)
{
	self->fd = uiommu_open(O_RDWR);
	ASSERT_GE(self->fd, 0);
	ASSERT_EQ(ioas_alloc_id(self->fd, &self->ioas), 0);
	ASSERT_EQ(self->ioas, 1);
	self->buf = g_base + variant->offset;
	self->align = 1;
	if (!variant->huge) {
		ASSERT_EQ(huge_set(self->fd, self->ioas, 0), 0);
		self->align = PS;
	}
}

FIXTURE_TEARDOWN(ioas)
{
	uiommu_close(self->fd);
}

TEST_F(ioas, iova_ranges_empty)
{
	struct iommu_iova_range r[4];
	uint32_t n = 4;
	uint64_t align;

	memset(r, 0x5a, sizeof(r));
	ASSERT_EQ(ranges(self->fd, self->ioas, r, &n, &align), 0);
	ASSERT_EQ(n, 1);
	ASSERT_EQ(align, self->align);
	ASSERT_EQ(r[0].start, 0);
	ASSERT_EQ(r[0].last, U64_MAX);
	ASSERT_EQ(r[1].start, 0x5a5a5a5a5a5a5a5aull);

	memset(r, 0x5a, sizeof(r));
	n = 0;
	ASSERT_ERRNO(EMSGSIZE, ranges(self->fd, self->ioas, r, &n, &align));
	ASSERT_EQ(n, 1);
	ASSERT_EQ(align, self->align);
	ASSERT_EQ(r[0].start, 0x5a5a5a5a5a5a5a5aull);

	n = 1;
	ASSERT_ERRNO(ENOENT, ranges(self->fd, self->ioas + 1, r, &n, &align));
}

TEST_F(ioas, iova_ranges_reserved)
{
	struct iommu_iova_range r[4];
	uint32_t n;
	uint64_t align;

	NEEDS_IOMMUFD_TEST();

	ASSERT_EQ(add_reserved(self->fd, self->ioas, PS, PS), 0);
	memset(r, 0x5a, sizeof(r));
	n = 4;
	ASSERT_EQ(ranges(self->fd, self->ioas, r, &n, &align), 0);
	ASSERT_EQ(n, 2);
	ASSERT_EQ(align, self->align);
	ASSERT_EQ(r[0].start, 0);
	ASSERT_EQ(r[0].last, PS - 1);
	ASSERT_EQ(r[1].start, 2 * PS);
	ASSERT_EQ(r[1].last, U64_MAX);
	ASSERT_EQ(r[2].start, 0x5a5a5a5a5a5a5a5aull);

	memset(r, 0x5a, sizeof(r));
	n = 1;
	ASSERT_ERRNO(EMSGSIZE, ranges(self->fd, self->ioas, r, &n, &align));
	ASSERT_EQ(n, 2);
	ASSERT_EQ(align, self->align);
	ASSERT_EQ(r[0].start, 0);
	ASSERT_EQ(r[0].last, PS - 1);
	ASSERT_EQ(r[1].start, 0x5a5a5a5a5a5a5a5aull);
	ASSERT_EQ(r[1].last, 0x5a5a5a5a5a5a5a5aull);

	/* ALLOW_IOVAS does not change the report. */
	{
		struct iommu_iova_range a = { .start = 16 * PS, .last = 32 * PS - 1 };

		ASSERT_EQ(allow(self->fd, self->ioas, &a, 1), 0);
	}
	n = 4;
	ASSERT_EQ(ranges(self->fd, self->ioas, r, &n, &align), 0);
	ASSERT_EQ(n, 2);
	ASSERT_EQ(r[0].last, PS - 1);
	ASSERT_EQ(r[1].start, 2 * PS);
	ASSERT_EQ(r[1].last, U64_MAX);

	/* A reserved range at the very start leaves one range. */
	ASSERT_EQ(add_reserved(self->fd, self->ioas, 0, PS), 0);
	n = 4;
	ASSERT_EQ(ranges(self->fd, self->ioas, r, &n, &align), 0);
	ASSERT_EQ(n, 1);
	ASSERT_EQ(r[0].start, 2 * PS);
	ASSERT_EQ(r[0].last, U64_MAX);
}

/*
 * A caller that repeats IOVA_RANGES is answered from the IOAS's snapshot (no lock: main.c,
 * "RCU dispatch") from the second call on; every change of what the answer depends on must
 * show in the very next call, and the errors must stay those of the locked path.
 */
TEST_F(ioas, iova_ranges_repeated_follow_changes)
{
	struct iommu_iova_range r[16];
	uint32_t n, i;
	uint64_t align;

	for (i = 0; i != 3; i++) {
		n = 4;
		ASSERT_EQ(ranges(self->fd, self->ioas, r, &n, &align), 0);
		ASSERT_EQ(n, 1);
		ASSERT_EQ(align, self->align);
		ASSERT_EQ(r[0].start, 0);
		ASSERT_EQ(r[0].last, U64_MAX);
		n = 0;
		ASSERT_ERRNO(EMSGSIZE, ranges(self->fd, self->ioas, r, &n, &align));
		ASSERT_EQ(n, 1);
		n = 1;
		ASSERT_ERRNO(EFAULT, ranges(self->fd, self->ioas, (void *)8, &n, &align));
		ASSERT_ERRNO(ENOENT, ranges(self->fd, self->ioas + 1, r, &n, &align));
	}
	/* The alignment is part of the answer: IOMMU_OPTION_HUGE_PAGES changes it. */
	ASSERT_EQ(huge_set(self->fd, self->ioas, 0), 0);
	n = 4;
	ASSERT_EQ(ranges(self->fd, self->ioas, r, &n, &align), 0);
	ASSERT_EQ(align, PS);
	ASSERT_EQ(ranges(self->fd, self->ioas, r, &n, &align), 0);
	ASSERT_EQ(align, PS);
	ASSERT_EQ(huge_set(self->fd, self->ioas, 1), 0);
	ASSERT_EQ(ranges(self->fd, self->ioas, r, &n, &align), 0);
	ASSERT_EQ(align, 1);
	ASSERT_EQ(huge_set(self->fd, self->ioas, variant->huge), 0);

#ifdef UIOMMU_IOMMUFD_TEST
	/* Each reserved range shows at once, past the snapshot's 8 ranges too. */
	for (i = 0; i != 10; i++) {
		n = 16;
		ASSERT_EQ(add_reserved(self->fd, self->ioas, (2 * i + 1) * PS, PS), 0);
		ASSERT_EQ(ranges(self->fd, self->ioas, r, &n, &align), 0);
		ASSERT_EQ(n, i + 2);
		ASSERT_EQ(ranges(self->fd, self->ioas, r, &n, &align), 0);
		ASSERT_EQ(n, i + 2);
		ASSERT_EQ(r[i].start, 2 * i * PS);
		ASSERT_EQ(r[i].last, (2 * i + 1) * PS - 1);
		ASSERT_EQ(r[i + 1].start, (2 * i + 2) * PS);
		ASSERT_EQ(r[i + 1].last, U64_MAX);
	}
#endif
	/* Gone for the lock-free lookup as soon as the DESTROY returns. */
	ASSERT_EQ(destroy(self->fd, self->ioas), 0);
	n = 4;
	ASSERT_ERRNO(ENOENT, ranges(self->fd, self->ioas, r, &n, &align));
	ASSERT_ERRNO(ENOENT, destroy(self->fd, self->ioas));
}

TEST_F(ioas, map_errors)
{
	uint64_t iova = 0;

	ASSERT_ERRNO(EINVAL, map_ex(self->fd, self->ioas, 0, self->buf, PS, &iova));
	ASSERT_ERRNO(EINVAL, map_fixed(self->fd, self->ioas, PS, self->buf, 0));
	ASSERT_ERRNO(EINVAL, map_auto(self->fd, self->ioas, self->buf, 0, &iova));
	ASSERT_ERRNO(EOVERFLOW, map_fixed(self->fd, self->ioas, U64_MAX, self->buf, PS));
	ASSERT_ERRNO(EOVERFLOW, map_fixed(self->fd, self->ioas, PS, self->buf, U64_MAX));
	ASSERT_ERRNO(EOVERFLOW, map_auto(self->fd, self->ioas, self->buf, U64_MAX, &iova));
	ASSERT_ERRNO(EOVERFLOW, map_fixed(self->fd, self->ioas, PS,
					  (void *)(uintptr_t)(U64_MAX - PS + 1), 2 * PS));
	ASSERT_ERRNO(EOVERFLOW, map_fixed(self->fd, self->ioas, U64_MAX - PS + 1, self->buf,
					  2 * PS));
	ASSERT_ERRNO(ENOENT, map_fixed(self->fd, self->ioas + 1, PS, self->buf, PS));
	/* Only read or only write is fine. */
	iova = 0x100000;
	ASSERT_EQ(map_ex(self->fd, self->ioas, IOMMU_IOAS_MAP_FIXED_IOVA |
			 IOMMU_IOAS_MAP_READABLE, self->buf, PS, &iova), 0);
	iova = 0x200000;
	ASSERT_EQ(map_ex(self->fd, self->ioas, IOMMU_IOAS_MAP_FIXED_IOVA |
			 IOMMU_IOAS_MAP_WRITEABLE, self->buf, PS, &iova), 0);
	ASSERT_EQ(unmap(self->fd, self->ioas, 0, U64_MAX, &iova), 0);
	ASSERT_EQ(iova, 2 * PS);
}

TEST_F(ioas, map_overlap_eexist)
{
	uint64_t len;

	for (int i = 0; i < 10; i++)
		ASSERT_ERRNO(ENOENT, unmap(self->fd, self->ioas, i * PS, PS, NULL));
	for (int i = 0; i < 10; i++)
		ASSERT_EQ(map_fixed(self->fd, self->ioas, i * PS, self->buf, PS), 0);
	for (int i = 0; i < 10; i++) {
		ASSERT_EQ(unmap(self->fd, self->ioas, i * PS, PS, &len), 0);
		ASSERT_EQ(len, PS);
	}
	ASSERT_EQ(map_fixed(self->fd, self->ioas, 16 * PS, self->buf, 2 * PS), 0);
	ASSERT_ERRNO(ENOENT, unmap(self->fd, self->ioas, 16 * PS, PS, NULL));
	ASSERT_ERRNO(ENOENT, unmap(self->fd, self->ioas, 17 * PS, PS, NULL));
	ASSERT_ERRNO(EEXIST, map_fixed(self->fd, self->ioas, 16 * PS, self->buf, 2 * PS));
	ASSERT_ERRNO(EEXIST, map_fixed(self->fd, self->ioas, 16 * PS, self->buf, PS));
	ASSERT_ERRNO(EEXIST, map_fixed(self->fd, self->ioas, 17 * PS, self->buf, PS));
	ASSERT_ERRNO(EEXIST, map_fixed(self->fd, self->ioas, 15 * PS, self->buf, 2 * PS));
	ASSERT_ERRNO(EEXIST, map_fixed(self->fd, self->ioas, 15 * PS, self->buf, 3 * PS));
	ASSERT_ERRNO(EEXIST, map_fixed(self->fd, self->ioas, 0, self->buf, 64 * PS));
	/* Adjacent on both sides is fine. */
	ASSERT_EQ(map_fixed(self->fd, self->ioas, 15 * PS, self->buf, PS), 0);
	ASSERT_EQ(map_fixed(self->fd, self->ioas, 18 * PS, self->buf, PS), 0);
	ASSERT_EQ(unmap(self->fd, self->ioas, 0, U64_MAX, &len), 0);
	ASSERT_EQ(len, 4 * PS);
	ASSERT_EQ(unmap(self->fd, self->ioas, 0, U64_MAX, &len), 0);
	ASSERT_EQ(len, 0);
}

TEST_F(ioas, map_auto_alignment)
{
	uint64_t iova, len;

	/* Each on an empty IOAS: the first fit starts at PAGE_SIZE. */
	for (uint64_t i = 1; i <= 10; i++) {
		ASSERT_EQ(map_auto(self->fd, self->ioas, self->buf, i * PS, &iova), 0);
		ASSERT_EQ(iova, auto_iova(PS, (uintptr_t)self->buf, i * PS));
		ASSERT_NE(iova, 0);
		ASSERT_EQ(unmap(self->fd, self->ioas, iova, i * PS, &len), 0);
		ASSERT_EQ(len, i * PS);
	}
	/* Unmapped VA: lazy pinning, the memory is never touched. */
	for (uint64_t i = 1; i <= 10; i++) {
		uint64_t va = 0x80000000ull + variant->offset;

		ASSERT_EQ(map_auto(self->fd, self->ioas, (void *)(uintptr_t)va, i * PS, &iova), 0);
		ASSERT_EQ(iova, auto_iova(PS, va, i * PS));
		ASSERT_EQ(iova & (PS - 1), variant->offset);
		ASSERT_EQ(unmap(self->fd, self->ioas, iova, i * PS, NULL), 0);
	}
	/* The alignment is capped at 2 MiB. */
	ASSERT_EQ(map_auto(self->fd, self->ioas, (void *)(uintptr_t)0x40000000ull, 8 * SZ_2M,
			   &iova), 0);
	ASSERT_EQ(iova, SZ_2M);
	/* The next one lands after it. */
	ASSERT_EQ(map_auto(self->fd, self->ioas, self->buf, PS, &len), 0);
	ASSERT_EQ(len, auto_iova(PS, (uintptr_t)self->buf, PS));
	{
		uint64_t iova2;

		ASSERT_EQ(map_auto(self->fd, self->ioas, (void *)(uintptr_t)0x40000000ull, SZ_2M,
				   &iova2), 0);
		ASSERT_EQ(iova2, 9 * SZ_2M);
		/* A sub-page VA lowers the alignment to its lowest set bit. */
		ASSERT_EQ(map_auto(self->fd, self->ioas, (void *)(uintptr_t)0x40000200ull, SZ_2M,
				   &iova2), variant->huge ? 0 : -1);
		if (variant->huge)
			ASSERT_EQ(iova2, 10 * SZ_2M + 0x200);
	}
	{
		struct uiommu_stats st;

		ASSERT_EQ(uiommu_stats_get(&st), 0);
		ASSERT_EQ(st.pinned_pages, 0);
	}
}

TEST_F(ioas, map_auto_odd_length)
{
	uint64_t iova;

	if (variant->huge) {
		ASSERT_EQ(map_auto(self->fd, self->ioas, self->buf, PS + 1, &iova), 0);
		ASSERT_EQ(iova, auto_iova(PS, (uintptr_t)self->buf, PS + 1));
		ASSERT_EQ(map_fixed(self->fd, self->ioas, 0x100001, self->buf, 3), 0);
	} else {
		ASSERT_ERRNO(EINVAL, map_auto(self->fd, self->ioas, self->buf, PS + 1, &iova));
		ASSERT_ERRNO(EINVAL, map_fixed(self->fd, self->ioas, 0x100001, self->buf, PS));
		ASSERT_ERRNO(EINVAL, map_fixed(self->fd, self->ioas, 0x100000, self->buf, PS + 1));
		/* A sub-page VA offset cannot be mapped at page alignment. */
		ASSERT_ERRNO(EINVAL, map_fixed(self->fd, self->ioas, 0x100000, self->buf + 0x200,
					       PS));
		ASSERT_ERRNO(EINVAL, map_auto(self->fd, self->ioas, self->buf + 0x200, PS, &iova));
	}
}

TEST_F(ioas, map_enospc_reserved)
{
	uint64_t iova;

	NEEDS_IOMMUFD_TEST();

	/* Leave only [0, PS) free; the allocator never uses page 0. */
	ASSERT_EQ(add_reserved(self->fd, self->ioas, PS, U64_MAX - PS), 0);
	ASSERT_ERRNO(ENOSPC, map_auto(self->fd, self->ioas, self->buf, PS, &iova));
	ASSERT_ERRNO(ENOSPC, map_auto(self->fd, self->ioas, self->buf, 5 * PS, &iova));
	/* Fixed maps into reserved space are EINVAL. */
	ASSERT_ERRNO(EINVAL, map_fixed(self->fd, self->ioas, PS, self->buf, PS));
	ASSERT_ERRNO(EINVAL, map_fixed(self->fd, self->ioas, 0, self->buf, 2 * PS));
	ASSERT_EQ(map_fixed(self->fd, self->ioas, 0, self->buf, PS), 0);
}

TEST_F(ioas, map_reserved_skipped)
{
	uint64_t iova;

	NEEDS_IOMMUFD_TEST();

	ASSERT_EQ(add_reserved(self->fd, self->ioas, PS, 15 * PS), 0);
	ASSERT_EQ(map_auto(self->fd, self->ioas, self->buf, PS, &iova), 0);
	ASSERT_EQ(iova, auto_iova(16 * PS, (uintptr_t)self->buf, PS));
	ASSERT_ERRNO(EINVAL, map_fixed(self->fd, self->ioas, 8 * PS, self->buf, PS));
	ASSERT_ERRNO(EINVAL, map_fixed(self->fd, self->ioas, 0, self->buf, 2 * PS));
	/* Reserving over an area: EADDRINUSE. */
	ASSERT_ERRNO(EADDRINUSE, add_reserved(self->fd, self->ioas, iova & ~(PS - 1), PS));
}

TEST_F(ioas, map_unwritable_arg)
{
	struct iommu_ioas_map *m;
	struct iommu_ioas_unmap *u;
	uint64_t len;
	char *page = mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ASSERT_NE(page, MAP_FAILED);
	m = (void *)page;
	*m = (struct iommu_ioas_map){ .size = sizeof(*m), .flags = RW, .ioas_id = self->ioas,
				      .user_va = (uintptr_t)self->buf, .length = PS };
	ASSERT_EQ(mprotect(page, PS, PROT_READ), 0);
	ASSERT_ERRNO(EFAULT, ioc(self->fd, IOMMU_IOAS_MAP, m));
	ASSERT_EQ(m->iova, 0);
	/* Nothing was mapped. */
	ASSERT_EQ(unmap(self->fd, self->ioas, 0, U64_MAX, &len), 0);
	ASSERT_EQ(len, 0);

	ASSERT_EQ(map_fixed(self->fd, self->ioas, 0x10000, self->buf, PS), 0);
	ASSERT_EQ(mprotect(page, PS, PROT_READ | PROT_WRITE), 0);
	u = (void *)page;
	*u = (struct iommu_ioas_unmap){ .size = sizeof(*u), .ioas_id = self->ioas,
					.iova = 0x10000, .length = PS };
	ASSERT_EQ(mprotect(page, PS, PROT_READ), 0);
	ASSERT_ERRNO(EFAULT, ioc(self->fd, IOMMU_IOAS_UNMAP, u));
	/* Still mapped. */
	ASSERT_EQ(unmap(self->fd, self->ioas, 0x10000, PS, &len), 0);
	ASSERT_EQ(len, PS);
	munmap(page, PS);
}

TEST_F(ioas, unmap_cut_unmaps_nothing)
{
	uint64_t len;

	ASSERT_EQ(map_fixed(self->fd, self->ioas, 4 * PS, self->buf, 4 * PS), 0);
	ASSERT_EQ(map_fixed(self->fd, self->ioas, 8 * PS, self->buf, 4 * PS), 0);
	ASSERT_EQ(map_fixed(self->fd, self->ioas, 12 * PS, self->buf, 4 * PS), 0);
	/* Covers the first area whole, cuts the second. */
	len = 0x77;
	ASSERT_ERRNO(ENOENT, unmap(self->fd, self->ioas, 4 * PS, 6 * PS, &len));
	ASSERT_EQ(len, 6 * PS);	/* not written back */
	ASSERT_ERRNO(ENOENT, unmap(self->fd, self->ioas, 3 * PS, 12 * PS, NULL));
	ASSERT_ERRNO(ENOENT, unmap(self->fd, self->ioas, 4 * PS, 4 * PS + 1, NULL));
	ASSERT_ERRNO(ENOENT, unmap(self->fd, self->ioas, 4 * PS + 1, 4 * PS - 1, NULL));
	ASSERT_ERRNO(ENOENT, unmap(self->fd, self->ioas, 5 * PS, PS, NULL));
	/* All three areas are still there. */
	ASSERT_EQ(unmap(self->fd, self->ioas, 4 * PS, 4 * PS, &len), 0);
	ASSERT_EQ(len, 4 * PS);
	ASSERT_EQ(unmap(self->fd, self->ioas, 8 * PS, 8 * PS, &len), 0);
	ASSERT_EQ(len, 8 * PS);
	ASSERT_ERRNO(ENOENT, unmap(self->fd, self->ioas, 4 * PS, 12 * PS, NULL));
}

TEST_F(ioas, unmap_fully_contained_areas)
{
	uint64_t base = 4 * PS, len;

	for (int i = 0; i < 4; i++)
		ASSERT_EQ(map_fixed(self->fd, self->ioas, base + i * 16 * PS, self->buf, 8 * PS),
			  0);
	ASSERT_ERRNO(ENOENT, unmap(self->fd, self->ioas, base - 4 * PS, 8 * PS, NULL));
	ASSERT_ERRNO(ENOENT, unmap(self->fd, self->ioas, base + 3 * 16 * PS + 8 * PS - 4 * PS,
				   8 * PS, NULL));
	ASSERT_EQ(unmap(self->fd, self->ioas, base - 4 * PS, 3 * 16 * PS + 8 * PS + 4 * PS,
			&len), 0);
	ASSERT_EQ(len, 32 * PS);
	ASSERT_EQ(unmap(self->fd, self->ioas, 0, U64_MAX, &len), 0);
	ASSERT_EQ(len, 0);
}

TEST_F(ioas, unmap_args)
{
	uint64_t len;

	ASSERT_ERRNO(EINVAL, unmap(self->fd, self->ioas, PS, 0, NULL));
	ASSERT_ERRNO(EINVAL, unmap(self->fd, self->ioas, 0, 0, NULL));
	ASSERT_ERRNO(EOVERFLOW, unmap(self->fd, self->ioas, U64_MAX, PS, NULL));
	ASSERT_ERRNO(EOVERFLOW, unmap(self->fd, self->ioas, PS, U64_MAX, NULL));
	ASSERT_ERRNO(EOVERFLOW, unmap(self->fd, self->ioas, U64_MAX - PS + 1, 2 * PS, NULL));
	ASSERT_ERRNO(ENOENT, unmap(self->fd, self->ioas, 100 * PS, PS, NULL));
	ASSERT_ERRNO(ENOENT, unmap(self->fd, self->ioas, 0, U64_MAX - 1, NULL));
	ASSERT_ERRNO(ENOENT, unmap(self->fd, self->ioas + 1, 0, U64_MAX, NULL));
	ASSERT_ERRNO(ENOENT, unmap(self->fd, 0, 0, U64_MAX, NULL));
	len = 0x99;
	ASSERT_EQ(unmap(self->fd, self->ioas, 0, U64_MAX, &len), 0);
	ASSERT_EQ(len, 0);

	/* Unmap all: the sum over several areas; one area at the very top too. */
	ASSERT_EQ(map_fixed(self->fd, self->ioas, 0, self->buf, PS), 0);
	ASSERT_EQ(map_fixed(self->fd, self->ioas, 0x100000, self->buf, 3 * PS), 0);
	ASSERT_EQ(map_fixed(self->fd, self->ioas, U64_MAX - 2 * PS + 1, self->buf, 2 * PS), 0);
	ASSERT_EQ(unmap(self->fd, self->ioas, 0, U64_MAX, &len), 0);
	ASSERT_EQ(len, 6 * PS);
	ASSERT_EQ(unmap(self->fd, self->ioas, 0, U64_MAX, &len), 0);
	ASSERT_EQ(len, 0);
}

TEST_F(ioas, copy_shares_pages)
{
	uint32_t dst;
	uint64_t d, len, src_iova = 0x100000;

	ASSERT_EQ(ioas_alloc_id(self->fd, &dst), 0);
	if (!variant->huge)
		ASSERT_EQ(huge_set(self->fd, dst, 0), 0);
	ASSERT_EQ(map_fixed(self->fd, self->ioas, src_iova, self->buf, 8 * PS), 0);
	d = 0x200000;
	ASSERT_EQ(copy(self->fd, RW | IOMMU_IOAS_MAP_FIXED_IOVA, dst, &d, self->ioas, src_iova,
		       8 * PS), 0);
	ASSERT_EQ(d, 0x200000);
	/* Same IOAS works as well. */
	d = 0x300000;
	ASSERT_EQ(copy(self->fd, RW | IOMMU_IOAS_MAP_FIXED_IOVA, self->ioas, &d, self->ioas,
		       src_iova, 8 * PS), 0);
	/* Drop the source: the copies still unmap in full. */
	ASSERT_EQ(unmap(self->fd, self->ioas, src_iova, 8 * PS, &len), 0);
	ASSERT_EQ(len, 8 * PS);
	ASSERT_EQ(unmap(self->fd, dst, 0x200000, 8 * PS, &len), 0);
	ASSERT_EQ(len, 8 * PS);
	ASSERT_EQ(unmap(self->fd, self->ioas, 0, U64_MAX, &len), 0);
	ASSERT_EQ(len, 8 * PS);
}

TEST_F(ioas, copy_subrange_and_auto)
{
	uint32_t dst;
	uint64_t d, len, src_iova = 0x100000;

	ASSERT_EQ(ioas_alloc_id(self->fd, &dst), 0);
	if (!variant->huge)
		ASSERT_EQ(huge_set(self->fd, dst, 0), 0);
	ASSERT_EQ(map_fixed(self->fd, self->ioas, src_iova, self->buf, 16 * PS), 0);
	d = 0x400000;
	ASSERT_EQ(copy(self->fd, RW | IOMMU_IOAS_MAP_FIXED_IOVA, dst, &d, self->ioas,
		       src_iova + 4 * PS, 4 * PS), 0);
	ASSERT_EQ(unmap(self->fd, dst, 0x400000, 4 * PS, &len), 0);
	ASSERT_EQ(len, 4 * PS);
	/* Automatic dst IOVA: the hint is the user address of the copied piece. */
	d = 0;
	ASSERT_EQ(copy(self->fd, RW, dst, &d, self->ioas, src_iova + 4 * PS, 4 * PS), 0);
	ASSERT_EQ(d, auto_iova(PS, (uintptr_t)self->buf + 4 * PS, 4 * PS));
	ASSERT_EQ(unmap(self->fd, dst, d, 4 * PS, &len), 0);
	ASSERT_EQ(len, 4 * PS);
	/* The source is unchanged. */
	ASSERT_EQ(unmap(self->fd, self->ioas, src_iova, 16 * PS, &len), 0);
	ASSERT_EQ(len, 16 * PS);
}

TEST_F(ioas, copy_two_areas)
{
	uint32_t dst;
	uint64_t d, len;

	ASSERT_EQ(ioas_alloc_id(self->fd, &dst), 0);
	ASSERT_EQ(map_fixed(self->fd, self->ioas, 0x100000, self->buf, 4 * PS), 0);
	ASSERT_EQ(map_fixed(self->fd, self->ioas, 0x100000 + 4 * PS, self->buf + 8 * PS, 4 * PS),
		  0);
	d = 0x800000;
	ASSERT_EQ(copy(self->fd, RW | IOMMU_IOAS_MAP_FIXED_IOVA, dst, &d, self->ioas,
		       0x100000 + 2 * PS, 4 * PS), 0);
	/* Two areas in dst, of 2 pages each: half of the copy cuts nothing. */
	ASSERT_ERRNO(ENOENT, unmap(self->fd, dst, 0x800000, PS, NULL));
	ASSERT_ERRNO(ENOENT, unmap(self->fd, dst, 0x800000, 3 * PS, NULL));
	ASSERT_EQ(unmap(self->fd, dst, 0x800000, 2 * PS, &len), 0);
	ASSERT_EQ(len, 2 * PS);
	ASSERT_EQ(unmap(self->fd, dst, 0x800000 + 2 * PS, 2 * PS, &len), 0);
	ASSERT_EQ(len, 2 * PS);
	/* A gap in the source: ENOENT. */
	ASSERT_EQ(unmap(self->fd, self->ioas, 0x100000 + 4 * PS, 4 * PS, NULL), 0);
	ASSERT_EQ(map_fixed(self->fd, self->ioas, 0x100000 + 5 * PS, self->buf, 4 * PS), 0);
	d = 0x800000;
	ASSERT_ERRNO(ENOENT, copy(self->fd, RW | IOMMU_IOAS_MAP_FIXED_IOVA, dst, &d, self->ioas,
				  0x100000, 8 * PS));
	ASSERT_ERRNO(ENOENT, copy(self->fd, RW | IOMMU_IOAS_MAP_FIXED_IOVA, dst, &d, self->ioas,
				  0x100000 + 4 * PS, PS));
	ASSERT_EQ(unmap(self->fd, dst, 0, U64_MAX, &len), 0);
	ASSERT_EQ(len, 0);
}

TEST_F(ioas, copy_sweep)
{
	uint32_t dst;
	uint64_t start = 0x1000000, area = 16 * PS, step, clen;
	uint64_t len;

	ASSERT_EQ(ioas_alloc_id(self->fd, &dst), 0);
	if (!variant->huge)
		ASSERT_EQ(huge_set(self->fd, dst, 0), 0);
	ASSERT_EQ(map_fixed(self->fd, self->ioas, start, self->buf, area), 0);
	step = variant->huge ? 511 : PS;
	clen = variant->huge ? 2048 : PS;
	for (uint64_t s = start - PS; s < start + area + PS; s += step) {
		uint64_t d = 0x4000000;
		bool inside = s >= start && s + clen <= start + area;

		if (inside) {
			ASSERT_EQ(copy(self->fd, IOMMU_IOAS_MAP_FIXED_IOVA |
				       IOMMU_IOAS_MAP_WRITEABLE, dst, &d, self->ioas, s, clen), 0);
			ASSERT_EQ(unmap(self->fd, dst, 0x4000000, clen, &len), 0);
			ASSERT_EQ(len, clen);
		} else {
			ASSERT_ERRNO(ENOENT, copy(self->fd, IOMMU_IOAS_MAP_FIXED_IOVA |
						  IOMMU_IOAS_MAP_WRITEABLE, dst, &d, self->ioas,
						  s, clen));
		}
	}
}

TEST_F(ioas, copy_errors)
{
	uint32_t dst;
	uint64_t d, len;

	ASSERT_EQ(ioas_alloc_id(self->fd, &dst), 0);
	d = 0x100000;
	ASSERT_EQ(map_ex(self->fd, self->ioas, IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE,
			 self->buf, 4 * PS, &d), 0);
	d = 0x200000;
	ASSERT_ERRNO(EPERM, copy(self->fd, RW | IOMMU_IOAS_MAP_FIXED_IOVA, dst, &d, self->ioas,
				 0x100000, 4 * PS));
	ASSERT_ERRNO(EPERM, copy(self->fd, IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_FIXED_IOVA,
				 dst, &d, self->ioas, 0x100000, 4 * PS));
	ASSERT_EQ(copy(self->fd, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA, dst, &d,
		       self->ioas, 0x100000, 4 * PS), 0);
	/* The dst range is now used. */
	ASSERT_ERRNO(EEXIST, copy(self->fd, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA,
				  dst, &d, self->ioas, 0x100000, 4 * PS));
	d = 0x200000 + PS;
	ASSERT_ERRNO(EEXIST, copy(self->fd, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA,
				  dst, &d, self->ioas, 0x100000, PS));
	/* Copying onto the source itself. */
	d = 0x100000;
	ASSERT_ERRNO(EEXIST, copy(self->fd, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA,
				  self->ioas, &d, self->ioas, 0x100000, PS));
	d = 0x300000;
	ASSERT_ERRNO(EINVAL, copy(self->fd, IOMMU_IOAS_MAP_FIXED_IOVA, dst, &d, self->ioas,
				  0x100000, PS));
	ASSERT_ERRNO(EINVAL, copy(self->fd, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA,
				  dst, &d, self->ioas, 0x100000, 0));
	ASSERT_ERRNO(EOVERFLOW, copy(self->fd, IOMMU_IOAS_MAP_READABLE |
				     IOMMU_IOAS_MAP_FIXED_IOVA, dst, &d, self->ioas, U64_MAX, PS));
	ASSERT_ERRNO(EOVERFLOW, copy(self->fd, IOMMU_IOAS_MAP_READABLE |
				     IOMMU_IOAS_MAP_FIXED_IOVA, dst, &d, self->ioas, 0x100000,
				     U64_MAX));
	ASSERT_ERRNO(ENOENT, copy(self->fd, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA,
				  dst + 1, &d, self->ioas, 0x100000, PS));
	ASSERT_ERRNO(ENOENT, copy(self->fd, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA,
				  dst, &d, self->ioas, 0x100000 + 4 * PS, PS));
	ASSERT_EQ(unmap(self->fd, dst, 0, U64_MAX, &len), 0);
	ASSERT_EQ(len, 4 * PS);
}

TEST_F(ioas, allow_iovas)
{
	struct iommu_iova_range r[3];
	uint64_t iova;

	NEEDS_IOMMUFD_TEST();

	r[0] = (struct iommu_iova_range){ .start = 10 * PS, .last = 10 * PS };
	ASSERT_ERRNO(EINVAL, allow(self->fd, self->ioas, r, 1));
	r[0] = (struct iommu_iova_range){ .start = 10 * PS, .last = 5 * PS };
	ASSERT_ERRNO(EINVAL, allow(self->fd, self->ioas, r, 1));
	r[0] = (struct iommu_iova_range){ .start = 10 * PS, .last = 20 * PS };
	r[1] = (struct iommu_iova_range){ .start = 20 * PS, .last = 30 * PS };
	ASSERT_ERRNO(EINVAL, allow(self->fd, self->ioas, r, 2));
	ASSERT_ERRNO(ENOENT, allow(self->fd, self->ioas + 1, r, 1));
	/*
	 * num_iovas is only a claim: the ranges are read one by one, so 2^32-1 of them over two
	 * readable ones and a guard page is EFAULT at the third (it was ENOMEM, or an attempt to
	 * allocate 64 GB: found by fuzzing); an overlap before the hole is EINVAL, per range.
	 */
	{
		long pg = sysconf(_SC_PAGESIZE);
		char *map = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct iommu_iova_range *two;

		ASSERT_TRUE(map != MAP_FAILED);
		ASSERT_EQ(0, mprotect(map + pg, pg, PROT_NONE));
		two = (struct iommu_iova_range *)(map + pg) - 2;
		two[0] = (struct iommu_iova_range){ .start = 100 * PS, .last = 200 * PS - 1 };
		two[1] = (struct iommu_iova_range){ .start = 300 * PS, .last = 400 * PS - 1 };
		ASSERT_ERRNO(EFAULT, allow(self->fd, self->ioas, two, UINT32_MAX));
		two[1].start = 150 * PS;
		ASSERT_ERRNO(EINVAL, allow(self->fd, self->ioas, two, UINT32_MAX));
		munmap(map, 2 * pg);
	}
	/* Adjacent is fine, order does not matter. */
	r[0] = (struct iommu_iova_range){ .start = 200 * PS, .last = 300 * PS - 1 };
	r[1] = (struct iommu_iova_range){ .start = 100 * PS, .last = 200 * PS - 1 };
	ASSERT_EQ(allow(self->fd, self->ioas, r, 2), 0);
	for (uint64_t i = 1; i <= 10; i++) {
		ASSERT_EQ(map_auto(self->fd, self->ioas, self->buf, i * PS, &iova), 0);
		ASSERT_GE(iova, 100 * PS);
		ASSERT_LE(iova + i * PS - 1, 300 * PS - 1);
		ASSERT_EQ(iova, auto_iova(100 * PS, (uintptr_t)self->buf, i * PS));
		ASSERT_EQ(unmap(self->fd, self->ioas, iova, i * PS, NULL), 0);
	}
	/* Fixed maps ignore the allowed set. */
	ASSERT_EQ(map_fixed(self->fd, self->ioas, 0x10000000, self->buf, PS), 0);
	/* Reserving over an allowed range: EADDRINUSE. */
	ASSERT_ERRNO(EADDRINUSE, add_reserved(self->fd, self->ioas, 150 * PS, PS));
	ASSERT_EQ(add_reserved(self->fd, self->ioas, 300 * PS, PS), 0);
	/* Allowing over a reserved range: EADDRINUSE, and the old set stays. */
	r[0] = (struct iommu_iova_range){ .start = 250 * PS, .last = 400 * PS };
	ASSERT_ERRNO(EADDRINUSE, allow(self->fd, self->ioas, r, 1));
	ASSERT_ERRNO(EADDRINUSE, add_reserved(self->fd, self->ioas, 150 * PS, PS));
	/* Too small for a fit: ENOSPC. */
	ASSERT_ERRNO(ENOSPC, map_auto(self->fd, self->ioas, self->buf, 256 * PS, &iova));
	/* Clearing. */
	ASSERT_EQ(allow(self->fd, self->ioas, NULL, 0), 0);
	ASSERT_EQ(add_reserved(self->fd, self->ioas, 150 * PS, PS), 0);
	ASSERT_EQ(map_auto(self->fd, self->ioas, self->buf, PS, &iova), 0);
	ASSERT_EQ(iova, auto_iova(PS, (uintptr_t)self->buf, PS));
}

TEST_F(ioas, huge_pages_option)
{
	uint64_t v, iova;
	struct iommu_iova_range r[2];
	uint32_t n = 2;

	ASSERT_EQ(huge_get(self->fd, self->ioas), variant->huge ? 1 : 0);
	ASSERT_EQ(ranges(self->fd, self->ioas, r, &n, &v), 0);
	ASSERT_EQ(v, variant->huge ? 1 : PS);
	ASSERT_ERRNO(EINVAL, huge_set(self->fd, self->ioas, 2));
	ASSERT_EQ(huge_set(self->fd, self->ioas, 0), 0);
	ASSERT_EQ(huge_get(self->fd, self->ioas), 0);
	ASSERT_EQ(huge_set(self->fd, self->ioas, 0), 0);
	n = 2;
	ASSERT_EQ(ranges(self->fd, self->ioas, r, &n, &v), 0);
	ASSERT_EQ(v, PS);
	ASSERT_EQ(map_fixed(self->fd, self->ioas, 0x100000, g_base, PS), 0);
	ASSERT_ERRNO(EINVAL, map_fixed(self->fd, self->ioas, 0x100000 + PS, g_base + PS / 2, PS));
	ASSERT_EQ(huge_set(self->fd, self->ioas, 1), 0);
	ASSERT_EQ(huge_get(self->fd, self->ioas), 1);
	n = 2;
	ASSERT_EQ(ranges(self->fd, self->ioas, r, &n, &v), 0);
	ASSERT_EQ(v, 1);
	ASSERT_EQ(map_fixed(self->fd, self->ioas, 0x100000 + PS, g_base + PS / 2, PS), 0);
	ASSERT_ERRNO(EADDRINUSE, huge_set(self->fd, self->ioas, 0));
	ASSERT_EQ(huge_get(self->fd, self->ioas), 1);
	ASSERT_EQ(unmap(self->fd, self->ioas, 0x100000 + PS, PS, NULL), 0);
	/* An odd-length area blocks it as well. */
	ASSERT_EQ(map_fixed(self->fd, self->ioas, 0x200000, g_base, PS + 1), 0);
	ASSERT_ERRNO(EADDRINUSE, huge_set(self->fd, self->ioas, 0));
	ASSERT_EQ(unmap(self->fd, self->ioas, 0x200000, PS + 1, NULL), 0);
	ASSERT_EQ(huge_set(self->fd, self->ioas, 0), 0);
	ASSERT_EQ(map_auto(self->fd, self->ioas, g_base, PS, &iova), 0);
	ASSERT_EQ(iova % PS, 0);
	/* val64 is written back on SET. */
	v = 0;
	ASSERT_EQ(option(self->fd, IOMMU_OPTION_HUGE_PAGES, self->ioas, IOMMU_OPTION_OP_SET, &v),
		  0);
	ASSERT_EQ(v, 0);
}

TEST_F(ioas, destroy_with_areas)
{
	uint64_t iova;
	struct uiommu_stats st;

	ASSERT_EQ(map_fixed(self->fd, self->ioas, 0, self->buf, PS), 0);
	for (int i = 0; i < 10; i++)
		ASSERT_EQ(map_auto(self->fd, self->ioas, self->buf, PS, &iova), 0);
	ASSERT_EQ(uiommu_stats_get(&st), 0);
	ASSERT_EQ(st.pinned_pages, 0);
	ASSERT_EQ(destroy(self->fd, self->ioas), 0);
	ASSERT_ERRNO(ENOENT, destroy(self->fd, self->ioas));
	ASSERT_ERRNO(ENOENT, unmap(self->fd, self->ioas, 0, U64_MAX, NULL));
	ASSERT_ERRNO(ENOENT, huge_get(self->fd, self->ioas));
}

/* ===========================================================================================
 * Lifetime: close, dup, stats.
 * =========================================================================================== */

TEST(close_returns_stats)
{
	struct uiommu_stats before, mid, after;
	int fd;
	uint32_t ioas;
	uint64_t iova;

	NEEDS_IOMMUFD_TEST();

	fd = uiommu_open(O_RDWR);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(ioas_alloc_id(fd, &ioas), 0);
	ASSERT_EQ(uiommu_close(fd), 0);
	ASSERT_EQ(uiommu_stats_get(&before), 0);

	fd = uiommu_open(O_RDWR);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(uiommu_stats_get(&mid), 0);
	ASSERT_EQ(mid.contexts, before.contexts + 1);
	for (int i = 0; i < 20; i++) {
		ASSERT_EQ(ioas_alloc_id(fd, &ioas), 0);
		for (int j = 0; j < 10; j++)
			ASSERT_EQ(map_auto(fd, ioas, g_base + j * PS, (j + 1) * PS, &iova), 0);
		ASSERT_EQ(add_reserved(fd, ioas, 0x40000000000ull, PS), 0);
		{
			struct iommu_iova_range r = { .start = 0, .last = 0x100000000ull };

			ASSERT_EQ(allow(fd, ioas, &r, 1), 0);
		}
	}
	{
		uint64_t d = 0x10000000;

		ASSERT_EQ(copy(fd, RW | IOMMU_IOAS_MAP_FIXED_IOVA, 1, &d, 2, PS, PS), 0);
	}
	ASSERT_EQ(uiommu_stats_get(&mid), 0);
	ASSERT_EQ(mid.objects, before.objects + 20);
	ASSERT_GE(mid.allocations, before.allocations);
	ASSERT_EQ(uiommu_close(fd), 0);
	ASSERT_EQ(uiommu_stats_get(&after), 0);
	ASSERT_EQ(after.objects, before.objects);
	ASSERT_EQ(after.contexts, before.contexts);
	ASSERT_EQ(after.allocations, before.allocations);
	ASSERT_EQ(after.pinned_pages, 0);
}

TEST(dup_shares_context)
{
	struct uiommu_stats base, st;
	int fd, fd2;
	uint32_t ioas, id;

	ASSERT_EQ(uiommu_stats_get(&base), 0);
	fd = uiommu_open(O_RDWR);
	ASSERT_GE(fd, 0);
	fd2 = uiommu_dup(fd);
	ASSERT_GE(fd2, 0);
	ASSERT_NE(fd2, fd);
	ASSERT_EQ(uiommu_stats_get(&st), 0);
	ASSERT_EQ(st.contexts, base.contexts + 1);
	ASSERT_EQ(ioas_alloc_id(fd, &ioas), 0);
	ASSERT_EQ(ioas_alloc_id(fd2, &id), 0);
	ASSERT_EQ(id, ioas + 1);
	ASSERT_EQ(map_fixed(fd, ioas, PS, g_base, PS), 0);
	ASSERT_ERRNO(EEXIST, map_fixed(fd2, ioas, PS, g_base, PS));
	ASSERT_EQ(uiommu_close(fd), 0);
	/* The context lives on through the dup. */
	ASSERT_EQ(uiommu_stats_get(&st), 0);
	ASSERT_EQ(st.contexts, base.contexts + 1);
	ASSERT_EQ(st.objects, base.objects + 2);
	ASSERT_EQ(unmap(fd2, ioas, PS, PS, NULL), 0);
	ASSERT_EQ(destroy(fd2, id), 0);
	ASSERT_EQ(uiommu_close(fd2), 0);
	ASSERT_EQ(uiommu_stats_get(&st), 0);
	ASSERT_EQ(st.contexts, base.contexts);
	ASSERT_EQ(st.objects, base.objects);
	/* A separate open is a separate context. */
	fd = uiommu_open(O_RDWR);
	fd2 = uiommu_open(O_RDWR);
	ASSERT_EQ(ioas_alloc_id(fd, &ioas), 0);
	ASSERT_EQ(ioas_alloc_id(fd2, &id), 0);
	ASSERT_EQ(ioas, 1);
	ASSERT_EQ(id, 1);
	ASSERT_EQ(uiommu_close(fd), 0);
	ASSERT_EQ(uiommu_close(fd2), 0);
}

TEST_HARNESS_MAIN
