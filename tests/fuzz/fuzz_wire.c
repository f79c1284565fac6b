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
 *             bit 4: open with a well-formed SETTLE instead (bit 0 is then ignored): the
 *             server settles, answers and hangs up, whatever follows.
 *             bit 5: the token and secret of the context's fault queue instead (an event
 *             file: READ, WRITE and CLAIM reach its code); a CLAIM names the harness's fd of
 *             it, or with an odd arg[0] another fd of the harness (arg[0] % 64). A
 *             VFIO_BIND's arg[0] is a minor (arg[0] % 8), so that it reaches the bind; a
 *             VFIO_GROUP's a group number (arg[0] % 16) and its arg[1] none (odd) or an fd
 *             of the harness (arg[1] % 64) for the claim it would share.
 *
 * then half-closes and reads until the server hangs up. Afterwards the context must still
 * answer in-process (an IOAS_ALLOC and its DESTROY), whatever the input did to its connection:
 * a client's garbage touches nothing but that client. The server thread's own checks (magic,
 * version, SO_PEERCRED, the secret) are what is fuzzed; a crash or a hang is the finding.
 *
 * `fuzz_wire -dump=DIR` writes the seed corpus (seeds_dump() below) into DIR: one input per
 * kind of request and a SETTLE, each well formed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "iommufd/remote.h"
#include "../wire_client.h"
#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"
#include "uiommu/uiommu.h"
#include "seed.h"

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
/* The fault queue's fd, and its token and secret (learned as a holder does: CLAIM), bit 5. */
static int fault_fd = -1;
static struct wire_fd_header fault_hdr;

static void seeds_dump(const char *dir);

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

