// SPDX-License-Identifier: MIT
/*
 * The vIOMMU family through the ABI: VIOMMU_ALLOC and its data, VDEVICE_ALLOC and tombstones,
 * nested HWPTs made from a vIOMMU, vIOMMU invalidation of the mock device cache, VEVENTQ_ALLOC
 * with its fd (read protocol, poll, overflow, close), the destroy graph, and fault-injection
 * sweeps over VIOMMU_ALLOC and VDEVICE_ALLOC, and lookups racing the publication of new
 * devices (meant for TSan: a lookup that wins the race must see the whole device). Written
 * from the ABI description; no kernel code.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "nested_utils.h"

FIXTURE(viommu) {
	int fd;
	uint32_t ioas, stdev, idev, parent, viommu;
};

FIXTURE_SETUP(viommu)
{
	self->fd = uiommu_open(O_RDWR);
	ASSERT_GE(self->fd, 0);
	self->ioas = ioas_alloc(self->fd);
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, &self->stdev, NULL, &self->idev));
	ASSERT_EQ(0, parent_alloc(self->fd, self->idev, self->ioas, &self->parent));
	ASSERT_EQ(0, viommu_alloc(self->fd, self->idev, self->parent, IOMMU_VIOMMU_TYPE_SELFTEST,
				  NULL, 0, &self->viommu));
}

FIXTURE_TEARDOWN(viommu)
{
	uiommu_close(self->fd);
}

TEST_F(viommu, alloc_errors_and_data)
{
	struct iommu_viommu_selftest data = { .in_data = 0xcafe };
	uint32_t plain, v;

	ASSERT_EQ(0, hwpt_alloc_data(self->fd, self->idev, self->ioas, 0, 0, NULL, 0, &plain));
	ASSERT_ERRNO(ENOENT, viommu_alloc(self->fd, self->idev, 0, IOMMU_VIOMMU_TYPE_SELFTEST,
					  NULL, 0, &v));
	ASSERT_ERRNO(EINVAL, viommu_alloc(self->fd, self->idev, plain,
					  IOMMU_VIOMMU_TYPE_SELFTEST, NULL, 0, &v));
	ASSERT_ERRNO(EOPNOTSUPP, viommu_alloc(self->fd, self->idev, self->parent,
					      IOMMU_VIOMMU_TYPE_DEFAULT, NULL, 0, &v));
	ASSERT_ERRNO(EOPNOTSUPP, viommu_alloc(self->fd, self->idev, self->parent,
					      IOMMU_VIOMMU_TYPE_ARM_SMMUV3, NULL, 0, &v));
	ASSERT_ERRNO(ENOENT, viommu_alloc(self->fd, 9999, self->parent,
					  IOMMU_VIOMMU_TYPE_SELFTEST, NULL, 0, &v));
	ASSERT_EQ(0, viommu_alloc(self->fd, self->idev, self->parent, IOMMU_VIOMMU_TYPE_SELFTEST,
				  &data, sizeof(data), &v));
	ASSERT_EQ(0xcafeu, data.out_data);
	ASSERT_EQ((uint64_t)2 * sysconf(_SC_PAGESIZE), data.out_mmap_length);
	ASSERT_EQ(0ull, data.out_mmap_offset % (uint64_t)sysconf(_SC_PAGESIZE));
	/* A parent with a vIOMMU is held. */
	ASSERT_ERRNO(EBUSY, destroy(self->fd, self->parent));
	ASSERT_EQ(0, destroy(self->fd, v));
}

