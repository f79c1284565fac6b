// SPDX-License-Identifier: MIT
/*
 * Revoking a driver's BAR mmaps while the function does not decode memory, as the kernel's
 * vfio-pci zaps them (vfio_pci_zap_bars(); read, not copied): with the virtual Memory bit of
 * Command clear, or the function in D3hot, a load or store through a mapping of a BAR area is
 * SIGBUS; when decoding comes back, the same addresses reach the same pages again (the kernel
 * faults them back in; here they are mapped again at once).
 *
 * Data model. Every mapping vfio_pci_mmap() makes of a BAR area (a whole-BAR mapping records
 * each area piece of it) is a struct vfio_pci_map in one process-wide list: the address, the
 * length, the protection, the function's memfd and offset, and whether it is zapped now. A
 * zapped range is the same range mapped MAP_SHARED from an empty memfd of ours (vfio_zap_fd):
 * every access is past its end, so the CPU's fault is the SIGBUS the kernel's fault handler
 * answers. vfio_pci_maps_update() runs after every config write of the device fd and after
 * every reset (the only ways the decode state changes) and zaps or restores the device's
 * mappings when it moved.
 *
 * Resets. A function reset (VFIO_DEVICE_RESET, Initiate FLR, a hot reset) revokes the mappings
 * for its whole duration (vfio_pci_maps_revoke() before the reset, vfio_pci_maps_update()
 * after the state is restored), as the kernel zaps them under its memory lock: a thread that
 * touches a mapping meanwhile gets SIGBUS (the kernel's fault would wait for the lock instead),
 * never the pages of a function half reset, which the reset zeroes word by word. The virtual
 * Command register is not touched by a reset (the PCI core restores the function's own from
 * its saved header), so a mapping that worked before works again after.
 *
 * Never another's memory. A recorded range must be ours when we map over it with MAP_FIXED.
 * Munmaps of recorded ranges come to us (iommufd's mmap owner hook: the preload asks
 * vfio_map_claims() and sends the munmap to vfio_map_munmap()), which unmaps and forgets
 * under vfio_map_lock, the lock a zap holds: no zap can see a range between its munmap and
 * the forgetting. A munmap of part of a mapping forgets all of it (the rest stays mapped, no
 * longer revoked). A program's own mmap(MAP_FIXED) of something else over a recorded range
 * is not seen (as for iommufd's own mappings), so before each zap or restore the range is
 * checked against /proc/self/maps: every piece of it must still map our memfd or the empty
 * one, or the record is dropped untouched.
 *
 * Locking: core->lock (held by the callers of update, record and forget) -> vfio_map_lock,
 * a leaf that protects the list and the records.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/queue.h>
#include <sys/stat.h>

#include "iommufd/iommufd_private.h"
#include "lib/fail.h"
#include "lib/fdkeep.h"
#include "lib/sys.h"
#include "vfio/vfio_pci_priv.h"

struct vfio_pci_map {
	LIST_ENTRY(vfio_pci_map) node;     /* in vfio_maps */
	struct vfio_pci_core *core;
	uintptr_t addr;
	size_t len;
	int prot;
	int fd;                            /* the function's memfd (alive while core is) */
	uint64_t fd_off;
	bool zapped;
};

UIOMMU_MUTEX_DEFINE(vfio_map_lock); /* a leaf: protects everything below */
static LIST_HEAD(, vfio_pci_map) vfio_maps = LIST_HEAD_INITIALIZER(vfio_maps);
static _Atomic unsigned int vfio_map_count; /* lets munmaps skip the lock while there are none */
static int vfio_zap_fd = -1;               /* an empty memfd; made at the first record */

static bool vfio_map_claims(uintptr_t start, uintptr_t end)
{
	struct vfio_pci_map *m;
	bool found = false;

	if (!atomic_load_explicit(&vfio_map_count, memory_order_acquire))
		return false;
	uiommu_mutex_lock(&vfio_map_lock);
	LIST_FOREACH(m, &vfio_maps, node)
		found |= start < m->addr + m->len && m->addr < end;
	uiommu_mutex_unlock(&vfio_map_lock);
	return found;
}

