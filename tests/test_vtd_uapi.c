// SPDX-License-Identifier: MIT
/*
 * VT-d nesting on the Linux uAPI only, as a VMM (QEMU's intel-iommu with fsts=on) drives it:
 * a vfio-pci device behind a "driver": "vtd" instance, bound to an iommufd; GET_HW_INFO; a
 * NEST_PARENT HWPT over the IOAS that holds guest RAM; the guest's first-stage tables written
 * in guest RAM; a nested HWPT from IOMMU_HWPT_DATA_VTD_S1; the device's DMA (the machine's DMA
 * engine) through both stages; IOMMU_HWPT_INVALIDATE; the errnos of each step.
 *
 * The machine (each case is a fresh child; it boots at the first open of a vfio node):
 *   vfio0 = 0000:00:04.0 behind dmar0, every feature, a PRI-capable function;
 *   vfio1 = 0000:00:05.0 behind dmar1, without NEST, SRS and FS5LP.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "topology_file.h"
#include "uiommu/iommufd.h"
#include "uiommu/uiommu.h"
#include "uiommu/vfio_compat.h"

#define PG 4096ull
#define GUEST_PAGES 256u
#define GUEST_BASE (1ull << 30)
#define MAP_RW (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_FIXED_IOVA)
#define FS_TABLE 0x7ull             /* P | R/W | U/S */
#define FS_LEAF 0x7ull
#define ADDR_MASK 0x000ffffffffff000ull

static const char topology[] =
	"{ \"iommus\": [ { \"name\": \"dmar0\", \"driver\": \"vtd\" },\n"
	"                { \"name\": \"dmar1\", \"driver\": \"vtd\",\n"
	"                  \"features\": { \"nest\": false, \"srs\": false, \"fs5lp\": false } } ],\n"
	"  \"devices\": [\n"
	"    { \"bdf\": \"0000:00:04.0\", \"iommu\": \"dmar0\", \"pasid_bits\": 20, \"pri\": true },\n"
	"    { \"bdf\": \"0000:00:05.0\", \"iommu\": \"dmar1\" } ] }\n";

FIXTURE(vtd_uapi)
{
	int fd;
	int v[2];
	uint32_t devid[2];
	uint32_t ioas;
	uint32_t parent;
	uint8_t *ram;        /* guest RAM, mapped at GUEST_BASE in the IOAS */
	unsigned int next;   /* guest pages handed out */
};

static uint64_t *gptr(FIXTURE_DATA(vtd_uapi) *self, uint64_t gpa)
{
	return (uint64_t *)(self->ram + (gpa - GUEST_BASE));
}

static uint64_t gpage(FIXTURE_DATA(vtd_uapi) *self)
{
	if (self->next >= GUEST_PAGES)
		abort();
	return GUEST_BASE + self->next++ * PG;
}

/* The guest maps @iova -> @out with 4 KiB pages under the 4-level root @root. */
static uint64_t *fs_map(FIXTURE_DATA(vtd_uapi) *self, uint64_t root, uint64_t iova,
			uint64_t out, uint64_t leaf_bits)
{
	uint64_t table = root;

	for (int lvl = 4; lvl > 1; lvl--) {
		uint64_t *slot = gptr(self, table) + ((iova >> (12 + 9 * (lvl - 1))) & 511);

		if (!(*slot & 1))
			*slot = gpage(self) | FS_TABLE;
		table = *slot & ADDR_MASK;
	}
	uint64_t *leaf = gptr(self, table) + ((iova >> 12) & 511);

	*leaf = out | leaf_bits;
	return leaf;
}

static uint32_t fault_id; /* with IOMMU_HWPT_FAULT_ID_VALID */

static int hwpt_alloc(FIXTURE_DATA(vtd_uapi) *self, int dev, uint32_t pt, uint32_t flags,
		      uint32_t type, const void *data, uint32_t len, uint32_t *out)
{
	struct iommu_hwpt_alloc cmd = {
		.size = sizeof(cmd), .flags = flags, .dev_id = self->devid[dev], .pt_id = pt,
		.data_type = type, .data_len = len, .data_uptr = (uintptr_t)data,
		.fault_id = fault_id,
	};
	int rc = uiommu_ioctl(self->fd, IOMMU_HWPT_ALLOC, &cmd);

	*out = cmd.out_hwpt_id;
	return rc;
}

