// SPDX-License-Identifier: MIT
/*
 * The user's locked_vm is one count across the user's processes (src/mm/locked_vm.c), as the
 * kernel's user_struct::locked_vm: pins in the USER accounting mode made by two processes are
 * limited together by the charging process's RLIMIT_MEMLOCK; a process killed with its pins
 * gives them back to the next charge; a forked child brings the charges it inherited; the
 * next server of an exec hand-over takes the exec'ing image's charges into a slot of its own;
 * where the shared file cannot be had, each process counts alone (the library's old
 * behaviour). This program run as "--child ROLE ..." is the new image of an exec.
 *
 * Every case lowers RLIMIT_MEMLOCK to LIMIT pages and drops CAP_IPC_LOCK, so its MAPs (with a
 * mock domain attached: pinned at once) are charged. The harness points $UIOMMU_LOCKED_VM_DIR
 * at a directory private to this program; the cases that need another set their own. Other
 * processes ("chargers") are forked and driven over pipes: each step answers on the pipe
 * before the case goes on, so no case waits by sleeping.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "fd_pass.h"
#include "iommufd_utils.h"
#include "memlock_utils.h"
#include "mm/locked_vm.h"

#define LIMIT 16ull        /* RLIMIT_MEMLOCK in pages during each case */
#define IOVA (1ull << 24)  /* inside the selftest mock's aperture */

/* A context whose IOAS has a mock domain: a MAP pins, and so charges, at once. */
struct pinner {
	int fd;
	uint32_t ioas;
};

static int pinner_open(struct pinner *p)
{
	p->fd = uiommu_open(O_CLOEXEC);
	if (p->fd < 0)
		return -1;
	p->ioas = ioas_alloc(p->fd);
	return mock_domain(p->fd, p->ioas, NULL, NULL, NULL);
}

/* Pins @npages more pages after the @at pages already pinned: 0 or -1 with errno. */
static int pinner_map(struct pinner *p, uint64_t at, uint64_t npages)
{
	return map_fixed(p->fd, p->ioas, IOVA + at * PS, buf + at * PS, npages * PS);
}

static uint64_t user_total(void)
{
	uint64_t total = UINT64_MAX;

	if (uiommu_locked_vm_total(getuid(), &total))
		return UINT64_MAX;
	return total;
}

/* This process's own count for its user (uiommu_stats_get()'s user_locked_vm). */
static uint64_t own_count(void)
{
	struct uiommu_stats st;

	uiommu_stats_get(&st);
	return st.user_locked_vm;
}

/*
 * Another process pinning for the same user. It pins @npages at start and answers 0 or the
 * errno on @ans; then each byte the case sends is a command: 'u' unmaps everything and
 * answers, 'm' maps one more page and answers; end of file exits.
 */
struct charger {
	pid_t pid;
	int cmd, ans;
};

static void charger_serve(uint64_t npages, int cmd, int ans)
{
	struct pinner p;
	uint64_t pinned = 0;
	char c, r;

	r = pinner_open(&p) ? (char)errno : 0;
	if (!r) {
		r = pinner_map(&p, 0, npages) ? (char)errno : 0;
		pinned = r ? 0 : npages;
	}
	if (write(ans, &r, 1) != 1)
		_exit(1);
	while (read(cmd, &c, 1) == 1) {
		if (c == 'u') {
			r = pinned && unmap(p.fd, p.ioas, IOVA, pinned * PS) ? (char)errno : 0;
			pinned = 0;
		} else {
			r = pinner_map(&p, pinned, 1) ? (char)errno : 0;
			pinned += !r;
		}
		if (write(ans, &r, 1) != 1)
			_exit(1);
	}
	_exit(0);
}

/* Starts a charger pinning @npages: its first answer (0 or an errno), or -1. */
static int charger_start(struct charger *ch, uint64_t npages)
{
	int to[2], from[2];
	char r;

	if (pipe2(to, O_CLOEXEC) || pipe2(from, O_CLOEXEC))
		return -1;
	fflush(NULL);
	ch->pid = fork();
	if (ch->pid < 0)
		return -1;
	if (!ch->pid) {
		close(to[1]);
		close(from[0]);
		charger_serve(npages, to[0], from[1]);
	}
	close(to[0]);
	close(from[1]);
	ch->cmd = to[1];
	ch->ans = from[0];
	if (read(ch->ans, &r, 1) != 1)
		return -1;
	return r;
}

