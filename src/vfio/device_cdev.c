// SPDX-License-Identifier: MIT
/*
 * The VFIO device cdev, /dev/vfio/devices/vfioN, limited to what iommufd clients use: bind the
 * device to an iommufd, attach it to a page table of that iommufd, replace and detach, and
 * VFIO_DEVICE_GET_INFO. Semantics follow the kernel's drivers/vfio/device_cdev.c and
 * drivers/vfio/iommufd.c (vfio-pci's "physical" device ops); the code is ours.
 *
 * Which devices. Every PCI function of the emulated machine (machine/topology.h) that the
 * topology does not mark "bound" is a vfio device: the topology hands the unbound ones to vfio,
 * as an administrator binds a function to vfio-pci. They are numbered vfio0, vfio1, ... in
 * topology order, so the names do not change when devices come and go. Opening one answers
 * ENOENT when there is no such number, and also when the function is unplugged now or the
 * emulated DMA-API driver was bound to it since (through sysfs): its node is gone, as the
 * kernel's is when vfio-pci lets go of the function. The machine is booted on first use, as the
 * virtual sysfs boots it (sysfs_machine_boot()).
 *
 * The fd. open() hands out a real fd in the library's fd table (file.c), like /dev/iommu fds:
 * ioctl and close reach us through the preload layer, dup() shares the open file. Each open()
 * is a file of its own (the kernel's vfio_device_file); ioctls other than BIND_IOMMUFD answer
 * EINVAL until the file is bound. Only one file of a device may be bound at a time (the cdev
 * path cannot open a device twice: EINVAL), and a file binds once (EINVAL).
 *
 * Binding (VFIO_DEVICE_BIND_IOMMUFD) takes the iommufd fd's context (EBADF for an fd that is
 * not open, EBADFD for one that is not /dev/iommu), holds its file until unbind (the kernel's
 * iommufd_ctx_get()), and makes an iommufd DEVICE object there with iommufd_device_bind(),
 * which claims DMA ownership of the device's group through the core with the context as the
 * owner cookie. The core's rules decide (iommu-core spec, section 3): EPERM when a DMA-API
 * driver is bound to any device of the group or another context owns it, EBUSY when the group
 * sits on a domain that is neither its default nor its blocking domain. Devices of one group
 * bound to the same iommufd share the claim. That is all of the kernel's group viability rule
 * we need: a group whose other devices have a kernel driver cannot be owned. (Attaching a
 * device of a group of several devices answers EINVAL today: see device.c.)
 *
 * Across processes. The processes of a uiommu-run session each have their own copy of the
 * machine; claim.c makes the bind exclusive across them as in the kernel (EBUSY while another
 * process has the group's node open, EINVAL while it has the device bound, EPERM while a
 * context it serves owns the group), until the unbind or the holder's death. Every file of a
 * device, from its open to its release, and a group's device fd's ownership are claims too,
 * which the virtual sysfs's stores in the other processes test (vfio-pci's unbind, remove, a
 * DMA-API driver's bind, a type switch: claim.c).
 * A bind refused because of another file first lets go of what processes that are gone held
 * last, as the kernel's exit did before their waitpid(), and asks again
 * (vfio_cdev_bind_iommufd()); one a claim of the session still refuses asks every other
 * serving process of the session to do the same, since a live process holding the claim may
 * hold it for a file whose last fd a dead one had, and asks once more.
 *
 * A context another process serves. Our machine's copy of the device cannot be bound to it
 * (its objects and domains are that process's), so the device goes where the context is: the
 * bind asks that process (WIRE_VFIO_BIND, remote.c) to open the same node in its machine and
 * bind that file, with its own checks, claims and errnos (vfio_cdev_bind_for_remote(),
 * registered with file.c as struct iommufd_bind_ops, since iommufd lies below us). Our file
 * keeps the new file's fd (the library's) and makes every later call of its own there, as any
 * client (vfio_cdev_bind_remote()): ioctls, pread/pwrite, mmap (ENODEV: nothing to hand over).
 * It does not count as bound here. Its release closes our fd of the new file; the other process
 * unbinds at the new file's last close anywhere. Another process's call on our file (made
 * there by us, it would read our memory for its arguments) is answered with a redirect instead
 * (ops->delegate, remote.h): a copy of the new file's fd, at which the caller makes that call
 * and its later ones itself; those copies hold the new file open too. The same holds when the
 * bind itself is another process's call naming a context a third process, or the caller
 * itself, serves (the reverse case: a cdev we opened, handed to a VMM with an iommufd of its
 * own): we make the cross bind for it, and its next call is redirected to the new file, which
 * it serves itself: its calls are in-process from then on. An mmap is redirected too, so the
 * BARs map even before any other call. A read or write at the file's position is redirected
 * with the position: the caller makes it at the new file at the offset our file's position
 * has, then moves that position (file.c; the position is the open file's, ours). A
 * forked child closes its copy of the delegate (file.c's fork handler): its copy of our file
 * is served by us, and must not hold the device past that file's last close. A group file whose
 * container another process serves goes there the same way (group.c), with the helpers here.
 *
 * Attaching (VFIO_DEVICE_ATTACH_IOMMUFD_PT) names an IOAS (an automatic HWPT is found or made)
 * or a HWPT, and returns the HWPT's ID in pt_id; attaching an attached device replaces its page
 * table without a stop on the blocking domain. Detaching an unattached device is no error.
 * The PASID forms (flag VFIO_DEVICE_ATTACH_PASID / _DETACH_PASID, with the pasid field) do the
 * same at a PASID, as vfio-pci's pasid_attach_ioas: attaching an attached PASID replaces its
 * page table, detaching one that is not attached is no error; iommufd decides the rest (a HWPT
 * made with IOMMU_HWPT_ALLOC_PASID only, a PASID-capable device, EBUSY/EINVAL as its rules say).
 *
 * Binding also opens the device for vfio-pci (vfio_pci_core_open()): every other ioctl of a
 * bound file, pread/pwrite and mmap go to vfio_pci.c. The same file object serves the legacy
 * group's device fds (vfio_cdev_open_group_mode(), group.h and vfio.h): bound and opened at
 * once, BIND answers EINVAL and ATTACH/DETACH ENOTTY there.
 *
 * The last close of the file closes the device for vfio-pci (interrupts off, a reset), then
 * unbinds: detach, destroy the DEVICE object (the group's ownership goes with it, and the
 * group returns to its default domain), put the iommufd.
 *
 * Locking: vfio_cdev_lock (the kernel's dev_set->lock, one for all) -> ioas->mutex ->
 * igroup->lock -> idev->lock -> the core's locks. Nothing is called with it held that could take it again.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "iommu/iommu.h"
#include "iommufd/iommufd_private.h"
#include "iommufd/remote.h"
#include "lib/fail.h"
#include "lib/sys.h"
#include "machine/sysfs.h"
#include "machine/topology.h"
#include "uiommu/uiommu.h"
#include "vfio/group.h"
#include "vfio/vfio.h"

#define VFIO_CDEV_PREFIX VFIO_CDEV_DIR "vfio"

/* The uAPI layouts (include/uiommu/vfio_compat.h), private so that any host header works. */
#define VFIO_CDEV_TYPE ';'
#define VFIO_CDEV_BASE 100
#define VFIO_CDEV_BIND_IOMMUFD _IO(VFIO_CDEV_TYPE, VFIO_CDEV_BASE + 18)
#define VFIO_CDEV_ATTACH_PT _IO(VFIO_CDEV_TYPE, VFIO_CDEV_BASE + 19)
#define VFIO_CDEV_DETACH_PT _IO(VFIO_CDEV_TYPE, VFIO_CDEV_BASE + 20)
#define VFIO_CDEV_PASID_FLAG (1u << 0)

