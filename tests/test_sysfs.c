// SPDX-License-Identifier: MIT
/*
 * The virtual sysfs (src/machine/sysfs.c), uiommuctl (tools/uiommuctl.c) and the control socket
 * (src/machine/ctl.c), on the embedded default topology:
 *
 *   group 0  0000:00:02.0                          identity (driver wants it), bound
 *   group 1  0000:00:03.0                          DMA-FQ, bound
 *   group 2  0000:00:14.0                          DMA-FQ, RESV_DIRECT, bound
 *   group 3  0000:01:00.0 .1 .2 (iommu1)           DMA (iommu1 has no deferred flush), 2 bound
 *   group 4  0000:02:00.0 (iommu1)                 DMA (untrusted), bound
 *   group 5  0000:03:00.0                          DMA (driver wants it), not bound
 *   group 6  0000:04:00.0                          DMA-FQ, not bound
 *
 * The library is called directly, as the preload layer calls it (the shell-level check of the
 * same paths through ls, cat and echo is the sysfs_shell test in tools/meson.build). Each case
 * runs in its own forked process, so each boots its own machine.
 */
#include <dirent.h>
#include <grp.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "topology_file.h"
#include "iommu/iommu.h"
#include "machine/ctl.h"
#include "machine/sysfs.h"
#include "machine/topology.h"
#include "uiommu/uiommu.h"

#define G "/sys/kernel/iommu_groups"
#define PCI "/sys/bus/pci"
#define DRV PCI "/drivers/" SYSFS_PCI_DRIVER

static void machine(void)
{
	unsetenv("UIOMMU_TOPOLOGY");
	unsetenv(SYSFS_DIR_ENV);
	setenv(SYSFS_PRIVILEGED_ENV, "1", 1);
	if (sysfs_machine_boot())
		abort();
}

