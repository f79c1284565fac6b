// SPDX-License-Identifier: MIT
/*
 * Pinned-memory accounting: RLIMIT_MEMLOCK charged through the user (RLIMIT_MODE 0) or the mm
 * (RLIMIT_MODE 1), bypassed with CAP_IPC_LOCK, exactly undone by every unpin, failure and
 * close, and moved by IOAS_CHANGE_PROCESS. The counters are read through uiommu_stats_get()
 * (the kernel's user->locked_vm, mm->locked_vm and mm->pinned_vm, in pages).
 *
 * Each case runs in a child of its own (the harness forks), so it may lower RLIMIT_MEMLOCK,
 * drop CAP_IPC_LOCK from its effective set (libcap) and change its real uid freely. Setting
 * RLIMIT_MODE needs CAP_SYS_RESOURCE; on a host whose root lacks it (containers), the mm
 * variant sets the context's mode directly (this is a white-box test) after checking that the
 * ioctl answered EPERM, which is the kernel's answer there.
 */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "harness.h"
#include "iommufd/iommufd_private.h"
#include "iommufd_utils.h"
#include "lib/fail.h"
#include "memlock_utils.h"
#include "mm/account.h"
#include "mm/proc_status.h"

#define LIMIT 16ull        /* RLIMIT_MEMLOCK in pages during each case */
#define IOVA (1ull << 24)  /* inside the selftest mock's aperture */
#define OTHER_UID 4242     /* a real uid to move to (root only) */

/* RLIMIT_MODE = @mm on a fresh context, through the ioctl where the host lets us. */
static void rlimit_mode_set(struct __h_test *_metadata, int fd, bool mm)
{
	struct iommu_option cmd = {
		.size = sizeof(cmd), .option_id = IOMMU_OPTION_RLIMIT_MODE,
		.op = IOMMU_OPTION_OP_SET, .val64 = mm,
	};

	if (ioc(fd, IOMMU_OPTION, &cmd)) {
		struct iommufd_ctx *ictx = iommufd_ctx_from_fd(fd);

		ASSERT_EQ(EPERM, errno);
		ASSERT_FALSE(IS_ERR(ictx));
		uiommu_mutex_lock(&ictx->objects_lock);
		ictx->account_mode = mm ? IOPT_PAGES_ACCOUNT_MM : IOPT_PAGES_ACCOUNT_USER;
		uiommu_mutex_unlock(&ictx->objects_lock);
		iommufd_ctx_file_put(ictx);
	}
	cmd.op = IOMMU_OPTION_OP_GET;
	ASSERT_EQ(0, ioc(fd, IOMMU_OPTION, &cmd));
	ASSERT_EQ(mm, cmd.val64);
}

struct counts {
	uint64_t charged;   /* the counter this variant charges */
	uint64_t pinned_vm;
	uint64_t other;     /* the counter it must not touch */
};

FIXTURE(memacct)
{
	int fd;
	uint32_t ioas;
	enum uiommu_account_mode mode;
};

FIXTURE_VARIANT(memacct)
{
	enum uiommu_account_mode mode; /* NONE: keep CAP_IPC_LOCK */
};

FIXTURE_VARIANT_ADD(memacct, user) { .mode = UIOMMU_ACCOUNT_USER };
FIXTURE_VARIANT_ADD(memacct, mm) { .mode = UIOMMU_ACCOUNT_MM };
FIXTURE_VARIANT_ADD(memacct, ipc_lock) { .mode = UIOMMU_ACCOUNT_NONE };

static struct counts counts_get(enum uiommu_account_mode mode)
{
	struct uiommu_stats st;
	struct counts c = { 0 };

	uiommu_stats_get(&st);
	c.pinned_vm = st.pinned_vm;
	if (mode == UIOMMU_ACCOUNT_USER) {
		c.charged = st.user_locked_vm;
		c.other = st.mm_locked_vm;
	} else if (mode == UIOMMU_ACCOUNT_MM) {
		c.charged = st.mm_locked_vm;
		c.other = st.user_locked_vm;
	} else {
		c.other = st.user_locked_vm + st.mm_locked_vm;
	}
	return c;
}

/* The pages the variant is charged for @pinned pinned pages: none with CAP_IPC_LOCK. */
static uint64_t charge_of(enum uiommu_account_mode mode, uint64_t pinned)
{
	return mode == UIOMMU_ACCOUNT_NONE ? 0 : pinned;
}

