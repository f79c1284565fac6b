// SPDX-License-Identifier: MIT
/*
 * Discovery of VFIO devices as libvfn, QEMU and the kernel's selftests do it, under uiommu-run:
 * the sysfs attributes of a PCI function (vendor, class, config, resource ...), its vfio-dev
 * directory and `dev` file, the /dev/vfio nodes with the numbers those files show (stat, fstat,
 * statx, access, readlink of /proc/self/fd, realpath, readdir), the modules' parameters, the
 * driver a function is bound to and how driver_override, bind and unbind move it; and what the
 * nodes answer to calls they do not support.
 *
 * Every case is a fresh child that loads this file's machine at its first look:
 *   0000:07:00.0  a dma-test function, alone in its group: vfio-pci's (vfio0)
 *   0000:08:00.0  a generic function in group "g": vfio-pci's (vfio1)
 *   0000:08:00.1  in group "g", the DMA-API driver's
 *   0000:09:00.0  no driver
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "harness.h"
#include "vfio_utils.h"
#include "uiommu/vfio_compat.h"

#define DEV(bdf) "/sys/bus/pci/devices/" bdf
#define VFIO_DRV "/sys/bus/pci/drivers/vfio-pci"
#define DMA_DRV "/sys/bus/pci/drivers/uiommu-dma"

static const char topology[] =
	"{ \"iommus\": [ { \"name\": \"iommu0\" } ],\n"
	"  \"devices\": [\n"
	"    { \"bdf\": \"0000:07:00.0\", \"iommu\": \"iommu0\", \"model\": \"dma-test\" },\n"
	"    { \"bdf\": \"0000:08:00.0\", \"iommu\": \"iommu0\", \"group\": \"g\" },\n"
	"    { \"bdf\": \"0000:08:00.1\", \"iommu\": \"iommu0\", \"group\": \"g\", \"bound\": true },\n"
	"    { \"bdf\": \"0000:09:00.0\", \"iommu\": \"iommu0\", \"driver\": \"none\" } ] }\n";

/* This case's machine: written to a file the first look at /sys or /dev/vfio loads. */
static void machine(void)
{
	vfio_machine(topology, DEV("0000:07:00.0"));
}

static const char *cat(const char *path)
{
	static char buf[8192];
	ssize_t n;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return "(open failed)";
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n < 0 ? 0 : n] = '\0';
	return buf;
}

/* The sorted names in @path, space-separated, "." and ".." left out. */
static const char *ls(const char *path)
{
	static char buf[4096];
	struct dirent **list;
	int n = scandir(path, &list, NULL, alphasort);

	buf[0] = '\0';
	if (n < 0)
		return "(scandir failed)";
	for (int i = 0; i < n; i++) {
		if (strcmp(list[i]->d_name, ".") && strcmp(list[i]->d_name, "..")) {
			if (buf[0])
				strcat(buf, " ");
			strcat(buf, list[i]->d_name);
		}
		free(list[i]);
	}
	free(list);
	return buf;
}

/* The same through opendir/readdir, as libvfn and QEMU list vfio-dev/. */
static const char *readdir_first_vfio(const char *path)
{
	static char name[256];
	struct dirent *de;
	DIR *dir = opendir(path);

	name[0] = '\0';
	if (!dir)
		return "(opendir failed)";
	while ((de = readdir(dir)))
		if (!strncmp(de->d_name, "vfio", 4))
			snprintf(name, sizeof(name), "%s", de->d_name);
	closedir(dir);
	return name;
}

static const char *rdlink(const char *path)
{
	static char buf[PATH_MAX];
	ssize_t n = readlink(path, buf, sizeof(buf) - 1);

	buf[n < 0 ? 0 : n] = '\0';
	return buf;
}


