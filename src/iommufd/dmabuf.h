/* SPDX-License-Identifier: MIT */
/* The selftest's dma-buf (dmabuf.c): what MAP_FILE and the pages need to know of it. */
#ifndef UIOMMU_IOMMUFD_DMABUF_H
#define UIOMMU_IOMMUFD_DMABUF_H

#include <stdbool.h>
#include <stdint.h>

struct iommufd_dmabuf;
struct iommufd_ucmd;
struct iopt_pages;

struct iommufd_dmabuf *iommufd_dmabuf_get(int fd);
void iommufd_dmabuf_put(struct iommufd_dmabuf *dmabuf);
int iommufd_dmabuf_check_map(struct iommufd_dmabuf *dmabuf, uint64_t start, uint64_t length);
int iommufd_dmabuf_memfd(struct iommufd_dmabuf *dmabuf);
int iommufd_dmabuf_attach_pages(struct iommufd_dmabuf *dmabuf, struct iopt_pages *pages);
void iommufd_dmabuf_detach_pages(struct iommufd_dmabuf *dmabuf, struct iopt_pages *pages);

int iommufd_test_dmabuf_get(struct iommufd_ucmd *ucmd, uint32_t length, uint32_t open_flags);
int iommufd_test_dmabuf_revoke(int fd, bool revoked);
int iommufd_test_md_check_dmabuf(struct iommufd_ucmd *ucmd, uint32_t hwpt_id, int fd,
				 uint64_t iova, uint64_t length, uint64_t offset);

#endif
