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

/*
 * A connection's first message; SCM_RIGHTS: a pidfd, /proc/self/mem, /proc/self/maps, and
 * optionally the memfd of the client's life word's page (remote_direct.c; a client that could
 * not make it sends three, and its server checks it through the mem fd).
 */
struct wire_hello {
	uint64_t magic;
	uint32_t version;
	int32_t pid;     /* must be SO_PEERCRED's */
	uint64_t cookie; /* with pid, names the client's mm; new in each forked child */
};

/*
 * A connection's first message may be a SETTLE instead of a HELLO: a struct wire_hello with
 * this magic, pid the sender's, no fds. It names no context and no memory, so it carries no
 * token or secret (the listening socket's user check applies, as to any connection) and makes
 * no client: the server settles (iommufd_remote_settle(), in a settle begun after the request
 * came) and answers one struct wire_rep (rc 0, or -ENOMEM); the connection ends there.
 */
#define WIRE_SETTLE_MAGIC 0x31656c7474657375ULL /* "usettle1" */

enum wire_op {
	WIRE_IOCTL = 1, /* arg[0] cmd, arg[1] the argument (a client address) */
	WIRE_READ,      /* arg[0] buffer, arg[1] count, arg[2] offset or -1 (the file position) */
	WIRE_WRITE,
	WIRE_INFO,      /* the file's node and access mode (an fd adopted without its file) */
	WIRE_STATUS,    /* the server's own pin counters, and those of the caller's mm */
	WIRE_CLAIM,     /* arg[0]: the caller's fd of an event file; the secret in val[0..1] */
	/*
	 * arg[0] length, arg[1] prot, arg[2] flags, arg[3] offset: the memfd, and the hold it
	 * makes for the caller (val[0] its ID, val[1..2] its secret; mmap.c) until MUNMAP; or
	 * a redirect (below)
	 */
	WIRE_MMAP,
	WIRE_FORGET,    /* arg[0] address, arg[1] length: the caller remaps that of its memory */
	/*
	 * The direct path of ACCESS_RW (remote_direct.c), both answered EINVAL by a server that
	 * predates them, which the client takes as "not offered":
	 * DIRECT: this connection's shared page; the reply carries its memfd and that of the
	 * serving process's life word (SCM_RIGHTS), val[0] that process's pid, val[1] the life
	 * word's value while it lives.
	 * TRANSLATE: token and secret of an access fd; arg[0] iova, arg[1] length, arg[2] the
	 * ACCESS_RW flags: the server's host runs in the page, val[0] the generation they are
	 * valid at, val[1] how many.
	 */
	WIRE_DIRECT,
	WIRE_TRANSLATE,
	/* arg[0] a hold of the caller's: its mapping is gone. 0 or -ENOENT */
	WIRE_MUNMAP,
	/*
	 * arg[0] a hold of the caller's parent, its secret in secret: a copy for the caller (a
	 * forked child's copy of the mapping), named in val[] as MMAP's; a hold the server made
	 * for its own fork's child (its own mapping's copy) becomes the caller's, with a new
	 * secret. 0, -ENOENT, -ENOMEM
	 */
	WIRE_MMAP_FORK,
	/*
	 * Token and secret of a /dev/iommu file; arg[0] the minor of a VFIO device cdev: the
	 * server opens that node in its own machine and binds the new file to the context, as
	 * VFIO_DEVICE_BIND_IOMMUFD would (its errnos). The reply carries the new file's fd, val[0]
	 * the device ID. A server that predates it answers EINVAL.
	 */
	WIRE_VFIO_BIND,
	/*
	 * arg[0]: how far the file's read/write position moves (0: it stays). rc: the position
	 * before the move, or -ESPIPE (an event file: a stream), -EOVERFLOW. For a caller whose
	 * read or write at the position was redirected: it reads the position here, makes the
	 * call at the target at that offset and moves the position by what it did (file.c).
	 * A server that predates it answers EINVAL.
	 */
	WIRE_POS,
	/*
	 * Token and secret of a /dev/iommu file; arg[0] a VFIO group's number, arg[1] the
	 * caller's fd of its claim of the group's node (its own group file holds it; UINT64_MAX:
	 * none, no session): the server opens /dev/vfio/<arg[0]> in its own machine, sharing that
	 * claim (a copy taken with pidfd_getfd()), and sets the context as its container, as
	 * VFIO_GROUP_SET_CONTAINER would (its errnos). The reply carries the new file's fd. A
	 * server that predates it answers EINVAL.
	 */
	WIRE_VFIO_GROUP,
};