TEST_F(viommu, vdevice_and_nested)
{
	uint32_t vdev, vdev2, nested, idev2, stdev2, other;

	ASSERT_ERRNO(ENOENT, vdevice_alloc(self->fd, 9999, self->idev, 0x99, &vdev));
	ASSERT_ERRNO(ENOENT, vdevice_alloc(self->fd, self->viommu, 9999, 0x99, &vdev));
	ASSERT_EQ(0, nested_alloc(self->fd, self->idev, self->viommu, IOMMU_TEST_IOTLB_DEFAULT,
				  &nested));
	/* No vDEVICE yet: the device cannot use the vIOMMU's nested HWPT. */
	ASSERT_ERRNO(ENOENT, mock_replace(self->fd, self->stdev, nested));
	ASSERT_EQ(0, vdevice_alloc(self->fd, self->viommu, self->idev, 0x99, &vdev));
	ASSERT_ERRNO(EEXIST, vdevice_alloc(self->fd, self->viommu, self->idev, 0x98, &vdev2));
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, &stdev2, NULL, &idev2));
	ASSERT_ERRNO(EEXIST, vdevice_alloc(self->fd, self->viommu, idev2, 0x99, &vdev2));
	ASSERT_EQ(0, mock_replace(self->fd, self->stdev, nested));
	/* The graph: the vIOMMU is held by its nested HWPT and vDEVICE. */
	ASSERT_ERRNO(EBUSY, destroy(self->fd, self->viommu));
	ASSERT_ERRNO(EBUSY, destroy(self->fd, self->parent));
	ASSERT_ERRNO(EBUSY, destroy(self->fd, nested));
	ASSERT_EQ(0, mock_replace(self->fd, self->stdev, self->ioas));
	ASSERT_EQ(0, destroy(self->fd, nested));
	ASSERT_ERRNO(EBUSY, destroy(self->fd, self->viommu));
	ASSERT_EQ(0, destroy(self->fd, vdev));
	/* Gone: the device may get another. */
	ASSERT_EQ(0, vdevice_alloc(self->fd, self->viommu, self->idev, 0x77, &other));
	ASSERT_EQ(0, destroy(self->fd, other));
	ASSERT_EQ(0, destroy(self->fd, self->viommu));
	ASSERT_EQ(0, destroy(self->fd, self->parent));
}

TEST_F(viommu, vdevice_tombstone)
{
	uint32_t vdev, next;

	ASSERT_EQ(0, vdevice_alloc(self->fd, self->viommu, self->idev, 0x99, &vdev));
	/* The device goes first: its vDEVICE goes with it, the ID stays taken. */
	ASSERT_EQ(0, destroy(self->fd, self->stdev));
	ASSERT_ERRNO(ENOENT, destroy(self->fd, vdev));
	next = ioas_alloc(self->fd);
	ASSERT_NE(vdev, next);
	/* The vIOMMU is free again. */
	ASSERT_EQ(0, destroy(self->fd, self->viommu));
}

TEST_F(viommu, vdevice_cache_invalidate)
{
	struct iommu_viommu_invalidate_selftest reqs[2];
	uint32_t vdev, num, i;

	ASSERT_EQ(0, vdevice_alloc(self->fd, self->viommu, self->idev, 0x99, &vdev));
	for (i = 0; i != MOCK_DEV_CACHE_NUM; i++)
		ASSERT_EQ(0, check_dev_cache(self->fd, self->idev, i, IOMMU_TEST_DEV_CACHE_DEFAULT));
	ASSERT_ERRNO(EINVAL, check_dev_cache(self->fd, self->idev, 0, 0));
	ASSERT_ERRNO(EINVAL, check_dev_cache(self->fd, self->idev, 4, 0));
	memset(reqs, 0, sizeof(reqs));
	num = 0;
	ASSERT_EQ(0, invalidate(self->fd, self->viommu, reqs,
				IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, sizeof(reqs[0]), &num));
	ASSERT_ERRNO(EINVAL, invalidate(self->fd, self->viommu, reqs,
					IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID,
					sizeof(reqs[0]), &num));
	/* v7.2's bounds, with entries only: at most 2^19 of them, at most a page long. */
	num = (1u << 19) + 1;
	ASSERT_ERRNO(EINVAL, invalidate(self->fd, self->viommu, reqs,
					IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, sizeof(reqs[0]),
					&num));
	ASSERT_EQ(0u, num);
	num = 1;
	ASSERT_ERRNO(EINVAL, invalidate(self->fd, self->viommu, reqs,
					IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST,
					(uint32_t)sysconf(_SC_PAGESIZE) + 1, &num));
	ASSERT_EQ(0u, num);
	num = 0;
	ASSERT_EQ(0, invalidate(self->fd, self->viommu, NULL,
				IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST,
				(uint32_t)sysconf(_SC_PAGESIZE) + 1, &num));
	{
		/* A page-long entry with a zero tail is one entry, as the full-array copy has it. */
		size_t pg = (size_t)sysconf(_SC_PAGESIZE);
		struct iommu_viommu_invalidate_selftest *e = calloc(1, pg);

		ASSERT_TRUE(e != NULL);
		e->vdev_id = 0x99;
		e->cache_id = 3;
		num = 1;
		ASSERT_EQ(0, invalidate(self->fd, self->viommu, e,
					IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, (uint32_t)pg, &num));
		ASSERT_EQ(1u, num);
		ASSERT_EQ(0, check_dev_cache(self->fd, self->idev, 3, 0));
		free(e);
	}
	/* One entry, then an unknown virtual ID. */
	reqs[0] = (struct iommu_viommu_invalidate_selftest){ .vdev_id = 0x99, .cache_id = 1 };
	reqs[1] = (struct iommu_viommu_invalidate_selftest){ .vdev_id = 0x98, .cache_id = 2 };
	num = 2;
	ASSERT_ERRNO(EINVAL, invalidate(self->fd, self->viommu, reqs,
					IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, sizeof(reqs[0]),
					&num));
	ASSERT_EQ(1u, num);
	ASSERT_EQ(0, check_dev_cache(self->fd, self->idev, 1, 0));
	ASSERT_EQ(0, check_dev_cache(self->fd, self->idev, 2, IOMMU_TEST_DEV_CACHE_DEFAULT));
	reqs[1] = (struct iommu_viommu_invalidate_selftest){ .vdev_id = 0x99, .cache_id = 4 };
	num = 2;
	ASSERT_ERRNO(EINVAL, invalidate(self->fd, self->viommu, reqs,
					IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, sizeof(reqs[0]),
					&num));
	ASSERT_EQ(1u, num);
	reqs[1] = (struct iommu_viommu_invalidate_selftest){ .flags = 4, .vdev_id = 0x99 };
	num = 2;
	ASSERT_ERRNO(EOPNOTSUPP, invalidate(self->fd, self->viommu, reqs,
					    IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST,
					    sizeof(reqs[0]), &num));
	ASSERT_EQ(1u, num);
	reqs[0] = (struct iommu_viommu_invalidate_selftest){
		.flags = IOMMU_TEST_INVALIDATE_FLAG_ALL, .vdev_id = 0x99 };
	num = 1;
	ASSERT_EQ(0, invalidate(self->fd, self->viommu, reqs,
				IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST, sizeof(reqs[0]), &num));
	for (i = 0; i != MOCK_DEV_CACHE_NUM; i++)
		ASSERT_EQ(0, check_dev_cache(self->fd, self->idev, i, 0));
}