static int nested_alloc(FIXTURE_DATA(vtd_uapi) *self, uint64_t root, uint32_t aw,
			uint64_t flags, uint32_t *out)
{
	struct iommu_hwpt_vtd_s1 s1 = { .flags = flags, .pgtbl_addr = root, .addr_width = aw };

	return hwpt_alloc(self, 0, self->parent, fault_id ? IOMMU_HWPT_FAULT_ID_VALID : 0,
			  IOMMU_HWPT_DATA_VTD_S1, &s1, sizeof(s1), out);
}

static int attach(FIXTURE_DATA(vtd_uapi) *self, int dev, uint32_t pt)
{
	struct vfio_device_attach_iommufd_pt cmd = { .argsz = sizeof(cmd), .pt_id = pt };

	return uiommu_ioctl(self->v[dev], VFIO_DEVICE_ATTACH_IOMMUFD_PT, &cmd);
}

static int invalidate(FIXTURE_DATA(vtd_uapi) *self, uint32_t hwpt, uint32_t type,
		      const void *entries, uint32_t len, uint32_t *num)
{
	struct iommu_hwpt_invalidate cmd = {
		.size = sizeof(cmd), .hwpt_id = hwpt, .data_uptr = (uintptr_t)entries,
		.data_type = type, .entry_len = len, .entry_num = *num,
	};
	int rc = uiommu_ioctl(self->fd, IOMMU_HWPT_INVALIDATE, &cmd);

	*num = cmd.entry_num;
	return rc;
}

FIXTURE_SETUP(vtd_uapi)
{
	char path[] = "/tmp/uiommu-vtd-XXXXXX";

	ASSERT_EQ(0, topology_file_env(path, topology));
	self->fd = uiommu_open(O_RDWR);
	ASSERT_GE(self->fd, 0);
	for (int i = 0; i < 2; i++) {
		struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = self->fd };
		char node[64];

		snprintf(node, sizeof(node), "/dev/vfio/devices/vfio%d", i);
		self->v[i] = uiommu_vfio_open(node, O_RDWR);
		ASSERT_GE(self->v[i], 0);
		ASSERT_EQ(0, uiommu_ioctl(self->v[i], VFIO_DEVICE_BIND_IOMMUFD, &bind));
		self->devid[i] = bind.out_devid;
	}
	unlink(path);
	self->ram = mmap(NULL, GUEST_PAGES * PG, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(self->ram != MAP_FAILED);
	memset(self->ram, 0, GUEST_PAGES * PG);
	self->next = 0;

	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };

	ASSERT_EQ(0, uiommu_ioctl(self->fd, IOMMU_IOAS_ALLOC, &alloc));
	self->ioas = alloc.out_ioas_id;
	ASSERT_EQ(0, hwpt_alloc(self, 0, self->ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, 0, NULL, 0,
				&self->parent));

	struct iommu_ioas_map map = {
		.size = sizeof(map), .flags = MAP_RW, .ioas_id = self->ioas,
		.user_va = (uintptr_t)self->ram, .length = GUEST_PAGES * PG, .iova = GUEST_BASE,
	};

	ASSERT_EQ(0, uiommu_ioctl(self->fd, IOMMU_IOAS_MAP, &map));
}

FIXTURE_TEARDOWN(vtd_uapi)
{
	for (int i = 0; i < 2; i++)
		uiommu_close(self->v[i]);
	uiommu_close(self->fd);
	munmap(self->ram, GUEST_PAGES * PG);
}

