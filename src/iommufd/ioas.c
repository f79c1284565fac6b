// SPDX-License-Identifier: MIT
/*
 * The IOAS object and its ioctls: argument checks in the kernel's order, then the io_pagetable
 * engine does the work. Replies go back through iommufd_ucmd_respond(); a failure to write the
 * reply does not undo a mapping that was made (the kernel behaves the same way).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "iommufd/iommufd_private.h"
#include "lib/fail.h"

IOMMUFD_OBJECT_AT_ZERO(struct iommufd_ioas, obj);

struct iommufd_ioas *iommufd_ioas_alloc(struct iommufd_ctx *ictx)
{
	struct iommufd_ioas *ioas = iommufd_object_alloc(ictx, ioas, IOMMUFD_OBJ_IOAS);

	if (IS_ERR(ioas))
		return ioas;
	iopt_init_table(&ioas->iopt);
	uiommu_mutex_init(&ioas->mutex);
	return ioas;
}

void iommufd_ioas_destroy(struct iommufd_object *obj)
{
	struct iommufd_ioas *ioas = container_of(obj, struct iommufd_ioas, obj);

	/* Every HWPT holds its IOAS: none is left. */
	WARN_ON(ioas->auto_hwpts);
	iopt_destroy_table(&ioas->iopt);
	uiommu_mutex_destroy(&ioas->mutex);
}

int iommufd_ioas_alloc_ioctl(struct iommufd_ucmd *ucmd)
{
	struct iommu_ioas_alloc *cmd = ucmd->cmd;
	struct iommufd_ioas *ioas;
	int rc;

	if (cmd->flags)
		return -EOPNOTSUPP;
	/* IOAS_CHANGE_PROCESS must see every IOAS that can pin: none appears while it runs. */
	uiommu_down_read(&ucmd->ictx->ioas_creation_rwsem);
	ioas = iommufd_ioas_alloc(ucmd->ictx);
	if (IS_ERR(ioas)) {
		rc = PTR_ERR(ioas);
		goto out_unlock;
	}
	cmd->out_ioas_id = atomic_load_explicit(&ioas->obj.id, memory_order_relaxed);
	rc = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
	if (rc)
		goto err_abort;
	iommufd_object_finalize(ucmd->ictx, &ioas->obj);
	goto out_unlock;

err_abort:
	iommufd_object_abort_and_destroy(ucmd->ictx, &ioas->obj);
out_unlock:
	uiommu_up_read(&ucmd->ictx->ioas_creation_rwsem);
	return rc;
}

/*
 * The reply of IOVA_RANGES: @cap of the @total usable ranges (@ranges) into the caller's array,
 * then the struct, with EMSGSIZE when the array was too short.
 */
static int iommufd_ioas_iova_ranges_reply(struct iommufd_ucmd *ucmd,
					  const struct iopt_usable_range *ranges,
					  unsigned long cap, unsigned long total)
{
	struct iommu_ioas_iova_ranges *cmd = ucmd->cmd;
	uint32_t max_iovas = cmd->num_iovas;
	int rc;

	/*
	 * Ours are the caller's elements, so the array goes in one copy (the kernel copies one
	 * element at a time: a fault part way leaves a prefix written either way).
	 */
	_Static_assert(sizeof(*ranges) == sizeof(struct iommu_iova_range) &&
			       offsetof(struct iopt_usable_range, start) ==
				       offsetof(struct iommu_iova_range, start) &&
			       offsetof(struct iopt_usable_range, last) ==
				       offsetof(struct iommu_iova_range, last),
		       "a usable range is an iommu_iova_range");
	if (cap) {
		rc = uiommu_copy_to_user(ucmd->mm, cmd->allowed_iovas, ranges,
					 cap * sizeof(*ranges));
		if (rc)
			return rc;
	}
	cmd->num_iovas = (uint32_t)total;
	rc = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
	if (rc)
		return rc;
	/* The reply already carries the count the caller needs. */
	return total > max_iovas ? -EMSGSIZE : 0;
}

