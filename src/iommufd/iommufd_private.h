/* SPDX-License-Identifier: MIT */
/*
 * iommufd internals shared between the object files: the context, the object model and the
 * ioctl plumbing.
 *
 * Objects. Every object starts with struct iommufd_object and lives in its context's object
 * table under a 31-bit ID. Its life has three phases:
 *   1. iommufd_object_alloc() reserves the lowest free ID; the object is invisible (lookups
 *      answer ENOENT) while its constructor can still fail;
 *   2. iommufd_object_finalize() publishes it once nothing can fail any more, or
 *      iommufd_object_abort()/_abort_and_destroy() gives the ID back;
 *   3. iommufd_object_remove() (IOMMU_DESTROY, or the context's teardown) unpublishes it when
 *      nothing else holds it, waits for in-flight ioctls, destroys and frees it.
 *
 * Two counters, as in the kernel:
 *   users     the table holds 1 (from publication), every long-term reference (an HWPT's IOAS,
 *             in later layers) 1, and every in-flight ioctl that looked the object up 1.
 *             Destroy succeeds only by moving users from exactly 1 to 0 (EBUSY otherwise);
 *             once it is 0 no lookup can succeed again.
 *   wait_cnt  a bias of 1 while published, plus 1 per in-flight lookup; destroy drops the bias
 *             and waits for 0, so nobody still inside an ioctl sees the object freed.
 * Lookups are lock-free: an RCU read-side section around one load from the ID-indexed array
 * (main.c) and an increment-if-not-zero of users. The memory of a removed object is freed after
 * a grace period. The RCU dispatch's handlers (iommufd_get_object_rcu()) take neither counter:
 * they read only what outlives a destroy, inside their read-side section, so a DESTROY racing
 * them is not EBUSY.
 *
 * Locking, in order:
 *   ioas->mutex                  the IOAS's automatic HWPTs (auto_hwpts) and the choice among
 *                                them; held across an automatic attach.
 *   igroup->lock                 what the device's group is attached to, at the RID and at each
 *                                PASID, and by which of its devices (device.c).
 *   idev->lock                   the device's copy of its RID attachment, its vDEVICE.
 *   group->mutex (the core)      taken by the core's attach paths, inside igroup->lock; never
 *                                together with the iopt locks.
 *   ictx->ioas_creation_rwsem    IOAS_ALLOC holds it for read from reserve to publish,
 *                                IOAS_CHANGE_PROCESS for write throughout, so that no IOAS
 *                                appears while it holds them all; outside every other lock.
 *   ictx->objects_lock (mutex)   protects the ID bitmap, updates of the object array, vfio_ioas
 *                                and account_mode; never held across a destroy.
 *   iopt->domains_rwsem -> iova_rwsem -> pages->mutex -> mm->pin_lock (io_pagetable.h), inside
 *                                ioas->mutex when an automatic HWPT is made, and iova_rwsem
 *                                inside igroup->lock for a device's reserved regions.
 *   ictx->wait_lock (mutex)      with wait_cond: sleeping for wait_cnt; a leaf.
 * A HWPT's last reference is never dropped under any of these locks: an automatic HWPT is
 * destroyed at its last detach, and its destroy takes its IOAS's mutex.
 */
#ifndef UIOMMU_IOMMUFD_PRIVATE_H
#define UIOMMU_IOMMUFD_PRIVATE_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include "lib/rcu.h"
#include "iommu/iommu.h"
#include "iommufd/io_pagetable.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/lockdep.h"
#include "mm/mm.h"
#include "uiommu/iommufd.h"
#include "uiommu/iommufd_test.h"

enum iommufd_object_type {
	IOMMUFD_OBJ_NONE,
	IOMMUFD_OBJ_ANY = IOMMUFD_OBJ_NONE,
	IOMMUFD_OBJ_DEVICE,
	IOMMUFD_OBJ_HWPT_PAGING,
	IOMMUFD_OBJ_HWPT_NESTED,
	IOMMUFD_OBJ_IOAS,
	IOMMUFD_OBJ_ACCESS,
	IOMMUFD_OBJ_FAULT,
	IOMMUFD_OBJ_VIOMMU,
	IOMMUFD_OBJ_VDEVICE,
	IOMMUFD_OBJ_VEVENTQ,
	IOMMUFD_OBJ_HW_QUEUE,
	IOMMUFD_OBJ_SELFTEST,
	IOMMUFD_OBJ_MAX,
};

