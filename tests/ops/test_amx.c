/* AMX BF16 matmul kernel (src/ops/cpu/matmul_amx.c): accuracy vs a double
 * reference, bitwise batch/thread/row-range invariance, odd shapes, unaligned
 * weights, extreme activations. Skips when the CPU/OS has no AMX. */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../test.h"
#include "dsv3/ops.h"
#include "ops/cpu/amx.h"

#define SKIP_WITHOUT_AMX() \
    do { if (!dsv3_amx_available()) SKIP("no AMX-BF16 (CPU or OS permission; or DSV3_NO_AMX set)"); } while (0)

static uint64_t rng_next(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 11;
}
static float urand(uint64_t *s) { return (float)((rng_next(s) >> 29) & 0xffffff) / 16777216.0f * 2.0f - 1.0f; }

typedef enum { X_UNIFORM, X_MIXED, X_TINY, X_HUGE } xmode;

/* x values: uniform [-1,1]; mixed = zeros, negatives and magnitudes 1e-30..1e30; tiny/huge = uniform * 1e-30 / 1e30. */
static void fill_x(float *x, int64_t n, xmode m, uint64_t seed) {
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) {
        float u = urand(&s);
        switch (m) {
        case X_UNIFORM: x[i] = u; break;
        case X_TINY: x[i] = u * 1e-30f; break;
        case X_HUGE: x[i] = u * 1e30f; break;
        case X_MIXED: {
            uint64_t r = rng_next(&s) % 8;
            if (r == 0) x[i] = 0.0f;
            else if (r == 1) x[i] = -0.0f;
            else x[i] = u * powf(10.0f, (float)((int)(rng_next(&s) % 61) - 30)); /* 1e-30 .. 1e30, both signs */
            break;
        }
        }
    }
}

/* A weight with storage offset by `misalign` bytes from a malloc'ed block.
 * FP8: random codes (no NaN) and scales ~0.01. */
typedef struct {
    dsv3_weight W;
    uint8_t *block;
    float *scale;
} test_weight;

static test_weight make_weight(dsv3_dtype dt, int64_t rows, int64_t cols, int64_t br, int64_t bc, int misalign,
                               uint64_t seed) {
    test_weight tw;
    uint64_t s = seed;
    size_t esz = dsv3_dtype_size(dt);
    tw.block = malloc(rows * cols * esz + 8);
    uint8_t *data = tw.block + misalign;
    int64_t sr = (rows + br - 1) / br, sc = (cols + bc - 1) / bc;
    tw.scale = malloc(sizeof(float) * (sr * sc + 1));
    for (int64_t i = 0; i < sr * sc; i++) tw.scale[i] = 0.01f * (1.0f + 0.37f * urand(&s));
    for (int64_t i = 0; i < rows * cols; i++) {
        float v = urand(&s);
        if (dt == DSV3_BF16) {
            uint16_t h = dsv3_f32_to_bf16(v);
            memcpy(data + 2 * i, &h, 2);
        } else {
            uint8_t q = (uint8_t)(rng_next(&s) & 0xff);
            if ((q & 0x7f) == 0x7f || (dt == DSV3_F8_E5M2 && (q & 0x7c) == 0x7c)) q &= 0xf0; /* no NaN/Inf codes */
            data[i] = q;
        }
    }
    dsv3_weight W = {dt, rows, cols, data, dt == DSV3_BF16 ? NULL : tw.scale, br, bc, sr, sc, 0, 0};
    tw.W = W;
    return tw;
}

static void free_weight(test_weight *tw) {
    free(tw->block);
    free(tw->scale);
}

/* |y - ref| <= rel * sum_i |w_i x_i| (+ a denormal-sized floor) for all tokens/rows. */
static void check_vs_ref(const dsv3_weight *W, const float *x, int64_t T, const float *y, double rel, double *worst) {
    int64_t K = W->cols;
    float *row = malloc(sizeof(float) * (K + 1));
    for (int64_t o = 0; o < W->rows && !test_failed_now(); o++) {
        dsv3_weight_row_f32(W, o, row);
        for (int64_t t = 0; t < T; t++) {
            const float *xt = x + t * K;
            double ref = dsv3_dot_ref(row, xt, K), mag = 0;
            for (int64_t i = 0; i < K; i++) mag += fabs((double)row[i] * xt[i]);
            double err = fabs((double)y[t * W->rows + o] - ref), bound = rel * mag + 1e-37;
            if (mag > 0 && err / mag > *worst) *worst = err / mag;
            if (!(err <= bound)) {
                test_fail_at(__FILE__, __LINE__, "%s %lldx%lld row %lld token %lld: got %.9g ref %.9g (sum|wx| %.3g)",
                             dsv3_dtype_name(W->dtype), (long long)W->rows, (long long)K, (long long)o, (long long)t,
                             (double)y[t * W->rows + o], ref, mag);
                break;
            }
        }
    }
    free(row);
}