int iommufd_ioas_iova_ranges(struct iommufd_ucmd *ucmd)
{
	struct iommu_ioas_iova_ranges *cmd = ucmd->cmd;
	struct iommufd_ioas *ioas;
	struct iopt_usable_range few[IOPT_USABLE_RCU_MAX], *ranges = few;
	unsigned long total, cap;
	int rc = 0;

	if (cmd->__reserved)
		return -EOPNOTSUPP;
	ioas = iommufd_get_ioas(ucmd->ictx, cmd->ioas_id);
	if (IS_ERR(ioas))
		return PTR_ERR(ioas);

	uiommu_down_read(&ioas->iopt.iova_rwsem);
	/* Usually a handful of ranges: count and collect them in one pass into `few`. */
	total = iopt_get_usable_ranges(&ioas->iopt, few, ARRAY_SIZE(few));
	cap = total < cmd->num_iovas ? total : cmd->num_iovas;
	if (cap > ARRAY_SIZE(few)) {
		ranges = uiommu_calloc(cap, sizeof(*ranges));
		if (!ranges) {
			rc = -ENOMEM;
			goto out_unlock;
		}
		iopt_get_usable_ranges(&ioas->iopt, ranges, cap);
	}
	cmd->out_iova_alignment = ioas->iopt.iova_alignment;
	/* The next caller may answer without this lock (iommufd_ioas_iova_ranges_rcu()). */
	iopt_usable_publish(&ioas->iopt);
out_unlock:
	uiommu_up_read(&ioas->iopt.iova_rwsem);
	if (!rc)
		rc = iommufd_ioas_iova_ranges_reply(ucmd, ranges, cap, total);
	if (ranges != few)
		uiommu_free(ranges);
	iommufd_put_object(ucmd->ictx, &ioas->obj);
	return rc;
}

/*
 * IOVA_RANGES under RCU, with no hold on the IOAS and no lock: the answer is the table's
 * published snapshot (iopt_usable_rcu()), which depends on the reserved ranges and the
 * alignment only, never on mappings. No snapshot yet (none built since the last change), or
 * more ranges than the snapshot holds: the locked walk (IOMMUFD_IOCTL_REF). The command
 * struct is left as it came in until nothing can send us there.
 */
int iommufd_ioas_iova_ranges_rcu(struct iommufd_ucmd_rcu *rcmd)
{
	struct iommu_ioas_iova_ranges *cmd = rcmd->ucmd.cmd;
	const struct iopt_usable *usable;
	struct iommufd_object *obj;
	unsigned long cap, i;

	if (cmd->__reserved)
		return -EOPNOTSUPP;
	obj = iommufd_get_object_rcu(rcmd->ucmd.ictx, cmd->ioas_id, IOMMUFD_OBJ_IOAS);
	if (IS_ERR(obj))
		return PTR_ERR(obj);
	usable = iopt_usable_rcu(&container_of(obj, struct iommufd_ioas, obj)->iopt);
	if (!usable)
		return IOMMUFD_IOCTL_REF;
	cap = usable->nr < cmd->num_iovas ? usable->nr : cmd->num_iovas;
	/* Usually one or two ranges: a call to memcpy() cost more than copying them. */
	for (i = 0; i != cap; i++)
		rcmd->out.iova_ranges.ranges[i] = usable->ranges[i];
	rcmd->out.iova_ranges.nr = cap;
	rcmd->out.iova_ranges.total = usable->nr;
	cmd->out_iova_alignment = usable->iova_alignment;
	return 0;
}

/* After rcu_read_unlock(): the user copies. */
int iommufd_ioas_iova_ranges_rcu_reply(struct iommufd_ucmd_rcu *rcmd)
{
	return iommufd_ioas_iova_ranges_reply(&rcmd->ucmd, rcmd->out.iova_ranges.ranges,
					      rcmd->out.iova_ranges.nr,
					      rcmd->out.iova_ranges.total);
}