/* The name of a hold (WIRE_MMAP's answer): the secret shows a WIRE_MMAP_FORK comes from a holder. */
struct wire_hold {
	uint64_t id; /* 0: none */
	uint8_t secret[WIRE_SECRET_LEN];
};

/*
 * The page a server shares with one client connection (WIRE_DIRECT): the generation of the
 * server's translations and the client's "copy in flight at generation G" word, kept in
 * step as remote_direct.c's essay says, and TRANSLATE's runs. Every field is written by one
 * side only (the runs by the server, during a TRANSLATE the client waits for).
 */
#define WIRE_DIRECT_RUNS_MAX 128
struct wire_direct_run {
	uint64_t host; /* the server's address */
	uint64_t len;
};

struct wire_direct_page {
	_Atomic uint32_t gen;     /* server: translations of this generation are valid; 0 none */
	_Atomic uint32_t busy;    /* client: 0, or the generation of its copy in flight */
	_Atomic uint32_t waiters; /* server: invalidators waiting for busy to move (futex) */
	uint32_t reserved;
	struct wire_direct_run runs[WIRE_DIRECT_RUNS_MAX];
};

/*
 * A redirect: the file a request names makes its calls at another file (a VFIO cdev bound
 * through another process, device_cdev.c), so the server answers not with a result but with
 * that file's fd (SCM_RIGHTS, as a call's new fd: val[3] 1, val[0] the server's number of it)
 * and rc WIRE_RC_REDIRECT, a value no call returns. The caller makes the same call there
 * itself, with its own identity and memory, and its later calls on the file too. Only an
 * IOCTL, an MMAP, a READ or a WRITE with WIRE_REQ_REDIRECT in the request's flags is answered
 * so (a request without it keeps the answer it had: EOPNOTSUPP, an MMAP ENODEV); one at the
 * file's position is made at the target at the position this file has (WIRE_POS). The call
 * re-issued at the target carries no flag, so a target that would redirect again answers
 * EOPNOTSUPP: one hop, never a loop.
 */
#define WIRE_REQ_REDIRECT 1u
#define WIRE_RC_REDIRECT (-(INT64_C(1) << 40))

