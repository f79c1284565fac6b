// SPDX-License-Identifier: MIT
/*
 * test_uaccess: the fault trap of user accesses (src/mm/mm_self.c) against the program's own
 * signal handling.
 *
 * A bad pointer handed to uiommu must give EFAULT, and the program's own SIGSEGV/SIGBUS must
 * behave exactly as they would without uiommu, whatever the program did with those signals:
 * blocked them (QEMU's threads), ignored them, installed handlers (SA_SIGINFO or not,
 * SA_RESETHAND, a sa_mask), or faulted inside a handler of another signal that ran while one of
 * our accesses was armed. Every case needs a process whose dispositions were set before uiommu's
 * first access, so each runs in the harness's fresh child; the cases whose program must die
 * fork once more and check how the grandchild ended.
 *
 * The nested case is made deterministic with userfaultfd: the armed copy reads a page that is
 * missing, the fault handler thread then knows the copy is in flight and sends the signal whose
 * handler faults by itself, and only resolves the page once that handler has finished.
 */
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "harness.h"
#include "uiommu/iommufd.h"
#include "uiommu/uiommu.h"

static long page_size;
static char *noaccess;                    /* a PROT_NONE page: every touch faults */
static volatile sig_atomic_t own_faults;  /* calls of the program's handler */
static void *volatile own_fault_addr;     /* si_addr its last call saw */
static volatile sig_atomic_t own_blocked; /* SIGSEGV, SIGUSR2 blocked inside the handler */

static void map_noaccess(void)
{
	page_size = sysconf(_SC_PAGESIZE);
	noaccess = mmap(NULL, (size_t)page_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (noaccess == MAP_FAILED)
		abort();
}

/* IOMMU_IOAS_ALLOC from @arg: the library's answer. */
static int ioas_alloc_at(void *arg)
{
	int fd = uiommu_open(O_CLOEXEC), rc, err;

	if (fd < 0)
		return -2;
	rc = uiommu_ioctl(fd, IOMMU_IOAS_ALLOC, arg);
	err = errno;
	uiommu_close(fd);
	errno = err;
	return rc;
}

/* The program's own fault: touch the PROT_NONE page. */
static void own_fault(void)
{
	*(volatile char *)noaccess = 1;
}

/* Forks; the child runs @fn and exits 0. Returns the wait status. */
static int run_child(void (*fn)(void))
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		alarm(20); /* a spin on the fault ends as SIGALRM, which the caller rejects */
		fn();
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	return status;
}

static void handler_fix(int sig, siginfo_t *info, void *uc)
{
	sigset_t now;

	(void)uc;
	own_faults++;
	own_fault_addr = info->si_addr;
	pthread_sigmask(SIG_BLOCK, NULL, &now);
	own_blocked = sigismember(&now, sig) && sigismember(&now, SIGUSR2);
	/* Make the access valid: returning runs it again, now successfully. */
	mprotect(noaccess, (size_t)page_size, PROT_READ | PROT_WRITE);
}

static void handler_plain(int sig)
{
	(void)sig;
	own_faults++;
	mprotect(noaccess, (size_t)page_size, PROT_READ | PROT_WRITE);
}

/* A thread that blocks SIGSEGV and SIGBUS gets EFAULT, and its mask is left as it was. */
static void *blocked_thread(void *arg)
{
	sigset_t set, after;
	intptr_t ok;

	(void)arg;
	sigemptyset(&set);
	sigaddset(&set, SIGSEGV);
	sigaddset(&set, SIGBUS);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	ok = ioas_alloc_at(noaccess) == -1 && errno == EFAULT;
	pthread_sigmask(SIG_BLOCK, NULL, &after);
	ok = ok && sigismember(&after, SIGSEGV) && sigismember(&after, SIGBUS);
	return (void *)ok;
}

TEST(blocked_mask_gives_efault)
{
	pthread_t t;
	void *ok;

	map_noaccess();
	ASSERT_EQ(0, pthread_create(&t, NULL, blocked_thread, NULL));
	ASSERT_EQ(0, pthread_join(t, &ok));
	ASSERT_TRUE(ok != NULL);
	/* The whole process blocking them: the same. */
	ASSERT_TRUE(blocked_thread(NULL) != NULL);
}

