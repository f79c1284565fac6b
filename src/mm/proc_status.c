// SPDX-License-Identifier: MIT
/*
 * /proc/<pid>/status as a program under uiommu-run reads it: the real file, with the lines the
 * kernel's pinned-memory counters feed corrected for the pins uiommu holds.
 *
 * The kernel shows mm->pinned_vm as VmPin and counts mm->locked_vm (which RLIMIT_MODE = 1
 * charges) in VmLck. Our pins are not the host kernel's, so the host file shows neither: the
 * preload layer hands the opens of the calling process's own status file here, and the
 * library serves a copy of the real file whose VmPin and VmLck values are the host's plus
 * ours (mm/account.h), in the kernel's format ("VmPin:\t%8lu kB"). A host without a VmPin
 * line gets one where the kernel puts it, after VmLck. Every other line is the host's, so the
 * file stays the real one for every other reader.
 *
 * Claimed paths name the calling process itself: /proc/self/status, /proc/thread-self/status,
 * /proc/<getpid()>/status and the task/<tid>/status forms of the first and third; its counts
 * include the pins that processes serving it a context hold in its name (docs/processes.md).
 * So does /proc/<pid>/status of such a serving process, which shows that process's own pins
 * (asked over the wire, the hook that iommufd registers). Any other process's file is its own
 * business. The copy is a snapshot at open,
 * as the kernel's seq_file is at the first read; it is served through a read-only fd of a
 * memfd. Opens for writing, and other than plain opens (O_PATH, O_DIRECTORY, O_CREAT), go
 * to the real file, which answers them as the kernel does.
 *
 * The real file is reached with the openat system call, not through libc's open(): under the
 * preload layer that would come straight back here.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/compiler.h"
#include "lib/err.h"
#include "lib/fail.h"
#include "lib/sys.h"
#include "mm/mm.h"
#include "mm/proc_status.h"
#include "uiommu/uiommu.h"

static int proc_status_errno(int rc)
{
	errno = -rc;
	return -1;
}

static int proc_status_sys_open(const char *path, int flags, mode_t mode)
{
	return sys_openat(AT_FDCWD, path, flags, mode);
}

/* Skips a run of decimal digits; NULL if there is none. */
static const char *proc_status_skip_number(const char *s)
{
	const char *p = s;

	while (*p >= '0' && *p <= '9')
		p++;
	return p == s ? NULL : p;
}

UIOMMU_EXPORT bool uiommu_proc_status_claims(const char *path)
{
	const char *p, *pid_end;

	if (!path || strncmp(path, "/proc/", 6))
		return false;
	p = path + 6;
	if (!strcmp(p, "thread-self/status"))
		return true;
	if (!strncmp(p, "self/", 5)) {
		p += 5;
	} else {
		pid_end = proc_status_skip_number(p);
		if (!pid_end || *pid_end != '/')
			return false;
		/* Ours, or a process that serves us a context: its pins are known here. */
		if (strtol(p, NULL, 10) != getpid() &&
		    !uiommu_mm_remote_status((int)strtol(p, NULL, 10), NULL, NULL))
			return false;
		p = pid_end + 1;
	}
	if (!strncmp(p, "task/", 5)) {
		p = proc_status_skip_number(p + 5);
		if (!p || *p != '/')
			return false;
		p++;
	}
	return !strcmp(p, "status");
}

/* The process a claimed path names. */
static int proc_status_pid(const char *path)
{
	const char *p = path + 6;

	if (!strncmp(p, "self/", 5) || !strncmp(p, "thread-self/", 12))
		return getpid();
	return (int)strtol(p, NULL, 10);
}