TEST_F(vtd_uapi, hw_info)
{
	struct iommu_hw_info_vtd vtd[2];
	struct iommu_hw_info info = {
		.size = sizeof(info), .dev_id = self->devid[0], .data_len = sizeof(vtd),
		.data_uptr = (uintptr_t)vtd,
	};

	memset(vtd, 0xff, sizeof(vtd));
	ASSERT_EQ(0, uiommu_ioctl(self->fd, IOMMU_GET_HW_INFO, &info));
	EXPECT_EQ(IOMMU_HW_INFO_TYPE_INTEL_VTD, info.out_data_type);
	EXPECT_EQ(sizeof(vtd[0]), info.data_len);
	EXPECT_EQ(IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17, vtd[0].flags);
	EXPECT_EQ(1ull << 26, vtd[0].ecap_reg & (1ull << 26));   /* NEST */
	EXPECT_EQ(1ull << 56, vtd[0].cap_reg & (1ull << 56));    /* FS1GP */
	EXPECT_EQ(47u, (vtd[0].cap_reg >> 16) & 0x3f);           /* MGAW: QEMU's aw-bits 48 */
	EXPECT_EQ(0u, vtd[1].cap_reg);                           /* the rest zeroed */
	EXPECT_TRUE(info.out_capabilities & IOMMU_HW_CAP_DIRTY_TRACKING);
	info = (struct iommu_hw_info){ .size = sizeof(info), .dev_id = self->devid[1],
				       .data_len = sizeof(vtd), .data_uptr = (uintptr_t)vtd };
	ASSERT_EQ(0, uiommu_ioctl(self->fd, IOMMU_GET_HW_INFO, &info));
	EXPECT_EQ(0u, vtd[0].ecap_reg & (1ull << 26));
	info.flags = IOMMU_HW_INFO_FLAG_INPUT_TYPE;
	info.in_data_type = IOMMU_HW_INFO_TYPE_ARM_SMMUV3;
	EXPECT_ERRNO(EOPNOTSUPP, uiommu_ioctl(self->fd, IOMMU_GET_HW_INFO, &info));
}

TEST_F(vtd_uapi, parent_and_nested_alloc_errnos)
{
	struct iommu_hwpt_vtd_s1 s1 = { .pgtbl_addr = GUEST_BASE, .addr_width = 48 };
	uint32_t id, plain;

	/* No NEST on dmar1: no parent there. */
	EXPECT_ERRNO(EOPNOTSUPP, hwpt_alloc(self, 1, self->ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, 0,
					   NULL, 0, &id));
	/* Driver data on a paging allocation. */
	EXPECT_ERRNO(EOPNOTSUPP, hwpt_alloc(self, 0, self->ioas, 0, IOMMU_HWPT_DATA_VTD_S1, &s1,
					   sizeof(s1), &id));
	/* The erratum: read-only maps are refused once the parent holds the IOAS. */
	struct iommu_ioas_map map = {
		.size = sizeof(map), .ioas_id = self->ioas, .user_va = (uintptr_t)self->ram,
		.length = PG, .iova = GUEST_BASE + GUEST_PAGES * PG,
		.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA,
	};

	EXPECT_ERRNO(EINVAL, uiommu_ioctl(self->fd, IOMMU_IOAS_MAP, &map));
	/* Nested: the wrong type, a short or long struct, a parent that is not one. */
	EXPECT_ERRNO(EOPNOTSUPP, hwpt_alloc(self, 0, self->parent, 0, IOMMU_HWPT_DATA_ARM_SMMUV3,
					   &s1, sizeof(s1), &id));
	EXPECT_ERRNO(EINVAL, hwpt_alloc(self, 0, self->parent, 0, IOMMU_HWPT_DATA_VTD_S1, &s1, 16,
				       &id));
	EXPECT_ERRNO(EINVAL, hwpt_alloc(self, 0, self->parent, 0, IOMMU_HWPT_DATA_VTD_S1, &s1, 32,
				       &id));
	ASSERT_EQ(0, hwpt_alloc(self, 0, self->ioas, 0, 0, NULL, 0, &plain));
	EXPECT_ERRNO(EINVAL, hwpt_alloc(self, 0, plain, 0, IOMMU_HWPT_DATA_VTD_S1, &s1, sizeof(s1),
				       &id));
	/* addr_width is judged at attach. */
	ASSERT_EQ(0, nested_alloc(self, GUEST_BASE, 39, 0, &id));
	EXPECT_ERRNO(EINVAL, attach(self, 0, id));
	ASSERT_EQ(0, nested_alloc(self, GUEST_BASE, 57, IOMMU_VTD_S1_SRE, &id));
	EXPECT_EQ(0, attach(self, 0, id));
}

