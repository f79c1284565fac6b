// SPDX-License-Identifier: MIT
/*
 * IOMMU_TEST_CMD, the kernel selftest's back door (CONFIG_IOMMUFD_TEST), and its object,
 * IOMMUFD_OBJ_SELFTEST.
 *
 * MOCK_DOMAIN and MOCK_DOMAIN_FLAGS stand in for a driver that finds a device and binds it to
 * iommufd: a mock device appears behind the selftest mock IOMMU (drivers/mock/selftest_mock.c),
 * is bound to the context (an idev, which claims DMA ownership) and attached to the page table
 * named by the command's id (an IOAS, giving an automatic HWPT, or a paging HWPT). The selftest
 * object ("stdev") stands for that driver: destroying it detaches, unbinds and removes the
 * device, and the context's close does the same.
 *
 * The check ops read the emulator's stand-ins for kernel page state: MD_CHECK_MAP walks a mock
 * domain and compares each MOCK_PAGE_SIZE step with the host address of the user's buffer (or,
 * for file pages, with the file page the buffer shows: mm/maps.c);
 * MD_CHECK_REFS compares the mm's pin ledger, page by page, with the expected count.
 *
 * The access ops live with the access objects (access.c), DIRTY with
 * dirty tracking (dirty.c), the dma-buf ops with the test dma-buf (dmabuf.c). Ops not listed answer EOPNOTSUPP, the
 * kernel's answer for an op it does not know.
 * TRIGGER_IOPF plays the mock IOMMU's page request queue: it reports a one-page request (the
 * last of its group) for an idev to the core, which routes it to the fault queue of the HWPT
 * attached there (eventq.c); answers come back to the mock's page_response, which
 * UIOMMU_PAGE_RESPONSES (ours, not the kernel's) reads.
 * The PASID ops attach, replace and detach a PASID of the stdev's device (device.c), and
 * PASID_CHECK_HWPT reads what the core publishes there.
 */
#include <errno.h>

#include "drivers/mock/selftest_mock.h"
#include "iommu/iommu.h"
#include "iommufd/dmabuf.h"
#include "iommufd/iommufd_private.h"
#include "lib/fail.h"

struct selftest_obj {
	struct iommufd_object obj;
	struct device *dev;           /* the mock device; ours */
	struct iommufd_device *idev;  /* bound by us; constant */
};

IOMMUFD_OBJECT_AT_ZERO(struct selftest_obj, obj);

static int iommufd_test_add_reserved(struct iommufd_ucmd *ucmd, uint32_t ioas_id,
				     uint64_t start, uint64_t length)
{
	struct iommufd_ioas *ioas;
	uint64_t last;
	int rc;

	if (!length)
		return -EINVAL;
	if (check_add_overflow(start, length - 1, &last))
		return -EOVERFLOW;
	ioas = iommufd_get_ioas(ucmd->ictx, ioas_id);
	if (IS_ERR(ioas))
		return PTR_ERR(ioas);
	rc = iopt_reserve_iova(&ioas->iopt, start, last, NULL);
	iommufd_put_object(ucmd->ictx, &ioas->obj);
	return rc;
}

void iommufd_selftest_destroy(struct iommufd_object *obj)
{
	struct selftest_obj *sobj = container_of(obj, struct selftest_obj, obj);

	if (sobj->idev) {
		iommufd_device_detach(sobj->idev);
		iommufd_device_unbind(sobj->idev);
	}
	if (sobj->dev)
		mock_selftest_dev_destroy(sobj->dev);
}

/* MOCK_DOMAIN and MOCK_DOMAIN_FLAGS: a device appears, is bound, and attaches to pt @id. */
static int iommufd_test_mock_domain(struct iommufd_ucmd *ucmd, struct iommu_test_cmd *cmd)
{
	uint32_t dev_flags = 0, pt_id = cmd->id, idev_id;
	struct selftest_obj *sobj;
	struct device *dev;
	int rc;

	if (cmd->op == IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS)
		dev_flags = cmd->mock_domain_flags.dev_flags;
	if (dev_flags & ~MOCK_SELFTEST_DEV_FLAGS)
		return -EINVAL;

	sobj = iommufd_object_alloc(ucmd->ictx, sobj, IOMMUFD_OBJ_SELFTEST);
	if (IS_ERR(sobj))
		return PTR_ERR(sobj);
	dev = mock_selftest_dev_create(dev_flags);
	if (IS_ERR(dev)) {
		rc = PTR_ERR(dev);
		goto err_abort;
	}
	sobj->dev = dev;
	sobj->idev = iommufd_device_bind(ucmd->ictx, dev, &idev_id);
	if (IS_ERR(sobj->idev)) {
		rc = PTR_ERR(sobj->idev);
		sobj->idev = NULL;
		goto err_abort;
	}
	rc = iommufd_device_attach(sobj->idev, &pt_id);
	if (rc)
		goto err_abort;

	cmd->mock_domain.out_stdev_id = iommufd_object_id(&sobj->obj);
	cmd->mock_domain.out_hwpt_id = pt_id;
	cmd->mock_domain.out_idev_id = idev_id;
	rc = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
	if (rc)
		goto err_abort;
	iommufd_object_finalize(ucmd->ictx, &sobj->obj);
	return 0;

err_abort:
	/* The destroy undoes whatever was done: detach, unbind, device removal. */
	iommufd_object_abort_and_destroy(ucmd->ictx, &sobj->obj);
	return rc;
}