#define ASSERT_PINNED(n)                                                             \
	do {                                                                         \
		struct counts _c = counts_get(self->mode);                           \
		ASSERT_EQ(charge_of(self->mode, (n)), _c.charged);                   \
		ASSERT_EQ((uint64_t)(n), _c.pinned_vm);                              \
		ASSERT_EQ(0, _c.other);                                              \
	} while (0)

FIXTURE_SETUP(memacct)
{
	self->mode = variant->mode;
	if (variant->mode == UIOMMU_ACCOUNT_NONE && !cap_ipc_lock_held())
		SKIP("needs CAP_IPC_LOCK");
	memlock_limit_set(_metadata, LIMIT);
	if (variant->mode != UIOMMU_ACCOUNT_NONE)
		cap_ipc_lock_drop(_metadata);
	self->fd = uiommu_open(O_CLOEXEC);
	ASSERT_GE(self->fd, 0);
	if (variant->mode == UIOMMU_ACCOUNT_MM)
		rlimit_mode_set(_metadata, self->fd, true);
	self->ioas = ioas_alloc(self->fd);
	ASSERT_PINNED(0);
}

FIXTURE_TEARDOWN(memacct)
{
	if (self->fd >= 0)
		uiommu_close(self->fd);
}

/* Map and unmap with a domain attached: charged at the map, given back at the unmap. */
TEST_F(memacct, map_unmap_within_limit)
{
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, NULL, NULL, NULL));
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA, buf, LIMIT / 2 * PS));
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA + LIMIT / 2 * PS, buf + LIMIT / 2 * PS,
			       LIMIT / 2 * PS));
	ASSERT_PINNED(LIMIT);
	ASSERT_EQ(0, unmap(self->fd, self->ioas, IOVA, LIMIT / 2 * PS));
	ASSERT_PINNED(LIMIT / 2);
	ASSERT_EQ(0, unmap(self->fd, self->ioas, 0, UINT64_MAX));
	ASSERT_PINNED(0);
}

/* One page past the limit: ENOMEM and nothing mapped nor charged (CAP_IPC_LOCK: no limit). */
TEST_F(memacct, map_past_limit)
{
	int rc;

	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, NULL, NULL, NULL));
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA, buf, (LIMIT - 2) * PS));
	rc = map_fixed(self->fd, self->ioas, IOVA + LIMIT * PS, buf + LIMIT * PS, 3 * PS);
	if (self->mode == UIOMMU_ACCOUNT_NONE) {
		ASSERT_EQ(0, rc);
		ASSERT_PINNED(LIMIT + 1);
		return;
	}
	ASSERT_EQ(-1, rc);
	ASSERT_EQ(ENOMEM, errno);
	ASSERT_PINNED(LIMIT - 2);
	ASSERT_ERRNO(ENOENT, unmap(self->fd, self->ioas, IOVA + LIMIT * PS, 3 * PS));
	/* What fits still maps. */
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA + LIMIT * PS, buf + LIMIT * PS, 2 * PS));
	ASSERT_PINNED(LIMIT);
}

/* Pinning is lazy: without a domain nothing is charged; the attach is what pins (and fails). */
TEST_F(memacct, domain_attach_detach)
{
	uint32_t stdev;

	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA, buf, LIMIT * PS));
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA + LIMIT * PS, buf + LIMIT * PS, PS));
	ASSERT_PINNED(0);
	if (self->mode != UIOMMU_ACCOUNT_NONE) {
		ASSERT_ERRNO(ENOMEM, mock_domain(self->fd, self->ioas, NULL, NULL, NULL));
		ASSERT_PINNED(0);
		ASSERT_EQ(0, unmap(self->fd, self->ioas, IOVA + LIMIT * PS, PS));
	}
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, &stdev, NULL, NULL));
	ASSERT_PINNED(self->mode == UIOMMU_ACCOUNT_NONE ? LIMIT + 1 : LIMIT);
	/* A second domain shares the pins. */
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, NULL, NULL, NULL));
	ASSERT_PINNED(self->mode == UIOMMU_ACCOUNT_NONE ? LIMIT + 1 : LIMIT);
	ASSERT_EQ(0, destroy(self->fd, stdev));
	ASSERT_PINNED(self->mode == UIOMMU_ACCOUNT_NONE ? LIMIT + 1 : LIMIT);
}