TEST_F(vtd_uapi, dma_through_both_stages_and_invalidation)
{
	uint64_t root = gpage(self), a = gpage(self), b = gpage(self), *leaf;
	const uint64_t iova = 0x10000000;
	struct iommu_hwpt_vtd_s1_invalidate inv = { .addr = iova, .npages = 1 };
	struct uiommu_dma_dev *dma;
	char msg[] = "through two stages", got[sizeof(msg)];
	uint32_t nested, num;

	leaf = fs_map(self, root, iova, a, FS_LEAF);
	ASSERT_EQ(0, nested_alloc(self, root, 48, 0, &nested));
	ASSERT_EQ(0, attach(self, 0, nested));
	dma = uiommu_dma_dev_open_iommufd(self->fd, self->devid[0]);
	ASSERT_TRUE(dma != NULL);
	/* The device writes through the guest's table: the bytes land in guest page a. */
	ASSERT_EQ((ssize_t)sizeof(msg), uiommu_dma_write(dma, 0, iova + 16, msg, sizeof(msg), 0));
	EXPECT_EQ(0, memcmp(self->ram + (a - GUEST_BASE) + 16, msg, sizeof(msg)));
	/* The walk set A and D in the guest's leaf. */
	EXPECT_EQ(0x60ull, *leaf & 0x60);
	/* The guest retargets the PTE without invalidating: the device still reaches a. */
	*leaf = b | FS_LEAF;
	memcpy(self->ram + (b - GUEST_BASE) + 16, "fresh", 6);
	ASSERT_EQ((ssize_t)sizeof(got), uiommu_dma_read(dma, 0, iova + 16, got, sizeof(got), 0));
	EXPECT_EQ(0, memcmp(got, msg, sizeof(msg)));
	/* The invalidation: now page b. */
	num = 1;
	ASSERT_EQ(0, invalidate(self, nested, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, &inv, sizeof(inv),
				&num));
	EXPECT_EQ(1u, num);
	ASSERT_EQ(6, uiommu_dma_read(dma, 0, iova + 16, got, 6, 0));
	EXPECT_STREQ("fresh", got);
	/* A read-only first stage: a write is refused (EACCES), and nothing moves. */
	*leaf = b | 0x5;
	ASSERT_EQ(0, invalidate(self, nested, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, &inv, sizeof(inv),
				&num));
	EXPECT_ERRNO(EACCES, uiommu_dma_write(dma, 0, iova + 16, msg, sizeof(msg), 0));
	EXPECT_STREQ("fresh", (char *)self->ram + (b - GUEST_BASE) + 16);
	/* Not mapped by the guest: a fault. */
	EXPECT_ERRNO(EFAULT, uiommu_dma_read(dma, 0, iova + PG, got, 1, 0));
	/* Stage 2 gone under the output page (the host unmaps guest RAM): a fault at once. */
	struct iommu_ioas_unmap unmap = { .size = sizeof(unmap), .ioas_id = self->ioas,
					  .iova = GUEST_BASE, .length = GUEST_PAGES * PG };

	ASSERT_EQ(0, uiommu_ioctl(self->fd, IOMMU_IOAS_UNMAP, &unmap));
	EXPECT_ERRNO(EFAULT, uiommu_dma_read(dma, 0, iova + 16, got, 1, 0));
	uiommu_dma_dev_close(dma);
}

