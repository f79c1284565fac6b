// SPDX-License-Identifier: MIT
/*
 * KVM's VFIO pseudo-device, for our fds. A VMM with accel=kvm makes one (KVM_CREATE_DEVICE of
 * KVM_DEV_TYPE_VFIO on its VM fd: a real kernel object, "anon_inode:kvm-vfio") and tells it of
 * every VFIO group and device file it uses (KVM_SET_DEVICE_ATTR, group KVM_DEV_VFIO_FILE, attr
 * FILE_ADD / FILE_DEL, addr pointing to the fd). The kernel accepts only real VFIO files
 * (EINVAL for others), so it would refuse ours, and QEMU's cdev path aborts the device on that
 * failure. uiommu_kvm_ioctl() answers those calls for our fds, as virt/kvm/vfio.c answers for
 * real ones; every other call, and every call naming an fd that is not ours, goes to the
 * kernel (UIOMMU_KVM_PASS).
 *
 * What KVM would do with the file (hand the VM to the device, register non-coherent DMA) has no
 * counterpart here: our devices need no KVM. What stays is the bookkeeping and its errnos:
 * FILE_ADD holds the file (a group or device file: EINVAL for a container or /dev/iommu fd),
 * EEXIST when it is on the device's list already; FILE_DEL drops it, ENOENT when it is not
 * there; EBADF for an fd that is not open, EFAULT for a bad addr. The list is per kvm-vfio fd
 * number: the preload layer tells us when such an fd is closed (uiommu_kvm_close(), and
 * uiommu_kvm_close_range() for close_range() and closefrom()), which
 * is when the kernel releases its list. A file added stays held until then, as KVM holds it.
 *
 * Locking: kvm_vfio_lock protects the list; a leaf (the file references are dropped after it).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/close_range.h>

#include "iommufd/iommufd_private.h"
#include "lib/fail.h"
#include "lib/sys.h"
#include "uiommu/uiommu.h"
#include "vfio/group.h"

/* <linux/kvm.h>'s numbers (vfio-abi.md section 5), private so that any host header works. */
#define KVM_SET_DEVICE_ATTR_NR 0x4018aee1u
#define KVM_DEV_VFIO_FILE 1
#define KVM_DEV_VFIO_FILE_ADD 1
#define KVM_DEV_VFIO_FILE_DEL 2

struct kvm_attr {
	uint32_t flags, group;
	uint64_t attr, addr;
};

struct kvm_vfio_entry {
	int kvm_fd;                   /* the kvm-vfio device's fd */
	struct iommufd_file *file;    /* held */
	struct kvm_vfio_entry *next;
};

UIOMMU_MUTEX_DEFINE(kvm_vfio_lock); /* protects kvm_vfio_list; a leaf */
static struct kvm_vfio_entry *kvm_vfio_list;
static atomic_int kvm_vfio_nr; /* entries: a lock-free "none" for uiommu_kvm_close() */

/* Is @fd the kernel's kvm-vfio device? Asked of the kernel, not of the preload layer. */
static bool kvm_vfio_is_device(int fd)
{
	char proc[32], link[32];
	ssize_t n;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	n = sys_readlinkat(AT_FDCWD, proc, link, sizeof(link) - 1);
	if (n < 0)
		return false;
	link[n] = '\0';
	return !strcmp(link, "anon_inode:kvm-vfio");
}

/**
 * kvm_vfio_file_attr() - FILE_ADD or FILE_DEL of our fd @vfio_fd on the kvm-vfio device
 * @kvm_fd. Return: 0, -EBADF, -EINVAL (not a VFIO group or device file), -EEXIST, -ENOENT,
 * -ENOMEM.
 */
