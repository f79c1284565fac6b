// SPDX-License-Identifier: MIT
/*
 * Dirty tracking of paging HWPTs: IOMMU_HWPT_SET_DIRTY_TRACKING, IOMMU_HWPT_GET_DIRTY_BITMAP,
 * and IOMMU_TEST_CMD's DIRTY op, which plays the hardware on the selftest mock.
 *
 * The domain's driver keeps the dirty state in its page table (domain->dirty_ops); iommufd
 * turns it on and off and reads it into the user's bitmap. A bitmap of GET_DIRTY_BITMAP covers
 * [iova, iova + length) in units of page_size: bit n (word n / 64, bit n % 64, little-endian, so
 * byte n / 8, bit n % 8) stands for iova + n * page_size. The driver reports whole dirty leaves
 * (struct iommu_dirty_bitmap's record()), and every unit a dirty leaf meets is set, so a dirty
 * 1 MiB leaf sets 512 bits of a 2 KiB bitmap. Bits are only ever set, never cleared, as the
 * kernel does: the caller starts from a zeroed bitmap.
 *
 * Clearing (no NO_CLEAR) ends with an IOTLB sync of every range the driver reported, as the
 * kernel's iommu_read_and_clear_dirty(): an IOTLB entry filled while a leaf's bit was set lets
 * the device's next write through without setting it again.
 *
 * The user's bitmap may sit at any address (the selftest uses odd offsets). It is written
 * through a window of bytes: the window is read from the user, bits are set in it, and it is
 * written back when a record falls outside it or at the end. Records come in IOVA order, so
 * each byte is read and written back at most once per call.
 *
 * Checks, in the kernel's order: flags and __reserved (EOPNOTSUPP), the HWPT (ENOENT), then the
 * range: EOVERFLOW for a wrapping one, EINVAL for an IOVA or end off the IOAS alignment or off
 * page_size (which must be a power of two), then the driver: EOPNOTSUPP without dirty ops,
 * EINVAL while tracking is off.
 *
 * Locking: the IOAS's iova_rwsem is held for read across a read of the bitmap (the kernel's
 * order; the driver's table lock nests inside). No lock is held across an ioctl's reply.
 */
#include <errno.h>
#include <string.h>

#include "drivers/mock/selftest_mock.h"
#include "iommu/iommu.h"
#include "iommufd/iommufd_private.h"
#include "lib/fail.h"

#define DIRTY_WINDOW 4096u /* bytes of user bitmap in one window */

struct iommufd_dirty_bitmap {
	struct iommu_dirty_bitmap dirty;
	struct uiommu_mm *mm;
	uint64_t iova;       /* bit 0 */
	uint64_t last;       /* the last IOVA covered */
	unsigned int pgshift;
	uint64_t data;       /* the user bitmap */
	uint64_t nbytes;     /* bytes the bitmap covers */
	uint64_t win_start;  /* first byte in the window */
	uint64_t win_len;    /* 0: no window loaded */
	unsigned char win[DIRTY_WINDOW];
	int rc;              /* the first error; later records are dropped */
};

static int iommufd_dirty_flush(struct iommufd_dirty_bitmap *b)
{
	int rc = 0;

	if (b->win_len)
		rc = uiommu_copy_to_user(b->mm, b->data + b->win_start, b->win, b->win_len);
	b->win_len = 0;
	return rc;
}

/* Makes byte @byte of the bitmap part of the window. */
static int iommufd_dirty_load(struct iommufd_dirty_bitmap *b, uint64_t byte)
{
	int rc;

	if (b->win_len && byte >= b->win_start && byte < b->win_start + b->win_len)
		return 0;
	rc = iommufd_dirty_flush(b);
	if (rc)
		return rc;
	b->win_start = byte;
	b->win_len = b->nbytes - byte < DIRTY_WINDOW ? b->nbytes - byte : DIRTY_WINDOW;
	rc = uiommu_copy_from_user(b->mm, b->win, b->data + byte, b->win_len);
	if (rc)
		b->win_len = 0;
	return rc;
}

