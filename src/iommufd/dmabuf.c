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
 * Revocation stops new maps only. The kernel also takes a revoked buffer out of the domains
 * that map it (its importer's move_notify) and puts it back on un-revoke; uiommu keeps the
 * existing translations (docs/status.md lists the difference). A domain attached while the
 * buffer is revoked fills from the memfd as usual, so HWPT allocation and attach succeed, as
 * they do in the kernel.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

#include "iommufd/dmabuf.h"
#include "iommufd/iommufd_private.h"
#include "lib/fail.h"

/* The kernel's test buffer is at most 512 pages. */
#define IOMMUFD_DMABUF_MAX_PAGES 512u

struct iommufd_dmabuf {
	atomic_int refs;     /* the fd, and each iopt_pages made from it */
	atomic_bool revoked; /* DMABUF_REVOKE; read by MAP_FILE */
	int memfd;           /* the memory; ours */
	uint64_t length;     /* bytes, a multiple of the page size */
};

static void iommufd_dmabuf_release(void *priv)
{
	iommufd_dmabuf_put(priv);
}

static const struct iommufd_subfd_ops iommufd_dmabuf_fops = {
	.release = iommufd_dmabuf_release,
};

void iommufd_dmabuf_put(struct iommufd_dmabuf *dmabuf)
{
	if (atomic_fetch_sub_explicit(&dmabuf->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (dmabuf->memfd >= 0)
		close(dmabuf->memfd);
	uiommu_free(dmabuf);
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
 * Return: 0, or what the kernel's dma_buf_get() answers for an fd that is not a dma-buf:
 * -EBADF for an fd that is not open, -EINVAL for any other file.
 */
int iommufd_test_dmabuf_revoke(int fd, bool revoked)
{
	struct iommufd_dmabuf *dmabuf = iommufd_dmabuf_get(fd);

	if (!dmabuf)
		return fcntl(fd, F_GETFD) < 0 ? -EBADF : -EINVAL;
	atomic_store_explicit(&dmabuf->revoked, revoked, memory_order_release);
	iommufd_dmabuf_put(dmabuf);
	return 0;
}