int kvm_vfio_file_attr(int kvm_fd, uint64_t attr, int vfio_fd)
{
	struct kvm_vfio_entry *e, **p;
	struct iommufd_file *file;
	int rc = 0;

	file = iommufd_file_hold(vfio_fd);
	if (!file)
		return -EBADF;
	if (attr == KVM_DEV_VFIO_FILE_ADD && !vfio_group_is_fd(vfio_fd) &&
	    !vfio_cdev_is_fd(vfio_fd)) {
		rc = -EINVAL;
		goto out_unhold;
	}
	uiommu_mutex_lock(&kvm_vfio_lock);
	for (p = &kvm_vfio_list; *p; p = &(*p)->next)
		if ((*p)->kvm_fd == kvm_fd && (*p)->file == file)
			break;
	if (attr == KVM_DEV_VFIO_FILE_ADD) {
		if (*p) {
			rc = -EEXIST;
		} else if (!(e = uiommu_zalloc(sizeof(*e)))) {
			rc = -ENOMEM;
		} else {
			e->kvm_fd = kvm_fd;
			e->file = file; /* our reference moves into the list */
			file = NULL;
			e->next = kvm_vfio_list;
			kvm_vfio_list = e;
			atomic_fetch_add(&kvm_vfio_nr, 1);
		}
	} else if (!*p) {
		rc = -ENOENT;
	} else {
		e = *p;
		*p = e->next;
		atomic_fetch_sub(&kvm_vfio_nr, 1);
		uiommu_mutex_unlock(&kvm_vfio_lock);
		iommufd_file_unhold(e->file); /* the list's reference */
		uiommu_free(e);
		goto out_unhold;
	}
	uiommu_mutex_unlock(&kvm_vfio_lock);
out_unhold:
	if (file)
		iommufd_file_unhold(file);
	return rc;
}

UIOMMU_EXPORT int uiommu_kvm_ioctl(int fd, unsigned long request, void *arg)
{
	struct uiommu_mm *mm = iommufd_caller_mm();
	struct kvm_attr attr;
	int32_t vfio_fd;
	int rc;

	if ((unsigned int)request != KVM_SET_DEVICE_ATTR_NR || !mm ||
	    uiommu_copy_from_user(mm, &attr, (uint64_t)(uintptr_t)arg, sizeof(attr)) ||
	    attr.group != KVM_DEV_VFIO_FILE ||
	    (attr.attr != KVM_DEV_VFIO_FILE_ADD && attr.attr != KVM_DEV_VFIO_FILE_DEL) ||
	    uiommu_copy_from_user(mm, &vfio_fd, attr.addr, sizeof(vfio_fd)) ||
	    !uiommu_is_fd(vfio_fd) || !kvm_vfio_is_device(fd))
		return UIOMMU_KVM_PASS; /* the kernel's (its EFAULT, EBADF, ENXIO included) */
	rc = kvm_vfio_file_attr(fd, attr.attr, vfio_fd);
	if (rc) {
		errno = -rc;
		return -1;
	}
	return 0;
}

/* Forgets the lists of the kvm-vfio fds in [@first, @last], dropping their files. */
static void kvm_vfio_forget(unsigned int first, unsigned int last)
{
	struct kvm_vfio_entry *gone = NULL, **p, *e;

	if (!atomic_load_explicit(&kvm_vfio_nr, memory_order_relaxed))
		return;
	uiommu_mutex_lock(&kvm_vfio_lock);
	for (p = &kvm_vfio_list; (e = *p);) {
		if ((unsigned int)e->kvm_fd >= first && (unsigned int)e->kvm_fd <= last) {
			*p = e->next;
			e->next = gone;
			gone = e;
			atomic_fetch_sub(&kvm_vfio_nr, 1);
		} else {
			p = &e->next;
		}
	}
	uiommu_mutex_unlock(&kvm_vfio_lock);
	while ((e = gone)) {
		gone = e->next;
		iommufd_file_unhold(e->file);
		uiommu_free(e);
	}
}

UIOMMU_EXPORT void uiommu_kvm_close(int fd)
{
	if (fd >= 0)
		kvm_vfio_forget((unsigned int)fd, (unsigned int)fd);
}

/* close_range()/closefrom() closes the kvm-vfio fds in the range as close() would. */
UIOMMU_EXPORT void uiommu_kvm_close_range(unsigned int first, unsigned int last, int flags)
{
	if (first <= last && !(flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC)) &&
	    !(flags & CLOSE_RANGE_CLOEXEC))
		kvm_vfio_forget(first, last);
}
