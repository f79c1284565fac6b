/* SPDX-License-Identifier: MIT */
/*
 * A small fixture/variant test harness for the uiommu ioctl tests.
 *
 * The shape follows the kselftest harness (FIXTURE, FIXTURE_VARIANT, TEST_F, ASSERT_*), but the
 * code is our own. One test program is one translation unit that includes this header once and
 * ends with TEST_HARNESS_MAIN.
 *
 *   FIXTURE(name) { fields };                   per-case state, reached as `self`
 *   FIXTURE_VARIANT(name) { fields };           optional parameters, reached as `variant`
 *   FIXTURE_VARIANT_ADD(name, vname) { .f = 1 };
 *   FIXTURE_SETUP(name) { ... }                 both required for every fixture
 *   FIXTURE_TEARDOWN(name) { ... }              runs only if setup returned
 *   TEST_F(name, test) { ... }                  one case per variant (or one case without)
 *   TEST_F_TIMEOUT(name, test, seconds)
 *   TEST(test) { ... }                          a case without fixture ("global.test")
 *
 * ASSERT_* print file:line and both values, then abort the case (longjmp to the runner, which
 * still runs the teardown when the setup completed). EXPECT_* record the failure and go on.
 * ASSERT_op(a, b) checks `a op b`, comparing the mathematical values, so a negative signed
 * value never equals a large unsigned one. SKIP(fmt, ...) ends the case as skipped.
 *
 * Each case runs in a forked child with alarm(timeout) (default 60 s, TEST_TIMEOUT overrides),
 * so a crash or a hang fails only that case. UIOMMU_TEST_NOFORK=1 runs the cases in-process,
 * without timeout, for debugging. An argument is a substring filter on "fixture.variant.test";
 * "-l" lists the cases; "--shard=I/N" runs every Nth case from the Ith (counted from 0, in
 * the order "-l" lists them), so that meson can run one long program as N tests side by side.
 *
 * The user's locked_vm is one count shared by every process of the user (src/mm/locked_vm.c),
 * so a program lowering RLIMIT_MEMLOCK would see the pins of every other test program that
 * runs beside it. The harness gives each program a count of its own: unless
 * $UIOMMU_LOCKED_VM_DIR is set, it points it at a private directory for the run (inherited by
 * the cases and the processes they fork, which share it) and removes it at the end.
 *
 * The output is TAP (version 12, what meson's `protocol : 'tap'` parses): the plan "1..N",
 * then per case "ok N name", "ok N name # SKIP" or "not ok N name # why"; everything else is a
 * comment line starting with '#', the last one "# N passed, N failed" (", N skipped" if any).
 * The exit status is 1 if a case failed, 77 (the GNU "skipped") if every selected case was
 * skipped, else 0. Under meson (UIOMMU_TEST_TAP=1 in the test environment) it is 0 once the
 * stream is complete: meson takes every verdict from the stream (a missing case is an error
 * there), and would turn any non-zero status into ERROR, hiding the per-case counts.
 */
#ifndef UIOMMU_TESTS_HARNESS_H
#define UIOMMU_TESTS_HARNESS_H

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define __H_UNUSED __attribute__((unused))

struct __h_variant {
	const char *name;
	const void *data;
	struct __h_variant *next;
};

struct __h_fixture {
	const char *name;
	struct __h_variant *variants;
};

struct __h_test {
	const char *name;
	struct __h_fixture *fixture;		/* NULL for TEST() */
	void (*fn)(struct __h_test *_metadata, const void *variant);
	unsigned int timeout;			/* seconds; 0 means the default */
	struct __h_test *next;
	/* State of the running case. */
	bool failed, skipped, setup_done;
	jmp_buf env;
};

static struct __h_test *__h_tests, **__h_tests_tail = &__h_tests;

static __H_UNUSED void __h_register_test(struct __h_test *t)
{
	*__h_tests_tail = t;
	__h_tests_tail = &t->next;
}

static __H_UNUSED void __h_register_variant(struct __h_fixture *f, struct __h_variant *v)
{
	struct __h_variant **p = &f->variants;

	while (*p)
		p = &(*p)->next;
	*p = v;
}

/* ---- Fixtures and tests ------------------------------------------------------------------ */

