// SPDX-License-Identifier: MIT
/*
 * dma_emulator: a device emulator and a VMM in one process, through libuiommu.
 *
 * The VMM side is an ordinary iommufd client: it makes an IO address space, a device (the
 * kernel selftest's mock device), a fault queue and a page table whose I/O page faults go to
 * that queue, and attaches the device to it, all with the ioctls of <linux/iommufd.h>. Then it
 * serves the fault queue's fd: poll, read the 40-byte fault records, decide, write the 8-byte
 * response. That is what a VMM does for a guest whose device uses PRI.
 *
 * The device side is a device emulator thread using libuiommu's DMA engine
 * (uiommu_dma_dev_open_iommufd(), uiommu_dma_write()): its DMA is translated by the page table,
 * and an access to an IOVA with nothing mapped becomes a page request that waits for the VMM's
 * answer. Three rounds:
 *   1. the device writes to an IOVA nobody mapped; the VMM maps a buffer there and answers
 *      SUCCESS; the DMA resumes and the bytes land in the VMM's buffer;
 *   2. the device reads an IOVA the VMM refuses to back: INVALID, and the DMA fails EFAULT;
 *   3. the device writes to a page the VMM mapped read-only: that too is a page request (for
 *      write permission, as a PRI device sends for a copy-on-write page); the VMM refuses it,
 *      and the page keeps every byte.
 *
 * Every step checks its result; the exit status is 0 only if everything behaved as described.
 * Without the preload layer (this program links libuiommu), the fds are served by
 * uiommu_ioctl(), uiommu_event_read() and uiommu_event_write(); poll() works on the fault fd
 * as it is, since it is a real fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <uiommu/iommufd.h>
#include <uiommu/iommufd_test.h>
#include <uiommu/uiommu.h>

#define IOVA_DATA UINT64_C(0x4000000)  /* 64 MiB: inside the mock's aperture [16 MiB, 2 GiB) */
#define IOVA_REFUSED UINT64_C(0x5000000)
#define IOVA_RO UINT64_C(0x6000000)

static const char message[] = "hello from the device";

static void fail(const char *what)
{
	fprintf(stderr, "dma_emulator: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "dma_emulator: unexpected: %s\n", what);
		exit(1);
	}
}

static void ioc(int fd, unsigned long req, void *arg, const char *what)
{
	if (uiommu_ioctl(fd, req, arg))
		fail(what);
}

/* ---- the device emulator ------------------------------------------------------------------ */

struct device_job {
	struct uiommu_dma_dev *dev;
	int op;               /* UIOMMU_DMA_OP_READ or _WRITE */
	uint64_t iova;
	char buf[64];
	size_t len;
	ssize_t ret;
	int err;
};

static void *device_thread(void *arg)
{
	struct device_job *job = arg;

	if (job->op == UIOMMU_DMA_OP_WRITE)
		job->ret = uiommu_dma_write(job->dev, 0, job->iova, job->buf, job->len, 0);
	else
		job->ret = uiommu_dma_read(job->dev, 0, job->iova, job->buf, job->len, 0);
	job->err = job->ret < 0 ? errno : 0;
	return NULL;
}

/* ---- the VMM ------------------------------------------------------------------------------- */

struct vmm {
	int fd;                 /* the iommufd */
	uint32_t ioas, stdev, idev, fault_id, hwpt;
	int fault_fd;
};

/* Waits for one fault and reads it (one record: the mock device sends one-page requests). */
static struct iommu_hwpt_pgfault vmm_wait_fault(struct vmm *v)
{
	struct iommu_hwpt_pgfault rec;
	struct pollfd pfd = { .fd = v->fault_fd, .events = POLLIN };
	ssize_t n;

	if (poll(&pfd, 1, 5000) != 1)
		fail("poll on the fault fd (no fault within 5 s)");
	n = uiommu_event_read(v->fault_fd, &rec, sizeof(rec));
	if (n != (ssize_t)sizeof(rec))
		fail("read of the fault fd");
	printf("  VMM: fault from device %u: addr 0x%" PRIx64 ", %s%s, grpid %u, cookie %u%s\n",
	       rec.dev_id, (uint64_t)rec.addr,
	       rec.perm & IOMMU_PGFAULT_PERM_READ ? "read" : "",
	       rec.perm & IOMMU_PGFAULT_PERM_WRITE ? "write" : "", rec.grpid, rec.cookie,
	       rec.flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE ? ", last page" : "");
	return rec;
}