/* Full check of one weight: accuracy at T=Tmax, every smaller T and T=1 per token bitwise equal. */
static void check_weight(const dsv3_weight *W, xmode xm, int64_t Tmax, int per_token_t1, double *worst) {
    static const int64_t Ts[] = {1, 2, 5, 16, 17, 33, 64};
    int64_t K = W->cols, R = W->rows;
    float *x = malloc(sizeof(float) * Tmax * K + 4), *y = malloc(sizeof(float) * Tmax * R + 4),
          *y2 = malloc(sizeof(float) * Tmax * R + 4);
    fill_x(x, Tmax * K, xm, 7 + (uint64_t)K);
    CHECK(dsv3_matmul_rows_amx_try(y, R, x, Tmax, W, 0, R) == 0);
    check_vs_ref(W, x, Tmax, y, 1e-6, worst);
    for (size_t i = 0; i < sizeof Ts / sizeof *Ts && !test_failed_now(); i++) {
        int64_t T = Ts[i];
        if (T >= Tmax) break;
        CHECK(dsv3_matmul_rows_amx_try(y2, R, x, T, W, 0, R) == 0);
        CHECK_MSG(memcmp(y2, y, sizeof(float) * T * R) == 0, "%lldx%lld: T=%lld differs from T=%lld", (long long)R,
                  (long long)K, (long long)T, (long long)Tmax);
    }
    if (per_token_t1)
        for (int64_t t = 0; t < Tmax && !test_failed_now(); t++) {
            CHECK(dsv3_matmul_rows_amx_try(y2, R, x + t * K, 1, W, 0, R) == 0);
            CHECK_MSG(memcmp(y2, y + t * R, sizeof(float) * R) == 0, "%lldx%lld: token %lld alone differs from T=%lld",
                      (long long)R, (long long)K, (long long)t, (long long)Tmax);
        }
    free(x);
    free(y);
    free(y2);
}

TEST(amx_available) {
    int a = dsv3_amx_available();
    fprintf(stderr, "  AMX-BF16 %s\n", a ? "available" : "not available");
    CHECK(a == dsv3_amx_available()); /* stable */
    if (!a) SKIP("no AMX-BF16");
}

TEST(amx_matmul_bf16_odd_shapes) {
    SKIP_WITHOUT_AMX();
    static const int64_t shapes[][2] = {{1, 1}, {1, 300}, {300, 1}, {16, 32}, {17, 33}, {31, 31}, {32, 64},
                                        {33, 65}, {67, 300}, {129, 257}, {47, 100}, {300, 31}};
    double worst = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes && !test_failed_now(); i++) {
        test_weight tw = make_weight(DSV3_BF16, shapes[i][0], shapes[i][1], 128, 128, (int)(i % 3), 100 + i);
        check_weight(&tw.W, X_UNIFORM, 64, i % 4 == 0, &worst);
        free_weight(&tw);
    }
    fprintf(stderr, "  worst |err| / sum|wx| = %.3g\n", worst);
}

TEST(amx_matmul_fp8_odd_shapes) {
    SKIP_WITHOUT_AMX();
    /* rows, cols, block_r, block_c: partial blocks, blocks not a multiple of 32, E5M2 */
    static const int64_t shapes[][4] = {{1, 1, 128, 128},   {200, 260, 128, 128}, {300, 129, 128, 128}, {1, 300, 128, 128},
                                        {129, 257, 128, 128}, {70, 150, 40, 48},  {33, 100, 16, 20},    {20, 64, 7, 64}};
    double worst = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes && !test_failed_now(); i++) {
        dsv3_dtype dt = i == 4 ? DSV3_F8_E5M2 : DSV3_F8_E4M3;
        test_weight tw = make_weight(dt, shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], (int)(i % 2), 200 + i);
        check_weight(&tw.W, X_UNIFORM, 64, i % 3 == 0, &worst);
        free_weight(&tw);
    }
    fprintf(stderr, "  worst |err| / sum|wx| = %.3g\n", worst);
}

