// SPDX-License-Identifier: MIT
/*
 * The virtual sysfs: the IOMMU part of /sys as the kernel lays it out, served to programs that
 * run under uiommu-run.
 *
 *   /sys/kernel/iommu_groups/<N>/type               rw  "DMA-FQ\n"; a write is the type store
 *   /sys/kernel/iommu_groups/<N>/reserved_regions   r   "0x... 0x... direct\n" per region
 *   /sys/kernel/iommu_groups/<N>/devices/<BDF>      ->  ../../../../devices/pci0000:00/<BDF>
 *   /sys/devices/pci0000:00/<BDF>/iommu_group       ->  ../../../kernel/iommu_groups/<N>
 *   /sys/devices/pci0000:00/<BDF>/iommu             ->  ../../virtual/iommu/<name>
 *   /sys/devices/pci0000:00/<BDF>/remove            w   "1": hot-unplug (topology_unplug)
 *   /sys/devices/pci0000:00/<BDF>/driver            ->  ../../../bus/pci/drivers/uiommu-dma
 *   /sys/bus/pci/devices/<BDF>                      ->  ../../../devices/pci0000:00/<BDF>
 *   /sys/bus/pci/rescan                             w   "1": plug every absent device
 *   /sys/bus/pci/drivers/uiommu-dma/bind            w   "<BDF>": bind the DMA-API driver
 *   /sys/bus/pci/drivers/uiommu-dma/unbind          w   "<BDF>": unbind it
 *   /sys/bus/pci/drivers/uiommu-dma/<BDF>           ->  ../../../../devices/pci0000:00/<BDF>
 *   /sys/class/iommu/<name>                         ->  ../../devices/virtual/iommu/<name>
 *   /sys/devices/virtual/iommu/<name>/devices/<BDF> ->  ../../../../pci0000:00/<BDF>
 *   /sys/bus/iommufd_mock/{devices,drivers}/        the selftest mock's bus, always empty
 *
 * The selftest mock is always built in (src/iommufd/selftest.c), and the kernel registers the
 * bus `iommufd_mock` whenever CONFIG_IOMMUFD_TEST is; the selftests since v7.3 skip every case
 * unless access("/sys/bus/iommufd_mock") succeeds. Only its directories are there: the mock's
 * devices are per context here, not the machine's, and nothing reads the bus attributes.
 * (The kernel nests a function on bus 01 under its bridge; we put every function of a PCI
 * domain directly under pci<domain>:00, which keeps each relative link the same shape.)
 *
 * The PCI attributes are those a program uses to hot-unplug, rescan and (un)bind, with the
 * kernel's modes (0200: write-only, so an open for reading fails with EACCES, for root too, as
 * kernfs refuses a read open of an attribute without show) and the errnos of its stores:
 *   remove   kstrtoul (base 0, one trailing newline): EINVAL if it does not parse; 0 does
 *            nothing; otherwise topology_unplug(): EBUSY for the last device of a group a user
 *            owns (the kernel would wait for the user; we refuse), ENODEV through an fd opened
 *            before the device went (kernfs's errno for a removed attribute).
 *   rescan   kstrtoul as remove; non-zero: topology_plug() of every absent device, a device
 *            whose probe fails staying absent, as a rescan does; always the byte count.
 *   bind     the driver core's bind_store: ENODEV for an unknown or absent device (the name
 *            compared as sysfs_streq does), EBUSY when already bound or when the IOMMU core
 *            refuses (an owned group), EAGAIN for a deferred probe.
 *   unbind   unbind_store: ENODEV for an unknown or absent device and for one not bound.
 * The device's `driver` link and the driver's <BDF> link exist while the driver is bound.
 *
 * Design: materialise, redirect, intercept only the store.
 *
 * A virtual file system can be served in two ways from LD_PRELOAD: emulate every call that can
 * touch a path (open, read, fstat on the fd, opendir, readdir, seekdir, readlink, stat in all its
 * glibc spellings, access, chdir, getcwd ...), or write the tree to a real directory and send
 * the calls there. umockdev does the second with $UMOCKDEV_DIR, and so do we: the first is a
 * reimplementation of a VFS in a preload shim, the second is a path prefix. Every process that
 * uses the virtual sysfs owns a private tree (<session>/tree.<pid>.XXXXXX, holding "sys/...")
 * of real directories, regular files and relative symlinks identical to the kernel's, so
 * readdir, readlink, stat, access, relative paths after chdir, and the resolution of `..`
 * through the links all work through libc and the real kernel, with nothing to emulate.
 *
 * The tree is brought up to date ("synced") at every call that names a /sys path: the desired
 * tree is generated from the core (groups, their devices and attributes) and the topology
 * (instances, present devices) as a sorted list of entries, and compared with the list last
 * written; only the differences touch the disk. A file's new content goes to a temporary file
 * renamed over the old one, so a reader that opened it earlier keeps its snapshot, as sysfs
 * gives a reader the content of its first read. A failure half-way leaves the disk unknown: the
 * next sync wipes the tree and writes it whole.
 *
 * Only writes need interception. Opening an attribute with a store (a group's `type`, and the
 * PCI attributes above) for writing returns a memfd that stands for the attribute (the tree's
 * file is never written) and is recorded in a table fd -> struct sysfs_file, which names the
 * attribute (and holds a reference on the group of a `type`). The preload write() wrapper
 * sends writes on such an fd to uiommu_sysfs_write(), which runs the store and fails with
 * the kernel's errno (EACCES, EINVAL, EPERM, ENODEV, EBUSY ...). dup/dup2/dup3/F_DUPFD share
 * the record and close drops it. Some writes bypass the wrapper: libc's stdio calls its internal write, so
 * a stream that is not ours (dprintf, a FILE the program built on the fd) reaches the memfd
 * directly, as does a program without the preload layer. Those bytes are found and stored
 * when an fd of the record goes, at its next write(), at the next sync or at exit, without an
 * errno to give back: the best a preload library can do.
 * Stored bytes are punched out of the memfd (they read as zeros), so that every process that
 * holds it, across fork and exec, stores each byte once: the file is the shared record.
 *
 * Across exec. The table is this process's memory, gone at exec, but the memfd is inherited:
 * its name says which attribute it stands for ("uiommu-sysfs:type:<skip>:<group>:<BDF>"), and
 * the preload layer's constructor adopts every such fd the new image finds (uiommu_sysfs_adopt()),
 * so `bash -c '/bin/echo DMA-FQ > .../type'` (bash opens, then execs echo) runs the store.
 * Whenever fd 1 or 2 is an attribute (adopted before main(), or dup2'ed there: bash around a
 * builtin's `echo x > type`), stdout or stderr is a stream of ours (sysfs_std_claim()), so that
 * stdio's fflush() and fclose() report the store's errno; the program's stream is back when
 * the fd stops being one. fopen() and fdopen() of an attribute give the same kind of stream.
 * An adopted `type` finds its group at its first store, by the member the name gives.
 * Every other write open of the tree fails as sysfs does: EACCES for a read-only attribute or a
 * new file, EISDIR for a directory. A write open relative to a directory fd of the tree
 * (openat(dirfd(opendir("/sys/kernel/debug")), "failslab/verbose")) is brought back to its /sys
 * path by uiommu_sysfs_claims_at(), so it meets the same store.
 *
 * One machine per session. State is per process in uiommu (the core runs inside each program),
 * but a shell line such as `echo DMA-FQ > type; cat type` runs cat in another process, which
 * must see the new type. The preload layer's constructor therefore names a session directory
 * ($UIOMMU_SYSFS_DIR, with $UIOMMU_SYSFS_OWNER the pid that removes it at exit) before main(),
 * so a shell exports it to everything it starts; processes that use the library without the
 * preload layer get a private session. The environment proves nothing about who made the
 * directory (it may name any directory, and a pid is reused), so the process that creates a
 * session directory marks it (SESSION_MARK), and the owner's exit, like the sweep of dead
 * sessions and the exit of a serving process that outlived the owner (sysfs_session_left()),
 * removes only a marked directory and in it only what sessions put there (the
 * journal, the per-process trees, the mark); never a directory it did not make. Each successful store through the virtual sysfs is
 * appended to the session's journal under an exclusive flock: "type <BDF> <value>",
 * "unplug <BDF>" (remove), "rescan", "bind <BDF>", "unbind <BDF>". Every process replays the
 * entries it has not seen yet (privileged: they were checked where they were written) at boot
 * and at each sync, so the processes of a session converge on one machine: after
 * `echo 1 > .../remove`, the `ls` the shell starts next replays the unplug at its boot and does
 * not list the device. Replays that the local state refuses (a driver bound only here, the last
 * device of a group a user owns here, a device absent already) are skipped. What a user of
 * another process holds (VFIO's open files and group owners) is not in the journal but in the
 * session's claims, which a store tests before it runs ("what the other processes of the
 * session hold", below): so such a store is refused at its write, not at the others' replay.
 * Replaying a hot-unplug or an unbind in a running program is what the control socket does already: the
 * topology stops the emulated driver's DMA before letting go, and struct device stays valid.
 * What the library's API or the control socket does (topology_plug(), uiommuctl) stays per
 * process: only the sysfs ABI is a session's machine.
 *
 * Known differences from sysfs, for the record: files and directories belong to the user, not
 * root, so the 0200 PCI attributes are the user's to write (only `type` checks capabilities,
 * as the kernel's store does); an attribute's st_size is its length, not 4096; writes made by
 * libc internally (stdio on a stream that is not ours, dprintf, writev) report no errno, as
 * said above.
 *
 * Locking. sysfs_lock protects struct sysfs_state (the session, the tree, the entries on disk,
 * the journal offset), an adopted record's group lookup, and serialises syncs, journaled
 * stores and the taking of bypassed bytes (with a flock on a private open of the memfd against
 * the other processes that hold it, taken inside sysfs_lock). sysfs_fd_lock protects the
 * fd table's updates and the records' reference counts; sysfs_fds[] is read locklessly by
 * uiommu_sysfs_is_fd(), which the preload write() and close() wrappers call on every fd.
 * Order: sysfs_lock -> topology_lock -> core locks; sysfs_fd_lock is a leaf, never held across
 * a call that can do I/O (the library's own write() and close() come back through the wrappers,
 * which take it).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lib/compiler.h"
#include "lib/fail.h"
#include "lib/lockdep.h"
#include "lib/sys.h"
#include "machine/fault_inject.h"
#include "machine/pci.h"
#include "machine/session.h"
#include "machine/sysfs.h"
#include "machine/topology.h"
#include "uiommu/uiommu.h"

/* ---- the tree as a list of entries ---------------------------------------------------------- */

enum sysfs_kind { SYSFS_DIR, SYSFS_FILE, SYSFS_LINK };

struct sysfs_entry {
	enum sysfs_kind kind;
	mode_t mode;
	const char *path;  /* relative to the tree root: "sys/kernel/iommu_groups/0/type" */
	const char *data;  /* a file's content or a link's target ("" for a directory) */
	size_t len;        /* of data */
	/* path and data follow in the same allocation */
};

struct sysfs_entries {
	struct sysfs_entry **v;
	size_t nr;
	size_t alloc;
};

/* ---- state --------------------------------------------------------------------------------- */

struct sysfs_state {
	pid_t pid;                   /* the process the tree below belongs to; 0: none yet */
	char session[PATH_MAX];      /* the session directory */
	char tree[PATH_MAX];         /* this process's tree root, holding sys/ */
	char tree_real[PATH_MAX];    /* the same, with symlinks resolved */
	off_t journal_off;           /* journal bytes already replayed or written here */
	struct sysfs_entries cur;    /* what is on disk (valid unless dirty) */
	bool dirty;                  /* the disk may differ from cur: rebuild from scratch */
	bool atfork_done;
};

/* Protects sysfs_state; order: outermost of the core, before topology_lock and the probe lock. */
UIOMMU_MUTEX_DEFINE(sysfs_lock);
static struct sysfs_state sysfs;

/* The attributes with a store. */
enum sysfs_attr {
	SYSFS_ATTR_NONE,
	SYSFS_ATTR_TYPE,             /* iommu_groups/<N>/type */
	SYSFS_ATTR_REMOVE,           /* devices/pci<D>:00/<BDF>/remove */
	SYSFS_ATTR_RESCAN,           /* bus/pci/rescan */
	SYSFS_ATTR_BIND,             /* bus/pci/drivers/uiommu-dma/bind */
	SYSFS_ATTR_UNBIND,           /* bus/pci/drivers/uiommu-dma/unbind */
	SYSFS_ATTR_DEBUGFS,          /* kernel/debug/fail<...>/<attr> (fault_inject.c) */
	SYSFS_ATTR_VFIO_BIND,        /* bus/pci/drivers/vfio-pci/bind */
	SYSFS_ATTR_VFIO_UNBIND,      /* bus/pci/drivers/vfio-pci/unbind */
	SYSFS_ATTR_OVERRIDE,         /* devices/pci<D>:00/<BDF>/driver_override */
};

/* An attribute opened for writing: one per open(), shared by the fds dup'ed from it. */
struct sysfs_file {
	int refs;                    /* fds in sysfs_fds[] pointing here; sysfs_fd_lock */
	enum sysfs_attr attr;
	struct iommu_group *group;   /* TYPE: a reference, dropped with the last fd */
	char bdf[32];                /* TYPE: a member at open time; REMOVE, OVERRIDE: the device */
	char debugfs[64];            /* DEBUGFS: the attribute below kernel/debug */
	int group_id;                /* TYPE adopted across exec: the group if @bdf names none */
	/* The memfd's identity: an fd in the table is checked against it before it is read,
	 * in case the program closed it behind our back (close_range, fclose of an fdopen). */
	dev_t dev;
	ino_t ino;
	off_t skip;                  /* memfd bytes that were never written (O_RDWR's content) */
	off_t consumed;              /* memfd bytes this process has looked at; sysfs_lock */
};