struct vfio_cdev_bind {
	uint32_t argsz, flags;
	int32_t iommufd;
	uint32_t out_devid;
};

struct vfio_cdev_attach {
	uint32_t argsz, flags, pt_id, pasid;
};

struct vfio_cdev_detach {
	uint32_t argsz, flags, pasid;
};

#define vfio_cdev_minsz(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))

/* One open() of a device node: the kernel's struct vfio_device_file. */
struct vfio_cdev_file {
	struct device *dev;           /* a reference, and a topology_vfio_get(); constant */
	enum vfio_file_mode mode;     /* a cdev's, or made by a group's GET_DEVICE_FD; constant */
	void *group;                  /* group mode: the group file, a reference; constant */
	/* The session's claims of the file itself (claim.c), constant from open to release: */
	struct session_claim claim_open;  /* open.BDF, shared */
	struct session_claim claim_owner; /* group mode: owner.N, shared */
	/* The rest under vfio_cdev_lock. */
	struct iommufd_ctx *ictx;     /* bound: the iommufd, its file held */
	struct iommufd_device *idev;  /* bound: the DEVICE object */
	bool attached;                /* idev has a page table */
	struct vfio_claim_group *claim; /* cdev bound: the group's claims in the session, or NULL */
	struct session_claim claim_dev; /* cdev bound: the device's claim in the session */
	struct vfio_cdev_file *next;  /* in vfio_cdev_bound while bound */
	/* Opened for vfio-pci (bound, or group mode); once set, constant until release. */
	struct vfio_pci_core *core;
	unsigned int minor;           /* a cdev's N of vfioN; constant */
	/*
	 * Bound to a context another process serves: the file of the same device that process
	 * opened and bound for us (vfio_cdev_bind_remote()), on which every call of ours on this
	 * file is made. Under vfio_cdev_lock; set once, then constant until release.
	 */
	struct {
		bool binding;                    /* a bind is asking for it */
		/*
		 * Ours, kept (lib/fdkeep.h); -1 none. Atomic: a forked child's handler reads it
		 * without the lock (vfio_cdev_delegate()), which another thread of the parent may
		 * have held at the fork.
		 */
		atomic_int fd;
		struct iommufd_server *server;
		uint64_t token;
		uint8_t secret[WIRE_SECRET_LEN];
	} remote;
};

/* Protects every file's binding state; the outermost lock of all (before ioas->mutex). */
UIOMMU_MUTEX_DEFINE(vfio_cdev_lock);
/* The bound files: at most one per device (the kernel's open_count). */
static struct vfio_cdev_file *vfio_cdev_bound;

void vfio_lock(void)
{
	uiommu_mutex_lock(&vfio_cdev_lock);
}

void vfio_unlock(void)
{
	uiommu_mutex_unlock(&vfio_cdev_lock);
}

void vfio_lock_assert_held(void)
{
	lockdep_assert_held(&vfio_cdev_lock);
}

static bool vfio_cdev_device_bound(struct device *dev)
{
	for (struct vfio_cdev_file *vf = vfio_cdev_bound; vf; vf = vf->next)
		if (vf->dev == dev)
			return true;
	return false;
}

bool vfio_cdev_device_bound_locked(struct device *dev)
{
	return vfio_cdev_device_bound(dev);
}