/* Sends @c and returns the charger's answer (0 or an errno), or -1. */
static int charger_do(struct charger *ch, char c)
{
	char r;

	if (write(ch->cmd, &c, 1) != 1 || read(ch->ans, &r, 1) != 1)
		return -1;
	return r;
}

/* Lets the charger exit: its exit status. */
static int charger_stop(struct charger *ch)
{
	close(ch->cmd);
	close(ch->ans);
	return test_child_wait(ch->pid);
}

FIXTURE(lockedvm)
{
	struct pinner p;
};

FIXTURE_SETUP(lockedvm)
{
	memlock_limit_set(_metadata, LIMIT);
	cap_ipc_lock_drop(_metadata);
	self->p.fd = -1;
}

FIXTURE_TEARDOWN(lockedvm)
{
	if (self->p.fd >= 0)
		uiommu_close(self->p.fd);
}

/*
 * Two processes each within the limit alone, past it together: the second's MAP is ENOMEM
 * with nothing charged, what is left under the limit goes through, and once the first gives
 * its pages back the second pins what it was refused.
 */
TEST_F(lockedvm, two_processes_share_the_limit)
{
	struct charger ch;

	ASSERT_EQ(0, pinner_open(&self->p));
	ASSERT_EQ(0, pinner_map(&self->p, 0, 10));
	ASSERT_EQ(0, unmap(self->p.fd, self->p.ioas, IOVA, 10 * PS));

	ASSERT_EQ(0, charger_start(&ch, 10));
	ASSERT_EQ(10, user_total());
	ASSERT_EQ(-1, pinner_map(&self->p, 0, 10));
	ASSERT_EQ(ENOMEM, errno);
	ASSERT_EQ(0, own_count());
	ASSERT_EQ(10, user_total());
	ASSERT_EQ(0, pinner_map(&self->p, 0, 6));
	ASSERT_EQ(6, own_count());
	ASSERT_EQ(16, user_total());
	/* The charger is refused as well now: the limit is the user's, not the process's. */
	ASSERT_EQ(ENOMEM, charger_do(&ch, 'm'));
	ASSERT_EQ(0, charger_do(&ch, 'u'));
	ASSERT_EQ(6, user_total());
	ASSERT_EQ(0, pinner_map(&self->p, 6, 10));
	ASSERT_EQ(16, user_total());
	ASSERT_EQ(0, charger_stop(&ch));
	ASSERT_EQ(0, unmap(self->p.fd, self->p.ioas, IOVA, 16 * PS));
	ASSERT_EQ(0, own_count());
	ASSERT_EQ(0, user_total());
}

/* A process's close gives its share back at once; its exit without a close does too. */
TEST_F(lockedvm, exit_gives_back)
{
	struct charger ch;

	ASSERT_EQ(0, charger_start(&ch, 12));
	ASSERT_EQ(12, user_total());
	ASSERT_EQ(0, charger_stop(&ch));
	ASSERT_EQ(0, user_total());
	ASSERT_EQ(0, pinner_open(&self->p));
	ASSERT_EQ(0, pinner_map(&self->p, 0, LIMIT));
}

/*
 * A charger killed with SIGKILL, its pins never given back: its slot is dead, and the next
 * charge that would fail frees its pages and goes through.
 */
TEST_F(lockedvm, sigkilled_charger_is_reclaimed)
{
	struct charger ch;

	ASSERT_EQ(0, pinner_open(&self->p));
	ASSERT_EQ(0, charger_start(&ch, 12));
	ASSERT_EQ(0, pinner_map(&self->p, 0, 4));
	ASSERT_EQ(-1, pinner_map(&self->p, 4, 1));
	ASSERT_EQ(ENOMEM, errno);
	ASSERT_EQ(0, kill(ch.pid, SIGKILL));
	ASSERT_EQ(128 + SIGKILL, charger_stop(&ch));
	ASSERT_EQ(0, pinner_map(&self->p, 4, 12));
	ASSERT_EQ(16, own_count());
	ASSERT_EQ(16, user_total());
}