/* Drops the records overlapping [@start, @end). vfio_map_lock held. */
static void vfio_map_forget_locked(uintptr_t start, uintptr_t end)
{
	struct vfio_pci_map *m, *tmp;

	lockdep_assert_held(&vfio_map_lock);
	for (m = LIST_FIRST(&vfio_maps); m && (tmp = LIST_NEXT(m, node), 1); m = tmp) {
		if (!(start < m->addr + m->len && m->addr < end))
			continue;
		LIST_REMOVE(m, node);
		atomic_fetch_sub_explicit(&vfio_map_count, 1, memory_order_relaxed);
		uiommu_free(m);
	}
}

static int vfio_map_munmap(void *addr, size_t len)
{
	uintptr_t s = (uintptr_t)addr;
	int rc = 0;

	uiommu_mutex_lock(&vfio_map_lock);
	if (sys_munmap(addr, len))
		rc = -errno;
	else
		vfio_map_forget_locked(s, s + ((len + uiommu_page_size - 1) &
					       ~(size_t)(uiommu_page_size - 1)));
	uiommu_mutex_unlock(&vfio_map_lock);
	return rc;
}

static const struct iommufd_mmap_owner vfio_map_owner = {
	.claims = vfio_map_claims,
	.munmap = vfio_map_munmap,
};

void vfio_pci_maps_unmap(void *addr, size_t len)
{
	vfio_map_munmap(addr, len);
}

/*
 * Is every piece of @m's range still a mapping of its memfd or of the empty one? From
 * /proc/self/maps, read in pieces (a line is "start-end perms offset dev inode path").
 */
static bool vfio_map_still_ours(const struct vfio_pci_map *m)
{
	struct stat a, z;
	char buf[4096];
	size_t have = 0;
	bool ok = true;
	int f;

	if (sys_fstat(m->fd, &a) || sys_fstat(vfio_zap_fd, &z))
		return false;
	f = sys_openat(AT_FDCWD, "/proc/self/maps", O_RDONLY | O_CLOEXEC, 0);
	if (f < 0)
		return false;
	for (;;) {
		ssize_t n = sys_read(f, buf + have, sizeof(buf) - 1 - have);
		char *line = buf, *nl;

		if (n <= 0)
			break;
		have += (size_t)n;
		buf[have] = 0;
		while ((nl = strchr(line, '\n'))) {
			unsigned long s, e, ino;

			*nl = 0;
			if (sscanf(line, "%lx-%lx %*s %*s %*s %lu", &s, &e, &ino) == 3 &&
			    s < m->addr + m->len && m->addr < e && ino != a.st_ino && ino != z.st_ino)
				ok = false;
			line = nl + 1;
		}
		have -= (size_t)(line - buf);
		memmove(buf, line, have);
	}
	sys_close(f);
	return ok;
}

/* Zaps (@zap) or restores @m. vfio_map_lock held. false: the range is no longer ours. */
static bool vfio_map_set(struct vfio_pci_map *m, bool zap)
{
	void *p;

	if (m->zapped == zap)
		return true;
	if (!vfio_map_still_ours(m))
		return false;
	p = zap ? sys_mmap((void *)m->addr, m->len, m->prot, MAP_SHARED | MAP_FIXED, vfio_zap_fd,
			   0) :
		  sys_mmap((void *)m->addr, m->len, m->prot, MAP_SHARED | MAP_FIXED, m->fd,
			   (off_t)m->fd_off);
	/* On failure the range keeps what it had: a restore that fails leaves it revoked. */
	if (p != MAP_FAILED)
		m->zapped = zap;
	return true;
}

static void vfio_map_owner_register(void)
{
	WARN_ON(iommufd_mmap_owner_register(&vfio_map_owner));
}