/* The last detach unpins everything: the charge goes with it. */
TEST_F(memacct, last_detach_uncharges)
{
	uint32_t stdev;

	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA, buf, 4 * PS));
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, &stdev, NULL, NULL));
	ASSERT_PINNED(4);
	ASSERT_EQ(0, destroy(self->fd, stdev));
	ASSERT_PINNED(0);
}

static int access_create(int fd, uint32_t ioas, int *afd)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_CREATE_ACCESS, .id = ioas,
		.create_access = { .flags = MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES },
	};
	int rc = ioc(fd, IOMMU_TEST_CMD, &cmd);

	if (!rc)
		*afd = (int)cmd.create_access.out_access_fd;
	return rc;
}

static int access_pages(int fd, int afd, uint64_t iova, uint64_t len, const void *uptr,
			uint32_t *item)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_ACCESS_PAGES, .id = (uint32_t)afd,
		.access_pages = { .iova = iova, .length = len, .uptr = (uintptr_t)uptr },
	};
	int rc = ioc(fd, IOMMU_TEST_CMD, &cmd);

	if (!rc)
		*item = cmd.access_pages.out_access_pages_id;
	return rc;
}

static int access_unpin(int fd, int afd, uint32_t item)
{
	struct iommu_test_cmd cmd = {
		.size = sizeof(cmd), .op = IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, .id = (uint32_t)afd,
		.destroy_access_pages = { .access_pages_id = item },
	};

	return ioc(fd, IOMMU_TEST_CMD, &cmd);
}

/* An access's pins charge as a domain's do, and overlapping pins of one area count once. */
TEST_F(memacct, access_pin_unpin)
{
	uint32_t a, b, c;
	int afd;

	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA, buf, (LIMIT + 4) * PS));
	ASSERT_EQ(0, access_create(self->fd, self->ioas, &afd));
	ASSERT_EQ(0, access_pages(self->fd, afd, IOVA, 8 * PS, buf, &a));
	ASSERT_PINNED(8);
	ASSERT_EQ(0, access_pages(self->fd, afd, IOVA + 4 * PS, 8 * PS, buf + 4 * PS, &b));
	ASSERT_PINNED(12);
	if (self->mode != UIOMMU_ACCOUNT_NONE) {
		ASSERT_ERRNO(ENOMEM, access_pages(self->fd, afd, IOVA + 12 * PS, 8 * PS,
						  buf + 12 * PS, &c));
		ASSERT_PINNED(12);
	}
	ASSERT_EQ(0, access_unpin(self->fd, afd, a));
	ASSERT_PINNED(8);
	ASSERT_EQ(0, access_pages(self->fd, afd, IOVA + 12 * PS, 8 * PS, buf + 12 * PS, &c));
	ASSERT_PINNED(16);
	ASSERT_EQ(0, access_unpin(self->fd, afd, b));
	ASSERT_EQ(0, access_unpin(self->fd, afd, c));
	ASSERT_PINNED(0);
	uiommu_close(afd);
}

/* COPY shares the pages (one charge); a second MAP of the same memory is charged again. */
TEST_F(memacct, copy_shares_map_twice_charges_twice)
{
	uint32_t ioas2 = ioas_alloc(self->fd);
	struct iommu_ioas_copy copy = {
		.size = sizeof(copy), .flags = RW | IOMMU_IOAS_MAP_FIXED_IOVA,
		.dst_ioas_id = ioas2, .src_ioas_id = self->ioas, .length = 4 * PS,
		.dst_iova = IOVA, .src_iova = IOVA,
	};

	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, NULL, NULL, NULL));
	ASSERT_EQ(0, mock_domain(self->fd, ioas2, NULL, NULL, NULL));
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA, buf, 4 * PS));
	ASSERT_EQ(0, ioc(self->fd, IOMMU_IOAS_COPY, &copy));
	ASSERT_PINNED(4);
	ASSERT_EQ(0, map_fixed(self->fd, ioas2, IOVA + 8 * PS, buf, 4 * PS));
	ASSERT_PINNED(8);
	ASSERT_EQ(0, unmap(self->fd, self->ioas, 0, UINT64_MAX));
	ASSERT_PINNED(8);
	ASSERT_EQ(0, unmap(self->fd, ioas2, 0, UINT64_MAX));
	ASSERT_PINNED(0);
}

