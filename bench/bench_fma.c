/* FP32 fused multiply-add throughput (the compute ceiling of f32 kernels):
 *   build/bench_fma [-t threads] [-r runs=5] [--isa avx512|avx2]
 *
 * Every thread runs 12 independent FMA chains in registers (enough to cover
 * the FMA latency on current x86 cores) for a fixed number of iterations; R
 * timed runs after a warm-up. Prints best and median G multiply-adds/s (one
 * per f32 lane: 16 per AVX-512 FMA, 8 per AVX2 FMA) and one JSON line. This
 * bounds what compute-bound paths can reach: prefill GEMMs (dsv3 bench ppN:
 * ~0.11 G multiply-adds per bench-1b token) and long-context decode attention
 * (bench_decode: 544 multiply-adds per cached token, head and layer on
 * bench-1b). Virtual machines may share a physical core's FMA units with
 * another tenant: measure in the same run as the benchmark you compare. */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_args.h"
#include "dsv3/clock.h"

#define CHAINS 12
#define ITERS 20000000L

__attribute__((target("avx512f"))) static float fma_avx512(long iters) {
    __m512 a[CHAINS];
    for (int i = 0; i < CHAINS; i++) a[i] = _mm512_set1_ps(0.001f * (float)i);
    const __m512 b = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(0.0001f);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < CHAINS; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
    float s = 0;
    for (int i = 0; i < CHAINS; i++) s += _mm512_reduce_add_ps(a[i]);
    return s;
}

__attribute__((target("avx2,fma"))) static float fma_avx2(long iters) {
    __m256 a[CHAINS];
    for (int i = 0; i < CHAINS; i++) a[i] = _mm256_set1_ps(0.001f * (float)i);
    const __m256 b = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(0.0001f);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < CHAINS; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
    float t[8], s = 0;
    for (int i = 0; i < CHAINS; i++) {
        _mm256_storeu_ps(t, a[i]);
        for (int k = 0; k < 8; k++) s += t[k];
    }
    return s;
}

static void usage(FILE *f) {
    fprintf(f, "usage: bench_fma [-t threads] [-r runs] [--isa avx512|avx2]\n"
               "  -t N      threads (default: all cores)\n"
               "  -r R      timed runs (default 5)\n"
               "  --isa I   avx512 (default where supported) or avx2\n");
}

int main(int argc, char **argv) {
    long threads = 0, runs = 5;
    int wide = __builtin_cpu_supports("avx512f");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        int bad = !v;
        if (!bad && !strcmp(a, "-t")) bad = bench_parse_long(v, 0, 4096, &threads);
        else if (!bad && !strcmp(a, "-r")) bad = bench_parse_long(v, 1, 1000, &runs);
        else if (!bad && !strcmp(a, "--isa")) {
            if (!strcmp(v, "avx512")) wide = 1;
            else if (!strcmp(v, "avx2")) wide = 0;
            else bad = 1;
        } else bad = 1;
        if (bad) {
            fprintf(stderr, "bench_fma: bad or incomplete argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (wide && !__builtin_cpu_supports("avx512f")) {
        fprintf(stderr, "bench_fma: this CPU has no AVX-512\n");
        return 1;
    }
    if (!wide && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) {
        fprintf(stderr, "bench_fma: this CPU has no AVX2+FMA\n");
        return 1;
    }
    if (threads > 0) omp_set_num_threads((int)threads);
    const int lanes = wide ? 16 : 8;
    double *rate = malloc(sizeof(double) * (size_t)runs);
    if (!rate) { fprintf(stderr, "bench_fma: out of memory\n"); return 1; }
    int nt = 1;
    float sink = 0;
    for (long r = -1; r < runs; r++) { /* r = -1: warm-up (clocks up, threads started) */
        double t0 = dsv3_now_s();
#pragma omp parallel reduction(+ : sink)
        {
#pragma omp single
            nt = omp_get_num_threads();
            sink += wide ? fma_avx512(ITERS) : fma_avx2(ITERS);
        }
        double dt = dsv3_now_s() - t0;
        if (r >= 0) rate[r] = (double)ITERS * CHAINS * lanes * nt / dt / 1e9;
    }
    double best = 0;
    for (long r = 0; r < runs; r++) best = rate[r] > best ? rate[r] : best;
    double med = dsv3_median(rate, (int)runs);
    printf("f32 FMA        %s, %d threads, %d chains\n", wide ? "avx512" : "avx2", nt, CHAINS);
    printf("throughput     %.2f G multiply-adds/s best, %.2f median of %ld runs (%.2f per thread)\n", best, med, runs,
           med / nt);
    printf("{\"bench\":\"fma\",\"isa\":\"%s\",\"threads\":%d,\"runs\":%ld,\"best_gmac_s\":%.3f,\"median_gmac_s\":%.3f,"
           "\"checksum\":%.6g}\n",
           wide ? "avx512" : "avx2", nt, runs, best, med, (double)sink);
    free(rate);
    return 0;
}