/*
 * The ranges are read one at a time into a tree of their own, as the kernel's
 * iommufd_ioas_load_iovas() does: memory grows with what was read (num_iovas is the caller's
 * claim: allocating it up front tried 64 GB for 2^32-1, found by fuzzing) and the overlap
 * check is a tree lookup (it was quadratic). Errors come in the kernel's order per range.
 */
int iommufd_ioas_allow_iovas(struct iommufd_ucmd *ucmd)
{
	struct iommu_ioas_allow_iovas *cmd = ucmd->cmd;
	struct interval_tree_root fresh;
	struct iommufd_ioas *ioas;
	uint32_t i;
	int rc = 0;

	if (cmd->__reserved)
		return -EOPNOTSUPP;
	ioas = iommufd_get_ioas(ucmd->ictx, cmd->ioas_id);
	if (IS_ERR(ioas))
		return PTR_ERR(ioas);
	interval_tree_init(&fresh);
	for (i = 0; i != cmd->num_iovas; i++) {
		struct iommu_iova_range range;
		struct iopt_allowed *allowed;

		rc = uiommu_copy_from_user(ucmd->mm, &range,
					   cmd->allowed_iovas + (uint64_t)i * sizeof(range),
					   sizeof(range));
		if (rc)
			goto out_free;
		/* Ranges of one request may touch but not overlap. */
		if (range.start >= range.last ||
		    interval_tree_iter_first(&fresh, range.start, range.last)) {
			rc = -EINVAL;
			goto out_free;
		}
		allowed = uiommu_zalloc(sizeof(*allowed));
		if (!allowed) {
			rc = -ENOMEM;
			goto out_free;
		}
		allowed->node.start = range.start;
		allowed->node.last = range.last;
		interval_tree_insert(&fresh, &allowed->node);
	}
	rc = iopt_set_allow_iova(&ioas->iopt, &fresh);
out_free:
	iopt_allowed_free(&fresh);
	iommufd_put_object(ucmd->ictx, &ioas->obj);
	return rc;
}

#define IOAS_MAP_FLAGS \
	(IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE)

/* What MAP and MAP_FILE map: user memory, or a file. */
struct iommufd_map_source {
	uint64_t user_va; /* MAP */
	int fd;           /* MAP_FILE, with start */
	uint64_t start;
	bool file;
};

/*
 * MAP and MAP_FILE share everything but the source: the checks in the kernel's order, the IOVA
 * choice and the reply. @cmd_iova is the struct's iova field (in: fixed IOVA, out: the IOVA).
 */
static int iommufd_ioas_map_common(struct iommufd_ucmd *ucmd, size_t cmd_len, uint32_t ioas_id,
				   uint32_t cmd_flags, uint64_t length, __u64 *cmd_iova,
				   const struct iommufd_map_source *src)
{
	unsigned int flags = 0;
	struct iommufd_ioas *ioas;
	uint64_t iova;
	int prot, rc;

	if (cmd_flags & ~IOAS_MAP_FLAGS)
		return -EOPNOTSUPP;
	if (*cmd_iova >= UINT64_MAX || length >= UINT64_MAX)
		return -EOVERFLOW;
	if (!(cmd_flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE)))
		return -EINVAL;
	ioas = iommufd_get_ioas(ucmd->ictx, ioas_id);
	if (IS_ERR(ioas))
		return PTR_ERR(ioas);
	rc = iommufd_ucmd_probe_respond(ucmd, cmd_len);
	if (rc)
		goto out_put;
	if (!(cmd_flags & IOMMU_IOAS_MAP_FIXED_IOVA))
		flags = IOPT_ALLOC_IOVA;
	/* Set before the IOAS existed and fixed while it does (RLIMIT_MODE): no lock needed. */
	if (ucmd->ictx->account_mode == IOPT_PAGES_ACCOUNT_MM)
		flags |= IOPT_ACCOUNT_MM;
	iova = *cmd_iova;
	prot = iommufd_conv_map_flags(cmd_flags);
	if (src->file)
		rc = iopt_map_file_pages(&ioas->iopt, ucmd->mm, &iova, src->fd, src->start, length,
					 prot, flags);
	else
		rc = iopt_map_user_pages(&ioas->iopt, ucmd->mm, &iova, src->user_va, length, prot,
					 flags);
	if (rc)
		goto out_put;
	*cmd_iova = iova;
	rc = iommufd_ucmd_respond_committed(ucmd, cmd_len);
