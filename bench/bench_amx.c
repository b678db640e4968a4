/* AMX BF16 matmul microbenchmark vs the generic CPU backend.
 *
 *   build/bench_amx [-t threads] [-r reps=5] [--T 512] [--rows 1024] [--cols 2816]
 *                   [--vocab 129280] [--hidden 1024] [--only prefill|decode] [--no-backend]
 *
 * Prefill: GFLOP/s (useful 2*T*rows*cols flops) of [T] x [rows x cols] for BF16
 * and FP8 E4M3 (128x128 blocks) weights. Decode: T=1 on a vocab x hidden BF16
 * (and FP8) matrix (the lm_head of the bench model), reported as weight GB/s.
 * Medians over the repetitions after one warm-up (the best in brackets: the
 * machine may be shared). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsv3/clock.h"
#include "dsv3/fp8.h"
#include "dsv3/ops.h"
#include "ops/cpu/amx.h"

static uint64_t g_rng = 12345;
static float urand(void) {
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((g_rng >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    dsv3_weight W;
    void *data;
    float *scale;
} bweight;

static bweight make(dsv3_dtype dt, int64_t rows, int64_t cols) {
    bweight b;
    size_t n = (size_t)rows * cols;
    int64_t sr = (rows + 127) / 128, sc = (cols + 127) / 128;
    b.data = malloc(n * dsv3_dtype_size(dt));
    b.scale = malloc(sizeof(float) * sr * sc);
    for (int64_t i = 0; i < sr * sc; i++) b.scale[i] = 0.01f;
    if (dt == DSV3_BF16) {
        uint16_t *p = b.data;
        for (size_t i = 0; i < n; i++) p[i] = dsv3_f32_to_bf16(urand() * 0.05f);
    } else {
        uint8_t *p = b.data;
        for (size_t i = 0; i < n; i++) p[i] = dsv3_fp8_e4m3_encode(urand() * 400.0f);
    }
    dsv3_weight W = {dt, rows, cols, b.data, dt == DSV3_BF16 ? NULL : b.scale, 128, 128, sr, sc};
    b.W = W;
    return b;
}

/* Median seconds of one call (reps after a warm-up), *best = the fastest. which: 0 = AMX, 1 = backend. */
static double time_it(int which, float *out, const float *x, int64_t T, const dsv3_weight *W, int reps, double *best) {
    const dsv3_backend *be = dsv3_backend_cpu();
    double t[64];
    if (reps > 64) reps = 64;
    for (int r = -1; r < reps; r++) {
        double t0 = dsv3_now_s();
        if (which == 0) dsv3_matmul_rows_amx(out, W->rows, x, T, W, 0, W->rows);
        else be->matmul(out, x, T, W);
        double dt = dsv3_now_s() - t0;
        if (r >= 0) t[r] = dt;
    }
    qsort(t, reps, sizeof *t, cmp_d);
    *best = t[0];
    return t[reps / 2];
}

int main(int argc, char **argv) {
    int reps = 5, threads = omp_get_max_threads(), backend = 1;
    const char *only = "";
    int64_t T = 512, rows = 1024, cols = 2816, vocab = 129280, hidden = 1024;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--T") && i + 1 < argc) T = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc) rows = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--cols") && i + 1 < argc) cols = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--vocab") && i + 1 < argc) vocab = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--hidden") && i + 1 < argc) hidden = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--no-backend")) backend = 0;
        else {
            fprintf(stderr, "usage: %s [-t threads] [-r reps] [--T N] [--rows N] [--cols N] [--vocab N] [--hidden N] [--only prefill|decode] [--no-backend]\n",
                    argv[0]);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    if (!dsv3_amx_available()) {
        fprintf(stderr, "bench_amx: AMX-BF16 not available on this CPU/OS\n");
        return 1;
    }
    omp_set_num_threads(threads);
    printf("threads %d, reps %d (median)\n", threads, reps);

    /* prefill */
    float *x, *y;
    if (strcmp(only, "decode") != 0) {
    x = malloc(sizeof(float) * T * cols), y = malloc(sizeof(float) * T * rows);
    for (int64_t i = 0; i < T * cols; i++) x[i] = urand();
    for (int f = 0; f < 2; f++) {
        bweight b = make(f ? DSV3_F8_E4M3 : DSV3_BF16, rows, cols);
        double flops = 2.0 * T * rows * cols;
        double ba = 0, bb = 0, ta = time_it(0, y, x, T, &b.W, reps, &ba);
        printf("prefill T=%lld %s %lldx%lld: amx %.2f ms %.1f GFLOP/s [best %.1f]", (long long)T, f ? "FP8 " : "BF16",
               (long long)rows, (long long)cols, ta * 1e3, flops / ta * 1e-9, flops / ba * 1e-9);
        if (backend) {
            double tb = time_it(1, y, x, T, &b.W, reps, &bb);
            printf(" | backend %.2f ms %.1f GFLOP/s [best %.1f] | x%.1f", tb * 1e3, flops / tb * 1e-9, flops / bb * 1e-9,
                   tb / ta);
        }
        printf("\n");
        free(b.data);
        free(b.scale);
    }
    free(x);
    free(y);
    }

    /* decode: T = 1 on the lm_head-sized matrix */
    if (strcmp(only, "prefill") != 0) {
    x = malloc(sizeof(float) * hidden);
    y = malloc(sizeof(float) * vocab);
    for (int64_t i = 0; i < hidden; i++) x[i] = urand();
    for (int f = 0; f < 2; f++) {
        bweight b = make(f ? DSV3_F8_E4M3 : DSV3_BF16, vocab, hidden);
        double bytes = (double)vocab * hidden * (f ? 1 : 2);
        double ba = 0, bb = 0, ta = time_it(0, y, x, 1, &b.W, reps, &ba);
        printf("decode  T=1   %s %lldx%lld: amx %.2f ms %.1f GB/s [best %.1f]", f ? "FP8 " : "BF16", (long long)vocab,
               (long long)hidden, ta * 1e3, bytes / ta * 1e-9, bytes / ba * 1e-9);
        if (backend) {
            double tb = time_it(1, y, x, 1, &b.W, reps, &bb);
            printf(" | backend %.2f ms %.1f GB/s [best %.1f] | x%.1f", tb * 1e3, bytes / tb * 1e-9, bytes / bb * 1e-9,
                   tb / ta);
        }
        printf("\n");
        free(b.data);
        free(b.scale);
    }
    free(x);
    free(y);
    }
    return 0;
}