static int iommufd_test_mock_domain_replace(struct iommufd_ucmd *ucmd,
					    struct iommu_test_cmd *cmd)
{
	struct iommufd_object *obj;
	struct selftest_obj *sobj;
	uint32_t pt_id = cmd->mock_domain_replace.pt_id;
	int rc;

	obj = iommufd_get_object(ucmd->ictx, cmd->id, IOMMUFD_OBJ_SELFTEST);
	if (IS_ERR(obj))
		return PTR_ERR(obj);
	sobj = container_of(obj, struct selftest_obj, obj);
	rc = iommufd_device_replace(sobj->idev, &pt_id);
	if (rc)
		goto out_put;
	cmd->mock_domain_replace.pt_id = pt_id;
	rc = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
out_put:
	iommufd_put_object(ucmd->ictx, obj);
	return rc;
}

/*
 * Each MOCK_PAGE_SIZE step of [iova, iova + length) must translate to the memory at uptr: the
 * same host address, or the same page of the same file (a MAP_FILE area checked against the
 * caller's own mmap of the file, maps.c).
 */
static int iommufd_test_md_check_map(struct iommufd_ucmd *ucmd, uint32_t hwpt_id, uint64_t iova,
				     uint64_t length, uint64_t uptr)
{
	struct uiommu_maps *maps = NULL;
	struct iommufd_hwpt_paging *hwpt;
	struct iommu_domain *domain;
	uint64_t end, off;
	int rc = 0;

	if ((iova | length | uptr) % MOCK_SELFTEST_PAGE_SIZE ||
	    check_add_overflow(uptr, length, &end))
		return -EINVAL;
	hwpt = iommufd_get_hwpt_paging(ucmd->ictx, hwpt_id);
	if (IS_ERR(hwpt))
		return PTR_ERR(hwpt);
	domain = hwpt->common.domain;
	if (!mock_selftest_domain_is(domain)) {
		rc = -EINVAL;
		goto out_put;
	}
	for (off = 0; off < length; off += MOCK_SELFTEST_PAGE_SIZE) {
		void *want = ucmd->mm->ops->host_ptr(ucmd->mm, uptr + off);
		phys_addr_t got = iommu_iova_to_phys(domain, iova + off);

		if (!want || !got) {
			rc = -EINVAL;
			break;
		}
		if (got == (phys_addr_t)(uintptr_t)want)
			continue;
		if (!maps) {
			rc = uiommu_maps_load(&maps);
			if (rc)
				break;
		}
		if (!uiommu_maps_same_page(maps, got, (uint64_t)(uintptr_t)want)) {
			rc = -EINVAL;
			break;
		}
	}
	uiommu_maps_free(maps);
out_put:
	iommufd_put_object(ucmd->ictx, &hwpt->common.obj);
	return rc;
}

/*
 * Every user page of [uptr, uptr + length) must be pinned exactly @refs times: its pins as a
 * user page, plus, when it shows a page of a file (the caller's mmap of a file it also mapped
 * with MAP_FILE), that file page's pins (mm.c). Page by page, each must be readable first
 * (EFAULT), as the kernel's get_user_pages_fast() of each: without that, a length of 2^50
 * over unmapped memory with @refs 0 walked the pin ledger for days (found by fuzzing).
 */
