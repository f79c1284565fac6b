// SPDX-License-Identifier: MIT
/*
 * The SMMUv3 model through the uAPI only, as a VMM with `arm-smmuv3,accel=on` drives it: a
 * vfio-pci device behind an SMMUv3 instance, GET_HW_INFO, a NEST_PARENT HWPT over an IOAS that
 * maps "guest RAM", a vIOMMU, a vDEVICE (the vSID), a vEVENTQ, the guest's CD and stage-1
 * tables written into that RAM, nested HWPTs from vSTEs, and the device's DMA through both
 * stages; the guest's invalidations through the vIOMMU; the faults as ARM_SMMUV3 vEVENTs.
 *
 * The machine: smmu0 (the model, nesting on), vfio0 = 0000:00:04.0 behind it (StreamID 0x20;
 * "pri": a master that may stall, whose stalled faults become page requests), and smmu1 with
 * nesting, HTTU and substreams off, vfio1 = 0000:00:05.0 behind it.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "smmuv3_guest.h"
#include "topology_file.h"
#include "uiommu/iommufd.h"
#include "uiommu/uiommu.h"
#include "uiommu/vfio_compat.h"

#define GUEST_BASE 0x80000000ull  /* IPA of guest RAM */
#define GUEST_SIZE (4ull << 20)
#define VSID 0x42u
#define PG 4096ull

/* The few format facts a VMM knows (hw-iommus.md B.2, B.4, B.6, B.8, B.9). */
#define STE0_V 1ull
#define STE0_CFG_S1 (5ull << 1)
#define STE0_CFG_BYPASS (4ull << 1)
#define CD0_V (1ull << 31)
#define CD0_S (1ull << 44)      /* stall on fault */
#define STE1_S1STALLD (1ull << 27)
#define CD0_4K_48BIT (16ull | 1ull << 30 /* EPD1 */ | 5ull << 32 /* IPS 48 */ | 1ull << 41 | \
		      1ull << 45 /* R */ | 1ull << 46 /* A */)
#define OP_CFGI_CD 0x05ull
#define OP_TLBI_NH_VA 0x12ull
#define OP_CMD_SYNC 0x46ull

static const char topology[] =
	"{ \"iommus\": [ { \"name\": \"smmu0\", \"driver\": \"smmuv3\" },\n"
	"                { \"name\": \"smmu1\", \"driver\": \"smmuv3\", \"features\":\n"
	"                  { \"nesting\": false, \"httu\": false, \"ssid_bits\": 0 } } ],\n"
	"  \"devices\": [ { \"bdf\": \"0000:00:04.0\", \"iommu\": \"smmu0\", \"pri\": true },\n"
	"                 { \"bdf\": \"0000:00:05.0\", \"iommu\": \"smmu1\" } ] }\n";

struct vm {
	int fd, vfio[2];
	uint32_t devid[2], ioas, parent, viommu, vdev;
	struct smmuv3_guest g;   /* GUEST_SIZE bytes at IPA GUEST_BASE, its stage-1 tables */
	uint64_t cd;             /* an IPA */
};

static int vm_boot(struct vm *vm)
{
	char path[] = "/tmp/uiommu-smmuv3-abi-XXXXXX";

	memset(vm, 0, sizeof(*vm));
	if (topology_file_env(path, topology))
		return -1;
	vm->fd = uiommu_open(O_RDWR);
	for (int i = 0; i < 2; i++) {
		struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = vm->fd };
		char node[64];

		snprintf(node, sizeof(node), "/dev/vfio/devices/vfio%d", i);
		vm->vfio[i] = uiommu_vfio_open(node, O_RDWR);
		if (vm->vfio[i] < 0 || uiommu_ioctl(vm->vfio[i], VFIO_DEVICE_BIND_IOMMUFD, &bind))
			return -1;
		vm->devid[i] = bind.out_devid;
	}
	unlink(path);
	vm->g.ram = mmap(NULL, GUEST_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
			 0);
	if (vm->g.ram == MAP_FAILED)
		return -1;
	vm->g.base = vm->g.next = GUEST_BASE;
	vm->g.size = GUEST_SIZE;
	return vm->fd < 0 ? -1 : 0;
}

