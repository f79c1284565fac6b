// SPDX-License-Identifier: MIT
/*
 * IOMMU_TEST_CMD, the kernel selftest's back door (CONFIG_IOMMUFD_TEST).
 *
 * This layer serves ADD_RESERVED, which needs nothing but an IOAS: it is the test route into the
 * reserved-range API that drivers use. Every other op needs the mock IOMMU driver and its
 * devices, which arrive with issue 4; until then they answer EOPNOTSUPP, the kernel's answer for
 * an op it does not know.
 */
#include <errno.h>

#include "iommufd/iommufd_private.h"

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

int iommufd_test(struct iommufd_ucmd *ucmd)
{
	struct iommu_test_cmd *cmd = ucmd->cmd;

	switch (cmd->op) {
	case IOMMU_TEST_OP_ADD_RESERVED:
		return iommufd_test_add_reserved(ucmd, cmd->id, cmd->add_reserved.start,
						 cmd->add_reserved.length);
	default:
		return -EOPNOTSUPP;
	}
}
