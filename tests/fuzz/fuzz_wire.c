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
	int s;

	if (!size)
		return 0;
	mode = data[0];
	s = wire_client_connect(&hdr);
	if (s < 0)
		abort(); /* the server must be there */
	if ((mode & 1) && wire_client_hello(s, 42))
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
			} else {
				req.arg[0] = req.op == WIRE_IOCTL ? req.arg[0] : fold(req.arg[0]);
				req.arg[1] = req.op == WIRE_IOCTL ? fold(req.arg[1]) : req.arg[1] % 256;
			}
		}
		if (send(s, &req, n, MSG_NOSIGNAL) != (ssize_t)n)
			break;
	}
	shutdown(s, SHUT_WR);
	/* The server answers what it parsed, then hangs up: read to the end. */
	while (read(s, buf, sizeof(buf)) > 0)
		;
out_close:
	close(s);
	/* Whatever this client did, the context still answers its own process. */
	if (uiommu_ioctl(ctx_fd, IOMMU_IOAS_ALLOC, &alloc))
		abort();
	destroy.id = alloc.out_ioas_id;
	if (uiommu_ioctl(ctx_fd, IOMMU_DESTROY, &destroy))
		abort();
	return 0;
}
