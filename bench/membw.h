/* STREAM-like read bandwidth: sum-reduce a large buffer with wide vector loads
 * on OpenMP threads (shared by bench_membw and bench_decode; header-only).
 *
 * The buffer is first touched by the same threads and static schedule that
 * later read it (pages local to the reader), then read R times; each run is
 * timed as a whole (fork to join) and reported in GB/s = bytes / 1e9 / s. */
#ifndef DSV3_BENCH_MEMBW_H
#define DSV3_BENCH_MEMBW_H

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "dsv3/clock.h"

typedef struct {
    double best_gb_s, median_gb_s; /* over the runs */
    uint64_t bytes;                /* buffer size */
    int runs, threads;
    const char *isa;               /* "avx512", "avx2" or "scalar" */
    double checksum;               /* sum of the buffer (keeps the loads alive) */
} membw_result;

static inline const char *membw_isa(void) {
#if defined(__AVX512F__)
    return "avx512";
#elif defined(__AVX2__)
    return "avx2";
#else
    return "scalar";
#endif
}

/* Sum of n floats at p (64-byte aligned, n a multiple of 64): 4 independent vector accumulators. */
static inline double membw_sum(const float *p, size_t n) {
#if defined(__AVX512F__)
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
        a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
    }
    return (double)_mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
#elif defined(__AVX2__)
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
    }
    float t[8];
    _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    return (double)t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
#else
    float a[8] = {0};
    for (size_t i = 0; i < n; i += 8)
        for (int k = 0; k < 8; k++) a[k] += p[i + k];
    return (double)a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
#endif
}

/* Measures read bandwidth over a buffer of `bytes` (rounded down to 4 KiB,
 * at least 64 KiB) with `threads` threads (0 = OpenMP default) and `runs`
 * timed runs after one untimed warm-up read. Returns 0, or -1 when out of memory. */
static int membw_measure(uint64_t bytes, int runs, int threads, membw_result *r) {
    memset(r, 0, sizeof *r);
    if (runs < 1) runs = 1;
    if (threads <= 0) threads = omp_get_max_threads();
    bytes &= ~(uint64_t)4095;
    if (bytes < (64u << 10)) bytes = 64u << 10;
    const size_t n = (size_t)(bytes / sizeof(float));
    float *buf = aligned_alloc(4096, (size_t)bytes);
    double *gbs = malloc(sizeof(double) * (size_t)runs);
    if (!buf || !gbs) {
        free(buf);
        free(gbs);
        return -1;
    }
    const size_t chunk = 16384; /* floats per scheduling unit: 64 KiB, a multiple of 64 */
    const size_t nchunks = n / chunk, tail = nchunks * chunk;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (size_t c = 0; c < nchunks; c++)
        for (size_t i = c * chunk; i < (c + 1) * chunk; i++) buf[i] = (float)(i & 1023) * 0x1p-10f;
    for (size_t i = tail; i < n; i++) buf[i] = 0.0f;
    double sum = 0;
    for (int k = -1; k < runs; k++) {
        double s = 0, t0 = dsv3_now_s();
#pragma omp parallel for schedule(static) num_threads(threads) reduction(+ : s)
        for (size_t c = 0; c < nchunks; c++) s += membw_sum(buf + c * chunk, chunk);
        double dt = dsv3_now_s() - t0;
        if (k >= 0) gbs[k] = (double)tail * sizeof(float) / 1e9 / dt;
        sum = s;
    }
    r->median_gb_s = dsv3_median(gbs, runs); /* sorts */
    r->best_gb_s = gbs[runs - 1];
    r->bytes = (uint64_t)tail * sizeof(float);
    r->runs = runs;
    r->threads = threads;
    r->isa = membw_isa();
    r->checksum = sum;
    free(buf);
    free(gbs);
    return 0;
}

#endif
