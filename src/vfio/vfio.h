/* SPDX-License-Identifier: MIT */
/*
 * The VFIO layer's internal interface (src/vfio/): what the device cdev (device_cdev.c) and the
 * legacy group (group.c) share with the vfio-pci device fd (vfio_pci.c, pci_config.c).
 *
 * One device fd implementation, two ways in. A device fd is a file of the library's fd table
 * (iommufd_file_open_ops()) standing for one struct vfio_device_file; the file reaches the
 * device's vfio-pci state (struct vfio_pci_core, one per opened struct device, shared by every
 * file that has the device open) once it is "opened":
 *   - cdev mode (/dev/vfio/devices/vfioN): the file is unusable until VFIO_DEVICE_BIND_IOMMUFD;
 *     the bind opens the device (device_cdev.c). BIND/ATTACH/DETACH_IOMMUFD_PT exist only here;
 *   - group mode (VFIO_GROUP_GET_DEVICE_FD): vfio_device_open_group() opens the device at once
 *     and returns a file in which BIND answers EINVAL and ATTACH/DETACH answer ENOTTY, as the
 *     kernel's group-obtained fds do. Every vfio-pci operation first asks the group whether its
 *     container still allows use (ops->usable), and PCI_HOT_RESET's group form resolves the
 *     caller's group fds through ops->group_of_fd.
 *
 * The first open of a device (either way) does vfio-pci's open: Bus Master cleared, a function
 * reset (whose success is the RESET flag), decode enabled for the BARs, the virtual config
 * space built, the interrupt notifier registered. The last close disables interrupts, stops
 * DMA logging, resets the function and drops everything. See vfio_pci.c.
 *
 * Lock order: vfio_cdev_lock (device_cdev.c) and the group's locks -> vfio_pci_lock (the open
 * devices) -> core->lock -> the machine's function lock -> core->irq_lock / core->log_lock
 * (leaves, taken by the machine's notifier and the DMA engine's log hook).
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

/* What a group tells the device fds it made (group.c implements it). */
struct vfio_group_ops {
	/*
	 * usable() - may the device fd be used now? 0, or the errno every vfio-pci operation of
	 * the fd then fails with (the kernel's fds stay usable while the group keeps its
	 * container, so the usual answer is 0). Optional.
	 */
	int (*usable)(void *group);
	/*
	 * group_of_fd() - the IOMMU group of the VFIO group fd @fd (for PCI_HOT_RESET's group
	 * form), referenced (iommu_group_put()); ERR_PTR(-EBADF) for a closed fd, -EINVAL for an
	 * fd that is not a VFIO group. Optional: without it every fd is -EINVAL.
	 */
	struct iommu_group *(*group_of_fd)(int fd);
	/* release() - the device fd's last close: the group may let go of it. Optional. */
	void (*release)(void *group);
};

/**
 * vfio_device_open_group() - a device fd for @dev in group mode (VFIO_GROUP_GET_DEVICE_FD)
 * @dev: a VFIO device (a PCI function of the machine handed to vfio-pci); referenced here
 * @ops, @group: the group's callbacks and their argument; @group must stay valid until
 *               ops->release(@group) (or, when this fails, until it returns)
 * @ictx: the iommufd context the group's container is (an iommufd-backed container), or NULL;
 *        used only for GET_PCI_HOT_RESET_INFO's ownership (not referenced: the group keeps it)
 * @devid: @dev's DEVICE object id in @ictx, if any (0 otherwise)
 * @flags: open flags of the fd (O_CLOEXEC as the kernel's)
 *
 * Opens the device (vfio-pci's first-open work when no other file has it open) and returns a
 * new fd for it. ops->release is called at the fd's last close, not on failure.
 * Return: the fd, or -ENODEV (the function is gone), -ENOMEM, -EMFILE, the open's errno.
 */
int vfio_device_open_group(struct device *dev, const struct vfio_group_ops *ops, void *group,
			   struct iommufd_ctx *ictx, uint32_t devid, int flags);

/**
 * vfio_device_is_open() - is @dev open through any device fd (cdev bound, or group mode)?
 * For the group's UNSET_CONTAINER (type1: EBUSY while a device is open) and status.
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
