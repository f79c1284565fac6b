// SPDX-License-Identifier: MIT
/*
 * The SMMUv3 model as an IOMMU driver: its iommu_ops for the core and iommufd, and the
 * vIOMMU ops (the kernel's arm-smmu-v3.c probe/attach half and arm-smmu-v3-iommufd.c). The
 * model itself (arm-smmu-v3.c) knows nothing of devices, groups or iommufd objects; this file
 * maps them onto it:
 *   - an IOMMU instance (struct iommu_device) drives one struct arm_smmu_device (@priv);
 *   - a probed device is one master whose StreamID is its PCI requester ID (bus << 8 | devfn),
 *     its only stream, kept in dev->iommu_data->priv from probe to release;
 *   - a vIOMMU of type ARM_SMMUV3 is a struct arm_vsmmu over the NEST_PARENT domain iommufd
 *     gives viommu_init; its events go to iommufd through the report_event service, as
 *     ARM_SMMUV3 vEVENTs; a vDEVICE gives its master the vSID;
 *   - the guest's invalidation array goes through iommufd's one loop, one command at a time,
 *     into the kernel's batches of 63.
 * Each device has a group of its own: SMMUv3 systems isolate functions with ACS, and the
 * topology refuses a shared group key for this driver.
 *
 * Page requests (hw-iommus.md A.10). The kernel's SMMUv3 driver takes I/O page faults from
 * stalls, not from PCI PRI: a master whose firmware says "dma-can-stall" stalls its stage-1
 * faults when the CD asks (CD.S), and the stall event becomes a page request answered by
 * CMD_RESUME. Here a function the topology gives "pri" is such a master: probe puts it on the
 * instance's I/O page fault queue and marks it stalling; its fault-capable domains' faults
 * reach iommu_report_device_fault() from the DMA engine (the one issuer of transactions), and
 * page_response records the CMD_RESUME. The guest's vEVENTQ sees no stalled fault.
 *
 * Locks: iommufd's vIOMMU vDEVICE lock -> smmu->lock (arm-smmu-v3.c), from vdevice_alloc and
 * vdevice_destroy. Events are reported with no lock of the model held.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "drivers/arm-smmu-v3/arm-smmu-v3.h"
#include "drivers/arm-smmu-v3/arm-smmu-v3-iommu.h"
#include "iommu/iommufd_driver.h"
#include "iommu/iotlb.h"
#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "uiommu/iommufd.h"

_Static_assert(sizeof(struct arm_smmu_hw_info) == sizeof(struct iommu_hw_info_arm_smmuv3),
	       "the model's registers are the uAPI's layout");

/* An instance (iommu->priv): the model, and the queue its stalled faults go to. */
struct arm_smmu_inst {
	struct arm_smmu_device *smmu;
	struct iopf_queue *iopfq;
};

struct arm_vsmmu_drv {
	struct iommu_viommu core;
	struct arm_vsmmu *vsmmu;      /* set by viommu_init; NULL before */
};

struct arm_vdev_drv {
	struct iommu_vdevice core;
	struct arm_smmu_master *master;
};

static struct arm_smmu_inst *to_inst(const struct iommu_device *iommu)
{
	return iommu->priv;
}

static struct arm_smmu_device *dev_to_smmu(struct device *dev)
{
	return to_inst(dev->iommu)->smmu;
}

static struct arm_smmu_master *dev_to_master(struct device *dev)
{
	return dev->iommu_data ? dev->iommu_data->priv : NULL;
}

/* The StreamID of a PCI function: its requester ID. */
static int arm_smmu_dev_sid(const struct device *dev, uint32_t *sid)
{
	unsigned int domain, bus, slot, fn;

	if (sscanf(dev->name, "%x:%x:%x.%x", &domain, &bus, &slot, &fn) != 4 || bus > 255 ||
	    slot > 31 || fn > 7)
		return -EINVAL;
	*sid = bus << 8 | slot << 3 | fn;
	return 0;
}

static bool arm_smmu_capable(struct device *dev, enum iommu_cap cap)
{
	struct arm_smmu_hw_info info;

	arm_smmu_hw_info(dev_to_smmu(dev), &info);
	switch (cap) {
	case IOMMU_CAP_CACHE_COHERENCY:
	case IOMMU_CAP_NOEXEC:
		return true;
	case IOMMU_CAP_DIRTY_TRACKING:
		return ((info.idr[0] >> IDR0_HTTU_SHIFT) & 3) >= IDR0_HTTU_AD;
	default:
		return false;
	}
}