/*
 * The name of an attribute's memfd says which attribute it stands for, so that a program exec'd
 * with the fd inherited (a shell's redirection before exec) adopts it (uiommu_sysfs_adopt()):
 * "uiommu-sysfs:<attr>:<skip>:<argument>", the argument being "<group id>:<a member's BDF>"
 * for a `type`, the device's BDF for `remove` and `driver_override`, the attribute below
 * kernel/debug for debugfs, empty for the bus and driver attributes.
 */
#define SYSFS_MEMFD_PREFIX "uiommu-sysfs:"
static const char *const sysfs_attr_names[] = {
	[SYSFS_ATTR_TYPE] = "type",         [SYSFS_ATTR_REMOVE] = "remove",
	[SYSFS_ATTR_RESCAN] = "rescan",     [SYSFS_ATTR_BIND] = "bind",
	[SYSFS_ATTR_UNBIND] = "unbind",     [SYSFS_ATTR_DEBUGFS] = "debugfs",
	[SYSFS_ATTR_VFIO_BIND] = "vfio-bind", [SYSFS_ATTR_VFIO_UNBIND] = "vfio-unbind",
	[SYSFS_ATTR_OVERRIDE] = "override",
};

#define SYSFS_MAX_FDS 4096
/* fd -> the record of the attribute it writes to; written under sysfs_fd_lock, read locklessly. */
static _Atomic(struct sysfs_file *) sysfs_fds[SYSFS_MAX_FDS];
static atomic_int sysfs_nr_fds; /* entries in sysfs_fds: a fast "none" for the wrappers */
UIOMMU_MUTEX_DEFINE(sysfs_fd_lock); /* serialises the writers of sysfs_fds; a leaf */

/* The session this process removes at exit, set by uiommu_sysfs_session_begin() or on use. */
static pid_t sysfs_session_owner;
static char sysfs_session_owned[PATH_MAX];

/* The file that marks a session directory as made by a session (see session_mark()). */
#define SESSION_MARK ".uiommu-session"

static const char *const sysfs_prefixes[] = {
	"/sys/kernel/iommu_groups",
	"/sys/bus/pci/devices",
	"/sys/bus/pci/drivers",
	"/sys/bus/pci/rescan",
	"/sys/class/iommu",
	"/sys/devices/virtual/iommu",
	("/sys/bus/" SYSFS_MOCK_BUS), /* one path from pieces (clang -Wstring-concatenation) */
	"/sys/class/vfio",
	"/sys/class/vfio-dev",
	"/sys/class/misc/vfio",
	"/sys/devices/virtual/vfio",
	"/sys/devices/virtual/misc/vfio",
	"/sys/module/vfio",
	"/sys/module/vfio_pci",
	"/sys/module/vfio_pci_core",
	"/sys/module/iommufd",
};

#define SYSFS_DEBUGFS "sys/kernel/debug"

/* ---- small helpers --------------------------------------------------------------------------- */

static int rc_errno(int rc)
{
	errno = -rc;
	return -1;
}

static int remove_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

static void remove_tree(const char *path)
{
	nftw(path, remove_cb, 16, FTW_DEPTH | FTW_PHYS);
}

void sysfs_pci_root_name(const char *bdf, char *buf, size_t len)
{
	/* "0000:01:00.0" -> "pci0000:00"; a bare "01:00.0" is in domain 0000. */
	const char *colon = strchr(bdf, ':');
	bool has_domain = colon && strchr(colon + 1, ':');

	if (has_domain)
		snprintf(buf, len, "pci%.*s:00", (int)(colon - bdf), bdf);
	else
		snprintf(buf, len, "pci0000:00");
}

/* ---- building the desired tree -------------------------------------------------------------- */

static void entries_free(struct sysfs_entries *es)
{
	size_t i;

	for (i = 0; i < es->nr; i++)
		uiommu_free(es->v[i]);
	uiommu_free(es->v);
	es->v = NULL;
	es->nr = es->alloc = 0;
}

static int entries_vadd(struct sysfs_entries *es, enum sysfs_kind kind, mode_t mode,
			const void *data, size_t dlen, const char *fmt, va_list ap)
{
	struct sysfs_entry *e;
	char path[PATH_MAX];
	size_t plen;
	int n;

	n = vsnprintf(path, sizeof(path), fmt, ap);
	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG;
	plen = (size_t)n;
	if (es->nr == es->alloc) {
		size_t alloc = es->alloc ? es->alloc * 2 : 64;
		struct sysfs_entry **v = uiommu_realloc_array(es->v, alloc, sizeof(*v));

		if (!v)
			return -ENOMEM;
		es->v = v;
		es->alloc = alloc;
	}
	e = uiommu_zalloc(sizeof(*e) + plen + 1 + dlen + 1);
	if (!e)
		return -ENOMEM;
	e->kind = kind;
	e->mode = mode;
	e->path = memcpy((char *)(e + 1), path, plen + 1);
	e->data = memcpy((char *)(e + 1) + plen + 1, data, dlen);
	((char *)e->data)[dlen] = '\0';
	e->len = dlen;
	es->v[es->nr++] = e;
	return 0;
}

static int __attribute__((format(printf, 5, 6)))
entries_add(struct sysfs_entries *es, enum sysfs_kind kind, mode_t mode, const char *data,
	    const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = entries_vadd(es, kind, mode, data, strlen(data), fmt, ap);
	va_end(ap);
	return rc;
}

/* A binary attribute (config): @len bytes, NULs included. */
static int __attribute__((format(printf, 5, 6)))
entries_add_bin(struct sysfs_entries *es, mode_t mode, const void *data, size_t len,
		const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = entries_vadd(es, SYSFS_FILE, mode, data, len, fmt, ap);
	va_end(ap);
	return rc;
}

#define add_dir(es, ...) entries_add(es, SYSFS_DIR, 0755, "", __VA_ARGS__)
#define add_link(es, target, ...) entries_add(es, SYSFS_LINK, 0777, target, __VA_ARGS__)

/* The entries of one device: its directory, bus and class links, and its group link. */
static int entries_add_device(struct sysfs_entries *es, struct device *dev, const char *iommu,
			      int group_id)
{
	char root[48], target[PATH_MAX];
	int rc;

	sysfs_pci_root_name(dev->name, root, sizeof(root));
	rc = add_dir(es, "sys/devices/%s", root);
	rc = rc ?: add_dir(es, "sys/devices/%s/%s", root, dev->name);
	snprintf(target, sizeof(target), "../../../devices/%s/%s", root, dev->name);
	rc = rc ?: add_link(es, target, "sys/bus/pci/devices/%s", dev->name);
	if (!rc && iommu) {
		snprintf(target, sizeof(target), "../../virtual/iommu/%s", iommu);
		rc = add_link(es, target, "sys/devices/%s/%s/iommu", root, dev->name);
		snprintf(target, sizeof(target), "../../../../%s/%s", root, dev->name);
		rc = rc ?: add_link(es, target, "sys/devices/virtual/iommu/%s/devices/%s", iommu,
				    dev->name);
	}
	if (!rc && group_id >= 0) {
		snprintf(target, sizeof(target), "../../../kernel/iommu_groups/%d", group_id);
		rc = add_link(es, target, "sys/devices/%s/%s/iommu_group", root, dev->name);
		snprintf(target, sizeof(target), "../../../../devices/%s/%s", root, dev->name);
		rc = rc ?: add_link(es, target, "sys/kernel/iommu_groups/%d/devices/%s", group_id,
				    dev->name);
	}
	return rc;
}

static int entries_add_iommu(struct sysfs_entries *es, const char *name)
{
	char target[PATH_MAX];
	int rc;

	snprintf(target, sizeof(target), "../../devices/virtual/iommu/%s", name);
	rc = add_dir(es, "sys/devices/virtual/iommu/%s", name);
	rc = rc ?: add_dir(es, "sys/devices/virtual/iommu/%s/devices", name);
	rc = rc ?: add_link(es, target, "sys/class/iommu/%s", name);
	return rc;
}

struct group_walk {
	struct sysfs_entries *es;
	int id;
};

static int group_dev_cb(struct device *dev, void *data)
{
	struct group_walk *w = data;

	return entries_add_device(w->es, dev, dev->iommu ? dev->iommu->name : NULL, w->id);
}

static int entries_add_group(struct sysfs_entries *es, struct iommu_group *group, int id)
{
	struct group_walk w = { .es = es, .id = id };
	char buf[4096];
	ssize_t n;
	int rc;

	rc = add_dir(es, "sys/kernel/iommu_groups/%d", id);
	rc = rc ?: add_dir(es, "sys/kernel/iommu_groups/%d/devices", id);
	if (rc)
		return rc;
	n = iommu_group_type_show(group, buf, sizeof(buf));
	if (n < 0)
		return (int)n;
	buf[n] = '\0';
	rc = entries_add(es, SYSFS_FILE, 0644, buf, "sys/kernel/iommu_groups/%d/type", id);
	if (rc)
		return rc;
	n = iommu_group_reserved_regions_show(group, buf, sizeof(buf));
	if (n < 0)
		return (int)n;
	buf[n] = '\0';
	rc = entries_add(es, SYSFS_FILE, 0444, buf, "sys/kernel/iommu_groups/%d/reserved_regions",
			 id);
	return rc ?: iommu_group_for_each_dev(group, &w, group_dev_cb);
}

/* "0x%016llx 0x%016llx 0x%016llx\n" resource lines: BARs 0-5, the ROM, 6 SR-IOV VF BARs. */
static void pci_resource_text(struct uiommu_pci_fn *fn, char *buf, size_t len)
{
	size_t off = 0;

	for (unsigned int i = 0; i < 13; i++) {
		uint64_t start = 0, end = 0, flags = 0;
		struct pci_fn_bar_info bar;
		uint32_t lo = 0, hi = 0;
		const void *image;
		size_t image_len;

		if (i < 6 && !pci_fn_bar_info(fn, i, &bar) && bar.size) {
			pci_fn_config_read_reg(fn, PCI_CFG_BAR0 + 4 * i, 4, &lo);
			if (bar.flags & UIOMMU_PCI_BAR_IO) {
				start = lo & ~0x3ull;
				flags = 0x40101; /* IORESOURCE_IO | SIZEALIGN, PCI I/O space */
			} else {
				if (bar.flags & UIOMMU_PCI_BAR_64)
					pci_fn_config_read_reg(fn, PCI_CFG_BAR0 + 4 * i + 4, 4, &hi);
				start = ((uint64_t)hi << 32 | lo) & ~0xfull;
				flags = 0x40200; /* IORESOURCE_MEM | SIZEALIGN */
				if (bar.flags & UIOMMU_PCI_BAR_64)
					flags |= 0x100004; /* MEM_64, type 64 */
				if (bar.flags & UIOMMU_PCI_BAR_PREFETCH)
					flags |= 0x2008; /* PREFETCH, the BAR's prefetchable bit */
			}
			/* An unassigned BAR shows at 0, as the kernel shows a resource it left free. */
			end = start + bar.size - 1;
		} else if (i == 6 && (bar.size = pci_fn_rom(fn, &image, &image_len))) {
			pci_fn_config_read_reg(fn, PCI_CFG_ROM, 4, &lo);
			start = lo & PCI_ROM_ADDR_MASK;
			end = start + bar.size - 1;
			/* MEM | PREFETCH | READONLY | SIZEALIGN, and ROM_ENABLE as the BAR has it */
			flags = 0x46200 | (lo & PCI_ROM_ENABLE);
		}
		off += (size_t)snprintf(buf + off, off < len ? len - off : 0,
					"0x%016llx 0x%016llx 0x%016llx\n", (unsigned long long)start,
					(unsigned long long)end, (unsigned long long)flags);
	}
}

/*
 * The attributes a driver reads from a function's config space (pci-sysfs.c's formats), from
 * the machine's PCI function; a device without one shows none of them.
 */
static int entries_add_pci_attrs(struct sysfs_entries *es, const char *root,
				 const struct topology_device_info *info)
{
	struct uiommu_pci_fn *fn = pci_fn_get(info->dev);
	unsigned char config[PCI_CFG_SPACE_EXP_SIZE];
	char dir[PATH_MAX], buf[16 * 64];
	struct pci_fn_ids ids;
	unsigned int size, slot = 0, func = 0;
	int rc;

	if (!fn)
		return 0;
	pci_fn_get_ids(fn, &ids);
	snprintf(dir, sizeof(dir), "sys/devices/%s/%s", root, info->bdf);
#define PCI_ATTR(name, fmt, val)                                                          \
	snprintf(buf, sizeof(buf), fmt "\n", val);                                         \
	rc = rc ?: entries_add(es, SYSFS_FILE, 0444, buf, "%s/" name, dir)
	rc = 0;
	PCI_ATTR("vendor", "0x%04x", ids.vendor);
	PCI_ATTR("device", "0x%04x", ids.device);
	PCI_ATTR("subsystem_vendor", "0x%04x", ids.subsystem_vendor);
	PCI_ATTR("subsystem_device", "0x%04x", ids.subsystem_device);
	PCI_ATTR("class", "0x%06x", ids.class_code);
	PCI_ATTR("revision", "0x%02x", ids.revision);
	PCI_ATTR("numa_node", "%d", -1);
	/* The legacy IRQ: the IO-APIC pin of INTA-INTD swizzled by slot, as x86 firmware routes. */
	sscanf(info->bdf, "%*x:%*x:%x.%x", &slot, &func);
	PCI_ATTR("irq", "%u", ids.interrupt_pin ? 16 + ((slot + ids.interrupt_pin - 1) & 3) : 0);
#undef PCI_ATTR
	size = pci_fn_config_size(fn);
	if (!rc && size <= sizeof(config) && !pci_fn_config_read(fn, 0, config, size))
		rc = entries_add_bin(es, 0644, config, size, "%s/config", dir);
	if (!rc) {
		pci_resource_text(fn, buf, sizeof(buf));
		rc = entries_add(es, SYSFS_FILE, 0444, buf, "%s/resource", dir);
	}
	pci_fn_put(fn);
	return rc;
}

