/* SPDX-License-Identifier: MIT */
/*
 * The VFIO layer's internal interface (src/vfio/): what the device cdev (device_cdev.c) and the
 * legacy group (group.c) share with the vfio-pci device fd (vfio_pci.c, pci_config.c).
 *
 * One device fd implementation, two ways in. A device fd is a file of the library's fd table
 * standing for one struct vfio_cdev_file (device_cdev.c); the file reaches the device's
 * vfio-pci state (struct vfio_pci_core, one per opened struct device) once it is "opened":
 *   - cdev mode (/dev/vfio/devices/vfioN): the file is unusable until VFIO_DEVICE_BIND_IOMMUFD;
 *     the bind opens the device. BIND/ATTACH/DETACH_IOMMUFD_PT exist only here;
 *   - group mode (VFIO_GROUP_GET_DEVICE_FD): vfio_cdev_open_group_mode(dev, ictx) (group.h)
 *     binds the device to the container's iommufd, attaches it to the compat IOAS, opens it for
 *     vfio-pci and returns an anonymous fd in which BIND answers EINVAL and ATTACH/DETACH
 *     ENOTTY, as the kernel's group-obtained fds do. PCI_HOT_RESET's group form resolves the
 *     caller's group fds with vfio_group_fd_iommu_group() (group.c).
 * Either way, every other ioctl, pread/pwrite and mmap go to vfio_pci_ioctl(), vfio_pci_rw()
 * and vfio_pci_mmap() below.
 *
 * The first open of a device (either way) does vfio-pci's open: Bus Master cleared, a function
 * reset (whose success is the RESET flag), decode enabled for the BARs, the virtual config
 * space built, the interrupt notifier registered. The last close disables interrupts, stops
 * DMA logging, resets the function and drops everything. See vfio_pci.c.
 *
 * Lock order: vfio_cdev_lock (group.h) -> vfio_pci_lock (the open devices) -> core->lock ->
 * core->irq_lock -> the machine's function lock; core->lock -> vfio_map_lock (the followed BAR
 * mmaps, vfio_pci_zap.c, a leaf); core->log_lock is a leaf (the DMA engine's log hook takes it
 * under the group mutex). core->ioev_lock (ioeventfds) is never held with core->lock: its
 * watcher thread writes through vfio_pci_rw(), which takes core->lock, and the last close
 * stops that thread before it takes core->lock. The unmask irqfd's watcher takes only
 * core->irq_lock, so removing it under core->lock joins it safely.
 */
#ifndef UIOMMU_VFIO_VFIO_H
#define UIOMMU_VFIO_VFIO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "iommu/iommu.h"

struct iommufd_ctx;
struct uiommu_mm;
struct vfio_pci_core;

/**
 * vfio_device_is_open() - is @dev open for vfio-pci through any device fd (cdev bound, or
 * group mode)?
 */
bool vfio_device_is_open(struct device *dev);

/* ---- vfio_pci.c, for device_cdev.c -------------------------------------------------------- */

/*
 * vfio_pci_core_open() - the vfio-pci state of @dev, opened (the first open does the work),
 * with one open count for the caller; vfio_pci_core_close() drops it (the last one undoes).
 * @ictx/@devid: the iommufd the caller's file is bound to and the DEVICE id there (the cdev's
 * bind; NULL/0 for none) for hot reset ownership. Return: the core, or ERR_PTR(-ENODEV,
 * -ENOMEM).
 */
struct vfio_pci_core *vfio_pci_core_open(struct device *dev, struct iommufd_ctx *ictx,
					 uint32_t devid);
void vfio_pci_core_close(struct vfio_pci_core *core);

/* The cdev or group file's view, for the hot reset ownership rules. */
enum vfio_file_mode { VFIO_FILE_CDEV, VFIO_FILE_GROUP };

struct vfio_pci_caller {
	enum vfio_file_mode mode;
	struct iommufd_ctx *ictx;                 /* cdev: the bound iommufd */
	struct iommu_group *(*group_of_fd)(int fd); /* group mode */
};

/*
 * vfio_pci_ioctl() - every vfio-pci device ioctl (GET_INFO ... DEVICE_FEATURE): -ENOTTY for
 * others. vfio_pci_rw() - pread/pwrite at a region offset; vfio_pci_mmap() - mmap of a BAR's
 * shared area. Called with no VFIO lock held.
 */
int vfio_pci_ioctl(struct vfio_pci_core *core, const struct vfio_pci_caller *caller,
		   struct uiommu_mm *mm, unsigned int cmd, uint64_t arg);
ssize_t vfio_pci_rw(struct vfio_pci_core *core, void *buf, size_t count, uint64_t off,
		    bool write);
void *vfio_pci_mmap(struct vfio_pci_core *core, void *addr, size_t len, int prot, int flags,
		    uint64_t off);

#endif