static struct iommu_domain *arm_smmu_domain_alloc_paging_flags(
	struct device *dev, uint32_t flags, const struct iommu_user_data *user_data)
{
	if (user_data)
		return ERR_PTR(-EOPNOTSUPP);
	/* PASID-capable paging domains are plain stage-2 domains here. */
	return arm_smmu_domain_alloc_paging(dev_to_smmu(dev), flags & ~IOMMU_DOMAIN_ALLOC_PASID,
					    12);
}

static struct iommu_domain *arm_smmu_domain_alloc_paging_dev(struct device *dev)
{
	return arm_smmu_domain_alloc_paging(dev_to_smmu(dev), 0, 12);
}

static struct iommu_device *arm_smmu_probe_device(struct device *dev)
{
	struct arm_smmu_master *master;
	uint32_t sid;
	int rc;

	if (!dev->iommu || dev->iommu->ops != &arm_smmu_iommu_ops)
		return ERR_PTR(-ENODEV);
	rc = arm_smmu_dev_sid(dev, &sid);
	if (rc)
		return ERR_PTR(rc);
	master = arm_smmu_master_alloc(dev_to_smmu(dev), sid);
	if (IS_ERR(master))
		return ERR_CAST(master);
	if (dev->pri) {
		rc = iopf_queue_add_device(to_inst(dev->iommu)->iopfq, dev);
		if (rc)
			goto err_free;
		arm_smmu_master_set_stall(master, true);
	}
	dev->iommu_data->priv = master;
	return dev->iommu;

err_free:
	arm_smmu_master_free(master);
	return ERR_PTR(rc);
}

static void arm_smmu_release_device(struct device *dev)
{
	struct arm_smmu_master *master = dev_to_master(dev);

	if (!master)
		return;
	if (dev->pri && iopf_dev_fault_param_users(dev) > 0)
		iopf_queue_remove_device(to_inst(dev->iommu)->iopfq, dev);
	arm_smmu_master_attach(master, NULL);
	arm_smmu_master_free(master);
	dev->iommu_data->priv = NULL;
}

static struct iommu_group *arm_smmu_device_group(struct device *dev)
{
	(void)dev;
	return iommu_group_alloc();
}

static void *arm_smmu_hw_info_op(struct device *dev, uint32_t *length, uint32_t *type)
{
	struct arm_smmu_hw_info *info;

	if (*type != IOMMU_HW_INFO_TYPE_DEFAULT && *type != IOMMU_HW_INFO_TYPE_ARM_SMMUV3)
		return ERR_PTR(-EOPNOTSUPP);
	info = uiommu_zalloc(sizeof(*info));
	if (!info)
		return ERR_PTR(-ENOMEM);
	arm_smmu_hw_info(dev_to_smmu(dev), info);
	*length = sizeof(*info);
	*type = IOMMU_HW_INFO_TYPE_ARM_SMMUV3;
	return info;
}

/* ---- the vIOMMU ---------------------------------------------------------------------------- */

static struct arm_vsmmu_drv *to_vsmmu_drv(struct iommu_viommu *viommu)
{
	return container_of(viommu, struct arm_vsmmu_drv, core);
}

static void arm_vsmmu_drv_destroy(struct iommu_viommu *viommu)
{
	struct arm_vsmmu_drv *drv = to_vsmmu_drv(viommu);

	if (drv->vsmmu)
		arm_vsmmu_free(drv->vsmmu);
	uiommu_free(drv);
}

static struct iommu_domain *arm_vsmmu_drv_alloc_nested(struct iommu_viommu *viommu,
						       uint32_t flags,
						       const struct iommu_user_data *user_data)
{
	struct iommu_domain *domain;

	domain = arm_vsmmu_domain_alloc_nested(to_vsmmu_drv(viommu)->vsmmu, flags, user_data);
	if (!IS_ERR(domain))
		domain->owner = &arm_smmu_iommu_ops;
	return domain;
}

struct arm_vsmmu_inv {
	struct arm_vsmmu *vsmmu;
	struct arm_vsmmu_batch batch;
};

