// SPDX-License-Identifier: MIT
/*
 * The VFIO group node, /dev/vfio/<G>: the legacy way to a device, through a container. Semantics
 * follow the kernel's drivers/vfio/group.c with CONFIG_IOMMUFD_VFIO_CONTAINER (the container is
 * an iommufd context: /dev/vfio/vfio opens one, and /dev/iommu fds are accepted too); the code
 * is ours.
 *
 * Which nodes. <G> is the IOMMU group's number; the node exists while a present function of the
 * group is bound to vfio-pci (nodes.c). One open file per group: a second open answers EBUSY,
 * and so does an open while a device of the group is bound through its cdev (and a cdev
 * BIND_IOMMUFD while the node is open, device_cdev.c): the two paths to a device exclude each
 * other. Both rules hold across the processes of a uiommu-run session too (claim.c): the
 * group file holds the node's claim until its last device fd closes.
 * An open or GET_DEVICE_FD refused so lets go of what gone processes held last and asks again
 * (vfio_group_open()); an open the session's claim refuses asks the session's other serving
 * processes to do the same first.
 *
 * The file. A group file has a container or not. SET_CONTAINER takes an iommufd fd (EBADF for an
 * fd that is not open, EBADFD for any other file, EINVAL when one is set already) and makes the
 * context's compat IOAS if it has none, so that the type1 ioctls on the container work at once;
 * nothing is claimed in the core yet. GET_DEVICE_FD(name) finds the function of the group whose
 * BDF is the name (ENODEV for any other name, a function of another group included) and opens
 * it in group mode (device_cdev.c): bound to the container's context, which claims DMA
 * ownership of the group (EPERM when a DMA-API driver holds a device of it: the group is not
 * viable), and attached to the compat IOAS, so that the function's DMA goes through the IOAS
 * the container maps. UNSET_CONTAINER (EINVAL without one) always succeeds with an iommufd
 * container, and open devices stay bound, as the kernel's; closing the group file unsets too.
 *
 * A container another process serves. Our machine's copy of the group cannot use it, so the
 * group goes where the container is, as a cdev bound to such a context does (device_cdev.c):
 * that process opens the node in its machine and sets the container there (WIRE_VFIO_GROUP,
 * vfio_group_open_for_remote()), sharing our claim of the node (a copy of our handle: nobody
 * can open the node in between, and a failure leaves ours as it was); our file keeps the new
 * one as its delegate and makes every later call there (UNSET and a second SET included: the
 * delegate stays until our last put, as the kernel's group file stays open after UNSET), and
 * another process's calls on ours are redirected to it. A file made so delegates no further
 * (EOPNOTSUPP for a container of any other process: one hop).
 *
 * GET_STATUS: VIABLE | CONTAINER_SET with a container; otherwise VIABLE while nobody claims DMA
 * ownership of the group (no DMA-API driver is bound to a device of it, no iommufd owns it);
 * vfio-pci and unbound functions do not count. ENODEV once the group has no device.
 *
 * read() and write() of the fd answer EINVAL (the group's file_operations have neither).
 *
 * Locking: everything here is under vfio_cdev_lock (group.h), never held across a call that
 * takes it (vfio_cdev_open_group_mode()), across the last put of a context, or across the ask
 * of another process (a SET_CONTAINER in flight is marked remote.setting meanwhile).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "iommu/iommu.h"
#include "iommufd/iommufd_private.h"
#include "iommufd/remote.h"
#include "lib/fail.h"
#include "lib/sys.h"
#include "machine/sysfs.h"
#include "uiommu/uiommu.h"
#include "vfio/group.h"

/* The uAPI (include/uiommu/vfio_compat.h), private so that any host header works. */
#define VFIO_GROUP_GET_STATUS _IO(';', 100 + 3)
#define VFIO_GROUP_SET_CONTAINER _IO(';', 100 + 4)
#define VFIO_GROUP_UNSET_CONTAINER _IO(';', 100 + 5)
#define VFIO_GROUP_GET_DEVICE_FD _IO(';', 100 + 6)
#define VFIO_GROUP_FLAGS_VIABLE (1u << 0)
#define VFIO_GROUP_FLAGS_CONTAINER_SET (1u << 1)
/* GET_DEVICE_FD's name is read as strndup_user(PAGE_SIZE) reads it. */
#define VFIO_GROUP_NAME_MAX 4096

