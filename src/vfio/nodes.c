// SPDX-License-Identifier: MIT
/*
 * The VFIO device nodes as a program sees them: /dev/vfio/vfio (the container), /dev/vfio/<G>
 * (groups), /dev/vfio/devices/vfioN (device cdevs), /dev/iommu, and the /proc/self/fd/N links
 * of fds opened through them. The preload layer forwards open, stat in every spelling, access,
 * readlink and realpath of these paths here, and statx, access and realpath of any fd's link
 * (another process's too: procfd.c's registry names its node), which the host would answer
 * for the file's socket.
 *
 * Identity. A real node is a character device; a program checks that (QEMU's open_cdev()
 * compares the fd's st_rdev with the numbers in sysfs's `dev` file). stat() of a node path and
 * fstat() of an fd opened through it answer S_IFCHR with the numbers of machine/sysfs.h, which
 * the sysfs `dev` files show too; readlink("/proc/self/fd/N") names the node, or
 * "anon_inode:[vfio-device]" for a group's device fd (file.c keeps each file's node). The
 * owner is the caller (a udev rule gives a VM's user its VFIO nodes), so access() answers as
 * for the user's own 0600 (0666 for the container) files, by the kernel's rules
 * (generic_permission(): no x bit, no X_OK, even for root), with the ids and capabilities
 * access(2) computes with (access_override_creds(): the real ids, and the permitted set for
 * a real root).
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
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <linux/securebits.h>

#include "iommufd/iommufd_private.h"
#include "lib/capable.h"
#include "lib/compiler.h"
#include "lib/fail.h"
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

#ifndef STATX_MNT_ID_UNIQUE
#define STATX_MNT_ID_UNIQUE 0x4000U
#endif
#ifndef STATX_ATTR_AUTOMOUNT
#define STATX_ATTR_AUTOMOUNT 0x1000
#endif
/* What every statx() says it can tell (vfs_getattr_nosec(), vfs_statx_path()). */
#define VFIO_STATX_ATTRS_VFS (STATX_ATTR_AUTOMOUNT | STATX_ATTR_DAX | STATX_ATTR_MOUNT_ROOT)
/* devtmpfs is shmem: its getattr adds these (shmem_getattr()). */
#define VFIO_STATX_ATTRS_SHMEM (STATX_ATTR_APPEND | STATX_ATTR_IMMUTABLE | STATX_ATTR_NODUMP)

/*
 * stx_mnt_id, where the kernel's struct statx has it: right after stx_dev_minor (glibc 2.36
 * calls that place padding).
 */
static void vfio_statx_set_mnt_id(struct statx *stx, uint64_t id)
{
	memcpy((char *)stx + offsetof(struct statx, stx_dev_minor) + sizeof(uint32_t), &id,
	       sizeof(id));
}

static uint64_t vfio_statx_mnt_id(const struct statx *stx)
{
	uint64_t id;

	memcpy(&id, (const char *)stx + offsetof(struct statx, stx_dev_minor) + sizeof(uint32_t),
	       sizeof(id));
	return id;
}

/*
 * The mount a node's statx() names: the host's /dev (its devtmpfs, where a real node would
 * be), asked once for each kind of ID. Returns the STATX_MNT_ID* bit the host gave (an older
 * kernel gives STATX_MNT_ID for STATX_MNT_ID_UNIQUE), with the ID in *@id; 0 when the host
 * could not tell (no /dev): the field is left out then, and asked again next time.
 */
static unsigned int vfio_dev_mnt_id(bool unique, uint64_t *id)
{
	static _Atomic uint64_t ids[2];
	static _Atomic unsigned int bits[2];
	unsigned int bit = atomic_load_explicit(&bits[unique], memory_order_acquire);
	struct statx dev;

	if (!bit) {
		if (sys_statx(AT_FDCWD, "/dev", 0, unique ? STATX_MNT_ID_UNIQUE : STATX_MNT_ID, &dev))
			return 0;
		bit = dev.stx_mask & (STATX_MNT_ID | STATX_MNT_ID_UNIQUE);
		atomic_store_explicit(&ids[unique], vfio_statx_mnt_id(&dev), memory_order_relaxed);
		atomic_store_explicit(&bits[unique], bit, memory_order_release);
	}
	*id = atomic_load_explicit(&ids[unique], memory_order_relaxed);
	return bit;
}

/*
 * statx() of a file that stats as @st, asked for @mask: what stat() shows, nanoseconds
 * included, and what the kernel adds for its kind. A node is a devtmpfs character device: its
 * birth time when asked (shmem's, the time it was made: here the same first look its other
 * times are), the mount ID of /dev, shmem's attributes mask. An anonymous file has no birth
 * time; its mount is a pseudo file system's that nothing lists: @host, the host's statx() of
 * the file's socket (sockfs, as internal), lends its ID.
 */