TEST_F(vtd_uapi, invalidate_errnos)
{
	struct iommu_hwpt_vtd_s1_invalidate inv[2] = { { .addr = 0, .npages = 1 },
						      { .addr = 0x800, .npages = 1 } };
	uint32_t nested, num;

	ASSERT_EQ(0, nested_alloc(self, GUEST_BASE, 48, 0, &nested));
	num = 0;
	EXPECT_EQ(0, invalidate(self, nested, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, inv, sizeof(inv[0]),
				&num));
	num = 0;
	EXPECT_ERRNO(EINVAL, invalidate(self, nested, 1, inv, sizeof(inv[0]), &num));
	num = 2;
	EXPECT_ERRNO(EINVAL, invalidate(self, nested, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, inv, 16,
					&num));
	EXPECT_EQ(0u, num);
	num = 2;
	EXPECT_ERRNO(EINVAL, invalidate(self, nested, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, inv,
					sizeof(inv[0]), &num));
	EXPECT_EQ(1u, num);
	inv[1].addr = 0;
	inv[1].flags = 2;
	num = 2;
	EXPECT_ERRNO(EOPNOTSUPP, invalidate(self, nested, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, inv,
					    sizeof(inv[0]), &num));
	EXPECT_EQ(1u, num);
	inv[1].flags = IOMMU_VTD_INV_FLAGS_LEAF;
	num = 2;
	EXPECT_EQ(0, invalidate(self, nested, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, inv,
				sizeof(inv[0]), &num));
	EXPECT_EQ(2u, num);
	/* The parent is not a nested HWPT. */
	num = 1;
	EXPECT_ERRNO(EINVAL, invalidate(self, self->parent, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, inv,
					sizeof(inv[0]), &num));
	EXPECT_EQ(0u, num);
}

/* The parent's dirty bitmap over guest RAM, one bit a page, into @bits (GUEST_PAGES bits). */
static int dirty_read(FIXTURE_DATA(vtd_uapi) *self, uint32_t hwpt, uint64_t *bits)
{
	struct iommu_hwpt_get_dirty_bitmap cmd = {
		.size = sizeof(cmd), .hwpt_id = hwpt, .iova = GUEST_BASE,
		.length = GUEST_PAGES * PG, .page_size = PG, .data = (uintptr_t)bits,
	};

	memset(bits, 0, GUEST_PAGES / 8);
	return uiommu_ioctl(self->fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &cmd);
}

static unsigned int bit_of(uint64_t gpa)
{
	return (unsigned int)((gpa - GUEST_BASE) / PG);
}

/*
 * Migration of a guest with a nested device: the parent tracks dirty pages, and a DMA write
 * through the guest's first stage dirties the page written and, through the walk's A/D
 * updates, the guest's own table pages: exactly those.
 */
TEST_F(vtd_uapi, dirty_pages_of_a_nested_dma)
{
	uint64_t root = gpage(self), a = gpage(self), bits[GUEST_PAGES / 64], want[GUEST_PAGES / 64];
	struct iommu_hwpt_set_dirty_tracking track = { .size = sizeof(track),
						       .flags = IOMMU_HWPT_DIRTY_TRACKING_ENABLE };
	const uint64_t iova = 0x30000000;
	struct uiommu_dma_dev *dma;
	uint32_t parent, nested;
	struct iommu_hwpt_vtd_s1 s1 = { .pgtbl_addr = root, .addr_width = 48 };

	ASSERT_EQ(0, hwpt_alloc(self, 0, self->ioas,
				IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING, 0, NULL,
				0, &parent));
	ASSERT_EQ(0, hwpt_alloc(self, 0, parent, 0, IOMMU_HWPT_DATA_VTD_S1, &s1, sizeof(s1),
				&nested));
	/* Tables and leaf without A/D: the walk will write each of them. */
	fs_map(self, root, iova, a, FS_LEAF);
	ASSERT_EQ(0, attach(self, 0, nested));
	track.hwpt_id = parent;
	ASSERT_EQ(0, uiommu_ioctl(self->fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &track));
	ASSERT_EQ(0, dirty_read(self, parent, bits));
	for (unsigned int i = 0; i < GUEST_PAGES / 64; i++)
		EXPECT_EQ(0u, bits[i]);
	dma = uiommu_dma_dev_open_iommufd(self->fd, self->devid[0]);
	ASSERT_TRUE(dma != NULL);
	ASSERT_EQ(4, uiommu_dma_write(dma, 0, iova, "dirt", 4, 0));
	/* The page written, and the four table pages the walk set A or D in (root .. PT). */
	memset(want, 0, sizeof(want));
	for (uint64_t gpa = GUEST_BASE; gpa < GUEST_BASE + self->next * PG; gpa += PG)
		want[bit_of(gpa) / 64] |= 1ull << (bit_of(gpa) % 64);
	ASSERT_EQ(0, dirty_read(self, parent, bits));
	for (unsigned int i = 0; i < GUEST_PAGES / 64; i++)
		EXPECT_EQ(want[i], bits[i]);
	/* Read and cleared: the same write again dirties its page alone (A/D are set now). */
	ASSERT_EQ(4, uiommu_dma_write(dma, 0, iova, "more", 4, 0));
	ASSERT_EQ(0, dirty_read(self, parent, bits));
	memset(want, 0, sizeof(want));
	want[bit_of(a) / 64] = 1ull << (bit_of(a) % 64);
	for (unsigned int i = 0; i < GUEST_PAGES / 64; i++)
		EXPECT_EQ(want[i], bits[i]);
	/* A read dirties nothing. */
	char got[4];

	ASSERT_EQ(4, uiommu_dma_read(dma, 0, iova, got, 4, 0));
	ASSERT_EQ(0, dirty_read(self, parent, bits));
	for (unsigned int i = 0; i < GUEST_PAGES / 64; i++)
		EXPECT_EQ(0u, bits[i]);
	uiommu_dma_dev_close(dma);
}