/* The content of @path read through the virtual sysfs, "" on error. */
static const char *cat(const char *path)
{
	static char buf[4096];
	int fd = uiommu_sysfs_open(path, O_RDONLY, 0);
	ssize_t n;

	buf[0] = '\0';
	if (fd < 0)
		return buf;
	n = read(fd, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	close(fd);
	return buf;
}

static const char *rdlink(const char *path)
{
	static char buf[PATH_MAX];
	ssize_t n = uiommu_sysfs_readlink(path, buf, sizeof(buf) - 1);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* "uiommu_sysfs_write(open(path), s)": the byte count or -1 with errno. */
static ssize_t store(const char *path, const char *s)
{
	int fd = uiommu_sysfs_open(path, O_WRONLY | O_TRUNC | O_CREAT, 0644);
	ssize_t n;
	int err;

	if (fd < 0)
		return -1;
	n = uiommu_sysfs_write(fd, s, strlen(s));
	err = errno;
	uiommu_sysfs_close(fd);
	errno = err;
	return n;
}

/*
 * The listing of the real directory @real (sorted, space-separated), without "." and "..",
 * and without the other dot files unless @dot_files; "" if it cannot be read.
 */
static const char *ls_real(const char *real, bool dot_files)
{
	static char out[4096];
	struct dirent **list;
	int n, i;

	out[0] = '\0';
	n = scandir(real, &list, NULL, alphasort);
	for (i = 0; i < n; i++) {
		const char *name = list[i]->d_name;

		if (name[0] != '.' || (dot_files && strcmp(name, ".") && strcmp(name, ".."))) {
			if (out[0])
				strcat(out, " ");
			strcat(out, name);
		}
		free(list[i]);
	}
	if (n >= 0)
		free(list);
	return out;
}

/* The directory listing of @path in the virtual sysfs (sorted, space-separated). */
static const char *ls(const char *path)
{
	char real[PATH_MAX];

	if (uiommu_sysfs_redirect(path, real, sizeof(real)))
		return "";
	return ls_real(real, false);
}

/* ---- layout ------------------------------------------------------------------------------ */

TEST(claims_only_the_iommu_part_of_sys)
{
	ASSERT_TRUE(uiommu_sysfs_claims(G));
	ASSERT_TRUE(uiommu_sysfs_claims(G "/3/type"));
	ASSERT_TRUE(uiommu_sysfs_claims("/sys/bus/pci/devices/0000:00:03.0/iommu_group"));
	ASSERT_TRUE(uiommu_sysfs_claims("/sys/class/iommu"));
	ASSERT_TRUE(uiommu_sysfs_claims("/sys/devices/pci0000:00/0000:00:03.0"));
	ASSERT_TRUE(uiommu_sysfs_claims("/sys/devices/virtual/iommu/iommu0"));
	ASSERT_TRUE(uiommu_sysfs_claims("/sys/bus/pci/rescan"));
	ASSERT_TRUE(uiommu_sysfs_claims("/sys/bus/pci/drivers/uiommu-dma/bind"));
	ASSERT_TRUE(uiommu_sysfs_claims("/sys/bus/iommufd_mock"));
	ASSERT_TRUE(uiommu_sysfs_claims("/sys/bus/iommufd_mock/devices"));
	ASSERT_FALSE(uiommu_sysfs_claims("/sys/bus/iommufd_mockX"));
	ASSERT_FALSE(uiommu_sysfs_claims("/sys/bus/platform"));
	ASSERT_FALSE(uiommu_sysfs_claims("/sys/bus/pci/rescanX"));
	ASSERT_FALSE(uiommu_sysfs_claims("/sys/bus/pci/slots"));
	ASSERT_FALSE(uiommu_sysfs_claims("/sys/kernel/iommu_groupsX"));
	ASSERT_FALSE(uiommu_sysfs_claims("/sys/kernel/mm"));
	ASSERT_FALSE(uiommu_sysfs_claims("/sys/class/net"));
	ASSERT_FALSE(uiommu_sysfs_claims("sys/kernel/iommu_groups"));
	ASSERT_FALSE(uiommu_sysfs_claims("/dev/iommu"));
	ASSERT_FALSE(uiommu_sysfs_claims(NULL));
}

TEST(layout_entries_and_link_targets)
{
	machine();
	ASSERT_STREQ("0 1 2 3 4 5 6 7 8", ls(G));
	ASSERT_STREQ("devices reserved_regions type", ls(G "/3"));
	ASSERT_STREQ("0000:01:00.0 0000:01:00.1 0000:01:00.2", ls(G "/3/devices"));
	ASSERT_STREQ("../../../../devices/pci0000:00/0000:01:00.1",
		     rdlink(G "/3/devices/0000:01:00.1"));
	ASSERT_STREQ("../../../devices/pci0000:00/0000:00:03.0",
		     rdlink("/sys/bus/pci/devices/0000:00:03.0"));
	/* Through the bus link, as the kernel resolves it. */
	ASSERT_STREQ("../../../kernel/iommu_groups/1",
		     rdlink("/sys/bus/pci/devices/0000:00:03.0/iommu_group"));
	ASSERT_STREQ("DMA-FQ\n", cat("/sys/bus/pci/devices/0000:00:03.0/iommu_group/type"));
	ASSERT_STREQ("dmar0 iommu0 iommu1 smmu0", ls("/sys/class/iommu"));
	ASSERT_STREQ("0000:08:00.0", ls("/sys/class/iommu/smmu0/devices"));
	ASSERT_STREQ("0000:09:00.0", ls("/sys/class/iommu/dmar0/devices"));
	ASSERT_STREQ("../../devices/virtual/iommu/iommu1", rdlink("/sys/class/iommu/iommu1"));
	ASSERT_STREQ("0000:01:00.0 0000:01:00.1 0000:01:00.2 0000:02:00.0",
		     ls("/sys/class/iommu/iommu1/devices"));
	ASSERT_STREQ("../../../../pci0000:00/0000:02:00.0",
		     rdlink("/sys/class/iommu/iommu1/devices/0000:02:00.0"));
#define PCI_ATTRS "class config device driver driver_override iommu iommu_group irq numa_node " \
		  "remove resource revision subsystem_device subsystem_vendor vendor"
	ASSERT_STREQ(PCI_ATTRS, ls("/sys/devices/pci0000:00/0000:02:00.0"));
	/* Not bound to the DMA-API driver: vfio-pci's (the topology's default). */
	ASSERT_STREQ(PCI_ATTRS " vfio-dev", ls("/sys/devices/pci0000:00/0000:04:00.0"));
	ASSERT_STREQ("../../virtual/iommu/iommu1",
		     rdlink("/sys/devices/pci0000:00/0000:02:00.0/iommu"));
	ASSERT_EQ(11, (int)strlen(ls("/sys/bus/pci/devices")) / 13 + 1);
	/* The selftest mock's bus, as CONFIG_IOMMUFD_TEST registers it. */
	ASSERT_STREQ("devices drivers", ls("/sys/bus/iommufd_mock"));
	ASSERT_STREQ("", ls("/sys/bus/iommufd_mock/devices"));
}

TEST(type_and_reserved_regions_read_strings)
{
	static const char *const want[] = {
		"identity\n", "DMA-FQ\n", "DMA-FQ\n", "DMA\n", "DMA\n", "DMA\n", "DMA-FQ\n",
	};
	char path[64], buf[64];
	unsigned int i;

	machine();
	for (i = 0; i < ARRAY_SIZE(want); i++) {
		struct iommu_group *group = iommu_group_get_by_id((int)i);
		ssize_t n;

		ASSERT_TRUE(group != NULL);
		n = iommu_group_type_show(group, buf, sizeof(buf));
		iommu_group_put(group);
		buf[n] = '\0';
		snprintf(path, sizeof(path), G "/%u/type", i);
		EXPECT_STREQ(want[i], cat(path));
		EXPECT_STREQ(buf, cat(path));
	}
	/* Sorted by start; x86's MSI window of the mock instances after the RMRR. */
	ASSERT_STREQ("0x000000007c000000 0x000000007c1fffff direct\n"
		     "0x00000000fee00000 0x00000000feefffff msi\n",
		     cat(G "/2/reserved_regions"));
	ASSERT_STREQ("0x00000000fee00000 0x00000000feefffff msi\n", cat(G "/1/reserved_regions"));
	/* Three functions share group 3, and their windows merge into one line, as the kernel's. */
	ASSERT_STREQ("0x00000000fee00000 0x00000000feefffff msi\n", cat(G "/3/reserved_regions"));
}

TEST(stat_access_readlink_results)
{
	struct stat st;

	machine();
	ASSERT_EQ(0, uiommu_sysfs_stat(G "/4/type", &st));
	ASSERT_TRUE(S_ISREG(st.st_mode));
	ASSERT_EQ(0644, st.st_mode & 07777);
	ASSERT_EQ(4, st.st_size); /* "DMA\n" */
	ASSERT_EQ(0, uiommu_sysfs_stat(G "/4/reserved_regions", &st));
	ASSERT_EQ(0444, st.st_mode & 07777);
	ASSERT_EQ(0, uiommu_sysfs_stat(G "/4/devices", &st));
	ASSERT_TRUE(S_ISDIR(st.st_mode));
	ASSERT_EQ(0, uiommu_sysfs_lstat(G "/4/devices/0000:02:00.0", &st));
	ASSERT_TRUE(S_ISLNK(st.st_mode));
	ASSERT_EQ(0, uiommu_sysfs_stat(G "/4/devices/0000:02:00.0", &st));
	ASSERT_TRUE(S_ISDIR(st.st_mode));
	ASSERT_EQ(0, uiommu_sysfs_access(G "/4/type", R_OK | W_OK));
	ASSERT_EQ(0, uiommu_sysfs_access("/sys/bus/pci/devices/0000:02:00.0/iommu_group", F_OK));
	ASSERT_ERRNO(ENOENT, uiommu_sysfs_stat(G "/9", &st));
	ASSERT_ERRNO(ENOENT, uiommu_sysfs_access(G "/4/nothing", F_OK));
	ASSERT_ERRNO(EINVAL, uiommu_sysfs_readlink(G "/4/type", (char[8]){ 0 }, 8));
	ASSERT_ERRNO(ENOENT, uiommu_sysfs_open(G "/10/type", O_RDONLY, 0));
}

/* ---- the type store ----------------------------------------------------------------------- */

TEST(type_store_needs_the_capabilities)
{
	cap_value_t admin = CAP_SYS_ADMIN;
	cap_t caps;

	machine();
	setenv(SYSFS_PRIVILEGED_ENV, "0", 1);
	ASSERT_ERRNO(EACCES, store(G "/4/type", "DMA-FQ"));
	ASSERT_STREQ("DMA\n", cat(G "/4/type"));
	setenv(SYSFS_PRIVILEGED_ENV, "1", 1);
	ASSERT_EQ(6, store(G "/4/type", "DMA-FQ"));

	/* The real check: without CAP_SYS_ADMIN in the effective set, EACCES. */
	unsetenv(SYSFS_PRIVILEGED_ENV);
	caps = cap_get_proc();
	ASSERT_TRUE(caps != NULL);
	if (cap_set_flag(caps, CAP_EFFECTIVE, 1, &admin, CAP_CLEAR) || cap_set_proc(caps)) {
		cap_free(caps);
		SKIP("cannot drop CAP_SYS_ADMIN here");
	}
	cap_free(caps);
	ASSERT_FALSE(sysfs_type_capable());
	ASSERT_ERRNO(EACCES, store(G "/5/type", "identity"));
	ASSERT_STREQ("DMA\n", cat(G "/5/type"));
}

TEST(type_store_errnos_through_write)
{
	machine();
	/* A bad string, with or without the newline sysfs_streq allows. */
	ASSERT_ERRNO(EINVAL, store(G "/5/type", "dma"));
	ASSERT_ERRNO(EINVAL, store(G "/5/type", "DMA-FQ\n\n"));
	ASSERT_ERRNO(EINVAL, store(G "/5/type", ""));
	/* A driver is bound: only the live DMA -> DMA-FQ switch. */
	ASSERT_ERRNO(EPERM, store(G "/0/type", "DMA"));
	ASSERT_ERRNO(EPERM, store(G "/3/type", "identity\n"));
	ASSERT_STREQ("identity\n", cat(G "/0/type"));
	/* No driver bound, but its driver insists on DMA: identity conflicts. */
	ASSERT_ERRNO(EINVAL, store(G "/5/type", "identity"));
	ASSERT_EQ(3, store(G "/5/type", "DMA")); /* the current type: a no-op */
	/* No driver and no preference: every change. */
	ASSERT_EQ(9, store(G "/6/type", "identity\n"));
	ASSERT_STREQ("identity\n", cat(G "/6/type"));
	ASSERT_EQ(3, store(G "/6/type", "DMA"));
	ASSERT_STREQ("DMA\n", cat(G "/6/type"));
	ASSERT_EQ(4, store(G "/6/type", "auto"));
	ASSERT_STREQ("DMA-FQ\n", cat(G "/6/type")); /* the global default again */
}

TEST(live_dma_to_dma_fq_with_a_driver_bound)
{
	struct iommu_group_info before, after;
	struct iommu_group *group;

	machine();
	group = iommu_group_get_by_id(4);
	ASSERT_TRUE(group != NULL);
	iommu_group_get_info(group, &before);
	ASSERT_EQ(1, before.owner_cnt);
	ASSERT_STREQ("DMA\n", cat(G "/4/type"));
	ASSERT_EQ(7, store(G "/4/type", "DMA-FQ\n"));
	ASSERT_STREQ("DMA-FQ\n", cat(G "/4/type"));
	iommu_group_get_info(group, &after);
	/* The same domain, flipped in place. */
	ASSERT_EQ(before.default_domain_id, after.default_domain_id);
	ASSERT_EQ(IOMMU_DOMAIN_DMA_FQ, after.default_type);
	/* The way back is not live. */
	ASSERT_ERRNO(EPERM, store(G "/4/type", "DMA"));
	ASSERT_EQ(0, topology_unbind("0000:02:00.0"));
	ASSERT_EQ(3, store(G "/4/type", "DMA"));
	ASSERT_STREQ("DMA\n", cat(G "/4/type"));
	iommu_group_put(group);
}

TEST(write_opens_other_than_type_fail_as_sysfs)
{
	machine();
	ASSERT_ERRNO(EACCES, uiommu_sysfs_open(G "/2/reserved_regions", O_WRONLY, 0));
	ASSERT_ERRNO(EACCES, uiommu_sysfs_open(G "/2/new", O_WRONLY | O_CREAT, 0644));
	ASSERT_ERRNO(EACCES, uiommu_sysfs_open(G "/2/new", O_RDONLY | O_CREAT, 0644));
	ASSERT_ERRNO(EISDIR, uiommu_sysfs_open(G "/2", O_WRONLY, 0));
	ASSERT_ERRNO(ENOENT, uiommu_sysfs_open(G "/2/new", O_WRONLY, 0));
	ASSERT_ERRNO(EEXIST, uiommu_sysfs_open(G "/2/type", O_WRONLY | O_CREAT | O_EXCL, 0644));
	ASSERT_ERRNO(ENOENT, uiommu_sysfs_access(G "/2/new", F_OK));
}

TEST(fd_table_dup_close_and_bypassing_writes)
{
	int fd, fd2;

	machine();
	fd = uiommu_sysfs_open(G "/6/type", O_WRONLY, 0);
	ASSERT_GE(fd, 0);
	ASSERT_TRUE(uiommu_sysfs_is_fd(fd));
	/* A shell's redirection: dup2 to stdout's place, close the original, write. */
	fd2 = dup(fd);
	ASSERT_EQ(0, uiommu_sysfs_fd_dup(fd, fd2));
	ASSERT_EQ(0, uiommu_sysfs_close(fd));
	ASSERT_FALSE(uiommu_sysfs_is_fd(fd));
	ASSERT_TRUE(uiommu_sysfs_is_fd(fd2));
	ASSERT_EQ(9, uiommu_sysfs_write(fd2, "identity\n", 9));
	ASSERT_STREQ("identity\n", cat(G "/6/type"));
	/* A write that bypasses the wrapper (stdio inside libc) lands in the memfd... */
	ASSERT_EQ(4, write(fd2, "DMA\n", 4));
	ASSERT_STREQ("DMA\n", cat(G "/6/type")); /* ...and is stored at the next sync */
	ASSERT_EQ(7, write(fd2, "DMA-FQ\n", 7));
	ASSERT_EQ(0, uiommu_sysfs_close(fd2)); /* or at the last close */
	ASSERT_FALSE(uiommu_sysfs_is_fd(fd2));
	ASSERT_STREQ("DMA-FQ\n", cat(G "/6/type"));
	ASSERT_ERRNO(EBADF, uiommu_sysfs_write(fd2, "DMA", 3));
}

TEST(fopen_stores_at_flush_with_the_errno)
{
	FILE *f;

	machine();
	f = uiommu_sysfs_fopen(G "/6/type", "r");
	ASSERT_TRUE(f != NULL);
	ASSERT_EQ('D', fgetc(f));
	fclose(f);
	f = uiommu_sysfs_fopen(G "/6/type", "w");
	ASSERT_TRUE(f != NULL);
	fputs("bogus\n", f);
	errno = 0;
	ASSERT_EQ(EOF, fflush(f));
	ASSERT_EQ(EINVAL, errno);
	fclose(f);
	f = uiommu_sysfs_fopen(G "/6/type", "we");
	ASSERT_TRUE(f != NULL);
	fputs("identity\n", f);
	ASSERT_EQ(0, fclose(f));
	ASSERT_STREQ("identity\n", cat(G "/6/type"));
}

TEST(open_fd_keeps_its_snapshot)
{
	char buf[32];
	ssize_t n;
	int fd;

	machine();
	fd = uiommu_sysfs_open(G "/6/type", O_RDONLY, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(9, store(G "/6/type", "identity\n"));
	n = read(fd, buf, sizeof(buf) - 1);
	ASSERT_EQ(7, n);
	buf[n] = '\0';
	ASSERT_STREQ("DMA-FQ\n", buf);
	close(fd);
	ASSERT_STREQ("identity\n", cat(G "/6/type"));
}

TEST(tree_follows_unplug_and_plug)
{
	struct stat st;

	machine();
	ASSERT_EQ(0, topology_unplug("0000:04:00.0"));
	ASSERT_STREQ("0 1 2 3 4 5 7 8", ls(G));
	ASSERT_ERRNO(ENOENT, uiommu_sysfs_lstat("/sys/bus/pci/devices/0000:04:00.0", &st));
	ASSERT_ERRNO(ENOENT, uiommu_sysfs_lstat("/sys/class/iommu/iommu0/devices/0000:04:00.0",
						&st));
	ASSERT_EQ(0, topology_unplug("0000:01:00.1"));
	ASSERT_STREQ("0000:01:00.0 0000:01:00.2", ls(G "/3/devices"));
	ASSERT_EQ(0, topology_plug("0000:04:00.0"));
	ASSERT_EQ(0, topology_plug("0000:01:00.1"));
	ASSERT_STREQ("0 1 2 3 4 5 6 7 8", ls(G));
	ASSERT_STREQ("../../../kernel/iommu_groups/6",
		     rdlink("/sys/bus/pci/devices/0000:04:00.0/iommu_group"));
	ASSERT_STREQ("0000:01:00.0 0000:01:00.1 0000:01:00.2", ls(G "/3/devices"));
}

TEST(processes_of_a_session_share_the_machine)
{
	pid_t pid;
	int status;

	machine();
	ASSERT_STREQ("DMA\n", cat(G "/4/type"));
	/* Another process of the session (a fork: the same session directory) writes... */
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid)
		_exit(store(G "/4/type", "DMA-FQ") == 6 && !strcmp(cat(G "/4/type"), "DMA-FQ\n") ?
			      0 : 1);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_EQ(0, status);
	/* ...and this one sees it at its next access, though its own machine is separate. */
	ASSERT_STREQ("DMA-FQ\n", cat(G "/4/type"));
}

/*
 * A process that owns the session at @dir (as uiommu-run's first process does, or a program
 * given both variables), boots, stores (the journal) and exits; @stray: a file of someone
 * else's that appears in the directory meanwhile. Its exit status.
 */
static int session_owner_exits(const char *dir, const char *stray)
{
	char pid[16], path[PATH_MAX];
	int status, fd;
	pid_t child = fork();

	if (child < 0)
		return -1;
	if (!child) {
		snprintf(pid, sizeof(pid), "%d", (int)getpid());
		setenv(SYSFS_DIR_ENV, dir, 1);
		setenv(SYSFS_OWNER_ENV, pid, 1);
		unsetenv("UIOMMU_TOPOLOGY");
		setenv(SYSFS_PRIVILEGED_ENV, "1", 1);
		uiommu_sysfs_session_begin();
		if (sysfs_machine_boot() || store(G "/4/type", "DMA-FQ") != 6)
			_exit(2);
		if (stray) {
			snprintf(path, sizeof(path), "%s/%s", dir, stray);
			fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
			if (fd < 0)
				_exit(3);
			close(fd);
		}
		exit(0); /* the exit handlers clean up */
	}
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

TEST(session_exit_removes_only_what_it_made)
{
	char dir[] = "/tmp/uiommu-test-session.XXXXXX", path[PATH_MAX];
	int fd;

	/* A directory the session did not make, with things in it that look like ours. */
	ASSERT_TRUE(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/precious", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ASSERT_GE(fd, 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/tree.1.abcdef", dir);
	ASSERT_EQ(0, mkdir(path, 0700));
	ASSERT_EQ(0, session_owner_exits(dir, NULL));
	/*
	 * Its own tree went; the journal and the claim file its type store took (session.c), which
	 * it cannot tell from another session's in a directory they share, stay.
	 */
	ASSERT_STREQ("claim.owner.4 journal precious tree.1.abcdef", ls_real(dir, true));
	rmdir(path);
	snprintf(path, sizeof(path), "%s/precious", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/journal", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/claim.owner.4", dir);
	unlink(path);

	/* A directory the session made goes whole... */
	snprintf(path, sizeof(path), "%s/session", dir);
	ASSERT_EQ(0, session_owner_exits(path, NULL));
	ASSERT_STREQ("", ls_real(dir, true));
	/* ...unless something not of a session's making is in it: that stays, marked. */
	ASSERT_EQ(0, session_owner_exits(path, "stray"));
	ASSERT_STREQ(".uiommu-session stray", ls_real(path, true));
	snprintf(path, sizeof(path), "%s/session/stray", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/session/.uiommu-session", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/session", dir);
	rmdir(path);
	rmdir(dir);
}

/* ---- the PCI attributes: remove, rescan, bind, unbind --------------------------------------- */

#define DEV(bdf) "/sys/devices/pci0000:00/" bdf

/* The emulated driver's directory on the default topology: the bound devices and the files. */
#define DRV_BOOT "0000:00:02.0 0000:00:03.0 0000:00:14.0 0000:01:00.0 0000:01:00.1 " \
		 "0000:02:00.0 bind unbind"

static mode_t mode_of(const char *path)
{
	struct stat st;

	return uiommu_sysfs_stat(path, &st) ? (mode_t)-1 : st.st_mode;
}

static bool exists(const char *path)
{
	struct stat st;

	return !uiommu_sysfs_lstat(path, &st);
}

TEST(pci_attributes_layout_and_modes)
{
	machine();
	/* /sys/bus/pci itself stays the host's: only these three are claimed under it. */
	ASSERT_FALSE(uiommu_sysfs_claims(PCI));
	ASSERT_STREQ(SYSFS_PCI_DRIVER " " TOPOLOGY_VFIO_DRIVER, ls(PCI "/drivers"));
	ASSERT_STREQ(DRV_BOOT, ls(DRV));
	ASSERT_EQ(S_IFREG | 0200, mode_of(PCI "/rescan"));
	ASSERT_EQ(S_IFREG | 0200, mode_of(DRV "/bind"));
	ASSERT_EQ(S_IFREG | 0200, mode_of(DRV "/unbind"));
	ASSERT_EQ(S_IFREG | 0200, mode_of(DEV("0000:00:03.0") "/remove"));
	ASSERT_EQ(S_IFREG | 0200, mode_of(PCI "/devices/0000:04:00.0/remove"));
	ASSERT_TRUE(S_ISDIR(mode_of(DRV)));
	ASSERT_STREQ("../../../bus/pci/drivers/uiommu-dma", rdlink(DEV("0000:00:03.0") "/driver"));
	ASSERT_STREQ("../../../../devices/pci0000:00/0000:01:00.1", rdlink(DRV "/0000:01:00.1"));
	/* Through the links, as the kernel resolves them. */
	ASSERT_TRUE(S_ISDIR(mode_of(PCI "/devices/0000:02:00.0/driver")));
	ASSERT_TRUE(S_ISDIR(mode_of(DRV "/0000:02:00.0/iommu_group")));
	ASSERT_EQ(S_IFREG | 0200, mode_of(DRV "/0000:02:00.0/driver/bind"));
	/* vfio-pci's functions link to it, not to the DMA-API driver. */
	ASSERT_STREQ("../../../bus/pci/drivers/vfio-pci", rdlink(DEV("0000:04:00.0") "/driver"));
	ASSERT_FALSE(exists(DRV "/0000:04:00.0"));
	ASSERT_FALSE(exists(DRV "/0000:01:00.2"));
}

TEST(pci_attributes_are_write_only)
{
	static const char *const paths[] = {
		PCI "/rescan", DRV "/bind", DRV "/unbind", PCI "/devices/0000:00:03.0/remove",
	};
	unsigned int i;

	machine();
	for (i = 0; i < ARRAY_SIZE(paths); i++) {
		int fd;

		/* kernfs refuses a read open of an attribute without show, root included. */
		EXPECT_ERRNO(EACCES, uiommu_sysfs_open(paths[i], O_RDONLY, 0));
		EXPECT_ERRNO(EACCES, uiommu_sysfs_open(paths[i], O_RDWR, 0));
		EXPECT_ERRNO(EACCES, uiommu_sysfs_open(paths[i], O_RDONLY | O_TRUNC, 0));
		errno = 0;
		EXPECT_TRUE(uiommu_sysfs_fopen(paths[i], "r") == NULL);
		EXPECT_EQ(EACCES, errno);
		EXPECT_ERRNO(EEXIST,
			     uiommu_sysfs_open(paths[i], O_WRONLY | O_CREAT | O_EXCL, 0644));
		EXPECT_EQ(0, uiommu_sysfs_access(paths[i], W_OK));
		fd = uiommu_sysfs_open(paths[i], O_WRONLY | O_CREAT | O_TRUNC, 0644);
		EXPECT_GE(fd, 0);
		EXPECT_TRUE(uiommu_sysfs_is_fd(fd));
		if (fd >= 0)
			uiommu_sysfs_close(fd);
	}
	/* The directory and a file that is not there. */
	ASSERT_ERRNO(EISDIR, uiommu_sysfs_open(DRV, O_WRONLY, 0));
	ASSERT_ERRNO(EACCES, uiommu_sysfs_open(DRV "/new_id", O_WRONLY | O_CREAT, 0644));
}

TEST(remove_unplugs_and_the_tree_follows)
{
	struct topology_device_info info;

	machine();
	/* kstrtoul: base 0, one newline, nothing else. */
	ASSERT_ERRNO(EINVAL, store(DEV("0000:00:03.0") "/remove", "yes"));
	ASSERT_ERRNO(EINVAL, store(DEV("0000:00:03.0") "/remove", "-1"));
	ASSERT_ERRNO(EINVAL, store(DEV("0000:00:03.0") "/remove", " 1"));
	ASSERT_ERRNO(EINVAL, store(DEV("0000:00:03.0") "/remove", "1\n\n"));
	ASSERT_ERRNO(EINVAL, store(DEV("0000:00:03.0") "/remove", "0x"));
	ASSERT_ERRNO(EINVAL, store(DEV("0000:00:03.0") "/remove", ""));
	ASSERT_ERRNO(EINVAL, store(DEV("0000:00:03.0") "/remove", "99999999999999999999999"));
	ASSERT_EQ(2, store(DEV("0000:00:03.0") "/remove", "0\n")); /* nothing to do */
	ASSERT_TRUE(exists(PCI "/devices/0000:00:03.0"));

	/* The last member: the device, its links and its group go. */
	ASSERT_EQ(2, store(PCI "/devices/0000:00:03.0/remove", "1\n"));
	ASSERT_EQ(0, topology_device_get_info("0000:00:03.0", &info));
	ASSERT_FALSE(info.present);
	ASSERT_FALSE(info.bound);
	ASSERT_STREQ("0 2 3 4 5 6 7 8", ls(G));
	ASSERT_FALSE(exists(PCI "/devices/0000:00:03.0"));
	ASSERT_FALSE(exists(DEV("0000:00:03.0")));
	ASSERT_FALSE(exists(DRV "/0000:00:03.0"));
	ASSERT_FALSE(exists("/sys/class/iommu/iommu0/devices/0000:00:03.0"));
	ASSERT_ERRNO(ENOENT, uiommu_sysfs_open(DEV("0000:00:03.0") "/remove", O_WRONLY, 0));

	/* One of three: the group stays, without it. A hex value is non-zero too. */
	ASSERT_EQ(3, store(PCI "/devices/0000:01:00.1/remove", "0x1"));
	ASSERT_STREQ("0000:01:00.0 0000:01:00.2", ls(G "/3/devices"));
	ASSERT_STREQ("0000:00:02.0 0000:00:14.0 0000:01:00.0 0000:02:00.0 bind unbind", ls(DRV));
	ASSERT_EQ(9, (int)strlen(ls(PCI "/devices")) / 13 + 1);
}

TEST(remove_errnos_through_write)
{
	struct iommu_group *group;
	int fd, fd2;

	machine();
	/* An fd opened before the device went: the attribute is gone, ENODEV. */
	fd = uiommu_sysfs_open(DEV("0000:04:00.0") "/remove", O_WRONLY, 0);
	fd2 = uiommu_sysfs_open(DEV("0000:04:00.0") "/remove", O_WRONLY, 0);
	ASSERT_GE(fd, 0);
	ASSERT_GE(fd2, 0);
	ASSERT_EQ(1, uiommu_sysfs_write(fd, "1", 1));
	ASSERT_FALSE(exists(PCI "/devices/0000:04:00.0"));
	ASSERT_ERRNO(ENODEV, uiommu_sysfs_write(fd2, "1", 1));
	ASSERT_ERRNO(ENODEV, uiommu_sysfs_write(fd2, "bogus", 5));
	uiommu_sysfs_close(fd);
	uiommu_sysfs_close(fd2);

	/* The last device of a group a user owns: the kernel would wait for the user. */
	group = iommu_group_get_by_id(5);
	ASSERT_TRUE(group != NULL);
	ASSERT_EQ(0, iommu_group_claim_dma_owner(group, (void *)&group));
	ASSERT_ERRNO(EBUSY, store(DEV("0000:03:00.0") "/remove", "1"));
	ASSERT_TRUE(exists(PCI "/devices/0000:03:00.0"));
	iommu_group_release_dma_owner(group);
	iommu_group_put(group);
	ASSERT_EQ(1, store(DEV("0000:03:00.0") "/remove", "1"));
	ASSERT_FALSE(exists(PCI "/devices/0000:03:00.0"));
}

TEST(rescan_plugs_every_absent_device)
{
	machine();
	ASSERT_EQ(1, store(DEV("0000:00:03.0") "/remove", "1"));
	ASSERT_EQ(1, store(DEV("0000:01:00.1") "/remove", "1"));
	ASSERT_EQ(1, store(DEV("0000:04:00.0") "/remove", "1"));
	ASSERT_STREQ("0 2 3 4 5 7 8", ls(G));
	ASSERT_ERRNO(EINVAL, store(PCI "/rescan", "please"));
	ASSERT_ERRNO(EINVAL, store(PCI "/rescan", ""));
	ASSERT_EQ(2, store(PCI "/rescan", "0\n"));
	ASSERT_STREQ("0 2 3 4 5 7 8", ls(G));
	ASSERT_EQ(2, store(PCI "/rescan", "1\n"));
	ASSERT_EQ(11, (int)strlen(ls(PCI "/devices")) / 13 + 1);
	ASSERT_STREQ("0000:01:00.0 0000:01:00.1 0000:01:00.2", ls(G "/3/devices"));
	ASSERT_STREQ("0 1 2 3 4 5 6 7 8", ls(G));
	ASSERT_TRUE(exists(DEV("0000:04:00.0") "/iommu_group"));
	/* The topology's "bound": the driver binds at every plug. */
	ASSERT_STREQ(DRV_BOOT, ls(DRV));
	ASSERT_STREQ("../../../bus/pci/drivers/uiommu-dma", rdlink(DEV("0000:00:03.0") "/driver"));
	/* Nothing absent: a rescan does nothing and succeeds. */
	ASSERT_EQ(1, store(PCI "/rescan", "1"));
	ASSERT_STREQ(DRV_BOOT, ls(DRV));
}

TEST(bind_and_unbind_errnos_and_links)
{
	struct iommu_group *group;

	machine();
	/* The driver core's errnos. */
	ASSERT_ERRNO(EBUSY, store(DRV "/bind", "0000:00:03.0"));      /* bound already */
	ASSERT_ERRNO(ENODEV, store(DRV "/bind", "0000:99:00.0"));     /* unknown */
	ASSERT_ERRNO(ENODEV, store(DRV "/bind", "00:03.0"));          /* not its name */
	ASSERT_ERRNO(ENODEV, store(DRV "/bind", "0000:04:00.0\n\n"));
	ASSERT_ERRNO(ENODEV, store(DRV "/bind", ""));
	ASSERT_ERRNO(ENODEV, store(DRV "/unbind", "0000:04:00.0"));   /* not bound */
	ASSERT_ERRNO(ENODEV, store(DRV "/unbind", "0000:99:00.0"));
	ASSERT_EQ(1, store(DEV("0000:03:00.0") "/remove", "1"));
	ASSERT_ERRNO(ENODEV, store(DRV "/bind", "0000:03:00.0"));     /* absent */
	ASSERT_ERRNO(ENODEV, store(DRV "/unbind", "0000:03:00.0"));

	/* unbind, with the newline echo adds: the links go. */
	ASSERT_EQ(13, store(DRV "/unbind", "0000:00:03.0\n"));
	ASSERT_FALSE(exists(DEV("0000:00:03.0") "/driver"));
	ASSERT_FALSE(exists(DRV "/0000:00:03.0"));
	ASSERT_ERRNO(ENODEV, store(DRV "/unbind", "0000:00:03.0"));
	ASSERT_STREQ("DMA-FQ\n", cat(G "/1/type"));
	ASSERT_EQ(8, store(G "/1/type", "identity")); /* no driver: any type */

	/* bind: the links come back (once vfio-pci lets go of the function). */
	ASSERT_ERRNO(EBUSY, store(DRV "/bind", "0000:04:00.0"));
	ASSERT_EQ(12, store(PCI "/drivers/vfio-pci/unbind", "0000:04:00.0"));
	ASSERT_EQ(12, store(DRV "/bind", "0000:04:00.0"));
	ASSERT_STREQ("../../../bus/pci/drivers/uiommu-dma", rdlink(DEV("0000:04:00.0") "/driver"));
	ASSERT_STREQ("../../../../devices/pci0000:00/0000:04:00.0", rdlink(DRV "/0000:04:00.0"));
	ASSERT_EQ(13, store(DRV "/bind", "0000:00:03.0\n"));
	ASSERT_TRUE(exists(DRV "/0000:00:03.0"));

	/* The IOMMU core refuses a driver on a group a user owns: EBUSY. */
	ASSERT_EQ(12, store(DRV "/unbind", "0000:04:00.0"));
	group = iommu_group_get_by_id(6);
	ASSERT_TRUE(group != NULL);
	ASSERT_EQ(0, iommu_group_claim_dma_owner(group, (void *)&group));
	ASSERT_ERRNO(EBUSY, store(DRV "/bind", "0000:04:00.0"));
	ASSERT_FALSE(exists(DEV("0000:04:00.0") "/driver"));
	iommu_group_release_dma_owner(group);
	iommu_group_put(group);
	ASSERT_EQ(12, store(DRV "/bind", "0000:04:00.0"));
}

TEST(pci_stores_through_a_shells_redirection)
{
	int fd, fd2;

	machine();
	/* dup2 to stdout's place, then bytes that bypass the wrapper: stored at the last close. */
	fd = uiommu_sysfs_open(DRV "/unbind", O_WRONLY | O_CREAT | O_TRUNC, 0666);
	ASSERT_GE(fd, 0);
	fd2 = dup(fd);
	ASSERT_EQ(0, uiommu_sysfs_fd_dup(fd, fd2));
	ASSERT_EQ(0, uiommu_sysfs_close(fd));
	ASSERT_EQ(13, write(fd2, "0000:02:00.0\n", 13));
	ASSERT_EQ(0, uiommu_sysfs_close(fd2));
	ASSERT_FALSE(exists(DRV "/0000:02:00.0"));
}

TEST(pci_stores_are_shared_by_the_session)
{
	pid_t pid;
	int status;

	machine();
	ASSERT_TRUE(exists(PCI "/devices/0000:00:03.0"));
	/* Another process of the session removes, unbinds and rescans... */
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid)
		_exit(store(DEV("0000:00:03.0") "/remove", "1") == 1 &&
		      store(DEV("0000:04:00.0") "/remove", "1") == 1 &&
		      store(DRV "/unbind", "0000:02:00.0") == 12 ? 0 : 1);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_EQ(0, status);
	/* ...and this one's machine follows at its next access. */
	ASSERT_FALSE(exists(PCI "/devices/0000:00:03.0"));
	ASSERT_FALSE(exists(PCI "/devices/0000:04:00.0"));
	ASSERT_FALSE(exists(DEV("0000:02:00.0") "/driver"));
	ASSERT_STREQ("0 2 3 4 5 7 8", ls(G));
	ASSERT_EQ(0, topology_unbind("0000:00:02.0"));

	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid)
		_exit(store(PCI "/rescan", "1") == 1 && store(DRV "/bind", "0000:02:00.0") == 12 ?
			      0 : 1);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_EQ(0, status);
	ASSERT_EQ(11, (int)strlen(ls(PCI "/devices")) / 13 + 1);
	ASSERT_TRUE(exists(DEV("0000:02:00.0") "/driver"));
	/* A local unbind (the library's API) is this process's own. */
	ASSERT_FALSE(exists(DEV("0000:00:02.0") "/driver"));
}

/* ---- uiommuctl and the control socket ----------------------------------------------------- */

static char ctl_out[1 << 16];

/* Runs build/tools/uiommuctl with @args (a shell word list); its stdout in ctl_out. */
static int uiommuctl(const char *args)
{
	char exe[PATH_MAX], cmd[PATH_MAX + 512], *slash;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	size_t len;
	FILE *p;
	int status;

	if (n <= 0)
		return -1;
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	*slash = '\0';
	snprintf(cmd, sizeof(cmd), "env -u UIOMMU_TOPOLOGY %s/../tools/uiommuctl %s 2>&1", exe,
		 args);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	len = fread(ctl_out, 1, sizeof(ctl_out) - 1, p);
	ctl_out[len] = '\0';
	status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static struct json_object *jpath(struct json_object *o, const char *key, int idx)
{
	struct json_object *v = NULL;

	json_object_object_get_ex(o, key, &v);
	if (idx >= 0)
		v = json_object_array_get_idx(v, (size_t)idx);
	return v;
}

TEST(uiommuctl_text_and_json)
{
	struct json_object *root, *g3, *d;

	ASSERT_EQ(0, uiommuctl(""));
	ASSERT_TRUE(strstr(ctl_out, "iommu iommu1: driver mock, max_pasids 0\n") != NULL);
	ASSERT_TRUE(strstr(ctl_out, "group 3: type DMA, default DMA #") != NULL);
	ASSERT_TRUE(strstr(ctl_out, "  0000:01:00.2\n") != NULL);
	ASSERT_TRUE(strstr(ctl_out, "device 0000:02:00.0: iommu iommu1, group 4, driver bound, "
				    "untrusted\n") != NULL);
	ASSERT_TRUE(strstr(ctl_out, "device 0000:04:00.0: iommu iommu0, group 6, vfio-pci (vfio2), "
				    "dirty\n") != NULL);
	/* The default machine's two models, each with a dma-test for vfio-pci. */
	ASSERT_TRUE(strstr(ctl_out, "iommu smmu0: driver arm-smmu-v3, max_pasids 1048576, "
				    "dirty_tracking\n") != NULL);
	ASSERT_TRUE(strstr(ctl_out, "iommu dmar0: driver intel-iommu, max_pasids 1048576, "
				    "dirty_tracking, cap 0x") != NULL);
	ASSERT_TRUE(strstr(ctl_out, "device 0000:08:00.0: iommu smmu0, group 7, vfio-pci (vfio3), "
				    "pri\n") != NULL);
	ASSERT_TRUE(strstr(ctl_out, "device 0000:09:00.0: iommu dmar0, group 8, vfio-pci (vfio4), "
				    "pri\n") != NULL);

	ASSERT_EQ(0, uiommuctl("--json"));
	root = json_tokener_parse(ctl_out);
	ASSERT_TRUE(root != NULL);
	ASSERT_STREQ("(default)", json_object_get_string(jpath(root, "topology", -1)));
	ASSERT_EQ(4, json_object_array_length(jpath(root, "iommus", -1)));
	ASSERT_EQ(9, json_object_array_length(jpath(root, "groups", -1)));
	ASSERT_EQ(11, json_object_array_length(jpath(root, "devices", -1)));
	g3 = jpath(root, "groups", 3);
	ASSERT_EQ(3, json_object_get_int(jpath(g3, "id", -1)));
	ASSERT_STREQ("DMA", json_object_get_string(jpath(g3, "type", -1)));
	ASSERT_EQ(3, json_object_array_length(jpath(g3, "devices", -1)));
	ASSERT_EQ(2, json_object_array_length(jpath(g3, "bound", -1)));
	ASSERT_EQ(2, json_object_get_int(jpath(g3, "owner_cnt", -1)));
	ASSERT_TRUE(json_object_get_boolean(jpath(jpath(g3, "domain", -1), "is_default", -1)));
	d = jpath(root, "devices", 8);
	ASSERT_STREQ("0000:04:00.0", json_object_get_string(jpath(d, "bdf", -1)));
	ASSERT_EQ(6, json_object_get_int(jpath(d, "group", -1)));
	ASSERT_FALSE(json_object_get_boolean(jpath(d, "bound", -1)));
	ASSERT_EQ(2, json_object_get_int(jpath(d, "vfio", -1)));
	ASSERT_TRUE(jpath(jpath(root, "devices", 0), "vfio", -1) == NULL);
	json_object_put(root);

	ASSERT_EQ(0, uiommuctl("--dot"));
	ASSERT_TRUE(strstr(ctl_out, "digraph uiommu {") != NULL);
	ASSERT_TRUE(strstr(ctl_out, "subgraph cluster_group3 {") != NULL);
	ASSERT_TRUE(strstr(ctl_out, "\"0000:01:00.0\" -> \"iommu1\";") != NULL);
}

TEST(uiommuctl_operations_and_exit_codes)
{
	char path[] = "/tmp/uiommu-test-topo.XXXXXX";
	const char *json = "{ \"iommus\": [ { \"name\": \"only\", \"driver\": \"mock\" } ],\n"
			   "  \"devices\": [ { \"bdf\": \"0000:05:00.0\", \"iommu\": \"only\","
			   " \"bound\": true } ] }\n";
	char args[256];

	/* Commands run in order in the tool's own process. */
	ASSERT_EQ(0, uiommuctl("unbind 0000:00:03.0 set-type 1 identity show"));
	ASSERT_TRUE(strstr(ctl_out, "group 1: type identity") != NULL);
	ASSERT_EQ(2, uiommuctl("unplug 0000:04:00.0 --json")); /* options come first */
	ASSERT_EQ(0, uiommuctl("--json unplug 0000:04:00.0 show"));
	ASSERT_TRUE(strstr(ctl_out, "\"present\": false") != NULL);
	ASSERT_EQ(0, uiommuctl("unbind 0000:00:03.0 bind 0000:00:03.0"));
	/* Failures: 1 with the errno's message. */
	ASSERT_EQ(1, uiommuctl("set-type 0 DMA"));
	ASSERT_TRUE(strstr(ctl_out, "uiommuctl: set-type 0 DMA: Operation not permitted") != NULL);
	ASSERT_EQ(1, uiommuctl("set-type 5 bogus"));
	ASSERT_TRUE(strstr(ctl_out, "Invalid argument") != NULL);
	ASSERT_EQ(1, uiommuctl("set-type 42 DMA"));
	ASSERT_EQ(1, uiommuctl("plug 0000:00:03.0"));
	ASSERT_TRUE(strstr(ctl_out, "Device or resource busy") != NULL);
	ASSERT_EQ(1, uiommuctl("bind 0000:99:00.0"));
	ASSERT_EQ(1, uiommuctl("--topology /nonexistent.json"));
	/* Usage: 2. */
	ASSERT_EQ(2, uiommuctl("frob"));
	ASSERT_EQ(2, uiommuctl("bind"));
	ASSERT_EQ(2, uiommuctl("--bogus"));
	ASSERT_EQ(2, uiommuctl("--topology x --socket y"));
	ASSERT_EQ(0, uiommuctl("--help"));
	ASSERT_TRUE(strstr(ctl_out, "Usage: uiommuctl") != NULL);

	/* A topology file. */
	ASSERT_EQ(0, topology_file_write(path, json));
	snprintf(args, sizeof(args), "--topology %s", path);
	ASSERT_EQ(0, uiommuctl(args));
	unlink(path);
	ASSERT_TRUE(strstr(ctl_out, "iommu only: driver mock") != NULL);
	ASSERT_TRUE(strstr(ctl_out, "group 0: type DMA,") != NULL); /* no deferred flush */
	ASSERT_TRUE(strstr(ctl_out, "  0000:05:00.0 (driver bound)\n") != NULL);
}

/* A client connected to the control socket at @path, or -1. */
static int ctl_open(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd;

	strcpy(addr.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr))) {
		close(fd);
		fd = -1;
	}
	return fd;
}