static int hwpt_alloc(struct vm *vm, int dev, uint32_t pt, uint32_t flags, uint32_t type,
		      const void *data, uint32_t len, uint32_t *out)
{
	struct iommu_hwpt_alloc cmd = {
		.size = sizeof(cmd), .flags = flags, .dev_id = vm->devid[dev], .pt_id = pt,
		.data_type = type, .data_len = len, .data_uptr = (uintptr_t)data,
	};
	int rc = uiommu_ioctl(vm->fd, IOMMU_HWPT_ALLOC, &cmd);

	*out = cmd.out_hwpt_id;
	return rc;
}

static int nested_alloc(struct vm *vm, uint64_t ste0, uint64_t ste1, uint32_t *out)
{
	struct iommu_hwpt_arm_smmuv3 ste = { .ste = { ste0, ste1 } };

	return hwpt_alloc(vm, 0, vm->viommu, 0, IOMMU_HWPT_DATA_ARM_SMMUV3, &ste, sizeof(ste),
			  out);
}

static int attach(struct vm *vm, int dev, uint32_t pt)
{
	struct vfio_device_attach_iommufd_pt cmd = { .argsz = sizeof(cmd), .pt_id = pt };

	return uiommu_ioctl(vm->vfio[dev], VFIO_DEVICE_ATTACH_IOMMUFD_PT, &cmd);
}

/* The guest's commands to its vIOMMU; *@done gets the entry_num written back. */
static int invalidate(struct vm *vm, uint32_t id, const uint64_t (*cmds)[2], uint32_t n,
		      uint32_t *done)
{
	struct iommu_hwpt_invalidate cmd = {
		.size = sizeof(cmd), .hwpt_id = id, .data_uptr = (uintptr_t)cmds,
		.data_type = IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3, .entry_len = 16,
		.entry_num = n,
	};
	int rc = uiommu_ioctl(vm->fd, IOMMU_HWPT_INVALIDATE, &cmd);

	*done = cmd.entry_num;
	return rc;
}

/* Up to the nesting set-up: IOAS with guest RAM, parent, vIOMMU, vDEVICE, a CD, stage-1 root. */
static int vm_nest(struct vm *vm)
{
	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.user_va = 0, .length = GUEST_SIZE, .iova = GUEST_BASE,
	};
	struct iommu_viommu_alloc va = { .size = sizeof(va), .type = IOMMU_VIOMMU_TYPE_ARM_SMMUV3 };
	struct iommu_vdevice_alloc vd = { .size = sizeof(vd), .virt_id = VSID };

	if (uiommu_ioctl(vm->fd, IOMMU_IOAS_ALLOC, &ioas))
		return -1;
	vm->ioas = ioas.out_ioas_id;
	map.ioas_id = vm->ioas;
	map.user_va = (uintptr_t)vm->g.ram;
	if (uiommu_ioctl(vm->fd, IOMMU_IOAS_MAP, &map) ||
	    hwpt_alloc(vm, 0, vm->ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, 0, NULL, 0, &vm->parent))
		return -1;
	va.dev_id = vm->devid[0];
	va.hwpt_id = vm->parent;
	if (uiommu_ioctl(vm->fd, IOMMU_VIOMMU_ALLOC, &va))
		return -1;
	vm->viommu = va.out_viommu_id;
	vd.viommu_id = vm->viommu;
	vd.dev_id = vm->devid[0];
	if (uiommu_ioctl(vm->fd, IOMMU_VDEVICE_ALLOC, &vd))
		return -1;
	vm->vdev = vd.out_vdevice_id;
	vm->cd = smmuv3_guest_page(&vm->g);
	vm->g.ttb0 = smmuv3_guest_page(&vm->g);
	smmuv3_guest_va(&vm->g, vm->cd)[0] = CD0_4K_48BIT | CD0_V | 7ull << 48;
	smmuv3_guest_va(&vm->g, vm->cd)[1] = vm->g.ttb0;
	return 0;
}