static int attach_pasid(FIXTURE_DATA(vtd_uapi) *self, uint32_t pasid, uint32_t pt)
{
	struct vfio_device_attach_iommufd_pt cmd = { .argsz = sizeof(cmd),
						     .flags = VFIO_DEVICE_ATTACH_PASID,
						     .pt_id = pt, .pasid = pasid };

	return uiommu_ioctl(self->v[0], VFIO_DEVICE_ATTACH_IOMMUFD_PT, &cmd);
}

/*
 * A nested HWPT at a PASID (a guest's PASID-granular first stage): it needs ALLOC_PASID, and
 * the device's requests with that PASID translate through it while its RID stays on the parent.
 */
TEST_F(vtd_uapi, nested_at_a_pasid)
{
	struct iommu_hwpt_vtd_s1 s1 = { .addr_width = 48 };
	uint64_t root = gpage(self), a = gpage(self);
	const uint64_t iova = 0x50000000; /* above guest RAM */
	struct uiommu_dma_dev *dma;
	uint32_t parent, plain, pasid_ok;
	char got[6];

	s1.pgtbl_addr = root;
	fs_map(self, root, iova, a, FS_LEAF);
	memcpy(self->ram + (a - GUEST_BASE), "pasid", 6);
	/* While a PASID is attached the RID's HWPT must be PASID-capable too (the core's rule). */
	ASSERT_EQ(0, hwpt_alloc(self, 0, self->ioas,
				IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_PASID, 0, NULL, 0,
				&parent));
	ASSERT_EQ(0, hwpt_alloc(self, 0, parent, 0, IOMMU_HWPT_DATA_VTD_S1, &s1, sizeof(s1),
				&plain));
	ASSERT_EQ(0, hwpt_alloc(self, 0, parent, IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_DATA_VTD_S1,
				&s1, sizeof(s1), &pasid_ok));
	ASSERT_EQ(0, attach(self, 0, parent));
	/* A nested HWPT without ALLOC_PASID: the core's EINVAL. */
	EXPECT_ERRNO(EINVAL, attach_pasid(self, 7, plain));
	ASSERT_EQ(0, attach_pasid(self, 7, pasid_ok));
	dma = uiommu_dma_dev_open_iommufd(self->fd, self->devid[0]);
	ASSERT_TRUE(dma != NULL);
	ASSERT_EQ(6, uiommu_dma_read(dma, 7, iova, got, 6, 0));
	EXPECT_STREQ("pasid", got);
	/* The RID is on the parent: the same IOVA there is a GPA outside guest RAM. */
	EXPECT_ERRNO(EFAULT, uiommu_dma_read(dma, 0, iova, got, 6, 0));
	/* And a GPA is what the RID reaches. */
	ASSERT_EQ(6, uiommu_dma_read(dma, 0, a, got, 6, 0));
	EXPECT_STREQ("pasid", got);
	uiommu_dma_dev_close(dma);
}