static bool status_line(const char *p)
{
	return !strncmp(p, "ok\n", 3) || (!strncmp(p, "error ", 6) && strchr(p, '\n'));
}

/*
 * Reads from @fd until @nr_cmds status lines ("ok", "error ...") came, or the end of the
 * stream (EOF, or ECONNRESET when the server left bytes of ours unread); all of it.
 */
static const char *ctl_read(int fd, int nr_cmds)
{
	static char out[1 << 16];
	size_t len = 0;
	int done = 0;

	out[0] = '\0';
	while (done < nr_cmds && len < sizeof(out) - 1) {
		ssize_t n = read(fd, out + len, sizeof(out) - 1 - len);
		char *p;

		if (n <= 0)
			break;
		len += (size_t)n;
		out[len] = '\0';
		for (done = status_line(out), p = out; (p = strchr(p, '\n')); p++)
			done += status_line(p + 1);
	}
	return out;
}

/* Sends @cmds over the socket and returns everything read until the last status line. */
static const char *ctl_raw(const char *path, const char *cmds, int nr_cmds)
{
	int fd = ctl_open(path);
	const char *out = "";

	if (fd < 0)
		return out;
	if (write(fd, cmds, strlen(cmds)) == (ssize_t)strlen(cmds))
		out = ctl_read(fd, nr_cmds);
	close(fd);
	return out;
}