TEST(hw_info_and_allocation_errnos)
{
	struct iommu_hw_info_arm_smmuv3 regs;
	struct iommu_hw_info info = {
		.size = sizeof(info), .data_len = sizeof(regs), .data_uptr = (uintptr_t)&regs,
	};
	struct iommu_viommu_alloc va = { .size = sizeof(va), .type = IOMMU_VIOMMU_TYPE_ARM_SMMUV3 };
	struct vm vm;
	uint32_t id, nested;

	ASSERT_EQ(vm_boot(&vm), 0);
	info.dev_id = vm.devid[0];
	ASSERT_EQ(uiommu_ioctl(vm.fd, IOMMU_GET_HW_INFO, &info), 0);
	ASSERT_EQ(info.out_data_type, IOMMU_HW_INFO_TYPE_ARM_SMMUV3);
	ASSERT_EQ(info.data_len, 40);
	ASSERT_EQ(regs.idr[0] & 3, 3);                    /* S1P, S2P */
	ASSERT_EQ((regs.idr[0] >> 27) & 3, 1);            /* ST_LEVEL as QEMU wants */
	ASSERT_EQ((regs.idr[5] >> 4) & 7, 7);             /* 4K, 16K, 64K */
	ASSERT_EQ(info.out_capabilities & IOMMU_HW_CAP_DIRTY_TRACKING, IOMMU_HW_CAP_DIRTY_TRACKING);
	info.flags = IOMMU_HW_INFO_FLAG_INPUT_TYPE;
	info.in_data_type = IOMMU_HW_INFO_TYPE_INTEL_VTD;
	ASSERT_ERRNO(EOPNOTSUPP, uiommu_ioctl(vm.fd, IOMMU_GET_HW_INFO, &info));
	info.in_data_type = IOMMU_HW_INFO_TYPE_ARM_SMMUV3;
	ASSERT_EQ(uiommu_ioctl(vm.fd, IOMMU_GET_HW_INFO, &info), 0);
	info.dev_id = vm.devid[1];
	ASSERT_EQ(uiommu_ioctl(vm.fd, IOMMU_GET_HW_INFO, &info), 0);
	ASSERT_EQ(regs.idr[0] & 3, 1);                    /* no nesting: S2P only */
	ASSERT_EQ((regs.idr[0] >> 6) & 3, 0);             /* no HTTU */
	ASSERT_EQ(info.out_capabilities & IOMMU_HW_CAP_DIRTY_TRACKING, 0);

	ASSERT_EQ(vm_nest(&vm), 0);
	/* NEST_PARENT must come alone; no NEST_PARENT where nesting is off. */
	ASSERT_ERRNO(EOPNOTSUPP, hwpt_alloc(&vm, 0, vm.ioas, IOMMU_HWPT_ALLOC_NEST_PARENT |
					    IOMMU_HWPT_ALLOC_DIRTY_TRACKING, 0, NULL, 0, &id));
	ASSERT_ERRNO(EOPNOTSUPP, hwpt_alloc(&vm, 1, vm.ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, 0,
					    NULL, 0, &id));
	/* A vIOMMU needs nesting, and a NEST_PARENT of the same instance. */
	va.dev_id = vm.devid[1];
	va.hwpt_id = vm.parent;
	ASSERT_ERRNO(EOPNOTSUPP, uiommu_ioctl(vm.fd, IOMMU_VIOMMU_ALLOC, &va));
	ASSERT_EQ(hwpt_alloc(&vm, 0, vm.ioas, 0, 0, NULL, 0, &id), 0);
	va.dev_id = vm.devid[0];
	va.hwpt_id = id;
	ASSERT_ERRNO(EINVAL, uiommu_ioctl(vm.fd, IOMMU_VIOMMU_ALLOC, &va));
	/* Nested HWPTs come from the vIOMMU only; a bad vSTE is EIO; PASID is EOPNOTSUPP. */
	{
		struct iommu_hwpt_arm_smmuv3 ste = { .ste = { STE0_V | STE0_CFG_S1 | vm.cd } };

		ASSERT_ERRNO(EOPNOTSUPP, hwpt_alloc(&vm, 0, vm.parent, 0, IOMMU_HWPT_DATA_ARM_SMMUV3,
						    &ste, sizeof(ste), &id));
		ASSERT_ERRNO(EOPNOTSUPP, hwpt_alloc(&vm, 0, vm.viommu, IOMMU_HWPT_ALLOC_PASID,
						    IOMMU_HWPT_DATA_ARM_SMMUV3, &ste, sizeof(ste),
						    &id));
		ASSERT_ERRNO(EINVAL, hwpt_alloc(&vm, 0, vm.viommu, 0, IOMMU_HWPT_DATA_ARM_SMMUV3,
						&ste, 8, &id));
		ste.ste[1] = 1ull << 40;
		ASSERT_ERRNO(EIO, hwpt_alloc(&vm, 0, vm.viommu, 0, IOMMU_HWPT_DATA_ARM_SMMUV3, &ste,
					     sizeof(ste), &id));
	}
	ASSERT_EQ(nested_alloc(&vm, STE0_V | STE0_CFG_S1 | vm.cd, 0, &nested), 0);
	ASSERT_EQ(attach(&vm, 0, nested), 0);
	uiommu_close(vm.vfio[0]);
	uiommu_close(vm.vfio[1]);
	uiommu_close(vm.fd);
}

