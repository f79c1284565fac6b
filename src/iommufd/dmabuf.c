// SPDX-License-Identifier: MIT
/*
 * The selftest's dma-buf: DMABUF_GET, DMABUF_REVOKE, and what MAP_FILE does with one.
 *
 * The kernel's selftest exports a small dma-buf over kernel memory, hands its fd back as the
 * ioctl's return value, and can "revoke" it, as a VFIO device does when its BAR goes away.
 * Here a dma-buf is a struct iommufd_dmabuf: a memfd of the rounded-up length (the memory),
 * a revoked flag, and a reference count. Its fd is a sub-fd (file.c): a real fd of the caller
 * that closes like any other, whose last close drops the fd's reference. Each iopt_pages made
 * from it holds another reference (and its own duplicate of the memfd), so a close while a
 * mapping uses the buffer only ends the fd; the buffer goes with the last mapping.
 *
 * MAP_FILE recognises one by looking its fd up among the sub-fds of this kind; anything else
 * takes the plain file path. The checks are the kernel's: length 0 or a range past the
 * buffer, EINVAL; a revoked buffer, ENODEV. After the checks the buffer is mapped exactly as a
 * memfd is (pages.c), so pinning and domain fill need nothing new.
 *
 * Revocation is the kernel's: the buffer's memory is gone for the importers. Every iopt_pages
 * made from the buffer is on its list (pages_list); DMABUF_REVOKE marks each one revoked for
 * good and takes it out of every domain that maps it (iopt_pages_dmabuf_revoke()), as the
 * kernel's importer does at move_notify. The areas stay in their IOAS and can be unmapped; a
 * domain attached later does not map a revoked area (HWPT allocation and attach succeed, with
 * nothing behind those IOVAs); MAP_FILE of a revoked buffer is ENODEV. Un-revoking lets new
 * maps in; the areas revoked before stay empty until they are unmapped and mapped again, as in
 * the kernel, where un-revoke does not reach importers that were invalidated.
 *
 * Locking: lock protects pages_list and the writes of revoked; it nests outside each pages'
 * mutex (revocation walks the list under it) and inside the IOAS locks (an area freed under
 * iova_rwsem puts its pages, which leave the list).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drivers/mock/selftest_mock.h"
#include "iommu/iommu.h"
#include "iommufd/dmabuf.h"
#include "iommufd/io_pagetable.h"
#include "iommufd/iommufd_private.h"
#include "lib/fail.h"
#include "lib/fdkeep.h"

/* The kernel's test buffer is at most 512 pages. */
#define IOMMUFD_DMABUF_MAX_PAGES 512u

struct iommufd_dmabuf {
	atomic_int refs;     /* the fd, and each iopt_pages made from it */
	struct uiommu_mutex lock; /* protects pages_list, writes of revoked; after iova_rwsem, before
				     pages->mutex */
	atomic_bool revoked; /* DMABUF_REVOKE; read by MAP_FILE */
	struct iopt_pages *pages_list; /* the pages made from it (iopt_pages::dmabuf_next) */
	int memfd;           /* the memory; ours */
	uint64_t length;     /* bytes, a multiple of the page size */
};

static void iommufd_dmabuf_release(void *priv)
{
	iommufd_dmabuf_put(priv);
}

static const struct iommufd_subfd_ops iommufd_dmabuf_fops = {
	.release = iommufd_dmabuf_release,
	.name = "/dmabuf:", /* the kernel's dma-buf files, without a name set */
};

void iommufd_dmabuf_put(struct iommufd_dmabuf *dmabuf)
{
	if (atomic_fetch_sub_explicit(&dmabuf->refs, 1, memory_order_acq_rel) != 1)
		return;
	/* Each pages on the list holds a reference: the list is empty. */
	WARN_ON(dmabuf->pages_list);
	if (dmabuf->memfd >= 0) {
		uiommu_fd_unkeep(dmabuf->memfd);
		close(dmabuf->memfd);
	}
	uiommu_mutex_destroy(&dmabuf->lock);
	uiommu_free(dmabuf);
}

/**
 * iommufd_dmabuf_attach_pages() - list @pages, made from @dmabuf, for revocation
 * Checked again under the lock, so that a revoke racing the MAP_FILE either sees the pages or
 * refuses them.
 * Return: 0, or -ENODEV while the buffer is revoked.
 */
