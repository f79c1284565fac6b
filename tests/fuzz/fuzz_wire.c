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
 *             token and secret into each request, else they are the input's
 *   then      requests of sizeof(struct wire_req) bytes each (a short tail is sent as is),
 *             whose addresses (the ioctl argument, a read/write buffer) are folded into a
 *             scratch area of the harness, so that a reply the server writes into "the
 *             client's memory" cannot land on the harness's own state
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
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "iommufd/remote.h"
#include "uiommu/iommufd.h"
#include "uiommu/uiommu.h"

#define SCRATCH_LEN (64 * 1024)

static int ctx_fd = -1;
static struct wire_fd_header hdr;
static uint8_t *scratch;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
	return 0;
}

static uint64_t fold(uint64_t addr)
{
	return (uint64_t)(uintptr_t)scratch + addr % (SCRATCH_LEN - 256);
}

static int send_hello(int s)
{
	struct wire_hello hello = { .magic = WIRE_MAGIC, .version = WIRE_VERSION,
				    .pid = getpid(), .cookie = 42 };
	char cbuf[CMSG_SPACE(3 * sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = &hello, .iov_len = sizeof(hello) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	int fds[3], rc;

	fds[0] = (int)syscall(SYS_pidfd_open, (long)getpid(), 0L);
	fds[1] = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	fds[2] = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(c), fds, sizeof(fds));
	rc = sendmsg(s, &msg, MSG_NOSIGNAL) == (ssize_t)sizeof(hello) ? 0 : -1;
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct iommu_destroy destroy = { .size = sizeof(destroy) };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	uint8_t mode, buf[512];
	size_t off = 1;
	int s;

	if (!size)
		return 0;
	mode = data[0];
	memcpy(sun.sun_path + 1, hdr.name, strnlen(hdr.name, sizeof(hdr.name)));
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&sun,
			     (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
					 strnlen(hdr.name, sizeof(hdr.name)))))
		abort(); /* the server must be there */
	if ((mode & 1) && send_hello(s))
		goto out_close;
	while (off < size) {
		struct wire_req req;
		size_t n = size - off < sizeof(req) ? size - off : sizeof(req);

		memset(&req, 0, sizeof(req));
		memcpy(&req, data + off, n);
		off += n;
		if (n == sizeof(req)) {
			if (mode & 2) {
				req.magic = WIRE_MAGIC;
				req.token = hdr.token;
				memcpy(req.secret, hdr.secret, sizeof(req.secret));
			}
			req.arg[0] = req.op == WIRE_IOCTL ? req.arg[0] : fold(req.arg[0]);
			req.arg[1] = req.op == WIRE_IOCTL ? fold(req.arg[1]) : req.arg[1] % 256;
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