TEST(discovery_as_libvfn_and_qemu_do_it)
{
	char node[64], proc[64], link[PATH_MAX];
	unsigned int maj, min;
	struct stat st, st2;
	struct statx stx;
	int fd;

	machine();
	/* libvfn: the class and the ids. */
	ASSERT_STREQ("0xff0000\n", cat(DEV("0000:07:00.0") "/class"));
	ASSERT_STREQ("0x1234\n", cat(DEV("0000:07:00.0") "/vendor"));
	ASSERT_STREQ("0xd7a0\n", cat(DEV("0000:07:00.0") "/device"));
	ASSERT_STREQ("0x1234\n", cat(DEV("0000:07:00.0") "/subsystem_vendor"));
	ASSERT_STREQ("../../../bus/pci/drivers/vfio-pci", rdlink(DEV("0000:07:00.0") "/driver"));
	/* QEMU 10: stat the sysfs path, the first vfio* of vfio-dev/, its dev file. */
	ASSERT_EQ(0, stat(DEV("0000:07:00.0"), &st));
	ASSERT_TRUE(S_ISDIR(st.st_mode));
	ASSERT_STREQ("vfio0", readdir_first_vfio(DEV("0000:07:00.0") "/vfio-dev"));
	ASSERT_EQ(2, sscanf(cat(DEV("0000:07:00.0") "/vfio-dev/vfio0/dev"), "%u:%u", &maj, &min));
	ASSERT_EQ(0u, min);
	ASSERT_STREQ("vfio0 vfio1", ls("/sys/class/vfio-dev"));
	ASSERT_STREQ("../../devices/pci0000:00/0000:07:00.0/vfio-dev/vfio0",
		     rdlink("/sys/class/vfio-dev/vfio0"));
	snprintf(node, sizeof(node), "MAJOR=%u\nMINOR=0\nDEVNAME=vfio/devices/vfio0\n", maj);
	ASSERT_STREQ(node, cat("/sys/class/vfio-dev/vfio0/uevent"));

	/* open_cdev(): the fd's rdev must be the dev file's numbers. */
	fd = open("/dev/vfio/devices/vfio0", O_RDWR | O_CLOEXEC);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, fstat(fd, &st));
	ASSERT_TRUE(S_ISCHR(st.st_mode));
	ASSERT_EQ(makedev(maj, 0), st.st_rdev);
	ASSERT_EQ(0600u, st.st_mode & 07777);
	ASSERT_EQ(0, stat("/dev/vfio/devices/vfio0", &st2));
	ASSERT_EQ(st.st_rdev, st2.st_rdev);
	ASSERT_EQ(st.st_mode, st2.st_mode);
	ASSERT_EQ(0, lstat("/dev/vfio/devices/vfio0", &st2));
	ASSERT_TRUE(S_ISCHR(st2.st_mode));
	ASSERT_EQ(0, fstatat(fd, "", &st2, AT_EMPTY_PATH));
	ASSERT_EQ(st.st_rdev, st2.st_rdev);
	ASSERT_EQ(0, statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx));
	ASSERT_EQ(maj, stx.stx_rdev_major);
	ASSERT_EQ(0u, stx.stx_rdev_minor);
	ASSERT_EQ(S_IFCHR | 0600, stx.stx_mode);
	ASSERT_EQ(0, statx(AT_FDCWD, "/dev/vfio/devices/vfio0", 0, STATX_BASIC_STATS, &stx));
	ASSERT_EQ(maj, stx.stx_rdev_major);

	/* The fd names its node; /proc/self/fd/N follows to it. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	ASSERT_STREQ("/dev/vfio/devices/vfio0", rdlink(proc));
	ASSERT_EQ(0, stat(proc, &st2));
	ASSERT_EQ(st.st_rdev, st2.st_rdev);
	ASSERT_EQ(0, lstat(proc, &st2));
	ASSERT_TRUE(S_ISLNK(st2.st_mode)); /* the link itself */
	ASSERT_TRUE(realpath(proc, link) != NULL);
	ASSERT_STREQ("/dev/vfio/devices/vfio0", link);
	snprintf(proc, sizeof(proc), "/proc/%d/fd/%d", (int)getpid(), fd);
	ASSERT_STREQ("/dev/vfio/devices/vfio0", rdlink(proc));
	ASSERT_TRUE(realpath("/dev/vfio/devices/vfio0", link) != NULL);
	ASSERT_STREQ("/dev/vfio/devices/vfio0", link);
	ASSERT_TRUE(realpath(DEV("0000:07:00.0"), link) != NULL);
	ASSERT_STREQ("/sys/devices/pci0000:00/0000:07:00.0", link);
	ASSERT_TRUE(realpath(DEV("0000:07:00.0") "/iommu_group", link) != NULL);
	ASSERT_EQ(0, strncmp(link, "/sys/kernel/iommu_groups/", 25));

	/* The caller owns its nodes: read and write, never execute. */
	ASSERT_EQ(0, access("/dev/vfio/devices/vfio0", R_OK | W_OK));
	ASSERT_ERRNO(EACCES, access("/dev/vfio/devices/vfio0", X_OK));
	ASSERT_EQ(0, faccessat(AT_FDCWD, "/dev/vfio/vfio", R_OK | W_OK, 0));

	/* A dup is the same file. */
	{
		int fd2 = dup(fd);

		ASSERT_GE(fd2, 0);
		ASSERT_EQ(0, fstat(fd2, &st2));
		ASSERT_EQ(st.st_rdev, st2.st_rdev);
		ASSERT_EQ(0, close(fd2));
	}
	ASSERT_EQ(0, close(fd));
}