int iommufd_dmabuf_attach_pages(struct iommufd_dmabuf *dmabuf, struct iopt_pages *pages)
{
	int rc = 0;

	uiommu_mutex_lock(&dmabuf->lock);
	if (atomic_load_explicit(&dmabuf->revoked, memory_order_relaxed)) {
		rc = -ENODEV;
		goto out_unlock;
	}
	pages->dmabuf_next = dmabuf->pages_list;
	if (pages->dmabuf_next)
		pages->dmabuf_next->dmabuf_pprev = &pages->dmabuf_next;
	pages->dmabuf_pprev = &dmabuf->pages_list;
	dmabuf->pages_list = pages;
out_unlock:
	uiommu_mutex_unlock(&dmabuf->lock);
	return rc;
}

/* Takes @pages off @dmabuf's list, if it is on it. */
void iommufd_dmabuf_detach_pages(struct iommufd_dmabuf *dmabuf, struct iopt_pages *pages)
{
	uiommu_mutex_lock(&dmabuf->lock);
	if (pages->dmabuf_pprev) {
		*pages->dmabuf_pprev = pages->dmabuf_next;
		if (pages->dmabuf_next)
			pages->dmabuf_next->dmabuf_pprev = pages->dmabuf_pprev;
		pages->dmabuf_pprev = NULL;
		pages->dmabuf_next = NULL;
	}
	uiommu_mutex_unlock(&dmabuf->lock);
}

/**
 * iommufd_dmabuf_get() - the dma-buf behind @fd, with a reference (iommufd_dmabuf_put())
 * Return: it, or NULL when @fd is not one of our dma-bufs.
 */
struct iommufd_dmabuf *iommufd_dmabuf_get(int fd)
{
	struct iommufd_dmabuf *dmabuf;
	struct iommufd_file *file;

	dmabuf = iommufd_subfd_get(fd, &iommufd_dmabuf_fops, &file);
	if (IS_ERR(dmabuf))
		return NULL;
	atomic_fetch_add_explicit(&dmabuf->refs, 1, memory_order_relaxed);
	iommufd_subfd_put(file);
	return dmabuf;
}

/**
 * iommufd_dmabuf_check_map() - may [start, start + length) of @dmabuf be mapped now?
 * Return: 0, -EINVAL for length 0 or a range past the buffer, -EOVERFLOW for a range that
 * wraps, -ENODEV while the buffer is revoked.
 */
int iommufd_dmabuf_check_map(struct iommufd_dmabuf *dmabuf, uint64_t start, uint64_t length)
{
	uint64_t last;

	if (!length)
		return -EINVAL;
	if (check_add_overflow(start, length - 1, &last))
		return -EOVERFLOW;
	if (last >= dmabuf->length)
		return -EINVAL;
	if (atomic_load_explicit(&dmabuf->revoked, memory_order_acquire))
		return -ENODEV;
	return 0;
}

/* The memfd that holds @dmabuf's memory; valid while the reference is held. */
int iommufd_dmabuf_memfd(struct iommufd_dmabuf *dmabuf)
{
	return dmabuf->memfd;
}

#ifdef UIOMMU_IOMMUFD_TEST
/**
 * iommufd_test_dmabuf_get() - DMABUF_GET: a new buffer of @length bytes rounded up to pages
 * Return: the new fd (close-on-exec when @open_flags asks), or -EINVAL for a length of 0 or
 * above 512 pages, -ENOMEM, -EMFILE.
 */
int iommufd_test_dmabuf_get(struct iommufd_ucmd *ucmd, uint32_t length, uint32_t open_flags)
{
	struct iommufd_dmabuf *dmabuf;
	struct iommufd_file *file;
	uint64_t len;
	int fd, rc;

	len = ((uint64_t)length + uiommu_page_size - 1) & ~(uint64_t)(uiommu_page_size - 1);
	if (!len || len > IOMMUFD_DMABUF_MAX_PAGES * uiommu_page_size)
		return -EINVAL;

	dmabuf = uiommu_zalloc(sizeof(*dmabuf));
	if (!dmabuf)
		return -ENOMEM;
	atomic_init(&dmabuf->refs, 1);
	atomic_init(&dmabuf->revoked, false);
	uiommu_mutex_init(&dmabuf->lock);
	dmabuf->length = len;
	dmabuf->memfd = -1;
	/* The fd first, so that it is the lowest free number, as the kernel's is. */
	file = iommufd_subfd_alloc(ucmd->ictx, &iommufd_dmabuf_fops, dmabuf, &fd);
	if (IS_ERR(file)) {
		rc = PTR_ERR(file);
		goto err_put;
	}
	dmabuf->memfd = uiommu_should_fail() ? -1 : memfd_create("uiommu-dmabuf", MFD_CLOEXEC);
	if (dmabuf->memfd < 0) {
		rc = -ENOMEM;
		goto err_abort;
	}
	uiommu_fd_keep(dmabuf->memfd);
	if (uiommu_should_fail() || ftruncate(dmabuf->memfd, (off_t)len)) {
		rc = -ENOMEM;
		goto err_abort;
	}
	/* Sub-fds are born close-on-exec; F_SETFD on our own open fd cannot fail. */
	if (!(open_flags & O_CLOEXEC))
		fcntl(fd, F_SETFD, 0);
	/* The fd's reference is the one we hold. */
	iommufd_subfd_install(file, fd);
	return fd;

err_abort:
	iommufd_subfd_abort(file, fd);
err_put:
	iommufd_dmabuf_put(dmabuf);
	return rc;
}

