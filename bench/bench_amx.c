/* AMX BF16 matmul microbenchmark vs the generic CPU backend.
 *
 *   build/bench_amx [-t threads] [-r reps=5] [--T 512] [--rows 1024] [--cols 2816]
 *                   [--vocab 129280] [--hidden 1024] [--only prefill|decode|shapes] [--no-backend]
 *
 * Prefill: GFLOP/s (useful 2*T*rows*cols flops) of [T] x [rows x cols] for BF16
 * and FP8 E4M3 (128x128 blocks) weights. Decode: T=1 on a vocab x hidden BF16
 * (and FP8) matrix (the lm_head of the bench model), reported as weight GB/s.
 * Shapes: T=1 (and T=512) through the BF16/FP8 matmul shapes of one bench-1b
 * decode step (12 layers' worth of distinct weights per shape, so they stream
 * from memory as in a real decode), GB/s per shape and in total.
 * Medians over the repetitions after one warm-up (the best in brackets: the
 * machine may be shared). "backend" is the CPU backend on its avx512 path. */
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
    if (getenv("BENCH_AMX_FAST_FILL")) { /* cheap pseudo-random bytes (no NaN codes) for big sets */
        uint64_t *p = b.data, st = g_rng++;
        size_t nw = n * dsv3_dtype_size(dt) / 8;
        for (size_t i = 0; i < nw; i++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            /* bf16: normal values in [2^-8, 2^-6); fp8: any code but NaN */
            p[i] = dt == DSV3_BF16 ? ((st >> 8) & 0x807f807f807f807full) | 0x3c003c003c003c00ull
                                   : (st >> 8) & 0xf7f7f7f7f7f7f7f7ull;
        }
    } else if (dt == DSV3_BF16) {
        uint16_t *p = b.data;
        for (size_t i = 0; i < n; i++) p[i] = dsv3_f32_to_bf16(urand() * 0.05f);
    } else {
        uint8_t *p = b.data;
        for (size_t i = 0; i < n; i++) p[i] = dsv3_fp8_e4m3_encode(urand() * 400.0f);
    }
    dsv3_weight W = {dt, rows, cols, b.data, dt == DSV3_BF16 ? NULL : b.scale, 128, 128, sr, sc, 0, 0};
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

/* One bench-1b decode step's BF16/FP8 matmuls, in the order of a forward pass. */
enum { S_QA, S_QB, S_KVA, S_O, S_DGU, S_DD, S_EGU, S_ED, S_LM, S_N };
static const struct {
    const char *name;
    int64_t rows, cols;
} g_shapes[S_N] = {{"q_a", 384, 1024},         {"q_b", 1536, 384},     {"kv_a", 288, 1024},
                   {"o", 1024, 1024},          {"dense gate/up", 2816, 1024}, {"dense down", 1024, 2816},
                   {"expert gate/up", 256, 1024}, {"expert down", 1024, 256}, {"lm_head", 129280, 1024}};

static void bench_shapes(int reps, int backend, int64_t T) {
    int kinds[1024], n = 0;
    for (int l = 0; l < 12; l++) {
        kinds[n++] = S_QA, kinds[n++] = S_QB, kinds[n++] = S_KVA, kinds[n++] = S_O;
        if (l == 0) kinds[n++] = S_DGU, kinds[n++] = S_DGU, kinds[n++] = S_DD;
        else
            for (int e = 0; e < 7; e++) kinds[n++] = S_EGU, kinds[n++] = S_EGU, kinds[n++] = S_ED;
    }
    kinds[n++] = S_LM;
    float *x = malloc(sizeof(float) * T * 2816), *y = malloc(sizeof(float) * T * 129280);
    for (int64_t i = 0; i < T * 2816; i++) x[i] = urand();
    const dsv3_backend *be = dsv3_backend_cpu();
    setenv("BENCH_AMX_FAST_FILL", "1", 1);
    for (int f = 0; f < 2; f++) {
        bweight *ws = malloc(sizeof(bweight) * n);
        double bytes[S_N] = {0}, tot_bytes = 0;
        for (int i = 0; i < n; i++) {
            ws[i] = make(f ? DSV3_F8_E4M3 : DSV3_BF16, g_shapes[kinds[i]].rows, g_shapes[kinds[i]].cols);
            bytes[kinds[i]] += (double)ws[i].W.rows * ws[i].W.cols * (f ? 1 : 2);
        }
        for (int k = 0; k < S_N; k++) tot_bytes += bytes[k];
        double best[2][S_N + 1];
        for (int which = 0; which < 1 + backend; which++) {
            double tbest = 1e30;
            for (int r = -1; r < reps; r++) {
                double per[S_N] = {0}, t_all = dsv3_now_s();
                for (int i = 0; i < n; i++) {
                    double t0 = dsv3_now_s();
                    if (which == 0) dsv3_matmul_rows_amx(y, ws[i].W.rows, x, T, &ws[i].W, 0, ws[i].W.rows);
                    else be->matmul(y, x, T, &ws[i].W);
                    per[kinds[i]] += dsv3_now_s() - t0;
                }
                t_all = dsv3_now_s() - t_all;
                if (r >= 0 && t_all < tbest) {
                    tbest = t_all;
                    for (int k = 0; k < S_N; k++) best[which][k] = per[k];
                    best[which][S_N] = t_all;
                }
            }
        }
        for (int k = 0; k < S_N; k++) {
            printf("T=%lld %s %-15s %6lldx%-5lld: amx %7.3f ms %5.1f GB/s", (long long)T, f ? "FP8 " : "BF16",
                   g_shapes[k].name, (long long)g_shapes[k].rows, (long long)g_shapes[k].cols, best[0][k] * 1e3,
                   bytes[k] / best[0][k] * 1e-9);
            if (backend) printf(" | backend %7.3f ms %5.1f GB/s", best[1][k] * 1e3, bytes[k] / best[1][k] * 1e-9);
            printf("\n");
        }
        printf("T=%lld %s step (best of %d): amx %.2f ms %.1f GB/s", (long long)T, f ? "FP8 " : "BF16", reps,
               best[0][S_N] * 1e3, tot_bytes / best[0][S_N] * 1e-9);
        if (backend) printf(" | backend %.2f ms %.1f GB/s", best[1][S_N] * 1e3, tot_bytes / best[1][S_N] * 1e-9);
        printf("\n");
        for (int i = 0; i < n; i++) free(ws[i].data), free(ws[i].scale);
        free(ws);
    }
    unsetenv("BENCH_AMX_FAST_FILL");
    free(x);
    free(y);
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
            fprintf(stderr, "usage: %s [-t threads] [-r reps] [--T N] [--rows N] [--cols N] [--vocab N] [--hidden N] [--only prefill|decode|shapes] [--no-backend]\n",
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
    dsv3_cpu_isa_set(DSV3_CPU_ISA_AVX512); /* the backend to compare with (no-op without AVX-512: auto) */
    printf("threads %d, reps %d (median), backend on %s\n", threads, reps, dsv3_cpu_isa_name(dsv3_cpu_isa_get()));
    if (!strcmp(only, "shapes")) {
        bench_shapes(reps, backend, T == 512 ? 1 : T);
        return 0;
    }

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
