// SPDX-License-Identifier: MIT
/*
 * The device nodes we serve, /dev/iommu and the VFIO nodes (/dev/vfio/vfio, /dev/vfio/<G>,
 * /dev/vfio/devices/vfioN and their directories), by whatever name a program opens them, with
 * the kernel's answers to open() flags that do not fit a character device. What a canonical
 * name stands for is nodes.c's to say (vfio_node_parse(), which stat() and readlink() use
 * too); this file only turns a program's name into the canonical one.
 *
 * Names. The kernel reaches the node through path walk, so "//dev/iommu", "/dev/./iommu",
 * "/dev/../dev/iommu", openat() of "iommu" in a directory fd of /dev and a symlink to
 * /dev/iommu all open it. devnode_canonical() is the one place that turns a (dirfd, path) into
 * the absolute name the rest of the library compares: relative paths are joined to the cwd or
 * to the directory fd's path (/proc/self/fd), "." and ".." and repeated slashes fold away, and
 * the symlinks among the components that exist on the host are followed as the kernel would
 * (40 at most: ELOOP), with raw system calls (the preload layer wraps lstat() and readlink()
 * to redirect /sys). The nodes themselves usually do not exist on the host, so once a
 * component is missing the rest of the name is folded without looking.
 *
 * Cost. A program's other opens must not pay for this. uiommu_dev_claims() looks further only
 * at names that contain "iommu" or "vfio"; any other name is the host's, unless the host says
 * ENOENT, after which uiommu_dev_claims_link() resolves it fully (a symlink with another name
 * pointing at our node). A host that has a real /dev/iommu therefore serves a symlink of
 * another name to it itself.
 *
 * It sits with the VFIO device cdev, the top of the library: it opens both kinds of node, the
 * iommufd one through iommufd's entry point below it.
 *
 * Flags, as fs/open.c and fs/namei.c check them on an existing character device (in their
 * order): O_DIRECTORY|O_CREAT and O_TMPFILE without write access are EINVAL, O_TMPFILE is
 * ENOTDIR (it names a directory), O_PATH gives a path-only fd (every ioctl, read or write on it
 * is EBADF; it is one of /dev/null here), a trailing slash is EISDIR with O_CREAT and ENOTDIR
 * without, O_CREAT|O_EXCL is EEXIST, O_DIRECTORY is ENOTDIR. A name below the node
 * ("/dev/iommu/x") is ENOTDIR.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/compiler.h"
#include "lib/sys.h"
#include "uiommu/uiommu.h"
#include "vfio/group.h"

#define DEVNODE_IOMMU "/dev/iommu"
#define DEVNODE_MAX_LINKS 40 /* the kernel's MAXSYMLINKS */
/* The kernel's __O_TMPFILE: glibc's includes O_DIRECTORY, which alone is no O_TMPFILE. */
#define DEVNODE_O_TMPFILE (O_TMPFILE & ~O_DIRECTORY)

enum devnode_kind {
	DEVNODE_NONE,
	DEVNODE_IOMMU_NODE,
	DEVNODE_VFIO_NODE,
	DEVNODE_BELOW, /* a name under one of the nodes: the walk meets a non-directory */
	DEVNODE_VFIO_OTHER, /* /dev/vfio, /dev/vfio/devices, or a missing name below them */
};

struct devnode_name {
	char path[PATH_MAX];
	bool trailing; /* the name ended in "/" or "/.": only a directory fits */
	bool through_node; /* a component followed one of the nodes: ENOTDIR */
};

/* Appends component @c (@n bytes) to the absolute @out, folding "." and "..". */
static int devnode_push(char *out, const char *c, size_t n)
{
	size_t len = strlen(out);

	if (!n || (n == 1 && c[0] == '.'))
		return 0;
	if (n == 2 && c[0] == '.' && c[1] == '.') {
		char *slash = strrchr(out, '/');

		if (slash == out)
			out[1] = '\0';
		else
			*slash = '\0';
		return 0;
	}
	if (len + 1 + n >= PATH_MAX)
		return -ENAMETOOLONG;
	if (len > 1)
		out[len++] = '/';
	memcpy(out + len, c, n);
	out[len + n] = '\0';
	return 0;
}

