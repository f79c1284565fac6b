/* SPDX-License-Identifier: MIT */
/*
 * The virtual sysfs, library side (see sysfs.c for the design). The public entry points the
 * preload layer forwards to are in include/uiommu/uiommu.h ("virtual sysfs"); this header holds
 * what other parts of the library (the control socket, ctl.c) and white-box tests use.
 *
 * Lock order: sysfs_lock -> topology_lock -> iommu_probe_device_lock -> group->mutex. Nothing
 * below the sysfs calls back into it.
 */
#ifndef UIOMMU_MACHINE_SYSFS_H
#define UIOMMU_MACHINE_SYSFS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "iommu/iommu.h"

/* Environment: the session directory shared by the processes of one uiommu-run, and its owner. */
#define SYSFS_DIR_ENV "UIOMMU_SYSFS_DIR"
#define SYSFS_OWNER_ENV "UIOMMU_SYSFS_OWNER"
/* The emulated DMA-API driver's name on the PCI bus: /sys/bus/pci/drivers/<name>. */
#define SYSFS_PCI_DRIVER "uiommu-dma"
/*
 * The character devices of VFIO, as a real machine numbers them: the misc major 10 with vfio's
 * fixed minor 196 (/dev/vfio/vfio), and two
 * dynamic majors (taken from 254 downward in registration order on a machine whose drivers
 * took 254-244 before): "vfio" for the group nodes (/dev/vfio/<G>, minor = the group's slot)
 * and "vfio-dev" for the device cdevs (/dev/vfio/devices/vfioN, minor = N). The sysfs `dev`
 * files show these, and the VFIO layer's stat() and fstat() answer them.
 */
#define SYSFS_MISC_MAJOR 10
#define SYSFS_VFIO_MISC_MINOR 196
#define SYSFS_VFIO_GROUP_MAJOR 243
#define SYSFS_VFIO_CDEV_MAJOR 242

/* The selftest mock's bus, /sys/bus/<name>: the kernel's name, which selftests look for. */
#define SYSFS_MOCK_BUS "iommufd_mock"
/* Test hook: "1" grants the type store's privilege, "0" denies it, unset: the real check. */
#define SYSFS_PRIVILEGED_ENV "UIOMMU_SYSFS_PRIVILEGED"

/**
 * sysfs_machine_boot() - make sure the emulated machine exists
 *
 * Loads the topology (topology_load(NULL): $UIOMMU_TOPOLOGY or the embedded default) unless one
 * is loaded already. Called on first use of the virtual sysfs and by the control socket.
 *
 * Return: 0, or the -errno of topology_load().
 */
int sysfs_machine_boot(void);

/**
 * sysfs_type_capable() - may this process change a group's type?
 *
 * The kernel's rule: CAP_SYS_ADMIN and CAP_SYS_RAWIO, in the initial user namespace. The test
 * hook $UIOMMU_SYSFS_PRIVILEGED ("1" / "0") overrides the answer.
 */
bool sysfs_type_capable(void);

/**
 * sysfs_type_store() - iommu_group_type_store(), shared with the other processes of the session
 * @group: the group (a reference held by the caller)
 *
 * A successful store is appended to the session journal when this process serves a virtual
 * sysfs, so that every process of the session (a shell and the programs it starts) sees the
 * same machine. Takes sysfs_lock: not to be called with a topology or core lock held.
 *
 * Return: @count, or the store's -errno.
 */
ssize_t sysfs_type_store(struct iommu_group *group, const char *buf, size_t count,
			 bool privileged);

/**
 * sysfs_session_dir() - the directory of this process's uiommu-run session ($UIOMMU_SYSFS_DIR),
 * made (0700, marked as a session's) unless it exists; an existing one must be ours and private
 * Copies its path into @buf. Return: 0; -ENOENT when this process runs in no session (the
 * variable is unset: no uiommu-run, and a private sysfs session does not count); -EPERM for a
 * directory that is not ours or not private, another -errno of mkdir().
 */
int sysfs_session_dir(char *buf, size_t len);

/*
 * sysfs_session_left() - at the exit of a process of the session that is not its owner: once
 * the owner is gone, the session directory goes as the owner's exit would have removed it
 * (only what sessions put there; a directory something else keeps stays, for a later
 * session's sweep). The owner's end leaves it for a serving process that outlives it, whose
 * record (session.c) is still there.
 */
void sysfs_session_left(void);

/**
 * sysfs_tree_root() - the directory this process materialises /sys into (it holds "sys/")
 * Copies into @buf; -ENOENT when the virtual sysfs has not been used in this process.
 */
int sysfs_tree_root(char *buf, size_t len);

/* A close_range() of [first, last] is about to run: forget the virtual sysfs's fds in it. */
void sysfs_fds_forget_range(unsigned int first, unsigned int last);

/**
 * sysfs_dev_redirect() - the tree's place for a /dev path (/dev/vfio, /dev/vfio/devices and
 * their entries, which the tree holds as empty files so that a listing shows the nodes), after
 * a sync. Return: 0, -ENOENT (not a /dev path), the sync's errno.
 */
int sysfs_dev_redirect(const char *path, char *buf, size_t len);

/**
 * sysfs_unredirect() - @real (a resolved path inside this process's tree) as the program names
 * it: "/sys/..." or "/dev/...". Return: 0, -ENOENT (not in the tree), -ENAMETOOLONG.
 */
int sysfs_unredirect(const char *real, char *buf, size_t len);

/* Device-tree names, shared with uiommuctl's output: "pci0000:00" for "0000:01:00.0". */
void sysfs_pci_root_name(const char *bdf, char *buf, size_t len);

#endif