struct vevent {
	struct iommufd_vevent_header hdr;
	struct iommu_viommu_event_selftest data;
};

TEST_F(viommu, veventq)
{
	struct pollfd pfd;
	struct vevent ev[4];
	uint32_t vdev, nested, q, q2;
	char small[8];
	int efd, efd2;

	ASSERT_ERRNO(EINVAL, veventq_alloc(self->fd, self->viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 0,
					   &q, &efd));
	ASSERT_ERRNO(EINVAL, veventq_alloc(self->fd, self->viommu, IOMMU_VEVENTQ_TYPE_SELFTEST,
					   (1u << 19) + 1, &q, &efd));
	/* The bound itself is allowed (v7.2's VEVENTQ_MAX_DEPTH). */
	ASSERT_EQ(0, veventq_alloc(self->fd, self->viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 1u << 19,
				   &q, &efd));
	ASSERT_EQ(0, uiommu_close(efd));
	ASSERT_EQ(0, destroy(self->fd, q));
	ASSERT_ERRNO(EOPNOTSUPP, veventq_alloc(self->fd, self->viommu, IOMMU_VEVENTQ_TYPE_DEFAULT,
					       2, &q, &efd));
	ASSERT_ERRNO(ENOENT, veventq_alloc(self->fd, 9999, IOMMU_VEVENTQ_TYPE_SELFTEST, 2, &q,
					   &efd));
	{
		struct iommu_veventq_alloc cmd = { .size = sizeof(cmd), .flags = 1,
						   .viommu_id = self->viommu,
						   .type = IOMMU_VEVENTQ_TYPE_SELFTEST,
						   .veventq_depth = 2 };

		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_VEVENTQ_ALLOC, &cmd));
		cmd.flags = 0;
		cmd.__reserved = 1;
		ASSERT_ERRNO(EOPNOTSUPP, ioc(self->fd, IOMMU_VEVENTQ_ALLOC, &cmd));
	}
	ASSERT_EQ(0, veventq_alloc(self->fd, self->viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 2, &q,
				   &efd));
	ASSERT_TRUE(uiommu_event_is_fd(efd));
	ASSERT_ERRNO(EEXIST, veventq_alloc(self->fd, self->viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 2,
					   &q2, &efd2));
	ASSERT_EQ(0, veventq_alloc(self->fd, self->viommu, IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, 2, &q2,
				   &efd2));
	{
		/* EEXIST writes nothing back and makes no fd. */
		struct iommu_veventq_alloc cmd = { .size = sizeof(cmd), .viommu_id = self->viommu,
						   .type = IOMMU_VEVENTQ_TYPE_SELFTEST,
						   .veventq_depth = 2, .out_veventq_id = 0x5a5a,
						   .out_veventq_fd = 0x6b6b };
		struct uiommu_stats before, after;

		ASSERT_EQ(0, uiommu_stats_get(&before));
		ASSERT_ERRNO(EEXIST, ioc(self->fd, IOMMU_VEVENTQ_ALLOC, &cmd));
		ASSERT_EQ(0x5a5au, cmd.out_veventq_id);
		ASSERT_EQ(0x6b6bu, cmd.out_veventq_fd);
		ASSERT_EQ(0, uiommu_stats_get(&after));
		ASSERT_EQ(before.objects, after.objects);
		ASSERT_EQ(before.allocations, after.allocations);
	}

	/* Nothing to report until the device sits on the vIOMMU's nested HWPT. */
	ASSERT_ERRNO(ENOENT, trigger_vevent(self->fd, self->idev));
	ASSERT_EQ(0, vdevice_alloc(self->fd, self->viommu, self->idev, 0x99, &vdev));
	ASSERT_ERRNO(ENOENT, trigger_vevent(self->fd, self->idev));
	ASSERT_EQ(0, nested_alloc(self->fd, self->idev, self->viommu, 0, &nested));
	ASSERT_EQ(0, mock_replace(self->fd, self->stdev, nested));

	/* Empty: no POLLIN, a read returns 0 at once, but never of less than a header. */
	pfd = (struct pollfd){ .fd = efd, .events = POLLIN };
	ASSERT_EQ(0, poll(&pfd, 1, 0));
	ASSERT_EQ(0, uiommu_event_read(efd, ev, sizeof(ev)));
	ASSERT_EQ(0, uiommu_event_read(efd, small, sizeof(struct iommufd_vevent_header)));
	ASSERT_ERRNO(EINVAL, uiommu_event_read(efd, small, 0));
	ASSERT_ERRNO(EINVAL, uiommu_event_read(efd, small, sizeof(struct iommufd_vevent_header) - 1));

	ASSERT_EQ(0, trigger_vevent(self->fd, self->idev));
	ASSERT_EQ(1, poll(&pfd, 1, 1000));
	ASSERT_TRUE(pfd.revents & POLLIN);
	/* Too small for the next event: EINVAL; an offset: ESPIPE. */
	ASSERT_ERRNO(EINVAL, uiommu_event_read(efd, small, 0));
	ASSERT_ERRNO(EINVAL, uiommu_event_read(efd, small, 7));
	ASSERT_ERRNO(EINVAL, uiommu_event_read(efd, small, 8));
	ASSERT_ERRNO(ESPIPE, uiommu_event_pread(efd, ev, sizeof(ev), 1));
	/* A NULL buffer is EFAULT and the event stays (found by fuzzing: NULL + n in the copy). */
	ASSERT_ERRNO(EFAULT, uiommu_event_read(efd, NULL, sizeof(ev)));
	ASSERT_EQ((ssize_t)sizeof(ev[0]), uiommu_event_read(efd, ev, sizeof(ev)));
	ASSERT_EQ(0u, ev[0].hdr.flags);
	ASSERT_EQ(0u, ev[0].hdr.sequence);
	ASSERT_EQ(0x99u, ev[0].data.virt_id);
	pfd.revents = 0;
	ASSERT_EQ(0, poll(&pfd, 1, 0));

	/* Depth 2, three events: two, then one LOST_EVENTS header; the sequence counts on. */
	ASSERT_EQ(0, trigger_vevent(self->fd, self->idev));
	ASSERT_EQ(0, trigger_vevent(self->fd, self->idev));
	ASSERT_EQ(0, trigger_vevent(self->fd, self->idev));
	ASSERT_EQ(0, trigger_vevent(self->fd, self->idev));
	/* Only whole events: a buffer for one and a half gets one. */
	ASSERT_EQ((ssize_t)sizeof(ev[0]), uiommu_event_read(efd, ev, sizeof(ev[0]) + 6));
	ASSERT_EQ(1u, ev[0].hdr.sequence);
	memset(ev, 0, sizeof(ev));
	ASSERT_EQ((ssize_t)(sizeof(ev[0]) + sizeof(struct iommufd_vevent_header)),
		  uiommu_event_read(efd, ev, sizeof(ev)));
	ASSERT_EQ(2u, ev[0].hdr.sequence);
	{
		struct iommufd_vevent_header *lost = (void *)&ev[1];

		ASSERT_EQ((uint32_t)IOMMU_VEVENTQ_FLAG_LOST_EVENTS, lost->flags);
		ASSERT_EQ(4u, lost->sequence);
	}
	ASSERT_EQ(0, trigger_vevent(self->fd, self->idev));
	ASSERT_EQ((ssize_t)sizeof(ev[0]), uiommu_event_read(efd, ev, sizeof(ev)));
	ASSERT_EQ(0u, ev[0].hdr.flags);
	ASSERT_EQ(5u, ev[0].hdr.sequence);

	/* The graph: the queue holds the vIOMMU; the open fd holds the queue. */
	ASSERT_EQ(0, mock_replace(self->fd, self->stdev, self->ioas));
	ASSERT_EQ(0, destroy(self->fd, nested));
	ASSERT_EQ(0, destroy(self->fd, vdev));
	ASSERT_ERRNO(EBUSY, destroy(self->fd, self->viommu));
	ASSERT_ERRNO(EBUSY, destroy(self->fd, q));
	ASSERT_EQ(0, uiommu_close(efd));
	ASSERT_FALSE(uiommu_event_is_fd(efd));
	ASSERT_EQ(0, destroy(self->fd, q));
	ASSERT_ERRNO(EBUSY, destroy(self->fd, self->viommu));
	ASSERT_EQ(0, uiommu_close(efd2));
	ASSERT_EQ(0, destroy(self->fd, q2));
	ASSERT_EQ(0, destroy(self->fd, self->viommu));
}

