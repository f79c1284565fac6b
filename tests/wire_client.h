/* SPDX-License-Identifier: MIT */
/*
 * A raw client of the wire (src/iommufd/remote.h, docs/processes.md) for the tests that speak
 * it themselves: the wire fuzzer and test_procdirect's hostile client. It connects to the
 * server an fd's header names and sends a well-formed HELLO (a pidfd, /proc/self/mem and
 * /proc/self/maps), as the library's client does.
 */
#ifndef UIOMMU_TESTS_WIRE_CLIENT_H
#define UIOMMU_TESTS_WIRE_CLIENT_H

#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "iommufd/remote.h"

/* A connection to the listening socket @hdr names, or -1. */
static inline int wire_client_connect(const struct wire_fd_header *hdr)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	size_t len = strnlen(hdr->name, sizeof(hdr->name));
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memcpy(sun.sun_path + 1, hdr->name, len);
	if (s >= 0 && connect(s, (struct sockaddr *)&sun,
			      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len))) {
		close(s);
		s = -1;
	}
	return s;
}

/*
 * Sends a well-formed HELLO with @cookie on @s, and @life (>= 0) as its life word's memfd.
 * 0 or -1.
 */
static inline int wire_client_hello_life(int s, uint64_t cookie, int life)
{
	struct wire_hello hello = { .magic = WIRE_MAGIC, .version = WIRE_VERSION,
				    .pid = getpid(), .cookie = cookie };
	char cbuf[CMSG_SPACE(4 * sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = &hello, .iov_len = sizeof(hello) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	int fds[4] = { -1, -1, -1, life }, nr = life >= 0 ? 4 : 3, rc;

	fds[0] = (int)syscall(SYS_pidfd_open, (long)getpid(), 0L);
	fds[1] = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	fds[2] = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nr);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nr);
	memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nr);
	rc = sendmsg(s, &msg, MSG_NOSIGNAL) == (ssize_t)sizeof(hello) ? 0 : -1;
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	return rc;
}

/* Sends a well-formed HELLO with @cookie on @s, without a life word. 0 or -1. */
static inline int wire_client_hello(int s, uint64_t cookie)
{
	return wire_client_hello_life(s, cookie, -1);
}

#endif