TEST(dma_through_both_stages_faults_and_invalidation)
{
	struct iommu_veventq_alloc eq = {
		.size = sizeof(eq), .type = IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, .veventq_depth = 16,
	};
	struct {
		struct iommufd_vevent_header hdr;
		struct iommu_vevent_arm_smmuv3 evt;
	} rec;
	uint64_t cmds[3][2], *pte, page_a, page_b;
	struct uiommu_dma_dev *dma;
	uint32_t nested, bypass, done;
	char data[64];
	struct vm vm;

	ASSERT_EQ(vm_boot(&vm), 0);
	ASSERT_EQ(vm_nest(&vm), 0);
	eq.viommu_id = vm.viommu;
	ASSERT_EQ(uiommu_ioctl(vm.fd, IOMMU_VEVENTQ_ALLOC, &eq), 0);
	page_a = smmuv3_guest_page(&vm.g);
	page_b = smmuv3_guest_page(&vm.g);
	pte = smmuv3_guest_map(&vm.g, 0x10000, page_a);
	ASSERT_EQ(nested_alloc(&vm, STE0_V | STE0_CFG_S1 | vm.cd, 0, &nested), 0);
	ASSERT_EQ(attach(&vm, 0, nested), 0);
	dma = uiommu_dma_dev_open_iommufd(vm.fd, vm.devid[0]);
	ASSERT_TRUE(dma != NULL);

	/* The device writes IOVA 0x10040: stage 1 -> page_a (an IPA), stage 2 -> guest RAM. */
	memset(data, 0xa5, sizeof(data));
	ASSERT_EQ(uiommu_dma_write(dma, 0, 0x10040, data, sizeof(data), 0), (ssize_t)sizeof(data));
	ASSERT_EQ(memcmp((uint8_t *)smmuv3_guest_va(&vm.g, page_a) + 0x40, data, sizeof(data)), 0);

	/* An unmapped IOVA faults: an F_TRANSLATION vEVENT carrying the vSID and the IOVA. */
	ASSERT_LT(uiommu_dma_read(dma, 0, 0x50000, data, 8, 0), 0);
	ASSERT_EQ(uiommu_event_read(eq.out_veventq_fd, &rec, sizeof(rec)), (ssize_t)sizeof(rec));
	ASSERT_EQ(rec.hdr.flags, 0);
	ASSERT_EQ(rec.evt.evt[0], 0x10ull | (uint64_t)VSID << 32);
	ASSERT_EQ(rec.evt.evt[2], 0x50000);
	ASSERT_EQ((rec.evt.evt[1] >> 35) & 1, 1);  /* a read */

	/* The guest moves the page without telling the SMMU: the TLB still has page_a. */
	*pte = page_b | SMMUV3_GUEST_PTE_PAGE;
	memset(data, 0x3c, sizeof(data));
	ASSERT_EQ(uiommu_dma_write(dma, 0, 0x10000, data, 8, 0), 8);
	ASSERT_EQ(memcmp(smmuv3_guest_va(&vm.g, page_a), data, 8), 0);
	/* Then the guest's TLBI_NH_VA; a CMD_SYNC after it is EIO with entry_num 1. */
	cmds[0][0] = OP_TLBI_NH_VA | 7ull << 48;
	cmds[0][1] = 0x10000;
	cmds[1][0] = OP_CMD_SYNC;
	cmds[1][1] = 0;
	ASSERT_ERRNO(EIO, invalidate(&vm, vm.viommu, (const uint64_t (*)[2])cmds, 2, &done));
	ASSERT_EQ(done, 1);
	/* It was never issued (the kernel drops the unfinished batch). */
	ASSERT_EQ(uiommu_dma_write(dma, 0, 0x10000, data, 8, 0), 8);
	ASSERT_EQ(memcmp(smmuv3_guest_va(&vm.g, page_b), data, 8) == 0, false);
	cmds[0][0] = OP_TLBI_NH_VA | 7ull << 48;
	cmds[0][1] = 0x10000;
	cmds[1][0] = OP_CFGI_CD | (uint64_t)VSID << 32;
	cmds[1][1] = 0;
	ASSERT_EQ(invalidate(&vm, vm.viommu, (const uint64_t (*)[2])cmds, 2, &done), 0);
	ASSERT_EQ(done, 2);
	ASSERT_EQ(uiommu_dma_write(dma, 0, 0x10000, data, 8, 0), 8);
	ASSERT_EQ(memcmp(smmuv3_guest_va(&vm.g, page_b), data, 8), 0);
	/* An unknown vSID is EIO; zero entries EINVAL; the nested HWPT's own ID EOPNOTSUPP. */
	cmds[0][0] = OP_CFGI_CD | (uint64_t)(VSID + 1) << 32;
	ASSERT_ERRNO(EIO, invalidate(&vm, vm.viommu, (const uint64_t (*)[2])cmds, 1, &done));
	ASSERT_EQ(done, 0);
	ASSERT_ERRNO(EINVAL, invalidate(&vm, vm.viommu, (const uint64_t (*)[2])cmds, 0, &done));
	ASSERT_ERRNO(EOPNOTSUPP, invalidate(&vm, nested, (const uint64_t (*)[2])cmds, 1, &done));

	/* A bypass vSTE: stage 2 only, the IOVA is the IPA. */
	ASSERT_EQ(nested_alloc(&vm, STE0_V | STE0_CFG_BYPASS, 0, &bypass), 0);
	ASSERT_EQ(attach(&vm, 0, bypass), 0);
	ASSERT_EQ(uiommu_dma_read(dma, 0, page_b, data, 8, 0), 8);
	ASSERT_EQ(memcmp(smmuv3_guest_va(&vm.g, page_b), data, 8), 0);

	ASSERT_EQ(uiommu_dma_dev_close(dma), 0);
	uiommu_close(eq.out_veventq_fd);
	uiommu_close(vm.vfio[0]);
	uiommu_close(vm.vfio[1]);
	uiommu_close(vm.fd);
}

