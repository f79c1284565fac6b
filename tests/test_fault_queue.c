// SPDX-License-Identifier: MIT
/*
 * The iommufd fault queue through the ABI: IOMMU_FAULT_QUEUE_ALLOC and its fd, HWPT_ALLOC with
 * a fault ID, the fd protocol byte by byte (record layout and values, cookies, ESPIPE, EINVAL,
 * EFAULT, partial and multi-group reads, poll, close), routing by the HWPT's fault ID at the RID
 * and at PASIDs, and the auto-response of detach, replace and the device's removal (invariants
 * 26, 27). The selftest mock counts the answers its page_response sends (the test op
 * UIOMMU_PAGE_RESPONSES, ours), which is how "INVALID exactly once" is proven. Threads race
 * faults against replace, detach, reads and close (run under TSan in that build).
 * Written from the ABI description; no kernel code.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "stress.h"
#include "nested_utils.h"

#define REC 40u /* sizeof(struct iommu_hwpt_pgfault) */
#define RESP 8u /* sizeof(struct iommu_hwpt_page_response) */
#define PASID_A 100u
#define PASID_B 200u

struct answers {
	uint32_t success, invalid, failure, grpid, code;
};

static int fault_alloc(int fd, uint32_t *id, int *ffd)
{
	struct iommu_fault_alloc cmd = { .size = sizeof(cmd) };
	int rc = ioc(fd, IOMMU_FAULT_QUEUE_ALLOC, &cmd);

	if (!rc) {
		*id = cmd.out_fault_id;
		*ffd = (int)cmd.out_fault_fd;
	}
	return rc;
}

/* A paging HWPT over @ioas (PASID-compatible) whose faults go to @fault (0: none). */
static int hwpt_alloc_fault(int fd, uint32_t idev, uint32_t ioas, uint32_t fault, uint32_t *out)
{
	struct iommu_hwpt_alloc cmd = {
		.size = sizeof(cmd), .flags = IOMMU_HWPT_ALLOC_PASID, .dev_id = idev, .pt_id = ioas,
	};
	int rc;

	if (fault) {
		cmd.flags |= IOMMU_HWPT_FAULT_ID_VALID;
		cmd.fault_id = fault;
	}
	rc = ioc(fd, IOMMU_HWPT_ALLOC, &cmd);
	if (!rc)
		*out = cmd.out_hwpt_id;
	return rc;
}

static int trigger(int fd, uint32_t idev, uint32_t pasid, uint32_t grpid)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_TRIGGER_IOPF,
		.trigger_iopf = { .dev_id = idev, .pasid = pasid, .grpid = grpid,
				  .perm = IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE,
				  .addr = 0xdeadb000ull + grpid },
	};

	return ioc(fd, IOMMU_TEST_CMD, &cmd);
}

static struct answers answers(int fd, uint32_t idev)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_UIOMMU_PAGE_RESPONSES,
		.page_responses = { .dev_id = idev },
	};
	struct answers a = { 0 };

	if (ioc(fd, IOMMU_TEST_CMD, &cmd))
		abort();
	a.success = cmd.page_responses.out_success;
	a.invalid = cmd.page_responses.out_invalid;
	a.failure = cmd.page_responses.out_failure;
	a.grpid = cmd.page_responses.out_last_grpid;
	a.code = cmd.page_responses.out_last_code;
	return a;
}

static int pasid_op(int fd, uint32_t op, uint32_t stdev, uint32_t pasid, uint32_t pt)
{
	struct iommu_test_cmd cmd = { .size = sizeof(cmd), .op = op, .id = stdev };

	cmd.pasid_attach.pasid = pasid;
	cmd.pasid_attach.pt_id = pt;
	return ioc(fd, IOMMU_TEST_CMD, &cmd);
}

static int respond(int ffd, uint32_t cookie, uint32_t code)
{
	struct iommu_hwpt_page_response r = { .cookie = cookie, .code = code };

	return (int)uiommu_event_write(ffd, &r, sizeof(r));
}

static short poll_events(int ffd)
{
	struct pollfd p = { .fd = ffd, .events = POLLIN | POLLOUT };

	if (poll(&p, 1, 0) < 0)
		return -1;
	return p.revents;
}

/*
 * A PASID-capable mock device on its own IOAS, attached at the RID to a HWPT whose faults go to
 * fault queue `fault` (fd ffd); `plain` is a HWPT of the same IOAS without a fault queue.
 */
FIXTURE(fq) {
	int fd, ffd;
	uint32_t ioas, stdev, idev, fault, hwpt, plain;
};

FIXTURE_SETUP(fq)
{
	struct iommu_test_cmd mock = {
		.size = sizeof(mock), .op = IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
		.mock_domain_flags = { .dev_flags = MOCK_FLAGS_DEVICE_PASID },
	};

	self->fd = uiommu_open(O_RDWR);
	ASSERT_GE(self->fd, 0);
	self->ioas = ioas_alloc(self->fd);
	mock.id = self->ioas;
	ASSERT_EQ(0, ioc(self->fd, IOMMU_TEST_CMD, &mock));
	self->stdev = mock.mock_domain_flags.out_stdev_id;
	self->idev = mock.mock_domain_flags.out_idev_id;
	ASSERT_EQ(0, fault_alloc(self->fd, &self->fault, &self->ffd));
	ASSERT_EQ(0, hwpt_alloc_fault(self->fd, self->idev, self->ioas, self->fault, &self->hwpt));
	ASSERT_EQ(0, hwpt_alloc_fault(self->fd, self->idev, self->ioas, 0, &self->plain));
	ASSERT_EQ(0, mock_replace(self->fd, self->stdev, self->hwpt));
}