out_put:
	iommufd_put_object(ucmd->ictx, &ioas->obj);
	return rc;
}

int iommufd_ioas_map(struct iommufd_ucmd *ucmd)
{
	struct iommu_ioas_map *cmd = ucmd->cmd;
	struct iommufd_map_source src = { .user_va = cmd->user_va };

	if (cmd->__reserved)
		return -EOPNOTSUPP;
	return iommufd_ioas_map_common(ucmd, sizeof(*cmd), cmd->ioas_id, cmd->flags, cmd->length,
				       &cmd->iova, &src);
}

int iommufd_ioas_map_file(struct iommufd_ucmd *ucmd)
{
	struct iommu_ioas_map_file *cmd = ucmd->cmd;
	/* The fd is the caller's: another process's is looked up in its table, not ours. */
	struct iommufd_map_source src = { .fd = iommufd_caller_fd_get(cmd->fd), .start = cmd->start,
					  .file = true };
	int rc;

	rc = iommufd_ioas_map_common(ucmd, sizeof(*cmd), cmd->ioas_id, cmd->flags, cmd->length,
				     &cmd->iova, &src);
	iommufd_caller_fd_put(src.fd);
	return rc;
}

int iommufd_ioas_copy(struct iommufd_ucmd *ucmd)
{
	struct iommu_ioas_copy *cmd = ucmd->cmd;
	struct iommufd_ioas *src_ioas, *dst_ioas;
	unsigned int flags = 0;
	uint64_t iova;
	int rc;

	if (cmd->flags & ~IOAS_MAP_FLAGS)
		return -EOPNOTSUPP;
	if (cmd->length >= UINT64_MAX || cmd->src_iova >= UINT64_MAX ||
	    cmd->dst_iova >= UINT64_MAX)
		return -EOVERFLOW;
	if (!(cmd->flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE)))
		return -EINVAL;
	src_ioas = iommufd_get_ioas(ucmd->ictx, cmd->src_ioas_id);
	if (IS_ERR(src_ioas))
		return PTR_ERR(src_ioas);
	dst_ioas = iommufd_get_ioas(ucmd->ictx, cmd->dst_ioas_id);
	if (IS_ERR(dst_ioas)) {
		rc = PTR_ERR(dst_ioas);
		goto out_put_src;
	}
	rc = iommufd_ucmd_probe_respond(ucmd, sizeof(*cmd));
	if (rc)
		goto out_put_dst;
	if (!(cmd->flags & IOMMU_IOAS_MAP_FIXED_IOVA))
		flags = IOPT_ALLOC_IOVA;
	iova = cmd->dst_iova;
	rc = iopt_copy_iova(&dst_ioas->iopt, &src_ioas->iopt, &iova, cmd->src_iova, cmd->length,
			    iommufd_conv_map_flags(cmd->flags), flags);
	if (rc)
		goto out_put_dst;
	cmd->dst_iova = iova;
	rc = iommufd_ucmd_respond_committed(ucmd, sizeof(*cmd));
out_put_dst:
	iommufd_put_object(ucmd->ictx, &dst_ioas->obj);
out_put_src:
	iommufd_put_object(ucmd->ictx, &src_ioas->obj);
	return rc;
}