struct wire_req {
	uint64_t magic;
	uint32_t op;
	uint32_t flags;  /* WIRE_REQ_*; 0 from a client that predates them */
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

/*
 * What a holder of an event fd writes into it, so that the server learns where to reach the
 * fd's socket when its readiness byte must go with nobody reading (file.c,
 * iommufd_file_ready_take()): its number of the fd. The holder's pid is not in it: the
 * server's end takes it from the kernel (SO_PASSCRED, and a pidfd with SO_PASSPIDFD where the
 * kernel has it), and the fd the number names is checked to be that very socket before it is
 * used, so a note can point the server at nothing but the sender's own fds.
 */
#define WIRE_NOTE_MAGIC 0x6574796e6d6f6975ULL /* "uiomnyte" */
struct wire_holder_note {
	uint64_t magic;
	int32_t fd;
	uint32_t reserved;
};

struct iommufd_server;
struct iommufd_node;
struct uiommu_mm;

/* remote_direct.c: ACCESS_RW from another process, copied by that process. */
struct direct_serve;
struct direct_client;
void iommufd_direct_invalidate(void);
void iommufd_direct_shut(void);
void iommufd_direct_reopen(void);
uint32_t iommufd_direct_gen(void);
int iommufd_direct_serve_setup(struct direct_serve **dsp, int conn_fd, int *new_fds,
			       unsigned int *nr_new, uint64_t *val);
int iommufd_direct_serve_translate(struct direct_serve *ds, uint64_t token, const uint8_t *secret,
				   uint64_t iova, uint64_t length, uint32_t flags, uint64_t *val);
/* access.c: the selftest access's side of TRANSLATE (-EOPNOTSUPP without the test command). */
int iommufd_test_access_translate(uint64_t token, const uint8_t *secret, uint64_t iova,
				  uint64_t length, uint32_t flags, uint32_t *gen,
				  struct wire_direct_run *runs, unsigned int max, unsigned int *nr);
void iommufd_direct_serve_end(struct direct_serve *ds);
int iommufd_direct_life_share(void);
void iommufd_direct_atfork_prepare(void);
void iommufd_direct_atfork_parent(void);
void iommufd_direct_atfork_child(void);
void iommufd_direct_client_free(struct direct_client *dc, bool after_fork);
bool iommufd_direct_access_rw(struct iommufd_server *server, uint64_t arg);

/* remote.c: this process's server, and the client side of the calls. */
extern _Atomic(struct iommufd_server *) iommufd_self_server;
struct iommufd_server *iommufd_server_self(void);
void iommufd_server_header(struct iommufd_server *server, uint64_t token,
			   const uint8_t *secret, struct wire_fd_header *hdr);
void iommufd_secret_new(uint8_t *secret);
int iommufd_server_name_peer(struct iommufd_server *server, int peer, uint64_t token);
void iommufd_event_note(int fd);
void iommufd_event_note_send(int fd);
/*
 * What the server thread watches besides the files' peers (their tokens count from 1): with
 * this bit, a fork's socketpair (mmap.c's holds for its child), named by the fork's ID.
 */
#define WIRE_WATCH_FORK (1ull << 63)
int iommufd_server_watch(int peer, uint64_t token, bool notes);
void iommufd_server_watch_notes_end(int peer, uint64_t token);
void iommufd_server_unwatch(int peer);
int iommufd_remote_adopt(int fd);
int iommufd_remote_fd_ident(int fd, struct iommufd_server **server, uint64_t *token,
			    uint8_t *secret);
int iommufd_remote_ioctl(struct iommufd_server *server, uint64_t token, const uint8_t *secret,
			 unsigned int cmd, uint64_t arg, int *redirect);
void *iommufd_remote_mmap(struct iommufd_server *server, uint64_t token, const uint8_t *secret,
			  void *addr, size_t len, int prot, int flags, uint64_t off, int *redirect);
void iommufd_remote_munmap(struct iommufd_server *server, uint64_t hold);
int iommufd_remote_mmap_fork(struct iommufd_server *server, const struct wire_hold *from,
			     struct wire_hold *to);
bool iommufd_remote_holder_gone(const void *holder);
void iommufd_remote_settle(void);
void iommufd_remote_settle_session(void);
void iommufd_remote_settle_again(void);
int iommufd_remote_vfio_bind(struct iommufd_server *server, uint64_t token, const uint8_t *secret,
			     unsigned int minor, uint32_t *devid, uint64_t *g_token,
			     uint8_t *g_secret);
int iommufd_remote_vfio_group(struct iommufd_server *server, uint64_t token,
			      const uint8_t *secret, unsigned int group_id, int claim_fd,
			      uint64_t *g_token, uint8_t *g_secret);

/*
 * What a layer above does for another process's call (file.c serves WIRE_VFIO_BIND and
 * WIRE_VFIO_GROUP with it): the VFIO cdev's open of vfio@minor bound to @ictx, a context of
 * ours, in one step; the group node's open with @claim_fd (a copy of the caller's handle of
 * its claim, consumed; -1 none) and its SET_CONTAINER of @ictx, in one step.
 * Return: the new file's fd (made during the served call, so it travels back with the reply)
 * and *@devid; or -errno, with no fd left. Registered once, before any call can come.
 */
struct iommufd_ctx;
struct iommufd_bind_ops {
	int (*cdev_bind)(struct iommufd_ctx *ictx, unsigned int minor, uint32_t *devid);
	int (*group_set)(struct iommufd_ctx *ictx, unsigned int group_id, int claim_fd);
};
void iommufd_bind_ops_register(const struct iommufd_bind_ops *ops);

/* mmap.c: the holds of other processes' mappings, and this process's records of its own. */
struct iommufd_mmap_hold;
int iommufd_mmap_region_dup(struct iommufd_ctx *ictx, size_t len, int prot, int flags,
			    off_t off, const void *holder, struct wire_hold *hold);
int iommufd_mmap_hold_copy(const void *holder, const struct wire_hold *from, struct wire_hold *to);
int iommufd_mmap_hold_drop(const void *holder, uint64_t id);
struct iommufd_mmap_hold *iommufd_mmap_holds_take(const void *holder);
void iommufd_mmap_holds_put(struct iommufd_mmap_hold *dead);
int iommufd_mmap_remote_note(void *p, size_t len, struct iommufd_server *server,
			     const struct wire_hold *hold);
bool iommufd_mmap_fork_connects(void);
void iommufd_mmap_atfork_prepare(bool handover);
void iommufd_mmap_atfork_parent(void);
void iommufd_mmap_atfork_child(bool handover);
void iommufd_mmap_atfork_child_hold(struct iommufd_server *parent);
void iommufd_mmap_fork_gone(uint64_t id);
void iommufd_mmap_forks_settle(void);
void iommufd_mmap_forks_rewatch(void);
void iommufd_mmap_handover_forget(void);
ssize_t iommufd_remote_rw(struct iommufd_server *server, uint64_t token, const uint8_t *secret,
			  uint64_t buf, size_t count, int64_t pos, bool write, unsigned int *owed,
			  int *redirect);
int64_t iommufd_remote_pos(struct iommufd_server *server, uint64_t token, const uint8_t *secret,
			   uint64_t move);

struct wire_conn;
struct wire_conn *iommufd_remote_conn_take(struct iommufd_server *server, int *rc);
void iommufd_remote_spare_make(struct iommufd_server *server);
void iommufd_remote_conn_give(struct iommufd_server *server, struct wire_conn *conn, bool ok);
int iommufd_remote_conn_call(struct wire_conn *conn, struct wire_req *req, struct wire_rep *rep,
			     int *fds, int *nfds);
int iommufd_remote_conn_call_from(struct wire_conn *conn, struct wire_req *req,
				  struct wire_rep *rep, int *fds, int *nfds, pid_t *sender);
struct direct_client **iommufd_remote_conn_direct(struct wire_conn *conn);
void iommufd_remote_req_init(struct wire_req *req, enum wire_op op, uint64_t token,
			     const uint8_t *secret);

/* file.c: the files the wire names. */
int iommufd_file_serve_ioctl(uint64_t token, const uint8_t *secret, struct uiommu_mm *mm,
			     unsigned int cmd, uint64_t arg, bool *redirect, int *new_fds,
			     unsigned int *nr_new);
ssize_t iommufd_file_serve_rw(uint64_t token, const uint8_t *secret, struct uiommu_mm *mm,
			      uint64_t buf, size_t count, int64_t pos, bool write, unsigned int *owed,
			      bool *redirect, int *new_fds, unsigned int *nr_new);
int iommufd_file_serve_mmap(uint64_t token, const uint8_t *secret, size_t len, int prot,
			    int flags, uint64_t off, const void *holder, struct wire_hold *hold,
			    bool *redirect, int *new_fds, unsigned int *nr_new);
int64_t iommufd_file_serve_pos(uint64_t token, const uint8_t *secret, uint64_t move);
int iommufd_file_serve_claim(uint64_t token, struct uiommu_mm *mm, int fd, uint8_t *secret);
int iommufd_file_serve_vfio_bind(uint64_t token, const uint8_t *secret, struct uiommu_mm *mm,
				 unsigned int minor, uint32_t *devid, int *new_fds,
				 unsigned int *nr_new);
int iommufd_file_serve_vfio_group(uint64_t token, const uint8_t *secret, struct uiommu_mm *mm,
				  unsigned int group_id, int64_t claim_fd, int *new_fds,
				  unsigned int *nr_new);
bool iommufd_caller_is_remote(void);
int iommufd_file_serve_info(uint64_t token, const uint8_t *secret, struct iommufd_node *node,
			    uint64_t *flags);
void iommufd_file_gone_anywhere(uint64_t token);
void iommufd_file_notes_read(uint64_t token);
int iommufd_file_adopt_local(int fd, uint64_t token, const uint8_t *secret);
int iommufd_file_adopt_remote(int fd, struct iommufd_server *server, uint64_t token,
			      const uint8_t *secret, const struct wire_rep *info);
void iommufd_files_atfork_prepare(void);
void iommufd_files_atfork_parent(void);
void iommufd_files_atfork_child(void);
bool iommufd_files_served(void);
int iommufd_file_remote_ident(int fd, struct iommufd_server **server, uint64_t *token,
			      uint8_t *secret);
struct iommufd_file;
struct iommufd_subfd_ops;
void *iommufd_subfd_get_exported(uint64_t token, const uint8_t *secret,
				 const struct iommufd_subfd_ops *ops, struct iommufd_file **filep);
void iommufd_files_handover_child(void);
void iommufd_files_rewatch(void);
void iommufd_files_settle(void);
/* A test's hold of this serving thread at @point (uiommu_serve_point_hook()), if any. */
void iommufd_serve_point(int point);

#endif