static void iommufd_dirty_record(struct iommu_dirty_bitmap *dirty, uint64_t iova, uint64_t length)
{
	struct iommufd_dirty_bitmap *b = container_of(dirty, struct iommufd_dirty_bitmap, dirty);
	uint64_t first = iova < b->iova ? b->iova : iova, last = iova + length - 1, bit;

	if (b->rc || !length)
		return;
	if (last < iova || last > b->last)
		last = b->last;
	if (first > last)
		return;
	for (bit = (first - b->iova) >> b->pgshift; bit <= (last - b->iova) >> b->pgshift; bit++) {
		b->rc = iommufd_dirty_load(b, bit / 8);
		if (b->rc)
			return;
		b->win[bit / 8 - b->win_start] |= (unsigned char)(1u << (bit % 8));
	}
}

/* The kernel's range checks for a bitmap over @iopt. */
static int iommufd_check_dirty_range(struct io_pagetable *iopt, uint64_t iova, uint64_t length,
				     uint64_t page_size)
{
	uint64_t last, align;

	if (!length || check_add_overflow(iova, length - 1, &last) || last == UINT64_MAX)
		return length ? -EOVERFLOW : -EINVAL;
	uiommu_down_read(&iopt->iova_rwsem);
	align = iopt->iova_alignment;
	uiommu_up_read(&iopt->iova_rwsem);
	if ((iova & (align - 1)) || ((last + 1) & (align - 1)))
		return -EINVAL;
	if (!page_size || (page_size & (page_size - 1)))
		return -EINVAL;
	if ((iova & (page_size - 1)) || ((last + 1) & (page_size - 1)))
		return -EINVAL;
	return 0;
}

int iommufd_hwpt_get_dirty_bitmap(struct iommufd_ucmd *ucmd)
{
	struct iommu_hwpt_get_dirty_bitmap *cmd = ucmd->cmd;
	struct iommufd_hwpt_paging *hwpt;
	struct iommu_iotlb_gather gather;
	struct iommufd_dirty_bitmap *b;
	struct iommu_domain *domain;
	struct io_pagetable *iopt;
	uint64_t nbits;
	int rc;

	if (cmd->flags & ~IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR)
		return -EOPNOTSUPP;
	if (cmd->__reserved)
		return -EOPNOTSUPP;
	hwpt = iommufd_get_hwpt_paging(ucmd->ictx, cmd->hwpt_id);
	if (IS_ERR(hwpt))
		return PTR_ERR(hwpt);
	domain = hwpt->common.domain;
	iopt = &hwpt->ioas->iopt;
	rc = iommufd_check_dirty_range(iopt, cmd->iova, cmd->length, cmd->page_size);
	if (rc)
		goto out_put;
	if (!domain->dirty_ops) {
		rc = -EOPNOTSUPP;
		goto out_put;
	}
	b = uiommu_zalloc(sizeof(*b));
	if (!b) {
		rc = -ENOMEM;
		goto out_put;
	}
	iommu_iotlb_gather_init(&gather);
	b->dirty.record = iommufd_dirty_record;
	b->dirty.gather = &gather;
	b->mm = ucmd->mm;
	b->iova = cmd->iova;
	b->last = cmd->iova + cmd->length - 1;
	b->pgshift = (unsigned int)__builtin_ctzll(cmd->page_size);
	b->data = cmd->data;
	nbits = cmd->length >> b->pgshift;
	b->nbytes = nbits / 8 + !!(nbits % 8);

	uiommu_down_read(&iopt->iova_rwsem);
	rc = domain->dirty_ops->read_and_clear_dirty(
		domain, cmd->iova, cmd->length,
		(cmd->flags & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR) ? IOMMU_DIRTY_NO_CLEAR : 0,
		&b->dirty);
	/* What was cleared may sit in an IOTLB with its dirty bit: drop it (see iommu.h). */
	if (!(cmd->flags & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR))
		iommu_iotlb_sync(domain, &gather);
	uiommu_up_read(&iopt->iova_rwsem);
	if (!rc)
		rc = b->rc;
	if (!rc)
		rc = iommufd_dirty_flush(b);
	uiommu_free(b);
out_put:
	iommufd_put_object(ucmd->ictx, &hwpt->common.obj);
	return rc;
}

