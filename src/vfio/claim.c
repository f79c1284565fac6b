// SPDX-License-Identifier: MIT
/*
 * The VFIO layer's claims across the processes of a session: what makes a device one device
 * for every process of a uiommu-run session, although each boots its own copy of the machine.
 *
 * In the kernel a group node's file is open once in the whole system (a second open is EBUSY,
 * in any process), and so is a device through its cdev (a second BIND_IOMMUFD is EINVAL);
 * the two paths exclude each other (EBUSY either way: drivers/vfio/group.c's opened_file and
 * cdev_device_open_cnt), and DMA ownership of a group has one owner (another iommufd's bind
 * of a device of an owned group is EPERM: iommu_device_claim_dma_owner()). Within one process
 * group.c, device_cdev.c and the core enforce that on the process's machine; here the same
 * rules reach the other processes of the session, through claims (machine/session.c: an flock
 * each, dropped by the kernel when the holder dies). For a group numbered N:
 *
 *   group.N      exclusive while this process has /dev/vfio/N open (the group file holds it
 *                until its last device fd closes, as the kernel's group file is held; a group
 *                file whose container another process serves shares its hold with the file
 *                that process opened for it, group.c, until both are gone); shared
 *                while a device of the group is bound through its cdev here. A group open
 *                elsewhere then fails (EBUSY) as a cdev bind does against an open group node.
 *   owner.N      exclusive while a device of the group is bound through its cdev here: the
 *                group's DMA is owned by a context this process serves, and every context of
 *                another process is another owner (EPERM).
 *   device.BDF   exclusive while that device is bound through its cdev here (EINVAL elsewhere).
 *   open.BDF     shared by every VFIO file of the device here (a cdev file from its open, bound
 *                or not, and a group's device fd), until its release: the kernel's unbind and
 *                remove wait for such files (vfio_unregister_group_dev()).
 * and, in group mode, owner.N is shared by each device fd a group node made here: each is
 * bound to the container's context, which owns the group's DMA (the node's exclusive group.N
 * keeps every other process out already; the share is for the virtual sysfs).
 *
 * The virtual sysfs's stores test owner.N and open.BDF by taking them exclusively while they
 * run (machine/sysfs.c): a type switch answers EPERM and a DMA-API driver's bind EBUSY while a
 * user owns the group anywhere in the session, vfio-pci's unbind and a remove EBUSY while VFIO
 * has the device open anywhere. A cdev open or a group's GET_DEVICE_FD that meets such a store
 * in flight answers as after it: ENOENT (the node is going) and ENODEV, or EPERM for the
 * owner (a DMA-API driver is being bound: the group is not viable).
 *
 * A bind checks them in the kernel's order: the group (EBUSY, before the iommufd is even
 * looked up), the device (EINVAL), then the owner (EPERM). A group node's device fds need no
 * claim of their own: nobody else can reach the group while its node is open.
 *
 * The claims are the serving process's: a device bound in a context another process uses
 * through the wire is bound here (the bind runs where the cdev file is served), and a file's
 * release, which drops its claims, runs only here (session.c has the argument for fork and the
 * exec hand-over). A process outside any session claims nothing, and everything is as before.
 * So a claim may be held by a live process for a file whose last fd a dead one had, until that
 * process finds the file's last fd gone: a bind or a group open that a claim still refuses
 * after the local settle asks every serving process of the session to settle
 * (iommufd_remote_settle_session(), device_cdev.c, group.c), and asks again; the flock alone
 * does not say whose it is.
 *
 * Locking: every claim is taken and dropped under vfio_cdev_lock (group.h), which also protects
 * the per-group counts below, but open.BDF and a device fd's share of owner.N, which belong to
 * one file each and are counted nowhere; taking one never waits (a conflict is an errno at once).
 */
#include <errno.h>
#include <stdio.h>

#include "iommu/iommu.h"
#include "lib/fail.h"
#include "machine/session.h"
#include "vfio/group.h"

/* This process's cdev binds in one group: what holds group.N (shared) and owner.N. */
struct vfio_claim_group {
	int id;                        /* the IOMMU group's number; constant */
	unsigned int binds;            /* bound (or binding) cdev files of the group here */
	struct session_claim group;    /* group.N, shared */
	struct session_claim owner;    /* owner.N; none until a bind passed its device check */
	struct vfio_claim_group *next; /* in vfio_claim_groups */
};