struct vfio_group_status {
	uint32_t argsz, flags;
};

/* One open of /dev/vfio/<G>: the kernel's struct vfio_group while its file is open. */
struct vfio_group_file {
	int id;                        /* the IOMMU group's number; constant */
	struct iommu_group *group;     /* a reference; constant */
	/* Under vfio_cdev_lock: */
	unsigned int refs;             /* the fd's file, and each device fd made from it */
	struct iommufd_ctx *ictx;      /* the container (an iommufd context), its file held */
	struct session_claim claim;    /* the node's claim in the session (claim.c) */
	struct vfio_group_file *next;  /* in vfio_groups_open */
	/* Opened for another process's group file (WIRE_VFIO_GROUP): delegates no further. */
	bool for_remote;
	/*
	 * The container is a context another process serves: the file of the same node that
	 * process opened for us with that container (vfio_group_set_remote()), on which every
	 * call on this file is made from then on. Under vfio_cdev_lock; set once, then constant
	 * until the last put.
	 */
	struct {
		bool setting; /* a SET_CONTAINER is asking for it */
		/* Ours, kept (lib/fdkeep.h); -1 none. Atomic: a forked child's handler reads it. */
		atomic_int fd;
		struct iommufd_server *server;
		uint64_t token;
		uint8_t secret[WIRE_SECRET_LEN];
	} remote;
};

/* The open group files, at most one per group; vfio_cdev_lock. */
static struct vfio_group_file *vfio_groups_open;

static struct vfio_group_file *vfio_group_find_locked(struct iommu_group *group)
{
	for (struct vfio_group_file *g = vfio_groups_open; g; g = g->next)
		if (g->group == group)
			return g;
	return NULL;
}

bool vfio_group_node_is_open(struct device *dev)
{
	struct iommu_group *group = iommu_group_get(dev);
	bool open;

	if (!group)
		return false;
	open = vfio_group_find_locked(group) != NULL;
	iommu_group_put(group);
	return open;
}

/* ---- ioctls --------------------------------------------------------------------------------- */

static int vfio_group_get_status(struct vfio_group_file *g, struct uiommu_mm *mm, uint64_t arg)
{
	struct vfio_group_status status;
	struct iommu_group_info info;
	int rc;

	rc = uiommu_copy_from_user(mm, &status, arg, sizeof(status));
	if (rc)
		return rc;
	if (status.argsz < sizeof(status))
		return -EINVAL;
	status.flags = 0;
	iommu_group_get_info(g->group, &info);
	if (!info.nr_devices)
		return -ENODEV; /* the IOMMU group is gone */
	vfio_lock();
	if (g->ictx)
		status.flags = VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET;
	else if (!iommu_group_dma_owner_claimed(g->group))
		status.flags = VFIO_GROUP_FLAGS_VIABLE;
	vfio_unlock();
	return uiommu_copy_to_user(mm, arg, &status, sizeof(status));
}

/* A container is set, or being set through another process. vfio_cdev_lock held. */
static bool vfio_group_container_is_set(struct vfio_group_file *g)
{
	return g->ictx || g->remote.fd >= 0 || g->remote.setting;
}

/* @ictx, a context of ours whose file the caller holds, becomes the container; its hold too. */
static int vfio_group_container_set(struct vfio_group_file *g, struct iommufd_ctx *ictx)
{
	int rc;

	vfio_lock();
	rc = vfio_group_container_is_set(g) ? -EINVAL : iommufd_vfio_compat_ioas_create(ictx);
	if (!rc) {
		g->ictx = ictx; /* the reference moves into the group */
		ictx = NULL;
	}
	vfio_unlock();
	if (ictx)
		iommufd_ctx_file_put(ictx);
	return rc;
}