/* Only SIGBUS blocked: it stays blocked, SIGSEGV stays unblocked. */
TEST(blocked_mask_restores_exactly)
{
	sigset_t set, after;

	map_noaccess();
	sigemptyset(&set);
	sigaddset(&set, SIGBUS);
	ASSERT_EQ(0, pthread_sigmask(SIG_SETMASK, &set, NULL));
	ASSERT_ERRNO(EFAULT, ioas_alloc_at(noaccess));
	ASSERT_EQ(0, pthread_sigmask(SIG_BLOCK, NULL, &after));
	ASSERT_TRUE(sigismember(&after, SIGBUS));
	ASSERT_FALSE(sigismember(&after, SIGSEGV));
}

static void ignored_then_fault(void)
{
	signal(SIGSEGV, SIG_IGN);
	/* The trap is installed now, over the ignored disposition. */
	if (ioas_alloc_at(noaccess) != -1 || errno != EFAULT)
		_exit(3);
	own_fault();
	_exit(4); /* the kernel never lets a fault be ignored */
}

TEST(sig_ign_program_dies_of_its_own_fault)
{
	int status;

	map_noaccess();
	status = run_child(ignored_then_fault);
	ASSERT_TRUE(WIFSIGNALED(status));
	ASSERT_EQ(SIGSEGV, WTERMSIG(status));
}

static void default_then_fault(void)
{
	signal(SIGSEGV, SIG_DFL); /* a sanitizer's runtime may have installed its own */
	if (ioas_alloc_at(noaccess) != -1 || errno != EFAULT)
		_exit(3);
	own_fault();
	_exit(4);
}

TEST(sig_dfl_program_dies_of_its_own_fault)
{
	int status;

	map_noaccess();
	status = run_child(default_then_fault);
	ASSERT_TRUE(WIFSIGNALED(status));
	ASSERT_EQ(SIGSEGV, WTERMSIG(status));
}

/* kill(SIGSEGV) of an ignoring program is dropped, as without uiommu. */
static void ignored_then_killed(void)
{
	signal(SIGSEGV, SIG_IGN);
	if (ioas_alloc_at(noaccess) != -1 || errno != EFAULT)
		_exit(3);
	raise(SIGSEGV);
	_exit(0);
}

TEST(sig_ign_program_survives_sent_sigsegv)
{
	int status;

	map_noaccess();
	status = run_child(ignored_then_killed);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
}

static void install(void (*fn)(int, siginfo_t *, void *), int flags)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = fn;
	sa.sa_flags = SA_SIGINFO | flags;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR2);
	if (sigaction(SIGSEGV, &sa, NULL))
		abort();
}

TEST(own_siginfo_handler_sees_its_own_faults)
{
	sigset_t now;

	map_noaccess();
	install(handler_fix, 0);
	/* uiommu's first access installs the trap over the program's handler. */
	ASSERT_ERRNO(EFAULT, ioas_alloc_at(noaccess));
	ASSERT_EQ(0, own_faults);
	own_fault();
	ASSERT_EQ(1, own_faults);
	ASSERT_TRUE(own_fault_addr == noaccess);
	ASSERT_TRUE(own_blocked); /* the signal and its sa_mask, as the kernel blocks them */
	ASSERT_EQ(0, pthread_sigmask(SIG_BLOCK, NULL, &now));
	ASSERT_FALSE(sigismember(&now, SIGSEGV)); /* and unblocked again on return */
	ASSERT_FALSE(sigismember(&now, SIGUSR2));
	/* Still the trap's for uiommu's accesses. */
	ASSERT_EQ(0, mprotect(noaccess, (size_t)page_size, PROT_NONE));
	ASSERT_ERRNO(EFAULT, ioas_alloc_at(noaccess));
	ASSERT_EQ(1, own_faults);
}

TEST(own_plain_handler_sees_its_own_faults)
{
	struct sigaction sa;

	map_noaccess();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler_plain;
	sigemptyset(&sa.sa_mask);
	ASSERT_EQ(0, sigaction(SIGSEGV, &sa, NULL));
	ASSERT_ERRNO(EFAULT, ioas_alloc_at(noaccess));
	own_fault();
	ASSERT_EQ(1, own_faults);
}

/* SA_RESETHAND: the first fault reaches the handler, the second is fatal. */
static void resethand_twice(void)
{
	install(handler_fix, SA_RESETHAND);
	if (ioas_alloc_at(noaccess) != -1 || errno != EFAULT)
		_exit(3);
	own_fault();
	if (own_faults != 1)
		_exit(5);
	mprotect(noaccess, (size_t)page_size, PROT_NONE);
	/* uiommu still answers EFAULT after the program's handler was reset. */
	if (ioas_alloc_at(noaccess) != -1 || errno != EFAULT)
		_exit(6);
	own_fault();
	_exit(4);
}

