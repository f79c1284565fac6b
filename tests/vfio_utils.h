/* SPDX-License-Identifier: MIT */
/*
 * Helpers of the VFIO tests that run under uiommu-run: a machine of the test's own, and a sysfs
 * store as `echo VALUE > PATH` does it.
 */
#ifndef UIOMMU_TESTS_VFIO_UTILS_H
#define UIOMMU_TESTS_VFIO_UTILS_H

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * Boots the machine of @topology (JSON) in this process: written to a file that
 * $UIOMMU_TOPOLOGY names, loaded at the first look at /sys (@probe, a path that must exist).
 */
static inline void vfio_machine(const char *topology, const char *probe)
{
	char path[] = "/tmp/uiommu-vfio-topo-XXXXXX";
	int fd = mkstemp(path);

	if (fd < 0 || write(fd, topology, strlen(topology)) != (ssize_t)strlen(topology))
		abort();
	close(fd);
	setenv("UIOMMU_TOPOLOGY", path, 1);
	if (access(probe, F_OK))
		abort();
	unlink(path);
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

#endif