static void vfio_stat_to_statx(const struct stat *st, unsigned int mask,
			       const struct statx *host, struct statx *stx)
{
	bool unique = mask & STATX_MNT_ID_UNIQUE;
	unsigned int bit = 0;
	uint64_t mnt_id = 0;

	if (S_ISCHR(st->st_mode)) {
		bit = vfio_dev_mnt_id(unique, &mnt_id);
	} else if (host) {
		bit = host->stx_mask & (STATX_MNT_ID | STATX_MNT_ID_UNIQUE);
		mnt_id = vfio_statx_mnt_id(host);
	}
	memset(stx, 0, sizeof(*stx));
	stx->stx_mask = STATX_BASIC_STATS | bit;
	stx->stx_attributes_mask = VFIO_STATX_ATTRS_VFS;
	vfio_statx_set_mnt_id(stx, mnt_id);
	stx->stx_blksize = (uint32_t)st->st_blksize;
	stx->stx_nlink = (uint32_t)st->st_nlink;
	stx->stx_uid = st->st_uid;
	stx->stx_gid = st->st_gid;
	stx->stx_mode = (uint16_t)st->st_mode;
	stx->stx_ino = st->st_ino;
	stx->stx_size = (uint64_t)st->st_size;
	stx->stx_blocks = (uint64_t)st->st_blocks;
	stx->stx_atime.tv_sec = st->st_atim.tv_sec;
	stx->stx_atime.tv_nsec = (uint32_t)st->st_atim.tv_nsec;
	stx->stx_mtime.tv_sec = st->st_mtim.tv_sec;
	stx->stx_mtime.tv_nsec = (uint32_t)st->st_mtim.tv_nsec;
	stx->stx_ctime.tv_sec = st->st_ctim.tv_sec;
	stx->stx_ctime.tv_nsec = (uint32_t)st->st_ctim.tv_nsec;
	stx->stx_rdev_major = major(st->st_rdev);
	stx->stx_rdev_minor = minor(st->st_rdev);
	stx->stx_dev_major = major(st->st_dev);
	stx->stx_dev_minor = minor(st->st_dev);
	if (S_ISCHR(st->st_mode)) {
		stx->stx_attributes_mask |= VFIO_STATX_ATTRS_SHMEM;
		if (mask & STATX_BTIME) {
			stx->stx_mask |= STATX_BTIME;
			stx->stx_btime = stx->stx_ctime; /* made once, never changed */
		}
	}
}

UIOMMU_EXPORT int uiommu_node_statx(int dirfd, const char *path, int flags, unsigned int mask,
				    struct statx *stx)
{
	struct statx host, *hostp = NULL;
	struct stat st;
	int fd = -1;

	if ((flags & AT_EMPTY_PATH) && (!path || !*path)) {
		fd = dirfd;
		if (uiommu_fstat(fd, &st))
			return -1;
	} else if (vfio_proc_fd(path, &fd) && (flags & AT_SYMLINK_NOFOLLOW)) {
		return sys_statx(AT_FDCWD, path, flags, mask, stx); /* the /proc link itself */
	} else if (uiommu_node_stat(path, &st, flags & AT_SYMLINK_NOFOLLOW)) {
		return -1;
	}
	/* An fd of ours that is an anonymous file: its socket's mount (above). */
	if (fd >= 0 && !S_ISCHR(st.st_mode) &&
	    !sys_statx(fd, "", AT_EMPTY_PATH, mask & (STATX_MNT_ID | STATX_MNT_ID_UNIQUE), &host))
		hostp = &host;
	vfio_stat_to_statx(&st, mask, hostp, stx);
	return 0;
}

UIOMMU_EXPORT int uiommu_fd_link_statx(int dirfd, const char *path, int flags,
				       unsigned int mask, struct statx *stx)
{
	struct statx host;
	struct stat st;
	int saved = errno;

	/* As uiommu_fd_link_stat() (procfd.c): the host's answer, a uiommu file's node for it. */
	if (sys_statx(dirfd, path, flags, mask, stx))
		return -1;
	if (!(flags & AT_SYMLINK_NOFOLLOW) && S_ISSOCK(stx->stx_mode) &&
	    !iommufd_procfd_link_stat(dirfd, path, (unsigned long)stx->stx_ino, &st)) {
		host = *stx;
		vfio_stat_to_statx(&st, mask, &host, stx);
	}
	errno = saved;
	return 0;
}

/*
 * Is @gid the caller's group: its real one (its effective one for @eaccess) or one of its
 * supplementary groups? 1, 0, or -ENOMEM when the list of a caller with many groups could
 * not be held.
 */
static int vfio_in_group(gid_t gid, bool eaccess)
{
	gid_t small[32], *list = small;
	int n, found = 0;

	if (gid == (eaccess ? getegid() : getgid()))
		return 1;
	n = getgroups(0, NULL);
	if (n > (int)ARRAY_SIZE(small)) {
		list = uiommu_zalloc((size_t)n * sizeof(*list));
		if (!list)
			return -ENOMEM;
	} else {
		n = (int)ARRAY_SIZE(small);
	}
	/* A list that grew in between fails (EINVAL): not in it, as far as we can tell. */
	n = getgroups(n, list);
	for (int i = 0; i < n && !found; i++)
		found = list[i] == gid;
	if (list != small)
		uiommu_free(list);
	return found;
}