/* The directory a relative name starts from. */
static int devnode_base(int dirfd, char *out)
{
	char link[64];
	ssize_t n;

	if (dirfd == AT_FDCWD)
		return getcwd(out, PATH_MAX) ? 0 : -errno;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
	n = sys_readlinkat(AT_FDCWD, link, out, PATH_MAX - 1);
	if (n <= 0 || out[0] != '/')
		return -EBADF;
	out[n] = '\0';
	return 0;
}

static enum devnode_kind devnode_kind_of(const char *path);

/*
 * The absolute name of @path (relative to @dirfd) with symlinks of existing components
 * followed (not a final one when !@follow_last). Return: 0, -ENAMETOOLONG, -ELOOP, -EBADF or
 * getcwd()'s error.
 */
static int devnode_canonical(int dirfd, const char *path, bool follow_last,
			     struct devnode_name *name)
{
	char rest[PATH_MAX], target[PATH_MAX], tail[PATH_MAX];
	bool missing = false;
	unsigned int links = 0;
	size_t len = strlen(path);
	char *p;
	int rc;

	if (!len)
		return -ENOENT;
	if (len >= PATH_MAX)
		return -ENAMETOOLONG;
	name->trailing = path[len - 1] == '/' ||
			 (path[len - 1] == '.' && (len == 1 || path[len - 2] == '/'));
	name->through_node = false;
	strcpy(rest, path);
	if (path[0] == '/') {
		strcpy(name->path, "/");
	} else {
		rc = devnode_base(dirfd, name->path);
		if (rc)
			return rc;
	}
	p = rest;
	while (*p) {
		char *end = strchrnul(p, '/');
		size_t n = (size_t)(end - p);
		bool dots = (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.');
		bool last = !end[strspn(end, "/")];
		enum devnode_kind kind;
		struct stat st;
		ssize_t tn;

		/* Anything after a node, even "." or "..", walks through a non-directory. */
		kind = devnode_kind_of(name->path);
		if (n && (kind == DEVNODE_IOMMU_NODE || kind == DEVNODE_VFIO_NODE))
			name->through_node = true;
		rc = devnode_push(name->path, p, n);
		if (rc)
			return rc;
		p = *end ? end + 1 : end;
		if (missing || !n || dots || (last && !follow_last))
			continue;
		if (sys_fstatat(AT_FDCWD, name->path, &st, AT_SYMLINK_NOFOLLOW)) {
			missing = true; /* from here on, names the host does not have */
			continue;
		}
		if (!S_ISLNK(st.st_mode))
			continue;
		if (++links > DEVNODE_MAX_LINKS)
			return -ELOOP;
		tn = sys_readlinkat(AT_FDCWD, name->path, target, sizeof(target) - 1);
		if (tn <= 0)
			return -ENOENT;
		target[tn] = '\0';
		/* The link's target, then what was left after it. */
		strcpy(tail, p);
		if ((size_t)tn + 1 + strlen(tail) >= sizeof(rest))
			return -ENAMETOOLONG;
		memcpy(rest, target, (size_t)tn);
		rest[tn] = '/';
		strcpy(rest + tn + 1, tail);
		p = rest;
		if (target[0] == '/')
			strcpy(name->path, "/");
		else
			devnode_push(name->path, "..", 2); /* relative to the link's directory */
	}
	return 0;
}

/*
 * What a canonical name is: the VFIO nodes' own parser (nodes.c) decides for every name under
 * /dev/vfio and for /dev/iommu, so that open() and stat() agree on what exists; only "a name
 * below /dev/iommu" is this file's.
 */
static enum devnode_kind devnode_kind_of(const char *path)
{
	size_t n = strlen(DEVNODE_IOMMU);
	unsigned int num;