/* True once the server has closed @fd: its next read gives nothing. */
static bool ctl_closed(int fd)
{
	char c;

	return read(fd, &c, 1) <= 0;
}

TEST(control_socket_round_trip)
{
	char dir[] = "/tmp/uiommu-test-ctl.XXXXXX", sock[64], args[128];
	struct iommu_group *group;
	const char *out;

	machine();
	ASSERT_TRUE(mkdtemp(dir) != NULL);
	snprintf(sock, sizeof(sock), "%s/ctl", dir);
	ASSERT_EQ(0, uiommu_ctl_start(sock));
	ASSERT_ERRNO(EBUSY, uiommu_ctl_start(sock));

	/* uiommuctl changes this process's machine through the listener thread. */
	snprintf(args, sizeof(args), "--socket %s set-type 4 DMA-FQ", sock);
	ASSERT_EQ(0, uiommuctl(args));
	group = iommu_group_get_by_id(4);
	ASSERT_TRUE(group != NULL);
	ASSERT_EQ(IOMMU_DOMAIN_DMA_FQ, iommu_domain_type(iommu_get_domain_for_dev(
		topology_find_device("0000:02:00.0"))));
	iommu_group_put(group);
	ASSERT_STREQ("DMA-FQ\n", cat(G "/4/type"));
	snprintf(args, sizeof(args), "--socket %s unplug 0000:04:00.0", sock);
	ASSERT_EQ(0, uiommuctl(args));
	ASSERT_TRUE(iommu_group_get_by_id(6) == NULL);
	snprintf(args, sizeof(args), "--socket %s --json", sock);
	ASSERT_EQ(0, uiommuctl(args));
	ASSERT_TRUE(strstr(ctl_out, "\"present\": false") != NULL);
	snprintf(args, sizeof(args), "--socket %s set-type 0 DMA", sock);
	ASSERT_EQ(1, uiommuctl(args));
	ASSERT_TRUE(strstr(ctl_out, "Operation not permitted") != NULL);

	/* The raw protocol: reply lines, then ok or error <errno> <message>. */
	out = ctl_raw(sock, "plug 0000:04:00.0\nplug 0000:04:00.0\nfrob\nshow text\n", 4);
	ASSERT_TRUE(!strncmp(out, "ok\nerror 16 Device or resource busy\n", 36));
	ASSERT_TRUE(strstr(out, "\nerror 22 Invalid argument\n") != NULL);
	ASSERT_TRUE(strstr(out, "group 6: type DMA-FQ") != NULL);
	ASSERT_TRUE(strstr(out, "\nok\n") != NULL);

	snprintf(args, sizeof(args), "--socket %s/nothing show", dir);
	ASSERT_EQ(1, uiommuctl(args));
	unlink(sock);
	rmdir(dir);
}

