/* SPDX-License-Identifier: MIT */
/*
 * The SMMUv3 model as the core's and iommufd's driver (arm-smmu-v3-iommu.c): how the machine
 * registers an instance. The model's own API is arm-smmu-v3.h.
 */
#ifndef UIOMMU_DRIVERS_ARM_SMMU_V3_ARM_SMMU_V3_IOMMU_H
#define UIOMMU_DRIVERS_ARM_SMMU_V3_ARM_SMMU_V3_IOMMU_H

#include <stdbool.h>

#include "drivers/arm-smmu-v3/arm-smmu-v3.h"
#include "iommu/iommu.h"

extern const struct iommu_ops arm_smmu_iommu_ops;

/**
 * arm_smmu_iommu_register() - register @iommu (its name filled in) as an SMMUv3 with
 * @features; devices behind it are masters with their requester ID as StreamID.
 *
 * Return: 0, -EINVAL for bad features, -ENOMEM, or an errno of iommu_device_register().
 */
int arm_smmu_iommu_register(struct iommu_device *iommu, const struct arm_smmu_features *features);

/** arm_smmu_iommu_unregister() - the reverse; no device may still be probed behind @iommu */
void arm_smmu_iommu_unregister(struct iommu_device *iommu);

/** arm_smmu_iommu_is_instance() - is @iommu driven by the SMMUv3 model? */
bool arm_smmu_iommu_is_instance(const struct iommu_device *iommu);

#endif
