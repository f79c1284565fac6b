// SPDX-License-Identifier: MIT
/*
 * Stores to the virtual sysfs by every kind of writer, under uiommu-run: a program exec'd with
 * a shell's redirection already in place (bash opens `> type`, then execs /bin/echo), coreutils'
 * printf, dd and tee, a stdio writer (fprintf + fclose, fdopen), an fd opened by this program
 * and written by another image after exec, bytes that bypass write() in the exec'd image.
 * Each store must take effect, and a refused one must reach the writer as the kernel's errno
 * (EINVAL: "echo: write error: Invalid argument") wherever the writer has a call to fail.
 *
 * Group 6 of the default topology is the subject (DMA-FQ, no driver bound: every type is
 * allowed, "bogus" is EINVAL). The cases share this program's session, so each one first
 * stores the type it starts from. The program re-executes itself (/proc/self/exe --writer ...)
 * to be the other image.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "uiommu/uiommu.h"

#define TYPE "/sys/kernel/iommu_groups/6/type"

/* The group's type as a reader sees it ("" on error). */
static const char *type_now(void)
{
	static char buf[64];
	int fd = open(TYPE, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	buf[n > 0 ? n : 0] = '\0';
	if (fd >= 0)
		close(fd);
	return buf;
}

/* A store through write(): the byte count, or -1 with errno. */
static ssize_t store(const char *value)
{
	int fd = open(TYPE, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, value, strlen(value));
	close(fd);
	return n;
}

static char out[4096]; /* what the last run() printed, stdout and stderr */

/*
 * Runs @argv (NULL-terminated) with stdout and stderr into out[]; returns its exit status, or
 * 128 + the signal that killed it, -1 if it could not run.
 */
static int run_argv(char *const argv[])
{
	size_t len = 0;
	int p[2], status;
	pid_t pid;
	ssize_t n;

	out[0] = '\0';
	if (pipe2(p, O_CLOEXEC))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		dup2(p[1], 1);
		dup2(p[1], 2);
		execv(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	while ((n = read(p[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(p[0]);
	if (waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* bash -c @cmd. */
static int run(const char *cmd)
{
	char *argv[] = { "/bin/bash", "-c", (char *)cmd, NULL };

	return run_argv(argv);
}

static void setup(void)
{
	setenv("UIOMMU_SYSFS_PRIVILEGED", "1", 1);
	if (store("DMA\n") != 4)
		abort();
}

TEST(echo_exec_after_the_shells_redirection_stores)
{
	setup();
	ASSERT_EQ(0, run("/bin/echo DMA-FQ > " TYPE));
	ASSERT_STREQ("", out);
	ASSERT_STREQ("DMA-FQ\n", type_now());
	/* A shell that forks first (a command list) and the exec'd echo's stdout alike. */
	ASSERT_EQ(0, run("/bin/echo identity > " TYPE "; true"));
	ASSERT_STREQ("identity\n", type_now());
}

TEST(echo_exec_after_the_shells_redirection_fails_with_einval)
{
	setup();
	ASSERT_EQ(1, run("/bin/echo bogus > " TYPE));
	ASSERT_TRUE(strstr(out, "echo: write error: Invalid argument\n") != NULL);
	ASSERT_STREQ("DMA\n", type_now());
}

TEST(bash_builtin_echo)
{
	setup();
	/* A command list: bash redirects its own stdout around the builtin, then restores it. */
	ASSERT_EQ(0, run("echo DMA-FQ > " TYPE "; echo done"));
	ASSERT_STREQ("done\n", out);
	ASSERT_STREQ("DMA-FQ\n", type_now());
	ASSERT_EQ(1, run("echo bogus > " TYPE "; r=$?; echo after; exit $r"));
	ASSERT_STREQ("/bin/bash: line 1: echo: write error: Invalid argument\nafter\n", out);
	ASSERT_STREQ("DMA-FQ\n", type_now());
	/* An attribute held open on fd 3 and written by builtins through >&3. */
	ASSERT_EQ(0, run("exec 3> " TYPE "; echo identity >&3; echo bogus >&3; echo $?"));
	ASSERT_TRUE(strstr(out, "echo: write error: Invalid argument\n1\n") != NULL);
	ASSERT_STREQ("identity\n", type_now());
}

TEST(printf_builtin_and_coreutils)
{
	setup();
	/* bash's own printf: bash's stdout is a stream of ours while fd 1 is the attribute. */
	ASSERT_EQ(0, run("printf identity > " TYPE));
	ASSERT_STREQ("identity\n", type_now());
	ASSERT_EQ(1, run("printf bogus > " TYPE "; r=$?; echo after; exit $r"));
	ASSERT_STREQ("/bin/bash: line 1: printf: write error: Invalid argument\nafter\n", out);
	ASSERT_STREQ("identity\n", type_now());
	/* coreutils' printf, exec'd: the errno at its fclose(stdout). */
	ASSERT_EQ(0, run("/usr/bin/printf DMA-FQ > " TYPE));
	ASSERT_STREQ("DMA-FQ\n", type_now());
	ASSERT_EQ(1, run("/usr/bin/printf bogus > " TYPE));
	ASSERT_TRUE(strstr(out, "printf: write error: Invalid argument\n") != NULL);
	ASSERT_STREQ("DMA-FQ\n", type_now());
}

TEST(dd_and_tee)
{
	setup();
	ASSERT_EQ(0, run("printf identity | dd of=" TYPE " status=none"));
	ASSERT_STREQ("identity\n", type_now());
	ASSERT_EQ(1, run("printf bogus | dd of=" TYPE " status=none"));
	ASSERT_TRUE(strstr(out, "dd: error writing '" TYPE "': Invalid argument\n") != NULL);
	ASSERT_STREQ("identity\n", type_now());
	ASSERT_EQ(0, run("echo DMA-FQ | tee " TYPE " > /dev/null"));
	ASSERT_STREQ("DMA-FQ\n", type_now());
	ASSERT_EQ(1, run("echo bogus | tee " TYPE " > /dev/null"));
	ASSERT_TRUE(strstr(out, "tee: " TYPE ": Invalid argument\n") != NULL);
	ASSERT_STREQ("DMA-FQ\n", type_now());
}

TEST(stdio_writer_reports_einval_at_fclose)
{
	FILE *f;
	int fd;

	setup();
	f = fopen(TYPE, "w");
	ASSERT_TRUE(f != NULL);
	ASSERT_EQ(6, fprintf(f, "bogus\n"));
	errno = 0;
	ASSERT_EQ(EOF, fclose(f));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_STREQ("DMA\n", type_now());
	f = fopen(TYPE, "w");
	ASSERT_TRUE(f != NULL);
	ASSERT_EQ(9, fprintf(f, "identity\n"));
	ASSERT_EQ(0, fclose(f));
	ASSERT_STREQ("identity\n", type_now());

	/* fdopen() of an fd opened for writing: the same stream, and fileno() is the fd. */
	fd = open(TYPE, O_WRONLY | O_CLOEXEC);
	ASSERT_GE(fd, 0);
	f = fdopen(fd, "w");
	ASSERT_TRUE(f != NULL);
	ASSERT_EQ(fd, fileno(f));
	ASSERT_EQ(6, fprintf(f, "bogus\n"));
	errno = 0;
	ASSERT_EQ(EOF, fflush(f));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(7, fprintf(f, "DMA-FQ\n"));
	ASSERT_EQ(0, fclose(f));
	ASSERT_STREQ("DMA-FQ\n", type_now());
	ASSERT_ERRNO(EBADF, fcntl(fd, F_GETFD)); /* fclose closed the fd */
}

/* Runs this program as "--writer @how @fd @value" (another image, after exec). */
static int writer(const char *how, int fd, const char *value)
{
	char fdstr[16];
	char *argv[] = { "/proc/self/exe", "--writer", (char *)how, fdstr, (char *)value, NULL };

	snprintf(fdstr, sizeof(fdstr), "%d", fd);
	return run_argv(argv);
}

TEST(store_by_a_process_that_execd_after_the_open)
{
	int fd;

	setup();
	fd = open(TYPE, O_WRONLY); /* inherited across exec */
	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, writer("write", fd, "identity"));
	ASSERT_STREQ("identity\n", type_now());
	ASSERT_EQ(EINVAL, writer("write", fd, "bogus"));
	ASSERT_STREQ("identity\n", type_now());
	/* stdout of the exec'd image on the fd: stdio's errno, and fileno(stdout) is still 1. */
	ASSERT_EQ(0, writer("stdout", fd, "DMA-FQ"));
	ASSERT_STREQ("DMA-FQ\n", type_now());
	ASSERT_EQ(EINVAL, writer("stdout", fd, "bogus"));
	ASSERT_STREQ("DMA-FQ\n", type_now());
	/* stderr likewise, unbuffered: the fprintf() itself fails. */
	ASSERT_EQ(0, writer("stderr", fd, "identity"));
	ASSERT_STREQ("identity\n", type_now());
	ASSERT_EQ(EINVAL, writer("stderr", fd, "bogus"));
	ASSERT_STREQ("identity\n", type_now());
	ASSERT_EQ(0, close(fd));
	ASSERT_STREQ("identity\n", type_now());
}

TEST(bytes_that_bypass_write_after_exec_are_stored_once)
{
	int fd;

	setup();
	fd = open(TYPE, O_WRONLY);
	ASSERT_GE(fd, 0);
	/* The other image writes with a raw system call and exits: its exit handler stores. */
	ASSERT_EQ(0, writer("raw", fd, "identity"));
	/* Seen by another process (a read here would look at the memfd too: not yet). */
	ASSERT_EQ(0, fcntl(fd, F_SETFD, FD_CLOEXEC));
	ASSERT_EQ(0, run("cat " TYPE));
	ASSERT_STREQ("identity\n", out);
	/* Another store in between; this process's close must not store "identity" again. */
	ASSERT_EQ(7, store("DMA-FQ\n"));
	ASSERT_EQ(0, close(fd));
	ASSERT_STREQ("DMA-FQ\n", type_now());
}

TEST(read_write_fd_inherited_does_not_store_its_content)
{
	setup();
	/* fd 3 reads "DMA\n" (never written); /bin/true inherits it and exits. */
	ASSERT_EQ(0, run("exec 3<> " TYPE "; /bin/echo identity > " TYPE "; /bin/true; "
			 "read t <&3; echo $t; exec 3>&-"));
	ASSERT_STREQ("DMA\n", out);
	ASSERT_STREQ("identity\n", type_now());
}

/* A fail-nth sweep starts with the hook (or the case skips), type DMA and an fd to store to. */
#define SWEEP_BEGIN(fd)                                                                   \
	do {                                                                              \
		if (!uiommu_fail_nth_available())                                         \
			SKIP("no fault-injection hook in this build");                    \
		setup();                                                                  \
		fd = open(TYPE, O_WRONLY | O_CLOEXEC);                                    \
		ASSERT_GE(fd, 0);                                                         \
	} while (0)

TEST(adopt_fail_nth)
{
	unsigned long n;
	FILE *orig = stdout;
	int fd;

	SWEEP_BEGIN(fd);
	ASSERT_EQ(1, dup2(fd, 1));
	/* fd 1 as an exec'd image finds it: an attribute's memfd the library does not track. */
	uiommu_sysfs_fd_forget(1);
	for (n = 1;; n++) {
		bool failed;

		ASSERT_FALSE(uiommu_sysfs_is_fd(1));
		uiommu_fail_nth_arm(n);
		uiommu_sysfs_adopt();
		failed = uiommu_fail_nth_disarm() == 0;
		if (!failed) {
			/* Every step ran: the fd is tracked and stdout is the store's stream. */
			ASSERT_TRUE(uiommu_sysfs_is_fd(1));
			ASSERT_TRUE(stdout != orig);
			ASSERT_EQ(1, fileno(stdout));
			ASSERT_EQ(9, fprintf(stdout, "identity\n"));
			ASSERT_EQ(0, fflush(stdout));
			ASSERT_STREQ("identity\n", type_now());
			break;
		}
		/* A failure leaves the fd untracked, or tracked with the old stream. */
		ASSERT_TRUE(stdout == orig);
		uiommu_sysfs_fd_forget(1);
	}
	ASSERT_GT(n, 1);
	stdout = orig;
}

TEST(fdopen_fail_nth)
{
	unsigned long n;
	FILE *f;
	int fd;

	SWEEP_BEGIN(fd);
	for (n = 1;; n++) {
		uiommu_fail_nth_arm(n);
		f = fdopen(fd, "w");
		if (uiommu_fail_nth_disarm()) {
			ASSERT_TRUE(f != NULL);
			break;
		}
		ASSERT_TRUE(f == NULL);
		ASSERT_EQ(ENOMEM, errno);
		ASSERT_TRUE(uiommu_sysfs_is_fd(fd)); /* the fd stays the caller's */
	}
	ASSERT_EQ(9, fprintf(f, "identity\n"));
	ASSERT_EQ(0, fclose(f));
	ASSERT_STREQ("identity\n", type_now());
}

TEST(bypassed_bytes_fail_nth)
{
	unsigned long n;
	int fd;

	SWEEP_BEGIN(fd);
	ASSERT_EQ(0, close(fd));
	for (n = 1;; n++) {
		bool failed;

		ASSERT_EQ(4, store("DMA\n"));
		fd = open(TYPE, O_WRONLY | O_CLOEXEC);
		ASSERT_GE(fd, 0);
		ASSERT_EQ(9, syscall(SYS_write, fd, "identity\n", 9)); /* around the wrapper */
		uiommu_fail_nth_arm(n);
		ASSERT_EQ(0, close(fd));
		failed = uiommu_fail_nth_disarm() == 0;
		/* The first step is the lock against other processes: the store goes on without. */
		if (n == 1)
			ASSERT_TRUE(failed);
		if (!failed || n == 1) {
			ASSERT_STREQ("identity\n", type_now());
		} else {
			/* A later step of the store failed: no errno to give, the type is either. */
			const char *t = type_now();

			ASSERT_TRUE(!strcmp(t, "identity\n") || !strcmp(t, "DMA\n"));
		}
		if (!failed)
			break;
	}
	ASSERT_GT(n, 1);
}

/*
 * The other image: "--writer write FD VALUE" write()s VALUE to FD; "raw" writes it with a raw
 * system call (around the preload layer); "stdout" and "stderr" put FD there and exec this
 * program again ("stdout2", "stderr2"), which prints VALUE with stdio, as a program a shell
 * started with `> attribute` (or `2>`) does. Exits 0, the errno of the failed call, or 100
 * for a wrong fileno().
 */
static int writer_main(char **argv)
{
	const char *how = argv[2], *value = argv[4];
	int fd = atoi(argv[3]), std = strncmp(how, "stdout", 6) ? 2 : 1;
	size_t len = strlen(value);
	FILE *f = std == 1 ? stdout : stderr;

	if (!strcmp(how, "write"))
		return write(fd, value, len) == (ssize_t)len ? 0 : errno;
	if (!strcmp(how, "raw"))
		return syscall(SYS_write, fd, value, len) == (long)len ? 0 : errno;
	if (!strcmp(how, "stdout") || !strcmp(how, "stderr")) {
		char next[8];
		char *args[] = { argv[0], "--writer", next, argv[3], (char *)value, NULL };

		snprintf(next, sizeof(next), "%s2", how);
		if (dup2(fd, std) != std)
			return errno;
		execv("/proc/self/exe", args);
		return errno;
	}
	if (fileno(f) != std)
		return 100;
	if (fprintf(f, "%s\n", value) < 0)
		return errno;
	return fclose(f) ? errno : 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "--writer"))
		return writer_main(argv);
	return __h_run_all(argc, argv);
}