/* ---- the control socket: who may talk, and how ------------------------------------------- */

/* The machine booted, a fresh private directory and the socket path in it ("<dir>/ctl"). */
static void ctl_paths(char *dir, char *sock, size_t len)
{
	machine();
	strcpy(dir, "/tmp/uiommu-test-ctl.XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(sock, len, "%s/ctl", dir);
}

static void ctl_paths_remove(const char *dir, const char *sock)
{
	unlink(sock);
	rmdir(dir);
}

static char stderr_text[4096];
static int stderr_saved = -1;

/* Until stderr_end(), what goes to stderr is kept (for the library's loud refusals). */
static void stderr_begin(void)
{
	FILE *f = tmpfile();

	if (!f)
		abort();
	fflush(stderr);
	stderr_saved = dup(2);
	dup2(fileno(f), 2);
	fclose(f); /* fd 2 keeps the file */
}

static const char *stderr_end(void)
{
	ssize_t n;

	fflush(stderr);
	n = pread(2, stderr_text, sizeof(stderr_text) - 1, 0);
	stderr_text[n > 0 ? n : 0] = '\0';
	dup2(stderr_saved, 2);
	close(stderr_saved);
	return stderr_text;
}

/* Drops to the nobody user in a child; false where this process may not (not root). */
static bool become_nobody(void)
{
	return !setgroups(0, NULL) && !setgid(65534) && !setuid(65534) && geteuid() == 65534;
}

/* Can a forked child become another user here? Children only: the test process stays root. */
static bool can_become_nobody(void)
{
	int status;
	pid_t pid = fork();

	if (!pid)
		_exit(become_nobody() ? 0 : 1);
	return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	       !WEXITSTATUS(status);
}

TEST(control_socket_directory_and_file_are_private)
{
	char dir[64], sock[96], sub[80];
	struct stat st;

	ctl_paths(dir, sock, sizeof(sock));
	/* A directory that does not exist is made, 0700; the socket is 0600. */
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	snprintf(sock, sizeof(sock), "%s/ctl", sub);
	ASSERT_EQ(0, uiommu_ctl_start(sock));
	ASSERT_EQ(0, stat(sub, &st));
	ASSERT_EQ(S_IFDIR | 0700, st.st_mode & (S_IFMT | 07777));
	ASSERT_EQ(0, lstat(sock, &st));
	ASSERT_EQ(S_IFSOCK | 0600, st.st_mode & (S_IFMT | 07777));
	ASSERT_TRUE(strstr(ctl_raw(sock, "show\n", 1), "\nok\n") != NULL);
	unlink(sock);
	rmdir(sub);
	rmdir(dir);
}

/* A child process starts the listener on @sock and exits; its exit status (0: started). */
static int ctl_start_and_exit(const char *sock)
{
	int status;
	pid_t pid = fork();

	if (!pid)
		exit(uiommu_ctl_start(sock) ? 1 : 0); /* the exit handlers clean up */
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

TEST(control_socket_exit_removes_the_directory_it_made)
{
	char dir[64], sock[96], sub[80];

	ctl_paths(dir, sock, sizeof(sock));
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	snprintf(sock, sizeof(sock), "%s/ctl", sub);
	ASSERT_EQ(0, ctl_start_and_exit(sock));
	ASSERT_EQ(-1, access(sub, F_OK));
	/* A directory it did not make stays; only the socket goes. */
	ASSERT_EQ(0, mkdir(sub, 0700));
	ASSERT_EQ(0, ctl_start_and_exit(sock));
	ASSERT_EQ(0, access(sub, F_OK));
	ASSERT_EQ(-1, access(sock, F_OK));
	rmdir(sub);
	rmdir(dir);
}

TEST(control_socket_refuses_an_open_directory)
{
	char dir[64], sock[96];

	ctl_paths(dir, sock, sizeof(sock));
	/* Writable by others and not sticky: someone could swap the socket under us. */
	ASSERT_EQ(0, chmod(dir, 0777));
	stderr_begin();
	ASSERT_ERRNO(EPERM, uiommu_ctl_start(sock));
	ASSERT_TRUE(strstr(stderr_end(), "is writable by others; not listening\n") != NULL);
	ASSERT_EQ(-1, access(sock, F_OK));
	/* Sticky, as /tmp is: others cannot rename what is ours. */
	ASSERT_EQ(0, chmod(dir, 01777));
	ASSERT_EQ(0, uiommu_ctl_start(sock));
	ctl_paths_remove(dir, sock);
}

TEST(control_socket_replaces_only_its_users_stale_socket)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char dir[64], sock[96];
	int fd;

	ctl_paths(dir, sock, sizeof(sock));
	strcpy(addr.sun_path, sock);
	/* Our user serves the path (a parent of this process would): leave it, quietly. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ASSERT_EQ(0, bind(fd, (struct sockaddr *)&addr, sizeof(addr)));
	ASSERT_EQ(0, listen(fd, 1));
	stderr_begin();
	ASSERT_ERRNO(EADDRINUSE, uiommu_ctl_start(sock));
	ASSERT_STREQ("", stderr_end());
	/* Nobody listens any more: a stale socket of ours, replaced. */
	close(fd);
	ASSERT_EQ(0, uiommu_ctl_start(sock));
	ASSERT_TRUE(strstr(ctl_raw(sock, "show\n", 1), "\nok\n") != NULL);
	ctl_paths_remove(dir, sock);
}

TEST(control_socket_never_replaces_another_file)
{
	char dir[64], sock[96];
	int fd;

	ctl_paths(dir, sock, sizeof(sock));
	fd = open(sock, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ASSERT_GE(fd, 0);
	close(fd);
	ASSERT_ERRNO(EEXIST, uiommu_ctl_start(sock));
	ASSERT_EQ(0, access(sock, F_OK));
	ctl_paths_remove(dir, sock);
}

/*
 * Another user binds the path first and answers with forged replies. The program must not
 * start, say why on stderr, and uiommuctl must not believe the squatter.
 */
TEST(control_socket_squatted_by_another_user)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char dir[64], sock[96], args[160], ready;
	int sync[2], status;
	pid_t pid;

	if (!can_become_nobody())
		SKIP("cannot run a process as another user here (needs root)");
	ctl_paths(dir, sock, sizeof(sock));
	ASSERT_EQ(0, chmod(dir, 01777)); /* a /tmp of our own, where nobody may bind */
	strcpy(addr.sun_path, sock);
	ASSERT_EQ(0, pipe(sync));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		int lfd, fd;

		if (!become_nobody())
			_exit(1);
		lfd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) ||
		    chmod(sock, 0777) || listen(lfd, 8) || write(sync[1], "r", 1) != 1)
			_exit(1);
		while ((fd = accept(lfd, NULL, NULL)) >= 0) {
			static const char forged[] = "forged reply\nok\n";

			/* The program's probe hangs up at once: no SIGPIPE for that. */
			send(fd, forged, sizeof(forged) - 1, MSG_NOSIGNAL);
			close(fd);
		}
		_exit(0);
	}
	close(sync[1]);
	ASSERT_EQ(1, read(sync[0], &ready, 1));
	close(sync[0]);

	stderr_begin();
	ASSERT_ERRNO(EPERM, uiommu_ctl_start(sock));
	ASSERT_TRUE(strstr(stderr_end(), "served by uid 65534, not by this user (uid 0); "
					 "not listening\n") != NULL);
	snprintf(args, sizeof(args), "--socket %s show", sock);
	ASSERT_EQ(1, uiommuctl(args));
	ASSERT_TRUE(strstr(ctl_out, "served by uid 65534, not by you (uid 0); refusing") != NULL);
	ASSERT_TRUE(strstr(ctl_out, "forged") == NULL);

	/* Gone, its socket left behind: still not ours to replace. */
	kill(pid, SIGKILL);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	stderr_begin();
	ASSERT_ERRNO(EPERM, uiommu_ctl_start(sock));
	ASSERT_TRUE(strstr(stderr_end(), "a socket of uid 65534, not of this user (uid 0); "
					 "not listening\n") != NULL);
	ctl_paths_remove(dir, sock);
}

