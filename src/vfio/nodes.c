// SPDX-License-Identifier: MIT
/*
 * The VFIO device nodes as a program sees them: /dev/vfio/vfio (the container), /dev/vfio/<G>
 * (groups), /dev/vfio/devices/vfioN (device cdevs), /dev/iommu, and the /proc/self/fd/N links
 * of fds opened through them. The preload layer forwards open, stat in every spelling, access,
 * readlink and realpath of these paths here.
 *
 * Identity. A real node is a character device; a program checks that (QEMU's open_cdev()
 * compares the fd's st_rdev with the numbers in sysfs's `dev` file). stat() of a node path and
 * fstat() of an fd opened through it answer S_IFCHR with the numbers of machine/sysfs.h, which
 * the sysfs `dev` files show too; readlink("/proc/self/fd/N") names the node, or
 * "anon_inode:[vfio-device]" for a group's device fd (file.c keeps each file's node). The
 * owner is the caller (a udev rule gives a VM's user its VFIO nodes), so access() answers as
 * for the user's own 0600 (0666 for the container) files.
 *
 * Existence follows the machine: vfioN exists while the function with that index is bound to
 * vfio-pci, <G> while a present function of group G is; /dev/vfio/vfio and /dev/iommu always.
 * The directories /dev/vfio and /dev/vfio/devices are real directories of the virtual sysfs's
 * tree (sysfs_dev_redirect()), holding an empty file per node, so that readdir lists the nodes
 * (with d_type DT_REG: a difference from devtmpfs that only a listing shows).
 *
 * Nothing here keeps state: every answer is computed from the topology and the fd table.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "iommufd/iommufd_private.h"
#include "lib/compiler.h"
#include "lib/sys.h"
#include "machine/sysfs.h"
#include "machine/topology.h"
#include "uiommu/uiommu.h"
#include "vfio/group.h"


static const struct iommufd_node vfio_container_node = {
	.path = VFIO_CONTAINER_PATH, .major = SYSFS_MISC_MAJOR, .minor = SYSFS_VFIO_MISC_MINOR,
	.mode = S_IFCHR | 0666,
};

static const struct iommufd_node vfio_iommu_node = {
	.path = "/dev/iommu", .major = IOMMUFD_NODE_MAJOR, .minor = IOMMUFD_NODE_MINOR,
	.mode = S_IFCHR | 0660,
};

static int vfio_ret(int rc)
{
	if (rc < 0) {
		errno = -rc;
		return -1;
	}
	return rc;
}

/* A decimal number with no sign and no leading zero, the whole of @s. */
static bool vfio_parse_uint(const char *s, unsigned int *n)
{
	unsigned long v;
	char *end;

	if (*s < '0' || *s > '9' || (s[0] == '0' && s[1]))
		return false;
	v = strtoul(s, &end, 10);
	if (*end || v > INT_MAX)
		return false;
	*n = (unsigned int)v;
	return true;
}

/* "/proc/self/fd/N" (or thread-self, our pid, /dev/fd/N) naming an fd of ours: N. */
static bool vfio_proc_fd(const char *path, int *fd)
{
	static const char *const prefixes[] = { "/proc/self/fd/", "/proc/thread-self/fd/",
						"/dev/fd/" };
	char own[32];
	unsigned int n;

	/* Cheap first: every stat() of the program comes through here. */
	if (!path || (strncmp(path, "/proc/", 6) && strncmp(path, "/dev/fd/", 8)))
		return false;
	snprintf(own, sizeof(own), "/proc/%d/fd/", (int)getpid());
	for (size_t i = 0; i <= ARRAY_SIZE(prefixes); i++) {
		const char *p = i < ARRAY_SIZE(prefixes) ? prefixes[i] : own;
		size_t len = strlen(p);

		if (!strncmp(path, p, len) && vfio_parse_uint(path + len, &n) &&
		    uiommu_is_fd((int)n)) {
			*fd = (int)n;
			return true;
		}
	}
	return false;
}

enum vfio_node_kind vfio_node_parse(const char *path, unsigned int *num)
{
	const char *rest;

