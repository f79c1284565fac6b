// SPDX-License-Identifier: MIT
/*
 * VFIO type1 container compatibility on the iommufd fd: a VMM written for /dev/vfio/vfio can
 * drive an IOAS with the VFIO_IOMMU_* ioctls. The IOAS used is the context's "compat IOAS",
 * chosen with IOMMU_VFIO_IOAS; no VFIO ioctl creates one (ENODEV without it).
 *
 * Type1 (v1) lets an unmap cut pieces out of a larger mapping: SET_IOMMU(TYPE1) turns large
 * pages off, and UNMAP_DMA then first splits the areas at both ends of the range. Type1v2 keeps
 * the iommufd rule that an unmap must cover whole areas (ENOENT otherwise).
 *
 * The VFIO structs are read through the caller's address space like every other argument. The
 * ioctl numbers carry no size, so each struct's known prefix is read and argsz checked.
 */
#include <errno.h>
#include <string.h>

#include "iommufd/iommufd_private.h"
#include "lib/fail.h"
#include "uiommu/vfio_compat.h"

static struct iommufd_ioas *iommufd_get_compat_ioas(struct iommufd_ctx *ictx)
{
	struct iommufd_object *obj;
	uint32_t id;

	uiommu_mutex_lock(&ictx->objects_lock);
	if (!ictx->vfio_ioas) {
		uiommu_mutex_unlock(&ictx->objects_lock);
		return ERR_PTR(-ENODEV);
	}
	id = atomic_load_explicit(&ictx->vfio_ioas->obj.id, memory_order_relaxed);
	uiommu_mutex_unlock(&ictx->objects_lock);
	/* If it was destroyed meanwhile the lookup fails, which is ENODEV for us. */
	obj = iommufd_get_object(ictx, id, IOMMUFD_OBJ_IOAS);
	if (IS_ERR(obj))
		return ERR_PTR(-ENODEV);
	return container_of(obj, struct iommufd_ioas, obj);
}

/**
 * iommufd_vfio_compat_ioas_create() - make the context's compat IOAS if it has none, as a VFIO
 * group's SET_CONTAINER does with an iommufd (the kernel's function of the same name).
 * Return: 0 (also when one exists already), -ENOMEM.
 */
int iommufd_vfio_compat_ioas_create(struct iommufd_ctx *ictx)
{
	struct iommufd_ioas *ioas;

	ioas = iommufd_ioas_alloc(ictx);
	if (IS_ERR(ioas))
		return PTR_ERR(ioas);
	uiommu_mutex_lock(&ictx->objects_lock);
	if (ictx->vfio_ioas) {
		/* Somebody has one (a racing SET_CONTAINER, or IOMMU_VFIO_IOAS): keep theirs. */
		uiommu_mutex_unlock(&ictx->objects_lock);
		iommufd_object_abort_and_destroy(ictx, &ioas->obj);
		return 0;
	}
	ictx->vfio_ioas = ioas;
	uiommu_mutex_unlock(&ictx->objects_lock);
	iommufd_object_finalize(ictx, &ioas->obj);
	return 0;
}

/**
 * iommufd_vfio_compat_ioas_get_id() - the ID of the context's compat IOAS
 * Return: 0 with *@ioas_id set, -ENODEV when there is none.
 */
int iommufd_vfio_compat_ioas_get_id(struct iommufd_ctx *ictx, uint32_t *ioas_id)
{
	struct iommufd_ioas *ioas = iommufd_get_compat_ioas(ictx);

	if (IS_ERR(ioas))
		return PTR_ERR(ioas);
	*ioas_id = atomic_load_explicit(&ioas->obj.id, memory_order_relaxed);
	iommufd_put_object(ictx, &ioas->obj);
	return 0;
}