/* A client of another user is turned away, even when the file modes would let it in. */
TEST(control_socket_refuses_clients_of_other_users)
{
	char dir[64], sock[96];
	int status;
	pid_t pid;

	if (!can_become_nobody())
		SKIP("cannot run a process as another user here (needs root)");
	ctl_paths(dir, sock, sizeof(sock));
	ASSERT_EQ(0, uiommu_ctl_start(sock));
	ASSERT_EQ(0, chmod(dir, 0711));
	ASSERT_EQ(0, chmod(sock, 0666));
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		int fd;

		if (!become_nobody())
			_exit(1);
		fd = ctl_open(sock);
		if (fd < 0)
			_exit(2);
		/* The server may have hung up already: what it said is still there to read. */
		send(fd, "show\n", 5, MSG_NOSIGNAL);
		if (strcmp(ctl_read(fd, 1), "error 1 uid 65534 may not control this program "
					    "(uid 0)\n"))
			_exit(3);
		_exit(ctl_closed(fd) ? 0 : 4);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	/* Root and the program's own user get in. */
	ASSERT_TRUE(strstr(ctl_raw(sock, "show\n", 1), "\nok\n") != NULL);
	ctl_paths_remove(dir, sock);
}

TEST(control_socket_serves_a_client_while_another_idles)
{
	char dir[64], sock[96];
	int idle, busy;

	ctl_paths(dir, sock, sizeof(sock));
	ASSERT_EQ(0, uiommu_ctl_start(sock));
	/* Half a line, then silence. */
	idle = ctl_open(sock);
	ASSERT_GE(idle, 0);
	ASSERT_EQ(3, write(idle, "sho", 3));
	busy = ctl_open(sock);
	ASSERT_GE(busy, 0);
	ASSERT_EQ(10, write(busy, "show json\n", 10));
	ASSERT_TRUE(strstr(ctl_read(busy, 1), "\"iommus\"") != NULL);
	close(busy);
	/* The idle one was kept waiting, not dropped. */
	ASSERT_EQ(7, write(idle, "w text\n", 7));
	ASSERT_TRUE(strstr(ctl_read(idle, 1), "group 3: type DMA") != NULL);
	close(idle);
	ctl_paths_remove(dir, sock);
}