static int iommufd_test_md_check_refs(struct iommufd_ucmd *ucmd, uint64_t uptr, uint64_t length,
				      unsigned int refs)
{
	struct uiommu_maps *maps = NULL;
	uint64_t end, page;
	int rc = 0;

	if (length % uiommu_page_size || uptr % uiommu_page_size ||
	    check_add_overflow(uptr, length, &end))
		return -EINVAL;
	if (uiommu_file_pins_any()) {
		rc = uiommu_maps_load(&maps);
		if (rc)
			return rc;
	}
	for (page = uptr >> uiommu_page_shift; page < end >> uiommu_page_shift; page++) {
		unsigned int cnt;
		void *host;
		uint64_t dev, ino, offset;
		unsigned char byte;

		/* The op, not uiommu_copy_from_user(): a check spends no fail point per page. */
		rc = ucmd->mm->ops->copy_from(ucmd->mm, &byte, page << uiommu_page_shift, 1);
		if (rc)
			break;
		cnt = uiommu_mm_pin_count(ucmd->mm, page);
		host = ucmd->mm->ops->host_ptr(ucmd->mm, page << uiommu_page_shift);

		if (maps && host &&
		    uiommu_maps_file_of(maps, (uint64_t)(uintptr_t)host, &dev, &ino, &offset))
			cnt += uiommu_file_pin_count(dev, ino, offset >> uiommu_page_shift);
		if (cnt != refs) {
			rc = -EIO;
			break;
		}
	}
	uiommu_maps_free(maps);
	return rc;
}

/* MD_CHECK_IOTLB: entry @id of mock nested HWPT @hwpt_id holds @iotlb. */
static int iommufd_test_md_check_iotlb(struct iommufd_ucmd *ucmd, uint32_t hwpt_id, uint32_t id,
				       uint32_t iotlb)
{
	struct iommufd_object *obj;
	struct iommu_domain *domain;
	int rc = 0;

	if (id >= MOCK_SELFTEST_NESTED_IOTLB_NUM)
		return -EINVAL;
	obj = iommufd_get_object(ucmd->ictx, hwpt_id, IOMMUFD_OBJ_HWPT_NESTED);
	if (IS_ERR(obj))
		return PTR_ERR(obj);
	domain = container_of(obj, struct iommufd_hw_pagetable, obj)->domain;
	if (!mock_selftest_nested_is(domain) || mock_selftest_nested_iotlb(domain, id) != iotlb)
		rc = -EINVAL;
	iommufd_put_object(ucmd->ictx, obj);
	return rc;
}

/* DEV_CHECK_CACHE: cache word @id of mock device @idev_id holds @cache. */
static int iommufd_test_dev_check_cache(struct iommufd_ucmd *ucmd, uint32_t idev_id, uint32_t id,
					uint32_t cache)
{
	struct iommufd_device *idev;
	int rc = 0;

	if (id >= MOCK_SELFTEST_DEV_CACHE_NUM)
		return -EINVAL;
	idev = iommufd_get_device(ucmd->ictx, idev_id);
	if (IS_ERR(idev))
		return PTR_ERR(idev);
	if (!mock_selftest_dev_is(idev->dev) || mock_selftest_dev_cache(idev->dev)[id] != cache)
		rc = -EINVAL;
	iommufd_put_object(ucmd->ictx, &idev->obj);
	return rc;
}

/* The selftest object @id, with a short-term hold (iommufd_put_object()). */
static struct selftest_obj *iommufd_test_get_sobj(struct iommufd_ucmd *ucmd, uint32_t id)
{
	struct iommufd_object *obj = iommufd_get_object(ucmd->ictx, id, IOMMUFD_OBJ_SELFTEST);

	return IS_ERR(obj) ? ERR_CAST(obj) : container_of(obj, struct selftest_obj, obj);
}

/*
 * PASID_ATTACH / PASID_REPLACE / PASID_DETACH on stdev @id's device. An attach whose answer
 * cannot be written back is undone; a replace is not (as the kernel's). Detach never fails.
 */
static int iommufd_test_pasid_op(struct iommufd_ucmd *ucmd, struct iommu_test_cmd *cmd)
{
	struct selftest_obj *sobj = iommufd_test_get_sobj(ucmd, cmd->id);
	int rc = 0;

	if (IS_ERR(sobj))
		return PTR_ERR(sobj);
	switch (cmd->op) {
	case IOMMU_TEST_OP_PASID_ATTACH:
		rc = iommufd_device_pasid_attach(sobj->idev, cmd->pasid_attach.pasid,
						 &cmd->pasid_attach.pt_id);
		if (rc)
			break;
		rc = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
		if (rc)
			iommufd_device_pasid_detach(sobj->idev, cmd->pasid_attach.pasid);
		break;
	case IOMMU_TEST_OP_PASID_REPLACE:
		rc = iommufd_device_pasid_replace(sobj->idev, cmd->pasid_replace.pasid,
						  &cmd->pasid_replace.pt_id);
		if (!rc)
			rc = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
		break;
	default: /* IOMMU_TEST_OP_PASID_DETACH */
		iommufd_device_pasid_detach(sobj->idev, cmd->pasid_detach.pasid);
		break;
	}
	iommufd_put_object(ucmd->ictx, &sobj->obj);
	return rc;
}