/* A function bound to vfio-pci: its vfio-dev class device, its group's node, the /dev nodes. */
static int entries_add_vfio(struct sysfs_entries *es, const char *root,
			    const struct topology_device_info *info)
{
	struct iommu_group *group = iommu_group_get(info->dev);
	char dir[PATH_MAX], target[PATH_MAX], buf[128];
	int rc, id, n = info->vfio_index, minor = info->vfio_group_minor;

	if (!group)
		return 0;
	id = iommu_group_id(group);
	iommu_group_put(group);
	snprintf(dir, sizeof(dir), "sys/devices/%s/%s/vfio-dev/vfio%d", root, info->bdf, n);
	rc = add_dir(es, "sys/devices/%s/%s/vfio-dev", root, info->bdf);
	rc = rc ?: add_dir(es, "%s", dir);
	snprintf(buf, sizeof(buf), "%d:%d\n", SYSFS_VFIO_CDEV_MAJOR, n);
	rc = rc ?: entries_add(es, SYSFS_FILE, 0444, buf, "%s/dev", dir);
	snprintf(buf, sizeof(buf), "MAJOR=%d\nMINOR=%d\nDEVNAME=vfio/devices/vfio%d\n",
		 SYSFS_VFIO_CDEV_MAJOR, n, n);
	rc = rc ?: entries_add(es, SYSFS_FILE, 0644, buf, "%s/uevent", dir);
	snprintf(target, sizeof(target), "../../../%s", info->bdf);
	rc = rc ?: add_link(es, target, "%s/device", dir);
	rc = rc ?: add_link(es, "../../../../../class/vfio-dev", "%s/subsystem", dir);
	snprintf(target, sizeof(target), "../../devices/%s/%s/vfio-dev/vfio%d", root, info->bdf, n);
	rc = rc ?: add_link(es, target, "sys/class/vfio-dev/vfio%d", n);
	snprintf(target, sizeof(target), "../../../../devices/%s/%s", root, info->bdf);
	rc = rc ?: add_link(es, target, "sys/bus/pci/drivers/" TOPOLOGY_VFIO_DRIVER "/%s",
			    info->bdf);

	rc = rc ?: add_dir(es, "sys/devices/virtual/vfio/%d", id);
	snprintf(buf, sizeof(buf), "%d:%d\n", SYSFS_VFIO_GROUP_MAJOR, minor);
	rc = rc ?: entries_add(es, SYSFS_FILE, 0444, buf, "sys/devices/virtual/vfio/%d/dev", id);
	snprintf(buf, sizeof(buf), "MAJOR=%d\nMINOR=%d\nDEVNAME=vfio/%d\n",
		 SYSFS_VFIO_GROUP_MAJOR, minor, id);
	rc = rc ?: entries_add(es, SYSFS_FILE, 0644, buf, "sys/devices/virtual/vfio/%d/uevent", id);
	rc = rc ?: add_link(es, "../../../../class/vfio", "sys/devices/virtual/vfio/%d/subsystem",
			    id);
	snprintf(target, sizeof(target), "../../devices/virtual/vfio/%d", id);
	rc = rc ?: add_link(es, target, "sys/class/vfio/%d", id);

	/* devtmpfs: the nodes, for listings; stat() and open() of them are the VFIO layer's. */
	rc = rc ?: entries_add(es, SYSFS_FILE, 0600, "", "dev/vfio/devices/vfio%d", n);
	rc = rc ?: entries_add(es, SYSFS_FILE, 0600, "", "dev/vfio/%d", id);
	return rc;
}

/*
 * Present devices without a group (a failed probe) and instances without devices; and what
 * only the topology knows: the `remove` attribute, the drivers' links, driver_override, and
 * what vfio-pci shows of the functions bound to it.
 */
static int topo_dev_cb(const struct topology_device_info *info, void *arg)
{
	struct sysfs_entries *es = arg;
	char root[48], target[PATH_MAX], buf[TOPOLOGY_DRIVER_NAME_MAX + 8];
	int rc;

	if (!info->present)
		return 0;
	rc = entries_add_device(es, info->dev, info->iommu, -1);
	sysfs_pci_root_name(info->bdf, root, sizeof(root));
	rc = rc ?: entries_add(es, SYSFS_FILE, 0200, "", "sys/devices/%s/%s/remove", root,
			       info->bdf);
	snprintf(buf, sizeof(buf), "%s\n", info->driver_override[0] ? info->driver_override :
								   "(null)");
	rc = rc ?: entries_add(es, SYSFS_FILE, 0644, buf, "sys/devices/%s/%s/driver_override",
			       root, info->bdf);
	rc = rc ?: entries_add_pci_attrs(es, root, info);
	if (!rc && info->bound) {
		rc = add_link(es, "../../../bus/pci/drivers/" SYSFS_PCI_DRIVER,
			      "sys/devices/%s/%s/driver", root, info->bdf);
		snprintf(target, sizeof(target), "../../../../devices/%s/%s", root, info->bdf);
		rc = rc ?: add_link(es, target, "sys/bus/pci/drivers/" SYSFS_PCI_DRIVER "/%s",
				    info->bdf);
	}
	if (!rc && info->vfio) {
		rc = add_link(es, "../../../bus/pci/drivers/" TOPOLOGY_VFIO_DRIVER,
			      "sys/devices/%s/%s/driver", root, info->bdf);
		rc = rc ?: entries_add_vfio(es, root, info);
	}
	return rc;
}

static int topo_iommu_cb(struct iommu_device *iommu, void *arg)
{
	return entries_add_iommu(arg, iommu->name);
}

static int entry_cmp(const void *a, const void *b)
{
	const struct sysfs_entry *const *x = a, *const *y = b;

	return strcmp((*x)->path, (*y)->path);
}

static bool entry_same(const struct sysfs_entry *a, const struct sysfs_entry *b)
{
	return a->kind == b->kind && a->mode == b->mode && a->len == b->len &&
	       !memcmp(a->data, b->data, a->len);
}

/* Sort and drop duplicates (a device seen through its group and through the topology). */
static void entries_sort(struct sysfs_entries *es)
{
	size_t i, out = 0;

	qsort(es->v, es->nr, sizeof(*es->v), entry_cmp);
	for (i = 0; i < es->nr; i++) {
		if (out && !strcmp(es->v[out - 1]->path, es->v[i]->path)) {
			/* The group's view (with the group link) and the topology's agree on
			 * everything both produce; keep the first. */
			uiommu_free(es->v[i]);
			continue;
		}
		es->v[out++] = es->v[i];
	}
	es->nr = out;
}

/* The fault-injection attributes of debugfs (mode 0600, as fault_create_debugfs_attr()). */
static int entries_add_debugfs(struct sysfs_entries *es)
{
	char path[128], value[32];
	const char *dir;
	size_t i;
	int rc;

	if (!fault_debugfs_dir(0))
		return 0; /* a release build */
	rc = add_dir(es, "%s", SYSFS_DEBUGFS);
	for (i = 0; !rc && (dir = fault_debugfs_dir(i)); i++)
		rc = add_dir(es, SYSFS_DEBUGFS "/%s", dir);
	for (i = 0; !rc && fault_debugfs_attr(i, path, sizeof(path), value, sizeof(value)); i++)
		rc = entries_add(es, SYSFS_FILE, 0600, value, SYSFS_DEBUGFS "/%s", path);
	return rc;
}

static int entries_build(struct sysfs_entries *es)
{
	static const char *const fixed[] = {
		"sys", "sys/kernel", "sys/kernel/iommu_groups", "sys/bus", "sys/bus/pci",
		"sys/bus/pci/devices", "sys/class", "sys/class/iommu", "sys/devices",
		"sys/devices/virtual", "sys/devices/virtual/iommu", "sys/bus/pci/drivers",
		("sys/bus/pci/drivers/" SYSFS_PCI_DRIVER), ("sys/bus/" SYSFS_MOCK_BUS),
		("sys/bus/" SYSFS_MOCK_BUS "/devices"), ("sys/bus/" SYSFS_MOCK_BUS "/drivers"),
		("sys/bus/pci/drivers/" TOPOLOGY_VFIO_DRIVER), "sys/class/vfio", "sys/class/vfio-dev",
		"sys/class/misc", "sys/devices/virtual/misc", "sys/devices/virtual/misc/vfio",
		"sys/devices/virtual/vfio", "sys/module",
		"sys/module/vfio", "sys/module/vfio/parameters", "sys/module/vfio_pci",
		"sys/module/vfio_pci/parameters", "sys/module/vfio_pci_core",
		"sys/module/vfio_pci_core/parameters", "sys/module/iommufd",
		"sys/module/iommufd/parameters", "dev", "dev/vfio", "dev/vfio/devices",
	};
	static const char *const wo[] = {
		/* Parenthesised: each is one path built from pieces, not two missing a comma. */
		"sys/bus/pci/rescan", ("sys/bus/pci/drivers/" SYSFS_PCI_DRIVER "/bind"),
		("sys/bus/pci/drivers/" SYSFS_PCI_DRIVER "/unbind"),
		("sys/bus/pci/drivers/" TOPOLOGY_VFIO_DRIVER "/bind"),
		("sys/bus/pci/drivers/" TOPOLOGY_VFIO_DRIVER "/unbind"),
	};
	/* Module versions and the parameters clients read (bools read "Y" or "N"). */
	static const char *const ro[][2] = {
		{ "sys/module/vfio/version", "0.3\n" },
		{ "sys/module/vfio/parameters/enable_unsafe_noiommu_mode", "N\n" },
		{ "sys/module/vfio_pci/parameters/nointxmask", "N\n" },
		{ "sys/module/vfio_pci/parameters/disable_idle_d3", "N\n" },
		{ "sys/module/vfio_pci/parameters/disable_denylist", "N\n" },
		{ "sys/module/vfio_pci/parameters/enable_sriov", "N\n" },
		{ "sys/module/vfio_pci/parameters/disable_vga", "N\n" },
		{ "sys/module/vfio_pci_core/parameters/nointxmask", "N\n" },
		{ "sys/module/vfio_pci_core/parameters/disable_idle_d3", "N\n" },
		{ "sys/module/vfio_pci_core/parameters/disable_vga", "N\n" },
		{ "sys/module/iommufd/parameters/allow_unsafe_interrupts", "N\n" },
		{ "sys/devices/virtual/misc/vfio/dev", "10:196\n" },
		{ "sys/devices/virtual/misc/vfio/uevent", "MAJOR=10\nMINOR=196\nDEVNAME=vfio/vfio\n" },
	};
	static const char *const links[][2] = {
		{ "sys/class/misc/vfio", "../../devices/virtual/misc/vfio" },
		{ ("sys/bus/pci/drivers/" TOPOLOGY_VFIO_DRIVER "/module"), "../../../../module/vfio_pci" },
	};
	size_t i;
	int id, rc = 0;

	for (i = 0; i < ARRAY_SIZE(fixed) && !rc; i++)
		rc = add_dir(es, "%s", fixed[i]);
	for (i = 0; i < ARRAY_SIZE(wo) && !rc; i++)
		rc = entries_add(es, SYSFS_FILE, 0200, "", "%s", wo[i]);
	for (i = 0; i < ARRAY_SIZE(ro) && !rc; i++)
		rc = entries_add(es, SYSFS_FILE, 0444, ro[i][1], "%s", ro[i][0]);
	for (i = 0; i < ARRAY_SIZE(links) && !rc; i++)
		rc = add_link(es, links[i][1], "%s", links[i][0]);
	rc = rc ?: entries_add(es, SYSFS_FILE, 0666, "", "dev/vfio/vfio");
	rc = rc ?: entries_add_debugfs(es);
	for (id = iommu_group_next_id(-1); id >= 0 && !rc; id = iommu_group_next_id(id)) {
		struct iommu_group *group = iommu_group_get_by_id(id);

		if (!group)
			continue; /* went away since next_id() */
		rc = entries_add_group(es, group, id);
		iommu_group_put(group);
	}
	if (!rc && topology_loaded()) {
		rc = topology_for_each_iommu(topo_iommu_cb, es);
		rc = rc ?: topology_for_each_device(topo_dev_cb, es);
	}
	if (rc)
		return rc;
	/* Instances known only through a probed device (a machine built without a topology). */
	for (i = 0, rc = 0; i < es->nr && !rc; i++) {
		const char *p = es->v[i]->path;
		const char *pfx = "sys/devices/virtual/iommu/";

		if (!strncmp(p, pfx, strlen(pfx)) && es->v[i]->kind == SYSFS_LINK) {
			char name[64];

			if (sscanf(p + strlen(pfx), "%63[^/]", name) == 1)
				rc = entries_add_iommu(es, name);
		}
	}
	entries_sort(es);
	return rc;
}

/* ---- writing the tree ------------------------------------------------------------------------ */