/**
 * iommufd_test_dmabuf_revoke() - DMABUF_REVOKE: set or clear @fd's revoked state
 * Revoking takes every mapping of the buffer out of every domain; un-revoking only lets new
 * maps in. Never fails for a dma-buf.
 * Return: 0, or what the kernel's dma_buf_get() answers for an fd that is not a dma-buf:
 * -EBADF for an fd that is not open, -EINVAL for any other file.
 */
int iommufd_test_dmabuf_revoke(int fd, bool revoked)
{
	struct iommufd_dmabuf *dmabuf = iommufd_dmabuf_get(fd);
	struct iopt_pages *pages;

	if (!dmabuf)
		return fcntl(fd, F_GETFD) < 0 ? -EBADF : -EINVAL;
	uiommu_mutex_lock(&dmabuf->lock);
	atomic_store_explicit(&dmabuf->revoked, revoked, memory_order_release);
	if (revoked)
		for (pages = dmabuf->pages_list; pages; pages = pages->dmabuf_next)
			iopt_pages_dmabuf_revoke(pages);
	uiommu_mutex_unlock(&dmabuf->lock);
	iommufd_dmabuf_put(dmabuf);
	return 0;
}

/**
 * iommufd_test_md_check_dmabuf() - MD_CHECK_DMABUF: does each mock page of [iova, iova +
 * length) in mock HWPT @hwpt_id translate to the dma-buf @fd from byte @offset on?
 * A translation goes to a host address (the library's mapping of the buffer's memfd), so it is
 * compared by the file page it shows (mm/maps.c).
 * Return: 0; -ENOENT for the HWPT; -EINVAL for a HWPT not of the mock, a range not aligned to
 * its page or past the buffer, or a page that does not translate there (none does once the
 * buffer was revoked); -EBADF/-EINVAL for an fd that is no dma-buf; -ENOMEM, -EIO.
 */
int iommufd_test_md_check_dmabuf(struct iommufd_ucmd *ucmd, uint32_t hwpt_id, int fd,
				 uint64_t iova, uint64_t length, uint64_t offset)
{
	struct uiommu_maps *maps = NULL;
	struct iommufd_hwpt_paging *hwpt;
	struct iommufd_dmabuf *dmabuf;
	struct iommu_domain *domain;
	uint64_t end, i, psize;
	struct stat st;
	int rc;

	hwpt = iommufd_get_hwpt_paging(ucmd->ictx, hwpt_id);
	if (IS_ERR(hwpt))
		return PTR_ERR(hwpt);
	domain = hwpt->common.domain;
	rc = -EINVAL;
	if (!mock_selftest_domain_is(domain))
		goto out_put_hwpt;
	dmabuf = iommufd_dmabuf_get(fd);
	if (!dmabuf) {
		rc = fcntl(fd, F_GETFD) < 0 ? -EBADF : -EINVAL;
		goto out_put_hwpt;
	}
	psize = domain->pgsize_bitmap & -domain->pgsize_bitmap;
	if ((iova | length | offset) % psize || check_add_overflow(offset, length, &end) ||
	    end > dmabuf->length)
		goto out_put_dmabuf;
	rc = -EIO;
	if (uiommu_should_fail() || fstat(dmabuf->memfd, &st))
		goto out_put_dmabuf;
	for (i = 0; i < length; i += psize) {
		phys_addr_t got = iommu_iova_to_phys(domain, iova + i);
		uint64_t dev, ino, foff;

		rc = -EINVAL;
		if (!got)
			break;
		if (!maps) {
			rc = uiommu_maps_load(&maps);
			if (rc)
				break;
		}
		rc = -EINVAL;
		if (!uiommu_maps_file_of(maps, got, &dev, &ino, &foff) ||
		    dev != uiommu_maps_dev(st.st_dev) || ino != st.st_ino || foff != offset + i)
			break;
		rc = 0;
	}
	uiommu_maps_free(maps);
out_put_dmabuf:
	iommufd_dmabuf_put(dmabuf);
out_put_hwpt:
	iommufd_put_object(ucmd->ictx, &hwpt->common.obj);
	return rc;
}

#endif /* UIOMMU_IOMMUFD_TEST */