#define FIXTURE_DATA(f) struct _h_fixture_data_##f
#define FIXTURE_VARIANT(f) struct _h_fixture_variant_##f

#define __H_FIXTURE_ARGS(f)                                                                    \
	struct __h_test *_metadata __H_UNUSED, FIXTURE_DATA(f) *self __H_UNUSED,               \
	const FIXTURE_VARIANT(f) *variant __H_UNUSED

#define FIXTURE(f)                                                                             \
	FIXTURE_VARIANT(f);                                                                    \
	FIXTURE_DATA(f);                                                                       \
	static struct __h_fixture __h_fixture_##f = { .name = #f };                           \
	static void _h_setup_##f(__H_FIXTURE_ARGS(f));                                         \
	static void _h_teardown_##f(__H_FIXTURE_ARGS(f));                                      \
	FIXTURE_DATA(f)

#define FIXTURE_SETUP(f) static void _h_setup_##f(__H_FIXTURE_ARGS(f))
#define FIXTURE_TEARDOWN(f) static void _h_teardown_##f(__H_FIXTURE_ARGS(f))

#define FIXTURE_VARIANT_ADD(f, v)                                                              \
	static const FIXTURE_VARIANT(f) _h_variant_##f##_##v;                                  \
	static struct __h_variant __h_vmeta_##f##_##v = {                                      \
		.name = #v, .data = &_h_variant_##f##_##v };                                   \
	static void __attribute__((constructor)) __h_vreg_##f##_##v(void)                      \
	{                                                                                      \
		__h_register_variant(&__h_fixture_##f, &__h_vmeta_##f##_##v);                  \
	}                                                                                      \
	static const FIXTURE_VARIANT(f) _h_variant_##f##_##v =

#define TEST_F_TIMEOUT(f, t, secs)                                                             \
	static void __h_body_##f##_##t(__H_FIXTURE_ARGS(f));                                   \
	static void __h_wrap_##f##_##t(struct __h_test *_metadata, const void *__v)            \
	{                                                                                      \
		static FIXTURE_DATA(f) __h_self;                                               \
		const FIXTURE_VARIANT(f) *__h_var = __v;                                       \
		memset(&__h_self, 0, sizeof(__h_self));                                        \
		if (setjmp(_metadata->env) == 0) {                                             \
			_h_setup_##f(_metadata, &__h_self, __h_var);                           \
			_metadata->setup_done = true;                                          \
			__h_body_##f##_##t(_metadata, &__h_self, __h_var);                     \
		}                                                                              \
		if (_metadata->setup_done && setjmp(_metadata->env) == 0)                      \
			_h_teardown_##f(_metadata, &__h_self, __h_var);                        \
	}                                                                                      \
	static struct __h_test __h_test_##f##_##t = {                                          \
		.name = #t, .fixture = &__h_fixture_##f, .fn = __h_wrap_##f##_##t,             \
		.timeout = (secs) };                                                           \
	static void __attribute__((constructor)) __h_treg_##f##_##t(void)                      \
	{                                                                                      \
		__h_register_test(&__h_test_##f##_##t);                                        \
	}                                                                                      \
	static void __h_body_##f##_##t(__H_FIXTURE_ARGS(f))

#define TEST_F(f, t) TEST_F_TIMEOUT(f, t, 0)

#define TEST(t)                                                                                \
	static void __h_body_##t(struct __h_test *_metadata);                                  \
	static void __h_wrap_##t(struct __h_test *_metadata, const void *__v __H_UNUSED)       \
	{                                                                                      \
		if (setjmp(_metadata->env) == 0)                                               \
			__h_body_##t(_metadata);                                               \
	}                                                                                      \
	static struct __h_test __h_test_##t = { .name = #t, .fn = __h_wrap_##t };              \
	static void __attribute__((constructor)) __h_treg_##t(void)                            \
	{                                                                                      \
		__h_register_test(&__h_test_##t);                                              \
	}                                                                                      \
	static void __h_body_##t(struct __h_test *_metadata __H_UNUSED)

/* ---- Assertions -------------------------------------------------------------------------- */

#define TH_LOG(fmt, ...) fprintf(stdout, "#     " fmt "\n", ##__VA_ARGS__)

static __H_UNUSED void __h_abort(struct __h_test *m)
{
	longjmp(m->env, 1);
}

/* Mathematical three-way comparison of two integers given as bits plus signedness. */
static __H_UNUSED int __h_cmp3(bool sa, uintmax_t a, bool sb, uintmax_t b)
{
	bool na = sa && (intmax_t)a < 0, nb = sb && (intmax_t)b < 0;

	if (na != nb)
		return na ? -1 : 1;
	if (na)
		return (intmax_t)a < (intmax_t)b ? -1 : (intmax_t)a > (intmax_t)b;
	return a < b ? -1 : a > b;
}

enum { __H_EQ, __H_NE, __H_LT, __H_LE, __H_GT, __H_GE };

static __H_UNUSED bool __h_cmp_ok(int op, int c)
{
	switch (op) {
	case __H_EQ: return c == 0;
	case __H_NE: return c != 0;
	case __H_LT: return c < 0;
	case __H_LE: return c <= 0;
	case __H_GT: return c > 0;
	default: return c >= 0;
	}
}

static __H_UNUSED void __h_print_val(const char *what, const char *expr, bool s, uintmax_t v)
{
	if (s)
		printf("#     %s %s = %jd (0x%jx)\n", what, expr, (intmax_t)v, v);
	else
		printf("#     %s %s = %ju (0x%jx)\n", what, expr, v, v);
}

static __H_UNUSED const char *__h_errname(int e)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
	const char *n = strerrorname_np(e);

	if (n)
		return n;
#endif
	return e ? strerror(e) : "0";
}

#define __H_SIGNED(x) (((__typeof__(x))-1) < (__typeof__(x))1)
/*
 * The operand's type after lvalue conversion: an _Atomic or const operand gives a plain copy
 * (clang rejects casts to an _Atomic type, which __H_SIGNED() would otherwise make).
 */
#define __H_TYPEOF(x) __typeof__(((void)0, (x)))

#define __H_CMP(a, b, op, opstr, fatal)                                                        \
	do {                                                                                   \
		__H_TYPEOF(a) __h_a = (a);                                                     \
		__H_TYPEOF(b) __h_b = (b);                                                     \
		if (!__h_cmp_ok(op, __h_cmp3(__H_SIGNED(__h_a), (uintmax_t)__h_a,              \
					     __H_SIGNED(__h_b), (uintmax_t)__h_b))) {          \
			printf("#   %s:%d: check failed: %s %s %s\n", __FILE__, __LINE__, #a,      \
			       opstr, #b);                                                     \
			__h_print_val("left ", #a, __H_SIGNED(__h_a), (uintmax_t)__h_a);       \
			__h_print_val("right", #b, __H_SIGNED(__h_b), (uintmax_t)__h_b);       \
			_metadata->failed = true;                                              \
			if (fatal)                                                             \
				__h_abort(_metadata);                                          \
		}                                                                              \
	} while (0)

#define __H_BOOL(x, want, fatal)                                                               \
	do {                                                                                   \
		if ((bool)(x) != (bool)(want)) {                                               \
			printf("#   %s:%d: expected %s to be %s\n", __FILE__, __LINE__, #x,        \
			       (want) ? "true" : "false");                                     \
			_metadata->failed = true;                                              \
			if (fatal)                                                             \
				__h_abort(_metadata);                                          \
		}                                                                              \
	} while (0)

/* expr must return -1 with errno == en. */
#define __H_ERRNO(en, expr, fatal)                                                             \
	do {                                                                                   \
		int __h_want = (en), __h_got;                                                  \
		long __h_rc;                                                                   \
		errno = 0;                                                                     \
		__h_rc = (long)(expr);                                                         \
		__h_got = errno;                                                               \
		if (__h_rc != -1 || __h_got != __h_want) {                                     \
			printf("#   %s:%d: %s\n#     expected -1 with errno %s, got %ld", __FILE__, \
			       __LINE__, #expr, __h_errname(__h_want), __h_rc);                \
			if (__h_rc == -1)                                                      \
				printf(" with errno %s", __h_errname(__h_got));                \
			printf("\n");                                                          \
			_metadata->failed = true;                                              \
			if (fatal)                                                             \
				__h_abort(_metadata);                                          \
		}                                                                              \
	} while (0)

/* String equality; both strings are printed on failure. */
#define __H_STREQ(a, b, fatal)                                                                 \
	do {                                                                                   \
		const char *__h_a = (a), *__h_b = (b);                                         \
		if (!__h_a || !__h_b || strcmp(__h_a, __h_b)) {                               \
			printf("#   %s:%d: expected %s == %s\n#     left  \"%s\"\n#     right \"%s\"\n", \
			       __FILE__, __LINE__, #a, #b, __h_a ? __h_a : "(null)",          \
			       __h_b ? __h_b : "(null)");                                      \
			_metadata->failed = true;                                              \
			if (fatal)                                                             \
				__h_abort(_metadata);                                          \
		}                                                                              \
	} while (0)
#define ASSERT_STREQ(a, b) __H_STREQ(a, b, 1)
#define EXPECT_STREQ(a, b) __H_STREQ(a, b, 0)

#define ASSERT_EQ(a, b) __H_CMP(a, b, __H_EQ, "==", 1)
#define ASSERT_NE(a, b) __H_CMP(a, b, __H_NE, "!=", 1)
#define ASSERT_LT(a, b) __H_CMP(a, b, __H_LT, "<", 1)
#define ASSERT_LE(a, b) __H_CMP(a, b, __H_LE, "<=", 1)
#define ASSERT_GT(a, b) __H_CMP(a, b, __H_GT, ">", 1)
#define ASSERT_GE(a, b) __H_CMP(a, b, __H_GE, ">=", 1)
#define ASSERT_TRUE(x) __H_BOOL(x, true, 1)
#define ASSERT_FALSE(x) __H_BOOL(x, false, 1)
#define ASSERT_ERRNO(en, expr) __H_ERRNO(en, expr, 1)

#define EXPECT_EQ(a, b) __H_CMP(a, b, __H_EQ, "==", 0)
#define EXPECT_NE(a, b) __H_CMP(a, b, __H_NE, "!=", 0)
#define EXPECT_LT(a, b) __H_CMP(a, b, __H_LT, "<", 0)
#define EXPECT_LE(a, b) __H_CMP(a, b, __H_LE, "<=", 0)
#define EXPECT_GT(a, b) __H_CMP(a, b, __H_GT, ">", 0)
#define EXPECT_GE(a, b) __H_CMP(a, b, __H_GE, ">=", 0)
#define EXPECT_TRUE(x) __H_BOOL(x, true, 0)
#define EXPECT_FALSE(x) __H_BOOL(x, false, 0)
#define EXPECT_ERRNO(en, expr) __H_ERRNO(en, expr, 0)

#define SKIP(fmt, ...)                                                                         \
	do {                                                                                   \
		printf("#   SKIP: " fmt "\n", ##__VA_ARGS__);                                      \
		_metadata->skipped = true;                                                     \
		__h_abort(_metadata);                                                          \
	} while (0)

/* ---- Runner ------------------------------------------------------------------------------ */

enum { __H_PASS, __H_FAIL, __H_SKIP };

static __H_UNUSED int __h_run_case(struct __h_test *t, const void *vdata, bool nofork,
				   unsigned int timeout, char *why, size_t whylen)
{
	int status;
	pid_t pid;

	t->failed = t->skipped = t->setup_done = false;
	why[0] = 0;
	if (nofork) {
		t->fn(t, vdata);
		return t->failed ? __H_FAIL : t->skipped ? __H_SKIP : __H_PASS;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		snprintf(why, whylen, "fork: %s", strerror(errno));
		return __H_FAIL;
	}
	if (pid == 0) {
		alarm(timeout);
		t->fn(t, vdata);
		fflush(NULL);
		_exit(t->failed ? 1 : t->skipped ? 2 : 0);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			snprintf(why, whylen, "waitpid: %s", strerror(errno));
			return __H_FAIL;
		}
	}
	if (WIFSIGNALED(status)) {
		if (WTERMSIG(status) == SIGALRM)
			snprintf(why, whylen, "timeout after %u s", timeout);
		else
			snprintf(why, whylen, "killed by signal %d (%s)", WTERMSIG(status),
				 strsignal(WTERMSIG(status)));
		return __H_FAIL;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return __H_PASS;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 2)
		return __H_SKIP;
	if (WIFEXITED(status) && WEXITSTATUS(status) != 1)
		snprintf(why, whylen, "exit status %d", WEXITSTATUS(status));
	return __H_FAIL;
}

static __H_UNUSED void __h_case_name(char *buf, size_t len, const struct __h_test *t,
				     const struct __h_variant *v)
{
	snprintf(buf, len, "%s%s%s.%s", t->fixture ? t->fixture->name : "global",
		 v ? "." : "", v ? v->name : "", t->name);
}

/* A private directory for the user's locked_vm count of this run (the essay says why). */
static __H_UNUSED void __h_locked_vm_private(char *dir, size_t len)
{
	const char *tmpdir = getenv("TMPDIR");

	dir[0] = '\0';
	if (getenv("UIOMMU_LOCKED_VM_DIR"))
		return;
	snprintf(dir, len, "%s/uiommu-test-locked_vm.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
	if (!mkdtemp(dir) || setenv("UIOMMU_LOCKED_VM_DIR", dir, 1))
		dir[0] = '\0';
}

static __H_UNUSED void __h_locked_vm_remove(const char *dir)
{
	char file[4096];

	if (!dir[0])
		return;
	snprintf(file, sizeof(file), "%s/uiommu-locked_vm", dir);
	unlink(file);
	rmdir(dir);
}

static __H_UNUSED int __h_run_all(int argc, char **argv)
{
	const char *filter = NULL, *env;
	unsigned int def_timeout = 60, n = 0, total = 0, passed = 0, failed = 0, skipped = 0;
	unsigned int shard = 0, shards = 1, ord;
	bool nofork, list = false;
	char name[256], why[128], lvdir[4096];
	int pass;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-l"))
			list = true;
		else if (!strncmp(argv[i], "--shard=", 8)) {
			if (sscanf(argv[i] + 8, "%u/%u", &shard, &shards) != 2 || !shards ||
			    shard >= shards) {
				fprintf(stderr, "bad %s: --shard=I/N with I < N\n", argv[i]);
				return 2;
			}
		} else
			filter = argv[i];
	}
	env = getenv("UIOMMU_TEST_NOFORK");
	nofork = env && *env && strcmp(env, "0");
	env = getenv("TEST_TIMEOUT");
	if (env && atoi(env) > 0)
		def_timeout = (unsigned int)atoi(env);
	setvbuf(stdout, NULL, _IOLBF, 0);
	__h_locked_vm_private(lvdir, sizeof(lvdir));

	/* Pass 0 counts the selected cases, pass 1 runs them. */
	for (pass = 0; pass < 2; pass++) {
		if (pass == 1 && !list)
			printf("1..%u\n", total);
		ord = 0;
		for (struct __h_test *t = __h_tests; t; t = t->next) {
			struct __h_variant *v = t->fixture ? t->fixture->variants : NULL;

			do {
				__h_case_name(name, sizeof(name), t, v);
				if (ord++ % shards != shard)
					continue;
				if (filter && !strstr(name, filter))
					continue;
				if (pass == 0) {
					total++;
					continue;
				}
				if (list) {
					printf("%s\n", name);
					continue;
				}
				n++;
				switch (__h_run_case(t, v ? v->data : NULL, nofork,
						     t->timeout ? t->timeout : def_timeout, why,
						     sizeof(why))) {
				case __H_PASS:
					passed++;
					printf("ok %u %s\n", n, name);
					break;
				case __H_SKIP:
					skipped++;
					printf("ok %u %s # SKIP\n", n, name);
					break;
				default:
					failed++;
					printf("not ok %u %s%s%s\n", n, name, why[0] ? " # " : "",
					       why);
				}
			} while (v && (v = v->next));
		}
	}
	__h_locked_vm_remove(lvdir);
	if (list)
		return 0;
	printf("# %u passed, %u failed", passed, failed);
	if (skipped)
		printf(", %u skipped", skipped);
	printf("\n");
	env = getenv("UIOMMU_TEST_TAP");
	if (env && *env && strcmp(env, "0"))
		return 0;
	if (failed)
		return 1;
	return skipped && skipped == total ? 77 : 0;
}

#define TEST_HARNESS_MAIN                                                                      \
	int main(int argc, char **argv)                                                        \
	{                                                                                      \
		return __h_run_all(argc, argv);                                                \
	}

#endif /* UIOMMU_TESTS_HARNESS_H */
