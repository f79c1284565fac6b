/* SPDX-License-Identifier: MIT */
/*
 * Helpers of the VFIO tests that run under uiommu-run: a machine of the test's own, and a sysfs
 * store as `echo VALUE > PATH` does it.
 */
#ifndef UIOMMU_TESTS_VFIO_UTILS_H
#define UIOMMU_TESTS_VFIO_UTILS_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "topology_file.h"
#include "uiommu/iommufd.h"
#include "uiommu/vfio_compat.h"

/*
 * Boots the machine of @topology (JSON) in this process: written to a file that
 * $UIOMMU_TOPOLOGY names, loaded at the first look at /sys (@probe, a path that must exist).
 */
static inline void vfio_machine(const char *topology, const char *probe)
{
	char path[] = "/tmp/uiommu-vfio-topo-XXXXXX";

	if (topology_file_env(path, topology))
		abort();
	if (access(probe, F_OK))
		abort();
	unlink(path);
}

/* The number of the IOMMU group whose link is @path: its target's basename, as QEMU reads it. */
static inline int vfio_group_id_of_link(const char *path)
{
	char link[256];
	ssize_t n;
	int id;

	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return -1;
	link[n] = '\0';
	return sscanf(strrchr(link, '/') + 1, "%d", &id) == 1 ? id : -1;
}

/* The number of @bdf's IOMMU group. */
static inline int vfio_group_id(const char *bdf)
{
	char path[96];

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	return vfio_group_id_of_link(path);
}

/* Writes @s to the attribute @path: 0, or -1 with the store's errno. */
static inline int sysfs_store(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY), rc;

	if (fd < 0)
		return -1;
	rc = write(fd, s, strlen(s)) == (ssize_t)strlen(s) ? 0 : -1;
	if (rc) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return close(fd);
}

/* VFIO_DEVICE_BIND_IOMMUFD of the cdev fd @vfd to @iommufd; *@devid (if given) on success. */
static inline int vfio_bind(int vfd, int iommufd, uint32_t *devid)
{
	struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
	int rc = ioctl(vfd, VFIO_DEVICE_BIND_IOMMUFD, &bind);

	if (!rc && devid)
		*devid = bind.out_devid;
	return rc;
}

/* IOMMU_IOAS_MAP at a fixed IOVA, readable and writable. */
static inline int ioas_map_fixed(int fd, uint32_t ioas, uint64_t iova, void *va, uint64_t len)
{
	struct iommu_ioas_map cmd = {
		.size = sizeof(cmd),
		.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE |
			 IOMMU_IOAS_MAP_FIXED_IOVA,
		.ioas_id = ioas, .user_va = (uintptr_t)va, .length = len, .iova = iova,
	};

	return ioctl(fd, IOMMU_IOAS_MAP, &cmd);
}

static inline int ioas_unmap(int fd, uint32_t ioas, uint64_t iova, uint64_t len)
{
	struct iommu_ioas_unmap cmd = {
		.size = sizeof(cmd), .ioas_id = ioas, .iova = iova, .length = len,
	};

	return ioctl(fd, IOMMU_IOAS_UNMAP, &cmd);
}

#endif