int iommufd_ioas_unmap(struct iommufd_ucmd *ucmd)
{
	struct iommu_ioas_unmap *cmd = ucmd->cmd;
	struct iommufd_ioas *ioas;
	uint64_t unmapped = 0;
	int rc;

	ioas = iommufd_get_ioas(ucmd->ictx, cmd->ioas_id);
	if (IS_ERR(ioas))
		return PTR_ERR(ioas);
	rc = iommufd_ucmd_probe_respond(ucmd, sizeof(*cmd));
	if (rc)
		goto out_put;
	if (cmd->iova == 0 && cmd->length == UINT64_MAX) {
		rc = iopt_unmap_all(&ioas->iopt, &unmapped);
	} else {
		if (cmd->iova >= UINT64_MAX || cmd->length >= UINT64_MAX) {
			rc = -EOVERFLOW;
			goto out_put;
		}
		rc = iopt_unmap_iova(&ioas->iopt, cmd->iova, cmd->length, &unmapped);
		if (!rc && !unmapped)
			rc = -ENOENT;
	}
	if (rc)
		goto out_put;
	cmd->length = unmapped;
	rc = iommufd_ucmd_respond_committed(ucmd, sizeof(*cmd));
out_put:
	iommufd_put_object(ucmd->ictx, &ioas->obj);
	return rc;
}

int iommufd_ioas_option(struct iommufd_ucmd *ucmd)
{
	struct iommu_option *cmd = ucmd->cmd;
	struct iommufd_ioas *ioas;
	int rc = 0;

	if (cmd->__reserved)
		return -EOPNOTSUPP;
	ioas = iommufd_get_ioas(ucmd->ictx, cmd->object_id);
	if (IS_ERR(ioas))
		return PTR_ERR(ioas);
	if (cmd->op == IOMMU_OPTION_OP_GET) {
		cmd->val64 = !iopt_large_pages_disabled(&ioas->iopt);
	} else if (cmd->op == IOMMU_OPTION_OP_SET) {
		if (cmd->val64 == 0)
			rc = iopt_disable_large_pages(&ioas->iopt);
		else if (cmd->val64 == 1)
			iopt_enable_large_pages(&ioas->iopt);
		else
			rc = -EINVAL;
	} else {
		rc = -EOPNOTSUPP;
	}
	iommufd_put_object(ucmd->ictx, &ioas->obj);
	return rc;
}

/*
 * IOAS_CHANGE_PROCESS: the charges of every IOAS's pinned pages move to the caller (its real
 * uid and its mm). Only file-backed mappings can move (their memory belongs to no address
 * space); any VA mapping makes it EINVAL with nothing changed. All or nothing, as the kernel
 * does it: with IOAS creation held off and every IOAS's iova_rwsem held for write (in ID
 * order, the one place they nest), no page can be pinned or unpinned, so the pinned counts
 * are stable; the caller is charged the sum per mode first (ENOMEM past its limit, nothing
 * changed), then each iopt_pages gives its old charge back and names the caller.
 */

static int ioas_pages_cmp(const void *a, const void *b)
{
	uintptr_t pa = (uintptr_t)*(struct iopt_pages *const *)a;
	uintptr_t pb = (uintptr_t)*(struct iopt_pages *const *)b;

	return (pa > pb) - (pa < pb);
}

/* Holds every published IOAS of @ictx in *@out (sorted by ID). Caller holds ioas_creation. */
static int ioas_hold_all(struct iommufd_ctx *ictx, struct iommufd_object ***out, unsigned long *num)
{
	struct iommufd_object **held = NULL, *obj;
	unsigned long n = 0, cap;
	uint32_t id;

	uiommu_mutex_lock(&ictx->objects_lock);
	cap = (unsigned long)ictx->nr_objects;
	if (cap) {
		held = uiommu_calloc(cap, sizeof(*held));
		if (!held) {
			uiommu_mutex_unlock(&ictx->objects_lock);
			return -ENOMEM;
		}
	}
	/* In ID order: no sort needed. */
	for (id = 0; (obj = iommufd_object_next_locked(ictx, &id)); id++) {
		if (obj->type != IOMMUFD_OBJ_IOAS || n == cap)
			continue;
		if (atomic_load_explicit(&obj->users, memory_order_relaxed) == 0)
			continue;
		iommufd_object_ref_users(obj);
		held[n++] = obj;
	}
	uiommu_mutex_unlock(&ictx->objects_lock);
	*out = held;
	*num = n;
	return 0;
}