int iommufd_vfio_ioas(struct iommufd_ucmd *ucmd)
{
	struct iommu_vfio_ioas *cmd = ucmd->cmd;
	struct iommufd_ctx *ictx = ucmd->ictx;
	struct iommufd_ioas *ioas;

	if (cmd->__reserved)
		return -EOPNOTSUPP;
	switch (cmd->op) {
	case IOMMU_VFIO_IOAS_GET:
		ioas = iommufd_get_compat_ioas(ictx);
		if (IS_ERR(ioas))
			return PTR_ERR(ioas);
		cmd->ioas_id = atomic_load_explicit(&ioas->obj.id, memory_order_relaxed);
		iommufd_put_object(ictx, &ioas->obj);
		return iommufd_ucmd_respond(ucmd, sizeof(*cmd));
	case IOMMU_VFIO_IOAS_SET:
		ioas = iommufd_get_ioas(ictx, cmd->ioas_id);
		if (IS_ERR(ioas))
			return PTR_ERR(ioas);
		uiommu_mutex_lock(&ictx->objects_lock);
		ictx->vfio_ioas = ioas;
		uiommu_mutex_unlock(&ictx->objects_lock);
		iommufd_put_object(ictx, &ioas->obj);
		return 0;
	case IOMMU_VFIO_IOAS_CLEAR:
		uiommu_mutex_lock(&ictx->objects_lock);
		ictx->vfio_ioas = NULL;
		uiommu_mutex_unlock(&ictx->objects_lock);
		return 0;
	default:
		return -EOPNOTSUPP;
	}
}

static int iommufd_vfio_check_extension(struct iommufd_ctx *ictx, unsigned long type)
{
	struct iommufd_ioas *ioas;

	switch (type) {
	case VFIO_TYPE1_IOMMU:
	case VFIO_TYPE1v2_IOMMU:
	case VFIO_UNMAP_ALL:
		return 1;
	case VFIO_DMA_CC_IOMMU:
		/* Coherent while no non-coherent domain is attached: always, until devices exist. */
		ioas = iommufd_get_compat_ioas(ictx);
		if (IS_ERR(ioas))
			return PTR_ERR(ioas);
		iommufd_put_object(ictx, &ioas->obj);
		return 1;
	default:
		return 0;
	}
}

static int iommufd_vfio_set_iommu(struct iommufd_ctx *ictx, unsigned long type)
{
	struct iommufd_ioas *ioas;
	int rc = 0;

	if (type != VFIO_TYPE1_IOMMU && type != VFIO_TYPE1v2_IOMMU)
		return -EINVAL;
	ioas = iommufd_get_compat_ioas(ictx);
	if (IS_ERR(ioas))
		return PTR_ERR(ioas);
	/* Type1 v1 may unmap any page of a mapping, so areas must split on page boundaries. */
	if (type == VFIO_TYPE1_IOMMU)
		rc = iopt_disable_large_pages(&ioas->iopt);
	iommufd_put_object(ictx, &ioas->obj);
	return rc;
}

static int iommufd_vfio_map_dma(struct iommufd_ctx *ictx, struct uiommu_mm *mm, uint64_t arg)
{
	const uint32_t supported = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
	struct vfio_iommu_type1_dma_map map;
	struct iommufd_ioas *ioas;
	int iommu_prot = 0;
	uint64_t iova;
	int rc;

	rc = uiommu_copy_from_user(mm, &map, arg, offsetofend(struct vfio_iommu_type1_dma_map, size));
	if (rc)
		return rc;
	if (map.argsz < offsetofend(struct vfio_iommu_type1_dma_map, size) || (map.flags & ~supported))
		return -EINVAL;
	if (map.flags & VFIO_DMA_MAP_FLAG_READ)
		iommu_prot |= IOMMU_READ;
	if (map.flags & VFIO_DMA_MAP_FLAG_WRITE)
		iommu_prot |= IOMMU_WRITE;
	ioas = iommufd_get_compat_ioas(ictx);
	if (IS_ERR(ioas))
		return PTR_ERR(ioas);
	iova = map.iova;
	rc = iopt_map_user_pages(&ioas->iopt, mm, &iova, map.vaddr, map.size, iommu_prot,
				 ictx->account_mode == IOPT_PAGES_ACCOUNT_MM ? IOPT_ACCOUNT_MM : 0);
	iommufd_put_object(ictx, &ioas->obj);
	return rc;
}