/*
 * Does @cap count for access(2) (the effective set for @eaccess, AT_EACCESS)? The kernel's
 * access_override_creds() checks with the permitted set when the real uid is root and with
 * none otherwise, unless SECBIT_NO_SETUID_FIXUP keeps the effective set as it is. (Reading the
 * securebits cannot fail: PR_GET_SECUREBITS only returns them.)
 */
static bool vfio_node_capable(int cap, bool eaccess)
{
	int securebits;

	if (eaccess)
		return uiommu_capable(cap);
	securebits = prctl(PR_GET_SECUREBITS);
	if (securebits >= 0 && (securebits & SECBIT_NO_SETUID_FIXUP))
		return uiommu_capable(cap);
	return !getuid() && uiommu_capable_permitted(cap);
}

/*
 * The kernel's generic_permission() of a file that stats as @st, for access(2) (the real ids;
 * the effective ones for @eaccess, AT_EACCESS): the owner's, the group's or everyone's bits,
 * then CAP_DAC_OVERRIDE, which never makes a file without any x bit executable, and
 * CAP_DAC_READ_SEARCH for reading, each as vfio_node_capable() counts it. 0, -EACCES or
 * -ENOMEM.
 */
static int vfio_node_permission(const struct stat *st, int mode, bool eaccess)
{
	uid_t uid = eaccess ? geteuid() : getuid();
	unsigned int bits = st->st_mode;
	int rc;

	mode &= R_OK | W_OK | X_OK;
	if (!mode)
		return 0;
	if (uid == st->st_uid) {
		bits >>= 6;
	} else if (((bits >> 3) ^ bits) & 7) { /* membership matters only if the bits differ */
		rc = vfio_in_group(st->st_gid, eaccess);
		if (rc < 0)
			return rc;
		if (rc)
			bits >>= 3;
	}
	if (!(mode & ~bits & 7))
		return 0;
	if ((!(mode & X_OK) || (st->st_mode & 0111) || S_ISDIR(st->st_mode)) &&
	    vfio_node_capable(CAP_DAC_OVERRIDE, eaccess))
		return 0;
	if (mode == R_OK && vfio_node_capable(CAP_DAC_READ_SEARCH, eaccess))
		return 0;
	return -EACCES;
}

UIOMMU_EXPORT int uiommu_node_faccessat(int dirfd, const char *path, int mode, int flags)
{
	bool eaccess = flags & AT_EACCESS;
	struct stat st;

	if (mode & ~(R_OK | W_OK | X_OK) || flags & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH))
		return vfio_ret(-EINVAL);
	if (uiommu_fd_link_claims(dirfd, path)) {
		/*
		 * An fd's link: the host looks first (its check that we may see that process's
		 * fds); what it finds is the file's socket, whose 0777 says nothing of the file,
		 * so a uiommu file's node decides (uiommu_fd_link_stat()). The link itself, and
		 * anything that is no uiommu file, is the host's to answer.
		 */
		if ((flags & AT_SYMLINK_NOFOLLOW) || uiommu_fd_link_stat(dirfd, path, &st, 0) ||
		    S_ISSOCK(st.st_mode))
			return sys_faccessat(dirfd, path, mode, flags);
		return vfio_ret(vfio_node_permission(&st, mode, eaccess));
	}
	if (uiommu_node_stat(path, &st, 0))
		return -1;
	return vfio_ret(vfio_node_permission(&st, mode, eaccess));
}

UIOMMU_EXPORT int uiommu_node_access(const char *path, int mode)
{
	return uiommu_node_faccessat(AT_FDCWD, path, mode, 0);
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

/* How deep realpath() of an fd's link is in realpath() of the name it read (a link to a link). */
static __thread unsigned int vfio_realpath_depth;

UIOMMU_EXPORT char *uiommu_fd_link_realpath(const char *path, char *resolved)
{
	char buf[PATH_MAX];
	char *out;
	ssize_t n;

	/*
	 * glibc's realpath() resolves the text that readlink() gives, which the host's
	 * readlink (inside libc, out of the preload layer's reach) would have made socket:[N]:
	 * read it here, with the file's name for a uiommu file.
	 */
	n = uiommu_fd_link_readlink(AT_FDCWD, path, buf, sizeof(buf) - 1);
	if (n < 0)
		return NULL;
	buf[n] = '\0';
	/*
	 * A relative name ("anon_inode:[...]", "socket:[N]", "pipe:[N]") resolves in the fd
	 * directory, where no such entry exists: ENOENT, as glibc's answer on the kernel.
	 */
	if (buf[0] != '/') {
		errno = ENOENT;
		return NULL;
	}
	/* An O_PATH fd of another fd's link names a link again: glibc's limit of 40. */
	if (vfio_realpath_depth >= 40) {
		errno = ELOOP;
		return NULL;
	}
	vfio_realpath_depth++;
	out = realpath(buf, resolved); /* a node's name comes back to uiommu_node_realpath() */
	vfio_realpath_depth--;
	return out;
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