TEST(amx_matmul_large_bf16_fp8) {
    SKIP_WITHOUT_AMX();
    double worst = 0;
    for (int f = 0; f < 2 && !test_failed_now(); f++) {
        test_weight tw = make_weight(f ? DSV3_F8_E4M3 : DSV3_BF16, 1024, 2816, 128, 128, 1, 300 + f);
        check_weight(&tw.W, X_UNIFORM, 64, 1, &worst);
        free_weight(&tw);
    }
    fprintf(stderr, "  worst |err| / sum|wx| = %.3g\n", worst);
}

TEST(amx_matmul_extreme_values) {
    SKIP_WITHOUT_AMX();
    static const xmode modes[] = {X_MIXED, X_TINY, X_HUGE};
    double worst = 0;
    for (int f = 0; f < 2; f++)
        for (size_t m = 0; m < 3 && !test_failed_now(); m++) {
            test_weight tw = make_weight(f ? DSV3_F8_E4M3 : DSV3_BF16, 77, 333, 128, 128, 0, 400 + m);
            check_weight(&tw.W, modes[m], 17, 0, &worst);
            free_weight(&tw);
        }
    fprintf(stderr, "  worst |err| / sum|wx| = %.3g\n", worst);
}

/* 1 vs 2 threads and row sub-ranges with a larger ld: bitwise equal to the full result. */
TEST(amx_matmul_threads_and_row_ranges) {
    SKIP_WITHOUT_AMX();
    for (int f = 0; f < 2 && !test_failed_now(); f++) {
        const int64_t R = 1000, K = 700, T = 33;
        test_weight tw = make_weight(f ? DSV3_F8_E4M3 : DSV3_BF16, R, K, 128, 128, 3, 500 + f);
        float *x = malloc(sizeof(float) * T * K), *y = malloc(sizeof(float) * T * R), *y2 = malloc(sizeof(float) * T * R);
        fill_x(x, T * K, X_MIXED, 9);
        int nt = omp_get_max_threads();
        omp_set_num_threads(1);
        CHECK(dsv3_matmul_rows_amx_try(y, R, x, T, &tw.W, 0, R) == 0);
        omp_set_num_threads(2);
        CHECK(dsv3_matmul_rows_amx_try(y2, R, x, T, &tw.W, 0, R) == 0);
        omp_set_num_threads(nt);
        CHECK_MSG(memcmp(y, y2, sizeof(float) * T * R) == 0, "1 vs 2 threads differ");
        for (int n = 1; n <= 2; n++) { /* decode-sized call on 1 and 2 threads */
            omp_set_num_threads(n);
            CHECK(dsv3_matmul_rows_amx_try(y2, R, x + 7 * K, 1, &tw.W, 0, R) == 0);
            omp_set_num_threads(nt);
            CHECK_MSG(memcmp(y2, y + 7 * R, sizeof(float) * R) == 0, "T=1 on %d thread(s) differs from T=%lld", n,
                      (long long)T);
        }
        static const int64_t ranges[][2] = {{0, 1}, {5, 37}, {16, 48}, {999, 1000}, {100, 900}, {3, 1000}};
        const int64_t ld = R + 3;
        float *z = malloc(sizeof(float) * T * ld);
        for (size_t i = 0; i < sizeof ranges / sizeof *ranges && !test_failed_now(); i++) {
            int64_t r0 = ranges[i][0], r1 = ranges[i][1];
            CHECK(dsv3_matmul_rows_amx_try(z, ld, x, T, &tw.W, r0, r1) == 0);
            for (int64_t t = 0; t < T; t++)
                CHECK_MSG(memcmp(z + t * ld, y + t * R + r0, sizeof(float) * (r1 - r0)) == 0,
                          "rows [%lld,%lld) token %lld differ from the full matmul", (long long)r0, (long long)r1,
                          (long long)t);
        }
        free(z);
        free(x);
        free(y);
        free(y2);
        free_weight(&tw);
    }
}