/* A vEVENTQ of depth 2 with the device on a nested HWPT of the fixture's vIOMMU. */
static void veventq_setup(struct __h_test *_metadata, FIXTURE_DATA(viommu) *self, int *efd)
{
	uint32_t vdev, nested, q;

	ASSERT_EQ(0, veventq_alloc(self->fd, self->viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 2, &q,
				   efd));
	ASSERT_EQ(0, vdevice_alloc(self->fd, self->viommu, self->idev, 0x77, &vdev));
	ASSERT_EQ(0, nested_alloc(self->fd, self->idev, self->viommu, 0, &nested));
	ASSERT_EQ(0, mock_replace(self->fd, self->stdev, nested));
}

/*
 * The LOST_EVENTS header only ever ends the queue: an event offered after it, queued or
 * dropped, takes its place, so the reader sees the gap in the sequence instead.
 */
TEST_F(viommu, veventq_lost_header_only_at_tail)
{
	struct vevent ev[4];
	int efd;

	veventq_setup(_metadata, self, &efd);
	ASSERT_EQ(0, trigger_vevent(self->fd, self->idev)); /* 0 */
	ASSERT_EQ(0, trigger_vevent(self->fd, self->idev)); /* 1 */
	ASSERT_EQ(0, trigger_vevent(self->fd, self->idev)); /* 2: full, lost */
	ASSERT_EQ((ssize_t)sizeof(ev[0]), uiommu_event_read(efd, ev, sizeof(ev[0])));
	ASSERT_EQ(0u, ev[0].hdr.sequence);
	ASSERT_EQ(0, trigger_vevent(self->fd, self->idev)); /* 3: queued, the header goes */
	memset(ev, 0, sizeof(ev));
	ASSERT_EQ((ssize_t)(2 * sizeof(ev[0])), uiommu_event_read(efd, ev, sizeof(ev)));
	ASSERT_EQ(0u, ev[0].hdr.flags);
	ASSERT_EQ(1u, ev[0].hdr.sequence);
	ASSERT_EQ(0u, ev[1].hdr.flags);
	ASSERT_EQ(3u, ev[1].hdr.sequence);
	ASSERT_EQ(0x77u, ev[1].data.virt_id);
	ASSERT_EQ(0, uiommu_event_read(efd, ev, sizeof(ev)));

	/* A lost header alone: it fits any count of a header, whatever the payloads' size. */
	ASSERT_EQ(0, trigger_vevent(self->fd, self->idev)); /* 4 */
	ASSERT_EQ(0, trigger_vevent(self->fd, self->idev)); /* 5 */
	ASSERT_EQ(0, trigger_vevent(self->fd, self->idev)); /* 6: lost */
	ASSERT_EQ(0, trigger_vevent(self->fd, self->idev)); /* 7: lost, the header moves on */
	ASSERT_EQ((ssize_t)(2 * sizeof(ev[0])), uiommu_event_read(efd, ev, 2 * sizeof(ev[0])));
	ASSERT_EQ(5u, ev[1].hdr.sequence);
	memset(ev, 0, sizeof(ev));
	ASSERT_EQ((ssize_t)sizeof(ev[0].hdr), uiommu_event_read(efd, ev, sizeof(ev[0].hdr)));
	ASSERT_EQ((uint32_t)IOMMU_VEVENTQ_FLAG_LOST_EVENTS, ev[0].hdr.flags);
	ASSERT_EQ(7u, ev[0].hdr.sequence);
	ASSERT_EQ(0, uiommu_event_read(efd, ev, sizeof(ev)));
	ASSERT_EQ(0, uiommu_close(efd));
}

