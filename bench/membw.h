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

/* A first-touched read buffer (pages local to the threads that later read it). */
typedef struct {
    float *buf;
    size_t nchunks; /* 64 KiB scheduling units */
    int threads;
} membw_buf;

#define MEMBW_CHUNK 16384 /* floats per scheduling unit: 64 KiB, a multiple of 64 */

/* Allocates and first-touches `bytes` (rounded down to 64 KiB, at least 64 KiB) for `threads`
 * threads (0 = OpenMP default). Returns 0, or -1 when out of memory. */
static inline int membw_buf_init(membw_buf *b, uint64_t bytes, int threads) {
    memset(b, 0, sizeof *b);
    if (threads <= 0) threads = omp_get_max_threads();
    const size_t chunk = MEMBW_CHUNK;
    size_t nchunks = (size_t)(bytes / (chunk * sizeof(float)));
    if (nchunks < 1) nchunks = 1;
    float *buf = aligned_alloc(4096, nchunks * chunk * sizeof(float));
    if (!buf) return -1;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (size_t c = 0; c < nchunks; c++)
        for (size_t i = c * chunk; i < (c + 1) * chunk; i++) buf[i] = (float)(i & 1023) * 0x1p-10f;
    b->buf = buf;
    b->nchunks = nchunks;
    b->threads = threads;
    return 0;
}

static inline uint64_t membw_buf_bytes(const membw_buf *b) { return (uint64_t)b->nchunks * MEMBW_CHUNK * sizeof(float); }

/* One timed read of the whole buffer (fork to join); returns GB/s = bytes / 1e9 / s and the sum in *sum. */
static inline double membw_pass(const membw_buf *b, double *sum) {
    double s = 0, t0 = dsv3_now_s();
#pragma omp parallel for schedule(static) num_threads(b->threads) reduction(+ : s)
    for (size_t c = 0; c < b->nchunks; c++) s += membw_sum(b->buf + c * MEMBW_CHUNK, MEMBW_CHUNK);
    double dt = dsv3_now_s() - t0;
    *sum = s;
    return (double)membw_buf_bytes(b) / 1e9 / dt;
}

static inline void membw_buf_free(membw_buf *b) {
    free(b->buf);
    memset(b, 0, sizeof *b);
}

/* Measures read bandwidth over a buffer of `bytes` (see membw_buf_init) with `threads` threads
 * (0 = OpenMP default) and `runs` timed runs after one untimed warm-up read. Returns 0, or -1
 * when out of memory. */
static inline int membw_measure(uint64_t bytes, int runs, int threads, membw_result *r) {
    memset(r, 0, sizeof *r);
    if (runs < 1) runs = 1;
    membw_buf b;
    double *gbs = malloc(sizeof(double) * (size_t)runs);
    if (!gbs || membw_buf_init(&b, bytes, threads)) {
        free(gbs);
        return -1;
    }
    double sum = 0;
    (void)membw_pass(&b, &sum); /* warm-up */
    for (int k = 0; k < runs; k++) gbs[k] = membw_pass(&b, &sum);
    r->median_gb_s = dsv3_median(gbs, runs); /* sorts */
    r->best_gb_s = gbs[runs - 1];
    r->bytes = membw_buf_bytes(&b);
    r->runs = runs;
    r->threads = b.threads;
    r->isa = membw_isa();
    r->checksum = sum;
    membw_buf_free(&b);
    free(gbs);
    return 0;
}

#endif