	if (!strcmp(path, "/dev/iommu"))
		return VFIO_NODE_IOMMU;
	if (!strcmp(path, VFIO_DEV_DIR) || !strcmp(path, VFIO_DEV_DIR "/") ||
	    !strcmp(path, VFIO_CDEV_DIR) || !strcmp(path, VFIO_DEV_DIR "/devices"))
		return VFIO_NODE_DIR;
	if (!strcmp(path, VFIO_CONTAINER_PATH))
		return VFIO_NODE_CONTAINER;
	if (!strncmp(path, VFIO_CDEV_DIR "vfio", strlen(VFIO_CDEV_DIR "vfio")) &&
	    vfio_parse_uint(path + strlen(VFIO_CDEV_DIR "vfio"), num))
		return VFIO_NODE_CDEV;
	rest = path + strlen(VFIO_DEV_DIR "/");
	if (!strncmp(path, VFIO_DEV_DIR "/", strlen(VFIO_DEV_DIR "/")) &&
	    vfio_parse_uint(rest, num))
		return VFIO_NODE_GROUP;
	return VFIO_NODE_NONE;
}

/* ---- existence -------------------------------------------------------------------------------- */

struct vfio_node_lookup {
	int group_id;          /* >= 0: a group node; else the cdev index */
	int index;
	int minor;             /* found: the group's minor */
	bool found;
};

static int vfio_node_lookup_fn(const struct topology_device_info *info, void *arg)
{
	struct vfio_node_lookup *l = arg;
	struct iommu_group *group;

	if (!info->present || !info->vfio)
		return 0;
	if (l->group_id < 0) {
		l->found = info->vfio_index == l->index;
		return l->found;
	}
	group = iommu_group_get(info->dev);
	if (group) {
		l->found = iommu_group_id(group) == l->group_id;
		iommu_group_put(group);
	}
	if (l->found)
		l->minor = info->vfio_group_minor;
	return l->found;
}

bool vfio_group_node_exists(int group_id, int *minor)
{
	struct vfio_node_lookup l = { .group_id = group_id };

	if (sysfs_machine_boot())
		return false;
	topology_for_each_device(vfio_node_lookup_fn, &l);
	if (l.found)
		*minor = l.minor;
	return l.found;
}

static bool vfio_cdev_node_exists(unsigned int index)
{
	struct vfio_node_lookup l = { .group_id = -1, .index = (int)index };

	if (sysfs_machine_boot())
		return false;
	topology_for_each_device(vfio_node_lookup_fn, &l);
	return l.found;
}

/* The node @path names, if it exists now: -ENOENT otherwise, -EISDIR for a directory. */
static int vfio_node_get(const char *path, struct iommufd_node *node)
{
	unsigned int num = 0;
	int minor;

	switch (vfio_node_parse(path, &num)) {
	case VFIO_NODE_IOMMU:
		*node = vfio_iommu_node;
		return 0;
	case VFIO_NODE_CONTAINER:
		*node = vfio_container_node;
		return 0;
	case VFIO_NODE_DIR:
		return -EISDIR;
	case VFIO_NODE_GROUP:
		if (!vfio_group_node_exists((int)num, &minor))
			return -ENOENT;
		*node = (struct iommufd_node){ .major = SYSFS_VFIO_GROUP_MAJOR,
					       .minor = (unsigned int)minor,
					       .mode = S_IFCHR | 0600 };
		snprintf(node->path, sizeof(node->path), VFIO_DEV_DIR "/%u", num);
		return 0;
	case VFIO_NODE_CDEV:
		if (!vfio_cdev_node_exists(num))
			return -ENOENT;
		*node = (struct iommufd_node){ .major = SYSFS_VFIO_CDEV_MAJOR, .minor = num,
					       .mode = S_IFCHR | 0600 };
		snprintf(node->path, sizeof(node->path), VFIO_CDEV_DIR "vfio%u", num);
		return 0;
	default:
		return -ENOENT;
	}
}

/* ---- the public entry points ------------------------------------------------------------------ */