FIXTURE_TEARDOWN(fq)
{
	if (self->ffd >= 0)
		uiommu_close(self->ffd);
	uiommu_close(self->fd);
}

TEST(alloc_fd_and_lifetime)
{
	struct uiommu_stats before, after;
	struct iommu_fault_alloc cmd = { .size = sizeof(cmd), .flags = 1 };
	uint32_t id;
	int fd, ffd, fl;

	uiommu_close(uiommu_open(O_RDWR));
	ASSERT_EQ(0, uiommu_stats_get(&before));
	fd = uiommu_open(O_RDWR);
	ASSERT_GE(fd, 0);
	ASSERT_ERRNO(EOPNOTSUPP, ioc(fd, IOMMU_FAULT_QUEUE_ALLOC, &cmd));
	ASSERT_EQ(0, fault_alloc(fd, &id, &ffd));
	ASSERT_NE(0u, id);
	ASSERT_GT(ffd, 2);
	ASSERT_TRUE(uiommu_event_is_fd(ffd));
	ASSERT_TRUE(uiommu_is_fd(ffd)); /* a sub-fd, as a dma-buf: it crosses processes */
	/* A real fd: O_RDWR, close-on-exec. */
	fl = fcntl(ffd, F_GETFD);
	ASSERT_TRUE(fl >= 0 && (fl & FD_CLOEXEC));
	fl = fcntl(ffd, F_GETFL);
	ASSERT_EQ(O_RDWR, fl & O_ACCMODE);
	/* The fd holds the object: EBUSY; the close drops that hold, not the object. */
	ASSERT_ERRNO(EBUSY, destroy(fd, id));
	ASSERT_EQ(0, uiommu_close(ffd));
	ASSERT_FALSE(uiommu_event_is_fd(ffd));
	ASSERT_ERRNO(EBADF, uiommu_event_read(ffd, &cmd, REC));
	ASSERT_EQ(0, destroy(fd, id));
	ASSERT_ERRNO(ENOENT, destroy(fd, id));

	/* The fd keeps the context alive past the iommufd's close, as the kernel's file does. */
	ASSERT_EQ(0, fault_alloc(fd, &id, &ffd));
	ASSERT_EQ(0, uiommu_close(fd));
	ASSERT_EQ(0, uiommu_stats_get(&after));
	ASSERT_EQ(before.contexts + 1, after.contexts);
	ASSERT_EQ(0, uiommu_close(ffd));
	ASSERT_EQ(0, uiommu_stats_get(&after));
	ASSERT_EQ(before.contexts, after.contexts);
	ASSERT_EQ(before.objects, after.objects);
	ASSERT_EQ(before.allocations, after.allocations);
}

TEST_F(fq, hwpt_fault_id)
{
	struct iommu_hwpt_alloc cmd = {
		.size = sizeof(cmd), .flags = IOMMU_HWPT_FAULT_ID_VALID, .dev_id = self->idev,
		.pt_id = self->ioas, .fault_id = 9999,
	};
	uint32_t parent, nested, f2, h2;
	struct iommu_hwpt_selftest data = { .iotlb = IOMMU_TEST_IOTLB_DEFAULT };
	int ffd2;

	ASSERT_ERRNO(ENOENT, ioc(self->fd, IOMMU_HWPT_ALLOC, &cmd));
	cmd.fault_id = self->ioas; /* an object, but no fault queue */
	ASSERT_ERRNO(ENOENT, ioc(self->fd, IOMMU_HWPT_ALLOC, &cmd));
	cmd.fault_id = self->fault;
	cmd.flags |= IOMMU_HWPT_ALLOC_NEST_PARENT;
	ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_HWPT_ALLOC, &cmd));

	/* A HWPT holds its queue, even once the fd is closed. */
	ASSERT_EQ(0, fault_alloc(self->fd, &f2, &ffd2));
	ASSERT_EQ(0, hwpt_alloc_fault(self->fd, self->idev, self->ioas, f2, &h2));
	ASSERT_EQ(0, uiommu_close(ffd2));
	ASSERT_ERRNO(EBUSY, destroy(self->fd, f2));
	ASSERT_EQ(0, destroy(self->fd, h2));
	ASSERT_EQ(0, destroy(self->fd, f2));

	/* Nested HWPTs take a fault ID too; a bad one is ENOENT and leaves nothing. */
	ASSERT_EQ(0, parent_alloc(self->fd, self->idev, self->ioas, &parent));
	ASSERT_ERRNO(ENOENT, hwpt_alloc_data(self->fd, self->idev, parent,
					     IOMMU_HWPT_FAULT_ID_VALID, IOMMU_HWPT_DATA_SELFTEST,
					     &data, sizeof(data), &nested));
	cmd = (struct iommu_hwpt_alloc){ .size = sizeof(cmd), .flags = IOMMU_HWPT_FAULT_ID_VALID,
					 .dev_id = self->idev, .pt_id = parent,
					 .data_type = IOMMU_HWPT_DATA_SELFTEST,
					 .data_len = sizeof(data), .data_uptr = (uintptr_t)&data,
					 .fault_id = self->fault };
	ASSERT_EQ(0, ioc(self->fd, IOMMU_HWPT_ALLOC, &cmd));
	nested = cmd.out_hwpt_id;
	ASSERT_ERRNO(EBUSY, destroy(self->fd, parent));
	ASSERT_EQ(0, destroy(self->fd, nested));
	ASSERT_EQ(0, destroy(self->fd, parent));
	/* The fixture's HWPT still holds the queue. */
	ASSERT_EQ(0, uiommu_close(self->ffd));
	self->ffd = -1;
	ASSERT_ERRNO(EBUSY, destroy(self->fd, self->fault));
}