static int tree_path(char *buf, size_t len, const char *rel)
{
	int n = snprintf(buf, len, "%s/%s", sysfs.tree, rel);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int tree_remove(const struct sysfs_entry *e)
{
	char path[PATH_MAX];
	int rc = tree_path(path, sizeof(path), e->path);

	if (rc)
		return rc;
	if ((e->kind == SYSFS_DIR ? rmdir(path) : unlink(path)) && errno != ENOENT)
		return -errno;
	return 0;
}

/* Creates @e, or replaces what is there; a file or link appears whole (rename). */
static int tree_create(const struct sysfs_entry *e)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	int rc, fd;

	rc = tree_path(path, sizeof(path), e->path);
	rc = rc ?: tree_path(tmp, sizeof(tmp), ".new");
	if (rc)
		return rc;
	if (uiommu_should_fail())
		return -EIO;
	if (e->kind == SYSFS_DIR) {
		if (mkdir(path, e->mode) && errno != EEXIST)
			return -errno;
		return 0;
	}
	unlink(tmp);
	if (e->kind == SYSFS_LINK) {
		if (symlink(e->data, tmp))
			return -errno;
	} else {
		ssize_t n;

		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, e->mode);
		if (fd < 0)
			return -errno;
		n = e->len ? write(fd, e->data, e->len) : 0;
		rc = n < 0 ? -errno : (size_t)n != e->len ? -EIO : 0;
		close(fd);
		if (rc) {
			unlink(tmp);
			return rc;
		}
	}
	if (rename(tmp, path)) {
		rc = -errno;
		unlink(tmp);
		return rc;
	}
	return 0;
}

/* Brings the disk from sysfs.cur to @want (both sorted); takes @want's entries on success. */
static int tree_apply(struct sysfs_entries *want)
{
	struct sysfs_entries *cur = &sysfs.cur;
	size_t i, j;
	int rc;

	lockdep_assert_held(&sysfs_lock);
	if (sysfs.dirty) {
		char sys[PATH_MAX];

		rc = tree_path(sys, sizeof(sys), "sys");
		if (rc)
			return rc;
		remove_tree(sys);
		rc = tree_path(sys, sizeof(sys), "dev");
		if (rc)
			return rc;
		remove_tree(sys);
		entries_free(cur);
		sysfs.dirty = false;
	}
	/* Removals, children first (a child sorts after its parent): what is gone or changed kind. */
	for (i = cur->nr, j = want->nr; i-- > 0;) {
		const struct sysfs_entry *e = cur->v[i];
		int c = 1;

		while (j > 0 && (c = strcmp(want->v[j - 1]->path, e->path)) > 0)
			j--;
		if (j > 0 && c == 0 && want->v[j - 1]->kind == e->kind)
			continue;
		rc = tree_remove(e);
		if (rc)
			goto err_dirty;
	}
	/* Creations and updates, parents first. */
	for (i = 0, j = 0; i < want->nr; i++) {
		const struct sysfs_entry *e = want->v[i];
		int c = 1;

		while (j < cur->nr && (c = strcmp(cur->v[j]->path, e->path)) < 0)
			j++;
		if (j < cur->nr && c == 0 && entry_same(cur->v[j], e))
			continue;
		rc = tree_create(e);
		if (rc)
			goto err_dirty;
	}
	entries_free(cur);
	*cur = *want;
	memset(want, 0, sizeof(*want));
	return 0;

err_dirty:
	sysfs.dirty = true;
	return rc;
}

/* ---- the session and its journal ------------------------------------------------------------ */

static void session_remove(const char *path);
static void sysfs_flush_bypassed_all(void);

static void sysfs_atexit(void)
{
	pid_t pid = getpid();

	/*
	 * What libc wrote to an attribute by itself (dprintf, a FILE of its own on the fd) is
	 * stored now if no close did it: the program exec'd with a shell's redirection exits
	 * without closing its stdout. Registered before main(), this runs after the program's own
	 * exit handlers (coreutils' close_stdout), but before libc flushes the streams left open.
	 */
	sysfs_flush_bypassed_all();
	/* No lock: other threads may be gone or stuck; exit is single-threaded enough here. */
	if (sysfs.pid == pid && sysfs.tree[0])
		remove_tree(sysfs.tree);
	if (sysfs_session_owner == pid && sysfs_session_owned[0])
		session_remove(sysfs_session_owned);
}

static void sysfs_atfork_prepare(void)
{
	uiommu_mutex_lock(&sysfs_lock);
	uiommu_mutex_lock(&sysfs_fd_lock);
}

static void sysfs_atfork_parent(void)
{
	uiommu_mutex_unlock(&sysfs_fd_lock);
	uiommu_mutex_unlock(&sysfs_lock);
}

static pthread_once_t sysfs_atexit_once = PTHREAD_ONCE_INIT;

static void sysfs_register_atexit(void)
{
	atexit(sysfs_atexit);
}

/* Is @path a directory of ours, safe to put files in (not someone else's planted one)? */
static int session_check(const char *path)
{
	struct stat st;

	if (lstat(path, &st))
		return -errno;
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 0077))
		return -EPERM;
	return 0;
}

/*
 * Marks @path, a directory this process has just made, as a session's own: only then may the
 * session's owner (or a later session's sweep) remove it. $UIOMMU_SYSFS_DIR may name any
 * directory, and the owner's pid in $UIOMMU_SYSFS_OWNER proves nothing about who made it.
 */
static void session_mark(const char *path)
{
	char mark[PATH_MAX];
	int fd;

	if (snprintf(mark, sizeof(mark), "%s/" SESSION_MARK, path) >= (int)sizeof(mark))
		return;
	fd = open(mark, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
}

/* Makes the session directory @path, marked, unless it exists; either way it must be ours. */
static int session_make(const char *path, bool *made)
{
	*made = !mkdir(path, 0700);
	if (*made)
		session_mark(path);
	else if (errno != EEXIST)
		return -errno;
	return session_check(path);
}

/* Is @name, an entry of a session directory, one that sessions make ("tree.<pid>.XXXXXX")? */
static bool session_tree_name(const char *name)
{
	int pid, end = 0;

	return sscanf(name, "tree.%d.%n", &pid, &end) == 1 && end && strlen(name + end) == 6;
}

/*
 * Is @name a record of a server (session.h) that is gone, or ours (we are on our way out)? A
 * live one's stays, and with it the directory, as a held claim's does.
 */
static bool session_server_gone(const char *name)
{
	int pid;

	if (strncmp(name, SESSION_SERVER, strlen(SESSION_SERVER)) ||
	    sscanf(name + strlen(SESSION_SERVER), "%d.", &pid) != 1 || pid <= 0)
		return false;
	return pid == getpid() || (kill(pid, 0) && errno == ESRCH);
}

/*
 * Removes a session directory made by a session (marked), and only what sessions put in it:
 * the journal, the process trees, the claim files nobody holds (session.c), the records of
 * servers that are gone, the mark. Anything else stays, and with it the directory.
 */
static void session_remove(const char *path)
{
	char entry[PATH_MAX];
	struct dirent *de;
	struct stat st;
	DIR *dir;

	if (session_check(path) ||
	    snprintf(entry, sizeof(entry), "%s/" SESSION_MARK, path) >= (int)sizeof(entry) ||
	    lstat(entry, &st) || !S_ISREG(st.st_mode) || st.st_uid != geteuid())
		return;
	dir = opendir(path);
	if (!dir)
		return;
	while ((de = readdir(dir))) {
		bool tree = session_tree_name(de->d_name);
		bool claim = !strncmp(de->d_name, "claim.", 6);
		bool server = session_server_gone(de->d_name);

		if (!tree && !claim && !server && strcmp(de->d_name, "journal"))
			continue;
		if (snprintf(entry, sizeof(entry), "%s/%s", path, de->d_name) >=
			    (int)sizeof(entry) || lstat(entry, &st) || st.st_uid != geteuid())
			continue;
		if (claim && S_ISREG(st.st_mode))
			session_claim_remove_unheld(path, de->d_name); /* a held one stays */
		else if (tree && S_ISDIR(st.st_mode))
			remove_tree(entry);
		else if (!tree && S_ISREG(st.st_mode))
			unlink(entry);
	}
	closedir(dir);
	snprintf(entry, sizeof(entry), "%s/" SESSION_MARK, path);
	unlink(entry);
	/* Left non-empty by something not ours: keep it, and the mark, for a later sweep. */
	if (rmdir(path))
		session_mark(path);
}

void sysfs_session_left(void)
{
	const char *env = getenv(SYSFS_DIR_ENV), *owner = getenv(SYSFS_OWNER_ENV);
	int pid;

	if (!env || !*env || !owner || sscanf(owner, "%d", &pid) != 1 || pid <= 0 ||
	    pid == getpid())
		return;
	/* A live owner (or its pid reused) removes it, or a later session's sweep does. */
	if (!kill(pid, 0) || errno != ESRCH)
		return;
	session_remove(env);
}

/*
 * Removes the sessions of dead owners. Exit handlers do not run when a process leaves with
 * _exit() (dash does) or dies, so a new session sweeps up what earlier ones left behind:
 * "<tmpdir>/uiommu-sysfs.<pid>.<suffix>" directories of ours whose <pid> is gone.
 */
static void sysfs_session_gc(const char *tmpdir, const char *keep)
{
	struct dirent *de;
	DIR *dir = opendir(tmpdir);

	if (!dir)
		return;
	while ((de = readdir(dir))) {
		char path[PATH_MAX];
		int pid;

		if (sscanf(de->d_name, "uiommu-sysfs.%d.", &pid) != 1 || pid <= 0)
			continue;
		if (!kill(pid, 0) || errno != ESRCH)
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", tmpdir, de->d_name) >= (int)sizeof(path) ||
		    !strcmp(path, keep))
			continue;
		session_remove(path);
	}
	closedir(dir);
}

int sysfs_session_dir(char *buf, size_t len)
{
	const char *env = getenv(SYSFS_DIR_ENV);
	bool made;

	if (!env || !*env)
		return -ENOENT;
	if (snprintf(buf, len, "%s", env) >= (int)len)
		return -ENAMETOOLONG;
	return session_make(buf, &made);
}

/* The session directory exists, and this process has its own tree in it. */
static int sysfs_setup(void)
{
	const char *env = getenv(SYSFS_DIR_ENV);
	const char *tmpdir = getenv("TMPDIR");
	pid_t pid = getpid();
	bool made;
	int rc;

	lockdep_assert_held(&sysfs_lock);
	if (sysfs.pid == pid)
		return 0;
	/*
	 * First use, or a forked child: the tree and the entries on disk are the parent's. The
	 * journal offset stays: the child's machine is a copy of the parent's, journal included.
	 */
	entries_free(&sysfs.cur);
	sysfs.tree[0] = sysfs.tree_real[0] = '\0';
	sysfs.dirty = false;
	if (!tmpdir || !*tmpdir)
		tmpdir = "/tmp";
	if (env && *env) {
		if (snprintf(sysfs.session, sizeof(sysfs.session), "%s", env) >=
		    (int)sizeof(sysfs.session))
			return -ENAMETOOLONG;
		rc = session_make(sysfs.session, &made);
		if (rc)
			return rc;
		if (made)
			sysfs_session_gc(tmpdir, sysfs.session);
	} else if (sysfs_session_owned[0]) {
		/* A private session made earlier by this process or the parent it forked from. */
		snprintf(sysfs.session, sizeof(sysfs.session), "%s", sysfs_session_owned);
		rc = session_make(sysfs.session, &made);
		if (rc)
			return rc;
	} else {
		/* Used without the preload layer: a private session, removed at exit. */
		snprintf(sysfs.session, sizeof(sysfs.session), "%s/uiommu-sysfs.%d.XXXXXX", tmpdir,
			 (int)pid);
		if (!mkdtemp(sysfs.session))
			return -errno;
		session_mark(sysfs.session);
		sysfs_session_gc(tmpdir, sysfs.session);
		snprintf(sysfs_session_owned, sizeof(sysfs_session_owned), "%s", sysfs.session);
		sysfs_session_owner = pid;
	}
	if (snprintf(sysfs.tree, sizeof(sysfs.tree), "%s/tree.%d.XXXXXX", sysfs.session,
		     (int)pid) >= (int)sizeof(sysfs.tree))
		return -ENAMETOOLONG;
	if (!mkdtemp(sysfs.tree))
		return -errno;
	if (!realpath(sysfs.tree, sysfs.tree_real)) {
		rc = -errno;
		rmdir(sysfs.tree);
		return rc;
	}
	sysfs.pid = pid;
	if (!sysfs.atfork_done) {
		pthread_atfork(sysfs_atfork_prepare, sysfs_atfork_parent, sysfs_atfork_parent);
		sysfs.atfork_done = true;
	}
	pthread_once(&sysfs_atexit_once, sysfs_register_atexit);
	return 0;
}