static void vfio_cdev_unlink(struct vfio_cdev_file *vf)
{
	struct vfio_cdev_file **p;

	for (p = &vfio_cdev_bound; *p; p = &(*p)->next) {
		if (*p == vf) {
			*p = vf->next;
			vf->next = NULL;
			return;
		}
	}
}

/* ---- BIND_IOMMUFD --------------------------------------------------------------------------- */

/*
 * One try of a bind whose arguments passed their checks. *@excluded tells whether the answer
 * came from another file's hold on the device or its group (the node open, another file bound,
 * the group owned: here or in another process of the session), which a process that is gone
 * may have left (vfio_cdev_bind_iommufd()); *@claimed, whether that hold was a claim of the
 * session (perhaps another process's).
 */
static int vfio_cdev_bind_try(struct vfio_cdev_file *vf, const struct vfio_cdev_bind *bind,
			      struct iommufd_ctx *to, struct uiommu_mm *mm, uint64_t arg,
			      uint32_t *devidp, bool *excluded, bool *claimed)
{
	struct vfio_pci_core *core;
	struct iommufd_device *idev;
	struct iommufd_ctx *ictx;
	struct session_claim claim_dev;
	struct vfio_claim_group *claim;
	uint32_t devid;
	int rc;

	*excluded = *claimed = false;
	uiommu_mutex_lock(&vfio_cdev_lock);
	if (vf->idev || vf->remote.fd >= 0 || vf->remote.binding) { /* bound already */
		rc = -EINVAL;
		goto out_unlock;
	}
	if (vfio_group_node_is_open(vf->dev)) { /* the group path owns the device */
		*excluded = true;
		rc = -EBUSY;
		goto out_unlock;
	}
	/* The group path of another process of the session: EBUSY as well. */
	rc = vfio_claim_bind_begin(vf->dev, &claim);
	if (rc) {
		*excluded = *claimed = rc == -EBUSY;
		goto out_unlock;
	}
	/* The caller's iommufd, or a context of ours another process named (@to). */
	ictx = to ?: iommufd_ctx_from_fd(bind->iommufd);
	if (to)
		iommufd_ctx_file_get(to);
	if (IS_ERR(ictx)) {
		rc = PTR_ERR(ictx);
		goto err_end_claim;
	}
	/* Another file of the device is bound, or a group opened it. */
	if (vfio_cdev_device_bound(vf->dev) || vfio_device_is_open(vf->dev)) {
		*excluded = true;
		rc = -EINVAL;
		goto err_put_ctx;
	}
	/* The same in another process (EINVAL), or its context owns the group (EPERM). */
	rc = vfio_claim_bind_device(claim, vf->dev, &claim_dev);
	if (rc) {
		*excluded = *claimed = rc == -EINVAL || rc == -EPERM;
		goto err_put_ctx;
	}
	idev = iommufd_device_bind(ictx, vf->dev, &devid);
	if (IS_ERR(idev)) {
		rc = PTR_ERR(idev);
		/* Another context owns the group: perhaps one whose last holder is gone. */
		*excluded = rc == -EPERM;
		goto err_drop_claim;
	}
	core = vfio_pci_core_open(vf->dev, ictx, devid);
	if (IS_ERR(core)) {
		rc = PTR_ERR(core);
		goto err_unbind;
	}
	rc = mm ? uiommu_copy_to_user(mm, arg + offsetof(struct vfio_cdev_bind, out_devid),
				      &devid, sizeof(devid)) :
		  0;
	if (rc)
		goto err_close;
	*devidp = devid;
	vf->core = core;
	vf->ictx = ictx;
	vf->idev = idev;
	vf->attached = false;
	vf->claim = claim;
	vf->claim_dev = claim_dev;
	vf->next = vfio_cdev_bound;
	vfio_cdev_bound = vf;
	uiommu_mutex_unlock(&vfio_cdev_lock);
	return 0;

err_close:
	vfio_pci_core_close(core);
err_unbind:
	iommufd_device_unbind(idev);
err_drop_claim:
	session_claim_drop(&claim_dev);
err_put_ctx:
	iommufd_ctx_file_put(ictx);
err_end_claim:
	vfio_claim_bind_end(claim);
out_unlock:
	uiommu_mutex_unlock(&vfio_cdev_lock);
	return rc;
}

/*
 * The kernel released the files of a process that is gone before anyone could see it gone (at
 * its exit, before its parent's waitpid()), so a device or group such a file held is free by
 * then. Here the file's release runs when the process serving it finds its last fd gone: when a
 * bind is refused because of another file, what the dead left here goes first
 * (iommufd_remote_settle(): no system call in a process that shares nothing) and the bind is
 * tried again, outside vfio_cdev_lock, which the releases take. A refusal that a claim of the
 * session still gives then may be another process's, for a file it serves whose last fd was
 * a dead one's: every other serving process of the session settles
 * (iommufd_remote_settle_session()), and the bind is tried once more. A release one of them
 * made may have closed the last fd of a file that another one, asked before it, serves (a
 * cdev file's release closing its delegate's fd: the session's order is not the delegation's),
 * so a refusal after that settles once more everywhere (iommufd_remote_settle_again()), which
 * a delegation of one hop needs at most.
 */
