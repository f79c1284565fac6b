// SPDX-License-Identifier: MIT
/*
 * libFuzzer harness: the wire between a serving process and its clients (src/iommufd/remote.c,
 * docs/processes.md), from the client's side.
 *
 * The harness serves one context (an iommufd fd with an IOAS) and, for each input, connects
 * to its own server as another process would and sends what the input says:
 *
 *   byte 0    bit 0: open with a well-formed HELLO (a pidfd, /proc/self/mem and maps handed
 *             over), else the input's bytes are the HELLO too; bit 1: patch the file's real
 *             token and secret into each request, else they are the input's; bit 2: those of
 *             the context's access fd instead (the direct path's TRANSLATE names an access),
 *             when the build has the test command
 *   then      requests of sizeof(struct wire_req) bytes each (a short tail is sent as is),
 *             whose addresses (the ioctl argument, a read/write buffer) are folded into a
 *             scratch area of the harness, so that a reply the server writes into "the
 *             client's memory" cannot land on the harness's own state; a TRANSLATE's IOVA is
 *             folded into the access's mapped range (its length may run past it), and its
 *             flags are the input's. WIRE_DIRECT's reply carries a memfd and a pidfd, which
 *             the harness's reads drop.
 *             bit 3 (with bit 0, where the build has the test command): the holds of
 *             mappings (mmap.c): an MMAP names the context's vIOMMU region (its length and
 *             flags are the input's), and the harness reads each reply before the next
 *             request, so that a MUNMAP or an MMAP_FORK names the last hold a reply gave (or
 *             the one before), an MMAP_FORK with that hold's secret unless its arg[1] is odd.
 *             Once the server has hung up on the client, the vIOMMU must be free to destroy:
 *             a client that is gone holds nothing (the harness makes it again).
 *
 * then half-closes and reads until the server hangs up. Afterwards the context must still
 * answer in-process (an IOAS_ALLOC and its DESTROY), whatever the input did to its connection:
 * a client's garbage touches nothing but that client. The server thread's own checks (magic,
 * version, SO_PEERCRED, the secret) are what is fuzzed; a crash or a hang is the finding.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "iommufd/remote.h"
#include "../wire_client.h"
#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"

#define SCRATCH_LEN (64 * 1024)
#define MAPPED_LEN (64 * 1024)

static int ctx_fd = -1;
static struct wire_fd_header hdr, access_hdr;
static bool have_access;
static uint64_t mapped_iova;
static uint8_t *scratch;
/* The vIOMMU whose region MMAPs name (bit 3), on a mock device's nesting parent. */
static uint32_t region_dev, region_hwpt, region_viommu;
static uint64_t region_off, region_len;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Memory of ours mapped in the IOAS, and an access on it (the selftest's): what TRANSLATE
 * answers about. Without the test command there is none, and TRANSLATE answers EBADFD.
 */
static void access_init(uint32_t ioas)
{
	void *mem = mmap(NULL, MAPPED_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
	struct iommu_ioas_map map = { .size = sizeof(map), .ioas_id = ioas, .length = MAPPED_LEN,
				      .flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE };
	struct iommu_test_cmd create = { .size = sizeof(create),
					 .op = IOMMU_TEST_OP_CREATE_ACCESS, .id = ioas };
	int access;

	if (mem == MAP_FAILED)
		abort();
	map.user_va = (uintptr_t)mem;
	if (uiommu_ioctl(ctx_fd, IOMMU_IOAS_MAP, &map))
		abort();
	mapped_iova = map.iova;
	if (uiommu_ioctl(ctx_fd, IOMMU_TEST_CMD, &create))
		return;
	access = (int)create.create_access.out_access_fd;
	if (recv(access, &access_hdr, sizeof(access_hdr), MSG_PEEK) != (ssize_t)sizeof(access_hdr))
		abort();
	have_access = true;
}

/* A new vIOMMU with its region (the selftest's). */
static void region_make(void)
{
	struct iommu_viommu_selftest data = { .in_data = 0xabcd };
	struct iommu_viommu_alloc va = { .size = sizeof(va), .type = IOMMU_VIOMMU_TYPE_SELFTEST,
					 .dev_id = region_dev, .hwpt_id = region_hwpt,
					 .data_len = sizeof(data), .data_uptr = (uintptr_t)&data };

	if (uiommu_ioctl(ctx_fd, IOMMU_VIOMMU_ALLOC, &va))
		abort();
	region_viommu = va.out_viommu_id;
	region_off = data.out_mmap_offset;
	region_len = data.out_mmap_length;
}

/*
 * On an IOAS of its own (the access's mapping could meet the mock device's reserved range).
 * Without the test command there is none, and bit 3 is ignored.
 */
static void region_init(void)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct iommu_test_cmd md = { .size = sizeof(md), .op = IOMMU_TEST_OP_MOCK_DOMAIN };
	struct iommu_hwpt_alloc hwpt = { .size = sizeof(hwpt),
					 .flags = IOMMU_HWPT_ALLOC_NEST_PARENT };

	if (uiommu_ioctl(ctx_fd, IOMMU_IOAS_ALLOC, &alloc))
		abort();
	md.id = hwpt.pt_id = alloc.out_ioas_id;
	if (uiommu_ioctl(ctx_fd, IOMMU_TEST_CMD, &md))
		return;
	hwpt.dev_id = md.mock_domain.out_idev_id;
	if (uiommu_ioctl(ctx_fd, IOMMU_HWPT_ALLOC, &hwpt))
		abort();
	region_dev = hwpt.dev_id;
	region_hwpt = hwpt.out_hwpt_id;
	region_make();
}

/* The hold a reply named last (bit 3). */
static struct wire_hold hold_last;

static void hold_patch(struct wire_req *req)
{
	if (req->op == WIRE_MMAP) {
		req->arg[0] %= 3 * region_len + 1;
		req->arg[3] = region_off;
	} else if (req->op == WIRE_MUNMAP || req->op == WIRE_MMAP_FORK) {
		if (req->op == WIRE_MMAP_FORK && !(req->arg[1] & 1))
			memcpy(req->secret, hold_last.secret, sizeof(req->secret));
		req->arg[0] = hold_last.id - (req->arg[0] & 1);
	}
}

/*
 * A request's reply, read before the next one (bit 3). 0, or -1: the server hung up. A reply
 * that carries fds comes in two parts (the fds with its first byte, remote.c), which one recv()
 * does not join.
 */
static int hold_reply(int s, const struct wire_req *req)
{
	struct wire_rep rep;

	for (size_t got = 0; got < sizeof(rep);) {
		ssize_t n = recv(s, (char *)&rep + got, sizeof(rep) - got, MSG_WAITALL);

		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	if ((req->op == WIRE_MMAP || req->op == WIRE_MMAP_FORK) && !rep.rc) {
		hold_last.id = rep.val[0];
		memcpy(hold_last.secret, &rep.val[1], sizeof(hold_last.secret));
	}
	return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };

	(void)argc;
	(void)argv;
	ctx_fd = uiommu_open(O_RDWR | O_CLOEXEC);
	scratch = calloc(1, SCRATCH_LEN);
	if (ctx_fd < 0 || !scratch || uiommu_ioctl(ctx_fd, IOMMU_IOAS_ALLOC, &alloc) ||
	    recv(ctx_fd, &hdr, sizeof(hdr), MSG_PEEK) != (ssize_t)sizeof(hdr))
		abort();
	access_init(alloc.out_ioas_id);
	region_init();
	return 0;
}

static uint64_t fold(uint64_t addr)
{
	return (uint64_t)(uintptr_t)scratch + addr % (SCRATCH_LEN - 256);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct iommu_destroy destroy = { .size = sizeof(destroy) };
	uint8_t mode, buf[512];
	size_t off = 1;
	bool holds;
	int s;

	if (!size)
		return 0;
	mode = data[0];
	s = wire_client_connect(&hdr);
	if (s < 0)
		abort(); /* the server must be there */
	holds = (mode & 9) == 9 && region_viommu;
	if ((mode & 1) && wire_client_hello(s, 42))
		goto out_close;
	/* The HELLO's answer. */
	if (holds && recv(s, buf, sizeof(struct wire_rep), MSG_WAITALL) != sizeof(struct wire_rep))
		goto out_close;
	while (off < size) {
		struct wire_req req;
		size_t n = size - off < sizeof(req) ? size - off : sizeof(req);

		memset(&req, 0, sizeof(req));
		memcpy(&req, data + off, n);
		off += n;
		if (n == sizeof(req)) {
			if (mode & 2) {
				const struct wire_fd_header *h =
					(mode & 4) && have_access ? &access_hdr : &hdr;

				req.magic = WIRE_MAGIC;
				req.token = h->token;
				memcpy(req.secret, h->secret, sizeof(req.secret));
			}
			if (req.op == WIRE_TRANSLATE) {
				req.arg[0] = mapped_iova + req.arg[0] % MAPPED_LEN;
				req.arg[1] %= 2 * MAPPED_LEN;
			} else if (holds && (req.op == WIRE_MMAP || req.op == WIRE_MUNMAP ||
					     req.op == WIRE_MMAP_FORK)) {
				hold_patch(&req);
			} else {
				req.arg[0] = req.op == WIRE_IOCTL ? req.arg[0] : fold(req.arg[0]);
				req.arg[1] = req.op == WIRE_IOCTL ? fold(req.arg[1]) : req.arg[1] % 256;
			}
		}
		if (send(s, &req, n, MSG_NOSIGNAL) != (ssize_t)n)
			break;
		if (holds && n == sizeof(req) && hold_reply(s, &req))
			break;
	}
	shutdown(s, SHUT_WR);
	/* The server answers what it parsed, then hangs up: read to the end. */
	while (read(s, buf, sizeof(buf)) > 0)
		;
out_close:
	close(s);
	/* The server hung up on it (we read to its EOF): the client holds nothing. */
	if (holds) {
		destroy.id = region_viommu;
		if (uiommu_ioctl(ctx_fd, IOMMU_DESTROY, &destroy))
			abort();
		region_make();
	}
	/* Whatever this client did, the context still answers its own process. */
	if (uiommu_ioctl(ctx_fd, IOMMU_IOAS_ALLOC, &alloc))
		abort();
	destroy.id = alloc.out_ioas_id;
	if (uiommu_ioctl(ctx_fd, IOMMU_DESTROY, &destroy))
		abort();
	return 0;
}