/* Closing the context gives every charge back. */
TEST_F(memacct, close_uncharges)
{
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, NULL, NULL, NULL));
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA, buf, 6 * PS));
	ASSERT_PINNED(6);
	ASSERT_EQ(0, uiommu_close(self->fd));
	self->fd = -1;
	ASSERT_PINNED(0);
}

/* The limit is the user's (or the mm's), not the context's: two contexts share it. */
TEST_F(memacct, limit_shared_by_contexts)
{
	int fd2 = uiommu_open(O_CLOEXEC);
	uint32_t ioas2;
	int rc;

	ASSERT_GE(fd2, 0);
	if (self->mode == UIOMMU_ACCOUNT_MM)
		rlimit_mode_set(_metadata, fd2, true);
	ioas2 = ioas_alloc(fd2);
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, NULL, NULL, NULL));
	ASSERT_EQ(0, mock_domain(fd2, ioas2, NULL, NULL, NULL));
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA, buf, 10 * PS));
	rc = map_fixed(fd2, ioas2, IOVA, buf + 10 * PS, 10 * PS);
	if (self->mode == UIOMMU_ACCOUNT_NONE) {
		ASSERT_EQ(0, rc);
		ASSERT_PINNED(20);
	} else {
		ASSERT_EQ(-1, rc);
		ASSERT_EQ(ENOMEM, errno);
		ASSERT_PINNED(10);
		ASSERT_EQ(0, map_fixed(fd2, ioas2, IOVA, buf + 10 * PS, 6 * PS));
		ASSERT_PINNED(16);
	}
	ASSERT_EQ(0, uiommu_close(fd2));
	ASSERT_PINNED(10);
}

/* Lowering the limit refuses new pins and leaves the charged ones alone, as the kernel does. */
TEST_F(memacct, limit_lowered_later)
{
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, NULL, NULL, NULL));
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA, buf, 8 * PS));
	memlock_limit_set(_metadata, 4);
	ASSERT_PINNED(8);
	if (self->mode != UIOMMU_ACCOUNT_NONE)
		ASSERT_ERRNO(ENOMEM, map_fixed(self->fd, self->ioas, IOVA + 8 * PS, buf, PS));
	ASSERT_EQ(0, unmap(self->fd, self->ioas, 0, UINT64_MAX));
	ASSERT_PINNED(0);
}

static int change_process(int fd)
{
	struct iommu_ioas_change_process cmd = { .size = sizeof(cmd) };

	return ioc(fd, IOMMU_IOAS_CHANGE_PROCESS, &cmd);
}

static int map_file(int fd, uint32_t ioas, uint64_t iova, int mfd, uint64_t len)
{
	struct iommu_ioas_map_file cmd = {
		.size = sizeof(cmd), .flags = RW | IOMMU_IOAS_MAP_FIXED_IOVA, .ioas_id = ioas,
		.fd = mfd, .start = 0, .length = len, .iova = iova,
	};

	return ioc(fd, IOMMU_IOAS_MAP_FILE, &cmd);
}

static int memfd_sized(uint64_t len)
{
	int mfd = memfd_create("memacct", MFD_CLOEXEC);

	if (mfd >= 0 && ftruncate(mfd, (off_t)len)) {
		close(mfd);
		return -1;
	}
	return mfd;
}

/* Within one process and one user there is nothing to move; VA mappings refuse (EINVAL). */
TEST_F(memacct, change_process_same_caller)
{
	int mfd = memfd_sized(8 * PS);

	ASSERT_GE(mfd, 0);
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, NULL, NULL, NULL));
	ASSERT_EQ(0, map_file(self->fd, self->ioas, IOVA, mfd, 8 * PS));
	ASSERT_EQ(0, change_process(self->fd));
	ASSERT_PINNED(8);
	ASSERT_EQ(0, map_fixed(self->fd, self->ioas, IOVA + 16 * PS, buf, PS));
	ASSERT_ERRNO(EINVAL, change_process(self->fd));
	ASSERT_PINNED(9);
	ASSERT_EQ(0, unmap(self->fd, self->ioas, 0, UINT64_MAX));
	ASSERT_PINNED(0);
	close(mfd);
}