void *vfio_pci_maps_mmap(struct vfio_pci_core *core, void *addr, size_t len, int prot,
			 int flags, int fd, uint64_t fd_off, bool record)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct vfio_pci_map *m = NULL;
	void *p = MAP_FAILED;

	lockdep_assert_held(&core->lock);
	pthread_once(&once, vfio_map_owner_register);
	if (record) {
		m = uiommu_zalloc(sizeof(*m));
		if (!m) {
			errno = ENOMEM;
			return MAP_FAILED;
		}
	}
	/* The mapping, the forgetting of what it replaced and the record: one step for a zap. */
	uiommu_mutex_lock(&vfio_map_lock);
	if (record && vfio_zap_fd < 0) {
		vfio_zap_fd = uiommu_should_fail() ? (errno = EMFILE, -1) :
			      sys_memfd_create("uiommu-vfio-zap", MFD_CLOEXEC);
		if (vfio_zap_fd < 0)
			goto out_unlock;
		uiommu_fd_keep(vfio_zap_fd);
	}
	p = sys_mmap(addr, len, prot, flags, fd, (off_t)fd_off);
	if (p == MAP_FAILED)
		goto out_unlock;
	len = (len + uiommu_page_size - 1) & ~(size_t)(uiommu_page_size - 1);
	vfio_map_forget_locked((uintptr_t)p, (uintptr_t)p + len);
	if (!record)
		goto out_unlock;
	*m = (struct vfio_pci_map){
		.core = core, .addr = (uintptr_t)p, .len = len, .prot = prot, .fd = fd,
		.fd_off = fd_off,
	};
	LIST_INSERT_HEAD(&vfio_maps, m, node);
	atomic_fetch_add_explicit(&vfio_map_count, 1, memory_order_release);
	/* Mapped while decoding is off: revoked from the start, as the kernel's faults are. */
	if (!core->maps_live)
		vfio_map_set(m, true);
	m = NULL;
out_unlock:
	uiommu_mutex_unlock(&vfio_map_lock);
	uiommu_free(m);
	return p;
}

/* Zaps (@zap) or restores every mapping of @core; drops the ones no longer ours. */
static void vfio_maps_set_all(struct vfio_pci_core *core, bool zap)
{
	struct vfio_pci_map *m, *tmp;

	lockdep_assert_held(&core->lock);
	core->maps_live = !zap;
	uiommu_mutex_lock(&vfio_map_lock);
	for (m = LIST_FIRST(&vfio_maps); m && (tmp = LIST_NEXT(m, node), 1); m = tmp) {
		if (m->core != core || vfio_map_set(m, zap))
			continue;
		LIST_REMOVE(m, node);
		atomic_fetch_sub_explicit(&vfio_map_count, 1, memory_order_relaxed);
		uiommu_free(m);
	}
	uiommu_mutex_unlock(&vfio_map_lock);
}

void vfio_pci_maps_update(struct vfio_pci_core *core)
{
	bool live = vfio_pci_memory_enabled(core);

	if (live != core->maps_live)
		vfio_maps_set_all(core, !live);
}

void vfio_pci_maps_revoke(struct vfio_pci_core *core)
{
	if (core->maps_live)
		vfio_maps_set_all(core, true);
}

void vfio_pci_maps_forget(struct vfio_pci_core *core)
{
	struct vfio_pci_map *m, *tmp;

	uiommu_mutex_lock(&vfio_map_lock);
	for (m = LIST_FIRST(&vfio_maps); m && (tmp = LIST_NEXT(m, node), 1); m = tmp) {
		if (m->core != core)
			continue;
		/* The mapping outlives the device's last close as it is, live or revoked (as a
		 * VMA keeps its file); it is only no longer followed. */
		LIST_REMOVE(m, node);
		atomic_fetch_sub_explicit(&vfio_map_count, 1, memory_order_relaxed);
		uiommu_free(m);
	}
	uiommu_mutex_unlock(&vfio_map_lock);
}
