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
 * GET_STATUS: VIABLE | CONTAINER_SET with a container; otherwise VIABLE while nobody claims DMA
 * ownership of the group (no DMA-API driver is bound to a device of it, no iommufd owns it);
 * vfio-pci and unbound functions do not count. ENODEV once the group has no device.
 *
 * read() and write() of the fd answer EINVAL (the group's file_operations have neither).
 *
 * Locking: everything here is under vfio_cdev_lock (group.h), never held across a call that
 * takes it (vfio_cdev_open_group_mode()) or across the last put of a context.
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

static int vfio_group_set_container(struct vfio_group_file *g, struct uiommu_mm *mm,
				    uint64_t arg)
{
	struct iommufd_ctx *ictx;
	int32_t fd;
	int rc;

	rc = uiommu_copy_from_user(mm, &fd, arg, sizeof(fd));
	if (rc)
		return rc;
	/* EBADF for no open file comes first; EBADFD (not an iommufd) after the state checks. */
	ictx = iommufd_ctx_from_fd(fd);
	if (IS_ERR(ictx) && PTR_ERR(ictx) == -EBADF)
		return -EBADF;
	vfio_lock();
	if (g->ictx) {
		rc = -EINVAL;
		goto out_unlock;
	}
	if (IS_ERR(ictx)) {
		rc = PTR_ERR(ictx);
		goto out_unlock;
	}
	rc = iommufd_vfio_compat_ioas_create(ictx);
	if (rc)
		goto out_unlock;
	g->ictx = ictx; /* the reference moves into the group */
	ictx = NULL;
out_unlock:
	vfio_unlock();
	if (!IS_ERR_OR_NULL(ictx))
		iommufd_ctx_file_put(ictx);
	return rc;
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

static int vfio_group_ioctl(void *priv, struct uiommu_mm *mm, unsigned int cmd, uint64_t arg)
{
	struct vfio_group_file *g = priv;

	if (!mm)
		return -ENOMEM;
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
	/* Before the lock goes: an open here must not meet our own claim after "not open". */
	session_claim_drop(&g->claim);
	vfio_unlock();
	if (ictx)
		iommufd_ctx_file_put(ictx);
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

/* One try of vfio_group_open(); *@claimed: an EBUSY came from the session's claim. */
static int vfio_group_open_try(int group_id, int flags, bool *claimed)
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
	rc = vfio_claim_node(g->group, &g->claim);
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
	g->next = vfio_groups_open;
	vfio_groups_open = g;
	vfio_unlock();
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
	int rc = vfio_group_open_try(group_id, flags, &claimed);

	if (rc != -EBUSY)
		return rc;
	iommufd_remote_settle();
	rc = vfio_group_open_try(group_id, flags, &claimed);
	if (!claimed)
		return rc;
	iommufd_remote_settle_session();
	rc = vfio_group_open_try(group_id, flags, &claimed);
	if (!claimed)
		return rc;
	/* A release there may have let go of a delegate another server, asked first, serves. */
	iommufd_remote_settle_again();
	return vfio_group_open_try(group_id, flags, &claimed);
}