/*
 * A caller with another real uid takes the USER charge over (the mm's stays: the same mm);
 * past the new user's limit it is ENOMEM with both users' charges unchanged.
 */
TEST_F(memacct, change_process_moves_user_charge)
{
	int mfd = memfd_sized(10 * PS), fd2;
	uint32_t ioas2;

	if (geteuid() != 0)
		SKIP("needs root to change the real uid");
	ASSERT_GE(mfd, 0);
	ASSERT_EQ(0, mock_domain(self->fd, self->ioas, NULL, NULL, NULL));
	ASSERT_EQ(0, map_file(self->fd, self->ioas, IOVA, mfd, 10 * PS));
	ASSERT_PINNED(10);

	/* The real uid changes; the effective uid stays root so the case can go on. */
	ASSERT_EQ(0, setresuid(OTHER_UID, 0, 0));
	fd2 = uiommu_open(O_CLOEXEC);
	ASSERT_GE(fd2, 0);
	if (self->mode == UIOMMU_ACCOUNT_MM)
		rlimit_mode_set(_metadata, fd2, true);
	ioas2 = ioas_alloc(fd2);
	ASSERT_EQ(0, mock_domain(fd2, ioas2, NULL, NULL, NULL));
	/* USER: the other user's own 8 pages; MM: 6 more on the one mm's 10 fit its 16. */
	ASSERT_EQ(0, map_fixed(fd2, ioas2, IOVA, buf,
			       (self->mode == UIOMMU_ACCOUNT_USER ? 8 : 6) * PS));

	if (self->mode == UIOMMU_ACCOUNT_USER) {
		ASSERT_EQ(10, uiommu_user_locked_vm(0));
		ASSERT_EQ(8, uiommu_user_locked_vm(OTHER_UID));
		/* 8 + 10 > 16: refused, nothing moves. */
		ASSERT_ERRNO(ENOMEM, change_process(self->fd));
		ASSERT_EQ(10, uiommu_user_locked_vm(0));
		ASSERT_EQ(8, uiommu_user_locked_vm(OTHER_UID));
		ASSERT_EQ(0, unmap(fd2, ioas2, IOVA, 8 * PS));
		ASSERT_EQ(0, change_process(self->fd));
		ASSERT_EQ(0, uiommu_user_locked_vm(0));
		ASSERT_EQ(10, uiommu_user_locked_vm(OTHER_UID));
		ASSERT_PINNED(10);
	} else {
		/* MM: the charge is the mm's, and the mm is the same; NONE: nobody's. */
		ASSERT_EQ(0, change_process(self->fd));
		ASSERT_PINNED(16);
		ASSERT_EQ(0, uiommu_user_locked_vm(0));
		ASSERT_EQ(0, uiommu_user_locked_vm(OTHER_UID));
	}
	ASSERT_EQ(0, uiommu_close(fd2));
	ASSERT_EQ(0, uiommu_close(self->fd));
	self->fd = -1;
	ASSERT_PINNED(0);
	ASSERT_EQ(0, uiommu_user_locked_vm(0));
	ASSERT_EQ(0, uiommu_user_locked_vm(OTHER_UID));
	close(mfd);
}

/* RLIMIT_MODE is fixed once an object exists (EBUSY), as in the kernel. */
TEST_F(memacct, rlimit_mode_fixed_with_objects)
{
	struct iommu_option cmd = {
		.size = sizeof(cmd), .option_id = IOMMU_OPTION_RLIMIT_MODE,
		.op = IOMMU_OPTION_OP_SET, .val64 = 0,
	};
	int rc = ioc(self->fd, IOMMU_OPTION, &cmd);

	ASSERT_EQ(-1, rc);
	ASSERT_TRUE(errno == EBUSY || errno == EPERM);
	cmd.op = IOMMU_OPTION_OP_GET;
	ASSERT_EQ(0, ioc(self->fd, IOMMU_OPTION, &cmd));
	ASSERT_EQ(self->mode == UIOMMU_ACCOUNT_MM, cmd.val64);
}

/*
 * The fault-injection sweep: every fallible step of each pinning operation fails in turn, on a
 * fresh context with some pages already charged, and after each failure the charges are
 * exactly what they were before the call; closing the context then gives everything back.
 */
struct sweep_ctx {
	int fd, mfd;
	uint32_t ioas;
};