static int vfio_cdev_bind_settled(struct vfio_cdev_file *vf, const struct vfio_cdev_bind *bind,
				  struct iommufd_ctx *to, struct uiommu_mm *mm, uint64_t arg,
				  uint32_t *devid)
{
	bool excluded, claimed;
	int rc;

	rc = vfio_cdev_bind_try(vf, bind, to, mm, arg, devid, &excluded, &claimed);
	if (!excluded)
		return rc;
	iommufd_remote_settle();
	rc = vfio_cdev_bind_try(vf, bind, to, mm, arg, devid, &excluded, &claimed);
	if (!claimed)
		return rc;
	iommufd_remote_settle_session();
	rc = vfio_cdev_bind_try(vf, bind, to, mm, arg, devid, &excluded, &claimed);
	if (!claimed)
		return rc;
	iommufd_remote_settle_again();
	return vfio_cdev_bind_try(vf, bind, to, mm, arg, devid, &excluded, &claimed);
}

/*
 * The device goes where the context is. Our machine's copy of the device cannot be bound to a
 * context another process serves (its objects, its domains are that process's), so that
 * process opens the same node in its own machine and binds its new file (WIRE_VFIO_BIND:
 * its claims, its exclusions, its errnos); ours keeps that file's fd and makes every later
 * call on it, as an ordinary client of that process. Nothing of our machine's device changes:
 * this file does not count as bound here. The round trip runs without vfio_cdev_lock.
 */
static int vfio_cdev_bind_remote(struct vfio_cdev_file *vf, struct iommufd_server *server,
				 uint64_t token, const uint8_t *secret, struct uiommu_mm *mm,
				 uint64_t arg)
{
	uint8_t g_secret[WIRE_SECRET_LEN];
	uint64_t g_token;
	uint32_t devid;
	int fd, rc;

	uiommu_mutex_lock(&vfio_cdev_lock);
	if (vf->idev || vf->remote.fd >= 0 || vf->remote.binding) {
		uiommu_mutex_unlock(&vfio_cdev_lock);
		return -EINVAL; /* bound already, or a bind in flight */
	}
	vf->remote.binding = true;
	uiommu_mutex_unlock(&vfio_cdev_lock);

	fd = iommufd_remote_vfio_bind(server, token, secret, vf->minor, &devid, &g_token,
				      g_secret);
	rc = fd < 0 ? fd : 0;
	if (!rc)
		rc = uiommu_copy_to_user(mm, arg + offsetof(struct vfio_cdev_bind, out_devid),
					 &devid, sizeof(devid));
	if (rc && fd >= 0)
		sys_close(fd); /* the last close anywhere: its server unbinds */

	uiommu_mutex_lock(&vfio_cdev_lock);
	vf->remote.binding = false;
	if (!rc) {
		vf->remote.fd = fd;
		vf->remote.server = server;
		vf->remote.token = g_token;
		memcpy(vf->remote.secret, g_secret, WIRE_SECRET_LEN);
	}
	uiommu_mutex_unlock(&vfio_cdev_lock);
	return rc;
}

/*
 * Who serves the caller's iommufd @fd, when another process does (for another process's call,
 * through our copy of its fd): 0 with its name at that server; -EBADF: ours, or no such fd
 * (the local bind's checks answer); -ENOMEM: a file of another process's whose copy we could
 * not adopt (its server's INFO refused).
 */
int vfio_iommufd_remote(int fd, struct iommufd_server **server, uint64_t *token,
			uint8_t *secret)
{
	int local = iommufd_caller_fd_get(fd), rc;

	if (local < 0)
		return -EBADF;
	rc = iommufd_file_remote_ident(local, server, token, secret);
	if (rc && iommufd_caller_is_remote() && !uiommu_is_fd(local) &&
	    !iommufd_remote_fd_ident(local, server, token, secret))
		rc = -ENOMEM;
	iommufd_caller_fd_put(local);
	return rc;
}

static int vfio_cdev_bind_iommufd(struct vfio_cdev_file *vf, struct uiommu_mm *mm, uint64_t arg)
{
	const size_t minsz = vfio_cdev_minsz(struct vfio_cdev_bind, out_devid);
	uint8_t secret[WIRE_SECRET_LEN];
	struct iommufd_server *server;
	struct vfio_cdev_bind bind;
	uint64_t token;
	uint32_t devid;
	int rc;

	rc = uiommu_copy_from_user(mm, &bind, arg, minsz);
	if (rc)
		return rc;
	if (bind.argsz < minsz || bind.flags || bind.iommufd < 0 || vf->mode == VFIO_FILE_GROUP)
		return -EINVAL;
	/*
	 * A context another process serves, named by our own call or by another process's (its
	 * own iommufd, or a third process's): that process binds the device. Our file keeps
	 * the new one as its delegate; another process's later calls on our file are redirected
	 * there (vfio_cdev_delegate()), so none is made here with our memory.
	 */
	rc = vfio_iommufd_remote(bind.iommufd, &server, &token, secret);
	if (!rc)
		return vfio_cdev_bind_remote(vf, server, token, secret, mm, arg);
	if (rc != -EBADF)
		return rc;
	return vfio_cdev_bind_settled(vf, &bind, NULL, mm, arg, &devid);
}

/* Undoes a bind; vfio_cdev_lock held. The context's file is the caller's to put. */
static struct iommufd_ctx *vfio_cdev_unbind(struct vfio_cdev_file *vf)
{
	struct iommufd_ctx *ictx = vf->ictx;