/*
 * The group goes where the container is. Our machine's copy of the group cannot use a context
 * another process serves (its IOAS, its domains are that process's), so that process opens
 * the same node in its machine and sets the container there (WIRE_VFIO_GROUP: its checks and
 * errnos); this file keeps the new file's fd and makes every later call there, as a cdev bound
 * through another process does (device_cdev.c), and another process's calls on this file are
 * redirected to it (ops->delegate). The node's claim does not move: the new file shares ours
 * (a copy of our handle, which that process takes itself), so no third process can open the
 * node between the two, and a failure leaves ours as it was. Both handles are then only
 * closed, never unlocked (session.c): the node stays claimed while either file lives (ours,
 * or theirs with the devices it opened). The round trip runs without vfio_cdev_lock.
 */
static int vfio_group_set_remote(struct vfio_group_file *g, struct iommufd_server *server,
				 uint64_t token, const uint8_t *secret)
{
	uint8_t g_secret[WIRE_SECRET_LEN];
	uint64_t g_token;
	int fd, rc = 0;

	vfio_lock();
	if (vfio_group_container_is_set(g))
		rc = -EINVAL;
	else if (g->for_remote)
		rc = -EOPNOTSUPP; /* one hop: a file made for another process asks nobody */
	else
		g->remote.setting = true;
	vfio_unlock();
	if (rc)
		return rc;
	/* The claim's handle stays ours and open: only the last put drops it. */
	fd = iommufd_remote_vfio_group(server, token, secret, (unsigned int)g->id, g->claim.fd,
				       &g_token, g_secret);
	vfio_lock();
	g->remote.setting = false;
	if (fd >= 0) {
		g->remote.server = server;
		g->remote.token = g_token;
		memcpy(g->remote.secret, g_secret, WIRE_SECRET_LEN);
		atomic_store_explicit(&g->remote.fd, fd, memory_order_release);
		g->claim.shared = g->claim.fd >= 0; /* the new file's handle is a copy of ours */
	}
	vfio_unlock();
	return fd < 0 ? fd : 0;
}

static int vfio_group_set_container(struct vfio_group_file *g, struct uiommu_mm *mm,
				    uint64_t arg)
{
	uint8_t secret[WIRE_SECRET_LEN];
	struct iommufd_server *server;
	struct iommufd_ctx *ictx;
	uint64_t token;
	int32_t fd;
	bool set;
	int rc;

	rc = uiommu_copy_from_user(mm, &fd, arg, sizeof(fd));
	if (rc)
		return rc;
	/* A context another process serves, named by our own call or another process's. */
	rc = vfio_iommufd_remote(fd, &server, &token, secret);
	if (!rc)
		return vfio_group_set_remote(g, server, token, secret);
	if (rc != -EBADF)
		return rc;
	/* EBADF for no open file comes first; EBADFD (not an iommufd) after the state checks. */
	ictx = iommufd_ctx_from_fd(fd);
	if (!IS_ERR(ictx))
		return vfio_group_container_set(g, ictx);
	if (PTR_ERR(ictx) == -EBADF)
		return -EBADF;
	vfio_lock();
	set = vfio_group_container_is_set(g);
	vfio_unlock();
	return set ? -EINVAL : (int)PTR_ERR(ictx);
}

static int vfio_group_unset_container(struct vfio_group_file *g)
{
	struct iommufd_ctx *ictx;

	vfio_lock();
	ictx = g->ictx;
	g->ictx = NULL;
	vfio_unlock();
	if (!ictx)
		return -EINVAL;
	/* Perhaps the context's last reference: not under our lock. */
	iommufd_ctx_file_put(ictx);
	return 0;
}

struct vfio_group_match {
	const char *name;
	struct device *dev; /* a reference when found */
};

