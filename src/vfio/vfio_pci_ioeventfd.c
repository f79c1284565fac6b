// SPDX-License-Identifier: MIT
/*
 * VFIO_DEVICE_IOEVENTFD: an eventfd whose every signal makes a fixed write into a BAR, so a
 * VMM can let KVM's ioeventfd (a guest's doorbell store) reach the device without a round trip
 * through the VMM's own thread, as the kernel's vfio-pci offers it (drivers/vfio/pci/
 * vfio_pci_rdwr.c; read, not copied).
 *
 * Data model. A device holds up to VFIO_PCI_IOEVENTFD_MAX registrations, each (region offset,
 * data, width) with our own duplicate of the caller's eventfd (vfio_efd_get(): the caller's
 * close does not end it). The triple is the key: a second registration of it is EEXIST, fd -1
 * removes it (ENODEV when there is none). One watcher thread per device, started by the first
 * registration, polls every registered eventfd and a kick eventfd of ours; a signal is consumed
 * (its count read without blocking, vfio_efd_consume(): the caller may read it too, and its
 * O_NONBLOCK is the caller's) and becomes one write through vfio_pci_rw(), the path of a
 * pwrite() of the device fd: split into naturally aligned accesses, dropped (EIO) while memory
 * decode is off, as the kernel's handler drops it. Registrations that share an eventfd (the
 * kernel's "eventfd-id") all fire on one signal, as each of the kernel's virqfds is woken.
 *
 * Changes and the watcher. A change is made under ioev_lock and bumps ioev_gen; the watcher
 * takes a copy of the registrations (fds included) at the top of its loop, records the
 * generation it saw and wakes the changer, which waits for that before it returns. The
 * watcher uses its copy until its next look, so a removed registration's fd is closed only
 * after the watcher acknowledged the change: when the ioctl returns, no write of it runs or
 * will run. The watcher never holds ioev_lock while it writes (the write takes core->lock),
 * and a change never holds core->lock, so the two never wait on each other. The last close
 * stops the watcher before it takes core->lock (vfio_pci_core_close()).
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>

#include "lib/fail.h"
#include "lib/sys.h"
#include "mm/mm.h"
#include "vfio/vfio_pci_priv.h"

/* The uAPI's struct vfio_device_ioeventfd (include/uapi/linux/vfio.h). */
struct vfio_ioeventfd_arg {
	uint32_t argsz, flags;
	uint64_t offset, data;
	int32_t fd;
	uint32_t reserved;
};

#define IOEVENTFD_SIZE_MASK 0xfu
#define IOEVENTFD_MINSZ 28u /* offsetofend(fd) */

struct vfio_pci_ioeventfd {
	uint64_t offset;                   /* region offset of the write */
	uint64_t data;
	unsigned int count;                /* bytes: 1, 2 or 4 */
	int fd;                            /* our duplicate of the caller's eventfd */
	uint64_t efd_id;                   /* its eventfd's identity (vfio_efd_id()) */
};

void vfio_pci_ioeventfd_init(struct vfio_pci_core *core)
{
	uiommu_mutex_init(&core->ioev_lock);
	uiommu_cond_init(&core->ioev_cond);
	core->ioev_kick = -1;
}

static void *vfio_pci_ioeventfd_watch(void *arg)
{
	struct vfio_pci_core *core = arg;
	struct vfio_pci_ioeventfd snap[VFIO_PCI_IOEVENTFD_MAX];
	struct pollfd pfd[1 + VFIO_PCI_IOEVENTFD_MAX];
	unsigned int n = 0;

	for (;;) {
		eventfd_t cnt;

		uiommu_mutex_lock(&core->ioev_lock);
		if (core->ioev_stop) {
			uiommu_mutex_unlock(&core->ioev_lock);
			return NULL;
		}
		if (core->ioev_seen != core->ioev_gen) {
			n = core->ioev_nr;
			memcpy(snap, core->ioev, n * sizeof(*snap));
			core->ioev_seen = core->ioev_gen;
			uiommu_cond_broadcast(&core->ioev_cond);
		}
		uiommu_mutex_unlock(&core->ioev_lock);
		pfd[0] = (struct pollfd){ .fd = core->ioev_kick, .events = POLLIN };
		for (unsigned int i = 0; i < n; i++)
			pfd[1 + i] = (struct pollfd){ .fd = snap[i].fd, .events = POLLIN };
		if (poll(pfd, 1 + n, -1) < 0)
			continue; /* EINTR */
		if (pfd[0].revents) {
			sys_read(core->ioev_kick, &cnt, sizeof(cnt));
			continue; /* a change (or the stop): look again first */
		}
		for (unsigned int i = 0; i < n; i++) {
			if (!(pfd[1 + i].revents & POLLIN) || vfio_efd_consume(snap[i].fd))
				continue;
			/*
			 * One signal fires every registration of that eventfd, as each of the
			 * kernel's virqfds on it is woken; the others' polls saw the same count,
			 * which this read took.
			 */
			for (unsigned int j = i; j < n; j++) {
				if (j != i && (!(pfd[1 + j].revents & POLLIN) ||
					       snap[j].efd_id != snap[i].efd_id || !snap[i].efd_id))
					continue;
				pfd[1 + j].revents = 0;
				/* Memory decode off: EIO, the write dropped, as the kernel's does. */
				vfio_pci_rw(core, &snap[j].data, snap[j].count, snap[j].offset, true);
			}
		}
	}
}

/* A change was made (ioev_gen bumped): wake the watcher and wait until it has seen it. */
static void vfio_pci_ioeventfd_sync(struct vfio_pci_core *core)
{
	uint64_t gen = core->ioev_gen;

	lockdep_assert_held(&core->ioev_lock);
	sys_write(core->ioev_kick, &(eventfd_t){ 1 }, sizeof(eventfd_t));
	while (core->ioev_seen < gen)
		uiommu_cond_wait(&core->ioev_cond, &core->ioev_lock);
}