static void dma_done(struct uiommu_dma_req *req)
{
	int *pipe_w = req->priv;
	char c = 1;

	if (write(*pipe_w, &c, 1) != 1)
		abort();
}

/*
 * A fault-capable nested HWPT (FAULT_ID_VALID) whose CD asks for stalls (CD.S): the device's
 * stage-1 fault is a page request on the fault fd, not a vEVENT; the guest maps the page and
 * answers SUCCESS, the transfer completes; unmapped again (and invalidated), INVALID ends it
 * with EFAULT. A vSTE with S1STALLD makes that CD C_BAD_CD, a vEVENT.
 */
TEST(page_requests_through_the_fault_fd)
{
	struct iommu_veventq_alloc eq = {
		.size = sizeof(eq), .type = IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, .veventq_depth = 16,
	};
	struct iommu_fault_alloc fa = { .size = sizeof(fa) };
	struct iommu_hwpt_arm_smmuv3 ste = { .ste = { 0 } };
	struct iommu_hwpt_alloc ha = {
		.size = sizeof(ha), .flags = IOMMU_HWPT_FAULT_ID_VALID,
		.data_type = IOMMU_HWPT_DATA_ARM_SMMUV3, .data_len = sizeof(ste),
		.data_uptr = (uintptr_t)&ste,
	};
	struct {
		struct iommufd_vevent_header hdr;
		struct iommu_vevent_arm_smmuv3 evt;
	} vrec;
	const uint64_t iova = 0x200000;
	struct iommu_hwpt_page_response resp;
	struct iommu_hwpt_pgfault rec;
	struct uiommu_dma_dev *dma;
	struct uiommu_dma_req req;
	uint64_t page, cmds[1][2];
	uint32_t done, stalld;
	int pipefd[2], ffd;
	char got[8], c;
	struct vm vm;

	ASSERT_EQ(vm_boot(&vm), 0);
	ASSERT_EQ(vm_nest(&vm), 0);
	eq.viommu_id = vm.viommu;
	ASSERT_EQ(uiommu_ioctl(vm.fd, IOMMU_VEVENTQ_ALLOC, &eq), 0);
	ASSERT_EQ(uiommu_ioctl(vm.fd, IOMMU_FAULT_QUEUE_ALLOC, &fa), 0);
	ffd = (int)fa.out_fault_fd;
	smmuv3_guest_va(&vm.g, vm.cd)[0] |= CD0_S;
	page = smmuv3_guest_page(&vm.g);
	memcpy(smmuv3_guest_va(&vm.g, page), "paged!", 7);
	ste.ste[0] = STE0_V | STE0_CFG_S1 | vm.cd;
	ha.dev_id = vm.devid[0];
	ha.pt_id = vm.viommu;
	ha.fault_id = fa.out_fault_id;
	ASSERT_EQ(uiommu_ioctl(vm.fd, IOMMU_HWPT_ALLOC, &ha), 0);
	ASSERT_EQ(attach(&vm, 0, ha.out_hwpt_id), 0);
	dma = uiommu_dma_dev_open_iommufd(vm.fd, vm.devid[0]);
	ASSERT_TRUE(dma != NULL);
	ASSERT_EQ(pipe(pipefd), 0);

	for (int round = 0; round < 2; round++) {
		struct pollfd pfd = { .fd = ffd, .events = POLLIN };
		struct pollfd vfd = { .fd = (int)eq.out_veventq_fd, .events = POLLIN };

		req = (struct uiommu_dma_req){ .op = UIOMMU_DMA_OP_READ, .iova = iova, .buf = got,
					       .len = 7, .complete = dma_done,
					       .priv = &pipefd[1] };
		memset(got, 0, sizeof(got));
		ASSERT_EQ(uiommu_dma_submit(dma, &req), 0);
		ASSERT_EQ(poll(&pfd, 1, 10000), 1);
		ASSERT_EQ(uiommu_event_read(ffd, &rec, sizeof(rec)), (ssize_t)sizeof(rec));
		EXPECT_EQ(rec.addr, iova);
		EXPECT_EQ(rec.dev_id, vm.devid[0]);
		EXPECT_EQ(rec.perm, IOMMU_PGFAULT_PERM_READ);
		EXPECT_TRUE(rec.flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE);
		/* A stalled fault is the host's: the guest's vEVENTQ has nothing. */
		EXPECT_EQ(poll(&vfd, 1, 0), 0);
		if (round == 0)
			smmuv3_guest_map(&vm.g, iova, page); /* the guest handles its fault */
		resp = (struct iommu_hwpt_page_response){
			.cookie = rec.cookie,
			.code = round == 0 ? IOMMUFD_PAGE_RESP_SUCCESS : IOMMUFD_PAGE_RESP_INVALID,
		};
		ASSERT_EQ(uiommu_event_write(ffd, &resp, sizeof(resp)), (ssize_t)sizeof(resp));
		ASSERT_EQ(read(pipefd[0], &c, 1), 1);
		if (round == 0) {
			EXPECT_EQ(req.error, 0);
			EXPECT_STREQ(got, "paged!");
			/* The guest unmaps the page and invalidates it. */
			*smmuv3_guest_map(&vm.g, iova, page) = 0;
			cmds[0][0] = OP_TLBI_NH_VA | 7ull << 48;
			cmds[0][1] = iova;
			ASSERT_EQ(invalidate(&vm, vm.viommu, (const uint64_t (*)[2])cmds, 1, &done),
				  0);
		} else {
			EXPECT_EQ(req.error, EFAULT);
			EXPECT_EQ(req.done, 0u);
		}
	}

	/* The guest's STE disables stage-1 stalls: its CD with S=1 is C_BAD_CD. */
	ASSERT_EQ(nested_alloc(&vm, STE0_V | STE0_CFG_S1 | vm.cd, STE1_S1STALLD, &stalld), 0);
	ASSERT_EQ(attach(&vm, 0, stalld), 0);
	ASSERT_LT(uiommu_dma_read(dma, 0, iova, got, 8, 0), 0);
	ASSERT_EQ(uiommu_event_read(eq.out_veventq_fd, &vrec, sizeof(vrec)),
		  (ssize_t)sizeof(vrec));
	ASSERT_EQ(vrec.evt.evt[0], 0x0aull | (uint64_t)VSID << 32);
	ASSERT_EQ(uiommu_dma_dev_close(dma), 0);
	close(pipefd[0]);
	close(pipefd[1]);
	uiommu_close(ffd);
	uiommu_close(vm.vfio[0]);
	uiommu_close(vm.vfio[1]);
	uiommu_close(vm.fd);
}