	if (!strncmp(path, DEVNODE_IOMMU, n) && path[n] == '/')
		return DEVNODE_BELOW;
	switch (vfio_node_parse(path, &num)) {
	case VFIO_NODE_IOMMU:
		return DEVNODE_IOMMU_NODE;
	case VFIO_NODE_CONTAINER:
	case VFIO_NODE_GROUP:
	case VFIO_NODE_CDEV:
		return DEVNODE_VFIO_NODE;
	default:
		/* A directory, or no such entry: uiommu_vfio_open() answers. */
		return uiommu_vfio_claims(path) ? DEVNODE_VFIO_OTHER : DEVNODE_NONE;
	}
}

static enum devnode_kind devnode_resolve(int dirfd, const char *path, int flags,
					 struct devnode_name *name)
{
	enum devnode_kind kind;

	/* O_NOFOLLOW on a symlink names the link, which is the host's. */
	if (devnode_canonical(dirfd, path, !(flags & O_NOFOLLOW), name))
		return DEVNODE_NONE;
	kind = devnode_kind_of(name->path);
	return name->through_node ? DEVNODE_BELOW : kind;
}

/*
 * /proc/self/fd/N (also /proc/thread-self/fd/N, /proc/<our pid>/fd/N and /dev/fd/N) of one of
 * our fds opened through a node: the kernel's open follows the magic link to the node's inode
 * and opens the device anew (a /dev/iommu fd: a new context). Puts the node's name in @node.
 * Another process's fd (or one of ours the table does not hold) is what its serving process's
 * record says (iommufd/procfd.c): a node is opened anew here, in the caller's process, only
 * if it is one of the nodes this file serves. Anything else stays the host's: our other files
 * are sockets there, which it refuses with ENXIO, the kernel's answer for its anonymous files
 * too (docs/processes.md). O_NOFOLLOW on the link is the host's ELOOP.
 */
static bool devnode_proc_fd(const char *path, int flags, char *node, size_t len)
{
	struct iommufd_node rec;
	const char *p = NULL;
	struct stat st;
	char *end;
	long fd;
	ssize_t n;

	if (!path || (flags & O_NOFOLLOW))
		return false;
	/* Not one of our table's fds (the node layer takes those): the registry's. */
	if (!uiommu_node_claims(path) && !iommufd_procfd_node_of_path(path, &rec)) {
		enum devnode_kind kind = devnode_kind_of(rec.path);

		if (!S_ISCHR(rec.mode) ||
		    (kind != DEVNODE_IOMMU_NODE && kind != DEVNODE_VFIO_NODE))
			return false;
		snprintf(node, len, "%s", rec.path);
		return true;
	}
	if (!strncmp(path, "/dev/fd/", 8)) {
		p = path + 8;
	} else if (!strncmp(path, "/proc/self/fd/", 14)) {
		p = path + 14;
	} else if (!strncmp(path, "/proc/thread-self/fd/", 21)) {
		p = path + 21;
	} else if (!strncmp(path, "/proc/", 6) && path[6] >= '1' && path[6] <= '9') {
		long pid = strtol(path + 6, &end, 10);

		if (pid == getpid() && !strncmp(end, "/fd/", 4))
			p = end + 4;
	}
	if (!p || *p < '0' || *p > '9')
		return false;
	fd = strtol(p, &end, 10);
	if (*end || fd > INT_MAX || !uiommu_is_fd((int)fd) || uiommu_fstat((int)fd, &st) ||
	    !S_ISCHR(st.st_mode))
		return false;
	n = uiommu_fd_path((int)fd, node, len - 1);
	if (n <= 0)
		return false;
	node[n] = 0;
	return true;
}

UIOMMU_EXPORT bool uiommu_dev_claims(int dirfd, const char *path, int flags)
{
	struct devnode_name name;
	char node[64];
	int saved = errno;
	bool ours;

	if (path && path[0] == '/' && (path[1] == 'p' || path[1] == 'd')) {
		ours = devnode_proc_fd(path, flags, node, sizeof(node));
		errno = saved;
		if (ours)
			return true;
	}
	if (!path || (!strstr(path, "iommu") && !strstr(path, "vfio")))
		return false;
	/* The common spellings without a look at the file system. */
	if (!strcmp(path, DEVNODE_IOMMU))
		return true;
	ours = devnode_resolve(dirfd, path, flags, &name) != DEVNODE_NONE;
	errno = saved;
	return ours;
}

UIOMMU_EXPORT bool uiommu_dev_claims_link(int dirfd, const char *path, int flags)
{
	struct devnode_name name;
	int saved = errno;
	bool ours;

	if (!path)
		return false;
	ours = devnode_resolve(dirfd, path, flags, &name) != DEVNODE_NONE;
	errno = saved;
	return ours;
}

static int devnode_ret(int rc)
{
	if (rc < 0) {
		errno = -rc;
		return -1;
	}
	return rc;
}

/* The flag checks fs/open.c's build_open_flags() makes before any lookup. */
static int devnode_check_flags(int flags)
{
	if (flags & O_PATH)
		return 0; /* O_PATH beats everything else; only O_DIRECTORY still counts */
	if ((flags & (O_DIRECTORY | O_CREAT)) == (O_DIRECTORY | O_CREAT))
		return -EINVAL;
	if ((flags & DEVNODE_O_TMPFILE) &&
	    (!(flags & O_DIRECTORY) || (flags & O_ACCMODE) == O_RDONLY))
		return -EINVAL;
	return 0;
}

/* What the walk and do_open() say about an existing character device, before opening it. */
static int devnode_check_node(int flags, bool trailing)
{
	if (flags & DEVNODE_O_TMPFILE)
		return -ENOTDIR;
	if (flags & O_PATH)
		return (flags & O_DIRECTORY) || trailing ? -ENOTDIR : 0;
	if ((flags & O_CREAT) && trailing)
		return -EISDIR;
	if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL))
		return -EEXIST;
	if ((flags & O_DIRECTORY) || trailing)
		return -ENOTDIR;
	return 0;
}