static void vmm_respond(struct vmm *v, uint32_t cookie, uint32_t code)
{
	struct iommu_hwpt_page_response resp = { .cookie = cookie, .code = code };

	if (uiommu_event_write(v->fault_fd, &resp, sizeof(resp)) != (ssize_t)sizeof(resp))
		fail("write of the page response");
	printf("  VMM: answered cookie %u with %s\n", cookie,
	       code == IOMMUFD_PAGE_RESP_SUCCESS ? "SUCCESS" : "INVALID");
}

static void vmm_map(struct vmm *v, void *buf, uint64_t iova, uint64_t len, uint32_t prot)
{
	struct iommu_ioas_map map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | prot,
		.ioas_id = v->ioas,
		.user_va = (uintptr_t)buf,
		.length = len,
		.iova = iova,
	};

	ioc(v->fd, IOMMU_IOAS_MAP, &map, "IOMMU_IOAS_MAP");
}

static void vmm_setup(struct vmm *v)
{
	struct iommu_ioas_alloc ioas = { .size = sizeof(ioas) };
	struct iommu_test_cmd mock = { .size = sizeof(mock), .op = IOMMU_TEST_OP_MOCK_DOMAIN };
	struct iommu_fault_alloc fault = { .size = sizeof(fault) };
	struct iommu_hwpt_alloc hwpt = { .size = sizeof(hwpt) };
	struct iommu_test_cmd replace = { .size = sizeof(replace),
					  .op = IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE };

	v->fd = uiommu_open(O_RDWR | O_CLOEXEC);
	if (v->fd < 0)
		fail("open /dev/iommu");
	ioc(v->fd, IOMMU_IOAS_ALLOC, &ioas, "IOMMU_IOAS_ALLOC");
	v->ioas = ioas.out_ioas_id;

	/* A mock device, bound to this iommufd and attached to the IOAS (an automatic HWPT). */
	mock.id = v->ioas;
	ioc(v->fd, IOMMU_TEST_CMD, &mock, "IOMMU_TEST_OP_MOCK_DOMAIN");
	v->stdev = mock.mock_domain.out_stdev_id;
	v->idev = mock.mock_domain.out_idev_id;

	/* The fault queue, and a page table over the IOAS whose faults go there. */
	ioc(v->fd, IOMMU_FAULT_QUEUE_ALLOC, &fault, "IOMMU_FAULT_QUEUE_ALLOC");
	v->fault_id = fault.out_fault_id;
	v->fault_fd = (int)fault.out_fault_fd;
	hwpt.flags = IOMMU_HWPT_FAULT_ID_VALID;
	hwpt.dev_id = v->idev;
	hwpt.pt_id = v->ioas;
	hwpt.fault_id = v->fault_id;
	ioc(v->fd, IOMMU_HWPT_ALLOC, &hwpt, "IOMMU_HWPT_ALLOC with a fault queue");
	v->hwpt = hwpt.out_hwpt_id;

	/* The device moves to the fault-capable page table. */
	replace.id = v->stdev;
	replace.mock_domain_replace.pt_id = v->hwpt;
	ioc(v->fd, IOMMU_TEST_CMD, &replace, "IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE");
	printf("VMM: iommufd %d, IOAS %u, device %u, fault queue %u (fd %d), page table %u\n",
	       v->fd, v->ioas, v->idev, v->fault_id, v->fault_fd, v->hwpt);
}