static int arm_vsmmu_drv_invalidate_one(void *arg, const void *entry)
{
	struct arm_vsmmu_inv *inv = arg;
	const struct iommu_viommu_arm_smmuv3_invalidate *cmd = entry;

	return arm_vsmmu_batch_add(inv->vsmmu, &inv->batch, (const uint64_t *)cmd->cmd);
}

static int arm_vsmmu_drv_cache_invalidate(struct iommu_viommu *viommu,
					  struct iommu_user_data_array *array)
{
	struct iommu_viommu_arm_smmuv3_invalidate entry;
	struct arm_vsmmu_inv *inv;
	int rc;

	if (array->type != IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 || !array->entry_num) {
		array->entry_num = 0;
		return -EINVAL;
	}
	inv = uiommu_zalloc(sizeof(*inv));
	if (!inv) {
		array->entry_num = 0;
		return -ENOMEM;
	}
	inv->vsmmu = to_vsmmu_drv(viommu)->vsmmu;
	/* The kernel copies the whole array at once: a longer entry needs a zero tail (E2BIG). */
	rc = iommu_user_array_for_each(array, &entry, sizeof(entry), sizeof(entry), false,
				       arm_vsmmu_drv_invalidate_one, inv);
	if (!rc)
		arm_vsmmu_batch_issue(inv->vsmmu, &inv->batch);
	uiommu_free(inv);
	return rc;
}

static struct iommu_vdevice *arm_vsmmu_drv_vdevice_alloc(struct iommu_viommu *viommu,
							 struct device *dev, uint64_t virt_id)
{
	struct arm_vsmmu_drv *vdrv = to_vsmmu_drv(viommu);
	struct arm_vdev_drv *vdev;
	int rc;

	vdev = uiommu_zalloc(sizeof(*vdev));
	if (!vdev)
		return ERR_PTR(-ENOMEM);
	vdev->core.viommu = viommu;
	vdev->core.dev = dev;
	vdev->core.virt_id = virt_id;
	vdev->master = dev_to_master(dev);
	rc = arm_vsmmu_vdevice_add(vdrv->vsmmu, vdev->master, virt_id);
	if (rc) {
		uiommu_free(vdev);
		return ERR_PTR(rc);
	}
	return &vdev->core;
}

static void arm_vsmmu_drv_vdevice_destroy(struct iommu_vdevice *core)
{
	struct arm_vdev_drv *vdev = container_of(core, struct arm_vdev_drv, core);

	arm_vsmmu_vdevice_del(to_vsmmu_drv(core->viommu)->vsmmu, vdev->master);
	uiommu_free(vdev);
}

static const struct iommu_viommu_ops arm_vsmmu_drv_ops = {
	.destroy = arm_vsmmu_drv_destroy,
	.alloc_domain_nested = arm_vsmmu_drv_alloc_nested,
	.cache_invalidate = arm_vsmmu_drv_cache_invalidate,
	.vdevice_alloc = arm_vsmmu_drv_vdevice_alloc,
	.vdevice_destroy = arm_vsmmu_drv_vdevice_destroy,
};

static struct iommu_viommu *arm_smmu_viommu_alloc(struct device *dev, uint32_t type)
{
	struct arm_smmu_hw_info info;
	struct arm_vsmmu_drv *drv;

	arm_smmu_hw_info(dev_to_smmu(dev), &info);
	if (type != IOMMU_VIOMMU_TYPE_ARM_SMMUV3 || !(info.idr[0] & IDR0_S1P))
		return ERR_PTR(-EOPNOTSUPP);
	drv = uiommu_zalloc(sizeof(*drv));
	if (!drv)
		return ERR_PTR(-ENOMEM);
	drv->core.ops = &arm_vsmmu_drv_ops;
	return &drv->core;
}

/* A stage-1 fault for the guest: an ARM_SMMUV3 vEVENT (dropped when no vEVENTQ listens). */
static void arm_vsmmu_drv_event(void *arg, const uint64_t evt[4])
{
	struct iommu_viommu *viommu = arg;

	iommufd_viommu_report_event(viommu, IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, evt, 4 * sizeof(*evt));
}