TEST(control_socket_lets_an_idle_client_go)
{
	char dir[64], sock[96];
	int fd;

	ctl_paths(dir, sock, sizeof(sock));
	ctl_set_idle_timeout(50);
	ASSERT_EQ(0, uiommu_ctl_start(sock));
	fd = ctl_open(sock);
	ASSERT_GE(fd, 0);
	ASSERT_STREQ("error 110 idle for 50 ms\n", ctl_read(fd, 1));
	ASSERT_TRUE(ctl_closed(fd));
	close(fd);
	ctl_paths_remove(dir, sock);
}

TEST(control_socket_nul_garbage_and_overlong_lines)
{
	char dir[64], sock[96], big[CTL_LINE_MAX + 64];
	const char *out;
	int fd;

	ctl_paths(dir, sock, sizeof(sock));
	ASSERT_EQ(0, uiommu_ctl_start(sock));
	/* A NUL would cut the command short ("show" of "show\0json"): an error, and goodbye. */
	fd = ctl_open(sock);
	ASSERT_EQ(10, write(fd, "show\0json\n", 10));
	ASSERT_STREQ("error 22 NUL byte in the command line\n", ctl_read(fd, 1));
	ASSERT_TRUE(ctl_closed(fd));
	close(fd);
	/* Lines before the NUL are served; a NUL without a newline yet ends it at once. */
	fd = ctl_open(sock);
	ASSERT_EQ(16, write(fd, "show text\nsh\0ow", 16));
	out = ctl_read(fd, 2);
	ASSERT_TRUE(strstr(out, "\nok\nerror 22 NUL byte in the command line\n") != NULL);
	ASSERT_TRUE(ctl_closed(fd));
	close(fd);
	/* Garbage is a usage error; the conversation goes on. */
	fd = ctl_open(sock);
	ASSERT_EQ(17, write(fd, "\x01\x7f\xff garbage\n\x1b[2J\n", 17));
	out = ctl_read(fd, 2);
	ASSERT_TRUE(!strncmp(out, "usage: ", 7));
	ASSERT_TRUE(strstr(out, "\nerror 22 Invalid argument\n") != NULL);
	ASSERT_EQ(5, write(fd, "show\n", 5));
	ASSERT_TRUE(strstr(ctl_read(fd, 1), "\nok\n") != NULL);
	close(fd);
	/* A line that does not fit: E2BIG, and goodbye. */
	fd = ctl_open(sock);
	memset(big, 'a', sizeof(big));
	ASSERT_EQ((ssize_t)sizeof(big), write(fd, big, sizeof(big)));
	ASSERT_STREQ("error 7 command line too long\n", ctl_read(fd, 1));
	ASSERT_TRUE(ctl_closed(fd));
	close(fd);
	ctl_paths_remove(dir, sock);
}

