/* SPDX-License-Identifier: MIT */
/*
 * The wire between a process that serves a context and the processes that hold its fds
 * (remote.c has the model; docs/processes.md the user's view). Every message has a fixed size
 * and no pointers: a field is trusted only after the checks the server makes of it.
 */
#ifndef UIOMMU_IOMMUFD_REMOTE_H
#define UIOMMU_IOMMUFD_REMOTE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define WIRE_MAGIC 0x31767275756d6f69ULL /* "iomuurv1" */
#define WIRE_VERSION 1
#define WIRE_NAME_LEN 40   /* "uiommu-" and 32 hex digits, NUL-terminated */
#define WIRE_SECRET_LEN 16
#define WIRE_NEW_FDS_MAX 3 /* fds one call may make for its caller (SCM_RIGHTS in the reply) */

/* What the server writes into the peer of each file's socket; holders peek at it. */
struct wire_fd_header {
	uint64_t magic;
	uint32_t version;
	int32_t pid;                  /* the serving process */
	char name[WIRE_NAME_LEN];     /* its abstract socket name, without the leading NUL */
	uint64_t token;               /* the file, at that server */
	uint8_t secret[WIRE_SECRET_LEN];
};

/* A connection's first message; SCM_RIGHTS: a pidfd, /proc/self/mem, /proc/self/maps. */
struct wire_hello {
	uint64_t magic;
	uint32_t version;
	int32_t pid;     /* must be SO_PEERCRED's */
	uint64_t cookie; /* with pid, names the client's mm; new in each forked child */
};

enum wire_op {
	WIRE_IOCTL = 1, /* arg[0] cmd, arg[1] the argument (a client address) */
	WIRE_READ,      /* arg[0] buffer, arg[1] count, arg[2] offset or -1 (the file position) */
	WIRE_WRITE,
	WIRE_INFO,      /* the file's node and access mode (an fd adopted without its file) */
	WIRE_STATUS,    /* the server's own pin counters, and those of the caller's mm */
	WIRE_CLAIM,     /* arg[0]: the caller's fd of an event file; the secret in val[0..1] */
	WIRE_MMAP,      /* arg[0] length, arg[1] prot, arg[2] flags, arg[3] offset: the memfd */
	WIRE_FORGET,    /* arg[0] address, arg[1] length: the caller remaps that of its memory */
};

struct wire_req {
	uint64_t magic;
	uint32_t op;
	uint32_t reserved;
	uint64_t token;
	uint8_t secret[WIRE_SECRET_LEN];
	uint64_t arg[4];
};

struct wire_rep {
	int64_t rc;      /* the call's result or -errno */
	/*
	 * INFO: major, minor, mode, flags; STATUS: own pinned, locked, caller's; IOCTL: the numbers
	 * the server gave the fds the call made (val[3] of them, at most WIRE_NEW_FDS_MAX), which
	 * travel with the reply
	 */
	uint64_t val[4];
	char path[48];   /* INFO: the node's path */
};

#define WIRE_INFO_READABLE 1
#define WIRE_INFO_WRITABLE 2
#define WIRE_INFO_NODE 4
#define WIRE_INFO_EVENT 8 /* an event fd: POLLIN is a byte in its socket, reads drain (READ: val[0]) */

/*
 * An event fd's peer is bound to "uiommu-<server's 32 hex digits>.<token, 16 hex digits>"
 * (abstract): its holders find the server and the file with getpeername(), and WIRE_CLAIM the
 * secret with the fd as proof.
 */
#define WIRE_PEER_NAME_LEN (WIRE_NAME_LEN + 17)

struct iommufd_server;
struct iommufd_node;
struct uiommu_mm;

/* remote.c: this process's server, and the client side of the calls. */
extern _Atomic(struct iommufd_server *) iommufd_self_server;
struct iommufd_server *iommufd_server_self(void);
void iommufd_server_header(struct iommufd_server *server, uint64_t token,
			   const uint8_t *secret, struct wire_fd_header *hdr);
void iommufd_secret_new(uint8_t *secret);
int iommufd_server_name_peer(struct iommufd_server *server, int peer, uint64_t token);
void iommufd_server_watch(int peer, uint64_t token);
void iommufd_server_unwatch(int peer);
int iommufd_remote_adopt(int fd);
int iommufd_remote_ioctl(struct iommufd_server *server, uint64_t token, const uint8_t *secret,
			 unsigned int cmd, uint64_t arg);
void *iommufd_remote_mmap(struct iommufd_server *server, uint64_t token, const uint8_t *secret,
			  void *addr, size_t len, int prot, int flags, uint64_t off);
ssize_t iommufd_remote_rw(struct iommufd_server *server, uint64_t token, const uint8_t *secret,
			  uint64_t buf, size_t count, int64_t pos, bool write, unsigned int *owed);

/* file.c: the files the wire names. */
int iommufd_file_serve_ioctl(uint64_t token, const uint8_t *secret, struct uiommu_mm *mm,
			     unsigned int cmd, uint64_t arg, int *new_fds, unsigned int *nr_new);
ssize_t iommufd_file_serve_rw(uint64_t token, const uint8_t *secret, struct uiommu_mm *mm,
			      uint64_t buf, size_t count, int64_t pos, bool write, unsigned int *owed);
int iommufd_file_serve_mmap(uint64_t token, const uint8_t *secret, size_t len, int prot,
			    int flags, uint64_t off);
int iommufd_file_serve_claim(uint64_t token, struct uiommu_mm *mm, int fd, uint8_t *secret);
int iommufd_file_serve_info(uint64_t token, const uint8_t *secret, struct iommufd_node *node,
			    uint64_t *flags);
void iommufd_file_gone_anywhere(uint64_t token);
int iommufd_file_adopt_local(int fd, uint64_t token, const uint8_t *secret);
int iommufd_file_adopt_remote(int fd, struct iommufd_server *server, uint64_t token,
			      const uint8_t *secret, const struct wire_rep *info);
void iommufd_files_atfork_prepare(void);
void iommufd_files_atfork_parent(void);
void iommufd_files_atfork_child(void);
bool iommufd_files_served(void);
void iommufd_files_handover_child(void);
void iommufd_files_rewatch(void);

#endif