TEST(config_and_resource_from_the_function)
{
	unsigned long long start, end, flags;
	unsigned char cfg[4096];
	const char *res, *line;
	char rev[8];
	int fd, lines = 0;
	ssize_t n;

	machine();
	fd = open(DEV("0000:07:00.0") "/config", O_RDONLY);
	ASSERT_GE(fd, 0);
	n = read(fd, cfg, sizeof(cfg));
	close(fd);
	/* PCIe: 4 KiB of config space, the ids where sysfs says. */
	ASSERT_EQ(4096, n);
	ASSERT_EQ(0x1234, cfg[0] | cfg[1] << 8);
	ASSERT_EQ(0xd7a0, cfg[2] | cfg[3] << 8);
	ASSERT_EQ(0xff, cfg[0xb]);
	snprintf(rev, sizeof(rev), "0x%02x\n", cfg[8]);
	ASSERT_STREQ(rev, cat(DEV("0000:07:00.0") "/revision"));
	/* A generic function shows its own, the topology's class. */
	fd = open(DEV("0000:08:00.0") "/config", O_RDONLY);
	ASSERT_GE(fd, 0);
	ASSERT_GE(read(fd, cfg, sizeof(cfg)), 64);
	close(fd);

	res = cat(DEV("0000:07:00.0") "/resource");
	for (line = res; *line; line = strchr(line, '\n') + 1, lines++) {
		ASSERT_EQ(3, sscanf(line, "0x%llx 0x%llx 0x%llx", &start, &end, &flags));
		if (lines == 0) { /* BAR0: 16 KiB of 64-bit memory */
			ASSERT_EQ(0x4000ull, end - start + 1);
			ASSERT_EQ(0x140204ull, flags);
		} else if (lines == 2) { /* BAR2: 16 bytes of I/O */
			ASSERT_EQ(16ull, end - start + 1);
			ASSERT_EQ(0x40101ull, flags);
		} else if (lines == 6) { /* the ROM: 2 KiB, read-only prefetchable memory */
			ASSERT_EQ(0x800ull, end - start + 1);
			ASSERT_EQ(0x46200ull, flags);
		} else {
			ASSERT_EQ(0ull, flags);
		}
	}
	ASSERT_EQ(13, lines);
	ASSERT_STREQ("-1\n", cat(DEV("0000:07:00.0") "/numa_node"));
}

