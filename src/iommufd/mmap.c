// SPDX-License-Identifier: MIT
/*
 * mmap on the iommufd fd: uiommu_mmap() and uiommu_munmap(), the library's side of a program's
 * mmap(2) of /dev/iommu (the preload layer forwards to them).
 *
 * Some objects own a region of memory a driver shares with user space (the selftest vIOMMU's
 * 2-page page; a real vIOMMU's command-queue window). The region is a memfd of ours, mapped
 * MAP_SHARED in the library too (iommufd_mmap_region_alloc()), so the driver's writes and the
 * program's are the same bytes. The object hands out an offset and a length (VIOMMU_ALLOC's
 * out_mmap_offset/length); an offset is the owner's object ID shifted by
 * IOMMUFD_MMAP_ID_SHIFT, so it names the owner without a table of its own and two live
 * objects never share one (an ID is not reused while its object lives).
 *
 * uiommu_mmap() applies the kernel's rules, in its order: a zero length or an offset off a
 * page is EINVAL (mmap(2)'s own checks), the mapping must be MAP_SHARED (EINVAL) and not
 * executable (EPERM), and offset and length (rounded up to pages) must be exactly a live
 * region's (ENXIO). It then maps the region's memfd where the program asked, and records the
 * mapping (struct iommufd_mmap). As the kernel's VMA does, a live mapping holds a users
 * reference on its owner (IOMMU_DESTROY of it answers EBUSY until the munmap) and a reference
 * on the context's file (closing the fd does not free the context under the mapping).
 *
 * uiommu_munmap() unmaps, then forgets the pages of every recorded mapping inside the range;
 * a mapping whose last page is gone drops its references. A partial munmap leaves the rest
 * recorded, as a split VMA keeps its reference. uiommu_mmap() with MAP_FIXED over one of our
 * mappings forgets the pages it replaces the same way. The program's own mmap(MAP_FIXED) of
 * another file over one of our mappings is not seen: that mapping stays recorded until an
 * munmap of its range.
 *
 * A layer above whose sub-fds map on their own (VFIO's BAR areas) registers as the mmap owner
 * (iommufd_mmap_owner_register()): uiommu_mmap_claims() also asks it, and uiommu_munmap() lets
 * it unmap a range that touches its mappings, so it can forget them in the same step (it maps
 * over them later to revoke them, and must never do that to memory that is no longer its own).
 *
 * The library maps and unmaps with raw syscalls: its own mmap()/munmap() calls would come back
 * through the preload layer.
 *
 * Locking: mmap_lock (a leaf) protects the list of mappings. References are dropped outside
 * it.
 */
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "iommufd/iommufd_private.h"
#include "iommufd/viommu.h"
#include "lib/fail.h"
#include "lib/fdkeep.h"
#include "lib/sys.h"
#include "uiommu/uiommu.h"

#define IOMMUFD_MMAP_MAX_PAGES 64u /* the live-page bitmap of one mapping */

struct iommufd_mmap {
	struct iommufd_mmap *next;    /* mmap_list; mmap_lock */
	uintptr_t addr;               /* constant */
	size_t len;                   /* bytes, whole pages; constant */
	uint64_t live;                /* pages still mapped, bit per page; mmap_lock */
	struct iommufd_object *owner; /* a users reference */
	struct iommufd_ctx *ictx;     /* its file: a reference */
};

UIOMMU_MUTEX_DEFINE(mmap_lock); /* protects mmap_list; a leaf */
static struct iommufd_mmap *mmap_list;
static atomic_long mmap_count; /* entries of mmap_list: a lock-free "none" for the preload */

/**
 * iommufd_mmap_region_alloc() - a shared region of @len bytes (whole pages, at most 64)
 * Return: 0 with *@fdp (the memfd) and *@mapp (our own shared mapping of it, zeroed), or
 * -ENOMEM / the failing call's errno. Free with iommufd_mmap_region_free().
 */
int iommufd_mmap_region_alloc(size_t len, int *fdp, void **mapp)
{
	void *map;
	int fd, rc;

	if (WARN_ON(!len || len % uiommu_page_size ||
		    len / uiommu_page_size > IOMMUFD_MMAP_MAX_PAGES))
		return -EINVAL;
	fd = uiommu_should_fail() ? -1 : sys_memfd_create("uiommu-mmap-region", MFD_CLOEXEC);
	if (fd < 0)
		return errno && fd != -1 ? -errno : -ENOMEM;
	uiommu_fd_keep(fd);
	if (uiommu_should_fail() || ftruncate(fd, (off_t)len)) {
		rc = -ENOMEM;
		goto err_close;
	}
	map = uiommu_should_fail() ? MAP_FAILED :
				     sys_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		rc = -ENOMEM;
		goto err_close;
	}
	*fdp = fd;
	*mapp = map;
	return 0;

