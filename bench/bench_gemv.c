/* One-token matmul (GEMV) against a plain read of the same bytes:
 *   build/bench_gemv --model DIR [--tensor NAME=lm_head.weight] [-T tokens=1] [-t threads] [--rounds R=5]
 *
 * Decode reads every weight once per token, so the best a GEMV can do is the speed at which the
 * machine reads those very bytes. Each round times, back to back, a sum-reduce of the tensor's
 * mmapped bytes with the bench_membw kernel (bench/membw.h) and a matmul of the tensor with T
 * tokens through the CPU backend (dsv3_backend_cpu: the decode kernels, same threads), 3 times
 * each, best of 3; the pair is taken in the same moment because the memory bandwidth of shared
 * machines moves by up to 2x within minutes. Prints per round the GB/s of both and their ratio,
 * then the median ratio and one JSON line. BF16/F16/F32 tensors, and FP8 with their
 * `<name>_scale_inv` block scales (128x128, as the checkpoints have them).
 * --warm: no read between the matmuls (the weights stay in cache when they fit: a small model's
 * decode, MTP verification steps); prints the matmul's time and multiply-adds per second instead. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_args.h"
#include "dsv3/clock.h"
#include "dsv3/ops.h"
#include "dsv3/safetensors.h"
#include "membw.h"

static void usage(FILE *f) {
    fprintf(f, "usage: bench_gemv --model DIR [--tensor NAME] [-T tokens] [-t threads] [--rounds R] [--warm]\n"
               "  --tensor NAME  2-D weight of the checkpoint (default lm_head.weight)\n"
               "  -T N           tokens per matmul, 1..4096 (default 1)\n"
               "  -t N           threads (default: all cores)\n"
               "  --rounds R     rounds of (read, matmul); the ratio is their median (default 5)\n"
               "  --warm         matmuls only, weights left in cache: median time and multiply-adds/s\n");
}

/* Best-of-3 GB/s of membw_pass over the view. */
static double read_gbs(const membw_buf *view, double *sink) {
    double best = 0, s = 0;
    for (int k = 0; k < 3; k++) {
        const double g = membw_pass(view, &s);
        best = g > best ? g : best;
        *sink += s;
    }
    return best;
}