/* The reclaim also runs when a process opens the file: the total skips the dead. */
TEST_F(lockedvm, sigkilled_charger_not_in_total)
{
	struct charger ch;

	ASSERT_EQ(0, charger_start(&ch, 12));
	ASSERT_EQ(0, kill(ch.pid, SIGKILL));
	ASSERT_EQ(128 + SIGKILL, charger_stop(&ch));
	ASSERT_EQ(0, user_total());
}

/*
 * A forked child has a copy of its parent's contexts and charges, but the parent serves those
 * contexts: the child's slot holds only what it charges itself, on a context of its own or
 * (in the parent's slot) through the parent's fd, each against the one total. The parent's
 * share stays its own: the child's copy of the descriptor neither keeps nor drops it.
 */
TEST_F(lockedvm, forked_child_shares_the_total)
{
	struct pinner *p = &self->p, mine;
	pid_t pid;

	ASSERT_EQ(0, pinner_open(p));
	ASSERT_EQ(0, pinner_map(p, 0, 6));
	ASSERT_EQ(6, user_total());
	fflush(NULL);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		if (pinner_open(&mine))
			_exit(10);
		/* The parent's 6 + 11 > 16; + 9 fits; one more does not, here nor there. */
		if (!pinner_map(&mine, 0, 11) || errno != ENOMEM)
			_exit(11);
		if (pinner_map(&mine, 0, 9) || user_total() != 15)
			_exit(12);
		if (pinner_map(p, 6, 1) || user_total() != 16)
			_exit(13);
		if (!pinner_map(&mine, 9, 1) || errno != ENOMEM)
			_exit(14);
		if (!pinner_map(p, 7, 1) || errno != ENOMEM)
			_exit(15);
		/* Its own unpin is its own: the inherited copies stay out of the count. */
		if (unmap(mine.fd, mine.ioas, IOVA, 9 * PS) || user_total() != 7)
			_exit(16);
		_exit(0);
	}
	ASSERT_EQ(0, test_child_wait(pid));
	ASSERT_EQ(7, own_count());
	ASSERT_EQ(7, user_total());
	ASSERT_EQ(0, pinner_map(p, 7, 9));
	ASSERT_EQ(-1, pinner_map(p, 16, 1));
	ASSERT_EQ(ENOMEM, errno);
}

/* The fd of the count's file in this process, found by its name; -1 if none. */
static int count_fd(void)
{
	char link[300], target[4096];
	struct dirent *de;
	int fd = -1;
	DIR *d = opendir("/proc/self/fd");

	while (d && fd < 0 && (de = readdir(d))) {
		ssize_t n;

		snprintf(link, sizeof(link), "/proc/self/fd/%s", de->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		if (strstr(target, "/" UIOMMU_LOCKED_VM_FILE))
			fd = atoi(de->d_name);
	}
	if (d)
		closedir(d);
	return fd;
}

/*
 * A program that closes the fds it did not open (closefrom) closes the count's file, and
 * may open one of its own under the same number: the slot lives on in the mapping until a
 * charge takes the slow path, which sees the fd gone and opens the count anew (a new slot,
 * with what this process holds), never touching the program's file.
 */
TEST_F(lockedvm, count_fd_closed_by_the_program)
{
	struct charger ch;
	int fd, mine;

	ASSERT_EQ(0, pinner_open(&self->p));
	ASSERT_EQ(0, pinner_map(&self->p, 0, 4));
	fd = count_fd();
	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, close(fd));
	mine = memfd_create("the-program's", MFD_CLOEXEC);
	ASSERT_GE(mine, 0);
	if (mine != fd) {
		ASSERT_EQ(fd, dup2(mine, fd));
		close(mine);
	}
	/* The refused charge opens the count anew: the 4 pages go into a new slot, the old
	 * one dies with the mapping and is reclaimed, so 8 + 4 + 5 is refused and + 4 fits. */
	ASSERT_EQ(0, charger_start(&ch, 8));
	ASSERT_EQ(-1, pinner_map(&self->p, 4, 5));
	ASSERT_EQ(ENOMEM, errno);
	ASSERT_EQ(0, pinner_map(&self->p, 4, 4));
	ASSERT_EQ(16, user_total());
	ASSERT_EQ(0, charger_stop(&ch));
	ASSERT_EQ(8, user_total());
	/* The program's file was left alone: no lock of ours on it. */
	{
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_len = 0 };

		ASSERT_EQ(0, fcntl(fd, F_GETLK, &fl));
		ASSERT_EQ(F_UNLCK, fl.l_type);
	}
	ASSERT_EQ(0, close(fd));
}