static int vfio_group_match_fn(struct device *dev, void *data)
{
	struct vfio_group_match *m = data;

	/* vfio-pci's match: the BDF, nothing after it (no VF token for these functions). */
	if (strcmp(dev->name, m->name))
		return 0;
	device_get(dev);
	m->dev = dev;
	return 1;
}

static int vfio_group_get_device_fd(struct vfio_group_file *g, struct uiommu_mm *mm,
				    uint64_t arg)
{
	struct vfio_group_match match = {};
	struct iommufd_ctx *ictx;
	char *name;
	size_t n;
	int rc;

	name = uiommu_zalloc(VFIO_GROUP_NAME_MAX);
	if (!name)
		return -ENOMEM;
	/* strndup_user(): EFAULT for a bad pointer, EINVAL for no NUL in a page's worth. */
	for (n = 0; n < VFIO_GROUP_NAME_MAX; n++) {
		rc = uiommu_copy_from_user(mm, &name[n], arg + n, 1);
		if (rc)
			goto out_free;
		if (!name[n])
			break;
	}
	if (n == VFIO_GROUP_NAME_MAX) {
		rc = -EINVAL;
		goto out_free;
	}
	vfio_lock();
	ictx = g->ictx;
	if (ictx)
		iommufd_ctx_file_get(ictx); /* for the open below, which takes our lock */
	vfio_unlock();
	if (!ictx) {
		rc = -EINVAL;
		goto out_free;
	}
	match.name = name;
	iommu_group_for_each_dev(g->group, &match, vfio_group_match_fn);
	if (!match.dev) {
		rc = -ENODEV;
		goto out_put_ctx;
	}
	/* The device fd holds the group, as the kernel's holds the group's file. */
	vfio_lock();
	g->refs++;
	vfio_unlock();
	rc = vfio_cdev_open_group_mode(match.dev, ictx, g);
	/* A device fd (or cdev file) a gone process held last may be in the way: as for an open. */
	if (rc == -EBUSY || rc == -EPERM) {
		iommufd_remote_settle();
		rc = vfio_cdev_open_group_mode(match.dev, ictx, g);
	}
	if (rc < 0)
		vfio_group_file_put(g);
	device_put(match.dev);
out_put_ctx:
	iommufd_ctx_file_put(ictx);
out_free:
	uiommu_free(name);
	return rc;
}

/*
 * The file our calls are made at once the container is another process's (ops->delegate):
 * another process's call on ours is redirected there (remote.h). Also asked in a forked
 * child, for its copy to go (file.c): no lock, the fd is set once.
 */
static int vfio_group_delegate(void *priv)
{
	struct vfio_group_file *g = priv;

	return atomic_load_explicit(&g->remote.fd, memory_order_acquire);
}

static int vfio_group_ioctl(void *priv, struct uiommu_mm *mm, unsigned int cmd, uint64_t arg)
{
	struct vfio_group_file *g = priv;
	int fd = vfio_group_delegate(g);

	if (!mm)
		return -ENOMEM;
	/*
	 * Every call goes to the file that has the container, UNSET and a second SET included:
	 * ours, with our memory; another process's that takes no redirect would use ours.
	 */
	if (fd >= 0)
		return iommufd_caller_is_remote() ?
			       -EOPNOTSUPP :
			       iommufd_remote_ioctl(g->remote.server, g->remote.token,
						    g->remote.secret, cmd, arg, NULL);
	switch (cmd) {
	case VFIO_GROUP_GET_STATUS:
		return vfio_group_get_status(g, mm, arg);
	case VFIO_GROUP_SET_CONTAINER:
		return vfio_group_set_container(g, mm, arg);
	case VFIO_GROUP_UNSET_CONTAINER:
		return vfio_group_unset_container(g);
	case VFIO_GROUP_GET_DEVICE_FD:
		return vfio_group_get_device_fd(g, mm, arg);
	default:
		return -ENOTTY;
	}
}

/*
 * The last of the group's fd and the device fds made from it: the group closes (the kernel's
 * vfio_group_fops_release(), which device fds hold off), and its container goes.
 */