/*
 * A copy that fails leaves the event queued, header and all: EFAULT when nothing was read, the
 * bytes of the whole events before it otherwise.
 */
TEST_F(viommu, veventq_read_efault)
{
	long pg = sysconf(_SC_PAGESIZE);
	const size_t evsz = sizeof(struct vevent);
	struct vevent ev[2];
	char *map;
	int efd;

	veventq_setup(_metadata, self, &efd);
	map = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(map != MAP_FAILED);
	ASSERT_EQ(0, mprotect(map + pg, pg, PROT_NONE));
	ASSERT_EQ(0, trigger_vevent(self->fd, self->idev));
	ASSERT_EQ(0, trigger_vevent(self->fd, self->idev));
	ASSERT_ERRNO(EFAULT, uiommu_event_read(efd, map + pg, evsz));
	/* The header fits before the hole, the payload does not: the header is taken back. */
	ASSERT_ERRNO(EFAULT, uiommu_event_read(efd, map + pg - sizeof(ev[0].hdr), evsz));
	/* One whole event before the hole, the second straddles it: one event. */
	ASSERT_EQ((ssize_t)evsz, uiommu_event_read(efd, map + pg - evsz - 4, 2 * evsz));
	memcpy(ev, map + pg - evsz - 4, evsz);
	ASSERT_EQ(0u, ev[0].hdr.sequence);
	ASSERT_EQ((ssize_t)evsz, uiommu_event_read(efd, ev, sizeof(ev)));
	ASSERT_EQ(1u, ev[0].hdr.sequence);
	ASSERT_EQ(0x77u, ev[0].data.virt_id);
	munmap(map, 2 * pg);
	ASSERT_EQ(0, uiommu_close(efd));
}

