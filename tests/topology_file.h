/* SPDX-License-Identifier: MIT */
/*
 * A topology (or any text) in a temporary file, the way the tests hand a machine to the
 * library: topology_load(path) in the white-box tests, $UIOMMU_TOPOLOGY for the ones that boot
 * the machine at their first open. Libc only, so any test may include it.
 */
#ifndef UIOMMU_TESTS_TOPOLOGY_FILE_H
#define UIOMMU_TESTS_TOPOLOGY_FILE_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * Writes @text to a new file made from @path, a mkstemp() template that gets the file's name.
 * Return: 0, or -errno with no file left behind.
 */
static inline int topology_file_write(char *path, const char *text)
{
	size_t len = strlen(text);
	int fd = mkstemp(path), rc = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != (ssize_t)len)
		rc = -EIO;
	close(fd);
	if (rc)
		unlink(path);
	return rc;
}

/*
 * Writes @json to a new file made from @path (as above) and names it in $UIOMMU_TOPOLOGY: the
 * machine this process boots at its first open. The caller unlinks @path once it booted.
 * Return: 0, or -errno.
 */
static inline int topology_file_env(char *path, const char *json)
{
	int rc = topology_file_write(path, json);

	if (!rc && setenv("UIOMMU_TOPOLOGY", path, 1)) {
		rc = -errno;
		unlink(path);
	}
	return rc;
}

#endif
