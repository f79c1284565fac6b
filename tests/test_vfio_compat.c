// SPDX-License-Identifier: MIT
/*
 * VFIO type1 container compatibility on the iommufd fd: the container ioctls, the compat IOAS
 * (IOMMU_VFIO_IOAS), GET_INFO and its capability chain, MAP_DMA / UNMAP_DMA, and the type1 (v1)
 * vs type1v2 unmap semantics. Written from the ABI description; no kernel code is used.
 */
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "uiommu_test.h"
#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"
#include "uiommu/vfio_compat.h"

#define U64_MAX UINT64_MAX

#ifndef VFIO_DMA_CC_IOMMU
#define VFIO_DMA_CC_IOMMU 4
#endif
#ifndef VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL
#define VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL 3
#endif

static uint64_t PS;
static char *g_buf;
#define G_BUF_LEN (64ull * 4096 * 4)

static void __attribute__((constructor)) init_globals(void)
{
	PS = (uint64_t)sysconf(_SC_PAGESIZE);
	g_buf = mmap(NULL, G_BUF_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (g_buf == MAP_FAILED)
		abort();
}

static int ioc_int(int fd, unsigned long req, unsigned long v)
{
	return uiommu_ioctl(fd, req, (void *)(uintptr_t)v);
}

static int vfio_ioas(int fd, uint16_t op, uint32_t *id)
{
	struct iommu_vfio_ioas cmd = { .size = sizeof(cmd), .op = op, .ioas_id = id ? *id : 0 };
	int rc = ioc(fd, IOMMU_VFIO_IOAS, &cmd);

	if (!rc && id)
		*id = cmd.ioas_id;
	return rc;
}

static int map_dma(int fd, uint32_t flags, uint64_t iova, const void *va, uint64_t size)
{
	struct vfio_iommu_type1_dma_map m = {
		.argsz = sizeof(m), .flags = flags, .vaddr = (uintptr_t)va, .iova = iova,
		.size = size };

	return ioc(fd, VFIO_IOMMU_MAP_DMA, &m);
}

#define DMA_RW (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)

static int unmap_dma(int fd, uint32_t flags, uint64_t iova, uint64_t size, uint64_t *out)
{
	struct vfio_iommu_type1_dma_unmap u = {
		.argsz = sizeof(u), .flags = flags, .iova = iova, .size = size };
	int rc = ioc(fd, VFIO_IOMMU_UNMAP_DMA, &u);

	if (out)
		*out = u.size;
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

static int64_t huge_get(int fd, uint32_t ioas)
{
	struct iommu_option cmd = {
		.size = sizeof(cmd), .option_id = IOMMU_OPTION_HUGE_PAGES,
		.op = IOMMU_OPTION_OP_GET, .object_id = ioas, .val64 = 0xdead };

	if (ioc(fd, IOMMU_OPTION, &cmd))
		return -1;
	return (int64_t)cmd.val64;
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static uint16_t rd16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

/* ===========================================================================================
 * A plain fd: no compat IOAS.
 * =========================================================================================== */

FIXTURE(vfio) {
	int fd;
};

FIXTURE_SETUP(vfio)
{
	self->fd = uiommu_open(O_RDWR);
	ASSERT_GE(self->fd, 0);
}

FIXTURE_TEARDOWN(vfio)
{
	uiommu_close(self->fd);
}

TEST_F(vfio, api_version_and_extensions)
{
	ASSERT_EQ(ioc_int(self->fd, VFIO_GET_API_VERSION, 0), VFIO_API_VERSION);
	ASSERT_EQ(ioc_int(self->fd, VFIO_GET_API_VERSION, 0), 0);
	ASSERT_EQ(ioc_int(self->fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU), 1);
	ASSERT_EQ(ioc_int(self->fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU), 1);
	ASSERT_EQ(ioc_int(self->fd, VFIO_CHECK_EXTENSION, VFIO_UNMAP_ALL), 1);
	ASSERT_EQ(ioc_int(self->fd, VFIO_CHECK_EXTENSION, VFIO_UPDATE_VADDR), 0);
	ASSERT_EQ(ioc_int(self->fd, VFIO_CHECK_EXTENSION, 2), 0);	/* SPAPR_TCE */
	ASSERT_EQ(ioc_int(self->fd, VFIO_CHECK_EXTENSION, 5), 0);	/* EEH */
	ASSERT_EQ(ioc_int(self->fd, VFIO_CHECK_EXTENSION, 6), 0);	/* nesting */
	ASSERT_EQ(ioc_int(self->fd, VFIO_CHECK_EXTENSION, 7), 0);	/* SPAPR v2 */
	ASSERT_EQ(ioc_int(self->fd, VFIO_CHECK_EXTENSION, 0), 0);
	ASSERT_EQ(ioc_int(self->fd, VFIO_CHECK_EXTENSION, 12345), 0);
	ASSERT_ERRNO(ENODEV, ioc_int(self->fd, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU));
}

TEST_F(vfio, unknown_vfio_ioctls)
{
	uint64_t buf[8] = { sizeof(buf) };

	ASSERT_ERRNO(ENOTTY, ioc(self->fd, _IO(VFIO_TYPE, VFIO_BASE + 3), buf));
	ASSERT_ERRNO(ENOTTY, ioc(self->fd, _IO(VFIO_TYPE, VFIO_BASE + 17), buf));	/* DIRTY_PAGES */
	ASSERT_ERRNO(ENOTTY, ioc(self->fd, _IO(VFIO_TYPE, 0x7f), buf));
	ASSERT_ERRNO(ENOTTY, ioc(self->fd, _IO(VFIO_TYPE, 0), buf));
	/* A VFIO number with a different encoding is not the VFIO ioctl. */
	ASSERT_ERRNO(ENOTTY, ioc(self->fd, _IOR(VFIO_TYPE, VFIO_BASE + 0, int), buf));
}

TEST_F(vfio, set_iommu_without_ioas)
{
	ASSERT_ERRNO(ENODEV, ioc_int(self->fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
	ASSERT_ERRNO(ENODEV, ioc_int(self->fd, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU));
	/* The type is checked first. */
	ASSERT_ERRNO(EINVAL, ioc_int(self->fd, VFIO_SET_IOMMU, 0));
	ASSERT_ERRNO(EINVAL, ioc_int(self->fd, VFIO_SET_IOMMU, 2));
	ASSERT_ERRNO(EINVAL, ioc_int(self->fd, VFIO_SET_IOMMU, 8));
	ASSERT_ERRNO(EINVAL, ioc_int(self->fd, VFIO_SET_IOMMU, 99));
}

TEST_F(vfio, vfio_ioas_ops)
{
	uint32_t id = 0x77, a, b;
	struct iommu_vfio_ioas cmd;

	ASSERT_ERRNO(ENODEV, vfio_ioas(self->fd, IOMMU_VFIO_IOAS_GET, &id));
	id = 0;
	ASSERT_ERRNO(ENOENT, vfio_ioas(self->fd, IOMMU_VFIO_IOAS_SET, &id));
	id = 5;
	ASSERT_ERRNO(ENOENT, vfio_ioas(self->fd, IOMMU_VFIO_IOAS_SET, &id));
	ASSERT_EQ(vfio_ioas(self->fd, IOMMU_VFIO_IOAS_CLEAR, NULL), 0);

	ASSERT_EQ(ioas_alloc_id(self->fd, &a), 0);
	ASSERT_EQ(ioas_alloc_id(self->fd, &b), 0);
	id = a;
	ASSERT_EQ(vfio_ioas(self->fd, IOMMU_VFIO_IOAS_SET, &id), 0);
	id = 0;
	ASSERT_EQ(vfio_ioas(self->fd, IOMMU_VFIO_IOAS_GET, &id), 0);
	ASSERT_EQ(id, a);
	/* SET replaces. */
	id = b;
	ASSERT_EQ(vfio_ioas(self->fd, IOMMU_VFIO_IOAS_SET, &id), 0);
	id = 0;
	ASSERT_EQ(vfio_ioas(self->fd, IOMMU_VFIO_IOAS_GET, &id), 0);
	ASSERT_EQ(id, b);
	/* GET writes the whole struct back. */
	cmd = (struct iommu_vfio_ioas){ .size = sizeof(cmd), .ioas_id = 0,
					.op = IOMMU_VFIO_IOAS_GET };
	ASSERT_EQ(ioc(self->fd, IOMMU_VFIO_IOAS, &cmd), 0);
	ASSERT_EQ(cmd.size, sizeof(cmd));
	ASSERT_EQ(cmd.ioas_id, b);
	ASSERT_EQ(cmd.op, IOMMU_VFIO_IOAS_GET);

	ASSERT_EQ(vfio_ioas(self->fd, IOMMU_VFIO_IOAS_CLEAR, NULL), 0);
	ASSERT_ERRNO(ENODEV, vfio_ioas(self->fd, IOMMU_VFIO_IOAS_GET, &id));
	ASSERT_EQ(vfio_ioas(self->fd, IOMMU_VFIO_IOAS_CLEAR, NULL), 0);

	/* Destroying the compat IOAS clears it; the pointer holds no reference. */
	id = a;
	ASSERT_EQ(vfio_ioas(self->fd, IOMMU_VFIO_IOAS_SET, &id), 0);
	ASSERT_EQ(destroy(self->fd, a), 0);
	ASSERT_ERRNO(ENODEV, vfio_ioas(self->fd, IOMMU_VFIO_IOAS_GET, &id));
	ASSERT_ERRNO(ENODEV, map_dma(self->fd, DMA_RW, 0, g_buf, PS));
	/* A new IOAS reusing the id does not become the compat IOAS. */
	ASSERT_EQ(ioas_alloc_id(self->fd, &id), 0);
	ASSERT_EQ(id, a);
	ASSERT_ERRNO(ENODEV, vfio_ioas(self->fd, IOMMU_VFIO_IOAS_GET, &id));

	cmd = (struct iommu_vfio_ioas){ .size = sizeof(cmd), .op = IOMMU_VFIO_IOAS_CLEAR,
					.__reserved = 1 };
	ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_VFIO_IOAS, &cmd));
	cmd.__reserved = 0;
	cmd.op = 3;
	ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_VFIO_IOAS, &cmd));
}

TEST_F(vfio, commands_without_ioas)
{
	struct vfio_iommu_type1_dma_map m = { .argsz = 1, .flags = DMA_RW,
					      .vaddr = (uintptr_t)g_buf, .size = PS };
	struct vfio_iommu_type1_dma_unmap u = { .argsz = 1, .size = PS };
	uint8_t info[32] = { 0 };

	ASSERT_ERRNO(EINVAL, ioc(self->fd, VFIO_IOMMU_MAP_DMA, &m));
	m.argsz = sizeof(m);
	m.flags = 1u << 31;
	ASSERT_ERRNO(EINVAL, ioc(self->fd, VFIO_IOMMU_MAP_DMA, &m));
	m.flags = DMA_RW;
	ASSERT_ERRNO(ENODEV, ioc(self->fd, VFIO_IOMMU_MAP_DMA, &m));

	ASSERT_ERRNO(EINVAL, ioc(self->fd, VFIO_IOMMU_UNMAP_DMA, &u));
	u.argsz = sizeof(u);
	u.flags = 1u << 31;
	ASSERT_ERRNO(EINVAL, ioc(self->fd, VFIO_IOMMU_UNMAP_DMA, &u));
	u.flags = 0;
	ASSERT_ERRNO(ENODEV, ioc(self->fd, VFIO_IOMMU_UNMAP_DMA, &u));
	u.flags = VFIO_DMA_UNMAP_FLAG_ALL;
	u.size = 0;
	ASSERT_ERRNO(ENODEV, ioc(self->fd, VFIO_IOMMU_UNMAP_DMA, &u));

	*(uint32_t *)info = 1;
	ASSERT_ERRNO(EINVAL, ioc(self->fd, VFIO_IOMMU_GET_INFO, info));
	*(uint32_t *)info = 15;
	ASSERT_ERRNO(EINVAL, ioc(self->fd, VFIO_IOMMU_GET_INFO, info));
	*(uint32_t *)info = 16;
	ASSERT_ERRNO(ENODEV, ioc(self->fd, VFIO_IOMMU_GET_INFO, info));
	*(uint32_t *)info = 24;
	ASSERT_ERRNO(ENODEV, ioc(self->fd, VFIO_IOMMU_GET_INFO, info));

	ASSERT_ERRNO(EFAULT, ioc(self->fd, VFIO_IOMMU_GET_INFO, NULL));
	ASSERT_ERRNO(EFAULT, ioc(self->fd, VFIO_IOMMU_MAP_DMA, NULL));
	ASSERT_ERRNO(EFAULT, ioc(self->fd, VFIO_IOMMU_UNMAP_DMA, NULL));
}

/* ===========================================================================================
 * A compat IOAS, set up as type1 (v1) or type1v2.
 * =========================================================================================== */

FIXTURE(compat) {
	int fd;
	uint32_t ioas;
};

FIXTURE_VARIANT(compat) {
	unsigned long type;
};

FIXTURE_VARIANT_ADD(compat, type1) { .type = VFIO_TYPE1_IOMMU };
FIXTURE_VARIANT_ADD(compat, type1v2) { .type = VFIO_TYPE1v2_IOMMU };

FIXTURE_SETUP(compat)
{
	uint32_t id;

	self->fd = uiommu_open(O_RDWR);
	ASSERT_GE(self->fd, 0);
	ASSERT_EQ(ioas_alloc_id(self->fd, &self->ioas), 0);
	id = self->ioas;
	ASSERT_EQ(vfio_ioas(self->fd, IOMMU_VFIO_IOAS_SET, &id), 0);
	ASSERT_EQ(ioc_int(self->fd, VFIO_SET_IOMMU, variant->type), 0);
}

FIXTURE_TEARDOWN(compat)
{
	uiommu_close(self->fd);
}

TEST_F(compat, set_iommu_and_huge_pages)
{
	ASSERT_EQ(huge_get(self->fd, self->ioas), variant->type == VFIO_TYPE1_IOMMU ? 0 : 1);
	ASSERT_EQ(ioc_int(self->fd, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU), 1);
	/* Repeatable; v2 does not re-enable large pages. */
	ASSERT_EQ(ioc_int(self->fd, VFIO_SET_IOMMU, variant->type), 0);
	ASSERT_EQ(ioc_int(self->fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), 0);
	ASSERT_EQ(huge_get(self->fd, self->ioas), variant->type == VFIO_TYPE1_IOMMU ? 0 : 1);
	ASSERT_EQ(ioc_int(self->fd, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU), 0);
	ASSERT_EQ(huge_get(self->fd, self->ioas), 0);
	ASSERT_ERRNO(EINVAL, ioc_int(self->fd, VFIO_SET_IOMMU, 2));
}

static void check_info_chain(struct __h_test *_metadata, int fd, uint32_t ioas,
			     uint32_t nranges, const uint64_t (*want)[2])
{
	uint32_t total = 40 + 16 + 16 * nranges;
	uint8_t buf[256];

	/* Every argsz below the total: no chain, argsz raised, nothing written past argsz. */
	for (uint32_t argsz = 16; argsz < total; argsz++) {
		memset(buf, 0xaa, sizeof(buf));
		memcpy(buf, &argsz, 4);
		ASSERT_EQ(ioc(fd, VFIO_IOMMU_GET_INFO, buf), 0);
		ASSERT_EQ(rd32(buf), total);
		ASSERT_EQ(rd32(buf + 4), VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
		ASSERT_EQ(rd64(buf + 8), ~(PS - 1));
		if (argsz >= 20)
			ASSERT_EQ(rd32(buf + 16), 0);
		for (uint32_t i = argsz; i < sizeof(buf); i++) {
			if (buf[i] != 0xaa)
				TH_LOG("argsz %u: byte %u written (0x%02x)", argsz, i, buf[i]);
			ASSERT_EQ(buf[i], 0xaa);
		}
	}
	/* Exactly enough room, and more than enough. */
	for (uint32_t argsz = total; argsz <= total + 40; argsz += 40) {
		memset(buf, 0xaa, sizeof(buf));
		memcpy(buf, &argsz, 4);
		ASSERT_EQ(ioc(fd, VFIO_IOMMU_GET_INFO, buf), 0);
		ASSERT_EQ(rd32(buf), total);
		ASSERT_EQ(rd32(buf + 4), VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
		ASSERT_EQ(rd64(buf + 8), ~(PS - 1));
		ASSERT_EQ(rd32(buf + 16), 24);
		/* DMA_AVAIL at 24. */
		ASSERT_EQ(rd16(buf + 24), VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL);
		ASSERT_EQ(rd16(buf + 26), 1);
		ASSERT_EQ(rd32(buf + 28), 40);
		ASSERT_EQ(rd32(buf + 32), 0xffffffffu);
		/* IOVA_RANGE at 40. */
		ASSERT_EQ(rd16(buf + 40), VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE);
		ASSERT_EQ(rd16(buf + 42), 1);
		ASSERT_EQ(rd32(buf + 44), 0);
		ASSERT_EQ(rd32(buf + 48), nranges);
		for (uint32_t k = 0; k < nranges; k++) {
			ASSERT_EQ(rd64(buf + 56 + 16 * k), want[k][0]);
			ASSERT_EQ(rd64(buf + 64 + 16 * k), want[k][1]);
		}
		for (uint32_t i = total; i < sizeof(buf); i++)
			ASSERT_EQ(buf[i], 0xaa);
	}
	/* The ranges equal IOMMU_IOAS_IOVA_RANGES. */
	{
		struct iommu_iova_range r[4];
		struct iommu_ioas_iova_ranges c = {
			.size = sizeof(c), .ioas_id = ioas, .num_iovas = 4,
			.allowed_iovas = (uintptr_t)r };

		ASSERT_EQ(ioc(fd, IOMMU_IOAS_IOVA_RANGES, &c), 0);
		ASSERT_EQ(c.num_iovas, nranges);
		for (uint32_t k = 0; k < nranges; k++) {
			ASSERT_EQ(r[k].start, want[k][0]);
			ASSERT_EQ(r[k].last, want[k][1]);
		}
	}
}

TEST_F(compat, get_info)
{
	uint8_t buf[64];
	static const uint64_t one[1][2] = { { 0, U64_MAX } };
	uint64_t two[2][2] = { { 0, PS - 1 }, { 2 * PS, U64_MAX } };

	NEEDS_IOMMUFD_TEST();
	memset(buf, 0xaa, sizeof(buf));
	*(uint32_t *)buf = 15;
	ASSERT_ERRNO(EINVAL, ioc(self->fd, VFIO_IOMMU_GET_INFO, buf));
	/* The pre-capability 16-byte form. */
	memset(buf, 0xaa, sizeof(buf));
	*(uint32_t *)buf = 16;
	ASSERT_EQ(ioc(self->fd, VFIO_IOMMU_GET_INFO, buf), 0);
	ASSERT_EQ(rd32(buf), 72);
	ASSERT_EQ(rd32(buf + 4), VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
	ASSERT_EQ(rd64(buf + 8), ~(PS - 1));
	ASSERT_EQ(rd32(buf + 16), 0xaaaaaaaau);

	check_info_chain(_metadata, self->fd, self->ioas, 1, one);
	/* Areas and allowed ranges do not change the chain. */
	ASSERT_EQ(map_dma(self->fd, DMA_RW, 0x100000, g_buf, 4 * PS), 0);
	{
		struct iommu_iova_range a = { .start = 0x100000, .last = 0x1fffff };
		struct iommu_ioas_allow_iovas c = {
			.size = sizeof(c), .ioas_id = self->ioas, .num_iovas = 1,
			.allowed_iovas = (uintptr_t)&a };

		ASSERT_EQ(ioc(self->fd, IOMMU_IOAS_ALLOW_IOVAS, &c), 0);
	}
	check_info_chain(_metadata, self->fd, self->ioas, 1, one);
	{
		struct iommu_ioas_allow_iovas c = { .size = sizeof(c), .ioas_id = self->ioas };

		ASSERT_EQ(ioc(self->fd, IOMMU_IOAS_ALLOW_IOVAS, &c), 0);
	}
	ASSERT_EQ(add_reserved(self->fd, self->ioas, PS, PS), 0);
	check_info_chain(_metadata, self->fd, self->ioas, 2, (const uint64_t (*)[2])two);
	memset(buf, 0xaa, sizeof(buf));
	*(uint32_t *)buf = 24;
	ASSERT_EQ(ioc(self->fd, VFIO_IOMMU_GET_INFO, buf), 0);
	ASSERT_EQ(rd32(buf), 88);
	ASSERT_EQ(rd32(buf + 16), 0);
}

TEST_F(compat, map_dma)
{
	struct vfio_iommu_type1_dma_map m = { .argsz = sizeof(m), .flags = DMA_RW,
					      .vaddr = (uintptr_t)g_buf, .iova = 0x100000,
					      .size = 4 * PS };
	uint64_t size;

	NEEDS_IOMMUFD_TEST();
	m.argsz = 31;
	ASSERT_ERRNO(EINVAL, ioc(self->fd, VFIO_IOMMU_MAP_DMA, &m));
	m.argsz = sizeof(m);
	m.flags = DMA_RW | VFIO_DMA_MAP_FLAG_VADDR;
	ASSERT_ERRNO(EINVAL, ioc(self->fd, VFIO_IOMMU_MAP_DMA, &m));
	m.flags = DMA_RW | (1u << 3);
	ASSERT_ERRNO(EINVAL, ioc(self->fd, VFIO_IOMMU_MAP_DMA, &m));
	m.flags = DMA_RW;
	m.size = 0;
	ASSERT_ERRNO(EINVAL, ioc(self->fd, VFIO_IOMMU_MAP_DMA, &m));
	m.size = 4 * PS;
	m.argsz = sizeof(m) + 8;	/* a larger argsz is fine */
	ASSERT_EQ(ioc(self->fd, VFIO_IOMMU_MAP_DMA, &m), 0);
	/* Nothing is written back. */
	ASSERT_EQ(m.iova, 0x100000);
	ASSERT_EQ(m.size, 4 * PS);
	ASSERT_EQ(m.argsz, sizeof(m) + 8);
	ASSERT_ERRNO(EEXIST, map_dma(self->fd, DMA_RW, 0x100000, g_buf, 4 * PS));
	ASSERT_ERRNO(EEXIST, map_dma(self->fd, DMA_RW, 0x100000 + 3 * PS, g_buf, 4 * PS));
	ASSERT_ERRNO(EEXIST, map_dma(self->fd, DMA_RW, 0x100000 - PS, g_buf, 2 * PS));
	/* flags = 0 is accepted; read-only and write-only too. */
	ASSERT_EQ(map_dma(self->fd, 0, 0x200000, g_buf, PS), 0);
	ASSERT_EQ(map_dma(self->fd, VFIO_DMA_MAP_FLAG_READ, 0x201000, g_buf, PS), 0);
	ASSERT_EQ(map_dma(self->fd, VFIO_DMA_MAP_FLAG_WRITE, 0x202000, g_buf, PS), 0);
	/* Lazy pinning: an unmapped VA maps. */
	ASSERT_EQ(map_dma(self->fd, DMA_RW, 0x300000, (void *)0x80000000ul, PS), 0);
	{
		struct uiommu_stats st;

		ASSERT_EQ(uiommu_stats_get(&st), 0);
		ASSERT_EQ(st.pinned_pages, 0);
	}
	/* Reserved space: EINVAL. */
	ASSERT_EQ(add_reserved(self->fd, self->ioas, 0x400000, PS), 0);
	ASSERT_ERRNO(EINVAL, map_dma(self->fd, DMA_RW, 0x400000, g_buf, PS));
	ASSERT_EQ(unmap_dma(self->fd, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0, &size), 0);
	ASSERT_EQ(size, 8 * PS);
}

TEST_F(compat, unmap_dma)
{
	struct vfio_iommu_type1_dma_unmap u = { .argsz = 23, .iova = 0x100000, .size = PS };
	uint64_t size;

	ASSERT_ERRNO(EINVAL, ioc(self->fd, VFIO_IOMMU_UNMAP_DMA, &u));
	u.argsz = sizeof(u);
	u.flags = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
	ASSERT_ERRNO(EINVAL, ioc(self->fd, VFIO_IOMMU_UNMAP_DMA, &u));
	u.flags = VFIO_DMA_UNMAP_FLAG_VADDR;
	ASSERT_ERRNO(EINVAL, ioc(self->fd, VFIO_IOMMU_UNMAP_DMA, &u));
	u.flags = 1u << 3;
	ASSERT_ERRNO(EINVAL, ioc(self->fd, VFIO_IOMMU_UNMAP_DMA, &u));

	/* Empty range: success, size 0. */
	u.flags = 0;
	ASSERT_EQ(ioc(self->fd, VFIO_IOMMU_UNMAP_DMA, &u), 0);
	ASSERT_EQ(u.size, 0);
	ASSERT_EQ(u.iova, 0x100000);

	ASSERT_EQ(map_dma(self->fd, DMA_RW, 0x100000, g_buf, 4 * PS), 0);
	ASSERT_EQ(map_dma(self->fd, DMA_RW, 0x200000, g_buf, 2 * PS), 0);
	ASSERT_EQ(map_dma(self->fd, DMA_RW, 0x300000, g_buf, PS), 0);
	ASSERT_EQ(unmap_dma(self->fd, 0, 0x100000, 4 * PS, &size), 0);
	ASSERT_EQ(size, 4 * PS);
	ASSERT_EQ(unmap_dma(self->fd, 0, 0x100000, 4 * PS, &size), 0);
	ASSERT_EQ(size, 0);
	ASSERT_ERRNO(EINVAL, unmap_dma(self->fd, 0, 0x100000, 0, NULL));

	/* UNMAP_ALL needs iova = size = 0; nothing is written back then. */
	u = (struct vfio_iommu_type1_dma_unmap){ .argsz = sizeof(u),
						 .flags = VFIO_DMA_UNMAP_FLAG_ALL, .iova = PS };
	ASSERT_ERRNO(EINVAL, ioc(self->fd, VFIO_IOMMU_UNMAP_DMA, &u));
	ASSERT_EQ(u.iova, PS);
	u.iova = 0;
	u.size = PS;
	ASSERT_ERRNO(EINVAL, ioc(self->fd, VFIO_IOMMU_UNMAP_DMA, &u));
	ASSERT_EQ(u.size, PS);
	u.size = 0;
	ASSERT_EQ(ioc(self->fd, VFIO_IOMMU_UNMAP_DMA, &u), 0);
	ASSERT_EQ(u.size, 3 * PS);
	/* The reported size now makes the request invalid. */
	ASSERT_ERRNO(EINVAL, ioc(self->fd, VFIO_IOMMU_UNMAP_DMA, &u));
	u.size = 0;
	ASSERT_EQ(ioc(self->fd, VFIO_IOMMU_UNMAP_DMA, &u), 0);
	ASSERT_EQ(u.size, 0);

	/* Holes are skipped: the sum of the areas. */
	ASSERT_EQ(map_dma(self->fd, DMA_RW, 0x100000, g_buf, 4 * PS), 0);
	ASSERT_EQ(map_dma(self->fd, DMA_RW, 0x200000, g_buf, 2 * PS), 0);
	ASSERT_EQ(unmap_dma(self->fd, 0, 0, 0x400000, &size), 0);
	ASSERT_EQ(size, 6 * PS);
	/* The IOAS really is empty. */
	{
		struct iommu_ioas_unmap c = { .size = sizeof(c), .ioas_id = self->ioas,
					      .iova = 0, .length = U64_MAX };

		ASSERT_EQ(ioc(self->fd, IOMMU_IOAS_UNMAP, &c), 0);
		ASSERT_EQ(c.length, 0);
	}
}

TEST_F(compat, unmap_pieces)
{
	uint64_t iova = 0x1000000, size;
	int order[16];

	ASSERT_EQ(map_dma(self->fd, DMA_RW, iova, g_buf, 16 * PS), 0);
	if (variant->type == VFIO_TYPE1v2_IOMMU) {
		for (int i = 0; i < 16; i++) {
			size = 0x5555;
			ASSERT_ERRNO(ENOENT, unmap_dma(self->fd, 0, iova + i * PS, PS, &size));
			/* The reply is written back on error: nothing was unmapped. */
			ASSERT_EQ(size, 0);
		}
		ASSERT_ERRNO(ENOENT, unmap_dma(self->fd, 0, iova, 15 * PS, NULL));
		ASSERT_ERRNO(ENOENT, unmap_dma(self->fd, 0, iova - PS, 2 * PS, NULL));
		ASSERT_EQ(unmap_dma(self->fd, 0, iova, 16 * PS, &size), 0);
		ASSERT_EQ(size, 16 * PS);
		return;
	}
	/* type1 (v1): any page-aligned piece can be cut out. */
	ASSERT_EQ(unmap_dma(self->fd, 0, iova + 7 * PS, PS, &size), 0);
	ASSERT_EQ(size, PS);
	ASSERT_EQ(unmap_dma(self->fd, 0, iova + 7 * PS, PS, &size), 0);
	ASSERT_EQ(size, 0);
	for (int i = 0; i < 16; i++)
		order[i] = i;
	srand(1234);
	for (int i = 15; i > 0; i--) {
		int j = rand() % (i + 1), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	for (int i = 0; i < 16; i++) {
		ASSERT_EQ(unmap_dma(self->fd, 0, iova + order[i] * PS, PS, &size), 0);
		ASSERT_EQ(size, order[i] == 7 ? 0 : PS);
	}
	ASSERT_EQ(unmap_dma(self->fd, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0, &size), 0);
	ASSERT_EQ(size, 0);

	/* A sub-range spanning two pieces. */
	ASSERT_EQ(map_dma(self->fd, DMA_RW, iova, g_buf, 16 * PS), 0);
	ASSERT_EQ(unmap_dma(self->fd, 0, iova + 3 * PS, 5 * PS, &size), 0);
	ASSERT_EQ(size, 5 * PS);
	ASSERT_EQ(unmap_dma(self->fd, 0, iova, 16 * PS, &size), 0);
	ASSERT_EQ(size, 11 * PS);
	/* Cuts at page granularity only (huge pages are off): a sub-page cut is EINVAL. */
	ASSERT_EQ(map_dma(self->fd, DMA_RW, iova, g_buf, 4 * PS), 0);
	ASSERT_ERRNO(EINVAL, unmap_dma(self->fd, 0, iova + 0x200, PS, NULL));
	ASSERT_EQ(unmap_dma(self->fd, 0, iova, 4 * PS, &size), 0);
	ASSERT_EQ(size, 4 * PS);
}

TEST_F(compat, native_and_vfio_views_agree)
{
	uint64_t size;
	struct iommu_ioas_map m = { .size = sizeof(m),
				    .flags = IOMMU_IOAS_MAP_FIXED_IOVA |
					     IOMMU_IOAS_MAP_READABLE,
				    .ioas_id = self->ioas, .user_va = (uintptr_t)g_buf,
				    .length = 2 * PS, .iova = 0x500000 };

	ASSERT_EQ(ioc(self->fd, IOMMU_IOAS_MAP, &m), 0);
	ASSERT_ERRNO(EEXIST, map_dma(self->fd, DMA_RW, 0x500000 + PS, g_buf, PS));
	ASSERT_EQ(unmap_dma(self->fd, 0, 0x500000, 2 * PS, &size), 0);
	ASSERT_EQ(size, 2 * PS);
	/* Clearing the compat IOAS takes the VFIO view away. */
	ASSERT_EQ(vfio_ioas(self->fd, IOMMU_VFIO_IOAS_CLEAR, NULL), 0);
	ASSERT_ERRNO(ENODEV, map_dma(self->fd, DMA_RW, 0x500000, g_buf, PS));
	ASSERT_ERRNO(ENODEV, ioc_int(self->fd, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU));
	ASSERT_ERRNO(ENODEV, ioc_int(self->fd, VFIO_SET_IOMMU, variant->type));
}

TEST_HARNESS_MAIN