/* A reply of @len bytes (the fds it may carry are dropped). 0 or -1. */
static int reply_read(int s, void *buf, size_t len)
{
	for (size_t got = 0; got < len;) {
		ssize_t n = recv(s, (char *)buf + got, len - got, MSG_WAITALL);

		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

/*
 * A fault queue of the context, and its secret, which an event fd's holder learns by CLAIM
 * (its token is in the name its peer is bound to: remote.h, WIRE_PEER_NAME_LEN).
 */
static void fault_init(void)
{
	struct iommu_fault_alloc fa = { .size = sizeof(fa) };
	struct sockaddr_un sun;
	socklen_t len = sizeof(sun);
	struct wire_req req = { .magic = WIRE_MAGIC, .op = WIRE_CLAIM };
	struct wire_rep rep;
	const char *dot;
	int s;

	if (uiommu_ioctl(ctx_fd, IOMMU_FAULT_QUEUE_ALLOC, &fa) ||
	    getpeername((int)fa.out_fault_fd, (struct sockaddr *)&sun, &len) ||
	    len <= offsetof(struct sockaddr_un, sun_path) + 1)
		abort();
	fault_fd = (int)fa.out_fault_fd;
	dot = memchr(sun.sun_path + 1, '.', len - offsetof(struct sockaddr_un, sun_path) - 1);
	if (!dot)
		abort();
	fault_hdr = hdr;
	fault_hdr.token = strtoull(dot + 1, NULL, 16);
	req.token = fault_hdr.token;
	req.arg[0] = (uint64_t)fault_fd;
	s = wire_client_connect(&hdr);
	if (s < 0 || wire_client_hello(s, 43) || reply_read(s, &rep, sizeof(rep)) || rep.rc ||
	    send(s, &req, sizeof(req), MSG_NOSIGNAL) != (ssize_t)sizeof(req) ||
	    reply_read(s, &rep, sizeof(rep)) || rep.rc)
		abort();
	memcpy(fault_hdr.secret, rep.val, sizeof(fault_hdr.secret));
	close(s);
}

/*
 * A VFIO device cdev opened and closed: the VFIO layer is linked in (its constructor registers
 * the bind that WIRE_VFIO_BIND makes, file.c) and the machine is booted. Without a cdev the
 * bind answers its errno.
 */
static void vfio_init(void)
{
	int fd = uiommu_vfio_open("/dev/vfio/devices/vfio0", O_RDWR | O_CLOEXEC);

	if (fd >= 0)
		uiommu_close(fd);
}

/* Sends a well-formed SETTLE on @s. 0 or -1. */
static int settle_send(int s)
{
	struct wire_hello settle = { .magic = WIRE_SETTLE_MAGIC, .version = WIRE_VERSION,
				     .pid = getpid() };

	return send(s, &settle, sizeof(settle), MSG_NOSIGNAL) == (ssize_t)sizeof(settle) ? 0 : -1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };

	for (int i = 1; i < *argc; i++) {
		if (!strncmp((*argv)[i], "-dump=", 6)) {
			seeds_dump((*argv)[i] + 6);
			exit(0);
		}
	}
	ctx_fd = uiommu_open(O_RDWR | O_CLOEXEC);
	scratch = calloc(1, SCRATCH_LEN);
	if (ctx_fd < 0 || !scratch || uiommu_ioctl(ctx_fd, IOMMU_IOAS_ALLOC, &alloc) ||
	    recv(ctx_fd, &hdr, sizeof(hdr), MSG_PEEK) != (ssize_t)sizeof(hdr))
		abort();
	access_init(alloc.out_ioas_id);
	region_init();
	fault_init();
	vfio_init();
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
	holds = (mode & 0x19) == 9 && region_viommu;
	if ((mode & 0x10) ? settle_send(s) : (mode & 1) && wire_client_hello(s, 42))
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
					(mode & 0x20) ? &fault_hdr :
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
			} else if (req.op == WIRE_CLAIM) {
				req.arg[0] = (mode & 0x20) && !(req.arg[0] & 1) ?
						     (uint64_t)fault_fd :
						     req.arg[0] % 64;
			} else if (req.op == WIRE_VFIO_BIND) {
				req.arg[0] %= 8;
			} else if (req.op == WIRE_VFIO_GROUP) {
				req.arg[0] %= 16;
				req.arg[1] = req.arg[1] & 1 ? UINT64_MAX : req.arg[1] % 64;
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

/* ---- the seed corpus ------------------------------------------------------------------------ */

/* An input: the mode byte, then requests. */
struct seed {
	uint8_t b[1024];
	size_t n;
};

static void seed_begin(struct seed *sd, uint8_t mode)
{
	sd->b[0] = mode;
	sd->n = 1;
}

/* A request the harness completes (magic, token and secret when the mode patches them). */
static void seed_req_flags(struct seed *sd, enum wire_op op, uint32_t flags, uint64_t a0,
			   uint64_t a1, uint64_t a2, uint64_t a3)
{
	struct wire_req req = { .op = op, .flags = flags, .arg = { a0, a1, a2, a3 } };

	if (sd->n + sizeof(req) > sizeof(sd->b))
		abort();
	memcpy(sd->b + sd->n, &req, sizeof(req));
	sd->n += sizeof(req);
}

static void seed_req(struct seed *sd, enum wire_op op, uint64_t a0, uint64_t a1, uint64_t a2,
		     uint64_t a3)
{
	seed_req_flags(sd, op, 0, a0, a1, a2, a3);
}

/* One input per kind of request (remote.h's enum wire_op), a SETTLE and the redirect flag. */
static void seeds_dump(const char *dir)
{
	struct seed sd;

	/* An MMAP of the region, an MMAP_FORK of its hold, a MUNMAP, another MMAP. */
	seed_begin(&sd, 0x0b);
	seed_req(&sd, WIRE_MMAP, 0x2000, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	seed_req(&sd, WIRE_MMAP_FORK, 0, 0, 0, 0);
	seed_req(&sd, WIRE_MUNMAP, 0, 0, 0, 0);
	seed_req(&sd, WIRE_MMAP, 0x2000, PROT_READ | PROT_WRITE, MAP_SHARED, 0);
	seed_write(dir, "holds", &sd);

	seed_begin(&sd, 0x03);
	seed_req(&sd, WIRE_IOCTL, IOMMU_IOAS_ALLOC, 0, 0, 0);
	seed_write(dir, "ioctl", &sd);

	seed_begin(&sd, 0x23);
	seed_req(&sd, WIRE_READ, 0, sizeof(struct iommu_hwpt_pgfault), UINT64_MAX, 0);
	seed_write(dir, "read", &sd);

	seed_begin(&sd, 0x23);
	seed_req(&sd, WIRE_WRITE, 0, sizeof(struct iommu_hwpt_page_response), UINT64_MAX, 0);
	seed_write(dir, "write", &sd);

	seed_begin(&sd, 0x03);
	seed_req(&sd, WIRE_INFO, 0, 0, 0, 0);
	seed_write(dir, "info", &sd);

	seed_begin(&sd, 0x03);
	seed_req(&sd, WIRE_STATUS, 0, 0, 0, 0);
	seed_write(dir, "status", &sd);

	seed_begin(&sd, 0x23);
	seed_req(&sd, WIRE_CLAIM, 0, 0, 0, 0);
	seed_write(dir, "claim", &sd);

	seed_begin(&sd, 0x03);
	seed_req(&sd, WIRE_FORGET, 0, 0x80, 0, 0);
	seed_write(dir, "forget", &sd);

	seed_begin(&sd, 0x03);
	seed_req(&sd, WIRE_DIRECT, 0, 0, 0, 0);
	seed_write(dir, "direct", &sd);

	/* TRANSLATE on the connection's direct page, for the access. */
	seed_begin(&sd, 0x07);
	seed_req(&sd, WIRE_DIRECT, 0, 0, 0, 0);
	seed_req(&sd, WIRE_TRANSLATE, 0, 0x1000, MOCK_ACCESS_RW_WRITE, 0);
	seed_write(dir, "translate", &sd);

	seed_begin(&sd, 0x03);
	seed_req(&sd, WIRE_VFIO_BIND, 0, 0, 0, 0);
	seed_write(dir, "vfio_bind", &sd);

	/* A group node opened with the context as its container: without a claim, and with one. */
	seed_begin(&sd, 0x03);
	seed_req(&sd, WIRE_VFIO_GROUP, 0, UINT64_MAX, 0, 0);
	seed_req(&sd, WIRE_VFIO_GROUP, 1, 2, 0, 0);
	seed_write(dir, "vfio_group", &sd);

	seed_begin(&sd, 0x10);
	seed_write(dir, "settle", &sd);

	/*
	 * An IOCTL, a READ at an offset, a WRITE at the file position and an MMAP, each asking
	 * for a redirect, which a file without a delegate answers as without it.
	 */
	seed_begin(&sd, 0x03);
	seed_req_flags(&sd, WIRE_IOCTL, WIRE_REQ_REDIRECT, IOMMU_IOAS_ALLOC, 0, 0, 0);
	seed_req_flags(&sd, WIRE_READ, WIRE_REQ_REDIRECT, 0, 0x1000, 0, 0);
	seed_req_flags(&sd, WIRE_WRITE, WIRE_REQ_REDIRECT, 0, 0x1000, UINT64_MAX, 0);
	seed_req_flags(&sd, WIRE_MMAP, WIRE_REQ_REDIRECT, 0x1000, PROT_READ, MAP_SHARED, 0);
	seed_write(dir, "redirect", &sd);

	/* The position of a file, read and moved (a redirected read at the position). */
	seed_begin(&sd, 0x03);
	seed_req(&sd, WIRE_POS, 0, 0, 0, 0);
	seed_req(&sd, WIRE_POS, 4, 0, 0, 0);
	seed_req(&sd, WIRE_POS, UINT64_MAX, 0, 0, 0);
	seed_write(dir, "pos", &sd);
}
