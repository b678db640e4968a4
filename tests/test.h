/* Minimal test framework. A test file writes
 *     TEST(name) { CHECK(cond); CHECK_NEAR(a, b, tol); ... }
 * Tests register themselves at load time; tests/test_main.c runs them and
 * prints "N passed, N failed, N skipped". SKIP("why") skips the current test. */
#ifndef DSV3_TEST_H
#define DSV3_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef void (*test_fn)(void);
void test_register(const char *name, const char *file, test_fn fn);
void test_fail_at(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void test_skip(const char *why);
int test_failed_now(void);
/* Path of ../shared/fixtures (or $DSV3_FIXTURES); NULL if absent. */
const char *test_fixtures_dir(void);
/* Runs an in-process CLI command with stdout redirected to out_path (NULL =
 * discarded); returns its exit code (-100 if redirection failed). */
int test_run_cli(int (*fn)(int, char **), int argc, char **argv, const char *out_path);
/* Path of the dsv3 binary built next to this test binary. */
const char *test_dsv3_bin(void);
/* Scratch directory for the current run (created on demand). */
const char *test_tmp_dir(void);

#define TEST(name)                                                          \
    static void test_##name(void);                                          \
    __attribute__((constructor)) static void test_reg_##name(void) {        \
        test_register(#name, __FILE__, test_##name);                        \
    }                                                                       \
    static void test_##name(void)

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) { test_fail_at(__FILE__, __LINE__, "CHECK(%s)", #cond); return; } \
    } while (0)

#define CHECK_MSG(cond, ...)                                                \
    do {                                                                    \
        if (!(cond)) { test_fail_at(__FILE__, __LINE__, __VA_ARGS__); return; } \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                               \
    do {                                                                    \
        double a_ = (double)(a), b_ = (double)(b);                          \
        if (!(fabs(a_ - b_) <= (tol))) {                                    \
            test_fail_at(__FILE__, __LINE__, "CHECK_NEAR(%s=%.9g, %s=%.9g, tol %g)", #a, a_, #b, b_, (double)(tol)); \
            return;                                                         \
        }                                                                   \
    } while (0)

#define SKIP(why) do { test_skip(why); return; } while (0)

#endif