void vfio_group_file_put(void *priv)
{
	struct vfio_group_file *g = priv, **p;
	struct iommufd_ctx *ictx;

	vfio_lock();
	if (--g->refs) {
		vfio_unlock();
		return;
	}
	for (p = &vfio_groups_open; *p; p = &(*p)->next) {
		if (*p == g) {
			*p = g->next;
			break;
		}
	}
	ictx = g->ictx;
	g->ictx = NULL;
	/*
	 * Before the lock goes: an open here must not meet our own claim after "not open". A
	 * claim shared with the file another process opened for us is only closed (session.c).
	 */
	session_claim_drop(&g->claim);
	vfio_unlock();
	if (ictx)
		iommufd_ctx_file_put(ictx);
	/* Our close of the delegate is its last but for redirected callers' copies: it goes. */
	if (g->remote.fd >= 0)
		sys_close(g->remote.fd);
	iommu_group_put(g->group);
	uiommu_free(g);
}

static void vfio_group_release(void *priv)
{
	vfio_group_file_put(priv);
}

static const struct iommufd_subfd_ops vfio_group_fops = {
	.release = vfio_group_release,
	.ioctl = vfio_group_ioctl,
	.delegate = vfio_group_delegate,
};

bool vfio_group_is_fd(int fd)
{
	struct iommufd_file *file;
	void *g = iommufd_subfd_get(fd, &vfio_group_fops, &file);

	if (IS_ERR(g))
		return false;
	iommufd_subfd_put(file);
	return true;
}

/*
 * The IOMMU group of the VFIO group fd @fd, referenced (PCI_HOT_RESET's group form, vfio.h):
 * ERR_PTR(-EBADF) for a closed fd, -EINVAL for any other file.
 */
struct iommu_group *vfio_group_fd_iommu_group(int fd)
{
	struct iommufd_file *file;
	struct vfio_group_file *g = iommufd_subfd_get(fd, &vfio_group_fops, &file);
	struct iommu_group *grp;

	if (IS_ERR(g))
		return ERR_PTR(fd < 0 || sys_fcntl(fd, F_GETFD, 0) < 0 ? -EBADF : -EINVAL);
	grp = iommu_group_ref_get(g->group);
	iommufd_subfd_put(file);
	return grp;
}

/* ---- open ----------------------------------------------------------------------------------- */

static int vfio_group_member_bound_fn(struct device *dev, void *data)
{
	(void)data;
	return vfio_cdev_device_bound_locked(dev);
}

/*
 * One try of vfio_group_open(); *@claimed: an EBUSY came from the session's claim. @claim_fd
 * not -1: share that handle of the claim (a copy of another process's, vfio_claim_node_adopt())
 * rather than take one; the new file in *@gp.
 */
static int vfio_group_open_try(int group_id, int flags, bool *claimed, int claim_fd,
			       struct vfio_group_file **gp)
{
	struct iommufd_node node = { .major = SYSFS_VFIO_GROUP_MAJOR, .mode = S_IFCHR | 0600 };
	struct vfio_group_file *g;
	int minor, fd, rc;