	if (!vf->idev)
		return NULL;
	/* vfio-pci's close first: interrupts off, DMA fenced, a reset; then the IOMMU side. */
	vfio_pci_core_close(vf->core);
	vf->core = NULL;
	if (vf->attached)
		iommufd_device_detach(vf->idev);
	iommufd_device_unbind(vf->idev);
	/* The core let go of the group: so may the session (claim.c). */
	session_claim_drop(&vf->claim_dev);
	vfio_claim_bind_end(vf->claim);
	vf->claim = NULL;
	vfio_cdev_unlink(vf);
	vf->idev = NULL;
	vf->ictx = NULL;
	vf->attached = false;
	return ictx;
}

/* ---- ATTACH / DETACH ------------------------------------------------------------------------ */

/* vfio_cdev_lock held, @vf bound. */
static int vfio_cdev_attach_pt(struct vfio_cdev_file *vf, struct uiommu_mm *mm, uint64_t arg)
{
	size_t minsz = vfio_cdev_minsz(struct vfio_cdev_attach, pt_id);
	struct vfio_cdev_attach attach;
	bool pasid;
	int rc;

	rc = uiommu_copy_from_user(mm, &attach, arg, minsz);
	if (rc)
		return rc;
	if (attach.flags & ~VFIO_CDEV_PASID_FLAG)
		return -EINVAL;
	pasid = attach.flags & VFIO_CDEV_PASID_FLAG;
	if (pasid) {
		/* The PASID form is longer: read it whole. */
		minsz = vfio_cdev_minsz(struct vfio_cdev_attach, pasid);
		rc = uiommu_copy_from_user(mm, &attach, arg, minsz);
		if (rc)
			return rc;
	}
	if (attach.argsz < minsz || (pasid && attach.pasid == IOMMU_NO_PASID))
		return -EINVAL;

	if (pasid) {
		/* vfio-pci's pasid_attach_ioas: an attached PASID is replaced. */
		rc = iommufd_device_pasid_attached(vf->idev, attach.pasid) ?
			     iommufd_device_pasid_replace(vf->idev, attach.pasid, &attach.pt_id) :
			     iommufd_device_pasid_attach(vf->idev, attach.pasid, &attach.pt_id);
	} else {
		/* A second attach is a replace (the kernel's vfio_iommufd_physical_attach_ioas()). */
		rc = vf->attached ? iommufd_device_replace(vf->idev, &attach.pt_id) :
				    iommufd_device_attach(vf->idev, &attach.pt_id);
	}
	if (rc)
		return rc;
	if (!pasid)
		vf->attached = true;
	rc = uiommu_copy_to_user(mm, arg + offsetof(struct vfio_cdev_attach, pt_id),
				 &attach.pt_id, sizeof(attach.pt_id));
	if (rc) {
		/* As the kernel: the device (or PASID) ends up detached, even after a replace. */
		if (pasid) {
			iommufd_device_pasid_detach(vf->idev, attach.pasid);
		} else {
			iommufd_device_detach(vf->idev);
			vf->attached = false;
		}
	}
	return rc;
}

static int vfio_cdev_detach_pt(struct vfio_cdev_file *vf, struct uiommu_mm *mm, uint64_t arg)
{
	size_t minsz = vfio_cdev_minsz(struct vfio_cdev_detach, flags);
	struct vfio_cdev_detach detach;
	int rc;

	rc = uiommu_copy_from_user(mm, &detach, arg, minsz);
	if (rc)
		return rc;
	if (detach.flags & ~VFIO_CDEV_PASID_FLAG)
		return -EINVAL;
	if (detach.flags & VFIO_CDEV_PASID_FLAG) {
		minsz = vfio_cdev_minsz(struct vfio_cdev_detach, pasid);
		rc = uiommu_copy_from_user(mm, &detach, arg, minsz);
		if (rc)
			return rc;
	}
	if (detach.argsz < minsz)
		return -EINVAL;
	if (detach.flags & VFIO_CDEV_PASID_FLAG) {
		if (detach.pasid == IOMMU_NO_PASID)
			return -EINVAL; /* the RID is no PASID */
		/* Detaching a PASID that is not attached is no error. */
		iommufd_device_pasid_detach(vf->idev, detach.pasid);
		return 0;
	}
	if (vf->attached)
		iommufd_device_detach(vf->idev);
	vf->attached = false;
	return 0;
}

/* ---- the file ------------------------------------------------------------------------------- */

/*
 * The file our calls are made at (ops->delegate): another process's call on ours is
 * redirected there (remote.h), to be made by that process itself with its own memory. Also
 * asked in a forked child, for its copy to go (file.c): no lock, the fd is set once.
 */
static int vfio_cdev_delegate(void *priv)
{
	struct vfio_cdev_file *vf = priv;

	return atomic_load_explicit(&vf->remote.fd, memory_order_acquire);
}

/*
 * Bound through another process (vfio_cdev_bind_remote()): calls go to its file. Once true it
 * stays so (the acquire of the lock sees the fields set with it) until release.
 */
static bool vfio_cdev_remote(struct vfio_cdev_file *vf)
{
	bool remote;

	uiommu_mutex_lock(&vfio_cdev_lock);
	remote = vf->remote.fd >= 0;
	uiommu_mutex_unlock(&vfio_cdev_lock);
	return remote;
}