/* The write end the parked holder says it is parked on (parked_holder_start()). */
static int park_fd = -1;

/* uiommu_locked_vm_test_park: says so, then waits for its SIGKILL. */
static void park_until_killed(void)
{
	char c = 'p';

	if (write(park_fd, &c, 1) != 1)
		_exit(2);
	for (;;)
		pause();
}

/*
 * A process that has pinned 2 pages, then is SIGKILLed while it holds the count's mutex in
 * its next charge (3 pages): the total already raised, its slot not yet. 0 or -1.
 */
static int parked_holder_kill(void)
{
	struct pinner mine;
	int pfd[2];
	pid_t pid;
	char c;

	if (pipe2(pfd, O_CLOEXEC))
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		close(pfd[0]);
		park_fd = pfd[1];
		if (pinner_open(&mine) || pinner_map(&mine, 0, 2))
			_exit(1);
		atomic_store(&uiommu_locked_vm_test_park, park_until_killed);
		pinner_map(&mine, 2, 3);
		_exit(3); /* not parked: the case fails below */
	}
	close(pfd[1]);
	if (read(pfd[0], &c, 1) != 1 || kill(pid, SIGKILL) ||
	    test_child_wait(pid) != 128 + SIGKILL) {
		close(pfd[0]);
		return -1;
	}
	close(pfd[0]);
	return 0;
}

/*
 * The holder's death is seen by the next process that takes the mutex: it recovers the
 * mutex and recomputes the total, then the dead slot is reclaimed; the total is exact after
 * (its 2 pages and the 3 it was raising are both gone, not taken out twice nor left in).
 */
TEST_F(lockedvm, killed_holder_total_stays_exact)
{
	ASSERT_EQ(0, parked_holder_kill());
	ASSERT_EQ(0, user_total());
	ASSERT_EQ(0, pinner_open(&self->p));
	ASSERT_EQ(0, pinner_map(&self->p, 0, LIMIT));
	ASSERT_EQ(LIMIT, user_total());
	ASSERT_EQ(-1, pinner_map(&self->p, LIMIT, 1));
	ASSERT_EQ(ENOMEM, errno);
	ASSERT_EQ(0, unmap(self->p.fd, self->p.ioas, IOVA, LIMIT * PS));
	ASSERT_EQ(0, user_total());
}

/* The next to take the mutex is a charge: it recovers it and pins up to the limit exactly. */
TEST_F(lockedvm, killed_holder_next_charge_recovers)
{
	struct charger ch;

	ASSERT_EQ(0, pinner_open(&self->p));
	ASSERT_EQ(0, parked_holder_kill());
	ASSERT_EQ(0, pinner_map(&self->p, 0, 10));
	ASSERT_EQ(0, charger_start(&ch, 6));
	ASSERT_EQ(LIMIT, user_total());
	ASSERT_EQ(ENOMEM, charger_do(&ch, 'm'));
	ASSERT_EQ(-1, pinner_map(&self->p, 10, 1));
	ASSERT_EQ(ENOMEM, errno);
	ASSERT_EQ(0, charger_stop(&ch));
	ASSERT_EQ(10, user_total());
}

/*
 * Where the file cannot be had, each process counts alone: two processes each pin 10 pages
 * under a 16-page limit, and the library has no shared total. @dir is the directory to use.
 */
static void counts_alone(struct __h_test *_metadata, struct pinner *p, const char *dir)
{
	struct charger ch;
	uint64_t total;

	ASSERT_EQ(0, setenv(UIOMMU_LOCKED_VM_DIR_ENV, dir, 1));
	ASSERT_EQ(0, charger_start(&ch, 10));
	ASSERT_EQ(0, pinner_open(p));
	ASSERT_EQ(0, pinner_map(p, 0, 10));
	ASSERT_EQ(-ENOENT, uiommu_locked_vm_total(getuid(), &total));
	ASSERT_EQ(0, charger_stop(&ch));
	ASSERT_EQ(-1, pinner_map(p, 10, 7));
	ASSERT_EQ(ENOMEM, errno);
	ASSERT_EQ(0, pinner_map(p, 10, 6));
	ASSERT_EQ(16, own_count());
}