UIOMMU_EXPORT bool uiommu_vfio_claims(const char *path)
{
	size_t n = strlen(VFIO_DEV_DIR);

	return path && !strncmp(path, VFIO_DEV_DIR, n) && (path[n] == '\0' || path[n] == '/');
}

UIOMMU_EXPORT bool uiommu_node_claims(const char *path)
{
	int fd;

	/* No lock, no I/O: the preload layer asks for every path a program stats. */
	if (!path || path[0] != '/' || (path[1] != 'd' && path[1] != 'p'))
		return false;
	return uiommu_vfio_claims(path) || !strcmp(path, "/dev/iommu") || vfio_proc_fd(path, &fd);
}

UIOMMU_EXPORT int uiommu_vfio_open(const char *path, int flags)
{
	char real[PATH_MAX];
	unsigned int num = 0;
	int rc;

	if (!uiommu_vfio_claims(path))
		return vfio_ret(-ENOENT);
	switch (vfio_node_parse(path, &num)) {
	case VFIO_NODE_CONTAINER:
		return vfio_ret(iommufd_file_open_ctx(flags, &vfio_container_node));
	case VFIO_NODE_CDEV:
		return vfio_ret(vfio_cdev_open_path(path, flags));
	case VFIO_NODE_GROUP:
		return vfio_ret(vfio_group_open((int)num, flags));
	case VFIO_NODE_DIR:
		if ((flags & O_ACCMODE) != O_RDONLY)
			return vfio_ret(-EISDIR);
		rc = sysfs_dev_redirect(path, real, sizeof(real));
		if (rc)
			return vfio_ret(rc);
		return (int)sys_openat(AT_FDCWD, real, flags & ~O_CREAT, 0);
	default:
		return vfio_ret((flags & O_CREAT) ? -EACCES : -ENOENT);
	}
}

