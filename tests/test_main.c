/* Test runner: runs every registered test (or those whose name contains one
 * of the arguments) and prints "N passed, N failed, N skipped". */
#define _GNU_SOURCE /* nftw */
#include "test.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 4096
static struct { const char *name, *file; test_fn fn; } g_tests[MAX_TESTS];
static int g_ntests, g_cur_failed, g_cur_skipped;

void test_register(const char *name, const char *file, test_fn fn) {
    if (g_ntests < MAX_TESTS) {
        g_tests[g_ntests].name = name;
        g_tests[g_ntests].file = file;
        g_tests[g_ntests].fn = fn;
        g_ntests++;
    }
}

void test_fail_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "    %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    g_cur_failed = 1;
}

void test_skip(const char *why) {
    fprintf(stderr, "    skipped: %s\n", why);
    g_cur_skipped = 1;
}

int test_failed_now(void) { return g_cur_failed; }

const char *test_fixtures_dir(void) {
    static char buf[4096];
    static int done;
    if (!done) {
        done = 1;
        const char *env = getenv("DSV3_FIXTURES");
        const char *cands[] = {env, "../shared/fixtures", "../../shared/fixtures"};
        buf[0] = 0;
        for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
            struct stat st;
            if (cands[i] && stat(cands[i], &st) == 0 && S_ISDIR(st.st_mode)) {
                snprintf(buf, sizeof buf, "%s", cands[i]);
                break;
            }
        }
    }
    return buf[0] ? buf : NULL;
}

const char *test_tmp_dir(void) {
    static char buf[256];
    if (!buf[0]) {
        snprintf(buf, sizeof buf, "tmp/test-%d", (int)getpid());
        mkdir("tmp", 0755);
        mkdir(buf, 0755);
    }
    return buf;
}

const char *test_dsv3_bin(void) {
    static char path[4096];
    if (!path[0]) {
        ssize_t n = readlink("/proc/self/exe", path, sizeof path - 16);
        if (n <= 0) return "build/dsv3";
        path[n] = 0;
        char *slash = strrchr(path, '/');
        strcpy(slash ? slash + 1 : path, "dsv3");
    }
    return path;
}

int test_run_cli(int (*fn)(int, char **), int argc, char **argv, const char *out_path) {
    fflush(stdout);
    int saved = dup(1);
    int fd = out_path ? open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644) : open("/dev/null", O_WRONLY);
    if (fd < 0 || saved < 0) {
        if (fd >= 0) close(fd);
        if (saved >= 0) close(saved);
        return -100;
    }
    dup2(fd, 1);
    close(fd);
    int rc = fn(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    return rc;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

/* Removes this run's scratch directory unless DSV3_KEEP_TMP is set. */
static void cleanup_tmp(void) {
    static char dir[256];
    snprintf(dir, sizeof dir, "tmp/test-%d", (int)getpid());
    struct stat st;
    if (!getenv("DSV3_KEEP_TMP") && stat(dir, &st) == 0) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int passed = 0, failed = 0, skipped = 0;
    int nfilters = 0;
    const char *filters[64];
    for (int i = 1; i < argc && nfilters < 64; i++)
        if (argv[i][0] != '-') filters[nfilters++] = argv[i];
    for (int i = 0; i < g_ntests; i++) {
        if (nfilters) {
            int hit = 0;
            for (int f = 0; f < nfilters; f++) hit |= strstr(g_tests[i].name, filters[f]) != NULL;
            if (!hit) continue;
        }
        g_cur_failed = g_cur_skipped = 0;
        double t0 = now_s();
        fprintf(stderr, "[ RUN  ] %s\n", g_tests[i].name);
        g_tests[i].fn();
        double dt = now_s() - t0;
        if (g_cur_failed) { failed++; fprintf(stderr, "[ FAIL ] %s (%.2fs)\n", g_tests[i].name, dt); }
        else if (g_cur_skipped) { skipped++; fprintf(stderr, "[ SKIP ] %s\n", g_tests[i].name); }
        else { passed++; fprintf(stderr, "[  OK  ] %s (%.2fs)\n", g_tests[i].name, dt); }
    }
    cleanup_tmp();
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