TEST(paging_domain_dirty_tracking_and_read_only)
{
	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.length = 16 * PG, .iova = 1ull << 30,
	};
	struct iommu_hwpt_set_dirty_tracking track = {
		.size = sizeof(track), .flags = IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
	};
	uint64_t bits = 0;
	struct iommu_hwpt_get_dirty_bitmap get = {
		.size = sizeof(get), .iova = 1ull << 30, .length = 16 * PG, .page_size = PG,
		.data = (uintptr_t)&bits,
	};
	struct uiommu_dma_dev *dma;
	uint32_t hwpt;
	char data[8] = "dirty!!";
	struct vm vm;

	ASSERT_EQ(vm_boot(&vm), 0);
	ASSERT_EQ(uiommu_ioctl(vm.fd, IOMMU_IOAS_ALLOC, &ioas), 0);
	map.ioas_id = ioas.out_ioas_id;
	map.user_va = (uintptr_t)vm.g.ram;
	ASSERT_EQ(uiommu_ioctl(vm.fd, IOMMU_IOAS_MAP, &map), 0);
	/* Read-only pages 16..31: the stage-2 leaf has no write permission. */
	map.flags &= ~IOMMU_IOAS_MAP_WRITEABLE;
	map.iova += 16 * PG;
	map.user_va += 16 * PG;
	ASSERT_EQ(uiommu_ioctl(vm.fd, IOMMU_IOAS_MAP, &map), 0);
	ASSERT_EQ(hwpt_alloc(&vm, 0, map.ioas_id, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, 0, NULL, 0,
			     &hwpt), 0);
	/* Without HTTU: no dirty tracking. */
	ASSERT_ERRNO(EOPNOTSUPP, hwpt_alloc(&vm, 1, map.ioas_id, IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
					    0, NULL, 0, &get.hwpt_id));
	ASSERT_EQ(attach(&vm, 0, hwpt), 0);
	track.hwpt_id = hwpt;
	get.hwpt_id = hwpt;
	ASSERT_EQ(uiommu_ioctl(vm.fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &track), 0);
	ASSERT_EQ(uiommu_ioctl(vm.fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &get), 0);
	bits = 0;
	ASSERT_EQ(uiommu_ioctl(vm.fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &get), 0);
	ASSERT_EQ(bits, 0);
	dma = uiommu_dma_dev_open_iommufd(vm.fd, vm.devid[0]);
	ASSERT_TRUE(dma != NULL);
	/* A read dirties nothing; writes to pages 3 and 9 dirty exactly those (DBM). */
	ASSERT_EQ(uiommu_dma_read(dma, 0, (1ull << 30) + 5 * PG, data, 8, 0), 8);
	ASSERT_EQ(uiommu_dma_write(dma, 0, (1ull << 30) + 3 * PG + 8, data, 8, 0), 8);
	ASSERT_EQ(uiommu_dma_write(dma, 0, (1ull << 30) + 9 * PG, data, 8, 0), 8);
	ASSERT_EQ(memcmp(vm.g.ram + 3 * PG + 8, data, 8), 0);
	ASSERT_EQ(uiommu_ioctl(vm.fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &get), 0);
	ASSERT_EQ(bits, (1ull << 3) | (1ull << 9));
	/* The read-only half: reads pass, writes fault. */
	ASSERT_EQ(uiommu_dma_read(dma, 0, (1ull << 30) + 20 * PG, data, 8, 0), 8);
	ASSERT_LT(uiommu_dma_write(dma, 0, (1ull << 30) + 20 * PG, data, 8, 0), 0);
	ASSERT_EQ(uiommu_dma_dev_close(dma), 0);
	uiommu_close(vm.vfio[0]);
	uiommu_close(vm.vfio[1]);
	uiommu_close(vm.fd);
}