static int journal_open(int flags)
{
	char path[PATH_MAX];

	if (snprintf(path, sizeof(path), "%s/journal", sysfs.session) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	return open(path, flags | O_CLOEXEC, 0600);
}

/* The group of the device named @bdf, with a reference, or NULL. */
static struct iommu_group *group_by_bdf(const char *bdf)
{
	struct device *dev = topology_loaded() ? topology_find_device(bdf) : NULL;

	return dev ? iommu_group_get(dev) : NULL;
}

/* The kernel's rescan: plugs every device of the topology that is absent. */
static void rescan_all(void)
{
	unsigned int i, nr = topology_nr_devices();

	for (i = 0; i < nr; i++) {
		struct topology_device_info info;
		struct device *dev = topology_device_at(i);
		char bdf[32];

		if (!dev)
			break;
		snprintf(bdf, sizeof(bdf), "%s", dev->name);
		if (!topology_device_get_info(bdf, &info) && !info.present)
			topology_plug(bdf); /* a probe that fails leaves it absent */
	}
}

/* Applies one journal line (NUL-terminated); what the local state refuses is skipped. */
static void journal_apply(const char *line)
{
	char bdf[33], value[33] = "", attr[64];

	if (sscanf(line, "debugfs %63s %32s", attr, value) == 2) {
		fault_debugfs_store(attr, value, strlen(value));
		return;
	}
	if (sscanf(line, "type %32s %32s", bdf, value) == 2) {
		struct iommu_group *group = group_by_bdf(bdf);

		if (group) {
			/* Checked where it was written; a refusal here is local. */
			iommu_group_type_store(group, value, strlen(value), true);
			iommu_group_put(group);
		}
		return;
	}
	if (!topology_loaded())
		return;
	if (sscanf(line, "unplug %32s", bdf) == 1)
		topology_unplug(bdf);
	else if (sscanf(line, "bind %32s", bdf) == 1)
		topology_bind(bdf);
	else if (sscanf(line, "unbind %32s", bdf) == 1)
		topology_unbind(bdf);
	else if (sscanf(line, "vfio-bind %32s", bdf) == 1)
		topology_vfio_bind(bdf);
	else if (sscanf(line, "vfio-unbind %32s", bdf) == 1)
		topology_vfio_unbind(bdf);
	else if ((value[0] = '\0', sscanf(line, "override %32s %32s", bdf, value) >= 1))
		topology_set_driver_override(bdf, value);
	else if (!strcmp(line, "rescan"))
		rescan_all();
}

/* Replays the journal entries after sysfs.journal_off; @fd is the journal, locked. */
static void journal_replay(int fd)
{
	char buf[4096];
	ssize_t n;

	lockdep_assert_held(&sysfs_lock);
	for (;;) {
		char *line, *end;

		n = pread(fd, buf, sizeof(buf) - 1, sysfs.journal_off);
		if (n <= 0)
			return;
		buf[n] = '\0';
		for (line = buf; (end = strchr(line, '\n')); line = end + 1) {
			*end = '\0';
			journal_apply(line);
		}
		if (line == buf)
			return; /* a partial line: its writer is still at it */
		sysfs.journal_off += line - buf;
	}
}

static void journal_catch_up(void)
{
	struct stat st;
	int fd;

	lockdep_assert_held(&sysfs_lock);
	fd = journal_open(O_RDONLY);
	if (fd < 0)
		return;
	if (!fstat(fd, &st) && st.st_size > sysfs.journal_off && !flock(fd, LOCK_SH)) {
		journal_replay(fd);
		flock(fd, LOCK_UN);
	}
	close(fd);
}

/* Serialises the tree's first build; order: outermost of the core, like sysfs_lock. */
UIOMMU_MUTEX_DEFINE(sysfs_boot_lock);
static bool sysfs_boot_tried; /* sysfs_boot_lock */

/*
 * One attempt per process: a topology that fails to load said why on stderr already; the
 * virtual sysfs then shows what the core has (nothing, or what the program built itself).
 */
int sysfs_machine_boot(void)
{
	int rc = 0;

	if (topology_loaded())
		return 0;
	uiommu_mutex_lock(&sysfs_boot_lock);
	if (!topology_loaded() && !sysfs_boot_tried) {
		sysfs_boot_tried = true;
		rc = topology_load(NULL);
		if (rc == -EBUSY) /* the program itself, or another thread, won */
			rc = 0;
	}
	uiommu_mutex_unlock(&sysfs_boot_lock);
	return rc;
}

/* Brings this process's tree up to date. */
static int sysfs_sync(void)
{
	struct sysfs_entries want = {};
	int rc;

	lockdep_assert_held(&sysfs_lock);
	rc = sysfs_setup();
	if (rc)
		return rc;
	sysfs_machine_boot(); /* a failed boot leaves an empty machine, still served */
	journal_catch_up();
	rc = entries_build(&want);
	rc = rc ?: tree_apply(&want);
	entries_free(&want);
	return rc;
}

int sysfs_tree_root(char *buf, size_t len)
{
	int rc = 0;

	uiommu_mutex_lock(&sysfs_lock);
	if (sysfs.pid != getpid())
		rc = -ENOENT;
	else
		snprintf(buf, len, "%s", sysfs.tree);
	uiommu_mutex_unlock(&sysfs_lock);
	return rc;
}

/* ---- the type store, shared through the journal ---------------------------------------------- */

static bool in_initial_userns(void)
{
	unsigned long inner, outer, count;
	bool initial = false;
	FILE *f = fopen("/proc/self/uid_map", "re");

	if (!f)
		return true; /* a kernel without user namespaces */
	if (fscanf(f, "%lu %lu %lu", &inner, &outer, &count) == 3)
		initial = inner == 0 && outer == 0 && count == 4294967295ul;
	fclose(f);
	return initial;
}

bool sysfs_type_capable(void)
{
	cap_flag_value_t admin = CAP_CLEAR, rawio = CAP_CLEAR;
	const char *env = getenv(SYSFS_PRIVILEGED_ENV);
	cap_t caps;

	if (env && *env)
		return !strcmp(env, "1");
	if (uiommu_should_fail())
		return false;
	if (!in_initial_userns())
		return false;
	caps = cap_get_proc();
	if (!caps)
		return false;
	if (cap_get_flag(caps, CAP_SYS_ADMIN, CAP_EFFECTIVE, &admin))
		admin = CAP_CLEAR;
	if (cap_get_flag(caps, CAP_SYS_RAWIO, CAP_EFFECTIVE, &rawio))
		rawio = CAP_CLEAR;
	cap_free(caps);
	return admin == CAP_SET && rawio == CAP_SET;
}

static int first_dev_cb(struct device *dev, void *data)
{
	snprintf(data, 32, "%s", dev->name);
	return 1;
}

/*
 * A journaled store begins: the journal, locked, with what others wrote replayed, so the store
 * sees the session's machine. -1 when this process serves no virtual sysfs (only such a
 * process shares its machine) or the journal cannot be had (the store is then local).
 */
static int journal_begin(void)
{
	int fd;

	lockdep_assert_held(&sysfs_lock);
	if (sysfs.pid != getpid())
		return -1;
	fd = journal_open(O_RDWR | O_CREAT | O_APPEND);
	if (fd >= 0 && flock(fd, LOCK_EX)) {
		close(fd);
		fd = -1;
	}
	if (fd >= 0)
		journal_replay(fd);
	return fd;
}

/* ... and ends, appending @line ("...\n") if the store succeeded, NULL if not. */
static void journal_end(int fd, const char *line)
{
	lockdep_assert_held(&sysfs_lock);
	if (fd < 0)
		return;
	if (line) {
		ssize_t n = (ssize_t)strlen(line);

		if (write(fd, line, (size_t)n) == n)
			sysfs.journal_off = lseek(fd, 0, SEEK_END);
	}
	flock(fd, LOCK_UN);
	close(fd);
}

/* ---- what the other processes of the session hold --------------------------------------------- */

/*
 * A store that the kernel refuses while a user has the device or its group (a type switch, a
 * DMA-API driver's bind, vfio-pci's unbind, a remove) must be refused here too when the user
 * is another process of the session, whose copy of the machine this one cannot see: its VFIO
 * files and owners are claims (session.h, src/vfio/claim.c). A store tests the claims it
 * cares about by taking each exclusively, without waiting (session_claim_take(), which makes
 * the file where nobody ever claimed, so a first claimer is kept out too). One that somebody
 * holds (another process, or this one, whose own state then refuses the same way) is
 * TOPOLOGY_HELD_*, and the store answers the kernel's errno for it, with nothing journalled,
 * once the session settled and a second try met the same (sysfs_held_settle(): the holder may
 * hold it for a file whose last fd a dead process had). One that nobody holds stays ours
 * until the store's journal entry is written (sysfs_held_drop() after journal_end()), so no
 * open or bind of another process gets in between: one that tries meanwhile is refused as if
 * the store had won (claim.c says how).
 */
struct sysfs_held {
	unsigned int held;          /* TOPOLOGY_HELD_*: held by somebody */
	struct session_claim owner; /* owner.N while we test it (nobody held it) */
	struct session_claim open;  /* open.BDF, likewise */
};

#define SYSFS_HELD_INIT                                                                   \
	((struct sysfs_held){ .owner = SESSION_CLAIM_NONE, .open = SESSION_CLAIM_NONE })

static void sysfs_held_drop(struct sysfs_held *h)
{
	session_claim_drop(&h->open);
	session_claim_drop(&h->owner);
}

/* Tests the claim @name for @bit (*@claim ours when nobody holds it); -errno if it cannot. */
static int sysfs_held_test(struct sysfs_held *h, unsigned int bit, struct session_claim *claim,
			   const char *name)
{
	int rc = session_claim_take(name, true, claim);

	if (rc == -EBUSY) {
		h->held |= bit;
		return 0;
	}
	return rc;
}

/*
 * Fills @h for @want (TOPOLOGY_HELD_*): OWNED tests the group @group_id (< 0: none), OPEN the
 * device @bdf. Return: 0, or -errno (the store fails with it: an injected -ENOMEM, -EMFILE)
 * with nothing held.
 */
static int sysfs_held_take(struct sysfs_held *h, unsigned int want, int group_id, const char *bdf)
{
	char name[64];
	int rc = 0;

	lockdep_assert_held(&sysfs_lock);
	*h = SYSFS_HELD_INIT;
	if ((want & TOPOLOGY_HELD_OWNED) && group_id >= 0) {
		snprintf(name, sizeof(name), SESSION_CLAIM_OWNER, group_id);
		rc = sysfs_held_test(h, TOPOLOGY_HELD_OWNED, &h->owner, name);
	}
	if (!rc && (want & TOPOLOGY_HELD_OPEN)) {
		snprintf(name, sizeof(name), SESSION_CLAIM_OPEN, bdf);
		rc = sysfs_held_test(h, TOPOLOGY_HELD_OPEN, &h->open, name);
	}
	if (rc)
		sysfs_held_drop(h);
	return rc;
}

/* The number of the group of the device @bdf, or -1. */
static int group_id_by_bdf(const char *bdf)
{
	struct iommu_group *group = group_by_bdf(bdf);
	int id = group ? iommu_group_id(group) : -1;

	if (group)
		iommu_group_put(group);
	return id;
}

/*
 * A store refused because another process holds a claim (*@others) may meet a claim held for
 * a file whose last fd a dead process had: the kernel's exit had released it before anyone
 * could see the death. So such a refusal lets the session settle (session_settle(), outside
 * sysfs_lock: the releases may take it) and the store is tried once more.
 */
static bool sysfs_held_settle(ssize_t ret, bool others)
{
	if ((ret != -EBUSY && ret != -EPERM) || !others)
		return false;
	session_settle();
	return true;
}

static ssize_t sysfs_type_store_try(struct iommu_group *group, const char *buf, size_t count,
				    bool privileged, bool *others)
{
	struct sysfs_held held = SYSFS_HELD_INIT;
	char bdf[32] = "", line[96];
	const char *journal = NULL;
	size_t vlen = count;
	ssize_t ret;
	int fd;

	uiommu_mutex_lock(&sysfs_lock);
	fd = journal_begin();
	/* Unprivileged, the store is EACCES before it looks at any owner. */
	ret = privileged ? sysfs_held_take(&held, TOPOLOGY_HELD_OWNED, iommu_group_id(group), NULL)
			 : 0;
	if (!ret)
		ret = iommu_group_type_store_held(group, buf, count, privileged,
						  held.held & TOPOLOGY_HELD_OWNED);
	if (ret >= 0 && fd >= 0) {
		iommu_group_for_each_dev(group, bdf, first_dev_cb);
		if (vlen && buf[vlen - 1] == '\n')
			vlen--;
		/* The store accepted it, so it is one of a few short words. */
		if (bdf[0] && vlen < 32) {
			snprintf(line, sizeof(line), "type %s %.*s\n", bdf, (int)vlen, buf);
			journal = line;
		}
	}
	journal_end(fd, journal);
	*others = held.held;
	sysfs_held_drop(&held);
	uiommu_mutex_unlock(&sysfs_lock);
	return ret;
}

ssize_t sysfs_type_store(struct iommu_group *group, const char *buf, size_t count,
			 bool privileged)
{
	bool others;
	ssize_t ret = sysfs_type_store_try(group, buf, count, privileged, &others);

	if (sysfs_held_settle(ret, others))
		ret = sysfs_type_store_try(group, buf, count, privileged, &others);
	return ret;
}

/* ---- the PCI stores ------------------------------------------------------------------------- */

/* kstrtoul(s, 0, &val): an optional '+', a C integer literal, one optional newline, the end. */
static int parse_ulong(const char *s, unsigned long *val)
{
	char *end;

	if (*s == '+')
		s++;
	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*val = strtoul(s, &end, 0);
	if (errno)
		return -EINVAL; /* -ERANGE, which remove_store and rescan_store report as -EINVAL */
	if (*end == '\n')
		end++;
	return *end ? -EINVAL : 0;
}

/* The device named @name (sysfs_streq: one trailing newline allowed) if present, into @bdf. */
static int find_present(const char *name, char *bdf, size_t len)
{
	struct topology_device_info info;
	size_t n = strlen(name);

	if (n && name[n - 1] == '\n')
		n--;
	if (!n || n >= len)
		return -ENODEV;
	memcpy(bdf, name, n);
	bdf[n] = '\0';
	if (!topology_loaded() || topology_device_get_info(bdf, &info) || !info.present)
		return -ENODEV;
	return 0;
}

/*
 * @s: the bytes written, NUL-terminated; @line gets the journal entry of a success; @held
 * what the store tested of the other processes (sysfs_held_take()), the caller's to drop once
 * the entry is written.
 */
static int pci_store(enum sysfs_attr attr, const char *dev_bdf, const char *s, char *line,
		     size_t len, struct sysfs_held *held)
{
	unsigned long val;
	char bdf[32];
	int rc;

	lockdep_assert_held(&sysfs_lock);
	switch (attr) {
	case SYSFS_ATTR_REMOVE:
		/* Through an fd opened before the device went: kernfs's removed attribute. */
		if (find_present(dev_bdf, bdf, sizeof(bdf)))
			return -ENODEV;
		if (parse_ulong(s, &val))
			return -EINVAL;
		if (!val)
			return 0;
		rc = sysfs_held_take(held, TOPOLOGY_HELD_OWNED | TOPOLOGY_HELD_OPEN,
				     group_id_by_bdf(bdf), bdf);
		rc = rc ?: topology_unplug_held(bdf, held->held);
		if (rc)
			return rc == -ENOENT ? -ENODEV : rc;
		snprintf(line, len, "unplug %s\n", bdf);
		return 0;
	case SYSFS_ATTR_RESCAN:
		if (parse_ulong(s, &val))
			return -EINVAL;
		if (!val)
			return 0;
		if (topology_loaded())
			rescan_all();
		snprintf(line, len, "rescan\n");
		return 0;
	case SYSFS_ATTR_BIND:
		rc = find_present(s, bdf, sizeof(bdf));
		rc = rc ?: sysfs_held_take(held, TOPOLOGY_HELD_OWNED, group_id_by_bdf(bdf), bdf);
		rc = rc ?: topology_bind_held(bdf, held->held);
		if (rc == -ENOENT)
			rc = -ENODEV;
		else if (rc == -EPROBE_DEFER)
			rc = -EAGAIN; /* device_driver_attach() */
		if (!rc)
			snprintf(line, len, "bind %s\n", bdf);
		return rc;
	case SYSFS_ATTR_UNBIND:
		rc = find_present(s, bdf, sizeof(bdf));
		rc = rc ?: topology_unbind(bdf);
		if (rc)
			return -ENODEV; /* unknown, absent, or not bound to this driver */
		snprintf(line, len, "unbind %s\n", bdf);
		return 0;
	case SYSFS_ATTR_VFIO_BIND:
		rc = find_present(s, bdf, sizeof(bdf));
		rc = rc ?: topology_vfio_bind(bdf);
		if (rc == -ENOENT)
			rc = -ENODEV;
		if (!rc)
			snprintf(line, len, "vfio-bind %s\n", bdf);
		return rc;
	case SYSFS_ATTR_VFIO_UNBIND:
		rc = find_present(s, bdf, sizeof(bdf));
		rc = rc ?: sysfs_held_take(held, TOPOLOGY_HELD_OPEN, -1, bdf);
		rc = rc ?: topology_vfio_unbind_held(bdf, held->held);
		if (rc == -ENOENT)
			rc = -ENODEV;
		if (!rc)
			snprintf(line, len, "vfio-unbind %s\n", bdf);
		return rc;
	case SYSFS_ATTR_OVERRIDE: {
		/* driver_set_override(): one trailing newline dropped, "" clears. */
		size_t n = strlen(s);

		if (n && s[n - 1] == '\n')
			n--;
		if (n >= TOPOLOGY_DRIVER_NAME_MAX || memchr(s, ' ', n))
			return -EINVAL; /* longer than any driver's name: matches none anyway */
		memcpy(bdf, s, n);
		bdf[n] = '\0';
		rc = topology_set_driver_override(dev_bdf, bdf);
		if (rc)
			return rc == -ENOENT ? -ENODEV : rc;
		snprintf(line, len, "override %s %s\n", dev_bdf, bdf);
		return 0;
	}
	default:
		return -EIO;
	}
}

/* A debugfs attribute's store, journalled as the value it now shows. */
static ssize_t sysfs_debugfs_store(struct sysfs_file *f, const char *buf, size_t count)
{
	char line[128] = "", value[32];
	ssize_t ret;
	int fd;

	uiommu_mutex_lock(&sysfs_lock);
	fd = journal_begin();
	ret = fault_debugfs_store(f->debugfs, buf, count);
	if (ret >= 0 && !fault_debugfs_show(f->debugfs, value, sizeof(value)))
		snprintf(line, sizeof(line), "debugfs %s %s", f->debugfs, value);
	journal_end(fd, line[0] ? line : NULL);
	uiommu_mutex_unlock(&sysfs_lock);
	return ret;
}

/*
 * A `type` adopted across exec finds its group on first use (a process that only inherits the
 * fd never boots a machine for it): by the member it named, else by its id (a group without
 * devices). Return: 0, -ENODEV when neither is there any more, the sync's -errno.
 */
static int sysfs_file_resolve_group(struct sysfs_file *f)
{
	int rc = 0;

	uiommu_mutex_lock(&sysfs_lock);
	if (!f->group) {
		rc = sysfs_sync();
		if (!rc)
			f->group = f->bdf[0] ? group_by_bdf(f->bdf) :
					       iommu_group_get_by_id(f->group_id);
		if (!rc && !f->group)
			rc = -ENODEV;
	}
	uiommu_mutex_unlock(&sysfs_lock);
	return rc;
}

/* One try of a PCI store of @s (sysfs_held_settle()). */
static int sysfs_pci_store_try(struct sysfs_file *f, const char *s, bool *others)
{
	struct sysfs_held held = SYSFS_HELD_INIT;
	char line[96] = "";
	int rc, fd;

	uiommu_mutex_lock(&sysfs_lock);
	fd = journal_begin();
	rc = pci_store(f->attr, f->bdf, s, line, sizeof(line), &held);
	journal_end(fd, !rc && line[0] ? line : NULL);
	*others = held.held;
	sysfs_held_drop(&held);
	uiommu_mutex_unlock(&sysfs_lock);
	return rc;
}

/* Runs the store of @f on @count bytes of @buf; @count or the -errno. */
static ssize_t sysfs_attr_store(struct sysfs_file *f, const char *buf, size_t count,
				bool privileged)
{
	char s[4097];
	bool others;
	int rc;

	if (f->attr == SYSFS_ATTR_TYPE) {
		rc = sysfs_file_resolve_group(f);
		return rc ? rc : sysfs_type_store(f->group, buf, count, privileged);
	}
	if (f->attr == SYSFS_ATTR_DEBUGFS)
		return sysfs_debugfs_store(f, buf, count);
	if (count >= sizeof(s))
		count = sizeof(s) - 1;
	memcpy(s, buf, count);
	s[count] = '\0';
	rc = sysfs_pci_store_try(f, s, &others);
	if (sysfs_held_settle(rc, others))
		rc = sysfs_pci_store_try(f, s, &others);
	return rc ? rc : (ssize_t)count;
}

/* ---- the fd table --------------------------------------------------------------------------- */

static struct sysfs_file *sysfs_file_get(int fd)
{
	struct sysfs_file *f;

	if (fd < 0 || fd >= SYSFS_MAX_FDS)
		return NULL;
	uiommu_mutex_lock(&sysfs_fd_lock);
	f = atomic_load_explicit(&sysfs_fds[fd], memory_order_relaxed);
	if (f)
		f->refs++;
	uiommu_mutex_unlock(&sysfs_fd_lock);
	return f;
}

/*
 * Locks the memfd behind @fd against the other processes that hold it (a shell and the program
 * it exec'd): flock() on an open description of our own, as the program's is shared with them.
 * Returns that fd, or -errno (the caller goes on unlocked: sysfs_lock still covers this process).
 */
static int sysfs_file_lock(int fd)
{
	char path[32];
	int lfd;

	if (uiommu_should_fail())
		return -ENOMEM;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	lfd = sys_openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
	if (lfd < 0)
		return lfd;
	if (flock(lfd, LOCK_EX)) {
		int rc = -errno;

		sys_close(lfd);
		return rc;
	}
	return lfd;
}

/*
 * Takes what was written to the memfd behind the wrappers' back into @buf: bytes that libc wrote
 * itself (stdio), or that a program without the preload layer wrote. Read through @fd, one of
 * the record's fds that is still open. What is taken is punched out of the memfd (it reads as
 * zeros from then on), so that of the processes holding the memfd, each byte is stored by the
 * first that looks: the file itself is the record of what was stored, shared across fork and
 * exec. NULs are skipped (a store never contains one: sysfs_streq and kstrtoul refuse them).
 * Returns the byte count, 0 for none.
 */
static ssize_t sysfs_file_take_bypassed(struct sysfs_file *f, int fd, char *buf, size_t len)
{
	struct stat st;
	off_t pos, start = -1;
	ssize_t n = 0;
	int lfd;

	if (fstat(fd, &st) || st.st_dev != f->dev || st.st_ino != f->ino)
		return 0;
	uiommu_mutex_lock(&sysfs_lock);
	if (st.st_size <= f->consumed) {
		uiommu_mutex_unlock(&sysfs_lock);
		return 0;
	}
	lfd = sysfs_file_lock(fd);
	if (fstat(fd, &st))
		goto out_unlock;
	for (pos = f->consumed > f->skip ? f->consumed : f->skip; start < 0 && pos < st.st_size;) {
		ssize_t i;

		n = pread(fd, buf, len, pos);
		if (n <= 0)
			break;
		for (i = 0; i < n && !buf[i]; i++)
			;
		if (i < n)
			start = pos + i;
		pos += n;
	}
	n = 0;
	if (start >= 0)
		n = pread(fd, buf, len, start);
	if (n > 0 && fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, start,
			       st.st_size - start))
		n = 0; /* not ours to take: the file refuses to forget it */
	f->consumed = st.st_size;
out_unlock:
	if (lfd >= 0)
		sys_close(lfd);
	uiommu_mutex_unlock(&sysfs_lock);
	return n > 0 ? n : 0;
}