/*
 * Fail each step of TRIGGER_VEVENT in turn: an event that cannot be allocated is lost (ENOMEM,
 * and the LOST_EVENTS header with its sequence), any other failure leaves the queue as it was.
 */
TEST_F(viommu, veventq_report_fail_nth)
{
	unsigned long nth;
	struct vevent ev[2];
	uint32_t seq = 0;
	bool lost_seen = false;
	ssize_t n;
	int efd, rc;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	veventq_setup(_metadata, self, &efd);
	for (nth = 1; nth < 100; nth++) {
		uiommu_fail_nth_arm(nth);
		rc = trigger_vevent(self->fd, self->idev);
		uiommu_fail_nth_disarm();
		memset(ev, 0, sizeof(ev));
		n = uiommu_event_read(efd, ev, sizeof(ev));
		if (!rc) {
			ASSERT_EQ((ssize_t)sizeof(ev[0]), n);
			ASSERT_EQ(0u, ev[0].hdr.flags);
			ASSERT_EQ(seq, ev[0].hdr.sequence);
			break;
		}
		if (n == 0)
			continue; /* failed before the queue: nothing offered, no sequence used */
		ASSERT_EQ(ENOMEM, errno);
		ASSERT_EQ((ssize_t)sizeof(ev[0].hdr), n);
		ASSERT_EQ((uint32_t)IOMMU_VEVENTQ_FLAG_LOST_EVENTS, ev[0].hdr.flags);
		ASSERT_EQ(seq, ev[0].hdr.sequence);
		seq++;
		lost_seen = true;
	}
	ASSERT_LT(nth, 100ul);
	ASSERT_TRUE(lost_seen);
	ASSERT_EQ(0, uiommu_close(efd));
}

/*
 * Fail each step of a two-entry vIOMMU invalidation on a fresh device: entry_num comes back as
 * the number of entries handled, and exactly those took effect. Only a failed copy of the
 * answer itself (EFAULT, entry_num as given) cannot say.
 */