static int vfio_cdev_ioctl(void *priv, struct uiommu_mm *mm, unsigned int cmd, uint64_t arg)
{
	struct vfio_cdev_file *vf = priv;
	struct vfio_pci_caller caller = { .mode = vf->mode };
	struct vfio_pci_core *core;
	int rc;

	if (!mm)
		return -ENOMEM;
	if (cmd == VFIO_CDEV_BIND_IOMMUFD)
		return vfio_cdev_bind_iommufd(vf, mm, arg);
	/* Another process's call that takes no redirect: ours would use our memory. */
	if (vfio_cdev_remote(vf))
		return iommufd_caller_is_remote() ?
			       -EOPNOTSUPP :
			       iommufd_remote_ioctl(vf->remote.server, vf->remote.token,
						    vf->remote.secret, cmd, arg, NULL);

	uiommu_mutex_lock(&vfio_cdev_lock);
	core = vf->core;
	if (!core) {
		/* No access before bind: the kernel's access_granted check. */
		rc = -EINVAL;
		goto out_unlock;
	}
	switch (cmd) {
	/* The cdev's own; a group's device fd hands them to vfio-pci, which knows neither. */
	case VFIO_CDEV_ATTACH_PT:
		rc = vf->mode == VFIO_FILE_GROUP ? -ENOTTY : vfio_cdev_attach_pt(vf, mm, arg);
		goto out_unlock;
	case VFIO_CDEV_DETACH_PT:
		rc = vf->mode == VFIO_FILE_GROUP ? -ENOTTY : vfio_cdev_detach_pt(vf, mm, arg);
		goto out_unlock;
	default:
		break;
	}
	caller.ictx = vf->ictx;
	uiommu_mutex_unlock(&vfio_cdev_lock);

	/* The core stays while this ioctl holds the file: only the last close drops it. */
	if (vf->mode == VFIO_FILE_GROUP)
		caller.group_of_fd = vfio_group_fd_iommu_group;
	return vfio_pci_ioctl(core, &caller, mm, cmd, arg);

out_unlock:
	uiommu_mutex_unlock(&vfio_cdev_lock);
	return rc;
}

/* The opened core, or NULL (the file is not bound). */
static struct vfio_pci_core *vfio_cdev_core(struct vfio_cdev_file *vf)
{
	struct vfio_pci_core *core;

	uiommu_mutex_lock(&vfio_cdev_lock);
	core = vf->core;
	uiommu_mutex_unlock(&vfio_cdev_lock);
	return core;
}

/*
 * pread/pwrite of the regions through a bounce buffer, so that a bad user buffer is EFAULT.
 * Long accesses are cut to VFIO_CDEV_RW_MAX bytes: a short count, as a device file may return.
 */
#define VFIO_CDEV_RW_MAX (1u << 20)

static ssize_t vfio_cdev_rw(struct vfio_cdev_file *vf, struct uiommu_mm *mm, void *ubuf,
			    size_t count, off_t off, bool write)
{
	struct vfio_pci_core *core = vfio_cdev_core(vf);
	unsigned int owed;
	void *buf;
	ssize_t rc;

	if (!core && vfio_cdev_remote(vf) && off >= 0)
		return iommufd_caller_is_remote() ?
			       -EOPNOTSUPP :
			       iommufd_remote_rw(vf->remote.server, vf->remote.token,
						 vf->remote.secret, (uintptr_t)ubuf, count, off,
						 write, &owed, NULL);
	if (!core || off < 0)
		return -EINVAL;
	if (!mm)
		return -ENOMEM;
	if (count > VFIO_CDEV_RW_MAX)
		count = VFIO_CDEV_RW_MAX;
	buf = uiommu_zalloc(count ? count : 1);
	if (!buf)
		return -ENOMEM;
	if (write && count) {
		rc = uiommu_copy_from_user(mm, buf, (uintptr_t)ubuf, count);
		if (rc)
			goto out_free;
	}
	rc = vfio_pci_rw(core, buf, count, (uint64_t)off, write);
	if (rc > 0 && !write) {
		int err = uiommu_copy_to_user(mm, (uintptr_t)ubuf, buf, (size_t)rc);

		if (err)
			rc = err;
	}
out_free:
	uiommu_free(buf);
	return rc;
}

static ssize_t vfio_cdev_read(void *priv, struct uiommu_mm *mm, void *buf, size_t count,
			      off_t off)
{
	return vfio_cdev_rw(priv, mm, buf, count, off, false);
}

static ssize_t vfio_cdev_write(void *priv, struct uiommu_mm *mm, const void *buf, size_t count,
			       off_t off)
{
	return vfio_cdev_rw(priv, mm, (void *)(uintptr_t)buf, count, off, true);
}

static void *vfio_cdev_mmap(void *priv, void *addr, size_t len, int prot, int flags,
			    uint64_t off)
{
	struct vfio_cdev_file *vf = priv;
	struct vfio_pci_core *core = vfio_cdev_core(vf);

	if (!core && vfio_cdev_remote(vf))
		return iommufd_remote_mmap(vf->remote.server, vf->remote.token, vf->remote.secret,
					   addr, len, prot, flags, off, NULL);
	if (!core) {
		errno = EINVAL;
		return MAP_FAILED;
	}
	return vfio_pci_mmap(core, addr, len, prot, flags, off);
}