TEST(own_resethand_handler_fires_once)
{
	int status;

	map_noaccess();
	status = run_child(resethand_twice);
	ASSERT_TRUE(WIFSIGNALED(status));
	ASSERT_EQ(SIGSEGV, WTERMSIG(status));
}

/* ---- a fault in the program's own signal handler while an access is armed ---------------- */

static int uffd = -1;
static char *uffd_page;
static sem_t usr1_done;
static volatile sig_atomic_t usr1_ran;
static pid_t main_tid;

static void usr1_handler(int sig)
{
	(void)sig;
	own_fault(); /* handler_fix makes it valid and returns */
	usr1_ran = 1;
	sem_post(&usr1_done);
}

static void *uffd_thread(void *arg)
{
	struct uffdio_copy copy;
	struct uffd_msg msg;
	char *src = arg;
	ssize_t n;

	/* The first fault: the main thread is inside uiommu's armed copy of the page. */
	n = read(uffd, &msg, sizeof(msg));
	if (n != sizeof(msg) || msg.event != UFFD_EVENT_PAGEFAULT)
		return NULL;
	syscall(SYS_tgkill, (long)getpid(), (long)main_tid, (long)SIGUSR1);
	while (sem_wait(&usr1_done) && errno == EINTR)
		;
	memset(&copy, 0, sizeof(copy));
	copy.dst = (uintptr_t)uffd_page;
	copy.src = (uintptr_t)src;
	copy.len = (uint64_t)page_size;
	if (ioctl(uffd, UFFDIO_COPY, &copy) && errno != EEXIST)
		return NULL;
	return arg;
}

TEST(fault_in_own_handler_while_armed)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg;
	struct iommu_ioas_alloc cmd = { .size = sizeof(cmd) };
	struct sigaction sa;
	sigset_t now;
	pthread_t t;
	void *ok;
	char *src;
	int fd;

#if defined(__SANITIZE_THREAD__)
	/* No trap there: process_vm_readv() does the copy, and a kernel access to a user-mode-only
	 * userfaultfd range is EFAULT. */
	SKIP("ThreadSanitizer builds copy with process_vm_readv()");
#endif
	map_noaccess();
	uffd = (int)syscall(SYS_userfaultfd, (long)(O_CLOEXEC | UFFD_USER_MODE_ONLY));
	if (uffd < 0)
		SKIP("userfaultfd: %s", strerror(errno));
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_API, &api));
	uffd_page = mmap(NULL, (size_t)page_size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(uffd_page != MAP_FAILED);
	reg.range.start = (uintptr_t)uffd_page;
	reg.range.len = (uint64_t)page_size;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	ASSERT_EQ(0, ioctl(uffd, UFFDIO_REGISTER, &reg));
	src = aligned_alloc((size_t)page_size, (size_t)page_size);
	ASSERT_TRUE(src != NULL);
	memcpy(src, &cmd, sizeof(cmd));

	install(handler_fix, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = usr1_handler;
	sigemptyset(&sa.sa_mask);
	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
	ASSERT_EQ(0, sem_init(&usr1_done, 0, 0));
	main_tid = (pid_t)syscall(SYS_gettid);
	fd = uiommu_open(O_CLOEXEC);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, pthread_create(&t, NULL, uffd_thread, src));

	/* The copy of the size word faults on the missing page; the signal comes meanwhile. */
	ASSERT_EQ(0, uiommu_ioctl(fd, IOMMU_IOAS_ALLOC, uffd_page));
	ASSERT_EQ(0, pthread_join(t, &ok));
	ASSERT_TRUE(ok != NULL);
	ASSERT_TRUE(usr1_ran);
	ASSERT_EQ(1, own_faults); /* the handler's own fault went to the program's handler */
	ASSERT_TRUE(own_fault_addr == noaccess);
	ASSERT_NE(0, ((struct iommu_ioas_alloc *)uffd_page)->out_ioas_id);
	ASSERT_EQ(0, pthread_sigmask(SIG_BLOCK, NULL, &now));
	ASSERT_FALSE(sigismember(&now, SIGUSR1));
	ASSERT_FALSE(sigismember(&now, SIGSEGV));
	ASSERT_EQ(0, uiommu_close(fd));
}

TEST_HARNESS_MAIN