TEST(dev_vfio_nodes_and_listing)
{
	char path[64], want[64];
	unsigned int maj, min;
	struct stat st;
	int g, g2;

	machine();
	/* The group of vfio0, as QEMU's legacy path finds it. */
	ASSERT_EQ(1, sscanf(rdlink(DEV("0000:07:00.0") "/iommu_group"),
			    "../../../kernel/iommu_groups/%d", &g));
	snprintf(path, sizeof(path), "/sys/class/vfio/%d/dev", g);
	ASSERT_EQ(2, sscanf(cat(path), "%u:%u", &maj, &min));
	snprintf(path, sizeof(path), "/dev/vfio/%d", g);
	ASSERT_EQ(0, stat(path, &st));
	ASSERT_TRUE(S_ISCHR(st.st_mode));
	ASSERT_EQ(makedev(maj, min), st.st_rdev);

	ASSERT_STREQ("vfio0 vfio1", ls("/dev/vfio/devices"));
	/* Two groups with a vfio-pci function, the cdev directory, the container. */
	ASSERT_EQ(1, sscanf(rdlink(DEV("0000:08:00.0") "/iommu_group"),
			    "../../../kernel/iommu_groups/%d", &g2));
	ASSERT_NE(g, g2);
	snprintf(want, sizeof(want), "%d %d devices vfio", g < g2 ? g : g2, g < g2 ? g2 : g);
	ASSERT_STREQ(want, ls("/dev/vfio"));
	ASSERT_EQ(0, stat("/dev/vfio/vfio", &st));
	ASSERT_EQ(S_IFCHR | 0666, st.st_mode);
	ASSERT_EQ(makedev(10, 196), st.st_rdev);
	ASSERT_STREQ("10:196\n", cat("/sys/class/misc/vfio/dev"));
	ASSERT_EQ(0, stat("/dev/vfio", &st));
	ASSERT_TRUE(S_ISDIR(st.st_mode));
	ASSERT_EQ(0, stat("/dev/vfio/devices", &st));
	ASSERT_TRUE(S_ISDIR(st.st_mode));
	ASSERT_EQ(0, stat("/dev/iommu", &st));
	ASSERT_TRUE(S_ISCHR(st.st_mode));
	ASSERT_EQ(10u, major(st.st_rdev));

	/* What does not exist. */
	ASSERT_ERRNO(ENOENT, stat("/dev/vfio/devices/vfio2", &st));
	ASSERT_ERRNO(ENOENT, stat("/dev/vfio/99", &st));
	ASSERT_ERRNO(ENOENT, stat("/dev/vfio/nonsense", &st));
	ASSERT_ERRNO(ENOENT, open("/dev/vfio/devices/vfio2", O_RDWR));
	ASSERT_ERRNO(ENOENT, open("/dev/vfio/99", O_RDWR));
	ASSERT_ERRNO(ENOENT, access("/dev/vfio/devices/vfio01", F_OK));
	ASSERT_ERRNO(EINVAL, readlink("/dev/vfio/vfio", path, sizeof(path)));
}

TEST(unsupported_calls_fail_as_the_kernel)
{
	char buf[8] = { 0 }, path[32];
	int c, i, g, gid;

	machine();
	c = open("/dev/vfio/vfio", O_RDWR);
	i = open("/dev/iommu", O_RDWR);
	ASSERT_GE(c, 0);
	ASSERT_GE(i, 0);
	ASSERT_EQ(1, sscanf(rdlink(DEV("0000:07:00.0") "/iommu_group"),
			    "../../../kernel/iommu_groups/%d", &gid));
	snprintf(path, sizeof(path), "/dev/vfio/%d", gid);
	g = open(path, O_RDWR);
	ASSERT_GE(g, 0);
	/* No read or write in these files' operations: EINVAL, never /dev/null's 0. */
	ASSERT_ERRNO(EINVAL, read(c, buf, sizeof(buf)));
	ASSERT_ERRNO(EINVAL, write(c, buf, sizeof(buf)));
	ASSERT_ERRNO(EINVAL, pread(c, buf, sizeof(buf), 0));
	ASSERT_ERRNO(EINVAL, pwrite(c, buf, sizeof(buf), 0));
	ASSERT_ERRNO(EINVAL, read(g, buf, sizeof(buf)));
	ASSERT_ERRNO(EINVAL, write(g, buf, sizeof(buf)));
	ASSERT_ERRNO(EINVAL, read(i, buf, sizeof(buf)));
	ASSERT_ERRNO(EINVAL, write(i, buf, sizeof(buf)));
	/* Unknown ioctls. */
	ASSERT_ERRNO(ENOTTY, ioctl(g, VFIO_BASE + 99, NULL));
	/* The names of the fds. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", c);
	ASSERT_STREQ("/dev/vfio/vfio", rdlink(path));
	snprintf(path, sizeof(path), "/proc/self/fd/%d", i);
	ASSERT_STREQ("/dev/iommu", rdlink(path));
	ASSERT_EQ(0, close(g));
	ASSERT_EQ(0, close(c));
	ASSERT_EQ(0, close(i));
}

TEST(modules_and_their_parameters)
{
	machine();
	ASSERT_STREQ("0.3\n", cat("/sys/module/vfio/version"));
	ASSERT_STREQ("N\n", cat("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode"));
	ASSERT_STREQ("N\n", cat("/sys/module/vfio_pci/parameters/nointxmask"));
	ASSERT_STREQ("N\n", cat("/sys/module/vfio_pci/parameters/disable_idle_d3"));
	ASSERT_STREQ("N\n", cat("/sys/module/iommufd/parameters/allow_unsafe_interrupts"));
	ASSERT_STREQ("../../../../module/vfio_pci", rdlink(VFIO_DRV "/module"));
	/* A parameter without a store here: no write open. */
	ASSERT_ERRNO(EACCES, open("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode",
				  O_WRONLY));
}