#define IOMMUFD_ID_LIMIT 0x7fffffffu /* IDs are 1 .. 2^31 - 1 */

struct iommufd_ctx;

struct iommufd_object {
	struct rcu_head rcu;        /* the deferred free */
	struct iommufd_ctx *ictx;   /* constant */
	atomic_uint id;             /* constant once allocated; atomic for lock-free readers */
	enum iommufd_object_type type; /* constant */
	atomic_int users;           /* see the essay above */
	atomic_int wait_cnt;
	struct iommufd_object *next_victim; /* context teardown's batch; owned by the teardown */
};

/*
 * id -> published object, indexed by ID (IDs are dense: the lowest free one is handed out).
 * Replaced whole when the ID bitmap grows, the old one freed after a grace period; slots are
 * written under objects_lock and read under RCU or objects_lock.
 */
struct iommufd_id_table {
	struct rcu_head rcu;
	uint32_t nr;
	_Atomic(struct iommufd_object *) slot[];
};

struct iommufd_ctx {
	_Atomic(struct iommufd_id_table *) objects; /* NULL until the first ID; see above */
	struct uiommu_mutex objects_lock; /* protects ids, nr_ids, id_hint, updates of objects,
					     vfio_ioas, account_mode; a leaf (taken inside
					     ioas->mutex, idev->lock, viommu->lock, fdt_lock) */
	uint64_t *ids;                 /* bitmap of IDs in use: reserved, published, tombstones */
	uint32_t ids_words;
	uint32_t id_hint;              /* no free ID below this one */
	long nr_objects;               /* published or reserved, not tombstones */
	struct iommufd_ioas *vfio_ioas; /* the VFIO-compat IOAS, not a reference */
	struct uiommu_rwsem ioas_creation_rwsem; /* new IOASes (read) against CHANGE_PROCESS
						    (write); order: before objects_lock */
	enum uiommu_account_mode account_mode; /* IOPT_PAGES_ACCOUNT_USER or _MM */
	struct uiommu_mutex wait_lock;     /* with wait_cond: waiting for wait_cnt to drain; a leaf */
	struct uiommu_cond wait_cond;
	struct uiommu_mm *mm;          /* the opener's address space; a reference */
	struct iommufd_file *file;     /* the /dev/iommu file that owns us (file.c); constant */
};

/* The kernel's names for the accounting modes (mm/account.h). */
#define IOPT_PAGES_ACCOUNT_NONE UIOMMU_ACCOUNT_NONE
#define IOPT_PAGES_ACCOUNT_USER UIOMMU_ACCOUNT_USER
#define IOPT_PAGES_ACCOUNT_MM UIOMMU_ACCOUNT_MM

/* One ioctl in flight. */
struct iommufd_ucmd {
	struct iommufd_ctx *ictx;
	struct uiommu_mm *mm;  /* the caller's address space: all user memory goes through it */
	uint64_t ubuffer;      /* the user's argument pointer */
	uint32_t user_size;
	void *cmd;             /* our copy of the argument struct */
};

struct iommufd_object_ops {
	void (*destroy)(struct iommufd_object *obj); /* never fails; frees what the object owns */
	void (*abort)(struct iommufd_object *obj);   /* optional: undo a half-built object */
};

extern const struct iommufd_object_ops iommufd_object_ops[IOMMUFD_OBJ_MAX];

struct iommufd_object *_iommufd_object_alloc(struct iommufd_ctx *ictx, size_t size,
					     enum iommufd_object_type type);

/* Typed allocation; the object must sit at offset 0 so the free can use the base pointer. */
#define iommufd_object_alloc(ictx, ptr, type)                                             \
	((__typeof__(ptr))_iommufd_object_alloc(ictx, sizeof(*(ptr)), type))