TEST_F(lockedvm, alone_without_directory)
{
	counts_alone(_metadata, &self->p, "/nonexistent-uiommu/dir");
}

TEST_F(lockedvm, alone_when_disabled)
{
	counts_alone(_metadata, &self->p, "");
}

/* A directory others may enter could hand us their file: not used. */
TEST_F(lockedvm, alone_in_open_directory)
{
	char dir[] = "/tmp/uiommu-test-lv-open.XXXXXX";

	ASSERT_TRUE(mkdtemp(dir) != NULL);
	ASSERT_EQ(0, chmod(dir, 0755));
	counts_alone(_metadata, &self->p, dir);
	rmdir(dir);
}

/* A file of another layout (another version of the library) is left alone. */
TEST_F(lockedvm, alone_with_foreign_file)
{
	char dir[] = "/tmp/uiommu-test-lv-foreign.XXXXXX", file[64];
	int fd;

	ASSERT_TRUE(mkdtemp(dir) != NULL);
	snprintf(file, sizeof(file), "%s/" UIOMMU_LOCKED_VM_FILE, dir);
	fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(5, write(fd, "hello", 5));
	close(fd);
	counts_alone(_metadata, &self->p, dir);
	unlink(file);
	rmdir(dir);
}

/* Without $UIOMMU_LOCKED_VM_DIR: $XDG_RUNTIME_DIR, else ${TMPDIR}/uiommu-<euid>, made 0700. */
TEST_F(lockedvm, default_directories)
{
	char tmp[] = "/tmp/uiommu-test-lv-tmp.XXXXXX", path[128];
	struct pinner mine;
	struct stat st;
	pid_t pid;

	ASSERT_TRUE(mkdtemp(tmp) != NULL);
	ASSERT_EQ(0, unsetenv(UIOMMU_LOCKED_VM_DIR_ENV));
	ASSERT_EQ(0, unsetenv("XDG_RUNTIME_DIR"));
	ASSERT_EQ(0, setenv("TMPDIR", tmp, 1));
	ASSERT_EQ(0, pinner_open(&self->p));
	ASSERT_EQ(0, pinner_map(&self->p, 0, 3));
	ASSERT_EQ(3, user_total());
	snprintf(path, sizeof(path), "%s/uiommu-%u", tmp, (unsigned int)geteuid());
	ASSERT_EQ(0, stat(path, &st));
	ASSERT_EQ(0700, st.st_mode & 0777);
	snprintf(path, sizeof(path), "%s/uiommu-%u/" UIOMMU_LOCKED_VM_FILE, tmp,
		 (unsigned int)geteuid());
	ASSERT_EQ(0, stat(path, &st));
	ASSERT_EQ(0600, st.st_mode & 0777);
	ASSERT_TRUE(S_ISREG(st.st_mode));

	/*
	 * A forked child opens the file anew at its first charge (its descriptor was the
	 * parent's): with $XDG_RUNTIME_DIR set by then, there.
	 */
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		snprintf(path, sizeof(path), "%s/xdg", tmp);
		if (mkdir(path, 0700) || setenv("XDG_RUNTIME_DIR", path, 1))
			_exit(10);
		if (pinner_open(&mine) || pinner_map(&mine, 0, 1) || user_total() != 1)
			_exit(11);
		snprintf(path, sizeof(path), "%s/xdg/" UIOMMU_LOCKED_VM_FILE, tmp);
		_exit(stat(path, &st) ? 12 : 0);
	}
	ASSERT_EQ(0, test_child_wait(pid));
	ASSERT_EQ(3, user_total());
	snprintf(path, sizeof(path), "%s/xdg/" UIOMMU_LOCKED_VM_FILE, tmp);
	unlink(path);
	snprintf(path, sizeof(path), "%s/xdg", tmp);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/uiommu-%u/" UIOMMU_LOCKED_VM_FILE, tmp,
		 (unsigned int)geteuid());
	unlink(path);
	snprintf(path, sizeof(path), "%s/uiommu-%u", tmp, (unsigned int)geteuid());
	rmdir(path);
	rmdir(tmp);
}

/*
 * Each failure of a first charge (opening the file among its steps) leaves nothing charged,
 * here or in the user's total, and is not remembered: the next charge shares the count.
 * Each step runs in a fresh child, which has not opened the file yet.
 */