/* One fault, read and answered, with every byte of the record and every errno on the way. */
TEST_F(fq, protocol_bytes)
{
	unsigned char raw[2 * REC];
	struct iommu_hwpt_pgfault rec;
	struct iommu_hwpt_page_response r;
	struct answers a0 = answers(self->fd, self->idev), a;
	uint32_t u32;
	uint64_t u64;

	ASSERT_EQ(0, uiommu_event_read(self->ffd, raw, REC)); /* empty: 0 at once */
	ASSERT_EQ(0, uiommu_event_read(self->ffd, raw, 0));
	ASSERT_EQ(POLLOUT, poll_events(self->ffd));
	ASSERT_EQ(0, trigger(self->fd, self->idev, 0, 5));
	ASSERT_EQ(POLLIN | POLLOUT, poll_events(self->ffd));
	/* Length and offset rules come first. */
	ASSERT_ERRNO(ESPIPE, uiommu_event_read(self->ffd, raw, REC - 1));
	ASSERT_ERRNO(ESPIPE, uiommu_event_read(self->ffd, raw, REC + 1));
	ASSERT_ERRNO(ESPIPE, uiommu_event_read(self->ffd, raw, 1));
	ASSERT_ERRNO(ESPIPE, uiommu_event_pread(self->ffd, raw, REC, REC));
	/* A count that fits not even the first group: EINVAL, and the group stays. */
	ASSERT_ERRNO(EINVAL, uiommu_event_read(self->ffd, raw, 0));
	ASSERT_EQ(POLLIN | POLLOUT, poll_events(self->ffd));

	memset(raw, 0xa5, sizeof(raw));
	ASSERT_EQ((ssize_t)REC, uiommu_event_read(self->ffd, raw, sizeof(raw)));
	/* The layout: flags@0 dev_id@4 pasid@8 grpid@12 perm@16 rsvd@20 addr@24 length@32 cookie@36 */
	memcpy(&u32, raw + 0, 4);
	ASSERT_EQ((uint32_t)IOMMU_PGFAULT_FLAGS_LAST_PAGE, u32);
	memcpy(&u32, raw + 4, 4);
	ASSERT_EQ(self->idev, u32);
	memcpy(&u32, raw + 8, 4);
	ASSERT_EQ(0u, u32);
	memcpy(&u32, raw + 12, 4);
	ASSERT_EQ(5u, u32);
	memcpy(&u32, raw + 16, 4);
	ASSERT_EQ((uint32_t)(IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE), u32);
	memcpy(&u32, raw + 20, 4);
	ASSERT_EQ(0u, u32);
	memcpy(&u64, raw + 24, 8);
	ASSERT_EQ(0xdeadb005ull, u64);
	memcpy(&u32, raw + 32, 4);
	ASSERT_EQ(0u, u32);
	memcpy(&u32, raw + 36, 4);
	ASSERT_EQ(1u, u32); /* cookies start at 1 */
	/* Nothing written past the record. */
	ASSERT_EQ(0xa5, raw[REC]);
	ASSERT_EQ(0xa5, raw[2 * REC - 1]);
	memcpy(&rec, raw, REC);
	ASSERT_EQ(POLLOUT, poll_events(self->ffd));
	ASSERT_EQ(0, uiommu_event_read(self->ffd, raw, REC));
	/* Read, not answered: the device has heard nothing yet. */
	a = answers(self->fd, self->idev);
	ASSERT_EQ(a0.success, a.success);
	ASSERT_EQ(a0.invalid, a.invalid);

	/* write: length and offset, then the code, then the cookie. */
	r = (struct iommu_hwpt_page_response){ .cookie = rec.cookie, .code = 0 };
	ASSERT_ERRNO(ESPIPE, uiommu_event_write(self->ffd, &r, RESP - 1));
	ASSERT_ERRNO(ESPIPE, uiommu_event_write(self->ffd, &r, RESP + 1));
	ASSERT_ERRNO(ESPIPE, uiommu_event_pwrite(self->ffd, &r, RESP, RESP));
	ASSERT_EQ(0, uiommu_event_write(self->ffd, &r, 0));
	ASSERT_ERRNO(EINVAL, respond(self->ffd, rec.cookie, 2 /* FAILURE: not a uAPI code */));
	ASSERT_ERRNO(EINVAL, respond(self->ffd, rec.cookie, 0xffffffffu));
	ASSERT_ERRNO(EINVAL, respond(self->ffd, rec.cookie + 1, IOMMUFD_PAGE_RESP_SUCCESS));
	ASSERT_ERRNO(EINVAL, respond(self->ffd, 0, IOMMUFD_PAGE_RESP_SUCCESS));
	a = answers(self->fd, self->idev);
	ASSERT_EQ(a0.success, a.success);
	ASSERT_EQ((ssize_t)RESP, respond(self->ffd, rec.cookie, IOMMUFD_PAGE_RESP_SUCCESS));
	a = answers(self->fd, self->idev);
	ASSERT_EQ(a0.success + 1, a.success);
	ASSERT_EQ(a0.invalid, a.invalid);
	ASSERT_EQ(5u, a.grpid);
	ASSERT_EQ(0u, a.code);
	/* Answered once: the cookie is dead. */
	ASSERT_ERRNO(EINVAL, respond(self->ffd, rec.cookie, IOMMUFD_PAGE_RESP_SUCCESS));
	/* The lowest free cookie again. */
	ASSERT_EQ(0, trigger(self->fd, self->idev, 0, 6));
	ASSERT_EQ((ssize_t)REC, uiommu_event_read(self->ffd, &rec, REC));
	ASSERT_EQ(1u, rec.cookie);
	ASSERT_EQ((ssize_t)RESP, respond(self->ffd, 1, IOMMUFD_PAGE_RESP_INVALID));
	a = answers(self->fd, self->idev);
	ASSERT_EQ(a0.invalid + 1, a.invalid);
	ASSERT_EQ(1u, a.code);
	/* An fd that is no event fd: EBADF. */
	ASSERT_ERRNO(EBADF, uiommu_event_write(self->fd, &r, RESP));
}