static int arm_smmu_viommu_init(struct iommu_viommu *viommu, struct iommu_domain *parent_domain,
				const struct iommu_user_data *user_data)
{
	struct arm_vsmmu_drv *drv = to_vsmmu_drv(viommu);
	struct arm_vsmmu *vsmmu;

	(void)user_data; /* the plain ARM_SMMUV3 type takes no data */
	vsmmu = arm_vsmmu_alloc(to_inst(viommu->iommu_dev)->smmu, parent_domain);
	if (IS_ERR(vsmmu))
		return (int)PTR_ERR(vsmmu);
	arm_vsmmu_set_event_sink(vsmmu, arm_vsmmu_drv_event, viommu);
	drv->vsmmu = vsmmu;
	return 0;
}

/* The answer to a stalled transaction's page request: CMD_RESUME with its STAG (grpid). */
static void arm_smmu_page_response(struct device *dev, struct iopf_fault *evt,
				   struct iommu_page_response *msg)
{
	struct arm_smmu_master *master = dev_to_master(dev);
	unsigned int action;

	(void)evt;
	if (WARN_ON(!master))
		return;
	switch (msg->code) {
	case IOMMU_PAGE_RESP_SUCCESS:
		action = CMDQ_RESUME_RETRY;
		break;
	case IOMMU_PAGE_RESP_INVALID:
	case IOMMU_PAGE_RESP_FAILURE:
		action = CMDQ_RESUME_ABORT;
		break;
	default:
		action = CMDQ_RESUME_TERM;
		break;
	}
	arm_smmu_master_resume(master, (uint16_t)msg->grpid, action);
}

const struct iommu_ops arm_smmu_iommu_ops = {
	.name = "arm-smmu-v3",
	.capable = arm_smmu_capable,
	.domain_alloc_paging = arm_smmu_domain_alloc_paging_dev,
	.domain_alloc_paging_flags = arm_smmu_domain_alloc_paging_flags,
	.probe_device = arm_smmu_probe_device,
	.release_device = arm_smmu_release_device,
	.device_group = arm_smmu_device_group,
	.hw_info = arm_smmu_hw_info_op,
	.viommu_alloc = arm_smmu_viommu_alloc,
	.viommu_init = arm_smmu_viommu_init,
	.page_response = arm_smmu_page_response,
	.blocked_domain = &arm_smmu_blocked_domain,
};

static pthread_once_t arm_smmu_walker_once = PTHREAD_ONCE_INIT;
static int arm_smmu_walker_err;

/* The IOTLB model walks our paging domains with their permissions and dirty bits. */
static void arm_smmu_register_walker(void)
{
	arm_smmu_walker_err = iotlb_register_walker(&arm_smmu_iommu_ops, arm_smmu_s2_iotlb_walk);
}

int arm_smmu_iommu_register(struct iommu_device *iommu, const struct arm_smmu_features *features)
{
	struct arm_smmu_inst *inst;
	int rc;

	pthread_once(&arm_smmu_walker_once, arm_smmu_register_walker);
	if (arm_smmu_walker_err)
		return arm_smmu_walker_err;
	inst = uiommu_zalloc(sizeof(*inst));
	if (!inst)
		return -ENOMEM;
	inst->smmu = arm_smmu_device_alloc(features);
	if (IS_ERR(inst->smmu)) {
		rc = (int)PTR_ERR(inst->smmu);
		goto err_free_inst;
	}
	inst->iopfq = iopf_queue_alloc(iommu->name);
	if (!inst->iopfq) {
		rc = -ENOMEM;
		goto err_free_smmu;
	}
	iommu->priv = inst;
	iommu->dirty_tracking = features->httu;
	iommu->max_pasids = features->ssid_bits ? UINT32_C(1) << features->ssid_bits : 0;
	rc = iommu_device_register(iommu, &arm_smmu_iommu_ops);
	if (rc)
		goto err_free_queue;
	return 0;

err_free_queue:
	iommu->priv = NULL;
	iopf_queue_free(inst->iopfq);
err_free_smmu:
	arm_smmu_device_free(inst->smmu);
err_free_inst:
	uiommu_free(inst);
	return rc;
}

void arm_smmu_iommu_unregister(struct iommu_device *iommu)
{
	struct arm_smmu_inst *inst = to_inst(iommu);

	iommu_device_unregister(iommu);
	iopf_queue_free(inst->iopfq);
	arm_smmu_device_free(inst->smmu);
	uiommu_free(inst);
	iommu->priv = NULL;
}

bool arm_smmu_iommu_is_instance(const struct iommu_device *iommu)
{
	return iommu && iommu->ops == &arm_smmu_iommu_ops;
}