static int sweep_one(struct pinner *p, unsigned long nth)
{
	unsigned long left;
	int rc;

	if (pinner_open(p))
		return 10;
	uiommu_fail_nth_arm(nth);
	rc = pinner_map(p, 0, 4);
	left = uiommu_fail_nth_disarm();
	if (rc) {
		if (own_count() || user_total())
			return 11;
		if (pinner_map(p, 0, 4) || own_count() != 4 || user_total() != 4)
			return 12;
		return 0;
	}
	if (own_count() != 4 || user_total() != 4)
		return 13;
	return left ? 1 : 2;
}

TEST_F(lockedvm, fail_nth_sweep_first_charge)
{
	unsigned long nth, failures = 0;
	int status = 0;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	for (nth = 1; nth < 300; nth++) {
		pid_t pid;

		fflush(NULL);
		pid = fork();
		ASSERT_GE(pid, 0);
		if (!pid)
			_exit(sweep_one(&self->p, nth));
		status = test_child_wait(pid);
		if (status == 1)
			break; /* completed with the failure point never reached */
		if (status)
			fprintf(stderr, "failure %lu: child status %d\n", nth, status);
		ASSERT_TRUE(status == 0 || status == 2);
		failures += !status;
	}
	ASSERT_EQ(1, status);
	ASSERT_GT(failures, 0);
	ASSERT_EQ(0, user_total());
}

/*
 * Two processes of two threads each pin and unpin 4 pages at a time under a 12-page limit:
 * some are refused (ENOMEM, nothing else), the total seen after each pin never passes the
 * limit, and all is given back at the end. Bounded by iterations.
 */
#define RACE_LIMIT 12ull
#define RACE_ROUNDS 100

struct racer {
	struct pinner *p;
	uint64_t at;
	int errors, refused;
};

static void *racer_run(void *arg)
{
	struct racer *r = arg;
	int i;

	for (i = 0; i != RACE_ROUNDS; i++) {
		if (pinner_map(r->p, r->at, 4)) {
			if (errno == ENOMEM)
				r->refused++;
			else
				r->errors++;
			continue;
		}
		if (user_total() > RACE_LIMIT)
			r->errors++;
		if (unmap(r->p->fd, r->p->ioas, IOVA + r->at * PS, 4 * PS))
			r->errors++;
	}
	return NULL;
}

/* Both racers of this process: their errors, and how many were refused in @refused. */
static int racers_run(struct pinner *p, int *refused)
{
	struct racer r[2] = { { .p = p, .at = 0 }, { .p = p, .at = 4 } };
	pthread_t t[2];
	int i, errors = 0;

	for (i = 0; i != 2; i++)
		if (pthread_create(&t[i], NULL, racer_run, &r[i]))
			return 1;
	for (i = 0; i != 2; i++) {
		pthread_join(t[i], NULL);
		errors += r[i].errors;
		*refused += r[i].refused;
	}
	return errors;
}

TEST_F(lockedvm, racing_chargers_never_pass_limit)
{
	int refused = 0, child_refused = 0;
	pid_t pid;

	memlock_limit_set(_metadata, RACE_LIMIT);
	ASSERT_EQ(0, pinner_open(&self->p));
	fflush(NULL);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		uiommu_close(self->p.fd);
		if (pinner_open(&self->p))
			_exit(100);
		_exit(racers_run(&self->p, &child_refused) ? 101 : 0);
	}
	ASSERT_EQ(0, racers_run(&self->p, &refused));
	ASSERT_EQ(0, test_child_wait(pid));
	ASSERT_EQ(0, own_count());
	ASSERT_EQ(0, user_total());
}


/*
 * An exec hand-over (processes.md, "exec of the serving process"): a serving process (the
 * server, a child of the case) pins HO_PAGES pages for the case, its client, then hands its
 * serving over and execs itself (uiommu_exec_handover(), as the preload layer's execve does).
 * The next server, a copy of it, serves those pins: the user's total counts them still, once,
 * against the limit, until the client's unmap, which the next server serves, gives them back.
 */
#define HO_PAGES 6ull

/* "--child lvexec2 SOCK": the new image says it runs, and exits at the case's word. */
static int handover_new_image(int sock)
{
	char c = 'r';

	if (write(sock, &c, 1) != 1 || read(sock, &c, 1) != 1)
		return 1;
	return 0;
}

