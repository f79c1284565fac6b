// SPDX-License-Identifier: MIT
/*
 * dma_emulator_procs: a device emulator and a VMM in two processes, one iommufd context
 * (docs/processes.md).
 *
 * The emulator opens /dev/iommu and serves that context; the machine (its devices and their
 * DMA engine) lives in its process. It shares guest memory with the VMM the way vhost-user
 * back ends do: a memfd both map shared. The VMM is this program again, started with fork and
 * exec and handed the iommufd and the memfd across the exec (it adopts the iommufd with
 * uiommu_fd_adopt(), as the preload layer does for a program under uiommu-run). The VMM, in
 * its own process, makes the IO address space, a device
 * (the kernel selftest's mock device, attached to a domain of that IOAS) and maps its guest
 * memory, with the plain ioctls of <linux/iommufd.h>: its calls run in the emulator's process
 * against the VMM's own memory. It tells the emulator the device's ID and the IOVA; the
 * emulator's DMA engine (uiommu_dma_dev_open_iommufd(), uiommu_dma_write()) writes through the
 * domain, and the bytes land in the VMM's memory, which the VMM checks. Then the VMM unmaps,
 * and the same DMA faults (EFAULT): the translation went with the mapping.
 *
 * Last, page faults answered across processes: the VMM makes a fault queue (its fd is the
 * VMM's, served by the emulator's process) and a page table over its IOAS whose faults go
 * there, and moves the device onto it. The emulator's DMA to the IOVA the VMM unmapped now
 * raises a page request and waits; the VMM sees its fault fd readable (poll()), reads the
 * fault, maps its guest memory again and answers SUCCESS through the fd; the DMA resumes and
 * its bytes land in the VMM's memory.
 *
 * The exit status is 0 only if everything behaved as described.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uiommu/iommufd.h>
#include <uiommu/iommufd_test.h>
#include <uiommu/uiommu.h>

#define GUEST_LEN (64 * 1024)
#define IOVA (1u << 24) /* the selftest mock's aperture starts at 16 MiB */

static int fail(const char *what)
{
	fprintf(stderr, "dma_emulator_procs: %s: %s\n", what, strerror(errno));
	return 1;
}

/*
 * The VMM's page faults: a fault queue and a page table over the IOAS whose faults go there,
 * the device moved onto it; the emulator's next DMA faults, and the VMM answers through its
 * fault fd after mapping @map (its guest memory) again.
 */