/* A translating vSTE needs the device's vDEVICE (ENOENT); abort and bypass do not (GBPA). */
TEST(attach_without_vdevice)
{
	struct iommu_destroy destroy = { .size = sizeof(destroy) };
	uint32_t s1, abort_hwpt, bypass;
	struct vm vm;

	ASSERT_EQ(vm_boot(&vm), 0);
	ASSERT_EQ(vm_nest(&vm), 0);
	ASSERT_EQ(nested_alloc(&vm, STE0_V | STE0_CFG_S1 | vm.cd, 0, &s1), 0);
	ASSERT_EQ(nested_alloc(&vm, STE0_V, 0, &abort_hwpt), 0);
	ASSERT_EQ(nested_alloc(&vm, STE0_V | STE0_CFG_BYPASS, 0, &bypass), 0);
	destroy.id = vm.vdev;
	ASSERT_EQ(uiommu_ioctl(vm.fd, IOMMU_DESTROY, &destroy), 0);
	ASSERT_ERRNO(ENOENT, attach(&vm, 0, s1));
	ASSERT_EQ(attach(&vm, 0, abort_hwpt), 0);
	ASSERT_EQ(attach(&vm, 0, bypass), 0);
	uiommu_close(vm.vfio[0]);
	uiommu_close(vm.vfio[1]);
	uiommu_close(vm.fd);
}