int main(void)
{
	struct uiommu_dma_dev *dev;
	struct uiommu_dma_fault flog[4];
	struct iommu_hwpt_pgfault rec;
	struct device_job job;
	struct vmm v;
	pthread_t t;
	long page = sysconf(_SC_PAGESIZE);
	char *buf, *ro;

	setvbuf(stdout, NULL, _IOLBF, 0);
	vmm_setup(&v);
	buf = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ro = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED || ro == MAP_FAILED)
		fail("mmap");
	memset(buf, 0, (size_t)page);
	strcpy(ro, "the VMM's read-only page");

	dev = uiommu_dma_dev_open_iommufd(v.fd, v.idev);
	if (!dev)
		fail("uiommu_dma_dev_open_iommufd");
	printf("device: DMA engine open on device %u\n", v.idev);

	/* 1. A write to an IOVA nobody mapped: a page request; the VMM backs it; DMA resumes. */
	printf("\n1. the device writes %zu bytes at IOVA 0x%" PRIx64 ", where nothing is mapped\n",
	       sizeof(message), IOVA_DATA);
	memset(&job, 0, sizeof(job));
	job = (struct device_job){ .dev = dev, .op = UIOMMU_DMA_OP_WRITE, .iova = IOVA_DATA + 0x40,
				   .len = sizeof(message) };
	memcpy(job.buf, message, sizeof(message));
	if (pthread_create(&t, NULL, device_thread, &job))
		fail("pthread_create");
	rec = vmm_wait_fault(&v);
	check(rec.addr == ((IOVA_DATA + 0x40) & ~(uint64_t)0x7ff) || rec.addr == IOVA_DATA + 0x40,
	      "the fault names the IOVA the device wrote to");
	check(rec.perm & IOMMU_PGFAULT_PERM_WRITE, "the fault asks for write permission");
	vmm_map(&v, buf, IOVA_DATA, (uint64_t)page, IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE);
	printf("  VMM: mapped a page of its memory at IOVA 0x%" PRIx64 "\n", IOVA_DATA);
	vmm_respond(&v, rec.cookie, IOMMUFD_PAGE_RESP_SUCCESS);
	pthread_join(t, NULL);
	check(job.ret == (ssize_t)sizeof(message), "the DMA completed after the answer");
	check(!memcmp(buf + 0x40, message, sizeof(message)), "the bytes landed in the VMM's page");
	printf("  device: DMA done; the VMM's page now says \"%s\"\n", buf + 0x40);

	/* 2. A read the VMM refuses: INVALID, the DMA fails. */
	printf("\n2. the device reads IOVA 0x%" PRIx64 ", which the VMM will not back\n",
	       IOVA_REFUSED);
	job = (struct device_job){ .dev = dev, .op = UIOMMU_DMA_OP_READ, .iova = IOVA_REFUSED,
				   .len = 16 };
	if (pthread_create(&t, NULL, device_thread, &job))
		fail("pthread_create");
	rec = vmm_wait_fault(&v);
	check(rec.perm & IOMMU_PGFAULT_PERM_READ, "the fault asks for read permission");
	vmm_respond(&v, rec.cookie, IOMMUFD_PAGE_RESP_INVALID);
	pthread_join(t, NULL);
	check(job.ret == -1 && job.err == EFAULT, "the refused DMA fails with EFAULT");
	printf("  device: DMA failed: %s\n", strerror(job.err));

	/* 3. A write to a read-only mapping: a request for write permission, refused. */
	printf("\n3. the device writes to a page the VMM mapped read-only\n");
	vmm_map(&v, ro, IOVA_RO, (uint64_t)page, IOMMU_IOAS_MAP_READABLE);
	job = (struct device_job){ .dev = dev, .op = UIOMMU_DMA_OP_WRITE, .iova = IOVA_RO,
				   .len = 8 };
	memcpy(job.buf, "scribble", 8);
	if (pthread_create(&t, NULL, device_thread, &job))
		fail("pthread_create");
	rec = vmm_wait_fault(&v);
	check(rec.perm & IOMMU_PGFAULT_PERM_WRITE, "the fault asks for write permission");
	vmm_respond(&v, rec.cookie, IOMMUFD_PAGE_RESP_INVALID);
	pthread_join(t, NULL);
	check(job.ret == -1 && job.err == EFAULT, "the refused write fails with EFAULT");
	check(!strcmp(ro, "the VMM's read-only page"), "the read-only page keeps its bytes");
	printf("  device: DMA refused (%s); the page still says \"%s\"\n", strerror(job.err), ro);
	/* Without PRI the same write is refused by the IOMMU at once: a permission fault. */
	check(uiommu_dma_write(dev, 0, IOVA_RO, "scribble", 8, UIOMMU_DMA_NO_PRI) == -1 &&
	      errno == EACCES, "without PRI, the write fails with EACCES at once");
	check(!strcmp(ro, "the VMM's read-only page"), "the read-only page keeps its bytes");

	/* The device's own log of what the IOMMU refused. */
	check(uiommu_dma_dev_read_faults(dev, flog, 4) == 3, "the device logged three faults");
	check(flog[0].reason == UIOMMU_DMA_FAULT_PRQ_INVALID && flog[0].iova == IOVA_REFUSED,
	      "the first is the refused read");
	check(flog[1].reason == UIOMMU_DMA_FAULT_PRQ_INVALID && flog[1].iova == IOVA_RO,
	      "the second is the refused write");
	check(flog[2].reason == UIOMMU_DMA_FAULT_PERM && flog[2].iova == IOVA_RO,
	      "the third is the permission fault");
	printf("\ndevice fault log: refused read at 0x%" PRIx64 ", refused write at 0x%" PRIx64
	       ", permission fault at 0x%" PRIx64 "\n", (uint64_t)flog[0].iova,
	       (uint64_t)flog[1].iova, (uint64_t)flog[2].iova);

	uiommu_dma_dev_close(dev);
	uiommu_close(v.fault_fd);
	uiommu_close(v.fd);
	munmap(buf, (size_t)page);
	munmap(ro, (size_t)page);
	printf("dma_emulator: every step behaved as expected\n");
	return 0;
}