static int vmm_serve_faults(int iommufd, const struct iommu_test_cmd *mock,
			    struct iommu_ioas_map *map, const uint8_t *guest, int to_emu,
			    int from_emu)
{
	struct iommu_fault_alloc fault = { .size = sizeof(fault) };
	struct iommu_hwpt_alloc hwpt = { .size = sizeof(hwpt), .flags = IOMMU_HWPT_FAULT_ID_VALID };
	struct iommu_test_cmd replace = { .size = sizeof(replace),
					  .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE };
	struct iommu_hwpt_page_response resp = { .code = IOMMUFD_PAGE_RESP_SUCCESS };
	struct iommu_hwpt_pgfault rec;
	struct pollfd pfd = { .events = POLLIN };
	uint32_t dev_id = mock->mock_domain.out_idev_id;
	char c;

	if (uiommu_ioctl(iommufd, IOMMU_FAULT_QUEUE_ALLOC, &fault))
		return fail("IOMMU_FAULT_QUEUE_ALLOC");
	hwpt.dev_id = dev_id;
	hwpt.pt_id = map->ioas_id;
	hwpt.fault_id = fault.out_fault_id;
	if (uiommu_ioctl(iommufd, IOMMU_HWPT_ALLOC, &hwpt))
		return fail("IOMMU_HWPT_ALLOC with a fault queue");
	replace.id = mock->mock_domain.out_stdev_id;
	replace.mock_domain_replace.pt_id = hwpt.out_hwpt_id;
	if (uiommu_ioctl(iommufd, IOMMU_TEST_CMD, &replace))
		return fail("IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE");
	printf("vmm: fault queue %u (our fd %u), page table %u for the device\n",
	       fault.out_fault_id, fault.out_fault_fd, hwpt.out_hwpt_id);
	if (write(to_emu, &dev_id, sizeof(dev_id)) != sizeof(dev_id))
		return fail("talking to the emulator");
	/* The emulator's DMA waits for our answer: the fault fd becomes readable here. */
	pfd.fd = (int)fault.out_fault_fd;
	if (poll(&pfd, 1, 5000) != 1 || !(pfd.revents & POLLIN))
		return fail("poll on the fault fd (no fault within 5 s)");
	if (uiommu_event_read(pfd.fd, &rec, sizeof(rec)) != (ssize_t)sizeof(rec))
		return fail("read of the fault fd");
	printf("vmm: page fault at IOVA 0x%llx (%s), cookie %u\n", (unsigned long long)rec.addr,
	       rec.perm & IOMMU_PGFAULT_PERM_WRITE ? "write" : "read", rec.cookie);
	if ((rec.addr & ~0xfffull) != IOVA + 4096)
		return fail("the fault's IOVA");
	if (uiommu_ioctl(iommufd, IOMMU_IOAS_MAP, map))
		return fail("IOMMU_IOAS_MAP again");
	resp.cookie = rec.cookie;
	if (uiommu_event_write(pfd.fd, &resp, sizeof(resp)) != (ssize_t)sizeof(resp))
		return fail("write of the page response");
	printf("vmm: mapped the guest memory again and answered SUCCESS\n");
	if (read(from_emu, &c, 1) != 1)
		return fail("talking to the emulator");
	for (size_t i = 0; i < 256; i++)
		if (guest[4096 + i] != (uint8_t)~i)
			return fail("the resumed DMA's bytes in guest memory");
	printf("vmm: the resumed DMA's bytes are in guest memory\n");
	return 0;
}

/* The VMM: sets up the device's IOAS in the emulator's context, maps its guest memory. */
static int vmm_main(int iommufd, int mfd, int to_emu, int from_emu)
{
	uint8_t *guest = mmap(NULL, GUEST_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct iommu_test_cmd mock = { .size = sizeof(mock), .op = IOMMU_TEST_OP_MOCK_DOMAIN };
	struct iommu_ioas_map map = {
		.size = sizeof(map), .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
					    IOMMU_IOAS_MAP_WRITEABLE,
		.length = GUEST_LEN, .iova = IOVA,
	};
	struct iommu_ioas_unmap unmap = { .size = sizeof(unmap), .iova = IOVA,
					  .length = GUEST_LEN };
	uint32_t dev_id;
	char c;
	int rc;

	if (guest == MAP_FAILED || !uiommu_fd_adopt(iommufd))
		return fail("the VMM's guest memory and iommufd");
	map.user_va = (uintptr_t)guest;
	if (uiommu_ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc))
		return fail("IOMMU_IOAS_ALLOC");
	mock.id = alloc.out_ioas_id;
	if (uiommu_ioctl(iommufd, IOMMU_TEST_CMD, &mock))
		return fail("IOMMU_TEST_OP_MOCK_DOMAIN");
	map.ioas_id = alloc.out_ioas_id;
	if (uiommu_ioctl(iommufd, IOMMU_IOAS_MAP, &map))
		return fail("IOMMU_IOAS_MAP");
	dev_id = mock.mock_domain.out_idev_id;
	if (write(to_emu, &dev_id, sizeof(dev_id)) != sizeof(dev_id) || read(from_emu, &c, 1) != 1)
		return fail("talking to the emulator");
	/* The device's DMA is in our memory now. */
	for (size_t i = 0; i < 256; i++)
		if (guest[4096 + i] != (uint8_t)i)
			return fail("the DMA's bytes in guest memory");
	printf("vmm: the device's 256 bytes are in guest memory at IOVA 0x%x\n", IOVA + 4096);
	unmap.ioas_id = alloc.out_ioas_id;
	if (uiommu_ioctl(iommufd, IOMMU_IOAS_UNMAP, &unmap))
		return fail("IOMMU_IOAS_UNMAP");
	if (write(to_emu, &dev_id, sizeof(dev_id)) != sizeof(dev_id) || read(from_emu, &c, 1) != 1)
		return fail("talking to the emulator");
	rc = vmm_serve_faults(iommufd, &mock, &map, guest, to_emu, from_emu);
	fflush(stdout);
	return rc;
}