TEST(driver_override_bind_and_unbind_move_functions)
{
	struct stat st;
	int fd;

	machine();
	ASSERT_STREQ("../../../bus/pci/drivers/uiommu-dma", rdlink(DEV("0000:08:00.1") "/driver"));
	ASSERT_ERRNO(ENOENT, lstat(DEV("0000:09:00.0") "/driver", &st));
	ASSERT_STREQ("0000:07:00.0 0000:08:00.0 bind module unbind", ls(VFIO_DRV));
	ASSERT_STREQ("(null)\n", cat(DEV("0000:09:00.0") "/driver_override"));

	/* vfio-pci matches only a function whose driver_override asks for it. */
	ASSERT_ERRNO(ENODEV, sysfs_store(VFIO_DRV "/bind", "0000:09:00.0"));
	ASSERT_EQ(0, sysfs_store(DEV("0000:09:00.0") "/driver_override", "vfio-pci\n"));
	ASSERT_STREQ("vfio-pci\n", cat(DEV("0000:09:00.0") "/driver_override"));
	ASSERT_ERRNO(ENODEV, sysfs_store(DMA_DRV "/bind", "0000:09:00.0"));
	ASSERT_EQ(0, sysfs_store(VFIO_DRV "/bind", "0000:09:00.0"));
	ASSERT_ERRNO(EBUSY, sysfs_store(VFIO_DRV "/bind", "0000:09:00.0"));
	ASSERT_ERRNO(ENODEV, sysfs_store(VFIO_DRV "/bind", "0000:99:00.0"));
	/* The lowest free index, its node and its dev file. */
	ASSERT_STREQ("vfio2", readdir_first_vfio(DEV("0000:09:00.0") "/vfio-dev"));
	ASSERT_STREQ("vfio0 vfio1 vfio2", ls("/dev/vfio/devices"));
	ASSERT_EQ(0, stat("/dev/vfio/devices/vfio2", &st));
	ASSERT_EQ(2u, minor(st.st_rdev));

	/* No unbind while VFIO has it open (the kernel would wait). */
	fd = open("/dev/vfio/devices/vfio2", O_RDWR);
	ASSERT_GE(fd, 0);
	ASSERT_ERRNO(EBUSY, sysfs_store(VFIO_DRV "/unbind", "0000:09:00.0"));
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, sysfs_store(VFIO_DRV "/unbind", "0000:09:00.0\n"));
	ASSERT_ERRNO(ENODEV, sysfs_store(VFIO_DRV "/unbind", "0000:09:00.0"));
	ASSERT_ERRNO(ENOENT, stat("/dev/vfio/devices/vfio2", &st));
	ASSERT_ERRNO(ENOENT, open("/dev/vfio/devices/vfio2", O_RDWR));
	ASSERT_ERRNO(ENOENT, stat(DEV("0000:09:00.0") "/vfio-dev", &st));

	/* Cleared, the override lets the DMA-API driver match again. */
	ASSERT_EQ(0, sysfs_store(DEV("0000:09:00.0") "/driver_override", "\n"));
	ASSERT_STREQ("(null)\n", cat(DEV("0000:09:00.0") "/driver_override"));
	ASSERT_EQ(0, sysfs_store(DMA_DRV "/bind", "0000:09:00.0"));
	/* vfio0 moved to the DMA-API driver frees index 0 for the next bind. */
	ASSERT_EQ(0, sysfs_store(VFIO_DRV "/unbind", "0000:07:00.0"));
	ASSERT_EQ(0, sysfs_store(DEV("0000:09:00.0") "/driver_override", "vfio-pci"));
	ASSERT_EQ(0, sysfs_store(DMA_DRV "/unbind", "0000:09:00.0"));
	ASSERT_EQ(0, sysfs_store(VFIO_DRV "/bind", "0000:09:00.0"));
	ASSERT_STREQ("vfio0", readdir_first_vfio(DEV("0000:09:00.0") "/vfio-dev"));
}

TEST_HARNESS_MAIN