UIOMMU_EXPORT int uiommu_node_stat(const char *path, struct stat *st, int flags)
{
	struct iommufd_node node;
	char real[PATH_MAX];
	int fd, rc;

	if (vfio_proc_fd(path, &fd)) {
		if (flags & AT_SYMLINK_NOFOLLOW) /* the /proc link itself */
			return (int)sys_fstatat(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
		return uiommu_fstat(fd, st);
	}
	rc = vfio_node_get(path, &node);
	if (rc == -EISDIR) {
		rc = sysfs_dev_redirect(path, real, sizeof(real));
		if (rc)
			return vfio_ret(rc);
		return (int)sys_fstatat(AT_FDCWD, real, st, 0);
	}
	if (rc)
		return vfio_ret(rc);
	iommufd_node_stat(&node, st);
	return 0;
}

static void vfio_stat_to_statx(const struct stat *st, struct statx *stx)
{
	memset(stx, 0, sizeof(*stx));
	stx->stx_mask = STATX_BASIC_STATS;
	stx->stx_blksize = (uint32_t)st->st_blksize;
	stx->stx_nlink = (uint32_t)st->st_nlink;
	stx->stx_uid = st->st_uid;
	stx->stx_gid = st->st_gid;
	stx->stx_mode = (uint16_t)st->st_mode;
	stx->stx_ino = st->st_ino;
	stx->stx_size = (uint64_t)st->st_size;
	stx->stx_blocks = (uint64_t)st->st_blocks;
	stx->stx_atime.tv_sec = st->st_atime;
	stx->stx_mtime.tv_sec = st->st_mtime;
	stx->stx_ctime.tv_sec = st->st_ctime;
	stx->stx_rdev_major = major(st->st_rdev);
	stx->stx_rdev_minor = minor(st->st_rdev);
	stx->stx_dev_major = major(st->st_dev);
	stx->stx_dev_minor = minor(st->st_dev);
}

UIOMMU_EXPORT int uiommu_node_statx(int dirfd, const char *path, int flags, unsigned int mask,
				    struct statx *stx)
{
	struct stat st;
	int rc;

	(void)mask; /* the basic fields are all there is */
	if ((flags & AT_EMPTY_PATH) && (!path || !*path))
		rc = uiommu_fstat(dirfd, &st);
	else
		rc = uiommu_node_stat(path, &st, flags & AT_SYMLINK_NOFOLLOW);
	if (!rc)
		vfio_stat_to_statx(&st, stx);
	return rc;
}

UIOMMU_EXPORT int uiommu_fd_link_statx(int dirfd, const char *path, int flags,
				       unsigned int mask, struct statx *stx)
{
	struct stat st;
	int saved = errno;

	/* As uiommu_fd_link_stat() (procfd.c): the host's answer, a uiommu file's node for it. */
	if (sys_statx(dirfd, path, flags, mask, stx))
		return -1;
	if (!(flags & AT_SYMLINK_NOFOLLOW) && S_ISSOCK(stx->stx_mode) &&
	    !iommufd_procfd_link_stat(dirfd, path, (unsigned long)stx->stx_ino, &st))
		vfio_stat_to_statx(&st, stx);
	errno = saved;
	return 0;
}

UIOMMU_EXPORT int uiommu_node_access(const char *path, int mode)
{
	struct stat st;

	if (uiommu_node_stat(path, &st, 0))
		return -1;
	/* The caller owns the nodes: the owner's bits decide. */
	if (((mode & R_OK) && !(st.st_mode & S_IRUSR)) ||
	    ((mode & W_OK) && !(st.st_mode & S_IWUSR)) ||
	    ((mode & X_OK) && !(st.st_mode & S_IXUSR)))
		return vfio_ret(-EACCES);
	return 0;
}

UIOMMU_EXPORT ssize_t uiommu_node_readlink(const char *path, char *buf, size_t len)
{
	struct stat st;
	int fd;

	if (vfio_proc_fd(path, &fd))
		return uiommu_fd_path(fd, buf, len);
	/* A node or a directory is no link. */
	if (uiommu_node_stat(path, &st, 0))
		return -1;
	return vfio_ret(-EINVAL);
}

UIOMMU_EXPORT char *uiommu_node_realpath(const char *path, char *resolved)
{
	char buf[PATH_MAX], real[PATH_MAX];
	struct iommufd_node node;
	struct stat st;
	const char *out;
	ssize_t n;
	int fd, rc;

	if (vfio_proc_fd(path, &fd)) {
		n = uiommu_fd_path(fd, buf, sizeof(buf) - 1);
		if (n < 0)
			return NULL;
		buf[n] = '\0';
		/* An anonymous file (or a dma-buf's "/dmabuf:"): nothing to resolve to. */
		if (uiommu_fstat(fd, &st) || !S_ISCHR(st.st_mode)) {
			errno = ENOENT;
			return NULL;
		}
		out = buf;
	} else if (uiommu_sysfs_claims(path)) {
		/* The tree resolves the links; the answer names /sys again. */
		if (uiommu_sysfs_redirect(path, buf, sizeof(buf)))
			return NULL;
		if (!realpath(buf, real))
			return NULL;
		rc = sysfs_unredirect(real, buf, sizeof(buf));
		if (rc) {
			errno = -rc;
			return NULL;
		}
		out = buf;
	} else {
		rc = vfio_node_get(path, &node);
		if (rc == -EISDIR) {
			snprintf(buf, sizeof(buf), "%s", path);
			n = (ssize_t)strlen(buf);
			if (n > 1 && buf[n - 1] == '/')
				buf[n - 1] = '\0';
			out = buf;
		} else if (rc) {
			errno = -rc;
			return NULL;
		} else {
			out = node.path;
		}
	}
	if (!resolved) {
		char *dup = strdup(out);

		if (!dup)
			errno = ENOMEM;
		return dup;
	}
	snprintf(resolved, PATH_MAX, "%s", out);
	return resolved;
}

UIOMMU_EXPORT int uiommu_node_redirect(const char *path, char *buf, size_t len)
{
	int fd;

	if (vfio_proc_fd(path, &fd))
		return vfio_ret(-ENOTDIR);
	if (!uiommu_vfio_claims(path))
		return vfio_ret(-ENOENT);
	return vfio_ret(sysfs_dev_redirect(path, buf, len));
}