int main(int argc, char **argv)
{
	int iommufd, to_emu[2], from_emu[2], status;
	uint8_t *guest, data[256];
	struct uiommu_dma_dev *dev;
	uint32_t dev_id;
	pid_t pid;
	char a[4][16];
	int mfd;

	if (argc == 6 && !strcmp(argv[1], "--vmm"))
		return vmm_main(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
	iommufd = uiommu_open(O_RDWR);
	if (iommufd < 0)
		return fail("uiommu_open");
	/* Guest memory, shared between the VMM and the emulator: a memfd, as vhost-user's. */
	mfd = memfd_create("guest", 0);
	if (mfd < 0 || ftruncate(mfd, GUEST_LEN))
		return fail("memfd");
	guest = mmap(NULL, GUEST_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (guest == MAP_FAILED || pipe(to_emu) || pipe(from_emu))
		return fail("setup");
	snprintf(a[0], sizeof(a[0]), "%d", iommufd);
	snprintf(a[1], sizeof(a[1]), "%d", mfd);
	snprintf(a[2], sizeof(a[2]), "%d", to_emu[1]);
	snprintf(a[3], sizeof(a[3]), "%d", from_emu[0]);
	pid = fork();
	if (pid < 0)
		return fail("fork");
	if (pid == 0) {
		execl("/proc/self/exe", argv[0], "--vmm", a[0], a[1], a[2], a[3], (char *)NULL);
		_exit(127);
	}
	/* The VMM's ends are its own: if it dies, our reads see EOF instead of waiting forever. */
	close(to_emu[1]);
	close(from_emu[0]);

	/* The emulator: wait for the device, DMA into the VMM's guest memory. */
	if (read(to_emu[0], &dev_id, sizeof(dev_id)) != sizeof(dev_id))
		return fail("the VMM's device ID");
	dev = uiommu_dma_dev_open_iommufd(iommufd, dev_id);
	if (!dev)
		return fail("uiommu_dma_dev_open_iommufd");
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)i;
	if (uiommu_dma_write(dev, 0, IOVA + 4096, data, sizeof(data), UIOMMU_DMA_NO_PRI) !=
	    (ssize_t)sizeof(data))
		return fail("uiommu_dma_write");
	printf("emulator: wrote 256 bytes at IOVA 0x%x\n", IOVA + 4096);
	fflush(stdout);
	if (write(from_emu[1], "", 1) != 1 || read(to_emu[0], &dev_id, sizeof(dev_id)) != 4)
		return fail("talking to the VMM");
	/* The VMM unmapped: the same DMA has no translation any more. */
	if (uiommu_dma_write(dev, 0, IOVA + 4096, data, sizeof(data), UIOMMU_DMA_NO_PRI) != -1 ||
	    errno != EFAULT)
		return fail("the DMA after the unmap (want EFAULT)");
	printf("emulator: after the VMM's unmap the DMA faults (EFAULT)\n");
	if (write(from_emu[1], "", 1) != 1 || read(to_emu[0], &dev_id, sizeof(dev_id)) != 4)
		return fail("talking to the VMM");
	/* With PRI: the DMA raises a page request, which the VMM answers from its process. */
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)~i;
	if (uiommu_dma_write(dev, 0, IOVA + 4096, data, sizeof(data), 0) != (ssize_t)sizeof(data))
		return fail("uiommu_dma_write with a page request");
	printf("emulator: the page request was answered; wrote 256 bytes at IOVA 0x%x\n",
	       IOVA + 4096);
	fflush(stdout);
	if (write(from_emu[1], "", 1) != 1 || waitpid(pid, &status, 0) != pid)
		return fail("waiting for the VMM");
	uiommu_dma_dev_close(dev);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		return fail("the VMM failed");
	uiommu_close(iommufd);
	printf("dma_emulator_procs: every step behaved as described\n");
	return 0;
}