TEST_F(viommu, invalidate_fail_nth)
{
	struct iommu_viommu_invalidate_selftest reqs[2] = {
		{ .vdev_id = 0x55, .cache_id = 1 },
		{ .vdev_id = 0x55, .cache_id = 2 },
	};
	unsigned long nth;
	uint32_t stdev, idev, vdev, num;
	int rc;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	for (nth = 1; nth < 100; nth++) {
		ASSERT_EQ(0, mock_domain(self->fd, self->ioas, &stdev, NULL, &idev));
		ASSERT_EQ(0, vdevice_alloc(self->fd, self->viommu, idev, 0x55, &vdev));
		num = 2;
		uiommu_fail_nth_arm(nth);
		rc = invalidate(self->fd, self->viommu, reqs, IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST,
				sizeof(reqs[0]), &num);
		uiommu_fail_nth_disarm();
		if (rc) {
			/* A copy, or the lookup of the vIOMMU (ENOENT, as a failed xa_load would). */
			ASSERT_TRUE(errno == EFAULT || errno == ENOMEM || errno == ENOENT);
			ASSERT_LE(num, 2u);
		} else {
			ASSERT_EQ(2u, num);
		}
		if (!rc || num < 2) {
			ASSERT_EQ(0, check_dev_cache(self->fd, idev, 1,
						     num >= 1 ? 0 : IOMMU_TEST_DEV_CACHE_DEFAULT));
			ASSERT_EQ(0, check_dev_cache(self->fd, idev, 2,
						     num >= 2 ? 0 : IOMMU_TEST_DEV_CACHE_DEFAULT));
		}
		ASSERT_EQ(0, destroy(self->fd, vdev));
		ASSERT_EQ(0, destroy(self->fd, stdev));
		if (!rc)
			break;
	}
	ASSERT_LT(nth, 100ul);
}

/* The event fd keeps the context: closing /dev/iommu first releases it only at the fd's close. */
TEST(veventq_fd_outlives_iommufd)
{
	struct uiommu_stats before, mid, after;
	uint32_t ioas, idev, parent, viommu, q;
	int fd, efd;

	/* The first open of the process sets up tables that live as long as it. */
	uiommu_close(uiommu_open(O_RDWR));
	ASSERT_EQ(0, uiommu_stats_get(&before));
	fd = uiommu_open(O_RDWR);
	ASSERT_GE(fd, 0);
	ioas = ioas_alloc(fd);
	ASSERT_EQ(0, mock_domain(fd, ioas, NULL, NULL, &idev));
	ASSERT_EQ(0, parent_alloc(fd, idev, ioas, &parent));
	ASSERT_EQ(0, viommu_alloc(fd, idev, parent, IOMMU_VIOMMU_TYPE_SELFTEST, NULL, 0,
				  &viommu));
	ASSERT_EQ(0, veventq_alloc(fd, viommu, IOMMU_VEVENTQ_TYPE_SELFTEST, 4, &q, &efd));
	ASSERT_EQ(0, uiommu_close(fd));
	ASSERT_EQ(0, uiommu_stats_get(&mid));
	ASSERT_EQ(before.contexts + 1, mid.contexts);
	ASSERT_EQ(0, uiommu_close(efd));
	ASSERT_EQ(0, uiommu_stats_get(&after));
	ASSERT_EQ(before.contexts, after.contexts);
	ASSERT_EQ(before.objects, after.objects);
	ASSERT_EQ(before.allocations, after.allocations);
}

/* Fail the Nth step of VIOMMU_ALLOC or VDEVICE_ALLOC: nothing may be left behind. */
/*
 * Lookups racing a device's publication. One thread binds and destroys mock devices; a new
 * object takes the lowest free ID, so the readers can aim at the IDs about to appear and hit
 * each device while IOMMU_TEST_OP_MOCK_DOMAIN is still publishing it. A lookup that finds the
 * device reads its struct device (DEV_CHECK_CACHE in the selftest, VDEVICE_ALLOC in the vIOMMU
 * code), and under TSan that read must be ordered after the bind's stores.
 */
#define PUBLISH_ROUNDS 3000
#define PUBLISH_READERS 2
#define PUBLISH_SPAN 4 /* IDs probed above the binder's last one: stdev, idev, hwpt, spare */

struct publish_race {
	int fd;
	uint32_t ioas, viommu;
	atomic_uint base;    /* the binder's last stdev ID: the next ones appear just around it */
	atomic_bool done;
	atomic_long found;   /* lookups that found a device */
	atomic_int bad;      /* an errno outside the documented ones, or a failed bind */
};

/* IOMMU_DESTROY, again while a lookup's transient hold makes it EBUSY (as in the kernel). */
static int destroy_busy(int fd, uint32_t id)
{
	int rc;

	while ((rc = destroy(fd, id)) && errno == EBUSY)
		sched_yield();
	return rc;
}

static void *publish_binder(void *arg)
{
	struct publish_race *r = arg;
	uint32_t stdev;

	for (int i = 0; i < PUBLISH_ROUNDS; i++) {
		if (mock_domain(r->fd, r->ioas, &stdev, NULL, NULL)) {
			atomic_store(&r->bad, errno);
			break;
		}
		/* The first device lives until a reader has found it: the race surely ran. */
		while (!i && !atomic_load(&r->found) && !atomic_load(&r->bad))
			sched_yield();
		if (destroy_busy(r->fd, stdev)) {
			atomic_store(&r->bad, errno ? errno : -1);
			break;
		}
		atomic_store(&r->base, stdev);
	}
	atomic_store(&r->done, true);
	return NULL;
}