/* Reads all of @fd into a new buffer (NUL-terminated); 0 or -errno. */
static int proc_status_read_all(int fd, char **out, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = uiommu_zalloc(cap), *grown;
	ssize_t got;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (cap - n < 2) {
			grown = uiommu_realloc_array(buf, cap * 2, 1);
			if (!grown) {
				uiommu_free(buf);
				return -ENOMEM;
			}
			buf = grown;
			cap *= 2;
		}
		got = read(fd, buf + n, cap - n - 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			int rc = -errno;

			uiommu_free(buf);
			return rc;
		}
		if (!got)
			break;
		n += (size_t)got;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

/* The value in kB of the line "@tag\t    N kB" that starts at @line, or 0. */
static uint64_t proc_status_line_kb(const char *line, const char *tag)
{
	size_t taglen = strlen(tag);

	if (strncmp(line, tag, taglen))
		return 0;
	return strtoull(line + taglen, NULL, 10);
}

static bool proc_status_line_is(const char *line, const char *tag)
{
	return !strncmp(line, tag, strlen(tag));
}

void proc_status_rewrite(FILE *f, const char *in, uint64_t pinned_kb, uint64_t locked_kb)
{
	bool has_pin = strstr(in, "\nVmPin:") != NULL;
	const char *line = in, *next;

	for (; *line; line = next) {
		next = strchr(line, '\n');
		next = next ? next + 1 : line + strlen(line);
		if (proc_status_line_is(line, "VmLck:")) {
			fprintf(f, "VmLck:\t%8" PRIu64 " kB\n",
				proc_status_line_kb(line, "VmLck:") + locked_kb);
			if (!has_pin)
				fprintf(f, "VmPin:\t%8" PRIu64 " kB\n", pinned_kb);
		} else if (proc_status_line_is(line, "VmPin:")) {
			fprintf(f, "VmPin:\t%8" PRIu64 " kB\n",
				proc_status_line_kb(line, "VmPin:") + pinned_kb);
		} else {
			fwrite(line, 1, (size_t)(next - line), f);
		}
	}
}

/* The corrected copy of the real file at @path, as a read-only fd opened with @flags. */
static int proc_status_serve(const char *path, int flags)
{
	uint64_t pinned_vm, locked_vm, kb_per_page = uiommu_page_size / 1024;
	uint64_t remote_pinned, remote_locked;
	int pid;
	char *real = NULL, *copy = NULL, memfd_path[64];
	size_t real_len, copy_len;
	int real_fd, memfd, fd, rc;
	FILE *out;

	real_fd = proc_status_sys_open(path, O_RDONLY | O_CLOEXEC, 0);
	if (real_fd < 0)
		return -errno;
	rc = proc_status_read_all(real_fd, &real, &real_len);
	close(real_fd);
	if (rc)
		return rc;

	/*
	 * Ours counted after the host's, so a reader never sees less than it pinned: our own mm's,
	 * plus what the processes serving us hold for us; or, for such a process's file, its own.
	 */
	pid = proc_status_pid(path);
	if (pid == getpid()) {
		uiommu_mm_self_vm(&pinned_vm, &locked_vm);
		uiommu_mm_remote_status(pid, &remote_pinned, &remote_locked);
		pinned_vm += remote_pinned;
		locked_vm += remote_locked;
	} else {
		uiommu_mm_remote_status(pid, &pinned_vm, &locked_vm);
	}
	rc = -ENOMEM;
	out = uiommu_should_fail() ? NULL : open_memstream(&copy, &copy_len);
	if (!out)
		goto out_free_real;
	proc_status_rewrite(out, real, pinned_vm * kb_per_page, locked_vm * kb_per_page);
	if (fclose(out))
		goto out_free_copy;

	memfd = uiommu_should_fail() ? -1 : memfd_create("status", MFD_CLOEXEC);
	if (memfd < 0)
		goto out_free_copy;
	if (write(memfd, copy, copy_len) != (ssize_t)copy_len) {
		rc = -EIO;
		goto out_close_memfd;
	}
	/* Reopened read-only, so a write fails with EBADF as on the kernel's file. */
	snprintf(memfd_path, sizeof(memfd_path), "/proc/self/fd/%d", memfd);
	fd = proc_status_sys_open(memfd_path, O_RDONLY | (flags & (O_CLOEXEC | O_NONBLOCK)), 0);
	rc = fd < 0 ? -errno : fd;
out_close_memfd:
	close(memfd);
out_free_copy:
	free(copy); /* open_memstream's buffer is libc's */
out_free_real:
	uiommu_free(real);
	return rc;
}

UIOMMU_EXPORT int uiommu_proc_status_open(const char *path, int flags)
{
	int rc;

	/* Anything but a plain read goes to the real file, which answers it as the kernel does. */
	if ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC | O_PATH | O_DIRECTORY)))
		return proc_status_sys_open(path, flags, 0);
	rc = proc_status_serve(path, flags);
	return rc < 0 ? proc_status_errno(rc) : rc;
}

UIOMMU_EXPORT FILE *uiommu_proc_status_fopen(const char *path, const char *mode)
{
	int flags = strchr(mode, 'e') ? O_CLOEXEC : 0, fd;
	FILE *f;

	if (mode[0] == 'r')
		flags |= strchr(mode, '+') ? O_RDWR : O_RDONLY;
	else if (mode[0] == 'w')
		flags |= (strchr(mode, '+') ? O_RDWR : O_WRONLY) | O_CREAT | O_TRUNC;
	else if (mode[0] == 'a')
		flags |= (strchr(mode, '+') ? O_RDWR : O_WRONLY) | O_CREAT | O_APPEND;
	else
		return errno = EINVAL, NULL;
	fd = uiommu_proc_status_open(path, flags);
	if (fd < 0)
		return NULL;
	f = fdopen(fd, mode);
	if (!f) {
		int err = errno;

		close(fd);
		errno = err;
	}
	return f;
}