err_close:
	sys_close(fd);
	return rc;
}

void iommufd_mmap_region_free(int fd, void *map, size_t len)
{
	sys_munmap(map, len);
	sys_close(fd);
}

static void *iommufd_mmap_ret(int rc)
{
	errno = -rc;
	return MAP_FAILED;
}

/* The region behind @off: its owner held for the caller (iommufd_put_object()), memfd, length. */
static struct iommufd_object *iommufd_mmap_region_find(struct iommufd_ctx *ictx, uint64_t off,
						       int *fdp, size_t *lenp)
{
	struct iommufd_viommu *viommu;
	struct iommufd_object *obj;

	if (off & ((1ull << IOMMUFD_MMAP_ID_SHIFT) - 1) ||
	    (off >> IOMMUFD_MMAP_ID_SHIFT) > IOMMUFD_ID_LIMIT)
		return ERR_PTR(-ENXIO);
	obj = iommufd_get_object(ictx, (uint32_t)(off >> IOMMUFD_MMAP_ID_SHIFT),
				 IOMMUFD_OBJ_VIOMMU);
	if (IS_ERR(obj))
		return ERR_PTR(-ENXIO);
	viommu = container_of(obj, struct iommufd_viommu, obj);
	if (!viommu->region) {
		iommufd_put_object(ictx, obj);
		return ERR_PTR(-ENXIO);
	}
	*fdp = viommu->region_fd;
	*lenp = viommu->region_len;
	return obj;
}

/* Forgets the pages of [addr, addr + len) in every recorded mapping; drops emptied ones. */
static void iommufd_mmap_forget(uintptr_t addr, size_t len)
{
	struct iommufd_mmap *dead = NULL, **pos, *m;
	uintptr_t end = addr + len;

	if (!atomic_load_explicit(&mmap_count, memory_order_acquire))
		return;
	uiommu_mutex_lock(&mmap_lock);
	for (pos = &mmap_list; (m = *pos);) {
		uintptr_t s = addr > m->addr ? addr : m->addr;
		uintptr_t e = end < m->addr + m->len ? end : m->addr + m->len;

		for (; s < e; s += uiommu_page_size)
			m->live &= ~(1ull << ((s - m->addr) / uiommu_page_size));
		if (m->live) {
			pos = &m->next;
			continue;
		}
		*pos = m->next;
		m->next = dead;
		dead = m;
		atomic_fetch_sub_explicit(&mmap_count, 1, memory_order_relaxed);
	}
	uiommu_mutex_unlock(&mmap_lock);
	while ((m = dead)) {
		dead = m->next;
		/* Pairs with the references taken in uiommu_mmap(). */
		iommufd_object_unref_users(m->owner);
		iommufd_ctx_file_put(m->ictx);
		uiommu_free(m);
	}
}

/* mmap(2)'s own checks, then the region's rules: EINVAL, EPERM (executable), or 0. */
static int iommufd_mmap_check(size_t len, int prot, int flags, off_t off)
{
	if (!len || off < 0 || (uint64_t)off % uiommu_page_size)
		return -EINVAL;
	if ((flags & MAP_TYPE) != MAP_SHARED && (flags & MAP_TYPE) != MAP_SHARED_VALIDATE)
		return -EINVAL;
	if (prot & PROT_EXEC)
		return -EPERM;
	return 0;
}

/**
 * iommufd_mmap_region_dup() - for another process's mmap(2) of @ictx's fd: the same checks as
 * uiommu_mmap(), then a copy of the region's memfd (O_CLOEXEC), which it maps at offset 0.
 * That mapping holds nothing here (docs/processes.md): the vIOMMU's destroy does not wait
 * for its munmap, and the memory stays the memfd's.
 * Return: the fd, or -EINVAL / -EPERM / -ENXIO / -EMFILE.
 */
int iommufd_mmap_region_dup(struct iommufd_ctx *ictx, size_t len, int prot, int flags,
			    off_t off)
{
	struct iommufd_object *owner;
	size_t region_len;
	int region_fd, rc;

	rc = iommufd_mmap_check(len, prot, flags, off);
	if (rc)
		return rc;
	owner = iommufd_mmap_region_find(ictx, (uint64_t)off, &region_fd, &region_len);
	if (IS_ERR(owner))
		return PTR_ERR(owner);
	if ((len + uiommu_page_size - 1) / uiommu_page_size * uiommu_page_size != region_len)
		rc = -ENXIO;
	else if (uiommu_should_fail())
		rc = -EMFILE;
	else if ((rc = sys_fcntl(region_fd, F_DUPFD_CLOEXEC, 0)) < 0)
		rc = -EMFILE;
	iommufd_put_object(ictx, owner);
	return rc;
}