static void *publish_reader(void *arg)
{
	struct publish_race *r = arg;
	uint64_t virt = (uint64_t)(uintptr_t)pthread_self() << 16;

	while (!atomic_load(&r->done)) {
		uint32_t base = atomic_load(&r->base);

		for (uint32_t id = base; id < base + PUBLISH_SPAN; id++) {
			uint32_t vdev;

			/* 0: found; ENOENT: not (yet, or no longer) a device. */
			if (!check_dev_cache(r->fd, id, 0, IOMMU_TEST_DEV_CACHE_DEFAULT))
				atomic_fetch_add(&r->found, 1);
			else if (errno != ENOENT)
				atomic_store(&r->bad, errno);
			/* EEXIST: the other reader's vDEVICE holds this device. */
			if (!vdevice_alloc(r->fd, r->viommu, id, ++virt, &vdev)) {
				atomic_fetch_add(&r->found, 1);
				/* ENOENT: the device went first and took its vDEVICE along. */
				if (destroy_busy(r->fd, vdev) && errno != ENOENT)
					atomic_store(&r->bad, errno);
			} else if (errno != ENOENT && errno != EEXIST) {
				atomic_store(&r->bad, errno);
			}
		}
	}
	return NULL;
}

TEST_F(viommu, lookups_race_device_publication)
{
	struct publish_race r = { .fd = self->fd, .ioas = self->ioas, .viommu = self->viommu };
	pthread_t binder, readers[PUBLISH_READERS];
	uint32_t stdev;

	/* The first ID the binder will get: what the readers aim at from the start. */
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, &stdev, NULL, NULL));
	ASSERT_EQ(0, destroy(self->fd, stdev));
	atomic_store(&r.base, stdev);
	for (int i = 0; i < PUBLISH_READERS; i++)
		ASSERT_EQ(0, pthread_create(&readers[i], NULL, publish_reader, &r));
	ASSERT_EQ(0, pthread_create(&binder, NULL, publish_binder, &r));
	pthread_join(binder, NULL);
	for (int i = 0; i < PUBLISH_READERS; i++)
		pthread_join(readers[i], NULL);
	ASSERT_EQ(0, atomic_load(&r.bad));
	/* The readers did meet live devices, so the race was run, not just the loops. */
	ASSERT_GT(atomic_load(&r.found), 0);
}

static void sweep(struct __h_test *_metadata, bool vdevice)
{
	unsigned long nth;

	if (!uiommu_fail_nth_available())
		return;
	for (nth = 1; nth < 1000; nth++) {
		struct iommu_viommu_selftest data = { .in_data = 7 };
		struct uiommu_stats before, after;
		uint32_t ioas, idev, parent, viommu = 0, out;
		unsigned long left;
		int fd = uiommu_open(O_RDWR), rc;

		ioas = ioas_alloc(fd);
		ASSERT_EQ(0, mock_domain(fd, ioas, NULL, NULL, &idev));
		ASSERT_EQ(0, parent_alloc(fd, idev, ioas, &parent));
		if (vdevice)
			ASSERT_EQ(0, viommu_alloc(fd, idev, parent, IOMMU_VIOMMU_TYPE_SELFTEST, NULL,
						  0, &viommu));
		ASSERT_EQ(0, uiommu_stats_get(&before));
		uiommu_fail_nth_arm(nth);
		if (vdevice)
			rc = vdevice_alloc(fd, viommu, idev, 5, &out);
		else
			rc = viommu_alloc(fd, idev, parent, IOMMU_VIOMMU_TYPE_SELFTEST, &data,
					  sizeof(data), &out);
		left = uiommu_fail_nth_disarm();
		if (left) {
			ASSERT_EQ(0, rc);
			uiommu_close(fd);
			break;
		}
		ASSERT_NE(0, rc);
		ASSERT_EQ(0, uiommu_stats_get(&after));
		ASSERT_EQ(before.objects, after.objects);
		ASSERT_EQ(before.allocations, after.allocations);
		/* Nothing holds the parent or the vIOMMU after the failure. */
		if (vdevice)
			ASSERT_EQ(0, destroy(fd, viommu));
		ASSERT_EQ(0, destroy(fd, parent));
		uiommu_close(fd);
	}
	ASSERT_TRUE(nth > 1 && nth < 1000);
}

TEST(fail_nth_viommu_alloc)
{
	sweep(_metadata, false);
}

TEST(fail_nth_vdevice_alloc)
{
	sweep(_metadata, true);
}

TEST_HARNESS_MAIN