static int iommufd_vfio_unmap_dma(struct iommufd_ctx *ictx, struct uiommu_mm *mm, uint64_t arg)
{
	const size_t len = offsetofend(struct vfio_iommu_type1_dma_unmap, size);
	struct vfio_iommu_type1_dma_unmap unmap;
	struct iommufd_ioas *ioas;
	uint64_t unmapped = 0;
	int rc, wrc;

	rc = uiommu_copy_from_user(mm, &unmap, arg, len);
	if (rc)
		return rc;
	if (unmap.argsz < len || (unmap.flags & ~VFIO_DMA_UNMAP_FLAG_ALL))
		return -EINVAL;
	ioas = iommufd_get_compat_ioas(ictx);
	if (IS_ERR(ioas))
		return PTR_ERR(ioas);
	/* The size is written back after the unmap, which cannot be undone: check first. */
	rc = uiommu_copy_to_user(mm, arg, &unmap, len);
	if (rc)
		goto out_put;

	if (unmap.flags & VFIO_DMA_UNMAP_FLAG_ALL) {
		if (unmap.iova || unmap.size) {
			rc = -EINVAL;
			goto out_put;
		}
		rc = iopt_unmap_all(&ioas->iopt, &unmapped);
	} else {
		if (iopt_large_pages_disabled(&ioas->iopt)) {
			uint64_t cuts[2], end;
			unsigned int n = 0;

			/* Make the range's ends area boundaries; a range past the top has no end. */
			if (unmap.size && !check_add_overflow(unmap.iova, unmap.size, &end))
				cuts[n++] = end;
			if (unmap.iova)
				cuts[n++] = unmap.iova;
			rc = iopt_cut_iova(&ioas->iopt, cuts, n);
			if (rc)
				goto out_put;
		}
		rc = iopt_unmap_iova(&ioas->iopt, unmap.iova, unmap.size, &unmapped);
	}
	unmap.size = unmapped;
	/* The size goes back even when the unmap failed. */
	wrc = __uiommu_copy_to_user(mm, arg, &unmap, len);
	if (wrc)
		rc = wrc;
out_put:
	iommufd_put_object(ictx, &ioas->obj);
	return rc;
}

/* A capability under construction: where it goes and how much of it the caller has room for. */
struct vfio_info_build {
	struct uiommu_mm *mm;
	uint64_t arg;
	uint32_t argsz;
	uint32_t total;
	uint32_t last_cap;  /* offset of the previous capability, 0 for none */
	int rc;
};

static void vfio_info_put(struct vfio_info_build *b, uint32_t off, const void *src, size_t len)
{
	if (!b->rc && (uint64_t)off + len <= b->argsz)
		b->rc = uiommu_copy_to_user(b->mm, b->arg + off, src, len);
}

/* Starts a capability at b->total; links the previous one to it if the caller can see it. */
static uint32_t vfio_info_cap_start(struct vfio_info_build *b)
{
	uint32_t off = b->total;

	if (b->last_cap && b->argsz >= off)
		vfio_info_put(b, b->last_cap + offsetof(struct vfio_info_cap_header, next), &off,
			      sizeof(off));
	b->last_cap = off;
	return off;
}