static void vfio_cdev_release(void *priv)
{
	struct vfio_cdev_file *vf = priv;
	struct iommufd_ctx *ictx;

	uiommu_mutex_lock(&vfio_cdev_lock);
	ictx = vfio_cdev_unbind(vf);
	if (vf->core) { /* group mode */
		vfio_pci_core_close(vf->core);
		vf->core = NULL;
	}
	uiommu_mutex_unlock(&vfio_cdev_lock);
	/* Perhaps the context's last reference: it must not run under our lock. */
	if (ictx)
		iommufd_ctx_file_put(ictx);
	/* Bound through another process: our close of its file is its last, it unbinds there. */
	if (vf->remote.fd >= 0)
		sys_close(vf->remote.fd);
	/*
	 * The device is closed and unbound here, our machine's count of its VFIO users too: so it
	 * is for the session's stores. Only then: a store the claim lets in is journalled, and our
	 * replay of it must find the device unused here (it did not, while a release of our
	 * server thread raced another process's unbind: our machine stayed bound).
	 */
	topology_vfio_put(vf->dev);
	session_claim_drop(&vf->claim_owner);
	session_claim_drop(&vf->claim_open);
	device_put(vf->dev);
	if (vf->group)
		vfio_group_file_put(vf->group); /* pairs with the group's GET_DEVICE_FD */
	uiommu_free(vf);
}

static const struct iommufd_subfd_ops vfio_cdev_fops = {
	.release = vfio_cdev_release,
	.ioctl = vfio_cdev_ioctl,
	.read = vfio_cdev_read,
	.write = vfio_cdev_write,
	.mmap = vfio_cdev_mmap,
	.delegate = vfio_cdev_delegate,
};

static int vfio_cdev_open_file(unsigned int index, int flags, struct vfio_cdev_file **vfp);

/* ---- finding vfioN -------------------------------------------------------------------------- */

struct vfio_cdev_lookup {
	unsigned int want;
	struct device *dev; /* a reference when found and usable */
};

static int vfio_cdev_lookup_fn(const struct topology_device_info *info, void *arg)
{
	struct vfio_cdev_lookup *l = arg;

	if (!info->present || !info->vfio || info->vfio_index != (int)l->want)
		return 0;
	device_get(info->dev);
	l->dev = info->dev;
	return 1;
}

/* "vfioN" -> N; -ENOENT for any other name (no leading zeros, as the kernel names them). */
static int vfio_cdev_parse(const char *path, unsigned int *index)
{
	const char *s = path + strlen(VFIO_CDEV_PREFIX);
	unsigned long n;
	char *end;

	if (strncmp(path, VFIO_CDEV_PREFIX, strlen(VFIO_CDEV_PREFIX)) || *s < '0' || *s > '9' ||
	    (s[0] == '0' && s[1]))
		return -ENOENT;
	n = strtoul(s, &end, 10);
	if (*end || n > 0xffff)
		return -ENOENT;
	*index = (unsigned int)n;
	return 0;
}

/**
 * vfio_cdev_open() - open /dev/vfio/devices/vfio@index
 * Return: the fd, or -ENOENT (no such node now: the function is not bound to vfio-pci),
 * -ENOMEM, -EMFILE.
 */
int vfio_cdev_open(unsigned int index, int flags)
{
	struct vfio_cdev_file *vf;

	return vfio_cdev_open_file(index, flags, &vf);
}

/* vfio_cdev_open(), with the file's object in *@vfp: the fd's, alive while the fd is open. */
static int vfio_cdev_open_file(unsigned int index, int flags, struct vfio_cdev_file **vfp)
{
	static const struct iommufd_node node_tmpl = { .major = SYSFS_VFIO_CDEV_MAJOR,
						       .mode = S_IFCHR | 0600 };
	struct vfio_cdev_lookup lookup = { .want = index };
	struct iommufd_node node = node_tmpl;
	struct vfio_cdev_file *vf;
	int fd, rc;

	rc = sysfs_machine_boot();
	if (rc)
		return -ENOENT; /* no machine, no devices */
	topology_for_each_device(vfio_cdev_lookup_fn, &lookup);
	if (!lookup.dev)
		return -ENOENT;
	/* Unbound since the lookup: the node is gone. */
	rc = topology_vfio_get(lookup.dev);
	if (rc) {
		rc = -ENOENT;
		goto err_put_dev;
	}
	vf = uiommu_zalloc(sizeof(*vf));
	if (!vf) {
		rc = -ENOMEM;
		goto err_vfio_put;
	}
	vf->dev = lookup.dev;
	vf->minor = index;
	vf->remote.fd = -1;
	vf->claim_dev = SESSION_CLAIM_NONE;
	vf->claim_owner = SESSION_CLAIM_NONE;
	/* Open in the session too; a store unbinding or removing it now: the node is going. */
	rc = vfio_claim_open(vf->dev, &vf->claim_open);
	if (rc) {
		rc = rc == -ENODEV ? -ENOENT : rc;
		goto err_free;
	}
	snprintf(node.path, sizeof(node.path), VFIO_CDEV_PREFIX "%u", index);
	node.minor = index;
	fd = iommufd_file_open_ops(&vfio_cdev_fops, vf, flags, &node);
	if (fd < 0) {
		rc = fd;
		goto err_drop_open;
	}
	*vfp = vf;
	return fd;

err_drop_open:
	session_claim_drop(&vf->claim_open);
err_free:
	uiommu_free(vf);
err_vfio_put:
	topology_vfio_put(lookup.dev);
err_put_dev:
	device_put(lookup.dev);
	return rc;
}

/* Parses "vfioN" after /dev/vfio/devices/ and opens it. */
int vfio_cdev_open_path(const char *path, int flags)
{
	unsigned int index;
	int rc = vfio_cdev_parse(path, &index);

	return rc ?: vfio_cdev_open(index, flags);
}

/*
 * Another process binds vfio@minor to @ictx, a context of ours (WIRE_VFIO_BIND, file.c): the
 * open and the bind its own process would make, here, with the same answers. The fd travels
 * back with the reply; on failure it is closed here (the last close: nothing stays).
 */