int iommufd_hwpt_set_dirty_tracking(struct iommufd_ucmd *ucmd)
{
	struct iommu_hwpt_set_dirty_tracking *cmd = ucmd->cmd;
	struct iommufd_hwpt_paging *hwpt;
	struct iommu_domain *domain;
	int rc;

	if (cmd->flags & ~IOMMU_HWPT_DIRTY_TRACKING_ENABLE)
		return -EOPNOTSUPP;
	if (cmd->__reserved)
		return -EOPNOTSUPP;
	hwpt = iommufd_get_hwpt_paging(ucmd->ictx, cmd->hwpt_id);
	if (IS_ERR(hwpt))
		return PTR_ERR(hwpt);
	domain = hwpt->common.domain;
	if (!domain->dirty_ops)
		rc = -EOPNOTSUPP;
	else if (uiommu_should_fail())
		rc = -ENOMEM;
	else
		rc = domain->dirty_ops->set_dirty_tracking(
			domain, cmd->flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE);
	iommufd_put_object(ucmd->ictx, &hwpt->common.obj);
	return rc;
}

#ifdef UIOMMU_IOMMUFD_TEST
/**
 * iommufd_test_dirty() - IOMMU_TEST_CMD DIRTY: mark dirty every IOVA whose bit is set in the
 * user's bitmap, in mock paging HWPT @cmd->id; out_nr_dirty counts those that are mapped.
 */
int iommufd_test_dirty(struct iommufd_ucmd *ucmd)
{
	struct iommu_test_cmd *cmd = ucmd->cmd;
	uint64_t iova = cmd->dirty.iova, length = cmd->dirty.length;
	uint64_t page_size = cmd->dirty.page_size, nbits, i, end, count = 0;
	struct iommufd_hwpt_paging *hwpt;
	struct iommu_domain *domain;
	unsigned char chunk[512];
	int rc = 0;

	if (!page_size || !length || iova % page_size || length % page_size || !cmd->dirty.uptr ||
	    check_add_overflow(iova, length, &end))
		return -EINVAL;
	hwpt = iommufd_get_hwpt_paging(ucmd->ictx, cmd->id);
	if (IS_ERR(hwpt))
		return PTR_ERR(hwpt);
	domain = hwpt->common.domain;
	if (!mock_selftest_domain_is(domain)) {
		rc = -EINVAL;
		goto out_put;
	}
	/* Tracking must be on (a read that reports nowhere and clears nothing tells). */
	rc = domain->dirty_ops->read_and_clear_dirty(domain, iova, page_size, IOMMU_DIRTY_NO_CLEAR,
						     NULL);
	if (rc)
		goto out_put;
	nbits = length / page_size;
	for (i = 0; i < nbits; i++) {
		int marked;

		if (i % (8 * sizeof(chunk)) == 0) {
			uint64_t left = (nbits - i) / 8 + !!((nbits - i) % 8);

			rc = uiommu_copy_from_user(ucmd->mm, chunk, cmd->dirty.uptr + i / 8,
						   left < sizeof(chunk) ? left : sizeof(chunk));
			if (rc)
				goto out_put;
		}
		if (!(chunk[(i / 8) % sizeof(chunk)] & (1u << (i % 8))))
			continue;
		marked = mock_selftest_mark_dirty(domain, iova + i * page_size);
		if (marked < 0) {
			rc = marked;
			goto out_put;
		}
		count += (uint64_t)marked;
	}
	cmd->dirty.out_nr_dirty = count;
	rc = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
out_put:
	iommufd_put_object(ucmd->ictx, &hwpt->common.obj);
	return rc;
}

#endif /* UIOMMU_IOMMUFD_TEST */