/* Stores what bypassed the wrappers (sysfs_file_take_bypassed()); no errno reaches the writer. */
static ssize_t sysfs_file_flush_bypassed(struct sysfs_file *f, int fd, bool privileged)
{
	char buf[4096];
	ssize_t n = sysfs_file_take_bypassed(f, fd, buf, sizeof(buf));

	return n > 0 ? sysfs_attr_store(f, buf, (size_t)n, privileged) : 0;
}

static void sysfs_file_put(struct sysfs_file *f)
{
	bool last;

	uiommu_mutex_lock(&sysfs_fd_lock);
	last = --f->refs == 0;
	uiommu_mutex_unlock(&sysfs_fd_lock);
	if (!last)
		return;
	if (f->group)
		iommu_group_put(f->group);
	uiommu_free(f);
}

/* Makes @fd point at @f (a reference moves in from the caller). */
static int sysfs_fd_install(int fd, struct sysfs_file *f)
{
	struct sysfs_file *old;

	if (fd < 0 || fd >= SYSFS_MAX_FDS)
		return -EMFILE;
	/* The exit handler stores what the program's libc writes to @fd and never closes. */
	pthread_once(&sysfs_atexit_once, sysfs_register_atexit);
	uiommu_mutex_lock(&sysfs_fd_lock);
	old = atomic_load_explicit(&sysfs_fds[fd], memory_order_relaxed);
	atomic_store_explicit(&sysfs_fds[fd], f, memory_order_release);
	if (!old)
		atomic_fetch_add(&sysfs_nr_fds, 1);
	uiommu_mutex_unlock(&sysfs_fd_lock);
	if (old)
		sysfs_file_put(old);
	return 0;
}

static struct sysfs_file *sysfs_fd_remove(int fd)
{
	struct sysfs_file *f;

	if (fd < 0 || fd >= SYSFS_MAX_FDS)
		return NULL;
	uiommu_mutex_lock(&sysfs_fd_lock);
	f = atomic_exchange_explicit(&sysfs_fds[fd], NULL, memory_order_acq_rel);
	if (f)
		atomic_fetch_sub(&sysfs_nr_fds, 1);
	uiommu_mutex_unlock(&sysfs_fd_lock);
	return f;
}

static void sysfs_flush_bypassed_all(void)
{
	bool privileged;
	int fd;

	if (!atomic_load_explicit(&sysfs_nr_fds, memory_order_relaxed))
		return;
	privileged = sysfs_type_capable();
	for (fd = 0; fd < SYSFS_MAX_FDS; fd++) {
		struct sysfs_file *f;

		if (!atomic_load_explicit(&sysfs_fds[fd], memory_order_relaxed))
			continue;
		f = sysfs_file_get(fd);
		if (!f)
			continue;
		sysfs_file_flush_bypassed(f, fd, privileged);
		sysfs_file_put(f);
	}
}

/* ---- public entry points --------------------------------------------------------------------- */

UIOMMU_EXPORT bool uiommu_sysfs_claims(const char *path)
{
	size_t i;

	if (!path || strncmp(path, "/sys/", 5))
		return false;
	for (i = 0; i < ARRAY_SIZE(sysfs_prefixes); i++) {
		size_t n = strlen(sysfs_prefixes[i]);

		if (!strncmp(path, sysfs_prefixes[i], n) && (path[n] == '\0' || path[n] == '/'))
			return true;
	}
	/* The PCI host bridges: /sys/devices/pci0000:00 and below. */
	return !strncmp(path, "/sys/devices/pci", 16) || fault_debugfs_claims(path);
}