/* Several groups: as many whole ones as fit, FIFO, one cookie each; a write of several. */
TEST_F(fq, multi_group_reads_and_writes)
{
	struct iommu_hwpt_pgfault rec[4];
	struct iommu_hwpt_page_response r[3];
	struct answers a0 = answers(self->fd, self->idev), a;
	unsigned int i;

	for (i = 0; i < 3; i++)
		ASSERT_EQ(0, trigger(self->fd, self->idev, 0, 10 + i));
	ASSERT_EQ((ssize_t)(2 * REC), uiommu_event_read(self->ffd, rec, 2 * REC));
	ASSERT_EQ(10u, rec[0].grpid);
	ASSERT_EQ(11u, rec[1].grpid);
	ASSERT_EQ(1u, rec[0].cookie);
	ASSERT_EQ(2u, rec[1].cookie);
	ASSERT_EQ(POLLIN | POLLOUT, poll_events(self->ffd));
	ASSERT_EQ((ssize_t)REC, uiommu_event_read(self->ffd, &rec[2], 4 * REC));
	ASSERT_EQ(12u, rec[2].grpid);
	ASSERT_EQ(3u, rec[2].cookie);
	ASSERT_EQ(POLLOUT, poll_events(self->ffd));

	/* Answers in any order, several per write; a bad one stops the write after the good. */
	r[0] = (struct iommu_hwpt_page_response){ .cookie = 3, .code = 0 };
	r[1] = (struct iommu_hwpt_page_response){ .cookie = 1, .code = 1 };
	r[2] = (struct iommu_hwpt_page_response){ .cookie = 3, .code = 0 }; /* answered already */
	ASSERT_EQ((ssize_t)(2 * RESP), uiommu_event_write(self->ffd, r, 3 * RESP));
	a = answers(self->fd, self->idev);
	ASSERT_EQ(a0.success + 1, a.success);
	ASSERT_EQ(a0.invalid + 1, a.invalid);
	/* Nothing consumed: the error itself. */
	ASSERT_ERRNO(EINVAL, uiommu_event_write(self->ffd, &r[2], RESP));
	ASSERT_EQ((ssize_t)RESP, respond(self->ffd, 2, 0));
	a = answers(self->fd, self->idev);
	ASSERT_EQ(a0.success + 2, a.success);
	ASSERT_EQ(11u, a.grpid);
}

/* A copy fault: the group stays, whole groups only, EFAULT only when nothing was read. */
TEST_F(fq, read_efault)
{
	long pg = sysconf(_SC_PAGESIZE);
	struct iommu_hwpt_pgfault rec[2];
	char *map;

	map = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(map != MAP_FAILED);
	ASSERT_EQ(0, mprotect(map + pg, pg, PROT_NONE));
	ASSERT_EQ(0, trigger(self->fd, self->idev, 0, 1));
	ASSERT_EQ(0, trigger(self->fd, self->idev, 0, 2));
	ASSERT_ERRNO(EFAULT, uiommu_event_read(self->ffd, map + pg, REC));
	/* NULL is a user address like any other (no pointer arithmetic on it: found by fuzzing). */
	ASSERT_ERRNO(EFAULT, uiommu_event_read(self->ffd, NULL, REC));
	ASSERT_ERRNO(EFAULT, uiommu_event_write(self->ffd, NULL, RESP));
	/* The first record fits before the hole, the second does not: 40 bytes. */
	ASSERT_EQ((ssize_t)REC, uiommu_event_read(self->ffd, map + pg - REC, 2 * REC));
	memcpy(rec, map + pg - REC, REC);
	ASSERT_EQ(1u, rec[0].grpid);
	ASSERT_EQ(1u, rec[0].cookie);
	ASSERT_EQ((ssize_t)REC, uiommu_event_read(self->ffd, &rec[1], REC));
	ASSERT_EQ(2u, rec[1].grpid);
	ASSERT_EQ(2u, rec[1].cookie); /* the failed reads' cookies went back */
	ASSERT_ERRNO(EFAULT, uiommu_event_write(self->ffd, map + pg, RESP));
	munmap(map, 2 * pg);
	ASSERT_EQ((ssize_t)RESP, respond(self->ffd, 1, 0));
	ASSERT_EQ((ssize_t)RESP, respond(self->ffd, 2, 0));
}