enum sweep_op {
	SWEEP_MAP_WITH_DOMAIN,
	SWEEP_ATTACH,
	SWEEP_MAP_FILE,
	SWEEP_COPY,
	SWEEP_ACCESS_PIN,
	SWEEP_CHANGE_PROCESS,
	SWEEP_OPS,
};

static const char *const sweep_names[SWEEP_OPS] = {
	"map with a domain", "domain attach", "map_file", "copy", "access pin", "change_process",
};

/* The state before the operation: a file area and a VA area, pinned when a domain is there. */
static void sweep_setup(struct __h_test *_metadata, enum uiommu_account_mode mode,
			enum sweep_op op, struct sweep_ctx *c)
{
	c->fd = uiommu_open(O_CLOEXEC);
	ASSERT_GE(c->fd, 0);
	if (mode == UIOMMU_ACCOUNT_MM)
		rlimit_mode_set(_metadata, c->fd, true);
	c->ioas = ioas_alloc(c->fd);
	ASSERT_EQ(0, map_file(c->fd, c->ioas, IOVA, c->mfd, 2 * PS));
	/* CHANGE_PROCESS refuses VA mappings: only the others get one. */
	if (op != SWEEP_CHANGE_PROCESS)
		ASSERT_EQ(0, map_fixed(c->fd, c->ioas, IOVA + 8 * PS, buf, 2 * PS));
	if (op != SWEEP_ATTACH && op != SWEEP_ACCESS_PIN)
		ASSERT_EQ(0, mock_domain(c->fd, c->ioas, NULL, NULL, NULL));
}

static int sweep_run(struct sweep_ctx *c, enum sweep_op op)
{
	struct iommu_ioas_copy copy = {
		.size = sizeof(copy), .flags = RW | IOMMU_IOAS_MAP_FIXED_IOVA,
		.dst_ioas_id = c->ioas, .src_ioas_id = c->ioas, .length = 2 * PS,
		.dst_iova = IOVA + 16 * PS, .src_iova = IOVA,
	};
	uint32_t item;
	int afd, rc;

	switch (op) {
	case SWEEP_MAP_WITH_DOMAIN:
		return map_fixed(c->fd, c->ioas, IOVA + 32 * PS, buf + 32 * PS, 4 * PS);
	case SWEEP_ATTACH:
		return mock_domain(c->fd, c->ioas, NULL, NULL, NULL);
	case SWEEP_MAP_FILE:
		return map_file(c->fd, c->ioas, IOVA + 64 * PS, c->mfd, 4 * PS);
	case SWEEP_COPY:
		return ioc(c->fd, IOMMU_IOAS_COPY, &copy);
	case SWEEP_ACCESS_PIN:
		/* Pins and lets go: whether or not a step failed, the charge ends where it began. */
		rc = access_create(c->fd, c->ioas, &afd);
		if (rc)
			return rc;
		rc = access_pages(c->fd, afd, IOVA + 8 * PS, 2 * PS, buf, &item);
		if (!rc)
			rc = access_unpin(c->fd, afd, item);
		uiommu_close(afd);
		return rc;
	case SWEEP_CHANGE_PROCESS:
		return change_process(c->fd);
	default:
		return -1;
	}
}

TEST_F(memacct, fail_nth_sweep_undoes_charges)
{
	struct sweep_ctx c = { .mfd = memfd_sized(8 * PS) };
	enum sweep_op op;

	if (!uiommu_fail_nth_available())
		SKIP("fault injection is compiled out");
	ASSERT_GE(c.mfd, 0);
	for (op = 0; op != SWEEP_OPS; op++) {
		unsigned long nth, failures = 0;

		for (nth = 1; nth < 1000; nth++) {
			struct counts before, after;
			unsigned long left;
			int rc;

			sweep_setup(_metadata, self->mode, op, &c);
			before = counts_get(self->mode);
			uiommu_fail_nth_arm(nth);
			rc = sweep_run(&c, op);
			left = uiommu_fail_nth_disarm();
			after = counts_get(self->mode);
			if (rc) {
				if (before.charged != after.charged || before.pinned_vm != after.pinned_vm)
					fprintf(stderr, "%s: failure %lu changed the charges\n",
						sweep_names[op], nth);
				ASSERT_EQ(before.charged, after.charged);
				ASSERT_EQ(before.pinned_vm, after.pinned_vm);
				ASSERT_EQ(before.other, after.other);
				failures++;
			}
			ASSERT_EQ(0, uiommu_close(c.fd));
			ASSERT_PINNED(0);
			if (!rc && left)
				break; /* completed with the failure point never reached */
		}
		if (nth == 1000)
			fprintf(stderr, "%s: never completed\n", sweep_names[op]);
		ASSERT_LT(nth, 1000);
		/* Every operation here has fallible steps: the sweep must have failed some. */
		ASSERT_GT(failures, 0);
	}
	close(c.mfd);
}