UIOMMU_EXPORT void *uiommu_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	struct iommufd_object *owner;
	struct iommufd_ctx *ictx;
	struct iommufd_mmap *m;
	size_t region_len;
	int region_fd, rc;
	void *p;

	/* A sub-fd that maps on its own (the VFIO device fd's BAR areas). */
	if (off >= 0 && iommufd_subfd_mmap(fd, addr, len, prot, flags, (uint64_t)off, &p))
		return p;
	ictx = iommufd_ctx_from_fd(fd);
	/* One of our other files (an access, event or dma-buf fd) has nothing to map: ENODEV. */
	if (IS_ERR(ictx))
		return iommufd_mmap_ret(PTR_ERR(ictx) == -EBADFD ? -ENODEV : PTR_ERR(ictx));
	rc = iommufd_mmap_check(len, prot, flags, off);
	if (rc)
		goto out_put_file;
	owner = iommufd_mmap_region_find(ictx, (uint64_t)off, &region_fd, &region_len);
	if (IS_ERR(owner)) {
		rc = PTR_ERR(owner);
		goto out_put_file;
	}
	if ((len + uiommu_page_size - 1) / uiommu_page_size * uiommu_page_size != region_len) {
		rc = -ENXIO;
		goto out_put_owner;
	}
	m = uiommu_zalloc(sizeof(*m));
	if (!m) {
		rc = -ENOMEM;
		goto out_put_owner;
	}
	p = uiommu_should_fail() ? (errno = ENOMEM, MAP_FAILED) :
				   sys_mmap(addr, len, prot, flags, region_fd, 0);
	if (p == MAP_FAILED) {
		rc = -errno;
		goto err_free;
	}
	/* MAP_FIXED may have replaced pages of ours. */
	iommufd_mmap_forget((uintptr_t)p, region_len);
	m->addr = (uintptr_t)p;
	m->len = region_len;
	m->live = region_len / uiommu_page_size == 64 ?
			  ~0ull : (1ull << (region_len / uiommu_page_size)) - 1;
	m->owner = owner;
	m->ictx = ictx;
	/* Pair with the puts in iommufd_mmap_forget(). */
	iommufd_object_ref_users(owner);
	iommufd_ctx_file_get(ictx);
	uiommu_mutex_lock(&mmap_lock);
	m->next = mmap_list;
	mmap_list = m;
	atomic_fetch_add_explicit(&mmap_count, 1, memory_order_release);
	uiommu_mutex_unlock(&mmap_lock);
	iommufd_put_object(ictx, owner);
	iommufd_ctx_file_put(ictx);
	return p;

err_free:
	uiommu_free(m);
out_put_owner:
	iommufd_put_object(ictx, owner);
out_put_file:
	iommufd_ctx_file_put(ictx);
	return iommufd_mmap_ret(rc);
}

/* The layer above that maps on its own (iommufd_mmap_owner_register()); set once. */
static _Atomic(const struct iommufd_mmap_owner *) mmap_owner;

int iommufd_mmap_owner_register(const struct iommufd_mmap_owner *owner)
{
	const struct iommufd_mmap_owner *none = NULL;

	if (!atomic_compare_exchange_strong(&mmap_owner, &none, owner) && none != owner)
		return -EBUSY;
	return 0;
}

bool iommufd_mmap_owner_claims(uintptr_t start, uintptr_t end)
{
	const struct iommufd_mmap_owner *owner = atomic_load(&mmap_owner);

	return owner && owner->claims(start, end);
}

UIOMMU_EXPORT int uiommu_munmap(void *addr, size_t len)
{
	const struct iommufd_mmap_owner *owner = atomic_load(&mmap_owner);
	int rc;

	if (owner && owner->claims((uintptr_t)addr, (uintptr_t)addr + len)) {
		rc = owner->munmap(addr, len); /* unmaps all of it, and forgets its own */
		if (rc) {
			errno = -rc;
			return -1;
		}
	} else if (sys_munmap(addr, len)) {
		return -1;
	}
	iommufd_mmap_forget((uintptr_t)addr, (len + uiommu_page_size - 1) & ~(uiommu_page_size - 1));
	return 0;
}

UIOMMU_EXPORT bool uiommu_mmap_claims(const void *addr, size_t len)
{
	const struct iommufd_mmap_owner *owner = atomic_load(&mmap_owner);
	uintptr_t s = (uintptr_t)addr, e = s + len;
	struct iommufd_mmap *m;
	bool found = false;

	if (owner && owner->claims(s, e))
		return true;
	if (!atomic_load_explicit(&mmap_count, memory_order_acquire))
		return false;
	uiommu_mutex_lock(&mmap_lock);
	for (m = mmap_list; m && !found; m = m->next)
		found = s < m->addr + m->len && m->addr < e;
	uiommu_mutex_unlock(&mmap_lock);
	return found;
}