	*claimed = false;
	if (!vfio_group_node_exists(group_id, &minor))
		return -ENOENT;
	g = uiommu_zalloc(sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->id = group_id;
	g->claim = SESSION_CLAIM_NONE;
	g->remote.fd = -1;
	g->group = iommu_group_get_by_id(group_id);
	if (!g->group) {
		rc = -ENOENT; /* went away since the check */
		goto err_free;
	}
	vfio_lock();
	if (vfio_group_find_locked(g->group) ||
	    iommu_group_for_each_dev(g->group, NULL, vfio_group_member_bound_fn)) {
		rc = -EBUSY;
		goto err_unlock;
	}
	/* The same two rules against the other processes of the session. */
	if (claim_fd < 0) {
		rc = vfio_claim_node(g->group, &g->claim);
	} else {
		int copy = sys_fcntl(claim_fd, F_DUPFD_CLOEXEC, 0);

		rc = copy < 0 ? -errno : vfio_claim_node_adopt(g->group, copy, &g->claim);
	}
	if (rc) {
		*claimed = rc == -EBUSY;
		goto err_unlock;
	}
	snprintf(node.path, sizeof(node.path), VFIO_DEV_DIR "/%d", group_id);
	node.minor = (unsigned int)minor;
	fd = iommufd_file_open_ops(&vfio_group_fops, g, flags, &node);
	if (fd < 0) {
		rc = fd;
		goto err_drop_claim;
	}
	g->refs = 1;
	g->for_remote = gp != NULL;
	g->next = vfio_groups_open;
	vfio_groups_open = g;
	vfio_unlock();
	if (gp)
		*gp = g;
	return fd;

err_drop_claim:
	session_claim_drop(&g->claim);
err_unlock:
	vfio_unlock();
	iommu_group_put(g->group);
err_free:
	uiommu_free(g);
	return rc;
}

/**
 * vfio_group_open() - open /dev/vfio/@group_id
 *
 * EBUSY may be the doing of a file held last by a process that is gone (the group file, or a
 * bound cdev file of a device of the group), which the kernel released at its exit, before
 * anyone could see it gone: what the dead left goes first (iommufd_remote_settle(): no system
 * call in a process that shares nothing), outside vfio_cdev_lock, which the releases take, and
 * the open is tried again; if the session's claim still refuses it, every other serving
 * process of the session settles too (iommufd_remote_settle_session(): the claim may be held
 * for a file another process serves, whose last fd was a dead one's), and it is tried once more,
 * and once more after another pass everywhere (iommufd_remote_settle_again(): a release in that
 * pass may have let go of a delegate a server asked before serves).
 *
 * Return: the fd; -ENOENT no such node; -EBUSY open already, or a device of the group is
 * bound through its cdev (here or in another process of the session); -ENOMEM, -EMFILE.
 */
int vfio_group_open(int group_id, int flags)
{
	bool claimed;
	int rc = vfio_group_open_try(group_id, flags, &claimed, -1, NULL);

	if (rc != -EBUSY)
		return rc;
	iommufd_remote_settle();
	rc = vfio_group_open_try(group_id, flags, &claimed, -1, NULL);
	if (!claimed)
		return rc;
	iommufd_remote_settle_session();
	rc = vfio_group_open_try(group_id, flags, &claimed, -1, NULL);
	if (!claimed)
		return rc;
	/* A release there may have let go of a delegate another server, asked first, serves. */
	iommufd_remote_settle_again();
	return vfio_group_open_try(group_id, flags, &claimed, -1, NULL);
}

/*
 * For another process's group file whose container is @ictx, ours (WIRE_VFIO_GROUP, file.c):
 * the open and SET_CONTAINER its own process would make, here, with the same answers; the
 * node's claim is the asker's, shared (@claim_fd), so nobody else is asked or waited for:
 * only what the dead left here may be in the way (a group file, a bound cdev of ours). The fd
 * travels back with the reply; on failure it is closed here, the last close: nothing stays.
 */
int vfio_group_open_for_remote(struct iommufd_ctx *ictx, unsigned int group_id, int claim_fd)
{
	struct vfio_group_file *g;
	bool claimed;
	int fd, rc;

	fd = group_id > INT32_MAX ? -ENOENT :
				    vfio_group_open_try((int)group_id, O_RDWR | O_CLOEXEC,
							&claimed, claim_fd, &g);
	if (fd == -EBUSY && !claimed) {
		iommufd_remote_settle();
		fd = vfio_group_open_try((int)group_id, O_RDWR | O_CLOEXEC, &claimed, claim_fd,
					 &g);
	}
	if (claim_fd >= 0)
		sys_close(claim_fd);
	if (fd < 0)
		return fd;
	iommufd_ctx_file_get(ictx);
	rc = vfio_group_container_set(g, ictx);
	if (rc) {
		uiommu_close(fd);
		return rc;
	}
	return fd;
}