/* Faults go to the queue of the HWPT attached where they come from: the RID or a PASID. */
TEST_F(fq, routing_rid_and_pasid)
{
	struct iommu_hwpt_pgfault rec;
	struct answers a0 = answers(self->fd, self->idev), a;
	uint32_t f2, h2;
	int ffd2;

	ASSERT_EQ(0, fault_alloc(self->fd, &f2, &ffd2));
	ASSERT_EQ(0, hwpt_alloc_fault(self->fd, self->idev, self->ioas, f2, &h2));
	ASSERT_EQ(0, pasid_op(self->fd, IOMMU_TEST_OP_PASID_ATTACH, self->stdev, PASID_A, h2));

	ASSERT_EQ(0, trigger(self->fd, self->idev, PASID_A, 21));
	ASSERT_EQ(0, uiommu_event_read(self->ffd, &rec, REC));
	ASSERT_EQ((ssize_t)REC, uiommu_event_read(ffd2, &rec, REC));
	ASSERT_EQ(21u, rec.grpid);
	ASSERT_EQ(PASID_A, rec.pasid);
	ASSERT_EQ((uint32_t)(IOMMU_PGFAULT_FLAGS_PASID_VALID | IOMMU_PGFAULT_FLAGS_LAST_PAGE),
		  rec.flags);
	ASSERT_EQ(self->idev, rec.dev_id);
	ASSERT_EQ(1u, rec.cookie); /* cookies are per queue */
	ASSERT_EQ((ssize_t)RESP, respond(ffd2, 1, 0));

	ASSERT_EQ(0, trigger(self->fd, self->idev, 0, 22));
	ASSERT_EQ(0, uiommu_event_read(ffd2, &rec, REC));
	ASSERT_EQ((ssize_t)REC, uiommu_event_read(self->ffd, &rec, REC));
	ASSERT_EQ(22u, rec.grpid);
	ASSERT_EQ(0u, rec.pasid);
	ASSERT_EQ((ssize_t)RESP, respond(self->ffd, rec.cookie, 0));

	/* A PASID with nothing attached, the RID not nested: INVALID at once, queued nowhere. */
	a = answers(self->fd, self->idev);
	ASSERT_EQ(0, trigger(self->fd, self->idev, PASID_B, 23));
	ASSERT_EQ(0, uiommu_event_read(self->ffd, &rec, REC));
	ASSERT_EQ(0, uiommu_event_read(ffd2, &rec, REC));
	ASSERT_EQ(a.invalid + 1, answers(self->fd, self->idev).invalid);
	ASSERT_EQ(23u, answers(self->fd, self->idev).grpid);

	/* A HWPT without a fault queue at the RID: INVALID at once too. */
	ASSERT_EQ(0, mock_replace(self->fd, self->stdev, self->plain));
	ASSERT_EQ(0, trigger(self->fd, self->idev, 0, 24));
	ASSERT_EQ(0, uiommu_event_read(self->ffd, &rec, REC));
	a = answers(self->fd, self->idev);
	ASSERT_EQ(a0.success + 2, a.success);
	ASSERT_EQ(a0.invalid + 2, a.invalid);
	ASSERT_ERRNO(ENOENT, trigger(self->fd, 9999, 0, 1));

	ASSERT_EQ(0, pasid_op(self->fd, IOMMU_TEST_OP_PASID_DETACH, self->stdev, PASID_A, 0));
	ASSERT_EQ(0, uiommu_close(ffd2));
	ASSERT_EQ(0, destroy(self->fd, h2));
	ASSERT_EQ(0, destroy(self->fd, f2));
}

/*
 * The kernel selftest's flow: a nested HWPT with a fault queue at the RID takes the faults of
 * PASIDs the core does not know (the mock keeps the PASID table in the guest).
 */