static void vm_shutdown(struct vm *vm)
{
	uiommu_close(vm->vfio[0]);
	uiommu_close(vm->vfio[1]);
	uiommu_close(vm->fd);
	munmap(vm->g.ram, GUEST_SIZE);
}

/* The whole nesting sequence, a DMA and an invalidation: 0 or the first errno. */
static int vm_nest_and_use(struct vm *vm)
{
	uint64_t cmds[1][2] = { { OP_CFGI_CD | (uint64_t)VSID << 32, 0 } };
	struct iommu_veventq_alloc eq = {
		.size = sizeof(eq), .type = IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, .veventq_depth = 4,
	};
	struct uiommu_dma_dev *dma;
	uint32_t nested, done;
	char byte = 1;

	if (vm_nest(vm))
		return errno;
	eq.viommu_id = vm->viommu;
	if (uiommu_ioctl(vm->fd, IOMMU_VEVENTQ_ALLOC, &eq))
		return errno;
	uiommu_close(eq.out_veventq_fd);
	smmuv3_guest_map(&vm->g, 0x10000, smmuv3_guest_page(&vm->g));
	if (nested_alloc(vm, STE0_V | STE0_CFG_S1 | vm->cd, 0, &nested) || attach(vm, 0, nested) ||
	    invalidate(vm, vm->viommu, (const uint64_t (*)[2])cmds, 1, &done))
		return errno;
	dma = uiommu_dma_dev_open_iommufd(vm->fd, vm->devid[0]);
	if (!dma)
		return errno;
	if (uiommu_dma_write(dma, 0, 0x10000, &byte, 1, 0) != 1) {
		uiommu_dma_dev_close(dma);
		return EIO;
	}
	return uiommu_dma_dev_close(dma) ? errno : 0;
}

/*
 * Fail each fallible step of the sequence in turn (the driver's vIOMMU, vDEVICE, nested domain
 * and invalidation batch among them): each failure is an errno of its step and, once
 * everything is closed, leaves no allocation and no object behind.
 */
TEST(fail_nth_nesting)
{
	struct uiommu_stats base, now;
	unsigned long nth;
	struct vm vm;
	int rc;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	ASSERT_EQ(vm_boot(&vm), 0);
	ASSERT_EQ(vm_nest_and_use(&vm), 0);
	vm_shutdown(&vm);
	ASSERT_EQ(uiommu_stats_get(&base), 0);
	for (nth = 1; nth < 400; nth++) {
		ASSERT_EQ(vm_boot(&vm), 0);
		uiommu_fail_nth_arm(nth);
		rc = vm_nest_and_use(&vm);
		if (uiommu_fail_nth_disarm()) {
			ASSERT_EQ(rc, 0);
			vm_shutdown(&vm);
			break;
		}
		/* ENOMEM, or what a failed internal step shows as: a user copy (EFAULT), a lookup
		 * that found nothing (ENOENT), the vEVENTQ's fd (EMFILE). */
		if (rc != ENOMEM && rc != ENOENT && rc != EFAULT && rc != EMFILE)
			printf("# nth %lu: errno %d\n", nth, rc);
		ASSERT_TRUE(rc == ENOMEM || rc == ENOENT || rc == EFAULT || rc == EMFILE);
		vm_shutdown(&vm);
		ASSERT_EQ(uiommu_stats_get(&now), 0);
		if (now.allocations != base.allocations)
			printf("# nth %lu: rc %d leaks %ld\n", nth, rc, now.allocations - base.allocations);
		ASSERT_EQ(now.allocations, base.allocations);
		ASSERT_EQ(now.objects, base.objects);
	}
	printf("# %lu fallible steps, each failed once\n", nth - 1);
	ASSERT_GT(nth, 10);
	ASSERT_LT(nth, 400);
}

TEST_HARNESS_MAIN