UIOMMU_EXPORT bool uiommu_sysfs_claims_at(int dirfd, const char *path, char *buf, size_t len)
{
	char link[64], dir[PATH_MAX], root[PATH_MAX] = "";
	ssize_t n;
	size_t t;

	if (!path || path[0] == '/' || dirfd < 0)
		return false;
	uiommu_mutex_lock(&sysfs_lock);
	if (sysfs.pid == getpid())
		snprintf(root, sizeof(root), "%s", sysfs.tree_real);
	uiommu_mutex_unlock(&sysfs_lock);
	t = strlen(root);
	if (!t)
		return false; /* no tree here: no fd can be one of its directories */
	snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
	n = sys_readlinkat(AT_FDCWD, link, dir, sizeof(dir) - 1); /* not the wrapper */
	if (n <= 0)
		return false;
	dir[n] = '\0';
	if (strncmp(dir, root, t) || dir[t] != '/')
		return false;
	n = snprintf(buf, len, "%s/%s", dir + t, path);
	return n > 0 && (size_t)n < len && uiommu_sysfs_claims(buf);
}

/* The tree's path for @path, after a sync. */
static int sysfs_redirect_locked(const char *path, char *buf, size_t len)
{
	int rc, n;

	lockdep_assert_held(&sysfs_lock);
	rc = sysfs_sync();
	if (rc)
		return rc;
	n = snprintf(buf, len, "%s%s", sysfs.tree, path);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int sysfs_dev_redirect(const char *path, char *buf, size_t len)
{
	int rc;

	if (strncmp(path, "/dev/", 5))
		return -ENOENT;
	uiommu_mutex_lock(&sysfs_lock);
	rc = sysfs_redirect_locked(path, buf, len);
	uiommu_mutex_unlock(&sysfs_lock);
	return rc;
}

int sysfs_unredirect(const char *real, char *buf, size_t len)
{
	size_t n;
	int rc = -ENOENT;

	uiommu_mutex_lock(&sysfs_lock);
	n = strlen(sysfs.tree_real);
	if (sysfs.pid == getpid() && n && !strncmp(real, sysfs.tree_real, n) && real[n] == '/') {
		rc = snprintf(buf, len, "%s", real + n) >= (int)len ? -ENAMETOOLONG : 0;
	}
	uiommu_mutex_unlock(&sysfs_lock);
	return rc;
}

UIOMMU_EXPORT int uiommu_sysfs_redirect(const char *path, char *buf, size_t len)
{
	int rc;

	if (!uiommu_sysfs_claims(path))
		return rc_errno(-ENOENT);
	/* Bytes a shell's stdio wrote to an attribute's fd count before anything reads the tree. */
	sysfs_flush_bypassed_all();
	uiommu_mutex_lock(&sysfs_lock);
	rc = sysfs_redirect_locked(path, buf, len);
	uiommu_mutex_unlock(&sysfs_lock);
	return rc ? rc_errno(rc) : 0;
}

/*
 * The attribute @real (a resolved tree path) is, if it has a store: a group's `type` (its id
 * in @id), a device's `remove` (its BDF in @bdf), rescan, bind or unbind.
 */
static enum sysfs_attr attr_of(const char *real, int *id, char *bdf, size_t len)
{
	size_t n = strlen(sysfs.tree_real);
	char root[64], name[64], tail[16];
	int end = 0;

	if (strncmp(real, sysfs.tree_real, n))
		return SYSFS_ATTR_NONE;
	real += n;
	if (!strncmp(real, "/" SYSFS_DEBUGFS "/", strlen(SYSFS_DEBUGFS) + 2) &&
	    fault_debugfs_is_attr(real + strlen(SYSFS_DEBUGFS) + 2) &&
	    strlen(real + strlen(SYSFS_DEBUGFS) + 2) < len) {
		snprintf(bdf, len, "%s", real + strlen(SYSFS_DEBUGFS) + 2);
		return SYSFS_ATTR_DEBUGFS;
	}
	if (!strcmp(real, "/sys/bus/pci/rescan"))
		return SYSFS_ATTR_RESCAN;
	if (!strcmp(real, "/sys/bus/pci/drivers/" SYSFS_PCI_DRIVER "/bind"))
		return SYSFS_ATTR_BIND;
	if (!strcmp(real, "/sys/bus/pci/drivers/" SYSFS_PCI_DRIVER "/unbind"))
		return SYSFS_ATTR_UNBIND;
	if (!strcmp(real, "/sys/bus/pci/drivers/" TOPOLOGY_VFIO_DRIVER "/bind"))
		return SYSFS_ATTR_VFIO_BIND;
	if (!strcmp(real, "/sys/bus/pci/drivers/" TOPOLOGY_VFIO_DRIVER "/unbind"))
		return SYSFS_ATTR_VFIO_UNBIND;
	if (sscanf(real, "/sys/kernel/iommu_groups/%d/%15s%n", id, tail, &end) == 2 &&
	    !real[end] && !strcmp(tail, "type") && *id >= 0)
		return SYSFS_ATTR_TYPE;
	end = 0;
	if (sscanf(real, "/sys/devices/%63[^/]/%63[^/]/%15s%n", root, name, tail, &end) == 3 &&
	    !real[end] && !strncmp(root, "pci", 3) && strlen(name) < len &&
	    (!strcmp(tail, "remove") || !strcmp(tail, "driver_override"))) {
		snprintf(bdf, len, "%s", name);
		return tail[0] == 'r' ? SYSFS_ATTR_REMOVE : SYSFS_ATTR_OVERRIDE;
	}
	return SYSFS_ATTR_NONE;
}

/* The memfd's name for @f (SYSFS_MEMFD_PREFIX); @id is the group's of a `type`. */
static void sysfs_file_name(const struct sysfs_file *f, int id, char *buf, size_t len)
{
	const char *name = sysfs_attr_names[f->attr];

	if (f->attr == SYSFS_ATTR_TYPE)
		snprintf(buf, len, SYSFS_MEMFD_PREFIX "%s:%lld:%d:%s", name, (long long)f->skip, id,
			 f->bdf);
	else
		snprintf(buf, len, SYSFS_MEMFD_PREFIX "%s:%lld:%s", name, (long long)f->skip,
			 f->attr == SYSFS_ATTR_DEBUGFS ? f->debugfs : f->bdf);
}

/*
 * The record an inherited memfd named @name stands for (sysfs_file_name()), or NULL: not one of
 * ours, or -ENOMEM (the fd then stays a plain file, as it was before adoption existed).
 */
static struct sysfs_file *sysfs_file_parse(const char *name)
{
	char attr[16], arg[64] = "";
	struct sysfs_file *f;
	long long skip;
	size_t i;
	int end = 0;

	if (sscanf(name, SYSFS_MEMFD_PREFIX "%15[^:]:%lld:%n", attr, &skip, &end) != 2 || !end ||
	    skip < 0)
		return NULL;
	sscanf(name + end, "%63s", arg);
	for (i = 1; i < ARRAY_SIZE(sysfs_attr_names); i++)
		if (!strcmp(attr, sysfs_attr_names[i]))
			break;
	if (i == ARRAY_SIZE(sysfs_attr_names))
		return NULL;
	f = uiommu_zalloc(sizeof(*f));
	if (!f)
		return NULL;
	f->refs = 1;
	f->attr = (enum sysfs_attr)i;
	f->skip = f->consumed = (off_t)skip;
	if (f->attr == SYSFS_ATTR_TYPE) {
		end = 0;
		if (sscanf(arg, "%d:%n", &f->group_id, &end) != 1 || !end) {
			uiommu_free(f);
			return NULL;
		}
		snprintf(f->bdf, sizeof(f->bdf), "%s", arg + end);
	} else if (f->attr == SYSFS_ATTR_DEBUGFS) {
		snprintf(f->debugfs, sizeof(f->debugfs), "%s", arg);
	} else {
		snprintf(f->bdf, sizeof(f->bdf), "%s", arg);
	}
	return f;
}

/* Is @path (in the tree) a write-only attribute? kernfs refuses to open one for reading. */
static bool write_only_attr(const char *path)
{
	struct stat st;

	return !stat(path, &st) && S_ISREG(st.st_mode) && !(st.st_mode & 0444);
}

/*
 * A write open of the tree: an attribute with a store gets a tracked memfd, everything else
 * sysfs's errno.
 */
static int sysfs_open_write(const char *path, int flags)
{
	char redirected[PATH_MAX], real[PATH_MAX], bdf[64] = "", name[128], shown[64];
	ssize_t content = 0;
	struct iommu_group *group = NULL;
	enum sysfs_attr attr;
	struct sysfs_file *f;
	struct stat st;
	int rc, id = -1, fd;

	uiommu_mutex_lock(&sysfs_lock);
	rc = sysfs_redirect_locked(path, redirected, sizeof(redirected));
	if (rc)
		goto out_unlock;
	if (stat(redirected, &st)) {
		rc = errno == ENOENT && (flags & O_CREAT) ? -EACCES : -errno;
		goto out_unlock;
	}
	if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL)) {
		rc = -EEXIST;
		goto out_unlock;
	}
	if (S_ISDIR(st.st_mode)) {
		rc = -EISDIR;
		goto out_unlock;
	}
	attr = realpath(redirected, real) ? attr_of(real, &id, bdf, sizeof(bdf)) : SYSFS_ATTR_NONE;
	if (attr == SYSFS_ATTR_NONE) {
		rc = -EACCES; /* an attribute without a store */
		goto out_unlock;
	}
	/* Write-only: a read open fails, O_RDWR (and O_RDONLY | O_TRUNC) included. */
	if (attr != SYSFS_ATTR_TYPE && attr != SYSFS_ATTR_DEBUGFS &&
	    attr != SYSFS_ATTR_OVERRIDE && (flags & O_ACCMODE) != O_WRONLY) {
		rc = -EACCES;
		goto out_unlock;
	}
	if (attr == SYSFS_ATTR_TYPE) {
		group = iommu_group_get_by_id(id);
		if (!group) {
			rc = -ENOENT;
			goto out_unlock;
		}
	}
	uiommu_mutex_unlock(&sysfs_lock);

	f = uiommu_zalloc(sizeof(*f));
	if (!f) {
		rc = -ENOMEM;
		goto err_put_group;
	}
	f->refs = 1;
	f->attr = attr;
	f->group = group;
	if (group)
		iommu_group_for_each_dev(group, f->bdf, first_dev_cb);
	else if (attr == SYSFS_ATTR_DEBUGFS)
		snprintf(f->debugfs, sizeof(f->debugfs), "%s", bdf);
	else
		snprintf(f->bdf, sizeof(f->bdf), "%s", bdf);
	if ((flags & O_ACCMODE) == O_RDWR) {
		/* Readable too: the attribute's content, as a read would show it. */
		if (group)
			content = iommu_group_type_show(group, shown, sizeof(shown));
		else if (!fault_debugfs_show(f->debugfs, shown, sizeof(shown)))
			content = (ssize_t)strlen(shown);
		f->skip = f->consumed = content > 0 ? content : 0;
	}
	if (uiommu_should_fail()) {
		rc = -EMFILE;
		goto err_free;
	}
	sysfs_file_name(f, id, name, sizeof(name));
	fd = memfd_create(name, (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
	if (fd < 0) {
		rc = -errno;
		goto err_free;
	}
	if (f->skip && pwrite(fd, shown, (size_t)f->skip, 0) != f->skip)
		f->skip = f->consumed = 0;
	if (fstat(fd, &st)) {
		rc = -errno;
		close(fd);
		goto err_free;
	}
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	rc = sysfs_fd_install(fd, f);
	if (rc) {
		close(fd);
		goto err_free;
	}
	return fd;

err_free:
	uiommu_free(f);
err_put_group:
	if (group)
		iommu_group_put(group);
	return rc;
out_unlock:
	uiommu_mutex_unlock(&sysfs_lock);
	return rc;
}

UIOMMU_EXPORT int uiommu_sysfs_open(const char *path, int flags, mode_t mode)
{
	char redirected[PATH_MAX];
	struct stat st;
	int rc;

	if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)) {
		rc = sysfs_open_write(path, flags);
		return rc < 0 ? rc_errno(rc) : rc;
	}
	if (uiommu_sysfs_redirect(path, redirected, sizeof(redirected)))
		return -1;
	if (flags & O_CREAT) {
		/* sysfs cannot create: never let the tree grow a file. */
		if (stat(redirected, &st))
			return rc_errno(errno == ENOENT ? -EACCES : -errno);
		if (flags & O_EXCL)
			return rc_errno(-EEXIST);
		flags &= ~O_CREAT;
	}
	/* Not even root reads a 0200 attribute (the tree's file would let root in). */
	if (!(flags & O_PATH) && write_only_attr(redirected))
		return rc_errno(-EACCES);
	return open(redirected, flags, mode);
}

UIOMMU_EXPORT bool uiommu_sysfs_is_fd(int fd)
{
	if (!atomic_load_explicit(&sysfs_nr_fds, memory_order_relaxed))
		return false;
	return fd >= 0 && fd < SYSFS_MAX_FDS &&
	       atomic_load_explicit(&sysfs_fds[fd], memory_order_acquire);
}

UIOMMU_EXPORT ssize_t uiommu_sysfs_write(int fd, const void *buf, size_t count)
{
	struct sysfs_file *f = sysfs_file_get(fd);
	bool privileged;
	ssize_t ret;

	if (!f)
		return rc_errno(-EBADF);
	privileged = sysfs_type_capable();
	sysfs_file_flush_bypassed(f, fd, privileged);
	/* sysfs hands a store at most a page, from offset 0, whatever the file position. */
	if (count > 4096)
		count = 4096;
	ret = sysfs_attr_store(f, buf, count, privileged);
	sysfs_file_put(f);
	return ret < 0 ? rc_errno((int)ret) : ret;
}

static void sysfs_std_claim(int fd);
static void sysfs_std_release(int fd);