/* The void entry point matches the _try one; unsupported dtypes are refused. */
TEST(amx_matmul_entry_points) {
    SKIP_WITHOUT_AMX();
    test_weight tw = make_weight(DSV3_BF16, 40, 50, 128, 128, 0, 600);
    float x[3 * 50], y[3 * 40], y2[3 * 40];
    fill_x(x, 3 * 50, X_UNIFORM, 1);
    CHECK(dsv3_matmul_rows_amx_try(y, 40, x, 3, &tw.W, 0, 40) == 0);
    dsv3_matmul_rows_amx(y2, 40, x, 3, &tw.W, 0, 40);
    CHECK(memcmp(y, y2, sizeof y) == 0);
    dsv3_weight F = tw.W;
    F.dtype = DSV3_F32;
    CHECK(!dsv3_amx_supports(&F));
    CHECK(dsv3_matmul_rows_amx_try(y, 40, x, 3, &F, 0, 40) == -1);
    free_weight(&tw);
}

/* Long prompts over a wide k: several token chunks and several packing regions
 * (the packed activations are bounded per region); still bitwise per token. */
TEST(amx_matmul_long_prompt_regions) {
    SKIP_WITHOUT_AMX();
    for (int f = 0; f < 2 && !test_failed_now(); f++) {
        const int64_t R = 24, K = 18432 + 5, T = 700;
        test_weight tw = make_weight(f ? DSV3_F8_E4M3 : DSV3_BF16, R, K, 128, 128, 1, 700 + f);
        float *x = malloc(sizeof(float) * T * K), *y = malloc(sizeof(float) * T * R), *y1 = malloc(sizeof(float) * R);
        fill_x(x, T * K, X_UNIFORM, 11);
        CHECK(dsv3_matmul_rows_amx_try(y, R, x, T, &tw.W, 0, R) == 0);
        static const int64_t toks[] = {0, 1, 15, 16, 300, 591, 592, 593, 699};
        for (size_t i = 0; i < sizeof toks / sizeof *toks && !test_failed_now(); i++) {
            int64_t t = toks[i];
            CHECK(dsv3_matmul_rows_amx_try(y1, R, x + t * K, 1, &tw.W, 0, R) == 0);
            CHECK_MSG(memcmp(y1, y + t * R, sizeof(float) * R) == 0, "token %lld alone differs from T=%lld", (long long)t,
                      (long long)T);
            double worst = 0;
            dsv3_weight one = tw.W; /* reference for this token only */
            float *yt = malloc(sizeof(float) * R);
            memcpy(yt, y1, sizeof(float) * R);
            check_vs_ref(&one, x + t * K, 1, yt, 1e-6, &worst);
            free(yt);
        }
        free(x);
        free(y);
        free(y1);
        free_weight(&tw);
    }
}

/* The model-level invariance tests (cached decode == full recompute and batch
 * invariance, MTP greedy output unchanged, MLA thread/group invariance, the
 * long-context and greedy goldens) use the default ISA (avx512 where
 * available); here the same tests run once more in a child process with
 * DSV3_CPU_ISA=amx, so every BF16/FP8 matmul goes through the AMX kernel. */
TEST(amx_isa_model_invariance) {
    SKIP_WITHOUT_AMX();
    if (!dsv3_cpu_isa_supported(DSV3_CPU_ISA_AMX)) SKIP("amx ISA level unsupported");
    if (getenv("DSV3_CPU_ISA")) SKIP("DSV3_CPU_ISA set: the suite already runs on a fixed path");
    if (!test_fixtures_dir()) SKIP("fixtures absent");
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) SKIP("cannot find the test binary");
    self[n] = 0;
    char cmd[8192], line[1024];
#if defined(__SANITIZE_ADDRESS__) /* unvectorised under the sanitizers: the invariance tests only */
    const char *tests = "cache_batch_invariance generate_mtp_greedy_identical";
    const int want = 4;
#else
    const char *tests = "cache_batch_invariance generate_mtp_greedy_identical mla_thread_group_invariance golden_long "
                        "golden_greedy golden_forward";
    const int want = 12;
#endif
    snprintf(cmd, sizeof cmd, "DSV3_CPU_ISA=amx '%s' %s 2>&1", self, tests);
    FILE *f = popen(cmd, "r");
    CHECK(f);
    int passed = -1, failed = -1, skipped = -1;
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "[ FAIL ]") || strstr(line, ".c:")) fprintf(stderr, "    amx child: %s", line);
        sscanf(line, "%d passed, %d failed, %d skipped", &passed, &failed, &skipped);
    }
    int rc = pclose(f);
    fprintf(stderr, "    on DSV3_CPU_ISA=amx: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
    CHECK_MSG(rc == 0 && failed == 0 && passed >= want, "model invariance tests on amx: rc %d, %d passed, %d failed", rc,
              passed, failed);
}