static void dma_done(struct uiommu_dma_req *req)
{
	int *pipe_w = req->priv;
	char c = 1;

	if (write(*pipe_w, &c, 1) != 1)
		abort();
}

/*
 * A fault-capable nested HWPT: the device's miss becomes a page request on the fault fd; the
 * VMM fixes the guest's table and answers SUCCESS, and the DMA completes; INVALID fails it.
 */
TEST_F(vtd_uapi, page_requests_through_the_fault_fd)
{
	struct iommu_fault_alloc fa = { .size = sizeof(fa) };
	uint64_t root = gpage(self), a = gpage(self);
	const uint64_t iova = 0x20000000;
	struct iommu_hwpt_pgfault rec;
	struct iommu_hwpt_page_response resp;
	struct uiommu_dma_dev *dma;
	struct uiommu_dma_req req;
	uint32_t nested;
	int pipefd[2], ffd;
	char got[8], c;

	ASSERT_EQ(0, uiommu_ioctl(self->fd, IOMMU_FAULT_QUEUE_ALLOC, &fa));
	ffd = (int)fa.out_fault_fd;
	fault_id = fa.out_fault_id;
	ASSERT_EQ(0, nested_alloc(self, root, 48, 0, &nested));
	fault_id = 0;
	ASSERT_EQ(0, attach(self, 0, nested));
	dma = uiommu_dma_dev_open_iommufd(self->fd, self->devid[0]);
	ASSERT_TRUE(dma != NULL);
	ASSERT_EQ(0, pipe(pipefd));
	memcpy(self->ram + (a - GUEST_BASE), "paged!", 7);

	for (int round = 0; round < 2; round++) {
		struct pollfd pfd = { .fd = ffd, .events = POLLIN };

		req = (struct uiommu_dma_req){ .op = UIOMMU_DMA_OP_READ, .iova = iova,
					       .buf = got, .len = 7, .complete = dma_done,
					       .priv = &pipefd[1] };
		memset(got, 0, sizeof(got));
		ASSERT_EQ(0, uiommu_dma_submit(dma, &req));
		ASSERT_EQ(1, poll(&pfd, 1, 10000));
		ASSERT_EQ((ssize_t)sizeof(rec), uiommu_event_read(ffd, &rec, sizeof(rec)));
		EXPECT_EQ(iova, rec.addr);
		EXPECT_EQ(self->devid[0], rec.dev_id);
		EXPECT_EQ(IOMMU_PGFAULT_PERM_READ, rec.perm);
		EXPECT_TRUE(rec.flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE);
		if (round == 0)
			fs_map(self, root, iova, a, FS_LEAF); /* the guest handles its fault */
		resp = (struct iommu_hwpt_page_response){
			.cookie = rec.cookie,
			.code = round == 0 ? IOMMUFD_PAGE_RESP_SUCCESS : IOMMUFD_PAGE_RESP_INVALID,
		};
		ASSERT_EQ((ssize_t)sizeof(resp), uiommu_event_write(ffd, &resp, sizeof(resp)));
		ASSERT_EQ(1, read(pipefd[0], &c, 1));
		if (round == 0) {
			EXPECT_EQ(0, req.error);
			EXPECT_STREQ("paged!", got);
			/* Unmapped by the guest; the host invalidates the stale entry for it. */
			*fs_map(self, root, iova, a, FS_LEAF) = 0;
			struct iommu_hwpt_vtd_s1_invalidate inv = { .addr = iova, .npages = 1 };
			uint32_t num = 1;

			ASSERT_EQ(0, invalidate(self, nested, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1,
						&inv, sizeof(inv), &num));
		} else {
			EXPECT_EQ(EFAULT, req.error);
			EXPECT_EQ(0u, req.done);
		}
	}
	uiommu_dma_dev_close(dma);
	close(pipefd[0]);
	close(pipefd[1]);
	uiommu_close(ffd);
}

TEST_HARNESS_MAIN