UIOMMU_EXPORT int uiommu_sysfs_fd_dup(int oldfd, int newfd)
{
	struct sysfs_file *f = sysfs_file_get(oldfd);
	int rc;

	if (!f)
		return rc_errno(-EBADF);
	rc = sysfs_fd_install(newfd, f); /* our reference moves into the table */
	if (rc) {
		sysfs_file_put(f);
		return rc_errno(rc);
	}
	sysfs_std_claim(newfd); /* a shell's `> attribute`: its stdout reports the errno */
	return 0;
}

UIOMMU_EXPORT void uiommu_sysfs_fd_forget(int fd)
{
	struct sysfs_file *f;

	sysfs_std_release(fd); /* while @fd still stores: what stdout holds goes there */
	f = sysfs_fd_remove(fd);

	if (f) {
		/* @fd is still open (the caller replaces it next): a last look for bytes. */
		sysfs_file_flush_bypassed(f, fd, sysfs_type_capable());
		sysfs_file_put(f);
	}
}

/* A close_range() of [@first, @last] is about to run: forget our fds in it, each as a close. */
void sysfs_fds_forget_range(unsigned int first, unsigned int last)
{
	unsigned int fd;

	if (!atomic_load_explicit(&sysfs_nr_fds, memory_order_relaxed))
		return;
	for (fd = first; fd <= last && fd < SYSFS_MAX_FDS; fd++)
		if (atomic_load_explicit(&sysfs_fds[fd], memory_order_relaxed))
			uiommu_sysfs_fd_forget((int)fd);
}

UIOMMU_EXPORT int uiommu_sysfs_close(int fd)
{
	uiommu_sysfs_fd_forget(fd);
	return close(fd);
}

UIOMMU_EXPORT int uiommu_sysfs_stat(const char *path, struct stat *st)
{
	char redirected[PATH_MAX];

	if (uiommu_sysfs_redirect(path, redirected, sizeof(redirected)))
		return -1;
	return stat(redirected, st);
}

UIOMMU_EXPORT int uiommu_sysfs_lstat(const char *path, struct stat *st)
{
	char redirected[PATH_MAX];

	if (uiommu_sysfs_redirect(path, redirected, sizeof(redirected)))
		return -1;
	return lstat(redirected, st);
}

UIOMMU_EXPORT ssize_t uiommu_sysfs_readlink(const char *path, char *buf, size_t len)
{
	char redirected[PATH_MAX];

	if (uiommu_sysfs_redirect(path, redirected, sizeof(redirected)))
		return -1;
	return readlink(redirected, buf, len);
}

UIOMMU_EXPORT int uiommu_sysfs_access(const char *path, int mode)
{
	char redirected[PATH_MAX];

	if (uiommu_sysfs_redirect(path, redirected, sizeof(redirected)))
		return -1;
	return access(redirected, mode);
}

/*
 * stdio on an attribute opened for writing: a stream whose cookie names the fd. The stream
 * outlives nothing: when the fd stops being an attribute's (a dup2 over it), its calls are the
 * plain system calls' (through the preload layer's wrappers when there is one).
 */
struct sysfs_cookie {
	int fd;
	FILE *stream;
	bool detached; /* closing the stream leaves the fd alone (sysfs_std_release()) */
};

/*
 * The streams of ours standing in for stdout and stderr while fd 1 or 2 is an attribute
 * (sysfs_std_claim()), and the program's streams they replaced. Slots are taken and emptied
 * with atomic exchanges: the dup2, close and fclose paths that end a stand-in may race.
 */
static _Atomic(struct sysfs_cookie *) sysfs_std[3];
static FILE *sysfs_std_orig[3]; /* written before the slot is published, read after taking it */
/* The program fclose()d a stand-in that was its stdout/stderr: the variable now dangles. */
static atomic_bool sysfs_std_gone[3];

/* stdout for 1, stderr for 2: the variable a program's stdio reads (glibc lets us assign it). */
static FILE **sysfs_std_var(int fd)
{
	return fd == 1 ? &stdout : &stderr;
}

static ssize_t cookie_read(void *c, char *buf, size_t size)
{
	return read(((struct sysfs_cookie *)c)->fd, buf, size);
}

static ssize_t cookie_write(void *c, const char *buf, size_t size)
{
	int fd = ((struct sysfs_cookie *)c)->fd;
	ssize_t n = uiommu_sysfs_is_fd(fd) ? uiommu_sysfs_write(fd, buf, size) :
					     write(fd, buf, size);

	/* glibc's file streams see a failed write as 0 bytes done (with errno); a cookie that
	 * says -1 makes fwrite() count it as a success. */
	return n < 0 ? 0 : n;
}

static int cookie_seek(void *c, off64_t *off, int whence)
{
	off_t r = lseek(((struct sysfs_cookie *)c)->fd, (off_t)*off, whence);

	if (r < 0)
		return -1;
	*off = r;
	return 0;
}

static int cookie_close(void *c)
{
	struct sysfs_cookie *ck = c, *expected = ck;
	int fd = ck->fd, rc = 0;

	/* The program's fclose(stdout) of a stand-in: no longer ours to hand back. */
	if (fd >= 0 && fd <= 2 && atomic_compare_exchange_strong(&sysfs_std[fd], &expected, NULL) &&
	    *sysfs_std_var(fd) == ck->stream)
		atomic_store(&sysfs_std_gone[fd], true);
	if (!ck->detached)
		rc = uiommu_sysfs_is_fd(fd) ? uiommu_sysfs_close(fd) : close(fd);
	uiommu_free(ck);
	return rc;
}

/*
 * A stream over @fd whose writes reach the store. glibc marks a cookie stream's descriptor -2
 * (fileno() answers EBADF); it is given @fd instead, which only fileno() reads (the cookie
 * functions do the I/O), so that a program asking its stdout's number gets 1.
 */
static FILE *sysfs_stream(int fd, const char *mode, struct sysfs_cookie **ckp)
{
	static const cookie_io_functions_t io = {
		.read = cookie_read, .write = cookie_write, .seek = cookie_seek,
		.close = cookie_close,
	};
	struct sysfs_cookie *ck = uiommu_zalloc(sizeof(*ck));
	FILE *f;

	if (!ck) {
		errno = ENOMEM;
		return NULL;
	}
	ck->fd = fd;
	f = fopencookie(ck, mode, io);
	if (!f) {
		uiommu_free(ck);
		return NULL;
	}
	ck->stream = f;
	if (ckp)
		*ckp = ck;
#ifdef __GLIBC__
	f->_fileno = fd;
#endif
	return f;
}

/*
 * fd 1 or 2 (@fd) has just become an attribute (a shell's `echo x > type` dup2s it there, or
 * the program was exec'd so): while it stays one, stdout or stderr is a stream of ours, so that
 * the program's stdio (bash's builtin echo and printf, coreutils' close_stdout) gets the
 * store's errno from fflush() and fclose(). Only a stream that writes to @fd and holds nothing
 * unwritten is replaced (its bytes belong to the fd's previous file); it keeps its buffering.
 * On failure the program's stream stays, and what it writes is stored without an errno.
 */
static void sysfs_std_claim(int fd)
{
	struct sysfs_cookie *ck, *none = NULL;
	FILE *prog, *ours;

	if (fd != 1 && fd != 2)
		return;
	prog = *sysfs_std_var(fd);
	if (atomic_load(&sysfs_std_gone[fd]) || atomic_load(&sysfs_std[fd]) || !prog ||
	    fileno(prog) != fd || __fpending(prog))
		return;
	ours = sysfs_stream(fd, "w", &ck);
	if (!ours)
		return;
	if (__flbf(prog))
		setvbuf(ours, NULL, _IOLBF, BUFSIZ);
	else if (fd == 2)
		setvbuf(ours, NULL, _IONBF, 0); /* stdout stays fully buffered, as on a file */
	sysfs_std_orig[fd] = prog;
	if (!atomic_compare_exchange_strong(&sysfs_std[fd], &none, ck)) {
		ck->detached = true;
		fclose(ours); /* another thread claimed it first */
		return;
	}
	*sysfs_std_var(fd) = ours;
}

/*
 * fd 1 or 2 stops being an attribute (a dup2 over it, a close): what the stand-in holds goes to
 * the attribute first (no errno left to give: the program did not flush), then the program's
 * own stream is back, and the stand-in is freed without closing the fd.
 */
static void sysfs_std_release(int fd)
{
	struct sysfs_cookie *ck;
	FILE *ours;

	if (fd != 1 && fd != 2)
		return;
	ck = atomic_exchange(&sysfs_std[fd], NULL);
	if (!ck)
		return;
	ours = ck->stream;
	fflush(ours);
	if (*sysfs_std_var(fd) == ours)
		*sysfs_std_var(fd) = sysfs_std_orig[fd];
	ck->detached = true;
	fclose(ours);
}

UIOMMU_EXPORT FILE *uiommu_sysfs_fopen(const char *path, const char *mode)
{
	char redirected[PATH_MAX];
	int flags, fd;
	FILE *f;

	if (!strchr(mode, 'w') && !strchr(mode, 'a') && !strchr(mode, '+')) {
		if (uiommu_sysfs_redirect(path, redirected, sizeof(redirected)))
			return NULL;
		if (write_only_attr(redirected)) {
			errno = EACCES;
			return NULL;
		}
		return fopen(redirected, mode);
	}
	flags = strchr(mode, '+') ? O_RDWR : O_WRONLY;
	if (strchr(mode, 'w'))
		flags |= O_CREAT | O_TRUNC;
	if (strchr(mode, 'e'))
		flags |= O_CLOEXEC;
	fd = uiommu_sysfs_open(path, flags, 0666);
	if (fd < 0)
		return NULL;
	f = sysfs_stream(fd, mode, NULL);
	if (!f) {
		int err = errno;

		uiommu_sysfs_close(fd);
		errno = err;
	}
	return f;
}

UIOMMU_EXPORT void uiommu_sysfs_session_begin(void)
{
	const char *env = getenv(SYSFS_DIR_ENV), *owner = getenv(SYSFS_OWNER_ENV);
	const char *tmpdir = getenv("TMPDIR");
	unsigned long long rnd = 0;
	char path[PATH_MAX], pid[16];
	pid_t self = getpid();

	if (env && *env) {
		/* The owner exec'd another program: the new image inherits the cleanup. */
		if (owner && atoi(owner) == self) {
			snprintf(sysfs_session_owned, sizeof(sysfs_session_owned), "%s", env);
			sysfs_session_owner = self;
			pthread_once(&sysfs_atexit_once, sysfs_register_atexit);
		}
		return;
	}
	if (!tmpdir || !*tmpdir)
		tmpdir = "/tmp";
	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
		rnd ^= (unsigned long long)(uintptr_t)&rnd ^ (unsigned long long)self << 32;
	/* Named now, made on first use: a process that never reads /sys costs nothing. */
	snprintf(path, sizeof(path), "%s/uiommu-sysfs.%d.%016llx", tmpdir, (int)self, rnd);
	snprintf(pid, sizeof(pid), "%d", (int)self);
	if (setenv(SYSFS_DIR_ENV, path, 1) || setenv(SYSFS_OWNER_ENV, pid, 1))
		return;
	snprintf(sysfs_session_owned, sizeof(sysfs_session_owned), "%s", path);
	sysfs_session_owner = self;
	pthread_once(&sysfs_atexit_once, sysfs_register_atexit);
}

UIOMMU_EXPORT FILE *uiommu_sysfs_fdopen(int fd, const char *mode)
{
	if (!uiommu_sysfs_is_fd(fd)) {
		errno = EBADF;
		return NULL;
	}
	return sysfs_stream(fd, mode, NULL);
}

/* The record of an inherited memfd, shared with the fds of the same file adopted before it. */
static struct sysfs_file *sysfs_adopt_one(int fd, const char *name, const struct stat *st,
					  const int *adopted, size_t nr)
{
	struct sysfs_file *f;
	size_t i;

	for (i = 0; i < nr; i++) {
		f = atomic_load_explicit(&sysfs_fds[adopted[i]], memory_order_relaxed);
		if (f && f->dev == st->st_dev && f->ino == st->st_ino)
			return sysfs_file_get(adopted[i]);
	}
	f = sysfs_file_parse(name);
	if (f) {
		f->dev = st->st_dev;
		f->ino = st->st_ino;
	}
	return f;
}

UIOMMU_EXPORT void uiommu_sysfs_adopt(void)
{
	static const char memfd[] = "/memfd:" SYSFS_MEMFD_PREFIX;
	int adopted[16], saved_errno = errno;
	size_t nr = 0;
	struct dirent *de;
	DIR *dir;

	dir = opendir("/proc/self/fd");
	if (!dir)
		goto out;
	while ((de = readdir(dir))) {
		char link[32], name[256];
		struct sysfs_file *f;
		struct stat st;
		ssize_t n;
		int fd;

		if (sscanf(de->d_name, "%d", &fd) != 1 || fd == dirfd(dir) || fd >= SYSFS_MAX_FDS ||
		    uiommu_sysfs_is_fd(fd))
			continue;
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		n = sys_readlinkat(AT_FDCWD, link, name, sizeof(name) - 1);
		if (n <= (ssize_t)strlen(memfd))
			continue;
		name[n] = '\0';
		if (strncmp(name, memfd, strlen(memfd)) || sys_fstat(fd, &st))
			continue;
		f = sysfs_adopt_one(fd, name + strlen("/memfd:"), &st, adopted, nr);
		if (!f)
			continue;
		if (sysfs_fd_install(fd, f)) {
			sysfs_file_put(f);
			continue;
		}
		if (nr < ARRAY_SIZE(adopted))
			adopted[nr++] = fd;
		sysfs_std_claim(fd); /* stdout or stderr: a stream that reports the errno */
	}
	closedir(dir);
out:
	errno = saved_errno;
}