#define IOMMUFD_OBJECT_AT_ZERO(type, member)                                                \
	_Static_assert(offsetof(type, member) == 0, #type " must start with its object")

void iommufd_object_finalize(struct iommufd_ctx *ictx, struct iommufd_object *obj);
void iommufd_object_abort(struct iommufd_ctx *ictx, struct iommufd_object *obj);
void iommufd_object_abort_and_destroy(struct iommufd_ctx *ictx, struct iommufd_object *obj);

struct iommufd_object *iommufd_get_object(struct iommufd_ctx *ictx, uint32_t id,
					  enum iommufd_object_type type);
/* Pairs with iommufd_get_object(). */
void iommufd_put_object(struct iommufd_ctx *ictx, struct iommufd_object *obj);
/*
 * The published object @id of @type (or IOMMUFD_OBJ_ANY) with no hold at all, for an ioctl
 * answered under RCU (main.c, "RCU dispatch"): the memory stays until the caller's
 * rcu_read_unlock(), but the object may be destroyed meanwhile, so only what outlives its
 * destroy (constant fields, RCU-published snapshots) may be read. ERR_PTR(-ENOENT) as above.
 */
struct iommufd_object *iommufd_get_object_rcu(struct iommufd_ctx *ictx, uint32_t id,
					      enum iommufd_object_type type);
/*
 * The object in the table at the lowest ID >= *@id (published, or unpublished but in the
 * table), *@id set to its ID; NULL past the last. Caller holds objects_lock.
 */
struct iommufd_object *iommufd_object_next_locked(struct iommufd_ctx *ictx, uint32_t *id);

/* A long-term reference of one object on another (counts in users, blocks destroy). */
static inline void iommufd_object_ref_users(struct iommufd_object *obj)
{
	atomic_fetch_add_explicit(&obj->users, 1, memory_order_relaxed);
}

/* Pairs with iommufd_object_ref_users(). */
static inline void iommufd_object_unref_users(struct iommufd_object *obj)
{
	atomic_fetch_sub_explicit(&obj->users, 1, memory_order_release);
}

enum {
	REMOVE_WAIT = 1 << 0,          /* the caller holds users: wait for in-flight ioctls first */
	REMOVE_OBJ_TOMBSTONE = 1 << 1, /* keep the ID used until the context closes */
};
int iommufd_object_remove(struct iommufd_ctx *ictx, struct iommufd_object *to_destroy,
			  uint32_t id, unsigned int flags);

/* The reply: min(user size, ours) bytes of our struct back. Inline: one copy, inline itself. */
static inline int iommufd_ucmd_respond(struct iommufd_ucmd *ucmd, size_t cmd_len)
{
	size_t n = ucmd->user_size < cmd_len ? ucmd->user_size : cmd_len;

	return uiommu_copy_to_user(ucmd->mm, ucmd->ubuffer, ucmd->cmd, n);
}

int iommufd_ucmd_probe_respond(struct iommufd_ucmd *ucmd, size_t cmd_len);
int iommufd_ucmd_respond_committed(struct iommufd_ucmd *ucmd, size_t cmd_len);

/* The context's life, used by the fd layer (file.c). */
struct iommufd_ctx *iommufd_ctx_alloc(struct uiommu_mm *mm);
void iommufd_ctx_release(struct iommufd_ctx *ictx);
int iommufd_ctx_ioctl(struct iommufd_ctx *ictx, struct uiommu_mm *mm, unsigned int cmd,
		      uint64_t arg);

/*
 * An ioctl answered without a reference on its file (main.c, "RCU dispatch"), in three steps
 * that share this state in the caller's frame: iommufd_ioctl_rcu_prepare() with no file (the
 * argument's copy-in), iommufd_ctx_ioctl_rcu() inside rcu_read_lock() (the handler's lookups,
 * no user memory, no lock, no sleep), iommufd_ioctl_rcu_finish() after rcu_read_unlock() (the
 * reply). A handler that needs more returns IOMMUFD_IOCTL_REF: the caller then takes the
 * file's reference and runs the ordinary handler with iommufd_ctx_ioctl_ref().
 */
#define IOMMUFD_IOCTL_REF INT_MAX
struct iommufd_ioctl_op;
struct iommufd_ucmd_rcu {
	struct iommufd_ucmd ucmd;
	const struct iommufd_ioctl_op *op;
	/* The op's two RCU steps, copied from it by the prepare (the inline steps below). */
	int (*execute_rcu)(struct iommufd_ucmd_rcu *rcmd);
	int (*reply_rcu)(struct iommufd_ucmd_rcu *rcmd); /* NULL: no reply */
	int rc_in;            /* the copy-in's result: dispatch errors come after EBADF */
	uint64_t buf[4];      /* the argument struct (main.c checks that each fits) */
	union {
		struct {      /* IOVA_RANGES: what the reply copies out */
			unsigned long nr, total;
			struct iopt_usable_range ranges[IOPT_USABLE_RCU_MAX];
		} iova_ranges;
	} out;
};
bool iommufd_ioctl_rcu_prepare(struct iommufd_ucmd_rcu *rcmd, struct uiommu_mm *mm,
			       unsigned int cmd, uint64_t arg);
int iommufd_ctx_ioctl_ref(struct iommufd_ctx *ictx, struct iommufd_ucmd_rcu *rcmd);

/* Inline: two calls that only forwarded were a tenth of an IOVA_RANGES. */
static inline int iommufd_ctx_ioctl_rcu(struct iommufd_ctx *ictx, struct iommufd_ucmd_rcu *rcmd)
{
	if (rcmd->rc_in)
		return rcmd->rc_in;
	rcmd->ucmd.ictx = ictx;
	return rcmd->execute_rcu(rcmd);
}

static inline int iommufd_ioctl_rcu_finish(struct iommufd_ucmd_rcu *rcmd, int rc)
{
	if (rc || !rcmd->reply_rcu)
		return rc;
	return rcmd->reply_rcu(rcmd);
}
/* Event fds (vEVENTQ, fault) keep the context's file open, as the kernel's fds pin its file. */
void iommufd_ctx_file_get(struct iommufd_ctx *ictx);
void iommufd_ctx_file_put(struct iommufd_ctx *ictx);

/* mmap regions of objects (mmap.c): an offset is the owner's ID << IOMMUFD_MMAP_ID_SHIFT. */
#define IOMMUFD_MMAP_ID_SHIFT 20
int iommufd_mmap_region_alloc(size_t len, int *fdp, void **mapp);
void iommufd_mmap_region_free(int fd, void *map, size_t len);
long iommufd_objects_live(void);
long iommufd_contexts_live(void);
void iommufd_files_dump(FILE *out);
/*
 * A layer above whose sub-fds map on their own (VFIO's BAR areas) and must hear the munmaps of
 * what it mapped: claims() says whether [start, end) touches one of its mappings (the preload
 * then sends the munmap here), munmap() unmaps the range and forgets its mappings there as one
 * step (so no mapping it still records is ever another's memory). One owner; registered once,
 * before its first mapping. Return: 0, -EBUSY (another is registered).
 */
struct iommufd_mmap_owner {
	bool (*claims)(uintptr_t start, uintptr_t end);
	int (*munmap)(void *addr, size_t len);
};
int iommufd_mmap_owner_register(const struct iommufd_mmap_owner *owner);
/*
 * Device memory of this process in [@start, @end): a mapping the owner made (a vfio-pci BAR
 * area), which is VM_PFNMAP | VM_IO in the kernel.
 */
bool iommufd_mmap_owner_claims(uintptr_t start, uintptr_t end);
/*
 * A MAP_FIXED mapping of [@addr, @addr + @len) failed: forget the recorded pages the kernel
 * unmapped all the same (mmap.c). errno is kept.
 */
void iommufd_mmap_fixed_failed(void *addr, size_t len);
/*
 * The length a MAP_FIXED mmap(2) of @len with @flags (and @fd) replaces: a hugetlb mapping's
 * rounded up to its huge page, else whole pages (mmap.c). errno may change.
 */
size_t iommufd_mmap_replaced_len(size_t len, int flags, int fd);

/* Sub-fds: fds made by an ioctl that stand for an object of the context (file.c). */
struct iommufd_file;
struct iommufd_subfd_ops {
	void (*release)(void *priv); /* the last close */
	/* Optional: ioctl(2) on the fd (the VFIO device cdev); without it, ENOTTY. */
	int (*ioctl)(void *priv, struct uiommu_mm *mm, unsigned int cmd, uint64_t arg);
	/*
	 * Optional: read(2)/pread(2) and write(2)/pwrite(2) at @off (plain read and write use
	 * and advance the file's position); without them, EINVAL, as a kernel file whose
	 * file_operations have no read or write answers.
	 */
	ssize_t (*read)(void *priv, struct uiommu_mm *mm, void *buf, size_t count, off_t off);
	ssize_t (*write)(void *priv, struct uiommu_mm *mm, const void *buf, size_t count,
			 off_t off);
	/* Optional: mmap(2) of the fd; MAP_FAILED with errno. Without it, uiommu_mmap()'s rules. */
	void *(*mmap)(void *priv, void *addr, size_t len, int prot, int flags, uint64_t off);
	/*
	 * An event fd (vEVENTQ, fault queue): a stream (read and write never move a position,
	 * @off is pread's or 0), and POLLIN is a byte the owner keeps in the fd's socket while
	 * the queue holds something (iommufd_subfd_ready()). Its peer carries no header (a
	 * readable header would make it always POLLIN): it is bound to a name instead, and a
	 * holder proves it holds the fd to learn the secret (remote.c).
	 */
	bool event;
	/* Optional: the anonymous file's name, "anon_inode:[...]" (readlink of its fd). */
	const char *name;
	/*
	 * Optional: the fd of the file at which this one's calls are really made (a VFIO cdev
	 * bound through another process), or -1. Constant once it is not -1, until the release;
	 * borrowed: another process's call on this file is answered with a copy of it (a
	 * redirect, remote.h), so that the caller makes the call there itself. Called in a
	 * forked child's handler too (its copy of the fd goes): it takes no lock.
	 */
	int (*delegate)(void *priv);
};
/* The sub-fd @fd has an mmap op: *@ret is its answer. false: not such an fd. */
bool iommufd_subfd_mmap(int fd, void *addr, size_t len, int prot, int flags, uint64_t off,
			void **ret);

/*
 * What fstat(2) and readlink("/proc/self/fd/N") show of a file: the device node it was opened
 * through (S_IFCHR and its numbers), or an anonymous inode ("anon_inode:[vfio-device]", mode
 * 0600 with no file type bits, rdev 0). A file without one shows the /dev/null it sits on.
 */
struct iommufd_node {
	char path[48];
	unsigned int major, minor;
	mode_t mode;
};
/* /dev/iommu: misc, a dynamic minor (256 and up on this kernel). */
#define IOMMUFD_NODE_MAJOR 10
#define IOMMUFD_NODE_MINOR 257
/*
 * procfd.c: the registry of what other processes' /proc/<pid>/fd/N show of our files, a record
 * per backing socket inode, kept once enabled (the preload layer). publish: 0, or -errno (the
 * open or ioctl making the file fails; 0 when there is no registry to keep); forget: at the
 * release or an unwind. lookup: 0 and *@node for a live record; -ENOENT otherwise. lookup_link: the same for a
 * readlink result ("socket:[INO]"); node_of_path: for a /proc fd link path, read on the host.
 */
void iommufd_procfd_enable(void);
int iommufd_procfd_publish(ino_t ino, const struct iommufd_node *node);
void iommufd_procfd_forget(ino_t ino);
int iommufd_procfd_lookup(unsigned long ino, struct iommufd_node *node);
int iommufd_procfd_lookup_link(const char *link, struct iommufd_node *node);
int iommufd_procfd_node_of_path(const char *path, struct iommufd_node *node);
/*
 * The stat of the file behind the fd link @path (relative to @dirfd) that the host's stat,
 * following it, found to be the socket @ino: one of this process's fds (its fstat), or a file
 * with a live record (its node's): 0 and *@st; -ENOENT when it is neither.
 */
int iommufd_procfd_link_stat(int dirfd, const char *path, unsigned long ino, struct stat *st);
/* The caller's address space (this process), for entry points outside an ioctl. */
struct uiommu_mm *iommufd_caller_mm(void);
/* Calls another process made (docs/processes.md): its fds as ours, and no new fds for it. */
bool iommufd_caller_remote(void);
int iommufd_caller_fd_get(int fd);
void iommufd_caller_fd_put(int local);
/* fget()/fput() of the file behind one of our fds, for holders outside iommufd (KVM). */
struct iommufd_file *iommufd_file_hold(int fd);
void iommufd_file_unhold(struct iommufd_file *file);
/* The struct stat of @node, as fstat() of a file opened through it shows. */
void iommufd_node_stat(const struct iommufd_node *node, struct stat *st);
struct iommufd_file *iommufd_subfd_alloc(struct iommufd_ctx *ictx,
					 const struct iommufd_subfd_ops *ops, void *priv, int *fd);
void iommufd_subfd_install(struct iommufd_file *file, int fd);
void iommufd_subfd_ready(struct iommufd_file *file, bool ready);
bool iommufd_subfd_is_event(int fd);
void iommufd_subfd_abort(struct iommufd_file *file, int fd);
void *iommufd_subfd_get(int fd, const struct iommufd_subfd_ops *ops, struct iommufd_file **filep);
void iommufd_subfd_put(struct iommufd_file *file);
/* A file of its own, made by open() rather than by an ioctl (vfio/device_cdev.c); no parent. */
int iommufd_file_open_ops(const struct iommufd_subfd_ops *ops, void *priv, int flags,
			  const struct iommufd_node *node);
/* A new context's file opened through @node (/dev/iommu, the VFIO container): fd or -errno. */
int iommufd_file_open_ctx(int flags, const struct iommufd_node *node);
/* The context behind a /dev/iommu fd, its file held (iommufd_ctx_file_put()); -EBADF/-EBADFD. */
struct iommufd_ctx *iommufd_ctx_from_fd(int fd);

/* ---- IOAS ---------------------------------------------------------------------------------- */

struct iommufd_ioas {
	struct iommufd_object obj;
	struct io_pagetable iopt;
	struct uiommu_mutex mutex; /* protects auto_hwpts; order: before igroup->lock */
	struct iommufd_hwpt_paging *auto_hwpts; /* automatic HWPTs, linked by auto_next */
};

static inline struct iommufd_ioas *iommufd_get_ioas(struct iommufd_ctx *ictx, uint32_t id)
{
	struct iommufd_object *obj = iommufd_get_object(ictx, id, IOMMUFD_OBJ_IOAS);

	return IS_ERR(obj) ? ERR_CAST(obj) : container_of(obj, struct iommufd_ioas, obj);
}

struct iommufd_ioas *iommufd_ioas_alloc(struct iommufd_ctx *ictx);
void iommufd_ioas_destroy(struct iommufd_object *obj);
int iommufd_ioas_alloc_ioctl(struct iommufd_ucmd *ucmd);
int iommufd_ioas_iova_ranges(struct iommufd_ucmd *ucmd);
int iommufd_ioas_iova_ranges_rcu(struct iommufd_ucmd_rcu *rcmd);
int iommufd_ioas_iova_ranges_rcu_reply(struct iommufd_ucmd_rcu *rcmd);
int iommufd_ioas_allow_iovas(struct iommufd_ucmd *ucmd);
int iommufd_ioas_map(struct iommufd_ucmd *ucmd);
int iommufd_ioas_map_file(struct iommufd_ucmd *ucmd);
int iommufd_ioas_copy(struct iommufd_ucmd *ucmd);
int iommufd_ioas_unmap(struct iommufd_ucmd *ucmd);
int iommufd_ioas_option(struct iommufd_ucmd *ucmd);
int iommufd_ioas_change_process(struct iommufd_ucmd *ucmd);
int iommufd_option_rlimit_mode(struct iommu_option *cmd, struct iommufd_ctx *ictx);

/* ---- devices and hardware page tables ----------------------------------------------------- */

struct device;
struct iommu_domain;
struct iommu_user_data;

struct iommufd_fault;

struct iommufd_hw_pagetable {
	struct iommufd_object obj;
	struct iommu_domain *domain; /* owned; constant */
	bool pasid_compat;           /* allocated with IOMMU_HWPT_ALLOC_PASID; constant */
	/* The fault queue its domain's faults go to (the kernel's hwpt->fault), or NULL; constant. */
	struct iommufd_fault *fault;
};

struct iommufd_hwpt_paging {
	struct iommufd_hw_pagetable common;
	struct iommufd_ioas *ioas;   /* a users reference; constant */
	uint32_t flags;              /* IOMMU_HWPT_ALLOC_*; constant */
	bool auto_domain;            /* made by an attach to the IOAS; dies at its last detach */
	bool auto_linked;            /* in ioas->auto_hwpts; set under ioas->mutex */
	struct iommufd_hwpt_paging *auto_next; /* ioas->mutex */
};

struct iommufd_vdevice;
struct iommufd_viommu;

/*
 * What the core publishes for an iommufd attachment (RID or PASID): a new one for every attach
 * and every replace, so that fault routing can tell groups reported before a replace from those
 * after it. Freed after the detach or replace that removed it, once its faults are answered
 * (iommufd_auto_response_faults()).
 */
struct iommufd_attach_handle {
	struct iommu_attach_handle handle;
	struct iommufd_device *idev; /* the device the fault came from; constant */
};

static inline struct iommufd_attach_handle *to_iommufd_handle(struct iommu_attach_handle *h)
{
	return container_of(h, struct iommufd_attach_handle, handle);
}

/*
 * One device's membership in an attachment of its group (device.c): the device and a handle of
 * its own. Exactly one member's handle is the one published in the core (iommufd_attach::handle);
 * the others are spares, never published, so that the published handle can always name an
 * attached device (see device.c). Head at iommufd_attach::devices; igroup->lock.
 */
struct iommufd_attach_dev {
	struct iommufd_device *idev;
	struct iommufd_attach_handle *handle; /* owned */
	struct iommufd_attach_dev *next;
};

/*
 * What one PASID (IOMMU_NO_PASID: the RID) of a group is attached to, and which of the group's
 * devices asked for it: the kernel's struct iommufd_attach. Made by the first device's attach,
 * freed by the last one's detach. Head at iommufd_group::attaches; igroup->lock.
 */
struct iommufd_attach {
	uint32_t pasid;
	struct iommufd_hw_pagetable *hwpt;    /* a users reference per member */
	struct iommufd_attach_handle *handle; /* published in the core; a member's */
	struct iommufd_attach_dev *devices;   /* never empty */
	struct iommufd_attach *next;
};

/*
 * The kernel's iommufd_group ("igroup"): one per (context, iommu_group) with a device bound,
 * shared by the idevs of that group bound to that context, freed with the last of them. The
 * core's group has one domain per PASID, so attachments are kept here, not per device.
 */
struct iommufd_group {
	struct iommufd_ctx *ictx;      /* not a reference: every idev holding us holds the ctx */
	struct iommu_group *group;     /* a reference (iommu_group_get()); constant */
	unsigned int refs;             /* one per bound idev; iommufd_groups_lock (device.c) */
	struct uiommu_mutex lock;      /* protects attaches; order: after ioas->mutex, before
					  idev->lock */
	struct iommufd_attach *attaches;
	struct iommufd_group *next;    /* in device.c's table; iommufd_groups_lock */
};

struct iommufd_device {
	struct iommufd_object obj;
	struct iommufd_ctx *ictx;
	struct device *dev;          /* a reference; constant */
	struct iommufd_group *igroup; /* a reference (iommufd_group_put()); constant */
	struct uiommu_mutex lock;    /* protects hwpt, vdev, destroying; order: after igroup->lock */
	/*
	 * The HWPT the group's RID is on while this device is a member of that attachment (a copy
	 * of igroup's, written under igroup->lock and this lock), or NULL. Readers under this lock
	 * may use it: the device's own users reference keeps it.
	 */
	struct iommufd_hw_pagetable *hwpt;
	struct iommufd_vdevice *vdev; /* its vDEVICE (not a reference), or NULL */
	bool destroying;              /* unbind began: no new vDEVICE may link to it */
};

/* A user-managed stage-1 HWPT over a NEST_PARENT paging HWPT (hw_pagetable.c). */
struct iommufd_hwpt_nested {
	struct iommufd_hw_pagetable common;
	struct iommufd_hwpt_paging *parent; /* a users reference unless viommu; constant */
	struct iommufd_viommu *viommu;      /* made from a vIOMMU: a users reference; or NULL */
};

static inline uint32_t iommufd_object_id(struct iommufd_object *obj)
{
	return atomic_load_explicit(&obj->id, memory_order_relaxed);
}

static inline struct iommufd_device *iommufd_get_device(struct iommufd_ctx *ictx, uint32_t id)
{
	struct iommufd_object *obj = iommufd_get_object(ictx, id, IOMMUFD_OBJ_DEVICE);

	return IS_ERR(obj) ? ERR_CAST(obj) : container_of(obj, struct iommufd_device, obj);
}

static inline struct iommufd_hwpt_paging *iommufd_get_hwpt_paging(struct iommufd_ctx *ictx,
								   uint32_t id)
{
	struct iommufd_object *obj = iommufd_get_object(ictx, id, IOMMUFD_OBJ_HWPT_PAGING);

	return IS_ERR(obj) ? ERR_CAST(obj) :
			     container_of(obj, struct iommufd_hwpt_paging, common.obj);
}

struct iommufd_device *iommufd_device_bind(struct iommufd_ctx *ictx, struct device *dev,
					   uint32_t *id);
void iommufd_device_unbind(struct iommufd_device *idev);
int iommufd_device_attach(struct iommufd_device *idev, uint32_t *pt_id);
int iommufd_device_replace(struct iommufd_device *idev, uint32_t *pt_id);
void iommufd_device_detach(struct iommufd_device *idev);
/* The same at a PASID (IOMMU_NO_PASID: the RID forms above). */
int iommufd_device_pasid_attach(struct iommufd_device *idev, uint32_t pasid, uint32_t *pt_id);
int iommufd_device_pasid_replace(struct iommufd_device *idev, uint32_t pasid, uint32_t *pt_id);
void iommufd_device_pasid_detach(struct iommufd_device *idev, uint32_t pasid);
bool iommufd_device_pasid_attached(struct iommufd_device *idev, uint32_t pasid);
/*
 * The fault queue's part of a detach or replace (eventq.c): after @handle was taken off a
 * fault-capable @hwpt's attachment and before @handle is freed, wait for the device's reports
 * in flight (iopf_drain_dev()), then answer INVALID to and free every fault group of
 * @hwpt->fault routed through @handle, read or not. Caller holds idev->lock.
 */
void iommufd_auto_response_faults(struct iommufd_hw_pagetable *hwpt,
				  struct iommufd_attach_handle *handle);
void iommufd_device_destroy(struct iommufd_object *obj);
int iommufd_get_hw_info(struct iommufd_ucmd *ucmd);

struct iommufd_hwpt_paging *iommufd_hwpt_paging_alloc(struct iommufd_ctx *ictx,
						      struct iommufd_ioas *ioas,
						      struct iommufd_device *idev, uint32_t flags,
						      const struct iommu_user_data *user_data);
void iommufd_hwpt_paging_destroy(struct iommufd_object *obj);
void iommufd_hw_pagetable_put(struct iommufd_ctx *ictx, struct iommufd_hw_pagetable *hwpt);
int iommufd_hwpt_alloc(struct iommufd_ucmd *ucmd);
int iommufd_hwpt_set_dirty_tracking(struct iommufd_ucmd *ucmd); /* dirty.c */
int iommufd_hwpt_get_dirty_bitmap(struct iommufd_ucmd *ucmd);
int iommufd_test_dirty(struct iommufd_ucmd *ucmd);

void iommufd_hwpt_nested_destroy(struct iommufd_object *obj);
int iommufd_hwpt_invalidate(struct iommufd_ucmd *ucmd);

/* ---- vIOMMU, vDEVICE, vEVENTQ, HW queue (viommu.c, eventq.c) -------------------------------- */

int iommufd_viommu_alloc_ioctl(struct iommufd_ucmd *ucmd);
int iommufd_vdevice_alloc_ioctl(struct iommufd_ucmd *ucmd);
int iommufd_veventq_alloc(struct iommufd_ucmd *ucmd);
void iommufd_viommu_destroy(struct iommufd_object *obj);
void iommufd_vdevice_destroy(struct iommufd_object *obj);
void iommufd_veventq_destroy(struct iommufd_object *obj);
int iommufd_hw_queue_alloc_ioctl(struct iommufd_ucmd *ucmd); /* hw_queue.c */
void iommufd_hw_queue_destroy(struct iommufd_object *obj);
struct iommufd_hwpt_paging *iommufd_viommu_parent(struct iommufd_viommu *viommu);
/* The vDEVICE of @idev goes with it, leaving a tombstone (device unbind). */
void iommufd_device_remove_vdev(struct iommufd_device *idev);
/* TRIGGER_VEVENT: one selftest event for @idev through its vIOMMU's vEVENTQ. */
int iommufd_viommu_trigger_vevent(struct iommufd_device *idev);
int iommufd_veventq_report(struct iommufd_viommu *viommu, uint32_t type, const void *data,
			   uint32_t len);

/* Fault queues (eventq.c). */
int iommufd_fault_alloc(struct iommufd_ucmd *ucmd);
void iommufd_fault_destroy(struct iommufd_object *obj);
int iommufd_fault_iopf_handler(struct iopf_group *group);
int iommufd_hwpt_set_fault(struct iommufd_ctx *ictx, struct iommufd_hw_pagetable *hwpt,
			   uint32_t fault_id);
void iommufd_hwpt_put_fault(struct iommufd_hw_pagetable *hwpt);

void iommufd_selftest_destroy(struct iommufd_object *obj);

/* ---- VFIO compat, test command ---------------------------------------------------------- */

int iommufd_vfio_ioas(struct iommufd_ucmd *ucmd);
int iommufd_vfio_compat_ioas_create(struct iommufd_ctx *ictx);
int iommufd_vfio_compat_ioas_get_id(struct iommufd_ctx *ictx, uint32_t *ioas_id);
int iommufd_vfio_ioctl(struct iommufd_ctx *ictx, struct uiommu_mm *mm, unsigned int cmd,
		       uint64_t arg);
int iommufd_test(struct iommufd_ucmd *ucmd);
int iommufd_test_access(struct iommufd_ucmd *ucmd);
void iommufd_access_destroy_object(struct iommufd_object *obj);

static inline int iommufd_conv_map_flags(uint32_t flags)
{
	int prot = 0;

	if (flags & IOMMU_IOAS_MAP_WRITEABLE)
		prot |= IOMMU_WRITE;
	if (flags & IOMMU_IOAS_MAP_READABLE)
		prot |= IOMMU_READ;
	return prot;
}

#endif