static int vfio_cdev_bind_for_remote(struct iommufd_ctx *ictx, unsigned int minor,
				     uint32_t *devid)
{
	const struct vfio_cdev_bind bind = { .iommufd = -1 };
	struct vfio_cdev_file *vf;
	int fd, rc;

	/* Not the caller's fd number: ours, which no lookup of the caller's fds would find. */
	fd = vfio_cdev_open_file(minor, O_RDWR | O_CLOEXEC, &vf);
	if (fd < 0)
		return fd;
	rc = vfio_cdev_bind_settled(vf, &bind, ictx, NULL, 0, devid);
	if (rc) {
		uiommu_close(fd);
		return rc;
	}
	return fd;
}

static const struct iommufd_bind_ops vfio_cdev_bind_ops = {
	.cdev_bind = vfio_cdev_bind_for_remote,
	.group_set = vfio_group_open_for_remote,
};

/* Before any call of another process can come: with the library. */
__attribute__((constructor)) static void vfio_cdev_bind_ops_init(void)
{
	iommufd_bind_ops_register(&vfio_cdev_bind_ops);
}

bool vfio_cdev_is_fd(int fd)
{
	struct iommufd_file *file;
	void *vf = iommufd_subfd_get(fd, &vfio_cdev_fops, &file);

	if (IS_ERR(vf))
		return false;
	iommufd_subfd_put(file);
	return true;
}

/**
 * vfio_cdev_open_group_mode() - the device fd a group's GET_DEVICE_FD hands out: a file of
 * @dev bound to @ictx (the group's container) and attached to its compat IOAS, as the kernel's
 * vfio_df_group_open() with an iommufd does. It answers no BIND_IOMMUFD (EINVAL), ATTACH or
 * DETACH (ENOTTY); it is an anonymous file ("anon_inode:[vfio-device]"), close-on-exec. It
 * keeps the reference on @group its caller took, on success only.
 * Return: the fd; -EBUSY when the device is open already (through its cdev, or an earlier
 * GET_DEVICE_FD: the kernel shares that open, we refuse); -ENODEV no compat IOAS or the
 * device left vfio-pci (or is leaving it: a store of another process); the bind's -EPERM (the
 * group is not viable, here or by a store in flight elsewhere) and the attach's errnos.
 */
int vfio_cdev_open_group_mode(struct device *dev, struct iommufd_ctx *ictx, void *group)
{
	static const struct iommufd_node node = { .path = "anon_inode:[vfio-device]",
						  .mode = 0600 };
	struct vfio_cdev_file *vf;
	uint32_t devid, pt_id;
	int fd, rc;

	rc = topology_vfio_get(dev);
	if (rc)
		return rc;
	device_get(dev);
	vf = uiommu_zalloc(sizeof(*vf));
	if (!vf) {
		rc = -ENOMEM;
		goto err_vfio_put;
	}
	vf->dev = dev;
	vf->remote.fd = -1;
	vf->mode = VFIO_FILE_GROUP;
	vf->group = group;
	vf->claim_dev = SESSION_CLAIM_NONE; /* the group file's claim covers its devices */
	vf->claim_open = SESSION_CLAIM_NONE;
	vf->claim_owner = SESSION_CLAIM_NONE;
	uiommu_mutex_lock(&vfio_cdev_lock);
	if (vfio_cdev_device_bound(dev)) {
		rc = -EBUSY;
		goto err_unlock;
	}
	/* For the session's stores: the device is open, its group owned (claim.c). */
	rc = vfio_claim_open(dev, &vf->claim_open);
	if (rc)
		goto err_unlock;
	rc = vfio_claim_group_mode_owner(dev, &vf->claim_owner);
	if (rc)
		goto err_drop_open;
	vf->idev = iommufd_device_bind(ictx, dev, &devid);
	if (IS_ERR(vf->idev)) {
		rc = PTR_ERR(vf->idev);
		goto err_drop_owner;
	}
	rc = iommufd_vfio_compat_ioas_get_id(ictx, &pt_id);
	rc = rc ?: iommufd_device_attach(vf->idev, &pt_id);
	if (rc)
		goto err_unbind;
	vf->attached = true;
	/* vfio-pci's open (vfio.h): the device fd serves regions, interrupts and reset. */
	vf->core = vfio_pci_core_open(dev, ictx, devid);
	if (IS_ERR(vf->core)) {
		rc = PTR_ERR(vf->core);
		vf->core = NULL;
		goto err_detach;
	}
	fd = iommufd_file_open_ops(&vfio_cdev_fops, vf, O_RDWR | O_CLOEXEC, &node);
	if (fd < 0) {
		rc = fd;
		goto err_close;
	}
	/* The file now holds the context, as a bound cdev file does. */
	iommufd_ctx_file_get(ictx);
	vf->ictx = ictx;
	vf->next = vfio_cdev_bound;
	vfio_cdev_bound = vf;
	uiommu_mutex_unlock(&vfio_cdev_lock);
	return fd;

err_close:
	vfio_pci_core_close(vf->core);
err_detach:
	iommufd_device_detach(vf->idev);
err_unbind:
	iommufd_device_unbind(vf->idev);
err_drop_owner:
	session_claim_drop(&vf->claim_owner);
err_drop_open:
	session_claim_drop(&vf->claim_open);
err_unlock:
	uiommu_mutex_unlock(&vfio_cdev_lock);
	uiommu_free(vf);
err_vfio_put:
	topology_vfio_put(dev);
	device_put(dev);
	return rc;
}
