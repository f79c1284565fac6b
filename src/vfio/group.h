/* SPDX-License-Identifier: MIT */
/*
 * The VFIO layer's files among themselves: the device cdev (device_cdev.c), the group node
 * (group.c) and the nodes' names and numbers (nodes.c).
 *
 * One lock, vfio_cdev_lock (the kernel's dev_set->lock and group_lock in one), protects which
 * device files are bound and which group nodes are open and their containers, so that "a group
 * node is open" and "a device of it is bound through its cdev" exclude each other atomically.
 * Order: vfio_cdev_lock -> iommufd's locks (ioas->mutex, igroup->lock, objects_lock) -> the
 * core's. topology_lock is never held with it (topology_vfio_get() is called without it).
 */
#ifndef UIOMMU_VFIO_GROUP_H
#define UIOMMU_VFIO_GROUP_H

#include <stdbool.h>

#include "iommu/iommu.h"
#include "iommufd/iommufd_private.h"
#include "machine/session.h"

#define VFIO_DEV_DIR "/dev/vfio"
#define VFIO_CONTAINER_PATH VFIO_DEV_DIR "/vfio"
#define VFIO_CDEV_DIR VFIO_DEV_DIR "/devices/"

/* What an absolute, canonical path names (nodes.c); devnode.c asks it too. */
enum vfio_node_kind {
	VFIO_NODE_NONE,      /* under /dev/vfio, but no such entry */
	VFIO_NODE_DIR,       /* /dev/vfio, /dev/vfio/devices */
	VFIO_NODE_CONTAINER, /* /dev/vfio/vfio */
	VFIO_NODE_GROUP,     /* /dev/vfio/<G> */
	VFIO_NODE_CDEV,      /* /dev/vfio/devices/vfioN */
	VFIO_NODE_IOMMU,     /* /dev/iommu */
	VFIO_NODE_PROC_FD,   /* /proc/self/fd/N of an fd of ours */
};
enum vfio_node_kind vfio_node_parse(const char *path, unsigned int *num);

/* Take and drop vfio_cdev_lock; assert that this thread holds it. */
void vfio_lock(void);
void vfio_unlock(void);
void vfio_lock_assert_held(void);

/* device_cdev.c */
int vfio_cdev_open(unsigned int index, int flags);
int vfio_cdev_open_path(const char *path, int flags);
/* Is a file of @dev bound (a cdev BIND_IOMMUFD, or a group's device fd)? vfio_cdev_lock held. */
bool vfio_cdev_device_bound_locked(struct device *dev);
/* @group: a reference on the group file, which the device fd keeps (put at its release). */
int vfio_cdev_open_group_mode(struct device *dev, struct iommufd_ctx *ictx, void *group);

/*
 * Who serves the caller's iommufd @fd when another process does (device_cdev.c): 0 with its
 * name there; -EBADF ours or no such fd; -ENOMEM an fd of another process's we could not adopt.
 */
struct iommufd_server;
int vfio_iommufd_remote(int fd, struct iommufd_server **server, uint64_t *token,
			uint8_t *secret);

/* group.c */
int vfio_group_open(int group_id, int flags);
/*
 * Another process's group file whose container is @ictx, a context of ours (WIRE_VFIO_GROUP):
 * /dev/vfio/@group_id opened here, its claim shared with the asker's (@claim_fd, a copy of its
 * handle, consumed; -1: take one), the container set. The fd, or -errno with nothing left.
 */
int vfio_group_open_for_remote(struct iommufd_ctx *ictx, unsigned int group_id, int claim_fd);
/* Drops a reference on a group file (vfio_group_open()'s, or a device fd's). */
void vfio_group_file_put(void *group);
/* Is the group node of @dev's group open? vfio_cdev_lock held. */
bool vfio_group_node_is_open(struct device *dev);
/* Is @fd a VFIO group node's fd (for KVM's FILE_ADD)? */
bool vfio_group_is_fd(int fd);
/* The IOMMU group of a group fd, referenced; ERR_PTR(-EBADF / -EINVAL). */
struct iommu_group *vfio_group_fd_iommu_group(int fd);
/* Is @fd a VFIO device fd (cdev or a group's)? */
bool vfio_cdev_is_fd(int fd);

/*
 * nodes.c: the group node of group @group_id exists (a present function of it is bound to
 * vfio-pci); its minor in *@minor. Boots the machine if needed.
 */
bool vfio_group_node_exists(int group_id, int *minor);

/*
 * claim.c: the claims that make a group node open and a cdev bind exclusive across the
 * processes of a session. All under vfio_cdev_lock; a handle of SESSION_CLAIM_NONE (no session)
 * holds nothing, and session_claim_drop() undoes each (machine/session.h).
 *
 * vfio_claim_node() - for an open of @group's node: 0 (*@claim the handle), -EBUSY (open or a
 * device of it bound in another process), -ENOMEM, -EMFILE ...
 */
int vfio_claim_node(struct iommu_group *group, struct session_claim *claim);
/*
 * vfio_claim_node_adopt() - the same claim, held already by another process's group file
 * whose handle @fd is a copy of ours (consumed): both hold it until both let go (group.c).
 * -EBADF not that claim, -EBUSY not held by that handle and held elsewhere, -ENOMEM.
 */
int vfio_claim_node_adopt(struct iommu_group *group, int fd, struct session_claim *claim);
/*
 * A cdev bind of @dev, in the kernel's order: vfio_claim_bind_begin() (-EBUSY: the group's node
 * is open in another process) before the iommufd is looked up, vfio_claim_bind_device() (-EINVAL:
 * @dev is bound in another process; -EPERM: another process's context owns the group) before
 * the core's claim. Undone by session_claim_drop() of the device's claim and
 * vfio_claim_bind_end(), which a bound file calls at its unbind. *@cg is NULL without a session.
 */
struct vfio_claim_group;
int vfio_claim_bind_begin(struct device *dev, struct vfio_claim_group **cg);
int vfio_claim_bind_device(struct vfio_claim_group *cg, struct device *dev,
			   struct session_claim *claim);
void vfio_claim_bind_end(struct vfio_claim_group *cg);
/*
 * Per VFIO file of @dev, no lock needed: vfio_claim_open() for every one, from its open
 * (-ENODEV: a store of another process is unbinding or removing the device right now);
 * vfio_claim_group_mode_owner() for a group's device fd (-EPERM: a DMA-API driver's bind is
 * in flight). Both dropped by session_claim_drop() at the file's release.
 */
int vfio_claim_open(struct device *dev, struct session_claim *claim);
int vfio_claim_group_mode_owner(struct device *dev, struct session_claim *claim);

/* kvm.c: FILE_ADD / FILE_DEL (@attr 1 / 2) of our @vfio_fd on kvm-vfio device @kvm_fd. */
int kvm_vfio_file_attr(int kvm_fd, uint64_t attr, int vfio_fd);

#endif