/* Charges the caller @npinned pages per mode; all or nothing. */
static int ioas_charge_caller(const uint64_t *npinned, struct uiommu_user *user,
			      struct uiommu_mm *mm)
{
	int mode, rc;

	for (mode = 0; mode != UIOMMU_ACCOUNT_MODES; mode++) {
		rc = uiommu_account_charge(mode, user, mm, npinned[mode]);
		if (rc)
			goto err_uncharge;
	}
	return 0;

err_uncharge:
	while (mode--)
		uiommu_account_uncharge(mode, user, mm, npinned[mode]);
	return rc;
}

int iommufd_ioas_change_process(struct iommufd_ucmd *ucmd)
{
	struct iommu_ioas_change_process *cmd = ucmd->cmd;
	struct iommufd_ctx *ictx = ucmd->ictx;
	uint64_t npinned[UIOMMU_ACCOUNT_MODES] = { 0 };
	struct iopt_pages **pages = NULL;
	struct iommufd_object **held;
	unsigned long n, i, locked = 0;
	size_t npages = 0, nuniq = 0, j;
	struct uiommu_user *user;
	int rc = 0;

	if (cmd->__reserved)
		return -EOPNOTSUPP;
	user = uiommu_user_current();
	if (IS_ERR(user))
		return PTR_ERR(user);

	uiommu_down_write(&ictx->ioas_creation_rwsem);
	rc = ioas_hold_all(ictx, &held, &n);
	if (rc)
		goto out_unlock_creation;
	for (locked = 0; locked != n; locked++) {
		struct iommufd_ioas *ioas = container_of(held[locked], struct iommufd_ioas, obj);

		uiommu_down_write(&ioas->iopt.iova_rwsem);
	}
	for (i = 0; i != n && !rc; i++) {
		struct iommufd_ioas *ioas = container_of(held[i], struct iommufd_ioas, obj);

		if (!iopt_only_file_areas(&ioas->iopt))
			rc = -EINVAL;
	}
	for (i = 0; i != n && !rc; i++) {
		struct iommufd_ioas *ioas = container_of(held[i], struct iommufd_ioas, obj);

		rc = iopt_collect_pages(&ioas->iopt, &pages, &npages);
	}
	if (rc)
		goto out_unlock_iopts;

	/* COPY shares one iopt_pages between areas: count each once. */
	if (npages)
		qsort(pages, npages, sizeof(*pages), ioas_pages_cmp);
	for (j = 0; j != npages; j++)
		if (!nuniq || pages[nuniq - 1] != pages[j])
			pages[nuniq++] = pages[j];
	for (j = 0; j != nuniq; j++)
		if (iopt_pages_account_differs(pages[j], user, ucmd->mm))
			npinned[pages[j]->account_mode] += iopt_pages_npinned(pages[j]);
	rc = ioas_charge_caller(npinned, user, ucmd->mm);
	if (rc)
		goto out_unlock_iopts;
	for (j = 0; j != nuniq; j++)
		if (iopt_pages_account_differs(pages[j], user, ucmd->mm))
			iopt_pages_account_move(pages[j], user, ucmd->mm);

out_unlock_iopts:
	while (locked--) {
		struct iommufd_ioas *ioas = container_of(held[locked], struct iommufd_ioas, obj);

		uiommu_up_write(&ioas->iopt.iova_rwsem);
	}
	for (i = 0; i != n; i++)
		iommufd_object_unref_users(held[i]);
	uiommu_free(held);
	uiommu_free(pages);
out_unlock_creation:
	uiommu_up_write(&ictx->ioas_creation_rwsem);
	uiommu_user_put(user);
	return rc;
}