/* An O_PATH fd standing for the node: nothing can be done through it but what O_PATH allows. */
static int devnode_open_path(int flags)
{
	int fd = sys_openat(AT_FDCWD, "/dev/null", O_PATH | (flags & O_CLOEXEC), 0);

	return fd < 0 ? -errno : fd;
}

UIOMMU_EXPORT int uiommu_dev_open(int dirfd, const char *path, int flags)
{
	struct devnode_name name;
	char node[64];
	int rc, fd;

	/* A reopen through /proc of one of our node fds: the node, opened anew. */
	if (path && path[0] == '/' && devnode_proc_fd(path, flags, node, sizeof(node)))
		return uiommu_dev_open(AT_FDCWD, node, flags);

	rc = devnode_check_flags(flags);
	if (rc)
		return devnode_ret(rc);
	switch (devnode_resolve(dirfd, path, flags, &name)) {
	case DEVNODE_IOMMU_NODE:
		rc = devnode_check_node(flags, name.trailing);
		if (rc)
			return devnode_ret(rc);
		if (flags & O_PATH)
			return devnode_ret(devnode_open_path(flags));
		return uiommu_open(flags);
	case DEVNODE_VFIO_NODE:
		/* The device may not exist: the open itself says so (ENOENT). */
		fd = uiommu_vfio_open(name.path,
				      flags & ~(O_PATH | O_DIRECTORY | DEVNODE_O_TMPFILE));
		if (fd < 0)
			return fd;
		rc = devnode_check_node(flags, name.trailing);
		if (!rc && !(flags & O_PATH))
			return fd;
		uiommu_close(fd);
		return devnode_ret(rc ? rc : devnode_open_path(flags));
	case DEVNODE_VFIO_OTHER:
		/* Directories are the tree's real ones: O_DIRECTORY and friends as for any. */
		return uiommu_vfio_open(name.path, flags);
	case DEVNODE_BELOW:
		return devnode_ret(-ENOTDIR);
	default:
		return devnode_ret(-ENOENT);
	}
}