/*
 * PASID_CHECK_HWPT: the domain the core publishes at stdev @id's @pasid is HWPT @hwpt_id's
 * (hwpt_id 0: nothing may be published there). A mismatch is EINVAL.
 */
static int iommufd_test_pasid_check_hwpt(struct iommufd_ucmd *ucmd, uint32_t id, uint32_t pasid,
					 uint32_t hwpt_id)
{
	struct selftest_obj *sobj = iommufd_test_get_sobj(ucmd, id);
	struct iommu_attach_handle *handle;
	struct iommu_domain *attached;
	struct iommufd_object *obj;
	int rc = 0;

	if (IS_ERR(sobj))
		return PTR_ERR(sobj);
	handle = iommu_attach_handle_get(sobj->dev->iommu_group, pasid, 0);
	attached = IS_ERR(handle) ? NULL : handle->domain;
	if (!hwpt_id) {
		rc = attached ? -EINVAL : 0;
		goto out_put_sobj;
	}
	obj = iommufd_get_object(ucmd->ictx, hwpt_id, IOMMUFD_OBJ_ANY);
	if (IS_ERR(obj)) {
		rc = PTR_ERR(obj);
		goto out_put_sobj;
	}
	if ((obj->type != IOMMUFD_OBJ_HWPT_PAGING && obj->type != IOMMUFD_OBJ_HWPT_NESTED) ||
	    !attached || attached != container_of(obj, struct iommufd_hw_pagetable, obj)->domain)
		rc = -EINVAL;
	iommufd_put_object(ucmd->ictx, obj);
out_put_sobj:
	iommufd_put_object(ucmd->ictx, &sobj->obj);
	return rc;
}

static int iommufd_test_trigger_vevent(struct iommufd_ucmd *ucmd, uint32_t idev_id)
{
	struct iommufd_device *idev;
	int rc;

	idev = iommufd_get_device(ucmd->ictx, idev_id);
	if (IS_ERR(idev))
		return PTR_ERR(idev);
	rc = iommufd_viommu_trigger_vevent(idev);
	iommufd_put_object(ucmd->ictx, &idev->obj);
	return rc;
}

/*
 * TRIGGER_IOPF: a one-page request of @idev_id's device, as the kernel mock reports it: the
 * last of its group, with PASID_VALID for any PASID but 0. What becomes of it (a fault queue,
 * or an INVALID answer when nothing takes faults there) is the core's business: 0 either way.
 */
static int iommufd_test_trigger_iopf(struct iommufd_ucmd *ucmd, struct iommu_test_cmd *cmd)
{
	struct iopf_fault event = { .fault.type = IOMMU_FAULT_PAGE_REQ };
	struct iommufd_device *idev;

	idev = iommufd_get_device(ucmd->ictx, cmd->trigger_iopf.dev_id);
	if (IS_ERR(idev))
		return PTR_ERR(idev);
	event.fault.prm.flags = IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE;
	if (cmd->trigger_iopf.pasid != IOMMU_NO_PASID)
		event.fault.prm.flags |= IOMMU_FAULT_PAGE_REQUEST_PASID_VALID;
	event.fault.prm.pasid = cmd->trigger_iopf.pasid;
	event.fault.prm.grpid = cmd->trigger_iopf.grpid;
	event.fault.prm.perm = cmd->trigger_iopf.perm;
	event.fault.prm.addr = cmd->trigger_iopf.addr;
	iommu_report_device_fault(idev->dev, &event);
	iommufd_put_object(ucmd->ictx, &idev->obj);
	return 0;
}

/* UIOMMU_PAGE_RESPONSES: the mock's record of answers to @dev_id's device (EINVAL: no mock). */
static int iommufd_test_page_responses(struct iommufd_ucmd *ucmd, struct iommu_test_cmd *cmd)
{
	struct iommufd_device *idev;
	uint32_t counts[3], grpid, code;
	int rc;

	idev = iommufd_get_device(ucmd->ictx, cmd->page_responses.dev_id);
	if (IS_ERR(idev))
		return PTR_ERR(idev);
	if (!mock_selftest_dev_is(idev->dev)) {
		rc = -EINVAL;
		goto out_put;
	}
	mock_selftest_page_responses(idev->dev, counts, &grpid, &code);
	cmd->page_responses.out_success = counts[IOMMU_PAGE_RESP_SUCCESS];
	cmd->page_responses.out_invalid = counts[IOMMU_PAGE_RESP_INVALID];
	cmd->page_responses.out_failure = counts[IOMMU_PAGE_RESP_FAILURE];
	cmd->page_responses.out_last_grpid = grpid;
	cmd->page_responses.out_last_code = code;
	rc = iommufd_ucmd_respond(ucmd, sizeof(*cmd));
out_put:
	iommufd_put_object(ucmd->ictx, &idev->obj);
	return rc;
}