TEST_F(fq, nested_user_pasid_table)
{
	struct iommu_hwpt_selftest data = { .iotlb = IOMMU_TEST_IOTLB_DEFAULT };
	struct iommu_hwpt_alloc cmd = { .size = sizeof(cmd) };
	struct iommu_hwpt_pgfault rec;
	uint32_t parent;

	ASSERT_EQ(0, parent_alloc(self->fd, self->idev, self->ioas, &parent));
	cmd = (struct iommu_hwpt_alloc){ .size = sizeof(cmd), .flags = IOMMU_HWPT_FAULT_ID_VALID,
					 .dev_id = self->idev, .pt_id = parent,
					 .data_type = IOMMU_HWPT_DATA_SELFTEST,
					 .data_len = sizeof(data), .data_uptr = (uintptr_t)&data,
					 .fault_id = self->fault };
	ASSERT_EQ(0, ioc(self->fd, IOMMU_HWPT_ALLOC, &cmd));
	ASSERT_EQ(0, mock_replace(self->fd, self->stdev, cmd.out_hwpt_id));
	ASSERT_EQ(0, trigger(self->fd, self->idev, 1, 2));
	ASSERT_EQ((ssize_t)REC, uiommu_event_read(self->ffd, &rec, REC));
	ASSERT_EQ(1u, rec.pasid);
	ASSERT_EQ(2u, rec.grpid);
	ASSERT_EQ((ssize_t)RESP, respond(self->ffd, rec.cookie, IOMMUFD_PAGE_RESP_SUCCESS));
	ASSERT_EQ(2u, answers(self->fd, self->idev).grpid);
	ASSERT_EQ(0u, answers(self->fd, self->idev).code);
	ASSERT_EQ(0, mock_replace(self->fd, self->stdev, self->hwpt));
	ASSERT_EQ(0, destroy(self->fd, cmd.out_hwpt_id));
	ASSERT_EQ(0, destroy(self->fd, parent));
}

/*
 * Invariant 26 at the RID: a replace answers INVALID, exactly once, to every group of the old
 * attachment, read or not; its cookies die; the queue keeps no trace. Also between two HWPTs of
 * the same queue: the old attachment's groups go, later faults arrive.
 */
TEST_F(fq, auto_response_rid_replace)
{
	struct iommu_hwpt_pgfault rec;
	struct answers a0 = answers(self->fd, self->idev), a;
	uint32_t h2;

	ASSERT_EQ(0, trigger(self->fd, self->idev, 0, 1));
	ASSERT_EQ(0, trigger(self->fd, self->idev, 0, 2));
	ASSERT_EQ(0, trigger(self->fd, self->idev, 0, 3));
	ASSERT_EQ((ssize_t)REC, uiommu_event_read(self->ffd, &rec, REC)); /* cookie 1 read */
	ASSERT_EQ(0, mock_replace(self->fd, self->stdev, self->plain));
	a = answers(self->fd, self->idev);
	ASSERT_EQ(a0.invalid + 3, a.invalid);
	ASSERT_EQ(a0.success, a.success);
	ASSERT_EQ(a0.failure, a.failure);
	ASSERT_EQ(POLLOUT, poll_events(self->ffd));
	ASSERT_EQ(0, uiommu_event_read(self->ffd, &rec, REC));
	ASSERT_ERRNO(EINVAL, respond(self->ffd, 1, IOMMUFD_PAGE_RESP_SUCCESS));
	ASSERT_EQ(a0.invalid + 3, answers(self->fd, self->idev).invalid); /* once only */

	/* Same queue, another HWPT: a new attach handle. */
	ASSERT_EQ(0, hwpt_alloc_fault(self->fd, self->idev, self->ioas, self->fault, &h2));
	ASSERT_EQ(0, mock_replace(self->fd, self->stdev, self->hwpt));
	ASSERT_EQ(0, trigger(self->fd, self->idev, 0, 4));
	ASSERT_EQ(0, mock_replace(self->fd, self->stdev, h2));
	ASSERT_EQ(a0.invalid + 4, answers(self->fd, self->idev).invalid);
	ASSERT_EQ(4u, answers(self->fd, self->idev).grpid);
	ASSERT_EQ(0, trigger(self->fd, self->idev, 0, 5));
	ASSERT_EQ((ssize_t)REC, uiommu_event_read(self->ffd, &rec, REC));
	ASSERT_EQ(5u, rec.grpid);
	ASSERT_EQ((ssize_t)RESP, respond(self->ffd, rec.cookie, IOMMUFD_PAGE_RESP_SUCCESS));
	a = answers(self->fd, self->idev);
	ASSERT_EQ(a0.success + 1, a.success);
	ASSERT_EQ(a0.invalid + 4, a.invalid);
	/* Replace with the same HWPT is a no-op: nothing answered. */
	ASSERT_EQ(0, trigger(self->fd, self->idev, 0, 6));
	ASSERT_EQ(0, mock_replace(self->fd, self->stdev, h2));
	ASSERT_EQ(a0.invalid + 4, answers(self->fd, self->idev).invalid);
	ASSERT_EQ((ssize_t)REC, uiommu_event_read(self->ffd, &rec, REC));
	ASSERT_EQ(6u, rec.grpid);
	ASSERT_EQ(0, mock_replace(self->fd, self->stdev, self->plain));
	ASSERT_EQ(a0.invalid + 5, answers(self->fd, self->idev).invalid);
	ASSERT_EQ(0, destroy(self->fd, h2));
}