/*
 * CHANGE_PROCESS racing MAP_FILE/UNMAP on two IOASes and IOAS creation: every call answers 0
 * (only file areas, all within the limit: neither EINVAL nor ENOMEM), nothing deadlocks, and
 * when the racers are done every charge has been given back. Bounded by iterations.
 */
struct race {
	int fd, mfd;
	uint32_t ioas;
	int errors;
};

static void *race_mapper(void *arg)
{
	struct race *r = arg;
	int i;

	for (i = 0; i != 300; i++) {
		if (map_file(r->fd, r->ioas, IOVA, r->mfd, 4 * PS) ||
		    unmap(r->fd, r->ioas, IOVA, 4 * PS))
			r->errors++;
	}
	return NULL;
}

static void *race_changer(void *arg)
{
	struct race *r = arg;
	int i;

	for (i = 0; i != 300; i++) {
		uint32_t ioas = ioas_alloc(r->fd);

		if (change_process(r->fd) || destroy(r->fd, ioas))
			r->errors++;
	}
	return NULL;
}

TEST_F(memacct, change_process_races_map_unmap)
{
	struct race a = { .fd = self->fd, .mfd = memfd_sized(4 * PS), .ioas = self->ioas };
	struct race b = a, c = a;
	pthread_t ta, tb, tc;

	ASSERT_GE(a.mfd, 0);
	b.ioas = ioas_alloc(self->fd);
	ASSERT_EQ(0, mock_domain(self->fd, a.ioas, NULL, NULL, NULL));
	ASSERT_EQ(0, mock_domain(self->fd, b.ioas, NULL, NULL, NULL));
	ASSERT_EQ(0, pthread_create(&ta, NULL, race_mapper, &a));
	ASSERT_EQ(0, pthread_create(&tb, NULL, race_mapper, &b));
	ASSERT_EQ(0, pthread_create(&tc, NULL, race_changer, &c));
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	pthread_join(tc, NULL);
	ASSERT_EQ(0, a.errors);
	ASSERT_EQ(0, b.errors);
	ASSERT_EQ(0, c.errors);
	ASSERT_PINNED(0);
	close(a.mfd);
}

/* The status rewrite: host values raised, a missing VmPin made after VmLck, the rest kept. */
static void rewrite(const char *in, uint64_t pinned_kb, uint64_t locked_kb, char *out, size_t len)
{
	FILE *f = fmemopen(out, len, "w");

	if (!f)
		abort();
	proc_status_rewrite(f, in, pinned_kb, locked_kb);
	fclose(f);
}

TEST(proc_status_rewrite_lines)
{
	char out[512];

	rewrite("Name:\tx\nVmLck:\t       4 kB\nVmPin:\t       8 kB\nVmHWM:\t 12 kB\n", 16, 32,
		out, sizeof(out));
	ASSERT_STREQ("Name:\tx\nVmLck:\t      36 kB\nVmPin:\t      24 kB\nVmHWM:\t 12 kB\n", out);
	/* A host without VmPin: the line appears where the kernel has it. */
	rewrite("VmSize:\t 1 kB\nVmLck:\t       0 kB\nVmHWM:\t 2 kB\n", 123456789, 0, out,
		sizeof(out));
	ASSERT_STREQ("VmSize:\t 1 kB\nVmLck:\t       0 kB\nVmPin:\t123456789 kB\nVmHWM:\t 2 kB\n",
		     out);
	/* Nothing to add: the text is the host's byte for byte, a last line without \n too. */
	rewrite("Name:\ty\nVmPin:\t       0 kB\nTail", 0, 0, out, sizeof(out));
	ASSERT_STREQ("Name:\ty\nVmPin:\t       0 kB\nTail", out);
}

TEST_HARNESS_MAIN