int iommufd_test(struct iommufd_ucmd *ucmd)
{
	struct iommu_test_cmd *cmd = ucmd->cmd;

	switch (cmd->op) {
	case IOMMU_TEST_OP_ADD_RESERVED:
		return iommufd_test_add_reserved(ucmd, cmd->id, cmd->add_reserved.start,
						 cmd->add_reserved.length);
	case IOMMU_TEST_OP_MOCK_DOMAIN:
	case IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS:
		return iommufd_test_mock_domain(ucmd, cmd);
	case IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE:
		return iommufd_test_mock_domain_replace(ucmd, cmd);
	case IOMMU_TEST_OP_MD_CHECK_MAP:
		return iommufd_test_md_check_map(ucmd, cmd->id, cmd->check_map.iova,
						 cmd->check_map.length, cmd->check_map.uptr);
	case IOMMU_TEST_OP_MD_CHECK_REFS:
		return iommufd_test_md_check_refs(ucmd, cmd->check_refs.uptr,
						  cmd->check_refs.length, cmd->check_refs.refs);
	case IOMMU_TEST_OP_CREATE_ACCESS:
	case IOMMU_TEST_OP_DESTROY_ACCESS_PAGES:
	case IOMMU_TEST_OP_ACCESS_PAGES:
	case IOMMU_TEST_OP_ACCESS_RW:
	case IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT:
	case IOMMU_TEST_OP_ACCESS_REPLACE_IOAS:
		return iommufd_test_access(ucmd); /* access.c */
	case IOMMU_TEST_OP_DIRTY:
		return iommufd_test_dirty(ucmd); /* dirty.c */
	case IOMMU_TEST_OP_MD_CHECK_IOTLB:
		return iommufd_test_md_check_iotlb(ucmd, cmd->id, cmd->check_iotlb.id,
						   cmd->check_iotlb.iotlb);
	case IOMMU_TEST_OP_DEV_CHECK_CACHE:
		return iommufd_test_dev_check_cache(ucmd, cmd->id, cmd->check_dev_cache.id,
						    cmd->check_dev_cache.cache);
	case IOMMU_TEST_OP_TRIGGER_IOPF:
		return iommufd_test_trigger_iopf(ucmd, cmd);
	case IOMMU_TEST_OP_UIOMMU_PAGE_RESPONSES:
		return iommufd_test_page_responses(ucmd, cmd);
	case IOMMU_TEST_OP_TRIGGER_VEVENT:
		return iommufd_test_trigger_vevent(ucmd, cmd->trigger_vevent.dev_id);
	case IOMMU_TEST_OP_PASID_ATTACH:
	case IOMMU_TEST_OP_PASID_REPLACE:
	case IOMMU_TEST_OP_PASID_DETACH:
		return iommufd_test_pasid_op(ucmd, cmd);
	case IOMMU_TEST_OP_PASID_CHECK_HWPT:
		return iommufd_test_pasid_check_hwpt(ucmd, cmd->id, cmd->pasid_check.pasid,
						     cmd->pasid_check.hwpt_id);
	case IOMMU_TEST_OP_DMABUF_GET:
		return iommufd_test_dmabuf_get(ucmd, cmd->dmabuf_get.length,
					       cmd->dmabuf_get.open_flags); /* dmabuf.c */
	case IOMMU_TEST_OP_DMABUF_REVOKE:
		return iommufd_test_dmabuf_revoke(cmd->dmabuf_revoke.dmabuf_fd,
						  cmd->dmabuf_revoke.revoked);
	case IOMMU_TEST_OP_MD_CHECK_DMABUF:
		return iommufd_test_md_check_dmabuf(ucmd, cmd->id, cmd->check_dmabuf.dmabuf_fd,
						    cmd->check_dmabuf.iova,
						    cmd->check_dmabuf.length,
						    cmd->check_dmabuf.offset); /* dmabuf.c */
	default:
		return -EOPNOTSUPP;
	}
}