/* The server: hands its context to the case over @sock, and execs at the case's word. */
static int handover_server(int sock)
{
	struct pinner p;
	char arg[24], c;
	int handle;

	if (pinner_open(&p) || send_fd(sock, p.fd, &p.ioas, sizeof(p.ioas)))
		return 1;
	if (read(sock, &c, 1) != 1)
		return 2;
	handle = uiommu_exec_handover();
	if (handle < 0)
		return 3;
	snprintf(arg, sizeof(arg), "%d", sock);
	if (!fcntl(sock, F_SETFD, 0))
		execl("/proc/self/exe", "test_lockedvm", "--child", "lvexec2", arg, (char *)NULL);
	uiommu_exec_failed(handle);
	return 4;
}

/* Waits for the servers hand-overs made (reparented to the case): how many exited with 0. */
static int handover_servers_wait(void)
{
	int status, servers = 0;

	while (wait(&status) > 0)
		servers += WIFEXITED(status) && !WEXITSTATUS(status) ? 1 : 1000;
	return errno == ECHILD ? servers : -1;
}

TEST_F(lockedvm, exec_hand_over_keeps_the_charges_counted)
{
	struct pinner *p = &self->p, srv;
	char c = 'e';
	int sv[2], mfd;
	void *guest;
	pid_t pid;

	/* The next server is reparented here, to be waited for. */
	ASSERT_EQ(0, prctl(PR_SET_CHILD_SUBREAPER, 1L, 0L, 0L, 0L));
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	fflush(NULL);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		char arg[24];

		/* A new image: a fork of ours would carry its window lock's state (mm/window.c). */
		snprintf(arg, sizeof(arg), "%d", sv[1]);
		if (!fcntl(sv[1], F_SETFD, 0))
			execl("/proc/self/exe", "test_lockedvm", "--child", "lvserver", arg,
			      (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	srv.fd = recv_fd(sv[0], &srv.ioas, sizeof(srv.ioas));
	ASSERT_GE(srv.fd, 0);
	ASSERT_TRUE(uiommu_fd_adopt(srv.fd));
	/* Guest memory in a memfd, as CPR has it; charged in the server's slot, our limit. */
	mfd = memfd_create("lvexec", MFD_CLOEXEC);
	ASSERT_GE(mfd, 0);
	ASSERT_EQ(0, ftruncate(mfd, HO_PAGES * PS));
	guest = mmap(NULL, HO_PAGES * PS, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	ASSERT_TRUE(guest != MAP_FAILED);
	ASSERT_EQ(0, map_fixed(srv.fd, srv.ioas, IOVA, guest, HO_PAGES * PS));
	ASSERT_EQ(0, own_count());
	ASSERT_EQ(HO_PAGES, user_total());
	/* The exec: once the new image runs, the old image's file (and slot) is gone. */
	ASSERT_EQ(1, write(sv[0], &c, 1));
	ASSERT_EQ(1, read(sv[0], &c, 1));
	ASSERT_EQ('r', c);
	ASSERT_EQ(HO_PAGES, user_total());
	/* What is left under the limit, and not a page more. */
	ASSERT_EQ(0, pinner_open(p));
	ASSERT_EQ(-1, pinner_map(p, HO_PAGES, LIMIT - HO_PAGES + 1));
	ASSERT_EQ(ENOMEM, errno);
	ASSERT_EQ(0, pinner_map(p, HO_PAGES, LIMIT - HO_PAGES));
	ASSERT_EQ(LIMIT, user_total());
	ASSERT_EQ(0, unmap(p->fd, p->ioas, IOVA + HO_PAGES * PS, (LIMIT - HO_PAGES) * PS));
	ASSERT_EQ(HO_PAGES, user_total());
	/* The next server serves the unmap: the pages leave the total. */
	ASSERT_EQ(0, unmap(srv.fd, srv.ioas, IOVA, HO_PAGES * PS));
	ASSERT_EQ(0, user_total());
	ASSERT_EQ(0, pinner_map(p, 0, LIMIT));
	ASSERT_EQ(0, unmap(p->fd, p->ioas, IOVA, LIMIT * PS));
	ASSERT_EQ(1, write(sv[0], &c, 1));
	ASSERT_EQ(0, test_child_wait(pid));
	close(sv[0]);
	/* Our fd was the last file: the next server exits. */
	ASSERT_EQ(0, uiommu_close(srv.fd));
	ASSERT_EQ(0, munmap(guest, HO_PAGES * PS));
	close(mfd);
	ASSERT_EQ(1, handover_servers_wait());
	ASSERT_EQ(0, user_total());
}

/*
 * The move's fallible steps, each failing in turn: a failure makes nothing (the child then
 * counts as any forked child, the pins in no slot of the file), a move made counts the pages
 * twice until the exec'ing process's slot dies, then once, in the child's slot. The exec'ing
 * process is a child of the case ("image"): it pins, moves, forks (the next server), reports
 * and exits, as its exec would drop its slot; the copy waits for the case's word.
 */
struct handover_report {
	int rc;
	unsigned long left;
	uint64_t total;
};

static int handover_image(unsigned long nth, int hold, int ans)
{
	struct handover_report rep = { 0 };
	struct pinner p;
	int ready[2];
	pid_t next;
	char c;

	if (pinner_open(&p) || pinner_map(&p, 0, HO_PAGES))
		return 10;
	uiommu_fail_nth_arm(nth);
	rep.rc = uiommu_locked_vm_handover();
	rep.left = uiommu_fail_nth_disarm();
	rep.total = user_total();
	if (pipe2(ready, O_CLOEXEC))
		return 14;
	fflush(NULL);
	next = fork();
	if (next < 0)
		return 11;
	if (!next) {
		/* Past its fork handlers (its copy of the file let go): the image may report. */
		close(ans);
		close(ready[0]);
		close(ready[1]);
		_exit(read(hold, &c, 1) == 0 ? 0 : 12);
	}
	close(ready[1]);
	if (read(ready[0], &c, 1) != 0)
		return 15;
	if (write(ans, &rep, sizeof(rep)) != sizeof(rep))
		return 13;
	return 0;
}

TEST_F(lockedvm, fail_nth_sweep_exec_hand_over)
{
	unsigned long nth, failures = 0;
	struct handover_report rep = { 0 };

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	ASSERT_EQ(0, prctl(PR_SET_CHILD_SUBREAPER, 1L, 0L, 0L, 0L));
	/* A context first, as a program has one before it counts: the fork handlers' order. */
	ASSERT_EQ(0, pinner_open(&self->p));
	for (nth = 1; nth < 50; nth++) {
		int hold[2], ans[2];
		pid_t pid;

		ASSERT_EQ(0, pipe2(hold, O_CLOEXEC));
		ASSERT_EQ(0, pipe2(ans, O_CLOEXEC));
		fflush(NULL);
		pid = fork();
		ASSERT_GE(pid, 0);
		if (!pid) {
			close(hold[1]);
			close(ans[0]);
			_exit(handover_image(nth, hold[0], ans[1]));
		}
		close(hold[0]);
		close(ans[1]);
		ASSERT_EQ((ssize_t)sizeof(rep), read(ans[0], &rep, sizeof(rep)));
		close(ans[0]);
		ASSERT_EQ(0, test_child_wait(pid));
		if (rep.rc) {
			ASSERT_EQ(-ENOMEM, rep.rc);
			ASSERT_EQ(0, rep.left);
			ASSERT_EQ(HO_PAGES, rep.total);
			/* The image's slot died with it: its pages are in none. */
			ASSERT_EQ(0, user_total());
			failures++;
		} else {
			ASSERT_EQ(2 * HO_PAGES, rep.total);
			ASSERT_EQ(HO_PAGES, user_total());
		}
		close(hold[1]);
		ASSERT_EQ(1, handover_servers_wait());
		ASSERT_EQ(0, user_total());
		if (!rep.rc && rep.left)
			break; /* made with the failure point never reached */
	}
	ASSERT_TRUE(!rep.rc && rep.left);
	ASSERT_GT(failures, 0);
}

int main(int argc, char **argv)
{
	if (argc > 3 && !strcmp(argv[1], "--child") && !strcmp(argv[2], "lvexec2"))
		return handover_new_image(atoi(argv[3]));
	if (argc > 3 && !strcmp(argv[1], "--child") && !strcmp(argv[2], "lvserver"))
		return handover_server(atoi(argv[3]));
	return __h_run_all(argc, argv);
}