/* Invariant 26 at a PASID: detach and replace; the RID's groups are not touched. */
TEST_F(fq, auto_response_pasid)
{
	struct iommu_hwpt_pgfault rec;
	struct answers a0 = answers(self->fd, self->idev), a;
	uint32_t f2, h2;
	int ffd2;

	ASSERT_EQ(0, fault_alloc(self->fd, &f2, &ffd2));
	ASSERT_EQ(0, hwpt_alloc_fault(self->fd, self->idev, self->ioas, f2, &h2));
	ASSERT_EQ(0, pasid_op(self->fd, IOMMU_TEST_OP_PASID_ATTACH, self->stdev, PASID_A,
			      self->hwpt));
	ASSERT_EQ(0, trigger(self->fd, self->idev, 0, 1));       /* RID */
	ASSERT_EQ(0, trigger(self->fd, self->idev, PASID_A, 2)); /* PASID, same queue */
	ASSERT_EQ(0, trigger(self->fd, self->idev, PASID_A, 3));
	ASSERT_EQ((ssize_t)(2 * REC), uiommu_event_read(self->ffd, &rec, REC) +
					      uiommu_event_read(self->ffd, &rec, REC));
	ASSERT_EQ(2u, rec.grpid); /* cookie 2; RID's is 1 */
	/* Replace the PASID onto the other queue: groups 2 (read) and 3 (not) go INVALID. */
	ASSERT_EQ(0, pasid_op(self->fd, IOMMU_TEST_OP_PASID_REPLACE, self->stdev, PASID_A, h2));
	a = answers(self->fd, self->idev);
	ASSERT_EQ(a0.invalid + 2, a.invalid);
	ASSERT_ERRNO(EINVAL, respond(self->ffd, 2, 0));
	ASSERT_EQ(0, uiommu_event_read(self->ffd, &rec, REC));
	/* The RID's group is still there to answer. */
	ASSERT_EQ((ssize_t)RESP, respond(self->ffd, 1, IOMMUFD_PAGE_RESP_SUCCESS));
	ASSERT_EQ(a0.success + 1, answers(self->fd, self->idev).success);

	ASSERT_EQ(0, trigger(self->fd, self->idev, PASID_A, 4));
	ASSERT_EQ(0, trigger(self->fd, self->idev, PASID_A, 5));
	ASSERT_EQ((ssize_t)REC, uiommu_event_read(ffd2, &rec, REC));
	ASSERT_EQ(4u, rec.grpid);
	ASSERT_EQ(0, pasid_op(self->fd, IOMMU_TEST_OP_PASID_DETACH, self->stdev, PASID_A, 0));
	a = answers(self->fd, self->idev);
	ASSERT_EQ(a0.invalid + 4, a.invalid);
	ASSERT_EQ(a0.success + 1, a.success);
	ASSERT_EQ(0, uiommu_event_read(ffd2, &rec, REC));
	ASSERT_EQ(POLLOUT, poll_events(ffd2));
	ASSERT_ERRNO(EINVAL, respond(ffd2, 1, 0));
	ASSERT_EQ(0, uiommu_close(ffd2));
	ASSERT_EQ(0, destroy(self->fd, h2));
	ASSERT_EQ(0, destroy(self->fd, f2));
}

/*
 * The device goes (its selftest object is destroyed) and the context closes with groups held,
 * read or not, in queues whose fds are still open: nothing is left behind.
 */
TEST(teardown_with_pending_faults)
{
	struct iommu_test_cmd mock = {
		.size = sizeof(mock), .op = IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
		.mock_domain_flags = { .dev_flags = MOCK_FLAGS_DEVICE_PASID },
	};
	struct uiommu_stats before, after;
	struct iommu_hwpt_pgfault rec;
	uint32_t ioas, fault, hwpt, stdev2, idev2;
	int fd, ffd, round;

	uiommu_close(uiommu_open(O_RDWR));
	ASSERT_EQ(0, uiommu_stats_get(&before));
	for (round = 0; round < 2; round++) {
		fd = uiommu_open(O_RDWR);
		ASSERT_GE(fd, 0);
		ioas = ioas_alloc(fd);
		mock.id = ioas;
		ASSERT_EQ(0, ioc(fd, IOMMU_TEST_CMD, &mock));
		ASSERT_EQ(0, fault_alloc(fd, &fault, &ffd));
		ASSERT_EQ(0, hwpt_alloc_fault(fd, mock.mock_domain_flags.out_idev_id, ioas, fault,
					      &hwpt));
		ASSERT_EQ(0, mock_replace(fd, mock.mock_domain_flags.out_stdev_id, hwpt));
		ASSERT_EQ(0, mock_domain(fd, hwpt, &stdev2, NULL, &idev2));
		ASSERT_EQ(0, trigger(fd, mock.mock_domain_flags.out_idev_id, 0, 1));
		ASSERT_EQ(0, trigger(fd, idev2, 0, 2));
		ASSERT_EQ(0, trigger(fd, idev2, 0, 3));
		ASSERT_EQ((ssize_t)REC, uiommu_event_read(ffd, &rec, REC));
		/* The second device goes with a group read and one not. */
		ASSERT_EQ(0, destroy(fd, stdev2));
		if (round == 0) {
			ASSERT_EQ(0, uiommu_close(fd)); /* the fd keeps the context */
			ASSERT_EQ(0, uiommu_close(ffd));
		} else {
			ASSERT_EQ(0, uiommu_close(ffd));
			ASSERT_EQ(0, uiommu_close(fd));
		}
		ASSERT_EQ(0, uiommu_stats_get(&after));
		ASSERT_EQ(before.contexts, after.contexts);
		ASSERT_EQ(before.objects, after.objects);
		ASSERT_EQ(before.allocations, after.allocations);
	}
}

/* ---- threads (short, bounded; the TSan build checks the locking) ------------------------- */