/* The slots and the watcher, at the first registration. ioev_lock held. */
static int vfio_pci_ioeventfd_start(struct vfio_pci_core *core)
{
	int rc;

	lockdep_assert_held(&core->ioev_lock);
	if (core->ioev_running)
		return 0;
	core->ioev = uiommu_zalloc(VFIO_PCI_IOEVENTFD_MAX * sizeof(*core->ioev));
	if (!core->ioev)
		return -ENOMEM;
	rc = vfio_watcher_start(&core->ioev_kick, &core->ioev_thread, vfio_pci_ioeventfd_watch,
				core);
	if (rc)
		goto err_free;
	core->ioev_running = true;
	return 0;

err_free:
	uiommu_free(core->ioev);
	core->ioev = NULL;
	return rc;
}

/* The registration (offset, data, count): its slot, or NULL. ioev_lock held. */
static struct vfio_pci_ioeventfd *vfio_pci_ioeventfd_find(struct vfio_pci_core *core,
							   uint64_t offset, uint64_t data,
							   unsigned int count)
{
	for (unsigned int i = 0; i < core->ioev_nr; i++) {
		struct vfio_pci_ioeventfd *e = &core->ioev[i];

		if (e->offset == offset && e->data == data && e->count == count)
			return e;
	}
	return NULL;
}

/* Where the kernel's vfio_pci_ioeventfd() allows one: a BAR, inside it, not the MSI-X table. */
static int vfio_pci_ioeventfd_check(struct vfio_pci_core *core, uint64_t offset,
				    unsigned int count)
{
	unsigned int bar = (unsigned int)(offset >> VFIO_PCI_OFFSET_SHIFT);
	uint64_t pos = offset & VFIO_PCI_OFFSET_MASK;
	const struct pci_fn_bar_info *bi;

	/* bar_size and bar_info are set at the first open and constant after. */
	if (bar >= VFIO_PCI_ROM || pos + count > core->bar_size[bar])
		return -EINVAL;
	bi = &core->bar_info[bar];
	if (bi->msix_table && pos + count > bi->msix_table_offset &&
	    pos < bi->msix_table_offset + bi->msix_table_size)
		return -EINVAL;
	/* The kernel has no 64-bit write for it any more. */
	return count == 8 ? -EINVAL : 0;
}

int vfio_pci_ioeventfd_ioctl(struct vfio_pci_core *core, struct uiommu_mm *mm, uint64_t arg)
{
	struct vfio_ioeventfd_arg a;
	struct vfio_pci_ioeventfd *e;
	unsigned int count;
	int rc, efd;

	rc = uiommu_copy_from_user(mm, &a, arg, IOEVENTFD_MINSZ);
	if (rc)
		return rc;
	if (a.argsz < IOEVENTFD_MINSZ || (a.flags & ~IOEVENTFD_SIZE_MASK))
		return -EINVAL;
	count = a.flags & IOEVENTFD_SIZE_MASK;
	if (__builtin_popcount(count) != 1 || a.fd < -1)
		return -EINVAL;
	rc = vfio_pci_ioeventfd_check(core, a.offset, count);
	if (rc)
		return rc;
	uiommu_mutex_lock(&core->ioev_lock);
	e = vfio_pci_ioeventfd_find(core, a.offset, a.data, count);
	if (e) {
		if (a.fd >= 0) {
			rc = -EEXIST;
			goto out_unlock;
		}
		efd = e->fd;
		*e = core->ioev[--core->ioev_nr];
		core->ioev_gen++;
		vfio_pci_ioeventfd_sync(core);
		vfio_efd_put(efd); /* the watcher dropped its copy */
		goto out_unlock;
	}
	if (a.fd < 0) {
		rc = -ENODEV;
		goto out_unlock;
	}
	if (core->ioev_nr >= VFIO_PCI_IOEVENTFD_MAX) {
		rc = -ENOSPC;
		goto out_unlock;
	}
	rc = vfio_pci_ioeventfd_start(core);
	if (rc)
		goto out_unlock;
	efd = vfio_efd_get(a.fd);
	if (efd < 0) {
		rc = efd;
		goto out_unlock;
	}
	core->ioev[core->ioev_nr++] = (struct vfio_pci_ioeventfd){
		.offset = a.offset, .data = a.data, .count = count, .fd = efd,
		.efd_id = vfio_efd_id(efd),
	};
	core->ioev_gen++;
	vfio_pci_ioeventfd_sync(core);
out_unlock:
	uiommu_mutex_unlock(&core->ioev_lock);
	return rc;
}

void vfio_pci_ioeventfd_release(struct vfio_pci_core *core)
{
	uiommu_mutex_lock(&core->ioev_lock);
	if (!core->ioev_running) {
		uiommu_mutex_unlock(&core->ioev_lock);
		return;
	}
	core->ioev_stop = true;
	sys_write(core->ioev_kick, &(eventfd_t){ 1 }, sizeof(eventfd_t));
	uiommu_mutex_unlock(&core->ioev_lock);
	/* Outside ioev_lock: the watcher takes it to see the stop. */
	pthread_join(core->ioev_thread, NULL);
	for (unsigned int i = 0; i < core->ioev_nr; i++)
		vfio_efd_put(core->ioev[i].fd);
	sys_close(core->ioev_kick);
	uiommu_free(core->ioev);
	core->ioev = NULL;
	core->ioev_nr = 0;
	core->ioev_kick = -1;
	core->ioev_running = core->ioev_stop = false;
}