int main(int argc, char **argv) {
    const char *model_dir = NULL, *name = "lm_head.weight";
    long T = 1, threads = 0, rounds = 5;
    int warm = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--warm")) { warm = 1; continue; }
        if (!v) bad = 1;
        else if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--tensor")) name = v;
        else if (!strcmp(a, "-T")) bad = bench_parse_long(v, 1, 4096, &T);
        else if (!strcmp(a, "-t")) bad = bench_parse_long(v, 0, 4096, &threads);
        else if (!strcmp(a, "--rounds")) bad = bench_parse_long(v, 1, 1000, &rounds);
        else bad = 1;
        if (bad) {
            fprintf(stderr, "bench_gemv: bad or incomplete argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (!model_dir) { usage(stderr); return 2; }
    if (threads > 0) omp_set_num_threads((int)threads);
    const int nthreads = omp_get_max_threads();
    dsv3_error err = {0};
    dsv3_checkpoint *ck = NULL;
    if (dsv3_ckpt_open(model_dir, &ck, &err)) {
        fprintf(stderr, "bench_gemv: %s\n", err.msg);
        return 1;
    }
    const dsv3_tensor_view *tv = dsv3_ckpt_find(ck, name);
    if (!tv || tv->ndim != 2) {
        fprintf(stderr, "bench_gemv: %s has no 2-D tensor '%s'\n", model_dir, name);
        dsv3_ckpt_close(ck);
        return 1;
    }
    dsv3_weight W = {tv->dtype, tv->shape[0], tv->shape[1], tv->data, NULL, 0, 0, 0, 0, 0, !warm}; /* read from memory unless --warm (as a large model's weights) */
    float *scale = NULL;
    if (tv->dtype == DSV3_F8_E4M3 || tv->dtype == DSV3_F8_E5M2) {
        char sname[512];
        snprintf(sname, sizeof sname, "%s_scale_inv", name);
        const dsv3_tensor_view *sv = dsv3_ckpt_find(ck, sname);
        const int64_t sr = (W.rows + 127) / 128, sc = (W.cols + 127) / 128;
        if (!sv || sv->dtype != DSV3_F32 || sv->ndim != 2 || sv->shape[0] != sr || sv->shape[1] != sc) {
            fprintf(stderr, "bench_gemv: FP8 tensor '%s' without a [%lld, %lld] f32 '%s'\n", name, (long long)sr,
                    (long long)sc, sname);
            dsv3_ckpt_close(ck);
            return 1;
        }
        if (!(scale = malloc(sizeof(float) * (size_t)(sr * sc)))) { fprintf(stderr, "bench_gemv: out of memory\n"); return 1; }
        memcpy(scale, sv->data, sizeof(float) * (size_t)(sr * sc)); /* aligned copy, as the model loader makes */
        W.scale = scale, W.block_r = 128, W.block_c = 128, W.scale_rows = sr, W.scale_cols = sc;
    }
    /* the read covers the tensor's bytes from the first 64-byte boundary, in whole 64 KiB units */
    const uintptr_t p0 = ((uintptr_t)tv->data + 63) / 64 * 64;
    const size_t rbytes = (size_t)(tv->nbytes - (p0 - (uintptr_t)tv->data)) / (64 << 10) * (64 << 10);
    const membw_buf view = {(float *)p0, rbytes / (MEMBW_CHUNK * sizeof(float)), nthreads}; /* read only */
    float *x = malloc(sizeof(float) * (size_t)(T * W.cols)), *y = malloc(sizeof(float) * (size_t)(T * W.rows));
    double *ratio = malloc(sizeof(double) * (size_t)rounds);
    if (!x || !y || !ratio || rbytes == 0) {
        fprintf(stderr, "bench_gemv: %s\n", rbytes == 0 ? "tensor smaller than 64 KiB" : "out of memory");
        return 1;
    }
    for (int64_t i = 0; i < T * W.cols; i++) x[i] = (float)((i * 7) % 13) * 0.01f;
    const dsv3_backend *be = dsv3_backend_cpu();
    double sink = 0;
    be->matmul(y, x, T, &W); /* warm-up: pages mapped, one-time weight scans */
    (void)read_gbs(&view, &sink);
    printf("tensor %s: %s [%lld, %lld], %.1f MB, %ld token(s), %d thread(s)\n", name, dsv3_dtype_name(W.dtype),
           (long long)W.rows, (long long)W.cols, (double)tv->nbytes / 1e6, T, nthreads);
    if (warm) { /* the weights stay where the warm-up left them; ratio[] holds each round's ms */
        for (long r = 0; r < rounds; r++) {
            const int reps = 20;
            const double t0 = dsv3_now_s();
            for (int k = 0; k < reps; k++) be->matmul(y, x, T, &W);
            ratio[r] = (dsv3_now_s() - t0) * 1e3 / reps;
        }
        const double med = dsv3_median(ratio, (int)rounds), gmac = (double)T * (double)W.rows * (double)W.cols / med / 1e6;
        printf("warm matmul   %.4f ms median of %ld rounds of 20, %.2f G multiply-adds/s\n", med, rounds, gmac);
        printf("{\"bench\":\"gemv_warm\",\"tensor\":\"%s\",\"dtype\":\"%s\",\"rows\":%lld,\"cols\":%lld,\"tokens\":%ld,"
               "\"threads\":%d,\"rounds\":%ld,\"median_ms\":%.5f,\"gmac_s\":%.3f}\n",
               name, dsv3_dtype_name(W.dtype), (long long)W.rows, (long long)W.cols, T, nthreads, rounds, med, gmac);
    } else {
        for (long r = 0; r < rounds; r++) {
            const double rd = read_gbs(&view, &sink);
            double best = 1e30;
            for (int k = 0; k < 3; k++) {
                double t0 = dsv3_now_s();
                be->matmul(y, x, T, &W);
                double dt = dsv3_now_s() - t0;
                best = dt < best ? dt : best;
            }
            const double mm = (double)tv->nbytes / 1e9 / best;
            ratio[r] = mm / rd;
            printf("round %ld: read %.1f GB/s, matmul %.1f GB/s (%.3f ms), ratio %.3f\n", r + 1, rd, mm, best * 1e3, ratio[r]);
        }
        const double med = dsv3_median(ratio, (int)rounds);
        printf("median ratio   %.3f (matmul GB/s / read GB/s of the same bytes)\n", med);
        printf("{\"bench\":\"gemv\",\"tensor\":\"%s\",\"dtype\":\"%s\",\"rows\":%lld,\"cols\":%lld,\"tokens\":%ld,\"threads\":%d,"
               "\"rounds\":%ld,\"median_ratio\":%.4f,\"checksum\":%.6g}\n",
               name, dsv3_dtype_name(W.dtype), (long long)W.rows, (long long)W.cols, T, nthreads, rounds, med,
               (double)y[0] + (double)y[T * W.rows - 1]);
    }
    if (sink == 1.5) printf("\n"); /* keeps the reads (the bytes of FP8 weights read as floats may sum to NaN) */
    free(x);
    free(y);
    free(ratio);
    free(scale);
    dsv3_ckpt_close(ck);
    return 0;
}