struct race {
	int fd, ffd;
	uint32_t stdev, idev, h1, h2, plain;
	atomic_uint triggered;
};

static void *race_trigger(void *arg)
{
	struct race *r = arg;
	uint32_t g = 0;

	while (stress_running()) {
		if (trigger(r->fd, r->idev, (g & 1) ? PASID_A : 0, g & 0xff))
			abort();
		atomic_fetch_add(&r->triggered, 1);
		g++;
	}
	return NULL;
}

static void *race_reader(void *arg)
{
	struct race *r = arg;
	struct iommu_hwpt_pgfault rec[4];

	while (stress_running()) {
		ssize_t n = uiommu_event_read(r->ffd, rec, sizeof(rec));

		for (ssize_t i = 0; i < n / (ssize_t)REC; i++) {
			/* A replace may have answered it meanwhile: EINVAL is fine then. */
			if (respond(r->ffd, rec[i].cookie, i & 1) < 0 && errno != EINVAL)
				abort();
		}
	}
	return NULL;
}

static void *race_replacer(void *arg)
{
	struct race *r = arg;
	uint32_t pts[3] = { r->h1, r->h2, r->plain };
	unsigned int i = 0;

	while (stress_running()) {
		if (mock_replace(r->fd, r->stdev, pts[i++ % 3]))
			abort();
		if (pasid_op(r->fd, IOMMU_TEST_OP_PASID_ATTACH, r->stdev, PASID_A, r->h1))
			abort();
		if (pasid_op(r->fd, IOMMU_TEST_OP_PASID_DETACH, r->stdev, PASID_A, 0))
			abort();
	}
	return NULL;
}

/*
 * Faults race reads, answers, replaces and PASID detaches: every fault reported gets exactly
 * one answer (SUCCESS, INVALID or, never here, FAILURE), whichever path gave it.
 */
TEST_F_TIMEOUT(fq, race_faults_detach, 60)
{
	struct race r = { .fd = self->fd, .ffd = self->ffd, .stdev = self->stdev,
			  .idev = self->idev, .h1 = self->hwpt, .plain = self->plain };
	struct answers a0 = answers(self->fd, self->idev), a;
	struct stress_worker w[] = { { race_trigger, &r }, { race_reader, &r },
				     { race_replacer, &r } };

	ASSERT_EQ(0, hwpt_alloc_fault(self->fd, self->idev, self->ioas, self->fault, &r.h2));
	ASSERT_EQ(0, stress_run(w, 3, 0.2));
	/* What is left unanswered goes with the last replace onto the plain HWPT. */
	ASSERT_EQ(0, mock_replace(self->fd, self->stdev, self->plain));
	a = answers(self->fd, self->idev);
	TH_LOG("%u faults: %u SUCCESS, %u INVALID", atomic_load(&r.triggered),
	       a.success - a0.success, a.invalid - a0.invalid);
	ASSERT_GT(atomic_load(&r.triggered), 0u);
	ASSERT_EQ(atomic_load(&r.triggered),
		  (a.success - a0.success) + (a.invalid - a0.invalid));
	ASSERT_EQ(a0.failure, a.failure);
	ASSERT_EQ(0, destroy(self->fd, r.h2));
}

static void *race_rw_until_closed(void *arg)
{
	struct race *r = arg;
	struct iommu_hwpt_pgfault rec[2];

	for (;;) {
		ssize_t n = uiommu_event_read(r->ffd, rec, sizeof(rec));

		if (n < 0) {
			if (errno != EBADF)
				abort();
			break;
		}
		for (ssize_t i = 0; i < n / (ssize_t)REC; i++)
			if (respond(r->ffd, rec[i].cookie, 0) < 0 && errno != EBADF)
				abort();
	}
	return NULL;
}

/*
 * The fault fd closes while another thread reads and answers through it: the calls in flight
 * finish, later ones are EBADF, and the groups left are answered by the next replace.
 */
TEST_F_TIMEOUT(fq, race_fd_close, 60)
{
	struct race r = { .fd = self->fd, .ffd = self->ffd, .idev = self->idev };
	struct answers a0 = answers(self->fd, self->idev), a;
	pthread_t t[2];
	unsigned int n = 0;

	ASSERT_EQ(0, pthread_create(&t[0], NULL, race_rw_until_closed, &r));
	ASSERT_EQ(0, pthread_create(&t[1], NULL, race_rw_until_closed, &r));
	for (; n < 200; n++)
		ASSERT_EQ(0, trigger(self->fd, self->idev, 0, n & 0xff));
	ASSERT_EQ(0, uiommu_close(self->ffd));
	self->ffd = -1;
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	/* Faults still arrive in the queue without its fd; the detach answers them. */
	ASSERT_EQ(0, trigger(self->fd, self->idev, 0, 7));
	n++;
	ASSERT_ERRNO(EBUSY, destroy(self->fd, self->fault));
	ASSERT_EQ(0, mock_replace(self->fd, self->stdev, self->plain));
	a = answers(self->fd, self->idev);
	ASSERT_EQ(n, (a.success - a0.success) + (a.invalid - a0.invalid));
	ASSERT_EQ(0, destroy(self->fd, self->hwpt));
	ASSERT_EQ(0, destroy(self->fd, self->fault));
}

TEST_HARNESS_MAIN