static int iommufd_vfio_iommu_get_info(struct iommufd_ctx *ictx, struct uiommu_mm *mm,
				       uint64_t arg)
{
	const size_t minsz = offsetofend(struct vfio_iommu_type1_info, iova_pgsizes);
	struct vfio_iommu_type1_info info;
	struct vfio_info_build b = { .mm = mm, .arg = arg };
	struct iommufd_ioas *ioas;
	struct iopt_usable_range *ranges = NULL;
	unsigned long nr, i;
	uint32_t off;
	int rc;

	memset(&info, 0, sizeof(info));
	rc = uiommu_copy_from_user(mm, &info, arg, minsz);
	if (rc)
		return rc;
	if (info.argsz < minsz)
		return -EINVAL;
	ioas = iommufd_get_compat_ioas(ictx);
	if (IS_ERR(ioas))
		return PTR_ERR(ioas);

	b.argsz = info.argsz;
	b.total = sizeof(info);

	uiommu_down_read(&ioas->iopt.iova_rwsem);
	/* Page sizes: every size from the host page up (no domain narrows them yet). */
	info.iova_pgsizes = ~(uiommu_page_size - 1);
	if (info.iova_pgsizes < ioas->iopt.iova_alignment)
		info.iova_pgsizes = ioas->iopt.iova_alignment;
	nr = iopt_get_usable_ranges(&ioas->iopt, NULL, 0);
	ranges = uiommu_calloc(nr, sizeof(*ranges));
	if (!ranges) {
		uiommu_up_read(&ioas->iopt.iova_rwsem);
		rc = -ENOMEM;
		goto out_put;
	}
	iopt_get_usable_ranges(&ioas->iopt, ranges, nr);
	uiommu_up_read(&ioas->iopt.iova_rwsem);

	/* DMA_AVAIL: 12 bytes, in a slot padded to 8-byte alignment. */
	{
		struct vfio_iommu_type1_info_dma_avail cap = {
			.header = { .id = VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, .version = 1 },
			.avail = UINT32_MAX,
		};

		off = vfio_info_cap_start(&b);
		vfio_info_put(&b, off, &cap, sizeof(cap));
		b.total += ALIGN_UP((uint32_t)sizeof(cap), 8u);
	}
	/* IOVA_RANGE: the same ranges IOMMU_IOAS_IOVA_RANGES reports. */
	{
		struct vfio_iommu_type1_info_cap_iova_range cap = {
			.header = { .id = VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, .version = 1 },
			.nr_iovas = (uint32_t)nr,
		};
		uint32_t size = sizeof(cap) + nr * sizeof(struct vfio_iova_range);

		off = vfio_info_cap_start(&b);
		for (i = 0; i != nr; i++) {
			struct vfio_iova_range r = { .start = ranges[i].start,
						     .end = ranges[i].last };

			vfio_info_put(&b, off + sizeof(cap) + i * sizeof(r), &r, sizeof(r));
		}
		if ((uint64_t)off + size <= b.argsz)
			vfio_info_put(&b, off, &cap, sizeof(cap));
		b.total += size;
	}
	rc = b.rc;
	if (rc)
		goto out_put;

	info.cap_offset = info.argsz >= b.total ? (uint32_t)sizeof(info) : 0;
	info.flags = VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS;
	{
		uint32_t user_argsz = info.argsz;

		info.argsz = b.total;
		rc = uiommu_copy_to_user(mm, arg, &info,
					 user_argsz < sizeof(info) ? user_argsz : sizeof(info));
	}
out_put:
	uiommu_free(ranges);
	iommufd_put_object(ictx, &ioas->obj);
	return rc;
}

/**
 * iommufd_vfio_ioctl() - the VFIO type1 requests on the iommufd fd
 * Return: the request's result (a non-negative value for the query requests), or -errno;
 * -ENOTTY for anything that is not a VFIO container request we serve.
 */
int iommufd_vfio_ioctl(struct iommufd_ctx *ictx, struct uiommu_mm *mm, unsigned int cmd,
		       uint64_t arg)
{
	switch (cmd) {
	case VFIO_GET_API_VERSION:
		return VFIO_API_VERSION;
	case VFIO_CHECK_EXTENSION:
		return iommufd_vfio_check_extension(ictx, arg);
	case VFIO_SET_IOMMU:
		return iommufd_vfio_set_iommu(ictx, arg);
	case VFIO_IOMMU_MAP_DMA:
		return iommufd_vfio_map_dma(ictx, mm, arg);
	case VFIO_IOMMU_UNMAP_DMA:
		return iommufd_vfio_unmap_dma(ictx, mm, arg);
	case VFIO_IOMMU_GET_INFO:
		return iommufd_vfio_iommu_get_info(ictx, mm, arg);
	default:
		return -ENOTTY;
	}
}