TEST(control_socket_caps_its_clients)
{
	char dir[64], sock[96];
	int fds[CTL_CLIENTS_MAX + 1];

	ctl_paths(dir, sock, sizeof(sock));
	ASSERT_EQ(0, uiommu_ctl_start(sock));
	/*
	 * Each one answered holds its slot while it stays connected. All ask before any reply is
	 * read, so their threads run the commands at the same time (TSan watches).
	 */
	for (int i = 0; i < CTL_CLIENTS_MAX; i++) {
		fds[i] = ctl_open(sock);
		ASSERT_GE(fds[i], 0);
		ASSERT_EQ(15, write(fds[i], "show json\nshow\n", 15));
	}
	for (int i = 0; i < CTL_CLIENTS_MAX; i++) {
		const char *out = ctl_read(fds[i], 2);

		ASSERT_TRUE(strstr(out, "}\nok\ntopology (default)") != NULL);
		ASSERT_STREQ("\nok\n", out + strlen(out) - 4);
		ASSERT_TRUE(strstr(out, "error") == NULL);
	}
	fds[CTL_CLIENTS_MAX] = ctl_open(sock);
	ASSERT_GE(fds[CTL_CLIENTS_MAX], 0);
	ASSERT_STREQ("error 11 8 clients connected already\n",
		     ctl_read(fds[CTL_CLIENTS_MAX], 1));
	ASSERT_TRUE(ctl_closed(fds[CTL_CLIENTS_MAX]));
	for (int i = 0; i <= CTL_CLIENTS_MAX; i++)
		close(fds[i]);
	ctl_paths_remove(dir, sock);
}

/* The one unchecked name, the topology file's path, cannot forge a line of the protocol. */
TEST(control_socket_show_keeps_a_path_on_one_line)
{
	const char *json = "{ \"iommus\": [ { \"name\": \"only\" } ],\n"
			   "  \"devices\": [ { \"bdf\": \"0000:05:00.0\", \"iommu\": \"only\" } ] }\n";
	char dir[64], sock[96], topo[128], want[160];
	const char *out;
	int fd;

	ctl_paths(dir, sock, sizeof(sock));
	snprintf(topo, sizeof(topo), "%s/a\nok\nb.json", dir);
	fd = open(topo, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ASSERT_GE(fd, 0);
	ASSERT_EQ((ssize_t)strlen(json), write(fd, json, strlen(json)));
	close(fd);
	topology_unload();
	ASSERT_EQ(0, topology_load(topo));
	ASSERT_EQ(0, uiommu_ctl_start(sock));
	out = ctl_raw(sock, "show text\n", 1);
	snprintf(want, sizeof(want), "topology %s/a?ok?b.json, global default", dir);
	ASSERT_TRUE(!strncmp(out, want, strlen(want)));
	ASSERT_TRUE(strstr(out, "\nok\n") == out + strlen(out) - 4);
	unlink(topo);
	ctl_paths_remove(dir, sock);
}

/* Each fallible step of the start fails cleanly: no socket, no directory left behind. */
TEST(fail_nth_control_socket_start)
{
	char dir[64], sock[96], sub[80];
	unsigned long nth;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	ctl_paths(dir, sock, sizeof(sock));
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	snprintf(sock, sizeof(sock), "%s/ctl", sub);
	for (nth = 1; nth < 100; nth++) {
		int rc, err;

		uiommu_fail_nth_arm(nth);
		rc = uiommu_ctl_start(sock);
		err = errno;
		if (uiommu_fail_nth_disarm()) {
			ASSERT_EQ(0, rc);
			break;
		}
		ASSERT_EQ(-1, rc);
		ASSERT_EQ(ENOMEM, err);
		ASSERT_EQ(-1, access(sub, F_OK));
	}
	ASSERT_GT(nth, 1);
	ASSERT_TRUE(strstr(ctl_raw(sock, "show\n", 1), "\nok\n") != NULL);
	unlink(sock);
	rmdir(sub);
	rmdir(dir);
}

TEST_HARNESS_MAIN