/* The groups with cdev binds in this process; vfio_cdev_lock. */
static struct vfio_claim_group *vfio_claim_groups;

static int vfio_claim_group_id(struct device *dev)
{
	struct iommu_group *group = iommu_group_get(dev);
	int id;

	if (!group)
		return -ENODEV;
	id = iommu_group_id(group);
	iommu_group_put(group);
	return id;
}

int vfio_claim_node(struct iommu_group *group, struct session_claim *claim)
{
	char name[32];

	vfio_lock_assert_held();
	snprintf(name, sizeof(name), SESSION_CLAIM_GROUP, iommu_group_id(group));
	return session_claim_take(name, true, claim);
}

int vfio_claim_node_adopt(struct iommu_group *group, int fd, struct session_claim *claim)
{
	char name[32];

	vfio_lock_assert_held();
	snprintf(name, sizeof(name), SESSION_CLAIM_GROUP, iommu_group_id(group));
	return session_claim_adopt(name, fd, true, claim);
}

int vfio_claim_bind_begin(struct device *dev, struct vfio_claim_group **cgp)
{
	struct session_claim claim;
	struct vfio_claim_group *cg;
	char name[32];
	int id, rc;

	vfio_lock_assert_held();
	*cgp = NULL;
	id = vfio_claim_group_id(dev);
	if (id < 0)
		return id;
	for (cg = vfio_claim_groups; cg; cg = cg->next) {
		if (cg->id == id) {
			cg->binds++;
			*cgp = cg;
			return 0;
		}
	}
	snprintf(name, sizeof(name), SESSION_CLAIM_GROUP, id);
	rc = session_claim_take(name, false, &claim);
	if (rc || claim.fd < 0)
		return rc; /* no session: nothing to count */
	cg = uiommu_zalloc(sizeof(*cg));
	if (!cg) {
		session_claim_drop(&claim);
		return -ENOMEM;
	}
	cg->id = id;
	cg->binds = 1;
	cg->group = claim;
	cg->owner = SESSION_CLAIM_NONE;
	cg->next = vfio_claim_groups;
	vfio_claim_groups = cg;
	*cgp = cg;
	return 0;
}

int vfio_claim_bind_device(struct vfio_claim_group *cg, struct device *dev,
			   struct session_claim *claim)
{
	char name[64];
	int rc;

	vfio_lock_assert_held();
	*claim = SESSION_CLAIM_NONE;
	if (!cg)
		return 0;
	snprintf(name, sizeof(name), SESSION_CLAIM_DEVICE, dev->name);
	rc = session_claim_take(name, true, claim);
	if (rc)
		return rc == -EBUSY ? -EINVAL : rc; /* bound elsewhere: the kernel's open_count */
	if (cg->owner.fd >= 0)
		return 0;
	snprintf(name, sizeof(name), SESSION_CLAIM_OWNER, cg->id);
	rc = session_claim_take(name, true, &cg->owner);
	if (rc) {
		session_claim_drop(claim);
		return rc == -EBUSY ? -EPERM : rc; /* another process's context owns the group */
	}
	return 0;
}

void vfio_claim_bind_end(struct vfio_claim_group *cg)
{
	struct vfio_claim_group **p;

	vfio_lock_assert_held();
	if (!cg || --cg->binds)
		return;
	for (p = &vfio_claim_groups; *p != cg; p = &(*p)->next)
		;
	*p = cg->next;
	session_claim_drop(&cg->owner);
	session_claim_drop(&cg->group);
	uiommu_free(cg);
}

int vfio_claim_open(struct device *dev, struct session_claim *claim)
{
	char name[64];
	int rc;

	snprintf(name, sizeof(name), SESSION_CLAIM_OPEN, dev->name);
	rc = session_claim_take(name, false, claim);
	return rc == -EBUSY ? -ENODEV : rc; /* a store is unbinding or removing it */
}

int vfio_claim_group_mode_owner(struct device *dev, struct session_claim *claim)
{
	char name[32];
	int id = vfio_claim_group_id(dev), rc;

	*claim = SESSION_CLAIM_NONE;
	if (id < 0)
		return id;
	snprintf(name, sizeof(name), SESSION_CLAIM_OWNER, id);
	rc = session_claim_take(name, false, claim);
	return rc == -EBUSY ? -EPERM : rc; /* a DMA-API driver is being bound: not viable */
}
